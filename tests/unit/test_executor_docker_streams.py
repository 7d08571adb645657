"""The SDK-free parts of the Docker executor: log frames, times, the events follower."""

from __future__ import annotations

import struct
import threading
import time
from datetime import UTC, datetime

import pytest

from container_manager.exceptions import ConfigurationError
from container_manager.executors.base import LABEL_ATTEMPT, LABEL_JOB, ContainerRef
from container_manager.executors.docker_events import CompletionTracker, EventFollower
from container_manager.executors.docker_streams import (
    iter_frames,
    parse_docker_time,
    read_capped,
    report_progress,
)
from container_manager.models import ExecutorHost


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_frames_are_rebuilt_whatever_the_chunk_boundaries():
    body = frame(1, b"out one\n") + frame(2, b"err\n") + frame(1, b"out two\n")
    for size in (1, 3, 7, len(body)):
        assert list(iter_frames(split_every(body, size))) == [
            (1, b"out one\n"),
            (2, b"err\n"),
            (1, b"out two\n"),
        ]


def test_read_capped_keeps_streams_apart_and_caps_each():
    body = frame(1, b"a" * 10) + frame(2, b"bb") + frame(1, b"c" * 10)
    out, err = read_capped(split_every(body, 5), 12, time.monotonic() + 10)
    assert out.text == "a" * 10 + "cc" + "\n[... output truncated: 8 bytes omitted ...]\n"
    assert err.text == "bb"


def test_read_capped_stops_at_the_deadline_with_a_lower_bound():
    body = frame(1, b"a" * 10) + frame(1, b"b" * 10)
    out, err = read_capped([body], 5, time.monotonic() - 1)
    assert out.text == "aaaaa\n[... output truncated: more than 5 bytes omitted ...]\n"
    assert err.is_truncated


