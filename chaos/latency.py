"""How late a container's end is recorded: the engine's ``die`` against the row's end.

The :class:`EndWatcher` reads the run's jobs every ``POLL_SECONDS`` on a
connection of its own and notes, for each job, the wall time at which its
row was first seen terminal, and which workers held each of its attempts.
:func:`end_latencies` sets that against the witness's ``die`` times: the
latency of a job is the time from its last container's death to its end
being visible in the database (the watcher's own resolution, 0.1 s, is
part of the figure; so is a PostgreSQL restart, during which it sees
nothing).

Ends are put in three groups, so that the figures say what the docs
promise (docs/chaos.md, "End latency"):

- ``adopted``: another worker took the attempt over (its holder was
  killed or stopped by the suite before the end was seen); the lease had to
  run out first, so these are figures only.
- ``after an outage``: otherwise, the container died while the engine or
  PostgreSQL was down, or the end was recorded while one was; measured from
  the service's return. Target: one reconciliation period (30 s).
- ``followed``: the rest: one live worker held the attempt from launch to
  end, and no restart happened between its death and its recording: normal
  running. Target: 2 s at p99.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from chaos.invariants import TERMINAL, Run

#: How often the watcher reads the jobs.
POLL_SECONDS = 0.1


class EndWatcher(threading.Thread):
    """Notes when each job is first seen terminal, and who held its attempts."""

    def __init__(self) -> None:
        super().__init__(name="chaos-end-watcher", daemon=True)
        self.first_terminal: dict[int, float] = {}
        #: (job, attempt) -> the worker ids seen holding it.
        self.holders: dict[tuple[int, int], set[str]] = defaultdict(set)
        self.polls = 0
        self.failed_polls = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)

    def run(self) -> None:
        from django.db import connection

        from container_manager.models import ContainerJob

        try:
            while not self._stop_event.wait(POLL_SECONDS):
                try:
                    rows = list(
                        ContainerJob.objects.values_list("pk", "status", "attempt", "worker_id")
                    )
                except Exception:
                    # PostgreSQL is being restarted: nothing is seen until it is back.
                    self.failed_polls += 1
                    connection.close()
                    continue
                now = time.time()
                self.polls += 1
                for pk, status, attempt, worker_id in rows:
                    if worker_id:
                        self.holders[(pk, attempt)].add(worker_id)
                    if status in TERMINAL:
                        self.first_terminal.setdefault(pk, now)
        finally:
            connection.close()


@dataclass(frozen=True)
class Outage:
    """A service restart: down from ``down_at`` to ``back_at`` (epoch seconds)."""

    kind: str
    down_at: float
    back_at: float


def percentile(values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (0.99 for p99); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def _figures(values: list[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 2)

    return {
        "count": len(values),
        "p50": r(percentile(values, 0.5)),
        "p99": r(percentile(values, 0.99)),
        "max": r(max(values) if values else None),
    }


def end_latencies(
    runs: list[Run],
    statuses: dict[int, tuple[str, int]],
    first_terminal: dict[int, float],
    holders: dict[tuple[int, int], set[str]],
    outages: list[Outage],
    lost_at: dict[str, float] | None = None,
) -> dict[str, dict[str, Any]]:
    """Latency figures per group (see the module's docstring).

    Args:
        runs: The witness's containers, with epoch ``ended`` times.
        statuses: pk -> (final status, final attempt) of the product's rows.
        first_terminal: pk -> epoch seconds when the row was first seen terminal.
        holders: (pk, attempt) -> worker ids seen holding it.
        outages: The restarts of the run.
        lost_at: worker id -> epoch seconds when the suite killed or stopped it.

    Returns:
        ``{"followed": {...}, "after an outage": {...}, "adopted": {...}}``,
        each with ``count``, ``p50``, ``p99`` and ``max`` in seconds.
    """
    died: dict[tuple[int, int], float] = {}
    for run in runs:
        if run.attempt is not None and run.ended is not None and run.exit_code is not None:
            died[(run.job, run.attempt)] = run.ended
    groups: dict[str, list[float]] = {"followed": [], "after an outage": [], "adopted": []}
    for pk, (status, attempt) in statuses.items():
        if status not in ("completed", "failed") or pk not in first_terminal:
            continue
        end = died.get((pk, attempt))
        if end is None:
            continue
        seen = first_terminal[pk]
        held_by = holders.get((pk, attempt), set())
        # A holder lost before the end was seen: another worker recorded it,
        # perhaps too fast for the watcher to see it hold the job.
        is_adopted = len(held_by) > 1 or any(
            (lost_at or {}).get(worker, seen) < seen for worker in held_by
        )
        hit = [o for o in outages if o.down_at <= seen and o.back_at + 1.0 >= end]
        if is_adopted:
            groups["adopted"].append(max(0.0, seen - end))
        elif hit:
            back = max(o.back_at for o in hit)
            groups["after an outage"].append(max(0.0, seen - max(end, back)))
        else:
            groups["followed"].append(max(0.0, seen - end))
    return {name: _figures(values) for name, values in groups.items()}
