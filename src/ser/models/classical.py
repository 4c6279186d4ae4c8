"""Classical models on utterance-level feature vectors: an RBF support-vector machine and a
logistic regression.

Standardisation is not inside the estimator: like every ser model, the SVM sees features
already normalised with the bundle's training statistics, so the exported ONNX graph is
only the SVM (with Platt-scaled probabilities).

The SVM is libsvm's (scikit-learn's ``SVC``), fitted on a kernel matrix that BLAS computes
(:class:`KernelSVM`): libsvm's own kernel loop costs rows × columns for every kernel value
it needs, again and again, which on Whisper's 1024–3072 columns is most of a fit.
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


def rbf_kernel(A: np.ndarray, B: np.ndarray, gamma: float) -> np.ndarray:
    """``exp(-gamma |a - b|²)`` for every row of ``A`` against every row of ``B``, in float64
    and by libsvm's own formula (``|a|² + |b|² - 2 a·b``), the dot products by BLAS."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    K = A @ B.T  # in place from here: one (rows of A × rows of B) matrix at a time
    K *= -2.0
    K += (A * A).sum(1)[:, None]
    K += (B * B).sum(1)[None, :]
    K *= -gamma
    return np.exp(K, out=K)


class KernelSVM:
    """``SVC(kernel="rbf", probability=True)`` fitted on ``X`` through its kernel matrix
    (``kernel="precomputed"``): the same solver, Platt scaling and random folds on the same
    kernel values up to rounding, so the same model (tests/test_models.py compares them),
    fitted many times faster on wide features. Predicts from its support vectors; exported
    to ONNX by :func:`svm_to_onnx` as the graph of the equivalent RBF SVC."""

    def __init__(self, svc, support_vectors: np.ndarray, gamma: float, n_fit: int):
        self.svc, self.gamma, self.n_fit = svc, float(gamma), int(n_fit)
        self.support_vectors = np.asarray(support_vectors, dtype=np.float32)

    @property
    def classes_(self) -> np.ndarray:
        return self.svc.classes_

    def _kernel(self, X: np.ndarray) -> np.ndarray:
        # A precomputed SVC reads the columns of its support vectors only.
        K = np.zeros((len(X), self.n_fit))
        K[:, self.svc.support_] = rbf_kernel(X, self.support_vectors, self.gamma)
        return K

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
            return self.svc.predict_proba(self._kernel(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.svc.predict(self._kernel(X))


def fit_svm(X: np.ndarray, y: np.ndarray, *, seed: int = 0, **hyper: Any) -> KernelSVM:
    """Fit an RBF SVM with Platt-scaled probabilities on normalised ``X`` and label indices
    ``y`` (``hyper``: ``C``, ``gamma`` — a number, ``"scale"`` or ``"auto"`` as scikit-learn's
    — and the other settings of ``SVC``)."""
    from sklearn.svm import SVC

    params = {**DEFAULTS, **hyper}
    X = np.asarray(X, dtype=np.float64)
    gamma = params.pop("gamma")
    if gamma == "scale":
        var = X.var()
        gamma = 1.0 / (X.shape[1] * var) if var != 0 else 1.0
    elif gamma == "auto":
        gamma = 1.0 / X.shape[1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        svc = SVC(kernel="precomputed", probability=True, random_state=seed, **params)
        svc.fit(rbf_kernel(X, X, float(gamma)), y)
    return KernelSVM(svc, X[svc.support_], float(gamma), len(X))


def _kernel_svm_to_onnx(model: KernelSVM, n_features: int) -> bytes:
    """The ONNX graph of ``model`` as skl2onnx writes an RBF ``SVC``'s: one ai.onnx.ml
    ``SVMClassifier`` (its pairwise Platt probabilities coupled by onnxruntime)."""
    from onnx import TensorProto, helper

    svc = model.svc
    coef, rho = svc.dual_coef_.ravel(), svc.intercept_
    if len(svc.classes_) == 2:  # libsvm's sign for two classes, as skl2onnx flips it
        coef, rho = -coef, -rho
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        prob_a, prob_b = svc.probA_, svc.probB_
    node = helper.make_node(
        "SVMClassifier", ["features"], ["label", "probabilities"], domain="ai.onnx.ml",
        kernel_type="RBF", kernel_params=[model.gamma, 0.0, 3.0],
        support_vectors=model.support_vectors.ravel().astype(np.float32).tolist(),
        coefficients=coef.astype(np.float32).tolist(),
        rho=rho.astype(np.float32).tolist(),
        prob_a=prob_a.astype(np.float32).tolist(), prob_b=prob_b.astype(np.float32).tolist(),
        vectors_per_class=svc.n_support_.tolist(), post_transform="NONE",
        classlabels_ints=[int(c) for c in svc.classes_])
    graph = helper.make_graph(
        [node], "kernel_svm",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                       [None, len(svc.classes_)])])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                  helper.make_opsetid("ai.onnx.ml", 1)])
    return onx.SerializeToString()


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
    Works for a :class:`KernelSVM` and any scikit-learn classifier or pipeline skl2onnx
    converts."""
    if isinstance(model, KernelSVM):
        return _kernel_svm_to_onnx(model, n_features)
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
