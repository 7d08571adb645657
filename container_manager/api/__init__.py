"""The JSON API: the queue's operations and resources over HTTP (docs/api.md).

Built on Django REST framework and drf-spectacular (``pip install
"django-container-manager[api]"``); include ``container_manager.api.urls``
in your URLconf. Django's permissions decide who may read and who may
manage, as in the admin; browsers authenticate with their session (and a
CSRF token on changes), programs with a token.
"""
