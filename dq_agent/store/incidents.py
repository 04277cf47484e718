"""Incidents, one per problem, and their events: opened, nudged, moved on by people, resolved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import Session

from dq_agent.errors import StoreError
from dq_agent.results import to_jsonable
from dq_agent.store.database import (
    RECORDS,
    Database,
)
from dq_agent.store.models import (
    Incident,
    IncidentEvent,
)


class IncidentChange(NamedTuple):
    """What one call did to an incident: which incident, what happened, the event's id."""

    incident_id: int
    event: str
    event_id: int


class IncidentMoved(StoreError):
    """The incident changed (its status or reminders) since the caller read it."""


def _resolution(
    session: Session, incident: Incident, at: datetime, by: str, how: str
) -> dict[str, Any]:
    """How an incident ended, in words, with who and how long: remembered for next time."""
    events = list(
        session.scalars(
            sa.select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.id)
        )
    )
    people = [e for e in events if e.by != "agent"]
    if not how:
        fixes = [e for e in events if e.event == "fix_applied"]
        expected = [e for e in events if e.event == "expected"]
        restarted = any(e.event == "restart_succeeded" for e in events)
        if fixes:
            how = f"{fixes[-1].by} approved the suggested fix"
        elif expected:
            how = f"{expected[-1].by} said it was expected"
        elif people and people[-1].event in ("verifying", "acknowledged", "fixing"):
            how = f"{people[-1].by} fixed it"
        elif incident.check_name == "(source)":
            how = "it recovered by itself"
        else:
            how = "the data came back"
        if restarted:
            how += " and the agent restarted the pipelines"
    first_nudge = next((e.at for e in events if e.event == "notified"), None)
    return {
        "how": how,
        "by": people[-1].by if people and by == "agent" else by,
        "at": at.isoformat(),
        "minutes_open": round((at - incident.opened_at).total_seconds() / 60),
        "minutes_after_first_nudge": (
            round((at - first_nudge).total_seconds() / 60) if first_nudge else None
        ),
    }


