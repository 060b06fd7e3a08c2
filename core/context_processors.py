from core.navigation import nav_items_for


def navigation(request):
    user = getattr(request, "user", None)
    return {"nav_items": nav_items_for(user) if user is not None else []}
