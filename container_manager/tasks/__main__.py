"""``python -m container_manager.tasks``: run the task of ``CM_TASK`` in this container.

The container's environment holds ``DJANGO_SETTINGS_MODULE`` and the task
(container_manager.tasks.protocol). The task's return value is printed as
JSON on stdout's last line; a task that raises prints its error on stderr
and exits 1, so the job fails with the task's traceback.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def main() -> int:
    import django

    from container_manager.tasks.protocol import ERROR_MARKER, RESULT_MARKER, SPEC_VARIABLE

    spec = json.loads(os.environ[SPEC_VARIABLE])
    django.setup()

    from django.utils.module_loading import import_string

    from container_manager.tasks.compat import Task, TaskContext, TaskResult, TaskResultStatus

    try:
        task = import_string(spec["module_path"])
        if not isinstance(task, Task):
            raise TypeError(f"{spec['module_path']} is not a task (decorate it with @task)")
        args, kwargs = list(spec.get("args", [])), dict(spec.get("kwargs", {}))
        if task.takes_context:
            attempt = int(os.environ.get("CM_ATTEMPT", "1"))
            result: Any = TaskResult(
                task=task,
                id=os.environ.get("CM_JOB_ID", ""),
                status=TaskResultStatus.RUNNING,
                enqueued_at=None,
                started_at=None,
                finished_at=None,
                last_attempted_at=None,
                args=args,
                kwargs=kwargs,
                backend=spec.get("backend", "default"),
                errors=[],
                worker_ids=["container_manager"] * attempt,
            )
            args = [TaskContext(task_result=result), *args]
        value = task.call(*args, **kwargs)
        line = RESULT_MARKER + json.dumps(value, allow_nan=False)
    except BaseException as exc:  # the task's own error, reported, then exit 1
        kind = type(exc)
        report = {
            "exception_class_path": f"{kind.__module__}.{kind.__qualname__}",
            "traceback": "".join(traceback.format_exception(exc)),
        }
        sys.stderr.write(report["traceback"])
        sys.stderr.write(ERROR_MARKER + json.dumps(report) + "\n")
        sys.stderr.flush()
        return 1
    sys.stdout.flush()
    sys.stdout.write("\n" + line + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
