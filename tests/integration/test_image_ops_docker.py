"""The Docker executor's image tasks (pull, build, push) on the real engine and registries.

The witnesses are the engine's own answers (its images, containers and
events) and the registries' (their manifests), next to what the methods
return and report. Builds start from the local test image, never from the
internet; every image and tag a test makes carries this run's id and is
removed at its end.
"""

from __future__ import annotations

import base64
import contextlib
import io
import itertools
import json
import re
import socket
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import docker.errors
import pytest
import yaml

from container_manager.exceptions import (
    ImageBuildError,
    ImageNotFoundError,
    ImagePullError,
    ImagePushError,
    ImageTaskCancelled,
    RegistryAuthenticationError,
    RegistryError,
)
from container_manager.executors.base import BuildSpec
from tests.conftest import missing_part
from tests.docker_fixtures import REGISTRY, REGISTRY_IMAGE, RUN_ID, TEST_IMAGE

pytestmark = pytest.mark.docker

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)
#: The layered image the pull test fetches: the test image's layer and three of
#: these, enough for a pull of about a second (steps are sent 4 times a second).
LAYER_BYTES = 10_000_000
#: The layers of the image the push test sends.
PUSH_LAYER_BYTES = 4_000_000
#: A push long enough to be cancelled mid-way.
BIG_LAYER_BYTES = 64_000_000
#: How soon a cancelled task must give up.
CANCEL_SECONDS = 3.0
#: The config scripts/ensure-registry.sh writes for the registry on ``REGISTRY``.
REGISTRY_CONFIG = Path("/var/lib/container-manager-test/registry/config.yml")

_names = itertools.count(1)


def unique(name: str) -> str:
    """A repository path that no other test or run uses."""
    return f"container-manager-test/{name}-{RUN_ID}-{next(_names)}"


def tar_of(members: dict[str, str], mode: str = "w") -> bytes:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode=mode) as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive.getvalue()


def engine_build(docker_engine, dockerfile: str, tag: str) -> str:
    """Build with the SDK itself (not the code under test); return the image id."""
    image_id = ""
    for entry in docker_engine.api.build(
        fileobj=io.BytesIO(tar_of({"Dockerfile": dockerfile})),
        custom_context=True,
        tag=tag,
        decode=True,
        rm=True,
        forcerm=True,
        nocache=True,  # fresh random layers: the registry has none of them
    ):
        assert "error" not in entry, entry
        image_id = (entry.get("aux") or {}).get("ID", image_id)
    assert image_id
    return image_id


def random_layers(count: int, size: int) -> str:
    return "".join(f"RUN head -c {size} /dev/urandom > /layer{i}\n" for i in range(count))


