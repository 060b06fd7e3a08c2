"""Two rebuilds of one segment never overlap: the second, on another connection, records "skipped"."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction

from customers.tests.factories import CustomerFactory
from segments.models import Segment, SegmentMember, SegmentRebuild
from segments.services import segment_rebuild

RICH = {"op": "and", "rules": [{"type": "attribute", "field": "total_assets", "op": "gte", "value": 1000000}]}


@pytest.mark.django_db(transaction=True)
def test_concurrent_rebuilds_of_one_segment_one_is_skipped(advisor):
    for assets in ("2000000", "3000000", "10"):
        CustomerFactory(advisor=advisor, total_assets=Decimal(assets))
    segment = Segment.objects.create(name="高净值", rule=RICH)
    other = Segment.objects.create(name="另一个", rule=RICH)
    first_done, release = threading.Event(), threading.Event()
    outcome = {}

    def first_rebuild():
        try:
            # the rebuild's lock is transaction-scoped: holding the outer transaction open keeps it held,
            # exactly as a long rebuild would
            with transaction.atomic():
                outcome["first"] = segment_rebuild(segment_id=segment.pk, requested_by="first")
                first_done.set()
                release.wait(20)
        finally:
            first_done.set()
            connection.close()

    thread = threading.Thread(target=first_rebuild)
    thread.start()
    try:
        assert first_done.wait(20)
        second = segment_rebuild(segment_id=segment.pk, requested_by="second")
        assert second.status == SegmentRebuild.Status.SKIPPED
        assert SegmentMember.objects.filter(segment=segment).count() == 0  # the first has not committed
        # the lock is per segment: another segment rebuilds meanwhile
        assert segment_rebuild(segment_id=other.pk).status == SegmentRebuild.Status.DONE
    finally:
        release.set()
        thread.join(30)
    assert outcome["first"].status == SegmentRebuild.Status.DONE and outcome["first"].size == 2
    statuses = dict(SegmentRebuild.objects.filter(segment=segment).values_list("requested_by", "status"))
    assert statuses == {"first": "done", "second": "skipped"}
    assert SegmentMember.objects.filter(segment=segment).count() == 2
    # once the first has finished, the next rebuild runs
    assert segment_rebuild(segment_id=segment.pk).status == SegmentRebuild.Status.DONE
