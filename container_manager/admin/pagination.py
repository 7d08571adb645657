"""A paginator that does not count a million rows to draw a page.

Django's admin counts the whole filtered queryset for its paginator. On a
large jobs table that ``COUNT(*)`` reads every matching row and costs more
than the page itself. :class:`EstimatedCountPaginator` counts exactly up to
``EXACT_COUNT_LIMIT`` rows (a ``COUNT`` over a ``LIMIT``-ed subquery, so at
most that many rows are read); beyond that, on PostgreSQL, it asks the
planner for its row estimate (``EXPLAIN``), which costs nothing. On other
databases it falls back to the exact count.

The total and the last page number are then approximate; page links near
the end may land on an empty page, which Django's admin shows as the last
real one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.paginator import Paginator
from django.db import DatabaseError, connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

logger = logging.getLogger(__name__)

#: Up to this many matching rows the count is exact.
EXACT_COUNT_LIMIT = 10_000


def planner_estimate(queryset: QuerySet[Any]) -> int | None:
    """Return PostgreSQL's estimate of the rows a queryset returns, or None elsewhere.

    Args:
        queryset: The queryset (its ordering is dropped).

    Returns:
        The planner's "Plan Rows" for the query, or None when the database is
        not PostgreSQL or the estimate cannot be read.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql":
        return None
    sql, params = queryset.order_by().query.sql_with_params()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            (plan,) = cursor.fetchone()
    except DatabaseError:
        logger.warning("Could not read the planner's row estimate", exc_info=True)
        return None
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    """Exact counts up to ``EXACT_COUNT_LIMIT``, the planner's estimate beyond (PostgreSQL)."""

    @cached_property
    def count(self) -> int:
        """The number of objects: exact when small, estimated when large."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return int(super().count)
        capped = queryset.order_by()[: EXACT_COUNT_LIMIT + 1].count()
        if capped <= EXACT_COUNT_LIMIT:
            return capped
        estimate = planner_estimate(queryset)
        if estimate is None:
            return int(queryset.count())
        return max(estimate, EXACT_COUNT_LIMIT + 1)
