"""Metrics, plots and the human-readable report of a training or evaluation run.

The headline is UAR (unweighted average recall = macro recall) beside accuracy, with the
confusion matrix; mixtures also get UAR per corpus. Everything here takes plain label
strings, so a run, ``ser evaluate`` and the tests share one code path.

>>> m = compute_metrics(["sad", "sad", "angry"], ["sad", "angry", "angry"], ["angry", "sad"])
>>> round(m["uar"], 3), m["confusion_matrix"]
(0.75, [[1, 0], [1, 1]])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Licence of models trained on each corpus (a model inherits its data's terms).
CORPUS_LICENCES = {
    "ravdess": "CC BY-NC-SA 4.0 (Livingstone & Russo 2018)",
    "tess": "CC BY-NC-ND 4.0 (Pichora-Fuller & Dupuis 2020)",
    "savee": "research use only (University of Surrey, Haq & Jackson)",
    "crema-d": "Open Database License (Cao et al. 2014)",
    "emodb": "EmoDB terms (Burkhardt et al. 2005)",
}
NON_COMMERCIAL = {"ravdess", "tess", "savee"}


def licence_for(corpora: Sequence[str]) -> str:
    """One line naming the data licences a model trained on ``corpora`` inherits."""
    parts = [f"{c}: {CORPUS_LICENCES.get(c, 'user data — check its terms')}"
             for c in sorted(set(corpora))]
    prefix = "NON-COMMERCIAL use only — " if NON_COMMERCIAL & set(corpora) else ""
    return prefix + "trained on " + "; ".join(parts)


def compute_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str],
                    corpus: Sequence[str] | None = None) -> dict[str, Any]:
    """Accuracy, UAR, per-class precision/recall/F1/support, confusion matrix (rows = true
    label, columns = predicted, in ``labels`` order) and, given ``corpus``, per-corpus
    accuracy and UAR. UAR averages recall over the labels present in ``y_true``."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(labels)
    y_true = np.asarray(y_true, dtype=object)
    y_pred = np.asarray(y_pred, dtype=object)
    if len(y_true) == 0:
        raise ValueError("no test rows to score")
    present = [lab for lab in labels if (y_true == lab).any()]
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "n": int(len(y_true)),
        "accuracy": float((y_true == y_pred).mean()),
        "uar": float(np.mean([r[labels.index(lab)] for lab in present])),
        "macro_f1": float(np.mean([f[labels.index(lab)] for lab in present])),
        "labels": labels,
        "per_class": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, lab in enumerate(labels)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if corpus is not None:
        corpus = np.asarray(corpus, dtype=object)
        per = {}
        for name in sorted(set(corpus)):
            sel = corpus == name
            sub = compute_metrics(y_true[sel], y_pred[sel], labels)
            per[str(name)] = {"n": sub["n"], "accuracy": sub["accuracy"], "uar": sub["uar"]}
        out["per_corpus"] = per
    return out


