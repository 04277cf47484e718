"""The running example's warehouse: Pete's empty US forecast sheet and a stale aggregate, and
payments in which Yen started arriving yesterday beside dollars and euros, the exchange rates
that convert them, and the daily revenue in dollars built from them.

Timestamps are laid out relative to ``now`` so the story reads the same whenever it runs.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REGIONS = {"US": ["CA", "NY", "TX", "WA"], "EU": ["DE", "FR", "NL", "ES"]}
PRODUCTS = ["Seats", "Support", "Training"]
STAGES = ["Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"]
# Salesforce users who own deals: User Id → e-mail.
OWNERS = {
    "005Dn000001AbCdIAK": "dana@acme.com",
    "005Dn000001AbCeIAK": "li@acme.com",
    "005Dn000001AbCfIAK": "sam@acme.com",
}


def opportunities(naive_now: datetime) -> list[dict[str, Any]]:
    """The CRM's deals at ``naive_now`` (UTC): eight weeks of them, one fat finger, one whale.

    About 28 deals open on a weekday and 4 on a weekend day, so a volume monitor has a
    weekly pattern to learn; today's are still coming in.
    """
    rng = random.Random(20261124)
    first_day = naive_now.date() - timedelta(days=56)
    created_times = []
    for offset in range(57):
        day = first_day + timedelta(days=offset)
        count = (28 if day.weekday() < 5 else 4) + rng.randint(-3, 3)
        for _ in range(count):
            moment = datetime.combine(day, time(7)) + timedelta(minutes=rng.randint(0, 660))
            if moment < naive_now:
                created_times.append(moment)
    deals: list[dict[str, Any]] = []
    for n, created in enumerate(sorted(created_times), start=1):
        seats = rng.choice([5, 10, 20, 25, 50, 100, 150])
        price = Decimal(rng.choice([900, 1200, 2500, 5000]))
        modified = min(
            created + timedelta(hours=rng.randint(0, 30)), naive_now - timedelta(minutes=7)
        )
        deals.append(
            {
                "Id": f"006Dn000004{n:07d}",
                "Name": f"Acme deal {n}",
                "Amount": seats * price,
                "Seats__c": seats,
                "Price_Per_Seat__c": price,
                "StageName": rng.choice(STAGES),
                "OwnerId": rng.choice(sorted(OWNERS)),
                "CreatedDate": created,
                "LastModifiedDate": modified,
            }
        )
    # The fat finger: 200 seats at $5,000 typed as $10,000,000 (one zero too many), on one of
    # Dana's deals whatever day the demo runs (she is the one told, and presses Undo).
    deals[41].update(
        Seats__c=200,
        Price_Per_Seat__c=Decimal(5000),
        Amount=Decimal(10_000_000),
        OwnerId="005Dn000001AbCdIAK",
    )
    # The whale: a real $10m deal, seats × price agree.
    deals[87].update(Seats__c=2000, Price_Per_Seat__c=Decimal(5000), Amount=Decimal(10_000_000))
    # Two deals saved without a stage: worth a warning, not a page.
    deals[120]["StageName"] = None
    deals[301]["StageName"] = None
    return deals


def _forecast_table(metadata: sa.MetaData, name: str) -> sa.Table:
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("product", sa.String(32), nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
    )


# Yesterday's share of payments that arrived in Yen, and roughly what a dollar is in Yen.
YEN_SHARE, YEN_PER_DOLLAR = 0.12, 150


def payments(naive_now: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """Four weeks of card payments in their local currency (about 200 a weekday, 60 a weekend
    day, $20–$20,000): dollars and euros, until yesterday some came in Yen."""
    rows: list[dict[str, Any]] = []
    today = naive_now.date()
    for days_ago in range(28, 0, -1):
        day = today - timedelta(days=days_ago)
        count = (200 if day.weekday() < 5 else 60) + rng.randint(-8, 8)
        for i in range(count):
            value = round(10 ** rng.uniform(1.3, 4.3), 2)
            currency = "USD" if rng.random() < 0.7 else "EUR"
            if days_ago == 1 and rng.random() < YEN_SHARE:
                value = round(value * YEN_PER_DOLLAR * rng.uniform(0.9, 1.1))
                currency = "JPY"
            rows.append(
                {
                    "id": len(rows) + 1,
                    "paid_at": datetime.combine(day, time(i * 24 // count, (i * 7) % 60)),
                    "local_value": value,
                    "currency": currency,
                }
            )
    return rows


# Units of each currency a dollar buys: what the runbook's convert_yen fix divides by.
FX_RATES = {"EUR": Decimal("0.92"), "JPY": Decimal("150")}
# The currencies the revenue model converts; any other is left out of the totals.
MODELLED = ("USD", "EUR")


def _revenue_tables(metadata: sa.MetaData) -> tuple[sa.Table, sa.Table, sa.Table]:
    """payments, fx_rates and revenue_daily, the aggregate the revenue_daily DAG rebuilds."""
    paid = sa.Table(
        "payments",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("paid_at", sa.DateTime, nullable=False),
        sa.Column("local_value", sa.Numeric(14, 2)),
        sa.Column("currency", sa.String(3), nullable=False),
    )
    rates = sa.Table(
        "fx_rates",
        metadata,
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("rate", sa.Numeric(12, 4), nullable=False),
    )
    revenue = sa.Table(
        "revenue_daily",
        metadata,
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("payments", sa.Integer, nullable=False),
        sa.Column("usd_total", sa.Numeric(16, 2), nullable=False),
        sa.Column("refreshed_at", sa.DateTime, nullable=False),
    )
    return paid, rates, revenue


def _rebuild_revenue(conn: sa.Connection, naive_at: datetime) -> None:
    """What the revenue_daily DAG does: dollars per day, from the currencies it models."""
    paid, rates, revenue = _revenue_tables(sa.MetaData())
    rate = sa.case((paid.c.currency == "USD", 1), else_=rates.c.rate)
    day = sa.func.date(paid.c.paid_at)
    totals = conn.execute(
        sa.select(day, sa.func.count(), sa.func.sum(paid.c.local_value / rate))
        .select_from(paid.outerjoin(rates, rates.c.currency == paid.c.currency))
        .where(paid.c.currency.in_(MODELLED))
        .group_by(day)
    ).all()
    conn.execute(revenue.delete())
    conn.execute(
        revenue.insert(),
        [
            {
                "day": date.fromisoformat(str(when)),
                "payments": count,
                "usd_total": round(Decimal(str(total)), 2),
                "refreshed_at": naive_at,
            }
            for when, count, total in totals
        ],
    )


def run_revenue_dag(path: Path, at: datetime) -> None:
    """A finished run of the ``revenue_daily`` DAG: the aggregate rebuilt from payments."""
    naive = at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            _rebuild_revenue(conn, naive)
    finally:
        engine.dispose()


def build_demo_warehouse(path: Path, now: datetime) -> Path:
    """(Re)create the SQLite warehouse at ``path`` as the scenario has it at ``now`` (UTC)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rng = random.Random(20261201)
    naive_now = now.replace(tzinfo=None)
    metadata = sa.MetaData()
    us = _forecast_table(metadata, "us_forecast_dec_v1")
    eu = _forecast_table(metadata, "eu_forecast_dec_v1")
    agg = sa.Table(
        "forecasts_agg",
        metadata,
        sa.Column("region", sa.String(8), primary_key=True),
        sa.Column("month", sa.Date, primary_key=True),
        sa.Column("total_units", sa.Integer, nullable=False),
        sa.Column("total_amount", sa.Numeric(16, 2), nullable=False),
        sa.Column("refreshed_at", sa.DateTime, nullable=False),
    )
    opps = sa.Table(
        "opportunities",
        metadata,
        sa.Column("Id", sa.String(18), primary_key=True),
        sa.Column("Name", sa.String(120), nullable=False),
        sa.Column("Amount", sa.Numeric(16, 2)),
        sa.Column("Seats__c", sa.Integer),
        sa.Column("Price_Per_Seat__c", sa.Numeric(12, 2)),
        sa.Column("StageName", sa.String(40)),
        sa.Column("OwnerEmail", sa.String(120)),
        sa.Column("CreatedDate", sa.DateTime, nullable=False),
        sa.Column("LastModifiedDate", sa.DateTime, nullable=False),
    )
    paid, rates, _ = _revenue_tables(metadata)
    december = date(now.year, 12, 1)

    def forecast_rows(region: str, updated: datetime, who: str) -> list[dict[str, object]]:
        rows = []
        for state in REGIONS[region]:
            for product in PRODUCTS:
                units = rng.randint(40, 400)
                rows.append(
                    {
                        "region": region,
                        "state": state,
                        "product": product,
                        "month": december,
                        "units": units,
                        "amount": Decimal(units * rng.choice([1200, 1500, 5000])),
                        "updated_at": updated - timedelta(minutes=rng.randint(0, 90)),
                        "updated_by": who,
                    }
                )
        return rows

    us_rows = forecast_rows("US", naive_now - timedelta(days=3, hours=4), "pete@acme.com")
    eu_rows = forecast_rows("EU", naive_now - timedelta(hours=3), "marie@acme.com")
    # The aggregate was last rebuilt before Pete's overwrite: three days ago.
    refreshed = naive_now - timedelta(days=3, hours=2)
    agg_rows = [
        {
            "region": region,
            "month": december,
            "total_units": sum(int(r["units"]) for r in rows),  # type: ignore[call-overload]
            "total_amount": sum(Decimal(str(r["amount"])) for r in rows),
            "refreshed_at": refreshed,
        }
        for region, rows in (("US", us_rows), ("EU", eu_rows))
    ]

    opp_rows = [
        {**deal, "OwnerEmail": OWNERS[deal["OwnerId"]]} for deal in opportunities(naive_now)
    ]
    for row in opp_rows:
        del row["OwnerId"]

    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(eu.insert(), eu_rows)
            conn.execute(agg.insert(), agg_rows)
            conn.execute(opps.insert(), opp_rows)
            conn.execute(paid.insert(), payments(naive_now, random.Random(20261124)))
            conn.execute(rates.insert(), [{"currency": c, "rate": r} for c, r in FX_RATES.items()])
            # The DAG ran at 06:00 today, before the payments suite: yesterday's Yen were
            # left out of the dollars without a word.
            _rebuild_revenue(conn, naive_now.replace(hour=6, minute=0, second=0, microsecond=0))
            # us_forecast_dec_v1 stays empty: Pete overwrote the sheet it is loaded from.
            assert us is not None
    finally:
        engine.dispose()
    return path


