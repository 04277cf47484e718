"""Rule-based triage of failures, and the memory of how past incidents ended."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.escalate.messages import memory
from dq_agent.results import CheckResult, SuiteResult
from dq_agent.store import Store
from dq_agent.triage import classify, classify_error
from tests.sources import NOW, load_orders, order_rows, project_for


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("canceling statement due to statement timeout", "transient"),
        ("Salesforce query: REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded", "transient"),
        ("Google Sheets: HTTP 503 The service is currently unavailable", "transient"),
        ("server closed the connection unexpectedly", "transient"),
        ('password authentication failed for user "dq"', "infrastructure"),
        ("Salesforce: INVALID_SESSION_ID: Session expired or invalid", "infrastructure"),
        ("permission denied for table orders", "infrastructure"),
        ('could not translate host name "db.internal" to address', "infrastructure"),
        ("(sqlite3.OperationalError) no such table: orders", "code"),
        ('column "amount" does not exist', "code"),
        ("key column(s) id not in orders; available: order_id, amount", "code"),
        ("something nobody has seen before", None),
    ],
)
def test_errors_are_classified_by_what_they_say(message: str, kind: str | None) -> None:
    assert classify_error(message).kind == kind


def test_an_unknown_error_the_source_calls_transient_is_transient() -> None:
    assert classify_error("the ground shook", transient=True).kind == "transient"
    assert classify_error("the ground shook", transient=False).kind is None


def _suite(tmp_path: Path, runbook: str = "") -> object:
    root = project_for(
        tmp_path,
        f"sqlite:///{tmp_path / 'w.db'}",
        {
            "s": f"""
    suite: orders
    source: {{connector: warehouse, table: orders}}
    checks: [row_count, {{schema: {{columns: [id]}}}}]
    runbook: |
      {runbook}
    """
        },
    )
    return load_project(root, env={}).suites["orders"]


def test_checks_are_data_problems_and_a_drifted_schema_is_an_upstream_change(
    tmp_path: Path,
) -> None:
    suite = _suite(tmp_path)
    result = SuiteResult("orders", "fail", NOW, 0.1)
    empty = CheckResult("row_count", "row_count", "fail", "fail", "the source is empty")
    drift = CheckResult(
        "schema",
        "schema",
        "fail",
        "fail",
        "retyped since the last run: amount integer→string",
        observed={"drift": {"added": [], "removed": [], "retyped": ["amount integer→string"]}},
    )
    assert classify(suite, result, empty).kind == "data"  # type: ignore[arg-type]
    assert classify(suite, result, drift).kind == "schema_change"  # type: ignore[arg-type]
    assert classify(suite, result, drift).action == (  # type: ignore[arg-type]
        "tell the source's owners: columns were added, removed or retyped upstream"
    )


def test_a_shift_in_what_values_mean_is_a_semantic_change_never_corrected(
    tmp_path: Path,
) -> None:
    suite = _suite(tmp_path)
    result = SuiteResult("orders", "fail", NOW, 0.1)
    for kind in ("distribution_shift", "column_anomaly", "new_values", "accepted_values"):
        shifted = CheckResult(kind, kind, "fail", "fail", "local_value shifted")
        triage = classify(suite, result, shifted)  # type: ignore[arg-type]
        assert triage.kind == "semantic_change"
        assert triage.action.startswith("never corrected: tell the source's owners")


def test_the_runbook_overrides_the_rules(tmp_path: Path) -> None:
    suite = _suite(tmp_path, runbook='when "lock wait": transient')
    failed = SuiteResult("orders", "error", NOW, 0.1, error="Lock wait exceeded; try again")
    triage = classify(suite, failed)  # type: ignore[arg-type]
    assert (triage.kind, triage.reason) == (
        "transient",
        "the runbook says 'lock wait' is transient: Lock wait exceeded; try again",
    )


SUITE = """
suite: orders
owner: pete@acme.com
source: {connector: warehouse, table: orders}
checks:
  - row_count: {min: 1}
"""


def test_an_incident_remembers_how_it_ended_and_the_next_one_hears_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    root = project_for(tmp_path / "p", url, {"s": SUITE})

    def cycle(at: datetime) -> None:
        loaded = load_project(root, env={})
        with Store.open(loaded.state_url) as store:
            run_cycle(loaded, ["orders"], store, RunOptions(clock=lambda: at))

    load_orders(url, [])
    cycle(NOW)
    with Store.open(f"sqlite:///{root}/state.db") as store:
        incident = store.incident(1)
        assert incident is not None
        assert incident["evidence"]["triage"] == {
            "kind": "data",
            "reason": "the source is empty",
            "action": "correct clear slips in the source; ask the data's owner about the rest",
        }
        store.set_incident_status(
            1, "acknowledged", at=NOW + timedelta(minutes=30), by="pete@acme.com"
        )
    load_orders(url, order_rows(3, newest=NOW + timedelta(minutes=39)))
    cycle(NOW + timedelta(minutes=40))
    with Store.open(f"sqlite:///{root}/state.db") as store:
        resolved = store.incident(1)
        assert resolved is not None
        assert resolved["resolution"] == {
            "how": "pete@acme.com fixed it",
            "by": "pete@acme.com",
            "at": (NOW + timedelta(minutes=40)).isoformat(),
            "minutes_open": 40,
            "minutes_after_first_nudge": 40,
        }

    load_orders(url, [])  # Pete pastes over the data again a week later
    cycle(NOW + timedelta(days=7))
    with Store.open(f"sqlite:///{root}/state.db") as store:
        again = store.incident(1)
        assert again is not None and again["status"] == "notified"
        line = memory(again, store.similar(again))
    assert (
        line
        == f"Last time ({NOW:%b} {NOW.day}) pete@acme.com fixed it, 40 min after the first message."
    )


def test_similar_incidents_prefer_the_same_check_then_the_same_dataset() -> None:
    incident = {"id": 9, "suite": "orders", "check": "row_count", "dataset": "w/orders"}
    similar = [
        {
            "id": 4,
            "suite": "orders_v2",
            "check": "row_count",
            "how": "the data came back",
            "at": datetime(2026, 11, 3, 9, 0, tzinfo=UTC).isoformat(),
            "minutes_after_first_nudge": 150,
        }
    ]
    assert memory(incident, similar) == (
        "Last time on orders_v2 / row_count (Nov 3) the data came back, 2h30 after the first "
        "message."
    )
    assert memory(incident, []) == ""
