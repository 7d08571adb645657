"""The Docker image tasks' stream handling, without an engine.

The streams and error answers below were recorded from Docker 20.10 (classic
builder) and docker-registry 2.8 (plain, with htpasswd authentication, and
read-only); tests/integration/test_image_ops_docker.py runs the same paths
for real.
"""

from __future__ import annotations

import gzip
import io
import logging
import tarfile
import threading
import time

import pytest

from container_manager.classification import classify, registry_error_code
from container_manager.exceptions import (
    ExecutorError,
    ExecutorUnavailableError,
    ImageBuildError,
    ImageNotFoundError,
    ImagePullError,
    ImagePushError,
    ImageTaskCancelled,
    RegistryAuthenticationError,
    RegistryError,
)
from container_manager.executors import docker_images
from container_manager.executors.base import BuildSpec, ImageStep
from container_manager.executors.docker import translate_error
from container_manager.executors.docker_images import (
    BuildSteps,
    ImageEngine,
    LayerProgress,
    OutputLog,
    StepReporter,
    build_context,
    check_reference,
    image_error,
    split_reference,
)
from container_manager.logcap import TRUNCATION_MARKER

# --- recorded streams -----------------------------------------------------------


def _layer(status, layer, current=None, total=None):
    detail = {} if current is None else {"current": current, "total": total}
    return {"status": status, "progressDetail": detail, "id": layer}


#: ``docker pull 127.0.0.1:5000/cmexplore/layers:1``: one layer present, three fetched.
PULL_STREAM = [
    {"status": "Pulling from cmexplore/layers", "id": "1"},
    _layer("Already exists", "eaae5b40c384"),
    _layer("Pulling fs layer", "63dc302bca9c"),
    _layer("Pulling fs layer", "b6a2c5e4631a"),
    _layer("Pulling fs layer", "9a3de7e61cbf"),
    _layer("Downloading", "63dc302bca9c", 36445, 3001122),
    _layer("Downloading", "b6a2c5e4631a", 36445, 2000813),
    _layer("Verifying Checksum", "b6a2c5e4631a"),
    _layer("Download complete", "b6a2c5e4631a"),
    _layer("Downloading", "9a3de7e61cbf", 36445, 1000491),
    _layer("Verifying Checksum", "63dc302bca9c"),
    _layer("Download complete", "63dc302bca9c"),
    _layer("Extracting", "63dc302bca9c", 32768, 3001122),
    _layer("Download complete", "9a3de7e61cbf"),
    _layer("Extracting", "63dc302bca9c", 163840, 3001122),
    _layer("Extracting", "63dc302bca9c", 3001122, 3001122),
    _layer("Pull complete", "63dc302bca9c"),
    _layer("Extracting", "b6a2c5e4631a", 32768, 2000813),
    _layer("Extracting", "b6a2c5e4631a", 2000813, 2000813),
    _layer("Pull complete", "b6a2c5e4631a"),
    _layer("Extracting", "9a3de7e61cbf", 32768, 1000491),
    _layer("Extracting", "9a3de7e61cbf", 1000491, 1000491),
    _layer("Pull complete", "9a3de7e61cbf"),
    {"status": "Digest: sha256:b5f7ca6655f9a29b5f113118f598d6b5d6739990691e01ff48144bd9c4e93112"},
    {"status": "Status: Downloaded newer image for 127.0.0.1:5000/cmexplore/layers:1"},
]
PULL_DIGEST = "sha256:b5f7ca6655f9a29b5f113118f598d6b5d6739990691e01ff48144bd9c4e93112"

#: ``docker push 127.0.0.1:5000/cmexplore/layers:1``: three layers sent, one mounted.
PUSH_STREAM = [
    {"status": "The push refers to repository [127.0.0.1:5000/cmexplore/layers]"},
    _layer("Preparing", "ca064d2d3ced"),
    _layer("Preparing", "1824c2a4803f"),
    _layer("Preparing", "a678742a5991"),
    _layer("Preparing", "b27aeb6b4eee"),
    _layer("Pushing", "1824c2a4803f", 33280, 2000000),
    _layer("Pushing", "a678742a5991", 33280, 3000000),
    _layer("Pushing", "ca064d2d3ced", 33280, 1000000),
    _layer("Mounted from container-manager-test/busybox", "b27aeb6b4eee"),
    _layer("Pushing", "1824c2a4803f", 1081856, 2000000),
    _layer("Pushing", "ca064d2d3ced", 1000512, 1000000),
    _layer("Pushing", "a678742a5991", 2032128, 3000000),
    _layer("Pushing", "1824c2a4803f", 2001920, 2000000),
    _layer("Pushed", "ca064d2d3ced"),
    _layer("Pushed", "1824c2a4803f"),
    _layer("Pushing", "a678742a5991", 3001856, 3000000),
    _layer("Pushed", "a678742a5991"),
    {"status": f"1: digest: {PULL_DIGEST} size: 1161"},
    {"progressDetail": {}, "aux": {"Tag": "1", "Digest": PULL_DIGEST, "Size": 1161}},
]