def test_progress_is_read_from_both_streams():
    body = frame(1, b"::progress 5 Out\n") + frame(2, b"::progress 6 Err\n")
    seen = []
    report_progress([body], lambda percent, step: seen.append((percent, step)))
    assert seen == [(5, "Out"), (6, "Err")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-23T12:28:28.452414227Z", datetime(2026, 11, 23, 12, 28, 28, 452414, UTC)),
        ("2026-11-23T12:28:28Z", datetime(2026, 11, 23, 12, 28, 28, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        ("yesterday", None),
    ],
)
def test_docker_times_are_parsed(value, expected):
    assert parse_docker_time(value) == expected


class FakeStream:
    def __init__(self, events):
        self.events = events
        self.closed = False

    def __iter__(self):
        return iter(self.events)

    def close(self):
        self.closed = True


def test_follower_reconnects_from_the_last_event_and_reports_the_gap():
    opened, gaps, seen = [], [], []
    done = threading.Event()
    later = int(time.time()) + 100

    def open_stream(since):
        opened.append(since)
        if len(opened) == 1:
            return FakeStream([{"time": later, "n": 1}, {"time": later + 5, "n": 2}])
        done.set()
        return FakeStream([])

    started_at = time.time()
    follower = EventFollower(open_stream, seen.append, lambda: gaps.append(1), "test-events")
    follower.ensure_started()
    assert done.wait(10)
    follower.close()
    assert [event["n"] for event in seen] == [1, 2]
    assert started_at - 2 <= opened[0] <= started_at
    assert opened[1] == later + 4  # one second back: duplicates are harmless, gaps are not
    assert len(gaps) == 2  # each connection is followed by a reconciliation


def test_a_stream_first_opened_after_an_outage_replays_from_the_start():
    """A worker started while the engine was down must still see deaths of that time."""
    opened, gaps = [], []
    done = threading.Event()

    def open_stream(since):
        opened.append(since)
        if len(opened) < 3:
            raise ConnectionError("engine down")
        done.set()
        return FakeStream([])

    started_at = time.time()
    follower = EventFollower(open_stream, lambda event: None, lambda: gaps.append(1), "test")
    follower.ensure_started()
    assert done.wait(10)
    follower.close()
    assert len(opened) >= 3
    assert all(since is not None and since <= started_at for since in opened)
    assert gaps, "the first connection after the outage must reconcile"


def test_a_stream_without_events_does_not_move_its_resume_time_back():
    opened = []
    done = threading.Event()

    def open_stream(since):
        opened.append(since)
        if len(opened) == 4:
            done.set()
        return FakeStream([])

    follower = EventFollower(open_stream, lambda event: None, lambda: None, "test")
    follower.ensure_started()
    assert done.wait(20)
    follower.close()
    assert len(set(opened[:4])) == 1


class CountingEngine:
    """Answers list calls with every container running, and counts them."""

    def __init__(self):
        self.lists: list[float] = []

    def list_states(self):
        self.lists.append(time.monotonic())
        return {f"c{i}": "running" for i in range(1000)}


def test_new_containers_do_not_push_the_full_reconciliation_back():
    """A steady flow of launches must not postpone the periodic look at all containers."""
    engine = CountingEngine()
    tracker = CompletionTracker(
        open_stream=lambda since: FakeStream([]),
        list_states=engine.list_states,
        inspect=lambda cid: {},
        reconcile_interval_seconds=0.6,
        name="test",
    )
    tracker.follower._connected.set()  # as if the stream were open
    tracker.follower._thread = threading.current_thread()  # and already followed
    refs = [ContainerRef(i, 1, f"c{i}") for i in range(1000)]
    tracker.reconcile(refs[:1])  # the full look at the start
    started = time.monotonic()
    full_looks_at = []
    for i in range(1, 12):
        # Each wait brings one container seen for the first time, as launches do.
        before = len(engine.lists)
        tracker.wait(refs[: i + 1], 0.1)
        if len(engine.lists) - before > 1:
            full_looks_at.append(engine.lists[-1] - started)
    assert full_looks_at, "the full reconciliation never ran under a flow of new containers"
    assert full_looks_at[0] < 0.6 + 0.3


def test_a_reconnection_reconciles_at_the_next_wait_not_a_period_later():
    engine = CountingEngine()
    tracker = CompletionTracker(
        open_stream=lambda since: FakeStream([]),
        list_states=engine.list_states,
        inspect=lambda cid: {},
        reconcile_interval_seconds=3600,
        name="test",
    )
    tracker.follower._connected.set()
    tracker.follower._thread = threading.current_thread()
    refs = [ContainerRef(1, 1, "c1")]
    tracker.reconcile(refs)  # the full look at the start
    looked = len(engine.lists)
    tracker.wait(refs, 0.05)
    assert len(engine.lists) == looked, "no look before the period without a gap"
    tracker.on_gap()
    tracker.wait(refs, 0.05)
    assert len(engine.lists) == looked + 1


def test_tracker_posts_a_die_event_with_the_inspected_state():
    ref = ContainerRef(7, 2, "abc")
    inspected = {"State": {"ExitCode": 137, "OOMKilled": True, "FinishedAt": ""}}
    tracker = CompletionTracker(
        open_stream=lambda since: FakeStream([]),
        list_states=dict,
        inspect=lambda cid: inspected,
        reconcile_interval_seconds=30,
        name="test",
    )
    tracker.on_event({"Actor": {"ID": "abc", "Attributes": {LABEL_JOB: "7", LABEL_ATTEMPT: "2"}}})
    status = tracker.board.get("abc")
    assert status is not None
    assert (status.ref, status.exit_code, status.is_oom_killed) == (ref, 137, True)


def test_tracker_reports_a_vanished_container_as_ended():
    ref = ContainerRef(7, 2, "gone")
    tracker = CompletionTracker(
        open_stream=lambda since: FakeStream([]),
        list_states=dict,
        inspect=lambda cid: {},
        reconcile_interval_seconds=30,
        name="test",
    )
    try:
        statuses = tracker.wait([ref], 1)
    finally:
        tracker.close()
    assert [(s.ref, s.exit_code, s.error) for s in statuses] == [
        (ref, None, "container disappeared")
    ]


@pytest.mark.parametrize(
    "config",
    [
        {"api_timeout_seconds": "soon"},
        {"reconcile_interval_seconds": 0},
        {"tls": "yes"},
        {"tls": {"client_cert": "/no/cert.pem", "client_key": "/no/key.pem"}},
    ],
)
def test_invalid_host_configuration_is_refused(config):
    from container_manager.executors.docker import DockerExecutor

    host = ExecutorHost(
        name="bad", connection_string="tcp://127.0.0.1:2376", executor_config=config
    )
    with pytest.raises(ConfigurationError):
        DockerExecutor(host)


def killed_tracker():
    inspected = {"State": {"ExitCode": 137, "OOMKilled": False}, "HostConfig": {"Memory": 1 << 24}}
    return CompletionTracker(
        open_stream=lambda since: FakeStream([]),
        list_states=dict,
        inspect=lambda cid: inspected,
        reconcile_interval_seconds=30,
        name="test",
    )


def container_event(action):
    attributes = {LABEL_JOB: "7", LABEL_ATTEMPT: "1"}
    return {"Action": action, "Actor": {"ID": "abc", "Attributes": attributes}}


@pytest.mark.parametrize("order", [("oom", "die"), ("die", "oom")])
def test_an_oom_notice_marks_the_kill_as_oom_whatever_the_order(order):
    tracker = killed_tracker()
    for action in order:
        tracker.on_event(container_event(action))
    [status] = tracker.board.wait(["abc"], 5)
    assert (status.exit_code, status.is_oom_killed) == (137, True)


def test_a_kill_without_oom_notice_is_reported_after_the_grace_period():
    tracker = killed_tracker()
    tracker.on_event(container_event("die"))
    assert tracker.board.get("abc") is None
    [status] = tracker.board.wait(["abc"], 5)
    assert (status.exit_code, status.is_oom_killed) == (137, False)


def test_a_kill_found_by_a_look_up_waits_for_the_oom_notice_too():
    """The container ended before it was followed: the look-up, not an event, finds it."""
    inspected = {"State": {"ExitCode": 137, "OOMKilled": False}, "HostConfig": {"Memory": 1 << 24}}
    tracker = CompletionTracker(
        open_stream=lambda since: FakeStream([]),
        list_states=lambda: {"abc": "exited"},
        inspect=lambda cid: inspected,
        reconcile_interval_seconds=30,
        name="test",
    )
    ref = ContainerRef(7, 1, "abc")
    tracker.reconcile([ref])
    tracker.reconcile([ref])  # a second look-up in the grace period posts nothing twice
    assert tracker.board.get("abc") is None
    tracker.on_event(container_event("oom"))
    [status] = tracker.board.wait(["abc"], 5)
    assert (status.exit_code, status.is_oom_killed) == (137, True)
