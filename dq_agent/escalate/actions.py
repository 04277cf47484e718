"""What a click on one of the agent's Slack buttons, or a dashboard button, does.

The interactions endpoint acknowledges the click at once and hands the payload to
:meth:`Actions.handle`, which identifies the person (their Slack e-mail), checks they may do
it, does it through the same functions as the command line, and tells the thread. The
dashboard calls :meth:`Actions.act` with its signed-in user: the same rules, the same record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from dq_agent.agent import run_cycle
from dq_agent.checks import BASELINED
from dq_agent.config.loader import Project
from dq_agent.engine import RunOptions
from dq_agent.errors import DqAgentError
from dq_agent.escalate import messages
from dq_agent.escalate.incidents import Notice
from dq_agent.escalate.notify import Escalation
from dq_agent.escalate.slack import Slack, SlackError
from dq_agent.remedy.runner import (
    approval_refusal,
    approve_correction,
    deciders,
    reject_correction,
    revert_correction,
)
from dq_agent.store import Store
from dq_agent.store.locks import acting

log = logging.getLogger(__name__)

# What the dashboard can do beyond Slack's buttons.
RESOLVE = "resolve"
REJECT = "reject"


def require_decider(project: Project, incident: Mapping[str, Any], email: str, what: str) -> None:
    """Refuse unless ``email`` may decide about ``incident``: its suite's owners and
    escalation list, its check's owners, and the people its chain has told."""
    chain = [p for step in incident["chain"] for p in step]
    people = deciders(project.suites.get(incident["suite"]), incident["check"], chain)
    if email.lower() not in people:
        raise DqAgentError(
            f"Only the owners and escalation list of {incident['suite']} may {what} "
            f"incident #{incident['id']} ({', '.join(sorted(people)) or 'nobody'})."
        )


class NotDone(DqAgentError):
    """An action was tried and did not happen; the incident's thread has been told why."""


