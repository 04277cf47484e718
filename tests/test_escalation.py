"""Escalation on Slack, with the real slack-sdk client on the Slack emulator.

The scenario is the running example: Pete's forecast sheet is emptied, Pete hears about it
once, is reminded on a cadence, the chain is walked when nobody answers, and the incident
closes in its thread when the rows are back. The clock is injected: nothing sleeps.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dq_agent.agent import Cycle, connect_slack, run_cycle
from dq_agent.cli import main
from dq_agent.config import load_project
from dq_agent.engine import RunOptions
from dq_agent.escalate.actions import Actions
from dq_agent.escalate.endpoint import ACTIONS_PATH, Verifier
from dq_agent.escalate.notify import CLAIM_LEASE, Escalation
from dq_agent.escalate.server import InteractionsServer
from dq_agent.escalate.slack import SlackApi
from dq_agent.sources.retry import RetryPolicy
from dq_agent.store import Store
from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed
from dq_agent_sandbox.salesforce import SalesforceEmulator
from dq_agent_sandbox.slack import SlackEmulator, button_click, signed_interaction
from tests.helpers import make_project
from tests.sheets_client import open_sheets_client

TOKEN, SECRET = "xoxb-test", "test-signing-secret"
TUESDAY = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
HEADER = ["region", "units", "amount"]
ROWS = [["US-East", 10, 1000], ["US-West", 20, 2000]]
PETE, LEAD, MALLORY = "pete@acme.com", "finance-lead@acme.com", "mallory@acme.com"

SHEET_SUITE = """
suite: us_forecast_sheet
owner: pete@acme.com
escalation: [pete@acme.com, finance-lead@acme.com, "#finance-data"]
source: {connector: sheets, spreadsheet: fin, worksheet: US}
checks:
  - row_count: {min: 1}
runbook: |
  Pete keeps this tab. When it is empty he has pasted over it: File → Version history
  restores the previous version.
"""

SLIP = "006Dn0000040000042"  # 200 seats × $5,000 typed as $10,000,000; Dana's deal
DANA = "dana@acme.com"
CRM_SUITE = """
suite: crm_opportunities
owner: sales-ops@acme.com
escalation: [sales-ops@acme.com, cro@acme.com]
source:
  connector: crm
  object: Opportunity
  fields: [Id, Name, Amount, Seats__c, Price_Per_Seat__c, StageName, OwnerId]
key: [Id]
checks:
  - fat_finger: {column: Amount, witness: "Seats__c * Price_Per_Seat__c", auto_correct: true}
"""


@dataclass
class Clock:
    at: datetime = TUESDAY

    def __call__(self) -> datetime:
        return self.at


@dataclass
class World:
    """The emulators, a project pointed at them, and the agent's side of Slack."""

    root: Path
    sheets: SheetsEmulator
    sheets_url: str
    slack: SlackEmulator
    slack_base: str
    clock: Clock
    endpoint: InteractionsServer | None = None
    crm: SalesforceEmulator | None = None
    sleeps: list[float] = field(default_factory=list)

    def crm_url(self) -> str:
        project = load_project(self.root, env={})
        return str(project.connectors["crm"].instance_url)  # type: ignore[union-attr]

    def options(self) -> RunOptions:
        return RunOptions(clock=self.clock, retry=RetryPolicy(attempts=2, sleep=lambda _s: None))

    def api(self) -> SlackApi:
        project = load_project(self.root, env={})
        assert project.settings.slack is not None
        return SlackApi(project.settings.slack, sleep=self.sleeps.append)

    def cycle(self, at: datetime, suite: str = "us_forecast_sheet") -> Cycle:
        self.clock.at = at
        project = load_project(self.root, env={})
        assert project.issues == ()
        with Store.open(project.state_url) as store:
            return run_cycle(project, [suite], store, self.options(), slack=self.api())

    def empty_the_sheet(self) -> None:
        with open_sheets_client(self.sheets_url) as client:
            client.open_by_key("fin").worksheet("US").batch_clear(["A2:C3"])

    def restore_the_sheet(self) -> None:
        with open_sheets_client(self.sheets_url) as client:
            client.open_by_key("fin").worksheet("US").update([HEADER, *ROWS], "A1")

    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.state()["messages"] if "ephemeral_for" not in m]

    def ephemerals(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.state()["messages"] if "ephemeral_for" in m]

    def user_id(self, email: str) -> str:
        [user] = [u for u in self.slack.state()["users"] if u["email"] == email]
        return str(user["id"])

    def dm(self, email: str) -> str:
        user = self.user_id(email)
        [channel] = [c for c in self.slack.state()["channels"] if c["user"] == user]
        return str(channel["id"])

    def roots(self, email: str) -> list[dict[str, Any]]:
        dm = self.dm(email)
        return [m for m in self.messages() if m["channel"] == dm and m["thread_ts"] is None]

    def thread(self, root: dict[str, Any]) -> list[str]:
        return [m["text"] for m in self.messages() if m["thread_ts"] == root["ts"]]

    def click(
        self, email: str, message: dict[str, Any], action_id: str, *, timestamp: int | None = None
    ) -> int:
        """``email`` presses a button on ``message``; the endpoint's answer, once acted on."""
        assert self.endpoint is not None
        headers, body = self.signed_click(email, message, action_id, timestamp=timestamp)
        status = post(self.endpoint.base_url + ACTIONS_PATH, headers, body)
        self.endpoint.drain()
        return status

    def signed_click(
        self, email: str, message: dict[str, Any], action_id: str, *, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The request Slack sends when ``email`` presses a button on ``message``."""
        payload = button_click(
            user_id=self.user_id(email),
            action_id=action_id,
            value=button_value(message, action_id),
            channel_id=message["channel"],
            message_ts=message["ts"],
            trigger_id=f"{time.time_ns()}.1.{action_id}",  # each click is a new request
        )
        return signed_interaction(
            SECRET, payload, timestamp=int(time.time()) if timestamp is None else timestamp
        )

    def warehouse_suite(
        self, name: str, rows: list[dict[str, Any]], table: Any, suite: str
    ) -> None:
        """``table`` with ``rows`` in a SQLite warehouse of its own, and a suite on it."""
        from tests.sources import load_orders

        url = f"sqlite:///{self.root / f'{name}.db'}"
        load_orders(url, rows, table)
        (self.root / "connectors" / "warehouse.yml").write_text(f"type: sql\nurl: '{url}'\n")
        (self.root / "checks" / f"{name}.yml").write_text(suite)

    def spiky_events(self, owner: str) -> None:
        """Four weeks of events, 2,000 of them on Monday 23 November, watched by ``owner``."""
        from tests.test_volume import daily_counts, event_rows, events_table, nov

        suite = (
            f"suite: events\nowner: {owner}\n"
            "source: {connector: warehouse, table: events}\n"
            "checks:\n  - volume_anomaly: {timestamp_column: created_at}\n"
        )
        self.warehouse_suite(
            "events", event_rows(daily_counts({nov(23): 2000})), events_table(), suite
        )

    def incident(self, incident_id: int = 1) -> dict[str, Any]:
        project = load_project(self.root, env={})
        with Store.open(project.state_url) as store:
            found = store.incident(incident_id)
        assert found is not None
        return found


def post(url: str, headers: dict[str, str], body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def buttons(message: dict[str, Any]) -> list[str]:
    return [
        element["text"]["text"]
        for block in message["blocks"] or []
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def button_value(message: dict[str, Any], action_id: str) -> str:
    for block in message["blocks"] or []:
        for element in block.get("elements", []) if block["type"] == "actions" else []:
            if element["action_id"] == action_id:
                return str(element["value"])
    raise AssertionError(f"no {action_id} button on {message['text']!r}")


def settings(root: Path, slack_url: str, extra: str = "") -> str:
    return f"""
state_url: 'sqlite:///{root}/state.db'
corrections:
  enabled: true
  allow:
    - {{connector: crm, object: Opportunity, fields: [Amount]}}
slack:
  token: {TOKEN}
  signing_secret: {SECRET}
  base_url: {slack_url}/api/
nudges:
  every: 4h
  escalate_after: 2
  working_hours: {{start: "07:00", end: "23:00"}}
{extra}
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path) as built:
        yield built