def registry_manifest_digest(address: str, reference: str, auth=None) -> str | None:
    """The digest the registry gives for ``reference``, or None when it has no such manifest."""
    name, _, tag = reference.removeprefix(f"{address}/").rpartition(":")
    request = urllib.request.Request(
        f"http://{address}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
    )
    if auth is not None:
        token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return str(answer.headers["Docker-Content-Digest"])
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def registry_manifest(address: str, reference: str) -> tuple[str, dict]:
    """The digest and the manifest (schema 2) the registry holds for ``reference``."""
    name, _, tag = reference.removeprefix(f"{address}/").rpartition(":")
    request = urllib.request.Request(
        f"http://{address}/v2/{name}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(answer.headers["Docker-Content-Digest"]), json.load(answer)


def delete_manifest(address: str, reference: str, digest: str) -> None:
    """Delete the manifest ``digest`` of ``reference``'s repository (deletes are on)."""
    name = reference.removeprefix(f"{address}/").rpartition(":")[0]
    request = urllib.request.Request(
        f"http://{address}/v2/{name}/manifests/{digest}", method="DELETE"
    )
    urllib.request.urlopen(request, timeout=10).close()


def registry_blob_file(digest: str) -> Path:
    """Where the registry on ``REGISTRY`` stores the blob ``digest`` (its filesystem driver)."""
    try:
        config = yaml.safe_load(REGISTRY_CONFIG.read_text())
        root = Path(config["storage"]["filesystem"]["rootdirectory"])
    except (OSError, KeyError, TypeError) as exc:
        missing_part(f"the storage of the registry on {REGISTRY} ({exc})")
    algorithm, _, hex_digest = digest.partition(":")
    return root / "docker/registry/v2/blobs" / algorithm / hex_digest[:2] / hex_digest / "data"


def absent_locally(docker_engine, reference: str) -> None:
    if docker_engine.api.images(name=reference):
        docker_engine.api.remove_image(reference, force=True)
    assert not docker_engine.api.images(name=reference)


def credentials(auth_registry, password: str | None = None) -> dict[str, str]:
    return {
        "username": auth_registry["username"],
        "password": password or auth_registry["password"],
        "serveraddress": auth_registry["address"],
    }


class Steps(list):
    """The ImageSteps an on_step callback received, in order."""

    def __call__(self, step) -> None:
        self.append(step)

    def of_phase(self, phase: str) -> list:
        return [step for step in self if step.phase == phase]


@pytest.fixture
def images(docker_engine):
    """Tags and image ids a test made on the engine, removed at its end.

    (The registries keep what was pushed, under names of this run only.)
    """
    made: list[str] = []
    yield made
    for tag in made:
        with contextlib.suppress(Exception):
            docker_engine.api.remove_image(tag, force=True)


@pytest.fixture(scope="module")
def layered_image(docker_engine):
    """A four-layer image in the local registry, absent from the engine."""
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2).close()
    except OSError:
        missing_part(f"Docker registry on {REGISTRY} (run scripts/ensure-registry.sh)")
    reference = f"{REGISTRY}/{unique('layers')}:1"
    engine_build(docker_engine, f"FROM {TEST_IMAGE}\n{random_layers(3, LAYER_BYTES)}", reference)
    repository, tag = reference.rsplit(":", 1)
    for entry in docker_engine.api.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in entry, entry
    absent_locally(docker_engine, reference)
    yield reference
    with contextlib.suppress(Exception):
        docker_engine.api.remove_image(reference, force=True)


# --- pull ------------------------------------------------------------------------


def test_pull_reports_layers_downloading_and_leaves_the_image(
    docker_executor, layered_image, registry, docker_engine, images
):
    absent_locally(docker_engine, layered_image)
    images.append(layered_image)
    steps = Steps()

    result = docker_executor.pull_image(layered_image, on_step=steps)

    assert docker_engine.api.inspect_image(layered_image)["Id"] == result.image_id
    assert result.digest == registry_manifest_digest(registry, layered_image)
    assert steps[0].phase == "pulling"
    downloading = steps.of_phase("downloading")
    assert steps[-1] == downloading[-1]
    assert downloading[-1].percent == 100
    assert len({(s.step, s.percent) for s in downloading}) >= 3, steps
    layer_steps = [s for s in downloading if s.step.startswith("Downloading ")]
    done = [int(re.fullmatch(r"Downloading (\d)/4 layers", s.step).group(1)) for s in layer_steps]
    assert done == sorted(done)
    percents = [s.percent for s in downloading]
    assert percents == sorted(percents)
    assert percents[0] < 100
    assert result.output.count(": Pull complete\n") == 3
    assert result.output.count(": Already exists\n") == 1
    assert f"Digest: {result.digest}" in result.output


def test_pull_of_a_reference_the_registry_lacks_is_image_not_found(docker_executor, registry):
    with pytest.raises(ImageNotFoundError) as raised:
        docker_executor.pull_image(f"{registry}/{unique('nothing')}:1")

    assert raised.value.code == "DOCKER_IMAGE_NOT_FOUND"
    assert raised.value.transient is False
    assert "manifest unknown" in raised.value.output


