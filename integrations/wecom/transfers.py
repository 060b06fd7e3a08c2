"""Handing an advisor's clients to another advisor: 离职继承 (the advisor left) and 在职转接 (reassignment).

In the product the clients (and their open tasks) move at once, in one transaction with the audit
row. In WeCom the external contacts are handed over through externalcontact/transfer_customer
(on the job) or externalcontact/resigned/transfer_customer (resigned), at most 100 per call; WeCom
answers per client, and the handover completes later (the client may refuse, or the new advisor may
be at their limit). ``transfers_poll`` (beat) submits what is still pending and asks
transfer_result / resigned/transfer_result how waiting clients ended; the transfer_fail callback
reports refusals as they happen.

Before anything moves, :func:`transfer_plan` decides each client's fate from what WeCom will accept (the preview
shows the counts, the start applies the same plan): the departing advisor's WeCom contacts are read from WeCom
(batch/get_by_user; the last sync when WeCom cannot be asked) and only those are submitted. Clients without a
WeCom contact, no longer the advisor's contact (WeCom: 84061) or already handed over by an earlier transfer move
in the product only ("local"); clients in another handover without a result yet (40129) or, on the job, handed
over twice in the last 90 days (WeCom's quota) are not moved at all ("skipped").

When WeCom reports that a handover it had accepted did not happen (the client refused, the new advisor is
at their limit, or no handover record: transfer_fail, transfer_result 3/4/5), the client stays with the
departing advisor in WeCom, so the product moves them back too (:func:`transfer_items_revert`), unless
their advisor was changed again meanwhile; each item records what was done and why.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.access import may
from core.errors import ApplicationError
from core.models import Role, User
from core.scoping import scope_for
from core.services import audit_record
from customers.models import Customer, Task
from integrations.wecom.error_codes import (
    NOT_A_CONTACT_ERRCODE,
    TRANSFER_IN_PROGRESS_ERRCODE,
    TRANSFER_QUOTA_ERRCODE,
)
from integrations.wecom.models import ContactFollow, ExternalContact, Transfer, TransferItem

logger = logging.getLogger(__name__)

ItemStatus = TransferItem.Status
BATCH = 100  # WeCom's limit of external_userid per transfer_customer call
OPEN = (ItemStatus.PENDING, ItemStatus.WAITING)
REVERTED_STATUSES = (ItemStatus.REFUSED, ItemStatus.LIMITED, ItemStatus.FAILED)
RESULT_STATUS = {1: ItemStatus.DONE, 2: ItemStatus.WAITING, 3: ItemStatus.REFUSED, 4: ItemStatus.LIMITED,
                 5: ItemStatus.FAILED}
RESULT_MESSAGES = {5: "企业微信无接替记录"}
# whole-call errors worth trying again later (frequency limits, system busy): items stay pending
# (None: WeCom not reachable or not configured)
RETRY_LATER_ERRCODES = {None, -1, 45009, 45033, 45035, 45011}


class TransferError(enum.StrEnum):
    NOT_ALLOWED = "wecom_transfer_not_allowed"
    SAME_ADVISOR = "wecom_transfer_same_advisor"
    OTHER_BRANCH = "wecom_transfer_other_branch"
    TAKEOVER_INACTIVE = "wecom_transfer_takeover_inactive"
    NO_CLIENTS = "wecom_transfer_no_clients"


# --- scope -----------------------------------------------------------------------------------------

def transfer_advisors_for(user: User, *, active_only: bool = False):
    """Advisors whose clients ``user`` may hand over (their branch for a branch manager, all for an admin)."""
    if not may(user, "transfers"):
        return User.objects.none()
    scope = scope_for(user)
    advisors = User.objects.filter(role=Role.ADVISOR).select_related("branch").order_by("branch__code", "username")
    if active_only:
        advisors = advisors.filter(is_active=True)
    if scope.everything:
        return advisors
    if scope.branch_id is not None:
        return advisors.filter(branch_id=scope.branch_id)
    return User.objects.none()


def transfers_for(user: User):
    """Transfers ``user`` may see: of their branch's advisors (branch manager), all (admin), none otherwise."""
    if not may(user, "transfers"):
        return Transfer.objects.none()
    scope = scope_for(user)
    rows = Transfer.objects.select_related("from_advisor__branch", "to_advisor", "created_by")
    if scope.everything:
        return rows
    if scope.branch_id is not None:
        return rows.filter(from_advisor__branch_id=scope.branch_id)
    return Transfer.objects.none()


