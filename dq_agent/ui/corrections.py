"""The corrections page: the ledger, its hash chain checked, and Revert buttons."""

from __future__ import annotations

from html import escape

from dq_agent.store import Store
from dq_agent.ui import pages


def render(store: Store, csrf: str | None) -> str:
    """The correction ledger, newest first, with its hash chain checked."""
    problems = store.verify_ledger()
    corrections = store.corrections()
    if problems:
        chain = '<div class="flash bad" role="alert">Ledger hash chain broken: ' + "; ".join(
            escape(p) for p in problems
        )
    else:
        chain = (
            f'<div class="flash ok" id="ledger-status">Ledger hash chain intact: '
            f"{len(corrections)} correction{'s' if len(corrections) != 1 else ''}"
        )
    rows = (
        pages.correction_row(
            c,
            pages.form(f"/corrections/{c.id}/revert", "Revert", csrf, style="danger")
            if c.status == "applied"
            else "",
        )
        for c in corrections
    )
    table = pages.table(
        ["#", "Suite / check", "Record", "Change", "Evidence", "Decided by", "Status", ""],
        rows,
        empty="No corrections yet.",
    )
    return f"{chain}</div>{table}"
