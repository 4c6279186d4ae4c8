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
    assert 0 <= m["confidence"]["ece_speaker_weighted"] < 1  # three speakers
    # same predictions as the Recognizer gives file by file
    import pandas as pd

    from ser.inference import Recognizer

    rec = Recognizer.load(root / "run" / "bundle")
    preds = pd.read_csv(out / "predictions.csv")
    for row in preds.head(5).itertuples():
        assert rec.predict(row.path).label == row.predicted
    # the trained corpus is flagged: its speakers may overlap the bundle's training data
    assert "note" in record["protocol"]
    # ... and said on the console, naming how many test speakers the model heard
    assert "warning:" in res.output and "in this model's training data" in " ".join(
        res.output.split())
    assert "overstate accuracy" in (out / "report.md").read_text()


def test_evaluate_warns_for_a_shipped_model_on_its_own_corpus():
    from ser.evaluation import heard_speakers_warning

    shipped = {"corpora": {"ravdess": {}, "tess": {}}, "trained_on": "all speakers"}
    assert "trained on all speakers of ravdess" in heard_speakers_warning(
        shipped, ["ravdess:01", "ravdess:02"])[0]
    assert heard_speakers_warning(shipped, ["crema-d:1001"]) == []
    recorded = {"speaker_ids": ["toy:a", "toy:b"], "corpora": {"toy": {}}}
    assert heard_speakers_warning(recorded, ["toy:c"]) == []
    assert "1 of the 2 test speakers was" in heard_speakers_warning(recorded,
                                                                     ["toy:b", "toy:c"])[0]
    assert heard_speakers_warning(recorded, ["toy:a"])[0].startswith("the test speaker was")
    assert heard_speakers_warning(recorded, ["toy:a", "toy:b"])[0].startswith(
        "all 2 test speakers were")


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


def _result_with_splits(protocol):
    m = compute_metrics(["sad", "sad", "angry", "angry"], ["sad", "angry", "angry", "angry"],
                        ["angry", "sad"])
    return {"title": "cnn · speaker", "model": "cnn", "metrics": m, "protocol": protocol,
            "settings": {"hyperparameters": {"lr": 0.002, "epochs": 50},
                         "feature set logmel": {"n_mels": 64}, "augmentation": [], "seed": 0},
            "splits": [{"name": "split", "speakers": {"train": ["toy:a", "toy:b"],
                                                      "val": ["toy:c"], "test": ["toy:d"]},
                        "best_epoch": 7, "epochs_run": 22, "uar": 0.75, "accuracy": 0.75}]}


def test_report_says_settings_speakers_kept_epoch_and_chance():
    from ser.protocols import describe

    text = render_report(_result_with_splits(describe("speaker", seed=0)))
    assert '- hyperparameters: `{"lr": 0.002, "epochs": 50}`' in text
    assert '- feature set logmel: `{"n_mels": 64}`' in text
    assert "| split | toy:d | toy:c | 2 | 7 of 22 | 75.0% | 75.0% |" in text
    assert "Chance level: UAR 50.0% (1/2 labels" in text
    # the confusion matrix in counts and row-normalised (the diagonal is recall)
    assert "| **sad** | 1 | 1 |" in text and "| **sad** | 50% | 50% |" in text
    leaky = render_report(_result_with_splits(describe("seed", seed=0)))
    assert leaky.count("LEAKY") == 1 and "LEAKY: LEAKY" not in leaky


def test_curves_use_whole_epochs_and_mark_the_kept_one():
    import matplotlib.pyplot as plt

    from ser.evaluation import curves_figure

    hist = [{"epoch": e, "train_loss": 1.0 / e, "val_uar": u}
            for e, u in zip(range(1, 4), (0.3, 0.6, 0.5), strict=True)]
    fig = curves_figure({"split": hist}, {"split": 2})
    loss_ax, uar_ax = fig.axes
    for ax in (loss_ax, uar_ax):
        ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert any(list(line.get_xdata()) == [2, 2] for line in ax.lines)  # the kept epoch
    assert any(list(line.get_xdata()) == [2] and list(line.get_ydata()) == [0.6]
               for line in uar_ax.lines)
    plt.close(fig)
