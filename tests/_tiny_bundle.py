"""A tiny but real model bundle for the inference tests, and espeak-ng speech.

Six synthetic "emotions", each numpy speech with its own pitch and brightness, so a
linear model on seed178 features separates them: logistic regression fitted with
scikit-learn, exported with skl2onnx (output ``probabilities``) and saved with
``ser.bundle.save_bundle`` — the path every bundle takes; and the same data with an RBF SVM
(``tiny_svm_bundle``, the ``whisper`` model's classifier). Built once per test process.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ser.labels import CANONICAL

#: Pitch (Hz) and glottal low-pass pole (brightness) of each class's voice.
TIMBRES = {label: (100 + 30 * i, (0.5, 0.8, 0.95)[i % 3]) for i, label in enumerate(CANONICAL)}


def timbre_clip(label: str, seconds: float = 3.5, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A clip of class ``label``: numpy speech (``fixtures.babble``) in its own voice.

    Made at 16 kHz (as the corpora are) and resampled, so it has the same content at any
    ``sr``: nothing above 8 kHz for the features to trip on. Silero VAD hears it as speech.
    """
    from fixtures import babble

    from ser.audio import resample

    rng = np.random.default_rng(seed)
    f0, tilt = TIMBRES[label]
    y = babble(seconds, f0 * (1 + 0.015 * rng.standard_normal()), tilt, seed=seed)
    return resample(y, 16000, sr)


@functools.cache
def _timbre_rows() -> tuple[np.ndarray, list[int]]:
    """seed178 features of six clips of each class's voice, and their label indices."""
    from ser.features import get_feature_set

    fs = get_feature_set("seed178")
    X, y = [], []
    for i, label in enumerate(CANONICAL):
        for j in range(6):
            clip = timbre_clip(label, sr=fs.sample_rate, seed=100 * i + j)
            X.append(fs.features(fs.window(clip)))
            y.append(i)
    return np.asarray(X, dtype=np.float32), y


def _save(name: str, architecture: str, X: np.ndarray, y: list[int], mean: np.ndarray,
          std: np.ndarray, onnx_model) -> Path:
    from ser.bundle import save_bundle
    from ser.features import get_feature_set

    fs = get_feature_set("seed178")
    folder = Path(tempfile.mkdtemp(prefix="ser-tiny-bundle-")) / name
    save_bundle(folder, {
        "name": f"{name}-test-model",
        "labels": list(CANONICAL),
        "sample_rate": fs.sample_rate,
        "feature_set": fs.to_json(),
        "normalization": {"mean": mean, "std": std},
        "model": {"architecture": architecture, "hyperparameters": {}},
        "protocol": {"name": "none"},
        "metrics": {},
        "training_data": {"source": "synthetic timbres", "clips": len(y)},
        "licence": "MIT",
    }, onnx_model)
    return folder


@functools.cache
def tiny_bundle() -> Path:
    """Path of the bundle folder (in a temporary directory kept for the process): logistic
    regression, a linear graph."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    X, y = _timbre_rows()
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    clf = LogisticRegression(C=0.05, max_iter=5000).fit((X - mean) / std, y)
    onnx_model = to_onnx(clf, initial_types=[("features", FloatTensorType([None, X.shape[1]]))],
                         options={id(clf): {"zipmap": False}}, target_opset=17)
    outputs = [o.name for o in onnx_model.graph.output]
    assert "probabilities" in outputs, outputs
    return _save("tiny", "logistic-regression", X, y, mean, std, onnx_model)


@functools.cache
def tiny_svm_bundle() -> Path:
    """The same data with the ``whisper`` model's classifier: an RBF SVM with Platt
    probabilities (``ser.models.classical``), a graph that is not linear."""
    from ser.models.classical import fit_svm, svm_to_onnx

    X, y = _timbre_rows()
    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-6
    clf = fit_svm((X - mean) / std, np.asarray(y), class_weight="balanced")
    return _save("tiny-svm", "svm", X, y, mean, std, svm_to_onnx(clf, X.shape[1]))


needs_espeak = shutil.which("espeak-ng") is not None


def espeak(text: str, sr: int = 16000) -> np.ndarray:
    """``text`` spoken by espeak-ng, trimmed to where the voice starts and stops."""
    from ser.audio import resample

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
        y, native = sf.read(str(wav), dtype="float32")
    y = resample(y, native, sr)
    loud = np.flatnonzero(np.abs(y) > 0.02 * np.abs(y).max())
    return y[loud[0]:loud[-1] + 1]


def recording(sentences: list[str], gaps: list[float], sr: int = 16000,
              noise: float = 1e-3) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Speech separated by silence: ``gaps`` has one more entry than ``sentences``
    (before, between, after). Returns the signal and the true (start, end) of each."""
    assert len(gaps) == len(sentences) + 1
    parts, truth, t = [np.zeros(int(gaps[0] * sr), np.float32)], [], gaps[0]
    for text, gap in zip(sentences, gaps[1:], strict=True):
        s = espeak(text, sr)
        truth.append((t, t + s.size / sr))
        t += s.size / sr + int(gap * sr) / sr
        parts += [s, np.zeros(int(gap * sr), np.float32)]
    y = np.concatenate(parts)
    y += noise * np.random.default_rng(0).standard_normal(y.size).astype(np.float32)
    return y, truth
