from collections import Counter
from pathlib import Path

import pytest
from fixtures import (
    CREMA_FILES,
    EMODB_FILES,
    make_cremad,
    make_emodb,
    make_folders,
    make_ravdess,
    make_savee,
    make_tess,
    write_clip,
)

from ser.corpora import (
    manifest_frame,
    read_manifest,
    scan,
    write_manifest,
)
from ser.errors import SerError
from ser.labels import ALL, CANONICAL


def _labels(utts):
    return Counter(u.label for u in utts)


def _reasons(result):
    return {Path(p.path).name: p.reason for p in result.problems}


def test_ravdess_speakers_labels_dropped_and_problems(tmp_path):
    root = make_ravdess(tmp_path / "ravdess", actors=(1, 2, 7), bad=True)
    r = scan(root)
    assert {u.speaker for u in r.utterances} == {"01", "02", "07"}
    # Per actor: neutral 4, each other emotion 8; calm and surprise dropped by default.
    assert _labels(r.utterances) == {lab: (12 if lab == "neutral" else 24) for lab in CANONICAL}
    assert _labels(r.dropped) == {"calm": 24, "surprise": 24}
    genders = {u.speaker: u.gender for u in r.utterances}
    assert genders == {"01": "male", "02": "female", "07": "male"}
    u = next(u for u in r.utterances if u.path.name == "03-01-05-02-01-02-07.flac")
    assert (u.label, u.original_label, u.intensity, u.statement, u.repetition) == (
        "angry", "05", "strong", "01", "02")
    assert u.speaker_id == "ravdess:07"
    reasons = _reasons(r)
    assert set(reasons) == {"03-01-09-01-01-01-01.wav", "recording.wav", "notes.txt",
                            "03-01-05-01-01-01-02.wav"}
    assert "unknown emotion code 09" in reasons["03-01-09-01-01-01-01.wav"]
    assert "not an audio file" in reasons["notes.txt"]
    assert "folder Actor_01" in reasons["03-01-05-01-01-01-02.wav"]


def test_ravdess_all_labels_and_song(tmp_path):
    root = make_ravdess(tmp_path / "r", actors=(3,), song_actors=(3,))
    r = scan(root, labels=ALL)
    assert len(r.utterances) == 60 and not r.dropped
    assert _labels(r.utterances)["calm"] == 8
    assert any("6 song files skipped" in n for n in r.notes)
    song = scan(root, song=True, labels=ALL)
    assert len(song.utterances) == 6
    assert all(u.extra["vocal_channel"] == "song" for u in song.utterances)


def test_cremad(tmp_path):
    root = make_cremad(tmp_path / "CREMA-D", bad=True)
    r = scan(root)
    assert len(r.utterances) == len(CREMA_FILES)
    assert {u.speaker for u in r.utterances} == {"1001", "1002", "1091"}
    assert all(u.gender is None for u in r.utterances)
    u = next(u for u in r.utterances if u.path.stem == "1001_IEO_FEA_HI")
    assert (u.label, u.original_label, u.intensity, u.statement) == ("fear", "FEA", "high", "IEO")
    reasons = _reasons(r)
    assert "unknown emotion code XYZ" in reasons["1001_DFA_XYZ_XX.wav"]
    assert "unknown emotion level ZZ" in reasons["1001_DFA_ANG_ZZ.wav"]
    assert "clip.wav" in reasons


@pytest.mark.parametrize("flat", [False, True])
def test_tess_real_spellings_and_flat_layout(tmp_path, flat):
    root = make_tess(tmp_path / "tess", flat=flat, bad=True)
    r = scan(root)
    assert {u.speaker for u in r.utterances} == {"OAF", "YAF"}
    assert all(u.gender == "female" for u in r.utterances)
    # 3 words x 2 speakers per emotion.
    assert _labels(r.utterances) == {lab: 6 for lab in CANONICAL}
    assert _labels(r.dropped) == {"surprise": 6}  # the *_ps files of both surprise folders
    oa = [u for u in r.utterances if u.path.name.startswith("OA_")]
    assert len(oa) == 1 and oa[0].speaker == "OAF" and oa[0].label == "neutral"
    reasons = _reasons(r)
    assert "unknown emotion 'grumpy'" in reasons["OAF_back_grumpy.wav"]
    if not flat:
        assert "folder OAF_angry" in reasons["OAF_bean_sad.wav"]


