from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from container_manager.api.metrics import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("container_manager.api.urls")),
    path("metrics/", metrics_view),
]
