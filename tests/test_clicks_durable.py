"""Slack clicks acknowledged are never lost: each is recorded in the state store before the
acknowledgement, and acted on exactly once across a stop, a crash and several replicas.

Slack never sends an acknowledged click again, so a click the agent answered and then forgot
(stopped with a backlog, or killed) would be lost for good.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from dq_agent.errors import StoreError
from dq_agent.escalate.endpoint import ACTIONS_PATH, CLICK_LEASE, Clicks, Interactions, Verifier
from dq_agent.escalate.server import asgi_app
from dq_agent.store import NewClick, Store
from dq_agent.store.clicks import CLICKS_KEPT
from dq_agent.store.models import SlackClick

SECRET = "durable-clicks-secret"
T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Acted:
    """What ``act`` was called with, by trigger id, from any thread."""

    def __init__(self) -> None:
        self.triggers: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, payload: Mapping[str, Any]) -> None:
        with self._lock:
            self.triggers.append(str(payload["trigger_id"]))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    with Store.open(db_url) as opened:
        yield opened


def payload(trigger: str) -> dict[str, Any]:
    return {"type": "block_actions", "trigger_id": trigger, "actions": []}


def accept(clicks: Clicks, *triggers: str, at: datetime = T0) -> None:
    for trigger in triggers:
        assert clicks.accept(f"sig-{trigger}", payload(trigger), at=at, until=at + timedelta(1))


def rows(store: Store) -> list[SlackClick]:
    with store._transaction("read clicks") as session:
        return list(session.scalars(sa.select(SlackClick).order_by(SlackClick.id)))


def test_clicks_acknowledged_before_a_crash_are_acted_on_once_by_the_next_process(
    store: Store, db_url: str
) -> None:
    clock = Clock()
    crashed = Clicks(Acted(), store, clock=clock)
    accept(crashed, "approve", "snooze")  # acknowledged, then kill -9: never started, no stop

    with Store.open(db_url) as other:
        acted = Acted()
        clock.now = T0 + timedelta(seconds=30)
        nxt = Clicks(acted, other, clock=clock)
        assert nxt.sweep() == 0  # the holder may still be alive: its lease runs
        clock.now = T0 + CLICK_LEASE + timedelta(seconds=1)
        nxt.start()
        nxt.drain()
        nxt.stop()
        assert acted.triggers == ["approve", "snooze"]  # in the order they came

        after = Clicks(acted, other, clock=clock)
        after.start()
        after.drain()
        after.stop()
    assert acted.triggers == ["approve", "snooze"]
    assert all(row.done_at is not None for row in rows(store))


def test_a_stopping_process_gives_back_what_it_had_no_time_for(store: Store) -> None:
    clock = Clock()
    acting, finish = threading.Event(), threading.Event()
    first_acted = Acted()

    def slow(payload: Mapping[str, Any]) -> None:
        first_acted(payload)
        acting.set()
        finish.wait(10)  # a Slack post paced behind many others

    first = Clicks(slow, store, clock=clock, grace=0.05)
    accept(first, "one", "two", "three")
    first.start()
    assert acting.wait(10)
    first.stop()  # the grace passes while "one" is being acted on
    finish.set()
    first.drain()  # "one" is finished and marked done; "two" and "three" were given back

    acted = Acted()
    nxt = Clicks(acted, store, clock=clock)  # at once: no lease to wait out
    nxt.start()
    nxt.drain()
    nxt.stop()
    assert first_acted.triggers == ["one"]
    assert acted.triggers == ["two", "three"]
    assert [row.done_at is not None for row in rows(store)] == [True, True, True]


def test_a_click_that_fails_is_marked_done_and_not_tried_again(store: Store) -> None:
    tried: list[str] = []

    def broken(payload: Mapping[str, Any]) -> None:
        tried.append(payload["trigger_id"])
        raise ValueError("Slack said no")

    clicks = Clicks(broken, store, clock=Clock())
    accept(clicks, "bad")
    clicks.start()
    clicks.drain()
    clicks.stop()
    again = Clicks(broken, store, clock=Clock(T0 + 2 * CLICK_LEASE))
    again.start()
    again.drain()
    again.stop()
    assert tried == ["bad"]
    assert rows(store)[0].done_at == T0


def test_two_replicas_racing_for_given_back_clicks_act_on_each_once(postgres_url: str) -> None:
    triggers = [f"click-{n}" for n in range(40)]
    with Store.open(postgres_url) as one, Store.open(postgres_url) as two:
        stopped = Clicks(Acted(), one, clock=Clock())
        accept(stopped, *triggers)
        stopped.stop()  # stopped before acting on any: all given back

        acted = Acted()
        replicas = [Clicks(acted, s, clock=Clock()) for s in (one, two, one, two)]
        ready = threading.Barrier(len(replicas))
        taken: list[int] = []

        def race(clicks: Clicks) -> None:
            ready.wait()
            taken.append(clicks.sweep())

        racers = [threading.Thread(target=race, args=(r,)) for r in replicas]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join()
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.drain()
            replica.stop()
    assert sum(taken) == len(triggers)
    assert sorted(acted.triggers) == sorted(triggers)  # each once


def signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": f"v0={digest.hexdigest()}",
    }


def test_a_replayed_request_is_neither_acknowledged_nor_recorded_twice(
    store: Store, db_url: str
) -> None:
    body = urlencode({"payload": '{"type": "block_actions", "trigger_id": "once"}'}).encode()
    headers = signed(body)
    acted = Acted()
    clicks = Clicks(acted, store)
    endpoint = Interactions(Verifier(SECRET, store), clicks)
    assert endpoint.accept(body, headers) == (200, "")
    assert endpoint.accept(body, headers) == (401, "replayed request")
    with Store.open(db_url) as other:  # another replica
        replica = Interactions(Verifier(SECRET, other), Clicks(acted, other))
        assert replica.accept(body, headers) == (401, "replayed request")
    assert [row.payload for row in rows(store)] == [
        '{"type": "block_actions", "trigger_id": "once"}'
    ]
    clicks.start()
    clicks.drain()
    clicks.stop()
    assert acted.triggers == ["once"]


def test_a_click_that_cannot_be_recorded_is_not_acknowledged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*_args: object, **_kwargs: object) -> list[int | None]:
        raise StoreError("cannot record a Slack click in state store: connection refused")

    monkeypatch.setattr(store, "accept_clicks", unreachable)
    body = urlencode({"payload": '{"type": "block_actions", "trigger_id": "lost"}'}).encode()
    endpoint = Interactions(Verifier(SECRET, store), Clicks(Acted(), store))
    # Slack sends a request again when it is not answered 200.
    assert endpoint.accept(body, signed(body)) == (503, "cannot record the request now: try again")


def test_clicks_acted_on_are_pruned_a_day_later(store: Store) -> None:
    clock = Clock()
    clicks = Clicks(Acted(), store, clock=clock)
    accept(clicks, "old")
    clicks.start()
    clicks.drain()
    clicks.stop()
    clock.now = T0 + timedelta(days=1, seconds=1)
    later = Clicks(Acted(), store, clock=clock)
    accept(later, "new", at=clock.now)
    assert [row.key for row in rows(store)] == ["sig-new"]


def test_what_expired_is_let_go_of_once_a_minute_not_with_every_recording(store: Store) -> None:
    def record(trigger: str, at: datetime) -> int:
        click_id = store.accept_click(
            f"sig-{trigger}", "{}", at=at, until=at, claim="me", lease_until=at + CLICK_LEASE
        )
        assert click_id is not None
        return click_id

    done = record("done", T0)
    assert store.finish_click(done, "me", at=T0)
    day = T0 + CLICKS_KEPT
    record("before its day", day - timedelta(seconds=10))  # the minute's pruning: too early
    record("after its day", day + timedelta(seconds=10))  # pruned 20 s ago: not again yet
    assert "sig-done" in [row.key for row in rows(store)]
    record("a minute on", day + timedelta(seconds=50))
    assert [row.key for row in rows(store)] == [
        "sig-before its day",
        "sig-after its day",
        "sig-a minute on",
    ]


def test_without_a_store_clicks_are_kept_in_memory_and_a_verifier_needs_one(store: Store) -> None:
    acted = Acted()
    clicks = Clicks(acted)
    clicks.put(payload("memory"))
    clicks.start()
    clicks.drain()
    clicks.stop()
    assert acted.triggers == ["memory"]
    with pytest.raises(ValueError, match="must be recorded"):
        Interactions(Verifier(SECRET, store), Clicks(acted))


def burst(
    clicks: Clicks,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    keys: list[str],
    second: Callable[..., list[int | None]] | None = None,
) -> tuple[list[list[str]], list[tuple[str, bool | BaseException]]]:
    """Click k0, and while it is being recorded click ``keys`` at once; the second record
    is made by ``second`` (default: the store). The keys of each record made, and each
    click's outcome (new, a replay, or what it raised)."""
    batches: list[list[str]] = []
    first_commit = threading.Event()
    record = partial(Store.accept_clicks, store)  # the store's own, not a patched one

    def recording(batch: Any, **kwargs: Any) -> list[int | None]:
        batches.append([c.key for c in batch])
        if len(batches) == 1:
            assert first_commit.wait(10)
        elif second is not None:
            return second(batch, **kwargs)
        return record(batch, **kwargs)

    monkeypatch.setattr(store, "accept_clicks", recording)
    outcomes: list[tuple[str, bool | BaseException]] = []

    def click(key: str) -> None:
        try:
            new = clicks.accept(key, payload(key), at=T0, until=T0 + timedelta(1))
        except Exception as exc:  # noqa: BLE001 - the outcome looked at
            outcomes.append((key, exc))
        else:
            outcomes.append((key, new))

    first = threading.Thread(target=click, args=("k0",))
    first.start()
    deadline = time.monotonic() + 10
    while not batches and time.monotonic() < deadline:
        time.sleep(0.001)
    others = [threading.Thread(target=click, args=(k,)) for k in keys]
    for thread in others:
        thread.start()
    while len(clicks._waiting) < len(keys) and time.monotonic() < deadline:
        time.sleep(0.001)
    first_commit.set()
    for thread in [first, *others]:
        thread.join()
    return batches, outcomes


