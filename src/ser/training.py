"""Training runs: scan → features (cached) → protocol splits → fit → test → reports → bundle.

One call, :func:`train`, does a whole run into a folder::

    runs/NAME/
      config.json             what was asked (a rerun with the same folder resumes)
      fold-1/ … | split/      per split: last.safetensors (checkpoint: one atomic file),
                              best.safetensors, model.onnx, result.json once finished
      final/                  kfold-speaker: the model refitted on every speaker (the bundle)
      metrics.json  classification_report.txt  confusion_matrix.png  curves.png  report.md
      predictions.csv         every test row with its prediction and probabilities (p_<label>)
      bundle/                 model.json + model.onnx (+ weights.safetensors)

Determinism: every random choice is seeded from ``seed`` and the epoch number (shuffling,
crops, masks, mixup, dropout), so a run killed mid-way and restarted from its last checkpoint
ends with the same weights as one that was never interrupted.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from ser.augment import DEGRADE_VERSION, VERSIONED, Augmentation, get_augmentation
from ser.bundle import atomic_write, save_bundle
from ser.calibration import (
    TARGET_PRECISION,
    confidence_report,
    ece_floor,
    expected_calibration_error,
    feature_spread,
    fit_distance,
    fit_temperature,
    speaker_weights,
    threshold_for_precision,
)
from ser.errors import SerError
from ser.evaluation import compute_metrics, licence_for, summarize_folds, write_reports
from ser.labels import CANONICAL
from ser.models import MODELS, ModelSpec, get_model_spec
from ser.models.torch_training import fit_torch, set_threads
from ser.protocols import (
    PROTOCOLS,
    Split,
    apply_normalization,
    describe,
    fit_normalization,
    make_splits,
)

NONE = "none"  # the augmentation name of original (unaugmented) rows


class TrainError(SerError):
    """A run that cannot start or continue (no data, a different run in the folder, …)."""


@dataclass
class TrainOptions:
    """Everything that defines a run (stored in ``config.json``)."""

    model: str = "cnn"
    protocol: str = "speaker"
    labels: tuple[str, ...] = CANONICAL
    epochs: int | None = None          # None: the model's default
    seed: int = 0
    folds: int = 5
    test_corpora: tuple[str, ...] = ()
    corpora: tuple[str, ...] | None = None
    feature_set: str | None = None     # None: the model's default set
    feature_options: dict[str, Any] = field(default_factory=dict)  # the set's config overrides
    augment: tuple[str, ...] | None = None   # None: the model's default augmentations
    final: bool = True                 # kfold-speaker: refit on all speakers for the bundle
    hyper: dict[str, Any] = field(default_factory=dict)
    noise_dir: str | None = None       # recorded noise for the 'degrade' augmentation
    babble_dir: str | None = None      # speech of other speakers for 'degrade''s babble

    def resolved(self) -> dict[str, Any]:
        spec = get_model_spec(self.model)
        unknown = sorted(set(self.hyper) - set(spec.defaults))
        if unknown:
            raise TrainError(f"model {self.model!r} has no setting {', '.join(unknown)}; its "
                             f"settings are: {', '.join(sorted(spec.defaults))}")
        hyper = {**spec.defaults, **self.hyper}
        if self.epochs is not None:
            hyper["epochs"] = int(self.epochs)
        record = asdict(self)
        if not self.feature_options:  # unrecorded when unused: older run folders still resume
            del record["feature_options"]
        for key in ("noise_dir", "babble_dir"):  # unrecorded when unused (older runs resume)
            if record[key] is None:
                del record[key]
        augment = list(spec.augment if self.augment is None else self.augment)
        if set(VERSIONED) & set(augment):  # draws changed over time: a run resumes its own
            record["degrade_version"] = DEGRADE_VERSION
        return {**record, "hyper": hyper,
                "feature_set": self.feature_set or spec.feature_set,
                "augment": augment,
                "labels": list(self.labels), "test_corpora": list(self.test_corpora),
                "corpora": list(self.corpora) if self.corpora else None}


# ------------------------------------------------------------------------------ data

@dataclass
class Dataset:
    """Feature rows: originals and augmented copies. ``manifest`` has one row per utterance;
    ``row_utt[i]`` is the utterance of feature row ``i`` and ``row_aug[i]`` its augmentation."""

    manifest: pd.DataFrame
    X: Any                       # (R, D) array, or list of (n_mels, frames) arrays
    row_utt: np.ndarray
    row_aug: np.ndarray
    feature_set: Any
    failed: list[tuple[str, str]]

    def rows(self, utt_idx: np.ndarray, augmented: bool) -> np.ndarray:
        keep = np.isin(self.row_utt, utt_idx)
        if not augmented:
            keep &= self.row_aug == NONE
        return np.flatnonzero(keep)

    def take(self, rows: np.ndarray):
        if isinstance(self.X, list):
            return [self.X[i] for i in rows]
        return self.X[rows]


def _extract(utterances, fs, augment: Augmentation | None, cache_dir, jobs):
    """Adapter over :func:`ser.features.extract`: features in utterance order, ``None`` where
    extraction failed, plus the failures."""
    from ser.features import extract

    table = extract(utterances, fs, augment=augment, cache_dir=cache_dir, n_jobs=jobs)
    by_path = {str(p): i for i, p in enumerate(table.manifest["path"])}
    out = [None] * len(utterances)
    for j, u in enumerate(utterances):
        i = by_path.get(str(u.path))
        if i is not None:
            out[j] = table.X[i]
    return out, list(table.failed)


def augmented_copies(augment: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(row key, augmentation, seed)`` of each training copy: a repeated name is one more
    copy with fresh draws (seed 1, 2…; its rows keyed ``name#2``, ``name#3``…).

    >>> augmented_copies(["degrade", "degrade", "babble"])
    [('degrade', 'degrade', 0), ('degrade#2', 'degrade', 1), ('babble', 'babble', 0)]
    """
    out = []
    for k, name in enumerate(augment):
        seed = list(augment[:k]).count(name)
        out.append((name if not seed else f"{name}#{seed + 1}", name, seed))
    return out


