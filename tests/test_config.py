"""A user's YAML becomes typed models, or every error is reported with file:line:col."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from dq_agent.config import FreshnessArgs, load_project, parse_duration
from dq_agent.config.durations import format_duration
from dq_agent.config.yamlfile import MAX_BYTES
from tests.helpers import make_project
from tests.test_cli import PASSING, invoke, orders_project

WAREHOUSE = """
type: sql
url: sqlite:///warehouse.db
"""


def issues_of(root: Path, env: dict[str, str] | None = None) -> list[str]:
    return [str(i) for i in load_project(root, env=env or {}).issues]


def test_a_valid_project_becomes_frozen_typed_models(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "forecast": """
            suite: us_forecast
            owner: pete@acme.com
            schedule: "*/30 * * * *"
            source: {connector: warehouse, table: us_forecast_dec_v1}
            key: [id]
            checks:
              - row_count: {min: 1}
              - freshness: {column: updated_at, max_age: 26h, severity: warn}
              - expect_column_values_to_not_be_null: {column: amount, mostly: 0.95}
            """
        },
    )
    project = load_project(tmp_path, env={})
    assert project.issues == ()
    suite = project.suites["us_forecast"]
    assert suite.owner == ("pete@acme.com",)
    assert suite.timezone == "UTC"
    assert suite.max_findings == 20
    assert suite.source.table == "us_forecast_dec_v1"
    names = [c.name for c in suite.checks]
    assert names == [
        "row_count",
        "freshness(updated_at)",
        "expect_column_values_to_not_be_null(amount)",
    ]
    freshness = suite.checks[1]
    assert isinstance(freshness.args, FreshnessArgs)
    assert freshness.args.max_age == timedelta(hours=26)
    assert freshness.severity == "warn"
    assert suite.checks[2].expectation_kwargs == {"column": "amount", "mostly": 0.95}
    with pytest.raises(Exception, match="frozen"):
        suite.suite = "other"  # type: ignore[misc]


def test_every_error_in_every_file_is_reported_in_one_pass(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks:
              - row_count: {min: 1}
              - freshness: {column: updated_at, max_age: soon}
              - row_cnt: {}
            """,
            "b": """
            suite: b
            source: {connector: warehous, table: t}
            checks:
              - schema: {columns: [a], drift: maybe, extra: 1}
            """,
        },
    )
    root = tmp_path
    assert issues_of(root) == [
        f"{root}/checks/a.yml:5:46: checks[1].freshness.max_age: "
        "expected a duration like 26h, got 'soon'",
        f"{root}/checks/a.yml:6:5: checks[2].row_cnt: unknown check type 'row_cnt' "
        "(did you mean row_count?); expected one of: accepted_values, column_anomaly, distribution_shift, fat_finger, freshness, new_values, reference, row_count, schema, volume_anomaly, "
        "or a Great Expectations expectation (expect_*)",
        f"{root}/checks/b.yml:2:21: source.connector: unknown connector 'warehous'; "
        "available: warehouse",
        f"{root}/checks/b.yml:4:35: checks[0].schema.drift: expected true or false, got 'maybe'",
        f"{root}/checks/b.yml:4:42: checks[0].schema.extra: unknown key; "
        "expected one of: columns, drift, name, owner, severity",
    ]


def test_missing_required_keys_point_at_their_parent(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "a": """
            suite: a
            source:
              connector: warehouse
            checks:
              - freshness: {max_age: 2h}
            """
        },
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/checks/a.yml:3:3: source: expected exactly one of table: or query:",
        f"{tmp_path}/checks/a.yml:5:16: checks[0].freshness.column: required key is missing",
    ]


def test_unset_environment_variable_is_named_with_its_place(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "warehouse": """
            type: sql
            url: postgresql+psycopg://dq:${WAREHOUSE_PASSWORD}@db/analytics
            """
        },
        suites={"a": "suite: a\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n"},
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/connectors/warehouse.yml:2:6: url: "
        "environment variable WAREHOUSE_PASSWORD is not set",
        f"{tmp_path}/checks/a.yml:2:21: source.connector: connector 'warehouse' is invalid: "
        f"see {tmp_path}/connectors/warehouse.yml",
    ]
    project = load_project(tmp_path, env={"WAREHOUSE_PASSWORD": "s3cret"})
    assert project.issues == ()
    assert project.connectors["warehouse"].url == "postgresql+psycopg://dq:s3cret@db/analytics"


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "pw.txt").write_text("from-a-file\n")
    make_project(
        tmp_path,
        connectors={"warehouse": f"type: sql\nurl: 'x://u:${{file:{tmp_path}/pw.txt}}@h/d'\n"},
        suites={"a": "suite: a\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n"},
    )
    project = load_project(tmp_path, env={})
    assert project.connectors["warehouse"].url == "x://u:from-a-file@h/d"


