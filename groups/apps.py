from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "groups"
    verbose_name = "社群"

    def ready(self):
        from groups.services import segment_action_group_invite, segment_action_group_invite_validate
        from segments.actions import register_action_handler

        # segments' bulk action "邀请入群" creates invite tasks for the segment's members
        register_action_handler("group_invite", segment_action_group_invite, validate=segment_action_group_invite_validate)
