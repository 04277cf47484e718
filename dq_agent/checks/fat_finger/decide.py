"""What to do about one record: auto-correct, propose or report, with the evidence for it.

Pure functions: the check fetches the records and the peers' spreads, this module judges.

The witness path weighs two explanations of ``observed ≠ witness``:

* **the column slipped** (true value = the witness), or
* **a witness input slipped** (true input = the value that makes the witness equal
  ``observed``; only when that value is itself a typing slip of the stored one and fits the
  input's precision, e.g. a whole number of seats).

Each side is scored by how likely the input value it claims true is among the input's peers
(robust z-scores on log10, a heavy-tailed Student t, and the spacing of discrete values; see
``_delta``). Δ is −2 log of the odds "input slipped" : "column slipped". A quantity typed
× 10 makes the witness wrong, not the amount: when peers can tell, the input is proposed for
correction; when they cannot, nothing is auto-corrected.

The witness is trusted (auto-correct, or propose when ``auto_correct`` is off) only when it
is exact, the gap is a typing slip, no input is an outlier (|z| > Z_OUTLIER) or without
enough peers to judge, and every input explanation has Δ ≥ MARGIN. An explanation whose
input value is untypical mostly has (a slip is clear when the inputs are typical and no other
story is), but not always: a true input can be untypical too.

Without a witness value (an input is null), the value is judged against its peers and, where
the witness is linear in the null input (``quantity * unit_price``), through the input value
it implies (``amount / unit_price``): a power of ten that makes both typical is proposed; an
implied input no record can hold (12.5 seats where seats are whole) is reported.

Confidence (0–1) is derived from which rule decided, and for a trusted witness from the
margin between the explanations:

=============================================  ===========================================
trusted witness (auto_correct or propose)       0.95 + 0.04 × min(1, (Δ − MARGIN) / MARGIN)
                                                for the closest explanation; 0.99 when no
                                                input could explain the gap
a witness input looks mistyped (propose it)     0.8 if the input is an outlier, else 0.7
a slip, but the witness is not trusted          0.6
no witness value: a power of ten from typical   0.5
a discrepancy that is not a typing slip, or     0.3 (report)
an implied input no record can hold
=============================================  ===========================================
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from dq_agent.checks.fat_finger.peers import Spread, number
from dq_agent.checks.fat_finger.slips import Slip, classify, decimals
from dq_agent.expressions import Expression
from dq_agent.results import Action

# An input (or value) this many robust standard deviations from its peers' median is an outlier.
Z_OUTLIER = 3.5
# How much less likely the other explanation must be: −2 log of the odds, so 3.0 ≈ 4.5 : 1.
MARGIN = 3.0
# Degrees of freedom of the Student t that scores how untypical a value is (heavy tails).
TAIL_DF = 3.0
# Differences below this share of a value are floating-point noise, not discrepancies.
RELATIVE_TOLERANCE = Decimal("1e-9")
# Peers only: the value divided by 10^k must land this close to the peers' median.
Z_TYPICAL = 1.0

Category = Literal["witness_slip", "input_slip", "mismatch", "peer_slip", "impossible_input"]
_EXACT = decimal.Context(prec=100)


@dataclass(frozen=True)
class Judgement:
    """The verdict on one value, ready to become a finding."""

    category: Category
    action: Action
    column: str
    observed: Decimal
    proposed: Decimal | None
    confidence: float
    reason: str
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Peer:
    """The spread a value is judged against (None: too few peers) and who the peers are."""

    spread: Spread | None
    scope: str

    def z(self, value: Decimal) -> float | None:
        return None if self.spread is None else self.spread.z(value)

    def line(self, name: str, value: Decimal) -> str:
        z = self.z(value)
        if self.spread is None or z is None:
            return f"{name} = {number(value)}: too few peers among {self.scope} to judge"
        verdict = "an outlier" if abs(z) > Z_OUTLIER else "typical"
        return (
            f"{name} = {number(value)} is {verdict} among {self.scope} "
            f"(robust z {z:+.1f}; {self.spread.describe()})"
        )


@dataclass(frozen=True)
class Witnessed:
    """One record with a witness value: everything the judgement needs."""

    column: str
    observed: Decimal
    witness: Expression
    value: Decimal
    # False when the witness had to round (a division): it cannot pin an exact value.
    exact: bool
    # The witness's inputs as stored (None: null, as coalesce() and sum_of() allow).
    inputs: Mapping[str, Decimal | None]
    column_peer: Peer
    input_peers: Mapping[str, Peer]
    # Decimal places each input can hold (0 for whole numbers); None when unknown.
    input_places: Mapping[str, int | None]
    # The difference below which two values of the checked column are the same.
    tolerance: Decimal
    max_magnitude: int
    auto_correct: bool


@dataclass(frozen=True)
class Implied:
    """A null witness input, solved from the checked column: the witness is
    ``base + slope × input``, so the observed value implies ``(observed − base) / slope``."""

    name: str
    base: Decimal
    slope: Decimal
    peer: Peer
    # Decimal places the input holds (0 for whole numbers); None when unknown.
    places: int | None

    def value(self, column_value: Decimal) -> Decimal:
        return _EXACT.divide(column_value - self.base, self.slope)


@dataclass(frozen=True)
class Unwitnessed:
    """One record without a witness value: its value, its peers, the inputs it implies."""

    column: str
    observed: Decimal
    peer: Peer
    # Decimal places the checked column holds; None when unknown.
    places: int | None
    implied: tuple[Implied, ...]
    tolerance: Decimal
    max_magnitude: int
    why_no_witness: str


@dataclass(frozen=True)
class _Alternative:
    """An input whose own slip would explain the gap."""

    name: str
    stored: Decimal
    meant: Decimal
    slip: Slip
    z_stored: float | None
    z_meant: float | None
    # Score of "the input slipped" minus score of "the column slipped": > 0 favours the column.
    delta: float | None


def judge_witnessed(record: Witnessed) -> Judgement:
    """Auto-correct, propose or report a value that disagrees with its witness."""
    observed, value = record.observed, record.value
    meant = value if record.exact else _rounded_like(value, observed)
    slip = classify(observed, meant, record.max_magnitude)
    witness_line = _witness_line(record)
    alternatives = _alternatives(record)
    culprit = _culprit(alternatives)

    if slip is not None:
        doubts = _doubts(record, alternatives)
        slip_line = f"{record.column} {number(observed)} against {number(meant)}: {slip.label}"
        reason = slip.describe(f"witness {record.witness.text}")
        if not doubts:
            deltas = [a.delta for a in alternatives if a.delta is not None]
            confidence = 0.99
            if deltas:
                confidence = 0.95 + 0.04 * min(1.0, (min(deltas) - MARGIN) / MARGIN)
            evidence = [witness_line, slip_line, *_input_lines(record)]
            evidence += [_alternative_line(a) for a in alternatives]
            evidence.append(_column_line(record))
            if not record.auto_correct:
                evidence.append("auto_correct is off for this check: proposing instead")
            return Judgement(
                "witness_slip",
                "auto_correct" if record.auto_correct else "propose",
                record.column,
                observed,
                value,
                round(confidence, 3),
                reason,
                tuple(evidence),
            )
        if culprit is None:
            evidence = [witness_line, slip_line, *doubts, *_input_lines(record)]
            # Explanations about as likely are among the doubts already.
            evidence += [
                _alternative_line(a)
                for a in alternatives
                if a.delta is not None and a.delta >= MARGIN
            ]
            evidence.append(_column_line(record))
            return Judgement(
                "witness_slip",
                "propose",
                record.column,
                observed,
                meant,
                0.6,
                reason,
                tuple(evidence),
            )
    if culprit is not None:
        return _input_judgement(record, culprit, witness_line)
    return _mismatch(record, witness_line)


def judge_unwitnessed(record: Unwitnessed) -> Judgement | None:
    """Without a witness value: is the value, or the input it implies, untypical, and does
    a power of ten make both typical?

    Peers alone never justify a correction: a slip found this way is proposed. A value that
    no input with the input's decimal places reproduces (quantity 12.5 seats) is reported.
    """
    observed, peer = record.observed, record.peer
    implied = [(i, i.value(observed)) for i in record.implied]
    troubles = [t for input_, value in implied for t in _implied_troubles(record, input_, value)]
    if not troubles and not _untypical(peer, record.column, observed):
        return None
    best: tuple[float, Decimal, int] | None = None
    for k in range(1, record.max_magnitude + 1):
        for exponent in (k, -k):
            candidate = observed.scaleb(-exponent, _EXACT)
            score = _typicality(record, candidate)
            if score is not None and (best is None or score < best[0]):
                best = (score, candidate, exponent)
    evidence = [record.why_no_witness, peer.line(record.column, observed)]
    evidence += [_implied_line(i, v) for i, v in implied]
    evidence += troubles
    if best is None:
        unfit = [(i, v) for i, v in implied if not _reproduces(record, i, v)]
        if not unfit:
            return None  # untypical, but no typing slip makes it typical: maybe genuine
        input_, value = unfit[0]
        reason = (
            f"{record.column} {number(observed)} is the witness for no {_kept(input_)} "
            f"({input_.name} would be {number(value)})"
        )
        return Judgement(
            "impossible_input",
            "report",
            record.column,
            observed,
            None,
            0.3,
            reason,
            tuple(evidence),
        )
    _, candidate, exponent = best
    factor = 10 ** abs(exponent)
    shown = number(candidate) if implied else f"a typical value among {peer.scope}"
    reason = (
        f"observed = {factor:,} × {shown}" if exponent > 0 else f"observed = {shown} ÷ {factor:,}"
    )
    if implied:
        input_ = implied[0][0]
        reason += (
            f", at which {input_.name} would be {number(input_.value(candidate))}, typical "
            f"among {input_.peer.scope}"
        )
    evidence.append(
        peer.line(f"{record.column} {'÷' if exponent > 0 else '×'} {factor:,}", candidate)
    )
    evidence += [_implied_line(i, i.value(candidate)) for i in record.implied]
    evidence.append("peers alone never justify a correction: proposing for an owner to confirm")
    return Judgement(
        "peer_slip", "propose", record.column, observed, candidate, 0.5, reason, tuple(evidence)
    )


def _untypical(peer: Peer, name: str, value: Decimal) -> list[str]:
    z = peer.z(value)
    if peer.spread is None or z is None or abs(z) <= Z_OUTLIER:
        return []
    return [f"{name} = {number(value)} is an outlier among {peer.scope}"]


def _implied_troubles(record: Unwitnessed, input_: Implied, value: Decimal) -> list[str]:
    """Why the input value a record implies is unlikely. The record's own input is null, so
    it is not among the peers: a value beyond their whole range is unlikely too."""
    if value <= 0:
        return [f"{input_.name} would be {number(value)}"]
    if not _reproduces(record, input_, value):
        return [f"{input_.name} would be {number(value)}: no {_kept(input_)}"]
    spread = input_.peer.spread
    if spread is not None and not spread.within(value):
        return [
            f"{input_.name} would be {number(value)}, beyond the range of {input_.name} among "
            f"{input_.peer.scope}"
        ]
    return _untypical(input_.peer, input_.name, value)


def _typicality(record: Unwitnessed, candidate: Decimal) -> float | None:
    """How untypical ``candidate`` and the inputs it implies are (None: not typical)."""
    if not _fits(candidate, record.places):
        return None
    z = record.peer.z(candidate)
    # Alone, the value must land close to its peers' median; inputs it implies add evidence.
    limit = Z_OUTLIER if record.implied else Z_TYPICAL
    if record.peer.spread is None or z is None or abs(z) > limit:
        return None
    score = _surprise(z)
    for input_ in record.implied:
        value = input_.value(candidate)
        if value <= 0 or not _reproduces(record, input_, value):
            return None
        z_input = input_.peer.z(value)
        if input_.peer.spread is not None and z_input is not None:
            if abs(z_input) > Z_OUTLIER or not input_.peer.spread.within(value):
                return None
            score += _surprise(z_input)
    return score


def _reproduces(record: Unwitnessed, input_: Implied, value: Decimal) -> bool:
    """Whether an input value with the input's decimal places gives the observed value."""
    if input_.places is None:
        return True
    rounded = _quantize(value, input_.places)
    if rounded is None:
        return False
    gap = abs((rounded - value) * input_.slope)
    return gap <= record.tolerance + abs(record.observed) * RELATIVE_TOLERANCE


