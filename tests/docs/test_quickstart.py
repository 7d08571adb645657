"""The README's quick start, followed word for word by a new user of the released wheel.

The steps are read from README.md, not copied here, so a change that breaks
them breaks this test. In a fresh virtual environment, step 1's ``pip install``
installs the wheel built from this checkout (``built``, conftest.py) with the
extras the README names: that substitution of the wheel for the name on the
package index is the only deviation. Its dependencies come from PyPI.

Then, in a fresh ``django-admin startproject`` outside the source tree, on
the project's default SQLite database and with nothing of the source tree
importable: the settings of step 1 (``...`` is what the project already
lists), ``python manage.py migrate``, step 2's blocks in ``python manage.py
shell``, step 3's worker until every queued job has ended, stopped with
Ctrl-C, and step 4's block, whose printed output must be the README's
comment. No command may print Django system-check warnings.
"""

from __future__ import annotations

import ast
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import missing_part
from tests.docs.test_doc_examples import Block, extract_blocks

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PACKAGE = "django-container-manager"
STEP = re.compile(r"^(\d+)\. ")
#: ``print(...)  # what it prints``: the output a block promises.
PROMISED = re.compile(r"^print\(.*\)\s+#\s*(.+?)\s*$")
#: What pip says when it cannot reach the package index.
OFFLINE = re.compile(
    r"NewConnectionError|ConnectTimeout|Max retries exceeded|Temporary failure in name "
    r"resolution|Network is unreachable|Could not fetch URL"
)
CHECK_WARNINGS = re.compile(r"System check identified|WARNINGS:|\b[a-z_]+\.W\d{3}\b")
JOB_ENDED = re.compile(r"\bJob (\d+) ended\b")


def quick_start(path: Path = README) -> tuple[dict[int, list[Block]], dict[int, str]]:
    """The code blocks and the prose of each numbered step of the README's quick start."""
    lines = path.read_text(encoding="utf-8").splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith("## Quick start"))
    end = next((n for n in range(start + 1, len(lines)) if lines[n].startswith("## ")), len(lines))
    starts = {n: int(m[1]) for n in range(start, end) if (m := STEP.match(lines[n]))}
    blocks: dict[int, list[Block]] = {number: [] for number in starts.values()}
    prose: dict[int, str] = dict.fromkeys(starts.values(), "")
    inside = False
    for n in range(min(starts), end):
        step = starts[max(s for s in starts if s <= n)]
        if lines[n].strip().startswith("```"):
            inside = not inside
        elif not inside:
            prose[step] += lines[n] + "\n"
    for block in extract_blocks(path):
        fence = block.line - 1
        if min(starts) < fence < end:
            blocks[starts[max(s for s in starts if s < fence)]].append(block)
    return blocks, prose


def commands(block: Block) -> list[list[str]]:
    """The commands of a ```bash block, one a line."""
    return [argv for line in block.code.splitlines() if (argv := shlex.split(line, comments=True))]


def with_wheel(argv: list[str], wheel: Path) -> list[str]:
    """``pip install "django-container-manager[extras]"`` with the wheel in place of the name."""
    pattern = re.compile(re.escape(PACKAGE) + r"(\[[\w,-]+\])?")
    found = [(n, m) for n, arg in enumerate(argv) if (m := pattern.fullmatch(arg))]
    if argv[:2] != ["pip", "install"] or len(found) != 1:
        raise ValueError(f"not an install of {PACKAGE}: {shlex.join(argv)}")
    ((n, match),) = found
    return [*argv[:n], f"{wheel}{match[1] or ''}", *argv[n + 1 :]]


def is_ellipsis(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is Ellipsis


def settings_lines(block: Block) -> str:
    """Step 1's settings, as lines appended to a project's settings.py.

    ``NAME = [..., "a", "b"]`` keeps what the project lists and adds what it
    lacks, in that order; any other ``...`` is a step this test cannot follow.
    """
    tree = ast.parse(block.code)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.List)
            and isinstance(target := node.targets[0], ast.Name)
            and any(is_ellipsis(element) for element in node.value.elts)
        ):
            existing = ast.Starred(ast.Name(target.id, ast.Load()), ast.Load())
            listed = ast.List(
                [existing if is_ellipsis(e) else e for e in node.value.elts], ast.Load()
            )
            once = ast.Call(ast.Attribute(ast.Name("dict", ast.Load()), "fromkeys"), [listed], [])
            node.value = ast.Call(ast.Name("list", ast.Load()), [once], [])
    code = ast.unparse(ast.fix_missing_locations(tree))
    if "..." in code or "Ellipsis" in code:
        raise ValueError(f"cannot follow:\n{block.code}")
    return "\n" + code + "\n"


