"""Streaming emotion recognition: audio arriving in chunks → speech-gated emotion updates.

One streaming core serves every live face: ``ser live`` (a microphone or a file played as a
stream) and the server's WebSocket. :class:`EmotionStream` takes chunks of mono float32
audio at any sample rate and, every ``hop`` seconds of audio:

- asks the speech gate (silero VAD from :mod:`ser.vad`) whether the last hop holds speech,
  hearing the stream at the level the Recognizer hears a file at (see :class:`SileroGate`);
- while speech goes on, predicts the emotion of the last ``window`` seconds with the
  :class:`~ser.inference.Recognizer` and emits an :class:`Update`;
- when speech stops (``min_silence`` seconds without it), predicts the whole utterance once
  and emits an :class:`Utterance` carrying its audio.

Audio sources are pluggable: anything iterable over float32 chunks with a ``sample_rate``
(:class:`FileSource`, :class:`MicrophoneSource`).

>>> rec = Recognizer.load()                                   # doctest: +SKIP
>>> source = FileSource("talk.wav", sample_rate=16000)        # doctest: +SKIP
>>> for event in stream_events(source, EmotionStream(rec, source.sample_rate)):
...     print(event)                                          # doctest: +SKIP
"""

from __future__ import annotations

import json
import queue
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ser.audio import (
    LEVEL_DBFS,
    AudioError,
    LevelMeter,
    level_gain,
    load_audio,
    resample,
    speech_level,
)
from ser.errors import SerError

if TYPE_CHECKING:
    from ser.vad import SileroVAD


class LiveError(SerError):
    """No usable microphone, PortAudio missing, or a bad stream setting."""


# --------------------------------------------------------------------------- speech gates


#: Seconds of recent audio whose level sets the gate's gain (``EmotionStream``).
LEVEL_SPAN = 10.0
#: The most the gate's gain raises a quiet stream, in dB: enough for speech peaking at
#: -50 dBFS to reach the Recognizer's level; fainter audio stays fainter (real noise peaking
#: at -60 dBFS opens half the utterances it would at a normal level: bench/bench_live_gate.py,
#: docs/RESULTS.md).
MAX_GAIN_DB = 40.0


class SpeechGate(Protocol):
    #: The speech level (dBFS, as ``ser.audio.normalize_level``) the gate wants to hear the
    #: stream at — the stream scales what it passes — or None: the audio as recorded.
    level_dbfs: float | None

    def __call__(self, y: np.ndarray, sr: int, n_last: int) -> float:
        """Speech probability of the last ``n_last`` samples of ``y`` (earlier ones are context)."""
        ...


class SileroGate:
    """Silero VAD (ONNX, from :mod:`ser.vad`) scoring the last hop of a short context window.

    Each call rescores ~0.5 s of context before the hop so the recurrent model has warmed up;
    at 32 ms per frame and well under a millisecond per frame this costs a few ms per hop.

    Silero misses quiet speech, so it hears the stream at ``level_dbfs`` (the Recognizer's
    level, at which it also decides whether a file holds speech): :class:`EmotionStream`
    scales each window by the gain that brings the louder of the last ``LEVEL_SPAN``
    seconds' speech level and the window's own to ``level_dbfs``, raising by at most
    ``MAX_GAIN_DB``. ``level_dbfs=None``: the stream as recorded. Stateless: one gate (and
    one ``vad`` session) serves any number of streams.
    """

    def __init__(self, vad: SileroVAD | None = None, level_dbfs: float | None = LEVEL_DBFS) -> None:
        from ser.vad import SAMPLE_RATE, WINDOW, SileroVAD

        self.vad = vad if vad is not None else SileroVAD()
        self.sr, self.frame = SAMPLE_RATE, WINDOW
        self.level_dbfs = level_dbfs

    def __call__(self, y: np.ndarray, sr: int, n_last: int) -> float:
        y16 = resample(y, sr, self.sr)  # a no-op at the VAD's own rate
        probs = self.vad.probabilities(y16)
        last = max(1, int(round(n_last * self.sr / sr / self.frame)))
        return float(np.max(probs[-last:]))


class EnergyGate:
    """Fallback gate: loudness above ``db`` dBFS counts as speech (no model needed), as
    recorded (``level_dbfs`` None: levelling would raise quiet noise above ``db``)."""

    level_dbfs = None

    def __init__(self, db: float = -40.0):
        self.db = db

    def __call__(self, y: np.ndarray, sr: int, n_last: int) -> float:
        rms = float(np.sqrt(np.mean(np.square(y[-n_last:], dtype=np.float64)) + 1e-12))
        return 1.0 if 20 * np.log10(rms) > self.db else 0.0


