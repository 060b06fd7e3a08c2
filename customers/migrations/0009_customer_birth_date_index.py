"""(birth_date, id) on customers for the age conditions of segment rules (segments.rules compiles "age 30–50" to a
birth_date range): with a tier or tag condition the planner joins the tier/tag set to this range index-only instead
of fetching each candidate's row. Built CONCURRENTLY."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('customers', '0008_trade_customer_fk_index_covered'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='customer',
            index=models.Index(fields=['birth_date', 'id'], name='cust_birth'),
        ),
    ]
