"""Pipeline restarts: targets behind one small protocol, and when to use them."""

from dq_agent.restart.base import PipelineRun, RestartError, RestartTarget
from dq_agent.restart.runner import Restarts, target_for

__all__ = ["PipelineRun", "RestartError", "RestartTarget", "Restarts", "target_for"]
