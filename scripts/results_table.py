"""Print a markdown table of the runs under runs/ (for docs/RESULTS.md).

    python scripts/results_table.py runs/cnn-mix-kfold runs/svm-ravdess-kfold ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def row(run: Path) -> str:
    rec = json.loads((run / "metrics.json").read_text())
    m, folds, t = rec["metrics"], rec.get("folds"), rec.get("timings", {})
    proto = rec["protocol"]
    name = proto["name"] + (" (LEAKY)" if proto.get("leaky") else "")
    if proto["name"] == "cross-corpus":
        name += " → " + ",".join(proto.get("test_corpora", []))
    if folds:
        uar = f"{folds['uar_mean']:.1%} ± {folds['uar_std']:.1%}"
        acc = f"{folds['accuracy_mean']:.1%} ± {folds['accuracy_std']:.1%}"
    else:
        uar, acc = f"{m['uar']:.1%}", f"{m['accuracy']:.1%}"
    per = ", ".join(f"{k} {v['uar']:.1%}" for k, v in m.get("per_corpus", {}).items())
    corpora = "+".join(rec["data_summary"]["corpora"])
    train_s = sum(v for k, v in t.items() if k.startswith("train"))
    return (f"| {run.name} | {rec['model']} | {corpora} | {name} | {uar} | {acc} | {per} | "
            f"{train_s / 60:.1f} |")


if __name__ == "__main__":
    print("| run | model | data | protocol | UAR | accuracy | UAR per corpus (pooled) | "
          "training min |")
    print("|---|---|---|---|---|---|---|---|")
    for arg in sys.argv[1:]:
        if (Path(arg) / "metrics.json").exists():
            print(row(Path(arg)))
