"""Synthetic audio and fixture corpus trees in each corpus's real naming scheme.

Clips are a few hundredths of a second of a sine tone: readers only look at names, and
audio tests need something decodable. Each ``make_*`` returns the corpus root.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 16000


def tone(seconds: float = 0.05, sr: int = SR, freq: float = 220.0, amp: float = 0.3,
         channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    y = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([y] * channels, axis=1) if channels > 1 else y


def write_clip(path: Path, seconds: float = 0.05, sr: int = SR, **kw) -> Path:
    """Write a tone; the container follows the extension (wav, flac, ogg, mp3 …).

    Formats libsndfile cannot write (webm, m4a, opus) are made with ffmpeg from a wav.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    y = tone(seconds, sr, **kw)
    suffix = path.suffix.lower()
    if suffix in (".webm", ".m4a", ".opus", ".aac"):
        if shutil.which("ffmpeg") is None:
            pytest.skip(f"ffmpeg is not installed: it makes the {suffix} test clip")
        wav = path.with_suffix(".src.wav")
        sf.write(wav, y, sr)
        codec = {".webm": "libopus", ".opus": "libopus", ".m4a": "aac", ".aac": "aac"}[suffix]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav),
                        "-c:a", codec, str(path)], check=True)
        wav.unlink()
    elif suffix == ".mp3":
        sf.write(path, y, sr, format="MP3")
    elif suffix == ".ogg":
        sf.write(path, y, sr, format="OGG", subtype="VORBIS")
    else:
        sf.write(path, y, sr)
    return path


def touch(path: Path, text: str = "not audio\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------ RAVDESS

RAVDESS_EMOTIONS = ("01", "02", "03", "04", "05", "06", "07", "08")


def ravdess_names(actor: int, channel: str = "01") -> list[str]:
    """The 60 speech (or song) names of one actor: neutral has no strong intensity."""
    names = []
    for emo, inten, stmt, rep in itertools.product(
        RAVDESS_EMOTIONS, ("01", "02"), ("01", "02"), ("01", "02")
    ):
        if emo == "01" and inten == "02":
            continue
        names.append(f"03-{channel}-{emo}-{inten}-{stmt}-{rep}-{actor:02d}")
    return names


def make_ravdess(root: Path, actors=(1, 2, 3), ext: str = ".flac", song_actors=(),
                 bad: bool = False) -> Path:
    for actor in actors:
        for name in ravdess_names(actor):
            write_clip(root / f"Actor_{actor:02d}" / f"{name}{ext}")
    for actor in song_actors:
        for name in ravdess_names(actor, channel="02")[:6]:
            write_clip(root / f"Actor_{actor:02d}" / f"{name}{ext}")
    if bad:
        a = f"Actor_{actors[0]:02d}"
        write_clip(root / a / f"03-01-09-01-01-01-{actors[0]:02d}.wav")  # unknown emotion 09
        write_clip(root / a / "recording.wav")  # foreign name
        touch(root / a / "notes.txt")  # not audio
        write_clip(root / a / f"03-01-05-01-01-01-{actors[0] + 1:02d}.wav")  # wrong folder
        touch(root / a / ".DS_Store")  # hidden: ignored
    return root


# ------------------------------------------------------------------------------ CREMA-D

CREMA_FILES = (
    "1001_DFA_ANG_XX", "1001_DFA_DIS_XX", "1001_IEO_FEA_HI", "1001_IEO_HAP_LO",
    "1001_IEO_NEU_XX", "1001_IEO_SAD_MD", "1002_TIE_ANG_XX", "1002_MTI_SAD_XX",
    "1091_WSI_HAP_XX",
)


def make_cremad(root: Path, ext: str = ".wav", bad: bool = False) -> Path:
    for name in CREMA_FILES:
        write_clip(root / "AudioWAV" / f"{name}{ext}")
    if bad:
        write_clip(root / "AudioWAV" / f"1001_DFA_XYZ_XX{ext}")  # unknown emotion
        write_clip(root / "AudioWAV" / f"1001_DFA_ANG_ZZ{ext}")  # unknown level
        write_clip(root / "AudioWAV" / f"clip{ext}")
    return root


# ------------------------------------------------------------------------------ TESS

#: The 14 real folder names and the emotion word their files end in.
TESS_FOLDERS = {
    "OAF_angry": "angry", "OAF_disgust": "disgust", "OAF_Fear": "fear", "OAF_happy": "happy",
    "OAF_neutral": "neutral", "OAF_Pleasant_surprise": "ps", "OAF_Sad": "sad",
    "YAF_angry": "angry", "YAF_disgust": "disgust", "YAF_fear": "fear", "YAF_happy": "happy",
    "YAF_neutral": "neutral", "YAF_pleasant_surprised": "ps", "YAF_sad": "sad",
}
TESS_WORDS = ("back", "bar", "base")


def make_tess(root: Path, ext: str = ".wav", flat: bool = False, bad: bool = False) -> Path:
    for folder, emotion in TESS_FOLDERS.items():
        speaker = folder[:3]
        for word in TESS_WORDS:
            prefix = "OA" if (folder == "OAF_neutral" and word == "bar") else speaker
            name = f"{prefix}_{word}_{emotion}{ext}"  # OA_bar_neutral: like OA_bite_neutral
            write_clip((root if flat else root / folder) / name)
    if bad:
        write_clip((root if flat else root / "OAF_angry") / f"OAF_back_grumpy{ext}")
        if not flat:
            write_clip(root / "OAF_angry" / f"OAF_bean_sad{ext}")  # sad file in angry folder
    return root


# ------------------------------------------------------------------------------ SAVEE

SAVEE_CODES = {"a": 3, "d": 3, "f": 3, "h": 3, "n": 6, "sa": 3, "su": 3}


def make_savee(root: Path, speakers=("DC", "JE", "JK"), flat: bool = False,
               ext: str = ".wav", bad: bool = False) -> Path:
    """``flat``: ``DC_a01.wav`` in one folder; else the original ``AudioData/DC/a01.wav``."""
    for speaker in speakers:
        for code, n in SAVEE_CODES.items():
            for i in range(1, n + 1):
                if flat:
                    write_clip(root / f"{speaker}_{code}{i:02d}{ext}")
                else:
                    write_clip(root / "AudioData" / speaker / f"{code}{i:02d}{ext}")
    if bad:
        where = root if flat else root / "AudioData" / speakers[0]
        write_clip(where / (f"{speakers[0]}_x01{ext}" if flat else f"x01{ext}"))
        if flat:
            write_clip(root / f"ZZ_a01{ext}")
    return root


# ------------------------------------------------------------------------------ EmoDB

EMODB_FILES = ("03a01Fa", "03a01Nc", "08b02Wa", "09a05Ea", "10b01Ab", "13a04Tc", "16b10Lb")


def make_emodb(root: Path, ext: str = ".wav", bad: bool = False) -> Path:
    for name in EMODB_FILES:
        write_clip(root / "wav" / f"{name}{ext}")
    touch(root / "lablaut" / "03a01Fa.lab")  # the download's other folders are not read
    touch(root / "erklaerung.txt")
    if bad:
        write_clip(root / "wav" / f"03a01Xa{ext}")  # unknown emotion letter
    return root


# ------------------------------------------------------------------------------ folders

def make_folders(root: Path, ext: str = ".wav") -> Path:
    """Label-per-folder tree; ``Happy/`` and ``anger/`` test synonyms and case."""
    for label in ("anger", "Happy", "sad"):
        for i in range(2):
            write_clip(root / label / f"clip{i}{ext}")
    for speaker in ("s1", "s2"):
        write_clip(root / "neutral" / speaker / f"take{ext}")
    write_clip(root / "calm" / f"c0{ext}")
    write_clip(root / "misc" / f"what{ext}")
    return root


# ------------------------------------------------------------------------------ speech

#: (F1, F2, F3) in Hz of a few vowels (Peterson & Barney averages).
VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410),
          (300, 870, 2240), (660, 1720, 2410), (440, 1020, 2240))


