"""A generated corpus of sounds that are not speech, for the speech rule (issue #12).

Tones, chords, sweeps, coloured noise, clicks, mains hum, music-like signals, silence and
very short fragments (of numpy speech too: a tenth of a second of voice carries no emotion).
``corpus()`` returns ``{name: (signal, sample_rate)}``; every signal is deterministic.
``bench/experiments_speech.py`` measures the rule on it and on real recordings.
"""

from __future__ import annotations

import numpy as np
from fixtures import babble

SR = 16000


def _t(seconds: float, sr: int = SR) -> np.ndarray:
    return np.arange(int(round(seconds * sr))) / sr


def _norm(y: np.ndarray, level: float = 0.3) -> np.ndarray:
    peak = np.abs(y).max()
    return (y / peak * level if peak > 0 else y).astype(np.float32)


def _coloured(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1]
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def _notes(freqs: list[float], note: float, rng: np.random.Generator, harmonics: int = 6,
           decay: float = 4.0) -> np.ndarray:
    """Plucked/piano-like notes one after another: harmonics with an exponential decay."""
    t = _t(note)
    out = []
    for f0 in freqs:
        y = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) / k ** 1.2
                for k in range(1, harmonics + 1) if k * f0 < 7500)
        out.append(y * np.exp(-decay * t) * np.minimum(1, t / 0.005))
    return np.concatenate(out)


def corpus() -> dict[str, tuple[np.ndarray, int]]:
    rng = np.random.default_rng(12)
    t3 = _t(3.0)
    n3 = t3.size
    out: dict[str, np.ndarray] = {}
    out["silence"] = np.zeros(n3, np.float32)
    out["near-silence"] = (1e-4 * rng.standard_normal(n3)).astype(np.float32)
    for f in (100, 440, 1000, 3000):
        out[f"tone-{f}hz"] = _norm(np.sin(2 * np.pi * f * t3))
    out["tone-440hz-loud"] = _norm(np.sin(2 * np.pi * 440 * t3), 0.99)
    out["chord-major"] = _norm(sum(np.sin(2 * np.pi * f * t3) for f in (261.6, 329.6, 392.0)))
    out["chord-cluster"] = _norm(sum(np.sin(2 * np.pi * f * t3) for f in (200, 212, 225, 238)))
    out["sweep-linear"] = _norm(np.sin(2 * np.pi * (100 * t3 + (4000 - 100) / 6 * t3 ** 2)))
    k = np.log(8000 / 50) / 3
    out["sweep-log"] = _norm(np.sin(2 * np.pi * 50 * (np.exp(k * t3) - 1) / k))
    out["sweep-voice-range"] = _norm(np.sin(2 * np.pi * (100 * t3 + 100 / 6 * t3 ** 2)))
    out["noise-white"] = _norm(rng.standard_normal(n3), 0.2)
    out["noise-pink"] = _norm(_coloured(n3, 1.0, rng))
    out["noise-brown"] = _norm(_coloured(n3, 2.0, rng))
    out["noise-white-10s"] = _norm(rng.standard_normal(10 * SR), 0.2)
    clicks = np.zeros(n3)
    clicks[::SR] = 1.0
    out["clicks-1hz"] = _norm(clicks, 0.9)
    fast = np.zeros(n3)
    fast[::SR // 10] = 1.0
    out["clicks-10hz"] = _norm(fast, 0.9)
    out["clicks-random"] = _norm((rng.random(n3) < 0.002) * rng.standard_normal(n3), 0.9)
    out["hum-50hz"] = _norm(sum(np.sin(2 * np.pi * 50 * k * t3) / k for k in range(1, 8)))
    out["hum-60hz-buzz"] = _norm(np.sign(np.sin(2 * np.pi * 60 * t3))
                                 + 0.1 * rng.standard_normal(n3))
    out["square-150hz"] = _norm(np.sign(np.sin(2 * np.pi * 150 * t3)))
    out["sawtooth-150hz"] = _norm(2 * (150 * t3 % 1.0) - 1)
    out["am-tone-4hz"] = _norm(np.sin(2 * np.pi * 300 * t3) * (1 + np.sin(2 * np.pi * 4 * t3)))
    out["vibrato-tone"] = _norm(np.sin(2 * np.pi * np.cumsum(440 * (1 + 0.02 * np.sin(
        2 * np.pi * 5.5 * t3))) / SR))
    out["siren"] = _norm(np.sin(2 * np.pi * np.cumsum(700 + 300 * np.sin(2 * np.pi * 0.5 * t3))
                                / SR))
    out["dtmf"] = _norm(np.concatenate([
        (np.sin(2 * np.pi * a * _t(0.2)) + np.sin(2 * np.pi * b * _t(0.2)))
        * (np.arange(int(0.2 * SR)) < 0.12 * SR)
        for a, b in [(697, 1209), (770, 1336), (852, 1477), (941, 1633)] * 4]))
    out["beeps"] = _norm(np.sin(2 * np.pi * 1000 * t3) * ((t3 % 0.5) < 0.15))
    out["music-melody"] = _norm(_notes([262, 294, 330, 349, 392, 440, 494, 523, 494, 440, 392,
                                        349], 0.25, rng))
    out["music-arpeggio"] = _norm(_notes([131, 165, 196, 262] * 3, 0.25, rng, harmonics=10,
                                         decay=2.0))
    kick = np.sin(2 * np.pi * 60 * _t(0.25)) * np.exp(-20 * _t(0.25))
    snare = rng.standard_normal(int(0.25 * SR)) * np.exp(-30 * _t(0.25))
    out["music-drums"] = _norm(np.concatenate([kick, snare] * 6))
    out["music-organ-chords"] = _norm(np.concatenate([
        sum(np.sin(2 * np.pi * f * k * _t(0.75)) / k for f in chord for k in (1, 2, 3))
        for chord in [(262, 330, 392), (220, 262, 330), (175, 220, 262), (196, 247, 294)]]))
    rain = _coloured(n3, 0.5, rng) * 0.3 + (rng.random(n3) < 0.003) * rng.standard_normal(n3)
    out["rain"] = _norm(rain)
    wind = _coloured(n3, 2.0, rng) * (1.2 + np.sin(2 * np.pi * 0.3 * t3))
    out["wind"] = _norm(wind)
    out["dc-offset"] = np.full(n3, 0.2, np.float32)
    out["impulse"] = _norm(np.eye(1, n3, SR).ravel(), 0.9)
    out["fragment-0.05s-speech"] = babble(0.05, seed=1)
    out["fragment-0.1s-speech"] = babble(0.1, seed=2)
    out["fragment-0.15s-speech"] = babble(0.15, seed=3)
    out["fragment-0.1s-noise"] = _norm(rng.standard_normal(int(0.1 * SR)), 0.2)
    out["fragment-0.3s-tone"] = _norm(np.sin(2 * np.pi * 440 * _t(0.3)))
    return {name: (y.astype(np.float32), SR) for name, y in out.items()}
