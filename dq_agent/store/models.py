"""The state store's tables, as SQLAlchemy typed declarative models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp that is always written and read as UTC.

    SQLite keeps no offset, so values are converted to UTC before writing and UTC is
    attached again on reading. Naive datetimes are taken to be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: Any | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {type(value).__name__}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# Fixed constraint names so the hand-written migration and the models name things alike
# on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class Run(Base):
    """One invocation of a command (``check``, a daemon cycle, ...)."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    command: Mapped[str] = mapped_column(sa.String(64))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    as_of: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(sa.String(16))
    suites: Mapped[list[str]] = mapped_column(sa.JSON)


class SuiteRun(Base):
    """One suite's outcome within a run."""

    __tablename__ = "suite_runs"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id"), index=True)
    suite: Mapped[str] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))
    started_at: Mapped[datetime]
    duration_s: Mapped[float] = mapped_column(sa.Float)
    error: Mapped[str | None] = mapped_column(sa.Text)
    as_of: Mapped[datetime | None]


class CheckResultRow(Base):
    """One check's outcome within a suite run."""

    __tablename__ = "check_results"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite_run_id: Mapped[int] = mapped_column(sa.ForeignKey("suite_runs.id"), index=True)
    suite: Mapped[str] = mapped_column(sa.String(255), index=True)
    name: Mapped[str] = mapped_column(sa.String(255))
    type: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    severity: Mapped[str] = mapped_column(sa.String(16))
    message: Mapped[str] = mapped_column(sa.Text)
    observed: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    findings: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)