@pytest.mark.parametrize("flat", [False, True])
def test_savee_both_layouts(tmp_path, flat):
    root = make_savee(tmp_path / "savee", flat=flat, bad=True)
    r = scan(root)
    per = Counter((u.speaker, u.label) for u in r.utterances)
    for spk in ("DC", "JE", "JK"):
        assert per[(spk, "neutral")] == 6 and per[(spk, "sad")] == 3 and per[(spk, "angry")] == 3
    assert _labels(r.dropped) == {"surprise": 9}
    assert all(u.gender == "male" for u in r.utterances)
    assert {u.original_label for u in r.utterances} == {"a", "d", "f", "h", "n", "sa"}
    reasons = _reasons(r)
    bad_name = "DC_x01.wav" if flat else "x01.wav"
    assert "unknown emotion code 'x'" in reasons[bad_name]
    if flat:
        assert "unknown speaker ZZ" in reasons["ZZ_a01.wav"]


def test_emodb(tmp_path):
    root = make_emodb(tmp_path / "emodb", bad=True)
    r = scan(root, labels=ALL)
    assert len(r.utterances) == len(EMODB_FILES)
    by = {u.path.stem: u for u in r.utterances}
    assert (by["03a01Fa"].label, by["03a01Fa"].gender, by["03a01Fa"].speaker) == (
        "happy", "male", "03")
    assert by["08b02Wa"].label == "angry" and by["08b02Wa"].gender == "female"
    assert by["16b10Lb"].label == "boredom"
    assert by["03a01Nc"].statement == "a01" and by["03a01Nc"].repetition == "c"
    # lablaut/ and the text files of the download are not read; the bad name is a problem.
    assert list(_reasons(r)) == ["03a01Xa.wav"]
    assert _labels(scan(root).dropped) == {"boredom": 1}


def test_label_folders(tmp_path):
    root = make_folders(tmp_path / "My Data")
    r = scan(root)
    assert {u.corpus for u in r.utterances} == {"my-data"}
    assert _labels(r.utterances) == {"angry": 2, "happy": 2, "sad": 2, "neutral": 2}
    assert _labels(r.dropped) == {"calm": 1}
    speakers = {u.speaker for u in r.utterances if u.label == "neutral"}
    assert speakers == {"s1", "s2"}
    assert "anger/clip0" in {u.speaker for u in r.utterances}
    assert any("own speaker" in n for n in r.notes)
    assert "not an emotion label" in _reasons(r)["what.wav"]


def test_several_corpora_under_one_root_are_merged(tmp_path):
    make_ravdess(tmp_path / "ravdess", actors=(1, 2))
    make_tess(tmp_path / "tess")
    make_savee(tmp_path / "savee", speakers=("DC",))
    make_cremad(tmp_path / "crema-d")
    make_emodb(tmp_path / "more" / "emodb")  # found deeper down
    write_clip(tmp_path / "stray.wav")
    (tmp_path / "README.md").write_text("docs at the root are fine")
    r = scan(tmp_path)
    assert {name for name, _ in r.roots} == {"ravdess", "tess", "savee", "crema-d", "emodb"}
    per_corpus = Counter(u.corpus for u in r.utterances)
    assert per_corpus == {"ravdess": 2 * 44, "tess": 36, "savee": 21,
                          "crema-d": len(CREMA_FILES), "emodb": 6}
    assert len({u.speaker_id for u in r.utterances}) == 2 + 2 + 1 + 3 + 5  # emodb 16: boredom
    assert [Path(p.path).name for p in r.problems] == ["stray.wav"]
    # Named explicitly: only that corpus.
    only = scan(tmp_path, corpora=["ravdess"])
    assert {u.corpus for u in only.utterances} == {"ravdess"}
    # Two paths, overlapping: every file once.
    twice = scan([tmp_path / "tess", tmp_path])
    assert len(twice.utterances) == len(r.utterances)


def test_any_audio_extension(tmp_path):
    make_ravdess(tmp_path / "r", actors=(1,), ext=".ogg")
    make_cremad(tmp_path / "c", ext=".mp3")
    r = scan(tmp_path)
    assert Counter(u.corpus for u in r.utterances) == {"ravdess": 44, "crema-d": 9}


