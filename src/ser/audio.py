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
import tempfile
from collections.abc import Iterable, Iterator
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


class Resampler:
    """Streaming :func:`resample`: blocks in, blocks out, and the joined output equals
    ``resample`` of the joined input sample for sample (soxr HQ keeps its filter state; the
    last few output samples are held back until :meth:`flush` fixes the length)."""

    HOLD = 1024

    def __init__(self, orig_sr: int, sr: int):
        self.orig_sr, self.sr = int(orig_sr), int(sr)
        self.n_in = self.n_out = 0
        self._held = np.zeros(0, np.float32)
        self._stream = (None if self.orig_sr == self.sr else
                        soxr.ResampleStream(self.orig_sr, self.sr, 1, dtype="float32",
                                            quality="HQ"))

    def __call__(self, y: np.ndarray) -> np.ndarray:
        y = np.ascontiguousarray(y, dtype=np.float32)
        self.n_in += y.size
        if self._stream is None:
            self.n_out += y.size
            return y
        out = np.concatenate([self._held, self._stream.resample_chunk(y, last=False)])
        keep = min(self.HOLD, out.size)
        self._held, out = out[out.size - keep:], out[:out.size - keep]
        self.n_out += out.size
        return out

    def flush(self) -> np.ndarray:
        """The rest of the output: ``ceil(n_in * sr / orig_sr)`` samples in all."""
        if self._stream is None:
            return np.zeros(0, np.float32)
        out = np.concatenate([self._held,
                              self._stream.resample_chunk(np.zeros(0, np.float32), last=True)])
        n = max(0, int(np.ceil(self.n_in * self.sr / self.orig_sr)) - self.n_out)
        out = out[:n] if out.size >= n else np.pad(out, (0, n - out.size))
        self.n_out += out.size
        self._held = np.zeros(0, np.float32)
        return out


def resample(y: np.ndarray, orig_sr: int, sr: int) -> np.ndarray:
    """Resample a mono signal with soxr (high quality).

    The output has ``ceil(len(y) * sr / orig_sr)`` samples, as ``librosa.resample`` gives,
    so features match a librosa-based recipe sample for sample.
    """
    if orig_sr == sr:
        return y.astype(np.float32, copy=False)
    r = Resampler(orig_sr, sr)
    return np.concatenate([r(y), r.flush()])


#: The level features see (``FeatureSet.features``): the loudest 5 % of 25 ms frames at -20 dBFS.
LEVEL_DBFS = -20.0


def _frame_powers(y: np.ndarray, sr: int) -> np.ndarray:
    """Mean power of each 25 ms frame (10 ms hop); one value for a signal shorter than that."""
    win, hop = max(1, int(0.025 * sr)), max(1, int(0.010 * sr))
    y = np.asarray(y, dtype=np.float64)
    if y.size <= win:
        return np.array([np.mean(y * y)]) if y.size else np.zeros(0)
    # Only the frames kept, from a running sum of squares (a full convolution computed every
    # sample's frame and threw 15 of 16 away: 3 ms for a 4 s clip instead of 0.2).
    energy = np.concatenate([[0.0], np.cumsum(y * y)])
    starts = np.arange(0, y.size - win + 1, hop)
    return np.maximum(energy[starts + win] - energy[starts], 0.0) / win


def _level(powers: np.ndarray) -> float:
    return float(np.sqrt(max(np.percentile(powers, 95), 0.0))) if powers.size else 0.0


def speech_level(y: np.ndarray, sr: int) -> float:
    """The RMS of the loudest 5 % of 25 ms frames (10 ms hop): a level that follows the
    voice, not the silence around it or one click. 0.0 for an all-zero signal.

    >>> y = 0.1 * np.sin(np.arange(16000) / 5.0)
    >>> round(float(20 * np.log10(speech_level(y, 16000))), 1)
    -23.0
    """
    return _level(_frame_powers(y, sr))


