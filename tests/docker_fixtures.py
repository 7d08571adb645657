"""Executor fixtures: a real Docker engine, its hosts, and local-process executors.

Loaded by ``tests/conftest.py`` (``pytest_plugins``). What it gives:

- Isolation of this test run: every container the run creates carries the
  label ``container_manager.test_run=<RUN_ID>`` and a name prefix of its own
  (both through the ``CONTAINER_LABELS`` and ``CONTAINER_NAME_PREFIX``
  defaults), so two test runs sharing one engine never see each other's
  containers; at the end of the session every container carrying the run's
  label is removed.
- ``docker_engine``: an SDK client on the local engine. Tests marked
  ``docker`` request it automatically; without an engine they skip, and fail
  under ``CI``.
- ``docker_host`` / ``docker_executor``: an (unsaved) ExecutorHost on the
  local socket, and its executor; ``tls_docker_host`` the same engine over
  ``tcp://127.0.0.1:2376`` with TLS; ``registry`` the local registry;
  ``auth_registry`` the local registry that asks for credentials;
  ``readonly_registry`` the local registry in read-only maintenance mode.
- ``local_host`` / ``local_executor``: the local-process backend.
- ``make_spec(command, ...)``: a LaunchSpec with a job id unique in the run.
"""

from __future__ import annotations

import base64
import itertools
import os
import secrets
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from container_manager import conf
from container_manager.executors.base import LaunchSpec
from tests.conftest import missing_part

RUN_ID = f"{os.getpid():x}{secrets.token_hex(3)}"
RUN_LABEL = "container_manager.test_run"
NAME_PREFIX = f"cmt{RUN_ID}"
TEST_IMAGE = "container-manager-test/busybox:latest"
DOCKER_URL = "unix:///var/run/docker.sock"
TLS_URL = "tcp://127.0.0.1:2376"
TLS_DIR = Path("/var/lib/container-manager-test/tls")
REGISTRY = "127.0.0.1:5000"
REGISTRY_IMAGE = f"{REGISTRY}/{TEST_IMAGE}"
#: The registry that asks for credentials (htpasswd), started by scripts/ensure-registry.sh.
AUTH_REGISTRY = "127.0.0.1:5001"
AUTH_REGISTRY_USER = "cm-test"
AUTH_REGISTRY_PASSWORD = "cm-test-secret"
#: The registry in read-only maintenance mode (it refuses every upload), started
#: by scripts/ensure-registry.sh.
READONLY_REGISTRY = "127.0.0.1:5002"

_job_ids = itertools.count(1_000_001)


def _engine_client(timeout: int = 5):
    import docker

    return docker.DockerClient(base_url=DOCKER_URL, timeout=timeout)


def remove_run_containers() -> int:
    """Remove every container of this test run; return how many there were."""
    if not os.path.exists(DOCKER_URL.removeprefix("unix://")):
        return 0
    try:
        client = _engine_client()
    except Exception:
        return 0
    try:
        rows = client.api.containers(all=True, filters={"label": f"{RUN_LABEL}={RUN_ID}"})
        for row in rows:
            client.api.remove_container(row["Id"], force=True, v=True)
        return len(rows)
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def _isolate_test_run() -> Iterator[None]:
    saved = {key: conf.DEFAULTS[key] for key in ("CONTAINER_LABELS", "CONTAINER_NAME_PREFIX")}
    conf.DEFAULTS["CONTAINER_LABELS"] = {RUN_LABEL: RUN_ID}
    conf.DEFAULTS["CONTAINER_NAME_PREFIX"] = NAME_PREFIX
    yield
    conf.DEFAULTS.update(saved)
    remove_run_containers()


