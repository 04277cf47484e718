"""The run queue replicas share: each due run claimed once, a lapsed lease taken over, a
suite never queued twice; on SQLite and PostgreSQL (where claims skip each other's locks)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from dq_agent.store import Store
from dq_agent.store.queue import claim, depth, enqueue, finish, history, renew

NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=2)


def test_a_suite_is_queued_once_until_its_run_is_finished(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert enqueue(store, "orders", NOW) is True
        assert enqueue(store, "orders", NOW) is False  # the same cron time, from a second leader
        assert enqueue(store, "orders", NOW + timedelta(minutes=30)) is False  # coalesced
        assert enqueue(store, "payments", NOW) is True
        held = claim(store, by="a", now=NOW, lease=LEASE)
        assert held is not None and held.suite == "orders"
        assert finish(store, held, by="a", status="pass", at=NOW + timedelta(seconds=5))
        assert enqueue(store, "orders", NOW + timedelta(minutes=30)) is True
        assert [(r.suite, r.status) for r in history(store, since=NOW)] == [
            ("orders", "pass"),
            ("payments", None),
            ("orders", None),
        ]


def test_only_due_runs_are_claimed_oldest_first(db_url: str) -> None:
    with Store.open(db_url) as store:
        enqueue(store, "later", NOW + timedelta(minutes=5), reason="retry")
        enqueue(store, "second", NOW - timedelta(minutes=1))
        enqueue(store, "first", NOW - timedelta(minutes=2))
        assert depth(store, now=NOW) == 2
        claims = [claim(store, by="a", now=NOW, lease=LEASE) for _ in range(3)]
        assert [c.suite if c else None for c in claims] == ["first", "second", None]
        for held in claims[:2]:
            assert held is not None and finish(store, held, by="a", status="pass", at=NOW)
        later = claim(store, by="a", now=NOW + timedelta(minutes=5), lease=LEASE)
        assert later is not None and (later.suite, later.reason) == ("later", "retry")


def test_a_lapsed_lease_is_taken_over_and_the_dead_holder_cannot_finish(db_url: str) -> None:
    with Store.open(db_url) as store:
        enqueue(store, "orders", NOW)
        held = claim(store, by="a", now=NOW, lease=LEASE)
        assert held is not None and held.attempts == 1
        assert renew(store, held, by="a", until=NOW + timedelta(minutes=3))
        assert claim(store, by="b", now=NOW + timedelta(minutes=2), lease=LEASE) is None
        # "a" dies: nobody renews; once the lease lapses "b" runs it again.
        taken = claim(store, by="b", now=NOW + timedelta(minutes=4), lease=LEASE)
        assert taken is not None and (taken.id, taken.attempts) == (held.id, 2)
        assert renew(store, held, by="a", until=NOW + timedelta(minutes=9)) is False
        assert finish(store, held, by="a", status="pass", at=NOW) is False
        assert finish(store, taken, by="b", status="fail", at=NOW + timedelta(minutes=5))
        assert [r.status for r in history(store, since=NOW)] == ["fail"]


@pytest.mark.parametrize("replicas", [4])
def test_concurrent_replicas_claim_each_run_exactly_once(db_url: str, replicas: int) -> None:
    suites = [f"suite_{i:03d}" for i in range(60)]
    with Store.open(db_url) as store:
        for suite in suites:
            enqueue(store, suite, NOW)
    claimed: dict[str, list[str]] = {f"r{n}": [] for n in range(replicas)}
    errors: list[BaseException] = []
    start = threading.Barrier(replicas)

    def work(name: str) -> None:
        try:
            with Store.open(db_url) as own:
                start.wait()
                while (held := claim(own, by=name, now=NOW, lease=LEASE)) is not None:
                    claimed[name].append(held.suite)
                    finish(own, held, by=name, status="pass", at=NOW)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(name,)) for name in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    every = [suite for runs in claimed.values() for suite in runs]
    assert sorted(every) == suites  # none lost, none twice
    if db_url.startswith("postgresql"):
        # SKIP LOCKED: the replicas share the work instead of queueing behind one another.
        assert sum(1 for runs in claimed.values() if runs) > 1