#: A two-stage build with ``target``: the step lines come without their newline.
BUILD_STREAM = [
    {"stream": "Step 1/4 : FROM container-manager-test/busybox:latest AS base"},
    {"stream": "\n"},
    {"stream": " ---> e047db8ab191\n"},
    {"stream": "Step 2/4 : RUN echo hello"},
    {"stream": "\n"},
    {"stream": " ---> Running in 270b2e46dae0\n"},
    {"stream": "hello\n"},
    {"stream": "Removing intermediate container 270b2e46dae0\n"},
    {"stream": " ---> 5053ad7a7d04\n"},
    {"aux": {"ID": "sha256:5053ad7a7d042343942604aa09258e9b76e8951ad0740604df4064013f316dd2"}},
    {"stream": "Step 3/4 : FROM base AS final"},
    {"stream": "\n"},
    {"stream": " ---> 5053ad7a7d04\n"},
    {"stream": "Step 4/4 : LABEL l1=v1"},
    {"stream": "\n"},
    {"stream": " ---> Running in e7bd46f273db\n"},
    {"stream": "Removing intermediate container e7bd46f273db\n"},
    {"stream": " ---> 82d91aeb9e2d\n"},
    {"aux": {"ID": "sha256:82d91aeb9e2db038b701fa0ace439dba154e9f896b2efb59b8563c247c34281e"}},
    {"stream": "Successfully built 82d91aeb9e2d\n"},
    {"stream": "Successfully tagged cmexplore/a:1\n"},
]
BUILT_ID = "sha256:82d91aeb9e2db038b701fa0ace439dba154e9f896b2efb59b8563c247c34281e"

#: ``RUN echo failing >&2; exit 7``: stderr comes coloured, the exit code in errorDetail.
FAILED_RUN = "The command '/bin/sh -c echo failing >&2; exit 7' returned a non-zero code: 7"
FAILED_BUILD_STREAM = [
    {"stream": "Step 1/2 : FROM container-manager-test/busybox:latest"},
    {"stream": "\n"},
    {"stream": " ---> e047db8ab191\n"},
    {"stream": "Step 2/2 : RUN echo failing >&2; exit 7"},
    {"stream": "\n"},
    {"stream": " ---> Running in a6219e621067\n"},
    {"stream": "\x1b[91mfailing\n\x1b[0m"},
    {"stream": "Removing intermediate container a6219e621067\n"},
    {
        "errorDetail": {"code": 7, "message": FAILED_RUN},
        "error": FAILED_RUN,
    },
]


# --- references ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "busybox",
        "127.0.0.1:5000/container-manager-test/busybox:latest",
        "registry.example.com/team/app_x.y:v1.2-rc",
        f"localhost/app@{PULL_DIGEST}",
    ],
)
def test_well_formed_references_pass(reference):
    check_reference(reference)


@pytest.mark.parametrize(
    "reference", ["", "UPPER/case", "app:", "app:bad tag", "/app", "app//x", "app:-x"]
)
def test_malformed_references_are_refused_as_permanent_format_errors(reference):
    with pytest.raises(ExecutorError) as raised:
        check_reference(reference)

    assert raised.value.code == "VALIDATION_INVALID_FORMAT"
    assert raised.value.transient is False


def test_a_push_or_build_tag_may_not_carry_a_digest():
    with pytest.raises(ExecutorError):
        check_reference(f"app@{PULL_DIGEST}", allows_digest=False)
    with pytest.raises(ExecutorError):
        check_reference("Registry.Example/app:1", is_tag=True)
    check_reference("127.0.0.1:5000/app:1", is_tag=True)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("app", ("app", "latest")),
        ("127.0.0.1:5000/team/app:2", ("127.0.0.1:5000/team/app", "2")),
        ("127.0.0.1:5000/team/app", ("127.0.0.1:5000/team/app", "latest")),
        (f"app@{PULL_DIGEST}", ("app", PULL_DIGEST)),
    ],
)
def test_split_reference(reference, expected):
    assert split_reference(reference) == expected


