"""The sandbox's seed from our database (demo or test): the follow users are the advisors with a WeCom
userid, and a sample of their customers becomes WeCom contacts (see sandbox_data.build_corp)."""

from __future__ import annotations

from core.crypto import decrypt
from core.models import Role, User
from customers.models import Customer

DEFAULT_CUSTOMERS = 300


def sandbox_seed_from_db(*, customers: int = DEFAULT_CUSTOMERS) -> dict:
    """``{"users": [...], "customers": [...]}``: most sampled customers carry their wecom_external_userid,
    about one in ten does not (the sandbox then links them only by remark mobile)."""
    staff = list(User.objects.filter(role=Role.ADVISOR, is_active=True, wecom_userid__isnull=False).exclude(wecom_userid="")
                 .order_by("username").values("pk", "wecom_userid", "display_name"))
    userid_of = {s["pk"]: s["wecom_userid"] for s in staff}
    base = Customer.objects.filter(advisor_id__in=userid_of).order_by("id")
    with_id = list(base.exclude(wecom_external_userid=None)[: customers * 9 // 10])
    without_id = list(base.filter(wecom_external_userid=None).exclude(mobile_encrypted="")[: max(10, customers // 10)])
    rows = []
    for customer in with_id + without_id:
        try:
            mobile = decrypt(customer.mobile_encrypted) if customer.mobile_encrypted else ""
        except Exception:  # noqa: BLE001 - a key rotated away: the contact just carries no mobile
            mobile = ""
        rows.append({"userid": userid_of[customer.advisor_id], "name": customer.name, "mobile": mobile,
                     "gender": customer.gender, "external_userid": customer.wecom_external_userid})
    return {"users": [{"userid": s["wecom_userid"], "name": s["display_name"] or s["wecom_userid"]} for s in staff],
            "customers": rows}
