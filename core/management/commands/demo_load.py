import os

from django.core.management.base import BaseCommand

from core.demo import DEMO_PASSWORD, demo_staff_load


class Command(BaseCommand):
    help = ("Load the demo data once (idempotent): staff, SCRM_DEMO_CUSTOMERS customers (default 3000) with "
            "trades and events, tiers, rule tags, and tasks for the demo advisors. Prints the demo logins.")

    def handle(self, *args, **options):
        from customers.demo_data import seed_demo
        from customers.demo_workbench import demo_workbench_seed
        from customers.models import Customer
        from tagging.defaults import DEMO_RULES
        from tagging.models import Tag
        from tagging.rule_tags import tag_rule_save, tag_rules_apply_all
        from tagging.tiers import tier_run_compute

        logins = demo_staff_load()
        if not Customer.objects.exists():
            seed_demo(customers=int(os.environ.get("SCRM_DEMO_CUSTOMERS", "3000")), seed=42, stdout=self.stdout)
            tier_run_compute(requested_by="demo_load")
            for code, rule in DEMO_RULES.items():
                tag_rule_save(tag=Tag.objects.get(code=code), rule=rule, enabled=True, remove_when_unmatched=True,
                              actor="demo_load")
            tag_rules_apply_all()
        demo_workbench_seed()
        self.stdout.write(f"\nDemo logins (password for all: {DEMO_PASSWORD})")
        for username, role in logins:
            self.stdout.write(f"  {username:<14} {role}")
