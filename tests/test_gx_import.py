"""Great Expectations suites (JSON) converted into dq-agent suites that load and run as GX's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dq_agent.config import load_project
from dq_agent.config.gx_import import Converted, read_gx_suite, suite_from_gx
from dq_agent.errors import DqAgentError
from dq_agent.results import SuiteResult
from tests.sources import load_orders, order_rows, project_for, run

GX_PARSER = "great_expectations"

# Ten orders (ids 1-10, amounts 10-100, customers c0-c3, odd ids paid, even ids open);
# order 4 has no status.
STATUS_MISSING_ID = 4


def orders_project(tmp_path: Path, converted: Converted) -> Path:
    """A project holding the converted suite as checks/orders.yml, over a SQLite orders table."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    rows = order_rows(10)
    rows[STATUS_MISSING_ID - 1]["status"] = None
    load_orders(url, rows)
    return project_for(tmp_path / "project", url, {"orders": converted.yaml})


def run_converted(tmp_path: Path, converted: Converted) -> SuiteResult:
    """Load the converted suite (``run`` asserts no issues) and run it on the orders."""
    [result] = run(orders_project(tmp_path, converted))
    return result


def statuses(result: SuiteResult) -> dict[str, str]:
    return {check.name: check.status for check in result.checks}


GX1_SUITE: dict[str, Any] = {
    "name": "orders: daily checks",
    "id": "0b6a7c9e-5d1f-4b7e-9a40-2f8c1e3d4a5b",
    "expectations": [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "id"},
            "meta": {},
            "id": "e1",
            "severity": "critical",
        },
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "status"},
            "meta": {},
            "id": "e2",
            "severity": "critical",
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "amount", "min_value": 0.0, "max_value": 100.0},
            "meta": {},
            "id": "e3",
            "severity": "critical",
        },
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "amount", "min_value": 0.0, "max_value": 50.0, "mostly": 0.9},
            "meta": {"owner": "finance"},
            "notes": "Amounts above 50 need a second approval",
            "description": "Most orders are small",
            "id": "e4",
            "severity": "critical",
        },
        {
            # GX 1.x saves a row condition as structure; this one is order 4 only.
            "type": "expect_column_values_to_be_null",
            "kwargs": {
                "column": "status",
                "row_condition": {
                    "column": {"name": "id"},
                    "operator": "==",
                    "parameter": STATUS_MISSING_ID,
                    "type": "comparison",
                },
                "condition_parser": "great_expectations",
            },
            "meta": {},
            "id": "e5",
            "severity": "critical",
        },
        {
            # Not compiled by dq-agent: runs through Great Expectations.
            "type": "expect_column_distinct_values_to_be_in_set",
            "kwargs": {"column": "customer", "value_set": ["c0", "c1", "c2", "c3"]},
            "meta": {},
            "id": "e6",
            "severity": "critical",
        },
        {
            "type": "expect_table_row_count_to_equal",
            "kwargs": {"value": 10},
            "meta": {},
            "id": "e7",
            "severity": "critical",
        },
    ],
    "meta": {"great_expectations_version": "1.24.1"},
    "notes": None,
}


