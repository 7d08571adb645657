"""Runs jobs as processes of this machine: for development and machines without Docker.

Each attempt's command runs in its own session (process group), under a
small supervisor (:mod:`container_manager.executors.process_supervisor`), so
cancel, timeout and pause act on the whole tree it starts. Its stdout and
stderr go to files in a private directory, never to pipes: nothing blocks
however much it prints, and :meth:`LocalProcessExecutor.logs` reads back at
most the cap.

What a user can rely on (Linux; see "Elsewhere" below):

- **A process dies with its worker.** The supervisor gets ``SIGTERM`` from
  the kernel when the worker dies, however it dies (``SIGKILL`` included),
  and kills the command's whole process group with ``SIGKILL``. When the
  command's main process ends, what it left running in its group is killed
  too (as Docker does when a container's main process exits). No process of
  an attempt runs past its timeout plus :data:`DEADLINE_GRACE_SECONDS`, even
  without a worker: the supervisor kills it then.
- **A new attempt starts only once the previous one is known gone.** Every
  process of an attempt carries ``CONTAINER_MANAGER_JOB_ID``,
  ``CONTAINER_MANAGER_ATTEMPT`` and ``CONTAINER_MANAGER_NAME`` (the
  attempt's container name, ``cm-job-42-a1``) in its environment, set by the
  executor over any job variable of the same name. :meth:`find` looks the
  attempt up among all processes of this machine (``/proc/*/environ``, and
  the process groups of what it finds), not only among this executor's, and
  :meth:`launch` refuses to start an attempt that already runs here. A
  process another worker process started cannot be followed (it is not our
  child: its exit code is not ours to read); :meth:`can_follow` says so, and
  the rescuer kills such a process's groups (:meth:`kill` works on them),
  waits until :meth:`find` no longer sees it, and only then queues the job
  again.
- **An attempt that ended is not run again.** Each attempt's directory is
  named after it (``<output root>/cm-job-42-a1-<random>``), and its
  supervisor writes the command's exit code there (``exit_code``) once the
  attempt ended by itself, before it exits, even when the worker that
  started it is gone. :meth:`ended_attempt` reads it from any worker
  process of this machine; :meth:`adopt_ended` makes such an attempt this
  executor's own, as an ended process (followed, read and removed like
  one), and :meth:`launch` of an attempt that ended here answers it instead
  of starting it again. An attempt killed because its worker died (or was
  stopped by its worker) leaves no such file: it did not end, and its job is
  queued again.
- **One machine.** Processes are seen on the machine (PID namespace) of the
  worker that started them only. A rescuer on another machine cannot see
  them, so it does not requeue their job until the attempt's deadline
  (lease expiry + timeout + grace) has passed (see ``worker/rescuer.py``).

Elsewhere than Linux there is no parent-death signal and no ``/proc``: the
supervisor polls its parent every 0.2 s instead (a process still dies with
its worker, within that delay), and :meth:`find` knows only the processes of
this executor.

What differs from Docker, on purpose or by nature:

- ``spec.image`` is ignored: the command runs on this machine's programs.
- The environment is the job's own plus ``PATH`` from the worker's, so
  commands resolve, plus the three variables above; nothing else of the
  worker's environment leaks in.
- ``memory_limit_mb`` becomes ``RLIMIT_AS`` (address space), which is
  approximate: allocation fails inside the program (usually a non-zero exit)
  instead of an OOM kill, so ``is_oom_killed`` is never set. CPU limits,
  network and user are not applied.
- A process that leaves its process group and drops the variables (``setsid
  env -i ...``) escapes both the group kill and :meth:`find`.
- Closing the executor (worker shutdown) kills what still runs.
- Without a working directory, the process runs in its private directory,
  which :meth:`remove` deletes.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import queue
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from container_manager.exceptions import (
    ContainerNotFoundError,
    ExecutorError,
    InvalidLaunchSpecError,
)
from container_manager.executors import process_supervisor
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
    container_name,
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
#: How long a launch waits for the supervisor to say the command runs.
HANDSHAKE_TIMEOUT_SECONDS = 30.0
#: A supervisor kills its command this long after the job's timeout, should
#: no worker have done it: the bound on how long any process of an attempt runs.
DEADLINE_GRACE_SECONDS = 10
STDOUT_FILE = process_supervisor.STDOUT_FILE
STDERR_FILE = "stderr.log"
#: The variables every process of an attempt carries: its labels.
JOB_VARIABLE = "CONTAINER_MANAGER_JOB_ID"
ATTEMPT_VARIABLE = "CONTAINER_MANAGER_ATTEMPT"
NAME_VARIABLE = "CONTAINER_MANAGER_NAME"
SUPERVISOR_VARIABLE = process_supervisor.SUPERVISOR_VARIABLE
SUPERVISOR_SCRIPT = str(Path(process_supervisor.__file__).resolve())
EXIT_FILE = process_supervisor.EXIT_FILE
#: An attempt directory's name after ``<prefix>-job-``: ``42-a1-<random>``.
_ATTEMPT_DIRECTORY = re.compile(r"(\d+)-a(\d+)-[^/]+")
PROC = Path("/proc")
#: Can processes of this machine be looked up (Linux's /proc)?
HAS_PROC = sys.platform.startswith("linux") and (PROC / "self" / "environ").exists()


def machine_name() -> str:
    """The name of this machine, as the ``Worker`` rows record it (``hostname``).

    Local processes are seen only from the machine that runs them; workers
    that share a hostname must share a process table (PID namespace).
    """
    return socket.gethostname()


#: The supervisor's reasons a command could not start, with their catalogue codes.
_START_REFUSALS = {
    "missing": "COMMAND_NOT_FOUND",
    "denied": "PERMISSION_DENIED",
    "invalid": "VALIDATION_INVALID_PARAMS",
}


@dataclass(frozen=True)
class MachineProcess:
    """A live process of this machine that belongs to one attempt."""

    pid: int
    pgid: int
    #: The attempt's output directory, for the supervisor; "" for the command's processes.
    supervisor_of: str = ""


def _stat(pid: str) -> tuple[str, int] | None:
    """The state letter and process group of a process, None if it is gone."""
    try:
        with open(PROC / pid / "stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return None
    return fields[0].decode(), int(fields[2])


def _labels(pid: str) -> dict[bytes, bytes]:
    """The attempt variables in a process's environment; empty if none or unreadable."""
    try:
        with open(PROC / pid / "environ", "rb") as environ:
            data = environ.read()
    except OSError:
        return {}
    if NAME_VARIABLE.encode() not in data:
        return {}
    found: dict[bytes, bytes] = {}
    for entry in data.split(b"\0"):
        key, _, value = entry.partition(b"=")
        if key in (NAME_VARIABLE.encode(), SUPERVISOR_VARIABLE.encode()):
            found[key] = value
    return found


