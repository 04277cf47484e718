"""Durations written the way people write them: ``26h``, ``90m``, ``1d12h``, ``45s``, ``2w``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])")
_WHOLE = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+")


def parse_duration(text: str) -> timedelta:
    """Parse ``26h``-style text; raises ``ValueError`` with the expected form."""
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.lower()):
        raise ValueError(f"expected a duration like 26h, got {text!r}")
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text.lower()))
    if seconds <= 0:
        raise ValueError(f"expected a positive duration like 26h, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """Short text for ``value``: ``45s``, ``12m``, ``26h``, ``3h20m``, ``4d2h``."""
    seconds = int(abs(value.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, hours = seconds // 60, seconds // 3600
    if hours == 0:
        return f"{minutes}m"
    if hours < 72:  # "26h" reads better than "1d2h" for the ages people set limits in
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest and hours < 10 else f"{hours}h"
    days, rest_hours = divmod(hours, 24)
    return f"{days}d{rest_hours}h" if rest_hours else f"{days}d"
