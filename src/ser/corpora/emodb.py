"""EmoDB (Berlin): ``wav/03a01Fa.<ext>``.

Name: speaker (2 digits), text code (letter + 2 digits), emotion letter (German initial:
W Wut/anger, L Langeweile/boredom, E Ekel/disgust, A Angst/fear, F Freude/happiness,
T Trauer/sadness, N neutral), version letter. Speaker genders from the EmoDB documentation.
The download also holds label folders (``lablaut``, ``silb`` …); only ``wav/`` is read.
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

NAME = "emodb"
_FILE = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z])$")
GENDER = {
    "03": "male", "08": "female", "09": "female", "10": "male", "11": "male",
    "12": "male", "13": "female", "14": "female", "15": "male", "16": "female",
}


def detect(folder: Path) -> bool:
    """An EmoDB root holds ``wav/`` with EmoDB names, or is such a folder itself."""
    wav = folder / "wav"
    where = wav if wav.is_dir() else folder
    return at_least_two(where, lambda p: p.is_file() and _FILE.match(p.stem))


def parse(path: Path) -> Utterance | Problem:
    if not is_audio(path):
        return not_audio(path, NAME)
    m = _FILE.match(path.stem)
    if m is None:
        return Problem(path, NAME, "name does not match SStttEv (e.g. 03a01Fa)")
    speaker, text, emotion, version = m.groups()
    if emotion not in CORPUS_LABELS[NAME]:
        return Problem(path, NAME, f"unknown emotion letter {emotion}")
    return Utterance(
        path=path,
        corpus=NAME,
        speaker=speaker,
        label=canonical(NAME, emotion),
        original_label=emotion,
        gender=GENDER.get(speaker),
        statement=text,
        repetition=version,
    )


def read(root: Path, **_: object) -> Iterator[Utterance | Problem]:
    wav = root / "wav"
    for path in iter_files(wav if wav.is_dir() else root):
        yield parse(path)


READER = Reader(NAME, "EmoDB", detect, read)
