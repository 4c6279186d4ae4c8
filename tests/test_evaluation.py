"""Metrics by hand, reports, and `ser evaluate` / `ser export` on a trained tiny bundle."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from ser.evaluation import compute_metrics, licence_for, render_report, summarize_folds


def test_metrics_by_hand():
    labels = ["angry", "happy", "sad"]
    true = ["angry"] * 4 + ["happy"] * 2 + ["sad"] * 4
    pred = ["angry", "angry", "angry", "sad", "happy", "angry", "sad", "sad", "sad", "sad"]
    m = compute_metrics(true, pred, labels, corpus=["a"] * 6 + ["b"] * 4)
    assert m["accuracy"] == pytest.approx(8 / 10)
    assert m["uar"] == pytest.approx((3 / 4 + 1 / 2 + 4 / 4) / 3)
    assert m["confusion_matrix"] == [[3, 0, 1], [1, 1, 0], [0, 0, 4]]
    assert m["per_class"]["angry"]["precision"] == pytest.approx(3 / 4)
    assert m["per_corpus"]["b"] == {"n": 4, "accuracy": 1.0, "uar": 1.0}
    assert m["per_corpus"]["a"]["uar"] == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_fold_summary_and_report_text():
    s = summarize_folds([{"accuracy": 0.5, "uar": 0.4}, {"accuracy": 0.7, "uar": 0.6}])
    assert s["uar_mean"] == pytest.approx(0.5) and s["uar_std"] == pytest.approx(0.1)
    m = compute_metrics(["sad", "angry"], ["sad", "sad"], ["angry", "sad"])
    text = render_report({"metrics": m, "folds": s, "protocol": {"name": "seed", "leaky": True,
                                                                 "warning": "leaks"}})
    assert "LEAKY" in text and "50.0% ± 10.0%" in text
    assert "| **angry** | 0 | 1 |" in text


def test_licence_says_non_commercial_for_the_acted_corpora():
    assert licence_for(["ravdess", "tess"]).startswith("NON-COMMERCIAL")
    assert "CC BY-NC-SA 4.0" in licence_for(["ravdess"])
    assert not licence_for(["mydata"]).startswith("NON-COMMERCIAL")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("torch")
    from test_training import LABELS, make_tree

    from ser.training import TrainOptions, train

    root = tmp_path_factory.mktemp("eval")
    corpus = make_tree(root / "toy", speakers=4, takes=3)
    opts = TrainOptions(model="cnn", protocol="speaker", labels=LABELS, epochs=4, seed=0,
                        hyper={"batch_size": 8, "channels": 16, "hidden": 64})
    train([corpus], opts, root / "run", cache_dir=root / "cache", jobs=1)
    return root, corpus


def test_ser_evaluate_scores_a_bundle_through_the_recognizer(trained):
    from ser.cli import app

    root, corpus = trained
    out = root / "evaluation"
    res = CliRunner().invoke(app, ["evaluate", str(root / "run"), str(corpus), "--out",
                                   str(out), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    record = json.loads((out / "metrics.json").read_text())
    m = record["metrics"]
    assert m["n"] == 3 * 4 * 3
    assert (out / "report.md").exists() and (out / "confusion_matrix.png").exists()
    # same predictions as the Recognizer gives file by file
    import pandas as pd

    from ser.inference import Recognizer

    rec = Recognizer.load(root / "run" / "bundle")
    preds = pd.read_csv(out / "predictions.csv")
    for row in preds.head(5).itertuples():
        assert rec.predict(row.path).label == row.predicted
    # the trained corpus is flagged: its speakers may overlap the bundle's training data
    assert "note" in record["protocol"]


def test_ser_export_writes_the_onnx_graph(trained, tmp_path):
    import onnxruntime as ort

    from ser.cli import app

    root, _ = trained
    res = CliRunner().invoke(app, ["export", str(root / "run"), "--onnx",
                                   str(tmp_path / "m.onnx")])
    assert res.exit_code == 0, res.output
    sess = ort.InferenceSession(str(tmp_path / "m.onnx"))
    p = sess.run(None, {"features": np.zeros((1, 64, 50), np.float32)})[0]
    assert p.shape == (1, 3) and p.sum() == pytest.approx(1, abs=1e-5)