def transfer_with_counts(rows):
    return rows.annotate(
        item_count=Count("items"),
        done_count=Count("items", filter=Q(items__status=ItemStatus.DONE)),
        open_count=Count("items", filter=Q(items__status__in=OPEN)),
        problem_count=Count("items", filter=Q(items__status__in=[ItemStatus.REFUSED, ItemStatus.LIMITED,
                                                                 ItemStatus.FAILED])),
        local_count=Count("items", filter=Q(items__status=ItemStatus.LOCAL)),
        skipped_count=Count("items", filter=Q(items__status=ItemStatus.SKIPPED)),
    )


# --- preview and start -----------------------------------------------------------------------------

class Plan(enum.StrEnum):
    """What a transfer will do with each client, decided before anything moves (the preview shows the counts)."""

    WECOM = "wecom"  # handed over in WeCom too
    LOCAL = "local"  # no WeCom contact (or an advisor without a WeCom account): moved here only
    NOT_FRIEND = "not_friend"  # not (or no longer) the departing advisor's WeCom contact (WeCom: 84061)
    DONE = "done"  # an earlier transfer already handed them over in WeCom
    IN_PROGRESS = "in_progress"  # in another handover that has no result yet (WeCom: 40129)
    QUOTA = "quota"  # on the job: handed over twice in the last 90 days already (WeCom's quota)


PLAN_LABELS = {
    Plan.WECOM: (_("企业微信中一并转接"), _("原投顾的企业微信好友，提交企业微信后约 24 小时自动接替")),
    Plan.LOCAL: (_("仅系统内转移：无企业微信联系人"), _("客户没有企业微信联系人，或投顾未绑定企业微信")),
    Plan.NOT_FRIEND: (_("仅系统内转移：不是原投顾的企业微信好友"),
                      _("已删除好友或从未添加，企业微信无法转接（会答复 84061），只在系统内转给接替投顾")),
    Plan.DONE: (_("仅系统内转移：企业微信中已转接完毕"), _("此前的转接已在企业微信中完成，无需再提交")),
    Plan.IN_PROGRESS: (_("本次不转：正在另一次转接中"),
                       _("企业微信中尚无结果（会答复 40129），客户留在原投顾名下，待有结果后再转")),
    Plan.QUOTA: (_("本次不转：90 天内已在职转接 2 次"),
                 _("企业微信规定每位客户 90 个自然日内最多被在职转接 2 次，客户留在原投顾名下")),
}
MOVED_HERE = (Plan.WECOM, Plan.LOCAL, Plan.NOT_FRIEND, Plan.DONE)  # the product moves these; the others stay
PLAN_ERRCODES = {Plan.NOT_FRIEND: NOT_A_CONTACT_ERRCODE, Plan.IN_PROGRESS: TRANSFER_IN_PROGRESS_ERRCODE,
                 Plan.QUOTA: TRANSFER_QUOTA_ERRCODE}
ON_JOB_QUOTA, QUOTA_WINDOW = 2, timedelta(days=90)  # WeCom: 90个自然日内，在职成员的每位客户仅可被转接2次


