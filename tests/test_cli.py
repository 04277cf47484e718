"""The command line: output shapes, exit codes, and the demo, as a user runs them."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dq_agent.cli import main
from tests.sources import load_orders, order_rows, project_for
from tests.test_volume import daily_counts, event_rows, events_table

REPO = Path(__file__).resolve().parents[1]

SUITE = """
suite: {name}
owner: ops@acme.com
source: {{connector: warehouse, table: orders}}
key: [id]
checks:
{checks}
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def orders_project(tmp_path: Path, **suites: str) -> Path:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    rows = order_rows(10, newest=datetime.now(UTC) - timedelta(minutes=5))
    rows[3]["status"] = None
    load_orders(url, rows)
    return project_for(
        tmp_path / "project",
        url,
        {name: SUITE.format(name=name, checks=checks) for name, checks in suites.items()},
    )


PASSING = "  - row_count\n  - freshness: {column: updated_at, max_age: 1h}"
WARNING = "  - expect_column_values_to_not_be_null: {column: status, severity: warn}"
FAILING = "  - row_count: {min: 100}"


def test_check_json_has_the_documented_shape(tmp_path: Path) -> None:
    project = orders_project(
        tmp_path, nulls="  - expect_column_values_to_not_be_null: {column: status}"
    )
    code, out, _ = invoke("check", "--project", str(project), "--format", "json")
    assert code == 2
    doc = json.loads(out)
    [suite] = doc["suites"]
    assert set(suite) == {"suite", "status", "started_at", "duration_s", "checks"}
    assert (suite["suite"], suite["status"]) == ("nulls", "fail")
    datetime.fromisoformat(suite["started_at"])
    assert isinstance(suite["duration_s"], float)
    [check] = suite["checks"]
    assert set(check) == {"name", "type", "status", "severity", "message", "observed", "findings"}
    assert check["name"] == "expect_column_values_to_not_be_null(status)"
    assert check["type"] == "expect_column_values_to_not_be_null"
    assert (check["status"], check["severity"]) == ("fail", "fail")
    assert check["message"] == "1 of 10 status values null (10.00%)"
    assert check["observed"] == {
        "element_count": 10,
        "unexpected_count": 1,
        "unexpected_percent": 10.0,
    }
    assert check["findings"] == [
        {
            "key": {"id": 4},
            "column": "status",
            "observed": None,
            "proposed": None,
            "action": "report",
            "confidence": None,
            "reason": "status is null",
            "evidence": [],
        }
    ]


def test_exit_codes_follow_the_worst_status(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING, b_warn=WARNING, c_fail=FAILING)
    assert invoke("check", "a_pass", "--project", str(project))[0] == 0
    assert invoke("check", "b_warn", "--project", str(project))[0] == 1
    assert invoke("check", "a_pass", "b_warn", "--project", str(project))[0] == 1
    assert invoke("check", "c_fail", "--project", str(project))[0] == 2
    assert invoke("check", "--project", str(project))[0] == 2


