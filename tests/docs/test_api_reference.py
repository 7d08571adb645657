"""Every public name of container_manager has an entry in docs/api-reference.md.

The names are found by introspection (``tests/docs/public_api.py``): a new
public class, function, method, property, model field, setting, signal or
exception without documentation fails here.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

from tests.docs import public_api
from tests.docs.test_doc_examples import DOCS

REFERENCE = DOCS / "api-reference.md"


@cache
def reference_text() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def is_documented(name: str) -> bool:
    """``name`` appears in code spelling: `` `name``, `` `Class.name`` or `` `module.name``."""
    pattern = r"`(?:[\w.]*\.)?" + re.escape(name) + r"(?![\w])"
    return re.search(pattern, reference_text()) is not None


def test_every_module_is_classified_public_or_internal():
    known = (
        set(public_api.PUBLIC_MODULES) | set(public_api.INTERNAL_MODULES) | {"container_manager"}
    )
    assert set(public_api.all_modules()) - known == set()
    assert known - {"container_manager"} <= set(public_api.all_modules())


def test_every_public_name_has_an_entry():
    names = public_api.public_names()
    assert len(names) > 150  # the introspection found the package's surface
    missing = [q for q, spellings in names.items() if not any(map(is_documented, spellings))]
    assert not missing, "No entry in docs/api-reference.md for: " + ", ".join(missing)


def test_every_setting_has_an_entry():
    missing = [key for key in public_api.settings_keys() if not is_documented(key)]
    assert not missing, "Settings without an entry: " + ", ".join(missing)


def test_every_signal_the_worker_handles_has_an_entry():
    signals = public_api.worker_signals()
    assert {"SIGTERM", "SIGINT", "SIGUSR1"} <= set(signals)
    assert [name for name in signals if not is_documented(name)] == []


def test_the_check_accepts_code_spelling_only():
    assert is_documented("queue_job")
    assert not is_documented("definitely_not_a_documented_name")


def code_defaults() -> dict[str, object]:
    """``conf.DEFAULTS`` as written in conf.py (the test run patches a few at run time)."""
    import container_manager.conf

    tree = ast.parse(Path(container_manager.conf.__file__).read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "DEFAULTS":
            assert node.value is not None
            return eval(
                compile(ast.Expression(node.value), "conf.py", "eval"), {"__builtins__": {}}
            )
    raise AssertionError("DEFAULTS not found in conf.py")


def test_the_settings_table_gives_each_key_its_real_default():
    table = reference_text().split("| key | default | meaning |", 1)[1].split("\n\n", 1)[0]
    documented = {
        key: ast.literal_eval(default)
        for key, default in re.findall(r"^\| `(\w+)` \| `([^`]+)`", table, flags=re.M)
    }
    assert documented == code_defaults()
