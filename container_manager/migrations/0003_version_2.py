"""From django-container-manager 1.0.x's tables to 2.x's, keeping every row.

Hosts keep their ids and settings (1.0.x's TLS flags move into
``executor_config["tls"]``; hosts of executor types 2.x does not run are made
inactive). Templates keep theirs. Jobs are copied, oldest first, into the new
job table, whose ids are integers: each keeps its 1.0.x UUID in
``legacy_id`` and the 1.0.x values without a 2.x field in ``legacy_data``
(``upgrade.job_fields`` says how each field and status is mapped). On a new
database the tables are empty and this only changes the schema.

It cannot be reversed: to go back to 1.0.x, restore the backup made before
the upgrade (docs/migration-guide.md, "Rolling back").
"""

import django.core.validators
import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone

import container_manager.environment
import container_manager.models.job
from container_manager.upgrade import UPGRADE_INTERRUPTED, check_v1_job_table, host_changes, job_fields

JOB_TABLE = "container_manager_containerjob"
BATCH = 1000


def refuse_unknown_schema(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, JOB_TABLE)}
    check_v1_job_table(columns, JOB_TABLE)


def convert_hosts(apps, schema_editor):
    host_model = apps.get_model("container_manager", "ExecutorHost")
    hosts = host_model.objects.using(schema_editor.connection.alias)
    for host in hosts.all():
        changes = host_changes(host.executor_type, host.tls_enabled, host.tls_verify, host.executor_config)
        hosts.filter(pk=host.pk).update(**changes)


def copy_jobs(apps, schema_editor):
    alias = schema_editor.connection.alias
    old_model = apps.get_model("container_manager", "ContainerJob")
    new_model = apps.get_model("container_manager", "ContainerJobV2")
    # The 1.0.x creation times are copied, not replaced by now.
    new_model._meta.get_field("created_at").auto_now_add = False
    columns = [field.attname for field in old_model._meta.concrete_fields]
    rows = old_model.objects.using(alias).order_by("created_at", "pk").values(*columns)
    now = timezone.now()
    copied = interrupted = 0
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        fields = job_fields(row, now)
        interrupted += fields.get("error_code") == UPGRADE_INTERRUPTED
        batch.append(new_model(**fields))
        if len(batch) >= BATCH:
            new_model.objects.using(alias).bulk_create(batch)
            copied += len(batch)
            batch = []
    if batch:
        new_model.objects.using(alias).bulk_create(batch)
        copied += len(batch)
    if copied:
        print(f"\n  Upgraded {copied} job(s) of 1.0.x", end="")
        if interrupted:
            print(f"; {interrupted} were launching or running and are now failed with {UPGRADE_INTERRUPTED}", end="")


