"""Small builders for test projects on disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
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


def run_killed(script: str, project: Path) -> None:
    """Run ``script`` (Python, given the project folder as its argument) in a process of its
    own, which must kill itself with ``os._exit(9)`` mid-action, as a crash would."""
    file = project / "crash.py"
    file.write_text(textwrap.dedent(script), encoding="utf-8")
    died = subprocess.run(
        [sys.executable, str(file), str(project)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert died.returncode == 9, died.stderr
