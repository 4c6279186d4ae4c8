"""Adapting a linear bundle to one person's voice from a few labelled clips (``ser adapt``).

Two things change, both measured in docs/RESULTS.md (``bench/experiments_adaptation.py``):

1. **Their own centre.** The bundle's normalisation mean becomes the mean of the person's
   clips (the clips cover every emotion, so their mean is the voice, not a mood); the std
   stays the training set's.
2. **Their own boundaries.** The logistic-regression layer is refitted on the clips with an
   L2 pull toward the base model's weights (``fit_prior``): a few clips move it, they do not
   replace it.

The result is an ordinary bundle folder (``model.json`` + ``model.onnx``: Gemm + Softmax)
with an ``adapted`` record; it loads with ``Recognizer.load(path)`` / ``--model path`` like
any other (:func:`adapt_bundle`), or a Recognizer kept in memory (:func:`adapt`: the voices
``ser serve`` learns from the page). Only bundles whose graph is a linear classifier
(``logreg``, ``whisper``) adapt.
"""

from __future__ import annotations

import math
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ser.audio import AudioError
from ser.bundle import Bundle, load_bundle, save_bundle
from ser.errors import SerError

if TYPE_CHECKING:
    from ser.inference import Recognizer, Source

#: Strengths of the pull toward the base weights tried in bench/experiments_adaptation.py.
PRIOR_STRENGTH = (1.0, 10.0, 100.0)
#: The one chosen there (on the validation fold, at 2 clips per emotion): see
#: docs/RESULTS.md. ``ser adapt --strength`` defaults to it.
DEFAULT_PRIOR = 100.0


class AdaptError(SerError):
    """Adaptation that cannot run (a bundle that is not linear, too few clips, …)."""