def default_gate() -> SpeechGate:
    """Silero VAD when it loads, else the energy gate (e.g. a source tree without the model)."""
    try:
        from ser.vad import shared_vad

        return SileroGate(shared_vad())
    except Exception:  # missing ONNX file / onnxruntime problem: degrade, don't die
        return EnergyGate()


# --------------------------------------------------------------------------- events


@dataclass
class Update:
    """The state of the stream after one hop: speech or not, and the current emotion."""

    time: float  # seconds of audio consumed so far
    speech: bool
    prediction: Any | None = None  # ser.inference.Prediction of the last window

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"type": "update", "time": round(self.time, 3), "speech": self.speech}
        if self.prediction is not None:
            d.update(self.prediction.to_dict())
        return d


@dataclass
class Utterance:
    """One stretch of speech, with its audio and the prediction over all of it."""

    index: int
    start: float
    end: float
    audio: np.ndarray = field(repr=False)
    sample_rate: int
    prediction: Any | None  # None when the utterance could not be scored (e.g. too short)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "type": "utterance", "index": self.index,
            "start": round(self.start, 3), "end": round(self.end, 3),
        }
        if self.prediction is not None:
            d.update(self.prediction.to_dict())
        return d


Event = Update | Utterance


# --------------------------------------------------------------------------- the core


