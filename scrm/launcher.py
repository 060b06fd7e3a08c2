"""``make run``: one long-lived process that owns the embedded servers and runs the product.

It starts PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset (and hands their URLs to
its children), migrates, loads the demo data once, then runs web + one Celery worker +
Celery beat under honcho, plus the local CRM sandbox (integrations/crm/sandbox.py) that the
pull sync reads when CRM_BASE_URL is unset. Ctrl-C stops the children, then the servers it started.
"""

import os
import socket
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
    crm_port = None
    if not env.get("CRM_BASE_URL"):  # no real CRM given: sync from the sandbox on a free port
        crm_port = _free_port()
        env["CRM_BASE_URL"] = f"http://127.0.0.1:{crm_port}"
        env.setdefault("CRM_API_TOKEN", "sandbox-token")
    try:
        subprocess.run([python, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, cwd=BASE_DIR, check=True)
        subprocess.run([python, "manage.py", "demo_load"], env=env, cwd=BASE_DIR, check=True)
        manager = Manager()
        if crm_port:
            manager.add_process("crm", f"{python} -m integrations.crm.sandbox --port {crm_port}",
                                env=env, cwd=str(BASE_DIR))
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