def fit_prior(X: np.ndarray, y: np.ndarray, W0: np.ndarray, b0: np.ndarray,
              alpha: float = DEFAULT_PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on ``(X, y)`` (normalised rows, label indices)
    minimising ``sum cross-entropy + alpha/2 * (|W - W0|^2 + |b - b0|^2)``."""
    from scipy.optimize import minimize

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=int)
    n_classes, dim = W0.shape
    onehot = np.eye(n_classes)[y]
    theta0 = np.concatenate([W0.ravel(), b0])

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[:-n_classes].reshape(n_classes, dim)
        b = theta[-n_classes:]
        z = X @ W.T + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        d = theta - theta0
        value = -float((onehot * logp).sum()) + 0.5 * alpha * float(d @ d)
        g = np.exp(logp) - onehot
        grad = np.concatenate([(g.T @ X).ravel(), g.sum(axis=0)]) + alpha * d
        return value, grad

    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = res.x
    return theta[:-n_classes].reshape(n_classes, dim), theta[-n_classes:]


@dataclass(frozen=True)
class LinearGraph:
    """The weights of a bundle whose ONNX graph is (column selection →) a linear
    classifier with softmax, spread over every input column."""

    W: np.ndarray  # (n_classes, D)
    b: np.ndarray  # (n_classes,)


def read_linear(bundle: Bundle) -> LinearGraph:
    """The linear classifier inside a skl2onnx ``LinearClassifier`` graph (or one this module
    wrote); raises AdaptError for any other graph."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise AdaptError("`ser adapt` needs the onnx package: pip install 'ser[train]'") from None

    if bundle.is_ensemble:
        raise AdaptError("an ensemble bundle cannot be adapted; adapt a member instead")
    model = onnx.load(str(bundle.onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dim = int(np.asarray(bundle.meta["normalization"]["mean"]).size) \
        if bundle.meta.get("normalization") else None
    ops = [n.op_type for n in model.graph.node]
    if ops == ["Gemm", "Softmax"]:  # written by this module
        gemm = model.graph.node[0]
        return LinearGraph(inits[gemm.input[1]].T.astype(np.float64),
                           inits[gemm.input[2]].astype(np.float64))
    lin = [n for n in model.graph.node if n.op_type == "LinearClassifier"]
    if len(lin) != 1 or dim is None or not set(ops) <= {
            "ArrayFeatureExtractor", "LinearClassifier", "Normalizer", "Cast", "ZipMap"}:
        raise AdaptError(f"{bundle.path}: only linear (logreg, whisper) bundles can be "
                         f"adapted; this graph has {', '.join(dict.fromkeys(ops))}")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lin[0].attribute}
    if attrs.get("post_transform", b"").upper() != b"SOFTMAX":
        raise AdaptError(f"{bundle.path}: the linear classifier is not a softmax one")
    n_classes = len(attrs["classlabels_ints"])
    coef = np.asarray(attrs["coefficients"], dtype=np.float64).reshape(n_classes, -1)
    cols = np.arange(dim)
    pick = [n for n in model.graph.node if n.op_type == "ArrayFeatureExtractor"]
    if pick:
        cols = inits[pick[0].input[1]].astype(int).ravel()
    W = np.zeros((n_classes, dim))
    W[:, cols] = coef
    if list(attrs["classlabels_ints"]) != list(range(n_classes)):
        raise AdaptError(f"{bundle.path}: unexpected class order in the graph")
    return LinearGraph(W, np.asarray(attrs["intercepts"], dtype=np.float64))


def linear_onnx(W: np.ndarray, b: np.ndarray) -> bytes:
    """``softmax(features @ W.T + b)`` as an ONNX graph (input ``features``, output
    ``probabilities``)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n_classes, dim = W.shape
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["features", "W", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "ser-adapted",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, dim])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_classes])],
        [numpy_helper.from_array(W.T.astype(np.float32), "W"),
         numpy_helper.from_array(b.astype(np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def check_clips(labels: Sequence[str], clip_labels: Sequence[str],
                min_per_label: int = 1) -> dict[str, int]:
    """Clips per label, or AdaptError when a label is not the model's or has fewer than
    ``min_per_label`` clips (the mean of the clips must be the voice, not one mood)."""
    unknown = sorted(set(clip_labels) - set(labels))
    if unknown:
        raise AdaptError(f"labels {', '.join(unknown)} are not the model's "
                         f"({', '.join(labels)})")
    counts = Counter(clip_labels)
    short = [f"{lab} ({counts[lab]} of {min_per_label})" for lab in labels
             if counts[lab] < min_per_label]
    if short:
        raise AdaptError(f"every emotion needs at least {min_per_label} clip(s); none or too "
                         f"few for: {', '.join(short)}")
    return {lab: counts[lab] for lab in labels}


def fit_voice(base: Recognizer, clips: Sequence[tuple[Source, str]], *,
              alpha: float = DEFAULT_PRIOR, name: str | None = None,
              min_per_label: int = 1,
              clip_names: Sequence[str] | None = None) -> tuple[dict[str, Any], bytes]:
    """The personal model of one person from ``clips`` [(file or array, label)]: its
    ``model.json`` content and ONNX graph, in memory (``adapt_bundle`` saves them; the
    server keeps them). An array is mono at ``base.sample_rate``. Every clip must pass the
    speech rule; an unusable clip is an AdaptError naming it (``clip_names[i]``, else its
    path, or "clip i of n (label)" for an array)."""
    if not math.isfinite(alpha) or alpha <= 0:
        raise AdaptError(f"the prior strength must be a positive number, not {alpha}")
    bundle = base.bundle
    graph = read_linear(bundle)
    labels = bundle.labels
    counts = check_clips(labels, [lab for _, lab in clips], min_per_label)
    feats = []
    for i, (source, label) in enumerate(clips, 1):
        try:
            feats.append(base.features(source))
        except AudioError as exc:
            what = clip_names[i - 1] if clip_names else source \
                if not isinstance(source, np.ndarray) else f"clip {i} of {len(clips)} ({label})"
            raise AdaptError(f"{what}: {exc.reason}") from None
    X = np.stack(feats).astype(np.float64)
    y = np.array([labels.index(lab) for _, lab in clips])
    mean, std = (np.asarray(a, dtype=np.float64) for a in bundle.normalization())
    std = np.where(std > 0, std, 1.0)
    person_mean = X.mean(axis=0)
    W, b = fit_prior((X - person_mean) / std, y, graph.W, graph.b, alpha)
    meta = {k: v for k, v in bundle.meta.items()
            if k not in ("format", "format_version", "created", "model")}
    meta.update(
        name=name or f"{bundle.meta.get('name', bundle.path.name)}-adapted",
        normalization={"mean": person_mean.astype(np.float32), "std": std.astype(np.float32)},
        model={"architecture": bundle.meta["model"].get("architecture"),
               "hyperparameters": bundle.meta["model"].get("hyperparameters", {}),
               "description": "adapted to one speaker (ser adapt)"},
        adapted={"from": bundle.meta.get("name", bundle.path.name),
                 "clips": counts, "prior_strength": alpha,
                 "created": datetime.now(UTC).isoformat(timespec="seconds"),
                 "note": "normalisation mean = the speaker's clips; classifier refitted on "
                         "them with an L2 pull toward the base weights. The metrics are the "
                         "base model's."},
    )
    return meta, linear_onnx(W, b)


def adapt(base: Recognizer, clips: Sequence[tuple[Source, str]], *,
          alpha: float = DEFAULT_PRIOR, name: str | None = None,
          min_per_label: int = 1, clip_names: Sequence[str] | None = None) -> Recognizer:
    """A Recognizer for one person's voice, kept in memory only (``ser serve``'s voices):
    the model of :func:`fit_voice`, with ``base``'s threads, speech rule and uncertain
    threshold. It answers as the bundle :func:`adapt_bundle` writes from the same clips."""
    from ser.bundle import memory_bundle
    from ser.inference import Recognizer

    meta, graph = fit_voice(base, clips, alpha=alpha, name=name, min_per_label=min_per_label,
                            clip_names=clip_names)
    return Recognizer(memory_bundle(str(meta["name"]), meta, graph), base.threads,
                      uncertain_below=base.uncertain_below, speech_rule=base.speech_rule)


def adapt_bundle(base: str | Path, clips: Sequence[tuple[str | Path, str]], out: str | Path,
                 *, alpha: float = DEFAULT_PRIOR, name: str | None = None,
                 min_per_label: int = 1) -> Bundle:
    """Write a personal bundle to ``out`` from ``base`` and ``clips`` [(path, label)] of one
    person (:func:`fit_voice`). Every label of the bundle needs ``min_per_label`` clips."""
    from ser.inference import Recognizer, resolve_bundle

    bundle = load_bundle(resolve_bundle(base))
    read_linear(bundle)  # a bundle that cannot adapt says so before its encoder loads
    meta, graph = fit_voice(Recognizer(bundle), clips, alpha=alpha, name=name,
                            min_per_label=min_per_label)
    out = Path(out)
    if out.exists() and (out / "model.json").exists():
        shutil.rmtree(out)
    return save_bundle(out, meta, graph)


def clips_from(paths: Sequence[str | Path], labels: Sequence[str]) -> list[tuple[Path, str]]:
    """(path, label) of a folder with one sub-folder per emotion, or a CSV ``path,label``."""
    from ser.corpora import scan

    found = scan(paths, labels=tuple(labels))
    if not found.utterances:
        raise AdaptError(f"no labelled clips found under {', '.join(map(str, paths))} "
                         "(one sub-folder per emotion, or a CSV path,label)")
    return [(Path(u.path), u.label) for u in found.utterances]
