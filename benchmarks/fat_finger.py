"""Benchmark: the fat_finger check on labelled order lines built from real data.

Builds order lines (quantity × unit_price = amount) from two real data sets (see
``fat_finger_data``): diamond prices with journal holdings (whole dollars), and Australia's
PBS prescriptions (scripts and cost per script, in cents). Injects typing slips of every
pattern, genuine large orders, mistyped inputs, missing inputs and non-typo discrepancies,
loads each data set into a temporary SQLite file and runs the real check through the engine,
as ``dq-agent check`` would:

    fat_finger: {column: amount, witness: "quantity * unit_price", auto_correct: true,
                 peers: {group_by: [product]}}

For each data set it prints a table per injection type and the targets:

- no wrong auto-correction, on any record (a value or column other than the truth);
- auto-correct recall ≥ 0.97 on clear slips: those the clean data alone pins on the amount
  (``fat_finger_data.label_clear``); recall on all slips is printed beside it;
- detection recall ≥ 0.95 over every bad record (slips, mistyped inputs, slips with a missing
  input, discounts, random edits);
- findings on ≤ 0.2% of clean rows;
- no genuine large order (whale) auto-corrected or proposed.

A miss is reported, not an error.

Usage: ``.venv/bin/python benchmarks/fat_finger.py [--dataset {diamonds,pbs,all}] [--rows N]
[--per-type N] [--seed N]``
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.fat_finger_data import (  # noqa: E402
    INJECTIONS,
    INPUTS,
    SLIPS,
    SOURCES,
    MissingData,
    Order,
    Source,
    clean_orders,
    inject,
    label_clear,
)
from dq_agent.config import load_project  # noqa: E402
from dq_agent.engine import RunOptions, run_checks  # noqa: E402
from dq_agent.results import CheckResult, Finding  # noqa: E402

MAX_WRONG_AUTO = 0
MIN_CLEAR_AUTO_RECALL = 0.97
MIN_DETECTION_RECALL = 0.95
MAX_CLEAN_FINDING_RATE = 0.002
MAX_WHALES_TOUCHED = 0

# Bad records: the amount (or an input) is wrong. Whales and missing inputs with the amount
# right are genuine.
BAD = tuple(k for k in INJECTIONS if k not in ("whale", "missing_witness"))

SUITE = """\
suite: orders
source: {connector: warehouse, table: orders}
key: [id]
max_findings: 10000
checks:
  - fat_finger:
      column: amount
      witness: "quantity * unit_price"
      auto_correct: true
      peers: {group_by: [product]}
"""

ORDERS = sa.Table(
    "orders",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("product", sa.String(40), nullable=False),
    sa.Column("quantity", sa.Integer),
    sa.Column("unit_price", sa.Numeric(12, 2)),
    sa.Column("amount", sa.Numeric(16, 2)),
)


@dataclass
class Tally:
    """How one injection type (or the clean rows) fared."""

    records: int = 0
    flagged: int = 0
    auto: int = 0
    propose: int = 0
    report: int = 0
    right_fix: int = 0  # the finding proposes exactly the value the record should hold
    right_auto: int = 0
    wrong_auto: int = 0
    clear: int = 0  # slips the clean data pins on the amount
    clear_right_auto: int = 0


@dataclass(frozen=True)
class Outcome:
    """One data set's run: which targets it met, and how long it took."""

    dataset: str
    targets: list[tuple[str, bool]]
    seconds: float


