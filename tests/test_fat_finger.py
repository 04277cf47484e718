"""fat_finger: typing slips, the decision between auto-correct, propose and report, and the
running example's $10,000,000 opportunity, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.checks.fat_finger import Slip, classify
from dq_agent.checks.fat_finger.decide import (
    Implied,
    Peer,
    Unwitnessed,
    Witnessed,
    judge_unwitnessed,
    judge_witnessed,
)
from dq_agent.checks.fat_finger.peers import BINS_PER_DECADE, MIN_PEERS, Spread, survey
from dq_agent.expressions import parse
from dq_agent.results import CheckResult, Finding
from dq_agent.sources.base import Relation
from dq_agent_sandbox.warehouse import build_demo_warehouse
from tests.sources import load_orders, run_one

D = Decimal

# --- slips ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("observed", "expected", "slip"),
    [
        ("10000000", "1000000", Slip("power_of_ten", exponent=1)),
        ("1000000000", "1000000", Slip("power_of_ten", exponent=3)),
        ("250", "2500", Slip("power_of_ten", exponent=-1)),
        ("-500", "-50", Slip("power_of_ten", exponent=1)),
        ("12345", "1234.5", Slip("decimal_shift", exponent=1)),
        ("12.345", "1234.5", Slip("decimal_shift", exponent=-2)),
        ("2.5", "25", Slip("decimal_shift", exponent=-1)),
        ("12234", "1234", Slip("digit_duplicated", digits="2")),
        ("12.55", "12.5", Slip("digit_duplicated", digits="5")),
        ("124", "1234", Slip("digit_dropped", digits="3")),
        ("23", "1023", Slip("digit_dropped", digits="1")),  # the leading 0 vanishes with the 1
        ("1324", "1234", Slip("digits_transposed", digits="23")),
        ("12600", "21600", Slip("digits_transposed", digits="21")),
        ("1000000.00", "100000", Slip("power_of_ten", exponent=1)),  # trailing zeros do not count
        # Cents typed in the wrong order: 593,451.20 is the value meant, as typed.
        ("593451.02", "593451.2", Slip("digits_transposed", digits="20")),
    ],
)
def test_every_typing_slip_is_recognised(observed: str, expected: str, slip: Slip) -> None:
    assert classify(D(observed), D(expected), 3) == slip


@pytest.mark.parametrize(
    ("observed", "expected", "max_magnitude"),
    [
        ("7000", "1000", 3),  # × 7
        ("1001", "1000", 3),  # + 1
        ("2000", "1000", 3),  # × 2
        ("10000000", "1000", 3),  # × 10^4 is beyond max_magnitude
        ("100000", "1000", 1),
        ("1234", "1234.00", 3),  # the same value
        ("-1000", "1000", 3),  # a sign is no slip
        ("0", "1000", 3),
        ("1000", "0", 3),
        ("1342", "1234", 3),  # two digits moved
        ("1235", "1234", 3),  # a digit changed
        ("12", "1234", 3),  # two digits dropped
    ],
)
def test_near_misses_are_not_slips(observed: str, expected: str, max_magnitude: int) -> None:
    assert classify(D(observed), D(expected), max_magnitude) is None


def test_slips_read_as_sentences() -> None:
    witness = "witness Seats__c * Price_Per_Seat__c"
    sentences = [
        (
            Slip("power_of_ten", exponent=1),
            "observed = 10 × " + witness,
            "one zero too many (× 10)",
        ),
        (
            Slip("power_of_ten", exponent=-3),
            f"observed = {witness} ÷ 1,000",
            "3 zeros too few (÷ 1,000)",
        ),
        (
            Slip("decimal_shift", exponent=-2),
            f"observed = {witness} with the decimal point moved 2 places left",
            "decimal point moved 2 places left (÷ 100)",
        ),
        (
            Slip("digit_duplicated", digits="6"),
            f"observed = {witness} with the digit 6 typed twice",
            "digit 6 typed twice",
        ),
        (
            Slip("digit_dropped", digits="6"),
            f"observed = {witness} with the digit 6 left out",
            "digit 6 left out",
        ),
        (
            Slip("digits_transposed", digits="21"),
            f"observed = {witness} with the adjacent digits 2 and 1 swapped",
            "digits 2 and 1 swapped",
        ),
    ]
    for slip, sentence, label in sentences:
        assert (slip.describe(witness), slip.label) == (sentence, label)


# --- the decision, on a table of deals ----------------------------------------------------------

DEALS = sa.Table(
    "deals",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product", sa.String(20)),
    sa.Column("seats", sa.Integer),
    sa.Column("price", sa.Numeric(12, 2)),
    sa.Column("amount", sa.Numeric(16, 2)),
)


def deal(id: int, seats: int | None, price: int, amount: int, product: str) -> dict[str, Any]:
    return {"id": id, "product": product, "seats": seats, "price": D(price), "amount": D(amount)}


def clean_deals() -> list[dict[str, Any]]:
    """60 consistent deals: 10 to 40 seats at $500 (basic) or $1,200 (pro)."""
    rows = []
    for i in range(1, 61):
        seats = [10, 12, 15, 18, 20, 20, 22, 25, 30, 40][i % 10]
        price, product = (500, "basic") if i % 2 else (1200, "pro")
        rows.append(deal(i, seats, price, seats * price, product))
    return rows


# One record per branch of the decision; the comment says what happened to it.
SCENARIOS = [
    deal(101, 12, 500, 60_000, "basic"),  # amount typed with one zero too many
    deal(102, 18, 1200, 12_600, "pro"),  # 21,600 with 2 and 1 swapped
    deal(103, 18, 1200, 216_600, "pro"),  # 21,600 with a 6 typed twice
    deal(104, 18, 1200, 2_100, "pro"),  # 21,600 with the 6 left out
    deal(105, 200, 500, 10_000, "basic"),  # seats typed 200 for 20: the amount is right
    deal(106, 2000, 500, 10_000_000, "basic"),  # × 10 of a witness whose seats are an outlier
    deal(107, 2000, 1200, 2_400_000, "pro"),  # a genuine whale: seats × price agree
    deal(108, 20, 1200, 21_600, "pro"),  # a 10% discount: a discrepancy, not a slip
    deal(109, None, 500, 10_000, "basic"),  # no seats, a typical amount
    deal(110, None, 1200, 12_000_000, "pro"),  # no seats, 1,000 × a typical amount
]

SUITE = """
suite: deals
source: {connector: warehouse, table: deals}
key: [id]
checks:
  - fat_finger: {column: amount, witness: "seats * price", auto_correct: true}
