"""How the loopback Salesforce org answers over REST: its error shape, method checks, JSON bodies.

Shared by the org's resources (:mod:`~dq_agent_sandbox.salesforce`) and its Bulk API 2.0 and
sObject Collections resources (:mod:`~dq_agent_sandbox.sfjobs`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dq_agent_sandbox.http import Request, Response

__all__ = ["ApiError", "allow", "json_object", "not_found"]

NOT_FOUND_MESSAGE = "The requested resource does not exist"


class ApiError(Exception):
    """An error answered in Salesforce's shape: ``[{"message", "errorCode"}]``.

    ``fields`` names the fields at fault, for answers that list them (an sObject Collections
    record's ``errors``).
    """

    def __init__(self, status: int, code: str, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = tuple(fields)

    def response(self) -> Response:
        return Response(self.status, [{"message": self.message, "errorCode": self.code}])


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def allow(method: str, *allowed: str) -> None:
    if method not in allowed:
        message = f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}"
        raise ApiError(405, "METHOD_NOT_ALLOWED", message)


def json_object(request: Request) -> Mapping[str, Any]:
    try:
        body = request.json()
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character: {error}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "JSON_PARSER_ERROR", "The request body must be a JSON object")
    return body