def test_a_gx_1_suite_becomes_a_suite_of_the_same_expectations(tmp_path: Path) -> None:
    converted = suite_from_gx(GX1_SUITE, connector="warehouse", table="orders")

    assert converted.skipped == ()
    assert converted.yaml == (
        "# Converted from Great Expectations suite orders: daily checks (7 expectations) by dq-agent import gx.\n"
        "suite: orders_daily_checks\n"
        "source: {connector: warehouse, table: orders}\n"
        "checks:\n"
        "  - expect_column_values_to_not_be_null: {column: id}\n"
        "  - expect_column_values_to_not_be_null: {column: status}\n"
        "  - expect_column_values_to_be_between: {column: amount, min_value: 0.0, max_value: 100.0}\n"
        "  # note: Amounts above 50 need a second approval\n"
        '  # meta: {"owner": "finance"}\n'
        "  - expect_column_values_to_be_between:\n"
        "      column: amount\n"
        "      min_value: 0.0\n"
        "      max_value: 50.0\n"
        "      mostly: 0.9\n"
        "      description: Most orders are small\n"
        "      name: 'expect_column_values_to_be_between(amount) #2'\n"
        "  - expect_column_values_to_be_null:\n"
        "      column: status\n"
        '      row_condition: col("id") == 4\n'
        "      condition_parser: great_expectations\n"
        "  - expect_column_distinct_values_to_be_in_set: {column: customer, value_set: [c0, c1, c2, c3]}\n"
        "  - expect_table_row_count_to_equal: {value: 10}\n"
    )
    result = run_converted(tmp_path, converted)
    assert (result.suite, result.status, result.error) == ("orders_daily_checks", "fail", None)
    assert statuses(result) == {
        "expect_column_values_to_not_be_null(id)": "pass",
        "expect_column_values_to_not_be_null(status)": "fail",
        "expect_column_values_to_be_between(amount)": "pass",
        "expect_column_values_to_be_between(amount) #2": "fail",  # 5 of 10 within, mostly 0.9
        "expect_column_values_to_be_null(status)": "pass",
        "expect_column_distinct_values_to_be_in_set(customer)": "pass",
        "expect_table_row_count_to_equal": "pass",
    }


GX0_SUITE: dict[str, Any] = {
    "data_asset_type": None,
    "expectation_suite_name": "orders.warning",
    "ge_cloud_id": None,
    "expectations": [
        {
            "expectation_type": "expect_table_row_count_to_be_between",
            "kwargs": {
                "min_value": 1,
                "max_value": 1000,
                "result_format": "SUMMARY",
                "include_config": True,
                "catch_exceptions": False,
                "batch_id": "b1",
            },
            "meta": {},
        },
        {
            "expectation_type": "expect_column_values_to_be_in_set",
            "kwargs": {"column": "status", "value_set": ["paid", "open"]},
            "meta": {"notes": {"format": "markdown", "content": ["Only **paid** or **open**"]}},
        },
        {
            "expectation_type": "expect_column_values_to_be_unique",
            "kwargs": {"column": "customer"},
            "meta": {},
        },
        {
            "expectation_type": "expect_compound_columns_to_be_unique",
            "kwargs": {"column_list": ["id", "customer"]},
            "meta": {},
        },
    ],
    "meta": {"great_expectations_version": "0.18.12"},
}


def test_a_gx_0_suite_converts_too_without_the_arguments_gx_adds(tmp_path: Path) -> None:
    converted = suite_from_gx(
        GX0_SUITE, connector="warehouse", table="orders", suite="orders", owner="ops@acme.com"
    )

    assert converted.skipped == ()
    assert converted.yaml == (
        "# Converted from Great Expectations suite orders.warning (4 expectations) by dq-agent import gx.\n"
        "suite: orders\n"
        "owner: ops@acme.com\n"
        "source: {connector: warehouse, table: orders}\n"
        "checks:\n"
        "  - expect_table_row_count_to_be_between: {min_value: 1, max_value: 1000}\n"
        '  # meta: {"notes": {"format": "markdown", "content": ["Only **paid** or **open**"]}}\n'
        "  - expect_column_values_to_be_in_set: {column: status, value_set: [paid, open]}\n"
        "  - expect_column_values_to_be_unique: {column: customer}\n"
        "  - expect_compound_columns_to_be_unique: {column_list: [id, customer]}\n"
    )
    result = run_converted(tmp_path, converted)
    assert statuses(result) == {
        "expect_table_row_count_to_be_between": "pass",
        "expect_column_values_to_be_in_set(status)": "pass",  # a null is in no set, nor out
        "expect_column_values_to_be_unique(customer)": "fail",
        "expect_compound_columns_to_be_unique(id,customer)": "pass",
    }


# Quotes, a colon, line breaks (a newline, a Unicode line separator), other scripts.
AWKWARD = ['it\'s "paid": yes', "line one\nline two", "café ✓ 注文", "a\u2028b # not a comment"]


