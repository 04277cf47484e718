"""The dashboard's HTML: plain server-rendered pages, one stylesheet inline, no scripts.

Everything shown comes from the state store and the project; every value is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from html import escape
from typing import Any
from urllib.parse import quote

from dq_agent.store.ledger import RUNBOOK_FIX, Correction
from dq_agent.ui.auth import MAX_EMAIL

# Best to worst: a day is as bad as its worst run.
STATUSES = ("pass", "warn", "fail", "error")
# What marks a day besides its colour.
_SIGNS = {"pass": "✓", "warn": "!", "fail": "✕", "error": "?"}

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#cfe3ff;text-decoration:none}header .who{margin-left:auto;color:#aab}
main{padding:1em 1.2em;max-width:1280px}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0 1.2em}
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e3e6ea;vertical-align:top}
th{background:#eef1f5;font-weight:600}
.pass{color:#1a7f37}.warn{color:#9a6700}.fail,.error{color:#cf222e}
.tl{display:inline-block;width:9px;height:14px;margin-right:1px;border-radius:2px}
.tl.pass{background:#2da44e}.tl.warn{background:#d4a72c}.tl.fail{background:#cf222e}
.tl.error{background:#6e7781}
.flash{padding:.6em 1em;border-radius:4px;margin-bottom:1em}
.flash.ok{background:#dafbe1}.flash.bad{background:#ffebe9}
form.inline{display:inline;margin:0 .3em 0 0}
button{font:inherit;padding:.25em .8em;border-radius:4px;border:1px solid #8c959f;background:#fff;
cursor:pointer}button.primary{background:#1f6feb;color:#fff;border-color:#1f6feb}
button.danger{border-color:#cf222e;color:#cf222e}
pre{background:#fff;border:1px solid #e3e6ea;padding:.6em;overflow:auto;font-size:12px}
.muted{color:#57606a}.card{background:#fff;border:1px solid #e3e6ea;padding:.8em 1em;
margin-bottom:1em;border-radius:4px}
.vh{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;
clip:rect(0 0 0 0);white-space:nowrap;border:0}
ol.days{display:flex;gap:2px;list-style:none;margin:0;padding:0}
.day{position:relative;width:18px;height:18px;border-radius:3px;flex:none;text-align:center;
font:bold 12px/18px system-ui,sans-serif;color:#fff;background:#eaeef2;
box-shadow:inset 0 0 0 1px #d0d7de;cursor:default}
.day.pass{background:#1a7f37;box-shadow:none}.day.warn{background:#9a6700;box-shadow:none}
.day.fail{background:#cf222e;box-shadow:none}.day.error{background:#57606a;box-shadow:none}
.spark{display:inline-flex;align-items:flex-end;gap:1px;height:16px;vertical-align:middle}
.spark .tl{margin:0;height:6px}.spark .tl.warn{height:11px}
.spark .tl.fail,.spark .tl.error{height:16px}.spark .tl.none{height:2px;background:#d0d7de}
dl.about{display:grid;grid-template-columns:max-content 1fr;gap:.3em 1.2em;margin:0}
dl.about dt{font-weight:600}dl.about dd{margin:0;overflow-wrap:anywhere}
ul.issues{margin:.3em 0;padding-left:1.2em}ul.issues li{margin:.2em 0;font-family:monospace}
.mention,.channel{background:#ddf4ff;color:#0550ae;border-radius:3px;padding:0 .15em}
td blockquote{margin:.2em 0;padding-left:.6em;border-left:3px solid #d0d7de}
code{background:#eef1f5;border-radius:3px;padding:0 .2em;font-size:90%}
a:focus-visible,button:focus-visible,input:focus-visible{outline:2px solid #0969da;
outline-offset:2px}
"""


def page(
    title: str,
    body: str,
    *,
    user: str | None,
    flash: Mapping[str, str],
    sign_out: str | None = None,
) -> str:
    """A whole page; ``sign_out`` is the form token of a session's Sign out button (none
    for a user the proxy vouches for: signing out is the proxy's business then)."""
    nav = ""
    if user:
        nav = (
            '<a href="/">Overview</a><a href="/corrections">Corrections</a>'
            '<a href="/monitors">Monitors</a>'
            f'<span class="who">{escape(user)}</span>'
        ) + form("/logout", "Sign out", sign_out)
    note = ""
    if flash.get("done"):
        note = f'<div class="flash ok" role="status">{escape(flash["done"])}</div>'
    elif flash.get("error"):
        note = f'<div class="flash bad" role="alert">{escape(flash["error"])}</div>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)} · dq-agent</title><style>{_STYLE}</style></head>"
        f"<body><header><strong>dq-agent</strong>{nav}</header>"
        f"<main><h1>{escape(title)}</h1>{note}{body}</main></body></html>"
    )


def form(
    action: str,
    label: str,
    csrf: str | None,
    fields: Mapping[str, Any] | None = None,
    *,
    style: str = "",
) -> str:
    """A one-button form; None for ``csrf`` means read-only: no button at all."""
    if csrf is None:
        return ""
    hidden = "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(str(v))}">'
        for k, v in {**(fields or {}), "csrf": csrf}.items()
    )
    return (
        f'<form class="inline" method="post" action="{escape(action)}">{hidden}'
        f'<button type="submit" class="{style}">{escape(label)}</button></form>'
    )