def test_an_unknown_suite_cannot_run(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    code, _, err = invoke("check", "nope", "--project", str(project))
    assert code == 3
    assert "unknown suite 'nope'; available: a_pass" in err


def test_unreachable_source_exits_3_but_the_other_suites_report(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    (project / "connectors" / "down.yml").write_text(
        "type: sql\nurl: postgresql+psycopg://nobody@127.0.0.1:1/x\n"
    )
    (project / "checks" / "down.yml").write_text(
        "suite: down\nsource: {connector: down, table: t}\nchecks: [row_count]\n"
    )
    code, out, _ = invoke("check", "--project", str(project), "--format", "json")
    assert code == 3
    statuses = {s["suite"]: s["status"] for s in json.loads(out)["suites"]}
    assert statuses == {"a_pass": "pass", "down": "error"}


def test_a_password_in_the_url_query_is_never_shown_or_stored(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    (project / "connectors" / "down.yml").write_text(
        "type: sql\nurl: 'postgresql+psycopg://nobody@127.0.0.1:1/x"
        "?password=S3cr3t-pw&sslpassword=S3cr3t-ssl&application_name=dq'\n"
    )
    (project / "checks" / "down.yml").write_text(
        "suite: down\nsource: {connector: down, table: t}\nchecks: [row_count]\n"
    )
    code, out, err = invoke("check", "down", "--project", str(project), "--format", "json")
    assert code == 3
    [suite] = json.loads(out)["suites"]
    assert suite["error"].startswith(
        "cannot reach postgresql+psycopg://nobody@127.0.0.1:1/x"
        "?application_name=dq&password=***&sslpassword=***: "
    )
    assert "S3cr3t" not in out + err
    code, out, err = invoke("run", "down", "--project", str(project))
    assert code == 3
    assert "S3cr3t" not in out + err

    rows = []
    state = sqlite3.connect(project / "state.db")
    for (table,) in state.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        rows += state.execute(f'SELECT * FROM "{table}"').fetchall()
    state.close()
    assert any("cannot reach postgresql" in repr(row) for row in rows)
    assert not any("S3cr3t" in repr(row) for row in rows)


def test_a_broken_suite_is_reported_and_the_others_still_run(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING, b_bad="  - row_count: {min: lots}")
    code, out, err = invoke("check", "--project", str(project), "--format", "json")
    assert code == 3
    assert "checks/b_bad.yml:6:22: checks[0].row_count.min: expected a valid integer" in err
    suites = {s["suite"]: s for s in json.loads(out)["suites"]}
    assert suites["a_pass"]["status"] == "pass"
    assert suites["b_bad"]["status"] == "error"
    assert suites["b_bad"]["error"].startswith("invalid configuration: ")


def test_a_broken_suite_is_told_once_in_the_text_report(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING, b_bad="  - row_count: {min: lots}")
    code, out, err = invoke("check", "--project", str(project))
    assert code == 3
    told = "checks/b_bad.yml:6:22: checks[0].row_count.min: expected a valid integer"
    assert (out + err).count(told) == 1
    assert "b_bad  ERROR" in out


def test_as_of_is_validated_and_reported(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    code, _, err = invoke("check", "--project", str(project), "--as-of", "yesterday")
    assert code == 2  # click's usage error
    assert "expected an ISO-8601 timestamp" in err
    as_of = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    code, out, _ = invoke("check", "--project", str(project), "--as-of", as_of, "--format", "json")
    [suite] = json.loads(out)["suites"]
    assert suite["as_of"] == as_of
    assert suite["status"] == "fail"  # the rows are from the last ten hours: none yet then
    assert code == 2


def test_text_output_is_a_table_with_a_summary(tmp_path: Path) -> None:
    project = orders_project(tmp_path, b_warn=WARNING)
    code, out, _ = invoke("check", "--project", str(project))
    assert code == 1
    assert "b_warn  WARN" in out
    assert "expect_column_values_to_not_be_null(status)" in out
    assert "1 of 10 status values null (10.00%)" in out
    assert "↳ id=4: status=None" in out
    assert out.rstrip().endswith("1 suite: 1 warn")


def test_validate_reports_every_error_and_exits_3(tmp_path: Path) -> None:
    project = orders_project(
        tmp_path, a_pass=PASSING, b_bad="  - row_count: {min: lots}\n  - rowcount"
    )
    code, out, err = invoke("validate", "--project", str(project))
    assert code == 3
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].endswith(
        "checks/b_bad.yml:6:22: checks[0].row_count.min: expected a valid integer, unable to parse string as an integer, got 'lots'"
    )
    assert "checks/b_bad.yml:7:5: checks[1].rowcount: unknown check type 'rowcount'" in lines[1]
    assert lines[-1] == "2 errors in 1 file"


def test_validate_a_good_project(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    assert invoke("validate", "--project", str(project)) == (0, "OK: 1 suite, 1 connector\n", "")


def test_validate_a_project_named_before_the_command_or_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    ok = (0, "OK: 1 suite, 1 connector\n", "")
    assert invoke("--project", str(project), "validate") == ok
    monkeypatch.setenv("DQ_AGENT_PROJECT", str(project))
    assert invoke("validate") == ok
    # After the command it wins over both.
    code, _, err = invoke("--project", str(project), "validate", "--project", str(tmp_path))
    assert code == 3
    assert "not a dq-agent project" in err


def test_a_missing_project_folder_says_so_and_where_projects_are(tmp_path: Path) -> None:
    code, out, err = invoke("check", "--project", str(tmp_path / "nowhere"))
    assert code == 3
    assert out == ""
    assert err.splitlines()[0] == (
        f"{tmp_path / 'nowhere'}: no such project folder; run dq-agent in a project folder "
        "(dq-agent.yml, connectors/, checks/), or give --project DIR or DQ_AGENT_PROJECT=DIR; "
        "`dq-agent demo --dir DIR` writes the worked example to DIR to start from"
    )


def test_the_demo_writes_the_example_only_to_an_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = invoke("demo", "--dir", str(tmp_path))
    assert code == 3
    assert "is not an empty folder: --dir needs a new or empty one" in " ".join(err.split())
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_the_demo_tells_the_running_example(tmp_path: Path) -> None:
    # The example shipped in the package, written where the user asked, is the repository's.
    code, out, err = invoke("demo", "--dir", str(tmp_path / "example"), "--format", "json")
    assert code == 0, err
    example = tmp_path / "example"
    for part in ("dq-agent.yml", "checks", "connectors"):
        shipped = sorted(p.relative_to(example) for p in (example / part).rglob("*.yml"))
        assert shipped == sorted(p.relative_to(REPO) for p in (REPO / part).rglob("*.yml"))
    assert (example / "dq-agent.yml").read_text() == (REPO / "dq-agent.yml").read_text()
    assert (example / ".dq-agent" / "demo-warehouse.db").exists()
    suites = {s["suite"]: s for s in json.loads(out)["suites"]}
    assert {name: s["status"] for name, s in suites.items()} == {
        "crm_opportunities": "fail",
        "eu_forecast_dec_v1": "pass",
        "forecasts_agg": "fail",
        "payments": "fail",
        "revenue_daily": "pass",
        "us_forecast_dec_v1": "fail",
        "us_forecast_sheet": "fail",
    }
    sheet = {c["name"]: c for c in suites["us_forecast_sheet"]["checks"]}
    assert sheet["row_count"]["message"] == "the source is empty"
    us = {c["name"]: c for c in suites["us_forecast_dec_v1"]["checks"]}
    assert us["row_count"]["message"] == "the source is empty"
    crm = {c["name"]: c for c in suites["crm_opportunities"]["checks"]}
    [slip] = crm["fat_finger(Amount)"]["findings"]
    assert (slip["observed"], slip["proposed"], slip["action"]) == (
        10000000,
        1000000,
        "auto_correct",
    )
    assert crm["volume_anomaly(CreatedDate)"]["status"] == "pass"
    # The Yen that started arriving yesterday under the same columns.
    paid = {c["name"]: c for c in suites["payments"]["checks"]}
    shift = paid["distribution_shift(local_value)"]
    assert shift["status"] == "fail"
    # About 150× (Yen per dollar), read from the data, which depends on the day it runs.
    assert re.search(
        r"are about 1[2-8]0× larger than usual; they have currency = JPY \(", shift["message"]
    )
    assert paid["column_anomaly(local_value)"]["status"] == "pass"
    agg = {c["name"]: c for c in suites["forecasts_agg"]["checks"]}
    assert agg["freshness(refreshed_at)"]["status"] == "fail"
    assert agg["freshness(refreshed_at)"]["message"].startswith(
        "stale: newest refreshed_at is 3d2h old"
    )
    # Then the Slack side, on a simulated clock: a reminder, Pete's fix, the undo.
    told = " ".join(err.split())  # as printed, but for the terminal's line wrapping
    sheet = "[DM @pete · us_forecast_sheet / row_count]"
    paid = "[DM @finance-data · payments / distribution_shift(local_value)]"
    for line in (
        "slack › DM @pete: 🚨 us_forecast_sheet / row_count on finance_sheets/us_forecast_dec_v1: "
        "the source is empty",
        f"↳ {sheet} @pete reminder 1: still failing (the source is empty).",
        f"↳ {sheet} ✅ Resolved: airflow DAG forecasts_agg ran; us_forecast_dec_v1, forecasts_agg "
        "pass. Closing incident #1.",
        # The Yen: convert_yen tried on a branch, shown to Finance, applied on a click.
        "• apply the runbook fix convert_yen to ",
        " rows of payments, as verified on a branch (correction 2)",
        "◦ distribution_shift(local_value): fail → pass",
        "◦ revenue_daily (verify): pass → pass",
        f"↳ {paid} Fix applied: finance-data@acme.com approved correction 2 (verified on a "
        "branch, then published)",
        f"↳ {paid} ✅ Resolved: airflow DAG revenue_daily ran; revenue_daily passes. "
        "Closing incident #3.",
        "incidents: 4 opened, 4 resolved · corrections: 2 (applied, reverted) · pipeline "
        "restarts: 2 (verified, verified)",
        "slack › DM @dana: I changed Amount on Id=006Dn0000040000042 from 10,000,000 to 1,000,000",
        "↳ [DM @dana · changed Amount] Undone by dana@acme.com: Amount is 10,000,000 again.",
    ):
        assert line in told
    # The example validates cleanly too, where it was written.
    assert invoke("validate", "--project", str(example))[0] == 0


def events_project(tmp_path: Path, changed: dict[date, int]) -> Path:
    url = f"sqlite:///{tmp_path / 'events.db'}"
    load_orders(url, event_rows(daily_counts(changed)), events_table())
    suite = "suite: events\nsource: {connector: warehouse, table: events}\n"
    suite += "checks:\n  - volume_anomaly: {timestamp_column: created_at}\n"
    return project_for(tmp_path / "project", url, {"events": suite})


AS_OF = "2026-11-24T12:00:00Z"
VOLUME = "volume_anomaly(created_at)"


def test_an_owner_marks_a_day_expected_and_the_monitor_accepts_it(tmp_path: Path) -> None:
    project = events_project(tmp_path, {date(2026, 11, 23): 23})
    code, out, _ = invoke("check", "--project", str(project), "--as-of", AS_OF)
    assert code == 2
    assert "2026-11-23: 23 rows, 88% below baseline 200" in out

    code, out, err = invoke(
        "feedback",
        "events",
        VOLUME,
        "2026-11-23",
        "expected",
        "--by",
        "pete",
        "--project",
        str(project),
    )
    assert (code, err) == (0, "")
    assert out == f"events / {VOLUME}: bucket 2026-11-23T00:00:00+00:00 marked expected by pete\n"

    code, out, _ = invoke("check", "--project", str(project), "--as-of", AS_OF, "--format", "json")
    [check] = json.loads(out)["suites"][0]["checks"]
    assert (code, check["status"]) == (0, "pass")
    assert "expected" in check["message"]


def test_feedback_names_what_is_wrong(tmp_path: Path) -> None:
    project = events_project(tmp_path, {})
    code, _, err = invoke(
        "feedback", "events", "nope", "2026-11-23", "expected", "--project", str(project)
    )
    assert code == 3
    assert f"no time-bucketed check 'nope' in suite 'events'; available: {VOLUME}" in err
    code, _, err = invoke(
        "feedback", "events", VOLUME, "soon", "expected", "--project", str(project)
    )
    assert code == 3
    assert "expected a date or timestamp like 2026-11-23, got 'soon'" in err


def test_backtest_replays_every_day_and_says_which_would_have_alerted(tmp_path: Path) -> None:
    project = events_project(tmp_path, {date(2026, 11, 18): 520, date(2026, 11, 20): 0})
    code, out, _ = invoke(
        "backtest",
        "events",
        "--from",
        "2026-11-16",
        "--to",
        "2026-11-23",
        "--project",
        str(project),
        "--format",
        "json",
    )
    assert code == 0
    doc = json.loads(out)
    [check] = doc["checks"]
    assert check["name"] == VOLUME
    assert [b["bucket"][:10] for b in check["buckets"]] == [f"2026-11-{d}" for d in range(16, 23)]
    alerted = [b["bucket"][:10] for b in check["buckets"] if b["status"] != "pass"]
    assert alerted == ["2026-11-18", "2026-11-20"]
    assert check["alerts"] == 2

    code, out, _ = invoke(
        "backtest",
        "events",
        "--from",
        "2026-11-16",
        "--to",
        "2026-11-23",
        "--project",
        str(project),
    )
    assert code == 0
    assert out.rstrip().endswith("2 of 7 buckets would have alerted")


def test_backtest_refuses_a_suite_without_time_bucketed_checks(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    code, _, err = invoke(
        "backtest",
        "a_pass",
        "--from",
        "2026-11-01",
        "--to",
        "2026-11-02",
        "--project",
        str(project),
    )
    assert code == 3
    assert (
        "suite 'a_pass' has no time-bucketed checks "
        "(volume_anomaly, distribution_shift, column_anomaly, new_values)"
    ) in err


def _free_ports(count: int) -> int:
    """The first of ``count`` adjacent free ports on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
        probes: list[socket.socket] = []
        try:
            for offset in range(count):
                probes.append(socket.socket())
                probes[-1].bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
        return port
    raise AssertionError(f"no {count} adjacent free ports")


def test_sandbox_serves_the_emulators_until_terminated(tmp_path: Path) -> None:
    seed = tmp_path / "seed.yml"
    seed.write_text(
        "salesforce:\n  objects:\n    Opportunity:\n      fields: {Name: string, Amount: currency}\n"
        "      records: [{Name: Acme, Amount: 10000000}]\n"
        "gsheets:\n  spreadsheets:\n    finance: {key: fin, sheets: {US: [[region], [CA]]}}\n"
    )
    base = _free_ports(5)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dq_agent.cli",
            "sandbox",
            "--seed",
            str(seed),
            "--port-base",
            str(base),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info == {
            "salesforce": {"instance_url": f"http://127.0.0.1:{base}", "session_id": "sandbox"},
            "gsheets": {
                "base_url": f"http://127.0.0.1:{base + 1}",
                "spreadsheets": {"finance": "fin"},
            },
            "slack": {
                "base_url": f"http://127.0.0.1:{base + 2}/api/",
                "token": "xoxb-sandbox",
                "signing_secret": "sandbox-signing-secret",
            },
            "airflow": {
                "base_url": f"http://127.0.0.1:{base + 3}",
                "token": "sandbox-airflow-token",
                "username": "admin",
                "password": "admin",
            },
            "anthropic": {
                "base_url": f"http://127.0.0.1:{base + 4}",
                "api_key": "sandbox-anthropic-key",
            },
        }
        with urllib.request.urlopen(f"http://127.0.0.1:{base}/_sandbox/state", timeout=5) as reply:
            state = json.load(reply)
        assert [r["Amount"] for r in state["objects"]["Opportunity"]] == [10000000]
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


def test_the_demo_can_leave_the_dashboard_up(tmp_path: Path) -> None:
    # From a folder that is no project: the example is played in a temporary folder.
    command = [sys.executable, "-m", "dq_agent.cli", "demo"]
    process = subprocess.Popen(
        [*command, "--ui", "--ui-listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert process.stderr is not None
        before: list[str] = []
        for line in process.stderr:
            if line.startswith("dashboard on "):
                announced = line
                break
            before.append(line)
        played = re.search(r"the example project is played in (\S+) and", "".join(before))
        assert played, before
        assert (Path(played[1]) / ".dq-agent" / "demo-warehouse.db").exists()
        found = re.search(
            r"on (http://\S+)/ — sign in as any of (.+) with the token (\S+)", announced
        )
        assert found, announced
        base, people, token = found[1], found[2].split(", "), found[3]
        assert "dana@acme.com" in people
        # People only, each once: no channel, no blank name.
        assert all(re.fullmatch(r"[a-z.-]+@acme\.com", p) for p in people), people
        assert len(people) == len(set(people))
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        form = opener.open(f"{base}/login", timeout=10).read().decode()
        nonce = re.search(r'name="csrf" value="([^"]+)"', form)
        assert nonce
        data = urllib.parse.urlencode(
            {"csrf": nonce[1], "email": "dana@acme.com", "token": token}
        ).encode()
        overview = opener.open(f"{base}/login", data=data, timeout=10).read().decode()
        assert "<h1>Overview</h1>" in overview
        ledger = opener.open(f"{base}/corrections", timeout=10).read().decode()
        # The story's correction, undone by Dana.
        assert "006Dn0000040000042" in ledger and "reverted" in ledger
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        assert process.stderr is not None
        process.stderr.close()
    assert code == 0
    assert not Path(played[1]).exists()
    assert list(tmp_path.iterdir()) == []


def test_every_option_says_what_it_does_in_plain_text() -> None:
    def commands(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from commands(sub, f"{path} {name}".strip())

    silent = [
        f"{path} {option.opts[0]}"
        for path, command in commands(main, "")
        for option in command.params
        if isinstance(option, click.Option) and not option.help
    ]
    assert silent == []
    # Help is read in a terminal: no reStructuredText markup.
    assert [path for path, command in commands(main, "") if "``" in (command.help or "")] == []


def test_the_dashboard_warns_when_nobody_can_sign_in(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    command = [sys.executable, "-m", "dq_agent.cli", "ui", "--project", str(project)]
    process = subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        warning = process.stderr.readline().rstrip("\n")
        # Ctrl-C while it is still starting: it stops as cleanly as once it serves.
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    assert warning == (
        "warning: no ui.users and no ui.trusted_header in dq-agent.yml: nobody can sign in. "
        "Make a token's hash with dq-agent hash-token and list people under ui.users."
    )


def test_a_signal_another_thread_receives_still_stops_a_serving_command() -> None:
    from dq_agent.cli.common import stop_on_signals as _stop_on_signals
    from dq_agent.cli.common import wait_until as _until

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    stop = _stop_on_signals()
    try:
        # The kernel may hand Ctrl-C to any thread: here, to a helper thread. Python runs the
        # handler in the main thread, once that runs again.
        def interrupt_me() -> None:
            time.sleep(0.2)  # while the main thread waits
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)

        helper = threading.Thread(target=interrupt_me)
        watchdog = threading.Timer(10, stop.set)  # a wait that never wakes ends the test
        started = time.monotonic()
        helper.start()
        watchdog.start()
        _until(stop)
        waited = time.monotonic() - started
        helper.join()
        watchdog.cancel()
        assert waited < 5
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_the_clock_is_set_with_now_or_dq_agent_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DQ_AGENT_NOW", "")  # whatever the commands set is undone after
    project = orders_project(tmp_path, fresh=PASSING)
    assert invoke("check", "--project", str(project))[0] == 0
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=3)
    code, out, _ = invoke(
        "--now", later.isoformat(), "check", "--project", str(project), "--format", "json"
    )
    assert code == 2  # three hours on, the newest row is older than the hour allowed
    [suite] = json.loads(out)["suites"]
    assert later <= datetime.fromisoformat(suite["started_at"]) < later + timedelta(minutes=1)
    assert "freshness(updated_at)" in [c["name"] for c in suite["checks"] if c["status"] == "fail"]

    monkeypatch.setenv(
        "DQ_AGENT_NOW", (later + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    )
    assert invoke("run", "--project", str(project))[0] == 2
    _, listed, _ = invoke("incidents", "list", "--project", str(project), "--format", "json")
    [incident] = json.loads(listed)
    opened = datetime.fromisoformat(incident["opened_at"])
    assert later + timedelta(days=1) <= opened < later + timedelta(days=1, minutes=1)

    code, _, err = invoke("--now", "tomorrow", "check", "--project", str(project))
    assert code == 3
    assert "DQ_AGENT_NOW='tomorrow' is not a moment with its zone" in err
