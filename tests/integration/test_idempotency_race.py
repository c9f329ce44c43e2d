"""Many requests with fresh Idempotency-Keys at once: each runs once, none is "in progress".

And why the races need one process per environment: two threads of one process share the event
Powertools' resolver reads.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.integration.test_concurrency import race
from tests.support.api import Api, ApiResponse


def idempotency_records() -> dict[str, str]:
    """Every record of the idempotency table: key -> status."""
    from tickets.store.idempotency_records import persistence_store

    store = persistence_store()
    client, records = store.client, {}
    pages = client.get_paginator("scan").paginate(TableName=store.table_name, ConsistentRead=True)
    for page in pages:
        records.update({item["id"]["S"]: item["status"]["S"] for item in page["Items"]})
    return records


@pytest.mark.parametrize("round_", range(5))
def test_fifty_fresh_keys_at_once_each_run_once(api: Api, environments: Api, key: str, db: Any,
                                                round_: int) -> None:
    event = api.create_event(tiers=[{"name": "Big", "capacity": 1000, "price": 100}])
    before = idempotency_records()
    responses = race(50, lambda n: environments.reserve(event["event_id"], 1, key=f"{key}-{n}",
                                                        device=f"buyer-{n}"))
    assert [r.text for r in responses if r.status != 201] == []
    assert len({r.body["reservation_id"] for r in responses}) == 50
    assert db.execute("SELECT count(*) FROM reservations").fetchone()[0] == 50
    added = {record: status for record, status in idempotency_records().items() if record not in before}
    assert sorted(added.values()) == ["COMPLETED"] * 50, "one completed record per key, none left in progress"


def test_threads_of_one_process_read_each_others_event(api: Api, key: str, db: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the races run in a process per environment, replayed step by step.

    A resolves its request (BaseRouter.current_event = A's event) and pauses as it checks its
    Idempotency-Key; B resolves its own reserve, for two seats (BaseRouter.current_event = B's
    event), and pauses in the domain. A resumes and builds its idempotency record from
    `app.current_event` - B's event: the resolver keeps it on a class, so even a copy of the function
    module of its own would not help A - and so records B's body under its own key. A's honest
    retry is then refused as reusing its key with another body. This is Powertools' design for one
    invocation per process at a time (when the key was read from the event too, A read B's key and
    answered 409 request_in_progress).
    """
    import tickets.edge.idempotency
    from tickets.domain import reservations

    event_id = api.create_event()["event_id"]
    a_paused, b_in_domain, release_b = threading.Event(), threading.Event(), threading.Event()
    real_key, real_reserve = tickets.edge.idempotency.idempotency_key, reservations.reserve

    def idempotency_key(header: str | None, *, required: bool) -> str | None:
        if threading.current_thread().name == "A":
            a_paused.set()
            assert b_in_domain.wait(10)
        return real_key(header, required=required)

    def reserve(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == "B":
            b_in_domain.set()
            assert release_b.wait(10)
        return real_reserve(*args, **kwargs)

    monkeypatch.setattr(tickets.edge.idempotency, "idempotency_key", idempotency_key)
    monkeypatch.setattr(reservations, "reserve", reserve)
    answers: dict[str, ApiResponse] = {}

    def client(name: str) -> None:
        answers[name] = api.reserve(event_id, 1 if name == "A" else 2, key=f"{key}-{name}", device="one-buyer")

    a = threading.Thread(target=client, args=("A",), name="A")
    b = threading.Thread(target=client, args=("B",), name="B")
    a.start()
    assert a_paused.wait(10)
    b.start()
    a.join(20)
    release_b.set()
    b.join(20)
    assert answers["A"].status == 201 and answers["B"].status == 201
    retry = api.reserve(event_id, 1, key=f"{key}-A", device="one-buyer")
    assert retry.status == 422 and retry.error_code == "idempotency_key_reused", retry.text
