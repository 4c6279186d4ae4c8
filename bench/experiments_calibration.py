"""Calibration methods compared (issue #12, part 2): which map from a model's probabilities
to confidences holds on unseen speakers and on unseen corpora?

The model is the training recipe of ``ser train --model M`` (its classifier — the logistic
regression or the SVM — on the cached features, fitted on every row of the training
speakers, degraded copies included);
every calibrator is fitted on answers from speakers or corpora the model did not train on:

- ``none``: the model's own probabilities.
- ``temperature``: one temperature, speaker-weighted NLL on the out-of-fold answers of an
  inner 5-fold by speaker over the training speakers (what ``ser train`` ships today).
- ``temperature+degraded``: the same, fitted on the inner answers for the clean clips *and*
  their degraded copies.
- ``vector``: one scale and one bias per class on the log-probabilities (speaker-weighted
  NLL, a light L2 pull toward temperature 1 / bias 0).
- ``temperature-loco``: one temperature fitted on leave-one-corpus-out answers (a model
  trained on the other training corpora answers each training corpus).
- ``distance``: a temperature that grows with how far the input's features lie from the
  training data, ``T(x) = exp(t0 + a * log mean(z(x)**2))`` (``z``: the features under the
  model's normalisation), fitted on the inner speaker answers and the leave-one-corpus-out
  answers together (half the weight each); ``distance (speakers)``: on the former only.

Choices are made on validation answers only, never on a test fold:

- **validation (speakers)**: the inner out-of-fold answers are cross-fitted — a calibrator
  fitted on four inner groups is scored on the fifth (ECE per group, and pooled).
- **validation (corpora)**: a calibrator is scored on the leave-one-corpus-out answers of
  each training corpus, fitted without that corpus' answers.

- **validation (held-out speakers)**, ``--part val``: each outer fold's model and its
  inner twins are fitted on the fold's training speakers only, and every calibrator is
  scored on the fold's validation speakers, which neither saw. Unlike the two above it sees
  the gap between the twins (fitted on four fifths of the speakers) and the model they
  calibrate. No leave-one-corpus-out fits or cross-corpus runs in this mode.

Held-out figures (reported, not used to choose): ECE on each outer fold's test speakers
(``kfold-speaker``, 5 folds, seed 0: the folds of ``ser train``), and ``cross-corpus`` runs
(train on two corpora, test on the third).

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/experiments_calibration.py \\
        ../shared/data/ravdess ../shared/data/tess ../shared/data/savee \\
        --model whisper --augment degrade --noise ../shared/data/noise \\
        --out /tmp/calibration.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ser.calibration import (
    ece_floor,
    expected_calibration_error,
    fit_temperature,
    speaker_weights,
)

METHODS = ("none", "temperature", "temperature+degraded", "vector", "temperature-loco",
           "distance (speakers)", "distance")


# ------------------------------------------------------------------ vector scaling

def fit_vector(probs: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float = 1e-2):
    """Per-class scale ``a`` and bias ``b``: ``softmax(a * log p + b)`` (weighted NLL)."""
    from scipy.optimize import minimize

    logp = np.log(np.clip(probs, 1e-12, 1.0))
    k = probs.shape[1]
    w = weights / weights.sum()

    def loss(theta):
        a, b = theta[:k], theta[k:]
        z = logp * a + b
        z -= z.max(1, keepdims=True)
        lse = np.log(np.exp(z).sum(1))
        nll = -(w * (z[np.arange(len(y)), y] - lse)).sum()
        return nll + l2 * (np.sum((a - 1) ** 2) + np.sum(b ** 2))

    theta = minimize(loss, np.r_[np.ones(k), np.zeros(k)], method="L-BFGS-B").x
    a, b = theta[:k], theta[k:]

    def apply(p):
        z = np.log(np.clip(p, 1e-12, 1.0)) * a + b
        z -= z.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    return apply


# ------------------------------------------------------------------ answers

FIELDS = ("probs", "y", "speakers", "corpora", "aug", "dist")


class Answers:
    """Probabilities, labels, speakers, corpora, augmentation and distance (log of the mean
    squared z-score of the features under the answering model's normalisation) of some
    feature rows."""

    def __init__(self, probs, y, speakers, corpora, aug, dist=None):
        self.probs, self.y = np.asarray(probs), np.asarray(y, dtype=int)
        self.speakers, self.corpora = np.asarray(speakers), np.asarray(corpora)
        self.aug = np.asarray(aug)
        self.dist = np.zeros(len(self.y)) if dist is None else np.asarray(dist)

    def where(self, mask) -> Answers:
        return Answers(*(getattr(self, f)[mask] for f in FIELDS))

    def with_probs(self, probs) -> Answers:
        return Answers(probs, *(getattr(self, f) for f in FIELDS[1:]))

    @staticmethod
    def join(parts: list[Answers]) -> Answers:
        return Answers(*(np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS))


class Experiment:
    def __init__(self, ds, labels, hyper, estimator="logreg", seed=0, jobs=1):
        from ser.training import NONE

        self.ds, self.hyper, self.seed, self.none = ds, hyper, seed, NONE
        self.estimator, self.jobs = estimator, jobs
        self.y_utt = ds.manifest["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
        self.spk = ds.manifest["speaker_id"].to_numpy()
        self.corpus = ds.manifest["corpus"].to_numpy()
        self.n_labels = len(labels)

    def answers(self, train_utts: np.ndarray, test_utts: np.ndarray) -> Answers:
        """Fit on every row (all augmentations) of ``train_utts``; answer every row of
        ``test_utts`` (the clean clips and their degraded copies)."""
        from ser.models.classical import fit_logreg, fit_svm
        from ser.protocols import apply_normalization, fit_normalization

        ds = self.ds
        tr = ds.rows(train_utts, augmented=True)
        te = ds.rows(test_utts, augmented=True)
        mean, std = fit_normalization(ds.take(tr))
        ytr = self.y_utt[ds.row_utt[tr]]
        Xtr = apply_normalization(ds.take(tr), mean, std)
        if self.estimator == "svm":  # as ser.training fits it
            model = fit_svm(Xtr, ytr, seed=self.seed, class_weight="balanced",
                            **{k: self.hyper[k] for k in ("C", "gamma") if k in self.hyper})
        else:
            model = fit_logreg(Xtr, ytr, seed=self.seed,
                               **{k: self.hyper[k] for k in ("C", "k_best") if k in self.hyper})
        z = apply_normalization(ds.take(te), mean, std)
        p = np.zeros((len(te), self.n_labels))
        p[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(z)
        u = ds.row_utt[te]
        return Answers(p, self.y_utt[u], self.spk[u], self.corpus[u], ds.row_aug[te],
                       np.log(np.mean(np.square(z), axis=1)))

    def inner_speaker(self, utts: np.ndarray, folds: int = 5) -> tuple[Answers, np.ndarray]:
        """Out-of-fold answers of an inner k-fold by speaker (as ``ser train``), and each
        answer's inner group."""
        names = sorted(set(self.spk[utts]))
        part = {s: i % min(folds, len(names)) for i, s in enumerate(names)}
        group = np.array([part[s] for s in self.spk[utts]])
        parts = range(min(folds, len(names)))
        outs = self._map(lambda g: self.answers(utts[group != g], utts[group == g]), parts)
        return Answers.join(outs), np.concatenate([np.full(len(a.y), g)
                                                   for g, a in zip(parts, outs, strict=True)])

    def _map(self, f, items) -> list:
        """``f`` over ``items`` on ``jobs`` worker processes (joblib's loky). Not threads:
        libsvm draws its Platt scaling's folds from one process-wide random generator, so
        SVMs fitted at once on threads get other probabilities (``ser.training``)."""
        from joblib import Parallel, delayed

        return Parallel(n_jobs=self.jobs, backend="loky")(delayed(f)(i) for i in items)

    def inner_corpus(self, utts: np.ndarray) -> Answers | None:
        """Leave-one-corpus-out answers over the corpora of ``utts`` (None with one)."""
        corpora = sorted(set(self.corpus[utts]))
        if len(corpora) < 2:
            return None
        return Answers.join(self._map(lambda c: self.answers(utts[self.corpus[utts] != c],
                                                             utts[self.corpus[utts] == c]),
                                      corpora))


def calibrators(inner: Answers, loco: Answers | None, clean: str):
    """Each method's map, fitted on ``inner`` (speaker out-of-fold) / ``loco`` answers."""
    ok = inner.aug == clean
    base = inner.where(ok)
    w = speaker_weights(base.speakers)
    t = fit_temperature(base.probs, base.y, w)
    td = fit_temperature(inner.probs, inner.y, speaker_weights(inner.speakers))
    vector = fit_vector(base.probs, base.y, w)
    out = {"none": (lambda a: a.probs), "temperature": (lambda a: t.apply(a.probs)),
           "temperature+degraded": (lambda a: td.apply(a.probs)),
           "vector": (lambda a: vector(a.probs))}
    temps = {"temperature": t.temperature, "temperature+degraded": td.temperature}
    theta, out["distance (speakers)"] = fit_distance([inner])
    temps["distance (speakers)"] = theta
    if loco is not None:
        lc = loco.where(loco.aug == clean)
        tl = fit_temperature(lc.probs, lc.y, speaker_weights(lc.speakers))
        out["temperature-loco"] = lambda a: tl.apply(a.probs)
        temps["temperature-loco"] = tl.temperature
        theta, out["distance"] = fit_distance([inner, loco])
        temps["distance"] = theta
    return out, temps


def fit_distance(sources: list[Answers]):
    """An input-dependent temperature ``T(x) = exp(t0 + a * dist(x))`` (``dist``: log mean
    squared z-score of the input's features): answers far from the training data are
    softened more. Fitted by NLL on ``sources`` (each the same total weight, every speaker
    the same weight within it); returns ``(t0, a)`` and the map."""
    from scipy.optimize import minimize

    both = Answers.join(sources)
    w = np.concatenate([speaker_weights(s.speakers) / len(set(s.speakers)) for s in sources])
    w = w / w.sum()
    logp = np.log(np.clip(both.probs, 1e-12, 1.0))

    def log_softmax(lp, dist, theta):
        z = lp / np.exp(theta[0] + theta[1] * dist)[:, None]
        z = z - z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    def loss(theta):
        return -(w * log_softmax(logp, both.dist, theta)[np.arange(len(both.y)), both.y]).sum()

    theta = minimize(loss, [0.0, 0.0], method="L-BFGS-B").x
    return ([round(float(x), 4) for x in theta],
            lambda a: np.exp(log_softmax(np.log(np.clip(a.probs, 1e-12, 1.0)), a.dist, theta)))


def ece(probs, y) -> float:
    return expected_calibration_error(probs, y) if len(y) else math.nan


def nll(probs, y) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)))) \
        if len(y) else math.nan


