"""``type: command`` — rerun a pipeline with a local command (an argv, never a shell).

The command runs in its own process group, so a time-out can stop it together with whatever
it started (``make`` and its children, a shell script's pipeline). Its combined stdout and
stderr go to an unnamed temporary file rather than a pipe: nobody reads a pipe while the
command runs, and a chatty command would block once the pipe's buffer is full.

The command sees ``DQ_AGENT_RESTART_KEY``: the same value for every attempt at one restart,
so a command that can tell it already ran for a key may skip the work.

Processes are only known to the instance that started them. After dq-agent itself restarts,
a run it had started is reported failed with an unknown outcome rather than guessed at.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dq_agent.config.durations import format_duration
from dq_agent.config.models import CommandRestart
from dq_agent.restart.base import PipelineRun, RestartError

__all__ = ["KEY_VARIABLE", "UNKNOWN_OUTCOME", "CommandTarget"]

KEY_VARIABLE = "DQ_AGENT_RESTART_KEY"
UNKNOWN_OUTCOME = "the agent restarted while the command ran; its outcome is unknown"
_TAIL_LINES = 20
# Enough bytes for 20 ordinary lines; a command's whole output can be far larger.
_TAIL_BYTES = 16_384
# After SIGTERM, how long a timed-out command gets to clean up before SIGKILL.
_GRACE_SECONDS = 2.0


@dataclass
class _Started:
    process: subprocess.Popen[bytes]
    output: IO[bytes]
    started_at: float


class CommandTarget:
    """Runs the configured command and reports on it while this instance lives."""

    # The agent waits for a local command in the cycle that starts it: only the process that
    # started it can tell how it ended.
    blocking = True

    def __init__(
        self,
        spec: CommandRestart,
        *,
        root: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._spec = spec
        self._cwd = root / spec.cwd if spec.cwd else root
        self._clock = clock
        self._runs: dict[str, _Started] = {}
        self._by_key: dict[str, str] = {}
        self._ended: dict[str, PipelineRun] = {}
        self.label = "command " + " ".join(spec.run)

    def start(self, key: str) -> PipelineRun:
        known = self._by_key.get(key)
        if known is not None:
            # A retried start of the same restart: report on the process it already started.
            return self.poll(PipelineRun(known, "running"))
        if not self._cwd.is_dir():
            raise RestartError(
                f"{self.label}: working directory {self._cwd} does not exist", transient=False
            )
        env = {**os.environ, **self._spec.env, KEY_VARIABLE: key}
        output = tempfile.TemporaryFile()  # noqa: SIM115 - poll closes it when the run ends
        try:
            process = subprocess.Popen(
                list(self._spec.run),
                cwd=self._cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: see _stop
            )
        except FileNotFoundError as exc:
            output.close()
            raise RestartError(
                f"{self.label}: no such executable: {self._spec.run[0]}", transient=False
            ) from exc
        except OSError as exc:  # not executable, exec format error, …
            output.close()
            raise RestartError(
                f"{self.label}: cannot run {self._spec.run[0]}: {exc.strerror or exc}",
                transient=False,
            ) from exc
        run_id = str(process.pid)
        self._runs[run_id] = _Started(process, output, self._clock())
        self._by_key[key] = run_id
        return PipelineRun(run_id, "running", f"started (pid {run_id})")

    def poll(self, run: PipelineRun) -> PipelineRun:
        if run.done:
            return run
        if run.run_id in self._ended:
            return self._ended[run.run_id]
        started = self._runs.get(run.run_id)
        if started is None:
            return run.moved("failed", UNKNOWN_OUTCOME)
        ended = self._check(run, started)
        if ended.done:
            # Remembered so that a retried start of the same key reports this outcome.
            self._runs.pop(run.run_id)
            started.output.close()
            self._ended[run.run_id] = ended
        return ended

    def _check(self, run: PipelineRun, started: _Started) -> PipelineRun:
        code = started.process.poll()
        if code is None:
            elapsed = self._clock() - started.started_at
            if elapsed <= self._spec.timeout.total_seconds():
                return run.moved("running")
            self._stop(started.process)
            return run.moved(
                "failed", f"timed out after {format_duration(self._spec.timeout)}; stopped"
            )
        if code == 0:
            return run.moved("success", "exit code 0")
        reason = f"exit code {code}"
        if code < 0:
            try:
                reason = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                reason = f"killed by signal {-code}"
        tail = _tail(started.output)
        return run.moved("failed", f"{reason}\n{tail}" if tail else reason)

    @staticmethod
    def _stop(process: subprocess.Popen[bytes]) -> None:
        """Stop the whole process group: SIGTERM, a short grace, then SIGKILL."""
        group = process.pid  # start_new_session: the group id is the leader's pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=_GRACE_SECONDS)
        # Children may outlive a leader that exited on SIGTERM: the group goes in any case.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait()


def _tail(output: IO[bytes]) -> str:
    """The last lines the command wrote (stdout and stderr interleaved)."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(size - _TAIL_BYTES, 0))
    text = output.read().decode("utf-8", errors="replace")
    lines = text.rstrip("\n").splitlines()
    return "\n".join(lines[-_TAIL_LINES:])