def test_unknown_expectation_and_arguments_are_reported(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks:
              - expect_column_valuez_to_be_null: {column: x}
              - expect_column_values_to_be_between: {column: x, min_value: 0, mostly: 2}
              - expect_column_values_to_match_regex: {column: x, regex: "^a", colour: red}
            """
        },
    )
    found = issues_of(tmp_path)
    assert found[0] == (
        f"{tmp_path}/checks/a.yml:4:5: checks[0].expect_column_valuez_to_be_null: unknown "
        "expectation 'expect_column_valuez_to_be_null' (did you mean "
        "expect_column_values_to_be_null?)"
    )
    assert found[1] == (
        f"{tmp_path}/checks/a.yml:5:75: checks[1].expect_column_values_to_be_between.mostly: "
        "expected less than or equal to 1, got 2"
    )
    assert found[2].startswith(
        f"{tmp_path}/checks/a.yml:6:67: checks[2].expect_column_values_to_match_regex.colour: "
        "unknown argument for expect_column_values_to_match_regex; expected one of: column,"
    )
    assert len(found) == 3


def test_yaml_syntax_errors_have_a_position(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": "suite: a\nsource: {connector: warehouse, table: t\nchecks: []\n"},
    )
    [issue] = issues_of(tmp_path)
    assert issue.startswith(f"{tmp_path}/checks/a.yml:3:7: invalid YAML: expected ',' or '}}'")


def test_duplicate_keys_are_an_error_not_a_silent_overwrite(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "a": "suite: a\nsource: {connector: warehouse, table: t}\nsuite: b\nchecks: [row_count]\n"
        },
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/checks/a.yml:3:1: invalid YAML: duplicate key 'suite'"
    ]


def test_connector_types_and_their_credentials(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "crm": "type: salesforce\ninstance_url: https://acme.my.salesforce.com\n",
            "sheets": "type: gsheets\n",
            "x": "type: mongo\nurl: m://\n",
        },
        suites={
            "a": "suite: a\nsource: {connector: crm, object: Opportunity, fields: []}\nchecks: [row_count]\n"
        },
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/connectors/crm.yml:1:1: expected session_id with instance_url, "
        "or username with password (and security_token)",
        f"{tmp_path}/connectors/sheets.yml:1:1: expected exactly one of service_account_file: or base_url:",
        f"{tmp_path}/connectors/x.yml:1:7: type: unknown connector type 'mongo'; "
        "expected one of: sql, iceberg, spark, salesforce, gsheets, airflow, dbt_cloud, webhook, "
        "prefect, dagster",
        f"{tmp_path}/checks/a.yml:2:21: source.connector: connector 'crm' is invalid: "
        f"see {tmp_path}/connectors/crm.yml",
    ]


def test_salesforce_and_sheets_sources_are_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "crm": "type: salesforce\ninstance_url: http://127.0.0.1:9\nsession_id: ${SF_SESSION}\n",
            "sheets": "type: gsheets\nbase_url: http://127.0.0.1:9\n",
        },
        suites={
            "a": "suite: a\nsource: {connector: crm, object: Opportunity, fields: []}\nchecks: [row_count]\n",
            "b": "suite: b\nsource: {connector: sheets, spreadsheet: k}\nchecks: [row_count]\n",
        },
    )
    assert issues_of(tmp_path, env={"SF_SESSION": "00D!secret"}) == [
        f"{tmp_path}/checks/a.yml:2:55: source.fields: expected at least 1 item",
        f"{tmp_path}/checks/b.yml:2:9: source.worksheet: required key is missing",
    ]
    project = load_project(tmp_path, env={"SF_SESSION": "00D!secret"})
    assert "secret" not in repr(project.connectors["crm"])


def test_bad_cron_timezone_and_duplicate_suite_ids(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "a": """
            suite: same
            schedule: "*/30 * * 13 *"
            timezone: Mars/Olympus
            source: {connector: warehouse, table: t}
            checks: [row_count]
            """,
            "b": "suite: same\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n",
        },
    )
    found = issues_of(tmp_path)
    assert found[0].startswith(
        f"{tmp_path}/checks/a.yml:2:11: schedule: expected a 5-field cron expression like "
        "'*/30 * * * *', got '*/30 * * 13 *'"
    )
    assert found[1] == (
        f"{tmp_path}/checks/a.yml:3:11: timezone: expected an IANA timezone like Europe/Berlin, "
        "got 'Mars/Olympus'"
    )
    assert found[2] == (
        f"{tmp_path}/checks/b.yml:1:1: suite: duplicate suite id 'same': "
        f"also in {tmp_path}/checks/a.yml"
    )


def test_detection_checks_are_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks:
              - fat_finger: {column: Amount, witness: "__import__('os')"}
              - fat_finger: {name: ok, column: Amount, witness: "Seats * (Price"}
              - volume_anomaly: {timestamp_column: created_at, bucket: month, sensitivity: 0}
            """
        },
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/checks/a.yml:4:43: checks[0].fat_finger.witness: invalid witness "
        "\"__import__('os')\": unknown function '__import__' at 0; available: abs, coalesce, sum_of",
        f"{tmp_path}/checks/a.yml:5:53: checks[1].fat_finger.witness: invalid witness "
        "'Seats * (Price': expected an operator or ')' at 14, got the end",
        f"{tmp_path}/checks/a.yml:6:60: checks[2].volume_anomaly.bucket: "
        "expected 'hour', 'day' or 'week', got 'month'",
        f"{tmp_path}/checks/a.yml:6:80: checks[2].volume_anomaly.sensitivity: "
        "expected greater than 0, got 0",
    ]


