"""Benchmark: training time of a model on a corpus mixture, and prediction latency of a bundle.

Not a test (timings depend on the machine). Results go to docs/RESULTS.md / BENCHMARKS.md.

    python bench/bench_training.py ../shared/data/ravdess ../shared/data/tess \
        ../shared/data/savee --model cnn --out /tmp/bench-train
    python bench/bench_training.py --latency-only            # the bundled model only

Reports: feature extraction (cold cache), training on every speaker (no held-out data, the
epoch budget the kfold run chose), and the latency of ``Recognizer.predict`` on a 3 s clip
(median of 200 runs, after warm-up).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def latency(bundle: str | None, runs: int = 200) -> dict[str, float]:
    from ser.inference import Recognizer

    rec = Recognizer.load(bundle)
    t = np.arange(3 * 16000) / 16000
    y = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)))
    y = y.astype(np.float32)
    for _ in range(10):
        rec.predict(y, sr=16000)
    total, model = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = rec.predict(y, sr=16000)
        total.append(time.perf_counter() - t0)
        model.append(p.timings.get("model", 0.0))
    return {"predict_ms_median": 1000 * statistics.median(total),
            "model_ms_median": 1000 * statistics.median(model)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="*")
    ap.add_argument("--model", default="cnn")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--bundle", default=None, help="bundle for the latency test")
    ap.add_argument("--latency-only", action="store_true")
    args = ap.parse_args()
    report: dict[str, object] = {}
    if not args.latency_only:
        from rich.console import Console

        from ser.training import TrainOptions, train

        out = Path(args.out or tempfile.mkdtemp(prefix="bench-train-"))
        cache = out / "cache"
        opts = TrainOptions(model=args.model, protocol="kfold-speaker", folds=2,
                            epochs=args.epochs)
        # Two speaker folds plus the refit on every speaker; the refit is the figure that
        # matters ("train the shipped model on the whole mixture").
        t0 = time.perf_counter()
        result = train(args.data, opts, out / "run", cache_dir=cache, console=Console(quiet=True))
        report["total_seconds"] = time.perf_counter() - t0
        report["timings"] = result["timings"]
        args.bundle = args.bundle or str(out / "run" / "bundle")
    report["latency_3s_clip"] = latency(args.bundle)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