def test_quotes_colons_line_breaks_and_unicode_round_trip(tmp_path: Path) -> None:
    kwargs = {"column": "status", "value_set": AWKWARD}
    document = {
        "name": "awkward",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_in_set",
                "kwargs": kwargs,
                "meta": {"why": 'it\'s: "x"\nnew'},
                # A note cannot add a check, nor end the comment it is written in.
                "notes": ["Ask Ops: urgent\n- expect_column_values_to_be_null: {column: id}"],
            }
        ],
    }
    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.yaml == (
        "# Converted from Great Expectations suite awkward (1 expectation) by dq-agent import gx.\n"
        "suite: awkward\n"
        "source: {connector: warehouse, table: orders}\n"
        "checks:\n"
        "  # note: Ask Ops: urgent\\n- expect_column_values_to_be_null: {column: id}\n"
        '  # meta: {"why": "it\'s: \\"x\\"\\nnew"}\n'
        "  - expect_column_values_to_not_be_in_set:\n"
        "      column: status\n"
        "      value_set:\n"
        "      - 'it''s \"paid\": yes'\n"
        '      - "line one\\nline two"\n'
        "      - café ✓ 注文\n"
        '      - "a\\Lb # not a comment"\n'
    )
    root = orders_project(tmp_path, converted)
    project = load_project(root, env={})
    assert project.issues == ()
    [check] = project.suites["awkward"].checks
    assert check.expectation_kwargs == kwargs
    [result] = run(root)
    assert statuses(result) == {"expect_column_values_to_not_be_in_set(status)": "pass"}


def test_a_suite_name_and_its_notes_cannot_break_the_yaml() -> None:
    document = {
        "name": "orders\nsuite: evil",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "id"},
                "notes": "tab\there, NEL\x85here, separator\u2029here",
            }
        ],
    }

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.yaml.splitlines()[:6] == [
        "# Converted from Great Expectations suite orders\\nsuite: evil (1 expectation) by dq-agent import gx.",
        "suite: orders_suite_evil",
        "source: {connector: warehouse, table: orders}",
        "checks:",
        "  # note: tab\\there, NEL\\x85here, separator\\u2029here",
        "  - expect_column_values_to_not_be_null: {column: id}",
    ]
    assert yaml.safe_load(converted.yaml) == {
        "suite": "orders_suite_evil",
        "source": {"connector": "warehouse", "table": "orders"},
        "checks": [{"expect_column_values_to_not_be_null": {"column": "id"}}],
    }