class EmotionStream:
    """Feed chunks, get events. Not thread-safe: one stream per audio source.

    ``window``: seconds the running prediction looks back over. ``hop``: seconds between
    updates (0.25 → four updates a second while someone speaks). ``min_silence``: seconds
    of non-speech that end an utterance. ``max_utterance``: an utterance is cut (and a new one
    begun) after this long, so memory and latency stay bounded. ``threshold``: the gate's
    speech probability that opens an utterance (it closes below ``threshold - 0.15``); 0.6 was
    chosen on validation speakers and noise (bench/experiments_live_gate.py, docs/RESULTS.md).
    """

    def __init__(
        self,
        recognizer: Any,
        sample_rate: int,
        *,
        window: float = 2.5,
        hop: float = 0.25,
        gate: SpeechGate | None = None,
        threshold: float = 0.6,
        min_silence: float = 0.5,
        min_speech: float = 0.3,
        min_window: float = 0.5,
        max_utterance: float = 20.0,
        preroll: float = 0.2,
    ):
        if not 4000 <= int(sample_rate) <= 384000:
            raise LiveError(f"sample rate {sample_rate} Hz is out of range (4000–384000)")
        self.recognizer = recognizer
        self.sr = int(sample_rate)
        self.hop = max(1, int(round(hop * self.sr)))
        self.window = int(round(window * self.sr))
        self.min_window = int(round(min_window * self.sr))
        self.min_speech = int(round(min_speech * self.sr))
        self.max_utterance = int(round(max_utterance * self.sr))
        self.preroll = int(round(preroll * self.sr))
        self.context = int(0.5 * self.sr)  # VAD warm-up context before each hop
        self.gate = gate if gate is not None else default_gate()
        self.threshold = threshold
        self.min_silence = min_silence
        # Audio kept: enough for the longest utterance plus its pre-roll and the VAD context.
        self._keep = self.max_utterance + self.preroll + self.context + self.hop
        self._buf = np.zeros(0, dtype=np.float32)
        self._buf_start = 0  # absolute sample index of _buf[0]
        self._done = 0  # absolute samples already processed in hops
        self._utt_start: int | None = None
        self._last_speech = 0  # absolute sample where the last speech hop ended
        self._silence = 0.0
        self._count = 0
        self._meter = LevelMeter(self.sr, span=LEVEL_SPAN)  # the gate's running level

    # -- helpers
    def _slice(self, start: int, end: int) -> np.ndarray:
        return self._buf[max(0, start - self._buf_start):end - self._buf_start]

    def _predict(self, y: np.ndarray) -> Any | None:
        try:
            return self.recognizer.predict(y, sr=self.sr, segments=False)
        except AudioError:  # e.g. a silent or too-short window: no opinion this hop
            return None

    def _close_utterance(self, end: int) -> Utterance | None:
        start, self._utt_start, self._silence = self._utt_start, None, 0.0
        assert start is not None
        if end - start < self.min_speech:
            return None
        audio = self._slice(start, end).copy()
        self._count += 1
        return Utterance(
            self._count, start / self.sr, end / self.sr, audio, self.sr, self._predict(audio)
        )

    # -- API
    @property
    def time(self) -> float:
        """Seconds of audio processed so far."""
        return self._done / self.sr

    @property
    def in_speech(self) -> bool:
        return self._utt_start is not None

    def feed(self, chunk: np.ndarray) -> list[Event]:
        """Add mono float32 samples; return the events of every hop they complete."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(chunk)):
            chunk = np.nan_to_num(chunk, nan=0.0, posinf=0.0, neginf=0.0)
        self._buf = np.concatenate([self._buf, chunk])
        events: list[Event] = []
        end_abs = self._buf_start + self._buf.size
        while end_abs - self._done >= self.hop:
            events.extend(self._step(self._done, self._done + self.hop))
            self._done += self.hop
        # Forget audio no event can need any more.
        drop = self._buf.size - self._keep
        if self._utt_start is not None:
            drop = min(drop, self._utt_start - self._buf_start)
        if drop > 0:
            self._buf = self._buf[drop:]
            self._buf_start += drop
        return events

    def _gate_gain(self, y: np.ndarray) -> float:
        """The factor the gate hears the window ``y`` at (see :class:`SileroGate`): the
        stream's recent level, or the window's own when louder (speech after a long silence),
        brought to the gate's ``level_dbfs``, raised by at most ``MAX_GAIN_DB``."""
        target = getattr(self.gate, "level_dbfs", None)
        if target is None:
            return 1.0
        level = max(self._meter.level(), speech_level(y, self.sr))
        return min(level_gain(level, target), 10.0 ** (MAX_GAIN_DB / 20.0))

    def _step(self, start: int, end: int) -> list[Event]:
        events: list[Event] = []
        y = self._slice(start - self.context, end)
        self._meter.feed(y[-(end - start):])
        p = self.gate(y * np.float32(self._gate_gain(y)), self.sr, end - start)
        speech = p >= self.threshold
        if speech:
            self._last_speech = end
        if self._utt_start is None:
            if speech:
                self._utt_start = max(self._buf_start, start - self.preroll)
        else:
            # Hysteresis as in silero: between the thresholds neither ends nor resets silence.
            if speech:
                self._silence = 0.0
            elif p < self.threshold - 0.15:
                self._silence += (end - start) / self.sr
            if self._silence >= self.min_silence:
                # End the utterance shortly after its last speech, not after the silence.
                utt = self._close_utterance(min(end, self._last_speech + self.preroll))
                if utt is not None:
                    events.append(utt)
            elif end - self._utt_start >= self.max_utterance:
                utt = self._close_utterance(end)
                self._utt_start = end
                if utt is not None:
                    events.append(utt)
        prediction = None
        if self._utt_start is not None and end - self._utt_start >= self.min_window:
            prediction = self._predict(self._slice(max(self._utt_start, end - self.window), end))
        events.insert(0, Update(end / self.sr, self._utt_start is not None, prediction))
        return events

    def close(self) -> list[Event]:
        """End of the stream: close an utterance still open."""
        if self._utt_start is None:
            return []
        utt = self._close_utterance(self._buf_start + self._buf.size)
        return [utt] if utt is not None else []


def stream_events(source: Iterable[np.ndarray], stream: EmotionStream) -> Iterator[Event]:
    """Run a source through a stream, yielding events; the open utterance is closed at the end."""
    for chunk in source:
        yield from stream.feed(chunk)
    yield from stream.close()


# --------------------------------------------------------------------------- sources


class FileSource:
    """An audio file played as a stream, in ``block``-second chunks.

    ``realtime=True`` paces the chunks at the speed of the audio (a stand-in microphone);
    otherwise they come as fast as they are consumed.
    """

    def __init__(self, path: str | Path, sample_rate: int = 16000, *, block: float = 0.1,
                 realtime: bool = False):
        self.path = Path(path)
        self.sample_rate = int(sample_rate)
        self.block = max(1, int(block * self.sample_rate))
        self.realtime = realtime
        self.audio = load_audio(self.path, sr=self.sample_rate, allow_silent=True)

    def __iter__(self) -> Iterator[np.ndarray]:
        t0 = time.monotonic()
        for i in range(0, self.audio.size, self.block):
            if self.realtime:
                delay = t0 + i / self.sample_rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield self.audio[i:i + self.block]


