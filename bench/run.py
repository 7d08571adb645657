"""Run the benchmark suite of issue 7 and print one table of medians (``make bench``).

Every figure is measured ``--rounds`` times; the rounds are interleaved (each
round measures everything once, in a rotated order), so a slow minute of the
machine spreads over all figures instead of hitting one. The table gives the
median and the min-max of the rounds, and the ratios the targets ask for; the
whole result, plans included, is written to ``bench/results/`` as JSON.

    .venv/bin/python -m bench.run            # the full suite (about 15 minutes)
    .venv/bin/python -m bench.run --quick    # a smoke run (about 2 minutes)
    .venv/bin/python -m bench.run --only drain,latency

It uses its own database, ``cm_bench`` (dropped and created at the start,
dropped at the end), on the server of ``BENCH_SERVER_URL``
(``postgresql://postgres@127.0.0.1:5432``), the Docker engine on
``/var/run/docker.sock`` and the test image; ``scripts/bench.sh`` makes sure
all three exist. A figure that cannot be measured (a peer that fails to
install or run, no Docker) is reported as "not measured: reason".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

GROUPS = (
    "enqueue",
    "drain",
    "peers",
    "latency",
    "ready",
    "stats",
    "containers",
    "memory",
    "follow",
)
#: Run by ``--only follow`` (``make bench-follow``), not by default: starting
#: 500 containers takes minutes here, which would take ``make bench`` past 15.
NOT_BY_DEFAULT = ("follow",)
PEERS = ("pgqueuer", "procrastinate", "django-tasks-db")


@dataclass
class Sizes:
    """How big each measurement is."""

    rounds: int
    enqueue_jobs: int
    drain_jobs: int
    worker_drain_jobs: int
    notify_samples: int
    poll_samples: int
    poll_interval: int
    ready_sizes: tuple[int, ...]
    ready_repeats: int
    container_jobs: int
    container_concurrency: tuple[int, ...]
    big_output_mb: int
    stats_jobs: int = 1_000_000
    stats_repeats: int = 7
    follow_jobs: int = 500
    follow_end_rate: float = 20.0
    follow_window: float = 10.0


FULL = Sizes(3, 10_000, 10_000, 2_000, 40, 6, 1, (1_000, 100_000, 1_000_000), 15, 200, (8, 32), 200)
QUICK = Sizes(
    1,
    1_000,
    1_000,
    1_000,
    10,
    3,
    1,
    (1_000, 10_000, 100_000),
    5,
    20,
    (8,),
    20,
    100_000,
    3,
    50,
    20,
    5,
)
#: Figures that take a minute or more per sample: measured in the first and
#: last rounds only (two samples in a run of three rounds).
HEAVY = {"rss_big_output", "peer_django-tasks-db"}
HEAVY_PREFIXES = ("containers_worker", "containers_sdk")


class Results:
    """Samples per figure, and why a figure could not be measured."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, str] = {}
        self.extra: dict[str, Any] = {}

    def measure(self, names: list[str], fn: Callable[[], Any]) -> None:
        """Run ``fn``; a dict result fills ``names`` in order of its values, a float the first."""
        if all(name in self.errors for name in names):
            return  # failed before: do not waste the time again
        started = time.monotonic()
        try:
            value = fn()
        except Exception as exc:
            lines = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {lines[-1] if lines else ''}"
            for name in names:
                self.errors.setdefault(name, reason[:160])
            print(f"  {names[0]}: not measured: {reason[:300]}", flush=True)
            traceback.print_exc(limit=3)
            return
        values = list(value.values()) if isinstance(value, dict) else [value]
        for name, val in zip(names, values, strict=False):
            self.samples.setdefault(name, []).append(float(val))
        shown = ", ".join(f"{n}={v:,.1f}" for n, v in zip(names, values, strict=False))
        print(f"  {shown}   ({time.monotonic() - started:.1f} s)", flush=True)

    def median(self, name: str) -> float | None:
        values = self.samples.get(name)
        return statistics.median(values) if values else None