def login(error: str | None, csrf: str) -> str:
    message = f'<div class="flash bad" role="alert">{escape(error)}</div>' if error else ""
    return (
        f'{message}<form method="post" action="/login" class="card">'
        f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        '<p><label>E-mail <input name="email" type="email" required '
        f'maxlength="{MAX_EMAIL}" autocomplete="username">'
        '</label></p><p><label>Token <input name="token" type="password" required '
        'autocomplete="current-password"></label></p>'
        '<p><button class="primary" type="submit">Sign in</button></p></form>'
    )


def status(text: str | None) -> str:
    word = text or "never run"
    return f'<span class="{escape(word)}">{escape(word)}</span>'


def suite_link(suite_id: str) -> str:
    """A link to the suite's page."""
    return f'<a href="/suites/{escape(quote(suite_id, safe=""))}">{escape(suite_id)}</a>'


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


def timeline(days: Sequence[datetime], counts: Mapping[datetime, Mapping[str, int]]) -> str:
    """One cell per day (``days``: their starts, oldest first), coloured by the day's worst
    run and marked with its sign, so colour is not the only cue; the day and its runs by
    status are the cell's tooltip and, for screen readers, its text."""
    cells = []
    for day in days:
        runs = counts.get(day, {})
        status = worst(runs)
        said = escape(f"{day:%Y-%m-%d}: {tally(runs)}")
        cells.append(
            f'<li class="day {escape(status or "none")}" title="{said}">'
            f'<span aria-hidden="true">{_SIGNS.get(status or "", "")}</span>'
            f'<span class="vh">{said}</span></li>'
        )
    return f'<ol class="days">{"".join(cells)}</ol>'


def sparkline(points: Sequence[tuple[datetime, str | None]], *, name: str) -> str:
    """One small bar per run, oldest first (None: not run that time), taller the worse it
    went; ``name`` and the runs by status are its accessible name, each bar's run its
    tooltip."""
    bars: list[str] = []
    runs: dict[str, int] = {}
    for at, s in points:
        status = s or "not run"
        runs[status] = runs.get(status, 0) + 1
        said = escape(f"{at:%Y-%m-%d %H:%M} UTC: {status}")
        bars.append(f'<span class="tl {escape(s or "none")}" title="{said}"></span>')
    label = escape(f"{name}, oldest first: {tally(runs)}")
    return f'<span class="spark" role="img" aria-label="{label}">{"".join(bars)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="muted">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def when(value: datetime | str | None) -> str:
    if value is None:
        return '<span class="muted">—</span>'
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return escape(f"{moment:%Y-%m-%d %H:%M} UTC")


def value(item: Any) -> str:
    """A value from data or evidence as people read it: numbers with thousands separators,
    lists comma-separated, mappings as ``key: value``; escaped."""
    return escape(plain(item))


def plain(item: Any) -> str:
    """:func:`value` before escaping."""
    if item is None:
        return "—"
    if isinstance(item, bool):
        return "yes" if item else "no"
    if isinstance(item, int):
        return f"{item:,}"
    if isinstance(item, float):
        if not math.isfinite(item):
            return str(item)
        if item == int(item) and abs(item) < 1e15:
            return f"{item:,.0f}"
        return f"{item:,.4f}".rstrip("0").rstrip(".")
    if isinstance(item, Mapping):
        return "; ".join(f"{k}: {plain(v)}" for k, v in item.items())
    if isinstance(item, list | tuple):
        return ", ".join(plain(v) for v in item)
    return str(item)


def link(url: str | None, text: str) -> str:
    if not url:
        return escape(text)
    return f'<a href="{escape(url)}" rel="noreferrer">{escape(text)}</a>'


def change_cell(c: Correction) -> str:
    """old → new; for a runbook fix, how many rows it holds before and after (the rows
    themselves are in the ledger: ``dq-agent corrections show``)."""
    if c.column == RUNBOOK_FIX:
        before, after = len(c.old or []), len(c.new or [])
        return f"{before:,} row(s) → <strong>{after:,} row(s)</strong>"
    return f"{value(c.old)} → <strong>{value(c.new)}</strong>"


def correction_row(c: Correction, actions: str) -> list[str]:
    key = ", ".join(f"{k}={v}" for k, v in c.key.items())
    return [
        f'<a id="correction-{c.id}">#{c.id}</a>',
        escape(f"{c.suite} / {c.check}"),
        escape(f"{key} · {c.column}"),
        change_cell(c),
        "<br>".join(escape(line) for line in c.evidence) or '<span class="muted">—</span>',
        escape(c.decided_by),
        f'<span class="status-{escape(c.status)}">{escape(c.status)}</span>'
        + (f'<br><span class="muted">{escape(c.detail)}</span>' if c.detail else ""),
        actions,
    ]


def incidents(items: Sequence[Mapping[str, Any]], *, empty: str, suite: bool = True) -> str:
    """Incidents, one row each, linked to their pages; ``suite=False`` on a suite's own page."""
    return table(
        [
            "Incident",
            "Suite / check" if suite else "Check",
            "Status",
            "Owners",
            "Opened",
            "Summary",
        ],
        (
            [
                f'<a href="/incidents/{i["id"]}">#{i["id"]}</a>',
                escape(f"{i['suite']} / {i['check']}" if suite else i["check"]),
                escape(i["status"]),
                escape(", ".join(i["owners"])),
                when(i["opened_at"]),
                escape(i["summary"]),
            ]
            for i in items
        ),
        empty=empty,
    )


def events(items: Sequence[Mapping[str, Any]]) -> str:
    return table(
        ["When", "What", "Who", "Detail"],
        (
            [when(e["at"]), escape(e["event"]), escape(e.get("by") or ""), escape(e["detail"])]
            for e in items
        ),
        empty="No events yet.",
    )
