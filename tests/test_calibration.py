"""ser.calibration: temperature scaling, ECE, the uncertain threshold; and the Recognizer
applying the bundle's calibration and threshold once, for every face."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from _tiny_bundle import timbre_clip, tiny_bundle

from ser.bundle import BundleError, load_bundle
from ser.calibration import (
    Calibration,
    confidence_report,
    ece_floor,
    expected_calibration_error,
    feature_spread,
    fit_distance,
    fit_temperature,
    threshold_for_precision,
)
from ser.inference import Recognizer
from ser.labels import CANONICAL


def synthetic(n: int = 4000, true_t: float = 0.5, seed: int = 0):
    """Labels drawn from softmax(z); the model reports softmax(z / true_t): overconfident."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, 6))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = np.array([rng.choice(6, p=row) for row in p_true])
    reported = np.exp(z / true_t) / np.exp(z / true_t).sum(1, keepdims=True)
    return reported, y


def test_temperature_recovers_the_distortion_and_lowers_ece():
    reported, y = synthetic()
    cal = fit_temperature(reported, y)
    assert cal.temperature == pytest.approx(1 / 0.5, rel=0.1)
    before = expected_calibration_error(reported, y)
    after = expected_calibration_error(cal.apply(reported), y)
    assert before > 0.1 and after < 0.03, (before, after)
    # Temperature never changes the answer, only its confidence.
    assert (cal.apply(reported).argmax(1) == reported.argmax(1)).all()


def test_the_ece_floor_is_what_a_calibrated_model_shows_on_that_many_answers():
    rng = np.random.default_rng(5)
    floors = []
    for n in (150, 1500):
        z = rng.normal(0, 1.5, size=(n, 6))
        p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
        # labels drawn from p itself: a perfectly calibrated model, measured 40 times
        seen = [expected_calibration_error(p, (rng.random((n, 1)) > np.cumsum(p, 1)).sum(1))
                for _ in range(40)]
        floors.append(ece_floor(p))
        assert floors[-1] == pytest.approx(np.mean(seen), rel=0.2), (n, floors[-1], seen)
        assert ece_floor(p) == floors[-1]  # seeded
    assert floors[0] > 2 * floors[1] > 0  # ~1/sqrt(n)


def test_the_distance_temperature_softens_answers_far_from_the_training_data():
    """A model over-confident in proportion to how far its input lies from the training
    data: fit_distance finds the exponent, and one temperature cannot fix it."""
    rng = np.random.default_rng(7)
    n = 6000
    z = rng.normal(0, 1.5, size=(n, 6))
    p_true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random((n, 1)) > np.cumsum(p_true, 1)).sum(1)
    spread = np.exp(rng.normal(0, 0.6, n))                   # ~1 near the training data
    reported = np.exp(z * spread[:, None] ** 0.7)
    reported /= reported.sum(1, keepdims=True)
    cal = fit_distance(reported, y, spread)
    assert cal.temperature == pytest.approx(1.0, abs=0.1)
    assert cal.distance == pytest.approx(0.7, abs=0.1)
    fixed = cal.apply(reported, spread=spread)
    assert (fixed.argmax(1) == reported.argmax(1)).all()
    single = fit_temperature(reported, y)
    assert expected_calibration_error(fixed, y) < 0.03 < expected_calibration_error(
        single.apply(reported), y)
    # features instead of their spread: mean(x**2) per input, one input or a batch
    x = np.sqrt(spread)[:, None] * np.ones((1, 4))
    assert feature_spread(x) == pytest.approx(spread)
    np.testing.assert_allclose(cal.apply(reported[:3], x[:3]), fixed[:3])
    np.testing.assert_allclose(cal.apply(reported[0], x[0]), fixed[0])
    assert Calibration.from_json(cal.to_json()) == cal


def test_ece_and_threshold_by_hand():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.7, 0.3]])
    y = np.array([0, 1, 0, 0])
    # one per bin (15): 0.9, 0.8, 0.7 right, 0.6 wrong -> |1-.9|+|1-.8|+|1-.7|+|0-.6|
    assert expected_calibration_error(probs, y) == pytest.approx((0.1 + 0.2 + 0.3 + 0.6) / 4)
    conf, correct = probs.max(1), probs.argmax(1) == y
    assert threshold_for_precision(conf, correct, 1.0) == 0.7
    assert threshold_for_precision(conf, correct, 0.75) == 0.6    # 3 of 4 right
    assert threshold_for_precision(np.array([0.7]), np.array([False]), 0.8) == 1.0
    report = confidence_report(probs, y, threshold=0.8)
    assert report["uncertain"] == {"threshold": 0.8, "coverage": 0.5,
                                   "accuracy_when_sure": 1.0, "accuracy_when_uncertain": 0.5}
    assert report["coverage"][-1] == {"coverage": 1.0, "accuracy": 0.75, "threshold": 0.6}


