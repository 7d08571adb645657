"""What only the local-process executor does: process groups, signals, its own files."""

from __future__ import annotations

import os
import threading
import time

import pytest

from container_manager.exceptions import (
    ContainerNotFoundError,
    ExecutorError,
    InvalidLaunchSpecError,
)
from container_manager.executors.base import ContainerRef
from container_manager.executors.local import LocalProcessExecutor

WAIT_SECONDS = 10


def wait_one(executor, ref, timeout=WAIT_SECONDS):
    statuses = executor.wait_finished([ref], timeout)
    assert [s.ref for s in statuses] == [ref], f"{ref} did not end in {timeout} s"
    return statuses[0]


def poll(condition, timeout=WAIT_SECONDS):
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        pause.wait(0.02)
    pytest.fail(f"condition not met within {timeout} s")


def group_is_alive(pgid: int) -> bool:
    """True while a process of the group runs (zombies waiting for init do not count)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def pid_of(ref: ContainerRef) -> int:
    return int(ref.container_id.split("-")[1])


def test_kill_stops_every_process_the_command_started(local_executor, make_spec, tmp_path):
    marker = tmp_path / "children-started"
    ref = local_executor.launch(make_spec(f"sleep 300 & sleep 300 & touch {marker}; wait"))
    poll(marker.exists)
    pgid = pid_of(ref)
    assert group_is_alive(pgid)
    local_executor.kill(ref)
    assert wait_one(local_executor, ref).exit_code == 137
    assert poll(lambda: not group_is_alive(pgid))


def test_only_path_of_the_worker_environment_reaches_the_process(
    local_executor, make_spec, monkeypatch
):
    monkeypatch.setenv("CM_WORKER_SECRET", "do-not-leak")
    ref = local_executor.launch(make_spec('echo "[$CM_WORKER_SECRET]"; command -v sh'))
    assert wait_one(local_executor, ref).exit_code == 0
    out = local_executor.logs(ref, 1000).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1].endswith("/sh")


def test_a_job_path_overrides_the_worker_path(local_executor, make_spec):
    ref = local_executor.launch(
        make_spec(("/bin/sh", "-c", 'echo "$PATH"'), environment={"PATH": "/nowhere"})
    )
    wait_one(local_executor, ref)
    assert local_executor.logs(ref, 1000).stdout == "/nowhere\n"


def test_missing_program_is_command_not_found_and_permanent(local_executor, make_spec):
    with pytest.raises(InvalidLaunchSpecError) as caught:
        local_executor.launch(make_spec(("/no/such/program",)))
    assert caught.value.code == "COMMAND_NOT_FOUND"
    assert caught.value.transient is False
    assert "/no/such/program" in str(caught.value)


def test_a_file_that_may_not_be_run_is_permission_denied(local_executor, make_spec, tmp_path):
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    with pytest.raises(InvalidLaunchSpecError) as caught:
        local_executor.launch(make_spec((str(script),)))
    assert caught.value.code == "PERMISSION_DENIED"


def test_missing_working_directory_is_a_permanent_launch_error(local_executor, make_spec):
    with pytest.raises(InvalidLaunchSpecError) as caught:
        local_executor.launch(make_spec("pwd", working_directory="/no/such/dir"))
    assert caught.value.code == "VALIDATION_INVALID_PARAMS"
    assert "/no/such/dir" in str(caught.value)


def test_empty_command_is_rejected(local_executor, make_spec):
    with pytest.raises(InvalidLaunchSpecError):
        local_executor.launch(make_spec(()))


def test_death_by_signal_is_reported_as_128_plus_the_signal(local_executor, make_spec):
    ref = local_executor.launch(make_spec("kill -TERM $$"))
    assert wait_one(local_executor, ref).exit_code == 128 + 15


def test_image_is_ignored(local_executor, make_spec):
    ref = local_executor.launch(make_spec("echo ran", image="no/such-image:1"))
    assert wait_one(local_executor, ref).exit_code == 0


def test_processes_of_another_executor_are_found_but_not_followed(local_host, make_spec):
    first = LocalProcessExecutor(local_host)
    second = LocalProcessExecutor(local_host)
    try:
        spec = make_spec("sleep 300")
        ref = first.launch(spec)
        found = second.find(spec.job_id, spec.attempt)
        assert found == ref
        assert first.can_follow(ref)
        assert not second.can_follow(found)
        statuses = second.wait_finished([ref], 5)
        assert [(s.exit_code, s.error) for s in statuses] == [
            (None, "process unknown to this worker")
        ]
    finally:
        first.close()
        second.close()


def test_close_kills_what_still_runs(local_host, make_spec):
    executor = LocalProcessExecutor(local_host)
    ref = executor.launch(make_spec("sleep 300"))
    pgid = pid_of(ref)
    executor.close()
    assert wait_one(executor, ref).exit_code == 137
    assert poll(lambda: not group_is_alive(pgid))


def test_remove_deletes_the_output_directory(local_executor, make_spec, tmp_path):
    ref = local_executor.launch(make_spec("echo x > left-behind"))
    wait_one(local_executor, ref)
    directories = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(directories) == 1
    assert (directories[0] / "left-behind").read_text() == "x\n"
    local_executor.remove(ref)
    assert not directories[0].exists()


def test_pause_of_an_ended_process_is_an_error(local_executor, make_spec):
    ref = local_executor.launch(make_spec("exit 0"))
    wait_one(local_executor, ref)
    with pytest.raises(ExecutorError, match="not running"):
        local_executor.pause(ref)


def test_another_executor_of_the_machine_reads_the_output(local_host, local_executor, make_spec):
    ref = local_executor.launch(make_spec("echo shown elsewhere"))
    wait_one(local_executor, ref)
    web_process = LocalProcessExecutor(local_host)
    try:
        assert web_process.logs(ref, 1000).stdout == "shown elsewhere\n"
        local_executor.remove(ref)
        with pytest.raises(ContainerNotFoundError):
            web_process.logs(ref, 1000)
    finally:
        web_process.close()


def test_an_output_directory_that_cannot_be_made_is_an_executor_error(local_host, make_spec):
    local_host.executor_config = {"output_dir": "/no/such/dir"}
    executor = LocalProcessExecutor(local_host)
    with pytest.raises(ExecutorError, match="output directory"):
        executor.launch(make_spec("exit 0"))
    assert executor.list_managed() == []


def test_an_ended_attempt_left_by_another_worker_process_is_listed_and_removable(
    local_host, local_executor, make_spec, tmp_path
):
    # The first worker process recorded the end, then died before deleting the directory.
    ended = local_executor.launch(make_spec("echo done"))
    assert wait_one(local_executor, ended).exit_code == 0
    running = local_executor.launch(make_spec("sleep 300"))
    next_worker = LocalProcessExecutor(local_host)
    try:
        listed = next_worker.list_managed()
        # The ended attempt is listed with the end its supervisor wrote; the live one is not.
        assert [(r.job_id, r.attempt) for r in listed] == [(ended.job_id, 1)]
        [status] = next_worker.wait_finished(listed, 0)
        assert status.exit_code == 0
        assert next_worker.logs(listed[0], 1000).stdout == "done\n"

        next_worker.remove(listed[0])

        assert next_worker.list_managed() == []
        names = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
        assert names == [running.container_id.split("-", 2)[2]]
    finally:
        next_worker.close()


def test_a_killed_attempts_directory_is_listed_only_once_nothing_runs_it(
    local_host, local_executor, make_spec, tmp_path
):
    from container_manager.executors.base import container_name

    # What a worker killed with its job leaves: a directory without an exit file.
    killed = tmp_path / f"{container_name(990_001, 2)}-abc123"
    killed.mkdir()
    (killed / "stdout.log").write_text("half\n")
    next_worker = LocalProcessExecutor(local_host)
    try:
        [ref] = next_worker.list_managed()
        assert (ref.job_id, ref.attempt, ref.container_id) == (990_001, 2, f"pid-0-{killed.name}")
        [status] = next_worker.wait_finished([ref], 0)
        assert status.exit_code is None
        # Not remembered: only the job's row can say whether it was lost.
        assert next_worker.find(990_001, 2) is None

        next_worker.remove(ref)

        assert not killed.exists()
    finally:
        next_worker.close()
