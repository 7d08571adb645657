"""The models of container_manager."""

from __future__ import annotations

from container_manager.models.host import EnvironmentVariableTemplate, ExecutorHost, ExecutorType
from container_manager.models.images import ImageBuildContext, JobArray, JobDependency
from container_manager.models.job import ContainerJob, JobQuerySet
from container_manager.models.queue import JobQueue
from container_manager.models.schedule import Schedule
from container_manager.models.tally import JobTally
from container_manager.models.worker import Worker, WorkerStatus

__all__ = [
    "ContainerJob",
    "EnvironmentVariableTemplate",
    "ExecutorHost",
    "ExecutorType",
    "ImageBuildContext",
    "JobArray",
    "JobDependency",
    "JobQuerySet",
    "JobQueue",
    "JobTally",
    "Schedule",
    "Worker",
    "WorkerStatus",
]
