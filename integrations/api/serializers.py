"""Output (and small input) serializers shared by the /api/v1 views. Bulk rows are validated as plain
dicts by the ingest pipeline (customers/ingest/); the row serializers here only
document their shape in the OpenAPI schema."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.validators import EXTERNAL_ID_RE
from customers.models import (
    AGE_BANDS,
    CustomFieldType,
    FunnelStage,
    Gender,
    LifecycleStage,
    ProductRisk,
    RiskLevel,
    Trade,
)


def identifier_field(max_length: int = 64, **kwargs) -> serializers.RegexField:
    """An identifier another system gives us: a JSON string matching one pattern (core.validators.external_id_normalize)."""
    kwargs.setdefault("help_text", "字符串：字母、数字和 . _ -，以字母或数字开头")
    return serializers.RegexField(f"^{EXTERNAL_ID_RE.pattern}$", max_length=max_length, **kwargs)


# --- what the ingest pipeline accepts, as JSON Schema ------------------------------------------------------
# The pipeline (customers/ingest/) validates rows; these shapes only document them, so each says exactly what a
# row may hold: the canonical form of each value, and "" / null where they mean "not given".

_MONTH, _DAY = r"(0[1-9]|1[0-2])", r"(0[1-9]|[12][0-9]|3[01])"
_DATE = f"{_MONTH}-{_DAY}"
_TIME = r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
UTC_OFFSET_PATTERN = r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)"  # core.validators.MAX_UTC_OFFSET


def datetime_pattern(years: str) -> str:
    """An ISO 8601 time with seconds and a UTC offset of at most ±14:00 (core.validators.utc_offset_valid)."""
    return f"^{years}-{_DATE}{_TIME}{UTC_OFFSET_PATTERN}$"


DATE_PATTERN = rf"^(19[0-9]{{2}}|2[0-9]{{3}})-{_DATE}$"  # the pipeline refuses dates before 1900 (and after today)
MOBILE_PATTERN = r"^(\+86)?1[3-9][0-9]{9}$"
ID_NUMBER_PATTERN = rf"^[0-9]{{6}}(19|20)[0-9]{{2}}{_MONTH}{_DAY}[0-9]{{3}}[0-9Xx]$"
MONEY_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,2})?$"  # yuan, at most 16 digits before the point and 2 after
POSITIVE_MONEY_PATTERN = r"^(0*[1-9][0-9]{0,15}(\.[0-9]{1,2})?|0*\.(0[1-9]|[1-9][0-9]?))$"
NOT_BLANK_PATTERN = r"\S"  # at least one character that is not white space (values are stripped)
_BLANK = {"type": "string", "maxLength": 0}


def documented(base: type, schema: dict, *, blank: bool = False) -> type:
    """``base`` with ``schema`` as its OpenAPI schema (``blank``: "" is also accepted and means "not given")."""
    if blank:
        schema = {"anyOf": [schema, _BLANK]}
    return extend_schema_field(schema)(type(f"Documented{base.__name__}", (base,), {}))


AwareDateTimeInput = documented(serializers.DateTimeField, {
    "type": "string", "format": "date-time", "pattern": datetime_pattern(r"(199[0-9]|2[0-9]{3})"),
    "description": "ISO 8601，必须带时区偏移（Z 或 ±HH:MM，最多 ±14:00），1990 年起，不晚于明天"})
DateInput = documented(serializers.DateField, {"type": "string", "format": "date", "pattern": DATE_PATTERN}, blank=True)
MobileInput = documented(serializers.CharField, {"type": "string", "pattern": MOBILE_PATTERN}, blank=True)
IdNumberInput = documented(serializers.CharField, {"type": "string", "pattern": ID_NUMBER_PATTERN}, blank=True)
MoneyInput = documented(serializers.CharField, {"type": "string", "format": "decimal", "pattern": MONEY_PATTERN},
                        blank=True)
PositiveMoneyInput = documented(serializers.CharField, {"type": "string", "format": "decimal",
                                                        "pattern": POSITIVE_MONEY_PATTERN})


class StrictCharField(serializers.CharField):
    """A JSON string, and only that (DRF's CharField would also take 12 or 1.5 and store "12")."""

    default_error_messages = {"invalid_type": "应为字符串"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_type")
        return super().to_internal_value(data)


def text_input(max_length: int, **kwargs) -> serializers.CharField:
    """Free text of a row: stripped; required text must hold a non-blank character."""
    if kwargs.get("required", True):
        return serializers.RegexField(NOT_BLANK_PATTERN, max_length=max_length, **kwargs)
    return serializers.CharField(max_length=max_length, allow_blank=True, allow_null=True, **kwargs)


def choice_input(choices, **kwargs) -> serializers.ChoiceField:
    if kwargs.get("required", True):
        return serializers.ChoiceField(choices=choices, **kwargs)
    return serializers.ChoiceField(choices=choices, allow_blank=True, allow_null=True, **kwargs)


CUSTOM_FIELDS_HELP = (
    "自定义字段，{代码: 值}。字段定义见 GET custom-fields/。值的类型：text 与 choice 为字符串（choice 须为选项之一）；"
    "number 为数字（最多 15 位有效数字、6 位小数，须在字段的最小值/最大值之间）；date 为 \"YYYY-MM-DD\" 字符串；"
    "multi_choice 为选项字符串的数组。")


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
    custom_fields = serializers.DictField(
        child=serializers.JSONField(), source="custom_fields_active",
        help_text=CUSTOM_FIELDS_HELP + " 只包含启用中且有值的字段；没有值的字段不出现。")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class CustomerRowSerializer(serializers.Serializer):
    """One row of customers/bulk_upsert (and the body of PATCH customers/{external_id}/); every field
    but external_id and name is optional, and a blank or null value keeps the stored one. Values are stripped of
    surrounding white space; a field the row does not know is an error of that row (unknown_field)."""

    external_id = identifier_field()
    name = text_input(50)
    mobile = MobileInput(required=False, allow_null=True, allow_blank=True,
                         help_text="中国大陆手机号，11 位（可带 +86；空格和 - 会被去掉）")
    id_number = IdNumberInput(required=False, allow_null=True, allow_blank=True,
                              help_text="18 位居民身份证号（GB 11643，校验位须正确）；给出时出生日期和性别取自号码")
    gender = choice_input(Gender.choices, required=False)
    birth_date = DateInput(required=False, allow_null=True, help_text="YYYY-MM-DD，1900 年起，不晚于今天")
    branch = text_input(50, required=False, help_text="营业部代码；新客户必填")
    advisor = text_input(50, required=False, help_text="投顾工号（须属于该营业部）")
    risk_level = choice_input(RiskLevel.choices, required=False)
    risk_assessed_at = DateInput(required=False, allow_null=True, help_text="YYYY-MM-DD，1900 年起，不晚于今天")
    opened_at = DateInput(required=False, allow_null=True, help_text="YYYY-MM-DD，1900 年起，不晚于今天")
    channel = text_input(50, required=False)
    utm_source = text_input(100, required=False)
    utm_medium = text_input(100, required=False)
    utm_campaign = text_input(100, required=False)
    total_assets = MoneyInput(required=False, allow_null=True, allow_blank=True, help_text="人民币元，≥ 0，最多 2 位小数")
    funnel_stage = choice_input(FunnelStage.choices, required=False)
    region = text_input(50, required=False)
    occupation = text_input(50, required=False)
    lifecycle_stage = choice_input(LifecycleStage.choices, required=False)
    custom_fields = serializers.DictField(
        child=serializers.JSONField(), required=False,
        help_text=CUSTOM_FIELDS_HELP + " 只写给出的字段，其余保留；值为 null 或空表示不修改（与其他字段相同）。"
                  "停用或未知的字段、不合规则的值是该行的错误（field 为 custom_fields.<代码>），该行不写入。"
                  "新客户必须给出所有必填字段。")


class CustomFieldDefinitionSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="客户体 custom_fields 中的键，也用于客群规则 {\"type\": \"custom\", \"field\": 代码}")
    label = serializers.CharField()
    type = serializers.ChoiceField(choices=CustomFieldType.choices)
    options = serializers.ListField(child=serializers.CharField(), help_text="choice / multi_choice 的选项")
    required = serializers.BooleanField(help_text="新客户必须给出")
    min_value = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True, help_text="number 的下限")
    max_value = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True, help_text="number 的上限")
    max_length = serializers.IntegerField(allow_null=True, help_text="text 的最大长度（未设置时为 500）")


