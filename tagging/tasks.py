"""Celery tasks of the tagging app: load by id, call a service, nothing else."""

from celery import shared_task

from tagging import tiers

TIER_RUN_SOFT_TIME_LIMIT = 2 * 60 * 60  # a million customers take minutes; leave room for a slow disk
TIER_RUN_MAX_RETRIES = 8


@shared_task(
    name="tagging.tier_run", bind=True, acks_late=True, max_retries=TIER_RUN_MAX_RETRIES,
    soft_time_limit=TIER_RUN_SOFT_TIME_LIMIT, time_limit=TIER_RUN_SOFT_TIME_LIMIT + 120,
)
def tier_run(self, run_id: int | None = None, as_of: str | None = None) -> int | None:
    """Recompute all tiers: a run queued from the tiers page (``run_id``) or the nightly one (beat, no args).

    Safe to run twice: a finished run is skipped and the recompute itself is idempotent. While
    another run holds the lock, retry with growing delays; the last attempt marks the run failed.
    """
    try:
        run = tiers.tier_run_execute(run_id=run_id, as_of=as_of,
                                     give_up_when_busy=self.request.retries >= TIER_RUN_MAX_RETRIES)
    except tiers.TierRunBusyError as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2 ** self.request.retries)) from exc
    return run.pk if run else None


@shared_task(name="tagging.tag_rule_apply", bind=True, acks_late=True)
def tag_rule_apply_task(self, tag_rule_id: int) -> dict | None:
    """Apply one rule now (the rule editor's 保存并立即打标); gone rules are skipped quietly."""
    from tagging.models import TagRule
    from tagging.rule_tags import tag_rule_apply

    tag_rule = TagRule.objects.select_related("tag").filter(pk=tag_rule_id).first()
    return tag_rule_apply(tag_rule=tag_rule) if tag_rule else None


@shared_task(name="tagging.tag_rules_apply_all", bind=True, acks_late=True)
def tag_rules_apply_all_task(self, customer_ids: list[int] | None = None) -> dict:
    """Every enabled rule: hourly from beat, or for the given customers after new trades/events."""
    from tagging.rule_tags import tag_rules_apply_all

    return tag_rules_apply_all(customer_ids=customer_ids)


@shared_task(name="tagging.tags_expire", bind=True, acks_late=True)
def tags_expire_task(self) -> int:
    from tagging.rule_tags import tags_expire

    return tags_expire()


@shared_task(name="tagging.tier_incremental", bind=True, acks_late=True, max_retries=8)
def tier_incremental(self, customer_ids: list[int]) -> int | None:
    """Reclassify the customers whose trades just arrived (API or CRM sync); while a full run holds the
    lock, retry later (the full run may not have seen the new trades)."""
    from tagging.tiers import TierRunBusyError, tier_run_incremental

    try:
        run = tier_run_incremental(customer_ids=customer_ids, source="trades")
    except TierRunBusyError as exc:
        raise self.retry(exc=exc, countdown=min(600, 30 * 2 ** self.request.retries)) from exc
    return run.pk if run else None
