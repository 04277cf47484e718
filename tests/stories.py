"""Incident stories played end to end from outside, each scored as a team would judge it.

Each story drives the agent the way it lives: agent cycles on a clock the story sets, people
editing the emulated CRM and sheets, people pressing Slack buttons (signed requests to the
interactions endpoint). Its score says whether every incident closed without a person where
none was needed, how many times people had to act against the least the story allows, how
many Slack messages each incident cost, and every wrong action: a write to a record that
should not change, a message to someone with no part in it, an "I changed" for a change the
agent did not make. ``tests/test_stories.py`` holds the targets; ``benchmarks/stories.py``
prints the table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dq_agent.config import load_project
from dq_agent.store import Store
from tests.sf_client import salesforce_client
from tests.sources import load_orders, order_rows
from tests.test_escalation import (
    DANA,
    LEAD,
    LI,
    LI_SLIP,
    PETE,
    SLIP,
    TUESDAY,
    World,
    make_world,
    seed_li_slip,
    serving,
)

CRM = "crm_opportunities"


@dataclass
class Score:
    story: str
    incidents: int
    # Every incident closed, and none needed a person (None: the story needs one by design).
    closed_alone: bool | None
    touches: int
    least_touches: int
    messages: int
    wrong: list[str] = field(default_factory=list)

    @property
    def per_incident(self) -> float:
        return self.messages / self.incidents if self.incidents else float(self.messages)


@dataclass
class Play:
    """What a story sees and does: the world, and the people's touches counted."""

    world: World
    touches: int = 0

    def cycle(self, hours: float, suite: str = CRM) -> Any:
        return self.world.cycle(TUESDAY + timedelta(hours=hours), suite)

    def click(self, email: str, message: dict[str, Any], action: str) -> None:
        self.touches += 1
        assert self.world.click(email, message, action) == 200

    def edit(self, change: Callable[[], None]) -> None:
        """A person fixes something in the source by hand."""
        self.touches += 1
        change()

    def store(self) -> Store:
        return Store.open(load_project(self.world.root, env={}).state_url)


def set_amount(world: World, record_id: str, amount: float) -> None:
    client = salesforce_client(world.crm_url())
    try:
        client.Opportunity.update(record_id, {"Amount": amount})
    finally:
        client.session.close()


def recipients(world: World) -> list[str]:
    """Who each message (not ephemeral) went to: an e-mail for a DM, else ``#channel``."""
    state = world.slack.state()
    emails = {u["id"]: u["email"] for u in state["users"]}
    channels = {c["id"]: c for c in state["channels"]}
    told = []
    for message in world.messages():
        channel = channels.get(message["channel"], {})
        user = channel.get("user")
        told.append(emails.get(user, "?") if user else f"#{channel.get('name')}")
    return told


def written(world: World) -> set[str]:
    """The records the agent changed (and did not undo)."""
    with Play(world).store() as store:
        return {
            str(c.key.get("Id") or c.suite) for c in store.corrections() if c.status == "applied"
        }


def judge(
    name: str,
    play: Play,
    *,
    least: int,
    people: set[str],
    writes: set[str] = frozenset(),  # type: ignore[assignment]
    alone: bool | None,
) -> Score:
    world = play.world
    wrong = [f"wrote {r}" for r in sorted(written(world) - writes)]
    wrong += [f"did not write {r}" for r in sorted(writes - written(world))]
    wrong += [f"told {who}" for who in sorted(set(recipients(world)) - people)]
    with play.store() as store:
        incidents = store.incidents()
        applied = {c.id for c in store.corrections() if c.applied_at is not None}
        claims = [
            m.correction_id
            for m in store.outbox()
            if m.kind == "fyi" and m.correction_id not in applied
        ]
    wrong += [f"claimed correction {c}" for c in claims]
    open_ones = [i["id"] for i in incidents if i["status"] != "resolved"]
    wrong += [f"incident #{i} left open" for i in open_ones]
    closed_alone = None if alone is None else (alone and not open_ones and play.touches == 0)
    return Score(
        name, len(incidents), closed_alone, play.touches, least, len(recipients(world)), wrong
    )


# -- the stories ---------------------------------------------------------------------------------


def clear_slip(play: Play) -> Score:
    """Dana's deal typed ×10: the agent corrects it and tells Dana, with Undo."""
    play.cycle(0)
    play.cycle(1)  # nothing more to say
    return judge("clear slip", play, least=0, people={DANA}, writes={SLIP}, alone=True)


