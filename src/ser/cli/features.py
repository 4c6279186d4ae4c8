"""`ser features`: extract a feature set for every file of a corpus or manifest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ser.cli import app, console, err_console, parse_settings
from ser.errors import SerError
from ser.features.base import feature_set_names

features_app = typer.Typer(
    help="Extract feature sets (" + ", ".join(feature_set_names()) + ") for every file of "
    "corpora or manifests, cached and in parallel.\n\n"
    "Example:  ser features extract ~/corpora/ravdess --set functionals --out feats.parquet",
    no_args_is_help=True)
app.add_typer(features_app, name="features")

_MAX_FAILED_ROWS = 15


@features_app.command("extract")
def extract_cmd(
    data: Annotated[list[Path], typer.Argument(help="Corpus folders and/or manifest files.")],
    out: Annotated[Path, typer.Option("--out", "-o",
                                      help="Output: .parquet/.csv (vector sets) or .npz.")],
    feature_set: Annotated[str, typer.Option(
        "--set", "-s", help="Feature set: " + ", ".join(feature_set_names()) + " (egemaps needs "
        "pip install 'ser\\[egemaps]').")] = "seed178",
    option: Annotated[list[str], typer.Option(
        "--option", help="Feature-set setting KEY=VALUE, e.g. n_mels=40 (repeatable).")] = [],  # noqa: B006
    augment: Annotated[str | None, typer.Option(
        help="Augment first: noise, stretch_pitch, shift, gain or a+b. Training data only!")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for --augment.")] = 0,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j",
                                             help="Worker processes (default: all cores).")
                    ] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Run on a Dask cluster, e.g. tcp://host:8786.")] = None,
    cache: Annotated[Path | None, typer.Option(
        help="Cache folder (default ~/.cache/ser/features; SER_CACHE_DIR overrides).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the cache.")
                        ] = False,
    corpus: Annotated[list[str], typer.Option(
        "--corpus", help="Read DATA as this corpus (repeatable); default: autodetect.")] = [],  # noqa: B006
    labels: Annotated[str, typer.Option(
        help="Label set: 'default' (six emotions), 'all', or e.g. 'angry,sad'.")] = "default",
) -> None:
    """Extract features for every labelled file, cached and in parallel.

    Example:  ser features extract ~/corpora/ravdess --set seed178 --out feats.parquet
    """
    from ser.corpora import scan
    from ser.extras import require
    from ser.features import extract, get_feature_set
    from ser.labels import parse_label_set

    fs = get_feature_set(feature_set, **parse_settings(option, "--option"))
    if fs.extra:
        require(fs.extra, purpose=f"the {fs.name} feature set")
    if scheduler:
        require("train", "distributed", purpose="--scheduler (Dask)")
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv", ".npz") or (fs.kind != "vector" and suffix != ".npz"):
        raise SerError(f"{out}: {fs.name} is written as "
                       f"{'.parquet, .csv or .npz' if fs.kind == 'vector' else '.npz'}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        label_set = parse_label_set(labels)
    except ValueError as exc:
        raise SerError(str(exc)) from None
    result = scan(data, corpora=corpus or None, labels=label_set)
    timings["scan"] = time.perf_counter() - t0
    if not result.utterances:
        raise SerError(f"no labelled audio found in {', '.join(map(str, data))}")
    err_console.print(f"{len(result.utterances)} files, feature set {fs.name}"
                      + (f", augment {augment}" if augment else ""))
    table = extract(
        result.utterances, fs, augment=None if augment is None else _aug(augment, seed),
        cache_dir=False if no_cache else cache, n_jobs=jobs, scheduler=scheduler,
    )
    timings.update(table.timings)
    t0 = time.perf_counter()
    if len(table):
        table.save(out)
    timings["write"] = time.perf_counter() - t0

    if table.failed:
        failed = Table(title=f"{len(table.failed)} files skipped", title_justify="left")
        failed.add_column("file")
        failed.add_column("reason")
        for path, reason in table.failed[:_MAX_FAILED_ROWS]:
            failed.add_row(escape(path), escape(reason))
        if len(table.failed) > _MAX_FAILED_ROWS:
            failed.add_row(f"… and {len(table.failed) - _MAX_FAILED_ROWS} more", "")
        err_console.print(failed)
    s = table.stats
    stages = "  ".join(f"{k} {v:.1f}s" for k, v in timings.items())
    err_console.print(f"computed {s['computed']}, from cache {s['cached']}, "
                      f"failed {s['failed']}   [dim]{stages}[/]")
    if not len(table):
        raise SerError("every file failed; nothing written")
    console.print(f"wrote {escape(str(out))} ({len(table)} rows)")


def _aug(name: str, seed: int):
    from ser.augment import get_augmentation

    return get_augmentation(name, seed=seed)
