"""The trading-calendar banner on every page for the roles that maintain the calendar (the sidebar's "sop"
entry: operators and admins), from 60 trading days before the known calendar ends."""

from core.access import may


def calendar_banner(request):
    user = getattr(request, "user", None)
    if not (getattr(user, "is_authenticated", False) and may(user, "sop")):
        return {}
    from sop.calendar import calendar_status

    status = calendar_status()  # two indexed queries; only for the roles that keep the calendar
    return {"calendar_banner": status} if status["warning"] else {}
