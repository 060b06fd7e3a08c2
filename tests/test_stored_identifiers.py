"""No stored value can make a page answer 500: customers whose external ids predate the identifier pattern (or
came in through the admin) with ``/``, ``~``, ``%``, ``?``, ``#``, spaces, Chinese and markup are listed, opened,
tagged and served by the API like any other."""

import pytest
from django.urls import reverse

from customers.tests.factories import CustomerFactory
from integrations.tests.api_support import api, branches, make_api_client  # noqa: F401
from tests.test_scope import PAGES_WITHOUT_OBJECTS, all_patterns

pytestmark = pytest.mark.django_db

ODD_IDS = ["a/b", "../x", "~2F", "50%25", "what?x=1", "h#1", "with space", "客户/一", "<b>x</b>", "a/", "/"]


@pytest.fixture
def odd_customers(advisor):
    return [CustomerFactory(external_id=external_id, advisor=advisor, name=f"奇怪编号{i}")
            for i, external_id in enumerate(ODD_IDS)]


def test_every_page_without_objects_answers_for_everyone_who_sees_these_customers(client, odd_customers, advisor,
                                                                                   hq_manager, admin_user):
    for user in (advisor, hq_manager, admin_user):
        client.force_login(user)
        for name, route, converters in all_patterns():
            if converters or name not in PAGES_WITHOUT_OBJECTS:
                continue
            response = client.get("/" + route)
            assert response.status_code < 500, f"{name} answered {response.status_code} to {user}"


def test_each_customers_own_pages_open_by_their_stored_id(client, odd_customers, advisor):
    client.force_login(advisor)
    listing = client.get("/customers/").content.decode()
    for customer in odd_customers:
        url = reverse("customers:detail", args=[customer.external_id])
        assert url in listing  # the list links to it
        response = client.get(url)
        assert response.status_code == 200 and customer.name in response.content.decode(), customer.external_id
        assert client.get(reverse("tagging:customer_tags", args=[customer.external_id])).status_code == 200


def test_the_api_serves_them_by_their_stored_id(api, odd_customers):  # noqa: F811
    listed = {row["external_id"] for row in api.get("/api/v1/customers/?page_size=500").json()["results"]}
    assert listed >= set(ODD_IDS)
    for customer in odd_customers:
        response = api.get(reverse("api:customer_detail", args=[customer.external_id]))
        assert response.status_code == 200 and response.json()["external_id"] == customer.external_id
