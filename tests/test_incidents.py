"""Incidents: one per problem, updated by repeated failures, resolved when the data is right."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent.agent import run_cycle
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.store import Store
from dq_agent.store.incidents import IncidentMoved
from tests.sources import load_orders, order_rows, project_for

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PETE = "pete@acme.com"
SUITE = """
suite: us_forecast
owner: pete@acme.com
source: {connector: warehouse, table: orders}
checks:
  - row_count: {min: 1}
  - freshness: {column: updated_at, max_age: 26h, owner: data-eng@acme.com}
"""


def cycle(root: Path, at: datetime) -> Any:
    project = load_project(root, env={})
    with Store.open(project.state_url) as store:
        return run_cycle(project, ["us_forecast"], store, RunOptions(clock=lambda: at))


def test_an_empty_table_opens_one_incident_that_repeats_resolve_and_reopen(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, [])
    root = project_for(tmp_path / "p", url, {"s": SUITE})

    first = cycle(root, NOW)
    # An empty table is one problem: its freshness fails too, but is told under the row count.
    assert [str(n) for n in first.notices] == [
        "incident #1 opened → pete@acme.com: us_forecast / row_count: the source is empty",
    ]
    with Store.open(f"sqlite:///{root}/state.db") as store:
        evidence = store.incident(1)["evidence"]  # type: ignore[index]
    assert evidence["also"] == ["freshness(updated_at)"]
    for hours in (1, 2, 3):  # three more failing runs: the same incident, updated
        again = cycle(root, NOW + timedelta(hours=hours))
        assert [(n.incident_id, n.event) for n in again.notices] == [(1, "failed_again")]

    # Pete restores the data, but an old copy: the table is stale, a problem of its own,
    # for the freshness check's owner.
    load_orders(url, order_rows(3, newest=NOW - timedelta(hours=30)))
    fixed = cycle(root, NOW + timedelta(hours=4))
    assert [str(n) for n in fixed.notices] == [
        "incident #1 resolved → pete@acme.com: us_forecast / row_count: the check passes again",
        "incident #2 opened → data-eng@acme.com: us_forecast / freshness(updated_at): "
        "stale: newest updated_at is 34h old, over the 26h limit",
    ]
    load_orders(url, order_rows(3, newest=NOW + timedelta(hours=4)))
    assert [(n.incident_id, n.event) for n in cycle(root, NOW + timedelta(hours=5)).notices] == [
        (2, "resolved")
    ]
    assert cycle(root, NOW + timedelta(hours=5, minutes=30)).notices == []

    load_orders(url, [])
    broken = cycle(root, NOW + timedelta(hours=6))
    assert [(n.incident_id, n.event) for n in broken.notices] == [(1, "reopened")]

    listed = CliRunner().invoke(
        main, ["incidents", "list", "--project", str(root), "--format", "json"]
    )
    first_incident = json.loads(listed.stdout)[-1]
    assert {k: first_incident[k] for k in ("id", "suite", "check", "status", "failures")} == {
        "id": 1,
        "suite": "us_forecast",
        "check": "row_count",
        "status": "notified",
        "failures": 1,
    }
    # As a table for people, like the corrections; piped, nothing is wrapped or cut.
    table = CliRunner().invoke(main, ["incidents", "list", "--project", str(root)])
    assert [line.split()[:6] for line in table.stdout.splitlines()] == [
        ["id", "status", "suite", "check", "failures", "opened"],
        ["2", "resolved", "us_forecast", "freshness(updated_at)", "1", "2026-11-24"],
        ["1", "notified", "us_forecast", "row_count", "1", "2026-11-24"],
    ]
    assert (
        table.stdout.splitlines()[1]
        .rstrip()
        .endswith("stale: newest updated_at is 34h old, over the 26h limit")
    )
    shown = CliRunner().invoke(
        main, ["incidents", "show", "1", "--project", str(root), "--format", "json"]
    )
    assert [e["event"] for e in json.loads(shown.stdout)["events"]] == [
        "opened",
        "notified",
        "failed_again",
        "failed_again",
        "failed_again",
        "resolved",
        "reopened",
        "notified",
    ]


def test_owners_snooze_and_resolve_by_hand(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, [])
    root = project_for(tmp_path / "p", url, {"s": SUITE})
    cycle(root, NOW)
    runner = CliRunner()
    stranger = runner.invoke(
        main,
        ["incidents", "resolve", "1", "--by", "mallory@acme.com", "--project", str(root)],
    )
    assert (stranger.exit_code, stranger.stderr) == (
        3,
        "error: Only the owners and escalation list of us_forecast may resolve incident #1 "
        "(pete@acme.com).\n",
    )
    snoozed = runner.invoke(
        main,
        ["incidents", "snooze", "1", "--for", "4h", "--by", PETE, "--project", str(root)],
    )
    assert snoozed.exit_code == 0
    assert snoozed.stdout.startswith("incident #1: snoozed by pete@acme.com until ")
    bad = runner.invoke(
        main, ["incidents", "snooze", "1", "--for", "soon", "--by", PETE, "--project", str(root)]
    )
    assert bad.exit_code == 2
    assert "expected a duration like 26h, got 'soon'" in bad.stderr
    listed = json.loads(
        runner.invoke(
            main, ["incidents", "list", "--project", str(root), "--format", "json"]
        ).stdout
    )
    assert {i["id"]: i["status"] for i in listed} == {1: "snoozed"}
    resolved = runner.invoke(
        main, ["incidents", "resolve", "1", "--by", "Pete@acme.com", "--project", str(root)]
    )
    assert resolved.stdout == "incident #1: resolved by Pete@acme.com\n"
    with Store.open(f"sqlite:///{root}/state.db") as store:
        assert [(e["event"], e["by"]) for e in store.incident(1)["events"]] == [  # type: ignore[index]
            ("opened", "agent"),
            ("notified", "agent"),
            ("snoozed", PETE),
            ("resolved", "Pete@acme.com"),
        ]
    missing = runner.invoke(
        main, ["incidents", "resolve", "9", "--by", PETE, "--project", str(root)]
    )
    assert (missing.exit_code, missing.stderr) == (3, "error: no incident 9\n")


def test_a_reminder_planned_before_the_incident_resolved_is_not_recorded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, [])
    root = project_for(tmp_path / "p", url, {"s": SUITE})
    cycle(root, NOW)
    with Store.open(f"sqlite:///{root}/state.db") as store:
        seen = store.incident(1, events=False)  # a replica's follow-up reads it …
        assert seen is not None and seen["status"] == "notified"
        load_orders(url, order_rows(3, newest=NOW))
        cycle(root, NOW + timedelta(hours=4))  # … another replica's cycle resolves it …
        with pytest.raises(IncidentMoved):  # … so the reminder it planned is dropped
            store.nudged(1, at=NOW, level=0, nudges=1, event="nudged", detail="x", read=seen)
        after = store.incident(1)
        assert after is not None and after["status"] == "resolved"
        assert "nudged" not in [e["event"] for e in after["events"]]


REFUSED = "postgresql+psycopg://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def point_at(root: Path, url: str) -> None:
    (root / "connectors" / "warehouse.yml").write_text(f"type: sql\nurl: '{url}'\n")


def test_a_brief_outage_tells_nobody_and_a_lasting_one_is_told_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3, newest=NOW))
    root = project_for(tmp_path / "p", url, {"s": SUITE})
    point_at(root, REFUSED)
    for minutes in (0, 5, 10):  # connection refused for ten minutes: under notify_after (15m)
        down = cycle(root, NOW + timedelta(minutes=minutes))
        assert [r.status for r in down.results] == ["error"]
        assert down.notices == []
    point_at(root, url)
    assert cycle(root, NOW + timedelta(minutes=15)).notices == []  # back: nothing to say
    with Store.open(f"sqlite:///{root}/state.db") as store:
        assert store.incidents() == []

    load_orders(url, order_rows(3, newest=NOW + timedelta(hours=1)))
    point_at(root, REFUSED)
    assert cycle(root, NOW + timedelta(hours=1)).notices == []
    lasting = cycle(root, NOW + timedelta(hours=1, minutes=20))  # down for 20 minutes now
    [opened] = lasting.notices
    assert (opened.event, opened.check, opened.owners) == ("opened", "(source)", (PETE,))
    assert "cannot reach" in opened.summary
    again = cycle(root, NOW + timedelta(hours=1, minutes=25))
    assert [(n.incident_id, n.event) for n in again.notices] == [
        (opened.incident_id, "failed_again")
    ]
    point_at(root, url)
    back = cycle(root, NOW + timedelta(hours=1, minutes=30))
    assert [(n.incident_id, n.event) for n in back.notices] == [(opened.incident_id, "resolved")]


def test_notify_after_counts_cycles_and_a_failure_that_cannot_pass_is_told_at_once(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3, newest=NOW))
    root = project_for(tmp_path / "p", url, {"s": SUITE})
    settings = root / "dq-agent.yml"
    settings.write_text(settings.read_text() + "source_errors: {notify_after: 2 cycles}\n")
    point_at(root, REFUSED)
    assert cycle(root, NOW).notices == []
    assert [n.event for n in cycle(root, NOW + timedelta(minutes=1)).notices] == ["opened"]

    other = project_for(tmp_path / "q", url, {"s": SUITE.replace("table: orders", "table: ordres")})
    [missing] = cycle(other, NOW).notices  # a missing table does not come back by itself
    assert (missing.event, missing.check) == ("opened", "(source)")
    assert "not found" in missing.summary


COLUMNS_SUITE = """
suite: us_forecast
owner: pete@acme.com
source: {connector: warehouse, table: orders}
checks:
  - schema: {columns: [id, updated_at]}
  - row_count: {min: 1}
  - expect_column_values_to_not_be_null: {column: amount}
  - expect_column_values_to_be_between: {column: amount, min_value: 0}
