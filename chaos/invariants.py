"""The report's rows, computed from plain data: what the driver queued, what the
product's rows say at the end, and what the witness saw.

Nothing here talks to a database, an engine or a process, so that the rules
can be checked on made-up data (tests/chaos/test_invariants.py).

The witness's side is a list of :class:`Run`: one container (Docker) or one
process (local executor) of a job. A run *ran* when it started; it *succeeded*
when it ended with exit code 0 (every command of the suite exits 0 when it
runs to its end). When the witness cannot tell by times whether an earlier
run was still alive when a later one started (a process killed with its
worker leaves no end), a kernel lock decides: ``overlap_witnessed``.
"""

from __future__ import annotations

import signal
from collections import defaultdict
from dataclasses import dataclass, field

TERMINAL = frozenset({"completed", "failed", "cancelled", "timeout"})
EXAMPLES = 8


@dataclass(frozen=True)
class Run:
    """One container or process of a job, as the witness saw it."""

    job: int
    attempt: int | None
    run_id: str
    #: When it started (seconds, or the order of the witness's lines); None: created, never started.
    started: float | None
    #: When it was seen to end; None: never seen to end.
    ended: float | None = None
    exit_code: int | None = None
    #: Set by a kernel witness: True if an earlier run of the job was alive when this one
    #: started, False if none was; None: decide by the times.
    overlap_witnessed: bool | None = None

    @property
    def succeeded(self) -> bool:
        return self.ended is not None and self.exit_code == 0

    @property
    def ended_abnormally(self) -> bool:
        """Started and did not run to its end (killed, or its end never seen)."""
        return self.started is not None and not self.succeeded


@dataclass(frozen=True)
class JobRow:
    """A job as the product's row says at the end."""

    pk: int
    status: str
    exit_code: int | None
    stdout: str
    error_code: str = ""
    attempt: int = 0


@dataclass(frozen=True)
class Leftover:
    """A container (or process, or output directory) still there at the end."""

    job: int
    what: str


@dataclass(frozen=True)
class WorkerLife:
    """One worker process, from the driver's side."""

    name: str
    pid: int
    #: The signal the suite sent ("SIGKILL", "SIGTERM"), or None.
    signal_sent: str | None
    #: Its exit status (negative: killed by that signal); None: still running.
    exit_code: int | None
    #: Whether it was stopped at the end of the run (after the drain), by the suite.
    final_stop: bool = False
    #: Seconds from the SIGTERM to its exit; None if it did not exit in time.
    stop_seconds: float | None = None
    log_tail: str = ""
    #: Whether it said it was ready (registered, signal handlers installed).
    was_ready: bool = True


@dataclass
class Outcome:
    """Everything the rows are computed from."""

    #: pk -> the marker its command prints, as the driver queued them.
    queued: dict[int, str]
    #: pk -> the product's row at the end (a pk missing here has no row).
    rows: dict[int, JobRow]
    runs: list[Run]
    leftovers: list[Leftover]
    workers: list[WorkerLife]
    drain_seconds: float | None
    retention: str = "remove"
    #: Label of a run, e.g. "container" or "process".
    unit: str = "container"
    #: Doubled runs the suite made itself, after the drain, to check that they are seen
    #: (``--inject-double``): the two rows of doubles must show exactly this many.
    injected_doubles: int = 0


@dataclass
class Row:
    name: str
    value: float | int | None
    #: Whether the row is a count that must be ``expected`` (False for figures and notes).
    invariant: bool = True
    details: list[str] = field(default_factory=list)
    #: What the count must be: 0, or the number of faults the suite injected itself.
    expected: int = 0

    @property
    def ok(self) -> bool:
        return not self.invariant or self.value == self.expected


def _examples(items: list[str]) -> list[str]:
    shown = items[:EXAMPLES]
    if len(items) > EXAMPLES:
        shown.append(f"... and {len(items) - EXAMPLES} more")
    return shown


def runs_by_job(runs: list[Run]) -> dict[int, list[Run]]:
    grouped: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        grouped[run.job].append(run)
    return grouped


def doubled_runs(runs: list[Run]) -> list[str]:
    """Runs that started while an earlier run of the same job was alive, or after one succeeded."""
    found: list[str] = []
    for job, mine in sorted(runs_by_job(runs).items()):
        started = sorted((r for r in mine if r.started is not None), key=lambda r: r.started or 0)
        for index, later in enumerate(started):
            for earlier in started[:index]:
                assert later.started is not None
                if (
                    earlier.succeeded
                    and earlier.ended is not None
                    and later.started >= earlier.ended
                ):
                    why = f"after {earlier.run_id[:12]} had succeeded"
                elif later.overlap_witnessed is True or (
                    later.overlap_witnessed is None
                    and (earlier.ended is None or later.started < earlier.ended)
                ):
                    why = f"while {earlier.run_id[:12]} was alive"
                else:
                    continue
                found.append(
                    f"job {job}: {later.run_id[:12]} (attempt {later.attempt}) started {why}"
                    f" (attempt {earlier.attempt})"
                )
                break
            else:
                continue
            break
    return found


def _ended_before_ready(worker: WorkerLife) -> bool:
    """A SIGTERM that came while the worker was still starting: it ended by the signal's
    default action, before it registered or could take a job."""
    return (
        worker.signal_sent == "SIGTERM"
        and not worker.was_ready
        and worker.exit_code == -signal.SIGTERM
    )


