"""The models of container_manager."""

from __future__ import annotations

from container_manager.models.host import EnvironmentVariableTemplate, ExecutorHost, ExecutorType
from container_manager.models.job import ContainerJob, JobQuerySet

__all__ = [
    "ContainerJob",
    "EnvironmentVariableTemplate",
    "ExecutorHost",
    "ExecutorType",
    "JobQuerySet",
]