def load_dataset(paths: Sequence[str | Path], opts: TrainOptions, *, cache_dir=None,
                 jobs: int | None = None, log: Callable[[str], None] = print) -> Dataset:
    from ser.corpora import manifest_frame, scan
    from ser.features import get_feature_set

    conf = opts.resolved()
    result = scan(paths, corpora=conf["corpora"], labels=opts.labels)
    utts = list(result.utterances)
    if not utts:
        raise TrainError(f"no labelled utterances found under {', '.join(map(str, paths))} "
                         f"for labels {', '.join(opts.labels)}")
    if opts.babble_dir and conf["augment"]:
        from ser.augment import speech_files

        files, voices = speech_files(opts.babble_dir)
        heard = sorted({u.speaker_id for u in utts} & set(voices)) or \
            [str(u.path) for u in utts if Path(u.path).resolve() in set(files)]
        if heard:
            raise TrainError(f"the babble speech under {opts.babble_dir} holds training "
                             f"speakers or clips ({heard[0]}): babble must be other speakers")
    fs = get_feature_set(conf["feature_set"], **opts.feature_options)
    log(f"{len(utts)} utterances; extracting {fs.name} features"
        + (f" (+ {', '.join(conf['augment'])} copies)" if conf["augment"] else ""))
    feats, failed = _extract(utts, fs, None, cache_dir, jobs)
    per_aug = {NONE: feats}
    for key, name, seed in augmented_copies(conf["augment"]):
        aug = get_augmentation(name, seed=seed, noise_dir=opts.noise_dir,
                               babble_dir=opts.babble_dir)
        per_aug[key], more = _extract(utts, fs, aug, cache_dir, jobs)
        failed += more
    ok = [i for i in range(len(utts)) if all(per_aug[a][i] is not None for a in per_aug)]
    if not ok:
        raise TrainError("feature extraction failed for every file; first failure: "
                         f"{failed[0] if failed else '?'}")
    utts = [utts[i] for i in ok]
    X, row_utt, row_aug = [], [], []
    for aug, values in per_aug.items():
        for new, old in enumerate(ok):
            X.append(values[old])
            row_utt.append(new)
            row_aug.append(aug)
    X = X if fs.kind == "sequence" else np.stack(X).astype(np.float32)
    return Dataset(manifest_frame(utts), X, np.asarray(row_utt), np.asarray(row_aug), fs,
                   failed)


