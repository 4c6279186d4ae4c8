"""The on-disk feature cache: one ``.npy`` per (audio content, feature set, augmentation).

Entries are keyed by a hash of the audio file's bytes, so renaming or moving a corpus keeps
its cache, and editing a file invalidates it. Each entry is written to a temporary file and
moved into place with ``os.replace``, so a run killed at any moment leaves either a whole
entry or none — never a torn one — and the next run resumes from what is there.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$SER_CACHE_DIR/features``, else ``$XDG_CACHE_HOME/ser/features``, else
    ``~/.cache/ser/features``."""
    if os.environ.get("SER_CACHE_DIR"):
        return Path(os.environ["SER_CACHE_DIR"]).expanduser() / "features"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ser" / "features"


def content_hash(path: str | Path) -> str:
    """blake2b (128-bit) of a file's bytes, as hex."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """Entries for one feature set + augmentation under ``root/<set name>/``."""

    def __init__(self, root: str | Path, namespace: str, config_key: str):
        self.root = Path(root).expanduser() / namespace
        self._config_key = config_key.encode()

    def key(self, audio_hash: str) -> str:
        h = hashlib.blake2b(self._config_key, digest_size=20)
        h.update(audio_hash.encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        try:
            return np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            # Damaged by something outside ser (disk error, manual edit): recompute it.
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, value, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
