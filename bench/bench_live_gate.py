"""The live speech gate at every recording level: speech opens utterances, noise does not.

Streams audio through :class:`ser.live.EmotionStream` (the engine of `ser live` and the
WebSocket), in 0.1 s chunks, with the Silero gate hearing the stream as recorded at threshold
0.5 ("raw", how ser did it before), at the Recognizer's level at 0.5 ("levelled-0.5") and at
the Recognizer's level at the stream's default threshold ("levelled", ser now):

- speech: one session per speaker of the corpus folders (N random clips, seeded, with 1.5 s
  gaps of a noise floor 50 dB under the clips' peak), scaled to a peak of -60 … 0 dBFS and as
  recorded: clips with an utterance over them (found), utterances beyond one per found clip
  (extra: a clip split in two, or an utterance over no clip), and clips labelled as at the
  recorded level with the raw gate (agree, of those labelled in both);
- noise: every file of a folder of real noise, scaled to a peak of -60 … 0 dBFS and as
  recorded: files with an utterance, utterances, utterances given an emotion (the
  Recognizer's speech rule passed them), and CPU per second of audio (mostly the gate);
- generated non-speech (tests/nonspeech.py: tones, hum, coloured noise, clicks, music,
  silence, …) at -80 … 0 dBFS peak: the signals that open an utterance.

    PYTHONPATH=src OMP_NUM_THREADS=1 nice python bench/bench_live_gate.py \
        --speech ../shared/data/ravdess ../shared/data/savee ../shared/data/tess \
        --noise ../shared/data/noise --out /tmp/gate.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SR = 16000
SPEECH_LEVELS = (None, -60.0, -50.0, -40.0, -30.0, -20.0, -10.0, 0.0)
NOISE_LEVELS = (None, -60.0, -40.0, -20.0, 0.0)
GENERATED_LEVELS = (-80.0, -60.0, -40.0, -20.0, 0.0)
#: The gates compared: what the gate hears and its threshold (None: EmotionStream's default).
#: "raw" is ser before issue #11's change, "levelled-0.5" the level alone.
GATES = {"raw": ("raw", 0.5), "levelled-0.5": ("levelled", 0.5), "levelled": ("levelled", None)}


def at_peak(y: np.ndarray, peak_dbfs: float | None) -> np.ndarray:
    peak = float(np.max(np.abs(y)))
    if peak_dbfs is None or peak == 0.0:
        return y.astype(np.float32)
    return (y * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)


def run(rec, gate, y: np.ndarray, threshold: float | None = None) -> list:
    from ser.live import EmotionStream, Utterance

    kw = {} if threshold is None else {"threshold": threshold}
    stream = EmotionStream(rec, SR, gate=gate, **kw)
    events = []
    for i in range(0, y.size, 1600):
        events += stream.feed(y[i:i + 1600])
    events += stream.close()
    return [e for e in events if isinstance(e, Utterance)]


def sessions(folders: list[Path], per_speaker: int, seed: int,
             keep=lambda corpus, speaker: True) -> list[tuple[np.ndarray, list]]:
    """(audio, [(start, end), ...]) per speaker (those ``keep`` accepts): clips with 1.5 s
    gaps of a low noise floor."""
    from ser.audio import load_audio
    from ser.corpora import scan
    from ser.labels import ALL

    found = scan([str(f) for f in folders], labels=ALL)
    by_speaker = defaultdict(list)
    for u in found.utterances:
        if keep(u.corpus, u.speaker):
            by_speaker[(u.corpus, u.speaker)].append(u.path)
    rng = np.random.default_rng(seed)
    out = []
    for speaker in sorted(by_speaker):
        paths = sorted(by_speaker[speaker])
        pick = [paths[i] for i in rng.choice(len(paths), per_speaker, replace=False)]
        clips = [load_audio(p, sr=SR) for p in pick]
        floor = max(float(np.max(np.abs(c))) for c in clips) * 10 ** (-50 / 20)
        parts, spans, t = [floor * rng.standard_normal(SR)], [], SR
        for c in clips:
            parts += [c, floor * rng.standard_normal(int(1.5 * SR))]
            spans.append((t / SR, (t + c.size) / SR))
            t += c.size + int(1.5 * SR)
        out.append((np.concatenate(parts).astype(np.float32), spans))
    return out


def score_speech(utts: list, spans: list) -> tuple[int, int, list]:
    """Clips with an utterance overlapping them, utterances beyond the one overlapping each
    clip most, the label per clip (of that utterance; None when missed or unscored)."""
    labels, used = [], set()
    for s, e in spans:
        best, overlap = None, 0.0
        for k, u in enumerate(utts):
            o = min(e, u.end) - max(s, u.start)
            if o > overlap:
                best, overlap = k, o
        if best is not None:
            used.add(best)
        pred = utts[best].prediction if best is not None else None
        labels.append(pred.label if pred is not None else None)
    found = sum(lab is not None or any(min(e, u.end) > max(s, u.start) for u in utts)
                for (s, e), lab in zip(spans, labels, strict=True))
    return found, len(utts) - len(used), labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", type=Path, nargs="*", default=[],
                    help="corpus folders (a session per speaker)")
    ap.add_argument("--per-speaker", type=int, default=3)
    ap.add_argument("--noise", type=Path, help="a folder of noise recordings")
    ap.add_argument("--every", type=int, default=1, help="only every N-th noise file")
    ap.add_argument("--model", default=None)
    ap.add_argument("--gates", nargs="*", default=list(GATES), choices=list(GATES))
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from ser.audio import is_audio, load_audio
    from ser.inference import Recognizer
    from ser.live import SileroGate
    from ser.vad import SileroVAD

    rec = Recognizer.load(args.model)
    vad = SileroVAD()
    raw = SileroGate(vad, level_dbfs=None)
    gates = {name: (raw if GATES[name][0] == "raw" else SileroGate(vad), GATES[name][1])
             for name in args.gates}
    result: dict = {"model": rec.name, "gates": list(gates)}
    t0 = time.process_time()

    if args.speech:
        data = sessions(args.speech, args.per_speaker, seed=0)
        n_clips = sum(len(s) for _, s in data)
        reference = [score_speech(run(rec, raw, y, 0.5), s)[2] for y, s in data]
        rows = []
        for name, (gate, threshold) in gates.items():
            for level in SPEECH_LEVELS:
                found = extra = agree = scored = 0
                for (y, spans), ref in zip(data, reference, strict=True):
                    f, x, labels = score_speech(run(rec, gate, at_peak(y, level), threshold),
                                                spans)
                    found, extra = found + f, extra + x
                    for a, b in zip(labels, ref, strict=True):
                        if a is not None and b is not None:
                            scored += 1
                            agree += a == b
                rows.append({"gate": name, "peak_dbfs": level, "clips": n_clips,
                             "found": found, "extra": extra, "scored": scored, "agree": agree})
                print(json.dumps(rows[-1]), flush=True)
        result["speech"] = rows

    if args.noise:
        files = sorted(p for p in args.noise.rglob("*") if p.is_file() and is_audio(p))
        files = files[::args.every]
        noise = [load_audio(f, sr=SR, allow_silent=True) for f in files]
        minutes = sum(y.size for y in noise) / SR / 60
        rows = []
        for name, (gate, threshold) in gates.items():
            for level in NOISE_LEVELS:
                c = time.process_time()
                utts = [run(rec, gate, at_peak(y, level), threshold) for y in noise]
                cpu = time.process_time() - c
                counts = [len(u) for u in utts]
                rows.append({"gate": name, "peak_dbfs": level, "files": len(files),
                             "minutes": round(minutes, 1),
                             "files_with_utterance": int(np.count_nonzero(counts)),
                             "utterances": int(sum(counts)),
                             "with_emotion": sum(u.prediction is not None
                                                 for us in utts for u in us),
                             "cpu_ms_per_audio_s": round(1000 * cpu / (minutes * 60), 2),
                             "worst": [files[i].name for i in np.argsort(counts)[::-1][:3]
                                       if counts[i]]})
                print(json.dumps(rows[-1]), flush=True)
        result["noise"] = rows

    from nonspeech import corpus

    generated = corpus()
    rows = []
    for name, (gate, threshold) in gates.items():
        for level in GENERATED_LEVELS:
            counts = {k: len(run(rec, gate, at_peak(y, level), threshold))
                      for k, (y, sr) in generated.items() if sr == SR}
            rows.append({"gate": name, "peak_dbfs": level, "signals": len(counts),
                         "with_utterance": sorted(k for k, c in counts.items() if c)})
            print(json.dumps(rows[-1]), flush=True)
    result["generated"] = rows
    result["cpu_s"] = round(time.process_time() - t0, 1)
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