def _kept(input_: Implied) -> str:
    """What the input holds: "whole seats", "price with 2 decimal places"."""
    if input_.places == 0:
        return f"whole {input_.name}"
    return f"{input_.name} with {input_.places} decimal places"


def _implied_line(input_: Implied, value: Decimal) -> str:
    return input_.peer.line(f"{input_.name} (implied)", value)


# --- pieces ---------------------------------------------------------------------------------


def _alternatives(record: Witnessed) -> list[_Alternative]:
    """Inputs whose own typing slip would make the witness equal the observed value."""
    if record.value == 0:
        return []
    ratio = _EXACT.divide(record.observed, record.value)
    found: list[_Alternative] = []
    for name, stored in _present(record):
        places = record.input_places.get(name)
        meant = _quantize(
            _EXACT.multiply(stored, ratio),
            places if places is not None else max(2, decimals(stored)),
        )
        if meant is None or meant <= 0 or meant == stored:
            continue
        if not _reconciles(record, name, meant):
            continue
        slip = classify(stored, meant, record.max_magnitude)
        if slip is None:
            continue
        peer = record.input_peers[name]
        z_stored, z_meant = peer.z(stored), peer.z(meant)
        found.append(
            _Alternative(
                name,
                stored,
                meant,
                slip,
                z_stored,
                z_meant,
                _delta(stored, meant, z_stored, z_meant),
            )
        )
    return found