def summarize_folds(fold_metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation of accuracy and UAR over folds."""
    acc = np.array([m["accuracy"] for m in fold_metrics])
    uar = np.array([m["uar"] for m in fold_metrics])
    out = {"folds": len(fold_metrics),
           "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std()),
           "uar_mean": float(uar.mean()), "uar_std": float(uar.std()),
           "per_fold": [{"accuracy": float(a), "uar": float(u)} for a, u in zip(acc, uar,
                                                                                strict=True)]}
    if all("ece" in m for m in fold_metrics):
        ece = np.array([m["ece"] for m in fold_metrics])
        out.update(ece_mean=float(ece.mean()), ece_std=float(ece.std()))
        if all("ece_floor" in m for m in fold_metrics):
            out["ece_floor_mean"] = float(np.mean([m["ece_floor"] for m in fold_metrics]))
        for row, e in zip(out["per_fold"], ece, strict=True):
            row["ece"] = float(e)
    return out


def classification_report_text(metrics: dict[str, Any]) -> str:
    lines = [f"{'label':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for lab, row in metrics["per_class"].items():
        lines.append(f"{lab:<10} {row['precision']:>9.3f} {row['recall']:>9.3f} "
                     f"{row['f1']:>9.3f} {row['support']:>8d}")
    lines.append(f"\naccuracy {metrics['accuracy']:.3f}   UAR {metrics['uar']:.3f}   "
                 f"macro-F1 {metrics['macro_f1']:.3f}   n={metrics['n']}")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    """Lay out, write (110 dpi) and close a report figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(metrics: dict[str, Any], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    labels = metrics["labels"]
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{norm[i, j]:.0%}\n{int(cm[i, j])}", ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (each row: % of that label, and count)")
    ax.set_title(title or f"UAR {metrics['uar']:.3f}  accuracy {metrics['accuracy']:.3f}")
    _save(fig, path)


def plot_curves(histories: dict[str, list[dict[str, float]]], path: Path,
                best_epochs: dict[str, int] | None = None) -> None:
    """Training loss and validation UAR per epoch, one line per split; the epoch each split
    kept (best validation score) is marked with a dot and a dotted line."""
    _save(curves_figure(histories, best_epochs), path)


def curves_figure(histories: dict[str, list[dict[str, float]]],
                  best_epochs: dict[str, int] | None = None):
    """The matplotlib figure :func:`plot_curves` saves (epochs on integer ticks)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    best_epochs = best_epochs or {}
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, hist in histories.items():
        if not hist:
            continue
        ep = [int(h["epoch"]) for h in hist]
        (line,) = ax1.plot(ep, [h["train_loss"] for h in hist], label=name)
        kept = best_epochs.get(name)
        if any("val_uar" in h for h in hist):
            uar = [h.get("val_uar", np.nan) for h in hist]
            ax2.plot(ep, uar, color=line.get_color(), label=f"{name} val UAR")
            if kept in ep:
                ax2.plot([kept], [uar[ep.index(kept)]], "o", color=line.get_color())
        if kept in ep:
            for ax in (ax1, ax2):
                ax.axvline(kept, color=line.get_color(), linestyle=":", linewidth=1)
    if best_epochs:
        ax1.plot([], [], "k:", linewidth=1, label="kept epoch")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("training loss")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation UAR (dot: kept epoch)")
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_reliability(confidence: dict[str, Any], path: Path) -> None:
    """Reliability diagram (accuracy against confidence per bin) beside accuracy against
    coverage (answering only the most confident fraction)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    bins = confidence["reliability"]
    width = 1.0 / confidence.get("bins", 15)
    ax1.bar([b["low"] for b in bins], [b["accuracy"] for b in bins], width=width, align="edge",
            edgecolor="black", alpha=0.7, label="accuracy")
    ax1.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax1.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o", color="C3",
             markersize=3)
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.set_xlabel("confidence")
    ax1.set_ylabel("accuracy")
    ax1.set_title(f"reliability (ECE {confidence['ece']:.3f})")
    ax1.legend(fontsize=8, loc="upper left")
    cov = confidence["coverage"]
    ax2.plot([c["coverage"] for c in cov], [c["accuracy"] for c in cov], "o-")
    unsure = confidence.get("uncertain")
    if unsure and unsure.get("accuracy_when_sure") is not None:
        ax2.plot([unsure["coverage"]], [unsure["accuracy_when_sure"]], "s", color="C3",
                 label="answers not flagged uncertain")
        ax2.legend(fontsize=8)
    ax2.set_xlim(0, 1.02)
    ax2.set_xlabel("coverage (fraction answered, most confident first)")
    ax2.set_ylabel("accuracy of the answers given")
    ax2.grid(alpha=0.3)
    _save(fig, path)


