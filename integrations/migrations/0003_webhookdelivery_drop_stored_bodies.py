"""Webhook deliveries used to keep the first 300 characters of a failed answer in last_error
("HTTP 500: <body>"), shown to admins: a server-side request to an internal address could be read
back that way. Keep the status only ("HTTP 500"); new attempts never store a body."""

from django.db import migrations

SCRUB = """
UPDATE integrations_webhookdelivery
SET last_error = 'HTTP ' || last_status_code
WHERE last_status_code IS NOT NULL AND last_error LIKE 'HTTP %:%'
"""


class Migration(migrations.Migration):

    dependencies = [
        ("integrations", "0002_webhookdelivery_last_response_bytes"),
    ]

    operations = [
        migrations.RunSQL(SCRUB, reverse_sql=migrations.RunSQL.noop, elidable=True),
    ]