# --- progress ---------------------------------------------------------------------------


def feed_all(progress: LayerProgress, entries) -> tuple[list[str], list[tuple]]:
    lines, states = [], []
    for entry in entries:
        line = progress.feed(entry)
        if line is not None:
            lines.append(line)
        states.append((progress.is_moving, progress.done, progress.total, progress.percent))
    return lines, states


def test_pull_progress_counts_layers_and_bytes_and_never_goes_down():
    _, states = feed_all(LayerProgress("pull"), PULL_STREAM)

    moving = [state for state in states if state[0]]
    percents = [percent for _, _, _, percent in moving]
    assert percents == sorted(percents)
    assert len(set(percents)) >= 5
    assert moving[0][1:3] == (1, 4)  # downloading starts with every layer announced
    assert states[-1] == (True, 4, 4, 100)
    assert not any(state[0] for state in states[:5])  # announcements only: still resolving


def test_pull_output_has_one_line_per_layer_state_change():
    lines, _ = feed_all(LayerProgress("pull"), PULL_STREAM)

    assert lines[:3] == [
        "1: Pulling from cmexplore/layers",
        "eaae5b40c384: Already exists",
        "63dc302bca9c: Pulling fs layer",
    ]
    assert lines.count("63dc302bca9c: Downloading") == 1
    assert lines.count("63dc302bca9c: Extracting") == 1
    assert sum(line.endswith(": Pull complete") for line in lines) == 3
    assert lines[-1] == "Status: Downloaded newer image for 127.0.0.1:5000/cmexplore/layers:1"


def test_push_progress_counts_pushed_and_mounted_layers():
    lines, states = feed_all(LayerProgress("push"), PUSH_STREAM)

    percents = [percent for _, _, _, percent in states if percent is not None]
    assert percents == sorted(percents)
    # Mounted: one layer done, the three others 33280 bytes into 1, 2 and 3 MB.
    assert states[8][1:] == (1, 4, int(100 * (1 + 33280 / 1e6 + 33280 / 2e6 + 33280 / 3e6) / 4))
    assert states[-1][1:] == (4, 4, 100)
    assert "b27aeb6b4eee: Mounted from container-manager-test/busybox" in lines
    assert sum(line.endswith(": Pushed") for line in lines) == 3
    assert lines.count("1824c2a4803f: Pushing") == 1


def test_a_layer_sent_past_its_size_is_not_done_before_the_engine_says_so():
    progress = LayerProgress("push")
    progress.feed(_layer("Preparing", "a"))
    progress.feed(_layer("Pushing", "a", 1001984, 1000000))

    assert progress.done == 0
    assert progress.percent == 99


def test_build_steps_are_found_in_chunks_with_their_percent():
    steps = BuildSteps()
    found = [step for entry in BUILD_STREAM for step in steps.feed(entry.get("stream", ""))]

    assert found == [
        ImageStep("building", "Step 1/4 : FROM container-manager-test/busybox:latest AS base", 25),
        ImageStep("building", "Step 2/4 : RUN echo hello", 50),
        ImageStep("building", "Step 3/4 : FROM base AS final", 75),
        ImageStep("building", "Step 4/4 : LABEL l1=v1", 100),
    ]


def test_build_steps_ignore_output_that_only_mentions_a_step():
    assert BuildSteps().feed("echo Step 1/2 : nothing\n  Step 3/4 : indented\n") == []


# --- throttling -----------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_reporter_sends_phase_changes_at_once_and_holds_quick_changes():
    sent, clock = [], Clock()
    reporter = StepReporter(sent.append, interval_seconds=0.25, clock=clock)

    reporter.offer(ImageStep("pulling", "Pulling app"))
    reporter.offer(ImageStep("downloading", "Downloading 0/3 layers", 0))
    clock.now += 0.1
    reporter.offer(ImageStep("downloading", "Downloading 1/3 layers", 33))
    reporter.offer(ImageStep("downloading", "Downloading 2/3 layers", 66))

    assert [step.step for step in sent] == ["Pulling app", "Downloading 0/3 layers"]
    assert reporter.is_waiting
    assert reporter.seconds_to_due() == pytest.approx(0.15)
    reporter.flush()
    assert len(sent) == 2
    clock.now += 0.15
    reporter.flush()
    assert sent[-1] == ImageStep("downloading", "Downloading 2/3 layers", 66)
    assert not reporter.is_waiting