def promised_output(code: str) -> list[str]:
    """What the ``print(...)  # ...`` lines of a block say they print."""
    return [m[1] for line in code.splitlines() if (m := PROMISED.match(line.strip()))]


def printed(output: str) -> list[str]:
    """The non-blank lines a shell printed, without trailing spaces."""
    return [line.rstrip() for line in output.splitlines() if line.strip()]


class Session:
    """A new user's terminal: the fresh virtual environment active, the project's folder."""

    def __init__(self, venv: Path, project: Path, scratch: Path) -> None:
        self.venv = venv
        self.project = project
        self.outputs: dict[str, str] = {}
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "DJANGO_", "VIRTUAL_ENV", "CM_"))
            and key != "DATABASE_URL"
        }
        env.update(
            VIRTUAL_ENV=str(venv),
            PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            # Output as a terminal shows it, line by line.
            PYTHONUNBUFFERED="1",
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            # The local executor's attempt folders go under the temporary
            # folder: this project's own, not the machine's shared /tmp.
            TMPDIR=str(scratch),
        )
        self.env = env

    def argv(self, argv: list[str]) -> list[str]:
        """The command with its program found on the session's ``PATH``, in the venv."""
        program = shutil.which(argv[0], path=self.env["PATH"])
        assert program is not None, argv
        assert Path(program).is_relative_to(self.venv), program
        return [program, *argv[1:]]

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(argv),
            cwd=self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        self.outputs[shlex.join(argv)] = done.stdout + done.stderr
        return done

    def ok(self, argv: list[str], timeout: float = 120) -> str:
        done = self.run(argv, timeout)
        assert done.returncode == 0, f"{shlex.join(argv)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout


