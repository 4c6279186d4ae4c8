"""Calibrated confidence and the "uncertain" threshold.

A model's probabilities are *calibrated* when, of all the answers given with confidence
0.8, about 80 % are right. Classifiers trained with class weights and strong regularisation
are not: ser fits one **temperature** ``T`` on validation speakers (never the test fold) and
the Recognizer answers ``softmax(log p / T)``. Dividing the logits by one positive number keeps
every argmax, so accuracy and UAR do not change; only the confidences do.

The **uncertain** threshold is the lowest calibrated confidence at which the validation
speakers' answers still reach a target precision: below it an answer is flagged
``uncertain``. Both live in ``model.json``::

    "calibration": {"method": "temperature", "temperature": 0.61, "fitted_on": {...}},
    "uncertain": {"threshold": 0.55, "target_precision": 0.8, "validation": {...}}

>>> p = np.array([[0.7, 0.2, 0.1]])
>>> Calibration(0.5).apply(p).round(3)
array([[0.907, 0.074, 0.019]])
>>> expected_calibration_error(np.array([[0.9, 0.1], [0.6, 0.4]]), np.array([0, 1]), bins=10)
0.35
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser.errors import SerError

#: Precision the "uncertain" threshold aims at on validation speakers (see docs/RESULTS.md).
TARGET_PRECISION = 0.8
BINS = 15
_EPS = 1e-12


class CalibrationError(SerError):
    """A calibration or uncertain-threshold record in model.json that makes no sense."""


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of probability vectors (``T > 1`` softens, ``T < 1`` sharpens).

    With ``distance`` (an exponent ``a``, 0 = off) the temperature grows with how far the
    input lies from the training data: ``T(x) = temperature * mean(x**2) ** a`` for ``x`` the
    normalised features the model saw (``mean(x**2)`` is ~1 on training data), so answers
    about inputs unlike the training corpora are softened (docs/RESULTS.md).
    """

    temperature: float = 1.0
    distance: float = 0.0

    def apply(self, probs: np.ndarray, features: np.ndarray | None = None, *,
              spread: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities of one ``(n_labels,)`` or ``(n, n_labels)`` probability
        vectors; ``features``: the normalised features they were computed from (one input's,
        or ``(n, ...)``), needed when ``distance`` is set (without them: the base
        temperature); or their ``spread`` (:func:`spread`) directly."""
        p = np.asarray(probs, dtype=np.float64)
        t: float | np.ndarray = self.temperature
        if self.distance and (features is not None or spread is not None):
            if spread is None:
                spread = feature_spread(np.asarray(features).reshape(
                    len(p) if p.ndim > 1 else 1, -1))
            t = self.temperature * np.maximum(np.asarray(spread, np.float64), _EPS) \
                ** self.distance
            t = t.reshape(-1, 1) if p.ndim > 1 else float(np.ravel(t)[0])
        if np.ndim(t) == 0 and t == 1.0:
            return p
        z = np.log(np.clip(p, _EPS, 1.0)) / t
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=-1, keepdims=True)

    def to_json(self, **fitted_on: Any) -> dict[str, Any]:
        return {"method": "temperature", "temperature": round(float(self.temperature), 6),
                **({"distance": round(float(self.distance), 6)} if self.distance else {}),
                **({"fitted_on": fitted_on} if fitted_on else {})}

    @classmethod
    def from_json(cls, record: Any) -> Calibration:
        """The calibration stored in a bundle (``None``: identity); raises on a bad record."""
        if record is None:
            return cls()
        if not isinstance(record, dict) or record.get("method") != "temperature":
            raise CalibrationError(f"calibration: unknown method in {record!r:.80} "
                                   "(this ser knows 'temperature')")
        t = record.get("temperature")
        if not _number(t) or not 0.01 <= t <= 100:
            raise CalibrationError(f"calibration: temperature must be a number in "
                                   f"[0.01, 100], not {t!r}")
        a = record.get("distance", 0.0)
        if not _number(a) or not 0.0 <= a <= 5.0:
            raise CalibrationError(f"calibration: distance must be a number in [0, 5], "
                                   f"not {a!r}")
        return cls(float(t), float(a))


def feature_spread(x: np.ndarray) -> np.ndarray:
    """``mean(x**2)`` of each row of normalised features ``(n, d)``: ~1 on training data,
    larger the further an input lies from it."""
    return np.mean(np.square(np.asarray(x, dtype=np.float64)), axis=1)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def uncertain_threshold_from_json(record: Any) -> float | None:
    """The ``uncertain.threshold`` stored in a bundle (None when absent); raises if bad."""
    if record is None:
        return None
    t = record.get("threshold") if isinstance(record, dict) else None
    if not isinstance(t, int | float) or isinstance(t, bool) or not 0.0 <= t <= 1.0:
        raise CalibrationError(f"uncertain: threshold must be a number in [0, 1], "
                               f"not {t!r}")
    return float(t)


def _nll(probs: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    logp = np.log(np.clip(probs[np.arange(len(y)), y], _EPS, 1.0))
    return float(-np.average(logp, weights=weights))


def speaker_weights(speakers: np.ndarray) -> np.ndarray:
    """Row weights giving every speaker the same total weight (a corpus with two speakers
    of 1200 clips each must not outweigh twenty speakers of 44)."""
    names, inverse, counts = np.unique(np.asarray(speakers), return_inverse=True,
                                       return_counts=True)
    return 1.0 / counts[inverse]


def fit_distance(probs: np.ndarray, y: np.ndarray, spread: np.ndarray,
                 weights: np.ndarray | None = None) -> Calibration:
    """Temperature and ``distance`` exponent minimising the weighted NLL of labels ``y``;
    ``spread``: each answer's ``mean(x**2)`` over its normalised features (under the
    normalisation of the model that gave the answer). The exponent is kept >= 0."""
    from scipy.optimize import minimize

    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0))
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return Calibration()
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    logd = np.log(np.maximum(np.asarray(spread, dtype=np.float64), _EPS))

    def loss(theta: np.ndarray) -> float:
        z = logp / np.exp(theta[0] + theta[1] * logd)[:, None]
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float(-(w * (z[np.arange(len(y)), y] - lse)).sum())

    res = minimize(loss, np.zeros(2), method="L-BFGS-B",
                   bounds=[(math.log(0.05), math.log(20.0)), (0.0, 5.0)])
    return Calibration(round(math.exp(float(res.x[0])), 6), round(float(res.x[1]), 6))


def fit_temperature(probs: np.ndarray, y: np.ndarray,
                    weights: np.ndarray | None = None) -> Calibration:
    """The temperature minimising the (``weights``-weighted) negative log-likelihood of
    labels ``y`` (indices)."""
    from scipy.optimize import minimize_scalar

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    if len(y) == 0:
        return Calibration()
    res = minimize_scalar(lambda lt: _nll(Calibration(math.exp(lt)).apply(probs), y, weights),
                          bounds=(math.log(0.05), math.log(20.0)), method="bounded",
                          options={"xatol": 1e-4})
    return Calibration(round(math.exp(float(res.x)), 6))


def _bin_of(conf: np.ndarray, bins: int) -> np.ndarray:
    """Each top-label confidence's equal-width bin, ``0..bins-1``."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = BINS,
                               weights: np.ndarray | None = None) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by
    how many answers fall in each (top-label confidence). ``weights`` weighs the answers
    (:func:`speaker_weights`: every speaker the same); by default each counts once."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y, dtype=int)
    w = np.ones(len(conf)) if weights is None else np.asarray(weights, dtype=np.float64)
    # sum over bins of |sum of (right - confidence)| == sum of n_b |accuracy_b - confidence_b|
    gap = np.bincount(_bin_of(conf, bins), weights=w * (correct - conf), minlength=bins)
    return round(float(np.abs(gap).sum() / w.sum()), 6)