class Actions:
    """Acts on button clicks for one project, as the person who clicked."""

    def __init__(
        self,
        project: Project,
        store: Store,
        slack: Slack | None,
        options: RunOptions,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.project = project
        self.store = store
        self.slack = slack
        self.options = options
        self.env = env
        self.escalation = Escalation(project, store, slack, options.clock)

    def handle(self, payload: Mapping[str, Any]) -> None:
        """One ``block_actions`` payload; anything else is ignored."""
        if payload.get("type") != "block_actions" or not payload.get("actions"):
            return
        action = payload["actions"][0]
        user_id = str((payload.get("user") or {}).get("id", ""))
        channel = str(
            (payload.get("channel") or {}).get("id")
            or (payload.get("container") or {}).get("channel_id", "")
        )
        assert self.slack is not None, "Slack clicks come only where Slack is configured"
        try:
            value = json.loads(action.get("value") or "{}")
            email = self.slack.email_of(user_id)
            if email is None:
                raise DqAgentError(
                    "Slack does not show me your e-mail address, so I cannot tell whether you "
                    "may do this"
                )
            self.act(str(action.get("action_id")), value, email)
        except NotDone:
            pass  # the thread says why, the person who clicked included
        except (DqAgentError, ValueError, TypeError, KeyError) as exc:
            self._refuse(channel, user_id, str(exc))
        finally:
            self.escalation.deliver()

    def _refuse(self, channel: str, user_id: str, text: str) -> None:
        assert self.slack is not None
        try:
            self.slack.ephemeral(channel, user_id, text)
        except SlackError as exc:
            log.error("could not tell %s: %s (%s)", user_id, text, exc)

    def act(self, action_id: str, value: Mapping[str, Any], email: str) -> str:
        """Do ``action_id`` as ``email`` and say what became of it; raises
        :class:`DqAgentError` saying why not (refused, or tried and not done).

        Every action is authorized against what it acts on (the correction's own suite and
        records), never against the message or page the click came from, and holds the
        acting lock of that suite, so it never overlaps another process's cycle of it.
        """
        suites = self._suites_of(action_id, value)
        with acting(self.project.state_url, suites, pool=self.store.engine):
            return self._act(action_id, value, email)

    def _suites_of(self, action_id: str, value: Mapping[str, Any]) -> list[str]:
        """The suite the click acts on (none when what it names is not in the store: the
        action then says so under the follow-up lock)."""
        if action_id in (messages.UNDO, REJECT):
            correction = self.store.correction(int(value["correction"]))
            return [correction.suite] if correction is not None else []
        incident = self.store.incident(int(value["incident"]), events=False)
        return [incident["suite"]] if incident is not None else []

    def _act(self, action_id: str, value: Mapping[str, Any], email: str) -> str:
        if action_id == messages.UNDO:
            return self._undo(int(value["correction"]), email)
        if action_id == REJECT:
            return self._reject(int(value["correction"]), email)
        incident = self.store.incident(int(value["incident"]), events=False)
        if incident is None:
            raise DqAgentError(f"incident {value['incident']} is not in this agent's store")
        if incident["status"] == "resolved":
            raise DqAgentError(f"incident #{incident['id']} is already resolved")
        if action_id == messages.RECHECK:
            return self._recheck(incident, email)
        if action_id == messages.APPROVE:
            self._require(incident, email, "approve a fix for")
            return self._approve(incident, self._part_of(incident, value), email)
        if action_id == messages.SNOOZE:
            self._require(incident, email, "snooze")
            until = self.options.clock() + self.project.settings.nudges.snooze
            detail = f"snoozed by {email} until {until:%H:%M} UTC"
            self._status(incident, "snoozed", email, detail, until)
            return f"incident #{incident['id']} {detail}"
        if action_id == messages.EXPECTED:
            self._require(incident, email, "mark as expected")
            return self._expected(incident, email)
        if action_id == RESOLVE:
            self._require(incident, email, "resolve")
            self._status(incident, "resolved", email, f"resolved by {email}")
            return f"incident #{incident['id']} resolved"
        raise DqAgentError(f"unknown action {action_id!r}")

    # -- who may ---------------------------------------------------------------------------------

    def _part_of(self, incident: Mapping[str, Any], value: Mapping[str, Any]) -> int:
        """The correction a button names, refused unless it is one this incident proposes:
        the incident's people decide its own fixes, not another suite's."""
        correction_id = int(value["correction"])
        if correction_id not in {c.id for c in self.escalation.pending(incident)}:
            raise DqAgentError(
                f"correction {correction_id} is not a pending fix of incident #{incident['id']}"
            )
        return correction_id

    def _require(self, incident: Mapping[str, Any], email: str, what: str) -> None:
        require_decider(self.project, incident, email, what)

    # -- the actions -----------------------------------------------------------------------------

    def _status(
        self,
        incident: Mapping[str, Any],
        status: str,
        email: str,
        detail: str,
        until: datetime | None = None,
    ) -> None:
        change = self.store.set_incident_status(
            incident["id"], status, at=self.options.clock(), by=email, detail=detail, until=until
        )
        self._tell(incident, change.event, change.event_id, detail)

    def _note(self, incident: Mapping[str, Any], event: str, email: str, detail: str) -> None:
        change = self.store.note_incident(
            incident["id"], event, at=self.options.clock(), by=email, detail=detail
        )
        self._tell(incident, event, change.event_id, detail)

    def _tell(self, incident: Mapping[str, Any], event: str, event_id: int, detail: str) -> None:
        notice = Notice(
            incident["id"],
            event,
            incident["suite"],
            incident["check"],
            tuple(incident["owners"]),
            detail,
            event_id,
        )
        self.escalation.announce([notice])
        self.escalation.deliver()

    def _recheck(self, incident: Mapping[str, Any], email: str) -> str:
        """Someone says it is fixed: check now; it resolves, or the thread hears it does not."""
        self._status(incident, "verifying", email, f"{email} says it is fixed: checking again now")
        self._rerun(incident)
        after = self.store.incident(incident["id"], events=False)
        if after is None:
            return f"incident #{incident['id']}: checked again"
        # verifying: it passes, and the suite's pipelines restart before it closes
        if after["status"] not in ("resolved", "verifying"):
            detail = (
                f"checked again at {self.options.clock():%H:%M} UTC: still failing: "
                f"{after['summary']}"
            )
            self._status(after, "acknowledged", email, detail)
            return detail
        return f"incident #{incident['id']} passes again: {after['status']}"

    def _rerun(self, incident: Mapping[str, Any]) -> None:
        if incident["suite"] not in self.project.suites:
            raise DqAgentError(f"suite {incident['suite']} is not in this project (or is invalid)")
        run_cycle(
            self.project,
            [incident["suite"]],
            self.store,
            self.options,
            env=self.env,
            slack=self.slack,
        )

    def _approve(self, incident: Mapping[str, Any], correction_id: int, email: str) -> str:
        """Write the fix an owner approved and check again; a fix the policy would refuse
        is refused before anything changes (no status, no message), one tried and not
        written is told in the thread and raised to the one who pressed the button."""
        correction = self.store.correction(correction_id)
        refused = correction and approval_refusal(self.project, correction, env=self.env)
        if refused:
            raise DqAgentError(refused)
        chain = [p for step in incident["chain"] for p in step]
        # Recorded, not told: the thread hears what became of the fix a moment later.
        self.store.set_incident_status(
            incident["id"],
            "fixing",
            at=self.options.clock(),
            by=email,
            detail=f"{email} approved correction {correction_id}",
        )
        try:
            outcome = approve_correction(
                self.project,
                self.store,
                correction_id,
                by=email,
                options=self.options,
                env=self.env,
                also=chain,
                incident_id=incident["id"],
            )
        except DqAgentError as exc:
            detail = f"the fix was not written: {exc}"
            self._status(incident, "acknowledged", email, detail)
            raise NotDone(detail) from exc
        if outcome.status != "applied":
            why = outcome.detail.removeprefix(f"{outcome.status}: ")
            detail = f"correction {correction_id} was not written ({outcome.status}): {why}"
            self._status(incident, "acknowledged", email, detail)
            raise NotDone(detail)
        self._note(
            incident,
            "fix_applied",
            email,
            f"{email} approved correction {correction_id} ({outcome.detail})",
        )
        self._rerun(incident)
        after = self.store.incident(incident["id"], events=False)
        now = f"; the incident is {after['status']}" if after else ""
        return f"correction {correction_id} written ({outcome.detail}){now}"

    def _expected(self, incident: Mapping[str, Any], email: str) -> str:
        bucket = (incident.get("evidence") or {}).get("observed", {}).get("bucket")
        if incident.get("check_type") in BASELINED and bucket:
            start = datetime.fromisoformat(bucket).astimezone(UTC)
            self.store.add_feedback(
                incident["suite"],
                incident["check"],
                start,
                verdict="expected",
                by=email,
                at=self.options.clock(),
                note=f"from Slack, incident #{incident['id']}",
            )
            detail = (
                f"{email} marked this expected: the bucket of {bucket[:10]} leaves the baseline"
            )
        else:
            detail = f"{email} marked this expected: no more reminders until it passes again"
        self._status(incident, "expected", email, detail)
        return f"incident #{incident['id']}: {detail}"

    def mark_expected(self, suite: str, check: str, bucket: datetime, email: str) -> None:
        """An owner says a bucket of a volume monitor was expected: it leaves the baseline."""
        if email.lower() not in deciders(self.project.suites.get(suite), check):
            raise DqAgentError(
                f"Only the owners and escalation list of {suite} may mark its buckets expected."
            )
        self.store.add_feedback(
            suite,
            check,
            bucket.astimezone(UTC),
            verdict="expected",
            by=email,
            at=self.options.clock(),
            note="from the dashboard",
        )

    def _reject(self, correction_id: int, email: str) -> str:
        correction = self.store.correction(correction_id)
        if correction is None:
            raise DqAgentError(f"correction {correction_id} is not in this agent's ledger")
        reject_correction(
            self.store, self.project, correction_id, by=email, clock=self.options.clock
        )
        return f"correction {correction_id} rejected: nothing was written"

    def _undo(self, correction_id: int, email: str) -> str:
        if self.store.correction(correction_id) is None:
            raise DqAgentError(f"correction {correction_id} is not in this agent's ledger")
        outcome = revert_correction(
            self.project, self.store, correction_id, by=email, options=self.options
        )
        if outcome.status == "unchanged":
            raise DqAgentError(outcome.detail)  # said to the one who clicked, not the thread
        self.escalation.undone(correction_id, outcome, email)
        if outcome.status != "reverted":
            raise NotDone(
                f"correction {correction_id} was not undone ({outcome.status}): {outcome.detail}"
            )
        return f"correction {correction_id} reverted: {outcome.detail}"
