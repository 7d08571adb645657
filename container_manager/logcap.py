"""Capped, streaming collection of container output, and the progress line protocol.

Both executors read output through :class:`CappedBuffer`: it keeps the first
``max_bytes`` of a stream, counts what it drops, and never holds more than the
cap, so a container that prints gigabytes costs the worker a few megabytes.
The kept text ends with a visible marker saying how much was cut::

    [... output truncated: 209715200 bytes omitted ...]

Output is decoded as UTF-8 with ``errors="replace"`` and otherwise stored
verbatim: HTML and terminal escape sequences are kept as printed, since
escaping is the display's job. What no database column can hold becomes
U+FFFD (the replacement character ``\ufffd``) too: bytes that are not UTF-8,
NUL bytes (PostgreSQL's text refuses them) and lone surrogates
(:func:`storable_text`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

#: A line of this form on stdout or stderr reports progress (0-100) and the
#: current step: ``::progress 42 Loading data`` (docs/api-reference.md, Progress).
PROGRESS_PREFIX = "::progress "
#: A line of this form reports the container's own error code and detail:
#: ``::error OLLAMA_MODEL_NOT_FOUND model llama3 is not pulled`` (docs/api-reference.md,
#: "Error lines"). It counts when the container then fails.
ERROR_PREFIX = "::error "
#: An error code: upper-case letters, digits and underscores, starting with a letter.
ERROR_CODE_PATTERN = re.compile(r"[A-Z][A-Z0-9_]{1,63}\Z")

#: Appended to a stream cut at the cap; ``{omitted}`` is a byte count.
TRUNCATION_MARKER = "\n[... output truncated: {omitted} bytes omitted ...]\n"
#: Appended when reading stopped before the end, so only a lower bound is known.
TRUNCATION_MARKER_AT_LEAST = "\n[... output truncated: more than {omitted} bytes omitted ...]\n"
#: A progress line longer than this is not a progress line; its bytes are skipped.
MAX_PROGRESS_LINE_BYTES = 4096
#: Size of the reads from a file.
READ_CHUNK_BYTES = 64 * 1024


#: Put where output has a character no database column can hold.
REPLACEMENT_CHARACTER = "\ufffd"


def storable_text(text: str) -> str:
    """Return ``text`` with NUL characters and lone surrogates replaced by U+FFFD.

    PostgreSQL's text columns refuse NUL, and no database can encode a
    surrogate that is not part of a pair; every other character is kept.

    Example::

        storable_text("a\\x00b") == "a\\ufffdb"
    """
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT_CHARACTER)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = "".join(
            REPLACEMENT_CHARACTER if "\ud800" <= char <= "\udfff" else char for char in text
        )
    return text


@dataclass(frozen=True)
class CappedText:
    """One stream's kept text, marker included."""

    text: str
    is_truncated: bool
    omitted_bytes: int


def _incomplete_utf8_tail(data: bytes) -> int:
    """Return how many bytes at the end of ``data`` start a UTF-8 sequence that is cut."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 != 0x80:  # not a continuation byte: the sequence starts here
            if byte >= 0xF0:
                needed = 4
            elif byte >= 0xE0:
                needed = 3
            elif byte >= 0xC0:
                needed = 2
            else:
                needed = 1
            return back if needed > back else 0
    return 0


class CappedBuffer:
    """Keeps the first ``max_bytes`` of a byte stream and counts the rest.

    Example::

        buffer = CappedBuffer(1024)
        for chunk in stream:
            buffer.feed(chunk)
        kept = buffer.result()
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self._kept = bytearray()
        self.omitted_bytes = 0

    @property
    def is_full(self) -> bool:
        """True once the cap is reached: later bytes are only counted."""
        return len(self._kept) >= self.max_bytes

    def feed(self, data: bytes) -> None:
        """Add a chunk: keep what fits under the cap, count the rest.

        Args:
            data: The next bytes of the stream.
        """
        room = self.max_bytes - len(self._kept)
        if room > 0:
            self._kept += data[:room]
        self.omitted_bytes += max(0, len(data) - max(room, 0))

    def result(self, is_complete: bool = True) -> CappedText:
        """Decode the kept bytes and append the marker when something was cut.

        Args:
            is_complete: False when reading stopped before the stream's end
                (the count of omitted bytes is then a lower bound).

        Returns:
            The text, a flag, and the number of bytes left out.
        """
        kept = bytes(self._kept)
        omitted = self.omitted_bytes
        truncated = omitted > 0 or not is_complete
        if truncated:
            # Do not end on half a character: count its bytes as omitted.
            cut = _incomplete_utf8_tail(kept)
            if cut:
                kept, omitted = kept[:-cut], omitted + cut
        text = storable_text(kept.decode("utf-8", errors="replace"))
        if not is_complete:
            text += TRUNCATION_MARKER_AT_LEAST.format(omitted=omitted)
        elif omitted:
            text += TRUNCATION_MARKER.format(omitted=omitted)
        return CappedText(text=text, is_truncated=truncated, omitted_bytes=omitted)


