"""Frozen, typed models of a project's YAML: settings, connector profiles, suites, checks.

The core never touches raw dicts: everything is validated here once, at the edge.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dq_agent.config.durations import parse_duration
from dq_agent.errors import DqAgentError
from dq_agent.expressions import ExpressionError, parse

DEFAULT_STATE_URL = "sqlite:///.dq-agent/state.db"


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


def _timezone(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("timezone", f"expected a timezone name like UTC, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone", f"expected an IANA timezone like Europe/Berlin, got {value!r}"
        ) from None
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _base_url(value: Any) -> Any:
    if isinstance(value, str) and not _is_http_url(value):
        raise PydanticCustomError("url", f"expected an http(s)://host[:port] URL, got {value!r}")
    return value


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
        port = parts.port  # ValueError unless a number from 0 to 65535
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


# How a duration is written, for the JSON Schemas editors validate YAML with.
_DURATION_SCHEMA = {
    "type": "string",
    "pattern": r"^\s*(\d+(\.\d+)?\s*[wdhmsWDHMS]\s*)+$",
    "description": "a duration like 26h, 90m, 1d12h, 45s or 2w",
}
Duration = Annotated[timedelta, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
Timezone = Annotated[str, BeforeValidator(_timezone)]
People = Annotated[
    tuple[str, ...], BeforeValidator(_as_list, json_schema_input_type=str | list[str])
]
Identifier = Annotated[str, Field(min_length=1)]
# Where an HTTP API is served, e.g. https://sheets.googleapis.com or http://127.0.0.1:8080.
BaseUrl = Annotated[str, BeforeValidator(_base_url)]


# --- dq-agent.yml ---------------------------------------------------------------------------


class Defaults(Model):
    timezone: Timezone = "UTC"
    max_findings: int = Field(20, ge=0, le=10_000)


# Connector types whose values the agent may correct: operational systems through their APIs,
# SQL tables through a transaction and Iceberg tables through a branch, each verified before
# it is published.
CORRECTABLE_TYPES = ("salesforce", "gsheets", "sql", "iceberg")


class AllowRule(Model):
    """Fields a correction may write: nothing is writable unless a rule lists it."""

    connector: Identifier
    # The object (Salesforce), worksheet (Sheets) or table (SQL); omitted means any of the
    # connector's.
    object: str | None = None
    fields: list[Identifier] = Field(min_length=1)


class CorrectionLimits(Model):
    """Limits a suite may tighten (or, deliberately, relax) for itself."""

    enabled: bool | None = None
    # Blast radius: a run that would correct more than this in one suite writes nothing.
    max_per_run: int | None = Field(None, ge=0, le=10_000)
    # The largest change allowed, as a power of ten between old and new value.
    max_magnitude: int | None = Field(None, ge=1, le=9)


class CorrectionsSettings(Model):
    """Whether and what the agent may write back to sources."""

    enabled: bool = False
    allow: list[AllowRule] = Field(default_factory=list)
    max_per_run: int = Field(5, ge=0, le=10_000)
    max_magnitude: int = Field(3, ge=1, le=9)
    # A SQL table is corrected in a transaction (its branch): how long one of its writes may
    # wait for a row someone else holds, and one of its verifying checks may run, while the
    # rows it changed stay locked. PostgreSQL and MariaDB/MySQL honour both.
    lock_timeout: Duration = timedelta(seconds=5)
    statement_timeout: Duration = timedelta(minutes=2)


class SnapshotSettings(Model):
    """What runs keep of operational sources (worksheets) so an overwrite can be restored."""

    keep: int = Field(5, ge=0, le=1_000)
    # Larger sources are not snapshotted (the state store is not a backup system).
    max_rows: int = Field(10_000, ge=0, le=1_000_000)


class RetentionSettings(Model):
    """How much run history is kept: beyond a suite's newest ``full_runs`` runs, a run that
    passed is kept only if it is the newest of its day, or of its week once two weeks old
    (None: every run is kept); runs, their
    check results and metrics older than ``days`` are pruned (off by default),
    never what a baseline window still reaches, never a suite's latest run, and never the
    ledger, incidents or feedback."""

    # Enough for a monitor's chart of 60 buckets of an hourly check.
    full_runs: int | None = Field(60, ge=1, le=1_000_000)
    days: int | None = Field(None, ge=1, le=36_500)
    # Rows deleted per transaction: small batches never hold the store for long.
    batch: int = Field(1_000, ge=1, le=100_000)


def _cycles_or_duration(value: Any) -> int | timedelta:
    """``3 cycles`` (or ``3``): that many failing cycles in a row; else a duration (``15m``)."""
    if isinstance(value, int | timedelta):
        return value
    text = str(value).strip()
    count, _, unit = text.partition(" ")
    if count.isdigit() and unit.strip() in ("cycle", "cycles", ""):
        return int(count)
    return _duration(text)


CyclesOrDuration = Annotated[
    int | timedelta,
    BeforeValidator(_cycles_or_duration),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}],
            "description": "failing cycles in a row (3, '3 cycles') or for how long ('15m')",
        }
    ),
]


class SourceErrorSettings(Model):
    """When a source failing in a way that often passes on its own (a timeout, a 5xx, a
    connection refused) is told to its suite's people: once it has failed ``notify_after``
    cycles in a row (``3 cycles``) or for that long (``15m``). Until then it opens nothing and
    tells nobody. A failure that does not pass by itself (credentials, permissions, a missing
    table) is told at once."""

    notify_after: CyclesOrDuration = timedelta(minutes=15)

    @field_validator("notify_after")
    @classmethod
    def _positive(cls, value: int | timedelta) -> int | timedelta:
        if isinstance(value, int) and value < 1:
            raise PydanticCustomError("cycles", "expected at least 1 cycle")
        return value


class SlackSettings(Model):
    """The Slack app the agent posts as (a bot token) and takes button clicks from.

    Clicks come over HTTP (``mode: http``, verified with the signing secret) or over a
    WebSocket the agent opens itself (``mode: socket``, with the app-level token: no public
    URL). With a broker, the bot token is the broker's and the signing secret and app token
    the agent's: each process reads only its own (the loader requires what the reading
    process needs)."""

    token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    mode: Literal["http", "socket"] = "http"
    # The app-level token (xapp-…) that opens Socket Mode connections.
    app_token: SecretStr | None = None
    # Only to point at a loopback emulator; the real Web API otherwise.
    base_url: BaseUrl | None = None
    timeout: int = Field(30, ge=1, le=600)

    def bot_token(self) -> str:
        if self.token is None:  # the loader requires it wherever Slack is called directly
            raise DqAgentError("slack.token is not set: the broker posts for this agent")
        return self.token.get_secret_value()

    def verifying_secret(self) -> str:
        if self.signing_secret is None:  # the loader requires it of the agent
            raise DqAgentError("slack.signing_secret is not set")
        return self.signing_secret.get_secret_value()

    def connection_token(self) -> str:
        """The app-level token that opens Socket Mode connections."""
        if self.app_token is None:  # the loader requires it of the agent in socket mode
            raise DqAgentError("slack.app_token is not set (slack.mode: socket needs it)")
        return self.app_token.get_secret_value()


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock_time(value: Any) -> str:
    text = str(value)
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise PydanticCustomError("time", f"expected a time of day like 09:00, got {value!r}")
    if int(hours) > 24 or int(minutes) > 59 or (int(hours) == 24 and int(minutes) > 0):
        raise PydanticCustomError("time", f"expected a time of day like 09:00, got {value!r}")
    return f"{int(hours):02d}:{minutes}"


_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _days(value: Any) -> Any:
    if not isinstance(value, list | tuple):
        return value
    days, unknown = [], []
    for day in value:
        text = str(day).lower()
        if text in _DAYS or text in _DAY_NAMES:
            days.append(text[:3])
        else:
            unknown.append(str(day))
    if unknown:
        raise PydanticCustomError(
            "days", f"expected days among {', '.join(_DAYS)}, got {', '.join(unknown)}"
        )
    return tuple(days)


ClockTime = Annotated[str, BeforeValidator(_clock_time)]
Days = Annotated[tuple[str, ...], BeforeValidator(_days)]


class WorkingHours(Model):
    """When a person may be messaged, in their own timezone. Outside it, messages queue."""

    start: ClockTime = "09:00"
    end: ClockTime = "18:00"
    days: Days = ("mon", "tue", "wed", "thu", "fri")

    @model_validator(mode="after")
    def _ordered(self) -> WorkingHours:
        if self.start >= self.end:
            raise PydanticCustomError(
                "hours", f"expected start before end, got {self.start}-{self.end}"
            )
        return self


class Person(Model):
    """One person's overrides, keyed by e-mail under ``people:``."""

    timezone: Timezone | None = None
    working_hours: WorkingHours | None = None
    # One message a day listing their open incidents instead of one message per incident.
    digest: bool | None = None


