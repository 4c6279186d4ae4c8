"""Evaluation protocols: how utterances are split into training, validation and test rows.

========================  ==============================================================
``seed`` (LEAKY)          the seed's recipe: every file augmented x3, scaler fitted on all
                          rows, rows split at random 80/10/10 (``random_state=42``). Copies
                          of one recording — and every speaker — land on both sides.
``speaker`` (default)     no speaker in two of train / validation / test.
``kfold-speaker``         k folds by speaker; validation speakers come from each fold's
                          training side, never from its test side.
``cross-corpus``          train (and validate) on some corpora, test on another.
========================  ==============================================================

Splits are index arrays into a manifest table (one row per utterance — or, for ``seed``,
per augmented copy). Besides ``speaker_id`` and ``corpus`` columns nothing is needed, so
the functions are cheap to test on toy tables.

>>> import pandas as pd
>>> m = pd.DataFrame({"speaker_id": [f"c:{i // 3}" for i in range(30)], "corpus": "c"})
>>> [len(s.test) for s in kfold_speaker_splits(m, k=5)]
[6, 6, 6, 6, 6]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ser.errors import SerError

PROTOCOLS = ("seed", "speaker", "kfold-speaker", "cross-corpus")
LEAKY = {"seed"}


class ProtocolError(SerError):
    """A protocol that cannot be applied to the data given (too few speakers, …)."""


@dataclass(frozen=True)
class Split:
    """Row indices of one train/validation/test split; ``name`` is "split" or "fold-N"."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def speakers(self, manifest: pd.DataFrame) -> dict[str, list[str]]:
        ids = manifest["speaker_id"].to_numpy()
        return {part: sorted(set(ids[getattr(self, part)])) for part in ("train", "val", "test")}


def describe(protocol: str, **options: Any) -> dict[str, Any]:
    """The JSON record of a protocol, as stored in reports and bundles."""
    record = {"name": protocol, "leaky": protocol in LEAKY, **options}
    if protocol == "seed":
        record["warning"] = (
            "augmented copies of each recording and every speaker appear in both "
            "training and test rows, and the scaler saw the test rows; this figure "
            "overstates accuracy on new speakers."
        )
    return record


def _speakers_by_corpus(manifest: pd.DataFrame, rng: np.random.Generator) -> dict[str, list]:
    out: dict[str, list] = {}
    for corpus, group in manifest.groupby("corpus", sort=True):
        speakers = sorted(group["speaker_id"].unique())
        rng.shuffle(speakers)
        out[str(corpus)] = speakers
    return out


def _rows(manifest: pd.DataFrame, speakers: set) -> np.ndarray:
    return np.flatnonzero(manifest["speaker_id"].isin(speakers).to_numpy())


def _pick_validation(manifest: pd.DataFrame, train_speakers: set, fraction: float,
                     rng: np.random.Generator) -> set:
    """Validation speakers drawn from the training side, per corpus, so each corpus keeps at
    least two training speakers where it can; corpora with fewer than three speakers give
    none (their speakers are too precious for training)."""
    sub = manifest[manifest["speaker_id"].isin(train_speakers)]
    val: set = set()
    for speakers in _speakers_by_corpus(sub, rng).values():
        if len(speakers) >= 3:
            val.update(speakers[: max(1, round(fraction * len(speakers)))])
    if not val and len(train_speakers) >= 2:
        # Small data: still keep one speaker aside so early stopping has something to watch.
        val.add(sorted(train_speakers)[int(rng.integers(len(train_speakers)))])
    return val


def seed_splits(n_rows: int, random_state: int = 42) -> list[Split]:
    """The seed's random 80/10/10 split of rows, exactly as its notebook did it:
    ``train_test_split(test_size=0.2)`` then the held-out 20 % halved into test and validation.
    """
    from sklearn.model_selection import train_test_split

    idx = np.arange(n_rows)
    train, rest = train_test_split(idx, test_size=0.20, random_state=random_state, shuffle=True)
    test, val = train_test_split(rest, test_size=0.50, random_state=random_state, shuffle=True)
    return [Split("split", np.sort(train), np.sort(val), np.sort(test),
                  {"leaky": True, "random_state": random_state})]


def speaker_splits(manifest: pd.DataFrame, *, test_fraction: float = 0.2,
                   val_fraction: float = 0.1, seed: int = 0) -> list[Split]:
    """One speaker-independent split; test speakers are drawn per corpus so a mixture is
    tested on every corpus that has at least two speakers."""
    rng = np.random.default_rng(seed)
    test: set = set()
    for speakers in _speakers_by_corpus(manifest, rng).values():
        if len(speakers) >= 2:
            test.update(speakers[: max(1, round(test_fraction * len(speakers)))])
    if not test:
        raise ProtocolError("the speaker protocol needs at least two speakers in some corpus")
    train = set(manifest["speaker_id"].unique()) - test
    val = _pick_validation(manifest, train, val_fraction, rng)
    train -= val
    return [Split("split", _rows(manifest, train), _rows(manifest, val), _rows(manifest, test),
                  {"seed": seed})]


