"""The schema of django-container-manager 1.0.x, first half (its migration ``0001_initial``).

The history begins where 1.0.x's does, so that ``migrate`` on a 1.0.x
database carries on from what it recorded, and a new database passes
through the same steps (``0003_version_2`` makes the 2.x tables). The user
columns (``created_by``) are indexed integers here, not foreign keys: 2.x
keeps their values in ``legacy_data`` and needs no user model.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models

from container_manager.upgrade import check_no_tables

JOB_TABLE = "container_manager_containerjob"


def refuse_existing_tables(apps, schema_editor):
    tables = set(schema_editor.connection.introspection.table_names())
    check_no_tables(tables, JOB_TABLE)


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.RunPython(refuse_existing_tables, migrations.RunPython.noop, elidable=False),
        migrations.CreateModel(
            name="ExecutorHost",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("host_type", models.CharField(default="unix", max_length=10)),
                ("connection_string", models.CharField(max_length=500)),
                ("tls_enabled", models.BooleanField(default=False)),
                ("tls_verify", models.BooleanField(default=False)),
                ("is_active", models.BooleanField(default=True)),
                ("auto_pull_images", models.BooleanField(default=True)),
                ("executor_type", models.CharField(default="docker", max_length=50)),
                ("executor_config", models.JSONField(blank=True, default=dict)),
                ("max_concurrent_jobs", models.PositiveIntegerField(default=10)),
                ("weight", models.PositiveIntegerField(default=100)),
                ("current_job_count", models.PositiveIntegerField(default=0)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
        ),
        migrations.CreateModel(
            name="EnvironmentVariableTemplate",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("description", models.TextField(blank=True)),
                ("environment_variables_text", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("created_by_id", models.IntegerField(db_index=True, null=True)),
            ],
            options={"ordering": ["name"]},
        ),
        migrations.CreateModel(
            name="ContainerJob",
            fields=[
                ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                ("name", models.CharField(blank=True, max_length=200)),
                ("status", models.CharField(default="pending", max_length=20)),
                ("description", models.TextField(blank=True)),
                ("docker_image", models.CharField(blank=True, default="", max_length=500)),
                ("command", models.TextField(blank=True)),
                ("working_directory", models.CharField(blank=True, max_length=500)),
                ("memory_limit", models.PositiveIntegerField(blank=True, null=True)),
                ("cpu_limit", models.FloatField(blank=True, null=True)),
                ("timeout_seconds", models.PositiveIntegerField(default=3600)),
                ("network_configuration", models.JSONField(blank=True, default=list)),
                ("override_environment", models.TextField(blank=True, default="")),
                ("execution_id", models.CharField(blank=True, default="", max_length=255)),
                ("exit_code", models.IntegerField(blank=True, null=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("completed_at", models.DateTimeField(blank=True, null=True)),
                ("executor_metadata", models.JSONField(blank=True, default=dict)),
                ("max_memory_usage", models.PositiveIntegerField(blank=True, null=True)),
                ("cpu_usage_percent", models.FloatField(blank=True, null=True)),
                ("stdout_log", models.TextField(blank=True)),
                ("stderr_log", models.TextField(blank=True)),
                ("docker_log", models.TextField(blank=True)),
                ("clean_output", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("created_by_id", models.IntegerField(blank=True, db_index=True, null=True)),
                (
                    "environment_template",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="container_manager.environmentvariabletemplate",
                    ),
                ),
                (
                    "docker_host",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="container_manager.executorhost",
                    ),
                ),
            ],
            options={
                "ordering": ["-created_at"],
                "indexes": [
                    models.Index(fields=["status", "created_at"], name="cjob_status_created_idx"),
                    models.Index(fields=["created_by_id", "status"], name="cjob_created_by_status_idx"),
                    models.Index(fields=["docker_host", "status"], name="cjob_host_status_idx"),
                    models.Index(fields=["status"], name="cjob_status_idx"),
                ],
            },
        ),
    ]