"""


def fat_finger(tmp_path: Path, url: str, suite: str = SUITE, **kwargs: Any) -> CheckResult:
    [check] = run_one(tmp_path, url, suite, **kwargs).checks
    return check


def summary(findings: tuple[Finding, ...]) -> list[tuple[Any, ...]]:
    return [
        (f.key["id"], f.column, f.observed, f.proposed, f.action, f.confidence, f.reason)
        for f in findings
    ]


WITH_WITNESS = [
    (101, "amount", 60000, 6000, "auto_correct", 0.99, "observed = 10 × witness seats * price"),
    (
        102,
        "amount",
        12600,
        21600,
        "auto_correct",
        0.99,
        "observed = witness seats * price with the adjacent digits 2 and 1 swapped",
    ),
    (
        103,
        "amount",
        216600,
        21600,
        "auto_correct",
        0.99,
        "observed = witness seats * price with the digit 6 typed twice",
    ),
    (
        104,
        "amount",
        2100,
        21600,
        "auto_correct",
        0.99,
        "observed = witness seats * price with the digit 6 left out",
    ),
    (
        105,
        "seats",
        200,
        20,
        "propose",
        0.8,
        "seats looks mistyped: with 20 instead of 200 the witness seats * price equals "
        "amount 10,000",
    ),
    (
        106,
        "amount",
        10000000,
        1000000,
        "propose",
        0.6,
        "observed = 10 × witness seats * price",
    ),
    (
        110,
        "amount",
        12000000,
        12000,
        "propose",
        0.5,
        "observed = 1,000 × 12,000, at which seats would be 10, typical among all rows",
    ),
    (
        108,
        "amount",
        21600,
        None,
        "report",
        0.3,
        "observed 21,600 ≠ witness seats * price = 24,000, and not by a typing slip",
    ),
]


def test_each_record_gets_the_action_its_evidence_allows(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    check = fat_finger(tmp_path, engine_url)
    assert check.status == "fail"
    assert check.message == (
        "5 values are a typing slip away from their witness; 1 witness input looks mistyped; "
        "1 value disagrees with its witness beyond a typing slip; "
        "1 value is a power of ten away from its peers (no witness)"
    )
    assert check.observed == {
        "rows": 70,
        "analysed": 70,
        "suspicious": 8,
        "examined": 8,
        "limit_hit": False,
        "findings": {"auto_correct": 4, "propose": 3, "report": 1},
        "with_witness": 68,
        "without_witness": 2,
        "history": "not available: SQL sources keep no record history",
    }
    assert check.metrics == {
        "rows": 70.0,
        "suspicious": 8.0,
        "auto_correct": 4.0,
        "propose": 3.0,
        "report": 1.0,
    }
    # Auto-corrections first, then by confidence; the whale (107) and the typical amount
    # without seats (109) are no findings at all.
    assert summary(check.findings) == WITH_WITNESS


def test_auto_correct_off_proposes_the_witness_value(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    check = fat_finger(
        tmp_path, engine_url, SUITE.replace("auto_correct: true", "auto_correct: false")
    )
    assert check.observed["findings"] == {"auto_correct": 0, "propose": 7, "report": 1}
    [first, *_] = check.findings
    assert (first.key, first.action, first.proposed, first.confidence) == (
        {"id": 101},
        "propose",
        6000,
        0.99,
    )
    assert first.evidence[-1] == "auto_correct is off for this check: proposing instead"


def test_the_evidence_says_what_an_owner_can_check(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    findings = {f.key["id"]: f for f in fat_finger(tmp_path, engine_url).findings}
    assert findings[101].evidence == (
        "witness seats * price = 6,000 with price = 500, seats = 12",
        "amount 60,000 against 6,000: one zero too many (× 10)",
        "price = 500 is typical among all rows (robust z -1.3; median 1,200, middle half "
        "500–1,200, range 500–1,200, 70 values)",
        "seats = 12 is typical among all rows (robust z -1.3; median 20, middle half 15–25, "
        "range 10–2,000, 68 values)",
        "price = 5,000 would also explain it but is less likely (robust z +2.2 against -1.3 "
        "for the stored 500)",
        "seats = 120 would also explain it but is less likely (robust z +4.7 against -1.3 "
        "for the stored 12)",
        "amount among all rows: median 18,000, middle half 10,000–24,000, range "
        "2,100–12,000,000, 70 values; robust z -1.7 for the witness, +1.9 for the stored value",
    )
    # A quantity typed × 10 makes the witness wrong, not the amount.
    assert findings[105].evidence == (
        "witness seats * price = 100,000 with price = 500, seats = 200",
        "seats 200 against 20: one zero too many (× 10)",
        "seats = 200 is an outlier among all rows (robust z +6.1; median 20, middle half "
        "15–25, range 10–2,000, 68 values)",
        "seats = 20 is typical among all rows (robust z +0.0; median 20, middle half 15–25, "
        "range 10–2,000, 68 values)",
        "amount among all rows: median 18,000, middle half 10,000–24,000, range "
        "2,100–12,000,000, 70 values; robust z +2.6 for the witness, -0.9 for the stored value",
        "amount is left as it is: the witness, not amount, looks wrong",
    )
    assert (
        findings[106].evidence[2] == "seats = 2,000 is itself an outlier: the witness may be wrong"
    )
    assert findings[108].evidence[1] == "observed / witness = 0.9: no typing pattern"
    assert findings[110].evidence[0] == "no witness value: seats is null in this record"
    assert not any("history" in line for f in findings.values() for line in f.evidence)


def test_without_a_witness_peers_can_only_propose(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    suite = SUITE.replace(
        'witness: "seats * price", auto_correct: true', "peers: {group_by: [product]}"
    )
    check = fat_finger(tmp_path, engine_url, suite)
    assert check.message == "4 values are a power of ten away from their peers"
    assert check.observed["findings"] == {"auto_correct": 0, "propose": 4, "report": 0}
    assert "with_witness" not in check.observed
    assert [
        (f.key["id"], f.observed, f.proposed, f.action, f.confidence, f.reason)
        for f in check.findings
    ] == [
        (
            103,
            216600,
            21660,
            "propose",
            0.5,
            "observed = 10 × a typical value among rows with product = pro",
        ),
        (
            104,
            2100,
            21000,
            "propose",
            0.5,
            "observed = a typical value among rows with product = pro ÷ 10",
        ),
        (
            106,
            10000000,
            10000,
            "propose",
            0.5,
            "observed = 1,000 × a typical value among rows with product = basic",
        ),
        (
            107,
            2400000,
            24000,
            "propose",
            0.5,
            "observed = 100 × a typical value among rows with product = pro",
        ),
    ]
    assert check.findings[0].evidence == (
        "no witness configured: judged against its peers alone",
        "amount = 216,600 is an outlier among rows with product = pro (robust z +7.7; median "
        "24,000, middle half 18,000–26,400, range 2,100–12,000,000, 36 values)",
        "amount ÷ 10 = 21,660 is typical among rows with product = pro (robust z -0.4; median "
        "24,000, middle half 18,000–26,400, range 2,100–12,000,000, 36 values)",
        "peers alone never justify a correction: proposing for an owner to confirm",
    )


def test_clean_data_and_genuine_whales_pass(tmp_path: Path, engine_url: str) -> None:
    whales = [deal(201, 2000, 1200, 2_400_000, "pro"), deal(202, 400, 500, 200_000, "basic")]
    load_orders(engine_url, clean_deals() + whales, DEALS)
    check = fat_finger(tmp_path, engine_url)
    assert (check.status, check.message, check.findings) == ("pass", "no slips among 62 rows", ())
    assert check.observed["suspicious"] == 0


def test_records_without_a_witness_value_are_left_to_peers(tmp_path: Path, engine_url: str) -> None:
    nulls = [deal(301, None, 500, 10_000, "basic"), deal(302, None, 1200, 24_000, "pro")]
    load_orders(engine_url, clean_deals() + nulls, DEALS)
    check = fat_finger(tmp_path, engine_url)
    assert (check.status, check.message) == ("pass", "no slips among 62 rows")
    assert (check.observed["with_witness"], check.observed["without_witness"]) == (60, 2)


def test_a_record_without_a_witness_value_is_judged_by_the_input_it_implies(
    tmp_path: Path, engine_url: str
) -> None:
    odd = [
        # No seats: 1,234 at $500 a seat would be 2.468 seats.
        deal(311, None, 500, 1_234, "basic"),
        # No price: 20 seats for 100,000 would be $5,000 a seat, beyond any price here;
        # 10,000 makes it $500.
        {**deal(312, 20, 0, 100_000, "basic"), "price": None},
    ]
    load_orders(engine_url, clean_deals() + odd, DEALS)
    check = fat_finger(tmp_path, engine_url)
    assert summary(check.findings) == [
        (
            312,
            "amount",
            100000,
            10000,
            "propose",
            0.5,
            "observed = 10 × 10,000, at which price would be 500, typical among all rows",
        ),
        (
            311,
            "amount",
            1234,
            None,
            "report",
            0.3,
            "amount 1,234 is the witness for no whole seats (seats would be 2.468)",
        ),
    ]
    assert check.message == (
        "1 value implies a witness input no record can hold; "
        "1 value is a power of ten away from its peers (no witness)"
    )


def test_findings_are_capped_but_counts_are_complete(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    check = fat_finger(
        tmp_path, engine_url, SUITE.replace("key: [id]", "key: [id]\nmax_findings: 2")
    )
    assert [f.key["id"] for f in check.findings] == [101, 102]
    assert check.observed["findings"] == {"auto_correct": 4, "propose": 3, "report": 1}
    assert check.message.startswith("5 values are a typing slip away from their witness")


def test_the_analysis_is_bounded_and_says_so(
    tmp_path: Path, engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("dq_agent.checks.fat_finger.check.MAX_ANALYSED", 3)
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    check = fat_finger(tmp_path, engine_url)
    # The first three by key; the count still covers every suspicious record.
    assert check.message == (
        "3 values are a typing slip away from their witness "
        "(examined the first 3 of 8 suspicious rows)"
    )
    assert (check.observed["examined"], check.observed["limit_hit"]) == (3, True)


def test_the_table_is_never_pulled(tmp_path: Path, engine_url: str) -> None:
    load_orders(engine_url, clean_deals() + SCENARIOS, DEALS)
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    try:
        fat_finger(tmp_path, engine_url)
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", record)
    reads = [s for s in statements if "FROM deals" in s]
    # The suite's shared scan (which counts for the check too), one aggregate for the peers
    # and one bounded read of the candidates: no window sorts, nothing row by row.
    assert len(reads) == 3, reads
    for statement in reads:
        assert "count(" in statement.lower() or "LIMIT" in statement, statement
        assert " OVER " not in statement.upper(), statement


def test_missing_or_unsuitable_columns_are_errors_that_name_them(
    tmp_path: Path, engine_url: str
) -> None:
    load_orders(engine_url, clean_deals(), DEALS)
    available = "available: id, product, seats, price, amount"
    missing = fat_finger(
        tmp_path,
        engine_url,
        SUITE.replace('"seats * price"', '"seat_count * list_price"').replace(
            "auto_correct: true", "peers: {group_by: [region]}"
        ),
    )
    assert (missing.status, missing.message) == (
        "error",
        f"column(s) list_price, seat_count, region not found in deals; {available}",
    )
    text = fat_finger(tmp_path, engine_url, SUITE.replace('"seats * price"', '"seats * product"'))
    assert (text.status, text.message) == (
        "error",
        "column product is string: fat_finger needs numbers",
    )
    unkeyed = fat_finger(
        tmp_path,
        engine_url,
        SUITE.replace("table: deals}", "query: 'SELECT seats, price, amount FROM deals'}").replace(
            "key: [id]\n", ""
        ),
    )
    assert (unkeyed.status, unkeyed.message) == (
        "error",
        "fat_finger needs to identify records: set key: on the suite (query has no primary key)",
    )


# --- decisions that need no table ---------------------------------------------------------------


def spread(median: str, q1: str, q3: str) -> Spread:
    return Spread(100, D(q1), D(q1), D(median), D(q3), D(q3))


def witnessed(**changes: Any) -> Witnessed:
    base: dict[str, Any] = {
        "column": "amount",
        "observed": D("12345"),
        "witness": parse("seats * price"),
        "value": D("1234.5"),
        "exact": True,
        "inputs": {"seats": D(3), "price": D("411.50")},
        "column_peer": Peer(spread("1500", "1000", "2000"), "all rows"),
        "input_peers": {
            "seats": Peer(spread("3", "2", "4"), "all rows"),
            "price": Peer(spread("400", "300", "500"), "all rows"),
        },
        "input_places": {"seats": 0, "price": 2},
        "tolerance": D("0.005"),
        "max_magnitude": 3,
        "auto_correct": True,
    }
    return Witnessed(**{**base, **changes})


def test_a_decimal_point_shift_is_auto_corrected_when_the_witness_is_trusted() -> None:
    judged = judge_witnessed(witnessed())
    assert (judged.action, judged.proposed, judged.reason) == (
        "auto_correct",
        D("1234.5"),
        "observed = witness seats * price with the decimal point moved 1 place right",
    )
    assert (
        judged.evidence[1]
        == "amount 12,345 against 1,234.5: decimal point moved 1 place right (× 10)"
    )


def test_a_rounded_witness_pins_no_exact_value() -> None:
    judged = judge_witnessed(witnessed(exact=False, value=D("1234.5000001")))
    assert (judged.action, judged.proposed, judged.confidence) == ("propose", D("1234.50"), 0.6)
    assert judged.evidence[2] == (
        "the witness 1,234.5000001 is rounded (a division): it pins no exact value"
    )


def test_without_peers_for_an_input_the_witness_is_not_vouched_for() -> None:
    peers = {
        "seats": Peer(None, "all rows"),
        "price": Peer(spread("400", "300", "500"), "all rows"),
    }
    judged = judge_witnessed(witnessed(input_peers=peers))
    assert (judged.action, judged.confidence) == ("propose", 0.6)
    assert judged.evidence[2] == "too few peers to vouch for seats = 3"


def test_a_slip_is_clear_when_the_other_story_is_a_far_less_likely_value() -> None:
    # Seats 0.3 (the story "seats was typed × 10") would explain 1,234.5 as well, and a
    # small value is cheap to type: still, 0.3 seats is far from any number of seats seen.
    peers = {
        "seats": Peer(spread("3", "2.5", "3.5"), "all rows"),
        "price": Peer(spread("4115", "4000", "4200"), "all rows"),
    }
    judged = judge_witnessed(
        witnessed(
            observed=D("1234.5"),
            value=D("12345"),
            inputs={"seats": D(3), "price": D("4115")},
            input_peers=peers,
            input_places={"seats": 1, "price": 2},
        )
    )
    assert (judged.action, judged.proposed) == ("auto_correct", D("12345"))
    assert judged.confidence >= 0.95


def unwitnessed(observed: str, **changes: Any) -> Unwitnessed:
    seats = Peer(Spread(100, D(2), D(10), D(20), D(30), D(40)), "all rows")
    base: dict[str, Any] = {
        "column": "amount",
        "observed": D(observed),
        "peer": Peer(Spread(100, D(1000), D(5000), D(10000), D(15000), D(20000)), "all rows"),
        "places": 2,
        # amount = seats × 500 with seats null: 0 + 500 × seats.
        "implied": (Implied("seats", D(0), D(500), seats, 0),),
        "tolerance": D("0.005"),
        "max_magnitude": 3,
        "why_no_witness": "no witness value: seats is null in this record",
    }
    return Unwitnessed(**{**base, **changes})


def test_without_a_witness_value_the_implied_input_is_judged() -> None:
    # 10,000 implies 20 seats: typical, nothing to say.
    assert judge_unwitnessed(unwitnessed("10000")) is None
    # 1,000 (typed for 10,000) implies 2 seats, at the edge of what peers hold: fine.
    assert judge_unwitnessed(unwitnessed("1000")) is None
    # 1,234 implies 2.468 seats, and no power of ten makes it a whole number of seats.
    judged = judge_unwitnessed(unwitnessed("1234"))
    assert judged is not None
    assert (judged.category, judged.action, judged.proposed, judged.reason) == (
        "impossible_input",
        "report",
        None,
        "amount 1,234 is the witness for no whole seats (seats would be 2.468)",
    )
    # 1,250 implies 2.5 seats; × 10 makes it 12,500 and 25 seats: typical.
    judged = judge_unwitnessed(unwitnessed("1250"))
    assert judged is not None
    assert (judged.action, judged.proposed, judged.reason) == (
        "propose",
        D("12500"),
        "observed = 12,500 ÷ 10, at which seats would be 25, typical among all rows",
    )
    # 100,000 is a typical amount for no one here, and 200 seats beyond what anyone bought.
    judged = judge_unwitnessed(unwitnessed("100000"))
    assert judged is not None
    assert (judged.action, judged.proposed) == ("propose", D("10000"))
    assert "seats would be 200, beyond the range of seats among all rows" in judged.evidence


def test_without_a_witness_or_an_input_to_imply_only_typical_values_are_proposed() -> None:
    alone = {"implied": (), "why_no_witness": "no witness configured"}
    assert judge_unwitnessed(unwitnessed("1234", **alone)) is None
    # 100,000 alone is no outlier among amounts (it is, through the seats it implies).
    assert judge_unwitnessed(unwitnessed("100000", **alone)) is None
    judged = judge_unwitnessed(unwitnessed("1000000", **alone))
    assert judged is not None
    assert (judged.action, judged.proposed, judged.reason) == (
        "propose",
        D("10000"),
        "observed = 100 × a typical value among all rows",
    )


# --- the peers: one aggregate query --------------------------------------------------------------


def test_peer_summaries_come_from_one_aggregate_and_are_close_to_exact(
    engine_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(7)
    rows = []
    for i in range(1, 2001):
        product = "list" if i % 2 else "spread"
        # A price list (few distinct prices) and a wide log-normal spread.
        price = (
            D(rng.choice([500, 1200, 1500]))
            if product == "list"
            else D(f"{10 ** rng.gauss(3, 0.6):.2f}")
        )
        rows.append({"id": i, "product": product, "seats": 1, "price": price, "amount": price})
    load_orders(engine_url, rows, DEALS)
    engine = sa.create_engine(engine_url)
    try:
        relation = Relation(engine, DEALS, {}, ("id",), "deals", engine_url)
        surveyed = survey(relation, ["amount"], ["product"])
        # Over SAMPLE_VALUES rows, a random sample of about that many is surveyed (whole
        # pages of a PostgreSQL table: a few here, so the sample's size varies more).
        monkeypatch.setattr("dq_agent.checks.fat_finger.peers.SAMPLE_VALUES", 1000)
        sampled = survey(relation, ["amount"], ["product"], rows=len(rows))
    finally:
        engine.dispose()
    peers = surveyed.peers["amount"]
    # Half the prices have cents: the column uses two decimal places.
    assert surveyed.values["amount"] == 2000
    assert surveyed.beyond_places["amount"][2] == 0 < surveyed.beyond_places["amount"][1]
    for product in ("list", "spread"):
        values = sorted(r["amount"] for r in rows if r["product"] == product)
        n = len(values)
        got = peers.groups[(product,)]
        assert (got.count, got.low, got.high) == (n, values[0], values[-1])
        for found, rank in (
            (got.q1, (n - 1) // 4),
            (got.median, (n - 1) // 2),
            (got.q3, 3 * (n - 1) // 4),
        ):
            if product == "list":
                assert found == values[rank]  # one price to a bin: exact
            else:
                assert abs(math.log10(found / values[rank])) < 1 / BINS_PER_DECADE
    assert peers.overall is not None and peers.overall.count == 2000
    assert sampled.sampled == 0.5
    overall = sampled.peers["amount"].overall
    assert overall is not None and MIN_PEERS <= overall.count < 2000
    assert abs(math.log10(overall.median / peers.overall.median)) < 0.2


# --- the running example ------------------------------------------------------------------------

DEMO_NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DEMO_SUITE = """
suite: crm_opportunities
source: {connector: warehouse, table: opportunities}
key: [Id]
checks:
  - fat_finger:
      column: Amount
      witness: "Seats__c * Price_Per_Seat__c"
      auto_correct: true
