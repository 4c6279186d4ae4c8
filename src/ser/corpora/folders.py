"""Any tree with one folder per label: ``ROOT/angry/x.wav``, ``ROOT/sad/y.wav`` …

Folder names are read through :data:`ser.labels.SYNONYMS` (``anger``, ``Happy``,
``pleasant_surprise`` …). The corpus is named after ``ROOT``'s folder name.

Speakers: ``ROOT/<label>/<speaker>/x.wav`` names them. Files directly in a label folder
have no known speaker; each becomes its own speaker (``<label>/<file stem>``) and the scan
says so in a note, because a speaker-independent split cannot be guaranteed for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ser.audio import is_audio
from ser.corpora.base import Problem, Reader, Utterance, iter_files, not_audio
from ser.labels import SYNONYMS, canonical

NAME = "folders"


def _label_name(name: str) -> str | None:
    return SYNONYMS.get(name.strip().lower().replace(" ", "_").replace("-", "_"))


def corpus_name(root: Path) -> str:
    """The corpus name for a label-per-folder tree: its folder name, slugged."""
    slug = re.sub(r"[^a-z0-9]+", "-", root.resolve().name.lower()).strip("-")
    return slug or NAME


def detect(folder: Path) -> bool:
    """Two or more label-named sub-folders (or only label-named ones)."""
    subdirs = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    labelled = sum(_label_name(p.name) is not None for p in subdirs)
    return labelled >= 2 or (labelled >= 1 and labelled == len(subdirs))


def read(root: Path, **_: object) -> Iterator[Utterance | Problem | str]:
    corpus = corpus_name(root)
    anonymous = 0
    for path in iter_files(root):
        if not is_audio(path):
            yield not_audio(path, corpus)
            continue
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            yield Problem(path, corpus, "audio file outside any label folder")
            continue
        label = _label_name(parts[0]) or canonical(corpus, parts[0])
        if label is None:
            yield Problem(path, corpus, f"folder {parts[0]!r} is not an emotion label")
            continue
        if len(parts) >= 3:
            speaker = parts[1]
        else:
            speaker = f"{parts[0]}/{path.stem}"
            anonymous += 1
        yield Utterance(path=path, corpus=corpus, speaker=speaker, label=label,
                        original_label=parts[0])
    if anonymous:
        yield (
            f"{corpus} ({root}): {anonymous} files have no speaker folder; each counts as its "
            "own speaker, so speaker-independent splits cannot be guaranteed "
            "(use LABEL/SPEAKER/file or a manifest with a speaker column)"
        )


READER = Reader(NAME, "label folders", detect, read)
