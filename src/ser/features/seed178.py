"""``seed178``: the seed notebook's 178-value clip vector, computed from one STFT.

The seed loaded 2.5 s from 0.6 s at 22050 Hz and concatenated frame means of:
zero-crossing rate (1), chroma_stft on |STFT| (12), MFCC (20), RMS (1), mel (128),
roll-off (1), centroid (1), contrast (7), bandwidth (1), tonnetz (6). :func:`seed178_reference`
is that recipe written the straightforward way (every librosa call recomputing its own
STFT); :meth:`Seed178.compute` gives the same numbers (tests check it) but computes the
magnitude STFT once and derives everything from it. The seed's source is not in this
repository; we use the plain ``tonnetz(y=y, sr=sr)`` (no harmonic separation), the
common form of this recipe.

Where the time goes in the recipe is tonnetz: its constant-Q transform rebuilds seven
octaves of wavelet filters for every clip. The filters depend only on the sample rate and
the estimated tuning, which librosa quantises to 1/100 of a bin, so :func:`_cqt_magnitude`
builds each filter bank once per process and reuses it; the arithmetic on the signal
(early downsampling, per-octave STFT, filter projection) is librosa's own, in the same order.
"""

from __future__ import annotations

import functools
import importlib
import warnings
from typing import Any, ClassVar

import librosa
import numpy as np

from ser.features.base import FeatureSet, register

GROUPS: tuple[tuple[str, int], ...] = (
    ("zcr", 1), ("chroma", 12), ("mfcc", 20), ("rms", 1), ("mel", 128), ("rolloff", 1),
    ("centroid", 1), ("contrast", 7), ("bandwidth", 1), ("tonnetz", 6),
)


def _column_names() -> list[str]:
    widths = {"chroma": 2, "mfcc": 2, "mel": 3}
    names: list[str] = []
    for group, n in GROUPS:
        if n == 1:
            names.append(group)
        elif group in widths:
            names += [f"{group}_{i:0{widths[group]}d}" for i in range(1, n + 1)]
        else:
            names += [f"{group}_{i}" for i in range(1, n + 1)]
    return names


COLUMNS = _column_names()
assert len(COLUMNS) == 178


def _mean(feature: np.ndarray) -> np.ndarray:
    # np.mean(F.T, axis=0) as the seed wrote it, i.e. the mean over frames.
    return np.mean(feature.T, axis=0)


