from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from customers import selectors
from customers.tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_scope_per_role(advisor, same_branch_advisor, other_branch_advisor, branch_manager, hq_manager, operator):
    mine = CustomerFactory(advisor=advisor)
    colleague = CustomerFactory(advisor=same_branch_advisor)
    shanghai = CustomerFactory(advisor=other_branch_advisor)

    def ids(user):
        return {c.pk for c in selectors.customer_list(user=user, limit=100).customers}

    assert ids(advisor) == {mine.pk}
    assert ids(branch_manager) == {mine.pk, colleague.pk}
    assert ids(hq_manager) == ids(operator) == {mine.pk, colleague.pk, shanghai.pk}


def test_keyset_pages_cover_everyone_once_in_order(advisor):
    for i in range(23):
        CustomerFactory(advisor=advisor, total_assets=Decimal(1000 * (i % 7)))  # ties on assets
    seen, after = [], None
    while True:
        page = selectors.customer_list(user=advisor, limit=5, after=after)
        seen += page.customers
        after = page.next_cursor
        if not after:
            break
    assert len(seen) == 23 == len({c.pk for c in seen})
    keys = [(-c.total_assets, c.pk) for c in seen]
    assert keys == sorted(keys)


def test_last_contact_sort_puts_never_contacted_first_and_pages_through(advisor):
    now = timezone.now()
    a = CustomerFactory(advisor=advisor, last_contact_at=now - timedelta(days=3))
    b = CustomerFactory(advisor=advisor, last_contact_at=None)
    c = CustomerFactory(advisor=advisor, last_contact_at=now - timedelta(days=30))
    first = selectors.customer_list(user=advisor, sort="last_contact", limit=2)
    rest = selectors.customer_list(user=advisor, sort="last_contact", limit=2, after=first.next_cursor)
    assert [x.pk for x in first.customers + rest.customers] == [b.pk, c.pk, a.pk]


def test_filters_and_search(advisor):
    today = timezone.localdate()
    expired = CustomerFactory(advisor=advisor, name="张三", risk_level="C4",
                              risk_assessed_at=today - timedelta(days=800), mobile="13811112222")
    fresh = CustomerFactory(advisor=advisor, name="李四", risk_level="C2", risk_assessed_at=today,
                            last_contact_at=timezone.now())
    CustomerFactory(advisor=advisor, name="王五", risk_level="C2", risk_assessed_at=None, lifecycle_stage="retain")

    def names(**filters):
        return {c.name for c in selectors.customer_list(user=advisor, filters=filters).customers}

    assert names(risk_level=["C4"]) == {"张三"}
    assert names(risk_expired="1") == {"张三", "王五"}
    assert names(lifecycle_stage=["retain"]) == {"王五"}
    assert names(no_contact_days=7) == {"张三", "王五"}
    assert names(q="张") == {"张三"}
    assert names(q="138 1111 2222") == {"张三"}
    assert names(q="13811112223") == set()
    assert names(q=fresh.external_id) == {"李四"}
    assert selectors.customer_list(user=advisor, filters={"risk_level": ["C2"]}).total == 2
    assert expired.risk_assessed_at <= selectors.risk_expiry_cutoff()


def test_risk_expiry_uses_configured_validity(settings):
    settings.RISK_ASSESSMENT_VALID_MONTHS = 24
    assert selectors.risk_expiry_cutoff(date(2026, 11, 23)) == date(2024, 11, 23)
    settings.RISK_ASSESSMENT_VALID_MONTHS = 12
    assert selectors.risk_expiry_cutoff(date(2026, 3, 31)) == date(2025, 3, 28)


@pytest.mark.parametrize("cursor", ["!!!", "WyJhYmMiLCAxXQ==", "WzEsMiwzXQ=="])
def test_malformed_cursor_restarts_paging_instead_of_failing(advisor, cursor):
    CustomerFactory(advisor=advisor)
    assert len(selectors.customer_list(user=advisor, after=cursor).customers) == 1