@contextmanager
def make_world(tmp_path: Path) -> Iterator[World]:
    """The emulators serving, and a project of the two suites pointed at them."""
    sheets = SheetsEmulator()
    sheets.seed({"finance": {"key": "fin", "sheets": {"US": [HEADER, *ROWS]}}})
    slack = SlackEmulator(token=TOKEN, signing_secret=SECRET)
    crm = SalesforceEmulator()
    crm.seed(demo_seed(TUESDAY)["salesforce"]["objects"])
    with (
        LoopbackServer(sheets) as sheets_server,
        LoopbackServer(slack) as slack_server,
        LoopbackServer(crm) as crm_server,
    ):
        root = make_project(
            tmp_path,
            connectors={
                "sheets": f"type: gsheets\nbase_url: {sheets_server.base_url}\n",
                "crm": f"type: salesforce\ninstance_url: {crm_server.base_url}\n"
                "session_id: sandbox\n",
            },
            suites={"sheet": SHEET_SUITE, "crm": CRM_SUITE},
            settings=settings(tmp_path, slack_server.base_url),
        )
        world = World(root, sheets, sheets_server.base_url, slack, slack_server.base_url, Clock())
        world.crm = crm
        yield world


@pytest.fixture
def endpoint(world: World) -> Iterator[InteractionsServer]:
    with serving(world) as server:
        yield server


@contextmanager
def serving(world: World) -> Iterator[InteractionsServer]:
    """The Slack interactions endpoint of ``world``'s project, where its clicks go."""
    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        actions = Actions(project, store, world.api(), world.options())
        with InteractionsServer(Verifier(SECRET, store), actions.handle, port=0) as server:
            world.endpoint = server
            yield server


