"""Reading what the Docker engine sends: multiplexed log frames, times, inspect data.

Free of the SDK on purpose (it only sees bytes and dicts), so it is tested
without an engine; :mod:`container_manager.executors.docker` feeds it.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

from container_manager.executors.base import LABEL_ATTEMPT, LABEL_JOB, ContainerRef, ExitStatus
from container_manager.logcap import CappedBuffer, CappedText, LineSplitter

STDOUT, STDERR = 1, 2
_FRAME_HEADER = struct.Struct(">BxxxL")
_DOCKER_TIME = re.compile(r"(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def iter_frames(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """Cut Docker's multiplexed stream into ``(stream, payload)`` frames.

    Args:
        chunks: The raw body, in chunks of any size.

    Yields:
        The stream number (1 stdout, 2 stderr) and the bytes of each frame;
        only the current frame is ever buffered.
    """
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        offset = 0
        while len(buffer) - offset >= _FRAME_HEADER.size:
            stream, length = _FRAME_HEADER.unpack_from(buffer, offset)
            end = offset + _FRAME_HEADER.size + length
            if end > len(buffer):
                break
            yield stream, bytes(buffer[offset + _FRAME_HEADER.size : end])
            offset = end
        del buffer[:offset]


def read_capped(
    chunks: Iterable[bytes], max_bytes: int, deadline: float
) -> tuple[CappedText, CappedText]:
    """Split a multiplexed stream into stdout and stderr, each kept up to ``max_bytes``.

    Args:
        chunks: The raw body of a logs request.
        max_bytes: The cap per stream.
        deadline: ``time.monotonic()`` value after which reading stops.

    Returns:
        stdout and stderr; after the deadline their markers give a lower bound.
    """
    buffers = {STDOUT: CappedBuffer(max_bytes), STDERR: CappedBuffer(max_bytes)}
    is_complete = True
    for stream, payload in iter_frames(chunks):
        buffers.get(stream, buffers[STDOUT]).feed(payload)
        if time.monotonic() > deadline:
            is_complete = False
            break
    return buffers[STDOUT].result(is_complete), buffers[STDERR].result(is_complete)


def report_progress(chunks: Iterable[bytes], report: Callable[[int, str], None]) -> None:
    """Call ``report(percent, step)`` for each progress line of either stream."""
    splitters = {STDOUT: LineSplitter(report), STDERR: LineSplitter(report)}
    for stream, payload in iter_frames(chunks):
        splitters.get(stream, splitters[STDOUT]).feed(payload)


def parse_docker_time(value: str | None) -> datetime | None:
    """Parse Docker's RFC 3339 times (nanoseconds, ``Z``); None for the zero time."""
    if not value or value.startswith("0001-"):
        return None
    match = _DOCKER_TIME.match(value)
    if not match:
        return None
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(f"{match.group(1)}{fraction}{zone}")


def status_from_inspect(ref: ContainerRef, attrs: dict[str, Any]) -> ExitStatus:
    """Build the ExitStatus of an ended container from its inspect data."""
    state = attrs.get("State") or {}
    return ExitStatus(
        ref=ref,
        exit_code=state.get("ExitCode"),
        is_oom_killed=bool(state.get("OOMKilled")),
        finished_at=parse_docker_time(state.get("FinishedAt")),
        error=state.get("Error") or "",
    )


def ref_from_labels(container_id: str, labels: dict[str, str]) -> ContainerRef | None:
    """Build a ContainerRef from a container's labels; None when they are not ours."""
    try:
        return ContainerRef(int(labels[LABEL_JOB]), int(labels[LABEL_ATTEMPT]), container_id)
    except (KeyError, ValueError):
        return None
