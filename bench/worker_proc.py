"""One queue worker for the benchmarks: ``process_container_jobs --queue-mode``, no-op hosts known.

Run by the runner as ``python -m bench.worker_proc <command arguments>``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    from django.core.management import call_command

    from bench.noop_executor import register

    register()
    call_command("process_container_jobs", *sys.argv[1:])


if __name__ == "__main__":
    main()
