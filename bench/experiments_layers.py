"""Which Whisper block holds up under degradation (issue #11): a probe on VALIDATION speakers.

Block 3 was chosen on clean speech (``bench/experiments_whisper.py``). Whisper was trained on
noisy speech for recognition, and its deeper blocks may keep the talker apart from babble or
a room better. This probe scores each block, and fixed mixes of blocks, the way the shipped
recipe trains and is benchmarked — but smaller, to rank the blocks, not to measure a model:

* every clip is encoded once by an int8 graph of all six blocks (``--graph``, built by
  ``scripts/build_whisper_onnx.py --layers 6 --variant int8``); its pooled output of blocks
  0–6 is cached (``ser.features.extract``'s cache, feature set ``whisper_blocks``);
* training rows: at most ``--train-per-speaker`` clips of each speaker (TESS's 1200 per voice
  would dominate otherwise) and the recipe's two ``degrade`` copies (``--babble`` for the
  babble, as ``ser train --augment degrade,degrade --noise N --babble B``);
* for each fold of ``ser train --protocol kfold-speaker`` (same seed) an RBF SVM (the shipped
  default's settings) is fitted on the TRAINING speakers' rows for each block choice and
  scored on the fold's VALIDATION speakers (at most ``--per-speaker`` clips each) under
  ``--conditions``, built as ``ser evaluate --conditions`` builds them: recorded noise from
  the evaluation third of ``--noise``, babble from the fold's training speakers. The test
  speakers are never scored. The speech rule is not applied (every clip is answered).

    D=/work/shared/data
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/experiments_layers.py \\
        $D/ravdess $D/tess $D/savee --noise $D/noise --babble $D/crema-d \\
        --graph runs/whisper-base-6-int8.onnx --out runs/layers-val

``--hold-out-voice tess`` also puts a voice of that corpus among the validation speakers: in
each fold whose test side has none of its speakers, one of them (in turn) leaves the training
side (the seventeenth round: the shipped probe's validation speakers held no TESS voice, and
so could not see a loss on TESS). layers.md then gives each choice's clean UAR per corpus.

``--weights speaker`` also fits each choice with every training speaker weighing the same
(``--train-per-speaker`` above TESS's 1200 clips a voice, so that the rows are as ser
trains on them).

``--recipes`` compares training copies the same way (``degrade,degrade,babble``: two
``degrade`` copies and one of babble alone — the ninth round of docs/RESULTS.md).

``--pooling`` compares ways of pooling block 3's states over time instead of blocks (the
thirteenth round): the graph must have a ``states`` output (``scripts/build_whisper_onnx.py
--layers 3 --variant int8 --states``), and every pooling of :data:`POOLINGS` is computed from
one encoding (feature set ``whisper_pools``); ``--choices`` then names poolings.

Writes OUT/layers.json (UAR per condition per recipe and block choice, pooled and per fold)
and OUT/layers.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from multiprocessing import Pool
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
from sklearn.svm import SVC

from ser.audio import load_audio
from ser.augment import (
    Sources,
    get_augmentation,
    noise_files,
    parse_conditions,
    rng_for,
)
from ser.corpora import manifest_frame, scan
from ser.evaluation import _subset, compute_metrics
from ser.features import extract
from ser.features.base import register
from ser.features.whisper import (
    Whisper,
    encode,
    encode_states,
    frame_levels,
    pool_states,
    whisper_log_mel,
)
from ser.labels import CANONICAL
from ser.models.classical import principal_axes, rbf_kernel
from ser.protocols import apply_normalization, fit_normalization, kfold_speaker_splits
from ser.training import NONE, augmented_copies

BLOCKS = 7  # block 0 (conv front end + positions) .. block 6


@register
class WhisperBlocks(Whisper):
    """Every block's mean + std pooling of a ``graph`` with six blocks: 7 × 1024 values."""

    name: ClassVar[str] = "whisper_blocks"

    @property
    def columns(self) -> list[str]:
        return [f"L{b}_{stat}_{i}" for b in range(BLOCKS) for stat in ("mean", "std")
                for i in range(512)]

    def compute(self, y: np.ndarray) -> np.ndarray:
        return encode([whisper_log_mel(y)], self._session())[0].reshape(-1)


