"""Message templates: variables, rendering, the compliance lint, versions and approval.

A template version is usable only once compliance approved THAT version; saving new text makes a
new version that needs approval again. The lint runs on every save: forbidden promises (the list
compliance maintains in ForbiddenPhrase) and a product mentioned without a risk disclosure.
"""

import re
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext

from core.errors import ApplicationError
from core.services import audit_record
from sop.models import ForbiddenPhrase, MessageTemplate, TemplateVersion

VARIABLES = {
    "name": gettext_lazy("客户姓名"), "advisor": gettext_lazy("投顾姓名"), "branch": gettext_lazy("营业部"),
    "tier": gettext_lazy("客户分层"), "product": gettext_lazy("产品名称"), "product_code": gettext_lazy("产品代码"),
    "product_risk": gettext_lazy("产品风险等级"),
}


# ``{{`` and ``}}`` are literal braces; ``{name}`` a variable; anything else in braces (a format spec such as
# ``{name:>2000000}``, a conversion, attribute or index access) is refused, and rendering never calls str.format
TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
VARIABLE_NAME = re.compile(r"[a-z_]+")


def template_variables(body: str) -> list[str]:
    """The ``{name}`` variables of a body, in order. Raises ApplicationError for braces that are not a bare
    variable or an escaped ``{{`` / ``}}``."""
    names = []
    for match in TOKEN.finditer(body):
        token = match.group()
        if token in ("{{", "}}"):
            continue
        inner = match.group(1)
        if inner is None:
            message = _("花括号需成对，如 {name}；要写花括号本身请用 {{ 或 }}")
            raise ApplicationError("template_invalid", _("模板格式错误：%(message)s") % {"message": message},
                                   [{"field": "body", "message": message}])
        if not VARIABLE_NAME.fullmatch(inner):
            message = _("变量只能写成 {name} 这样的形式，不能带格式、转换或属性：%(token)s") % {"token": token}
            raise ApplicationError("template_invalid", _("模板格式错误：%(message)s") % {"message": message},
                                   [{"field": "body", "message": message}])
        names.append(inner)
    return names


def _substitute(body: str, values: dict) -> str:
    """Put the values in; a token that is not a known bare variable stays as written (old versions saved before
    the rule), so nothing in a body is ever evaluated."""
    def replace(match):
        token = match.group()
        if token in ("{{", "}}"):
            return token[0]
        inner = match.group(1)
        return str(values[inner]) if inner in values else token

    return TOKEN.sub(replace, body)


@dataclass(frozen=True)
class Wordings:
    """Compliance's lists (sop.ForbiddenPhrase): active forbidden promises and accepted risk disclosures."""

    forbidden: tuple[str, ...]
    disclosures: tuple[str, ...]


def compliance_wordings() -> Wordings:
    rows = ForbiddenPhrase.objects.filter(active=True).values_list("kind", "phrase")
    return Wordings(forbidden=tuple(p for k, p in rows if k == ForbiddenPhrase.Kind.FORBIDDEN),
                    disclosures=tuple(p for k, p in rows if k == ForbiddenPhrase.Kind.DISCLOSURE))