def data_summary(manifest: pd.DataFrame) -> dict[str, Any]:
    corpora = {}
    for name, group in manifest.groupby("corpus", sort=True):
        corpora[str(name)] = {"utterances": int(len(group)),
                              "speakers": int(group["speaker_id"].nunique()),
                              "labels": {str(k): int(v) for k, v in
                                         group["label"].value_counts().sort_index().items()}}
    return {"utterances": int(len(manifest)), "speakers": int(manifest["speaker_id"].nunique()),
            "corpora": corpora}


# ------------------------------------------------------------------------------ one split

def onnx_probabilities(onnx_bytes: bytes, X) -> np.ndarray:
    """Run the exported graph (the bundle's ``model.onnx``) on normalised inputs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    if isinstance(X, list):
        return np.concatenate([sess.run(["probabilities"], {"features": x[None]})[0] for x in X])
    return sess.run(["probabilities"], {"features": np.asarray(X, np.float32)})[0]


def _full_proba(model, X: np.ndarray, n_labels: int) -> np.ndarray:
    """``predict_proba`` with a column for every label (a label absent from training: 0)."""
    p = model.predict_proba(X)
    out = np.zeros((len(X), n_labels))
    out[:, np.asarray(model.classes_, dtype=int)] = p
    return out


class Answers(NamedTuple):
    """Out-of-fold answers for calibration: probabilities, label indices, speakers, which
    rows are clean (not augmented copies), and each row's feature spread under the
    normalisation of the model that answered (``ser.calibration.feature_spread``)."""

    probs: np.ndarray
    y: np.ndarray
    speakers: np.ndarray
    clean: np.ndarray
    spread: np.ndarray


def _held_out_proba(fit, X: np.ndarray, y: np.ndarray, held: np.ndarray,
                    n_labels: int) -> np.ndarray:
    """Probabilities for the rows ``held`` from a model fitted on the other rows (one task of
    :func:`_fit_classical`, run in a worker process when ``jobs`` > 1)."""
    return _full_proba(fit(X[~held], y[~held]), X[held], n_labels)


def _speaker_groups(ds: Dataset, rows: np.ndarray, folds: int = 5) -> np.ndarray | None:
    """Each of ``rows`` (feature rows: the original clips and their augmented copies) given
    its part of an inner k-fold by speaker; None with < 2 speakers."""
    speakers = ds.manifest["speaker_id"].to_numpy()[ds.row_utt[rows]]
    names = sorted(set(speakers))
    if len(names) < 2:
        return None
    part = {s: i % min(folds, len(names)) for i, s in enumerate(names)}
    return np.array([part[s] for s in speakers])


def _corpus_groups(ds: Dataset, rows: np.ndarray) -> np.ndarray | None:
    """Each of ``rows`` given its corpus, for leave-one-corpus-out answers (how confident
    the model is where it is a stranger); None with fewer than two corpora."""
    corpora = ds.manifest["corpus"].to_numpy()[ds.row_utt[rows]]
    return corpora if len(set(corpora)) >= 2 else None


def _fit_classical(fit, X: np.ndarray, y: np.ndarray, ds: Dataset, rows: np.ndarray,
                   groups: Sequence[np.ndarray | None], n_labels: int, jobs: int
                   ) -> tuple[Any, list[Answers | None]]:
    """The model fitted on every row of ``X`` (``rows`` of ``ds``), and for each grouping
    in ``groups`` (None: skipped) the out-of-fold answers of models fitted on the other
    groups' rows.

    The fits are independent and run on ``jobs`` worker processes (joblib's loky; 1: in
    this process). Not threads: libsvm draws the folds of its Platt scaling from one
    process-wide random generator, so SVMs fitted at once on threads do not give the
    probabilities they give one after another."""
    from joblib import Parallel, delayed

    from ser.calibration import feature_spread

    helds = [[] if group is None else [group == g for g in np.unique(group)]
             for group in groups]
    tasks = [delayed(fit)(X, y)] + [delayed(_held_out_proba)(fit, X, y, held, n_labels)
                                    for held in sum(helds, [])]
    model, *held_probs = Parallel(n_jobs=max(1, jobs), backend="loky")(tasks)
    speakers = ds.manifest["speaker_id"].to_numpy()[ds.row_utt[rows]]
    answers: list[Answers | None] = []
    for group_helds in helds:
        if not group_helds:
            answers.append(None)
            continue
        probs, spread = np.zeros((len(rows), n_labels)), np.zeros(len(rows))
        for held in group_helds:
            probs[held] = held_probs.pop(0)
            mean, std = X[~held].mean(axis=0), X[~held].std(axis=0)
            spread[held] = feature_spread((X[held] - mean) / np.where(std > 0, std, 1.0))
        answers.append(Answers(probs, y, speakers, ds.row_aug[rows] == NONE, spread))
    return model, answers


def fit_confidence(val: Answers, loco: Answers | None = None,
                   target: float = TARGET_PRECISION):
    """Calibration and uncertain threshold from answers on speakers the model did not train
    on, every speaker weighing the same, fitted on the answers for the clips *and* their
    augmented (degraded) copies — the conditions the model is trained for. With ``loco``
    (leave-one-corpus-out answers, half the weight) the temperature also grows with the
    input's distance from the training data (``Calibration.distance``); without it one
    temperature. The threshold: on the clean answers. docs/RESULTS.md, "More than one
    temperature?"."""
    if loco is not None:
        w = np.concatenate([speaker_weights(a.speakers) / len(set(a.speakers))
                            for a in (val, loco)])
        calibration = fit_distance(np.concatenate([val.probs, loco.probs]),
                                   np.concatenate([val.y, loco.y]),
                                   np.concatenate([val.spread, loco.spread]), w)
    else:
        calibration = fit_temperature(val.probs, val.y, speaker_weights(val.speakers))
    keep = np.asarray(val.clean, bool)
    cal = calibration.apply(val.probs[keep], spread=val.spread[keep])
    threshold = threshold_for_precision(cal.max(1), cal.argmax(1) == np.asarray(val.y)[keep],
                                        target, speaker_weights(np.asarray(val.speakers)[keep]))
    return calibration, threshold


