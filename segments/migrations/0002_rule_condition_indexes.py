"""Covering indexes for the tier and tag conditions of segment rules, on tagging's tables (the compiler in
segments/rules.py is what reads them this way, so they live with it):

- tagging_customertier (code, customer_id): "tier in (…)" is an index-only range per code;
- tagging_customertag (tag_id, created_at) INCLUDE (customer_id, expires_at): "has tag X set within N days" is an
  index-only range, expiry checked from the index, instead of a heap fetch per tagged customer.

Plain SQL (CREATE INDEX CONCURRENTLY IF NOT EXISTS), so tagging's model state is untouched."""

from django.db import migrations

INDEXES = [
    ("segrule_tier_code_customer", "tagging_customertier", "(code, customer_id)"),
    ("segrule_tag_time_customer", "tagging_customertag", "(tag_id, created_at) INCLUDE (customer_id, expires_at)"),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('segments', '0001_segments'),
        ('tagging', '0003_default_conversation_rules'),
    ]

    operations = [
        migrations.RunSQL(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{name}" ON "{table}" {columns}',
                          reverse_sql=f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        for name, table, columns in INDEXES
    ]
