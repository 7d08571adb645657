"""An executor whose containers end the moment they start: the queue's own cost, alone.

Registered under the executor type ``"noop"`` by :func:`register`; hosts of
that type run every job instantly with exit code 0 and no output.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from container_manager.executors import register_executor
from container_manager.executors.base import (
    ContainerRef,
    Executor,
    ExitStatus,
    HealthReport,
    LaunchSpec,
    Logs,
    StepCallback,
)
from container_manager.executors.completion import CompletionBoard

EXECUTOR_TYPE = "noop"


class NoopExecutor(Executor):
    """Starts nothing; every launch has already ended with exit code 0."""

    def __init__(self, host: object) -> None:
        super().__init__(host)  # type: ignore[arg-type]
        self._board = CompletionBoard()
        self._ids = itertools.count(1)

    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        ref = ContainerRef(spec.job_id, spec.attempt, f"noop-{spec.job_id}-{spec.attempt}")
        self._board.post(ExitStatus(ref=ref, exit_code=0))
        return ref

    def find(self, job_id: int, attempt: int) -> ContainerRef | None:
        return None

    def list_managed(self) -> list[ContainerRef]:
        return []

    def wait_finished(
        self, refs: Iterable[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        return self._board.wait([ref.container_id for ref in refs], timeout_seconds)

    def logs(self, ref: ContainerRef, max_bytes: int) -> Logs:
        return Logs(stdout="", stderr="")

    def kill(self, ref: ContainerRef) -> None:
        return None

    def remove(self, ref: ContainerRef) -> None:
        self._board.forget(ref.container_id)

    def health_check(self) -> HealthReport:
        return HealthReport(is_healthy=True)


def register() -> None:
    """Make hosts of type ``"noop"`` use :class:`NoopExecutor`."""
    register_executor(EXECUTOR_TYPE, NoopExecutor)
