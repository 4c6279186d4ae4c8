"""Model architectures: the seed port's exact shape and size, ONNX exports that match."""

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from ser.models import build_torch, get_model_spec, torch_to_onnx  # noqa: E402
from ser.models.classical import (  # noqa: E402
    _kernel_svm_to_onnx,
    fit_svm,
    rbf_kernel,
    svm_to_onnx,
)
from ser.models.seed_resnet1d import SeedResNet1D  # noqa: E402


def conv(cin, cout, k):
    return cin * cout * k + cout


def dense(cin, cout):
    return cin * cout + cout


def test_seed_resnet1d_parameter_count_by_hand():
    # The Keras summary of the seed network, layer by layer.
    total = dense(1, 256)                       # Dense(256) on each of 178 positions
    cin = 256
    for f, n in [(16, 2), (32, 2), (32, 2), (64, 3), (64, 3), (128, 3), (128, 3)]:
        total += conv(cin, f, 1)                # shortcut
        total += conv(cin, f, 3)                # first conv
        total += (n - 1) * conv(f, f, 3)        # remaining convs (incl. the one before add)
        cin = f
    total += dense((178 // 3) * 128, 256) + dense(256, 128) + dense(128, 6)
    model = SeedResNet1D()
    assert sum(p.numel() for p in model.parameters()) == total


def test_seed_resnet1d_shapes():
    model = SeedResNet1D()
    assert model(torch.randn(4, 178)).shape == (4, 6)
    # After the blocks and the single AvgPool(3, 3): 178 -> 59 positions of 128 channels.
    x = torch.relu(model.dense_in(torch.randn(2, 178, 1))).transpose(1, 2)
    assert model.pool(model.blocks(x)).shape == (2, 128, 59)


def test_cnn_onnx_has_dynamic_time_and_matches_torch():
    model = build_torch("cnn", 6, (64,), **get_model_spec("cnn").defaults).eval()
    assert model.utt_norm
    sess = ort.InferenceSession(torch_to_onnx(model, (64, 100), dynamic_time=True))
    assert [i.name for i in sess.get_inputs()] == ["features"]
    assert [o.name for o in sess.get_outputs()] == ["probabilities"]
    for frames in (37, 300):
        x = np.random.default_rng(frames).normal(size=(2, 64, frames)).astype(np.float32)
        got = sess.run(None, {"features": x})[0]
        with torch.no_grad():
            want = torch.softmax(model(torch.from_numpy(x)), -1).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_allclose(got.sum(1), 1, atol=1e-5)


def test_cnn_utt_norm_ignores_each_bands_level_and_scale():
    """A per-band gain and offset (a different microphone or room) leaves the output alone."""
    torch.manual_seed(0)
    x = torch.randn(2, 64, 120)
    a = torch.rand(1, 64, 1) * 3 + 0.5
    b = torch.randn(1, 64, 1) * 10
    plain = build_torch("cnn", 6, (64,), utt_norm=False).eval()
    normed = build_torch("cnn", 6, (64,), utt_norm=True).eval()
    normed.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(normed(a * x + b), normed(x), atol=1e-3, rtol=1e-3)
        assert not torch.allclose(plain(a * x + b), plain(x), atol=1e-2)


def test_svm_onnx_graph_answers_as_the_fitted_model():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (30, 5)), rng.normal(3, 1, (30, 5)),
                        rng.normal(-3, 1, (30, 5))]).astype(np.float32)
    y = np.repeat([0, 1, 2], 30)
    model = fit_svm(X, y)
    sess = ort.InferenceSession(svm_to_onnx(model, 5))
    assert [o.name for o in sess.get_outputs()] == ["probabilities"]
    got = sess.run(None, {"features": X})[0]
    np.testing.assert_allclose(got, model.predict_proba(X), atol=1e-4)
    assert (got.argmax(1) == y).mean() > 0.9


