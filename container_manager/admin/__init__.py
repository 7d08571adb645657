"""The Django admin of container_manager.

Registers the admin of every model on Django's default admin site:

- :class:`~container_manager.admin.jobs.ContainerJobAdmin`: the job list,
  detail page, bulk and per-job actions, log view and queue statistics page
  (``/admin/container_manager/containerjob/queue-stats/``);
- :class:`~container_manager.admin.hosts.ExecutorHostAdmin` and
  :class:`~container_manager.admin.hosts.JobQueueAdmin`: capacity, health,
  and pause/resume of hosts and queues;
- :class:`~container_manager.admin.workers.WorkerAdmin`: who is alive and
  what each worker holds;
- :class:`~container_manager.admin.hosts.EnvironmentVariableTemplateAdmin`;
- :class:`~container_manager.admin.arrays.JobArrayAdmin`: each job array's
  progress and outcome, and a link to its jobs;
- :class:`~container_manager.admin.schedules.ScheduleAdmin`: schedules, their
  next fire times, suspend and resume.
"""

from __future__ import annotations

from django.contrib import admin

from container_manager.admin.arrays import JobArrayAdmin
from container_manager.admin.hosts import (
    EnvironmentVariableTemplateAdmin,
    ExecutorHostAdmin,
    JobQueueAdmin,
)
from container_manager.admin.jobs import ContainerJobAdmin
from container_manager.admin.schedules import ScheduleAdmin
from container_manager.admin.workers import WorkerAdmin
from container_manager.models import (
    ContainerJob,
    EnvironmentVariableTemplate,
    ExecutorHost,
    JobArray,
    JobQueue,
    Schedule,
    Worker,
)

admin.site.register(ContainerJob, ContainerJobAdmin)
admin.site.register(ExecutorHost, ExecutorHostAdmin)
admin.site.register(JobQueue, JobQueueAdmin)
admin.site.register(Worker, WorkerAdmin)
admin.site.register(JobArray, JobArrayAdmin)
admin.site.register(Schedule, ScheduleAdmin)
admin.site.register(EnvironmentVariableTemplate, EnvironmentVariableTemplateAdmin)

__all__ = [
    "ContainerJobAdmin",
    "EnvironmentVariableTemplateAdmin",
    "ExecutorHostAdmin",
    "JobArrayAdmin",
    "JobQueueAdmin",
    "ScheduleAdmin",
    "WorkerAdmin",
]
