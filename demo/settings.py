"""Settings of the example project.

``DATABASE_URL`` chooses the database (SQLite in this folder by default), e.g.
``DATABASE_URL=postgres://postgres@127.0.0.1:5432/container_manager``.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "container_manager",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'demo' / 'db.sqlite3'}", conn_max_age=0
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # One test database per test run, so that runs in parallel (two checkouts,
    # two terminals) never drop each other's database.
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"}
# On SQLite, container_manager itself makes the worker and the web process
# wait for each other instead of failing (container_manager.sqlite).

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

CONTAINER_MANAGER = {
    "DEFAULT_IMAGE": os.environ.get(
        "CONTAINER_MANAGER_IMAGE", "container-manager-test/busybox:latest"
    ),
}

# Django's tasks framework (django.tasks on Django 6.0, the django-tasks
# package on 5.2): @task(backend="containers") functions run as container
# jobs on the host named "tasks" (docs/api-reference.md, "Django tasks").
_TASKS_FRAMEWORK = "django.tasks" if importlib.util.find_spec("django.tasks") else "django_tasks"
TASKS = {
    "default": {"BACKEND": f"{_TASKS_FRAMEWORK}.backends.immediate.ImmediateBackend"},
    "containers": {
        "BACKEND": "container_manager.tasks.ContainerBackend",
        "OPTIONS": {"host": "tasks"},
    },
}

# The JSON API (docs/api.md): drf-spectacular writes its OpenAPI schema.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "django-container-manager API",
    "DESCRIPTION": "The queue's operations and resources (docs/api.md).",
    "SERVE_INCLUDE_SCHEMA": False,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "container_manager": {
            "handlers": ["console"],
            "level": os.environ.get("CONTAINER_MANAGER_LOG_LEVEL", "WARNING"),
        }
    },
}