def test_pull_of_a_layer_the_registry_serves_corrupted_is_a_transient_pull_failure(
    docker_executor, docker_engine, registry, images
):
    # An image of its own: the test image's layer and one layer no other image
    # has, the only blob changed on the registry's disk. (Other tests pull the
    # test image, whose layer this image shares.)
    reference = f"{registry}/{unique('corrupt')}:1"
    images.append(reference)
    engine_build(docker_engine, f"FROM {TEST_IMAGE}\nRUN echo {reference} > /unique\n", reference)
    for entry in docker_engine.api.push(*reference.rsplit(":", 1), stream=True, decode=True):
        assert "error" not in entry, entry
    pushed_digest, manifest = registry_manifest(registry, reference)
    shared = {layer["digest"] for layer in registry_manifest(registry, REGISTRY_IMAGE)[1]["layers"]}
    (own,) = [layer["digest"] for layer in manifest["layers"] if layer["digest"] not in shared]
    blob = registry_blob_file(own)
    try:
        good = blob.read_bytes()
        blob.write_bytes(bytes(byte ^ 0xFF for byte in good))  # same size, other bytes
    except OSError as exc:
        missing_part(f"write access to the registry's blob {blob} ({exc})")
    try:
        absent_locally(docker_engine, reference)
        with pytest.raises(ImagePullError) as raised:
            docker_executor.pull_image(reference)
        assert not docker_engine.api.images(name=reference)
    finally:
        blob.write_bytes(good)
    # The repair a re-push makes: the same pull then succeeds (transient was right).
    try:
        pulled = docker_executor.pull_image(reference)
    finally:
        delete_manifest(registry, reference, pushed_digest)

    error = raised.value
    assert error.code == "DOCKER_PULL_FAILED"
    assert error.transient is True
    assert str(error).endswith(f"filesystem layer verification failed for digest {own}")
    assert f"{own.removeprefix('sha256:')[:12]}: Verifying Checksum\n" in error.output
    assert pulled.digest == pushed_digest
    assert docker_engine.api.inspect_image(reference)["Id"] == pulled.image_id


def test_pull_from_a_registry_that_does_not_answer_is_a_transient_registry_error(
    docker_executor,
):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 5999), timeout=2).close()

    with pytest.raises(RegistryError) as raised:
        docker_executor.pull_image(f"127.0.0.1:5999/{unique('nowhere')}:1")

    assert raised.value.code == "DOCKER_REGISTRY_ERROR"
    assert raised.value.transient is True


# --- build ---------------------------------------------------------------------------

MULTI_STAGE = f"""\
FROM {TEST_IMAGE} AS base
ARG GREETING=hello
COPY conf/greeting.txt /greeting.txt
RUN echo "built-with-$GREETING" && cat /greeting.txt
FROM base AS wanted
RUN echo stage-wanted > /stage
FROM base AS unwanted
RUN echo stage-unwanted > /stage
"""