class NudgeSettings(Model):
    """How often people are reminded, and when the next in the escalation chain is told."""

    every: Duration = timedelta(hours=4)
    # Unanswered nudges to one person before the next one in the chain is told.
    escalate_after: int = Field(2, ge=1, le=100)
    snooze: Duration = timedelta(hours=4)
    # When Slack does not say a person's timezone (and people: does not either).
    timezone: Timezone = "UTC"
    working_hours: WorkingHours = WorkingHours()
    digest: bool = False
    digest_at: ClockTime = "09:00"


class LlmBudget(Model):
    """Tokens (input and output together) the LLM may use."""

    tokens_per_incident: int = Field(20_000, ge=0)
    tokens_per_day: int = Field(500_000, ge=0)


class LlmSettings(Model):
    """The optional language model (Anthropic's Messages API) and what it may use."""

    provider: Literal["anthropic"] = "anthropic"
    model: Identifier
    api_key: SecretStr | None = None  # the agent's: a broker reading the settings has none
    base_url: BaseUrl | None = None  # a proxy, or the sandbox's emulator
    budget: LlmBudget = LlmBudget()
    # Columns whose values the model never sees (also anything that looks like a secret).
    redact_columns: list[Identifier] = []
    max_tokens: int = Field(1024, ge=1, le=64_000)
    # Model turns in one conversation before the agent stops it and keeps its own answer.
    max_turns: int = Field(6, ge=1, le=50)
    timeout: float = Field(60.0, gt=0, le=600)

    def key(self) -> str:
        if self.api_key is None:  # the loader requires it of the agent
            raise DqAgentError("llm.api_key is not set")
        return self.api_key.get_secret_value()


_TOKEN_HASH = re.compile(r"scrypt\$[0-9a-f]{32}\$[0-9a-f]{64}")


class UiUser(Model):
    """A person who may sign in to the dashboard with a token (only its hash is kept)."""

    token_hash: str

    @field_validator("token_hash")
    @classmethod
    def _hashed(cls, value: str) -> str:
        if not _TOKEN_HASH.fullmatch(value):
            raise PydanticCustomError(
                "token_hash",
                # Not "expected …": the loader would echo the value, maybe a real token.
                "not a token hash: use what `dq-agent hash-token` prints "
                "(scrypt$<salt>$<hash>), never the token itself",
            )
        return value


