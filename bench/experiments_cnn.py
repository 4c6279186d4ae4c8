"""Choosing CNN settings on VALIDATION speakers only (never a test fold).

For each JSON config, runs the five kfold-speaker folds of the given data but reports only
the mean best validation UAR (validation speakers come from each fold's training side).

    python bench/experiments_cnn.py ../shared/data/ravdess '{}' '{"channels": 32, "hidden": 192}'
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ser.labels import CANONICAL
from ser.models import get_model_spec
from ser.models.torch_training import fit_torch, set_threads
from ser.protocols import apply_normalization, fit_normalization, kfold_speaker_splits
from ser.training import TrainOptions, load_dataset


def main() -> None:
    paths = sys.argv[1].split(",")
    configs = [json.loads(c) for c in sys.argv[2:]]
    set_threads(2)
    ds = load_dataset(paths, TrainOptions(model="cnn"), log=print)
    y_all = ds.manifest["label"].map({lab: i for i, lab in enumerate(CANONICAL)}).to_numpy()
    spec = get_model_spec("cnn")
    splits = kfold_speaker_splits(ds.manifest, k=5, seed=0)
    for cfg in configs:
        hyper = {**spec.defaults, **cfg}
        t0 = time.time()
        best = []
        for sp in splits:
            tr, va = ds.rows(sp.train, True), ds.rows(sp.val, False)
            mean, std = fit_normalization(ds.take(tr))
            xtr = apply_normalization(ds.take(tr), mean, std)
            xva = apply_normalization(ds.take(va), mean, std)
            tmp = Path(tempfile.mkdtemp())
            fit = fit_torch(spec, hyper, xtr, y_all[ds.row_utt[tr]], xva,
                            y_all[ds.row_utt[va]], len(CANONICAL), tmp, seed=0)
            best.append(max(h["val_uar"] for h in fit.history))
            shutil.rmtree(tmp)
        print(f"{json.dumps(cfg)} mean best validation UAR {np.mean(best):.3f} "
              f"{[round(b, 3) for b in best]} {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
