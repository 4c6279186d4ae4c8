"""Does ``SpeechRule.probe`` (onset skip + early stop) give the rule's answer on every frame?

For each file: the rule on every frame of both hearings (``SpeechRule.heard``, the
definition) against the rule on what ``probe`` scored, and the VAD CPU time of each. Prints
disagreements, totals and the files the octave-lower hearing let in.

    python bench/speech_rule_probe.py --speech ../shared/data/ravdess ../shared/data/tess \\
        ../shared/data/savee --noise ../shared/data/noise --generated
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ser.audio import AudioError, is_audio, load_audio, normalize_level
from ser.vad import SileroVAD, SpeechRule

SR = 16000


def clips(args) -> list[tuple[str, str, np.ndarray | Path]]:
    out: list[tuple[str, str, np.ndarray | Path]] = []
    for kind, roots in (("speech", args.speech), ("noise", args.noise)):
        for root in roots:
            out += [(kind, str(p), p) for p in sorted(Path(root).rglob("*")) if is_audio(p)]
    if args.generated:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from nonspeech import corpus

        for name, y in corpus().items():  # (samples, rate) or samples at 16 kHz
            out.append(("generated", name, y if isinstance(y, np.ndarray) else y[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", nargs="*", default=[])
    ap.add_argument("--noise", nargs="*", default=[])
    ap.add_argument("--generated", action="store_true", help="tests/nonspeech.py's corpus")
    args = ap.parse_args()
    vad, rule, first = SileroVAD(), SpeechRule(), SpeechRule(octave_down=False)
    totals: dict[str, list] = {}
    for kind, name, src in clips(args):
        try:
            y = load_audio(src, sr=SR) if isinstance(src, Path) else src
        except AudioError:
            continue
        level = normalize_level(y, SR)
        t = time.process_time()
        whole = rule.enough(rule.heard(vad, level, SR))
        t_whole = time.process_time() - t
        t = time.process_time()
        probed = rule.enough(rule.probe(vad, level, SR))
        t_probe = time.process_time() - t
        if whole != probed:
            print(f"DIFFERENT {kind} {name}: whole {whole}, probe {probed}", flush=True)
        if whole and not first.enough(first.heard(vad, level, SR)):
            print(f"heard only an octave lower: {kind} {name}", flush=True)
        row = totals.setdefault(kind, [0, 0, 0, 0.0, 0.0])
        row[0] += 1
        row[1] += whole
        row[2] += probed
        row[3] += t_whole
        row[4] += t_probe
    for kind, (n, w, p, tw, tp) in totals.items():
        print(f"{kind}: {n} clips; accepted whole {w}, probe {p}; VAD CPU per clip "
              f"whole {1000 * tw / n:.2f} ms, probe {1000 * tp / n:.2f} ms")


if __name__ == "__main__":
    main()