def test_a_broken_suite_does_not_hide_the_valid_ones(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={
            "good": "suite: good\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n",
            "bad": "suite: bad\nsource: {connector: warehouse, table: t}\nchecks: [nope]\n",
        },
    )
    project = load_project(tmp_path, env={})
    assert list(project.suites) == ["good"]
    assert list(project.broken_suites) == ["bad"]


def test_settings_file_is_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": "suite: a\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n"},
        settings="state_url: sqlite:///state.db\ndefaults: {max_findings: -1, colour: blue}\n",
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/dq-agent.yml:2:26: defaults.max_findings: "
        "expected greater than or equal to 0, got -1",
        f"{tmp_path}/dq-agent.yml:2:30: defaults.colour: unknown key; "
        "expected one of: max_findings, timezone",
    ]


def test_relative_sqlite_state_url_is_inside_the_project(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": "suite: a\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n"},
    )
    project = load_project(tmp_path, env={})
    assert project.state_url == f"sqlite:///{tmp_path.resolve()}/.dq-agent/state.db"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26h", timedelta(hours=26)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(hours=36)),
        ("2w", timedelta(weeks=2)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "26", "h", "-3h", "0h", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="expected a"):
        parse_duration(text)


def test_duration_formatting() -> None:
    assert [
        format_duration(timedelta(seconds=s))
        for s in (45, 600, 3 * 3600 + 1200, 26 * 3600, 74 * 3600)
    ] == ["45s", "10m", "3h20m", "26h", "3d2h"]


ANY_SUITE = "suite: a\nsource: {connector: warehouse, table: t}\nchecks: [row_count]\n"


