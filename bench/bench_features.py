"""Feature-extraction throughput: the seed's way vs ser's feature sets.

The seed's way: one file at a time, ``librosa.load(offset=0.6, duration=2.5, sr=22050)``
and one librosa call per feature, each recomputing its own STFT
(:func:`ser.features.seed178.seed178_reference`). ser's way: ``get_feature_set(name)``'s
``load`` + ``compute``. Each configuration runs in fresh worker processes (one BLAS thread
each) after one warm-up file per worker, so imports and JIT compilation are not timed;
files/s is over the whole list. Peak RSS is the largest worker's. No cache is involved.

    nice -n -5 .venv/bin/python bench/bench_features.py /work/shared/data/ravdess
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _init() -> None:
    from ser.features.extraction import _one_thread

    _one_thread()


def _seed_way(path: str) -> np.ndarray:
    import librosa

    from ser.features.seed178 import seed178_reference

    y, sr = librosa.load(path, sr=22050, offset=0.6, duration=2.5)
    return seed178_reference(y, sr)


def _ser_way(name: str, path: str) -> np.ndarray:
    from ser.features import get_feature_set

    fs = get_feature_set(name)
    return fs.compute(fs.load(path))


def _task(method: str, paths: list[str]) -> tuple[list[np.ndarray], int]:
    out = [_seed_way(p) if method == "seed" else _ser_way(method, p) for p in paths]
    return out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run(method: str, paths: list[str], cores: int) -> tuple[float, list[np.ndarray], float]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(cores, mp_context=ctx, initializer=_init) as pool:
        # Warm up every worker (imports, numba JIT, openSMILE config) outside the clock.
        list(pool.map(_task, [method] * cores, [paths[:1]] * cores))
        chunks = [paths[i:i + 10] for i in range(0, len(paths), 10)]
        t0 = time.perf_counter()
        results = list(pool.map(_task, [method] * len(chunks), chunks))
        seconds = time.perf_counter() - t0
    vectors = [v for vs, _ in results for v in vs]
    peak_mib = max(rss for _, rss in results) / 1024  # ru_maxrss is KiB on Linux
    return len(paths) / seconds, vectors, peak_mib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of audio files (searched recursively)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files")
    ap.add_argument("--cores", default="1,2")
    ap.add_argument("--sets", default="seed,seed178,logmel,egemaps")
    args = ap.parse_args()
    paths = sorted(str(p) for p in args.data.rglob("*") if p.suffix in (".flac", ".wav"))
    paths = paths[: args.limit] if args.limit else paths
    load = os.getloadavg()
    print(f"{len(paths)} files; python {sys.version.split()[0]}; {os.cpu_count()} cores; "
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"nice {os.nice(0)}")
    rows, vectors = [], {}
    for method in args.sets.split(","):
        for cores in (int(c) for c in args.cores.split(",")):
            rate, vecs, peak = run(method, paths, cores)
            vectors.setdefault(method, vecs)
            la = os.getloadavg()[0]
            rows.append((method, cores, rate, peak, la))
            print(f"{method:8s} {cores} core(s): {rate:7.1f} files/s  peak RSS {peak:6.0f} MiB"
                  f"  (load {la:.2f})", flush=True)
    rate = {(m, c): r for m, c, r, _, _ in rows}
    for cores in (int(c) for c in args.cores.split(",")):
        if ("seed", cores) in rate and ("seed178", cores) in rate:
            print(f"seed178 speed-up on {cores} core(s): "
                  f"{rate[('seed178', cores)] / rate[('seed', cores)]:.2f}x")
    if "seed" in vectors and "seed178" in vectors:
        a, b = np.stack(vectors["seed"]), np.stack(vectors["seed178"])
        diff = np.abs(a - b)
        rel = diff / np.maximum(np.abs(a), 1e-12)
        print(f"seed178 vs seed recipe over {len(a)} files: max abs diff {diff.max():.3g}, "
              f"max rel diff {rel.max():.3g}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