@dataclass
class TransferPlan:
    """Each client's Plan (customer id → (plan, external_userid)), the counts per plan, and whether the departing
    advisor's WeCom contacts were read from WeCom just now (``checked_live``) or from the last sync (``note``: why)."""

    plans: dict[int, tuple[str, str]] = field(default_factory=dict)
    checked_live: bool = False
    note: str = ""

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(Plan, 0)
        for plan, _eid in self.plans.values():
            counts[plan] += 1
        return counts

    def categories(self) -> list[dict]:
        """Every plan with its count, label and explanation, in Plan order (for the page)."""
        counts = self.counts
        return [{"plan": p.value, "count": counts[p], "label": PLAN_LABELS[p][0], "hint": PLAN_LABELS[p][1],
                 "moves": p in MOVED_HERE} for p in Plan]


def _contacts_in_wecom(userid: str) -> tuple[set[str] | None, str]:
    """The external_userids WeCom lists for ``userid`` now (batch/get_by_user, 100 per page), or None and why not
    (not configured, unreachable, or WeCom refuses, e.g. for a member already deleted)."""
    from integrations.wecom.client import WecomError, wecom_client

    try:
        client = wecom_client()
        found: set[str] = set()
        cursor = ""
        for _page in range(10_000):
            page = client.post("externalcontact/batch/get_by_user",
                               data={"userid_list": [userid], "cursor": cursor, "limit": 100})
            found |= {str((item.get("external_contact") or {}).get("external_userid") or "")
                      for item in page.get("external_contact_list") or []}
            cursor = page.get("next_cursor") or ""
            if not cursor:
                break
        return found - {""}, ""
    except WecomError as exc:
        return None, exc.message
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}"


def _contacts_synced(customer_ids: list[int], userid: str) -> set[str]:
    """The same from the last sync: live follows of ``userid``, plus ids known only from the customer record
    (not synced yet) unless that follow is known deleted."""
    followed = set(ContactFollow.objects.filter(userid=userid, deleted_at__isnull=True, contact__deleted_at__isnull=True)
                   .values_list("contact__external_userid", flat=True))
    deleted = set(ContactFollow.objects.filter(userid=userid).exclude(deleted_at__isnull=True)
                  .values_list("contact__external_userid", flat=True))
    unsynced = set(Customer.objects.filter(pk__in=customer_ids, wecom_external_userid__isnull=False)
                   .exclude(wecom_external_userid="").values_list("wecom_external_userid", flat=True))
    known = set(ExternalContact.objects.filter(external_userid__in=unsynced).values_list("external_userid", flat=True))
    return followed | (unsynced - deleted - known)


