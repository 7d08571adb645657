"""The supervisor of one local-process attempt: the job's command dies with its worker.

:class:`~container_manager.executors.local.LocalProcessExecutor` does not
start a job's command itself. It starts this script (``python -I -S
process_supervisor.py ...``, standard library only, nothing of Django), which
starts the command in a session and process group of its own and waits for
it. The supervisor guarantees three things:

- **The command dies with its worker.** On Linux the supervisor asks the
  kernel for ``SIGTERM`` when its parent dies (``prctl(PR_SET_PDEATHSIG)``),
  then checks that its parent is still the worker (the worker may have died
  before the request was made). Elsewhere it polls its parent id every
  0.2 s. Either way, when the worker is gone the supervisor kills the
  command's whole process group with ``SIGKILL`` (the parent-death signal
  alone would only reach one process, not what the command started). The
  command's leader also gets ``SIGKILL`` as its own parent-death signal, in
  case the supervisor itself is killed.
- **Nothing of the attempt outlives its end.** When the command's leader
  exits, whatever it left running in its process group is killed, as Docker
  kills a container's processes when its main process exits.
- **No attempt runs past its deadline.** With ``deadline`` seconds (the job's
  timeout plus a grace), the group is killed then, even if no worker is left
  to enforce the timeout.

The kernel delivers the parent-death signal when the *thread* that forked
the supervisor ends, not the worker process, so the executor forks every
supervisor from one long-lived thread (``local._Spawner``).

Protocol: ``process_supervisor.py <parent pid> <memory limit bytes or 0>
<deadline seconds or 0> <working directory> -- <command...>``, run with the
job's environment plus ``CONTAINER_MANAGER_SUPERVISOR`` (the attempt's output
directory; removed from what the command sees). It appends the command's
stdout to ``<output directory>/stdout.log``; the command's stderr is the
supervisor's own. Once the command runs it writes ``ok <pid>`` on its stdout
(a pipe to the worker) and closes it, or ``error <kind> <message>`` when the
command could not start (kind ``missing`` for a program that does not exist,
``denied`` for one that may not be run, ``invalid`` for a missing working
directory, ``oserror`` otherwise). It exits with the command's exit code, or
128 + N when the command died of signal N.

Once the command's whole group is gone, and before it exits, it writes
``<output directory>/exit_code`` (atomically: a temporary file, fsynced,
then renamed over it): one line, ``<exit code> <command pid> <how>``, where
``how`` is ``exited`` (the command ended by itself: its exit code, or 128 + N
for a signal N that did not come from the supervisor) or ``deadline`` (the
supervisor killed it at its deadline; exit code 137). When the supervisor
killed the group because it was told to stop (``SIGTERM`` or ``SIGHUP``: its
worker died, or the worker stops it) it writes no file: the attempt did not
end by itself, so a rescuer queues the job again. The file is how a worker
process other than the one that started the attempt learns how it ended
(``LocalProcessExecutor.ended_attempt``) when the starting worker died
before recording the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from types import FrameType

#: Environment variable that carries the output directory to the supervisor only.
SUPERVISOR_VARIABLE = "CONTAINER_MANAGER_SUPERVISOR"
#: prctl option number (linux/prctl.h).
PR_SET_PDEATHSIG = 1
#: How often the parent is polled where the kernel cannot signal its death.
PARENT_POLL_SECONDS = 0.2
STDOUT_FILE = "stdout.log"
#: Written in the output directory once the attempt ended by itself (see above).
EXIT_FILE = "exit_code"
#: The ``how`` of an exit file.
ENDED_BY_ITSELF = "exited"
ENDED_AT_DEADLINE = "deadline"


def set_parent_death_signal(signum: int) -> bool:
    """Ask the kernel to send ``signum`` to this process when its parent thread ends.

    Returns:
        False where this is not available (not Linux, or no libc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class Supervisor:
    """Start the command, report its pid, wait for it, kill its group when needed."""

    def __init__(self, parent_pid: int) -> None:
        self.parent_pid = parent_pid
        self.pgid = 0
        self.is_killing = False
        #: The first signal that made the supervisor kill the group (0: none).
        self.stopped_by = 0

    def kill_group(self, signum: int = signal.SIGKILL) -> None:
        self.is_killing = True
        if self.pgid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signum)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The worker died (parent-death signal), the deadline passed, or
        # someone asked the supervisor to stop: the whole group goes.
        if not self.stopped_by:
            self.stopped_by = signum
        self.kill_group()

    def watch_parent(self) -> None:
        while os.getppid() == self.parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)


