"""``make run``: one long-lived process that owns the embedded servers and runs the product.

It starts PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset (and hands their URLs to
its children), migrates, loads the demo data once (unless SCRM_DEMO=0), then runs web + one Celery
worker + Celery beat under its supervisor (scrm/supervision.py: a child or embedded server that dies
is started again, with a log line; /healthz shows the restarts), plus the local CRM sandbox (integrations/crm/sandbox.py) that the
pull sync reads when CRM_BASE_URL is unset, and the local WeCom sandbox (integrations/wecom/sandbox.py)
when WECOM_CORP_ID is unset: it gets the demo corp id, secret, callback token and EncodingAESKey (set
for every child), a seed written from the demo database (advisors and their customers' WeCom ids),
and pushes its callbacks to this product's /integrations/wecom/callback/. A first WeCom sync is queued
for the worker a few seconds after start (`manage.py wecom_sync --enqueue`); beat then syncs every 30
minutes. The sandboxes' 127.0.0.1:port addresses are put in OUTBOUND_ALLOWLIST for every child (the
outbound URL guard refuses local addresses otherwise). Ctrl-C stops the children, then the servers it started.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

from scrm import embedded
from scrm.supervision import Server, Supervisor

BASE_DIR = Path(__file__).resolve().parent.parent


def main() -> int:
    os.umask(0o077)  # the data dir holds personal data (Redis' append-only file, uploads, exports): this user only
    os.environ["SCRM_EMBEDDED_START"] = "1"  # this process owns the embedded servers; its children only join
    env = os.environ.copy()
    env.pop("SCRM_EMBEDDED_START")
    env.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    env["PYTHONUNBUFFERED"] = "1"
    supervisor = Supervisor()
    if not env.get("DATABASE_URL"):
        env["DATABASE_URL"] = embedded.postgres_url()
        supervisor.watch(Server("postgres", alive=embedded.postgres_alive, restart=embedded.postgres_restart))
    if not env.get("REDIS_URL"):
        env["REDIS_URL"] = embedded.redis_url()
        supervisor.watch(Server("redis", alive=embedded.redis_alive, restart=embedded.redis_restart))
    host, port = env.get("HOST", "127.0.0.1"), env.get("PORT", "8000")
    python = sys.executable
    crm_port = None
    if not env.get("CRM_BASE_URL"):  # no real CRM given: sync from the sandbox on a free port
        crm_port = _free_port()
        env["CRM_BASE_URL"] = f"http://127.0.0.1:{crm_port}"
        env.setdefault("CRM_API_TOKEN", "sandbox-token")
    messaging_port = None
    if not env.get("MESSAGING_BASE_URL"):  # no SMS/push gateway given: the provider sandbox
        messaging_port = _free_port()
        env["MESSAGING_BASE_URL"] = f"http://127.0.0.1:{messaging_port}"
        env.setdefault("MESSAGING_API_TOKEN", "sandbox-token")
    wecom_port = None
    if not env.get("WECOM_CORP_ID"):  # no real WeCom given: the sandbox on a free port, with the demo secrets
        from integrations.wecom import sandbox as wecom_sandbox

        wecom_port = _free_port()
        env["WECOM_API_BASE_URL"] = f"http://127.0.0.1:{wecom_port}"
        env["WECOM_CORP_ID"] = wecom_sandbox.DEMO_CORP_ID
        env["WECOM_SECRET"] = wecom_sandbox.DEMO_SECRET
        env["WECOM_CALLBACK_TOKEN"] = wecom_sandbox.DEMO_CALLBACK_TOKEN
        env["WECOM_CALLBACK_AES_KEY"] = wecom_sandbox.DEMO_CALLBACK_AES_KEY
    env["OUTBOUND_ALLOWLIST"] = sandbox_allowlist(current=env.get("OUTBOUND_ALLOWLIST", ""),
                                                  ports=[crm_port, messaging_port, wecom_port])
    try:
        subprocess.run([python, "manage.py", "migrate", "--no-input", "-v", "0"], env=env, cwd=BASE_DIR, check=True)
        if env.get("SCRM_DEMO", "1") != "0":
            subprocess.run([python, "manage.py", "demo_load"], env=env, cwd=BASE_DIR, check=True)
        cwd = str(BASE_DIR)
        sandbox_env = {**env, "SCRM_PROCESS": "sandbox"}
        if wecom_port:
            seed_file = embedded.data_dir() / "wecom-sandbox-seed.json"
            subprocess.run([python, "manage.py", "wecom_sandbox_seed", "--out", str(seed_file)], env=env, cwd=BASE_DIR,
                           check=True)
            callback_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - compared, not bound
            callback_url = f"http://{callback_host}:{port}/integrations/wecom/callback/"
            supervisor.add("wecom", [python, "-m", "integrations.wecom.sandbox", "--port", str(wecom_port),
                                     "--seed-file", str(seed_file), "--callback-url", callback_url], env=sandbox_env,
                           cwd=cwd)
            if env.get("SCRM_DEMO", "1") != "0":  # the worker picks this up once it (and the sandbox) are up
                subprocess.run([python, "manage.py", "demo_wecom", "--countdown", "15"], env=env, cwd=BASE_DIR,
                               check=False)
        if messaging_port:
            supervisor.add("sms", [python, "-m", "sop.provider_sandbox", "--port", str(messaging_port)], env=sandbox_env,
                           cwd=cwd)
        if crm_port:
            supervisor.add("crm", [python, "-m", "integrations.crm.sandbox", "--port", str(crm_port)], env=sandbox_env,
                           cwd=cwd)
        supervisor.add("web", web_command(python, host=host, port=port), env={**env, "SCRM_PROCESS": "web"}, cwd=cwd)
        supervisor.add("worker", [python, "-m", "celery", "-A", "scrm", "worker", "-Q", "celery,sop", "-l", "INFO",
                                  "-c", "2", "-n", "worker@%h"], env={**env, "SCRM_PROCESS": "worker"}, cwd=cwd)
        supervisor.add("webhooks", [python, "-m", "celery", "-A", "scrm", "worker", "-Q", "webhooks", "-l", "INFO",
                                    "-c", "4", "-n", "webhooks@%h"], env={**env, "SCRM_PROCESS": "worker"}, cwd=cwd)
        beat_schedule = embedded.data_dir() / "celerybeat-schedule"
        supervisor.add("beat", [python, "-m", "celery", "-A", "scrm", "beat", "-l", "INFO", "-s", str(beat_schedule)],
                       env={**env, "SCRM_PROCESS": "beat"}, cwd=cwd)
        print(f"\n  SCRM is starting on http://{host}:{port}/  (Ctrl-C stops everything)\n", flush=True)
        return supervisor.run()
    except KeyboardInterrupt:
        return 130
    finally:
        embedded.stop_redis()
        embedded.stop_postgres()


def web_command(python: str, *, host: str, port: str) -> list[str]:
    """The web process of ``make run``: browsers reach it directly, so X-Forwarded-For is never trusted (uvicorn
    trusts it from 127.0.0.1 by default, which would let anyone on this machine pick the address that login
    lockouts and the audit log record). Behind a reverse proxy, see docs/operations.md (FORWARDED_ALLOW_IPS)."""
    return [python, "-m", "uvicorn", "scrm.asgi:application", "--host", host, "--port", port, "--no-access-log",
            "--timeout-graceful-shutdown", "3", "--no-proxy-headers"]


def sandbox_allowlist(*, current: str, ports: list[int | None]) -> str:
    """OUTBOUND_ALLOWLIST for the children: the sandboxes started here (``127.0.0.1:<port>``) and nothing
    more get past the outbound URL guard (core/outbound.py); entries the developer set themselves are kept."""
    return ",".join(filter(None, [current.strip(), *(f"127.0.0.1:{port}" for port in ports if port)]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