def _delta(
    stored: Decimal, meant: Decimal, z_stored: float | None, z_meant: float | None
) -> float | None:
    """−2 log(P(the input slipped) / P(the column slipped)); None when peers cannot tell.

    Either way the record holds one typing slip, so the odds are those of the input's true
    value: ``meant`` if the input slipped, ``stored`` if the column did. Peers give a density
    on log10; the values themselves are discrete (whole units or cents), and a value ten
    times larger is ten times less likely to be hit exactly at the same log-density, hence
    the ``2 ln(meant / stored)`` term. Only the inputs are scored: the checked column follows
    from them under either explanation, so its own typicality would count them twice.
    """
    if z_stored is None or z_meant is None:
        return None
    return _surprise(z_meant) - _surprise(z_stored) + 2 * math.log(meant / stored)


def _surprise(z: float) -> float:
    """−2 log-density of a robust z-score under a Student t with TAIL_DF degrees of freedom.

    Real values have heavier tails than a normal curve: a rare-but-real small quantity must
    not look impossible, or a mistyped input would pass for a slip in the column.
    """
    return (TAIL_DF + 1) * math.log1p(z * z / TAIL_DF)


def _doubts(record: Witnessed, alternatives: list[_Alternative]) -> list[str]:
    """Why the witness cannot be trusted to pin the value (empty: it can)."""
    doubts: list[str] = []
    if not record.exact:
        doubts.append(
            f"the witness {number(record.value)} is rounded (a division): it pins no exact value"
        )
    for name, stored in _present(record):
        z = record.input_peers[name].z(stored)
        if stored <= 0:
            doubts.append(f"{name} = {number(stored)} is not positive: peers cannot vouch for it")
        elif z is None:
            doubts.append(f"too few peers to vouch for {name} = {number(stored)}")
        elif abs(z) > Z_OUTLIER:
            doubts.append(
                f"{name} = {number(stored)} is itself an outlier: the witness may be wrong"
            )
    for alt in alternatives:
        # Even where its input value is untypical: a true input can be, and the record would
        # look the same (a price typed 10 × too large, the amount right).
        if alt.delta is not None and alt.delta < MARGIN:
            doubts.append(
                f"{alt.name} = {number(alt.meant)} instead of {number(alt.stored)} would explain "
                f"it about as well ({alt.slip.label} in {alt.name})"
            )
    return doubts


