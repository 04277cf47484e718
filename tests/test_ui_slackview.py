"""An incident's Slack thread on the dashboard reads as it did in Slack, and nothing in the
data can add a tag, a link or a mention to the page."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any

import pytest

from dq_agent.config.models import SlackSettings
from dq_agent.escalate import messages
from dq_agent.escalate.slack import SlackApi, SlackError
from dq_agent.ui.slackview import EMOJI, mentioned, to_html
from dq_agent_sandbox.http import LoopbackServer, Request, Response
from dq_agent_sandbox.slack import SlackEmulator

TOKEN = "xoxb-test"
PETE_ID, LEAD_ID, STRANGER_ID = "UPETE00001", "ULEAD00001", "USTRANGER1"
NAMES = {PETE_ID: "Pete", LEAD_ID: "Finance Lead"}
PACKAGE = Path(__file__).resolve().parent.parent / "dq_agent"


def html(text: str) -> str:
    return to_html(text, NAMES)


# -- people and channels -------------------------------------------------------------------------


def test_a_mention_shows_the_name_slack_shows() -> None:
    assert html(f"<@{PETE_ID}> please look") == '<span class="mention">@Pete</span> please look'


def test_a_mention_of_someone_not_looked_up_shows_its_label_else_its_id() -> None:
    assert html(f"<@{STRANGER_ID}|pete.m>") == '<span class="mention">@pete.m</span>'
    assert html(f"<@{STRANGER_ID}>") == f'<span class="mention">@{STRANGER_ID}</span>'


def test_a_looked_up_name_wins_over_the_label() -> None:
    assert html(f"<@{PETE_ID}|pete.m>") == '<span class="mention">@Pete</span>'


def test_a_name_is_escaped_as_it_is_shown() -> None:
    names = {PETE_ID: "Pete <b>&amp;</b>"}

    assert to_html(f"<@{PETE_ID}>", names) == (
        '<span class="mention">@Pete &lt;b&gt;&amp;amp;&lt;/b&gt;</span>'
    )


@pytest.mark.parametrize("who", ["channel", "here", "everyone"])
def test_a_mention_of_everyone_in_the_channel(who: str) -> None:
    assert html(f"<!{who}> heads up") == f'<span class="mention">@{who}</span> heads up'


def test_a_user_group_shows_its_handle() -> None:
    assert html("<!subteam^S0123ABCD|@data-owners>") == (
        '<span class="mention">@data-owners</span>'
    )


def test_a_channel_shows_its_name() -> None:
    assert html("see <#C0123ABCD|finance-data>") == (
        'see <span class="channel">#finance-data</span>'
    )
    assert html("<#C0123ABCD>") == '<span class="channel">#C0123ABCD</span>'


def test_a_date_shows_its_fallback_text() -> None:
    assert html("<!date^1764000000^{date_short}|Nov 24, 2025>") == "Nov 24, 2025"


def test_mentioned_lists_whose_names_to_look_up_once() -> None:
    texts = [
        f"<@{PETE_ID}> and <@{LEAD_ID}|lead>",
        f"<@{PETE_ID}> again",
        "data that looks like a mention: &lt;@UFAKE00001&gt;",
        "<!channel> <#C0123ABCD|finance-data>",
    ]

    assert mentioned(texts) == {PETE_ID, LEAD_ID}


# -- links ---------------------------------------------------------------------------------------


def test_a_link_shows_its_label() -> None:
    assert html("<https://acme.my.salesforce.com/lightning/r/Opportunity/006/view|Acme deal>") == (
        '<a href="https://acme.my.salesforce.com/lightning/r/Opportunity/006/view" '
        'rel="noreferrer">Acme deal</a>'
    )


def test_a_link_without_a_label_shows_its_address() -> None:
    assert html("<http://example.com/a?b=1&amp;c=2>") == (
        '<a href="http://example.com/a?b=1&amp;c=2" rel="noreferrer">'
        "http://example.com/a?b=1&amp;c=2</a>"
    )


def test_a_mail_link() -> None:
    assert html("<mailto:pete@acme.com|Pete>") == (
        '<a href="mailto:pete@acme.com" rel="noreferrer">Pete</a>'
    )


def test_a_label_is_formatted_as_slack_formats_it() -> None:
    assert html("<https://example.com|This message *is* a link :link:>") == (
        '<a href="https://example.com" rel="noreferrer">This message <strong>is</strong> a link '
        "\U0001f517</a>"
    )


@pytest.mark.parametrize(
    ("mrkdwn", "shown"),
    [
        ("<javascript:alert(1)|Approve here>", "Approve here"),
        ("<JavaScript:alert(1)|Approve here>", "Approve here"),
        ("<javascript:alert(1)>", "javascript:alert(1)"),
        ("<data:text/html;base64,PHNjcmlwdD4=|open>", "open"),
        ("<vbscript:msgbox|open>", "open"),
        ("< https://example.com|open>", "open"),
        ("<//evil.example/x|open>", "open"),
    ],
)
def test_only_web_and_mail_addresses_become_links(mrkdwn: str, shown: str) -> None:
    assert html(mrkdwn) == shown


def test_quotes_in_a_link_stay_inside_its_attribute() -> None:
    assert html('<https://example.com/?q="x" onclick="alert(1)|say "hi" \'now\'>') == (
        '<a href="https://example.com/?q=&quot;x&quot; onclick=&quot;alert(1)" '
        'rel="noreferrer">say &quot;hi&quot; &#x27;now&#x27;</a>'
    )


# -- formatting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mrkdwn", "shown"),
    [
        ("*bold*", "<strong>bold</strong>"),
        ("_italic_", "<em>italic</em>"),
        ("~struck~", "<del>struck</del>"),
        ("`code`", "<code>code</code>"),
        ("a *few bold words* here", "a <strong>few bold words</strong> here"),
        ("(*bold*), *bold*.", "(<strong>bold</strong>), <strong>bold</strong>."),
        ("_*bold italic*_", "<em><strong>bold italic</strong></em>"),
        ("*bold _and italic_*", "<strong>bold <em>and italic</em></strong>"),
        ("*crossed _markers* end_", "<strong>crossed _markers</strong> end_"),
        ("*Hello <@UPETE00001>*", '<strong>Hello <span class="mention">@Pete</span></strong>'),
        ("*:tada: done*", "<strong>\U0001f389 done</strong>"),
    ],
)
def test_formatting(mrkdwn: str, shown: str) -> None:
    assert html(mrkdwn) == shown


@pytest.mark.parametrize(
    "mrkdwn",
    [
        "snake_case_name",
        "ACME_CORP_US",
        "2*3*4",
        "price*seats*discount",
        "a~b~c",
        "* not bold*",
        "*not bold *",
        "*bold*text",
        "_half",
        "**",
        "*across\nlines*",
    ],
)
def test_markers_inside_words_or_apart_from_text_stay_as_they_are(mrkdwn: str) -> None:
    assert html(mrkdwn) == mrkdwn.replace("\n", "<br>")


def test_code_is_not_formatted_but_shows_mentions_and_links() -> None:
    assert html(f"`*x* :zzz: <@{PETE_ID}> &lt;b&gt;`") == (
        '<code>*x* :zzz: <span class="mention">@Pete</span> &lt;b&gt;</code>'
    )


def test_a_code_block_keeps_its_lines_and_is_not_formatted() -> None:
    assert html("Ran:\n```\nSELECT *\nFROM orders_v2 -- _all_ of it\n```\nDone.") == (
        "Ran:<pre>SELECT *\nFROM orders_v2 -- _all_ of it</pre>Done."
    )


def test_an_unclosed_code_block_is_text() -> None:
    assert html("```not closed") == "```not closed"


def test_lines_break_where_the_message_does() -> None:
    assert html("*Evidence*\n• one\n\n• two") == "<strong>Evidence</strong><br>• one<br><br>• two"


def test_quoted_lines_are_one_quote() -> None:
    # Slack stores a typed ">" as "&gt;"; the agent writes ">" itself.
    assert html("*Runbook*\n> Pete keeps this tab.\n&gt;Restore it.\nThanks") == (
        "<strong>Runbook</strong><blockquote>Pete keeps this tab.<br>Restore it.</blockquote>Thanks"
    )


def test_three_quote_marks_quote_the_rest_of_the_message() -> None:
    assert html("Said:\n&gt;&gt;&gt; first\n> second\nthird") == (
        "Said:<blockquote>first<br>&gt; second<br>third</blockquote>"
    )


def test_a_greater_than_inside_a_line_is_no_quote() -> None:
    assert html("amount &gt; 10") == "amount &gt; 10"


# -- emoji ---------------------------------------------------------------------------------------


def test_an_emoji_code_shows_its_character() -> None:
    assert html(":white_check_mark: Resolved :+1:") == "\u2705 Resolved \U0001f44d"


def test_an_unknown_emoji_code_stays_text() -> None:
    assert html(":custom_party_parrot: at 10:30:45") == ":custom_party_parrot: at 10:30:45"


# An emoji code the agent writes: `:name:` standing alone in a string, so neither a Sphinx
# role (":func:`x`") nor part of a key ("incident:{id}:root:{who}").
_CODE_IN_TEXT = re.compile(r"(?<!\S):([a-z0-9_+-]+):(?!\S)")


def emoji_written_by_the_agent() -> set[str]:
    """Emoji codes in the string literals of the code that writes Slack messages."""
    codes: set[str] = set()
    for folder in ("escalate", "remedy", "restart"):
        for path in sorted((PACKAGE / folder).rglob("*.py")):
            codes |= _emoji_in(ast.parse(path.read_text(encoding="utf-8")))
    return codes


def _emoji_in(tree: ast.AST) -> set[str]:
    fstrings = [node for node in ast.walk(tree) if isinstance(node, ast.JoinedStr)]
    parts = {id(value) for node in fstrings for value in node.values}
    texts = [
        # An f-string is read whole, its fields as {}: a code must stand alone in it.
        "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
        for node in fstrings
    ]
    texts += [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in parts
    ]
    return {code for text in texts for code in _CODE_IN_TEXT.findall(text)}


def test_every_emoji_the_agent_writes_shows_as_its_character() -> None:
    written = emoji_written_by_the_agent()

    assert {"rotating_light", "white_check_mark", "zzz", "ok_hand"} <= written
    assert sorted(code for code in written if code not in EMOJI) == []


def test_the_emoji_scan_reads_messages_not_keys_or_docstrings() -> None:
    tree = ast.parse(
        '"""See :func:`reply`."""\n'
        'key = f"incident:{i}:root:{who}"\n'
        'text = f":tada: {n} rows back"\n'
        'icon = ":zzz:"\n'
    )

    assert _emoji_in(tree) == {"tada", "zzz"}


# -- escaping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mrkdwn", "shown"),
    [
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ("R&amp;D", "R&amp;D"),
        # "&lt;" in the data: escaped for Slack, then for HTML, it reads "&lt;" again.
        ("&amp;lt;b&amp;gt;", "&amp;lt;b&amp;gt;"),
        ("&amp;amp;", "&amp;amp;"),
        ("&lt;@UFAKE00001&gt; &lt;!channel&gt;", "&lt;@UFAKE00001&gt; &lt;!channel&gt;"),
        ("&lt;https://evil.example|Approve&gt;", "&lt;https://evil.example|Approve&gt;"),
        ('it\'s "quoted"', "it&#x27;s &quot;quoted&quot;"),
        ("&quot; &#60; &nbsp;", "&amp;quot; &amp;#60; &amp;nbsp;"),
    ],
)
def test_slack_escapes_are_decoded_once_and_html_escaped_once(mrkdwn: str, shown: str) -> None:
    assert html(mrkdwn) == shown


def test_markup_that_is_no_link_shows_no_tag() -> None:
    # Raw "<…>" in a stored text is the agent's markup; anything else in it is shown as text.
    assert html("<script>alert(1)</script>") == "scriptalert(1)/script"
    assert html("a < b") == "a &lt; b"


# A check's detail full of what Slack and HTML read as markup.
DETAIL = (
    'Amount 10,000,000 on ACME_CORP_US (seats*price = 2*3*4) by R&D <script>alert("x")</script>'
    " <@UFAKE00001> <!channel> <https://evil.example|Approve here> &lt;b&gt; a > b"
)
INCIDENT = {"id": 7, "summary": "3 rows look wrong"}


def test_data_in_a_nudge_shows_exactly_as_it_was() -> None:
    text = messages.reply(INCIDENT, "nudged", DETAIL, [f"<@{PETE_ID}>"])

    assert html(text) == (
        f'<span class="mention">@Pete</span> {escape(DETAIL)}. '
        "Buttons above: I fixed it, Snooze, This is expected."
    )
    assert mentioned([text]) == {PETE_ID}


def test_data_in_a_resolution_shows_exactly_as_it_was() -> None:
    text = messages.reply(INCIDENT, "resolved", DETAIL, [f"<@{PETE_ID}>"])

    assert html(text) == f"\u2705 Resolved: {escape(DETAIL)}. Closing incident #7."
    assert mentioned([text]) == set()


def test_a_value_that_is_itself_mrkdwn_is_formatted_as_slack_formatted_it() -> None:
    # messages.escape makes "&", "<" and ">" inert, not "*", "_", "~" or "`": Slack formats a
    # value like "*urgent*" too, and the page shows what Slack showed.
    text = messages.reply({"id": 7}, "escalated", "Status is *urgent* and _pending_", [])

    assert html(text) == "Status is <strong>urgent</strong> and <em>pending</em>."


# -- names from Slack ----------------------------------------------------------------------------


@pytest.fixture
def slack() -> Iterator[tuple[SlackEmulator, SlackApi]]:
    emulator = SlackEmulator(token=TOKEN)
    with LoopbackServer(emulator) as server:
        yield emulator, SlackApi(settings(server))


def settings(server: LoopbackServer) -> SlackSettings:
    return SlackSettings(
        token=TOKEN,
        signing_secret="unused",
        base_url=f"{server.base_url}/api/",
    )


def test_a_name_and_an_e_mail_address_come_from_one_users_info_call(
    slack: tuple[SlackEmulator, SlackApi],
) -> None:
    emulator, api = slack
    emulator.seed(
        {
            "users": [
                {"id": PETE_ID, "email": "pete@acme.com", "name": "pete", "real_name": "Pete M"}
            ]
        }
    )

    assert api.name_of(PETE_ID) == "pete"
    assert api.email_of(PETE_ID) == "pete@acme.com"
    assert api.name_of(PETE_ID) == "pete"
    assert emulator.requests_for("users.info") == 1


def test_a_name_of_someone_slack_does_not_know_is_a_permanent_error(
    slack: tuple[SlackEmulator, SlackApi],
) -> None:
    _emulator, api = slack

    with pytest.raises(SlackError, match="users.info UNOBODY0001: user_not_found") as raised:
        api.name_of("UNOBODY0001")

    assert raised.value.transient is False


class UsersInfo:
    """``users.info`` answering as Slack does for people with fewer names set."""

    name = "slack"

    def __init__(self, users: dict[str, dict[str, Any]]) -> None:
        self.users = users

    def handle(self, request: Request) -> Response:
        user_id = request.param("user") or request.form().get("user", "")
        return Response(200, {"ok": True, "user": self.users[user_id]})


def test_without_a_display_name_slack_shows_the_full_name_else_the_username() -> None:
    users = {
        PETE_ID: {
            "id": PETE_ID,
            "name": "pete.m",
            "real_name": "Pete Moss",
            "profile": {"display_name": "", "real_name": "Pete Moss", "email": "pete@acme.com"},
        },
        LEAD_ID: {"id": LEAD_ID, "name": "lead", "profile": {"display_name": "", "real_name": ""}},
    }
    with LoopbackServer(UsersInfo(users)) as server:
        api = SlackApi(settings(server))

        assert api.name_of(PETE_ID) == "Pete Moss"
        assert api.name_of(LEAD_ID) == "lead"
        assert api.email_of(LEAD_ID) is None
