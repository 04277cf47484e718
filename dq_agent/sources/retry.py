"""Retries with exponential backoff for transient source faults (timeouts, 429, 5xx), and
what a ``Retry-After`` header asks for."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
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
                wait = error.retry_after
                if wait is not None and math.isfinite(wait) and wait >= 0:
                    delay = min(self.max_delay, max(delay, wait))
                log.warning("%s failed (%s); retry %d in %.1fs", what, error, attempt, delay)
                self.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")


NO_RETRY = RetryPolicy(attempts=1)


# Whole or decimal seconds; RFC 9110 has whole ones, some services send "1.5".
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Longer than any caller waits in place (each caps lower): a bigger ask is a service's error.
RETRY_AFTER_CEILING_S = 3600.0


def parse_retry_after(header: object, *, now: datetime | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait, or None when it asks nothing usable.

    RFC 9110 allows a number of seconds or an HTTP date (a date past is no wait). Anything
    else (``nan``, ``inf``, ``-5``, ``soon``, a list) is None: the caller's own backoff
    applies. What is asked is capped at :data:`RETRY_AFTER_CEILING_S`.
    """
    if not isinstance(header, str):
        return None
    text = header.strip()
    if _SECONDS.fullmatch(text):
        return min(float(text), RETRY_AFTER_CEILING_S)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, with no claim about the sender's zone
        moment = moment.replace(tzinfo=UTC)
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CEILING_S)
