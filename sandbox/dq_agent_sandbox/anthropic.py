"""A loopback stand-in for the Anthropic Messages API, served by :class:`LoopbackServer`.

It speaks the API's wire format, so the real ``anthropic.Anthropic`` client works against it
with ``base_url=server.base_url``: ``POST /v1/messages`` answers with a ``message`` object and
``POST /v1/messages/count_tokens`` with ``{"input_tokens": n}``. A request needs the API key,
as ``x-api-key`` or as ``Authorization: Bearer …`` (which is how the SDK sends it), and an
``anthropic-version`` header of any value. Errors are
``{"type": "error", "error": {"type", "message"}, "request_id"}`` with the API's statuses: 400
``invalid_request_error`` for a body the API would refuse (the message names the field, as
``max_tokens: Field required``), 401 ``authentication_error``, 404 ``not_found_error``, and
whatever a test asks for with :meth:`AnthropicEmulator.fail_next` or a scripted error.

There is no model: what the "assistant" says comes from a script of replies queued with
:meth:`AnthropicEmulator.script`, used in order, one per ``/v1/messages`` call, whatever the
request asks. A reply is one of

- ``{"text": "…"}``: one text block, ``stop_reason`` ``end_turn``;
- ``{"tool_use": {"name": …, "input": {…}, "id"?: …}}``: one tool call, ``stop_reason``
  ``tool_use`` (an ``id`` is generated unless given);
- ``{"content": [{"text": …}, {"tool_use": {…}}, …]}``: several blocks (the wire shapes
  ``{"type": "text", …}`` and ``{"type": "tool_use", …}`` are accepted too);
- ``{"error": {"status": 529, "type"?: "overloaded_error", "message"?: …, "retry_after"?: s}}``:
  that error instead of a message (a 429 carries ``retry-after: 0`` unless told otherwise).

Any of them may add ``"stop_reason"`` (overriding the default), ``"stop_sequence"``,
``"usage": {"input_tokens"?, "output_tokens"?}`` (overriding the estimates) and
``"match": "<substring>"``: the reply then expects the last user message (its text, or the
content of its ``tool_result`` blocks) to contain that substring; when it does not, the call is
answered with a 400 naming the expectation and the reply stays queued, so a test sees at once
that the agent said something else. With nothing queued the reply is a text block
:data:`DEFAULT_REPLY`.

Where the emulation stops, it says so here rather than guessing:

- no streaming (``"stream": true`` is a 400), no real model, no model catalogue: any model name
  is accepted and echoed, and ``max_tokens`` is checked to be at least 1 but never truncates a
  scripted reply (there is no ``max_tokens`` stop unless scripted);
- token counts are estimates, a quarter of the characters rounded up (at least 1): for input,
  the system prompt, the messages' text, ``tool_use`` inputs and ``tool_result`` contents, and
  the tool definitions as JSON; for output, the reply's text and tool calls as JSON. Other
  blocks (images, documents) count their JSON;
- no prompt caching (``cache_control`` is accepted; cache token counts are always 0), no
  extended thinking, no server tools run (their definitions are accepted unchecked), no
  message batches, files, models or other endpoints;
- the body is checked as the API documents it: ``model``, ``max_tokens``, ``messages`` (roles
  alternate, starting with ``user``; only the final assistant message may be empty;
  ``tool_use`` blocks only in assistant turns, ``tool_result`` blocks only in user turns, each
  answering a ``tool_use`` of the turn just before, and every ``tool_use`` answered in the next
  turn), ``system``, ``tools`` (unique names), ``tool_choice``, ``temperature``,
  ``stop_sequences`` and ``metadata``; other fields are accepted unchecked, and a 400 names the
  first problem only. The API itself merges consecutive turns of one role; this emulator
  refuses them, which is stricter;
- ``fail_next`` faults answer the next calls after the key is checked and before the body is;
  ``retry_after`` goes out as ``retry-after`` (whole seconds, rounded up) and, for the SDK's
  benefit, as the ``retry-after-ms`` it reads first.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dq_agent_sandbox.http import Request, Response

__all__ = [
    "COUNT_TOKENS_PATH",
    "DEFAULT_REPLY",
    "MESSAGES_PATH",
    "AnthropicEmulator",
]

JsonObject = dict[str, Any]

MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
DEFAULT_REPLY = "(no scripted reply)"
CHARS_PER_TOKEN = 4
STOP_REASONS = (
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
)
# The error type the API gives each status; a fault or scripted error may name another.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
_TOOL_CHOICES = ("auto", "any", "tool", "none")
_REPLY_KEYS = frozenset(
    {"match", "text", "tool_use", "content", "stop_reason", "stop_sequence", "usage", "error"}
)
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _derived_id(prefix: str, key: str) -> str:
    """A stable API-looking id: the prefix and 22 base-62 characters from ``key``."""
    number = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest(), "big")
    chars = []
    for _ in range(22):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return prefix + "".join(chars)


def _error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


class _ApiError(Exception):
    """An error answer: ``{"type": "error", "error": {"type", "message"}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or _error_type(status)
        self.headers = headers or {}


def _invalid(message: str) -> _ApiError:
    return _ApiError(400, message, "invalid_request_error")


# --------------------------------------------------------------------------- the script


@dataclass(frozen=True)
class _Fault:
    status: int
    error_type: str
    message: str
    retry_after: float | None

    def error(self) -> _ApiError:
        wait = 0.0 if self.retry_after is None and self.status == 429 else self.retry_after
        headers: dict[str, str] = {}
        if wait is not None:
            headers["retry-after"] = str(math.ceil(wait))
            headers["retry-after-ms"] = str(round(wait * 1000))
        return _ApiError(self.status, self.message, self.error_type, headers)


@dataclass
class _Reply:
    match: str | None = None
    content: list[JsonObject] = field(default_factory=list)  # tool_use ids may be None
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    error: _Fault | None = None


def _new_fault(status: Any, error_type: Any, message: Any, retry_after: Any, where: str) -> _Fault:
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"{where}.status: expected an HTTP status from 400 to 599")
    if error_type is not None and (not isinstance(error_type, str) or not error_type):
        raise ValueError(f"{where}.type: expected an error type such as 'overloaded_error'")
    if message is not None and not isinstance(message, str):
        raise ValueError(f"{where}.message: expected a string")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or retry_after < 0
    ):
        raise ValueError(f"{where}.retry_after: expected a number of seconds, 0 or more")
    kind = error_type or _error_type(status)
    text = message or kind.replace("_", " ").capitalize()
    return _Fault(status, kind, text, None if retry_after is None else float(retry_after))


