"""Canonical emotion labels and each corpus's mapping onto them.

This module is the one place where a corpus label becomes a canonical one.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The seed's six emotions: the default label set, in this order everywhere.
CANONICAL: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad")

#: Labels some corpora carry beyond the six; dropped unless asked for.
EXTRA: tuple[str, ...] = ("calm", "surprise", "boredom")

ALL: tuple[str, ...] = CANONICAL + EXTRA

#: corpus -> {original label code -> canonical label}
CORPUS_LABELS: dict[str, dict[str, str]] = {
    "ravdess": {
        "01": "neutral", "02": "calm", "03": "happy", "04": "sad",
        "05": "angry", "06": "fear", "07": "disgust", "08": "surprise",
    },
    "crema-d": {
        "ANG": "angry", "DIS": "disgust", "FEA": "fear",
        "HAP": "happy", "NEU": "neutral", "SAD": "sad",
    },
    # TESS folder/file words, lower-cased, as spelled in real copies.
    "tess": {
        "angry": "angry", "anger": "angry", "disgust": "disgust", "fear": "fear",
        "happy": "happy", "neutral": "neutral", "sad": "sad",
        "ps": "surprise", "pleasant_surprise": "surprise",
        "pleasant_surprised": "surprise", "surprise": "surprise", "surprised": "surprise",
    },
    "savee": {
        "a": "angry", "d": "disgust", "f": "fear", "h": "happy",
        "n": "neutral", "sa": "sad", "su": "surprise",
    },
    # EmoDB letters are German: Wut, Ekel, Angst, Freude, Neutral, Trauer, Langeweile.
    "emodb": {
        "W": "angry", "E": "disgust", "A": "fear", "F": "happy",
        "N": "neutral", "T": "sad", "L": "boredom",
    },
}

#: Free-form names (folder-per-label trees, CSV manifests) -> canonical label.
SYNONYMS: dict[str, str] = {
    "angry": "angry", "anger": "angry", "ang": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust", "dis": "disgust",
    "fear": "fear", "fearful": "fear", "fea": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "hap": "happy", "joy": "happy",
    "neutral": "neutral", "neu": "neutral",
    "sad": "sad", "sadness": "sad",
    "calm": "calm",
    "surprise": "surprise", "surprised": "surprise", "sur": "surprise",
    "pleasant_surprise": "surprise", "pleasant_surprised": "surprise", "ps": "surprise",
    "boredom": "boredom", "bored": "boredom",
}


def canonical(corpus: str, original: str) -> str | None:
    """Canonical label for a corpus's own label code, or None if it has none."""
    table = CORPUS_LABELS.get(corpus)
    if table is not None:
        hit = table.get(original)
        if hit is None and corpus == "tess":
            hit = table.get(original.lower())
        if hit is not None:
            return hit
    return SYNONYMS.get(original.strip().lower().replace(" ", "_").replace("-", "_"))


def parse_label_set(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """The label set a user asked for.

    ``None`` or ``"default"`` gives the six canonical emotions, ``"all"`` every label ser
    knows, and a comma-separated string or a list picks labels explicitly (kept in
    canonical order).

    >>> parse_label_set("sad,angry")
    ('angry', 'sad')
    """
    if spec is None or spec == "default":
        return CANONICAL
    if spec == "all":
        return ALL
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = set()
    for name in names:
        name = name.strip()
        if not name:
            continue
        label = SYNONYMS.get(name.lower())
        if label is None:
            raise ValueError(f"unknown label {name!r}; known labels: {', '.join(ALL)}")
        wanted.add(label)
    if not wanted:
        raise ValueError("empty label set")
    return tuple(label for label in ALL if label in wanted)