#: poolings of a block's states over time (``--pooling``): the mean and std with every frame
#: weighing the same (what ser does), or frames weighed by their loudness — amplitude or power
#: relative to the clip's loudest frame, or only the louder half — so that a voice 10 dB above
#: babble decides the vector more than the pauses the babble fills.
POOLINGS = ("mean-std", "amplitude", "power", "loud-half")


def weighted_pools(h: np.ndarray, mel: np.ndarray) -> np.ndarray:
    """Every pooling of :data:`POOLINGS` of states ``h`` (frames, 512), each the weighted mean
    and std (1024 values); the weights from the mel power of every second mel frame (the
    encoder's stride). ``power`` is the probe's own; the others are ser's views."""
    level = frame_levels(mel, len(h))
    out = []
    for name in POOLINGS:
        if name != "power":
            out.append(pool_states(h, mel, name).astype(np.float64))
            continue
        w = 10.0 ** level / (10.0 ** level).sum()
        mean = w @ h
        out.append(np.r_[mean, np.sqrt(w @ (h - mean) ** 2)])
    return np.concatenate(out).astype(np.float32)


@register
class WhisperPools(Whisper):
    """Block 3's states pooled every way of :data:`POOLINGS`: 4 × 1024 values (a graph with
    a ``states`` output)."""

    name: ClassVar[str] = "whisper_pools"

    @property
    def columns(self) -> list[str]:
        return [f"{p}_{stat}_{i}" for p in POOLINGS for stat in ("mean", "std")
                for i in range(512)]

    def compute(self, y: np.ndarray) -> np.ndarray:
        mel = whisper_log_mel(y)
        return weighted_pools(encode_states(mel, self._session()), mel)


#: block choices: a name -> the blocks whose pooled vectors are concatenated ("+") or averaged
#: ("avg")
CHOICES = {"2": [2], "3": [3], "4": [4], "5": [5], "6": [6], "3+5": [3, 5],
           "avg3-6": ("avg", [3, 4, 5, 6])}
POOL_CHOICES = {**{name: [i] for i, name in enumerate(POOLINGS)},
                **{"+".join(names): [POOLINGS.index(n) for n in names] for names in (
                    ("mean-std", "loud-half"), ("mean-std", "amplitude"),
                    ("mean-std", "amplitude", "loud-half"))}}


def select(X: np.ndarray, choice, slots: int = BLOCKS) -> np.ndarray:
    X = X.reshape(len(X), slots, 1024)
    if isinstance(choice, tuple):
        return X[:, choice[1]].mean(axis=1)
    return X[:, choice].reshape(len(X), -1)


_STATE: dict = {}


