"""One background thread per Docker host that follows the engine's events stream.

:class:`EventFollower` knows nothing of Docker's SDK: it is given a function
that opens the stream (``since`` a time, so events missed while
reconnecting are replayed) and a function to call with each event. When the
stream breaks (daemon restart, network), it reconnects with a growing pause
(0.5, 1, 2 ... 30 s) and calls ``on_gap`` so the executor reconciles what
it may have missed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
JOIN_TIMEOUT_SECONDS = 5.0


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
        self._name = name
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
        """Start the thread once; wait up to ``wait_seconds`` for the stream to open.

        Returns:
            True when the stream is open.
        """
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
        return self._connected.wait(wait_seconds) if wait_seconds > 0 else self.is_connected

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
        since: float | None = None
        while not self._stop.is_set():
            opened_at = time.time()
            try:
                stream = self._open_stream(since)
            except Exception as exc:
                logger.warning("%s: cannot open the events stream: %s", self._name, exc)
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
            if since is not None:
                self._on_gap()
            since = self._consume(stream, opened_at)
            self._connected.clear()
            with self._lock:
                self._stream = None
            self._close_quietly(stream)
            if not self._stop.is_set():
                logger.warning("%s: events stream ended; reconnecting", self._name)
                self._stop.wait(backoff)

    def _consume(self, stream: EventStream, opened_at: float) -> float:
        """Hand on events until the stream ends; return the time to resume from."""
        since = opened_at
        try:
            for event in stream:
                since = max(since, float(event.get("time") or since))
                try:
                    self._on_event(event)
                except Exception:
                    logger.exception("%s: handling event %s failed", self._name, event)
        except Exception as exc:
            if not self._stop.is_set():
                logger.warning("%s: events stream broke: %s", self._name, exc)
        # Whole seconds, and one back: replayed duplicates are harmless, gaps are not.
        return float(int(since) - 1)

    @staticmethod
    def _close_quietly(stream: EventStream) -> None:
        try:
            stream.close()
        except Exception as exc:
            logger.debug("Closing the events stream: %s", exc)
