"""Celery finds tasks in ``<app>.tasks``: the dashboard's live counters, the analyses' refreshes and the people
analyses each keep theirs in their own module."""

from dashboards.tasks_analyses import *  # noqa: F401,F403
from dashboards.tasks_live import *  # noqa: F401,F403
from dashboards.tasks_people import *  # noqa: F401,F403
