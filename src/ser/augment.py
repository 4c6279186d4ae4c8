"""Seeded audio augmentations, for training data only.

The seed notebook's two augmentations are here with its constants — ``noise``
(Gaussian noise of amplitude ``0.035 · U(0,1) · max(y)``) and ``stretch_pitch`` (time-stretch
at rate 0.8, then pitch-shift by 0.7 semitones) — plus ``shift`` (circular shift by up to
±5000 samples, the seed's shift) and ``gain`` (±6 dB). Every random draw comes from a
``numpy.random.Generator`` the caller passes in, so a run is reproducible.

>>> import numpy as np
>>> aug = get_augmentation("noise", seed=1)
>>> y = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
>>> z = aug.apply(y, 16000, aug.rng_for("clip-id"))
>>> z.shape, z.dtype
((16000,), dtype('float32'))
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import librosa
import numpy as np

from ser.errors import SerError


def noise(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's noise: ``y + 0.035·U(0,1)·max(y) · N(0,1)``."""
    amplitude = 0.035 * rng.uniform() * np.amax(y)
    return y + amplitude * rng.normal(size=y.shape[0])


def stretch_pitch(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's ``time_stretch(rate=0.8)`` then ``pitch_shift(n_steps=0.7)`` (no randomness)."""
    y = librosa.effects.time_stretch(y, rate=0.8)
    return librosa.effects.pitch_shift(y, sr=sr, n_steps=0.7)


def shift(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's circular shift by ``int(U(-5, 5) · 1000)`` samples."""
    return np.roll(y, int(rng.uniform(low=-5, high=5) * 1000))


def gain(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A random gain in [-6, +6] dB."""
    return y * 10.0 ** (rng.uniform(-6.0, 6.0) / 20.0)


AUGMENTATIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "noise": noise,
    "stretch_pitch": stretch_pitch,
    "shift": shift,
    "gain": gain,
}


class AugmentError(SerError):
    """An unknown augmentation name."""


@dataclass(frozen=True)
class Augmentation:
    """A chain of named augmentations applied in order (``"noise+gain"``) and a base seed."""

    names: tuple[str, ...]
    seed: int = 0

    @property
    def name(self) -> str:
        return "+".join(self.names)

    def to_json(self) -> dict:
        return {"augment": self.name, "seed": self.seed}

    def rng_for(self, item: str | bytes) -> np.random.Generator:
        """The generator for one clip: derived from the seed and the clip's identity
        (its content hash in :func:`ser.features.extract`), so the draws do not depend
        on processing order or on how many workers run."""
        if isinstance(item, str):
            item = item.encode()
        digest = hashlib.blake2b(item, digest_size=8).digest()
        return np.random.default_rng([self.seed, int.from_bytes(digest, "little")])

    def apply(self, y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        for name in self.names:
            y = AUGMENTATIONS[name](y, sr, rng)
        return np.asarray(y, dtype=np.float32)


def get_augmentation(spec: str | Augmentation, *, seed: int = 0) -> Augmentation:
    """Parse ``"noise"``, ``"stretch_pitch"``, ``"noise+gain"``… into an Augmentation."""
    if isinstance(spec, Augmentation):
        return spec
    names = tuple(part.strip() for part in spec.split("+") if part.strip())
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if not names or unknown:
        raise AugmentError(
            f"unknown augmentation {spec!r}; choose from {', '.join(AUGMENTATIONS)} "
            "(combine with '+', e.g. 'noise+gain')"
        )
    return Augmentation(names, int(seed))


def augment(y: np.ndarray, sr: int, spec: str, *, seed: int) -> np.ndarray:
    """Apply ``spec`` to one signal with an explicit seed.

    >>> y = np.ones(8000, dtype=np.float32)
    >>> bool(np.array_equal(augment(y, 16000, "gain", seed=3), augment(y, 16000, "gain", seed=3)))
    True
    """
    return get_augmentation(spec).apply(y, sr, np.random.default_rng(seed))
