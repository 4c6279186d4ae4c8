"""The numpy Whisper-base encoder that ser ran before onnxruntime (feature set version 1),
kept here only as the baseline that bench/bench_inference.py times against the ONNX graph.

Weights: the CTranslate2 ``model.bin`` of the ``whisper-weights`` extra, read by
``scripts/build_whisper_onnx.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np
from scipy.special import erf

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def weights() -> dict[str, np.ndarray]:
    spec = importlib.util.spec_from_file_location(
        "build_whisper_onnx", ROOT / "scripts" / "build_whisper_onnx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load_encoder_weights()


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * gamma + beta


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x * (1.0 / math.sqrt(2.0))))


def _conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (1, 1)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, 3, axis=1)[:, ::stride]  # (C, T', 3)
    return np.einsum("ctk,ock->ot", cols, w, optimize=True) + b[:, None]


def encoder_state(mel: np.ndarray, layer: int) -> np.ndarray:
    """Hidden states ``(frames // 2, 512)`` after block ``layer`` (0 = front end)."""
    w = weights()
    x = _gelu(_conv1d(mel, w["conv1/weight"], w["conv1/bias"], 1))
    x = _gelu(_conv1d(x, w["conv2/weight"], w["conv2/bias"], 2)).T
    x = x + w["position_encodings/encodings"][: x.shape[0]]
    heads = int(w["num_heads"])
    T, d = x.shape
    for i in range(layer):
        p = f"layer_{i}/"
        y = _layer_norm(x, w[p + "self_attention/layer_norm/gamma"],
                        w[p + "self_attention/layer_norm/beta"])
        qkv = y @ w[p + "self_attention/linear_0/weight"].T + w[p + "self_attention/linear_0/bias"]
        q, k, v = np.ascontiguousarray(qkv.reshape(T, 3, heads, d // heads).transpose(1, 2, 0, 3))
        scores = q @ np.ascontiguousarray(k.transpose(0, 2, 1)) * (1.0 / math.sqrt(d // heads))
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        attn = (scores / scores.sum(-1, keepdims=True)) @ v
        x = x + (attn.transpose(1, 0, 2).reshape(T, d) @ w[p + "self_attention/linear_1/weight"].T
                 + w[p + "self_attention/linear_1/bias"])
        y = _layer_norm(x, w[p + "ffn/layer_norm/gamma"], w[p + "ffn/layer_norm/beta"])
        h = _gelu(y @ w[p + "ffn/linear_0/weight"].T + w[p + "ffn/linear_0/bias"])
        x = x + h @ w[p + "ffn/linear_1/weight"].T + w[p + "ffn/linear_1/bias"]
    return x


def pooled(mel: np.ndarray, layer: int = 3) -> np.ndarray:
    """The version-1 ``whisper`` feature vector: mean and std of block ``layer``."""
    x = encoder_state(mel, layer)
    return np.concatenate([x.mean(0), x.std(0)]).astype(np.float32)
