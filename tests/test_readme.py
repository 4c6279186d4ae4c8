"""The README's set-up commands are the ones CI runs."""

from pathlib import Path

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
