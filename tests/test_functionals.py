"""The ``functionals`` feature set: columns, determinism, sane values, JSON, a bundle on it."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ser.audio import AudioError
from ser.features import FeatureSetError, feature_set_from_json, get_feature_set
from ser.features.functionals import STATS, yin_track
from ser.labels import CANONICAL

SR = 16000


def harmonic(f0: float, seconds: float = 2.0, *, lead: float = 0.0, amp: float = 0.3,
             seed: int = 0) -> np.ndarray:
    """A steady harmonic tone (1/k amplitudes) after ``lead`` seconds of faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8) if k * f0 < SR / 2)
    y = amp * y / np.abs(y).max()
    y = np.concatenate([np.zeros(int(lead * SR)), y])
    return (y + 1e-4 * rng.standard_normal(y.size)).astype(np.float32)


def values(fs, y) -> dict[str, float]:
    return dict(zip(fs.columns, fs.compute(y).tolist(), strict=True))


def test_columns_match_the_vector_and_are_named():
    fs = get_feature_set("functionals")
    x = fs.compute(harmonic(150.0))
    # 40 mel + 20 MFCC + 20 delta-MFCC + 8 spectral/energy descriptors, 8 stats each,
    # then 8 pitch stats and 4 pitch/voicing extras.
    assert len(fs.columns) == (40 + 20 + 20 + 8) * len(STATS) + 8 + 4 == 716
    assert x.shape == (716,) and x.dtype == np.float32 and np.isfinite(x).all()
    assert len(set(fs.columns)) == len(fs.columns)
    assert fs.columns[:3] == ["mel0_mean", "mel0_std", "mel0_p10"]
    assert {"f0_p50", "voiced_ratio", "mfcc0_slope", "zcr_kurt"} <= set(fs.columns)
    small = get_feature_set("functionals", n_mels=24, n_mfcc=12)
    assert small.compute(harmonic(150.0)).shape == (len(small.columns),)
    assert len(small.columns) == (24 + 12 + 12 + 8) * 8 + 12


def test_deterministic_and_independent_of_other_calls():
    fs = get_feature_set("functionals")
    y = harmonic(180.0, seed=3)
    first = fs.compute(y)
    fs.compute(harmonic(95.0, 1.0))
    np.testing.assert_array_equal(fs.compute(y), first)
    np.testing.assert_array_equal(get_feature_set("functionals").compute(y.copy()), first)


@pytest.mark.parametrize("f0", [85.0, 140.0, 230.0, 410.0])
def test_pitch_recovers_a_known_f0(f0):
    fs = get_feature_set("functionals")
    v = values(fs, harmonic(f0))
    assert 27.5 * 2 ** (v["f0_p50"] / 12) == pytest.approx(f0, rel=0.02)
    assert 27.5 * 2 ** (v["f0_mean"] / 12) == pytest.approx(f0, rel=0.02)
    assert v["f0_std"] < 0.2 and v["voiced_ratio"] > 0.95


def test_yin_track_follows_a_pitch_change():
    t = np.arange(SR) / SR
    y = np.concatenate([np.sin(2 * np.pi * 120 * t), np.sin(2 * np.pi * 300 * t)])
    f0, dip = yin_track(y, SR, 60.0, 500.0)
    assert np.median(f0[10:90]) == pytest.approx(120, rel=0.01)
    assert np.median(f0[110:190]) == pytest.approx(300, rel=0.01)
    assert np.median(dip[10:90]) < 0.05


def test_noise_is_unvoiced_and_brighter_than_a_low_tone():
    fs = get_feature_set("functionals")
    noise = (0.1 * np.random.default_rng(0).standard_normal(2 * SR)).astype(np.float32)
    vn, vt = values(fs, noise), values(fs, harmonic(120.0))
    assert vn["voiced_ratio"] < 0.1 < 0.95 < vt["voiced_ratio"]
    assert vn["centroid_mean"] > 3.0 > 0.5 > vt["centroid_mean"]  # kHz; white noise ~4 kHz
    assert vn["flatness_mean"] > vt["flatness_mean"]
    assert vn["zcr_mean"] > vt["zcr_mean"]


def test_leading_silence_is_trimmed_and_level_shows_in_rms():
    fs = get_feature_set("functionals")
    plain = fs.compute(harmonic(150.0))
    padded = fs.compute(harmonic(150.0, lead=1.0))
    # The statistics see (almost) the same frames: only the onset frame differs.
    np.testing.assert_allclose(padded[fs.columns.index("f0_p50")],
                               plain[fs.columns.index("f0_p50")], atol=0.01)
    i = fs.columns.index("rms_db_p50")
    np.testing.assert_allclose(padded[i], plain[i], atol=0.5)
    quiet = fs.compute(harmonic(150.0, amp=0.03))
    assert quiet[i] == pytest.approx(plain[i] - 20.0, abs=0.5)  # 10x amplitude = 20 dB


def test_json_round_trip_options_and_errors():
    fs = get_feature_set("functionals", n_mels=32, trim_db=30.0)
    again = feature_set_from_json(fs.to_json())
    assert again == fs and again.columns == fs.columns
    y = harmonic(200.0, 1.0)
    np.testing.assert_array_equal(again.compute(y), fs.compute(y))
    with pytest.raises(FeatureSetError, match="n_mfcc"):
        get_feature_set("functionals", n_mfcc=50)
    with pytest.raises(FeatureSetError, match="no option"):
        get_feature_set("functionals", hop=3)
    with pytest.raises(AudioError, match="too short"):
        fs.compute(np.zeros(100, np.float32))


def test_a_bundle_trained_on_functionals_predicts_through_the_recognizer(tmp_path):
    from fixtures import babble

    from ser.inference import Recognizer
    from ser.training import TrainOptions, train

    # Six "emotions" = six voices' pitches; 4 speakers each shift their pitch a little.
    # Numpy speech, not tones: the Recognizer gives no emotion to input without speech.
    root = tmp_path / "data"
    for i, label in enumerate(CANONICAL):
        for spk in range(4):
            folder = root / label / f"s{spk}"
            folder.mkdir(parents=True)
            for take in range(2):
                f0 = (100 + 30 * i) * (1 + 0.02 * (spk - 1.5))
                sf.write(folder / f"{take}.wav", babble(1.0, f0, seed=spk * 10 + take), SR)
    opts = TrainOptions(model="svm", protocol="speaker", feature_set="functionals")
    result = train([root], opts, tmp_path / "run", cache_dir=tmp_path / "cache", jobs=1)
    assert result["feature_set"] == "functionals"
    rec = Recognizer.load(tmp_path / "run" / "bundle")
    pred = rec.predict(babble(1.0, 100 + 30 * 4, seed=99), SR)
    assert pred.label == CANONICAL[4]
    assert set(pred.probabilities) == set(CANONICAL)
