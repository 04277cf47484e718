"""Leader election between daemon replicas sharing one state store."""

from __future__ import annotations

import multiprocessing
import os
import secrets
import signal
import time
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest
import sqlalchemy as sa

from dq_agent.daemon.leader import LEADER_LOCK_KEY, Leadership
from dq_agent.errors import StoreError

# (who, state, attempt started, attempt finished), times from time.monotonic(), which is one
# clock for every process of the host.
Report = tuple[str, str, float, float]


def _key() -> int:
    """A lock key of this test's own, so tests running at the same time do not contend."""
    return secrets.randbits(62) + 1


def _holder_pid(engine: sa.Engine, key: int) -> int | None:
    """The backend pid holding advisory lock ``key``, as PostgreSQL's lock table says."""
    query = sa.text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
    )
    with engine.connect() as conn:
        return conn.execute(query, {"hi": key >> 32, "lo": key & 0xFFFF_FFFF}).scalar()


def test_lock_key_spells_dqleader() -> None:
    assert LEADER_LOCK_KEY.to_bytes(8, "big") == b"dqleader"


def test_only_one_of_two_leads_until_it_releases(db_url: str) -> None:
    key = _key()
    with Leadership(db_url, key=key) as first, Leadership(db_url, key=key) as second:
        assert first.describe() == "standby"
        assert first.try_acquire()
        assert first.try_acquire()  # already held: still True
        assert first.holds()
        assert first.describe() == f"leader (pid {os.getpid()})"

        assert not second.try_acquire()
        assert not second.holds()
        assert second.describe() == "standby"

        first.release()
        assert not first.holds()
        assert first.describe() == "standby"
        assert second.try_acquire()
        assert second.holds()
        assert not first.try_acquire()
    # Leaving the block released it: a newcomer leads.
    with Leadership(db_url, key=key) as third:
        assert third.try_acquire()


def test_release_of_a_standby_is_harmless(db_url: str) -> None:
    key = _key()
    with Leadership(db_url, key=key) as leader, Leadership(db_url, key=key) as standby:
        assert leader.try_acquire()
        assert not standby.try_acquire()
        standby.release()
        standby.release()
        assert leader.holds()


def test_sqlite_lock_file_is_next_to_the_database(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "state.sqlite"
    with Leadership(f"sqlite:///{database}") as leadership:
        assert leadership.try_acquire()
        lock_file = tmp_path / "nested" / "state.sqlite.leader"
        assert lock_file.read_text() == f"{os.getpid()}\n"
    assert not database.exists()  # only the lock file is made


def test_sqlite_lock_file_replaced_loses_the_leadership(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with Leadership(url) as first, Leadership(url) as second:
        assert first.try_acquire()
        (tmp_path / "state.sqlite.leader").unlink()
        # Someone else can now lock a new file at that path, so the old lock means nothing.
        assert not first.holds()
        assert second.try_acquire()


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:mem?mode=memory&uri=true"]
)
def test_in_memory_sqlite_is_always_leader(url: str) -> None:
    with Leadership(url) as first, Leadership(url) as second:
        assert first.try_acquire()
        assert second.try_acquire()
        assert first.holds()


def test_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    leadership = Leadership("postgresql+psycopg://nobody:s3cret@127.0.0.1:1/x")
    with pytest.raises(StoreError) as caught:
        leadership.try_acquire()
    message = str(caught.value)
    assert "postgresql+psycopg://nobody:***@127.0.0.1:1/x" in message
    assert "s3cret" not in message
    assert not leadership.holds()


def test_bad_url_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        Leadership("postgresql://user:hunter2@host:port/db")
    assert "postgresql://user:***@host:port/db" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_unsupported_backend_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="need a SQLite or PostgreSQL"):
        Leadership("mysql://user:hunter2@host/db")


def test_sqlite_lock_file_that_cannot_be_made_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open lock file"):
        Leadership(f"sqlite:///{blocker / 'state.sqlite'}").try_acquire()


