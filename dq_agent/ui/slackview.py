"""Slack messages as people saw them in Slack: names, emoji and formatting, as safe HTML.

A message is kept as it was sent, in Slack's mrkdwn: ``<@U123>`` mentions someone,
``<https://…|label>`` is a link, ``*bold*`` is bold and ``:zzz:`` an emoji. In it a literal ``&``,
``<`` or ``>`` is written ``&amp;``, ``&lt;``, ``&gt;``: the agent escapes all data so
(:func:`dq_agent.escalate.messages.escape`). A raw ``<`` is therefore always the agent's own
markup, and each piece of text is decoded once and HTML-escaped once, as it is written out: data
shows exactly as it was, and no ``<`` from data ever reaches the HTML. A message is read into
:class:`Node` s here and written out by the ``slack.html`` template, which escapes every text.

Formatting follows Slack's rules: ``*``, ``_`` and ``~`` open where a word may start and close
where one may end, hugging non-space text, so ``snake_case_name`` and ``2*3*4`` stay as they are;
formatting does not cross a line; inside code only mentions and links are shown. Bare URLs stay
text, as the agent's messages are sent ``verbatim``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby

from markupsafe import Markup

from dq_agent.ui import templating

__all__ = ["EMOJI", "Node", "mentioned", "parse", "to_html"]

# Slack's names for the emoji the agent writes, and the ones people use most.
EMOJI: Mapping[str, str] = {
    # status
    "white_check_mark": "\u2705",
    "heavy_check_mark": "\u2714\ufe0f",
    "ballot_box_with_check": "\u2611\ufe0f",
    "x": "\u274c",
    "negative_squared_cross_mark": "\u274e",
    "warning": "\u26a0\ufe0f",
    "rotating_light": "\U0001f6a8",
    "no_entry": "\u26d4",
    "no_entry_sign": "\U0001f6ab",
    "octagonal_sign": "\U0001f6d1",
    "exclamation": "\u2757",
    "heavy_exclamation_mark": "\u2757",
    "question": "\u2753",
    "information_source": "\u2139\ufe0f",
    "construction": "\U0001f6a7",
    "red_circle": "\U0001f534",
    "large_yellow_circle": "\U0001f7e1",
    "large_green_circle": "\U0001f7e2",
    # time
    "hourglass": "\u231b",
    "hourglass_flowing_sand": "\u23f3",
    "alarm_clock": "\u23f0",
    "date": "\U0001f4c5",
    "zzz": "\U0001f4a4",
    # work
    "wrench": "\U0001f527",
    "hammer": "\U0001f528",
    "hammer_and_wrench": "\U0001f6e0\ufe0f",
    "gear": "\u2699\ufe0f",
    "mag": "\U0001f50d",
    "eyes": "\U0001f440",
    "bulb": "\U0001f4a1",
    "memo": "\U0001f4dd",
    "pushpin": "\U0001f4cc",
    "link": "\U0001f517",
    "lock": "\U0001f512",
    "package": "\U0001f4e6",
    "bug": "\U0001f41b",
    "robot_face": "\U0001f916",
    "speech_balloon": "\U0001f4ac",
    "bell": "\U0001f514",
    "no_bell": "\U0001f515",
    "mega": "\U0001f4e3",
    # arrows and charts
    "arrow_right": "\u27a1\ufe0f",
    "arrow_left": "\u2b05\ufe0f",
    "arrow_up": "\u2b06\ufe0f",
    "arrow_down": "\u2b07\ufe0f",
    "arrows_counterclockwise": "\U0001f504",
    "repeat": "\U0001f501",
    "leftwards_arrow_with_hook": "\u21a9\ufe0f",
    "chart_with_upwards_trend": "\U0001f4c8",
    "chart_with_downwards_trend": "\U0001f4c9",
    "bar_chart": "\U0001f4ca",
    # people
    "+1": "\U0001f44d",
    "thumbsup": "\U0001f44d",
    "-1": "\U0001f44e",
    "thumbsdown": "\U0001f44e",
    "ok_hand": "\U0001f44c",
    "clap": "\U0001f44f",
    "raised_hands": "\U0001f64c",
    "pray": "\U0001f64f",
    "wave": "\U0001f44b",
    "thinking_face": "\U0001f914",
    "slightly_smiling_face": "\U0001f642",
    # celebration
    "tada": "\U0001f389",
    "sparkles": "\u2728",
    "rocket": "\U0001f680",
    "fire": "\U0001f525",
    "100": "\U0001f4af",
    "heart": "\u2764\ufe0f",
}

_FENCE = re.compile(r"```(.+?)```", re.DOTALL)
_QUOTE_REST = re.compile(r"(?:>|&gt;){3} ?")  # >>> quotes the rest of the message
_QUOTE = re.compile(r"(?:>|&gt;) ?")
_ENTITY = re.compile(r"<([^<>\n]*)>")
_MENTION = re.compile(r"<@([^|<>\n]+)[^<>\n]*>")
_CODE = re.compile(r"`([^`\n]+)`")
_EMOJI_CODE = re.compile(r":([a-z0-9_+-]+):")
_SPECIAL = re.compile(r"[<`:*_~]")  # where markup may start
_SLACK_ESCAPE = re.compile(r"&(amp|lt|gt);")
_DECODED = {"amp": "&", "lt": "<", "gt": ">"}
_LINKABLE = re.compile(r"https?://|mailto:", re.IGNORECASE)
_SPECIAL_MENTIONS = ("channel", "here", "everyone")


@dataclass(frozen=True)
class Node:
    """A piece of a message as Slack shows it: ``text``, a line break (``br``), a ``mention``
    or ``channel`` (its ``text`` as shown), a ``link`` to ``url``, or ``children`` in
    ``strong``, ``em``, ``del``, ``code``, ``pre`` or ``quote``."""

    kind: str
    text: str = ""
    url: str = ""
    children: tuple[Node, ...] = ()


_BREAK = Node("br")


def _emphasis(marker: str) -> re.Pattern[str]:
    m = re.escape(marker)
    # Opens unless a letter or digit comes before, closes unless one comes after; the text
    # inside starts and ends with non-space. A <…> inside is taken whole: a marker in a link's
    # label neither opens nor closes.
    return re.compile(rf"(?<![^\W_]){m}(?=[^\s{m}])((?:<[^<>\n]*>|[^<\n])+?)(?<=\S){m}(?![^\W_])")


def to_html(text: str, names: Mapping[str, str]) -> Markup:
    """One message's mrkdwn text as HTML showing what Slack showed.

    ``names`` maps user ids to the names Slack shows (:func:`mentioned` says whose are
    needed); a mention of anyone else shows the label it carries, else the id.
    """
    return templating.macro("slack.html", "message", parse(text, names))


def parse(text: str, names: Mapping[str, str]) -> list[Node]:
    """One message's mrkdwn text as what Slack shows, for :func:`to_html` or a template."""
    parts = _FENCE.split(text)  # every other part is inside ``` ```
    nodes: list[Node] = []
    for i, part in enumerate(parts):
        if i % 2:
            code = part.removeprefix("\n").removesuffix("\n")
            nodes.append(Node("pre", children=tuple(_literal(code, names))))
            continue
        # A code block is a block of its own: the line breaks around it are its edges.
        if i > 0:
            part = part.removeprefix("\n")
        if i < len(parts) - 1:
            part = part.removesuffix("\n")
        nodes += _lines(part, names)
    return nodes


