"""Adapting to one speaker: normalising by the speaker's own statistics (no labels), and
enrolment with a few labelled clips (``ser adapt``). Issue #12, part 4.

On cached features of RAVDESS actors 1-20 (5 folds of 4 test actors; every number is on
test actors, whose clips never train the base model):

- ``base``: global standardisation + logistic regression (``--base logreg``, the default:
  the shipped recipe when this round was run; the `whisper` model is an RBF SVM now).
- **(b) without labels** — ``sn``: a model trained on features standardised per training
  speaker; a test speaker is standardised by statistics of ``n`` of their clips (drawn at
  random, no labels; std shrunk toward the training speakers' pooled std), and all their
  clips are scored. ``skewed``: the session is one emotion only (all the speaker's clips of
  it), normalised by its own statistics — the harm case.
- **(a) enrolment** — ``k`` labelled clips per emotion of a test speaker, scored on their
  other clips: ``shift`` (the base model, the speaker's enrolment mean replacing the global
  mean: what ``ser adapt`` writes), ``prior`` (the base classifier refitted on the clips with
  an L2 pull toward its own weights: ``ser.adapt``), and both. The pull's strength is
  chosen on fold 1 (its test actors serve as validation); folds 2-5 are reported.

``--base svm``: the base model is the RBF SVM of the ``whisper`` model (C 10, gamma "scale",
class-balanced, Platt probabilities: ``ser.models.classical.fit_svm``), answers = argmax of
its probabilities (as a bundle answers). Only what works on a classifier that is not linear
is measured, with these candidates (fixed before the first run, docs/RESULTS.md):

- ``base``; ``shift`` (as above: the only change a non-linear bundle can take without its
  training data);
- ``shift+std``: the clips' std too, shrunk toward the bundle's std as ``sn`` shrinks it
  (``w = (n-1)/(n-1+4)``);
- ``shift+out a=``: after the shift, a linear map of the model's log-probabilities (6 x 6 +
  bias) refitted on the clips with the L2 pull ``a`` toward the identity (``fit_prior``) -
  the "prior" of any classifier, on its outputs.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/experiments_adaptation.py \\
        ../shared/data/ravdess --set whisper --out /tmp/adapt.json [--base svm]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def uar(y: np.ndarray, pred: np.ndarray) -> float:
    return float(np.mean([(pred[y == c] == c).mean() for c in np.unique(y)]))


def svm_fold(X: np.ndarray, y: np.ndarray, spk: np.ndarray, test: set, C: float,
             repeats: int, add, f: int) -> None:
    """The ``--base svm`` candidates on one fold's test speakers: ``add(key, y, logp)``, the
    log-probabilities of each scored clip."""
    from scipy.special import log_softmax

    from ser.adapt import PRIOR_STRENGTH, fit_prior
    from ser.models.classical import fit_svm

    tr = ~np.isin(spk, list(test))
    mean, std = X[tr].mean(0), X[tr].std(0) + 1e-8
    model = fit_svm((X[tr] - mean) / std, y[tr], seed=0, class_weight="balanced", C=C,
                    gamma="scale")

    def logp(Z):
        return np.log(np.clip(model.predict_proba(Z), 1e-12, 1.0))

    n_classes = len(model.classes_)
    for s in sorted(test):
        rows = np.flatnonzero(spk == s)
        yt = y[rows]
        for k in (1, 2, 4):
            for r in range(repeats):
                g = np.random.default_rng([f, r, k, 7])  # the draws of the logreg run
                enrol = np.concatenate([g.choice(rows[yt == c], k, replace=False)
                                        for c in np.unique(yt)])
                rest = np.setdiff1d(rows, enrol)
                yr = y[rest]
                m_e = X[enrol].mean(0)
                n = len(enrol)
                w = (n - 1) / (n - 1 + 4)
                sd_e = np.sqrt(w * X[enrol].var(0, ddof=1) + (1 - w) * std ** 2)
                add(f"k={k} base", yr, logp((X[rest] - mean) / std))
                shifted = logp((X[rest] - m_e) / std)
                add(f"k={k} shift", yr, shifted)
                add(f"k={k} shift+std", yr, logp((X[rest] - m_e) / sd_e))
                clips = logp((X[enrol] - m_e) / std)
                for alpha in PRIOR_STRENGTH:
                    W, b = fit_prior(clips, y[enrol], np.eye(n_classes), np.zeros(n_classes),
                                     alpha)
                    add(f"k={k} shift+out a={alpha:g}", yr,
                        log_softmax(shifted @ W.T + b, axis=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--set", default="whisper")
    ap.add_argument("--base", choices=("logreg", "svm"), default="logreg")
    ap.add_argument("--C", type=float, default=None,
                    help="the base model's C (default: logreg 0.01, svm 10)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("adapt.json"))
    args = ap.parse_args()

    from sklearn.linear_model import LogisticRegression

    from ser.adapt import PRIOR_STRENGTH, fit_prior
    from ser.training import TrainOptions, load_dataset

    model = "whisper" if args.set == "whisper" else "logreg"
    ds = load_dataset(args.data, TrainOptions(model=model, augment=()), log=lambda m: None)
    X = np.asarray(ds.X, dtype=np.float64)
    labels = sorted(ds.manifest["label"].unique())
    y = ds.manifest["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    spk = ds.manifest["speaker_id"].to_numpy()
    speakers = sorted(set(spk))
    rng = np.random.default_rng(0)
    order = rng.permutation(speakers)
    folds = [set(order[i::5]) for i in range(5)]

    C = args.C if args.C is not None else (0.01 if args.base == "logreg" else 10.0)

    def fit(Xt, yt):
        return LogisticRegression(C=C, max_iter=3000, class_weight="balanced").fit(Xt, yt)

    res: dict[str, dict] = {"base": {}, "sn": {}, "skewed": {}, "enrol": {}}
    preds: dict[str, list] = {}
    probs: dict[str, list] = {}  # --base svm: the probabilities, for their calibration

    def add(key, yt, p):
        preds.setdefault(key, []).append((f, yt, p))

    for f, test in enumerate(folds, 1):
        if args.base == "svm":
            def keep(key, yt, lp, f=f):
                preds.setdefault(key, []).append((f, yt, lp.argmax(1)))
                probs.setdefault(key, []).append((f, yt, np.exp(lp)))

            svm_fold(X, y, spk, test, C, args.repeats, keep, f)
            print(f"fold {f} done", file=sys.stderr)
            continue
        tr = ~np.isin(spk, list(test))
        mean, std = X[tr].mean(0), X[tr].std(0) + 1e-8
        base = fit((X[tr] - mean) / std, y[tr])
        # Per-speaker standardisation of the training rows.
        Xs = np.empty_like(X)
        within = []
        for s in set(spk[tr]):
            rows = spk == s
            m, sd = X[rows].mean(0), X[rows].std(0) + 1e-8
            Xs[rows] = (X[rows] - m) / sd
            within.append(X[rows].var(0))
        pooled_sd = np.sqrt(np.mean(within, axis=0)) + 1e-8
        sn = fit(Xs[tr], y[tr])
        W0, b0 = base.coef_, base.intercept_

        def sn_stats(rows, k=4, pooled_sd=pooled_sd):
            n = len(rows)
            m = X[rows].mean(0)
            var = X[rows].var(0, ddof=1) if n > 1 else np.zeros(X.shape[1])
            w = (n - 1) / (n - 1 + k)
            return m, np.sqrt(w * var + (1 - w) * pooled_sd ** 2)

        for s in sorted(test):
            rows = np.flatnonzero(spk == s)
            yt = y[rows]
            add("base", yt, base.predict((X[rows] - mean) / std))
            for n in (1, 2, 4, 8, 16, len(rows)):
                for r in range(args.repeats if n < len(rows) else 1):
                    pick = np.random.default_rng([f, r, n]).choice(rows, n, replace=False)
                    m, sd = sn_stats(pick)
                    add(f"sn n={n if n < len(rows) else 'all'}", yt,
                        sn.predict((X[rows] - m) / sd))
            for c in np.unique(yt):
                sess = rows[yt == c]
                m, sd = sn_stats(sess)
                ok_sn = (sn.predict((X[sess] - m) / sd) == c).mean()
                ok_base = (base.predict((X[sess] - mean) / std) == c).mean()
                res["skewed"].setdefault(labels[c], []).append((float(ok_base), float(ok_sn)))
            for k in (1, 2, 4):
                for r in range(args.repeats):
                    g = np.random.default_rng([f, r, k, 7])
                    enrol = np.concatenate([g.choice(rows[yt == c], k, replace=False)
                                            for c in np.unique(yt)])
                    rest = np.setdiff1d(rows, enrol)
                    yr = y[rest]
                    m_e = X[enrol].mean(0)
                    add(f"k={k} base", yr, base.predict((X[rest] - mean) / std))
                    add(f"k={k} shift", yr, base.predict((X[rest] - m_e) / std))
                    for alpha in PRIOR_STRENGTH:
                        for name, mu in (("prior", mean), ("shift+prior", m_e)):
                            W, b = fit_prior((X[enrol] - mu) / std, y[enrol], W0, b0, alpha)
                            p = ((X[rest] - mu) / std) @ W.T + b
                            add(f"k={k} {name} a={alpha:g}", yr, p.argmax(1))
                    m, sd = sn_stats(enrol)
                    add(f"k={k} sn-enrol", yr, sn.predict((X[rest] - m) / sd))
        print(f"fold {f} done", file=sys.stderr)

    # UAR per speaker-draw, averaged (each test speaker weighs the same). Fold 1 is the
    # validation fold (the prior strength is chosen there); folds 2-5 report.
    table, valid = {}, {}
    for key, parts in preds.items():
        valid[key] = round(100 * float(np.mean([uar(a, b) for g, a, b in parts if g == 1])), 2)
        table[key] = round(100 * float(np.mean([uar(a, b) for g, a, b in parts if g > 1])), 2)
    skew = {lab: {"base_accuracy": round(100 * float(np.mean([a for a, _ in v])), 1),
                  "sn_accuracy": round(100 * float(np.mean([b for _, b in v])), 1)}
            for lab, v in res["skewed"].items()}
    # How sure each method is against how often it is right (all scored clips pooled; no
    # temperature: the SVM's own Platt probabilities, before any bundle calibration).
    sure = {}
    for key, parts in probs.items():
        for part, keep_fold in (("fold 1", lambda g: g == 1), ("folds 2-5", lambda g: g > 1)):
            yt = np.concatenate([a for g, a, _ in parts if keep_fold(g)])
            P = np.concatenate([b for g, _, b in parts if keep_fold(g)])
            conf, hit = P.max(1), P.argmax(1) == yt
            bins = np.minimum((conf * 10).astype(int), 9)
            ece = sum(abs(conf[bins == i].mean() - hit[bins == i].mean()) * (bins == i).mean()
                      for i in range(10) if (bins == i).any())
            sure.setdefault(key, {})[part] = {
                "confidence": round(100 * float(conf.mean()), 1),
                "accuracy": round(100 * float(hit.mean()), 1),
                "ece": round(100 * float(ece), 1),
                "nll": round(float(-np.log(np.clip(P[np.arange(len(yt)), yt], 1e-12, 1)).mean()),
                             3)}
    out = {"uar_per_speaker_mean_folds_2_5": table, "uar_per_speaker_mean_fold_1": valid,
           "one_emotion_sessions": skew, "calibration": sure,
           "data": args.data, "set": args.set, "base": args.base, "C": C, "folds": 5}
    args.out.write_text(json.dumps(out, indent=2))
    print(f"{'':<28} {'fold 1 (val)':>12} {'folds 2-5':>10}")
    for key, v in table.items():
        print(f"{key:<28} {valid[key]:12.2f} {v:10.2f}")
    for key, v in sure.items():
        print(f"{key:<28} " + "  ".join(
            f"{part}: confidence {m['confidence']:.1f} accuracy {m['accuracy']:.1f} "
            f"ECE {m['ece']:.1f} NLL {m['nll']:.3f}" for part, m in v.items()))
    for lab, v in skew.items():
        print(f"one-emotion session {lab:<8} base {v['base_accuracy']:5.1f}  "
              f"sn {v['sn_accuracy']:5.1f}")


if __name__ == "__main__":
    main()
