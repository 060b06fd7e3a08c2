"""The one ingest pipeline: rows from the REST API, the CRM pull sync and the file import alike go
rows → validate (one cleaner per kind of value, customers.ingest.rows) → normalise → scope guard (in the writing
SQL) → set-based upsert → domain events (core.events). Nothing else writes customers, trades, behaviour events or
products from outside data.

* ``customer_bulk_upsert`` (customers.ingest.customers): customers by external_id, personal data encrypted.
* ``trades_upsert``, ``events_upsert``, ``products_upsert`` (customers.ingest.records).
"""

from customers.ingest.customers import FIELDS, REQUIRED_FIELDS, customer_bulk_upsert, customer_rows_validate
from customers.ingest.records import events_upsert, products_upsert, trades_upsert

__all__ = ["FIELDS", "REQUIRED_FIELDS", "customer_bulk_upsert", "customer_rows_validate", "events_upsert",
           "products_upsert", "trades_upsert"]
