"""The chaos suite's end-latency figures, on made-up data: each group gets what it should."""

from __future__ import annotations

from chaos.invariants import Run
from chaos.latency import Outage, end_latencies, percentile


def run(job: int, ended: float, attempt: int = 1, code: int = 0) -> Run:
    return Run(
        job=job, attempt=attempt, run_id=f"c{job}", started=ended - 1, ended=ended, exit_code=code
    )


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]

    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.99) is None


def test_ends_are_grouped_as_followed_adopted_or_after_an_outage():
    runs = [run(1, 100.0), run(2, 120.0), run(3, 100.0), run(4, 100.0, code=1)]
    statuses = {1: ("completed", 1), 2: ("completed", 1), 3: ("completed", 1), 4: ("failed", 1)}
    first = {1: 100.5, 2: 138.0, 3: 112.0, 4: 101.5}
    holders = {(1, 1): {"w1"}, (2, 1): {"w1", "w2"}, (3, 1): {"w1"}, (4, 1): {"w2"}}
    # The engine was down from 104 to 110: job 3's end was recorded 2 s after it came back.
    outages = [Outage("docker-restart", 104.0, 110.0)]

    figures = end_latencies(runs, statuses, first, holders, outages)

    assert figures["followed"] == {"count": 2, "p50": 0.5, "p99": 1.5, "max": 1.5}
    assert figures["adopted"] == {"count": 1, "p50": 18.0, "p99": 18.0, "max": 18.0}
    assert figures["after an outage"] == {"count": 1, "p50": 2.0, "p99": 2.0, "max": 2.0}


def test_cancelled_jobs_and_ends_never_seen_are_not_counted():
    runs = [run(1, 100.0), Run(job=2, attempt=1, run_id="c2", started=99.0, ended=None)]
    statuses = {1: ("cancelled", 1), 2: ("completed", 1), 3: ("completed", 1)}
    first = {1: 101.0, 2: 101.0, 3: 101.0}

    figures = end_latencies(runs, statuses, first, {}, [])

    assert figures["followed"]["count"] == 0
    assert figures["followed"]["p99"] is None


def test_only_the_final_attempts_death_counts():
    runs = [run(1, 50.0, attempt=1, code=137), run(1, 100.0, attempt=2)]

    figures = end_latencies(runs, {1: ("completed", 2)}, {1: 100.25}, {(1, 2): {"w"}}, [])

    assert figures["followed"]["max"] == 0.25


def test_an_end_whose_only_seen_holder_was_killed_counts_as_adopted():
    # The adopting worker recorded the end before the watcher saw it hold the job.
    figures = end_latencies(
        [run(1, 100.0)], {1: ("completed", 1)}, {1: 120.0}, {(1, 1): {"w1"}}, [], {"w1": 101.0}
    )

    assert figures["adopted"]["count"] == 1
    assert figures["followed"]["count"] == 0
