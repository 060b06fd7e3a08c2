"""A real HTTP receiver on 127.0.0.1 for webhook tests: records every request, answers from a script."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in order; 200 once exhausted
    default_status: int = 200
    location: str = ""  # sent as Location with 3xx answers
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, n: int, timeout: float = 30) -> bool:
        import time

        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            self.arrived.wait(0.1)
            self.arrived.clear()
        return len(self.requests) >= n


def receiver_start(*, port: int = 0) -> tuple[Receiver, ThreadingHTTPServer]:
    """Serve on 127.0.0.1:``port`` (0: a free one). Tests name it in OUTBOUND_ALLOWLIST to deliver to it."""
    state: dict = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            receiver = state["receiver"]
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = receiver.statuses.pop(0) if receiver.statuses else receiver.default_status
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            if 300 <= status < 400 and receiver.location:
                self.send_header("Location", receiver.location)
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"receiver says no")
            receiver.arrived.set()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    receiver = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    state["receiver"] = receiver
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server