def test_expectations_dq_agent_cannot_run_are_commented_out_and_reported(
    tmp_path: Path,
) -> None:
    document = {
        "name": "orders",
        "expectations": [
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "id"}},
            {
                # Removed in GX 1.0.
                "type": "expect_column_bootstrapped_ks_test_p_value_to_be_greater_than",
                "kwargs": {"column": "amount", "p": 0.05},
                "notes": "from 0.15",
            },
            {
                # An argument of GX 0.x that GX 1.x no longer takes.
                "type": "expect_column_values_to_be_between",
                "kwargs": {
                    "column": "updated_at",
                    "min_value": "2026-01-01",
                    "parse_strings_as_datetimes": True,
                },
            },
            {
                # A value GX is given when it validates.
                "type": "expect_table_row_count_to_equal",
                "kwargs": {"value": {"$PARAMETER": "upstream_row_count"}},
            },
            {
                # Two conditions: dq-agent reads one column compared with one value.
                "type": "expect_column_values_to_be_in_set",
                "kwargs": {
                    "column": "status",
                    "value_set": ["paid"],
                    "row_condition": {
                        "type": "and",
                        "conditions": [
                            {
                                "type": "comparison",
                                "column": {"name": "id"},
                                "operator": ">",
                                "parameter": 1,
                            },
                            {"type": "nullity", "column": {"name": "customer"}, "is_null": False},
                        ],
                    },
                    "condition_parser": "great_expectations",
                },
            },
            {"type": "expect_column_values_to_match_like_pattern", "kwargs": {"column": "status"}},
        ],
    }

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.skipped == (
        "expectations[1] expect_column_bootstrapped_ks_test_p_value_to_be_greater_than: "
        "not a Great Expectations 1.x expectation",
        "expectations[2] expect_column_values_to_be_between: parse_strings_as_datetimes: unknown argument",
        "expectations[3] expect_table_row_count_to_equal: "
        "value is the suite parameter 'upstream_row_count': write its value",
        "expectations[4] expect_column_values_to_be_in_set: "
        "a row_condition of type 'and' has no string form dq-agent reads",
        "expectations[5] expect_column_values_to_match_like_pattern: "
        "like_pattern: required argument is missing",
    )
    assert converted.yaml == (
        "# Converted from Great Expectations suite orders (6 expectations) by dq-agent import gx.\n"
        "suite: orders\n"
        "source: {connector: warehouse, table: orders}\n"
        "checks:\n"
        "  - expect_column_values_to_not_be_null: {column: id}\n"
        "  # note: from 0.15\n"
        "  # not converted: not a Great Expectations 1.x expectation\n"
        "  # - expect_column_bootstrapped_ks_test_p_value_to_be_greater_than: {column: amount, p: 0.05}\n"
        "  # not converted: parse_strings_as_datetimes: unknown argument\n"
        "  # - expect_column_values_to_be_between:\n"
        "  #     column: updated_at\n"
        "  #     min_value: '2026-01-01'\n"
        "  #     parse_strings_as_datetimes: true\n"
        "  # not converted: value is the suite parameter 'upstream_row_count': write its value\n"
        "  # - expect_table_row_count_to_equal: {value: {$PARAMETER: upstream_row_count}}\n"
        "  # not converted: a row_condition of type 'and' has no string form dq-agent reads\n"
        "  # - expect_column_values_to_be_in_set:\n"
        "  #     column: status\n"
        "  #     value_set:\n"
        "  #     - paid\n"
        "  #     row_condition:\n"
        "  #       type: and\n"
        "  #       conditions:\n"
        "  #       - type: comparison\n"
        "  #         column:\n"
        "  #           name: id\n"
        "  #         operator: '>'\n"
        "  #         parameter: 1\n"
        "  #       - type: nullity\n"
        "  #         column:\n"
        "  #           name: customer\n"
        "  #         is_null: false\n"
        "  #     condition_parser: great_expectations\n"
        "  # not converted: like_pattern: required argument is missing\n"
        "  # - expect_column_values_to_match_like_pattern: {column: status}\n"
    )
    result = run_converted(tmp_path, converted)
    assert statuses(result) == {"expect_column_values_to_not_be_null(id)": "pass"}


def test_a_suite_of_which_nothing_converts_says_so_where_dq_agent_reads_it() -> None:
    document = {"name": "orders", "expectations": [{"type": "expect_nothing", "kwargs": {}}]}

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.yaml.splitlines()[3:] == [
        "checks: []  # none could be converted",
        "  # not converted: not a Great Expectations 1.x expectation",
        "  # - expect_nothing: {}",
    ]


def test_gx_severity_warning_and_info_are_warnings_critical_a_failure(tmp_path: Path) -> None:
    document = {
        "name": "orders",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "status"},
                "severity": "warning",
            },
            {
                "type": "expect_column_max_to_be_between",
                "kwargs": {"column": "amount", "max_value": 50},
                "severity": "info",
            },
            {
                "type": "expect_column_values_to_be_unique",
                "kwargs": {"column": "customer"},
                "severity": "critical",
            },
        ],
    }

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.yaml.splitlines()[4:] == [
        "  - expect_column_values_to_not_be_null: {column: status, severity: warn}",
        "  - expect_column_max_to_be_between: {column: amount, max_value: 50, severity: warn}",
        "  - expect_column_values_to_be_unique: {column: customer}",
    ]
    result = run_converted(tmp_path, converted)
    assert {check.name: (check.severity, check.status) for check in result.checks} == {
        "expect_column_values_to_not_be_null(status)": ("warn", "warn"),
        "expect_column_max_to_be_between(amount)": ("warn", "warn"),
        "expect_column_values_to_be_unique(customer)": ("fail", "fail"),
    }