def _confidence_markdown(confidence: dict[str, Any]) -> list[str]:
    lines = ["", "## Confidence", "",
             f"Expected calibration error (ECE, {confidence.get('bins', 15)} bins): "
             f"**{confidence['ece']:.3f}**"
             + (f" (before calibration {confidence['ece_uncalibrated']:.3f})"
                if "ece_uncalibrated" in confidence else "") + "."
             + (f" A perfectly calibrated model would show about {confidence['ece_floor']:.3f}"
                " on this many answers (the floor of the measurement)."
                if "ece_floor" in confidence else "")]
    if "ece_speaker_weighted" in confidence or "ece_per_corpus" in confidence:
        lines += ["", "The ECE above counts answers, so a corpus with many clips per voice "
                  "weighs most."
                  + (f" With every speaker weighing the same: "
                     f"**{confidence['ece_speaker_weighted']:.3f}**."
                     if "ece_speaker_weighted" in confidence else "")
                  + (" Per corpus: " + ", ".join(f"{c} {e:.3f}" for c, e in
                                                 confidence["ece_per_corpus"].items()) + "."
                     if "ece_per_corpus" in confidence else "")]
    unsure = confidence.get("uncertain")
    if unsure:
        sure, rest = unsure.get("accuracy_when_sure"), unsure.get("accuracy_when_uncertain")
        lines += ["", f"Answers not flagged uncertain: {unsure['coverage']:.1%} of them"
                  + (f", {sure:.1%} right" if sure is not None else "")
                  + (f"; the flagged ones {rest:.1%} right" if rest is not None else "")
                  + (f" (target precision {unsure['target_precision']:.0%}, threshold chosen "
                     "on validation speakers)" if "target_precision" in unsure else "") + "."]
    lines += ["", "| coverage | accuracy | confidence ≥ |", "|---|---|---|"]
    for c in confidence["coverage"][4::5]:
        lines.append(f"| {c['coverage']:.0%} | {c['accuracy']:.1%} | {c['threshold']:.2f} |")
    lines += ["", "![reliability and coverage](reliability.png)"]
    return lines


def _cm_markdown(metrics: dict[str, Any], normalise: bool = False) -> str:
    """The confusion matrix as a table: counts, or (``normalise``) each row as % of its
    true label, so the diagonal reads as per-class recall."""
    labels = metrics["labels"]
    head = "| true \\ predicted | " + " | ".join(labels) + " |"
    sep = "|---" * (len(labels) + 1) + "|"
    rows = []
    for lab, row in zip(labels, metrics["confusion_matrix"], strict=True):
        total = sum(row)
        cells = ([f"{v / total:.0%}" if total else "—" for v in row] if normalise
                 else [str(v) for v in row])
        rows.append(f"| **{lab}** | " + " | ".join(cells) + " |")
    return "\n".join([head, sep, *rows])


def _speaker_list(ids: list[str] | None, limit: int = 12) -> str:
    if not ids:
        return "—"
    shown = ", ".join(ids[:limit])
    return f"{shown} … ({len(ids)})" if len(ids) > limit else shown


