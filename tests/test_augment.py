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


def vowel(f0=100.0, formants=(700.0, 2200.0), seconds=1.0, sr=16000):
    """A pulse train at ``f0`` through two-pole resonators at ``formants``: a synthetic vowel."""
    from scipy.signal import lfilter

    x = np.zeros(int(seconds * sr))
    x[::int(sr / f0)] = 1.0
    for f in formants:
        r, theta = np.exp(-np.pi * 80 / sr), 2 * np.pi * f / sr
        x = lfilter([1.0], [1.0, -2 * r * np.cos(theta), r * r], x)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def strongest_harmonic(y, sr=16000, band=(300, 1200)):
    spectrum = np.abs(np.fft.rfft(y[sr // 4: -sr // 4] * np.hanning(y.size - sr // 2)))
    freqs = np.fft.rfftfreq(y.size - sr // 2, 1 / sr)
    inside = (freqs > band[0]) & (freqs < band[1])
    return freqs[inside][spectrum[inside].argmax()]


def pitch(y, sr=16000):
    """The period from the autocorrelation's highest peak between 2.5 and 13 ms."""
    y = y[sr // 4: -sr // 4].astype(np.float64)
    ac = np.correlate(y, y, "full")[y.size - 1:]
    lo, hi = int(0.0025 * sr), int(0.013 * sr)
    return sr / (lo + ac[lo:hi].argmax())


@pytest.mark.parametrize("ratio, expected", [(0.88, 600.0), (1.0, 700.0), (1.14, 800.0)])
def test_talker_moves_the_formants_and_keeps_the_pitch(ratio, expected):
    from ser.augment import formant_shift

    y = vowel()
    z = formant_shift(y, 16000, ratio)
    assert z.shape == y.shape and z.dtype == np.float32
    assert strongest_harmonic(z) == pytest.approx(expected, abs=15)  # F1 700 Hz × ratio
    assert pitch(z) == pytest.approx(100.0, rel=0.03)


def test_talker_draws_a_ratio_per_clip_and_leaves_unreadable_clips_alone():
    y = vowel()
    assert not np.array_equal(augment(y, 16000, "talker", seed=1),
                              augment(y, 16000, "talker", seed=2))
    tiny = np.zeros(100, np.float32)
    np.testing.assert_array_equal(augment(tiny, 16000, "talker", seed=1), tiny)