@pytest.mark.parametrize("classes", [2, 4, 6])
def test_the_kernel_matrix_svm_is_libsvms_rbf_svm(classes):
    """fit_svm gives libsvm the kernel matrix (BLAS) instead of the features: the same support
    vectors and (to the solver's tolerance) coefficients as ``SVC(kernel="rbf")``. Its graph
    (standard operators; what predict_proba runs) gives libsvm's probabilities: to ~1e-6
    with float32 support vectors, to ~1e-3 with the float16 it ships."""
    import warnings

    import onnx
    from sklearn.svm import SVC

    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(classes), 60)
    X = (rng.normal(size=(len(y), 16)) + 0.8 * y[:, None] * rng.normal(size=16)).astype(
        np.float32)
    ours = fit_svm(X, y, seed=0, class_weight="balanced", C=3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = SVC(kernel="rbf", probability=True, random_state=0, class_weight="balanced",
                  C=3.0, gamma="scale").fit(X, y)
        want = ref.predict_proba(X)
    assert ours.gamma == pytest.approx(ref._gamma)
    np.testing.assert_array_equal(ours.svc.support_, ref.support_)
    # the same problem, solved to libsvm's tolerance (1e-3) from kernel values equal to rounding
    np.testing.assert_allclose(ours.svc.dual_coef_, ref.dual_coef_, atol=1e-2)
    assert (want.max(1) < 0.9).any()  # the classes overlap: probabilities, not 0/1
    graph = svm_to_onnx(ours, 16)
    assert {n.op_type for n in onnx.load_from_string(graph).graph.node}.isdisjoint(
        {"SVMClassifier"})
    got = ort.InferenceSession(graph).run(["probabilities"], {"features": X})[0]
    np.testing.assert_allclose(got, ours.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(got, want, atol=3e-3)
    exact = _kernel_svm_to_onnx(ours, 16, sv_dtype=np.float32)
    libsvm = ours.svc.predict_proba(np.where(  # the model's own libsvm, on its kernel matrix
        np.isin(np.arange(len(X)), ours.svc.support_)[None, :],
        rbf_kernel(X, X, ours.gamma), 0.0))
    np.testing.assert_allclose(
        ort.InferenceSession(exact).run(["probabilities"], {"features": X})[0], libsvm,
        atol=2e-5)
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.98
    np.testing.assert_array_equal(ours.predict(X), ours.classes_[got.argmax(1)])


def test_an_svm_on_principal_axes_projects_inside_its_graph():
    """``pca=K``: the kernel sees the features on their first K principal axes. The graph
    takes the full vector, projects it, and answers as libsvm does on the projected rows;
    K at or above the width changes nothing."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 50)
    X = (rng.normal(size=(len(y), 12)) + 0.9 * y[:, None] * rng.normal(size=12)).astype(
        np.float32)
    model = fit_svm(X, y, seed=0, class_weight="balanced", pca=4)
    assert model.projection.shape == (12, 4) and model.support_vectors.shape[1] == 4
    np.testing.assert_allclose(np.abs(model.projection.T),
                               np.abs(PCA(4, random_state=0).fit(X).components_), atol=1e-5)
    Z = X.astype(np.float64) @ model.projection
    libsvm = model.svc.predict_proba(np.where(
        np.isin(np.arange(len(X)), model.svc.support_)[None, :],
        rbf_kernel(Z, Z, model.gamma), 0.0))
    exact = _kernel_svm_to_onnx(model, 12, sv_dtype=np.float32)
    got = ort.InferenceSession(exact).run(["probabilities"], {"features": X})[0]
    np.testing.assert_allclose(got, libsvm, atol=1e-4)
    assert model.n_features == 12 and model.predict_proba(X).shape == (len(X), 3)
    assert fit_svm(X, y, seed=0, pca=12).projection is None


def test_too_many_rows_for_a_kernel_matrix_fit_on_the_features(monkeypatch):
    """Past KERNEL_BYTES the SVM fits on the features (libsvm's own kernel, memory linear in
    the rows): the same support vectors, and the same graph and answers to rounding."""
    import ser.models.classical as classical

    rng = np.random.default_rng(5)
    y = np.repeat(np.arange(3), 50)
    X = (rng.normal(size=(len(y), 12)) + y[:, None]).astype(np.float32)
    small = fit_svm(X, y, seed=0, class_weight="balanced")
    monkeypatch.setattr(classical, "KERNEL_BYTES", 8 * len(y) ** 2 - 1)
    large = fit_svm(X, y, seed=0, class_weight="balanced")
    assert large.svc.kernel == "rbf" and small.svc.kernel == "precomputed"
    np.testing.assert_array_equal(large.svc.support_, small.svc.support_)
    np.testing.assert_allclose(large.support_vectors, small.support_vectors)
    np.testing.assert_allclose(large.predict_proba(X), small.predict_proba(X), atol=1e-4)


def test_unknown_model_is_a_clear_error():
    from ser.errors import SerError

    with pytest.raises(SerError, match="choose one of"):
        get_model_spec("transformer")


def test_logreg_pipeline_onnx_matches_sklearn():
    from ser.models.classical import fit_logreg

    rng = np.random.default_rng(1)
    X = rng.normal(size=(90, 12)).astype(np.float32)
    y = np.repeat([0, 1, 2], 30)
    X[:, 0] += 3 * y  # one informative column among noise
    model = fit_logreg(X, y, k_best=5, C=1.0)
    sess = ort.InferenceSession(svm_to_onnx(model, 12))
    got = sess.run(["probabilities"], {"features": X})[0]
    np.testing.assert_allclose(got, model.predict_proba(X), atol=1e-4)
    assert model.named_steps["select"].get_support()[0]
