from enum import StrEnum


class CustomerError(StrEnum):
    REVEAL_NOT_ALLOWED = "reveal_not_allowed"
    REVEAL_REASON_REQUIRED = "reveal_reason_required"
    NOTE_EMPTY = "note_empty"
    TASK_NOT_OPEN = "task_not_open"
    TASK_OUTCOME_REQUIRED = "task_outcome_required"
    TASK_ASSIGNEE_OUT_OF_SCOPE = "task_assignee_out_of_scope"
    PII_SEARCH_RATE_LIMITED = "pii_search_rate_limited"