def test_reporter_never_repeats_a_step_and_sends_the_last_one_at_the_end():
    sent, clock = [], Clock()
    reporter = StepReporter(sent.append, interval_seconds=0.25, clock=clock)
    reporter.offer(ImageStep("building", "Step 1/2 : FROM x", 50))
    reporter.offer(ImageStep("building", "Step 1/2 : FROM x", 50))
    clock.now += 1
    reporter.offer(ImageStep("building", "Step 1/2 : FROM x", 50))
    clock.now += 0.01
    reporter.offer(ImageStep("building", "Built abc", 100))

    reporter.flush(is_final=True)

    assert [step.step for step in sent] == ["Step 1/2 : FROM x", "Built abc"]


def test_reporter_shortens_long_steps_to_the_column():
    sent = []
    StepReporter(sent.append).offer(ImageStep("building", "Step 1/1 : RUN " + "x" * 500, 100))

    assert len(sent[0].step) == docker_images.STEP_MAX_CHARS
    assert sent[0].step.endswith("...")


def test_a_failing_step_callback_is_logged_and_does_not_stop_the_task(caplog):
    def broken(step):
        raise RuntimeError("database gone")

    reporter = StepReporter(broken)
    with caplog.at_level(logging.ERROR, logger="container_manager.executors.docker_images"):
        reporter.offer(ImageStep("pulling", "Pulling app"))

    assert reporter.last == ImageStep("pulling", "Pulling app")
    assert "Image step callback failed" in caplog.text


# --- output ----------------------------------------------------------------------------


def test_output_that_fits_is_kept_whole():
    log = OutputLog(100)
    log.write("Step 1/1 : FROM x\n")
    log.write("é" * 10)

    assert log.result() == ("Step 1/1 : FROM x\n" + "é" * 10, False)


def test_output_over_the_cap_keeps_its_start_and_its_end_with_the_marker():
    log = OutputLog(1000)
    for number in range(1, 2001):
        log.write(f"line {number}\n")
    written = sum(len(f"line {number}\n") for number in range(1, 2001))

    text, is_truncated = log.result()

    assert is_truncated
    assert text.startswith("line 1\nline 2\n")
    assert text.endswith("line 1999\nline 2000\n")
    head, marker, tail = text.partition("\n[... output truncated: ")
    omitted = int(marker and tail.split(" ", 1)[0])
    assert len(head.encode()) + len(tail.partition("...]\n")[2].encode()) + omitted == written
    assert len(text.encode()) <= 1000 + len(TRUNCATION_MARKER)


def test_output_cut_between_multibyte_characters_stays_valid_text():
    log = OutputLog(11)
    log.write("€" * 20)

    text, is_truncated = log.result()

    assert is_truncated
    head, _, tail = text.partition("\n[... output truncated")
    assert set(head) == {"€"}
    assert set(tail.partition("...]\n")[2]) == {"€"}


# --- errors -------------------------------------------------------------------------------

AUTH_PULL = 'Head "http://127.0.0.1:5001/v2/x/y/manifests/latest": no basic auth credentials'
REFUSED = 'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused'
MISSING = "manifest for 127.0.0.1:5000/nothere/x:1 not found: manifest unknown: manifest unknown"
#: A pull whose layer blob was changed on the registry's disk (recorded).
CORRUPT_LAYER = (
    "filesystem layer verification failed for digest "
    "sha256:f2ad8b3778a0649ab6f73d7f512fd4dd1247a2af053ca3149792fb7963aec92e"
)
#: A push to a registry in read-only maintenance mode: it refuses the upload
#: with a plain-text 405, not a registry error code (recorded).
READ_ONLY = (
    "error parsing HTTP 405 response body: invalid character 'M' looking for beginning "
    'of value: "Method not allowed\\n"'
)


