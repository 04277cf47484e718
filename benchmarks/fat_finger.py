"""Benchmark: the fat_finger check on labelled order lines built from real value distributions.

Builds order lines (quantity × unit_price = amount; see ``fat_finger_data``), injects typing
slips of every pattern, genuine large orders, mistyped inputs, missing inputs and non-typo
discrepancies, loads them into a temporary SQLite file and runs the real check through the
engine, as ``dq-agent check`` would:

    fat_finger: {column: amount, witness: "quantity * unit_price", auto_correct: true,
                 peers: {group_by: [product]}}

It prints auto-correct precision and recall, detection recall and the false-positive rate on
clean rows, per injection type, against the targets: no wrong auto-correction, auto-correct
recall ≥ 0.95, false positives ≤ 0.5% of clean rows. A miss is reported, not an error.

Usage: ``.venv/bin/python benchmarks/fat_finger.py [--rows N] [--per-type N] [--seed N]``
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.fat_finger_data import (  # noqa: E402
    DATA_PACKAGE,
    INJECTIONS,
    SLIPS,
    MissingData,
    Order,
    clean_orders,
    inject,
    load_distributions,
)
from dq_agent.config import load_project  # noqa: E402
from dq_agent.engine import RunOptions, run_checks  # noqa: E402
from dq_agent.results import CheckResult, Finding  # noqa: E402

MAX_WRONG_AUTO = 0
MIN_AUTO_RECALL = 0.95
MAX_FALSE_POSITIVE_RATE = 0.005

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
    sa.Column("product", sa.String(20), nullable=False),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--per-type", type=int, default=150)
    parser.add_argument("--seed", type=int, default=20261124)
    args = parser.parse_args(argv)

    try:
        dist = load_distributions()
    except MissingData as exc:
        print(f"cannot run: {exc}")
        return 1
    rng = random.Random(args.seed)
    orders = clean_orders(dist, args.rows, rng)
    inject(orders, args.per_type, rng)

    with tempfile.TemporaryDirectory(prefix="dq-fat-finger-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'orders.db'}"
        _load(url, orders)
        _project(root, url)
        project = load_project(root, env={})
        if project.issues:
            print("cannot run: " + "; ".join(str(i) for i in project.issues))
            return 1
        started = time.perf_counter()
        [suite] = run_checks(project, ["orders"], options=RunOptions())
        elapsed = time.perf_counter() - started
    if suite.error or suite.checks[0].status == "error":
        print(f"cannot run: {suite.error or suite.checks[0].message}")
        return 1
    check = suite.checks[0]
    if sum(check.observed["findings"].values()) > len(check.findings):
        print("cannot score: findings were capped at max_findings; use fewer --per-type")
        return 1
    _report(orders, check, elapsed, args)
    return 0


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
        finding = findings.get(order.id)
        if finding is None:
            continue
        tally.flagged += 1
        if finding.action == "auto_correct":
            tally.auto += 1
        elif finding.action == "propose":
            tally.propose += 1
        else:
            tally.report += 1
        right = _right_fix(order, finding)
        tally.right_fix += right
        if finding.action == "auto_correct":
            if right and finding.column == "amount":
                tally.right_auto += 1
            else:
                tally.wrong_auto += 1
    return tallies


def _right_fix(order: Order, finding: Finding) -> bool:
    if finding.proposed is None:
        return False
    proposed = Decimal(repr(finding.proposed))
    if order.true_amount is not None:
        return finding.column == "amount" and proposed == order.true_amount
    if order.true_input is not None:
        column, value = order.true_input
        return finding.column == column and proposed == value
    return False


def _report(
    orders: list[Order], check: CheckResult, elapsed: float, args: argparse.Namespace
) -> None:
    findings = {int(f.key["id"]): f for f in check.findings}
    tallies = _score(orders, findings)
    print(
        f"fat_finger benchmark: {len(orders):,} order lines (unit prices of real diamonds by "
        f"cut, quantities of real journal holdings; data package: {DATA_PACKAGE}), "
        f"{args.per_type} injections per type, seed {args.seed}"
    )
    print(f"check: {check.status}, {check.message}")
    print(f"engine run: {elapsed:.2f}s on SQLite\n")

    header = f"{'records':<24}{'n':>6}{'found':>8}{'auto':>7}{'propose':>9}{'report':>8}"
    header += f"{'right fix':>11}{'wrong auto':>12}"
    print(header)
    print("-" * len(header))
    for kind, tally in tallies.items():
        found = tally.flagged / tally.records if tally.records else 0.0
        right = f"{tally.right_fix / tally.flagged:.0%}" if tally.flagged else "-"
        print(
            f"{kind:<24}{tally.records:>6}{found:>8.1%}{tally.auto:>7}{tally.propose:>9}"
            f"{tally.report:>8}{right:>11}{tally.wrong_auto:>12}"
        )
    print("  found: share of records with a finding; right fix: findings proposing exactly the")
    print("  value the record (or its mistyped input) should hold\n")

    slips = [tallies[k] for k in SLIPS]
    autos = sum(t.auto for t in tallies.values())
    right_autos = sum(t.right_auto for t in tallies.values())
    wrong_autos = sum(t.wrong_auto for t in tallies.values())
    slip_count = sum(t.records for t in slips)
    errors = [k for k in INJECTIONS if k not in ("whale", "missing_witness")]
    error_count = sum(tallies[k].records for k in errors)
    detected = sum(tallies[k].flagged for k in errors)
    clean = tallies["clean"]
    genuine = [tallies["whale"], tallies["missing_witness"]]
    by_kind = Counter(f.action for f in check.findings)

    precision = right_autos / autos if autos else 1.0
    recall = right_autos / slip_count if slip_count else 0.0
    fp_rate = clean.flagged / clean.records if clean.records else 0.0
    print(f"findings by action: {dict(sorted(by_kind.items()))}")
    print(f"auto-correct precision: {precision:.4f} ({right_autos} right of {autos})")
    print(f"auto-correct recall:    {recall:.4f} ({right_autos} of {slip_count} amount slips)")
    detection = detected / error_count if error_count else 0.0
    print(f"detection recall:       {detection:.4f} ({detected} of {error_count} bad records)")
    print(
        f"false positives:        {fp_rate:.4%} of clean rows ({clean.flagged} of "
        f"{clean.records:,}); genuine whales and null inputs flagged: "
        f"{sum(t.flagged for t in genuine)} of {sum(t.records for t in genuine)}\n"
    )
    targets = [
        (
            "wrong auto-corrections",
            f"{wrong_autos}",
            f"= {MAX_WRONG_AUTO}",
            wrong_autos <= MAX_WRONG_AUTO,
        ),
        (
            "auto-correct recall",
            f"{recall:.4f}",
            f">= {MIN_AUTO_RECALL}",
            recall >= MIN_AUTO_RECALL,
        ),
        (
            "false positives (clean rows)",
            f"{fp_rate:.4%}",
            f"<= {MAX_FALSE_POSITIVE_RATE:.1%}",
            fp_rate <= MAX_FALSE_POSITIVE_RATE,
        ),
    ]
    for name, value, target, ok in targets:
        print(f"{'PASS' if ok else 'MISS'}  {name}: {value} (target {target})")


if __name__ == "__main__":
    sys.exit(main())
