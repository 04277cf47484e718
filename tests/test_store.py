"""The state store on SQLite and PostgreSQL: migrations, round trips, concurrency, errors."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dq_agent.errors import StoreError
from dq_agent.results import CheckResult, Finding, SuiteResult
from dq_agent.store import Store
from dq_agent.store.database import SERVER_POOL, alembic_config
from dq_agent.store.models import Base, BucketValue

TABLES = {
    "runs",
    "suite_runs",
    "check_results",
    "metrics",
    "schema_snapshots",
    "feedback",
    "bucket_values",
    "ledger",
    "snapshots",
    "incidents",
    "incident_events",
    "outbox",
    "restarts",
    "llm_calls",
    "seen_requests",
    "ended_sessions",
    "sign_in_failures",
    "run_queue",
    "slack_turns",
    "slack_clicks",
}
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _head() -> str:
    with sa.create_engine("sqlite://").connect() as conn:
        head = ScriptDirectory.from_config(alembic_config(conn)).get_current_head()
    assert head is not None
    return head


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def _versions(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))


def _model_diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def test_open_migrates_a_fresh_database_and_reopening_is_a_no_op(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert _tables(store.engine) == TABLES | {"alembic_version"}
        assert _versions(store.engine) == [_head()] == ["0014"]
        run_id = store.start_run(command="check", started_at=T0, as_of=None, suites=["a"])

    with Store.open(db_url) as store:
        assert _tables(store.engine) == TABLES | {"alembic_version"}
        assert _versions(store.engine) == ["0014"]
        assert [run["id"] for run in store.recent_runs()] == [run_id]


def test_models_and_migration_agree(db_url: str) -> None:
    with Store.open(db_url) as store:
        assert _model_diff(store.engine) == []


def test_downgrade_to_base_and_upgrade_again(db_url: str) -> None:
    with Store.open(db_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert _tables(store.engine) == {"alembic_version"}
        assert _versions(store.engine) == []

        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        assert _tables(store.engine) == TABLES | {"alembic_version"}
        assert _versions(store.engine) == ["0014"]
        assert _model_diff(store.engine) == []


def _orders(started_at: datetime, rows: int, as_of: datetime | None = None) -> SuiteResult:
    return SuiteResult(
        suite="orders",
        status="fail",
        started_at=started_at,
        duration_s=1.5,
        as_of=as_of,
        checks=(
            CheckResult(
                name="row_count",
                type="row_count",
                status="pass",
                severity="fail",
                message=f"{rows} rows",
                observed={"rows": Decimal(rows)},
                metrics={"rows": rows},
            ),
            CheckResult(
                name="email_not_null",
                type="not_null",
                status="fail",
                severity="fail",
                message="1 null email",
                observed={"nulls": 1},
                findings=(Finding(key={"id": 7}, column="email", observed=None),),
                metrics={"nulls": 1.0},
            ),
        ),
    )


def test_runs_and_metrics_round_trip(db_url: str) -> None:
    t1 = T0 + timedelta(hours=1)
    # A backfill: the second run measures an earlier point in time than the first.
    backfill_as_of = datetime(2024, 4, 30, 23, 0, tzinfo=timezone(timedelta(hours=2)))
    with Store.open(db_url) as store:
        first = store.start_run(command="check", started_at=T0, as_of=None, suites=["orders"])
        store.record_suite(first, _orders(T0, 10))
        store.record_suite(
            first,
            SuiteResult(
                suite="customers",
                status="error",
                started_at=T0,
                duration_s=0.25,
                error="source unreachable",
            ),
        )
        store.finish_run(first, status="fail", finished_at=T0 + timedelta(seconds=5))

        second = store.start_run(
            command="backfill", started_at=t1, as_of=backfill_as_of, suites=["orders"]
        )
        store.record_suite(second, _orders(t1, 8, as_of=backfill_as_of))

        assert store.recent_runs() == [
            {
                "id": second,
                "command": "backfill",
                "started_at": t1,
                "finished_at": None,
                "status": None,
                "suites": ["orders"],
            },
            {
                "id": first,
                "command": "check",
                "started_at": T0,
                "finished_at": T0 + timedelta(seconds=5),
                "status": "fail",
                "suites": ["orders"],
            },
        ]
        assert [run["id"] for run in store.recent_runs(limit=1)] == [second]

        history = store.metric_history("orders", "row_count", "rows")
        assert history == [(datetime(2024, 4, 30, 21, 0, tzinfo=UTC), 8.0), (T0, 10.0)]
        assert all(when.tzinfo is UTC for when, _ in history)
        assert store.metric_history("orders", "row_count", "rows", since=T0) == [(T0, 10.0)]
        assert store.metric_history("orders", "email_not_null", "nulls") == [
            (datetime(2024, 4, 30, 21, 0, tzinfo=UTC), 1.0),
            (T0, 1.0),
        ]
        assert store.metric_history("customers", "row_count", "rows") == []

        with store.engine.connect() as conn:
            suite_rows = conn.execute(
                sa.text(
                    "SELECT run_id, suite, status, duration_s, error FROM suite_runs ORDER BY id"
                )
            ).all()
            check_rows = conn.execute(
                sa.text(
                    "SELECT c.suite, c.name, c.status, c.message, c.observed, c.findings"
                    " FROM check_results c JOIN suite_runs s ON s.id = c.suite_run_id"
                    " WHERE s.run_id = :run ORDER BY c.id"
                ).columns(observed=sa.JSON, findings=sa.JSON),
                {"run": first},
            ).all()
        assert [tuple(row) for row in suite_rows] == [
            (first, "orders", "fail", 1.5, None),
            (first, "customers", "error", 0.25, "source unreachable"),
            (second, "orders", "fail", 1.5, None),
        ]
        assert [tuple(row) for row in check_rows] == [
            ("orders", "row_count", "pass", "10 rows", {"rows": 10}, []),
            (
                "orders",
                "email_not_null",
                "fail",
                "1 null email",
                {"nulls": 1},
                [
                    {
                        "key": {"id": 7},
                        "column": "email",
                        "observed": None,
                        "proposed": None,
                        "action": "report",
                        "confidence": None,
                        "reason": "",
                        "evidence": [],
                    }
                ],
            ),
        ]


def test_save_schema_inserts_only_on_change(db_url: str) -> None:
    v1 = [("id", "INTEGER"), ("email", "TEXT")]
    v2 = [("id", "BIGINT"), ("email", "TEXT")]
    with Store.open(db_url) as store:
        assert store.last_schema("orders") is None
        run_id = store.start_run(command="check", started_at=T0, as_of=None, suites=["orders"])

        assert store.save_schema("orders", v1, seen_at=T0, run_id=run_id) is True
        assert store.save_schema("orders", v1, seen_at=T0 + timedelta(hours=1)) is False
        assert store.save_schema("orders", v2, seen_at=T0 + timedelta(hours=2)) is True
        assert store.save_schema("orders", v2, seen_at=T0 + timedelta(hours=3)) is False
        assert store.save_schema("orders", v1, seen_at=T0 + timedelta(hours=4)) is True
        assert store.save_schema("customers", v1, seen_at=T0) is True

        assert store.last_schema("orders") == v1
        assert store.last_schema("customers") == v1
        with store.engine.connect() as conn:
            counts = conn.execute(
                sa.text(
                    "SELECT suite, COUNT(*) FROM schema_snapshots GROUP BY suite ORDER BY suite"
                )
            ).all()
        assert [tuple(row) for row in counts] == [("customers", 1), ("orders", 3)]


def test_last_schema_returns_the_newest_snapshot(db_url: str) -> None:
    with Store.open(db_url) as store:
        store.save_schema("orders", [("a", "TEXT")], seen_at=T0 + timedelta(hours=1))
        store.save_schema("orders", [("b", "TEXT")], seen_at=T0)
        assert store.last_schema("orders") == [("a", "TEXT")]


def test_datetimes_come_back_in_utc(db_url: str) -> None:
    local = datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    with Store.open(db_url) as store:
        store.start_run(command="check", started_at=local, as_of=None, suites=[])
        (run,) = store.recent_runs()
    assert run["started_at"] == datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
    assert run["started_at"].tzinfo is UTC


def test_unknown_run_is_a_store_error(db_url: str) -> None:
    with Store.open(db_url) as store:
        with pytest.raises(StoreError, match="no run 999"):
            store.finish_run(999, status="pass", finished_at=T0)
        with pytest.raises(StoreError, match="cannot record suite 'orders'"):
            store.record_suite(999, _orders(T0, 1))
        assert store.metric_history("orders", "row_count", "rows") == []


def test_concurrent_open_migrates_once(postgres_url: str) -> None:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            barrier.wait()
            Store.open(postgres_url).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    with Store.open(postgres_url) as store:
        assert _versions(store.engine) == ["0014"]
        assert _tables(store.engine) == TABLES | {"alembic_version"}


def test_postgres_reads_send_their_statements_alone(postgres_url: str) -> None:
    """A read on PostgreSQL runs outside a transaction block (each statement has a snapshot of
    its own, as at READ COMMITTED inside one), so it costs no BEGIN and COMMIT round trips;
    the pooled connection is back in a transaction for the next write."""
    probe = sa.text("SELECT now() = statement_timestamp()")  # equal: no BEGIN came before
    with Store.open(postgres_url) as store:
        with store._transaction("read", read=True) as session:
            alone = session.execute(probe).scalar()
        with store._transaction("write") as session:
            inside = session.execute(probe).scalar()
        assert store.newest_ids() == (0, 0)

    assert alone is True
    assert inside is False


def test_a_postgresql_store_keeps_its_connections_and_opens_no_more(postgres_url: str) -> None:
    """As many threads as the server's pool reading at once share the connections kept open:
    none is opened for one transaction and closed after (PostgreSQL would start a process for
    each), and the threads beyond wait for one."""
    threads = 40  # the ASGI server's thread pool
    with Store.open(postgres_url) as store:
        kept = store.engine.pool.checkedin()  # the one that migrated
        opened: list[object] = []
        sa.event.listen(store.engine, "connect", lambda *_args: opened.append(None))
        start = threading.Barrier(threads)
        errors: list[BaseException] = []

        def read() -> None:
            try:
                start.wait(timeout=60)
                for _ in range(25):
                    store.session_ended("no such session")
            except BaseException as exc:
                errors.append(exc)

        readers = [threading.Thread(target=read) for _ in range(threads)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join()

        assert errors == []
        assert opened
        assert kept + len(opened) == store.engine.pool.checkedin() <= SERVER_POOL


def _open_in_child(url: str, barrier: Barrier, outcomes: Queue[str]) -> None:
    barrier.wait(timeout=60)
    try:
        Store.open(url).close()
    except StoreError as exc:
        outcomes.put(str(exc))
    else:
        outcomes.put("ok")


def test_concurrent_processes_migrate_once(db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(2)
    outcomes: Queue[str] = context.Queue()
    processes = [
        context.Process(target=_open_in_child, args=(db_url, barrier, outcomes)) for _ in range(2)
    ]
    for process in processes:
        process.start()
    results = [outcomes.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    assert results == ["ok", "ok"]
    assert [process.exitcode for process in processes] == [0, 0]
    with Store.open(db_url) as store:
        assert _versions(store.engine) == ["0014"]
        assert _tables(store.engine) == TABLES | {"alembic_version"}


def test_unreachable_database_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        Store.open("postgresql+psycopg://nobody:s3cret@127.0.0.1:1/x")
    message = str(caught.value)
    assert "postgresql+psycopg://nobody:***@127.0.0.1:1/x" in message
    assert "s3cret" not in message


def test_unreachable_database_without_password_names_the_url() -> None:
    with pytest.raises(StoreError, match=r"postgresql\+psycopg://nobody@127\.0\.0\.1:1/x"):
        Store.open("postgresql+psycopg://nobody@127.0.0.1:1/x")


def test_sqlite_parent_directory_is_created(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deeper" / "state.sqlite"
    with Store.open(f"sqlite:///{path}") as store:
        assert _tables(store.engine) == TABLES | {"alembic_version"}
    assert path.is_file()


def test_sqlite_directory_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot open state store sqlite:///"):
        Store.open(f"sqlite:///{blocker / 'state.sqlite'}")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("not a url://user:hunter2@host/db", "not a url://user:***@host/db"),
        ("postgresql://user:hunter2@host:port/db", "postgresql://user:***@host:port/db"),
        ("nosuchdialect://user:hunter2@host/db", "nosuchdialect://user:***@host/db"),
    ],
)
def test_bad_url_is_a_store_error_without_the_password(url: str, shown: str) -> None:
    with pytest.raises(StoreError) as caught:
        Store.open(url)
    assert shown in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_feedback_latest_verdict_wins(db_url: str) -> None:
    day = datetime(2024, 4, 30, tzinfo=UTC)
    other = day - timedelta(days=1)
    with Store.open(db_url) as store:
        assert store.expected_buckets("orders", "volume") == set()
        store.add_feedback("orders", "volume", day, verdict="expected", by="pete", at=T0)
        store.add_feedback("orders", "volume", other, verdict="expected", by="pete", at=T0)
        store.add_feedback(
            "orders", "volume", other, verdict="unexpected", by="ana", at=T0 + timedelta(hours=1)
        )
        store.add_feedback("orders", "other_check", other, verdict="expected", by="x", at=T0)
        assert store.expected_buckets("orders", "volume") == {day}


def test_bucket_series_are_kept_and_the_newest_observation_counts(any_url: str) -> None:
    day1, day2 = datetime(2024, 4, 29, tzinfo=UTC), datetime(2024, 4, 30, tzinfo=UTC)

    def volume(started_at: datetime, series: dict[datetime, float]) -> SuiteResult:
        check = CheckResult("volume", "volume_anomaly", "pass", "fail", "ok", series=series)
        return SuiteResult("orders", "pass", started_at, 0.1, (check,))

    with Store.open(any_url) as store:
        run = store.start_run(command="check", started_at=T0, as_of=None, suites=["orders"])
        store.record_suite(run, volume(T0, {day1: 100.0, day2: 7.0}))
        later = T0 + timedelta(hours=5)
        store.record_suite(run, volume(later, {day2: 120.0}))
        assert store.bucket_history("orders", "volume") == {day1: 100.0, day2: 120.0}
        assert store.bucket_history("orders", "volume", since=day2) == {day2: 120.0}
        assert store.bucket_history("orders", "nope") == {}
        # A count taken earlier by the wall clock, recorded late, does not undo a newer one.
        store.record_suite(run, volume(T0 + timedelta(hours=1), {day2: 50.0}))
        assert store.bucket_history("orders", "volume") == {day1: 100.0, day2: 120.0}


def _bucket_rows(store: Store) -> list[tuple[datetime, float, datetime, datetime]]:
    query = sa.select(
        BucketValue.bucket, BucketValue.value, BucketValue.observed_at, BucketValue.judged_at
    ).order_by(BucketValue.bucket)
    with store.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def _hourly(started_at: datetime, last: datetime, *, as_of: datetime | None = None) -> SuiteResult:
    """A run of an hourly check whose window is the 24 hours up to ``last``, reaching back
    48 hours."""
    series = {last - timedelta(hours=h): 10.0 + h for h in range(24)}
    check = CheckResult(
        "volume",
        "volume_anomaly",
        "pass",
        "fail",
        "ok",
        series=series,
        series_reach=last - timedelta(hours=48),
    )
    return SuiteResult("orders", "pass", started_at, 0.1, (check,), as_of=as_of)


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def any_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL on every engine the state store runs on."""
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_repeated_runs_keep_each_bucket_once_and_let_go_of_what_no_window_reaches(
    any_url: str,
) -> None:
    with Store.open(any_url) as store:
        run = store.start_run(command="check", started_at=T0, as_of=None, suites=["orders"])
        for hour in range(100):
            now = T0 + timedelta(hours=hour)
            store.record_suite(run, _hourly(now, now - timedelta(hours=1)))

        rows = _bucket_rows(store)
        last = T0 + timedelta(hours=98)
        # 49 buckets: the last window's 24 and the 25 hours before it that a baseline of the
        # check still reaches (its month turns, say); not 100 runs × 24.
        assert [row[0] for row in rows] == [last - timedelta(hours=h) for h in reversed(range(49))]
        # Each as the run that saw it last counted it: the newest, 10 + its age then.
        assert rows[-1][1:] == (10.0, T0 + timedelta(hours=99), T0 + timedelta(hours=99))
        assert rows[-24][1] == 33.0


