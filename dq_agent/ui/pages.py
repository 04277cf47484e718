"""The dashboard's pages: plain server-rendered HTML from the templates in ``templates/``, one
stylesheet inline, no scripts.

Everything shown comes from the state store and the project; the templates escape every value.
This module holds the layout and what several pages compute alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup

from dq_agent.ui import templating
from dq_agent.ui.auth import MAX_EMAIL

# Best to worst: a day is as bad as its worst run.
STATUSES = ("pass", "warn", "fail", "error")
# What marks a day besides its colour.
_SIGNS = {"pass": "✓", "warn": "!", "fail": "✕", "error": "?"}


@dataclass(frozen=True)
class Day:
    """A day's cell of a timeline: its worst run's status (``none`` without runs), the sign
    that marks it, and the day and its runs by status in words."""

    status: str
    sign: str
    said: str


@dataclass(frozen=True)
class Bar:
    """A run's bar of a sparkline: its status (``none``: not run that time) and its moment."""

    status: str
    said: str


@dataclass(frozen=True)
class Sparkline:
    label: str  # its accessible name: what it shows and the runs by status
    bars: Sequence[Bar]


def page(
    title: str,
    body: Markup,
    *,
    user: str | None,
    flash: Mapping[str, str],
    sign_out: str | None = None,
) -> Markup:
    """A whole page around ``body`` (rendered by a page's template); ``sign_out`` is the form
    token of a session's Sign out button (none for a user the proxy vouches for: signing
    out is the proxy's business then)."""
    return templating.render(
        "page.html", title=title, body=body, user=user, flash=flash, sign_out=sign_out
    )


def login(error: str | None, csrf: str) -> Markup:
    """The sign-in page; ``csrf`` is the form's own token (there is no session yet)."""
    return templating.render(
        "login.html",
        title="Sign in",
        user=None,
        flash={},
        sign_out=None,
        error=error,
        csrf=csrf,
        max_email=MAX_EMAIL,
    )


def worst(counts: Mapping[str, int]) -> str | None:
    """The worst status with a run in ``counts`` (error, fail, warn, pass); None for none."""
    return next((s for s in reversed(STATUSES) if counts.get(s)), None)


def tally(counts: Mapping[str, int]) -> str:
    """Runs by status, in words: ``9 runs — 7 pass, 2 fail``."""
    total = sum(counts.values())
    if not total:
        return "no runs"
    known = [s for s in STATUSES if counts.get(s)]
    other = sorted(s for s, n in counts.items() if n and s not in STATUSES)
    by_status = ", ".join(f"{counts[s]:,} {s}" for s in [*known, *other])
    return f"{total:,} run{'' if total == 1 else 's'} — {by_status}"


def timeline(days: Sequence[datetime], counts: Mapping[datetime, Mapping[str, int]]) -> list[Day]:
    """One cell per day (``days``: their starts, oldest first), by the day's worst run."""
    cells = []
    for day in days:
        runs = counts.get(day, {})
        status = worst(runs)
        said = f"{day:%Y-%m-%d}: {tally(runs)}"
        cells.append(Day(status or "none", _SIGNS.get(status or "", ""), said))
    return cells


def sparkline(points: Sequence[tuple[datetime, str | None]], *, name: str) -> Sparkline:
    """One bar per run, oldest first (None: not run that time); ``name`` and the runs by
    status are its accessible name, each bar's run its tooltip."""
    bars: list[Bar] = []
    runs: dict[str, int] = {}
    for at, s in points:
        status = s or "not run"
        runs[status] = runs.get(status, 0) + 1
        bars.append(Bar(s or "none", f"{at:%Y-%m-%d %H:%M} UTC: {status}"))
    return Sparkline(f"{name}, oldest first: {tally(runs)}", bars)