def read_capped_file(path: str | os.PathLike[str], max_bytes: int) -> CappedText:
    """Read at most ``max_bytes`` of a file; the size tells how much was left out.

    Args:
        path: The file; a missing file reads as empty.
        max_bytes: The cap.

    Returns:
        The kept text with its marker.
    """
    buffer = CappedBuffer(max_bytes)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            remaining = min(size, max_bytes)
            while remaining > 0:
                chunk = handle.read(min(READ_CHUNK_BYTES, remaining))
                if not chunk:
                    break
                buffer.feed(chunk)
                remaining -= len(chunk)
            buffer.omitted_bytes += max(0, size - max_bytes)
    except FileNotFoundError:
        pass
    return buffer.result()


def parse_progress_line(line: str) -> tuple[int, str] | None:
    """Parse one ``::progress <percent> <step>`` line.

    Args:
        line: One output line, with or without its line ending.

    Returns:
        ``(percent, step)`` with percent in 0-100, or None when the line is
        not a well-formed progress line (those are ignored, never an error).
    """
    line = line.rstrip("\r\n")
    if not line.startswith(PROGRESS_PREFIX):
        return None
    head, _, step = line[len(PROGRESS_PREFIX) :].strip().partition(" ")
    if not head.isdigit() or not 0 <= int(head) <= 100:
        return None
    return int(head), step.strip()


def parse_error_line(text: str) -> tuple[str, str] | None:
    """The last well-formed ``::error CODE detail`` line of ``text``, as ``(code, detail)``.

    Args:
        text: A container's output (stdout or stderr).

    Returns:
        The code and the detail (possibly empty), or None when no line is
        well formed (a code that is not upper-case letters, digits and
        underscores of at most 64 characters is ignored, never an error).
    """
    if ERROR_PREFIX.strip() not in text:
        return None
    for line in reversed(text.splitlines()):
        if not line.startswith(ERROR_PREFIX):
            continue
        code, _, detail = line[len(ERROR_PREFIX) :].strip().partition(" ")
        if ERROR_CODE_PATTERN.match(code):
            return code, detail.strip()[:2000]
    return None


class LineSplitter:
    """Cuts a byte stream into lines and hands each progress line to a callback.

    Lines longer than :data:`MAX_PROGRESS_LINE_BYTES` are skipped without
    being held in memory, so a container printing one endless line costs
    nothing.
    """

    def __init__(self, on_progress: Callable[[int, str], None]) -> None:
        self._on_progress = on_progress
        self._pending = bytearray()
        self._is_skipping = False

    def feed(self, data: bytes) -> None:
        """Add output; calls the callback for each complete progress line.

        Args:
            data: The next bytes of one stream.
        """
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._hold(data[start:])
                return
            self._hold(data[start:newline])
            if not self._is_skipping:
                parsed = parse_progress_line(self._pending.decode("utf-8", errors="replace"))
                if parsed is not None:
                    self._on_progress(*parsed)
            self._pending.clear()
            self._is_skipping = False
            start = newline + 1

    def _hold(self, piece: bytes) -> None:
        if self._is_skipping:
            return
        if len(self._pending) + len(piece) > MAX_PROGRESS_LINE_BYTES:
            self._pending.clear()
            self._is_skipping = True
            return
        self._pending += piece