def test_ece_weighted_by_speaker_and_per_corpus_by_hand():
    # speaker a: three answers at 0.9, all right (gap 0.1 each); speaker b: one at 0.6, wrong
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.6, 0.4]])
    y = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, y) == pytest.approx((3 * 0.1 + 0.6) / 4)
    report = confidence_report(probs, y, speakers=np.array(["a", "a", "a", "b"]),
                               corpora=np.array(["X", "X", "X", "Y"]))
    # each speaker weighs one half: 0.5 * 0.1 + 0.5 * 0.6
    assert report["ece_speaker_weighted"] == pytest.approx(0.35)
    assert report["ece_per_corpus"] == pytest.approx({"X": 0.1, "Y": 0.6})
    # one speaker, one corpus: nothing more to say than the pooled figure
    alone = confidence_report(probs, y, speakers=np.array(["a"] * 4),
                              corpora=np.array(["X"] * 4))
    assert "ece_speaker_weighted" not in alone and "ece_per_corpus" not in alone


def calibrated_copy(tmp_path, **fields):
    folder = tmp_path / "calibrated"
    shutil.copytree(tiny_bundle(), folder)
    meta = json.loads((folder / "model.json").read_text())
    meta.update(fields)
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


def test_recognizer_applies_the_bundle_calibration_and_threshold(tmp_path):
    clip = timbre_clip("fear", seed=42)
    raw = Recognizer.load(tiny_bundle()).predict(clip, sr=16000)
    folder = calibrated_copy(tmp_path, calibration={"method": "temperature", "temperature": 3.0},
                             uncertain={"threshold": 0.99, "target_precision": 0.8})
    rec = Recognizer.load(folder)
    p = rec.predict(clip, sr=16000)
    expected = Calibration(3.0).apply(np.array([raw.probabilities[k] for k in CANONICAL]))
    assert [p.probabilities[k] for k in CANONICAL] == pytest.approx(expected, abs=1e-6)
    assert p.label == raw.label and p.confidence < raw.confidence
    assert rec.uncertain_below == 0.99 and p.uncertain and p.to_dict()["uncertain"] is True
    assert not Recognizer.load(folder, uncertain_below=0.0).predict(clip, sr=16000).uncertain
    with pytest.raises(ValueError):
        Recognizer.load(folder, uncertain_below=1.5)


def test_recognizer_applies_the_distance_temperature_to_the_features_it_saw(tmp_path):
    from ser.audio import resample

    base = Recognizer.load(tiny_bundle())
    clip = resample(timbre_clip("fear", seed=42), 16000, base.sample_rate)
    raw = base.predict(clip)
    scorer = base._scorers[0][0]
    mean, std = scorer._norm
    x = (scorer.features(clip) - mean) / std
    folder = calibrated_copy(tmp_path, calibration={"method": "temperature", "temperature": 1.0,
                                                    "distance": 1.0})
    p = Recognizer.load(folder).predict(clip)
    expected = Calibration(1.0, 1.0).apply(np.array([raw.probabilities[k] for k in CANONICAL]),
                                           x)
    assert [p.probabilities[k] for k in CANONICAL] == pytest.approx(expected, abs=1e-6)
    assert p.label == raw.label  # the temperature of mean(x**2): softer only far out
    assert (p.confidence < raw.confidence) == (float(np.mean(x ** 2)) > 1.0)


@pytest.mark.parametrize("fields", [
    {"calibration": {"method": "temperature", "temperature": 1.0, "distance": -0.5}},
    {"calibration": {"method": "temperature", "temperature": 1.0, "distance": "far"}},
    {"calibration": {"method": "platt"}},
    {"calibration": {"method": "temperature", "temperature": -1}},
    {"calibration": {"method": "temperature", "temperature": "hot"}},
    {"uncertain": {"threshold": 2}},
    {"uncertain": []},
])
def test_bad_confidence_records_are_refused_on_load(tmp_path, fields):
    with pytest.raises(BundleError, match="calibration|uncertain"):
        load_bundle(calibrated_copy(tmp_path, **fields))


def test_cli_json_shows_the_same_calibrated_answer_as_the_api(tmp_path):
    import soundfile as sf
    from typer.testing import CliRunner

    from ser.cli import app

    folder = calibrated_copy(tmp_path, calibration={"method": "temperature", "temperature": 2.0},
                             uncertain={"threshold": 0.6, "target_precision": 0.8})
    clip = tmp_path / "clip.wav"
    sf.write(clip, timbre_clip("happy", seed=43), 16000)
    direct = Recognizer.load(folder).predict(clip)
    res = CliRunner().invoke(app, ["predict", str(clip), "--model", str(folder), "--json"])
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.stdout)
    assert row["probabilities"] == {k: round(v, 4) for k, v in direct.probabilities.items()}
    assert row["uncertain"] == direct.uncertain == (direct.confidence < 0.6)
    res = CliRunner().invoke(app, ["predict", str(clip), "--model", str(folder), "--json",
                                   "--uncertain-below", "0"])
    assert json.loads(res.stdout)[0]["uncertain"] is False
