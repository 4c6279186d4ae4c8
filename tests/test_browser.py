"""End to end in a real browser: headless Chromium opens the page `ser serve` serves, records
from a fake microphone (a wav made here), and shows the emotion the server returned.

Chromium is driven over the DevTools protocol with the `websockets` package — nothing is
downloaded. Skipped only when /usr/bin/chromium is absent (CI installs it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets
from _faces import model_path, speech

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs /usr/bin/chromium"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`ser serve` as a subprocess on a free port; yields its URL."""
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ser", "serve", "--port", str(port), "--model", str(model_path())],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "ser serve did not start"
            try:
                if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class DevTools:
    """The smallest DevTools-protocol client: send a command, await its answer."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params):
        n = next(self.ids)
        await self.ws.send(json.dumps({"id": n, "method": method, "params": params}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    async def js(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.js(expression)
            if value:
                return value
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out waiting for: {expression}")


def launch_chromium(profile: Path, fake_mic: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--use-fake-ui-for-media-stream",
         "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={fake_mic}",
         "--autoplay-policy=no-user-gesture-required", "--window-size=860,1180",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not (port_file.exists() and port_file.read_text().strip()):
        assert proc.poll() is None, "chromium exited"
        assert time.monotonic() < deadline, "chromium did not open its DevTools port"
        time.sleep(0.1)
    return proc, int(port_file.read_text().split()[0])


@contextlib.contextmanager
def browser(profile: Path, mic: Path):
    """Headless Chromium with ``mic`` as its microphone; yields its DevTools port and
    closes it (and removes its profile) afterwards."""
    profile.mkdir()
    chromium, port = launch_chromium(profile, mic)
    try:
        yield port
    finally:
        chromium.terminate()
        try:
            chromium.wait(10)
        except subprocess.TimeoutExpired:
            chromium.kill()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.asynccontextmanager
async def open_page(url: str, devtools_port: int):
    """The browser's page, navigated to ``url`` and ready (the page sets data-ready)."""
    pages = httpx.get(f"http://127.0.0.1:{devtools_port}/json/list").json()
    target = next(p for p in pages if p["type"] == "page")
    async with websockets.connect(target["webSocketDebuggerUrl"], max_size=2**26) as ws:
        dt = DevTools(ws)
        await dt.call("Page.enable")
        await dt.call("Runtime.enable")
        await dt.call("Page.navigate", url=url)
        await dt.wait_for("document.body && document.body.dataset.ready === '1'")
        yield dt


async def drive(url: str, devtools_port: int, labels: list[str], shots: list[Path]) -> dict:
    async with open_page(url, devtools_port) as dt:
        assert await dt.js("document.querySelectorAll('.bar-track').length") == len(labels)

        # Record ~3 s from the fake microphone, stop, and wait for the server's answer.
        await dt.js("document.getElementById('record').click()")
        await dt.wait_for("document.getElementById('record').classList.contains('recording')")
        await asyncio.sleep(3.0)
        await dt.js("document.getElementById('record').click()")
        await dt.wait_for("document.querySelectorAll('#history li').length >= 1", 30)
        recorded = {
            "label": await dt.js("document.getElementById('result-label').textContent"),
            "confidence": await dt.js("document.getElementById('result-confidence').textContent"),
            "status": await dt.js("document.getElementById('status').textContent"),
            "history": await dt.js("document.querySelector('#history li').innerText"),
            "widths": await dt.js(
                "[...document.querySelectorAll('.bar-fill')].map(b => parseFloat(b.style.width))"
            ),
        }
        # Live mode: PCM over the WebSocket until a finished utterance lands in the history.
        await dt.js("document.getElementById('live').click()")
        await dt.wait_for(
            "[...document.querySelectorAll('#history .h-source')]"
            ".some(e => e.textContent.startsWith('live'))", 40)
        recorded["live_status"] = await dt.js("document.getElementById('status').textContent")
        shot = await dt.call("Page.captureScreenshot", format="png")
        await dt.js("document.getElementById('live').click()")
        for path in shots:
            path.write_bytes(base64.b64decode(shot["data"]))
        return recorded



