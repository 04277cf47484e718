"""Telling people: incident events become messages in an outbox, and the outbox goes to Slack.

A message is recorded (with the idempotency key of the event it tells about) before it is
sent, and marked sent after. A crash in between leaves it "attempted": the next delivery asks
Slack whether a message with that key is already there (the key travels as message
metadata) before sending, so nothing is lost and nothing is said twice.

Who hears about an incident walks its chain: the owners first, then the suite's escalation
list, one step per ``escalate_after`` unanswered nudges. Messages to a person wait for their
working hours; channels hear at once.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dq_agent.config.loader import Project
from dq_agent.config.models import WorkingHours
from dq_agent.escalate import messages
from dq_agent.escalate.hours import is_working, local_date, next_working
from dq_agent.escalate.incidents import Notice, RecordOwners, owners_of
from dq_agent.escalate.slack import Slack, SlackError
from dq_agent.remedy.apply import Outcome
from dq_agent.sources.gsheets import WHOLE_SHEET
from dq_agent.store import Store
from dq_agent.store.incidents import IncidentMoved
from dq_agent.store.ledger import Correction
from dq_agent.store.models import OutboxMessage

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Events that only update the incident's first message (its state line), with no reply: a
# repeat failure, and a restart's progress (its outcome is told: failed, or resolved).
_QUIET = {"failed_again", "recovered", "restarted", "restart_succeeded"}
# Events told once, in the incident's thread (its channel's, else the first person's), not in
# every person's: what someone did about it, a restart that failed (the escalation it brings
# tells the next people), and the resolution (everyone's first message shows it).
_ONCE = {
    "verifying",
    "acknowledged",
    "snoozed",
    "expected",
    "fix_applied",
    "restart_failed",
    "resolved",
}
# A transient failure waits this long before the next try, doubling up to the last.
_BACKOFF = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30))
_MAX_ATTEMPTS = 8
# How long a sender's claim on a message holds: longer than any one Slack call with its
# rate-limit waits, short enough that a dead sender's messages go out soon after.
CLAIM_LEASE = timedelta(minutes=10)
_UNCLAIMED: dict[str, Any] = {"claimed_by": None, "claimed_until": None}


def _is_channel(recipient: str) -> bool:
    return recipient.startswith("#")


@dataclass
class Delivery:
    """What one delivery round did."""

    sent: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: int = 0


def _thread(roots: Sequence[OutboxMessage]) -> list[OutboxMessage]:
    """The incident's one thread: under its message to a channel, else to the first person."""
    shared = [r for r in roots if _is_channel(r.recipient)]
    return (shared or list(roots))[:1]


