"""Seeded augmentations: reproducible, the seed's constants, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from ser.augment import AUGMENTATIONS, AugmentError, augment, get_augmentation


def tone(seconds=1.0, sr=16000):
    t = np.arange(int(seconds * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


# babble needs a folder of speech: tests/test_robustness.py checks its seeding with one
@pytest.mark.parametrize("name", sorted(set(AUGMENTATIONS) - {"babble"}))
def test_same_seed_same_output(name):
    y = tone()
    a = augment(y, 16000, name, seed=7)
    assert a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, augment(y, 16000, name, seed=7))
    assert not np.array_equal(a, y)


@pytest.mark.parametrize("name", ["noise", "shift", "gain", "room"])
def test_other_seed_other_draw(name):
    y = tone()
    assert not np.array_equal(augment(y, 16000, name, seed=1), augment(y, 16000, name, seed=2))


def test_noise_amplitude_is_the_seeds():
    y = tone()
    rng = np.random.default_rng(3)
    amplitude = 0.035 * rng.uniform() * np.max(y)
    expected = y + amplitude * rng.normal(size=y.size)
    np.testing.assert_allclose(augment(y, 16000, "noise", seed=3), expected, atol=1e-6)


def test_stretch_pitch_lengthens_by_the_rate():
    y = tone(1.0)
    z = augment(y, 16000, "stretch_pitch", seed=0)
    assert abs(z.size - y.size / 0.8) < 0.01 * y.size


def test_shift_is_a_roll_and_gain_within_6_db():
    y = tone()
    z = augment(y, 16000, "shift", seed=5)
    assert any(np.array_equal(z, np.roll(y, k)) for k in range(-5000, 5001))
    g = augment(y, 16000, "gain", seed=5)
    ratio = np.max(np.abs(g)) / np.max(np.abs(y))
    assert 10 ** (-6 / 20) - 1e-6 <= ratio <= 10 ** (6 / 20) + 1e-6


def test_chains_and_per_clip_generators():
    aug = get_augmentation("noise+gain", seed=4)
    assert aug.names == ("noise", "gain") and aug.to_json() == {"augment": "noise+gain", "seed": 4}
    r1 = aug.rng_for("abc").uniform()
    assert r1 == aug.rng_for("abc").uniform() != aug.rng_for("abd").uniform()
    assert r1 != get_augmentation("noise+gain", seed=5).rng_for("abc").uniform()


def test_unknown_name():
    with pytest.raises(AugmentError, match="unknown augmentation 'reverb'"):
        get_augmentation("reverb")
