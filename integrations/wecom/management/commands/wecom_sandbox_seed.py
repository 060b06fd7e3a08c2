import json
import os

from django.core.management.base import BaseCommand

from integrations.wecom.sandbox_seed import DEFAULT_CUSTOMERS, sandbox_seed_from_db


class Command(BaseCommand):
    help = "Write the WeCom sandbox's seed (advisors and a sample of their customers) from the database as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True)
        parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)

    def handle(self, *args, out, customers, **options):
        seed = sandbox_seed_from_db(customers=customers)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds demo mobiles
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(seed, handle, ensure_ascii=False)
        self.stdout.write(f"WeCom sandbox seed: {len(seed['users'])} staff, {len(seed['customers'])} customers → {out}")
