from django.core.management.base import BaseCommand
from django.db import transaction

from core.crypto import rotate
from core.services import audit_record
from customers.models import Customer


class Command(BaseCommand):
    help = ("Re-encrypt customers' mobile and ID numbers with the first key of SCRM_FIELD_KEYS "
            "(put the new key first, keep the old ones after it until this has run).")

    def add_arguments(self, parser):
        parser.add_argument("--batch", type=int, default=2000)

    def handle(self, *args, batch, **options):
        last_id, done = 0, 0
        while True:
            with transaction.atomic():
                rows = list(Customer.objects.select_for_update().filter(pk__gt=last_id).order_by("pk")
                            .only("pk", "mobile_encrypted", "id_number_encrypted")[:batch])
                if not rows:
                    break
                for row in rows:
                    row.mobile_encrypted = rotate(row.mobile_encrypted)
                    row.id_number_encrypted = rotate(row.id_number_encrypted)
                Customer.objects.bulk_update(rows, ["mobile_encrypted", "id_number_encrypted"])
            last_id, done = rows[-1].pk, done + len(rows)
            self.stdout.write(f"re-encrypted {done} customers")
        audit_record(actor="system", actor_label="manage.py rotate_field_keys", action="crypto.rotate",
                     details={"customers": done})
        self.stdout.write(self.style.SUCCESS(f"done: {done} customers re-encrypted with the primary key"))
