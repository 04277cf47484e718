"""What must hold at the edges: two agents at once, double clicks, clicks on the wrong page.

Each test replays an attack or an accident and checks the sources, the ledger and what the
Slack emulator received: one write, one card, one FYI, only by someone allowed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dq_agent.config import load_project
from dq_agent.store import Store
from dq_agent_sandbox.gsheets import SheetsEmulator
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed
from dq_agent_sandbox.salesforce import SalesforceEmulator
from dq_agent_sandbox.slack import SlackEmulator
from dq_agent_sandbox.warehouse import OWNERS
from tests.helpers import make_project
from tests.test_escalation import CRM_SUITE, SLIP
from tests.test_remedy import SHEET_SUITE

TOKEN, SECRET = "xoxb-test", "test-signing-secret"
NOW = datetime.now(UTC)
PETE = "pete@acme.com"

SETTINGS = """
state_url: '{state_url}'
corrections:
  enabled: true
  allow:
    - {{connector: crm, object: Opportunity, fields: [Amount]}}
slack:
  token: {token}
  signing_secret: {secret}
  base_url: {slack}/api/
nudges:
  working_hours: {{start: "06:00", end: "18:00", days: [mon, tue, wed, thu, fri, sat, sun]}}
people:
{people}
"""


def midday_everywhere() -> str:
    """`dq-agent run` reads the real clock: everyone it tells lives where it is about noon."""
    offset = 12 - NOW.hour  # hours east of UTC, -11 … +12
    zone = f"Etc/GMT{-offset:+d}" if offset else "Etc/UTC"
    return "\n".join(f"  {p}: {{timezone: {zone}}}" for p in (PETE, *OWNERS.values()))


# `dq-agent run` with its Salesforce reads slowed down, so that two of them overlap.
SLOW_RUN = """
import sys, time
from dq_agent.cli import main
from dq_agent.sources.salesforce import SalesforceSource

real = SalesforceSource.open
project, pause = sys.argv[1], float(sys.argv[2])

def slow_open(self):
    relation = real(self)
    time.sleep(pause)
    return relation

