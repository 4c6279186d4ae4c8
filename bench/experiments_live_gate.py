"""The live gate's speech threshold: utterances opened in real noise against speech found.

The levelled Silero gate's probabilities do not depend on the threshold (the gain follows the
audio, not the stream's state), so each stream is scored by Silero once and replayed through
:class:`ser.live.EmotionStream` at every threshold, without a model (only where utterances
open and close is measured).

Declared split, rule fixed before looking: the threshold is chosen on RAVDESS actors 01-10 and
the training two thirds of the noise folder (``ser.augment.noise_files(..., "train")``) as the
highest at which every validation clip is still found at -50 dBFS, -20 dBFS and its recorded
peak, with no more split clips than at 0.5; the other speakers (RAVDESS 11-20, SAVEE, TESS) and
the test third of the noise report it.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice python bench/experiments_live_gate.py \\
        --data ../shared/data --out /tmp/gate-threshold.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_live_gate import SR, at_peak, score_speech, sessions  # noqa: E402

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
LEVELS = (-50.0, -20.0, None)


class Replay:
    """The Silero gate, scored once per stream and then replayed hop by hop."""

    def __init__(self, gate) -> None:
        self.gate, self.level_dbfs = gate, gate.level_dbfs
        self.probs: list[float] = []
        self.i: int | None = None  # None: recording

    def __call__(self, y: np.ndarray, sr: int, n_last: int) -> float:
        if self.i is None:
            self.probs.append(self.gate(y, sr, n_last))
            return self.probs[-1]
        self.i += 1
        return self.probs[self.i - 1]


class NoModel:
    """No prediction (the stream then gives none): only the gate's decisions are measured."""

    def predict(self, *args, **kwargs):
        from ser.audio import AudioError

        raise AudioError(None, "no model in this experiment")


def utterances(y: np.ndarray, gate: Replay, threshold: float) -> list:
    from ser.live import EmotionStream, Utterance

    stream = EmotionStream(NoModel(), SR, gate=gate, threshold=threshold)
    events = []
    for i in range(0, y.size, 1600):
        events += stream.feed(y[i:i + 1600])
    events += stream.close()
    return [e for e in events if isinstance(e, Utterance)]


def sweep(streams: list[tuple[np.ndarray, list | None]], vad) -> list[dict]:
    """Per threshold: clips found and split (speech) or utterances and files (noise)."""
    from ser.live import SileroGate

    gates = []
    for y, _ in streams:
        gate = Replay(SileroGate(vad))
        utterances(y, gate, 0.5)  # records the probabilities
        gates.append(gate)
    rows = []
    for t in THRESHOLDS:
        found = extra = opened = files = 0
        for (y, spans), gate in zip(streams, gates, strict=True):
            gate.i = 0
            utts = utterances(y, gate, t)
            if spans is None:
                opened, files = opened + len(utts), files + bool(utts)
            else:
                f, x, _ = score_speech(utts, spans)
                found, extra = found + f, extra + x
        rows.append({"threshold": t, "found": found, "extra": extra,
                     "utterances": opened, "files": files})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="../shared/data")
    ap.add_argument("--per-speaker", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from ser.audio import load_audio
    from ser.augment import noise_files
    from ser.vad import SileroVAD

    vad = SileroVAD()
    d = args.data

    def validation(corpus: str, speaker: str) -> bool:
        return corpus == "ravdess" and int(speaker.split("-")[-1].split("_")[-1]) <= 10

    result: dict = {}
    for part, keep in (("validation", validation),
                       ("test", lambda c, s: not validation(c, s))):
        data = sessions([d / "ravdess", d / "savee", d / "tess"], args.per_speaker, seed=1,
                        keep=keep)
        noise = noise_files(d / "noise", "train" if part == "validation" else "test")
        rows = {}
        for level in LEVELS:
            rows[f"speech@{level}"] = sweep([(at_peak(y, level), s) for y, s in data], vad)
        rows["noise"] = sweep([(load_audio(f, sr=SR, allow_silent=True), None) for f in noise],
                              vad)
        result[part] = {"clips": sum(len(s) for _, s in data), "noise_files": len(noise),
                        **rows}
        print(json.dumps({part: result[part]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
