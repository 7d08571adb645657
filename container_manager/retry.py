"""Retry strategies: how many launch attempts a job gets, and how long it waits between them.

A strategy turns an attempt number into a delay, growing exponentially and
spread by jitter so that a burst of failures does not retry in lock-step::

    delay(n) = min(max_delay, base_delay * backoff_factor ** (n - 1))
               * uniform(1 - jitter, 1 + jitter)

The queue writes ``now + delay`` into the job's ``scheduled_for``, so a retry
is just a scheduled job. Register a custom strategy by adding it to
``RETRY_STRATEGIES``::

    RETRY_STRATEGIES["custom"] = RetryStrategy(
        max_attempts=4, base_delay=1.5, max_delay=120.0, backoff_factor=1.8
    )
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

DEFAULT_BACKOFF_FACTOR = 2.0
DEFAULT_JITTER = 0.2


@dataclass(frozen=True)
class RetryStrategy:
    """How often and how fast a job's launch is retried.

    Attributes:
        max_attempts: Launch attempts before the job is finally failed.
        base_delay: Seconds before the first retry.
        max_delay: Upper bound of any delay, in seconds, before jitter.
        backoff_factor: Each retry waits this many times longer than the one before.
        jitter: Fraction by which each delay is spread, up and down (0.2 is ±20 %).
    """

    max_attempts: int
    base_delay: float
    max_delay: float
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    jitter: float = DEFAULT_JITTER

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < self.base_delay:
            raise ValueError("delays must satisfy 0 <= base_delay <= max_delay")
        if self.backoff_factor < 1:
            raise ValueError("backoff_factor must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")

    def base_delay_for(self, attempt: int) -> float:
        """Return the delay before retry number ``attempt``, without jitter.

        Args:
            attempt: 1 for the first retry, 2 for the second, and so on.

        Returns:
            Seconds: ``base_delay * backoff_factor ** (attempt - 1)``, capped at ``max_delay``.
        """
        exponent = max(attempt - 1, 0)
        return min(self.max_delay, self.base_delay * self.backoff_factor**exponent)

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float:
        """Return the jittered delay before retry number ``attempt``.

        Args:
            attempt: 1 for the first retry, 2 for the second, and so on.
            rng: Source of randomness (tests pass a seeded one).

        Returns:
            Seconds, within ±``jitter`` of :meth:`base_delay_for`.
        """
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return self.base_delay_for(attempt) * spread


#: Strategies by name. Add to it to register a custom strategy.
RETRY_STRATEGIES: dict[str, RetryStrategy] = {
    "default": RetryStrategy(max_attempts=3, base_delay=2.0, max_delay=60.0),
    "aggressive": RetryStrategy(max_attempts=5, base_delay=1.0, max_delay=30.0),
    "conservative": RetryStrategy(max_attempts=2, base_delay=5.0, max_delay=300.0),
    "high_priority": RetryStrategy(max_attempts=5, base_delay=0.5, max_delay=15.0),
}


def get_strategy(name: str) -> RetryStrategy:
    """Look a strategy up by name.

    Args:
        name: A key of ``RETRY_STRATEGIES``.

    Returns:
        The strategy.

    Raises:
        KeyError: With the known names, when ``name`` is not registered.
    """
    try:
        return RETRY_STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(RETRY_STRATEGIES))
        raise KeyError(f"Unknown retry strategy {name!r}; known: {known}") from None


def next_retry_at(
    strategy: RetryStrategy,
    attempt: int,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> datetime:
    """Return when retry number ``attempt`` should run.

    Args:
        strategy: The job's strategy.
        attempt: 1 for the first retry, 2 for the second, and so on.
        now: The time to count from (defaults to now).
        rng: Source of randomness for the jitter.

    Returns:
        An aware datetime, ``now`` plus the jittered delay.
    """
    start = now or timezone.now()
    return start + timedelta(seconds=strategy.delay_for(attempt, rng))
