"""Feature-extraction throughput: the seed's way vs ser's feature sets, on a shared machine.

The seed's way: one file at a time, ``librosa.load(offset=0.6, duration=2.5, sr=22050)``
and one librosa call per feature, each recomputing its own STFT
(:func:`ser.features.seed178.seed178_reference`). ser's way: ``get_feature_set(name)``'s
``load`` + ``compute``. No feature cache is involved.

Measuring honestly while other jobs share the CPU:

- every method gets its own pool of fresh worker processes (one BLAS thread each), warmed
  up on a few files outside the clock (imports, numba JIT);
- the files are cut into batches and the methods run **interleaved**, batch by batch, in
  rotating order, so a burst of outside load hits every method alike;
- we report wall-clock files/s (what a user waits for; noisy under load) **and CPU seconds
  per file** summed over the workers (``time.process_time`` around the work in each worker;
  much less sensitive to other jobs, though cache and core sharing still inflate it);
- the load average is sampled at every batch and reported.

The seed178 vectors of both ways are compared over every file (max abs / rel difference
and how many entries fall outside the tests' rtol 1e-4 / atol 1e-6); that comparison
includes the two decoders (``librosa.load`` vs ``ser.audio.load_audio``), so
``--same-signal`` also compares the two feature computations on identical signals.

    nice .venv/bin/python bench/bench_features.py /work/shared/data/ravdess --same-signal
    .venv/bin/python bench/bench_features.py DATA --limit 300 --cores 1 --sets seed,seed178
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path

import numpy as np

RTOL, ATOL = 1e-4, 1e-6


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


def _peak_rss_kib() -> int:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a spawned worker would
    # report the parent's peak from before the exec.
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _task(method: str, paths: list[str]) -> tuple[list[np.ndarray], float, int]:
    """Compute a chunk; return the vectors, this worker's CPU seconds for it, peak RSS."""
    cpu0 = time.process_time()
    out = [_seed_way(p) if method == "seed" else _ser_way(method, p) for p in paths]
    cpu = time.process_time() - cpu0
    return out, cpu, _peak_rss_kib()