def test_slack_and_nudge_settings_are_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": ANY_SUITE},
        settings="""
        slack: {token: "${SLACK_BOT_TOKEN}"}
        nudges:
          every: 0h
          escalate_after: 0
          working_hours: {start: "9am", days: [Monday, someday]}
        people:
          pete@acme.com: {timezone: Mars/Olympus, working_hours: {start: "18:00", end: "09:00"}}
        """,
    )
    assert issues_of(tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1"}) == [
        f"{tmp_path}/dq-agent.yml:1:8: slack.signing_secret: required key is missing",
        f"{tmp_path}/dq-agent.yml:3:10: nudges.every: expected a positive duration like 26h, "
        "got '0h'",
        f"{tmp_path}/dq-agent.yml:4:19: nudges.escalate_after: "
        "expected greater than or equal to 1, got 0",
        f"{tmp_path}/dq-agent.yml:5:26: nudges.working_hours.start: "
        "expected a time of day like 09:00, got '9am'",
        f"{tmp_path}/dq-agent.yml:5:39: nudges.working_hours.days: "
        "expected days among mon, tue, wed, thu, fri, sat, sun, got someday",
        f"{tmp_path}/dq-agent.yml:7:29: people.pete@acme.com.timezone: "
        "expected an IANA timezone like Europe/Berlin, got 'Mars/Olympus'",
        f"{tmp_path}/dq-agent.yml:7:58: people.pete@acme.com.working_hours: "
        "expected start before end, got 18:00-09:00",
    ]


