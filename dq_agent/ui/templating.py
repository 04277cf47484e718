"""The dashboard's Jinja2 environment: every page, and the charts' SVG, is a template in
``templates/``, and every value a template writes is escaped.

Python modules compute what a page shows (plain values, lists, dataclasses); the templates
lay it out. Nothing marks data as safe: the only :class:`~markupsafe.Markup` is a value once
escaped, and what the templates themselves rendered.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from markupsafe import Markup

from dq_agent.store.ledger import RUNBOOK_FIX

__all__ = ["environment", "macro", "moment", "plain", "record", "render"]

# A line break in a template's markup and the indentation after it.
_BREAK = re.compile(r"\n[ \t]*")


class Compact(Extension):
    """Drops each line break of a template's markup with the indentation that follows it, so
    templates are written as indented HTML and pages come out as one line, as they always
    have (a space that matters is written before the line break). Text from data, and what
    ``{{ }}`` and ``{% %}`` hold, is left as it is."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            if token.type == "data":
                token = Token(token.lineno, token.type, _BREAK.sub("", token.value))
            yield token


def _escape(value: Any) -> Any:
    """Every value a template writes, escaped as :func:`html.escape` does (``&quot;`` and
    ``&#x27;`` for quotes, which the pages have always used); the HTML a template rendered
    (a macro's output) is written as it is."""
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value)))


def moment(value: datetime | str) -> str:
    """A moment as the pages show it: ``2026-11-29 06:05 UTC``."""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{at:%Y-%m-%d %H:%M} UTC"


def plain(item: Any) -> str:
    """A value from data or evidence as people read it: numbers with thousands separators,
    lists comma-separated, mappings as ``key: value``."""
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


def record(key: Mapping[str, Any] | None) -> str:
    """A record's key as ``Id=006A, Region=US``."""
    return ", ".join(f"{k}={v}" for k, v in (key or {}).items())


def _segment(text: str) -> str:
    """``text`` as one segment of a URL path (a ``/`` in it included)."""
    return quote(text, safe="")


@cache
def environment() -> Environment:
    """The one environment of the process: autoescaping on for every template, and an
    undefined name an error rather than an empty string."""
    env = Environment(
        loader=PackageLoader("dq_agent.ui", "templates"),
        # The templates are the package's: they change with it, not while it serves (looking
        # at each file's time on every page was a tenth of a served page's time).
        auto_reload=False,
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_escape,
        extensions=[Compact],
    )
    env.filters.update(moment=moment, plain=plain, record=record, segment=_segment)
    env.globals["RUNBOOK_FIX"] = RUNBOOK_FIX
    return env


def render(name: str, /, **context: Any) -> Markup:
    """The template ``name`` rendered with ``context``: HTML (or SVG) to send as it is."""
    return Markup(environment().get_template(name).render(**context))


def ascii_only(html: Markup) -> Markup:
    """``html`` with every character beyond ASCII written as a character reference.

    For a page rendered once and served many times over (the overview): an ASCII page is
    joined into its layout and encoded by copying, where one dash or sign in it has Python
    hold the whole page at two bytes a character and encode it character by character, for
    every request.
    """
    return Markup(html.encode("ascii", "xmlcharrefreplace").decode("ascii"))


def macro(name: str, macro: str, /, *args: Any) -> Markup:
    """The macro ``macro`` of the template ``name`` called with ``args``: HTML to send."""
    return Markup(getattr(environment().get_template(name).module, macro)(*args))
