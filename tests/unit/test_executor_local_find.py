"""Local processes on this machine: found by their variables, dying with their worker.

Real processes throughout; ``/proc`` is the witness (a process group is gone
when no process of it is left but zombies).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from container_manager.exceptions import ExecutorError
from container_manager.executors import local
from container_manager.executors.local import LocalProcessExecutor, attempt_processes
from tests.docker_fixtures import NAME_PREFIX
from tests.unit.test_executor_local import group_is_alive, pid_of, poll, wait_one

pytestmark = pytest.mark.skipif(not local.HAS_PROC, reason="needs Linux's /proc")

ROOT = Path(__file__).resolve().parents[2]


def pid_is_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture
def second_executor(local_host, tmp_path):
    executor = LocalProcessExecutor(local_host)
    yield executor
    executor.close()


def test_every_process_of_the_attempt_carries_its_variables(local_executor, make_spec, tmp_path):
    spec = make_spec(
        'echo "$CONTAINER_MANAGER_JOB_ID $CONTAINER_MANAGER_ATTEMPT $CONTAINER_MANAGER_NAME"'
    )
    ref = local_executor.launch(spec)
    assert wait_one(local_executor, ref).exit_code == 0
    assert local_executor.logs(ref, 1000).stdout == f"{spec.job_id} 1 {spec.name}\n"


def test_the_attempt_is_found_among_the_machines_processes_by_another_executor(
    local_executor, second_executor, make_spec, tmp_path
):
    marker = tmp_path / "started"
    spec = make_spec(f"sleep 300 & env -i sleep 300 & touch {marker}; wait")
    ref = local_executor.launch(spec)
    poll(marker.exists)

    found = second_executor.find(spec.job_id, spec.attempt)

    assert found == ref
    assert not second_executor.can_follow(found)
    processes = attempt_processes(spec.name)
    pgid = pid_of(ref)
    commands = [p for p in processes if not p.supervisor_of]
    # The shell and its two sleeps, the one without the variables found by its group.
    assert len(commands) == 3
    assert {p.pgid for p in commands} == {pgid}
    (supervisor,) = [p for p in processes if p.supervisor_of]
    assert supervisor.pgid != pgid
    assert Path(supervisor.supervisor_of).parent == tmp_path


def test_another_installations_attempt_of_the_same_job_is_not_found(
    local_executor, second_executor, make_spec, tmp_path
):
    spec = make_spec("sleep 300")
    local_executor.launch(spec)
    assert second_executor.find(spec.job_id, spec.attempt + 1) is None
    assert attempt_processes(f"other-prefix-job-{spec.job_id}-a{spec.attempt}") == []


def test_another_executor_kills_the_whole_attempt_and_then_no_longer_finds_it(
    local_executor, second_executor, make_spec, tmp_path
):
    marker = tmp_path / "started"
    spec = make_spec(f"sleep 300 & echo $! > {tmp_path / 'child'}; touch {marker}; wait")
    ref = local_executor.launch(spec)
    poll(marker.exists)
    child = int((tmp_path / "child").read_text())

    second_executor.kill(second_executor.find(spec.job_id, spec.attempt))

    assert poll(lambda: second_executor.find(spec.job_id, spec.attempt) is None)
    assert not group_is_alive(pid_of(ref))
    assert not pid_is_alive(child)
    assert wait_one(local_executor, ref).exit_code == 137


def test_an_attempt_running_in_another_executor_is_not_started_twice(
    local_executor, second_executor, make_spec, tmp_path
):
    spec = make_spec("sleep 300")
    local_executor.launch(spec)
    with pytest.raises(ExecutorError, match="already runs on this machine"):
        second_executor.launch(spec)
    processes = attempt_processes(spec.name)
    assert len({p.pgid for p in processes if not p.supervisor_of}) == 1
    assert len([p for p in processes if p.supervisor_of]) == 1


def test_what_the_command_leaves_running_ends_with_it(local_executor, make_spec, tmp_path):
    spec = make_spec(f"sleep 300 & echo $! > {tmp_path / 'child'}")
    ref = local_executor.launch(spec)
    assert wait_one(local_executor, ref).exit_code == 0
    child = int((tmp_path / "child").read_text())
    assert poll(lambda: not pid_is_alive(child))
    assert local_executor.find(spec.job_id, spec.attempt) == ref
    assert attempt_processes(spec.name) == []


def test_the_supervisor_kills_an_attempt_at_its_deadline(
    local_executor, make_spec, tmp_path, monkeypatch
):
    monkeypatch.setattr(local, "DEADLINE_GRACE_SECONDS", 0)
    ref = local_executor.launch(make_spec("sleep 300", timeout_seconds=1))
    assert wait_one(local_executor, ref, timeout=10).exit_code == 137
    assert not group_is_alive(pid_of(ref))


def test_a_launch_from_a_thread_that_ends_does_not_kill_the_job(
    local_executor, make_spec, tmp_path
):
    go = tmp_path / "go"
    spec = make_spec(f"while [ ! -e {go} ]; do sleep 0.02; done; echo survived")
    refs = []
    launcher = threading.Thread(target=lambda: refs.append(local_executor.launch(spec)))
    launcher.start()
    launcher.join(30)
    assert not launcher.is_alive()
    (ref,) = refs
    # The kernel's parent-death signal fires when the forking *thread* ends:
    # had this thread forked the supervisor, the job would now be killed.
    assert poll(lambda: not Path(f"/proc/self/task/{launcher.native_id}").exists())
    assert group_is_alive(pid_of(ref))
    go.touch()
    assert wait_one(local_executor, ref).exit_code == 0
    assert local_executor.logs(ref, 1000).stdout == "survived\n"


WORKER_SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    import django
    django.setup()
    from container_manager.executors.base import LaunchSpec
    from container_manager.executors.local import LocalProcessExecutor
    from container_manager.models import ExecutorHost

    host = ExecutorHost(name="doomed", executor_type="process")
    host.executor_config = {"output_dir": sys.argv[1]}
    executor = LocalProcessExecutor(host)
    command = ("/bin/sh", "-c", sys.argv[3])
    ref = []
    # Launched from a short-lived thread, as the worker's pool may do.
    thread = threading.Thread(
        target=lambda: ref.append(executor.launch(LaunchSpec(int(sys.argv[2]), 1, "", command)))
    )
    thread.start()
    thread.join()
    print(ref[0].container_id, LaunchSpec(int(sys.argv[2]), 1, "", command).name, flush=True)
    threading.Event().wait()
    """
)


