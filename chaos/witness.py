"""The independent witnesses: what really ran, never read from the product's rows.

- :class:`DockerWitness`, a thread subscribed to the run's engine's events
  stream (``create``, ``start``, ``die``, ``destroy`` of containers carrying
  the run's label). When the stream breaks (the engine restarts) it
  reconnects with ``since`` = the last event seen, and first inspects every
  container of the run to fill what the stream could not replay (an engine
  keeps its events in memory only). A container whose end was never seen is
  known to have ended when its engine stopped (no ``live-restore``): the
  driver tells the witness when it stops the engine.
- :class:`ProcessWitness`, for local processes: each command appends a
  ``start`` line (its pid, whether an earlier run of the job still held the
  job's lock, its working directory) and an ``end`` line to one file, in
  order, and holds a lock on the job's lock file for as long as any process
  of it lives. The kernel releases the lock when the last one dies, so the
  lock tells whether an earlier run was alive, killed or not. ``/proc`` shows
  the processes still alive at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from chaos.invariants import Leftover, Run

LABEL_JOB = "container_manager.job_id"
LABEL_ATTEMPT = "container_manager.attempt"
RUN_LABEL = "container_manager.chaos_run"
SENTINEL_LABEL = "container_manager.chaos_sentinel"
_ZERO_TIME = "0001-01-01T00:00:00Z"


def parse_docker_time(text: str | None) -> float | None:
    """Seconds since the epoch of a Docker RFC 3339 time with nanoseconds; None for zero."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not match:
        return None
    base, fraction, zone = match.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float(fraction) if fraction else 0.0)


@dataclass
class Container:
    container_id: str
    job: int
    attempt: int | None
    name: str = ""
    created: float | None = None
    started: float | None = None
    died: float | None = None
    exit_code: int | None = None
    destroyed: float | None = None
    sources: set[str] = field(default_factory=set)