@pytest.mark.parametrize(
    ("operation", "status", "detail", "exit_code", "leaf", "code", "transient"),
    [
        # Pulls: the engine answers before streaming (recorded).
        ("pull", 404, MISSING, None, ImageNotFoundError, "DOCKER_IMAGE_NOT_FOUND", False),
        (
            "pull",
            500,
            AUTH_PULL,
            None,
            RegistryAuthenticationError,
            "DOCKER_AUTHENTICATION_FAILED",
            False,
        ),
        (
            "pull",
            500,
            "unauthorized: authentication required",
            None,
            RegistryAuthenticationError,
            "DOCKER_AUTHENTICATION_FAILED",
            False,
        ),
        ("pull", 500, REFUSED, None, RegistryError, "DOCKER_REGISTRY_ERROR", True),
        (
            "pull",
            400,
            "invalid reference format: repository name must be lowercase",
            None,
            ImageNotFoundError,  # as for a launch's pull (classify_engine_response)
            "DOCKER_IMAGE_NOT_FOUND",
            False,
        ),
        (
            "pull",
            429,
            "toomanyrequests: slow down",
            None,
            RegistryError,
            "DOCKER_REGISTRY_ERROR",
            True,
        ),
        (
            "pull",
            500,
            "received unexpected HTTP status: 503 Service Unavailable",
            None,
            RegistryError,
            "DOCKER_REGISTRY_ERROR",
            True,
        ),
        (
            "pull",
            None,
            "failed to register layer: write /x: no space left on device",
            None,
            ExecutorError,
            "SYSTEM_DISK_SPACE",
            True,
        ),
        ("pull", None, "unexpected EOF", None, ImagePullError, "DOCKER_PULL_FAILED", True),
        ("pull", None, CORRUPT_LAYER, None, ImagePullError, "DOCKER_PULL_FAILED", True),
        # Pushes: the errors come in the stream (recorded).
        (
            "push",
            None,
            "no basic auth credentials",
            None,
            RegistryAuthenticationError,
            "DOCKER_AUTHENTICATION_FAILED",
            False,
        ),
        (
            "push",
            None,
            "unauthorized: authentication required",
            None,
            RegistryAuthenticationError,
            "DOCKER_AUTHENTICATION_FAILED",
            False,
        ),
        (
            "push",
            None,
            "denied: requested access to the resource is denied",
            None,
            RegistryAuthenticationError,
            "DOCKER_AUTHENTICATION_FAILED",
            False,
        ),
        ("push", None, REFUSED, None, RegistryError, "DOCKER_REGISTRY_ERROR", True),
        ("push", None, READ_ONLY, None, ImagePushError, "DOCKER_PUSH_FAILED", True),
        (
            "push",
            None,
            "name unknown: repository name not known to registry",
            None,
            ImagePushError,
            "DOCKER_PUSH_FAILED",
            False,
        ),
        (
            "push",
            None,
            "blob upload unknown: blob upload unknown to registry",
            None,
            ImagePushError,
            "DOCKER_PUSH_FAILED",
            True,
        ),
        # Builds (recorded).
        (
            "build",
            None,
            "The command '/bin/sh -c exit 7' returned a non-zero code: 7",
            7,
            ImageBuildError,
            "DOCKER_BUILD_FAILED",
            False,
        ),
        (
            "build",
            None,
            "COPY failed: file not found in build context or excluded by .dockerignore: "
            "stat nothere: file does not exist",
            None,
            ImageBuildError,
            "DOCKER_BUILD_FAILED",
            False,
        ),
        ("build", None, MISSING, None, ImageNotFoundError, "DOCKER_IMAGE_NOT_FOUND", False),
        ("build", None, REFUSED, None, RegistryError, "DOCKER_REGISTRY_ERROR", True),
        (
            "build",
            400,
            "dockerfile parse error line 1: unknown instruction: FROMM",
            None,
            ImageBuildError,
            "DOCKER_BUILD_FAILED",
            False,
        ),
        (
            "build",
            400,
            "failed to reach build target nope in Dockerfile",
            None,
            ImageBuildError,
            "DOCKER_BUILD_FAILED",
            False,
        ),
        (
            "build",
            500,
            "Cannot locate specified Dockerfile: Dockerfile",
            None,
            ImageBuildError,
            "DOCKER_BUILD_FAILED",
            False,
        ),
    ],
)
def test_engine_and_registry_errors_map_to_leaves(
    operation, status, detail, exit_code, leaf, code, transient
):
    error = image_error(
        operation,
        f"x failed: {detail}",
        status=status,
        detail=detail,
        exit_code=exit_code,
        output="log\n",
    )

    assert type(error) is leaf
    assert (error.code, error.transient) == (code, transient)
    assert error.output == "log\n"
    assert classify(error).code == code  # the queue reads the same verdict


@pytest.mark.parametrize(
    ("detail", "code"),
    [
        (MISSING, "MANIFEST_UNKNOWN"),
        ("unauthorized: authentication required", "UNAUTHORIZED"),
        (
            "pull access denied for x, repository does not exist or may require 'docker login': "
            "denied: requested access to the resource is denied",
            "DENIED",
        ),
        ("toomanyrequests: You have reached your pull rate limit.", "TOOMANYREQUESTS"),
        ("errors:\nname unknown: repository name not known to registry\n", "NAME_UNKNOWN"),
        (AUTH_PULL, None),
        (CORRUPT_LAYER, None),
        (READ_ONLY, None),
        ("the manifest unknown to us", None),
    ],
)
def test_registry_error_codes_are_read_from_the_engine_message(detail, code):
    assert registry_error_code(detail) == code