def run_split(ds: Dataset, split: Split, conf: dict[str, Any], labels: list[str], out: Path, *,
              seed_rows: bool, progress=None, log: Callable[[str], None] = print,
              jobs: int = 1) -> dict[str, Any]:
    """Fit on the split's training rows and score its test rows; cached in ``result.json``.
    ``jobs``: worker processes for a classical model's fits (the model and its
    calibration's); the result does not depend on it."""
    spec = get_model_spec(conf["model"])
    out.mkdir(parents=True, exist_ok=True)
    done = out / "result.json"
    if done.exists():
        log(f"{out.name}: already finished, reusing its result")
        return json.loads(done.read_text())
    t0 = time.perf_counter()
    val: Answers | None = None
    loco: Answers | None = None
    y_all = ds.manifest["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    if seed_rows:  # the seed: splits index feature rows (augmented copies included)
        tr, va, te = split.train, split.val, split.test
    else:
        tr = ds.rows(split.train, augmented=True)
        va = ds.rows(split.val, augmented=False)
        te = ds.rows(split.test, augmented=False)
    ytr, yva, yte = (y_all[ds.row_utt[r]] for r in (tr, va, te))
    if conf["protocol"] == "seed":  # the seed's leak, on purpose: scaler fitted on all rows
        mean, std = fit_normalization(ds.X, kind="minmax")
    else:
        # Classical models also fit on the validation speakers (no early stopping to feed).
        fit_rows = np.concatenate([tr, va]) if spec.kind == "sklearn" else tr
        mean, std = fit_normalization(ds.take(fit_rows))
    norm = lambda rows: apply_normalization(ds.take(rows), mean, std)  # noqa: E731
    Xtr, Xva, Xte = norm(tr), norm(va), norm(te)
    hyper = conf["hyper"]
    weights = None
    if spec.kind == "torch":
        fit = fit_torch(spec, hyper, Xtr, ytr, Xva, yva, len(labels), out, seed=conf["seed"],
                        epochs=conf.get("_epochs_override"), progress=progress)
        from ser.models import torch_to_onnx

        shape = tuple(Xtr[0].shape[:1]) if isinstance(Xtr, list) else tuple(Xtr.shape[1:])
        if isinstance(Xtr, list):
            shape = (shape[0], 100)
        onnx_bytes = torch_to_onnx(fit.model, shape, dynamic_time=isinstance(Xtr, list))
        weights = {k: v for k, v in fit.model.state_dict().items()}
        history, best_epoch = fit.history, fit.best_epoch
        # calibrated on the validation speakers' clips and their augmented copies
        cal_rows = va if seed_rows else ds.rows(split.val, augmented=True)
        if len(yva):
            Xcal = norm(cal_rows)
            val = Answers(onnx_probabilities(onnx_bytes, Xcal), y_all[ds.row_utt[cal_rows]],
                          ds.manifest["speaker_id"].to_numpy()[ds.row_utt[cal_rows]],
                          ds.row_aug[cal_rows] == NONE,
                          np.array([feature_spread(np.reshape(x, (1, -1)))[0] for x in Xcal]))
        cal_source = "validation speakers" + (
            " (clips and augmented copies)" if np.any(ds.row_aug[cal_rows] != NONE) else "")
    else:
        from ser.models.classical import fit_logreg, fit_svm, svm_to_onnx

        # No early stopping: the validation speakers are training data for these models.
        Xfit = np.concatenate([Xtr, Xva]) if len(yva) else Xtr
        yfit = np.concatenate([ytr, yva]) if len(yva) else ytr
        def fit_classical(X, y):
            if spec.estimator == "logreg":
                return fit_logreg(X, y, seed=conf["seed"],
                                  **{k: hyper[k] for k in ("C", "k_best") if k in hyper})
            return fit_svm(X, y, seed=conf["seed"], class_weight="balanced",
                           **{k: hyper[k] for k in ("C", "gamma", "pca") if k in hyper})

        # Calibration needs answers on speakers the model never heard, and these models
        # train on their validation speakers: the answers come from an inner k-fold by
        # speaker over every row they train on (augmented copies included). The model and
        # the inner fits are independent: they run on ``jobs`` processes.
        fit_idx = np.concatenate([tr, va]) if len(yva) else tr
        model, (val, loco) = _fit_classical(
            fit_classical, Xfit, yfit, ds, fit_idx,
            [_speaker_groups(ds, fit_idx),
             _corpus_groups(ds, fit_idx) if spec.calibration == "distance" else None],
            len(labels), jobs)
        onnx_bytes = svm_to_onnx(model, Xtr.shape[1])
        history, best_epoch = [], 0
        copies = bool(np.any(ds.row_aug[fit_idx] != NONE))
        cal_source = ("out-of-fold answers of an inner 5-fold by speaker over the training rows"
                      + (" (clips and augmented copies)" if copies else "")
                      + (" and leave-one-corpus-out answers" if loco is not None else ""))
    fit_seconds = time.perf_counter() - t0
    atomic_write(out / "model.onnx", onnx_bytes)
    if weights:
        from safetensors.torch import save

        atomic_write(out / "weights.safetensors",
                     save({k: v.detach().contiguous() for k, v in weights.items()}))
    result: dict[str, Any] = {"name": split.name, "fit_seconds": fit_seconds,
                              "best_epoch": best_epoch, "history": history,
                              "normalization": {"mean": mean.tolist(), "std": std.tolist()},
                              "n_train_rows": int(len(tr)), "n_val_rows": int(len(va)),
                              "speakers": split.speakers(ds.manifest) if not seed_rows else None}
    calibration = threshold = None
    if val is not None:
        calibration, threshold = fit_confidence(val, loco)
        result["val"] = {"label": val.y.tolist(), "probs": np.round(val.probs, 6).tolist(),
                         "speaker_id": [str(x) for x in val.speakers],
                         "clean": [bool(x) for x in val.clean],
                         "spread": np.round(val.spread, 6).tolist()}
        result["calibration"] = calibration.to_json(
            answers=cal_source, rows=int(len(val.y)), clean_rows=int(val.clean.sum()),
            **({"corpus_rows": int(len(loco.y))} if loco is not None else {}))
        result["uncertain"] = {"threshold": threshold, "target_precision": TARGET_PRECISION}
    if len(te):
        raw = onnx_probabilities(onnx_bytes, Xte)
        probs = calibration.apply(raw, Xte) if calibration is not None else raw
        man = ds.manifest.iloc[ds.row_utt[te]]
        result["test"] = {"path": man["path"].astype(str).tolist(),
                          "corpus": man["corpus"].tolist(),
                          "speaker_id": man["speaker_id"].tolist(),
                          "augment": ds.row_aug[te].tolist(),
                          "label": man["label"].tolist(),
                          "predicted": [labels[i] for i in probs.argmax(1)],
                          "confidence": probs.max(1).round(4).tolist(),
                          "confidence_raw": raw.max(1).round(4).tolist(),
                          "uncertain": (probs.max(1) < (threshold or 0.0)).tolist(),
                          **{f"p_{lab}": probs[:, i].round(5).tolist()
                             for i, lab in enumerate(labels)}}
        result["metrics"] = compute_metrics(result["test"]["label"], result["test"]["predicted"],
                                            labels, result["test"]["corpus"])
        yte_idx = np.asarray(yte, dtype=int)
        result["metrics"]["ece"] = expected_calibration_error(probs, yte_idx)
        result["metrics"]["ece_uncalibrated"] = expected_calibration_error(raw, yte_idx)
        result["metrics"]["ece_floor"] = ece_floor(probs)
    atomic_write(done, json.dumps(result).encode())
    return result


# ------------------------------------------------------------------------------ the run

def _split_row(res: dict[str, Any]) -> dict[str, Any]:
    """One split of a run as the report lists it: speakers, kept epoch, test scores."""
    row: dict[str, Any] = {"name": res["name"], "speakers": res.get("speakers"),
                           "best_epoch": int(res.get("best_epoch") or 0),
                           "epochs_run": len(res.get("history") or [])}
    if "metrics" in res:
        row.update(uar=res["metrics"]["uar"], accuracy=res["metrics"]["accuracy"],
                   ece=res["metrics"].get("ece"), ece_floor=res["metrics"].get("ece_floor"))
    return row


def pooled_confidence(pooled: dict[str, list], labels: list[str]) -> dict[str, Any]:
    """ECE (calibrated and not), reliability, accuracy against coverage and the uncertain
    flags' coverage, over every split's test rows (each calibrated by its own split)."""
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.array([index[lab] for lab in pooled["label"]])
    probs = np.array([pooled[f"p_{lab}"] for lab in labels]).T
    report = confidence_report(probs, y, speakers=np.asarray(pooled["speaker_id"]),
                               corpora=np.asarray(pooled["corpus"]))
    raw_conf = np.asarray(pooled["confidence_raw"])
    raw = np.zeros_like(probs)
    raw[np.arange(len(y)), probs.argmax(1)] = raw_conf  # ECE needs only the top label
    report["ece_uncalibrated"] = expected_calibration_error(raw, y)
    if "uncertain" in pooled:
        sure = ~np.asarray(pooled["uncertain"], dtype=bool)
        correct = probs.argmax(1) == y
        report["uncertain"] = {
            "coverage": round(float(sure.mean()), 4),
            "accuracy_when_sure": round(float(correct[sure].mean()), 4) if sure.any() else None,
            "accuracy_when_uncertain": round(float(correct[~sure].mean()), 4)
            if (~sure).any() else None,
            "target_precision": TARGET_PRECISION}
    return report


def bundle_confidence(bundle_from: dict[str, Any],
                      results: list[dict[str, Any]]) -> dict[str, Any]:
    """The bundle's ``calibration`` and ``uncertain`` records: its split's own, or (a model
    refitted on every speaker) fitted on the pooled validation answers of every fold."""
    if "calibration" in bundle_from:
        return {"calibration": bundle_from["calibration"],
                "uncertain": bundle_from["uncertain"]}
    vals = [r["val"] for r in results if "val" in r]
    if not vals:
        return {}
    y = np.concatenate([v["label"] for v in vals]).astype(int)
    probs = np.concatenate([np.asarray(v["probs"]) for v in vals])
    speakers = np.concatenate([v.get("speaker_id", ["?"] * len(v["label"])) for v in vals])
    clean = np.concatenate([v.get("clean", [True] * len(v["label"])) for v in vals]).astype(bool)
    spread = np.concatenate([v.get("spread", [1.0] * len(v["label"])) for v in vals])
    calibration, threshold = fit_confidence(Answers(probs, y, speakers, clean, spread))
    return {"calibration": calibration.to_json(answers=f"validation speakers of "
                                               f"{len(vals)} folds", rows=int(len(y))),
            "uncertain": {"threshold": threshold, "target_precision": TARGET_PRECISION}}


def _check_config(out: Path, record: dict[str, Any]) -> None:
    path = out / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != record:
            diff = sorted(k for k in set(old) | set(record) if old.get(k) != record.get(k))
            raise TrainError(f"{out} holds a different run (differs in: {', '.join(diff)}); "
                             "choose a new --out folder or delete the old one")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(record, indent=2).encode())


