"""GIN (jsonb_ops) on Customer.custom_fields: custom field conditions of the list filter and segment rules compile to
containment (@>) and key existence (?), which this index answers at a million customers. Built CONCURRENTLY."""

import django.contrib.postgres.indexes
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('customers', '0013_custom_fields'),
    ]

    operations = [
        AddIndexConcurrently(
            model_name='customer',
            index=django.contrib.postgres.indexes.GinIndex(fields=['custom_fields'], name='cust_custom_fields'),
        ),
    ]
