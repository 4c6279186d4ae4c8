"""`ser serve` over real HTTP: uvicorn on a free port, the real (or tiny real) model."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
from _faces import SR, conversation, model_path, speech, ws_stream  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

from ser.audio import resample  # noqa: E402
from ser.inference import Recognizer  # noqa: E402
from ser.server.app import Settings, create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Running:
    """A uvicorn server in a background thread, stopped on exit."""

    def __init__(self, app):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            assert self.thread.is_alive(), "server thread died"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(model_path())


@pytest.fixture(scope="module")
def server(recognizer):
    settings = Settings(max_upload_mb=1.0, max_seconds=12.0, concurrency=2, queue_timeout=60.0)
    with Running(create_app(recognizer, settings=settings)) as running:
        yield running


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    out = {"speech": speech("I told you never to call me here again!", d / "speech.wav"),
           "conversation": conversation(d / "conversation.wav")}
    sf.write(str(d / "long.wav"), np.full(15 * SR, 0.1, np.float32), SR, subtype="PCM_16")
    out["long"] = d / "long.wav"
    if shutil.which("ffmpeg"):
        for name, src in (("webm", out["speech"]), ("long_webm", out["long"])):
            dst = d / f"{name}.webm"
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src),
                            "-c:a", "libopus", str(dst)], check=True)
            out[name] = dst
    return out


def post(url: str, name: str, data: bytes, timeout: float = 60) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", files={"file": (name, data)}, timeout=timeout)


def test_health_model_page_and_openapi(server, recognizer):
    h = httpx.get(f"{server.url}/v1/health").json()
    assert h["status"] == "ok" and h["capacity"] == 2 and h["busy"] == 0

    m = httpx.get(f"{server.url}/v1/model").json()
    assert m["labels"] == recognizer.labels
    assert m["sample_rate"] == recognizer.sample_rate
    assert m["licence"] and "metrics" in m and m["feature_set"]["name"]

    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/v1/predict", "/v1/model", "/v1/health"} <= set(schema["paths"])

    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and 'id="record"' in page.text
    for asset in ("app.js", "style.css"):
        r = httpx.get(f"{server.url}/static/{asset}")
        assert r.status_code == 200 and len(r.text) > 500
    # No CDN: every script and stylesheet the page loads is served by ser itself.
    assert "http://" not in page.text.replace('href="/', "") and "https://" not in page.text


def test_predict_matches_the_recognizer(server, clips, recognizer):
    r = post(server.url, "speech.wav", clips["speech"].read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    direct = recognizer.predict(clips["speech"])
    assert body["label"] == direct.label
    assert body["uncertain"] == direct.uncertain
    assert set(body["probabilities"]) == set(recognizer.labels)
    for label, p in direct.probabilities.items():
        assert body["probabilities"][label] == pytest.approx(p, abs=1e-3)
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-2)
    assert body["segments"] is None
    assert body["duration"] == pytest.approx(sf.info(str(clips["speech"])).duration, abs=0.01)
    assert {"decode", "features", "model", "total", "queue"} <= set(body["timings"])


def test_predict_browser_webm(server, clips, recognizer):
    if "webm" not in clips:
        pytest.skip("ffmpeg is not installed")
    r = post(server.url, "recording.webm", clips["webm"].read_bytes())
    assert r.status_code == 200, r.text
    assert r.json()["label"] in recognizer.labels


def test_long_audio_has_segments(server, clips, recognizer):
    r = post(server.url, "conversation.wav", clips["conversation"].read_bytes())
    assert r.status_code == 200, r.text
    segments = r.json()["segments"]
    assert segments, "a recording longer than LONG_AUDIO is segmented"
    direct = recognizer.predict(clips["conversation"])  # the API's answer for the file
    assert [s["label"] for s in segments] == [s.label for s in direct.segments]
    assert [(s["start"], s["end"]) for s in segments] == [(s.start, s.end)
                                                          for s in direct.segments]
    for s in segments:
        assert 0 <= s["start"] < s["end"] <= r.json()["duration"] + 0.01
        assert s["label"] in recognizer.labels


@pytest.mark.parametrize(
    ("name", "payload", "status", "words"),
    [
        ("notes.txt", b"this is not audio at all\n" * 50, 422, "unreadable"),
        ("empty.wav", b"", 422, "empty"),
        ("huge.wav", b"\0" * (1024 * 1024 + 10), 413, "too large"),
    ],
)
def test_bad_uploads(server, name, payload, status, words):
    r = post(server.url, name, payload)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_a_playlist_upload_reads_no_local_file(server, tmp_path):
    if not shutil.which("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    secret = tmp_path / "secret.mp3"
    sf.write(str(tmp_path / "s.wav"), np.full(SR * 2, 0.1, np.float32), SR)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "s.wav"),
                    str(secret)], check=True)
    for target in (secret, tmp_path / "missing.mp3"):  # an existing and a missing file
        playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{target}\n"
        r = post(server.url, "clip.webm", (playlist + "#EXT-X-ENDLIST\n").encode())
        assert r.status_code == 422, r.text
        assert r.json()["error"].startswith("unreadable audio: not a recognised audio format")
        # Neither the server's temp folder nor the named file, nor whether it exists.
        assert "upload" not in r.json()["error"] and str(tmp_path) not in r.json()["error"]


def test_errors_are_json_4xx_and_the_connection_stays_usable(server, clips):
    import io

    buf = io.BytesIO()
    sf.write(buf, np.full(int(0.05 * SR), 0.1, np.float32), SR, format="WAV")
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for _ in range(2):
            r = client.post("/v1/predict", files={"file": ("short.wav", buf.getvalue())})
            assert r.status_code == 422, r.text
            error = r.json()["error"]  # 0.05 s: too short, and too little speech (#12)
            assert error.startswith(("too short", "no speech found")) and "upload" not in error
            ok = client.post("/v1/predict",
                             files={"file": ("s.wav", clips["speech"].read_bytes())})
            assert ok.status_code == 200, ok.text


def test_an_upload_over_the_limit_closes_its_connection(server):
    # The rest of its body is never read: a client must not send another request after it.
    for chunked in (False, True):
        body = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
                + b"\0" * (1024 * 1024 + 10))
        content = iter([body[:65536], body[65536:]]) if chunked else body
        r = httpx.post(f"{server.url}/v1/predict", content=content, timeout=60,
                       headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert r.status_code == 413 and r.headers["connection"] == "close", r.headers


def test_too_long_audio(server, clips):
    for key in ("long", "long_webm"):  # wav: refused from its header; webm: after decoding
        if key not in clips:
            continue
        r = post(server.url, clips[key].name, clips[key].read_bytes())
        assert r.status_code == 413, r.text
        assert "too long" in r.json()["error"]


def test_silent_and_missing_field(server):
    import io

    buf = io.BytesIO()
    sf.write(buf, np.zeros(SR, np.float32), SR, format="WAV")
    r = post(server.url, "silence.wav", buf.getvalue())
    assert r.status_code == 422 and "silent" in r.json()["error"]

    r = httpx.post(f"{server.url}/v1/predict", data={"other": "x"})
    assert r.status_code == 422 and r.json()["error"].startswith("bad request")


@pytest.mark.parametrize("seconds", [3.0, 10.0])  # one clip, and long audio (segmented)
def test_noise_gets_no_emotion_but_a_422(server, seconds):
    import io

    buf = io.BytesIO()
    noise = 0.1 * np.random.default_rng(1).standard_normal(int(seconds * SR))
    sf.write(buf, noise.astype(np.float32), SR, format="WAV")
    r = post(server.url, "noise.wav", buf.getvalue())
    assert r.status_code == 422, r.text
    assert r.json()["error"].startswith("no speech found")


def test_eight_concurrent_requests(server, clips, recognizer):
    data = clips["speech"].read_bytes()
    health: list[int] = []
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(post, server.url, "speech.wav", data) for _ in range(8)]
        while not all(f.done() for f in futures):  # the event loop answers during the burst
            health.append(httpx.get(f"{server.url}/v1/health", timeout=10).status_code)
            time.sleep(0.05)
        results = [f.result() for f in futures]
    assert [r.status_code for r in results] == [200] * 8
    assert len({r.json()["label"] for r in results}) == 1  # same input, same answer
    assert health and set(health) == {200}
    assert httpx.get(f"{server.url}/v1/health").json()["busy"] == 0


def test_saturation_gives_503(recognizer, clips):
    settings = Settings(concurrency=1, queue_timeout=0.0)
    data = clips["conversation"].read_bytes()  # long: segmenting keeps the slot busy a while
    with Running(create_app(recognizer, settings=settings)) as running:
        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(lambda _: post(running.url, "c.wav", data), range(6)))
        codes = sorted(r.status_code for r in results)
        assert 200 in codes and 503 in codes, codes
        assert set(codes) <= {200, 503}
        busy = next(r for r in results if r.status_code == 503).json()
        assert "busy" in busy["error"]
        assert httpx.get(f"{running.url}/v1/health").json()["status"] == "ok"


def _stream(url: str, y: np.ndarray, sr: int, chunk_s: float = 0.1) -> list[dict]:
    return ws_stream(url, {"sample_rate": sr, "format": "f32le"}, y.astype("<f4"),
                     int(chunk_s * sr))


def test_websocket_stream(server, clips, recognizer):
    y16, _ = sf.read(str(clips["conversation"]), dtype="float32")
    y = resample(y16, SR, 48000)  # a browser's usual rate; the server resamples
    messages = _stream(server.url, y, 48000)
    assert messages[0]["type"] == "ready" and messages[0]["labels"] == recognizer.labels
    updates = [m for m in messages if m["type"] == "update"]
    utterances = [m for m in messages if m["type"] == "utterance"]
    # One update per 0.25 s hop of audio, speech or not.
    assert len(updates) == pytest.approx(y.size / 48000 / 0.25, abs=1)
    assert not updates[0]["speech"]  # the recording starts with silence
    assert 1 <= len(utterances) <= 3
    speech_s = sum(u["end"] - u["start"] for u in utterances)
    labelled = [u for u in updates if u["speech"] and "label" in u]
    assert len(labelled) >= 2 * (speech_s - 1.0 * len(utterances))  # ≥ 2 updates/s of speech
    for u in labelled + utterances:
        assert u["label"] in recognizer.labels
        assert sum(u["probabilities"].values()) == pytest.approx(1.0, abs=1e-2)


def test_a_quiet_websocket_stream_is_heard_as_a_normal_one(server, clips):
    """The stream's speech gate hears it at the Recognizer's level: 50 dB quieter, the same
    utterances and emotions; a faint hum with noise opens none."""
    y, _ = sf.read(str(clips["conversation"]), dtype="float32")
    heard = {}
    for dbfs in (-3, -50):
        messages = _stream(server.url, y * (10 ** (dbfs / 20) / np.abs(y).max()), SR)
        heard[dbfs] = [(m["start"], m["end"], m["label"]) for m in messages
                       if m["type"] == "utterance"]
    assert len(heard[-3]) == 2 and heard[-50] == heard[-3]
    hum = np.sin(2 * np.pi * 50 * np.arange(4 * SR) / SR) + 0.1 * np.random.default_rng(
        0).standard_normal(4 * SR)
    faint = _stream(server.url, (10 ** (-60 / 20) * hum).astype(np.float32), SR)
    assert faint[-1]["type"] == "update" and not any(m.get("speech") for m in faint[1:])


def test_websocket_bad_input(server):
    ws_url = server.url.replace("http", "ws") + "/v1/stream"
    with connect(ws_url) as ws:
        ws.send("hello")
        msg = json.loads(ws.recv(timeout=10))
        assert msg["type"] == "error" and "sample_rate" in msg["error"]
    with connect(ws_url) as ws:  # the PCM format must be stated, never guessed
        ws.send(json.dumps({"sample_rate": 16000}))
        msg = json.loads(ws.recv(timeout=10))
        assert msg["type"] == "error" and '"format"' in msg["error"]
    for fmt, frame, words in [
        ("f32le", b"\x00\x01\x02", "multiple of 4 bytes"),
        ("s16le", b"\x00\x01\x02", "multiple of 2 bytes"),
        ("f32le", b"\x00" * (4 * 16000 + 4), "at most 64000 bytes"),
        ("f32le", np.full(160, np.nan, "<f4").tobytes(), "NaN"),
    ]:
        with connect(ws_url) as ws:
            ws.send(json.dumps({"sample_rate": 16000, "format": fmt}))
            ready = json.loads(ws.recv(timeout=10))
            assert ready["type"] == "ready" and ready["format"] == fmt
            ws.send(frame)
            msg = json.loads(ws.recv(timeout=10))
            assert msg["type"] == "error" and words in msg["error"], msg


def test_int16_and_float32_streams_hear_the_same(server, clips):
    y, _ = sf.read(str(clips["speech"]), dtype="int16")
    results = {}
    for fmt, data in (("s16le", y.astype("<i2")), ("f32le", (y / 32768.0).astype("<f4"))):
        ready, *events = ws_stream(server.url, {"sample_rate": SR, "format": fmt}, data,
                                   SR // 10)
        assert ready["type"] == "ready"
        assert not [e for e in events if e["type"] == "error"], events
        results[fmt] = [(e.get("label"), e["type"]) for e in events]
    assert results["s16le"] == results["f32le"]


def test_an_idle_stream_is_closed(recognizer):
    settings = Settings(stream_idle_timeout=0.5)
    with Running(create_app(recognizer, settings=settings)) as running:
        url = running.url.replace("http", "ws") + "/v1/stream"
        with connect(url) as ws:
            ws.send(json.dumps({"sample_rate": SR, "format": "f32le"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            msg = json.loads(ws.recv(timeout=10))  # nothing sent: the server gives up
            assert msg["type"] == "error" and "no message for 0.5 s" in msg["error"]
        assert httpx.get(f"{running.url}/v1/health").json()["streams"] == 0


def test_foreign_origins_and_hosts_are_refused(recognizer, clips):
    from websockets.exceptions import InvalidStatus

    settings = Settings(bind="127.0.0.1", allow_origins=("https://friend.example",))
    with Running(create_app(recognizer, settings=settings)) as running:
        url, ws_url = running.url, running.url.replace("http", "ws") + "/v1/stream"
        data = clips["speech"].read_bytes()

        def upload(**headers):
            return httpx.post(f"{url}/v1/predict", files={"file": ("a.wav", data)},
                              headers=headers, timeout=60)

        assert upload().status_code == 200  # no Origin: not a browser page
        assert upload(Origin=url).status_code == 200  # the page itself
        assert upload(Origin="https://friend.example").status_code == 200  # allowed
        evil = upload(Origin="https://evil.example")
        assert evil.status_code == 403 and "--allow-origin" in evil.json()["error"]
        with pytest.raises(InvalidStatus) as refused:
            connect(ws_url, origin="https://evil.example").close()
        assert refused.value.response.status_code == 403
        with connect(ws_url, origin=url) as ws:
            ws.send(json.dumps({"sample_rate": SR, "format": "f32le"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        # DNS rebinding: a page at evil.example resolving to 127.0.0.1 sends its own Host.
        rebound = httpx.get(f"{url}/v1/health", headers={"Host": "evil.example"})
        assert rebound.status_code == 400 and "Host" in rebound.json()["error"]
        port = url.rsplit(":", 1)[1]
        assert httpx.get(f"{url}/v1/health",
                         headers={"Host": f"localhost:{port}"}).status_code == 200


def test_security_headers(server):
    page = httpx.get(f"{server.url}/")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    api = httpx.get(f"{server.url}/v1/health")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in api.headers["content-security-policy"]



def test_every_request_is_logged_with_status_and_duration(server, caplog):
    import logging
    import re
    import time

    with caplog.at_level(logging.INFO, logger="ser.server.access"):
        httpx.get(f"{server.url}/v1/health")
        post(server.url, "notes.txt", b"not audio at all " * 20)
        httpx.get(f"{server.url}/nowhere")
        # A line is written once the response is sent: the client may read it a moment first.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                "/nowhere" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "ser.server.access"]
    assert any(re.fullmatch(r"GET /v1/health 200 \d+\.\d ms", line) for line in lines), lines
    assert any(re.fullmatch(r"POST /v1/predict 422 \d+\.\d ms", line) for line in lines), lines
    assert any(line.startswith("GET /nowhere 404 ") for line in lines), lines


def test_a_stream_faster_than_real_time_is_read_more_slowly(recognizer):
    # A lower bound only (a slow machine takes longer, never shorter): after a 0.5 s burst,
    # 3 s of audio at most 2x real time cannot be read in under 1.25 s.
    settings = Settings(stream_burst=0.5, stream_realtime=2.0)
    y = np.zeros(3 * SR, "<f4")
    y[::100] = 0.01
    with Running(create_app(recognizer, settings=settings)) as running:
        with connect(running.url.replace("http", "ws") + "/v1/stream") as ws:
            ws.send(json.dumps({"sample_rate": SR, "format": "f32le"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
            t0 = time.monotonic()
            for i in range(0, y.size, SR // 10):
                ws.send(y[i:i + SR // 10].tobytes())
            ws.send(json.dumps({"type": "end"}))
            try:
                while True:
                    json.loads(ws.recv(timeout=30))
            except Exception:  # closed after the flush
                pass
            assert time.monotonic() - t0 >= 1.25
