"""What the four analysis pages share: who may open them, the pickers (period, channel, branch) and the viewer's
data scope applied to the summary tables, and month arithmetic in Asia/Shanghai (their CSVs are written by core/exports.py).

The summary tables carry a branch dimension, so a branch manager's read is ``branch_id = <theirs>`` on a few
thousand rows. Advisors do not use the analyses (they are firm- or branch-level numbers); they get 404.
"""

from dataclasses import dataclass
from datetime import date

from django import forms
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.access import require
from core.models import Branch
from core.scoping import scope_for

MAX_MONTHS = 60
UNKNOWN_CHANNEL_LABEL = gettext_lazy("（未标注渠道）")


def require_analyses(user) -> None:
    require(user, "analyses")


# --- months ---------------------------------------------------------------------------------------

def month_add(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def months_between(start: date, end: date) -> int:
    """Whole calendar months from ``start`` to ``end`` (both firsts of months)."""
    return (end.year - start.year) * 12 + end.month - start.month


def current_month() -> date:
    return timezone.localdate().replace(day=1)


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def _parse_month(value: str) -> date | None:
    try:
        year, month = value.split("-")
        if len(year) != 4 or not 1 <= len(month) <= 2:
            return None
        return date(int(year), int(month), 1)
    except (ValueError, TypeError):
        return None


# --- scope and pickers ----------------------------------------------------------------------------

def scope_branches(user):
    """Branches the viewer's numbers may come from: all for firm-wide roles, their own for a branch manager."""
    scope = scope_for(user)
    if scope.everything:
        return Branch.objects.order_by("code")
    if scope.branch_id is not None and scope.advisor_id is None:
        return Branch.objects.filter(pk=scope.branch_id)
    return Branch.objects.none()


def channel_names(branch_ids: list[int] | None = None) -> list[str]:
    """Channels with sign-ups (in these branches, or anywhere)."""
    from dashboards.models import AcquisitionMonthly

    qs = AcquisitionMonthly.objects.order_by()
    if branch_ids is not None:
        qs = qs.filter(branch_id__in=branch_ids)
    return sorted(qs.values_list("channel", flat=True).distinct())


def channel_label(channel: str) -> str:
    return channel or str(UNKNOWN_CHANNEL_LABEL)


@dataclass(frozen=True)
class Filters:
    start: date  # first opening/sign-up month in the period
    end: date  # last month (inclusive)
    channel: str | None  # None: every channel ("" is a real value: no channel recorded)
    branch_ids: list[int] | None  # None: every branch (firm-wide scope and no branch picked)
    branch: Branch | None  # the picked branch, if any

    def apply(self, qs, *, month_field: str = "month"):
        qs = qs.filter(**{f"{month_field}__gte": self.start, f"{month_field}__lte": self.end})
        if self.channel is not None:
            qs = qs.filter(channel=self.channel)
        if self.branch_ids is not None:
            qs = qs.filter(branch_id__in=self.branch_ids)
        return qs

    def query(self) -> dict:
        """The pickers as GET parameters (for links to the CSV and between pages)."""
        out = {"start": month_label(self.start), "end": month_label(self.end)}
        if self.channel is not None:
            out["channel"] = self.channel or "-"
        if self.branch is not None:
            out["branch"] = self.branch.code
        return out


class FilterForm(forms.Form):
    """Period (months ``start``–``end``, YYYY-MM), channel and branch; every value is checked and a bad one
    is named (the page answers 400 with the message, never 500)."""

    start = forms.CharField(label=gettext_lazy("起始月份"), required=False, max_length=7)
    end = forms.CharField(label=gettext_lazy("截止月份"), required=False, max_length=7)
    channel = forms.CharField(label=gettext_lazy("渠道"), required=False, max_length=50)
    branch = forms.CharField(label=gettext_lazy("营业部"), required=False, max_length=32)

    def __init__(self, data, *, user, default_months: int = 12):
        super().__init__(data)
        self.user = user
        self.default_months = default_months
        self.branches = list(scope_branches(user))
        self.channels = channel_names(None if scope_for(user).everything else [b.pk for b in self.branches])

    def _month(self, name: str, default: date) -> date:
        raw = (self.cleaned_data.get(name) or "").strip()
        if not raw:
            return default
        month = _parse_month(raw)
        if month is None:
            raise forms.ValidationError({name: _("月份格式应为 YYYY-MM，例如 2026-01")})
        if not 2000 <= month.year <= 2100:
            raise forms.ValidationError({name: _("月份超出范围（2000–2100 年）")})
        return month

    def clean(self):
        data = super().clean()
        this_month = current_month()
        end = self._month("end", this_month)
        start = self._month("start", month_add(end, -(self.default_months - 1)))
        if start > end:
            raise forms.ValidationError({"start": _("起始月份不能晚于截止月份")})
        if months_between(start, end) >= MAX_MONTHS:
            raise forms.ValidationError({"start": _("期间最长 %(n)s 个月") % {"n": MAX_MONTHS}})
        channel = data.get("channel") or ""
        if channel in ("",):
            channel_value = None
        elif channel == "-":
            channel_value = ""
        elif channel in self.channels:
            channel_value = channel
        else:
            raise forms.ValidationError({"channel": _("未知渠道：%(c)s") % {"c": channel}})
        code = (data.get("branch") or "").strip()
        branch = None
        if code:
            branch = next((b for b in self.branches if b.code == code), None)
            if branch is None:
                raise forms.ValidationError({"branch": _("营业部 %(c)s 不存在或不在您的数据范围内") % {"c": code}})
        scope = scope_for(self.user)
        if branch is not None:
            branch_ids = [branch.pk]
        elif scope.everything:
            branch_ids = None
        else:
            branch_ids = [b.pk for b in self.branches]
        data["filters"] = Filters(start=start, end=end, channel=channel_value, branch_ids=branch_ids, branch=branch)
        return data

    def error_text(self) -> str:
        return "；".join(f"{self.fields[f].label if f in self.fields else ''}：{' '.join(e)}".lstrip("：")
                        for f, e in self.errors.items())


def picker_context(form: FilterForm) -> dict:
    return {
        "form": form,
        "branches": form.branches,
        "channels": [(c or "-", channel_label(c)) for c in form.channels],
        "branch_fixed": not scope_for(form.user).everything,
    }


# --- numbers --------------------------------------------------------------------------------------

def rate(part, whole) -> float | None:
    """part / whole as a fraction, or None when there is nothing to divide by."""
    return (part / whole) if whole else None


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"
