#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    from django.core.management import execute_from_command_line

    from scrm.embedded import ServersNotRunning

    try:
        execute_from_command_line(sys.argv)
    except ServersNotRunning as exc:  # `make run` is not running: say so instead of starting empty servers
        sys.stderr.write(f"{exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
