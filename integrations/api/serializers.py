"""Output (and small input) serializers shared by the /api/v1 views. Bulk rows are validated as plain
dicts by the ingest pipeline (customers/ingest/); the row serializers here only
document their shape in the OpenAPI schema."""

from rest_framework import serializers

from core.validators import EXTERNAL_ID_RE
from customers.models import AGE_BANDS, FunnelStage, Gender, LifecycleStage, ProductRisk, RiskLevel, Trade


def identifier_field(max_length: int = 64, **kwargs) -> serializers.RegexField:
    """An identifier another system gives us: a JSON string matching one pattern (core.validators.external_id_normalize)."""
    kwargs.setdefault("help_text", "字符串：字母、数字和 . _ -，以字母或数字开头")
    return serializers.RegexField(f"^{EXTERNAL_ID_RE.pattern}$", max_length=max_length, **kwargs)


class CustomerOutputSerializer(serializers.Serializer):
    """A customer as every API answer shows one (list, detail, segment members): personal data masked, an age band
    instead of the birth date."""

    external_id = serializers.CharField()
    name = serializers.CharField()
    gender = serializers.ChoiceField(choices=Gender.choices)
    age_band = serializers.ChoiceField(
        choices=AGE_BANDS, allow_null=True,
        help_text="年龄段（按上海当天日期计算的整十岁区间，如 30-39；<20、80+ 为两端；出生日期未知时为 null）。"
                  "API 不返回出生日期")
    branch = serializers.CharField(source="branch.code")
    advisor = serializers.CharField(source="advisor.employee_code", allow_null=True)
    mobile_masked = serializers.CharField(help_text="脱敏手机号，如 138****5678")
    id_number_masked = serializers.CharField(help_text="脱敏身份证号，只保留后 4 位，如 **************1234")
    risk_level = serializers.CharField()
    risk_assessed_at = serializers.DateField(allow_null=True)
    opened_at = serializers.DateField(allow_null=True)
    channel = serializers.CharField()
    utm_source = serializers.CharField()
    utm_medium = serializers.CharField()
    utm_campaign = serializers.CharField()
    total_assets = serializers.DecimalField(max_digits=18, decimal_places=2)
    funnel_stage = serializers.ChoiceField(choices=FunnelStage.choices)
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices)
    region = serializers.CharField()
    occupation = serializers.CharField()
    tier = serializers.CharField(source="tier_code", allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(), source="tag_codes")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class CustomerRowSerializer(serializers.Serializer):
    """One row of customers/bulk_upsert (and the body of PATCH customers/{external_id}/); every field
    but external_id and name is optional, and a blank or null value keeps the stored one."""

    external_id = identifier_field()
    name = serializers.CharField(max_length=50)
    mobile = serializers.CharField(required=False)
    id_number = serializers.CharField(required=False)
    gender = serializers.ChoiceField(choices=Gender.choices, required=False)
    birth_date = serializers.DateField(required=False)
    branch = serializers.CharField(required=False, help_text="营业部代码；新客户必填")
    advisor = serializers.CharField(required=False, help_text="投顾工号")
    risk_level = serializers.ChoiceField(choices=RiskLevel.choices, required=False)
    risk_assessed_at = serializers.DateField(required=False)
    opened_at = serializers.DateField(required=False)
    channel = serializers.CharField(required=False)
    utm_source = serializers.CharField(required=False)
    utm_medium = serializers.CharField(required=False)
    utm_campaign = serializers.CharField(required=False)
    total_assets = serializers.DecimalField(max_digits=18, decimal_places=2, required=False)
    funnel_stage = serializers.ChoiceField(choices=FunnelStage.choices, required=False)
    region = serializers.CharField(required=False)
    occupation = serializers.CharField(required=False)
    lifecycle_stage = serializers.ChoiceField(choices=LifecycleStage.choices, required=False)


class CustomerPatchSerializer(CustomerRowSerializer):
    external_id = identifier_field(required=False)
    name = serializers.CharField(max_length=50, required=False)


class RowErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    external_id = serializers.CharField()
    field = serializers.CharField()
    code = serializers.CharField()
    message = serializers.CharField()


class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    errors = RowErrorSerializer(many=True)


class TradeRowSerializer(serializers.Serializer):
    external_id = identifier_field()
    customer = identifier_field(help_text="客户号 external_id")
    product = identifier_field(32, help_text="产品代码")
    traded_at = serializers.DateTimeField(help_text="ISO 8601，必须带时区偏移")
    side = serializers.ChoiceField(choices=Trade.Side.choices)
    amount = serializers.DecimalField(max_digits=18, decimal_places=2, help_text="人民币元，> 0")


class EventRowSerializer(serializers.Serializer):
    event_id = identifier_field()
    customer = identifier_field(help_text="客户号 external_id")
    type = serializers.CharField(max_length=40)
    occurred_at = serializers.DateTimeField(help_text="ISO 8601，必须带时区偏移")
    properties = serializers.DictField(required=False)


class ProductSerializer(serializers.Serializer):
    code = identifier_field(32, help_text="产品代码")
    name = serializers.CharField(max_length=100)
    type = serializers.CharField(max_length=30)
    risk_level = serializers.ChoiceField(choices=ProductRisk.choices)


class TagOutputSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    category = serializers.CharField(source="category.code")
    exclusive_group = serializers.CharField()


class CustomerTagOutputSerializer(serializers.Serializer):
    tag = serializers.CharField(source="tag.code")
    name = serializers.CharField(source="tag.name")
    category = serializers.CharField(source="tag.category.code")
    source = serializers.CharField()
    evidence = serializers.CharField()
    set_by = serializers.CharField(source="set_by_label")
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)


class CustomerTagInputSerializer(serializers.Serializer):
    tag = serializers.CharField(max_length=50)
    evidence = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                           help_text="ISO 8601 带时区偏移；null 表示不过期")


class TierCountSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()
    count = serializers.IntegerField()


class ThresholdsSerializer(serializers.Serializer):
    r = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    f = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True)
    m = serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True)


class TierOverviewSerializer(serializers.Serializer):
    as_of = serializers.DateField(allow_null=True)
    window_days = serializers.IntegerField(allow_null=True)
    thresholds = ThresholdsSerializer()
    tiers = TierCountSerializer(many=True)


class CustomerTierSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()
    r = serializers.IntegerField(allow_null=True)
    f = serializers.IntegerField()
    m = serializers.DecimalField(max_digits=20, decimal_places=2)
    as_of = serializers.DateField()
