from django.core.management.base import BaseCommand

from core.events import registry


class Command(BaseCommand):
    help = "Print every domain event (core/events.py), its fields and the functions that subscribe to it."

    def handle(self, *args, **options):
        for row in registry():
            self.stdout.write(self.style.MIGRATE_HEADING(f"{row['event']}({', '.join(row['fields'])})"))
            if row["doc"]:
                self.stdout.write(f"  {row['doc']}")
            for name in row["subscribers"] or ["(no subscriber)"]:
                self.stdout.write(f"  → {name}")