def seed178_reference(y: np.ndarray, sr: int = 22050) -> np.ndarray:
    """The seed's recipe, one librosa call per feature. Slow; the yardstick for tests."""
    stft = np.abs(librosa.stft(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # CQT's low octaves on short clips
        parts = [
            _mean(librosa.feature.zero_crossing_rate(y=y)),
            _mean(librosa.feature.chroma_stft(S=stft, sr=sr)),
            _mean(librosa.feature.mfcc(y=y, sr=sr)),
            _mean(librosa.feature.rms(y=y)),
            _mean(librosa.feature.melspectrogram(y=y, sr=sr)),
            _mean(librosa.feature.spectral_rolloff(y=y, sr=sr)),
            _mean(librosa.feature.spectral_centroid(y=y, sr=sr)),
            _mean(librosa.feature.spectral_contrast(y=y, sr=sr)),
            _mean(librosa.feature.spectral_bandwidth(y=y, sr=sr)),
            _mean(librosa.feature.tonnetz(y=y, sr=sr)),
        ]
    return np.hstack(parts).astype(np.float32)


# ---------------------------------------------------------------------------------------
# The constant-Q magnitude with filter banks built once per (rate, tuning).

_cq = importlib.import_module("librosa.core.constantq")
try:  # librosa's private helpers; if a release renames them we fall back to librosa.cqt
    _FILTER_FFT = getattr(_cq, "__vqt_filter_fft")
    _RESPONSE = getattr(_cq, "__cqt_response")
    _TRIM_STACK = getattr(_cq, "__trim_stack")
    _EARLY_DOWNSAMPLE = getattr(_cq, "__early_downsample")
except AttributeError:  # pragma: no cover - depends on the installed librosa
    _FILTER_FFT = None


@functools.lru_cache(maxsize=512)
def _normalised_basis(rel_freqs: bytes, alpha: bytes, dtype: str):
    # A filter bank depends on frequencies only relative to the sample rate, so every
    # octave (half the rate, half the frequencies) shares one bank: built once per tuning,
    # not seven times. The relative frequencies are rounded to 12 digits so the octaves'
    # last-bit differences map to one key; the filters differ from librosa's own by float
    # rounding at most (the test holds them to the recipe).
    fft_basis, n_fft, _ = _FILTER_FFT(
        1.0, np.frombuffer(rel_freqs), 1, 1, 0.01, window="hann", gamma=0,
        dtype=np.dtype(dtype), alpha=np.frombuffer(alpha),
    )
    return fft_basis, n_fft


def _octave_basis(my_sr: float, sr: float, freqs: np.ndarray, alpha: np.ndarray, dtype):
    """One octave's sparse FFT filter basis, rescaled for downsampling as librosa does."""
    rel = np.round(freqs / my_sr, 12)
    basis, n_fft = _normalised_basis(rel.tobytes(), np.round(alpha, 12).tobytes(),
                                     np.dtype(dtype).str)
    return basis * np.sqrt(sr / my_sr), n_fft


@functools.lru_cache(maxsize=256)
def _cqt_plan(sr: float, n_bins: int, bins_per_octave: int, tuning: float):
    fmin = librosa.note_to_hz("C1") * 2.0 ** (tuning / bins_per_octave)
    freqs = librosa.interval_frequencies(
        n_bins=n_bins, fmin=fmin, intervals="equal", bins_per_octave=bins_per_octave, sort=True
    )
    alpha = librosa.filters._relative_bandwidth(freqs=freqs)
    lengths, cutoff = librosa.filters.wavelet_lengths(
        freqs=freqs, sr=sr, window="hann", filter_scale=1, gamma=0, alpha=alpha
    )
    return freqs, alpha, lengths, cutoff


def _cqt_magnitude(y: np.ndarray, sr: int, tuning: float, *, hop_length: int = 512,
                   n_bins: int = 252, bins_per_octave: int = 36) -> np.ndarray:
    """``np.abs(librosa.cqt(y, sr=sr, tuning=tuning, n_bins=…, bins_per_octave=…))``."""
    if _FILTER_FFT is None:  # pragma: no cover
        return np.abs(librosa.cqt(y, sr=sr, hop_length=hop_length, n_bins=n_bins,
                                  bins_per_octave=bins_per_octave, tuning=tuning))
    n_octaves = int(np.ceil(n_bins / bins_per_octave))
    n_filters = min(bins_per_octave, n_bins)
    dtype = librosa.util.dtype_r2c(y.dtype)
    freqs, alpha, lengths, cutoff = _cqt_plan(float(sr), n_bins, bins_per_octave, tuning)
    y, sr_ds, hop = _EARLY_DOWNSAMPLE(
        y, sr, hop_length, "soxr_hq", n_octaves, sr / 2.0, cutoff, True
    )
    responses = []
    my_y, my_sr, my_hop = y, sr_ds, hop
    for i in range(n_octaves):
        sl = slice(-n_filters, None) if i == 0 else slice(-n_filters * (i + 1), -n_filters * i)
        basis, n_fft = _octave_basis(float(my_sr), float(sr_ds), freqs[sl], alpha[sl], dtype)
        responses.append(_RESPONSE(my_y, n_fft, my_hop, basis, "constant", dtype=dtype))
        if my_hop % 2 == 0:
            my_hop //= 2
            my_sr /= 2.0
            my_y = librosa.resample(my_y, orig_sr=2, target_sr=1, res_type="soxr_hq", scale=True)
    V = _TRIM_STACK(responses, n_bins, dtype)
    # librosa recomputes the lengths at the (possibly downsampled) rate; same formula.
    lengths_ds, _ = librosa.filters.wavelet_lengths(
        freqs=freqs, sr=sr_ds, window="hann", filter_scale=1, gamma=0, alpha=alpha
    ) if sr_ds != sr else (lengths, None)
    V /= np.sqrt(lengths_ds)[:, None]
    return np.abs(V)


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=n_fft)


@functools.lru_cache(maxsize=256)
def _chroma_basis(sr: int, n_fft: int, tuning: float) -> np.ndarray:
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning)


