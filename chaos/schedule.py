"""The fault schedule of a run: a pure function of the seed and the scenario's sizes.

Times are seconds from the start of the fault phase. The schedule names a
worker *slot* (0 .. workers-1), not a process: the process in that slot at
that time is the one hit. The same seed and options give the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KILL = "sigkill"
TERM = "sigterm"
PG_RESTART = "pg-restart"
DOCKER_RESTART = "dockerd-restart"


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    slot: int | None = None

    def describe(self) -> str:
        target = f" slot {self.slot}" if self.slot is not None else ""
        return f"+{self.at:6.2f} s {self.kind}{target}"


@dataclass(frozen=True)
class FaultPlan:
    fault_seconds: float
    workers: int
    kill_every: tuple[float, float] = (2.0, 5.0)
    sigterms: int = 2
    pg_restarts: int = 1
    docker_restarts: int = 1


def make_schedule(seed: int, plan: FaultPlan) -> list[Fault]:
    """Every fault of the run, in time order.

    SIGKILLs come every ``kill_every`` seconds (uniform) from the first such
    gap to the end of the fault phase. Restarts are spread over the middle
    of the phase, PostgreSQL ones first, then the engine's, each in a window
    of its own so that two restarts never overlap; SIGTERMs fall anywhere
    between 10 % and 90 % of the phase.
    """
    if plan.workers < 1:
        raise ValueError("at least one worker")
    rng = random.Random(seed)
    faults: list[Fault] = []
    low, high = plan.kill_every
    at = rng.uniform(low, high)
    while at < plan.fault_seconds:
        faults.append(Fault(round(at, 3), KILL, rng.randrange(plan.workers)))
        at += rng.uniform(low, high)
    for _ in range(plan.sigterms):
        at = rng.uniform(0.1, 0.9) * plan.fault_seconds
        faults.append(Fault(round(at, 3), TERM, rng.randrange(plan.workers)))
    restarts = [PG_RESTART] * plan.pg_restarts + [DOCKER_RESTART] * plan.docker_restarts
    if restarts:
        # Windows side by side over 20 % .. 80 % of the phase, one restart in each.
        span = 0.6 * plan.fault_seconds / len(restarts)
        for index, kind in enumerate(restarts):
            start = 0.2 * plan.fault_seconds + index * span
            at = start + rng.uniform(0.1, 0.4) * span
            faults.append(Fault(round(at, 3), kind))
    return sorted(faults, key=lambda f: (f.at, f.kind))