class UiSettings(Model):
    """Who may see the dashboard and act on it."""

    # Sign-in with a token, per e-mail address.
    users: dict[str, UiUser] = Field(default_factory=dict)
    # The header an authenticating reverse proxy sets to the user's e-mail (e.g.
    # X-Forwarded-Email). Off by default: only trust it behind such a proxy.
    trusted_header: str | None = Field(None, min_length=1)
    # Nothing can be changed from the dashboard (no buttons, every POST refused).
    read_only: bool = False
    # Signs session cookies and form tokens; without it, a random one per process (sessions
    # then end when the process restarts).
    session_secret: SecretStr | None = None
    session_ttl: Duration = timedelta(hours=12)

    @field_validator("users")
    @classmethod
    def _emails(cls, value: dict[str, UiUser]) -> dict[str, UiUser]:
        return {k.lower(): v for k, v in value.items()}


class DbtRebuild(Model):
    """How the dbt models built from a suite's table are rebuilt: a dbt Cloud job (its run
    builds ``--select <model>+`` of each, in place of the job's steps), or a local command
    (``--select <model>+ …`` appended, e.g. ``[dbt, build, --project-dir, ../analytics]``)."""

    dbt_cloud: DbtCloudRestart | None = None
    command: CommandRestart | None = None

    @model_validator(mode="after")
    def _one(self) -> DbtRebuild:
        if (self.dbt_cloud is None) == (self.command is None):
            raise PydanticCustomError("rebuild", "expected exactly one of dbt_cloud: or command:")
        return self


def _asset_template(value: Any) -> Any:
    text = str(value)
    try:
        text.format(schema="s", table="t")
    except (KeyError, IndexError, ValueError):
        raise PydanticCustomError(
            "asset", f"expected an asset name with {{schema}} and {{table}} only, got {text!r}"
        ) from None
    return text


class AssetLineage(Model):
    """The Airflow whose DAGs are scheduled on the tables' assets: a suite's asset is
    ``asset`` with its table's ``{schema}`` and ``{table}`` filled in (URI or name)."""

    connector: Identifier
    asset: Annotated[str, BeforeValidator(_asset_template)] = "{schema}.{table}"


class LineageSettings(Model):
    """Where ``restart: {auto: true}`` finds what to restart once a suite passes again."""

    # A dbt manifest.json (relative to the project; default: owners.dbt_manifest): the models
    # built from the suite's table.
    dbt_manifest: str | None = Field(None, min_length=1)
    dbt: DbtRebuild | None = None
    airflow: AssetLineage | None = None


class OwnersSettings(Model):
    """Where a suite without ``owner:`` finds its owner."""

    # A dbt manifest.json (relative to the project): the owner in the meta of the model whose
    # table the suite reads (meta.owner, or config.meta.owner; an e-mail or a list of them).
    dbt_manifest: str | None = Field(None, min_length=1)


class BrokerSettings(Model):
    """The credential broker the agent asks for every operation on a source, in place of
    holding the sources' credentials itself (see ``dq-agent broker``)."""

    # unix:/run/dq-agent/broker.sock, or https://broker.internal:8443
    url: str = Field(
        pattern=r"^(unix:/.+|https://[^/\s]+/?|http://(127\.0\.0\.1|localhost)(:\d+)?/?)$"
    )
    token: SecretStr
    # The certificate authority that signed the broker's TLS certificate (self-signed ones).
    ca_file: str | None = None
    # How long one operation (a suite's checks on a large table) may take.
    timeout: float = Field(600.0, gt=0, le=86_400)


class BrokerConfig(Model):
    """``dq-agent broker --config FILE``: where the broker serves and what it reads (paths
    relative to the file; the command's options win over it)."""

    project: str = "."
    home: str | None = None
    listen: str | None = None
    # Where it also serves the investigation tools over MCP (streamable HTTP, at /mcp).
    mcp_listen: str | None = None
    cert: str | None = None
    key: str | None = None


# What a job name pattern may name (``openlineage.job_name``).
JOB_NAME_FIELDS = ("suite", "connector", "project")


