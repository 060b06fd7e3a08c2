"""A local stand-in for the broker's CRM: a small HTTP service the pull sync talks to in development
and tests. Standard library only; no Django. ``python -m integrations.crm.sandbox --port 8765``.

API (every request needs ``Authorization: Bearer <token>``, the token being ``--token`` or
``CRM_API_TOKEN``, default ``sandbox-token``; answers are JSON):

``GET /api/{customers|products|trades}?updated_since=ISO&cursor=X&limit=N``
    ``{"data": [...], "next_cursor": "..." | null}``. Records with ``updated_at >= updated_since``
    (inclusive), ordered by ``(updated_at, id)``; ``limit`` defaults to 100, at most 1000. The cursor
    is opaque (it encodes the last ``(updated_at, id)`` returned); pass it back with the same
    ``updated_since`` for the next page. Because the order is by last change, a record changed
    mid-pass moves behind the cursor and is seen later: pages never skip or repeat a record.
    Each record has ``id`` and ``updated_at`` (ISO 8601, UTC, microseconds) plus:

    * customers: the field names of customers/ingest/customers.py (``external_id`` = ``id``, ``name``, ``mobile``,
      ``gender``, ``birth_date``, ``branch`` (BJ01/SH01/SZ01/HZ01), ``advisor`` (employee code of the
      demo advisors), ``risk_level``, ``risk_assessed_at``, ``opened_at``, ``channel``, ``total_assets``,
      ``funnel_stage``, ``region``, ``occupation``, ``lifecycle_stage``)
    * products: ``code`` (= ``id``), ``name``, ``type``, ``risk_level`` (R1–R5)
    * trades: ``external_id`` (= ``id``), ``customer`` (customer external_id), ``product`` (code),
      ``traded_at`` (ISO), ``side`` (buy/sell), ``amount`` (string, 2 decimals)

Admin (same token), so tests and demos can change the CRM:

``POST /admin/records/{resource}`` ``{"records": [{...}, ...]}``
    Upsert by ``id`` (fields merge into an existing record); each written record gets a new
    ``updated_at`` later than every other one. Answers ``{"written": n}``.
``POST /admin/fail`` ``{"count": N, "after": K}``
    Let the next K ``/api`` requests through, then answer the N after them with 500.
``GET /admin/state``
    Counts per resource, requests served, and the log of ``/api`` requests (path + query).
``POST /admin/reset``
    Back to the seeded data (same ``--seed``, ``--customers``).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import threading
from datetime import UTC, date, datetime, timedelta
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from integrations.sandbox_http import JsonHandler, serve_in_thread, serve_until_interrupted

RESOURCES = ("customers", "products", "trades")
DEFAULT_TOKEN = "sandbox-token"
SEED_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
MAX_LIMIT = 1000

BRANCH_ADVISORS = {"BJ01": ["E1001", "E1002"], "SH01": ["E2001", "E2002"], "SZ01": ["E3001"], "HZ01": ["E4001"]}
BRANCH_REGIONS = {"BJ01": "北京", "SH01": "上海", "SZ01": "深圳", "HZ01": "浙江"}
PRODUCTS = [  # codes shared with the demo data (customers/demo_data.py), plus two CRM-only products
    ("SH600519", "贵州茅台", "stock", "R4"), ("SH601318", "中国平安", "stock", "R4"),
    ("SH600036", "招商银行", "stock", "R3"), ("SZ300750", "宁德时代", "stock", "R4"),
    ("SH688981", "中芯国际", "star", "R4"), ("OF000198", "天弘余额宝货币", "fund", "R1"),
    ("SH510300", "华泰柏瑞沪深300ETF", "fund", "R3"), ("OF110011", "易方达优质精选混合", "fund", "R3"),
    ("SH019547", "24国债05", "bond", "R1"), ("SY0091", "收益凭证·稳盈91天", "wealth", "R2"),
    ("CRM0001", "CRM 专享·稳健理财 180 天", "wealth", "R2"), ("CRM0002", "CRM 专享·指数增强 1 号", "wealth", "R4"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "勇", "艳", "杰", "涛", "明", "超", "霞", "平", "刚", "桂英", "建华"]
OCCUPATIONS = ["企业职员", "个体经营", "教师", "医生", "工程师", "退休", "公务员", "自由职业"]
CHANNELS = ["app", "wecom", "branch", "partner"]
FUNNEL = ["id_uploaded", "password_set", "video_verified", "opened", "funded"]
LIFECYCLE = ["acquire", "activate", "retain", "revenue", "refer"]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "+"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _encode_cursor(record: dict) -> str:
    return base64.urlsafe_b64encode(f"{record['updated_at']}|{record['id']}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    updated_at, _sep, record_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
    return _parse_iso(updated_at), record_id


def seed_data(*, seed: int = 2026, customers: int = 60, trades_per_customer: int = 3) -> dict[str, dict[str, dict]]:
    """The same records for the same arguments; ``updated_at`` values are distinct and in seed order."""
    rng = random.Random(seed)
    clock = [SEED_EPOCH]

    def tick() -> str:
        clock[0] += timedelta(seconds=1)
        return _iso(clock[0])

    data: dict[str, dict[str, dict]] = {r: {} for r in RESOURCES}
    for code, name, kind, risk in PRODUCTS:
        data["products"][code] = {"id": code, "code": code, "name": name, "type": kind, "risk_level": risk,
                                  "updated_at": tick()}
    branches = list(BRANCH_ADVISORS)
    for n in range(1, customers + 1):
        external_id = f"CRM{n:06d}"
        branch = branches[(n - 1) % len(branches)]
        opened = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 700))
        data["customers"][external_id] = {
            "id": external_id, "external_id": external_id,
            "name": rng.choice(SURNAMES) + rng.choice(GIVEN),
            "mobile": f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}",
            "gender": rng.choice(["M", "F"]),
            "birth_date": (date(1960, 1, 1) + timedelta(days=rng.randrange(0, 14000))).isoformat(),
            "branch": branch, "advisor": rng.choice(BRANCH_ADVISORS[branch]),
            "risk_level": f"C{rng.randint(1, 5)}", "risk_assessed_at": opened.isoformat(),
            "opened_at": opened.isoformat(), "channel": rng.choice(CHANNELS),
            "total_assets": f"{rng.randrange(1_000_00, 5_000_000_00) / 100:.2f}",
            "funnel_stage": rng.choice(FUNNEL), "region": BRANCH_REGIONS[branch],
            "occupation": rng.choice(OCCUPATIONS), "lifecycle_stage": rng.choice(LIFECYCLE),
            "updated_at": tick(),
        }
    serial = 0
    for external_id in list(data["customers"]):
        for _ in range(rng.randint(0, trades_per_customer)):
            serial += 1
            trade_id = f"CRMT{serial:08d}"
            traded = SEED_EPOCH - timedelta(days=rng.randrange(1, 300), minutes=rng.randrange(0, 600))
            data["trades"][trade_id] = {
                "id": trade_id, "external_id": trade_id, "customer": external_id,
                "product": rng.choice(PRODUCTS)[0], "traded_at": _iso(traded), "side": rng.choice(["buy", "sell"]),
                "amount": f"{rng.randrange(1000_00, 500_000_00) / 100:.2f}", "updated_at": tick(),
            }
    return data


class CrmSandbox:
    """The records and the switches; thread-safe (the server is threaded)."""

    def __init__(self, *, token: str = DEFAULT_TOKEN, seed: int = 2026, customers: int = 60):
        self.token, self.seed, self.customers = token, seed, customers
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with getattr(self, "lock", threading.Lock()):
            self.data = seed_data(seed=self.seed, customers=self.customers)
            self.fail_after = 0
            self.fail_count = 0
            self.served = 0
            self.log: list[str] = []

    def _next_updated_at(self) -> str:
        latest = max((_parse_iso(r["updated_at"]) for rows in self.data.values() for r in rows.values()),
                     default=SEED_EPOCH)
        return _iso(max(datetime.now(UTC), latest + timedelta(microseconds=1)))

    def write(self, resource: str, records: list[dict]) -> int:
        with self.lock:
            for record in records:
                record_id = str(record["id"])
                row = {**self.data[resource].get(record_id, {}), **record, "id": record_id}
                key = {"customers": "external_id", "products": "code", "trades": "external_id"}[resource]
                row[key] = record_id
                row["updated_at"] = self._next_updated_at()
                self.data[resource][record_id] = row
            return len(records)

    def fail(self, *, count: int, after: int = 0) -> None:
        with self.lock:
            self.fail_after, self.fail_count = after, count

    def _should_fail(self) -> bool:
        if self.fail_count <= 0:
            return False
        if self.fail_after > 0:
            self.fail_after -= 1
            return False
        self.fail_count -= 1
        return True

    def page(self, resource: str, *, updated_since: str | None, cursor: str | None, limit: int) -> dict:
        with self.lock:
            rows = sorted(self.data[resource].values(), key=lambda r: (_parse_iso(r["updated_at"]), r["id"]))
        if updated_since:
            since = _parse_iso(updated_since)
            rows = [r for r in rows if _parse_iso(r["updated_at"]) >= since]
        if cursor:
            after = _decode_cursor(cursor)
            rows = [r for r in rows if (_parse_iso(r["updated_at"]), r["id"]) > after]
        page = rows[:limit]
        return {"data": page, "next_cursor": _encode_cursor(page[-1]) if len(rows) > limit else None}

    def state(self) -> dict:
        with self.lock:
            return {"counts": {r: len(rows) for r, rows in self.data.items()}, "served": self.served,
                    "log": list(self.log)}


def _handler(sandbox: CrmSandbox):
    class Handler(JsonHandler):
        server_version = "CrmSandbox/1"

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {sandbox.token}":
                return True
            self._answer(401, {"error": "unauthorised"})
            return False

        def _json(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self):  # noqa: N802 - http.server's naming
            if not self._authorised():
                return
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if parts == ["admin", "state"]:
                return self._answer(200, sandbox.state())
            if len(parts) != 2 or parts[0] != "api" or parts[1] not in RESOURCES:
                return self._answer(404, {"error": "not found"})
            with sandbox.lock:
                sandbox.log.append(self.path)
                failing = sandbox._should_fail()
            if failing:
                return self._answer(500, {"error": "sandbox failure (requested by /admin/fail)"})
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            try:
                limit = max(1, min(int(query.get("limit", 100)), MAX_LIMIT))
                body = sandbox.page(parts[1], updated_since=query.get("updated_since"), cursor=query.get("cursor"),
                                    limit=limit)
            except (ValueError, UnicodeDecodeError):
                return self._answer(400, {"error": "bad updated_since, cursor or limit"})
            with sandbox.lock:
                sandbox.served += 1
            self._answer(200, body)

        def do_POST(self):  # noqa: N802
            if not self._authorised():
                return
            parts = urlparse(self.path).path.strip("/").split("/")
            try:
                body = self._json()
            except ValueError:
                return self._answer(400, {"error": "invalid JSON"})
            if parts[:2] == ["admin", "records"] and len(parts) == 3 and parts[2] in RESOURCES:
                return self._answer(200, {"written": sandbox.write(parts[2], list(body.get("records") or []))})
            if parts == ["admin", "fail"]:
                sandbox.fail(count=int(body.get("count", 1)), after=int(body.get("after", 0)))
                return self._answer(200, {"ok": True})
            if parts == ["admin", "reset"]:
                sandbox.reset()
                return self._answer(200, {"ok": True})
            return self._answer(404, {"error": "not found"})

    return Handler


def sandbox_serve(*, host: str = "127.0.0.1", port: int = 0, **kwargs) -> tuple[CrmSandbox, ThreadingHTTPServer]:
    """Start the sandbox in a background thread (tests); ``server.server_address`` has the port."""
    sandbox = CrmSandbox(**kwargs)
    server = serve_in_thread(_handler(sandbox), host=host, port=port, name="crm-sandbox")
    return sandbox, server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local CRM sandbox for the SCRM pull sync")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=os.environ.get("CRM_API_TOKEN") or DEFAULT_TOKEN)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--customers", type=int, default=60)
    args = parser.parse_args(argv)
    sandbox = CrmSandbox(token=args.token, seed=args.seed, customers=args.customers)
    server = ThreadingHTTPServer((args.host, args.port), _handler(sandbox))
    counts = sandbox.state()["counts"]
    print(f"CRM sandbox on http://{args.host}:{server.server_address[1]}/ "
          f"({counts['customers']} customers, {counts['products']} products, {counts['trades']} trades)", flush=True)
    return serve_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