def mentioned(texts: Iterable[str]) -> set[str]:
    """The ids of the people these texts mention: whose names :func:`to_html` needs."""
    return {match.group(1) for text in texts for match in _MENTION.finditer(text)}


def _lines(text: str, names: Mapping[str, str]) -> list[Node]:
    """Lines, each ``>`` line a quote and, after ``>>>``, every line."""
    lines: list[tuple[bool, list[Node]]] = []
    quoting_rest = False
    for line in text.split("\n"):
        quoted = quoting_rest
        if not quoting_rest:
            marker = _QUOTE_REST.match(line) or _QUOTE.match(line)
            if marker is not None:
                quoted, quoting_rest = True, marker.re is _QUOTE_REST
                line = line[marker.end() :]
        lines.append((quoted, _inline(line, names)))
    nodes: list[Node] = []
    for quoted, run in groupby(lines, key=lambda line: line[0]):
        shown = _joined([line for _, line in run])
        nodes += [Node("quote", children=tuple(shown))] if quoted else shown
    return nodes


def _joined(lines: Sequence[list[Node]]) -> list[Node]:
    """Lines one after the other, a line break between each two."""
    nodes: list[Node] = []
    for i, line in enumerate(lines):
        nodes += [_BREAK, *line] if i else line
    return nodes


