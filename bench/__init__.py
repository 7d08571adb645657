"""Benchmarks of the queue and the worker, run with ``make bench`` (see docs/performance.md)."""