def run_forecasts_dag(path: Path, at: datetime, us_rows: list[list[object]]) -> None:
    """What the ``forecasts_agg`` DAG does in the demo: load the US tab, rebuild the aggregate.

    ``us_rows`` are the sheet's data rows (region, state, product, month, units, amount).
    """
    naive = at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        metadata = sa.MetaData()
        metadata.reflect(engine, only=["us_forecast_dec_v1", "eu_forecast_dec_v1", "forecasts_agg"])
        us, eu, agg = (
            metadata.tables[n]
            for n in ("us_forecast_dec_v1", "eu_forecast_dec_v1", "forecasts_agg")
        )
        loaded = [
            {
                "region": region,
                "state": state,
                "product": product,
                "month": date.fromisoformat(str(month)),
                "units": int(str(units)),
                "amount": Decimal(str(amount)),
                "updated_at": naive,
                "updated_by": "forecasts_agg DAG",
            }
            for region, state, product, month, units, amount in us_rows
        ]
        with engine.begin() as conn:
            conn.execute(us.delete())
            conn.execute(us.insert(), loaded)
            conn.execute(agg.delete())
            for table in (us, eu):
                totals = conn.execute(
                    sa.select(
                        table.c.region,
                        table.c.month,
                        sa.func.sum(table.c.units),
                        sa.func.sum(table.c.amount),
                    ).group_by(table.c.region, table.c.month)
                ).all()
                conn.execute(
                    agg.insert(),
                    [
                        {
                            "region": region,
                            "month": month,
                            "total_units": units,
                            "total_amount": amount,
                            "refreshed_at": naive,
                        }
                        for region, month, units, amount in totals
                    ],
                )
    finally:
        engine.dispose()
