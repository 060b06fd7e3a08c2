"""看板: KPI tiles and charts for the viewer's scope, pushed live over server-sent events.

The page renders the numbers itself (no JS needed for a first look); static/js/dashboard-live.js then opens
``live_stream`` (an async view served by uvicorn) which sends the same payload again whenever one of the
viewer's scope keys changes (dashboards/live.py publishes them after commit), plus a heartbeat comment.
Under a WSGI server the stream answers one event and asks the browser to reconnect, i.e. it degrades to polling.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

from asgiref.sync import sync_to_async
from django import forms
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db import close_old_connections, connections
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from core.access import may
from core.models import Branch, Role
from core.scoping import scope_for
from dashboards import live

HEARTBEAT_SECONDS = 15.0
COALESCE_SECONDS = 0.2  # gather a burst of changes into one push
MIN_PUSH_INTERVAL = 1.0  # under a steady stream of changes, one push a second per page
STREAM_SECONDS = 30 * 60  # the browser reconnects (EventSource) after this; bounds a forgotten tab
MAX_RANGE_DAYS = 92
RANGES = [("today", _("今天")), ("7d", _("近 7 天")), ("30d", _("近 30 天")), ("custom", _("自定义"))]

# key, label, label over a range of days, kind; the README defines each one
TILES = [
    ("contacts", _("新增企微客户"), _("新增企微客户"), "count"),
    ("opened", _("今日开户"), _("开户"), "count"),
    ("funded", _("开户当日入金"), _("开户并已入金"), "count"),
    ("active", _("活跃客户"), _("日均活跃客户"), "count"),
    ("trades", _("交易笔数"), _("交易笔数"), "count"),
    ("amount", _("交易金额"), _("交易金额"), "money"),
    ("tasks_due", _("今日到期任务"), _("到期任务"), "count"),
    ("tasks_done", _("完成任务"), _("完成任务"), "count"),
    ("sop_sent", _("SOP 已发送"), _("SOP 已发送"), "count"),
    ("sop_blocked", _("SOP 已拦截"), _("SOP 已拦截"), "count"),
    ("sop_replied", _("SOP 已回复"), _("SOP 已回复"), "count"),
    ("opportunities", _("待跟进商机"), _("待跟进商机（当前）"), "count"),
]


def _require_dashboard(user) -> None:
    if not (getattr(user, "is_authenticated", False) and may(user, "dashboard")):
        raise Http404("dashboard not available for this role")


class BranchChoiceField(forms.ModelChoiceField):
    """A branch by id (the picker) or by code (a link such as ``?branch=SH01``)."""

    def to_python(self, value):
        text = str(value or "").strip()
        if text and not text.isdigit():
            branch = self.queryset.filter(code=text).first()
            if branch is None:
                raise forms.ValidationError(_("营业部“%(c)s”不存在或不在您的范围内") % {"c": text[:20]}, code="invalid_choice")
            return branch
        return super().to_python(value)


class DashboardFilterForm(forms.Form):
    range = forms.ChoiceField(label=_("时间"), choices=RANGES, required=False)
    start = forms.DateField(label=_("开始日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label=_("结束日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    branch = BranchChoiceField(label=_("营业部"), queryset=Branch.objects.none(), required=False, empty_label=_("全公司"))

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if scope_for(user).everything:  # the picker lists the branches in the viewer's scope: all of them
            self.fields["branch"].queryset = Branch.objects.order_by("code")
        else:
            del self.fields["branch"]

    def clean(self):
        data = super().clean()
        if data.get("range") == "custom":
            start, end, today = data.get("start"), data.get("end"), live.today()
            if start is None:
                self.add_error("start", _("请选择开始日期"))
            if end is None:
                self.add_error("end", _("请选择结束日期"))
            if start and end:
                if start > end:
                    self.add_error("end", _("结束日期不能早于开始日期"))
                elif end > today:
                    self.add_error("end", _("结束日期不能晚于今天"))
                elif (end - start).days + 1 > MAX_RANGE_DAYS:
                    self.add_error("start", _("最多选择 %(n)s 天") % {"n": MAX_RANGE_DAYS})
        return data


def dashboard_params(user, query) -> dict:
    """The viewer's scope key and day range from the query string; invalid input falls back to today (the
    form carries the errors to show next to the fields)."""
    scope = scope_for(user)
    form = DashboardFilterForm(query or None, user=user)
    data = form.cleaned_data if form.is_bound and form.is_valid() else {}
    today = live.today()
    first, last = today, today
    chosen = data.get("range") or "today"
    if chosen == "7d":
        first = today - timedelta(days=6)
    elif chosen == "30d":
        first = today - timedelta(days=29)
    elif chosen == "custom":
        first, last = data["start"], data["end"]
    branch = data.get("branch")
    if scope.everything:
        scope_key = f"b{branch.pk}" if branch else "firm"
    elif scope.branch_id is not None:
        scope_key = f"b{scope.branch_id}"
    elif scope.advisor_id is not None:
        scope_key = f"a{scope.advisor_id}"
    else:
        raise Http404("no data scope")
    return {"form": form, "scope_key": scope_key, "first": first, "last": last, "branch": branch,
            "range": chosen if data else "today"}


# --- the payload: numbers as the tiles and charts show them -------------------------------------------------------

def money_text(fen: int) -> str:
    """¥1,234.56 below 10,000 yuan, then 万 and 亿 with two decimals."""
    yuan = fen / 100
    if abs(yuan) >= 1e8:
        return _("¥%(n)s亿") % {"n": f"{yuan / 1e8:,.2f}"}
    if abs(yuan) >= 1e4:
        return _("¥%(n)s万") % {"n": f"{yuan / 1e4:,.2f}"}
    return f"¥{yuan:,.2f}"


def _tile_values(days: dict[date, dict]) -> dict[str, int]:
    totals = {key: sum(d.get(key, 0) for d in days.values()) for key, *_rest in TILES
              if key not in ("amount", "active", "opportunities")}
    totals["amount"] = sum(d.get("amount_fen", 0) for d in days.values())
    totals["active"] = round(sum(d.get("active", 0) for d in days.values()) / max(len(days), 1))
    return totals


def dashboard_payload(*, scope_key: str, first: date, last: date) -> dict:
    today = live.today()
    is_today = first == last == today
    days = live.days_snapshot(scope_key=scope_key, first=first, last=last)
    values = _tile_values(days)
    values["opportunities"] = live.opportunities_snapshot(scope_key=scope_key)
    previous = None
    if is_today:
        yesterday = today - timedelta(days=1)
        previous = _tile_values(live.days_snapshot(scope_key=scope_key, first=yesterday, last=yesterday))
    tiles = {}
    for key, label, range_label, kind in TILES:
        value = values[key]
        tile = {"label": str(label if is_today else range_label), "value": value,
                "text": money_text(value) if kind == "money" else f"{value:,}"}
        if previous is not None and key != "opportunities":
            before = previous[key]
            tile["previous_text"] = money_text(before) if kind == "money" else f"{before:,}"
            tile["trend"] = "up" if value > before else "down" if value < before else "flat"
        tiles[key] = tile
    if is_today:
        day = days[today]
        trend = {"labels": [_("%(h)s时") % {"h": h} for h in range(24)], "trades": [day.get(f"h{h:02d}", 0) for h in range(24)],
                 "title": str(_("今日每小时交易笔数"))}
    else:
        ordered = sorted(days)
        trend = {"labels": [d.strftime("%m-%d") for d in ordered], "trades": [days[d].get("trades", 0) for d in ordered],
                 "title": str(_("每日交易笔数"))}
    sop = {"labels": [str(_("已发送")), str(_("已拦截")), str(_("已回复"))],
           "values": [values["sop_sent"], values["sop_blocked"], values["sop_replied"]]}
    return {"tiles": tiles, "charts": {"trend": trend, "tiers": live.tiers_snapshot(scope_key=scope_key), "sop": sop},
            "updated_at": timezone.localtime().strftime("%H:%M:%S"), "scope": scope_key}


# --- pages --------------------------------------------------------------------------------------------------------

def _scope_label(user, params) -> str:
    if params["scope_key"] == "firm":
        return str(_("全公司"))
    if params["scope_key"].startswith("b"):
        branch = params["branch"] or user.branch
        return branch.name if branch else ""
    return str(_("我的客户"))


@login_required
def index(request):
    _require_dashboard(request.user)
    params = dashboard_params(request.user, request.GET)
    payload = dashboard_payload(scope_key=params["scope_key"], first=params["first"], last=params["last"])
    calendar = None
    if request.user.role in (Role.OPERATOR, Role.ADMIN):
        from sop.calendar import calendar_status

        calendar = calendar_status()
    query = request.GET.copy()
    query.pop("wall", None)
    wall = request.GET.get("wall") == "1"
    context = {
        "form": params["form"], "selected_branch": str(params["branch"].pk) if params["branch"] else "",
        "payload": payload, "tiles": [(key, payload["tiles"][key]) for key, *_r in TILES],
        "payload_json": json.dumps(payload["charts"], ensure_ascii=False), "calendar": calendar,
        "live": params["last"] == live.today(), "query": query.urlencode(), "wall": wall,
        "scope_label": _scope_label(request.user, params), "first": params["first"], "last": params["last"],
        "range": params["range"],
    }
    return render(request, "dashboards/live/wall.html" if wall else "dashboards/live/index.html", context)


def _sse(event: str, data: dict) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _payload_fresh(*, scope_key: str, first: date, last: date, follow_today: bool) -> dict:
    close_old_connections()
    if follow_today:  # a 今天 page left open over midnight moves on to the new day
        first = last = live.today()
    try:
        return dashboard_payload(scope_key=scope_key, first=first, last=last)
    finally:
        close_old_connections()


def _concerns(message, scope_key: str) -> bool:
    try:
        scopes = json.loads(message["data"])["scopes"]
    except (KeyError, TypeError, ValueError):
        return False
    return "*" in scopes or scope_key in scopes


async def _events(*, scope_key: str, first: date, last: date):
    import redis.asyncio as aioredis
    from django.conf import settings

    follow_today = first == last == live.today()
    connection = aioredis.Redis.from_url(settings.REDIS_URL)
    pubsub = connection.pubsub()
    compute = sync_to_async(_payload_fresh, thread_sensitive=False)
    try:
        await pubsub.subscribe(live.channel())
        loop = asyncio.get_running_loop()
        yield "retry: 3000\n\n"
        yield _sse("tiles", await compute(scope_key=scope_key, first=first, last=last, follow_today=follow_today))
        started = last_sent = last_push = loop.time()
        while loop.time() - started < STREAM_SECONDS:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and _concerns(message, scope_key):
                await asyncio.sleep(max(COALESCE_SECONDS, last_push + MIN_PUSH_INTERVAL - loop.time()))
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.0) is not None:
                    pass
                yield _sse("tiles", await compute(scope_key=scope_key, first=first, last=last, follow_today=follow_today))
                last_sent = last_push = loop.time()
            elif loop.time() - last_sent >= HEARTBEAT_SECONDS:
                yield ": heartbeat\n\n"
                last_sent = loop.time()
    finally:
        await pubsub.aclose()
        await connection.aclose()


@login_required
async def live_stream(request):
    """text/event-stream of ``tiles`` events (the same payload the page rendered) for the page's scope and range."""
    user = await request.auser()
    _require_dashboard(user)
    params = await sync_to_async(dashboard_params)(user, request.GET)
    kwargs = {"scope_key": params["scope_key"], "first": params["first"], "last": params["last"]}
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if not isinstance(request, ASGIRequest):  # a WSGI server cannot hold the stream open: one event, then reconnect
        payload = await sync_to_async(dashboard_payload)(**kwargs)
        return HttpResponse("retry: 5000\n\n" + _sse("tiles", payload), content_type="text/event-stream", headers=headers)
    # the stream stays open for up to 30 minutes: give this request's database connection back to the pool now (it
    # read the session and the user), not when the stream ends; each push borrows one only while it computes
    await sync_to_async(connections.close_all)()
    return StreamingHttpResponse(_events(**kwargs), content_type="text/event-stream", headers=headers)
