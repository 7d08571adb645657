"""get_executor picks the backend of a host and shares one executor per host and config."""

from __future__ import annotations

import threading

import pytest

from container_manager.exceptions import ConfigurationError
from container_manager.executors import (
    close_executors,
    executor_class,
    get_executor,
    register_executor,
)
from container_manager.executors.local import LocalProcessExecutor
from container_manager.models import ExecutorHost


@pytest.fixture(autouse=True)
def _fresh_cache():
    close_executors()
    yield
    close_executors()
    register_executor("process", LocalProcessExecutor)


def process_host(**fields):
    return ExecutorHost(name="local", executor_type="process", **fields)


def test_backend_follows_the_executor_type():
    assert isinstance(get_executor(process_host()), LocalProcessExecutor)
    assert executor_class("docker").__name__ == "DockerExecutor"


def test_one_executor_per_host_is_shared():
    host = process_host()
    assert get_executor(host) is get_executor(host)


def test_saved_host_is_known_by_its_id_across_instances():
    first, second = process_host(), process_host()
    first.pk = second.pk = 7
    assert get_executor(first) is get_executor(second)


def test_changed_configuration_builds_a_new_executor():
    host = process_host()
    before = get_executor(host)
    host.executor_config = {"output_dir": "/tmp"}
    after = get_executor(host)
    assert after is not before
    assert get_executor(host) is after


def test_threads_asking_together_get_the_same_executor():
    host = process_host()
    barrier = threading.Barrier(8)
    got = []

    def ask():
        barrier.wait()
        got.append(get_executor(host))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 8
    assert len({id(executor) for executor in got}) == 1


def test_unknown_executor_type_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="kubernetes"):
        get_executor(ExecutorHost(name="k", executor_type="kubernetes"))


def test_registered_backend_is_used():
    class Custom(LocalProcessExecutor):
        pass

    register_executor("process", Custom)
    assert type(get_executor(process_host())) is Custom


def test_registering_a_non_executor_is_refused():
    with pytest.raises(TypeError):
        register_executor("process", dict)