def template_lint(body: str, product=None, *, wordings: Wordings | None = None) -> list[dict]:
    """Findings: ``{"kind": "forbidden"|"risk_disclosure"|"variable", "text", "message"}``; a forbidden
    phrase also carries ``start``/``end`` (character offsets of its first occurrence in ``body``). A body that
    mentions a product needs one of compliance's accepted disclosures. ``wordings`` (compliance_wordings())
    spares the query when many bodies are linted."""
    wordings = wordings or compliance_wordings()
    findings = []
    lowered = body.lower()
    for phrase in wordings.forbidden:
        start = lowered.find(phrase.lower())
        if start >= 0:
            findings.append({"kind": "forbidden", "text": phrase, "start": start, "end": start + len(phrase),
                             "message": _("第 %(n)s 字起含禁用表述「%(phrase)s」") % {"n": start + 1, "phrase": phrase}})
    names = template_variables(body)
    for name in names:
        if name not in VARIABLES:
            findings.append({"kind": "variable", "text": name,
                             "message": _("未知变量 %(variable)s，可用：%(names)s") % {"variable": "{" + name + "}",
                                                                             "names": ", ".join(VARIABLES)}})
    mentions_product = product is not None or any(n.startswith("product") for n in names)
    if mentions_product and not any(d.lower() in lowered for d in wordings.disclosures):
        examples = (pgettext("punctuation", "、").join(f"「{d}」" for d in wordings.disclosures[:3])
                    or _("「投资有风险，入市需谨慎」"))
        findings.append({"kind": "risk_disclosure", "text": "",
                         "message": _("提到产品时须附合规认可的风险提示（如%(examples)s）") % {"examples": examples}})
    return findings


def template_render(version: TemplateVersion, *, customer, advisor=None, tier_labels: dict | None = None) -> str:
    """The text for one client. ``tier_labels`` (code → label) spares a query per client in a batch;
    load the customer with ``select_related("tier", "branch")``."""
    from tagging.models import CustomerTier

    product = version.product
    try:
        code = customer.tier.code
    except CustomerTier.DoesNotExist:
        code = ""
    if tier_labels is None:
        from tagging.tiers import tier_definitions

        tier_labels = {c: d.label for c, d in tier_definitions().items()}
    values = {
        "name": customer.name, "advisor": (advisor.display_name or advisor.username) if advisor else "",
        "branch": customer.branch.name if customer.branch_id else "", "tier": tier_labels.get(code, ""),
        "product": product.name if product else "", "product_code": product.code if product else "",
        "product_risk": product.risk_level if product else "",
    }
    return _substitute(version.body, values)


def _lint_error(findings: list[dict]) -> ApplicationError:
    return ApplicationError("template_lint", "；".join(f["message"] for f in findings),
                            [{"field": "body", "message": f["message"], "kind": f["kind"], "text": f["text"]}
                             for f in findings])


def template_save(*, actor, template: MessageTemplate | None, name: str, channel: str, body: str,
                  product=None, submit: bool = True) -> TemplateVersion:
    """A new version: pending compliance when ``submit``, else a draft that keeps its lint findings.
    Submitting is refused while the lint finds forbidden promises, unknown variables or a product
    without a risk disclosure — nothing is stored then."""
    body = (body or "").strip()
    name = (name or "").strip()
    if not body:
        raise ApplicationError("template_invalid", _("请填写模板内容"), [{"field": "body", "message": _("必填")}])
    if template is None and not name:
        raise ApplicationError("template_invalid", _("请填写模板名称"), [{"field": "name", "message": _("必填")}])
    findings = template_lint(body, product)
    if findings and submit:
        raise _lint_error(findings)
    with transaction.atomic():
        if template is None:
            template = MessageTemplate.objects.create(name=name, channel=channel, created_by=actor)
        else:
            template = MessageTemplate.objects.select_for_update().get(pk=template.pk)
            if name and name != template.name:
                template.name = name
                template.save(update_fields=["name"])
        number = (template.versions.aggregate(n=Max("number"))["n"] or 0) + 1
        version = TemplateVersion.objects.create(template=template, number=number, body=body, product=product,
                                                 lint=findings, created_by=actor,
                                                 status=TemplateVersion.Status.PENDING if submit else
                                                 TemplateVersion.Status.DRAFT)
        audit_record(actor=actor, action="sop.template_saved", target_type="template_version",
                     target_id=str(version.pk), details={"template": template.pk, "number": number, "submit": submit})
    return version


