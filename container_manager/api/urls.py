"""``path("api/", include("container_manager.api.urls"))`` in your URLconf (docs/api.md)."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from container_manager.api import views

app_name = "container_manager_api"

urlpatterns = [
    path("operations/", views.OperationsView.as_view(), name="operations"),
    path("jobs/", views.JobsView.as_view(), name="jobs"),
    path("jobs/<str:task_id>/", views.JobView.as_view(), name="job"),
    path("jobs/<str:task_id>/<str:action>/", views.JobActionView.as_view(), name="job-action"),
    path("queues/", views.QueuesView.as_view(), name="queues"),
    path("queues/<str:name>/<str:action>/", views.QueueActionView.as_view(), name="queue-action"),
    path("hosts/", views.HostsView.as_view(), name="hosts"),
    path("hosts/<str:name>/<str:action>/", views.HostActionView.as_view(), name="host-action"),
    path("workers/", views.WorkersView.as_view(), name="workers"),
    path("schedules/", views.SchedulesView.as_view(), name="schedules"),
    path("prune/", views.PruneView.as_view(), name="prune"),
    path(
        "schedules/<str:name>/<str:action>/",
        views.ScheduleActionView.as_view(),
        name="schedule-action",
    ),
    path("statistics/", views.StatisticsView.as_view(), name="statistics"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
]
