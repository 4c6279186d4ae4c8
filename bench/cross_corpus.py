"""Cross-corpus choices for the `whisper` model, made without the test corpus.

For each test corpus T (train on the other two, score T: the protocol of ``ser train
--protocol cross-corpus``), each option is also scored on a VALIDATION protocol that never
touches T: train on one of the two training corpora, score the other, both ways, mean UAR.
The option to adopt is the one with the best validation mean over the three T; the test
figures of every option are printed beside it (so the table says plainly it was looked at).

Options (the classifier is always the `whisper` model's as it was when this round was run:
ANOVA top-1024 + logistic regression, class-balanced, C 0.01; the model has been an RBF SVM
since, docs/RESULTS.md "A classifier with another capacity"):

- ``plain``: one z-score from the training rows (what ``ser train`` does);
- ``balanced``: + sample weights so every (corpus, emotion) cell weighs the same;
- ``corpus-z``: each corpus z-scored by its own mean and std (the test corpus by its own:
  needs unlabelled audio of the target set-up, so not for single clips);
- ``speaker-z``: each speaker z-scored by their own clips (needs several clips of the speaker
  at prediction time: what ``ser adapt`` could hold, not the shipped model);
- ``speaker-z+balanced``;
- ``speaker-z:10``: each speaker's statistics from only 10 of their clips, drawn at random
  (seeded; any emotion): an enrolment of a few utterances;
- ``speaker-z:neutral``: each speaker's statistics from their neutral clips only (RAVDESS 4
  per actor, SAVEE 30, TESS 200): an enrolment of calm speech;
- ``utt-z``: each clip's own vector standardised, its mean half and its std half each by
  their own mean and spread over the 512 values (needs nothing but the clip);
- ``utt-l2``: each half divided by its length (L2 norm; needs nothing but the clip).

``--classifier svm`` fits the shipped model's classifier instead (RBF SVM, C 10, gamma
"scale", class-balanced; no Platt probabilities, which do not change its answers much and
cost five fits); ``svm:C=1,gamma=0.5`` another C, and gamma as a multiple of "scale"
(smoother below 1). Several classifiers give a row for each option and classifier. The SVM
fits on its kernel matrix, as ``ser train`` does (``ser.models.classical``).

``--augment degrade,degrade,babble`` (with ``--noise`` and ``--babble`` as ``ser train``)
adds the recipe's degraded copies of the training corpus's clips to its training rows; the
scored corpus is always its clean clips. It implies ``--validation-only``: this is a check of
a training recipe on corpora it never heard, not a second test.

    D=../shared/data
    nice .venv/bin/python bench/cross_corpus.py $D/ravdess $D/tess $D/savee --out runs/xc.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings
from pathlib import Path

import numpy as np

from ser.evaluation import compute_metrics
from ser.models.classical import rbf_kernel
from ser.training import NONE, TrainOptions, load_dataset

OPTIONS = ("plain", "balanced", "corpus-z", "speaker-z", "speaker-z+balanced", "speaker-z:10",
           "speaker-z:neutral", "utt-z", "utt-l2")


def per_clip(X: np.ndarray, option: str) -> np.ndarray:
    """``utt-z`` / ``utt-l2``: each row's halves (the mean and the std over time of the
    block's 512 states) standardised / unit-length by their own values."""
    halves = np.split(X, 2, axis=1)
    if option == "utt-z":
        halves = [(h - h.mean(1, keepdims=True)) / (h.std(1, keepdims=True) + 1e-9)
                  for h in halves]
    else:
        halves = [h / (np.linalg.norm(h, axis=1, keepdims=True) + 1e-9) for h in halves]
    return np.concatenate(halves, axis=1)


def zscore(X: np.ndarray, groups: np.ndarray, stats: np.ndarray | None = None) -> np.ndarray:
    """Each group's rows standardised by the mean and std of its rows where ``stats``."""
    out = np.empty_like(X)
    for g in np.unique(groups):
        rows = groups == g
        ref = rows & stats if stats is not None else rows
        out[rows] = (X[rows] - X[ref].mean(0)) / (X[ref].std(0) + 1e-6)
    return out


def enrolment(option: str, y: np.ndarray, speaker: np.ndarray, labels: list[str]) -> np.ndarray:
    """The rows each speaker's statistics come from under ``option``."""
    if option == "speaker-z:neutral":
        return y == labels.index("neutral")
    if option == "speaker-z:10":
        rng = np.random.default_rng(0)
        keep = np.zeros(len(y), bool)
        for who in np.unique(speaker):
            rows = np.flatnonzero(speaker == who)
            keep[rng.choice(rows, size=min(10, rows.size), replace=False)] = True
        return keep
    return np.ones(len(y), bool)


def svm_settings(classifier: str) -> dict[str, float]:
    """``svm`` or ``svm:C=1,gamma=0.5`` -> C and gamma as a multiple of sklearn's "scale"."""
    settings = {"C": 10.0, "gamma": 1.0}
    if ":" in classifier:
        for item in classifier.split(":", 1)[1].split(","):
            key, value = item.split("=")
            settings[key] = float(value)
    return settings


def svm_predict(Xtr, ytr, Xte, svm: dict[str, float], weights, balanced, seed: int):
    """The RBF SVM (C, gamma as a multiple of "scale") fitted on its kernel matrix; its
    answers on ``Xte`` (libsvm's votes: no Platt probabilities)."""
    from sklearn.svm import SVC

    gamma = svm["gamma"] / (Xtr.shape[1] * Xtr.var())
    svc = SVC(kernel="precomputed", C=svm["C"], class_weight=balanced, random_state=seed)
    svc.fit(rbf_kernel(Xtr, Xtr, gamma), ytr, sample_weight=weights)
    K = np.zeros((len(Xte), len(Xtr)))  # only the support vectors' columns are read
    K[:, svc.support_] = rbf_kernel(Xte, Xtr[svc.support_], gamma)
    return svc.predict(K)


