"""Shared fixtures: fresh SQLite and PostgreSQL databases for every test that asks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _postgres_base_url() -> str:
    return os.environ.get("DQ_AGENT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def _reachable(url: str, server: str, required_by: str) -> str:
    """``url`` if the server answers; else a skip, or a failure when ``required_by`` is 1."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any driver or network error means "not reachable"
        reason = f"{server} not reachable at {url}: {exc.__class__.__name__}: {exc}"
        if os.environ.get(required_by) == "1":
            pytest.fail(f"{reason} ({required_by}=1 makes this a failure)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The test PostgreSQL URL; skips (or fails under DQ_AGENT_REQUIRE_POSTGRES=1) if down."""
    return _reachable(_postgres_base_url(), "PostgreSQL", "DQ_AGENT_REQUIRE_POSTGRES")


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh, empty schema dropped after the test."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_server)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in postgres_server else "?"
    try:
        yield f"{postgres_server}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


DEFAULT_MARIADB_URL = "mysql+pymysql://root@127.0.0.1:3306/test"


@pytest.fixture(scope="session")
def mariadb_server() -> str:
    """The test MariaDB URL; skips (or fails under DQ_AGENT_REQUIRE_MARIADB=1) if down."""
    url = os.environ.get("DQ_AGENT_TEST_MARIADB_URL", DEFAULT_MARIADB_URL)
    return _reachable(url, "MariaDB", "DQ_AGENT_REQUIRE_MARIADB")


@pytest.fixture
def mariadb_url(mariadb_server: str) -> Iterator[str]:
    """A MariaDB URL on a fresh, empty database dropped after the test."""
    database = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mariadb_server)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{database}`"))
    try:
        # Rendered in full: str() of a URL shows its password as ***.
        url = sa.make_url(mariadb_server).set(database=database)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE `{database}`"))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A URL for a new SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'db.sqlite'}"


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    """A URL for a new DuckDB file in the test's temporary directory."""
    return f"duckdb:///{tmp_path / 'db.duckdb'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL, once for SQLite and once for PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
def gx_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL on every SQL engine Great Expectations runs on (not DuckDB)."""
    return str(request.getfixturevalue(f"{request.param}_url"))


@pytest.fixture(params=["sqlite", "duckdb", "postgres", "mariadb"])
def engine_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL on every SQL engine the checks run on."""
    return str(request.getfixturevalue(f"{request.param}_url"))