def comparison(column: str, operator: str, parameter: Any) -> dict[str, Any]:
    return {
        "type": "comparison",
        "column": {"name": column},
        "operator": operator,
        "parameter": parameter,
    }


@pytest.mark.parametrize(
    ("condition", "parser", "written"),
    [
        (comparison("status", "==", "paid"), None, ['col("status") == "paid"', GX_PARSER]),
        (comparison("amount", ">=", 2.5), None, ['col("amount") >= 2.5', GX_PARSER]),
        (comparison("id", "!=", -3), GX_PARSER, ['col("id") != -3', GX_PARSER]),
        (
            {"type": "nullity", "column": {"name": "customer"}, "is_null": False},
            None,
            ['col("customer").notnull()', GX_PARSER],
        ),
        (
            {"type": "pass_through", "pass_through_filter": "status == 'paid'"},
            "pandas",
            ["status == 'paid'", "pandas"],
        ),
    ],
)
def test_a_structured_row_condition_is_written_in_the_string_form_dq_agent_reads(
    condition: dict[str, Any], parser: str | None, written: list[str]
) -> None:
    kwargs = {"column": "status", "row_condition": condition}
    if parser:
        kwargs["condition_parser"] = parser
    document = {
        "name": "orders",
        "expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": kwargs}],
    }

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.skipped == ()
    [check] = yaml.safe_load(converted.yaml)["checks"]
    args = check["expect_column_values_to_not_be_null"]
    assert [args["row_condition"], args["condition_parser"]] == written


@pytest.mark.parametrize(
    ("condition", "shape"),
    [
        ({"type": "nullity", "column": {"name": "customer"}, "is_null": True}, "'nullity'"),
        (comparison("status", "IN", ["paid", "open"]), "'comparison'"),
        (comparison("status", "==", 'say "paid"'), "'comparison'"),  # GX's grammar: no escapes
        (comparison("status", "==", None), "'comparison'"),
        ({"type": "or", "conditions": []}, "'or'"),
        (["status"], "'list'"),
    ],
)
def test_a_row_condition_with_no_string_form_dq_agent_reads_is_not_converted(
    condition: Any, shape: str
) -> None:
    document = {
        "name": "orders",
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "status", "row_condition": condition},
            }
        ],
    }

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert converted.skipped == (
        "expectations[0] expect_column_values_to_not_be_null: "
        f"a row_condition of type {shape} has no string form dq-agent reads",
    )


def test_a_suite_id_given_must_be_one_dq_agent_accepts() -> None:
    with pytest.raises(DqAgentError) as raised:
        suite_from_gx(GX1_SUITE, connector="warehouse", table="orders", suite="daily orders")
    assert str(raised.value) == "suite id 'daily orders': expected letters, digits, _ . - only"


def test_a_suite_file_is_read_from_json(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(GX1_SUITE), encoding="utf-8")

    assert read_gx_suite(path) == GX1_SUITE


def test_a_file_that_is_not_json_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "orders.json"
    path.write_text('{"name": "orders", "expectations": [', encoding="utf-8")

    with pytest.raises(DqAgentError) as raised:
        read_gx_suite(path)

    assert str(raised.value) == (
        f"{path}: not JSON (Expecting value: line 1 column 37 (char 36)); "
        "expected a GX suite's JSON"
    )


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing.json"

    with pytest.raises(DqAgentError) as raised:
        read_gx_suite(path)

    assert str(raised.value) == f"{path}: cannot read it: No such file or directory"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ([{"type": "expect_column_values_to_not_be_null"}], "expected a JSON object, got list"),
        # A validation result, not a suite.
        ({"success": True, "results": [], "suite_name": "orders"}, "no expectations list"),
        ({"expectations": []}, "no suite name (name, or expectation_suite_name before GX 1.0)"),
        ({"name": "orders", "expectations": ["expect_x"]}, "expectations[0] is not an object"),
        (
            {"name": "orders", "expectations": [{"kwargs": {"column": "id"}}]},
            "expectations[0] has no type (expectation_type before GX 1.0)",
        ),
        (
            {"name": "orders", "expectations": [{"type": "expect_x", "kwargs": ["id"]}]},
            "expectations[0].kwargs is not an object",
        ),
    ],
)
def test_json_that_is_not_an_expectation_suite_is_an_error_naming_the_file(
    tmp_path: Path, document: Any, problem: str
) -> None:
    path = tmp_path / "checkpoint.json"
    path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(DqAgentError) as raised:
        read_gx_suite(path)

    assert str(raised.value) == f"{path}: not a Great Expectations expectation suite: {problem}"


