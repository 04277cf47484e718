"""``fat_finger``: values a typing slip away from what the record should hold.

The work happens in the database: the witness is computed in SQL and only the records that
disagree with it come back (at most :data:`MAX_ANALYSED`); peers are read as five-number
summaries. Records without a witness value are judged against their peers alone.

Record history (the value last accepted) is not used: SQL sources do not keep it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, count_where, error_result, plural, result
from dq_agent.checks.fat_finger.decide import (
    Z_OUTLIER,
    Judgement,
    Peer,
    Witnessed,
    judge_peers,
    judge_witnessed,
)
from dq_agent.checks.fat_finger.peers import MIN_PEERS, Peers, Spread, measure, to_decimal
from dq_agent.config.models import CheckSpec, FatFingerArgs
from dq_agent.expressions import Expression, ExpressionError, numeric_type, parse
from dq_agent.results import Action, CheckResult, Finding, key_text
from dq_agent.sources.base import ColumnInfo, Relation

# Disagreeing records examined per run at most; the result says when there were more.
MAX_ANALYSED = 10_000
# Differences below this share of the witness are floating-point noise, not discrepancies.
RELATIVE_TOLERANCE = Decimal("1e-9")
# The share of values allowed more decimal places than the column is judged to use.
PLACES_SLACK = 0.005
_NUMERIC_FAMILIES = ("integer", "number", "unknown")
_ACTION_ORDER: dict[Action, int] = {"auto_correct": 0, "propose": 1, "report": 2}

# A judgement and the key of the record it is about.
_Keyed = tuple[Judgement, dict[str, Any]]


class FatFinger:
    """Planned ``fat_finger`` check: nothing for the shared scan, its own bounded queries."""

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, FatFingerArgs)
        self.spec = spec
        self.args = spec.args
        self.relation = relation
        self.ctx = ctx
        self.key: tuple[str, ...] = ctx.key or relation.primary_key
        self.group_by: tuple[str, ...] = tuple(self.args.peers.group_by if self.args.peers else ())

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        # The witness may name columns that are not there: checked in evaluate(), so that a
        # mistake here cannot break the suite's shared scan.
        return {}

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        witness: Expression | None = None
        if self.args.witness is not None:
            try:
                witness = parse(self.args.witness)
            except ExpressionError as exc:
                return error_result(self.spec, f"invalid witness {self.args.witness!r}: {exc}")
        problem = self._problem(witness)
        if problem is not None:
            return error_result(self.spec, problem)
        return _Run(self, witness, self.relation).result()

    def _problem(self, witness: Expression | None) -> str | None:
        columns = self.relation.columns
        inputs = sorted(witness.columns()) if witness is not None else []
        wanted = [self.args.column, *inputs, *self.group_by]
        missing = [n for n in dict.fromkeys(wanted) if n not in columns]
        if missing:
            return (
                f"column(s) {', '.join(missing)} not found in {self.relation.label}; "
                f"available: {', '.join(columns)}"
            )
        for name in [self.args.column, *inputs]:
            family = columns[name].family
            if family not in _NUMERIC_FAMILIES:
                return f"column {name} is {family}: fat_finger needs numbers"
        if not self.key:
            return (
                f"fat_finger needs to identify records: set key: on the suite "
                f"({self.relation.label} has no primary key)"
            )
        return None


class _Run:
    """One evaluation: the queries, the judgements, the result."""

    def __init__(
        self,
        check: FatFinger,
        witness: Expression | None,
        relation: Relation,
        not_numbers: tuple[int, tuple[Finding, ...]] = (0, ()),
    ) -> None:
        self.check = check
        self.spec = check.spec
        self.args = check.args
        self.relation = relation
        self.witness = witness
        self.inputs = sorted(witness.columns()) if witness is not None else []
        # Values left out of the analysis because they are not numbers: how many, and the
        # first few as findings.
        self.not_numbers = not_numbers
        self.column = self.relation.column(self.args.column)
        self.info = self.relation.columns[self.args.column]
        self.tolerance = _half_unit(self.info)
        self.witness_sql = (
            witness.to_sql(self.relation.column) if witness is not None else sa.null()
        )

    def result(self) -> CheckResult:
        counts = self._counts()
        if counts["not_numbers"] and not self.not_numbers[0]:
            # Text in a number column (SQLite keeps what it is given), NaN or infinity: one
            # such value must not stop the check. Report it, and judge the other records.
            found = (int(counts["not_numbers"]), self._not_numbers())
            return _Run(self.check, self.witness, self._numbers_only(), found).result()
        judgements: list[_Keyed] = []
        examined = 0
        suspicious = int(counts["disagree"])
        if self.witness is not None and suspicious:
            rows = self._fetch(self._disagrees(), MAX_ANALYSED)
            examined += len(rows)
            judgements += self._judge_witnessed(rows)
        outliers, fetched, peer_judgements = self._peer_candidates(int(counts["unwitnessed"]))
        suspicious += outliers
        examined += fetched
        judgements += peer_judgements
        return self._result(counts, suspicious, examined, judgements)

    # -- queries --------------------------------------------------------------------------

    def _disagrees(self) -> sa.ColumnElement[bool]:
        num = sa.cast(self.column, numeric_type())
        w = self.witness_sql
        allowed = sa.literal(self.tolerance, numeric_type()) + sa.func.abs(w) * sa.literal(
            RELATIVE_TOLERANCE, numeric_type()
        )
        return sa.and_(self.column.is_not(None), w.is_not(None), sa.func.abs(num - w) > allowed)

    def _analysed(self) -> list[str]:
        return list(dict.fromkeys([self.args.column, *self.inputs]))

    def _not_a_number(self) -> sa.ColumnElement[bool]:
        dialect = self.relation.engine.dialect.name
        return sa.or_(*[_not_a_number(self.relation.column(n), dialect) for n in self._analysed()])

    def _not_numbers(self) -> tuple[Finding, ...]:
        """The first records holding something other than a number, as findings."""
        key = self.check.key
        names = self._analysed()
        # Untyped: a typed column would try (and fail) to turn "abc" into a number.
        raw = [sa.type_coerce(self.relation.column(n), sa.types.NullType()).label(n) for n in names]
        query = (
            sa.select(*[self.relation.column(k).label(k) for k in key], *raw)
            .where(self._not_a_number())
            .order_by(*[self.relation.column(k) for k in key])
            .limit(self.check.ctx.max_findings)
        )
        with self.relation.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return tuple(
            Finding(
                key={k: row[k] for k in key},
                column=name,
                observed=row[name] if isinstance(row[name], int | str) else str(row[name]),
                reason=f"{name} holds {_shown(row[name])}, not a number",
            )
            for row in rows
            for name in names
            if not _is_number(row[name])
        )

    def _numbers_only(self) -> Relation:
        """The relation without the records holding something other than a number."""
        numbers = sa.select(self.relation.selectable).where(sa.not_(self._not_a_number()))
        return replace(self.relation, selectable=numbers.subquery("numbers"))

    def _counts(self) -> Mapping[str, Any]:
        present = self.column.is_not(None)
        aggregates: list[sa.ColumnElement[Any]] = [
            sa.func.count().label("rows"),
            sa.func.count(self.column).label("values"),
            count_where(self._not_a_number()).label("not_numbers"),
        ]
        if self.witness is not None:
            aggregates += [
                count_where(sa.and_(present, self.witness_sql.is_not(None))).label("witnessed"),
                count_where(sa.and_(present, self.witness_sql.is_(None))).label("unwitnessed"),
                count_where(self._disagrees()).label("disagree"),
            ]
        query = sa.select(*aggregates).select_from(self.relation.selectable)
        with self.relation.connect() as conn:
            row = dict(conn.execute(query).mappings().one())
        if self.witness is None:
            row.update(witnessed=0, unwitnessed=row["values"], disagree=0)
        return row

    def _fetch(self, where: sa.ColumnElement[bool], limit: int) -> Sequence[Mapping[str, Any]]:
        names = list(dict.fromkeys([*self.check.key, self.args.column, *self.inputs]))
        names += [g for g in self.check.group_by if g not in names]
        query = (
            sa.select(*[self.relation.column(n).label(n) for n in names])
            .where(where)
            .order_by(*[self.relation.column(k) for k in self.check.key])
            .limit(limit)
        )
        with self.relation.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def _key(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in self.check.key}

    def _group(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[g] for g in self.check.group_by)

    # -- witness path ---------------------------------------------------------------------

    def _judge_witnessed(self, rows: Sequence[Mapping[str, Any]]) -> list[_Keyed]:
        assert self.witness is not None
        groups = {self._group(r) for r in rows}
        column_peers = self._measure(self.args.column, groups)
        input_peers = {name: self._measure(name, groups) for name in self.inputs}
        places = self._places_in_use(self.inputs)
        judgements: list[_Keyed] = []
        for row in rows:
            observed = to_decimal(row[self.args.column])
            value = self.witness.evaluate(row)
            if value is None:
                continue
            if abs(observed - value) <= self.tolerance + abs(value) * RELATIVE_TOLERANCE:
                continue  # the database's floating point disagreed; exact decimals do not
            group = self._group(row)
            inputs = {n: None if row[n] is None else to_decimal(row[n]) for n in self.inputs}
            record = Witnessed(
                column=self.args.column,
                observed=observed,
                witness=self.witness,
                value=value,
                exact=self.witness.evaluate(row, exact=True) is not None,
                inputs=inputs,
                column_peer=Peer(*column_peers.lookup(group)),
                input_peers={n: Peer(*input_peers[n].lookup(group)) for n in self.inputs},
                input_places=places,
                tolerance=self.tolerance,
                max_magnitude=self.args.max_magnitude,
                auto_correct=self.args.auto_correct,
            )
            judgements.append((judge_witnessed(record), self._key(row)))
        return judgements

    def _places_in_use(self, names: Sequence[str]) -> dict[str, int | None]:
        """The decimal places each column's values actually use (None: not known).

        A price column declared NUMERIC(12, 2) that only ever holds whole dollars makes
        $436.80 an unlikely price: what people type is what the column holds, not its type.
        """
        places: dict[str, int | None] = {}
        aggregates: list[sa.ColumnElement[Any]] = []
        probes: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            declared = _places(self.relation.columns[name])
            places[name] = declared
            if declared == 0:
                continue
            column = self.relation.column(name)
            num = sa.cast(column, numeric_type())
            probes[name] = list(range((declared if declared is not None else 4) + 1))
            aggregates.append(sa.func.count(column).label(f"c{i}_n"))
            for p in probes[name]:
                rounded = sa.func.round(num, p, type_=numeric_type())
                off = sa.func.abs(rounded - num) > sa.literal(Decimal("1e-9"), numeric_type())
                aggregates.append(count_where(off).label(f"c{i}_{p}"))
        if not aggregates:
            return places
        query = sa.select(*aggregates).select_from(self.relation.selectable)
        with self.relation.connect() as conn:
            row = conn.execute(query).mappings().one()
        for i, name in enumerate(names):
            if name not in probes:
                continue
            values = int(row[f"c{i}_n"])
            # A handful of odd values (0.5%) does not make a column hold cents.
            tried = probes[name]
            fitting = [p for p in tried if int(row[f"c{i}_{p}"]) <= values * PLACES_SLACK]
            if values and fitting:
                places[name] = fitting[0]
        return places

    def _measure(self, column: str, groups: set[tuple[Any, ...]] | None) -> Peers:
        return measure(self.relation, column, self.check.group_by, only=groups)

    # -- peers-only path ------------------------------------------------------------------

    def _peer_candidates(self, unwitnessed: int) -> tuple[int, int, list[_Keyed]]:
        """Values without a witness a power of ten from their peers' typical value.

        Returns how many values are outliers among their peers, how many were examined, and
        the judgements.
        """
        if unwitnessed == 0:
            return 0, 0, []
        peers = self._measure(self.args.column, None)
        bounds = self._bounds(peers)
        if bounds is None:
            return 0, 0, []
        low, high = bounds
        where = sa.and_(
            self.column.is_not(None),
            self.column > 0,
            self.witness_sql.is_(None) if self.witness is not None else sa.true(),
            sa.or_(
                sa.cast(self.column, numeric_type()) > high,
                sa.cast(self.column, numeric_type()) < low,
            ),
        )
        rows = self._fetch(where, MAX_ANALYSED + 1)
        outliers = len(rows)
        if outliers > MAX_ANALYSED:
            rows = rows[:MAX_ANALYSED]
            with self.relation.connect() as conn:
                query = sa.select(sa.func.count()).select_from(self.relation.selectable)
                outliers = int(conn.execute(query.where(where)).scalar_one())
        judgements: list[_Keyed] = []
        places = self._places_in_use([self.args.column])[self.args.column]
        for row in rows:
            peer = Peer(*peers.lookup(self._group(row)))
            judged = judge_peers(
                self.args.column,
                to_decimal(row[self.args.column]),
                peer,
                places=places,
                max_magnitude=self.args.max_magnitude,
                why_no_witness=self._why_no_witness(row),
            )
            if judged is not None:
                judgements.append((judged, self._key(row)))
        return outliers, len(rows), judgements

    def _why_no_witness(self, row: Mapping[str, Any]) -> str:
        if self.witness is None:
            return "no witness configured: judged against its peers alone"
        nulls = [n for n in self.inputs if row[n] is None]
        if nulls:
            verb = "is" if len(nulls) == 1 else "are"
            return f"no witness value: {', '.join(nulls)} {verb} null in this record"
        return f"no witness value: {self.witness.text} divides by zero in this record"

    def _bounds(self, peers: Peers) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]] | None:
        """SQL for each row's outlier bounds: its group's where it has enough peers."""
        default = _limits(peers.overall)
        cases: list[tuple[sa.ColumnElement[bool], tuple[Decimal, Decimal]]] = []
        for group, spread in peers.groups.items():
            limits = _limits(spread)
            if limits is None or any(v is None for v in group):
                continue
            match = sa.and_(
                *[
                    self.relation.column(n) == v
                    for n, v in zip(self.check.group_by, group, strict=True)
                ]
            )
            cases.append((match, limits))
        if default is None and not cases:
            return None
        num = numeric_type()

        def pick(index: int) -> sa.ColumnElement[Any]:
            fallback = sa.null() if default is None else sa.literal(default[index], num)
            if not cases:
                return fallback
            return sa.case(
                *[(match, sa.literal(limits[index], num)) for match, limits in cases],
                else_=fallback,
            )

        return pick(0), pick(1)

    # -- the result -----------------------------------------------------------------------

    def _result(
        self,
        counts: Mapping[str, Any],
        suspicious: int,
        examined: int,
        judgements: list[_Keyed],
    ) -> CheckResult:
        by_action = Counter(j.action for j, _ in judgements)
        by_category: dict[str, int] = dict(Counter(j.category for j, _ in judgements))
        limit_hit = suspicious > examined
        analysed = int(counts["values"])
        left_out, unreadable = self.not_numbers
        rows = int(counts["rows"]) + left_out
        observed: dict[str, Any] = {
            "rows": rows,
            "analysed": analysed,
            "suspicious": suspicious,
            "examined": examined,
            "limit_hit": limit_hit,
            "findings": {a: by_action.get(a, 0) for a in _ACTION_ORDER},
        }
        if self.witness is not None:
            observed["with_witness"] = int(counts["witnessed"])
            observed["without_witness"] = int(counts["unwitnessed"])
        if self.args.history:
            # Said, not silently skipped: the owner asked for history evidence.
            observed["history"] = "not available: SQL sources keep no record history"
        # Stable: records keep key order within the same action and confidence.
        ranked = sorted(
            judgements, key=lambda item: (_ACTION_ORDER[item[0].action], -item[0].confidence)
        )
        findings = tuple(_finding(j, key) for j, key in ranked) + self.not_numbers[1]
        findings = findings[: self.check.ctx.max_findings]
        message = _message(by_category, analysed, self.witness is not None)
        if limit_hit:
            message += f" (examined the first {examined:,} of {suspicious:,} suspicious rows)"
        if left_out:
            observed["not_numbers"] = left_out
            message += f"; {plural(left_out, 'record')} left out of the analysis"
            if unreadable:
                first = unreadable[0]
                message += f": record {key_text(first.key)}: {first.reason}"
        metrics: dict[str, float] = {
            "rows": float(rows),
            "suspicious": float(suspicious),
            **{a: float(by_action.get(a, 0)) for a in _ACTION_ORDER},
        }
        return result(
            self.spec,
            not judgements and not left_out,
            message,
            observed=observed,
            findings=findings,
            metrics=metrics,
        )


def _finding(judgement: Judgement, key: dict[str, Any]) -> Finding:
    return Finding(
        key=key,
        column=judgement.column,
        observed=_json_number(judgement.observed),
        proposed=None if judgement.proposed is None else _json_number(judgement.proposed),
        action=judgement.action,
        confidence=judgement.confidence,
        reason=judgement.reason,
        evidence=judgement.evidence,
    )


def _not_a_number(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[bool]:
    """SQL: the value is there but is not a finite number. For NaN and infinity, ``x * 0``
    is not 0; SQLite also stores text in any column, which it multiplies as 0."""
    zero = sa.literal(0)
    finite: sa.ColumnElement[bool] = sa.func.coalesce(column * zero == zero, sa.false())
    if dialect == "sqlite":
        finite = sa.and_(finite, sa.func.typeof(column).in_(["integer", "real"]))
    return sa.and_(column.is_not(None), sa.not_(finite))


def _is_number(value: Any) -> bool:
    """Whether a value read back is a finite number (or nothing)."""
    if value is None:
        return True
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return False
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def _shown(value: Any) -> str:
    """Text quoted ('abc'), NaN and infinity by name."""
    return repr(value) if isinstance(value, str) else str(value)


def _json_number(value: Decimal) -> int | float:
    """A plain JSON number: an int when whole (exact at any size), else the nearest float."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def _message(categories: Mapping[str, int], analysed: int, witnessed: bool) -> str:
    if not categories:
        return f"no slips among {plural(analysed, 'row')}"
    parts: list[str] = []
    if categories.get("witness_slip"):
        n = categories["witness_slip"]
        verb, its = ("is", "its") if n == 1 else ("are", "their")
        parts.append(f"{plural(n, 'value')} {verb} a typing slip away from {its} witness")
    if categories.get("input_slip"):
        n = categories["input_slip"]
        parts.append(f"{plural(n, 'witness input')} {'looks' if n == 1 else 'look'} mistyped")
    if categories.get("mismatch"):
        n = categories["mismatch"]
        verb, its = ("disagrees", "its") if n == 1 else ("disagree", "their")
        parts.append(f"{plural(n, 'value')} {verb} with {its} witness beyond a typing slip")
    if categories.get("peer_slip"):
        n = categories["peer_slip"]
        verb, its = ("is", "its") if n == 1 else ("are", "their")
        without = " (no witness)" if witnessed else ""
        parts.append(f"{plural(n, 'value')} {verb} a power of ten away from {its} peers{without}")
    return "; ".join(parts)


def _half_unit(info: ColumnInfo) -> Decimal:
    """Half the last decimal place the column keeps: rounding to it is no discrepancy."""
    places = _places(info)
    return Decimal(0) if places is None else Decimal(5).scaleb(-(places + 1))


def _places(info: ColumnInfo) -> int | None:
    """The decimal places a column holds (0 for integers); None for floats and unknowns."""
    sql_type = info.sql_type
    if sql_type is None or isinstance(sql_type, sa.Float):
        return None
    if isinstance(sql_type, sa.Integer):
        return 0
    if isinstance(sql_type, sa.Numeric) and sql_type.scale is not None:
        return int(sql_type.scale)
    return None


def _limits(spread: Spread | None) -> tuple[Decimal, Decimal] | None:
    """The values beyond which a positive value is an outlier among these peers."""
    if spread is None or spread.count < MIN_PEERS:
        return None
    width = 10 ** (Z_OUTLIER * spread.log_scale)
    median = float(spread.median)
    return Decimal(repr(median / width)), Decimal(repr(median * width))