class Metric(Base):
    """One numeric measurement taken by a check, kept as history."""

    __tablename__ = "metrics"
    __table_args__ = (
        sa.Index("ix_metrics_series", "suite", "check_name", "metric", "measured_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite_run_id: Mapped[int] = mapped_column(sa.ForeignKey("suite_runs.id"), index=True)
    suite: Mapped[str] = mapped_column(sa.String(255))
    check_name: Mapped[str] = mapped_column(sa.String(255))
    metric: Mapped[str] = mapped_column(sa.String(255))
    value: Mapped[float | None] = mapped_column(sa.Float)
    measured_at: Mapped[datetime]


class SchemaSnapshot(Base):
    """The columns of a suite's table as seen at one moment; stored only when they change."""

    __tablename__ = "schema_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite: Mapped[str] = mapped_column(sa.String(255), index=True)
    columns: Mapped[list[list[str]]] = mapped_column(sa.JSON)
    seen_at: Mapped[datetime]
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id"), index=True)


class Feedback(Base):
    """A person's verdict on one bucket of a time-bucketed check (e.g. "expected")."""

    __tablename__ = "feedback"
    __table_args__ = (sa.Index("ix_feedback_check", "suite", "check_name", "bucket"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite: Mapped[str] = mapped_column(sa.String(255))
    check_name: Mapped[str] = mapped_column(sa.String(255))
    bucket: Mapped[datetime]
    verdict: Mapped[str] = mapped_column(sa.String(16))
    note: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime]


class BucketValue(Base):
    """A time-bucketed value (rows per day, ...): one row per bucket of a check, as the run
    that saw it last (by the wall clock) counted it."""

    __tablename__ = "bucket_values"
    __table_args__ = (
        sa.Index("uq_bucket_values_series", "suite", "check_name", "bucket", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # The run that counted it; the count outlives the run when run history is thinned.
    suite_run_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("suite_runs.id", ondelete="SET NULL"), index=True
    )
    suite: Mapped[str] = mapped_column(sa.String(255))
    check_name: Mapped[str] = mapped_column(sa.String(255))
    bucket: Mapped[datetime]
    value: Mapped[float] = mapped_column(sa.Float)
    # When it was counted (the wall clock), and the moment the run judged as of (``--as-of``,
    # else the same).
    observed_at: Mapped[datetime]
    judged_at: Mapped[datetime]


class LedgerEntry(Base):
    """One event in the life of a correction; rows are only ever added, and hash-chained.

    A correction is the group of entries sharing ``correction_id`` (the id of its first
    entry); its status is that of its latest entry.
    """

    __tablename__ = "ledger"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    correction_id: Mapped[int] = mapped_column(sa.Integer, index=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(sa.String(16))
    suite: Mapped[str] = mapped_column(sa.String(255), index=True)
    check_name: Mapped[str] = mapped_column(sa.String(255))
    source: Mapped[str] = mapped_column(sa.String(255))
    record_key: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    column: Mapped[str] = mapped_column(sa.String(255))
    old: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    new: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    evidence: Mapped[list[str]] = mapped_column(sa.JSON)
    decided_by: Mapped[str] = mapped_column(sa.String(255))
    detail: Mapped[str] = mapped_column(sa.Text)
    # Unique per intent, so a retried or replayed run cannot write the same change twice.
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(128), unique=True)
    prev_hash: Mapped[str] = mapped_column(sa.String(64))
    hash: Mapped[str] = mapped_column(sa.String(64))


class Snapshot(Base):
    """What a run read from an operational source, kept (bounded) so it can be restored."""

    __tablename__ = "snapshots"
    __table_args__ = (sa.Index("ix_snapshots_suite_taken", "suite", "taken_at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite: Mapped[str] = mapped_column(sa.String(255))
    taken_at: Mapped[datetime]
    row_count: Mapped[int] = mapped_column(sa.Integer)
    # The source's own shape: for a worksheet, its rows of cells, header first.
    content: Mapped[list[Any]] = mapped_column(sa.JSON)


class Incident(Base):
    """One problem (suite, check, dataset) that people are told about until it is fixed."""

    __tablename__ = "incidents"
    __table_args__ = (sa.Index("ix_incidents_problem", "suite", "check_name", "dataset"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite: Mapped[str] = mapped_column(sa.String(255))
    check_name: Mapped[str] = mapped_column(sa.String(255))
    dataset: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(16))
    owners: Mapped[list[str]] = mapped_column(sa.JSON)
    summary: Mapped[str] = mapped_column(sa.Text)
    failures: Mapped[int] = mapped_column(sa.Integer)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
    snoozed_until: Mapped[datetime | None]
    check_type: Mapped[str] = mapped_column(sa.String(64), server_default="")
    # The latest failure as the check reported it (message, observed, a few findings).
    evidence: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # Who hears about it, in order: each step is a list of e-mails or #channels.
    chain: Mapped[list[list[str]] | None] = mapped_column(sa.JSON)
    # How far along the chain it has gone, and the unanswered nudges at that step.
    level: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    nudges: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    last_nudged_at: Mapped[datetime | None]
    # How it was resolved (how, by whom, how long it took), for similar incidents later.
    resolution: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class IncidentEvent(Base):
    """Something that happened to an incident: opened, failed again, snoozed, resolved..."""

    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"), index=True)
    at: Mapped[datetime]
    event: Mapped[str] = mapped_column(sa.String(32))
    by: Mapped[str] = mapped_column(sa.String(255))
    detail: Mapped[str] = mapped_column(sa.Text)


class OutboxMessage(Base):
    """A message to a person, recorded before it is sent so a crash neither loses nor repeats it.

    ``key`` is the idempotency key of the event it tells about; it also travels with the
    message (Slack message metadata), so after a crash the sender can find out whether the
    message went out before marking it sent.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("key"),
        sa.Index("ix_outbox_status", "status"),
        sa.Index("ix_outbox_incident_id", "incident_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    kind: Mapped[str] = mapped_column(sa.String(16))  # root | reply | update | fyi | digest
    incident_id: Mapped[int | None] = mapped_column(sa.Integer)
    correction_id: Mapped[int | None] = mapped_column(sa.Integer)
    recipient: Mapped[str] = mapped_column(sa.String(255))  # an e-mail or a #channel
    text: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16))  # pending | sent | cancelled | failed
    created_at: Mapped[datetime]
    due_at: Mapped[datetime]
    attempted_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(sa.Integer)
    channel: Mapped[str | None] = mapped_column(sa.String(64))
    ts: Mapped[str | None] = mapped_column(sa.String(32))
    error: Mapped[str | None] = mapped_column(sa.Text)
    # Who is sending it, until when: a sender claims a message before calling Slack, so two
    # senders never send the same one; a dead sender's claim lapses.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128))
    claimed_until: Mapped[datetime | None]


class Restart(Base):
    """One pipeline restart: a target of a suite, started once per recovery of that suite.

    ``key`` (suite, recovery, target) is unique, so a recovery never restarts a pipeline twice;
    it is also the idempotency key the target is started with.
    """

    __tablename__ = "restarts"
    __table_args__ = (sa.UniqueConstraint("key"), sa.Index("ix_restarts_state", "state"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    batch: Mapped[str] = mapped_column(sa.String(255))  # the recovery: all targets together
    suite: Mapped[str] = mapped_column(sa.String(255))
    target: Mapped[int] = mapped_column(sa.Integer)  # index in the suite's restart: list
    label: Mapped[str] = mapped_column(sa.String(255))
    incidents: Mapped[list[int]] = mapped_column(sa.JSON)  # held until the pipeline is verified
    # pending | queued | running | success | failed | cancelled | verified
    state: Mapped[str] = mapped_column(sa.String(16))
    run_id: Mapped[str | None] = mapped_column(sa.String(255))
    url: Mapped[str | None] = mapped_column(sa.Text)
    detail: Mapped[str] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime]
    next_try_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class LlmCall(Base):
    """One request to the language model: what for, and the tokens it used."""

    __tablename__ = "llm_calls"
    __table_args__ = (sa.Index("ix_llm_calls_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    incident_id: Mapped[int | None] = mapped_column(sa.Integer)
    purpose: Mapped[str] = mapped_column(sa.String(32))  # classify | draft | review
    model: Mapped[str] = mapped_column(sa.String(128))
    input_tokens: Mapped[int] = mapped_column(sa.Integer)
    output_tokens: Mapped[int] = mapped_column(sa.Integer)
    outcome: Mapped[str] = mapped_column(sa.String(32))  # ok | error | budget


class SeenRequest(Base):
    """A request already acted on (a Slack signature, a Socket Mode envelope id), remembered
    while it could come again, so a replay is refused by every replica and after a restart."""

    __tablename__ = "seen_requests"
    __table_args__ = (sa.Index("ix_seen_requests_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    expires_at: Mapped[datetime]


class EndedSession(Base):
    """A dashboard session signed out before its cookie expires: its cookie is refused."""

    __tablename__ = "ended_sessions"

    session_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    expires_at: Mapped[datetime]


class SignInFailure(Base):
    """A wrong token at the dashboard's sign-in, per address and per e-mail: for throttling."""

    __tablename__ = "sign_in_failures"
    __table_args__ = (sa.Index("ix_sign_in_failures_subject_at", "subject", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(sa.String(255))
    at: Mapped[datetime]


class QueuedRun(Base):
    """A suite run that is due: claimed by one replica at a time for a lease, renewed while
    it runs; a dead replica's claim lapses and another replica runs it. At most one unfinished
    run per suite (late runs coalesce, and a suite never runs on two replicas at once)."""

    __tablename__ = "run_queue"
    __table_args__ = (
        sa.UniqueConstraint("suite", "due_at"),
        sa.Index(
            "ix_run_queue_one_open_per_suite",
            "suite",
            unique=True,
            sqlite_where=sa.text("finished_at IS NULL"),
            postgresql_where=sa.text("finished_at IS NULL"),
        ),
        sa.Index("ix_run_queue_due", "finished_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    suite: Mapped[str] = mapped_column(sa.String(255))
    due_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(sa.String(16))  # schedule | retry
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128))
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(sa.Integer)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    status: Mapped[str | None] = mapped_column(sa.String(16))


class SlackTurns(Base):
    """When a Slack channel's recent posts went (seconds since the epoch, oldest first), so
    every replica paces its posts to the channel by the same turns."""

    __tablename__ = "slack_turns"

    channel: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    turns: Mapped[list[float]] = mapped_column(sa.JSON)


class SlackClick(Base):
    """A Slack click, recorded before it is acknowledged: held by one worker at a time for a
    lease (renewed while it waits and while it is acted on), released when its holder stops,
    taken over when the lease lapses, and marked done once acted on. Done clicks are kept a
    day, then pruned."""

    __tablename__ = "slack_clicks"
    __table_args__ = (
        sa.UniqueConstraint("key"),
        sa.Index("ix_slack_clicks_done_at", "done_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # The request's signature, or the Socket Mode envelope's id (as in seen_requests).
    key: Mapped[str] = mapped_column(sa.String(255))
    payload: Mapped[str] = mapped_column(sa.Text)  # Slack's JSON payload, as received
    received_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128))
    lease_until: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