def test_a_backtest_records_the_moment_it_judged_as_of_and_prunes_nothing(
    any_url: str,
) -> None:
    now = T0 + timedelta(days=30)
    with Store.open(any_url) as store:
        run = store.start_run(command="check", started_at=now, as_of=None, suites=["orders"])
        store.record_suite(run, _hourly(now, now - timedelta(hours=1)))
        as_of = T0 + timedelta(days=2)
        later = now + timedelta(minutes=5)
        store.record_suite(run, _hourly(later, as_of - timedelta(hours=1), as_of=as_of))

        rows = _bucket_rows(store)
        assert len(rows) == 48  # the live window and the backtest's, both kept
        assert {(observed, judged) for _, _, observed, judged in rows[:24]} == {(later, as_of)}
        assert {(observed, judged) for _, _, observed, judged in rows[24:]} == {(now, now)}

        # The next live run lets go of the backtest's old buckets.
        store.record_suite(run, _hourly(now + timedelta(hours=1), now))
        assert len(_bucket_rows(store)) == 25


def test_the_upgrade_keeps_the_newest_copy_of_each_bucket(db_url: str) -> None:
    day = datetime(2024, 4, 29, tzinfo=UTC)
    with Store.open(db_url) as store:
        with store.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0012")
        with store.engine.begin() as conn:
            run = conn.execute(
                sa.text(
                    "INSERT INTO runs (command, started_at, suites) "
                    "VALUES ('check', :at, '[]') RETURNING id"
                ),
                {"at": T0},
            ).scalar_one()
            suite_runs = []
            for started, as_of in ((T0, None), (T0 + timedelta(hours=1), T0 - timedelta(days=1))):
                suite_runs.append(
                    conn.execute(
                        sa.text(
                            "INSERT INTO suite_runs (run_id, suite, status, started_at, "
                            "duration_s, as_of) VALUES (:run, 'orders', 'pass', :at, 0.1, :as_of) "
                            "RETURNING id"
                        ),
                        {"run": run, "at": started, "as_of": as_of},
                    ).scalar_one()
                )
            for suite_run, value, observed in (
                (suite_runs[1], 120.0, T0 + timedelta(hours=1)),
                (suite_runs[0], 100.0, T0),
                (suite_runs[0], 90.0, T0),
            ):
                conn.execute(
                    sa.text(
                        "INSERT INTO bucket_values (suite_run_id, suite, check_name, bucket, "
                        "value, observed_at) VALUES (:run, 'orders', 'volume', :bucket, :value, "
                        ":observed)"
                    ),
                    {"run": suite_run, "bucket": day, "value": value, "observed": observed},
                )
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")

        assert _bucket_rows(store) == [
            (day, 120.0, T0 + timedelta(hours=1), T0 - timedelta(days=1))
        ]
        assert _model_diff(store.engine) == []


