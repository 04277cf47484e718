"""Small builders for test projects on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def make_project(
    root: Path,
    *,
    connectors: dict[str, str] | None = None,
    suites: dict[str, str] | None = None,
    settings: str | None = None,
) -> Path:
    """A project folder with ``connectors/<name>.yml`` and ``checks/<name>.yml`` files."""
    for name, text in (connectors or {}).items():
        write(root / "connectors" / f"{name}.yml", text)
    for name, text in (suites or {}).items():
        write(root / "checks" / f"{name}.yml", text)
    if settings is not None:
        write(root / "dq-agent.yml", settings)
    return root


_CYCLE_KILLED = """
import importlib, os, sys
from datetime import datetime
from dq_agent.agent import run_cycle
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.store import Store

owner = getattr(importlib.import_module({module!r}), {cls!r})
real = getattr(owner, {method!r})

def dying(self, *args, **kwargs):
    if {after_call!r}:
        real(self, *args, **kwargs)
    os._exit(9)

setattr(owner, {method!r}, dying)
project = load_project(sys.argv[1], env={{}})
now = datetime.fromisoformat({now!r}) if {now!r} else None
with Store.open(project.state_url) as store:
    run_cycle(project, [{suite!r}], store, RunOptions(clock=lambda: now) if now else RunOptions())
"""


def run_killed(
    project: Path,
    suite: str,
    target: str,
    *,
    after_call: bool = True,
    now: datetime | None = None,
) -> None:
    """One agent cycle of ``suite`` in a process of its own that kills itself, as a crash
    would, at ``target`` (``module:Class.method``): right after the call returns, or
    instead of making it. ``now``: the cycle's clock, if not the real one."""
    module, _, path = target.partition(":")
    cls, _, method = path.partition(".")
    file = project / "crash.py"
    script = _CYCLE_KILLED.format(
        module=module,
        cls=cls,
        method=method,
        after_call=after_call,
        suite=suite,
        now=now.isoformat() if now else "",
    )
    file.write_text(script, encoding="utf-8")
    died = subprocess.run(
        [sys.executable, str(file), str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert died.returncode == 9, died.stderr