def whale(play: Play) -> Score:
    """A genuine $10m deal (seats × price agree) is never touched; nobody hears of it."""
    set_amount(play.world, SLIP, 1_000_000)  # the slip is not there: only the whale is
    play.cycle(0)
    return judge("whale", play, least=0, people=set(), alone=True)


def ambiguous_slip_approved(play: Play) -> Score:
    """Li's deal ×100 is past what the agent may change alone: Li approves the fix."""
    seed_li_slip(play.world)
    play.cycle(0)
    [card] = play.world.roots(LI)
    play.click(LI, card, "approve_fix")
    play.cycle(1)
    return judge(
        "ambiguous slip approved",
        play,
        least=1,
        people={DANA, LI},
        writes={SLIP, LI_SLIP},
        alone=None,
    )


def sheet_restored_by_owner(play: Play) -> Score:
    """Pete pasted over the forecast tab; he restores it himself."""
    play.cycle(-1, "us_forecast_sheet")  # a good read first
    play.world.empty_the_sheet()
    play.cycle(0, "us_forecast_sheet")
    play.edit(play.world.restore_the_sheet)
    play.cycle(1, "us_forecast_sheet")
    return judge("emptied sheet, owner restores", play, least=1, people={PETE}, alone=None)


def sheet_restored_by_agent(play: Play) -> Score:
    """Pete pasted over the forecast tab; he approves the agent's restore of the last copy."""
    play.cycle(-1, "us_forecast_sheet")
    play.world.empty_the_sheet()
    play.cycle(0, "us_forecast_sheet")
    [card] = play.world.roots(PETE)
    play.click(PETE, card, "approve_fix")
    play.cycle(1, "us_forecast_sheet")
    return judge(
        "emptied sheet, agent restores",
        play,
        least=1,
        people={PETE},
        writes={"us_forecast_sheet"},
        alone=None,
    )


def stale_table_recovers(play: Play) -> Score:
    """The orders feed is late; its pipeline catches up by itself."""
    url = _orders(play.world, newest_hours=-30)
    play.cycle(0, "orders")
    load_orders(url, order_rows(3, newest=TUESDAY + timedelta(hours=1)))  # the feed lands
    play.cycle(2, "orders")
    return judge("stale table recovers", play, least=0, people={PETE}, alone=True)


def brief_outage(play: Play) -> Score:
    """The warehouse refuses connections for ten minutes, then answers."""
    url = _orders(play.world, newest_hours=0)
    connector = play.world.root / "connectors" / "warehouse.yml"
    connector.write_text("type: sql\nurl: 'postgresql+psycopg://postgres@127.0.0.1:1/test'\n")
    play.cycle(0, "orders")
    play.cycle(0.1, "orders")
    connector.write_text(f"type: sql\nurl: '{url}'\n")
    play.cycle(0.2, "orders")
    return judge("brief outage", play, least=0, people=set(), alone=True)


def dropped_column(play: Play) -> Score:
    """Upstream drops a column the suite reads, then puts it back."""
    url = _orders(play.world, newest_hours=0, schema=True)
    play.cycle(0, "orders")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE orders DROP COLUMN status"))
    engine.dispose()
    play.cycle(1, "orders")
    play.cycle(2, "orders")
    load_orders(url, order_rows(3, newest=TUESDAY + timedelta(hours=3)))
    play.cycle(3, "orders")
    return judge("dropped column", play, least=0, people={PETE}, alone=True)


def day_marked_expected(play: Play) -> Score:
    """A launch day's spike of events: Ana marks it expected."""
    play.world.spiky_events("ana@acme.com")
    play.cycle(0, "events")
    [card] = play.world.roots("ana@acme.com")
    play.click("ana@acme.com", card, "expected")
    play.cycle(1, "events")
    return judge("a day marked expected", play, least=1, people={"ana@acme.com"}, alone=None)


def owners_undo(play: Play) -> Score:
    """Dana undoes the agent's correction: the big number was right after all."""
    play.cycle(0)
    [fyi] = play.world.roots(DANA)
    play.click(DANA, fyi, "undo")
    play.cycle(1)
    play.cycle(2)
    return judge("owner's undo", play, least=1, people={DANA}, alone=None)


def changed_between_read_and_write(play: Play) -> Score:
    """Dana types the right amount herself between the agent's read and its write."""
    from dq_agent.sources.salesforce import SalesforceSource

    real = SalesforceSource.write

    def person_first(self: Any, key: Any, column: str, old: Any, new: Any) -> Any:
        play.edit(lambda: set_amount(play.world, key["Id"], new))
        return real(self, key, column, old, new)

    SalesforceSource.write = person_first  # type: ignore[method-assign]
    try:
        play.cycle(0)
    finally:
        SalesforceSource.write = real  # type: ignore[method-assign]
    return judge("changed between read and write", play, least=1, people=set(), alone=None)


