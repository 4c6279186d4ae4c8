import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from ser.bundle import FORMAT_VERSION, BundleError, load_bundle, save_bundle


def _softmax_model(n_in: int, n_out: int) -> onnx.ModelProto:
    w = helper.make_tensor("W", TensorProto.FLOAT, [n_in, n_out],
                           np.arange(n_in * n_out, dtype=np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["features", "W"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_in])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, n_out])],
        initializer=[w],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _meta():
    return {
        "labels": ["angry", "sad"],
        "sample_rate": 16000,
        "feature_set": {"name": "seed178", "version": 1, "config": {}},
        "normalization": {"mean": np.zeros(3), "std": np.ones(3)},
        "model": {"architecture": "tiny"},
    }


def test_round_trip_and_onnx_runs(tmp_path):
    import onnxruntime as ort

    bundle = save_bundle(tmp_path / "b", _meta(), _softmax_model(3, 2))
    loaded = load_bundle(tmp_path / "b")
    assert loaded.labels == ["angry", "sad"]
    assert loaded.meta["format_version"] == FORMAT_VERSION
    mean, std = loaded.normalization()
    assert mean.dtype == np.float32 and mean.shape == (3,)
    sess = ort.InferenceSession(str(bundle.onnx_path), providers=["CPUExecutionProvider"])
    (p,) = sess.run(None, {"features": np.ones((1, 3), np.float32)})
    assert p.shape == (1, 2) and np.isclose(p.sum(), 1.0)
    # nothing pickled: every file is JSON or ONNX protobuf
    assert sorted(f.name for f in (tmp_path / "b").iterdir()) == ["model.json", "model.onnx"]


def test_newer_format_is_refused_clearly(tmp_path):
    save_bundle(tmp_path / "b", _meta(), _softmax_model(3, 2))
    meta_file = tmp_path / "b" / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="newer than this ser understands"):
        load_bundle(tmp_path / "b")


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a ser bundle"):
        load_bundle(tmp_path)
    save_bundle(tmp_path / "b", _meta(), _softmax_model(3, 2))
    (tmp_path / "b" / "model.onnx").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(tmp_path / "b")
