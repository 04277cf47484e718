"""Load a project directory into validated models, collecting every error in one pass."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from dq_agent.config import expectations
from dq_agent.config.dbt import LineageRestarts, manifest_owners, read_manifest
from dq_agent.config.models import (
    BUCKET_PARAMS,
    BUILTIN_CHECKS,
    CONNECTOR_TYPES,
    CORRECTABLE_TYPES,
    RESTART_CONNECTORS,
    RESTART_TYPES,
    SOURCE_SPECS,
    CheckArgs,
    CheckSpec,
    Connector,
    ReferenceArgs,
    RestartSpec,
    Settings,
    SqlConnector,
    SqlSourceSpec,
    Suite,
    SuiteHeader,
    WindowedArgs,
)
from dq_agent.config.secrets import resolve_references
from dq_agent.config.statements import StatementError, read_fix
from dq_agent.config.yamlfile import (
    MAX_BYTES,
    NodePath,
    YamlDocument,
    YamlSyntaxError,
    load_yaml,
)
from dq_agent.errors import ConfigIssue

M = TypeVar("M", bound=BaseModel)

SETTINGS_FILE = "dq-agent.yml"
# The secrets in settings the agent and a broker share, and whose each is when there is a
# broker (without one, the agent's are all of them): each process reads its own, needs them,
# and never looks at the other's.
SECRETS = {
    ("slack", "token"): "broker",  # the broker posts to Slack for the agent
    ("slack", "signing_secret"): "agent",  # what Slack sends the agent is verified with it
    ("slack", "app_token"): "agent",  # the agent opens its own Socket Mode connection
    ("llm", "api_key"): "agent",  # the agent asks the model
}
# Secrets needed in one mode of their section only: the setting, the value that needs the
# secret, and the setting's default.
SECRET_WHEN = {
    ("slack", "signing_secret"): ("mode", "http", "http"),  # clicks come as signed requests
    ("slack", "app_token"): ("mode", "socket", "http"),  # clicks come over its own connection
}
CONNECTORS_DIR = "connectors"
SUITES_DIR = "checks"


@dataclass(frozen=True)
class Project:
    """A loaded project: what is valid, and every issue with what is not."""

    root: Path
    settings: Settings
    connectors: Mapping[str, Connector]
    suites: Mapping[str, Suite]
    issues: tuple[ConfigIssue, ...]
    # Suites (by id, or file stem when the id is unreadable) that cannot run, with why.
    broken_suites: Mapping[str, tuple[ConfigIssue, ...]] = field(default_factory=dict)

    @property
    def sealed(self) -> bool:
        """Whether the connectors' secrets are a broker's (``broker:`` in the settings): their
        ``${…}`` references are unresolved, and sources are reached through the broker."""
        return self.settings.broker is not None

    @property
    def settings_issues(self) -> tuple[ConfigIssue, ...]:
        """The issues of ``dq-agent.yml``: with any, its settings are the defaults, no stand-in
        for the project's own (its store, guardrails, people)."""
        return tuple(i for i in self.issues if i.file.name == SETTINGS_FILE)

    @property
    def state_url(self) -> str:
        """The state store URL, a relative SQLite path taken from the project directory."""
        return resolve_sqlite_path(self.settings.state_url, self.root)


def resolve_sqlite_path(url: str, root: Path) -> str:
    """Make ``sqlite:///relative.db`` (or ``duckdb:///relative.duckdb``) relative to the
    project rather than the working dir."""
    for prefix in ("sqlite:///", "duckdb:///"):
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            rest = url[len(prefix) :]
            if rest and not rest.startswith(":memory:"):
                return prefix + str((root / rest).resolve())
    return url


# What a user who is not in a project folder can do.
_WHERE_PROJECTS_ARE = (
    "run dq-agent in a project folder (dq-agent.yml, connectors/, checks/), or give "
    "--project DIR or DQ_AGENT_PROJECT=DIR; `dq-agent demo --dir DIR` writes the worked "
    "example to DIR to start from"
)


