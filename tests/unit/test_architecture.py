"""The package keeps the shape docs/architecture.md draws: one writer, one direction.

Each check also runs on a small module written to break it, so that a checker
that found nothing because it looked at nothing would fail here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit import architecture as shape

ARCHITECTURE_DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / shape.PACKAGE
    for relative, source in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for folder in {p.parent for p in root.rglob("*.py")} | {root}:
        (folder / "__init__.py").touch()
    return root


# Layers ------------------------------------------------------------------------


def test_every_module_belongs_to_a_layer_and_imports_only_downwards():
    findings = shape.layer_findings(shape.import_graph())

    assert findings == [], "\n".join(map(str, findings))


def test_an_import_from_the_container_layer_into_the_queue_is_found(tmp_path):
    root = _fake_package(
        tmp_path,
        {
            "queue/manager.py": "from container_manager.containers import containers\n",
            "containers.py": (
                "def launch():\n"
                "    from container_manager.queue.manager import x  # a lazy import counts too\n"
            ),
        },
    )

    findings = shape.layer_findings(shape.import_graph(root))

    assert [(f.module, f.line) for f in findings] == [("container_manager.containers", 2)]
    assert "from below" in findings[0].what


def test_importlib_and_unassigned_modules_are_found(tmp_path):
    root = _fake_package(
        tmp_path,
        {
            "states.py": "import importlib\nimportlib.import_module('container_manager.worker')\n",
            "worker/loop.py": "",
            "glue.py": "",
        },
    )

    found = {
        (f.module, f.what.split(" (")[0]) for f in shape.layer_findings(shape.import_graph(root))
    }

    assert ("container_manager.states", "imports container_manager.worker") in found
    assert ("container_manager.glue", "belongs to no layer of docs/architecture.md") in found


def test_no_modules_import_each_other_in_a_circle():
    assert shape.circles(shape.import_graph()) == []


def test_a_circle_hidden_behind_type_checking_is_found(tmp_path):
    root = _fake_package(
        tmp_path,
        {
            "worker/loop.py": "from container_manager.worker.claimer import Claimer\n",
            "worker/claimer.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n"
                "    from container_manager.worker.loop import Worker\n"
            ),
        },
    )

    assert shape.circles(shape.import_graph(root)) == [
        ["container_manager.worker.claimer", "container_manager.worker.loop"]
    ]


def test_docker_is_imported_only_by_the_docker_executor():
    importers = [
        name
        for name, path in shape.modules().items()
        if re.search(r"^\s*(import docker|from docker)\b", path.read_text(), re.M)
    ]

    assert importers == ["container_manager.executors.docker"]


# One writer --------------------------------------------------------------------


def test_only_the_queue_writes_job_state():
    findings = shape.writer_findings()

    assert findings == [], "\n".join(map(str, findings))


@pytest.mark.parametrize(
    ("source", "what"),
    [
        ("job.mark_as_running()\n", "calls mark_as_running()"),
        ("job.transition_to('queued')\n", "calls transition_to()"),
        (
            "ContainerJob.objects.filter(pk=1).update(lease_expires_at=None)\n",
            "update() of lease_expires_at",
        ),
        ("ContainerJob.objects.filter(pk=1).update(**fields)\n", "update() of **fields"),
        ("ContainerJob.objects.bulk_update(jobs, ['status'])\n", "bulk_update() of "),
        (
            "cursor.execute('UPDATE container_manager_containerjob SET status = %s')\n",
            "raw SQL updating the job table",
        ),
    ],
)
def test_a_write_of_job_state_is_recognised(source, what):
    [finding] = shape.state_writes(source, "container_manager.worker.follower")

    assert finding.what.startswith(what)


def test_writes_that_are_not_job_state_are_not_reported():
    source = (
        "ContainerJob.objects.filter(pk=1).update(priority=80)\n"
        "WorkerRow.objects.filter(worker_id='w').update(status='stopped')\n"
        "ContainerJob.objects.filter(status='queued').count()\n"
    )

    assert shape.state_writes(source, "container_manager.admin.actions") == []


def test_the_writers_are_the_queue_and_the_model():
    assert shape.is_writer("container_manager.queue.finishing")
    assert shape.is_writer("container_manager.models.job")
    assert not shape.is_writer("container_manager.containers")
    assert not shape.is_writer("container_manager.worker.follower")


# The document --------------------------------------------------------------------


def test_the_architecture_doc_names_every_layer_in_order():
    text = ARCHITECTURE_DOC.read_text()
    table = text[text.index("<!-- layers -->") : text.index("<!-- /layers -->")]
    rows = [
        line.split("|")[1:3] for line in table.splitlines() if line.startswith("| ") and "`" in line
    ]

    documented = [(name.strip(), tuple(re.findall(r"`([^`]+)`", tops))) for name, tops in rows]

    assert documented == [
        (name, tuple(f"{top}/" if _is_package(top) else f"{top}.py" for top in tops))
        for name, tops in shape.LAYERS
    ]


def _is_package(top: str) -> bool:
    return (shape.ROOT / top).is_dir() or top == "api"