def _child_setup(memory_limit: int) -> None:
    # Runs in the command's process between fork and exec: no lock is taken here.
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    set_parent_death_signal(signal.SIGKILL)


def _report(line: str) -> None:
    os.write(1, line.encode("utf-8", "replace") + b"\n")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _exit_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def how_it_ended(supervisor: Supervisor, status: int) -> str:
    """``exited`` or ``deadline`` for an attempt that ended (see above); "" when it was stopped.

    The leader died of the supervisor's ``SIGKILL`` only when the supervisor
    was killing and the leader died of ``SIGKILL``; any other end (an exit
    code, another signal, or a ``SIGKILL`` the supervisor did not send) is
    the command's own, even if a stop request came just after it.
    """
    killed_here = (
        supervisor.is_killing and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    )
    if not killed_here:
        return ENDED_BY_ITSELF
    return ENDED_AT_DEADLINE if supervisor.stopped_by == signal.SIGALRM else ""


def write_exit_file(directory: str, exit_code: int, pid: int, how: str) -> None:
    """Write ``<directory>/exit_code`` atomically; nothing if the directory is gone."""
    if not directory:
        return
    path = os.path.join(directory, EXIT_FILE)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, f"{exit_code} {pid} {how}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
        with contextlib.suppress(OSError):
            directory_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(directory_fd)
            finally:
                os.close(directory_fd)
    except OSError:
        # The directory was removed meanwhile: nobody is left to read it.
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def main(argv: list[str]) -> int:
    parent_pid, memory_limit, deadline, cwd = int(argv[1]), int(argv[2]), int(argv[3]), argv[4]
    command = argv[6:]
    supervisor = Supervisor(parent_pid)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(signum, supervisor.on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if set_parent_death_signal(signal.SIGTERM):
        if os.getppid() != parent_pid:
            # The worker died before the kernel could be told: start nothing.
            return 1
    else:
        threading.Thread(target=supervisor.watch_parent, daemon=True).start()
    environment = dict(os.environ)
    directory = environment.pop(SUPERVISOR_VARIABLE, "")
    try:
        with open(os.path.join(directory, STDOUT_FILE), "ab") as stdout:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=2,
                cwd=cwd,
                env=environment,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(memory_limit),
            )
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        # Which file: the program itself, or the working directory.
        is_program = exc.filename is not None and str(exc.filename) != str(cwd)
        if is_program and isinstance(exc, FileNotFoundError):
            _report(f"error missing {exc}")
        elif is_program and isinstance(exc, PermissionError):
            _report(f"error denied {exc}")
        else:
            _report(f"error invalid {exc}")
        return 127
    except OSError as exc:
        _report(f"error oserror {exc}")
        return 126
    supervisor.pgid = child.pid
    if supervisor.is_killing:
        # Told to stop while the command was starting.
        supervisor.kill_group()
    if deadline:
        signal.alarm(deadline)
    _report(f"ok {child.pid}")
    # Wait for the leader without reaping it: while it is a zombie its pid
    # (the group's id) cannot be reused, so the rest of the group can be
    # killed safely before the leader is reaped.
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    signal.alarm(0)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    _, status = os.waitpid(child.pid, 0)
    # Reaped: its id may be reused, so a late stop request must not kill by it.
    supervisor.pgid = 0
    code = _exit_code(status)
    how = how_it_ended(supervisor, status)
    if how:
        write_exit_file(directory, code, child.pid, how)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
