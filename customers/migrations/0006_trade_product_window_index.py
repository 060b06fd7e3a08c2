"""Covering index for the trade windows of segment rules and rule tags (segments.rules._compile_trades):
(product, traded_at, customer) INCLUDE (amount), so "≥ n trades of a product type within N days" and amount sums
read only the window's entries of that type's products, index-only, instead of a parallel scan of all trades.

Built CONCURRENTLY (non-atomic migration): on a table of tens of millions of trades a plain CREATE INDEX would
block trade ingestion for minutes."""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('customers', '0005_event_window_index'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='trade',
            index=models.Index(fields=['product', 'traded_at', 'customer'], include=['amount'],
                               name='trade_product_time_cust'),
        ),
    ]