# --- build context -------------------------------------------------------------------------


def test_build_context_from_text_and_files_is_a_tar_with_the_dockerfile():
    archive, dockerfile, encoding = build_context(
        BuildSpec(dockerfile="FROM x\n", files={"conf/a.txt": "A", "./b.txt": "B"})
    )

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}
    assert members == {"Dockerfile": "FROM x\n", "conf/a.txt": "A", "b.txt": "B"}
    assert (dockerfile, encoding) == (None, None)


def test_an_uploaded_context_is_sent_as_it_is_with_its_compression():
    plain = b"tar bytes"
    compressed = gzip.compress(b"tar bytes")

    assert build_context(BuildSpec(context=plain, dockerfile="d/Df")) == (plain, "d/Df", None)
    assert build_context(BuildSpec(context=compressed)) == (compressed, None, "gzip")


@pytest.mark.parametrize(
    "spec",
    [
        BuildSpec(),
        BuildSpec(dockerfile="FROM x\n", files={"../escape": "x"}),
        BuildSpec(dockerfile="FROM x\n", files={"/etc/passwd": "x"}),
        BuildSpec(dockerfile="FROM x\n", files={"Dockerfile": "FROM y\n"}),
    ],
)
def test_a_build_without_dockerfile_or_with_files_outside_the_context_is_refused(spec):
    with pytest.raises(ExecutorError) as raised:
        build_context(spec)

    assert raised.value.code == "VALIDATION_INVALID_PARAMS"
    assert raised.value.transient is False


# --- the stream, its thread and cancelling, with a fake engine --------------------------------


class FakeAPIError(Exception):
    def __init__(self, status_code, explanation):
        super().__init__(explanation)
        self.status_code, self.explanation = status_code, explanation


class FakeNotFound(FakeAPIError):
    pass


class FakeAPI:
    """What the SDK's APIClient answers: recorded entries, an error, or a stream that hangs."""

    def __init__(self, entries=(), error=None, hang_after=None):
        self.entries, self.error, self.hang_after = list(entries), error, hang_after
        self.cut = threading.Event()
        self.calls: list[tuple] = []
        self.images = {"127.0.0.1:5000/app:1": "sha256:" + "1" * 64}

    def _stream(self):
        for number, entry in enumerate(self.entries):
            if number == self.hang_after:
                self.cut.wait(30)
                raise ConnectionError("Connection broken: IncompleteRead(0 bytes read)")
            yield entry

    def _answer(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))
        if self.error is not None:
            raise self.error
        return self._stream()

    def pull(self, *args, **kwargs):
        return self._answer("pull", *args, **kwargs)

    def push(self, *args, **kwargs):
        return self._answer("push", *args, **kwargs)

    def build(self, *args, **kwargs):
        return self._answer("build", *args, **kwargs)

    def inspect_image(self, reference):
        if reference not in self.images:
            raise FakeNotFound(404, f"No such image: {reference}")
        return {"Id": self.images[reference]}

    def tag(self, image, repository, tag):
        self.calls.append(("tag", (image, repository, tag), {}))
        self.images[f"{repository}:{tag}"] = image


class FakeTask:
    def __init__(self, api):
        self.api, self.closed_at = api, None

    def close(self):
        self.closed_at = time.monotonic()
        self.api.cut.set()


def engine_of(api, opened=None):
    def open_task(auth):
        if opened is not None:
            opened.append(auth)
        return FakeTask(api)

    return ImageEngine(
        api=api,
        open_task=open_task,
        translate=translate_error,
        api_error=FakeAPIError,
        not_found=FakeNotFound,
    )