def test_the_empty_forecast_sheet_is_chased_until_it_is_back(
    world: World, endpoint: InteractionsServer
) -> None:
    world.cycle(TUESDAY - timedelta(hours=1))  # a good read: kept as the last good copy
    assert world.messages() == []

    world.empty_the_sheet()
    first = world.cycle(TUESDAY)
    assert [(n.event, n.owners) for n in first.notices] == [("opened", (PETE,))]
    [root] = world.roots(PETE)
    assert root["text"] == (
        ":rotating_light: us_forecast_sheet / row_count on sheets/US: the source is empty"
    )
    # The agent kept the sheet's last good copy, so the fix is one click away.
    assert buttons(root) == ["Approve fix", "I fixed it", "Snooze", "This is expected"]
    card = json.dumps(root["blocks"])
    assert "restore the last good copy of the worksheet (2 rows)" in card
    assert "File \\u2192 Version history restores the previous version." in card
    assert "https://docs.google.com/spreadsheets/d/fin/edit" in card

    for hours in (1, 2, 3):  # three more failing runs: no new message, the card is updated
        world.cycle(TUESDAY + timedelta(hours=hours))
    assert [m["ts"] for m in world.messages()] == [root["ts"]]
    [root] = world.roots(PETE)
    assert root["edited"] is True
    assert "failed 4 times" in json.dumps(root["blocks"])

    # The cadence: a reminder every 4h in the thread, then the next person in the chain.
    world.cycle(TUESDAY + timedelta(hours=4))
    world.cycle(TUESDAY + timedelta(hours=8))
    pete = world.user_id(PETE)
    assert world.thread(root) == [
        f"<@{pete}> reminder 1: still failing (the source is empty). "
        "Buttons above: I fixed it, Snooze, This is expected.",
        f"<@{pete}> reminder 2: still failing (the source is empty). "
        "Buttons above: I fixed it, Snooze, This is expected.",
    ]
    assert world.incident()["status"] == "notified"
    escalated = world.cycle(TUESDAY + timedelta(hours=12))
    assert [(n.event, n.owners) for n in escalated.notices][-1] == ("escalated", (LEAD,))
    # One message to the lead; Pete's first message shows it, with no reply about it.
    assert len(world.thread(root)) == 2
    [root] = world.roots(PETE)
    assert f"escalated: {PETE} → {LEAD}" in json.dumps(root["blocks"], ensure_ascii=False)
    [lead_root] = world.roots(LEAD)
    assert lead_root["text"] == root["text"]
    assert f"escalated: {PETE} → {LEAD}" in json.dumps(lead_root["blocks"], ensure_ascii=False)

    # "I fixed it" while the sheet is still empty: the thread says so.
    world.clock.at = TUESDAY + timedelta(hours=13)
    assert world.click(PETE, root, "recheck") == 200
    assert world.thread(root)[-2:] == [
        f"Verifying: {PETE} says it is fixed: checking again now",
        "Acknowledged: checked again at 21:00 UTC: still failing: the source is empty",
    ]
    assert world.incident()["status"] == "acknowledged"

    # Pete restores the tab; his next "I fixed it" closes the incident: one reply in its
    # thread, and every first message says so.
    world.restore_the_sheet()
    world.clock.at = TUESDAY + timedelta(hours=14)
    assert world.click(PETE, root, "recheck") == 200
    assert world.incident()["status"] == "resolved"
    closing = ":white_check_mark: Resolved: the check passes again. Closing incident #1."
    assert world.thread(root)[-1] == closing
    assert world.thread(lead_root) == []
    [lead_now] = world.roots(LEAD)
    assert lead_now["text"].startswith(":white_check_mark: ") and buttons(lead_now) == []
    [root] = world.roots(PETE)
    assert root["text"].startswith(":white_check_mark: ")
    assert buttons(root) == []  # nothing left to press
    assert len(world.roots(PETE)) == 1  # one top-level message to Pete, ever
    assert world.click(PETE, lead_root, "recheck") == 200  # a button seen before it closed
    assert [m["text"] for m in world.ephemerals()] == ["incident #1 is already resolved"]

    shown = CliRunner().invoke(main, ["incidents", "show", "1", "--project", str(world.root)])
    assert [line for line in shown.stdout.splitlines() if "slack:" in line] == [
        "  slack: root   to pete@acme.com: sent 2026-11-24T08:00:00",
        "  slack: reply  to pete@acme.com: sent 2026-11-24T12:00:00",
        "  slack: reply  to pete@acme.com: sent 2026-11-24T16:00:00",
        "  slack: root   to finance-lead@acme.com: sent 2026-11-24T20:00:00",
        # What Pete did, what became of it, and the end: once, in the incident's thread.
        "  slack: reply  to pete@acme.com: sent 2026-11-24T21:00:00",
        "  slack: reply  to pete@acme.com: sent 2026-11-24T21:00:00",
        "  slack: reply  to pete@acme.com: sent 2026-11-24T22:00:00",
        "  slack: reply  to pete@acme.com: sent 2026-11-24T22:00:00",
    ]