def test_clicks_that_come_together_are_recorded_with_one_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While one click is being recorded, the fifteen that come meanwhile wait, and are then
    recorded together; a replay among them is refused, and each new click acted on once."""
    acted = Acted()
    clicks = Clicks(acted, store)
    # k0 again is a replay of the click being recorded; k7 comes twice at once.
    keys = [f"k{n}" for n in range(1, 14)] + ["k0", "k7"]
    batches, outcomes = burst(clicks, store, monkeypatch, keys)

    assert [len(b) for b in batches] == [1, len(keys)]
    assert sorted(batches[1]) == sorted(keys)
    assert sorted(k for k, new in outcomes if new is True) == sorted(f"k{n}" for n in range(14))
    assert sorted(k for k, new in outcomes if new is False) == ["k0", "k7"]  # the replays
    assert len(rows(store)) == 14  # k0 and k7 recorded once each
    clicks.start()
    clicks.drain()
    clicks.stop()
    assert sorted(acted.triggers) == sorted(f"k{n}" for n in range(14))


def test_no_click_of_a_batch_that_could_not_be_recorded_is_acknowledged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether the store refused the batch or something else went wrong, every click of it
    is answered with an error (Slack sends it again), none as accepted or as a replay."""
    for fault, told in (
        (StoreError("cannot record Slack clicks in state store: disk I/O error"), StoreError),
        (OSError("no space left on device"), (OSError, RuntimeError)),
    ):

        def failing(
            *_args: object, fault: Exception = fault, **_kwargs: object
        ) -> list[int | None]:
            raise fault

        clicks = Clicks(Acted(), store)
        keys = [f"{type(fault).__name__}-{n}" for n in range(5)]
        batches, outcomes = burst(clicks, store, monkeypatch, keys, failing)
        assert [len(b) for b in batches] == [1, 5]
        failed = dict(outcomes)
        assert failed.pop("k0") in (True, False)  # the first was recorded (or a replay)
        assert sorted(failed) == sorted(keys)
        assert all(isinstance(outcome, told) for outcome in failed.values()), failed


