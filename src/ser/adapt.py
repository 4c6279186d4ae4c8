"""Adapting a bundle to one person's voice from a few labelled clips (``ser adapt``).

Two things change, both measured in docs/RESULTS.md ("Adaptation to one speaker",
``bench/experiments_adaptation.py``):

1. **Their own centre** (every bundle). The bundle's normalisation mean becomes the mean of
   the person's clips (the clips cover every emotion, so their mean is the voice, not a
   mood); the std stays the training set's.
2. **Their own boundaries.** A *linear* bundle (its graph a softmax linear classifier:
   ``logreg``, ``fast``) has that layer refitted on the clips with an L2 pull toward the base
   weights (``fit_prior``, pull 100): a new graph, Gemm + Softmax — method ``shift+prior``.
   Any *other* bundle (the RBF SVM of ``whisper``, a torch model over one feature vector)
   keeps its graph unchanged; a linear map of its log-probabilities (labels × labels + bias)
   is refitted on the clips with an L2 pull (1) toward the identity and stored as the
   bundle's ``output_map`` — method ``shift+output-prior``.

A few clips move the model; they do not replace it. The result is an ordinary bundle folder
with an ``adapted`` record (the method, the clips, the pull); it loads with
``Recognizer.load(path)`` / ``--model path`` like any other (:func:`adapt_bundle`), or a
Recognizer kept in memory (:func:`adapt`: the voices ``ser serve`` learns from the page,
sharing the base model's graph when it is unchanged). Ensembles, and bundles whose
normalisation is not a per-column standardisation of one feature vector per clip (``cnn``'s
log-mel frames, the seed protocol's min-max scaling), cannot adapt (:func:`check_adaptable`).
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
#: The one chosen there for a linear bundle's layer (on the validation fold, at 2 clips per
#: emotion): see docs/RESULTS.md. ``ser adapt --strength`` defaults to it.
DEFAULT_PRIOR = 100.0
#: The one chosen there for the output map of any other bundle (the RBF SVM; same rule).
DEFAULT_OUTPUT_PRIOR = 1.0
#: ``adapted.method`` of a linear bundle and of any other.
METHOD_LINEAR, METHOD_OUTPUT = "shift+prior", "shift+output-prior"
#: Probabilities are clipped here before their log (the output map's input).
_FLOOR = 1e-12


class AdaptError(SerError):
    """Adaptation that cannot run (an ensemble, too few clips, …)."""


class NotLinear(AdaptError):
    """The bundle's graph is not a softmax linear classifier (:func:`read_linear`)."""


