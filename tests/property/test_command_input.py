"""Generated arguments through ``process_container_jobs``: a dry run or a CommandError.

Each example builds an argument list from the command's flags with generated
values (numbers far out of every range, floats, signs, text with NUL, lone
surrogates, newlines and 300 characters) and runs it with ``--dry-run``: it
must either print its dry run or raise ``CommandError``, and change no row.
When it raised, the same arguments without ``--dry-run`` must raise
``CommandError`` too, having registered no worker and claimed no job: an
argument error is found before anything is done.

``CM_PROPERTY_EXAMPLES`` sets the examples (12 by default).
"""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st

from container_manager.models import ContainerJob, Worker
from container_manager.queue import queue_manager
from tests.property.tally import record
from tests.property.test_admin_input import PROPERTY, nasty_text

pytestmark = pytest.mark.django_db

numbers = st.one_of(
    st.integers(-(2**80), 2**80).map(str),
    st.integers(-3, 10_001).map(str),
    st.floats(allow_nan=True).map(repr),
    st.sampled_from(["", " 5", "0x10", "1e3", "٣", "²", "5\x00", "--once"]),
)
#: Flag -> strategy of its value; None for a flag without a value.
FLAGS: dict[str, st.SearchStrategy[str] | None] = {
    "--queue-mode": None,
    "--once": None,
    "--verbose": None,
    "--max-concurrent": numbers,
    "--poll-interval": numbers,
    "--timeout": numbers,
    "--job-id": numbers,
    "--worker-id": nasty_text,
    "--queues": nasty_text,
    "--status": st.one_of(nasty_text, st.sampled_from(["running", "pending", "queued"])),
}


@st.composite
def arguments(draw: Any) -> list[str]:
    chosen = draw(st.lists(st.sampled_from(sorted(FLAGS)), unique=True, max_size=5))
    args: list[str] = []
    for flag in chosen:
        strategy = FLAGS[flag]
        if strategy is None:
            args.append(flag)
        else:
            args.append(f"{flag}={draw(strategy)}")
    return args


def rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return (
        list(ContainerJob.objects.order_by("pk").values()),
        list(Worker.objects.order_by("pk").values()),
    )


def run(args: list[str]) -> CommandError | None:
    try:
        call_command("process_container_jobs", *args, stdout=StringIO(), stderr=StringIO())
    except CommandError as exc:
        return exc
    return None


@PROPERTY
@given(args=arguments())
def test_generated_arguments_end_in_a_dry_run_or_a_command_error_and_change_nothing(args):
    job = ContainerJob.objects.create(name="waiting", command="echo hi")
    queue_manager.queue_job(job)
    before = rows()

    refused = run([*args, "--dry-run"])

    record("command process_container_jobs --dry-run", 200 if refused is None else 400)
    assert rows() == before
    if refused is None:
        return
    assert str(refused), "a CommandError must say what is wrong"
    again = run(args)
    record("command process_container_jobs (refused args)", 200 if again is None else 400)
    assert isinstance(again, CommandError), f"{args!r} refused only with --dry-run"
    assert rows() == before
