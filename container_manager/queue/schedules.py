"""Firing schedules: each fire time of each schedule queues one job, whichever worker fires it.

Every worker calls :meth:`ScheduleMixin.fire_schedules` in its loop. For
each schedule whose ``next_fire_at`` has come, it works out which fire
times to run (``catch_up``: ``skip`` runs only a fire time not older than
``ON_TIME_SECONDS``, ``once`` the latest missed one, ``all`` each of the
last ``max_catch_up``), applies ``concurrency`` (``forbid`` skips a run
while a job of the schedule has not finished, ``replace`` cancels that job
first), and inserts a job per fire time. Exactly once: the database holds
one job per schedule and fire time (``cm_job_schedule_fire``), so a second
worker's INSERT of the same fire time fails and is ignored; then
``next_fire_at`` moves on with one guarded UPDATE. No leader is needed, and
a worker killed at any point leaves either the job (found by the next
worker's INSERT) or nothing (made by the next worker).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from container_manager import states
from container_manager.models import ContainerJob, Schedule
from container_manager.models.schedule import CatchUp, Concurrency
from container_manager.queue.control import ControlMixin
from container_manager.queue.dependencies import DependencyMixin

logger = logging.getLogger(__name__)

#: With ``catch_up="skip"``, a fire time this old (seconds) still runs: a
#: worker busy or restarting for a moment does not skip it.
ON_TIME_SECONDS = 60
#: Schedules looked at per call.
SCHEDULES_PER_PASS = 100


class ScheduleMixin(DependencyMixin, ControlMixin):
    """Firing, suspending and resuming schedules; mixed into ``JobQueueManager``."""

    def fire_schedules(self, now: datetime | None = None) -> list[ContainerJob]:
        """Queue the jobs of every schedule whose fire time has come.

        Returns:
            The jobs this call queued (those another worker queued first are not among them).
        """
        now = now or timezone.now()
        due = list(
            Schedule.objects.using(self.using)
            .select_related("host")
            .filter(is_suspended=False, next_fire_at__lte=now)
            .order_by("next_fire_at")[:SCHEDULES_PER_PASS]
        )
        made: list[ContainerJob] = []
        for schedule in due:
            made.extend(self._fire(schedule, now))
        return made

    def next_schedule_due(self) -> datetime | None:
        """The earliest ``next_fire_at`` of the schedules not suspended, or None."""
        first = (
            Schedule.objects.using(self.using)
            .filter(is_suspended=False, next_fire_at__isnull=False)
            .order_by("next_fire_at")
            .values_list("next_fire_at", flat=True)
            .first()
        )
        return first

    def _fire(self, schedule: Schedule, now: datetime) -> list[ContainerJob]:
        assert schedule.next_fire_at is not None
        first = schedule.next_fire_at
        limit = schedule.max_catch_up if schedule.catch_up == CatchUp.ALL else 1
        times = schedule.fire_times_between(first, now, limit)
        if schedule.catch_up == CatchUp.SKIP:
            times = [t for t in times if now - t <= timedelta(seconds=ON_TIME_SECONDS)]
        made: list[ContainerJob] = []
        for fire_at in times:
            job = self._fire_once(schedule, fire_at)
            if job is not None:
                made.append(job)
        following = schedule.fire_times_after(now, 1)[0]
        fields: dict[str, datetime] = {"next_fire_at": following}
        if made:
            # The latest fire time that made a job (a skipped one made none).
            fields["last_fired_at"] = max(job.scheduled_fire_at or first for job in made)
        # Guarded: only the worker that read this next_fire_at moves it.
        moved = (
            Schedule.objects.using(self.using)
            .filter(pk=schedule.pk, next_fire_at=first)
            .update(**fields)
        )
        if moved and len(times) < len(schedule.fire_times_between(first, now, 2)):
            logger.info(
                "Schedule %s skipped fire times it missed (catch-up %s)",
                schedule.name,
                schedule.catch_up,
            )
        return made

    def _fire_once(self, schedule: Schedule, fire_at: datetime) -> ContainerJob | None:
        """Queue the job of one fire time, unless it exists or the concurrency policy says no."""
        jobs = ContainerJob.objects.using(self.using)
        unfinished = jobs.filter(
            schedule=schedule, status__in=sorted(states.UNFINISHED_STATUSES)
        ).exclude(scheduled_fire_at=fire_at)
        if schedule.concurrency == Concurrency.FORBID and unfinished.exists():
            logger.info(
                "Schedule %s: run of %s skipped, a run has not finished (concurrency forbid)",
                schedule.name,
                fire_at.isoformat(),
            )
            return None
        if schedule.concurrency == Concurrency.REPLACE:
            for old in unfinished:
                try:
                    self.cancel_job(old)
                except Exception as exc:
                    logger.warning(
                        "Schedule %s: could not cancel job %s to replace it: %s",
                        schedule.name,
                        old.pk,
                        exc,
                    )
        fields = dict(schedule.job)
        fields.setdefault("name", f"{schedule.name} {fire_at.isoformat()}")
        job = ContainerJob(
            **fields, host=schedule.host, schedule=schedule, scheduled_fire_at=fire_at
        )
        try:
            with transaction.atomic(using=self.using):
                [saved] = self.queue_jobs([job])
        except IntegrityError:
            # Another worker queued this fire time first.
            return None
        logger.info(
            "Schedule %s queued job %s for %s",
            schedule.name,
            saved.pk,
            fire_at.isoformat(),
            extra={"job_id": saved.pk},
        )
        return saved

    def suspend_schedule(self, schedule: Schedule) -> Schedule:
        """Stop firing ``schedule`` until it is resumed."""
        Schedule.objects.using(self.using).filter(pk=schedule.pk).update(is_suspended=True)
        schedule.refresh_from_db()
        return schedule

    def resume_schedule(self, schedule: Schedule) -> Schedule:
        """Fire ``schedule`` again, from its next fire time after now (missed ones are not run)."""
        following = schedule.fire_times_after(timezone.now(), 1)[0]
        Schedule.objects.using(self.using).filter(pk=schedule.pk).update(
            is_suspended=False, next_fire_at=following
        )
        schedule.refresh_from_db()
        return schedule
