"""Starting a project: ``init``, ``schema`` and ``import``."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import click

from dq_agent.checks.base import plural
from dq_agent.cli.common import (
    EXIT_CANNOT_RUN,
    err_console,
    project_option,
)
from dq_agent.config.loader import resolve_sqlite_path
from dq_agent.engine import utc_now
from dq_agent.errors import DqAgentError


@click.command()
@project_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write them (default: .dq-agent/schemas in the project).",
)
def schema(project_dir: Path, out: Path | None) -> None:
    """Write JSON Schemas of dq-agent.yml, connector profiles and suites, for editors.

    A YAML file names its schema in a first line such as
    "# yaml-language-server: $schema=../.dq-agent/schemas/suite.schema.json" (the line
    printed for each kind), and editors with a YAML language server then complete and check
    it as it is typed. "dq-agent validate" remains the judge.
    """
    for line in _write_schemas(project_dir, out):
        click.echo(line)


def _write_schemas(project_dir: Path, out: Path | None = None) -> list[str]:
    """The JSON Schemas written to ``out`` (default: the project's .dq-agent/schemas), and for
    each the line that makes an editor use it."""
    from dq_agent.config.schema import FILES, schemas

    folder = out if out is not None else project_dir / ".dq-agent" / "schemas"
    folder.mkdir(parents=True, exist_ok=True)
    # Where each kind of file lives in a project, relative to the project folder.
    homes = {"settings": Path("."), "connector": Path("connectors"), "suite": Path("checks")}
    told = []
    for kind, document in schemas().items():
        target = folder / FILES[kind]
        target.write_text(json.dumps(document, indent=2) + "\n")
        relative = os.path.relpath(target.resolve(), (project_dir / homes[kind]).resolve())
        told.append(f"wrote {target}: first line of a {kind} file:")
        told.append(f"  # yaml-language-server: $schema={relative}")
    return told


# init profiles at most this many tables unless --tables names them.
MAX_TABLES = 50


@click.command()
@project_option
@click.option(
    "--connect",
    "url",
    metavar="URL",
    help="A database URL, as SQLAlchemy takes it (postgresql+psycopg://user@host/db, "
    "sqlite:///file.db): write its connector profile and suggest a suite for each table.",
)
@click.option(
    "--tables",
    metavar="A,B",
    help=f"The tables to profile, comma-separated (default: every table, at most {MAX_TABLES}).",
)
@click.option("--schema", "schema", help="The database schema the tables are in.")
def init(project_dir: Path, url: str | None, tables: str | None, schema: str | None) -> None:
    """Start a project: dq-agent.yml, connectors/, checks/ and the editors' JSON Schemas.

    With --connect, each table is profiled in one query pushed down to the database (rows,
    nulls, distinct values, ranges, keys, when rows arrive) and a suite is written for it:
    row_count, freshness, volume_anomaly, not-null, accepted values, uniqueness and ranges
    where the data supports them, each line commented with its evidence. Every suggestion
    holds on the data as it is, so "dq-agent check" passes on healthy data. Files that are
    there already are kept.
    """
    from dq_agent import scaffold

    console = err_console()
    connector = written = None
    suggested = []
    failed = 0
    variable: str | None = None
    if url is not None:
        # A relative SQLite or DuckDB path is the user's, from here: the profile written
        # into the project must find the same file.
        url = resolve_sqlite_path(url, Path.cwd())
        connector = scaffold.connector_for(url, schema)
        shown, variable = scaffold.secret_free(url)
        written = scaffold.connector_for(shown, schema)
        try:
            names = (
                [t.strip() for t in tables.split(",") if t.strip()]
                if tables
                else scaffold.tables(connector, project_dir)
            )
        except DqAgentError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_CANNOT_RUN)
        if len(names) > MAX_TABLES:
            console.print(
                f"{len(names)} tables: profiling the first {MAX_TABLES} (--tables to choose)"
            )
            names = names[:MAX_TABLES]
        for name in names:
            try:
                found = scaffold.profile(connector, project_dir, name, utc_now())
            except DqAgentError as exc:
                click.echo(f"error: {name}: {exc}", err=True)
                failed += 1
                continue
            one = scaffold.suggest(found, scaffold.CONNECTOR, schema)
            suggested.append(one)
            console.print(
                f"{name}: {found.rows:,} rows, {len(found.columns)} columns profiled in "
                f"{found.seconds:.2f}s: {plural(one.checks, 'check')} suggested"
            )
    project_dir.mkdir(parents=True, exist_ok=True)
    scaffold.write_project(project_dir, connector=written, suggested=suggested, say=click.echo)
    _write_schemas(project_dir)
    if url is None:
        click.echo(
            "next: dq-agent init --connect URL to suggest suites for your tables, or write "
            "checks/*.yml by hand (dq-agent demo --dir DIR writes a worked example)"
        )
        return
    if variable is not None:
        click.echo(f"the password is not written down: set {variable} (URL-encoded) to run")
    click.echo(f"next: dq-agent check --project {shlex.quote(str(project_dir))}")
    if failed:
        sys.exit(EXIT_CANNOT_RUN)


@click.group("import")
def import_() -> None:
    """Suites from another tool's definitions, written into the project's checks/."""


@import_.command("gx")
@project_option
@click.argument("suite_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--connector", required=True, help="The connector the suite reads (connectors/NAME.yml)."
)
@click.option("--table", required=True, help="The table the expectations are about.")
@click.option("--suite", "suite_id", help="The suite's id (default: the GX suite's name).")
@click.option("--owner", help="Who hears about it: an e-mail address.")
def import_gx(
    project_dir: Path,
    suite_json: Path,
    connector: str,
    table: str,
    suite_id: str | None,
    owner: str | None,
) -> None:
    """A Great Expectations expectation suite (its JSON file) as checks/<suite>.yml.

    Each expectation becomes a check of the same name with the same arguments (dq-agent runs
    any GX expectation); one dq-agent cannot run is kept, commented out, with the reason.
    """
    from dq_agent.config.gx_import import read_gx_suite, suite_from_gx

    try:
        converted = suite_from_gx(
            read_gx_suite(suite_json),
            connector=connector,
            table=table,
            suite=suite_id,
            owner=owner,
        )
    except DqAgentError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    target = project_dir / "checks" / f"{converted.suite}.yml"
    if target.exists():
        click.echo(f"error: {target} is there already: --suite to name another", err=True)
        sys.exit(EXIT_CANNOT_RUN)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(converted.yaml)
    click.echo(f"wrote {target}")
    for line in converted.skipped:
        click.echo(f"not converted (commented out): {line}", err=True)
    click.echo(f"next: dq-agent validate --project {shlex.quote(str(project_dir))}")
