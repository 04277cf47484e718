"""Benchmark: the agent's own cost of telling people, per incident, against a raw Slack post.

Opens N incidents in a fresh SQLite state store and times, side by side in one process:

1. **raw**: one ``chat.postMessage`` per incident with the bare slack-sdk ``WebClient`` (the
   floor: what any notifier pays for the HTTP round trip to Slack, here a loopback emulator);
2. **first messages**: ``Escalation.announce`` + ``deliver`` for the N openings (outbox rows
   written before sending, Block Kit cards rendered, DMs opened, sent, marked sent);
3. **repeats**: a failing run for every incident (the card is updated, nothing new is posted);
4. **reminders**: a cadence tick 4h later (one threaded reminder each).

It prints milliseconds per incident for each and the ratio of the first messages to the raw
post. SPEC §7 asks for "milliseconds per incident"; nothing here is asserted.

Usage: ``.venv/bin/python benchmarks/escalation.py [--incidents N] [--owners N]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(ROOT))

from slack_sdk import WebClient  # noqa: E402

from dq_agent.config import load_project  # noqa: E402
from dq_agent.escalate.incidents import Notice  # noqa: E402
from dq_agent.escalate.notify import Escalation  # noqa: E402
from dq_agent.escalate.slack import SlackApi  # noqa: E402
from dq_agent.store import Store  # noqa: E402
from dq_agent_sandbox.http import LoopbackServer  # noqa: E402
from dq_agent_sandbox.slack import SlackEmulator  # noqa: E402

TOKEN, SECRET = "xoxb-bench", "bench-secret"
START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def project_dir(root: Path, slack_url: str) -> Path:
    (root / "connectors").mkdir(parents=True)
    (root / "checks").mkdir()
    (root / "connectors" / "warehouse.yml").write_text(
        f"type: sql\nurl: 'sqlite:///{root}/w.db'\n", encoding="utf-8"
    )
    (root / "checks" / "orders.yml").write_text(
        "suite: orders\nowner: owner0@acme.com\n"
        "source: {connector: warehouse, table: orders}\nchecks: [row_count]\n",
        encoding="utf-8",
    )
    (root / "dq-agent.yml").write_text(
        f"state_url: 'sqlite:///{root}/state.db'\n"
        f"slack: {{token: {TOKEN}, signing_secret: {SECRET}, base_url: '{slack_url}/api/'}}\n"
        "nudges: {working_hours: {start: '00:00', end: '24:00', "
        "days: [mon, tue, wed, thu, fri, sat, sun]}}\n",
        encoding="utf-8",
    )
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--incidents", type=int, default=200)
    parser.add_argument("--owners", type=int, default=20)
    args = parser.parse_args()
    n = args.incidents

    with (
        tempfile.TemporaryDirectory(prefix="dq-bench-") as tmp,
        LoopbackServer(SlackEmulator(token=TOKEN, signing_secret=SECRET)) as server,
    ):
        project = load_project(project_dir(Path(tmp), server.base_url), env={})
        assert project.settings.slack is not None
        emails = [f"owner{i % args.owners}@acme.com" for i in range(n)]

        raw = WebClient(token=TOKEN, base_url=server.base_url + "/api/")
        channels = {
            e: raw.conversations_open(users=[raw.users_lookupByEmail(email=e)["user"]["id"]])[
                "channel"
            ]["id"]
            for e in set(emails)
        }  # noqa: E501
        started = time.perf_counter()
        for i, email in enumerate(emails):
            raw.chat_postMessage(channel=channels[email], text=f"orders / check{i}: failed")
        raw_s = time.perf_counter() - started

        clock = [START]
        with Store.open(project.state_url) as store:
            escalation = Escalation(
                project, store, SlackApi(project.settings.slack), lambda: clock[0]
            )

            def fail_all(event_started: float) -> tuple[list[Notice], float]:
                notices = []
                for i, email in enumerate(emails):
                    change = store.record_problem(
                        suite="orders",
                        check=f"check{i}",
                        dataset="warehouse/orders",
                        owners=[email],
                        summary="the source is empty",
                        at=clock[0],
                        check_type="row_count",
                        evidence={"message": "the source is empty", "observed": {"row_count": 0}},
                    )
                    notices.append(
                        Notice(
                            change.incident_id,
                            change.event,
                            "orders",
                            f"check{i}",
                            (email,),
                            "the source is empty",
                            change.event_id,
                        )
                    )
                escalation.announce(notices)
                delivery = escalation.deliver()
                assert not delivery.failed, delivery.failed
                return notices, time.perf_counter() - event_started

            _, first_s = fail_all(time.perf_counter())
            clock[0] = START + timedelta(hours=1)
            _, repeat_s = fail_all(time.perf_counter())
            clock[0] = START + timedelta(hours=4)
            started = time.perf_counter()
            reminders = escalation.cadence()
            escalation.announce(reminders)
            escalation.deliver()
            remind_s = time.perf_counter() - started
            assert len(reminders) == n

    posted = sum(1 for m in server.emulator.state()["messages"])
    print(f"{n} incidents for {args.owners} owners, SQLite state store, Slack emulator on loopback")
    print(f"  raw chat.postMessage        {raw_s / n * 1000:7.2f} ms per incident")
    print(
        f"  first messages (outbox)     {first_s / n * 1000:7.2f} ms per incident "
        f"({first_s / raw_s:.2f}× the raw post)"
    )
    print(f"  a failing run (card update) {repeat_s / n * 1000:7.2f} ms per incident")
    print(f"  a reminder in the thread    {remind_s / n * 1000:7.2f} ms per incident")
    print(f"  messages posted: {posted} (raw {n} + first {n} + reminders {n})")


if __name__ == "__main__":
    main()
