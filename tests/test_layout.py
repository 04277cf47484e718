"""The house's arrows: the product never imports the emulators, and ships without them."""

from __future__ import annotations

import ast
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner
from setuptools import find_packages

from dq_agent.cli import app, main

REPO = Path(__file__).resolve().parents[1]
SANDBOX = "dq_agent_sandbox"


def _mentions_of_the_sandbox(path: Path) -> list[str]:
    """Where a module imports the emulators' package, or names it in a string (an import by
    name, an entry point)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]
        found += [f"{path.name}:{node.lineno}: {name}" for name in names if SANDBOX in name]
    return found


def test_no_product_module_imports_the_emulators() -> None:
    modules = sorted((REPO / "dq_agent").rglob("*.py"))
    assert len(modules) > 100
    assert [m for path in modules for m in _mentions_of_the_sandbox(path)] == []


def test_the_check_sees_an_import_of_the_emulators(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text(
        "import dq_agent_sandbox.slack\nfrom dq_agent_sandbox import runner\n"
        "import dq_agent.sandbox_free\nx = __import__('dq_agent_sandbox.demo')\n",
        encoding="utf-8",
    )
    assert _mentions_of_the_sandbox(module) == [
        "probe.py:1: dq_agent_sandbox.slack",
        "probe.py:2: dq_agent_sandbox",
        "probe.py:4: dq_agent_sandbox.demo",
    ]


def test_the_agent_s_package_ships_without_the_emulators() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = find_packages(where=str(REPO), include=include)
    assert "dq_agent" in shipped and "dq_agent.cli" in shipped
    assert [p for p in shipped if p.startswith(SANDBOX) or "sandbox" in p] == []
    own = tomllib.loads((REPO / "sandbox" / "pyproject.toml").read_text(encoding="utf-8"))
    assert find_packages(where=str(REPO / "sandbox"), include=["dq_agent_sandbox*"]) == [SANDBOX]
    assert own["project"]["entry-points"]["dq_agent.commands"] == {
        "demo": "dq_agent_sandbox.cli:demo",
        "sandbox": "dq_agent_sandbox.cli:sandbox",
    }


def test_the_demo_says_how_to_install_the_emulators_when_they_are_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(app, "_plugins", dict)
    for command in (["demo", "--ui"], ["sandbox", "--port-base", "9000"]):
        done = CliRunner().invoke(main, command)
        assert done.exit_code == 3, done.output
        assert done.stderr == (
            f"error: dq-agent {command[0]} needs the emulators, which are not installed: "
            "pip install 'dq-agent[demo]'\n"
        )
    listed = CliRunner().invoke(main, ["--help"])
    assert listed.exit_code == 0
    assert "Not installed: pip install 'dq-agent[demo]'." in listed.output


def test_the_emulators_plug_their_commands_in_when_installed() -> None:
    from dq_agent_sandbox import cli

    assert app._plugins()["demo"].load() is cli.demo
    done = CliRunner().invoke(main, ["demo", "--help"])
    assert done.exit_code == 0
    assert "The running example end to end" in done.output


def test_a_broken_plug_in_says_so_and_takes_no_other_command_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    group = app.PLUGINS
    broken = {
        "demo": EntryPoint("demo", "dq_agent_no_such_module.cli:demo", group),
        "sandbox": EntryPoint("sandbox", "dq_agent.cli.common:PROJECT_HELP", group),
    }
    monkeypatch.setattr(app, "_plugins", lambda: broken)
    listed = CliRunner().invoke(main, ["--help"])
    assert listed.exit_code == 0, listed.output
    assert "Broken: could not be loaded from" in listed.output
    done = CliRunner().invoke(main, ["demo"])
    assert done.exit_code == 3
    assert done.stderr == (
        "error: dq-agent demo could not be loaded from dq_agent_no_such_module.cli:demo: "
        "No module named 'dq_agent_no_such_module'\n"
    )
    done = CliRunner().invoke(main, ["sandbox", "--port-base", "9000"])
    assert done.exit_code == 3
    assert done.stderr == (
        "error: dq-agent sandbox could not be loaded from dq_agent.cli.common:PROJECT_HELP: "
        "it is no click command\n"
    )
    assert CliRunner().invoke(main, ["validate", "--help"]).exit_code == 0
