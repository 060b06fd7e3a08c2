from datetime import timedelta

import pytest
from django.utils import timezone

from customers.tests.factories import CustomerFactory
from groups.demo import seed_groups_demo
from groups.models import GroupDailyStat
from groups.services import group_sync_from_wecom
from groups.tests.factories import group_chat_payload, member

pytestmark = pytest.mark.django_db


def test_demo_gives_synced_groups_purposes_audiences_and_history(advisor):
    advisor.wecom_userid = "wx_advisor_bj"
    advisor.save(update_fields=["wecom_userid"])
    bold = [CustomerFactory(advisor=advisor, risk_level="C5", wecom_external_userid=f"wmBOLD{i}") for i in range(4)]
    CustomerFactory(advisor=advisor, risk_level="C5", name="不在企微的客户")
    stock = group_sync_from_wecom(group_chat_payload("wrSTOCK", owner="wx_advisor_bj", name="王磊·股友交流群",
                                                     members=[member("wx_advisor_bj", type=1),
                                                              *[member(c.wecom_external_userid) for c in bold[:2]]]))
    other = group_sync_from_wecom(group_chat_payload("wrCHAT", owner="wx_advisor_bj", name="闲聊群", members=[]))

    result = seed_groups_demo()
    assert result["groups"] == 2 and result["purposes_set"] == 1 and result["daily_stats"] == 60
    stock.refresh_from_db()
    other.refresh_from_db()
    assert stock.purpose == "stock_friends" and stock.audience.name == "社群目标·积极型股友"
    assert other.purpose == "other" and other.audience is None
    # the audience gap shows the WeCom contacts with C4/C5 who are not in the group yet
    from groups.selectors import audience_not_in_group

    assert set(audience_not_in_group(stock, advisor)) == set(bold[2:])
    stats = GroupDailyStat.objects.filter(group=stock).order_by("day")
    assert stats.count() == 30 and stats.last().day == timezone.localdate() - timedelta(days=1)
    assert all(s.members >= 1 for s in stats)

    assert seed_groups_demo()["purposes_set"] == 0
    assert GroupDailyStat.objects.count() == 60
