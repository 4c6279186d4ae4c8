"""``functionals``: utterance-level statistics over frame-level descriptors (numpy only).

One STFT (16 kHz, 25 ms Hann window in a 512-point FFT, 10 ms hop) gives every spectral
descriptor; a 40 ms autocorrelation YIN gives the pitch. Silence before the first and after
the last frame within ``trim_db`` of the loudest is dropped before the statistics.

Frame-level descriptors ("low-level descriptors", LLDs):

- ``mel0..``: log-mel energies in dB (``n_mels`` bands, 0–8 kHz, Slaney mel bank as in
  ``logmel``), ``mfcc0..``: their DCT-II (``n_mfcc``), ``dmfcc0..``: MFCC deltas (±2 frames)
- ``centroid``, ``bandwidth``, ``rolloff`` (85 %) in kHz, ``flatness`` (log), ``flux``
  (mean squared change of the log-mel frame), ``rms_db``, ``drms_db`` (its delta), ``zcr``

Statistics per LLD over the kept frames: mean, std, p10, p50, p90, skewness, kurtosis
(excess), and the linear slope against time normalised to [0, 1] (so it is the change over
the utterance). Pitch (semitones re 27.5 Hz) has the same eight over voiced frames only,
plus ``f0_dabs`` (mean |change| between consecutive voiced frames, a jitter-like roughness),
``voiced_ratio`` and ``voiced_rms_db`` / ``unvoiced_rms_db`` (mean level of each part).

>>> fs = FunctionalsSet()
>>> x = fs.compute(np.sin(2 * np.pi * 200 * np.arange(16000) / 16000).astype(np.float32))
>>> x.shape == (len(fs.columns),)
True
"""

from __future__ import annotations

import functools
import threading
from typing import Any, ClassVar

import numpy as np

from ser.features.base import FeatureSet, FeatureSetError, register
from ser.features.logmel import _mel_basis, _window

STATS = ("mean", "std", "p10", "p50", "p90", "skew", "kurt", "slope")
SPECTRAL = ("centroid", "bandwidth", "rolloff", "flatness", "flux", "rms_db", "drms_db", "zcr")
PITCH_EXTRA = ("f0_dabs", "voiced_ratio", "voiced_rms_db", "unvoiced_rms_db")

N_FFT, WIN, HOP = 512, 400, 160
F0_WIN = 640            # 40 ms: two periods of a 50 Hz voice
YIN_THRESHOLD = 0.15    # first CMNDF dip below this is the period (de Cheveigné & Kawahara)
VOICED_MAX_CMNDF = 0.35  # a frame whose best dip is higher is unvoiced
POWER_FLOOR = 1e-10


@functools.lru_cache(maxsize=8)
def _dct(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``(n_mfcc, n_mels)`` (scipy's ``dct(norm="ortho")``)."""
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def _delta(x: np.ndarray, width: int = 2) -> np.ndarray:
    """Regression deltas along the last axis over ±``width`` frames (edges repeated)."""
    pad = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(width, width)], mode="edge")
    n = x.shape[-1]
    num = sum(k * (pad[..., width + k:width + k + n] - pad[..., width - k:width - k + n])
              for k in range(1, width + 1))
    return num / (2 * sum(k * k for k in range(1, width + 1)))