def _score_one(i: int) -> np.ndarray:
    """The features of validation clip ``i`` under every condition of the current fold."""
    fs, conds, row, seed = _STATE["fs"], _STATE["conds"], _STATE["rows"][i], _STATE["seed"]
    y = load_audio(row["path"], sr=16000)
    out = []
    for c in conds:
        z = c.apply(y, 16000, rng_for(seed, c.name, row["speaker_id"], Path(row["path"]).name))
        out.append(fs.features(fs.window(z)))
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--noise", required=True)
    ap.add_argument("--babble", required=True)
    ap.add_argument("--graph", required=True)
    ap.add_argument("--conditions",
                    default="white:10,babble:10,noise:5,room:0.8,telephone,mp3:32,gain:-30")
    ap.add_argument("--train-per-speaker", type=int, default=120)
    ap.add_argument("--per-speaker", type=int, default=40)
    ap.add_argument("--choices", nargs="+", default=None,
                    help=f"blocks ({', '.join(CHOICES)}; all by default) or, with --pooling, "
                         f"poolings ({', '.join(POOLINGS)}; all by default)")
    ap.add_argument("--pooling", action="store_true",
                    help="compare poolings of block 3 (a --graph with a states output)")
    ap.add_argument("--recipes", nargs="+", default=["degrade,degrade"],
                    help="the training copies beside the clean clips: AUGMENT[,AUGMENT...], "
                         "a repeated name one more copy with fresh draws (as ser train "
                         "--augment)")
    ap.add_argument("--C", type=float, nargs="+", default=[10.0],
                    help="the SVM's C (several: one fit each, with every --gamma)")
    ap.add_argument("--gamma", type=float, nargs="+", default=[1.0],
                    help="the RBF width as multiples of sklearn's 'scale' (below 1: smoother); "
                         "several: one fit each")
    ap.add_argument("--weights", nargs="+", default=["none"], choices=["none", "speaker"],
                    help="none: every training row weighs the same (with the classes "
                         "balanced, as shipped); speaker: every training speaker weighs the "
                         "same too (TESS's two voices hold two thirds of the clips); several: "
                         "one fit each")
    ap.add_argument("--pca", type=int, nargs="+", default=[0],
                    help="project the normalised features on their first K principal "
                         "components (of the training rows) before the kernel; 0: no "
                         "projection; several: one fit each")
    ap.add_argument("--hold-out-voice", default=None, metavar="CORPUS",
                    help="in each fold whose test side has no speaker of CORPUS, one of its "
                         "speakers (in turn) moves from training to validation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    labels = list(CANONICAL)
    graph = str(Path(args.graph).resolve())
    fs, choices, slots, kind = (WhisperPools(graph=graph), POOL_CHOICES, len(POOLINGS), "pool") \
        if args.pooling else (WhisperBlocks(graph=graph), CHOICES, BLOCKS, "block")
    args.choices = args.choices or list(choices)
    utts = list(scan(args.data, labels=labels).utterances)
    manifest = manifest_frame(utts)
    splits = kfold_speaker_splits(manifest, k=5, seed=args.seed)

    pool_tr = _subset(utts, args.train_per_speaker, args.seed)
    babble_dir = str(Path(args.babble).resolve())
    copies = dict.fromkeys([(NONE, None, 0), *(c for r in args.recipes
                                               for c in augmented_copies(r.split(",")))])
    train = {}  # row key (as ser.training's) -> (manifest, X)
    for key, name, seed in copies:
        aug = None if name is None else get_augmentation(
            name, seed=seed, noise_dir=str(Path(args.noise).resolve()), babble_dir=babble_dir)
        table = extract(pool_tr, fs, augment=aug, n_jobs=args.jobs)
        train[key] = (table.manifest.reset_index(drop=True), table.X)
        print(f"train {key}: {len(table.X)} clips, {time.perf_counter() - t0:.0f} s",
              flush=True)

    val_pool = {str(u.path) for u in _subset(utts, args.per_speaker, args.seed)}
    answers = []
    turn = 0
    for split in splits:
        tr_speakers = set(manifest.iloc[split.train]["speaker_id"])
        val = manifest.iloc[split.val]
        if args.hold_out_voice is not None:
            voices = sorted(s for s in tr_speakers
                            if s.startswith(f"{args.hold_out_voice}:"))
            tested = manifest.iloc[split.test]["corpus"].eq(args.hold_out_voice).any()
            if voices and not tested:
                voice = voices[turn % len(voices)]
                turn += 1
                tr_speakers.discard(voice)
                val = pd.concat([val, manifest[manifest["speaker_id"] == voice]])
        val = val[val["path"].astype(str).isin(val_pool)].reset_index(drop=True)
        babble = manifest.iloc[split.train]
        sources = Sources(noise=noise_files(args.noise, "test"),
                          speech=tuple(Path(p).resolve() for p in babble["path"]),
                          speakers=tuple(babble["speaker_id"]))
        conds = parse_conditions(args.conditions, sources)
        _STATE.update(fs=fs, conds=conds, rows=val.to_dict("records"), seed=args.seed)
        t1 = time.perf_counter()
        with Pool(args.jobs) as pool:
            Xv = np.stack(pool.map(_score_one, range(len(val)), chunksize=2))  # (n, conds, F)
        print(f"{split.name}: {len(val)} validation clips x {len(conds)} conditions encoded "
              f"in {time.perf_counter() - t1:.0f} s", flush=True)
        for recipe in args.recipes:
            rows = [train[NONE], *(train[key] for key, _, _ in
                                   augmented_copies(recipe.split(",")))]
            keep = [m["speaker_id"].isin(tr_speakers).to_numpy() for m, _ in rows]
            Xtr = np.concatenate([X[k] for (_, X), k in zip(rows, keep, strict=True)])
            ytr = np.concatenate([m.loc[k, "label"].map(labels.index).to_numpy()
                                  for (m, _), k in zip(rows, keep, strict=True)])
            who = np.concatenate([m.loc[k, "speaker_id"].to_numpy()
                                  for (m, _), k in zip(rows, keep, strict=True)])
            _, inverse, counts = np.unique(who, return_inverse=True, return_counts=True)
            per_speaker = len(who) / (len(counts) * counts[inverse])
            for name, C, gamma, weights, k in itertools.product(
                    args.choices, args.C, args.gamma, args.weights, args.pca):
                t1 = time.perf_counter()
                Z = select(Xtr, choices[name], slots)
                ms = fit_normalization(Z)
                A = apply_normalization(Z, *ms)
                project = principal_axes(A, k, args.seed) if k else None
                if project is not None:
                    A = A @ project
                label = f"{recipe} | {kind} {name}" + (f" | C {C:g}" if C != 10.0 else "") \
                    + (f" | gamma {gamma:g}" if gamma != 1.0 else "") \
                    + (" | speakers weigh the same" if weights == "speaker" else "") \
                    + (f" | PCA {k}" if k else "")
                # the shipped SVM's settings (gamma "scale" = 1 / (columns * variance)), on
                # the kernel matrix as ser fits it (the same model as SVC(kernel="rbf"));
                # no Platt fit (libsvm's vote is what is scored)
                g = gamma / (A.shape[1] * A.astype(float).var())
                model = SVC(kernel="precomputed", C=C, class_weight="balanced",
                            random_state=args.seed).fit(
                    rbf_kernel(A, A, g), ytr,
                    sample_weight=per_speaker if weights == "speaker" else None)
                for j, c in enumerate(conds):
                    B = apply_normalization(select(Xv[:, j], choices[name], slots), *ms)
                    if project is not None:
                        B = B @ project
                    pred = model.predict(rbf_kernel(B, A, g))
                    answers.append(pd.DataFrame({
                        "fold": split.name, "choice": label,
                        "condition": c.name, "speaker_id": val["speaker_id"],
                        "label": val["label"], "predicted": [labels[int(k)] for k in pred]}))
                print(f"{split.name} {label}: {len(ytr)} training rows, "
                      f"{time.perf_counter() - t1:.0f} s", flush=True)
    frame = pd.concat(answers)
    frame.to_csv(args.out / "predictions.csv", index=False)
    results = {}
    order = list(dict.fromkeys(frame["condition"]))
    for name, sub in frame.groupby("choice", sort=False):
        table = {c: compute_metrics(g["label"], g["predicted"], labels)["uar"]
                 for c in order for g in [sub[sub["condition"] == c]]}
        per_fold = {c: {f: compute_metrics(h["label"], h["predicted"], labels)["uar"]
                        for f, h in sub[sub["condition"] == c].groupby("fold")} for c in order}
        clean = sub[sub["condition"] == "clean"]
        per_corpus = {k: compute_metrics(g["label"], g["predicted"], labels)["uar"]
                      for k, g in clean.groupby(clean["speaker_id"].str.split(":").str[0])}
        results[name] = {"table": table, "per_fold": per_fold, "clean_per_corpus": per_corpus,
                         "mean_degraded_uar": float(np.mean([v for c, v in table.items()
                                                             if c != "clean"]))}
    n_val = int((frame["condition"] == "clean").sum() / frame["choice"].nunique())
    (args.out / "layers.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "validation_clips": n_val,
         "results": results, "seconds": time.perf_counter() - t0}, indent=1))
    corpora = sorted({k for r in results.values() for k in r["clean_per_corpus"]})
    lines = ["| recipe and choice | " + " | ".join(order) + " | degraded mean | "
             + " | ".join(f"clean {k}" for k in corpora) + " |",
             "|---" * (len(order) + 2 + len(corpora)) + "|"]
    for name, r in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * r['table'][c]:.1f}" for c in order)
                     + f" | {100 * r['mean_degraded_uar']:.1f} | "
                     + " | ".join(f"{100 * r['clean_per_corpus'].get(k, np.nan):.1f}"
                                  for k in corpora) + " |")
    (args.out / "layers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"{n_val} validation clips; {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