def test_a_crash_between_recording_and_sending_neither_loses_nor_repeats(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.cycle(TUESDAY - timedelta(hours=1))
    world.empty_the_sheet()

    # 1. The process dies after the message is recorded, before anything is sent.
    monkeypatch.setattr(Escalation, "deliver", lambda self: (_ for _ in ()).throw(SystemExit(1)))
    with pytest.raises(SystemExit):
        world.cycle(TUESDAY)
    assert world.messages() == []
    monkeypatch.undo()
    world.cycle(TUESDAY + timedelta(minutes=5))  # restarted: the recorded message goes out
    assert len(world.roots(PETE)) == 1

    # 2. It dies after Slack took a reply, before the outbox heard back.
    real_post = SlackApi.post

    def post_then_die(self: SlackApi, *args: Any, **kwargs: Any) -> str:
        real_post(self, *args, **kwargs)
        raise SystemExit(1)

    monkeypatch.setattr(SlackApi, "post", post_then_die)
    with pytest.raises(SystemExit):
        world.cycle(TUESDAY + timedelta(hours=4))  # the first reminder
    monkeypatch.undo()
    replies = world.slack.requests_for("chat.postMessage")
    # The dead sender's claim on the reply holds for its lease; then the reply is taken over.
    world.cycle(TUESDAY + timedelta(hours=4, minutes=5))
    assert world.slack.requests_for("chat.postMessage") == replies
    world.cycle(TUESDAY + timedelta(hours=4) + CLAIM_LEASE + timedelta(minutes=1))
    [root] = world.roots(PETE)
    assert len(world.thread(root)) == 1  # found by its key in the thread, not posted again
    assert world.slack.requests_for("chat.postMessage") == replies
    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        assert {m.status for m in store.outbox() if m.kind != "update"} == {"sent"}


def test_forged_stale_and_replayed_callbacks_are_refused(
    world: World, endpoint: InteractionsServer
) -> None:
    world.empty_the_sheet()
    world.cycle(TUESDAY)
    [root] = world.roots(PETE)
    payload = button_click(
        user_id=world.user_id(PETE),
        action_id="snooze",
        value=button_value(root, "snooze"),
        channel_id=root["channel"],
        message_ts=root["ts"],
    )
    url = endpoint.base_url + ACTIONS_PATH
    forged_headers, body = signed_interaction("not-the-secret", payload, timestamp=int(time.time()))
    assert post(url, forged_headers, body) == 401
    stale_headers, stale_body = signed_interaction(
        SECRET, payload, timestamp=int(time.time()) - 600
    )
    assert post(url, stale_headers, stale_body) == 401
    unsigned = {"Content-Type": "application/x-www-form-urlencoded"}
    assert post(url, unsigned, body) == 401
    endpoint.drain()
    assert world.incident()["status"] == "notified"  # none of them did anything

    headers, body = signed_interaction(SECRET, payload, timestamp=int(time.time()))
    assert post(url, headers, body) == 200
    assert post(url, headers, body) == 401  # the same request again: a replay
    endpoint.drain()
    snoozed = world.incident()
    assert snoozed["status"] == "snoozed"
    assert [e["event"] for e in snoozed["events"]].count("snoozed") == 1
    assert endpoint.refused == 4
    assert world.thread(root) == [f"Snoozed: snoozed by {PETE} until 12:00 UTC"]


def test_only_owners_may_approve_and_the_approved_fix_closes_the_incident(
    world: World, endpoint: InteractionsServer
) -> None:
    world.cycle(TUESDAY - timedelta(hours=1))
    world.empty_the_sheet()
    world.cycle(TUESDAY)
    [root] = world.roots(PETE)
    world.api().user(MALLORY)  # Mallory is in the workspace, not in the suite's chain

    assert world.click(MALLORY, root, "approve_fix") == 200
    [refusal] = world.ephemerals()
    assert refusal["ephemeral_for"] == world.user_id(MALLORY)
    assert refusal["text"] == (
        "Only the owners and escalation list of us_forecast_sheet may approve a fix for "
        "incident #1 (finance-lead@acme.com, pete@acme.com)."
    )
    assert world.sheets.state()["spreadsheets"]["fin"]["sheets"]["US"] == [HEADER]
    assert world.incident()["status"] == "notified"

    world.clock.at = TUESDAY + timedelta(minutes=10)
    assert world.click(PETE, root, "approve_fix") == 200
    assert world.sheets.state()["spreadsheets"]["fin"]["sheets"]["US"] == [HEADER, *ROWS]
    assert world.incident()["status"] == "resolved"
    assert world.thread(root) == [
        f"Fix applied: {PETE} approved correction 1 (verified on a copy, then written "
        "compare-and-set)",
        ":white_check_mark: Resolved: the check passes again. Closing incident #1.",
    ]


def test_two_replicas_given_approve_at_the_same_instant_write_the_fix_once(
    world: World, postgres_url: str
) -> None:
    settings_file = world.root / "dq-agent.yml"
    text = settings_file.read_text()
    sqlite_url = next(line for line in text.splitlines() if line.startswith("state_url:"))
    settings_file.write_text(text.replace(sqlite_url, f"state_url: '{postgres_url}'"))
    world.cycle(TUESDAY - timedelta(hours=1))
    world.empty_the_sheet()
    world.cycle(TUESDAY)
    [root] = world.roots(PETE)
    world.clock.at = TUESDAY + timedelta(minutes=10)
    # Pete and the finance lead press Approve at once, each request reaching another replica.
    world.api().user(LEAD)
    clicks = [world.signed_click(who, root, "approve_fix") for who in (PETE, LEAD)]
    project = load_project(world.root, env={})
    with (
        Store.open(project.state_url) as one,
        Store.open(project.state_url) as two,
        InteractionsServer(
            Verifier(SECRET, one),
            Actions(project, one, world.api(), world.options()).handle,
            port=0,
        ) as first,
        InteractionsServer(
            Verifier(SECRET, two),
            Actions(project, two, world.api(), world.options()).handle,
            port=0,
        ) as second,
    ):
        together = threading.Barrier(2)
        answers: list[int] = []

        def press(server: InteractionsServer, click: tuple[dict[str, str], bytes]) -> None:
            together.wait(timeout=10)
            answers.append(post(server.base_url + ACTIONS_PATH, *click))

        pressing = [
            threading.Thread(target=press, args=(server, click))
            for server, click in zip((first, second), clicks, strict=True)
        ]
        for thread in pressing:
            thread.start()
        for thread in pressing:
            thread.join(timeout=30)
        first.drain()
        second.drain()
        assert answers == [200, 200]
        [correction] = one.corrections()
        assert [e.event for e in correction.events].count("applied") == 1
        assert one.verify_ledger() == []
    assert world.sheets.state()["spreadsheets"]["fin"]["sheets"]["US"] == [HEADER, *ROWS]
    assert world.incident()["status"] == "resolved"
    thread = world.thread(root)
    assert [t.split(":")[0] for t in thread].count("Fix applied") == 1
    # Whoever came second is told, in private, that there is nothing left to approve.
    assert [m["text"] for m in world.ephemerals()] == ["incident #1 is already resolved"]


def test_rate_limits_are_waited_out_as_slack_asks(world: World) -> None:
    world.empty_the_sheet()
    world.slack.fail_next("ratelimited", status=429, retry_after=7, times=2)
    api = world.api()
    project = load_project(world.root, env={})
    world.clock.at = TUESDAY
    with Store.open(project.state_url) as store:
        run_cycle(project, ["us_forecast_sheet"], store, world.options(), slack=api)
    assert len(world.roots(PETE)) == 1
    assert world.sleeps == [7.0, 7.0]
    assert (api.rate_limit_waits, api.rate_limit_wait_s) == (2, 14.0)  # for /metrics


@pytest.mark.parametrize("asked", ["nan", "inf", "-5", "soon"])
def test_a_retry_after_that_asks_nothing_usable_waits_the_default(world: World, asked: str) -> None:
    world.empty_the_sheet()
    world.slack.fail_next("ratelimited", status=429, retry_after=asked)
    world.cycle(TUESDAY)
    assert len(world.roots(PETE)) == 1
    assert world.sleeps == [1.0]


def test_outside_working_hours_messages_wait_for_the_morning(world: World) -> None:
    (world.root / "dq-agent.yml").write_text(
        settings(
            world.root,
            world.slack_base,
            "people:\n  pete@acme.com: {timezone: America/New_York}\n",
        )
    )
    world.empty_the_sheet()
    saturday = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)
    queued = world.cycle(saturday)
    assert [n.event for n in queued.notices] == ["opened"]
    assert (queued.delivery.sent, queued.delivery.waiting) == ([], 1)
    assert world.messages() == []
    world.cycle(datetime(2026, 11, 30, 11, 59, tzinfo=UTC))  # Monday 06:59 in New York
    assert world.messages() == []
    world.cycle(datetime(2026, 11, 30, 12, 0, tzinfo=UTC))  # 07:00 there
    assert len(world.roots(PETE)) == 1