def load_project(
    root: Path | str, env: Mapping[str, str] | None = None, *, as_broker: bool = False
) -> Project:
    """Parse ``dq-agent.yml``, ``connectors/*.yml`` and ``checks/*.yml`` under ``root``.

    With a ``broker:`` in the settings, the connectors' ``${…}`` references stay unresolved:
    their secrets are the broker's, and the agent never reads them. ``as_broker``: the broker
    loads the project, resolving them from its own ``env`` and leaving out the secrets of the
    settings that are the agent's (``SECRETS``).
    """
    root = Path(root)
    env = os.environ if env is None else env
    issues: list[ConfigIssue] = []

    settings = _load_settings(root, env, issues, as_broker)
    sealed = settings.broker is not None
    connectors, broken_connectors, connector_types = _load_connectors(root, env, issues, sealed)

    suites: dict[str, Suite] = {}
    broken: dict[str, tuple[ConfigIssue, ...]] = {}
    suite_files = _yaml_files(root / SUITES_DIR)
    if not root.is_dir():
        issues.append(ConfigIssue(root, 0, 0, "", f"no such project folder; {_WHERE_PROJECTS_ARE}"))
    elif not any((root / part).exists() for part in (SETTINGS_FILE, SUITES_DIR, CONNECTORS_DIR)):
        message = f"no {SETTINGS_FILE}, {SUITES_DIR}/ or {CONNECTORS_DIR}/: not a dq-agent project"
        issues.append(ConfigIssue(root, 0, 0, "", f"{message}; {_WHERE_PROJECTS_ARE}"))
    elif not suite_files:
        issues.append(
            ConfigIssue(root / SUITES_DIR, 0, 0, "", "no suite files (*.yml) found in this folder")
        )
    seen: dict[str, Path] = {}
    # Each dbt manifest is parsed once, though both owners: and lineage: may name it.
    manifest = functools.cache(read_manifest)
    lineage = _lineage(root, settings, connectors, connector_types, issues, manifest)
    for file in suite_files:
        suite_issues: list[ConfigIssue] = []
        suite, suite_id = _load_suite(
            file, settings, connector_types, broken_connectors, suite_issues, lineage
        )
        if suite_id in seen:
            suite_issues.append(
                ConfigIssue(
                    file,
                    1,
                    1,
                    "suite",
                    f"duplicate suite id {suite_id!r}: also in {seen[suite_id]}",
                )
            )
        seen.setdefault(suite_id, file)
        issues.extend(suite_issues)
        if suite_issues or suite is None:
            broken[suite_id] = tuple(suite_issues)
        else:
            suites[suite_id] = suite
    for suite_id, suite in list(suites.items()):
        if suite.fixes:
            doc = _read(Path(suite.file), [])
            fix_issues = _fix_issues(doc, suite, connectors) if doc is not None else []
            if fix_issues:
                issues.extend(fix_issues)
                broken[suite_id] = tuple(fix_issues)
                del suites[suite_id]
                continue
        unknown = [v for v in suite.verify if v not in seen]
        if unknown:
            doc = _read(Path(suite.file), [])
            line, col = doc.position(("verify",)) if doc is not None else (1, 1)
            known = ", ".join(sorted(seen))
            issue = ConfigIssue(
                Path(suite.file),
                line,
                col,
                "verify",
                f"unknown suite(s) {', '.join(unknown)}; expected suite ids among: {known}",
            )
            issues.append(issue)
            broken[suite_id] = (issue,)
            del suites[suite_id]
    issues += _allow_list_issues(root, settings, connector_types)
    if settings.owners.dbt_manifest is not None:
        suites = _owners_from_dbt(root, settings, connectors, suites, issues, manifest)
    # Report each file's issues top to bottom, files in the order they were read.
    order = {file: index for index, file in enumerate(dict.fromkeys(i.file for i in issues))}
    issues.sort(key=lambda i: (order[i.file], i.line, i.col))
    return Project(root, settings, connectors, suites, tuple(issues), broken)


