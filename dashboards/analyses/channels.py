"""Channel evaluation on three layers, for the clients who signed up in the period (by their opening channel):

- quantity: visits (App logins in the 30 days after sign-up), WeCom contacts added, sign-ups;
- quality: bounce (signed up but never got past the ID upload), 3-month retention (of the channel's clients who
  opened in the period, at least four months ago: active — a trade or a login — in the third calendar month
  after the opening month);
- revenue: accounts opened, accounts funded, assets (current total assets of those clients).

The quadrant: x = scale (sign-ups), y = contribution (assets per sign-up), both split at the median of the
channels shown; each channel falls in one of four quadrants that says where to spend.
"""

from statistics import median

from django.db.models import Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from dashboards.analyses.common import Filters, channel_label, current_month, month_add, percent, rate
from dashboards.models import AcquisitionMonthly, CohortMonthly

QUADRANTS = {
    "star": (gettext_lazy("规模大 · 贡献高"), gettext_lazy("主力渠道：加大投入")),
    "potential": (gettext_lazy("规模小 · 贡献高"), gettext_lazy("潜力渠道：扩大规模")),
    "problem": (gettext_lazy("规模大 · 贡献低"), gettext_lazy("问题渠道：提升质量或压缩预算")),
    "weak": (gettext_lazy("规模小 · 贡献低"), gettext_lazy("低效渠道：缩减或停投")),
}
SETTLE_MONTHS = 4
SUMS = ("signups", "password_set", "opened", "funded", "contacts", "visits", "assets")


def _quadrant(x, y, x_mid, y_mid) -> str:
    if y >= y_mid:
        return "star" if x >= x_mid else "potential"
    return "problem" if x >= x_mid else "weak"


def channel_report(filters: Filters) -> dict:
    acq = (filters.apply(AcquisitionMonthly.objects.all()).order_by().values("channel")
           .annotate(**{c: Sum(c) for c in SUMS}))
    settled = min(filters.end, month_add(current_month(), -SETTLE_MONTHS))
    cohorts = filters.apply(CohortMonthly.objects.filter(opened_month__lte=settled), month_field="opened_month")
    base = dict(cohorts.filter(month_offset=0).order_by().values_list("channel").annotate(n=Sum("clients")))
    kept = dict(cohorts.filter(month_offset=3).order_by().values_list("channel").annotate(n=Sum("active")))
    channels = []
    for row in acq:
        signups = row["signups"] or 0
        if not signups:
            continue
        assets = row["assets"] or 0
        channels.append({
            "channel": row["channel"], "label": channel_label(row["channel"]),
            "visits": row["visits"] or 0, "contacts": row["contacts"] or 0, "signups": signups,
            "bounce": rate(signups - (row["password_set"] or 0), signups),
            "retention": rate(kept.get(row["channel"], 0), base.get(row["channel"], 0)),
            "retention_base": base.get(row["channel"], 0),
            "opened": row["opened"] or 0, "funded": row["funded"] or 0, "assets": assets,
            "funded_rate": rate(row["funded"] or 0, signups),
            "contribution": float(assets) / signups,
        })
    channels.sort(key=lambda c: -c["signups"])
    x_mid = median([c["signups"] for c in channels]) if channels else 0
    y_mid = median([c["contribution"] for c in channels]) if channels else 0
    for c in channels:
        c["quadrant"] = _quadrant(c["signups"], c["contribution"], x_mid, y_mid)
        c["quadrant_label"], c["advice"] = (str(s) for s in QUADRANTS[c["quadrant"]])
        c.update(bounce_text=percent(c["bounce"]), retention_text=percent(c["retention"]),
                 funded_rate_text=percent(c["funded_rate"]))
    return {"channels": channels, "x_mid": x_mid, "y_mid": y_mid, "settled": settled,
            "quadrants": {k: {"label": str(v[0]), "advice": str(v[1])} for k, v in QUADRANTS.items()}}


def channel_csv_rows(report: dict) -> tuple[list[str], list[list]]:
    header = [_("渠道"), _("访问（注册后30天登录）"), _("添加企微"), _("注册"), _("跳出率"), _("3个月留存率"), _("开户"),
              _("入金"), _("资产（元）"), _("每注册资产（元）"), _("象限")]
    rows = [[c["label"], c["visits"], c["contacts"], c["signups"], percent(c["bounce"]), percent(c["retention"]),
             c["opened"], c["funded"], f"{c['assets']:.2f}", f"{c['contribution']:.2f}", c["quadrant_label"]]
            for c in report["channels"]]
    return header, rows