def _job_name(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        name = value.format(**{field: field for field in JOB_NAME_FIELDS})
    except (KeyError, IndexError, ValueError, AttributeError):
        fields = ", ".join(f"{{{f}}}" for f in JOB_NAME_FIELDS)
        raise PydanticCustomError(
            "job_name", f"expected a name with placeholders among {fields}, got {value!r}"
        ) from None
    if not name.strip():
        raise PydanticCustomError("job_name", "expected a non-empty job name")
    return value


class OpenLineageSettings(Model):
    """Each suite run sent as OpenLineage run events (START, then COMPLETE or FAIL) with its
    checks as the input dataset's data-quality facets. Where the events go is OpenLineage's own
    configuration (``OPENLINEAGE_URL``, ``OPENLINEAGE_CONFIG``, ``openlineage.yml``), or
    ``transport`` here, which wins over it."""

    enabled: bool = True
    # The jobs' namespace, and each suite's job name: {suite}, {connector}, {project} (the
    # project folder's name) are replaced.
    namespace: Identifier = "dq-agent"
    job_name: Annotated[str, BeforeValidator(_job_name)] = "{suite}"
    # An OpenLineage transport, as under transport: in openlineage.yml (type: http, url, auth…).
    transport: dict[str, Any] | None = None

    def job(self, suite: str, connector: str, project: str) -> str:
        """The job name of ``suite``'s runs."""
        return self.job_name.format(suite=suite, connector=connector, project=project)


class Settings(Model):
    """Global settings from ``dq-agent.yml``."""

    state_url: str = DEFAULT_STATE_URL
    defaults: Defaults = Defaults()
    corrections: CorrectionsSettings = CorrectionsSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    retention: RetentionSettings = RetentionSettings()
    source_errors: SourceErrorSettings = SourceErrorSettings()
    slack: SlackSettings | None = None
    llm: LlmSettings | None = None
    nudges: NudgeSettings = NudgeSettings()
    people: dict[str, Person] = Field(default_factory=dict)
    ui: UiSettings = UiSettings()
    owners: OwnersSettings = OwnersSettings()
    lineage: LineageSettings = Field(default_factory=lambda: LineageSettings())
    # Set, the connectors' credentials stay with the broker: the agent never resolves them.
    broker: BrokerSettings | None = None
    # Set, each suite run is sent to OpenLineage (see OpenLineageSettings).
    openlineage: OpenLineageSettings | None = None

    @field_validator("people")
    @classmethod
    def _emails(cls, value: dict[str, Person]) -> dict[str, Person]:
        # Looked up case-insensitively, as e-mail addresses are.
        return {k.lower(): v for k, v in value.items()}


# --- connectors/*.yml -----------------------------------------------------------------------


class SqlConnector(Model):
    """Any database SQLAlchemy can reach (``sqlite:///…`` is the embedded default)."""

    type: Literal["sql"]
    url: Identifier
    schema_: str | None = Field(None, alias="schema")
    connect_args: dict[str, Any] = {}
    # Seconds to wait for a connection before the source counts as unreachable.
    connect_timeout: int = Field(10, ge=1, le=600)


class IcebergConnector(Model):
    """An Apache Iceberg catalog, as pyiceberg's ``load_catalog(name, **catalog)`` takes it.

    ``catalog`` holds the catalog's properties (``type``, ``uri``, ``warehouse``, credentials
    as ``${ENV}`` references...): a SQL catalog on SQLite or PostgreSQL, REST, Glue, Hive.
    """

    type: Literal["iceberg"]
    name: Identifier = "default"
    catalog: dict[str, str] = Field(min_length=1)


def _spark_setting(value: Any) -> Any:
    # YAML reads `spark.sql.shuffle.partitions: 8` as a number and `true` as a bool: Spark
    # takes every setting as text (booleans in lower case).
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, int | float) else value


SparkSetting = Annotated[str, BeforeValidator(_spark_setting)]


class SparkConnector(Model):
    """A Spark cluster the checks are pushed down to as Spark SQL: ``master`` for a session in
    this process (``local[4]``, ``yarn``, ``spark://host:7077``), or ``remote`` for a Spark
    Connect server (``sc://host:15002``). ``conf`` holds Spark settings for the session.
    """

    type: Literal["spark"]
    master: str | None = None
    remote: str | None = None
    conf: dict[str, SparkSetting] = {}

    @model_validator(mode="after")
    def _master_or_remote(self) -> SparkConnector:
        if (self.master is None) == (self.remote is None):
            raise PydanticCustomError("spark", "expected exactly one of master: or remote:")
        return self


class SalesforceConnector(Model):
    """A Salesforce org through its REST API (simple-salesforce).

    Authenticate with ``session_id`` + ``instance_url``, or ``username`` + ``password`` +
    ``security_token`` (``domain: test`` for sandboxes). ``instance_url`` may be an
    ``http://127.0.0.1:PORT`` loopback emulator.
    """

    type: Literal["salesforce"]
    instance_url: str | None = None
    session_id: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    domain: str = "login"
    api_version: str = Field("59.0", pattern=r"^\d+\.\d$")
    # Seconds before a request counts as timed out (a transient fault, retried).
    timeout: float = Field(30.0, gt=0, le=600)
    # Reads of more records than this use a Bulk API 2.0 query job instead of REST pages
    # (2,000 records a call): far fewer calls against the org's daily API limit.
    bulk_threshold: int = Field(10_000, ge=0)
    # The share of the org's daily API requests (``Sforce-Limit-Info``) past which a run stops
    # reading and writing, leaving the rest for the org's own integrations.
    max_api_share: float = Field(0.5, gt=0, le=1)

    @model_validator(mode="after")
    def _credentials(self) -> SalesforceConnector:
        by_session = self.session_id is not None and self.instance_url is not None
        by_password = self.username is not None and self.password is not None
        if not (by_session or by_password):
            raise PydanticCustomError(
                "credentials",
                "expected session_id with instance_url, or username with password "
                "(and security_token)",
            )
        return self


