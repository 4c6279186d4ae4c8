"""The Whisper encoder graph's variants side by side: file size, encoder time per 3 s clip
(1 thread, CPU and wall, median), and how close each variant's features are to float32's.

Builds every variant with scripts/build_whisper_onnx.py (needs the `whisper-weights` and
`train` extras) into --out, then runs each on the six example clips (RAVDESS, shipped in
src/ser/examples). The accuracy of a variant comes from training on its features:

    .venv/bin/python bench/bench_encoder_variants.py --out runs/encoder-variants
    ser train $D/ravdess $D/tess $D/savee --model whisper --protocol kfold-speaker --no-final \\
        --option 'graph="runs/encoder-variants/int8.onnx"' --out runs/whisper-mix-int8
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import time
from importlib import resources
from pathlib import Path

import numpy as np

from ser.audio import load_audio
from ser.features.whisper import LAYERS, encode, encoder_session, whisper_log_mel

ROOT = Path(__file__).resolve().parents[1]


def builder():
    spec = importlib.util.spec_from_file_location(
        "build_whisper_onnx", ROOT / "scripts" / "build_whisper_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    build = builder()
    examples = resources.files("ser") / "examples"
    mels = [whisper_log_mel(load_audio(p, sr=16000)) for p in sorted(
        str(examples / name) for name in os.listdir(str(examples)) if name.endswith(".flac"))]
    clip = mels[0][:, :300]  # 3.0 s
    rows, reference = [], None
    for variant in build.VARIANTS:
        path = build.build(args.out / f"{variant}.onnx", variant, LAYERS)
        session = encoder_session(path, threads=1)
        feats = np.stack([encode([m], session)[0, LAYERS] for m in mels])
        if reference is None:
            reference = feats
        for _ in range(5):
            encode([clip], session)
        walls, cpus = [], []
        for _ in range(args.runs):
            c, t = time.process_time(), time.perf_counter()
            encode([clip], session)
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        batch = [m[:, :300] for m in mels]  # six 3.0 s clips: one call against six
        alone, together = [], []
        for _ in range(max(3, args.runs // 5)):
            c = time.process_time()
            for m in batch:
                encode([m], session)
            alone.append((time.process_time() - c) / len(batch))
            c = time.process_time()
            encode(batch, session)
            together.append((time.process_time() - c) / len(batch))
        corr = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(feats, reference, strict=True)])
        rows.append({
            "variant": variant, "mb": round(path.stat().st_size / 1e6, 1),
            "cpu_ms_3s": round(1000 * statistics.median(cpus), 2),
            "wall_ms_3s": round(1000 * statistics.median(walls), 2),
            "batch6_cpu_ms_per_clip_one_by_one": round(1000 * statistics.median(alone), 2),
            "batch6_cpu_ms_per_clip_one_call": round(1000 * statistics.median(together), 2),
            "corr_vs_float32": round(float(corr), 5),
            "mean_rel_err_vs_float32": round(float(np.abs(feats - reference).mean()
                                                   / np.abs(reference).mean()), 4),
            "loadavg": [round(v, 2) for v in os.getloadavg()]})
        print(rows[-1], flush=True)
    (args.out / "variants.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
