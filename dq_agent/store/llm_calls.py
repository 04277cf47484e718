"""The LLM calls made, and the tokens they took (each incident has a budget)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from dq_agent.store.database import Database
from dq_agent.store.models import LlmCall


class LlmCallRepository(Database):
    """Every LLM call, with its tokens."""

    # -- language-model calls -------------------------------------------------------------------

    def record_llm_call(
        self,
        *,
        at: datetime,
        incident_id: int | None,
        purpose: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        outcome: str,
    ) -> None:
        with self._transaction("record a language-model call") as session:
            session.add(
                LlmCall(
                    at=at,
                    incident_id=incident_id,
                    purpose=purpose,
                    model=model,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    outcome=outcome,
                )
            )

    def llm_tokens(self, *, incident_id: int | None = None, since: datetime | None = None) -> int:
        """Tokens used, input and output together: for one incident, or since a moment."""
        total = sa.func.coalesce(sa.func.sum(LlmCall.input_tokens + LlmCall.output_tokens), 0)
        query = sa.select(total)
        if incident_id is not None:
            query = query.where(LlmCall.incident_id == incident_id)
        if since is not None:
            query = query.where(LlmCall.at >= since)
        with self._transaction("sum language-model tokens", read=True) as session:
            return int(session.scalar(query) or 0)
