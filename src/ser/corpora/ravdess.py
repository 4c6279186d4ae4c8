"""RAVDESS: ``Actor_NN/MM-VV-EE-II-SS-RR-AA.<ext>``.

Fields: modality (01 audio-video, 02 video-only, 03 audio-only), vocal channel (01 speech,
02 song), emotion, intensity (01 normal, 02 strong), statement (01 "Kids are talking by the
door", 02 "Dogs are sitting by the door"), repetition, actor (odd male, even female).
Any number of actors is fine: copies with fewer than 24 are common.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ser.audio import is_audio
from ser.corpora.base import Problem, Reader, Utterance, at_least_two, iter_files, not_audio
from ser.labels import CORPUS_LABELS, canonical

NAME = "ravdess"
_FILE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^actor_(\d+)$", re.IGNORECASE)
_INTENSITY = {"01": "normal", "02": "strong"}


def detect(folder: Path) -> bool:
    """A RAVDESS root holds ``Actor_NN`` folders, or is one holding RAVDESS names
    (``ser data scan ravdess/Actor_01`` reads that one actor)."""
    if any(p.is_dir() and _ACTOR_DIR.match(p.name) for p in folder.iterdir()):
        return True
    return bool(_ACTOR_DIR.match(folder.name)) and at_least_two(
        folder, lambda p: p.is_file() and bool(_FILE.match(p.stem)))


def parse(path: Path, *, song: bool = False) -> Utterance | Problem | None:
    """One file → Utterance, Problem, or None for a song file when ``song`` is off
    (or a speech file when only song is read)."""
    if not is_audio(path):
        return not_audio(path, NAME)
    m = _FILE.match(path.stem)
    if m is None:
        return Problem(path, NAME, "name does not match MM-VV-EE-II-SS-RR-AA")
    modality, channel, emotion, intensity, statement, repetition, actor = m.groups()
    if modality == "02":
        return Problem(path, NAME, "video-only file (modality 02) has no audio")
    if modality not in ("01", "03"):
        return Problem(path, NAME, f"unknown modality {modality}")
    if channel not in ("01", "02"):
        return Problem(path, NAME, f"unknown vocal channel {channel}")
    if emotion not in CORPUS_LABELS[NAME]:
        return Problem(path, NAME, f"unknown emotion code {emotion}")
    if intensity not in _INTENSITY or statement not in ("01", "02") or repetition not in (
        "01", "02"
    ):
        return Problem(path, NAME, "intensity, statement and repetition must be 01 or 02")
    folder = _ACTOR_DIR.match(path.parent.name)
    if folder and int(folder.group(1)) != int(actor):
        return Problem(path, NAME, f"actor {actor} in the name but folder {path.parent.name}")
    if (channel == "02") != song:
        return None
    return Utterance(
        path=path,
        corpus=NAME,
        speaker=actor,
        label=canonical(NAME, emotion),
        original_label=emotion,
        gender="male" if int(actor) % 2 else "female",
        intensity=_INTENSITY[intensity],
        statement=statement,
        repetition=repetition,
        extra={"vocal_channel": "song" if channel == "02" else "speech"},
    )


def read(root: Path, *, song: bool = False, **_: object) -> Iterator[Utterance | Problem | str]:
    """Speech files by default; ``song=True`` reads the song files instead.

    The files of the other vocal channel are counted in a note, not silently dropped.
    """
    skipped = 0
    for path in iter_files(root):
        item = parse(path, song=song)
        if item is None:
            skipped += 1
        else:
            yield item
    if skipped:
        kind, how = ("speech", "without --song") if song else ("song", "with --song")
        yield f"RAVDESS {root}: {skipped} {kind} files skipped (read them {how})"


READER = Reader(NAME, "RAVDESS", detect, read)
