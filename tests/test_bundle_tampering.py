"""Tampered bundles: every one is refused on load with a BundleError that says what is
wrong — never an "internal error", a wrong probability, or a file read outside the bundle."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from _tiny_bundle import timbre_clip, tiny_bundle

from ser.bundle import BundleError, load_bundle, save_ensemble
from ser.inference import Recognizer


def _meta(folder: Path, change: Callable[[dict], None]) -> None:
    meta = json.loads((folder / "model.json").read_text())
    change(meta)
    (folder / "model.json").write_text(json.dumps(meta))


def _set(*keys: str, value) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        def change(meta: dict) -> None:
            d = meta
            for k in keys[:-1]:
                d = d[k]
            d[keys[-1]] = value
        _meta(folder, change)
    return tamper


def _drop(*keys: str) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        def change(meta: dict) -> None:
            d = meta
            for k in keys[:-1]:
                d = d[k]
            del d[keys[-1]]
        _meta(folder, change)
    return tamper


def _norm(which: str, edit: Callable[[list], list]) -> Callable[[Path], None]:
    return lambda folder: _meta(
        folder, lambda m: m["normalization"].__setitem__(which, edit(m["normalization"][which])))


def _write(name: str, data: bytes | str) -> Callable[[Path], None]:
    def tamper(folder: Path) -> None:
        (folder / name).unlink(missing_ok=True)
        if isinstance(data, str):
            (folder / name).write_text(data)
        else:
            (folder / name).write_bytes(data)
    return tamper


def _symlink_onnx(folder: Path) -> None:
    outside = folder.parent / "elsewhere.onnx"
    shutil.copy(folder / "model.onnx", outside)
    (folder / "model.onnx").unlink()
    (folder / "model.onnx").symlink_to(outside)


PLAIN: dict[str, tuple[Callable[[Path], None], str]] = {
    "version-as-string": (_set("format_version", value="1"), "format_version"),
    "version-newer": (_set("format_version", value=2), "newer"),
    "version-null": (_set("format_version", value=None), "format_version"),
    "version-bool": (_set("format_version", value=True), "format_version"),
    "format-missing": (_drop("format"), "not a ser bundle"),
    "json-list": (_write("model.json", "[1, 2, 3]"), "JSON object"),
    "json-broken": (_write("model.json", '{"format": "ser-bundle", '), "unreadable JSON"),
    "json-binary": (_write("model.json", b"\xff\xfe\x00garbage"), "unreadable JSON"),
    "json-deep": (_write("model.json", "[" * 100000 + "]" * 100000), "unreadable JSON"),
    "labels-duplicate": (_set("labels", value=["angry", "angry", "fear", "happy", "neutral",
                                               "sad"]), "duplicate labels angry"),
    "labels-one": (_set("labels", value=["angry"]), "at least two"),
    "labels-numbers": (_set("labels", value=[1, 2, 3, 4, 5, 6]), "labels"),
    "labels-missing": (_drop("labels"), "lacks labels"),
    "labels-fewer-than-graph": (_set("labels", value=["a", "b", "c", "d", "e"]),
                                "6 probabilities"),
    "labels-more-than-graph": (_set("labels", value=list("abcdefg")), "6 probabilities"),
    "rate-string": (_set("sample_rate", value="22050"), "sample_rate"),
    "rate-zero": (_set("sample_rate", value=0), "sample_rate"),
    "rate-huge": (_set("sample_rate", value=10**12), "sample_rate"),
    "norm-nan-mean": (_norm("mean", lambda v: [float("nan")] + v[1:]), "NaN or infinite"),
    "norm-inf-std": (_norm("std", lambda v: [float("inf")] + v[1:]), "NaN or infinite"),
    "norm-negative-std": (_norm("std", lambda v: [-1.0] + v[1:]), "negative"),
    "norm-short": (_norm("mean", lambda v: v[:-1]), "shape"),
    "norm-wrong-length-both": (lambda f: (_norm("mean", lambda v: v[:-1])(f),
                                          _norm("std", lambda v: v[:-1])(f)), "does not fit"),
    "norm-strings": (_norm("mean", lambda v: ["x"] * len(v)), "numbers"),
    "norm-missing-std": (_drop("normalization", "std"), "normalization"),
    "onnx-parent": (_set("model", "onnx", value="../elsewhere.onnx"), "outside the bundle"),
    "onnx-absolute": (_set("model", "onnx", value="/etc/passwd"), "outside the bundle"),
    "onnx-number": (_set("model", "onnx", value=3), "file name"),
    "onnx-symlink-outside": (_symlink_onnx, "outside the bundle"),
    "onnx-missing": (lambda f: (f / "model.onnx").unlink(), "missing"),
    "onnx-garbage": (_write("model.onnx", b"\x08\x01garbage" * 100), "not a usable ONNX"),
    "onnx-empty": (_write("model.onnx", b""), "not a usable ONNX"),
    "onnx-is-a-folder": (lambda f: ((f / "model.onnx").unlink(), (f / "model.onnx").mkdir()),
                         "missing"),
    "weights-outside": (_set("model", "weights", value="../../w.safetensors"), "outside"),
    "extra-key": (_set("pickle", value="cos\nsystem\n"), "unknown keys pickle"),
    "extra-model-key": (_set("model", "loader", value="eval"), "model.loader"),
    "model-not-object": (_set("model", value="model.onnx"), "'model' must be an object"),
    "feature-set-unknown": (_set("feature_set", "name", value="mystery"), "mystery"),
    "feature-set-bad-config": (_set("feature_set", "config", value={"no_such_option": 3}),
                               "feature_set"),
    "feature-set-newer": (_set("feature_set", "version", value=99), "version"),
    "feature-set-not-object": (_set("feature_set", value="seed178"), "feature_set"),
}


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ens") / "ensemble"
    save_ensemble(out, {"name": "two"}, [(tiny_bundle(), 1.0), (tiny_bundle(), 1.0)])
    return out


def _members(edit: Callable[[list], None]) -> Callable[[Path], None]:
    return lambda folder: _meta(folder, lambda m: edit(m["model"]["members"]))


ENSEMBLE: dict[str, tuple[Callable[[Path], None], str]] = {
    "weights-over-one": (_members(lambda ms: ms[0].__setitem__("weight", 0.81)), "sum to 1"),
    "weight-negative": (_members(lambda ms: (ms[0].__setitem__("weight", -0.5),
                                             ms[1].__setitem__("weight", 1.5))), "positive"),
    "weight-nan": (_members(lambda ms: ms[0].__setitem__("weight", float("nan"))), "NaN"),
    "weight-string": (_members(lambda ms: ms[0].__setitem__("weight", "half")), "numbers"),
    "member-outside": (_members(lambda ms: ms[0].__setitem__("path", "../../x")), "outside"),
    "member-is-itself": (_members(lambda ms: ms[0].__setitem__("path", ".")), "outside"),
    "member-missing": (_members(lambda ms: ms[0].__setitem__("path", "members/none")),
                       "not a ser bundle"),
    "member-no-path": (_members(lambda ms: ms[0].pop("path")), "path and a weight"),
    "members-empty": (_members(lambda ms: ms.clear()), "non-empty"),
    "member-labels-differ": (lambda f: _set("labels", value=list("abcdef"))(
        next((f / "members").iterdir())), "labels"),
}


def _refused(folder: Path, words: str) -> None:
    with pytest.raises(BundleError) as err:
        Recognizer.load(folder).predict(timbre_clip("angry", sr=22050), sr=22050)
    assert words in str(err.value), str(err.value)


@pytest.mark.parametrize("kind", sorted(PLAIN))
def test_a_tampered_bundle_is_refused_on_load(tmp_path, kind):
    folder = tmp_path / "b" / "bundle"
    shutil.copytree(tiny_bundle(), folder)
    tamper, words = PLAIN[kind]
    tamper(folder)
    _refused(folder, words)


@pytest.mark.parametrize("kind", sorted(ENSEMBLE))
def test_a_tampered_ensemble_is_refused_on_load(tmp_path, ensemble, kind):
    folder = tmp_path / "b" / "ensemble"
    shutil.copytree(ensemble, folder)
    tamper, words = ENSEMBLE[kind]
    tamper(folder)
    _refused(folder, words)


def test_the_untampered_bundles_load_and_give_probabilities(ensemble):
    for folder in (tiny_bundle(), ensemble):
        p = Recognizer.load(folder).predict(timbre_clip("angry", sr=22050), sr=22050)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert load_bundle(ensemble).members()[0][1] == pytest.approx(0.5)


@pytest.mark.parametrize("kind", ["version-as-string", "labels-fewer-than-graph", "onnx-garbage",
                                  "feature-set-bad-config"])
def test_the_cli_reports_a_tampered_bundle_in_one_line(tmp_path, kind):
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(), folder)
    PLAIN[kind][0](folder)
    clip = tmp_path / "clip.wav"
    import soundfile as sf

    sf.write(clip, timbre_clip("sad", sr=22050), 22050)
    run = subprocess.run([sys.executable, "-m", "ser", "predict", str(clip), "--model",
                          str(folder)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "internal error" not in run.stderr and "Traceback" not in run.stderr
    assert np.char.count(run.stderr.strip(), "\n") <= 1
