"""The analyses' URLs for tests/test_scope.py: none carries an object id; advisors get 404 by role and a
branch manager's numbers are cut to their branch (dashboards/tests/test_analyses.py proves the numbers)."""

PAGES_WITHOUT_OBJECTS = {
    "dashboards:analyses_funnel", "dashboards:analyses_funnel_csv", "dashboards:analyses_funnel_dropouts",
    "dashboards:analyses_cohorts", "dashboards:analyses_cohorts_csv", "dashboards:analyses_magic",
    "dashboards:analyses_magic_csv", "dashboards:analyses_channels", "dashboards:analyses_channels_csv",
    "dashboards:analyses_refresh",
}
OBJECT_KWARGS: dict = {}