def level_gain(level: float, level_dbfs: float = LEVEL_DBFS) -> float:
    """The factor that brings a signal whose :func:`speech_level` is ``level`` to
    ``level_dbfs`` (1.0 for an all-zero signal): the one rule of :func:`normalize_level`,
    :class:`LevelMeter` and the live gate (``ser.live``)."""
    return 1.0 if level <= 0.0 else 10.0 ** (level_dbfs / 20.0) / level


class LevelMeter:
    """:func:`speech_level` of a signal given in blocks (frames across block edges are
    skipped); ``gain()`` is the factor :func:`normalize_level` would apply.

    ``span``: only the last ``span`` seconds of blocks count (a running level, for a stream
    that never ends); None: every block fed."""

    def __init__(self, sr: int, span: float | None = None):
        self.sr = sr
        self.span = span
        self._powers: list[np.ndarray] = []
        self._seconds: list[float] = []

    def feed(self, block: np.ndarray) -> None:
        self._powers.append(_frame_powers(block, self.sr).astype(np.float32))
        if self.span is not None:
            self._seconds.append(block.size / self.sr)
            while sum(self._seconds) - self._seconds[0] >= self.span:
                del self._powers[0], self._seconds[0]

    def level(self) -> float:
        return _level(np.concatenate(self._powers) if self._powers else np.zeros(0))

    def gain(self, level_dbfs: float = LEVEL_DBFS) -> float:
        return level_gain(self.level(), level_dbfs)


