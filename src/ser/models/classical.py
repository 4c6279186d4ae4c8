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
        self._session = None

    def __getstate__(self) -> dict:  # sent back from a worker process: no session
        return {**self.__dict__, "_session": None}

    @property
    def classes_(self) -> np.ndarray:
        return self.svc.classes_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities as the exported graph gives them (it runs here: the answers that
        calibrate a bundle are those its graph will give)."""
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                _kernel_svm_to_onnx(self, self.support_vectors.shape[1]), opts,
                providers=["CPUExecutionProvider"])
        return self._session.run(["probabilities"], {
            "features": np.asarray(X, dtype=np.float32)})[0].astype(np.float64)


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
    """The ONNX graph of ``model`` in standard operators, its support vectors stored as
    float16 (half the size of skl2onnx's ``SVMClassifier``, whose attributes are float32:
    3072 columns × ~8000 support vectors would be a 100 MB file).

    libsvm's prediction, step by step: the RBF kernel against every support vector (one
    MatMul), the one-against-one decision values, Platt's sigmoid per pair (probabilities
    clipped to [1e-7, 1 - 1e-7]), and the pairs coupled into one distribution (Wu, Lin and
    Weng's second method: the p minimising pᵀQp with Σp = 1, i.e. Q⁻¹1 normalised, solved
    exactly by Gauss–Jordan elimination, and with two classes simply P(first over second);
    libsvm iterates, even for two classes, to a tolerance of 0.005/classes, so the two
    differ by ~2e-3 at most)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    svc = model.svc
    k = len(svc.classes_)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        prob_a, prob_b = svc.probA_.astype(np.float64), svc.probB_.astype(np.float64)
    dual, intercept = svc.dual_coef_.astype(np.float64), svc.intercept_.astype(np.float64)
    if k == 2:  # scikit-learn flips libsvm's signs for two classes; libsvm's are needed
        dual, intercept = -dual, -intercept
    # One-against-one, pairs (i, j) with i < j in libsvm's order: the coefficients of class
    # i's support vectors are in row j - 1 of dual_coef_, those of class j's in row i.
    starts = np.r_[0, np.cumsum(svc.n_support_)]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    W = np.zeros((len(svc.support_), len(pairs)))
    for p, (i, j) in enumerate(pairs):
        W[starts[i]:starts[i + 1], p] = dual[j - 1, starts[i]:starts[i + 1]]
        W[starts[j]:starts[j + 1], p] = dual[i, starts[j]:starts[j + 1]]
    sv = model.support_vectors.astype(np.float16)
    sv32 = sv.astype(np.float64)
    inits = {"sv": sv, "sv_sq": (sv32 * sv32).sum(1)[None, :], "W": W, "b": intercept,
             "A": prob_a, "B": prob_b, "neg2": np.array(-2.0), "neg_gamma":
             np.array(-model.gamma), "lo": np.array(1e-7), "hi": np.array(1 - 1e-7),
             "one": np.array(1.0), "axis1": np.array([1], dtype=np.int64)}
    nodes = [
        helper.make_node("Cast", ["sv"], ["sv32"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["features", "sv32"], ["dot"], transB=1),
        helper.make_node("Mul", ["features", "features"], ["x2"]),
        helper.make_node("ReduceSum", ["x2", "axis1"], ["x_sq"], keepdims=1),
        helper.make_node("Mul", ["dot", "neg2"], ["d0"]),
        helper.make_node("Add", ["d0", "x_sq"], ["d1"]),
        helper.make_node("Add", ["d1", "sv_sq"], ["dist"]),
        helper.make_node("Mul", ["dist", "neg_gamma"], ["arg"]),
        helper.make_node("Exp", ["arg"], ["kernel"]),
        helper.make_node("Gemm", ["kernel", "W", "b"], ["decision"]),
        # Platt: P(i over j) = 1 / (1 + exp(A f + B))
        helper.make_node("Mul", ["decision", "A"], ["af"]),
        helper.make_node("Add", ["af", "B"], ["afb"]),
        helper.make_node("Neg", ["afb"], ["nafb"]),
        helper.make_node("Sigmoid", ["nafb"], ["r0"]),
        helper.make_node("Clip", ["r0", "lo", "hi"], ["r"]),
    ]
    if k == 2:
        nodes += [helper.make_node("Sub", ["one", "r"], ["r_rev"]),
                  helper.make_node("Concat", ["r", "r_rev"], ["probabilities"], axis=1)]
    else:
        # R[i, j] = P(i over j) for i != j, 0 on the diagonal; Q[t, t] = Σ_j R[j, t]²,
        # Q[t, j] = -R[j, t] R[t, j].
        upper, lower = np.zeros((len(pairs), k * k)), np.zeros((len(pairs), k * k))
        for p, (i, j) in enumerate(pairs):
            upper[p, i * k + j] = lower[p, j * k + i] = 1.0
        inits.update(upper=upper, lower=lower, lower_sum=lower.sum(0)[None, :],
                     shape=np.array([-1, k, k], dtype=np.int64), eye=np.eye(k),
                     axis2=np.array([2], dtype=np.int64))
        nodes += [
            helper.make_node("MatMul", ["r", "upper"], ["ru"]),
            helper.make_node("MatMul", ["r", "lower"], ["rl"]),
            helper.make_node("Sub", ["lower_sum", "rl"], ["rl_rev"]),  # (1 - r) below
            helper.make_node("Add", ["ru", "rl_rev"], ["R_flat"]),
            helper.make_node("Reshape", ["R_flat", "shape"], ["R"]),
            helper.make_node("Transpose", ["R"], ["RT"], perm=[0, 2, 1]),
            helper.make_node("Mul", ["RT", "R"], ["cross"]),
            helper.make_node("Mul", ["RT", "RT"], ["RT2"]),
            helper.make_node("ReduceSum", ["RT2", "axis2"], ["diag"], keepdims=1),
            helper.make_node("Mul", ["diag", "eye"], ["D"]),
            helper.make_node("Sub", ["D", "cross"], ["Q"]),
            # the right-hand side, ones of Q's batch size: diag · 0 + 1
            helper.make_node("Mul", ["diag", "zero"], ["dz"]),
            helper.make_node("Add", ["dz", "one"], ["rhs"]),
            helper.make_node("Concat", ["Q", "rhs"], ["M0"], axis=2),
        ]
        inits["zero"] = np.array(0.0)
        # Gauss–Jordan on M = [Q | 1]: step t divides row t by its pivot and removes column t
        # from the other rows (M ← M − (M[:, t] − e_t) ⊗ row_t).
        for t in range(k):
            e = np.zeros((k, 1))
            e[t] = 1.0
            inits.update({f"t{t}": np.array([t], dtype=np.int64),
                          f"t{t}n": np.array([t + 1], dtype=np.int64), f"e{t}": e})
            m, nxt = f"M{t}", f"M{t + 1}"
            nodes += [
                helper.make_node("Slice", [m, f"t{t}", f"t{t}n", "axis1"], [f"row{t}"]),
                helper.make_node("Slice", [f"row{t}", f"t{t}", f"t{t}n", "axis2"],
                                 [f"piv{t}"]),
                helper.make_node("Div", [f"row{t}", f"piv{t}"], [f"nrow{t}"]),
                helper.make_node("Slice", [m, f"t{t}", f"t{t}n", "axis2"], [f"col{t}"]),
                helper.make_node("Sub", [f"col{t}", f"e{t}"], [f"fac{t}"]),
                helper.make_node("Mul", [f"fac{t}", f"nrow{t}"], [f"upd{t}"]),
                helper.make_node("Sub", [m, f"upd{t}"], [nxt]),
            ]
        inits["kk"] = np.array([k], dtype=np.int64)
        inits["kk1"] = np.array([k + 1], dtype=np.int64)
        nodes += [
            helper.make_node("Slice", [f"M{k}", "kk", "kk1", "axis2"], ["z3"]),
            helper.make_node("Squeeze", ["z3", "axis2"], ["z"]),
            helper.make_node("ReduceSum", ["z", "axis1"], ["z_sum"], keepdims=1),
            helper.make_node("Div", ["z", "z_sum"], ["probabilities"]),
        ]
    tensors = [numpy_helper.from_array(v if v.dtype in (np.float16, np.int64)
                                       else v.astype(np.float32), name)
               for name, v in inits.items()]
    graph = helper.make_graph(
        nodes, "ser-svm",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, k])],
        tensors)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    onnx.checker.check_model(onx)
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
