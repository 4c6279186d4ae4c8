"""ser.inference: a real (tiny) bundle predicts files, arrays, batches and segments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _tiny_bundle import espeak, needs_espeak, recording, timbre_clip, tiny_bundle

from ser.audio import AudioError
from ser.bundle import BundleError
from ser.inference import NoSpeechError, Recognizer, _smooth, split_span
from ser.labels import CANONICAL


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    return Recognizer.load(tiny_bundle())


def test_predicts_each_class_of_unseen_clips(rec):
    for i, label in enumerate(CANONICAL):
        p = rec.predict(timbre_clip(label, seed=7000 + i), sr=16000)
        assert p.label == label
        assert p.confidence == max(p.probabilities.values())
        assert list(p.probabilities) == list(CANONICAL)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert set(p.timings) == {"decode", "vad", "features", "model"}


def test_file_and_array_agree_at_any_rate(rec, tmp_path):
    y = timbre_clip("fear", sr=44100, seed=5)
    sf.write(tmp_path / "clip.wav", y, 44100, subtype="FLOAT")  # lossless: same samples
    from_file = rec.predict(tmp_path / "clip.wav")
    from_array = rec.predict(y, sr=44100)
    stereo = rec.predict(np.stack([y, y], axis=1), sr=44100)
    assert from_file.label == from_array.label == stereo.label == "fear"
    for lab in CANONICAL:
        assert from_file.probabilities[lab] == pytest.approx(from_array.probabilities[lab],
                                                             abs=1e-5)
        assert stereo.probabilities[lab] == pytest.approx(from_array.probabilities[lab],
                                                          abs=1e-4)


def test_integer_and_channels_first_arrays_match_float(rec):
    # int16 PCM straight from a WAV reader or a microphone, and librosa's (channels, n)
    # layout, must give what the float mono array gives, not "angry 100 %" or "silent".
    y = timbre_clip("sad", sr=16000, seed=11)
    ref = rec.predict(y, sr=16000)
    pcm16 = np.round(y * 32767).astype(np.int16)
    variants = {
        "int16": pcm16,
        "int32": pcm16.astype(np.int32) << 16,
        "channels-first": np.stack([y, y]),
        "int16 channels-first": np.stack([pcm16, pcm16]),
    }
    for name, arr in variants.items():
        p = rec.predict(arr, sr=16000)
        assert p.label == ref.label == "sad", name
        for lab in CANONICAL:
            assert p.probabilities[lab] == pytest.approx(ref.probabilities[lab], abs=0.02), name
    # 8-bit PCM is coarse (its quantisation noise moves the figures) but still centred.
    assert rec.predict((np.round(y * 127) + 128).astype(np.uint8), sr=16000).label == "sad"


def test_sr_with_a_file_is_refused(rec, tmp_path):
    sf.write(tmp_path / "clip.wav", timbre_clip("sad", seed=3), 16000)
    with pytest.raises(ValueError, match="only for numpy arrays"):
        rec.predict(tmp_path / "clip.wav", sr=44100)


def test_normalisation_from_the_bundle_is_applied(tmp_path):
    # Breaking the stored statistics must change the output: inference really uses them.
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(tiny_bundle(), folder)
    meta = json.loads((folder / "model.json").read_text())
    meta["normalization"]["mean"] = [m + 10 * s for m, s in
                                     zip(meta["normalization"]["mean"],
                                         meta["normalization"]["std"], strict=True)]
    (folder / "model.json").write_text(json.dumps(meta))
    clip = timbre_clip("happy", seed=3)
    good = Recognizer.load(tiny_bundle()).predict(clip, sr=16000)
    bad = Recognizer.load(folder).predict(clip, sr=16000)
    assert good.probabilities != pytest.approx(bad.probabilities, abs=1e-3)


def test_predict_many_keeps_order_and_reports_bad_files(rec, tmp_path):
    paths = []
    for i, label in enumerate(CANONICAL):
        paths.append(tmp_path / f"{label}.wav")
        sf.write(paths[-1], timbre_clip(label, seed=300 + i), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav")
    paths.insert(2, tmp_path / "broken.wav")
    paths.append(tmp_path / "missing.wav")
    results = list(rec.predict_many(paths, jobs=2))
    assert len(results) == len(paths)
    assert isinstance(results[2], AudioError) and "broken.wav" in str(results[2])
    assert isinstance(results[-1], AudioError) and "no such file" in str(results[-1])
    labels = [r.label for r in results if not isinstance(r, Exception)]
    assert labels == list(CANONICAL)
    assert [r.label for r in rec.predict_many(paths[:2], jobs=1)] == list(CANONICAL[:2])


def test_clear_errors(rec, tmp_path):
    with pytest.raises(BundleError, match="not a ser bundle"):
        Recognizer.load(tmp_path)
    with pytest.raises(AudioError, match="silent"):
        rec.predict(np.zeros(48000, np.float32), sr=16000)
    with pytest.raises(AudioError, match="too short"):
        rec.predict(timbre_clip("sad", seconds=0.3), sr=16000)  # seed178 starts at 0.6 s


def test_models_by_name_or_folder(tmp_path, monkeypatch):
    from ser.inference import packaged_bundle_path, packaged_bundles, resolve_bundle

    assert "default" in packaged_bundles()
    assert resolve_bundle(None) == resolve_bundle("default") == packaged_bundle_path("default")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").mkdir()  # a folder of that name wins over the shipped model
    assert resolve_bundle("default") == Path("default")
    with pytest.raises(BundleError, match="not a model shipped with ser.*default"):
        resolve_bundle("no-such-model")


def test_default_bundle_message_when_none_is_shipped():
    from ser.inference import packaged_bundle_path

    try:
        path = packaged_bundle_path()
    except BundleError as exc:
        assert "--model" in str(exc)
    else:
        assert (path / "model.json").exists()


def test_split_and_smooth():
    assert split_span(1.0, 5.0) == [(1.0, 5.0)]
    assert split_span(0.0, 16.0) == [(0.0, 8.0), (8.0, 16.0)]
    pieces = split_span(2.0, 30.5)
    assert len(pieces) == 4 and pieces[0][0] == 2.0 and pieces[-1][1] == 30.5
    assert all(e - s <= 8.0 for s, e in pieces)
    p = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    assert np.allclose(_smooth(p, 3), [[0.5, 0.5], [2 / 3, 1 / 3], [2 / 3, 1 / 3], [1.0, 0.0]])
    assert _smooth(p, 1) is p


@pytest.mark.skipif(not needs_espeak, reason="espeak-ng is not installed")
def test_segments_of_a_long_recording(rec):
    y, truth = recording(["I never said she stole my money",
                          "the weather is lovely this morning",
                          "please close the door behind you"], [1.0, 2.0, 1.5, 1.2])
    segs = rec.predict_segments(y, sr=16000)
    assert len(segs) == len(truth)
    for seg, (start, end) in zip(segs, truth, strict=True):
        assert abs(seg.start - start) < 0.3 and abs(seg.end - end) < 0.3
        assert seg.label in CANONICAL and seg.confidence == max(seg.probabilities.values())
    p = rec.predict(y, sr=16000, segments=None)  # > 8 s: segmented automatically
    assert p.segments is not None and len(p.segments) == len(truth)
    assert set(p.timings) == {"decode", "vad", "features", "model"}
    smoothed = rec.predict(y, sr=16000, segments=True, smooth=3)
    assert [(s.start, s.end) for s in smoothed.segments] == [(s.start, s.end) for s in segs]
    short = rec.predict(espeak("hello there my friend"), sr=16000, segments=None)
    assert short.segments is None


def test_silence_says_no_speech(rec):
    rng = np.random.default_rng(1)
    hum = 0.002 * rng.standard_normal(16000 * 10).astype(np.float32)
    assert rec.predict_segments(hum, sr=16000) == []
    with pytest.raises(NoSpeechError, match="no speech found"):
        rec.predict(hum, sr=16000, segments=None)


def test_runs_without_torch(tmp_path):
    # The base install has no torch: block it and check a prediction still works.
    y = timbre_clip("angry", seed=11)
    sf.write(tmp_path / "a.wav", y, 16000)
    code = textwrap.dedent(f"""
        import sys

        class NoTorch:  # any `import torch` (or torch.*) now raises ImportError
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("torch is blocked in this test")

        sys.meta_path.insert(0, NoTorch())
        from ser.inference import Recognizer
        p = Recognizer.load({str(tiny_bundle())!r}).predict({str(tmp_path / "a.wav")!r})
        print(p.label, "torch" in sys.modules)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["angry", "False"]