def attempt_processes(name: str) -> list[MachineProcess]:
    """Every live process of this machine that belongs to the attempt named ``name``.

    A process belongs to it when its environment carries ``NAME_VARIABLE`` =
    ``name``, or when it is in the process group of one that does (a child
    that cleared its environment). Zombies do not count: they run nothing.
    Processes of other users, whose environment cannot be read, are not
    seen. Empty where there is no ``/proc``.
    """
    wanted = name.encode()
    labelled: list[MachineProcess] = []
    others: list[tuple[int, int]] = []
    for pid, pgid, labels in _live_processes():
        if labels.get(NAME_VARIABLE.encode()) == wanted:
            directory = labels.get(SUPERVISOR_VARIABLE.encode(), b"").decode(errors="replace")
            labelled.append(MachineProcess(pid, pgid, directory))
        else:
            others.append((pid, pgid))
    groups = {process.pgid for process in labelled if not process.supervisor_of}
    return labelled + [MachineProcess(pid, pgid) for pid, pgid in others if pgid in groups]


def _live_processes() -> Iterator[tuple[int, int, dict[bytes, bytes]]]:
    """(pid, process group, attempt variables) of every live process; zombies left out."""
    if not HAS_PROC:
        return
    try:
        entries = os.listdir(PROC)
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _stat(entry)
        if stat is None or stat[0] in ("Z", "X", "x"):
            continue
        yield int(entry), stat[1], _labels(entry)


