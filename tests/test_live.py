"""The streaming core and `ser live`, driven by a file as the input stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _faces import SR, conversation, model_path

from ser import live
from ser.inference import Recognizer


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(model_path())


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> Path:
    return conversation(tmp_path_factory.mktemp("live") / "talk.wav")


def events_of(stream: live.EmotionStream, y: np.ndarray, sizes: list[int]) -> list:
    out, i, k = [], 0, 0
    while i < y.size:
        n = sizes[k % len(sizes)]
        out += stream.feed(y[i:i + n])
        i, k = i + n, k + 1
    return out + stream.close()


def test_stream_finds_utterances_and_updates(recognizer, talk):
    y, sr = sf.read(str(talk), dtype="float32")
    events = events_of(live.EmotionStream(recognizer, sr), y, [1600])
    updates = [e for e in events if isinstance(e, live.Update)]
    utts = [e for e in events if isinstance(e, live.Utterance)]
    assert len(updates) == int(y.size / sr / 0.25)  # one per hop
    assert [u.index for u in utts] == [1, 2]
    first, second = utts
    # conversation(): 0.5 s silence, speech, 1.5 s silence, speech, 1 s silence.
    assert 0.0 <= first.start < 0.7 and first.end < second.start
    assert second.end <= y.size / sr
    gap = second.start - first.end
    assert 0.8 < gap < 1.8
    for u in utts:
        assert u.audio.size == pytest.approx((u.end - u.start) * sr, abs=2)
        assert u.prediction.label in recognizer.labels
        # The utterance's prediction is the Recognizer's opinion of exactly its audio.
        assert u.prediction.probabilities == recognizer.predict(u.audio, sr=sr).probabilities
    speaking = [e for e in updates if e.speech]
    speech_seconds = sum(u.end - u.start for u in utts)
    with_label = [e for e in speaking if e.prediction is not None]
    assert len(with_label) >= 2 * (speech_seconds - 2 * 0.75)  # ≥ 2 updates/s while speaking
    assert not updates[0].speech and not updates[-1].speech


def test_chunk_size_does_not_change_results(recognizer, talk):
    y, sr = sf.read(str(talk), dtype="float32")
    a = events_of(live.EmotionStream(recognizer, sr), y, [y.size])
    b = events_of(live.EmotionStream(recognizer, sr), y, [37, 1024, 333, 4096, 160])
    assert [e.to_dict() for e in a] == [e.to_dict() for e in b]


def test_any_sample_rate(recognizer, talk):
    from ser.audio import resample

    y, sr = sf.read(str(talk), dtype="float32")
    y44 = resample(y, sr, 44100)
    utts = [e for e in events_of(live.EmotionStream(recognizer, 44100), y44, [4410])
            if isinstance(e, live.Utterance)]
    assert len(utts) == 2 and utts[0].sample_rate == 44100
    with pytest.raises(live.LiveError):
        live.EmotionStream(recognizer, 100)


def test_silence_gives_no_utterance(recognizer):
    y = np.zeros(3 * SR, np.float32)
    events = events_of(live.EmotionStream(recognizer, SR), y, [800])
    assert events and all(isinstance(e, live.Update) and not e.speech for e in events)


def at_peak(y: np.ndarray, dbfs: float) -> np.ndarray:
    return (y * (10 ** (dbfs / 20) / np.abs(y).max())).astype(np.float32)


def utterances(recognizer, y: np.ndarray, sr: int, gate=None) -> list:
    return [e for e in events_of(live.EmotionStream(recognizer, sr, gate=gate), y, [1600])
            if isinstance(e, live.Utterance)]


def test_quiet_speech_is_heard_as_at_a_normal_level(recognizer, talk):
    """The gate hears the stream at the Recognizer's level: a microphone 40-50 dB too quiet
    gives the utterances (and emotions) it gives at a normal level."""
    y, sr = sf.read(str(talk), dtype="float32")
    normal = [(u.start, u.end, u.prediction.label)
              for u in utterances(recognizer, at_peak(y, -3), sr)]
    assert len(normal) == 2
    for dbfs in (-40, -50):
        quiet = utterances(recognizer, at_peak(y, dbfs), sr)
        assert [(u.start, u.end, u.prediction.label) for u in quiet] == normal, dbfs


def test_low_noise_opens_no_utterance_and_speech_after_it_is_heard(recognizer, talk):
    """White and brown noise and mains hum open no utterance at any level (levelled, the VAD
    still hears them as noise), and a quiet voice after a quiet spell longer than the level's
    span is still heard."""
    rng = np.random.default_rng(3)
    t = np.arange(6 * SR) / SR
    hum = sum(np.sin(2 * np.pi * 50 * k * t) / k for k in range(1, 8))
    for name, y in {"white": rng.standard_normal(t.size),
                    "brown": np.cumsum(rng.standard_normal(t.size)), "hum": hum}.items():
        for dbfs in (-70, -50, -30):
            assert utterances(recognizer, at_peak(y, dbfs), SR) == [], (name, dbfs)
    speech, sr = sf.read(str(talk), dtype="float32")
    assert sr == SR
    floor = (10 ** (-75 / 20) * rng.standard_normal(int(live.LEVEL_SPAN + 2) * SR))
    y = np.concatenate([floor, at_peak(speech, -45) + floor[:speech.size]]).astype(np.float32)
    found = utterances(recognizer, y, SR)
    assert len(found) == 2 and found[0].start > floor.size / SR


def test_energy_gate_fallback(recognizer, talk):
    y, sr = sf.read(str(talk), dtype="float32")
    stream = live.EmotionStream(recognizer, sr, gate=live.EnergyGate(-35))
    utts = [e for e in events_of(stream, y, [1600]) if isinstance(e, live.Utterance)]
    assert len(utts) >= 2


def ser(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ser", *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_cli_live_file_input_saves_utterances_and_log(talk, tmp_path):
    out = tmp_path / "session"
    r = ser("live", "--input", str(talk), "--save", str(out), "--model", str(model_path()))
    assert r.returncode == 0, r.stderr
    assert "utterance   1" in r.stdout and "utterance   2" in r.stdout
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == [1, 2]
    labels = Recognizer.load(model_path()).labels
    for row in rows:
        assert row["label"] in labels and set(row["probabilities"]) == set(labels)
        info = sf.info(str(out / row["file"]))
        assert info.duration == pytest.approx(row["end"] - row["start"], abs=0.01)
    assert "2 utterance(s)" in r.stdout


def test_cli_live_ctrl_c_flushes_open_utterance(talk, tmp_path):
    out = tmp_path / "session"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser", "live", "--input", str(talk), "--realtime",
         "--save", str(out), "--model", str(model_path())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # A shell's background job (`pytest &`) ignores SIGINT, and children inherit that:
        # give ser the default Ctrl-C whatever the test runner's own state.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert "ser live" in proc.stdout.readline()  # the model is loaded, the stream starts
    time.sleep(2.0)  # inside the first utterance (0.5 s – ~3 s)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "stopped" in stderr
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["end"] < 3.0  # cut where we stopped, and saved
    assert (out / rows[0]["file"]).exists()


def test_cli_live_without_microphone_is_a_clear_error():
    """No usable input device here (CI, containers): one line, exit 2, no traceback.
    On a machine with a microphone this test only checks the device list works."""
    r = ser("live", "--list-devices")
    assert "Traceback" not in r.stderr
    if r.returncode == 0:
        pytest.skip("this machine has an input device")
    assert r.returncode == 2 and "error:" in r.stderr
    r = ser("live", "--model", str(model_path()))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "error:" in r.stderr
