from enum import StrEnum


class CustomerError(StrEnum):
    REVEAL_NOT_ALLOWED = "reveal_not_allowed"
    REVEAL_REASON_REQUIRED = "reveal_reason_required"
    NOTE_EMPTY = "note_empty"
    TASK_NOT_OPEN = "task_not_open"
    TASK_NOT_ALLOWED = "task_not_allowed"
    TASK_OUTCOME_REQUIRED = "task_outcome_required"
    TASK_ASSIGNEE_OUT_OF_SCOPE = "task_assignee_out_of_scope"
    PII_SEARCH_RATE_LIMITED = "pii_search_rate_limited"
    CUSTOM_FIELD_INVALID = "custom_field_invalid"  # a definition an admin entered is not valid
    CUSTOM_FIELD_CODE_TAKEN = "custom_field_code_taken"
    CUSTOM_FIELD_LIMIT = "custom_field_limit"
    CUSTOM_FIELDS_NOT_ALLOWED = "custom_fields_not_allowed"  # the role may read a customer's values, not change them
    CUSTOM_VALUES_INVALID = "custom_values_invalid"