def _frames(y: np.ndarray, length: int) -> np.ndarray:
    """Centred frames (zero padded), ``1 + len(y) // HOP`` of them, shape ``(F, length)``."""
    yp = np.pad(y, length // 2)
    return np.lib.stride_tricks.sliding_window_view(yp, length)[::HOP][: 1 + y.size // HOP]


#: Pitch frames per block: the YIN temporaries live in fixed per-thread buffers (~5.6 MB).
YIN_BLOCK = 128
_SCRATCH = threading.local()


def _buffer(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A per-thread scratch array, reused across calls.

    Allocating YIN's ~2 MB float64 temporaries afresh every clip made glibc hand the memory
    back to the OS and fault it in again: ~2000 page faults, a third of the clip's time.
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (name, shape, np.dtype(dtype).str)
    if key not in buffers:
        buffers[key] = np.empty(shape, dtype)
    return buffers[key]


def _frame_buffer(name: str, n: int, width: int, dtype: type) -> np.ndarray | None:
    """A scratch ``(n, width)`` array for clips up to 10 s (rows in steps of 256), else None
    (numpy allocates): the same page-fault saving without holding buffers for long files."""
    if n > 1024:
        return None
    return _buffer(name, (256 * -(-n // 256), width), dtype)[:n]


def yin_track(y: np.ndarray, sr: int, fmin: float, fmax: float,
              frames: slice | np.ndarray = slice(None)) -> tuple[np.ndarray, np.ndarray]:
    """YIN f0 (Hz) and the CMNDF dip per centred 40 ms frame (10 ms hop; only the frames
    ``frames`` selects: a slice or an index array), vectorised.

    The difference function comes from the autocorrelation (one FFT per frame) and the
    frames' cumulative energies: ``d(t) = E[0:W-t] + E[t:W] - 2 r(t)``.

    >>> t = np.arange(16000) / 16000
    >>> f0, dip = yin_track(np.sin(2 * np.pi * 150 * t), 16000, 60.0, 500.0)
    >>> round(float(np.median(f0[10:-10])), 1)
    150.0
    """
    windows = _frames(np.asarray(y, np.float32), F0_WIN)
    index = np.arange(len(windows))[frames]
    w = F0_WIN
    max_lag = min(int(np.ceil(sr / fmin)) + 1, w - 2)
    min_lag = max(2, int(np.floor(sr / fmax)))
    # Zero padding to >= w + max_lag keeps the circular correlation exact for the lags used.
    n_fft = 1 << int(np.ceil(np.log2(w + max_lag + 2)))
    f0 = np.empty(index.size)
    dip = np.empty(index.size)
    for start in range(0, index.size, YIN_BLOCK):
        part = index[start:start + YIN_BLOCK]
        f0[start:start + part.size], dip[start:start + part.size] = _yin_block(
            windows, part, sr, min_lag, max_lag, n_fft)
    return f0, dip


def _yin_block(windows: np.ndarray, index: np.ndarray, sr: int, min_lag: int, max_lag: int,
               n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """YIN on the frames ``windows[index]`` (at most :data:`YIN_BLOCK`), in scratch buffers."""
    n, w = index.size, F0_WIN
    block = (YIN_BLOCK, w)
    frames32 = np.take(windows, index, axis=0, out=_buffer("f32", block, np.float32)[:n])
    frames = _buffer("f64", block, np.float64)[:n]
    np.copyto(frames, frames32)
    spec = np.fft.rfft(frames, n=n_fft, axis=-1,
                       out=_buffer("spec", (YIN_BLOCK, n_fft // 2 + 1), complex)[:n])
    conj = np.conjugate(spec, out=_buffer("conj", (YIN_BLOCK, n_fft // 2 + 1), complex)[:n])
    # A complex input: numpy's irfft of a real array converts it first, ~5x slower.
    r = np.fft.irfft(np.multiply(spec, conj, out=spec), n=n_fft, axis=-1,
                     out=_buffer("r", (YIN_BLOCK, n_fft), np.float64)[:n])[:, : max_lag + 2]
    cs = _buffer("cs", (YIN_BLOCK, w + 1), np.float64)[:n]
    cs[:, 0] = 0.0
    np.cumsum(np.square(frames, out=frames), axis=-1, out=cs[:, 1:])
    lags = np.arange(max_lag + 2)
    lag_block = (YIN_BLOCK, max_lag + 2)
    d = np.take(cs, w - lags, axis=1, out=_buffer("d", lag_block, np.float64)[:n])
    d += cs[:, w:w + 1] - cs[:, lags]
    d -= 2 * r
    d = np.maximum(d, 0.0, out=d)
    d[:, 0] = 0.0
    running = np.cumsum(d[:, 1:], axis=-1, out=_buffer("run", lag_block, np.float64)[:n, 1:])
    cmndf = _buffer("cmndf", lag_block, np.float64)[:n]
    cmndf[:, 0] = 1.0
    np.multiply(d[:, 1:], lags[1:], out=cmndf[:, 1:])
    cmndf[:, 1:] /= np.maximum(running, 1e-12, out=running)
    search = cmndf[:, min_lag:max_lag + 1]
    # First local minimum below the threshold, else the global minimum of the search range.
    below = search < YIN_THRESHOLD
    is_min = np.zeros_like(below)
    is_min[:, :-1] = search[:, :-1] <= search[:, 1:]
    cand = below & is_min
    has = cand.any(axis=1)
    idx = np.where(has, cand.argmax(axis=1), search.argmin(axis=1))
    tau = idx + min_lag
    rows = np.arange(n)
    # Parabolic interpolation around the dip for sub-sample lags.
    a = cmndf[rows, tau - 1]
    b = cmndf[rows, tau]
    c = cmndf[rows, np.minimum(tau + 1, cmndf.shape[1] - 1)]
    den = a - 2 * b + c
    shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    return sr / (tau + np.clip(shift, -1, 1)), b


def _stats(x: np.ndarray) -> np.ndarray:
    """The eight :data:`STATS` per row of ``x`` ``(n, frames)``; zeros where undefined."""
    x = np.asarray(x, np.float64)
    n = x.shape[-1]
    out = np.zeros((x.shape[0], len(STATS)))
    if n == 0:
        return out
    mean = x.mean(axis=-1)
    c = x - mean[:, None]
    # Products, not c**3 / c**4: numpy's float power is ~50x slower than a multiply.
    c2 = c * c
    var = c2.mean(axis=-1)
    std = np.sqrt(var)
    safe = np.where(std > 1e-8, std, 1.0)
    skew = np.where(std > 1e-8, (c2 * c).mean(axis=-1) / safe**3, 0.0)
    kurt = np.where(std > 1e-8, (c2 * c2).mean(axis=-1) / safe**4 - 3.0, 0.0)
    # np.percentile's "linear" method on one sort (np.percentile costs ~15x the sort).
    s = np.sort(x, axis=-1)
    pos = np.array([0.1, 0.5, 0.9]) * (n - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    frac = pos - lo
    p10, p50, p90 = (s[:, lo] + (s[:, hi] - s[:, lo]) * frac).T
    if n > 1:
        t = np.linspace(0.0, 1.0, n) - 0.5
        slope = c @ t / (t @ t)
    else:
        slope = np.zeros(x.shape[0])
    out[:] = np.stack([mean, std, p10, p50, p90, skew, kurt, slope], axis=-1)
    return out


def _trim(rms_db: np.ndarray, trim_db: float) -> slice:
    """Frames from the first to the last within ``trim_db`` of the loudest."""
    loud = np.flatnonzero(rms_db >= rms_db.max() - trim_db)
    return slice(int(loud[0]), int(loud[-1]) + 1)


@register
class FunctionalsSet(FeatureSet):
    """Statistics of spectral, cepstral, energy and pitch descriptors: one vector per clip."""

    name: ClassVar[str] = "functionals"
    version: ClassVar[int] = 1
    kind: ClassVar[str] = "vector"
    defaults: ClassVar[dict[str, Any]] = {
        "sample_rate": 16000, "n_mels": 40, "n_mfcc": 20, "trim_db": 40.0,
        "f0_min": 60.0, "f0_max": 500.0, "max_seconds": None,
    }
    min_seconds: ClassVar[float] = 0.1

    def _validate(self) -> None:
        super()._validate()
        c = self._config
        if not (isinstance(c["n_mels"], int) and 8 <= c["n_mels"] <= 128):
            raise FeatureSetError("functionals needs an integer n_mels in 8..128")
        if not (isinstance(c["n_mfcc"], int) and 1 <= c["n_mfcc"] <= c["n_mels"]):
            raise FeatureSetError("functionals needs an integer n_mfcc in 1..n_mels")
        if not c["trim_db"] > 0:
            raise FeatureSetError("trim_db must be positive (dB below the loudest frame)")
        if not (0 < c["f0_min"] < c["f0_max"] <= c["sample_rate"] / 4):
            raise FeatureSetError("functionals needs 0 < f0_min < f0_max <= sample_rate / 4")
        if c["sample_rate"] * 1.0 / c["f0_min"] > F0_WIN - 2:
            raise FeatureSetError(f"f0_min too low for a {F0_WIN}-sample pitch window "
                                  f"at {c['sample_rate']} Hz")
        if c["max_seconds"] is not None and c["max_seconds"] <= 0:
            raise FeatureSetError("max_seconds must be positive (or None for the whole clip)")

    def _llds(self) -> list[str]:
        c = self._config
        return ([f"mel{i}" for i in range(c["n_mels"])] + [f"mfcc{i}" for i in range(c["n_mfcc"])]
                + [f"dmfcc{i}" for i in range(c["n_mfcc"])] + list(SPECTRAL))

    @property
    def columns(self) -> list[str]:
        names = [f"{lld}_{s}" for lld in self._llds() for s in STATS]
        return names + [f"f0_{s}" for s in STATS] + list(PITCH_EXTRA)

    def compute(self, y: np.ndarray) -> np.ndarray:
        c = self._config
        sr = self.sample_rate
        y = self._check_length(np.asarray(y, dtype=np.float32), None)
        # Energy first: the silence trim decides which frames the rest is computed on.
        frames = _frames(y, N_FFT)                                     # (F, 512)
        core = frames[:, (N_FFT - WIN) // 2:(N_FFT + WIN) // 2]      # the 25 ms window
        rms_db = 10 * np.log10(np.einsum("ij,ij->i", core, core) / WIN + POWER_FLOOR)
        keep = _trim(rms_db, float(c["trim_db"]))
        frames, core, rms_db = frames[keep], core[keep], rms_db[keep]
        zcr = np.count_nonzero(np.diff(np.signbit(core), axis=-1), axis=-1) / (WIN - 1)

        windowed = np.multiply(frames, _window(N_FFT, WIN),
                               out=_frame_buffer("windowed", len(frames), N_FFT, np.float32))
        spec = np.fft.rfft(windowed, axis=-1, out=_frame_buffer(
            "spec", len(frames), N_FFT // 2 + 1, np.complex64))
        power = (spec.real**2 + spec.imag**2).astype(np.float32)      # (F, 257)
        mel_db = 10 * np.log10(_mel_basis(sr, N_FFT, c["n_mels"], 0.0, sr / 2.0) @ power.T
                               + POWER_FLOOR)                          # (M, F)
        mfcc = _dct(c["n_mfcc"], c["n_mels"]) @ mel_db
        dmfcc = _delta(mfcc)

        freqs = (np.fft.rfftfreq(N_FFT, 1.0 / sr) / 1000.0).astype(np.float32)  # kHz
        mag = np.sqrt(power)
        total = mag.sum(axis=-1) + 1e-12
        centroid = mag @ freqs / total
        bandwidth = np.sqrt(np.maximum(mag @ freqs**2 / total - centroid**2, 0.0))
        cum = np.cumsum(mag, axis=-1)
        rolloff = freqs[np.minimum((cum < 0.85 * cum[:, -1:]).sum(axis=-1), len(freqs) - 1)]
        # log of (geometric mean / arithmetic mean) of the power spectrum.
        flatness = (np.log(power + POWER_FLOOR).mean(axis=-1)
                    - np.log(power.mean(axis=-1) + POWER_FLOOR))
        flux = np.zeros(len(frames), np.float32)
        flux[1:] = ((np.diff(mel_db, axis=-1)) ** 2).mean(axis=0)

        lld = np.concatenate([mel_db, mfcc, dmfcc, np.stack([
            centroid, bandwidth, rolloff, flatness, flux, rms_db, _delta(rms_db[None])[0], zcr,
        ])])
        rms_k = rms_db
        # Voiced: a clear periodicity dip in a frame not far below the loudest. Pitch only
        # where the level allows voicing (the 40 ms frames are centred like the STFT's).
        loud = np.flatnonzero(rms_k >= rms_k.max() - 30.0)
        f0_k, dip_k = yin_track(y, sr, float(c["f0_min"]), float(c["f0_max"]), loud + keep.start)
        voiced = np.zeros(rms_k.size, bool)
        voiced[loud] = dip_k < VOICED_MAX_CMNDF
        semis = 12 * np.log2(f0_k[dip_k < VOICED_MAX_CMNDF] / 27.5)
        dabs = float(np.abs(np.diff(semis)).mean()) if semis.size > 1 else 0.0
        extra = [dabs, float(voiced.mean()),
                 float(rms_k[voiced].mean()) if voiced.any() else 0.0,
                 float(rms_k[~voiced].mean()) if (~voiced).any() else 0.0]
        out = np.concatenate([_stats(lld).ravel(), _stats(semis[None]).ravel(), extra])
        return out.astype(np.float32)