def test_a_digest_reader_gets_one_message_a_day(world: World) -> None:
    (world.root / "dq-agent.yml").write_text(
        settings(world.root, world.slack_base, "people:\n  pete@acme.com: {digest: true}\n")
    )
    world.empty_the_sheet()
    world.cycle(datetime(2026, 11, 24, 7, 0, tzinfo=UTC))  # before 09:00: nothing yet
    assert world.messages() == []
    world.cycle(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))
    world.cycle(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))
    [digest] = world.messages()
    assert digest["text"] == "Daily digest for pete@acme.com: 1 open incident"
    assert buttons(digest) == []  # its buttons sit beside each incident
    assert "#1 us_forecast_sheet / row_count" in json.dumps(digest["blocks"])
    world.cycle(datetime(2026, 11, 25, 9, 0, tzinfo=UTC))
    assert len(world.messages()) == 2


def test_without_slack_the_cycle_still_tracks_and_reminds(world: World) -> None:
    (world.root / "dq-agent.yml").write_text(f"state_url: 'sqlite:///{world.root}/state.db'\n")
    world.empty_the_sheet()
    project = load_project(world.root, env={})
    assert connect_slack(project) is None
    with Store.open(project.state_url) as store:
        world.clock.at = TUESDAY
        first = run_cycle(project, ["us_forecast_sheet"], store, world.options())
        world.clock.at = TUESDAY + timedelta(hours=4)
        later = run_cycle(project, ["us_forecast_sheet"], store, world.options())
    assert [str(n) for n in first.notices] == [
        "incident #1 opened → pete@acme.com: us_forecast_sheet / row_count: the source is empty"
    ]
    assert [n.event for n in later.notices] == ["failed_again", "nudged"]
    assert world.messages() == []


def amount(world: World, record_id: str) -> Any:
    assert world.crm is not None
    [record] = [r for r in world.crm.state()["objects"]["Opportunity"] if r["Id"] == record_id]
    return record["Amount"]


def test_an_auto_correction_tells_the_deal_owner_who_can_undo_it(
    world: World, endpoint: InteractionsServer
) -> None:
    first = world.cycle(TUESDAY, "crm_opportunities")
    assert [(o.status, o.change.key["Id"]) for o in first.outcomes] == [("applied", SLIP)]
    assert amount(world, SLIP) == 1_000_000
    assert first.notices == []  # corrected: nothing for anyone to do
    # Told to the record's owner (OwnerId → User e-mail → Slack), not the suite's owner.
    [fyi] = world.roots(DANA)
    assert fyi["text"] == (
        f"I changed Amount on <{world.crm_url()}/lightning/r/Opportunity/{SLIP}/view|Id={SLIP}> "
        "from 10,000,000 to 1,000,000 because observed = 10 × witness "
        "Seats__c * Price_Per_Seat__c."
    )
    assert buttons(fyi) == ["Undo"]

    world.api().user(MALLORY)
    assert world.click(MALLORY, fyi, "undo") == 200
    assert [m["text"] for m in world.ephemerals()] == [
        "mallory@acme.com may not undo correction 1 of suite crm_opportunities "
        "(its owners and escalation list: cro@acme.com, dana@acme.com, sales-ops@acme.com)"
    ]
    assert amount(world, SLIP) == 1_000_000

    assert world.click(DANA, fyi, "undo") == 200
    assert amount(world, SLIP) == 10_000_000
    assert world.thread(fyi) == [f"Undone by {DANA}: Amount is 10,000,000 again."]
    [fyi] = world.roots(DANA)
    assert buttons(fyi) == []
    assert "Correction 1 · reverted" in json.dumps(fyi["blocks"], ensure_ascii=False)

    # Undone by its owner: the value she put back is what she meant. The agent neither
    # writes it again nor asks her about it.
    again = world.cycle(TUESDAY + timedelta(hours=1), "crm_opportunities")
    assert [o.status for o in again.outcomes] == ["kept"]
    assert again.outcomes[0].detail == (
        f"kept as {DANA} put it back (undo of correction 1): not a slip to them"
    )
    assert amount(world, SLIP) == 10_000_000
    assert again.notices == []
    assert world.roots(DANA) == [fyi]


