"""The admin of schedules: cron, time zone, the job to queue, next fire times, suspend, resume."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from container_manager.admin import display
from container_manager.admin.inputs import SafeInputAdminMixin
from container_manager.models import Schedule
from container_manager.queue import queue_manager

#: Fire times shown on a schedule's page.
SHOWN_FIRE_TIMES = 5


class ScheduleAdmin(SafeInputAdminMixin, admin.ModelAdmin):
    """Schedules queue a job at each fire time; workers fire them (docs/schedules.md)."""

    list_display = (
        "name",
        "cron",
        "timezone",
        "state_badge",
        "next_fire_display",
        "last_fired_at",
        "jobs_link",
    )
    list_filter = ("is_suspended", "catch_up", "concurrency")
    search_fields = ("name", "cron")
    readonly_fields = ("next_fire_times", "last_fired_at", "created_at", "jobs_link")
    fieldsets = (
        (None, {"fields": ("name", "cron", "timezone", "is_suspended")}),
        ("The job to queue", {"fields": ("job", "host")}),
        ("Policies", {"fields": ("catch_up", "max_catch_up", "concurrency")}),
        ("Fire times", {"fields": ("next_fire_times", "last_fired_at", "created_at", "jobs_link")}),
    )
    actions = ("suspend_selected", "resume_selected")

    class Media:
        css = {"all": ("container_manager/admin.css",)}

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        """A new cron, time zone, or a resume, starts from the next fire time after now."""
        if change and {"cron", "timezone", "is_suspended"} & set(form.changed_data):
            obj.next_fire_at = None
        super().save_model(request, obj, form, change)

    @admin.display(description="state", ordering="is_suspended")
    def state_badge(self, schedule: Schedule) -> SafeString:
        if schedule.is_suspended:
            return display.badge("status", "paused", "Suspended")
        return display.badge("status", "running", "Active")

    @admin.display(description="next fire", ordering="next_fire_at")
    def next_fire_display(self, schedule: Schedule) -> SafeString | str:
        if schedule.is_suspended or schedule.next_fire_at is None:
            return "-"
        return display.short_time(schedule.next_fire_at)

    @admin.display(description="next fire times")
    def next_fire_times(self, schedule: Schedule) -> SafeString | str:
        if schedule.pk is None or schedule.is_suspended:
            return "-"
        start = max(schedule.next_fire_at or timezone.now(), timezone.now())
        times = [schedule.next_fire_at] if schedule.next_fire_at else []
        times += schedule.fire_times_after(start, SHOWN_FIRE_TIMES)
        unique = sorted({t for t in times if t is not None})[:SHOWN_FIRE_TIMES]
        return format_html_join(", ", "{}", ((display.short_time(t),) for t in unique))

    @admin.display(description="jobs")
    def jobs_link(self, schedule: Schedule) -> SafeString | str:
        if schedule.pk is None:
            return "-"
        url = reverse(f"{self.admin_site.name}:container_manager_containerjob_changelist")
        return format_html('<a href="{}?schedule={}">Its jobs</a>', url, schedule.pk)

    @admin.action(description="Suspend selected schedules", permissions=["change"])
    def suspend_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            queue_manager.suspend_schedule(schedule)
        self.message_user(request, f"Suspended {queryset.count()} schedule(s).", messages.SUCCESS)

    @admin.action(
        description="Resume selected schedules (from the next fire time)", permissions=["change"]
    )
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        for schedule in queryset:
            queue_manager.resume_schedule(schedule)
        self.message_user(request, f"Resumed {queryset.count()} schedule(s).", messages.SUCCESS)
