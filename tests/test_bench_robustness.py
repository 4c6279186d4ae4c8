"""bench/robustness.py --reuse: only the folds of a `ser train` run of the same recipe."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _scripts import load_script


@pytest.fixture(scope="module")
def robustness():
    return load_script("bench/robustness.py")


def recipe(tmp_path: Path, **kw) -> dict:
    from ser.training import TrainOptions

    opts = TrainOptions(model="whisper", protocol="kfold-speaker", folds=2,
                        augment=("degrade", "degrade"), noise_dir=str(tmp_path / "noise"),
                        babble_dir=str(tmp_path / "babble"), **kw)
    return {**opts.resolved(), "data": [str(tmp_path / "ravdess")]}


def run_folder(tmp_path: Path, record: dict, folds: int = 2) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(record))
    for k in range(1, folds + 1):
        (run / f"fold-{k}").mkdir()
        (run / f"fold-{k}" / "model.onnx").write_bytes(b"graph %d" % k)
        (run / f"fold-{k}" / "result.json").write_text(json.dumps({"name": f"fold-{k}"}))
    return run


def test_the_folds_of_the_same_recipe_are_taken(robustness, tmp_path):
    run = run_folder(tmp_path, recipe(tmp_path))
    out = tmp_path / "out"
    robustness.reuse_folds(run, recipe(tmp_path), "test", out, 2)
    for k in (1, 2):
        assert (out / f"fold-{k}" / "model.onnx").read_bytes() == b"graph %d" % k
        assert json.loads((out / f"fold-{k}" / "result.json").read_text())["name"] == f"fold-{k}"


@pytest.mark.parametrize("change, key", [
    ({"babble_dir": None}, "babble_dir"),          # degrade's babble of other voices, or none
    ({"feature_options": {"level_dbfs": None}}, "feature_options"),
    ({"labels": ("angry", "happy", "neutral", "sad")}, "labels"),
    ({"seed": 1}, "seed"),
])
def test_another_recipe_is_refused_naming_what_differs(robustness, tmp_path, change, key):
    run = run_folder(tmp_path, recipe(tmp_path))
    opts = {k: v for k, v in change.items() if k != "babble_dir"}
    other = recipe(tmp_path, **opts)
    if "babble_dir" in change:
        del other["babble_dir"]
    with pytest.raises(SystemExit, match=f"differs in: {key}"):
        robustness.reuse_folds(run, other, "test", tmp_path / "out", 2)


def test_a_missing_fold_a_folder_that_is_no_run_and_the_validation_part_are_refused(
        robustness, tmp_path):
    run = run_folder(tmp_path, recipe(tmp_path), folds=1)
    with pytest.raises(SystemExit, match="fold-2 is not finished"):
        robustness.reuse_folds(run, recipe(tmp_path), "test", tmp_path / "out", 2)
    with pytest.raises(SystemExit, match="no config.json"):
        robustness.reuse_folds(tmp_path, recipe(tmp_path), "test", tmp_path / "out", 2)
    with pytest.raises(SystemExit, match="only --part test"):
        robustness.reuse_folds(run, recipe(tmp_path), "val", tmp_path / "out", 2)
