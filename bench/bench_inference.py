"""Inference benchmarks: latency, throughput, cold start, and the seed's path for comparison.

    nice .venv/bin/python bench/bench_inference.py                 # everything, shipped model
    .venv/bin/python bench/bench_inference.py --only latency --model runs/cnn/bundle

- latency: one clip, decode + features + model, onnxruntime on 1 thread, median of N runs
  (wall and CPU time, the latter far less sensitive to other jobs on a shared machine); also
  the clip's first 3.0 s (the goal's clip length) written to a temporary FLAC;
- throughput: every file under --corpus with `predict_many(jobs=J)` (a fresh process, so its
  peak RSS is the batch's own);
- cold: the whole `ser predict CLIP` process (hyperfine when installed), plus the slowest
  imports from `python -X importtime`;
- seed: the seed's prediction path on the same clip — librosa.load 2.5 s from 0.6 s at
  22050 Hz, seed178 features of the original, a noisy and a stretched + pitch-shifted copy,
  a scaler fitted on those rows, and the seed ResNet1D forward pass in torch (untrained
  weights: only the time matters);
- numpy: the 3 s clip through the float32 numpy Whisper encoder ser ran before onnxruntime
  (bench/numpy_whisper_encoder.py; needs the `whisper-weights` extra): decode + log-mel +
  encoder to block 3 + the model's classifier graph;
- serve: `ser serve` in a subprocess, ROUNDS x 8 concurrent uploads of the clip's first 4 s
  (needs the `serve` extra and httpx): latency per request as the client sees it, and the
  server process's CPU time per request.

Every section records the load average before and after it. Prints the results as JSON
(and writes them to --out) for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "ravdess"
CLIP = CORPUS / "Actor_01" / "03-01-05-02-01-01-01.flac"
SER = Path(sys.executable).with_name("ser")


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load average {load[0]:.2f} at start")


def ms(seconds: float) -> float:
    return round(1000 * seconds, 2)


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def bench_latency(model: str | None, clip: Path, runs: int) -> dict:
    import soundfile as sf

    from ser.inference import Recognizer

    rec = Recognizer.load(model, threads=1)
    y, sr = sf.read(str(clip), dtype="float32")
    short = Path(f"/tmp/ser-bench-3s-{os.getpid()}.flac")
    sf.write(str(short), y[: 3 * sr], sr)
    try:
        out = {"model": rec.name, "feature_set": " + ".join(rec.feature_sets),
               "clip": _latency(rec, clip, runs),
               "clip_3s": _latency(rec, short, runs)}
    finally:
        short.unlink()
    return out


def _latency(rec, clip: Path, runs: int) -> dict:
    import soundfile as sf

    for _ in range(10):  # warm caches (filter banks, scratch buffers, onnxruntime arenas)
        rec.predict(clip)
    load_before = loadavg()
    totals, cpus, stages = [], [], {}
    for _ in range(runs):
        c = time.process_time()
        t = time.perf_counter()
        p = rec.predict(clip)
        totals.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
        for k, v in p.timings.items():
            stages.setdefault(k, []).append(v)
    return {"clip": str(clip), "seconds": round(sf.info(str(clip)).duration, 3), "runs": runs,
            "median_ms": ms(statistics.median(totals)),
            "p90_ms": ms(sorted(totals)[int(0.9 * runs)]),
            "min_ms": ms(min(totals)),
            "cpu_median_ms": ms(statistics.median(cpus)),
            "stages_median_ms": {k: ms(statistics.median(v)) for k, v in stages.items()},
            "loadavg_before_after": [load_before, loadavg()]}


def _throughput_child(model: str | None, corpus: Path, jobs: int) -> dict:
    import resource

    from ser.inference import Recognizer

    files = sorted(str(p) for p in corpus.rglob("*.flac"))
    t = time.perf_counter()
    rec = Recognizer.load(model, threads=1)
    load = time.perf_counter() - t
    load_before = loadavg()
    c = time.process_time()  # all threads of this process
    t = time.perf_counter()
    results = list(rec.predict_many(files, jobs=jobs))
    wall = time.perf_counter() - t
    cpu = time.process_time() - c
    failed = sum(isinstance(r, Exception) for r in results)
    return {"files": len(files), "failed": failed, "jobs": jobs, "load_s": round(load, 3),
            "wall_s": round(wall, 2), "files_per_s": round(len(files) / wall, 1),
            "cpu_ms_per_file": round(1000 * cpu / len(files), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "loadavg_before_after": [load_before, loadavg()]}


def bench_throughput(model: str | None, corpus: Path, jobs: int) -> dict:
    cmd = [sys.executable, __file__, "--throughput-child", str(corpus), "--jobs", str(jobs)]
    if model:
        cmd += ["--model", model]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_cold(model: str | None, clip: Path, runs: int) -> dict:
    cmd = [str(SER), "predict", str(clip)] + (["--model", model] if model else [])
    result: dict = {"loadavg_before": loadavg(), "command": " ".join(["ser", "predict", clip.name]
                                        + (["--model", model] if model else []))}
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        export = Path("/tmp/ser-bench-hyperfine.json")
        subprocess.run([hyperfine, "--warmup", "2", "--runs", str(runs), "--export-json",
                        str(export), "-N", " ".join(cmd)], check=True, capture_output=True)
        r = json.loads(export.read_text())["results"][0]
        result.update(tool="hyperfine", median_s=round(r["median"], 3),
                      mean_s=round(r["mean"], 3), stddev_s=round(r["stddev"], 3),
                      min_s=round(r["min"], 3), max_s=round(r["max"], 3),
                      user_s=round(r["user"], 3), system_s=round(r["system"], 3))
    else:
        import resource

        times, cpus = [], []
        for i in range(runs + 2):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if i >= 2:  # two warm-up runs fill the OS file cache
                times.append(time.perf_counter() - t)
                cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        result.update(tool=f"subprocess x{runs}", median_s=round(statistics.median(times), 3),
                      min_s=round(min(times), 3), max_s=round(max(times), 3),
                      cpu_median_s=round(statistics.median(cpus), 3))
    result["loadavg_after"] = loadavg()
    # Which imports dominate: cumulative microseconds of top-level packages.
    imp = subprocess.run([sys.executable, "-X", "importtime", "-m", "ser", *cmd[1:]],
                         capture_output=True, text=True)
    cumulative: dict[str, int] = {}
    for line in imp.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and len(m.group(2)) <= 1:  # top-level imports only
            cumulative[m.group(3)] = cumulative.get(m.group(3), 0) + int(m.group(1))
    top = sorted(cumulative.items(), key=lambda kv: -kv[1])[:8]
    result["slowest_imports_ms"] = {k: round(v / 1000, 1) for k, v in top}
    heavy = [m for m in ("torch", "matplotlib", "pandas", "sklearn")
             if re.search(rf"\| +{m}$", imp.stderr, re.MULTILINE)]
    result["heavy_modules_imported"] = heavy
    return result


def bench_seed(clip: Path, runs: int) -> dict:
    import librosa
    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from ser.augment import noise, stretch_pitch
    from ser.features.seed178 import seed178_reference
    from ser.models.seed_resnet1d import SeedResNet1D

    torch.set_num_threads(1)
    threadpool_limits(1, user_api="blas")  # as Recognizer does for ser's path
    net = SeedResNet1D().eval()
    rng = np.random.default_rng(0)

    def seed_predict() -> dict[str, float]:
        c0 = time.process_time()
        t0 = time.perf_counter()
        y, sr = librosa.load(str(clip), sr=22050, offset=0.6, duration=2.5)
        t1 = time.perf_counter()
        rows = np.stack([seed178_reference(v, sr) for v in
                         (y, noise(y, sr, rng), stretch_pitch(y, sr, rng))])
        rows = (rows - rows.mean(0)) / (rows.std(0) + 1e-8)  # the seed refit its scaler here
        t2 = time.perf_counter()
        with torch.no_grad():
            torch.softmax(net(torch.from_numpy(rows.astype(np.float32))), dim=1)
        t3 = time.perf_counter()
        return {"decode": t1 - t0, "features": t2 - t1, "model": t3 - t2, "total": t3 - t0,
                "cpu": time.process_time() - c0}

    seed_predict()
    load_before = loadavg()
    timings = [seed_predict() for _ in range(runs)]
    return {"runs": runs, "loadavg_before_after": [load_before, loadavg()],
            "median_ms": ms(statistics.median(t["total"] for t in timings)),
            "cpu_median_ms": ms(statistics.median(t["cpu"] for t in timings)),
            "stages_median_ms": {k: ms(statistics.median(t[k] for t in timings))
                                 for k in ("decode", "features", "model")}}


def bench_numpy(model: str | None, clip: Path, runs: int) -> dict:
    import numpy as np
    import soundfile as sf

    sys.path.insert(0, str(ROOT / "bench"))
    from numpy_whisper_encoder import pooled

    from ser.audio import load_audio
    from ser.features.whisper import whisper_log_mel
    from ser.inference import Recognizer

    rec = Recognizer.load(model, threads=1)
    scorer = rec._scorers[0][0]
    mean, std = scorer._norm
    y, sr = sf.read(str(clip), dtype="float32")
    short = Path(f"/tmp/ser-bench-3s-{os.getpid()}.flac")
    sf.write(str(short), y[: 3 * sr], sr)

    def one() -> None:
        x = pooled(whisper_log_mel(load_audio(short, sr=16000)), 3)
        scorer.session.run(["probabilities"], {"features": ((x - mean) / std)[None]})

    try:
        one()
        load_before = loadavg()
        totals, cpus = [], []
        for _ in range(runs):
            c = time.process_time()
            t = time.perf_counter()
            one()
            totals.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    finally:
        short.unlink()
    return {"runs": runs, "median_ms": ms(statistics.median(totals)),
            "cpu_median_ms": ms(statistics.median(cpus)), "min_ms": ms(float(np.min(totals))),
            "loadavg_before_after": [load_before, loadavg()]}


def bench_serve(model: str | None, clip: Path, rounds: int, concurrent: int = 8) -> dict:
    import socket
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    import soundfile as sf

    y, sr = sf.read(str(clip), dtype="float32")
    short = Path(f"/tmp/ser-bench-4s-{os.getpid()}.wav")
    sf.write(str(short), y[: 4 * sr], sr)
    data = short.read_bytes()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [str(SER), "serve", "--port", str(port)] + (["--model", model] if model else [])
    # One client with keep-alive connections, as a browser or an app holds: httpx.post
    # builds a new client (and its SSL context) per call, which on these two cores cost more
    # than the prediction itself and made p50 ~240 ms instead of ~70.
    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=concurrent))
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if client.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)

        def upload(_: int) -> tuple[float, int]:
            t = time.perf_counter()
            r = client.post(f"{url}/v1/predict", files={"file": ("clip.wav", data)})
            return time.perf_counter() - t, r.status_code

        def server_cpu() -> float:  # user + system seconds of the server process
            fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        with ThreadPoolExecutor(concurrent) as pool:
            list(pool.map(upload, range(concurrent)))  # warm-up round
            load_before = loadavg()
            cpu = server_cpu()
            results = [r for _ in range(rounds) for r in pool.map(upload, range(concurrent))]
            cpu = server_cpu() - cpu
    finally:
        client.close()
        server.terminate()
        server.wait(10)
        short.unlink()
    times = sorted(t for t, _ in results)
    return {"requests": len(results), "concurrent": concurrent, "clip_s": 4.0,
            "status_codes": sorted({c for _, c in results}),
            "p50_ms": ms(statistics.median(times)), "p90_ms": ms(times[int(0.9 * len(times))]),
            "max_ms": ms(times[-1]), "server_cpu_ms_per_request": ms(cpu / len(results)),
            "loadavg_before_after": [load_before, loadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--clip", type=Path, default=CLIP)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--only", action="append",
                    choices=["latency", "throughput", "cold", "seed", "numpy", "serve"])
    ap.add_argument("--runs", type=int, default=200, help="latency runs")
    ap.add_argument("--seed-runs", type=int, default=20)
    ap.add_argument("--cold-runs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--serve-rounds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    ap.add_argument("--throughput-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.throughput_child:
        print(json.dumps(_throughput_child(args.model, args.throughput_child, args.jobs)))
        return

    sections = args.only or ["latency", "throughput", "cold", "seed", "numpy", "serve"]
    res: dict = {"machine": machine(), "command": " ".join(sys.argv)}
    if "latency" in sections:
        res["latency"] = bench_latency(args.model, args.clip, args.runs)
        print("latency", res["latency"], flush=True)
    if "throughput" in sections:
        res["throughput"] = [bench_throughput(args.model, args.corpus, j)
                             for j in sorted({1, args.jobs})]
        print("throughput", res["throughput"], flush=True)
    if "cold" in sections:
        res["cold"] = bench_cold(args.model, args.clip, args.cold_runs)
        print("cold", res["cold"], flush=True)
    if "seed" in sections:
        res["seed"] = bench_seed(args.clip, args.seed_runs)
        if "latency" in res:
            ours = res["latency"]["clip"]
            res["seed"]["ratio_vs_ser"] = round(res["seed"]["median_ms"] / ours["median_ms"], 1)
            res["seed"]["cpu_ratio_vs_ser"] = round(res["seed"]["cpu_median_ms"]
                                                    / ours["cpu_median_ms"], 1)
            # The seed's path reads the same 2.5 s from 0.6 s of any clip of 3.1 s or more.
            short = res["latency"]["clip_3s"]
            res["seed"]["ratio_vs_ser_3s"] = round(res["seed"]["median_ms"] / short["median_ms"], 1)
            res["seed"]["cpu_ratio_vs_ser_3s"] = round(res["seed"]["cpu_median_ms"]
                                                       / short["cpu_median_ms"], 1)
        print("seed", res["seed"], flush=True)
    if "numpy" in sections:
        res["numpy"] = bench_numpy(args.model, args.clip, args.seed_runs)
        if "latency" in res:
            ours, theirs = res["latency"]["clip_3s"], res["numpy"]
            theirs["ratio_vs_ser_3s"] = round(theirs["median_ms"] / ours["median_ms"], 1)
            theirs["cpu_ratio_vs_ser_3s"] = round(theirs["cpu_median_ms"]
                                                  / ours["cpu_median_ms"], 1)
        print("numpy", res["numpy"], flush=True)
    if "serve" in sections:
        res["serve"] = bench_serve(args.model, args.clip, args.serve_rounds)
        print("serve", res["serve"], flush=True)
    print(json.dumps(res, indent=2))
    if args.out:
        args.out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
