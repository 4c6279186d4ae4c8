"""Ensembles: the weighted mean of several trained models' class probabilities.

:func:`combine_runs` joins ``ser train`` run folders that were trained on the same data
under the same speaker-independent protocol (same seed, so the same folds). It averages
each fold's stored test probabilities — no refitting, nothing chosen on test speakers: the
weights are given up front (equal by default) — scores the result exactly like a run, and
packs the runs' bundles into one ensemble bundle (:func:`ser.bundle.save_ensemble`).

    >>> combine_runs(["runs/logreg", "runs/cnn"], "runs/logreg+cnn")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ser.bundle import load_bundle, save_ensemble
from ser.errors import SerError
from ser.evaluation import compute_metrics, licence_for, summarize_folds, write_reports

# Settings that must agree for the runs' test folds to be the same rows.
SAME = ("protocol", "labels", "seed", "folds", "test_corpora", "corpora")


class EnsembleError(SerError):
    """Runs that cannot be combined."""


def _config(run: Path) -> dict[str, Any]:
    try:
        return json.loads((run / "config.json").read_text())
    except FileNotFoundError:
        raise EnsembleError(f"{run}: not a `ser train` run folder (no config.json)") from None


def _splits(run: Path) -> list[str]:
    """Names of the run's finished splits that have test rows (the refit 'final' has none)."""
    names = sorted(d.name for d in run.iterdir()
                   if (d / "result.json").exists() and d.name != "final")
    if not names:
        raise EnsembleError(f"{run}: no finished splits (run `ser train` to the end first)")
    return names


def _test_probabilities(run: Path, split: str, labels: list[str]) -> pd.DataFrame:
    test = json.loads((run / split / "result.json").read_text()).get("test")
    if not test:
        raise EnsembleError(f"{run / split}: no test predictions")
    missing = [lab for lab in labels if f"p_{lab}" not in test]
    if missing:
        raise EnsembleError(f"{run / split}: no stored probabilities (made by an older ser); "
                            "rerun it with `ser train`")
    frame = pd.DataFrame(test)
    return frame.set_index(["path", "augment"]).sort_index()


def combine_runs(runs: Sequence[str | Path], out: str | Path,
                 weights: Sequence[float] | None = None, *, log=print) -> dict[str, Any]:
    """Score the weighted mean of ``runs``' probabilities and write a run folder to ``out``
    (reports, ``predictions.csv`` and, when every run has one, an ensemble ``bundle/``)."""
    from ser.extras import require

    require("train", "sklearn", purpose="scoring an ensemble")
    t0 = time.perf_counter()
    runs = [Path(r) for r in runs]
    if len(runs) < 2:
        raise EnsembleError("an ensemble needs at least two runs")
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs) or any(w <= 0 for w in weights):
        raise EnsembleError(f"give one positive weight per run ({len(runs)}), got {weights}")
    weights = [w / sum(weights) for w in weights]
    confs = [_config(r) for r in runs]
    first = confs[0]
    if first["protocol"] == "seed":
        raise EnsembleError("the leaky seed protocol's test rows differ per model "
                            "(augmented copies); combine speaker-independent runs")
    for run, conf in zip(runs[1:], confs[1:], strict=True):
        differ = [k for k in SAME if conf.get(k) != first.get(k)]
        if sorted(conf["data"]) != sorted(first["data"]):
            differ.append("data")
        if differ:
            raise EnsembleError(f"{run} differs from {runs[0]} in {', '.join(differ)}: "
                                "ensembles need runs on the same data and folds")
    labels = list(first["labels"])
    splits = _splits(runs[0])
    for run in runs[1:]:
        if _splits(run) != splits:
            raise EnsembleError(f"{run} has splits {_splits(run)}, {runs[0]} has {splits}")

    cols = [f"p_{lab}" for lab in labels]
    fold_metrics, pooled = [], []
    for split in splits:
        frames = [_test_probabilities(r, split, labels) for r in runs]
        base = frames[0]
        for run, f in zip(runs[1:], frames[1:], strict=True):
            if not f.index.equals(base.index) or not (f["label"] == base["label"]).all():
                raise EnsembleError(f"{run / split}: its test rows differ from "
                                    f"{runs[0] / split}'s")
        probs = sum(w * f[cols].to_numpy() for w, f in zip(weights, frames, strict=True))
        rows = base[["corpus", "speaker_id", "label"]].copy()
        rows["predicted"] = [labels[i] for i in probs.argmax(1)]
        rows["confidence"] = probs.max(1).round(4)
        rows[cols] = probs.round(5)
        rows["split"] = split
        fold_metrics.append(compute_metrics(rows["label"], rows["predicted"], labels,
                                            rows["corpus"]))
        pooled.append(rows.reset_index())
    table = pd.concat(pooled, ignore_index=True)
    metrics = compute_metrics(table["label"], table["predicted"], labels, table["corpus"])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "predictions.csv", index=False)

    record_file = runs[0] / "metrics.json"  # protocol and data summary, if the run finished
    first_record = json.loads(record_file.read_text()) if record_file.exists() else {}
    members = [(r, w) for r, w in zip(runs, weights, strict=True)]
    names = [f"{c['model']} · {c['feature_set']} ({w:.2f})"
             for c, (_, w) in zip(confs, members, strict=True)]
    folds = summarize_folds(fold_metrics) if len(fold_metrics) > 1 else None
    corpora = sorted(set(table["corpus"]))
    result: dict[str, Any] = {
        "title": f"ensemble · {first['protocol']}",
        "model": "ensemble of " + " + ".join(names),
        "feature_set": " + ".join(c["feature_set"] for c in confs),
        "protocol_name": first["protocol"], "protocol": first_record.get("protocol", {}),
        "data_summary": first_record.get("data_summary"), "metrics": metrics, "folds": folds,
        "data": ", ".join(first["data"]), "licence": licence_for(corpora),
        "members": [{"run": str(r), "weight": w} for r, w in members],
    }
    bundles = [r / "bundle" for r in runs]
    if all((b / "model.json").exists() for b in bundles):
        ref = load_bundle(bundles[0]).meta
        meta = {"name": out.name, "protocol": ref.get("protocol"),
                "metrics": {k: v for k, v in {**metrics, "folds": folds}.items()
                            if v is not None},
                "training_data": ref.get("training_data"), "licence": ref.get("licence"),
                "model": {"description": result["model"]}}
        save_ensemble(out / "bundle", meta, list(zip(bundles, weights, strict=True)))
        result["bundle"] = str(out / "bundle")
    else:
        log("not every run has a bundle/: wrote the evaluation only, no ensemble bundle")
    result["timings"] = {"combine": time.perf_counter() - t0}
    write_reports(out, result)
    return result