"""


def demo_warehouse(tmp_path: Path, engine_url: str) -> None:
    """The demo's opportunities table in the test database."""
    built = build_demo_warehouse(tmp_path / "demo" / "warehouse.db", DEMO_NOW)
    source = sa.create_engine(f"sqlite:///{built}")
    target = sa.create_engine(engine_url)
    try:
        reflected = sa.Table("opportunities", sa.MetaData(), autoload_with=source)
        with source.connect() as conn:
            rows = [dict(r) for r in conn.execute(sa.select(reflected)).mappings()]
        metadata = sa.MetaData()
        table = sa.Table(
            "opportunities",
            metadata,
            *[
                sa.Column(c.name, c.type.as_generic(), primary_key=c.primary_key)
                for c in reflected.c
            ],
        )
        metadata.drop_all(target)
        metadata.create_all(target)
        with target.begin() as conn:
            conn.execute(table.insert(), rows)
    finally:
        source.dispose()
        target.dispose()


def test_the_ten_million_dollar_fat_finger_is_corrected_and_the_whale_left_alone(
    tmp_path: Path, engine_url: str
) -> None:
    demo_warehouse(tmp_path, engine_url)
    result = run_one(tmp_path, engine_url, DEMO_SUITE, now=DEMO_NOW)
    [check] = result.checks
    assert (result.status, check.name, check.message) == (
        "fail",
        "fat_finger(Amount)",
        "1 value is a typing slip away from its witness",
    )
    [finding] = check.findings
    doc = json.loads(json.dumps(finding.to_json()))
    evidence = doc.pop("evidence")
    assert doc == {
        "key": {"Id": "006Dn0000040000042"},
        "column": "Amount",
        "observed": 10000000,
        "proposed": 1000000,
        "action": "auto_correct",
        "confidence": 0.99,
        "reason": "observed = 10 × witness Seats__c * Price_Per_Seat__c",
    }
    assert evidence[:2] == [
        "witness Seats__c * Price_Per_Seat__c = 1,000,000 with Price_Per_Seat__c = 5,000, "
        "Seats__c = 200",
        "Amount 10,000,000 against 1,000,000: one zero too many (× 10)",
    ]
    assert check.observed["findings"] == {"auto_correct": 1, "propose": 0, "report": 0}
    assert (check.observed["rows"], check.observed["suspicious"]) == (1193, 1)