class DockerWitness(threading.Thread):
    """Listens to one engine's container events for one chaos run, across restarts."""

    def __init__(self, url: str, run_id: str) -> None:
        super().__init__(name="chaos-docker-witness", daemon=True)
        self.url = url
        self.run_id = run_id
        self.containers: dict[str, Container] = {}
        self.events_seen = 0
        self.reconnects = 0
        self.connected = threading.Event()
        self.errors: list[str] = []
        self.engine_stops: list[float] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._stream: Any = None
        self._last_nano = time.time_ns()
        self._seen: set[tuple[str, str, int]] = set()
        self.sentinels: set[str] = set()

    # --- the stream -------------------------------------------------------------
    def run(self) -> None:
        import docker

        while not self._halt.is_set():
            client = None
            try:
                client = docker.APIClient(base_url=self.url, timeout=10, version="auto")
                client.ping()
                since = f"{self._last_nano // 1_000_000_000}.{self._last_nano % 1_000_000_000:09d}"
                self.snapshot(client)
                stream = client.events(
                    since=since,
                    filters={"type": "container", "label": f"{RUN_LABEL}={self.run_id}"},
                    decode=True,
                )
                self._stream = stream
                self.connected.set()
                for event in stream:
                    self._record(event)
                    if self._halt.is_set():
                        break
            except Exception as exc:
                if not self._halt.is_set():
                    self.errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
            finally:
                self._stream = None
                if client is not None:
                    client.close()
            if not self._halt.is_set():
                self.connected.clear()
                self.reconnects += 1
                self._halt.wait(0.2)

    def _record(self, event: dict[str, Any]) -> None:
        action = str(event.get("Action") or event.get("status") or "")
        actor = event.get("Actor") or {}
        cid = str(actor.get("ID") or event.get("id") or "")
        attrs = actor.get("Attributes") or {}
        nano = int(event.get("timeNano") or int(event.get("time", 0)) * 1_000_000_000)
        key = (cid, action, nano)
        with self._lock:
            self._last_nano = max(self._last_nano, nano)
            if SENTINEL_LABEL in attrs and action == "destroy":
                self.sentinels.add(str(attrs[SENTINEL_LABEL]))
            if key in self._seen or LABEL_JOB not in attrs:
                return
            self._seen.add(key)
            self.events_seen += 1
            box = self._container(cid, attrs)
            at = nano / 1e9
            if action == "create":
                box.created = box.created or at
            elif action == "start":
                box.started = box.started or at
            elif action == "die":
                box.died = box.died or at
                code = attrs.get("exitCode")
                box.exit_code = (
                    int(code) if code is not None and str(code).lstrip("-").isdigit() else None
                )
            elif action == "destroy":
                box.destroyed = box.destroyed or at
            else:
                return
            box.sources.add("events")

    def _container(self, cid: str, labels: dict[str, Any]) -> Container:
        box = self.containers.get(cid)
        if box is None:
            attempt = labels.get(LABEL_ATTEMPT)
            box = Container(
                container_id=cid,
                job=int(labels[LABEL_JOB]),
                attempt=int(attempt) if attempt is not None and str(attempt).isdigit() else None,
                name=str(labels.get("name", "")),
            )
            self.containers[cid] = box
        return box

    def snapshot(self, client: Any) -> list[dict[str, Any]]:
        """Inspect every container of the run and merge what it shows; return the list rows."""
        rows = client.containers(all=True, filters={"label": f"{RUN_LABEL}={self.run_id}"})
        for row in rows:
            labels = row.get("Labels") or {}
            if LABEL_JOB not in labels:
                continue
            try:
                info = client.inspect_container(row["Id"])
            except Exception:
                continue
            state = info.get("State") or {}
            with self._lock:
                box = self._container(row["Id"], labels)
                box.name = box.name or str(info.get("Name", "")).lstrip("/")
                box.created = box.created or parse_docker_time(info.get("Created"))
                box.started = box.started or parse_docker_time(state.get("StartedAt"))
                if not state.get("Running") and box.died is None:
                    finished = parse_docker_time(state.get("FinishedAt"))
                    if finished is not None:
                        box.died = finished
                        box.exit_code = state.get("ExitCode")
                box.sources.add("inspect")
        return rows

    def sync(self, client: Any, image: str, timeout: float = 30.0) -> None:
        """Return once the stream has delivered every event before now.

        Creates and removes a container that belongs to no job; events come in
        order, so once its ``destroy`` is seen, everything before it was too.
        """
        token = uuid.uuid4().hex
        box = client.create_container(
            image, ["true"], labels={RUN_LABEL: self.run_id, SENTINEL_LABEL: token}
        )
        client.remove_container(box["Id"], force=True)
        end = time.monotonic() + timeout
        while token not in self.sentinels:
            if time.monotonic() >= end:
                raise RuntimeError(f"the events witness did not catch up within {timeout:.0f} s")
            time.sleep(0.05)

    def engine_stopped(self, at: float) -> None:
        """The suite stopped the engine at ``at`` (epoch seconds): nothing of it runs past that."""
        with self._lock:
            self.engine_stops.append(at)

    def stop(self) -> None:
        self._halt.set()
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        self.join(timeout=15)

    # --- the result ---------------------------------------------------------------
    def runs(self) -> list[Run]:
        """One run per container; an end never seen is the next engine stop after its start."""
        out = []
        with self._lock:
            for box in self.containers.values():
                ended, code = box.died, box.exit_code
                if box.started is not None and ended is None:
                    stops = [s for s in self.engine_stops if s >= box.started]
                    if stops:
                        ended = min(stops)
                    elif box.destroyed is not None:
                        ended = box.destroyed
                out.append(
                    Run(
                        job=box.job,
                        attempt=box.attempt,
                        run_id=box.container_id,
                        started=box.started,
                        ended=ended,
                        exit_code=code,
                    )
                )
        return out

    def leftovers(self, rows: list[dict[str, Any]]) -> list[Leftover]:
        return [
            Leftover(int(r["Labels"][LABEL_JOB]), f"container {r['Id'][:12]} {r.get('State', '')}")
            for r in rows
            if LABEL_JOB in (r.get("Labels") or {})
        ]


# --- local processes ---------------------------------------------------------------

WITNESS_FILE = "witness.log"
LOCK_DIR = "locks"
_ATTEMPT_IN_DIR = re.compile(r"-job-(\d+)-a(\d+)")