def screenshots(tmp_path: Path, name: str) -> list[Path]:
    """Where a test saves its screenshot: tmp_path, and $SER_SCREENSHOT_DIR when set."""
    out = [tmp_path / name]
    if os.environ.get("SER_SCREENSHOT_DIR"):
        Path(os.environ["SER_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        out.append(Path(os.environ["SER_SCREENSHOT_DIR"]) / name)
    return out

def test_record_in_browser_shows_emotion(served, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: the browser records webm/opus, which the "
                    "server decodes with ffmpeg")
    labels = httpx.get(f"{served}/v1/model").json()["labels"]
    # The fake microphone loops this file: speech, then a pause (so live mode sees an end).
    mic = speech("Why would you do that? I am so tired of all of this.", tmp_path / "mic.wav",
                 sr=48000)
    import numpy as np
    import soundfile as sf

    y, sr = sf.read(str(mic), dtype="float32")
    sf.write(str(mic), np.concatenate([y, np.zeros(sr, np.float32)]), sr, subtype="PCM_16")

    shots = screenshots(tmp_path, "browser.png")
    with browser(tmp_path / "profile", mic) as port:
        result = asyncio.run(drive(served, port, labels, shots))

    # An answer under the model's "unsure" threshold reads "label? (unsure)" (espeak-ng's
    # robotic voice is far from the training speech, so either form is a right answer).
    label = result["label"].removesuffix("? (unsure)")
    assert label in labels, result
    assert result["status"].startswith("recording:"), result
    assert label in result["history"].lower() and "recording" in result["history"]
    assert result["confidence"].endswith("%")
    assert sum(result["widths"]) == pytest.approx(100, abs=2)  # the bars are the probabilities
    assert result["live_status"].startswith("Live"), result
    assert shots[0].stat().st_size > 10_000


async def upload_and_look(url: str, devtools_port: int, long_file: Path, bad_file: Path,
                          shots: dict[str, list[Path]]) -> dict:
    async with open_page(url, devtools_port) as dt:

        async def upload(path: Path) -> None:
            root = (await dt.call("DOM.getDocument"))["root"]["nodeId"]
            node = (await dt.call("DOM.querySelector", nodeId=root, selector="#file"))["nodeId"]
            await dt.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])

        async def shoot(name: str) -> None:
            shot = await dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            for path in shots[name]:
                path.write_bytes(base64.b64decode(shot["data"]))

        await upload(long_file)
        await dt.wait_for("!document.getElementById('timeline').hidden", 60)
        await dt.wait_for("document.getElementById('wave').dataset.ticks", 20)
        seen = {
            "segments": await dt.js(
                "[...document.querySelectorAll('#segments li')].map(li => li.innerText)"),
            "legend": await dt.js("document.getElementById('legend').innerText"),
            "title": await dt.js("document.getElementById('timeline-title').textContent"),
            "kind": await dt.js("document.getElementById('result-kind').textContent"),
            "ticks": await dt.js("document.getElementById('wave').dataset.ticks"),
            "label_px": await dt.js("parseFloat(getComputedStyle("
                                    "document.getElementById('result-label')).fontSize)"),
            "overall_below": await dt.js(
                "document.querySelector('.headline').getBoundingClientRect().top > "
                "document.getElementById('segments').getBoundingClientRect().top"),
        }
        await shoot("timeline")
        await upload(bad_file)
        await dt.wait_for("document.getElementById('status').classList.contains('error')", 30)
        seen["error_status"] = await dt.js("document.getElementById('status').textContent")
        seen["after_error"] = await dt.js(
            "[document.getElementById('result-label').textContent, "
            "document.getElementById('timeline').hidden, "
            "document.querySelectorAll('#segments li').length, "
            "document.getElementById('wave').dataset.ticks]")
        await shoot("error")
        return seen


