"""Completion of Docker containers: one events stream per host, and reconciliation.

:class:`CompletionTracker` posts each ended container on a
:class:`~container_manager.executors.completion.CompletionBoard`, from the
``die`` events of one background stream per host, and looks at the engine
itself (one list call) for a container seen for the first time and then every
``reconcile_interval_seconds``, so nothing is lost when an event is missed.

:class:`EventFollower` knows nothing of Docker's SDK: it is given a function
that opens the stream (``since`` a time, so events missed while
reconnecting are replayed) and a function to call with each event. The first
stream opens ``since`` the follower started, even when the engine was down
then, so no death between the start and the first connection goes unseen.
When the stream breaks (daemon restart, network), it reconnects with a
growing pause (0.5, 1, 2 ... 30 s) ``since`` the last event seen, and every
connection calls ``on_gap`` so the executor reconciles what it may have
missed (an engine restart forgets its events).

The full reconciliation runs on a fixed period, counted from the last full
one: looking up containers seen for the first time does not push it back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Protocol

from container_manager.executors.base import ContainerRef, ExitStatus
from container_manager.executors.completion import CompletionBoard
from container_manager.executors.docker_streams import ref_from_labels, status_from_inspect

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
JOIN_TIMEOUT_SECONDS = 5.0
#: Reconcile this often while the events stream is down.
DISCONNECTED_RECONCILE_SECONDS = 2.0
#: How long a first wait gives the stream to open before looking anyway.
CONNECT_WAIT_SECONDS = 2.0
#: How long the end of a memory-limited container killed by SIGKILL waits for
#: the engine's "oom" event before it is reported as not OOM-killed.
OOM_GRACE_SECONDS = 1.0
_ENDED_STATES = ("exited", "dead")


class EventStream(Protocol):
    """An iterator of decoded events that another thread can close."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class EventFollower:
    """Reads an events stream in a daemon thread and hands each event on."""

    def __init__(
        self,
        open_stream: Callable[[float | None], EventStream],
        on_event: Callable[[dict[str, Any]], None],
        on_gap: Callable[[], None],
        name: str,
    ) -> None:
        self._open_stream = open_stream
        self._on_event = on_event
        self._on_gap = on_gap
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stream: EventStream | None = None
        self._stop = threading.Event()
        self._connected = threading.Event()

    @property
    def is_connected(self) -> bool:
        """True while the stream is open."""
        return self._connected.is_set()

    def ensure_started(self, wait_seconds: float = 0.0) -> bool:
        """Start the thread once; when starting it, wait up to ``wait_seconds`` for the stream.

        Returns:
            True when the stream is open.
        """
        with self._lock:
            is_starting = self._thread is None and not self._stop.is_set()
            if is_starting:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        # Only the first caller waits: later ones must not pay for a stream that is down.
        if is_starting and wait_seconds > 0:
            return self._connected.wait(wait_seconds)
        return self.is_connected

    def close(self) -> None:
        """Stop the thread: close the stream it is blocked on and wait for it."""
        self._stop.set()
        with self._lock:
            stream, thread = self._stream, self._thread
        if stream is not None:
            self._close_quietly(stream)
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT_SECONDS)

    def _run(self) -> None:
        backoff = FIRST_BACKOFF_SECONDS
        # Whole seconds, and one back: replayed duplicates are harmless, gaps are not.
        since = float(int(time.time()) - 1)
        while not self._stop.is_set():
            try:
                stream = self._open_stream(since)
            except Exception as exc:
                logger.warning("%s: cannot open the events stream: %s", self.name, exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            with self._lock:
                self._stream = stream
            if self._stop.is_set():
                self._close_quietly(stream)
                return
            self._connected.set()
            backoff = FIRST_BACKOFF_SECONDS
            self._on_gap()
            since = self._consume(stream, since)
            self._connected.clear()
            with self._lock:
                self._stream = None
            self._close_quietly(stream)
            if not self._stop.is_set():
                logger.warning("%s: events stream ended; reconnecting", self.name)
                self._stop.wait(backoff)

    def _consume(self, stream: EventStream, since: float) -> float:
        """Hand on events until the stream ends; return the time to resume from.

        Without any event, that is the time it was opened from: the stream
        covered nothing more that can be proven.
        """
        last_event_at = 0.0
        try:
            for event in stream:
                last_event_at = max(last_event_at, float(event.get("time") or 0))
                try:
                    self._on_event(event)
                except Exception:
                    logger.exception("%s: handling event %s failed", self.name, event)
        except Exception as exc:
            if not self._stop.is_set():
                logger.warning("%s: events stream broke: %s", self.name, exc)
        # Whole seconds, and one back: replayed duplicates are harmless, gaps are not.
        return max(since, float(int(last_event_at) - 1))

    @staticmethod
    def _close_quietly(stream: EventStream) -> None:
        try:
            stream.close()
        except Exception as exc:
            logger.debug("Closing the events stream: %s", exc)


class CompletionTracker:
    """Tells which containers of one engine ended, without one poll per container.

    Args:
        open_stream: Opens the engine's ``die`` events of our containers, since a time.
        list_states: Returns ``{container id: state}`` of our containers (one API call).
        inspect: Returns a container's inspect data.
        reconcile_interval_seconds: How often the engine is looked at anyway.
        name: The thread's name.
    """

    def __init__(
        self,
        open_stream: Callable[[float | None], EventStream],
        list_states: Callable[[], dict[str, str]],
        inspect: Callable[[str], dict[str, Any]],
        reconcile_interval_seconds: float,
        name: str,
    ) -> None:
        self.board = CompletionBoard()
        self._list_states = list_states
        self._inspect = inspect
        self._interval = reconcile_interval_seconds
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._oom_killed: dict[str, float] = {}
        self._deferred: dict[str, ExitStatus] = {}
        self._last_reconcile = 0.0
        self._is_gap = False
        self.follower = EventFollower(open_stream, self.on_event, self.on_gap, name)

    def on_gap(self) -> None:
        """The stream (re)connected: what ended meanwhile is looked up at the next wait."""
        self._is_gap = True
        self.board.wake()

    def on_event(self, event: dict[str, Any]) -> None:
        """Handle an ``oom`` or ``die`` event of one of our containers."""
        actor = event.get("Actor") or {}
        attributes = actor.get("Attributes") or {}
        ref = ref_from_labels(actor.get("ID") or event.get("id") or "", attributes)
        if ref is None:
            return
        if (event.get("Action") or event.get("status")) == "oom":
            self._on_oom(ref.container_id)
            return
        try:
            attrs = self._inspect(ref.container_id)
        except Exception as exc:  # removed already: the event's exit code is all there is
            logger.debug("Inspect after die of %s failed: %s", ref.container_id, exc)
            code = str(attributes.get("exitCode") or "")
            self.post(ExitStatus(ref, int(code) if code.isdigit() else None))
            return
        self._ended(ref, attrs)

    def _ended(self, ref: ContainerRef, attrs: dict[str, Any]) -> None:
        """Post the end of a container from its inspection, waiting a moment for an OOM notice.

        The engine may handle the exit before the OOM notice and then never
        set ``OOMKilled``; its "oom" event still comes. A container with a
        memory limit that was killed (137) is posted after ``OOM_GRACE_SECONDS``
        unless that notice comes first, whether the end was seen through an
        event or through a look-up.
        """
        status = self._with_oom(status_from_inspect(ref, attrs))
        memory_limit = (attrs.get("HostConfig") or {}).get("Memory") or 0
        if status.exit_code == 137 and not status.is_oom_killed and memory_limit > 0:
            with self._lock:
                if ref.container_id in self._deferred:
                    return
                self._deferred[ref.container_id] = status
            timer = threading.Timer(OOM_GRACE_SECONDS, self._flush, (ref.container_id,))
            timer.daemon = True
            timer.start()
            return
        self.post(status)

    def _on_oom(self, container_id: str) -> None:
        with self._lock:
            self._oom_killed[container_id] = time.monotonic()
            deferred = self._deferred.pop(container_id, None)
            # Keep the record small: OOM notices older than an hour are of no use.
            stale = [cid for cid, at in self._oom_killed.items() if at < time.monotonic() - 3600]
            for cid in stale:
                del self._oom_killed[cid]
        if deferred is not None:
            self.post(replace(deferred, is_oom_killed=True))

    def _flush(self, container_id: str) -> None:
        with self._lock:
            deferred = self._deferred.pop(container_id, None)
        if deferred is not None:
            self.post(self._with_oom(deferred))

    def _with_oom(self, status: ExitStatus) -> ExitStatus:
        with self._lock:
            is_oom = status.ref.container_id in self._oom_killed
        return (
            replace(status, is_oom_killed=True) if is_oom and not status.is_oom_killed else status
        )

    def post(self, status: ExitStatus) -> None:
        """Record that a container ended."""
        with self._lock:
            self._seen.discard(status.ref.container_id)
        self.board.post(status)

    def forget(self, container_id: str) -> None:
        """Drop what is known of a removed container."""
        with self._lock:
            self._seen.discard(container_id)
            self._oom_killed.pop(container_id, None)
        self.board.forget(container_id)

    def reconcile(self, refs: list[ContainerRef], is_full: bool = True) -> None:
        """Post the containers among ``refs`` that ended or vanished; log, never raise.

        Args:
            refs: The containers to look up.
            is_full: True when ``refs`` are all the awaited ones: the period
                of the next full reconciliation starts now.
        """
        if is_full:
            self._last_reconcile = time.monotonic()
            self._is_gap = False
        try:
            states = self._list_states()
            for ref in refs:
                state = states.get(ref.container_id)
                if state is None:
                    self.post(ExitStatus(ref, None, error="container disappeared"))
                elif state in _ENDED_STATES:
                    self._ended(ref, self._inspect(ref.container_id))
                else:
                    with self._lock:
                        self._seen.add(ref.container_id)
        except Exception as exc:
            logger.warning("%s: reconciliation failed: %s", self.follower.name, exc)
            if is_full:
                # Tried again soon, not a whole period later.
                self._last_reconcile -= max(self._interval - DISCONNECTED_RECONCILE_SECONDS, 0)

    def wait(self, refs: list[ContainerRef], timeout_seconds: float) -> list[ExitStatus]:
        """Wait until one of ``refs`` ended, or the timeout passes.

        A ref seen for the first time is looked up at once (it may have ended
        before the stream followed it); all are looked up again every
        ``reconcile_interval_seconds``, and every 2 s while the stream is down.
        """
        ids = [ref.container_id for ref in refs]
        deadline = time.monotonic() + max(0.0, timeout_seconds)
        self.follower.ensure_started(wait_seconds=CONNECT_WAIT_SECONDS)
        with self._lock:
            new = [ref for ref in refs if ref.container_id not in self._seen]
        new = [ref for ref in new if self.board.get(ref.container_id) is None]
        if new:
            self.reconcile(new, is_full=False)
        while True:
            found = self.board.wait(ids, 0)
            now = time.monotonic()
            if found or now >= deadline:
                return found
            interval = (
                self._interval if self.follower.is_connected else DISCONNECTED_RECONCILE_SECONDS
            )
            if self._is_gap or now - self._last_reconcile >= interval:
                self.reconcile(refs)
                continue
            self.board.wait(ids, min(deadline, self._last_reconcile + interval) - now)

    def close(self) -> None:
        """Stop following the events stream."""
        self.follower.close()
