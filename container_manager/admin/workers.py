"""The admin of workers: who is alive, what each holds, when it last said so."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from container_manager.admin import display
from container_manager.admin.inputs import SafeInputAdminMixin
from container_manager.conf import settings
from container_manager.models import ContainerJob, Worker, WorkerStatus

#: Held jobs listed on a worker's page.
MAX_LISTED_JOBS = 100


def alive_since() -> Any:
    """The oldest heartbeat of a live worker: now minus ``LEASE_SECONDS``."""
    return timezone.now() - timedelta(seconds=int(settings.LEASE_SECONDS))


def is_alive(worker: Worker) -> bool:
    """True when the worker runs and its heartbeat is younger than ``LEASE_SECONDS``."""
    return worker.is_alive()


class AliveFilter(admin.SimpleListFilter):
    """Alive (heartbeat younger than LEASE_SECONDS) or not."""

    title = "alive"
    parameter_name = "alive"

    def lookups(self, request: HttpRequest, model_admin: Any) -> tuple[tuple[str, str], ...]:
        return (("yes", "Alive"), ("no", "Not alive"))

    def queryset(self, request: HttpRequest, queryset: QuerySet[Worker]) -> QuerySet[Worker]:
        alive = Q(last_heartbeat_at__gte=alive_since()) & ~Q(status=WorkerStatus.STOPPED)
        if self.value() == "yes":
            return queryset.filter(alive)
        if self.value() == "no":
            return queryset.exclude(alive)
        return queryset


class WorkerAdmin(SafeInputAdminMixin, admin.ModelAdmin):
    """Workers are registered by themselves; the admin only shows them."""

    list_display = (
        "worker_display",
        "alive_badge",
        "status",
        "last_heartbeat",
        "held",
        "queues_display",
        "max_jobs",
        "launched",
        "finished",
    )
    list_filter = (AliveFilter, "status", "hostname")
    show_facets = admin.ShowFacets.NEVER
    search_fields = ("worker_id", "hostname")
    readonly_fields = (
        "worker_id",
        "hostname",
        "pid",
        "queues",
        "max_concurrent",
        "status",
        "started_at",
        "last_heartbeat_at",
        "stopped_at",
        "jobs_launched",
        "jobs_finished",
        "held_jobs",
    )

    class Media:
        css = {"all": ("container_manager/admin.css",)}

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Workers register themselves; nobody adds one by hand."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """A worker's row is its own account of itself: the page only shows it (no Save)."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Only the row of a worker that is not alive may go (a live one would run unregistered).

        A bulk delete that includes a live worker is refused as a whole.
        """
        if obj is not None and obj.is_alive():
            return False
        return super().has_delete_permission(request, obj)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Worker]:
        """Workers with the number of jobs each holds, counted by the database."""
        held = (
            ContainerJob.objects.holding()
            .filter(worker_id=OuterRef("worker_id"))
            .order_by()
            .values("worker_id")
            .annotate(n=Count("id"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(held_count=Coalesce(Subquery(held, output_field=IntegerField()), Value(0)))
        )

    @admin.display(description="worker id", ordering="worker_id")
    def worker_display(self, worker: Worker) -> SafeString | str:
        return display.ellipsis(worker.worker_id, "worker")

    @admin.display(description="alive", boolean=False)
    def alive_badge(self, worker: Worker) -> SafeString:
        if is_alive(worker):
            return display.badge("alive", "yes", "Alive")
        if worker.status == WorkerStatus.STOPPED:
            # A clean stop is not a failure: no red badge.
            return display.badge("alive", "stopped", "Stopped")
        return display.badge("alive", "no", "Not alive")

    @admin.display(description="last heartbeat", ordering="last_heartbeat_at")
    def last_heartbeat(self, worker: Worker) -> SafeString:
        return display.time_ago(worker.last_heartbeat_at)

    @admin.display(description="jobs held", ordering="held_count")
    def held(self, worker: Any) -> SafeString:
        url = reverse(f"{self.admin_site.name}:container_manager_containerjob_changelist")
        return format_html(
            '<a href="{}?worker_id={}">{}</a>', url, worker.worker_id, worker.held_count
        )

    @admin.display(description="queues")
    def queues_display(self, worker: Worker) -> SafeString | str:
        return display.ellipsis(", ".join(str(q) for q in worker.queues) or "all", "queues")

    @admin.display(description="max jobs", ordering="max_concurrent")
    def max_jobs(self, worker: Worker) -> int:
        """Jobs the worker runs at once at most (``max_concurrent``)."""
        return worker.max_concurrent

    @admin.display(description="launched", ordering="jobs_launched")
    def launched(self, worker: Worker) -> int:
        return worker.jobs_launched

    @admin.display(description="finished", ordering="jobs_finished")
    def finished(self, worker: Worker) -> SafeString:
        """Jobs it saw end, linked to every job it last held (``last_worker_id``)."""
        url = reverse(f"{self.admin_site.name}:container_manager_containerjob_changelist")
        return format_html(
            '<a href="{}?last_worker_id={}" title="The jobs this worker ran">{}</a>',
            url,
            worker.worker_id,
            worker.jobs_finished,
        )

    @admin.display(description="jobs held now")
    def held_jobs(self, worker: Worker) -> SafeString | str:
        jobs = (
            ContainerJob.objects.holding()
            .filter(worker_id=worker.worker_id)
            .only("pk", "name", "status", "lease_expires_at")
            .order_by("pk")[:MAX_LISTED_JOBS]
        )
        name = f"{self.admin_site.name}:container_manager_containerjob_change"
        rows = [
            (reverse(name, args=[job.pk]), str(job), job.get_status_display(), job.lease_expires_at)
            for job in jobs
        ]
        if not rows:
            return "none"
        return format_html(
            "<ul>{}</ul>",
            format_html_join("", '<li><a href="{}">{}</a> {} (lease until {})</li>', rows),
        )
