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
