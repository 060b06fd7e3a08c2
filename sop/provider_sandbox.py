"""A local SMS and app-push provider: what the SOP engine talks to in development and tests.
Standard library only (plus integrations/sandbox_http.py, shared with the CRM and WeCom sandboxes).
``python -m sop.provider_sandbox --port 8766 [--token T]``.

Like real providers it takes a client-supplied idempotency key per message and accepts each key
once: a resent key answers ``duplicate`` with the first message id, so a dispatcher that crashed
after the send and retries never reaches the client twice.

``POST /v1/{sms|push}/send_batch`` (``Authorization: Bearer <token>``)
    ``{"messages": [{"idempotency_key": "...", "to": "<mobile or customer id>", "content": "..."}]}``
    → ``{"results": [{"idempotency_key", "message_id", "status": "accepted"|"duplicate"|"rejected", "error"}]}``
``GET /v1/{sms|push}/reports?after=<cursor>&limit=<n>`` (same token): delivery reports (状态报告) in the order the
    handsets answered, ``{"reports": [{"message_id", "idempotency_key", "status": "delivered"|"undelivered",
    "at"}], "next": <cursor>}``; every accepted message is reported once, delivered unless its recipient was
    made unreachable with ``POST /admin/unreachable`` ``{"to": [...]}``.
``POST /admin/fail`` ``{"count": N}``: the next N batches answer 503. ``GET /admin/state``: accepted
messages per channel, duplicate resends, and every key seen. ``POST /admin/reset``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from integrations.sandbox_http import JsonHandler, serve_in_thread, serve_until_interrupted

DEFAULT_TOKEN = "sandbox-token"
MOBILE = re.compile(r"^1[3-9]\d{9}$")


class ProviderSandbox:
    def __init__(self, token: str = DEFAULT_TOKEN):
        self.token = token
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.messages: dict[str, dict] = {}
            self.reports: dict[str, list[dict]] = {"sms": [], "push": []}
            self.unreachable: set[str] = set()
            self.duplicates = 0
            self.fail_next = 0

    def send(self, channel: str, messages: list) -> tuple[int, dict]:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                return 503, {"error": "provider temporarily unavailable"}
            results = []
            for m in messages:
                key, to, content = m.get("idempotency_key"), str(m.get("to", "")), m.get("content", "")
                if not key or not content or (channel == "sms" and not MOBILE.match(to)):
                    results.append({"idempotency_key": key, "status": "rejected", "error": "invalid message"})
                    continue
                if key in self.messages:
                    self.duplicates += 1
                    results.append({"idempotency_key": key, "message_id": self.messages[key]["message_id"],
                                    "status": "duplicate"})
                    continue
                message_id = f"{channel}-{len(self.messages) + 1:09d}"
                self.messages[key] = {"message_id": message_id, "channel": channel, "to": to, "content": content}
                self.reports[channel].append({
                    "message_id": message_id, "idempotency_key": key,
                    "status": "undelivered" if to in self.unreachable else "delivered",
                    "at": datetime.now(UTC).isoformat()})
                results.append({"idempotency_key": key, "message_id": message_id, "status": "accepted"})
            return 200, {"results": results}

    def delivery_reports(self, channel: str, after: int, limit: int) -> dict:
        with self.lock:
            page = self.reports[channel][after:after + limit]
            return {"reports": page, "next": after + len(page)}

    def state(self) -> dict:
        with self.lock:
            per_channel: dict[str, int] = {}
            for m in self.messages.values():
                per_channel[m["channel"]] = per_channel.get(m["channel"], 0) + 1
            return {"accepted": per_channel, "duplicates": self.duplicates, "keys": sorted(self.messages)}


def _handler(sandbox: ProviderSandbox):
    class Handler(JsonHandler):
        protocol_version = "HTTP/1.1"

        def _body(self):
            length = int(self.headers.get("Content-Length") or 0)
            try:
                return json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return None

        def do_GET(self):
            if self.path == "/admin/state":
                return self._answer(200, sandbox.state())
            url = urlsplit(self.path)
            match = re.fullmatch(r"/v1/(sms|push)/reports", url.path)
            if not match:
                return self._answer(404, {"error": "not found"})
            if self.headers.get("Authorization") != f"Bearer {sandbox.token}":
                return self._answer(401, {"error": "bad token"})
            query = parse_qs(url.query)
            try:
                after, limit = int(query.get("after", ["0"])[0]), int(query.get("limit", ["1000"])[0])
            except ValueError:
                return self._answer(400, {"error": "after and limit are integers"})
            if after < 0 or not 1 <= limit <= 1000:
                return self._answer(400, {"error": "after >= 0, limit 1-1000"})
            return self._answer(200, sandbox.delivery_reports(match.group(1), after, limit))

        def do_POST(self):
            body = self._body()
            if body is None:
                return self._answer(400, {"error": "body is not JSON"})
            if self.path == "/admin/reset":
                sandbox.reset()
                return self._answer(200, {"ok": True})
            if self.path == "/admin/unreachable":
                with sandbox.lock:
                    sandbox.unreachable |= {str(t) for t in body.get("to", [])}
                return self._answer(200, {"ok": True})
            if self.path == "/admin/fail":
                sandbox.fail_next = int(body.get("count", 1))
                return self._answer(200, {"ok": True})
            match = re.fullmatch(r"/v1/(sms|push)/send_batch", self.path)
            if not match:
                return self._answer(404, {"error": "not found"})
            if self.headers.get("Authorization") != f"Bearer {sandbox.token}":
                return self._answer(401, {"error": "bad token"})
            if not isinstance(body.get("messages"), list) or len(body["messages"]) > 1000:
                return self._answer(400, {"error": "messages: a list of at most 1000"})
            status, answer = sandbox.send(match.group(1), body["messages"])
            return self._answer(status, answer)

    return Handler


def sandbox_serve(*, port: int = 0, token: str = DEFAULT_TOKEN):
    """Start in a thread (tests): returns (sandbox, server); ``server.server_address[1]`` is the port."""
    sandbox = ProviderSandbox(token)
    return sandbox, serve_in_thread(_handler(sandbox), host="127.0.0.1", port=port, name="provider-sandbox")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--token", default=os.environ.get("MESSAGING_API_TOKEN", DEFAULT_TOKEN))
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), _handler(ProviderSandbox(args.token)))
    print(f"SMS/push provider sandbox on http://127.0.0.1:{args.port}", flush=True)
    return serve_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
