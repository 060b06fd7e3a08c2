"""The demo data generator: deterministic, valid personal data, and the signals the analytics must find."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from core.crypto import blind_index, decrypt, mask_id_number, mask_mobile
from core.validators import id_number_birth_date, validate_id_number, validate_mobile
from customers.demo_data import DEMO_ADVISORS, DemoDataError, seed_demo
from customers.models import FUNNEL_ORDER, BehaviourEvent, Customer, Trade

N = 400
TODAY = timezone.localdate()

DUMP_SQL = """
SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
    SELECT concat_ws(',', c.external_id, c.name, c.gender, c.birth_date, c.region, c.occupation, b.code, u.username,
                     c.opened_at, c.channel, c.utm_source, c.utm_medium, c.utm_campaign, c.funnel_stage, c.risk_level,
                     c.risk_assessed_at, c.total_assets, c.lifecycle_stage, c.wecom_external_userid, c.mobile_hash,
                     c.mobile_masked, c.id_number_hash, c.id_number_masked, c.last_contact_at, c.created_at) AS x
    FROM customers_customer c JOIN core_branch b ON b.id = c.branch_id LEFT JOIN core_user u ON u.id = c.advisor_id
    UNION ALL
    SELECT concat_ws(',', t.external_id, c.external_id, p.code, t.traded_at, t.side, t.amount)
    FROM customers_trade t JOIN customers_customer c ON c.id = t.customer_id JOIN customers_product p ON p.id = t.product_id
    UNION ALL
    SELECT concat_ws(',', e.event_id, c.external_id, e.type, e.occurred_at, e.properties::text)
    FROM customers_behaviourevent e JOIN customers_customer c ON c.id = e.customer_id
) rows
"""


def _dump() -> str:
    with connection.cursor() as cursor:
        cursor.execute(DUMP_SQL)
        return cursor.fetchone()[0]


def _empty() -> None:
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE customers_customer CASCADE")


@pytest.fixture(scope="module")
def seeded_once(django_db_setup, django_db_blocker):
    """One seed shared by the read-only tests below, rolled back when the module ends."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield seed_demo(customers=N, seed=7, today=TODAY)
        transaction.set_rollback(True)


@pytest.fixture
def seeded(seeded_once, db):
    return seeded_once


def test_same_size_and_seed_give_identical_rows(db):
    _empty()  # in case another test's seed is still in this transaction
    first = seed_demo(customers=N, seed=7, today=TODAY)
    digest = _dump()
    _empty()
    second = seed_demo(customers=N, seed=7, today=TODAY)
    assert _dump() == digest
    assert first["trades"] == second["trades"] and first["events"] == second["events"]
    _empty()
    seed_demo(customers=N, seed=8, today=TODAY)
    assert _dump() != digest


def test_refuses_a_database_that_already_has_customers(seeded):
    with pytest.raises(DemoDataError, match="already holds customers"):
        seed_demo(customers=10)
    with pytest.raises(CommandError, match="already holds customers"):
        call_command("seed_demo", "--customers", "10")
    assert Customer.objects.count() == N


def test_counts_and_books_are_realistic(seeded):
    assert seeded["customers"] == Customer.objects.count() == N
    assert seeded["trades"] == Trade.objects.count()
    assert seeded["events"] == BehaviourEvent.objects.count()
    assert 8 * N <= seeded["trades"] <= 40 * N
    assert 30 * N <= seeded["events"] <= 90 * N
    books = dict(Customer.objects.filter(advisor__username__in=DEMO_ADVISORS)
                 .values_list("advisor__username").annotate(n=Count("id")))
    assert set(books) == set(DEMO_ADVISORS)
    assert all(n >= N / 6 * 0.5 for n in books.values())