def _inline(text: str, names: Mapping[str, str]) -> list[Node]:
    """One line (or a link's label)."""
    nodes: list[Node] = []
    pos = 0
    while pos < len(text):
        node, pos = _next(text, pos, names)
        nodes.append(node)
    return nodes


def _next(text: str, pos: int, names: Mapping[str, str]) -> tuple[Node, int]:
    """The markup at ``pos`` (or the plain text up to the next markup), and its end."""
    for pattern, read in _RULES:
        match = pattern.match(text, pos)
        if match is not None:
            node = read(match, names)
            if node is not None:
                return node, match.end()
    special = _SPECIAL.search(text, pos + 1)
    end = special.start() if special is not None else len(text)
    return _plain(text[pos:end]), end


def _plain(text: str) -> Node:
    """Text as written in mrkdwn, Slack's escapes decoded (the template escapes it for HTML)."""
    return Node("text", _unslack(text))


def _unslack(text: str) -> str:
    return _SLACK_ESCAPE.sub(lambda m: _DECODED[m.group(1)], text)


def _literal(text: str, names: Mapping[str, str]) -> list[Node]:
    """Code: mentions and links are shown, nothing else is formatted."""
    parts = _ENTITY.split(text)  # every other part is inside <…>
    return [_reference(p, names) if i % 2 else _plain(p) for i, p in enumerate(parts) if p]


def _reference(inner: str, names: Mapping[str, str]) -> Node:
    """What Slack shows for ``<inner>``: a mention, a channel, a link, or its label as text."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        user_id = target[1:]
        name = names.get(user_id) or _unslack(label) or user_id
        return Node("mention", f"@{name}")
    if target.startswith("#"):
        return Node("channel", f"#{_unslack(label) or target[1:]}")
    if target.startswith("!"):
        command = target[1:]
        if command in _SPECIAL_MENTIONS:
            return Node("mention", f"@{command}")
        if command.startswith("subteam^"):
            return Node("mention", _unslack(label) or "@" + command.removeprefix("subteam^"))
        return _plain(label or command)  # a date shows its fallback text
    url = _unslack(target)
    if _LINKABLE.match(url) is None:
        return _plain(label or target)  # javascript:, data: and the like are never links
    shown = _inline(label, names) if label else [Node("text", url)]
    return Node("link", url=url, children=tuple(shown))


# Markup found at a position; None lets the next rule try (an unknown emoji).
_Read = Callable[[re.Match[str], Mapping[str, str]], Node | None]


def _styled(kind: str) -> _Read:
    return lambda match, names: Node(kind, children=tuple(_inline(match.group(1), names)))


def _emoji(match: re.Match[str], _names: Mapping[str, str]) -> Node | None:
    character = EMOJI.get(match.group(1))
    return None if character is None else Node("text", character)


# Tried in this order wherever markup may start.
_RULES: tuple[tuple[re.Pattern[str], _Read], ...] = (
    (_ENTITY, lambda match, names: _reference(match.group(1), names)),
    (_CODE, lambda match, names: Node("code", children=tuple(_literal(match.group(1), names)))),
    (_EMOJI_CODE, _emoji),
    (_emphasis("*"), _styled("strong")),
    (_emphasis("_"), _styled("em")),
    (_emphasis("~"), _styled("del")),
)
