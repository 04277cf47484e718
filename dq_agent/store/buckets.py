"""The bucket history the time-bucketed checks learn from, and owners' feedback on buckets."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dq_agent.errors import StoreError
from dq_agent.results import CheckResult, SuiteResult
from dq_agent.store.database import Database
from dq_agent.store.models import (
    BucketValue,
    CheckResultRow,
    Feedback,
    Metric,
    SuiteRun,
)

# Rows per INSERT: SQLite allows 32,766 bound parameters in one statement (7 per row here).
_UPSERT_BATCH = 1_000


def _newer_counts(dialect: str, rows: list[dict[str, Any]]) -> sa.Insert:
    """INSERT ``rows`` into ``bucket_values``; a bucket already there takes a row's values
    when the row was counted no earlier (by the wall clock) than what it holds."""
    changing = ("suite_run_id", "value", "judged_at", "observed_at")
    if dialect in ("postgresql", "sqlite"):
        from sqlalchemy.dialects import postgresql, sqlite

        insert = (postgresql if dialect == "postgresql" else sqlite).insert(BucketValue)
        conflicting = insert.values(rows)
        return cast(
            sa.Insert,
            conflicting.on_conflict_do_update(
                index_elements=["suite", "check_name", "bucket"],
                set_={name: conflicting.excluded[name] for name in changing},
                where=conflicting.excluded.observed_at >= BucketValue.observed_at,
            ),
        )
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects import mysql

        duplicate = mysql.insert(BucketValue).values(rows)
        newer = duplicate.inserted.observed_at >= BucketValue.observed_at
        # MySQL assigns in order: observed_at last, so that every test sees the old one.
        return cast(
            sa.Insert,
            duplicate.on_duplicate_key_update(
                [
                    (
                        name,
                        sa.case(
                            (newer, duplicate.inserted[name]), else_=BucketValue.__table__.c[name]
                        ),
                    )
                    for name in changing
                ]
            ),
        )
    raise StoreError(f"the state store cannot run on {dialect}")


def keep_series(
    session: Session, suite_run_id: int, result: SuiteResult, check: CheckResult
) -> None:
    """Each bucket of ``check.series`` once: a bucket seen before takes the newer count
    (by the wall clock: a backtest counts a finished bucket as a live run does, and later
    counts include late rows) when it differs; the same count again is not written. A live
    run lets go of the buckets its baselines no longer reach; a backtest (``as_of``)
    leaves them for the live runs."""
    series = (BucketValue.suite == result.suite, BucketValue.check_name == check.name)
    known: dict[datetime, float] = {}
    if check.series:
        buckets = BucketValue.bucket.between(min(check.series), max(check.series))
        query = sa.select(BucketValue.bucket, BucketValue.value).where(*series, buckets)
        known = {bucket: value for bucket, value in session.execute(query)}
    values = [
        {
            "suite_run_id": suite_run_id,
            "suite": result.suite,
            "check_name": check.name,
            "bucket": bucket,
            "value": float(value),
            "observed_at": result.started_at,
            "judged_at": result.as_of or result.started_at,
        }
        for bucket, value in check.series.items()
        if known.get(bucket) != float(value)
    ]
    dialect = session.get_bind().dialect.name
    for first in range(0, len(values), _UPSERT_BATCH):
        session.execute(_newer_counts(dialect, values[first : first + _UPSERT_BATCH]))
    if check.series_reach is not None and result.as_of is None:
        session.execute(
            sa.delete(BucketValue)
            .where(*series, BucketValue.bucket < check.series_reach)
            .execution_options(synchronize_session=False)
        )


class BucketRepository(Database):
    """Each bucket a time-bucketed check counted, once (the newest count), and the buckets
    owners marked expected or not."""

    def add_feedback(
        self,
        suite: str,
        check: str,
        bucket: datetime,
        *,
        verdict: str,
        by: str,
        at: datetime,
        note: str = "",
    ) -> None:
        """Record a person's verdict on one bucket of a time-bucketed check."""
        row = Feedback(
            suite=suite,
            check_name=check,
            bucket=bucket,
            verdict=verdict,
            note=note,
            created_by=by,
            created_at=at,
        )
        with self._transaction(f"record feedback on {suite}/{check}") as session:
            session.add(row)

    def expected_buckets(self, suite: str, check: str) -> set[datetime]:
        """Bucket starts (UTC) whose latest verdict is "expected"."""
        query = (
            sa.select(Feedback.bucket, Feedback.verdict)
            .where(Feedback.suite == suite, Feedback.check_name == check)
            .order_by(Feedback.created_at, Feedback.id)
        )
        with self._transaction(f"read feedback on {suite}/{check}", read=True) as session:
            latest = {row.bucket: row.verdict for row in session.execute(query)}
        return {bucket for bucket, verdict in latest.items() if verdict == "expected"}

    def bucket_history(
        self, suite: str, check: str, *, since: datetime | None = None
    ) -> dict[datetime, float]:
        """The newest recorded value of every bucket (UTC start → value)."""
        query = sa.select(BucketValue.bucket, BucketValue.value).where(
            BucketValue.suite == suite, BucketValue.check_name == check
        )
        if since is not None:
            query = query.where(BucketValue.bucket >= since)
        with self._transaction(f"read bucket history of {suite}/{check}", read=True) as session:
            return {row.bucket: row.value for row in session.execute(query)}

    def judged_buckets(self, suite: str, check: str, *, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` buckets a time-bucketed check judged in live runs, oldest first.

        Each is the newest run's verdict on the bucket: ``bucket`` (UTC start, from the
        ``bucket`` the check records in its observed values), ``judged_at`` (that run's start),
        ``status``, ``message``, ``observed``, ``findings``; ``runs`` (how many runs judged the
        bucket), ``first_judged_at`` (the first one's start) and ``metrics``: each metric's
        newest value among those runs, so that a run that recorded none (the bucket was marked
        expected since) leaves what an earlier run measured.
        """
        verdicts = (
            sa.select(CheckResultRow, SuiteRun.started_at)
            .join(SuiteRun, SuiteRun.id == CheckResultRow.suite_run_id)
            .where(
                CheckResultRow.suite == suite,
                CheckResultRow.name == check,
                SuiteRun.as_of.is_(None),
            )
            .order_by(SuiteRun.started_at.desc(), CheckResultRow.id.desc())
            .execution_options(yield_per=200)
        )
        found: dict[datetime, dict[str, Any]] = {}
        run_buckets: dict[int, datetime] = {}
        since: datetime | None = None
        with self._transaction(f"read the verdicts of {suite}/{check}", read=True) as session:
            # Newest first: the first verdict on a bucket is the one that counts. Later runs
            # judge later buckets, so once ``limit`` buckets are found, older rows are older.
            rows = session.execute(verdicts)
            for row, started_at in rows:
                stamp = row.observed.get("bucket") if isinstance(row.observed, dict) else None
                if not isinstance(stamp, str):
                    continue  # an error: no bucket was judged
                bucket = datetime.fromisoformat(stamp).astimezone(UTC)
                if bucket not in found:
                    if len(found) == limit:
                        break
                    found[bucket] = {
                        "bucket": bucket,
                        "judged_at": started_at,
                        "status": row.status,
                        "message": row.message,
                        "observed": row.observed,
                        "findings": row.findings,
                        "runs": 0,
                        "metrics": {},
                    }
                found[bucket]["runs"] += 1
                found[bucket]["first_judged_at"] = started_at
                run_buckets[row.suite_run_id] = bucket
                since = started_at
            rows.close()
            if since is None:
                return []
            metrics = (
                sa.select(Metric.suite_run_id, Metric.metric, Metric.value)
                .join(SuiteRun, SuiteRun.id == Metric.suite_run_id)
                .where(
                    Metric.suite == suite,
                    Metric.check_name == check,
                    SuiteRun.as_of.is_(None),
                    SuiteRun.started_at >= since,
                )
                .order_by(SuiteRun.started_at.desc(), Metric.id.desc())
            )
            for run_id, name, value in session.execute(metrics):
                if run_id in run_buckets:
                    found[run_buckets[run_id]]["metrics"].setdefault(name, value)
        return [found[bucket] for bucket in sorted(found)]