LI, LI_USER = "li@acme.com", "005Dn000001AbCeIAK"
LI_SLIP = "006Dn0000049999999"  # 50 seats × $5,000 typed as $25,000,000; Li's deal


def seed_li_slip(world: World) -> None:
    """Li's deal typed ×100, and a policy that lets the agent change a value 10x at most:
    a slip only Li may have fixed."""
    settings_file = world.root / "dq-agent.yml"
    text = settings_file.read_text()
    settings_file.write_text(
        text.replace("  enabled: true\n", "  enabled: true\n  max_magnitude: 1\n")
    )
    assert world.crm is not None
    world.crm.seed(
        {
            "Opportunity": {
                "records": [
                    {
                        "Id": LI_SLIP,
                        "Name": "Globex renewal",
                        "Amount": 25_000_000,
                        "Seats__c": 50,
                        "Price_Per_Seat__c": 5_000,
                        "StageName": "Negotiation",
                        "OwnerId": LI_USER,
                    }
                ]
            }
        }
    )


def test_only_owners_of_records_still_wrong_get_the_incident_card(
    world: World, endpoint: InteractionsServer
) -> None:
    seed_li_slip(world)
    done = world.cycle(TUESDAY, "crm_opportunities")
    statuses = {o.change.key["Id"]: o.status for o in done.outcomes}
    assert statuses == {SLIP: "applied", LI_SLIP: "refused"}
    # Dana's deal is right again: she hears what the agent changed, and nothing else.
    [fyi] = world.roots(DANA)
    assert fyi["text"].startswith("I changed Amount on ")
    # Li's is still wrong: the incident is hers alone, with her deal as the evidence.
    [notice] = done.notices
    assert (notice.event, notice.owners) == ("opened", (LI,))
    [card] = world.roots(LI)
    assert buttons(card) == ["Approve fix", "I fixed it", "Snooze", "This is expected"]
    shown = json.dumps(card["blocks"])
    assert LI_SLIP in shown and SLIP not in shown


def test_this_is_expected_takes_a_volume_bucket_out_of_the_baseline(
    world: World, endpoint: InteractionsServer
) -> None:
    world.spiky_events("ana@acme.com")
    opened = world.cycle(TUESDAY, "events")
    [notice] = opened.notices
    assert (notice.event, notice.check) == ("opened", "volume_anomaly(created_at)")
    [root] = world.roots("ana@acme.com")

    assert world.click("ana@acme.com", root, "expected") == 200
    assert world.thread(root) == [
        "Expected: ana@acme.com marked this expected: the bucket of 2026-11-23 leaves the baseline"
    ]
    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        assert store.expected_buckets("events", "volume_anomaly(created_at)") == {
            datetime(2026, 11, 23, tzinfo=UTC)
        }
    # The expected bucket now passes: the incident resolves in its thread.
    world.cycle(TUESDAY + timedelta(hours=1), "events")
    assert world.incident()["status"] == "resolved"
    assert world.thread(root)[-1].startswith(":white_check_mark: Resolved")


def test_the_endpoint_answers_at_once_and_acts_after(sqlite_url: str) -> None:
    release, acted = threading.Event(), []

    def slow_act(payload: Any) -> None:
        release.wait(timeout=10)  # acting may take long: a re-check reads the source
        acted.append(payload["type"])

    with (
        Store.open(sqlite_url) as store,
        InteractionsServer(Verifier(SECRET, store), slow_act, port=0) as server,
    ):
        headers, body = signed_interaction(
            SECRET, {"type": "block_actions"}, timestamp=int(time.time())
        )
        assert post(server.base_url + ACTIONS_PATH, headers, body) == 200
        assert acted == []  # answered while the action is still waiting
        release.set()
        server.drain()
        assert acted == ["block_actions"]
        garbled = b"nothing=1"  # signed, but no payload
        garbled_headers = signed_raw(garbled)
        assert post(server.base_url + ACTIONS_PATH, garbled_headers, garbled) == 400
        assert post(server.base_url + "/elsewhere", headers, body) == 404
        with urllib.request.urlopen(server.base_url + "/healthz", timeout=10) as health:
            assert health.read() == b"ok"


def signed_raw(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": f"v0={digest.hexdigest()}",
    }


def test_the_interactions_command_serves_until_stopped(world: World) -> None:
    command = [sys.executable, "-m", "dq_agent.cli", "interactions", "--project", str(world.root)]
    with subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        try:
            line = process.stderr.readline()
            assert line.startswith("listening on http://127.0.0.1:")
            assert line.endswith("/slack/actions\n")
            url = line.split()[-1]
            forged_headers, body = signed_interaction(
                "forged", {"type": "block_actions"}, timestamp=int(time.time())
            )
            assert post(url, forged_headers, body) == 401
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()


def test_an_approved_fix_that_cannot_be_written_says_why_in_the_thread(
    world: World, endpoint: InteractionsServer
) -> None:
    world.cycle(TUESDAY - timedelta(hours=1))
    world.empty_the_sheet()
    world.cycle(TUESDAY)
    [root] = world.roots(PETE)
    with open_sheets_client(world.sheets_url) as client:  # someone starts typing new rows
        client.open_by_key("fin").worksheet("US").update([["US-North", 5, 500]], "A2")

    world.clock.at = TUESDAY + timedelta(minutes=10)
    assert world.click(PETE, root, "approve_fix") == 200
    assert world.sheets.state()["spreadsheets"]["fin"]["sheets"]["US"] == [
        HEADER,
        ["US-North", 5, 500],
    ]
    assert world.thread(root)[-1].startswith(
        "Acknowledged: correction 1 was not written (conflict): "
    )
    assert world.incident()["status"] == "acknowledged"


