"""Stored masked ID numbers keep only the last four characters (core.crypto.mask_id_number): the old mask kept the
first three (province and city) as well, which with the birth date left a few dozen candidates. Rewritten in SQL
from the stored mask itself (no decryption): ``110***********1234`` → ``**************1234``. Rejected ID numbers in
import error rows are rewritten the same way (an old ID mask has five or more stars; a masked mobile has four).
Not reversible: the dropped digits are not kept anywhere in clear."""

from django.db import migrations

REMASK_CUSTOMERS = """
UPDATE customers_customer
   SET id_number_masked = repeat('*', length(id_number_masked) - 4) || right(id_number_masked, 4)
 WHERE length(id_number_masked) > 7 AND left(id_number_masked, 1) <> '*'
"""
REMASK_IMPORT_ERRORS = r"""
UPDATE customers_importjoberror
   SET value = repeat('*', length(value) - 4) || right(value, 4)
 WHERE value ~ '^[^*]{3}\*{5,}[^*]{4}$'
"""


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0009_customer_birth_date_index'),
    ]

    operations = [
        migrations.RunSQL(REMASK_CUSTOMERS, migrations.RunSQL.noop),
        migrations.RunSQL(REMASK_IMPORT_ERRORS, migrations.RunSQL.noop),
    ]
