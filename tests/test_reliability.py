"""The reliability suite: a corpus of bad input (over 40 kinds) through every face.

Each kind is a file made here — truncated, header-only, lying sizes, NaN, odd bit depths,
rates and channel counts, playlists, symlink loops, devices, huge claimed durations … — and
goes through the Python API, the CLI (one `ser predict` over all of them) and the server
(one upload each). The contract: no traceback, no 5xx, no "internal error" anywhere; the
API, the CLI and the server agree on which inputs are usable; and the inputs that would make
a decoder read another file are refused.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _faces import SR, model_path, voiced

from ser.errors import SerError
from ser.inference import Recognizer

FFMPEG = shutil.which("ffmpeg") is not None


def _wav_bytes(y: np.ndarray, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _speech(seconds: float = 1.5) -> np.ndarray:
    return voiced(seconds)


def _wav_header(*, channels: int = 1, sr: int = SR, bits: int = 16, data_len: int = 0,
                riff_len: int | None = None, fmt_tag: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, sr, sr * block, block, bits)
    riff = min(4 + 8 + len(fmt) + 8 + data_len, 0xFFFFFFFF) if riff_len is None else riff_len
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt))
            + fmt + b"data" + struct.pack("<I", data_len))


def _ffmpeg(y: np.ndarray, ext: str, *args: str) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "s.wav", Path(tmp) / f"out{ext}"
        sf.write(src, y, SR)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), *args, str(dst)],
                       check=True)
        return dst.read_bytes()


def _flac_claiming(samples: int) -> bytes:
    """A FLAC whose STREAMINFO claims ``samples`` (36 bits) but holds 1.5 s."""
    buf = io.BytesIO()
    sf.write(buf, _speech(), SR, format="FLAC")
    data = bytearray(buf.getvalue())
    # STREAMINFO starts at byte 8; total samples are the low 36 bits of bytes 8+13 .. 8+17.
    at = 8 + 13
    packed = int.from_bytes(data[at:at + 5], "big")
    packed = (packed & ~((1 << 36) - 1)) | (samples & ((1 << 36) - 1))
    data[at:at + 5] = packed.to_bytes(5, "big")
    return bytes(data)


def corpus(root: Path) -> dict[str, Path]:
    """Write every kind of bad (and a few odd-but-fine) input under ``root``."""
    rng = np.random.default_rng(0)
    good = _wav_bytes(_speech())
    secret = root / "private" / "secret.wav"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(good)
    made: dict[str, bytes | Callable[[Path], None]] = {
        "empty.wav": b"",
        "header-only.wav": _wav_header(),
        "header-lies-1GB.wav": _wav_header(data_len=1 << 30) + good[44:],
        "riff-size-lies.wav": _wav_header(data_len=len(good) - 44, riff_len=12) + good[44:],
        "streaming-placeholder.wav": _wav_header(data_len=0xFFFFFFFF) + good[44:],
        "truncated-half.wav": good[: len(good) // 2 + 1],
        "truncated-odd-byte.wav": good[:-1],
        "zero-channels.wav": _wav_header(channels=0, data_len=100) + bytes(100),
        "zero-rate.wav": _wav_header(sr=0, data_len=3200) + good[44:3244],
        "bits-7.wav": _wav_header(bits=7, data_len=3200) + good[44:3244],
        "format-tag-unknown.wav": _wav_header(fmt_tag=0x1234, data_len=3200) + good[44:3244],
        "nan.wav": _wav_bytes(np.full(SR, np.nan, np.float32), subtype="FLOAT"),
        "inf.wav": _wav_bytes(np.where(np.arange(SR) % 100, 0.1, np.inf).astype(np.float32),
                              subtype="FLOAT"),
        "huge-float.wav": _wav_bytes((_speech() * 1e30).astype(np.float32), subtype="FLOAT"),
        "float64.wav": _wav_bytes(_speech().astype(np.float64), subtype="DOUBLE"),
        "u8.wav": _wav_bytes(_speech(), subtype="PCM_U8"),
        "pcm24.wav": _wav_bytes(_speech(), subtype="PCM_24"),
        "pcm32.wav": _wav_bytes(_speech(), subtype="PCM_32"),
        "rate-8Hz.wav": _wav_bytes(_speech()[:64], sr=8),
        "rate-384k.wav": _wav_bytes(np.repeat(_speech(0.5), 24), sr=384000),
        "channels-64.wav": _wav_bytes(np.repeat(_speech()[:, None], 64, axis=1)),
        "ten-samples.wav": _wav_bytes(_speech()[:10]),
        "silent.wav": _wav_bytes(np.zeros(SR * 2, np.float32)),
        "dc-only.wav": _wav_bytes(np.full(SR * 2, 0.5, np.float32)),
        "full-scale-square.wav": _wav_bytes(np.sign(np.sin(np.arange(SR * 2) / 9)) * 0.999),
        "random-bytes.wav": rng.bytes(5000),
        "random-bytes.mp3": rng.bytes(5000),
        "text.flac": b"this is not audio\n" * 100,
        "id3-only.mp3": b"ID3\x04\x00\x00\x00\x00\x00\x10" + bytes(16),
        "flac-claims-2^35-samples.flac": _flac_claiming(1 << 35),
        "flac-truncated.flac": _flac_claiming(SR * 3)[:2000],
        "ogg-magic-garbage.ogg": b"OggS" + rng.bytes(3000),
        "playlist-hls.webm": f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n"
                             f"file://{secret}\n#EXT-X-ENDLIST\n".encode(),
        "playlist-ffconcat.wav": f"ffconcat version 1.0\nfile '{secret}'\n".encode(),
        "playlist-m3u.mp3": f"{secret}\n".encode(),
        "sdp.webm": b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\n"
                    b"m=audio 5004 RTP/AVP 0\n",
        "matroska-magic-garbage.webm": b"\x1aE\xdf\xa3" + rng.bytes(3000),
        "mp4-ftyp-only.m4a": b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00isomiso2",
        "named [red]markup[b].wav": good,
    }
    if FFMPEG:
        webm = _ffmpeg(_speech(), ".webm", "-c:a", "libopus")
        made["webm-truncated.webm"] = webm[: len(webm) // 2]
        made["webm-ok.webm"] = webm
        made["m4a-moov-at-end.m4a"] = _ffmpeg(_speech(), ".m4a", "-c:a", "aac")
    out: dict[str, Path] = {}
    for name, data in made.items():
        out[name] = root / name
        out[name].write_bytes(data)
    # Things that are not regular files: a loop of links, a link to a device, a folder
    # named like audio, a FIFO (opening it would block), a dangling link.
    (root / "loop-a.wav").symlink_to(root / "loop-b.wav")
    (root / "loop-b.wav").symlink_to(root / "loop-a.wav")
    out["symlink-loop.wav"] = root / "loop-a.wav"
    (root / "dev-zero.wav").symlink_to("/dev/zero")
    out["link-to-dev-zero.wav"] = root / "dev-zero.wav"
    (root / "folder.wav").mkdir()
    out["folder-named-wav.wav"] = root / "folder.wav"
    os.mkfifo(root / "fifo.wav")
    out["fifo.wav"] = root / "fifo.wav"
    (root / "dangling.wav").symlink_to(root / "nowhere.wav")
    out["dangling-link.wav"] = root / "dangling.wav"
    return out


#: Inputs that must never decode: reading them would mean following a reference.
MUST_REFUSE = {"playlist-hls.webm", "playlist-ffconcat.wav", "playlist-m3u.mp3", "sdp.webm"}


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    return corpus(tmp_path_factory.mktemp("bad"))


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.load(model_path())


@pytest.fixture(scope="module")
def api_outcomes(bad, recognizer) -> dict[str, str | None]:
    """Per input: None when it gave a prediction, else the error message. Anything but a
    Prediction or a SerError fails the test."""
    out: dict[str, str | None] = {}
    for name, path in bad.items():
        try:
            p = recognizer.predict(path)
        except SerError as exc:
            out[name] = str(exc)
            continue
        assert all(np.isfinite(v) and 0 <= v <= 1 for v in p.probabilities.values()), name
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-3), name
        out[name] = None
    return out


def test_the_corpus_has_at_least_30_kinds(bad):
    assert len(bad) >= 30


def test_api_gives_a_prediction_or_a_clear_error(api_outcomes):
    refused = {n for n, e in api_outcomes.items() if e is not None}
    assert MUST_REFUSE <= refused
    assert "private" not in "".join(api_outcomes[n] or "" for n in MUST_REFUSE)
    assert not [e for e in api_outcomes.values() if e and "internal error" in e]
    # The ordinary files in the corpus still work.
    for fine in ("pcm24.wav", "pcm32.wav", "u8.wav", "float64.wav", "channels-64.wav"):
        assert api_outcomes[fine] is None, (fine, api_outcomes[fine])


def test_cli_gives_one_row_per_input_and_no_traceback(bad, api_outcomes):
    run = subprocess.run(
        [sys.executable, "-m", "ser", "predict", *map(str, bad.values()), "--json",
         "--model", str(model_path())],
        capture_output=True, text=True, timeout=600)
    assert run.returncode == 1, run.stderr  # some inputs failed, none crashed
    assert "Traceback" not in run.stderr and "internal error" not in run.stdout + run.stderr
    rows = json.loads(run.stdout)
    files = {name: path for name, path in bad.items() if not path.is_dir()}  # a folder is
    assert len(rows) == len(files)  # searched for audio (it has none)
    for (name, _), row in zip(files.items(), rows, strict=True):
        assert ("error" in row) == (api_outcomes[name] is not None), (name, row)


def test_cli_on_a_folder_without_audio_says_so(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    run = subprocess.run([sys.executable, "-m", "ser", "predict", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "no audio files in" in run.stderr, run.stderr


def test_server_answers_4xx_json_and_agrees_with_the_api(bad, api_outcomes, recognizer):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from test_server import Running

    from ser.server.app import Settings, create_app

    settings = Settings(max_upload_mb=8.0, max_seconds=600.0, concurrency=2)
    with Running(create_app(recognizer, settings=settings)) as server, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        for name, path in bad.items():
            if not path.is_file():
                continue  # links, folders, devices: nothing to upload
            r = client.post("/v1/predict", files={"file": (name, path.read_bytes())})
            assert r.status_code in (200, 413, 422), (name, r.status_code, r.text)
            body = r.json()
            assert (r.status_code == 200) == (api_outcomes[name] is None), (name, body)
            if r.status_code != 200:
                assert "internal error" not in body["error"]
                assert "ser-upload" not in body["error"] and "private" not in body["error"]
        assert client.get("/v1/health").json()["busy"] == 0


def test_teaching_a_voice_answers_4xx_and_agrees_with_the_api(bad, api_outcomes, recognizer):
    """Each input of the corpus as one clip of a voice (POST /v1/voices, beside two good
    clips of each emotion): taught exactly when the API can predict it, else a 4xx naming
    the clip — never a 5xx, a traceback or a server path."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    pytest.importorskip("onnx")
    from test_server import Running

    from ser.server.app import Settings, create_app

    good = [(label, (f"{label}-{k}.wav", _wav_bytes(voiced(1.5, f0=120 + 10 * k, seed=k))))
            for label in recognizer.labels for k in range(2)]
    settings = Settings(max_upload_mb=8.0, voices=4)
    with Running(create_app(recognizer, settings=settings)) as server, \
            httpx.Client(base_url=server.url, timeout=120) as client:
        for name, path in bad.items():
            if not path.is_file():
                continue
            clip = (recognizer.labels[0], (name, path.read_bytes()))
            r = client.post("/v1/voices", files=[clip, *good])  # the odd clip first
            assert r.status_code in (201, 413, 422), (name, r.status_code, r.text)
            assert (r.status_code == 201) == (api_outcomes[name] is None), (name, r.text)
            if r.status_code != 201:
                error = r.json()["error"]
                assert error.startswith("clip 1 of 13") or "empty upload" in error, (name, error)
                assert "internal error" not in error and "ser-voice" not in error
                assert "private" not in error
        assert client.get("/v1/health").json()["busy"] == 0


