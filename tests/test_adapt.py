"""ser.adapt / `ser adapt`: a personal bundle from a few labelled clips of one person."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from _tiny_bundle import TIMBRES, tiny_bundle, tiny_svm_bundle
from fixtures import babble
from typer.testing import CliRunner

from ser.adapt import (
    AdaptError,
    NotLinear,
    adapt_bundle,
    check_adaptable,
    fit_prior,
    linear_onnx,
    map_outputs,
    read_linear,
)
from ser.audio import load_audio
from ser.bundle import Bundle, BundleError, load_bundle
from ser.inference import Recognizer
from ser.labels import CANONICAL

pytest.importorskip("onnx")


def voice(label: str, seed: int, shift: float = 1.3) -> np.ndarray:
    """One person's clip of ``label``: the class's timbre, but with this person's pitch
    (``shift`` times the training voices') — the base model has never heard it."""
    f0, tilt = TIMBRES[label]
    return babble(3.0, min(f0 * shift, 255.0), tilt, seed=seed)


@pytest.fixture(scope="module")
def person(tmp_path_factory):
    root = tmp_path_factory.mktemp("person")
    clips, held_out = [], []
    for i, label in enumerate(CANONICAL):
        (root / "clips" / label).mkdir(parents=True)
        for k in range(2):
            path = root / "clips" / label / f"{k}.wav"
            sf.write(path, voice(label, 500 + 10 * i + k), 16000)
            clips.append((path, label))
        held_out += [(voice(label, 900 + 10 * i + k), label) for k in range(3)]
    return root, clips, held_out


def test_the_graph_round_trips_through_its_weights():
    bundle = load_bundle(tiny_bundle())
    g = read_linear(bundle)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((5, g.W.shape[1])).astype(np.float32)
    base = ort.InferenceSession(str(bundle.onnx_path)).run(["probabilities"], {"features": x})[0]
    mine = ort.InferenceSession(linear_onnx(g.W, g.b)).run(["probabilities"], {"features": x})[0]
    assert mine == pytest.approx(base, abs=1e-5)
    again = read_linear(type(bundle)(bundle.path, bundle.meta))  # skl2onnx graph again
    assert again.W == pytest.approx(g.W)


def test_prior_strength_interpolates_between_base_and_clips():
    rng = np.random.default_rng(1)
    y = np.arange(12) % 3
    X = 2.0 * np.eye(3, 4)[y] + 0.3 * rng.standard_normal((12, 4))  # separable classes
    W0, b0 = np.zeros((3, 4)), np.zeros(3)
    W_strong, _ = fit_prior(X, y, W0, b0, alpha=1e6)
    W_weak, b_weak = fit_prior(X, y, W0, b0, alpha=1e-3)
    assert np.abs(W_strong).max() < 1e-3
    assert ((X @ W_weak.T + b_weak).argmax(1) == y).all()


def test_adapted_bundle_is_a_bundle_and_knows_the_voice_better(person, tmp_path):
    root, clips, held_out = person
    # The toy model is small and its features few: a weak pull (1) lets 12 clips move it.
    out = adapt_bundle(tiny_bundle(), clips, tmp_path / "me", alpha=1.0)
    assert out.meta["adapted"]["clips"] == dict.fromkeys(CANONICAL, 2)
    personal, base = Recognizer.load(tmp_path / "me"), Recognizer.load(tiny_bundle())

    def accuracy(rec):
        return np.mean([rec.predict(y, sr=16000).label == lab for y, lab in held_out])

    mine, theirs = accuracy(personal), accuracy(base)  # 18 held-out clips of the person
    assert mine >= theirs + 0.25, (mine, theirs)        # measured: 0.78 against 0.44
    assert read_linear(load_bundle(tmp_path / "me")).W.shape == (6, 178)  # re-adaptable


def test_a_linear_bundle_still_gets_shift_and_prior(person, tmp_path):
    """The linear path as it was: the clips' mean, and the layer refitted with pull 100 —
    the very graph bytes, recomputed here from the clips."""
    _, clips, _ = person
    base = Recognizer.load(tiny_bundle())
    X = np.stack([base.features(path) for path, _ in clips]).astype(np.float64)
    y = np.array([CANONICAL.index(lab) for _, lab in clips])
    _, std = base.bundle.normalization()
    std = np.where(std > 0, std, 1.0).astype(np.float64)
    g = read_linear(base.bundle)
    expected = linear_onnx(*fit_prior((X - X.mean(0)) / std, y, g.W, g.b, 100.0))
    out = adapt_bundle(tiny_bundle(), clips, tmp_path / "me")
    assert out.onnx_path.read_bytes() == expected
    assert out.meta["normalization"]["mean"] == X.mean(0).astype(np.float32).tolist()
    assert out.meta["adapted"]["method"] == "shift+prior"
    assert out.meta["adapted"]["prior_strength"] == 100.0 and "output_map" not in out.meta


def test_an_svm_keeps_its_graph_and_learns_an_output_map(person, tmp_path):
    root, clips, held_out = person
    out = adapt_bundle(tiny_svm_bundle(), clips, tmp_path / "me")
    base_graph = (tiny_svm_bundle() / "model.onnx").read_bytes()
    with pytest.raises(NotLinear):
        read_linear(load_bundle(tiny_svm_bundle()))
    assert out.onnx_path.read_bytes() == base_graph  # the classifier is untouched
    rec, base = Recognizer.load(tmp_path / "me"), Recognizer.load(tiny_svm_bundle())
    X = np.stack([base.features(path) for path, _ in clips])
    assert out.meta["normalization"]["mean"] == pytest.approx(X.mean(0).tolist(), rel=1e-5)
    assert out.meta["normalization"]["std"] == base.bundle.meta["normalization"]["std"]
    assert out.meta["adapted"]["method"] == "shift+output-prior"
    assert out.meta["adapted"]["prior_strength"] == 1.0  # DEFAULT_OUTPUT_PRIOR
    W, b = rec.bundle.output_map()
    assert W.shape == (6, 6) and b.shape == (6,) and not np.allclose(W, np.eye(6))

    def accuracy(r):
        return np.mean([r.predict(y, sr=16000).label == lab for y, lab in held_out])

    mine, theirs = accuracy(rec), accuracy(base)
    assert mine >= theirs + 0.25, (mine, theirs)  # measured: 0.67 against 0.33
    # Adapting the adapted bundle pulls toward its map; an endless pull keeps it.
    again = adapt_bundle(tmp_path / "me", clips, tmp_path / "again", alpha=1e9)
    assert again.output_map()[0] == pytest.approx(W, abs=1e-6)
    assert again.onnx_path.read_bytes() == base_graph


def test_an_output_map_acts_on_the_graphs_answers(tmp_path):
    p = np.array([0.7, 0.2, 0.1])
    assert map_outputs(p, np.eye(3), np.zeros(3)) == pytest.approx(p)
    assert map_outputs(p, np.eye(3), np.array([0.0, 5.0, 0.0])).argmax() == 1
    assert map_outputs(p, 2 * np.eye(3), np.zeros(3))[0] > 0.7  # sharper
    import json
    import shutil

    shutil.copytree(tiny_svm_bundle(), tmp_path / "b")
    meta = json.loads((tmp_path / "b" / "model.json").read_text())
    for bad, words in [({"W": np.eye(5).tolist(), "b": [0] * 6}, "map 6 labels to 6"),
                       ({"W": np.eye(6).tolist()}, "null or {W, b}"),
                       ({"W": [[float("nan")] * 6] * 6, "b": [0] * 6}, "NaN"),
                       ({"W": np.eye(6).tolist(), "b": [1e300] * 6}, "within")]:
        (tmp_path / "b" / "model.json").write_text(json.dumps({**meta, "output_map": bad}))
        with pytest.raises(BundleError, match=words):
            load_bundle(tmp_path / "b")


def test_what_cannot_adapt_says_why(tmp_path):
    meta = load_bundle(tiny_bundle()).meta
    for change, words in [({"normalization": None}, "no feature normalisation"),
                          ({"normalization": {"mean": [[0.0]] * 64, "std": [[1.0]] * 64}},
                           "not one vector per clip"),
                          ({"protocol": {"name": "seed", "normalization": "minmax on all rows "
                                         "(leaky)"}}, "min-max")]:
        with pytest.raises(AdaptError, match=words):
            check_adaptable(Bundle(tmp_path, {**meta, **change}))


def test_every_emotion_is_needed_and_ensembles_refuse(person, tmp_path):
    _, clips, _ = person
    with pytest.raises(AdaptError, match="sad"):
        adapt_bundle(tiny_bundle(), [c for c in clips if c[1] != "sad"], tmp_path / "x")
    with pytest.raises(AdaptError, match="not the model's"):
        adapt_bundle(tiny_bundle(), [*clips, (clips[0][0], "calm")], tmp_path / "x")


@pytest.mark.parametrize("make, method, strength", [
    (tiny_bundle, "shift+prior", ["--strength", "1"]), (tiny_svm_bundle, "shift+output-prior", [])],
    ids=["linear", "svm"])
def test_cli(person, tmp_path, make, method, strength):
    from ser.cli import app

    root, _, _ = person
    res = CliRunner().invoke(app, ["adapt", str(root / "clips"), "--model", str(make()),
                                   "--out", str(tmp_path / "me"), *strength])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "12 clips" in said and method in said and (tmp_path / "me" / "model.onnx").exists()
    clip = root / "clips" / "sad" / "0.wav"
    res = CliRunner().invoke(app, ["predict", str(clip), "--model", str(tmp_path / "me"),
                                   "--json"])
    label = Recognizer.load(tmp_path / "me").predict(clip).label
    assert res.exit_code == 0 and f'"label": "{label}"' in res.output
    assert make is not tiny_bundle or label == "sad"


@pytest.mark.parametrize("make", [tiny_bundle, tiny_svm_bundle], ids=["linear", "svm"])
def test_in_memory_voice_answers_as_the_written_bundle(person, tmp_path, make):
    """`adapt` (the server's voices, nothing on disk) and `adapt_bundle` are one model."""
    from ser.adapt import adapt

    _, clips, held_out = person
    base = Recognizer.load(make(), uncertain_below=0.3)
    # Arrays at the model's rate, as the server decodes its uploads.
    arrays = [(load_audio(path, sr=base.sample_rate), lab) for path, lab in clips]
    mine = adapt(base, arrays, alpha=1.0)
    saved = Recognizer.load(adapt_bundle(make(), clips, tmp_path / "me", alpha=1.0).path,
                            uncertain_below=0.3)
    assert mine.uncertain_below == 0.3 and mine.bundle.meta["adapted"]["clips"] == \
        saved.bundle.meta["adapted"]["clips"]
    # An unchanged graph is not loaded again: the voice runs on the base's session.
    shared = mine._scorers[0][0].session is base._scorers[0][0].session
    assert shared == (make is tiny_svm_bundle)
    with pytest.raises(ValueError, match="same graphs"):
        Recognizer(load_bundle(tiny_bundle()), share=Recognizer.load(tiny_svm_bundle()))
    for y, _ in held_out[::3]:
        a, b = mine.predict(y, sr=16000), saved.predict(y, sr=16000)
        assert a.label == b.label
        assert list(a.probabilities.values()) == pytest.approx(list(b.probabilities.values()),
                                                               abs=1e-6)


def test_a_clip_without_speech_is_named(person):
    from ser.adapt import adapt

    _, clips, _ = person
    arrays = [(load_audio(path, sr=22050), lab) for path, lab in clips]
    arrays[3] = (np.zeros(22050, np.float32) + 1e-3 * np.sin(np.arange(22050)), arrays[3][1])
    with pytest.raises(AdaptError, match=r"clip 4 of 12 \(disgust\): no speech found"):
        adapt(Recognizer.load(tiny_bundle()), arrays)
    with pytest.raises(AdaptError, match=r"at least 2 clip\(s\).*angry \(1 of 2\)"):
        adapt(Recognizer.load(tiny_bundle()), arrays[1:], min_per_label=2)
