"""``logmel``: a frame-level log-mel spectrogram, the input of the neural models and live use.

``log(mel_power + 1e-6)`` (natural log) rather than ``power_to_db(ref=max)``: no per-clip
reference and no top-dB clipping, so a frame's value depends only on the audio around it
and a live stream cut into chunks gives the same frames as the whole file.
Defaults: 16 kHz, 25 ms Hann window (n_fft 400), 10 ms hop (160), 64 mel bands 0–8000 Hz,
centred frames (``1 + len(y) // hop`` of them).
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

import numpy as np

from ser.features.base import FeatureSet, FeatureSetError, register

LOG_FLOOR = 1e-6


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above.
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27),
                    lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27) * (m - 15.0)), m * (200.0 / 3))


@functools.lru_cache(maxsize=16)
def _mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax)`` (Slaney scale and norm), in
    numpy so live inference need not import librosa (tests compare the two)."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _window(n_fft: int, win_length: int) -> np.ndarray:
    # Periodic Hann (scipy's fftbins=True), centred in n_fft like librosa's stft.
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win_length) / win_length)
    left = (n_fft - win_length) // 2
    return np.pad(w, (left, n_fft - win_length - left)).astype(np.float32)


def mel_power(y: np.ndarray, sr: int = 16000, *, n_mels: int = 64, n_fft: int = 400,
              win_length: int = 400, hop_length: int = 160, fmin: float = 0.0,
              fmax: float | None = None, pad_mode: str = "constant") -> np.ndarray:
    """``(n_mels, 1 + len(y) // hop_length)`` float32 mel power of centred frames (the signal
    padded by ``n_fft // 2`` on each side: zeros, as librosa's stft, or ``"reflect"``)."""
    fmax = sr / 2 if fmax is None else fmax
    yp = np.pad(np.asarray(y, dtype=np.float32), n_fft // 2, mode=pad_mode)
    frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop_length]
    spec = np.fft.rfft(frames * _window(n_fft, win_length), axis=-1)
    power = (spec.real**2 + spec.imag**2).astype(np.float32)  # (frames, bins)
    return _mel_basis(sr, n_fft, n_mels, float(fmin), float(fmax)) @ power.T


def log_mel(y: np.ndarray, sr: int = 16000, *, n_mels: int = 64, n_fft: int = 400,
            win_length: int = 400, hop_length: int = 160, fmin: float = 0.0,
            fmax: float | None = None) -> np.ndarray:
    """``(n_mels, 1 + len(y) // hop_length)`` float32 log-mel power spectrogram.

    >>> log_mel(np.zeros(16000, dtype=np.float32)).shape
    (64, 101)
    """
    mel = mel_power(y, sr, n_mels=n_mels, n_fft=n_fft, win_length=win_length,
                    hop_length=hop_length, fmin=fmin, fmax=fmax)
    return np.log(mel + LOG_FLOOR).astype(np.float32)


@register
class LogMel(FeatureSet):
    """Frame-level log-mel spectrogram, ``(n_mels, frames)``; whole clip unless ``max_seconds``."""

    name: ClassVar[str] = "logmel"
    version: ClassVar[int] = 1
    kind: ClassVar[str] = "sequence"
    defaults: ClassVar[dict[str, Any]] = {
        "sample_rate": 16000, "n_mels": 64, "n_fft": 400, "win_length": 400,
        "hop_length": 160, "fmin": 0.0, "fmax": None, "max_seconds": None,
    }

    def _validate(self) -> None:
        super()._validate()
        c = self._config
        if not (0 < c["win_length"] <= c["n_fft"]):
            raise FeatureSetError("logmel needs 0 < win_length <= n_fft")
        if c["hop_length"] <= 0 or c["n_mels"] <= 0:
            raise FeatureSetError("logmel needs positive hop_length and n_mels")
        fmax = c["fmax"] if c["fmax"] is not None else c["sample_rate"] / 2
        if not (0 <= c["fmin"] < fmax <= c["sample_rate"] / 2):
            raise FeatureSetError(f"logmel needs 0 <= fmin < fmax <= {c['sample_rate'] / 2:g}")
        if c["max_seconds"] is not None and c["max_seconds"] <= 0:
            raise FeatureSetError("max_seconds must be positive (or None for the whole clip)")

    @property
    def n_mels(self) -> int:
        return int(self._config["n_mels"])

    def compute(self, y: np.ndarray) -> np.ndarray:
        c = self._config
        return log_mel(
            y, c["sample_rate"], n_mels=c["n_mels"], n_fft=c["n_fft"],
            win_length=c["win_length"], hop_length=c["hop_length"], fmin=c["fmin"],
            fmax=c["fmax"],
        )