@pytest.fixture(scope="session")
def docker_engine():
    """An SDK client on the local engine, with the test image present."""
    if not os.path.exists(DOCKER_URL.removeprefix("unix://")):
        missing_part(f"Docker engine (no socket {DOCKER_URL}; run scripts/ensure-docker.sh)")
    try:
        client = _engine_client()
        client.ping()
    except Exception as exc:
        missing_part(f"Docker engine ({exc}; run scripts/ensure-docker.sh)")
    try:
        client.images.get(TEST_IMAGE)
    except Exception:
        client.close()
        missing_part(f"Docker test image {TEST_IMAGE} (run scripts/ensure-docker.sh)")
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _require_docker(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_engine")


@pytest.fixture
def test_image() -> str:
    """The image every Docker test runs: busybox imported with ``docker import``."""
    return TEST_IMAGE


def _docker_host(name: str, url: str, **config):
    from container_manager.models import ExecutorHost

    return ExecutorHost(
        name=name,
        executor_type="docker",
        connection_string=url,
        executor_config={"default_network": "none", **config},
        auto_pull_images=False,
        max_concurrent_jobs=50,
    )


@pytest.fixture
def docker_host(docker_engine):
    """An unsaved ExecutorHost on the local engine (pulling off, network ``none``)."""
    return _docker_host(f"docker-local-{RUN_ID}", DOCKER_URL)


def _closing(executor) -> Iterator:
    yield executor
    try:
        for ref in executor.list_managed():
            executor.remove(ref)
    finally:
        executor.close()


@pytest.fixture
def docker_executor(docker_host):
    """The DockerExecutor of ``docker_host``; its containers are removed afterwards."""
    from container_manager.executors.docker import DockerExecutor

    yield from _closing(DockerExecutor(docker_host))


@pytest.fixture
def tls_docker_host(docker_engine):
    """An ExecutorHost on the same engine over TCP with TLS (the "remote" engine)."""
    files = {"ca_cert": "ca.pem", "client_cert": "cert.pem", "client_key": "key.pem"}
    if not all((TLS_DIR / name).is_file() for name in files.values()):
        missing_part(f"TLS certificates in {TLS_DIR} (run scripts/ensure-docker.sh)")
    try:
        socket.create_connection(("127.0.0.1", 2376), timeout=2).close()
    except OSError:
        missing_part(f"Docker TLS endpoint {TLS_URL} (run scripts/ensure-docker.sh)")
    tls = {key: str(TLS_DIR / name) for key, name in files.items()} | {"verify": True}
    return _docker_host(f"docker-tls-{RUN_ID}", TLS_URL, tls=tls)


@pytest.fixture
def registry(docker_engine) -> str:
    """The address of the local registry that holds ``REGISTRY_IMAGE``."""
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2):
            pass
    except OSError:
        missing_part(f"Docker registry on {REGISTRY} (run scripts/ensure-registry.sh)")
    return REGISTRY


def _http_status(request: urllib.request.Request | str) -> int:
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def auth_registry(docker_engine) -> dict[str, str]:
    """The registry with htpasswd authentication: its ``address``, ``username``, ``password``."""
    url = f"http://{AUTH_REGISTRY}/v2/"
    token = base64.b64encode(f"{AUTH_REGISTRY_USER}:{AUTH_REGISTRY_PASSWORD}".encode()).decode()
    what = f"Docker registry with authentication on {AUTH_REGISTRY}"
    try:
        anonymous = _http_status(url)
        known = _http_status(
            urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
        )
    except OSError as exc:
        missing_part(f"{what} ({exc}; run scripts/ensure-registry.sh)")
    if (anonymous, known) != (401, 200):
        missing_part(f"{what} (it answers {anonymous} without and {known} with the test user)")
    return {
        "address": AUTH_REGISTRY,
        "username": AUTH_REGISTRY_USER,
        "password": AUTH_REGISTRY_PASSWORD,
    }


@pytest.fixture
def readonly_registry(docker_engine) -> str:
    """The address of the registry in read-only maintenance mode (uploads refused with 405)."""
    url = f"http://{READONLY_REGISTRY}/v2/"
    what = f"Read-only Docker registry on {READONLY_REGISTRY}"
    upload = urllib.request.Request(
        f"{url}container-manager-test/readonly-probe/blobs/uploads/", data=b"", method="POST"
    )
    try:
        answers = _http_status(url)
        uploads = _http_status(upload) if answers == 200 else None
    except OSError as exc:
        missing_part(f"{what} ({exc}; run scripts/ensure-registry.sh)")
    if (answers, uploads) != (200, 405):
        missing_part(f"{what} (it answers {answers}, and {uploads} to an upload, not 200 and 405)")
    return READONLY_REGISTRY


@pytest.fixture
def local_host():
    """An unsaved ExecutorHost of the local-process backend."""
    from container_manager.models import ExecutorHost

    return ExecutorHost(name=f"local-{RUN_ID}", executor_type="process", max_concurrent_jobs=50)


@pytest.fixture
def local_executor(local_host, tmp_path):
    """A LocalProcessExecutor writing under the test's tmp_path."""
    from container_manager.executors.local import LocalProcessExecutor

    local_host.executor_config = {"output_dir": str(tmp_path)}
    yield from _closing(LocalProcessExecutor(local_host))


@pytest.fixture
def make_spec(test_image):
    """Build a LaunchSpec with a job id no other test of the run uses."""

    def make(command, **fields) -> LaunchSpec:
        if isinstance(command, str):
            command = ("/bin/sh", "-c", command)
        fields.setdefault("job_id", next(_job_ids))
        fields.setdefault("attempt", 1)
        fields.setdefault("image", test_image)
        return LaunchSpec(command=tuple(command), **fields)

    return make
