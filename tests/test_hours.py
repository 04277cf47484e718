"""Working hours: when a person may be messaged, in their own timezone."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from dq_agent.config.models import WorkingHours
from dq_agent.escalate.hours import is_working, local_date, next_working

OFFICE = WorkingHours()  # 09:00-18:00, Monday to Friday
NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (datetime(2026, 11, 24, 14, 0, tzinfo=UTC), True),  # Tuesday 09:00 in New York
        (datetime(2026, 11, 24, 13, 59, tzinfo=UTC), False),  # 08:59 there
        (datetime(2026, 11, 24, 23, 0, tzinfo=UTC), False),  # 18:00 there: the end is open
        (datetime(2026, 11, 28, 15, 0, tzinfo=UTC), False),  # Saturday
    ],
)
def test_hours_are_read_in_the_persons_timezone(at: datetime, expected: bool) -> None:
    assert is_working(at, NEW_YORK, OFFICE) is expected


def test_outside_hours_waits_for_the_next_working_morning() -> None:
    friday_evening = datetime(2026, 11, 27, 23, 30, tzinfo=UTC)  # 18:30 in New York
    assert next_working(friday_evening, NEW_YORK, OFFICE) == datetime(
        2026, 11, 30, 14, 0, tzinfo=UTC
    )
    inside = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    assert next_working(inside, NEW_YORK, OFFICE) is inside


def test_a_clock_change_over_the_weekend_moves_the_morning_in_utc() -> None:
    # Berlin springs forward on Sunday 2026-03-29: Monday 09:00 is 07:00 UTC, not 08:00.
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert next_working(saturday, BERLIN, OFFICE) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_round_the_clock_and_the_local_day() -> None:
    always = WorkingHours(start="00:00", end="24:00", days=("sat", "sun"))
    assert is_working(datetime(2026, 11, 29, 23, 59, tzinfo=UTC), UTC_ZONE, always)
    assert not is_working(datetime(2026, 11, 30, 0, 0, tzinfo=UTC), UTC_ZONE, always)
    assert local_date(datetime(2026, 11, 25, 3, 0, tzinfo=UTC), NEW_YORK) == "2026-11-24"