def _owners_from_dbt(
    root: Path,
    settings: Settings,
    connectors: Mapping[str, Connector],
    suites: dict[str, Suite],
    issues: list[ConfigIssue],
    manifest: Callable[[Path], dict[str, Any]],
) -> dict[str, Suite]:
    """Suites without ``owner:`` that read a table a dbt model builds, with that model's
    owner (``owners: {dbt_manifest: …}``); an unreadable manifest is an issue of
    dq-agent.yml, and the suites are left as they are."""
    assert settings.owners.dbt_manifest is not None
    path = Path(settings.owners.dbt_manifest)
    try:
        owners = manifest_owners(manifest(path if path.is_absolute() else root / path))
    except ValueError as exc:
        doc = _read(root / SETTINGS_FILE, [])
        assert doc is not None  # the setting was read from it
        issues.append(doc.issue(("owners", "dbt_manifest"), str(exc)))
        return suites
    found: dict[str, Suite] = {}
    for suite_id, suite in suites.items():
        spec, connector = suite.source, connectors.get(suite.source.connector)
        if suite.owner or not isinstance(spec, SqlSourceSpec) or spec.table is None:
            found[suite_id] = suite
            continue
        schema = spec.schema_ or (
            connector.schema_ if isinstance(connector, SqlConnector) else None
        )
        table = spec.table.lower()
        owner = owners.get(f"{schema}.{table}".lower()) if schema else None
        owner = owner or owners.get(table) or owners.get(table.rpartition(".")[2])
        found[suite_id] = suite.model_copy(update={"owner": owner}) if owner else suite
    return found


def _fix_issues(
    doc: YamlDocument, suite: Suite, connectors: Mapping[str, Connector]
) -> list[ConfigIssue]:
    """``fixes:`` that could never run: on a source that is not a SQL table, triggered by a
    check the suite does not have, or whose SQL is not one statement on the suite's table
    binding only what the check gives."""
    issues: list[ConfigIssue] = []
    connector = connectors.get(suite.source.connector)
    spec = suite.source
    if not isinstance(connector, SqlConnector) or not isinstance(spec, SqlSourceSpec):
        kind = connector.type if connector is not None else "unknown"
        return [
            doc.issue(
                ("fixes",),
                f"runbook fixes run on SQL tables only; {spec.connector} is a {kind} "
                "connector (not supported yet)",
            )
        ]
    if spec.table is None:
        message = "runbook fixes change a table: name source.table, not a query"
        return [doc.issue(("fixes",), message)]
    checks = {c.name: c for c in suite.checks}
    names: set[str] = set()
    backend = _backend(connector.url)
    for index, fix in enumerate(suite.fixes):
        at: NodePath = ("fixes", index)
        if fix.name in names:
            issues.append(doc.issue((*at, "name"), f"duplicate fix name {fix.name!r}"))
        names.add(fix.name)
        check = checks.get(fix.when.check)
        if check is None:
            known = ", ".join(checks)
            issues.append(
                doc.issue(
                    (*at, "when", "check"),
                    f"unknown check {fix.when.check!r}; expected one of this suite's: {known}",
                )
            )
            continue
        offered = set(fix.when.group)
        if isinstance(check.args, WindowedArgs):
            offered |= set(BUCKET_PARAMS)
        group_by = getattr(check.args, "group_by", None)
        stray = [g for g in fix.when.group if g != group_by]
        if stray:
            issues.append(
                doc.issue(
                    (*at, "when", "group"),
                    f"{fix.when.check} groups by {group_by or 'nothing'}, not {', '.join(stray)}",
                )
            )
        try:
            statement = read_fix(fix.sql, backend, spec.table, spec.schema_ or connector.schema_)
        except StatementError as exc:
            issues.append(doc.issue((*at, "sql"), str(exc)))
            continue
        unknown = sorted(statement.params - offered)
        if unknown:
            given = ", ".join(f":{p}" for p in sorted(offered)) or "no parameters"
            issues.append(
                doc.issue(
                    (*at, "sql"),
                    f"unknown parameter(s) {', '.join(':' + p for p in unknown)}; "
                    f"{fix.when.check} gives {given}",
                )
            )
    return issues


def _backend(url: str) -> str:
    """The SQLAlchemy backend a URL names (``postgresql``), or ``""`` if it does not parse
    (the connector's own validation says why)."""
    try:
        return sa.make_url(url).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):
        return ""