def live_attempt_names() -> set[str]:
    """The attempt names (``NAME_VARIABLE``) of every live process of this machine.

    One pass over ``/proc`` for all attempts, where :func:`attempt_processes`
    looks one up. The supervisor carries the name and lives as long as its
    group, so an attempt whose name is missing here runs nothing. Empty
    where there is no ``/proc``.
    """
    names: set[str] = set()
    for _, _, labels in _live_processes():
        name = labels.get(NAME_VARIABLE.encode())
        if name:
            names.add(name.decode(errors="replace"))
    return names


def _read_exit_file(path: Path, job_id: int, attempt: int) -> ExitStatus | None:
    """The end a supervisor wrote (``<code> <pid> <how>``); None if none or unreadable."""
    try:
        fields = path.read_text(encoding="ascii", errors="replace").split()
        written_at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None
    if len(fields) < 2 or not all(f.lstrip("-").isdigit() for f in fields[:2]):
        logger.warning("Ignoring an unreadable exit file %s: %r", path, fields)
        return None
    code, pid = int(fields[0]), int(fields[1])
    how = fields[2] if len(fields) > 2 else process_supervisor.ENDED_BY_ITSELF
    error = ""
    if how == process_supervisor.ENDED_AT_DEADLINE:
        error = (
            f"Killed by its supervisor at its deadline (timeout + {DEADLINE_GRACE_SECONDS} s): "
            "no worker was left to time it out"
        )
    ref = ContainerRef(job_id, attempt, f"pid-{pid}-{path.parent.name}")
    return ExitStatus(ref=ref, exit_code=code, finished_at=written_at, error=error)


def _pid_of_id(container_id: str) -> int:
    """The pid in a local process's id (``pid-<pid>-<directory>``), or 0."""
    pid = container_id.partition("-")[2].partition("-")[0]
    return int(pid) if pid.isdigit() else 0


def _ref_of(job_id: int, attempt: int, processes: list[MachineProcess]) -> ContainerRef:
    """The reference of an attempt found among the machine's processes."""
    commands = [p for p in processes if not p.supervisor_of]
    leaders = [p.pid for p in commands if p.pid == p.pgid]
    pid = leaders[0] if leaders else (commands[0].pgid if commands else processes[0].pid)
    directory = next((Path(p.supervisor_of).name for p in processes if p.supervisor_of), "")
    return ContainerRef(job_id, attempt, f"pid-{pid}-{directory}")


