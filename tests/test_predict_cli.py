"""`ser predict`: inputs (files, folders, globs), outputs (table, JSON, CSV, plot), errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _tiny_bundle import needs_espeak, recording, timbre_clip, tiny_bundle
from typer.testing import CliRunner

from ser.cli import app
from ser.cli.predict import expand_inputs
from ser.labels import CANONICAL

runner = CliRunner()


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """angry.wav, sad.flac, nested/happy.ogg, notes.txt and a broken .mp3."""
    root = tmp_path_factory.mktemp("clips")
    sf.write(root / "angry.wav", timbre_clip("angry", seed=21), 16000)
    sf.write(root / "sad.flac", timbre_clip("sad", seed=22), 16000)
    (root / "nested").mkdir()
    sf.write(root / "nested" / "happy.ogg", timbre_clip("happy", seed=23), 16000,
             format="OGG", subtype="VORBIS")
    (root / "notes.txt").write_text("not audio")
    (root / "broken.mp3").write_bytes(b"ID3 this is not an mp3")
    return root


def run(*args: str):
    return runner.invoke(app, ["predict", "--model", str(tiny_bundle()), *args])


def test_expand_inputs(clips):
    found = expand_inputs([str(clips)])
    assert sorted(p.rsplit("/", 1)[1] for p in found) == [
        "angry.wav", "broken.mp3", "happy.ogg", "sad.flac"]  # not notes.txt
    assert expand_inputs([str(clips / "*.wav")]) == [str(clips / "angry.wav")]
    assert expand_inputs([str(clips / "**" / "*.ogg")]) == [str(clips / "nested" / "happy.ogg")]
    assert expand_inputs([str(clips / "angry.wav")] * 2) == [str(clips / "angry.wav")]
    assert expand_inputs([str(clips / "*.nothing")]) == [str(clips / "*.nothing")]


def test_json_one_array_with_an_error_row_and_exit_1(clips):
    result = run(str(clips), "--json")
    assert result.exit_code == 1, result.output
    rows = {r["path"].rsplit("/", 1)[1]: r for r in json.loads(result.stdout)}
    assert {k: r.get("label") for k, r in rows.items()} == {
        "angry.wav": "angry", "sad.flac": "sad", "happy.ogg": "happy", "broken.mp3": None}
    assert "unreadable" in rows["broken.mp3"]["error"]
    assert list(rows["sad.flac"]["probabilities"]) == list(CANONICAL)
    assert rows["sad.flac"]["confidence"] == max(rows["sad.flac"]["probabilities"].values())
    assert "segments" not in rows["sad.flac"]


def test_all_good_exits_0_and_table_shows_runner_ups(clips):
    result = run(str(clips / "angry.wav"), str(clips / "sad.flac"), "--top", "3", "--verbose")
    assert result.exit_code == 0, result.output
    assert "angry" in result.stdout and "sad" in result.stdout
    assert result.stdout.count("%") >= 2 * 3  # confidence + two runner-ups per file
    assert "decode" in result.output and "model" in result.output  # --verbose timings


def test_table_prints_bracketed_names_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short paths: the table folds long ones
    sf.write("[bold]take.wav", timbre_clip("sad", seed=24), 16000)
    Path("[red]bad.mp3").write_bytes(b"not audio")
    result = run("[bold]take.wav", "[red]bad.mp3")
    assert "[bold]take.wav" in result.stdout and "[red]bad.mp3" in result.stdout


def test_csv(clips):
    result = run(str(clips / "angry.wav"), str(clips / "missing.wav"), "--csv")
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[0]["label"] == "angry" and float(rows[0]["angry"]) > 0.5
    assert rows[1]["label"] == "" and "no such file" in rows[1]["error"]


def test_missing_model_is_one_clear_line(clips, tmp_path):
    result = runner.invoke(app, ["predict", "--model", str(tmp_path), str(clips / "sad.flac")])
    assert result.exit_code != 0
    assert "not a ser bundle" in str(result.exception)


@pytest.mark.skipif(not needs_espeak, reason="espeak-ng is not installed")
def test_segments_json_and_plot(tmp_path):
    y, truth = recording(["good morning everyone and welcome",
                          "this meeting will be very short"], [1.0, 2.0, 1.0])
    sf.write(tmp_path / "talk.wav", y, 16000)
    sf.write(tmp_path / "quiet.wav", 0.002 * np.random.default_rng(0).standard_normal(
        16000 * 3).astype(np.float32), 16000)
    result = run(str(tmp_path / "talk.wav"), str(tmp_path / "quiet.wav"), "--segments",
                 "--smooth", "3", "--json", "--plot", str(tmp_path / "timeline.png"))
    assert result.exit_code == 1, result.output  # quiet.wav has no speech
    talk, quiet = json.loads(result.stdout)
    assert quiet["error"].startswith("no speech found (0.00 s of speech heard")
    assert len(talk["segments"]) == 2
    for seg, (start, end) in zip(talk["segments"], truth, strict=True):
        assert abs(seg["start"] - start) < 0.3 and abs(seg["end"] - end) < 0.3
        assert set(seg) == {"start", "end", "label", "confidence", "uncertain", "probabilities"}
    png = tmp_path / "timeline_talk.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert not (tmp_path / "timeline_quiet.png").exists()

    table = run(str(tmp_path / "talk.wav"), "--segments")
    assert table.exit_code == 0 and "2 speech segments" in table.stdout


def test_models_lists_the_shipped_models_with_their_figures(monkeypatch):
    from ser.features import whisper as wh
    from ser.inference import packaged_bundles

    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    for name in packaged_bundles():
        assert name in res.output
    assert "default" in res.output and "% ±" in res.output
    # A model that cannot run here (the encoder graph missing from the package) says why.
    monkeypatch.setattr(wh, "GRAPH_FILE", "missing.onnx")
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0 and "no (below)" in res.output and "reinstall ser" in res.output


def test_plot_does_not_change_the_answer(clips, tmp_path):
    plain = run(str(clips / "sad.flac"), "--json")
    drawn = run(str(clips / "sad.flac"), "--json", "--plot", str(tmp_path / "t.png"))
    assert plain.exit_code == drawn.exit_code == 0, drawn.output
    assert json.loads(drawn.stdout) == json.loads(plain.stdout)  # no segments, same figures
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_table_keeps_the_emotion_readable_at_80_columns(tmp_path, monkeypatch):
    from ser.cli import console

    deep = tmp_path / "recordings-from-the-field" / "session-2026-11-30-afternoon"
    deep.mkdir(parents=True)
    sf.write(deep / "interview_participant_17_take_03.wav", timbre_clip("angry", seed=25),
             16000)
    monkeypatch.setattr(console, "width", 80)
    result = run(str(deep / "interview_participant_17_take_03.wav"))
    assert result.exit_code == 0, result.output
    assert max(map(len, result.stdout.splitlines())) <= 80
    assert "angry" in result.stdout and "…" not in result.stdout
    # Inside the working folder the path is shown relative to it.
    monkeypatch.chdir(tmp_path)
    result = run(str(deep / "interview_participant_17_take_03.wav"))
    assert str(tmp_path) not in result.stdout
    assert "recordings-from-the-field" in result.stdout


def test_models_name_shows_the_model_card():
    from ser.inference import packaged_bundle_path, packaged_bundles

    for name in packaged_bundles():
        res = CliRunner().invoke(app, ["models", name], terminal_width=120)
        assert res.exit_code == 0, res.output
        card = (packaged_bundle_path(name) / "MODEL_CARD.md").read_text()
        headings = [line[3:].strip() for line in card.splitlines() if line.startswith("## ")]
        assert "Model card" in res.output and headings
        for heading in headings:  # the card's sections, rendered
            assert heading.replace("`", "") in res.output, heading
    assert "site-packages" not in CliRunner().invoke(app, ["models"]).output
    res = CliRunner().invoke(app, ["models", "nosuch"])
    assert res.exit_code != 0 and "no model 'nosuch' shipped" in str(res.exception)
