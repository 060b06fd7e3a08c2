from django.core.management.base import BaseCommand

from core.demo import DEMO_PASSWORD, demo_staff_load


class Command(BaseCommand):
    help = "Load the demo data once (idempotent) and print the demo logins."

    def handle(self, *args, **options):
        logins = demo_staff_load()
        self.stdout.write(f"\nDemo logins (password for all: {DEMO_PASSWORD})")
        for username, role in logins:
            self.stdout.write(f"  {username:<14} {role}")
