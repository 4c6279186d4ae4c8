"""ser.vad: hysteresis segmentation of frame probabilities, and Silero VAD on real speech."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_bundle import needs_espeak, recording

from ser.vad import WINDOW, SileroVAD, VADConfig, segments_from_probs

FRAME = WINDOW / 16000  # 32 ms
NO_PAD = VADConfig(min_speech=0.1, min_silence=0.2, pad=0.0)


def frames(*runs: tuple[float, int]) -> np.ndarray:
    """Probabilities from (value, number of frames) runs."""
    return np.concatenate([np.full(n, p) for p, n in runs])


def segs(probs, config=NO_PAD):
    return segments_from_probs(probs, len(probs) * WINDOW, config)


def test_one_segment_in_the_middle():
    assert segs(frames((0.0, 10), (0.9, 20), (0.0, 10))) == [
        (round(10 * FRAME, 3), round(30 * FRAME, 3))]


def test_hysteresis_dip_between_thresholds_does_not_split():
    # 0.4 is below threshold 0.5 but above neg_threshold 0.35: still speech.
    probs = frames((0.0, 5), (0.9, 10), (0.4, 20), (0.9, 10), (0.0, 10))
    assert segs(probs) == [(round(5 * FRAME, 3), round(45 * FRAME, 3))]


def test_short_silence_joins_long_silence_splits():
    short_gap = frames((0.9, 10), (0.0, 5), (0.9, 10), (0.0, 10))   # 0.16 s < 0.2 s
    assert len(segs(short_gap)) == 1
    long_gap = frames((0.9, 10), (0.0, 8), (0.9, 10), (0.0, 10))    # 0.256 s >= 0.2 s
    assert segs(long_gap) == [(0.0, round(10 * FRAME, 3)),
                              (round(18 * FRAME, 3), round(28 * FRAME, 3))]


def test_too_short_speech_is_dropped_and_open_speech_runs_to_the_end():
    assert segs(frames((0.0, 10), (0.9, 2), (0.0, 10))) == []      # 64 ms < 0.1 s
    probs = frames((0.0, 10), (0.9, 10))
    assert segs(probs) == [(round(10 * FRAME, 3), round(20 * FRAME, 3))]


def test_padding_stays_inside_the_signal_and_between_neighbours():
    cfg = VADConfig(min_speech=0.1, min_silence=0.2, pad=0.2)
    probs = frames((0.9, 10), (0.0, 8), (0.9, 10), (0.0, 3))
    (a0, a1), (b0, b1) = segs(probs, cfg)
    assert a0 == 0.0 and b1 == round(31 * FRAME, 3)                 # clipped to the signal
    assert a1 == b0 == round(14 * FRAME, 3)                         # gap of 8 frames halved
    assert segs(frames((0.0, 1), (0.1, 30)), cfg) == []


def test_silence_and_noise_have_no_speech():
    vad = SileroVAD()
    rng = np.random.default_rng(0)
    assert vad.segments(np.zeros(16000 * 3, np.float32)) == []
    assert vad.segments(0.01 * rng.standard_normal(16000 * 5).astype(np.float32)) == []
    probs = vad.probabilities(np.zeros(16000, np.float32))
    assert probs.shape == (32,) and probs.max() < 0.1             # 16000 / 512 rounded up


@pytest.mark.skipif(not needs_espeak, reason="espeak-ng is not installed")
def test_finds_spoken_sentences_within_0_3_s():
    y, truth = recording(["the quick brown fox jumps over the lazy dog",
                          "I cannot believe you did that again",
                          "we will meet at the station tomorrow"], [1.5, 2.0, 1.2, 1.8])
    found = SileroVAD().segments(y)
    assert len(found) == len(truth), (found, truth)
    for (s, e), (ts, te) in zip(found, truth, strict=True):
        assert abs(s - ts) < 0.3 and abs(e - te) < 0.3, (found, truth)
    # The same recording at 44.1 kHz is resampled to the 16 kHz the model needs.
    from ser.audio import resample

    at_44k = SileroVAD().segments(resample(y, 16000, 44100), sr=44100)
    assert len(at_44k) == len(truth)
    assert all(abs(a - b) < 0.1 for pair in zip(found, at_44k, strict=True)
               for a, b in zip(*pair, strict=True))


def test_a_stream_in_blocks_scores_as_the_whole_signal():
    from ser.vad import SileroVAD

    vad = SileroVAD()
    rng = np.random.default_rng(3)
    y = (0.1 * rng.standard_normal(22050 * 3)).astype(np.float32)
    whole = vad.probabilities(__import__("ser.audio").audio.resample(y, 22050, 16000))
    stream = vad.stream(22050)
    for piece in np.array_split(y, [1, 700, 701, 9000, 30001]):
        stream.feed(piece)
    np.testing.assert_array_equal(stream.finish(), whole)
    assert stream.n_samples == int(np.ceil(y.size * 16000 / 22050))
    assert stream.segments() == vad.segments(y, 22050)