def test_a_document_that_is_not_a_suite_is_refused_when_converted_too() -> None:
    with pytest.raises(DqAgentError) as raised:
        suite_from_gx({"results": []}, connector="warehouse", table="orders")
    assert str(raised.value) == "not a Great Expectations expectation suite: no expectations list"


_TEXT = st.text(max_size=30)
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(name=_TEXT.filter(bool), value=_VALUES, note=_TEXT, meta=st.dictionaries(_TEXT, _VALUES))
def test_any_value_round_trips_and_any_note_stays_a_comment(
    name: str, value: Any, note: str, meta: dict[str, Any]
) -> None:
    kwargs = {"column": "id", "meta": {"value": value}, "description": note}
    document = {
        "name": name,
        "expectations": [
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": kwargs,
                "notes": note,
                "meta": meta,
            }
        ],
    }

    converted = suite_from_gx(document, connector="warehouse", table="orders")

    assert yaml.safe_load(converted.yaml)["checks"] == [
        {"expect_column_values_to_not_be_null": kwargs}
    ]


def test_a_suite_saved_by_great_expectations_itself_converts_and_runs(tmp_path: Path) -> None:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    context = gx.get_context(mode="ephemeral")
    suite = context.suites.add(gx.ExpectationSuite(name="orders"))
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeNull(column="status", row_condition=Column("id") == 4)
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToNotBeNull(column="status", notes="Ops fills it", severity="warning")
    )
    suite.add_expectation(
        gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, max_value=50)
    )
    path = tmp_path / "orders.json"
    path.write_text(json.dumps(suite.to_json_dict()), encoding="utf-8")

    converted = suite_from_gx(read_gx_suite(path), connector="warehouse", table="orders")

    assert converted.skipped == ()
    assert converted.yaml.splitlines()[3:] == [
        "checks:",
        "  - expect_column_values_to_be_null:",
        "      column: status",
        '      row_condition: col("id") == 4',
        "      condition_parser: great_expectations",
        "  # note: Ops fills it",
        "  - expect_column_values_to_not_be_null: {column: status, severity: warn}",
        "  - expect_column_values_to_be_between: {column: amount, min_value: 0.0, max_value: 50.0}",
    ]
    assert statuses(run_converted(tmp_path, converted)) == {
        "expect_column_values_to_be_null(status)": "pass",
        "expect_column_values_to_not_be_null(status)": "warn",
        "expect_column_values_to_be_between(amount)": "fail",
    }


def test_dq_agent_import_gx_writes_the_suite_into_the_project(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from dq_agent.cli import main

    # The project and its orders table, with no suite yet.
    project = orders_project(
        tmp_path, suite_from_gx(GX1_SUITE, connector="warehouse", table="orders")
    )
    (project / "checks" / "orders.yml").unlink()
    saved = tmp_path / "orders.json"
    saved.write_text(json.dumps(GX1_SUITE))
    command = ["import", "gx", str(saved), "--project", str(project)]
    command += ["--connector", "warehouse", "--table", "orders", "--owner", "ana@acme.com"]
    done = CliRunner().invoke(main, command)
    assert done.exit_code == 0, done.output
    written = project / "checks" / "orders_daily_checks.yml"
    assert done.stdout.splitlines() == [
        f"wrote {written}",
        f"next: dq-agent validate --project {project}",
    ]
    loaded = load_project(project, env={})
    assert loaded.issues == ()
    assert loaded.suites["orders_daily_checks"].owner == ("ana@acme.com",)
    # Once written, it is not overwritten.
    again = CliRunner().invoke(main, command)
    assert again.exit_code == 3
    assert f"error: {written} is there already: --suite to name another" in again.stderr