def _require_packages(spec: ModelSpec, conf: dict[str, Any]) -> None:
    """Before any work: the packages the model and its feature set need (one clear line)."""
    from ser.extras import require
    from ser.features import get_feature_set

    needs = ("torch", "sklearn", "safetensors", "onnx") if spec.kind == "torch" else (
        "sklearn", "skl2onnx", "onnx")
    require("train", *needs, purpose=f"training the {spec.name} model")
    fs = get_feature_set(conf["feature_set"], **conf.get("feature_options", {}))
    if fs.extra:
        require(fs.extra, purpose=f"the {fs.name} feature set")


def train(paths: Sequence[str | Path], opts: TrainOptions, out: str | Path, *,
          cache_dir=None, jobs: int | None = None, console=None) -> dict[str, Any]:
    """Run a whole training/evaluation run into ``out`` and return its metrics record."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console()
    log = console.print
    out = Path(out)
    if opts.protocol not in PROTOCOLS:
        raise TrainError(f"unknown protocol {opts.protocol!r}; choose one of: "
                         f"{', '.join(PROTOCOLS)}")
    if opts.model not in MODELS:
        raise TrainError(f"unknown model {opts.model!r}; choose one of: {', '.join(MODELS)}")
    conf = opts.resolved()
    spec = get_model_spec(opts.model)
    _require_packages(spec, conf)
    record = {**conf, "data": [str(Path(p).resolve()) for p in paths]}
    _check_config(out, record)
    if spec.kind == "torch":
        set_threads(jobs)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = load_dataset(paths, opts, cache_dir=cache_dir, jobs=jobs, log=log)
    timings["scan + features"] = time.perf_counter() - t0
    present = set(ds.manifest["label"])
    labels = [lab for lab in opts.labels if lab in present]
    missing = [lab for lab in opts.labels if lab not in present]
    if missing:  # e.g. --labels all on RAVDESS, which has no boredom
        log(f"no clips labelled {', '.join(missing)} in the data: the model learns "
            f"{', '.join(labels)}")
    if len(labels) < 2:
        raise TrainError(f"the data has clips of {len(labels)} label(s) of "
                         f"{', '.join(opts.labels)}: a classifier needs at least two")
    seed_rows = opts.protocol == "seed"
    fit_jobs = jobs or min(2, os.cpu_count() or 1)
    if seed_rows:
        splits = make_splits("seed", pd.DataFrame(index=range(len(ds.row_utt))))
    else:
        splits = make_splits(opts.protocol, ds.manifest, seed=opts.seed, folds=opts.folds,
                             test_corpora=list(opts.test_corpora))
    protocol = describe(opts.protocol, seed=opts.seed,
                        **({"folds": opts.folds} if opts.protocol == "kfold-speaker" else {}),
                        **({"test_corpora": list(opts.test_corpora)}
                           if opts.protocol == "cross-corpus" else {}),
                        augment=conf["augment"], normalization="minmax on all rows (leaky)"
                        if seed_rows else "standard, training rows only")
    if seed_rows:
        log("[bold yellow]LEAKY protocol 'seed':[/] " + protocol["warning"])
    results = []
    columns = [TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        for split in splits:
            task = bar.add_task(f"{opts.model} {split.name}",
                                total=conf["hyper"].get("epochs", 1), info="")

            def progress(row, task=task):
                info = f"epoch {row['epoch']} loss {row['train_loss']:.3f}"
                if "val_uar" in row:
                    info += f" val acc {row['val_accuracy']:.3f} UAR {row['val_uar']:.3f}"
                bar.update(task, completed=row["epoch"], total=row["epochs"], info=info)

            t1 = time.perf_counter()
            res = run_split(ds, split, conf, labels, out / split.name, seed_rows=seed_rows,
                            progress=progress, log=log, jobs=fit_jobs)
            timings[f"train {split.name}"] = time.perf_counter() - t1
            bar.update(task, completed=bar.tasks[task].total,
                       info=f"test UAR {res['metrics']['uar']:.3f} acc "
                            f"{res['metrics']['accuracy']:.3f}" if "metrics" in res else "done")
            results.append(res)

        bundle_from = results[0]
        bundle_dir_src = out / splits[0].name
        if opts.protocol == "kfold-speaker" and opts.final:
            # The shipped model sees every speaker; the folds measured how well that recipe
            # generalises. With no validation speakers left, train the median best epoch.
            epochs = max(1, int(np.median([r["best_epoch"] for r in results]) or 1))
            everyone = Split("final", np.arange(len(ds.manifest)), np.array([], int),
                             np.array([], int))
            task = bar.add_task(f"{opts.model} final (all speakers)", total=epochs, info="")

            def progress_final(row, task=task):
                bar.update(task, completed=row["epoch"], total=row["epochs"],
                           info=f"epoch {row['epoch']} loss {row['train_loss']:.3f}")

            t1 = time.perf_counter()
            bundle_from = run_split(ds, everyone, {**conf, "_epochs_override": epochs}, labels,
                                    out / "final", seed_rows=False, progress=progress_final,
                                    log=log, jobs=fit_jobs)
            timings["train final"] = time.perf_counter() - t1
            bundle_dir_src = out / "final"

    # Pool every split's test predictions: with k folds each utterance is tested once.
    t1 = time.perf_counter()
    tests = [r["test"] for r in results if "test" in r]
    pooled = {k: sum((t[k] for t in tests), []) for k in tests[0]}
    metrics = compute_metrics(pooled["label"], pooled["predicted"], labels, pooled["corpus"])
    if "confidence_raw" in pooled:
        metrics["confidence"] = pooled_confidence(pooled, labels)
    pd.DataFrame(pooled).to_csv(out / "predictions.csv", index=False)
    folds = summarize_folds([r["metrics"] for r in results]) if len(results) > 1 else None
    summary = data_summary(ds.manifest)
    corpora = sorted(summary["corpora"])
    result: dict[str, Any] = {
        "title": f"{opts.model} · {opts.protocol}" + (" (LEAKY)" if seed_rows else ""),
        "model": opts.model, "feature_set": ds.feature_set.name,
        "protocol_name": opts.protocol, "protocol": protocol, "metrics": metrics,
        "folds": folds, "data": ", ".join(record["data"]), "data_summary": summary,
        "licence": licence_for(corpora), "hyperparameters": conf["hyper"],
        "settings": {"hyperparameters": conf["hyper"],
                     f"feature set {ds.feature_set.name}": ds.feature_set.to_json()["config"],
                     "augmentation": conf["augment"], "seed": opts.seed, "labels": labels},
        "splits": [_split_row(r) for r in results]
        + ([] if any(bundle_from is r for r in results) else [_split_row(bundle_from)]),
        "failed_files": len(ds.failed),
    }
    # Who the bundle heard: `ser evaluate` warns when it is scored on these speakers again.
    if bundle_from.get("speakers") is None:  # the seed protocol: every speaker, both sides
        heard = sorted(set(ds.manifest["speaker_id"]))
    else:
        heard = sorted(set(bundle_from["speakers"]["train"])
                       | (set(bundle_from["speakers"]["val"]) if spec.kind == "sklearn"
                          else set()))
    meta = {
        "name": out.name, "labels": labels, "sample_rate": ds.feature_set.sample_rate,
        "feature_set": ds.feature_set.to_json(), "normalization": bundle_from["normalization"],
        "model": {"architecture": opts.model, "hyperparameters": conf["hyper"],
                  "description": spec.description},
        "protocol": protocol,
        "metrics": {k: v for k, v in {**metrics, "folds": folds}.items() if v is not None},
        "training_data": {**summary, "augment": conf["augment"],
                          "trained_on": "all speakers" if bundle_dir_src.name == "final"
                          else bundle_dir_src.name, "speaker_ids": heard},
        "licence": licence_for(corpora),
    }
    confidence = bundle_confidence(bundle_from, results)
    if confidence:
        meta.update(confidence)
    weights = None
    if (bundle_dir_src / "weights.safetensors").exists():
        from safetensors.torch import load_file

        weights = load_file(str(bundle_dir_src / "weights.safetensors"))
    save_bundle(out / "bundle", meta, (bundle_dir_src / "model.onnx").read_bytes(), weights)
    timings["evaluate + bundle"] = time.perf_counter() - t1
    timings["total"] = time.perf_counter() - t0
    result["timings"] = timings
    result["bundle"] = str(out / "bundle")
    histories = {r["name"]: r["history"] for r in results}
    write_reports(out, result, histories)
    return result
