"""The deployment files parse, and every worker command line in them is valid.

Command lines are checked with the real command's parser and its own
validation, in the systemd unit, the compose file, the Kubernetes manifests
and the ```bash blocks of the docs.
"""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.management import CommandError, load_command_class

from tests.docs.test_doc_examples import DOCS, doc_files, extract_blocks

ROOT = DOCS.parent
DEPLOY = ROOT / "deploy"
COMMAND = "process_container_jobs"


def parse_command_line(argv: list[str]) -> dict[str, Any]:
    """Parse the arguments after ``process_container_jobs`` as the command would.

    Raises:
        CommandError: the parser or the command's own validation refused them.
    """
    command = load_command_class("container_manager", COMMAND)
    parser = command.create_parser("manage.py", COMMAND)
    options = vars(parser.parse_args(argv))
    command.validate(options)
    return options


def worker_argv(words: list[str]) -> list[str] | None:
    """The arguments of the first ``process_container_jobs`` in ``words``, if any."""
    if COMMAND not in words:
        return None
    return words[words.index(COMMAND) + 1 :]


def bash_command_lines(text: str) -> list[str]:
    """The lines of a shell snippet, continuations joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    return [
        line for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]


def systemd_units() -> list[Path]:
    return sorted((DEPLOY / "systemd").glob("*.service"))


def yaml_files() -> list[Path]:
    return sorted(DEPLOY.glob("*.yaml")) + sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def yaml_commands(node: object) -> list[list[str]]:
    """Every ``command`` of a compose service or container spec, as argv lists."""
    found: list[list[str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("command", "args") and isinstance(value, str):
                found.append(shlex.split(value))
            elif key in ("command", "args") and isinstance(value, list):
                found.append([str(word) for word in value])
            else:
                found.extend(yaml_commands(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(yaml_commands(item))
    return found


def test_the_parser_accepts_a_good_line_and_refuses_bad_ones():
    assert parse_command_line(["--queue-mode", "--max-concurrent=3"])["max_concurrent"] == 3
    with pytest.raises(CommandError, match="unrecognized arguments"):
        parse_command_line(["--queue-mode", "--max-concurent=3"])
    with pytest.raises(CommandError, match="only applies to --queue-mode"):
        parse_command_line(["--once"])


@pytest.mark.parametrize("unit", systemd_units(), ids=lambda p: p.name)
def test_systemd_unit_parses_and_its_command_is_valid(unit):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    argv = worker_argv(shlex.split(parser["Service"]["ExecStart"]))
    assert argv is not None, "ExecStart does not run the worker"
    assert parse_command_line(argv)["queue_mode"]
    assert parser["Service"]["KillSignal"] == "SIGTERM"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.name)
def test_yaml_file_parses_and_its_commands_are_valid(path):
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    assert documents
    for argv in filter(None, map(worker_argv, yaml_commands(documents))):
        assert parse_command_line(argv)["queue_mode"]


def test_the_kubernetes_worker_stops_gracefully_and_reads_its_settings():
    docs = {
        doc["kind"]: doc
        for path in (DEPLOY / "kubernetes").glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
    }
    assert {"Deployment", "ConfigMap", "Secret"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    argv = worker_argv(pod["containers"][0]["command"])
    assert argv is not None
    timeout = parse_command_line(argv)["timeout"]
    assert pod["terminationGracePeriodSeconds"] > timeout
    sources = {next(iter(ref.values()))["name"] for ref in pod["containers"][0]["envFrom"]}
    assert sources == {docs["ConfigMap"]["metadata"]["name"], docs["Secret"]["metadata"]["name"]}


def test_every_worker_command_line_in_the_docs_is_valid():
    checked = 0
    for path in doc_files():
        for block in extract_blocks(path):
            if block.language not in ("bash", "sh", "shell", "console"):
                continue
            for line in bash_command_lines(block.code):
                argv = worker_argv(shlex.split(line.lstrip("$ "), comments=True))
                if argv is None:
                    continue
                try:
                    parse_command_line(argv)
                except CommandError as exc:
                    pytest.fail(f"{path.name}:{block.line}: {line.strip()!r} is refused: {exc!r}")
                checked += 1
    assert checked >= 5


def is_subset(shown: object, full: object) -> bool:
    """True when every key and item of ``shown`` is in ``full`` (lists item by item)."""
    if isinstance(shown, dict) and isinstance(full, dict):
        return all(k in full and is_subset(v, full[k]) for k, v in shown.items())
    if isinstance(shown, list) and isinstance(full, list):
        return len(shown) <= len(full) and all(map(is_subset, shown, full))
    return shown == full


def deployment_blocks(language: str) -> list[str]:
    return [b.code for b in extract_blocks(DOCS / "deployment.md") if b.language == language]


def test_the_systemd_unit_shown_in_the_docs_is_the_file():
    def parse(text: str) -> dict[str, dict[str, str]]:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(text)
        return {name: dict(parser[name]) for name in parser.sections()}

    [shown] = deployment_blocks("ini")
    assert parse(shown) == parse(
        (DEPLOY / "systemd" / "django-queue-processor.service").read_text()
    )


def test_the_yaml_shown_in_the_docs_is_part_of_the_files():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    worker = yaml.safe_load((DEPLOY / "kubernetes" / "worker.yaml").read_text())
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "scrape.yaml").read_text())
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    shown = [yaml.safe_load(code) for code in deployment_blocks("yaml")]
    assert len(shown) == 4
    assert is_subset(shown[0], compose)
    assert is_subset(shown[1], worker)
    assert is_subset(shown[2], scrape)
    assert is_subset(shown[3], alerts)


def test_the_alerts_name_only_metrics_that_exist():
    from container_manager.metrics import PREFIX

    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yaml").read_text())
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    assert rules
    docs = (DEPLOY.parent / "docs" / "deployment.md").read_text()
    for rule in rules:
        assert rule["alert"]
        assert rule["expr"]
        for name in re.findall(rf"{PREFIX}_\w+", rule["expr"]):
            base = re.sub(r"_(bucket|count|sum|total)$", "", name)
            assert f"`{base}" in docs or f"`{name}" in docs, name


def test_is_subset_notices_a_changed_value():
    full = {"a": [{"b": 1, "c": 2}], "d": 3}
    assert is_subset({"a": [{"b": 1}]}, full)
    assert not is_subset({"a": [{"b": 9}]}, full)
    assert not is_subset({"e": 1}, full)
