"""Typed domain events: what happened, emitted once by the code that wrote it, heard by whoever cares.

The writer calls ``emit(SomethingHappened(...))`` inside its transaction; each subscriber runs after the
transaction commits (right away outside one), on its own: one that raises is logged and the others still run
(``transaction.on_commit(..., robust=True)``), and nothing runs for a change that was rolled back. Events carry
ids and plain values, never model instances, so a subscriber reads the committed state.

Apps subscribe in their ``AppConfig.ready()`` (``subscribe(TradesIngested, on_trades_ingested)``); ``manage.py
events`` prints who listens to what. Webhooks, the live dashboard's counters, incremental recomputes, SOP triggers
and WeCom tag mirroring all hear about changes here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime

from django.db import transaction


@dataclass(frozen=True)
class Event:
    """Base of every domain event."""


@dataclass(frozen=True)
class CustomersChanged(Event):
    """Customers were created or changed by an upsert (REST API, CRM sync, file import, WeCom review queue)."""

    created_ids: tuple[int, ...] = ()
    updated_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TradesIngested(Event):
    """Trades were written (REST API, CRM sync); ``updated_ids`` changed in place."""

    created_ids: tuple[int, ...] = ()
    updated_ids: tuple[int, ...] = ()
    customer_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class EventsIngested(Event):
    """Behaviour events were written (REST API)."""

    created_ids: tuple[int, ...] = ()
    updated_ids: tuple[int, ...] = ()
    customer_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class TagChanged(Event):
    """A tag was added to or removed from a customer (``action``: "added" / "removed"), by any writer."""

    customer_id: int
    tag_code: str
    action: str
    source: str


@dataclass(frozen=True)
class TierChanged(Event):
    """A tier run changed at least one customer's tier (the run's history rows say whose)."""

    run_id: int


@dataclass(frozen=True)
class NoteCreated(Event):
    note_id: int
    customer_id: int


@dataclass(frozen=True)
class TaskCompleted(Event):
    task_id: int


@dataclass(frozen=True)
class StepRunsFinished(Event):
    """SOP step runs finished (done, blocked or dead) in one engine batch."""

    step_run_ids: tuple[int, ...]


@dataclass(frozen=True)
class WecomContactAdded(Event):
    """A client who is a customer added an advisor on WeCom (or was linked to such an add later)."""

    customer_id: int
    contact_id: int
    contact_way_id: int | None
    userid: str
    at: datetime


@dataclass(frozen=True)
class SegmentMembershipChanged(Event):
    """A segment rebuild moved customers in or out (who: SegmentMemberChange rows of ``rebuild_id``)."""

    segment_id: int
    rebuild_id: int


@dataclass(frozen=True)
class GroupMembersChanged(Event):
    """Clients joined or left a community group (WeCom sync, callbacks, dismissal): customer ids of each."""

    group_id: int
    joined_customer_ids: tuple[int, ...] = ()
    left_customer_ids: tuple[int, ...] = ()


_subscribers: dict[type[Event], list[Callable[[Event], None]]] = {}


def subscribe(event_type: type[Event], handler: Callable[[Event], None]) -> None:
    """Add ``handler`` for ``event_type`` (once, however often an app's ready() runs)."""
    handlers = _subscribers.setdefault(event_type, [])
    if handler not in handlers:
        handlers.append(handler)


def unsubscribe(event_type: type[Event], handler: Callable[[Event], None]) -> None:
    handlers = _subscribers.get(event_type, [])
    if handler in handlers:
        handlers.remove(handler)


def emit(event: Event) -> None:
    """Run every subscriber of ``type(event)`` after the current transaction commits, each on its own."""
    for handler in list(_subscribers.get(type(event), ())):
        transaction.on_commit(lambda handler=handler: handler(event), robust=True)


@contextmanager
def listening(event_type: type[Event]) -> Iterator[list[Event]]:
    """For tests: collect the events of one type emitted (and committed) inside the block."""
    heard: list[Event] = []
    subscribe(event_type, heard.append)
    try:
        yield heard
    finally:
        unsubscribe(event_type, heard.append)


def _name(handler) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"


def event_types() -> list[type[Event]]:
    return sorted(Event.__subclasses__(), key=lambda cls: cls.__name__)


def registry() -> list[dict]:
    """Every event type with its fields and subscribers (for ``manage.py events`` and the docs)."""
    return [{"event": cls.__name__, "fields": [f.name for f in fields(cls)],
             "doc": (cls.__doc__ or "").strip().split("\n")[0],
             "subscribers": [_name(h) for h in _subscribers.get(cls, [])]} for cls in event_types()]
