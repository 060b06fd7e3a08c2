"""What the churn page does for at-risk clients: follow-up tasks for their advisors, or a running SOP journey.

Both take either selected clients or "every high-risk client of one advisor", only within the actor's data
scope, and are idempotent per day (Asia/Shanghai): a client gets at most one churn follow-up task a day, and
enters a journey once a day at most (the enrollment's trigger key is ``churn:<date>``). Each call writes one
audit row in its transaction.
"""

from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.errors import ApplicationError
from core.models import Role, User
from core.scoping import scope_for
from core.services import audit_record
from dashboards.models import ChurnScore

TASK_DUE_HOURS = 48
MAX_SELECTED = 1000
LOCK_KEY = 0x63687461736B


def _error(code: str, message: str, field: str) -> ApplicationError:
    return ApplicationError(code, message, [{"field": field, "message": message}])


def _ids(raw) -> list[int]:
    values = [str(v).strip() for v in (raw or []) if str(v).strip()]
    if not all(v.isdigit() for v in values):
        raise _error("invalid_customers", _("客户编号无效"), "customers")
    if len(values) > MAX_SELECTED:
        raise _error("too_many_customers", _("一次最多选择 %(n)s 位客户") % {"n": MAX_SELECTED}, "customers")
    return sorted({int(v) for v in values})


def advisor_in_scope(*, user, advisor_id) -> User:
    """The advisor ``user`` may act for: themselves (advisor), one of their branch (branch manager), anyone (HQ)."""
    raw = str(advisor_id or "").strip()
    advisor = User.objects.filter(pk=int(raw), role=Role.ADVISOR).first() if raw.isdigit() else None
    scope = scope_for(user)
    allowed = advisor is not None and (
        scope.everything or advisor.pk == scope.advisor_id
        or (scope.branch_id is not None and scope.advisor_id is None and advisor.branch_id == scope.branch_id))
    if not allowed:
        raise _error("advisor_out_of_scope", _("投顾不存在或不在您的数据范围内"), "advisor")
    return advisor


def churn_targets(*, user, customer_ids=None, advisor_id=None) -> tuple[list[int], User | None]:
    """Customer ids to act on: the selected ones (all must be scored and visible), else the advisor's high-risk ones."""
    visible = ChurnScore.objects.visible_to(user)
    ids = _ids(customer_ids)
    if ids:
        found = set(visible.filter(customer_id__in=ids).values_list("customer_id", flat=True))
        if found != set(ids):
            raise _error("customers_out_of_scope", _("所选客户不存在、没有流失预警分或不在您的数据范围内"), "customers")
        return ids, None
    if not str(advisor_id or "").strip():
        raise _error("no_customers", _("请先勾选客户，或选择一位投顾的全部高风险客户"), "customers")
    advisor = advisor_in_scope(user=user, advisor_id=advisor_id)
    ids = list(visible.filter(level=ChurnScore.Level.HIGH, customer__advisor=advisor)
               .order_by("customer_id").values_list("customer_id", flat=True))
    if not ids:
        raise _error("no_high_risk", _("%(advisor)s 名下没有高风险客户") % {"advisor": advisor}, "advisor")
    return ids, advisor


def _day_start(now: datetime) -> datetime:
    return timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)


@transaction.atomic
def churn_tasks_create(*, actor, customer_ids=None, advisor_id=None, now: datetime | None = None) -> dict:
    """A follow-up task per target client for the client's advisor, due in 48 h, titled with the reasons.

    Skips clients without an (active) advisor and clients who already got a churn task today. Returns
    {"created", "already", "no_advisor", "customers"}."""
    now = now or timezone.now()
    ids, advisor = churn_targets(user=actor, customer_ids=customer_ids, advisor_id=advisor_id)
    from customers.models import Customer, Task
    from customers.services import tasks_create

    with connection.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_KEY])  # two clicks at once still make one task
    scores = {c: (score, reasons) for c, score, reasons in
              ChurnScore.objects.filter(customer_id__in=ids).values_list("customer_id", "score", "reasons")}
    rows = [{"customer_id": pk, "assignee_id": advisor_id, "title": f"流失预警回访：{name}",
             "source_label": f"流失预警 {scores[pk][0]} 分：" + "；".join(r.get("label", "") for r in scores[pk][1])}
            for pk, name, advisor_id in Customer.objects.filter(pk__in=scores).order_by("pk")
            .values_list("pk", "name", "advisor_id")]
    made = tasks_create(source=Task.Source.CHURN, rows=rows, due_at=now + timedelta(hours=TASK_DUE_HOURS),
                        skip_since=_day_start(now), now=now)
    created, no_advisor, total = len(made.created), made.no_assignee + made.out_of_scope, len(rows)
    result = {"created": created, "no_advisor": no_advisor, "already": total - created - no_advisor, "customers": total}
    audit_record(actor=actor, action="churn.tasks_create", target_type="advisor" if advisor else "customers",
                 target_id=str(advisor.pk) if advisor else "", details={**result, "customer_ids": ids[:200]})
    return result


def live_journeys():
    from sop.models import Journey

    return (Journey.objects.filter(status=Journey.Status.LIVE, live_version__isnull=False)
            .select_related("live_version").order_by("name", "pk"))


@transaction.atomic
def churn_enroll(*, actor, journey_id, customer_ids=None, advisor_id=None, now: datetime | None = None) -> dict:
    """Put the target clients into a running journey (hold-out applies as usual). Returns
    {"journey", "entered", "customers"}; a client already in it or enrolled from here today is skipped."""
    from customers.models import Customer
    from sop.engine import enroll_queryset

    now = now or timezone.now()
    raw = str(journey_id or "").strip()
    journey = live_journeys().filter(pk=int(raw)).first() if raw.isdigit() else None
    if journey is None:
        raise _error("journey_not_live", _("请选择一个运行中的 SOP 旅程"), "journey")
    ids, advisor = churn_targets(user=actor, customer_ids=customer_ids, advisor_id=advisor_id)
    customers = Customer.objects.visible_to(actor).filter(pk__in=ids)
    entered = enroll_queryset(version=journey.live_version, customers=customers,
                              trigger_key=f"churn:{timezone.localdate(now).isoformat()}", now=now)
    result = {"journey": journey.name, "journey_id": journey.pk, "entered": entered, "customers": len(ids)}
    audit_record(actor=actor, action="churn.sop_enroll", target_type="journey", target_id=str(journey.pk),
                 details={**result, "advisor": advisor.pk if advisor else None, "customer_ids": ids[:200]})
    return result