class _Spawner:
    """Starts every supervisor from one thread that lives as long as the process.

    The kernel sends the parent-death signal when the *thread* that forked a
    process ends; a supervisor forked from a launch thread that later ends
    would kill a live job. This thread never ends (it is a daemon thread: it
    goes with the process, which is when the supervisors must act).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[Any]]]
        self._requests = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """``subprocess.Popen(args, **kwargs)``, forked from the spawner thread."""
        if threading.current_thread() is self._thread:
            return subprocess.Popen(args, **kwargs)
        future: Future[subprocess.Popen[bytes]] = Future()
        with self._lock:
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                # First use, or a forked child of the worker: start a thread of its own.
                self._requests = queue.SimpleQueue()
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, args=(self._requests,), name="cm-local-spawner", daemon=True
                )
                self._thread.start()
            self._requests.put((args, kwargs, future))
        return future.result()

    @staticmethod
    def _run(requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future[Any]]]) -> None:
        while True:
            args, kwargs, future = requests.get()
            try:
                future.set_result(subprocess.Popen(args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)


_spawner = _Spawner()


@dataclass
class _Process:
    ref: ContainerRef
    #: The supervisor: this executor's child, whose exit status is the command's;
    #: None for an ended attempt of another worker process (:meth:`adopt_ended`).
    popen: subprocess.Popen[bytes] | None
    #: The command's process group (its leader's pid).
    pgid: int
    directory: Path
    ended: threading.Event = field(default_factory=threading.Event)


def _read_handshake(popen: subprocess.Popen[bytes], timeout_seconds: float) -> str:
    """The supervisor's one line: ``ok <pid>`` or ``error <kind> <message>``; "" if none."""
    assert popen.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout_seconds
    with selectors.DefaultSelector() as selector:
        selector.register(popen.stdout, selectors.EVENT_READ)
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise TimeoutError
            chunk = os.read(popen.stdout.fileno(), 4096)
            if not chunk:
                break
            data += chunk
    popen.stdout.close()
    return data.decode("utf-8", "replace").partition("\n")[0]


