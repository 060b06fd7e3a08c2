"""Celery tasks (thin; logic lives in the modules they call): the churn scores (nightly), their backtest
(daily), and the advisor follow-up and SOP roll-up summaries (every 10 minutes)."""

from celery import shared_task

CHURN_SOFT_TIME_LIMIT = 60 * 60  # a million clients' features take minutes; leave room for a slow disk


@shared_task(name="dashboards.churn_scores", acks_late=True, ignore_result=True,
             soft_time_limit=CHURN_SOFT_TIME_LIMIT, time_limit=CHURN_SOFT_TIME_LIMIT + 120)
def churn_scores() -> dict:
    from dashboards.churn import churn_scores_compute

    return churn_scores_compute()


@shared_task(name="dashboards.churn_backtest", acks_late=True, ignore_result=True,
             soft_time_limit=CHURN_SOFT_TIME_LIMIT, time_limit=CHURN_SOFT_TIME_LIMIT + 120)
def churn_backtest() -> dict:
    from dashboards.churn import churn_backtest_compute

    result = churn_backtest_compute()
    return {"population": result["population"], "churned": result["churned"]}


@shared_task(name="dashboards.people_summaries", acks_late=True, ignore_result=True)
def people_summaries() -> dict:
    from dashboards.advisors import advisor_stats_refresh
    from dashboards.sop_rollup import sop_rollup_refresh

    return {"advisors": advisor_stats_refresh(), "sop_journeys": sop_rollup_refresh()}
