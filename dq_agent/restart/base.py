"""The restart protocol: start a pipeline run, then poll it until it is done."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Protocol

from dq_agent.errors import DqAgentError

RunState = Literal["queued", "running", "success", "failed"]
DONE: frozenset[str] = frozenset({"success", "failed"})


class RestartError(DqAgentError):
    """A restart target could not be reached or refused the request.

    ``transient`` says whether trying again later may succeed (a timeout, a 5xx, a 429) or not
    (bad credentials, an unknown DAG or job): the agent retries only the first kind.
    """

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class PipelineRun:
    """One run a target started: its id in that system, where it stands, a link when known."""

    run_id: str
    state: RunState
    detail: str = ""
    url: str | None = None

    @property
    def done(self) -> bool:
        return self.state in DONE

    def moved(self, state: RunState, detail: str = "") -> PipelineRun:
        return replace(self, state=state, detail=detail or self.detail)


class RestartTarget(Protocol):
    """Something that reruns a pipeline: Airflow, dbt Cloud, a webhook, a local command.

    ``start`` is given an idempotency ``key`` (the same for every attempt at one restart):
    a target that can, uses it so that a retried start does not start a second run. A target
    with a true ``blocking`` attribute (a local command) is polled until done by the cycle
    that started it; the others are polled once per cycle.
    """

    label: str

    def start(self, key: str) -> PipelineRun: ...

    def poll(self, run: PipelineRun) -> PipelineRun: ...