class GSheetsConnector(Model):
    """Google Sheets through the Sheets v4 API (gspread).

    Authenticate with a service-account key file; ``base_url`` points at a loopback emulator
    instead (which needs no credentials).
    """

    type: Literal["gsheets"]
    service_account_file: str | None = None
    base_url: BaseUrl | None = None
    timeout: float = Field(30.0, gt=0, le=600)

    @field_validator("service_account_file")
    @classmethod
    def _a_path(cls, value: str | None) -> str | None:
        if value is not None and ("\n" in value or value.lstrip().startswith("{")):
            raise PydanticCustomError(
                "path",
                # Not "expected …": the loader would echo the value, the key itself.
                "this is the content of a service account key, not a path: "
                "give the path of the key file (JSON)",
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> GSheetsConnector:
        if (self.service_account_file is None) == (self.base_url is None):
            raise PydanticCustomError(
                "credentials", "expected exactly one of service_account_file: or base_url:"
            )
        return self


class AirflowConnector(Model):
    """An Airflow 3 API server (REST API v2) that runs the pipelines to restart.

    Authenticate with a ``token`` (sent as a bearer token), or ``username`` + ``password``:
    exchanged for a token at ``POST /auth/token`` (``auth: token``, the default; Airflow's
    simple auth manager and most others), or sent as HTTP basic auth on every request
    (``auth: basic``; the FAB auth manager's basic-auth backend).
    """

    type: Literal["airflow"]
    base_url: BaseUrl  # e.g. https://airflow.acme.com (the API is under /api/v2)
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    auth: Literal["token", "basic"] = "token"
    timeout: float = Field(30.0, gt=0, le=600)

    @model_validator(mode="after")
    def _credentials(self) -> AirflowConnector:
        by_token = self.token is not None
        by_login = self.username is not None and self.password is not None
        if by_token == by_login or (not by_login and (self.username or self.password)):
            raise PydanticCustomError(
                "credentials", "expected exactly one of token:, or username: with password:"
            )
        if self.auth == "basic" and not by_login:
            raise PydanticCustomError("credentials", "auth: basic needs username: and password:")
        return self


class DbtCloudConnector(Model):
    """A dbt Cloud account whose jobs can be run (Administrative API v2)."""

    type: Literal["dbt_cloud"]
    base_url: BaseUrl = "https://cloud.getdbt.com"
    account_id: int = Field(ge=1)
    token: SecretStr
    timeout: float = Field(30.0, gt=0, le=600)


class WebhookConnector(Model):
    """An HTTP endpoint that restarts a pipeline when POSTed to.

    With a ``secret``, the request is signed: ``X-Dq-Agent-Timestamp: <unix seconds>`` and
    ``X-Dq-Agent-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>." + the body>``.
    """

    type: Literal["webhook"]
    url: BaseUrl
    secret: SecretStr | None = None
    headers: dict[str, str] = {}
    timeout: float = Field(30.0, gt=0, le=600)


class PrefectConnector(Model):
    """A Prefect server, or a Prefect Cloud workspace, whose deployments can be run (REST API).

    ``api_url`` is where the API is served: ``http://prefect.acme.internal:4200/api``, or
    ``https://api.prefect.cloud/api/accounts/<account id>/workspaces/<workspace id>`` with an
    ``api_key`` for Prefect Cloud.
    """

    type: Literal["prefect"]
    api_url: BaseUrl
    api_key: SecretStr | None = None
    timeout: float = Field(30.0, gt=0, le=600)


class DagsterConnector(Model):
    """A Dagster webserver, or a Dagster+ deployment, whose jobs can be launched (GraphQL API).

    ``url`` is where the UI is served (the API is ``<url>/graphql``): ``http://dagster:3000``,
    or ``https://acme.dagster.cloud/prod`` with a ``token`` for Dagster+ (sent as the
    ``Dagster-Cloud-Api-Token`` header).
    """

    type: Literal["dagster"]
    url: BaseUrl
    token: SecretStr | None = None
    timeout: float = Field(30.0, gt=0, le=600)


Connector = (
    SqlConnector
    | IcebergConnector
    | SparkConnector
    | SalesforceConnector
    | GSheetsConnector
    | AirflowConnector
    | DbtCloudConnector
    | WebhookConnector
    | PrefectConnector
    | DagsterConnector
)
CONNECTOR_TYPES: dict[str, type[Model]] = {
    "sql": SqlConnector,
    "iceberg": IcebergConnector,
    "spark": SparkConnector,
    "salesforce": SalesforceConnector,
    "gsheets": GSheetsConnector,
    "airflow": AirflowConnector,
    "dbt_cloud": DbtCloudConnector,
    "webhook": WebhookConnector,
    "prefect": PrefectConnector,
    "dagster": DagsterConnector,
}


# --- sources (the `source:` block of a suite) -----------------------------------------------


class SqlSourceSpec(Model):
    """A table (optionally schema-qualified) or a read-only query on a ``sql`` connector."""

    connector: Identifier
    table: str | None = None
    query: str | None = None
    schema_: str | None = Field(None, alias="schema")

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> SqlSourceSpec:
        if (self.table is None) == (self.query is None):
            raise PydanticCustomError("table_or_query", "expected exactly one of table: or query:")
        if self.query is not None and self.schema_ is not None:
            raise PydanticCustomError("schema_with_query", "schema: applies to table: only")
        return self


class IcebergSourceSpec(Model):
    """An Iceberg table (``namespace.name``): its ``fields`` (default all) and the ``key``
    columns a record is known by (default the table's identifier fields)."""

    connector: Identifier
    table: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")]
    fields: list[Identifier] | None = None
    key: list[Identifier] | None = None


class SparkSourceSpec(Model):
    """A table (``name``, ``db.name`` or ``catalog.db.name``) or a query, in Spark SQL, on a
    ``spark`` connector."""

    connector: Identifier
    table: (
        Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,2}$")]
        | None
    ) = None
    query: str | None = None

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> SparkSourceSpec:
        if (self.table is None) == (self.query is None):
            raise PydanticCustomError("table_or_query", "expected exactly one of table: or query:")
        return self


class SalesforceSourceSpec(Model):
    """An object's records: ``object``, the ``fields`` to read, an optional SOQL ``where``."""

    connector: Identifier
    object: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
    fields: list[Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.]*$")]] = Field(min_length=1)
    where: str | None = None


class GSheetsSourceSpec(Model):
    """One worksheet; its header row names the columns."""

    connector: Identifier
    # The spreadsheet's key, or its URL (https://docs.google.com/spreadsheets/d/KEY/...).
    spreadsheet: Identifier
    worksheet: Identifier


SOURCE_SPECS: dict[str, type[Model]] = {
    "sql": SqlSourceSpec,
    "iceberg": IcebergSourceSpec,
    "spark": SparkSourceSpec,
    "salesforce": SalesforceSourceSpec,
    "gsheets": GSheetsSourceSpec,
}
SourceSpec = (
    SqlSourceSpec | IcebergSourceSpec | SparkSourceSpec | SalesforceSourceSpec | GSheetsSourceSpec
)


