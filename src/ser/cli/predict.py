"""`ser predict`: the emotion of audio files, folders, globs and long recordings."""

from __future__ import annotations

import csv
import glob
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ser.audio import is_audio
from ser.cli import ModelOpt, UncertainOpt, app, console, err_console
from ser.errors import SerError

if TYPE_CHECKING:  # imported lazily: onnxruntime is not needed for `ser --help`
    from ser.inference import Prediction, Segment

#: Batches larger than this get a progress bar and a timing summary.
BATCH = 3
COLOURS = {"angry": "#d62728", "disgust": "#8c9d2b", "fear": "#9467bd", "happy": "#ff9f1c",
           "neutral": "#7f7f7f", "sad": "#1f77b4"}


def expand_inputs(specs: list[str]) -> list[str]:
    """Files as given; folders searched recursively for audio; globs expanded (sorted).

    A spec that matches nothing is kept, so that it shows up as an error row.
    """
    out: list[str] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            out += sorted(str(f) for f in p.rglob("*")
                          if f.is_file() and is_audio(f))
        elif not p.exists() and glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            out += [m for m in matches if Path(m).is_file()] or [spec]
        else:
            out.append(spec)
    return list(dict.fromkeys(out))  # drop duplicates, keep order


def short_path(path: str) -> str:
    """A path as the table shows it: relative to the working folder when inside it."""
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return path
    return path


