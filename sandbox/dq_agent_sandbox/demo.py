"""``dq-agent demo``: the running example played on the loopback emulators, with a clock.

The story: one agent cycle finds Pete's emptied forecast tab, the stale aggregate, the $10m
typing slip (corrected at once, and its owner told) and yesterday's Yen payments among the
dollars (the runbook's convert_yen fix is tried on a branch and shown to Finance with its
report). Four hours later nobody has answered, so Pete is reminded in the thread. Pete restores
the tab and presses "I fixed it": the agent checks again, sees the rows and restarts the
forecasts_agg DAG on the Airflow emulator. Finance presses Apply fix: the Yen are converted on
a branch, verified and published, and the revenue_daily DAG is restarted. When the runs have
finished the agent checks what they built and closes the incidents. Dana presses Undo on the
correction to show the undo. The Slack conversation is printed as it
happens.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from dq_agent.agent import connect_slack
from dq_agent.config.loader import Project
from dq_agent.config.models import GSheetsConnector, GSheetsSourceSpec
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.escalate.actions import Actions
from dq_agent.escalate.endpoint import ACTIONS_PATH, Verifier
from dq_agent.escalate.server import InteractionsServer
from dq_agent.sources import gsheets
from dq_agent.store import Store
from dq_agent_sandbox.airflow import AirflowEmulator
from dq_agent_sandbox.runner import FORECAST_HEADER, Sandbox, forecast_rows
from dq_agent_sandbox.slack import SlackEmulator, button_click, signed_interaction
from dq_agent_sandbox.warehouse import run_forecasts_dag, run_revenue_dag

SHEET_SUITE = "us_forecast_sheet"
PETE = "pete@acme.com"
DANA = "dana@acme.com"
FINANCE = "finance-data@acme.com"
# A weekday morning, so reminders fall in working hours whenever the demo is run.
START_HOUR = 9

RunCycle = Callable[[Callable[[], datetime]], int]


def start_time(now: datetime) -> datetime:
    """The latest weekday 09:00 UTC at or before ``now``: the demo's day starts there."""
    day = now.astimezone(UTC).replace(hour=START_HOUR, minute=0, second=0, microsecond=0)
    if day > now:
        day -= timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


@dataclass
class Clock:
    at: datetime

    def __call__(self) -> datetime:
        return self.at


def fresh_state(project: Project) -> None:
    """Start from an empty state store: the demo's own, in the project's ``.dq-agent/``."""
    prefix = "sqlite:///"
    path = Path(project.state_url[len(prefix) :]) if project.state_url.startswith(prefix) else None
    scratch = (project.root / ".dq-agent").resolve()
    if path is None or scratch not in path.resolve().parents:
        raise DqAgentError(
            "the demo keeps its state in the project's .dq-agent/ folder: set state_url to "
            "sqlite:///.dq-agent/state.db in dq-agent.yml (it is replaced on every demo)"
        )
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