def test_the_chain_ends_in_a_channel_and_an_unknown_channel_is_reported(world: World) -> None:
    world.empty_the_sheet()
    channels = world.slack.seed({"channels": [{"name": "finance-data"}]})["channels"]
    # Every 4h for a day and a half: Pete twice, then the lead (when at work) twice, then
    # the channel, which has no working hours.
    for hours in range(0, 33, 4):
        world.cycle(TUESDAY + timedelta(hours=hours))
    in_channel = [m for m in world.messages() if m["channel"] == channels["finance-data"]]
    assert [m["text"] for m in in_channel] == [
        ":rotating_light: us_forecast_sheet / row_count on sheets/US: the source is empty"
    ]
    assert (world.incident()["level"], world.incident()["status"]) == (2, "notified")

    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        store.outbox_add(
            [
                {
                    "key": "incident:1:root:#no-such-channel",
                    "kind": "root",
                    "incident_id": 1,
                    "recipient": "#no-such-channel",
                    "text": "",
                }
            ],
            at=TUESDAY + timedelta(hours=33),
        )
        world.clock.at = TUESDAY + timedelta(hours=33)
        delivery = Escalation(project, store, world.api(), world.clock).deliver()
        assert delivery.failed == [
            "incident:1:root:#no-such-channel: Slack: no channel #no-such-channel"
        ]
        [failed] = [m for m in store.outbox() if m.status == "failed"]
        assert (failed.attempts, failed.error) == (1, "Slack: no channel #no-such-channel")


def test_an_undo_from_the_command_line_is_told_in_the_fyi_thread(world: World) -> None:
    world.cycle(TUESDAY, "crm_opportunities")
    [fyi] = world.roots(DANA)
    undone = CliRunner().invoke(
        main,
        ["corrections", "revert", "1", "--by", "sales-ops@acme.com", "--project", str(world.root)],
    )
    assert undone.exit_code == 0, undone.output
    assert amount(world, SLIP) == 10_000_000
    assert world.thread(fyi) == ["Undone by sales-ops@acme.com: Amount is 10,000,000 again."]
    [fyi] = world.roots(DANA)
    assert buttons(fyi) == []


def test_this_is_expected_on_a_shifted_column_takes_its_day_out_of_the_baseline(
    world: World, endpoint: InteractionsServer
) -> None:
    from tests.test_semantic import LAST, PAYMENTS, payments

    world.warehouse_suite(
        "payments",
        payments(nulls={LAST: 0.3}),
        PAYMENTS,
        "suite: payments\nowner: ana@acme.com\n"
        "source: {connector: warehouse, table: payments}\n"
        "checks:\n  - column_anomaly: {timestamp_column: paid_at, column: local_value}\n",
    )
    [notice] = world.cycle(TUESDAY, "payments").notices
    assert notice.check == "column_anomaly(local_value)"
    [root] = world.roots("ana@acme.com")

    assert world.click("ana@acme.com", root, "expected") == 200
    assert world.thread(root) == [
        "Expected: ana@acme.com marked this expected: the bucket of 2026-11-23 leaves the baseline"
    ]
    world.cycle(TUESDAY + timedelta(hours=1), "payments")
    assert world.incident()["status"] == "resolved"


# Text a record, a sheet or a model may hold that Slack would read as markup: a ping of the
# whole channel, a mention, a link under a label of the sender's choosing.
MARKUP = ("<!channel>", "<!here>", "<https://evil.example|Approve here>", "<@U123>")


def texts(message: tuple[str, list[dict[str, Any]]] | dict[str, Any]) -> list[str]:
    """The fallback text and every text field of the blocks of a message."""
    if isinstance(message, dict):
        text, blocks = message["text"], message["blocks"] or []
    else:
        text, blocks = message
    found = [text]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "text" and isinstance(item, str):
                    found.append(item)
                else:
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(blocks)
    return found


def assert_inert(message: tuple[str, list[dict[str, Any]]] | dict[str, Any]) -> None:
    for text in texts(message):
        for markup in MARKUP:
            assert markup not in text


