"""Every write to customers and what belongs to them; audit rows go in the same transaction."""

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from core.access import may
from core.crypto import blind_index, decrypt, mask_id_number, mask_mobile
from core.errors import ApplicationError
from core.events import CustomersChanged, NoteCreated, TaskCompleted, emit
from core.scoping import scope_for
from core.services import audit_record
from customers import selectors
from customers.error_codes import CustomerError
from customers.models import Customer, Note, Task

REVEALABLE = {"mobile": "mobile_encrypted", "id_number": "id_number_encrypted"}


def customer_touch_contact(*, customer_ids: list[int], at: datetime) -> None:
    """Move ``last_contact_at`` forward (never backwards) for the given customers."""
    Customer.objects.filter(pk__in=customer_ids).filter(
        Q(last_contact_at__isnull=True) | Q(last_contact_at__lt=at)
    ).update(last_contact_at=at)


@transaction.atomic
def customer_reveal(*, user, customer: Customer, field: str, reason: str, ip_address: str | None = None) -> str:
    """Plaintext of one personal field for a permitted user, with an audit row saying who, why, from where."""
    if field not in REVEALABLE or not scope_for(user).personal_data:
        raise ApplicationError(CustomerError.REVEAL_NOT_ALLOWED, _("您的角色不能查看客户的个人信息"), status_code=403)
    reason = (reason or "").strip()
    if len(reason) < 2:
        raise ApplicationError(CustomerError.REVEAL_REASON_REQUIRED, _("请填写查看原因"), [{"field": "reason"}])
    audit_record(actor=user, action="customer.reveal", target_type="customer", target_id=customer.external_id,
                 reason=reason, ip_address=ip_address, details={"field": field})
    return decrypt(getattr(customer, REVEALABLE[field]))


def pii_search_rate_key(user) -> str:
    return f"customers:pii-search:{user.pk}"


