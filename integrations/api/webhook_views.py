"""/api/v1/webhooks/: an API client manages its own webhook subscriptions (scope ``webhooks:manage``).

Subscriptions created here belong to the client: it lists and deletes only those, and when the
client is branch-scoped it only receives events of its branch (see integrations/webhooks.py).
The secret is in the creation answer only.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from integrations import webhooks
from integrations.api.base import ApiView
from integrations.api.serializers import StrictCharField
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


# up to three labels and a top-level domain, a port up to 9999 (an IP literal is also accepted unless it is internal;
# URLValidator refuses a host name over 253 characters, which this shape cannot reach); no white space, control
# character or backslash anywhere (core/outbound.py refuses them; \x85 is white space to Python, not to JSON Schema)
WEBHOOK_URL_PATTERN = (r"^https?://([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,3}[A-Za-z]{2,24}"
                       r"(:[1-9][0-9]{0,3})?([/?#][^\s\x00-\x1f\x85\\]*)?$")


@extend_schema_field({"type": "string", "pattern": WEBHOOK_URL_PATTERN, "maxLength": 500})  # an IRI: not "uri"
class WebhookUrlField(StrictCharField):
    pass


@extend_schema_field({"type": "string", "maxLength": 200, "pattern": r"^(\s+|\S[\s\S]{14,}\S)$"})
class WebhookSecretField(StrictCharField):
    pass


class WebhookCreateInputSerializer(serializers.Serializer):
    url = WebhookUrlField(max_length=500, help_text="回调地址：http(s) 网址（生产环境只接受 https）；不能指向内网、"
                                                    "本机或云元数据地址，不能含用户名或密码")
    event_types = serializers.ListField(child=serializers.ChoiceField(choices=webhooks.WebhookEventType.values),
                                        allow_empty=False, min_length=1,
                                        max_length=len(webhooks.WebhookEventType.values))
    name = StrictCharField(max_length=100, required=False, allow_blank=True, help_text="不填则用回调地址")
    secret = WebhookSecretField(max_length=200, required=False, allow_blank=True,
                                help_text="签名密钥，至少 16 个字符（去掉首尾空白后）；不填则自动生成")

    def to_internal_value(self, data):
        if isinstance(data, dict):  # as every /api/v1 body: a field this endpoint does not know is refused
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: ["未知字段"] for key in unknown}, code="unknown_field")
        return super().to_internal_value(data)


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
