"""URLs of the WeCom app for tests/test_scope.py (wecom-sync creates it; wecom-ops adds its lines).

The sync and review pages carry no object of a branch: they are for admins and operators (404 for the
roles test_scope.py walks) and list no customer."""

PAGES_WITHOUT_OBJECTS = {"wecom:sync_runs", "wecom:sync_runs_table", "wecom:review"}

OBJECT_KWARGS: dict = {}

# --- wecom-ops: contact ways (operators/admins: 404 by role for everyone test_scope.py walks) and transfers
# (branch managers for their branch, admins: the BJ manager gets 404 on a Shanghai transfer) ---------------
PAGES_WITHOUT_OBJECTS |= {"wecom:contact_ways", "wecom:contact_way_create", "wecom:transfers", "wecom:transfer_create",
                          "wecom:callback_events"}


def _sh_contact_way(objs):
    import secrets

    from integrations.wecom.models import ContactWay

    advisor = objs["customer"].advisor
    return ContactWay.objects.create(name="上海渠道活码", channel="sh", advisor=advisor, branch=advisor.branch,
                                     state=f"cwscope{secrets.token_hex(8)}", config_id="scope", created_by=objs["operator"]).pk


def _sh_transfer(objs):
    from core.services import staff_upsert
    from integrations.wecom.models import Transfer, TransferItem

    advisor = objs["customer"].advisor
    colleague = staff_upsert(username="advisor_sh_takeover", password="correct-horse-42", role="advisor",
                             branch=advisor.branch, display_name="上海接替投顾")
    transfer = Transfer.objects.create(kind="on_job", from_advisor=advisor, to_advisor=colleague)
    TransferItem.objects.create(transfer=transfer, customer=objs["customer"], status="local")
    return transfer.pk


OBJECT_KWARGS.update({"contact_way_id": _sh_contact_way, "transfer_id": _sh_transfer})