def template_submit(*, actor, version: TemplateVersion) -> TemplateVersion:
    """Send a draft to compliance; refused while today's lint still finds something."""
    with transaction.atomic():
        version = TemplateVersion.objects.select_for_update(of=("self",)).select_related("product").get(pk=version.pk)
        if version.status != TemplateVersion.Status.DRAFT:
            raise ApplicationError("template_not_draft", _("只有草稿可以提交审核"))
        findings = template_lint(version.body, version.product)
        if findings:
            version.lint = findings
            version.save(update_fields=["lint"])
            raise _lint_error(findings)
        version.status, version.lint = TemplateVersion.Status.PENDING, []
        version.save(update_fields=["status", "lint"])
        audit_record(actor=actor, action="sop.template_submitted", target_type="template_version",
                     target_id=str(version.pk))
    return version


def template_review(*, actor, version: TemplateVersion, approve: bool, note: str = "") -> TemplateVersion:
    """Compliance approves or rejects one version (a rejection needs a reason)."""
    from core.models import Role

    if getattr(actor, "role", None) not in (Role.COMPLIANCE, Role.ADMIN):
        raise ApplicationError("forbidden", _("只有合规人员可以审核模板"), status_code=403)
    if not approve and not note.strip():
        raise ApplicationError("template_invalid", _("驳回时请写明原因"), [{"field": "note", "message": _("必填")}])
    with transaction.atomic():
        version = TemplateVersion.objects.select_for_update(of=("self",)).select_related("product").get(pk=version.pk)
        if version.status != TemplateVersion.Status.PENDING:
            raise ApplicationError("template_not_pending", _("该版本不在待审核状态"))
        if version.created_by_id is not None and version.created_by_id == actor.pk:
            raise ApplicationError("template_own_version", _("不能审核自己提交的版本"), status_code=403)
        findings = template_lint(version.body, version.product) if approve else []
        if findings:  # the phrase list may have grown since the version was submitted
            raise _lint_error(findings)
        version.status = TemplateVersion.Status.APPROVED if approve else TemplateVersion.Status.REJECTED
        version.reviewed_by, version.reviewed_at, version.review_note = actor, timezone.now(), note.strip()
        version.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        audit_record(actor=actor, action="sop.template_approved" if approve else "sop.template_rejected",
                     target_type="template_version", target_id=str(version.pk), reason=note)
    return version


def preview_customer(user):
    """The client a template is shown rendered for: the first one ``user`` may see."""
    from customers.models import Customer

    return Customer.objects.visible_to(user).select_related("advisor", "branch", "tier").order_by("pk").first()


def template_preview(*, body: str, product=None, user, customer=None, wordings=None, tier_labels=None) -> dict:
    """The lint findings and the text rendered for ``customer`` or else the first client ``user`` may see
    (none when the body does not parse or names an unknown variable)."""

    try:
        findings = template_lint(body or "", product, wordings=wordings)
    except ApplicationError as exc:
        return {"findings": [{"kind": "variable", "text": "", "message": exc.message}], "text": "", "customer": None}
    if customer is None:
        customer = preview_customer(user)
    text = ""
    if customer is not None and body and not any(f["kind"] == "variable" for f in findings):
        text = template_render(TemplateVersion(body=body, product=product), customer=customer, advisor=customer.advisor,
                               tier_labels=tier_labels)
    return {"findings": findings, "text": text, "customer": customer}


def template_highlight(body: str, findings: list[dict]):
    """``body`` as safe HTML with every forbidden phrase's occurrences marked."""
    from django.utils.html import escape
    from django.utils.safestring import mark_safe

    phrases = [f["text"] for f in findings if f.get("kind") == "forbidden" and f.get("text")]
    if not phrases:
        return escape(body)
    pattern = re.compile("|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True)), re.IGNORECASE)
    out, last = [], 0
    for match in pattern.finditer(body):
        out += [escape(body[last:match.start()]),
                f'<mark class="bg-red-lt" data-testid="lint-mark">{escape(match.group())}</mark>']
        last = match.end()
    out.append(escape(body[last:]))
    return mark_safe("".join(out))  # noqa: S308 - every piece is escaped above
