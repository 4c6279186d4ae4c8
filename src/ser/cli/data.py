"""`ser data`: what is in a folder of corpora, and how to get corpora."""

from __future__ import annotations

import typer

from ser.cli import app

data_app = typer.Typer(help="Scan and download emotional-speech corpora.", no_args_is_help=True)
app.add_typer(data_app, name="data")
