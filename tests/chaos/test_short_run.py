"""A short chaos run, for real, as part of the PostgreSQL pass of ``make test``.

It runs ``python -m chaos`` (docs/chaos.md) at a small size with a fixed seed:
60 jobs and 2 workers per executor, Docker then local processes, with SIGKILLs
of workers every 2-5 s, a SIGTERM and a PostgreSQL restart in each scenario and
a dockerd restart in the Docker one. The driver starts its own PostgreSQL
cluster (on a free port, not the shared one) and its own dockerd, and stops
both by PID at the end; the test reads its JSON report and checks every
invariant on its own, so that a failure names the invariant and the jobs.

It needs root (the driver starts a dockerd), dockerd, Debian's PostgreSQL
binaries, a static /bin/busybox and flock: without one it is skipped on a
developer's machine and fails under ``CI``. ``CHAOS_SEED=N`` picks another
seed. The driver is a subprocess, not called in process: it sets Django up
with settings of its own (``chaos.settings``). On a failure the driver keeps
its logs (the message names the folder).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import missing_part

ROOT = Path(__file__).resolve().parents[2]
#: The schedule's seed; CHAOS_SEED=N runs the same short run with another one.
SEED = int(os.environ.get("CHAOS_SEED") or 20240611)
JOBS = 60
WORKERS = 2
#: The driver stops itself past this (and fails); the test waits a little longer.
DURATION_LIMIT = 300
ARGS = [
    "--executor",
    "both",
    "--jobs",
    str(JOBS),
    "--workers",
    str(WORKERS),
    "--max-concurrent",
    "4",
    "--fault-seconds",
    "20",
    "--kill-every",
    "2,5",
    "--sigterms",
    "1",
    "--pg-restarts",
    "1",
    "--docker-restarts",
    "1",
    "--process-sigterms",
    "1",
    "--process-pg-restarts",
    "1",
    "--drain-timeout",
    "120",
    # As in the full run: finished containers and output directories have 30 s to go.
    "--cleanup-grace",
    "30",
    "--term-timeout",
    "40",
]

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.docker,
    pytest.mark.timeout(DURATION_LIMIT + 240),
]


def require_parts() -> None:
    """What the driver needs: skip outside CI, fail under CI, naming the missing part.

    The checks of the markers too (``tests/conftest.py``): they are autouse fixtures of
    each test, which pytest sets up after this module's report, i.e. after the run.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        missing_part("PostgreSQL (set DATABASE_URL=postgres://...)")
    if os.geteuid() != 0:
        missing_part("root (the chaos driver starts a dockerd of its own)")
    if not (shutil.which("dockerd") or os.path.exists("/usr/sbin/dockerd")):
        missing_part("dockerd (Debian package docker.io; scripts/chaos.sh installs it)")
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        missing_part("PostgreSQL binaries /usr/lib/postgresql/*/bin/initdb (package postgresql)")
    if not os.path.exists("/bin/busybox"):
        missing_part("/bin/busybox (Debian package busybox-static)")
    if not shutil.which("flock"):
        missing_part("flock (Debian package util-linux)")


def free_port() -> int:
    """A port nobody listens on now: another test run may use the driver's default."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def driver_env() -> dict[str, str]:
    """The caller's environment without its database, engine or Django settings."""
    drop = ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "DOCKER_", "PG")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_driver(report: Path, output: Path) -> tuple[int, float]:
    """Run ``python -m chaos``; stop it by its pid (SIGTERM, then SIGKILL) if it overruns."""
    argv = [
        sys.executable,
        "-m",
        "chaos",
        *ARGS,
        "--seed",
        str(SEED),
        "--port",
        str(free_port()),
        "--duration-limit",
        str(DURATION_LIMIT),
        "--report",
        str(report),
    ]
    started = time.monotonic()
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=driver_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            # Its own deadline (and its watchdog, 90 s later) stops it first: the last resort.
            code = proc.wait(timeout=DURATION_LIMIT + 150)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
            code = -1
        finally:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
    return code, time.monotonic() - started


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