def ece_by_group(probs: np.ndarray, y: np.ndarray,
                 groups: np.ndarray) -> dict[str, float]:
    """ECE of each group's answers (a corpus, a condition), by the group's name."""
    probs, y, groups = np.asarray(probs), np.asarray(y), np.asarray(groups).astype(str)
    return {str(g): expected_calibration_error(probs[groups == g], y[groups == g])
            for g in sorted(set(groups))}


def ece_floor(probs: np.ndarray, bins: int = BINS, draws: int = 200, seed: int = 0) -> float:
    """The ECE a perfectly calibrated model would show on answers with these top-label
    confidences (each right with probability = its confidence), averaged over ``draws``
    seeded draws: the measurement's own floor for this many answers. A 15-bin ECE on a few
    hundred answers is rarely below 0.05 even for a perfect model."""
    conf = np.asarray(probs, dtype=np.float64).max(axis=1)
    if conf.size == 0:
        return 0.0
    rng = np.random.default_rng(seed)
    which = _bin_of(conf, bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    right = rng.random((draws, conf.size)) < conf
    hits = np.stack([np.bincount(which, weights=r, minlength=bins) for r in right])
    return round(float(np.abs(hits - conf_sum).sum(axis=1).mean() / conf.size), 6)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Per non-empty confidence bin: its range, answers, mean confidence and accuracy."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = _bin_of(conf, bins)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(sel.sum()),
                        "confidence": float(conf[sel].mean()),
                        "accuracy": float(correct[sel].mean())})
    return out


