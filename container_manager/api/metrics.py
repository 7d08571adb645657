"""``/metrics/``: the queue's Prometheus gauges, read from the database at each scrape.

Add ``path("metrics/", metrics_view)`` to your URLconf (docs/deployment.md,
"Metrics"). A scrape authenticates with ``Authorization: Bearer <token>``,
the ``METRICS_TOKEN`` setting, or as a staff user allowed to view jobs (the
admin's session); anything else gets 401 or 403. Needs prometheus-client.
"""

from __future__ import annotations

import hmac

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from container_manager.conf import settings
from container_manager.metrics import database_registry


def _bearer_matches(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not token or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), str(token).encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The gauges of :class:`container_manager.metrics.DatabaseCollector`, in Prometheus' text."""
    if not _bearer_matches(request):
        user = request.user if hasattr(request, "user") else None
        if user is None or not user.is_authenticated:
            response = HttpResponse(
                "Authentication required\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not (user.is_staff and user.has_perm("container_manager.view_containerjob")):
            return HttpResponse("Permission denied\n", status=403, content_type="text/plain")
    return HttpResponse(generate_latest(database_registry()), content_type=CONTENT_TYPE_LATEST)
