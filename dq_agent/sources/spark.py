"""``type: spark`` — a table or query of a Spark session, every check pushed down as Spark SQL.

The checks build SQLAlchemy statements as for any database. Here they are compiled with the
Databricks dialect (its SQL is Spark SQL), their values written in, and run by
``spark.sql(...)``: a :class:`Relation` whose engine only compiles (a mock engine) and whose
connection is :class:`SparkConnection`. No row is read into this process but the answers.

PySpark is imported when a session is first needed (``pip install 'dq-agent[spark]'``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import IteratorResult
from sqlalchemy.engine.result import SimpleResultMetaData
from sqlalchemy.sql.elements import UnaryExpression
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import cloned_traverse, replacement_traverse

from dq_agent.config.models import CheckSpec, SparkConnector, SparkSourceSpec
from dq_agent.errors import SourceError
from dq_agent.sources.base import ColumnInfo, Relation, WriteResult, type_family

# What Relation.url holds for a Spark source: nothing else can connect to it by URL (GX).
URL_PREFIX = "spark:"
NOT_YET = "is not supported yet on spark"
# Check types whose SQL would run on Spark but not answer right, or that need a connection
# the mock engine does not have; each says why.
_UNSUPPORTED: dict[str, str] = {
    # It describes the referenced table through SQLAlchemy's inspector, and copies another
    # connector's values into a temporary table: neither exists on Spark here.
    "reference": "the referenced table cannot be described or copied there",
}

_sessions: dict[tuple[Any, ...], Any] = {}
_sessions_lock = threading.Lock()


def is_spark(relation: Relation) -> bool:
    """Whether ``relation`` is a Spark source's (its checks run through Spark SQL)."""
    return relation.url.startswith(URL_PREFIX)


def not_on_spark(spec: CheckSpec) -> str | None:
    """Why the check ``spec`` cannot run on Spark yet, as its error message; None if it can."""
    if spec.type in _UNSUPPORTED:
        return f"{spec.type} {NOT_YET}: {_UNSUPPORTED[spec.type]}"
    return None


def session(connector: SparkConnector) -> Any:
    """The process's SparkSession for ``connector`` (created once, never stopped here: other
    suites and runs share it)."""
    key = (connector.master, connector.remote, tuple(sorted(connector.conf.items())))
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = _create(connector)
        return _sessions[key]


def _create(connector: SparkConnector) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SourceError(
            "type: spark needs PySpark: pip install 'dq-agent[spark]'", transient=False
        ) from exc
    builder = SparkSession.builder
    if connector.remote is not None:
        builder = builder.remote(connector.remote)
    else:
        assert connector.master is not None  # the model requires one of the two
        builder = builder.master(connector.master)
    for name, value in connector.conf.items():
        builder = builder.config(name, value)
    where = connector.remote or connector.master
    try:
        if connector.remote is not None:
            # A session of its own on the server, with this connector's settings: getOrCreate
            # would hand back another connector's session to the same server.
            return builder.create()
        return builder.getOrCreate()
    except Exception as exc:  # the JVM, py4j or gRPC: each means no session
        # A Spark Connect server that does not answer may come back; a local JVM that cannot
        # start (no Java, a bad setting), or a setting the server refuses, will not by itself.
        raise SourceError(
            f"cannot start a Spark session on {where}: {_first_line(exc)}",
            transient=connector.remote is not None and _unreachable(exc),
        ) from exc


