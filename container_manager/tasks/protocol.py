"""What the backend and the container's runner say to each other: one variable in, one line out.

The backend puts the task (its module path, arguments, backend alias) as
JSON in the container's ``CM_TASK`` variable. The runner prints the return
value as JSON on a line ``::task-result <json>`` of stdout, or, when the
task raises, the exception's class path and traceback on a line
``::task-error <json>`` of stderr, and exits 1.
"""

from __future__ import annotations

import json
from typing import Any

SPEC_VARIABLE = "CM_TASK"
RESULT_MARKER = "::task-result "
ERROR_MARKER = "::task-error "
#: Largest task (module path and arguments as JSON) passed in the variable;
#: Linux refuses a single variable above 128 KiB.
MAX_SPEC_BYTES = 96 * 1024

_MISSING = object()


class TaskContainerError(Exception):
    """A task's container failed without a Python exception of the task's own.

    Its launch failed, it timed out, was cancelled, was killed, or exited
    without the runner's last line; the job's error code and last error say which.
    """


def last_marked(text: str, marker: str) -> Any:
    """The JSON value on the last line of ``text`` that starts with ``marker``; None if none."""
    for line in reversed(text.splitlines()):
        if line.startswith(marker):
            try:
                return json.loads(line[len(marker) :])
            except ValueError:
                return None
    return None
