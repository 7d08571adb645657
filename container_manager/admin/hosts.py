"""The admin of executor hosts, named queues and environment templates."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils.safestring import SafeString

from container_manager.admin import display
from container_manager.admin.inputs import SafeInputAdminMixin
from container_manager.conf import settings
from container_manager.models import (
    ContainerJob,
    ExecutorHost,
    JobQueue,
)
from container_manager.models.queries import active_q, waiting_q
from container_manager.queue import queue_manager


def _active_jobs_of_host() -> Any:
    """Jobs holding a slot of the outer host, counted per host by a subquery.

    A subquery on (host, status) reads only the host's active jobs through
    the ``cm_job_host_status_idx`` index; a ``Count`` over the ``jobs`` join
    would read every job the host ever ran.
    """
    held = (
        ContainerJob.objects.holding()
        .filter(host=OuterRef("pk"))
        .order_by()
        .values("host")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(held, output_field=IntegerField()), Value(0))


#: The most hosts one "check now" asks (each may take its engine's timeout).
MAX_CHECKED_HOSTS = 20


class ExecutorHostAdmin(SafeInputAdminMixin, admin.ModelAdmin):
    """Hosts: capacity in use, health, and pause/resume."""

    list_display = (
        "name",
        "executor_type",
        "availability",
        "capacity_in_use",
        "health_badge",
        "last_check",
        "weight",
    )
    list_filter = ("executor_type", "is_active", "is_paused", "health_status")
    search_fields = ("name", "connection_string")
    readonly_fields = (
        "health_status",
        "health_error",
        "last_health_check_at",
        "created_at",
        "updated_at",
    )
    actions = ["pause_hosts", "resume_hosts", "check_hosts_now"]

    class Media:
        css = {"all": ("container_manager/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[ExecutorHost]:
        """Hosts with ``active_jobs`` counted in the same query."""
        return super().get_queryset(request).annotate(active_jobs=_active_jobs_of_host())

    @admin.display(description="last health check", ordering="last_health_check_at")
    def last_check(self, host: ExecutorHost) -> SafeString | str:
        return display.short_time(host.last_health_check_at)

    @admin.display(description="availability", ordering="is_paused")
    def availability(self, host: ExecutorHost) -> SafeString:
        if not host.is_active:
            return display.badge("host", "inactive", "Inactive")
        if host.is_paused:
            return display.badge("host", "paused", "Paused")
        return display.badge("host", "available", "Available")

    @admin.display(description="capacity in use", ordering="active_jobs")
    def capacity_in_use(self, host: Any) -> SafeString:
        return display.ratio_bar(int(host.active_jobs), int(host.max_concurrent_jobs))

    @admin.display(description="health", ordering="health_status")
    def health_badge(self, host: ExecutorHost) -> SafeString:
        label = host.get_health_status_display()
        if host.health_error:
            full = f"{label}: {host.health_error}"
            return display.badge(
                "health", host.health_status, f"{label}: {host.health_error[:80]}", full
            )
        return display.badge("health", host.health_status, label)

    def _apply(self, request: HttpRequest, queryset: QuerySet[ExecutorHost], pause: bool) -> None:
        names = []
        for host in queryset.order_by("name"):
            (queue_manager.pause_host if pause else queue_manager.resume_host)(host)
            names.append(host.name)
        verb = "Paused" if pause else "Resumed"
        self.message_user(
            request, f"{verb} {len(names)} host(s): {', '.join(names)}.", messages.SUCCESS
        )

    @admin.action(permissions=["change"], description="Pause selected hosts (no new jobs)")
    def pause_hosts(self, request: HttpRequest, queryset: QuerySet[ExecutorHost]) -> None:
        """Pause the hosts: they get no new jobs; running containers go on."""
        self._apply(request, queryset, pause=True)

    @admin.action(permissions=["change"], description="Resume selected hosts")
    def resume_hosts(self, request: HttpRequest, queryset: QuerySet[ExecutorHost]) -> None:
        """Resume the hosts and wake idle workers."""
        self._apply(request, queryset, pause=False)

    @admin.action(permissions=["change"], description="Check selected hosts now")
    def check_hosts_now(self, request: HttpRequest, queryset: QuerySet[ExecutorHost]) -> None:
        """Ask each host whether it answers now, and record the result (its health columns)."""
        for host in queryset.order_by("name")[:MAX_CHECKED_HOSTS]:
            report = queue_manager.check_host(host)
            if report.is_healthy:
                self.message_user(request, f"Host {host.name!r} answers.", messages.SUCCESS)
            else:
                self.message_user(
                    request,
                    f"Host {host.name!r} does not answer ({report.detail}).",
                    messages.WARNING,
                )


def _count_of(jobs: QuerySet[ContainerJob]) -> Any:
    counted = jobs.order_by().values("queue").annotate(n=Count("id")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


class JobQueueAdmin(SafeInputAdminMixin, admin.ModelAdmin):
    """Named queues: pause switch, concurrency limit, jobs waiting and active."""

    list_display = ("name", "paused_badge", "limit_display", "waiting", "active")
    list_filter = ("is_paused",)
    search_fields = ("name",)
    actions = ["pause_queues", "resume_queues"]

    class Media:
        css = {"all": ("container_manager/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[JobQueue]:
        """Queues with their waiting and active jobs counted by the database."""
        same_queue = ContainerJob.objects.filter(queue=OuterRef("name"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                waiting_jobs=_count_of(same_queue.filter(waiting_q())),
                active_jobs=_count_of(same_queue.filter(active_q())),
            )
        )

    @admin.display(description="state", ordering="is_paused")
    def paused_badge(self, queue: JobQueue) -> SafeString:
        if queue.is_paused:
            return display.badge("host", "paused", "Paused")
        return display.badge("host", "available", "Running")

    @admin.display(description="max concurrent")
    def limit_display(self, queue: JobQueue) -> str:
        limit = queue.max_concurrent or settings.queue_limit(queue.name)
        return "no limit" if limit is None else str(limit)

    @admin.display(description="waiting", ordering="waiting_jobs")
    def waiting(self, queue: Any) -> int:
        return int(queue.waiting_jobs)

    @admin.display(description="active", ordering="active_jobs")
    def active(self, queue: Any) -> int:
        return int(queue.active_jobs)

    def _apply(self, request: HttpRequest, queryset: QuerySet[JobQueue], pause: bool) -> None:
        names = []
        for row in queryset.order_by("name"):
            try:
                (queue_manager.pause_queue if pause else queue_manager.resume_queue)(row.name)
            except ValueError as exc:
                self.message_user(request, f"Skipped queue {row.name}: {exc}", messages.WARNING)
                continue
            names.append(row.name)
        verb = "Paused" if pause else "Resumed"
        self.message_user(
            request, f"{verb} {len(names)} queue(s): {', '.join(names)}.", messages.SUCCESS
        )

    @admin.action(permissions=["change"], description="Pause selected queues")
    def pause_queues(self, request: HttpRequest, queryset: QuerySet[JobQueue]) -> None:
        """Pause the queues: none of their jobs is launched until resumed."""
        self._apply(request, queryset, pause=True)

    @admin.action(permissions=["change"], description="Resume selected queues")
    def resume_queues(self, request: HttpRequest, queryset: QuerySet[JobQueue]) -> None:
        """Resume the queues and wake idle workers."""
        self._apply(request, queryset, pause=False)


class EnvironmentVariableTemplateAdmin(SafeInputAdminMixin, admin.ModelAdmin):
    """Environment templates."""

    list_display = ("name", "description", "updated_at")
    search_fields = ("name", "description")