def process_command(marker: str, sleep: float) -> str:
    """The shell command of a local-process job: witness lines, the job's lock, the marker.

    The lock is taken exclusive without waiting only to tell whether another
    process of the job holds it, then shared for the process's whole life
    (``sleep`` inherits descriptor 9, so the lock lasts as long as the tree).
    """
    witness = '"$CHAOS_DIR/' + WITNESS_FILE + '"'
    return (
        f'exec 9>>"$CHAOS_DIR/{LOCK_DIR}/$CHAOS_KEY"; '
        "if flock -n -x 9; then o=0; else o=1; fi; flock -s 9; "
        f'echo "start $CHAOS_KEY $$ $o $(date +%s.%N) $PWD" >>{witness}; '
        f"echo {shlex.quote(marker)}; sleep {sleep:.1f}; "
        f'echo "end $CHAOS_KEY $$ $(date +%s.%N)" >>{witness}'
    )


def docker_command(marker: str, sleep: float) -> str:
    """The shell command of a Docker job: the marker, then a short sleep."""
    return f"echo {shlex.quote(marker)}; sleep {sleep:.1f}"


@dataclass
class ProcessWitness:
    """Reads the witness file and ``/proc`` for one chaos run of the local executor."""

    directory: Path
    run_id: str
    #: The driver's own map of the jobs' keys to their pks.
    pk_of_key: dict[str, int] = field(default_factory=dict)

    def prepare(self) -> None:
        (self.directory / LOCK_DIR).mkdir(parents=True, exist_ok=True)
        (self.directory / WITNESS_FILE).touch()

    def runs(self) -> list[Run]:
        """One run per ``start`` line; times are the lines' order in the file."""
        starts: dict[tuple[str, str], dict[str, Any]] = {}
        order: list[tuple[str, str]] = []
        text = (self.directory / WITNESS_FILE).read_text(errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            parts = line.split()
            if len(parts) >= 5 and parts[0] == "start":
                key, pid, flag = parts[1], parts[2], parts[3]
                found = _ATTEMPT_IN_DIR.search(parts[5] if len(parts) > 5 else "")
                starts[(key, pid)] = {
                    "line": number,
                    "overlap": flag == "1",
                    "attempt": int(found.group(2)) if found else None,
                    "end": None,
                }
                order.append((key, pid))
            elif len(parts) >= 3 and parts[0] == "end" and (parts[1], parts[2]) in starts:
                starts[(parts[1], parts[2])]["end"] = number
        out = []
        for key, pid in order:
            item = starts[(key, pid)]
            pk = self.pk_of_key.get(key)
            if pk is None:
                continue
            ended = item["end"]
            out.append(
                Run(
                    job=pk,
                    attempt=item["attempt"],
                    run_id=f"pid {pid}",
                    started=float(item["line"]),
                    ended=None if ended is None else float(ended),
                    exit_code=0 if ended is not None else None,
                    overlap_witnessed=item["overlap"],
                )
            )
        return out

    def live_processes(self) -> dict[int, str]:
        """pid -> CHAOS_KEY of every live process carrying this run's environment."""
        found: dict[int, str] = {}
        needle = f"CHAOS_RUN={self.run_id}".encode()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as fh:
                    env = fh.read().split(b"\0")
            except OSError:
                continue
            if needle not in env:
                continue
            from chaos.services import alive

            if not alive(int(entry)):
                continue
            key = next((e[10:].decode() for e in env if e.startswith(b"CHAOS_KEY=")), "?")
            found[int(entry)] = key
        return found

    def leftovers(self, output_dir: Path) -> list[Leftover]:
        """Live processes and per-attempt output directories of the run's jobs."""
        items = [
            Leftover(self.pk_of_key[key], f"process {pid} still alive")
            for pid, key in sorted(self.live_processes().items())
            if key in self.pk_of_key
        ]
        if output_dir.is_dir():
            for entry in sorted(output_dir.iterdir()):
                found = _ATTEMPT_IN_DIR.search(entry.name)
                if found and entry.is_dir():
                    items.append(Leftover(int(found.group(1)), f"output directory {entry.name}"))
        return items
