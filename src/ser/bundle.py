"""Model bundles: one folder holding everything inference needs — never pickle.

A bundle is ``model.json`` (labels, sample rate, feature set, normalisation statistics,
protocol, metrics, training data, licence) plus ``model.onnx`` (input ``features``, already
normalised; output ``probabilities``) and optionally ``weights.safetensors`` for torch models.
An adapted bundle (``ser adapt`` of a classifier that is not linear) may add an
``output_map`` applied to the graph's probabilities (:meth:`Bundle.output_map`).

An *ensemble* bundle has no model of its own: its ``model.members`` lists member bundles in
sub-folders (``members/<name>``) with a weight each, and its probabilities are the weighted
mean of theirs. Members share labels (same order) and sample rate; they are plain bundles.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ser.errors import SerError

FORMAT = "ser-bundle"
FORMAT_VERSION = 1
META_FILE = "model.json"
ONNX_FILE = "model.onnx"
WEIGHTS_FILE = "weights.safetensors"
REQUIRED = ("labels", "sample_rate", "feature_set", "model")
ENSEMBLE_REQUIRED = ("labels", "sample_rate", "model")


class BundleError(SerError):
    """A bundle folder that is missing, incomplete, or from a newer ser."""


@dataclass(frozen=True)
class Bundle:
    """A checked bundle: its folder and ``model.json``. A bundle made in memory
    (:func:`memory_bundle`: a server's personal voices) carries its graph in ``graph``
    instead of a file, and ``path`` only names it."""

    path: Path
    meta: dict[str, Any]
    graph: bytes | None = None

    @property
    def labels(self) -> list[str]:
        return list(self.meta["labels"])

    @property
    def onnx_path(self) -> Path:
        return self.path / self.meta["model"].get("onnx", ONNX_FILE)

    @property
    def weights_path(self) -> Path | None:
        name = self.meta["model"].get("weights")
        return self.path / name if name else None

    @property
    def is_ensemble(self) -> bool:
        return "members" in self.meta["model"]

    def members(self) -> list[tuple[Bundle, float]]:
        """(bundle, weight) of each model whose probabilities are averaged: the members of an
        ensemble, or the bundle itself with weight 1."""
        if not self.is_ensemble:
            return [(self, 1.0)]
        return [(load_bundle(self.path / m["path"]), float(m["weight"]))
                for m in self.meta["model"]["members"]]

    def output_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(W, b) of the bundle's output map, or None: the graph's probabilities ``p``
        become ``softmax(W @ log p + b)`` (before calibration). ``ser adapt`` writes one
        when it adapts a classifier that is not linear (``ser.adapt``)."""
        omap = self.meta.get("output_map")
        if not omap:
            return None
        return (np.asarray(omap["W"], dtype=np.float64), np.asarray(omap["b"], dtype=np.float64))

    def normalization(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean, std) as float32 arrays, shaped as stored, or None."""
        norm = self.meta.get("normalization")
        if not norm:
            return None
        return (np.asarray(norm["mean"], dtype=np.float32),
                np.asarray(norm["std"], dtype=np.float32))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never a half one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shipped bundle must be readable by all
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def save_bundle(
    path: str | Path,
    meta: dict[str, Any],
    onnx_model: bytes | Any,
    weights: dict[str, Any] | None = None,
) -> Bundle:
    """Write a bundle folder. ``onnx_model`` is serialised bytes or an ``onnx.ModelProto``;
    ``weights`` an optional name -> tensor mapping (torch tensors) saved as safetensors."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {', '.join(missing)}")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = onnx_model if isinstance(onnx_model, bytes) else onnx_model.SerializeToString()
    atomic_write(path / ONNX_FILE, data)
    weights_file = None
    if weights:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        atomic_write(path / WEIGHTS_FILE, save(tensors))
        weights_file = WEIGHTS_FILE
    full = _full_meta(meta, weights_file)
    atomic_write(path / META_FILE, json.dumps(full, indent=2).encode())
    return Bundle(path, json.loads((path / META_FILE).read_text()))


def _full_meta(meta: dict[str, Any], weights_file: str | None = None) -> dict[str, Any]:
    """``model.json`` as save_bundle writes it: format, version and creation time added,
    arrays as lists."""
    return _jsonable({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **meta,
        "model": dict(meta["model"], onnx=ONNX_FILE, weights=weights_file),
    })


def memory_bundle(name: str, meta: dict[str, Any], onnx_model: bytes) -> Bundle:
    """A plain bundle that lives in memory only, never on disk (the server's personal
    voices): ``model.json`` as :func:`save_bundle` would write it, checked as
    :func:`load_bundle` checks it, and the ONNX graph as bytes. ``name`` is shown in
    messages in place of a folder."""
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"bundle metadata lacks {', '.join(missing)}")
    # Through JSON, so the model sees exactly the numbers a saved bundle would hold.
    full = json.loads(json.dumps(_full_meta(meta)))
    where = Path(name)
    validate_meta(full, where, where / META_FILE)
    _check_confidence(full, where / META_FILE)
    return Bundle(where, full, onnx_model)