def test_the_attempt_dies_with_a_sigkilled_worker_process(make_spec, tmp_path):
    spec = make_spec("unused")
    marker = tmp_path / "started"
    command = f"sleep 300 & echo $! > {tmp_path / 'child'}; touch {marker}; wait"
    doomed = start_doomed(tmp_path, spec.job_id, command)
    try:
        assert doomed.stdout is not None
        container_id, name = doomed.stdout.readline().split()
        assert container_id.startswith("pid-"), container_id
        poll(marker.exists)
        pgid = int(container_id.split("-")[1])
        child = int((tmp_path / "child").read_text())
        assert group_is_alive(pgid)

        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)

        assert poll(lambda: not group_is_alive(pgid), timeout=5)
        assert poll(lambda: not pid_is_alive(child), timeout=5)
        assert poll(lambda: attempt_processes(name) == [], timeout=5)
        # Killed with its worker, it did not end by itself: no exit file.
        reader = LocalProcessExecutor(doomed_host(tmp_path))
        (directory,) = reader.attempt_directories(spec.job_id, 1)
        assert directory.name.startswith(f"{name}-")
        assert not (directory / local.EXIT_FILE).exists()
        assert reader.ended_attempt(spec.job_id, 1) is None
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
        if doomed.stdout is not None:
            doomed.stdout.close()


def doomed_host(tmp_path):
    from container_manager.models import ExecutorHost

    return ExecutorHost(
        name="reader", executor_type="process", executor_config={"output_dir": str(tmp_path)}
    )


