"""Classical baseline: an RBF support-vector machine on utterance-level feature vectors.

Standardisation is not inside the estimator: like every ser model, the SVM sees features
already normalised with the bundle's training statistics, so the exported ONNX graph is
only the SVM (with Platt-scaled probabilities).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

# scikit-learn 1.9 deprecates SVC(probability=True) (removal planned for 1.11) and skl2onnx
# reads the deprecated probA_/probB_; both still work. Silence that one warning here only
# (``ser train`` fits in worker processes, not threads, so ``catch_warnings`` is safe).
_DEPRECATION = r".*probability.*|.*probA_.*|.*probB_.*"

DEFAULTS: dict[str, Any] = {"C": 10.0, "gamma": "scale"}


def fit_svm(X: np.ndarray, y: np.ndarray, *, seed: int = 0, **hyper: Any):
    """Fit ``SVC(kernel="rbf", probability=True)`` on normalised ``X`` and label indices ``y``."""
    from sklearn.svm import SVC

    params = {**DEFAULTS, **hyper}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        return SVC(kernel="rbf", probability=True, random_state=seed, **params).fit(X, y)


def fit_logreg(X: np.ndarray, y: np.ndarray, *, seed: int = 0, C: float = 0.01,
               k_best: int = 500, class_weight: str | None = "balanced"):
    """ANOVA-F selection of the ``k_best`` columns, then multinomial logistic regression.

    The choice (k=500, C=0.01 on the ``functionals`` set) was made on training-side speakers
    only, see docs/RESULTS.md.
    """
    from sklearn.feature_selection import SelectKBest, f_classif
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    k = min(int(k_best), X.shape[1])
    model = Pipeline([
        ("select", SelectKBest(f_classif, k=k)),
        ("clf", LogisticRegression(C=C, max_iter=3000, class_weight=class_weight,
                                   random_state=seed)),
    ])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # constant columns in F
        return model.fit(X, y)


def svm_to_onnx(model, n_features: int) -> bytes:
    """ONNX graph: input ``features`` (batch, D) -> output ``probabilities`` (batch, classes).
    Works for any scikit-learn classifier or pipeline skl2onnx converts."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        onx = to_onnx(
            model,
            initial_types=[("features", FloatTensorType([None, n_features]))],
            options={id(getattr(model, "steps", [[None, model]])[-1][1]): {"zipmap": False}},
            target_opset=17,
        )
    names = [o.name for o in onx.graph.output]
    if "probabilities" not in names:  # skl2onnx names it so; guard against a rename
        raise RuntimeError(f"unexpected ONNX outputs from skl2onnx: {names}")
    # Keep only the probabilities output: one output, as the bundle contract says.
    keep = [o for o in onx.graph.output if o.name == "probabilities"]
    del onx.graph.output[:]
    onx.graph.output.extend(keep)
    return onx.SerializeToString()