@pytest.mark.parametrize("ext", [".wav", ".flac", ".webm"])
def test_a_long_file_is_decoded_in_blocks_and_answers_as_its_array(rec, tmp_path, monkeypatch,
                                                                   ext):
    import shutil

    from _faces import voiced

    import ser.audio
    import ser.inference

    if ext == ".webm" and not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    sr = 44100  # neither the model's rate (22050) nor the VAD's (16000): both resample
    gap = np.zeros(int(1.2 * sr), np.float32)
    y = np.concatenate([gap, voiced(3.0, sr=sr), gap, voiced(2.5, 180, sr=sr, seed=1), gap,
                        voiced(4.0, 120, sr=sr, seed=2), gap[: sr // 2]])
    path = tmp_path / f"long{ext}"
    if ext == ".webm":
        sf.write(tmp_path / "src.wav", y, sr)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "src.wav"),
                        "-c:a", "libopus", str(path)], check=True)
    else:
        sf.write(path, y, sr)
    array = ser.audio.load_audio(path, sr=rec.sample_rate)
    from_array = rec.predict(array, sr=rec.sample_rate)
    # Blocks of 0.77 s (not a multiple of any frame), and no whole-file decode allowed.
    monkeypatch.setattr(ser.audio, "BLOCK_SECONDS", 0.77)
    monkeypatch.setattr(ser.inference, "load_audio", None)
    from_file = rec.predict(path)
    assert from_array.segments
    assert from_file.segments == from_array.segments  # same spans, labels, probabilities
    assert from_file.probabilities == pytest.approx(from_array.probabilities, abs=1e-6)
    assert set(from_file.timings) == {"decode", "vad", "features", "model"}
    assert rec.predict_segments(path) == from_array.segments


