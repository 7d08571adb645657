"""The workers of a run: real ``manage.py process_container_jobs --queue-mode`` processes.

The pool keeps one worker per slot. The suite's faults hit a slot's current
process (SIGKILL, SIGTERM) and start its replacement at once; a worker that
exits without having been signalled by the suite "died on its own", and is
replaced too (after a short pause, so that a worker that cannot start does
not spin). Each worker writes its output to a log file of its own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from chaos.invariants import WorkerLife

ROOT = Path(__file__).resolve().parent.parent
#: A worker that died on its own is replaced after this pause.
RESPAWN_PAUSE_SECONDS = 1.0
#: What a worker prints once it is registered and handles its signals.
READY_TEXT = " ready (pid "


@dataclass
class Worker:
    name: str
    slot: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float
    signal_sent: str | None = None
    signalled_at: float | None = None
    exited_at: float | None = None
    final_stop: bool = False

    def life(self, term_timeout: float) -> WorkerLife:
        code = self.proc.returncode
        stop_seconds = None
        if self.signal_sent == "SIGTERM" and self.exited_at is not None and self.signalled_at:
            elapsed = self.exited_at - self.signalled_at
            stop_seconds = elapsed if elapsed <= term_timeout else None
        tail = ""
        if self.signal_sent is None and code is not None and not self.final_stop:
            tail = log_tail(self.log_path)
        return WorkerLife(
            name=self.name,
            pid=self.proc.pid,
            signal_sent=self.signal_sent,
            exit_code=code,
            final_stop=self.final_stop,
            stop_seconds=stop_seconds,
            log_tail=tail,
            was_ready=is_ready(self.log_path),
        )


#: Longest wait for a worker to be ready before its SIGTERM is sent.
READY_WAIT_SECONDS = 30.0


def is_ready(path: Path) -> bool:
    """Whether the worker's log has its "ready" line (it registered and handles signals)."""
    try:
        return READY_TEXT in path.read_text(errors="replace")
    except OSError:
        return False


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip()[:200] for line in text[-lines:])


@dataclass
class WorkerPool:
    slots: int
    max_concurrent: int
    env: dict[str, str]
    log_dir: Path
    term_timeout: float = 60.0
    label: str = "w"
    workers: list[Worker] = field(default_factory=list)
    current: dict[int, Worker] = field(default_factory=dict)
    respawn_at: dict[int, float] = field(default_factory=dict)
    kills: int = 0
    terms: int = 0
    _count: int = 0
    journal: IO[str] | None = None

    def note(self, text: str) -> None:
        if self.journal is not None:
            self.journal.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.journal.flush()

    def start(self, slot: int) -> Worker:
        self._count += 1
        name = f"chaos-{self.label}{slot}-{self._count}"
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-u",
                    "manage.py",
                    "process_container_jobs",
                    "--queue-mode",
                    "--max-concurrent",
                    str(self.max_concurrent),
                    "--worker-id",
                    name,
                ],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name, slot, proc, log_path, time.monotonic())
        self.workers.append(worker)
        self.current[slot] = worker
        self.note(f"started {name} pid {proc.pid} in slot {slot}")
        return worker

    def lost_at(self) -> dict[str, float]:
        """Worker id -> wall time (epoch seconds) of the suite's SIGKILL or SIGTERM of it."""
        offset = time.time() - time.monotonic()
        return {
            w.name: w.signalled_at + offset
            for w in self.workers
            if w.signalled_at is not None and not w.final_stop
        }

    def start_all(self) -> None:
        for slot in range(self.slots):
            self.start(slot)

    def hit(self, slot: int, sig: signal.Signals) -> Worker | None:
        """Send ``sig`` to the slot's worker and start its replacement at once."""
        worker = self.current.get(slot)
        if worker is None or worker.proc.poll() is not None:
            self.poll()
            worker = self.current.get(slot)
            if worker is None:
                return None
        if sig == signal.SIGTERM:
            # A SIGTERM tests the graceful stop, which a worker has only once it
            # is ready (signal handlers installed, registered): on a loaded
            # machine a replacement may still be importing Django when its
            # slot's SIGTERM comes, and would die of it without stopping.
            deadline = time.monotonic() + READY_WAIT_SECONDS
            while (
                not is_ready(worker.log_path)
                and worker.proc.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
        worker.signal_sent = sig.name
        worker.signalled_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.kills += 1
        else:
            self.terms += 1
        self.note(f"{sig.name} {worker.name} pid {worker.proc.pid}")
        self.start(slot)
        return worker

    def poll(self) -> None:
        """Record exits; replace a slot's worker that died on its own; SIGKILL a stuck SIGTERM."""
        now = time.monotonic()
        for worker in self.workers:
            if worker.exited_at is None and worker.proc.poll() is not None:
                worker.exited_at = now
                self.note(f"{worker.name} pid {worker.proc.pid} exited {worker.proc.returncode}")
                if worker.signal_sent is None and not worker.final_stop:
                    self.respawn_at[worker.slot] = now + RESPAWN_PAUSE_SECONDS
            if (
                worker.exited_at is None
                and worker.signal_sent == "SIGTERM"
                and worker.signalled_at is not None
                and now - worker.signalled_at > self.term_timeout
            ):
                self.note(
                    f"{worker.name} still up {self.term_timeout:.0f} s after SIGTERM: SIGKILL"
                )
                worker.proc.kill()
        for slot, at in list(self.respawn_at.items()):
            if now >= at:
                del self.respawn_at[slot]
                current = self.current.get(slot)
                if current is None or current.proc.poll() is not None:
                    self.start(slot)

    def stop_all(self, grace: float) -> None:
        """The end of the run: SIGTERM every live worker, wait, SIGKILL what remains."""
        live = [w for w in self.workers if w.proc.poll() is None]
        for worker in live:
            if worker.signal_sent is None:
                worker.final_stop = True
                worker.signal_sent = "SIGTERM"
                worker.signalled_at = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        while any(w.proc.poll() is None for w in live) and time.monotonic() < end:
            self._record_exits()
            time.sleep(0.05)
        for worker in live:
            if worker.proc.poll() is None:
                self.note(f"{worker.name} still up {grace:.0f} s after SIGTERM at the end: SIGKILL")
                worker.proc.kill()
                worker.proc.wait(timeout=30)
        self._record_exits()

    def _record_exits(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.exited_at is None and worker.proc.poll() is not None:
                worker.exited_at = now
                self.note(f"{worker.name} pid {worker.proc.pid} exited {worker.proc.returncode}")

    def kill_all(self) -> None:
        """Emergency stop: SIGKILL every worker still alive, by its pid."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.proc.wait(timeout=10)

    def lives(self) -> list[WorkerLife]:
        return [w.life(self.term_timeout) for w in self.workers]
