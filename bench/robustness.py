"""The robustness table of a training recipe under kfold-speaker: every figure speaker-independent.

For each fold of ``ser train --protocol kfold-speaker`` (same seed, same folds) the model is
fitted as ``ser train`` fits it (``ser.training.run_split``, with the ``--augment`` copies of
the training rows), saved as a bundle, and its held-out speakers are scored with the
benchmark of ``ser evaluate --conditions`` (``ser.evaluation.evaluate_bundle``): babble from
the fold's training speakers (never a held-out one), recorded noise from the evaluation third
of ``--noise`` (training augmentation uses the other two thirds).

``--part val`` fits on the training speakers only and scores the VALIDATION speakers: that
table is for choices (augment or not). ``--part test`` fits on training + validation speakers
(as ``ser train`` does for classical models) and scores the TEST speakers: the figure to
report once the choice is made. ``--per-speaker N`` scores at most N utterances of each
speaker (every speaker and label kept) to fit a shared 2-core machine.

    D=../shared/data
    nice .venv/bin/python bench/robustness.py $D/ravdess $D/tess $D/savee --model whisper \\
        --noise $D/noise --part val --per-speaker 12 --out runs/rob-whisper-val
    ... --augment degrade --out runs/rob-whisper-degrade-val

Writes OUT/robustness.json (per condition: UAR pooled over folds, mean ± std over folds) and
OUT/robustness.md, and each fold's ``ser evaluate`` report under OUT/fold-N/eval/.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ser.augment import FAMILIES
from ser.bundle import save_bundle
from ser.cli import parse_settings
from ser.evaluation import compute_metrics, evaluate_bundle, licence_for, plot_robustness
from ser.protocols import Split, make_splits
from ser.training import TrainOptions, load_dataset, run_split


def described(table: list[dict]) -> list[dict]:
    """Rows with the family, value and unit that ``plot_robustness`` draws by."""
    out = []
    for row in table:
        family, _, value = row["condition"].partition(":")
        out.append({**row, "family": family, "value": float(value) if value else None,
                    "unit": FAMILIES[family][0]})
    return out


def reuse_folds(run: Path, record: dict, part: str, out: Path, folds: int) -> None:
    """Copy the fold models of a `ser train` run into ``out`` (``run_split`` then reuses
    them), after checking that the run is this recipe: the same configuration, data
    included, so its folds are these folds."""
    import shutil

    if part != "test":
        raise SystemExit("--reuse: only --part test (`ser train` fits on training + "
                         "validation speakers, as --part test does)")
    if not (run / "config.json").is_file():
        raise SystemExit(f"--reuse {run}: not a `ser train` run folder (no config.json)")
    config = json.loads((run / "config.json").read_text())
    differs = sorted(k for k in set(config) | set(record) if config.get(k) != record.get(k))
    if differs:
        raise SystemExit(f"--reuse {run}: a different recipe (differs in: {', '.join(differs)})")
    for k in range(1, folds + 1):
        src, dst = run / f"fold-{k}", out / f"fold-{k}"
        if not (src / "result.json").exists():
            raise SystemExit(f"--reuse {run}: fold-{k} is not finished")
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("model.onnx", "result.json"):
            shutil.copy2(src / name, dst / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--model", default="whisper")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a model setting, as `ser train --set` (e.g. C=0.03); repeatable")
    ap.add_argument("--features", default=None,
                    help="features other than the model's own, as `ser train --features`")
    ap.add_argument("--augment", default="", help="comma-separated training augmentations")
    ap.add_argument("--noise", required=True, help="folder of recorded noise")
    ap.add_argument("--babble", default=None,
                    help="speech of other speakers for --augment degrade's babble (the "
                         "benchmark's babble comes from the fold's training speakers)")
    ap.add_argument("--part", choices=("val", "test"), required=True)
    ap.add_argument("--conditions", default="standard")
    ap.add_argument("--per-speaker", type=int, default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--no-level", action="store_true",
                    help="features of the level as recorded (as before level normalisation)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--reuse", type=Path, default=None, metavar="RUN",
                    help="with --part test: take each fold's fitted model from this `ser train "
                         "--protocol kfold-speaker` run of the same recipe (its folds are these "
                         "folds) instead of fitting it again")
    args = ap.parse_args()

    augment = tuple(a for a in args.augment.split(",") if a)
    opts = TrainOptions(model=args.model, protocol="kfold-speaker", folds=args.folds,
                        seed=args.seed, augment=augment, hyper=parse_settings(args.set, "--set"),
                        feature_set=args.features,
                        feature_options={"level_dbfs": None} if args.no_level else {},
                        noise_dir=str(Path(args.noise).resolve()) if "degrade" in augment
                        else None,
                        babble_dir=str(Path(args.babble).resolve()) if args.babble
                        and {"degrade", "babble"} & set(augment) else None)
    conf = opts.resolved()
    labels = list(opts.labels)
    if args.reuse:
        reuse_folds(args.reuse, {**conf, "data": [str(Path(p).resolve()) for p in args.data]},
                    args.part, args.out, args.folds)
    t0 = time.perf_counter()
    ds = load_dataset(args.data, opts, jobs=args.jobs, log=print)
    print(f"features: {time.perf_counter() - t0:.0f} s")
    splits = make_splits("kfold-speaker", ds.manifest, seed=args.seed, folds=args.folds)
    args.out.mkdir(parents=True, exist_ok=True)
    frames, per_fold = [], []
    for split in splits:
        fold = args.out / split.name
        if args.part == "val":
            split = Split(split.name, split.train, np.array([], int), split.val)
        res = run_split(ds, split, conf, labels, fold, seed_rows=False, log=print,
                        jobs=args.jobs)
        meta = {
            "name": f"{args.out.name}-{split.name}", "labels": labels,
            "sample_rate": ds.feature_set.sample_rate, "feature_set": ds.feature_set.to_json(),
            "normalization": res["normalization"],
            "model": {"architecture": args.model, "hyperparameters": conf["hyper"]},
            "protocol": {"name": "kfold-speaker", "fold": split.name, "part": args.part},
            "metrics": {}, "training_data": {"augment": list(augment)},
            "licence": licence_for(sorted(set(ds.manifest["corpus"]))),
        }
        save_bundle(fold / "bundle", meta, (fold / "model.onnx").read_bytes())
        test_csv, babble_csv = fold / "heldout.csv", fold / "babble.csv"
        ds.manifest.iloc[split.test].to_csv(test_csv, index=False)
        ds.manifest.iloc[split.train].to_csv(babble_csv, index=False)
        t1 = time.perf_counter()
        result = evaluate_bundle(fold / "bundle", [test_csv], fold / "eval", jobs=args.jobs,
                                 conditions=args.conditions, noise=args.noise,
                                 babble=[babble_csv], seed=args.seed,
                                 per_speaker=args.per_speaker)
        print(f"{split.name}: scored in {time.perf_counter() - t1:.0f} s; "
              + ", ".join(f"{r['condition']} {r['uar']:.3f}"
                          for r in result["robustness"]["table"]))
        per_fold.append({r["condition"]: r["uar"] for r in result["robustness"]["table"]})
        frames.append(pd.read_csv(fold / "eval" / "predictions.csv"))
    pooled = pd.concat(frames)
    order = list(dict.fromkeys(pooled["condition"]))
    table = []
    for name in order:
        sub = pooled[pooled["condition"] == name]
        m = compute_metrics(sub["label"], sub["predicted"], labels)
        folds = np.array([f[name] for f in per_fold if name in f])
        table.append({"condition": name, "uar": m["uar"], "accuracy": m["accuracy"],
                      "n": m["n"], "fold_mean": float(folds.mean()),
                      "fold_std": float(folds.std())})
    clean = table[0]["uar"]
    record = {"model": args.model, "augment": list(augment), "part": args.part,
              "per_speaker": args.per_speaker, "seed": args.seed, "data": args.data,
              "noise": args.noise, "conditions": args.conditions, "table": table,
              "mean_degraded_uar": float(np.mean([r["uar"] for r in table[1:]])),
              "seconds": time.perf_counter() - t0}
    (args.out / "robustness.json").write_text(json.dumps(record, indent=2))
    plot_robustness(described(table), args.out / "robustness.png")
    lines = [f"# {args.model} {'+ ' + ','.join(augment) if augment else ''} — "
             f"{args.part} speakers of kfold-speaker ({args.folds} folds)", "",
             "| condition | UAR (pooled) | drop | fold mean ± std | n |", "|---|---|---|---|---|"]
    for r in table:
        lines.append(f"| {r['condition']} | {r['uar']:.1%} | {100 * (clean - r['uar']):.1f} | "
                     f"{r['fold_mean']:.1%} ± {r['fold_std']:.1%} | {r['n']} |")
    lines += ["", f"mean UAR over the degraded conditions: {record['mean_degraded_uar']:.1%}"]
    (args.out / "robustness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
