"""Small HTML pieces of the admin pages: badges, bars, durations. All output is escaped."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from container_manager.admin.filters import priority_band
from container_manager.states import JobStatus

#: Characters of ``last_error`` shown in the job list (the rest is in the tooltip).
ERROR_PREVIEW_CHARS = 60

_PRIORITY_ARROWS = {"high": "▲", "normal": "●", "low": "▼"}
_QUEUE_STATUS_LABELS = {
    "not_queued": "Not queued",
    "queued": "Queued",
    "scheduled": "Scheduled",
    "launched": "Launched",
    "launch_failed": "Launch failed",
}


def badge(kind: str, value: str, label: str) -> SafeString:
    """A coloured label: ``<span class="cm-badge cm-<kind>-<value>">label</span>``."""
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
    """A bar filled to ``percent`` (0-100), with an optional caption after it."""
    percent = max(0, min(100, int(percent)))
    return format_html(
        '<span class="cm-nowrap"><span class="cm-progress" title="{}%"><span '
        'class="cm-progress-fill" style="width: {}%"></span></span> '
        '<span class="cm-progress-text">{}%{}</span></span>',
        percent,
        percent,
        percent,
        f" {caption}" if caption else "",
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


def error_preview(code: str, message: str) -> SafeString | str:
    """The error code and the start of the message; the whole message as a tooltip."""
    if not code and not message:
        return "-"
    short = message if len(message) <= ERROR_PREVIEW_CHARS else message[:ERROR_PREVIEW_CHARS] + "…"
    return format_html(
        '<span class="cm-error" title="{}"><code>{}</code><br>{}</span>', message, code, short
    )


def pre(text: str, empty: str = "(no output)") -> SafeString:
    """Text in a ``<pre>`` block, escaped: a job printing ``<script>`` shows the text."""
    if not text:
        return format_html('<span class="cm-empty">{}</span>', empty)
    return format_html('<pre class="cm-output">{}</pre>', text)


def short_time(value: datetime | None) -> SafeString | str:
    """A compact time for list columns: ``14:05:09`` today, ``2026-11-21 14:05:09`` before.

    The full date and time are in the tooltip and the ``datetime`` attribute.
    """
    if value is None:
        return "-"
    local = timezone.localtime(value)
    if local.date() == timezone.localdate():
        text = local.strftime("%H:%M:%S")
    else:
        text = local.strftime("%Y-%m-%d %H:%M:%S")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        local.strftime("%Y-%m-%d %H:%M:%S %Z"),
        text,
    )
