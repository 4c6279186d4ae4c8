"""Seeded audio transforms: training augmentation and robustness conditions in one module.

Every transform is a plain function ``f(y, sr, rng, **params) -> y`` of a mono float32
signal, its rate and a ``numpy.random.Generator`` the caller passes in, with the unit in each
parameter's name (``snr_db``, ``rt60_s``, ``bitrate_kbps``, ``gain_db``). Two uses share them:

- **Conditions** (robustness evaluation, ``ser evaluate --conditions``): a family and one
  value, written ``FAMILY:VALUE`` — ``white:10`` (white noise at 10 dB SNR), ``babble:5``,
  ``noise:0`` (recorded noise), ``room:0.8`` (RT60 in seconds), ``telephone``, ``mp3:32`` and
  ``opus:16`` (kbps), ``gain:-30`` (dB), ``clip:12`` (driven 12 dB past full scale). See
  :func:`get_condition`; ``standard`` names the whole benchmark set.
- **Augmentations** (training rows only, ``ser train --augment``): named draws per clip —
  the seed notebook's ``noise``, ``stretch_pitch``, ``shift``, ``gain`` with its constants, and
  ``degrade``, which draws one family per clip with values *not* used by the benchmark
  (SNRs from U(0, 25) dB, a separate bank of rooms, other codec bitrates, the other part of the
  noise folder, babble of voices the benchmark never mixes in, made into new talkers) and
  then, on half the clips, another microphone's colouring, so the benchmark measures
  generalisation rather than the augmentation; and ``babble``, ``degrade``'s babble on every
  clip; ``room``, ``degrade``'s rooms on every clip; ``talker``, formants moved with pitch
  kept.

Recorded noise comes from a folder; :func:`noise_files` splits any folder by a hash of the
file names — a third for evaluation, the rest for training — so the same folder serves both
without sharing a file. Rooms are simulated with pyroomacoustics (image source method,
absorption from Sabine's formula for the RT60), telephone and codecs run through ffmpeg
(G.711 μ-law at 8 kHz, libmp3lame, libopus); both are needed only for those families.

>>> import numpy as np
>>> y = np.sin(np.linspace(0, 100, 16000)).astype(np.float32)
>>> z = white_noise(y, 16000, np.random.default_rng(0), snr_db=10.0)
>>> round(float(10 * np.log10(np.mean(y ** 2) / np.mean((z - y) ** 2))), 1)
10.0
>>> aug = get_augmentation("noise", seed=1)
>>> aug.apply(y, 16000, aug.rng_for("clip-id")).shape
(16000,)
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ser.errors import SerError

Transform = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


class AugmentError(SerError):
    """An unknown augmentation or condition, a bad value, or a missing source or tool."""


# ------------------------------------------------------------------- mixing helpers

def _power(y: np.ndarray) -> float:
    return float(np.mean(np.square(y, dtype=np.float64)))


def mix_at_snr(y: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``y`` plus ``noise`` (same length) scaled so that ``10·log10(P_y / P_noise) = snr_db``
    (powers over the whole clip, as audiomentations' ``AddGaussianSNR`` measures them)."""
    p_noise = _power(noise)
    if p_noise == 0.0:
        return y.astype(np.float32, copy=True)
    scale = np.sqrt(_power(y) / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (y + scale * noise).astype(np.float32)


def _fit_length(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``n``-sample stretch of ``x``, looped when ``x`` is shorter."""
    if x.size < n:
        x = np.tile(x, -(-n // x.size) + 1)
    start = int(rng.integers(0, x.size - n + 1))
    return x[start:start + n]


@functools.lru_cache(maxsize=96)
def _load(path: str, sr: int) -> np.ndarray:
    from ser.audio import load_audio

    y = load_audio(path, sr=sr, allow_silent=True)
    y.setflags(write=False)
    return y


# ------------------------------------------------------------------- sources

#: One file in ``TEST_SHARE`` (by a hash of its name) is kept for evaluation.
TEST_SHARE = 3


def _bucket(path: Path) -> int:
    return int.from_bytes(hashlib.blake2b(path.name.encode(), digest_size=4).digest(),
                          "little") % TEST_SHARE


def noise_files(folder: str | Path, part: str = "all") -> tuple[Path, ...]:
    """The audio files under ``folder``: ``part="test"`` the third kept for evaluation,
    ``"train"`` the rest, ``"all"`` every file. A folder too small to give the asked part a
    file gives all of them (the caller's report says which were used)."""
    from ser.audio import is_audio

    root = Path(folder)
    if not root.is_dir():
        raise AugmentError(f"{root}: not a folder of noise recordings")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_audio(p))
    if not files:
        raise AugmentError(f"{root}: no audio files")
    if part == "all":
        return tuple(files)
    if part not in ("train", "test"):
        raise AugmentError(f"part must be train, test or all, not {part!r}")
    chosen = [p for p in files if (_bucket(p) == 0) == (part == "test")]
    return tuple(chosen or files)


@functools.lru_cache(maxsize=8)
def speech_files(folder: str | Path) -> tuple[tuple[Path, ...], tuple[str, ...]]:
    """The speech files under ``folder`` (any corpus layout ``ser data scan`` reads, or loose
    files: one speaker per sub-folder) and the speaker of each, in path order: the voices of
    ``degrade``'s babble."""
    from ser.corpora import scan
    from ser.labels import ALL

    root = Path(folder)
    if not root.is_dir():
        raise AugmentError(f"{root}: not a folder of speech for babble")
    known = {u.path.resolve(): u.speaker_id for u in scan([root], labels=ALL).utterances}
    files = sorted(set(known) | set(p.resolve() for p in noise_files(root)))
    return tuple(files), tuple(known.get(p, str(p.parent)) for p in files)


# ------------------------------------------------------------------- transforms

def white_noise(y: np.ndarray, sr: int, rng: np.random.Generator, *, snr_db: float
                ) -> np.ndarray:
    """Gaussian white noise at ``snr_db``."""
    return mix_at_snr(y, rng.standard_normal(y.size), snr_db)


def recorded_noise(y: np.ndarray, sr: int, rng: np.random.Generator, *, snr_db: float,
                   files: Sequence[str | Path]) -> np.ndarray:
    """A random stretch of one of ``files`` (looped if short) at ``snr_db``."""
    if not files:
        raise AugmentError("recorded noise needs noise files (--noise DIR)")
    path = files[int(rng.integers(len(files)))]
    return mix_at_snr(y, _fit_length(_load(str(path), sr), y.size, rng), snr_db)


def babble(y: np.ndarray, sr: int, rng: np.random.Generator, *, snr_db: float,
           files: Sequence[str | Path], speakers: Sequence[str] = (), voices: int = 4,
           new_talkers: bool = False) -> np.ndarray:
    """``voices`` utterances drawn from ``files`` (other speakers' speech) — of different
    ``speakers`` (one per file) when there are that many — each at equal power and looped to
    the clip's length, summed, then mixed at ``snr_db``. With ``new_talkers`` each utterance
    is first made another talker's (:func:`other_talker`): a few recorded voices give many."""
    if len(files) < voices:
        raise AugmentError(f"babble needs at least {voices} speech files, got {len(files)}")
    if len(set(speakers)) >= voices:
        names = sorted(set(speakers))
        chosen = [names[int(i)] for i in rng.choice(len(names), size=voices, replace=False)]
        picks = []
        for who in chosen:
            theirs = [i for i, s in enumerate(speakers) if s == who]
            picks.append(theirs[int(rng.integers(len(theirs)))])
    else:
        picks = [int(i) for i in rng.choice(len(files), size=voices, replace=False)]
    crowd = np.zeros(y.size)
    for i in picks:
        voice = _load(str(files[i]), sr)
        if new_talkers:
            voice = other_talker(voice, sr, rng)
        voice = _fit_length(voice, y.size, rng)
        crowd += voice / np.sqrt(max(_power(voice), 1e-12))
    return mix_at_snr(y, crowd, snr_db)


def other_talker(voice: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``voice`` played U(0.8, 1.25)× as fast (speed perturbation, resampled by soxr): its
    pitch, formants and rate move together, as a smaller or larger talker's would."""
    import soxr

    factor = float(rng.uniform(0.8, 1.25))
    return soxr.resample(np.asarray(voice, np.float32), sr * factor, sr).astype(np.float32)


#: Room banks: each RT60 condition draws one of ``ROOMS_PER_BANK`` rooms; the evaluation and
#: training banks have different geometries (seeds).
ROOMS_PER_BANK = 8
_BANK_SEED = {"test": 1_000, "train": 0}


@functools.lru_cache(maxsize=64)
def room_impulse_response(rt60_s: float, sr: int, room_seed: int) -> np.ndarray:
    """The impulse response from a talker to a microphone in a shoebox room whose
    dimensions and positions come from ``room_seed`` (3-10 × 3-8 × 2.5-4 m, both at least
    0.5 m from walls, 1-4 m apart), walls absorbing for ``rt60_s`` by Sabine's formula
    (pyroomacoustics' image source method). Normalised to a unit direct path."""
    try:
        import pyroomacoustics as pra
    except ImportError:
        raise AugmentError("room simulation needs pyroomacoustics: pip install 'ser[train]'"
                           ) from None
    g = np.random.default_rng(room_seed)
    dim = np.array([g.uniform(3, 10), g.uniform(3, 8), g.uniform(2.5, 4)])
    for _ in range(100):
        src = np.append(g.uniform(0.5, dim[:2] - 0.5), g.uniform(1.2, 1.9))
        mic = np.append(g.uniform(0.5, dim[:2] - 0.5), g.uniform(0.8, 1.6))
        if 1.0 <= np.linalg.norm(src - mic) <= 4.0:
            break
    absorption, max_order = pra.inverse_sabine(rt60_s, dim)
    room = pra.ShoeBox(dim, fs=sr, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(rir)))
    rir = rir[direct:] / abs(rir[direct])  # the direct sound at sample 0: no added delay
    rir.setflags(write=False)
    return rir


def room(y: np.ndarray, sr: int, rng: np.random.Generator, *, rt60_s: float,
         bank: str = "test") -> np.ndarray:
    """Reverberation of one of the bank's rooms for ``rt60_s`` (the clip keeps its length)."""
    from scipy.signal import fftconvolve

    rir = room_impulse_response(float(rt60_s), sr,
                                _BANK_SEED[bank] + int(rng.integers(ROOMS_PER_BANK)))
    return fftconvolve(y, rir)[: y.size].astype(np.float32)


def _ffmpeg_roundtrip(y: np.ndarray, sr: int, encode: list[str], suffix: str,
                      decode_in: list[str] | None = None) -> np.ndarray:
    """Encode ``y`` with ffmpeg's ``encode`` arguments into a temporary ``suffix`` file and
    decode it back to ``sr`` (same length: trimmed or zero padded)."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AugmentError("telephone, codecs and other microphones need ffmpeg, which is not "
                           "installed")
    with tempfile.TemporaryDirectory(prefix="ser-codec-") as tmp:
        coded = Path(tmp) / f"coded{suffix}"
        run = functools.partial(subprocess.run, capture_output=True, check=False)
        enc = run([ffmpeg, "-nostdin", "-v", "error", "-f", "f32le", "-ar", str(sr), "-ac", "1",
                   "-i", "-", *encode, str(coded)], input=np.asarray(y, "<f4").tobytes())
        if enc.returncode != 0:
            raise AugmentError(f"ffmpeg could not encode: {enc.stderr.decode().strip()[-200:]}")
        dec = run([ffmpeg, "-nostdin", "-v", "error", *(decode_in or []), "-i", str(coded),
                   "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"])
        if dec.returncode != 0:
            raise AugmentError(f"ffmpeg could not decode: {dec.stderr.decode().strip()[-200:]}")
    out = np.frombuffer(dec.stdout, dtype="<f4").astype(np.float32)
    return np.pad(out, (0, max(0, y.size - out.size)))[: y.size]


def telephone(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A narrow-band telephone line: 300-3400 Hz, 8 kHz, G.711 μ-law (8 bits), back to ``sr``.

    Like a real line, samples beyond full scale clip in the codec."""
    return _ffmpeg_roundtrip(y, sr, ["-af", "highpass=f=300,lowpass=f=3400", "-ar", "8000",
                                     "-c:a", "pcm_mulaw", "-f", "mulaw"], ".ul",
                             ["-f", "mulaw", "-ar", "8000", "-ac", "1"])


_CODECS = {"mp3": (["-c:a", "libmp3lame"], ".mp3"), "opus": (["-c:a", "libopus"], ".opus")}


def lossy_codec(y: np.ndarray, sr: int, rng: np.random.Generator, *, codec: str,
                bitrate_kbps: float) -> np.ndarray:
    """Encode with ``codec`` (mp3: LAME, opus: libopus) at ``bitrate_kbps`` and decode back."""
    if codec not in _CODECS:
        raise AugmentError(f"unknown codec {codec!r}; choose from {', '.join(_CODECS)}")
    args, suffix = _CODECS[codec]
    return _ffmpeg_roundtrip(y, sr, [*args, "-b:a", f"{bitrate_kbps:g}k"], suffix)


def microphone(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Another microphone and preamp: a high-pass at U(50, 300) Hz, a low-pass at
    U(3.5, 7.5) kHz and three one-octave peaking filters at log-uniform 150-6000 Hz with
    U(-9, 9) dB gain (ffmpeg's ``highpass``, ``lowpass`` and ``equalizer`` filters)."""
    top = min(float(rng.uniform(3500.0, 7500.0)), 0.45 * sr)
    chain = [f"highpass=f={rng.uniform(50.0, 300.0):.0f}", f"lowpass=f={top:.0f}"]
    for _ in range(3):
        centre = float(np.exp(rng.uniform(np.log(150.0), np.log(6000.0))))
        chain.append(f"equalizer=f={min(centre, 0.45 * sr):.0f}:t=o:w=1:g={rng.uniform(-9, 9):.1f}")
    return _ffmpeg_roundtrip(y, sr, ["-af", ",".join(chain), "-c:a", "pcm_f32le"], ".wav")


def set_gain(y: np.ndarray, sr: int, rng: np.random.Generator, *, gain_db: float) -> np.ndarray:
    """The recording ``gain_db`` quieter or louder (no clipping: the signal stays float, of
    the dtype it came in; conditions and augmentations end in float32)."""
    return y * 10.0 ** (gain_db / 20.0)


def clipping(y: np.ndarray, sr: int, rng: np.random.Generator, *, overdrive_db: float
             ) -> np.ndarray:
    """A recording driven ``overdrive_db`` past full scale: the peak is raised to
    ``10^(overdrive_db/20)`` and everything beyond ±1 is cut off."""
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        return y.astype(np.float32, copy=True)
    return np.clip(y * (10.0 ** (overdrive_db / 20.0) / peak), -1.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------- conditions

@dataclass(frozen=True)
class Sources:
    """Where recorded noise and babble come from: lists of files (and the speaker of each
    speech file, so that babble mixes different voices)."""

    noise: tuple[Path, ...] = ()
    speech: tuple[Path, ...] = ()
    speakers: tuple[str, ...] = ()


#: family -> (unit of its value, value needed?, what it needs from Sources)
FAMILIES: dict[str, tuple[str, bool, str | None]] = {
    "clean": ("", False, None),
    "white": ("dB SNR", True, None),
    "babble": ("dB SNR", True, "speech"),
    "noise": ("dB SNR", True, "noise"),
    "room": ("s RT60", True, None),
    "telephone": ("", False, None),
    "mp3": ("kbps", True, None),
    "opus": ("kbps", True, None),
    "gain": ("dB", True, None),
    "clip": ("dB overdrive", True, None),
}

#: The benchmark: the issue's conditions (``standard`` in ``--conditions``).
STANDARD = (
    "clean",
    *(f"{family}:{snr}" for family in ("white", "babble", "noise") for snr in (20, 10, 5, 0)),
    "room:0.3", "room:0.6", "room:0.8", "room:1.0",
    "telephone", "mp3:32", "opus:16", "gain:-30", "clip:12",
)


@dataclass(frozen=True)
class Condition:
    """One named degradation: ``family`` at ``value`` (its unit in ``FAMILIES``)."""

    name: str
    family: str
    value: float | None
    transform: Transform = field(compare=False, repr=False)

    @property
    def is_snr(self) -> bool:
        return FAMILIES[self.family][0] == "dB SNR"

    def apply(self, y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self.transform(y, sr, rng), dtype=np.float32)


def _transform(family: str, value: float | None, sources: Sources) -> Transform:
    p = functools.partial
    if family == "clean":
        return lambda y, sr, rng: y
    if family == "white":
        return p(white_noise, snr_db=value)
    if family == "noise":
        return p(recorded_noise, snr_db=value, files=sources.noise)
    if family == "babble":
        return p(babble, snr_db=value, files=sources.speech, speakers=sources.speakers)
    if family == "room":
        if not 0.1 <= value <= 3.0:
            raise AugmentError(f"room RT60 must be in 0.1..3 s, not {value:g}")
        return p(room, rt60_s=value, bank="test")
    if family == "telephone":
        return telephone
    if family in _CODECS:
        if not 6 <= value <= 320:
            raise AugmentError(f"{family} bitrate must be in 6..320 kbps, not {value:g}")
        return p(lossy_codec, codec=family, bitrate_kbps=value)
    if family == "gain":
        return p(set_gain, gain_db=value)
    if family == "clip":
        return p(clipping, overdrive_db=value)
    raise AssertionError(family)


def get_condition(spec: str, sources: Sources = Sources()) -> Condition:
    """Parse ``"white:10"``, ``"room:0.8"``, ``"telephone"``… into a :class:`Condition`.

    >>> get_condition("room:0.8").family, get_condition("room:0.8").value
    ('room', 0.8)
    """
    family, _, raw = spec.strip().partition(":")
    if family not in FAMILIES:
        raise AugmentError(f"unknown condition {spec!r}; families: {', '.join(FAMILIES)} "
                           "(e.g. white:10, room:0.8, telephone, mp3:32)")
    unit, needs_value, source = FAMILIES[family]
    value: float | None = None
    if needs_value:
        try:
            value = float(raw)
        except ValueError:
            raise AugmentError(f"condition {spec!r} needs a number ({unit}), e.g. "
                               f"{family}:10") from None
    elif raw:
        raise AugmentError(f"condition {family!r} takes no value")
    if source and not getattr(sources, source):
        option = "--babble DIR (other speakers' speech)" if source == "speech" \
            else "--noise DIR"
        raise AugmentError(f"condition {spec!r} needs {option}")
    name = family if value is None else f"{family}:{value:g}"
    return Condition(name, family, value, _transform(family, value, sources))


def parse_conditions(spec: str, sources: Sources = Sources()) -> list[Condition]:
    """A comma-separated list; ``standard`` expands to :data:`STANDARD` (its babble and
    recorded-noise conditions only where their sources were given). ``clean`` always comes
    first: drops are measured from it."""
    names: list[str] = []
    for part in (s.strip() for s in spec.split(",")):
        if part == "standard":
            names += [n for n in STANDARD
                      if not (n.startswith("babble") and not sources.speech)
                      and not (n.startswith("noise") and not sources.noise)]
        elif part:
            names.append(part)
    conditions = [get_condition(n, sources) for n in ["clean", *names]]
    unique = {c.name: c for c in conditions}
    return list(unique.values())


def rng_for(seed: int, *items: str | bytes) -> np.random.Generator:
    """A generator derived from ``seed`` and the identities ``items`` (a clip, a condition):
    draws do not depend on processing order or on how many workers run."""
    digest = hashlib.blake2b(b"\0".join(i.encode() if isinstance(i, str) else i for i in items),
                             digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "little")])


# ------------------------------------------------------------------- augmentations

def noise(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's noise: ``y + 0.035·U(0,1)·max(y) · N(0,1)``."""
    amplitude = 0.035 * rng.uniform() * np.amax(y)
    return y + amplitude * rng.normal(size=y.shape[0])


def stretch_pitch(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's ``time_stretch(rate=0.8)`` then ``pitch_shift(n_steps=0.7)`` (no randomness)."""
    import librosa

    y = librosa.effects.time_stretch(y, rate=0.8)
    return librosa.effects.pitch_shift(y, sr=sr, n_steps=0.7)


def shift(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The seed's circular shift by ``int(U(-5, 5) · 1000)`` samples."""
    return np.roll(y, int(rng.uniform(low=-5, high=5) * 1000))


def gain(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A random gain in [-6, +6] dB (:func:`set_gain`)."""
    return set_gain(y, sr, rng, gain_db=rng.uniform(-6.0, 6.0))


#: The draws of ``degrade``: the feature cache keys its copies by this (bump it when they
#: change). 2: babble of new talkers made from the recorded ones, and on half the clips
#: another microphone after the degradation. 3 was candidate A2d's (never shipped; its copies
#: may sit in a cache). 4: rooms drawn twice as often.
DEGRADE_VERSION = 4


def degrade(y: np.ndarray, sr: int, rng: np.random.Generator, *,
            noise_files: Sequence[str | Path] = (), speech_files: Sequence[str | Path] = (),
            speakers: Sequence[str] = ()) -> np.ndarray:
    """One degradation per clip, drawn with values the benchmark does not use: white or
    recorded noise (training part of the folder) at U(0, 25) dB SNR, a room of the training
    bank at U(0.2, 1.2) s RT60, a telephone line, mp3 at 24/48 kbps or opus at 12/24 kbps,
    clipping at U(3, 18) dB overdrive, or babble of 4 of ``speakers`` (one utterance each of
    ``speech_files``, each made a new talker by :func:`other_talker`) at U(0, 25) dB SNR
    (recorded noise and babble only when their files are given); rooms, where every
    recording is made, twice as often as each other family. Then, on half the clips,
    another :func:`microphone`."""
    families = ["white", "room", "room", "telephone", "codec", "clip"]
    if noise_files:
        families.append("noise")
    if speech_files:
        families.append("babble")
    family = families[int(rng.integers(len(families)))]
    y = _degradation(y, sr, rng, family, noise_files, speech_files, speakers)
    return microphone(y, sr, rng) if rng.random() < 0.5 else y


def _degradation(y: np.ndarray, sr: int, rng: np.random.Generator, family: str,
                 noise_files: Sequence[str | Path], speech_files: Sequence[str | Path],
                 speakers: Sequence[str]) -> np.ndarray:
    if family == "white":
        return white_noise(y, sr, rng, snr_db=rng.uniform(0.0, 25.0))
    if family == "noise":
        return recorded_noise(y, sr, rng, snr_db=rng.uniform(0.0, 25.0), files=noise_files)
    if family == "babble":
        return babble(y, sr, rng, snr_db=rng.uniform(0.0, 25.0), files=speech_files,
                      speakers=speakers, voices=4, new_talkers=True)
    if family == "room":
        # Training rooms: RT60 rounded to 0.1 s so the cache of impulse responses stays small.
        return room(y, sr, rng, rt60_s=round(float(rng.uniform(0.2, 1.2)), 1), bank="train")
    if family == "telephone":
        return telephone(y, sr, rng)
    if family == "codec":
        codec, kbps = [("mp3", 24), ("mp3", 48), ("opus", 12), ("opus", 24)][rng.integers(4)]
        return lossy_codec(y, sr, rng, codec=codec, bitrate_kbps=kbps)
    return clipping(y, sr, rng, overdrive_db=rng.uniform(3.0, 18.0))


def babble_copy(y: np.ndarray, sr: int, rng: np.random.Generator, *,
                speech_files: Sequence[str | Path], speakers: Sequence[str] = ()) -> np.ndarray:
    """``degrade``'s babble family on every clip: 4 of ``speakers`` (one utterance each of
    ``speech_files``, each made a new talker by :func:`other_talker`) at U(0, 25) dB SNR.
    ``degrade`` draws babble for one clip in eight; a copy of babble alone beside two
    ``degrade`` copies was chosen on validation speakers (docs/RESULTS.md, ninth round)."""
    return _degradation(y, sr, rng, "babble", (), speech_files, speakers)


def room_copy(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``degrade``'s room family on every clip: a room of the training bank at U(0.2, 1.2) s
    RT60 (the benchmark's rooms are of another bank). With :func:`formant_copy` beside it, a
    copy in the shipped default's recipe (docs/RESULTS.md, the twenty-second round)."""
    return _degradation(y, sr, rng, "room", (), (), ())


def formant_shift(y: np.ndarray, sr: int, ratio: float, *, seed: int = 0) -> np.ndarray:
    """``y`` through another vocal tract: every formant moved by ``ratio``, pitch, timing and
    level kept — Praat's "Change gender" (resampling by the ratio, then PSOLA back to the
    clip's own pitch contour and length). Praat draws random numbers on the way; ``seed``
    fixes them (then Praat's generator is reseeded unpredictably, as it was). A clip Praat
    cannot analyse (too short for its pitch analysis) is returned as it is."""
    try:
        import parselmouth
        from parselmouth.praat import call, run
    except ImportError as exc:  # pragma: no cover - a training extra
        raise AugmentError("the talker augmentation needs Praat: pip install "
                           "'ser[train]' (praat-parselmouth)") from exc
    sound = parselmouth.Sound(np.asarray(y, np.float64), sampling_frequency=sr)
    run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    try:
        out = call(sound, "Change gender", 75, 600, float(ratio), 0, 1, 1).values[0]
    except parselmouth.PraatError:
        return np.asarray(y, np.float32)
    finally:
        run("random_initializeSafelyAndUnpredictably ()")
    out = np.asarray(out[:len(y)], np.float32)  # Praat may add or drop a sample
    return np.pad(out, (0, len(y) - len(out)))


def formant_copy(y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A new talker with the same voice: :func:`formant_shift` by a ratio drawn
    log-uniformly from [0.88, 1.14] (a vocal tract ~12 % shorter or longer). It leaves alone
    the pitch and rate that carry emotion (speed perturbation moved those too:
    docs/RESULTS.md, the sixth round). With :func:`room_copy` beside it, a copy in the
    shipped default's recipe (the twenty-second round)."""
    ratio = float(np.exp(rng.uniform(np.log(0.88), np.log(1.14))))
    return formant_shift(y, sr, ratio, seed=int(rng.integers(2**31)))


AUGMENTATIONS: dict[str, Callable[..., np.ndarray]] = {
    "noise": noise,
    "stretch_pitch": stretch_pitch,
    "shift": shift,
    "gain": gain,
    "degrade": degrade,
    "babble": babble_copy,
    "room": room_copy,
    "talker": formant_copy,
}
#: the augmentations whose draws ``DEGRADE_VERSION`` describes
VERSIONED = ("degrade", "babble", "room")


@dataclass(frozen=True)
class Augmentation:
    """A chain of named augmentations applied in order (``"noise+gain"``), a base seed and,
    for ``degrade``, a folder of recorded noise (its training part is used) and a folder of
    speech for babble (speakers in neither the training data nor a benchmark's babble)."""

    names: tuple[str, ...]
    seed: int = 0
    noise_dir: str | None = None
    babble_dir: str | None = None

    @property
    def name(self) -> str:
        return "+".join(self.names)

    def to_json(self) -> dict:
        out: dict = {"augment": self.name, "seed": self.seed}
        if set(VERSIONED) & set(self.names):
            out["degrade_version"] = DEGRADE_VERSION
        if self.noise_dir:
            out["noise_dir"] = self.noise_dir
        if self.babble_dir:
            out["babble_dir"] = self.babble_dir
        return out

    def rng_for(self, item: str | bytes) -> np.random.Generator:
        """The generator for one clip: derived from the seed and the clip's identity
        (its content hash in :func:`ser.features.extract`), so the draws do not depend
        on processing order or on how many workers run."""
        if isinstance(item, str):
            item = item.encode()
        digest = hashlib.blake2b(item, digest_size=8).digest()
        return np.random.default_rng([self.seed, int.from_bytes(digest, "little")])

    def apply(self, y: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
        for name in self.names:
            if name == "degrade":
                files = noise_files(self.noise_dir, "train") if self.noise_dir else ()
                speech, speakers = speech_files(self.babble_dir) if self.babble_dir else ((), ())
                y = degrade(y, sr, rng, noise_files=files, speech_files=speech,
                            speakers=speakers)
            elif name == "babble":
                speech, speakers = speech_files(self.babble_dir)
                y = babble_copy(y, sr, rng, speech_files=speech, speakers=speakers)
            else:
                y = AUGMENTATIONS[name](y, sr, rng)
        return np.asarray(y, dtype=np.float32)


def get_augmentation(spec: str | Augmentation, *, seed: int = 0,
                     noise_dir: str | Path | None = None,
                     babble_dir: str | Path | None = None) -> Augmentation:
    """Parse ``"noise"``, ``"stretch_pitch"``, ``"noise+gain"``… into an Augmentation."""
    if isinstance(spec, Augmentation):
        return spec
    names = tuple(part.strip() for part in spec.split("+") if part.strip())
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if not names or unknown:
        raise AugmentError(
            f"unknown augmentation {spec!r}; choose from {', '.join(AUGMENTATIONS)} "
            "(combine with '+', e.g. 'noise+gain')"
        )
    if "babble" in names and not babble_dir:
        raise AugmentError("the babble augmentation mixes in other speakers' speech: give "
                           "it a folder of it (ser train --babble DIR)")
    return Augmentation(names, int(seed), str(Path(noise_dir).resolve()) if noise_dir else None,
                        str(Path(babble_dir).resolve()) if babble_dir else None)


def augment(y: np.ndarray, sr: int, spec: str, *, seed: int) -> np.ndarray:
    """Apply ``spec`` to one signal with an explicit seed.

    >>> y = np.ones(8000, dtype=np.float32)
    >>> bool(np.array_equal(augment(y, 16000, "gain", seed=3), augment(y, 16000, "gain", seed=3)))
    True
    """
    return get_augmentation(spec).apply(y, sr, np.random.default_rng(seed))