def test_a_batch_that_meets_another_replica_s_record_refuses_only_that_click(
    store: Store, db_url: str
) -> None:
    """Another replica recorded one of the requests between the look and the insert: the
    batch's commit fails as a whole, and its clicks are then recorded one by one."""
    until = T0 + timedelta(1)
    with Store.open(db_url) as replica:
        assert replica.accept_click("b", "{}", at=T0, until=until, claim="r", lease_until=T0)
        seen = store._accept_clicks
        looked: list[int] = []

        def racing(clicks: Any, claim: str, lease_until: datetime) -> list[int | None]:
            looked.append(len(clicks))
            if len(looked) == 1:  # as if "b" were recorded just after this batch looked
                with replica.engine.begin() as conn:
                    conn.execute(sa.text("DELETE FROM seen_requests WHERE key = 'b'"))
                found = seen(clicks, claim, lease_until)
                raise AssertionError(f"the batch did not fail: {found}")
            return seen(clicks, claim, lease_until)

        store._accept_clicks = racing  # type: ignore[method-assign]
        batch = [NewClick(k, "{}", T0, until) for k in ("a", "b", "c")]
        ids = store.accept_clicks(batch, claim="me", lease_until=T0)
    assert ids[0] is not None and ids[1] is None and ids[2] is not None
    assert looked == [3, 1, 1, 1]


