"""The speech rule's statistics on real speech, real noise and the generated non-speech corpus.

For every file: its duration and the seconds of speech Silero VAD hears in it (frames whose
speech probability is >= a frame threshold), in each of the rule's two hearings: as
recorded (32 ms frames) and an octave lower (the samples played at half speed; 16 ms of
input per frame). The thresholds of ``ser.vad.SpeechRule`` come from here.

The split, declared before the octave-lower hearing's thresholds were chosen: choose on
RAVDESS actors 01-10 and the training part of the noise folder (``noise_files(...,
"train")``, two thirds by a hash of the name); report on everything else — RAVDESS actors
11-20, TESS, SAVEE, CREMA-D's ten files, the test third of the noise, the generated corpus
(a constraint in the tests: nothing of it may pass, with a frame of margin) and, with
``--espeak``, espeak-ng sentences in 14 languages x 6 voices x 2 pitches, also shifted up
12 and 19 semitones (synthetic shouting: f0 of roughly 300-700 Hz).

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/experiments_speech.py \\
        --speech ../shared/data --noise ../shared/data/noise --espeak \\
        --out /tmp/speech-stats.csv

The generated corpus is ``tests/nonspeech.py`` (imported from the tests folder).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
MINIMA = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
HEARINGS = {"rec": 1, "low": 2}  # as recorded; an octave lower (played at half speed)
#: espeak-ng test sentences (unseen speech for the rule): one per language.
SENTENCES = {
    "en": "I cannot believe you did that again",
    "de": "Ich kann nicht glauben, dass du das wieder getan hast",
    "fr": "Je ne peux pas croire que tu aies encore fait ça",
    "es": "No puedo creer que hayas hecho eso otra vez",
    "it": "Non posso credere che tu l'abbia fatto di nuovo",
    "pt": "Não acredito que fizeste isso outra vez",
    "ru": "Я не могу поверить, что ты снова это сделал",
    "pl": "Nie mogę uwierzyć, że znowu to zrobiłeś",
    "nl": "Ik kan niet geloven dat je dat weer deed",
    "sv": "Jag kan inte tro att du gjorde det igen",
    "cmn": "我不敢相信你又做了那件事",
    "ja": "また同じことをしたなんて信じられない",
    "hi": "मुझे विश्वास नहीं होता कि तुमने फिर से ऐसा किया",
    "tr": "Bunu yine yaptığına inanamıyorum",
}
VOICES = ("", "+f3", "+m3", "+f5", "+klatt", "+whisper")


def stats(vad, y: np.ndarray, sr: int) -> dict[str, float]:
    from ser.audio import normalize_level, resample
    from ser.vad import FRAME_SECONDS, SAMPLE_RATE

    # As the Recognizer hears it: at the level the features use, then at the VAD's rate.
    y16 = resample(normalize_level(y, sr), sr, SAMPLE_RATE)
    out = {"duration": y16.size / SAMPLE_RATE}
    for name, slow in HEARINGS.items():
        stream = vad.stream(SAMPLE_RATE // slow)
        stream.feed(y16)
        p = stream.finish()
        out[f"{name}_max_p"] = float(p.max()) if p.size else 0.0
        for t in THRESHOLDS:
            out[f"{name}@{t}"] = float((p >= t).sum() * FRAME_SECONDS / slow)
    return out


def espeak(args: list[str], text: str) -> np.ndarray:
    import soundfile as sf

    from ser.audio import resample

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", *args, "-w", str(wav), text], check=True,
                       capture_output=True)
        y, native = sf.read(str(wav), dtype="float32")
    y = resample(y, native, 16000)
    loud = np.flatnonzero(np.abs(y) > 0.02 * np.abs(y).max())
    return y[loud[0]:loud[-1] + 1]


def espeak_corpus():
    """(group, name, signal at 16 kHz): every language x voice x pitch; the default and
    +f3 voices at pitch 90 also shifted up 12 and 19 semitones."""
    import librosa

    for lang, text in SENTENCES.items():
        for voice in VOICES:
            for pitch in ("50", "90"):
                y = espeak(["-v", lang + voice, "-p", pitch], text)
                yield "espeak", f"{lang}{voice} p{pitch}", y
                if voice in ("", "+f3") and pitch == "90":
                    for steps in (12, 19):
                        up = librosa.effects.pitch_shift(y, sr=16000, n_steps=steps)
                        yield f"espeak +{steps} st", f"{lang}{voice} p{pitch} +{steps}",\
                            up.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", nargs="*", default=[], help="corpus folders (ser reads them)")
    ap.add_argument("--noise", nargs="*", default=[], help="folders of non-speech audio")
    ap.add_argument("--espeak", action="store_true", help="also espeak-ng speech (unseen)")
    ap.add_argument("--out", type=Path, default=Path("speech-stats.csv"))
    ap.add_argument("--models", nargs="*", default=[],
                    help="also run these models (shipped names or bundles) on every non-speech "
                    "file: how many get no emotion, and how many a confident one (>= 0.5)")
    args = ap.parse_args()

    from nonspeech import corpus

    from ser.audio import load_audio
    from ser.augment import noise_files
    from ser.corpora import scan
    from ser.labels import ALL
    from ser.vad import SileroVAD

    vad = SileroVAD()
    rows = []
    for name, (y, sr) in corpus().items():
        rows.append({"group": "generated", "path": name, **stats(vad, y, sr)})
    for folder in args.noise:
        test = set(noise_files(folder, "test"))
        for f in noise_files(folder, "all"):
            y = load_audio(f, sr=16000, allow_silent=True)
            rows.append({"group": "noise (test third)" if f in test else "noise (train part)",
                         "path": str(f), **stats(vad, y, 16000)})
    if args.speech:
        for u in scan(args.speech, labels=ALL).utterances:
            group = u.corpus
            if u.corpus == "ravdess":
                actor = int(re.search(r"(\d+)$", str(u.speaker)).group(1))
                group = "ravdess 01-10" if actor <= 10 else "ravdess 11-20"
            y = load_audio(u.path, sr=16000, allow_silent=True)
            rows.append({"group": group, "path": str(u.path), **stats(vad, y, 16000)})
    if args.espeak:
        for group, name, y in espeak_corpus():
            rows.append({"group": group, "path": name, **stats(vad, y, 16000)})
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


SELECT = ("ravdess 01-10", "noise (train part)")
NON_SPEECH = ("generated", "noise (train part)", "noise (test third)")


def report(frame: pd.DataFrame) -> None:
    """The octave-lower hearing's thresholds tried on the selection split (the first
    hearing's fixed at the rule's), then each source's counts without and with it."""
    from ser.vad import SpeechRule

    rule = SpeechRule()
    frame = frame[frame.group.isin(NON_SPEECH) | (frame.duration >= 1.0)]
    bad = lambda ok: np.where(frame.group.isin(NON_SPEECH), ok, ~ok)  # noqa: E731
    first = frame[f"rec@{rule.threshold}"] >= rule.min_speech - 1e-9
    print("selection split (speech >= 1 s rejected | non-speech passed): "
          + ", ".join(f"{g} {int((frame.group == g).sum())}" for g in SELECT))
    print(f"as recorded only ({rule.threshold}, {rule.min_speech} s): "
          + " | ".join(str(int(bad(first)[(frame.group == g).to_numpy()].sum())) for g in SELECT))
    print("octave lower: frame threshold | min speech s | " + " | ".join(SELECT)
          + " | generated passed (constraint)")
    for t in THRESHOLDS:
        for m in MINIMA:
            ok = (first | (frame[f"low@{t}"] >= m - 1e-9)).to_numpy()
            counts = [int(bad(ok)[(frame.group == g).to_numpy()].sum()) for g in SELECT]
            gen = int(ok[(frame.group == "generated").to_numpy()].sum())
            print(f"{t} | {m} | " + " | ".join(map(str, counts)) + f" | {gen}")
    low = frame[f"low@{rule.threshold}"] >= rule.min_speech - 1e-9
    after = (first | low) if rule.octave_down else first
    print("\nper source, the rule as shipped (speech >= 1 s rejected / non-speech passed):")
    print("source | files | as recorded only | with the octave-lower hearing | split")
    for g in sorted(frame.group.unique()):
        at = (frame.group == g).to_numpy()
        print(f"{g} | {int(at.sum())} | {int(bad(first.to_numpy())[at].sum())} | "
              f"{int(bad(after.to_numpy())[at].sum())} | "
              f"{'selection' if g in SELECT else 'report'}")


if __name__ == "__main__":
    main()