# --- restarts (the `restart:` list of a suite) ----------------------------------------------


class AirflowRestart(Model):
    """Trigger a new run of a DAG, or clear the failed task instances of its latest run."""

    connector: Identifier
    dag_id: Identifier
    mode: Literal["trigger", "clear"] = "trigger"
    conf: dict[str, Any] = {}
    # clear: only these tasks (default: every failed one of the latest run)
    task_ids: list[Identifier] = []


class AirflowAssetRestart(Model):
    """Tell Airflow an asset is updated, so that every DAG scheduled on it runs."""

    connector: Identifier
    asset: Identifier  # the asset's URI or name, matched exactly (URI first)


class DbtCloudRestart(Model):
    """Run a dbt Cloud job (only ``dbt build --select`` of ``select`` when given)."""

    connector: Identifier
    job_id: int = Field(ge=1)
    cause: str = "dq-agent: the source data is right again"
    # dbt selectors (stg_orders+) the run builds in place of the job's own steps.
    select: list[str] = []


class WebhookRestart(Model):
    """POST a JSON body to a webhook connector."""

    connector: Identifier
    body: dict[str, Any] = {}


_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


class PrefectRestart(Model):
    """Run a Prefect deployment, named ``flow-name/deployment-name`` or by its id."""

    connector: Identifier
    deployment: str
    parameters: dict[str, Any] = {}

    @field_validator("deployment")
    @classmethod
    def _flow_and_deployment(cls, value: str) -> str:
        flow, slash, name = value.partition("/")
        named = bool(slash and flow.strip() and name.strip() and "/" not in name)
        if not named and not _UUID.match(value):
            raise PydanticCustomError(
                "deployment",
                f"expected flow-name/deployment-name or a deployment id, got {value!r}",
            )
        return value


class DagsterRestart(Model):
    """Launch a run of a Dagster job, with its run config.

    The job's ``repository_location`` and ``repository`` are looked up when not given (both
    or neither; a job defined with ``Definitions`` is in the repository ``__repository__``).
    """

    connector: Identifier
    job: Identifier
    repository_location: Identifier | None = None
    repository: Identifier | None = None
    run_config: dict[str, Any] = {}

    @model_validator(mode="after")
    def _both_or_neither(self) -> DagsterRestart:
        if (self.repository_location is None) != (self.repository is None):
            raise PydanticCustomError(
                "repository", "expected both repository_location: and repository:, or neither"
            )
        return self


class CommandRestart(Model):
    """Run a local command (no shell): argv, a time limit, a working directory."""

    run: list[Identifier] = Field(min_length=1)
    timeout: Duration = timedelta(minutes=10)
    cwd: str | None = None
    env: dict[str, str] = {}


RESTART_TYPES: dict[str, type[Model]] = {
    "airflow": AirflowRestart,
    "airflow_asset": AirflowAssetRestart,
    "dbt_cloud": DbtCloudRestart,
    "webhook": WebhookRestart,
    "prefect": PrefectRestart,
    "dagster": DagsterRestart,
    "command": CommandRestart,
}
# Which connector type each restart target needs (``command`` needs none).
RESTART_CONNECTORS = {
    "airflow": "airflow",
    "airflow_asset": "airflow",
    "dbt_cloud": "dbt_cloud",
    "webhook": "webhook",
    "prefect": "prefect",
    "dagster": "dagster",
}
RestartArgs = (
    AirflowRestart
    | AirflowAssetRestart
    | DbtCloudRestart
    | WebhookRestart
    | PrefectRestart
    | DagsterRestart
    | CommandRestart
)
# The lineage settings name restart targets, defined just above.
LineageSettings.model_rebuild()
Settings.model_rebuild()


class RestartSpec(Model):
    """One entry of a suite's ``restart:`` list, after validation."""

    type: str
    args: RestartArgs
    line: int = 0
    # How a target derived from lineage (``restart: {auto: true}``) was found.
    why: str = ""

    @property
    def label(self) -> str:
        """How people name it: ``airflow forecasts_agg``, ``command make agg``."""
        args = self.args
        if isinstance(args, AirflowRestart):
            return f"airflow DAG {args.dag_id}"
        if isinstance(args, AirflowAssetRestart):
            return f"airflow asset {args.asset}"
        if isinstance(args, DbtCloudRestart) and args.select:
            return f"dbt Cloud job {args.job_id} (dbt build --select {' '.join(args.select)})"
        if isinstance(args, DbtCloudRestart):
            return f"dbt Cloud job {args.job_id}"
        if isinstance(args, WebhookRestart):
            return f"webhook {args.connector}"
        if isinstance(args, PrefectRestart):
            return f"prefect deployment {args.deployment}"
        if isinstance(args, DagsterRestart):
            return f"dagster job {args.job}"
        return "command " + " ".join(args.run)


# --- checks ---------------------------------------------------------------------------------


class CheckArgs(Model):
    """Arguments every check accepts."""

    name: str | None = None
    severity: Literal["warn", "fail"] = "fail"
    owner: People | None = None