class Worker:
    """A command that runs until Ctrl-C, its output read line by line as it comes."""

    def __init__(self, session: Session, argv: list[str]) -> None:
        self.name = shlex.join(argv)
        # A session of its own, as a terminal's foreground job: Ctrl-C reaches the group.
        self.proc = subprocess.Popen(
            session.argv(argv),
            cwd=session.project,
            env=session.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._new: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._new.put(line.rstrip("\n"))
        self._new.put(None)

    def wait_for_ends(self, job_ids: set[int], timeout: float) -> None:
        """Wait until the worker has logged the end of every job of ``job_ids``."""
        deadline = time.monotonic() + timeout
        ended: set[int] = set()
        while not job_ids <= ended:
            try:
                line = self._new.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                line = None
            if line is None:
                raise AssertionError(
                    f"jobs {sorted(job_ids - ended)} did not end within {timeout} s:\n"
                    + "\n".join(self.lines)
                )
            self.lines.append(line)
            if match := JOB_ENDED.search(line):
                ended.add(int(match[1]))

    def ctrl_c(self, timeout: float = 30) -> int:
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        while not self._new.empty():
            if (line := self._new.get_nowait()) is not None:
                self.lines.append(line)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def session(tmp_path: Path) -> Session:
    """A fresh virtual environment (without the package yet) and an empty project folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    project = tmp_path / "project"
    project.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    assert not project.is_relative_to(ROOT)
    return Session(venv, project, scratch)


def test_the_quick_start_is_read_step_by_step(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# P\n\n```bash\nmake demo\n```\n\n## Quick start in your project\n\n"
        "1. Install:\n\n   ```bash\n   pip install p  # the package\n   ```\n\n"
        "   ```python\n   print(1)  # 1\n   ```\n\n"
        "2. Run it (`Job 1 ended`):\n\n   ```bash\n   p run\n   ```\n\n"
        "   Stop it with Ctrl-C.\n\n## Features\n\n```bash\nmake test\n```\n"
    )
    blocks, prose = quick_start(readme)
    assert {step: [b.language for b in found] for step, found in blocks.items()} == {
        1: ["bash", "python"],
        2: ["bash"],
    }
    assert commands(blocks[1][0]) == [["pip", "install", "p"]]
    assert promised_output(blocks[1][1].code) == ["1"]
    assert "Stop it with Ctrl-C." in prose[2]
    assert "p run" not in prose[2]
    assert "make test" not in prose[2]


def test_pip_install_of_the_package_becomes_the_wheel_with_the_same_extras(tmp_path):
    wheel = tmp_path / "x.whl"
    assert with_wheel(["pip", "install", f"{PACKAGE}[postgres]"], wheel) == [
        "pip",
        "install",
        f"{wheel}[postgres]",
    ]
    assert with_wheel(["pip", "install", "-U", PACKAGE], wheel)[-1] == str(wheel)
    with pytest.raises(ValueError, match="not an install"):
        with_wheel(["pip", "install", "other-package"], wheel)


def test_settings_keep_the_projects_entries_and_add_the_readmes_once():
    block = Block(README, 1, "python", 'APPS = [..., "b", "c"]\nX = {"K": 1}\n', True)
    namespace: dict[str, object] = {"APPS": ["a", "b"]}
    exec(settings_lines(block), namespace)
    assert namespace["APPS"] == ["a", "b", "c"]
    assert namespace["X"] == {"K": 1}
    with pytest.raises(ValueError, match="cannot follow"):
        settings_lines(Block(README, 1, "python", 'X = {"K": ...}\n', True))


def test_the_readme_quick_start_works_word_for_word_in_a_fresh_project(built, session):
    blocks, prose = quick_start()
    assert sorted(blocks) == [1, 2, 3, 4], "the quick start's steps changed: follow them here"

    # 1. Install the package (the wheel, with the README's extras) and add the app.
    install, settings, migrate = blocks[1]
    assert [install.language, settings.language, migrate.language] == ["bash", "python", "bash"]
    (pip_install,) = commands(install)
    done = session.run(with_wheel(pip_install, built["wheel"]), timeout=300)
    if done.returncode != 0 and OFFLINE.search(done.stdout + done.stderr):
        missing_part(f"PyPI, for the dependencies ({done.stderr.strip()[-500:]})")
    assert done.returncode == 0, done.stdout + done.stderr
    where = session.ok(
        ["python", "-c", "import container_manager; print(container_manager.__file__)"]
    )
    assert Path(where.strip()).is_relative_to(session.venv), where
    session.ok(["django-admin", "startproject", "mysite", "."])
    settings_file = session.project / "mysite" / "settings.py"
    assert settings.code.startswith("# settings.py\n")
    with settings_file.open("a", encoding="utf-8") as file:
        file.write(settings_lines(settings))
    for argv in commands(migrate):
        session.ok(argv)

    # 2. Register where jobs run, and queue a job, in the shell.
    assert {block.language for block in blocks[2]} == {"python"}
    code = "".join(block.code for block in blocks[2])
    out = session.ok(["python", "manage.py", "shell", "-c", code])
    promised = promised_output(code)
    assert promised
    assert printed(out)[-len(promised) :] == promised
    listed = session.ok(
        [
            "python",
            "manage.py",
            "shell",
            "-c",
            "from container_manager.models import ContainerJob\n"
            "print(*ContainerJob.objects.filter(status='queued').values_list('pk', flat=True))",
        ]
    )
    queued = {int(pk) for pk in printed(listed)[-1].split()}
    assert queued

    # 3. Start a worker; once every job has ended, Ctrl-C.
    ((worker_argv,),) = [commands(block) for block in blocks[3]]
    worker = Worker(session, worker_argv)
    try:
        worker.wait_for_ends(queued, timeout=30)
        code_at_exit = worker.ctrl_c()
    finally:
        worker.stop()
    session.outputs[worker.name] = "\n".join(worker.lines)
    assert code_at_exit == 0, session.outputs[worker.name]
    quoted = re.findall(r"`(Job \d+ ended[^`]*)`", prose[3])
    assert quoted, "step 3 no longer quotes the line that tells a job has ended"
    assert [line for line in quoted if line not in session.outputs[worker.name]] == []

    # 4. Look at the result in a new shell.
    (look,) = blocks[4]
    out = session.ok(["python", "manage.py", "shell", "-c", look.code])
    promised = promised_output(look.code)
    assert promised
    assert printed(out)[-len(promised) :] == promised

    warned = {name: out for name, out in session.outputs.items() if CHECK_WARNINGS.search(out)}
    assert warned == {}
