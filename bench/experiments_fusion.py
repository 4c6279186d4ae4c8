"""Longer CNN training, per-utterance log-mel normalisation, and late fusion with logreg.

Same outer folds as ``ser train --protocol kfold-speaker`` (5 folds by speaker, seed 0).
Every choice is made on each fold's VALIDATION speakers (from its training side):

1. CNN configurations (JSON, merged over the ``cnn`` spec defaults; the script-level key
   ``utt_norm`` = ``none`` | ``mean`` | ``meanvar`` subtracts each clip's own per-band mean
   (and divides by its per-band std) before the usual training-set normalisation — one clip
   is enough, so it is legit at inference). The configuration with the best mean
   best-validation UAR is chosen.
2. Late fusion ``w * p_cnn + (1 - w) * p_logreg``: ``w`` on a 0.05 grid, chosen by mean
   validation UAR over the folds, with a logreg fitted on the training speakers only (the
   validation speakers must stay unseen to score it).

Only then are the test folds scored, for the chosen configuration only: the CNN alone, the
logreg (fitted on train + validation speakers, as ``ser train`` does) and the fusion.
Checkpoints live under ``--out`` (``fit_torch`` resumes from them), so a rerun is cheap.

    nice .venv/bin/python bench/experiments_fusion.py ../shared/data/ravdess \\
        --configs '{"epochs": 60, "patience": 15}' \\
        '{"epochs": 60, "patience": 15, "utt_norm": "mean"}' --out runs/fusion-ravdess
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path

import numpy as np

from ser.labels import CANONICAL
from ser.models import get_model_spec
from ser.models.classical import fit_logreg
from ser.models.torch_training import fit_torch, predict_torch, set_threads
from ser.protocols import apply_normalization, fit_normalization, kfold_speaker_splits
from ser.training import TrainOptions, load_dataset


def uar(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean([(p[y == c] == c).mean() for c in np.unique(y)]))


def utt_normalise(X: list[np.ndarray], mode: str) -> list[np.ndarray]:
    """Per-clip, per-band normalisation of log-mel ``(n_mels, frames)`` arrays."""
    if mode == "none":
        return X
    if mode not in ("mean", "meanvar"):
        raise ValueError(f"utt_norm must be none, mean or meanvar, not {mode!r}")
    out = []
    for x in X:
        x = x - x.mean(axis=1, keepdims=True)
        if mode == "meanvar":
            x = x / (x.std(axis=1, keepdims=True) + 1e-3)
        out.append(x.astype(np.float32))
    return out


def logreg_probs(X: np.ndarray, fit_rows: np.ndarray, y: np.ndarray, pred_rows: np.ndarray,
                 hyper: dict) -> np.ndarray:
    mean, std = fit_normalization(X[fit_rows])
    model = fit_logreg(apply_normalization(X[fit_rows], mean, std), y[fit_rows], seed=0,
                       C=hyper["C"], k_best=hyper["k_best"])
    return model.predict_proba(apply_normalization(X[pred_rows], mean, std))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--configs", nargs="+", default=['{"epochs": 60, "patience": 15}'],
                    help="CNN configurations, JSON each")
    ap.add_argument("--out", default="runs/fusion", help="checkpoints and results")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    args = ap.parse_args()
    set_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    lm = load_dataset(args.data, TrainOptions(model="cnn"), log=print)
    fn = load_dataset(args.data, TrainOptions(model="logreg"), log=print)
    # Align the functionals rows to the log-mel manifest (both scanned from the same paths).
    fn_row = {p: i for i, p in enumerate(fn.manifest["path"].astype(str))}
    align = np.array([fn_row[p] for p in lm.manifest["path"].astype(str)])
    Xf = fn.X[align]
    man = lm.manifest
    y = man["label"].map({lab: i for i, lab in enumerate(CANONICAL)}).to_numpy()
    corpus = man["corpus"].to_numpy()
    splits = kfold_speaker_splits(man, k=5, seed=0)
    spec = get_model_spec("cnn")
    lr_hyper = get_model_spec("logreg").defaults
    X_raw = [lm.X[i] for i in np.argsort(lm.row_utt)]  # no augmentation for cnn: 1 row/utt

    # ---- 1. CNN configurations, scored on validation speakers only
    runs: dict[str, dict] = {}
    for cfg_text in args.configs:
        cfg = json.loads(cfg_text)
        mode = cfg.pop("utt_norm", "none")
        key = hashlib.blake2b(cfg_text.encode(), digest_size=4).hexdigest()
        hyper = {**spec.defaults, **cfg}
        X = utt_normalise(X_raw, mode)
        rec = {"config": json.loads(cfg_text), "folds": []}
        for sp in splits:
            t0 = time.perf_counter()
            mean, std = fit_normalization([X[i] for i in sp.train])

            def norm(rows, X=X, mean=mean, std=std):
                return apply_normalization([X[i] for i in rows], mean, std)

            fit = fit_torch(spec, hyper, norm(sp.train), y[sp.train], norm(sp.val), y[sp.val],
                            len(CANONICAL), out / key / sp.name, seed=0)
            rec["folds"].append({
                "best_val_uar": max(h["val_uar"] for h in fit.history),
                "best_epoch": fit.best_epoch, "epochs_run": len(fit.history),
                "train_seconds": sum(h["seconds"] for h in fit.history),
                "val_probs": predict_torch(fit.model, norm(sp.val)),
                "test_probs": predict_torch(fit.model, norm(sp.test)),
            })
            print(f"  {cfg_text} {sp.name}: best val UAR {rec['folds'][-1]['best_val_uar']:.3f}"
                  f" at epoch {fit.best_epoch}/{len(fit.history)} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        rec["mean_val_uar"] = float(np.mean([f["best_val_uar"] for f in rec["folds"]]))
        print(f"{cfg_text}: mean best validation UAR {rec['mean_val_uar']:.3f}", flush=True)
        runs[cfg_text] = rec
    chosen = max(runs, key=lambda k: runs[k]["mean_val_uar"])
    rec = runs[chosen]
    print(f"\nchosen CNN configuration (validation): {chosen}")

    # ---- 2. fusion weight on validation speakers (logreg fitted on training speakers only)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lr_val = [logreg_probs(Xf, sp.train, y, sp.val, lr_hyper) for sp in splits]
        t0 = time.perf_counter()
        lr_test = [logreg_probs(Xf, np.concatenate([sp.train, sp.val]), y, sp.test, lr_hyper)
                   for sp in splits]
        lr_seconds = time.perf_counter() - t0
    grid = np.round(np.arange(0, 1.0001, 0.05), 2)
    val_by_w = {float(w): float(np.mean([
        uar(y[sp.val], (w * f["val_probs"] + (1 - w) * lv).argmax(1))
        for sp, f, lv in zip(splits, rec["folds"], lr_val, strict=True)])) for w in grid}
    w_best = max(val_by_w, key=lambda w: (val_by_w[w], -abs(w - 0.5)))
    print("validation UAR by CNN weight: "
          + " ".join(f"{w:.2f}:{s:.3f}" for w, s in val_by_w.items()))
    print(f"chosen weight w = {w_best:.2f} (validation UAR {val_by_w[w_best]:.3f}; "
          f"logreg alone {val_by_w[0.0]:.3f}, CNN alone {val_by_w[1.0]:.3f})")

    # ---- 3. test folds, chosen configuration only
    summary = {"data": args.data, "chosen_config": json.loads(chosen),
               "val": {k: runs[k]["mean_val_uar"] for k in runs}, "fusion_weight": w_best,
               "val_uar_by_weight": val_by_w, "test": {}}
    pooled = {}
    for name, w in (("cnn", 1.0), ("logreg", 0.0), ("fusion", w_best)):
        uars, accs, pred = [], [], np.empty_like(y)
        for sp, f, lt in zip(splits, rec["folds"], lr_test, strict=True):
            p = (w * f["test_probs"] + (1 - w) * lt).argmax(1)
            pred[sp.test] = p
            uars.append(uar(y[sp.test], p))
            accs.append(float((p == y[sp.test]).mean()))
        pooled[name] = pred
        per_corpus = {c: round(uar(y[corpus == c], pred[corpus == c]), 3)
                      for c in sorted(set(corpus))}
        per_class = {lab: round(float((pred[y == i] == i).mean()), 3)
                     for i, lab in enumerate(CANONICAL)}
        summary["test"][name] = {"uar_mean": float(np.mean(uars)), "uar_std": float(np.std(uars)),
                                 "acc_mean": float(np.mean(accs)), "acc_std": float(np.std(accs)),
                                 "uar_folds": uars, "per_corpus": per_corpus,
                                 "recall_per_class": per_class}
        print(f"test {name:>7} (w={w:.2f}): UAR {np.mean(uars):.3f} ± {np.std(uars):.3f} "
              f"(folds {[round(u, 3) for u in uars]}), acc {np.mean(accs):.3f} ± "
              f"{np.std(accs):.3f}, per corpus {per_corpus}, recall {per_class}")
    cnn_seconds = sum(f["train_seconds"] for f in rec["folds"])
    summary["train_seconds"] = {"cnn_5_folds": cnn_seconds, "logreg_5_folds": lr_seconds}
    summary["cnn_folds"] = [{k: v for k, v in f.items() if not k.endswith("probs")}
                            for f in rec["folds"]]
    print(f"training time: CNN {cnn_seconds / 60:.1f} min over 5 folds "
          f"(epochs run {[f['epochs_run'] for f in rec['folds']]}, best "
          f"{[f['best_epoch'] for f in rec['folds']]}), logreg {lr_seconds:.1f} s")
    (out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
