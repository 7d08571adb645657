"""Small HTML pieces of the admin pages: badges, bars, durations. All output is escaped."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from container_manager.admin.filters import priority_band
from container_manager.states import JobKind, JobStatus

if TYPE_CHECKING:
    from container_manager.models import ContainerJob

#: Characters of ``last_error`` put in the job list's row (cut to its width
#: there; the whole message is in the tooltip and on the job's page).
ERROR_PREVIEW_CHARS = 200

_PRIORITY_ARROWS = {"high": "▲", "normal": "●", "low": "▼"}
_QUEUE_STATUS_LABELS = {
    "not_queued": "Not queued",
    "queued": "Queued",
    "scheduled": "Scheduled",
    "launched": "Launched",
    "launch_failed": "Launch failed",
}


def badge(kind: str, value: str, label: str, tooltip: str = "") -> SafeString:
    """A coloured label: ``<span class="cm-badge cm-<kind>-<value>">label</span>``.

    A ``tooltip`` (the whole text of a label the list cuts) goes in ``title``.
    """
    if tooltip:
        return format_html(
            '<span class="cm-badge cm-{}-{}" title="{}">{}</span>', kind, value, tooltip, label
        )
    return format_html('<span class="cm-badge cm-{}-{}">{}</span>', kind, value, label)


def status_label(value: str) -> str:
    """The label of a job status; a status outside the state machine is shown as itself.

    Rows written before the database refused unknown statuses may hold one.
    """
    if value in JobStatus.values:
        return str(JobStatus(value).label)
    return str(value)


def status_badge(value: str) -> SafeString:
    """A job's status as a coloured label (``cm-status-unknown`` for an unknown one)."""
    kind = value if value in JobStatus.values else "unknown"
    return format_html('<span class="cm-badge cm-status-{}">{}</span>', kind, status_label(value))


def queue_status_badge(value: str) -> SafeString:
    """The job's queue status as a coloured label."""
    return badge("qs", value, _QUEUE_STATUS_LABELS.get(value, value))


def queue_status_tells_more(status: str, queue_status: str) -> bool:
    """Whether the queue status says what the status alone does not.

    A waiting job whose time has not come (scheduled), a failed launch, and
    whether a failed or cancelled job had launched; "Queued" beside a queued
    job or "Launched" beside a running one says nothing new.
    """
    if queue_status in {"scheduled", "launch_failed"}:
        return True
    return queue_status == "launched" and status in {JobStatus.FAILED, JobStatus.CANCELLED}


def status_with_queue_status(status: str, queue_status: str) -> SafeString:
    """The status badge, and the queue status badge where it tells more; both in the tooltip."""
    label = _QUEUE_STATUS_LABELS.get(queue_status, queue_status)
    if not queue_status_tells_more(status, queue_status):
        return format_html(
            '<span class="cm-status-cell" title="Queue status: {}">{}</span>',
            label,
            status_badge(status),
        )
    return format_html(
        '<span class="cm-status-cell" title="Queue status: {}">{} {}</span>',
        label,
        status_badge(status),
        queue_status_badge(queue_status),
    )


def priority_indicator(priority: int) -> SafeString:
    """An arrow for the priority band (▲ high, ● normal, ▼ low) and the number."""
    band = priority_band(priority)
    return format_html(
        '<span class="cm-priority cm-priority-{}" title="{} priority">{} {}</span>',
        band,
        band.capitalize(),
        _PRIORITY_ARROWS[band],
        priority,
    )


def progress_bar(percent: int, caption: str = "") -> SafeString:
    """A bar filled to ``percent`` (0-100), with an optional caption after it.

    The text (percentage and caption) is also its tooltip: the job list cuts
    a long caption to the column's width.
    """
    percent = max(0, min(100, int(percent)))
    text = f"{percent}%{f' {caption}' if caption else ''}"
    return format_html(
        '<span class="cm-nowrap"><span class="cm-progress" title="{}%"><span '
        'class="cm-progress-fill" style="width: {}%"></span></span> '
        '<span class="cm-progress-text" title="{}">{}</span></span>',
        percent,
        percent,
        text,
        text,
    )


def ratio_bar(used: int, total: int) -> SafeString:
    """``used / total`` with a bar; red when full."""
    percent = 100 if total <= 0 else min(100, round(100 * used / total))
    level = "full" if used >= total else ("busy" if percent >= 75 else "ok")
    return format_html(
        '<span class="cm-progress cm-level-{}" title="{} of {} in use">'
        '<span class="cm-progress-fill" style="width: {}%"></span></span> '
        '<span class="cm-progress-text">{} / {}</span>',
        level,
        used,
        total,
        percent,
        used,
        total,
    )