def test_forced_corpus_on_unusual_layout_and_errors(tmp_path):
    flat = tmp_path / "flat"
    for name in ("03-01-05-01-01-01-04.wav", "03-01-04-01-01-01-05.wav", "junk.wav"):
        write_clip(flat / name)
    r = scan(flat, corpora=["ravdess"])
    assert {u.speaker for u in r.utterances} == {"04", "05"}
    assert [p.path.name for p in r.problems] == ["junk.wav"]
    nothing = scan(flat)  # not recognisable without the Actor_NN folders
    assert not nothing.utterances
    with pytest.raises(SerError, match="unknown corpus 'iemocap'"):
        scan(flat, corpora=["iemocap"])
    with pytest.raises(SerError, match="no such folder"):
        scan(tmp_path / "missing")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_round_trip(tmp_path, suffix):
    make_ravdess(tmp_path / "ravdess", actors=(1,))
    make_savee(tmp_path / "savee", speakers=("JE",))
    r = scan(tmp_path)
    path = write_manifest(r.utterances, tmp_path / f"out/manifest{suffix}")
    back = read_manifest(path)
    assert back == r.utterances
    df = manifest_frame(back)
    assert list(df.columns[:4]) == ["path", "corpus", "speaker", "label"]
    assert df["speaker"].tolist().count("01") == 44  # ids stay strings
    # scanning the manifest path gives the same utterances.
    assert scan(path).utterances == r.utterances


def test_user_manifest_relative_paths_and_problems(tmp_path):
    write_clip(tmp_path / "clips" / "a.wav")
    write_clip(tmp_path / "clips" / "b.flac")
    write_clip(tmp_path / "clips" / "c.wav")
    csv = tmp_path / "mine.csv"
    csv.write_text(
        "path,label,speaker\n"
        "clips/a.wav,Angry,spk1\n"
        "clips/b.flac,fearful,spk2\n"
        "clips/c.wav,calm,\n"
        "clips/missing.wav,sad,spk1\n"
        "clips/a.wav,grumpy,spk1\n"
        "clips/b.flac,sad,spk2\n"
    )
    r = scan(csv)
    assert [(u.path.name, u.label, u.speaker, u.corpus) for u in r.utterances] == [
        ("a.wav", "angry", "spk1", "mine"), ("b.flac", "fear", "spk2", "mine")]
    assert [u.speaker for u in r.dropped] == ["c"]
    reasons = sorted(p.reason for p in r.problems)
    assert [x.split(" ")[0] for x in reasons] == ["already", "listed", "unknown"]
    assert "already listed as fear" in reasons[0]
    with pytest.raises(SerError, match="2 unusable rows"):
        read_manifest(csv)
    (tmp_path / "bad.csv").write_text("file,emotion_name\nx.wav,sad\n")
    with pytest.raises(SerError, match="needs a 'label' column"):
        read_manifest(tmp_path / "bad.csv")


def test_scan_reads_names_only(tmp_path):
    # Zero-byte and garbage files with valid names are listed: decoding is not scan's job.
    root = tmp_path / "ravdess" / "Actor_01"
    root.mkdir(parents=True)
    (root / "03-01-05-01-01-01-01.wav").write_bytes(b"")
    (root / "03-01-04-01-01-01-01.wav").write_bytes(b"garbage")
    assert len(scan(tmp_path).utterances) == 2


def test_one_actor_folder_is_autodetected(tmp_path):
    # `ser data scan ravdess/Actor_01` reads that actor without --corpus ravdess.
    root = make_ravdess(tmp_path / "ravdess", actors=(1, 2))
    r = scan(root / "Actor_01")
    assert r.roots == [("ravdess", root / "Actor_01")]
    assert {u.speaker for u in r.utterances} == {"01"} and not r.problems
    assert len(r.utterances) == 44


def test_symlinked_corpus_folders_are_followed_once(tmp_path):
    real = make_ravdess(tmp_path / "store" / "ravdess", actors=(1, 2))
    corpora = tmp_path / "corpora"
    (corpora / "ravdess").mkdir(parents=True)
    for actor in ("Actor_01", "Actor_02"):  # a corpus assembled from links
        (corpora / "ravdess" / actor).symlink_to(real / actor, target_is_directory=True)
    (corpora / "ravdess" / "Actor_01" / "loop").symlink_to(corpora, target_is_directory=True)
    (corpora / "ravdess" / "again").symlink_to(real / "Actor_02", target_is_directory=True)
    r = scan(corpora)
    assert {u.speaker for u in r.utterances} == {"01", "02"}
    assert len(r.utterances) == 88  # the loop and the second link add nothing
    tess_link = tmp_path / "linked_tess"
    tess_link.symlink_to(make_tess(tmp_path / "store" / "tess"), target_is_directory=True)
    assert scan(tess_link).roots[0][0] == "tess"
