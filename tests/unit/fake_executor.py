"""An in-memory executor for unit tests whose point is the worker or the queue, not Docker.

Hosts with ``executor_type="fake"`` get a :class:`FakeExecutor`; tests end
containers with :meth:`FakeExecutor.end` and make launches fail with
``fail_next``.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable

import pytest

from container_manager.exceptions import ImageTaskCancelled
from container_manager.executors import close_executors, get_executor, register_executor
from container_manager.executors.base import (
    ContainerRef,
    Executor,
    ExitStatus,
    HealthReport,
    ImageResult,
    ImageStep,
    LaunchSpec,
    Logs,
    Progress,
    ProgressCallback,
    StepCallback,
)
from container_manager.models import ContainerJob, ExecutorHost
from container_manager.states import JobStatus

_ids = itertools.count(1)


class FakeExecutor(Executor):
    supports_pause = True
    supports_images = True

    def __init__(self, host: ExecutorHost) -> None:
        super().__init__(host)
        self.lock = threading.Condition()
        self.containers: dict[tuple[int, int], ContainerRef] = {}
        self.ended: dict[str, ExitStatus] = {}
        self.launches: list[LaunchSpec] = []
        self.killed: list[str] = []
        self.removed: list[str] = []
        self.paused: list[str] = []
        self.resumed: list[str] = []
        self.steps: list[str] = []
        #: When set, a launch waits for it after reporting its steps (a slow engine).
        self.hold: threading.Event | None = None
        self.fail_next: list[BaseException] = []
        self.output = ("out\n", "err\n")
        self.progress: list[tuple[int, str]] = []
        self.logs_max_bytes: list[int] = []
        self.logs_fail_next: list[BaseException] = []
        self.find_fail_next: list[BaseException] = []
        #: Image tasks: what each call got, the steps it reports, and its answer.
        self.image_calls: list[tuple[str, object, dict[str, object]]] = []
        self.image_steps: list[ImageStep] = []
        self.image_result = ImageResult(image_id="sha256:fake", digest="sha256:d1", output="done\n")
        self.image_fail_next: list[BaseException] = []
        #: Set once an image task has reported its steps; it then waits for its cancel.
        self.image_started = threading.Event()
        self.image_hold = False

    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        with self.lock:
            self.launches.append(spec)
            if self.fail_next:
                raise self.fail_next.pop(0)
            existing = self.containers.get((spec.job_id, spec.attempt))
            if existing is not None:
                return existing
        for step in self.steps:
            if on_step is not None:
                on_step(step)
        if self.hold is not None:
            self.hold.wait(30)
        ref = ContainerRef(spec.job_id, spec.attempt, f"fake-{next(_ids)}")
        with self.lock:
            self.containers[(spec.job_id, spec.attempt)] = ref
        return ref

    def add_container(self, job_id: int, attempt: int) -> ContainerRef:
        ref = ContainerRef(job_id, attempt, f"fake-{next(_ids)}")
        with self.lock:
            self.containers[(job_id, attempt)] = ref
        return ref

    def end(self, ref: ContainerRef, exit_code: int = 0, oom: bool = False) -> None:
        with self.lock:
            self.ended[ref.container_id] = ExitStatus(ref, exit_code, is_oom_killed=oom)
            self.lock.notify_all()

    def find(self, job_id: int, attempt: int) -> ContainerRef | None:
        with self.lock:
            if self.find_fail_next:
                raise self.find_fail_next.pop(0)
            return self.containers.get((job_id, attempt))

    def list_managed(self) -> list[ContainerRef]:
        with self.lock:
            return list(self.containers.values())

    def wait_finished(
        self, refs: Iterable[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        ids = [ref.container_id for ref in refs]
        with self.lock:
            self.lock.wait_for(lambda: any(i in self.ended for i in ids), timeout_seconds)
            return [self.ended[i] for i in ids if i in self.ended]

    def logs(self, ref: ContainerRef, max_bytes: int) -> Logs:
        self.logs_max_bytes.append(max_bytes)
        if self.logs_fail_next:
            raise self.logs_fail_next.pop(0)
        return Logs(stdout=self.output[0][:max_bytes], stderr=self.output[1][:max_bytes])

    def kill(self, ref: ContainerRef) -> None:
        self.killed.append(ref.container_id)
        self.end(ref, 137)

    def remove(self, ref: ContainerRef) -> None:
        self.removed.append(ref.container_id)
        with self.lock:
            self.containers.pop((ref.job_id, ref.attempt), None)

    def pause(self, ref: ContainerRef) -> None:
        self.paused.append(ref.container_id)

    def resume(self, ref: ContainerRef) -> None:
        self.resumed.append(ref.container_id)

    def follow_progress(self, ref: ContainerRef, callback: ProgressCallback) -> None:
        for percent, step in self.progress:
            callback(Progress(ref, percent, step))

    def health_check(self) -> HealthReport:
        return HealthReport(True)

    def _image_task(self, what: str, target: object, **options: object) -> ImageResult:
        on_step = options.pop("on_step", None)
        cancel = options.pop("cancel", None)
        self.image_calls.append((what, target, options))
        for step in self.image_steps:
            if on_step is not None:
                on_step(step)  # type: ignore[operator]
        self.image_started.set()
        if self.image_hold:
            assert isinstance(cancel, threading.Event)
            if cancel.wait(30):
                raise ImageTaskCancelled(f"{what} cancelled")
        if self.image_fail_next:
            raise self.image_fail_next.pop(0)
        return self.image_result

    def pull_image(self, reference, **options):  # type: ignore[no-untyped-def,override]
        return self._image_task("pull", reference, **options)

    def build_image(self, spec, **options):  # type: ignore[no-untyped-def,override]
        return self._image_task("build", spec, **options)

    def push_image(self, reference, **options):  # type: ignore[no-untyped-def,override]
        return self._image_task("push", reference, **options)


@pytest.fixture
def fake_host(db):
    register_executor("fake", FakeExecutor)
    host = ExecutorHost.objects.create(name="fake", executor_type="fake", max_concurrent_jobs=10)
    yield host
    close_executors()


@pytest.fixture
def fake_executor(fake_host) -> FakeExecutor:
    executor = get_executor(fake_host)
    assert isinstance(executor, FakeExecutor)
    return executor


def claimed_job(host: ExecutorHost, **fields: object) -> ContainerJob:
    """A job claimed by worker ``w1`` on ``host``: validating, attempt 1."""
    job = ContainerJob.objects.create(command="echo hi", host=host, **fields)
    ContainerJob.objects.filter(pk=job.pk).update(status=JobStatus.QUEUED)
    ContainerJob.objects.filter(pk=job.pk).update(
        status=JobStatus.VALIDATING, worker_id="w1", attempt=1
    )
    job.refresh_from_db()
    return job


def running_job(
    host: ExecutorHost, executor: FakeExecutor, **fields: object
) -> tuple[ContainerJob, ContainerRef]:
    """A claimed job whose container runs on the fake executor."""
    job = claimed_job(host, **fields)
    ref = executor.add_container(job.pk, job.attempt)
    job.mark_as_running(container_id=ref.container_id)
    return job, ref