class SparkSource:
    """Describes one table or query of a ``spark`` connector; its checks run as Spark SQL."""

    def __init__(self, spark: Any, spec: SparkSourceSpec, connector: SparkConnector) -> None:
        self._spark = spark
        self._spec = spec
        self._where = connector.remote or connector.master or "spark"
        self._relation: Relation | None = None

    def open(self) -> Relation:
        connection = SparkConnection(self._spark)
        engine = sa.create_mock_engine(sa.make_url("databricks://"), connection.mock_execute)
        try:
            schema = self.frame().schema
        except Exception as exc:  # pyspark's AnalysisException, ParseException, gRPC errors
            raise self._not_opened(exc) from exc
        described = [(f.name, spark_type(f.dataType)) for f in schema.fields]
        columns = {name: ColumnInfo(name, type_family(kind), kind) for name, kind in described}
        url = f"{URL_PREFIX}{self._where}"
        bound = cast(sa.Connection, connection)
        if self._spec.table is not None:
            *parts, name = self._spec.table.split(".")
            preparer = engine.dialect.identifier_preparer
            # catalog.db as one schema would be quoted as one name: each part is quoted alone.
            schema_name = sa.sql.quoted_name(".".join(map(preparer.quote, parts)), quote=False)
            table = sa.table(
                name, *[sa.column(n, t) for n, t in described], schema=schema_name or None
            )
            self._relation = Relation(
                cast(sa.Engine, engine),
                table,
                columns,
                (),
                self._spec.table,
                url,
                table=name,
                schema=".".join(parts) or None,
                bound=bound,
                frame=self.frame,
            )
        else:
            query = self._spec.query
            assert query is not None
            typed = [sa.column(n, t) for n, t in described]
            sub = sa.text(query).columns(*typed).subquery("dq_source")
            self._relation = Relation(
                cast(sa.Engine, engine),
                sub,
                columns,
                (),
                "query",
                url,
                query=query,
                bound=bound,
                frame=self.frame,
            )
        return self._relation

    def frame(self) -> Any:
        """The source as a DataFrame of the session (Great Expectations reads it there)."""
        if self._spec.query is not None:
            return self._spark.sql(self._spec.query)
        return self._spark.table(self._spec.table)

    def _not_opened(self, exc: Exception) -> SourceError:
        detail = _first_line(exc)
        transient = _unreachable(exc)
        if self._spec.table is not None:
            if "TABLE_OR_VIEW_NOT_FOUND" in detail:
                # Spark's own text goes on to advice about search paths: the name is enough.
                message = f"table {self._spec.table} not found on spark ({self._where})"
                return SourceError(message, transient=False)
            return SourceError(
                f"table {self._spec.table} cannot be read on spark ({self._where}): {detail}",
                transient=transient,
            )
        return SourceError(
            f"query cannot be run on spark ({self._where}): {detail}", transient=transient
        )

    def read(self, key: Mapping[str, Any], column: str) -> Any:
        relation = self._relation or self.open()
        table = relation.selectable
        query = sa.select(table.c[column]).where(*[table.c[k] == v for k, v in key.items()])
        try:
            return relation.connect().execute(query).scalar_one_or_none()
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(
                f"query failed on spark: {_first_line(exc)}", transient=False
            ) from exc

    def write(
        self, key: Mapping[str, Any], column: str, expected_old: Any, new: Any
    ) -> WriteResult:
        raise SourceError("spark sources are not corrected", transient=False)

    def close(self) -> None:
        """Nothing to release: the session is the process's, shared by every suite."""


class SparkConnection:
    """What a check reads through (``relation.connect()``): compiles each statement to Spark
    SQL with its values written in, runs it, and answers as a SQLAlchemy result."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark
        self.dialect: sa.Dialect = sa.make_url("databricks://").get_dialect()()

    def __enter__(self) -> SparkConnection:
        return self

    def __exit__(self, *_exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def execution_options(self, **_options: Any) -> SparkConnection:
        return self

    def mock_execute(self, statement: sa.Executable, *multiparams: Any, **params: Any) -> Any:
        """The mock engine's executor: the engine's own connection runs the same way."""
        return self.execute(statement, multiparams[0] if multiparams else params or None)

    def execute(
        self,
        statement: sa.Executable,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        execution_options: Mapping[str, Any] | None = None,
    ) -> sa.CursorResult[Any]:
        text = self.sql(statement, parameters)
        try:
            frame = self._spark.sql(text)
            rows = frame.collect()
        except Exception as exc:  # pyspark's errors; the checks turn these into results
            raise sa.exc.ProgrammingError(text, None, exc) from exc
        types = [type(f.dataType).__name__ for f in frame.schema.fields]
        zoned = [i for i, name in enumerate(types) if name == "TimestampType"]
        values = [_aware(tuple(row), zoned) for row in rows]
        result: sa.Result[Any] = IteratorResult(
            SimpleResultMetaData(list(frame.columns)), iter(values)
        )
        return cast(sa.CursorResult[Any], result)

    def sql(
        self,
        statement: sa.Executable,
        parameters: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """``statement`` as Spark SQL, its values written in."""
        if parameters:
            if not isinstance(statement, sa.TextClause) or not isinstance(parameters, Mapping):
                raise sa.exc.ArgumentError(
                    f"statements with separate parameters {NOT_YET}: {statement}"
                )
            statement = statement.bindparams(**parameters)
        sent = replacement_traverse(cast(sa.ClauseElement, statement), {}, _doubles)
        sent = cloned_traverse(sent, {}, {"select": _order_by_labels})
        compiled = cast(sa.ClauseElement, sent).compile(
            dialect=self.dialect, compile_kwargs={"literal_binds": True}
        )
        return str(compiled)


def _doubles(element: Any, **_kw: Any) -> sa.ColumnElement[Any] | None:
    """A float value as a DOUBLE: Spark reads a bare ``1.0`` as DECIMAL(2,1), and ``AVG(1.0 *
    seats)`` then rounds to five places where a driver's float parameter would not."""
    if not isinstance(element, sa.BindParameter) or type(element.value) is not float:
        return None
    return sa.literal_column(f"CAST('{element.value!r}' AS DOUBLE)", sa.Float())