def _resonator(x: np.ndarray, freq: float, bandwidth: float, sr: int) -> np.ndarray:
    from scipy.signal import lfilter

    r = np.exp(-np.pi * bandwidth / sr)
    theta = 2 * np.pi * freq / sr
    return lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)


def babble(seconds: float = 3.0, f0: float = 140.0, tilt: float = 0.9, seed: int = 0,
           sr: int = SR, level: float = 0.3) -> np.ndarray:
    """Numpy speech: syllables of a glottal pulse train through vowel formants, with noise
    consonants between them and a slowly gliding pitch. Silero VAD hears it as speech (for
    ``f0`` up to ~260 Hz), so it stands in for a voice where espeak-ng is not installed;
    ``f0`` and ``tilt`` (the glottal low-pass pole) give each test class its own timbre.
    """
    from scipy.signal import lfilter

    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    f = f0 * (1 + 0.1 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 2 * np.pi))
              + 0.01 * np.sin(2 * np.pi * 5 * t))
    frac = np.cumsum(f) / sr % 1.0
    flow = np.where(frac < 0.4, np.sin(np.pi * frac / 0.4),
                    np.where(frac < 0.55, np.cos(np.pi * (frac - 0.4) / 0.3), 0.0))
    src = lfilter([1], [1, -tilt], np.diff(flow, prepend=0.0))
    src = src + 0.02 * np.abs(src).max() * rng.standard_normal(n)
    out = np.zeros(n)
    s = 0
    while s < n:
        cons = int(rng.uniform(0.03, 0.08) * sr)
        burst = _resonator(0.15 * np.abs(src).max() * rng.standard_normal(cons),
                           float(rng.choice([2500, 3500, 4500])), 800, sr)
        out[s:s + cons] = burst[:max(0, min(cons, n - s))]
        s += cons
        vowel = int(rng.uniform(0.12, 0.25) * sr)
        seg = src[s:s + vowel]
        formants = VOWELS[int(rng.integers(len(VOWELS)))]
        voiced = sum(g * _resonator(seg, fr, bw, sr)
                     for fr, bw, g in zip(formants, (90, 110, 150), (1.0, 0.6, 0.3), strict=True))
        out[s:s + vowel] = voiced * np.sin(np.pi * np.arange(seg.size) / vowel) ** 0.5
        s += vowel + (int(0.1 * sr) if rng.random() < 0.15 else 0)
    out = out / np.abs(out).max() * level + 0.002 * rng.standard_normal(n)
    return out.astype(np.float32)
