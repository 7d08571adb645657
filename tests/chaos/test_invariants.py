"""The chaos suite's own checks, on made-up data: each rule must be able to fail.

These run everywhere (no PostgreSQL, Docker or root needed), so that a change
to the rules that would hide a doubled run, a lost job or a leftover is caught
on the fast SQLite run too.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from chaos.invariants import JobRow, Leftover, Outcome, Run, WorkerLife, compute
from chaos.schedule import DOCKER_RESTART, KILL, PG_RESTART, TERM, FaultPlan, make_schedule
from chaos.witness import ProcessWitness, parse_docker_time, process_command

MARK = {1: "chaos-d0-aaa", 2: "chaos-d1-bbb"}


def done(pk: int, **fields) -> JobRow:
    values = {"status": "completed", "exit_code": 0, "stdout": MARK[pk] + "\n", "attempt": 1}
    values.update(fields)
    return JobRow(pk=pk, **values)


def outcome(runs: list[Run], rows: dict[int, JobRow] | None = None, **fields) -> Outcome:
    values = {
        "queued": dict(MARK),
        "rows": rows if rows is not None else {1: done(1), 2: done(2)},
        "runs": runs,
        "leftovers": [],
        "workers": [],
        "drain_seconds": 1.5,
    }
    values.update(fields)
    return Outcome(**values)


def clean_runs() -> list[Run]:
    return [
        Run(1, 1, "c1", started=10.0, ended=11.0, exit_code=0),
        Run(2, 1, "c2", started=10.5, ended=11.5, exit_code=0),
    ]


def values(result) -> dict[str, object]:
    return {row.name: row.value for row in result}


def failing(result) -> dict[str, object]:
    return {row.name: row.value for row in result if not row.ok}


def test_a_clean_run_has_every_invariant_at_zero():
    result = compute(outcome(clean_runs()))
    assert failing(result) == {}
    assert values(result)["time to drain after the faults stop (s)"] == 1.5


def test_a_second_container_while_the_first_runs_is_a_doubled_run():
    runs = [*clean_runs(), Run(1, 2, "c3", started=10.8, ended=11.2, exit_code=0)]
    bad = failing(compute(outcome(runs)))
    assert bad == {"jobs run again while an earlier run was alive or after it succeeded": 1}


def test_a_run_after_a_success_is_a_doubled_run():
    runs = [*clean_runs(), Run(1, 2, "c3", started=20.0, ended=21.0, exit_code=0)]
    result = compute(outcome(runs))
    row = next(r for r in result if r.name.startswith("jobs run again"))
    assert row.value == 1
    assert "after c1 had succeeded" in row.details[0]


def test_an_earlier_run_never_seen_to_end_counts_as_alive():
    runs = [Run(1, 1, "c1", started=10.0), Run(1, 2, "c3", started=30.0, ended=31.0, exit_code=0)]
    runs.append(Run(2, 1, "c2", started=10.5, ended=11.5, exit_code=0))
    assert failing(compute(outcome(runs))) == {
        "jobs run again while an earlier run was alive or after it succeeded": 1
    }


def test_a_new_attempt_after_a_run_was_cut_short_is_allowed():
    runs = [
        Run(1, 1, "c1", started=10.0, ended=12.0, exit_code=137),
        Run(1, 2, "c3", started=13.0, ended=14.0, exit_code=0),
        Run(2, 1, "c2", started=10.5, ended=11.5, exit_code=0),
    ]
    assert failing(compute(outcome(runs))) == {}


def test_two_containers_for_one_attempt_are_counted():
    runs = [*clean_runs(), Run(2, 1, "c9", started=None)]
    assert failing(compute(outcome(runs))) == {
        "(job, attempt) pairs with more than one container": 1
    }


def test_the_kernel_lock_decides_for_processes_without_an_end():
    # A killed process leaves no end line: the lock says whether it was still alive.
    killed = Run(1, 1, "pid 10", started=1.0, overlap_witnessed=False)
    alive_beside = Run(1, 2, "pid 11", started=2.0, ended=3.0, exit_code=0, overlap_witnessed=True)
    after_death = Run(1, 2, "pid 11", started=2.0, ended=3.0, exit_code=0, overlap_witnessed=False)
    other = Run(2, 1, "pid 12", started=1.5, ended=2.5, exit_code=0, overlap_witnessed=False)
    assert failing(compute(outcome([killed, after_death, other], unit="process"))) == {}
    assert failing(compute(outcome([killed, alive_beside, other], unit="process"))) == {
        "jobs run again while an earlier run was alive or after it succeeded": 1
    }


def test_jobs_lost_not_terminal_and_without_output():
    rows = {
        1: JobRow(1, "failed", None, "", error_code="WORKER_LOST", attempt=3),
        2: done(2, stdout=""),
    }
    runs = [Run(2, 1, "c2", started=10.5, ended=11.5, exit_code=0)]
    bad = failing(compute(outcome(runs, rows)))
    assert bad == {"jobs lost": 1, "completed jobs without their output or exit code": 1}
    rows = {1: JobRow(1, "running", None, "")}
    bad = failing(compute(outcome([], rows)))
    assert bad == {"jobs not terminal after the drain": 1, "jobs lost": 1}  # 2 has no row


def test_a_failure_explained_by_a_killed_container_is_not_lost():
    rows = {1: JobRow(1, "failed", 137, "", error_code="CONTAINER_EXIT_NONZERO"), 2: done(2)}
    runs = [Run(1, 1, "c1", started=10.0, ended=11.0, exit_code=137), clean_runs()[1]]
    result = compute(outcome(runs, rows))
    assert failing(result) == {}
    assert values(result)["jobs failed because their container was cut short (not counted)"] == 1


def test_completed_without_a_run_seen_is_counted():
    assert failing(compute(outcome(clean_runs()[:1]))) == {
        "completed jobs with no container seen by the witness": 1
    }


def test_leftovers_follow_the_retention_setting():
    rows = {1: done(1), 2: JobRow(2, "failed", 1, "", attempt=1)}
    runs = [clean_runs()[0], Run(2, 1, "c2", started=10.5, ended=11.5, exit_code=1)]
    left = [Leftover(1, "container c1 exited"), Leftover(2, "container c2 exited")]
    name = "containers left behind for terminal jobs (retention {})"
    for retention, count in (("remove", 2), ("keep_failed", 1), ("keep", 0)):
        result = values(compute(outcome(runs, rows, leftovers=left, retention=retention)))
        assert result[name.format(retention)] == count


def test_workers_that_died_on_their_own_or_stopped_badly():
    workers = [
        WorkerLife("w1", 1, "SIGKILL", -9),
        WorkerLife("w2", 2, None, 1, log_tail="CommandError: connection failed"),
        WorkerLife("w3", 3, "SIGTERM", 0, stop_seconds=2.0),
        WorkerLife("w4", 4, "SIGTERM", 1, stop_seconds=2.0),
        WorkerLife("w5", 5, "SIGTERM", -9, stop_seconds=None),
        WorkerLife("w6", 6, "SIGTERM", 0, final_stop=True, stop_seconds=1.0),
        WorkerLife("w7", 7, None, None),
    ]
    result = compute(outcome(clean_runs(), workers=workers))
    assert failing(result) == {
        "workers that died on their own": 1,
        "workers that did not stop cleanly on SIGTERM": 2,
    }
    died = next(r for r in result if r.name == "workers that died on their own")
    assert "CommandError" in died.details[0]


def test_a_sigterm_while_starting_counts_only_before_the_worker_is_ready():
    workers = [
        # Killed by the signal's default action while importing: it held nothing.
        WorkerLife("w1", 1, "SIGTERM", -15, final_stop=True, stop_seconds=0.1, was_ready=False),
        # Ready, then ended by the signal instead of stopping cleanly: counted.
        WorkerLife("w2", 2, "SIGTERM", -15, final_stop=True, stop_seconds=0.1, was_ready=True),
    ]
    result = compute(outcome(clean_runs(), workers=workers))

    assert failing(result) == {"workers that did not stop cleanly on SIGTERM": 1}
    figure = values(result)[
        "workers ended by SIGTERM while starting, holding nothing (not counted)"
    ]
    assert figure == 1


def test_the_same_seed_gives_the_same_schedule():
    plan = FaultPlan(fault_seconds=60, workers=4)
    first = make_schedule(7, plan)
    assert first == make_schedule(7, plan)
    assert first != make_schedule(8, plan)
    kinds = [f.kind for f in first]
    assert kinds.count(TERM) == 2
    assert kinds.count(PG_RESTART) == 1
    assert kinds.count(DOCKER_RESTART) == 1
    kills = [f.at for f in first if f.kind == KILL]
    gaps = [b - a for a, b in itertools.pairwise(kills)]
    assert gaps
    assert all(2 - 1e-6 <= gap <= 5 + 1e-6 for gap in gaps)
    assert all(0 <= f.at < 60 for f in first)
    pg = next(f.at for f in first if f.kind == PG_RESTART)
    dockerd = next(f.at for f in first if f.kind == DOCKER_RESTART)
    assert pg < dockerd


def test_docker_times_with_nanoseconds():
    assert parse_docker_time("0001-01-01T00:00:00Z") is None
    assert parse_docker_time("2024-05-01T10:00:00.123456789Z") == pytest.approx(
        1714557600.123456789
    )


def run_command(
    tmp_path: Path, key: str, marker: str, sleep: float, attempt: int = 1
) -> subprocess.Popen[bytes]:
    """Run a job's command as the local executor would: in a per-attempt directory."""
    job = {"p0": 1, "p1": 2}[key]
    work = Path(tempfile.mkdtemp(prefix=f"cm-job-{job}-a{attempt}-", dir=tmp_path))
    env = {"PATH": "/usr/bin:/bin", "CHAOS_DIR": str(tmp_path), "CHAOS_KEY": key}
    return subprocess.Popen(
        ["/bin/sh", "-c", process_command(marker, sleep)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )


def test_the_process_witness_sees_a_real_doubled_run(tmp_path):
    """Two real processes of one job at once: the kernel lock says so, and the row counts it."""
    witness = ProcessWitness(tmp_path, "r1", pk_of_key={"p0": 1, "p1": 2})
    witness.prepare()
    first = run_command(tmp_path, "p0", "chaos-p0-aaa", 1.0)
    lines = tmp_path / "witness.log"
    end = time.monotonic() + 10
    while "start p0" not in lines.read_text():
        assert time.monotonic() < end, "the first process wrote no start line"
        time.sleep(0.01)
    second = run_command(tmp_path, "p0", "chaos-p0-aaa", 0.1)
    other = run_command(tmp_path, "p1", "chaos-p1-bbb", 0.1)
    for proc in (first, second, other):
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert out.startswith(b"chaos-p")
    runs = witness.runs()
    # The two short processes start in either order.
    assert sorted((r.job, r.overlap_witnessed, r.succeeded) for r in runs) == [
        (1, False, True),
        (1, True, True),
        (2, False, True),
    ]
    rows = {
        1: JobRow(1, "completed", 0, "chaos-p0-aaa"),
        2: JobRow(2, "completed", 0, "chaos-p1-bbb"),
    }
    bad = failing(
        compute(outcome(runs, rows, queued={1: "chaos-p0-aaa", 2: "chaos-p1-bbb"}, unit="process"))
    )
    assert bad == {
        "jobs run again while an earlier run was alive or after it succeeded": 1,
        "(job, attempt) pairs with more than one process": 1,
    }


def test_a_killed_process_releases_the_lock(tmp_path):
    """A process tree killed mid-run leaves no end line; once it is dead, no overlap is seen."""
    witness = ProcessWitness(tmp_path, "r1", pk_of_key={"p0": 1})
    witness.prepare()
    first = run_command(tmp_path, "p0", "chaos-p0-aaa", 30.0)
    lines = tmp_path / "witness.log"
    end = time.monotonic() + 10
    while "start p0" not in lines.read_text():
        assert time.monotonic() < end, "the first process wrote no start line"
        time.sleep(0.01)
    # The whole tree (its own process group), as a kill of a job's processes leaves it.
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=10)
    lock = tmp_path / "locks" / "p0"
    end = time.monotonic() + 10
    while subprocess.run(["flock", "-n", "-x", str(lock), "true"], check=False).returncode:
        assert time.monotonic() < end, "the lock outlived the killed processes"
        time.sleep(0.01)
    second = run_command(tmp_path, "p0", "chaos-p0-aaa", 0.1, attempt=2)
    second.communicate(timeout=10)
    runs = witness.runs()
    assert [(r.overlap_witnessed, r.ended is not None) for r in runs] == [
        (False, False),
        (False, True),
    ]
    assert (
        failing(
            compute(
                outcome(
                    runs,
                    {1: JobRow(1, "completed", 0, "chaos-p0-aaa")},
                    queued={1: "chaos-p0-aaa"},
                    unit="process",
                )
            )
        )
        == {}
    )