def _allow_list_issues(
    root: Path, settings: Settings, connector_types: Mapping[str, str]
) -> list[ConfigIssue]:
    """``corrections.allow`` entries no source can honour: an unknown connector, or one of a
    kind that is never corrected (a restart target)."""
    rules = settings.corrections.allow
    wrong: list[tuple[int, str]] = []
    for index, rule in enumerate(rules):
        kind = connector_types.get(rule.connector)
        if kind is None:
            known = ", ".join(sorted(connector_types)) or "none in connectors/"
            wrong.append((index, f"unknown connector {rule.connector!r}; expected one of: {known}"))
        elif kind not in CORRECTABLE_TYPES:
            wrong.append(
                (
                    index,
                    f"{kind} connectors are never corrected; expected a "
                    f"{', '.join(CORRECTABLE_TYPES)} connector",
                )
            )
    if not wrong:
        return []
    doc = _read(root / SETTINGS_FILE, [])
    if doc is None:
        return []
    return [
        doc.issue(("corrections", "allow", index, "connector"), message) for index, message in wrong
    ]


def _yaml_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in {".yml", ".yaml"} and p.is_file())


def load_file(file: Path, model: type[M]) -> tuple[M | None, list[ConfigIssue]]:
    """One YAML mapping file read as ``model`` (no ``${…}`` in it), or every issue found."""
    issues: list[ConfigIssue] = []
    doc = _read(file, issues)
    if doc is None:
        return None, issues
    if not isinstance(doc.value, dict):
        issues.append(doc.issue((), "expected a mapping"))
        return None, issues
    parsed = _validate(model, doc.value, doc, (), issues)
    return (parsed if isinstance(parsed, model) else None), issues


def _read(file: Path, issues: list[ConfigIssue]) -> YamlDocument | None:
    try:
        with file.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)  # no further: the file may be endless
        if len(data) > MAX_BYTES:
            limit = f"{MAX_BYTES // 1024} KiB"
            message = f"file of more than {MAX_BYTES:,} bytes; expected at most {limit}"
            issues.append(ConfigIssue(file, 1, 1, "", message))
            return None
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(ConfigIssue(file, 1, 1, "", f"cannot read file: {exc}"))
        return None
    try:
        return load_yaml(text, file)
    except YamlSyntaxError as exc:
        issues.append(exc.issue)
        return None


def _validate(
    model: type[BaseModel],
    value: Any,
    doc: YamlDocument,
    base: NodePath,
    issues: list[ConfigIssue],
) -> Any:
    """Validate ``value`` (found at ``base`` in ``doc``) against ``model``; None on failure."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            issues.append(_issue_from_pydantic(model, error, doc, base))
        return None


def _issue_from_pydantic(
    model: type[BaseModel], error: Any, doc: YamlDocument, base: NodePath
) -> ConfigIssue:
    loc: NodePath = tuple(p for p in error["loc"] if isinstance(p, str | int))
    # Pydantic names the model's Python field; the user wrote the alias.
    loc = tuple(p.rstrip("_") if isinstance(p, str) else p for p in loc)
    path = (*base, *loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        expected = ", ".join(sorted(_field_names(model, loc[:-1])))
        return doc.issue(path, f"unknown key; expected one of: {expected}", key=True)
    if kind == "missing":
        return doc.issue(path, "required key is missing")
    message = str(error["msg"])
    if kind == "bool_parsing":
        message = "expected true or false"
    if kind == "too_short":
        minimum = error.get("ctx", {}).get("min_length", 1)
        message = f"expected at least {minimum} item{'s' if minimum != 1 else ''}"
    for prefix, replacement in (("Input should be ", "expected "), ("Value error, ", "")):
        if message.startswith(prefix):
            message = replacement + message[len(prefix) :]
    scalar = not isinstance(error.get("input"), dict | list)
    if message.startswith("expected ") and " got " not in message and scalar and "input" in error:
        message = f"{message}, got {error['input']!r}"
    return doc.issue(path, message)


def _field_names(model: type[BaseModel], loc: NodePath) -> list[str]:
    """The keys a user may write at ``loc`` inside ``model`` (aliases where set)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        name = part if part in fields else f"{part}_"
        if name not in fields:
            return []
        current = fields[name].annotation
    fields = getattr(current, "model_fields", {})
    return [info.alias or name for name, info in fields.items()]


