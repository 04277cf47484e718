"""``fat_finger``: values a typing slip away from what the record should hold.

The work happens in the database. The suite's shared scan counts the records and those with a
witness value (from its inputs' nulls, without computing it); beyond it the check reads the
table at most twice:

* one bounded read of the candidates (at most :data:`MAX_ANALYSED`): records that disagree
  with their witness, and records without a witness value whose value, or the witness input
  it implies, is untypical among their peers;
* one aggregate query for the peers and the decimal places each column uses: histograms of
  every analysed column per group (:func:`~dq_agent.checks.fat_finger.peers.survey`), on a
  random sample of a large table. It comes first when records without a witness value are
  to be screened; otherwise only when there are candidates to judge.

Only when there are more than MAX_ANALYSED candidates are they counted, and the first ones
read again in key order.

Record history (the value last accepted) is not used: SQL sources do not keep it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dq_agent.checks.base import CheckContext, count_where, error_result, plural, result
from dq_agent.checks.fat_finger.decide import (
    RELATIVE_TOLERANCE,
    Z_OUTLIER,
    Implied,
    Judgement,
    Peer,
    Unwitnessed,
    Witnessed,
    judge_unwitnessed,
    judge_witnessed,
)
from dq_agent.checks.fat_finger.peers import (
    MIN_PEERS,
    Peers,
    Spread,
    Survey,
    survey,
    to_decimal,
)
from dq_agent.config.models import CheckSpec, FatFingerArgs
from dq_agent.expressions import Expression, ExpressionError, numeric_type, parse
from dq_agent.results import Action, CheckResult, Finding, key_text
from dq_agent.sources.base import ColumnInfo, Relation, planner_settings

# Candidate records examined per run at most; the result says when there were more.
MAX_ANALYSED = 10_000
# Groups whose own outlier bounds screen the records without a witness value; records of
# other groups are screened against all rows (and still judged against their own group).
MAX_SCREENED_GROUPS = 1_000
# The share of values allowed more decimal places than the column is judged to use.
PLACES_SLACK = 0.005
# Where witnesses are computed in floating point (see numeric_type).
_FLOAT_DIALECTS = ("sqlite", "duckdb")
_NUMERIC_FAMILIES = ("integer", "number", "unknown")
_ACTION_ORDER: dict[Action, int] = {"auto_correct": 0, "propose": 1, "report": 2}

# A judgement and the key of the record it is about.
_Keyed = tuple[Judgement, dict[str, Any]]


class FatFinger:
    """Planned ``fat_finger`` check: counts in the shared scan, then its own bounded queries."""

    def __init__(self, spec: CheckSpec, relation: Relation, ctx: CheckContext) -> None:
        assert isinstance(spec.args, FatFingerArgs)
        self.spec = spec
        self.args = spec.args
        self.relation = relation
        self.ctx = ctx
        self.key: tuple[str, ...] = ctx.key or relation.primary_key
        self.group_by: tuple[str, ...] = tuple(self.args.peers.group_by if self.args.peers else ())
        self.witness: Expression | None = None
        self.problem: str | None = None
        if self.args.witness is not None:
            try:
                self.witness = parse(self.args.witness)
            except ExpressionError as exc:
                self.problem = f"invalid witness {self.args.witness!r}: {exc}"
        self.problem = self.problem or self._problem()

    def aggregates(self) -> dict[str, sa.ColumnElement[Any]]:
        # A witness naming columns that are not there is reported by evaluate(): nothing of it
        # may reach the suite's shared scan and break it.
        if self.problem is not None:
            return {}
        return _Query(self, self.relation).counts()

    def evaluate(self, values: Mapping[str, Any]) -> CheckResult:
        if self.problem is not None:
            return error_result(self.spec, self.problem)
        return _Run(self, values).result()

    def _problem(self) -> str | None:
        columns = self.relation.columns
        inputs = sorted(self.witness.columns()) if self.witness is not None else []
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


class _Query:
    """The check's SQL over one relation."""

    def __init__(self, check: FatFinger, relation: Relation) -> None:
        self.check = check
        self.relation = relation
        self.witness = check.witness
        self.inputs = sorted(self.witness.columns()) if self.witness is not None else []
        self.analysed = list(dict.fromkeys([check.args.column, *self.inputs]))
        self.column = relation.column(check.args.column)
        self.value = sa.cast(self.column, numeric_type())
        self.tolerance = _half_unit(relation.columns[check.args.column])
        self.witness_sql = (
            self.witness.to_sql(relation.column) if self.witness is not None else sa.null()
        )
        self.witness_null = (
            self.witness.null_sql(relation.column) if self.witness is not None else sa.true()
        )
        # Exact decimals throughout: no floating-point noise to allow for.
        self.exact = relation.engine.dialect.name not in _FLOAT_DIALECTS and all(
            _places(relation.columns[n]) is not None for n in self.analysed
        )

    def counts(self) -> dict[str, sa.ColumnElement[Any]]:
        """Aggregates for the shared scan: the records, those with a witness value (read
        from its inputs' nulls, ``seats IS NULL OR price IS NULL``, not computed), and those
        that disagree with it. On clean data that is all the check reads.

        When ``not_numbers`` is not 0 (SQLite keeps text in any column; NaN), the other
        counts are taken again without those records (see :meth:`numbers_only`): asking
        every count here whether its record holds numbers would cost the scan as much again.
        """
        present = self.column.is_not(None)
        counts: dict[str, sa.ColumnElement[Any]] = {
            "rows": sa.func.count(),
            "not_numbers": count_where(self.not_a_number()),
            # COUNT(column), as other checks of the column ask: the scan computes it once.
            "values": sa.func.count(self.column),
        }
        if self.witness is not None:
            counts["witnessed"] = count_where(sa.and_(present, sa.not_(self.witness_null)))
            counts["disagree"] = count_where(self.disagrees())
        return counts

    def places(self, surveyed: Survey) -> dict[str, int | None]:
        """The decimal places each analysed column's values use (None: not known).

        A price column declared NUMERIC(12, 2) that only ever holds whole dollars makes
        $436.80 an unlikely price: what people type is what the column holds, not its type.
        """
        places: dict[str, int | None] = {}
        for name in self.analysed:
            declared = _places(self.relation.columns[name])
            values = surveyed.values.get(name, 0)
            # A handful of odd values (0.5%) does not make a column hold cents.
            fitting = [
                p
                for p, beyond in enumerate(surveyed.beyond_places.get(name, ()))
                if beyond <= values * PLACES_SLACK
            ]
            places[name] = declared
            if values and fitting and (declared is None or fitting[0] < declared):
                places[name] = fitting[0]
        return places

    def disagrees(self) -> sa.ColumnElement[bool]:
        w = self.witness_sql
        allowed: sa.ColumnElement[Any] = sa.literal(self.tolerance, numeric_type())
        if not self.exact:
            # Floating point: differences below a share of the witness are noise.
            allowed = allowed + sa.func.abs(w) * sa.literal(RELATIVE_TOLERANCE, numeric_type())
        return sa.and_(
            self.column.is_not(None),
            sa.not_(self.witness_null),
            # Equal, as almost every record is, answers without the subtraction.
            self.value != w,
            sa.func.abs(self.value - w) > allowed,
        )

    def not_a_number(self) -> sa.ColumnElement[bool]:
        dialect = self.relation.engine.dialect.name
        # Whole-number columns hold nothing else, but on SQLite, which keeps what it is given.
        odd = [
            _not_a_number(self.relation.column(n), self.relation.engine.dialect)
            for n in self.analysed
            if dialect == "sqlite" or not isinstance(self.relation.columns[n].sql_type, sa.Integer)
        ]
        return sa.or_(*odd) if odd else sa.false()

    def not_numbers_found(self) -> tuple[Finding, ...]:
        """The first records holding something other than a number, as findings."""
        key = self.check.key
        # Untyped: a typed column would try (and fail) to turn "abc" into a number.
        raw = [
            sa.type_coerce(self.relation.column(n), sa.types.NullType()).label(n)
            for n in self.analysed
        ]
        query = (
            sa.select(*[self.relation.column(k).label(k) for k in key], *raw)
            .where(self.not_a_number())
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
            for name in self.analysed
            if not _is_number(row[name])
        )

    def numbers_only(self) -> Relation:
        """The relation without the records holding something other than a number."""
        numbers = sa.select(self.relation.selectable).where(sa.not_(self.not_a_number()))
        return replace(self.relation, selectable=numbers.subquery("numbers"))

    def solved(self, name: str, at: int) -> sa.ColumnElement[Any]:
        """The witness in SQL with input ``name`` set to ``at``."""
        assert self.witness is not None
        fixed = sa.literal(Decimal(at), numeric_type())
        return self.witness.to_sql(lambda n: fixed if n == name else self.relation.column(n))

    def candidates(
        self, peers: Mapping[str, Peers], places: Mapping[str, int | None]
    ) -> tuple[sa.FromClause, sa.ColumnElement[bool]]:
        """Where the candidates are read from, and which records qualify: those that disagree
        with their witness, and those without a witness value that are untypical among their
        peers, or imply an untypical input."""
        source, bounds = self._bounds(peers)
        low, high = bounds[self.check.args.column]
        outside = [sa.or_(self.value < low, self.value > high)]
        for name in self.inputs if self.witness is not None else []:
            at_zero, at_one = self.solved(name, 0), self.solved(name, 1)
            slope = at_one - at_zero
            implied = (self.value - at_zero) / sa.func.nullif(
                slope, sa.literal(Decimal(0), numeric_type())
            )
            low, high = bounds[name]
            untypical = [implied <= 0, implied < low, implied > high]
            kept = places.get(name)
            if kept is not None:
                # No value with the input's decimal places gives the observed value.
                rounded = sa.func.round(implied, kept, type_=numeric_type())
                allowed = sa.literal(self.tolerance, numeric_type()) + sa.func.abs(
                    self.value
                ) * sa.literal(RELATIVE_TOLERANCE, numeric_type())
                untypical.append(sa.func.abs((rounded - implied) * slope) > allowed)
            column = self.relation.column(name)
            outside.append(sa.and_(column.is_(None), at_one.is_not(None), sa.or_(*untypical)))
        screened = sa.and_(
            self.column.is_not(None),
            self.value > 0,
            self.witness_null,
            sa.or_(*outside),
        )
        if self.witness is None:
            return source, screened
        return source, sa.or_(self.disagrees(), screened)

    def _bounds(
        self, peers: Mapping[str, Peers]
    ) -> tuple[sa.FromClause, dict[str, tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]]]:
        """Each analysed column's outlier bounds as SQL: the record's group's where it has
        enough peers (a join with a small table of bounds per group), else all rows'."""
        num = numeric_type()

        def literal(value: Decimal | None) -> sa.ColumnElement[Any]:
            return sa.cast(sa.null() if value is None else sa.literal(value, num), num)

        # Inputs are judged for the value a record without them implies: the record is not
        # among their peers, so beyond their range is untypical too.
        column = self.check.args.column
        defaults = {
            name: _limits(peers[name].overall, within=name != column) for name in self.analysed
        }
        group_by = self.check.group_by
        counted: Counter[tuple[Any, ...]] = Counter()
        for name in self.analysed:
            for group, spread in peers[name].groups.items():
                if spread.count >= MIN_PEERS and all(v is not None for v in group):
                    counted[group] = max(counted[group], spread.count)
        groups = [g for g, _ in counted.most_common(MAX_SCREENED_GROUPS)]
        if not group_by or not groups:
            return self.relation.selectable, {
                name: (literal(limit[0] if limit else None), literal(limit[1] if limit else None))
                for name, limit in defaults.items()
            }
        rows = []
        for group in groups:
            cells = [
                sa.cast(
                    sa.literal(v, self.relation.column(n).type), self.relation.column(n).type
                ).label(f"g{i}")
                for i, (n, v) in enumerate(zip(group_by, group, strict=True))
            ]
            for i, name in enumerate(self.analysed):
                limit = _limits(peers[name].groups.get(group), within=name != column)
                cells.append(literal(limit[0] if limit else None).label(f"low{i}"))
                cells.append(literal(limit[1] if limit else None).label(f"high{i}"))
            rows.append(sa.select(*cells))
        table = sa.union_all(*rows).subquery("bounds")
        source = self.relation.selectable.outerjoin(
            table,
            sa.and_(*[self.relation.column(n) == table.c[f"g{i}"] for i, n in enumerate(group_by)]),
        )
        bounds: dict[str, tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]] = {}
        for i, name in enumerate(self.analysed):
            default = defaults[name]
            low: sa.ColumnElement[Any] = table.c[f"low{i}"]
            high: sa.ColumnElement[Any] = table.c[f"high{i}"]
            if default is not None:
                low = sa.func.coalesce(low, literal(default[0]), type_=num)
                high = sa.func.coalesce(high, literal(default[1]), type_=num)
            bounds[name] = (low, high)
        return source, bounds