def transfer_plan(*, kind: str, from_advisor: User, to_advisor: User, customer_ids: list[int],
                  now=None, live: bool = True) -> TransferPlan:
    """What a transfer of these clients will do with each (see Plan), from what WeCom will accept: the departing
    advisor's contacts (read from WeCom now when ``live``, else from the last sync), the open and finished
    handovers recorded here, and WeCom's on-the-job quota. The preview and the start both use it."""
    now = now or timezone.now()
    result = TransferPlan()
    handover = from_advisor.wecom_userid or ""
    if not (handover and to_advisor.wecom_userid):
        result.plans = {cid: (Plan.LOCAL, "") for cid in customer_ids}
        result.note = _("原投顾或接替投顾未绑定企业微信，客户只在系统内转移")
        return result
    followed, why = _contacts_in_wecom(handover) if live else (None, "")
    result.checked_live = followed is not None
    if followed is None:
        followed = _contacts_synced(customer_ids, handover)
        result.note = _("未能从企业微信读取原投顾当前的客户（%(why)s），以下按最近一次同步的数据判断") % {
            "why": why or _("未核对")}
    ids_of: dict[int, list[str]] = defaultdict(list)
    for cid, eid in Customer.objects.filter(pk__in=customer_ids).values_list("pk", "wecom_external_userid"):
        if eid:
            ids_of[cid].append(eid)
    for cid, eid in (ExternalContact.objects.filter(customer_id__in=customer_ids).order_by("pk")
                     .values_list("customer_id", "external_userid")):
        if eid not in ids_of[cid]:
            ids_of[cid].append(eid)
    every_id = {eid for ids in ids_of.values() for eid in ids}
    in_progress = set(TransferItem.objects.filter(external_userid__in=every_id, status__in=OPEN)
                      .values_list("external_userid", flat=True))
    done_before = set(TransferItem.objects.filter(external_userid__in=every_id, status=ItemStatus.DONE,
                                                  transfer__from_advisor=from_advisor)
                      .values_list("external_userid", flat=True))
    quota_used: dict[str, int] = defaultdict(int)
    if kind == Transfer.Kind.ON_JOB:
        for eid in (TransferItem.objects.filter(external_userid__in=every_id, errcode=0,
                                                transfer__kind=Transfer.Kind.ON_JOB,
                                                transfer__created_at__gte=now - QUOTA_WINDOW)
                    .values_list("external_userid", flat=True)):
            quota_used[eid] += 1
    for cid in customer_ids:
        ids = ids_of.get(cid) or []
        friend = next((eid for eid in ids if eid in followed), "")
        busy = next((eid for eid in ids if eid in in_progress), "")
        if busy:
            result.plans[cid] = (Plan.IN_PROGRESS, busy)
        elif friend and quota_used[friend] >= ON_JOB_QUOTA:
            result.plans[cid] = (Plan.QUOTA, friend)
        elif friend:
            result.plans[cid] = (Plan.WECOM, friend)
        elif not ids:
            result.plans[cid] = (Plan.LOCAL, "")
        else:
            done = next((eid for eid in ids if eid in done_before), "")
            result.plans[cid] = (Plan.DONE, done) if done else (Plan.NOT_FRIEND, ids[0])
    return result


def transfer_check(*, actor: User, kind: str, from_advisor: User, to_advisor: User) -> None:
    """The rules a transfer must satisfy; ApplicationError naming the field otherwise."""
    if kind not in Transfer.Kind.values:
        raise ApplicationError(TransferError.NOT_ALLOWED, "请选择转接类型", [{"field": "kind"}])
    advisors = transfer_advisors_for(actor)
    if not advisors.filter(pk=from_advisor.pk).exists():
        raise ApplicationError(TransferError.NOT_ALLOWED, "您不能转接该投顾的客户", [{"field": "from_advisor"}])
    if not advisors.filter(pk=to_advisor.pk).exists():
        raise ApplicationError(TransferError.NOT_ALLOWED, "您不能把客户转给该投顾", [{"field": "to_advisor"}])
    if from_advisor.pk == to_advisor.pk:
        raise ApplicationError(TransferError.SAME_ADVISOR, "接替投顾不能是原投顾本人", [{"field": "to_advisor"}])
    if not to_advisor.is_active:
        raise ApplicationError(TransferError.TAKEOVER_INACTIVE, "接替投顾的账号已停用", [{"field": "to_advisor"}])
    if from_advisor.branch_id != to_advisor.branch_id:
        raise ApplicationError(TransferError.OTHER_BRANCH, "接替投顾须与原投顾属于同一营业部", [{"field": "to_advisor"}])


def transfer_preview(*, actor: User, kind: str, from_advisor: User, to_advisor: User) -> tuple[list[dict], TransferPlan]:
    """The clients that would move (largest assets first), each with its Plan and WeCom contact, and the plan."""
    customers = list(Customer.objects.visible_to(actor).filter(advisor=from_advisor)
                     .order_by("-total_assets", "pk")
                     .only("pk", "external_id", "name", "mobile_masked", "total_assets", "wecom_external_userid"))
    plan = transfer_plan(kind=kind, from_advisor=from_advisor, to_advisor=to_advisor,
                         customer_ids=[c.pk for c in customers])
    rows = []
    for c in customers:
        category, eid = plan.plans[c.pk]
        rows.append({"customer": c, "external_userid": eid if category == Plan.WECOM else "", "plan": category,
                     "plan_label": PLAN_LABELS[Plan(category)][0], "moves": category in MOVED_HERE})
    return rows, plan