def test_a_whole_clip_prediction_has_a_length_limit(rec, tmp_path):
    from ser.audio import AudioTooLongError
    from ser.inference import WHOLE_CLIP_MAX

    y = np.zeros(int((WHOLE_CLIP_MAX + 1) * 100), np.float32)
    y[::50] = 0.1
    with pytest.raises(AudioTooLongError, match="too long"):
        rec.predict(y, sr=100, segments=False)


@pytest.mark.parametrize("model", ["default", "fast"])
def test_the_level_is_measured_once_for_the_speech_rule_and_the_features(model, monkeypatch):
    """The shipped models bring clips to one level for the speech rule and for the features;
    the level measured for the rule is reused, and the answer is bit for bit that of features
    measuring it themselves (as training does)."""
    import ser.audio
    from ser.audio import load_audio, speech_level

    rec = Recognizer.load(model)
    calls = []
    frame_powers = ser.audio._frame_powers
    monkeypatch.setattr(ser.audio, "_frame_powers",
                        lambda y, sr: calls.append(y.size) or frame_powers(y, sr))
    examples = Path(ser.audio.__file__).parent / "examples"
    for clip in sorted(examples.glob("*.flac")):
        calls.clear()
        p = rec.predict(clip)
        assert len(calls) == 1  # one level measurement per prediction
        y = load_audio(clip, sr=rec.sample_rate)
        again = rec._probabilities(y, {})  # no level given: the features measure it
        assert list(p.probabilities.values()) == again.tolist()
        fs = rec._scorers[0][0].feature_set
        assert np.array_equal(fs.features(y, level=speech_level(y, fs.sample_rate)),
                              fs.features(y))
