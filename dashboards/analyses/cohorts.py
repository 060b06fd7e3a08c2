"""Retention cohorts by opening month: of the clients who opened an account in month M, the share who traded
(or logged in, or either) in the calendar month M+N. N = 0 is the opening month itself; the current month's
cells are still running, and months still in the future are blank."""

from collections import defaultdict

from django.db.models import Sum
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from dashboards.analyses.common import Filters, current_month, month_add, month_label, months_between, percent, rate
from dashboards.models import CohortMonthly

MEASURES = {"traded": gettext_lazy("有交易"), "logged_in": gettext_lazy("有登录"), "active": gettext_lazy("有交易或登录")}
MAX_COLUMNS = 36


def cohort_report(filters: Filters, *, measure: str) -> dict:
    """Rows (opening month, size, one retention per month after) and the heat map's cells [x, y, percent]."""
    this_month = current_month()
    end = min(filters.end, this_month)
    qs = filters.apply(CohortMonthly.objects.all(), month_field="opened_month").filter(opened_month__lte=end)
    sizes = dict(qs.filter(month_offset=0).order_by().values_list("opened_month").annotate(n=Sum("clients")))
    activity = defaultdict(dict)
    for month, offset, n in (qs.order_by().values_list("opened_month", "month_offset").annotate(n=Sum(measure))):
        activity[month][offset] = n
    months = []
    month = filters.start
    while month <= end:
        months.append(month)
        month = month_add(month, 1)
    columns = min(MAX_COLUMNS, months_between(filters.start, this_month)) + 1 if months else 0
    rows, cells = [], []
    for y, month in enumerate(months):
        size = sizes.get(month, 0)
        elapsed = months_between(month, this_month)
        values = []
        for offset in range(columns):
            if offset > elapsed:
                values.append(None)
                continue
            value = rate(activity[month].get(offset, 0), size)
            values.append(value)
            if value is not None:
                cells.append([offset, y, round(value * 100, 1)])
        rows.append({"month": month_label(month), "size": size, "values": values,
                     "cells": [{"text": "" if v is None else percent(v), "alpha": 0 if v is None else round(0.08 + 0.8 * v, 2)}
                               for v in values]})
    return {"rows": rows, "columns": list(range(columns)), "cells": cells, "measure": measure,
            "clients": sum(r["size"] for r in rows), "chart_height": 28 * len(rows) + 120}


def cohort_csv_rows(report: dict) -> tuple[list[str], list[list]]:
    header = [_("开户月份"), _("开户人数")] + [f"M{n}" for n in report["columns"]]
    rows = [[r["month"], r["size"]] + ["" if v is None else percent(v) for v in r["values"]] for r in report["rows"]]
    return header, rows