def test_pull_follows_the_stream_and_returns_digest_output_and_final_step():
    api = FakeAPI(PULL_STREAM)
    api.images["127.0.0.1:5000/cmexplore/layers:1"] = "sha256:" + "2" * 64
    steps = []

    result = docker_images.pull(
        engine_of(api),
        "127.0.0.1:5000/cmexplore/layers:1",
        platform="linux/amd64",
        on_step=steps.append,
    )

    assert result.image_id == "sha256:" + "2" * 64
    assert result.digest == PULL_DIGEST
    assert "9a3de7e61cbf: Pull complete\n" in result.output
    assert steps[0] == ImageStep("pulling", "Pulling 127.0.0.1:5000/cmexplore/layers:1")
    assert steps[-1] == ImageStep(
        "downloading", "Downloaded newer image for 127.0.0.1:5000/cmexplore/layers:1", 100
    )
    (_, args, kwargs) = api.calls[0]
    assert args == ("127.0.0.1:5000/cmexplore/layers:1",)
    assert kwargs["platform"] == "linux/amd64"
    assert kwargs["stream"] is kwargs["decode"] is True


def test_an_engine_answer_before_the_stream_becomes_the_mapped_error():
    api = FakeAPI(error=FakeAPIError(500, AUTH_PULL))

    with pytest.raises(RegistryAuthenticationError) as raised:
        docker_images.pull(engine_of(api), "127.0.0.1:5001/x/y")

    assert raised.value.output == AUTH_PULL + "\n"


#: ``docker pull`` of an image whose own layer was changed on the registry's disk.
CORRUPT_PULL_STREAM = [
    {"status": "Pulling from cmexplore/corrupt", "id": "1"},
    _layer("Already exists", "eaae5b40c384"),
    _layer("Pulling fs layer", "f2ad8b3778a0"),
    _layer("Verifying Checksum", "f2ad8b3778a0"),
    {"errorDetail": {"message": CORRUPT_LAYER}, "error": CORRUPT_LAYER},
]
#: ``docker push`` to the registry in read-only maintenance mode.
READ_ONLY_PUSH_STREAM = [
    {"status": "The push refers to repository [127.0.0.1:5002/cmexplore/ro]"},
    _layer("Preparing", "b27aeb6b4eee"),
    {"errorDetail": {"message": READ_ONLY}, "error": READ_ONLY},
]


def test_a_layer_failing_verification_in_the_stream_is_a_transient_pull_failure():
    with pytest.raises(ImagePullError) as raised:
        docker_images.pull(engine_of(FakeAPI(CORRUPT_PULL_STREAM)), "127.0.0.1:5000/app:1")

    assert (raised.value.code, raised.value.transient) == ("DOCKER_PULL_FAILED", True)
    assert raised.value.output.endswith(f"f2ad8b3778a0: Verifying Checksum\n{CORRUPT_LAYER}\n")


def test_an_upload_a_read_only_registry_refuses_is_a_transient_push_failure():
    with pytest.raises(ImagePushError) as raised:
        docker_images.push(engine_of(FakeAPI(READ_ONLY_PUSH_STREAM)), "127.0.0.1:5000/app:1")

    assert (raised.value.code, raised.value.transient) == ("DOCKER_PUSH_FAILED", True)
    assert raised.value.output.endswith(f"b27aeb6b4eee: Preparing\n{READ_ONLY}\n")


def test_a_daemon_that_does_not_answer_is_a_transient_network_error():
    api = FakeAPI(error=ConnectionError("Connection aborted: No such file or directory"))

    with pytest.raises(ExecutorUnavailableError) as raised:
        docker_images.pull(engine_of(api), "127.0.0.1:5000/app:1")

    assert raised.value.code == "DOCKER_NETWORK_ERROR"
    assert raised.value.transient is True


def test_a_failed_build_carries_its_output_and_its_last_step():
    api = FakeAPI(FAILED_BUILD_STREAM)
    steps = []

    with pytest.raises(ImageBuildError) as raised:
        docker_images.build(engine_of(api), BuildSpec(dockerfile="FROM x\n"), on_step=steps.append)

    assert raised.value.code == "DOCKER_BUILD_FAILED"
    assert raised.value.output.endswith(
        "\x1b[91mfailing\n\x1b[0mRemoving intermediate container a6219e621067\n"
        "The command '/bin/sh -c echo failing >&2; exit 7' returned a non-zero code: 7\n"
    )
    assert steps[-1] == ImageStep("building", "Step 2/2 : RUN echo failing >&2; exit 7", 100)


