"""What the local sandboxes (integrations/crm/sandbox.py, integrations/wecom/sandbox.py) share: a request
handler that answers JSON, and serving it in a background thread (tests) or in the foreground
(``python -m …``). Standard library only, like the sandboxes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    def _answer(self, status: int, body: dict) -> None:
        raw = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):  # quiet: the tests and `make run` have their own output
        pass


def serve_in_thread(handler: type[BaseHTTPRequestHandler], *, host: str, port: int, name: str) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; ``server.server_address`` has the port (0 picks a free one)."""
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name=name).start()
    return server


def serve_until_interrupted(server: ThreadingHTTPServer) -> int:
    """Serve in the foreground until Ctrl-C; the exit status of ``main``."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
