"""The speech rule's statistics on real speech, real noise and the generated non-speech corpus.

For every file: its duration and the seconds of speech Silero VAD hears in it (frames
whose speech probability is >= a frame threshold, 32 ms each). Prints, for each frame
threshold and minimum, how many speech files (>= 1 s) it would reject and how many
non-speech files it would pass; the thresholds of ``ser.vad.SpeechRule`` come from here.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/experiments_speech.py \\
        --speech ../shared/data --noise ../shared/data/noise --out /tmp/speech-stats.csv

The generated corpus is ``tests/nonspeech.py`` (imported from the tests folder).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
MINIMA = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)


def stats(vad, y: np.ndarray, sr: int) -> dict[str, float]:
    from ser.audio import normalize_level, resample
    from ser.vad import FRAME_SECONDS, SAMPLE_RATE

    # As the Recognizer hears it: at the level the features use, then at the VAD's rate.
    y16 = resample(normalize_level(y, sr), sr, SAMPLE_RATE)
    p = vad.probabilities(y16) if y16.size else np.zeros(0)
    out = {"duration": y16.size / SAMPLE_RATE, "max_p": float(p.max()) if p.size else 0.0}
    for t in THRESHOLDS:
        out[f"speech_s@{t}"] = float((p >= t).sum() * FRAME_SECONDS)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", nargs="*", default=[], help="corpus folders (ser reads them)")
    ap.add_argument("--noise", nargs="*", default=[], help="folders of non-speech audio")
    ap.add_argument("--out", type=Path, default=Path("speech-stats.csv"))
    ap.add_argument("--models", nargs="*", default=[],
                    help="also run these models (shipped names or bundles) on every non-speech "
                    "file: how many get no emotion, and how many a confident one (>= 0.5)")
    args = ap.parse_args()

    from nonspeech import corpus

    from ser.audio import is_audio, load_audio
    from ser.corpora import scan
    from ser.labels import ALL
    from ser.vad import SileroVAD

    vad = SileroVAD()
    rows = []
    for name, (y, sr) in corpus().items():
        rows.append({"group": "generated", "path": name, **stats(vad, y, sr)})
    for folder in args.noise:
        for f in sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_audio(p)):
            y = load_audio(f, sr=16000, allow_silent=True)
            rows.append({"group": "noise", "path": str(f), **stats(vad, y, 16000)})
    if args.speech:
        found = scan(args.speech, labels=ALL)
        for u in found.utterances:
            y = load_audio(u.path, sr=16000, allow_silent=True)
            rows.append({"group": f"speech:{u.corpus}", "path": str(u.path),
                         **stats(vad, y, 16000)})
    frame = pd.DataFrame(rows)
    frame.to_csv(args.out, index=False)
    report(frame)
    for name in args.models:
        confident(name, args.noise)


def confident(model: str, noise: list[str]) -> None:
    """Through the Recognizer, as a user would: the generated corpus and the noise files."""
    from nonspeech import corpus

    from ser.audio import AudioError, is_audio
    from ser.inference import Recognizer

    rec = Recognizer.load(model)
    inputs: list[tuple[str, object, int | None]] = [
        (f"generated:{k}", y, sr) for k, (y, sr) in corpus().items()]
    for folder in noise:
        inputs += [(f"noise:{f.name}", f, None)
                   for f in sorted(Path(folder).rglob("*")) if f.is_file() and is_audio(f)]
    counts = {"generated": [0, 0, 0, 0], "noise": [0, 0, 0, 0]}  # none, <0.5, >=0.5, unsure
    for name, source, sr in inputs:
        group = name.split(":")[0]
        try:
            p = rec.predict(source, sr=sr) if sr else rec.predict(source)
        except AudioError:
            counts[group][0] += 1
            continue
        counts[group][2 if p.confidence >= 0.5 else 1] += 1
        counts[group][3] += int(p.uncertain)
        if p.confidence >= 0.5:
            print(f"  {model}: {name} -> {p.label} {p.confidence:.2f}")
    for group, (none, low, high, unsure) in counts.items():
        print(f"{model} on {group}: no emotion {none}, an emotion below 0.5 {low}, "
              f"confident (>= 0.5) {high}; flagged unsure {unsure}")


def report(frame: pd.DataFrame) -> None:
    speech = frame.group.str.startswith("speech") & (frame.duration >= 1.0)
    groups = {"speech >= 1 s rejected": speech,
              "generated passed": frame.group == "generated",
              "noise passed": frame.group == "noise"}
    print(f"{len(frame[speech])} speech files >= 1 s, "
          f"{int((frame.group == 'generated').sum())} generated, "
          f"{int((frame.group == 'noise').sum())} noise files")
    print("frame threshold | min speech s | " + " | ".join(groups))
    for t in THRESHOLDS:
        col = frame[f"speech_s@{t}"]
        for m in MINIMA:
            ok = col >= m - 1e-9
            counts = [int((~ok[speech]).sum()), int(ok[groups["generated passed"]].sum()),
                      int(ok[groups["noise passed"]].sum())]
            print(f"{t} | {m} | " + " | ".join(map(str, counts)))


if __name__ == "__main__":
    main()
