"""Scratch experiments: classical models on the ``functionals`` feature set.

Every choice is made on speakers inside each fold's training side: for each outer fold of
``kfold_speaker_splits`` (the same folds ``ser train --protocol kfold-speaker`` uses), an
inner grouped k-fold over the training speakers (train + val) scores each candidate; the
candidate with the best inner UAR, averaged over the outer folds, is then reported on the
outer test folds (which no choice looked at). Features come from the feature cache
(computed once, e.g. by ``ser train ... --features functionals``).

Candidates:
  * models: RBF SVM (the ``svm`` spec, a few C), logistic regression, linear SVM
  * feature variants computed from one clip only (so legit at inference):
      - ``all``       every column
      - ``rel``       level-relative: each dB statistic of the mel bands and rms minus the
                      clip's ``rms_db_p90`` (removes recording gain / distance)
      - ``nomel``     without the mel-band columns (MFCC carry the same envelope)
      - ``kbest-N``   ANOVA-F top N columns, fitted on the training rows of each fit

Run (nice, one core, ~minutes)::

    nice .venv/bin/python bench/experiments_functionals.py /work/shared/data/ravdess
    nice .venv/bin/python bench/experiments_functionals.py /work/shared/data/ravdess \\
        /work/shared/data/tess /work/shared/data/savee --inner 3
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from ser.corpora import manifest_frame, scan
from ser.features import extract, get_feature_set
from ser.labels import CANONICAL
from ser.protocols import kfold_speaker_splits

DB_STATS = ("mean", "p10", "p50", "p90")  # statistics that move with a gain change


def uar(y, p) -> float:
    return float(np.mean([(p[y == c] == c).mean() for c in np.unique(y)]))


def variant(X: np.ndarray, columns: list[str], name: str) -> np.ndarray:
    """Per-clip feature transforms (each row uses only its own values)."""
    col = {c: i for i, c in enumerate(columns)}
    if name in ("all",) or name.startswith("kbest"):
        return X
    if name == "rel":
        X = X.copy()
        ref = X[:, col["rms_db_p90"]].copy()
        for c, i in col.items():
            lld, _, stat = c.rpartition("_")
            if stat in DB_STATS and (lld.startswith("mel") or lld in ("rms_db",
                                     "voiced_rms", "unvoiced_rms")):
                X[:, i] -= ref
        for c in ("voiced_rms_db", "unvoiced_rms_db"):
            X[:, col[c]] -= ref
        return np.delete(X, col["rms_db_p90"], axis=1)
    if name == "nomel":
        keep = [i for c, i in col.items() if not c.startswith("mel")]
        return X[:, keep]
    raise ValueError(name)


def model(name: str, seed: int = 0):
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC

    kind, _, arg = name.partition("-")
    if kind == "svm":
        return SVC(kernel="rbf", C=float(arg), gamma="scale", class_weight="balanced",
                   random_state=seed)
    if kind == "logreg":
        return LogisticRegression(C=float(arg), max_iter=3000, class_weight="balanced")
    if kind == "linsvm":
        return LinearSVC(C=float(arg), class_weight="balanced", max_iter=20000)
    raise ValueError(name)


def fit_score(Xtr, ytr, Xte, yte, model_name: str, var: str) -> tuple[float, np.ndarray]:
    from sklearn.feature_selection import SelectKBest, f_classif

    mean, std = Xtr.mean(0), Xtr.std(0) + 1e-8
    Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    if var.startswith("kbest"):
        sel = SelectKBest(f_classif, k=min(int(var.split("-")[1]), Xtr.shape[1])).fit(Xtr, ytr)
        Xtr, Xte = sel.transform(Xtr), sel.transform(Xte)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = model(model_name).fit(Xtr, ytr).predict(Xte)
    return uar(yte, pred), pred


def inner_folds(speakers: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    uniq = np.array(sorted(set(speakers)))
    np.random.default_rng(seed).shuffle(uniq)
    return [np.isin(speakers, uniq[i::k]) for i in range(k)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--inner", type=int, default=4, help="inner folds over training speakers")
    ap.add_argument("--models", default="svm-1,svm-3,svm-10,svm-30,logreg-0.01,logreg-0.1,"
                                        "linsvm-0.001")
    ap.add_argument("--variants", default="all,rel,nomel,kbest-200,kbest-400")
    ap.add_argument("--config", default="{}", help='feature set options, JSON: {"n_mels": 64}')
    args = ap.parse_args()

    fs = get_feature_set("functionals", **json.loads(args.config))
    utts = scan(args.data).utterances
    t0 = time.perf_counter()
    table = extract(utts, fs, n_jobs=1, progress=True)
    print(f"{len(utts)} clips, features in {time.perf_counter() - t0:.1f} s; "
          f"failed {len(table.failed)}")
    man = manifest_frame(utts)
    by_path = {str(p): i for i, p in enumerate(table.manifest["path"])}
    rows = np.array([by_path[str(u.path)] for u in utts])
    X_raw = table.X[rows].astype(np.float64)
    y = man["label"].map({lab: i for i, lab in enumerate(CANONICAL)}).to_numpy()
    spk = man["speaker_id"].to_numpy()
    corpus = man["corpus"].to_numpy()
    splits = kfold_speaker_splits(man, k=5, seed=0)
    models, variants = args.models.split(","), args.variants.split(",")
    Xv = {v: variant(X_raw, fs.columns, v) for v in variants}

    inner: dict[tuple[str, str], list[float]] = {}
    for s in splits:
        side = np.concatenate([s.train, s.val])
        folds = inner_folds(spk[side], args.inner, seed=1)
        for v in variants:
            for m in models:
                scores = []
                for f in folds:
                    tr, va = side[~f], side[f]
                    scores.append(fit_score(Xv[v][tr], y[tr], Xv[v][va], y[va], m, v)[0])
                inner.setdefault((v, m), []).append(float(np.mean(scores)))
    ranked = sorted(inner, key=lambda k: -np.mean(inner[k]))
    print("\ninner (training-side) UAR, mean over outer folds:")
    for key in ranked:
        print(f"  {key[0]:>10} {key[1]:>14}  {np.mean(inner[key]):.3f}")

    # Outer test: the choice by inner score, plus the default svm-10/all for reference;
    # fitted on the training speakers only (as ``ser train`` does) and on train + val.
    for v, m in dict.fromkeys([ranked[0], ("all", "svm-10")]):
        for fit_on in ("train", "train+val"):
            per_fold, pred = [], np.empty_like(y)
            t1 = time.perf_counter()
            for s in splits:
                tr = s.train if fit_on == "train" else np.concatenate([s.train, s.val])
                score, pred[s.test] = fit_score(Xv[v][tr], y[tr], Xv[v][s.test], y[s.test], m, v)
                per_fold.append(score)
            per_corpus = {c: round(uar(y[corpus == c], pred[corpus == c]), 3)
                          for c in sorted(set(corpus))}
            print(f"\nouter test {v}/{m} fit on {fit_on}: UAR {np.mean(per_fold):.3f} ± "
                  f"{np.std(per_fold):.3f} (folds {[round(u, 3) for u in per_fold]}), pooled "
                  f"acc {(pred == y).mean():.3f}, per corpus {per_corpus}, "
                  f"{time.perf_counter() - t1:.1f} s")

if __name__ == "__main__":
    main()