class CustomerPatchSerializer(CustomerRowSerializer):
    """The fields to change (the same checks as a bulk row); the customer is the one in the path, so the body does
    not repeat external_id (if it does, it must equal the path's). Fields not given, null or blank keep their
    stored values."""

    external_id = None
    name = text_input(50, required=False)


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
    """One trade; every field is required. An unknown customer or product is an error of the row."""

    external_id = identifier_field()
    customer = identifier_field(help_text="客户号 external_id")
    product = identifier_field(32, help_text="产品代码")
    traded_at = AwareDateTimeInput()
    side = serializers.ChoiceField(choices=Trade.Side.choices)
    amount = PositiveMoneyInput(help_text="人民币元，> 0，最多 2 位小数")


class EventRowSerializer(serializers.Serializer):
    """One behaviour event; an unknown customer is an error of the row."""

    event_id = identifier_field()
    customer = identifier_field(help_text="客户号 external_id")
    type = text_input(40)
    occurred_at = AwareDateTimeInput()
    properties = serializers.DictField(required=False, allow_null=True,
                                       help_text="任意 JSON 对象，序列化后最多 10000 个字符")


class ProductRowSerializer(serializers.Serializer):
    """One product; every field is required."""

    code = identifier_field(32, help_text="产品代码")
    name = text_input(100)
    type = text_input(30)
    risk_level = serializers.ChoiceField(choices=ProductRisk.choices)


class ProductSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="产品代码")
    name = serializers.CharField()
    type = serializers.CharField()
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


TagExpiryInput = documented(serializers.DateTimeField, {
    "type": "string", "format": "date-time", "pattern": datetime_pattern(r"[0-9]{4}"),
    "description": "ISO 8601，必须带时区偏移（Z 或 ±HH:MM，最多 ±14:00），须晚于现在；null 或不给表示不过期"})


class CustomerTagInputSerializer(serializers.Serializer):
    tag = serializers.RegexField(r"^[-a-zA-Z0-9_]+$", max_length=50, help_text="启用中的标签代码（GET tags/）")
    evidence = StrictCharField(required=False, allow_blank=True, default="", max_length=2000,
                               help_text="打标依据（给人看的说明），最多 2000 个字符")
    expires_at = TagExpiryInput(required=False, allow_null=True, default=None)


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
