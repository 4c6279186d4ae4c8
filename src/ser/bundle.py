"""Model bundles: one folder holding everything inference needs — never pickle.

A bundle is ``model.json`` (labels, sample rate, feature set, normalisation statistics,
protocol, metrics, training data, licence) plus ``model.onnx`` (input ``features``, already
normalised; output ``probabilities``) and optionally ``weights.safetensors`` for torch models.

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
    path: Path
    meta: dict[str, Any]

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
    model = dict(meta["model"], onnx=ONNX_FILE, weights=None)
    if weights:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        atomic_write(path / WEIGHTS_FILE, save(tensors))
        model["weights"] = WEIGHTS_FILE
    full = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **meta,
        "model": model,
    }
    atomic_write(path / META_FILE, json.dumps(_jsonable(full), indent=2).encode())
    return Bundle(path, json.loads((path / META_FILE).read_text()))


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


def load_bundle(path: str | Path) -> Bundle:
    """Read and check a bundle folder (``model.json`` is the only thing parsed)."""
    path = Path(path)
    meta_file = path / META_FILE if path.is_dir() else path
    if meta_file.name != META_FILE or not meta_file.exists():
        raise BundleError(f"{path}: not a ser bundle (no {META_FILE})")
    path = meta_file.parent
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_file}: unreadable JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise BundleError(f"{meta_file}: not a ser bundle (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version} is newer than this ser understands "
            f"({FORMAT_VERSION}); upgrade ser to load it"
        )
    ensemble = "members" in meta.get("model", {})
    missing = [k for k in (ENSEMBLE_REQUIRED if ensemble else REQUIRED) if k not in meta]
    if missing:
        raise BundleError(f"{meta_file}: lacks {', '.join(missing)}")
    bundle = Bundle(path, meta)
    if not ensemble:
        if not bundle.onnx_path.exists():
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