def compute(outcome: Outcome) -> list[Row]:
    """The rows of the report, invariants first."""
    rows = outcome.rows
    by_job = runs_by_job(outcome.runs)
    unit = outcome.unit
    units = "processes" if unit == "process" else f"{unit}s"

    not_terminal = [
        f"job {pk}: {rows[pk].status}"
        for pk in sorted(outcome.queued)
        if pk in rows and rows[pk].status not in TERMINAL
    ]

    lost: list[str] = [f"job {pk}: no row" for pk in sorted(outcome.queued) if pk not in rows]
    explained: list[str] = []
    for pk in sorted(outcome.queued):
        row = rows.get(pk)
        if row is None or row.status not in TERMINAL or row.status == "completed":
            continue
        killed = [r for r in by_job.get(pk, []) if r.ended_abnormally]
        if killed:
            explained.append(
                f"job {pk}: {row.status} {row.error_code or '-'}, its {unit}"
                f" {killed[-1].run_id[:12]} ended with {killed[-1].exit_code}"
            )
        else:
            seen = len([r for r in by_job.get(pk, []) if r.started is not None])
            lost.append(
                f"job {pk}: {row.status} {row.error_code or '-'} after {row.attempt} attempt(s),"
                f" {seen} run(s) seen, none cut short"
            )

    per_attempt: dict[tuple[int, int | None], set[str]] = defaultdict(set)
    for run in outcome.runs:
        per_attempt[(run.job, run.attempt)].add(run.run_id)
    doubled_attempts = [
        f"job {job} attempt {attempt}: {len(ids)} {units} {', '.join(sorted(i[:12] for i in ids))}"
        for (job, attempt), ids in sorted(
            per_attempt.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)
        )
        if attempt is not None and len(ids) > 1
    ]

    doubled = doubled_runs(outcome.runs)

    no_output = []
    for pk in sorted(outcome.queued):
        row = rows.get(pk)
        if row is None or row.status != "completed":
            continue
        missing = []
        if row.exit_code is None:
            missing.append("no exit code")
        if outcome.queued[pk] not in row.stdout:
            missing.append(f"stdout {row.stdout[:40]!r} lacks the marker")
        if missing:
            no_output.append(f"job {pk}: " + ", ".join(missing))

    unseen = [
        f"job {pk}: completed, no {unit} of it seen to start"
        for pk in sorted(outcome.queued)
        if pk in rows
        and rows[pk].status == "completed"
        and not any(r.started is not None for r in by_job.get(pk, []))
    ]

    left = []
    for item in outcome.leftovers:
        row = rows.get(item.job)
        if row is None or row.status not in TERMINAL:
            continue
        if outcome.retention == "keep":
            continue
        if outcome.retention == "keep_failed" and row.status != "completed":
            continue
        left.append(f"job {item.job} ({row.status}): {item.what}")

    died = [
        f"{w.name} (pid {w.pid}) exited with status {w.exit_code}"
        + (f": {w.log_tail}" if w.log_tail else "")
        for w in outcome.workers
        if w.signal_sent is None and w.exit_code is not None and not w.final_stop
    ]
    unclean = [
        f"{w.name} (pid {w.pid}): "
        + (
            f"exited with status {w.exit_code} after SIGTERM"
            if w.stop_seconds is not None
            else "did not exit in time after SIGTERM"
        )
        for w in outcome.workers
        if w.signal_sent == "SIGTERM"
        and (w.stop_seconds is None or w.exit_code != 0)
        and not _ended_before_ready(w)
    ]
    before_ready = [
        f"{w.name} (pid {w.pid}): exited with status {w.exit_code} before it was ready"
        for w in outcome.workers
        if _ended_before_ready(w)
    ]

    started_runs = [r for r in outcome.runs if r.started is not None]
    return [
        Row(
            "jobs not terminal after the drain", len(not_terminal), details=_examples(not_terminal)
        ),
        Row("jobs lost", len(lost), details=_examples(lost)),
        Row(
            f"(job, attempt) pairs with more than one {unit}",
            len(doubled_attempts),
            details=_examples(doubled_attempts),
            expected=outcome.injected_doubles,
        ),
        Row(
            "jobs run again while an earlier run was alive or after it succeeded",
            len(doubled),
            details=_examples(doubled),
            expected=outcome.injected_doubles,
        ),
        Row(
            "completed jobs without their output or exit code",
            len(no_output),
            details=_examples(no_output),
        ),
        Row(
            f"completed jobs with no {unit} seen by the witness",
            len(unseen),
            details=_examples(unseen),
        ),
        Row(
            f"{units} left behind for terminal jobs (retention {outcome.retention})",
            len(left),
            details=_examples(left),
        ),
        Row("workers that died on their own", len(died), details=_examples(died)),
        Row(
            "workers that did not stop cleanly on SIGTERM", len(unclean), details=_examples(unclean)
        ),
        Row(
            "workers ended by SIGTERM while starting, holding nothing (not counted)",
            len(before_ready),
            invariant=False,
            details=_examples(before_ready),
        ),
        Row(
            "time to drain after the faults stop (s)",
            None if outcome.drain_seconds is None else round(outcome.drain_seconds, 1),
            invariant=False,
        ),
        Row(
            f"jobs failed because their {unit} was cut short (not counted)",
            len(explained),
            invariant=False,
            details=_examples(explained),
        ),
        Row(f"{unit} runs seen by the witness", len(started_runs), invariant=False),
    ]
