"""The people analyses' URLs for tests/test_scope.py: none carries an object id (filters are query parameters,
and an advisor outside the viewer's scope answers 404, proved in test_people_churn.py)."""

PAGES_WITHOUT_OBJECTS = {
    "dashboards:churn", "dashboards:churn_csv", "dashboards:churn_tasks", "dashboards:churn_enroll",
    "dashboards:churn_refresh", "dashboards:advisors", "dashboards:advisors_csv", "dashboards:people_refresh",
    "dashboards:sop_rollup", "dashboards:sop_rollup_csv",
}
OBJECT_KWARGS: dict = {}
