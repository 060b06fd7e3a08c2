"""``make run``: one long-lived process that owns the embedded servers and runs the product.

It starts PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset (and hands their URLs to
its children), migrates, loads the demo data once, then runs web + one Celery worker +
Celery beat under honcho. Ctrl-C stops the children, then the servers it started.
"""

import os
import subprocess
import sys
from pathlib import Path

from honcho.manager import Manager

from scrm import embedded

BASE_DIR = Path(__file__).resolve().parent.parent


def main() -> int:
    env = os.environ.copy()
    env.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    env["PYTHONUNBUFFERED"] = "1"
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded.postgres_url()
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = embedded.redis_url()
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    python = sys.executable
    try:
        subprocess.run([python, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, cwd=BASE_DIR, check=True)
        subprocess.run([python, "manage.py", "demo_load"], env=env, cwd=BASE_DIR, check=True)
        manager = Manager()
        manager.add_process("web", f"{python} -m uvicorn scrm.asgi:application --host {host} --port {port} "
                                   "--no-access-log --timeout-graceful-shutdown 3", env=env, cwd=str(BASE_DIR))
        manager.add_process("worker", f"{python} -m celery -A scrm worker -l INFO -c 2 -n worker@%h",
                            env=env, cwd=str(BASE_DIR))
        beat_schedule = embedded.data_dir() / "celerybeat-schedule"
        manager.add_process("beat", f"{python} -m celery -A scrm beat -l INFO -s {beat_schedule}",
                            env=env, cwd=str(BASE_DIR))
        print(f"\n  SCRM is starting on http://{host}:{port}/  (Ctrl-C stops everything)\n", flush=True)
        manager.loop()
        return manager.returncode or 0
    except KeyboardInterrupt:
        return 130
    finally:
        embedded.stop_redis()
        embedded.stop_postgres()


if __name__ == "__main__":
    sys.exit(main())