def test_build_from_dockerfile_text_with_files_args_target_tags_and_labels(
    docker_executor, docker_engine, images
):
    first, second = f"{unique('built')}:1", f"{unique('built')}:2"
    images.extend([first, second])
    steps = Steps()
    spec = BuildSpec(
        dockerfile=MULTI_STAGE,
        files={"conf/greeting.txt": f"greeting-file-{RUN_ID}\n"},
        build_args={"GREETING": "bonjour"},
        target="wanted",
        tags=(first, second),
        labels={"org.example.run": RUN_ID, "org.example.kind": "test"},
    )

    result = docker_executor.build_image(spec, on_step=steps)

    assert docker_engine.api.inspect_image(first)["Id"] == result.image_id
    assert docker_engine.api.inspect_image(second)["Id"] == result.image_id
    labels = docker_engine.api.inspect_image(result.image_id)["Config"]["Labels"]
    assert labels["org.example.run"] == RUN_ID
    assert labels["org.example.kind"] == "test"
    history = " ".join(layer["CreatedBy"] for layer in docker_engine.api.history(result.image_id))
    assert "stage-wanted" in history
    assert "stage-unwanted" not in history
    assert "built-with-bonjour\n" in result.output
    assert f"greeting-file-{RUN_ID}\n" in result.output
    numbered = [
        (int(found.group(1)), int(found.group(2)), step.percent)
        for step in steps
        if (found := re.match(r"Step (\d+)/(\d+) : ", step.step))
    ]
    assert len(numbered) >= 2, steps
    assert len({total for _, total, _ in numbered}) == 1
    assert [n for n, _, _ in numbered] == sorted({n for n, _, _ in numbered})
    assert [p for _, _, p in numbered] == sorted({p for _, _, p in numbered})
    assert {step.phase for step in steps} == {"building"}
    assert steps[-1].percent == 100
    assert result.image_id.startswith("sha256:")


def test_build_from_an_uploaded_tar_context(docker_executor, docker_engine, images):
    tag = f"{unique('tarred')}:1"
    images.append(tag)
    context = tar_of(
        {
            "docker/Build.dockerfile": (
                f"FROM {TEST_IMAGE}\nCOPY payload.txt /\nRUN cat /payload.txt\n"
            ),
            "payload.txt": f"payload-from-the-tar-{RUN_ID}\n",
        },
        mode="w:gz",
    )

    result = docker_executor.build_image(
        BuildSpec(context=context, dockerfile="docker/Build.dockerfile", tags=(tag,))
    )

    assert docker_engine.api.inspect_image(tag)["Id"] == result.image_id
    assert f"payload-from-the-tar-{RUN_ID}\n" in result.output


def test_build_whose_run_fails_is_a_permanent_build_failure_with_the_output_tail(
    docker_executor, docker_engine, settings, images
):
    settings.CONTAINER_MANAGER = {
        **getattr(settings, "CONTAINER_MANAGER", {}),
        "LOG_MAX_BYTES": 4000,
    }
    dockerfile = (
        f"FROM {TEST_IMAGE}\n"
        f"RUN echo {unique('no-cache')} && seq 1 2000\n"
        "RUN echo the-last-words >&2; exit 7\n"
    )

    with pytest.raises(ImageBuildError) as raised:
        docker_executor.build_image(
            BuildSpec(dockerfile=dockerfile, tags=(f"{unique('failing')}:1",))
        )

    error = raised.value
    base_id = docker_engine.api.inspect_image(TEST_IMAGE)["Id"].removeprefix("sha256:")[:12]
    images.extend(set(re.findall(r"^ ---> ([0-9a-f]{12})$", error.output, re.M)) - {base_id})
    assert error.code == "DOCKER_BUILD_FAILED"
    assert error.transient is False
    assert "returned a non-zero code: 7" in str(error)
    assert error.output.endswith("returned a non-zero code: 7\n")
    assert "the-last-words" in error.output
    assert "Step 1/3 : FROM" in error.output  # the start, kept too
    assert "bytes omitted ...]" in error.output
    assert len(error.output.encode()) < 4000 + 100


def test_build_from_a_base_on_a_registry_that_needs_credentials(
    docker_executor, docker_engine, auth_registry, images
):
    base = f"{auth_registry['address']}/{unique('base')}:1"
    images.append(base)
    docker_engine.api.tag(TEST_IMAGE, *base.rsplit(":", 1))
    pushed = docker_executor.push_image(base, auth=credentials(auth_registry))
    assert pushed.digest == registry_manifest_digest(auth_registry["address"], base, auth_registry)
    docker_engine.api.remove_image(base)  # FROM must now ask the registry
    built = f"{unique('on-base')}:1"
    images.append(built)
    spec = BuildSpec(dockerfile=f"FROM {base}\nRUN echo on-the-base-{RUN_ID}\n", tags=(built,))

    with pytest.raises(RegistryAuthenticationError) as raised:
        docker_executor.build_image(spec)
    result = docker_executor.build_image(
        spec, auth={auth_registry["address"]: credentials(auth_registry)}
    )

    assert raised.value.code == "DOCKER_AUTHENTICATION_FAILED"
    assert "no basic auth credentials" in raised.value.output
    assert f"on-the-base-{RUN_ID}\n" in result.output
    assert docker_engine.api.inspect_image(built)["Id"] == result.image_id