class Migration(migrations.Migration):
    dependencies = [
        ("container_manager", "0002_containerjob_last_error_containerjob_last_error_at_and_more"),
    ]

    operations = [
        migrations.RunPython(refuse_unknown_schema, migrations.RunPython.noop, elidable=False),
        # Hosts.
        migrations.RunPython(convert_hosts, elidable=False),
        migrations.RemoveField(model_name="executorhost", name="host_type"),
        migrations.RemoveField(model_name="executorhost", name="tls_enabled"),
        migrations.RemoveField(model_name="executorhost", name="tls_verify"),
        migrations.RemoveField(model_name="executorhost", name="current_job_count"),
        migrations.AddField(
            model_name="executorhost",
            name="is_paused",
            field=models.BooleanField(default=False, help_text="Paused hosts get no new jobs; running ones go on."),
        ),
        migrations.AddField(
            model_name="executorhost",
            name="health_status",
            field=models.CharField(choices=[("unknown", "Unknown"), ("healthy", "Healthy"), ("unhealthy", "Unhealthy")], default="unknown", max_length=20),
        ),
        migrations.AddField(model_name="executorhost", name="health_error", field=models.TextField(blank=True)),
        migrations.AddField(model_name="executorhost", name="last_health_check_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AlterField(
            model_name="executorhost",
            name="executor_type",
            field=models.CharField(choices=[("docker", "Docker engine"), ("process", "Local process")], default="docker", max_length=20),
        ),
        migrations.AlterField(
            model_name="executorhost",
            name="connection_string",
            field=models.CharField(blank=True, help_text="Docker: unix:///var/run/docker.sock or tcp://host:2376. Empty for process.", max_length=500),
        ),
        migrations.AlterField(
            model_name="executorhost",
            name="executor_config",
            field=models.JSONField(blank=True, default=dict, help_text='Backend options, e.g. {"tls": {"ca_cert": "...", "client_cert": "...", "client_key": "..."}, "default_network": "none"}.'),
        ),
        migrations.AlterField(
            model_name="executorhost",
            name="is_active",
            field=models.BooleanField(default=True, help_text="Inactive hosts get no new jobs."),
        ),
        migrations.AlterField(
            model_name="executorhost",
            name="max_concurrent_jobs",
            field=models.PositiveIntegerField(default=10, validators=[django.core.validators.MinValueValidator(1)]),
        ),
        migrations.AlterField(
            model_name="executorhost",
            name="weight",
            field=models.PositiveIntegerField(default=100, help_text="Routing weight, 1-1000: a host with twice the weight gets twice the jobs.", validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(1000)]),
        ),
        migrations.AlterField(
            model_name="executorhost",
            name="auto_pull_images",
            field=models.BooleanField(default=True, help_text="Pull an image that the engine does not have."),
        ),
        migrations.AlterModelOptions(name="executorhost", options={"ordering": ["name"], "verbose_name": "executor host"}),
        # Templates.
        migrations.RemoveField(model_name="environmentvariabletemplate", name="created_by_id"),
        migrations.AlterField(
            model_name="environmentvariabletemplate",
            name="environment_variables_text",
            field=models.TextField(blank=True, help_text="One KEY=VALUE a line. Blank lines and lines starting with # are skipped.", verbose_name="environment variables"),
        ),
        migrations.AlterModelOptions(name="environmentvariabletemplate", options={"ordering": ["name"], "verbose_name": "environment template"}),
        # Jobs: a new table, the rows copied, the old table dropped.
        migrations.CreateModel(
            name="ContainerJobV2",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(blank=True, max_length=200)),
                ("queue", models.CharField(default=container_manager.models.job._default_queue, max_length=100)),
                ("image", models.CharField(blank=True, help_text="Empty: DEFAULT_IMAGE.", max_length=500)),
                ("command", models.TextField(blank=True, help_text="Split like a shell would, but run without one.")),
                ("is_shell_command", models.BooleanField(default=False, help_text="Run the command through /bin/sh -c.")),
                ("working_directory", models.CharField(blank=True, max_length=500)),
                ("environment", models.JSONField(blank=True, default=dict, validators=[container_manager.environment.validate_env_mapping])),
                ("memory_limit_mb", models.PositiveIntegerField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(1)])),
                ("cpu_limit_cores", models.FloatField(blank=True, null=True, validators=[django.core.validators.MinValueValidator(0.01), django.core.validators.MaxValueValidator(1024)])),
                ("timeout_seconds", models.PositiveIntegerField(default=container_manager.models.job._default_timeout, validators=[django.core.validators.MinValueValidator(1)])),
                ("network", models.CharField(blank=True, help_text="Empty: the host's default.", max_length=200)),
                ("user", models.CharField(blank=True, max_length=100)),
                ("status", models.CharField(choices=[("pending", "Pending"), ("queued", "Queued"), ("validating", "Validating"), ("preparing", "Preparing"), ("pulling", "Pulling image"), ("running", "Running"), ("paused", "Paused"), ("retrying", "Retrying"), ("completed", "Completed"), ("failed", "Failed"), ("cancelled", "Cancelled"), ("timeout", "Timed out")], default="pending", editable=False, max_length=20)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("completed_at", models.DateTimeField(blank=True, null=True)),
                ("exit_code", models.IntegerField(blank=True, null=True)),
                ("container_id", models.CharField(blank=True, max_length=100)),
                ("stdout", models.TextField(blank=True)),
                ("stderr", models.TextField(blank=True)),
                ("progress", models.PositiveSmallIntegerField(default=0, validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(100)])),
                ("current_step", models.CharField(blank=True, max_length=200)),
                ("priority", models.IntegerField(default=container_manager.models.job._default_priority, help_text="0-100; higher runs first, then first in, first out.", validators=[django.core.validators.MinValueValidator(0), django.core.validators.MaxValueValidator(100)])),
                ("queued_at", models.DateTimeField(blank=True, null=True)),
                ("scheduled_for", models.DateTimeField(blank=True, null=True)),
                ("launched_at", models.DateTimeField(blank=True, null=True)),
                ("retry_count", models.PositiveIntegerField(default=0)),
                ("max_retries", models.PositiveIntegerField(blank=True, help_text="Launch attempts allowed. Empty: the retry strategy's max_attempts.", null=True, validators=[django.core.validators.MinValueValidator(1)])),
                ("retry_strategy", models.CharField(default=container_manager.models.job._default_retry_strategy, max_length=50)),
                ("last_error", models.TextField(blank=True)),
                ("last_error_at", models.DateTimeField(blank=True, null=True)),
                ("error_code", models.CharField(blank=True, max_length=64)),
                ("worker_id", models.CharField(blank=True, max_length=200)),
                ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                ("attempt", models.PositiveIntegerField(default=0, help_text="Incremented at each claim; labels the container.")),
                ("legacy_id", models.UUIDField(blank=True, editable=False, help_text="The job's id under 1.0.x; empty for jobs made since.", null=True, unique=True)),
                ("legacy_data", models.JSONField(blank=True, default=dict, editable=False, help_text="1.0.x values that have no field here (description, docker_log, ...).")),
                ("environment_template", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="jobs", to="container_manager.environmentvariabletemplate")),
                ("host", models.ForeignKey(blank=True, help_text="Empty: the worker picks an active host with capacity.", null=True, on_delete=django.db.models.deletion.PROTECT, related_name="jobs", to="container_manager.executorhost")),
            ],
            options={
                "verbose_name": "container job",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(models.OrderBy(models.F("priority"), descending=True), models.F("queued_at"), models.F("id"), condition=models.Q(("status__in", ["queued", "retrying"])), name="cm_job_ready_idx"),
                    models.Index(condition=models.Q(("status__in", ["paused", "preparing", "pulling", "running", "validating"])), fields=["lease_expires_at"], name="cm_job_lease_idx"),
                    models.Index(fields=["status", "queue"], name="cm_job_status_queue_idx"),
                    models.Index(fields=["host", "status"], name="cm_job_host_status_idx"),
                    models.Index(fields=["-created_at", "-id"], name="cm_job_created_idx"),
                ],
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("priority__gte", 0), ("priority__lte", 100)), name="cm_job_priority_range", violation_error_message="Priority must be between 0 and 100."),
                    models.CheckConstraint(condition=models.Q(("progress__gte", 0), ("progress__lte", 100)), name="cm_job_progress_range", violation_error_message="Progress must be between 0 and 100."),
                    models.CheckConstraint(condition=models.Q(("timeout_seconds__gte", 1)), name="cm_job_timeout_positive", violation_error_message="Timeout must be at least 1 second."),
                    models.CheckConstraint(condition=models.Q(("memory_limit_mb__isnull", True), ("memory_limit_mb__gte", 1), _connector="OR"), name="cm_job_memory_positive", violation_error_message="Memory limit must be at least 1 MB."),
                    models.CheckConstraint(condition=models.Q(("cpu_limit_cores__isnull", True), ("cpu_limit_cores__gt", 0), _connector="OR"), name="cm_job_cpu_positive", violation_error_message="CPU limit must be above 0."),
                    models.CheckConstraint(condition=models.Q(("status__in", ["pending", "queued", "validating", "preparing", "pulling", "running", "paused", "retrying", "completed", "failed", "cancelled", "timeout"])), name="cm_job_status_known", violation_error_message="Status must be one of the job states."),
                ],
            },
        ),
        migrations.RunPython(copy_jobs, elidable=False),
        migrations.DeleteModel(name="ContainerJob"),
        migrations.RenameModel(old_name="ContainerJobV2", new_name="ContainerJob"),
        # Queues and workers, new in 2.x.
        migrations.CreateModel(
            name="JobQueue",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100, unique=True)),
                ("is_paused", models.BooleanField(default=False, help_text="Paused queues launch nothing.")),
                ("max_concurrent", models.PositiveIntegerField(blank=True, help_text="Jobs of this queue active at once, across all workers. Empty: the QUEUES setting, or no limit.", null=True, validators=[django.core.validators.MinValueValidator(1)])),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={"verbose_name": "queue", "ordering": ["name"]},
        ),
        migrations.CreateModel(
            name="Worker",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("worker_id", models.CharField(max_length=200, unique=True)),
                ("hostname", models.CharField(max_length=255)),
                ("pid", models.PositiveIntegerField()),
                ("queues", models.JSONField(blank=True, default=list)),
                ("max_concurrent", models.PositiveIntegerField(default=5)),
                ("status", models.CharField(choices=[("running", "Running"), ("stopping", "Stopping"), ("stopped", "Stopped")], default="running", max_length=20)),
                ("started_at", models.DateTimeField(auto_now_add=True)),
                ("last_heartbeat_at", models.DateTimeField(db_index=True)),
                ("stopped_at", models.DateTimeField(blank=True, null=True)),
                ("jobs_launched", models.PositiveIntegerField(default=0)),
                ("jobs_finished", models.PositiveIntegerField(default=0)),
            ],
            options={"ordering": ["-last_heartbeat_at"]},
        ),
    ]
