"""Bulk actions on a segment's members. Other areas plug their own actions in here (the SOP area
registers ``sop_enroll``, groups register ``group_invite``), so segments never import them.

A handler is ``handler(*, action, customers, actor) -> dict``: ``customers`` is the segment's members
within the actor's scope (a Customer queryset), the dict is stored as the action's result (an
``"affected"`` number in it becomes SegmentAction.affected). It runs inside a transaction in the
Celery task ``segments.action_run``; raising rolls it back and marks the action failed.

An optional ``validate(params) -> params`` checks the parameters when the action is started
(segments.services.action_start) and raises ``core.errors.ApplicationError`` with
``details=[{"field": "params.<name>", "message": ...}]``; nothing is stored when it raises.
The built-in kinds (tag_add, tag_remove, tasks) live in segments/services.py.
"""

SEGMENT_ACTION_HANDLERS: dict = {}
SEGMENT_ACTION_VALIDATORS: dict = {}


def register_action_handler(kind: str, handler, validate=None) -> None:
    SEGMENT_ACTION_HANDLERS[kind] = handler
    if validate is not None:
        SEGMENT_ACTION_VALIDATORS[kind] = validate
