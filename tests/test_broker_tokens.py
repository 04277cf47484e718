"""The broker's tokens: issued once, kept by hash, refused the moment they are out of scope."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from dq_agent.broker.tokens import Refused, TokenBook
from dq_agent.cli import main

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "broker" / "tokens.db"


@pytest.fixture
def book(path: Path) -> Iterator[TokenBook]:
    book = TokenBook(path)
    yield book
    book.dispose()


def test_a_new_token_authenticates_with_the_secret_shown_once(book: TokenBook) -> None:
    token, presented = book.create(
        suites=["crm_*"], actions=["check", "notify"], ttl=DAY, now=NOW, note="nightly"
    )
    assert presented.startswith(f"dqb_{token.id}_")
    assert len(token.id) == 12 and int(token.id, 16) >= 0
    assert token.expires_at == NOW + DAY and token.revoked_at is None
    assert book.authenticate(presented, NOW + timedelta(hours=1)) == token


def test_the_database_keeps_the_hash_not_the_secret(book: TokenBook, path: Path) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    secret = presented.removeprefix(f"dqb_{token.id}_")
    book.dispose()
    assert secret.encode() not in path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_times_come_back_aware_and_in_utc(book: TokenBook, path: Path) -> None:
    in_paris = datetime(2026, 12, 4, 11, 0, tzinfo=timezone(timedelta(hours=1)))
    book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=in_paris)
    reopened = TokenBook(path)
    (listed,) = reopened.list()
    reopened.dispose()
    assert listed.created_at == NOW and listed.created_at.tzinfo == UTC
    assert listed.expires_at == NOW + DAY and listed.expires_at.tzinfo == UTC


def test_a_wrong_secret_is_refused_without_repeating_it(book: TokenBook) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    wrong = f"dqb_{token.id}_{'x' * 43}"
    with pytest.raises(Refused) as refused:
        book.authenticate(wrong, NOW)
    assert (refused.value.status, refused.value.reason) == (401, "bad_secret")
    assert refused.value.token_id == token.id
    assert str(refused.value) == f"token {token.id}: the secret does not match"
    assert wrong not in str(refused.value) and "x" * 43 not in str(refused.value)


@pytest.mark.parametrize(
    "presented",
    ["hunter2-is-my-password", "dqb_short_secretsecretsecretsecret", "Bearer dqb_", ""],
)
def test_malformed_text_is_refused_and_not_echoed(book: TokenBook, presented: str) -> None:
    with pytest.raises(Refused) as refused:
        book.authenticate(presented, NOW)
    assert (refused.value.status, refused.value.reason) == (401, "malformed")
    assert refused.value.token_id is None
    assert str(refused.value) == (
        "a broker token looks like dqb_<12 hex chars>_<secret>; the one presented does not"
    )


def test_an_unknown_id_is_refused(book: TokenBook) -> None:
    with pytest.raises(Refused) as refused:
        book.authenticate(f"dqb_0123456789ab_{'s' * 43}", NOW)
    assert (refused.value.status, refused.value.reason) == (401, "unknown_token")
    assert str(refused.value) == "no token 0123456789ab is known to this broker"


def test_an_expired_token_is_refused(book: TokenBook) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    with pytest.raises(Refused) as refused:
        book.authenticate(presented, NOW + DAY + timedelta(seconds=1))
    assert (refused.value.status, refused.value.reason) == (401, "expired")
    assert str(refused.value) == f"token {token.id} expired at 2026-12-05 10:00 UTC"


def test_a_revoked_token_is_refused_at_once_by_every_reader(book: TokenBook, path: Path) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    # Another process's view of the same file, opened before the revocation.
    other = TokenBook(path)
    assert other.authenticate(presented, NOW) == token
    revoked = book.revoke(token.id, NOW)
    assert revoked.revoked_at == NOW
    for reader in (book, other):
        with pytest.raises(Refused) as refused:
            reader.authenticate(presented, NOW + timedelta(minutes=1))
        assert (refused.value.status, refused.value.reason) == (401, "revoked")
        assert str(refused.value) == f"token {token.id} was revoked at 2026-12-04 10:00 UTC"
        assert presented not in str(refused.value)
    other.dispose()


def test_revoking_twice_keeps_the_first_time(book: TokenBook) -> None:
    token, _ = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    book.revoke(token.id, NOW)
    assert book.revoke(token.id, NOW + DAY).revoked_at == NOW


def test_revoking_an_unknown_token_says_so(book: TokenBook) -> None:
    with pytest.raises(LookupError) as missing:
        book.revoke("feedfacecafe", NOW)
    assert str(missing.value) == "no token 'feedfacecafe'"


def test_authorize_refuses_an_action_the_token_was_not_given(book: TokenBook) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check", "notify"], ttl=DAY, now=NOW)
    with pytest.raises(Refused) as refused:
        book.authorize(presented, action="correct", suite="crm_opportunities", now=NOW)
    assert (refused.value.status, refused.value.reason) == (403, "action_not_allowed")
    assert str(refused.value) == f"token {token.id} may not `correct`; it allows: check, notify"


def test_authorize_refuses_a_suite_outside_the_patterns(book: TokenBook) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    with pytest.raises(Refused) as refused:
        book.authorize(presented, action="check", suite="hr_payroll", now=NOW)
    assert (refused.value.status, refused.value.reason) == (403, "suite_not_allowed")
    assert str(refused.value) == (
        f"token {token.id} may not act on suite 'hr_payroll'; it covers: crm_*"
    )


def test_a_pattern_covers_the_suites_it_matches(book: TokenBook) -> None:
    token, presented = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    assert book.authorize(presented, action="check", suite="crm_opportunities", now=NOW) == token
    # No suite: only the action counts.
    assert book.authorize(presented, action="check", suite=None, now=NOW) == token
    assert not token.allows_suite("CRM_opportunities")


@pytest.mark.parametrize(
    ("suites", "actions", "ttl", "message"),
    [
        (
            ["crm_*"],
            ["check", "delete"],
            DAY,
            "unknown action 'delete'; valid: check, read, correct, notify, restart, investigate",
        ),
        (
            ["crm_*"],
            [],
            DAY,
            "a token needs at least one action; valid: check, read, correct, notify, restart, "
            "investigate",
        ),
        ([], ["check"], DAY, "a token needs at least one suite pattern"),
        ([""], ["check"], DAY, "a token needs at least one suite pattern"),
        ("crm_*", ["check"], DAY, "suites must be a list of strings, not the string 'crm_*'"),
        (["crm_*"], ["check"], timedelta(0), "a token's ttl must be positive, got 0:00:00"),
    ],
)
def test_create_rejects_what_cannot_be_a_token(
    book: TokenBook, suites: list[str], actions: list[str], ttl: timedelta, message: str
) -> None:
    with pytest.raises(ValueError) as rejected:
        book.create(suites=suites, actions=actions, ttl=ttl, now=NOW)
    assert str(rejected.value).startswith(message)
    assert book.list() == []


def test_list_shows_the_newest_first(book: TokenBook) -> None:
    first, _ = book.create(suites=["a_*"], actions=["check"], ttl=DAY, now=NOW)
    third, _ = book.create(suites=["c_*"], actions=["read"], ttl=DAY, now=NOW + 2 * DAY)
    second, _ = book.create(
        suites=["b_*"], actions=["investigate"], tools=["read_evidence"], ttl=DAY, now=NOW + DAY
    )
    assert book.list() == [third, second, first]
    assert book.list()[1].tools == ("read_evidence",)


def test_a_token_that_may_investigate_reads_only_unless_its_tools_are_named(
    book: TokenBook,
) -> None:
    reader, _ = book.create(suites=["crm_*"], actions=["investigate"], ttl=DAY, now=NOW)
    assert reader.tools == (
        "list_incidents",
        "read_evidence",
        "read_runbook",
        "read_past_incidents",
    )
    proposer, _ = book.create(
        suites=["crm_*"],
        actions=["investigate"],
        tools=["list_incidents", "propose_correction", "list_incidents"],
        ttl=DAY,
        now=NOW,
    )
    assert proposer.tools == ("list_incidents", "propose_correction")
    # Tools are for MCP only: a token that cannot investigate has none.
    checker, _ = book.create(suites=["crm_*"], actions=["check"], ttl=DAY, now=NOW)
    assert checker.tools == ()


TOOL_NAMES = (
    "read_evidence, read_runbook, read_past_incidents, classify, propose_correction, "
    "draft_message, list_incidents"
)


@pytest.mark.parametrize(
    ("actions", "tools", "message"),
    [
        (
            ["investigate"],
            ["read_evidence", "run_sql"],
            f"unknown tool 'run_sql'; valid: {TOOL_NAMES}",
        ),
        (
            ["investigate"],
            [],
            f"a token that may investigate needs at least one tool; valid: {TOOL_NAMES}",
        ),
        (
            ["check"],
            ["read_evidence"],
            "tools are what a token may use over MCP: give it the investigate action too",
        ),
        (
            ["investigate"],
            "read_evidence",
            "tools must be a list of strings, not the string 'read_evidence'",
        ),
    ],
)
def test_create_rejects_tools_that_cannot_be_a_tokens(
    book: TokenBook, actions: list[str], tools: list[str], message: str
) -> None:
    with pytest.raises(ValueError) as rejected:
        book.create(suites=["crm_*"], actions=actions, tools=tools, ttl=DAY, now=NOW)
    assert str(rejected.value) == message
    assert book.list() == []


def test_the_command_line_names_a_tokens_tools_and_lists_them(tmp_path: Path) -> None:
    home = ["--home", str(tmp_path / "broker")]
    create = ["broker", "token", "create", *home, "--suites", "crm_*", "--actions"]
    outcome = CliRunner().invoke(
        main, [*create, "investigate", "--tools", "list_incidents, read_evidenc"]
    )
    assert outcome.exit_code == 2
    assert f"unknown tool 'read_evidenc'; valid: {TOOL_NAMES}" in " ".join(outcome.stderr.split())
    outcome = CliRunner().invoke(main, [*create, "check", "--tools", "read_evidence"])
    assert outcome.exit_code == 2
    assert "give it the investigate action too" in outcome.stderr
    outcome = CliRunner().invoke(
        main, [*create, "investigate", "--tools", "list_incidents,propose_correction"]
    )
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout.startswith("dqb_")
    outcome = CliRunner().invoke(main, [*create, "investigate", "--note", "on-call"])
    assert outcome.exit_code == 0, outcome.output

    listed = CliRunner().invoke(main, ["broker", "token", "list", *home])
    assert listed.exit_code == 0, listed.output
    reader, proposer = listed.stdout.splitlines()
    assert "actions investigate  tools list_incidents,read_evidence,read_runbook," in reader
    assert "actions investigate  tools list_incidents,propose_correction  until" in proposer
    listed = CliRunner().invoke(main, ["broker", "token", "list", *home, "--format", "json"])
    rows = json.loads(listed.stdout)
    assert [row["tools"] for row in rows] == [
        ["list_incidents", "read_evidence", "read_runbook", "read_past_incidents"],
        ["list_incidents", "propose_correction"],
    ]