# --- push ----------------------------------------------------------------------------


def test_push_reports_uploading_per_layer(docker_executor, docker_engine, registry, images):
    reference = f"{registry}/{unique('pushed')}:1"
    images.append(reference)
    engine_build(
        docker_engine, f"FROM {TEST_IMAGE}\n{random_layers(3, PUSH_LAYER_BYTES)}", reference
    )
    steps = Steps()

    result = docker_executor.push_image(reference, on_step=steps)

    assert result.digest == registry_manifest_digest(registry, reference)
    assert result.image_id == docker_engine.api.inspect_image(reference)["Id"]
    assert {step.phase for step in steps} == {"uploading"}
    layer_steps = [s for s in steps if s.step.startswith("Uploading ")]
    done = [int(re.fullmatch(r"Uploading (\d)/4 layers", s.step).group(1)) for s in layer_steps]
    assert layer_steps
    assert done == sorted(done)
    percents = [s.percent for s in steps if s.percent is not None]
    assert percents == sorted(percents)
    assert percents[-1] == 100
    assert result.output.count(": Pushed\n") == 3
    assert re.search(r": (Mounted from|Layer already exists)", result.output)
    assert f"digest: {result.digest}" in result.output


@pytest.mark.parametrize(
    ("password", "username"),
    [(None, None), ("not-the-password", None), ("not-the-password", "nobody")],
    ids=["no-credentials", "wrong-password", "unknown-user"],
)
def test_push_to_the_registry_with_authentication_without_good_credentials_is_refused(
    docker_executor, docker_engine, auth_registry, images, password, username
):
    reference = f"{auth_registry['address']}/{unique('refused')}:1"
    images.append(reference)
    docker_engine.api.tag(TEST_IMAGE, *reference.rsplit(":", 1))
    auth = None
    if password is not None:
        auth = credentials(auth_registry, password) | ({"username": username} if username else {})

    with pytest.raises(RegistryAuthenticationError) as raised:
        docker_executor.push_image(reference, auth=auth)

    assert raised.value.code == "DOCKER_AUTHENTICATION_FAILED"
    assert raised.value.transient is False
    assert registry_manifest_digest(auth_registry["address"], reference, auth_registry) is None


def test_push_to_a_read_only_registry_is_a_transient_push_failure(
    docker_executor, docker_engine, readonly_registry, images
):
    reference = f"{readonly_registry}/{unique('read-only')}:1"
    images.append(reference)
    docker_engine.api.tag(TEST_IMAGE, *reference.rsplit(":", 1))

    with pytest.raises(ImagePushError) as raised:
        docker_executor.push_image(reference)

    # The registry refuses the upload with a bare 405 ("Method not allowed",
    # Allow: GET, HEAD), which the engine passes on as a body it cannot parse.
    error = raised.value
    assert error.code == "DOCKER_PUSH_FAILED"
    assert error.transient is True  # the registry's maintenance ends; the push can then pass
    assert "error parsing HTTP 405 response body" in str(error)
    assert "Method not allowed" in error.output
    assert registry_manifest_digest(readonly_registry, reference) is None


