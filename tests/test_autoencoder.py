"""Autoencoder estimators: the lecture's facts, the API and bad input.

Gradients of the penalties and backend equivalence are checked elsewhere (the reference
gradient checks and the equivalence suite); here each test states one property of a trained
autoencoder, on data small enough to train in seconds.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastnn import (
    Autoencoder,
    ContractiveAutoencoder,
    DenoisingAutoencoder,
    SparseAutoencoder,
    load,
)
from fastnn._backend import kernels
from fastnn._codes import MASK_NOISE

# Most fits here stop at a small max_iter on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::fastnn._validation.ConvergenceWarning")


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8x8 digits scaled to [0, 1] (1797 x 64)."""
    datasets = pytest.importorskip("sklearn.datasets", reason="digits come from scikit-learn")
    return datasets.load_digits().data / 16.0


def low_rank_data(n_samples=300, n_features=10, rank=3, seed=0):
    """Data near a ``rank``-dimensional subspace, with well-separated variances."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0]
    scales = np.array([5.0, 3.0, 2.0] + [0.3] * (n_features - rank))
    return rng.normal(size=(n_samples, n_features)) * scales @ basis.T + 1.0


def activation_derivative(name, pre_activation):
    if name == "identity":
        return np.ones_like(pre_activation)
    if name == "logistic":
        out = 1.0 / (1.0 + np.exp(-pre_activation))
        return out * (1.0 - out)
    if name == "tanh":
        return 1.0 - np.tanh(pre_activation) ** 2
    return (pre_activation > 0).astype(pre_activation.dtype)


def activate(name, pre_activation):
    if name == "identity":
        return pre_activation
    if name == "logistic":
        return 1.0 / (1.0 + np.exp(-pre_activation))
    if name == "tanh":
        return np.tanh(pre_activation)
    return np.maximum(pre_activation, 0.0)


def encoder_jacobians(model, X, depth=None):
    """``d o^depth / d x`` for every row of ``X``, shape ``(n, units[depth], n_features)``.

    ``depth`` defaults to the code layer (the Jacobian of the code). Computed independently of fastnn's kernels from ``coefs_`` by the chain rule
    ``J^k = diag(g'(a^k)) W_{k-1}^T J^{k-1}``, ``J^0 = I``.
    """
    outputs = np.asarray(X, dtype=np.float64)
    jacobian = np.broadcast_to(np.eye(X.shape[1]), (X.shape[0], X.shape[1], X.shape[1]))
    depth = model.code_layer_ if depth is None else depth
    for W, b in zip(model.coefs_[:depth], model.intercepts_[:depth]):
        pre_activation = outputs @ W + b
        slopes = activation_derivative(model.activation, pre_activation)
        jacobian = slopes[:, :, None] * np.einsum("ij,njk->nik", W.T, jacobian)
        outputs = activate(model.activation, pre_activation)
    return jacobian


def mean_jacobian_norm(model, X):
    return float(np.mean(np.linalg.norm(encoder_jacobians(model, X), axis=(1, 2))))


def mask(X, level, seed=123):
    return np.where(np.random.default_rng(seed).random(X.shape) < level, 0.0, X)


# ---------------------------------------------------------------- the lecture's facts


def test_linear_autoencoder_learns_the_principal_subspace():
    linalg = pytest.importorskip("scipy.linalg")
    X = low_rank_data()
    k = 3
    model = Autoencoder(
        hidden_layer_sizes=(k,), activation="identity", solver="lbfgs", alpha=0.0,
        max_iter=5000, tol=1e-12, random_state=0,
    ).fit(X)

    centered = X - X.mean(axis=0)
    _, _, components = np.linalg.svd(centered, full_matrices=False)
    principal = components[:k].T
    decoder_span = model.coefs_[1].T  # rows of W_1 span the reconstruction's subspace
    encoder_span = model.coefs_[0]
    assert np.max(linalg.subspace_angles(decoder_span, principal)) < 1e-2
    assert np.max(linalg.subspace_angles(encoder_span, principal)) < 1e-2

    pca_reconstruction = centered @ principal @ principal.T + X.mean(axis=0)
    pca_error = np.mean((X - pca_reconstruction) ** 2)
    autoencoder_error = -model.score(X)
    assert pca_error <= autoencoder_error * (1 + 1e-9)
    assert autoencoder_error < 1.01 * pca_error


def test_kl_sparsity_drives_the_mean_activation_to_the_target(digits):
    target = 0.05
    options = dict(hidden_layer_sizes=(32,), activation="logistic", solver="adam",
                   learning_rate_init=0.01, batch_size=64, max_iter=60, random_state=0)
    sparse = Autoencoder(sparsity="kl", sparsity_target=target, sparsity_weight=1.0,
                         **options).fit(digits)
    dense = Autoencoder(**options).fit(digits)

    sparse_mean = sparse.transform(digits).mean()
    dense_mean = dense.transform(digits).mean()
    assert abs(sparse_mean - target) < 0.05
    assert dense_mean > 3 * sparse_mean


def test_contractive_penalty_lowers_the_jacobian_norm(digits):
    X = digits[:600]
    options = dict(hidden_layer_sizes=(24,), activation="logistic", solver="adam",
                   learning_rate_init=0.01, batch_size=64, max_iter=40, random_state=0)
    contractive = Autoencoder(contraction_weight=0.5, **options).fit(X)
    plain = Autoencoder(**options).fit(X)
    assert mean_jacobian_norm(contractive, X) < 0.7 * mean_jacobian_norm(plain, X)


def test_denoising_autoencoder_restores_masked_digits_better(digits):
    train, test = digits[:1400], digits[1400:]
    options = dict(hidden_layer_sizes=(32,), activation="relu", solver="adam",
                   learning_rate_init=0.005, batch_size=64, max_iter=60, random_state=0)
    denoising = Autoencoder(noise="mask", noise_level=0.3, **options).fit(train)
    plain = Autoencoder(**options).fit(train)

    corrupted = mask(test, 0.3)
    denoising_error = np.mean((denoising.predict(corrupted) - test) ** 2)
    plain_error = np.mean((plain.predict(corrupted) - test) ** 2)
    assert denoising_error < 0.8 * plain_error


# ------------------------------------------------------------------------- the API


def test_shapes_and_code_layer_on_every_backend(backend):
    X = low_rank_data(n_samples=60, n_features=8)
    model = Autoencoder(hidden_layer_sizes=(6, 3, 6), max_iter=3, random_state=0,
                        backend=backend).fit(X)
    assert model.code_layer_ == 2
    code = model.transform(X)
    assert code.shape == (60, 3)
    assert model.inverse_transform(code).shape == (60, 8)
    np.testing.assert_allclose(model.inverse_transform(code), model.predict(X), rtol=1e-12)
    assert model.n_features_in_ == 8
    assert model.n_layers_ == 5
    assert model.n_outputs_ == 8
    assert len(model.loss_curve_) == model.n_iter_ == 3


def test_transform_is_the_narrowest_layer_first_on_a_tie():
    X = low_rank_data(n_samples=40, n_features=8)
    model = Autoencoder(hidden_layer_sizes=(5, 3, 4, 3, 5), activation="tanh", max_iter=2,
                        random_state=0).fit(X)
    assert model.code_layer_ == 2
    expected = np.tanh(np.tanh(X @ model.coefs_[0] + model.intercepts_[0])
                       @ model.coefs_[1] + model.intercepts_[1])
    np.testing.assert_allclose(model.transform(X), expected, rtol=1e-10)


def test_score_is_minus_the_mean_squared_error_over_all_entries():
    X = low_rank_data(n_samples=50, n_features=6)
    model = Autoencoder(hidden_layer_sizes=(2,), max_iter=5, random_state=0).fit(X)
    assert model.score(X) == pytest.approx(-np.mean((X - model.predict(X)) ** 2), rel=1e-12)


def test_fit_transform_equals_fit_then_transform():
    X = low_rank_data(n_samples=50, n_features=6)
    options = dict(hidden_layer_sizes=(3,), max_iter=4, random_state=1)
    np.testing.assert_array_equal(
        Autoencoder(**options).fit_transform(X), Autoencoder(**options).fit(X).transform(X)
    )


def test_plain_autoencoder_follows_mlpregressor_trajectory():
    neural_network = pytest.importorskip("sklearn.neural_network")
    X = low_rank_data(n_samples=80, n_features=6)
    options = dict(hidden_layer_sizes=(3,), activation="tanh", solver="sgd",
                   learning_rate_init=0.01, batch_size=16, max_iter=5, random_state=3)
    ours = Autoencoder(**options).fit(X)
    with pytest.warns(Warning):  # max_iter reached before convergence
        theirs = neural_network.MLPRegressor(**options).fit(X, X)
    for mine, reference in zip(ours.coefs_ + ours.intercepts_,
                               theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, reference, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_options_combine_and_loss_curve_is_reconstruction_plus_penalty(solver):
    X = np.random.default_rng(0).random((80, 12))
    model = Autoencoder(
        hidden_layer_sizes=(8, 4, 8), activation="logistic", out_activation="logistic",
        solver=solver, sparsity="kl", sparsity_weight=0.5, noise="mask", noise_level=0.2,
        contraction_weight=0.1, alpha=1e-3, max_iter=6, random_state=0,
    ).fit(X)
    assert np.isfinite(model.score(X)) and model.loss_ > 0
    if solver == "lbfgs":  # no per-epoch curves with lbfgs, as scikit-learn's loss_curve_
        assert not hasattr(model, "penalty_curve_")
        return
    assert len(model.loss_curve_) == len(model.reconstruction_loss_curve_)
    assert len(model.loss_curve_) == len(model.penalty_curve_) > 0
    np.testing.assert_allclose(
        model.loss_curve_,
        np.add(model.reconstruction_loss_curve_, model.penalty_curve_),
        rtol=1e-12,
    )
    assert all(value > 0 for value in model.penalty_curve_)


@pytest.mark.parametrize("sparsity", ["l1", "kl"])
@pytest.mark.parametrize("penalized_layers", ["all", "code"])
def test_penalties_add_to_the_objective(sparsity, penalized_layers, backend):
    X = np.random.default_rng(1).random((40, 6))
    options = dict(hidden_layer_sizes=(5, 3, 5), activation="logistic", alpha=0.0,
                   solver="sgd", max_iter=2, random_state=0, backend=backend)
    plain = Autoencoder(**options).fit(X)
    sparse = Autoencoder(sparsity=sparsity, sparsity_weight=0.3,
                         penalized_layers=penalized_layers, **options).fit(X)
    assert np.all(np.asarray(plain.penalty_curve_) == 0.0)
    assert np.all(np.asarray(sparse.penalty_curve_) > 0.0)


def hidden_outputs(model, X):
    """Activations of every hidden layer, computed in NumPy from ``coefs_``."""
    outputs, layers = X, []
    for W, b in zip(model.coefs_[:-1], model.intercepts_[:-1]):
        outputs = activate(model.activation, outputs @ W + b)
        layers.append(outputs)
    return layers


def kl(rho, rho_hat):
    return rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))


@pytest.mark.parametrize("penalized_layers, layers", [("all", [0, 1]), ("code", [1])])
def test_penalties_apply_to_the_encoder_layers_only(penalized_layers, layers, backend):
    # One full batch with a negligible step: the first epoch's penalty is the penalty of
    # the initial weights, which NumPy recomputes here layer by layer.
    X = np.random.default_rng(8).random((30, 6))
    options = dict(hidden_layer_sizes=(5, 3, 4), activation="logistic", alpha=0.0,
                   solver="sgd", learning_rate_init=1e-300, momentum=0.0, batch_size=30,
                   max_iter=1, penalized_layers=penalized_layers, random_state=0,
                   backend=backend)
    l1 = Autoencoder(sparsity="l1", sparsity_weight=0.3, **options).fit(X)
    outputs = hidden_outputs(l1, X)
    expected = 0.3 * sum(np.abs(outputs[k]).sum(axis=1).mean() for k in layers)
    assert l1.penalty_curve_[0] == pytest.approx(expected, rel=1e-10)

    sparse = Autoencoder(sparsity="kl", sparsity_weight=0.7, sparsity_target=0.1,
                         **options).fit(X)
    outputs = hidden_outputs(sparse, X)
    expected = 0.7 * sum(kl(0.1, outputs[k].mean(axis=0)).sum() for k in layers)
    assert sparse.penalty_curve_[0] == pytest.approx(expected, rel=1e-10)

    contractive = Autoencoder(contraction_weight=0.2, **options).fit(X)
    squared_norms = [(encoder_jacobians(contractive, X, k + 1) ** 2).sum(axis=(1, 2))
                     for k in layers]
    expected = 0.2 * np.mean(np.sum(squared_norms, axis=0))
    assert contractive.penalty_curve_[0] == pytest.approx(expected, rel=1e-10)


def test_noise_is_fresh_each_epoch_and_the_loss_uses_the_clean_input():
    X = np.random.default_rng(2).random((30, 5))
    model = Autoencoder(hidden_layer_sizes=(3,), noise="mask", noise_level=0.5,
                        solver="sgd", learning_rate_init=1e-300, momentum=0.0, max_iter=3,
                        n_iter_no_change=100, random_state=0, alpha=0.0).fit(X)
    # With a negligible learning rate the parameters never move, so the loss changes only
    # because each epoch corrupts different entries.
    assert len(set(model.reconstruction_loss_curve_)) == 3
    k = kernels(model.backend)
    corrupted = np.empty_like(X)
    k.corrupt(X, np.arange(30, dtype=np.int64), MASK_NOISE, 0.5, model._noise_seed, 0,
              corrupted)
    reconstruction = model.predict(corrupted)
    expected = 0.5 * np.mean(np.sum((reconstruction - X) ** 2, axis=1))
    assert model.reconstruction_loss_curve_[0] == pytest.approx(expected, rel=1e-10)


def test_noise_does_not_change_the_initialisation():
    X = np.random.default_rng(3).random((30, 5))
    options = dict(hidden_layer_sizes=(3,), max_iter=1, solver="sgd",
                   learning_rate_init=1e-300, random_state=7)
    noisy = Autoencoder(noise="gaussian", noise_level=0.1, **options).fit(X)
    plain = Autoencoder(**options).fit(X)
    for a, b in zip(noisy.coefs_, plain.coefs_):
        np.testing.assert_array_equal(a, b)


def test_float32_stays_float32(backend):
    X = np.random.default_rng(4).random((40, 6)).astype(np.float32)
    model = Autoencoder(hidden_layer_sizes=(3,), max_iter=3, random_state=0,
                        contraction_weight=0.1, backend=backend).fit(X)
    assert model.coefs_[0].dtype == np.float32
    assert model.transform(X).dtype == np.float32
    assert model.predict(X).dtype == np.float32
    assert model.inverse_transform(model.transform(X)).dtype == np.float32


def test_partial_fit_continues_training():
    X = low_rank_data(n_samples=60, n_features=6)
    model = Autoencoder(hidden_layer_sizes=(3,), solver="adam", learning_rate_init=0.01,
                        random_state=0, noise="mask", noise_level=0.1)
    model.partial_fit(X)
    seed = model._noise_seed
    first = model.loss_curve_[0]
    for _ in range(20):
        model.partial_fit(X)
    assert model._noise_seed == seed
    assert len(model.loss_curve_) == model._epoch_count == 21
    assert model.loss_curve_[-1] < first


def test_early_stopping_on_reconstruction_score():
    X = low_rank_data(n_samples=200, n_features=6)
    model = Autoencoder(hidden_layer_sizes=(3,), early_stopping=True, max_iter=300,
                        learning_rate_init=0.01,
                        n_iter_no_change=3, tol=1e-2, random_state=0).fit(X)
    assert model.n_iter_ < 300
    assert len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert all(score <= 0 for score in model.validation_scores_)


def test_save_and_load_round_trip(tmp_path):
    X = low_rank_data(n_samples=40, n_features=6)
    model = Autoencoder(hidden_layer_sizes=(4, 2, 4), sparsity="l1", max_iter=3,
                        random_state=0).fit(X)
    path = tmp_path / "autoencoder.npz"
    model.save(path)
    loaded = load(path)
    assert type(loaded) is Autoencoder
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.transform(X), model.transform(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_loaded_denoising_model_continues_like_the_original(tmp_path):
    X = low_rank_data(n_samples=40, n_features=6)
    model = DenoisingAutoencoder(hidden_layer_sizes=(3,), solver="adam", random_state=0)
    model.partial_fit(X)
    path = tmp_path / "denoising.npz"
    model.save(path)
    loaded = load(path)
    model.partial_fit(X)
    loaded.partial_fit(X)
    assert loaded._noise_seed == model._noise_seed
    np.testing.assert_array_equal(loaded.coefs_[0], model.coefs_[0])
    assert loaded.reconstruction_loss_curve_ == model.reconstruction_loss_curve_


def test_convenience_classes_have_their_documented_defaults(digits):
    sparse = SparseAutoencoder()
    assert (sparse.sparsity, sparse.activation) == ("kl", "logistic")
    denoising = DenoisingAutoencoder()
    assert denoising.noise == "mask" and 0 < denoising.noise_level < 1
    contractive = ContractiveAutoencoder()
    assert contractive.contraction_weight > 0
    for model in (sparse, denoising, contractive):
        model.set_params(max_iter=2, random_state=0).fit(digits[:100])
        assert model.transform(digits[:5]).shape == (5, model.hidden_layer_sizes[0])


def test_clone_keeps_the_subclass_defaults():
    base = pytest.importorskip("sklearn.base")
    clone = base.clone(SparseAutoencoder(sparsity_target=0.1))
    assert type(clone) is SparseAutoencoder
    assert clone.sparsity_target == 0.1 and clone.sparsity == "kl"


# ------------------------------------------------------------------------ bad input


def test_kl_needs_units_in_the_unit_interval():
    X = np.random.default_rng(5).random((20, 4))
    with pytest.raises(ValueError, match="KL.*logistic"):
        Autoencoder(sparsity="kl", activation="tanh").fit(X)


@pytest.mark.parametrize(
    "params, words",
    [
        ({"sparsity": "l2"}, "sparsity"),
        ({"noise": "salt"}, "noise"),
        ({"noise": "mask", "noise_level": 1.0}, "noise_level"),
        ({"noise": "gaussian", "noise_level": -0.1}, "noise_level"),
        ({"sparsity": "kl", "activation": "logistic", "sparsity_target": 0.0},
         "sparsity_target"),
        ({"sparsity_weight": -1.0}, "sparsity_weight"),
        ({"contraction_weight": -0.5}, "contraction_weight"),
        ({"penalized_layers": "decoder"}, "penalized_layers"),
        ({"out_activation": "softmax"}, "out_activation"),
        ({"hidden_layer_sizes": ()}, "hidden layer"),
        ({"hidden_layer_sizes": (3, 0)}, "hidden_layer_sizes"),
        ({"solver": "newton"}, "solver"),
    ],
)
def test_bad_options_are_named(params, words):
    X = np.random.default_rng(6).random((20, 4))
    with pytest.raises(ValueError, match=words):
        Autoencoder(max_iter=1, **params).fit(X)


def test_bad_arrays_are_rejected():
    X = np.random.default_rng(7).random((20, 4))
    model = Autoencoder(hidden_layer_sizes=(2,), max_iter=2, random_state=0)
    with pytest.raises(ValueError, match="NaN|nan|infinit"):
        model.fit(np.where(X > 0.9, np.nan, X))
    with pytest.raises(ValueError, match="2D|2-D|dimension"):
        model.fit(X[0])
    model.fit(X)
    with pytest.raises(ValueError, match="features"):
        model.transform(X[:, :3])
    with pytest.raises(ValueError, match="code|2 "):
        model.inverse_transform(np.zeros((3, 5)))


def test_divergence_is_reported_and_the_model_kept():
    X = low_rank_data(n_samples=40, n_features=6)
    model = Autoencoder(hidden_layer_sizes=(3,), activation="identity", solver="sgd",
                        max_iter=2, random_state=0).fit(X)
    before = model._params.copy()
    model.set_params(learning_rate_init=1e6, warm_start=True, max_iter=50)
    with pytest.raises(ValueError, match="NaN or infinite.*smaller learning_rate_init"):
        model.fit(X * 1e6)
    np.testing.assert_array_equal(model._params, before)
    with pytest.raises(ValueError, match="sparsity_wieght"):
        model.set_params(sparsity_wieght=1.0)


def test_unfitted_model_says_so():
    with pytest.raises(Exception, match="not fitted|fit"):
        Autoencoder().transform(np.zeros((2, 3)))


# ------------------------------------------------------------------------- example


def test_example_saves_its_picture(data_dir, tmp_path):
    # tests/test_examples.py checks what the example prints; this checks its --png.
    pytest.importorskip("matplotlib")
    script = Path(__file__).resolve().parents[1] / "examples" / "autoencoders.py"
    picture = tmp_path / "grid.png"
    result = subprocess.run(
        [sys.executable, str(script), "--quick", "--data-dir", str(data_dir),
         "--png", str(picture)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert picture.stat().st_size > 1000