class LocalProcessExecutor(Executor):
    """Runs each attempt as a process group on this machine.

    ``executor_config`` options: ``"output_dir"``, where the per-attempt
    directories go (default: the system's temporary directory).
    """

    supports_pause = True
    outlives_worker = False

    def __init__(self, host: ExecutorHost) -> None:
        super().__init__(host)
        config = host.executor_config or {}
        self._output_root: str | None = config.get("output_dir") or None
        self._lock = threading.Lock()
        self._by_attempt: dict[tuple[int, int], _Process] = {}
        self._by_id: dict[str, _Process] = {}
        self._starting: dict[tuple[int, int], threading.Lock] = {}
        self._board = CompletionBoard()

    def launch(self, spec: LaunchSpec, on_step: StepCallback | None = None) -> ContainerRef:
        """Start the attempt as a process group; return the running one if already started.

        Raises:
            InvalidLaunchSpecError: No command, a command or working directory
                that does not exist, or a non-positive memory limit.
            ExecutorError: The attempt already runs on this machine, started
                by another worker process (it cannot be followed from here;
                the rescue kills it), or the process could not be started.
        """
        key = (spec.job_id, spec.attempt)
        with self._lock:
            existing = self._by_attempt.get(key)
            if existing is not None:
                return existing.ref
            # One start per attempt at a time; other attempts start meanwhile.
            starting = self._starting.setdefault(key, threading.Lock())
        with starting:
            with self._lock:
                existing = self._by_attempt.get(key)
            if existing is not None:
                return existing.ref
            process = self._start_once(spec)
            with self._lock:
                # Registered: later launches of the attempt find it without the lock.
                self._starting.pop(key, None)
        if process.popen is None:
            logger.warning(
                "Job %s attempt %s already ran on this machine and ended (exit code file in %s); "
                "not started again",
                spec.job_id,
                spec.attempt,
                process.directory,
                extra={"job_id": spec.job_id},
            )
            return process.ref
        threading.Thread(
            target=self._reap, args=(process,), name=f"cm-local-{process.pgid}", daemon=True
        ).start()
        logger.info(
            "Started job %s attempt %s as pid %s",
            spec.job_id,
            spec.attempt,
            process.pgid,
            extra={"job_id": spec.job_id},
        )
        return process.ref

    def _start_once(self, spec: LaunchSpec) -> _Process:
        elsewhere = attempt_processes(spec.name)
        if elsewhere:
            raise ExecutorError(
                f"Attempt {spec.attempt} of job {spec.job_id} already runs on this machine "
                f"(pids {sorted(p.pid for p in elsewhere)}), started by another worker process",
                transient=True,
            )
        # An attempt that ended here under a dead worker is adopted by the
        # rescuer (adopt_ended) before any relaunch: launch itself does not
        # read exit files, which a job id of another database could have left.
        process = self._start(spec)
        with self._lock:
            self._by_attempt[(spec.job_id, spec.attempt)] = process
            self._by_id[process.ref.container_id] = process
        return process

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
        environment.update(
            {
                JOB_VARIABLE: str(spec.job_id),
                ATTEMPT_VARIABLE: str(spec.attempt),
                NAME_VARIABLE: spec.name,
                SUPERVISOR_VARIABLE: str(directory),
            }
        )
        memory_limit = (spec.memory_limit_mb or 0) * 1024 * 1024
        deadline = spec.timeout_seconds + DEADLINE_GRACE_SECONDS if spec.timeout_seconds else 0
        arguments = [
            sys.executable,
            "-I",
            "-S",
            SUPERVISOR_SCRIPT,
            str(os.getpid()),
            str(memory_limit),
            str(deadline),
            spec.working_directory or str(directory),
            "--",
            *spec.command,
        ]
        try:
            (directory / STDOUT_FILE).touch()
            with open(directory / STDERR_FILE, "wb") as stderr:
                popen = _spawner.popen(
                    arguments,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=directory,
                    env=environment,
                    start_new_session=True,
                )
        except OSError as exc:
            shutil.rmtree(directory, ignore_errors=True)
            raise ExecutorError(f"Cannot start process: {exc}") from exc
        try:
            answer = _read_handshake(popen, HANDSHAKE_TIMEOUT_SECONDS)
        except TimeoutError:
            # The supervisor kills whatever it started when told to stop.
            popen.terminate()
            popen.wait()
            shutil.rmtree(directory, ignore_errors=True)
            raise ExecutorError(
                f"The process of job {spec.job_id} did not start within "
                f"{HANDSHAKE_TIMEOUT_SECONDS} s",
                transient=True,
            ) from None
        kind, _, detail = answer.partition(" ")
        if kind != "ok":
            popen.wait()
            output = read_capped_file(directory / STDERR_FILE, 2000).text.strip()
            shutil.rmtree(directory, ignore_errors=True)
            reason, _, message = detail.partition(" ")
            if reason in _START_REFUSALS:
                raise InvalidLaunchSpecError(
                    f"Cannot run {spec.command[0]!r}: {message}", code=_START_REFUSALS[reason]
                )
            raise ExecutorError(
                f"Cannot start process: {message or output or 'its supervisor ended'}"
            )
        pgid = int(detail)
        ref = ContainerRef(spec.job_id, spec.attempt, f"pid-{pgid}-{directory.name}")
        return _Process(ref=ref, popen=popen, pgid=pgid, directory=directory)

    def _reap(self, process: _Process) -> None:
        # The supervisor exits once the command's group is gone, with its exit
        # code (a signal death as 128 + signal, like Docker: SIGKILL is 137).
        assert process.popen is not None
        code = process.popen.wait()
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
        """Return the process of this attempt if it exists on this machine, else None.

        This executor's own processes are answered from memory, ended or
        not. Others (started by another worker process of this machine) are
        looked up in ``/proc`` by the attempt's variables and count only
        while one of them is alive; :meth:`can_follow` is False for them.
        """
        with self._lock:
            process = self._by_attempt.get((job_id, attempt))
        if process is not None:
            return process.ref
        found = attempt_processes(container_name(job_id, attempt))
        return _ref_of(job_id, attempt, found) if found else None

    def _root(self) -> Path:
        return Path(self._output_root or tempfile.gettempdir())

    def attempt_directories(self, job_id: int, attempt: int) -> list[Path]:
        """The output directories of one attempt on this machine (``<name>-<random>``)."""
        pattern = f"{glob.escape(container_name(job_id, attempt))}-*"
        try:
            return sorted(path for path in self._root().glob(pattern) if path.is_dir())
        except OSError:
            return []

    def discard_attempt(self, job_id: int, attempt: int) -> None:
        """Delete the output directories of a lost attempt that no process of it uses.

        Called once the attempt is known gone and its job queued again: the
        output of a lost attempt is never stored, so nothing is lost.
        """
        for directory in self.attempt_directories(job_id, attempt):
            shutil.rmtree(directory, ignore_errors=True)

    def ended_attempt(self, job_id: int, attempt: int) -> ExitStatus | None:
        """How an attempt of this machine ended by itself, from its directory; None if it did not.

        Reads the exit file its supervisor writes once the command's group
        is gone (see :mod:`~container_manager.executors.process_supervisor`),
        so it answers for an attempt started by any worker process of this
        machine, a dead one included, as long as its directory exists under
        this host's output root. None while the attempt runs, when it was
        killed because its worker died or stopped it (no file is written
        then), or when its directory is gone.
        """
        found = [
            status
            for directory in self.attempt_directories(job_id, attempt)
            if (status := _read_exit_file(directory / EXIT_FILE, job_id, attempt)) is not None
        ]
        if not found:
            return None
        # One directory per started attempt; should there be more, the latest end.
        return max(found, key=lambda status: status.finished_at or datetime.min.replace(tzinfo=UTC))

    def adopt_ended(self, status: ExitStatus) -> ContainerRef:
        """Make an ended attempt of another worker process (:meth:`ended_attempt`) this one's.

        It is then known as an ended process of this executor: :meth:`find`
        and :meth:`launch` answer it, :meth:`can_follow` is True,
        :meth:`wait_finished` reports ``status`` at once, and :meth:`logs`,
        :meth:`follow_progress` and :meth:`remove` work on its directory. So
        its end is recorded as if this worker had run it.

        Returns:
            Its reference (the one already known, if it was adopted before).
        """
        ref = status.ref
        key = (ref.job_id, ref.attempt)
        pid = _pid_of_id(ref.container_id)
        with self._lock:
            existing = self._by_attempt.get(key)
            if existing is not None:
                return existing.ref
            process = _Process(ref=ref, popen=None, pgid=pid, directory=self._directory_of(ref))
            process.ended.set()
            self._by_attempt[key] = process
            self._by_id[ref.container_id] = process
        self._board.post(status)
        return ref

    def can_follow(self, ref: ContainerRef) -> bool:
        """Tell whether this executor started ``ref`` and so can report its end.

        A process of another worker process (found by :meth:`find`) is not
        our child: its exit code cannot be read, only its absence seen.
        """
        with self._lock:
            return ref.container_id in self._by_id

    def list_managed(self) -> list[ContainerRef]:
        """Return this executor's processes, and the ended attempts left under its output root.

        Processes that other worker processes run are not listed (they are
        not ours to remove); :meth:`find` sees them. An attempt directory
        that no live process of this machine uses and that this executor
        does not know is listed too: the clean-up then removes it, or has its
        end recorded, as for a container. One whose supervisor wrote its end
        (its worker was killed after recording the end, before deleting it)
        is adopted as an ended process (:meth:`adopt_ended`); one without
        (killed with its worker) is listed as ``pid-0-<directory>`` and not
        remembered, since only its job's row can tell whether it was lost
        or is being launched.
        """
        ended, killed = self._orphan_attempts()
        for status in ended:
            self.adopt_ended(status)
        with self._lock:
            return [process.ref for process in self._by_attempt.values()] + killed

    def _orphan_attempts(self) -> tuple[list[ExitStatus], list[ContainerRef]]:
        """The attempts of this output root that no process runs and this executor does not know.

        Returns:
            Those that ended by themselves (an exit file), and those killed
            (none: known only where ``/proc`` shows that nothing runs them).
        """
        prefix = f"{container_name(0, 0).partition('-job-')[0]}-job-"
        try:
            directories = [
                path for path in self._root().glob(f"{glob.escape(prefix)}*-a*-*") if path.is_dir()
            ]
        except OSError:
            return [], []
        ended: list[ExitStatus] = []
        killed: list[ContainerRef] = []
        live: set[str] | None = None
        for directory in directories:
            match = _ATTEMPT_DIRECTORY.fullmatch(directory.name[len(prefix) :])
            if match is None:
                continue
            job_id, attempt = int(match.group(1)), int(match.group(2))
            with self._lock:
                if (job_id, attempt) in self._by_attempt:
                    continue
            status = _read_exit_file(directory / EXIT_FILE, job_id, attempt)
            if status is not None:
                ended.append(status)
                continue
            # No exit file: killed with its worker, or still being started.
            # Only /proc can tell whether something runs it.
            if not HAS_PROC:
                continue
            if live is None:
                live = live_attempt_names()
            if container_name(job_id, attempt) not in live:
                killed.append(ContainerRef(job_id, attempt, f"pid-0-{directory.name}"))
        return ended, killed

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
        # Only while the supervisor is unreaped: it reaps the leader last, so
        # until then the group's id cannot have been reused.
        if process.popen is None or process.ended.is_set() or process.popen.returncode is not None:
            return False
        try:
            os.killpg(process.pgid, signum)
        except ProcessLookupError:
            return False
        return True

    def kill(self, ref: ContainerRef) -> None:
        """Kill the whole process group with SIGKILL. No error if it already ended.

        A process of another worker process of this machine is killed too:
        every process group of the attempt (found again by its variables,
        never by the pid in ``ref`` alone), its supervisor's included.
        """
        try:
            process = self._get(ref)
        except ContainerNotFoundError:
            self._kill_elsewhere(ref)
            return
        self._signal(process, signal.SIGKILL)

    def _kill_elsewhere(self, ref: ContainerRef) -> None:
        found = attempt_processes(container_name(ref.job_id, ref.attempt))
        # The supervisors first: one that saw its command killed would write
        # the kill down as the attempt's own end (an exit file, exit code 137).
        for process in found:
            if process.supervisor_of:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(process.pid, signal.SIGKILL)
        for pgid in sorted({p.pgid for p in found}):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for process in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signal.SIGKILL)
        if found:
            logger.warning(
                "Killed the processes %s of job %s attempt %s, started by another worker process",
                sorted(p.pid for p in found),
                ref.job_id,
                ref.attempt,
                extra={"job_id": ref.job_id},
            )

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
        """Kill the process if it runs, then delete its directory and forget it.

        A killed attempt listed by :meth:`list_managed` (``pid-0-...``) has
        its directory deleted when nothing runs it.
        """
        try:
            process = self._get(ref)
        except ContainerNotFoundError:
            if _pid_of_id(ref.container_id) == 0 and not attempt_processes(
                container_name(ref.job_id, ref.attempt)
            ):
                shutil.rmtree(self._directory_of(ref), ignore_errors=True)
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
        """Kill the process groups still running: no other worker could adopt them.

        Each supervisor is told to stop (``SIGTERM``) and kills its group
        itself, so that it writes no exit file: the attempt did not end, and
        its job is queued again, not recorded as killed. A group still alive
        after :data:`REAP_TIMEOUT_SECONDS` is killed from here.
        """
        with self._lock:
            processes = list(self._by_id.values())
        stopping = []
        for process in processes:
            if process.popen is not None and not process.ended.is_set():
                with contextlib.suppress(OSError):
                    process.popen.send_signal(signal.SIGTERM)
                stopping.append(process)
        deadline = time.monotonic() + REAP_TIMEOUT_SECONDS
        for process in stopping:
            process.ended.wait(max(0.0, deadline - time.monotonic()))
        for process in stopping:
            if process.ended.is_set() or self._signal(process, signal.SIGKILL):
                logger.warning(
                    "Killed job %s (pid %s) on executor shutdown",
                    process.ref.job_id,
                    process.pgid,
                    extra={"job_id": process.ref.job_id},
                )
