"""The Anthropic emulator, driven by the real anthropic SDK over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import anthropic
import pytest
from anthropic.types import Message, TextBlock, ToolParam

from dq_agent_sandbox.anthropic import (
    COUNT_TOKENS_PATH,
    DEFAULT_REPLY,
    MESSAGES_PATH,
    AnthropicEmulator,
)
from dq_agent_sandbox.http import LoopbackServer
from dq_agent_sandbox.runner import demo_seed, load_seed, start_sandbox

KEY = "test-anthropic-key"
MODEL = "claude-sonnet-4-6"
SYSTEM = "You triage data-quality incidents."
LOOKUP_TOOL: ToolParam = {
    "name": "lookup_owner",
    "description": "Who owns a table.",
    "input_schema": {
        "type": "object",
        "properties": {"table": {"type": "string"}},
        "required": ["table"],
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(AnthropicEmulator(api_key=KEY)) as server:
        yield server


@pytest.fixture
def emulator(server: LoopbackServer) -> AnthropicEmulator:
    emulator = server.emulator
    assert isinstance(emulator, AnthropicEmulator)
    emulator.reset()
    return emulator


# Clients a test made, closed after it: an open one leaves a socket for the garbage collector,
# whose ResourceWarning (an error here) would land in whichever test runs then.
_OPEN: list[anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def client(server: LoopbackServer, *, key: str = KEY, retries: int = 0) -> anthropic.Anthropic:
    api = anthropic.Anthropic(api_key=key, base_url=server.base_url, max_retries=retries)
    _OPEN.append(api)
    return api


def ask(api: anthropic.Anthropic, text: str = "Is orders healthy?") -> Message:
    return api.messages.create(
        model=MODEL, max_tokens=256, messages=[{"role": "user", "content": text}]
    )


def text_of(message: Message) -> str:
    """The text of a reply's first block, which must be a text block."""
    block = message.content[0]
    assert isinstance(block, TextBlock)
    return block.text


def test_a_scripted_text_reply_comes_back_as_a_message(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script([{"text": "orders looks fine."}])

    message = ask(client(server))

    assert text_of(message) == "orders looks fine."
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.model == MODEL
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 5  # ceil(18 characters / 4)
    assert message.usage.cache_read_input_tokens == 0
    state = emulator.state()
    assert state["pending_script"] == 0
    assert state["usage"] == {
        "input_tokens": message.usage.input_tokens,
        "output_tokens": message.usage.output_tokens,
    }


def test_with_nothing_scripted_the_reply_is_a_fixed_text(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    first, second = ask(client(server)), ask(client(server))

    assert text_of(first) == text_of(second) == DEFAULT_REPLY
    assert first.stop_reason == "end_turn"
    assert first.id != second.id


def test_a_tool_call_and_its_result_make_a_round_trip(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script(
        [
            {"tool_use": {"name": "lookup_owner", "input": {"table": "orders"}}},
            {"match": "pete@example.com", "text": "Pete owns orders."},
        ]
    )
    api = client(server)
    question: Any = {"role": "user", "content": "Who owns orders?"}

    first = api.messages.create(
        model=MODEL, max_tokens=256, tools=[LOOKUP_TOOL], messages=[question]
    )

    assert first.stop_reason == "tool_use"
    call = first.content[0]
    assert call.type == "tool_use"
    assert call.name == "lookup_owner"
    assert call.input == {"table": "orders"}
    assert call.id.startswith("toolu_")
    result: Any = {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "pete@example.com"}],
    }
    second = api.messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[LOOKUP_TOOL],
        messages=[question, first.to_param(), result],
    )

    assert text_of(second) == "Pete owns orders."
    assert second.stop_reason == "end_turn"
    sent = emulator.requests(MESSAGES_PATH)[-1]["body"]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"][0]["id"] == call.id
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call.id, "content": "pete@example.com"}
    ]