def _culprit(alternatives: list[_Alternative]) -> _Alternative | None:
    """The input that most likely slipped, if peers clearly say so."""
    likely = [
        a
        for a in alternatives
        if a.z_meant is not None
        and abs(a.z_meant) <= Z_OUTLIER
        and (
            (a.z_stored is not None and abs(a.z_stored) > Z_OUTLIER)
            or (a.delta is not None and a.delta <= -MARGIN)
        )
    ]
    return min(likely, key=lambda a: a.delta if a.delta is not None else 0.0, default=None)


def _input_judgement(record: Witnessed, alt: _Alternative, witness_line: str) -> Judgement:
    outlier = alt.z_stored is not None and abs(alt.z_stored) > Z_OUTLIER
    peer = record.input_peers[alt.name]
    reason = (
        f"{alt.name} looks mistyped: with {number(alt.meant)} instead of {number(alt.stored)} "
        f"the witness {record.witness.text} equals {record.column} {number(record.observed)}"
    )
    evidence = (
        witness_line,
        f"{alt.name} {number(alt.stored)} against {number(alt.meant)}: {alt.slip.label}",
        peer.line(alt.name, alt.stored),
        peer.line(alt.name, alt.meant),
        _column_line(record),
        f"{record.column} is left as it is: the witness, not {record.column}, looks wrong",
    )
    return Judgement(
        "input_slip",
        "propose",
        alt.name,
        alt.stored,
        alt.meant,
        0.8 if outlier else 0.7,
        reason,
        evidence,
    )