def test_identity_numbers_and_mobiles_are_valid_and_consistent(seeded):
    id_numbers, mobiles = set(), set()
    for c in Customer.objects.all():
        id_number, mobile = decrypt(c.id_number_encrypted), decrypt(c.mobile_encrypted)
        validate_id_number(id_number)
        validate_mobile(mobile)
        assert id_number_birth_date(id_number) == c.birth_date
        assert int(id_number[16]) % 2 == (1 if c.gender == "M" else 0)
        assert (c.id_number_hash, c.id_number_masked) == (blind_index(id_number), mask_id_number(id_number))
        assert (c.mobile_hash, c.mobile_masked) == (blind_index(mobile), mask_mobile(mobile))
        id_numbers.add(id_number)
        mobiles.add(mobile)
    assert len(id_numbers) == len(mobiles) == N


def test_funnel_loses_people_at_every_step_and_channels_differ_in_quality(seeded):
    stages = dict(Customer.objects.values_list("funnel_stage").annotate(n=Count("id")))
    assert all(stages.get(stage, 0) > 0 for stage in FUNNEL_ORDER)

    def funded_rate(channel):
        qs = Customer.objects.filter(channel=channel)
        return qs.filter(funnel_stage="funded").count() / qs.count(), qs.count()

    feed_rate, feed_volume = funded_rate("抖音信息流")
    referral_rate, referral_volume = funded_rate("老客推荐")
    assert feed_volume > 3 * referral_volume
    assert referral_rate > 2 * feed_rate


def test_reading_news_early_goes_with_a_second_trade(seeded):
    """The "magic number": >5 news items in the first 30 days after opening."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH opened AS (
                SELECT c.id,
                       (SELECT count(*) FROM customers_behaviourevent e
                        WHERE e.customer_id = c.id AND e.type = 'news_read'
                          AND e.occurred_at < (c.opened_at::timestamp AT TIME ZONE 'Asia/Shanghai') + interval '30 days'
                       ) > 5 AS reader,
                       (SELECT count(*) FROM customers_trade t WHERE t.customer_id = c.id) >= 2 AS second_trade
                FROM customers_customer c
                WHERE c.funnel_stage IN ('opened', 'funded') AND c.opened_at < %s
            )
            SELECT reader, count(*), avg(second_trade::int) FROM opened GROUP BY reader
            """,
            [TODAY - timedelta(days=60)],
        )
        rates = {reader: (n, float(rate)) for reader, n, rate in cursor.fetchall()}
    assert rates[True][0] >= 15 and rates[False][0] >= 15
    assert rates[True][1] > 1.8 * rates[False][1]


def test_some_valuable_clients_are_dormant_and_trades_keep_market_hours(seeded):
    # the seed is relative to Python's clock (TODAY), so "now" is Python's too, not PostgreSQL's now()
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT count(*) FROM customers_customer c
            WHERE c.total_assets >= 200000
              AND (SELECT max(traded_at) FROM customers_trade t WHERE t.customer_id = c.id) < %s - interval '183 days'
            """,
            [now],
        )
        assert cursor.fetchone()[0] >= 1
        cursor.execute(
            """
            SELECT count(*) FILTER (WHERE NOT (extract(isodow FROM local) < 6
                                     AND (local::time BETWEEN '09:30' AND '11:30' OR local::time BETWEEN '13:00' AND '15:00'))),
                   max(traded_at) < %s
            FROM (SELECT traded_at, traded_at AT TIME ZONE 'Asia/Shanghai' AS local FROM customers_trade) t
            """,
            [now],
        )
        outside_hours, past = cursor.fetchone()
        assert outside_hours == 0 and past
        cursor.execute(
            """
            SELECT avg((extract(isodow FROM local) < 6
                        AND (local::time BETWEEN '09:30' AND '11:30' OR local::time BETWEEN '13:00' AND '15:00'))::int),
                   max(occurred_at) < %s
            FROM (SELECT occurred_at, occurred_at AT TIME ZONE 'Asia/Shanghai' AS local FROM customers_behaviourevent) e
            """,
            [now],
        )
        in_hours, past = cursor.fetchone()
        assert in_hours > 0.55 and past