def _item_for(transfer: Transfer, cid: int, category: str, eid: str) -> TransferItem:
    item = TransferItem(transfer=transfer, customer_id=cid, external_userid=eid,
                        errcode=PLAN_ERRCODES.get(Plan(category)))
    if category == Plan.WECOM:
        item.status = ItemStatus.PENDING
    elif category in MOVED_HERE:
        item.status = ItemStatus.LOCAL
        item.errmsg = "" if category == Plan.LOCAL else str(PLAN_LABELS[Plan(category)][0])
    else:
        item.status = ItemStatus.SKIPPED
        item.errmsg = str(PLAN_LABELS[Plan(category)][0])
    return item


def transfer_start(*, actor: User, kind: str, from_advisor: User, to_advisor: User) -> Transfer:
    """Move the clients of ``from_advisor`` (in the actor's scope) and their open tasks to ``to_advisor`` as
    :func:`transfer_plan` decides (clients in another handover or over WeCom's quota stay), record one item per
    client, audit it. WeCom is called afterwards, for the WECOM ones only, by :func:`transfer_submit`."""
    transfer_check(actor=actor, kind=kind, from_advisor=from_advisor, to_advisor=to_advisor)
    with transaction.atomic():
        customer_ids = list(Customer.objects.visible_to(actor).filter(advisor=from_advisor).order_by("pk")
                            .select_for_update().values_list("pk", flat=True))
        if not customer_ids:
            raise ApplicationError(TransferError.NO_CLIENTS, "该投顾名下没有可转接的客户", [{"field": "from_advisor"}])
        plan = transfer_plan(kind=kind, from_advisor=from_advisor, to_advisor=to_advisor, customer_ids=customer_ids)
        transfer = Transfer.objects.create(kind=kind, from_advisor=from_advisor, to_advisor=to_advisor, created_by=actor)
        items = [_item_for(transfer, cid, *plan.plans[cid]) for cid in customer_ids]
        TransferItem.objects.bulk_create(items)
        moving = [item.customer_id for item in items if item.status != ItemStatus.SKIPPED]
        now = timezone.now()
        Customer.objects.filter(pk__in=moving).update(advisor=to_advisor, updated_at=now)
        tasks_moved = Task.objects.filter(customer_id__in=moving, assignee=from_advisor,
                                          status=Task.Status.OPEN).update(assignee=to_advisor)
        wecom_contacts = sum(1 for item in items if item.status == ItemStatus.PENDING)
        if not wecom_contacts:
            transfer.finished_at = now
            transfer.save(update_fields=["finished_at"])
        audit_record(actor=actor, action="wecom.transfer_start", target_type="transfer", target_id=transfer.pk,
                     details={"kind": kind, "from": from_advisor.username, "to": to_advisor.username,
                              "customers": len(moving), "wecom_contacts": wecom_contacts,
                              "tasks_moved": tasks_moved, "plan": {k.value: v for k, v in plan.counts.items()},
                              "checked_live": plan.checked_live})
    return transfer


# --- WeCom -----------------------------------------------------------------------------------------

def _paths(kind: str) -> tuple[str, str]:
    if kind == Transfer.Kind.RESIGNED:
        return "externalcontact/resigned/transfer_customer", "externalcontact/resigned/transfer_result"
    return "externalcontact/transfer_customer", "externalcontact/transfer_result"


def transfer_finish_if_settled(transfer_id: int) -> None:
    if not TransferItem.objects.filter(transfer_id=transfer_id, status__in=OPEN).exists():
        Transfer.objects.filter(pk=transfer_id, finished_at__isnull=True).update(finished_at=timezone.now())


def _item_update(transfer: Transfer, external_userid: str, **fields) -> int:
    return TransferItem.objects.filter(transfer=transfer, external_userid=external_userid).exclude(
        status=ItemStatus.DONE).update(updated_at=timezone.now(), **fields)


