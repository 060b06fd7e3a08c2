"""Bench: many users at once against one web process, as in production (uvicorn, SCRM_PROCESS=web, the psycopg 3
connection pool), over real HTTP.

    .venv/bin/python bench/load.py [--users 50] [--seconds 60] [--customers 20000] [--pool 10]

Half the users are an integrator's scripts reading ``GET /api/v1/customers/`` page by page; the other half are staff
in the browser (an advisor's workbench and client list, a manager's dashboard), each logged in through the real
login form. The baseline is ONE such user of each kind for a third of the time, in the same run. Prints, for each
kind: requests, errors (anything but 2xx/3xx, and connection failures), p50/p95 in ms, the p95 ratio against the
baseline; and the peak number of PostgreSQL connections the web process held (sampled every 50 ms from
pg_stat_activity, application_name ``scrm-web``) against the pool's budget. Data: the bench's own embedded
PostgreSQL under ``.data/bench-load`` seeded with ``seed_demo``.
"""

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _web(port: int, pool: int) -> subprocess.Popen:
    from django.conf import settings
    from django.db import connection

    settings_dict = connection.settings_dict
    host = settings_dict.get("HOST") or ""
    url = (f"postgres://{settings_dict['USER']}@/{settings_dict['NAME']}?host={host}" if host.startswith("/")
           else f"postgres://{settings_dict['USER']}@{host}:{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}")
    env = {**os.environ, "DATABASE_URL": os.environ.get("DATABASE_URL") or url, "REDIS_URL": settings.REDIS_URL,
           "SCRM_PROCESS": "web", "DATABASE_POOL_MAX": str(pool), "SCRM_EMBEDDED_START": ""}
    return subprocess.Popen([sys.executable, "-m", "uvicorn", "scrm.asgi:application", "--port", str(port),
                             "--no-access-log", "--log-level", "warning"], cwd=ROOT, env=env)


def _login(session, base: str, username: str) -> None:
    from core.demo import DEMO_PASSWORD

    page = session.get(f"{base}/accounts/login/", timeout=30).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = session.post(f"{base}/accounts/login/", data={"username": username, "password": DEMO_PASSWORD,
                                                             "csrfmiddlewaretoken": token},
                            headers={"Referer": f"{base}/accounts/login/"}, timeout=30, allow_redirects=False)
    if response.status_code != 302:
        sys.exit(f"could not log in as {username}: {response.status_code}")


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = {"api": [], "pages": []}
        self.errors: dict[str, list[str]] = {"api": [], "pages": []}

    def record(self, kind: str, started: float, ok: bool, what: str) -> None:
        with self.lock:
            self.times[kind].append((time.monotonic() - started) * 1000)
            if not ok:
                self.errors[kind].append(what)


def _api_user(base: str, key: str, until: float, rec: Recorder) -> None:
    import requests

    with requests.Session() as session:
        url = f"{base}/api/v1/customers/?page_size=100"
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                response = session.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
                ok = response.status_code == 200
                rec.record("api", started, ok, f"HTTP {response.status_code}")
                url = (response.json().get("next") if ok else None) or f"{base}/api/v1/customers/?page_size=100"
            except requests.RequestException as exc:
                rec.record("api", started, False, type(exc).__name__)


def _page_user(base: str, username: str, paths: list[str], until: float, rec: Recorder) -> None:
    import requests

    with requests.Session() as session:
        _login(session, base, username)
        n = 0
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                response = session.get(base + paths[n % len(paths)], timeout=60, allow_redirects=False)
                rec.record("pages", started, response.status_code < 400, f"HTTP {response.status_code}")
            except requests.RequestException as exc:
                rec.record("pages", started, False, type(exc).__name__)
            n += 1


PAGES = {"advisor_bj": ["/", "/customers/", "/customers/tasks/"], "manager_bj": ["/dashboards/", "/customers/"],
         "hq": ["/dashboards/", "/customers/?tier=important_value"]}


def _run(base: str, key: str, users: int, seconds: float, peak_box: list) -> Recorder:
    from django.db import connection

    rec, stop = Recorder(), threading.Event()

    def watch():
        try:
            while not stop.is_set():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'scrm-web'")
                    peak_box[0] = max(peak_box[0], cursor.fetchone()[0])
                time.sleep(0.05)
        finally:
            connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    until = time.monotonic() + seconds
    threads = []
    logins = list(PAGES)
    for i in range(users):
        if i % 2 == 0:
            threads.append(threading.Thread(target=_api_user, args=(base, key, until, rec)))
        else:
            username = logins[(i // 2) % len(logins)]
            threads.append(threading.Thread(target=_page_user, args=(base, username, PAGES[username], until, rec)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    watcher.join()
    return rec


def _p(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--pool", type=int, default=10)
    args = parser.parse_args()
    _common.django_setup("bench-load")
    _common.dataset_ensure(customers=args.customers, seed=42)
    from core.demo import demo_staff_load
    from integrations.api_clients import api_client_create
    from integrations.models import ApiClient

    demo_staff_load()
    ApiClient.objects.filter(name__startswith="bench-load").delete()
    key = api_client_create(actor=None, name=f"bench-load-{int(time.time())}", scopes=["customers:read"],
                            rate_limit_per_minute=1_000_000)[1]
    port = _free_port()
    web = _web(port, args.pool)
    base = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{base}/accounts/login/", timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or web.poll() is not None:
                    sys.exit("the web process did not start")
                time.sleep(0.3)
        print(f"baseline: 2 users for {args.seconds / 3:.0f} s …", flush=True)
        base_peak = [0]
        baseline = _run(base, key, 2, args.seconds / 3, base_peak)
        print(f"load: {args.users} users for {args.seconds:.0f} s …", flush=True)
        peak = [0]
        load = _run(base, key, args.users, args.seconds, peak)
    finally:
        web.terminate()
        web.wait(20)
    print(f"\n{'kind':<6} {'users':>5} {'requests':>9} {'errors':>7} {'p50 ms':>8} {'p95 ms':>8} {'p95 vs 1 user':>14}")
    for kind in ("api", "pages"):
        b95 = _p(baseline.times[kind], 95)
        for label, rec in (("1", baseline), (str(args.users // 2), load)):
            p95 = _p(rec.times[kind], 95)
            ratio = "" if rec is baseline else f"{p95 / b95:.1f}×"
            print(f"{kind:<6} {label:>5} {len(rec.times[kind]):>9} {len(rec.errors[kind]):>7} "
                  f"{_p(rec.times[kind], 50):>8.0f} {p95:>8.0f} {ratio:>14}")
    errors = load.errors["api"] + load.errors["pages"]
    print(f"\npeak PostgreSQL connections of the web process: {peak[0]} (pool budget {args.pool}); "
          f"errors under load: {len(errors)}{' — ' + ', '.join(sorted(set(errors))[:5]) if errors else ''}")


if __name__ == "__main__":
    main()
