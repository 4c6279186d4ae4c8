"""Recognising emotion in a clip, a batch of files, or a long recording — without torch.

A :class:`Recognizer` loads a bundle once (``model.json``, the feature set, an onnxruntime
session) and then runs decode → speech check → window → features → ``(x - mean) / std`` →
ONNX → (an adapted bundle's output map) → calibration for each input. Every face of ser
(CLI, server, live) goes through it.

The speech rule (``ser.vad.SpeechRule``): an input in which Silero VAD hears less than
``min_speech`` seconds of speech gets no emotion — :meth:`Recognizer.predict` raises
:class:`NoSpeechError`. Probabilities are calibrated with the bundle's temperature
(``ser.calibration``), and an answer below the bundle's ``uncertain`` threshold says so.

>>> rec = Recognizer.load()         # the model shipped in ser/pretrained  # doctest: +SKIP
>>> p = rec.predict("clip.wav")     # doctest: +SKIP
>>> p.label, round(p.confidence, 2) # doctest: +SKIP
('angry', 0.81)
>>> for seg in rec.predict_segments("meeting.mp3"):   # doctest: +SKIP
...     print(seg.start, seg.end, seg.label)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ser.adapt import map_outputs
from ser.audio import (
    AudioError,
    LevelMeter,
    check_signal,
    checked_blocks,
    duration_of,
    iter_audio,
    load_audio,
    normalize_level,
    resample,
    speech_level,
)
from ser.bundle import Bundle, BundleError, load_bundle
from ser.calibration import Calibration, uncertain_threshold_from_json
from ser.vad import FRAME_SECONDS, SpeechRule, VADConfig

#: Recordings longer than this (seconds) are segmented by default, and speech segments
#: longer than this are split into equal windows no longer than it.
LONG_AUDIO = 8.0
DEFAULT_BUNDLE = "default"
#: The longest audio given one whole-clip prediction (``segments=False``); longer audio is
#: segmented (a single prediction over hours means nothing, and its features need the whole
#: signal in memory).
WHOLE_CLIP_MAX = 600.0

Source = str | Path | np.ndarray


class _Short(Exception):
    """A file decoded for segmenting turned out short: predict it as one clip."""


class NoSpeechError(AudioError):
    """An input without enough speech to be given an emotion (``ser.vad.SpeechRule``)."""


@dataclass(frozen=True)
class Segment:
    """One stretch of speech in a longer recording (times in seconds)."""

    start: float
    end: float
    label: str
    confidence: float
    probabilities: dict[str, float]
    uncertain: bool = False

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        d = asdict(self)
        d["confidence"] = round(self.confidence, digits)
        d["probabilities"] = {k: round(v, digits) for k, v in self.probabilities.items()}
        return d


@dataclass(frozen=True)
class Prediction:
    """The emotion of one input; ``segments`` is set when it was segmented with VAD.

    ``confidence`` and ``probabilities`` are calibrated; ``uncertain`` is True when the
    confidence is below the model's uncertain threshold (the label is then a weak guess).
    """

    label: str
    confidence: float
    probabilities: dict[str, float]
    uncertain: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    segments: list[Segment] | None = None

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` most probable emotions, best first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        """JSON-able: label, confidence, probabilities (and segments when segmented)."""
        d: dict[str, Any] = {
            "label": self.label,
            "confidence": round(self.confidence, digits),
            "uncertain": self.uncertain,
            "probabilities": {k: round(v, digits) for k, v in self.probabilities.items()},
        }
        if self.segments is not None:
            d["segments"] = [s.to_dict(digits) for s in self.segments]
        return d


def packaged_bundles() -> list[str]:
    """Names of the models shipped inside ser (folders of ``ser/pretrained``)."""
    root = resources.files("ser") / "pretrained"
    if not isinstance(root, Path):
        return []
    return sorted(d.name for d in root.iterdir() if (d / "model.json").exists())


def packaged_bundle_path(name: str = DEFAULT_BUNDLE) -> Path:
    """The bundle folder of a model shipped inside ser (``ser/pretrained/<name>``)."""
    where = resources.files("ser") / "pretrained" / name
    if not isinstance(where, Path):  # e.g. imported from a zip file
        raise BundleError(f"the packaged model at {where} is not on the file system; "
                          "install ser as a regular package or pass --model")
    if not (where / "model.json").exists():
        raise BundleError(
            f"no model {name!r} shipped at {where}; shipped: "
            f"{', '.join(packaged_bundles()) or 'none'}. Pass a bundle folder with --model PATH "
            "(or Recognizer.load(PATH)), or train one with `ser train`."
        )
    return where


def resolve_bundle(path: str | Path | None) -> Path:
    """A bundle folder from what a user typed: None = the default model, an existing path,
    or the name of a model shipped with ser (``default``, ``fast``)."""
    if path is None:
        return packaged_bundle_path()
    if Path(path).exists():
        return Path(path)
    if str(path) in packaged_bundles():
        return packaged_bundle_path(str(path))
    raise BundleError(f"{path}: no such bundle folder, and not a model shipped with ser "
                      f"({', '.join(packaged_bundles()) or 'none'})")


def split_span(start: float, end: float, longest: float = LONG_AUDIO) -> list[tuple[float, float]]:
    """Cut ``[start, end)`` into the fewest equal pieces no longer than ``longest``.

    >>> split_span(0.0, 20.0)
    [(0.0, 6.667), (6.667, 13.333), (13.333, 20.0)]
    """
    n = max(1, math.ceil((end - start) / longest - 1e-9))
    step = (end - start) / n
    return [(round(start + k * step, 3), round(start + (k + 1) * step, 3)) for k in range(n)]


def _cut(blocks: Iterable[np.ndarray], cuts: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """The samples ``[a, b)`` of each cut (in time order) from a signal given in blocks,
    keeping only what a later cut can still need."""
    it = iter(blocks)
    buf, start = np.zeros(0, np.float32), 0  # buf holds samples [start, start + buf.size)
    for a, b in cuts:
        while start + buf.size < b and (block := next(it, None)) is not None:
            buf = block if not buf.size else np.concatenate([buf, block])
            drop = min(a - start, buf.size)
            if drop > 0:  # before this cut: no later cut needs it
                buf, start = buf[drop:], start + drop
        yield buf[max(0, a - start):max(0, b - start)]


def _smooth(probs: np.ndarray, n: int) -> np.ndarray:
    """Moving average over ``n`` neighbouring segments (centred; shorter at the edges)."""
    if n <= 1 or len(probs) < 2:
        return probs
    half = n // 2
    out = np.empty_like(probs)
    for i in range(len(probs)):
        out[i] = probs[max(0, i - half):i + half + 1].mean(axis=0)
    return out


class _Scorer:
    """One plain bundle's features and ONNX graph: class probabilities of a signal."""

    def __init__(self, bundle: Bundle, threads: int, session: Any = None):
        """``session``: an onnxruntime session of this very graph to share (a personal
        voice over its base model's classifier) instead of loading the graph again."""
        import onnxruntime as ort

        from ser.errors import SerError
        from ser.features import feature_set_from_json

        try:
            self.feature_set = feature_set_from_json(bundle.meta["feature_set"])
        except Exception as exc:  # unknown, newer, or a configuration the set does not take
            why = str(exc) if isinstance(exc, SerError) else f"{type(exc).__name__}: {exc}"
            raise BundleError(f"{bundle.path}: unusable feature_set ({why})") from None
        self.feature_set.prepare(threads)
        norm = bundle.normalization()
        if norm is not None:
            mean, std = norm
            # A constant feature in training has std 0; leave it centred rather than inf.
            norm = (mean, np.where(std > 0, std, 1.0).astype(np.float32))
        self._norm = norm
        self.calibration = Calibration.from_json(bundle.meta.get("calibration"))
        self.output_map = bundle.output_map()
        self.session = session
        if session is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            try:
                self.session = ort.InferenceSession(
                    bundle.graph if bundle.graph is not None else str(bundle.onnx_path),
                    sess_options=opts, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # not an ONNX graph onnxruntime can run
                raise BundleError(f"{bundle.path}: {bundle.onnx_path.name} is not a usable "
                                  f"ONNX model ({type(exc).__name__})") from None
        self._check_graph(bundle)

    def _check_graph(self, bundle: Bundle) -> None:
        """The graph's input and output agree with model.json (names, label count and the
        normalisation's shape), so a mismatched bundle fails on load, not mid-prediction."""
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        if "features" not in inputs or "probabilities" not in outputs:
            raise BundleError(f"{bundle.path}: the ONNX graph needs an input 'features' and an "
                              f"output 'probabilities' (has {', '.join(inputs)} -> "
                              f"{', '.join(outputs)})")
        n_out = outputs["probabilities"][-1] if outputs["probabilities"] else None
        if isinstance(n_out, int) and n_out != len(bundle.labels):
            raise BundleError(f"{bundle.path}: the ONNX graph gives {n_out} probabilities but "
                              f"model.json lists {len(bundle.labels)} labels")
        shape = [d if isinstance(d, int) else None for d in inputs["features"][1:]]
        if self._norm is not None and None not in shape:
            try:
                np.broadcast_shapes(tuple(shape), self._norm[0].shape)
            except ValueError:
                raise BundleError(f"{bundle.path}: normalization of shape "
                                  f"{self._norm[0].shape} does not fit the graph's features "
                                  f"{tuple(shape)}") from None

    def features(self, y: np.ndarray, level: float | None = None) -> np.ndarray:
        """The set's features of ``y`` windowed as in training (before normalisation);
        ``level``: ``speech_level(y)`` if measured already, reused when the window keeps all
        of ``y``."""
        w = self.feature_set.window(y)
        x = self.feature_set.features(w, level=level if w.size == y.size else None)
        return x.astype(np.float32, copy=False)

    def graph_probabilities(self, x: np.ndarray) -> np.ndarray:
        """The ONNX graph's answer for one normalised feature vector ``x`` (float64)."""
        feed = {"features": np.asarray(x, dtype=np.float32)[None]}
        return np.asarray(self.session.run(["probabilities"], feed)[0][0], dtype=np.float64)

    def __call__(self, y: np.ndarray, timings: dict[str, float],
                 level: float | None = None) -> np.ndarray:
        t = time.perf_counter()
        x = self.features(y, level)
        if self._norm is not None:
            x = (x - self._norm[0]) / self._norm[1]
        if not np.all(np.isfinite(x)):  # e.g. float samples far outside [-1, 1]
            raise AudioError(None, "the audio gives non-finite features (samples far "
                             "outside -1..1?)")
        t2 = time.perf_counter()
        p = self.graph_probabilities(x)
        if self.output_map is not None:
            p = map_outputs(p, *self.output_map)
        timings["features"] = timings.get("features", 0.0) + t2 - t
        timings["model"] = timings.get("model", 0.0) + time.perf_counter() - t2
        return self.calibration.apply(p, x)


class Recognizer:
    """A loaded bundle, ready to predict. Build with :meth:`load`.

    An ensemble bundle runs each member (its own features, graph and calibration) and
    averages their probabilities with the bundle's weights.

    ``uncertain_below``: answers with a lower confidence are flagged ``uncertain``; None
    (the default) takes the bundle's threshold (``model.json`` ``uncertain.threshold``, chosen
    on validation speakers), 0 never flags. ``speech_rule``: how much speech an input needs
    (``SpeechRule(min_speech=0)`` skips the check, saving ~9 ms of CPU per 3 s clip, for a
    caller that has already found the speech). ``share``: a Recognizer over the same graph
    (``ser.bundle.with_meta``: a server's personal voice) whose onnxruntime session this one
    uses instead of loading the graph again.
    """

    def __init__(self, bundle: Bundle, threads: int = 1, *,
                 uncertain_below: float | None = None,
                 speech_rule: SpeechRule | None = None,
                 share: Recognizer | None = None):
        from threadpoolctl import threadpool_limits

        # Feature extraction does small matrix products; OpenBLAS spreading each over its own
        # threads made them 10-100x slower on a busy 2-core machine (32 ms instead of 0.1 ms
        # for a 3 s log-mel). Parallelism comes from predict_many's threads instead.
        threadpool_limits(limits=threads, user_api="blas")
        self.bundle = bundle
        self.threads = threads
        self.labels: list[str] = bundle.labels
        self.sample_rate: int = int(bundle.meta["sample_rate"])
        members = bundle.members()
        sessions: list[Any] = [None] * len(members)
        if share is not None:  # the same graph (ser.bundle.with_meta): load it once
            theirs = share.bundle.members()
            if len(theirs) != len(members) or any(
                    b.onnx_path != s.onnx_path or b.graph is not s.graph
                    for (b, _), (s, _) in zip(members, theirs, strict=True)):
                raise ValueError("share: the two bundles do not hold the same graphs")
            sessions = [s.session for s, _ in share._scorers]
        self._scorers = [(_Scorer(b, threads, sess), w)
                         for (b, w), sess in zip(members, sessions, strict=True)]
        if uncertain_below is None:
            uncertain_below = uncertain_threshold_from_json(bundle.meta.get("uncertain"))
        elif not 0.0 <= uncertain_below <= 1.0:
            raise ValueError(f"uncertain_below must be in [0, 1], not {uncertain_below}")
        self.uncertain_below: float = uncertain_below or 0.0
        self.speech_rule = speech_rule or SpeechRule()

    @property
    def feature_sets(self) -> list[str]:
        """Names of the feature sets the model computes (one per ensemble member)."""
        return [s.feature_set.name for s, _ in self._scorers]

    @classmethod
    def load(cls, path: str | Path | None = None, threads: int = 1, *,
             uncertain_below: float | None = None) -> Recognizer:
        """Load a bundle folder, or a model shipped with ser by name (None = ``default``).

        ``threads`` is onnxruntime's intra-op thread count and the BLAS thread limit (set
        process-wide); one is fastest per clip for small models, and batches parallelise
        over files instead (``predict_many``). ``uncertain_below`` overrides the bundle's
        uncertain threshold (see the class).
        """
        return cls(load_bundle(resolve_bundle(path)), threads, uncertain_below=uncertain_below)

    @property
    def name(self) -> str:
        return str(self.bundle.meta.get("name", self.bundle.path.name))

    # -- the steps ---------------------------------------------------------------------

    def _signal(self, source: Source, sr: int | None,
                max_duration: float | None = None) -> tuple[np.ndarray, str | None]:
        """Mono float32 at the model's rate, and the path (for error messages)."""
        if isinstance(source, np.ndarray):
            if sr is None:
                sr = self.sample_rate
            # check_signal scales integer PCM and mixes (n, ch) or (ch, n) arrays to mono.
            y = check_signal(source, sr, max_duration=max_duration)
            return resample(y, sr, self.sample_rate), None
        return load_audio(source, sr=self.sample_rate, max_duration=max_duration), str(source)

    def _probabilities(self, y: np.ndarray, timings: dict[str, float],
                       level: float | None = None) -> np.ndarray:
        """Class probabilities of one signal at the model's rate (windowed as in training);
        ``level``: its ``speech_level`` when measured already (by :meth:`_require_speech`)."""
        return sum(w * scorer(y, timings, level) for scorer, w in self._scorers)

    def _decode(self, p: np.ndarray) -> tuple[str, float, dict[str, float], bool]:
        """(label, confidence, probability per label, uncertain) of a probability vector."""
        best = int(np.argmax(p))
        return (self.labels[best], float(p[best]),
                {lab: float(v) for lab, v in zip(self.labels, p, strict=True)},
                float(p[best]) < self.uncertain_below)

    def _prediction(self, p: np.ndarray, timings: dict[str, float],
                    segments: list[Segment] | None = None) -> Prediction:
        return Prediction(*self._decode(p), timings, segments)

    def _silero(self):
        """The process's Silero VAD (``ser.vad.shared_vad``), loaded on first use."""
        from ser.vad import shared_vad

        return shared_vad()

    def _require_speech(self, y: np.ndarray, path: str | None,
                        timings: dict[str, float]) -> float | None:
        """Raise NoSpeechError when the speech rule says no. The VAD stops as soon as it has
        heard enough speech (a quarter second of a sentence, not all of it); only input that
        fails is scored to its end. Returns the ``speech_level`` of ``y`` it measured to hear
        it at the features' level, for the features to reuse (None: the rule is off)."""
        if self.speech_rule.min_speech <= 0:  # the rule turned off (Python API only)
            return None
        t = time.perf_counter()
        level = speech_level(y, self.sample_rate)
        heard = self.speech_rule.probe(
            self._silero(), normalize_level(y, self.sample_rate, level=level), self.sample_rate)
        timings["vad"] = timings.get("vad", 0.0) + time.perf_counter() - t
        self._check_speech(heard, path)
        return level

    def _check_speech(self, heard: float, path: str | None) -> None:
        """Raise NoSpeechError unless ``heard`` seconds of speech are enough."""
        if not self.speech_rule.enough(heard):
            raise NoSpeechError(path, f"no speech found ({heard:.2f} s of speech heard; "
                                      f"at least {self.speech_rule.min_speech:g} s needed)")

    # -- public API --------------------------------------------------------------------

    def predict(self, source: Source, sr: int | None = None, *,
                segments: bool | None = None, smooth: int = 0) -> Prediction:
        """Predict the emotion of a file or a numpy array.

        An array may be float (in [-1, 1]) or integer PCM (int16 is scaled by 1/32768, …),
        mono ``(n,)`` or multi-channel ``(n, channels)`` / ``(channels, n)`` (mixed to mono);
        ``sr`` is its sample rate (default: the model's, ``self.sample_rate``). A file is read
        at its own rate from its header, so passing ``sr`` with a file is a ValueError.

        ``segments=True`` finds speech with VAD and predicts each segment (the overall label
        is then the duration-weighted mean of the segments); ``None`` (the default, as in
        every face) does so only for audio longer than ``LONG_AUDIO`` seconds; ``False``
        gives one whole-clip prediction (at most ``WHOLE_CLIP_MAX`` seconds). A long file is
        decoded block by block, twice (VAD, then the segments), so memory stays bounded
        however long it is; the answer is the same as for the decoded array. Raises
        :class:`NoSpeechError` when the input holds too little speech (the speech rule, or
        no segment found when segmenting), and
        :class:`ser.audio.AudioError` for unusable audio.
        """
        timings: dict[str, float] = {}
        if not isinstance(source, np.ndarray):
            if sr is not None:
                raise ValueError(f"sr={sr} was given with a file ({source}): a file's sample "
                                 "rate comes from its header; sr is only for numpy arrays")
            total = duration_of(source)
            if segments is not False and (segments or total is None or total > LONG_AUDIO):
                return self._predict_file(Path(source), segments, smooth, timings)
        t = time.perf_counter()
        y, path = self._signal(source, sr, max_duration=None if segments else WHOLE_CLIP_MAX)
        timings["decode"] = time.perf_counter() - t
        if segments is None:
            segments = y.size / self.sample_rate > LONG_AUDIO
        if not segments:
            level = self._require_speech(y, path, timings)
            return self._prediction(self._probabilities(y, timings, level), timings)
        return self._summary(self._segments([y], lambda: [y], path, timings, smooth), timings)

    def _summary(self, segs: list[Segment], timings: dict[str, float]) -> Prediction:
        """The duration-weighted mean of the segments' probabilities, with the segments."""
        weights = np.array([s.end - s.start for s in segs])
        probs = np.array([[s.probabilities[lab] for lab in self.labels] for s in segs])
        return self._prediction(weights @ probs / weights.sum(), timings, segs)

    def _predict_file(self, path: Path, segments: bool | None, smooth: int,
                      timings: dict[str, float]) -> Prediction:
        """Segment a file decoded in blocks, three times: for its level, for the VAD, to cut
        the pieces
        (``segments=None``: a file no longer than ``LONG_AUDIO`` gets one whole-clip
        prediction, as its array would)."""
        sr = self.sample_rate
        keep = int(LONG_AUDIO * sr) + 1
        head: list[np.ndarray] = []
        n = 0

        def blocks() -> Iterator[np.ndarray]:
            t = time.perf_counter()
            for block in checked_blocks(iter_audio(path, sr), sr, path=path):
                timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t
                yield block
                t = time.perf_counter()
            timings["decode"] = timings.get("decode", 0.0) + time.perf_counter() - t

        def first_pass() -> Iterator[np.ndarray]:
            nonlocal n
            for block in blocks():
                if n < keep:  # enough to answer a file that turns out to be short
                    head.append(block[:keep - n])
                n += block.size
                yield block

        try:
            return self._summary(
                self._segments(first_pass(), blocks, str(path), timings, smooth,
                               short=None if segments else lambda: n <= LONG_AUDIO * sr),
                timings)
        except _Short:
            y = np.concatenate(head)
            level = self._require_speech(y, str(path), timings)
            return self._prediction(self._probabilities(y, timings, level), timings)

    def features(self, source: Source, sr: int | None = None) -> np.ndarray:
        """The feature vector (before normalisation) a single-model bundle computes for one
        input; the speech rule applies. Used by ``ser.adapt``."""
        if len(self._scorers) != 1:
            raise BundleError("features() needs a single-model bundle, not an ensemble")
        y, path = self._signal(source, sr)
        level = self._require_speech(y, path, {})
        return self._scorers[0][0].features(y, level)

    def graph_probabilities(self, x: np.ndarray) -> np.ndarray:
        """What a single-model bundle's ONNX graph answers for one normalised feature vector
        ``x`` — before the bundle's output map and calibration. Used by ``ser.adapt``."""
        if len(self._scorers) != 1:
            raise BundleError("graph_probabilities() needs a single-model bundle")
        return self._scorers[0][0].graph_probabilities(x)

    def predict_segments(self, source: Source, sr: int | None = None, *,
                         smooth: int = 0) -> list[Segment]:
        """Find speech with Silero VAD and predict each segment; [] when there is no speech.

        Segments longer than ``LONG_AUDIO`` seconds are split into equal windows.
        ``smooth=N`` averages each segment's probabilities with its neighbours (N segments).
        """
        try:
            pred = self.predict(source, sr, segments=True, smooth=smooth)
        except NoSpeechError:
            return []
        return pred.segments or []

    def _segments(self, first: Iterable[np.ndarray], again: Callable[[], Iterable[np.ndarray]],
                  path: str | None, timings: dict[str, float], smooth: int,
                  short: Callable[[], bool] | None = None) -> list[Segment]:
        """Segments of a signal given as blocks: ``first`` measures its level, ``again()``
        yields it once more for the VAD and once more to cut the pieces, so only a block and
        a piece sit in memory.
        ``short()`` true after the first pass raises ``_Short`` (the caller predicts the
        whole clip instead)."""
        t = time.perf_counter()
        decode = timings.get("decode", 0.0)
        # The VAD misses quiet speech (nothing found at -50 dBFS, half a sentence at -40), so
        # it hears the recording at the level the features use: the first pass measures the
        # level, the VAD runs on the second, the pieces are cut on the third.
        meter = LevelMeter(self.sample_rate)
        for block in first:
            meter.feed(block)
        if short is not None and short():
            raise _Short
        gain = np.float32(meter.gain())
        vad = self._silero().stream(self.sample_rate)  # resamples to the VAD's rate itself
        for block in again():
            vad.feed(block * gain)
        heard = self.speech_rule.speech_seconds(vad.finish())
        spans = vad.segments()
        rates = self.speech_rule.hearings(self.sample_rate)
        if not self.speech_rule.enough(heard) and len(rates) > 1:
            # the rule's second hearing, an octave lower (shouted speech; ser.vad.SpeechRule):
            # one more pass, and the segments are what that hearing finds
            low = self._silero().stream(rates[1])
            for block in again():
                low.feed(block * gain)
            scale = rates[1] / self.sample_rate  # input seconds per second the VAD heard
            heard = max(heard,
                        self.speech_rule.speech_seconds(low.finish(), FRAME_SECONDS * scale))
            config = VADConfig()
            stretched = replace(config, min_speech=config.min_speech / scale,
                                min_silence=config.min_silence / scale, pad=config.pad / scale)
            spans = [(round(a * scale, 3), round(b * scale, 3))
                     for a, b in low.segments(stretched)]
        timings["vad"] = time.perf_counter() - t - (timings.get("decode", 0.0) - decode)
        self._check_speech(heard, path)  # the speech rule, on the whole input
        if not spans:
            raise NoSpeechError(path, "no speech found")
        pieces = [piece for start, end in spans for piece in split_span(start, end)]
        sr = self.sample_rate
        cuts = [(int(round(s * sr)), int(round(e * sr))) for s, e in pieces]
        probs = np.array([self._probabilities(y, timings) for y in _cut(again(), cuts)])
        probs = _smooth(probs, smooth)
        return [Segment(round(s, 3), round(e, 3), *self._decode(p))
                for (s, e), p in zip(pieces, probs, strict=True)]

    def predict_many(self, sources: Iterable[Source], jobs: int = 1, *,
                     segments: bool | None = False,
                     smooth: int = 0) -> Iterator[Prediction | Exception]:
        """Predict many inputs with ``jobs`` threads, yielding results in input order.

        A failed input yields its exception instead of a Prediction, so one bad file never
        stops a batch. Decoding, features and onnxruntime release the GIL for most of
        their work, so threads share one loaded model.
        """
        def one(source: Source) -> Prediction | Exception:
            try:
                return self.predict(source, segments=segments, smooth=smooth)
            except Exception as exc:  # reported per input by the caller
                return exc

        if jobs <= 1:
            yield from map(one, sources)
            return
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            yield from pool.map(one, sources)
