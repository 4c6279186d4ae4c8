"""Every `--help` page: help texts print as written, types read cleanly, groups show examples."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ser.cli import app

runner = CliRunner()


def _commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    out: list[tuple[list[str], Any]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        out.append((path, cmd))
        if hasattr(cmd, "commands"):  # a group (Typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(root, [])
    return out


COMMANDS = _commands()


def _help(path: list[str]) -> str:
    res = runner.invoke(app, [*path, "--help"], terminal_width=250, env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    return res.output


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "ser" for p, _ in COMMANDS])
def test_help_prints_every_text_as_written(path, cmd):
    shown = _flat(_help(path))
    # Rich markup must not eat brackets: "pip install 'ser[egemaps]'" stays whole.
    texts = [p.help for p in cmd.params if getattr(p, "help", None)]
    for text in texts:
        assert _flat(text.replace("\\[", "[")) in shown, text
    # Types in the words of a command line, not Python's.
    for python_ism in ("<list[", "<bool>", "<int range>", "<str>", "<path>", "x>="):
        assert python_ism not in shown, (python_ism, shown)
    assert not re.search(r"\{\w+\}\.\.\.", shown), shown  # Typer's "{paths}..." usage


def test_feature_set_option_names_the_egemaps_extra():
    assert "pip install 'ser[egemaps]'" in _flat(_help(["features", "extract"]))


@pytest.mark.parametrize("group", ["data", "features"])
def test_groups_show_an_example(group):
    shown = _flat(_help([group]))
    assert "Example" in shown and f"ser {group} " in shown


def test_feature_set_option_lists_every_set():
    from ser.features import feature_set_names

    shown = _flat(_help(["features", "extract"]))
    for name in feature_set_names():
        assert name in shown.split("--set -s")[1].split("--option")[0], name


@pytest.mark.parametrize("path", [p for p, c in COMMANDS if p and not hasattr(c, "commands")],
                         ids=lambda p: " ".join(p))
def test_every_command_shows_an_example(path):
    # The README promises "Every command has --help with an example".
    shown = _flat(_help(path))
    assert "Example" in shown and "ser " + path[0] in shown.split("Example")[-1]