def _load_settings(
    root: Path, env: Mapping[str, str], issues: list[ConfigIssue], as_broker: bool = False
) -> Settings:
    file = root / SETTINGS_FILE
    if not file.exists():
        return Settings()
    doc = _read(file, issues)
    if doc is None or doc.value is None:
        return Settings()
    if not isinstance(doc.value, dict):
        issues.append(doc.issue((), "expected a mapping of settings"))
        return Settings()
    missing = _own_secrets(doc.value, "broker" if as_broker else "agent")
    value, ref_issues = resolve_references(doc, env, root)
    if ref_issues:  # the values are incomplete: validating them would only repeat the cause
        issues.extend(ref_issues)
        return Settings()
    issues.extend(doc.issue(path, "required key is missing" + _needed_by(path)) for path in missing)
    settings = _validate(Settings, value, doc, (), issues)
    return settings if isinstance(settings, Settings) and not missing else Settings()


def _own_secrets(value: dict[str, Any], reader: str) -> list[NodePath]:
    """Leave out of the settings ``value`` the secrets that are not ``reader``'s (see
    ``SECRETS``); the paths of those that are its own, needed (``SECRET_WHEN``) and missing.
    A broker leaves out the agent's way to it (``broker:``) too."""
    brokered = reader == "broker" or "broker" in value
    if reader == "broker":
        value.pop("broker", None)
    missing: list[NodePath] = []
    for (section, key), holder in SECRETS.items():
        part = value.get(section)
        if not isinstance(part, dict):
            continue
        if (holder if brokered else "agent") != reader:
            part.pop(key, None)
        elif key not in part and _needed(part, section, key):
            missing.append((section, key))
    return missing


def _needed(part: dict[str, Any], section: str, key: str) -> bool:
    """Whether a section's secret is needed as it is set (``SECRET_WHEN``)."""
    when = SECRET_WHEN.get((section, key))
    if when is None:
        return True
    setting, value, default = when
    return bool(part.get(setting, default) == value)


def _needed_by(path: NodePath) -> str:
    """Why a secret is needed, when it is not always: `` (mode: socket needs it)``."""
    when = SECRET_WHEN.get((str(path[0]), str(path[1]))) if len(path) == 2 else None
    if when is None or when[1] == when[2]:
        return ""
    return f" ({when[0]}: {when[1]} needs it)"


def _load_connectors(
    root: Path, env: Mapping[str, str], issues: list[ConfigIssue], sealed: bool = False
) -> tuple[dict[str, Connector], dict[str, Path], dict[str, str]]:
    """Valid connectors; broken ones (name → file); the declared type of every named one."""
    connectors: dict[str, Connector] = {}
    broken: dict[str, Path] = {}
    types: dict[str, str] = {}
    for file in _yaml_files(root / CONNECTORS_DIR):
        name = file.stem
        before = len(issues)
        doc = _read(file, issues)
        connector = _parse_connector(doc, root, env, issues, sealed) if doc is not None else None
        if doc is not None and isinstance(doc.value, dict):
            types[name] = str(doc.value.get("type", ""))
        if connector is None or len(issues) > before:
            broken[name] = file
        else:
            connectors[name] = connector
    return connectors, broken, types


def _parse_connector(
    doc: YamlDocument,
    root: Path,
    env: Mapping[str, str],
    issues: list[ConfigIssue],
    sealed: bool = False,
) -> Connector | None:
    if not isinstance(doc.value, dict):
        issues.append(doc.issue((), "expected a mapping with type: and its settings"))
        return None
    kind = doc.value.get("type")
    if kind is None:
        issues.append(
            doc.issue(
                ("type",), f"required key is missing; expected one of: {', '.join(CONNECTOR_TYPES)}"
            )
        )
        return None
    if kind not in CONNECTOR_TYPES:
        valid = ", ".join(CONNECTOR_TYPES)
        issues.append(
            doc.issue(("type",), f"unknown connector type {kind!r}; expected one of: {valid}")
        )
        return None
    value, ref_issues = resolve_references(doc, env, root, sealed=sealed)
    if ref_issues:  # the values are incomplete: validating them would only repeat the cause
        issues.extend(ref_issues)
        return None
    parsed = _validate(CONNECTOR_TYPES[kind], value, doc, (), issues)
    return parsed if isinstance(parsed, CONNECTOR_TYPES[kind]) else None  # type: ignore[return-value]


