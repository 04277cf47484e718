"""One Soda Core 4 measurement in a fresh process, run by the Soda virtualenv's Python.

``benchmarks/.soda-venv/bin/python benchmarks/soda_child.py --contract C --data-source D``

Soda Core 4 is pinned in its own virtualenv (``make bench`` builds ``benchmarks/.soda-venv``),
so this script imports nothing from the project or from the main virtualenv: the standard
library, Soda and the psycopg driver that soda-postgres brings. The parent (``run.py``) writes
the contract and the data source YAML (``suite.write_soda_project``) and reads the JSON object
this prints on its last stdout line, the same report the other children print:

- ``import_s``: importing psycopg and Soda Core (its PostgreSQL plugin included);
- ``setup_s``: building Soda's data source from its YAML (no connection yet);
- ``work_s``: ``verify_contract_locally``: parsing the contract, connecting, querying and
  judging the ten checks;
- ``peak_rss_mb``; ``statements`` and ``sql``: every SQL statement Soda handed to the driver
  (counted by wrapping psycopg's cursor methods, the level SQLAlchemy's
  ``before_cursor_execute`` counts at for the other tools); ``scans``: the references to the
  table after FROM or JOIN in them, as ``children.table_reads`` counts them;
- ``passed`` and ``outcomes`` (each check's verdict, by the contract's check names).
"""

from __future__ import annotations

import os

# Before Soda is imported: its telemetry reads this when the module loads. Nothing may leave
# the machine during the benchmark.
os.environ["SODA_CORE_TELEMETRY_ENABLED"] = "false"

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

STARTED = time.perf_counter()

import psycopg  # noqa: E402  (after STARTED: the driver is part of every tool's import_s)

SQL_SHOWN = 160  # characters of each statement kept in the report, as in children.py
# The benchmark table after FROM or JOIN, qualified or not: children.py's _READS_TABLE (this
# script imports nothing from the project).
_NAME = r'(?:\w+|"[^"]+"|`[^`]+`|\[[^\]]+\])'
_READS_TABLE = re.compile(
    rf'\b(?:FROM|JOIN)\s+(?:{_NAME}\s*\.\s*){{0,2}}["`\[]?bench_orders["`\]]?(?![\w.])', re.I
)


class StatementLog:
    """Counts the statements Soda sends, at the psycopg cursor (nested calls count once)."""

    def __init__(self) -> None:
        self.sql: list[str] = []
        self.scans = 0
        self._depth = 0

    def install(self) -> None:
        from psycopg import ServerCursor

        for cls, name in (
            (psycopg.Cursor, "execute"),
            (psycopg.Cursor, "executemany"),
            (psycopg.Cursor, "stream"),
            (psycopg.Cursor, "copy"),
            (ServerCursor, "execute"),
        ):
            setattr(cls, name, self._wrap(getattr(cls, name)))

    def _wrap(self, method: Callable[..., Any]) -> Callable[..., Any]:
        log = self

        @functools.wraps(method)
        def counted(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if log._depth == 0:
                text = query if isinstance(query, str) else repr(query)
                log.sql.append(" ".join(text.split())[:SQL_SHOWN])
                log.scans += len(_READS_TABLE.findall(text))
            log._depth += 1
            try:
                return method(cursor, query, *args, **kwargs)
            finally:
                log._depth -= 1

        return counted


def peak_rss_mb() -> float:
    """Peak resident set in MB: VmHWM, as in children.py (``ru_maxrss`` keeps the parent's
    peak across the vfork+exec that starts this process)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contract", required=True, help="the Soda contract YAML")
    parser.add_argument("--data-source", required=True, help="the Soda data source YAML")
    args = parser.parse_args(argv)

    log = StatementLog()
    log.install()

    from soda_core.common.data_source_impl import DataSourceImpl
    from soda_core.common.yaml import DataSourceYamlSource
    from soda_core.contracts.api.verify_api import verify_contract_locally

    started = time.perf_counter()
    data_source = DataSourceImpl.from_yaml_source(
        DataSourceYamlSource.from_file_path(args.data_source)
    )
    if data_source is None:
        raise SystemExit(f"Soda could not read the data source {args.data_source}")
    ready = time.perf_counter()
    session = verify_contract_locally(data_sources=data_source, contract_file_path=args.contract)
    data_source.close_connection()
    done = time.perf_counter()

    outcomes: dict[str, bool] = {}
    for result in session.contract_verification_results:
        for check_result in result.check_results:
            check = check_result.check
            name = check.name or f"{check.column_name or 'dataset'}: {check.type}"
            outcomes[name] = check_result.is_passed
    errors = session.get_errors()
    if errors:
        outcomes[f"soda reported errors: {'; '.join(errors)[:500]}"] = False
    if not session.is_ok and all(outcomes.values()):
        outcomes["verification"] = False

    report = {
        "tool": "soda",
        "backend": "postgresql",
        "import_s": started - STARTED,
        "setup_s": ready - started,
        "work_s": done - ready,
        "peak_rss_mb": peak_rss_mb(),
        "statements": len(log.sql),
        "scans": log.scans,
        "cache_scans": 0,
        "setup_statements": 0,
        "other_statements": 0,
        "passed": bool(outcomes) and all(outcomes.values()),
        "outcomes": outcomes,
        "sql": log.sql,
        "soda_version": _soda_version(),
    }
    sys.stdout.flush()
    print(json.dumps(report))


def _soda_version() -> str:
    from soda_core.__version__ import SODA_CORE_VERSION

    return str(SODA_CORE_VERSION)


if __name__ == "__main__":
    main()