def human_duration(value: timedelta | None) -> str:
    """``1 h 02 min``, ``3 min 05 s``, ``4.2 s``, or ``-`` for None."""
    if value is None:
        return "-"
    seconds = value.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def error_summary(message: str) -> str:
    """The message on one line; of a Python traceback, its last line (the exception)."""
    lines = [line for line in message.splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1].strip()
    return " ".join(message.split())


def error_preview(code: str, message: str) -> SafeString | str:
    """The error code and the start of the message, on one line; the whole message as a tooltip.

    The message's lines are joined by spaces (a traceback gives its last
    line); the list cuts the line to the column's width.
    """
    if not code and not message:
        return "-"
    line = error_summary(message)
    short = line if len(line) <= ERROR_PREVIEW_CHARS else line[:ERROR_PREVIEW_CHARS] + "…"
    if not code:
        return format_html('<span class="cm-error" title="{}">{}</span>', message, short)
    return format_html(
        '<span class="cm-error" title="{}"><code>{}</code> {}</span>', message or code, code, short
    )


def pre(text: str, empty: str = "(no output)", *, whole: bool = False) -> SafeString:
    """Text in a ``<pre>`` block, escaped: a job printing ``<script>`` shows the text.

    Args:
        text: The text.
        empty: Shown instead when there is no text.
        whole: Show every line (an error message); by default a long text
            scrolls inside a block of limited height (output).
    """
    if not text:
        return format_html('<span class="cm-empty">{}</span>', empty)
    if whole:
        return format_html('<pre class="cm-output cm-output-whole">{}</pre>', text)
    return format_html('<pre class="cm-output">{}</pre>', text)


#: The job list's short names of the job kinds.
KIND_LABELS = {"run": "run", "image_pull": "pull", "image_build": "build", "image_push": "push"}


def kind_label(kind: str) -> SafeString | str:
    """A job kind in a word (``build``), its full name in the tooltip; image tasks stand out."""
    short = KIND_LABELS.get(kind, kind)
    full = JobKind(kind).label if kind in JobKind.values else kind
    return format_html('<span class="cm-kind cm-kind-{}" title="{}">{}</span>', short, full, short)


def ellipsis(text: str, kind: str) -> SafeString | str:
    """Text the list's CSS cuts to its column (``cm-cut-<kind>``); whole in the tooltip."""
    if not text:
        return "-"
    return format_html('<span class="cm-cut cm-cut-{}" title="{}">{}</span>', kind, text, text)


def _time_text(value: datetime) -> str:
    local = timezone.localtime(value)
    if local.date() == timezone.localdate():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def _full_time(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")


def job_when(job: ContainerJob) -> SafeString:
    """The job's latest event with its time: ``ended 14:05:09``, ``due 20:00:00``.

    Ended (``completed_at``), launched, due (a waiting job's ``scheduled_for``
    still to come), queued, or created. Every time the job has is in the
    tooltip, with its date.
    """
    now = timezone.now()
    if job.completed_at is not None:
        verb, value = "ended", job.completed_at
    elif job.launched_at is not None:
        verb, value = "launched", job.launched_at
    elif job.is_queued and job.scheduled_for is not None and job.scheduled_for > now:
        verb, value = "due", job.scheduled_for
    elif job.queued_at is not None:
        verb, value = "queued", job.queued_at
    else:
        verb, value = "created", job.created_at
    events = (
        ("Created", job.created_at),
        ("Queued", job.queued_at),
        ("Scheduled for", job.scheduled_for),
        ("Launched", job.launched_at),
        ("Started", job.started_at),
        ("Ended", job.completed_at),
    )
    tooltip = "\n".join(f"{label}: {_full_time(at)}" for label, at in events if at is not None)
    return format_html(
        '<span class="cm-when" title="{}"><span class="cm-when-verb">{}</span> '
        '<time datetime="{}">{}</time></span>',
        tooltip,
        verb,
        value.isoformat(),
        _time_text(value),
    )


def time_ago(value: datetime) -> SafeString:
    """How long ago, ``5.3 s ago``; the date and time in the tooltip and ``datetime``."""
    return format_html(
        '<time datetime="{}" title="{}">{} ago</time>',
        value.isoformat(),
        _full_time(value),
        human_duration(timezone.now() - value),
    )


def full_time(value: datetime | None) -> SafeString | str:
    """A time on a record's page: date, time to the second, zone (``2026-12-07 14:05:09 UTC``)."""
    if value is None:
        return "-"
    return format_html('<time datetime="{}">{}</time>', value.isoformat(), _full_time(value))


def short_time(value: datetime | None) -> SafeString | str:
    """A compact time for list columns: ``14:05:09`` today, ``2026-11-21 14:05:09`` before.

    The full date and time are in the tooltip and the ``datetime`` attribute.
    """
    if value is None:
        return "-"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        _full_time(value),
        _time_text(value),
    )