@pytest.fixture(scope="module")
def chaos_report(tmp_path_factory: pytest.TempPathFactory, docker_engine) -> dict[str, Any]:
    # docker_engine: the check of the docker marker, before the run (the run has its own).
    require_parts()
    folder = tmp_path_factory.mktemp("chaos")
    report, output = folder / "report.json", folder / "driver.log"
    code, wall = run_driver(report, output)
    where = f"seed {SEED}, exit status {code}, {wall:.0f} s; driver output {output}"
    if not report.exists():
        pytest.fail(f"the chaos driver wrote no report ({where}):\n{tail(output)}", pytrace=False)
    data: dict[str, Any] = json.loads(report.read_text())
    data["_where"] = f"{where}; logs {data.get('logs')}"
    data["_output"] = output
    print(f"chaos short run: {where}")
    return data


def test_the_run_itself_did_not_fail(chaos_report):
    """Set-up, the faults and the tear-down went through (an invariant is a separate test)."""
    where = chaos_report["_where"]
    assert chaos_report["error"] is None, (
        f"the chaos run failed: {chaos_report['error']} ({where}):\n{tail(chaos_report['_output'])}"
    )
    assert sorted(chaos_report["scenarios"]) == ["docker", "process"], where
    assert chaos_report["wall_seconds"] < DURATION_LIMIT


@pytest.mark.parametrize("executor", ["docker", "process"])
def test_the_faults_happened(chaos_report, executor):
    """The run is worth something only if it hurt: kills, a SIGTERM and the restarts."""
    scenario = chaos_report["scenarios"].get(executor)
    assert scenario is not None, f"no {executor} scenario ({chaos_report['_where']})"
    facts = scenario["facts"]
    where = f"{executor}, {chaos_report['_where']}"
    assert facts["jobs"] == JOBS, where
    assert facts["sigkills"] >= 3, f"only {facts['sigkills']} SIGKILL(s) sent ({where})"
    assert facts["sigkilled_exits"] >= 3, (
        f"only {facts['sigkilled_exits']} worker(s) ended by SIGKILL ({where})"
    )
    assert facts["sigterms"] >= 1, f"no SIGTERM sent ({where})"
    assert facts["sigterm_clean_exits"] >= 1, f"no worker ended cleanly on SIGTERM ({where})"
    kinds = sorted(r["kind"] for r in facts["restarts"])
    expected = ["dockerd-restart", "pg-restart"] if executor == "docker" else ["pg-restart"]
    assert kinds == expected, f"restarts done: {facts['restarts']} ({where})"
    assert facts["worker_processes"] >= WORKERS + facts["sigkills"], where


INVARIANTS = [
    "jobs not terminal after the drain",
    "jobs lost",
    "(job, attempt) pairs with more than one {unit}",
    "jobs run again while an earlier run was alive or after it succeeded",
    "completed jobs without their output or exit code",
    "completed jobs with no {unit} seen by the witness",
    "{units} left behind for terminal jobs (retention remove)",
    "workers that died on their own",
    "workers that did not stop cleanly on SIGTERM",
]


def invariant_name(template: str, executor: str) -> str:
    unit = "container" if executor == "docker" else "process"
    units = "containers" if executor == "docker" else "processes"
    return template.format(unit=unit, units=units)


@pytest.mark.parametrize("executor", ["docker", "process"])
@pytest.mark.parametrize("template", INVARIANTS)
def test_invariant(chaos_report, executor, template):
    """One test per invariant and executor: a failure names the rule and the jobs."""
    scenario = chaos_report["scenarios"].get(executor)
    assert scenario is not None, f"no {executor} scenario ({chaos_report['_where']})"
    name = invariant_name(template, executor)
    rows = {row["name"]: row for row in scenario["rows"]}
    assert name in rows, f"the report has no row {name!r}: {sorted(rows)}"
    row = rows[name]
    assert row["invariant"], name
    details = "\n  ".join(row["details"]) or "(no examples)"
    assert row["value"] == row["expected"] == 0, (
        f"{executor}: {name}: {row['value']} ({chaos_report['_where']})\n  {details}"
    )


def test_every_invariant_of_the_report_is_checked(chaos_report):
    """A row added to the report later must be added here too."""
    for executor, scenario in chaos_report["scenarios"].items():
        names = {row["name"] for row in scenario["rows"] if row["invariant"]}
        assert names == {invariant_name(t, executor) for t in INVARIANTS}, executor