def with_meta(bundle: Bundle, meta: dict[str, Any]) -> Bundle:
    """``bundle``'s graph (its file, or its bytes) under another ``model.json``, in memory
    and checked as :func:`load_bundle` checks it: a server's personal voice that keeps the
    base model's classifier and changes only its statistics (``ser.adapt``)."""
    if bundle.is_ensemble:
        raise BundleError(f"{bundle.path}: an ensemble has no graph of its own")
    full = json.loads(json.dumps(_full_meta(meta)))
    full["model"]["onnx"] = bundle.meta["model"].get("onnx", ONNX_FILE)
    validate_meta(full, bundle.path, bundle.path / META_FILE)
    _check_confidence(full, bundle.path / META_FILE)
    return Bundle(bundle.path, full, bundle.graph)


def save_ensemble(path: str | Path, meta: dict[str, Any],
                  members: list[tuple[str | Path, float]]) -> Bundle:
    """Write an ensemble bundle: each member bundle folder is copied to ``members/<name>``,
    weights are normalised to sum to 1. ``meta`` needs no feature set (the members have one).
    """
    path = Path(path)
    loaded = [(load_bundle(m), float(w)) for m, w in members]
    if len(loaded) < 2:
        raise BundleError("an ensemble needs at least two member bundles")
    if any(b.is_ensemble for b, _ in loaded):
        raise BundleError("ensemble members must be plain bundles, not ensembles")
    if any(w <= 0 for _, w in loaded):
        raise BundleError("ensemble weights must be positive")
    total = sum(w for _, w in loaded)
    entries = []
    (path / "members").mkdir(parents=True, exist_ok=True)
    for i, (b, w) in enumerate(loaded, 1):
        name = f"{i}-{b.meta.get('name', b.path.name)}"
        target = path / "members" / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(b.path, target)
        entries.append({"path": f"members/{name}", "weight": round(w / total, 6),
                        "architecture": b.meta["model"].get("architecture"),
                        "feature_set": b.meta["feature_set"]["name"]})
    first = loaded[0][0]
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": first.labels,
        "sample_rate": first.meta["sample_rate"],
        **meta,
        "model": {**meta.get("model", {}), "architecture": "ensemble", "members": entries},
    }
    atomic_write(path / META_FILE, json.dumps(_jsonable(full), indent=2).encode())
    return load_bundle(path)


def _check_confidence(meta: dict[str, Any], meta_file: Path) -> None:
    """``calibration`` and ``uncertain`` (ser.calibration), when present, must make sense."""
    from ser.calibration import Calibration, CalibrationError, uncertain_threshold_from_json

    try:
        Calibration.from_json(meta.get("calibration"))
        uncertain_threshold_from_json(meta.get("uncertain"))
    except CalibrationError as exc:
        raise BundleError(f"{meta_file}: {exc}") from None


#: The keys ``model.json`` may have (top level, and in ``model``); anything else is refused.
META_KEYS = frozenset({"format", "format_version", "name", "labels", "sample_rate", "feature_set",
                       "normalization", "model", "protocol", "metrics", "training_data",
                       "licence", "created", "calibration", "uncertain", "adapted",
                       "output_map"})
MODEL_KEYS = frozenset({"architecture", "onnx", "weights", "hyperparameters", "description",
                        "members"})


def _inside(root: Path, name: Any, what: str, meta_file: Path) -> Path:
    """``root / name`` when ``name`` is a relative path that stays inside ``root``."""
    if not isinstance(name, str) or not name:
        raise BundleError(f"{meta_file}: {what} must be a file name, got {name!r}")
    target = (root / name).resolve()
    if (Path(name).is_absolute() or target == root.resolve()
            or not target.is_relative_to(root.resolve())):
        raise BundleError(f"{meta_file}: {what} {name!r} points outside the bundle folder")
    return root / name


def _numbers(values: Any, what: str, meta_file: Path) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise BundleError(f"{meta_file}: {what} must be numbers") from None
    if arr.size == 0 or arr.dtype == object:
        raise BundleError(f"{meta_file}: {what} must be a non-empty array of numbers")
    if not np.all(np.isfinite(arr)):
        raise BundleError(f"{meta_file}: {what} contains NaN or infinite values")
    return arr