def test_the_ledger_folds_events_into_corrections_and_detects_tampering(db_url: str) -> None:
    with Store.open(db_url) as store:
        first = store.ledger_append(
            event="intent",
            at=T0,
            suite="crm",
            check="fat_finger(Amount)",
            source="crm/Opportunity",
            key={"Id": "006A"},
            column="Amount",
            old=Decimal("10000000"),
            new=1_000_000,
            evidence=["seats × price = 1,000,000"],
            decided_by="rule",
            idempotency_key="k1",
        )
        store.ledger_append(
            event="applied",
            at=T0 + timedelta(seconds=1),
            correction_id=first,
            old=10_000_000,
            new=1_000_000,
            decided_by="rule",
        )
        second = store.ledger_append(
            event="proposed",
            at=T0,
            suite="crm",
            check="fat_finger(Amount)",
            source="crm/Opportunity",
            key={"Id": "006B"},
            column="Amount",
            old=5,
            new=50,
            decided_by="rule",
        )
        assert (first, second) == (1, 2)
        applied = store.correction(first)
        assert applied is not None
        assert (applied.status, applied.old, applied.new, applied.key) == (
            "applied",
            10000000,
            1000000,
            {"Id": "006A"},
        )
        assert applied.applied_at == T0 + timedelta(seconds=1)
        assert [c.status for c in store.corrections()] == ["pending", "applied"]
        assert store.verify_ledger() == []
        with pytest.raises(StoreError):
            store.ledger_append(
                event="intent",
                at=T0,
                suite="crm",
                check="c",
                source="s",
                key={},
                column="x",
                idempotency_key="k1",
            )
        with store.engine.begin() as conn:
            conn.execute(sa.text("UPDATE ledger SET new = '2000000' WHERE id = 2"))
        assert store.verify_ledger() == ["entry 2: content does not match its hash"]


