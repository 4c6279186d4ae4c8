"""Helpers for the face tests (server, live, browser): the model and speech-like audio.

The model is the one shipped with ser when it is there (the real one); otherwise the tiny
but real bundle of ``_tiny_bundle`` (logistic regression on seed178 features, via ONNX).
Speech is espeak-ng when installed, else a vowel-like synthetic signal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def voiced(seconds: float, f0: float = 140.0, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A vowel-like signal: harmonics of a gliding pitch through three formants, with a
    syllable-rate envelope (silero VAD hears much of it as speech)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f = f0 * (1 + 0.15 * np.sin(2 * np.pi * 1.3 * t))
    phase = 2 * np.pi * np.cumsum(f) / sr
    y = np.zeros_like(t)
    for k in range(1, 30):
        fk = k * f
        w = sum(np.exp(-(((fk - F) / bw) ** 2)) for F, bw in ((700, 130), (1200, 150), (2600, 250)))
        y += (w + 0.05 / k) * np.sin(k * phase)
    env = 0.5 * (1 + np.sin(2 * np.pi * 3.5 * t - np.pi / 2))
    y = y * env + 0.015 * rng.standard_normal(t.size) * env
    return (0.3 * y / np.abs(y).max()).astype(np.float32)


def speech(text: str, path: Path, sr: int = SR) -> Path:
    """Write spoken ``text`` to a 16-bit wav: espeak-ng when installed, else voiced sound."""
    espeak = shutil.which("espeak-ng")
    if espeak:
        raw = path.with_suffix(".espeak.wav")
        subprocess.run([espeak, "-s", "150", "-w", str(raw), text], check=True)
        y, native = sf.read(str(raw), dtype="float32")
        raw.unlink()
        from ser.audio import resample

        y = resample(y, native, sr)
    else:
        y = voiced(max(1.5, 0.07 * len(text)), sr=sr)
    sf.write(str(path), y, sr, subtype="PCM_16")
    return path


def conversation(path: Path, sr: int = SR) -> Path:
    """Two utterances separated by 1.5 s of silence, with silence before and after."""
    a = speech("I can't believe you did that to me again.", path.with_suffix(".a.wav"), sr)
    b = speech("Well, that is wonderful news, thank you so much.", path.with_suffix(".b.wav"), sr)
    gap = np.zeros(int(1.5 * sr), dtype=np.float32)
    y = np.concatenate([gap[: sr // 2], sf.read(str(a), dtype="float32")[0], gap,
                        sf.read(str(b), dtype="float32")[0], gap[: sr]])
    a.unlink()
    b.unlink()
    sf.write(str(path), y, sr, subtype="PCM_16")
    return path


def model_path() -> Path:
    """The model shipped with ser when this install has one, else the tiny test bundle."""
    from ser.bundle import BundleError
    from ser.inference import packaged_bundle_path

    try:
        return packaged_bundle_path()
    except BundleError:
        from _tiny_bundle import tiny_bundle

        return tiny_bundle()


def ws_stream(base_url: str, hello: dict, samples: np.ndarray, step: int) -> list[dict]:
    """Stream ``samples`` (already of the wire dtype, e.g. ``<f4``) to the server's
    ``/v1/stream`` after ``hello``, ``step`` samples a frame, then end: every message it sent
    back, the answer to ``hello`` first."""
    from websockets.sync.client import connect

    messages = []
    with connect(base_url.replace("http", "ws") + "/v1/stream", open_timeout=10) as ws:
        ws.send(json.dumps(hello))
        messages.append(json.loads(ws.recv(timeout=10)))
        for i in range(0, samples.size, step):
            ws.send(samples[i:i + step].tobytes())
        ws.send(json.dumps({"type": "end"}))
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
        except Exception:  # the server closes after flushing
            pass
    return messages
