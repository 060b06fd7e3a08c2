"""Form helpers shared by every area's views."""


def form_add_application_error(form, exc, *, field_prefix: str = "") -> None:
    """Show a service's ApplicationError on the form: on each field its details name (``field``, with
    ``field_prefix`` such as ``"params."`` taken off), with the detail's message; else on the form."""
    message = getattr(exc, "message", None) or str(exc)
    placed = False
    for detail in getattr(exc, "details", None) or []:
        if not isinstance(detail, dict):
            continue
        field = str(detail.get("field") or "").removeprefix(field_prefix)
        if field in form.fields:
            form.add_error(field, detail.get("message") or message)
            placed = True
    if not placed:
        form.add_error(None, message)
