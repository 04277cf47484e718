"""Retries with exponential backoff for transient source faults (timeouts, 429, 5xx)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from dq_agent.errors import SourceError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a transient fault; ``sleep`` is injectable."""

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 20.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def call(
        self, what: str, action: Callable[[], T], translate: Callable[[Exception], SourceError]
    ) -> T:
        """Run ``action``; translate its errors; retry the transient ones with backoff."""
        for attempt in range(1, self.attempts + 1):
            try:
                return action()
            except SourceError:
                raise
            except Exception as exc:
                error = translate(exc)
                if not error.transient or attempt == self.attempts:
                    raise error from exc
                delay = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
                if error.retry_after is not None:
                    delay = min(self.max_delay, max(delay, error.retry_after))
                log.warning("%s failed (%s); retry %d in %.1fs", what, error, attempt, delay)
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


NO_RETRY = RetryPolicy(attempts=1)
