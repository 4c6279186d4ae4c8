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
builds each filter bank once per process (and tuning) and reuses it.

The rest of the speed comes from doing librosa's arithmetic without its per-call costs
(validation, re-padding, re-framing, float64 temporaries), which dominate on 108 frames:
one ``piptrack`` serves both tuning estimates and only looks at its 150 Hz-4 kHz band;
centroid, bandwidth, roll-off, contrast and zero-crossing rate are a few numpy lines on
arrays we already have; the seven CQT octaves are seven small FFTs and dense products on
the band of FFT bins the filters use; the STFT's large temporaries are per-thread buffers
(fresh 2 MB arrays every clip cost ~800 page faults). Deviations from the recipe's float
arithmetic (float32 FFT in the CQT, moments for the bandwidth, summation order) are checked
against :func:`seed178_reference` by the tests (rtol 1e-4, atol 1e-6) and, over all of
RAVDESS, by ``bench/bench_features.py``; the tuning estimates are the recipe's exactly.
"""

from __future__ import annotations

import functools
import importlib
import threading
import warnings
from typing import Any, ClassVar

import librosa
import numpy as np
import scipy.fft
import soxr

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
# The constant-Q filter banks and other filters, built once per process (and tuning).

_cq = importlib.import_module("librosa.core.constantq")
# librosa's private helper; if a release renames it we fall back to librosa.cqt.
_EARLY_DOWNSAMPLE = getattr(_cq, "__early_downsample", None)


@functools.lru_cache(maxsize=512)
def _octave_filters(rel_freqs: bytes, alpha: bytes) -> tuple[int, int, np.ndarray]:
    """One octave's CQT filters in the FFT domain: ``(n_fft, first_bin, filters)``.

    A filter bank depends on frequencies only relative to the sample rate, so every octave
    (half the rate, half the frequencies) shares one bank: built once per tuning, not
    seven times. The relative frequencies are rounded to 12 digits so the octaves'
    last-bit differences map to one key. librosa keeps the bank sparse (1 % of energy
    dropped); its nonzeros span one band of FFT bins, kept here as a dense block
    ``(bins, filters)`` so the projection is one small matrix product.
    """
    # librosa's __vqt_filter_fft(sr=1, freqs, filter_scale=1, norm=1, sparsity=0.01):
    basis, lengths = librosa.filters.wavelet(
        freqs=np.frombuffer(rel_freqs), sr=1.0, window="hann", filter_scale=1, norm=1,
        pad_fft=True, gamma=0, alpha=np.frombuffer(alpha),
    )
    n_fft = basis.shape[1]
    basis *= lengths[:, np.newaxis] / float(n_fft)
    fft_basis = scipy.fft.fft(basis, n=n_fft, axis=1)[:, : n_fft // 2 + 1]
    # ... then util.sparsify_rows(quantile=0.01), vectorised (librosa fills a lil_matrix
    # row by row, half of the bank's cost): per row, drop the smallest magnitudes that
    # together hold under 1 % of the row's sum.
    mags = np.abs(fft_basis)
    ordered = np.sort(mags, axis=1)
    cumulative = np.cumsum(ordered / np.sum(mags, axis=1, keepdims=True), axis=1)
    cut = ordered[np.arange(len(mags)), np.argmin(cumulative < 0.01, axis=1)]
    dense = np.where(mags >= cut[:, None], fft_basis, 0).astype(np.complex64)
    used = np.flatnonzero(dense.any(axis=0))
    first, last = int(used[0]), int(used[-1]) + 1
    return n_fft, first, np.ascontiguousarray(dense[:, first:last].T)


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


@functools.lru_cache(maxsize=8)
def _mel_basis(sr: int, n_fft: int) -> np.ndarray:
    return librosa.filters.mel(sr=sr, n_fft=n_fft)


@functools.lru_cache(maxsize=256)
def _chroma_basis(sr: int, n_fft: int, tuning: float) -> np.ndarray:
    return librosa.filters.chroma(sr=sr, n_fft=n_fft, tuning=tuning)


# ---------------------------------------------------------------------------------------
# The fast path. Each helper below is the librosa call named in its docstring, written as
# the same arithmetic on arrays we already have, without librosa's per-call validation,
# re-padding and re-framing (which cost more than the arithmetic on 108 frames).

_N_FFT, _HOP = 2048, 512


def _frames(y: np.ndarray, n_fft: int, hop: int, mode: str = "constant") -> np.ndarray:
    """Centred frames ``(n_frames, n_fft)`` (a view), as librosa's ``center=True``."""
    padded = np.pad(y, n_fft // 2, mode=mode)
    return np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    return librosa.filters.get_window("hann", n_fft, fftbins=True)


def _buffer(name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A per-thread scratch array, reused across calls.

    The STFT's float64 temporaries are ~2 MB each; allocating them afresh every clip made
    glibc hand the memory back to the OS and fault it in again (~800 page faults, as much
    time as the FFT itself).
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (name, shape, np.dtype(dtype).str)
    if key not in buffers:
        buffers[key] = np.empty(shape, dtype)
    return buffers[key]


_SCRATCH = threading.local()


def _stft_magnitude(y: np.ndarray) -> np.ndarray:
    """``np.abs(librosa.stft(y))``: float64 FFT of the windowed frames, stored complex64.

    numpy's FFT is the same pocketfft as scipy's that librosa calls (bit-identical output)
    and can write into a buffer.
    """
    frames = _frames(y, _N_FFT, _HOP)
    windowed = np.multiply(frames, _hann(_N_FFT),
                           out=_buffer("windowed", frames.shape, np.float64))
    spectrum = np.fft.rfft(windowed, axis=-1,
                           out=_buffer("spectrum", (len(frames), _N_FFT // 2 + 1), complex))
    stored = _buffer("stored", spectrum.shape, np.complex64)
    np.copyto(stored, spectrum, casting="same_kind")      # librosa's complex64 result
    return np.abs(stored).T


def _normalize(S: np.ndarray, norm: float) -> np.ndarray:
    """``librosa.util.normalize(S, norm=norm, axis=-2)`` for finite S (norm 1 or inf)."""
    mag = np.abs(S).astype(np.float64)
    length = mag.max(axis=-2, keepdims=True) if norm == np.inf else mag.sum(axis=-2, keepdims=True)
    length[length < np.finfo(S.dtype).tiny] = 1.0
    return (S / length).astype(S.dtype)


def _tunings(S: np.ndarray, sr: int) -> tuple[float, float]:
    """``estimate_tuning(S=S, bins_per_octave=12)`` and ``(…=36)`` from one ``piptrack``.

    piptrack (fmin 150 Hz, fmax 4 kHz, threshold 0.1) keeps bins inside the band that are
    local maxima of S after zeroing values at or below a tenth of the frame's maximum; it
    refines each by parabolic interpolation. The band never touches the spectrum's edges,
    so only the interior stencils are needed. The dtypes follow librosa's (numba promotes
    ``2 * float32`` to float64 in the interpolation).
    """
    freqs = np.arange(S.shape[0]) * (sr / _N_FFT)
    lo, hi = np.flatnonzero((freqs >= 150.0) & (freqs < min(4000.0, sr / 2)))[[0, -1]]
    ref = 0.1 * S.max(axis=0)
    gated = S * (S > ref)
    band = gated[lo:hi + 1]
    peaks = (band > gated[lo - 1:hi]) & (band >= gated[lo + 1:hi + 2])
    k, t = np.nonzero(peaks)
    k = k + lo
    x0 = S[k, t]
    xm, xp = S[k - 1, t], S[k + 1, t]
    a = (xp + xm).astype(np.float64) - 2 * x0.astype(np.float64)
    b = (xp - xm).astype(np.float64) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.where(np.abs(b) >= np.abs(a), 0.0, -b / a).astype(np.float32)
    pitch = ((k + shift) * (float(sr) / _N_FFT)).astype(np.float32)
    avg = (xp - xm) / 2.0                                  # np.gradient's interior formula
    mag = x0 + np.float32(0.5) * avg * shift
    keep = pitch > 0
    threshold = np.median(mag[keep]) if keep.any() else 0.0
    chosen = pitch[(mag >= threshold) & keep]
    return tuple(float(librosa.pitch_tuning(chosen, resolution=0.01, bins_per_octave=b))
                 for b in (12, 36))


def _zcr_mean(y: np.ndarray) -> float:
    """Mean over frames of ``zero_crossing_rate(y=y)`` (edge padding, threshold 1e-10)."""
    negative = np.pad(y, _N_FFT // 2, mode="edge") < -np.float32(1e-10)
    counts = np.concatenate(([0], np.cumsum(negative[1:] != negative[:-1])))
    starts = np.arange(0, negative.size - _N_FFT + 1, _HOP)
    rate = (counts[starts + _N_FFT - 1] - counts[starts]) / _N_FFT
    return float(np.mean(rate))


@functools.lru_cache(maxsize=8)
def _moment_weights(sr: int) -> np.ndarray:
    freq = _fft_freqs(sr)
    return np.stack([np.ones_like(freq), freq, freq**2])


def _centroid_bandwidth(S: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """``spectral_centroid(S=S)`` and ``spectral_bandwidth(S=S, centroid=…)`` (p=2, norm).

    Both are moments of each frame's L1-normalised spectrum: the centroid is Σ f·S / ΣS and
    the bandwidth sqrt(Σ (f − c)²·S / ΣS) = sqrt(Σ f²·S / ΣS − c²). Summed in float64 as
    librosa does, without its (frequency × frame) float64 temporaries; the bandwidth's
    subtraction loses nothing measurable in float64 (c² is at most ~10× the result).
    """
    total, first, second = np.einsum("kf,ft->kt", _moment_weights(sr), S)
    total[total < np.finfo(S.dtype).tiny] = 1.0          # silent frames: 0, as librosa
    centroid = first / total
    bandwidth = np.sqrt(np.maximum(second / total - centroid**2, 0.0))
    return centroid, bandwidth


def _rolloff(S: np.ndarray, freq: np.ndarray) -> np.ndarray:
    """``spectral_rolloff(S=S)``: the lowest frequency holding 85 % of the frame's sum."""
    total = np.cumsum(S, axis=0)
    first = np.argmax(total >= 0.85 * total[-1], axis=0)
    return freq[first]


@functools.lru_cache(maxsize=8)
def _contrast_bands(sr: int, n_bins: int) -> list[tuple[slice, int]]:
    # spectral_contrast's defaults: fmin 200 Hz, 6 octave bands, quantile 0.02.
    freq = librosa.fft_frequencies(sr=sr, n_fft=2 * (n_bins - 1))
    octa = np.zeros(8)
    octa[1:] = 200.0 * 2.0 ** np.arange(0, 7)
    bands = []
    for k, (f_low, f_high) in enumerate(zip(octa[:-1], octa[1:], strict=True)):
        current = np.logical_and(freq >= f_low, freq <= f_high)
        idx = np.flatnonzero(current)
        if k > 0:
            current[idx[0] - 1] = True
        if k == 6:
            current[idx[-1] + 1:] = True
        rows = np.flatnonzero(current)
        stop = rows[-1] if k < 6 else rows[-1] + 1        # librosa drops the band's last bin
        count = int(np.maximum(np.rint(0.02 * np.sum(current)), 1))
        bands.append((slice(rows[0], stop), count))
    return bands


def _contrast(S: np.ndarray, sr: int) -> np.ndarray:
    """``spectral_contrast(S=S, sr=sr)``: dB peak-minus-valley per octave band."""
    bands = _contrast_bands(sr, S.shape[0])
    valley = np.zeros((len(bands), S.shape[1]))
    peak = np.zeros_like(valley)
    for k, (rows, count) in enumerate(bands):
        ordered = np.sort(S[rows], axis=0)
        valley[k] = np.mean(ordered[:count], axis=0)
        peak[k] = np.mean(ordered[-count:], axis=0)
    return librosa.power_to_db(peak) - librosa.power_to_db(valley)


def _cqt_magnitude(y: np.ndarray, sr: int, tuning: float) -> np.ndarray:
    """``np.abs(librosa.cqt(y, sr=sr, tuning=tuning, n_bins=252, bins_per_octave=36))``.

    librosa's recursive CQT: each octave is an STFT (n_fft from the filter bank, box
    window) of the signal halved once more, projected on the octave's filters. Every octave
    has the same filters relative to its rate, hence the same n_fft and the same number of
    frames, so the seven STFTs are one batched FFT and the projections one sparse product.
    """
    hop_length, n_bins, bins_per_octave = 512, 252, 36     # chroma_cqt's 7 octaves x 36
    if _EARLY_DOWNSAMPLE is None:  # pragma: no cover - depends on the installed librosa
        return np.abs(librosa.cqt(y, sr=sr, hop_length=hop_length, n_bins=n_bins,
                                  bins_per_octave=bins_per_octave, tuning=tuning))
    n_octaves = n_bins // bins_per_octave
    freqs, alpha, lengths, cutoff = _cqt_plan(float(sr), n_bins, bins_per_octave, tuning)
    y, sr_ds, hop = _EARLY_DOWNSAMPLE(
        y, sr, hop_length, "soxr_hq", n_octaves, sr / 2.0, cutoff, True
    )
    top = slice(n_bins - bins_per_octave, None)
    n_fft, first, filters = _octave_filters(np.round(freqs[top] / float(sr_ds), 12).tobytes(),
                                            np.round(alpha[top], 12).tobytes())
    bins = slice(first, first + filters.shape[0])
    responses = []
    my_y, my_sr, my_hop = y, float(sr_ds), hop
    for _ in range(n_octaves):
        # Box window: librosa's FFT runs in float64; float32 here (2x faster), and the
        # recipe's tonnetz still agrees within the tests' tolerance (bench checks all files).
        # (scipy's float32 FFT is ~8x faster than numpy's here.)
        spectrum = scipy.fft.rfft(_frames(my_y, n_fft, my_hop), axis=-1)
        # librosa rescales each octave's basis by sqrt(sr / octave rate).
        responses.append((spectrum[:, bins] @ filters) * np.sqrt(sr_ds / my_sr))
        if my_hop % 2 == 0:
            my_hop //= 2
            my_sr /= 2.0
            my_y = _halve(my_y)
    n_frames = min(r.shape[0] for r in responses)
    # Octave i fills bins [n_bins - (i+1)*bpo, n_bins - i*bpo): lowest octave first.
    V = np.concatenate([r[:n_frames].T for r in responses[::-1]])[-n_bins:]
    lengths_ds = lengths if sr_ds == sr else librosa.filters.wavelet_lengths(
        freqs=freqs, sr=sr_ds, window="hann", filter_scale=1, gamma=0, alpha=alpha
    )[0]
    return np.abs(V / np.sqrt(lengths_ds)[:, None]).astype(np.float32)


def _halve(y: np.ndarray) -> np.ndarray:
    """``librosa.resample(y, orig_sr=2, target_sr=1, res_type="soxr_hq", scale=True)``."""
    n = int(np.ceil(y.shape[-1] * 0.5))
    out = soxr.resample(y, 2, 1, quality="soxr_hq")
    out = librosa.util.fix_length(out, size=n)
    out /= np.sqrt(0.5)
    return np.asarray(out, dtype=y.dtype)


@functools.lru_cache(maxsize=8)
def _fft_freqs(sr: int) -> np.ndarray:
    return librosa.fft_frequencies(sr=sr, n_fft=_N_FFT)


@functools.lru_cache(maxsize=8)
def _cq_to_chroma() -> np.ndarray:
    return librosa.filters.cq_to_chroma(252, bins_per_octave=36, n_chroma=12)


@functools.lru_cache(maxsize=1)
def _tonnetz_basis() -> np.ndarray:
    # librosa.feature.tonnetz's projection of 12 chroma onto fifths, minor and major thirds.
    dim_map = np.linspace(0, 12, num=12, endpoint=False)
    scale = np.asarray([7.0 / 6, 7.0 / 6, 3.0 / 2, 3.0 / 2, 2.0 / 3, 2.0 / 3])
    V = np.multiply.outer(scale, dim_map)
    V[::2] -= 0.5
    R = np.array([1, 1, 1, 1, 0.5, 0.5])
    return R[:, np.newaxis] * np.cos(np.pi * V)


def seed178_fast(y: np.ndarray, sr: int = 22050) -> np.ndarray:
    """:func:`seed178_reference` from a single magnitude STFT (see module docstring)."""
    S = _stft_magnitude(y)                               # |STFT|, what every y= call computes
    freq = _fft_freqs(sr)
    power = np.square(S, out=_buffer("power", S.shape[::-1], np.float32).T)
    mel = np.einsum("...ft,mf->...mt", power, _mel_basis(sr, _N_FFT), optimize=True)
    mfcc = scipy.fft.dct(librosa.power_to_db(mel), axis=-2, type=2, norm="ortho")[:20]

    with warnings.catch_warnings():
        # As in the recipe: CQT's low octaves on short clips; no pitch peaks in silence.
        warnings.simplefilter("ignore", UserWarning)
        # chroma_stft(S=|STFT|) and cqt(y=) both estimate tuning from piptrack(|STFT|).
        tuning12, tuning36 = _tunings(S, sr)
        C = _cqt_magnitude(y, sr, tuning36)
    chroma = _normalize(np.einsum("cf,...ft->...ct", _chroma_basis(sr, _N_FFT, tuning12), S,
                                  optimize=True), np.inf)
    centroid, bandwidth = _centroid_bandwidth(S, sr)
    chroma_cqt = _normalize(np.einsum("cf,...ft->...ct", _cq_to_chroma(), C, optimize=True),
                            np.inf)
    tonnetz = np.einsum("pc,...ci->...pi", _tonnetz_basis(), _normalize(chroma_cqt, 1),
                        optimize=True)
    parts = [
        _zcr_mean(y),
        _mean(chroma),
        _mean(mfcc),
        _mean(librosa.feature.rms(y=y)),  # time-domain RMS, as rms(y=) is; rms(S=) differs
        _mean(mel),
        _mean(_rolloff(S, freq)),
        _mean(centroid),
        _mean(_contrast(S, sr)),
        _mean(bandwidth),
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
    default_level_dbfs: ClassVar[float | None] = None  # the seed's recipe used levels as is
    min_seconds: ClassVar[float] = 0.1

    def _span(self) -> tuple[float, float | None]:
        return float(self._config["offset"]), self._config["duration"]

    @property
    def columns(self) -> list[str]:
        return list(COLUMNS)

    def compute(self, y: np.ndarray) -> np.ndarray:
        y = self._check_length(np.asarray(y, dtype=np.float32), None)
        return seed178_fast(y, self.sample_rate)
