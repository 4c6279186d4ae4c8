"""Fetching corpora: download, verify, extract into the layout ``scan`` reads.

>>> download("ravdess", "~/corpora")        # doctest: +SKIP
PosixPath('/home/me/corpora/ravdess')

Corpora that cannot be fetched automatically (SAVEE needs registration, CREMA-D lives in
Git LFS) raise :class:`ManualDownload` with instructions; once you have their archive,
``download(name, to, source="AudioData.zip")`` extracts it the same way.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ser.errors import SerError

#: Called as progress(bytes_done, bytes_total_or_None) while downloading.
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Source:
    """Where a corpus comes from. ``md5``/``size`` only where the publisher states them."""

    name: str
    title: str
    url: str | None
    folder: str
    licence: str
    md5: str | None = None
    size: int | None = None
    manual: str | None = None  # instructions when there is no direct download
    note: str | None = None


SOURCES: dict[str, Source] = {
    "ravdess": Source(
        "ravdess", "RAVDESS (speech, audio-only, 24 actors)",
        "https://zenodo.org/records/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        "ravdess", "CC BY-NC-SA 4.0 (Livingstone & Russo 2018, doi:10.5281/zenodo.1188976)",
        # As listed on the Zenodo record 1188976.
        md5="bc696df654c87fed845eb13823edef8a", size=208_468_073,
    ),
    "tess": Source(
        "tess", "Toronto emotional speech set (TESS)",
        "https://borealisdata.ca/api/access/dataset/:persistentId/"
        "?persistentId=doi:10.5683/SP2/E8H2MF",
        "tess", "CC BY-NC-ND 4.0 (Pichora-Fuller & Dupuis 2020, doi:10.5683/SP2/E8H2MF)",
        note="Borealis (Dataverse) zips the whole dataset; it may cap the zip size, in which "
        "case MANIFEST.TXT in the download lists the files left out.",
    ),
    "emodb": Source(
        "emodb", "Berlin Database of Emotional Speech (EmoDB)",
        "http://emodb.bilderbar.info/download/download.zip",
        "emodb", "free for research (Burkhardt et al. 2005)",
    ),
    "crema-d": Source(
        "crema-d", "CREMA-D (7442 clips, 91 actors)", None, "crema-d",
        "Open Database License (Cao et al. 2014)",
        manual=(
            "CREMA-D's audio is stored with Git LFS on GitHub, so there is no single archive "
            "to fetch. With git-lfs installed:\n"
            "  GIT_LFS_SKIP_SMUDGE=1 git clone https://github.com/CheyneyComputerScience/CREMA-D.git\n"
            "  cd CREMA-D && git lfs pull --include 'AudioWAV/*'\n"
            "then: ser data scan CREMA-D/AudioWAV   (or pass a zip of AudioWAV with --from)"
        ),
    ),
    "savee": Source(
        "savee", "Surrey Audio-Visual Expressed Emotion (SAVEE)", None, "savee",
        "free for research use; do not redistribute (Haq & Jackson, University of Surrey)",
        manual=(
            "SAVEE is free for research but not openly downloadable: register on the SAVEE "
            "page of the University of Surrey (http://kahlan.eps.surrey.ac.uk/savee/) to get "
            "the download link, fetch AudioData.zip, then:\n"
            "  ser data download savee --to DIR --from AudioData.zip\n"
            "(ser reads both AudioData/DC/a01.wav and the flat DC_a01.wav layout)"
        ),
    ),
}
_ALIASES = {"cremad": "crema-d", "crema": "crema-d", "emo-db": "emodb", "berlin": "emodb"}


class ManualDownload(SerError):
    """The corpus must be fetched by hand; the message says how."""


def get_source(name: str) -> Source:
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in SOURCES:
        raise SerError(f"no download for {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[key]


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: Path, progress: Progress | None = None, timeout: float = 30) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` via a ``.part`` file."""
    part = dest.with_name(dest.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "ser (speech emotion)"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(part, "wb") as f:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while block := response.read(1 << 16):
                f.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise SerError(
            f"cannot download {url}: {reason} (offline? fetch the archive by hand and pass it "
            "with --from FILE)"
        ) from exc
    part.replace(dest)
    return dest


def _safe_target(root: Path, name: str) -> Path:
    # Refuse archive members that would land outside the target (absolute, "..").
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise SerError(f"refusing unsafe path in archive: {name}")
    return root / pure


def extract(archive: Path, target: Path) -> Path:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                _safe_target(target, member.filename)
            zf.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            for member in tf.getmembers():
                _safe_target(target, member.name)
                if member.issym() or member.islnk():
                    raise SerError(f"refusing link in archive: {member.name}")
            tf.extractall(target, filter="data")
    else:
        raise SerError(f"{archive}: not a zip or tar archive")
    return target


def download(
    name: str,
    to: str | Path,
    *,
    url: str | None = None,
    source: str | Path | None = None,
    progress: Progress | None = None,
    keep_archive: bool = False,
) -> Path:
    """Fetch corpus ``name`` into ``to/<name>/`` and return that folder.

    ``source`` is an archive already on disk (skips the download); ``url`` overrides the
    known address. The MD5 is checked when the publisher gives one (not for ``source``
    or an overridden ``url``, which may be a different packaging).
    """
    src = get_source(name)
    to = Path(to).expanduser()
    target = to / src.folder
    if source is not None:
        archive = Path(source).expanduser()
        if not archive.is_file():
            raise SerError(f"{archive}: no such archive")
        extract(archive, target)
        return target
    address = url or src.url
    if address is None:
        raise ManualDownload(f"{src.title} cannot be downloaded automatically.\n{src.manual}")
    to.mkdir(parents=True, exist_ok=True)
    archive = to / f"{src.folder}-download"
    fetch(address, archive, progress)
    if url is None and src.md5 is not None:
        actual = md5sum(archive)
        if actual != src.md5:
            archive.unlink()
            raise SerError(
                f"{src.title}: checksum mismatch (md5 {actual}, expected {src.md5}); the "
                "download is damaged or the file changed upstream"
            )
    try:
        extract(archive, target)
    finally:
        if not keep_archive:
            archive.unlink(missing_ok=True)
    return target