def fit_score(X, y, corpus, speaker, train, test, option: str, labels, hyper, seed=0,
              classifier: str = "logreg") -> float:
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    if option.startswith("utt-"):
        X = per_clip(X, option)
    elif option.startswith("speaker-z"):
        X = zscore(X, speaker, enrolment(option, y, speaker, labels))
    elif option == "corpus-z":
        X = zscore(X, corpus)
    mean, std = X[train].mean(0), X[train].std(0) + 1e-6
    Xtr, Xte = (X[train] - mean) / std, (X[test] - mean) / std
    weights = None
    if option.endswith("balanced"):
        cells = [f"{c}|{lab}" for c, lab in zip(corpus[train], y[train], strict=True)]
        _, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
        weights = len(cells) / (len(counts) * counts[inverse])
    balanced = None if weights is not None else "balanced"
    if classifier.startswith("svm"):
        pred = svm_predict(Xtr, y[train], Xte, svm_settings(classifier), weights, balanced,
                           seed)
    else:
        model = Pipeline([
            ("select", SelectKBest(f_classif, k=min(int(hyper["k_best"]), X.shape[1]))),
            ("clf", LogisticRegression(C=hyper["C"], max_iter=3000, class_weight=balanced,
                                       random_state=seed)),
        ])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            model.fit(Xtr, y[train], clf__sample_weight=weights)
        pred = model.predict(Xte)
    return compute_metrics([labels[i] for i in y[test]], [labels[i] for i in pred], labels)["uar"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--options", default="", help=f"comma-separated, of {', '.join(OPTIONS)}")
    ap.add_argument("--classifier", nargs="+", default=["logreg"],
                    help="logreg: the `whisper` model's classifier when the first table was "
                         "made; svm: the shipped one; svm:C=1,gamma=0.5: another C, gamma a "
                         "multiple of 'scale'")
    ap.add_argument("--pooling", default="loud-half",
                    help="the whisper features' pooling (loud-half, the default since the "
                         "thirteenth round; mean-std before)")
    ap.add_argument("--validation-only", action="store_true",
                    help="score the validation protocol only: no test corpus is looked at")
    ap.add_argument("--augment", default="",
                    help="a training recipe's copies of the training corpus (as ser train's "
                         "--augment); implies --validation-only")
    ap.add_argument("--noise", help="recorded noise for the copies (ser train --noise)")
    ap.add_argument("--babble", help="other voices for the copies (ser train --babble)")
    ap.add_argument("--jobs", type=int, default=1, help="feature extraction processes")
    args = ap.parse_args()
    args.validation_only |= bool(args.augment)
    t0 = time.perf_counter()
    opts = TrainOptions(model="whisper", augment=tuple(filter(None, args.augment.split(","))),
                        noise_dir=args.noise, babble_dir=args.babble,
                        feature_options={"pooling": args.pooling})
    ds = load_dataset(args.data, opts, jobs=args.jobs, log=print)
    labels = list(opts.labels)
    man = ds.manifest
    X = np.asarray(ds.X, dtype=np.float64)  # a row per utterance and per copy of it
    clean = ds.row_aug == NONE
    y = man["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()[ds.row_utt]
    corpus = man["corpus"].astype(str).to_numpy()[ds.row_utt]
    speaker = man["speaker_id"].astype(str).to_numpy()[ds.row_utt]
    hyper = {"C": 0.01, "k_best": 1024}  # the `whisper` model's logistic regression then
    names = sorted(set(corpus))
    options = args.options.split(",") if args.options else OPTIONS[:7]
    rows = [(o, c, o if len(args.classifier) == 1 else f"{o} {c}")
            for c in args.classifier for o in options]
    table: dict[str, dict] = {name: {"val": {}, "test": {}} for _, _, name in rows}
    for option, classifier, name in rows:
        for test_corpus in names:
            a, b = [c for c in names if c != test_corpus]
            val = [fit_score(X, y, corpus, speaker, np.flatnonzero(corpus == s),
                             np.flatnonzero((corpus == t) & clean), option, labels, hyper,
                             classifier=classifier)
                   for s, t in itertools.permutations((a, b))]
            table[name]["val"][test_corpus] = float(np.mean(val))
            if not args.validation_only:
                table[name]["test"][test_corpus] = fit_score(
                    X, y, corpus, speaker, np.flatnonzero(corpus != test_corpus),
                    np.flatnonzero(corpus == test_corpus), option, labels, hyper,
                    classifier=classifier)
        for part in ("val", "test"):
            table[name][f"{part}_mean"] = float(np.mean(list(table[name][part].values()))) \
                if table[name][part] else None
        print(f"{name:20s} val " + " ".join(f"{c} {v:.3f}" for c, v in
                                             table[name]["val"].items())
              + f" mean {table[name]['val_mean']:.3f}"
              + ("" if args.validation_only else " | test " + " ".join(
                  f"{c} {v:.3f}" for c, v in table[name]["test"].items())
                 + f" mean {table[name]['test_mean']:.3f}"), flush=True)
    chosen = max(table, key=lambda name: table[name]["val_mean"])
    record = {"options": table, "chosen_on_validation": chosen, "augment": args.augment,
              "pooling": args.pooling,
              "seconds": time.perf_counter() - t0}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"chosen on validation: {chosen}" + ("" if args.validation_only else
                                               f" (test mean {table[chosen]['test_mean']:.3f})"))


if __name__ == "__main__":
    main()