def test_long_recording_shows_a_timeline_and_an_error_clears_it(served, tmp_path):
    import numpy as np
    import soundfile as sf

    sr = 16000
    parts = []
    for i, text in enumerate(["I can't believe you did that to me again.",
                              "Well, that is wonderful news, thank you so much.",
                              "Please leave me alone now.",
                              "We will meet again at nine tomorrow."]):
        y, _ = sf.read(str(speech(text, tmp_path / f"p{i}.wav", sr=sr)), dtype="float32")
        parts += [np.zeros(sr, np.float32), y]
    long_file = tmp_path / "meeting.wav"
    sf.write(str(long_file), np.concatenate([*parts, np.zeros(sr, np.float32)]), sr,
             subtype="PCM_16")
    assert sf.info(str(long_file)).duration > 8  # long: the server segments it
    bad_file = tmp_path / "notes.wav"
    bad_file.write_text("a text file with an audio name\n" * 40)

    out = os.environ.get("SER_SCREENSHOT_DIR")
    shots = {name: [tmp_path / f"{name}.png"] for name in ("timeline", "error")}
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        for name in shots:
            shots[name].append(Path(out) / f"{name}.png")
    with browser(tmp_path / "profile", long_file) as port:
        seen = asyncio.run(upload_and_look(served, port, long_file, bad_file, shots))

    labels = httpx.get(f"{served}/v1/model").json()["labels"]
    n = len(seen["segments"])
    assert n >= 2 and seen["title"] == f"Timeline: {n} speech segments", seen
    for row in seen["segments"]:  # "0:01.0 – 0:03.4  happy  62%"
        assert re.match(r"\d+:\d\d\.\d – \d+:\d\d\.\d\s+(\w+)\s+\d+%$", row), row
        assert re.match(r".*?\s(\w+)\s+\d+%$", row.replace("\n", " ")).group(1).lower() in labels
    assert any(lab in seen["legend"].lower() for lab in labels) and " s" in seen["legend"]
    assert seen["kind"].startswith("overall") and seen["overall_below"] and seen["label_px"] < 24
    assert seen["ticks"].startswith("0 s,") and len(seen["ticks"].split(",")) >= 3
    assert seen["error_status"].startswith("Error 422"), seen
    assert seen["after_error"] == ["—", True, 0, ""], seen  # nothing of the previous answer
    log = (tmp_path / "serve.log").read_text()
    assert re.search(r"POST /v1/predict 200 \d+\.\d ms", log), log
    assert re.search(r"POST /v1/predict 422 \d+\.\d ms", log), log