def _order_by_labels(select: sa.Select[Any]) -> None:
    """An aggregate in ORDER BY that the select list labels is ordered by its label instead:
    Spark's analyzer refuses an aggregate in ORDER BY beside a window function (``ORDER BY
    count(*) DESC`` of a value count with its totals ``OVER ()``); the label means the same."""
    labels = [c for c in select._raw_columns if isinstance(c, sa.Label)]
    ordered: list[Any] = []
    for item in select._order_by_clauses:
        inner = item.element if isinstance(item, UnaryExpression) else item
        if not isinstance(inner, FunctionElement):
            ordered.append(item)
            continue
        label = next((lb for lb in labels if lb.element.compare(inner)), None)
        if label is None:
            ordered.append(item)
            continue
        by_label: sa.ColumnElement[Any] = sa.literal_column(f"`{label.name.replace('`', '``')}`")
        if isinstance(item, UnaryExpression):
            item = item._clone()
            item.element = by_label
            ordered.append(item)
        else:
            ordered.append(by_label)
    select._order_by_clauses = tuple(ordered)


def _aware(row: tuple[Any, ...], zoned: Sequence[int]) -> tuple[Any, ...]:
    """PySpark hands a TIMESTAMP (an instant) back as a naive datetime in this process's local
    time zone: made an aware UTC datetime, as a timestamp with a time zone is elsewhere."""
    if not zoned:
        return row
    values = list(row)
    for i in zoned:
        value = values[i]
        if isinstance(value, datetime) and value.tzinfo is None:
            values[i] = value.astimezone(UTC)
    return tuple(values)


def spark_type(data_type: Any) -> sa.types.TypeEngine[Any]:
    """The SQLAlchemy type of a Spark SQL type (NullType where there is no counterpart)."""
    name = type(data_type).__name__
    if name == "DecimalType":
        return sa.Numeric(data_type.precision, data_type.scale)
    if name == "TimestampType":  # an instant, shown in the session's time zone
        return sa.DateTime(timezone=True)
    simple: dict[str, sa.types.TypeEngine[Any]] = {
        "ByteType": sa.SmallInteger(),
        "ShortType": sa.SmallInteger(),
        "IntegerType": sa.Integer(),
        "LongType": sa.BigInteger(),
        "FloatType": sa.Float(),
        "DoubleType": sa.Float(),
        "StringType": sa.String(),
        "VarcharType": sa.String(),
        "CharType": sa.String(),
        "TimestampNTZType": sa.DateTime(),
        "DateType": sa.Date(),
        "BooleanType": sa.Boolean(),
        "BinaryType": sa.LargeBinary(),
    }
    return simple.get(name, sa.types.NullType())


def _unreachable(exc: Exception) -> bool:
    """Whether a Spark error means the server did not answer (may pass), not a bad request."""
    kind = type(exc).__name__
    text = str(exc)
    return kind == "SparkConnectGrpcException" or any(
        marker in text for marker in ("UNAVAILABLE", "Connection refused", "DEADLINE_EXCEEDED")
    )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
