"""Corpus readers, autodetection and the merged manifest.

>>> from ser.corpora import scan
>>> result = scan(["~/corpora"])                       # doctest: +SKIP
>>> len(result.utterances), len(result.dropped), len(result.problems)   # doctest: +SKIP
(3940, 760, 0)

``scan`` finds every corpus under the given folders (a folder may hold several, e.g.
``ravdess/ tess/ savee/``), reads file names only (no audio is decoded), and sorts each file
into ``utterances`` (label in the requested set), ``dropped`` (well-formed, label outside the
set, e.g. calm) or ``problems`` (fits no naming scheme). A ``.csv``/``.parquet`` path is read
as a manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ser.audio import is_audio
from ser.corpora import cremad, emodb, folders, manifest, ravdess, savee, tess
from ser.corpora.base import Problem, Reader, Utterance
from ser.errors import SerError
from ser.labels import CANONICAL

__all__ = [
    "READERS", "Problem", "Reader", "ScanResult", "Utterance", "get_reader", "manifest_frame",
    "read_manifest", "scan", "write_manifest",
]

#: Registry, in detection priority order (the catch-all label-folder reader comes last).
READERS: dict[str, Reader] = {
    r.name: r
    for r in (ravdess.READER, cremad.READER, tess.READER, savee.READER, emodb.READER,
              folders.READER, manifest.READER)
}
_ALIASES = {"cremad": "crema-d", "crema": "crema-d", "emo-db": "emodb", "berlin": "emodb",
            "folder": "folders", "csv": "manifest"}
#: How deep below a given path autodetection looks for corpus roots.
MAX_DEPTH = 4


def get_reader(name: str) -> Reader:
    """The reader registered under ``name`` (case-insensitive, a few aliases)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in READERS:
        raise SerError(f"unknown corpus {name!r}; known: {', '.join(READERS)}")
    return READERS[key]


@dataclass
class ScanResult:
    """What :func:`scan` found. ``roots`` lists ``(reader name, folder)`` per corpus found;
    ``notes`` are remarks for the user (skipped files, unknown speakers)."""

    utterances: list[Utterance]
    dropped: list[Utterance]
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    roots: list[tuple[str, Path]] = field(default_factory=list)

    def frame(self) -> pd.DataFrame:
        return manifest_frame(self.utterances)


def _find_roots(
    folder: Path, readers: Sequence[Reader], depth: int, loose: list[Problem]
) -> list[tuple[Reader, Path]]:
    for reader in readers:
        if reader.detect(folder):
            return [(reader, folder)]
    if depth <= 0:
        return []
    found: list[tuple[Reader, Path]] = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_dir():
            found += _find_roots(child, readers, depth - 1, loose)
        elif is_audio(child):
            loose.append(Problem(child, None, "audio file outside any recognised corpus"))
    return found


def _roots(
    path: Path, readers: Sequence[Reader], forced: bool, loose: list[Problem]
) -> list[tuple[Reader, Path]]:
    if manifest.is_manifest(path):
        return [(manifest.READER, path)]
    if path.is_file():
        raise SerError(f"{path}: give a folder of corpora or a .csv/.parquet manifest")
    if not path.is_dir():
        raise SerError(f"{path}: no such folder")
    candidates = [r for r in readers if r is not manifest.READER]
    found = _find_roots(path, candidates, MAX_DEPTH, loose)
    if not found and forced and len(candidates) == 1:
        # The user named the corpus: read the folder as that corpus even if its layout is
        # unusual; files that do not fit come back as problems.
        loose.clear()
        found = [(candidates[0], path)]
    return found


def scan(
    paths: str | Path | Iterable[str | Path],
    corpora: Iterable[str] | None = None,
    labels: Sequence[str] = CANONICAL,
    *,
    song: bool = False,
) -> ScanResult:
    """Find and read every corpus under ``paths``.

    ``corpora`` restricts (and forces) the readers, e.g. ``["ravdess"]``; by default all are
    tried. ``labels`` is the label set (see :func:`ser.labels.parse_label_set`); ``song``
    reads RAVDESS song files instead of speech. Raises SerError for a path that does not
    exist; an empty result is not an error here (the CLI decides).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    forced = corpora is not None
    readers = [get_reader(n) for n in corpora] if corpora is not None else list(READERS.values())
    wanted = set(labels)
    result = ScanResult([], [], [])
    seen: dict[Path, Utterance] = {}
    reported: set[tuple[Path, str]] = set()
    for raw in paths:
        path = Path(raw).expanduser()
        loose: list[Problem] = []
        for reader, root in _roots(path, readers, forced, loose):
            result.roots.append((reader.name, root))
            for item in reader.read(root, song=song):
                if isinstance(item, str):
                    result.notes.append(item)
                    continue
                key = item.path.resolve()
                if isinstance(item, Problem):
                    if (key, item.reason) not in reported:  # overlapping paths: report once
                        reported.add((key, item.reason))
                        result.problems.append(item)
                    continue
                first = seen.setdefault(key, item)
                if first is not item:
                    # The same file reached twice (overlapping paths, or a manifest listing
                    # it again): keep the first, and flag a conflicting label.
                    if first.label != item.label:
                        result.problems.append(Problem(
                            item.path, item.corpus,
                            f"already listed as {first.label}, here as {item.label}"))
                    continue
                if item.label in wanted:
                    result.utterances.append(item)
                else:
                    result.dropped.append(item)
        for problem in loose:
            if (problem.path.resolve(), problem.reason) not in reported:
                reported.add((problem.path.resolve(), problem.reason))
                result.problems.append(problem)
    return result


# ---------------------------------------------------------------------------- manifests

def manifest_frame(utterances: Iterable[Utterance]) -> pd.DataFrame:
    """One row per utterance, columns = :meth:`Utterance.to_row` (path as a string)."""
    rows = [u.to_row() for u in utterances]
    columns = list(Utterance.__dataclass_fields__)
    columns.remove("extra")
    columns.append("speaker_id")
    return pd.DataFrame(rows, columns=columns)


def write_manifest(utterances: Iterable[Utterance], path: str | Path) -> Path:
    """Write a manifest as .csv or .parquet (chosen by the extension)."""
    path = Path(path)
    df = manifest_frame(utterances)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise SerError(f"{path}: manifest must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return path


def read_manifest(path: str | Path) -> list[Utterance]:
    """Utterances from a manifest (.csv or .parquet); SerError if any row is unusable."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise SerError(f"{path}: no such manifest")
    utterances, problems = [], []
    for item in manifest.read(path):
        if isinstance(item, Utterance):
            utterances.append(item)
        elif isinstance(item, Problem):
            problems.append(item)
    if problems:
        first = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        raise SerError(f"{path}: {len(problems)} unusable rows, e.g. {first}")
    return utterances
