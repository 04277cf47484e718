"""Airflow tasks from dq-agent suites: an operator that runs a suite once and fails the task
when it fails, and a (deferrable) sensor that waits until a suite passes.

Both run the suite as ``dq-agent check`` does: read-only, recorded in the project's state
store so that baselines build up, nobody notified, nothing corrected.

    from airflow.sdk import DAG
    from dq_agent.integrations.airflow import DqAgentCheckOperator, DqAgentSensor

    with DAG("orders", schedule="@daily"):
        landed = DqAgentSensor(task_id="raw_orders_landed", suite="raw_orders", project="/dq")
        checked = DqAgentCheckOperator(task_id="check_orders", suite="orders", project="/dq")
        landed >> load_orders() >> checked  # load_orders: the task that writes the table
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowFailException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from dq_agent.config.loader import Project, load_project
from dq_agent.errors import DqAgentError
from dq_agent.integrations.airflow_provider import get_provider_info
from dq_agent.integrations.suites import check_once, refuse_invalid
from dq_agent.results import SuiteResult, to_jsonable

__all__ = ["DqAgentCheckOperator", "DqAgentSensor", "DqAgentSuiteTrigger", "get_provider_info"]

# The failing checks a task's error or a sensor's log line names, at most.
_CHECKS_LISTED = 5


class DqAgentCheckOperator(BaseOperator):
    """Runs a dq-agent suite once, as ``dq-agent check`` does, and returns its JSON (XCom).

    A suite that fails (a check with ``severity: fail``) or cannot run fails the task, saying
    which checks failed and why, or what kept the suite from running; a suite that only warns
    passes, with the warnings logged. ``suite`` and ``project`` (the project folder) are
    templated.
    """

    template_fields: Sequence[str] = ("suite", "project")
    ui_color = "#dcefe2"

    def __init__(self, *, suite: str, project: str | os.PathLike[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.suite = suite
        self.project = os.fspath(project)

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            loaded = _load(self.project, self.suite)
        except DqAgentError as exc:
            raise AirflowFailException(str(exc)) from exc
        result = check_once(loaded, self.suite)
        if result.status in ("fail", "error"):
            raise _failure(result)
        if result.status == "warn":
            self.log.warning("%s", _summary(result))
        else:
            self.log.info("%s", _summary(result))
        return _as_json(result)


class DqAgentSensor(BaseSensorOperator):
    """Waits until a dq-agent suite passes (or only warns, with ``accept_warn``), running it
    every ``poke_interval`` seconds as ``dq-agent check`` does; returns its JSON (XCom).

    ``deferrable`` (the default): after a first try on the worker, the waiting is handed to
    Airflow's triggerer (:class:`DqAgentSuiteTrigger`), and no worker slot is held. A project
    that cannot be loaded, or has no such suite, fails the task at once; a suite that fails
    or cannot reach its source is tried again until ``timeout``.
    """

    template_fields: Sequence[str] = ("suite", "project")
    ui_color = "#dcefe2"

    def __init__(
        self,
        *,
        suite: str,
        project: str | os.PathLike[str],
        poke_interval: timedelta | float = 60,
        timeout: timedelta | float | None = None,
        deferrable: bool = True,
        accept_warn: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.suite = suite
        self.project = os.fspath(project)
        self.deferrable = deferrable
        self.accept_warn = accept_warn

    def poke(self, context: Context) -> PokeReturnValue:
        try:
            result = _try(self.project, self.suite)
        except DqAgentError as exc:
            raise AirflowFailException(str(exc)) from exc
        if _green(result, self.accept_warn):
            self.log.info("%s", _summary(result))
            return PokeReturnValue(is_done=True, xcom_value=_as_json(result))
        self.log.info("%s; trying again in %ss", _summary(result), self.poke_interval)
        return PokeReturnValue(is_done=False)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        self.defer(
            trigger=DqAgentSuiteTrigger(
                suite=self.suite,
                project=self.project,
                poke_interval=self.poke_interval,
                accept_warn=self.accept_warn,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Where the task resumes once the trigger has fired: the suite's JSON, or the error."""
        if "error" in event:
            raise AirflowFailException(event["error"])
        self.log.info("dq-agent suite %r is %s", self.suite, event["result"]["status"])
        return event["result"]


class DqAgentSuiteTrigger(BaseTrigger):
    """Runs a dq-agent suite every ``poke_interval`` seconds in the triggerer, and fires once it
    passes (or only warns, with ``accept_warn``), or once its project cannot be loaded.

    The event's payload is ``{"result": <the suite's JSON>}`` or ``{"error": <why not>}``.
    """

    def __init__(
        self, *, suite: str, project: str, poke_interval: float, accept_warn: bool = True
    ) -> None:
        # (Airflow's BaseTrigger and TriggerEvent constructors are not annotated.)
        super().__init__()  # type: ignore[no-untyped-call]
        self.suite = suite
        self.project = project
        self.poke_interval = poke_interval
        self.accept_warn = accept_warn

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "suite": self.suite,
                "project": self.project,
                "poke_interval": self.poke_interval,
                "accept_warn": self.accept_warn,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            # A suite's run blocks (database drivers, Great Expectations): in a thread, so that
            # the triggerer's other triggers keep running meanwhile.
            try:
                result = await asyncio.to_thread(_try, self.project, self.suite)
            except DqAgentError as exc:
                yield TriggerEvent({"error": str(exc)})  # type: ignore[no-untyped-call]
                return
            if _green(result, self.accept_warn):
                yield TriggerEvent({"result": _as_json(result)})  # type: ignore[no-untyped-call]
                return
            self.log.info("%s; trying again in %ss", _summary(result), self.poke_interval)
            await asyncio.sleep(self.poke_interval)


def _load(project: str, suite_id: str) -> Project:
    """The project, refusing what keeps the suite from running whatever the data."""
    loaded = load_project(project)
    refuse_invalid(loaded, [suite_id])
    return loaded


def _try(project: str, suite_id: str) -> SuiteResult:
    """One try of a sensor: the project loaded afresh (it may have been edited meanwhile)."""
    return check_once(_load(project, suite_id), suite_id)


def _green(result: SuiteResult, accept_warn: bool) -> bool:
    return result.status == "pass" or (accept_warn and result.status == "warn")


def _as_json(result: SuiteResult) -> dict[str, Any]:
    """The suite as ``dq-agent check --format json`` prints it, in plain JSON types."""
    doc: dict[str, Any] = json.loads(json.dumps(result.to_json(), default=to_jsonable))
    return doc


def _summary(result: SuiteResult) -> str:
    """One line on the suite's outcome: its status, and its checks that did not pass."""
    head = f"dq-agent suite {result.suite!r}: {result.status}"
    if result.error is not None:
        return f"{head}: {result.error}"
    # A failed suite names its failing checks; one that passed with warnings, its warnings.
    shown = ("warn",) if result.status == "warn" else ("fail", "error")
    bad = [c for c in result.checks if c.status in shown]
    listed = "; ".join(f"{c.name} ({c.status}): {c.message}" for c in bad[:_CHECKS_LISTED])
    if len(bad) > _CHECKS_LISTED:
        listed += f"; and {len(bad) - _CHECKS_LISTED} more"
    return f"{head}: {listed}" if listed else head


def _failure(result: SuiteResult) -> AirflowException:
    """The exception that fails the task: Airflow's retries are for a suite that could not run
    for a while (a source timing out); a failing check or a missing table fails it for good."""
    if result.status == "error" and result.transient:
        return AirflowException(_summary(result))
    return AirflowFailException(_summary(result))
