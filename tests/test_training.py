"""End-to-end training runs on a tiny synthetic corpus: reports, bundle, resume after a kill."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("torch")

from ser.bundle import load_bundle  # noqa: E402
from ser.training import TrainOptions, train  # noqa: E402

LABELS = ("angry", "happy", "sad")
SR = 16000


def tone(label: str, speaker: int, take: int) -> np.ndarray:
    """One second of numpy speech whose voice says the label: a distinct pitch, brightness
    and loudness (speech, so that the Recognizer's speech rule lets it through)."""
    from fixtures import babble

    f0 = {"angry": 220.0, "happy": 165.0, "sad": 110.0}[label] * (1 + 0.03 * speaker)
    tilt = {"angry": 0.5, "happy": 0.8, "sad": 0.95}[label]
    level = {"angry": 0.8, "happy": 0.5, "sad": 0.2}[label]
    seed = 1000 * speaker + 10 * take + LABELS.index(label)
    return babble(1.0, f0, tilt, seed=seed, level=level)


def make_tree(root: Path, speakers: int = 5, takes: int = 4) -> Path:
    """ROOT/<label>/<speaker>/take.wav — the label-per-folder layout with speakers."""
    for label in LABELS:
        for s in range(speakers):
            folder = root / label / f"spk{s}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(takes):
                sf.write(folder / f"{k}.wav", tone(label, s, k), SR)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_tree(tmp_path_factory.mktemp("data") / "toy")


def options(**kw) -> TrainOptions:
    base = dict(model="cnn", protocol="speaker", labels=LABELS, epochs=6, seed=1,
                hyper={"patience": 100, "batch_size": 8, "channels": 16, "hidden": 64})
    base.update(kw)
    return TrainOptions(**base)


def test_cnn_speaker_run_writes_reports_and_a_bundle(corpus, tmp_path):
    out = tmp_path / "run"
    result = train([corpus], options(), out, cache_dir=tmp_path / "cache", jobs=1)
    for name in ("metrics.json", "report.md", "confusion_matrix.png", "curves.png",
                 "classification_report.txt", "predictions.csv", "config.json"):
        assert (out / name).exists(), name
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    assert m["labels"] == list(LABELS) and m["n"] == result["metrics"]["n"] > 0
    assert np.asarray(m["confusion_matrix"]).sum() == m["n"]
    assert m["uar"] >= 0.6, m  # distinct timbres: the tiny CNN must learn them
    bundle = load_bundle(out / "bundle")
    assert bundle.labels == list(LABELS)
    assert bundle.meta["feature_set"]["name"] == "logmel"
    assert np.asarray(bundle.meta["normalization"]["mean"]).shape == (64, 1)
    assert bundle.meta["protocol"]["name"] == "speaker"
    assert bundle.weights_path.exists()
    report = (out / "report.md").read_text()
    assert "UAR" in report and "LEAKY" not in report
    assert "Chance level" in report and "- hyperparameters:" in report
    res = json.loads((out / "split" / "result.json").read_text())
    assert f"{res['best_epoch']} of {len(res['history'])}" in report  # the kept epoch
    assert ", ".join(res["speakers"]["test"]) in report  # who was tested
    assert "Row-normalised" in report and "![training curves](curves.png)" in report
    assert load_bundle(out / "bundle").meta["training_data"]["speaker_ids"] == sorted(
        res["speakers"]["train"])
    # no test speaker was seen in training
    res = json.loads((out / "split" / "result.json").read_text())
    assert not set(res["speakers"]["test"]) & set(res["speakers"]["train"])


def test_kfold_svm_on_seed178_reports_folds_and_scales_on_training_rows(corpus, tmp_path):
    out = tmp_path / "svm"
    result = train([corpus], options(model="svm", protocol="kfold-speaker", folds=5,
                                     feature_set="seed178", hyper={}),
                   out, cache_dir=tmp_path / "cache", jobs=1)
    folds = result["folds"]
    assert folds["folds"] == 5 and 0 <= folds["uar_std"] <= folds["uar_mean"] <= 1
    assert result["metrics"]["n"] == len(LABELS) * 5 * 4  # each utterance tested once
    # normalisation of fold 1 = statistics of fold 1's training rows, not of all rows
    from ser.features import extract, get_feature_set

    res = json.loads((out / "fold-1" / "result.json").read_text())
    table = extract([str(p) for p in sorted(corpus.rglob("*.wav"))], get_feature_set("seed178"),
                    cache_dir=tmp_path / "cache", n_jobs=1, progress=False)
    paths = [str(p) for p in table.manifest["path"]]
    # (classical models have no early stopping: validation speakers are training data too)
    train_spk = set(res["speakers"]["train"]) | set(res["speakers"]["val"])
    assert not train_spk & set(res["speakers"]["test"])
    rows = [i for i, p in enumerate(paths) if f"toy:{Path(p).parent.name}" in train_spk]
    X = np.asarray(table.X)
    np.testing.assert_allclose(res["normalization"]["mean"], X[rows].mean(0), rtol=1e-4,
                               atol=1e-5)
    assert not np.allclose(res["normalization"]["mean"], X.mean(0), rtol=1e-4, atol=1e-5)
    report = (out / "report.md").read_text()
    assert "speaker folds" in report
    # no epochs: no curves.png, and the report says so rather than promising one
    assert not (out / "curves.png").exists()
    assert "None: svm is fitted in one step" in report and "— (no epochs)" in report


def test_calibration_is_fitted_on_the_clips_and_their_augmented_copies(corpus, tmp_path):
    """The temperature: out-of-fold answers for the held-out speakers' clips and their
    augmented copies (speaker-weighted); the uncertain threshold: the clips alone."""
    from ser.calibration import fit_temperature, speaker_weights, threshold_for_precision

    out = tmp_path / "svm-aug"
    train([corpus], options(model="svm", protocol="kfold-speaker", folds=2,
                            feature_set="seed178", augment=("noise",), hyper={}),
          out, cache_dir=tmp_path / "cache", jobs=1)
    res = json.loads((out / "fold-1" / "result.json").read_text())
    val = res["val"]
    clean = np.array(val["clean"])
    assert 0 < (~clean).sum() <= clean.sum()  # noisy copies of the training speakers' clips
    probs, y, spk = np.array(val["probs"]), np.array(val["label"]), np.array(val["speaker_id"])
    cal = fit_temperature(probs, y, speaker_weights(spk))
    assert res["calibration"]["temperature"] == pytest.approx(cal.temperature, rel=1e-3)
    assert res["calibration"]["temperature"] != pytest.approx(
        fit_temperature(probs[clean], y[clean], speaker_weights(spk[clean])).temperature,
        rel=1e-3)
    p = cal.apply(probs[clean])
    assert res["uncertain"]["threshold"] == threshold_for_precision(
        p.max(1), p.argmax(1) == y[clean], 0.8, speaker_weights(spk[clean]))
    # reports put each ECE beside its floor for that many answers
    assert 0 < res["metrics"]["ece_floor"] < 1
    report = (out / "report.md").read_text()
    assert "(floor 0." in report and "perfectly calibrated model would show" in report
    # ... and the pooled ECE beside one where every speaker weighs the same
    import pandas as pd

    from ser.calibration import expected_calibration_error
    record = json.loads((out / "metrics.json").read_text())
    labels = record["settings"]["labels"]
    pred = pd.read_csv(out / "predictions.csv")
    probs = pred[[f"p_{lab}" for lab in labels]].to_numpy()
    y = pred["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    assert record["metrics"]["confidence"]["ece_speaker_weighted"] == pytest.approx(
        expected_calibration_error(probs, y, weights=speaker_weights(pred["speaker_id"])),
        abs=1e-4)
    assert "With every speaker weighing the same" in report


def test_with_two_corpora_the_temperature_also_follows_the_distance(corpus, tmp_path,
                                                                    monkeypatch):
    """A model whose spec asks for it (none now; the whisper model while it was a logistic
    regression) gets leave-one-corpus-out answers
    in its calibration: the bundle's temperature may grow with the input's distance from
    the training data (Calibration.distance)."""
    import dataclasses

    import ser.models
    from ser.calibration import Calibration

    monkeypatch.setitem(ser.models.MODELS, "svm", dataclasses.replace(
        ser.models.MODELS["svm"], calibration="distance"))

    other = make_tree(tmp_path / "other", speakers=3, takes=3)
    out = tmp_path / "two"
    train([corpus, other], options(model="svm", protocol="kfold-speaker", folds=2,
                                   feature_set="seed178", hyper={}),
          out, cache_dir=tmp_path / "cache", jobs=1)
    res = json.loads((out / "fold-1" / "result.json").read_text())
    record = res["calibration"]
    assert record["fitted_on"]["corpus_rows"] > 0
    assert "leave-one-corpus-out" in record["fitted_on"]["answers"]
    assert Calibration.from_json(record).distance >= 0
    assert len(res["val"]["spread"]) == len(res["val"]["label"])
    assert all(s > 0 for s in res["val"]["spread"])
    bundle = load_bundle(out / "bundle")
    assert Calibration.from_json(bundle.meta["calibration"]) is not None


def test_seed_protocol_is_labelled_leaky(corpus, tmp_path):
    out = tmp_path / "seed"
    result = train([corpus], options(model="seed-resnet1d", protocol="seed", epochs=2,
                                     augment=("noise",), hyper={}),
                   out, cache_dir=tmp_path / "cache", jobs=1)
    assert result["protocol"]["leaky"] is True
    assert "LEAKY" in (out / "report.md").read_text()
    assert load_bundle(out / "bundle").meta["protocol"]["leaky"] is True
    # rows = originals + noise copies, split 80/10/10 at random
    assert result["metrics"]["n"] == round(0.1 * 2 * len(LABELS) * 5 * 4)


def _checkpoint_epoch(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads(f.metadata()["state"])["epoch"]


def test_a_checkpoint_is_one_atomic_unit(tmp_path, monkeypatch):
    """A kill between writing the tensors and the state must not resume from a mix of two
    epochs: the checkpoint is one file, written once."""
    import torch

    import ser.models.torch_training as training

    model = torch.nn.Linear(1, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    training.save_checkpoint(tmp_path, model, opt, {"epoch": 1})
    with torch.no_grad():
        model.weight.fill_(2.0)
    real, calls = training.atomic_write, []

    def killed_after_one_file(path, data):  # the process dies after its first file
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(path)
        real(path, data)

    monkeypatch.setattr(training, "atomic_write", killed_after_one_file)
    try:
        training.save_checkpoint(tmp_path, model, opt, {"epoch": 2})
    except KeyboardInterrupt:
        pass
    fresh = torch.nn.Linear(1, 1, bias=False)
    state = training.load_checkpoint(tmp_path, fresh, torch.optim.SGD(fresh.parameters(), 0.1))
    assert state is not None and state["epoch"] == fresh.weight.item()  # never 1 with 2


def test_labels_absent_from_the_data_are_left_out(corpus, tmp_path):
    out = tmp_path / "all"
    result = train([corpus], options(model="logreg", labels=(*LABELS, "boredom"), hyper={}),
                   out, cache_dir=tmp_path / "cache", jobs=1)
    assert result["metrics"]["labels"] == list(LABELS)
    assert load_bundle(out / "bundle").labels == list(LABELS)


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_identical(corpus, tmp_path):
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        from ser.training import TrainOptions, train
        opts = TrainOptions(model="cnn", protocol="speaker", labels={LABELS!r}, epochs=15,
                            seed=1, hyper={{"patience": 100, "batch_size": 8,
                                                  "channels": 16, "hidden": 64}})
        train([{str(corpus)!r}], opts, {str(tmp_path / "killed")!r}, cache_dir={str(cache)!r},
              jobs=1)
    """)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "split" / "last.safetensors"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if state.exists() and _checkpoint_epoch(state) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail("training finished before it could be killed")
            time.sleep(0.02)
    finally:
        proc.kill()
        proc.wait()
    killed_at = _checkpoint_epoch(state)
    assert 3 <= killed_at < 15
    opts = options(epochs=15)
    resumed = train([corpus], opts, tmp_path / "killed", cache_dir=cache, jobs=1)
    history = json.loads((tmp_path / "killed" / "split" / "result.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, 16))
    straight = train([corpus], opts, tmp_path / "straight", cache_dir=cache, jobs=1)
    from safetensors.numpy import load_file

    a = load_file(str(tmp_path / "killed" / "bundle" / "weights.safetensors"))
    b = load_file(str(tmp_path / "straight" / "bundle" / "weights.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], atol=1e-6, err_msg=k)
    assert resumed["metrics"] == straight["metrics"]


def test_a_different_run_in_the_same_folder_is_refused(corpus, tmp_path):
    from ser.errors import SerError

    out = tmp_path / "run"
    train([corpus], options(epochs=1), out, cache_dir=tmp_path / "cache", jobs=1)
    with pytest.raises(SerError, match="different run"):
        train([corpus], options(epochs=1, seed=2), out, cache_dir=tmp_path / "cache", jobs=1)


def test_a_repeated_augmentation_adds_a_copy_with_fresh_draws(corpus, tmp_path):
    from ser.training import load_dataset

    ds = load_dataset([corpus], options(model="logreg", augment=("noise", "noise"), hyper={}),
                      cache_dir=tmp_path / "cache", jobs=1, log=lambda _: None)
    n = len(ds.manifest)
    assert sorted(set(ds.row_aug)) == ["noise", "noise#2", "none"] and len(ds.row_aug) == 3 * n
    first, second = (ds.X[(ds.row_aug == a) & (ds.row_utt == 0)] for a in ("noise", "noise#2"))
    assert not np.allclose(first, second)


def test_babble_of_training_speakers_is_refused(corpus, tmp_path):
    from ser.training import TrainError, load_dataset

    with pytest.raises(TrainError, match="babble must be other speakers"):
        load_dataset([corpus], options(model="logreg", augment=("degrade",), hyper={},
                                       babble_dir=str(corpus / "angry")),
                     cache_dir=tmp_path / "cache", jobs=1, log=lambda _: None)


def test_a_classical_model_fitted_on_two_processes_gives_the_same_answers(corpus, tmp_path):
    """``jobs`` only spreads the fits (the model and its calibration's inner fits) over
    worker processes: the held-out speakers' probabilities, the calibration's answers and
    the bundle are those of a run on one."""
    runs = {}
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        train([corpus], options(model="svm", protocol="kfold-speaker", folds=2,
                                feature_set="seed178", augment=("noise",), hyper={}),
              out, cache_dir=tmp_path / "cache", jobs=jobs)
        runs[jobs] = out
    for fold in ("fold-1", "fold-2", "final"):
        one, two = (json.loads((runs[j] / fold / "result.json").read_text()) for j in (1, 2))
        assert one["val"] == two["val"] and one["calibration"] == two["calibration"]
        if fold != "final":
            assert one["test"] == two["test"]  # p_<label>, confidence, predicted
        assert ((runs[1] / fold / "model.onnx").read_bytes()
                == (runs[2] / fold / "model.onnx").read_bytes())


def test_a_run_with_degrade_records_its_version_and_resumes_only_its_own(monkeypatch):
    import ser.augment

    conf = TrainOptions(model="logreg", augment=("degrade",)).resolved()
    assert conf["degrade_version"] == ser.augment.DEGRADE_VERSION
    assert "degrade_version" not in TrainOptions(model="logreg", augment=("noise",)).resolved()
    assert TrainOptions(model="logreg", augment=("babble",)).resolved()["degrade_version"] == \
        ser.augment.DEGRADE_VERSION  # babble's draws are degrade's babble family
    monkeypatch.setattr("ser.training.DEGRADE_VERSION", ser.augment.DEGRADE_VERSION + 1)
    assert TrainOptions(model="logreg", augment=("degrade",)).resolved() != conf