# --- the benchmark ------------------------------------------------------------------------------


def test_the_benchmark_runs_both_data_sets_end_to_end_on_a_small_sample() -> None:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "fat_finger.py"),
            "--rows",
            "3000",
            "--per-type",
            "20",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if line.startswith("== ")] == [
        "== diamonds",
        "== pbs",
    ]
    # Each data set prints its table and its five targets (met or missed), then a summary line.
    assert sum(line.startswith("slip:digits_transposed ") for line in lines) == 2
    targets = [line[6:].split(":")[0] for line in lines if line.startswith(("PASS  ", "MISS  "))]
    each = [
        "wrong auto-corrections",
        "auto-correct recall on clear slips",
        "detection recall",
        "findings on clean rows",
        "whales auto-corrected or proposed",
    ]
    assert targets == each * 2
    assert done.stdout.count("PASS  wrong auto-corrections: 0 (target = 0)") == 2
    assert [line.split()[1] for line in lines if line.startswith("summary ")] == [
        "diamonds:",
        "pbs:",
    ]


@pytest.mark.parametrize("server", ["sqlite", "postgres"])  # the others refuse such a value
def test_a_value_that_is_not_a_number_is_reported_and_the_others_judged(
    tmp_path: Path, request: pytest.FixtureRequest, server: str
) -> None:
    engine_url = str(request.getfixturevalue(f"{server}_url"))
    load_orders(engine_url, clean_deals() + SCENARIOS[:1], DEALS)
    # SQLite keeps text in a NUMERIC column; PostgreSQL keeps NaN.
    odd, shown = ("'abc'", "'abc'") if engine_url.startswith("sqlite") else ("'NaN'", "NaN")
    engine = sa.create_engine(engine_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"INSERT INTO deals VALUES (201, 'basic', 20, 500, {odd})"))
    engine.dispose()

    check = fat_finger(tmp_path, engine_url)

    assert check.status == "fail"
    assert check.message == (
        "1 value is a typing slip away from its witness; 1 record left out of the analysis: "
        f"record id=201: amount holds {shown}, not a number"
    )
    assert summary(check.findings) == [
        WITH_WITNESS[0],
        (
            201,
            "amount",
            shown.strip("'"),
            None,
            "report",
            None,
            f"amount holds {shown}, not a number",
        ),
    ]
    assert (check.observed["rows"], check.observed["not_numbers"]) == (62, 1)


