from django.core.management.base import BaseCommand, CommandError

from customers.demo_data import DemoDataError, seed_demo


class Command(BaseCommand):
    help = ("Fill an empty database with N realistic demo customers plus their trades (~20 each) and "
            "behaviour events (~50 each). Deterministic for (N, seed) on a given day.")
    requires_system_checks = []  # it needs only the models; a half-finished view elsewhere must not block a seed

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, required=True, help="how many customers to create")
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")

    def handle(self, *args, customers: int, seed: int, **options):
        try:
            counts = seed_demo(customers=customers, seed=seed, stdout=self.stdout)
        except DemoDataError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(
            f"Seeded {counts['customers']:,} customers, {counts['trades']:,} trades, {counts['events']:,} events "
            f"({counts['branches']} branches, {counts['advisors']} advisors, {counts['products']} products) "
            f"in {counts['seconds'] / 60:.1f} min"
        ))
