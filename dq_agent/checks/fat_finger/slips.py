"""Typing slips: how a value typed by hand can differ from the value meant.

Pure functions over exact decimals. Values are compared through their canonical decimal text
(``1000000``, ``1234.5``: no exponent, no trailing fractional zeros), so a slip is judged on
the digits a person would have typed.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

SlipKind = Literal[
    "power_of_ten",  # zeros typed too many or too few: 1,000,000 → 10,000,000
    "decimal_shift",  # the decimal point moved across digits: 1234.5 → 12345
    "digit_duplicated",  # one digit typed twice: 1234 → 12234
    "digit_dropped",  # one digit left out: 1234 → 124
    "digits_transposed",  # two adjacent digits swapped: 1234 → 1324
]

_EXACT = decimal.Context(prec=100, traps=[decimal.InvalidOperation])


@dataclass(frozen=True)
class Slip:
    """How ``observed`` differs from ``expected`` (observed = expected × 10^exponent)."""

    kind: SlipKind
    exponent: int = 0
    # The digit(s) involved in a digit slip, in the expected value's order ("34" swapped).
    digits: str = ""

    @property
    def label(self) -> str:
        """What happened, for evidence: "one zero too many (× 10)"."""
        if self.kind == "power_of_ten":
            count = abs(self.exponent)
            zeros = "one zero" if count == 1 else f"{count} zeros"
            return f"{zeros} too {'many' if self.exponent > 0 else 'few'} ({self._factor()})"
        if self.kind == "decimal_shift":
            return f"decimal point {self._shift()} ({self._factor()})"
        if self.kind == "digit_duplicated":
            return f"digit {self.digits} typed twice"
        if self.kind == "digit_dropped":
            return f"digit {self.digits} left out"
        return f"digits {self.digits[0]} and {self.digits[1]} swapped"

    def describe(self, expected: str) -> str:
        """One sentence relating the observed value to ``expected`` (e.g. "witness A * B")."""
        if self.kind == "power_of_ten":
            factor = 10 ** abs(self.exponent)
            if self.exponent > 0:
                return f"observed = {factor:,} × {expected}"
            return f"observed = {expected} ÷ {factor:,}"
        if self.kind == "decimal_shift":
            return f"observed = {expected} with the decimal point {self._shift()}"
        if self.kind == "digit_duplicated":
            return f"observed = {expected} with the digit {self.digits} typed twice"
        if self.kind == "digit_dropped":
            return f"observed = {expected} with the digit {self.digits} left out"
        first, second = self.digits[0], self.digits[1]
        return f"observed = {expected} with the adjacent digits {first} and {second} swapped"

    def _factor(self) -> str:
        factor = 10 ** abs(self.exponent)
        return f"× {factor:,}" if self.exponent > 0 else f"÷ {factor:,}"

    def _shift(self) -> str:
        places = abs(self.exponent)
        unit = "place" if places == 1 else "places"
        return f"moved {places} {unit} {'right' if self.exponent > 0 else 'left'}"


def canonical(value: Decimal) -> str:
    """The digits as typed: ``Decimal("1E+6")`` → ``"1000000"``, ``12.50`` → ``"12.5"``."""
    return format(value.normalize(_EXACT), "f")


def classify(observed: Decimal, expected: Decimal, max_magnitude: int = 3) -> Slip | None:
    """The typing slip that turns ``expected`` into ``observed``, or None if there is none.

    Powers of ten (up to ``10^max_magnitude``) come first, then transposed, duplicated and
    dropped digits. Zero, a sign change or equal values are never slips.
    """
    if not (observed.is_finite() and expected.is_finite()):
        return None
    if observed == 0 or expected == 0 or observed == expected:
        return None
    if (observed < 0) != (expected < 0):
        return None
    seen, meant = abs(observed), abs(expected)
    exponent = seen.adjusted() - meant.adjusted()
    if 0 < abs(exponent) <= max_magnitude and meant.scaleb(exponent, _EXACT) == seen:
        moved_point = _has_fraction(meant) or _has_fraction(seen)
        return Slip("decimal_shift" if moved_point else "power_of_ten", exponent=exponent)
    # Typed to the observed value's decimal places: 593,451.20 with its last two digits
    # swapped is 593,451.02.
    text = canonical(meant)
    shown = decimals(seen)
    if shown > decimals(meant):
        text = format(meant.quantize(Decimal(1).scaleb(-shown), context=_EXACT), "f")
    for kind, candidate, digits in _variants(text):
        if _same(candidate, seen):
            return Slip(kind, digits=digits)
    return None


def _variants(text: str) -> Iterator[tuple[SlipKind, str, str]]:
    for i in range(len(text) - 1):
        a, b = text[i], text[i + 1]
        if a.isdigit() and b.isdigit() and a != b:
            yield "digits_transposed", text[:i] + b + a + text[i + 2 :], a + b
    for i, char in enumerate(text):
        if char.isdigit():
            yield "digit_duplicated", text[: i + 1] + char + text[i + 1 :], char
    for i, char in enumerate(text):
        if char.isdigit():
            yield "digit_dropped", text[:i] + text[i + 1 :], char


def _same(candidate: str, value: Decimal) -> bool:
    if not any(c.isdigit() for c in candidate):
        return False
    try:
        return Decimal(candidate) == value
    except decimal.InvalidOperation:
        return False


def decimals(value: Decimal) -> int:
    """The decimal places of the value as typed (trailing zeros dropped)."""
    exponent = value.normalize(_EXACT).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _has_fraction(value: Decimal) -> bool:
    return value != value.to_integral_value()
