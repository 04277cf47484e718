"""``dq-agent mcp``: the tool gateway served to an MCP client over stdio.

An engineer investigating incidents from an MCP client (Claude Desktop, an IDE) gets the
same tools the optional LLM gets, answered by the same :class:`Gateway`, so the same policy
holds: redacted columns stay redacted, a correction can only be *proposed*, only for a
finding of the incident and only within the allow-list. This module adds no policy and
holds no credentials of its own; it translates between MCP and ``Gateway.call``, and adds
one read-only tool, ``list_incidents``, to find an incident to look at.

Nothing but the MCP protocol may go to stdout: the stdio transport points fd 1 at stderr
while it serves, so stray prints cannot corrupt the wire.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

from dq_agent.config.loader import Project
from dq_agent.errors import DqAgentError
from dq_agent.store import Store
from dq_agent.triage.gateway import TOOLS, Gateway, ToolRefused

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

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
_SHOWN = ("id", "suite", "check", "status", "owners", "summary", "opened_at")


def list_incidents(gateway: Gateway, arguments: Mapping[str, Any]) -> str:
    """``list_incidents``: the incidents as JSON, without their events; a summary hides the
    values of redacted columns as ``read_evidence`` does."""
    status = arguments.get("status")
    active = arguments.get("active", False)
    if status is not None and not isinstance(status, str):
        raise ToolRefused("bad arguments for list_incidents: status must be a string")
    if not isinstance(active, bool):
        raise ToolRefused("bad arguments for list_incidents: active must be true or false")
    found = gateway.store.incidents(status=status, active=active, events=False)
    shown = [
        {k: i[k] for k in _SHOWN} | gateway.redacted(i, {"summary": i["summary"]}) for i in found
    ]
    return json.dumps(shown, default=str)


def build_server(project: Project, store: Store, *, clock: Callable[[], datetime]) -> Server[Any]:
    """The MCP server: every gateway tool, and ``list_incidents``."""
    try:
        import mcp.types as types
        from mcp.server.context import ServerRequestContext
        from mcp.server.lowlevel import Server
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise DqAgentError(
            "dq-agent mcp needs the MCP SDK, which is not installed: pip install 'dq-agent[mcp]'"
        ) from exc

    # Not bound to an incident: a person picks which to look at. The write policy is the
    # gateway's all the same: propose only, a finding of the incident, within the policy.
    gateway = Gateway(project, store, clock, actor="mcp")
    tools = [
        types.Tool(name=t["name"], description=t["description"], input_schema=t["input_schema"])
        for t in [*TOOLS, LIST_INCIDENTS]
    ]

    async def on_list_tools(
        _ctx: ServerRequestContext[Any], _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def on_call_tool(
        _ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = params.arguments or {}
        try:
            if params.name == LIST_INCIDENTS["name"]:
                text = list_incidents(gateway, arguments)
            else:
                text = gateway.call(params.name, arguments)
        except ToolRefused as refused:
            return types.CallToolResult(
                content=[types.TextContent(text=str(refused))], is_error=True
            )
        return types.CallToolResult(content=[types.TextContent(text=text)])

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
    """Serve the gateway's tools over stdio until the client closes the connection."""
    server = build_server(project, store, clock=clock)
    import anyio
    from mcp.server.stdio import stdio_server

    async def run() -> None:
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

    anyio.run(run)