def test_slack_secrets_come_from_the_environment_and_are_never_shown(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": ANY_SUITE},
        settings="""
        slack:
          token: ${SLACK_BOT_TOKEN}
          signing_secret: ${SLACK_SIGNING_SECRET}
        people:
          Pete@Acme.com: {timezone: America/New_York, digest: true}
        """,
    )
    assert issues_of(tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1"}) == [
        f"{tmp_path}/dq-agent.yml:3:19: slack.signing_secret: "
        "environment variable SLACK_SIGNING_SECRET is not set"
    ]
    project = load_project(tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"})
    slack = project.settings.slack
    assert slack is not None
    assert slack.token.get_secret_value() == "xoxb-1"
    assert "xoxb-1" not in repr(project.settings)
    assert project.settings.nudges.every == timedelta(hours=4)  # the defaults
    assert project.settings.nudges.working_hours.days == ("mon", "tue", "wed", "thu", "fri")
    assert project.settings.people["pete@acme.com"].digest is True


def test_with_a_broker_each_process_reads_only_its_own_secrets(tmp_path: Path) -> None:
    """The broker posts to Slack (the bot token is its); the agent verifies Slack's requests
    and asks the model (the signing secret and the API key are its): neither reads, nor
    needs, the other's."""
    make_project(
        tmp_path,
        connectors={"warehouse": WAREHOUSE},
        suites={"a": ANY_SUITE},
        settings="""
        broker: {url: "unix:/run/dq/broker.sock", token: "${DQ_BROKER_TOKEN}"}
        slack:
          token: ${SLACK_BOT_TOKEN}
          signing_secret: ${SLACK_SIGNING_SECRET}
        llm: {model: claude-sonnet-4-6, api_key: "${ANTHROPIC_API_KEY}", redact_columns: [email]}
        """,
    )
    agents = {"DQ_BROKER_TOKEN": "dqb_x", "SLACK_SIGNING_SECRET": "s", "ANTHROPIC_API_KEY": "k"}
    agent = load_project(tmp_path, env=agents)
    assert not agent.issues, agent.issues
    assert agent.settings.slack is not None and agent.settings.slack.token is None
    assert agent.settings.slack.verifying_secret() == "s"
    broker = load_project(tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-1"}, as_broker=True)
    assert not broker.issues, broker.issues
    assert broker.settings.broker is None
    assert broker.settings.slack is not None and broker.settings.slack.bot_token() == "xoxb-1"
    assert broker.settings.slack.signing_secret is None
    assert broker.settings.llm is not None and broker.settings.llm.api_key is None
    assert broker.settings.llm.redact_columns == ["email"]
    assert [str(i) for i in load_project(tmp_path, env={}, as_broker=True).issues] == [
        f"{tmp_path}/dq-agent.yml:3:10: slack.token: environment variable SLACK_BOT_TOKEN is "
        "not set"
    ]
    # Without a broker the agent needs the bot token itself.
    settings = tmp_path / "dq-agent.yml"
    settings.write_text(settings.read_text().replace("broker:", "# broker:"))
    assert issues_of(tmp_path, env=agents) == [
        f"{tmp_path}/dq-agent.yml:3:10: slack.token: environment variable SLACK_BOT_TOKEN is not set"
    ]


def test_restarts_and_verify_are_validated(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={
            "warehouse": WAREHOUSE,
            "airflow": "type: airflow\nbase_url: http://af\ntoken: t\n",
            "hook": "type: webhook\nurl: http://hook\n",
        },
        suites={
            "a": """
            suite: a
            source: {connector: warehouse, table: t}
            checks: [row_count]
            restart:
              - airflow: {connector: hook, dag_id: agg}
              - kubernetes: {job: agg}
              - command: {run: [], timeout: 5m}
              - airflow: {connector: airflow, dag_id: agg, mode: retry}
            """,
            "b": """
            suite: b
            source: {connector: airflow, table: t}
            checks: [row_count]
            """,
            "c": """
            suite: c
            source: {connector: warehouse, table: t}
            checks: [row_count]
            restart:
              - webhook: {connector: hook, body: {pipeline: agg}}
            verify: [a, nope]
            """,
        },
    )
    assert issues_of(tmp_path) == [
        f"{tmp_path}/checks/a.yml:5:26: restart[0].airflow.connector: "
        "'hook' is of type webhook; expected a connector of type airflow",
        f"{tmp_path}/checks/a.yml:6:5: restart[1]: "
        "unknown restart type 'kubernetes'; expected one of: airflow, airflow_asset, dbt_cloud, "
        "webhook, prefect, dagster, command",
        f"{tmp_path}/checks/a.yml:7:20: restart[2].command.run: expected at least 1 item",
        f"{tmp_path}/checks/a.yml:8:54: restart[3].airflow.mode: "
        "expected 'trigger' or 'clear', got 'retry'",
        f"{tmp_path}/checks/b.yml:2:21: source.connector: connector 'airflow' is of type "
        "airflow, not a data source; expected a connector of type sql, iceberg, spark, salesforce, gsheets",
        f"{tmp_path}/checks/c.yml:6:9: verify: unknown suite(s) nope; "
        "expected suite ids among: a, b, c",
    ]


def billion_laughs() -> str:
    """Nine aliases of nine aliases, nine levels deep: 378 bytes that would be 9^9 values."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_yaml_too_large_to_build_is_refused_for_its_file_only(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    bad = {
        "bomb": billion_laughs(),
        "deep": "suite: deep\nchecks: " + "[" * 50_000 + "]" * 50_000 + "\n",
        "nested_aliases": "a: &a " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 50 + "*a" + "]" * 50,
        "loop": "suite: loop\nchecks: &a [row_count, *a]\n",
        "huge": "suite: huge\n# " + "x" * MAX_BYTES + "\n",
    }
    for name, text in bad.items():
        (project / "checks" / f"{name}.yml").write_text(text)
    checks = project / "checks"
    expected = [
        f"{checks}/bomb.yml:5:8: aliases expand to more than 10,000 values; "
        "expected at most 10,000 values copied through aliases (*name)",
        f"{checks}/deep.yml:2:108: lists and mappings nested more than 100 deep; "
        "expected at most 100 levels",
        f"{checks}/huge.yml:1:1: file of more than 262,144 bytes; expected at most 256 KiB",
        f"{checks}/loop.yml:2:24: alias *a is inside the node it names; "
        "expected an alias of a node that ends before it",
        f"{checks}/nested_aliases.yml:2:54: alias *a nests lists and mappings more than 100 deep; "
        "expected at most 100 levels",
    ]

    code, out, err = invoke("validate", "--project", str(project))
    assert (code, out) == (3, "")
    assert err.splitlines() == [*expected, "5 errors in 5 files"]

    code, out, err = invoke("check", "--project", str(project), "--format", "json")
    assert code == 3
    assert err.strip().splitlines() == expected
    statuses = {s["suite"]: s["status"] for s in json.loads(out)["suites"]}
    assert statuses == {"a_pass": "pass"} | dict.fromkeys(bad, "error")


def test_a_resolved_secret_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "S3cr3t-9f4e"
    monkeypatch.setenv("WAREHOUSE_TIMEOUT", secret)
    monkeypatch.setenv("SHEETS_URL", f"{secret}:9")
    project = orders_project(tmp_path, a_pass=PASSING)
    connectors = project / "connectors"
    (connectors / "slow.yml").write_text(
        "type: sql\nurl: sqlite:///warehouse.db\nconnect_timeout: ${WAREHOUSE_TIMEOUT}\n"
    )
    (connectors / "sheets.yml").write_text("type: gsheets\nbase_url: ${SHEETS_URL}\n")
    expected = [
        f"{connectors}/sheets.yml:2:11: base_url: expected an http(s)://host[:port] URL, got '***'",
        f"{connectors}/slow.yml:3:18: connect_timeout: "
        "expected a valid integer, unable to parse string as an integer, got '***'",
    ]

    code, out, err = invoke("validate", "--project", str(project))
    assert code == 3
    assert err.splitlines() == [*expected, "2 errors in 2 files"]
    assert secret not in out + err

    code, out, err = invoke("check", "--project", str(project))
    assert code == 0  # the suite uses neither connector
    assert err.strip().splitlines() == expected
    assert secret not in out + err


def test_a_secret_file_that_is_endless_or_not_text_is_a_clear_error(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    connectors = project / "connectors"
    (tmp_path / "binary.key").write_bytes(b"\xff\xfeS3cr3t")
    (connectors / "endless.yml").write_text("type: sql\nurl: ${file:/dev/zero}\n")
    (connectors / "binary.yml").write_text(f"type: sql\nurl: ${{file:{tmp_path}/binary.key}}\n")
    code, out, err = invoke("validate", "--project", str(project))
    assert code == 3
    assert err.splitlines() == [
        f"{connectors}/binary.yml:2:6: url: secret file {tmp_path}/binary.key: not UTF-8 text; "
        "expected a secret as text",
        f"{connectors}/endless.yml:2:6: url: secret file /dev/zero: more than 64 KiB; "
        "expected a secret as text",
        "2 errors in 2 files",
    ]
    assert "S3cr3t" not in out + err


def test_a_sheets_base_url_needs_a_scheme(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    (project / "connectors" / "sheets.yml").write_text("type: gsheets\nbase_url: 127.0.0.1:9\n")
    (project / "checks" / "forecast.yml").write_text(
        "suite: forecast\nsource: {connector: sheets, spreadsheet: k, worksheet: us}\n"
        "checks: [row_count]\n"
    )
    code, out, err = invoke("check", "--project", str(project), "--format", "json")
    assert code == 3
    assert err.strip().splitlines() == [
        f"{project}/connectors/sheets.yml:2:11: base_url: "
        "expected an http(s)://host[:port] URL, got '127.0.0.1:9'",
        f"{project}/checks/forecast.yml:2:21: source.connector: connector 'sheets' is invalid: "
        f"see {project}/connectors/sheets.yml",
    ]
    statuses = {s["suite"]: s["status"] for s in json.loads(out)["suites"]}
    assert statuses == {"a_pass": "pass", "forecast": "error"}


def test_a_service_account_key_is_never_shown(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    key = '{"type": "service_account", "private_key": "PRIVATE-KEY-7c1d", "client_email": "a@b"}'
    (project / "key.json").write_text(key)
    connectors = project / "connectors"
    (connectors / "inline.yml").write_text(
        f"type: gsheets\nservice_account_file: ${{file:{project}/key.json}}\n"
    )
    (connectors / "sheets.yml").write_text(
        f"type: gsheets\nservice_account_file: {project}/key.json\n"
    )
    for name in ("inline", "sheets"):
        (project / "checks" / f"{name}.yml").write_text(
            f"suite: {name}\nsource: {{connector: {name}, spreadsheet: k, worksheet: us}}\n"
            "checks: [row_count]\n"
        )
    code, out, err = invoke("check", "--project", str(project), "--format", "json")
    assert code == 3
    assert err.splitlines()[0] == (
        f"{connectors}/inline.yml:2:23: service_account_file: this is the content of a service "
        "account key, not a path: give the path of the key file (JSON)"
    )
    errors = {s["suite"]: s.get("error") for s in json.loads(out)["suites"]}
    assert errors["sheets"] == (
        f"cannot use service account file {project}/key.json: Service account info was not "
        "in the expected format, missing fields token_uri."
    )
    assert "PRIVATE-KEY" not in out + err


def test_every_http_endpoint_needs_a_scheme(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    connectors = project / "connectors"
    (connectors / "airflow.yml").write_text("type: airflow\nbase_url: airflow.acme.com\n")
    (connectors / "hook.yml").write_text("type: webhook\nurl: ftp://hooks.acme.com/rebuild\n")
    code, _out, err = invoke("validate", "--project", str(project))
    assert code == 3
    assert err.splitlines() == [
        f"{connectors}/airflow.yml:2:11: base_url: "
        "expected an http(s)://host[:port] URL, got 'airflow.acme.com'",
        f"{connectors}/hook.yml:2:6: url: "
        "expected an http(s)://host[:port] URL, got 'ftp://hooks.acme.com/rebuild'",
        "2 errors in 2 files",
    ]


def test_an_allow_list_entry_no_source_can_honour_is_an_error(tmp_path: Path) -> None:
    project = orders_project(tmp_path, a_pass=PASSING)
    (project / "connectors" / "airflow.yml").write_text(
        "type: airflow\nbase_url: http://airflow:8080\ntoken: t\n"
    )
    settings = project / "dq-agent.yml"
    settings.write_text(
        settings.read_text()
        + "corrections:\n  enabled: true\n  allow:\n"
        + "    - {connector: warehouse, object: orders, fields: [amount]}\n"
        + "    - {connector: airflow, fields: [state]}\n"
        + "    - {connector: crm, object: Opportunity, fields: [Amount]}\n"
    )
    code, _out, err = invoke("validate", "--project", str(project))
    assert code == 3
    lines = err.splitlines()
    assert [line.split(": ", 1)[1] for line in lines[:-1]] == [
        "corrections.allow[1].connector: airflow connectors are never corrected; "
        "expected a salesforce, gsheets, sql, iceberg connector",
        "corrections.allow[2].connector: unknown connector 'crm'; "
        "expected one of: airflow, warehouse",
    ]
    assert lines[-1] == "2 errors in 1 file"


DBT_MANIFEST = {
    "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
    "nodes": {
        "model.shop.orders": {
            "resource_type": "model",
            "name": "orders",
            "alias": "orders",
            "schema": "analytics",
            "meta": {"owner": "ana@acme.com"},
        },
        "model.shop.refunds": {
            "resource_type": "model",
            "name": "refunds",
            "alias": "refunds",
            "schema": "analytics",
            "config": {"meta": {"owner": ["bo@acme.com", "cy@acme.com"]}},
        },
        "test.shop.not_null_orders_id": {"resource_type": "test", "name": "x", "meta": {}},
    },
}


def test_suites_without_an_owner_take_the_dbt_models(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text(json.dumps(DBT_MANIFEST))
    connector = "type: sql\nurl: sqlite:///w.db\nschema: analytics\n"
    suite = "suite: {name}\n{owner}source: {{connector: w, table: {name}}}\nchecks: [row_count]\n"
    make_project(
        tmp_path,
        connectors={"w": connector},
        suites={
            "orders": suite.format(name="orders", owner=""),
            "refunds": suite.format(name="refunds", owner=""),
            "mine": suite.format(name="orders", owner="owner: me@acme.com\n").replace(
                "suite: orders", "suite: mine"
            ),
            "other": suite.format(name="payments", owner=""),
        },
        settings="owners: {dbt_manifest: target/manifest.json}\n",
    )
    project = load_project(tmp_path, env={})
    assert project.issues == ()
    assert {name: s.owner for name, s in project.suites.items()} == {
        "orders": ("ana@acme.com",),
        "refunds": ("bo@acme.com", "cy@acme.com"),
        "mine": ("me@acme.com",),  # its own owner: wins
        "payments": (),  # no model builds it
    }


def test_a_dbt_manifest_that_cannot_be_read_is_an_error_of_dq_agent_yml(tmp_path: Path) -> None:
    make_project(
        tmp_path,
        connectors={"w": "type: sql\nurl: sqlite:///w.db\n"},
        suites={
            "orders": "suite: orders\nsource: {connector: w, table: orders}\nchecks: [row_count]\n"
        },
        settings="state_url: sqlite:///s.db\nowners:\n  dbt_manifest: target/manifest.json\n",
    )
    [issue] = load_project(tmp_path, env={}).issues
    assert str(issue) == (
        f"{tmp_path}/dq-agent.yml:3:17: owners.dbt_manifest: cannot read "
        f"{tmp_path}/target/manifest.json: No such file or directory"
    )
