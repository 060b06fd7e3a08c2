"""Checks the schemathesis run of /api/v1 adds to its own (``hooks`` in integrations/tests/schemathesis.toml).

Two things about this API a JSON Schema cannot say, and how the run still holds the API to them:

* The bulk endpoints refuse an invalid *row*, not the batch: the answer is 200 with the row in ``errors``. The config
  lets schemathesis' ``negative_data_rejection`` accept that 200 on those four operations only, and
  ``bulk_rows_conformance`` demands the row error instead — and, the other way round, that a schema-valid row is
  only ever refused for a reason that depends on stored data or the clock (``STATE_DEPENDENT``), never for its shape.
* A few single-object operations refuse a schema-valid body for such reasons too (a tag that does not exist, an
  expiry in the past, a branch code nobody uses, an ID number whose check digit is wrong). The config lets
  ``positive_data_acceptance`` accept their 400, and ``state_dependent_refusal`` checks the 400 names only such a
  reason.

``every_operation_succeeds`` fails the run when an operation never answered 2xx: the seeded rows and the
dictionaries of the config must let every operation do its work, not only answer 404 or 400.
"""

import ast
import threading
from datetime import UTC, date, datetime, timedelta

import schemathesis
from schemathesis.core.parameters import ParameterLocation

# CPython 3.11.7 keeps one recursion counter for ast.parse across threads ("AST constructor recursion depth
# mismatch", python/cpython#106905); hypothesis parses sources to describe strategies, from every worker at once.
_ast_parse, _ast_lock = ast.parse, threading.Lock()


def _serialised_ast_parse(*args, **kwargs):
    with _ast_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _serialised_ast_parse

BULK_ROWS = {  # operation → the key of its rows
    "POST /api/v1/customers/bulk_upsert/": "customers",
    "POST /api/v1/trades/bulk/": "trades",
    "POST /api/v1/events/bulk/": "events",
    "POST /api/v1/products/bulk_upsert/": "products",
}

# (field, code) a schema-valid value can still get, because of stored data, the clock or a check digit;
# "*" stands for any field. "future" marks codes that are only right when the value sent is in the future.
STATE_DEPENDENT = {
    ("*", "duplicate"),  # the same key twice in one batch (JSON Schema cannot make a property unique across items)
    ("*", "out_of_scope"),  # the key is used by a customer of another branch
    ("customer", "unknown_customer"), ("product", "unknown_product"),
    ("branch", "unknown_branch"), ("branch", "branch_required"),
    ("advisor", "unknown_advisor"), ("advisor", "advisor_branch_mismatch"),
    ("id_number", "invalid_id_number"),  # GB 11643 check digit
    ("birth_date", "birth_date_mismatch"),  # a birth date that is not the one in the ID number
    ("tag", "unknown_tag"), ("expires_at", "past"),
    ("rule", "invalid_rule"),  # the rule language has its own published schema (/segments/rule-schema.json)
}
FUTURE = {"future_date", "invalid_datetime"}  # "not after today" / "not after tomorrow"
CUSTOM_FIELDS = "custom_fields"  # values checked against the field definitions stored in the database


def _state_dependent(field: str, code: str, sent) -> bool:
    if field == CUSTOM_FIELDS or field.startswith(f"{CUSTOM_FIELDS}."):
        return True
    if (field, code) in STATE_DEPENDENT or ("*", code) in STATE_DEPENDENT:
        return True
    return code in FUTURE and _in_the_future(sent)


def _in_the_future(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        if len(value) == 10:
            return date.fromisoformat(value) > (datetime.now(UTC) + timedelta(hours=8)).date()
        return datetime.fromisoformat(value) > datetime.now(UTC)
    except ValueError:
        return False


def _negative_body(case) -> bool:
    return case.meta is not None and case.meta.is_negative_at(ParameterLocation.BODY)


def _positive(case) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


@schemathesis.check
def bulk_rows_conformance(ctx, response, case):
    """A batch whose rows violate the schema gets a row error; a schema-valid row none but STATE_DEPENDENT ones."""
    key = BULK_ROWS.get(case.operation.label)
    if key is None or response.status_code != 200 or response.request.method != "POST":  # not DRF's OPTIONS answer
        return None
    errors = response.json()["errors"]
    if _negative_body(case):
        if not errors:
            raise AssertionError(f"Schema-violating rows accepted: 200 without a row error for {case.body!r:.500}")
        return None
    if _positive(case):
        rows = case.body.get(key, []) if isinstance(case.body, dict) else []
        refused = [e for e in errors if not _state_dependent(
            e["field"], e["code"], (rows[e["index"]].get(e["field"]) if e["index"] < len(rows)
                                    and isinstance(rows[e["index"]], dict) else None))]
        if refused:
            raise AssertionError(f"Schema-valid rows refused: {refused[:5]}")
    return None


@schemathesis.check
def state_dependent_refusal(ctx, response, case):
    """A schema-valid body refused with 400 is refused for a reason the schema cannot state (STATE_DEPENDENT)."""
    if (response.status_code != 400 or response.request.method != case.operation.method.upper()
            or not _positive(case) or case.meta.is_negative_at(ParameterLocation.BODY)):
        return None
    error = response.json()["error"]
    body = case.body if isinstance(case.body, dict) else {}
    details = error["details"] if isinstance(error["details"], list) else []
    reasons = [(d.get("field") or d.get("path", "rule").split(".")[0].replace("$", "rule"), d.get("code", error["code"]))
               for d in details] or [("", error["code"])]
    if error["code"] == "invalid_rule":
        reasons = [("rule", "invalid_rule")]
    refused = [(field, code) for field, code in reasons if not _state_dependent(field, code, body.get(field))]
    if refused:
        raise AssertionError(f"Schema-valid request refused for {refused}: {error['message']}")
    return None


@schemathesis.check
class EveryOperationSucceeds:
    """Every operation tested answered 2xx at least once."""

    def __init__(self):
        self.tested, self.succeeded = set(), set()

    def after_response(self, ctx, response, case):
        self.tested.add(case.operation.label)
        if 200 <= response.status_code < 300:
            self.succeeded.add(case.operation.label)

    def after_run(self, ctx):
        never = sorted(self.tested - self.succeeded)
        if never:
            raise AssertionError(f"Operations that never answered 2xx: {never}")