class RowCountArgs(CheckArgs):
    min: int | None = Field(1, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountArgs:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise PydanticCustomError("bounds", f"min ({self.min}) is above max ({self.max})")
        return self


class FreshnessArgs(CheckArgs):
    column: Identifier
    max_age: Duration
    # How to read timestamps stored without a timezone; defaults to the suite's timezone.
    timezone: Timezone | None = None


COLUMN_TYPES = ("integer", "number", "string", "boolean", "date", "timestamp", "any")
ColumnType = Literal["integer", "number", "string", "boolean", "date", "timestamp", "any"]


def _columns_mapping(value: Any) -> Any:
    if isinstance(value, list):
        return {name: "any" for name in value} if all(isinstance(v, str) for v in value) else value
    if isinstance(value, dict):
        return {k: "any" if v is None else v for k, v in value.items()}
    return value


class SchemaArgs(CheckArgs):
    # Required columns: a list of names, or a mapping of name → type family.
    columns: Annotated[
        dict[str, ColumnType],
        BeforeValidator(
            _columns_mapping, json_schema_input_type=dict[str, ColumnType | None] | list[str]
        ),
    ] = {}
    # Compare against the schema seen on the previous run: added/removed/retyped columns.
    drift: bool = True


class WindowedArgs(CheckArgs):
    """A check that judges the last complete time bucket against the buckets before it."""

    timestamp_column: Identifier
    bucket: Literal["hour", "day", "week"] = "day"
    training_days: int = Field(28, ge=1, le=3660)
    # How to read timestamps stored without a timezone; defaults to the suite's timezone.
    timezone: Timezone | None = None
    # How long after a bucket ends its rows may still be landing (late loads): the bucket
    # judged is the last one that ended at least this long ago.
    settle: Duration = timedelta(0)


class BaselineArgs(WindowedArgs):
    """A metric per bucket against its robust, seasonality-aware baseline."""

    # How many robust standard deviations (1.4826 × MAD) from the baseline median alert.
    sensitivity: float = Field(3.0, gt=0, le=50)
    # Fewer baseline buckets than this: the check warns that it cannot judge yet.
    min_history: int = Field(7, ge=2, le=10_000)


class SeasonalArgs(BaselineArgs):
    """A baseline that may follow a weekly (daily buckets) or daily (hourly) rhythm."""

    seasonality: Literal["auto", "none", "weekday"] = "auto"


class VolumeAnomalyArgs(SeasonalArgs):
    """Rows per time bucket compared with a robust, seasonality-aware baseline."""

    direction: Literal["both", "drop", "spike"] = "both"
    # Changes smaller than this share of the baseline are never anomalies (the noise floor).
    min_change_pct: float = Field(20.0, ge=0, le=1000)
    # An empty bucket after non-empty ones always alerts (a table that must never be empty);
    # by default it is judged against the usual band like any other count.
    empty_is_anomaly: bool = False


class DistributionShiftArgs(BaselineArgs):
    """A numeric column's distribution in the last bucket against the buckets before it: a
    share of rows whose order of magnitude moved (a currency or unit mixed in)."""

    column: Identifier
    # A categorical column that may explain a shift (e.g. currency): named in the message.
    group_by: Identifier | None = None
    # Never alert when less than this share of the bucket's rows moved.
    min_share: float = Field(0.03, gt=0, le=1)


COLUMN_METRICS = (
    "null_rate",
    "distinct_count",
    "zero_rate",
    "negative_rate",
    "min",
    "max",
    "mean",
    "length",
)
ColumnMetric = Literal[
    "null_rate", "distinct_count", "zero_rate", "negative_rate", "min", "max", "mean", "length"
]


class ColumnAnomalyArgs(SeasonalArgs):
    """Metrics of one column per bucket, each against its own history."""

    column: Identifier
    # Default: every metric that applies to the column's type.
    metrics: list[ColumnMetric] | None = Field(None, min_length=1)
    # Changes smaller than this share of the baseline (or, for rates, 2 points) never alert.
    min_change_pct: float = Field(20.0, ge=0, le=1000)


class NewValuesArgs(WindowedArgs):
    """A value of a categorical column in the last bucket that the buckets before it never had."""

    column: Identifier
    # Values never reported (e.g. a known rare one).
    ignore: list[str | int | float | bool] = Field(default_factory=list)


class AcceptedValuesArgs(CheckArgs):
    """Every non-null value of a column is one of ``values``."""

    column: Identifier
    values: list[str | int | float | bool] = Field(min_length=1)


class ReferenceTarget(Model):
    # Another SQL connector; default: the suite's own source's database.
    connector: str | None = None
    table: Identifier
    column: Identifier
    schema_name: Identifier | None = Field(None, alias="schema")


class ReferenceArgs(CheckArgs):
    """Every non-null value of ``column`` exists in another table's column."""

    column: Identifier
    to: ReferenceTarget


def _witness(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError(
            "witness", f"expected an expression like 'Seats * Price', got {value!r}"
        )
    try:
        parse(value)
    except ExpressionError as exc:
        raise PydanticCustomError("witness", f"invalid witness {value!r}: {exc.message}") from None
    return value


class PeersArgs(Model):
    group_by: list[Identifier] = Field(default_factory=list)


class FatFingerArgs(CheckArgs):
    """Values a typing slip away from what the record should hold."""

    column: Identifier
    # Arithmetic over the record's other columns giving the exact expected value.
    witness: Annotated[str, BeforeValidator(_witness)] | None = None
    # Use the record's own previous values as evidence, where the source keeps them.
    history: bool = True
    peers: PeersArgs | None = None
    auto_correct: bool = False
    # The largest power of ten a slip may be off by (×/÷ 10^k, k ≤ max_magnitude).
    max_magnitude: int = Field(3, ge=1, le=9)


BUILTIN_CHECKS: dict[str, type[CheckArgs]] = {
    "row_count": RowCountArgs,
    "freshness": FreshnessArgs,
    "schema": SchemaArgs,
    "volume_anomaly": VolumeAnomalyArgs,
    "fat_finger": FatFingerArgs,
    "distribution_shift": DistributionShiftArgs,
    "column_anomaly": ColumnAnomalyArgs,
    "new_values": NewValuesArgs,
    "accepted_values": AcceptedValuesArgs,
    "reference": ReferenceArgs,
}


class CheckSpec(Model):
    """One entry of a suite's ``checks:`` list, after validation."""

    type: str
    name: str
    severity: Literal["warn", "fail"]
    owner: tuple[str, ...] | None
    # A built-in check's typed arguments, or a GX expectation's keyword arguments.
    args: CheckArgs | None
    expectation_kwargs: dict[str, Any] = {}
    line: int = 0

    @property
    def is_expectation(self) -> bool:
        return self.type.startswith("expect_")


class FixWhen(Model):
    """When a runbook fix applies: a check of the suite failed, for these groups."""

    check: str = Field(min_length=1)
    # The values the failing check names as explaining it (``group_by`` of a
    # distribution_shift), each bound as a parameter of the fix under its column's name.
    group: dict[Identifier, str | int | float | bool] = {}


class RunbookFix(Model):
    """A named change the runbook knows for a known failure, as one SQL statement on the
    suite's own table, run on a branch with parameters bound from the failing check."""

    name: Identifier
    when: FixWhen
    sql: str = Field(min_length=1)
    # More rows than this and the fix is refused before it runs.
    max_rows: int = Field(1000, ge=1, le=1_000_000)
    # owner: the owner sees the branch's report and presses Apply fix; auto: published
    # without asking when the guardrails allow.
    approve: Literal["owner", "auto"] = "owner"


# Parameters every fix triggered by a time-bucketed check can bind: the failing bucket's
# bounds, as wall-clock times in the check's timezone.
BUCKET_PARAMS = ("bucket_start", "bucket_end")


# --- checks/*.yml ---------------------------------------------------------------------------


def _cron(value: Any) -> str:
    from dq_agent.config.schedule import cron_trigger

    if not isinstance(value, str):
        raise PydanticCustomError("cron", f"expected a cron expression, got {value!r}")
    try:
        cron_trigger(value, "UTC")
    except ValueError as exc:
        raise PydanticCustomError(
            "cron", f"expected a 5-field cron expression like '*/30 * * * *', got {value!r} ({exc})"
        ) from None
    return value


def _country(value: Any) -> Any:
    import holidays

    if isinstance(value, str) and value.upper() not in holidays.list_supported_countries():
        raise PydanticCustomError(
            "country",
            f"expected a country code the holidays package knows (US, DE…), got {value!r}",
        )
    return value.upper() if isinstance(value, str) else value


class CalendarSpec(Model):
    """Days a suite's data is known to be unusual: a country's public holidays (``subdiv``: a
    state or region) and the suite's own closures. The time-bucketed checks judge those days
    as expected and leave them out of every baseline."""

    country: Annotated[str, BeforeValidator(_country)] | None = None
    subdiv: str | None = None
    closed: list[date] = []

    @model_validator(mode="before")
    @classmethod
    def _known_subdivision(cls, data: Any) -> Any:
        """``subdiv`` as the holidays package spells it (``vic`` is ``VIC``)."""
        import holidays

        if not isinstance(data, dict) or data.get("subdiv") is None:
            return data
        country, subdiv = data.get("country"), str(data["subdiv"])
        if country is None:
            raise PydanticCustomError("calendar", "subdiv needs a country")
        known = holidays.list_supported_countries().get(str(country).upper())
        if known is None:
            return data  # the country's own error says why
        spelt = next((code for code in known if code.upper() == subdiv.upper()), None)
        if spelt is None:
            raise PydanticCustomError(
                "calendar",
                f"{str(country).upper()} has no subdivision {subdiv!r}; "
                f"expected one of: {', '.join(known)}",
            )
        return {**data, "subdiv": spelt}


class SuiteHeader(Model):
    """The parts of a suite validated without knowing its connector or checks."""

    suite: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
    description: str = ""
    schedule: Annotated[str, BeforeValidator(_cron)] | None = None
    timezone: Timezone | None = None
    owner: People = ()
    escalation: People = ()
    key: People = ()
    runbook: str = ""
    max_findings: int | None = Field(None, ge=0, le=10_000)
    corrections: CorrectionLimits = CorrectionLimits()
    source: dict[str, Any]
    checks: list[Any] = Field(min_length=1)
    # A list of targets, or {auto: true} (what the table's lineage gives) on its own.
    restart: list[Any] | dict[str, Any] = []
    # Suites that must pass after the restarted pipelines finish, before the incident closes.
    verify: People = ()
    fixes: list[RunbookFix] = []
    calendar: CalendarSpec | None = None
    # compiled: common expectations answered from dq-agent's own scan; gx: every expectation
    # through Great Expectations (for debugging a difference).
    engine: Literal["compiled", "gx"] = "compiled"

    @field_validator("source", mode="before")
    @classmethod
    def _source_mapping(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            raise PydanticCustomError("source", "expected a mapping with connector: and table:")
        return value


class Suite(Model):
    """A validated suite: what to read, how to identify records, what to check."""

    suite: str
    description: str
    schedule: str | None
    timezone: str
    owner: tuple[str, ...]
    escalation: tuple[str, ...]
    key: tuple[str, ...]
    runbook: str
    max_findings: int
    corrections: CorrectionLimits
    source: SourceSpec
    checks: tuple[CheckSpec, ...]
    file: str
    restart: tuple[RestartSpec, ...] = ()
    verify: tuple[str, ...] = ()
    engine: Literal["compiled", "gx"] = "compiled"
    fixes: tuple[RunbookFix, ...] = ()
    calendar: CalendarSpec | None = None
