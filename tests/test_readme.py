"""The README's set-up commands are the ones CI runs."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _marked_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text().splitlines()
    at = lines.index(f"<!-- {marker} -->")
    assert lines[at + 1].startswith("```")
    return lines[at + 2]


def test_ci_runs_exactly_the_readme_test_command():
    command = _marked_command("test-command")
    assert "pytest" in command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci_lines[-1] == command


def test_the_python_snippet_runs_as_written(tmp_path, monkeypatch):
    # The README's Python example, run on the shipped example clips: clip.wav is the sad
    # example, meeting.mp3 three examples in a row. Every name it uses must be defined.
    import re

    import numpy as np
    import soundfile as sf

    text = (ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    examples = ROOT / "src" / "ser" / "examples"
    sad, rate = sf.read(examples / "sad.flac", dtype="float32")
    sf.write(tmp_path / "clip.wav", sad, rate, subtype="PCM_16")
    parts = [sf.read(examples / f"{e}.flac", dtype="float32")[0] for e in ("angry", "sad", "happy")]
    gap = np.zeros(rate // 2, np.float32)
    sf.write(tmp_path / "meeting.mp3", np.concatenate([parts[0], gap, parts[1], gap, parts[2]]),
             rate, format="MP3")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    # The int16 array gives the file's answer (integer PCM is scaled, not read as huge floats).
    from_file = scope["rec"].predict("clip.wav")
    assert scope["p"].label == from_file.label == "sad"
    assert scope["p"].confidence == pytest.approx(from_file.confidence, abs=1e-3)


def test_readme_names_every_extra_and_system_package():
    import tomllib

    text = (ROOT / "README.md").read_text()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra in extras:
        assert f"| `{extra}` |" in text, extra
    ci = (ROOT / ".ci" / "run").read_text()
    packages = ci.split("--no-install-recommends")[1].split(">/dev/null")[0].split()
    packages = [p for p in packages if p != "\\"]
    assert "ffmpeg" in packages
    section = text.split("### Extras and system packages")[1].split("\n## ")[0]
    for package in packages:
        if package != "libsndfile1":  # comes with the soundfile wheel; CI installs it anyway
            assert f"`{package}`" in section, package


def test_commands_shown_name_real_models_options_and_sets():
    # Every `ser ...` line of the README and of the --help examples uses a command that
    # exists, options it has, a shipped model name where a name stands for a bundle, and a
    # model or feature set ser knows.
    import re
    import shlex

    import typer

    from ser.cli import app
    from ser.features import feature_set_names
    from ser.inference import packaged_bundles
    from ser.models import MODELS

    root = typer.main.get_command(app)
    lines = [line for block in re.findall(r"```\n(.*?)```", (ROOT / "README.md").read_text(),
                                          re.S) for line in block.splitlines()]
    for _path, cmd in _walk(root, []):
        lines += re.findall(r"(ser [^\n]*)", (cmd.epilog or "") + "\n" + (cmd.help or ""))
    checked = 0
    for line in lines:
        line = line.split("#")[0].strip()
        if not line.startswith("ser ") or "then" in line:
            continue
        words = shlex.split(line)[1:]
        cmd, at = root, 0
        while hasattr(cmd, "commands") and at < len(words) and words[at] in cmd.commands:
            cmd, at = cmd.commands[words[at]], at + 1
        assert not hasattr(cmd, "commands"), line
        known = {o for p in cmd.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]}
        for i, word in enumerate(words[at:], at):
            if word.startswith("-"):
                assert word.split("=")[0] in known, (line, word)
            prev = words[i - 1]
            if prev == "--model" and cmd.name in ("predict", "live", "serve") and "/" not in word:
                assert word in packaged_bundles(), (line, word)
            if prev == "--model" and cmd.name == "train":
                assert word in MODELS, (line, word)
            if prev in ("--set", "-s") and cmd.name == "extract":
                assert word in feature_set_names(), (line, word)
        if cmd.name in ("evaluate", "models") and len(words) > at and "/" not in words[at] \
                and not words[at].startswith("-"):
            assert words[at] in packaged_bundles(), line
        checked += 1
    assert checked >= 25


def _walk(cmd, path):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, [*path, name])
