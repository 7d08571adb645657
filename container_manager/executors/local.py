"""Runs jobs as processes of this machine: for development and machines without Docker.

Each attempt is a subprocess in its own session (process group), so cancel,
timeout and pause act on the whole tree it starts. Its stdout and stderr go
to files in a private directory, never to pipes: nothing blocks however much
it prints, and :meth:`LocalProcessExecutor.logs` reads back at most the cap.

What differs from Docker, on purpose or by nature:

- ``spec.image`` is ignored: the command runs on this machine's programs.
- The environment is the job's own plus ``PATH`` from the worker's, so
  commands resolve; nothing else of the worker's environment leaks in.
- ``memory_limit_mb`` becomes ``RLIMIT_AS`` (address space), which is
  approximate: allocation fails inside the program (usually a non-zero exit)
  instead of an OOM kill, so ``is_oom_killed`` is never set. CPU limits,
  network and user are not applied.
- A process cannot be adopted by another worker: :meth:`find` only knows
  the processes this executor started, in this Python process. A worker that
  dies leaves its processes running but unfindable, and the rescuer requeues
  their jobs. Closing the executor (worker shutdown) kills what still runs.
- Without a working directory, the process runs in its private directory,
  which :meth:`remove` deletes.
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from container_manager.exceptions import (
    ContainerNotFoundError,
    ExecutorError,
    InvalidLaunchSpecError,
)
from container_manager.executors.base import (
    ContainerRef,
    Executor,
    ExitStatus,
    HealthReport,
    LaunchSpec,
    Logs,
    Progress,
    ProgressCallback,
    StepCallback,
)
from container_manager.executors.completion import CompletionBoard
from container_manager.logcap import LineSplitter, read_capped_file

if TYPE_CHECKING:
    from container_manager.models import ExecutorHost

logger = logging.getLogger(__name__)

#: How often follow_progress looks for new output in the files.
TAIL_INTERVAL_SECONDS = 0.1
#: How long remove() waits for a killed process to be reaped.
REAP_TIMEOUT_SECONDS = 5.0
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"


@dataclass
class _Process:
    ref: ContainerRef
    popen: subprocess.Popen[bytes]
    directory: Path
    ended: threading.Event = field(default_factory=threading.Event)


def _memory_limiter(limit_mb: int) -> Callable[[], None]:
    limit = limit_mb * 1024 * 1024

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return limit_memory


class LocalProcessExecutor(Executor):
    """Runs each attempt as a process group on this machine.

    ``executor_config`` options: ``"output_dir"``, where the per-attempt
    directories go (default: the system's temporary directory).
    """

    supports_pause = True

    def __init__(self, host: ExecutorHost) -> None:
        super().__init__(host)
        config = host.executor_config or {}
        self._output_root: str | None = config.get("output_dir") or None
        self._lock = threading.Lock()
        self._by_attempt: dict[tuple[int, int], _Process] = {}
        self._by_id: dict[str, _Process] = {}
        self._board = CompletionBoard()

    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        """Start the attempt as a process group; return the running one if already started.

        Raises:
            InvalidLaunchSpecError: No command, a command or working directory
                that does not exist, or a non-positive memory limit.
            ExecutorError: The process could not be started for another reason.
        """
        key = (spec.job_id, spec.attempt)
        with self._lock:
            existing = self._by_attempt.get(key)
            if existing is not None:
                return existing.ref
            process = self._start(spec)
            self._by_attempt[key] = process
            self._by_id[process.ref.container_id] = process
        threading.Thread(
            target=self._reap, args=(process,), name=f"cm-local-{process.popen.pid}", daemon=True
        ).start()
        logger.info(
            "Started job %s attempt %s as pid %s",
            spec.job_id,
            spec.attempt,
            process.popen.pid,
            extra={"job_id": spec.job_id},
        )
        return process.ref

    def _start(self, spec: LaunchSpec) -> _Process:
        if not spec.command:
            raise InvalidLaunchSpecError("A local process needs a command")
        if spec.memory_limit_mb is not None and spec.memory_limit_mb <= 0:
            raise InvalidLaunchSpecError("memory_limit_mb must be positive")
        try:
            directory = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=self._output_root))
        except OSError as exc:
            raise ExecutorError(f"Cannot create an output directory: {exc}") from exc
        environment = dict(spec.environment)
        environment.setdefault("PATH", os.environ.get("PATH", os.defpath))
        limiter = _memory_limiter(spec.memory_limit_mb) if spec.memory_limit_mb else None
        try:
            with (
                open(directory / STDOUT_FILE, "wb") as stdout,
                open(directory / STDERR_FILE, "wb") as stderr,
            ):
                popen = subprocess.Popen(
                    list(spec.command),
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=spec.working_directory or directory,
                    env=environment,
                    start_new_session=True,
                    # Only setrlimit runs between fork and exec: no lock is taken there.
                    preexec_fn=limiter,
                )
        except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise InvalidLaunchSpecError(f"Cannot run {spec.command[0]!r}: {exc}") from exc
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise ExecutorError(f"Cannot start process: {exc}") from exc
        ref = ContainerRef(spec.job_id, spec.attempt, f"pid-{popen.pid}-{directory.name}")
        return _Process(ref=ref, popen=popen, directory=directory)

    def _reap(self, process: _Process) -> None:
        code = process.popen.wait()
        # A signal death is reported like Docker does: 128 + signal (SIGKILL: 137).
        exit_code = 128 - code if code < 0 else code
        process.ended.set()
        self._board.post(
            ExitStatus(ref=process.ref, exit_code=exit_code, finished_at=datetime.now(UTC))
        )

    def _get(self, ref: ContainerRef) -> _Process:
        with self._lock:
            process = self._by_id.get(ref.container_id)
        if process is None:
            raise ContainerNotFoundError(f"No local process {ref.container_id} in this worker")
        return process

    def find(self, job_id: int, attempt: int) -> ContainerRef | None:
        """Return the process of this attempt if this executor started it, else None."""
        with self._lock:
            process = self._by_attempt.get((job_id, attempt))
        return process.ref if process else None

    def list_managed(self) -> list[ContainerRef]:
        """Return the processes this executor started and has not removed."""
        with self._lock:
            return [process.ref for process in self._by_attempt.values()]

    def wait_finished(
        self, refs: Iterable[ContainerRef], timeout_seconds: float
    ) -> list[ExitStatus]:
        """Return the processes among ``refs`` that ended, waiting up to the timeout.

        A ref this executor does not know (started by another worker process)
        is reported as ended at once, with no exit code and an error.
        """
        refs = list(refs)
        with self._lock:
            unknown = [ref for ref in refs if ref.container_id not in self._by_id]
        if unknown:
            return [
                ExitStatus(ref=ref, exit_code=None, error="process unknown to this worker")
                for ref in unknown
            ]
        return self._board.wait([ref.container_id for ref in refs], timeout_seconds)

    def logs(self, ref: ContainerRef, max_bytes: int) -> Logs:
        """Read back stdout and stderr, each cut at ``max_bytes`` with a marker.

        Works for a process of another executor of this machine too (the web
        process showing a worker's job), as long as its directory exists.

        Raises:
            ContainerNotFoundError: Its directory is gone (removed).
        """
        with self._lock:
            process = self._by_id.get(ref.container_id)
        directory = process.directory if process else self._directory_of(ref)
        if not directory.is_dir():
            raise ContainerNotFoundError(f"No output of local process {ref.container_id}")
        stdout = read_capped_file(directory / STDOUT_FILE, max_bytes)
        stderr = read_capped_file(directory / STDERR_FILE, max_bytes)
        return Logs(stdout.text, stderr.text, stdout.is_truncated, stderr.is_truncated)

    def _directory_of(self, ref: ContainerRef) -> Path:
        """Where a process's files are, from its id ("pid-<pid>-<directory name>")."""
        _, _, name = ref.container_id.partition("-")[2].partition("-")
        root = Path(self._output_root or tempfile.gettempdir())
        return root / Path(name).name if name else root / "missing"

    def _signal(self, process: _Process, signum: int) -> bool:
        # Only while the leader is unreaped: after that its pid could be reused.
        if process.popen.returncode is not None or process.ended.is_set():
            return False
        try:
            os.killpg(process.popen.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def kill(self, ref: ContainerRef) -> None:
        """Kill the whole process group with SIGKILL. No error if it already ended."""
        try:
            process = self._get(ref)
        except ContainerNotFoundError:
            return
        self._signal(process, signal.SIGKILL)

    def pause(self, ref: ContainerRef) -> None:
        """Stop the process group with SIGSTOP.

        Raises:
            ExecutorError: The process is not running.
        """
        if not self._signal(self._get(ref), signal.SIGSTOP):
            raise ExecutorError(f"Process {ref.container_id} is not running", transient=False)

    def resume(self, ref: ContainerRef) -> None:
        """Continue the process group with SIGCONT.

        Raises:
            ExecutorError: The process is not running.
        """
        if not self._signal(self._get(ref), signal.SIGCONT):
            raise ExecutorError(f"Process {ref.container_id} is not running", transient=False)

    def remove(self, ref: ContainerRef) -> None:
        """Kill the process if it runs, then delete its directory and forget it."""
        try:
            process = self._get(ref)
        except ContainerNotFoundError:
            return
        self._signal(process, signal.SIGKILL)
        process.ended.wait(REAP_TIMEOUT_SECONDS)
        with self._lock:
            self._by_id.pop(ref.container_id, None)
            self._by_attempt.pop((ref.job_id, ref.attempt), None)
        self._board.forget(ref.container_id)
        shutil.rmtree(process.directory, ignore_errors=True)

    def follow_progress(self, ref: ContainerRef, callback: ProgressCallback) -> None:
        """Tail the output files and report each progress line, until the process ends."""
        process = self._get(ref)

        def report(percent: int, step: str) -> None:
            try:
                callback(Progress(ref=ref, percent=percent, step=step))
            except Exception:
                logger.exception(
                    "Progress callback failed for job %s", ref.job_id, extra={"job_id": ref.job_id}
                )

        splitters = [LineSplitter(report), LineSplitter(report)]
        paths = [process.directory / STDOUT_FILE, process.directory / STDERR_FILE]
        with open(paths[0], "rb") as out, open(paths[1], "rb") as err:
            handles = [out, err]
            while True:
                has_ended = process.ended.is_set()
                got = 0
                for handle, splitter in zip(handles, splitters, strict=True):
                    chunk = handle.read(64 * 1024)
                    got += len(chunk)
                    splitter.feed(chunk)
                if not got:
                    if has_ended:
                        return
                    process.ended.wait(TAIL_INTERVAL_SECONDS)

    def health_check(self) -> HealthReport:
        """A local host is always able to run processes."""
        return HealthReport(is_healthy=True, detail=f"local processes on {socket.gethostname()}")

    def close(self) -> None:
        """Kill the process groups still running: no other worker could adopt them."""
        with self._lock:
            processes = list(self._by_id.values())
        for process in processes:
            if self._signal(process, signal.SIGKILL):
                logger.warning(
                    "Killed job %s (pid %s) on executor shutdown",
                    process.ref.job_id,
                    process.popen.pid,
                    extra={"job_id": process.ref.job_id},
                )
