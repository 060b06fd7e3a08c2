"""Drop the (customer_id) index Django gives the Trade.customer foreign key: trade_customer_time_cover
(customer, traded_at) INCLUDE (product, amount) leads with the same column and serves every lookup it served
(cascade deletes, per-customer trades), index-only; left in place, the planner preferred the narrower one and
fetched a heap page per trade in the NOT EXISTS probes of segment rules. One index fewer for trade ingest.

Only the index is dropped (CONCURRENTLY): a plain AlterField would also drop and re-add the foreign key, re-checking
every trade under a lock."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('customers', '0007_trade_customer_time_covering'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL('DROP INDEX CONCURRENTLY IF EXISTS "customers_trade_customer_id_7cb8402b"',
                                  reverse_sql='CREATE INDEX CONCURRENTLY IF NOT EXISTS "customers_trade_customer_id_7cb8402b" '
                                              'ON "customers_trade" ("customer_id")'),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name='trade',
                    name='customer',
                    field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name='trades', to='customers.customer'),
                ),
            ],
        ),
    ]
