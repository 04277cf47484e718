"""Check types: how each built-in check and GX expectation is planned and judged."""

from __future__ import annotations

from collections.abc import Callable

from dq_agent.checks.base import CheckContext, PlannedCheck
from dq_agent.checks.categorical import AcceptedValues, NewValues
from dq_agent.checks.column_anomaly import ColumnAnomaly
from dq_agent.checks.compiled import CompiledExpectation, can_compile
from dq_agent.checks.distribution import DistributionShift
from dq_agent.checks.fat_finger import FatFinger
from dq_agent.checks.freshness import Freshness
from dq_agent.checks.gx import run_expectations
from dq_agent.checks.reference import Reference
from dq_agent.checks.row_count import RowCount
from dq_agent.checks.schema import Schema
from dq_agent.checks.volume import VolumeAnomaly
from dq_agent.config.models import CheckSpec
from dq_agent.sources.base import Relation

PlanFactory = Callable[[CheckSpec, Relation, CheckContext], PlannedCheck]

BUILTIN: dict[str, PlanFactory] = {
    "row_count": RowCount,
    "freshness": Freshness,
    "schema": Schema,
    "volume_anomaly": VolumeAnomaly,
    "fat_finger": FatFinger,
    "accepted_values": AcceptedValues,
    "new_values": NewValues,
    "reference": Reference,
    "distribution_shift": DistributionShift,
    "column_anomaly": ColumnAnomaly,
}

# Checks that judge a bucket against a baseline of earlier ones: a bucket an owner marks
# "expected" leaves their baselines.
BASELINED = frozenset({"volume_anomaly", "distribution_shift", "column_anomaly"})

__all__ = [
    "BASELINED",
    "BUILTIN",
    "CheckContext",
    "CompiledExpectation",
    "PlannedCheck",
    "can_compile",
    "run_expectations",
]
