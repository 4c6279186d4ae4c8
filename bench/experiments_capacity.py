"""Classifier capacity for the degraded copies (issue #11): a grid of recipes × classifier
settings on the VALIDATION speakers of kfold-speaker, as ``bench/robustness.py --part val``.

For each fold (the folds of ``ser train --protocol kfold-speaker``, same seed) every setting is
fitted on the fold's training speakers (their clips and the recipe's ``--augment`` copies,
normalised with those rows' statistics, as ``ser.training.run_split`` fits a classical model)
and scored on the fold's validation speakers under the benchmark's conditions. The degraded
clips are encoded once per fold: the first setting of the first recipe is saved as a bundle and
scored by ``ser evaluate``'s own code (``evaluate_bundle``, speech rule included); the feature
vector of every clip it scored is recorded, and every setting (the first again, as a check) is
scored on those same vectors through its own normalisation and ONNX graph. That is the answer
its bundle would give: the bundles of ``bench/robustness.py`` carry no calibration, and a
temperature would not move the argmax anyway.

    D=../shared/data
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/experiments_capacity.py \\
        $D/ravdess $D/tess $D/savee --noise $D/noise --per-speaker 40 \\
        --conditions white:10,babble:10,noise:5,room:0.8,telephone,mp3:32,gain:-30 \\
        --recipes degrade degrade,degrade \\
        --settings logreg:C=0.01,k_best=1024 logreg:C=0.003 logreg:C=0.03 svm:C=10 \\
        --out runs/capacity-val

A recipe is ``AUGMENT[,AUGMENT...]``, ending with ``:babble`` for `degrade` with babble of
the speech under ``--babble DIR``. A setting is ``ESTIMATOR:KEY=VALUE,...`` (``logreg``: C,
k_best, 0 for every column; ``svm``: C, gamma); unnamed keys take the logistic regression's
settings of the first round (C 0.01, k_best 1024) for logreg and ``svm``'s defaults for svm.
Writes OUT/capacity.json (pooled UAR per condition, and per fold),
OUT/capacity.md and every answer in OUT/predictions.csv.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd

import ser.inference
from ser.bundle import save_bundle
from ser.evaluation import compute_metrics, evaluate_bundle, licence_for
from ser.models import MODELS
from ser.models.classical import fit_logreg, fit_svm, svm_to_onnx
from ser.protocols import apply_normalization, fit_normalization, make_splits
from ser.training import TrainOptions, load_dataset


def parse_setting(text: str) -> tuple[str, dict]:
    """``"logreg:C=0.03,k_best=0"`` -> ``("logreg", {"C": 0.03, "k_best": 0})``."""
    estimator, _, rest = text.partition(":")
    if estimator not in ("logreg", "svm"):
        raise SystemExit(f"unknown estimator {estimator!r} in {text!r} (logreg or svm)")
    # the logistic regression as the `whisper` model had it when this round was run
    base = {"C": 0.01, "k_best": 1024} if estimator == "logreg" else dict(MODELS["svm"].defaults)
    for pair in filter(None, rest.split(",")):
        key, _, value = pair.partition("=")
        if key not in base:
            raise SystemExit(f"{estimator} has no setting {key!r} (has {', '.join(base)})")
        try:
            base[key] = json.loads(value)
        except json.JSONDecodeError:
            base[key] = value
    return estimator, base


def fit(estimator: str, hyper: dict, X: np.ndarray, y: np.ndarray, seed: int):
    if estimator == "logreg":
        k = int(hyper["k_best"]) or X.shape[1]
        return fit_logreg(X, y, seed=seed, C=float(hyper["C"]), k_best=k)
    return fit_svm(X, y, seed=seed, class_weight="balanced", **hyper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--noise", required=True)
    ap.add_argument("--recipes", nargs="+", required=True,
                    help="one --augment list per recipe, e.g. degrade degrade,degrade")
    ap.add_argument("--settings", nargs="+", required=True)
    ap.add_argument("--conditions", required=True)
    ap.add_argument("--per-speaker", type=int, default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--babble", default=None, metavar="DIR",
                    help="speech of other speakers for `degrade`'s babble, in the recipes "
                         "that end with :babble (as `ser train --babble DIR`)")
    ap.add_argument("--jobs", type=int, default=1, help="processes for feature extraction")
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    settings = [(s, *parse_setting(s)) for s in args.settings]
    noise = str(Path(args.noise).resolve())
    t0 = time.perf_counter()
    datasets = {}
    for recipe in args.recipes:
        augment, _, babble = recipe.partition(":")
        if babble not in ("", "babble") or (babble and not args.babble):
            raise SystemExit(f"recipe {recipe!r}: AUGMENT[,AUGMENT...][:babble] (with --babble)")
        opts = TrainOptions(model="whisper", protocol="kfold-speaker", folds=args.folds,
                            seed=args.seed, augment=tuple(augment.split(",")), noise_dir=noise,
                            babble_dir=str(Path(args.babble).resolve()) if babble else None)
        datasets[recipe] = load_dataset(args.data, opts, jobs=args.jobs, log=print)
        print(f"{recipe}: features {time.perf_counter() - t0:.0f} s", flush=True)
    first = datasets[args.recipes[0]]
    for ds in datasets.values():
        if not ds.manifest["path"].equals(first.manifest["path"]):
            raise SystemExit("the recipes' datasets hold different clips")
    labels = list(TrainOptions().labels)
    splits = make_splits("kfold-speaker", first.manifest, seed=args.seed, folds=args.folds)
    args.out.mkdir(parents=True, exist_ok=True)
    frames: dict[str, list[pd.DataFrame]] = {}
    seconds: dict[str, float] = {}
    recorded: list[np.ndarray] = []
    original = ser.inference._Scorer.features

    def recording(self, y, level=None):
        x = original(self, y, level)
        recorded.append(x)
        return x

    for split in splits:
        fold = args.out / split.name
        fold.mkdir(parents=True, exist_ok=True)
        heldout = split.val  # --part val: fit on the training speakers, score validation ones
        models = {}
        for recipe, ds in datasets.items():
            y_all = ds.manifest["label"].map({lab: i for i, lab in enumerate(labels)})
            tr = ds.rows(split.train, augmented=True)
            mean, std = fit_normalization(ds.take(tr))
            Xtr = apply_normalization(ds.take(tr), mean, std)
            ytr = y_all.to_numpy()[ds.row_utt[tr]]
            for name, estimator, hyper in settings:
                t1 = time.perf_counter()
                model = fit(estimator, hyper, Xtr, ytr, args.seed)
                key = f"{recipe} | {name}"
                models[key] = (svm_to_onnx(model, Xtr.shape[1]), mean, std)
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t1
                print(f"{split.name} {key}: fitted on {len(tr)} rows in "
                      f"{time.perf_counter() - t1:.0f} s", flush=True)
        key0 = f"{args.recipes[0]} | {settings[0][0]}"
        onnx0, mean0, std0 = models[key0]
        meta = {
            "name": f"{args.out.name}-{split.name}", "labels": labels,
            "sample_rate": first.feature_set.sample_rate,
            "feature_set": first.feature_set.to_json(),
            "normalization": {"mean": mean0.tolist(), "std": std0.tolist()},
            "model": {"architecture": "whisper", "hyperparameters": settings[0][2]},
            "protocol": {"name": "kfold-speaker", "fold": split.name, "part": "val"},
            "metrics": {}, "training_data": {"augment": args.recipes[0].partition(":")[0]
                                             .split(",")},
            "licence": licence_for(sorted(set(first.manifest["corpus"]))),
        }
        save_bundle(fold / "bundle", meta, onnx0)
        test_csv, babble_csv = fold / "heldout.csv", fold / "babble.csv"
        first.manifest.iloc[heldout].to_csv(test_csv, index=False)
        first.manifest.iloc[split.train].to_csv(babble_csv, index=False)
        recorded.clear()
        ser.inference._Scorer.features = recording
        t1 = time.perf_counter()
        try:
            evaluate_bundle(fold / "bundle", [test_csv], fold / "eval", jobs=1,
                            conditions=args.conditions, noise=args.noise, babble=[babble_csv],
                            seed=args.seed, per_speaker=args.per_speaker)
        finally:
            ser.inference._Scorer.features = original
        print(f"{split.name}: scored in {time.perf_counter() - t1:.0f} s", flush=True)
        scored = pd.read_csv(fold / "eval" / "predictions.csv")
        if len(scored) != len(recorded):
            raise SystemExit(f"{len(recorded)} feature vectors for {len(scored)} answers")
        X = np.stack(recorded)
        for key, (onnx_bytes, mean, std) in models.items():
            session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
            Xn = ((X - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
            probs = session.run(["probabilities"], {"features": Xn})[0]
            frame = scored[["path", "speaker_id", "corpus", "label", "condition"]].copy()
            frame["predicted"] = [labels[i] for i in probs.argmax(1)]
            frame["fold"] = split.name
            if key == key0:
                differ = int((frame["predicted"] != scored["predicted"]).sum())
                print(f"{split.name}: replayed {key0} differs from ser evaluate on {differ} "
                      f"of {len(frame)} answers", flush=True)
            frames.setdefault(key, []).append(frame)
    results, answers = [], []
    for key, parts in frames.items():
        pooled = pd.concat(parts)
        recipe, setting = key.split(" | ")
        answers.append(pooled.assign(recipe=recipe, setting=setting))
        order = list(dict.fromkeys(pooled["condition"]))
        table, per_fold = {}, {}
        for cond in order:
            sub = pooled[pooled["condition"] == cond]
            table[cond] = compute_metrics(sub["label"], sub["predicted"], labels)["uar"]
            per_fold[cond] = {str(f): compute_metrics(g["label"], g["predicted"], labels)["uar"]
                              for f, g in sub.groupby("fold")}
        degraded = [v for c, v in table.items() if c != "clean"]
        results.append({"recipe": recipe, "setting": setting, "table": table,
                        "per_fold": per_fold, "mean_degraded_uar": float(np.mean(degraded)),
                        "fit_seconds": seconds[key]})
    pd.concat(answers).to_csv(args.out / "predictions.csv", index=False)
    record = {"data": args.data, "conditions": args.conditions,
              "per_speaker": args.per_speaker, "seed": args.seed, "part": "val",
              "results": results, "seconds": time.perf_counter() - t0}
    (args.out / "capacity.json").write_text(json.dumps(record, indent=2))
    conds = list(results[0]["table"])
    lines = ["| recipe | setting | " + " | ".join(conds) + " | mean degraded |",
             "|---|---|" + "---|" * (len(conds) + 1)]
    for r in results:
        lines.append(f"| {r['recipe']} | {r['setting']} | "
                     + " | ".join(f"{r['table'][c]:.1%}" for c in conds)
                     + f" | {r['mean_degraded_uar']:.1%} |")
    (args.out / "capacity.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