def kfold_speaker_splits(manifest: pd.DataFrame, *, k: int = 5, val_fraction: float = 0.1,
                         seed: int = 0) -> list[Split]:
    """k folds by speaker. Speakers of each corpus are dealt round-robin (continuing across
    corpora) so every fold's test side mixes corpora; each utterance is tested exactly once.
    """
    speakers_all = manifest["speaker_id"].unique()
    if len(speakers_all) < k:
        raise ProtocolError(f"{k} folds need at least {k} speakers; the data has "
                            f"{len(speakers_all)} (use --folds {len(speakers_all)} or fewer)")
    if k < 2:
        raise ProtocolError("kfold-speaker needs at least 2 folds")
    rng = np.random.default_rng(seed)
    folds: list[set] = [set() for _ in range(k)]
    slot = 0
    for speakers in _speakers_by_corpus(manifest, rng).values():
        for spk in speakers:
            folds[slot % k].add(spk)
            slot += 1
    splits = []
    for i, test in enumerate(folds):
        train = set(speakers_all) - test
        val = _pick_validation(manifest, train, val_fraction, rng)
        train -= val
        splits.append(Split(f"fold-{i + 1}", _rows(manifest, train), _rows(manifest, val),
                            _rows(manifest, test), {"fold": i + 1, "k": k, "seed": seed}))
    return splits


def cross_corpus_splits(manifest: pd.DataFrame, test_corpora: list[str], *,
                        val_fraction: float = 0.1, seed: int = 0) -> list[Split]:
    """Train and validate on the other corpora (validation by speaker), test on ``test_corpora``."""
    corpora = set(manifest["corpus"].unique())
    unknown = set(test_corpora) - corpora
    if unknown:
        raise ProtocolError(f"test corpus {', '.join(sorted(unknown))} is not in the data "
                            f"(corpora found: {', '.join(sorted(corpora))})")
    if not test_corpora or set(test_corpora) == corpora:
        raise ProtocolError("cross-corpus needs at least one training and one test corpus "
                            "(--test-corpus NAME)")
    rng = np.random.default_rng(seed)
    is_test = manifest["corpus"].isin(test_corpora).to_numpy()
    train = set(manifest.loc[~is_test, "speaker_id"].unique())
    val = _pick_validation(manifest, train, val_fraction, rng)
    train -= val
    return [Split("split", _rows(manifest, train), _rows(manifest, val), np.flatnonzero(is_test),
                  {"test_corpora": sorted(test_corpora), "seed": seed})]


def make_splits(protocol: str, manifest: pd.DataFrame, *, seed: int = 0, folds: int = 5,
                test_corpora: list[str] | None = None) -> list[Split]:
    """Dispatch by protocol name (``seed`` expects the augmented-rows manifest)."""
    if protocol == "seed":
        return seed_splits(len(manifest))
    if protocol == "speaker":
        return speaker_splits(manifest, seed=seed)
    if protocol == "kfold-speaker":
        return kfold_speaker_splits(manifest, k=folds, seed=seed)
    if protocol == "cross-corpus":
        return cross_corpus_splits(manifest, list(test_corpora or []), seed=seed)
    raise ProtocolError(f"unknown protocol {protocol!r}; choose one of: {', '.join(PROTOCOLS)}")


# ---------------------------------------------------------------- normalisation statistics

def fit_normalization(X_train, *, kind: str = "standard") -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) to apply as ``(x - mean) / std``, from TRAINING rows only.

    Vector features ``(N, D)`` give per-column statistics ``(D,)``; log-mel inputs (a list of
    ``(n_mels, frames)`` arrays) give per-band statistics ``(n_mels, 1)`` over all frames.
    ``kind="minmax"`` reproduces the seed's MinMaxScaler as mean=min, std=max-min.
    """
    if isinstance(X_train, list):
        frames = np.concatenate([np.asarray(x, dtype=np.float64) for x in X_train], axis=1)
        mean = frames.mean(axis=1, keepdims=True)
        std = frames.std(axis=1, keepdims=True)
    else:
        X = np.asarray(X_train, dtype=np.float64)
        if kind == "minmax":
            mean, std = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
        else:
            mean, std = X.mean(axis=0), X.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)  # constant columns: leave them centred, not inf
    return mean.astype(np.float32), std.astype(np.float32)


def apply_normalization(X, mean: np.ndarray, std: np.ndarray):
    if isinstance(X, list):
        return [((np.asarray(x) - mean) / std).astype(np.float32) for x in X]
    return ((np.asarray(X) - mean) / std).astype(np.float32)
