"""Group URLs for tests/test_scope.py: a group owned by the Shanghai advisor of objs["customer"]."""


def _foreign_group(objs) -> int:
    from groups.models import GroupChat, GroupMember

    customer = objs["customer"]
    group, _ = GroupChat.objects.get_or_create(
        chat_id=f"wrSCOPE{customer.pk}",
        defaults={"name": "上海专属群", "advisor": customer.advisor, "branch": customer.branch,
                  "owner_userid": "scope-owner", "member_count": 1})
    GroupMember.objects.get_or_create(group=group, userid=f"wmSCOPE{customer.pk}",
                                      defaults={"customer": customer, "name": customer.name})
    return group.pk


PAGES_WITHOUT_OBJECTS = {"groups:list", "groups:purposes"}
OBJECT_KWARGS = {"group_id": _foreign_group}
