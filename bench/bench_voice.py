"""What teaching the server a voice costs (issue #12, 4c): ``ser.adapt.adapt`` on 12 clips
(2 per emotion, one RAVDESS actor), wall and CPU time, median of N runs — split into the
clips' features (speech rule included) and the refit — then the same through ``POST
/v1/voices`` in-process (decoding included), and the memory each kept voice adds (and, for
comparison, what one more onnxruntime session of the model's graph would take: what each
voice of a model that is not linear would cost if it did not share the served model's).
``--model``: any bundle (a linear one refits its layer; any other its output map).

    PYTHONPATH=src OMP_NUM_THREADS=1 python bench/bench_voice.py ../shared/data/ravdess/Actor_01
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def timed(fn, runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``fn()`` over ``runs`` calls."""
    wall, cpu = [], []
    for _ in range(runs):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("actor", type=Path, help="a RAVDESS Actor_NN folder")
    ap.add_argument("--model", default="default")
    ap.add_argument("--per-emotion", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--voices", type=int, default=16, help="voices kept, for the memory figure")
    args = ap.parse_args()

    import numpy as np
    from fastapi.testclient import TestClient

    from ser.adapt import NotLinear, adapt, fit_prior, read_linear
    from ser.audio import load_audio
    from ser.corpora import scan
    from ser.inference import Recognizer
    from ser.server.app import Settings, create_app

    rec = Recognizer.load(args.model)
    utts = sorted(scan([args.actor]).utterances, key=lambda u: str(u.path))
    clips = [(Path(u.path), lab) for lab in rec.labels
             for u in [u for u in utts if u.label == lab][:args.per_emotion]]
    arrays = [(load_audio(p, sr=rec.sample_rate), lab) for p, lab in clips]
    seconds = sum(y.size for y, _ in arrays) / rec.sample_rate
    print(f"{len(clips)} clips, {seconds:.1f} s of audio, model {rec.name}; "
          f"load average {os.getloadavg()[0]:.1f}")
    adapt(rec, arrays)  # warm: the encoder, the VAD, onnx imported

    wall, cpu = timed(lambda: [rec.features(y) for y, _ in arrays], args.runs)
    print(f"features of the clips (speech rule included): wall {1000 * wall:.0f} ms, "
          f"CPU {1000 * cpu:.0f} ms")
    X = np.stack([rec.features(y) for y, _ in arrays]).astype(np.float64)
    mean, std = rec.bundle.normalization()
    Z = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
    y = np.array([rec.labels.index(lab) for _, lab in arrays])
    try:
        g = read_linear(rec.bundle)
        what = "the layer"

        def refit() -> None:
            fit_prior(Z, y, g.W, g.b)
    except NotLinear:
        what = "the graph's answers + the output map"
        eye, zero = np.eye(len(rec.labels)), np.zeros(len(rec.labels))

        def refit() -> None:
            P = np.stack([rec.graph_probabilities(z) for z in Z])
            fit_prior(np.log(np.clip(P, 1e-12, 1)), y, eye, zero, 1.0)
    wall, cpu = timed(refit, args.runs)
    print(f"refit ({what}): wall {1000 * wall:.0f} ms, CPU {1000 * cpu:.0f} ms")
    wall, cpu = timed(lambda: adapt(rec, arrays), args.runs)
    print(f"ser.adapt.adapt, all of it: wall {1000 * wall:.0f} ms, CPU {1000 * cpu:.0f} ms")

    client = TestClient(create_app(rec, settings=Settings(voices=args.runs + args.voices)))
    files = [(lab, (p.name, p.read_bytes())) for p, lab in clips]

    def post() -> None:
        r = client.post("/v1/voices", files=files)
        assert r.status_code == 201, r.text

    wall, cpu = timed(post, args.runs)
    print(f"POST /v1/voices ({clips[0][0].suffix} uploads, decoding included): wall "
          f"{1000 * wall:.0f} ms, CPU {1000 * cpu:.0f} ms")
    gc.collect()
    before = rss_mb()
    for _ in range(args.voices):
        post()
    gc.collect()
    print(f"memory: {args.voices} more voices kept, RSS {before:.0f} -> {rss_mb():.0f} MB "
          f"({(rss_mb() - before) / args.voices:.2f} MB each)")
    import onnxruntime as ort

    before = rss_mb()
    extra = ort.InferenceSession(str(rec.bundle.onnx_path), providers=["CPUExecutionProvider"])
    print(f"one more session of the graph ({rec.bundle.onnx_path.stat().st_size / 2**20:.1f} "
          f"MB file): RSS +{rss_mb() - before:.1f} MB")
    del extra
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
