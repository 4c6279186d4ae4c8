import json
import socket
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from fixtures import make_cremad, make_ravdess, make_savee, make_tess
from typer.testing import CliRunner

from ser.cli import app
from ser.corpora import read_manifest, scan
from ser.corpora.download import download, extract, md5sum
from ser.errors import SerError

runner = CliRunner()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpora")
    make_ravdess(root / "ravdess", actors=(1, 2), bad=True)
    make_tess(root / "tess")
    make_savee(root / "savee", speakers=("DC", "JK"))
    make_cremad(root / "crema-d")
    return root


def _run_ser(*args: str) -> subprocess.CompletedProcess:
    # The real entry point, so SerError handling (one line, exit 2) is exercised.
    return subprocess.run([sys.executable, "-m", "ser", *args], capture_output=True, text=True,
                          timeout=120)


def test_scan_tables(corpora):
    res = runner.invoke(app, ["data", "scan", str(corpora)], terminal_width=200)
    assert res.exit_code == 0, res.output
    out = res.output
    for name in ("ravdess", "tess", "savee", "crema-d"):
        assert name in out
    assert "calm (dropped)" in out and "surprise (dropped)" in out
    assert "ravdess:02" in out and "savee:JK" in out and "tess:YAF" in out
    assert "Problems (4 files not used)" in out and "unknown emotion code 09" in out


def test_scan_json_and_manifest(corpora, tmp_path):
    out_csv = tmp_path / "m.csv"
    res = runner.invoke(app, ["data", "scan", str(corpora), "--json", "--out", str(out_csv)])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["counts"]["ravdess"] == {"angry": 16, "disgust": 16, "fear": 16, "happy": 16,
                                      "neutral": 8, "sad": 16}
    assert s["dropped"]["ravdess"] == {"calm": 16, "surprise": 16}
    assert s["dropped"]["savee"] == {"surprise": 6}
    assert s["speakers"]["savee:DC"]["labels"]["neutral"] == 6
    assert s["speakers"]["ravdess:01"]["gender"] == "male"
    assert len(s["problems"]) == 4
    assert s["total"] == len(read_manifest(out_csv)) == 88 + 36 + 42 + 9


def test_scan_label_set_and_corpus_option(corpora):
    res = runner.invoke(app, ["data", "scan", str(corpora), "--json", "--labels", "all",
                              "--corpus", "savee"])
    s = json.loads(res.output)
    assert list(s["counts"]) == ["savee"]
    assert s["counts"]["savee"]["surprise"] == 6 and "dropped" not in s or not s["dropped"]
    res = runner.invoke(app, ["data", "scan", str(corpora), "--json", "--labels", "sad,angry"])
    assert set(json.loads(res.output)["counts"]["tess"]) == {"angry", "sad"}


def test_scan_errors_are_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    res = _run_ser("data", "scan", str(tmp_path / "empty"))
    assert res.returncode == 2
    assert res.stderr.strip().startswith("error: no usable data") and "Traceback" not in res.stderr
    res = _run_ser("data", "scan", str(tmp_path), "--labels", "joyful")
    assert res.returncode == 2 and "unknown label 'joyful'" in res.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_offline_fails_with_one_line(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/Audio_Speech_Actors_01-24.zip"
    res = _run_ser("data", "download", "ravdess", "--to", str(tmp_path), "--url", url)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot download"), res.stderr
    assert "--from" in lines[0]
    assert not list(tmp_path.rglob("*.part"))
    with pytest.raises(SerError, match="cannot download"):
        download("emodb", tmp_path, url=url)


def test_download_manual_corpora_explain(tmp_path):
    res = _run_ser("data", "download", "savee", "--to", str(tmp_path))
    assert res.returncode == 2 and "AudioData.zip" in res.stderr and "--from" in res.stderr
    res = _run_ser("data", "download", "crema-d", "--to", str(tmp_path))
    assert res.returncode == 2 and "git lfs" in res.stderr
    res = _run_ser("data", "download", "iemocap", "--to", str(tmp_path))
    assert res.returncode == 2 and "no download for 'iemocap'" in res.stderr


def _zip_tree(src: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted(src.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(src).as_posix())
    return archive


def test_download_extracts_a_zip_from_a_file_url(tmp_path):
    # The RAVDESS zip holds Actor_NN/ folders at its top level.
    make_ravdess(tmp_path / "src", actors=(5, 6))
    archive = _zip_tree(tmp_path / "src", tmp_path / "Audio_Speech_Actors_01-24.zip")
    res = runner.invoke(app, ["data", "download", "ravdess", "--to", str(tmp_path / "corpora"),
                              "--url", archive.as_uri()])
    assert res.exit_code == 0, res.output
    assert "120 utterances, 2 speakers, 0 problems" in res.output  # all labels
    target = tmp_path / "corpora" / "ravdess"
    assert (target / "Actor_05").is_dir()
    assert not list((tmp_path / "corpora").glob("*download*"))  # archive removed
    r = scan(tmp_path / "corpora")
    assert {u.speaker for u in r.utterances} == {"05", "06"} and len(r.utterances) == 88


def test_download_from_local_tar_for_savee(tmp_path):
    make_savee(tmp_path / "src", speakers=("KL",))
    archive = tmp_path / "AudioData.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(tmp_path / "src" / "AudioData", arcname="AudioData")
    res = runner.invoke(app, ["data", "download", "savee", "--to", str(tmp_path / "c"),
                              "--from", str(archive)])
    assert res.exit_code == 0, res.output
    r = scan(tmp_path / "c")
    assert {u.speaker_id for u in r.utterances} == {"savee:KL"} and len(r.utterances) == 21


def test_extract_refuses_unsafe_members(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.wav", b"x")
    with pytest.raises(SerError, match="unsafe path"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "escape.wav").exists()
    (tmp_path / "plain.txt").write_text("hello")
    with pytest.raises(SerError, match="not a zip or tar"):
        extract(tmp_path / "plain.txt", tmp_path / "out")


def test_md5sum(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert md5sum(tmp_path / "f") == "900150983cd24fb0d6963f7d28e17f72"


def test_help_has_examples():
    for cmd in ("scan", "download"):
        res = runner.invoke(app, ["data", cmd, "--help"], terminal_width=200)
        assert res.exit_code == 0 and "ser data " + cmd in res.output