def round_tasks(
    sizes: Sizes, groups: set[str], results: Results
) -> list[tuple[list[str], Callable[[], Any]]]:
    """The measurements of one round (each a list of figure names and a function)."""
    from bench import figures as f

    n, d, w = sizes.enqueue_jobs, sizes.drain_jobs, sizes.worker_drain_jobs
    tasks: list[tuple[list[str], Callable[[], Any]]] = []
    if "enqueue" in groups:
        tasks += [
            (["enqueue_one"], lambda: f.enqueue_one_by_one(n)),
            (["enqueue_bulk"], lambda: f.enqueue_bulk(n)),
            (["insert_one"], lambda: f.insert_floor(n, bulk=False)),
            (["insert_bulk"], lambda: f.insert_floor(n, bulk=True)),
        ]
    if "drain" in groups:
        tasks += [
            (["drain_w1", "rss_drain_w1", "xacts_w1"], lambda: f.drain_worker(w, 1)),
            (["drain_w4", "rss_drain_w4", "xacts_w4"], lambda: f.drain_worker(w, 4)),
            (
                ["drain_w4h", "rss_drain_w4h", "xacts_w4h"],
                lambda: f.drain_worker(w, 4, own_hosts=True),
            ),
            (["floor_p1"], lambda: f.drain_floor(d, 1)),
            (["floor_p4"], lambda: f.drain_floor(d, 4)),
        ]
    if "peers" in groups:
        for peer in PEERS:
            tasks.append(([f"peer_{peer}", f"rss_{peer}"], lambda peer=peer: f.drain_peer(peer, d)))
    if "latency" in groups:
        tasks += [
            (
                ["notify_p50", "notify_p95"],
                lambda: f.pickup_latency(sizes.notify_samples, True, sizes.poll_interval),
            ),
            (
                ["poll_p50", "poll_p95"],
                lambda: f.pickup_latency(sizes.poll_samples, False, sizes.poll_interval),
            ),
        ]
    if "containers" in groups:
        c = sizes.container_jobs
        for k in sizes.container_concurrency:
            tasks += [
                ([f"containers_worker_{k}"], lambda k=k: f.containers_worker(c, k)),
                ([f"containers_sdk_{k}"], lambda k=k: f.containers_sdk(c, k)),
            ]
    if "memory" in groups:
        tasks.append(
            (
                ["rss_big_output", "rss_idle", "big_output_stored_kb"],
                lambda: f.memory_big_output(sizes.big_output_mb),
            )
        )
    return tasks


def run_ready(sizes: Sizes, results: Results) -> None:
    """The ready-query figures: one table growing through the sizes, timed at each."""
    from bench import figures as f
    from bench.common import clear_jobs

    clear_jobs()
    plans = {}
    for size in sizes.ready_sizes:
        print(f"ready query at {size:,} queued jobs", flush=True)
        try:
            found = f.ready_query(size, sizes.ready_repeats)
        except Exception as exc:
            results.errors[f"ready_{size}"] = f"{type(exc).__name__}: {exc}"[:160]
            traceback.print_exc(limit=3)
            return
        results.samples[f"ready_select_{size}"] = [found["select_ms"]]
        results.samples[f"ready_claim_{size}"] = [found["claim_ms"]]
        results.extra.setdefault("index_scan", {})[str(size)] = found["index_scan"]
        plans[str(size)] = found["plan"]
        print(
            f"  select {found['select_ms']:.3f} ms, claim {found['claim_ms']:.2f} ms, "
            f"index scan: {found['index_scan']}",
            flush=True,
        )
    results.extra["plans"] = plans
    clear_jobs()