def test_markup_in_data_and_drafts_reaches_slack_as_plain_words(world: World) -> None:
    from dq_agent.escalate import messages
    from dq_agent.store.ledger import Correction

    project = load_project(world.root, env={})
    crm = world.crm_url()
    evidence = {
        "message": "<!channel> Amount slipped",
        "observed": {"note": "<!here>", "row_count": 12},
        "findings": [
            {
                "key": {"Id": "<https://evil.example|Approve here>"},
                "column": "Amount",
                "observed": "<@U123>",
                "proposed": 1_000_000,
                "reason": "<!channel> approve now",
            }
        ],
        "triage": {"kind": "data", "reason": "", "action": "correct clear slips"},
        "draft": "<!channel> <@U123> approve at <https://evil.example|Approve here> & go",
        "also": ["<!here>"],
    }
    incident = {
        "id": 4,
        "suite": "crm_opportunities",
        "check": "fat_finger(Amount)",
        "dataset": "crm/Opportunity",
        "summary": "<!channel> Amount slipped for <@U123>",
        "status": "notified",
        "failures": 2,
        "chain": [[DANA, "<!here>"], ["cro@acme.com"]],
        "level": 1,
        "owners": [DANA, "<@U123>"],
        "opened_at": "2026-11-24T08:00:00",
        "snoozed_until": None,
        "evidence": evidence,
    }
    correction = Correction(
        id=9,
        suite="crm_opportunities",
        check="fat_finger(Amount)",
        source="crm",
        key={"Id": SLIP, "Name": "<!channel>"},
        column="Amount",
        old="<!here>",
        new="<@U123>",
        evidence=(),
        decided_by="rule",
        status="applied",
        created_at=TUESDAY,
        applied_at=TUESDAY,
        reverted_at=None,
        detail="",
        events=(),
    )

    card = messages.card(project, incident, [correction], similar="Last time <!here> fixed it.")
    fyi = messages.fyi(project, correction, "<https://evil.example|Approve here>")
    digest = messages.digest("<!here>", [incident], TUESDAY)
    for message in (card, fyi, digest):
        assert_inert(message)

    text, blocks = card
    assert (
        text
        == ":rotating_light: crm_opportunities / fat_finger(Amount) on crm/Opportunity: "
        + ("&lt;!channel&gt; Amount slipped for &lt;@U123&gt;")
    )
    [draft] = [b["text"] for b in blocks if "In short" in b.get("text", {}).get("text", "")]
    assert draft == {
        "type": "mrkdwn",
        "text": "*In short*\n&lt;!channel&gt; &lt;@U123&gt; approve at "
        "&lt;https://evil.example|Approve here&gt; &amp; go",
        "verbatim": True,  # nor does Slack link a bare URL or #channel in it
    }
    # The agent's own link to the record stays a link; the record's Id cannot break out of it.
    [shown] = [
        b["text"]["text"] for b in blocks if "*Evidence*" in b.get("text", {}).get("text", "")
    ]
    assert (
        f"<{crm}/lightning/r/Opportunity/%3Chttps%3A%2F%2Fevil.example%7CApprove%20here%3E/view"
        "|Id=&lt;https://evil.example|Approve here&gt;> Amount = &lt;@U123&gt; "
        "(should be 1,000,000): &lt;!channel&gt; approve now"
    ) in shown
    assert fyi[0] == (
        f"I changed Amount on <{crm}/lightning/r/Opportunity/{SLIP}/view|Id={SLIP}, "
        "Name=&lt;!channel&gt;> from &lt;!here&gt; to &lt;@U123&gt; because "
        "&lt;https://evil.example|Approve here&gt;."
    )

    # A thread reply: the agent's mention of the owner it chose stays a mention.
    reply = messages.reply(
        incident, "nudged", "reminder 1: still failing (<!channel>)", ["<@U0DANA>"]
    )
    assert reply == (
        "<@U0DANA> reminder 1: still failing (&lt;!channel&gt;). "
        "Buttons above: I fixed it, Snooze, This is expected."
    )
    reopened = messages.reply(incident, "reopened", "", ["<@U0DANA>"])
    assert reopened == (
        "<@U0DANA> failing again after it was resolved: "
        "&lt;!channel&gt; Amount slipped for &lt;@U123&gt;"
    )


def test_a_sheet_value_that_pings_the_channel_is_posted_escaped(world: World) -> None:
    with open_sheets_client(world.sheets_url) as client:
        client.open_by_key("fin").worksheet("US").update([["<!channel>", 5, 500]], "A4")
    (world.root / "checks" / "regions.yml").write_text(
        "suite: us_regions\nowner: pete@acme.com\n"
        "source: {connector: sheets, spreadsheet: fin, worksheet: US}\n"
        "checks:\n  - accepted_values: {column: region, values: [US-East, US-West]}\n"
    )
    world.cycle(TUESDAY, "us_regions")

    [root] = world.roots(PETE)
    assert_inert(root)
    assert root["text"] == (
        ":rotating_light: us_regions / accepted_values(region) on sheets/US: "
        "1 of 3 region values is not accepted: &lt;!channel&gt; (1)"
    )
    assert "&lt;!channel&gt;" in json.dumps(root["blocks"])


def test_after_an_escalation_reminders_go_to_the_people_they_remind(world: World) -> None:
    world.empty_the_sheet()
    for hours in (0, 4, 8, 12):  # told, reminded twice, then the lead is told
        world.cycle(TUESDAY + timedelta(hours=hours))
    [root] = world.roots(PETE)
    [lead_root] = world.roots(LEAD)
    world.cycle(TUESDAY + timedelta(hours=23))  # the lead's first reminder, next morning
    lead = world.user_id(LEAD)
    assert world.thread(lead_root) == [
        f"<@{lead}> reminder 1: still failing (the source is empty). "
        "Buttons above: I fixed it, Snooze, This is expected."
    ]
    assert len(world.thread(root)) == 2  # Pete's two reminders, nothing since


def test_once_a_channel_is_told_the_incident_lives_in_its_thread(world: World) -> None:
    world.empty_the_sheet()
    channels = world.slack.seed({"channels": [{"name": "finance-data"}]})["channels"]
    for hours in range(0, 33, 4):  # Pete, then the lead, then #finance-data
        world.cycle(TUESDAY + timedelta(hours=hours))
    world.restore_the_sheet()
    world.cycle(TUESDAY + timedelta(hours=34))
    closing = ":white_check_mark: Resolved: the check passes again. Closing incident #1."
    [in_channel] = [
        m
        for m in world.messages()
        if m["channel"] == channels["finance-data"] and m["thread_ts"] is None
    ]
    assert world.thread(in_channel) == [closing]
    for person in (PETE, LEAD):  # their first messages say it is resolved; no reply
        [root] = world.roots(person)
        assert closing not in world.thread(root)
        assert root["text"].startswith(":white_check_mark: ")