def _lineage(
    root: Path,
    settings: Settings,
    connectors: Mapping[str, Connector],
    connector_types: Mapping[str, str],
    issues: list[ConfigIssue],
    manifest: Callable[[Path], dict[str, Any]],
) -> LineageRestarts:
    """What ``restart: {auto: true}`` follows: the manifest ``lineage:`` names (else the one
    ``owners:`` names), read once, and the connectors it restarts through; a manifest that
    cannot be read, or a connector of another type, is an issue of dq-agent.yml."""
    lineage = settings.lineage
    named: list[tuple[NodePath, str, str]] = []
    if lineage.dbt is not None and lineage.dbt.dbt_cloud is not None:
        at: NodePath = ("lineage", "dbt", "dbt_cloud", "connector")
        named.append((at, lineage.dbt.dbt_cloud.connector, "dbt_cloud"))
    if lineage.airflow is not None:
        named.append((("lineage", "airflow", "connector"), lineage.airflow.connector, "airflow"))
    for at, connector, needed in named:
        if connector_types.get(connector) != needed:
            found = connector_types.get(connector)
            problem = f"of type {found}" if found else "not a connector profile"
            doc = _read(root / SETTINGS_FILE, [])
            assert doc is not None  # the setting was read from it
            issues.append(
                doc.issue(at, f"{connector!r} is {problem}; expected a connector of type {needed}")
            )
    name = lineage.dbt_manifest or settings.owners.dbt_manifest
    if lineage.dbt is None or name is None:
        return LineageRestarts(lineage, None, connectors)
    path = Path(name) if Path(name).is_absolute() else root / name
    try:
        return LineageRestarts(lineage, manifest(path), connectors)
    except ValueError as exc:
        at = ("lineage", "dbt_manifest") if lineage.dbt_manifest else ("owners", "dbt_manifest")
        doc = _read(root / SETTINGS_FILE, [])
        assert doc is not None  # the setting was read from it
        issues.append(doc.issue(at, str(exc)))
        problem = f"the dbt manifest cannot be read (see {SETTINGS_FILE}): {exc}"
        return LineageRestarts(lineage, None, connectors, problem)


def _load_suite(
    file: Path,
    settings: Settings,
    connector_types: Mapping[str, str],
    broken_connectors: Mapping[str, Path],
    issues: list[ConfigIssue],
    lineage: LineageRestarts,
) -> tuple[Suite | None, str]:
    doc = _read(file, issues)
    if doc is None:
        return None, file.stem
    if not isinstance(doc.value, dict):
        issues.append(doc.issue((), "expected a mapping with suite:, source: and checks:"))
        return None, file.stem
    raw_id = doc.value.get("suite")
    suite_id = raw_id if isinstance(raw_id, str) and raw_id else file.stem

    header = _validate(SuiteHeader, doc.value, doc, (), issues)
    source = _parse_source(doc, connector_types, broken_connectors, issues)
    raw_checks = doc.value.get("checks")
    checks = (
        _parse_checks(doc, raw_checks, connector_types, issues)
        if isinstance(raw_checks, list)
        else []
    )
    raw_restart = doc.value.get("restart")
    if isinstance(raw_restart, dict):  # restart: {auto: true}, one entry on its own
        raw_restart = [raw_restart]
    restart = (
        _parse_restarts(doc, raw_restart, connector_types, issues, lineage, source)
        if isinstance(raw_restart, list)
        else []
    )
    if not isinstance(header, SuiteHeader) or source is None or issues:
        return None, suite_id
    suite = Suite(
        suite=header.suite,
        description=header.description,
        schedule=header.schedule,
        timezone=header.timezone or settings.defaults.timezone,
        owner=header.owner,
        escalation=header.escalation,
        key=header.key,
        runbook=header.runbook,
        max_findings=(
            header.max_findings
            if header.max_findings is not None
            else settings.defaults.max_findings
        ),
        corrections=header.corrections,
        source=source,
        checks=tuple(checks),
        file=str(file),
        restart=tuple(restart),
        verify=header.verify,
        engine=header.engine,
        fixes=tuple(header.fixes),
        calendar=header.calendar,
    )
    return suite, suite_id


