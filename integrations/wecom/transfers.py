"""Handing an advisor's clients to another advisor: 离职继承 (the advisor left) and 在职转接 (reassignment).

In the product the clients (and their open tasks) move at once, in one transaction with the audit
row. In WeCom the external contacts are handed over through externalcontact/transfer_customer
(on the job) or externalcontact/resigned/transfer_customer (resigned), at most 100 per call; WeCom
answers per client, and the handover completes later (the client may refuse, or the new advisor may
be at their limit). ``transfers_poll`` (beat) submits what is still pending and asks
transfer_result / resigned/transfer_result how waiting clients ended; the transfer_fail callback
reports refusals as they happen. Clients without a WeCom contact of the departing advisor are
"local": only the product moves them.

When WeCom reports that a handover it had accepted did not happen (the client refused, the new advisor is
at their limit, or no handover record: transfer_fail, transfer_result 3/4/5), the client stays with the
departing advisor in WeCom, so the product moves them back too (:func:`transfer_items_revert`), unless
their advisor was changed again meanwhile; each item records what was done and why.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict

import requests
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from core.errors import ApplicationError
from core.models import Role, User
from core.navigation import user_may_use
from core.scoping import scope_for
from core.services import audit_record
from customers.models import Customer, Task
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
    if not user_may_use(user, "transfers"):
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
    if not user_may_use(user, "transfers"):
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
    )


# --- preview and start -----------------------------------------------------------------------------

def _wecom_contacts(customer_ids: list[int], handover_userid: str) -> dict[int, str]:
    """customer id → external_userid of their WeCom contact with the departing advisor (not deleted)."""
    if not handover_userid or not customer_ids:
        return {}
    found: dict[int, str] = {}
    rows = (ExternalContact.objects.filter(customer_id__in=customer_ids, deleted_at__isnull=True,
                                           follows__userid=handover_userid, follows__deleted_at__isnull=True)
            .values_list("customer_id", "external_userid"))
    for customer_id, external_userid in rows:
        found.setdefault(customer_id, external_userid)
    # contacts known only from the customer record (not synced yet), unless we know the follow is deleted
    deleted = set(ContactFollow.objects.filter(userid=handover_userid, deleted_at__isnull=False)
                  .values_list("contact__external_userid", flat=True))
    for customer_id, external_userid in Customer.objects.filter(
            pk__in=[c for c in customer_ids if c not in found], wecom_external_userid__isnull=False
    ).values_list("pk", "wecom_external_userid"):
        if external_userid and external_userid not in deleted:
            found[customer_id] = external_userid
    return found


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


def transfer_preview(*, actor: User, from_advisor: User) -> list[dict]:
    """The clients that would move, each with the WeCom contact that would be handed over (if any)."""
    customers = list(Customer.objects.visible_to(actor).filter(advisor=from_advisor)
                     .order_by("-total_assets", "pk")
                     .only("pk", "external_id", "name", "mobile_masked", "total_assets", "wecom_external_userid"))
    contacts = _wecom_contacts([c.pk for c in customers], from_advisor.wecom_userid or "")
    return [{"customer": c, "external_userid": contacts.get(c.pk, "")} for c in customers]


def transfer_start(*, actor: User, kind: str, from_advisor: User, to_advisor: User) -> Transfer:
    """Move every client of ``from_advisor`` (in the actor's scope) and their open tasks to ``to_advisor``,
    record one item per client, audit it. WeCom is called afterwards by :func:`transfer_submit`."""
    transfer_check(actor=actor, kind=kind, from_advisor=from_advisor, to_advisor=to_advisor)
    with transaction.atomic():
        customer_ids = list(Customer.objects.visible_to(actor).filter(advisor=from_advisor).order_by("pk")
                            .select_for_update().values_list("pk", flat=True))
        if not customer_ids:
            raise ApplicationError(TransferError.NO_CLIENTS, "该投顾名下没有可转接的客户", [{"field": "from_advisor"}])
        wecom_ok = bool(from_advisor.wecom_userid and to_advisor.wecom_userid)
        contacts = _wecom_contacts(customer_ids, from_advisor.wecom_userid or "") if wecom_ok else {}
        transfer = Transfer.objects.create(kind=kind, from_advisor=from_advisor, to_advisor=to_advisor, created_by=actor)
        TransferItem.objects.bulk_create([
            TransferItem(transfer=transfer, customer_id=cid, external_userid=contacts.get(cid, ""),
                         status=ItemStatus.PENDING if cid in contacts else ItemStatus.LOCAL)
            for cid in customer_ids
        ])
        now = timezone.now()
        Customer.objects.filter(pk__in=customer_ids).update(advisor=to_advisor, updated_at=now)
        tasks_moved = Task.objects.filter(customer_id__in=customer_ids, assignee=from_advisor,
                                          status=Task.Status.OPEN).update(assignee=to_advisor)
        if not contacts:
            transfer.finished_at = now
            transfer.save(update_fields=["finished_at"])
        audit_record(actor=actor, action="wecom.transfer_start", target_type="transfer", target_id=transfer.pk,
                     details={"kind": kind, "from": from_advisor.username, "to": to_advisor.username,
                              "customers": len(customer_ids), "wecom_contacts": len(contacts),
                              "tasks_moved": tasks_moved})
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
            reason = item.get_status_display() + (f"（{item.errmsg}）" if item.errmsg else "")
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