SalesforceSource.open = slow_open
sys.argv = ["dq-agent", "run", "--project", project]
main()
"""


@dataclass
class World:
    root: Path
    state_url: str
    slack: SlackEmulator
    crm: SalesforceEmulator

    def messages(self) -> list[dict[str, Any]]:
        return [m for m in self.slack.state()["messages"] if "ephemeral_for" not in m]

    def user_id(self, email: str) -> str:
        [user] = [u for u in self.slack.state()["users"] if u["email"] == email]
        return str(user["id"])

    def roots_to(self, email: str) -> list[str]:
        user = self.user_id(email)
        dms = {c["id"] for c in self.slack.state()["channels"] if c.get("user") == user}
        return [m["text"] for m in self.messages() if m["channel"] in dms and not m["thread_ts"]]

    def keys(self) -> list[str]:
        """The idempotency key of every message posted."""
        return [m["metadata"]["event_payload"]["key"] for m in self.messages()]

    def record(self, record_id: str) -> dict[str, Any]:
        records = self.crm.state()["objects"]["Opportunity"]
        [record] = [r for r in records if r["Id"] == record_id]
        return dict(record)

    def amount(self, record_id: str) -> Any:
        return self.record(record_id)["Amount"]


def world_on(tmp_path: Path, state_url: str) -> Iterator[World]:
    sheets = SheetsEmulator()
    sheets.seed({"finance": {"key": "fin", "sheets": {"US": [["region", "units", "amount"]]}}})
    slack = SlackEmulator(token=TOKEN, signing_secret=SECRET)
    crm = SalesforceEmulator()
    crm.seed(demo_seed(NOW)["salesforce"]["objects"])
    with (
        LoopbackServer(sheets) as sheets_server,
        LoopbackServer(slack) as slack_server,
        LoopbackServer(crm) as crm_server,
    ):
        root = make_project(
            tmp_path / "project",
            connectors={
                "sheets": f"type: gsheets\nbase_url: {sheets_server.base_url}\n",
                "crm": f"type: salesforce\ninstance_url: {crm_server.base_url}\n"
                "session_id: sandbox\n",
            },
            suites={"sheet": SHEET_SUITE, "crm": CRM_SUITE},
            settings=SETTINGS.format(
                state_url=state_url,
                token=TOKEN,
                secret=SECRET,
                slack=slack_server.base_url,
                people=midday_everywhere(),
            ),
        )
        yield World(root, state_url, slack, crm)


@pytest.fixture
def sqlite_world(tmp_path: Path) -> Iterator[World]:
    yield from world_on(tmp_path, f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    yield from world_on(tmp_path, url)


def test_two_runs_at_once_write_once_and_tell_each_person_once(world: World) -> None:
    script = world.root.parent / "slow_run.py"
    script.write_text(textwrap.dedent(SLOW_RUN))
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), str(world.root), "1.0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    finished = [run.communicate(timeout=180) for run in runs]
    for run, (_out, err) in zip(runs, finished, strict=True):
        assert run.returncode == 2, err  # the sheet is empty: a check failed
        assert "Traceback" not in err

    assert world.amount(SLIP) == 1_000_000
    project = load_project(world.root, env={})
    with Store.open(project.state_url) as store:
        corrections = store.corrections()
        assert [(c.id, c.status) for c in corrections] == [(1, "applied")]
        assert [e.event for e in corrections[0].events] == ["intent", "applied"]
        assert store.verify_ledger() == []
        assert [i["status"] for i in store.incidents()] == ["notified"]
    # One card to Pete about his sheet, one FYI to the deal's owner: nothing twice.
    owner = OWNERS[world.record(SLIP)["OwnerId"]]
    assert sorted(world.keys()) == [f"correction:1:fyi:{owner}", f"incident:1:root:{PETE}"]
    assert world.roots_to(PETE) == [
        ":rotating_light: us_forecast_sheet / row_count on sheets/US: the source is empty"
    ]
    [fyi] = world.roots_to(owner)
    assert fyi.startswith("I changed Amount on ")


def test_the_acting_lock_makes_a_second_holder_wait(tmp_path: Path) -> None:
    from dq_agent.errors import StoreError
    from dq_agent.store.locks import acting

    url = f"sqlite:///{tmp_path / 'state.db'}"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom dq_agent.store.locks import acting\n"
            f"with acting({url!r}):\n    print('held', flush=True)\n    sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with (
            pytest.raises(StoreError, match="another dq-agent process kept acting"),
            acting(url, wait_s=0.3),
        ):
            pass
    finally:
        holder.communicate("\n", timeout=30)
    with acting(url, wait_s=0.3), acting(url, wait_s=0.3):  # free again, and nests
        pass


def test_on_postgresql_each_suite_has_its_own_acting_lock(postgres_url: str) -> None:
    from dq_agent.store import locks
    from dq_agent.store.locks import ActingBusy, acting

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom dq_agent.store.locks import acting\n"
            f"with acting({postgres_url!r}, ['orders']):\n"
            "    print('held', flush=True)\n    sys.stdin.readline()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    admin = sa.create_engine(postgres_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(ActingBusy), acting(postgres_url, ["orders"], wait_s=0.3):
            pass
        # Another replica's cycle of another suite, and the follow-up, go on meanwhile.
        with acting(postgres_url, ["customers"], wait_s=0.3), acting(postgres_url, wait_s=0.3):
            pass
        # Several suites are taken together or not at all: nothing is left held.
        with pytest.raises(ActingBusy), acting(postgres_url, ["customers", "orders"], wait_s=0.3):
            pass
        with admin.connect() as conn:  # another process takes customers' lock at once
            key = locks._key(postgres_url, "customers")
            take = sa.text("SELECT pg_try_advisory_lock(:key)")
            assert conn.execute(take, {"key": key}).scalar_one()
            conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        holder.communicate("\n", timeout=30)
        admin.dispose()
    with acting(postgres_url, ["orders", "customers"]), acting(postgres_url, ["orders"]):
        pass  # free again, and a suite's lock nests in a cycle's


def test_an_owner_of_one_suite_cannot_approve_another_suites_fix(sqlite_world: World) -> None:
    from dq_agent.agent import run_cycle
    from dq_agent.engine import RunOptions
    from dq_agent.errors import DqAgentError
    from dq_agent.escalate import messages
    from dq_agent.escalate.actions import REJECT, Actions

    world = sqlite_world
    crm = world.root / "checks" / "crm.yml"
    crm.write_text(CRM_SUITE.replace("auto_correct: true", "auto_correct: false"))
    project = load_project(world.root, env={})
    options = RunOptions(clock=lambda: NOW)
    with Store.open(project.state_url) as store:
        run_cycle(project, ["us_forecast_sheet", "crm_opportunities"], store, options)
        sheet = next(i for i in store.incidents() if i["suite"] == "us_forecast_sheet")
        [proposal] = store.corrections(suite="crm_opportunities", status="pending")
        actions = Actions(project, store, None, options)
        # Pete owns the sheet's incident; the form names the CRM suite's proposal.
        forged = {"incident": sheet["id"], "correction": proposal.id}
        for action in (messages.APPROVE, REJECT):
            with pytest.raises(DqAgentError) as refused:
                actions.act(action, forged, PETE)
            assert str(refused.value) in (
                f"correction {proposal.id} is not a pending fix of incident #{sheet['id']}",
                f"pete@acme.com may not decide correction {proposal.id} of suite "
                "crm_opportunities (its owners and escalation list: cro@acme.com, "
                "sales-ops@acme.com)",
            )
        assert store.correction(proposal.id).status == "pending"  # type: ignore[union-attr]
    assert world.amount(SLIP) == 10_000_000


def test_a_connection_dropped_after_slack_took_the_card_does_not_post_it_twice(
    sqlite_world: World,
) -> None:
    from datetime import timedelta

    from dq_agent.agent import connect_slack, run_cycle
    from dq_agent.engine import RunOptions

    world = sqlite_world
    project = load_project(world.root, env={})
    at = [NOW]
    options = RunOptions(clock=lambda: at[0])
    world.slack.drop_after("chat.postMessage")  # Slack posts the card, the answer is lost
    with Store.open(project.state_url) as store:
        run_cycle(project, ["us_forecast_sheet"], store, options, slack=connect_slack(project))
        assert world.slack.requests_for("chat.postMessage") == 1  # not re-posted in the call
        [card] = [m for m in store.outbox() if m.kind == "root"]
        assert card.status == "pending" and card.attempted_at is not None
        at[0] = NOW + timedelta(minutes=2)  # the outbox's next round
        run_cycle(project, ["us_forecast_sheet"], store, options, slack=connect_slack(project))
        [card] = [m for m in store.outbox() if m.kind == "root"]
        assert card.status == "sent"  # found by its key in the DM, not posted again
    assert world.slack.requests_for("chat.postMessage") == 1
    assert world.keys() == [f"incident:1:root:{PETE}"]


def test_through_the_broker_a_post_whose_answer_was_lost_is_found_not_posted_twice(
    sqlite_world: World, tmp_path: Path
) -> None:
    """The broker holds the bot token: Slack posts the card but the broker's connection drops
    before its answer. The agent's outbox asks again next round, through the broker, finds
    the card by its key, and posts nothing twice."""
    import tempfile
    from datetime import timedelta

    from dq_agent.agent import connect_slack, run_cycle
    from dq_agent.broker.server import Broker, BrokerServer
    from dq_agent.engine import RunOptions

    world = sqlite_world
    sockets = Path(tempfile.mkdtemp(prefix="dqb-"))  # a socket's path must be short
    socket = f"unix:{sockets / 'broker.sock'}"
    settings = world.root / "dq-agent.yml"
    settings.write_text(
        settings.read_text() + f"broker:\n  url: {socket}\n  token: ${{DQ_BROKER_TOKEN}}\n"
    )
    at = [NOW]
    broker = Broker(world.root, tmp_path / "home", env={}, clock=lambda: at[0])
    with BrokerServer(broker, socket):
        _, token = broker.tokens.create(
            suites=["*"], actions=["correct", "notify"], ttl=timedelta(days=1), now=NOW
        )
        project = load_project(world.root, env={"DQ_BROKER_TOKEN": token})
        assert project.issues == () and project.sealed
        options = RunOptions(clock=lambda: at[0])
        world.slack.drop_after("chat.postMessage")  # Slack posts the card, the answer is lost
        with Store.open(project.state_url) as store:
            run_cycle(project, ["us_forecast_sheet"], store, options, slack=connect_slack(project))
            assert world.slack.requests_for("chat.postMessage") == 1
            [card] = [m for m in store.outbox() if m.kind == "root"]
            assert card.status == "pending" and card.attempted_at is not None
            at[0] = NOW + timedelta(minutes=2)  # the outbox's next round
            run_cycle(project, ["us_forecast_sheet"], store, options, slack=connect_slack(project))
            [card] = [m for m in store.outbox() if m.kind == "root"]
            assert card.status == "sent"  # found by its key in the DM, not posted again
    broker.close()
    sockets.rmdir()
    assert world.slack.requests_for("chat.postMessage") == 1
    assert world.keys() == [f"incident:1:root:{PETE}"]
    notified = [e for e in broker.audit.entries() if e["operation"] == "notify"]
    # The one post, whose answer the broker never had; none after it.
    [failed] = [e for e in notified if e["outcome"] == "error"]
    assert "chat.postMessage" in failed["detail"]
    assert not [e for e in notified if e["outcome"] == "ok" and e["detail"] == "post"]
    assert broker.audit.verify().ok


def test_an_outbox_message_is_sent_by_one_sender_until_its_claim_lapses(tmp_path: Path) -> None:
    from datetime import timedelta

    from dq_agent.escalate.notify import CLAIM_LEASE

    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.outbox_add([{"key": "k", "kind": "root", "recipient": PETE, "text": "hello"}], at=NOW)
        [message] = store.outbox()
        mine = store.outbox_claim(message.id, by="a", at=NOW, lease=CLAIM_LEASE)
        assert mine is not None and mine.claimed_by == "a"
        assert store.outbox_claim(message.id, by="b", at=NOW, lease=CLAIM_LEASE) is None
        later = NOW + CLAIM_LEASE + timedelta(seconds=1)  # "a" died while sending
        taken = store.outbox_claim(message.id, by="b", at=later, lease=CLAIM_LEASE)
        assert taken is not None and taken.claimed_by == "b"
        store.outbox_update(message.id, status="sent")
        sent_long_ago = later + 2 * CLAIM_LEASE
        assert store.outbox_claim(message.id, by="c", at=sent_long_ago, lease=CLAIM_LEASE) is None