def transfer_start_and_submit(*, actor: User, kind: str, from_advisor: User, to_advisor: User) -> tuple[Transfer, bool]:
    """Start the handover here (committed), then hand it to WeCom at once; the product side stands even when
    WeCom cannot be reached (the beat poll submits what is left). Returns the transfer and whether the first
    submission went through."""
    transfer = transfer_start(actor=actor, kind=kind, from_advisor=from_advisor, to_advisor=to_advisor)
    try:
        transfer_submit(transfer)
    except Exception:  # noqa: BLE001 - anything WeCom-side; the clients have already moved
        logger.exception("submitting transfer %s to WeCom failed", transfer.pk)
        return transfer, False
    return transfer, True


def transfer_submit(transfer: Transfer) -> int:
    """Hand the pending contacts over in WeCom, ≤100 per call; each client's answer goes on its item.
    Returns how many were submitted. A frequency limit or no connection leaves the rest pending (the
    beat poll submits them later); any other error of a whole call fails that call's items."""
    from integrations.wecom.client import WecomError, wecom_client

    submit_path, _ = _paths(transfer.kind)
    handover, takeover = transfer.from_advisor.wecom_userid, transfer.to_advisor.wecom_userid
    submitted = 0
    while True:
        batch = list(TransferItem.objects.filter(transfer=transfer, status=ItemStatus.PENDING)
                     .order_by("pk").values_list("external_userid", flat=True)[:BATCH])
        if not batch:
            break
        try:
            answer = wecom_client().post(submit_path, data={"handover_userid": handover, "takeover_userid": takeover,
                                                            "external_userid": batch})
        except WecomError as exc:
            errcode = getattr(exc, "errcode", None)
            if errcode in RETRY_LATER_ERRCODES:
                logger.warning("transfer %s: WeCom busy (%s), will retry", transfer.pk, errcode)
                break
            with transaction.atomic():
                for external_userid in batch:
                    _item_update(transfer, external_userid, status=ItemStatus.FAILED, errcode=errcode,
                                 errmsg=str(getattr(exc, "errmsg", exc))[:300])
            submitted += len(batch)
            continue
        except requests.RequestException:
            logger.warning("transfer %s: WeCom unreachable, will retry", transfer.pk, exc_info=True)
            break
        answered = {str(row.get("external_userid")): row for row in answer.get("customer") or []}
        with transaction.atomic():
            for external_userid in batch:
                row = answered.get(external_userid)
                if row is None:
                    _item_update(transfer, external_userid, status=ItemStatus.FAILED, errmsg="企业微信未返回该客户的结果")
                elif int(row.get("errcode") or 0) == 0:
                    _item_update(transfer, external_userid, status=ItemStatus.WAITING, errcode=0, errmsg="")
                else:
                    _item_update(transfer, external_userid, status=ItemStatus.FAILED, errcode=int(row["errcode"]),
                                 errmsg=str(row.get("errmsg") or "")[:300])
        submitted += len(batch)
    transfer_finish_if_settled(transfer.pk)
    return submitted


def transfer_poll(transfer: Transfer) -> int:
    """Ask WeCom how the waiting clients ended (paged by cursor); returns how many items changed."""
    from integrations.wecom.client import wecom_client

    if not TransferItem.objects.filter(transfer=transfer, status=ItemStatus.WAITING).exists():
        transfer_finish_if_settled(transfer.pk)
        return 0
    _, result_path = _paths(transfer.kind)
    data = {"handover_userid": transfer.from_advisor.wecom_userid, "takeover_userid": transfer.to_advisor.wecom_userid}
    changed, cursor, pages = 0, "", 0
    while pages < 1000:
        answer = wecom_client().post(result_path, data={**data, "cursor": cursor} if cursor else data)
        with transaction.atomic():
            for row in answer.get("customer") or []:
                status = RESULT_STATUS.get(int(row.get("status") or 0))
                if status is None or status == ItemStatus.WAITING:
                    continue
                items = TransferItem.objects.filter(transfer=transfer, external_userid=str(row.get("external_userid")),
                                                    status=ItemStatus.WAITING)
                ids = list(items.values_list("pk", flat=True))
                changed += items.update(status=status, errmsg=RESULT_MESSAGES.get(int(row["status"]), ""),
                                        updated_at=timezone.now())
                if status in REVERTED_STATUSES:
                    transfer_items_revert(item_ids=ids)
        cursor, pages = answer.get("next_cursor") or "", pages + 1
        if not cursor:
            break
    transfer_finish_if_settled(transfer.pk)
    return changed


