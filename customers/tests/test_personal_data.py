"""Personal data on the pages: the ID number masked to its last four, the birth date only for roles with personal
data (an age band for the others), and the search by exact mobile or ID number — personal-data roles only, by
POST (never in a URL), rate-limited per user and audited without the clear term."""

import json
from datetime import date

import pytest
from django.core.cache import cache

from core.crypto import blind_index
from core.models import AuditLog
from customers import selectors, services
from customers.models import age_band, age_band_label
from customers.tests.factories import CustomerFactory, id_number_for

pytestmark = pytest.mark.django_db

BORN = date(1990, 3, 7)
MOBILE = "13800000000"
ID_NUMBER = id_number_for(BORN)
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "customer-results"}


@pytest.fixture
def client_a(advisor):
    """The advisor's client with every personal field, and a second one so an unfiltered list has two rows."""
    customer = CustomerFactory(advisor=advisor, name="张三", mobile=MOBILE, id_number=ID_NUMBER, birth_date=BORN)
    CustomerFactory(advisor=advisor, name="李四", mobile="13900000001")
    return customer


@pytest.fixture
def fresh_limits(advisor, branch_manager):
    """The per-user search counters live in Redis, outside the test transaction: start and end at zero."""
    keys = [services.pii_search_rate_key(u) for u in (advisor, branch_manager)]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def _names(response) -> list[str]:
    body = response.content.decode()
    return [n for n in ("张三", "李四") if f">{n}</a>" in body]


# --- mask and age band -------------------------------------------------------------------------------------------

def test_id_number_mask_keeps_the_last_four_only():
    from core.crypto import mask_id_number

    masked = mask_id_number(ID_NUMBER)
    assert masked == "*" * 14 + ID_NUMBER[-4:] and len(masked) == 18
    assert ID_NUMBER[:6] not in masked and "19900307" not in masked


def test_age_band_by_decade_with_open_ends():
    assert age_band(date(1990, 3, 7), today=date(2026, 3, 6)) == "30-39"  # 35 the day before the birthday
    assert age_band(date(1990, 3, 7), today=date(2030, 3, 6)) == "30-39"  # 39
    assert age_band(date(1990, 3, 7), today=date(2030, 3, 7)) == "40-49"  # 40 on the day
    assert age_band(date(2010, 1, 1), today=date(2026, 6, 1)) == "<20"
    assert age_band(date(1930, 1, 1), today=date(2026, 6, 1)) == "80+"
    assert age_band(None) is None
    assert age_band_label("30-39") == "30–39 岁" and age_band_label("80+") == "80 岁及以上"
    assert age_band_label(None) == ""


# --- 360° page and list ------------------------------------------------------------------------------------------

def test_operator_sees_an_age_band_and_no_birth_date_on_the_360_page_and_the_list(client, operator, client_a):
    client.force_login(operator)
    body = client.get(f"/customers/c/{client_a.external_id}/").content.decode()
    assert 'data-testid="age-band"' in body and client_a.age_band_label in body
    assert "1990-03-07" not in body and "19900307" not in body and 'data-testid="birth-date"' not in body
    assert "*" * 14 + ID_NUMBER[-4:] in body and ID_NUMBER[:6] not in body
    listing = client.get("/customers/").content.decode()
    assert "张三" in listing and "1990-03-07" not in listing and "19900307" not in listing


@pytest.mark.parametrize("role", ["advisor", "branch_manager", "hq_manager", "compliance", "admin_user"])
def test_personal_data_roles_see_the_birth_date(client, request, client_a, role):
    client.force_login(request.getfixturevalue(role))
    body = client.get(f"/customers/c/{client_a.external_id}/").content.decode()
    assert 'data-testid="birth-date"' in body and "1990-03-07" in body
    assert 'data-testid="age-band"' not in body
    assert ID_NUMBER not in body  # the ID number itself stays masked until revealed (with a reason, audited)


# --- search ------------------------------------------------------------------------------------------------------

def test_operator_cannot_find_a_customer_by_exact_mobile_or_id_number(client, operator, client_a):
    client.force_login(operator)
    for term in (MOBILE, "138 0000 0000", ID_NUMBER, ID_NUMBER.lower()):
        response = client.post("/customers/", {"q": term}, **HTMX)
        assert response.status_code == 200
        assert _names(response) == [], term
        assert 'data-testid="search-refused"' in response.content.decode()
    by_name = client.post("/customers/", {"q": "张"}, **HTMX)
    assert _names(by_name) == ["张三"] and 'data-testid="search-refused"' not in by_name.content.decode()
    by_number = client.post("/customers/", {"q": client_a.external_id}, **HTMX)
    assert _names(by_number) == ["张三"]
    assert not AuditLog.objects.filter(action__startswith="customer.pii_search").exists()
    # the selector itself refuses, whoever calls it
    page = selectors.customer_list(user=operator, filters={"q": MOBILE})
    assert page.customers == [] and page.search_refused


