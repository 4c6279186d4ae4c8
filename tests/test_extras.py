"""A command that needs an optional extra says which, before doing any work."""

from __future__ import annotations

import sys

import pytest
from fixtures import make_ravdess
from typer.testing import CliRunner

from ser.cli import app
from ser.extras import EXTRAS, MissingExtraError, missing, require

runner = CliRunner()


def _block(monkeypatch, *modules: str) -> None:
    """Make ``modules`` unimportable, as on a plain `pip install ser`."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_names_the_extra(monkeypatch):
    require("train", "numpy", purpose="x")
    _block(monkeypatch, "skl2onnx")
    assert missing(["skl2onnx", "numpy"]) == ["skl2onnx"]
    with pytest.raises(MissingExtraError, match=r"needs skl2onnx.*pip install 'ser\[train\]'"):
        require("train", "sklearn", "skl2onnx", purpose="training")


def test_the_extras_match_pyproject():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(extras)


@pytest.mark.parametrize("model,blocked", [("cnn", "torch"), ("logreg", "skl2onnx")])
def test_train_without_the_train_extra_stops_before_any_work(tmp_path, monkeypatch, model,
                                                             blocked):
    corpus = make_ravdess(tmp_path / "ravdess", actors=(1, 2))
    _block(monkeypatch, blocked)
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    res = runner.invoke(app, ["train", str(corpus), "--model", model, "--out",
                              str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")])
    assert isinstance(res.exception, MissingExtraError), res.output
    assert f"needs {blocked}" in str(res.exception)
    assert "pip install 'ser[train]'" in str(res.exception)
    assert not (tmp_path / "cache").exists()  # no features were extracted first
    assert not (tmp_path / "run").exists()


def test_feature_sets_and_serve_name_their_extra(tmp_path, monkeypatch):
    corpus = make_ravdess(tmp_path / "ravdess", actors=(1,))
    _block(monkeypatch, "opensmile", "fastapi")
    res = runner.invoke(app, ["features", "extract", str(corpus), "--set", "egemaps", "--out",
                              str(tmp_path / "f.parquet")])
    assert "pip install 'ser[egemaps]'" in str(res.exception)
    res = runner.invoke(app, ["serve"])
    assert "pip install 'ser[serve]'" in str(res.exception)


def test_a_missing_extra_module_is_named_even_without_a_check():
    # The entry point's last resort: ModuleNotFoundError of an extra's package names the
    # extra (exit 2), instead of "internal error ... please report it".
    import subprocess
    import textwrap

    code = textwrap.dedent("""
        import sys
        sys.modules["skl2onnx"] = None
        from ser.cli import app, main

        @app.command("needs-skl2onnx")
        def needs() -> None:
            import skl2onnx  # noqa: F401

        sys.argv = ["ser", "needs-skl2onnx"]
        main()
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, res.stderr
    assert "skl2onnx is not installed: pip install 'ser[train]'" in res.stderr
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr
