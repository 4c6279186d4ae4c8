"""Degradations (ser.augment), the robustness benchmark in `ser evaluate`, level invariance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from _tiny_bundle import needs_espeak, recording, timbre_clip, tiny_bundle
from typer.testing import CliRunner

from ser.audio import normalize_level, speech_level
from ser.augment import (
    DEGRADE_VERSION,
    STANDARD,
    AugmentError,
    Sources,
    babble,
    clipping,
    get_augmentation,
    get_condition,
    lossy_codec,
    microphone,
    mix_at_snr,
    noise_files,
    other_talker,
    parse_conditions,
    recorded_noise,
    rng_for,
    room,
    set_gain,
    telephone,
    white_noise,
)
from ser.inference import packaged_bundles
from ser.labels import CANONICAL

SR = 16000
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def voice(seconds=1.0, f0=180.0, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(k ** -1.0 * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 15) if k * f0 < 7000)
    return (0.3 * y / np.abs(y).max() + 0.001 * rng.standard_normal(t.size)).astype(np.float32)


def snr_db(clean, mixed):
    return 10 * np.log10(np.mean(clean.astype(float) ** 2)
                         / np.mean((mixed.astype(float) - clean) ** 2))


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    for i in range(9):  # short files are looped; different spectra
        n = rng.standard_normal(int(0.4 * SR)).cumsum() if i % 2 else rng.standard_normal(SR)
        sf.write(root / f"scene_{i}.flac", (0.1 * n / np.abs(n).max()).astype(np.float32), SR)
    return root


def test_white_and_recorded_noise_hit_the_snr_and_repeat_with_the_seed(noise_dir):
    y = voice()
    files = noise_files(noise_dir)
    for snr in (20.0, 5.0, 0.0):
        z = white_noise(y, SR, np.random.default_rng(1), snr_db=snr)
        assert snr_db(y, z) == pytest.approx(snr, abs=0.01)
        r = recorded_noise(y, SR, np.random.default_rng(1), snr_db=snr, files=files)
        assert snr_db(y, r) == pytest.approx(snr, abs=0.01) and r.size == y.size
        np.testing.assert_array_equal(
            r, recorded_noise(y, SR, np.random.default_rng(1), snr_db=snr, files=files))
    a = recorded_noise(y, SR, np.random.default_rng(1), snr_db=5, files=files)
    assert not np.array_equal(a, recorded_noise(y, SR, np.random.default_rng(2), snr_db=5,
                                                files=files))


def test_noise_folder_splits_into_disjoint_training_and_evaluation_parts(noise_dir):
    every = set(noise_files(noise_dir))
    test, train = set(noise_files(noise_dir, "test")), set(noise_files(noise_dir, "train"))
    assert test and train and not test & train and test | train == every
    assert noise_files(noise_dir, "test") == noise_files(noise_dir, "test")
    with pytest.raises(AugmentError, match="not a folder"):
        noise_files(noise_dir / "missing")


def test_babble_mixes_different_speakers_at_the_snr(tmp_path):
    files, speakers = [], []
    for s in range(5):
        for k in range(2):
            path = tmp_path / f"spk{s}_{k}.wav"
            sf.write(path, voice(0.7, f0=100 + 40 * s + 7 * k, seed=s), SR)
            files.append(path)
            speakers.append(f"spk{s}")
    y = voice(1.5)
    z = babble(y, SR, np.random.default_rng(3), snr_db=10.0, files=files, speakers=speakers)
    assert snr_db(y, z) == pytest.approx(10.0, abs=0.01)
    with pytest.raises(AugmentError, match="at least 4"):
        babble(y, SR, np.random.default_rng(3), snr_db=10.0, files=files[:3])


def test_room_reverberates_longer_for_a_longer_rt60():
    pytest.importorskip("pyroomacoustics")
    sr = 8000
    click = np.zeros(sr, np.float32)
    click[100] = 1.0

    def tail(rt60):  # energy 100-500 ms after the click, relative to the direct sound
        z = room(click, sr, np.random.default_rng(0), rt60_s=rt60)
        return float(np.sum(z[100 + sr // 10:100 + sr // 2] ** 2)), z

    short, z = tail(0.2)
    long, _ = tail(0.6)
    assert z.size == click.size and z[100] == pytest.approx(1.0)  # direct sound kept in place
    assert long > 3 * short > 0
    np.testing.assert_array_equal(z, tail(0.2)[1])


@needs_ffmpeg
def test_telephone_passes_300_to_3400_hz_only():
    t = np.arange(SR) / SR

    def kept(freq):
        y = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        z = telephone(y, SR, np.random.default_rng(0))
        assert z.size == y.size
        return np.sqrt(np.mean(z[2000:-2000] ** 2) / np.mean(y[2000:-2000] ** 2))

    assert kept(1000) > 0.8
    assert kept(100) < 0.5 and kept(6000) < 0.05


@needs_ffmpeg
@pytest.mark.parametrize("codec, kbps", [("mp3", 32), ("opus", 16)])
def test_lossy_codecs_change_the_signal_but_keep_it(codec, kbps):
    y = voice(1.0)
    z = lossy_codec(y, SR, np.random.default_rng(0), codec=codec, bitrate_kbps=kbps)
    assert z.size == y.size and not np.array_equal(z, y)
    # codecs delay the signal a little: compare the best-aligned lag
    best = max(np.corrcoef(y[2000:-2000], np.roll(z, -lag)[2000:-2000])[0, 1]
               for lag in range(0, 1200, 8))
    assert best > 0.8


def test_gain_and_clipping():
    y = voice()
    np.testing.assert_allclose(set_gain(y, SR, None, gain_db=-30.0), y * 10 ** -1.5, rtol=1e-6)
    z = clipping(y, SR, None, overdrive_db=12.0)
    assert np.abs(z).max() == pytest.approx(1.0) and np.mean(np.abs(z) >= 1.0) > 0.05


def test_conditions_parse_with_units_and_say_what_is_missing(noise_dir, tmp_path):
    c = get_condition("room:0.8")
    assert (c.family, c.value, c.name) == ("room", 0.8, "room:0.8")
    names = [c.name for c in parse_conditions("standard")]
    assert names[0] == "clean" and "white:10" in names and "telephone" in names
    assert not any(n.startswith(("babble", "noise")) for n in names)
    full = parse_conditions("standard", Sources(noise=noise_files(noise_dir),
                                                speech=(tmp_path / "a.wav",)))
    assert [c.name for c in full] == [get_condition(n, Sources((tmp_path,), (tmp_path,))).name
                                      for n in STANDARD]
    for bad, message in [("rain:5", "unknown condition"), ("white", "needs a number"),
                         ("telephone:3", "takes no value"), ("noise:5", "--noise"),
                         ("babble:5", "--babble"), ("room:9", "0.1..3"), ("mp3:1", "6..320")]:
        with pytest.raises(AugmentError, match=message):
            parse_conditions(bad)


@pytest.mark.skipif(shutil.which("ffmpeg") is None,
                    reason="ffmpeg not installed: 'degrade' draws telephone and codec conditions")
def test_degrade_augmentation_is_seeded_per_clip_and_recorded(noise_dir):
    aug = get_augmentation("degrade", seed=2, noise_dir=noise_dir)
    assert aug.to_json() == {"augment": "degrade", "seed": 2, "noise_dir": str(noise_dir),
                             "degrade_version": DEGRADE_VERSION}
    y = voice()
    outs = [aug.apply(y, SR, aug.rng_for(f"clip{i}")) for i in range(6)]
    assert all(o.shape == y.shape and o.dtype == np.float32 for o in outs)
    assert not all(np.array_equal(o, y) for o in outs)
    np.testing.assert_array_equal(outs[3], aug.apply(y, SR, aug.rng_for("clip3")))


def test_degrade_babbles_with_four_voices_of_the_babble_folder(tmp_path, monkeypatch):
    for who in range(5):  # loose files: one speaker per sub-folder
        (tmp_path / f"spk{who}").mkdir()
        sf.write(tmp_path / f"spk{who}" / "a.wav", voice(0.7, f0=100.0 + 30 * who, seed=who), SR)
    aug = get_augmentation("degrade", noise_dir=None, babble_dir=tmp_path)
    assert aug.to_json()["babble_dir"] == str(tmp_path.resolve())
    mixed = []
    monkeypatch.setattr("ser.augment.babble",
                        lambda y, sr, rng, **kw: mixed.append(kw) or babble(y, sr, rng, **kw))
    y = voice(1.0)
    for i in range(40):  # one draw in 7 is babble (rooms count twice)
        aug.apply(y, SR, aug.rng_for(f"clip{i}"))
    assert mixed and all(kw["voices"] == 4 and 0 <= kw["snr_db"] <= 25 and kw["new_talkers"]
                         for kw in mixed)
    assert {s.rsplit("/", 1)[-1] for s in mixed[0]["speakers"]} == {f"spk{w}" for w in range(5)}


def test_the_babble_augmentation_babbles_every_clip_and_needs_its_folder(tmp_path, monkeypatch):
    with pytest.raises(AugmentError, match="--babble DIR"):
        get_augmentation("babble", babble_dir=None)
    for who in range(5):
        (tmp_path / f"spk{who}").mkdir()
        sf.write(tmp_path / f"spk{who}" / "a.wav", voice(0.7, f0=100.0 + 30 * who, seed=who), SR)
    aug = get_augmentation("babble", seed=1, babble_dir=tmp_path)
    assert aug.to_json() == {"augment": "babble", "seed": 1, "babble_dir": str(tmp_path.resolve()),
                             "degrade_version": DEGRADE_VERSION}
    mixed = []
    monkeypatch.setattr("ser.augment.babble",
                        lambda y, sr, rng, **kw: mixed.append(kw) or babble(y, sr, rng, **kw))
    y = voice(1.0)
    outs = [aug.apply(y, SR, aug.rng_for(f"clip{i}")) for i in range(6)]
    assert len(mixed) == 6 and all(kw["voices"] == 4 and 0 <= kw["snr_db"] <= 25
                                   and kw["new_talkers"] for kw in mixed)
    assert all(o.shape == y.shape and not np.array_equal(o, y) for o in outs)
    np.testing.assert_array_equal(outs[2], aug.apply(y, SR, aug.rng_for("clip2")))


def test_other_talker_is_the_voice_faster_or_slower():
    y = voice(1.0, f0=150.0)
    lengths = [other_talker(y, SR, np.random.default_rng(seed)).size for seed in range(20)]
    assert all(0.79 * y.size <= n <= 1.26 * y.size for n in lengths)
    assert min(lengths) < 0.95 * y.size and max(lengths) > 1.05 * y.size


@needs_ffmpeg
def test_microphone_colours_the_spectrum_and_keeps_the_clip():
    t = np.arange(SR) / SR

    def kept(freq, seed):
        y = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
        z = microphone(y, SR, np.random.default_rng(seed))
        assert z.size == y.size and z.dtype == np.float32
        return np.sqrt(np.mean(z[2000:-2000] ** 2) / np.mean(y[2000:-2000] ** 2))

    assert all(kept(30, seed) < 0.6 for seed in range(3))  # below every high-pass (50+ Hz)
    gains = [kept(1000, seed) for seed in range(8)]  # in the pass band: coloured, not cut
    assert 0.2 < min(gains) and max(gains) < 5 and max(gains) / min(gains) > 1.3
    y = voice(1.0)
    np.testing.assert_array_equal(microphone(y, SR, np.random.default_rng(4)),
                                  microphone(y, SR, np.random.default_rng(4)))


def test_mix_leaves_the_clip_alone_when_the_noise_is_silent():
    y = voice()
    np.testing.assert_array_equal(mix_at_snr(y, np.zeros_like(y), 0.0), y)


# ---------------------------------------------------------------- level invariance


def test_speech_level_follows_the_voice_not_the_silence():
    y = voice(1.0)
    padded = np.concatenate([np.zeros(2 * SR, np.float32), y, np.zeros(SR, np.float32)])
    assert speech_level(padded, SR) == pytest.approx(speech_level(y, SR), rel=0.05)
    z = normalize_level(y * 1e-2, SR, -20.0)
    assert 20 * np.log10(speech_level(z, SR)) == pytest.approx(-20.0, abs=1e-3)


@pytest.mark.parametrize("name", ["functionals", "logmel"])
def test_features_do_not_change_with_the_recording_level(name):
    from ser.features import feature_set_from_json, get_feature_set

    fs = get_feature_set(name)
    y = voice(1.5)
    y = y / np.abs(y).max()
    ref = fs.features(y)
    for peak_db in (-40.0, -20.0, -6.0):
        np.testing.assert_allclose(fs.features(y * 10 ** (peak_db / 20)), ref, rtol=1e-4,
                                   atol=1e-3)
    # a set recorded before level normalisation (no level_dbfs) keeps using levels as they are
    old = fs.to_json()
    del old["config"]["level_dbfs"]
    legacy = feature_set_from_json(old)
    assert "level_dbfs" not in legacy.config
    assert not np.allclose(legacy.features(y * 0.01), legacy.features(y), atol=1e-2)


# ---------------------------------------------------------------- the benchmark


@pytest.fixture(scope="module")
def timbre_tree(tmp_path_factory):
    """ROOT/<label>/<speaker>/take.wav with the tiny bundle's six timbres."""
    root = tmp_path_factory.mktemp("timbres") / "toy"
    for i, label in enumerate(CANONICAL):
        for s in range(2):
            folder = root / label / f"spk{s}"
            folder.mkdir(parents=True)
            sf.write(folder / "0.wav", timbre_clip(label, seconds=1.5, seed=1000 + 10 * i + s),
                     SR)
    return root


def test_ser_evaluate_scores_each_condition_and_writes_the_robustness_table(
        timbre_tree, noise_dir, tmp_path):
    import pandas as pd

    from ser.cli import app
    from ser.inference import Recognizer

    speech = tmp_path / "others"
    for s in range(4):
        (speech / f"other{s}").mkdir(parents=True)
        sf.write(speech / f"other{s}" / "a.wav", voice(1.0, f0=120 + 50 * s, seed=s), SR)
    out = tmp_path / "eval"
    res = CliRunner().invoke(app, [
        "evaluate", str(tiny_bundle()), str(timbre_tree), "--out", str(out), "--jobs", "2",
        "--conditions", "white:20,white:-10,noise:0,babble:10,gain:-30",
        "--noise", str(noise_dir), "--babble", str(speech)])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "metrics.json").read_text())
    table = record["robustness"]["table"]
    assert [r["condition"] for r in table] == ["clean", "white:20", "white:-10", "noise:0",
                                               "babble:10", "gain:-30"]
    clean = table[0]["uar"]
    assert clean == record["metrics"]["uar"]
    # The speech rule (#12) gives no emotion to a clip drowned 10 dB under white noise: such
    # rows are failures of that condition, every other condition scores all 12 clips.
    for r in table:
        assert r["n"] == 12 or (r["condition"] == "white:-10" and 0 < r["n"] < 12), r
        assert r["n"] + r["no_answer"] == 12, r
        assert r["drop"] == pytest.approx(clean - r["uar"])
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 12 * 5 + table[2]["n"]
    # clean rows are what the Recognizer says for the file; degraded rows were degraded
    rec = Recognizer.load(tiny_bundle())
    clean_rows = preds[preds["condition"] == "clean"]
    for row in clean_rows.head(3).itertuples():
        assert rec.predict(row.path).probabilities["angry"] == pytest.approx(row.p_angry,
                                                                            abs=1e-4)
    loud = preds[preds["condition"] == "white:-10"].merge(clean_rows, on="path")
    assert not np.allclose(loud["p_angry_x"], loud["p_angry_y"], atol=1e-3)
    assert (out / "robustness.png").exists()
    report = (out / "report.md").read_text()
    assert "## Robustness" in report and "| white:-10 |" in report
    # the same seed gives the same table
    again = tmp_path / "again"
    CliRunner().invoke(app, [
        "evaluate", str(tiny_bundle()), str(timbre_tree), "--out", str(again), "--jobs", "1",
        "--conditions", "white:-10"])
    first = preds[preds["condition"] == "white:-10"].reset_index(drop=True)
    second = pd.read_csv(again / "predictions.csv")
    second = second[second["condition"] == "white:-10"].reset_index(drop=True)
    pd.testing.assert_series_equal(first["p_angry"], second["p_angry"])