class Method:
    """One method's worker pool and running totals."""

    def __init__(self, name: str, cores: int, warmup: list[str]):
        self.name, self.cores = name, cores
        self.pool = ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init)
        # Warm every worker outside the clock (imports, numba JIT, openSMILE config).
        list(self.pool.map(_task, [name] * cores, [warmup] * cores))
        self.wall = self.cpu = 0.0
        self.files, self.peak_kib = 0, 0
        self.vectors: list[np.ndarray] = []

    def run_batch(self, paths: list[str]) -> None:
        size = max(1, min(10, len(paths) // self.cores))
        chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
        t0 = time.perf_counter()
        results = list(self.pool.map(_task, [self.name] * len(chunks), chunks))
        self.wall += time.perf_counter() - t0
        for vectors, cpu, rss in results:
            self.vectors += vectors
            self.cpu += cpu
            self.peak_kib = max(self.peak_kib, rss)
        self.files += len(paths)

    def close(self) -> None:
        self.pool.shutdown()


def run(methods: list[str], paths: list[str], cores: int, batch: int) -> dict[str, Method]:
    pools = {m: Method(m, cores, paths[:2]) for m in methods}
    loads = []
    try:
        for k, i in enumerate(range(0, len(paths), batch)):
            # Rotate the order so no method always runs first (right after another's burst).
            order = methods[k % len(methods):] + methods[:k % len(methods)]
            for m in order:
                pools[m].run_batch(paths[i:i + batch])
            loads.append(os.getloadavg()[0])
            done = min(i + batch, len(paths))
            print(f"\r  {cores} core(s): {done}/{len(paths)} files, load {loads[-1]:.2f}",
                  end="", file=sys.stderr, flush=True)
    finally:
        print(file=sys.stderr)
        for p in pools.values():
            p.close()
    print(f"{cores} core(s): load average (1 min) during the run: min {min(loads):.2f}, "
          f"mean {np.mean(loads):.2f}, max {max(loads):.2f}")
    return pools


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                    if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def _same_signal(paths: list[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Both seed178 computations on the very same decoded signal (ser's load)."""
    from ser.features import get_feature_set
    from ser.features.seed178 import seed178_reference

    fs = get_feature_set("seed178")
    ys = [fs.load(p) for p in paths]
    return [seed178_reference(y, fs.sample_rate) for y in ys], [fs.compute(y) for y in ys]


def check_same_signal(paths: list[str], cores: int) -> str:
    ctx = multiprocessing.get_context("spawn")
    chunks = [paths[i:i + 20] for i in range(0, len(paths), 20)]
    with ProcessPoolExecutor(cores, mp_context=ctx, initializer=_init) as pool:
        results = list(pool.map(_same_signal, chunks))
    ref = [v for r, _ in results for v in r]
    fast = [v for _, f in results for v in f]
    return compare(ref, fast, paths)


def compare(a: list[np.ndarray], b: list[np.ndarray], paths: list[str]) -> str:
    from ser.features.seed178 import COLUMNS

    A, B = np.stack(a), np.stack(b)
    diff = np.abs(A - B)
    rel = diff / np.maximum(np.abs(A), 1e-12)
    outside = diff > ATOL + RTOL * np.abs(A)
    col = int(np.argmax(rel.max(axis=0)))
    return (f"seed178 vs seed recipe over {len(A)} files: max abs diff {diff.max():.3g} "
            f"({COLUMNS[int(np.argmax(diff.max(axis=0)))]}), max rel diff {rel.max():.3g} "
            f"({COLUMNS[col]}, where |value| = {np.abs(A[np.argmax(rel[:, col]), col]):.3g}); "
            f"entries outside rtol {RTOL:g} / atol {ATOL:g}: {int(outside.sum())} of {A.size}"
            + "".join(f"\n  {paths[i]}: " + ", ".join(
                f"{COLUMNS[j]} {A[i, j]:.4g} vs {B[i, j]:.4g}" for j in np.flatnonzero(outside[i]))
                for i in np.flatnonzero(outside.any(axis=1))[:5]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("data", type=Path, help="folder of audio files (searched recursively)")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N files")
    ap.add_argument("--cores", default="1,2", help="worker counts to measure (default 1,2)")
    ap.add_argument("--sets", default="seed,seed178,logmel",
                    help="methods: seed (the seed's way) and ser feature sets")
    ap.add_argument("--batch", type=int, default=50, help="files per interleaved batch")
    ap.add_argument("--same-signal", action="store_true",
                    help="also compare seed178 with the recipe on identical decoded signals "
                         "(separates decoder differences from feature differences)")
    args = ap.parse_args()
    paths = sorted(str(p) for p in args.data.rglob("*") if p.suffix in (".flac", ".wav"))
    paths = paths[: args.limit] if args.limit else paths
    methods = args.sets.split(",")
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    print(f"{len(paths)} files from {args.data}; {_cpu_model()}, {os.cpu_count()} cores, "
          f"{mem:.0f} GiB; python {platform.python_version()}, numpy {np.__version__}, "
          f"librosa {version('librosa')}; nice {os.nice(0)}; "
          f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []
    for cores in (int(c) for c in args.cores.split(",")):
        pools = run(methods, paths, cores, args.batch)
        seed = pools.get("seed")
        for m, p in pools.items():
            rate, cpu_ms = p.files / p.wall, 1e3 * p.cpu / p.files
            vs = ""
            if seed is not None and m != "seed":
                vs = (f"  wall {rate / (seed.files / seed.wall):5.2f}x, "
                      f"CPU {seed.cpu / p.cpu:5.2f}x vs seed")
            rows.append(f"{m:8s} {cores} core(s): {rate:7.1f} files/s wall, "
                        f"{cpu_ms:6.2f} ms CPU/file, peak RSS {p.peak_kib / 1024:4.0f} MiB{vs}")
            print(rows[-1], flush=True)
        if seed is not None and "seed178" in pools:
            print("decode + features: "
                  + compare(seed.vectors, pools["seed178"].vectors, paths), flush=True)
    if args.same_signal:
        print("features only (ser's decoded signal into both): "
              + check_same_signal(paths, os.cpu_count() or 1), flush=True)
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    main()