def _parse_source(
    doc: YamlDocument,
    connector_types: Mapping[str, str],
    broken_connectors: Mapping[str, Path],
    issues: list[ConfigIssue],
) -> Any:
    raw = doc.value.get("source")
    if not isinstance(raw, dict):
        return None  # the header validation already reported it
    name = raw.get("connector")
    if not isinstance(name, str):
        issues.append(
            doc.issue(
                ("source", "connector"),
                "required key is missing; name a connector profile (connectors/<name>.yml)",
            )
        )
        return None
    if name not in connector_types:
        available = ", ".join(sorted(connector_types)) or "none: add connectors/<name>.yml"
        issues.append(
            doc.issue(
                ("source", "connector"), f"unknown connector {name!r}; available: {available}"
            )
        )
        return None
    if name in broken_connectors:
        issues.append(
            doc.issue(
                ("source", "connector"),
                f"connector {name!r} is invalid: see {broken_connectors[name]}",
            )
        )
        return None
    if connector_types[name] not in SOURCE_SPECS:
        issues.append(
            doc.issue(
                ("source", "connector"),
                f"connector {name!r} is of type {connector_types[name]}, not a data source; "
                f"expected a connector of type {', '.join(SOURCE_SPECS)}",
            )
        )
        return None
    spec_model = SOURCE_SPECS[connector_types[name]]
    return _validate(spec_model, raw, doc, ("source",), issues)


def _parse_restarts(
    doc: YamlDocument,
    raw: list[Any],
    connector_types: Mapping[str, str],
    issues: list[ConfigIssue],
    lineage: LineageRestarts,
    source: Any,
) -> list[RestartSpec]:
    """``restart:`` items, each ``{type: {args}}``, with their connectors checked; ``auto:
    true`` stands for the targets the table's lineage gives (``source``: the suite's)."""
    restarts: list[RestartSpec] = []
    for index, item in enumerate(raw):
        path: NodePath = ("restart", index) if doc.value.get("restart") is raw else ("restart",)
        if not isinstance(item, dict) or len(item) != 1:
            issues.append(
                doc.issue(
                    path, "expected a one-key mapping like {airflow: {connector: …, dag_id: …}}"
                )
            )
            continue
        [(kind, args)] = item.items()
        kind = str(kind)
        if kind == "auto":
            if args is not True:
                issues.append(doc.issue((*path, kind), "expected auto: true"))
            elif source is not None:  # else the source's own issue says why
                try:
                    restarts += lineage.restarts(source, doc.position(path)[0])
                except ValueError as exc:
                    issues.append(doc.issue((*path, kind), str(exc)))
            continue
        if kind not in RESTART_TYPES:
            issues.append(
                doc.issue(
                    path,
                    f"unknown restart type {kind!r}; expected one of: {', '.join(RESTART_TYPES)}",
                    key=True,
                )
            )
            continue
        parsed = _validate(RESTART_TYPES[kind], args or {}, doc, (*path, kind), issues)
        if parsed is None:
            continue
        needed = RESTART_CONNECTORS.get(kind)
        name = getattr(parsed, "connector", None)
        if needed is not None and connector_types.get(str(name)) != needed:
            found = connector_types.get(str(name))
            problem = f"of type {found}" if found else "not a connector profile"
            issues.append(
                doc.issue(
                    (*path, kind, "connector"),
                    f"{name!r} is {problem}; expected a connector of type {needed}",
                )
            )
            continue
        line = doc.position(path)[0]
        restarts.append(RestartSpec(type=kind, args=parsed, line=line))
    return restarts


