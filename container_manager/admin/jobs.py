"""The admin of ContainerJob: the list, the detail page and their actions."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from container_manager import states
from container_manager.admin import display
from container_manager.admin.actions import JOB_ACTIONS, JobActionsMixin
from container_manager.admin.filters import (
    PriorityBandFilter,
    QueueNameFilter,
    QueueStatusFilter,
)
from container_manager.admin.inputs import EnvironmentField, SafeInputAdminMixin, parse_id
from container_manager.admin.pagination import EstimatedCountPaginator
from container_manager.admin.views import JobViewsMixin
from container_manager.classification import describe
from container_manager.models import ContainerJob
from container_manager.models.job import QUEUE_SETTINGS_FIELDS
from container_manager.models.job import SPEC_FIELDS as JOB_SPEC_FIELDS
from container_manager.states import JobStatus

#: Fields of what to run (``models.job.SPEC_FIELDS``); read-only once the job has
#: launched or ended for good.
SPEC_FIELDS = JOB_SPEC_FIELDS
QUEUE_FIELDS = (*QUEUE_SETTINGS_FIELDS, "scheduled_for")
STATE_FIELDS = (
    "status_badge",
    "queue_status_badge",
    "progress_bar",
    "created_at_shown",
    "queued_at_shown",
    "launched_at_shown",
    "started_at_shown",
    "completed_at_shown",
    "duration_display",
    "exit_code",
    "retry_count",
    "attempt",
    "worker_id",
    "last_worker_id",
    "lease_expires_at_shown",
    "container_id",
    "depends_on_display",
    "array",
    "array_index",
    "schedule",
    "scheduled_fire_at",
)
ERROR_FIELDS = ("error_info", "last_error_display", "last_error_at_shown")
OUTPUT_FIELDS = ("stdout_display", "stderr_display", "image_result_display")
#: The job's times, shown on its page to the second with their date and zone
#: (``<field>_shown``).
TIME_FIELDS = (
    "created_at",
    "queued_at",
    "launched_at",
    "started_at",
    "completed_at",
    "lease_expires_at",
    "last_error_at",
)
#: Shown only for jobs made by 1.0.x and kept by the upgrade (docs/migration-guide.md).
LEGACY_FIELDS = ("legacy_id", "legacy_data_display")
#: Statuses in which the job's spec may no longer be edited.
FROZEN_STATUSES = states.ACTIVE_STATUSES | {
    JobStatus.PAUSED,
    JobStatus.COMPLETED,
    JobStatus.CANCELLED,
}


class ContainerJobAdmin(SafeInputAdminMixin, JobViewsMixin, JobActionsMixin, admin.ModelAdmin):
    """Jobs: list view, filters, search, actions, statistics page (docs/queue-management.md)."""

    #: Filters besides ``list_filter``: the workers page links to ``?worker_id=``
    #: (jobs a worker holds) and ``?last_worker_id=`` (jobs it ran); an array's
    #: page to ``?array=`` and a schedule's to ``?schedule=`` (their jobs).
    extra_lookups = ("worker_id", "last_worker_id", "array", "schedule")

    # One line a row from 1280 px with the navigation sidebar open: the
    # narrower the list, the more of priority, host, retries, queue and
    # duration give way (admin.css); the job's page shows them all.
    list_display = (
        "id",
        "name_display",
        "kind_display",
        "status_display",
        "priority_display",
        "queue_display",
        "host_display",
        "when_display",
        "duration_display",
        "retries_display",
        "last_error_preview",
        "progress_bar",
    )
    list_display_links = ("id", "name_display")
    actions = JOB_ACTIONS
    list_filter = (
        QueueStatusFilter,
        "status",
        "kind",
        QueueNameFilter,
        "host",
        PriorityBandFilter,
    )
    search_fields = ("name", "command", "image")
    search_help_text = (
        "Name, command or image; a number alone finds the job with that id, "
        "a UUID the job with that 1.0.x id."
    )
    list_select_related = ("host",)
    # Facet counts run one COUNT per filter choice over the whole table.
    show_facets = admin.ShowFacets.NEVER
    list_per_page = 50
    paginator = EstimatedCountPaginator
    # The unfiltered total would be a second COUNT(*) over the whole table.
    show_full_result_count = False
    ordering = ("-created_at", "-id")
    readonly_fields = STATE_FIELDS + ERROR_FIELDS + OUTPUT_FIELDS + LEGACY_FIELDS
    fieldsets = (
        ("State", {"fields": STATE_FIELDS}),
        ("Error", {"fields": ERROR_FIELDS}),
        ("Output", {"fields": OUTPUT_FIELDS}),
        ("What to run", {"fields": SPEC_FIELDS, "classes": ["collapse"]}),
        ("Queue", {"fields": QUEUE_FIELDS}),
    )
    add_fieldsets = (
        ("What to run", {"fields": SPEC_FIELDS}),
        ("Queue", {"fields": QUEUE_FIELDS}),
    )
    change_form_template = "admin/container_manager/containerjob/change_form.html"
    change_list_template = "admin/container_manager/containerjob/change_list.html"

    class Media:
        css = {"all": ("container_manager/admin.css",)}

    # Queries -------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContainerJob]:
        """Every job, with its host; the list leaves out stdout and stderr."""
        qs = super().get_queryset(request).select_related("host")
        match = request.resolver_match
        if match is not None and match.url_name and match.url_name.endswith("_changelist"):
            # Output may be a megabyte per job: the list never shows it.
            qs = qs.defer("stdout", "stderr")
        return qs

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ContainerJob], search_term: str
    ) -> tuple[QuerySet[ContainerJob], bool]:
        """Search name, command and image; a number alone (``42`` or ``#42``) is a job id.

        An id is looked up by primary key, at once on any table; a text search
        reads every row (``icontains``), which on millions of jobs takes seconds.
        """
        job_id = parse_id(search_term.strip().lstrip("#"))
        if job_id is not None:
            # The list filters are already applied to ``queryset``: the id match keeps them.
            return queryset.filter(pk=job_id), False
        try:
            legacy_id = uuid.UUID(search_term.strip())
        except ValueError:
            pass
        else:
            return queryset.filter(legacy_id=legacy_id), False
        return super().get_search_results(request, queryset, search_term)

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        """The environment takes ``KEY=value`` lines as well as a JSON object."""
        if db_field.name == "environment":
            kwargs["form_class"] = EnvironmentField
            kwargs.setdefault(
                "help_text",
                'KEY=value lines (e.g. DEBUG=true), or a JSON object ({"DEBUG": "true"}); '
                "over the template's variables.",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        """A new job shows only what to run and how to queue it; a stored one its state first."""
        if obj is None:
            return self.add_fieldsets
        if obj.legacy_id is not None:
            return (*self.fieldsets, ("From 1.0.x", {"fields": LEGACY_FIELDS}))
        return self.fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        """The spec and queue fields turn read-only once the job launched or ended."""
        if obj is not None and obj.status in FROZEN_STATUSES:
            return SPEC_FIELDS + QUEUE_FIELDS + tuple(self.readonly_fields)
        return tuple(self.readonly_fields)

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        """Write only the fields the person changed.

        A worker may move the job (claim, launch, finish) while the page is
        open; saving every column would write back the status and times the
        page was loaded with.
        """
        if not change:
            obj.save()
        elif form.changed_data:
            obj.save(
                update_fields=[
                    name for name in form.changed_data if name in SPEC_FIELDS + QUEUE_FIELDS
                ]
            )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """The detail page, with the buttons the job's state and the user's permissions allow."""
        extra = dict(extra_context or {})
        job = self.get_object(request, object_id)
        if job is not None:
            extra["job_buttons"] = self.job_buttons(request, job)
            extra["logs_url"] = reverse(
                f"{self.admin_site.name}:container_manager_containerjob_logs", args=[job.pk]
            )
            extra["can_view_logs"] = self.has_logs_permission(request)
        return super().change_view(request, object_id, form_url, extra)

    def job_buttons(self, request: HttpRequest, job: ContainerJob) -> list[dict[str, str]]:
        """The per-job buttons that apply to ``job`` for this user.

        Returns:
            ``{"name", "label", "url"}`` for each of queue, dequeue, cancel,
            pause and resume that the job's status allows and the user may use.
        """
        allowed = {
            "queue": job.status in {JobStatus.PENDING, JobStatus.FAILED, JobStatus.TIMEOUT}
            and self.has_queue_permission(request),
            "dequeue": job.is_queued and self.has_queue_permission(request),
            "pause": job.status in states.READY_STATUSES | {JobStatus.RUNNING}
            and self.has_pause_permission(request),
            "resume": job.status == JobStatus.PAUSED and self.has_pause_permission(request),
            "cancel": job.status in JobStatus.values
            and not job.is_terminal
            and self.has_cancel_permission(request),
        }
        labels = {
            "queue": "Queue",
            "dequeue": "Remove from queue",
            "pause": "Pause",
            "resume": "Resume",
            "cancel": "Cancel job",
        }
        name = f"{self.admin_site.name}:container_manager_containerjob_operation"
        return [
            {"name": op, "label": labels[op], "url": reverse(name, args=[job.pk, op])}
            for op, ok in allowed.items()
            if ok
        ]

    # Columns ---------------------------------------------------------------------

    @admin.display(description="name", ordering="name")
    def name_display(self, job: ContainerJob) -> SafeString | str:
        return display.ellipsis(job.name, "name")

    @admin.display(description="status", ordering="status")
    def status_display(self, job: ContainerJob) -> SafeString:
        return display.status_with_queue_status(job.status, job.queue_status)

    @admin.display(description="status", ordering="status")
    def status_badge(self, job: ContainerJob) -> SafeString:
        return display.status_badge(job.status)

    @admin.display(description="queue status")
    def queue_status_badge(self, job: ContainerJob) -> SafeString:
        return display.queue_status_badge(job.queue_status)

    @admin.display(description="priority", ordering="-priority")
    def priority_display(self, job: ContainerJob) -> SafeString:
        return display.priority_indicator(job.priority)

    @admin.display(description="kind", ordering="kind")
    def kind_display(self, job: ContainerJob) -> SafeString | str:
        return display.kind_label(job.kind)

    @admin.display(description="queue", ordering="queue")
    def queue_display(self, job: ContainerJob) -> SafeString | str:
        return display.ellipsis(job.queue, "queue")

    @admin.display(description="host", ordering="host__name")
    def host_display(self, job: ContainerJob) -> SafeString | str:
        return display.ellipsis(job.host.name if job.host else "", "host")

    @admin.display(description="when")
    def when_display(self, job: ContainerJob) -> SafeString:
        return display.job_when(job)

    @admin.display(description="duration")
    def duration_display(self, job: ContainerJob) -> str:
        return display.human_duration(job.duration)

    @admin.display(description="retries", ordering="retry_count")
    def retries_display(self, job: ContainerJob) -> str:
        return f"{job.retry_count} / {job.effective_max_retries}"

    @admin.display(description="last error")
    def last_error_preview(self, job: ContainerJob) -> SafeString | str:
        return display.error_preview(job.error_code, job.last_error)

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, job: ContainerJob) -> SafeString:
        return display.progress_bar(job.progress, job.live_step)

    # Detail fields -------------------------------------------------------------

    @admin.display(description="error")
    def error_info(self, job: ContainerJob) -> SafeString | str:
        if not job.error_code:
            return "-"
        entry = describe(job.error_code)
        return format_html(
            '<div class="cm-error-info"><code>{}</code> {}<br>'
            "<strong>Suggestion:</strong> {}</div>",
            job.error_code,
            entry.description,
            entry.suggestion,
        )

    @admin.display(description="last error message")
    def last_error_display(self, job: ContainerJob) -> SafeString:
        return display.pre(job.last_error, empty="-", whole=True)

    @admin.display(description="1.0.x values")
    def legacy_data_display(self, job: ContainerJob) -> SafeString:
        return display.pre(json.dumps(job.legacy_data, indent=2, sort_keys=True), empty="-")

    @admin.display(description="waits for")
    def depends_on_display(self, job: ContainerJob) -> SafeString | str:
        links = [
            format_html(
                '<a href="{}">{}</a> ({})',
                reverse("admin:container_manager_containerjob_change", args=[pk]),
                pk,
                JobStatus(status).label,
            )
            for pk, status in job.depends_on.order_by("pk").values_list("pk", "status")
        ]
        return format_html_join(", ", "{}", ((link,) for link in links)) if links else "-"

    @admin.display(description="image result")
    def image_result_display(self, job: ContainerJob) -> SafeString:
        if not job.image_result:
            return display.pre("", empty="-")
        return display.pre(json.dumps(job.image_result, indent=2, sort_keys=True), empty="-")

    @admin.display(description="stdout")
    def stdout_display(self, job: ContainerJob) -> SafeString:
        return display.pre(job.stdout, empty=_no_output(job))

    @admin.display(description="stderr")
    def stderr_display(self, job: ContainerJob) -> SafeString:
        return display.pre(job.stderr, empty=_no_output(job))


def _no_output(job: ContainerJob) -> str:
    """What an empty stream says: stored output comes at the end; meanwhile the live log has it."""
    if job.status in states.ACTIVE_STATUSES | {JobStatus.PAUSED}:
        return "(stored when the job ends; the live log shows it now)"
    return "(no output)"


__all__ = ["ContainerJobAdmin"]


def _shown_time(name: str) -> Any:
    @admin.display(description=name.replace("_", " "))
    def shown(self: Any, job: ContainerJob) -> SafeString | str:
        return display.full_time(getattr(job, name))

    shown.__name__ = f"{name}_shown"
    return shown


for _name in TIME_FIELDS:
    setattr(ContainerJobAdmin, f"{_name}_shown", _shown_time(_name))