def start_doomed(tmp_path, job_id, command):
    # Named as this test process names attempts, so that its executors find them.
    env = dict(
        os.environ, DJANGO_SETTINGS_MODULE="tests.settings_fast", CM_TEST_NAME_PREFIX=NAME_PREFIX
    )
    return subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, str(tmp_path), str(job_id), command],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_an_attempt_that_ended_as_its_worker_died_is_read_adopted_and_not_run_again(
    make_spec, tmp_path
):
    """The worker is stopped (SIGSTOP) before the command ends, so it cannot
    record the end; the command ends, its supervisor writes the exit file and
    exits; then the worker is SIGKILLed. Another executor reads the end."""
    spec = make_spec("unused")
    witness, go = tmp_path / "runs", tmp_path / "go"
    command = f"echo ran >> {witness}; echo out; echo err >&2; "
    command += f"while [ ! -e {go} ]; do sleep 0.02; done; exit 3"
    doomed = start_doomed(tmp_path, spec.job_id, command)
    reader = LocalProcessExecutor(doomed_host(tmp_path))
    try:
        assert doomed.stdout is not None
        container_id, name = doomed.stdout.readline().split()
        poll(witness.exists)
        doomed.send_signal(signal.SIGSTOP)
        go.touch()
        assert poll(lambda: reader.ended_attempt(spec.job_id, 1), timeout=10)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        assert poll(lambda: attempt_processes(name) == [], timeout=5)

        ended = reader.ended_attempt(spec.job_id, 1)
        assert ended is not None
        assert (ended.exit_code, ended.error) == (3, "")
        assert ended.ref.container_id == container_id
        assert reader.find(spec.job_id, 1) is None
        ref = reader.adopt_ended(ended)
        assert ref == ended.ref
        assert reader.find(spec.job_id, 1) == ref
        assert reader.can_follow(ref)
        assert wait_one(reader, ref).exit_code == 3
        logs = reader.logs(ref, 1000)
        assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
        # A launch of the ended attempt answers it, it does not run it again.
        assert reader.launch(spec) == ref
        assert witness.read_text() == "ran\n"
        directory = reader._directory_of(ref)
        assert directory.is_dir()
        reader.remove(ref)
        assert not directory.exists()
        assert reader.ended_attempt(spec.job_id, 1) is None
    finally:
        reader.close()
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(10)
        if doomed.stdout is not None:
            doomed.stdout.close()


def test_an_attempt_stopped_by_its_executor_leaves_no_exit_file(local_host, make_spec, tmp_path):
    local_host.executor_config = {"output_dir": str(tmp_path)}
    executor = LocalProcessExecutor(local_host)
    marker = tmp_path / "started"
    spec = make_spec(f"touch {marker}; sleep 300")
    ref = executor.launch(spec)
    poll(marker.exists)
    executor.close()
    assert poll(lambda: not group_is_alive(pid_of(ref)))
    assert wait_one(executor, ref).exit_code == 137
    assert not (executor._directory_of(ref) / local.EXIT_FILE).exists()
    assert executor.ended_attempt(spec.job_id, 1) is None


def test_an_attempt_killed_at_its_deadline_says_so_in_its_exit_file(
    local_executor, second_executor, make_spec, monkeypatch
):
    monkeypatch.setattr(local, "DEADLINE_GRACE_SECONDS", 0)
    spec = make_spec("sleep 300", timeout_seconds=1)
    ref = local_executor.launch(spec)
    assert wait_one(local_executor, ref, timeout=10).exit_code == 137
    ended = second_executor.ended_attempt(spec.job_id, 1)
    assert ended is not None
    assert ended.exit_code == 137
    assert "deadline" in ended.error


def test_launches_of_one_attempt_at_once_start_one_process(local_executor, make_spec):
    spec = make_spec("sleep 300")
    refs = []
    threads = [
        threading.Thread(target=lambda: refs.append(local_executor.launch(spec))) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(set(refs)) == 1
    assert len(refs) == 4
    assert len([p for p in attempt_processes(spec.name) if p.supervisor_of]) == 1