def _script_tool_use(spec: Any, where: str) -> JsonObject:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected {{'name': …, 'input': {{…}}}}")
    name, tool_input, tool_id = spec.get("name"), spec.get("input", {}), spec.get("id")
    if not isinstance(name, str) or not _TOOL_NAME.match(name):
        raise ValueError(f"{where}.name: expected a tool name (letters, digits, '_', '-')")
    if not isinstance(tool_input, Mapping):
        raise ValueError(f"{where}.input: expected an object")
    if tool_id is not None and (not isinstance(tool_id, str) or not tool_id):
        raise ValueError(f"{where}.id: expected a non-empty string")
    return {"type": "tool_use", "id": tool_id, "name": name, "input": copy.deepcopy(tool_input)}


def _script_block(spec: Any, where: str) -> JsonObject:
    """A content block of a reply: ``{"text"}``, ``{"tool_use": {…}}`` or a wire-shaped one."""
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a text or tool_use block")
    kind = spec.get("type")
    if kind == "tool_use":
        return _script_tool_use(spec, where)
    if kind is None and "tool_use" in spec:
        return _script_tool_use(spec["tool_use"], f"{where}.tool_use")
    if kind in (None, "text") and isinstance(spec.get("text"), str):
        return {"type": "text", "text": spec["text"]}
    raise ValueError(f"{where}: expected {{'text': …}} or {{'tool_use': {{…}}}}")


