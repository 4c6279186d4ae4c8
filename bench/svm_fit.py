"""How long the default's SVM takes to fit: libsvm on the features, or on a BLAS kernel matrix.

``ser.models.classical.fit_svm`` gives libsvm the RBF kernel matrix, computed by BLAS
(``KernelSVM``), instead of the feature vectors. This fits both ways on the same real rows —
clips of the corpora given (at most ``--per-speaker`` each), their whisper features under
each ``--pooling`` (from the feature cache), standardised — with the shipped settings (C 10,
gamma "scale", balanced classes, Platt probabilities), and prints wall and CPU seconds, the
ratio, and whether the two models are the same: support vectors, and the largest difference
in probability on held-out speakers (every fifth; the fits see the others) between
scikit-learn's ``SVC`` and the graph ser ships (float16 support vectors), and between that
graph and one with float32 support vectors. One process, one BLAS thread: what each ``ser
train`` worker process does.

    D=/work/shared/data
    OMP_NUM_THREADS=1 .venv/bin/python bench/svm_fit.py $D/ravdess $D/tess $D/savee
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from ser.corpora import scan
from ser.evaluation import _subset
from ser.features import extract, get_feature_set
from ser.labels import CANONICAL
from ser.models.classical import _kernel_svm_to_onnx, fit_svm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--per-speaker", type=int, default=120)
    ap.add_argument("--pooling", nargs="+", default=["loud-half", "mean-std+amplitude+loud-half"])
    args = ap.parse_args()
    import onnxruntime as ort
    from sklearn.svm import SVC

    utts = _subset(list(scan(args.data, labels=list(CANONICAL)).utterances), args.per_speaker, 0)
    print("| pooling | rows × columns | SVC(kernel=rbf): wall, CPU | fit_svm: wall, CPU | "
          "CPU ratio | same support vectors | max prob. difference: SVC, float32 graph |")
    print("|---|---|---|---|---|---|---|")
    for pooling in args.pooling:
        table = extract(utts, get_feature_set("whisper", pooling=pooling), n_jobs=2)
        X = table.X.astype(np.float64)
        X = ((X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1.0)).astype(np.float32)
        y = table.manifest["label"].map(list(CANONICAL).index).to_numpy()
        speakers = table.manifest["speaker_id"].to_numpy()
        held = np.isin(speakers, np.unique(speakers)[::5])
        Xf, yf, Xh = X[~held], y[~held], X[held]
        w0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            ref = SVC(kernel="rbf", C=10.0, gamma="scale", probability=True, random_state=0,
                      class_weight="balanced").fit(Xf, yf)
        w1, c1 = time.perf_counter(), time.process_time()
        ours = fit_svm(Xf, yf, seed=0, class_weight="balanced")
        w2, c2 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            want = ref.predict_proba(Xh)
        got = ours.predict_proba(Xh)
        exact = ort.InferenceSession(_kernel_svm_to_onnx(ours, X.shape[1], sv_dtype=np.float32))
        p32 = exact.run(["probabilities"], {"features": Xh})[0]
        same = np.array_equal(ref.support_, ours.svc.support_)
        print(f"| `{pooling}` | {len(yf)} × {X.shape[1]} | {w1 - w0:.1f} s, {c1 - c0:.1f} s "
              f"| {w2 - w1:.1f} s, {c2 - c1:.1f} s | {(c1 - c0) / (c2 - c1):.0f}× | {same} "
              f"({len(ref.support_)}) | {np.abs(got - want).max():.1e}, "
              f"{np.abs(got - p32).max():.1e} ({len(Xh)} clips) |", flush=True)


if __name__ == "__main__":
    main()
