from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import ApplicationError
from core.models import User
from sop.calendar import calendar_notice_apply, calendar_notice_parse


class Command(BaseCommand):
    help = ("Import the exchange's holiday notice for one year into the trading calendar (the same service as the "
            "calendar page): one closure per line, e.g. '2027-02-05~2027-02-12 春节'. Prints the preview first.")

    def add_arguments(self, parser):
        parser.add_argument("file", help="a UTF-8 text file with the year's closures")
        parser.add_argument("--year", type=int, required=True, help="the year the notice is for")
        parser.add_argument("--dry-run", action="store_true", help="print the preview, write nothing")
        parser.add_argument("--actor", help="username recorded in the audit log (default: system)")

    def handle(self, *args, file, year, dry_run, actor, **options):
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"no such file: {path}")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise CommandError(f"{path} is not UTF-8 text") from None
        user = None
        if actor:
            user = User.objects.filter(username=actor).first()
            if user is None:
                raise CommandError(f"no such user: {actor}")
        notice = calendar_notice_parse(text, year=year)
        if notice.errors:
            raise CommandError("the notice has errors, nothing imported:\n  " + "\n  ".join(notice.errors))
        self.stdout.write(f"{year}: {notice.open_days} trading days, {len(notice.holidays)} weekday closures, "
                          f"{len(notice.changes)} days change, {notice.unknown_before} were unknown")
        for day, _weekday, name in notice.holidays:
            self.stdout.write(f"  closed {day.isoformat()} {name}")
        if dry_run:
            self.stdout.write("dry run: nothing written")
            return
        try:
            calendar_notice_apply(actor=user or "system", year=year, text=text)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(f"imported {year}"))
