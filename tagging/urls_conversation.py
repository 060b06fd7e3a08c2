"""Conversation-tag URLs; tagging/urls.py includes them (namespace "tagging"), so they live under /tags/."""

from django.urls import path

from tagging import views_conversation

urlpatterns = [
    path("suggestions/<int:suggestion_id>/confirm/", views_conversation.suggestion_confirm, name="suggestion_confirm"),
    path("suggestions/<int:suggestion_id>/reject/", views_conversation.suggestion_reject, name="suggestion_reject"),
    path("conversation-rules/", views_conversation.conversation_rules, name="conversation_rules"),
    path("conversation-rules/try/", views_conversation.conversation_rules_try, name="conversation_rules_try"),
    path("conversation-rules/<int:rule_id>/toggle/", views_conversation.conversation_rule_toggle,
         name="conversation_rule_toggle"),
]
