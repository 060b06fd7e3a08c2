from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from tagging.models import CustomerTag, CustomerTagHistory, CustomerTierHistory, Tag, TagCategory, TierDefinition


def taxonomy_tree(*, user) -> list[dict]:
    """Categories with their tags and how many customers in the user's scope currently carry each."""
    now = timezone.now()
    visible = CustomerTag.objects.visible_to(user).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    counts = dict(visible.values("tag_id").annotate(n=Count("id")).values_list("tag_id", "n"))
    tree = []
    for category in TagCategory.objects.prefetch_related("tags"):
        tags = [{"tag": t, "count": counts.get(t.pk, 0)} for t in category.tags.all()]
        tree.append({"category": category, "tags": tags})
    return tree


def customer_tags_current(*, customer) -> list[CustomerTag]:
    return list(CustomerTag.objects.current().filter(customer=customer).select_related("tag__category")
                .order_by("tag__category__position", "tag__code"))


def customer_tag_history(*, customer, limit: int = 50) -> list[CustomerTagHistory]:
    return list(CustomerTagHistory.objects.filter(customer=customer).select_related("tag").order_by("-at", "-id")[:limit])


def tag_history(*, tag: Tag, user, limit: int = 30) -> list[CustomerTagHistory]:
    return list(CustomerTagHistory.objects.visible_to(user).filter(tag=tag).select_related("customer")
                .order_by("-at", "-id")[:limit])


def customer_filter_by_tag(qs, filters: dict):
    """Customer-list filter: ``tag`` = codes the customer currently has (all of them)."""
    codes = filters.get("tag")
    if not codes:
        return qs
    now = timezone.now()
    for code in codes if isinstance(codes, list) else [codes]:
        qs = qs.filter(Exists(CustomerTag.objects.filter(customer_id=OuterRef("pk"), tag__code=code).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now))))
    return qs


def key_tags_for(customer_ids: list[int]) -> dict[int, list[str]]:
    """Current tag names per customer for list rows (one query for the page)."""
    now = timezone.now()
    rows = (CustomerTag.objects.filter(customer_id__in=customer_ids)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .order_by("customer_id", "tag__category__position", "tag__code").values_list("customer_id", "tag__name"))
    out: dict[int, list[str]] = {}
    for customer_id, name in rows:
        out.setdefault(customer_id, []).append(name)
    return out


def customer_history_rows(*, tier_history, tag_history) -> list:
    """The 360° page's 历史: tier changes and tag changes in one list, newest first (``row.kind`` says which)."""
    rows = []
    for kind, items in (("tier", tier_history), ("tag", tag_history)):
        for row in items:
            row.kind = kind
            rows.append(row)
    return sorted(rows, key=lambda row: (row.at, row.kind == "tag", row.pk), reverse=True)


def customer_tier_history(*, customer, limit: int = 24) -> list[CustomerTierHistory]:
    """Tier changes, newest first, with the tiers' labels attached as from_label / to_label."""
    labels = dict(TierDefinition.objects.filter(scheme__active=True).values_list("code", "label"))
    rows = list(CustomerTierHistory.objects.filter(customer=customer).order_by("-at", "-id")[:limit])
    for row in rows:
        row.from_label = labels.get(row.from_code, row.from_code)
        row.to_label = labels.get(row.to_code, row.to_code)
    return rows
