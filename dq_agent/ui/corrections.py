"""The corrections page: the ledger, its hash chain checked, and Revert buttons."""

from __future__ import annotations

from markupsafe import Markup

from dq_agent.store.ledger import LedgerRepository
from dq_agent.ui import templating


def render(store: LedgerRepository, csrf: str | None) -> Markup:
    """The correction ledger, newest first, with its hash chain checked."""
    return templating.render(
        "corrections.html",
        problems=store.verify_ledger(),
        corrections=store.corrections(),
        csrf=csrf,
    )