def _tuning(pitch: np.ndarray, mag: np.ndarray, bins_per_octave: int) -> float:
    # librosa.estimate_tuning after its piptrack call, so one piptrack serves both uses.
    mask = pitch > 0
    threshold = np.median(mag[mask]) if mask.any() else 0.0
    return float(librosa.pitch_tuning(
        pitch[(mag >= threshold) & mask], resolution=0.01, bins_per_octave=bins_per_octave
    ))


def seed178_fast(y: np.ndarray, sr: int = 22050) -> np.ndarray:
    """:func:`seed178_reference` from a single magnitude STFT (see module docstring)."""
    n_fft = 2048
    S = np.abs(librosa.stft(y, n_fft=n_fft))          # |STFT|, what every y= call computes
    P = S**2                                            # power, as melspectrogram(y=) uses
    mel = np.einsum("...ft,mf->...mt", P, _mel_basis(sr, n_fft), optimize=True)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=20)

    # chroma_stft(S=|STFT|) and cqt(y=) both estimate tuning from piptrack(|STFT|).
    pitch, mag = librosa.piptrack(S=S, sr=sr, n_fft=n_fft)
    chroma = np.einsum("cf,...ft->...ct", _chroma_basis(sr, n_fft, _tuning(pitch, mag, 12)),
                       S, optimize=True)
    chroma = librosa.util.normalize(chroma, norm=np.inf, axis=-2)

    centroid = librosa.feature.spectral_centroid(S=S, sr=sr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        C = _cqt_magnitude(y, sr, _tuning(pitch, mag, 36))
    tonnetz = librosa.feature.tonnetz(chroma=librosa.feature.chroma_cqt(C=C, sr=sr))
    parts = [
        _mean(librosa.feature.zero_crossing_rate(y=y)),
        _mean(chroma),
        _mean(mfcc),
        _mean(librosa.feature.rms(y=y)),  # time-domain RMS, as rms(y=) is; rms(S=) differs
        _mean(mel),
        _mean(librosa.feature.spectral_rolloff(S=S, sr=sr)),
        _mean(centroid),
        _mean(librosa.feature.spectral_contrast(S=S, sr=sr)),
        _mean(librosa.feature.spectral_bandwidth(S=S, sr=sr, centroid=centroid)),
        _mean(tonnetz),
    ]
    return np.hstack(parts).astype(np.float32)


@register
class Seed178(FeatureSet):
    """The seed notebook's 178-value vector (2.5 s from 0.6 s, 22050 Hz).

    >>> fs = get_feature_set("seed178")                         # doctest: +SKIP
    >>> fs.compute(fs.load("clip.wav")).shape                   # doctest: +SKIP
    (178,)
    """

    name: ClassVar[str] = "seed178"
    version: ClassVar[int] = 1
    kind: ClassVar[str] = "vector"
    defaults: ClassVar[dict[str, Any]] = {"sample_rate": 22050, "offset": 0.6, "duration": 2.5}
    min_seconds: ClassVar[float] = 0.1

    def _span(self) -> tuple[float, float | None]:
        return float(self._config["offset"]), self._config["duration"]

    @property
    def columns(self) -> list[str]:
        return list(COLUMNS)

    def compute(self, y: np.ndarray) -> np.ndarray:
        y = self._check_length(np.asarray(y, dtype=np.float32), None)
        return seed178_fast(y, self.sample_rate)