def _pii_search_count(user) -> int:
    """Count one exact search of ``user`` in the current window (which starts at their first search)."""
    key = pii_search_rate_key(user)
    if cache.add(key, 1, timeout=settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # the window ended between add and incr
        cache.add(key, 1, timeout=settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS)
        return 1


def customer_search(*, user, filters: dict, sort: str = selectors.DEFAULT_SORT, after: str | None = None,
                    limit: int = 50, with_total: bool = True, ip_address: str | None = None) -> selectors.CustomerPage:
    """The customer list for ``filters`` (selectors.customer_list). A search ``q`` with the shape of a mobile or
    ID number is an exact search of personal data: only for roles with personal data (the selector answers
    others by name and customer number and flags ``search_refused``), at most CUSTOMER_PII_SEARCH_LIMIT per user
    per window (then 429 ``pii_search_rate_limited``, the first refusal audited as
    ``customer.pii_search_limited``), and each one audited as ``customer.pii_search`` with the field, the term
    masked and keyed-hashed (never in clear) and the number of matches."""
    term = (filters.get("q") or "").strip()
    kind = selectors.customer_search_kind(term) if term else None
    exact = kind is not None and scope_for(user).personal_data
    if exact:
        count = _pii_search_count(user)
        limit_per_window = settings.CUSTOMER_PII_SEARCH_LIMIT
        if count > limit_per_window:
            if count == limit_per_window + 1:
                audit_record(actor=user, action="customer.pii_search_limited", ip_address=ip_address,
                             details={"limit": limit_per_window,
                                      "window_seconds": settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS})
            window = settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS
            per = _("每小时") if window == 3600 else _("每 %(n)s 分钟") % {"n": max(window // 60, 1)}
            raise ApplicationError(
                CustomerError.PII_SEARCH_RATE_LIMITED,
                _("按手机号或身份证号搜索过于频繁（%(per)s最多 %(n)s 次），请稍后再试，或按姓名、客户号搜索")
                % {"per": per, "n": limit_per_window},
                status_code=429)
    page = selectors.customer_list(user=user, filters=filters, sort=sort, after=after, limit=limit,
                                   with_total=with_total)
    if exact:
        normalised = selectors.customer_search_term(term)
        matches = page.total if page.total is not None else len(page.customers)
        single = page.customers[0].external_id if matches == 1 and page.customers else ""
        audit_record(actor=user, action="customer.pii_search", target_type="customer" if single else "",
                     target_id=single, ip_address=ip_address,
                     details={"field": kind, "matches": matches, "term_hash": blind_index(normalised),
                              "term_masked": mask_mobile(normalised) if kind == "mobile" else mask_id_number(normalised)})
    return page


@transaction.atomic
def note_create(*, author, customer: Customer, body: str) -> Note:
    body = (body or "").strip()
    if not body:
        raise ApplicationError(CustomerError.NOTE_EMPTY, _("跟进记录不能为空"), [{"field": "body"}])
    note = Note.objects.create(customer=customer, author=author, body=body)
    note.refresh_from_db(fields=["created_at"])
    customer_touch_contact(customer_ids=[customer.pk], at=note.created_at)
    emit(NoteCreated(note_id=note.pk, customer_id=customer.pk))
    return note


@dataclass
class TasksCreated:
    created: list[int] = field(default_factory=list)  # the new tasks' ids, in row order
    rows: list[tuple[int, int, str]] = field(default_factory=list)  # (task id, customer id, source label) of each
    out_of_scope: int = 0  # the assignee may not see the customer (or is inactive): no task
    no_assignee: int = 0  # nobody to give it to (a customer without an advisor)
    already: int = 0  # an open task of the same source exists (``skip_open``) or one was made since ``skip_since``
    would_create: int = 0  # ``dry_run``: how many tasks the same call would create ...
    assignees: int = 0  # ... for how many different assignees


_TASK_ROWS = "customers_task_rows"


@transaction.atomic
def tasks_create(*, source: str, rows=None, customers=None, title: str = "", due_at: datetime | None = None,
                 source_label: str = "", skip_open: bool = False, skip_since: datetime | None = None,
                 now: datetime | None = None, dry_run: bool = False) -> TasksCreated:
    """The one way tasks are created (manual, SOP steps, a segment's bulk action, churn follow-ups, group invites):
    set-based, and never for an assignee who may not see the customer (core.scoping, the same rule as every page).

    ``rows``: dicts with ``customer_id``, ``assignee_id`` and optionally ``title``, ``due_at``, ``source_label``;
    or ``customers``: a Customer queryset, each task for the customer's advisor. The other arguments are the
    defaults for every row. ``skip_open`` / ``skip_since`` leave out customers that already have an open task of
    this source / one made since then. Returns the new ids in row order and what was skipped. ``dry_run`` creates
    nothing and returns what the same call would create (``would_create``, ``assignees``): a confirmation page
    counts with the creator itself."""
    from core.scoping import staff_sees_customer_sql

    if source not in Task.Source.values:
        raise ApplicationError("task_source_invalid", _("未知的任务来源：%(source)s") % {"source": source})
    now = now or timezone.now()
    due_at = due_at or now + timedelta(days=1)
    with connection.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {_TASK_ROWS} (n serial, customer_id bigint, assignee_id bigint, "
                    "title varchar(200), due_at timestamptz, source_label varchar(200)) ON COMMIT DROP")
        cur.execute(f"TRUNCATE {_TASK_ROWS} RESTART IDENTITY")
        if customers is not None:
            sql, params = customers.order_by("pk").values("pk", "advisor_id").query.sql_with_params()
            cur.execute(f"INSERT INTO {_TASK_ROWS} (customer_id, assignee_id, title, due_at, source_label) "
                        f"SELECT m.id, m.advisor_id, %s, %s, %s FROM ({sql}) AS m(id, advisor_id)",
                        [title[:200], due_at, source_label[:200], *params])
        else:
            rows = list(rows or [])
            cur.execute(f"INSERT INTO {_TASK_ROWS} (customer_id, assignee_id, title, due_at, source_label) "
                        "SELECT * FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::timestamptz[], %s::text[])",
                        [[r["customer_id"] for r in rows], [r.get("assignee_id") for r in rows],
                         [str(r.get("title") or title)[:200] for r in rows], [r.get("due_at") or due_at for r in rows],
                         [str(r.get("source_label") or source_label)[:200] for r in rows]])
        existing = ("EXISTS (SELECT 1 FROM customers_task k WHERE k.customer_id = r.customer_id AND k.source = %s "
                    "AND ((%s AND k.status = 'open') OR k.created_at >= %s))")
        checked = f"""
            WITH checked AS (
                SELECT r.*, u.id IS NOT NULL AS has_assignee,
                       u.id IS NOT NULL AND {staff_sees_customer_sql(staff='u', customer='c')} AS in_scope,
                       {existing} AS exists_already
                FROM {_TASK_ROWS} r JOIN customers_customer c ON c.id = r.customer_id
                LEFT JOIN core_user u ON u.id = r.assignee_id)"""
        if dry_run:
            cur.execute(f"""{checked}
                SELECT count(*) FILTER (WHERE in_scope AND NOT exists_already),
                       count(DISTINCT assignee_id) FILTER (WHERE in_scope AND NOT exists_already),
                       count(*) FILTER (WHERE has_assignee AND NOT in_scope), count(*) FILTER (WHERE NOT has_assignee),
                       count(*) FILTER (WHERE in_scope AND exists_already)
                FROM checked""", [source, skip_open, skip_since or datetime.max.replace(tzinfo=UTC)])
            would, assignees, out_of_scope, no_assignee, already = cur.fetchone()
            cur.execute(f"TRUNCATE {_TASK_ROWS}")
            return TasksCreated(would_create=would, assignees=assignees, out_of_scope=out_of_scope,
                                no_assignee=no_assignee, already=already)
        cur.execute(f"""{checked},
            made AS (
                INSERT INTO customers_task (customer_id, assignee_id, title, due_at, source, source_label, status,
                                            outcome, outcome_note, created_at)
                SELECT customer_id, assignee_id, title, due_at, %s, source_label, 'open', '', '', %s
                FROM checked WHERE in_scope AND NOT exists_already ORDER BY n
                RETURNING id, customer_id, source_label)
            SELECT (SELECT coalesce(json_agg(json_build_array(id, customer_id, source_label) ORDER BY id), '[]')
                    FROM made),
                   (SELECT count(*) FILTER (WHERE has_assignee AND NOT in_scope) FROM checked),
                   (SELECT count(*) FILTER (WHERE NOT has_assignee) FROM checked),
                   (SELECT count(*) FILTER (WHERE in_scope AND exists_already) FROM checked)
        """, [source, skip_open, skip_since or datetime.max.replace(tzinfo=UTC), source, now])
        made, out_of_scope, no_assignee, already = cur.fetchone()
        cur.execute(f"TRUNCATE {_TASK_ROWS}")
    made = json.loads(made) if isinstance(made, str) else made
    return TasksCreated(created=[m[0] for m in made], rows=[tuple(m) for m in made], out_of_scope=out_of_scope,
                        no_assignee=no_assignee, already=already)


@transaction.atomic
def task_create(*, customer: Customer, assignee, title: str, due_at: datetime, source: str = Task.Source.MANUAL,
                source_label: str = "") -> Task:
    """One task (tasks_create); refused when the assignee may not see the customer."""
    result = tasks_create(source=source, rows=[{"customer_id": customer.pk, "assignee_id": getattr(assignee, "pk", None)}],
                          title=title, due_at=due_at, source_label=source_label)
    if not result.created:
        raise ApplicationError(CustomerError.TASK_ASSIGNEE_OUT_OF_SCOPE, _("负责人不能看到该客户"),
                               [{"field": "assignee"}])
    return Task.objects.get(pk=result.created[0])


@transaction.atomic
def task_complete(*, user, task: Task, outcome: str, note: str = "") -> Task:
    """Close an open task with an outcome (audited); the outcome counts as a contact with the client. Only roles of
    the "tasks" feature close tasks (core/access.py); which tasks, the caller's scope decided."""
    if not may(user, "tasks"):
        raise ApplicationError(CustomerError.TASK_NOT_ALLOWED, _("您的角色不能处理任务"), status_code=403)
    task = Task.objects.select_for_update().get(pk=task.pk)
    if task.status != Task.Status.OPEN:
        raise ApplicationError(CustomerError.TASK_NOT_OPEN, _("该任务已关闭"))
    if outcome not in Task.Outcome.values:
        raise ApplicationError(CustomerError.TASK_OUTCOME_REQUIRED, _("请选择任务结果"), [{"field": "outcome"}])
    now = timezone.now()
    task.status, task.outcome, task.outcome_note, task.completed_at = Task.Status.DONE, outcome, note.strip(), now
    task.save(update_fields=["status", "outcome", "outcome_note", "completed_at"])
    if outcome != Task.Outcome.NOT_REACHED:
        customer_touch_contact(customer_ids=[task.customer_id], at=now)
    audit_record(actor=user, action="task.complete", target_type="task", target_id=str(task.pk),
                 details={"outcome": outcome, "assignee": task.assignee_id})
    emit(TaskCompleted(task_id=task.pk))
    return task



# --- custom fields (customers/custom_fields.py) ----------------------------------------------------

def _definition_error(field: str, message: str) -> ApplicationError:
    return ApplicationError(CustomerError.CUSTOM_FIELD_INVALID, message, [{"field": field, "message": message}])


def _definition_clean(*, field_type: str, label: str, options, min_value, max_value, max_length) -> dict:
    """The type-specific attributes of a definition, checked; those that do not apply to the type are cleared."""
    from customers import custom_fields as cf
    from customers.models import CustomFieldType as T

    label = (label or "").strip()
    if not label:
        raise _definition_error("label", _("请填写名称"))
    if len(label) > 50:
        raise _definition_error("label", _("名称最多 50 个字符"))
    if field_type not in T.values:
        raise _definition_error("type", _("请选择类型"))
    clean = {"label": label, "options": [], "min_value": None, "max_value": None, "max_length": None}
    if field_type in (T.CHOICE, T.MULTI_CHOICE):
        items = [str(o).strip() for o in (options or []) if str(o).strip()]
        if not items:
            raise _definition_error("options", _("单选和多选字段至少要有一个选项"))
        if len(items) > cf.MAX_OPTIONS:
            raise _definition_error("options", _("最多 %(n)s 个选项") % {"n": cf.MAX_OPTIONS})
        seen = set()
        for item in items:
            if len(item) > cf.OPTION_MAX_LENGTH or cf.OPTION_FORBIDDEN.search(item):
                raise _definition_error("options", _("选项“%(option)s”无效：最多 %(n)s 个字符，不能含逗号、顿号、分号或竖线")
                                        % {"option": item[:20], "n": cf.OPTION_MAX_LENGTH})
            if item.casefold() in seen:
                raise _definition_error("options", _("选项“%(option)s”重复") % {"option": item[:20]})
            seen.add(item.casefold())
        clean["options"] = items
    elif field_type == T.NUMBER:
        bounds = {}
        for name, raw in (("min_value", min_value), ("max_value", max_value)):
            if raw is None or raw == "":
                continue
            try:
                bounds[name] = cf.number_parse(raw)
            except cf.CustomValueInvalid as exc:
                raise _definition_error(name, exc.message) from None
        if "min_value" in bounds and "max_value" in bounds and bounds["min_value"] > bounds["max_value"]:
            raise _definition_error("max_value", _("最大值不能小于最小值"))
        clean.update(bounds)
    elif field_type == T.TEXT and max_length not in (None, ""):
        if isinstance(max_length, bool) or not isinstance(max_length, int) or not 1 <= max_length <= cf.TEXT_MAX_LENGTH:
            raise _definition_error("max_length", _("最大长度应为 1–%(n)s") % {"n": cf.TEXT_MAX_LENGTH})
        clean["max_length"] = max_length
    return clean


def _definitions_active_limit(exclude_pk: int | None = None) -> None:
    from customers import custom_fields as cf
    from customers.models import CustomFieldDefinition

    active = CustomFieldDefinition.objects.filter(active=True).exclude(pk=exclude_pk)
    if active.count() >= cf.MAX_ACTIVE_FIELDS:
        raise ApplicationError(CustomerError.CUSTOM_FIELD_LIMIT,
                               _("启用中的自定义字段最多 %(n)s 个，请先停用不用的字段") % {"n": cf.MAX_ACTIVE_FIELDS})


def _definition_may_define(actor) -> None:
    from customers.custom_fields import custom_fields_may_define

    if not custom_fields_may_define(actor):
        raise ApplicationError(CustomerError.CUSTOM_FIELDS_NOT_ALLOWED, _("只有系统管理员可以定义自定义字段"), status_code=403)


@transaction.atomic
def custom_field_definition_create(*, actor, code: str, label: str, field_type: str, options=None,
                                   required: bool = False, min_value=None, max_value=None, max_length=None,
                                   order: int = 0):
    """A new custom field (admins). ``code`` and ``field_type`` can never change afterwards."""
    from customers import custom_fields as cf
    from customers.models import CustomFieldDefinition

    _definition_may_define(actor)
    code = (code or "").strip()
    if not cf.CODE_RE.match(code):
        raise _definition_error("code", _("代码应以小写字母开头，只含小写字母、数字和下划线，最多 40 个字符"))
    if CustomFieldDefinition.objects.filter(code=code).exists():
        taken = _("该代码已被使用（包括已停用的字段）")
        raise ApplicationError(CustomerError.CUSTOM_FIELD_CODE_TAKEN, taken, [{"field": "code", "message": taken}])
    clean = _definition_clean(field_type=field_type, label=label, options=options, min_value=min_value,
                              max_value=max_value, max_length=max_length)
    _definitions_active_limit()
    definition = CustomFieldDefinition.objects.create(code=code, type=field_type, required=bool(required),
                                                      order=max(int(order or 0), 0), **clean)
    audit_record(actor=actor, action="custom_field.create", target_type="custom_field", target_id=code,
                 details={"type": field_type, "label": clean["label"], "required": bool(required),
                          "options": clean["options"]})
    return definition


def _values_not_fitting(definition) -> int:
    """How many customers hold a value of ``definition`` that its current rules would refuse (kept and flagged)."""
    from django.db.models import Q as _Q
    from django.db.models.fields.json import KT
    from django.db.models.functions import Length

    from customers import custom_fields as cf
    from customers.models import CustomFieldType as T

    code = definition.code
    holders = Customer.objects.filter(custom_fields__has_key=code)
    if definition.type == T.CHOICE:
        return holders.exclude(cf.custom_field_q(code=code, field_type=definition.type, op="in",
                                                 value=definition.options)).count()
    if definition.type == T.MULTI_CHOICE:
        # a list not contained in the options: jsonb <@ answers "every element is an option"
        return holders.exclude(**{f"custom_fields__{code}__contained_by": definition.options}).count()
    if definition.type == T.NUMBER and (definition.min_value is not None or definition.max_value is not None):
        outside = _Q(pk__in=[])
        if definition.min_value is not None:
            outside |= cf.custom_field_q(code=code, field_type=T.NUMBER, op="lt", value=definition.min_value)
        if definition.max_value is not None:
            outside |= cf.custom_field_q(code=code, field_type=T.NUMBER, op="gt", value=definition.max_value)
        return holders.filter(outside).count()
    if definition.type == T.TEXT and definition.max_length:
        return holders.annotate(_len=Length(KT(f"custom_fields__{code}"))).filter(_len__gt=definition.max_length).count()
    return 0


@transaction.atomic
def custom_field_definition_update(*, actor, definition, label: str, options=None, required: bool = False,
                                   min_value=None, max_value=None, max_length=None, order: int = 0) -> dict:
    """Change what may be changed of a definition (not its code or type). Stored values are never touched: a value
    the new rules would refuse (an option taken out, a tighter limit) stays readable and is flagged on the customer.
    Returns ``{"definition", "not_fitting"}`` — how many customers hold such a value — so the admin is told."""
    from customers.models import CustomFieldDefinition

    _definition_may_define(actor)
    definition = CustomFieldDefinition.objects.select_for_update().get(pk=definition.pk)
    clean = _definition_clean(field_type=definition.type, label=label, options=options, min_value=min_value,
                              max_value=max_value, max_length=max_length)
    before = {k: getattr(definition, k) for k in ("label", "options", "required", "min_value", "max_value",
                                                   "max_length", "order")}
    for key, value in {**clean, "required": bool(required), "order": max(int(order or 0), 0)}.items():
        setattr(definition, key, value)
    definition.updated_at = timezone.now()
    definition.save()
    changed = sorted(k for k, v in before.items() if v != getattr(definition, k))
    not_fitting = _values_not_fitting(definition) if changed else 0
    removed = [o for o in before["options"] or [] if o not in definition.options]
    audit_record(actor=actor, action="custom_field.update", target_type="custom_field", target_id=definition.code,
                 details={"changed": changed, "removed_options": removed, "values_not_fitting": not_fitting})
    return {"definition": definition, "not_fitting": not_fitting}


@transaction.atomic
def custom_field_definition_set_active(*, actor, definition, active: bool):
    """Deactivate (hide everywhere, keep every value) or reactivate a field."""
    from customers.models import CustomFieldDefinition

    _definition_may_define(actor)
    definition = CustomFieldDefinition.objects.select_for_update().get(pk=definition.pk)
    if definition.active == active:
        return definition
    if active:
        _definitions_active_limit(exclude_pk=definition.pk)
    definition.active = active
    definition.updated_at = timezone.now()
    definition.save(update_fields=["active", "updated_at"])
    held = Customer.objects.filter(custom_fields__has_key=definition.code).count()
    audit_record(actor=actor, action="custom_field.activate" if active else "custom_field.deactivate",
                 target_type="custom_field", target_id=definition.code, details={"customers_with_value": held})
    return definition


@transaction.atomic
def customer_custom_fields_set(*, actor, customer: Customer, values: dict) -> Customer:
    """Set a customer's values of every ACTIVE custom field from ``values`` (code → raw value, as the 360° page
    posts them: a blank one clears the value, a required one may not be blank; a value repeated as stored is kept
    even if it no longer fits the definition). Values of deactivated fields are left as they are. Refused for roles
    that only read (custom_fields.EDIT_ROLES); the caller fetched ``customer`` through the user's scope. Nothing is
    written when any value is wrong: ApplicationError ``custom_values_invalid`` with one detail per field
    (``field`` = code, ``code``, ``message``). Audited with the codes changed, never the values."""
    from customers import custom_fields as cf

    if not cf.custom_fields_may_edit(actor):
        raise ApplicationError(CustomerError.CUSTOM_FIELDS_NOT_ALLOWED, _("您的角色只能查看客户的自定义字段"), status_code=403)
    definitions = cf.definitions_by_code()
    locked = Customer.objects.select_for_update().only("pk", "custom_fields").get(pk=customer.pk)
    stored = dict(locked.custom_fields or {})
    active = [d.code for d in definitions.values() if d.active]
    entries = [(code, code, values.get(code)) for code in active]
    entries += [(str(code), code, raw) for code, raw in values.items() if code not in active]
    clean, errors = cf.custom_values_clean(entries, definitions=definitions, blank_clears=True, stored=stored)
    if errors:
        raise ApplicationError(CustomerError.CUSTOM_VALUES_INVALID, _("自定义字段有误，未保存"),
                               [{"field": key, "code": str(code), "message": message} for key, code, message in errors])
    new = dict(stored)
    for code, value in clean.items():
        if value is None:
            new.pop(code, None)
        else:
            new[code] = value
    changed = sorted(code for code in clean if stored.get(code) != new.get(code))
    if changed:
        Customer.objects.filter(pk=customer.pk).update(custom_fields=new, updated_at=timezone.now())
        audit_record(actor=actor, action="customer.custom_fields_set", target_type="customer",
                     target_id=customer.external_id, details={"fields": changed})
        emit(CustomersChanged(updated_ids=(customer.pk,)))
    customer.custom_fields = new
    return customer
