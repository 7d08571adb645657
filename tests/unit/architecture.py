"""Reads the package's shape from its source: layers, imports, and who writes job state.

``tests/unit/test_architecture.py`` holds the package to docs/architecture.md
with these helpers: every module belongs to one layer, imports only its own
layer or lower ones (module-level, inside functions, or through
``importlib.import_module``), no modules import each other in a circle, and
only ``container_manager.queue`` (with the model methods it calls) writes a
job's status, lease, attempt, container, progress or result.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "container_manager"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

#: The layers, top first: a module may import its own layer and those below it.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry points", ("management", "admin", "api", "apps", "services", "tasks")),
    ("worker", ("worker",)),
    ("queue", ("queue", "notify", "stats", "operations", "metrics", "signals")),
    ("container layer", ("containers",)),
    ("executors", ("executors", "testing")),
    ("models", ("models", "migrations")),
    (
        "foundations",
        (
            "states",
            "conf",
            "exceptions",
            "classification",
            "retry",
            "environment",
            "logcap",
            "checks",
            "sqlite",
            "upgrade",
            "registries",
        ),
    ),
)

#: Where job state may be written: the queue, and the model whose guarded
#: methods (``transition_to``, ``mark_as_*``) and queryset it calls.
WRITERS = ("queue", "models")

#: Columns of a job that make up its state (docs/architecture.md, "Who writes what").
STATE_FIELDS = frozenset(
    {
        "status",
        "worker_id",
        "lease_expires_at",
        "attempt",
        "container_id",
        "progress",
        "current_step",
        "exit_code",
        "stdout",
        "stderr",
        "started_at",
        "completed_at",
        "launched_at",
        "queued_at",
        "scheduled_for",
        "retry_count",
        "last_error",
        "last_error_at",
        "error_code",
    }
)
#: Model methods that move a job.
STATE_METHODS = ("transition_to", "mark_as_")
#: The model whose rows hold job state.
JOB_MODEL = "ContainerJob"
JOB_TABLE = "container_manager_containerjob"


@dataclass(frozen=True)
class Finding:
    """One place that breaks the shape."""

    module: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line}: {self.what}"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``container_manager/queue/claims.py`` -> ``container_manager.queue.claims``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(path, root): path for path in sorted(root.rglob("*.py"))}


def layer_of(name: str) -> int | None:
    """Index in :data:`LAYERS` of the module ``name`` (0 is the top); None if unassigned."""
    if name == PACKAGE:
        return len(LAYERS) - 1
    first = name.split(".")[1]
    for index, (_, tops) in enumerate(LAYERS):
        if first in tops:
            return index
    return None


def _resolve(base: str, names: list[str], known: set[str]) -> Iterator[str]:
    """The modules an ``import`` or ``from base import names`` statement loads."""
    if not names:
        yield base
        return
    for name in names:
        full = f"{base}.{name}"
        yield full if full in known else base


def imports_of(source: str, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every package module a source imports, with the line: top-level, lazy, or importlib."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith(PACKAGE):
                for target in _resolve(node.module, [a.name for a in node.names], known):
                    yield target, node.lineno
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and str(node.args[0].value).startswith(PACKAGE)
        ):
            yield str(node.args[0].value), node.lineno


def import_graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` over the whole package."""
    found = modules(root)
    known = set(found)
    graph: dict[str, dict[str, int]] = {}
    for name, path in found.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(path.read_text(), known):
            if target != name and target in known:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def layer_findings(graph: dict[str, dict[str, int]]) -> list[Finding]:
    """Imports that run upwards, and modules that belong to no layer."""
    findings = []
    for name, edges in graph.items():
        own = layer_of(name)
        if own is None:
            findings.append(Finding(name, 1, "belongs to no layer of docs/architecture.md"))
            continue
        for target, line in edges.items():
            other = layer_of(target)
            if other is not None and other < own:
                findings.append(
                    Finding(
                        name,
                        line,
                        f"imports {target} ({LAYERS[other][0]}) from below ({LAYERS[own][0]})",
                    )
                )
    return findings


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every group of modules that import each other in a loop (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _chain_names(node: ast.AST) -> list[str]:
    """Names along an attribute/call chain: ``ContainerJob.objects.filter(...).update``."""
    names = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Name):
            names.append(node.id)
            return names
        else:
            return names


def state_writes(source: str, module: str) -> list[Finding]:
    """Places in ``source`` that write job state, by their shape in the syntax tree.

    Found: calls of ``transition_to`` and ``mark_as_*``; ``update()`` and
    ``bulk_update()`` on a ``ContainerJob`` queryset with a state column (or
    ``**`` fields, which may hold one); raw SQL that updates the job table.
    """
    findings = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            method = node.func.attr
            if method.startswith(STATE_METHODS):
                findings.append(Finding(module, node.lineno, f"calls {method}()"))
                continue
            if method in ("update", "bulk_update") and JOB_MODEL in _chain_names(node.func.value):
                fields = {k.arg for k in node.keywords}
                written = sorted(f for f in fields if f in STATE_FIELDS)
                if None in fields:
                    written.append("**fields")
                if method == "bulk_update" or written:
                    findings.append(
                        Finding(module, node.lineno, f"{method}() of {', '.join(written)}")
                    )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and "update" in node.value.lower()
            and JOB_TABLE in node.value.lower()
        ):
            findings.append(Finding(module, node.lineno, "raw SQL updating the job table"))
    return findings


def is_writer(module: str) -> bool:
    """True for the modules allowed to write job state (:data:`WRITERS`)."""
    parts = module.split(".")
    return len(parts) > 1 and parts[1] in WRITERS


def writer_findings(root: Path = ROOT) -> list[Finding]:
    """Writes of job state outside :data:`WRITERS`."""
    findings = []
    for name, path in modules(root).items():
        if not is_writer(name):
            findings.extend(state_writes(path.read_text(), name))
    return findings
