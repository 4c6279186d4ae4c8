"""Load and abuse on loopback: `ser serve` under many uploads, streams and bad requests.

    nice .venv/bin/python bench/bench_load.py --out /tmp/load.json   # both shipped models
    .venv/bin/python bench/bench_load.py --models default --requests 200      # quicker

For each model a fresh `ser serve` (127.0.0.1, a free port, `--workers-concurrency 2`) gets,
with bounded counts and time:

1. uploads: ``--requests`` POSTs of a 3 s example clip from ``--clients`` threads; latency
   p50/p95/p99, throughput, status counts, the server's RSS every 100 requests, and
   ``/v1/health`` latency polled throughout;
2. streams against uploads: ``--streams`` WebSockets sending speech as fast as the server
   reads it while uploads run at the same rate as in 1; upload p50/p95 with streams;
3. abuse: 8 idle WebSockets holding every stream slot, then garbage, truncated, playlist,
   oversized and field-less uploads mixed with good ones; status counts, and whether health
   and a good upload are still answered.

Every request goes to 127.0.0.1 only. Prints JSON (and writes it to --out) for
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "ser" / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return round(float(np.percentile(values, q)) * 1000, 1)  # ms


class Server:
    """`ser serve` in a child process on a free loopback port; its log goes to a file (a pipe
    nobody reads fills up and then blocks the server's every log line)."""

    def __init__(self, model: str, concurrency: int):
        import tempfile

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ser = Path(sys.executable).with_name("ser")
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(
            [str(ser), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--model",
             model, "--workers-concurrency", str(concurrency), "--max-upload-mb", "5"],
            stdout=subprocess.DEVNULL, stderr=self.log, text=True)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.5)
            if self.proc.poll() is not None:
                raise SystemExit(f"ser serve exited: {self.close()[-2000:]}")
        raise SystemExit("ser serve did not start in 180 s")

    def close(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.seek(0)
        return self.log.read()


def uploads(url: str, data: bytes, n: int, clients: int, deadline: float,
            pid: int | None = None) -> dict:
    lat: list[float] = []
    codes: Counter = Counter()
    rss: list[float] = []
    done = [0]
    lock = threading.Lock()

    def one(client: httpx.Client) -> None:
        while True:
            with lock:
                if done[0] >= n or time.monotonic() > deadline:
                    return
                done[0] += 1
                if pid and done[0] % 100 == 0:
                    rss.append(rss_mb(pid))
            t = time.perf_counter()
            try:
                r = client.post("/v1/predict", files={"file": ("clip.flac", data)})
                code = r.status_code
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            with lock:
                codes[str(code)] += 1
                if code == 200:
                    lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        cs = [httpx.Client(base_url=url, timeout=120) for _ in range(clients)]
        list(pool.map(one, cs))
        for c in cs:
            c.close()
    wall = time.perf_counter() - t0
    return {"requests": sum(codes.values()), "status": dict(codes), "wall_s": round(wall, 1),
            "per_s": round(sum(codes.values()) / wall, 2), "p50_ms": pct(lat, 50),
            "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "rss_mb_every_100": rss}


def health_poller(url: str, stop: threading.Event, out: list[float], codes: Counter) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        while not stop.is_set():
            t = time.perf_counter()
            try:
                codes[str(c.get("/v1/health").status_code)] += 1
                out.append(time.perf_counter() - t)
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1
            stop.wait(0.25)


def streamer(url: str, y: np.ndarray, sr: int, stop: threading.Event, sent: list[float],
             heard: list[float]) -> None:
    """Send ``y`` in 1 s frames, over and over, as fast as the server takes them; ``sent``
    gets the seconds handed to the socket, ``heard`` the audio time of the server's last
    update (what it has really read: the rest waits in buffers)."""
    from websockets.sync.client import connect

    frame = y.astype("<f4")
    try:
        with connect(url.replace("http", "ws") + "/v1/stream", open_timeout=30,
                     max_size=None, close_timeout=1) as ws:
            ws.send(json.dumps({"sample_rate": sr, "format": "f32le"}))
            json.loads(ws.recv(timeout=30))
            last = [0.0]

            def listen() -> None:
                while not stop.is_set():
                    try:
                        msg = json.loads(ws.recv(timeout=1))
                    except TimeoutError:
                        continue
                    except Exception:  # noqa: BLE001 - the socket closed
                        return
                    last[0] = max(last[0], float(msg.get("time") or msg.get("end") or 0))

            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            while not stop.is_set():
                for i in range(0, frame.size, sr):  # 1 s frames, as fast as the server reads
                    ws.send(frame[i:i + sr].tobytes())
                    sent.append(min(sr, frame.size - i) / sr)
                    if stop.is_set():
                        break
            heard.append(last[0])
    except Exception as exc:  # noqa: BLE001 - reported, not raised: the bench goes on
        sent.append(float("nan"))
        print(f"stream ended: {type(exc).__name__}: {exc}", file=sys.stderr)


def abuse(url: str, good: bytes, n_idle: int = 8) -> dict:
    from websockets.sync.client import connect

    idle = []
    for _ in range(n_idle):  # hold every stream slot without sending audio
        ws = connect(url.replace("http", "ws") + "/v1/stream", open_timeout=30)
        ws.send(json.dumps({"sample_rate": 16000, "format": "f32le"}))
        json.loads(ws.recv(timeout=30))  # ready
        idle.append(ws)
    rng = np.random.default_rng(0)
    bad = {
        "garbage.wav": rng.bytes(20000), "truncated.flac": good[: len(good) // 3],
        "playlist.webm": b"#EXTM3U\n#EXTINF:10,\nfile:///etc/hostname\n#EXT-X-ENDLIST\n",
        "oversized.wav": b"RIFF" + bytes(6 * 2**20), "empty.wav": b"",
    }
    codes: Counter = Counter()
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as c:
        def post(name: str, **kw) -> None:
            try:
                codes[f"{name}:{c.post('/v1/predict', **kw).status_code}"] += 1
            except httpx.HTTPError as exc:
                codes[f"{name}:{type(exc).__name__}"] += 1

        for _ in range(20):
            for name, data in {**bad, "good.flac": good}.items():
                post(name, files={"file": (name, data)})
            post("no-field", data={"x": "1"})
        health = c.get("/v1/health").json()
        extra = None
        try:  # one stream more than the slots: refused, not hung
            with connect(url.replace("http", "ws") + "/v1/stream", open_timeout=30) as ws:
                extra = json.loads(ws.recv(timeout=30)).get("error")
        except Exception as exc:  # noqa: BLE001
            extra = type(exc).__name__
        time.sleep(21)  # the idle timeout (20 s) closes the idle streams
        after = c.get("/v1/health").json()
    for ws in idle:
        ws.close()
    return {"status": dict(sorted(codes.items())), "wall_s": round(time.perf_counter() - t0, 1),
            "health_with_idle_streams": health, "extra_stream": extra,
            "streams_after_idle_timeout": after["streams"]}


def bench_model(model: str, args: argparse.Namespace) -> dict:
    import soundfile as sf

    clip = EXAMPLES / "angry.flac"
    good = clip.read_bytes()
    y, sr = sf.read(str(clip), dtype="float32")
    server = Server(model, concurrency=2)
    out: dict = {"model": model, "idle_rss_mb": rss_mb(server.proc.pid)}
    try:
        stop, hl, hc = threading.Event(), [], Counter()
        poller = threading.Thread(target=health_poller, args=(server.url, stop, hl, hc))
        poller.start()
        deadline = time.monotonic() + args.seconds
        out["uploads"] = uploads(server.url, good, args.requests, args.clients, deadline,
                                 server.proc.pid)
        stop.set()
        poller.join()
        out["health_during_uploads"] = {"status": dict(hc), "p50_ms": pct(hl, 50),
                                        "p99_ms": pct(hl, 99), "max_ms": pct(hl, 100)}
        n = max(20, args.requests // 5)
        out["uploads_alone"] = uploads(server.url, good, n, 2, time.monotonic() + args.seconds)
        stop, sent, heard = threading.Event(), [], []
        threads = [threading.Thread(target=streamer,
                                    args=(server.url, y, sr, stop, sent, heard))
                   for _ in range(args.streams)]
        for t in threads:
            t.start()
        time.sleep(2)
        t0 = time.monotonic()
        out["uploads_with_streams"] = uploads(server.url, good, n, 2,
                                              time.monotonic() + args.seconds)
        stop.set()
        for t in threads:
            t.join(60)
        took = time.monotonic() - t0 + 2
        out["streams"] = {"n": args.streams, "seconds": round(took, 1),
                          "audio_s_sent_per_stream": round(float(np.nansum(sent)) / args.streams,
                                                           1),
                          "audio_s_read_per_stream": [round(h, 1) for h in heard],
                          "ended_with_error": int(np.isnan(sent).sum())}
        # A closed stream is released once the server has read what its socket still holds.
        drained = time.monotonic() + 120
        while (httpx.get(f"{server.url}/v1/health").json()["streams"]
               and time.monotonic() < drained):
            time.sleep(0.5)
        out["streams"]["released_after_s"] = round(time.monotonic() - drained + 120, 1)
        out["abuse"] = abuse(server.url, good)  # 8 idle streams: every slot of the default
        out["rss_after_mb"] = rss_mb(server.proc.pid)
    finally:
        err = server.close()
    out["server_tracebacks"] = err.count("Traceback")
    out["server_log_status"] = dict(Counter(
        line.split()[3] for line in err.splitlines()
        if len(line.split()) > 3 and line.split()[1] in ("GET", "POST", "WS")))
    if args.log_dir:
        (args.log_dir / f"server-{model}.log").write_text(err)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default", "fast"])
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=240.0, help="time bound per upload phase")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--log-dir", type=Path, default=None, help="keep each server's log here")
    args = ap.parse_args()
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_before": os.getloadavg()[0],
              "args": vars(args) | {"out": str(args.out), "log_dir": str(args.log_dir)},
              "models": []}
    for model in args.models:  # written after each model, so a failure keeps the rest
        result["models"].append(bench_model(model, args))
        result["load_after"] = os.getloadavg()[0]
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
