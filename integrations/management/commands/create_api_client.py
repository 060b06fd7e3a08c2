"""python manage.py create_api_client NAME [--branch CODE] [--scopes customers:read ...] [--rate N]

Prints the key once; the last line of the output is the key alone."""

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from integrations.api_clients import api_client_create
from integrations.models import FIRM_WIDE_SCOPES, ApiScope


class Command(BaseCommand):
    help = "Create an API client and print its key (shown only this once)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--branch", help="branch code; omit for all branches")
        parser.add_argument("--scopes", nargs="+",
                            help=f"any of: {' '.join(ApiScope.values)} (default: all but webhooks:manage, and for a "
                                 f"--branch key also none of {' '.join(sorted(FIRM_WIDE_SCOPES))})")
        parser.add_argument("--rate", type=int, default=600, help="requests per minute")

    def handle(self, *args, name, branch, scopes, rate, **options):
        if scopes is None:
            scopes = [s.value for s in ApiScope if s != ApiScope.WEBHOOKS_MANAGE and not (branch and s in FIRM_WIDE_SCOPES)]
        try:
            client, key = api_client_create(actor=None, name=name, scopes=scopes, branch_code=branch,
                                            rate_limit_per_minute=rate)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Created API client {client.name!r} (branch: {branch or 'all'}; scopes: {' '.join(client.scopes)}).")
        self.stdout.write("The key is shown only now; store it safely:")
        self.stdout.write(key)
