"""Custom field URLs for tests/test_scope.py. A customer's values (``customers:custom_fields``) are reached through
the customer's external_id like the rest of the 360° page; the definitions are firm-wide admin objects, so every
role the test walks gets 404 for them."""


def _custom_field(objs) -> int:
    from customers.models import CustomFieldDefinition

    definition, _ = CustomFieldDefinition.objects.get_or_create(
        code="scope_field", defaults={"label": "范围测试字段", "type": "choice", "options": ["甲", "乙"]})
    return definition.pk


PAGES_WITHOUT_OBJECTS = {"customers:custom_field_list", "customers:custom_field_create"}
OBJECT_KWARGS = {"field_id": _custom_field}