def map_outputs(p: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """An output map applied to probability rows ``p`` (``(n_labels,)`` or ``(n,
    n_labels)``): ``softmax(log p @ W.T + b)`` (``ser.bundle.Bundle.output_map``)."""
    z = np.log(np.clip(np.asarray(p, dtype=np.float64), _FLOOR, 1.0)) @ W.T + b
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def check_adaptable(bundle: Bundle) -> None:
    """Raise AdaptError saying why ``bundle`` cannot adapt to a voice; cheap (the graph is
    not read): the server asks it at start-up."""
    if bundle.is_ensemble:
        raise AdaptError("an ensemble bundle cannot be adapted; adapt a member instead")
    norm = bundle.normalization()
    if norm is None:
        raise AdaptError(f"{bundle.meta.get('name', bundle.path.name)} has no feature "
                         "normalisation to centre on a voice")
    if norm[0].ndim != 1:
        raise AdaptError(f"{bundle.meta.get('name', bundle.path.name)}: its features are not "
                         f"one vector per clip (normalisation of shape {norm[0].shape})")
    if str(bundle.meta.get("protocol", {}).get("normalization", "")).startswith("minmax"):
        raise AdaptError(f"{bundle.meta.get('name', bundle.path.name)}: a min-max scaled "
                         "model (the seed protocol) has no mean to move")


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
    wrote); raises NotLinear for any other graph (AdaptError without the onnx package)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise AdaptError("`ser adapt` needs the onnx package: pip install 'ser[train]'") from None

    if bundle.is_ensemble:
        raise AdaptError("an ensemble bundle cannot be adapted; adapt a member instead")
    if bundle.output_map() is not None:
        raise NotLinear(f"{bundle.path}: an output map follows the graph")
    model = onnx.load_from_string(bundle.graph) if bundle.graph is not None \
        else onnx.load(str(bundle.onnx_path))
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
        raise NotLinear(f"{bundle.path}: not a linear classifier; this graph has "
                        f"{', '.join(dict.fromkeys(ops))}")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in lin[0].attribute}
    if attrs.get("post_transform", b"").upper() != b"SOFTMAX":
        raise NotLinear(f"{bundle.path}: the linear classifier is not a softmax one")
    n_classes = len(attrs["classlabels_ints"])
    coef = np.asarray(attrs["coefficients"], dtype=np.float64).reshape(n_classes, -1)
    cols = np.arange(dim)
    pick = [n for n in model.graph.node if n.op_type == "ArrayFeatureExtractor"]
    if pick:
        cols = inits[pick[0].input[1]].astype(int).ravel()
    W = np.zeros((n_classes, dim))
    W[:, cols] = coef
    if list(attrs["classlabels_ints"]) != list(range(n_classes)):
        raise NotLinear(f"{bundle.path}: unexpected class order in the graph")
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
              alpha: float | None = None, name: str | None = None,
              min_per_label: int = 1,
              clip_names: Sequence[str] | None = None) -> tuple[dict[str, Any], bytes | None]:
    """The personal model of one person from ``clips`` [(file or array, label)]: its
    ``model.json`` content and its ONNX graph — None when it is the base's, unchanged (a
    bundle that is not linear: the map goes into ``output_map``) — in memory
    (``adapt_bundle`` saves them; the server keeps them). ``alpha``: the pull (None: the
    method's default, ``DEFAULT_PRIOR`` or ``DEFAULT_OUTPUT_PRIOR``). An array is mono at
    ``base.sample_rate``. Every clip must pass the speech rule; an unusable clip is an
    AdaptError naming it (``clip_names[i]``, else its path, or "clip i of n (label)" for an
    array)."""
    bundle = base.bundle
    check_adaptable(bundle)
    try:
        graph: LinearGraph | None = read_linear(bundle)
    except NotLinear:
        graph = None
    if alpha is None:
        alpha = DEFAULT_PRIOR if graph is not None else DEFAULT_OUTPUT_PRIOR
    if not math.isfinite(alpha) or alpha <= 0:
        raise AdaptError(f"the prior strength must be a positive number, not {alpha}")
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
    meta = {k: v for k, v in bundle.meta.items()
            if k not in ("format", "format_version", "created", "model")}
    meta.update(
        name=name or f"{bundle.meta.get('name', bundle.path.name)}-adapted",
        normalization={"mean": person_mean.astype(np.float32), "std": std.astype(np.float32)},
        model={"architecture": bundle.meta["model"].get("architecture"),
               "hyperparameters": bundle.meta["model"].get("hyperparameters", {}),
               "description": "adapted to one speaker (ser adapt)"},
    )
    record = {"from": bundle.meta.get("name", bundle.path.name),
              "method": METHOD_LINEAR if graph is not None else METHOD_OUTPUT,
              "clips": counts, "prior_strength": alpha,
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    if graph is not None:
        W, b = fit_prior((X - person_mean) / std, y, graph.W, graph.b, alpha)
        meta["adapted"] = {**record, "note": (
            "normalisation mean = the speaker's clips; classifier refitted on them with an L2 "
            "pull toward the base weights. The metrics are the base model's.")}
        return meta, linear_onnx(W, b)
    # The graph's own probabilities of the clips, centred on the voice as the personal model
    # will see them (float32 rows, one at a time, as the Recognizer runs them).
    Z = ((X.astype(np.float32) - person_mean.astype(np.float32)) / std.astype(np.float32))
    P = np.stack([base.graph_probabilities(z) for z in Z])
    W0, b0 = bundle.output_map() or (np.eye(len(labels)), np.zeros(len(labels)))
    W, b = fit_prior(np.log(np.clip(P, _FLOOR, 1.0)), y, W0, b0, alpha)
    meta["output_map"] = {"W": W, "b": b}
    meta["adapted"] = {**record, "note": (
        "normalisation mean = the speaker's clips; the classifier's graph unchanged, its "
        "log-probabilities mapped by output_map, refitted on the clips with an L2 pull toward "
        "the base map (the identity). The metrics are the base model's.")}
    return meta, None


def adapt(base: Recognizer, clips: Sequence[tuple[Source, str]], *,
          alpha: float | None = None, name: str | None = None,
          min_per_label: int = 1, clip_names: Sequence[str] | None = None) -> Recognizer:
    """A Recognizer for one person's voice, kept in memory only (``ser serve``'s voices):
    the model of :func:`fit_voice`, with ``base``'s threads, speech rule and uncertain
    threshold — and ``base``'s onnxruntime session when the graph is unchanged (an SVM's is
    tens of MB). It answers as the bundle :func:`adapt_bundle` writes from the same clips."""
    from ser.bundle import memory_bundle, with_meta
    from ser.inference import Recognizer

    meta, graph = fit_voice(base, clips, alpha=alpha, name=name, min_per_label=min_per_label,
                            clip_names=clip_names)
    if graph is None:
        return Recognizer(with_meta(base.bundle, meta), base.threads, share=base,
                          uncertain_below=base.uncertain_below, speech_rule=base.speech_rule)
    return Recognizer(memory_bundle(str(meta["name"]), meta, graph), base.threads,
                      uncertain_below=base.uncertain_below, speech_rule=base.speech_rule)


def adapt_bundle(base: str | Path, clips: Sequence[tuple[str | Path, str]], out: str | Path,
                 *, alpha: float | None = None, name: str | None = None,
                 min_per_label: int = 1) -> Bundle:
    """Write a personal bundle to ``out`` from ``base`` and ``clips`` [(path, label)] of one
    person (:func:`fit_voice`). Every label of the bundle needs ``min_per_label`` clips."""
    from ser.inference import Recognizer, resolve_bundle

    bundle = load_bundle(resolve_bundle(base))
    check_adaptable(bundle)  # a bundle that cannot adapt says so before its encoder loads
    meta, graph = fit_voice(Recognizer(bundle), clips, alpha=alpha, name=name,
                            min_per_label=min_per_label)
    if graph is None:  # the base's graph, unchanged
        graph = bundle.graph if bundle.graph is not None else bundle.onnx_path.read_bytes()
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