def test_a_search_term_in_the_address_is_ignored(client, advisor, client_a, fresh_limits):
    client.force_login(advisor)
    response = client.get("/customers/", {"q": MOBILE})
    assert set(_names(response)) == {"张三", "李四"}
    assert f'value="{MOBILE}"' not in response.content.decode()  # not taken into the search box either
    assert not AuditLog.objects.filter(action="customer.pii_search").exists()
    filtered = client.get("/customers/", {"q": "张", "risk_level": "C3"})
    assert set(_names(filtered)) == {"张三", "李四"}  # the other filters still work by GET


def test_exact_search_is_a_post_and_is_audited_without_the_clear_value(client, advisor, client_a, fresh_limits):
    client.force_login(advisor)
    response = client.post("/customers/?risk_level=C3", {"q": "138-0000-0000", "risk_level": "C3"}, **HTMX)
    assert response.status_code == 200 and _names(response) == ["张三"]
    assert response["HX-Push-Url"] == "/customers/?risk_level=C3"  # the filters, never the term
    audit = AuditLog.objects.get(action="customer.pii_search")
    assert audit.actor == advisor and audit.target_type == "customer" and audit.target_id == client_a.external_id
    assert audit.details == {"field": "mobile", "matches": 1, "term_hash": blind_index(MOBILE),
                             "term_masked": "138****0000"}
    assert MOBILE not in json.dumps(audit.details) + audit.reason + audit.target_id

    by_id = client.post("/customers/", {"q": ID_NUMBER.lower()}, **HTMX)
    assert _names(by_id) == ["张三"]
    id_audit = AuditLog.objects.filter(action="customer.pii_search").order_by("-id").first()
    assert id_audit.details["field"] == "id_number" and id_audit.details["matches"] == 1
    assert id_audit.details["term_masked"] == "*" * 14 + ID_NUMBER[-4:]
    assert ID_NUMBER not in json.dumps(id_audit.details)

    nobody = client.post("/customers/", {"q": "13911112222"}, **HTMX)
    assert _names(nobody) == []
    miss = AuditLog.objects.filter(action="customer.pii_search").order_by("-id").first()
    assert miss.details["matches"] == 0 and miss.target_id == ""
    # a name search is not an exact search of personal data: not audited
    client.post("/customers/", {"q": "张"}, **HTMX)
    assert AuditLog.objects.filter(action="customer.pii_search").count() == 3


def test_the_topbar_and_list_search_forms_post(client, advisor, client_a, fresh_limits):
    client.force_login(advisor)
    body = client.get("/customers/").content.decode()
    topbar = body.split('data-testid="topbar-search"')[0].rsplit("<form", 1)[1]
    assert 'method="post"' in topbar and 'action="/customers/"' in topbar
    filters = body.split('data-testid="customer-filters"')[0].rsplit("<form", 1)[1]
    assert 'method="post"' in filters and "hx-post" in filters and "hx-get" not in filters
    # the top bar posts a plain form: the whole list page comes back with the match
    response = client.post("/customers/", {"q": MOBILE})
    assert response.status_code == 200 and _names(response) == ["张三"]
    assert AuditLog.objects.filter(action="customer.pii_search", actor=advisor).count() == 1


def test_the_31st_exact_search_within_the_window_answers_429(client, advisor, branch_manager, client_a, fresh_limits,
                                                            settings):
    assert settings.CUSTOMER_PII_SEARCH_LIMIT == 30 and settings.CUSTOMER_PII_SEARCH_WINDOW_SECONDS == 3600
    client.force_login(advisor)
    for _ in range(30):
        assert client.post("/customers/", {"q": MOBILE}, **HTMX).status_code == 200
    refused = client.post("/customers/", {"q": MOBILE}, **HTMX)
    assert refused.status_code == 429
    body = refused.content.decode()
    assert 'data-testid="search-error"' in body and "过于频繁" in body and "30" in body and "张三" not in body
    assert client.post("/customers/", {"q": ID_NUMBER}).status_code == 429  # the full page too, any exact field
    assert AuditLog.objects.filter(action="customer.pii_search").count() == 30
    limited = AuditLog.objects.filter(action="customer.pii_search_limited")
    assert limited.count() == 1 and limited.get().actor == advisor  # the first refusal, not every one
    # names still work, and the limit is per user
    assert client.post("/customers/", {"q": "张"}, **HTMX).status_code == 200
    client.force_login(branch_manager)
    assert _names(client.post("/customers/", {"q": MOBILE}, **HTMX)) == ["张三"]


def test_load_more_keeps_the_term_out_of_the_url(client, advisor, fresh_limits):
    for i in range(55):
        CustomerFactory(advisor=advisor, name=f"王{i:02d}")
    client.force_login(advisor)
    first = client.post("/customers/", {"q": "王"}, **HTMX).content.decode()
    button = first.split('data-testid="load-more"')[0].rsplit("<button", 1)[1]
    assert "hx-post=" in button and "q=" not in button.split("hx-post=")[1].split(" ")[0]
    url = button.split('hx-post="')[1].split('"')[0].replace("&amp;", "&")
    rest = client.post(url, {"q": "王"}, HTTP_HX_REQUEST="true").content.decode()
    assert rest.count('data-testid="customer-row"') == 5