def _parse_checks(
    doc: YamlDocument,
    raw_checks: list[Any],
    connector_types: Mapping[str, str],
    issues: list[ConfigIssue],
) -> list[CheckSpec]:
    checks: list[CheckSpec] = []
    names: set[str] = set()
    for index, item in enumerate(raw_checks):
        path: NodePath = ("checks", index)
        if isinstance(item, str):
            item = {item: None}
        if not isinstance(item, dict) or len(item) != 1:
            issues.append(doc.issue(path, "expected a one-key mapping like {row_count: {min: 1}}"))
            continue
        [(kind, args)] = item.items()
        kind = str(kind)
        args = {} if args is None else args
        if not isinstance(args, dict):
            issues.append(
                doc.issue((*path, kind), f"expected a mapping of arguments, got {args!r}")
            )
            continue
        spec = _parse_check(doc, (*path, kind), kind, args, issues)
        if spec is None:
            continue
        if isinstance(spec.args, ReferenceArgs) and not _sql_connector(
            doc, (*path, kind), spec.args, connector_types, issues
        ):
            continue
        if spec.name in names:
            issues.append(
                doc.issue(
                    (*path, kind), f"duplicate check name {spec.name!r}; give one of them a name:"
                )
            )
            continue
        names.add(spec.name)
        checks.append(spec)
    return checks


def _sql_connector(
    doc: YamlDocument,
    path: NodePath,
    args: ReferenceArgs,
    connector_types: Mapping[str, str],
    issues: list[ConfigIssue],
) -> bool:
    """Whether ``reference``'s ``to.connector`` (if any) names an SQL connector; if not, says so."""
    name = args.to.connector
    if name is None or connector_types.get(name) == "sql":
        return True
    sql = sorted(n for n, kind in connector_types.items() if kind == "sql")
    available = ", ".join(sql) or "none: add connectors/<name>.yml"
    problem = (
        f"connector {name!r} is of type {connector_types[name]}, not sql"
        if name in connector_types
        else f"unknown connector {name!r}"
    )
    issues.append(doc.issue((*path, "to", "connector"), f"{problem}; SQL connectors: {available}"))
    return False


def _parse_check(
    doc: YamlDocument, path: NodePath, kind: str, args: dict[str, Any], issues: list[ConfigIssue]
) -> CheckSpec | None:
    line = doc.position(path, key=True)[0]
    if kind in BUILTIN_CHECKS:
        parsed = _validate(BUILTIN_CHECKS[kind], args, doc, path, issues)
        if not isinstance(parsed, CheckArgs):
            return None
        column = getattr(parsed, "column", None) or getattr(parsed, "timestamp_column", None)
        default_name = f"{kind}({column})" if column else kind
        return CheckSpec(
            type=kind,
            name=parsed.name or default_name,
            severity=parsed.severity,
            owner=parsed.owner,
            args=parsed,
            line=line,
        )
    if kind.startswith("expect_"):
        return _parse_expectation(doc, path, kind, args, issues, line)
    builtins = ", ".join(sorted(BUILTIN_CHECKS))
    hint = expectations.suggest(kind, sorted(BUILTIN_CHECKS))
    issues.append(
        doc.issue(
            path,
            f"unknown check type {kind!r}{hint}; expected one of: {builtins}, "
            "or a Great Expectations expectation (expect_*)",
            key=True,
        )
    )
    return None


def _parse_expectation(
    doc: YamlDocument,
    path: NodePath,
    kind: str,
    args: dict[str, Any],
    issues: list[ConfigIssue],
    line: int,
) -> CheckSpec | None:
    native = expectations.NATIVE_EXPECTATIONS.get(kind)
    common = {k: args[k] for k in ("name", "severity", "owner") if k in args}
    kwargs = {k: v for k, v in args.items() if k not in common}
    if native is not None:
        base = _validate(native, args, doc, path, issues)
        if not isinstance(base, CheckArgs):
            return None
    else:
        names = expectations.expectation_names()
        if kind not in names:
            hint = expectations.suggest(kind, names)
            issues.append(doc.issue(path, f"unknown expectation {kind!r}{hint}", key=True))
            return None
        before = len(issues)
        base = _validate(CheckArgs, common, doc, path, issues)
        for loc, message in expectations.validate_expectation(kind, kwargs):
            unknown = bool(loc) and message.startswith("unknown")
            issues.append(doc.issue((*path, *loc), message, key=unknown))
        if len(issues) > before or not isinstance(base, CheckArgs):
            return None
    target = kwargs.get("column") or ",".join(kwargs.get("column_list", []) or [])
    return CheckSpec(
        type=kind,
        name=base.name or (f"{kind}({target})" if target else kind),
        severity=base.severity,
        owner=base.owner,
        args=None,
        expectation_kwargs=kwargs,
        line=line,
    )
