"""Finding speech in long recordings with Silero VAD (ONNX, shipped in ``ser/pretrained``).

The model scores 16 kHz audio in 512-sample windows (32 ms). Each call sees the window
preceded by the last 64 samples of the previous one, and carries a recurrent state
``(2, 1, 128)`` from call to call — the protocol of silero-vad v5+ (``OnnxWrapper`` in its
``utils_vad.py``). Frame probabilities become segments with two thresholds (enter speech at
``threshold``, leave it only after ``min_silence`` seconds below ``neg_threshold``), then
too-short segments are dropped and the rest padded.

>>> vad = SileroVAD()                                  # doctest: +SKIP
>>> vad.segments(load_audio("meeting.mp3", sr=16000))  # doctest: +SKIP
[(0.42, 3.1), (4.0, 9.87)]
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources

import numpy as np

SAMPLE_RATE = 16000
#: Samples scored per model call at 16 kHz, and samples of left context each call needs.
WINDOW = 512
CONTEXT = 64
FRAME_SECONDS = WINDOW / SAMPLE_RATE  # 32 ms
MODEL_FILE = "silero_vad.onnx"
#: Where ``SpeechRule.probe`` starts listening: this many seconds before the first frame
#: within ``ONSET_DB`` dB of the recording's loudest frame.
ONSET_DB = 40.0
ONSET_LEAD = 0.25


@dataclass(frozen=True)
class VADConfig:
    """Turning frame probabilities into segments (seconds, except the thresholds).

    The defaults favour utterance-sized pieces for emotion recognition over silero's
    word-level defaults (min_speech 0.25 s, min_silence 0.1 s, pad 0.03 s): a short breath
    does not split a sentence, and a cough does not become a segment.
    """

    threshold: float = 0.5
    neg_threshold: float | None = None  # default: threshold - 0.15 (silero's hysteresis)
    min_speech: float = 0.4
    min_silence: float = 0.3
    pad: float = 0.1


@dataclass(frozen=True)
class SpeechRule:
    """When an input holds enough speech to be given an emotion: at least ``min_speech``
    seconds of frames whose speech probability is ``>= threshold`` — heard as recorded, or
    heard an octave lower (``octave_down``: the same samples played at half speed, the
    VAD's frames then covering 16 ms of the input each).

    Why two hearings: Silero scores screamed speech low. The seven RAVDESS clips the first
    hearing turned away are strong happy/angry/fearful takes with a median f0 of 520-920 Hz
    (the same actor's normal takes: ~250 Hz); an octave lower, Silero hears them, and a tone,
    a chord or a noise an octave lower is still no voice. The second hearing runs only on
    input the first rejects (the Recognizer segments long input from it then).

    The thresholds are chosen on data (``bench/experiments_speech.py``, docs/RESULTS.md):
    the pair that rejects the fewest real speech recordings while passing none of the
    generated non-speech corpus (with a frame of margin) and few real noise recordings — the
    VAD hearing each at the level the features use, as the Recognizer does. A lower frame
    threshold than segmentation's 0.5: the rule asks only "is there speech at all".
    """

    threshold: float = 0.2
    min_speech: float = 0.2
    octave_down: bool = True

    def speech_seconds(self, probs: np.ndarray, frame_seconds: float = FRAME_SECONDS) -> float:
        """Seconds of speech frames in per-frame probabilities (``frame_seconds`` of input
        per frame)."""
        return float(np.count_nonzero(np.asarray(probs) >= self.threshold) * frame_seconds)

    def enough(self, seconds: float) -> bool:
        """Whether ``seconds`` of speech heard are enough."""
        return seconds >= self.min_speech - 1e-9

    def accepts(self, probs: np.ndarray, frame_seconds: float = FRAME_SECONDS) -> bool:
        return self.enough(self.speech_seconds(probs, frame_seconds))

    def hearings(self, sr: int) -> list[int]:
        """The rate each hearing tells the VAD the samples are at (half: an octave lower);
        a frame of a hearing at ``rate`` covers ``FRAME_SECONDS * rate / sr`` of the input."""
        return [sr, sr // 2] if self.octave_down and sr >= 2 else [sr]

    def heard(self, vad: SileroVAD, y: np.ndarray, sr: int) -> float:
        """The rule's definition: seconds of speech in the hearing that hears the most, every
        frame of the input scored (``enough(heard(...))`` is the decision)."""
        out = 0.0
        for rate in self.hearings(sr):
            stream = vad.stream(rate)
            stream.feed(y)
            out = max(out, self.speech_seconds(stream.finish(), FRAME_SECONDS * rate / sr))
        return out

    def probe(self, vad: SileroVAD, y: np.ndarray, sr: int) -> float:
        """Seconds of speech heard, enough to decide: ``enough(probe(...))`` is always
        ``enough(heard(...))``, and when it says no, ``probe`` and ``heard`` are equal.

        Cheap for speech: the first hearing starts ``ONSET_LEAD`` s before the first frame
        within ``ONSET_DB`` dB of the loudest (a recording's leading silence holds no speech
        frame), and each hearing stops at the first check at which enough speech has been
        heard. An input not accepted that way is scored again, whole and from its start, so
        a rejection is always the rule applied to every frame of every hearing.
        """
        frame = max(1, round(FRAME_SECONDS * sr))
        n = y.size // frame
        start = 0
        if n > 1:
            rms = np.sqrt(np.mean(np.square(y[: n * frame].reshape(n, frame), dtype=np.float64),
                                  axis=1))
            first = int(np.argmax(rms >= rms.max() * 10 ** (-ONSET_DB / 20)))
            start = max(0, first * frame - round(ONSET_LEAD * sr))
        out = 0.0
        for k, rate in enumerate(self.hearings(sr)):
            for begin in ([start, 0] if k == 0 and start > 0 else [0]):
                seconds = self._listen(vad, y[begin:], rate, FRAME_SECONDS * rate / sr,
                                       3 * frame)
                if self.enough(seconds):
                    return seconds
                if begin == 0:  # not enough: every frame was scored, the hearing's answer
                    out = max(out, seconds)
        return out

    def _listen(self, vad: SileroVAD, y: np.ndarray, rate: int, frame_seconds: float,
                step: int) -> float:
        """Speech seconds heard in ``y`` told to the VAD at ``rate``, checked every ``step``
        samples of input: stops once enough, else scores every frame."""
        stream = vad.stream(rate)
        for at in range(0, y.size, step):  # a check every ~0.1 s of input
            stream.feed(y[at:at + step])
            seconds = self.speech_seconds(stream.scored(), frame_seconds)
            if self.enough(seconds):
                return seconds
        return self.speech_seconds(stream.finish(), frame_seconds)


def segments_from_probs(
    probs: np.ndarray,
    n_samples: int,
    config: VADConfig = VADConfig(),
    sr: int = SAMPLE_RATE,
    hop: int = WINDOW,
) -> list[tuple[float, float]]:
    """Speech segments ``[(start_s, end_s), ...]`` from per-frame speech probabilities.

    Frame ``i`` covers samples ``[i*hop, (i+1)*hop)``; ``n_samples`` is the signal length.

    >>> segments_from_probs(np.array([0, 0, .9, .9, .9, 0, 0, 0]), 8 * 512,
    ...                     VADConfig(min_speech=0.05, min_silence=0.05, pad=0.0))
    [(0.064, 0.16)]
    """
    neg = config.neg_threshold
    if neg is None:
        neg = max(config.threshold - 0.15, 0.01)
    min_silence = config.min_silence * sr
    spans: list[tuple[int, int]] = []
    start: int | None = None
    silence_from: int | None = None
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        t = i * hop
        if start is None:
            if p >= config.threshold:
                start, silence_from = t, None
            continue
        if p >= config.threshold:
            silence_from = None
        elif p < neg:
            if silence_from is None:
                silence_from = t
            if t + hop - silence_from >= min_silence:
                spans.append((start, silence_from))
                start = silence_from = None
        # between the thresholds: neither speech confirmed nor silence begun — keep going
    if start is not None:
        spans.append((start, silence_from if silence_from is not None else n_samples))

    spans = [(s, min(e, n_samples)) for s, e in spans if e - s >= config.min_speech * sr]
    pad = int(config.pad * sr)
    padded: list[tuple[int, int]] = []
    for k, (s, e) in enumerate(spans):
        # Pad into the silence on each side, but never past half the gap to a neighbour.
        left = s - (s - spans[k - 1][1]) // 2 if k else 0
        right = e + (spans[k + 1][0] - e) // 2 if k + 1 < len(spans) else n_samples
        padded.append((max(s - pad, left), min(e + pad, right)))
    return [(round(s / sr, 3), round(e / sr, 3)) for s, e in padded]


class SileroVAD:
    """Silero VAD on onnxruntime (one thread by default; it is a tiny model).

    ``path`` defaults to the copy shipped in ``ser/pretrained``.
    """

    def __init__(self, path: str | None = None, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        if path is None:
            model = (resources.files("ser") / "pretrained" / MODEL_FILE).read_bytes()
        else:
            with open(path, "rb") as f:
                model = f.read()
        self.session = ort.InferenceSession(
            model, sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def stream(self, sr: int = SAMPLE_RATE) -> VADStream:
        """A :class:`VADStream` over this model for audio at ``sr`` Hz."""
        return VADStream(self, sr)

    def probabilities(self, y: np.ndarray) -> np.ndarray:
        """Speech probability of each 512-sample frame of a 16 kHz mono signal."""
        stream = self.stream()
        stream.feed(y)
        return stream.finish()

    def segments(
        self, y: np.ndarray, sr: int = SAMPLE_RATE, config: VADConfig = VADConfig()
    ) -> list[tuple[float, float]]:
        """Speech segments ``[(start_s, end_s), ...]`` of a mono signal at ``sr`` Hz."""
        stream = self.stream(sr)
        stream.feed(y)
        return stream.segments(config)


_SHARED: SileroVAD | None = None
_SHARED_LOCK = threading.Lock()


def shared_vad() -> SileroVAD:
    """The process's one :class:`SileroVAD` with the shipped model, loaded on first use and
    shared by every Recognizer (a server's personal voices too) and live speech gate: its
    session keeps no state between calls (a :class:`VADStream` does), and each copy costs
    ~4 MB."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = SileroVAD()
        return _SHARED


class VADStream:
    """Silero VAD over a signal given in blocks (any rate; resampled to 16 kHz as it comes):
    the probabilities and segments are exactly those of the whole signal at once, with
    memory for one block — how the Recognizer segments hours of audio."""

    def __init__(self, vad: SileroVAD, sr: int = SAMPLE_RATE):
        from ser.audio import Resampler

        self.vad = vad
        self._resample = Resampler(sr, SAMPLE_RATE)
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._pending = np.zeros(CONTEXT, dtype=np.float32)  # left context + unscored samples
        self._probs: list[np.ndarray] = []
        self._done = False

    @property
    def n_samples(self) -> int:
        """Samples at 16 kHz fed so far."""
        return self._resample.n_out

    def feed(self, y: np.ndarray) -> None:
        self._score(self._resample(np.asarray(y, dtype=np.float32).reshape(-1)))

    def _score(self, y16: np.ndarray) -> None:
        buf = np.concatenate([self._pending, y16])
        n = (buf.size - CONTEXT) // WINDOW
        probs = np.empty(n, dtype=np.float32)
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        for i in range(n):
            # The window plus the 64 samples before it (zeros before the first window).
            x = buf[None, i * WINDOW:(i + 1) * WINDOW + CONTEXT]
            out, self._state = self.vad.session.run(
                None, {"input": x, "state": self._state, "sr": sr})
            probs[i] = out[0, 0]
        self._pending = buf[n * WINDOW:]
        self._probs.append(probs)

    def scored(self) -> np.ndarray:
        """The probabilities of the frames scored so far (the stream stays open)."""
        return np.concatenate(self._probs) if self._probs else np.zeros(0, np.float32)

    def finish(self) -> np.ndarray:
        """Score what is left (the last partial frame zero-padded); every frame's
        probability."""
        if not self._done:
            self._score(self._resample.flush())
            rest = self._pending.size - CONTEXT
            if rest > 0:
                self._score(np.zeros(WINDOW - rest, dtype=np.float32))
            self._done = True
        return np.concatenate(self._probs) if self._probs else np.zeros(0, np.float32)

    def segments(self, config: VADConfig = VADConfig()) -> list[tuple[float, float]]:
        """Speech segments of everything fed (call once, after the last block)."""
        probs = self.finish()
        return segments_from_probs(probs, self.n_samples, config)