def score(maps, a: Answers, clean: str) -> dict[str, dict[str, float]]:
    """ECE and NLL of each map on the clean answers of ``a`` and on their degraded copies."""
    out = {}
    for name, f in maps.items():
        c, d = a.where(a.aug == clean), a.where(a.aug != clean)
        pc, pd_ = f(c), f(d)
        out[name] = {"clean": ece(pc, c.y), "degraded": ece(pd_, d.y),
                     "nll_clean": nll(pc, c.y), "nll_degraded": nll(pd_, d.y)}
    return out


def validation(exp: Experiment, inner: Answers, groups: np.ndarray, loco: Answers | None,
               clean: str) -> dict[str, dict]:
    """Cross-fitted ECE on the inner answers (speakers), and on each training corpus'
    leave-one-corpus-out answers with calibrators fitted without that corpus."""
    per_group, fitted = [], {}
    for g in np.unique(groups):
        maps, _ = calibrators(inner.where(groups != g),
                              None if loco is None else loco.where(
                                  ~np.isin(loco.speakers, inner.speakers[groups == g])), clean)
        held = inner.where(groups == g)
        per_group.append(score(maps, held, clean))
        for m, f in maps.items():
            fitted.setdefault(m, []).append(held.with_probs(f(held)))
    res = {"speakers": {m: {k: float(np.mean([s[m][k] for s in per_group]))
                            for k in per_group[0][m]} for m in per_group[0]},
           "speakers_pooled": {m: score({m: lambda a: a.probs}, Answers.join(v), clean)[m]
                               for m, v in fitted.items()}}
    if loco is not None:
        per_corpus = {}
        for c in sorted(set(loco.corpora)):
            others = loco.where(loco.corpora != c)
            maps, _ = calibrators(inner.where(inner.corpora != c), others, clean)
            per_corpus[c] = score(maps, loco.where(loco.corpora == c), clean)
        res["corpora"] = per_corpus
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--model", default="whisper")
    ap.add_argument("--augment", default="degrade",
                    help="comma-separated training augmentations; 'none' for none")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the inner fits")
    ap.add_argument("--noise", default=None)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--skip-cross-corpus", action="store_true")
    ap.add_argument("--part", choices=("test", "val"), default="test",
                    help="val: fit on each fold's training speakers, score its validation "
                         "speakers (no leave-one-corpus-out, no cross-corpus)")
    ap.add_argument("--babble", default=None, help="as ser train --babble")
    ap.add_argument("--out", type=Path, default=Path("calibration.json"))
    args = ap.parse_args()

    from ser.models import get_model_spec
    from ser.protocols import make_splits
    from ser.training import TrainOptions, load_dataset

    args.out.parent.mkdir(parents=True, exist_ok=True)
    aug = () if args.augment == "none" else tuple(args.augment.split(","))
    opts = TrainOptions(model=args.model, augment=aug, noise_dir=args.noise,
                        babble_dir=args.babble)
    ds = load_dataset(args.data, opts, log=print)
    labels = list(opts.labels)
    spec = get_model_spec(args.model)
    exp = Experiment(ds, labels, {**spec.defaults}, estimator=spec.estimator, jobs=args.jobs)
    results: dict[str, list] = {"kfold": [], "cross_corpus": []}
    pooled: dict[str, list] = {}

    def run(name, fit_utts, test_utts):
        inner, groups = exp.inner_speaker(fit_utts)
        loco = exp.inner_corpus(fit_utts) if args.part == "test" else None
        maps, temps = calibrators(inner, loco, exp.none)
        test = exp.answers(fit_utts, test_utts)
        row = {"name": name, "temperatures": temps,
               "validation": validation(exp, inner, groups, loco, exp.none),
               "test": score(maps, test, exp.none),
               "test_ece_floor": ece_floor(maps["temperature"](
                   test.where(test.aug == exp.none))),
               "accuracy": float((test.probs.argmax(1) == test.y)[test.aug == exp.none].mean())}
        print(json.dumps(row), flush=True)
        clean = test.where(test.aug == exp.none)
        for m, f in maps.items():
            pooled.setdefault(m, []).append((f(clean), clean.y))
        return row

    for split in make_splits("kfold-speaker", ds.manifest, seed=0, folds=args.folds):
        if args.part == "val":
            results["kfold"].append(run(split.name, split.train, split.val))
        else:
            results["kfold"].append(run(split.name, np.concatenate([split.train, split.val]),
                                        split.test))
        args.out.write_text(json.dumps(results, indent=1))
    results["kfold_pooled"] = {m: ece(np.concatenate([p for p, _ in v]),
                                      np.concatenate([y for _, y in v]))
                               for m, v in pooled.items()}
    results["kfold_pooled_nll"] = {m: nll(np.concatenate([p for p, _ in v]),
                                          np.concatenate([y for _, y in v]))
                                   for m, v in pooled.items()}
    held = "validation" if args.part == "val" else "test"
    print(f"kfold {held} ECE pooled over the folds:", results["kfold_pooled"], flush=True)
    print(f"kfold {held} NLL pooled over the folds:", results["kfold_pooled_nll"], flush=True)
    if not args.skip_cross_corpus and args.part == "test":
        for c in sorted(set(exp.corpus)):
            is_c = exp.corpus == c
            results["cross_corpus"].append(run(f"test {c}", np.flatnonzero(~is_c),
                                               np.flatnonzero(is_c)))
            args.out.write_text(json.dumps(results, indent=1))
    summarise(results)


