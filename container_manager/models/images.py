"""What image tasks and dependencies add to a job: their rows, and the checks of their options.

- :class:`JobDependency`: "this job waits for that one". A job with
  dependencies is ready only once every one of them has completed
  (``JobQuerySet.ready``); when one fails, times out or is cancelled, the
  queue fails it with ``DEPENDENCY_FAILED`` (queue/dependencies.py).
  Dependencies are given when a job is made, on jobs that exist, so they
  cannot form a cycle.
- :class:`ImageBuildContext`: the tar archive of a build, kept apart from the
  job's row so that lists of jobs never read it.
- :func:`image_task_problems`: what ``ContainerJob.clean`` says about a
  job's ``kind`` and ``image_options``.
- :class:`JobArray`: N jobs made from one template by one request, each
  with its ``array_index``; their containers get ``CM_ARRAY_INDEX`` and
  ``CM_ARRAY_SIZE``.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from container_manager.models.validation import image_reference_problem
from container_manager.states import IMAGE_KINDS, JobKind

#: The options each kind takes in ``image_options``, with their types.
_STR, _BOOL, _STR_MAP, _STR_LIST = "text", "true or false", "object of text", "list of text"
IMAGE_OPTIONS: dict[str, dict[str, str]] = {
    JobKind.RUN: {},
    JobKind.IMAGE_PULL: {"platform": _STR},
    JobKind.IMAGE_BUILD: {
        "dockerfile": _STR,
        "files": _STR_MAP,
        "build_args": _STR_MAP,
        "target": _STR,
        "tags": _STR_LIST,
        "labels": _STR_MAP,
        "platform": _STR,
        "push": _BOOL,
    },
    JobKind.IMAGE_PUSH: {},
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _STR_MAP:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def options_problem(kind: str, options: dict[str, Any]) -> str:
    """Say what is wrong with ``options`` for a job of ``kind``, or "" when nothing."""
    allowed = IMAGE_OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        what = f"known: {', '.join(sorted(allowed))}" if allowed else "it takes none"
        return f"Unknown option(s) {', '.join(map(str, unknown))} for {kind} jobs; {what}."
    for name, value in options.items():
        if not _type_ok(allowed[name], value):
            return f"Option {name!r} must be {allowed[name]}."
    for tag in options.get("tags", []):
        problem = image_reference_problem(tag)
        if problem:
            return f"Tag {tag!r}: {problem}"
    return ""


def image_task_problems(job: Any) -> dict[str, str]:
    """Say what is wrong with a job's kind and image options, field by field.

    - ``kind`` is one of :class:`~container_manager.states.JobKind`;
    - an image task names its image (the reference to pull, to tag the
      build with, or to push) and runs no command;
    - ``image_options`` holds only the options of the job's kind, each of
      its type; a build's extra ``tags`` are image references too;
    - a push names its host: it pushes an image that is on that host.

    Returns:
        Messages by field name; empty when all is well.
    """
    errors: dict[str, str] = {}
    if job.kind not in JobKind.values:
        return {"kind": f"Unknown kind {job.kind!r}; known: {', '.join(JobKind.values)}."}
    options = job.image_options
    if not isinstance(options, dict):
        return {"image_options": f"Must be an object, not {type(options).__name__}."}
    problem = options_problem(job.kind, options)
    if problem:
        errors["image_options"] = problem
    if job.kind in IMAGE_KINDS:
        if not job.image:
            errors["image"] = (
                f"An image task ({job.kind}) names its image: the reference to work on."
            )
        if job.command:
            errors["command"] = f"An image task ({job.kind}) runs no command; leave it empty."
        if job.kind == JobKind.IMAGE_PUSH and job.host_id is None:
            errors["host"] = "A push runs on the host that holds the image; name the host."
    return errors


class JobDependency(models.Model):
    """One job waits for another to complete."""

    job = models.ForeignKey(
        "container_manager.ContainerJob", on_delete=models.CASCADE, related_name="dependency_links"
    )
    depends_on = models.ForeignKey(
        "container_manager.ContainerJob", on_delete=models.CASCADE, related_name="dependent_links"
    )

    class Meta:
        verbose_name = "job dependency"
        constraints = [
            models.UniqueConstraint(fields=["job", "depends_on"], name="cm_dependency_unique"),
            models.CheckConstraint(
                condition=~models.Q(job=models.F("depends_on")),
                name="cm_dependency_not_self",
                violation_error_message="A job cannot wait for itself.",
            ),
        ]
        indexes = [models.Index(fields=["depends_on"], name="cm_dependency_on_idx")]

    def __str__(self) -> str:
        return f"job {self.job_id} waits for job {self.depends_on_id}"


class ImageBuildContext(models.Model):
    """The tar archive a build job was given, kept apart from the job's row."""

    job = models.OneToOneField(
        "container_manager.ContainerJob",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="build_context",
    )
    archive = models.BinaryField()
    size = models.PositiveIntegerField()

    class Meta:
        verbose_name = "image build context"

    def __str__(self) -> str:
        return f"build context of job {self.job_id} ({self.size} bytes)"


class JobArray(models.Model):
    """Jobs made together from one template, each with its index (0 to ``size`` - 1)."""

    name = models.CharField(max_length=200, blank=True)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "job array"

    def __str__(self) -> str:
        return f"Array {self.pk} ({self.name or 'unnamed'}, {self.size} jobs)"

    def counts(self) -> dict[str, int]:
        """Its jobs by status (every status, 0 when none)."""
        from container_manager.states import JobStatus

        found = dict(self.jobs.order_by().values_list("status").annotate(n=models.Count("pk")))
        return {status: int(found.get(status, 0)) for status in JobStatus.values}

    def outcome(self, counts: dict[str, int] | None = None) -> str:
        """One word for the array: ``completed`` (all did), ``failed`` (all ended, one did
        not complete), ``running`` (some started), or ``waiting``."""
        from container_manager.states import TERMINAL_STATUSES, JobStatus

        counts = counts if counts is not None else self.counts()
        ended = sum(counts[status] for status in TERMINAL_STATUSES)
        if counts[JobStatus.COMPLETED] == self.size:
            return "completed"
        if ended == self.size:
            return "failed"
        if ended or sum(counts.values()) - counts[JobStatus.QUEUED] - counts[JobStatus.PENDING]:
            return "running"
        return "waiting"
