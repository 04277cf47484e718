"""Cron expressions as people write them, turned into APScheduler triggers.

APScheduler 3 counts days of the week from Monday (0) while cron counts from Sunday (0 or 7),
and ``CronTrigger.from_crontab`` passes the numbers through: ``"0 6 * * 1-5"`` would run
Tuesday to Saturday. The day-of-week field is therefore read here, as cron means it, and
handed over by name.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _day(token: str) -> int:
    token = token.strip().lower()
    if token[:3] in _NAMES:
        return _NAMES.index(token[:3])
    number = int(token)  # ValueError for anything else
    if not 0 <= number <= 7:
        raise ValueError(f"day of week {number} is out of range 0-7")
    return number % 7


def cron_days(field: str) -> str:
    """A cron day-of-week field (0 or 7 = Sunday) as APScheduler day names, e.g. mon,tue."""
    if field.strip() in ("*", "?"):
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"step {step} in {field!r} must be at least 1")
        if span in ("*", "?"):
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _day(low), _day(high)
            if high.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"range {span!r} in {field!r} runs backwards")
        else:
            first = _day(span)
            last = 6 if step_text else first
        days.update(d % 7 for d in range(first, last + 1, step))
    return ",".join(_NAMES[d] for d in sorted(days, key=lambda d: (d + 6) % 7))


@lru_cache(maxsize=4096)
def cron_trigger(expression: str, timezone: str) -> CronTrigger:
    """A five-field cron expression (minute hour day month day-of-week) in ``timezone``.

    Made once per expression and zone: a trigger is immutable, and the dashboard asks for
    every suite's next run on each page (a tenth of a millisecond a trigger to build)."""
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)}")
    minute, hour, day, month, day_of_week = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=cron_days(day_of_week),
        timezone=timezone,
    )
