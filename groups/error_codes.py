from enum import StrEnum


class GroupError(StrEnum):
    NOT_ALLOWED = "group_not_allowed"
    PURPOSE_INVALID = "group_purpose_invalid"
    AUDIENCE_INVALID = "group_audience_invalid"
    NOT_ACTIVE = "group_not_active"
    GROUP_NOT_FOUND = "group_not_found"
    WECOM_FAILED = "group_wecom_failed"
    NO_CUSTOMERS = "group_invite_no_customers"
    TAG_INVALID = "group_purpose_tag_invalid"