def test_the_head_revision_is_read_without_alembic_and_matches_it() -> None:
    from dq_agent.store.database import head_revision

    assert head_revision() == _head()


def test_an_up_to_date_store_opens_without_importing_alembic(sqlite_url: str) -> None:
    import subprocess
    import sys

    Store.open(sqlite_url).close()  # created and migrated here
    probe = (
        "import sys\nfrom dq_agent.store import Store\n"
        f"Store.open({sqlite_url!r}).close()\nprint('alembic' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"


def test_threads_writing_to_sqlite_at_once_queue_for_each_other_not_for_the_file(
    tmp_path: Path,
) -> None:
    """A burst of writes from one process's threads (Slack clicks, each recorded before it
    is acknowledged): each waits its turn in the process, so none fails on the file's lock,
    even with a busy timeout far shorter than the burst."""
    at = datetime(2026, 12, 1, tzinfo=UTC)
    with Store.open(f"sqlite:///{tmp_path}/state.db?timeout=0.005") as store:
        failures: list[BaseException] = []
        start = threading.Barrier(8)

        def writer(n: int) -> None:
            start.wait()
            for i in range(40):
                try:
                    store.accept_click(
                        f"{n}-{i}", "{}", at=at, until=at, claim="me", lease_until=at
                    )
                except StoreError as exc:
                    failures.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM slack_clicks")).scalar() == 320


def test_processes_writing_to_one_sqlite_file_take_turns(tmp_path: Path) -> None:
    """Two stores on one file stand for two processes (each flock is its own): a write waits
    while the other holds the turn, and goes on once it is given up; past SQLite's busy
    timeout it goes on without it, and SQLite's own lock decides."""
    at = datetime(2026, 12, 1, tzinfo=UTC)
    url = f"sqlite:///{tmp_path}/state.db"

    def click(store: Store, key: str) -> threading.Thread:
        thread = threading.Thread(
            target=store.accept_click,
            args=(key, "{}"),
            kwargs={"at": at, "until": at, "claim": "me", "lease_until": at},
        )
        thread.start()
        return thread

    with Store.open(url) as one, Store.open(url) as other:
        with one._writing:
            waiting = click(other, "waits")
            waiting.join(0.3)
            assert waiting.is_alive()
        waiting.join(10)
        assert not waiting.is_alive()
        with Store.open(url + "?timeout=0.05") as impatient, one._writing:
            gone_on = click(impatient, "goes on")
            gone_on.join(10)
            assert not gone_on.is_alive()
        with one.engine.connect() as conn:
            keys = conn.execute(sa.text("SELECT key FROM slack_clicks ORDER BY id")).scalars()
            assert list(keys) == ["waits", "goes on"]
    assert (tmp_path / "state.db-writers").exists()


def test_the_outbox_is_filtered_by_kind_and_by_any_of_several_statuses(db_url: str) -> None:
    """A long-lived incident's first messages are found in the query, not among every reply
    and update it has gathered."""
    rows = [
        {"key": "root-a", "kind": "root", "incident_id": 1, "recipient": "a", "text": "t"},
        {"key": "root-b", "kind": "root", "incident_id": 1, "recipient": "b", "text": "t"},
        {"key": "reply-a", "kind": "reply", "incident_id": 1, "recipient": "a", "text": "t"},
        {"key": "root-c", "kind": "root", "incident_id": 2, "recipient": "c", "text": "t"},
    ]
    with Store.open(db_url) as store:
        assert store.outbox_add(rows, at=T0) == 4
        [b] = [m for m in store.outbox() if m.key == "root-b"]
        store.outbox_update(b.id, status="cancelled")
        live = store.outbox(incident_id=1, kind="root", status=("pending", "sent"))
        cancelled = store.outbox(incident_id=1, kind="root", status="cancelled")
        roots = store.outbox(kind="root")
        waiting = store.outbox_waiting()

    assert waiting == 3  # all but the cancelled one
    assert [m.key for m in live] == ["root-a"]
    assert [m.key for m in cancelled] == ["root-b"]
    assert [m.key for m in roots] == ["root-a", "root-b", "root-c"]


def test_a_message_is_claimed_by_one_sender_on_every_engine(any_url: str) -> None:
    """One statement where the database returns what it updated (SQLite, PostgreSQL), an
    update and a read where it cannot (MariaDB): the same claims either way."""
    lease = timedelta(minutes=5)
    message = {"key": "k", "kind": "root", "incident_id": 7, "recipient": "a", "text": "hi"}
    with Store.open(any_url) as store:
        store.outbox_add([message], at=T0)
        [pending] = store.outbox()
        mine = store.outbox_claim(pending.id, by="a", at=T0, lease=lease)
        assert mine is not None
        assert (mine.key, mine.claimed_by, mine.incident_id) == ("k", "a", 7)
        assert mine.claimed_until is not None
        assert mine.claimed_until.replace(tzinfo=UTC) == T0 + lease
        assert store.outbox_claim(pending.id, by="b", at=T0, lease=lease) is None
        lapsed = T0 + lease + timedelta(seconds=1)
        taken = store.outbox_claim(pending.id, by="b", at=lapsed, lease=lease)
        assert taken is not None and taken.claimed_by == "b"
        store.outbox_update(pending.id, status="sent")
        assert store.outbox_claim(pending.id, by="c", at=lapsed + 2 * lease, lease=lease) is None
