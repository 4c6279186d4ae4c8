"""`ser data`: what is in a folder of corpora, and how to get corpora."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from ser.cli import app, console
from ser.errors import SerError
from ser.labels import ALL, parse_label_set

data_app = typer.Typer(
    help="Scan and download emotional-speech corpora.\n\n"
    "Example:  ser data scan ~/corpora   (then: ser data scan ~/corpora --out manifest.csv)",
    no_args_is_help=True)
app.add_typer(data_app, name="data")

#: Above this many speakers the per-speaker table is left out unless asked for.
_MAX_SPEAKER_ROWS = 40
_MAX_PROBLEM_ROWS = 15


def _summary(result, labels: tuple[str, ...], seconds: float) -> dict:
    """Everything the tables show, as plain JSON-able data."""
    counts: dict[str, Counter] = defaultdict(Counter)
    dropped: dict[str, Counter] = defaultdict(Counter)
    speakers: dict[str, dict] = {}
    for u in result.utterances:
        counts[u.corpus][u.label] += 1
        s = speakers.setdefault(u.speaker_id, {
            "corpus": u.corpus, "speaker": u.speaker, "gender": u.gender,
            "count": 0, "labels": Counter(),
        })
        s["count"] += 1
        s["labels"][u.label] += 1
    for u in result.dropped:
        dropped[u.corpus][u.label] += 1
    problems_by: Counter = Counter(p.corpus or "-" for p in result.problems)
    names = sorted(set(counts) | set(dropped) | {p.corpus for p in result.problems if p.corpus})
    corpora = []
    for name in names:
        spk = [s for s in speakers.values() if s["corpus"] == name]
        corpora.append({
            "corpus": name,
            "utterances": sum(counts[name].values()),
            "speakers": len(spk),
            "genders": dict(Counter(s["gender"] or "unknown" for s in spk)),
            "dropped": sum(dropped[name].values()),
            "problems": problems_by.get(name, 0),
        })
    return {
        "labels": list(labels),
        "total": len(result.utterances),
        "corpora": corpora,
        "counts": {c: {lab: counts[c][lab] for lab in ALL if counts[c][lab]} for c in names},
        "dropped": {c: {lab: dropped[c][lab] for lab in ALL if dropped[c][lab]} for c in names
                    if dropped[c]},
        "speakers": {
            sid: {**s, "labels": {lab: s["labels"][lab] for lab in ALL if s["labels"][lab]}}
            for sid, s in sorted(speakers.items())
        },
        "problems": [
            {"path": str(p.path), "corpus": p.corpus, "reason": p.reason}
            for p in result.problems
        ],
        "notes": result.notes,
        "roots": [{"reader": r, "path": str(p)} for r, p in result.roots],
        "seconds": round(seconds, 3),
    }


def _print_tables(s: dict, show_speakers: bool | None) -> None:
    names = [c["corpus"] for c in s["corpora"]]
    found = ", ".join(f"{r['reader']} at {r['path']}" for r in s["roots"])
    console.print(f"[bold]Found:[/] {found}")

    t = Table(title="Corpora", title_justify="left")
    for col in ("corpus", "utterances", "speakers", "gender (speakers)", "dropped", "problems"):
        t.add_column(col, justify="left" if col in ("corpus", "gender (speakers)") else "right")
    for c in s["corpora"]:
        genders = " ".join(f"{g} {n}" for g, n in sorted(c["genders"].items()))
        t.add_row(c["corpus"], str(c["utterances"]), str(c["speakers"]), genders,
                  str(c["dropped"]), str(c["problems"]))
    console.print(t)

    t = Table(title="Utterances per label", title_justify="left")
    t.add_column("label")
    for name in names:
        t.add_column(name, justify="right")
    t.add_column("total", justify="right", style="bold")
    for lab in s["labels"]:
        row = [s["counts"].get(n, {}).get(lab, 0) for n in names]
        t.add_row(lab, *map(str, row), str(sum(row)))
    dropped_labels = [lab for lab in ALL if any(lab in d for d in s["dropped"].values())]
    for lab in dropped_labels:
        row = [s["dropped"].get(n, {}).get(lab, 0) for n in names]
        t.add_row(f"{lab} (dropped)", *map(str, row), str(sum(row)), style="dim")
    console.print(t)

    speakers = s["speakers"]
    if show_speakers or (show_speakers is None and len(speakers) <= _MAX_SPEAKER_ROWS):
        t = Table(title="Speakers", title_justify="left")
        t.add_column("speaker", no_wrap=True)
        t.add_column("gender")
        t.add_column("total", justify="right", style="bold")
        for lab in s["labels"]:
            t.add_column(lab, justify="right")
        for sid, info in speakers.items():
            t.add_row(sid, info["gender"] or "?", str(info["count"]),
                      *(str(info["labels"].get(lab, 0)) for lab in s["labels"]))
        console.print(t)
    else:
        console.print(f"{len(speakers)} speakers (show them with --speakers)")

    problems = s["problems"]
    if problems:
        t = Table(title=f"Problems ({len(problems)} files not used)", title_justify="left")
        t.add_column("corpus", no_wrap=True)
        t.add_column("file", overflow="fold")
        t.add_column("reason", style="yellow")
        for p in problems[:_MAX_PROBLEM_ROWS]:
            t.add_row(p["corpus"] or "-", escape(p["path"]), escape(p["reason"]))
        if len(problems) > _MAX_PROBLEM_ROWS:
            t.add_row("…", f"{len(problems) - _MAX_PROBLEM_ROWS} more (see --json)", "")
        console.print(t)
    for note in s["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    console.print(
        f"[bold]{s['total']}[/] utterances from {sum(c['speakers'] for c in s['corpora'])} "
        f"speakers, {sum(c['dropped'] for c in s['corpora'])} dropped by the label set, "
        f"{len(problems)} problems; scanned in {s['seconds']:.2f} s"
    )


@data_app.command("scan")
def scan_cmd(
    paths: Annotated[
        list[Path], typer.Argument(help="Folders of corpora, or .csv/.parquet manifests.")
    ],
    corpus: Annotated[list[str] | None, typer.Option(
        "--corpus", "-c",
        help="Only these corpora (repeatable): ravdess crema-d tess savee emodb folders manifest.",
    )] = None,
    labels: Annotated[str, typer.Option(
        "--labels", "-l",
        help="Label set: default (the six), all, or a comma list such as angry,sad,calm.",
    )] = "default",
    song: Annotated[
        bool, typer.Option("--song", help="Read RAVDESS song files instead of speech.")
    ] = False,
    speakers: Annotated[bool | None, typer.Option(
        "--speakers/--no-speakers", help="Show the per-speaker table (default: if short)."
    )] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of tables.")
    ] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write the manifest of usable utterances (.csv or .parquet)."
    )] = None,
) -> None:
    """Find corpora under PATHS and show corpora, speakers, labels and problems.

    Only file names are read (no audio is decoded), so this is quick on thousands of files.

    Examples:

        ser data scan ~/corpora

        ser data scan ~/corpora --labels all --out manifest.csv

        ser data scan ravdess/ --corpus ravdess --json
    """
    from ser.corpora import scan, write_manifest

    try:
        label_set = parse_label_set(labels)
    except ValueError as exc:
        raise SerError(str(exc)) from exc
    start = time.perf_counter()
    result = scan(paths, corpora=corpus or None, labels=label_set, song=song)
    seconds = time.perf_counter() - start
    if not result.utterances:
        where = ", ".join(map(str, paths))
        detail = (
            f"{len(result.dropped)} files outside the label set ({labels}), "
            f"{len(result.problems)} unusable files"
            if result.dropped or result.problems else "no recognised corpus"
        )
        raise SerError(f"no usable data in {where}: {detail}")
    summary = _summary(result, label_set, seconds)
    if out is not None:
        write_manifest(result.utterances, out)
        summary["manifest"] = str(out)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    _print_tables(summary, speakers)
    if out is not None:
        console.print(f"manifest: {escape(str(out))} ({len(result.utterances)} rows)")


@data_app.command("download")
def download_cmd(
    name: Annotated[str, typer.Argument(help="ravdess, tess, emodb, crema-d or savee.")],
    to: Annotated[
        Path, typer.Option("--to", help="Folder to put the corpus in (as TO/NAME/).")
    ],
    source: Annotated[Path | None, typer.Option(
        "--from", help="An archive you already downloaded (zip or tar): just extract it."
    )] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="Fetch from this address instead (a mirror)."
    )] = None,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="Keep the downloaded archive.")
    ] = False,
) -> None:
    """Download a corpus, verify its checksum where one is published, and extract it.

    SAVEE (registration) and CREMA-D (Git LFS) cannot be fetched automatically; the command
    says how to get them, and --from extracts the archive once you have it.

    Examples:

        ser data download ravdess --to ~/corpora

        ser data download savee --to ~/corpora --from AudioData.zip
    """
    from ser.corpora import scan
    from ser.corpora.download import download, get_source

    src = get_source(name)
    start = time.perf_counter()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(src.name, total=src.size)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total or src.size)

        target = download(src.name, to, url=url, source=source, progress=progress,
                          keep_archive=keep_archive)
    seconds = time.perf_counter() - start
    result = scan(target, corpora=[src.name], labels=ALL)
    console.print(
        f"{src.title}: {len(result.utterances)} utterances, "
        f"{len({u.speaker for u in result.utterances})} speakers, "
        f"{len(result.problems)} problems in {target} ({seconds:.1f} s)"
    )
    console.print(f"licence: {src.licence}")
    if src.note:
        console.print(f"[yellow]note:[/] {src.note}")