def validate_meta(meta: Any, path: Path, meta_file: Path) -> None:
    """Raise BundleError saying what is wrong with a parsed ``model.json`` (shape, types,
    values, file references); the ONNX graph is checked against it when it is loaded."""
    if not isinstance(meta, dict):
        raise BundleError(f"{meta_file}: must hold a JSON object, not {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_file}: not a ser bundle (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BundleError(f"{meta_file}: format_version must be a whole number ≥ 1, got "
                          f"{version!r} ({type(version).__name__})")
    if version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version} is newer than this ser understands "
            f"({FORMAT_VERSION}); upgrade ser to load it"
        )
    model = meta.get("model")
    if not isinstance(model, dict):
        raise BundleError(f"{meta_file}: 'model' must be an object, got {model!r}")
    ensemble = "members" in model
    missing = [k for k in (ENSEMBLE_REQUIRED if ensemble else REQUIRED) if k not in meta]
    if missing:
        raise BundleError(f"{meta_file}: lacks {', '.join(missing)}")
    extra = sorted(set(meta) - META_KEYS) + [f"model.{k}" for k in sorted(set(model) - MODEL_KEYS)]
    if extra:
        raise BundleError(f"{meta_file}: unknown keys {', '.join(extra)} (not written by ser)")
    labels = meta["labels"]
    if (not isinstance(labels, list) or len(labels) < 2
            or not all(isinstance(x, str) and x.strip() for x in labels)):
        raise BundleError(f"{meta_file}: labels must be a list of at least two names")
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise BundleError(f"{meta_file}: duplicate labels {', '.join(dupes)}")
    rate = meta["sample_rate"]
    if isinstance(rate, bool) or not isinstance(rate, int) or not 1000 <= rate <= 384000:
        raise BundleError(f"{meta_file}: sample_rate must be a whole number of Hz "
                          f"(1000-384000), got {rate!r}")
    if ensemble:
        if meta.get("output_map") is not None:
            raise BundleError(f"{meta_file}: an ensemble has no output_map (its members may)")
        members = model["members"]
        if not isinstance(members, list) or not members:
            raise BundleError(f"{meta_file}: model.members must be a non-empty list")
        for i, m in enumerate(members):
            if not isinstance(m, dict) or "path" not in m or "weight" not in m:
                raise BundleError(f"{meta_file}: member {i + 1} needs a path and a weight")
            _inside(path, m["path"], f"member {i + 1} path", meta_file)
        weights = _numbers([m["weight"] for m in members], "member weights", meta_file)
        if np.any(weights <= 0) or abs(weights.sum() - 1.0) > 1e-3:
            raise BundleError(f"{meta_file}: member weights must be positive and sum to 1, "
                              f"got {', '.join(f'{w:g}' for w in weights)}")
        return
    fs = meta["feature_set"]
    if not isinstance(fs, dict) or not isinstance(fs.get("name"), str):
        raise BundleError(f"{meta_file}: feature_set must be an object with a name")
    _inside(path, model.get("onnx", ONNX_FILE), "model.onnx", meta_file)
    if model.get("weights") is not None:
        _inside(path, model["weights"], "model.weights", meta_file)
    norm = meta.get("normalization")
    if norm is not None:
        if not isinstance(norm, dict) or set(norm) != {"mean", "std"}:
            raise BundleError(f"{meta_file}: normalization must be null or {{mean, std}}")
        mean = _numbers(norm["mean"], "normalization.mean", meta_file)
        std = _numbers(norm["std"], "normalization.std", meta_file)
        if mean.shape != std.shape:
            raise BundleError(f"{meta_file}: normalization mean {mean.shape} and std "
                              f"{std.shape} differ in shape")
        if np.any(std < 0):
            raise BundleError(f"{meta_file}: normalization.std has negative values")
    omap = meta.get("output_map")
    if omap is not None:
        n = len(labels)
        if not isinstance(omap, dict) or set(omap) != {"W", "b"}:
            raise BundleError(f"{meta_file}: output_map must be null or {{W, b}}")
        W = _numbers(omap["W"], "output_map.W", meta_file)
        b = _numbers(omap["b"], "output_map.b", meta_file)
        if W.shape != (n, n) or b.shape != (n,):
            raise BundleError(f"{meta_file}: output_map must map {n} labels to {n}: W "
                              f"{n}x{n} and b {n} (got {W.shape} and {b.shape})")
        if max(np.abs(W).max(), np.abs(b).max()) > 1e6:  # (no overflow in the softmax)
            raise BundleError(f"{meta_file}: output_map values must lie within ±1e6")


def load_bundle(path: str | Path) -> Bundle:
    """Read and check a bundle folder (``model.json`` is the only thing parsed).

    Every check of :func:`validate_meta` runs here; a bad bundle is a :class:`BundleError`
    saying what is wrong, never a crash later.
    """
    path = Path(path)
    meta_file = path / META_FILE if path.is_dir() else path
    if meta_file.name != META_FILE or not meta_file.is_file():
        raise BundleError(f"{path}: not a ser bundle (no {META_FILE})")
    path = meta_file.parent
    try:
        meta = json.loads(meta_file.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{meta_file}: unreadable JSON ({exc})") from None
    except OSError as exc:
        raise BundleError(f"{meta_file}: cannot be read ({exc.strerror})") from None
    validate_meta(meta, path, meta_file)
    _check_confidence(meta, meta_file)
    bundle = Bundle(path, meta)
    if not bundle.is_ensemble:
        if not bundle.onnx_path.is_file():
            raise BundleError(f"{path}: model file {bundle.onnx_path.name} is missing")
        return bundle
    for member, _ in bundle.members():
        if member.is_ensemble:
            raise BundleError(f"{member.path}: ensemble members must be plain bundles")
        if member.labels != bundle.labels or member.meta["sample_rate"] != meta["sample_rate"]:
            raise BundleError(f"{member.path}: its labels or sample rate differ from the "
                              f"ensemble's ({', '.join(bundle.labels)}, "
                              f"{meta['sample_rate']} Hz)")
    return bundle
