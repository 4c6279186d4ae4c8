"""The utterance record every corpus reader produces."""

from __future__ import annotations

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
