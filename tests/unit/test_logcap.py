"""Capped output collection and the progress line protocol."""

from __future__ import annotations

import pytest

from container_manager.logcap import (
    MAX_PROGRESS_LINE_BYTES,
    CappedBuffer,
    LineSplitter,
    parse_progress_line,
    read_capped_file,
    storable_text,
)


def test_output_under_the_cap_is_kept_whole():
    buffer = CappedBuffer(10)
    buffer.feed(b"abc")
    buffer.feed(b"def")
    result = buffer.result()
    assert result.text == "abcdef"
    assert result.is_truncated is False
    assert result.omitted_bytes == 0


def test_output_over_the_cap_keeps_the_head_and_counts_the_rest():
    buffer = CappedBuffer(4)
    for chunk in (b"ab", b"cdef", b"ghij"):
        buffer.feed(chunk)
    result = buffer.result()
    assert result.text == "abcd\n[... output truncated: 6 bytes omitted ...]\n"
    assert result.is_truncated is True
    assert result.omitted_bytes == 6


def test_a_character_cut_by_the_cap_is_dropped_not_garbled():
    buffer = CappedBuffer(4)
    buffer.feed("abcé€".encode())  # é is 2 bytes, € is 3: the cap falls inside é
    result = buffer.result()
    assert result.text == "abc\n[... output truncated: 5 bytes omitted ...]\n"
    assert "\ufffd" not in result.text


def test_invalid_utf8_is_replaced_not_rejected():
    buffer = CappedBuffer(100)
    buffer.feed(b"ok \xff\xfe end")
    assert buffer.result().text == "ok \ufffd\ufffd end"


def test_nul_bytes_become_replacement_characters():
    buffer = CappedBuffer(100)
    buffer.feed(b"a\x00b\x00")
    assert buffer.result().text == "a\ufffdb\ufffd"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain \u00e9 \U0001f600", "plain \u00e9 \U0001f600"),
        ("a\x00b", "a\ufffdb"),
        ("lone \udcff and \ud800", "lone \ufffd and \ufffd"),
        ("", ""),
    ],
)
def test_storable_text_replaces_only_what_no_column_can_hold(text, expected):
    assert storable_text(text) == expected
    storable_text(text).encode("utf-8")


def test_stopped_reading_says_the_count_is_a_lower_bound():
    buffer = CappedBuffer(2)
    buffer.feed(b"abcd")
    result = buffer.result(is_complete=False)
    assert result.text == "ab\n[... output truncated: more than 2 bytes omitted ...]\n"
    assert result.is_truncated is True


def test_negative_cap_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        CappedBuffer(-1)


def test_reading_a_file_reads_only_up_to_the_cap(tmp_path):
    path = tmp_path / "out.log"
    path.write_bytes(b"x" * 10_000)
    result = read_capped_file(path, 100)
    assert result.text == "x" * 100 + "\n[... output truncated: 9900 bytes omitted ...]\n"


def test_a_missing_file_reads_as_empty(tmp_path):
    result = read_capped_file(tmp_path / "missing.log", 100)
    assert (result.text, result.is_truncated) == ("", False)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("::progress 42 Loading data\n", (42, "Loading data")),
        ("::progress 0", (0, "")),
        ("::progress 100 Done\r\n", (100, "Done")),
        ("::progress  7   spaced  out ", (7, "spaced  out")),
        ("::progress 101 too far", None),
        ("::progress -1 negative", None),
        ("::progress abc words", None),
        ("::progress", None),
        ("progress 5 no prefix", None),
        ("  ::progress 5 indented", None),
    ],
)
def test_progress_lines_are_parsed_and_malformed_ones_ignored(line, expected):
    assert parse_progress_line(line) == expected


def test_line_splitter_reports_progress_lines_across_chunks():
    seen = []
    splitter = LineSplitter(lambda percent, step: seen.append((percent, step)))
    for chunk in (b"noise\n::prog", b"ress 5 Fi", b"rst\n::progress 9 Second\npartial"):
        splitter.feed(chunk)
    assert seen == [(5, "First"), (9, "Second")]


def test_line_splitter_skips_endless_lines_without_holding_them():
    seen = []
    splitter = LineSplitter(lambda percent, step: seen.append((percent, step)))
    splitter.feed(b"::progress 1 " + b"x" * (MAX_PROGRESS_LINE_BYTES * 3))
    assert len(splitter._pending) == 0
    splitter.feed(b"\n::progress 2 After\n")
    assert seen == [(2, "After")]
