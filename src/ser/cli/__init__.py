"""The `ser` command: one Typer app, a module per command group.

The commands are thin: they parse arguments, call the library, and print.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ser import __version__
from ser.cli._help import readable_types
from ser.errors import SerError

console = Console()
err_console = Console(stderr=True)

def parse_settings(pairs: list[str], flag: str) -> dict:
    """``["n_mels=40", "name=x"]`` -> ``{"n_mels": 40, "name": "x"}`` (values read as JSON when
    they parse, else kept as text)."""
    import json

    config = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SerError(f"{flag} needs KEY=VALUE, got {pair!r}")
        try:
            config[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            config[key.strip()] = value
    return config


#: The --model option of every command that recognises speech.
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="A bundle folder, or a model shipped with ser: 'default' (the "
    "accurate one, used when omitted) or 'fast' (smaller and faster, less accurate).")]

UncertainOpt = Annotated[float | None, typer.Option(
    "--uncertain-below", min=0.0, max=1.0,
    help="Flag answers whose (calibrated) confidence is below this as uncertain (default: "
    "the model's threshold, chosen on validation speakers; 0: never).")]

# Help texts are Rich markup: a literal "[" is written "\\[" (as in 'ser\\[egemaps]');
# tests/test_cli_help.py checks every help text prints as written.
readable_types()

app = typer.Typer(
    name="ser",
    help=(
        "Speech emotion recognition: scan corpora, extract features, train and evaluate "
        "models, and recognise emotion in files, long recordings, a microphone or a browser.\n\n"
        "Start with:  ser predict clip.wav"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        console.print(f"ser {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Speech emotion recognition."""


def _register() -> None:
    # Each command group lives in its own module and adds itself to `app`; this order is
    # the order `ser --help` lists them in: what users run first, then research.
    for name in ("predict", "serve", "adapt", "data", "features", "train"):
        importlib.import_module(f"ser.cli.{name}")


_register()


def main() -> None:
    """Entry point: run the app, turning user errors into one clear line and exit code 2."""
    try:
        app()
    except SerError as exc:
        # soft_wrap: the message stays one line however narrow the terminal; escape: a
        # path or reason containing [brackets] is text, not markup.
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)
    except Exception as exc:  # last resort: never a bare traceback for the user
        if os.environ.get("SER_DEBUG"):
            raise
        from ser.extras import extra_providing

        extra = extra_providing(exc.name) if isinstance(exc, ModuleNotFoundError) else None
        if extra:  # a path that skipped its `require` check: still name the extra
            err_console.print(f"[bold red]error:[/] {escape(str(exc.name))} is not installed: "
                              f"pip install 'ser\\[{extra}]'", soft_wrap=True)
            sys.exit(2)
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}\n"
            "Run again with SER_DEBUG=1 for the traceback, and please report it."
        )
        sys.exit(1)