class _Run:
    """One evaluation: the queries, the judgements, the result."""

    def __init__(self, check: FatFinger, counts: Mapping[str, Any]) -> None:
        self.check = check
        self.spec = check.spec
        self.args = check.args
        self.counts = counts
        self.witness = check.witness
        self.left_out = int(counts["not_numbers"] or 0)
        query = _Query(check, check.relation)
        # Text in a number column (SQLite keeps what it is given), NaN or infinity: one such
        # value must not stop the check. Report it, and judge the other records.
        self.unreadable = query.not_numbers_found() if self.left_out else ()
        self.relation = query.numbers_only() if self.left_out else check.relation
        self.query = _Query(check, self.relation) if self.left_out else query
        if self.left_out:
            aggregates = [e.label(name) for name, e in self.query.counts().items()]
            with self.relation.connect() as conn:
                recount = conn.execute(sa.select(*aggregates).select_from(self.relation.selectable))
                self.counts = {**dict(recount.mappings().one()), "rows": counts["rows"]}
        self.inputs = self.query.inputs
        self.tolerance = self.query.tolerance

    def result(self) -> CheckResult:
        values = int(self.counts["values"] or 0)
        witnessed = int(self.counts.get("witnessed") or 0)
        disagree = int(self.counts.get("disagree") or 0)
        surveyed: Survey | None = None
        if witnessed < values:
            # Records without a witness value are screened against their peers' bounds:
            # the peers come first.
            surveyed = self._survey(values)
            source, where = self.query.candidates(surveyed.peers, self.query.places(surveyed))
            rows, suspicious = self._fetch(source, where)
        elif disagree:
            source, where = self.relation.selectable, self.query.disagrees()
            rows, suspicious = self._fetch(source, where, known=disagree)
        else:
            return self._result(0, 0, [])
        if not rows:
            return self._result(0, 0, [])
        surveyed = surveyed or self._survey(values)
        places = self.query.places(surveyed)
        judgements: list[_Keyed] = []
        for row in rows:
            judged = self._judge(row, surveyed.peers, places)
            if judged is not None:
                judgements.append((judged, {k: row[k] for k in self.check.key}))
        return self._result(suspicious, len(rows), judgements)

    def _survey(self, values: int) -> Survey:
        return survey(self.relation, self.query.analysed, self.check.group_by, rows=values)

    def _fetch(
        self, source: sa.FromClause, where: sa.ColumnElement[bool], *, known: int | None = None
    ) -> tuple[list[dict[str, Any]], int]:
        """The first MAX_ANALYSED candidates by key, and how many there are in all (``known``
        already, when the shared scan counted them).

        Read unordered first: ordered by key with a limit, PostgreSQL would walk the whole
        primary key index looking for the few rows that qualify (and with a limit alone it
        reads the table on one core). Only when there are more than MAX_ANALYSED are they
        counted, and the first ones read again in key order.
        """
        names = list(dict.fromkeys([*self.check.key, self.args.column, *self.inputs]))
        names += [g for g in self.check.group_by if g not in names]
        query = (
            sa.select(*[self.relation.column(n).label(n) for n in names])
            .select_from(source)
            .where(where)
        )
        if known is None or known > MAX_ANALYSED:
            query = query.limit(MAX_ANALYSED + 1)
        # Few rows qualify, as counted: PostgreSQL, which cannot tell, would read the table on
        # one core rather than pass a third of it between workers.
        settings = {"parallel_tuple_cost": "0"} if known is not None else {}
        with self.relation.connect() as conn:
            with planner_settings(self.relation, conn, **settings):
                rows = [dict(r) for r in conn.execute(query).mappings()]
            if len(rows) <= MAX_ANALYSED:
                rows.sort(key=lambda row: [(row[k] is None, row[k]) for k in self.check.key])
                return rows, len(rows)
            count = sa.select(sa.func.count()).select_from(source).where(where)
            total = int(conn.execute(count).scalar_one())
            ordered = query.limit(None).order_by(*[self.relation.column(k) for k in self.check.key])
            rows = [dict(r) for r in conn.execute(ordered.limit(MAX_ANALYSED)).mappings()]
        return rows, total

    def _witness_value(self, row: Mapping[str, Any]) -> Decimal | None:
        return None if self.witness is None else self.witness.evaluate(row)

    def _judge(
        self, row: Mapping[str, Any], peers: Mapping[str, Peers], places: Mapping[str, int | None]
    ) -> Judgement | None:
        group = tuple(row[g] for g in self.check.group_by)
        observed = to_decimal(row[self.args.column])
        column_peer = Peer(*peers[self.args.column].lookup(group))
        value = self._witness_value(row)
        if value is None:
            return judge_unwitnessed(
                Unwitnessed(
                    column=self.args.column,
                    observed=observed,
                    peer=column_peer,
                    places=places[self.args.column],
                    implied=self._implied(row, peers, places, group),
                    tolerance=self.tolerance,
                    max_magnitude=self.args.max_magnitude,
                    why_no_witness=self._why_no_witness(row),
                )
            )
        assert self.witness is not None
        if abs(observed - value) <= self.tolerance + abs(value) * RELATIVE_TOLERANCE:
            return None  # the database's floating point disagreed; exact decimals do not
        return judge_witnessed(
            Witnessed(
                column=self.args.column,
                observed=observed,
                witness=self.witness,
                value=value,
                exact=self.witness.evaluate(row, exact=True) is not None,
                inputs={n: None if row[n] is None else to_decimal(row[n]) for n in self.inputs},
                column_peer=column_peer,
                input_peers={n: Peer(*peers[n].lookup(group)) for n in self.inputs},
                input_places={n: places[n] for n in self.inputs},
                tolerance=self.tolerance,
                max_magnitude=self.args.max_magnitude,
                auto_correct=self.args.auto_correct,
            )
        )

    def _implied(
        self,
        row: Mapping[str, Any],
        peers: Mapping[str, Peers],
        places: Mapping[str, int | None],
        group: tuple[Any, ...],
    ) -> tuple[Implied, ...]:
        """The null inputs the observed value implies, where the witness is linear in them."""
        if self.witness is None:
            return ()
        implied: list[Implied] = []
        for name in self.inputs:
            if row[name] is not None:
                continue
            at = [self.witness.evaluate({**row, name: Decimal(x)}) for x in (0, 1, 2)]
            if at[0] is None or at[1] is None or at[2] is None:
                continue
            slope = at[1] - at[0]
            if slope == 0 or at[2] - at[1] != slope:
                continue  # not linear in this input: no single value to imply
            peer = Peer(*peers[name].lookup(group))
            implied.append(Implied(name, at[0], slope, peer, places[name]))
        return tuple(implied)

    def _why_no_witness(self, row: Mapping[str, Any]) -> str:
        if self.witness is None:
            return "no witness configured: judged against its peers alone"
        nulls = [n for n in self.inputs if row[n] is None]
        if nulls:
            verb = "is" if len(nulls) == 1 else "are"
            return f"no witness value: {', '.join(nulls)} {verb} null in this record"
        return f"no witness value: {self.witness.text} divides by zero in this record"

    # -- the result -----------------------------------------------------------------------

    def _result(self, suspicious: int, examined: int, judgements: list[_Keyed]) -> CheckResult:
        counts = self.counts
        by_action = Counter(j.action for j, _ in judgements)
        by_category: dict[str, int] = dict(Counter(j.category for j, _ in judgements))
        limit_hit = suspicious > examined
        analysed = int(counts["values"] or 0)
        rows = int(counts["rows"] or 0)
        observed: dict[str, Any] = {
            "rows": rows,
            "analysed": analysed,
            "suspicious": suspicious,
            "examined": examined,
            "limit_hit": limit_hit,
            "findings": {a: by_action.get(a, 0) for a in _ACTION_ORDER},
        }
        if self.witness is not None:
            witnessed = int(counts["witnessed"] or 0)
            observed["with_witness"] = witnessed
            observed["without_witness"] = analysed - witnessed
        if self.args.history:
            # Said, not silently skipped: the owner asked for history evidence.
            observed["history"] = "not available: SQL sources keep no record history"
        # Stable: records keep key order within the same action and confidence.
        ranked = sorted(
            judgements, key=lambda item: (_ACTION_ORDER[item[0].action], -item[0].confidence)
        )
        findings = tuple(_finding(j, key) for j, key in ranked) + self.unreadable
        findings = findings[: self.check.ctx.max_findings]
        message = _message(by_category, analysed, self.witness is not None)
        if limit_hit:
            message += f" (examined the first {examined:,} of {suspicious:,} suspicious rows)"
        if self.left_out:
            observed["not_numbers"] = self.left_out
            message += f"; {plural(self.left_out, 'record')} left out of the analysis"
            if self.unreadable:
                first = self.unreadable[0]
                message += f": record {key_text(first.key)}: {first.reason}"
        metrics: dict[str, float] = {
            "rows": float(rows),
            "suspicious": float(suspicious),
            **{a: float(by_action.get(a, 0)) for a in _ACTION_ORDER},
        }
        return result(
            self.spec,
            not judgements and not self.left_out,
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


def _not_a_number(
    column: sa.ColumnElement[Any], dialect: sa.engine.Dialect
) -> sa.ColumnElement[bool]:
    """SQL: the value is there but is not a finite number. For NaN and infinity, ``x * 0``
    is not 0; SQLite also stores text in any column, which it multiplies as 0.

    PostgreSQL sorts NaN above infinity and infinity above every number, and comparing costs
    less than arithmetic on NUMERIC: a NUMERIC(p, s) holds no infinity, so only NaN is asked
    for; NUMERIC without a precision holds infinities from PostgreSQL 14 on.
    """
    if dialect.name == "postgresql":
        kind = column.type
        if isinstance(kind, sa.Float):
            infinite: sa.ColumnElement[Any] = sa.cast(sa.literal_column("'Infinity'"), sa.Double())
            return sa.or_(column >= infinite, column <= -infinite)
        if isinstance(kind, sa.Numeric):
            version = dialect.server_version_info or (0,)
            if kind.precision is not None or version < (14,):
                return column == sa.cast(sa.literal_column("'NaN'"), sa.Numeric())
            infinite = sa.cast(sa.literal_column("'Infinity'"), sa.Numeric())
            return sa.or_(column >= infinite, column <= -infinite)
    zero = sa.literal(0)
    finite: sa.ColumnElement[bool] = sa.func.coalesce(column * zero == zero, sa.false())
    if dialect.name == "sqlite":
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
    if categories.get("impossible_input"):
        n = categories["impossible_input"]
        verb = "implies" if n == 1 else "imply"
        parts.append(f"{plural(n, 'value')} {verb} a witness input no record can hold")
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


def _limits(spread: Spread | None, *, within: bool = False) -> tuple[Decimal, Decimal] | None:
    """The values beyond which a positive value is an outlier among these peers (or, with
    ``within``, also beyond the range they hold)."""
    if spread is None or spread.count < MIN_PEERS:
        return None
    width = 10 ** (Z_OUTLIER * spread.log_scale)
    median = float(spread.median)
    low, high = Decimal(repr(median / width)), Decimal(repr(median * width))
    if within:
        return max(low, spread.low), min(high, spread.high)
    return low, high
