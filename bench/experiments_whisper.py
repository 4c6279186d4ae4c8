"""Choose the Whisper layer and the logistic regression's C on validation speakers only.

For every clip, the pooled (mean + std over time) states of all seven Whisper-base encoder
blocks are computed once with a float32 graph of all six blocks that
``scripts/build_whisper_onnx.py --layers 6`` builds (``--graph``; cached in ``--out``). Then, for
each outer fold of ``kfold_speaker_splits`` (seed 0: the folds of ``ser train --protocol
kfold-speaker``), a standardiser + class-balanced logistic regression is fitted on the
fold's TRAINING speakers and scored on its VALIDATION speakers, for every (layer, C). The
table of mean validation UAR picks the ``whisper`` model's defaults. The test speakers are
never scored here: the test figure comes from ``ser train --model whisper`` afterwards.

    .venv/bin/python scripts/build_whisper_onnx.py --layers 6 --out runs/whisper-base-6.onnx
    nice .venv/bin/python bench/experiments_whisper.py ../shared/data/{ravdess,tess,savee} \\
        --out runs/whisper-layers          # validation-ravdess+savee+tess.json
    nice .venv/bin/python bench/experiments_whisper.py ../shared/data/ravdess \\
        --out runs/whisper-layers          # same cache; validation-ravdess.json
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from ser.audio import load_audio
from ser.corpora import manifest_frame, scan
from ser.features.whisper import encode, encoder_session, whisper_log_mel
from ser.labels import CANONICAL
from ser.protocols import kfold_speaker_splits

LAYERS = 7
CS = (0.001, 0.01, 0.1, 1.0)
GRAPH = "runs/whisper-base-6.onnx"


def all_layers(path: str, graph: str) -> np.ndarray:
    y = load_audio(path, sr=16000)[: 30 * 16000]
    return encode([whisper_log_mel(y)], encoder_session(graph))[0]


def embeddings(paths: list[str], out: Path, jobs: int, graph: str) -> np.ndarray:
    """(clips, 7, 1024), cached in ``out/embeddings.npz`` (resumes a partial run)."""
    cache = out / "embeddings.npz"
    done: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache) as z:
            done = dict(zip(z["paths"].tolist(), z["X"], strict=True))
    todo = [p for p in paths if p not in done]
    t0 = time.perf_counter()
    with Pool(jobs) as pool:
        for i, (p, x) in enumerate(zip(todo, pool.imap(partial(all_layers, graph=graph), todo,
                                                         chunksize=4),
                                       strict=True), 1):
            done[p] = x
            if i % 200 == 0 or i == len(todo):
                print(f"  {i}/{len(todo)} clips, {(time.perf_counter() - t0) / i:.3f} s/clip",
                      flush=True)
                keys = list(done)
                np.savez(cache, paths=np.array(keys), X=np.stack([done[k] for k in keys]))
    return np.stack([done[p] for p in paths])


def val_uar(X, y, train, val, C) -> float:
    from sklearn.linear_model import LogisticRegression

    mean, std = X[train].mean(0), X[train].std(0) + 1e-8
    model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=0)
    model.fit((X[train] - mean) / std, y[train])
    pred = model.predict((X[val] - mean) / std)
    return float(np.mean([(pred[y[val] == c] == c).mean() for c in np.unique(y[val])]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--out", required=True, help="cache and results folder")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--graph", default=GRAPH, help="float32 encoder graph of all six blocks")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    man = manifest_frame(list(scan(args.data, labels=CANONICAL).utterances))
    print(f"{len(man)} utterances")
    E = embeddings(man["path"].astype(str).tolist(), out, args.jobs, args.graph)
    y = man["label"].map({lab: i for i, lab in enumerate(CANONICAL)}).to_numpy()
    splits = kfold_speaker_splits(man, k=5, seed=0)
    table = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for layer in range(LAYERS):
            for C in CS:
                scores = [val_uar(E[:, layer], y, s.train, s.val, C) for s in splits]
                table[f"L{layer} C={C:g}"] = float(np.mean(scores))
                print(f"layer {layer} C {C:g}: validation UAR {np.mean(scores):.3f} "
                      f"({', '.join(f'{v:.2f}' for v in scores)})", flush=True)
    best = max(table, key=table.get)
    print(f"chosen on validation speakers: {best} ({table[best]:.3f})")
    name = "+".join(sorted(set(man["corpus"])))
    (out / f"validation-{name}.json").write_text(
        json.dumps({"table": table, "chosen": best}, indent=2))


if __name__ == "__main__":
    main()