def test_clicks_that_come_together_on_an_event_loop_are_recorded_with_one_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How the server records them: each request's click waits on the loop, and the clicks
    that came while a batch was recorded (in a thread) make the next batch."""
    batches: list[list[str]] = []
    record = partial(Store.accept_clicks, store)

    def recording(batch: Any, **kwargs: Any) -> list[int | None]:
        batches.append([c.key for c in batch])
        return record(batch, **kwargs)

    monkeypatch.setattr(store, "accept_clicks", recording)
    acted = Acted()
    clicks = Clicks(acted, store)
    keys = [f"k{n}" for n in range(12)] + ["k3"]  # k3 twice at once: one is a replay

    async def together() -> list[bool]:
        until = T0 + timedelta(1)
        first = await clicks.accept_async("first", payload("first"), at=T0, until=until)
        rest = await asyncio.gather(
            *(clicks.accept_async(k, payload(k), at=T0, until=until) for k in keys)
        )
        return [first, *rest]

    outcomes = asyncio.run(together())
    assert batches == [["first"], keys]
    assert outcomes == [True] * 13 + [False]
    clicks.start()
    clicks.drain()
    clicks.stop()
    assert sorted(acted.triggers) == sorted(["first", *keys[:-1]])


def test_no_click_of_a_batch_the_event_loop_could_not_record_is_acknowledged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for fault, told in (
        (StoreError("cannot record Slack clicks in state store: disk I/O error"), StoreError),
        (OSError("no space left on device"), RuntimeError),
    ):

        def failing(*_args: object, fault: Exception = fault, **_kwargs: object) -> Any:
            raise fault

        monkeypatch.setattr(store, "accept_clicks", failing)
        clicks = Clicks(Acted(), store)

        async def together(clicks: Clicks) -> list[bool | BaseException]:
            until = T0 + timedelta(1)
            return await asyncio.gather(
                *(
                    clicks.accept_async(f"k{n}", payload(f"k{n}"), at=T0, until=until)
                    for n in range(5)
                ),
                return_exceptions=True,
            )

        outcomes = asyncio.run(together(clicks))
        assert all(isinstance(outcome, told) for outcome in outcomes), outcomes


def test_the_server_answers_a_click_only_once_it_is_recorded(store: Store) -> None:
    """Over HTTP (the ASGI application, as uvicorn runs it): 200 for a click recorded, 401
    for its replay, 503 when the store cannot record it."""
    clicks = Clicks(Acted(), store)
    app = asgi_app(Interactions(Verifier(SECRET, store), clicks), clicks)
    body = urlencode({"payload": '{"type": "block_actions", "trigger_id": "t1"}'}).encode()
    headers = signed(body)  # once: signed again in another second, it would be a new request
    with TestClient(app) as client:
        sent = client.post(ACTIONS_PATH, content=body, headers=headers)
        again = client.post(ACTIONS_PATH, content=body, headers=headers)
        assert (sent.status_code, again.status_code) == (200, 401)
        assert len(rows(store)) == 1
        store.engine.dispose()
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE slack_clicks"))
        other = body.replace(b"t1", b"t2")
        lost = client.post(ACTIONS_PATH, content=other, headers=signed(other))
        assert (lost.status_code, lost.text) == (503, "cannot record the request now: try again")


def test_a_click_the_event_loop_could_not_hand_to_a_thread_is_not_acknowledged(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_threads(*_args: object) -> None:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)
    clicks = Clicks(Acted(), store)
    until = T0 + timedelta(1)
    with pytest.raises(RuntimeError, match="recording Slack clicks failed"):
        asyncio.run(clicks.accept_async("k", payload("k"), at=T0, until=until))
    assert rows(store) == []
