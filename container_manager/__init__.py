"""Run Django jobs as containers, queued in your database."""

from __future__ import annotations

__version__ = "2.0.0.dev0"