async def teach_and_forget(url: str, devtools_port: int, clips: dict[str, list[Path]],
                           shots: list[Path]) -> dict:
    async with open_page(url, devtools_port) as dt:
        root = (await dt.call("DOM.getDocument"))["root"]["nodeId"]

        async def add_files(label: str, files: list[Path]) -> None:
            node = (await dt.call("DOM.querySelector", nodeId=root,
                                  selector=f"#teach-file-{label}"))["nodeId"]
            await dt.call("DOM.setFileInputFiles", nodeId=node, files=[str(f) for f in files])

        async def teach() -> str:
            await dt.js("document.getElementById('teach-send').click()")
            await dt.wait_for("!document.getElementById('voice-on').hidden", 60)
            return await dt.js("document.getElementById('teach-status').textContent")

        async def record() -> str:
            n = await dt.js("document.querySelectorAll('#history li').length")
            await dt.js("document.getElementById('record').click()")
            await dt.wait_for("document.getElementById('record').classList.contains('recording')")
            await asyncio.sleep(2.5)
            await dt.js("document.getElementById('record').click()")
            await dt.wait_for(f"document.querySelectorAll('#history li').length > {n}", 30)
            return await dt.js("document.querySelector('#history li').innerText")

        await dt.wait_for("!document.getElementById('teach').hidden")
        await dt.js("document.getElementById('teach-open').open = true")
        seen = {"send_before": await dt.js("document.getElementById('teach-send').disabled")}
        first = next(iter(clips))
        for label, files in clips.items():
            await add_files(label, files[:1] if label == first else files)
        # The first emotion's second clip is recorded from the (fake) microphone.
        await dt.js(f"document.getElementById('teach-rec-{first}').click()")
        await dt.wait_for(f"document.getElementById('teach-rec-{first}').textContent === 'Stop'")
        await asyncio.sleep(2.5)
        await dt.js(f"document.getElementById('teach-rec-{first}').click()")
        await dt.wait_for("!document.getElementById('teach-send').disabled", 20)
        seen["counts"] = await dt.js(
            "[...document.querySelectorAll('.teach-count')].map(e => e.textContent)")
        seen["hints"] = await dt.js(
            "[...document.querySelectorAll('.teach-hint')].map(e => e.textContent)")
        seen["taught"] = await teach()
        seen["history"] = await record()  # answered with the voice
        shot = await dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        for path in shots:
            path.write_bytes(base64.b64decode(shot["data"]))
        seen["voices_while_taught"] = httpx.get(f"{url}/v1/health").json()["voices"]
        await dt.js("document.getElementById('forget').click()")
        await dt.wait_for("document.getElementById('voice-on').hidden")
        await dt.wait_for("document.getElementById('teach-status').textContent"
                          ".startsWith('Forgotten')")
        seen["voices_after_forget"] = httpx.get(f"{url}/v1/health").json()["voices"]

        # Taught again, then forgotten by the server (as after an hour unused): the next
        # answer comes from the standard model, and the page says so.
        for label, files in clips.items():
            await add_files(label, files)
        await teach()
        seen["voice"] = voice = await dt.js("state.voice")
        assert httpx.delete(f"{url}/v1/voices/{voice}").status_code == 204
        seen["history_after_expiry"] = await record()
        seen["status_after_expiry"] = await dt.js("document.getElementById('status').textContent")
        seen["badge_after_expiry"] = await dt.js("document.getElementById('voice-on').hidden")

        # Taught once more, then the page is left: it forgets the voice on its way out.
        for label, files in clips.items():
            await add_files(label, files)
        await teach()
        seen["voices_before_leaving"] = httpx.get(f"{url}/v1/health").json()["voices"]
        await dt.call("Page.navigate", url="about:blank")
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/v1/health").json()["voices"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        seen["voices_after_leaving"] = httpx.get(f"{url}/v1/health").json()["voices"]
        return seen


def test_teach_my_voice_then_forget_it(served, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed: the browser records webm/opus, which the "
                    "server decodes with ffmpeg")
    model = httpx.get(f"{served}/v1/model").json()
    assert model["voices"]["available"], model["voices"]
    labels = model["labels"]
    mic = speech("Kids are talking by the door.", tmp_path / "mic.wav", sr=48000)
    clips = {label: [speech(f"Kids are talking by the door. I feel {label}.",
                            tmp_path / f"{label}-{k}.wav") for k in range(2)]
             for label in labels}
    shots = screenshots(tmp_path, "teach.png")
    with browser(tmp_path / "profile", mic) as port:
        seen = asyncio.run(teach_and_forget(served, port, clips, shots))

    assert seen["send_before"] is True  # nothing to send yet
    assert seen["counts"] == ["2 / 2"] * len(labels), seen
    assert all(h.startswith("say it ") for h in seen["hints"]), seen
    assert seen["taught"].startswith("Learned"), seen
    assert "recording · you" in seen["history"], seen
    assert seen["voices_while_taught"] == 1 and seen["voices_after_forget"] == 0
    assert "you" not in seen["history_after_expiry"], seen
    assert "forgotten your voice" in seen["status_after_expiry"], seen
    assert seen["badge_after_expiry"] is True
    assert seen["voices_before_leaving"] == 1 and seen["voices_after_leaving"] == 0
    log = (tmp_path / "serve.log").read_text()
    assert len(re.findall(r"POST /v1/voices 201 ", log)) == 3, log
    assert "DELETE /v1/voices/{voice} 204 " in log and seen["voice"] not in log  # ids stay out
    assert re.search(r"POST /v1/predict 404 ", log), log  # the forgotten voice, then the retry
    assert re.search(r"POST /v1/predict 200 ", log), log
