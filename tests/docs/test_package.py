"""The source distribution and the wheel, built as a release would be (``built``, conftest.py)."""

from __future__ import annotations

import tarfile
import zipfile


def test_the_sdist_ships_the_licence_changelog_and_docs_but_no_tests(built):
    with tarfile.open(built["sdist"]) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "docs/api-reference.md", "docs/api.md"} <= names
    assert "docs/migration-guide.md" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "chaos/", "demo/"))]


def test_the_wheel_names_its_licence_and_project_urls_and_holds_the_app(built):
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = set(wheel.namelist())
        metadata = next(
            wheel.read(name).decode() for name in names if name.endswith(".dist-info/METADATA")
        )
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    for label in ("Homepage", "Documentation", "Repository", "Issues", "Changelog"):
        assert f"Project-URL: {label}, https://" in metadata, label
    assert any(name.endswith("/licenses/LICENSE") for name in names)
    for part in (
        "container_manager/migrations/0003_version_2.py",
        "container_manager/templates/admin/container_manager/containerjob/change_list.html",
        "container_manager/static/container_manager/admin.css",
        "container_manager/management/commands/queue_status.py",
    ):
        assert part in names, part
    assert not [name for name in names if name.startswith("tests/")]
