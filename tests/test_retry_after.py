"""What a ``Retry-After`` header asks for: seconds, an HTTP date, or nothing usable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dq_agent.errors import SourceError
from dq_agent.sources.retry import RETRY_AFTER_CEILING_S, RetryPolicy, parse_retry_after

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Tue, 24 Nov 2026 12:00:30 GMT", 30.0),
        ("Tue, 24 Nov 2026 12:00:30 -0000", 30.0),
        ("Mon, 23 Nov 2026 12:00:00 GMT", 0.0),  # a date past: no wait
        ("86400", RETRY_AFTER_CEILING_S),
        ("9" * 400, RETRY_AFTER_CEILING_S),
        ("Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_CEILING_S),
    ],
)
def test_seconds_and_dates_are_waits(header: str, seconds: float) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    "header", [None, "", "nan", "NaN", "inf", "-inf", "-5", "1e3", "soon", "²", "0x10", ["7"]]
)
def test_anything_else_asks_for_nothing(header: object) -> None:
    assert parse_retry_after(header, now=NOW) is None


@pytest.mark.parametrize("asked", [float("nan"), float("inf"), -5.0])
def test_the_backoff_ignores_a_wait_that_is_no_wait(asked: float) -> None:
    slept: list[float] = []
    policy = RetryPolicy(attempts=2, base_delay=1.0, sleep=slept.append)
    tries: list[int] = []

    def read() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise RuntimeError("503 Service Unavailable")
        return "read"

    def translate(exc: Exception) -> SourceError:
        return SourceError(str(exc), transient=True, retry_after=asked)

    assert policy.call("reading", read, translate) == "read"
    assert slept == [1.0]