def test_a_match_that_the_user_did_not_say_is_refused_and_the_reply_kept(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script([{"match": "restart", "text": "Restarting."}])

    with pytest.raises(anthropic.BadRequestError) as refused:
        ask(client(server), "Is orders healthy?")

    assert "'restart'" in refused.value.message
    assert emulator.state()["pending_script"] == 1
    assert text_of(ask(client(server), "Please restart it")) == "Restarting."


def test_a_reply_may_hold_several_blocks(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script(
        [
            {
                "content": [
                    {"text": "Let me look at both tables."},
                    {"tool_use": {"name": "lookup_owner", "input": {"table": "orders"}}},
                    {"type": "tool_use", "id": "toolu_fixed", "name": "lookup_owner", "input": {}},
                ]
            }
        ]
    )

    message = client(server).messages.create(
        model=MODEL,
        max_tokens=256,
        tools=[LOOKUP_TOOL],
        messages=[{"role": "user", "content": "Who owns orders and refunds?"}],
    )

    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    text, first, second = message.content
    assert text.type == "text" and text.text == "Let me look at both tables."
    assert first.type == "tool_use" and second.type == "tool_use"
    assert first.id.startswith("toolu_") and first.id != second.id
    assert second.id == "toolu_fixed"
    assert message.stop_reason == "tool_use"


def test_a_wrong_api_key_is_an_authentication_error(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script([{"text": "never sent"}])

    with pytest.raises(anthropic.AuthenticationError) as refused:
        ask(client(server, key="not-the-key"))

    assert refused.value.status_code == 401
    assert refused.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
        "request_id": refused.value.request_id,
    }
    assert emulator.state()["pending_script"] == 1


def test_the_key_is_also_taken_as_x_api_key(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    request = urllib.request.Request(
        server.base_url + MESSAGES_PATH,
        data=json.dumps(body).encode(),
        headers={
            "x-api-key": KEY,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=5) as reply:
        message = json.load(reply)

    assert message["content"] == [{"type": "text", "text": DEFAULT_REPLY}]
    assert set(message) == {
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert "x-api-key" not in emulator.requests()[0]["headers"]


def test_a_missing_max_tokens_is_a_bad_request_naming_the_field(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}

    with pytest.raises(anthropic.BadRequestError) as refused:
        client(server).post(MESSAGES_PATH, body=body, cast_to=Message)

    assert refused.value.type == "invalid_request_error"
    assert refused.value.api_message == "max_tokens: Field required"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        ({"messages": []}, "messages: List should have at least 1 item after validation, not 0"),
        (
            {"messages": [{"role": "assistant", "content": "hi"}]},
            'messages: first message must use the "user" role',
        ),
        ({"messages": [{"role": "bot", "content": "hi"}]}, "messages.0.role: Input should be"),
        ({"temperature": 1.5}, "temperature: Input should be less than or equal to 1"),
        ({"system": [{"type": "image"}]}, "system.0.type: Input should be 'text'"),
        ({"tools": [{"name": "x"}]}, "tools.0.input_schema: Field required"),
        ({"tools": [LOOKUP_TOOL, LOOKUP_TOOL]}, "tools: Tool names must be unique."),
        ({"tool_choice": {"type": "tool", "name": "x"}}, "tool_choice:"),
        ({"metadata": {"team": "dq"}}, "metadata.team: Extra inputs are not permitted"),
        ({"stream": True}, "stream: streaming is not supported"),
        (
            {
                "messages": [
                    {"role": "user", "content": "Who owns orders?"},
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "toolu_a", "name": "x", "input": {}}
                        ],
                    },
                    {"role": "user", "content": "never mind"},
                ]
            },
            "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_a.",
        ),
    ],
)
def test_a_body_the_api_would_refuse_is_a_bad_request(
    server: LoopbackServer, emulator: AnthropicEmulator, change: dict[str, Any], message: str
) -> None:
    body = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}

    with pytest.raises(anthropic.BadRequestError) as refused:
        client(server).post(MESSAGES_PATH, body={**body, **change}, cast_to=Message)

    assert (refused.value.api_message or "").startswith(message)


