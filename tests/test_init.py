"""``dq-agent init``: from a database URL to a suite per table that passes on healthy data."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.scaffold import secret_free

SHOP = sa.MetaData()
ORDERS = sa.Table(
    "orders",
    SHOP,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer", sa.String(40)),
    sa.Column("status", sa.String(20)),
    sa.Column("amount", sa.Numeric(12, 2)),
    sa.Column("note", sa.String(100)),
    sa.Column("created_at", sa.DateTime),
    sa.Column("updated_at", sa.DateTime),
)
# No primary key: its order number is unique and never null all the same.
EVENTS = sa.Table(
    "events",
    SHOP,
    sa.Column("number", sa.Integer),
    sa.Column("kind", sa.String(20)),
    sa.Column("delta", sa.Integer),
)


def a_healthy_shop(url: str) -> None:
    """Sixty days of about 40 orders a day, the newest an hour ago; a few events."""
    rng = random.Random(7)
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    orders = []
    for days_ago in range(60, -1, -1):
        day = now - timedelta(days=days_ago, hours=1)
        midnight = day.replace(hour=0, minute=0, second=0)
        for _ in range(40 + rng.randint(-3, 3)):
            # Within the day's own calendar day, whatever the time now: 61 days of rows.
            created = max(midnight, day - timedelta(minutes=rng.randint(0, 600)))
            orders.append(
                {
                    "id": len(orders) + 1,
                    "customer": f"c{len(orders) % 37}",
                    "status": rng.choice(["new", "paid", "shipped"]),
                    "amount": rng.randint(1, 99_999) / 100,
                    "note": None if len(orders) % 3 else "gift: 'wrap' it\nplease",
                    "created_at": created,
                    "updated_at": created,
                }
            )
    orders[-1]["created_at"] = orders[-1]["updated_at"] = now - timedelta(hours=1)
    events = [{"number": i, "kind": "in" if i % 2 else "out", "delta": i - 30} for i in range(60)]
    engine = sa.create_engine(url)
    try:
        SHOP.drop_all(engine)
        SHOP.create_all(engine)
        with engine.begin() as conn:
            conn.execute(ORDERS.insert(), orders)
            conn.execute(EVENTS.insert(), events)
    finally:
        engine.dispose()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_init_suggests_a_suite_per_table_that_passes_on_healthy_data(
    tmp_path: Path, engine_url: str
) -> None:
    a_healthy_shop(engine_url)
    project = tmp_path / "project"
    code, out, err = invoke("init", "--project", str(project), "--connect", engine_url)
    assert code == 0, err
    assert "orders: 2,4" in err and "columns profiled in" in err
    orders = (project / "checks" / "orders.yml").read_text().splitlines()
    assert orders[:3] == [
        "# yaml-language-server: $schema=../.dq-agent/schemas/suite.schema.json",
        "# Each check holds on the data as profiled; the comment says why it was suggested.",
        "suite: orders",
    ]
    checks = [line.split("  # ") for line in orders[orders.index("checks:") + 1 :]]
    # The values of status come most frequent first: the order depends on the draw.
    accepted = next(i for i, (check, _) in enumerate(checks) if "accepted_values" in check)
    values = checks[accepted][0].split("[")[1].split("]")[0].split(", ")
    assert sorted(values) == ["new", "paid", "shipped"]
    assert [check for check, _ in checks] == [
        "  - row_count: {min: 1}",
        "  - freshness: {column: updated_at, max_age: 26h}",
        "  - volume_anomaly: {timestamp_column: created_at}",
        "  - expect_column_values_to_not_be_null: {column: customer}",
        "  - expect_column_values_to_not_be_null: {column: status}",
        f"  - accepted_values: {{column: status, values: [{', '.join(values)}]}}",
        "  - expect_column_values_to_not_be_null: {column: amount}",
        "  - expect_column_values_to_be_between: {column: amount, min_value: 0}",
        "  - expect_column_values_to_not_be_null: {column: created_at}",
        "  - expect_column_values_to_not_be_null: {column: updated_at}",
    ]
    rows = checks[0][1]  # "2,4xx rows"
    assert rows.endswith(" rows")
    assert checks[3][1] == f"0 nulls in {rows}"
    assert checks[1][1] == "newest 1h old; rows arrive daily"
    assert checks[2][1].startswith("rows on 61 days, ")
    assert "key: [id]  # the primary key" in orders
    events = (project / "checks" / "events.yml").read_text()
    assert "key: [number]  # unique and never null" in events
    assert "  - expect_column_values_to_be_unique: {column: number}" in events
    # Events have no timestamp: no freshness or volume; delta goes below 0: no range.
    assert "freshness" not in events and "volume_anomaly" not in events
    assert "column: delta, min_value" not in events

    assert load_project(project).issues == ()
    code, out, err = invoke("check", "--project", str(project))
    assert code == 0, out + err
    assert out.rstrip().endswith("2 suites: 2 pass")


def test_init_without_a_database_lays_out_the_folder(tmp_path: Path) -> None:
    code, out, _ = invoke("init", "--project", str(tmp_path / "new"))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
        ".dq-agent",
        "checks",
        "connectors",
        "dq-agent.yml",
    ]
    assert out.splitlines()[-1].startswith("next: dq-agent init --connect URL")
    # What is there already is kept.
    (tmp_path / "new" / "dq-agent.yml").write_text("state_url: sqlite:///mine.db\n")
    invoke("init", "--project", str(tmp_path / "new"))
    assert (tmp_path / "new" / "dq-agent.yml").read_text() == "state_url: sqlite:///mine.db\n"


def test_a_table_that_is_not_there_is_an_error_and_the_others_are_written(
    tmp_path: Path, sqlite_url: str
) -> None:
    a_healthy_shop(sqlite_url)
    project = tmp_path / "project"
    code, _, err = invoke(
        "init", "--project", str(project), "--connect", sqlite_url, "--tables", "events,nope"
    )
    assert code == 3
    assert "error: nope: table nope not found in sqlite:///" in err
    assert sorted(p.name for p in (project / "checks").iterdir()) == ["events.yml"]


@pytest.mark.parametrize(
    "url, written, variable",
    [
        ("postgresql+psycopg://dq@db/analytics", "postgresql+psycopg://dq@db/analytics", None),
        (
            "postgresql+psycopg://dq:s3cret@db:5432/analytics",
            "postgresql+psycopg://dq:${DQ_WAREHOUSE_PASSWORD}@db:5432/analytics",
            "DQ_WAREHOUSE_PASSWORD",
        ),
    ],
)
def test_a_password_is_never_written_down(url: str, written: str, variable: str | None) -> None:
    assert secret_free(url) == (written, variable)