class CannotRun(Exception):
    """The data set could not be built, checked or scored."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=[*SOURCES, "all"], default="all")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--per-type", type=int, default=150)
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args(argv)

    names = list(SOURCES) if args.dataset == "all" else [args.dataset]
    outcomes: list[Outcome] = []
    for i, name in enumerate(names):
        if i:
            print()
        started = time.perf_counter()
        try:
            targets = _benchmark(name, args)
        except (MissingData, CannotRun) as exc:
            print(f"== {name}: cannot run: {exc}")
            continue
        outcomes.append(Outcome(name, targets, time.perf_counter() - started))

    print()
    width = max(len(name) for name in names) + 1
    for outcome in outcomes:
        missed = [target for target, ok in outcome.targets if not ok]
        print(
            f"summary  {outcome.dataset + ':':<{width}} {len(outcome.targets) - len(missed)} of "
            f"{len(outcome.targets)} targets met"
            + (f" (MISS {', '.join(missed)})" if missed else "")
            + f", {outcome.seconds:.1f}s"
        )
    return 0 if len(outcomes) == len(names) else 1


def _benchmark(name: str, args: argparse.Namespace) -> list[tuple[str, bool]]:
    """Build, check and score one data set; print its report and return its targets."""
    source = SOURCES[name]()
    rng = random.Random(args.seed)
    orders = clean_orders(source, args.rows, rng)
    inject(orders, args.per_type, rng)
    label_clear(orders)
    check, elapsed = _check(orders)
    if sum(check.observed["findings"].values()) > len(check.findings):
        raise CannotRun("findings were capped at max_findings; use fewer --per-type")
    return _report(source, orders, check, elapsed, args)


def _check(orders: list[Order]) -> tuple[CheckResult, float]:
    with tempfile.TemporaryDirectory(prefix="dq-fat-finger-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'orders.db'}"
        _load(url, orders)
        _project(root, url)
        project = load_project(root, env={})
        if project.issues:
            raise CannotRun("; ".join(str(i) for i in project.issues))
        started = time.perf_counter()
        [suite] = run_checks(project, ["orders"], options=RunOptions())
        elapsed = time.perf_counter() - started
    if suite.error or suite.checks[0].status == "error":
        raise CannotRun(suite.error or suite.checks[0].message)
    return suite.checks[0], elapsed


def _load(url: str, orders: list[Order]) -> None:
    engine = sa.create_engine(url)
    try:
        ORDERS.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                ORDERS.insert(),
                [
                    {
                        "id": o.id,
                        "product": o.product,
                        "quantity": o.quantity,
                        "unit_price": o.unit_price,
                        "amount": o.amount,
                    }
                    for o in orders
                ],
            )
    finally:
        engine.dispose()


def _project(root: Path, url: str) -> None:
    (root / "connectors").mkdir()
    (root / "checks").mkdir()
    (root / "connectors" / "warehouse.yml").write_text(f"type: sql\nurl: '{url}'\n")
    (root / "checks" / "orders.yml").write_text(SUITE)
    (root / "dq-agent.yml").write_text(f"state_url: 'sqlite:///{root / 'state.db'}'\n")


def _score(orders: list[Order], findings: dict[int, Finding]) -> dict[str, Tally]:
    tallies = {kind: Tally() for kind in ("clean", *INJECTIONS)}
    for order in orders:
        tally = tallies[order.injection or "clean"]
        tally.records += 1
        tally.clear += bool(order.clear)
        finding = findings.get(order.id)
        if finding is None:
            continue
        tally.flagged += 1
        right = _right_fix(order, finding)
        tally.right_fix += right
        if finding.action == "auto_correct":
            tally.auto += 1
            tally.right_auto += right
            tally.wrong_auto += not right
            tally.clear_right_auto += right and bool(order.clear)
        elif finding.action == "propose":
            tally.propose += 1
        else:
            tally.report += 1
    return tallies


def _right_fix(order: Order, finding: Finding) -> bool:
    """Whether the finding proposes exactly the value the record should hold."""
    if finding.proposed is None:
        return False
    proposed = _decimal(finding.proposed)
    if order.true_amount is not None:
        return finding.column == "amount" and proposed == order.true_amount
    if order.true_input is not None:
        column, value = order.true_input
        return finding.column == column and proposed == value
    return False


def _decimal(value: Any) -> Decimal:
    # A float by its shortest text, so 1234.56 reads as 1234.56.
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def _report(
    source: Source,
    orders: list[Order],
    check: CheckResult,
    elapsed: float,
    args: argparse.Namespace,
) -> list[tuple[str, bool]]:
    findings = {int(f.key["id"]): f for f in check.findings}
    tallies = _score(orders, findings)
    print(
        f"== {source.name}: {len(orders):,} order lines ({source.description}), "
        f"{args.per_type} injections per type, seed {args.seed}"
    )
    print(f"check: {check.status}, {check.message}")
    print(f"engine run: {elapsed:.2f}s on SQLite\n")

    header = f"{'records':<24}{'n':>6}{'found':>8}{'auto':>7}{'propose':>9}{'report':>8}"
    header += f"{'right fix':>11}{'wrong auto':>12}{'clear fixed':>13}"
    print(header)
    print("-" * len(header))
    for kind, tally in tallies.items():
        found = tally.flagged / tally.records if tally.records else 0.0
        right = f"{tally.right_fix / tally.flagged:.0%}" if tally.flagged else "-"
        fixed = f"{tally.clear_right_auto}/{tally.clear}" if kind in SLIPS else "-"
        print(
            f"{kind:<24}{tally.records:>6}{found:>8.1%}{tally.auto:>7}{tally.propose:>9}"
            f"{tally.report:>8}{right:>11}{tally.wrong_auto:>12}{fixed:>13}"
        )
    print("  found: share of records with a finding; right fix: findings proposing exactly the")
    print("  value the record (or its mistyped input) should hold; clear fixed: clear slips")
    print("  auto-corrected right / clear slips (the clean data alone pins them on the amount)\n")

    slips = [o for o in orders if o.injection in SLIPS]
    slip_right = sum(tallies[k].right_auto for k in SLIPS)
    clear = sum(tallies[k].clear for k in SLIPS)
    clear_right = sum(tallies[k].clear_right_auto for k in SLIPS)
    unclear = Counter(o.notes["clear"] for o in slips if not o.clear)
    autos = sum(t.auto for t in tallies.values())
    right_autos = sum(t.right_auto for t in tallies.values())
    wrong_autos = sum(t.wrong_auto for t in tallies.values())
    bad = sum(tallies[k].records for k in BAD)
    detected = sum(tallies[k].flagged for k in BAD)
    clean = tallies["clean"]
    whales = [o for o in orders if o.injection == "whale"]
    touched = sum(1 for o in whales if o.id in findings and findings[o.id].action != "report")
    missing = tallies["missing_witness"]

    precision = right_autos / autos if autos else 1.0
    recall = slip_right / len(slips) if slips else 0.0
    clear_recall = clear_right / clear if clear else 0.0
    detection = detected / bad if bad else 0.0
    clean_rate = clean.flagged / clean.records if clean.records else 0.0
    print(f"findings by action: {dict(sorted(Counter(f.action for f in check.findings).items()))}")
    print(f"auto-correct precision: {precision:.4f} ({right_autos} right of {autos})")
    print(
        f"auto-correct recall:    {recall:.4f} on all slips ({slip_right} of {len(slips)}), "
        f"{clear_recall:.4f} on clear slips ({clear_right} of {clear})"
    )
    print(
        f"  slips not clear: {len(slips) - clear} ({unclear['input untypical']} with an input "
        f"untypical, {unclear['other story typical']} where a mistyped input would be typical too)"
    )
    print(f"detection recall:       {detection:.4f} ({detected} of {bad} bad records)")
    print("  missing_witness+slip: " + _by_null(orders, findings))
    print(
        f"findings on clean rows: {clean.flagged} of {clean.records:,} ({clean_rate:.4%})\n"
        f"whales auto-corrected or proposed: {touched} of {len(whales)}; "
        f"missing_witness (amount right) with a finding: {missing.flagged} of {missing.records}\n"
    )
    targets = [
        (
            "wrong auto-corrections",
            f"{wrong_autos}",
            f"= {MAX_WRONG_AUTO}",
            wrong_autos <= MAX_WRONG_AUTO,
        ),
        (
            "auto-correct recall on clear slips",
            f"{clear_recall:.4f}",
            f">= {MIN_CLEAR_AUTO_RECALL}",
            clear_recall >= MIN_CLEAR_AUTO_RECALL,
        ),
        (
            "detection recall",
            f"{detection:.4f}",
            f">= {MIN_DETECTION_RECALL}",
            detection >= MIN_DETECTION_RECALL,
        ),
        (
            "findings on clean rows",
            f"{clean_rate:.4%}",
            f"<= {MAX_CLEAN_FINDING_RATE:.1%}",
            clean_rate <= MAX_CLEAN_FINDING_RATE,
        ),
        (
            "whales auto-corrected or proposed",
            f"{touched}",
            f"= {MAX_WHALES_TOUCHED}",
            touched <= MAX_WHALES_TOUCHED,
        ),
    ]
    for name, value, target, ok in targets:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {value} (target {target})")
    return [(name, ok) for name, _, _, ok in targets]


def _by_null(orders: list[Order], findings: dict[int, Finding]) -> str:
    """Detection of slips whose witness is missing, by which input is NULL."""
    parts = []
    for column in INPUTS:
        records = [
            o for o in orders if o.injection == "missing_witness+slip" and o.notes["null"] == column
        ]
        found = sum(o.id in findings for o in records)
        share = f"{found / len(records):.4f}" if records else "-"
        parts.append(f"{column} NULL {share} ({found} of {len(records)})")
    return "detection recall " + ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