def transfer_items_revert(*, item_ids: list[int]) -> int:
    """Undo the product side of these failed handovers: each client goes back to the departing advisor with
    the open tasks that moved with them (created before the transfer), audited (``wecom.transfer_revert``).
    A client whose advisor is no longer the takeover advisor (changed again meanwhile) is left alone and the
    item says so. Idempotent (an item is reverted once); returns how many clients moved back."""
    moved = 0
    with transaction.atomic():
        items = (TransferItem.objects.select_for_update(of=("self",)).filter(pk__in=item_ids, reverted_at=None,
                                                                              revert_note="")
                 .select_related("transfer__from_advisor", "transfer__to_advisor").order_by("pk"))
        for item in items:
            transfer = item.transfer
            reason = (_("%(name)s（%(code)s）") % {"name": item.get_status_display(), "code": item.errmsg} if item.errmsg
                      else str(item.get_status_display()))
            customer = Customer.objects.select_for_update().get(pk=item.customer_id)
            if customer.advisor_id != transfer.to_advisor_id:
                TransferItem.objects.filter(pk=item.pk).update(revert_note=f"{reason}；客户的投顾已另行变更，未退回"[:200])
                continue
            now = timezone.now()
            back_to = transfer.from_advisor
            Customer.objects.filter(pk=customer.pk).update(advisor=back_to, updated_at=now)
            tasks = Task.objects.filter(customer=customer, assignee=transfer.to_advisor, status=Task.Status.OPEN,
                                        created_at__lt=transfer.created_at).update(assignee=back_to)
            name = back_to.display_name or back_to.username
            TransferItem.objects.filter(pk=item.pk).update(reverted_at=now, revert_note=f"{reason}；已退回原投顾 {name}"[:200])
            audit_record(actor="wecom", action="wecom.transfer_revert", target_type="transfer", target_id=transfer.pk,
                         details={"customer": customer.external_id, "status": item.status, "reason": item.errmsg,
                                  "back_to": back_to.username, "tasks_moved": tasks})
            moved += 1
    return moved


def transfers_poll() -> int:
    """Beat: submit pending items of every open transfer, then poll the waiting ones. One transfer's
    failure does not stop the others (it is logged and tried again next time)."""
    open_ids = defaultdict(set)
    for transfer_id, status in (TransferItem.objects.filter(status__in=OPEN, transfer__finished_at__isnull=True)
                                .values_list("transfer_id", "status").distinct()):
        open_ids[transfer_id].add(status)
    changed = 0
    for transfer in Transfer.objects.filter(pk__in=list(open_ids)).select_related("from_advisor", "to_advisor"):
        try:
            if ItemStatus.PENDING in open_ids[transfer.pk]:
                changed += transfer_submit(transfer)
            changed += transfer_poll(transfer)
        except Exception:  # noqa: BLE001 - next transfer; this one is retried on the next beat
            logger.exception("polling transfer %s failed", transfer.pk)
    return changed


def transfer_items_for(*, user: User, transfer: Transfer):
    return (TransferItem.objects.visible_to(user).filter(transfer=transfer)
            .select_related("customer").order_by("status", "customer__name", "pk"))
