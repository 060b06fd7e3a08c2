"""Conversation tags: the scanner, the tag write service, suggestions, and their pages over HTTP."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.errors import ApplicationError
from core.models import AuditLog
from customers.services import note_create
from customers.tests.factories import CustomerFactory
from tagging.conversation import (
    RuleSpec,
    conversation_scan,
    suggestion_confirm,
    suggestion_reject,
    suggestions_create_for_text,
    suggestions_pending,
)
from tagging.models import ConversationRule, CustomerTag, CustomerTagHistory, Tag, TagSource, TagSuggestion
from tagging.services import customer_tag_add, customer_tag_remove

History = CustomerTagHistory.Action


def codes(text, rules=None):
    return {m.tag_code for m in conversation_scan(text=text, rules=rules)}


# --- the scanner -------------------------------------------------------------------------------

MARGIN = [RuleSpec(tag_code="margin_intent", keywords=("两融", "融资融券"), required_any=("想", "了解", "开通", "开", "考虑"))]


@pytest.mark.parametrize("text", [
    "不想开两融",
    "客户明确说不需要两融",
    "对两融没兴趣",
    "暂时不考虑开通融资融券",
    "别给我推两融",
    "还没想好要不要开两融",
    "两融就算了，不考虑",
    "问他要不要开两融，他说不需要",
    "投顾：您想不想开两融？",
])
def test_negated_or_unsaid_intent_is_not_tagged(text):
    assert codes(text, MARGIN) == set()


@pytest.mark.parametrize("text", [
    "客户想开两融",
    "不是不想开两融，是资产还不够",
    "问他要不要开两融，他说可以了解一下",
    "不想买基金，但想开两融",
    "客户：我想了解一下融资融券",
])
def test_intent_is_tagged_even_next_to_a_negation_or_a_question(text):
    assert codes(text, MARGIN) == {"margin_intent"}


def test_the_snippet_is_the_clause_that_matched_with_the_keyword_marked():
    [match] = conversation_scan(text="客户说想了解一下两融怎么开通，不想买基金。下午方便", rules=MARGIN)
    assert match.snippet == "客户说想了解一下两融怎么开通"
    assert (match.detail["prefix"], match.detail["keyword"], match.detail["suffix"]) == ("客户说想了解一下", "两融", "怎么开通")


def test_keywords_match_on_word_boundaries_only():
    novice = [RuleSpec(tag_code="novice", keywords=("新手",))]
    assert codes("客户是新手", novice) == {"novice"}
    assert codes("他刚换了新手机", novice) == set()
    elsewhere = [RuleSpec(tag_code="assets_elsewhere", keywords=("券商",), required_any=("有",))]
    assert codes("在别的券商也有账户", elsewhere) == {"assets_elsewhere"}  # 别的 is not the negation 别


def test_exclusions_and_time_placeholder():
    expiring = [RuleSpec(tag_code="product_expiring", keywords=("到期",), required_any=("{时间}", "!身份证"))]
    assert codes("在招行买的理财年底到期", expiring) == {"product_expiring"}
    assert codes("理财快要到期了", expiring) == set()  # no time named
    assert codes("提醒客户身份证下个月到期", expiring) == set()


@pytest.mark.django_db
def test_default_rules_read_time_and_contact_preferences():
    found = {m.tag_code: m for m in conversation_scan(text="客户在工行买的理财下个月到期，上午不方便，下午三点以后可以打电话")}
    assert set(found) == {"assets_elsewhere", "product_expiring", "contact_afternoon"}
    assert found["product_expiring"].detail["time"] == "下个月"
    next_month = (timezone.localdate().replace(day=1) + timedelta(days=32)).replace(day=1)
    assert found["product_expiring"].detail["due_month"] == f"{next_month:%Y-%m}"
    assert found["contact_afternoon"].snippet == "下午三点以后可以打电话"


@pytest.mark.django_db
def test_default_rules_fund_negation_from_the_issue():
    assert codes("客户说想了解一下两融怎么开通，不想买基金") == {"margin_intent"}


@pytest.mark.django_db
def test_disabled_rules_and_inactive_tags_are_not_used():
    assert "star_intent" in codes("我想开通科创板")
    ConversationRule.objects.filter(tag__code="star_intent").update(enabled=False)
    assert "star_intent" not in codes("我想开通科创板")
    assert "options_intent" in codes("我想开通期权")
    Tag.objects.filter(code="options_intent").update(active=False)
    assert "options_intent" not in codes("我想开通期权")


def test_jieba_loads_without_logging(caplog, capsys):
    conversation_scan(text="两融", rules=MARGIN)
    assert "Building prefix dict" not in capsys.readouterr().err
    assert "Building prefix dict" not in caplog.text


# --- customer_tag_add / customer_tag_remove ------------------------------------------------------

@pytest.fixture
def customer(advisor):
    return CustomerFactory(advisor=advisor)


def tag(code):
    return Tag.objects.get(code=code)


def history(customer):
    return list(CustomerTagHistory.objects.filter(customer=customer).order_by("pk")
                .values_list("tag__code", "action", "source", "actor_label"))


@pytest.mark.django_db
def test_tag_add_writes_the_tag_and_its_history(customer, advisor):
    row = customer_tag_add(customer=customer, tag=tag("margin_intent"), source=TagSource.MANUAL, actor=advisor,
                           evidence="电话里说的")
    assert (row.source, row.set_by, row.set_by_label, row.evidence) == ("manual", advisor, "advisor_a", "电话里说的")
    assert history(customer) == [("margin_intent", History.ADDED, "manual", "advisor_a")]


@pytest.mark.django_db
def test_tag_add_is_idempotent_and_records_only_real_changes(customer):
    margin = tag("margin_intent")
    expires = timezone.now() + timedelta(days=30)
    customer_tag_add(customer=customer, tag=margin, source=TagSource.RULE, actor="rule:margin", evidence="a",
                     expires_at=expires)
    customer_tag_add(customer=customer, tag=margin, source=TagSource.RULE, actor="rule:margin", evidence="a",
                     expires_at=expires)
    assert CustomerTagHistory.objects.filter(customer=customer).count() == 1
    later = expires + timedelta(days=30)
    row = customer_tag_add(customer=customer, tag=margin, source=TagSource.RULE, actor="rule:margin", evidence="b",
                           expires_at=later)
    assert (row.evidence, row.expires_at, row.set_by) == ("b", later, None)
    assert CustomerTag.objects.filter(customer=customer).count() == 1
    assert [h[1] for h in history(customer)] == [History.ADDED, History.UPDATED]


@pytest.mark.django_db
def test_tag_add_replaces_the_other_tags_of_its_exclusive_group(customer, advisor):
    customer_tag_add(customer=customer, tag=tag("contact_morning"), source=TagSource.MANUAL, actor=advisor)
    customer_tag_add(customer=customer, tag=tag("margin_intent"), source=TagSource.MANUAL, actor=advisor)
    customer_tag_add(customer=customer, tag=tag("contact_evening"), source=TagSource.CONVERSATION, actor=advisor)
    assert set(CustomerTag.objects.filter(customer=customer).values_list("tag__code", flat=True)) == {
        "margin_intent", "contact_evening"}
    assert history(customer)[-2:] == [("contact_morning", History.REMOVED, "conversation", "advisor_a"),
                                      ("contact_evening", History.ADDED, "conversation", "advisor_a")]


@pytest.mark.django_db
def test_an_expired_tag_counts_as_absent(customer):
    margin = tag("margin_intent")
    customer_tag_add(customer=customer, tag=margin, source=TagSource.RULE, actor="system",
                     expires_at=timezone.now() - timedelta(days=1))
    customer_tag_add(customer=customer, tag=margin, source=TagSource.MANUAL, actor="system")
    assert [h[1] for h in history(customer)] == [History.ADDED, History.EXPIRED, History.ADDED]
    assert CustomerTag.objects.current().filter(customer=customer, tag=margin).exists()


@pytest.mark.django_db
def test_tag_remove(customer, advisor):
    margin = tag("margin_intent")
    assert customer_tag_remove(customer=customer, tag=margin, source=TagSource.MANUAL, actor=advisor) is False
    assert history(customer) == []
    customer_tag_add(customer=customer, tag=margin, source=TagSource.MANUAL, actor=advisor)
    assert customer_tag_remove(customer=customer, tag=margin, source=TagSource.MANUAL, actor=advisor, reason="已开通")
    assert not CustomerTag.objects.filter(customer=customer).exists()
    assert CustomerTagHistory.objects.filter(customer=customer, action=History.REMOVED).get().evidence == "已开通"


@pytest.mark.django_db
def test_tag_add_refuses_an_unknown_source(customer):
    with pytest.raises(ApplicationError):
        customer_tag_add(customer=customer, tag=tag("margin_intent"), source="gossip", actor="system")


# --- suggestions -------------------------------------------------------------------------------

NOTE = TagSuggestion.SourceType.NOTE


@pytest.mark.django_db
def test_suggestions_are_created_once_per_source(customer):
    text = "客户手上有50万闲钱，想开两融"
    first = suggestions_create_for_text(customer=customer, text=text, source_type=NOTE, source_id=7)
    assert {s.tag.code for s in first} == {"idle_funds", "margin_intent"}
    assert suggestions_create_for_text(customer=customer, text=text, source_type=NOTE, source_id=7) == []
    # another note saying the same does not pile up a second pending suggestion either
    assert suggestions_create_for_text(customer=customer, text=text, source_type=NOTE, source_id=8) == []
    assert TagSuggestion.objects.filter(customer=customer).count() == 2
    margin = TagSuggestion.objects.get(customer=customer, tag__code="margin_intent")
    assert (margin.status, margin.snippet, margin.source_id) == ("pending", "想开两融", "7")


@pytest.mark.django_db
def test_a_tag_the_customer_has_is_not_suggested(customer):
    customer_tag_add(customer=customer, tag=tag("margin_intent"), source=TagSource.MANUAL, actor="system")
    created = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type=NOTE, source_id=1)
    assert created == []


@pytest.mark.django_db
def test_saving_a_note_creates_suggestions(customer, advisor, django_capture_on_commit_callbacks):
    from core.events import registry

    assert "tagging.conversation.note_created_scan" in next(r for r in registry() if r["event"] == "NoteCreated")[
        "subscribers"]
    with django_capture_on_commit_callbacks(execute=True):
        note = note_create(author=advisor, customer=customer, body="客户说想了解一下两融怎么开通，不想买基金")
    suggestion = TagSuggestion.objects.get(customer=customer)
    assert (suggestion.tag.code, suggestion.source_type, suggestion.source_id) == ("margin_intent", "note", str(note.pk))


@pytest.mark.django_db
def test_confirm_sets_the_tag_with_evidence_and_expiry(customer, advisor):
    [suggestion] = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type=NOTE, source_id=1)
    row = suggestion_confirm(user=advisor, suggestion=suggestion)
    assert (row.tag.code, row.source, row.evidence, row.set_by) == ("margin_intent", "conversation", "客户想开两融", advisor)
    assert row.evidence_data["suggestion_id"] == suggestion.pk
    assert abs(row.expires_at - (timezone.now() + timedelta(days=60))) < timedelta(minutes=1)
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.decided_by) == ("confirmed", advisor)
    assert history(customer) == [("margin_intent", History.ADDED, "conversation", "advisor_a")]
    assert AuditLog.objects.filter(action="tag_suggestion.confirm", target_id=customer.external_id).exists()
    assert list(suggestions_pending(customer=customer)) == []
    with pytest.raises(ApplicationError) as err:
        suggestion_confirm(user=advisor, suggestion=suggestion)
    assert err.value.code == "suggestion_not_pending"


@pytest.mark.django_db
def test_confirm_respects_exclusive_groups(customer, advisor):
    customer_tag_add(customer=customer, tag=tag("contact_morning"), source=TagSource.MANUAL, actor=advisor)
    [suggestion] = suggestions_create_for_text(customer=customer, text="客户说晚上比较方便", source_type=NOTE,
                                               source_id=1)
    suggestion_confirm(user=advisor, suggestion=suggestion)
    assert list(CustomerTag.objects.filter(customer=customer).values_list("tag__code", flat=True)) == ["contact_evening"]
    assert ("contact_morning", History.REMOVED, "conversation", "advisor_a") in history(customer)


@pytest.mark.django_db
def test_reject_records_the_decision_and_sets_nothing(customer, advisor):
    rules_before = list(ConversationRule.objects.values_list("pk", "keywords", "required_any", "enabled"))
    [suggestion] = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type=NOTE, source_id=1)
    suggestion_reject(user=advisor, suggestion=suggestion)
    suggestion.refresh_from_db()
    assert (suggestion.status, suggestion.decided_by) == ("rejected", advisor)
    assert not CustomerTag.objects.filter(customer=customer).exists()
    assert list(ConversationRule.objects.values_list("pk", "keywords", "required_any", "enabled")) == rules_before
    # a later note is new evidence and may suggest the tag again
    assert suggestions_create_for_text(customer=customer, text="客户又问了两融怎么开", source_type=NOTE, source_id=2)


@pytest.mark.django_db
def test_operators_and_other_scopes_may_not_decide(customer, operator, other_branch_advisor):
    [suggestion] = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type=NOTE, source_id=1)
    with pytest.raises(ApplicationError) as err:
        suggestion_confirm(user=operator, suggestion=suggestion)
    assert err.value.status_code == 403
    with pytest.raises(ApplicationError) as err:
        suggestion_reject(user=other_branch_advisor, suggestion=suggestion)
    assert err.value.status_code == 404
    assert TagSuggestion.objects.get(pk=suggestion.pk).status == "pending"


# --- over HTTP -----------------------------------------------------------------------------------

@pytest.fixture
def suggestion(customer):
    [s] = suggestions_create_for_text(customer=customer, text="客户想开两融", source_type=NOTE, source_id=1)
    return s


@pytest.mark.django_db
def test_confirm_over_http(client, advisor, customer, suggestion):
    client.force_login(advisor)
    url = f"/tags/suggestions/{suggestion.pk}/confirm/"
    assert client.get(url).status_code == 405
    response = client.post(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "已添加标签「两融意向」" in body and f'id="tag-suggestions-{customer.pk}"' in body
    assert "customer-tags-changed" in response["HX-Trigger"]
    assert CustomerTag.objects.filter(customer=customer, tag__code="margin_intent", source="conversation").exists()
    again = client.post(url, HTTP_HX_REQUEST="true")
    assert again.status_code == 200 and "该建议已经处理过了" in again.content.decode()


@pytest.mark.django_db
def test_reject_over_http(client, advisor, customer, suggestion):
    client.force_login(advisor)
    response = client.post(f"/tags/suggestions/{suggestion.pk}/reject/")
    assert response.status_code == 200
    assert TagSuggestion.objects.get(pk=suggestion.pk).status == "rejected"
    assert not CustomerTag.objects.filter(customer=customer).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["confirm", "reject"])
def test_other_scopes_get_404_and_operators_403(client, other_branch_advisor, operator, suggestion, action):
    url = f"/tags/suggestions/{suggestion.pk}/{action}/"
    client.force_login(other_branch_advisor)
    assert client.post(url).status_code == 404
    client.force_login(operator)
    assert client.post(url).status_code == 403
    assert TagSuggestion.objects.get(pk=suggestion.pk).status == "pending"


@pytest.mark.django_db
def test_suggestions_partial_shows_evidence(advisor, customer, suggestion):
    from django.template.loader import render_to_string

    html = render_to_string("tagging/partials/suggestions.html",
                            {"customer": customer, "suggestions": list(suggestions_pending(customer=customer)),
                             "user": advisor})
    assert "两融意向" in html and "客户想开<mark>两融</mark>" in html and "跟进记录" in html
    assert f"/tags/suggestions/{suggestion.pk}/confirm/" in html
    operator_html = render_to_string("tagging/partials/suggestions.html",
                                     {"customer": customer, "suggestions": [suggestion], "user": type(
                                         "U", (), {"role": "operator"})()})
    assert "/confirm/" not in operator_html


# --- operators' rule page -------------------------------------------------------------------------

@pytest.mark.django_db
def test_rule_page_is_for_operators_only(client, advisor, operator):
    client.force_login(advisor)
    assert client.get("/tags/conversation-rules/").status_code == 404
    assert client.post("/tags/conversation-rules/try/", {"text": "想开两融"}).status_code == 404
    client.force_login(operator)
    response = client.get("/tags/conversation-rules/")
    assert response.status_code == 200
    assert "融资融券" in response.content.decode()


@pytest.mark.django_db
def test_operator_adds_a_rule_with_validation(client, operator):
    client.force_login(operator)
    bad = client.post("/tags/conversation-rules/", {"tag": "star_intent", "keywords": " ，、 "}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 400 and "请至少填写一个关键词" in bad.content.decode()
    bad = client.post("/tags/conversation-rules/", {"tag": "star_intent", "keywords": "北交所", "required_any": "{地点}"})
    assert bad.status_code == 400 and "未知的占位符" in bad.content.decode()
    ok = client.post("/tags/conversation-rules/", {"tag": "star_intent", "keywords": "北交所、北证",
                                                   "required_any": "想, 开通", "excluded": "已经", "enabled": "on"},
                     HTTP_HX_REQUEST="true")
    assert ok.status_code == 200 and "已为「科创板意向」新增规则" in ok.content.decode()
    rule = ConversationRule.objects.get(keywords=["北交所", "北证"])
    assert (rule.tag.code, rule.required_any, rule.enabled) == ("star_intent", ["想", "开通", "!已经"], True)
    assert codes("客户想开通北交所") >= {"star_intent"}
    assert "star_intent" not in codes("客户已经开通北交所")
    toggled = client.post(f"/tags/conversation-rules/{rule.pk}/toggle/")
    assert toggled.status_code == 200
    rule.refresh_from_db()
    assert rule.enabled is False


@pytest.mark.django_db
def test_try_box_shows_matches_with_snippets_and_what_was_skipped(client, operator):
    client.force_login(operator)
    assert client.get("/tags/conversation-rules/try/").status_code == 405
    response = client.post("/tags/conversation-rules/try/", {"text": "客户说想了解一下两融怎么开通，不想了解基金"},
                           HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert 'data-testid="try-match-margin_intent"' in body and "想了解一下<mark>两融</mark>怎么开通" in body
    assert 'data-testid="try-skipped-fund_interest"' in body and "否定" in body


@pytest.mark.django_db
def test_adding_a_rule_without_htmx_redirects(client, operator):
    client.force_login(operator)
    response = client.post("/tags/conversation-rules/", {"tag": "novice", "keywords": "不会开户", "enabled": "on"})
    assert response.status_code == 302 and response["Location"] == "/tags/conversation-rules/"
    assert "已为「投资小白」新增规则" in client.get(response["Location"]).content.decode()
