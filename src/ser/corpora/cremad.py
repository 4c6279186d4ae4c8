"""CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.<ext>`` (actor, sentence, emotion, level).

Gender is not in the file name (it is in the corpus's VideoDemographics.csv), so it is
left None.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ser.audio import is_audio
from ser.corpora.base import (
    Problem,
    Reader,
    Utterance,
    at_least_two,
    iter_files,
    not_audio,
)
from ser.labels import CORPUS_LABELS, canonical

NAME = "crema-d"
_FILE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_LEVEL = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


def detect(folder: Path) -> bool:
    """A CREMA-D root holds ``AudioWAV/`` or is full of ``1001_DFA_ANG_XX`` files."""
    if (folder / "AudioWAV").is_dir():
        return True
    return at_least_two(folder, lambda p: p.is_file() and _FILE.match(p.stem))


def parse(path: Path) -> Utterance | Problem:
    if not is_audio(path):
        return not_audio(path, NAME)
    m = _FILE.match(path.stem)
    if m is None:
        return Problem(path, NAME, "name does not match ACTOR_SENTENCE_EMOTION_LEVEL")
    actor, sentence, emotion, level = m.groups()
    if emotion not in CORPUS_LABELS[NAME]:
        return Problem(path, NAME, f"unknown emotion code {emotion}")
    if level not in _LEVEL:
        return Problem(path, NAME, f"unknown emotion level {level}")
    return Utterance(
        path=path,
        corpus=NAME,
        speaker=actor,
        label=canonical(NAME, emotion),
        original_label=emotion,
        intensity=_LEVEL[level],
        statement=sentence,
    )


def read(root: Path, **_: object) -> Iterator[Utterance | Problem]:
    for path in iter_files(root):
        yield parse(path)


READER = Reader(NAME, "CREMA-D", detect, read)
