"""What tagging does when other areas write: new trades and behaviour events re-run the rule tags of the customers
they belong to, and trades re-tier them (incremental, in Celery), whichever way they arrived (API or CRM sync)."""

from core.events import EventsIngested, TradesIngested, subscribe


def recompute_after_trades(event: TradesIngested) -> None:
    from tagging.tasks import tag_rules_apply_all_task, tier_incremental

    ids = sorted(set(event.customer_ids))
    if ids:
        tag_rules_apply_all_task.delay(customer_ids=ids)
        tier_incremental.delay(customer_ids=ids)


def recompute_after_events(event: EventsIngested) -> None:
    from tagging.tasks import tag_rules_apply_all_task

    ids = sorted(set(event.customer_ids))
    if ids:
        tag_rules_apply_all_task.delay(customer_ids=ids)


def subscriptions() -> None:
    subscribe(TradesIngested, recompute_after_trades)
    subscribe(EventsIngested, recompute_after_events)
