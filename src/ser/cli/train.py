"""`ser train`, `ser evaluate`, `ser export`: fit models honestly, score bundles, export ONNX."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from ser.cli import app, console, parse_settings
from ser.errors import SerError
from ser.models import MODELS


@app.command(epilog="Example:  ser train ~/corpora --model cnn --protocol kfold-speaker "
             "--out runs/cnn")
def train(
    data: Annotated[list[Path], typer.Argument(help="Corpus folders (or manifests).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumes if it exists).")],
    model: Annotated[str, typer.Option(help=" | ".join(MODELS))] = "cnn",
    protocol: Annotated[str, typer.Option(
        help="speaker | kfold-speaker | cross-corpus | seed (LEAKY, the seed's recipe)")
    ] = "speaker",
    labels: Annotated[str, typer.Option(help="Label set: default (six), all, or a,b,c")
                      ] = "default",
    epochs: Annotated[int | None, typer.Option(help="Most epochs (default: per model).")
                      ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (splits, init, batches).")] = 0,
    jobs: Annotated[int | None, typer.Option(help="Threads/processes (default 2).")] = None,
    folds: Annotated[int, typer.Option(help="kfold-speaker: number of folds.")] = 5,
    test_corpus: Annotated[list[str] | None, typer.Option(
        "--test-corpus", help="cross-corpus: corpus to test on (repeatable).")] = None,
    corpus: Annotated[list[str] | None, typer.Option(
        "--corpus", help="Only these corpora/readers (repeatable).")] = None,
    features: Annotated[str | None, typer.Option(
        help="Feature set (default per model: " + ", ".join(
            f"{m.name} {m.feature_set}" for m in MODELS.values()) + ").")
    ] = None,
    augment: Annotated[str | None, typer.Option(
        help="Training augmentations, comma-separated, or 'none' (default per model); "
             "'degrade' adds a noisy/babbling/reverberant/telephone/codec/clipped copy of "
             "each clip, half of them through another microphone's colouring; 'babble' "
             "a copy with other talkers behind (needs --babble); 'room' a copy in a "
             "simulated room; 'talker' a copy through another vocal tract (formants moved, "
             "pitch kept); a name given twice adds two copies (fresh draws). The shipped "
             "default model: degrade,degrade,babble,room,talker.")
    ] = None,
    noise: Annotated[Path | None, typer.Option(
        help="Folder of recorded noise for --augment degrade (its training part is used).")
    ] = None,
    babble: Annotated[Path | None, typer.Option(
        help="Folder of speech of other speakers (none in the training data, none in a "
             "benchmark's babble) for --augment degrade's babble and --augment babble, "
             "4 voices at a time.")
    ] = None,
    option: Annotated[list[str], typer.Option(
        "--option", help="Feature-set setting KEY=VALUE, e.g. layer=4 (repeatable).")
    ] = [],  # noqa: B006
    hyper: Annotated[list[str], typer.Option(
        "--set", help="Model setting KEY=VALUE, e.g. C=0.1 or dropout=0.5 (repeatable).")
    ] = [],  # noqa: B006
    final: Annotated[bool, typer.Option(
        help="kfold-speaker: refit on all speakers for the bundle.")] = True,
    cache_dir: Annotated[Path | None, typer.Option(help="Feature cache folder.")] = None,
) -> None:
    """Train a model under an evaluation protocol; write reports and a bundle to --out.

    The run folder gets report.md, metrics.json, confusion_matrix.png, predictions.csv,
    bundle/ and, for the neural models (cnn, seed-resnet1d), curves.png. Rerunning the
    same command continues a killed run from its last checkpoint.
    """
    from ser.labels import parse_label_set
    from ser.training import TrainOptions
    from ser.training import train as run

    try:
        label_set = parse_label_set(labels)
    except ValueError as exc:
        raise SerError(str(exc)) from None
    aug = None if augment is None else tuple(
        a.strip() for a in augment.split(",") if a.strip() and a.strip() != "none")
    opts = TrainOptions(model=model, protocol=protocol, labels=label_set, epochs=epochs,
                        seed=seed, folds=folds, test_corpora=tuple(test_corpus or ()),
                        corpora=tuple(corpus) if corpus else None, feature_set=features,
                        feature_options=parse_settings(option, "--option"),
                        hyper=parse_settings(hyper, "--set"), augment=aug, final=final,
                        noise_dir=str(noise.resolve()) if noise else None,
                        babble_dir=str(babble.resolve()) if babble else None)
    result = run(data, opts, out, cache_dir=cache_dir, jobs=jobs, console=console)
    _summary(result, out)


def _summary(result: dict, out: Path) -> None:
    m = result["metrics"]
    if result.get("protocol", {}).get("leaky"):
        console.print("[bold yellow]LEAKY protocol: this figure overstates accuracy on new "
                      "speakers[/]")
    for warning in result.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    folds = result.get("folds")
    if folds:
        console.print(f"[bold]UAR {folds['uar_mean']:.1%} ± {folds['uar_std']:.1%}[/]  accuracy "
                      f"{folds['accuracy_mean']:.1%} ± {folds['accuracy_std']:.1%} "
                      f"({folds['folds']} folds)")
    else:
        console.print(f"[bold]UAR {m['uar']:.1%}[/]  accuracy {m['accuracy']:.1%}  (n={m['n']})")
    for name, row in m.get("per_corpus", {}).items():
        console.print(f"  {name}: UAR {row['uar']:.1%}  accuracy {row['accuracy']:.1%}  "
                      f"n={row['n']}")
    timings = result.get("timings", {})
    if timings:
        console.print("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    console.print(f"report: {escape(str(out / 'report.md'))}")


@app.command(epilog="Examples:  ser evaluate runs/cnn/bundle ~/corpora/savee --out eval/savee\n\n"
             "ser evaluate default ~/corpora/savee --conditions standard --noise ~/noise "
             "--babble ~/corpora/ravdess --out eval/robust")
def evaluate(
    bundle: Annotated[Path, typer.Argument(
        help="A bundle folder, a run folder, or a shipped model's name.")],
    data: Annotated[list[Path], typer.Argument(help="Labelled corpus folders or label trees.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")] = Path("evaluation"),
    jobs: Annotated[int, typer.Option(help="Files scored in parallel.")] = 2,
    conditions: Annotated[str | None, typer.Option(
        help="Also score under degradations: 'standard' (the benchmark set) or a comma "
             "list of white:SNR babble:SNR noise:SNR room:RT60 telephone mp3:KBPS opus:KBPS "
             "gain:DB clip:DB, e.g. white:10,room:0.8,mp3:32 (SNR in dB, RT60 in s).")] = None,
    noise: Annotated[Path | None, typer.Option(
        help="Folder of recorded noise for noise:SNR (its evaluation third is used).")] = None,
    babble: Annotated[list[Path] | None, typer.Option(
        help="Speech of speakers NOT in the test data, for babble:SNR (repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the degradations (and of --per-speaker).")
                    ] = 0,
    per_speaker: Annotated[int | None, typer.Option(
        help="Score at most N utterances per speaker (every speaker and label kept).")] = None,
) -> None:
    """Score a bundle on labelled data: metrics.json, report.md, confusion matrix; with
    --conditions, a robustness table (UAR per condition, drop from clean) and robustness.png."""
    from ser.evaluation import evaluate_bundle
    from ser.inference import resolve_bundle

    result = evaluate_bundle(_bundle_dir(resolve_bundle(bundle)), data, out, jobs=jobs,
                             console=console, conditions=conditions, noise=noise,
                             babble=babble or (), seed=seed, per_speaker=per_speaker)
    _summary(result, out)
    for row in result.get("robustness", {}).get("table", [])[1:]:
        console.print(f"  {row['condition']:<11} UAR {row['uar']:.1%}  "
                      f"({-100 * row['drop']:+.1f} points)")


def _bundle_dir(path: Path) -> Path:
    return path / "bundle" if (path / "bundle" / "model.json").exists() else path


@app.command(epilog="Example:  ser export runs/cnn --onnx model.onnx")
def export(
    source: Annotated[Path, typer.Argument(help="A run folder or a bundle folder.")],
    onnx: Annotated[Path, typer.Option("--onnx", help="Where to write the ONNX graph.")],
) -> None:
    """Copy a bundle's ONNX graph (input `features`, normalised; output `probabilities`).

    The normalisation statistics and feature settings stay in the bundle's model.json.
    """
    from ser.bundle import load_bundle

    b = load_bundle(_bundle_dir(source))
    if b.is_ensemble:
        raise SerError(f"{b.path} is an ensemble: each member has its own graph under "
                       f"{b.path / 'members'}; export a member folder instead")
    onnx.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(b.onnx_path, onnx)
    console.print(f"wrote {escape(str(onnx))} (normalisation and feature set: "
                  f"{escape(str(b.path / 'model.json'))})")


@app.command(epilog="Example:  ser ensemble runs/logreg runs/cnn --out runs/logreg+cnn "
             "--weights 1,1")
def ensemble(
    runs: Annotated[list[Path], typer.Argument(
        help="Run folders of `ser train` on the same data, protocol and seed.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the ensemble's run.")],
    weights: Annotated[str | None, typer.Option(
        help="One weight per run, comma-separated (default: equal). Fix them before looking "
             "at test figures: they are not tuned here.")] = None,
) -> None:
    """Average several runs' probabilities: the ensemble's report, and one bundle of all.

    Each fold's stored test probabilities are combined (no refitting), so the figure is as
    speaker-independent as the runs'. The bundle copies each run's bundle under members/.
    """
    from ser.ensemble import combine_runs

    try:
        w = None if weights is None else [float(x) for x in weights.split(",")]
    except ValueError:
        raise SerError(f"--weights must be numbers separated by commas, not {weights!r}"
                       ) from None
    result = combine_runs(runs, out, w, log=console.print)
    _summary(result, out)
