"""What only the Docker executor does, on the real engine: images, OOM, labels, limits,
remote TLS engines, daemon errors, and output far over the cap."""

from __future__ import annotations

import threading
import time

import pytest

from container_manager.exceptions import (
    ContainerNotFoundError,
    ExecutorError,
    ExecutorUnavailableError,
    ImageNotFoundError,
    InvalidLaunchSpecError,
)
from container_manager.executors.base import (
    LABEL_ATTEMPT,
    LABEL_JOB,
    LABEL_MANAGED,
    container_labels,
    container_name,
)
from container_manager.executors.docker import DockerExecutor
from tests.docker_fixtures import REGISTRY_IMAGE, RUN_ID, RUN_LABEL

pytestmark = pytest.mark.docker

WAIT_SECONDS = 20


def wait_one(executor, ref, timeout=WAIT_SECONDS):
    statuses = executor.wait_finished([ref], timeout)
    assert [s.ref for s in statuses] == [ref], f"{ref} did not end in {timeout} s"
    return statuses[0]


def containers_of_job(docker_engine, job_id):
    return docker_engine.api.containers(
        all=True, filters={"label": [f"{LABEL_JOB}={job_id}", f"{RUN_LABEL}={RUN_ID}"]}
    )


def vm_rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_memory_limit_oom_kill_is_reported(docker_executor, make_spec):
    ref = docker_executor.launch(
        make_spec(("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"), memory_limit_mb=16)
    )
    status = wait_one(docker_executor, ref)
    assert status.is_oom_killed is True
    assert status.exit_code == 137


def test_container_carries_labels_name_and_limits(docker_executor, make_spec, docker_engine):
    spec = make_spec(
        "exit 0",
        labels={"com.example.team": "reports"},
        memory_limit_mb=64,
        cpu_limit_cores=0.5,
        user="nobody",
    )
    ref = docker_executor.launch(spec)
    attrs = docker_engine.api.inspect_container(ref.container_id)
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL_MANAGED] == "1"
    assert labels[LABEL_JOB] == str(spec.job_id)
    assert labels[LABEL_ATTEMPT] == "1"
    assert labels[RUN_LABEL] == RUN_ID
    assert labels["com.example.team"] == "reports"
    assert attrs["Name"] == f"/{container_name(spec.job_id, 1)}"
    host_config = attrs["HostConfig"]
    assert host_config["Memory"] == host_config["MemorySwap"] == 64 * 1024 * 1024
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["NetworkMode"] == "none"
    assert attrs["Config"]["User"] == "nobody"
    assert wait_one(docker_executor, ref).exit_code == 0


def test_concurrent_launches_of_one_attempt_create_one_container(
    docker_executor, make_spec, docker_engine
):
    spec = make_spec("sleep 300")
    barrier = threading.Barrier(4)
    refs, errors = [], []

    def launch():
        barrier.wait()
        try:
            refs.append(docker_executor.launch(spec))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=launch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)
    assert errors == []
    assert len(set(refs)) == 1
    assert len(containers_of_job(docker_engine, spec.job_id)) == 1


def test_launch_starts_a_container_created_by_a_launcher_that_died(
    docker_executor, make_spec, docker_engine, test_image
):
    spec = make_spec("echo adopted")
    created = docker_engine.api.create_container(
        test_image,
        list(spec.command),
        name=spec.name,
        labels=container_labels(spec),
        host_config=docker_engine.api.create_host_config(network_mode="none"),
    )
    ref = docker_executor.launch(spec)
    assert ref.container_id == created["Id"]
    assert wait_one(docker_executor, ref).exit_code == 0
    assert docker_executor.logs(ref, 100).stdout == "adopted\n"


def test_a_new_executor_finds_a_container_that_ended_before_it_started(
    docker_executor, docker_host, make_spec
):
    ref = docker_executor.launch(make_spec("exit 5"))
    wait_one(docker_executor, ref)
    adopter = DockerExecutor(docker_host)
    try:
        assert adopter.find(ref.job_id, ref.attempt) == ref
        statuses = adopter.wait_finished([ref], WAIT_SECONDS)
        assert [s.exit_code for s in statuses] == [5]
    finally:
        adopter.close()


def test_missing_image_with_pulling_off_is_permanent(docker_executor, make_spec, docker_engine):
    spec = make_spec("exit 0", image="container-manager-test/no-such-image:1")
    steps = []
    with pytest.raises(ImageNotFoundError) as caught:
        docker_executor.launch(spec, on_step=steps.append)
    assert caught.value.code == "DOCKER_IMAGE_NOT_FOUND"
    assert caught.value.transient is False
    assert steps == []
    assert containers_of_job(docker_engine, spec.job_id) == []


def test_image_missing_from_the_registry_is_permanent(docker_host, make_spec, registry):
    docker_host.auto_pull_images = True
    executor = DockerExecutor(docker_host)
    steps = []
    try:
        with pytest.raises(ImageNotFoundError) as caught:
            executor.launch(
                make_spec("exit 0", image=f"{registry}/container-manager-test/nothing:1"),
                on_step=steps.append,
            )
    finally:
        executor.close()
    assert caught.value.code == "DOCKER_IMAGE_NOT_FOUND"
    assert caught.value.transient is False
    assert steps == ["pulling"]


