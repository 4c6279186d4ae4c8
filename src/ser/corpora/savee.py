"""SAVEE: ``AudioData/DC/a01.<ext>`` (original) or ``DC_a01.<ext>`` in one folder.

Codes: a anger, d disgust, f fear, h happiness, n neutral, sa sadness, su surprise; the
number is the sentence. Speakers DC, JE, JK, KL, all male.
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

NAME = "savee"
SPEAKERS = ("DC", "JE", "JK", "KL")
_FLAT = re.compile(r"^([A-Z]{2})_([a-z]{1,2})(\d\d)$")
_NESTED = re.compile(r"^([a-z]{1,2})(\d\d)$")


def detect(folder: Path) -> bool:
    """A SAVEE root holds ``AudioData/``, speaker folders, or ``DC_a01`` files."""
    if (folder / "AudioData").is_dir():
        return True

    def fits(p: Path) -> bool:
        flat = p.is_file() and _FLAT.match(p.stem)
        return (p.is_dir() and p.name in SPEAKERS) or bool(flat and flat.group(1) in SPEAKERS)

    if folder.name == "AudioData":  # the original layout's own folder: one speaker suffices
        return any(fits(p) for p in folder.iterdir())
    return at_least_two(folder, fits)


def parse(path: Path) -> Utterance | Problem:
    if not is_audio(path):
        return not_audio(path, NAME)
    flat = _FLAT.match(path.stem)
    nested = _NESTED.match(path.stem)
    if flat is not None:
        speaker, code, number = flat.groups()
    elif nested is not None and path.parent.name in SPEAKERS:
        speaker, (code, number) = path.parent.name, nested.groups()
    else:
        return Problem(path, NAME, "name does not match SPEAKER_code01 or SPEAKER/code01")
    if speaker not in SPEAKERS:
        return Problem(path, NAME, f"unknown speaker {speaker} (SAVEE has {', '.join(SPEAKERS)})")
    if code not in CORPUS_LABELS[NAME]:
        return Problem(path, NAME, f"unknown emotion code {code!r}")
    return Utterance(
        path=path,
        corpus=NAME,
        speaker=speaker,
        label=canonical(NAME, code),
        original_label=code,
        gender="male",
        statement=number,
    )


def read(root: Path, **_: object) -> Iterator[Utterance | Problem]:
    for path in iter_files(root):
        yield parse(path)


READER = Reader(NAME, "SAVEE", detect, read)