def normalize_level(y: np.ndarray, sr: int, level_dbfs: float = LEVEL_DBFS, *,
                    level: float | None = None) -> np.ndarray:
    """``y`` scaled so that :func:`speech_level` is ``level_dbfs`` (unchanged if all zero).

    ``level``: ``speech_level(y, sr)`` when the caller has measured it already (the
    Recognizer measures once for the speech rule and the features)."""
    if level is None:
        level = speech_level(y, sr)
    if level <= 0.0:
        return np.asarray(y, dtype=np.float32)
    return np.asarray(y, dtype=np.float32) * np.float32(level_gain(level, level_dbfs))


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average channels: (frames, channels) -> (frames,)."""
    return y.mean(axis=1) if y.ndim == 2 else y


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


#: Seconds of audio decoded at a time: long recordings never sit whole in memory unless the
#: caller joins the blocks (``load_audio`` does; the Recognizer's long-audio path does not).
BLOCK_SECONDS = 20.0


def _soundfile_blocks(f: sf.SoundFile, path: Path, sr: int, offset: float,
                      duration: float | None) -> Iterator[np.ndarray]:
    with f:
        native = f.samplerate
        start = min(int(round(offset * native)), f.frames)
        if start:
            f.seek(start)
        expected = f.frames - start
        if duration is not None:
            expected = min(int(round(duration * native)), expected)
        block = max(1, int(BLOCK_SECONDS * native))
        rs = Resampler(native, sr)
        got = 0
        while duration is None or got < expected:
            want = block if duration is None else min(block, expected - got)
            try:
                y = f.read(frames=want, dtype="float32", always_2d=True)
            except Exception as exc:  # the format is known but the data is damaged
                raise AudioError(path, f"damaged or truncated audio ({exc})") from exc
            if not len(y):
                break
            got += len(y)
            out = rs(to_mono(y))
            if out.size:
                yield out
    if got + _LENGTH_SLACK < expected:
        raise AudioError(
            path, f"truncated: header says {expected / native:.2f} s from the offset, "
            f"only {got / native:.2f} s decodable"
        )
    tail = rs.flush()
    if tail.size:
        yield tail


#: The demuxers ffmpeg may use, by what the file's first bytes say. Only containers of plain
#: media are listed: never a playlist, concat list, image sequence or anything else that
#: names other files or URLs (HLS, DASH, ffconcat, SDP, …), so ffmpeg reads the given bytes
#: and nothing else.
FFMPEG_FORMATS = ("wav", "flac", "ogg", "mp3", "matroska", "mov", "aiff", "caf", "au", "asf",
                  "aac")


#: Those of FFMPEG_FORMATS that libsndfile decodes in-process (ffmpeg is only a second try).
SNDFILE_FORMATS = frozenset({"wav", "flac", "ogg", "mp3", "aiff", "caf", "au"})


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


def _ffmpeg_blocks(
    path: Path, sr: int, offset: float, duration: float | None, max_duration: float | None
) -> Iterator[np.ndarray]:
    fmt = sniff_format(path)
    if fmt is None:
        raise AudioError(path, "unreadable audio: not a recognised audio format (ser reads wav, "
                         "flac, ogg/opus, mp3, webm/matroska, mp4/m4a, aiff, caf, au, wma, aac)")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        if fmt in SNDFILE_FORMATS:  # libsndfile reads these and could not: ffmpeg is no cure
            raise AudioError(path, f"unreadable audio: damaged, or not the {fmt} it looks like")
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
    block = 4 * max(1, int(BLOCK_SECONDS * sr))
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err)
        assert proc.stdout is not None
        try:
            carry = b""
            while data := proc.stdout.read(block):
                data = carry + data
                cut = len(data) - len(data) % 4
                carry = data[cut:]
                yield np.frombuffer(data[:cut], dtype="<f4").copy()
            proc.wait()
        finally:  # also when the caller stops early: no ffmpeg left running
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        err.seek(0)
        detail = err.read().decode(errors="replace").strip().splitlines()
    last = _scrub(detail[-1], path.resolve()) if detail else "ffmpeg failed"
    if proc.returncode != 0:
        raise AudioError(path, f"unreadable audio ({last})")
    if detail:
        # ffmpeg can exit 0 on a cut-off or damaged stream but reports it at "error" level.
        raise AudioError(path, f"damaged or truncated audio ({last})")


def duration_of(path: str | Path) -> float | None:
    """Duration in seconds from the file header, or None when the header does not say
    (or ``path`` is not a regular file: a FIFO or device is never opened here)."""
    try:
        if not Path(path).is_file():
            return None
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


def checked_blocks(blocks: Iterable[np.ndarray], sr: int, *,
                   path: str | Path | None = None) -> Iterator[np.ndarray]:
    """Pass blocks through, raising what :func:`check_signal` would for the whole signal
    (NaN at once; empty or silent after the last block) without holding it."""
    n, peak = 0, 0.0
    for block in blocks:
        if block.size:
            check_signal(block, sr, path=path, allow_silent=True)
            n += block.size
            peak = max(peak, float(np.max(np.abs(block))))
        yield block
    if n == 0:
        raise AudioError(path, "empty audio (no samples)")
    if peak < SILENCE_PEAK:
        raise AudioError(path, "silent audio (peak below -80 dBFS)")


def iter_audio(
    path: str | Path,
    sr: int = 16000,
    *,
    offset: float = 0.0,
    duration: float | None = None,
    max_duration: float | None = None,
) -> Iterator[np.ndarray]:
    """Decode ``path`` as blocks of mono float32 at ``sr`` Hz (about ``BLOCK_SECONDS`` each).

    The joined blocks are exactly what :func:`load_audio` returns (before its checks of the
    signal). A file that cannot be used raises :class:`AudioError`, possibly after some blocks
    (a truncated or damaged file is noticed where the damage is).
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "no such file")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if not path.is_file():
        raise AudioError(path, "not a regular file")
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
        f = sf.SoundFile(str(path))
    except Exception:
        # Not a format libsndfile knows (webm/opus, m4a, …): ffmpeg decodes it.
        yield from _ffmpeg_blocks(path, sr, offset, duration, max_duration)
    else:
        yield from _soundfile_blocks(f, path, sr, offset, duration)


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
    blocks = list(iter_audio(path, sr, offset=offset, duration=duration,
                             max_duration=max_duration))
    y = np.concatenate(blocks) if blocks else np.zeros(0, np.float32)
    return check_signal(
        y, sr, path=path, min_duration=min_duration, max_duration=max_duration,
        allow_silent=allow_silent,
    )
