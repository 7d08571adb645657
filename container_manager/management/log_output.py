"""How the worker command writes its log: one line per event, as text or JSON.

``process_container_jobs --queue-mode --log-format text|json|project``:
with ``text`` (the default) and ``json`` the command gives the
``container_manager`` loggers one handler of its own, writing to its stdout,
and stops them from passing records up to the project's handlers (so that
no event is printed twice); with ``project`` it leaves logging to the
project's ``LOGGING``. Every record carries the worker's id, and the job's
id, attempt and error code where the event is about a job
(docs/command-reference.md, "Logs").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

LOG_FORMATS = ("text", "json", "project")


class Stream(Protocol):
    """Where the lines go: anything with ``write`` and ``flush`` (a file, a command's stdout)."""

    def write(self, text: str) -> Any: ...

    def flush(self) -> Any: ...


#: The record attributes shown beside the message, in this order.
CONTEXT = ("worker_id", "job_id", "attempt", "error_code")
_SHORT = {"worker_id": "worker", "job_id": "job", "attempt": "attempt", "error_code": "code"}


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``2026-12-06T23:54:30.781Z WARNING Launch of job 1 failed ... [worker=w1 job=1]``."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{_SHORT[key]}={getattr(record, key)}"
            for key in CONTEXT
            if getattr(record, key, None) not in (None, "")
        )
        line = f"{_time(record)} {record.levelname} {record.getMessage()}"
        if context:
            line += f" [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, ids, ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            value = getattr(record, key, None)
            if value not in (None, ""):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _WorkerId(logging.Filter):
    """Stamps the worker's id on records that do not name one."""

    def __init__(self, worker_id: str) -> None:
        super().__init__()
        self.worker_id = worker_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "worker_id", None):
            record.worker_id = self.worker_id
        return True


class _Lines(logging.Handler):
    """Writes each record as one line to a stream (the command's stdout)."""

    def __init__(self, stream: Stream) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:
            self.handleError(record)


def configure(log_format: str, stream: Stream, worker_id: str, level: int) -> Callable[[], None]:
    """Send the ``container_manager`` loggers to ``stream`` in ``log_format``.

    Returns:
        A function that puts the loggers back as they were.
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(
            f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}"
        )
    if log_format == "project":
        return lambda: None
    root = logging.getLogger("container_manager")
    saved = (list(root.handlers), root.propagate, root.level)
    handler = _Lines(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_WorkerId(worker_id))
    root.handlers = [handler]
    root.propagate = False
    root.setLevel(level)

    def restore() -> None:
        root.handlers, root.propagate = saved[0], saved[1]
        root.setLevel(saved[2])

    return restore
