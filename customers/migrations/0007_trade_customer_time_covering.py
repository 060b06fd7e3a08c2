"""trade_customer_time (customer, traded_at) becomes trade_customer_time_cover, the same keys INCLUDE (product, amount):
the per-customer probes of segment rules ("no fund trade in a year" is a NOT EXISTS per candidate customer) then
read only the index instead of one heap page per trade. Same number of indexes on trades, so ingest pays no extra
index; the new one is built CONCURRENTLY before the old one is dropped (non-atomic migration)."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('customers', '0006_trade_product_window_index'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='trade',
            index=models.Index(fields=['customer', 'traded_at'], include=['product', 'amount'],
                               name='trade_customer_time_cover'),
        ),
        RemoveIndexConcurrently(
            model_name='trade',
            name='trade_customer_time',
        ),
    ]