def run_stats(sizes: Sizes, results: Results) -> None:
    """The statistics figures: a month's history of ``stats_jobs`` jobs, timed once per run."""
    from bench import figures as f
    from bench.common import clear_jobs

    clear_jobs()
    print(f"statistics at {sizes.stats_jobs:,} jobs", flush=True)
    try:
        results.samples["stats_fill_s"] = [f.fill_history(sizes.stats_jobs)]
        found = f.statistics_figures(sizes.stats_repeats)
    except Exception as exc:
        results.errors["stats"] = f"{type(exc).__name__}: {exc}"[:160]
        traceback.print_exc(limit=3)
        return
    finally:
        clear_jobs()
    for name, value in found.items():
        results.samples[name] = [value]
    print("  " + ", ".join(f"{k} {v:.1f}" for k, v in found.items()), flush=True)


def run_follow(sizes: Sizes, results: Results) -> None:
    """One worker following many sleeping containers: measured once per run."""
    from bench import figures as f

    print(f"one worker following {sizes.follow_jobs} containers", flush=True)
    try:
        found = f.follow_many(sizes.follow_jobs, sizes.follow_end_rate, sizes.follow_window)
    except Exception as exc:
        results.errors["follow"] = f"{type(exc).__name__}: {exc}"[:160]
        traceback.print_exc(limit=3)
        return
    finally:
        common.remove_leftover_containers()
    for name, value in found.items():
        results.samples[name] = [value]
    print("  " + ", ".join(f"{k} {v:.2f}" for k, v in found.items()), flush=True)