def render_report(result: dict[str, Any]) -> str:
    """report.md: what a person reads first about a run."""
    m = result["metrics"]
    protocol = result.get("protocol", {})
    lines = [f"# {result.get('title', 'ser run')}", ""]
    if protocol.get("leaky"):
        lines += [f"> **LEAKY PROTOCOL** — {protocol.get('warning', '')}", ""]
    for warning in result.get("warnings", []):
        lines += [f"> **Warning** — {warning}", ""]
    folds = result.get("folds")
    if folds:
        lines += [f"**UAR {folds['uar_mean']:.1%} ± {folds['uar_std']:.1%}**, accuracy "
                  f"{folds['accuracy_mean']:.1%} ± {folds['accuracy_std']:.1%} "
                  f"(mean ± std over {folds['folds']} speaker folds); pooled over folds: "
                  f"UAR {m['uar']:.1%}, accuracy {m['accuracy']:.1%}, n={m['n']}.", ""]
    else:
        # The seed protocol tests rows: augmented copies count, so n is not utterances.
        rows = "rows, augmented copies included" if protocol.get("leaky") else "utterances"
        lines += [f"**UAR {m['uar']:.1%}**, accuracy {m['accuracy']:.1%} (n={m['n']} test "
                  f"{rows}).", ""]
    k = len(m["labels"])
    lines += [f"Chance level: UAR {1 / k:.1%} (1/{k} labels: what a constant or random "
              "guess scores, whatever the class balance).", ""]
    lines += ["## Set-up", ""]
    for key in ("model", "bundle", "feature_set", "protocol_name", "data"):
        if key in result:
            lines.append(f"- {key.replace('_', ' ')}: {result[key]}")
    if protocol:
        extras = {k: v for k, v in protocol.items() if k not in ("warning",)}
        lines.append(f"- protocol: `{json.dumps(extras)}`")
    settings = result.get("settings") or {}
    for key, value in settings.items():
        lines.append(f"- {key}: `{json.dumps(value, default=str)}`")
    summary = result.get("data_summary")
    if summary:
        lines += ["", "| corpus | utterances | speakers |", "|---|---|---|"]
        for name, row in summary.get("corpora", {}).items():
            lines.append(f"| {name} | {row['utterances']} | {row['speakers']} |")
    if "per_corpus" in m and len(m["per_corpus"]) > 1:
        lines += ["", "## Per corpus", "", "| corpus | n | accuracy | UAR |", "|---|---|---|---|"]
        for name, row in m["per_corpus"].items():
            lines.append(f"| {name} | {row['n']} | {row['accuracy']:.1%} | {row['uar']:.1%} |")
    splits = result.get("splits")
    if splits:
        lines += ["", "## Splits", "", "Speakers of each split (none is on two sides); the "
                  "kept epoch is the one with the best validation score.", "",
                  "| split | test speakers | validation speakers | training speakers | "
                  "kept epoch | UAR | accuracy | ECE (its floor) |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in splits:
            spk = row.get("speakers") or {}
            epoch = (f"{row['best_epoch']} of {row['epochs_run']}" if row.get("epochs_run")
                     else "— (no epochs)")
            score = (f"{row['uar']:.1%} | {row['accuracy']:.1%}" if "uar" in row
                     else "— | —")
            lines.append(f"| {row['name']} | {_speaker_list(spk.get('test'))} | "
                         f"{_speaker_list(spk.get('val'))} | {len(spk.get('train') or [])} | "
                         f"{epoch} | {score} | "
                         + (f"{row['ece']:.3f}" if row.get("ece") is not None else "—")
                         + (f" (floor {row['ece_floor']:.3f}) |" if row.get("ece_floor")
                            is not None else " |"))
    elif folds:
        lines += ["", "## Folds", "", "| fold | accuracy | UAR |", "|---|---|---|"]
        for i, row in enumerate(folds["per_fold"], 1):
            lines.append(f"| {i} | {row['accuracy']:.1%} | {row['uar']:.1%} |")
    if result.get("test_speakers"):
        lines += ["", f"Test speakers: {_speaker_list(result['test_speakers'], 40)}"]
    lines += ["", "## Confusion matrix", "", "Counts (rows: true label):", "", _cm_markdown(m),
              "", "Row-normalised (each row: % of that true label; the diagonal is its "
              "recall):", "", _cm_markdown(m, normalise=True), "",
              "![confusion matrix](confusion_matrix.png)", "",
              "## Per class", "", "```", classification_report_text(m).rstrip(), "```"]
    if m.get("confidence"):
        lines += _confidence_markdown(m["confidence"])
    if result.get("curves"):
        lines += ["", "## Training curves", "",
                  "Training loss and validation UAR per epoch; a dot and a dotted line mark "
                  "the epoch each split kept.", "", "![training curves](curves.png)"]
    elif result.get("curves") is False:
        lines += ["", "## Training curves", "",
                  f"None: {result.get('model', 'this model')} is fitted in one step, without "
                  "epochs, so there is no curves.png."]
    timings = result.get("timings")
    if timings:
        lines += ["", "## Timings", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    if result.get("robustness"):
        lines += _robustness_markdown(result["robustness"])
    if result.get("licence"):
        lines += ["", f"Licence of the data: {result['licence']}"]
    return "\n".join(lines) + "\n"


def write_reports(out: Path, result: dict[str, Any],
                  histories: dict[str, list[dict[str, float]]] | None = None) -> None:
    """metrics.json, classification_report.txt, confusion_matrix.png, curves.png, report.md."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = result["metrics"]
    record = {k: v for k, v in result.items() if k != "title"}
    (out / "metrics.json").write_text(json.dumps(record, indent=2, default=str))
    (out / "classification_report.txt").write_text(classification_report_text(metrics))
    plot_confusion(metrics, out / "confusion_matrix.png")
    if metrics.get("confidence"):
        plot_reliability(metrics["confidence"], out / "reliability.png")
    if histories and any(histories.values()):
        best = {row["name"]: row["best_epoch"] for row in result.get("splits", [])
                if row.get("epochs_run")}
        plot_curves(histories, out / "curves.png", best)
        result = {**result, "curves": True}
    elif histories is not None:
        result = {**result, "curves": False}
    (out / "report.md").write_text(render_report(result))


def heard_speakers_warning(training_data: dict[str, Any], speakers: list[str]) -> list[str]:
    """A warning when the test speakers include ones the bundle was trained on.

    Bundles since ser records them list ``training_data.speaker_ids``; for older ones (and
    the shipped models, trained on every speaker of their corpora) a shared corpus is
    enough to warn.
    """
    heard = training_data.get("speaker_ids")
    if heard is not None:
        both = sorted(set(heard) & set(speakers))
        if not both:
            return []
        n = len(speakers)
        if len(both) == n:
            who = "the test speaker was" if n == 1 else f"all {n} test speakers were"
        else:
            who = f"{len(both)} of the {n} test speakers {'was' if len(both) == 1 else 'were'}"
        return [f"{who} in this model's training data ({', '.join(both[:8])}"
                f"{' …' if len(both) > 8 else ''}): these figures overstate accuracy on new "
                "speakers."]
    shared = sorted({s.split(":", 1)[0] for s in speakers}
                    & set(training_data.get("corpora") or {}))
    if not shared:
        return []
    who = training_data.get("trained_on", "some speakers")
    return [f"this model was trained on {who} of {', '.join(shared)}, which the test data "
            "includes: its speakers were probably heard in training, so these figures "
            "overstate accuracy on new speakers."]


def plot_robustness(table: list[dict[str, Any]], path: Path) -> None:
    """UAR against SNR, one line per noise family (clean dashed); bars for the rest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = next((r["uar"] for r in table if r["family"] == "clean"), None)
    snr = [r for r in table if r["unit"] == "dB SNR"]
    other = [r for r in table if r["unit"] != "dB SNR" and r["family"] != "clean"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8),
                                   gridspec_kw={"width_ratios": [1, 1.2]})
    for family in dict.fromkeys(r["family"] for r in snr):
        rows = sorted((r for r in snr if r["family"] == family), key=lambda r: r["value"])
        ax1.plot([r["value"] for r in rows], [r["uar"] for r in rows], "o-", label=family)
    if clean is not None:
        ax1.axhline(clean, color="black", ls="--", lw=1, label="clean")
    ax1.set_xlabel("SNR (dB)")
    ax1.set_ylabel("UAR")
    ax1.set_ylim(0, 1)
    ax1.grid(alpha=0.3)
    if ax1.lines:
        ax1.legend(fontsize=7)
    ax2.bar(range(len(other)), [r["uar"] for r in other], color="tab:gray")
    ax2.set_xticks(range(len(other)), [r["condition"] for r in other], rotation=45, ha="right")
    if clean is not None:
        ax2.axhline(clean, color="black", ls="--", lw=1)
    ax2.set_ylim(0, 1)
    ax2.set_ylabel("UAR")
    ax2.grid(alpha=0.3, axis="y")
    _save(fig, path)


def _robustness_markdown(rob: dict[str, Any]) -> list[str]:
    lines = ["", "## Robustness", "",
             f"The test audio degraded per condition (seed {rob['seed']}; drops in UAR points "
             "from clean; UAR over the clips answered, n; clips with no answer, such as no "
             "speech heard, in the last column).", "",
             "| condition | UAR | drop | accuracy | n | no answer |", "|---|---|---|---|---|---|"]
    for r in rob["table"]:
        drop = "" if r["family"] == "clean" else f"{100 * r['drop']:+.1f}"
        lines.append(f"| {r['condition']} | {r['uar']:.1%} | {drop} | {r['accuracy']:.1%} "
                     f"| {r['n']} | {r.get('no_answer', 0)} |")
    for key, what in (("noise", "recorded noise"), ("babble", "babble speech")):
        if rob.get(key):
            lines.append(f"\n{what}: {rob[key]}")
    lines += ["", "![robustness](robustness.png)"]
    return lines


def _subset(utts: list, per_speaker: int | None, seed: int) -> list:
    """At most ``per_speaker`` utterances of each speaker, labels taken in turn (seeded):
    a smaller test set that still holds every speaker and every label."""
    if per_speaker is None:
        return utts
    rng = np.random.default_rng(seed)
    by_speaker: dict[str, dict[str, list]] = {}
    for u in utts:
        by_speaker.setdefault(u.speaker_id, {}).setdefault(u.label, []).append(u)
    keep = []
    for labels in by_speaker.values():
        queues = [list(rng.permutation(len(v))) for v in labels.values()]
        pools = list(labels.values())
        taken = 0
        while taken < per_speaker and any(queues):
            for pool, queue in zip(pools, queues, strict=True):
                if queue and taken < per_speaker:
                    keep.append(pool[queue.pop()])
                    taken += 1
    order = {id(u): i for i, u in enumerate(utts)}
    return sorted(keep, key=lambda u: order[id(u)])


def evaluate_bundle(bundle: str | Path, paths: Sequence[str | Path], out: str | Path, *,
                    jobs: int = 1, console=None, conditions: str | None = None,
                    noise: str | Path | None = None,
                    babble: Sequence[str | Path] = (), seed: int = 0,
                    per_speaker: int | None = None) -> dict[str, Any]:
    """Score any bundle on any labelled data (corpora or label-per-folder trees) through
    :class:`ser.inference.Recognizer` — the same code path as ``ser predict`` — and write the
    same reports as a training run.

    ``conditions`` (``"standard"`` or ``"white:10,room:0.8,…"``, see :mod:`ser.augment`)
    scores the test audio again under each seeded degradation: a robustness table (UAR per
    condition and its drop from clean) in metrics.json and report.md, and robustness.png.
    Recorded noise comes from the evaluation third of ``noise`` (a folder); babble from the
    speech files under ``babble``, whose speakers must not be among the test speakers.
    ``per_speaker`` keeps at most that many utterances of each speaker."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from ser.audio import is_audio, load_audio
    from ser.augment import FAMILIES, Sources, noise_files, parse_conditions, rng_for
    from ser.calibration import confidence_report
    from ser.corpora import scan
    from ser.errors import SerError
    from ser.extras import require
    from ser.inference import Recognizer
    from ser.labels import ALL

    require("train", "sklearn", purpose="scoring (ser evaluate)")
    console = console or Console()
    t0 = time.perf_counter()
    with console.status("loading the model and scanning the data…"):
        rec = Recognizer.load(bundle)
        labels = rec.labels
        found = scan(paths, labels=[lab for lab in labels])
    utts = _subset(found.utterances, per_speaker, seed)
    if not utts:
        raise SerError(f"no utterances with labels {', '.join(labels)} under "
                       f"{', '.join(map(str, paths))}")
    speech: tuple[Path, ...] = ()
    speakers: tuple[str, ...] = ()
    if babble:
        # Corpus folders and manifests give each file's speaker; other audio files count
        # as their folder's speaker.
        known = {Path(u.path).resolve(): u.speaker_id
                 for u in scan(babble, labels=ALL).utterances}
        loose = [p.resolve() for b in map(Path, babble) if b.is_dir()
                 for p in sorted(b.rglob("*")) if p.is_file() and is_audio(p)]
        files = list(dict.fromkeys([*known, *loose]))
        shared = set(known.values()) & {u.speaker_id for u in utts}
        if shared:
            raise SerError("babble must come from speakers not in the test set; "
                           f"{', '.join(sorted(shared))} are in both")
        tested = {Path(u.path).resolve() for u in utts}
        both = [p for p in files if p in tested]
        if both:
            raise SerError("babble must come from speakers not in the test set; "
                           f"{len(both)} babble files are test files (e.g. {both[0]})")
        speech = tuple(files)
        speakers = tuple(known.get(p, str(p.parent)) for p in files)
    sources = Sources(noise=noise_files(noise, "test") if noise else (), speech=speech,
                      speakers=speakers)
    conds = parse_conditions(conditions or "", sources)
    sr = rec.sample_rate
    n_speakers = len({u.speaker_id for u in utts})
    console.print(f"scoring {len(utts)} files of {n_speakers} speaker"
                  f"{'' if n_speakers == 1 else 's'} with {rec.name} ({jobs} at a time)"
                  + (f" under {len(conds)} conditions" if len(conds) > 1 else ""))

    def score(u) -> list[dict[str, Any]]:
        base = {"path": str(u.path), "corpus": u.corpus, "speaker_id": u.speaker_id,
                "label": u.label}
        try:
            y = load_audio(u.path, sr=sr)
        except SerError as exc:
            return [{**base, "condition": c.name, "error": str(exc)} for c in conds]
        rows = []
        for c in conds:
            try:
                z = c.apply(y, sr, rng_for(seed, c.name, u.speaker_id, Path(u.path).name))
                p = rec.predict(z, sr=sr, segments=False)
            except SerError as exc:
                rows.append({**base, "condition": c.name, "error": str(exc)})
                continue
            rows.append({**base, "condition": c.name, "predicted": p.label,
                         "confidence": round(p.confidence, 4), "uncertain": p.uncertain,
                         **{f"p_{lab}": round(v, 5) for lab, v in p.probabilities.items()}})
        return rows

    rows, failed = [], []
    t1 = time.perf_counter()
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn()]
    what = "scoring" if len(conds) == 1 else f"scoring under {len(conds)} conditions"
    unanswered: dict[str, int] = {}  # per condition: clips with no answer (e.g. no speech)
    with Progress(*columns, console=console, transient=True) as bar, \
            ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        task = bar.add_task(what, total=len(utts) * len(conds))
        for result in pool.map(score, utts):
            bar.advance(task, len(result))
            for row in result:
                if "error" in row:
                    unanswered[row["condition"]] = unanswered.get(row["condition"], 0) + 1
                    failed.append((row["path"] if len(conds) == 1 else
                                   f"{row['path']} [{row['condition']}]", row["error"]))
                else:
                    rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty or not (frame["condition"] == "clean").any():
        first = failed[0] if failed else ("?", "?")
        raise SerError(f"every file failed; first: {first[0]}: {first[1]}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clean = frame[frame["condition"] == "clean"]
    written = frame if len(conds) > 1 else clean.drop(columns=["condition"])
    written.to_csv(out / "predictions.csv", index=False)
    metrics = compute_metrics(clean["label"], clean["predicted"], labels, clean["corpus"])
    y = clean["label"].map({lab: i for i, lab in enumerate(labels)}).to_numpy()
    probs = clean[[f"p_{lab}" for lab in labels]].to_numpy()
    metrics["confidence"] = confidence_report(probs, y, rec.uncertain_below or None,
                                              speakers=clean["speaker_id"].to_numpy(),
                                              corpora=clean["corpus"].to_numpy())
    metrics["ece"] = metrics["confidence"]["ece"]
    per_corpus = {}
    for name, group in clean.groupby("corpus"):
        per_corpus[str(name)] = {"utterances": int(len(group)),
                                 "speakers": int(group["speaker_id"].nunique())}
    meta = rec.bundle.meta
    trained = set(meta.get("training_data", {}).get("corpora", {}))
    overlap = trained & set(per_corpus)
    warnings = heard_speakers_warning(meta.get("training_data") or {},
                                      sorted(set(clean["speaker_id"])))
    result = {
        "title": f"evaluation of {rec.name}",
        "bundle": str(Path(bundle)), "model": meta["model"].get("architecture"),
        "feature_set": " + ".join(rec.feature_sets), "data": ", ".join(map(str, paths)),
        "data_summary": {"corpora": per_corpus}, "metrics": metrics,
        "protocol": {"name": "evaluate", "leaky": False, "trained_on": sorted(trained),
                     **({"note": "the bundle was trained on corpora "
                         f"{', '.join(sorted(overlap))} too: speakers may overlap"}
                        if overlap else {}),
                     **({"subset": f"at most {per_speaker} utterances per speaker "
                         f"(seed {seed})"} if per_speaker is not None else {})},
        "failed_files": failed, "warnings": warnings,
        "test_speakers": sorted(set(clean["speaker_id"])),
        "timings": {"load": t1 - t0, "predict": time.perf_counter() - t1},
        "licence": meta.get("licence", ""),
    }
    if len(conds) > 1:
        table = []
        for c in conds:
            sub = frame[frame["condition"] == c.name]
            if sub.empty:
                continue
            m = compute_metrics(sub["label"], sub["predicted"], labels)
            table.append({"condition": c.name, "family": c.family, "value": c.value,
                          "unit": FAMILIES[c.family][0], "uar": m["uar"],
                          "accuracy": m["accuracy"], "n": m["n"],
                          "no_answer": unanswered.get(c.name, 0),
                          "drop": metrics["uar"] - m["uar"]})
        result["robustness"] = {
            "seed": seed, "table": table,
            **({"noise": f"{len(sources.noise)} files, the evaluation third of {noise}"}
               if sources.noise else {}),
            **({"babble": f"{len(speech)} files of {len(set(speakers))} speakers under "
                f"{', '.join(map(str, babble))}; 4 voices per clip"} if speech else {}),
        }
        plot_robustness(table, out / "robustness.png")
    write_reports(out, result)
    return result
