"""Feature sets: seed178 equals the seed's librosa recipe; logmel; egemaps; config JSON."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf

from ser.audio import AudioError
from ser.features import (
    FeatureSetError,
    feature_set_from_json,
    feature_set_names,
    get_feature_set,
)
from ser.features.seed178 import COLUMNS, seed178_reference


def voice(seconds: float, sr: int, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like test signal: harmonics with vibrato, an envelope and noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sr
    y = sum(np.sin(k * phase) / k for k in range(1, 12))
    y *= 0.5 * (1 + np.sin(2 * np.pi * 1.5 * t)) ** 2
    y += 0.01 * rng.normal(size=t.size)
    return (0.3 * y / np.max(np.abs(y))).astype(np.float32)


# seed178.compute redoes the recipe's arithmetic in fewer steps (float32 FFT in the CQT,
# moments for the bandwidth, other summation orders): measured differences over RAVDESS are
# ~1e-7 absolute (bench/bench_features.py checks all files); the tolerance leaves room.
RTOL, ATOL = 1e-4, 1e-6


@pytest.mark.parametrize("f0,seconds", [(140.0, 2.5), (233.3, 2.5), (97.0, 1.3)])
def test_seed178_matches_the_seed_recipe(f0, seconds):
    fs = get_feature_set("seed178")
    y = voice(seconds, 22050, f0=f0, seed=int(f0))
    fast = fs.compute(y)
    reference = seed178_reference(y, 22050)
    assert fast.shape == (178,) and fast.dtype == np.float32
    np.testing.assert_allclose(fast, reference, rtol=RTOL, atol=ATOL)
    # A second call hits the per-process filter caches and must give the same numbers.
    np.testing.assert_array_equal(fs.compute(y), fast)


def test_seed178_matches_on_silence_noise_and_clicks():
    # Digital silence (zero frames: the normalisations' guards), white noise (no pitch
    # peaks to speak of) and isolated clicks (zero crossings around exact zeros).
    rng = np.random.default_rng(1)
    y = voice(2.5, 22050, f0=180.0)
    y[20000:32000] = 0.0
    noise = (0.1 * rng.normal(size=55125)).astype(np.float32)
    clicks = np.zeros(55125, np.float32)
    clicks[::997] = 0.5
    clicks[498::997] = -0.25
    fs = get_feature_set("seed178")
    for signal in (y, noise, clicks, np.zeros(55125, np.float32)):
        np.testing.assert_allclose(fs.compute(signal), seed178_reference(signal, 22050),
                                   rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seed178_tuning_is_librosas_exactly(seed):
    # Tuning is quantised (0.01 bin): a near-miss would shift every chroma filter, so the
    # fast piptrack must pick the same peaks as librosa's, not merely close ones.
    from ser.features.seed178 import _stft_magnitude, _tunings

    rng = np.random.default_rng(seed)
    y = voice(2.5, 22050, f0=float(rng.uniform(90, 300)), seed=seed)
    y = (y + 0.02 * rng.normal(size=y.size)).astype(np.float32)
    S = np.abs(librosa.stft(y))
    np.testing.assert_array_equal(_stft_magnitude(y), S)
    assert _tunings(S, 22050) == (librosa.estimate_tuning(S=S, sr=22050, bins_per_octave=12),
                                  librosa.estimate_tuning(y=y, sr=22050, bins_per_octave=36))


@pytest.mark.parametrize("tuning", [-0.5, -0.07, 0.0, 0.31, 0.49])
def test_seed178_cqt_filters_are_librosas(tuning):
    # The CQT filter bank is rebuilt (vectorised sparsification) and stored as a dense band
    # of FFT bins; it must equal librosa's sparse bank entry for entry.
    import importlib

    from ser.features.seed178 import _cqt_plan, _octave_filters

    vqt_filter_fft = getattr(importlib.import_module("librosa.core.constantq"),
                             "__vqt_filter_fft", None)
    if vqt_filter_fft is None:
        pytest.skip("this librosa has no __vqt_filter_fft to compare with")
    freqs, alpha, _, _ = _cqt_plan(22050.0, 252, 36, tuning)
    rel, alpha = np.round(freqs[-36:] / 22050.0, 12), np.round(alpha[-36:], 12)
    n_fft, first, band = _octave_filters(rel.tobytes(), alpha.tobytes())
    ref, ref_n_fft, _ = vqt_filter_fft(1.0, rel, 1, 1, 0.01, window="hann", gamma=0,
                                       dtype=np.complex64, alpha=alpha)
    full = np.zeros(ref.shape, np.complex64)
    full[:, first:first + band.shape[0]] = band.T
    assert n_fft == ref_n_fft
    np.testing.assert_array_equal(full, ref.toarray())


def test_seed178_columns_in_seed_order():
    fs = get_feature_set("seed178")
    assert fs.columns == COLUMNS and len(COLUMNS) == 178 and len(set(COLUMNS)) == 178
    assert COLUMNS[:3] == ["zcr", "chroma_01", "chroma_02"]
    assert COLUMNS[13:15] == ["mfcc_01", "mfcc_02"] and COLUMNS[32] == "mfcc_20"
    assert COLUMNS[33:35] == ["rms", "mel_001"] and COLUMNS[161] == "mel_128"
    assert COLUMNS[162:166] == ["rolloff", "centroid", "contrast_1", "contrast_2"]
    assert COLUMNS[171:] == ["bandwidth"] + [f"tonnetz_{i}" for i in range(1, 7)]


def test_seed178_load_takes_the_seed_window(tmp_path):
    path = tmp_path / "clip.wav"
    y16 = voice(4.0, 16000)
    sf.write(path, y16, 16000)
    fs = get_feature_set("seed178")
    y = fs.load(path)
    ref, _ = librosa.load(path, sr=22050, offset=0.6, duration=2.5)
    assert y.shape == ref.shape == (55125,)
    np.testing.assert_allclose(y, ref, atol=1e-6)
    assert fs.window(np.zeros(22050 * 4, np.float32)).shape == (55125,)


def test_too_short_clip_is_a_clear_error(tmp_path):
    fs = get_feature_set("seed178")
    path = tmp_path / "short.wav"
    sf.write(path, voice(0.65, 16000), 16000)
    with pytest.raises(AudioError, match="too short for feature set 'seed178'.*0.6 s offset"):
        fs.load(path)


def test_logmel_matches_librosa_and_crops():
    fs = get_feature_set("logmel")
    y = voice(1.5, 16000)
    x = fs.compute(y)
    assert x.dtype == np.float32 and x.shape == (64, 1 + y.size // 160)
    mel = librosa.feature.melspectrogram(
        y=y, sr=16000, n_fft=400, hop_length=160, n_mels=64, fmin=0, fmax=8000, power=2.0
    )
    np.testing.assert_allclose(x, np.log(mel + 1e-6), rtol=1e-4, atol=1e-3)
    cropped = get_feature_set("logmel", max_seconds=1.0, n_mels=40)
    assert cropped.compute(cropped.window(y)).shape == (40, 101)


def test_json_round_trip_and_errors():
    for name in feature_set_names():
        fs = get_feature_set(name)
        back = feature_set_from_json(fs.to_json())
        assert back == fs and back.to_json() == fs.to_json()
    fs = get_feature_set("logmel", n_mels=80, hop_length=320)
    assert feature_set_from_json(fs.key()).config["n_mels"] == 80
    with pytest.raises(FeatureSetError, match="unknown feature set 'mfcc'"):
        get_feature_set("mfcc")
    with pytest.raises(FeatureSetError, match="no option n_mfcc"):
        get_feature_set("seed178", n_mfcc=13)
    with pytest.raises(FeatureSetError, match="version 99"):
        feature_set_from_json({**fs.to_json(), "version": 99})
    with pytest.raises(FeatureSetError, match="fmin < fmax"):
        get_feature_set("logmel", fmin=9000)


def test_egemaps_88_functionals():
    pytest.importorskip("opensmile")
    fs = get_feature_set("egemaps")
    x = fs.compute(voice(1.0, 16000))
    assert x.shape == (88,) and x.dtype == np.float32 and np.all(np.isfinite(x))
    assert len(fs.columns) == 88 and fs.columns[0].startswith("F0semitone")


@pytest.mark.parametrize("sr,n_fft,n_mels,fmin,fmax", [(16000, 400, 64, 0.0, 8000.0),
                                                      (22050, 2048, 128, 20.0, 7600.0)])
def test_logmel_filter_bank_is_librosas(sr, n_fft, n_mels, fmin, fmax):
    from ser.features.logmel import _mel_basis

    np.testing.assert_allclose(
        _mel_basis(sr, n_fft, n_mels, fmin, fmax),
        librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax),
        rtol=1e-5, atol=1e-7,
    )


def test_logmel_does_not_import_librosa():
    import subprocess
    import sys

    code = ("import sys, numpy as np; from ser.features import get_feature_set; "
            "fs = get_feature_set('logmel'); fs.compute(np.zeros(1600, np.float32)); "
            "print('librosa' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