# Table --------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def build_table(sizes: Sizes, results: Results) -> tuple[list[list[str]], dict[str, Any]]:
    """Rows of the table (figure, median, min-max, ratio, target, verdict) and the verdicts."""
    rows: list[list[str]] = []
    verdicts: dict[str, Any] = {}

    def cell(name: str, digits: int = 0) -> tuple[str, str]:
        if name in results.errors and name not in results.samples:
            return f"not measured: {results.errors[name]}", ""
        values = results.samples.get(name)
        if not values:
            return "-", ""
        lo, hi = min(values), max(values)
        return fmt(statistics.median(values), digits), f"{fmt(lo, digits)}-{fmt(hi, digits)}"

    def ratio(a: str, b: str) -> float | None:
        x, y = results.median(a), results.median(b)
        return x / y if x is not None and y else None

    def add(
        label: str,
        name: str,
        unit: str,
        digits: int = 0,
        ratio_text: str = "",
        target: str = "",
        verdict: bool | None = None,
    ) -> None:
        median, spread = cell(name, digits)
        mark = "" if verdict is None else ("met" if verdict else "MISSED")
        rows.append([label, unit, median, spread, ratio_text, target, mark])

    def rtext(r: float | None, of: str) -> str:
        return f"{r:.2f}x {of}" if r is not None else ""

    n = f"{sizes.enqueue_jobs:,}"
    r = ratio("enqueue_one", "insert_one")
    add(f"Enqueue {n}, one at a time", "enqueue_one", "jobs/s", 0, rtext(r, "plain INSERT"))
    add(f"Plain INSERT {n}, one per transaction", "insert_one", "jobs/s")
    r = ratio("enqueue_bulk", "insert_bulk")
    verdicts["enqueue_bulk"] = {"ratio": r, "met": None if r is None else r >= 0.8}
    add(
        f"Enqueue {n} in bulk (queue_jobs)",
        "enqueue_bulk",
        "jobs/s",
        0,
        rtext(r, "plain INSERT"),
        ">= 0.8x plain INSERT",
        None if r is None else r >= 0.8,
    )
    add(f"Plain INSERT {n}, one transaction", "insert_bulk", "jobs/s")

    d = f"{sizes.worker_drain_jobs:,}"
    peer_rates = {p: results.median(f"peer_{p}") for p in PEERS}
    measured = {p: v for p, v in peer_rates.items() if v is not None}
    best_peer = max(measured, key=lambda p: measured[p]) if measured else None
    for workers, floor in (("w1", "floor_p1"), ("w4", "floor_p4")):
        rate = results.median(f"drain_{workers}")
        to_floor = ratio(f"drain_{workers}", floor)
        to_peer = rate / measured[best_peer] if rate and best_peer else None
        parts = [rtext(to_floor, "floor")]
        if to_peer is not None:
            parts.append(rtext(to_peer, f"best peer ({best_peer})"))
        ok = None
        if to_floor is not None and to_peer is not None:
            ok = to_floor >= 0.5 and to_peer >= 2.0
        verdicts[f"drain_{workers}"] = {"to_floor": to_floor, "to_best_peer": to_peer, "met": ok}
        procs = "1 worker" if workers == "w1" else "4 worker processes"
        add(
            f"Drain {d} no-op jobs, {procs}",
            f"drain_{workers}",
            "jobs/s",
            0,
            "; ".join(p for p in parts if p),
            ">= 0.5x floor, >= 2x best peer",
            ok,
        )
    scale = ratio("drain_w4", "drain_w1")
    verdicts["drain_scaling"] = {"ratio": scale, "met": None if scale is None else scale >= 2.5}
    for workers, procs in (("w1", "1 worker"), ("w4", "4 worker processes")):
        per_job = results.median(f"xacts_{workers}")
        ok = None if per_job is None else per_job <= 2
        verdicts[f"xacts_{workers}"] = {"per_job": per_job, "met": ok}
        add(
            f"Transactions per drained job, {procs}",
            f"xacts_{workers}",
            "xacts",
            1,
            rtext(scale, "1 worker's drain (4 workers)") if workers == "w4" else "",
            "<= 2; 4 workers >= 2.5x 1" if workers == "w4" else "<= 2",
            ok if workers == "w1" or scale is None else (ok and scale >= 2.5),
        )
    own = ratio("drain_w4h", "drain_w1")
    add(
        f"Drain {d} no-op jobs, 4 workers, each its own queue and host",
        "drain_w4h",
        "jobs/s",
        0,
        "; ".join(
            t for t in (rtext(own, "1 worker"), rtext(ratio("drain_w4h", "floor_p4"), "floor")) if t
        ),
    )
    add("Transactions per drained job, 4 workers, own queues and hosts", "xacts_w4h", "xacts", 1)
    p = f"{sizes.drain_jobs:,}"
    add(f"Floor: {p} jobs, psycopg SKIP LOCKED loop, 1 process", "floor_p1", "jobs/s")
    add(f"Floor: {p} jobs, psycopg SKIP LOCKED loop, 4 processes", "floor_p4", "jobs/s")
    labels = {
        "pgqueuer": "PgQueuer (batch 10), 1 process",
        "procrastinate": "Procrastinate (concurrency 10), 1 process",
        "django-tasks-db": "django-tasks-db (db_worker), 1 process",
    }
    for peer in PEERS:
        add(f"Peer: {p} jobs, {labels[peer]}", f"peer_{peer}", "jobs/s")

    p50, p95 = results.median("notify_p50"), results.median("notify_p95")
    ok = (p50 <= 5 and p95 <= 10) if p50 is not None and p95 is not None else None
    verdicts["latency_notify"] = {"p50": p50, "p95": p95, "met": ok}
    add(
        "Pickup latency with NOTIFY, p50",
        "notify_p50",
        "ms",
        1,
        "",
        "<= 5 ms",
        None if ok is None else p50 <= 5,
    )
    add(
        "Pickup latency with NOTIFY, p95",
        "notify_p95",
        "ms",
        1,
        "",
        "<= 10 ms",
        None if ok is None else p95 <= 10,
    )
    add(f"Pickup latency polling only ({sizes.poll_interval} s), p50", "poll_p50", "ms", 0)
    add(f"Pickup latency polling only ({sizes.poll_interval} s), p95", "poll_p95", "ms", 0)

    small, large = sizes.ready_sizes[0], sizes.ready_sizes[-1]
    for size in sizes.ready_sizes:
        add(f"Ready SELECT at {size:,} queued", f"ready_select_{size}", "ms", 3)
    for size in sizes.ready_sizes:
        scan = results.extra.get("index_scan", {}).get(str(size))
        note = "" if scan is None else ("index scan" if scan else "NO index scan")
        add(f"claim_jobs(10) at {size:,} queued", f"ready_claim_{size}", "ms", 2, note)
    r_select = ratio(f"ready_select_{large}", f"ready_select_{small}")
    r_claim = ratio(f"ready_claim_{large}", f"ready_claim_{small}")
    scans = results.extra.get("index_scan", {})
    ok = None
    if r_claim is not None:
        ok = r_claim <= 2.0 and bool(scans) and all(scans.values())
    verdicts["ready"] = {"select_ratio": r_select, "claim_ratio": r_claim, "met": ok}
    rows.append(
        [
            f"Acquisition cost {large:,} / {small:,}",
            "ratio",
            fmt(r_claim, 2) if r_claim else "-",
            "",
            f"SELECT alone {r_select:.2f}x" if r_select else "",
            "<= 2x, index scan",
            "" if ok is None else ("met" if ok else "MISSED"),
        ]
    )

    j = f"{sizes.stats_jobs:,}"
    direct = results.median("direct_ms")
    for name, label in (
        ("stats_ms", f"get_statistics() at {j} jobs"),
        ("stats_queue_ms", f"get_statistics(queue=...) at {j} jobs"),
        ("queue_stats_ms", f"get_queue_stats() at {j} jobs"),
        ("stats_page_ms", f"Admin statistics page at {j} jobs"),
    ):
        value = results.median(name)
        ok = None if value is None else value < 300
        verdicts[name] = {"ms": value, "met": ok}
        note = f"{value / direct:.2f}x the direct count" if value and direct else ""
        add(label, name, "ms", 1, note, "< 300 ms", ok)
    add(f"Finished jobs counted from the rows, {j} jobs (baseline)", "direct_ms", "ms", 1)
    add(f"Insert {j} jobs of history, one statement (tally triggers on)", "stats_fill_s", "s", 1)

    n = f"{sizes.follow_jobs} containers"
    cpu, rss = results.median("follow_cpu_pct"), results.median("follow_rss_mb")
    end_max = results.median("follow_end_max_s")
    add(f"One worker following {n}: all running after", "follow_launch_s", "s", 1)
    add(
        f"One worker following {n}: CPU, {sizes.follow_window:.0f} s window",
        "follow_cpu_pct",
        "% core",
        2,
        "",
        "< 5 %",
        None if cpu is None else cpu < 5,
    )
    add(
        f"One worker following {n}: peak RSS",
        "follow_rss_mb",
        "MB",
        0,
        "",
        "< 150 MB",
        None if rss is None else rss < 150,
    )
    add(f"One worker following {n}: end recorded after die, p50", "follow_end_p50_s", "s", 2)
    add(
        f"One worker following {n}: end recorded after die, max",
        "follow_end_max_s",
        "s",
        2,
        f"{results.median('follow_ends_seen') or 0:.0f} ends seen by both witnesses",
        "<= 2 s",
        None if end_max is None else end_max <= 2,
    )
    verdicts["follow"] = {"cpu_pct": cpu, "rss_mb": rss, "end_max_s": end_max}

    c = sizes.container_jobs
    verdicts["containers"] = {}
    for k in sizes.container_concurrency:
        r = ratio(f"containers_worker_{k}", f"containers_sdk_{k}")
        ok = r >= 0.95 if r is not None else None
        verdicts["containers"][str(k)] = {"ratio": r, "met": ok}
        add(
            f"{c} busybox jobs through the worker, concurrency {k}",
            f"containers_worker_{k}",
            "jobs/s",
            2,
            rtext(r, "docker SDK"),
            ">= 0.95x SDK",
            ok,
        )
        add(f"{c} containers, docker SDK alone, {k} threads", f"containers_sdk_{k}", "jobs/s", 2)

    for name, label in (
        ("rss_drain_w1", f"Worker peak RSS, draining {d} no-op jobs"),
        ("rss_big_output", f"Worker peak RSS, one job printing {sizes.big_output_mb} MB"),
    ):
        value = results.median(name)
        ok = value < 150 if value is not None else None
        verdicts[name] = {"mb": value, "met": ok}
        add(label, name, "MB", 0, "", "< 150 MB", ok)
    add("Worker RSS when idle (before the big job)", "rss_idle", "MB", 0)
    for peer in PEERS:
        add(f"Peer peak RSS: {peer}", f"rss_{peer}", "MB", 0)
    rows = [row for row in rows if row[2] != "-"]
    return rows, verdicts