def test_missing_image_is_pulled_from_the_registry(docker_host, make_spec, registry, docker_engine):
    if docker_engine.images.list(name=REGISTRY_IMAGE):
        docker_engine.api.remove_image(REGISTRY_IMAGE, force=True)
    docker_host.auto_pull_images = True
    executor = DockerExecutor(docker_host)
    steps = []
    try:
        ref = executor.launch(make_spec("echo pulled", image=REGISTRY_IMAGE), on_step=steps.append)
        assert wait_one(executor, ref).exit_code == 0
        assert executor.logs(ref, 100).stdout == "pulled\n"
        executor.remove(ref)
    finally:
        executor.close()
    assert steps == ["pulling"]


def test_missing_executable_is_permanent_and_leaves_no_container(
    docker_executor, make_spec, docker_engine
):
    spec = make_spec(("no-such-program", "--flag"))
    with pytest.raises(InvalidLaunchSpecError) as caught:
        docker_executor.launch(spec)
    assert caught.value.code == "COMMAND_NOT_FOUND"
    assert caught.value.transient is False
    assert containers_of_job(docker_engine, spec.job_id) == []


@pytest.mark.parametrize(
    "url", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"], ids=["socket", "port"]
)
def test_unreachable_daemon_is_transient(url, docker_host, make_spec):
    docker_host.connection_string = url
    executor = DockerExecutor(docker_host)
    try:
        with pytest.raises(ExecutorUnavailableError) as caught:
            executor.launch(make_spec("exit 0"))
        report = executor.health_check()
    finally:
        executor.close()
    assert caught.value.code == "DOCKER_NETWORK_ERROR"
    assert caught.value.transient is True
    assert report.is_healthy is False
    assert docker_host.name in report.detail


def test_remote_engine_over_tls_runs_a_container(tls_docker_host, make_spec):
    executor = DockerExecutor(tls_docker_host)
    try:
        assert executor.health_check().is_healthy
        ref = executor.launch(make_spec("echo over tls"))
        assert wait_one(executor, ref).exit_code == 0
        assert executor.logs(ref, 100).stdout == "over tls\n"
        executor.remove(ref)
        assert executor.find(ref.job_id, ref.attempt) is None
    finally:
        executor.close()


def test_two_hundred_megabytes_of_output_are_stored_capped_in_bounded_memory(
    docker_executor, make_spec
):
    ref = docker_executor.launch(
        make_spec("head -c 209715200 /dev/zero | tr '\\0' x; echo done >&2")
    )
    assert wait_one(docker_executor, ref, 60).exit_code == 0
    peak = [vm_rss_kb()]
    baseline = peak[0]
    reading = threading.Event()

    def sample():
        while not reading.wait(0.01):
            peak.append(vm_rss_kb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        logs = docker_executor.logs(ref, 1024 * 1024)
    finally:
        reading.set()
        sampler.join()
    growth_mb = (max(peak) - baseline) / 1024
    assert growth_mb < 40, f"reading the logs grew the process by {growth_mb:.0f} MB"
    assert logs.is_stdout_truncated
    assert logs.stdout == "x" * (1024 * 1024) + (
        f"\n[... output truncated: {209715200 - 1024 * 1024} bytes omitted ...]\n"
    )
    assert logs.stderr == "done\n"


def test_logs_of_a_removed_container_say_it_is_gone(docker_executor, make_spec):
    ref = docker_executor.launch(make_spec("exit 0"))
    wait_one(docker_executor, ref)
    docker_executor.remove(ref)
    with pytest.raises(ContainerNotFoundError):
        docker_executor.logs(ref, 100)


def test_pausing_an_ended_container_is_an_error(docker_executor, make_spec):
    ref = docker_executor.launch(make_spec("exit 0"))
    wait_one(docker_executor, ref)
    with pytest.raises(ExecutorError) as caught:
        docker_executor.pause(ref)
    assert caught.value.transient is not True
    assert "not running" in str(caught.value)


def test_a_paused_container_can_be_killed(docker_executor, make_spec):
    ref = docker_executor.launch(make_spec("sleep 300"))
    docker_executor.pause(ref)
    docker_executor.kill(ref)
    assert wait_one(docker_executor, ref).exit_code == 137


def test_removed_running_container_is_reported_as_ended(docker_executor, make_spec, docker_engine):
    ref = docker_executor.launch(make_spec("sleep 300"))
    assert docker_executor.wait_finished([ref], 0) == []
    docker_engine.api.remove_container(ref.container_id, force=True)
    started = time.monotonic()
    status = wait_one(docker_executor, ref)
    assert time.monotonic() - started < WAIT_SECONDS
    assert status.exit_code in (None, 137)


def test_reconciliation_finds_the_end_when_the_events_stream_is_down(docker_host, make_spec):
    executor = DockerExecutor(docker_host)
    executor._tracker.follower.close()  # as if the stream broke and never came back
    try:
        ref = executor.launch(make_spec("sleep 0.5; exit 6"))
        assert executor.wait_finished([ref], 0) == []
        started = time.monotonic()
        status = wait_one(executor, ref, 10)
        assert status.exit_code == 6
        assert time.monotonic() - started < 5
    finally:
        for leftover in executor.list_managed():
            executor.remove(leftover)
        executor.close()