def test_babble_from_test_speakers_is_refused(timbre_tree, tmp_path):
    from ser.cli import app

    res = CliRunner().invoke(app, [
        "evaluate", str(tiny_bundle()), str(timbre_tree), "--out", str(tmp_path / "e"),
        "--conditions", "babble:5", "--babble", str(timbre_tree / "angry")])
    assert res.exit_code != 0 and "not in the test set" in str(res.exception)


def test_per_speaker_keeps_every_speaker_and_label(timbre_tree, tmp_path):
    from ser.evaluation import evaluate_bundle

    result = evaluate_bundle(tiny_bundle(), [timbre_tree], tmp_path / "e", per_speaker=3)
    assert result["metrics"]["n"] == 6
    assert "subset" in result["protocol"]


def test_random_generators_depend_on_every_item():
    a = rng_for(0, "white:5", "spk", "a.wav").uniform()
    assert a == rng_for(0, "white:5", "spk", "a.wav").uniform()
    assert a != rng_for(1, "white:5", "spk", "a.wav").uniform()
    assert a != rng_for(0, "white:10", "spk", "a.wav").uniform()


@pytest.mark.skipif(not needs_espeak, reason="espeak-ng not installed")
def test_speech_segments_do_not_depend_on_the_recording_level():
    from ser.inference import Recognizer

    y, truth = recording(["Hello there, how are you today", "I am fine thank you"],
                         [1.0, 1.5, 1.0])
    y = y / np.abs(y).max()
    rec = Recognizer.load(tiny_bundle())
    spans = [(s.start, s.end) for s in rec.predict_segments(y, sr=SR)]
    assert len(spans) == 2
    for peak_db in (-20.0, -40.0):
        quiet = [(s.start, s.end) for s in rec.predict_segments(y * 10 ** (peak_db / 20), sr=SR)]
        np.testing.assert_allclose(quiet, spans, atol=0.05)


@pytest.mark.parametrize("name", packaged_bundles())
def test_every_shipped_model_answers_the_same_from_minus_40_to_0_dbfs(name):
    from importlib import resources

    from ser.audio import load_audio
    from ser.inference import Recognizer

    rec = Recognizer.load(name)
    clips = sorted(p for p in (resources.files("ser") / "examples").iterdir()
                   if p.name.endswith((".wav", ".flac")))[:2]
    assert clips
    for clip in clips:
        y = load_audio(clip, sr=rec.sample_rate)
        y = y / np.abs(y).max()
        ref = rec.predict(y, sr=rec.sample_rate)
        for peak_db in (-40.0, -30.0, -20.0, -10.0):
            p = rec.predict(y * np.float32(10 ** (peak_db / 20)), sr=rec.sample_rate)
            assert p.label == ref.label, (clip, peak_db)
            for lab in rec.labels:
                assert p.probabilities[lab] == pytest.approx(ref.probabilities[lab], abs=0.01)
