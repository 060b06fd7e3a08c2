"""Bulk actions on a segment's members. Other areas plug their own actions in here (the SOP area
registers ``sop_enroll``, groups register ``group_invite``), so segments never import them.

A handler is ``handler(*, action, customers, actor) -> dict``: ``customers`` is the segment's members
within the actor's scope (a Customer queryset), the dict is stored as the action's result.
"""

SEGMENT_ACTION_HANDLERS: dict = {}


def register_action_handler(kind: str, handler) -> None:
    SEGMENT_ACTION_HANDLERS[kind] = handler
