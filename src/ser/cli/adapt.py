"""`ser adapt`: a personal bundle from a few labelled clips of one person."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ser.cli import ModelOpt, app, console


@app.command(epilog="Example:  ser adapt my-clips/ --out me/   then   "
             "ser predict clip.wav --model me/")
def adapt(
    clips: Annotated[list[Path], typer.Argument(
        help="A folder with one sub-folder per emotion (angry/, happy/, …), or a CSV "
        "path,label — clips of ONE person, every emotion of the model at least once.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the personal bundle.")],
    model: ModelOpt = None,
    strength: Annotated[float | None, typer.Option(
        help="Pull toward the base model (larger: the clips move it less). Default: 100 "
        "for a linear model's layer, 1 for the output map of any other.",
        min=1e-6, show_default=False)] = None,
) -> None:
    """Adapt a model to one person's voice from a few labelled clips.

    The personal bundle is centred on the person's own voice (the mean of their clips),
    and refitted on the clips, pulled toward the base model: a linear model's layer, or a
    map of the answers of any other (an SVM keeps its graph). Use it as
    --model OUT with the predict, live and serve commands. The shipped models adapt (an
    ensemble or a cnn does not); two clips per emotion is a good start (docs/RESULTS.md).
    """
    from ser.adapt import adapt_bundle, clips_from
    from ser.bundle import load_bundle
    from ser.inference import resolve_bundle

    labels = load_bundle(resolve_bundle(model)).labels
    found = clips_from(clips, labels)
    bundle = adapt_bundle(model, found, out, alpha=strength)
    counts = bundle.meta["adapted"]["clips"]
    console.print(f"personal bundle written to {escape(str(out))} from "
                  f"{len(found)} clips (" + ", ".join(f"{k} {v}" for k, v in counts.items())
                  + f"; {bundle.meta['adapted']['method']}); use it with "
                  f"--model {escape(str(out))}")
