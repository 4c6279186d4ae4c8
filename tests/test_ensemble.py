"""Ensembles of runs: fold-wise probability averaging, the ensemble bundle, its checks."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from test_training import LABELS, make_tree  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ser.bundle import BundleError, load_bundle  # noqa: E402
from ser.cli import app  # noqa: E402
from ser.ensemble import EnsembleError, combine_runs  # noqa: E402
from ser.inference import Recognizer  # noqa: E402
from ser.training import TrainOptions, train  # noqa: E402

CNN_HYPER = {"patience": 100, "batch_size": 8, "channels": 16, "hidden": 64}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ens")
    data = make_tree(root / "toy", speakers=6, takes=3)
    common = dict(protocol="kfold-speaker", labels=LABELS, seed=3, folds=3)
    out = {}
    for name, kw in {"logreg": dict(model="logreg", hyper={"k_best": 50}),
                     "cnn": dict(model="cnn", epochs=3, hyper=CNN_HYPER)}.items():
        out[name] = root / name
        train([data], TrainOptions(**common, **kw), out[name], cache_dir=root / "cache", jobs=1)
    out["data"] = data
    out["root"] = root
    return out


def _probs(run) -> pd.DataFrame:
    frame = pd.read_csv(run / "predictions.csv").set_index("path").sort_index()
    return frame[[f"p_{lab}" for lab in LABELS]]


def test_combined_folds_are_the_weighted_mean_of_the_runs(runs, tmp_path):
    result = combine_runs([runs["logreg"], runs["cnn"]], tmp_path / "ens", [3, 1])
    got = _probs(tmp_path / "ens")
    want = 0.75 * _probs(runs["logreg"]) + 0.25 * _probs(runs["cnn"])
    assert len(got) == 3 * 6 * 3  # every utterance tested once over the folds
    np.testing.assert_allclose(got.to_numpy(), want.loc[got.index].to_numpy(), atol=2e-5)
    assert result["folds"]["folds"] == 3
    frame = pd.read_csv(tmp_path / "ens" / "predictions.csv")
    assert (frame["predicted"] == [LABELS[i] for i in got.loc[frame["path"]].to_numpy()
                                   .argmax(1)]).all()
    for name in ("report.md", "metrics.json", "confusion_matrix.png"):
        assert (tmp_path / "ens" / name).exists()


def test_ensemble_bundle_predicts_the_weighted_mean_of_its_members(runs, tmp_path):
    combine_runs([runs["logreg"], runs["cnn"]], tmp_path / "ens", [3, 1])
    bundle = load_bundle(tmp_path / "ens" / "bundle")
    assert bundle.is_ensemble and not (bundle.path / "model.onnx").exists()
    assert [w for _, w in bundle.members()] == [0.75, 0.25]
    clip = next(runs["data"].rglob("*.wav"))
    p = Recognizer.load(bundle.path).predict(clip).probabilities
    p1 = Recognizer.load(runs["logreg"] / "bundle").predict(clip).probabilities
    p2 = Recognizer.load(runs["cnn"] / "bundle").predict(clip).probabilities
    for lab in LABELS:
        assert p[lab] == pytest.approx(0.75 * p1[lab] + 0.25 * p2[lab], abs=1e-6)
    assert Recognizer.load(bundle.path).feature_sets == ["functionals", "logmel"]


def test_runs_on_other_folds_or_without_probabilities_are_refused(runs, tmp_path):
    other = tmp_path / "other"
    train([runs["data"]], TrainOptions(model="logreg", protocol="kfold-speaker", labels=LABELS,
                                       seed=4, folds=3, hyper={"k_best": 50}),
          other, cache_dir=runs["root"] / "cache", jobs=1)
    with pytest.raises(EnsembleError, match="seed"):
        combine_runs([runs["logreg"], other], tmp_path / "x")
    old = tmp_path / "old"
    shutil.copytree(runs["cnn"], old)
    result = old / "fold-1" / "result.json"
    record = json.loads(result.read_text())
    record["test"] = {k: v for k, v in record["test"].items() if not k.startswith("p_")}
    result.write_text(json.dumps(record))
    with pytest.raises(EnsembleError, match="older ser"):
        combine_runs([runs["logreg"], old], tmp_path / "y")
    with pytest.raises(EnsembleError, match="at least two"):
        combine_runs([runs["logreg"]], tmp_path / "z")


def test_an_ensemble_whose_member_disagrees_on_labels_does_not_load(runs, tmp_path):
    combine_runs([runs["logreg"], runs["cnn"]], tmp_path / "ens")
    member = next((tmp_path / "ens" / "bundle" / "members").iterdir()) / "model.json"
    meta = json.loads(member.read_text())
    meta["labels"] = list(reversed(meta["labels"]))
    member.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="labels"):
        load_bundle(tmp_path / "ens" / "bundle")


def test_cli_ensemble_reports_and_rejects_bad_weights(runs, tmp_path):
    cli = CliRunner()
    res = cli.invoke(app, ["ensemble", str(runs["logreg"]), str(runs["cnn"]), "--out",
                           str(tmp_path / "e"), "--weights", "2,1"])
    assert res.exit_code == 0, res.output
    assert "UAR" in res.output and "report:" in res.output
    members = json.loads((tmp_path / "e" / "bundle" / "model.json").read_text())["model"]
    assert [m["weight"] for m in members["members"]] == [0.666667, 0.333333]
    res = cli.invoke(app, ["ensemble", str(runs["logreg"]), str(runs["cnn"]), "--out",
                           str(tmp_path / "f"), "--weights", "2,x"])
    assert res.exit_code != 0
