"""Every page of the recent features can be reached by clicking, not only by typing its URL: custom fields and
users & roles from the sidebar, group purposes (auto tags) from the groups list, the transfer form with its preview
from the transfers list, the users page's 离职继承 link into that form, and the API docs from 集成."""

import re

import pytest

pytestmark = pytest.mark.django_db


def _hrefs(response) -> set[str]:
    assert response.status_code == 200, response.status_code
    return {h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', response.content.decode())}


def _nav(response) -> dict[str, str]:
    return dict(re.findall(r'<a class="nav-link" href="([^"]+)" data-nav="([^"]+)"', response.content.decode()))


def test_admin_reaches_custom_fields_users_and_transfers_from_the_sidebar(client, admin_user):
    client.force_login(admin_user)
    page = client.get("/customers/")
    nav = {key: url for url, key in _nav(page).items()}
    assert nav["custom_fields"] == "/customers/fields/"
    assert nav["users"] == "/settings/users/"
    assert nav["transfers"] == "/integrations/wecom/transfers/"
    assert "/customers/fields/" in _hrefs(page)  # also the 自定义字段 button on 客户
    assert "/customers/fields/new/" in _hrefs(client.get("/customers/fields/"))
    assert "/settings/users/new/" in _hrefs(client.get("/settings/users/"))


def test_other_roles_see_no_link_to_the_admin_pages(client, advisor, operator, branch_manager):
    for user in (advisor, operator, branch_manager):
        client.force_login(user)
        hrefs = _hrefs(client.get("/customers/"))
        assert "/customers/fields/" not in hrefs and "/settings/users/" not in hrefs
    client.force_login(branch_manager)
    assert "/integrations/wecom/transfers/" in _hrefs(client.get("/customers/"))


@pytest.mark.parametrize("role", ["advisor", "operator", "branch_manager", "admin_user"])
def test_group_purposes_page_is_linked_from_the_groups_list(client, request, role):
    client.force_login(request.getfixturevalue(role))
    groups = client.get("/groups/")
    assert "/groups/" in {url for url in _nav(groups)}
    assert "/groups/purposes/" in _hrefs(groups)
    purposes = client.get("/groups/purposes/")
    assert purposes.status_code == 200 and "/groups/" in _hrefs(purposes)


def test_transfer_form_and_its_preview_are_linked_from_the_transfers_list(client, branch_manager):
    client.force_login(branch_manager)
    assert "/integrations/wecom/transfers/new/" in _hrefs(client.get("/integrations/wecom/transfers/"))
    form = client.get("/integrations/wecom/transfers/new/").content.decode()
    assert 'data-testid="transfer-preview"' in form  # 预览客户: the form answers the preview on the same page


def test_api_docs_and_schema_are_linked_from_integrations(client, admin_user):
    client.force_login(admin_user)
    assert "/api/v1/docs/" in _hrefs(client.get("/integrations/"))
    assert client.get("/api/v1/schema/", HTTP_ACCEPT="application/json").status_code == 200
