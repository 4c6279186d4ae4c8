"""Decoding any audio file into mono float32 at a requested sample rate.

``load_audio`` is the one door audio comes through. Files libsndfile reads (wav, flac,
ogg/vorbis, mp3, aiff) are decoded in-process; anything else (webm/opus from a browser,
m4a, …) goes through ``ffmpeg``. Every failure is an :class:`AudioError` that names the
file and the reason.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ser.errors import SerError

#: Peak amplitude below which a whole clip counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4


#: File extensions treated as audio (any format ``load_audio`` can decode).
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm",
     ".aif", ".aiff", ".aifc", ".wma", ".caf", ".au", ".snd"}
)


def is_audio(path: Path) -> bool:
    """True when the file name has an audio extension (the content is not opened)."""
    return path.suffix.lower() in AUDIO_EXTENSIONS


class AudioError(SerError):
    """Audio that cannot be used: unreadable, empty, silent, too short or too long."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = str(path) if path is not None else None
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AudioTooLongError(AudioError):
    """Audio longer than the caller's ``max_duration`` (servers answer it with 413)."""


def resample(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Resample a mono signal with soxr (high quality).

    The output has ``ceil(len(y) * sr / orig_sr)`` samples, as ``librosa.resample`` gives,
    so features match a librosa-based recipe sample for sample.
    """
    if orig_sr == sr:
        return y.astype(np.float32, copy=False)
    out = soxr.resample(y, orig_sr, sr, quality="HQ").astype(np.float32, copy=False)
    n = int(np.ceil(y.shape[-1] * sr / orig_sr))
    if out.shape[-1] < n:
        out = np.pad(out, (0, n - out.shape[-1]))
    return out[:n]


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average channels: (frames, channels) -> (frames,)."""
    return y.mean(axis=1) if y.ndim == 2 else y


class _NotSoundfile(Exception):
    """libsndfile does not know this format: let ffmpeg decode it."""


#: Samples a decoder may legitimately fall short of the header's frame count (MP3 padding).
_LENGTH_SLACK = 2304


def _wav_truncation(path: Path) -> str | None:
    """For a RIFF/WAVE file, a reason if its data chunk is shorter than the header says.

    libsndfile quietly clamps the length of a cut-off WAV to what is there, so the header is
    checked here (reading chunk headers only).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk = f.read(8)
            cid, length = chunk[:4], int.from_bytes(chunk[4:8], "little")
            if cid == b"data":
                have = size - pos - 8
                # 0 and 0xFFFFFFFF are placeholders written by streaming recorders.
                if length not in (0, 0xFFFFFFFF) and have < length:
                    return f"truncated: header promises {length} bytes of audio, file has {have}"
                return None
            pos += 8 + length + (length & 1)
    return None


def _read_soundfile(path: Path, offset: float, duration: float | None) -> tuple[np.ndarray, int]:
    try:
        f = sf.SoundFile(str(path))
    except Exception as exc:
        raise _NotSoundfile from exc
    with f:
        native = f.samplerate
        start = min(int(round(offset * native)), f.frames)
        if start:
            f.seek(start)
        frames = -1 if duration is None else int(round(duration * native))
        try:
            y = f.read(frames=frames, dtype="float32", always_2d=True)
        except Exception as exc:  # the format is known but the data is damaged
            raise AudioError(path, f"damaged or truncated audio ({exc})") from exc
        expected = f.frames - start if frames < 0 else min(frames, f.frames - start)
    if len(y) + _LENGTH_SLACK < expected:
        raise AudioError(
            path, f"truncated: header says {expected / native:.2f} s from the offset, "
            f"only {len(y) / native:.2f} s decodable"
        )
    return to_mono(y), native


#: The demuxers ffmpeg may use, by what the file's first bytes say. Only containers of plain
#: media are listed: never a playlist, concat list, image sequence or anything else that
#: names other files or URLs (HLS, DASH, ffconcat, SDP, …), so ffmpeg reads the given bytes
#: and nothing else.
FFMPEG_FORMATS = ("wav", "flac", "ogg", "mp3", "matroska", "mov", "aiff", "caf", "au", "asf",
                  "aac")


def sniff_format(path: Path) -> str | None:
    """The ffmpeg demuxer of ``FFMPEG_FORMATS`` that the file's magic bytes announce, or None.

    Decided from content, never from the name: a playlist called ``clip.webm`` is None.
    """
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":
        return "mov"
    prefixes = {b"fLaC": "flac", b"OggS": "ogg", b"ID3": "mp3", b"\x1aE\xdf\xa3": "matroska",
                b"caff": "caf", b".snd": "au", b"0&\xb2u\x8ef\xcf\x11": "asf"}
    for magic, name in prefixes.items():
        if head.startswith(magic):
            return name
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        # MPEG audio frame sync: layer bits 00 is AAC in ADTS, anything else MPEG layer 1-3.
        return "aac" if head[1] & 0x06 == 0 else "mp3"
    return None


def _scrub(message: str, path: Path) -> str:
    """An ffmpeg message without file names: errors must not show paths (a server's temp
    folders, or files a crafted input named)."""
    message = message.replace(f"file:{path}", "the file").replace(str(path), "the file")
    return re.sub(r"(?:file:)?/[^\s:'\"]+", "<path>", message)


def _read_ffmpeg(
    path: Path, sr: int, offset: float, duration: float | None, max_duration: float | None
) -> np.ndarray:
    fmt = sniff_format(path)
    if fmt is None:
        raise AudioError(path, "unreadable audio: not a recognised audio format (ser reads wav, "
                         "flac, ogg/opus, mp3, webm/matroska, mp4/m4a, aiff, caf, au, wma, aac)")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(path, f"this format ({fmt}) needs ffmpeg, which is not installed")
    if duration is None and max_duration is not None:
        # Enough to tell "too long" without decoding hours of audio.
        duration = max_duration + 1.0
    # Only the file protocol, only the sniffed demuxer (forced, so ffmpeg's content probing
    # cannot pick a playlist format): the decoder reads this file and no other.
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-protocol_whitelist", "file",
           "-format_whitelist", fmt]
    if offset:
        cmd += ["-ss", f"{offset}"]
    cmd += ["-f", fmt, "-i", f"file:{path.resolve()}"]
    if duration is not None:
        cmd += ["-t", f"{duration}"]
    cmd += ["-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"]
    proc = subprocess.run(cmd, capture_output=True)
    detail = proc.stderr.decode(errors="replace").strip().splitlines()
    last = _scrub(detail[-1], path.resolve()) if detail else "ffmpeg failed"
    if proc.returncode != 0:
        raise AudioError(path, f"unreadable audio ({last})")
    if detail:
        # ffmpeg can exit 0 on a cut-off or damaged stream but reports it at "error" level.
        raise AudioError(path, f"damaged or truncated audio ({last})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def duration_of(path: str | Path) -> float | None:
    """Duration in seconds from the file header, or None when the header does not say."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate if info.samplerate else None
    except Exception:
        return None


#: Channel counts an array may have; a 2-D array's shorter axis is its channels.
MAX_CHANNELS = 32


def _as_float(y: np.ndarray, path: str | Path | None) -> np.ndarray:
    """float32 in [-1, 1]: integer PCM is scaled by its full scale (int16 / 32768, …)."""
    if y.dtype.kind == "f":
        return y.astype(np.float32, copy=False)
    if y.dtype.kind == "i":
        scale = float(2 ** (8 * y.dtype.itemsize - 1))
        return (y.astype(np.float64) / scale).astype(np.float32)
    if y.dtype.kind == "u":  # unsigned PCM (uint8 WAV) is centred on half its range
        half = float(2 ** (8 * y.dtype.itemsize - 1))
        return ((y.astype(np.float64) - half) / half).astype(np.float32)
    raise AudioError(path, f"audio samples must be numbers, got dtype {y.dtype}")


def _as_mono(y: np.ndarray, path: str | Path | None) -> np.ndarray:
    """Mono from ``(n,)``, ``(n, channels)`` (soundfile's layout) or ``(channels, n)``
    (librosa's and torchaudio's): the shorter axis of a 2-D array is the channels."""
    if y.ndim == 1:
        return y
    if y.ndim == 2:
        channel_axis = 1 if y.shape[1] <= y.shape[0] else 0
        if y.shape[channel_axis] > MAX_CHANNELS:
            raise AudioError(path, f"an array of shape {y.shape} does not look like audio "
                             f"(more than {MAX_CHANNELS} channels either way)")
        return y.mean(axis=channel_axis, dtype=np.float32)
    raise AudioError(path, f"audio must be 1-D (mono) or 2-D (channels), got shape {y.shape}")


def check_signal(
    y: np.ndarray,
    sr: int,
    *,
    path: str | Path | None = None,
    min_duration: float = 0.0,
    max_duration: float | None = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Validate a signal and return it as mono float32; raise AudioError saying what is wrong.

    The one boundary for samples from outside (arrays passed to the API, decoded files):
    integer PCM is scaled to [-1, 1] (int16 / 32768, int32 / 2**31, uint8 around 128), and a
    2-D array is mixed to mono whichever way round it is (``(n, channels)`` or
    ``(channels, n)``: the shorter axis is the channels). A mono float32 array is returned
    as is.
    """
    y = np.asarray(y)
    if y.size == 0:
        raise AudioError(path, "empty audio (no samples)")
    y = _as_mono(_as_float(y, path), path)
    if not np.all(np.isfinite(y)):
        raise AudioError(path, "audio contains NaN or infinite samples")
    seconds = y.size / sr
    if seconds < min_duration:
        raise AudioError(path, f"too short: {seconds:.2f} s (minimum {min_duration:g} s)")
    if max_duration is not None and seconds > max_duration:
        raise AudioTooLongError(path, f"too long: {seconds:.1f} s (maximum {max_duration:g} s)")
    if not allow_silent and float(np.max(np.abs(y))) < SILENCE_PEAK:
        raise AudioError(path, "silent audio (peak below -80 dBFS)")
    return y


def load_audio(
    path: str | Path,
    sr: int = 16000,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    min_duration: float = 0.0,
    max_duration: float | None = None,
    allow_silent: bool = False,
) -> np.ndarray:
    """Load ``path`` as mono float32 at ``sr`` Hz.

    ``offset``/``duration`` (seconds) select a window, as in librosa. ``max_duration``
    refuses over-long files from their header before decoding them.

    >>> y = load_audio("clip.flac", sr=16000)   # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if max_duration is not None:
        total = duration_of(path)
        if total is not None and total - offset > max_duration and duration is None:
            raise AudioTooLongError(path, f"too long: {total:.1f} s (maximum {max_duration:g} s)")
    reason = _wav_truncation(path)
    if reason:
        raise AudioError(path, reason)
    try:
        y, native = _read_soundfile(path, offset, duration)
        y = resample(y, native, sr)
    except _NotSoundfile:
        # Not a format libsndfile knows (webm/opus, m4a, …): ffmpeg decodes it.
        y = _read_ffmpeg(path, sr, offset, duration, max_duration)
    return check_signal(
        y, sr, path=path, min_duration=min_duration, max_duration=max_duration,
        allow_silent=allow_silent,
    )