@dataclass
class Demo:
    """The scenario's moving parts: the project, the emulators, the clock, the console."""

    project: Project
    sandbox: Sandbox
    clock: Clock
    out: Console
    run: RunCycle
    warehouse: Path
    # The command that looks into the project afterwards (None: it is removed at the end).
    command: str | None = None
    shown: dict[str, str] = field(default_factory=dict)
    # The DAG runs whose work is in the warehouse already.
    landed: set[str] = field(default_factory=set)

    @property
    def slack(self) -> SlackEmulator:
        emulator = self.sandbox.servers["slack"].emulator
        assert isinstance(emulator, SlackEmulator)
        return emulator

    def play(self) -> int:
        code = self.run(self.clock)
        self.transcript()
        settings = self.project.settings.slack
        if settings is None:
            self.out.print("dq-agent.yml has no slack: section: the story ends here", style="dim")
            return code
        with Store.open(self.project.state_url) as store:
            slack = connect_slack(self.project)
            actions = Actions(self.project, store, slack, RunOptions(clock=self.clock))
            verifier = Verifier(settings.verifying_secret(), store)
            with InteractionsServer(verifier, actions.handle, port=0) as endpoint:
                self.later(endpoint, settings.verifying_secret())
            self.summary(store)
        return code

    def summary(self, store: Store) -> None:
        incidents = store.incidents(events=False)
        resolved = sum(1 for i in incidents if i["status"] == "resolved")
        corrections = store.corrections()
        restarts = store.restarts()
        sent = [m for m in store.outbox(status="sent") if m.kind != "update"]
        self.out.print()
        self.out.print(Text("── Summary", style="bold"))
        self.out.print(
            f"  incidents: {len(incidents)} opened, {resolved} resolved · "
            f"corrections: {len(corrections)} ({', '.join(c.status for c in corrections)}) · "
            f"pipeline restarts: {len(restarts)} ({', '.join(r.state for r in restarts)}) · "
            f"Slack messages: {len(sent)}"
        )
        if self.command is None:
            self.out.print("  look closer: dq-agent demo --dir DIR keeps the example afterwards")
            return
        self.out.print(
            f"  look closer: {self.command} incidents show 1 · {self.command} corrections show 1"
            f" · {self.command} corrections verify"
        )

    def later(self, endpoint: InteractionsServer, secret: str) -> None:
        self.clock.at += timedelta(hours=4)
        self.step("Four hours later. Nobody has answered.")
        self.run(self.clock)
        self.transcript()

        self.clock.at += timedelta(minutes=20)
        self.step("Pete restores the tab from its version history and presses 'I fixed it'.")
        self.restore_sheet()
        self.click(endpoint, secret, PETE, "recheck")
        self.transcript()

        self.clock.at += timedelta(minutes=2)
        self.step("Finance reads the branch report on the Yen payments and presses Apply fix.")
        self.click(endpoint, secret, FINANCE, "approve_fix")
        self.transcript()

        self.clock.at += timedelta(minutes=3)
        self.step("The revenue_daily DAG has run. The agent checks what it built.")
        self.run(self.clock)
        self.transcript()

        self.clock.at += timedelta(minutes=5)
        self.step("Dana presses Undo on the corrected deal, to show the undo.")
        self.click(endpoint, secret, DANA, "undo")
        self.transcript()

    def pipelines_ran(self) -> None:
        """Do in the warehouse, once each, what the DAG runs that have finished by now did
        (the emulator only runs them)."""
        emulator = self.sandbox.servers["airflow"].emulator
        assert isinstance(emulator, AirflowEmulator)
        for run in emulator.state()["dag_runs"]:
            if run["state"] != "success" or run["dag_run_id"] in self.landed:
                continue
            self.landed.add(run["dag_run_id"])
            if run["dag_id"] == "forecasts_agg":
                run_forecasts_dag(self.warehouse, self.clock.at, forecast_rows("US"))
            elif run["dag_id"] == "revenue_daily":
                run_revenue_dag(self.warehouse, self.clock.at)

    def step(self, text: str) -> None:
        self.pipelines_ran()
        self.out.print()
        self.out.print(Text(f"── {self.clock.at:%a %H:%M} UTC · {text}", style="bold"))

    def restore_sheet(self) -> None:
        suite = self.project.suites[SHEET_SUITE]
        spec = suite.source
        connector = self.project.connectors[spec.connector]
        assert isinstance(spec, GSheetsSourceSpec) and isinstance(connector, GSheetsConnector)
        client = gsheets.connect(connector)
        worksheet = client.open_by_key(gsheets.spreadsheet_key(spec.spreadsheet)).worksheet(
            spec.worksheet
        )
        worksheet.update([FORECAST_HEADER, *forecast_rows("US")], "A1")

    def click(self, endpoint: InteractionsServer, secret: str, email: str, action: str) -> None:
        """``email`` presses the ``action`` button on the first message they got about it."""
        users = {u["email"]: u["id"] for u in self.slack.state()["users"]}
        for message in self.slack.state()["messages"]:
            value = _button_value(message, action)
            if value is None or email not in users:
                continue
            payload = button_click(
                user_id=users[email],
                action_id=action,
                value=value,
                channel_id=message["channel"],
                message_ts=message["ts"],
            )
            headers, body = signed_interaction(secret, payload, timestamp=int(time.time()))
            request = urllib.request.Request(
                endpoint.base_url + ACTIONS_PATH, data=body, headers=headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=10):
                pass
            endpoint.drain()
            return
        raise DqAgentError(f"the demo found no {action!r} button for {email}")

    def transcript(self) -> None:
        """New Slack messages (and edits of earlier ones) since the last call."""
        state = self.slack.state()
        names = {u["id"]: f"@{u['name']}" for u in state["users"]}
        places = {
            c["id"]: f"DM {names.get(c['user'], c['user'])}" if c["is_im"] else f"#{c['name']}"
            for c in state["channels"]
        }
        for message in state["messages"]:
            text = _plain(message, names)
            before = self.shown.get(message["ts"])
            if before == text:
                continue
            self.shown[message["ts"]] = text
            place = places.get(message["channel"], message["channel"])
            lines = text.splitlines() or [""]
            if before is not None:  # an edit (chat.update): its state line says what changed
                self.out.print(
                    Text(
                        f"  slack › {place} · updated: {lines[1] if len(lines) > 1 else lines[0]}",
                        style="dim",
                    )
                )
                continue
            if "ephemeral_for" in message:
                head = f"  slack › only {names.get(message['ephemeral_for'], '?')} sees: "
            elif message["thread_ts"] is not None:
                root = self.shown.get(message["thread_ts"], "").splitlines()
                about = root[0].split(" ", 1)[-1].split(" on ")[0] if root else ""
                head = f"    ↳ [{place} · {about}] "
            else:
                head = f"  slack › {place}: "
            indent = " " * (6 if message["thread_ts"] is not None else 4)
            self.out.print(Text(head + lines[0], style="cyan"))
            for line in lines[1:]:
                self.out.print(Text(indent + line, style="cyan"))


_EMOJI = {
    ":rotating_light:": "🚨",
    ":white_check_mark:": "✅",
    ":zzz:": "💤",
    ":ok_hand:": "👌",
}
_LINK = re.compile(r"<([^|<>]+)\|([^<>]+)>")
_MENTION = re.compile(r"<@([A-Z0-9]+)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")


def _plain(message: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """A message as a terminal shows it: block text, buttons in brackets, mentions by name."""
    parts: list[str] = []
    for block in message.get("blocks") or []:
        if block["type"] == "section":
            parts.append(block["text"]["text"])
            if block.get("accessory", {}).get("type") == "button":
                parts[-1] += f"  [{block['accessory']['text']['text']}]"
        elif block["type"] == "context":
            parts.append(" ".join(e.get("text", "") for e in block["elements"]))
        elif block["type"] == "actions":
            parts.append(" ".join(f"[{e['text']['text']}]" for e in block["elements"]))
    text = "\n".join(parts) if parts else str(message["text"])
    text = _LINK.sub(r"\2", text)
    text = _MENTION.sub(lambda m: names.get(m.group(1), m.group(0)), text)
    for code, emoji in _EMOJI.items():
        text = text.replace(code, emoji)
    return _BOLD.sub(r"\1", text)


def _button_value(message: Mapping[str, Any], action: str) -> str | None:
    for block in message.get("blocks") or []:
        elements = block.get("elements", []) if block["type"] == "actions" else []
        for element in elements:
            if element.get("action_id") == action:
                return str(element["value"])
    return None