def _sounddevice():
    try:
        import sounddevice
    except ImportError as exc:
        raise LiveError(
            "the microphone needs the sounddevice package: pip install 'ser[live]'"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when libportaudio is absent
        raise LiveError(
            f"PortAudio is not available ({exc}); install it, e.g. apt install libportaudio2"
        ) from exc
    return sounddevice


def list_devices() -> list[dict[str, Any]]:
    """Input devices PortAudio sees, as dicts: index, name, channels, sample_rate, default."""
    sd = _sounddevice()
    try:
        devices = sd.query_devices()
        default_in = sd.default.device[0] if sd.default.device else -1
    except Exception as exc:
        raise LiveError(f"cannot list audio devices: {exc}") from exc
    return [
        {"index": i, "name": d["name"], "channels": d["max_input_channels"],
         "sample_rate": int(d["default_samplerate"]), "default": i == default_in}
        for i, d in enumerate(devices) if d["max_input_channels"] > 0
    ]


class MicrophoneSource:
    """A PortAudio input device (via sounddevice), mono, in ``block``-second chunks.

    The PortAudio callback only copies blocks into a queue; all the work happens in the
    consumer, so a slow prediction never makes the driver drop audio (the queue absorbs it).
    """

    def __init__(self, device: int | str | None = None, sample_rate: int = 16000, *,
                 block: float = 0.1):
        self.sd = _sounddevice()
        self.device = device
        self.sample_rate = int(sample_rate)
        self.block = max(1, int(block * self.sample_rate))
        self.overflows = 0
        try:
            self.sd.check_input_settings(device=device, channels=1, samplerate=self.sample_rate,
                                         dtype="float32")
        except Exception as exc:
            raise LiveError(
                f"no usable microphone ({exc}); see `ser live --list-devices`"
            ) from exc

    def __iter__(self) -> Iterator[np.ndarray]:
        blocks: queue.Queue[np.ndarray] = queue.Queue()

        def callback(indata, frames, time_info, status) -> None:
            if status.input_overflow:
                self.overflows += 1
            blocks.put(indata[:, 0].copy())

        try:
            stream = self.sd.InputStream(
                device=self.device, channels=1, samplerate=self.sample_rate, dtype="float32",
                blocksize=self.block, callback=callback,
            )
        except Exception as exc:
            raise LiveError(f"cannot open the microphone: {exc}") from exc
        with stream:
            while True:
                yield blocks.get()


# --------------------------------------------------------------------------- saving


class UtteranceLog:
    """``--save DIR``: each utterance as ``utt-0001.wav`` plus one JSON line in
    ``predictions.jsonl``, flushed as it is written so an interrupted session loses nothing."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "predictions.jsonl"
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, utt: Utterance) -> Path:
        import soundfile as sf

        wav = self.folder / f"utt-{utt.index:04d}.wav"
        if wav.exists():  # a second session in the same folder: never overwrite
            stamp = time.strftime("%Y%m%d-%H%M%S")
            wav = self.folder / f"utt-{stamp}-{utt.index:04d}.wav"
        sf.write(str(wav), utt.audio, utt.sample_rate, subtype="PCM_16")
        row = {**utt.to_dict(), "file": wav.name,
               "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        row.pop("type")
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        return wav

    def close(self) -> None:
        self._file.close()


def run(
    source: Iterable[np.ndarray],
    stream: EmotionStream,
    on_event: Callable[[Event], None],
    log: UtteranceLog | None = None,
) -> bool:
    """Drive ``stream`` from ``source`` until the source ends or Ctrl-C.

    Either way the utterance still open is finished and logged, the source (microphone) is
    closed, and the log flushed. Returns True when stopped by Ctrl-C.
    """

    def handle(event: Event) -> None:
        if isinstance(event, Utterance) and log is not None:
            log.write(event)
        on_event(event)

    chunks = iter(source)
    interrupted = False
    try:
        try:
            for chunk in chunks:
                for event in stream.feed(chunk):
                    handle(event)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            close = getattr(chunks, "close", None)  # a generator: stop the microphone now
            if close is not None:
                close()
        for event in stream.close():
            handle(event)
    finally:
        if log is not None:
            log.close()
    return interrupted
