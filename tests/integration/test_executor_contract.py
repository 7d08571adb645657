"""The executor contract: every backend passes the same tests.

Parametrised over the Docker executor (real engine, busybox test image) and
the local-process executor. A behaviour only one backend has is tested in
that backend's own module.
"""

from __future__ import annotations

import threading
import time

import pytest

from container_manager.executors.base import ExitStatus, Progress

WAIT_SECONDS = 20


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "process"])
def executor(request):
    if request.param == "docker":
        return request.getfixturevalue("docker_executor")
    return request.getfixturevalue("local_executor")


def wait_one(executor, ref, timeout=WAIT_SECONDS) -> ExitStatus:
    statuses = executor.wait_finished([ref], timeout)
    assert [status.ref for status in statuses] == [ref], f"{ref} did not end in {timeout} s"
    return statuses[0]


def run(executor, make_spec, command, **fields) -> tuple:
    ref = executor.launch(make_spec(command, **fields))
    return ref, wait_one(executor, ref)


def poll(condition, timeout=WAIT_SECONDS, interval=0.05):
    """Return the first truthy value of ``condition()``, failing after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    ended = threading.Event()
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        ended.wait(interval)
    pytest.fail(f"condition not met within {timeout} s")


def test_exit_code_zero_is_reported(executor, make_spec):
    _, status = run(executor, make_spec, "exit 0")
    assert status.exit_code == 0
    assert status.is_oom_killed is False


def test_non_zero_exit_code_is_reported(executor, make_spec):
    _, status = run(executor, make_spec, "exit 3")
    assert status.exit_code == 3


def test_stdout_and_stderr_are_kept_apart(executor, make_spec):
    ref, _ = run(executor, make_spec, "echo to-out; echo to-err >&2; echo more-out")
    logs = executor.logs(ref, 10_000)
    assert logs.stdout == "to-out\nmore-out\n"
    assert logs.stderr == "to-err\n"
    assert not logs.is_stdout_truncated
    assert not logs.is_stderr_truncated


def test_environment_and_working_directory_are_applied(executor, make_spec):
    ref, status = run(
        executor,
        make_spec,
        'echo "$GREETING $NAME"; pwd',
        environment={"GREETING": "hello", "NAME": "world with spaces"},
        working_directory="/tmp",
    )
    assert status.exit_code == 0
    assert executor.logs(ref, 10_000).stdout == "hello world with spaces\n/tmp\n"


def test_command_runs_without_a_shell_unless_asked(executor, make_spec):
    ref, _ = run(executor, make_spec, ("echo", "$HOME", "a;b", "*"))
    assert executor.logs(ref, 10_000).stdout == "$HOME a;b *\n"


def test_output_over_the_cap_is_cut_with_a_marker(executor, make_spec):
    ref, _ = run(executor, make_spec, "head -c 10000 /dev/zero | tr '\\0' a; echo; echo e >&2")
    logs = executor.logs(ref, 1000)
    assert logs.stdout == "a" * 1000 + "\n[... output truncated: 9001 bytes omitted ...]\n"
    assert logs.is_stdout_truncated
    assert logs.stderr == "e\n"
    assert not logs.is_stderr_truncated


def test_html_and_escape_sequences_are_stored_verbatim(executor, make_spec):
    ref, _ = run(
        executor,
        make_spec,
        "printf '<script>alert(\"x\")</script> &amp; \\033[31mred\\033[0m\\r\\n\\a\\n'",
    )
    expected = '<script>alert("x")</script> &amp; \x1b[31mred\x1b[0m\r\n\x07\n'
    assert executor.logs(ref, 10_000).stdout == expected


def test_kill_after_the_timeout_ends_a_running_container(executor, make_spec):
    ref = executor.launch(make_spec("sleep 300"))
    started = time.monotonic()
    assert executor.wait_finished([ref], 0.5) == []
    assert time.monotonic() - started >= 0.5
    executor.kill(ref)
    status = wait_one(executor, ref, 10)
    assert status.exit_code == 137
    assert status.is_oom_killed is False


def test_kill_of_an_ended_container_is_harmless(executor, make_spec):
    ref, status = run(executor, make_spec, "exit 0")
    executor.kill(ref)
    assert executor.wait_finished([ref], 0) == [status]


def test_wait_finished_returns_as_soon_as_one_ended(executor, make_spec):
    long = executor.launch(make_spec("sleep 300"))
    short = executor.launch(make_spec("exit 4"))
    started = time.monotonic()
    statuses = executor.wait_finished([long, short], WAIT_SECONDS)
    assert time.monotonic() - started < WAIT_SECONDS / 2
    assert [(s.ref, s.exit_code) for s in statuses] == [(short, 4)]


def test_pause_freezes_the_container_and_resume_continues_it(executor, make_spec):
    assert executor.supports_pause
    ref = executor.launch(make_spec("i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"))

    def count() -> int:
        return len(executor.logs(ref, 1_000_000).stdout.split())

    poll(lambda: count() >= 3)
    executor.pause(ref)
    # A line written just before the freeze may still be on its way: settle first.
    frozen = poll(lambda: (c := count()) == count() and c)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        assert count() <= frozen + 1, "the count advanced while paused"
    executor.resume(ref)
    assert poll(lambda: count() >= frozen + 5)
    assert executor.wait_finished([ref], 0) == []


def test_progress_lines_are_reported_while_it_runs(executor, make_spec):
    ref = executor.launch(
        make_spec(
            "echo '::progress 10 Starting'; echo '::progress nope'; "
            "echo '::progress 250 Too far'; echo '::progress 42 Loading data' >&2; sleep 300"
        )
    )
    reports: list[Progress] = []
    follower = threading.Thread(target=executor.follow_progress, args=(ref, reports.append))
    follower.start()
    poll(lambda: len(reports) >= 2)
    assert executor.wait_finished([ref], 0) == [], "progress must arrive while it runs"
    assert sorted((p.percent, p.step) for p in reports) == [(10, "Starting"), (42, "Loading data")]
    assert all(p.ref == ref for p in reports)
    executor.kill(ref)
    follower.join(WAIT_SECONDS)
    assert not follower.is_alive(), "follow_progress must return once the container ended"


def test_repeated_launch_of_one_attempt_starts_one_container(executor, make_spec):
    spec = make_spec("sleep 300")
    first = executor.launch(spec)
    second = executor.launch(spec)
    assert first == second
    assert executor.find(spec.job_id, spec.attempt) == first
    assert [r for r in executor.list_managed() if r.job_id == spec.job_id] == [first]


def test_next_attempt_gets_its_own_container(executor, make_spec):
    first = executor.launch(make_spec("exit 1"))
    second = executor.launch(make_spec("exit 0", job_id=first.job_id, attempt=2))
    assert first.container_id != second.container_id
    assert executor.find(first.job_id, 1) == first
    assert executor.find(first.job_id, 2) == second


def test_find_returns_none_for_an_attempt_never_launched(executor, make_spec):
    spec = make_spec("exit 0")
    assert executor.find(spec.job_id, spec.attempt) is None


def test_remove_forgets_the_container(executor, make_spec):
    ref, _ = run(executor, make_spec, "echo bye")
    executor.remove(ref)
    assert executor.find(ref.job_id, ref.attempt) is None
    assert ref not in executor.list_managed()
    executor.remove(ref)  # a second removal is not an error
    assert executor.find(ref.job_id, ref.attempt) is None


def test_memory_limit_stops_a_greedy_program(executor, make_spec):
    _, status = run(
        executor,
        make_spec,
        ("dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"),
        memory_limit_mb=32,
    )
    assert status.exit_code != 0


def test_health_check_reports_a_healthy_host(executor):
    report = executor.health_check()
    assert report.is_healthy is True
    assert report.detail