def _script_reply(spec: Any, where: str) -> _Reply:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected an object")
    unknown = sorted(set(spec) - _REPLY_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
    match = spec.get("match")
    if match is not None and (not isinstance(match, str) or not match):
        raise ValueError(f"{where}.match: expected a non-empty string")
    if "error" in spec:
        if set(spec) & {"text", "tool_use", "content", "stop_reason", "stop_sequence", "usage"}:
            raise ValueError(f"{where}: an error reply has no content, stop_reason or usage")
        error = spec["error"]
        if not isinstance(error, Mapping):
            raise ValueError(f"{where}.error: expected {{'status', 'type'?, 'message'?}}")
        fault = _new_fault(
            error.get("status"),
            error.get("type"),
            error.get("message"),
            error.get("retry_after"),
            f"{where}.error",
        )
        return _Reply(match=match, error=fault)
    reply = _Reply(match=match)
    if "content" in spec:
        if "text" in spec or "tool_use" in spec:
            raise ValueError(f"{where}: give content, or text and/or tool_use, not both")
        blocks = spec["content"]
        if not isinstance(blocks, list) or not blocks:
            raise ValueError(f"{where}.content: expected a non-empty list of blocks")
        reply.content = [_script_block(b, f"{where}.content[{i}]") for i, b in enumerate(blocks)]
    else:
        if "text" in spec:
            if not isinstance(spec["text"], str):
                raise ValueError(f"{where}.text: expected a string")
            reply.content.append({"type": "text", "text": spec["text"]})
        if "tool_use" in spec:
            reply.content.append(_script_tool_use(spec["tool_use"], f"{where}.tool_use"))
        if not reply.content:
            raise ValueError(f"{where}: expected text, tool_use, content or error")
    stop_reason = spec.get("stop_reason")
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise ValueError(f"{where}.stop_reason: expected one of {', '.join(STOP_REASONS)}")
    reply.stop_reason = stop_reason
    stop_sequence = spec.get("stop_sequence")
    if stop_sequence is not None and not isinstance(stop_sequence, str):
        raise ValueError(f"{where}.stop_sequence: expected a string")
    reply.stop_sequence = stop_sequence
    usage = spec.get("usage") or {}
    if not isinstance(usage, Mapping) or not set(usage) <= {"input_tokens", "output_tokens"}:
        raise ValueError(f"{where}.usage: expected {{'input_tokens'?, 'output_tokens'?}}")
    for key, value in usage.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{where}.usage.{key}: expected a whole number, 0 or more")
    reply.usage = dict(usage)
    return reply


# --------------------------------------------------------------------------- request bodies


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{where}: Input should be a valid string")
    return value


def _required(body: Mapping[str, Any], name: str, where: str = "") -> Any:
    if name not in body:
        raise _invalid(f"{where}{name}: Field required")
    return body[name]


def _check_text_block(block: Mapping[str, Any], where: str) -> None:
    text = _string(_required(block, "text", f"{where}."), f"{where}.text")
    if not text:
        raise _invalid("messages: text content blocks must be non-empty")


def _check_block(block: Any, role: str, where: str) -> None:
    if not isinstance(block, Mapping):
        raise _invalid(f"{where}: Input should be a valid dictionary")
    kind = _string(_required(block, "type", f"{where}."), f"{where}.type")
    if kind == "text":
        _check_text_block(block, where)
    elif kind == "tool_use":
        if role != "assistant":
            raise _invalid(f"{where}: tool_use blocks may only appear in assistant messages")
        _string(_required(block, "id", f"{where}."), f"{where}.id")
        _string(_required(block, "name", f"{where}."), f"{where}.name")
        if not isinstance(_required(block, "input", f"{where}."), Mapping):
            raise _invalid(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if role != "user":
            raise _invalid(f"{where}: tool_result blocks may only appear in user messages")
        _string(_required(block, "tool_use_id", f"{where}."), f"{where}.tool_use_id")
        content = block.get("content", "")
        if isinstance(content, list):
            for k, inner in enumerate(content):
                if not isinstance(inner, Mapping) or not isinstance(inner.get("type"), str):
                    raise _invalid(f"{where}.content.{k}: Input should be a valid content block")
                if inner["type"] == "text":
                    _check_text_block(inner, f"{where}.content.{k}")
        elif not isinstance(content, str):
            raise _invalid(f"{where}.content: Input should be a valid string or list")
        if "is_error" in block and not isinstance(block["is_error"], bool):
            raise _invalid(f"{where}.is_error: Input should be a valid boolean")
    elif kind == "image" and not isinstance(_required(block, "source", f"{where}."), Mapping):
        raise _invalid(f"{where}.source: Input should be a valid dictionary")


def _tool_ids(blocks: Any, kind: str, key: str) -> list[tuple[int, str]]:
    if not isinstance(blocks, list):
        return []
    return [(j, b[key]) for j, b in enumerate(blocks) if b.get("type") == kind]


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list")
    if not messages:
        raise _invalid("messages: List should have at least 1 item after validation, not 0")
    previous: str | None = None
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, Mapping):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        role = _required(message, "role", f"{where}.")
        if role not in ("user", "assistant"):
            raise _invalid(f"{where}.role: Input should be 'user' or 'assistant'")
        if previous is None and role != "user":
            raise _invalid('messages: first message must use the "user" role')
        if role == previous:
            raise _invalid(
                'messages: roles must alternate between "user" and "assistant", '
                f'but found multiple "{role}" roles in a row'
            )
        previous = role
        content = _required(message, "content", f"{where}.")
        final_assistant = role == "assistant" and i == len(messages) - 1
        if isinstance(content, str):
            if not content and not final_assistant:
                raise _invalid(
                    f"{where}: all messages must have non-empty content except for the "
                    "optional final assistant message"
                )
        elif isinstance(content, list):
            if not content and not final_assistant:
                raise _invalid(
                    f"{where}: all messages must have non-empty content except for the "
                    "optional final assistant message"
                )
            for j, block in enumerate(content):
                _check_block(block, role, f"{where}.content.{j}")
        else:
            raise _invalid(f"{where}.content: Input should be a valid string or list")
    for i, message in enumerate(messages):
        if message["role"] != "user":
            continue
        before = messages[i - 1]["content"] if i > 0 else []
        asked = {tool_id for _, tool_id in _tool_ids(before, "tool_use", "id")}
        answered = _tool_ids(message["content"], "tool_result", "tool_use_id")
        for j, tool_use_id in answered:
            if tool_use_id not in asked:
                raise _invalid(
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                    f"`tool_result` blocks: {tool_use_id}. Each `tool_result` block must have "
                    "a corresponding `tool_use` block in the previous message."
                )
        unanswered = asked - {tool_use_id for _, tool_use_id in answered}
        if unanswered:
            missing = ", ".join(sorted(unanswered))
            raise _invalid(
                f"messages.{i - 1}: `tool_use` ids were found without `tool_result` blocks "
                f"immediately after: {missing}. Each `tool_use` block must have a "
                "corresponding `tool_result` block in the next message."
            )


def _check_system(system: Any) -> None:
    if isinstance(system, str):
        return
    if not isinstance(system, list):
        raise _invalid("system: Input should be a valid string or a list of text blocks")
    for j, block in enumerate(system):
        if not isinstance(block, Mapping):
            raise _invalid(f"system.{j}: Input should be a valid dictionary")
        if block.get("type") != "text":
            raise _invalid(f"system.{j}.type: Input should be 'text'")
        _check_text_block(block, f"system.{j}")


def _check_tools(tools: Any) -> list[str]:
    if not isinstance(tools, list):
        raise _invalid("tools: Input should be a valid list")
    names: list[str] = []
    for k, tool in enumerate(tools):
        where = f"tools.{k}"
        if not isinstance(tool, Mapping):
            raise _invalid(f"{where}: Input should be a valid dictionary")
        name = _string(_required(tool, "name", f"{where}."), f"{where}.name")
        if tool.get("type") in (None, "custom"):  # server tools are accepted as they come
            if not _TOOL_NAME.match(name):
                raise _invalid(f"{where}.name: String should match pattern '{_TOOL_NAME.pattern}'")
            if "description" in tool:
                _string(tool["description"], f"{where}.description")
            schema = _required(tool, "input_schema", f"{where}.")
            if not isinstance(schema, Mapping):
                raise _invalid(f"{where}.input_schema: Input should be a valid dictionary")
            if schema.get("type") != "object":
                raise _invalid(f"{where}.input_schema.type: Input should be 'object'")
        names.append(name)
    if len(set(names)) != len(names):
        raise _invalid("tools: Tool names must be unique.")
    return names


def _check_tool_choice(choice: Any, tool_names: list[str] | None) -> None:
    if not isinstance(choice, Mapping):
        raise _invalid("tool_choice: Input should be a valid dictionary")
    kind = _required(choice, "type", "tool_choice.")
    if kind not in _TOOL_CHOICES:
        raise _invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    if "disable_parallel_tool_use" in choice and not isinstance(
        choice["disable_parallel_tool_use"], bool
    ):
        raise _invalid("tool_choice.disable_parallel_tool_use: Input should be a valid boolean")
    if kind in ("any", "tool") and not tool_names:
        raise _invalid("tool_choice: tool_choice may only be specified while providing tools")
    if kind == "tool":
        name = _string(_required(choice, "name", "tool_choice."), "tool_choice.name")
        if name not in (tool_names or []):
            raise _invalid(f"tool_choice.name: no tool named {name!r} in tools")


def _check_body(body: Any, *, count_only: bool) -> None:
    """Raise the 400 the API would answer to ``body``; ``count_only`` for count_tokens."""
    if not isinstance(body, Mapping):
        raise _invalid("body: Input should be a valid dictionary")
    model = _required(body, "model")
    if not isinstance(model, str) or not model:
        raise _invalid("model: Input should be a valid string")
    if not count_only:
        max_tokens = _required(body, "max_tokens")
        if not _is_int(max_tokens):
            raise _invalid("max_tokens: Input should be a valid integer")
        if max_tokens < 1:
            raise _invalid("max_tokens: Input should be greater than or equal to 1")
        if body.get("stream") is True:
            raise _invalid("stream: streaming is not supported by the sandbox emulator")
    _check_messages(_required(body, "messages"))
    if "system" in body:
        _check_system(body["system"])
    tool_names = _check_tools(body["tools"]) if "tools" in body else None
    if "tool_choice" in body:
        _check_tool_choice(body["tool_choice"], tool_names)
    if "temperature" in body:
        temperature = body["temperature"]
        if not _is_number(temperature):
            raise _invalid("temperature: Input should be a valid number")
        if temperature < 0:
            raise _invalid("temperature: Input should be greater than or equal to 0")
        if temperature > 1:
            raise _invalid("temperature: Input should be less than or equal to 1")
    if "stop_sequences" in body:
        sequences = body["stop_sequences"]
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise _invalid("stop_sequences: Input should be a valid list of strings")
    if "metadata" in body:
        metadata = body["metadata"]
        if not isinstance(metadata, Mapping):
            raise _invalid("metadata: Input should be a valid dictionary")
        for key in metadata:
            if key != "user_id":
                raise _invalid(f"metadata.{key}: Extra inputs are not permitted")
        if metadata.get("user_id") is not None:
            _string(metadata["user_id"], "metadata.user_id")


# --------------------------------------------------------------------------- tokens


def _tokens(chars: int) -> int:
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _block_text(block: Mapping[str, Any]) -> str:
    """What of a content block the estimates count."""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return str(block.get("name", "")) + _dumps(block.get("input", {}))
    if kind == "tool_result":
        return _content_text(block.get("content", ""))
    return _dumps(block)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(_block_text(b) for b in content if isinstance(b, Mapping))
    return ""


def _input_tokens(body: Mapping[str, Any]) -> int:
    parts = [_content_text(body.get("system", ""))]
    parts += [_content_text(m.get("content")) for m in body.get("messages", [])]
    parts += [_dumps(tool) for tool in body.get("tools", [])]
    return _tokens(sum(len(part) for part in parts))


def _last_user_text(messages: list[JsonObject]) -> str:
    """The text the last user turn carries: its text blocks and tool_result contents."""
    for message in reversed(messages):
        if message["role"] == "user":
            return _content_text(message["content"])
    return ""


# --------------------------------------------------------------------------- the emulator


class AnthropicEmulator:
    """The Anthropic Messages API answering from a script; serve it with LoopbackServer."""

    name = "anthropic"

    def __init__(self, *, api_key: str = "sandbox-anthropic-key") -> None:
        self.api_key = api_key
        self._lock = threading.Lock()
        self.reset()

    # ----------------------------------------------------------------- test controls

    def reset(self) -> None:
        """Forget the script, pending faults, recorded requests, usage and id counters."""
        with self._lock:
            self._script: list[_Reply] = []
            self._faults: list[_Fault] = []
            self._log: list[JsonObject] = []
            self._input_tokens = 0
            self._output_tokens = 0
            self._messages = 0
            self._tool_uses = 0
            self._requests = 0

    def script(self, responses: list[Mapping[str, Any]]) -> None:
        """Queue replies for the next ``/v1/messages`` calls, in order (see the module doc).

        Every reply is checked before any is queued; a malformed one raises ValueError.
        """
        if not isinstance(responses, list):
            raise ValueError("script: expected a list of replies")
        replies = [_script_reply(spec, f"script[{i}]") for i, spec in enumerate(responses)]
        with self._lock:
            self._script.extend(replies)

    def seed(self, data: Mapping[str, Any]) -> int:
        """Queue ``data["script"]`` (``{"script": [reply, …]}``); returns how many replies."""
        unknown = sorted(set(data) - {"script"})
        if unknown:
            raise ValueError(f"anthropic: unknown key(s) {', '.join(unknown)}")
        replies = data.get("script") or []
        self.script(replies)
        return len(replies)

    def fail_next(
        self,
        status: int,
        error_type: str | None = None,
        message: str | None = None,
        *,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` API calls with ``status`` and an error of ``error_type``.

        ``error_type`` defaults to the API's for the status (529 ``overloaded_error``, 429
        ``rate_limit_error``, 500 ``api_error``…). A 429 carries ``retry-after: 0`` unless
        ``retry_after`` (seconds) says otherwise; other statuses only when it is given.
        """
        if times < 1:
            raise ValueError("fail_next needs times >= 1")
        fault = _new_fault(status, error_type, message, retry_after, "fail_next")
        with self._lock:
            self._faults.extend([fault] * times)

    def requests(self, path: str | None = None) -> list[JsonObject]:
        """Requests that arrived (refused ones included), oldest first, as
        ``{"method", "path", "headers", "body"}``: headers lower-case without the API key,
        a JSON body decoded (else its text). ``path`` keeps one endpoint's only."""
        with self._lock:
            return [
                copy.deepcopy(entry) for entry in self._log if path is None or entry["path"] == path
            ]

    def state(self) -> dict[str, Any]:
        """Every request received, how many scripted replies are left, and usage so far."""
        with self._lock:
            return {
                "requests": copy.deepcopy(self._log),
                "pending_script": len(self._script),
                "usage": {
                    "input_tokens": self._input_tokens,
                    "output_tokens": self._output_tokens,
                },
            }

    # ----------------------------------------------------------------- requests

    def handle(self, request: Request) -> Response:
        with self._lock:
            self._requests += 1
            request_id = _derived_id("req_01", f"request {self._requests}")
            try:
                body, unparsable = self._record(request)
                response = self._route(request, body, unparsable)
            except _ApiError as exc:
                error = {"type": exc.error_type, "message": exc.message}
                payload = {"type": "error", "error": error, "request_id": request_id}
                response = Response(exc.status, payload, dict(exc.headers))
            response.headers["request-id"] = request_id
            return response

    def _record(self, request: Request) -> tuple[Any, _ApiError | None]:
        """Log the request; its JSON body, or the 400 to answer if the body does not parse."""
        headers = {
            k: v for k, v in request.headers.items() if k not in ("x-api-key", "authorization")
        }
        entry: JsonObject = {
            "method": request.method,
            "path": request.path,
            "headers": headers,
            "body": None,
        }
        self._log.append(entry)
        try:
            entry["body"] = request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            entry["body"] = request.body.decode("utf-8", "replace")
            return None, _invalid(f"There was an error parsing the body: {exc}")
        return entry["body"], None

    def _route(self, request: Request, body: Any, unparsable: _ApiError | None) -> Response:
        path = request.path.rstrip("/")
        if path not in (MESSAGES_PATH, COUNT_TOKENS_PATH):
            raise _ApiError(404, "Not Found", "not_found_error")
        if request.method != "POST":
            raise _ApiError(405, "Method Not Allowed", "invalid_request_error")
        if not self._authenticated(request):
            raise _ApiError(401, "invalid x-api-key", "authentication_error")
        if not request.headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")
        if self._faults:
            raise self._faults.pop(0).error()
        if unparsable is not None:
            raise unparsable
        if path == COUNT_TOKENS_PATH:
            _check_body(body, count_only=True)
            return Response(200, {"input_tokens": _input_tokens(body)})
        _check_body(body, count_only=False)
        return Response(200, self._reply(body))

    def _authenticated(self, request: Request) -> bool:
        keys = [request.headers.get("x-api-key", "")]
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            keys.append(token.strip())
        expected = self.api_key.encode("utf-8")
        return any(key and hmac.compare_digest(key.encode("utf-8"), expected) for key in keys)

    def _reply(self, body: Mapping[str, Any]) -> JsonObject:
        """The next scripted reply to ``body`` as a message, or the error it scripts."""
        reply = self._script[0] if self._script else _Reply(content=[])
        if reply.match is not None and reply.match not in _last_user_text(body["messages"]):
            raise _invalid(
                f"sandbox script: the next scripted reply expects the last user message to "
                f"contain {reply.match!r}"
            )
        if self._script:
            self._script.pop(0)
        if reply.error is not None:
            raise reply.error.error()
        blocks = reply.content or [{"type": "text", "text": DEFAULT_REPLY}]
        content: list[JsonObject] = []
        for block in blocks:
            if block["type"] == "tool_use":
                self._tool_uses += 1
                tool_id = block["id"] or _derived_id("toolu_01", f"tool_use {self._tool_uses}")
                block = {**block, "id": tool_id, "input": copy.deepcopy(block["input"])}
            content.append(dict(block))
        stop_reason = reply.stop_reason or (
            "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
        )
        input_tokens = reply.usage.get("input_tokens", _input_tokens(body))
        output_tokens = reply.usage.get(
            "output_tokens", _tokens(sum(len(_block_text(b)) for b in content))
        )
        self._input_tokens += input_tokens
        self._output_tokens += output_tokens
        self._messages += 1
        return {
            "id": _derived_id("msg_01", f"message {self._messages}"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": reply.stop_sequence,
            "usage": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
