"""``make run``'s supervisor: runs the product's processes and the embedded servers, and brings back whatever dies.

Each child (web, worker, beat, the sandboxes) runs with its output prefixed by its name. A child that exits is
started again after a back-off (1 s, doubling to 30 s; back to 1 s once it has stayed up a minute) with a log
line; the embedded Redis and PostgreSQL are checked every two seconds and started again if their process is gone.
The state (pids, restarts, last exit) is written to ``$SCRM_DATA_DIR/run/supervision.json``, which ``/healthz``
shows. Ctrl-C (or SIGTERM) stops the children, then the launcher stops the servers it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BACKOFF_START, BACKOFF_MAX, STABLE_AFTER = 1.0, 30.0, 60.0
SERVER_CHECK_EVERY = 2.0
STOP_GRACE = 10.0


def status_path() -> Path:
    from scrm.embedded import data_dir

    return data_dir() / "run" / "supervision.json"


def supervision_report() -> dict | None:
    """What the launcher last wrote, when a launcher is running (None otherwise: no ``make run`` here)."""
    path = status_path()
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["launcher_pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {"processes": state.get("processes", {}), "servers": state.get("servers", {})}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Child:
    name: str
    command: list[str]
    env: dict
    cwd: str
    process: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    backoff: float = BACKOFF_START
    last_exit: int | None = None
    last_restart_at: str | None = None


@dataclass
class Server:
    """An embedded server: ``alive()`` says whether its process is there, ``restart()`` starts it again."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    restarts: int = 0
    last_restart_at: str | None = None
    checked_at: float = field(default=0.0)


class Supervisor:
    def __init__(self, *, out=None):
        self.children: dict[str, Child] = {}
        self.servers: list[Server] = []
        self.out = out or sys.stdout
        self.stopping = threading.Event()
        self._print_lock = threading.Lock()

    def add(self, name: str, command: list[str], *, env: dict, cwd: str) -> None:
        self.children[name] = Child(name=name, command=command, env=env, cwd=cwd)

    def watch(self, server: Server) -> None:
        self.servers.append(server)

    # --- output ---------------------------------------------------------------------------------------------

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"{time.strftime('%H:%M:%S')} {name:<10}| {line.rstrip()}\n")
            self.out.flush()

    def _pump(self, child: Child, process: subprocess.Popen) -> None:
        for raw in iter(process.stdout.readline, b""):
            self.say(child.name, raw.decode("utf-8", "replace"))

    # --- running --------------------------------------------------------------------------------------------

    def _start(self, child: Child) -> None:
        child.process = subprocess.Popen(child.command, env=child.env, cwd=child.cwd, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        child.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(child, child.process), daemon=True).start()
        self.say("supervisor", f"{child.name} started (pid {child.process.pid})")

    def _check_child(self, child: Child, now: float) -> bool:
        changed = False
        if child.process is not None and child.process.poll() is not None:
            child.last_exit = child.process.returncode
            up = now - child.started_at
            if up >= STABLE_AFTER or child.restarts == 0:
                child.backoff = BACKOFF_START
            else:
                child.backoff = min(child.backoff * 2, BACKOFF_MAX)
            child.next_start = now + child.backoff
            self.say("supervisor", f"{child.name} exited with code {child.last_exit} after {up:.0f} s; "
                                   f"restarting in {child.backoff:.0f} s")
            child.process = None
            changed = True
        if child.process is None and now >= child.next_start and not self.stopping.is_set():
            if child.last_exit is not None:
                child.restarts += 1
                child.last_restart_at = _now()
            self._start(child)
            changed = True
        return changed

    def _check_server(self, server: Server, now: float) -> bool:
        if now - server.checked_at < SERVER_CHECK_EVERY:
            return False
        server.checked_at = now
        if server.alive():
            return False
        self.say("supervisor", f"{server.name} is down; starting it again")
        try:
            server.restart()
        except Exception as exc:  # noqa: BLE001 - keep supervising; try again at the next check
            self.say("supervisor", f"{server.name} did not start: {type(exc).__name__}: {exc}")
            return False
        server.restarts += 1
        server.last_restart_at = _now()
        self.say("supervisor", f"{server.name} is back (restart #{server.restarts})")
        return True

    def write_status(self) -> None:
        state = {
            "launcher_pid": os.getpid(), "updated_at": _now(),
            "processes": {c.name: {"pid": c.process.pid if c.process else None, "running": c.process is not None,
                                   "restarts": c.restarts, "last_exit": c.last_exit,
                                   "last_restart_at": c.last_restart_at} for c in self.children.values()},
            "servers": {s.name: {"restarts": s.restarts, "last_restart_at": s.last_restart_at} for s in self.servers},
        }
        path = status_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1))
        tmp.replace(path)

    def run(self) -> int:
        """Supervise until SIGINT, SIGTERM or SIGHUP (the terminal closed); stops the children in order before it
        returns, so none is left running unsupervised. Returns the exit code for the launcher."""
        previous = {sig: signal.signal(sig, lambda *_a: self.stopping.set())
                    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            for child in self.children.values():
                self._start(child)
            self.write_status()
            while not self.stopping.is_set():
                now = time.monotonic()
                changed = False
                for server in self.servers:  # servers first: a child restarted against a dead server dies again
                    changed |= self._check_server(server, now)
                for child in self.children.values():
                    changed |= self._check_child(child, now)
                if changed:
                    self.write_status()
                self.stopping.wait(0.5)
            return 0
        finally:
            self._stop_children()
            status_path().unlink(missing_ok=True)
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop_children(self) -> None:
        running = [c for c in self.children.values() if c.process is not None and c.process.poll() is None]
        for child in running:
            self.say("supervisor", f"stopping {child.name}")
            try:
                os.killpg(child.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        for child in running:
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.process.pid, signal.SIGKILL)
