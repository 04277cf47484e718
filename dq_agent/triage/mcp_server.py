"""The investigation tools over MCP: ``dq-agent mcp`` serves them over stdio, the broker over
HTTP (:mod:`dq_agent.broker.mcp_http`).

An engineer investigating incidents from an MCP client (Claude Desktop, an IDE) gets the
same tools the optional LLM gets, answered by the same :class:`Gateway`, so the same policy
holds: redacted columns stay redacted, a correction can only be *proposed*, only for a
finding of the incident and only within the allow-list. This module adds no policy of the
gateway's kind and holds no credentials of its own; it translates between MCP and
``Gateway.call``, adds one read-only tool, ``list_incidents``, to find an incident to look at,
and answers each caller within its :class:`Grant`: the tools offered to it and the suites whose
incidents it may see (over stdio, all of them; through the broker, what its token allows).

Nothing but the MCP protocol may go to stdout: the stdio transport points fd 1 at stderr
while it serves, so stray prints cannot corrupt the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from dq_agent.checks.base import plural
from dq_agent.config.loader import Project
from dq_agent.errors import DqAgentError
from dq_agent.store import Store
from dq_agent.triage.gateway import TOOLS, Gateway, ToolRefused

if TYPE_CHECKING:
    from mcp.server.context import ServerRequestContext
    from mcp.server.lowlevel import Server

__all__ = [
    "READ_ONLY_TOOLS",
    "TOOL_NAMES",
    "Grant",
    "ToolCall",
    "build_server",
    "call_tool",
    "list_incidents",
    "serve",
]

SERVER_NAME = "dq-agent"
LIST_INCIDENTS: dict[str, Any] = {
    "name": "list_incidents",
    "description": "The incidents, newest first, without their history: id, suite, check, "
    "status, owners, summary, when opened. Filter by status, or active (not resolved) only.",
    "input_schema": {
        "type": "object",
        "properties": {"status": {"type": "string"}, "active": {"type": "boolean"}},
        "required": [],
    },
}
_CATALOGUE = [*TOOLS, LIST_INCIDENTS]
# Every tool the server can offer, in the order it lists them.
TOOL_NAMES: tuple[str, ...] = tuple(t["name"] for t in _CATALOGUE)
# The tools that only read: what a broker token that names no tools is given.
READ_ONLY_TOOLS = ("list_incidents", "read_evidence", "read_runbook", "read_past_incidents")
_SHOWN = ("id", "suite", "check", "status", "owners", "summary", "opened_at")


@dataclass(frozen=True)
class ToolCall:
    """One tool call as it was answered (``ok``), refused or failed (``error``), for the
    caller's records: the broker writes each to its audit log."""

    tool: str
    outcome: str
    detail: str
    suite: str | None = None
    incident: int | None = None


def _every_suite(_suite: str) -> bool:
    return True


def _unrecorded(_call: ToolCall) -> None:
    return None


@dataclass(frozen=True)
class Grant:
    """What one caller may use: the tools offered to it, the suites whose incidents it may see
    (``covers``), and the gateway that answers it, opened when it calls a tool. ``holder``
    names the caller in refusals; ``record`` is told of every call, answered or not."""

    gateway: Callable[[], Gateway]
    tools: frozenset[str] = frozenset(TOOL_NAMES)
    covers: Callable[[str], bool] = _every_suite
    holder: str = "this client"
    record: Callable[[ToolCall], None] = _unrecorded


def list_incidents(
    gateway: Gateway,
    arguments: Mapping[str, Any],
    *,
    covers: Callable[[str], bool] = _every_suite,
) -> str:
    """``list_incidents``: the incidents of the suites ``covers`` allows, as JSON, without
    their events; a summary hides the values of redacted columns as ``read_evidence`` does."""
    return json.dumps(_listed(gateway, arguments, covers), default=str)


def _listed(
    gateway: Gateway, arguments: Mapping[str, Any], covers: Callable[[str], bool]
) -> list[dict[str, Any]]:
    status = arguments.get("status")
    active = arguments.get("active", False)
    if status is not None and not isinstance(status, str):
        raise ToolRefused("bad arguments for list_incidents: status must be a string")
    if not isinstance(active, bool):
        raise ToolRefused("bad arguments for list_incidents: active must be true or false")
    found = gateway.store.incidents(status=status, active=active, events=False)
    return [
        {k: i[k] for k in _SHOWN} | gateway.redacted(i, {"summary": i["summary"]})
        for i in found
        if covers(i["suite"])
    ]