def threshold_for_precision(conf: np.ndarray, correct: np.ndarray,
                            target: float = TARGET_PRECISION,
                            weights: np.ndarray | None = None) -> float:
    """The lowest confidence ``t`` such that the answers with confidence >= ``t`` are right
    at least ``target`` of the time (``weights``-weighted; 1.0 when no threshold reaches
    it)."""
    order = np.argsort(-np.asarray(conf, dtype=np.float64), kind="stable")
    c = np.asarray(conf, dtype=np.float64)[order]
    w = np.ones(len(c)) if weights is None else np.asarray(weights, dtype=np.float64)[order]
    hits = np.cumsum(w * np.asarray(correct, dtype=bool)[order])
    precision = hits / np.cumsum(w)
    # Only cut between distinct confidences: ties are all in or all out.
    last_of_tie = np.r_[c[1:] < c[:-1], True]
    ok = np.flatnonzero((precision >= target) & last_of_tie)
    return round(float(c[ok[-1]]), 4) if ok.size else 1.0


def coverage_curve(conf: np.ndarray, correct: np.ndarray,
                   points: int = 20) -> list[dict[str, float]]:
    """Accuracy of the answers kept when only the most confident fraction is answered."""
    order = np.argsort(-np.asarray(conf, dtype=np.float64), kind="stable")
    hits = np.cumsum(np.asarray(correct, dtype=bool)[order])
    n = len(order)
    out = []
    for cov in np.linspace(1.0 / points, 1.0, points):
        k = max(1, int(round(cov * n)))
        out.append({"coverage": round(float(k / n), 4),
                    "accuracy": round(float(hits[k - 1] / k), 4),
                    "threshold": round(float(np.asarray(conf)[order][k - 1]), 4)})
    return out


def confidence_report(probs: np.ndarray, y: np.ndarray, threshold: float | None = None, *,
                      speakers: np.ndarray | None = None,
                      corpora: np.ndarray | None = None) -> dict[str, Any]:
    """ECE, reliability table, accuracy against coverage and, given the uncertain
    ``threshold``, the coverage and accuracy of the answers above it. Given each answer's
    speaker and corpus, also the ECE with every speaker weighing the same and the ECE of
    each corpus: the pooled ECE counts clips, so a corpus of few voices and many clips
    each (TESS: 2 voices, 2400 clips) decides it."""
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    out: dict[str, Any] = {"ece": expected_calibration_error(probs, y), "bins": BINS,
                           "ece_floor": ece_floor(probs),
                           "nll": round(_nll(probs, y), 6),
                           "reliability": reliability(probs, y),
                           "coverage": coverage_curve(conf, correct)}
    if speakers is not None and len(set(speakers)) > 1:
        out["ece_speaker_weighted"] = expected_calibration_error(
            probs, y, weights=speaker_weights(speakers))
    if corpora is not None and len(set(corpora)) > 1:
        out["ece_per_corpus"] = ece_by_group(probs, y, corpora)
    if threshold is not None:
        sure = conf >= threshold
        out["uncertain"] = {"threshold": threshold, "coverage": round(float(sure.mean()), 4),
                            "accuracy_when_sure": round(float(correct[sure].mean()), 4)
                            if sure.any() else None,
                            "accuracy_when_uncertain": round(float(correct[~sure].mean()), 4)
                            if (~sure).any() else None}
    return out