class IncidentRepository(Database):
    """Incidents and their events."""

    # -- incidents ------------------------------------------------------------------------------

    def record_problem(
        self,
        *,
        suite: str,
        check: str,
        dataset: str,
        owners: Sequence[str],
        summary: str,
        at: datetime,
        check_type: str = "",
        evidence: Mapping[str, Any] | None = None,
        chain: Sequence[Sequence[str]] = (),
    ) -> IncidentChange:
        """One more failure of a problem: opens, re-opens or updates its incident.

        The event is ``opened``, ``reopened`` or ``failed_again``. A re-opened incident starts
        its escalation again from the first step of its chain.
        """
        with self._transaction(f"record a problem of {suite}/{check}") as session:
            incident = session.scalars(
                sa.select(Incident)
                .where(
                    Incident.suite == suite,
                    Incident.check_name == check,
                    Incident.dataset == dataset,
                )
                .order_by(Incident.id.desc())
                .limit(1)
            ).first()
            if incident is None:
                incident = Incident(
                    suite=suite,
                    check_name=check,
                    dataset=dataset,
                    status="open",
                    failures=0,
                    opened_at=at,
                    resolved_at=None,
                    snoozed_until=None,
                    level=0,
                    nudges=0,
                    last_nudged_at=None,
                )
                session.add(incident)
                event = "opened"
            else:
                event = "reopened" if incident.status == "resolved" else "failed_again"
                if event == "reopened":
                    incident.status, incident.resolved_at, incident.failures = "open", None, 0
                    incident.level, incident.nudges, incident.last_nudged_at = 0, 0, None
                    # incident.resolution stays: how it ended last time is worth knowing now
                elif incident.status == "snoozed" and (
                    incident.snoozed_until is None or incident.snoozed_until <= at
                ):
                    incident.status, incident.snoozed_until = "open", None
                elif incident.status == "verifying":
                    incident.status = "open"  # the fix did not hold
            incident.failures += 1
            incident.summary, incident.updated_at = summary, at
            incident.owners, incident.check_type = list(owners), check_type
            incident.evidence = to_jsonable(evidence) if evidence is not None else None
            incident.chain = [list(step) for step in chain] or [list(owners)]
            session.flush()
            return self._event(session, incident.id, at, event, "agent", summary)

    def problems_gone(
        self,
        *,
        suite: str,
        check: str,
        dataset: str,
        at: datetime,
        hold: bool = False,
        corrected: bool = False,
    ) -> IncidentChange | None:
        """The check passes again: resolve its open incident, if any.

        With ``hold`` (the suite restarts pipelines) the incident is not resolved yet but
        ``verifying`` with the event ``recovered``, once per recovery, until the restarted
        pipelines are verified.
        """
        with self._transaction(f"resolve {suite}/{check}") as session:
            incident = session.scalars(
                sa.select(Incident).where(
                    Incident.suite == suite,
                    Incident.check_name == check,
                    Incident.dataset == dataset,
                    Incident.status != "resolved",
                )
            ).first()
            if incident is None:
                return None
            if not hold:
                incident.status, incident.resolved_at, incident.updated_at = "resolved", at, at
                incident.resolution = _resolution(
                    session, incident, at, "agent", "the agent corrected it" if corrected else ""
                )
                detail = "corrected by the agent" if corrected else "the check passes again"
                return self._event(session, incident.id, at, "resolved", "agent", detail)
            latest = session.scalar(
                sa.select(IncidentEvent.event)
                .where(
                    IncidentEvent.incident_id == incident.id,
                    # "verifying": a person says it is fixed, e.g. after a failed restart
                    IncidentEvent.event.in_(
                        ["opened", "reopened", "failed_again", "recovered", "verifying"]
                    ),
                )
                .order_by(IncidentEvent.id.desc())
                .limit(1)
            )
            if latest == "recovered":
                return None  # held already: the restart of this recovery is under way
            incident.status, incident.updated_at = "verifying", at
            detail = "the check passes again; the pipelines restart before it closes"
            return self._event(session, incident.id, at, "recovered", "agent", detail)

    def set_incident_status(
        self,
        incident_id: int,
        status: str,
        *,
        at: datetime,
        by: str,
        detail: str = "",
        until: datetime | None = None,
    ) -> IncidentChange:
        """A person's decision (resolved, snoozed until, expected, acknowledged...).

        An answer from a person resets the count of unanswered nudges.
        """
        with self._transaction(f"update incident {incident_id}") as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                raise StoreError(f"no incident {incident_id}")
            incident.status, incident.updated_at = status, at
            incident.snoozed_until = until if status == "snoozed" else None
            if status == "resolved":
                incident.resolved_at = at
                how = "" if by == "agent" else f"{by} resolved it by hand"
                incident.resolution = _resolution(session, incident, at, by, how)
            if by != "agent":
                incident.nudges = 0
            return self._event(session, incident_id, at, status, by, detail)

    def annotate_incident(self, incident_id: int, updates: Mapping[str, Any]) -> None:
        """Add to an incident's evidence (a triage, a draft for its owner...)."""
        with self._transaction(f"annotate incident {incident_id}") as session:
            incident = session.get(Incident, incident_id)
            if incident is None:
                raise StoreError(f"no incident {incident_id}")
            incident.evidence = {**(incident.evidence or {}), **to_jsonable(dict(updates))}

    def note_incident(
        self, incident_id: int, event: str, *, at: datetime, by: str, detail: str
    ) -> IncidentChange:
        """Something happened to an incident that does not change its status."""
        with self._transaction(f"note {event} on incident {incident_id}") as session:
            if session.get(Incident, incident_id) is None:
                raise StoreError(f"no incident {incident_id}")
            return self._event(session, incident_id, at, event, by, detail)

    def nudged(
        self,
        incident_id: int,
        *,
        at: datetime,
        level: int,
        nudges: int,
        event: str,
        detail: str,
        read: Mapping[str, Any] | None = None,
    ) -> IncidentChange:
        """People were (or are about to be) reminded: where along the chain it now stands.

        With ``read`` (the incident as the caller saw it), only if its status, level and
        reminders are still as read; else :class:`IncidentMoved` (another process resolved,
        snoozed or reminded about it meanwhile)."""
        with self._transaction(f"record a nudge on incident {incident_id}") as session:
            incident = session.get(Incident, incident_id, with_for_update=read is not None)
            if incident is None:
                raise StoreError(f"no incident {incident_id}")
            if read is not None and (incident.status, incident.level, incident.nudges) != (
                read["status"],
                read["level"],
                read["nudges"],
            ):
                raise IncidentMoved(f"incident {incident_id} changed since it was read")
            incident.level, incident.nudges, incident.last_nudged_at = level, nudges, at
            if incident.status == "open":
                incident.status = "notified"
            return self._event(session, incident_id, at, event, "agent", detail)

    @staticmethod
    def _event(
        session: Session, incident_id: int, at: datetime, event: str, by: str, detail: str
    ) -> IncidentChange:
        row = IncidentEvent(incident_id=incident_id, at=at, event=event, by=by, detail=detail)
        session.add(row)
        session.flush()
        session.info[RECORDS] = True
        return IncidentChange(incident_id, event, row.id)

    def similar(
        self, incident: Mapping[str, Any], limit: int = 3, *, others_only: bool = False
    ) -> list[dict[str, Any]]:
        """Past resolutions most like this incident: its own last one (a re-opened incident;
        not with ``others_only``) and others of the same suite and check first, then of the
        same dataset, then of the same kind of check; newest first within each."""
        query = sa.select(Incident).where(
            Incident.resolution.is_not(None),
            Incident.id != incident["id"] if others_only else sa.true(),
            sa.or_(
                sa.and_(
                    Incident.suite == incident["suite"], Incident.check_name == incident["check"]
                ),
                Incident.dataset == incident["dataset"],
                sa.and_(
                    Incident.check_type == incident.get("check_type", ""), Incident.check_type != ""
                ),
            ),
        )
        same_check = sa.and_(
            Incident.suite == incident["suite"], Incident.check_name == incident["check"]
        )
        rank = sa.case((same_check, 0), (Incident.dataset == incident["dataset"], 1), else_=2)
        newest = sa.func.coalesce(Incident.resolved_at, Incident.updated_at).desc()
        query = query.order_by(rank, newest, Incident.id.desc()).limit(limit)
        with self._transaction("find similar incidents", read=True) as session:
            return [
                {"id": i.id, "suite": i.suite, "check": i.check_name, **(i.resolution or {})}
                for i in session.scalars(query)
            ]

    def incident(self, incident_id: int, *, events: bool = True) -> dict[str, Any] | None:
        """One incident (with its events unless ``events=False``), or None."""
        query = sa.select(Incident).where(Incident.id == incident_id)
        found = self._incidents(query, events=events)
        return found[0] if found else None

    def incidents(
        self,
        *,
        status: str | None = None,
        active: bool = False,
        events: bool = True,
        suite: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Incidents, newest first (the newest ``limit``), each with its events; ``active``:
        not resolved; ``suite``: of that suite only.

        ``events=False`` leaves the history out (``"events": []``): a long-lived incident
        gathers an event per failing run, and the agent's own loops do not need them.
        """
        query = sa.select(Incident).order_by(Incident.id.desc()).limit(limit)
        if status is not None:
            query = query.where(Incident.status == status)
        if active:
            query = query.where(Incident.status != "resolved")
        if suite is not None:
            query = query.where(Incident.suite == suite)
        return self._incidents(query, events=events)

    def _incidents(self, query: sa.Select[Incident], *, events: bool) -> list[dict[str, Any]]:
        with self._transaction("list incidents", read=True) as session:
            found = list(session.scalars(query))
            history = (
                list(
                    session.scalars(
                        sa.select(IncidentEvent)
                        .where(IncidentEvent.incident_id.in_([i.id for i in found]))
                        .order_by(IncidentEvent.id)
                    )
                )
                if events
                else []
            )
        by_incident: dict[int, list[dict[str, Any]]] = {}
        for e in history:
            by_incident.setdefault(e.incident_id, []).append(
                {
                    "id": e.id,
                    "at": e.at.isoformat(),
                    "event": e.event,
                    "by": e.by,
                    "detail": e.detail,
                }
            )
        return [
            {
                "id": i.id,
                "suite": i.suite,
                "check": i.check_name,
                "check_type": i.check_type,
                "dataset": i.dataset,
                "status": i.status,
                "owners": list(i.owners),
                "chain": [list(step) for step in i.chain or [i.owners]],
                "level": i.level,
                "nudges": i.nudges,
                "summary": i.summary,
                "evidence": i.evidence or {},
                "failures": i.failures,
                "opened_at": i.opened_at.isoformat(),
                "updated_at": i.updated_at.isoformat(),
                "resolved_at": i.resolved_at.isoformat() if i.resolved_at else None,
                "snoozed_until": i.snoozed_until.isoformat() if i.snoozed_until else None,
                "last_nudged_at": i.last_nudged_at.isoformat() if i.last_nudged_at else None,
                "resolution": i.resolution,
                "events": by_incident.get(i.id, []),
            }
            for i in found
        ]
