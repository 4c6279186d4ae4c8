"""The speech rule (issue #12): input without enough speech gets no emotion, from every
shipped model and through every face; real speech is never turned away."""

from __future__ import annotations

import pytest
from _tiny_bundle import espeak, needs_espeak, tiny_bundle
from nonspeech import corpus

from ser.audio import AudioError
from ser.inference import NoSpeechError, Recognizer, packaged_bundles
from ser.vad import FRAME_SECONDS, SpeechRule

NON_SPEECH = corpus()


def shipped() -> list[Recognizer]:
    """Every model shipped with ser that can run here (whisper needs its extra)."""
    from ser.errors import SerError

    out = []
    for name in packaged_bundles():
        try:
            out.append(Recognizer.load(name))
        except SerError:  # e.g. the whisper weights are not installed
            continue
    return out or [Recognizer.load(tiny_bundle())]


@pytest.fixture(scope="module")
def recognizers() -> list[Recognizer]:
    return shipped()


def test_the_corpus_is_varied_enough():
    assert len(NON_SPEECH) >= 30
    kinds = {name.split("-")[0] for name in NON_SPEECH}
    assert {"tone", "chord", "sweep", "noise", "clicks", "hum", "music", "silence",
            "fragment"} <= kinds


def test_rule_counts_frames_above_the_threshold():
    import numpy as np

    rule = SpeechRule()  # 0.2 s of frames >= 0.2
    probs = np.array([0.1] * 10 + [0.9] * 6 + [0.19] * 5)
    assert rule.speech_seconds(probs) == pytest.approx(6 * FRAME_SECONDS)
    assert not rule.accepts(probs)                       # 0.192 s < 0.2 s
    assert rule.accepts(np.concatenate([probs, [0.2]]))  # 0.224 s


@pytest.mark.parametrize("name", sorted(NON_SPEECH))
def test_no_confident_emotion_for_non_speech(recognizers, name):
    y, sr = NON_SPEECH[name]
    for rec in recognizers:
        try:
            p = rec.predict(y, sr=sr, segments=None)
        except NoSpeechError:
            continue
        except AudioError as exc:  # silence, a fragment too short to decode: also no emotion
            assert "silent" in exc.reason or "short" in exc.reason, exc.reason
            continue
        assert p.confidence < 0.5, (rec.name, name, p.label, p.confidence)


@pytest.mark.skipif(not needs_espeak, reason="espeak-ng is not installed")
def test_real_speech_of_a_second_or_more_is_never_rejected(recognizers):
    sentences = ["hello there, how are you", "I cannot believe you did that again",
                 "we will meet at the station tomorrow", "kids are talking by the door",
                 "dogs are sitting by the door", "yes, I am sure", "what a wonderful day",
                 "please leave me alone"]
    rec = recognizers[0]
    for text in sentences:
        y = espeak(text)
        assert y.size >= 16000 * 0.9, text
        for gain in (1.0, 0.1):
            p = rec.predict(y * gain, sr=16000)
            assert p.label in rec.labels


def test_a_tenth_of_a_second_of_voice_gets_no_emotion(recognizers):
    y, sr = NON_SPEECH["fragment-0.1s-speech"]
    with pytest.raises(AudioError):
        recognizers[0].predict(y, sr=sr)


def test_the_python_api_can_turn_the_rule_off():
    y, sr = NON_SPEECH["tone-440hz"]
    rec = Recognizer(Recognizer.load(tiny_bundle()).bundle, speech_rule=SpeechRule(min_speech=0))
    p = rec.predict(y, sr=sr)
    assert p.label in rec.labels and "vad" not in p.timings


def test_the_probe_answers_as_the_whole_clip_does_and_skips_leading_silence(monkeypatch):
    import numpy as np
    from _faces import voiced

    import ser.vad
    from ser.audio import normalize_level
    from ser.vad import SileroVAD

    vad, rule, sr = SileroVAD(), SpeechRule(), 16000
    rng = np.random.default_rng(3)
    voice = voiced(1.5, sr=sr).astype(np.float32)
    hiss = (1e-4 * rng.standard_normal(2 * sr)).astype(np.float32)
    # white noise twice the voice's RMS: the loudest frames, but not so loud that the
    # level normalisation hides the voice
    burst = (2 * np.sqrt(np.mean(voice ** 2)) * rng.standard_normal(2 * sr)).astype(np.float32)
    cases = {"silence then voice": np.concatenate([hiss, voice]),
             "voice then a louder noise burst": np.concatenate([voice, hiss, burst]),
             "hiss only": np.concatenate([hiss, hiss])}
    for onset_db in (ser.vad.ONSET_DB, 1.0):  # 1 dB: the onset is the burst, after the voice
        monkeypatch.setattr(ser.vad, "ONSET_DB", onset_db)
        for name, y in cases.items():
            level = normalize_level(y, sr)
            whole = vad.probabilities(level)
            assert rule.accepts(rule.probe(vad, level, sr)) == rule.accepts(whole), name
    level = normalize_level(cases["voice then a louder noise burst"], sr)
    assert rule.accepts(vad.probabilities(level))  # the case needs the probe's second pass
    level = normalize_level(cases["silence then voice"], sr)
    assert rule.accepts(rule.probe(vad, level, sr))
    assert rule.probe(vad, level, sr).size < 0.5 * vad.probabilities(level).size
