"""The schema of django-container-manager 1.0.x, second half (its migration of the same name)."""

from django.db import migrations, models

from container_manager.upgrade import check_v1_job_table

JOB_TABLE = "container_manager_containerjob"


def refuse_unknown_schema(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        columns = {c.name for c in connection.introspection.get_table_description(cursor, JOB_TABLE)}
    check_v1_job_table(columns, JOB_TABLE)


class Migration(migrations.Migration):
    dependencies = [
        ("container_manager", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(refuse_unknown_schema, migrations.RunPython.noop, elidable=False),
        migrations.AddField(
            model_name="containerjob",
            name="last_error",
            field=models.TextField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="last_error_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="launched_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="max_retries",
            field=models.IntegerField(default=3),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="priority",
            field=models.IntegerField(default=50),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="queued_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="retry_count",
            field=models.IntegerField(default=0),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="retry_strategy",
            field=models.CharField(blank=True, max_length=50, null=True),
        ),
        migrations.AddField(
            model_name="containerjob",
            name="scheduled_for",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddIndex(
            model_name="containerjob",
            index=models.Index(fields=["queued_at", "launched_at"], name="cjob_queue_launched_idx"),
        ),
        migrations.AddIndex(
            model_name="containerjob",
            index=models.Index(fields=["scheduled_for", "queued_at"], name="cjob_scheduled_queue_idx"),
        ),
        migrations.AddIndex(
            model_name="containerjob",
            index=models.Index(fields=["queued_at", "retry_count"], name="cjob_queue_retry_idx"),
        ),
        migrations.AddIndex(
            model_name="containerjob",
            index=models.Index(fields=["priority", "queued_at"], name="cjob_priority_queue_idx"),
        ),
        migrations.AddIndex(
            model_name="containerjob",
            index=models.Index(fields=["status", "queued_at"], name="cjob_status_queue_idx"),
        ),
    ]
