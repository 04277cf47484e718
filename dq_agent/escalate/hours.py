"""Working hours: whether a person may be messaged now, and if not, from when."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from dq_agent.config.models import WorkingHours

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(text: str) -> time:
    hours, minutes = (int(part) for part in text.split(":"))
    return time.max if hours == 24 else time(hours, minutes)


def is_working(at: datetime, zone: ZoneInfo, hours: WorkingHours) -> bool:
    """Whether ``at`` falls inside ``hours`` in ``zone`` (start inclusive, end exclusive)."""
    local = at.astimezone(zone)
    if _DAYS[local.weekday()] not in hours.days:
        return False
    return _clock(hours.start) <= local.time() < _clock(hours.end)


def next_working(at: datetime, zone: ZoneInfo, hours: WorkingHours) -> datetime:
    """``at`` itself when inside working hours, else the start of the next working period."""
    if is_working(at, zone, hours):
        return at
    local = at.astimezone(zone)
    start = _clock(hours.start)
    for days_ahead in range(8):
        day = local.date() + timedelta(days=days_ahead)
        if _DAYS[day.weekday()] not in hours.days:
            continue
        # Built in the zone, so a daylight-saving change between now and then is honoured.
        opening = datetime.combine(day, start, tzinfo=zone)
        if opening > local:
            return opening.astimezone(at.tzinfo)
    raise ValueError(f"working hours {hours.start}-{hours.end} on no day of the week")


def local_date(at: datetime, zone: ZoneInfo) -> str:
    """The calendar day ``at`` falls on where a person is, as YYYY-MM-DD."""
    return at.astimezone(zone).date().isoformat()
