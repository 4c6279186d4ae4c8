"""Long audio through every face: peak memory and the answer for a synthetic recording.

    nice .venv/bin/python bench/bench_long_audio.py --hours 2            # shipped model
    .venv/bin/python bench/bench_long_audio.py --hours 0.5 --model whisper

Writes a mono 16-bit recording of ``--hours`` (the shipped example clips, real speech, between
0.3-3 s pauses over low noise) and then, each in a fresh process so that its peak RSS is its
own:

- api: ``Recognizer.load(model).predict(path)`` (the default ``segments=None``);
- cli: ``ser predict PATH --json``;

and checks that both give the same label, probabilities and segments. (The server refuses
audio over ``--max-seconds``, 600 s by default, and decodes an upload with ``load_audio``:
tests/test_inference.py checks that a file and its decoded array give the same answer.)
Prints JSON (and writes it to --out) for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def write_recording(path: Path, hours: float, seed: int = 0) -> float:
    """A long recording: the shipped example clips (real speech) in random order, gain and
    pauses (0.3-3 s), over low noise; written in pieces, so the writer stays small. Returns
    its duration (s)."""
    from ser.audio import load_audio

    examples = Path(__file__).resolve().parents[1] / "src" / "ser" / "examples"
    clips = [load_audio(f, sr=SR) for f in sorted(examples.glob("*.flac"))]
    rng = np.random.default_rng(seed)
    total = int(hours * 3600 * SR)
    done = 0
    with sf.SoundFile(str(path), "w", SR, 1, subtype="PCM_16") as f:
        while done < total:
            pause = np.zeros(int(rng.uniform(0.3, 3.0) * SR), np.float32)
            clip = clips[rng.integers(len(clips))] * float(rng.uniform(0.5, 1.5))
            y = np.concatenate([pause, clip])[: total - done]
            y = y + (0.002 * rng.standard_normal(y.size)).astype(np.float32)
            f.write(np.clip(y, -1, 1))
            done += y.size
    return done / SR


def run(cmd: list[str]) -> dict:
    """Run ``cmd``; its wall and CPU time and peak RSS (its own process)."""
    t = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"wall_s": round(time.perf_counter() - t, 1),
            "cpu_s": round((after.ru_utime - before.ru_utime)
                           + (after.ru_stime - before.ru_stime), 1),
            "peak_rss_mb": round(after.ru_maxrss / 1024),  # the largest child so far
            "stdout": proc.stdout}


API = """
import json, sys
from ser.inference import Recognizer
p = Recognizer.load(sys.argv[2] if len(sys.argv) > 2 else None).predict(sys.argv[1])
print(json.dumps({"path": sys.argv[1], **p.to_dict()}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ser-long-") as tmp:
        path = Path(tmp) / "long.wav"
        seconds = write_recording(path, args.hours)
        model = [args.model] if args.model else []
        # Run the API first: RUSAGE_CHILDREN keeps the maximum over finished children.
        api = run([sys.executable, "-c", API, str(path), *model])
        ser = Path(sys.executable).with_name("ser")
        cli = run([str(ser), "predict", str(path), "--json",
                   *(["--model", args.model] if args.model else [])])
    a = json.loads(api.pop("stdout"))
    c = json.loads(cli.pop("stdout"))[0]
    same = (a["label"] == c["label"] and a["probabilities"] == c["probabilities"]
            and a.get("segments") == c.get("segments"))
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"load {os.getloadavg()[0]:.1f}",
        "model": args.model or "default", "seconds": round(seconds), "file_mb":
        round(seconds * SR * 2 / 2**20), "segments": len(a.get("segments") or []),
        "label": a["label"], "api": api, "cli": cli, "api_equals_cli": same,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