def summarise(results: dict[str, list]) -> None:
    for part in ("kfold", "cross_corpus"):
        rows = results[part]
        if not rows:
            continue
        floor = [r["test_ece_floor"] for r in rows]
        print(f"\n== {part}: ECE of a perfectly calibrated model on these test answers "
              f"(the floor): {', '.join(f'{x:.3f}' for x in floor)}")
        for m in METHODS:
            vs = [r["validation"]["speakers"][m]["clean"] for r in rows
                  if m in r["validation"]["speakers"]]
            vp = [r["validation"]["speakers_pooled"][m] for r in rows
                  if m in r["validation"]["speakers_pooled"]]
            vc = [v[m]["clean"] for r in rows for v in r["validation"].get("corpora", {}).values()
                  if m in v]
            te = [r["test"][m]["clean"] for r in rows if m in r["test"]]
            td = [r["test"][m]["degraded"] for r in rows if m in r["test"]]
            vcs = f"{np.mean(vc):.3f}" if vc else "-"
            if not vs:
                continue
            pooled = "/".join(f"{np.mean([v[k] for v in vp]):.3f}"
                              for k in ("clean", "degraded", "nll_clean", "nll_degraded"))
            print(f"{m:22s} val-speakers {np.mean(vs):.3f} (pooled ECE/ECE deg/NLL/NLL deg "
                  f"{pooled})  val-corpora {vcs}"
                  f"  | test clean {np.mean(te):.3f} ({', '.join(f'{x:.3f}' for x in te)})"
                  f"  degraded {np.nanmean(td) if td else float('nan'):.3f}")


if __name__ == "__main__":
    main()
