"""Model bundles: one folder holding everything inference needs — never pickle.

A bundle is ``model.json`` (labels, sample rate, feature set, normalisation statistics,
protocol, metrics, training data, licence) plus ``model.onnx`` (input ``features``, already
normalised; output ``probabilities``) and optionally ``weights.safetensors`` for torch models.
"""

from __future__ import annotations

import json
import os
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
    missing = [k for k in REQUIRED if k not in meta]
    if missing:
        raise BundleError(f"{meta_file}: lacks {', '.join(missing)}")
    bundle = Bundle(path, meta)
    if not bundle.onnx_path.exists():
        raise BundleError(f"{path}: model file {bundle.onnx_path.name} is missing")
    return bundle