@pytest.mark.parametrize("sql_type", ["numeric", "double precision"])
def test_infinities_are_not_numbers_on_postgresql_whatever_the_column_type(
    tmp_path: Path, postgres_url: str, sql_type: str
) -> None:
    # A NUMERIC(p, s) holds no infinity and is asked only for NaN; a NUMERIC without a
    # precision (PostgreSQL 14 on) and a double precision column hold both.
    load_orders(postgres_url, clean_deals() + SCENARIOS[:1], DEALS)
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"ALTER TABLE deals ALTER COLUMN amount TYPE {sql_type}, "
                f"ALTER COLUMN price TYPE {sql_type}"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO deals VALUES (201, 'basic', 20, 500, 'Infinity'), "
                "(202, 'pro', 10, '-Infinity', 12000), (203, 'pro', 10, 'NaN', 12000)"
            )
        )
    engine.dispose()

    check = fat_finger(tmp_path, postgres_url)

    # Read back as Decimal or as float, and shown as Python shows them.
    infinite, nan = ("Infinity", "NaN") if sql_type == "numeric" else ("inf", "nan")
    assert check.observed["not_numbers"] == 3
    assert [(f.key["id"], f.column, f.reason) for f in check.findings if f.action == "report"] == [
        (201, "amount", f"amount holds {infinite}, not a number"),
        (202, "price", f"price holds -{infinite}, not a number"),
        (203, "price", f"price holds {nan}, not a number"),
    ]
    # The other records are judged as ever: the slip of 101 is found.
    assert [f.key["id"] for f in check.findings if f.action == "auto_correct"] == [101]
