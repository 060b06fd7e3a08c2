"""/api/v1/webhooks/: an API client manages its own webhook subscriptions (scope ``webhooks:manage``).

Subscriptions created here belong to the client: it lists and deletes only those, and when the
client is branch-scoped it only receives events of its branch (see integrations/webhooks.py).
The secret is in the creation answer only.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from integrations import webhooks
from integrations.api.base import ApiView
from integrations.models import ApiScope

SCOPES = [ApiScope.WEBHOOKS_MANAGE]


class WebhookOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    url = serializers.CharField()
    event_types = serializers.ListField(child=serializers.CharField())
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class WebhookListOutputSerializer(serializers.Serializer):
    data = WebhookOutputSerializer(many=True)


class WebhookCreatedOutputSerializer(WebhookOutputSerializer):
    secret = serializers.CharField(help_text="签名密钥，只在此返回一次")


class WebhookCreateInputSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=500)
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.WebhookEventType.values),
                                        allow_empty=False, max_length=len(webhooks.WebhookEventType.values))
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    secret = serializers.CharField(max_length=200, required=False, allow_blank=True,
                                   help_text="不填则自动生成（至少 16 个字符）")


class WebhookListApi(ApiView):
    required_scopes = SCOPES

    @extend_schema(operation_id="webhooks_list", responses=WebhookListOutputSerializer, tags=["webhooks"])
    def get(self, request):
        subscriptions = webhooks.webhook_subscription_list(api_client=self.client)
        return Response({"data": WebhookOutputSerializer(subscriptions, many=True).data})

    @extend_schema(operation_id="webhooks_create", request=WebhookCreateInputSerializer,
                   responses={201: WebhookCreatedOutputSerializer}, tags=["webhooks"])
    def post(self, request):
        serializer = WebhookCreateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        subscription, secret = webhooks.webhook_subscription_create(
            actor=self.client, api_client=self.client, **serializer.validated_data)
        body = {**WebhookOutputSerializer(subscription).data, "secret": secret}
        return Response(body, status=status.HTTP_201_CREATED)


class WebhookDetailApi(ApiView):
    required_scopes = SCOPES

    @extend_schema(operation_id="webhooks_delete", responses={204: None}, tags=["webhooks"])
    def delete(self, request, subscription_id: int):
        subscription = get_object_or_404(webhooks.webhook_subscription_list(api_client=self.client),
                                         pk=subscription_id)
        webhooks.webhook_subscription_delete(actor=self.client, subscription=subscription)
        return Response(status=status.HTTP_204_NO_CONTENT)
