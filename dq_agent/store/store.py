"""The state store: every repository on one engine and one migration history.

Each aggregate has a repository of its own (runs and metrics, bucket history and feedback,
snapshots, incidents and their events, the outbox, the ledger, restarts, Slack clicks,
dashboard sign-ins, LLM calls), each a :class:`~dq_agent.store.database.Database` over the
same engine. :class:`Store` is all of them at once, for a process that does everything (a
run, the daemon, the dashboard); code that needs one aggregate names its repository.
"""

from __future__ import annotations

from dq_agent.store.buckets import BucketRepository
from dq_agent.store.clicks import ClickRepository
from dq_agent.store.incidents import IncidentRepository
from dq_agent.store.ledger import LedgerRepository
from dq_agent.store.llm_calls import LlmCallRepository
from dq_agent.store.outbox import OutboxRepository
from dq_agent.store.restarts import RestartRepository
from dq_agent.store.runs import RunRepository
from dq_agent.store.sessions import SessionRepository
from dq_agent.store.snapshots import SnapshotRepository


class Store(
    RunRepository,
    BucketRepository,
    SnapshotRepository,
    IncidentRepository,
    OutboxRepository,
    LedgerRepository,
    RestartRepository,
    ClickRepository,
    SessionRepository,
    LlmCallRepository,
):
    """Run, metric and schema history, incidents, messages, clicks and the ledger, in a SQLite
    or PostgreSQL database."""