def plot_timeline(path: str, pred: Prediction, segments: list[Segment], sample_rate: int,
                  out: Path) -> None:
    """Waveform with each segment shaded in its emotion's colour (PNG via Agg).

    ``segments`` are drawn; the title gives ``pred``, the answer printed for the file (which
    need not be segmented: drawing a timeline does not change the answer)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ser.audio import load_audio

    y = load_audio(path, sr=sample_rate)
    t = [i / sample_rate for i in range(0, y.size, max(1, y.size // 20000))]
    wave = y[:: max(1, y.size // 20000)][: len(t)]
    fig, ax = plt.subplots(figsize=(12, 3.2), dpi=100)
    ax.plot(t, wave, color="black", linewidth=0.4)
    labels = list(pred.probabilities)
    palette = plt.get_cmap("tab10")
    colour = {lab: COLOURS.get(lab, palette(i % 10)) for i, lab in enumerate(labels)}
    for s in segments:
        ax.axvspan(s.start, s.end, color=colour[s.label], alpha=0.25 + 0.45 * s.confidence,
                   linewidth=0)
    used = list(dict.fromkeys(s.label for s in segments))
    if used:
        ax.legend(handles=[Patch(color=colour[lab], label=lab) for lab in used],
                  loc="upper right", ncol=len(used), fontsize=8)
    ax.set_xlim(0, y.size / sample_rate)
    ax.set_xlabel("time (s)")
    ax.set_yticks([])
    ax.set_title(f"{Path(path).name}: {pred.label} ({pred.confidence:.0%} overall)"
                 + ("" if segments else "; no speech segments found"))
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def _plot_name(plot: Path, path: str, many: bool) -> Path:
    return plot.with_name(f"{plot.stem}_{Path(path).stem}{plot.suffix}") if many else plot


def _print_tables(results: list[tuple[str, Prediction | Exception]], top: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    # The answer never wraps; a long path folds onto more lines instead.
    table.add_column("file", overflow="fold", ratio=3)
    table.add_column("emotion", no_wrap=True, min_width=7)
    table.add_column("confidence", justify="right", no_wrap=True)
    table.add_column("runner-up", ratio=2)
    for path, r in results:
        # Paths and messages are text, not markup: "take[1].wav" must print as it is.
        shown = escape(short_path(path))
        if isinstance(r, Exception):
            table.add_row(shown, "[red]error[/]", "", f"[red]{escape(_message(r))}[/]")
        else:
            rest = ", ".join(f"{lab} {p:.0%}" for lab, p in r.top(top)[1:])
            label = f"[yellow]{r.label}? (unsure)[/]" if r.uncertain else f"[bold]{r.label}[/]"
            table.add_row(shown, label, f"{r.confidence:.0%}", rest)
    console.print(table)
    for path, r in results:
        if isinstance(r, Exception) or not r.segments:
            continue
        timeline = Table(title=f"{escape(short_path(path))}: {len(r.segments)} speech segments",
                         show_edge=False,
                         header_style="bold")
        for col in ("start", "end", "emotion", "confidence", "runner-up"):
            timeline.add_column(col, justify="left" if col in ("emotion", "runner-up")
                                else "right")
        for s in r.segments:
            ranked = sorted(s.probabilities.items(), key=lambda kv: -kv[1])[1:top]
            timeline.add_row(f"{s.start:.2f}", f"{s.end:.2f}",
                             f"{s.label}? (unsure)" if s.uncertain else s.label,
                             f"{s.confidence:.0%}",
                             ", ".join(f"{lab} {p:.0%}" for lab, p in ranked))
        console.print(timeline)


def _message(exc: Exception) -> str:
    from ser.audio import AudioError

    if isinstance(exc, AudioError):
        return exc.reason  # the path is already in its own column
    if isinstance(exc, SerError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def _json_rows(results: list[tuple[str, Prediction | Exception]]) -> list[dict[str, Any]]:
    return [{"path": path, "error": _message(r)} if isinstance(r, Exception)
            else {"path": path, **r.to_dict()} for path, r in results]


def _write_csv(results: list[tuple[str, Prediction | Exception]], labels: list[str]) -> None:
    # One row per file; segmented files are followed by a row per segment (start/end set).
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["path", "start", "end", "label", "confidence", "uncertain", *labels, "error"])
    for path, r in results:
        if isinstance(r, Exception):
            w.writerow([path, "", "", "", "", "", *[""] * len(labels), _message(r)])
            continue
        w.writerow([path, "", "", r.label, f"{r.confidence:.4f}", int(r.uncertain),
                    *[f"{r.probabilities[lab]:.4f}" for lab in labels], ""])
        for s in r.segments or []:
            w.writerow([path, f"{s.start:.3f}", f"{s.end:.3f}", s.label, f"{s.confidence:.4f}",
                        int(s.uncertain), *[f"{s.probabilities[lab]:.4f}" for lab in labels],
                        ""])


def _print_timings(results: list[tuple[str, Prediction | Exception]], wall: float,
                   load: float) -> None:
    done = [r for _, r in results if not isinstance(r, Exception)]
    totals: dict[str, float] = {}
    for r in done:
        for stage, sec in r.timings.items():
            totals[stage] = totals.get(stage, 0.0) + sec
    per_file = ", ".join(f"{stage} {1000 * sec / len(done):.1f} ms"
                         for stage, sec in totals.items()) if done else "-"
    err_console.print(
        f"[dim]model load {load * 1000:.0f} ms · {len(results)} files in {wall:.2f} s "
        f"({len(results) / wall:.1f} files/s) · per file: {per_file}[/]"
    )


@app.command(epilog="Example:  ser predict clip.wav recordings/ \"*.mp3\" --json")
def predict(
    paths: Annotated[list[str], typer.Argument(
        help="Audio files, folders (searched recursively) or quoted globs such as "
        "\"calls/**/*.mp3\".")],
    model: ModelOpt = None,
    uncertain_below: UncertainOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array.")] = False,
    as_csv: Annotated[bool, typer.Option(
        "--csv", help="Print CSV (segments as extra rows).")] = False,
    segments: Annotated[bool | None, typer.Option(
        "--segments/--no-segments",
        help="Find speech with VAD and predict each segment (default: only for audio "
        "longer than 8 s).")] = None,
    smooth: Annotated[int, typer.Option(
        "--smooth", min=0,
        help="Average each segment's probabilities over N neighbouring segments.")] = 0,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Draw the waveform with its speech segments coloured by emotion to "
        "this PNG (one per input, NAME_<input>.png, when there are several). The answer "
        "printed is the same with or without it.")] = None,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", min=1, help="Files processed in parallel.")] = 2,
    top: Annotated[int, typer.Option(
        "--top", "-k", min=1, help="Emotions shown per file (the best and its runner-ups).")] = 3,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Print the timing of each stage.")] = False,
) -> None:
    """Recognise the emotion in speech recordings.

    Short clips get one label. Long recordings (or --segments) are cut into
    speech segments by a voice-activity detector, and each segment gets one.
    Confidences are calibrated; an answer below the model's threshold is
    marked "unsure". Input with too little speech gets no emotion.

    A bad file (or one without speech) gives an error row, and exit code 1
    at the end, without stopping the batch.
    """
    if as_json and as_csv:
        raise typer.BadParameter("choose one of --json and --csv")
    from ser.inference import Recognizer

    t0 = time.perf_counter()
    rec = Recognizer.load(model, uncertain_below=uncertain_below)
    load = time.perf_counter() - t0
    files = expand_inputs(paths)
    if not files:
        from ser.audio import AUDIO_EXTENSIONS

        raise SerError(f"no audio files in {', '.join(paths)} (audio files end in "
                       f"{', '.join(sorted(AUDIO_EXTENSIONS))})")
    t1 = time.perf_counter()
    stream = rec.predict_many(files, jobs=min(jobs, len(files)), segments=segments,
                              smooth=smooth)
    if len(files) > BATCH:
        from rich.progress import Progress

        with Progress(console=err_console, transient=True) as bar:
            task = bar.add_task("predicting", total=len(files))
            outcomes = []
            for r in stream:
                outcomes.append(r)
                bar.advance(task)
    else:
        outcomes = list(stream)
    wall = time.perf_counter() - t1
    results = list(zip(files, outcomes, strict=True))

    if plot is not None:
        for path, r in results:
            if not isinstance(r, Exception):
                # The drawing finds segments itself when the answer was not segmented.
                segs = r.segments if r.segments is not None else rec.predict_segments(path)
                plot_timeline(path, r, segs, rec.sample_rate,
                              _plot_name(plot, path, len(files) > 1))
    if as_json:
        sys.stdout.write(json.dumps(_json_rows(results), indent=2) + "\n")
    elif as_csv:
        _write_csv(results, rec.labels)
    else:
        _print_tables(results, top)
    if verbose or len(files) > BATCH:
        sys.stdout.flush()  # keep the summary (stderr) after the tables when both are piped
        _print_timings(results, wall, load)
    if any(isinstance(r, Exception) for _, r in results):
        raise typer.Exit(1)


@app.command(epilog="Example:  ser models   then   ser models fast   then   "
             "ser predict clip.wav --model fast")
def models(
    name: Annotated[str | None, typer.Argument(
        help="Show this model's card (what it was trained on, how it was measured, its "
        "licence).")] = None,
) -> None:
    """List the models shipped with ser: their measured accuracy and whether they can run."""
    from rich.markup import escape
    from rich.table import Table

    from ser.bundle import load_bundle
    from ser.features import feature_set_from_json
    from ser.inference import packaged_bundle_path, packaged_bundles

    if name is not None:
        card = packaged_bundle_path(name) / "MODEL_CARD.md"
        if not card.is_file():
            raise SerError(f"model {name!r} has no model card")
        from rich.markdown import Markdown

        console.print(Markdown(card.read_text()))
        return

    table = Table("--model", "architecture", "features", "trained on", "UAR (unseen speakers)",
                  "ready")
    problems = []
    for name in packaged_bundles():
        meta = load_bundle(packaged_bundle_path(name)).meta
        folds = meta.get("metrics", {}).get("folds") or {}
        uar = (f"{folds['uar_mean']:.1%} ± {folds['uar_std']:.1%} "
               f"({folds['folds']} folds)" if folds else "—")
        try:
            feature_set_from_json(meta["feature_set"])
            ready = "yes"
        except SerError as exc:
            ready = "no (below)"
            problems.append(f"{name}: {exc}")
        corpora = ", ".join(meta.get("training_data", {}).get("corpora", {})) or "?"
        table.add_row(name, meta["model"].get("architecture", "?"),
                      meta["feature_set"]["name"], corpora, uar, ready)
    console.print(table)
    for line in problems:
        console.print(escape(line))
    console.print("UAR: folds by speaker on the training data (no test speaker seen in "
                  "training). A model's card: ser models NAME")
