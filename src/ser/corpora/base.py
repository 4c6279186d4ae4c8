"""The utterance record every corpus reader produces."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Utterance:
    """One labelled clip.

    ``speaker`` is the corpus's own id (``"01"`` for RAVDESS actor 1); ``speaker_id``
    qualifies it with the corpus so speakers never collide when corpora are merged.
    ``label`` is canonical (see :mod:`ser.labels`); ``original_label`` is what the
    corpus itself calls it.
    """

    path: Path
    corpus: str
    speaker: str
    label: str
    original_label: str
    gender: str | None = None
    intensity: str | None = None
    statement: str | None = None
    repetition: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def speaker_id(self) -> str:
        return f"{self.corpus}:{self.speaker}"

    def to_row(self) -> dict:
        row = asdict(self)
        row.pop("extra")
        row["path"] = str(self.path)
        row["speaker_id"] = self.speaker_id
        return row


@dataclass(frozen=True)
class Problem:
    """A file a reader could not place: reported, never silently dropped."""

    path: Path
    corpus: str | None
    reason: str


def is_hidden(path: Path) -> bool:
    # .DS_Store, AppleDouble "._x.wav" files, .git …: never data.
    return path.name.startswith(".")


def iter_files(root: Path) -> Iterator[Path]:
    """Every non-hidden file under ``root``, in a stable (sorted) order, without opening any.

    Symlinked folders are followed (corpora are often linked in from elsewhere); a folder
    reached twice (a link loop, or two links to one place) is read once.
    """
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def at_least_two(folder: Path, fits: Callable[[Path], object]) -> bool:
    """True when two or more entries of ``folder`` fit a corpus's naming (cheap detection)."""
    hits = 0
    for p in folder.iterdir():
        if fits(p):
            hits += 1
            if hits >= 2:
                return True
    return False


def not_audio(path: Path, corpus: str) -> Problem:
    return Problem(path, corpus, f"not an audio file ({path.suffix or 'no extension'})")


@dataclass(frozen=True)
class Reader:
    """A corpus reader: how to recognise a corpus root and how to list its utterances.

    ``detect(folder)`` looks only at names (cheap); ``read(root, **options)`` yields one
    :class:`Utterance` or :class:`Problem` per file under ``root`` (plus, rarely, a ``str``
    note for the scan summary, e.g. files deliberately skipped) and never decodes audio.
    """

    name: str
    title: str
    detect: Callable[[Path], bool]
    read: Callable[..., Iterator[Utterance | Problem | str]]
