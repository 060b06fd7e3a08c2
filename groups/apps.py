from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "groups"
    verbose_name = "社群"

    def ready(self):
        from groups.services import segment_action_group_invite, segment_action_group_invite_validate
        from segments.actions import register_action_handler

        # segments' bulk action "邀请入群" creates invite tasks for the segment's members
        register_action_handler("group_invite", segment_action_group_invite, validate=segment_action_group_invite_validate)

        from core.events import GroupMembersChanged, subscribe
        from groups.services import group_purpose_tags_apply

        # 入群自动标签: the tags of a group's purpose for who joins (and off, when configured, for who leaves)
        subscribe(GroupMembersChanged, group_purpose_tags_apply)