"""


def test_a_dropped_column_is_one_schema_incident_that_resolves_when_it_is_back(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'w.db'}"
    load_orders(url, order_rows(3, newest=NOW))
    root = project_for(tmp_path / "p", url, {"s": COLUMNS_SUITE})
    assert cycle(root, NOW).notices == []  # the baseline: every column there

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # someone drops amount upstream
        conn.execute(sa.text("ALTER TABLE orders DROP COLUMN amount"))
    engine.dispose()
    dropped = cycle(root, NOW + timedelta(hours=1))
    [notice] = dropped.notices
    assert (notice.event, notice.check) == ("opened", "schema")
    assert "missing amount (read by expect_column_values_to_not_be_null(amount), " in notice.summary
    [result] = dropped.results
    skipped = [c.message for c in result.checks if c.name.endswith("(amount)")]
    assert [m.split(";")[0] for m in skipped] == [
        "skipped: column 'amount' not found in orders"
    ] * 2
    with Store.open(f"sqlite:///{root}/state.db") as store:
        [incident] = store.incidents()
        assert incident["evidence"]["also"] == [
            "expect_column_values_to_not_be_null(amount)",
            "expect_column_values_to_be_between(amount)",
        ]
    still = cycle(root, NOW + timedelta(hours=2))  # still gone: the same incident, nothing new
    assert [(n.incident_id, n.event) for n in still.notices] == [
        (notice.incident_id, "failed_again")
    ]

    load_orders(url, order_rows(3, newest=NOW + timedelta(hours=3)))  # amount is back
    back = cycle(root, NOW + timedelta(hours=3))
    assert [(n.incident_id, n.event) for n in back.notices] == [(notice.incident_id, "resolved")]
    [result] = back.results
    assert result.status == "pass"  # not "added since the last run: amount"
    with Store.open(f"sqlite:///{root}/state.db") as store:
        assert len(store.incidents()) == 1
