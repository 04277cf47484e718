"""The README's quick start as a newcomer runs it: a built wheel in a fresh virtualenv.

It builds the wheel and installs it with its dependencies (about a minute), so it runs when
asked: DQ_AGENT_TEST_WHEEL=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_init import a_healthy_shop

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not os.environ.get("DQ_AGENT_TEST_WHEEL"),
    reason="builds and installs a wheel in a fresh virtualenv (about a minute): "
    "set DQ_AGENT_TEST_WHEEL=1",
)


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_the_quick_start_from_a_built_wheel(tmp_path: Path, postgres_url: str) -> None:
    # Built from a copy of what git holds: building writes build/ next to the sources.
    source = tmp_path / "source"
    listed = run("git", "ls-files", "-z", cwd=ROOT).stdout.split("\0")
    for name in filter(None, listed):
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / name).is_symlink():
            target.symlink_to(os.readlink(ROOT / name))
        else:
            shutil.copy2(ROOT / name, target)
    for package in (source, source / "sandbox"):  # the agent, and the emulators
        wheel_of = (sys.executable, "-m", "pip", "wheel", "-q", "--no-deps")
        run(*wheel_of, "-w", tmp_path / "dist", package, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("dq_agent-*.whl")
    [emulators] = (tmp_path / "dist").glob("dq_agent_sandbox-*.whl")
    run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    bin_ = tmp_path / "venv" / "bin"
    run(bin_ / "pip", "install", "-q", f"{wheel}[postgres]", cwd=tmp_path)
    a_healthy_shop(postgres_url)
    elsewhere = tmp_path / "somewhere"
    elsewhere.mkdir()
    # The README's commands, from a folder that is no project.
    run(
        bin_ / "dq-agent",
        "init",
        "--project",
        "my-dq",
        "--connect",
        postgres_url,
        "--tables",
        "orders,events",
        cwd=elsewhere,
    )
    checked = run(bin_ / "dq-agent", "check", "--project", "my-dq", cwd=elsewhere)
    assert checked.stdout.rstrip().endswith("2 suites: 2 pass")
    # The agent ships alone: the demo says how to install the emulators it plays on.
    missing = subprocess.run(
        [bin_ / "dq-agent", "demo"], cwd=elsewhere, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 3
    assert "pip install 'dq-agent[demo]'" in missing.stderr
    run(bin_ / "pip", "install", "-q", emulators, f"{wheel}[demo]", cwd=tmp_path)
    demo = run(bin_ / "dq-agent", "demo", cwd=elsewhere)
    assert "incidents: 4 opened, 4 resolved" in demo.stdout
    assert sorted(p.name for p in elsewhere.iterdir()) == ["my-dq"]
