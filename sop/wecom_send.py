"""WeCom 1:1 and group messages are sent by the advisor from WeCom: for each prepared message we
create a group-message template (externalcontact/add_msg_template) that appears in the advisor's
WeCom for confirmation, next to the task in the product's inbox.

Because the advisor confirms every such message in WeCom, a template created twice after a crash
shows up twice for the advisor but cannot reach the client twice on its own.
"""

import logging

from django.conf import settings

logger = logging.getLogger(__name__)


def wecom_templates_create(items) -> None:
    """``items``: (step run, StepResult) pairs of prepared WeCom messages; records msgid or the error."""
    if not items or not (settings.WECOM_CORP_ID and settings.WECOM_SECRET):
        return
    from integrations.wecom.client import wecom_client

    client = wecom_client()
    for run, result in items:
        customer = run.enrollment.customer
        advisor = customer.advisor
        if not (advisor and advisor.wecom_userid and customer.wecom_external_userid):
            result.detail["wecom"] = "skipped: no WeCom ids"
            continue
        try:
            answer = client.post("externalcontact/add_msg_template", data={
                "chat_type": "single", "external_userid": [customer.wecom_external_userid],
                "sender": advisor.wecom_userid, "text": {"content": result.detail.get("text", "")}})
            result.detail["wecom_msgid"] = answer.get("msgid", "")
        except Exception as exc:  # the task still stands; the advisor can send by hand
            logger.warning("add_msg_template failed for step run %s: %s", run.pk, exc)
            result.detail["wecom_error"] = str(exc)[:300]