def _mismatch(record: Witnessed, witness_line: str) -> Judgement:
    ratio = _EXACT.divide(record.observed, record.value) if record.value != 0 else None
    reason = (
        f"observed {number(record.observed)} ≠ witness {record.witness.text} = "
        f"{number(record.value)}, and not by a typing slip"
    )
    evidence = [witness_line]
    if ratio is not None:
        evidence.append(f"observed / witness = {float(ratio):.4g}: no typing pattern")
    evidence.append(_column_line(record))
    return Judgement(
        "mismatch", "report", record.column, record.observed, None, 0.3, reason, tuple(evidence)
    )


def _present(record: Witnessed) -> list[tuple[str, Decimal]]:
    return [(n, v) for n, v in sorted(record.inputs.items()) if v is not None]


def _witness_line(record: Witnessed) -> str:
    inputs = ", ".join(
        f"{n} = {'null' if v is None else number(v)}" for n, v in sorted(record.inputs.items())
    )
    rounded = "" if record.exact else " (rounded)"
    return f"witness {record.witness.text} = {number(record.value)}{rounded} with {inputs}"


def _input_lines(record: Witnessed) -> list[str]:
    return [record.input_peers[n].line(n, v) for n, v in _present(record)]


def _alternative_line(alt: _Alternative) -> str:
    if alt.delta is None:
        return f"{alt.name} = {number(alt.meant)} would also explain it; peers cannot tell"
    z_meant = f"{alt.z_meant:+.1f}" if alt.z_meant is not None else "n/a"
    z_stored = f"{alt.z_stored:+.1f}" if alt.z_stored is not None else "n/a"
    return (
        f"{alt.name} = {number(alt.meant)} would also explain it but is less likely "
        f"(robust z {z_meant} against {z_stored} for the stored {number(alt.stored)})"
    )


def _column_line(record: Witnessed) -> str:
    peer = record.column_peer
    if peer.spread is None:
        return f"{record.column}: too few peers among {peer.scope} to judge"
    z_w, z_o = peer.z(record.value), peer.z(record.observed)
    shown_w = f"{z_w:+.1f}" if z_w is not None else "n/a"
    shown_o = f"{z_o:+.1f}" if z_o is not None else "n/a"
    return (
        f"{record.column} among {peer.scope}: {peer.spread.describe()}; "
        f"robust z {shown_w} for the witness, {shown_o} for the stored value"
    )


def _reconciles(record: Witnessed, name: str, meant: Decimal) -> bool:
    """Whether the witness with ``name = meant`` equals the observed value."""
    row = {**record.inputs, name: meant}
    value = record.witness.evaluate(row)
    return value is not None and abs(value - record.observed) <= record.tolerance


def _quantize(value: Decimal, places: int) -> Decimal | None:
    try:
        return value.quantize(Decimal(1).scaleb(-places), context=_EXACT)
    except decimal.InvalidOperation:
        return None


def _fits(value: Decimal, places: int | None) -> bool:
    """Whether ``value`` can be stored with ``places`` decimals (at most 2 if unknown)."""
    return decimals(value) <= (places if places is not None else 2)


def _rounded_like(value: Decimal, like: Decimal) -> Decimal:
    places = max(2, decimals(like))
    rounded = _quantize(value, places)
    return rounded if rounded is not None else value