def render(rows: list[list[str]]) -> str:
    """A Markdown table (readable as plain text too)."""
    header = ["Figure", "Unit", "Median", "Min-max", "Ratio", "Target", ""]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        lines.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        )
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    """What the run ran on."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        with open("/proc/meminfo") as meminfo:
            info["mem_gib"] = round(int(meminfo.readline().split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        import psycopg

        with psycopg.connect(f"{common.SERVER_URL}/postgres") as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = row[0] if row else ""
    except Exception:
        pass
    try:
        out = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        info["docker"] = out.stdout.strip()
    except Exception:
        pass
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round: a smoke run")
    parser.add_argument("--rounds", type=int, help="rounds of every figure (default 3, quick 1)")
    parser.add_argument("--only", default="", help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument(
        "--worker-drain-jobs",
        type=int,
        help="jobs per drain of our worker (default 2,000: at about 100 jobs/s, "
        "10,000 would take the run past 15 minutes)",
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop cm_bench at the end")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes.rounds = args.rounds
    if args.worker_drain_jobs:
        sizes.worker_drain_jobs = args.worker_drain_jobs
    groups = set(args.only.split(",")) if args.only else set(GROUPS) - set(NOT_BY_DEFAULT)
    unknown = groups - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")

    began = time.monotonic()
    common.recreate_database()
    common.remove_leftover_containers()
    common.setup_django()
    from bench.noop_executor import register

    register()
    results = Results()
    try:
        for number in range(sizes.rounds):
            tasks = round_tasks(sizes, groups, results)
            if 0 < number < sizes.rounds - 1:
                tasks = [
                    task
                    for task in tasks
                    if task[0][0] not in HEAVY and not task[0][0].startswith(HEAVY_PREFIXES)
                ]
            if number < sizes.rounds - 1:
                # The containers at concurrency 32: in the last round only.
                tasks = [task for task in tasks if not task[0][0].endswith("_32")]
            # Interleave: every round starts one task further along.
            shift = number % max(len(tasks), 1)
            tasks = tasks[shift:] + tasks[:shift]
            print(f"round {number + 1} of {sizes.rounds}", flush=True)
            for names, fn in tasks:
                results.measure(names, fn)
        if "ready" in groups:
            run_ready(sizes, results)
        if "stats" in groups:
            run_stats(sizes, results)
        if "follow" in groups:
            run_follow(sizes, results)
    finally:
        if not args.keep_db:
            from django.db import connections

            connections.close_all()
            common.drop_database()

    rows, verdicts = build_table(sizes, results)
    table = render(rows)
    elapsed = time.monotonic() - began
    print()
    print(table)
    print(f"\n{sizes.rounds} round(s), {elapsed / 60:.1f} minutes")
    out_dir = common.ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    payload = {
        "when": stamp,
        "quick": args.quick,
        "sizes": sizes.__dict__,
        "environment": environment(),
        "seconds": round(elapsed, 1),
        "samples": results.samples,
        "not_measured": results.errors,
        "verdicts": verdicts,
        "extra": results.extra,
        "table": table,
    }
    path = out_dir / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"results written to {path.relative_to(common.ROOT)}")


if __name__ == "__main__":
    main()
