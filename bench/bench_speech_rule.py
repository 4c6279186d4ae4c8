"""What the speech rule (issue #12) costs per clip: the Recognizer's VAD check alone, wall and
CPU time, median of N runs, on a speech clip (the VAD stops once it has heard enough), on
noise (rejected: every frame of both hearings scored) and, with ``--shout``, on a clip only
the octave-lower hearing accepts — each with the rule as shipped and without its
octave-lower hearing (``SpeechRule(octave_down=False)``), in the same run.

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/bench_speech_rule.py \\
        --clip ../shared/data/ravdess/Actor_01/03-01-05-02-01-01-01.flac \\
        --shout ../shared/data/ravdess/Actor_06/03-01-06-02-02-02-06.flac
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", required=True)
    ap.add_argument("--shout", default=None, help="a clip heard only an octave lower")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--model", default="fast")
    args = ap.parse_args()

    from ser.audio import load_audio
    from ser.inference import NoSpeechError, Recognizer
    from ser.vad import SpeechRule

    rec = Recognizer.load(args.model)
    n = int(args.seconds * rec.sample_rate)
    inputs = [(f"speech, first {args.seconds:g} s of {args.clip}",
               load_audio(args.clip, sr=rec.sample_rate)[:n]),
              (f"white noise, {args.seconds:g} s (rejected)",
               (0.1 * np.random.default_rng(0).standard_normal(n)).astype(np.float32))]
    if args.shout:
        inputs.append((f"shouted, first {args.seconds:g} s of {args.shout}",
                       load_audio(args.shout, sr=rec.sample_rate)[:n]))
    print(f"load average {os.getloadavg()[0]:.1f}")
    for name, y in inputs:
        for rule in (SpeechRule(), SpeechRule(octave_down=False)):
            rec.speech_rule = rule
            wall, cpu, answer = [], [], "speech"
            for _ in range(args.runs):
                t, c = time.perf_counter(), time.process_time()
                try:
                    rec._require_speech(y, None, {})
                except NoSpeechError:
                    answer = "no speech"
                wall.append(time.perf_counter() - t)
                cpu.append(time.process_time() - c)
            print(f"{name}, {'as shipped' if rule.octave_down else 'as recorded only'}: "
                  f"{answer}; wall {1000 * statistics.median(wall):.1f} ms, "
                  f"CPU {1000 * statistics.median(cpu):.1f} ms (median of {args.runs})")
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