#: Requests to POST /v1/voices that no parser should turn into a 5xx: (name, headers, body).
MALFORMED_VOICES = [
    ("no boundary", "multipart/form-data", b"abc"),
    ("truncated part", "multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="angry"; filename="a.wav"\r\n\r\nRIFF'),
    ("random bytes", "multipart/form-data; boundary=x", np.random.default_rng(2).bytes(3000)),
    ("part without a name", "multipart/form-data; boundary=x", b"--x\r\n\r\nabc\r\n--x--\r\n"),
    ("empty field name", "multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name=""; filename="a.wav"\r\n\r\nabc\r\n--x--\r\n'),
    ("5000-byte names", "multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="' + b"a" * 5000 + b'"; filename="'
     + b"b" * 5000 + b'.wav"\r\n\r\nabc\r\n--x--\r\n'),
    ("non-UTF-8 names", "multipart/form-data; boundary=x",
     b'--x\r\nContent-Disposition: form-data; name="\xff\xfe"; filename="\xff.wav"\r\n\r\n'
     b"abc\r\n--x--\r\n"),
    ("url-encoded text", "application/x-www-form-urlencoded", b"angry=1&sad=2"),
    ("octet stream", "application/octet-stream", np.random.default_rng(3).bytes(100)),
    ("JSON", "application/json", b'{"angry": ["a.wav"]}'),
]


def test_malformed_voice_requests_get_a_json_4xx(recognizer):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from test_server import Running

    from ser.server.app import create_app

    with Running(create_app(recognizer)) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        for name, content_type, body in MALFORMED_VOICES:
            r = client.post("/v1/voices", content=body, headers={"Content-Type": content_type})
            assert r.status_code in (400, 422), (name, r.status_code, r.text)
            assert r.json()["error"] and "internal error" not in r.json()["error"], name
        for path in ("/v1/voices/" + "a" * 300, "/v1/voices/%00", "/v1/voices/..%2Fx"):
            assert client.delete(path).status_code == 404, path
        r = client.post("/v1/predict", params={"voice": "\x00\xff"},
                        files={"file": ("a.wav", b"abc")})
        assert r.status_code == 404 and "unknown voice" in r.json()["error"]
