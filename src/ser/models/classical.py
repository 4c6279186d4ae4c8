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
    fitted many times faster on wide features. Past ``KERNEL_BYTES`` of kernel matrix (more
    rows than the memory should hold) the SVC fits on the features themselves, slower, in
    libsvm's own memory. Either way it predicts with the graph :func:`svm_to_onnx` exports."""

    def __init__(self, svc, support_vectors: np.ndarray, gamma: float,
                 projection: np.ndarray | None = None):
        self.svc, self.gamma = svc, float(gamma)
        self.support_vectors = np.asarray(support_vectors, dtype=np.float32)
        #: (features, K): the principal axes the kernel sees the features on, or None
        self.projection = None if projection is None else np.asarray(projection, np.float32)
        self._session = None

    @property
    def n_features(self) -> int:
        """The width of the vectors it answers for (before any projection)."""
        if self.projection is not None:
            return len(self.projection)
        return self.support_vectors.shape[1]

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
                _kernel_svm_to_onnx(self, self.n_features), opts,
                providers=["CPUExecutionProvider"])
        return self._session.run(["probabilities"], {
            "features": np.asarray(X, dtype=np.float32)})[0].astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The most probable class (what ser answers; libsvm's own ``predict`` votes)."""
        return self.classes_[self.predict_proba(X).argmax(1)]


#: the largest kernel matrix fit_svm computes (float64): 4 GiB, ~23,000 rows; a fit on more
#: rows runs on the features (libsvm's own kernel: slower, its memory linear in the rows).
KERNEL_BYTES = 4 << 30


def principal_axes(X: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """The first ``k`` principal axes of the rows of ``X``, as a (columns, k) float32
    projection (scikit-learn's PCA; ``X @ axes`` is uncentred, which leaves distances as
    they are)."""
    from sklearn.decomposition import PCA

    return PCA(int(k), random_state=seed).fit(X).components_.T.astype(np.float32)


def fit_svm(X: np.ndarray, y: np.ndarray, *, seed: int = 0, pca: int = 0,
            **hyper: Any) -> KernelSVM:
    """Fit an RBF SVM with Platt-scaled probabilities on normalised ``X`` and label indices
    ``y`` (``hyper``: ``C``, ``gamma`` — a number, ``"scale"`` or ``"auto"`` as scikit-learn's
    — and the other settings of ``SVC``): on the kernel matrix while it takes at most
    :data:`KERNEL_BYTES`, else on the features. ``pca`` K > 0: the kernel sees ``X`` on its
    first K principal axes (fitted here; the graph projects), so each answer reads K columns
    of every support vector instead of all (with fewer rows or columns than K, no
    projection)."""
    from sklearn.svm import SVC

    params = {**DEFAULTS, **hyper}
    X = np.asarray(X, dtype=np.float64)
    projection = None
    if pca and int(pca) < min(X.shape):
        projection = principal_axes(X, pca, seed)
        X = X @ projection.astype(np.float64)
    gamma = params.pop("gamma")
    if gamma == "scale":
        var = X.var()
        gamma = 1.0 / (X.shape[1] * var) if var != 0 else 1.0
    elif gamma == "auto":
        gamma = 1.0 / X.shape[1]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_DEPRECATION, category=FutureWarning)
        if len(X) ** 2 * 8 > KERNEL_BYTES:
            svc = SVC(kernel="rbf", gamma=float(gamma), probability=True, random_state=seed,
                      **params).fit(X, y)
            return KernelSVM(svc, svc.support_vectors_, float(gamma), projection)
        svc = SVC(kernel="precomputed", probability=True, random_state=seed, **params)
        svc.fit(rbf_kernel(X, X, float(gamma)), y)
    return KernelSVM(svc, X[svc.support_], float(gamma), projection)


def _kernel_svm_to_onnx(model: KernelSVM, n_features: int,
                        sv_dtype: type = np.float16) -> bytes:
    """The ONNX graph of ``model`` in standard operators, its support vectors stored as
    float16 (half the size of skl2onnx's ``SVMClassifier``, whose attributes are float32:
    A2h's SVM, 6648 support vectors of 3072 columns, was a 102 MB file that way, 41 MB so).

    libsvm's prediction, step by step: the RBF kernel against every support vector (one
    MatMul), the one-against-one decision values, Platt's sigmoid per pair (probabilities
    clipped to [1e-7, 1 - 1e-7]), and the pairs coupled into one distribution by libsvm's
    own iteration (:func:`_coupling_nodes`). With ``sv_dtype`` float32 the graph gives
    libsvm's probabilities to ~1e-6; float16 rounds the support vectors (~2e-3 in
    probability on 16 columns, where the kernel is narrow; 3e-4 on the default's 3072,
    docs/BENCHMARKS.md)."""
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
    sv = model.support_vectors.astype(sv_dtype)
    sv32 = sv.astype(np.float64)
    inits = {"sv": sv, "sv_sq": (sv32 * sv32).sum(1)[None, :], "W": W, "b": intercept,
             "A": prob_a, "B": prob_b, "neg2": np.array(-2.0), "neg_gamma":
             np.array(-model.gamma), "lo": np.array(1e-7), "hi": np.array(1 - 1e-7),
             "axis1": np.array([1], dtype=np.int64)}
    nodes, x = [], "features"
    if model.projection is not None:  # the features on the principal axes the SVM knows
        inits["P"] = model.projection.astype(sv_dtype)
        x = "projected"
        nodes += [helper.make_node("Cast", ["P"], ["P32"], to=TensorProto.FLOAT),
                  helper.make_node("MatMul", ["features", "P32"], [x])]
    nodes += [
        helper.make_node("Cast", ["sv"], ["sv32"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", [x, "sv32"], ["dot"], transB=1),
        helper.make_node("Mul", [x, x], ["x2"]),
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
    coupling, more = _coupling_nodes(k, pairs)
    nodes += coupling
    inits.update(more)
    # float32 but for the support vectors and projection (sv_dtype), indices, flags and the
    # float64 coupling
    tensors = [numpy_helper.from_array(
        v if name in ("sv", "P") or name.startswith("c_") or v.dtype in (np.int64, np.bool_)
        else v.astype(np.float32), name) for name, v in inits.items()]
    graph = helper.make_graph(
        nodes, "ser-svm",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, k])],
        tensors)
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onx.ir_version = 8
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def _coupling_nodes(k: int, pairs: list[tuple[int, int]]) -> tuple[list, dict]:
    """ONNX nodes from ``r`` (batch, pairs: P(i over j) for the pairs i < j) to
    ``probabilities`` (batch, k): libsvm's ``multiclass_probability`` (Wu, Lin and Weng's
    second method), step for step and in float64 — p starts uniform; while a clip's
    max |Qp − pᵀQp| ≥ 0.005/k (at most max(100, k) sweeps) each sweep moves every p_t in
    turn — so the graph answers as libsvm does, clip by clip (a clip that has converged is
    left alone while the others go on). Its initializers are float64 (names ``c_*``)."""
    from onnx import TensorProto, helper

    upper, lower = np.zeros((len(pairs), k * k)), np.zeros((len(pairs), k * k))
    for p, (i, j) in enumerate(pairs):
        upper[p, i * k + j] = lower[p, j * k + i] = 1.0
    inits = {"c_upper": upper, "c_lower": lower, "c_lower_sum": lower.sum(0)[None, :],
             "c_eye": np.eye(k), "c_zero": np.array(0.0), "c_one": np.array(1.0),
             "c_two": np.array(2.0), "c_uniform": np.array(1.0 / k),
             "c_eps": np.array(0.005 / k), "c_shape": np.array([-1, k, k], dtype=np.int64),
             "c_ax1": np.array([1], dtype=np.int64), "c_ax2": np.array([2], dtype=np.int64),
             "c_trips": np.array(max(100, k), dtype=np.int64), "c_go": np.array(True)}
    mk = helper.make_node
    nodes = [
        mk("Cast", ["r"], ["rd"], to=TensorProto.DOUBLE),
        # R[i, j] = P(i over j), R[j, i] = 1 − P(i over j); Q[t, t] = Σ_j R[j, t]²,
        # Q[t, j] = −R[j, t] R[t, j]
        mk("MatMul", ["rd", "c_upper"], ["ru"]),
        mk("MatMul", ["rd", "c_lower"], ["rl"]),
        mk("Sub", ["c_lower_sum", "rl"], ["rl_rev"]),
        mk("Add", ["ru", "rl_rev"], ["R_flat"]),
        mk("Reshape", ["R_flat", "c_shape"], ["R"]),
        mk("Transpose", ["R"], ["RT"], perm=[0, 2, 1]),
        mk("Mul", ["RT", "R"], ["cross"]),
        mk("Mul", ["RT", "RT"], ["RT2"]),
        mk("ReduceSum", ["RT2", "c_ax2"], ["diag3"], keepdims=1),
        mk("Mul", ["diag3", "c_eye"], ["Dg"]),
        mk("Sub", ["Dg", "cross"], ["Q"]),
        mk("Squeeze", ["diag3", "c_ax2"], ["Qdiag"]),
        mk("Mul", ["Qdiag", "c_zero"], ["p_zero"]),
        mk("Add", ["p_zero", "c_uniform"], ["p_start"]),
    ]
    for t in range(k):
        inits[f"c_t{t}"] = np.array([t], dtype=np.int64)
        inits[f"c_t{t}n"] = np.array([t + 1], dtype=np.int64)
        inits[f"c_e{t}"] = np.eye(k)[t][None, :]
        nodes += [mk("Slice", ["Q", f"c_t{t}", f"c_t{t}n", "c_ax1"], [f"Qrow{t}_3"]),
                  mk("Squeeze", [f"Qrow{t}_3", "c_ax1"], [f"Qrow{t}"]),
                  mk("Slice", ["Qdiag", f"c_t{t}", f"c_t{t}n", "c_ax1"], [f"Qtt{t}"])]
    # The loop's body: one of libsvm's iterations for every clip that has not converged.
    body = [
        mk("Unsqueeze", ["p_in", "c_ax2"], ["p3"]),
        mk("MatMul", ["Q", "p3"], ["Qp3"]),
        mk("Squeeze", ["Qp3", "c_ax2"], ["Qp_0"]),
        mk("Mul", ["p_in", "Qp_0"], ["pQp_terms"]),
        mk("ReduceSum", ["pQp_terms", "c_ax1"], ["pQp_0"], keepdims=1),
        mk("Sub", ["Qp_0", "pQp_0"], ["err_s"]),
        mk("Abs", ["err_s"], ["err_a"]),
        mk("ReduceMax", ["err_a"], ["err"], axes=[1], keepdims=1),
        mk("Less", ["err", "c_eps"], ["done"]),  # (batch, 1): this clip has converged
        mk("Not", ["done"], ["busy"]),
        mk("Cast", ["busy"], ["busy_f"], to=TensorProto.FLOAT),
        mk("ReduceMax", ["busy_f"], ["any_busy_f"], keepdims=0),
        mk("Cast", ["any_busy_f"], ["cond_out"], to=TensorProto.BOOL),
        mk("Identity", ["p_in"], ["p_0"]),
    ]
    for t in range(k):
        a, b = (f"p_{t}", f"Qp_{t}", f"pQp_{t}"), (f"p_{t + 1}", f"Qp_{t + 1}", f"pQp_{t + 1}")
        body += [
            mk("Slice", [a[1], f"c_t{t}", f"c_t{t}n", "c_ax1"], [f"Qpt{t}"]),
            mk("Sub", [a[2], f"Qpt{t}"], [f"num{t}"]),
            mk("Div", [f"num{t}", f"Qtt{t}"], [f"diff{t}"]),          # (−Qp_t + pQp) / Q_tt
            mk("Mul", [f"diff{t}", f"c_e{t}"], [f"dp{t}"]),
            mk("Add", [a[0], f"dp{t}"], [f"pt{t}"]),                   # p_t += diff
            mk("Add", [f"diff{t}", "c_one"], [f"s{t}"]),               # 1 + diff
            mk("Mul", [f"diff{t}", f"Qtt{t}"], [f"dq{t}"]),
            mk("Mul", [f"Qpt{t}", "c_two"], [f"q2{t}"]),
            mk("Add", [f"dq{t}", f"q2{t}"], [f"in{t}"]),
            mk("Mul", [f"diff{t}", f"in{t}"], [f"inc{t}"]),
            mk("Add", [a[2], f"inc{t}"], [f"pn{t}"]),
            mk("Mul", [f"s{t}", f"s{t}"], [f"s2{t}"]),
            mk("Div", [f"pn{t}", f"s2{t}"], [b[2]]),                  # pQp update
            mk("Mul", [f"diff{t}", f"Qrow{t}"], [f"dQ{t}"]),
            mk("Add", [a[1], f"dQ{t}"], [f"Qpn{t}"]),
            mk("Div", [f"Qpn{t}", f"s{t}"], [b[1]]),                  # Qp_j update
            mk("Div", [f"pt{t}", f"s{t}"], [b[0]]),                   # p_j /= 1 + diff
        ]
    body += [mk("Where", ["done", "p_in", f"p_{k}"], ["p_out"])]
    dbl = TensorProto.DOUBLE
    graph = helper.make_graph(
        body, "coupling_step",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("p_in", dbl, [None, k])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("p_out", dbl, [None, k])])
    nodes += [mk("Loop", ["c_trips", "c_go", "p_start"], ["p_end"], body=graph),
              mk("Cast", ["p_end"], ["probabilities"], to=TensorProto.FLOAT)]
    return nodes, inits


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