def test_killed_connection_loses_leadership_and_reacquire_reconnects(postgres_url: str) -> None:
    key = _key()
    admin = sa.create_engine(postgres_url)
    try:
        with Leadership(postgres_url, key=key) as leadership:
            assert leadership.try_acquire()
            old_pid = _holder_pid(admin, key)
            assert old_pid is not None

            with admin.connect() as conn:
                # The timeout argument waits (up to 5 s) for the backend to be gone.
                killed = conn.execute(
                    sa.select(sa.func.pg_terminate_backend(old_pid, 5000))
                ).scalar()
            assert killed is True
            assert _holder_pid(admin, key) is None

            assert not leadership.holds()
            assert leadership.describe() == "standby"
            assert not leadership.holds()  # stays lost, without reconnecting by itself

            assert leadership.try_acquire()
            assert leadership.holds()
            new_pid = _holder_pid(admin, key)
            assert new_pid is not None
            assert new_pid != old_pid
        assert _holder_pid(admin, key) is None
    finally:
        admin.dispose()


def test_standby_takes_over_when_the_leaders_connection_is_killed(postgres_url: str) -> None:
    key = _key()
    admin = sa.create_engine(postgres_url)
    try:
        with (
            Leadership(postgres_url, key=key) as first,
            Leadership(postgres_url, key=key) as second,
        ):
            assert first.try_acquire()
            assert not second.try_acquire()
            with admin.connect() as conn:
                pid = _holder_pid(admin, key)
                conn.execute(sa.select(sa.func.pg_terminate_backend(pid, 5000)))
            assert second.try_acquire()
            assert not first.holds()
            assert not first.try_acquire()
    finally:
        admin.dispose()


# -- real processes ---------------------------------------------------------------------------


def _lead_and_sleep(url: str, key: int, reports: Queue[Report]) -> None:
    leadership = Leadership(url, key=key)
    started = time.monotonic()
    state = "leader" if leadership.try_acquire() else "standby"
    reports.put(("A", state, started, time.monotonic()))
    while True:  # until killed
        time.sleep(1)


def _stand_by(
    url: str, key: int, reports: Queue[Report], attempts: Synchronized[int], stop: Event
) -> None:
    state = ""
    with Leadership(url, key=key) as leadership:
        try:
            while not stop.is_set():
                started = time.monotonic()
                now = "leader" if leadership.try_acquire() else "standby"
                finished = time.monotonic()
                with attempts.get_lock():
                    attempts.value += 1
                if now != state:
                    reports.put(("B", now, started, finished))
                    state = now
                time.sleep(0.05)
        except Exception as exc:
            reports.put(("B", f"error: {exc}", time.monotonic(), time.monotonic()))


def _next_report(reports: Queue[Report], deadline: float) -> Report:
    return reports.get(timeout=max(0.0, deadline - time.monotonic()))


def test_standby_process_takes_over_when_the_leader_process_dies(db_url: str) -> None:
    key = _key()
    context = multiprocessing.get_context("spawn")
    reports: Queue[Report] = context.Queue()
    attempts: Synchronized[int] = context.Value("i", 0)
    stop = context.Event()
    leader = context.Process(target=_lead_and_sleep, args=(db_url, key, reports), daemon=True)
    standby = context.Process(
        target=_stand_by, args=(db_url, key, reports, attempts, stop), daemon=True
    )
    try:
        leader.start()
        who, state, _, a_acquired = _next_report(reports, time.monotonic() + 60)
        assert (who, state) == ("A", "leader")

        standby.start()
        who, state, b_started, _ = _next_report(reports, time.monotonic() + 60)
        assert (who, state) == ("B", "standby")
        assert b_started > a_acquired

        # B keeps trying, and keeps failing, while A lives.
        deadline = time.monotonic() + 30
        while attempts.value < 20:
            assert time.monotonic() < deadline, f"B made only {attempts.value} attempts"
            assert leader.is_alive() and standby.is_alive()
            time.sleep(0.05)

        killed_at = time.monotonic()
        os.kill(leader.pid or 0, signal.SIGKILL)
        who, state, b_started, b_finished = _next_report(reports, killed_at + 5)
        assert (who, state) == ("B", "leader")
        # B's first successful attempt ended after A was killed: they never led together.
        assert b_finished > killed_at
        failover = b_finished - killed_at
        assert failover < 5
        print(f"\nfailover on {db_url.split(':')[0]}: {failover:.3f} s")

        leader.join(timeout=5)
        assert leader.exitcode == -signal.SIGKILL
        stop.set()
        standby.join(timeout=30)
        assert standby.exitcode == 0
        assert reports.empty()  # no state change (nor error) after taking over
    finally:
        stop.set()
        for process in (leader, standby):
            if process.is_alive():
                process.kill()
            if process.pid is not None:
                process.join(timeout=10)
        reports.close()
        reports.join_thread()