def test_build_gives_the_first_tag_to_the_build_and_tags_the_others():
    api = FakeAPI(BUILD_STREAM)
    opened = []
    spec = BuildSpec(
        dockerfile="FROM x\n",
        tags=("127.0.0.1:5000/app:2", "127.0.0.1:5000/app:latest", "other/app:v1"),
        build_args={"A": "1"},
        target="final",
        labels={"l1": "v1"},
    )
    auth = {"127.0.0.1:5001": {"username": "u", "password": "p", "serveraddress": "127.0.0.1:5001"}}

    result = docker_images.build(engine_of(api, opened), spec, auth=auth)

    assert result.image_id == BUILT_ID
    assert "hello\n" in result.output
    (_, _, kwargs) = api.calls[0]
    assert kwargs["tag"] == "127.0.0.1:5000/app:2"
    assert (kwargs["buildargs"], kwargs["target"], kwargs["labels"]) == (
        {"A": "1"},
        "final",
        {"l1": "v1"},
    )
    assert kwargs["custom_context"] is kwargs["rm"] is kwargs["forcerm"] is True
    assert [call[1] for call in api.calls[1:]] == [
        (BUILT_ID, "127.0.0.1:5000/app", "latest"),
        (BUILT_ID, "other/app", "v1"),
    ]
    assert opened == [auth]


def test_push_of_an_image_the_host_lacks_is_image_not_found_before_any_upload():
    api = FakeAPI(PUSH_STREAM)

    with pytest.raises(ImageNotFoundError) as raised:
        docker_images.push(engine_of(api), "127.0.0.1:5000/missing:1")

    assert raised.value.transient is False
    assert api.calls == []


def test_push_returns_the_registry_digest():
    api = FakeAPI(PUSH_STREAM)
    steps = []

    result = docker_images.push(engine_of(api), "127.0.0.1:5000/app:1", on_step=steps.append)

    assert result.digest == PULL_DIGEST
    assert result.image_id == api.images["127.0.0.1:5000/app:1"]
    assert api.calls[0][1] == ("127.0.0.1:5000/app",)
    assert api.calls[0][2]["tag"] == "1"
    assert steps[-1] == ImageStep("uploading", "Pushed 127.0.0.1:5000/app:1", 100)


def test_cancel_cuts_the_stream_and_raises_promptly():
    api = FakeAPI(PUSH_STREAM, hang_after=6)
    cancel = threading.Event()
    tasks = []
    engine = ImageEngine(
        api=api,
        open_task=lambda auth: tasks.append(FakeTask(api)) or tasks[-1],
        translate=translate_error,
        api_error=FakeAPIError,
        not_found=FakeNotFound,
    )

    def on_step(step):
        if step.step.startswith("Uploading "):
            cancel.set()

    started = time.monotonic()
    with pytest.raises(ImageTaskCancelled):
        docker_images.push(engine, "127.0.0.1:5000/app:1", on_step=on_step, cancel=cancel)

    assert time.monotonic() - started < 2
    assert tasks[0].closed_at is not None
    assert api.cut.is_set()


def test_a_task_whose_cancel_is_already_set_never_asks_the_engine():
    api = FakeAPI(PULL_STREAM)
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(ImageTaskCancelled):
        docker_images.pull(engine_of(api), "127.0.0.1:5000/app:1", cancel=cancel)

    assert api.calls == []


def test_a_step_held_back_is_sent_while_the_engine_is_silent():
    api = FakeAPI([*BUILD_STREAM[:5], {"stream": "slow\n"}], hang_after=5)
    engine = engine_of(api)
    cancel = threading.Event()
    seen = []

    def on_step(step):
        seen.append(step)
        if step.step.startswith("Step 2/4"):
            cancel.set()  # only reached if the held step is sent during the silence

    with pytest.raises(ImageTaskCancelled):
        docker_images.build(
            engine, BuildSpec(dockerfile="FROM x\n"), on_step=on_step, cancel=cancel
        )

    assert seen[-1].step == "Step 2/4 : RUN echo hello"


@pytest.mark.parametrize(
    ("serveraddress", "registry", "is_sent"),
    [
        ("127.0.0.1:5001", "127.0.0.1:5001", True),
        ("http://127.0.0.1:5001/", "127.0.0.1:5001", True),
        ("127.0.0.1:5001", "127.0.0.1:5000", False),
        ("https://index.docker.io/v1/", "docker.io", True),
        ("", "127.0.0.1:5001", False),
    ],
)
def test_the_hosts_registry_auth_goes_only_to_its_own_registry(serveraddress, registry, is_sent):
    from container_manager.executors.docker import DockerExecutor
    from container_manager.models import ExecutorHost

    auth = {"username": "u", "password": "p", "serveraddress": serveraddress}
    host = ExecutorHost(name="h", executor_type="docker", executor_config={"registry_auth": auth})
    executor = DockerExecutor(host)
    try:
        assert (executor._registry_auth_for(registry) == auth) is is_sent
    finally:
        executor.close()
