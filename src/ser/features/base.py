"""The FeatureSet interface, the registry of sets, and (de)serialisation of their config.

A feature set turns a mono float32 signal at its own ``sample_rate`` into a float32 array.
Its JSON form (``to_json()``) is what a bundle stores and what the feature cache keys on,
so two sets with equal JSON must compute equal features.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ser.audio import LEVEL_DBFS, AudioError, load_audio, normalize_level
from ser.errors import SerError


class FeatureSetError(SerError):
    """An unknown feature set, a bad config value, or a missing optional dependency."""


class FeatureSet:
    """Base class: subclasses set ``name``, ``version``, ``kind`` and implement ``compute``.

    ``kind`` is ``"vector"`` (one row of ``columns`` per clip) or ``"sequence"`` (an
    ``(n, frames)`` array per clip).
    """

    name: ClassVar[str]
    version: ClassVar[int]
    kind: ClassVar[str] = "vector"
    #: Config keys and their defaults; subclasses override.
    defaults: ClassVar[dict[str, Any]] = {}
    #: The ``ser[EXTRA]`` a set needs beyond the base install (see ser.extras), if any.
    extra: ClassVar[str | None] = None
    #: ``level_dbfs`` when not given: every set but the seed's reproduction normalises.
    default_level_dbfs: ClassVar[float | None] = LEVEL_DBFS
    #: What a recorded config (a bundle's, :func:`feature_set_from_json`) that lacks a key
    #: computed before the key existed: no level normalisation, and whatever a subclass adds.
    legacy: ClassVar[dict[str, Any]] = {"level_dbfs": None}

    def __init__(self, **config: Any):
        options = {**self.defaults, "level_dbfs": self.default_level_dbfs}
        unknown = sorted(set(config) - set(options))
        if unknown:
            raise FeatureSetError(
                f"feature set {self.name!r} has no option {', '.join(unknown)}; "
                f"options are: {', '.join(sorted(options))}"
            )
        self._config = {**options, **config}
        if self._config["level_dbfs"] is None:
            # Unrecorded when off: sets and bundles from before the option keep their keys.
            del self._config["level_dbfs"]
        self._validate()

    def _validate(self) -> None:
        sr = self._config.get("sample_rate")
        if sr is not None and (not isinstance(sr, int) or sr < 4000):
            raise FeatureSetError(f"sample_rate must be an integer >= 4000 Hz, got {sr!r}")
        level = self._config.get("level_dbfs")
        if level is not None and (isinstance(level, bool) or not isinstance(level, int | float)
                                  or not -60 <= level <= 0):
            raise FeatureSetError(f"level_dbfs must be a number in -60..0 (or none), got "
                                  f"{level!r}")

    # -- description -------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def sample_rate(self) -> int:
        return int(self._config["sample_rate"])

    @property
    def columns(self) -> list[str] | None:
        """Names of the vector's entries (None for sequence sets)."""
        return None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "config": self.config}

    def key(self) -> str:
        """Canonical JSON text of the set: equal keys mean equal features."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FeatureSet) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config.items())
        return f"{type(self).__name__}({args})"

    # -- audio ---------------------------------------------------------------------------
    #: Seconds skipped at the start of a file, and the most seconds used (None = all).
    def _span(self) -> tuple[float, float | None]:
        return 0.0, self._config.get("max_seconds")

    def load(self, path: str | Path) -> np.ndarray:
        """Decode the part of ``path`` this set uses, mono float32 at ``sample_rate``."""
        offset, duration = self._span()
        y = load_audio(path, sr=self.sample_rate, offset=offset, duration=duration)
        return self._check_length(y, path)

    def window(self, y: np.ndarray) -> np.ndarray:
        """The same crop as :meth:`load`, applied to a signal already at ``sample_rate``."""
        offset, duration = self._span()
        start = int(round(offset * self.sample_rate))
        stop = None if duration is None else start + int(round(duration * self.sample_rate))
        return self._check_length(np.asarray(y, dtype=np.float32)[start:stop], None)

    #: Fewest samples (seconds) compute() accepts.
    min_seconds: ClassVar[float] = 0.05

    def _check_length(self, y: np.ndarray, path: str | Path | None) -> np.ndarray:
        if y.size < self.min_seconds * self.sample_rate:
            offset, _ = self._span()
            where = f" after the {offset:g} s offset" if offset else ""
            raise AudioError(
                path,
                f"too short for feature set {self.name!r}: {y.size / self.sample_rate:.2f} s"
                f"{where}; it needs at least {self.min_seconds:g} s",
            )
        return y

    def prepare(self, threads: int = 1) -> None:
        """Load what ``compute`` needs up front (model weights, run with ``threads``), so a
        server's first request does not pay for it. Nothing for most sets."""

    def compute(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def features(self, y: np.ndarray, *, level: float | None = None) -> np.ndarray:
        """:meth:`compute` of ``y`` brought to the set's input level (``level_dbfs``).

        The one place level is removed, for training (after any augmentation) and for
        inference alike: the recording level — microphone gain, distance — carries no
        emotion a model may rely on, so a clip 30 dB quieter gives the same features.
        ``level``: ``ser.audio.speech_level(y, sample_rate)`` when the caller has measured
        it already (same features, one measurement less)."""
        level_dbfs = self._config.get("level_dbfs")
        if level_dbfs is not None:
            y = normalize_level(y, self.sample_rate, level_dbfs, level=level)
        return self.compute(y)


_REGISTRY: dict[str, type[FeatureSet]] = {}
#: Where each built-in set lives; imported on first use, so asking for ``logmel`` (live
#: inference) does not pay for librosa's import that ``seed178`` needs.
_MODULES = {"seed178": "ser.features.seed178", "logmel": "ser.features.logmel",
            "egemaps": "ser.features.egemaps", "functionals": "ser.features.functionals",
            "whisper": "ser.features.whisper"}


def register(cls: type[FeatureSet]) -> type[FeatureSet]:
    _REGISTRY[cls.name] = cls
    return cls


def feature_set_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_MODULES))


def get_feature_set(name: str | FeatureSet, **config: Any) -> FeatureSet:
    """A feature set by name, with config overrides.

    >>> fs = get_feature_set("logmel", n_mels=40)
    >>> fs.compute(np.zeros(16000, dtype=np.float32)).shape
    (40, 101)
    """
    if isinstance(name, FeatureSet):
        return name if not config else type(name)(**{**name.config, **config})
    return _class(name)(**config)


def _class(name: str) -> type[FeatureSet]:
    if name not in _REGISTRY and name in _MODULES:
        importlib.import_module(_MODULES[name])
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FeatureSetError(
            f"unknown feature set {name!r}; choose one of: {', '.join(feature_set_names())}"
        ) from None


def feature_set_from_json(d: dict[str, Any] | str) -> FeatureSet:
    """Rebuild a set from ``to_json()`` output (a dict or its JSON text)."""
    if isinstance(d, str):
        d = json.loads(d)
    # A key it does not record: a set from before that option (``FeatureSet.legacy``).
    cls = _class(d["name"])
    fs = cls(**{**cls.legacy, **d.get("config", {})})
    if int(d.get("version", fs.version)) != fs.version:
        raise FeatureSetError(
            f"feature set {d['name']!r} version {d['version']} was used, but this ser "
            f"computes version {fs.version}; features would differ. Use a matching ser "
            "version or re-extract/re-train."
        )
    return fs