def test_push_with_credentials_succeeds_and_pulls_back_with_them(
    docker_executor, docker_engine, auth_registry, images
):
    reference = f"{auth_registry['address']}/{unique('allowed')}:1"
    images.append(reference)
    docker_engine.api.tag(TEST_IMAGE, *reference.rsplit(":", 1))
    auth = credentials(auth_registry)

    pushed = docker_executor.push_image(reference, auth=auth)
    docker_engine.api.remove_image(reference)
    with pytest.raises(RegistryAuthenticationError):
        docker_executor.pull_image(reference)
    pulled = docker_executor.pull_image(reference, auth=auth)

    assert pushed.digest == registry_manifest_digest(
        auth_registry["address"], reference, auth_registry
    )
    assert pulled.digest == pushed.digest
    assert docker_engine.api.inspect_image(reference)["Id"] == pulled.image_id == pushed.image_id


# --- cancel --------------------------------------------------------------------------


def started_container_with(docker_engine, token: str, since: int) -> str:
    """Wait (15 s at most) for the engine to start a container whose command has ``token``."""
    events = docker_engine.api.events(
        since=since,
        until=int(time.time()) + 15,
        filters={"type": "container", "event": "start"},
        decode=True,
    )
    try:
        for event in events:
            try:
                command = docker_engine.api.inspect_container(event["id"])["Config"]["Cmd"]
            except docker.errors.NotFound:
                continue  # someone else's, already gone
            if token in " ".join(command or ()):
                return str(event["id"])
    finally:
        events.close()
    raise AssertionError(f"no container with {token} started")


def engine_events_of(docker_engine, container_id: str, since: int) -> list[str]:
    """The container's events from ``since`` until it is destroyed (10 s at most)."""
    seen = []
    for event in docker_engine.api.events(
        since=since,
        until=int(time.time()) + 10,
        filters={"type": "container", "container": container_id},
        decode=True,
    ):
        seen.append(event["status"])
        if event["status"] == "destroy":
            break
    return seen


def test_cancelling_a_build_mid_way_stops_it_on_the_engine(docker_executor, docker_engine, images):
    token = f"cm-cancel-{RUN_ID}-{next(_names)}"
    tag = f"{unique('cancelled')}:1"
    images.append(tag)
    cancel = threading.Event()
    building: list[str] = []
    cancelled_at: list[float] = []
    started = int(time.time()) - 1

    def on_step(step):
        if "sleep 30" not in step.step or cancel.is_set():
            return
        # The step is reported as it starts; cancel once its container runs.
        building.append(started_container_with(docker_engine, token, started))
        assert docker_engine.api.inspect_container(building[0])["State"]["Running"]
        cancelled_at.append(time.monotonic())
        cancel.set()

    with pytest.raises(ImageTaskCancelled):
        docker_executor.build_image(
            BuildSpec(dockerfile=f"FROM {TEST_IMAGE}\nRUN echo {token}; sleep 30\n", tags=(tag,)),
            on_step=on_step,
            cancel=cancel,
        )

    assert time.monotonic() - cancelled_at[0] < CANCEL_SECONDS
    (container_id,) = building
    events = engine_events_of(docker_engine, container_id, started)
    assert "die" in events, events
    assert events[-1] == "destroy", events
    assert not docker_engine.api.containers(all=True, filters={"id": container_id})
    assert not docker_engine.api.images(name=tag)


def test_cancelling_a_push_mid_way_stops_it_quickly(
    docker_executor, docker_engine, registry, images
):
    reference = f"{registry}/{unique('big')}:1"
    images.append(reference)
    engine_build(
        docker_engine, f"FROM {TEST_IMAGE}\n{random_layers(1, BIG_LAYER_BYTES)}", reference
    )
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def on_step(step):
        if step.step.startswith("Uploading ") and not cancel.is_set():
            cancelled_at.append(time.monotonic())
            cancel.set()

    with pytest.raises(ImageTaskCancelled):
        docker_executor.push_image(reference, on_step=on_step, cancel=cancel)

    assert time.monotonic() - cancelled_at[0] < CANCEL_SECONDS
    assert registry_manifest_digest(registry, reference) is None
