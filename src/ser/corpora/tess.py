"""TESS: ``OAF_angry/OAF_back_angry.<ext>`` … ``YAF_sad/YAF_youth_sad.<ext>``.

Real copies spell the folders inconsistently (``OAF_Fear``, ``OAF_Pleasant_surprise``,
``YAF_pleasant_surprised``) and name the surprise files ``*_ps``; one file is
``OAF_neutral/OA_bite_neutral``. Both speakers are female: OAF (older), YAF (younger).
The flat layout (all files in one folder, as on some mirrors) reads the same way.
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
from ser.labels import canonical

NAME = "tess"
_FOLDER = re.compile(r"^(OAF|YAF)_(.+)$", re.IGNORECASE)
# speaker prefix (OA/OAF/YA/YAF), the spoken word, the emotion word (may contain "_").
_FILE = re.compile(r"^(OAF?|YAF?)_([A-Za-z]+)_(.+)$", re.IGNORECASE)


def _speaker(prefix: str) -> str:
    return prefix.upper()[:2] + "F"


def detect(folder: Path) -> bool:
    """A TESS root holds ``OAF_*``/``YAF_*`` folders or (flat) ``OAF_word_emotion`` files."""
    return at_least_two(
        folder,
        lambda p: (p.is_dir() and _FOLDER.match(p.name)) or (p.is_file() and _FILE.match(p.stem)),
    )


def parse(path: Path) -> Utterance | Problem:
    if not is_audio(path):
        return not_audio(path, NAME)
    m = _FILE.match(path.stem)
    if m is None:
        return Problem(path, NAME, "name does not match OAF_word_emotion / YAF_word_emotion")
    prefix, word, emotion = m.groups()
    label = canonical(NAME, emotion.lower())
    if label is None:
        return Problem(path, NAME, f"unknown emotion {emotion!r}")
    speaker = _speaker(prefix)
    folder = _FOLDER.match(path.parent.name)
    if folder is not None:
        folder_label = canonical(NAME, folder.group(2).lower())
        if folder_label != label:
            return Problem(path, NAME, f"emotion {emotion!r} but folder {path.parent.name}")
        if _speaker(folder.group(1)) != speaker:
            return Problem(path, NAME, f"speaker {prefix} but folder {path.parent.name}")
    return Utterance(
        path=path,
        corpus=NAME,
        speaker=speaker,
        label=label,
        original_label=emotion.lower(),
        gender="female",
        statement=word.lower(),
    )


def read(root: Path, **_: object) -> Iterator[Utterance | Problem]:
    for path in iter_files(root):
        yield parse(path)


READER = Reader(NAME, "TESS", detect, read)
