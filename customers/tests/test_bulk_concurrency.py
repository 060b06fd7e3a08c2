"""Eight API clients sending overlapping 500-row batches at once, ten rounds, over real HTTP: no request fails and
every customer ends up written exactly as one of the batches that carried it said. A deadlock or serialization
failure that does reach the upsert is retried once inside the service."""

import threading

import pytest
import requests
from django.db import OperationalError

from customers.ingest import customers as bulk
from customers.models import Customer
from integrations.tests.api_support import branches, make_api_client  # noqa: F401

CLIENTS, ROWS, STEP, ROUNDS = 8, 500, 250, 10


def _key(k: int, round_: int) -> str:
    """Every other key is new in each round, so existing and brand-new keys interleave in every batch."""
    return f"DL{k:05d}" if k % 2 == 0 else f"DL{k:05d}-{round_}"


def _batch(client: int, round_: int) -> list[dict]:
    # client i sends keys i*250 … i*250+499: each half overlaps a neighbour's
    keys = list(range(client * STEP, client * STEP + ROWS))
    if client % 2:
        keys.reverse()  # neighbours send the shared keys in opposite orders
    return [{"external_id": _key(k, round_), "name": f"客户{k}", "branch": "BJ01", "total_assets": f"{round_}{client}.00",
             "region": f"r{round_}"} for k in keys]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_from_eight_clients_never_fail(live_server, make_api_client, branches):  # noqa: F811
    keys = [make_api_client(name=f"crm{c}")[1].key for c in range(CLIENTS)]
    for round_ in range(ROUNDS):
        answers: list = []
        start = threading.Barrier(CLIENTS)

        def send(client, round_=round_, start=start, answers=answers):
            start.wait()
            try:
                response = requests.post(f"{live_server.url}/api/v1/customers/bulk_upsert/",
                                         json={"customers": _batch(client, round_)}, timeout=120,
                                         headers={"Authorization": f"Bearer {keys[client]}"})
                answers.append((response.status_code, response.json() if response.ok else response.text[:300]))
            except requests.RequestException as exc:
                answers.append((0, str(exc)))

        threads = [threading.Thread(target=send, args=(c,)) for c in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a for a in answers if a[0] != 200] == [], f"round {round_}"
        assert all(body["errors"] == [] for _status, body in answers)
        keys_in_play = range((CLIENTS - 1) * STEP + ROWS)
        this_round = {_key(k, round_) for k in keys_in_play}
        rows = dict(Customer.objects.filter(external_id__in=this_round).values_list("external_id", "region"))
        assert set(rows) == this_round and set(rows.values()) == {f"r{round_}"}, f"round {round_}"
        new = len(keys_in_play) if round_ == 0 else len(keys_in_play) // 2
        assert sum(body["created"] for _status, body in answers) == new  # each new key created once, by one client


@pytest.mark.django_db
def test_a_deadlock_in_the_write_is_retried_once_and_counted_once(monkeypatch, branches):  # noqa: F811
    class Deadlock(Exception):
        pgcode = "40P01"

    real_write, calls = bulk._write, []

    def write_losing_the_first_race(valid, **kwargs):
        calls.append(len(valid))
        result = real_write(valid, **kwargs)  # the rows are written, then the statement loses a deadlock
        if len(calls) == 1:
            raise OperationalError("deadlock detected") from Deadlock()
        return result

    monkeypatch.setattr(bulk, "_write", write_losing_the_first_race)
    result = bulk.customer_bulk_upsert(actor_label="api:t", rows=[
        {"external_id": f"R{i}", "name": f"客户{i}", "branch": "BJ01"} for i in range(3)])
    assert calls == [3, 3] and (result["created"], result["updated"], result["unchanged"]) == (3, 0, 0)
    assert Customer.objects.count() == 3


@pytest.mark.django_db
def test_other_database_errors_are_not_retried(monkeypatch, branches):  # noqa: F811
    calls = []

    def broken(valid, **kwargs):
        calls.append(1)
        raise OperationalError("connection lost")

    monkeypatch.setattr(bulk, "_write", broken)
    with pytest.raises(OperationalError):
        bulk.customer_bulk_upsert(actor_label="api:t", rows=[{"external_id": "R1", "name": "客户", "branch": "BJ01"}])
    assert calls == [1]
