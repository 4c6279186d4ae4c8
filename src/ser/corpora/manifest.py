"""CSV (or parquet) manifests: one row per clip, columns ``path,label[,speaker]``.

Relative paths are relative to the manifest's folder. Any other
:meth:`~ser.corpora.base.Utterance.to_row` column (corpus, original_label, gender,
intensity, statement, repetition) is read when present, so a manifest written by
:func:`ser.corpora.write_manifest` reads back unchanged. Rows without a speaker become
their own speaker, and the scan says so.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from ser.audio import is_audio
from ser.corpora.base import Problem, Reader, Utterance
from ser.errors import SerError
from ser.labels import ALL, canonical

NAME = "manifest"
#: Column names other tools use, accepted as aliases.
_ALIASES = {
    "path": ("path", "file", "filename", "filepath", "file_path", "audio", "wav"),
    "label": ("label", "emotion"),
}
_OPTIONAL = ("speaker", "corpus", "original_label", "gender", "intensity", "statement",
             "repetition")


def is_manifest(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in (".csv", ".parquet")


def detect(folder: Path) -> bool:
    # A manifest is a file, given explicitly; folders are never manifests.
    return False


def _frame(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path).astype(object)
            return df.where(df.notna(), "").astype(str)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise SerError(f"{path}: cannot read manifest ({exc})") from exc


def _column(df: pd.DataFrame, name: str, path: Path) -> str:
    lower = {c.strip().lower(): c for c in df.columns}
    for alias in _ALIASES[name]:
        if alias in lower:
            return lower[alias]
    raise SerError(
        f"{path}: manifest needs a {name!r} column (columns: {', '.join(map(str, df.columns))})"
    )


def read(root: Path, **_: object) -> Iterator[Utterance | Problem | str]:
    """Rows of the manifest ``root`` (a .csv or .parquet file)."""
    if not is_manifest(root):
        raise SerError(f"{root}: a manifest must be a .csv or .parquet file")
    df = _frame(root)
    path_col, label_col = _column(df, "path", root), _column(df, "label", root)
    default_corpus = re.sub(r"[^a-z0-9]+", "-", root.stem.lower()).strip("-") or NAME
    anonymous = 0
    for row in df.to_dict("records"):
        value = {k: (str(row[k]).strip() if k in row else "") for k in _OPTIONAL}
        corpus = value["corpus"] or default_corpus
        path = Path(row[path_col].strip())
        if not path.is_absolute():
            path = root.parent / path
        if not path.is_file():
            yield Problem(path, corpus, f"listed in {root.name} but missing")
            continue
        if not is_audio(path):
            yield Problem(path, corpus, f"not an audio file ({path.suffix or 'no extension'})")
            continue
        text = row[label_col].strip()
        label = text if text in ALL else canonical(corpus, text)
        if label is None:
            yield Problem(path, corpus, f"unknown label {text!r}")
            continue
        speaker = value["speaker"]
        if not speaker:
            speaker = path.stem
            anonymous += 1
        yield Utterance(
            path=path,
            corpus=corpus,
            speaker=speaker,
            label=label,
            original_label=value["original_label"] or text,
            gender=value["gender"] or None,
            intensity=value["intensity"] or None,
            statement=value["statement"] or None,
            repetition=value["repetition"] or None,
        )
    if anonymous:
        yield (
            f"{root}: {anonymous} rows have no speaker; each counts as its own speaker, so "
            "speaker-independent splits cannot be guaranteed (add a speaker column)"
        )


READER = Reader(NAME, "manifest", detect, read)
