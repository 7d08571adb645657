"""Who may read and who may manage: Django's model permissions, as in the admin."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

#: The permission a request needs, by the view's ``resource`` and whether it changes something.
NEEDED = {
    ("job", False): "container_manager.view_containerjob",
    ("job", True): "container_manager.change_containerjob",
    ("new_job", True): "container_manager.add_containerjob",
    ("queue", False): "container_manager.view_jobqueue",
    ("queue", True): "container_manager.change_jobqueue",
    ("host", False): "container_manager.view_executorhost",
    ("host", True): "container_manager.change_executorhost",
    ("worker", False): "container_manager.view_worker",
    ("schedule", False): "container_manager.view_schedule",
    ("schedule", True): "container_manager.change_schedule",
    ("new_schedule", True): "container_manager.add_schedule",
    ("prune", True): "container_manager.delete_containerjob",
}


def permission_for(resource: str, changes: bool) -> str:
    return NEEDED[(resource, changes)]


class ModelPermission(BasePermission):
    """Reading needs the ``view_`` permission of the view's model, changing the ``change_`` one."""

    message = "You do not have the permission this needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        if not (user and user.is_authenticated and user.is_staff):
            return False
        method = (request.method or "").lower()
        if not hasattr(view, method):
            return True  # DRF answers 405: the view does not do this
        changes = request.method not in ("GET", "HEAD", "OPTIONS")
        resource = view.resource_for(request) if hasattr(view, "resource_for") else view.resource
        needed = NEEDED.get((resource, changes))
        if needed is None:
            self.message = "Nobody may do this."
            return False
        if not user.has_perm(needed):
            self.message = f"You need the permission {needed!r} for this."
            return False
        return True