def test_a_tool_result_for_an_unknown_tool_use_is_a_bad_request(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    messages: Any = [
        {"role": "user", "content": "Who owns orders?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_a", "name": "lookup_owner", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_b", "content": "pete"}],
        },
    ]

    with pytest.raises(anthropic.BadRequestError) as refused:
        client(server).messages.create(
            model=MODEL, max_tokens=64, tools=[LOOKUP_TOOL], messages=messages
        )

    assert refused.value.api_message == (
        "messages.2.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_b. "
        "Each `tool_result` block must have a corresponding `tool_use` block in the previous "
        "message."
    )


def test_an_overloaded_api_is_retried_by_the_sdk(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script([{"text": "back again"}])
    emulator.fail_next(529, "overloaded_error", "Overloaded", retry_after=0.01)
    started = time.monotonic()

    message = ask(client(server, retries=2))

    assert time.monotonic() - started < 1
    assert text_of(message) == "back again"
    assert len(emulator.requests(MESSAGES_PATH)) == 2


def test_an_overload_without_retries_is_an_overloaded_error(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.script([{"error": {"status": 529, "message": "Overloaded"}}, {"text": "ok"}])

    with pytest.raises(anthropic.OverloadedError) as refused:
        ask(client(server))

    assert refused.value.status_code == 529
    assert refused.value.type == "overloaded_error"
    assert refused.value.api_message == "Overloaded"
    assert text_of(ask(client(server))) == "ok"


def test_a_rate_limit_carries_retry_after_zero(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    emulator.fail_next(429)

    with pytest.raises(anthropic.RateLimitError) as refused:
        ask(client(server))

    assert refused.value.type == "rate_limit_error"
    assert refused.value.response.headers["retry-after"] == "0"


def test_requests_show_the_system_prompt_and_tools_as_sent(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    client(server).messages.create(
        model=MODEL,
        max_tokens=128,
        system=SYSTEM,
        tools=[LOOKUP_TOOL],
        tool_choice={"type": "auto"},
        metadata={"user_id": "dq-agent"},
        messages=[{"role": "user", "content": "Who owns orders?"}],
    )

    [sent] = emulator.requests()
    assert sent["method"] == "POST" and sent["path"] == MESSAGES_PATH
    assert sent["body"]["system"] == SYSTEM
    assert sent["body"]["tools"] == [LOOKUP_TOOL]
    assert sent["body"]["tool_choice"] == {"type": "auto"}
    assert sent["body"]["metadata"] == {"user_id": "dq-agent"}
    assert "anthropic-version" in sent["headers"]
    assert "authorization" not in sent["headers"] and "x-api-key" not in sent["headers"]
    assert emulator.state()["requests"] == [sent]


def test_count_tokens_uses_the_same_estimate(
    server: LoopbackServer, emulator: AnthropicEmulator
) -> None:
    api = client(server)
    question: Any = [{"role": "user", "content": "Who owns orders?"}]

    counted = api.messages.count_tokens(
        model=MODEL, system=SYSTEM, tools=[LOOKUP_TOOL], messages=question
    )
    bare = api.messages.count_tokens(model=MODEL, messages=question)
    message = api.messages.create(
        model=MODEL, max_tokens=64, system=SYSTEM, tools=[LOOKUP_TOOL], messages=question
    )

    assert counted.input_tokens == message.usage.input_tokens
    assert bare.input_tokens == 4  # ceil(16 characters / 4)
    assert counted.input_tokens > bare.input_tokens
    assert emulator.state()["usage"]["input_tokens"] == message.usage.input_tokens
    assert len(emulator.requests(COUNT_TOKENS_PATH)) == 2


def test_a_malformed_script_is_refused_before_anything_is_queued(
    emulator: AnthropicEmulator,
) -> None:
    with pytest.raises(ValueError, match=r"script\[1\]\.tool_use\.input"):
        emulator.script([{"text": "fine"}, {"tool_use": {"name": "x", "input": "nope"}}])
    with pytest.raises(ValueError, match=r"script\[0\]: unknown key\(s\) txt"):
        emulator.script([{"txt": "typo"}])

    assert emulator.state()["pending_script"] == 0


def test_the_sandbox_serves_anthropic_next_to_the_others(tmp_path: Any) -> None:
    seed = demo_seed(datetime(2026, 11, 24, 16, 0, tzinfo=UTC))
    seed["anthropic"] = {"script": [{"text": "from the seed"}]}
    with start_sandbox(seed) as sandbox:
        info = sandbox.info["anthropic"]
        assert info == {
            "base_url": sandbox.servers["anthropic"].base_url,
            "api_key": "sandbox-anthropic-key",
        }
        api = anthropic.Anthropic(api_key=info["api_key"], base_url=info["base_url"], max_retries=0)
        _OPEN.append(api)
        assert text_of(ask(api)) == "from the seed"
        with urllib.request.urlopen(info["base_url"] + "/_sandbox/state", timeout=5) as reply:
            assert json.load(reply)["pending_script"] == 0
    seed_file = tmp_path / "seed.yml"
    seed_file.write_text("anthropic:\n  script:\n    - text: hello\n")
    assert load_seed(seed_file) == {"anthropic": {"script": [{"text": "hello"}]}}
