"""An image with this test run's Python, its packages and the project, made without a registry.

The tasks backend runs ``python -m container_manager.tasks`` in the job's
container, so the test needs an image where the project and Django are
installed. It is made from the files this very process runs on: the
interpreter (``sys.base_prefix``), the virtual environment (``sys.prefix``,
without the test and lint tools), the project's code, and the shared
libraries that ``ldd`` says they load, each at its own path, packed with
``tarfile`` and loaded with ``docker import``. The tag carries a digest of
what went in, so an unchanged tree reuses the image.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = "container-manager-test/python"
#: Top-level names in site-packages that a task never imports (tools of the test run).
LEFT_OUT = (
    "playwright",
    "mypy",
    "mypyc",
    "ruff",
    "hypothesis",
    "django-stubs",
    "django_stubs",
    "_pytest",
    "pytest",
    "pip",
    "setuptools",
    "pygments",
    "yaml",
    "greenlet",
    "mypy_extensions",
    "py_spy",
)
STDLIB_LEFT_OUT = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data"}


def _walk(top: Path, skip_dir) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(top):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not skip_dir(base / d) and d != "__pycache__"]
        yield base
        for name in filenames:
            if not name.endswith((".pyc", ".a")) and not name.startswith("_tkinter"):
                yield base / name


def _files() -> list[Path]:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base, venv = Path(sys.base_prefix), Path(sys.prefix)
    stdlib = base / "lib" / version
    site = venv / "lib" / version / "site-packages"
    found: list[Path] = []
    found += _walk(base / "bin", lambda d: True)
    found += _walk(
        stdlib,
        lambda d: (d.parent == stdlib and d.name in STDLIB_LEFT_OUT) or d.name == "site-packages",
    )
    found += [p for p in (base / "lib").glob("libpython*.so*")]
    found += [venv / "pyvenv.cfg", *(venv / "bin").glob("python*")]
    found += _walk(
        site,
        lambda d: (
            d.parent == site
            and any(d.name.lower() == n or d.name.lower().startswith(f"{n}-") for n in LEFT_OUT)
        ),
    )
    for part in ("container_manager", "demo", "tests"):
        found += _walk(ROOT / part, lambda d: d.name in ("node_modules", "artifacts"))
    found.append(ROOT / "manage.py")
    return [p for p in found if p.exists() or p.is_symlink()]


def _libraries(files: list[Path]) -> set[Path]:
    """The shared libraries (and the loader) that the binaries among ``files`` load."""
    binaries = [str(p) for p in files if p.is_file() and (p.suffix == ".so" or ".so." in p.name)]
    binaries.append(os.path.realpath(sys.executable))
    needed: set[Path] = set()
    for start in range(0, len(binaries), 200):
        out = subprocess.run(
            ["ldd", *binaries[start : start + 200]], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            line = line.strip()
            if line.endswith(":"):
                continue  # the name of the next binary, when ldd is given several
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" (", 1)[0]
            elif line.startswith("/"):
                target = line.split(" (", 1)[0]
            else:
                continue
            if target.startswith("/"):
                needed.add(Path(os.path.normpath(target)))
                needed.add(Path(os.path.realpath(target)))
    return needed


def _with_link_targets(paths: set[Path]) -> set[Path]:
    """``paths`` and, for each symbolic link among them, the path it points to (to the end)."""
    result = set(paths)
    todo = [p for p in paths if p.is_symlink()]
    while todo:
        link = todo.pop()
        target = Path(os.path.normpath(link.parent / os.readlink(link)))
        if target not in result and (target.exists() or target.is_symlink()):
            result.add(target)
            if target.is_symlink():
                todo.append(target)
    return result


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.lstat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build(client) -> str:
    """Return the tag of the image, importing it first when it is not there yet."""
    files = _files()
    everything = sorted(_with_link_targets(set(files) | _libraries(files)))
    tag = f"{REPOSITORY}:{sys.version_info.major}.{sys.version_info.minor}-{_digest(everything)}"
    if client.images.list(name=tag):
        return tag
    for image in client.images.list(name=REPOSITORY):
        client.images.remove(image.id, force=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        added: set[str] = set()
        for path in everything:
            for parent in reversed(path.parents[:-1]):
                name = str(parent).lstrip("/")
                if name not in added:
                    added.add(name)
                    info = tarfile.TarInfo(name)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    tar.addfile(info)
            name = str(path).lstrip("/")
            if name not in added:
                added.add(name)
                tar.add(path, arcname=name, recursive=False)
        if "tmp" not in added:  # the environment may itself live under /tmp
            info = tarfile.TarInfo("tmp")
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777
            tar.addfile(info)
    client.api.import_image_from_data(
        buffer.getvalue(), repository=REPOSITORY, tag=tag.split(":")[1]
    )
    return tag