def overlapping_runs(play: Play) -> Score:
    """Two runs of the CRM suite at the same moment (a cron run and a manual one)."""
    threads = [threading.Thread(target=play.cycle, args=(0,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return judge("overlapping runs", play, least=0, people={DANA}, writes={SLIP}, alone=True)


def currency_mix(play: Play) -> Score:
    """Yen arrive in the payments under the same column as dollars: never a slip to correct;
    finance converts them at the source."""
    from tests.test_semantic import LAST, PAYMENTS, SHIFT, YEN_PER_DOLLAR, payments

    world = play.world
    suite = (
        "suite: payments\nowner: finance-data@acme.com\n"
        f"source: {{connector: warehouse, table: payments}}\nchecks:\n  - {SHIFT}\n"
    )
    world.warehouse_suite("payments", payments(yen={LAST: 0.12}), PAYMENTS, suite)
    play.cycle(0, "payments")

    def convert() -> None:
        engine = sa.create_engine(f"sqlite:///{world.root / 'payments.db'}")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE payments SET local_value = local_value / :rate, currency = 'USD' "
                    "WHERE currency = 'JPY'"
                ),
                {"rate": YEN_PER_DOLLAR},
            )
        engine.dispose()

    play.edit(convert)
    play.cycle(1, "payments")
    return judge("currency mix", play, least=1, people={"finance-data@acme.com"}, alone=None)


def failing_restart(play: Play) -> Score:
    """The orders table comes back, but its downstream pipeline fails on restart: the lead
    mends the pipeline and says so; the agent restarts it and closes the incident."""
    import sys

    world = play.world
    url = _orders(world, newest_hours=0)
    load_orders(url, [])
    pipeline = world.root / "pipeline.py"
    pipeline.write_text("import sys\nsys.exit(3)\n")  # broken until the lead mends it
    suite = (world.root / "checks" / "orders.yml").read_text()
    (world.root / "checks" / "orders.yml").write_text(
        suite.replace("owner: pete@acme.com\n", f"owner: pete@acme.com\nescalation: [{LEAD}]\n")
        + f"restart:\n  - command: {{run: ['{sys.executable}', '{pipeline}'], timeout: 1m}}\n"
    )
    play.cycle(0, "orders")
    play.edit(lambda: load_orders(url, order_rows(3, newest=TUESDAY + timedelta(hours=1))))
    play.cycle(1, "orders")  # green: the restart runs, and fails
    play.edit(lambda: pipeline.write_text("import sys\nsys.exit(0)\n"))
    [card] = [m for m in play.world.roots(LEAD)]
    play.click(LEAD, card, "recheck")
    play.cycle(2, "orders")
    return judge("failing restart", play, least=3, people={PETE, LEAD}, alone=None)


def _orders(world: World, *, newest_hours: float, schema: bool = False) -> str:
    """An orders table in a warehouse, watched by Pete for freshness (and its columns)."""
    from tests.sources import ORDERS

    suite = (
        "suite: orders\nowner: pete@acme.com\n"
        "source: {connector: warehouse, table: orders}\nchecks:\n"
        "  - freshness: {column: updated_at, max_age: 26h}\n"
        + (
            "  - schema: {columns: [id]}\n  - expect_column_values_to_not_be_null: {column: status}\n"
            if schema
            else ""
        )
    )
    rows = order_rows(3, newest=TUESDAY + timedelta(hours=newest_hours))
    world.warehouse_suite("orders", rows, ORDERS, suite)
    return f"sqlite:///{world.root / 'orders.db'}"


STORIES: list[Callable[[Play], Score]] = [
    clear_slip,
    whale,
    ambiguous_slip_approved,
    sheet_restored_by_owner,
    sheet_restored_by_agent,
    stale_table_recovers,
    brief_outage,
    dropped_column,
    day_marked_expected,
    owners_undo,
    changed_between_read_and_write,
    overlapping_runs,
    currency_mix,
    failing_restart,
]


@contextmanager
def played(folder: Path) -> Iterator[Play]:
    with make_world(folder) as world, serving(world):
        yield Play(world)


def play_all(folder: Path) -> list[Score]:
    scores = []
    for n, story in enumerate(STORIES):
        with played(folder / f"s{n}") as play:
            scores.append(story(play))
    return scores