# The tools that record something: their answer (a short sentence) says what, for the record.
_RECORDING = frozenset({"classify", "draft_message", "propose_correction"})


def call_tool(grant: Grant, name: str, arguments: Mapping[str, Any]) -> tuple[str, bool]:
    """One tool call within ``grant``: the answer (or why it was refused) and whether it is an
    error. A tool the grant does not offer, or an incident of a suite it does not cover, is
    refused before the gateway sees the call; every call is recorded."""
    wanted = arguments.get("incident_id")
    incident = wanted if isinstance(wanted, int) and not isinstance(wanted, bool) else None
    suite: str | None = None
    try:
        if name not in grant.tools:
            if name not in TOOL_NAMES:
                raise ToolRefused(f"there is no tool {name!r}")
            offered = ", ".join(t for t in TOOL_NAMES if t in grant.tools)
            raise ToolRefused(f"{grant.holder} may not use {name}; it may use: {offered}")
        gateway = grant.gateway()
        if name == LIST_INCIDENTS["name"]:
            listed = _listed(gateway, arguments, grant.covers)
            text, detail = json.dumps(listed, default=str), plural(len(listed), "incident")
        else:
            found = gateway.store.incident(incident, events=False) if incident is not None else None
            suite = found["suite"] if found is not None else None
            if suite is not None and not grant.covers(suite):
                raise ToolRefused(
                    f"{grant.holder} may not see incident {incident}: it does not cover the "
                    "incident's suite"
                )
            text = gateway.call(name, arguments)
            detail = text if name in _RECORDING else ""
    except ToolRefused as refused:
        grant.record(ToolCall(name, "refused", str(refused), suite, incident))
        return str(refused), True
    except DqAgentError as exc:
        grant.record(ToolCall(name, "error", str(exc), suite, incident))
        return f"{name} could not be answered: {exc}", True
    except Exception as exc:
        grant.record(ToolCall(name, "error", exc.__class__.__name__, suite, incident))
        raise
    grant.record(ToolCall(name, "ok", detail, suite, incident))
    return text, False


def build_server(grant_for: Callable[[ServerRequestContext[Any]], Grant]) -> Server[Any]:
    """The MCP server: to each request, the tools of the :class:`Grant` ``grant_for`` gives
    it (every gateway tool and ``list_incidents`` at most), answered within that grant."""
    try:
        import anyio
        import mcp.types as types
        from mcp.server.lowlevel import Server
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise DqAgentError(
            "MCP needs the MCP SDK, which is not installed: pip install 'dq-agent[mcp]'"
        ) from exc

    catalogue = [
        types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"])
        for t in _CATALOGUE
    ]

    async def on_list_tools(
        ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        offered = grant_for(ctx).tools
        return types.ListToolsResult(tools=[t for t in catalogue if t.name in offered])

    async def on_call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        grant = grant_for(ctx)
        # The gateway reads the state store (and the broker its project files): off the
        # event loop, so one slow call holds up no other request.
        text, failed = await anyio.to_thread.run_sync(
            call_tool, grant, params.name, params.arguments or {}
        )
        return types.CallToolResult(content=[types.TextContent(text=text)], is_error=failed)

    try:
        version = metadata.version("dq-agent")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        version = ""
    return Server(
        SERVER_NAME,
        version=version,
        instructions="Investigate data-quality incidents: list_incidents, then read_evidence, "
        "read_runbook and read_past_incidents. propose_correction only proposes: an owner "
        "decides, and the project's correction policy applies.",
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


def serve(project: Project, store: Store, *, clock: Callable[[], datetime]) -> None:
    """Serve every tool over stdio until the client closes the connection."""
    # Not bound to an incident: a person picks which to look at. The write policy is the
    # gateway's all the same: propose only, a finding of the incident, within the policy.
    gateway = Gateway(project, store, clock, actor="mcp")
    grant = Grant(gateway=lambda: gateway)
    server = build_server(lambda _ctx: grant)
    import anyio
    from mcp.server.stdio import stdio_server

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(run)