class Escalation:
    """Plans messages for incident events and delivers them; Slack is optional.

    Without Slack, events are still recorded and nudges still counted; people then hear
    through the terminal and ``dq-agent incidents``.
    """

    def __init__(self, project: Project, store: Store, slack: Slack | None, clock: Clock) -> None:
        self.project = project
        self.store = store
        self.slack = slack
        self.clock = clock
        self.settings = project.settings.nudges
        # Who claims outbox messages: unique per sender, across processes and hosts.
        self._sender = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # -- who and when --------------------------------------------------------------------------

    def _person(self, email: str) -> tuple[ZoneInfo, WorkingHours, bool]:
        override = self.project.settings.people.get(email.lower())
        zone_name = override.timezone if override and override.timezone else None
        if zone_name is None and self.slack is not None:
            try:
                zone_name = self.slack.user(email).tz
            except SlackError as exc:
                log.warning("timezone of %s unknown: %s", email, exc)
        hours = override.working_hours if override and override.working_hours else None
        digest = override.digest if override and override.digest is not None else None
        try:
            zone = ZoneInfo(zone_name or self.settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):  # a name Slack knows and this host does not
            zone = ZoneInfo(self.settings.timezone)
        return (
            zone,
            hours or self.settings.working_hours,
            self.settings.digest if digest is None else digest,
        )

    def _due(self, recipient: str, now: datetime) -> datetime:
        if _is_channel(recipient):
            return now
        zone, hours, _ = self._person(recipient)
        return next_working(now, zone, hours)

    def _digest(self, recipient: str) -> bool:
        return not _is_channel(recipient) and self._person(recipient)[2]

    def _reachable(self, recipient: str, now: datetime) -> bool:
        if _is_channel(recipient):
            return True
        zone, hours, _ = self._person(recipient)
        return is_working(now, zone, hours)

    # -- planning ------------------------------------------------------------------------------

    def announce(self, notices: Sequence[Notice]) -> None:
        """Record the messages these incident events call for."""
        now = self.clock()
        for notice in notices:
            incident = self.store.incident(notice.incident_id, events=False)
            if incident is None:
                continue
            self._plan(incident, notice, now)

    def _plan(self, incident: Mapping[str, Any], notice: Notice, now: datetime) -> None:
        iid, event = incident["id"], notice.event
        roots = self._roots(iid)
        planned: list[dict[str, Any]] = []
        if event in ("opened", "reopened"):
            step = incident["chain"][0] if incident["chain"] else []
            if roots:
                planned += self._replies(incident, roots, notice, now)
            else:
                planned += self._first_messages(incident, step, now)
            # The reminder clock starts (again) now.
            self.store.nudged(
                iid,
                at=now,
                level=0,
                nudges=0,
                event="notified",
                detail=", ".join(step) or "nobody: no owner set",
            )
        elif event == "escalated":
            # One message to the next people; the others see it on the first message's state.
            level = incident["level"]
            step = incident["chain"][level] if level < len(incident["chain"]) else []
            planned += self._first_messages(incident, step, now)
        elif event in _ONCE:
            planned += self._replies(incident, _thread(roots), notice, now)
        elif event == "nudged":  # a reminder is for the people it reminds
            told = {p.lower() for p in notice.owners}
            planned += self._replies(
                incident, [r for r in roots if r.recipient.lower() in told] or roots, notice, now
            )
        elif event not in _QUIET:
            planned += self._replies(incident, roots, notice, now)
        if roots:
            planned.append(self._row(f"event:{notice.event_id}:update", "update", iid, "", ""))
        if event == "resolved":
            self._cancel_unsent_roots(iid)
        self.store.outbox_add(planned, at=now)

    def _first_messages(
        self, incident: Mapping[str, Any], step: Sequence[str], now: datetime
    ) -> list[dict[str, Any]]:
        rows = []
        for recipient in step:
            if self._digest(recipient):
                continue  # the daily digest tells them
            row = self._row(
                f"incident:{incident['id']}:root:{recipient.lower()}",
                "root",
                incident["id"],
                recipient,
                messages.headline(incident),
            )
            row["due_at"] = self._due(recipient, now)
            rows.append(row)
        return rows

    def _replies(
        self,
        incident: Mapping[str, Any],
        roots: Sequence[OutboxMessage],
        notice: Notice,
        now: datetime,
    ) -> list[dict[str, Any]]:
        mentions = [self._mention(p) for p in notice.owners]
        text = messages.reply(incident, notice.event, notice.summary, mentions)
        rows = []
        for root in roots:
            row = self._row(
                f"event:{notice.event_id}:{root.recipient.lower()}",
                "reply",
                incident["id"],
                root.recipient,
                text,
            )
            # A resolution is good news: it need not wait for working hours.
            if notice.event in ("nudged", "escalated", "reopened"):
                row["due_at"] = self._due(root.recipient, now)
            rows.append(row)
        return rows

    @staticmethod
    def _row(
        key: str, kind: str, incident_id: int | None, recipient: str, text: str
    ) -> dict[str, Any]:
        return {
            "key": key,
            "kind": kind,
            "incident_id": incident_id,
            "recipient": recipient,
            "text": text,
        }

    def _mention(self, recipient: str) -> str:
        if _is_channel(recipient) or self.slack is None:
            return recipient
        try:
            return f"<@{self.slack.user(recipient).id}>"
        except SlackError:
            return recipient

    def _roots(self, incident_id: int) -> list[OutboxMessage]:
        return self.store.outbox(incident_id=incident_id, kind="root", status=("pending", "sent"))

    def _cancel_unsent_roots(self, incident_id: int) -> None:
        for m in self.store.outbox(incident_id=incident_id, kind="root", status="pending"):
            if m.attempted_at is None:
                self.store.outbox_update(m.id, status="cancelled", error="resolved before sent")

    def corrected(self, outcomes: Sequence[Outcome], records: RecordOwners | None) -> None:
        """An FYI with Undo to the owner of each record the agent changed on its own."""
        now = self.clock()
        planned = []
        for outcome in outcomes:
            if outcome.status != "applied" or outcome.correction_id is None:
                continue
            change = outcome.change
            owner = records.of(change.suite, change.key) if records else None
            suite = self.project.suites.get(change.suite)
            if owner:
                recipients: Sequence[str] = [owner]
            else:
                recipients = owners_of(suite, change.check) if suite else ()
            for recipient in recipients:
                row = self._row(
                    f"correction:{outcome.correction_id}:fyi:{recipient.lower()}",
                    "fyi",
                    None,
                    recipient,
                    change.reason,
                )
                row["correction_id"] = outcome.correction_id
                planned.append(row)
        self.store.outbox_add(planned, at=now)

    def undone(self, correction_id: int, outcome: Outcome, by: str) -> None:
        """Tell a correction's FYI thread what became of an undo (from Slack or the CLI); an
        undo of what was already undone changed nothing and says nothing."""
        correction = self.store.correction(correction_id)
        if correction is None or outcome.status == "unchanged":
            return
        said = (
            messages.undone_text(correction, by)
            if outcome.status == "reverted"
            else f"Could not undo ({outcome.status}): {outcome.detail}"
        )
        text = messages.escape(said)
        self.correction_event(correction, outcome.status, text)

    def correction_event(self, correction: Correction, event: str, text: str) -> None:
        """A later word on a correction (undone...) in its FYI thread; its FYI is updated."""
        now = self.clock()
        planned = []
        for fyi in self.store.outbox(correction_id=correction.id):
            if fyi.kind != "fyi" or fyi.status != "sent":
                continue
            base = f"correction:{correction.id}:{event}:{fyi.recipient.lower()}"
            reply = self._row(base, "reply", None, fyi.recipient, text)
            update = self._row(f"{base}:update", "update", None, fyi.recipient, "")
            reply["correction_id"] = update["correction_id"] = correction.id
            planned += [reply, update]
        self.store.outbox_add(planned, at=now)

    # -- cadence -------------------------------------------------------------------------------

    def cadence(self) -> list[Notice]:
        """Re-nudge what is due, and walk the chain after enough unanswered nudges."""
        now = self.clock()
        notices = []
        for incident in self.store.incidents(active=True, events=False):
            notice = self._next_nudge(incident, now)
            if notice is not None:
                notices.append(notice)
        return notices

    def _next_nudge(self, incident: Mapping[str, Any], now: datetime) -> Notice | None:
        status = incident["status"]
        if status == "expected" or incident["last_nudged_at"] is None:
            return None
        if status == "snoozed":
            until = incident["snoozed_until"]
            if until is None or datetime.fromisoformat(until) > now:
                return None
        if now - datetime.fromisoformat(incident["last_nudged_at"]) < self.settings.every:
            return None
        chain, level, nudges = incident["chain"], incident["level"], incident["nudges"]
        step = chain[level] if level < len(chain) else []
        if nudges >= self.settings.escalate_after and level + 1 < len(chain):
            nxt = chain[level + 1]
            if not any(self._reachable(r, now) for r in nxt):
                return None
            detail = (
                f"no answer after {nudges} reminder{'s' if nudges != 1 else ''}: "
                f"telling {', '.join(nxt)}"
            )
            event, level_after, count = "escalated", level + 1, 0
        else:
            if not step or all(self._digest(r) for r in step):
                return None
            if not any(self._reachable(r, now) for r in step):
                return None
            event, level_after, count = "nudged", level, nudges + 1
            detail = f"reminder {count}: still failing ({incident['summary']})"
        try:
            change = self.store.nudged(
                incident["id"],
                at=now,
                level=level_after,
                nudges=count,
                event=event,
                detail=detail,
                read=incident,
            )
        except IncidentMoved:  # resolved, snoozed or reminded meanwhile: nothing due now
            return None
        told = chain[level + 1] if change.event == "escalated" else step
        return Notice(
            incident["id"],
            change.event,
            incident["suite"],
            incident["check"],
            tuple(told),
            detail,
            change.event_id,
        )

    def digests(self) -> None:
        """Each digest reader's open incidents, once a day at ``digest_at`` their time."""
        now = self.clock()
        readers: dict[str, list[dict[str, Any]]] = {}
        for incident in self.store.incidents(active=True, events=False):
            if incident["status"] in ("expected", "snoozed"):
                continue
            for step in incident["chain"][: incident["level"] + 1]:
                for recipient in step:
                    if self._digest(recipient):
                        readers.setdefault(recipient.lower(), []).append(incident)
        for reader, incidents in readers.items():
            zone, hours, _ = self._person(reader)
            local = now.astimezone(zone)
            if local.strftime("%H:%M") < self.settings.digest_at or not is_working(
                now, zone, hours
            ):
                continue
            text, _ = messages.digest(reader, incidents, local)
            row = self._row(
                f"digest:{reader}:{local_date(now, zone)}", "digest", None, reader, text
            )
            if self.store.outbox_add([row], at=now):
                for incident in incidents:
                    self.store.nudged(
                        incident["id"],
                        at=now,
                        level=incident["level"],
                        nudges=incident["nudges"] + 1,
                        event="digested",
                        detail=f"in {reader}'s daily digest",
                    )

    # -- delivery ------------------------------------------------------------------------------

    def deliver(self) -> Delivery:
        """Send what is due; transient failures wait and are tried again in a later round."""
        done = Delivery()
        if self.slack is None:
            return done
        now = self.clock()
        updated: set[tuple[int | None, int | None]] = set()
        for pending in self.store.outbox(status="pending", due_by=now):
            # Claimed before Slack is called: another sender (a replica, a click's thread)
            # skips it, and a sender that dies lets it go when the lease lapses.
            message = self.store.outbox_claim(
                pending.id, by=self._sender, at=now, lease=CLAIM_LEASE
            )
            if message is None:
                continue
            try:
                if message.kind == "update":
                    target = (message.incident_id, message.correction_id)
                    if target not in updated:
                        self._refresh(message)
                        updated.add(target)
                    self.store.outbox_update(message.id, status="sent", sent_at=now)
                elif not self._send(message, now):
                    self.store.outbox_update(message.id, **_UNCLAIMED)
                    continue
                done.sent.append(message.key)
            except SlackError as exc:
                attempts = message.attempts + 1
                if exc.transient and attempts < _MAX_ATTEMPTS:
                    wait = _BACKOFF[min(attempts, len(_BACKOFF)) - 1]
                    self.store.outbox_update(
                        message.id,
                        attempts=attempts,
                        error=str(exc),
                        due_at=now + wait,
                        **_UNCLAIMED,
                    )
                else:
                    self.store.outbox_update(
                        message.id, status="failed", attempts=attempts, error=str(exc)
                    )
                    done.failed.append(f"{message.key}: {exc}")
                    log.error("message %s not delivered: %s", message.key, exc)
        done.waiting = self.store.outbox_waiting()
        return done

    def _send(self, message: OutboxMessage, now: datetime) -> bool:
        """Post one message; False when it must wait for its thread to exist."""
        assert self.slack is not None
        thread_ts: str | None = None
        if message.kind == "reply":
            thread = self._thread_of(message)
            if thread is None or thread.status in ("cancelled", "failed"):
                # Nobody was told about it in the first place: nothing to reply to.
                self.store.outbox_update(message.id, status="cancelled", error="no thread")
                return True
            if thread.status != "sent":
                return False
            thread_ts = thread.ts
        if message.kind == "root":
            incident = self.store.incident(message.incident_id or 0, events=False)
            if incident is None or incident["status"] == "resolved":
                self.store.outbox_update(
                    message.id, status="cancelled", error="resolved before sent"
                )
                return True
        channel = message.channel or self.slack.channel_for(message.recipient)
        if message.attempted_at is not None:
            # A crash may have come between posting and recording it: look before posting.
            ts = self.slack.find(channel, message.key, thread_ts=thread_ts)
            if ts is not None:
                self.store.outbox_update(
                    message.id, status="sent", sent_at=now, ts=ts, channel=channel
                )
                return True
        text, blocks = self._render(message)
        self.store.outbox_update(
            message.id, attempted_at=now, attempts=message.attempts + 1, channel=channel
        )
        ts = self.slack.post(channel, text, blocks, key=message.key, thread_ts=thread_ts)
        self.store.outbox_update(message.id, status="sent", sent_at=now, ts=ts, error=None)
        return True

    def _thread_of(self, message: OutboxMessage) -> OutboxMessage | None:
        """The first message to the same person that a reply belongs under."""
        kind = "root" if message.incident_id is not None else "fyi"
        candidates = self.store.outbox(
            incident_id=message.incident_id, correction_id=message.correction_id, kind=kind
        )
        recipient = message.recipient.lower()
        return next((c for c in candidates if c.recipient.lower() == recipient), None)

    def _render(self, message: OutboxMessage) -> tuple[str, list[messages.Block] | None]:
        if message.kind == "root":
            return self._card(message.incident_id or 0)
        if message.kind == "fyi":
            correction = self.store.correction(message.correction_id or 0)
            if correction is None:
                return message.text, None
            return messages.fyi(self.project, correction, message.text)
        if message.kind == "digest":
            incidents = [
                i
                for i in self.store.incidents(active=True, events=False)
                if any(
                    r.lower() == message.recipient.lower()
                    for step in i["chain"][: i["level"] + 1]
                    for r in step
                )
            ]
            return messages.digest(message.recipient, incidents, self.clock())
        return message.text, None

    def _card(self, incident_id: int) -> tuple[str, list[messages.Block]]:
        incident = self.store.incident(incident_id, events=False)
        if incident is None:
            return f"incident {incident_id}", []
        similar = messages.memory(incident, self.store.similar(incident))
        return messages.card(self.project, incident, self.pending(incident), similar=similar)

    def pending(self, incident: Mapping[str, Any]) -> list[Correction]:
        """Proposals awaiting an owner's approval for this incident's check.

        Restoring an emptied worksheet answers whatever failed on that suite.
        """
        return [
            c
            for c in self.store.corrections(suite=incident["suite"], status="pending")
            if (c.check == incident["check"] or c.column == WHOLE_SHEET)
            and c.events[-1].event == "proposed"
        ]

    def _refresh(self, message: OutboxMessage) -> None:
        """Show the current state in every first message sent about it (``chat.update``)."""
        assert self.slack is not None
        if message.incident_id is not None:
            text, blocks = self._card(message.incident_id)
            firsts = self.store.outbox(incident_id=message.incident_id, kind="root")
        else:
            correction = self.store.correction(message.correction_id or 0)
            firsts = self.store.outbox(correction_id=message.correction_id, kind="fyi")
            if correction is None or not firsts:
                return
            text, blocks = messages.fyi(self.project, correction, firsts[0].text)
        for first in firsts:
            if first.status == "sent" and first.channel and first.ts:
                self.slack.update(first.channel, first.ts, text, blocks)
