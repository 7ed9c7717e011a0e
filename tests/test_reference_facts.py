"""Closed-form facts about the NumPy reference backend (the oracle).

Each test pins a value that can be worked out by hand or by an independent implementation:
activations and losses at known points, penalties with closed forms, the splitmix64 noise
generator against a pure-Python-int version, the optimiser steps, a hand-worked perceptron
epoch, and scikit-learn's own training trajectories.
"""

import math
import warnings

import numpy as np
import pytest

from fastnn import _codes as codes
from fastnn import _kernels_ref as ref
from fastnn._network import as_layer_units, glorot_uniform_init, n_params, unpack

# --------------------------------------------------------------------------------------
# Kernel calls with keyword arguments over defaults
# --------------------------------------------------------------------------------------


def _problem(rng, hidden=(5, 3), n_samples=12, dtype=np.float64):
    """A tanh regressor 4 -> hidden -> 2 with sklearn's initialisation and random data."""
    layer_units = as_layer_units(4, hidden, 2)
    params = glorot_uniform_init(layer_units, "tanh", np.random.RandomState(0), dtype)
    X = rng.normal(size=(n_samples, 4)).astype(dtype)
    Y = rng.normal(size=(n_samples, 2)).astype(dtype)
    return layer_units, params, X, Y


def _options(params, layer_units, X, options):
    """Keyword arguments of the kernels: a tanh -> identity regressor with L2 only and no
    noise, overridden by ``options``."""
    arguments = dict(
        hidden_activation=codes.TANH, output_activation=codes.IDENTITY, loss=codes.SQUARED_ERROR,
        sample_weight=np.ones(len(X), X.dtype), alpha=0.01, l1_weight=0.0, kl_weight=0.0,
        kl_target=0.1, contraction_weight=0.0,
        penalized=np.zeros(len(layer_units) - 2, np.int64), noise=codes.NO_NOISE,
        noise_level=0.0, noise_seed=0, epoch=0,
    )
    arguments.update(options)
    arguments["workspace"] = ref.make_workspace(
        layer_units, len(X), params.dtype, arguments["contraction_weight"] != 0
    )
    return arguments


def run_sgd_epoch(params, layer_units, X, Y, **options):
    """``ref.sgd_epoch`` over all rows in order, one batch of plain SGD (lr 0.1) unless
    ``options`` say otherwise; returns ``(loss_sum, penalty_sum, ok)``."""
    optimiser = dict(
        order=np.arange(len(X), dtype=np.int64), batch_size=len(X), optimizer=codes.SGD,
        learning_rate=0.1, momentum=0.0, nesterov=False, beta_1=0.9, beta_2=0.999,
        epsilon=1e-8, adam_step=0, velocity=np.zeros_like(params),
        second_moment=np.zeros_like(params),
    )
    optimiser.update(options)
    arguments = _options(params, layer_units, X, optimiser)
    return ref.sgd_epoch(params, layer_units, X=X, Y=Y, **arguments)


def objective_and_gradient(params, layer_units, X, Y, **options):
    """``ref.loss_and_gradient`` with the same defaults; returns ``(D, P, gradient)``."""
    grad = np.empty_like(params)
    arguments = _options(params, layer_units, X, options)
    data, penalty = ref.loss_and_gradient(params, layer_units, X=X, Y=Y, grad=grad, **arguments)
    return data, penalty, grad


# --------------------------------------------------------------------------------------
# Activations and losses
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_rows_are_distributions_and_shift_invariant(rng, dtype):
    a = rng.normal(scale=5, size=(6, 4)).astype(dtype)
    p = ref.activation(codes.SOFTMAX, a)
    assert p.dtype == dtype
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=10 * np.finfo(dtype).eps)
    np.testing.assert_allclose(ref.activation(codes.SOFTMAX, a + dtype(100)), p, rtol=1e-5)
    # no overflow for huge inputs: exp is taken after subtracting the row max
    assert np.all(np.isfinite(ref.activation(codes.SOFTMAX, np.array([[1000.0, 0.0]]))))


def test_activations_at_known_points():
    a = np.array([-2.0, 0.0, 3.0])
    expected_logistic = 1 / (1 + np.exp([2.0, 0.0, -3.0]))
    np.testing.assert_allclose(ref.activation(codes.LOGISTIC, a), expected_logistic)
    np.testing.assert_array_equal(ref.activation(codes.RELU, a), [0, 0, 3])
    # relu's derivative is 0 at the kink, as scikit-learn's
    np.testing.assert_array_equal(ref.activation_derivative(codes.RELU, a), [0, 0, 1])
    np.testing.assert_allclose(ref.activation_derivative(codes.LOGISTIC, np.zeros(1)), [0.25])
    np.testing.assert_allclose(ref.activation_derivative(codes.TANH, np.zeros(1)), [1.0])
    np.testing.assert_allclose(ref.activation_second_derivative(codes.LOGISTIC, np.zeros(1)), [0])
    with pytest.raises(ValueError, match="no elementwise derivative"):
        ref.activation_derivative(codes.SOFTMAX, a)


@pytest.mark.parametrize("code", [codes.IDENTITY, codes.LOGISTIC, codes.TANH, codes.RELU])
def test_derivatives_match_finite_differences(code):
    a = np.array([-1.7, -0.4, 0.3, 1.1, 2.5])  # away from relu's kink
    h = 1e-6

    def central(f):
        return (f(code, a + h) - f(code, a - h)) / (2 * h)

    np.testing.assert_allclose(ref.activation_derivative(code, a), central(ref.activation),
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ref.activation_second_derivative(code, a),
                               central(ref.activation_derivative), rtol=1e-6, atol=1e-9)


def test_loss_of_a_perfect_prediction():
    Y = np.eye(3)[[0, 2, 1, 1]]
    assert ref.data_loss(codes.SQUARED_ERROR, Y, Y.copy()) == 0.0
    # clipping to [eps, 1-eps] leaves -log(1 - eps) ~ eps per sample and output
    assert 0 <= ref.data_loss(codes.LOG_LOSS, Y, Y.copy()) < 1e-15
    assert 0 <= ref.data_loss(codes.BINARY_LOG_LOSS, Y, Y.copy()) < 1e-14
    # a confident wrong answer is finite thanks to the clipping: -log(eps)
    wrong = ref.data_loss(codes.LOG_LOSS, np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert wrong == pytest.approx(-math.log(np.finfo(np.float64).eps))


def test_losses_at_hand_worked_values():
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    P = np.array([[0.5, 0.5], [0.25, 0.75]])
    np.testing.assert_allclose(ref.squared_error(Y, P), [0.25, 0.0625])
    np.testing.assert_allclose(ref.log_loss(Y, P), [math.log(2), -math.log(0.75)])
    np.testing.assert_allclose(ref.binary_log_loss(Y, P), [2 * math.log(2), -2 * math.log(0.75)])
    # weighted mean: (1 * 0.25 + 3 * 0.0625) / 4
    weighted = ref.data_loss(codes.SQUARED_ERROR, Y, P, np.array([1.0, 3.0]))
    assert weighted == pytest.approx(0.109375)
    criterion = ref.perceptron_criterion(np.array([1, -1, 1]), np.array([2.0, 0.5, -3.0]))
    np.testing.assert_array_equal(criterion, [0, 0.5, 3])


def test_output_delta_rejects_a_non_network_pair():
    with pytest.raises(ValueError, match="cannot be paired"):
        ref.output_delta(codes.SOFTMAX, codes.SQUARED_ERROR, np.zeros((1, 2)), np.zeros((1, 2)))


# --------------------------------------------------------------------------------------
# Penalties
# --------------------------------------------------------------------------------------


def test_kl_is_zero_with_zero_gradient_at_the_target():
    rho = 0.05
    o = np.full((5, 3), rho)
    value, gradient = ref.kl_sparsity_penalty(o, np.linspace(0.5, 2, 5), 3.0, rho)
    assert value == pytest.approx(0.0, abs=1e-15)
    np.testing.assert_allclose(gradient, 0, atol=1e-12)
    assert ref.kl_divergence(0.1, 0.3) > 0


def test_l1_activity_penalty_value():
    o = np.array([[1.0, -2.0], [0.5, 0.0]])
    value, gradient = ref.l1_activity_penalty(o, np.array([1.0, 3.0]), 2.0)
    assert value == pytest.approx(2.0 * (1 * 3.0 + 3 * 0.5) / 4)
    np.testing.assert_allclose(gradient, 2.0 / 4 * np.array([[1, -1], [3, 0]]))


def _network(rng, units, activation_code):
    layer_units = np.array(units, dtype=np.int64)
    params = rng.normal(size=n_params(layer_units))
    X = rng.normal(size=(6, units[0]))
    pre_activations, _ = ref.forward_pass(params, layer_units, activation_code, codes.IDENTITY, X)
    coefs, _ = unpack(params, layer_units)
    return layer_units, params, X, pre_activations, coefs


def test_contractive_penalty_of_one_identity_layer_is_frobenius_norm(rng):
    _, _, _, pre_activations, coefs = _network(rng, [4, 3, 4], codes.IDENTITY)
    weights = rng.uniform(1, 2, 6)
    value, _, _ = ref.contractive_penalty(coefs, pre_activations, codes.IDENTITY, [1], weights, 0.7)
    assert value == pytest.approx(0.7 * np.sum(coefs[0] ** 2), rel=1e-12)


def test_contractive_penalty_one_layer_closed_form(rng):
    """sum_j g'(a_j)^2 ||W_:j||^2, averaged over the samples with their weights."""
    _, _, _, pre_activations, coefs = _network(rng, [4, 3, 4], codes.LOGISTIC)
    weights = rng.uniform(1, 2, 6)
    slopes = ref.activation_derivative(codes.LOGISTIC, pre_activations[1])
    per_sample = (slopes ** 2) @ np.sum(coefs[0] ** 2, axis=0)
    value, _, _ = ref.contractive_penalty(coefs, pre_activations, codes.LOGISTIC, [1], weights, 1.0)
    assert value == pytest.approx(np.average(per_sample, weights=weights), rel=1e-12)


def test_deep_contractive_penalty_of_identity_layers(rng):
    _, _, _, pre_activations, coefs = _network(rng, [5, 4, 3, 5], codes.IDENTITY)
    weights = np.ones(6)
    deep_norm = np.sum((coefs[0] @ coefs[1]) ** 2)
    code_only, _, _ = ref.contractive_penalty(coefs, pre_activations, codes.IDENTITY, [0, 1],
                                              weights, 1.0)
    assert code_only == pytest.approx(deep_norm, rel=1e-12)
    both, _, _ = ref.contractive_penalty(coefs, pre_activations, codes.IDENTITY, [1, 1],
                                         weights, 1.0)
    assert both == pytest.approx(np.sum(coefs[0] ** 2) + deep_norm, rel=1e-12)


def test_encoder_jacobians_match_finite_differences_of_the_forward_pass(rng):
    layer_units, params, X, pre_activations, coefs = _network(rng, [4, 5, 3, 2], codes.TANH)
    jacobians, _ = ref.encoder_jacobians(coefs, pre_activations, codes.TANH, 2)
    h = 1e-6
    for j in range(4):
        shift = np.zeros(4)
        shift[j] = h
        plus = ref.forward_pass(params, layer_units, codes.TANH, codes.IDENTITY, X + shift)[1]
        minus = ref.forward_pass(params, layer_units, codes.TANH, codes.IDENTITY, X - shift)[1]
        for k in (1, 2):
            numeric = (plus[k] - minus[k]) / (2 * h)
            np.testing.assert_allclose(jacobians[k][:, :, j], numeric, rtol=1e-7, atol=1e-9)


def test_kl_penalty_needs_logistic_hidden_units(rng):
    layer_units, params, X, Y = _problem(rng, hidden=(3,))
    with pytest.raises(ValueError, match="logistic"):
        objective_and_gradient(params, layer_units, X, Y, kl_weight=1.0,
                               penalized=np.ones(1, np.int64))


# --------------------------------------------------------------------------------------
# Noise generator
# --------------------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _splitmix64_int(z):
    """Independent pure-Python-int splitmix64 (docs/kernels.md)."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _hash_int(seed, epoch, sample, feature):
    z = _splitmix64_int(seed)
    for counter in (epoch, sample, feature):
        z = _splitmix64_int(z ^ counter)
    return z


def test_splitmix64_known_value():
    # the first output of Vigna's splitmix64 seeded with 0 (a published test value)
    assert _splitmix64_int(0) == 0xE220A8397B1DCDAF
    assert int(ref.splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed, epoch, sample, feature", [
    (0, 0, 0, 0), (42, 1, 7, 3), (2**63 + 5, 99, 123456, 783), (_M64, 2**40, 3, 2**33),
])
def test_noise_hash_and_uniform_match_pure_python(seed, epoch, sample, feature):
    expected = _hash_int(seed, epoch, sample, feature)
    sample, feature = np.array([sample]), np.array([feature])
    assert int(ref.noise_hash(seed, epoch, sample, feature)[0]) == expected
    uniform = ref.noise_uniform(seed, epoch, sample, feature)[0]
    assert uniform == (expected >> 11) * 2.0 ** -53
    assert 0.0 <= uniform < 1.0


def test_noise_broadcasts_over_samples_and_features():
    grid = ref.noise_uniform(7, 2, np.arange(3)[:, None], np.arange(4)[None, :])
    assert grid.shape == (3, 4)
    assert grid[2, 3] == (_hash_int(7, 2, 2, 3) >> 11) * 2.0 ** -53


def test_mask_noise_rate_and_purity():
    X = np.ones((400, 50))
    index = np.arange(1000, 1400)
    out = np.empty_like(X)
    ref.corrupt(X, index, codes.MASK_NOISE, 0.3, 5, 1, out)
    assert set(np.unique(out)) == {0.0, 1.0}
    assert abs((out == 0).mean() - 0.3) < 0.01  # 20000 draws: sd ~ 0.003
    # a pure function of (seed, epoch, sample, feature)
    np.testing.assert_array_equal(ref.corrupted(X, index, codes.MASK_NOISE, 0.3, 5, 1), out)
    other_epoch = ref.corrupted(X, index, codes.MASK_NOISE, 0.3, 5, 2)
    assert (other_epoch != out).mean() > 0.3
    # the rows are identified by sample index, not by position
    one_row = ref.corrupted(X[:1], index[5:6], codes.MASK_NOISE, 0.3, 5, 1)
    np.testing.assert_array_equal(one_row, out[5:6])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_noise_moments(dtype):
    X = np.full((400, 50), 2.0, dtype=dtype)
    out = ref.corrupted(X, np.arange(400), codes.GAUSSIAN_NOISE, 0.5, 11, 0)
    assert out.dtype == dtype
    z = (out.astype(np.float64) - 2.0) / 0.5
    assert abs(z.mean()) < 0.03  # 20000 draws: sd of the mean ~ 0.007
    assert abs(z.std() - 1.0) < 0.03


def test_no_noise_returns_the_input_values():
    X = np.arange(6.0).reshape(2, 3)
    out = np.empty_like(X)
    ref.corrupt(X, np.arange(2), codes.NO_NOISE, 0.5, 1, 1, out)
    np.testing.assert_array_equal(out, X)


# --------------------------------------------------------------------------------------
# Kernels: forward, optimisers, epochs
# --------------------------------------------------------------------------------------


def test_forward_composes_over_layer_ranges(rng):
    layer_units, params, X, _ = _problem(rng)
    activations = ref.forward_pass(params, layer_units, codes.TANH, codes.IDENTITY, X)[1]

    def forward(first_layer, last_layer, inputs):
        out = np.empty((len(inputs), layer_units[last_layer]))
        ref.forward(params, layer_units, codes.TANH, codes.IDENTITY, first_layer, last_layer,
                    inputs, out)
        return out

    np.testing.assert_array_equal(forward(0, 3, X), activations[-1])
    np.testing.assert_allclose(forward(2, 3, forward(0, 2, X)), activations[-1], rtol=1e-14)


def test_make_workspace_is_an_empty_array_of_the_dtype():
    workspace = ref.make_workspace(np.array([3, 2], np.int64), 8, np.float32, True)
    assert workspace.dtype == np.float32 and workspace.shape == (0,)


def test_one_batch_sgd_epoch_is_one_gradient_step(rng):
    layer_units, params, X, Y = _problem(rng)
    data, penalty, grad = objective_and_gradient(params, layer_units, X, Y)
    expected = params - 0.1 * grad
    loss_sum, penalty_sum, ok = run_sgd_epoch(params, layer_units, X, Y)
    assert ok == 1
    np.testing.assert_allclose(params, expected, rtol=1e-14, atol=1e-15)
    assert loss_sum == pytest.approx(len(X) * data, rel=1e-14)
    assert penalty_sum == pytest.approx(len(X) * penalty, rel=1e-14)


def test_momentum_and_nesterov_follow_sklearn_velocity_form(rng):
    layer_units, params, X, Y = _problem(rng)
    _, _, grad = objective_and_gradient(params, layer_units, X, Y)
    velocity = rng.normal(size=params.shape)
    for nesterov in (False, True):
        p, v = params.copy(), velocity.copy()
        run_sgd_epoch(p, layer_units, X, Y, momentum=0.9, nesterov=nesterov, velocity=v)
        v_expected = 0.9 * velocity - 0.1 * grad
        np.testing.assert_allclose(v, v_expected, rtol=1e-13)
        step = 0.9 * v_expected - 0.1 * grad if nesterov else v_expected
        np.testing.assert_allclose(p, params + step, rtol=1e-13)


def test_first_adam_step_has_the_learning_rate_as_size(rng):
    layer_units, params, X, Y = _problem(rng)
    _, _, grad = objective_and_gradient(params, layer_units, X, Y)
    before = params.copy()
    run_sgd_epoch(params, layer_units, X, Y, optimizer=codes.ADAM, learning_rate=0.01)
    # m = 0.1 g, sqrt(v) = sqrt(0.001) |g|, lr_1 = lr sqrt(0.001) / 0.1, so the step is
    # lr g / (|g| + eps / sqrt(0.001)): the learning rate itself wherever |g| >> eps
    step = before - params
    expected = 0.01 * grad / (np.abs(grad) + 1e-8 / math.sqrt(0.001))
    np.testing.assert_allclose(step, expected, rtol=1e-10)
    big = np.abs(grad) > 1e-2
    assert big.sum() > 10
    np.testing.assert_allclose(step[big], 0.01 * np.sign(grad[big]), rtol=1e-4)


def test_adam_step_numbering_continues_from_adam_step(rng):
    """Two batches in one call equal two calls, the second with adam_step = 1."""
    layer_units, params, X, Y = _problem(rng)
    together = params.copy()
    run_sgd_epoch(together, layer_units, X, Y, batch_size=6, optimizer=codes.ADAM)
    split = params.copy()
    moments = dict(velocity=np.zeros_like(params), second_moment=np.zeros_like(params))
    run_sgd_epoch(split, layer_units, X[:6], Y[:6], optimizer=codes.ADAM, **moments)
    run_sgd_epoch(split, layer_units, X[6:], Y[6:], optimizer=codes.ADAM, adam_step=1, **moments)
    np.testing.assert_allclose(together, split, rtol=1e-14)


def test_epoch_loss_sum_weighs_batches_by_row_count(rng):
    layer_units, params, X, Y = _problem(rng, n_samples=10)
    expected = 0.0
    p = params.copy()
    for batch in (slice(0, 4), slice(4, 8), slice(8, 10)):
        data, _, grad = objective_and_gradient(p, layer_units, X[batch], Y[batch])
        expected += len(X[batch]) * data
        p -= 0.1 * grad
    loss_sum, _, ok = run_sgd_epoch(params, layer_units, X, Y, batch_size=4)
    assert ok == 1
    assert loss_sum == pytest.approx(expected, rel=1e-13)
    np.testing.assert_allclose(params, p, rtol=1e-13)


def test_divergence_is_reported_not_hidden(rng):
    layer_units, params, X, Y = _problem(rng, hidden=())
    *_, ok = run_sgd_epoch(params, layer_units, X * 1e100, Y, batch_size=2, learning_rate=1e200)
    assert ok == 0


def test_float32_keeps_dtype_and_agrees_with_float64(rng):
    layer_units, params64, X64, Y64 = _problem(rng)
    params32 = params64.astype(np.float32)
    velocity32 = np.zeros_like(params32)
    result32 = run_sgd_epoch(params32, layer_units, X64.astype(np.float32),
                             Y64.astype(np.float32), batch_size=5, momentum=0.9,
                             velocity=velocity32)
    result64 = run_sgd_epoch(params64, layer_units, X64, Y64, batch_size=5, momentum=0.9)
    assert params32.dtype == np.float32 and velocity32.dtype == np.float32
    assert all(isinstance(value, float) for value in result32[:2])
    np.testing.assert_allclose(params32, params64, rtol=1e-4, atol=1e-6)
    assert result32[0] == pytest.approx(result64[0], rel=1e-5)


# --------------------------------------------------------------------------------------
# Autoencoder batches: noise indices and float32
# --------------------------------------------------------------------------------------

_AUTOENCODER = dict(
    hidden_activation=codes.LOGISTIC, output_activation=codes.LOGISTIC,
    loss=codes.SQUARED_ERROR, alpha=1e-3, l1_weight=0.1, kl_weight=0.2, kl_target=0.1,
    contraction_weight=0.05, penalized=np.array([1, 1], np.int64),
)
_NOISE = dict(noise=codes.MASK_NOISE, noise_level=0.25, noise_seed=77, epoch=4)


def _autoencoder(rng, seed, dtype=np.float64):
    layer_units = as_layer_units(6, (4, 3), 6)
    params = glorot_uniform_init(layer_units, "logistic", np.random.RandomState(seed), dtype)
    return layer_units, params, rng.uniform(size=(9, 6)).astype(dtype)


def test_sgd_epoch_corrupts_rows_by_their_index_in_x(rng):
    layer_units, params, X = _autoencoder(rng, 1)
    order = np.array([4, 0, 7, 2, 8], dtype=np.int64)
    X_noisy = ref.corrupted(X[order], order, **_NOISE)
    data, penalty, grad = objective_and_gradient(params, layer_units, X_noisy, X[order],
                                                 **_AUTOENCODER)
    expected = params - 0.5 * grad
    loss_sum, penalty_sum, ok = run_sgd_epoch(params, layer_units, X, X, order=order,
                                              batch_size=len(order), learning_rate=0.5,
                                              **_AUTOENCODER, **_NOISE)
    assert ok == 1
    np.testing.assert_allclose(params, expected, rtol=1e-13)
    assert (loss_sum, penalty_sum) == pytest.approx((5 * data, 5 * penalty), rel=1e-13)


def test_float32_autoencoder_gradient_keeps_dtype_and_agrees_with_float64(rng):
    layer_units, params64, X64 = _autoencoder(rng, 2)
    params32, X32 = params64.astype(np.float32), X64.astype(np.float32)
    *result64, grad64 = objective_and_gradient(params64, layer_units, X64, X64,
                                               **_AUTOENCODER, **_NOISE)
    *result32, grad32 = objective_and_gradient(params32, layer_units, X32, X32,
                                               **_AUTOENCODER, **_NOISE)
    assert all(isinstance(value, float) for value in result32)
    np.testing.assert_allclose(result32, result64, rtol=1e-5)
    assert np.linalg.norm(grad32 - grad64) / np.linalg.norm(grad64) < 1e-5
    activations = ref.forward_pass(params32, layer_units, codes.LOGISTIC, codes.LOGISTIC, X32)[1]
    assert all(o.dtype == np.float32 for o in activations)


# --------------------------------------------------------------------------------------
# Perceptron
# --------------------------------------------------------------------------------------


def run_perceptron_epoch(coef, intercept, X, Y, order, active=None, sample_weight=None,
                         eta=1.0, l2_strength=0.0, l1_strength=0.0, state=None):
    """``ref.perceptron_epoch`` with unit class weights; ``state`` carries ``l1_total``,
    ``l1_q``, ``n_updates`` and ``objective_sum`` across epochs. Returns ``(ok, state)``."""
    n_classes = coef.shape[0]
    if state is None:
        state = dict(l1_total=np.zeros(n_classes), l1_q=np.zeros_like(coef),
                     n_updates=np.zeros(n_classes, np.int64), objective_sum=np.zeros(n_classes))
    ok = ref.perceptron_epoch(
        coef, intercept, X, Y,
        np.ones(len(X)) if sample_weight is None else sample_weight,
        np.asarray(order, np.int64),
        np.ones(n_classes, np.int64) if active is None else np.asarray(active, np.int64),
        eta, True, l2_strength, l1_strength, np.ones(n_classes), np.ones(n_classes), **state,
    )
    return ok, state


def test_perceptron_epoch_by_hand():
    # w = 0, b = 0. x0 = (2, 1), y = +1: y p = 0 <= 0 -> w = (2, 1), b = 1.
    # x1 = (-1, -2), y = -1: p = -3, y p = 3 > 0 -> no change.
    # x2 = (1, -1), y = -1: p = 2, y p = -2 -> w = (1, 2), b = 0, criterion 2.
    # x0 again: p = 4 > 0 -> no change. Class 1 is inactive: untouched.
    X = np.array([[2.0, 1.0], [-1.0, -2.0], [1.0, -1.0]])
    Y = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]])
    coef, intercept = np.zeros((2, 2)), np.zeros(2)
    ok, state = run_perceptron_epoch(coef, intercept, X, Y, [0, 1, 2, 0], active=[1, 0])
    assert ok == 1
    np.testing.assert_array_equal(coef, [[1.0, 2.0], [0.0, 0.0]])
    np.testing.assert_array_equal(intercept, [0.0, 0.0])
    np.testing.assert_array_equal(state["n_updates"], [2, 0])
    np.testing.assert_array_equal(state["objective_sum"], [2.0, 0.0])


def test_perceptron_zero_sample_weight_makes_no_update():
    coef, intercept = np.zeros((1, 2)), np.zeros(1)
    _, state = run_perceptron_epoch(coef, intercept, np.ones((1, 2)), np.ones((1, 1)), [0],
                                    sample_weight=np.zeros(1))
    assert state["n_updates"][0] == 0 and not coef.any()


@pytest.mark.parametrize("penalty", [None, "l2", "l1", "elasticnet"])
def test_perceptron_epochs_equal_sklearn(rng, penalty):
    linear_model = pytest.importorskip("sklearn.linear_model")
    X = rng.normal(size=(60, 5))
    y = rng.integers(0, 3, 60)
    Y = np.where(y[:, None] == np.arange(3)[None, :], 1.0, -1.0)
    alpha, l1_ratio = (0.0, 0.15) if penalty is None else (1e-3, 0.15)
    l1_share = {None: 0.0, "l2": 0.0, "l1": 1.0, "elasticnet": l1_ratio}[penalty]
    coef, intercept, state = np.zeros((3, 5)), np.zeros(3), None
    for _ in range(3):
        ok, state = run_perceptron_epoch(coef, intercept, X, Y, np.arange(60),
                                         l2_strength=(1 - l1_share) * alpha,
                                         l1_strength=l1_share * alpha, state=state)
        assert ok == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = linear_model.Perceptron(penalty=penalty, alpha=alpha, l1_ratio=l1_ratio,
                                         max_iter=3, tol=None, shuffle=False).fit(X, y)
    np.testing.assert_allclose(coef, theirs.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(intercept, theirs.intercept_, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------------------
# scikit-learn's MLP trajectory
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("solver, activation, n_classes, weighted", [
    ("sgd", "tanh", 3, False),
    ("adam", "relu", 3, False),
    ("sgd", "logistic", 2, True),
    ("adam", "tanh", 2, False),
])
def test_sgd_epoch_follows_sklearn_mlp_classifier(rng, solver, activation, n_classes, weighted):
    neural_network = pytest.importorskip("sklearn.neural_network")
    n_samples, batch_size = 70, 16
    X = rng.normal(size=(n_samples, 4))
    y = rng.integers(0, n_classes, n_samples)
    sample_weight = rng.uniform(0.5, 2.0, n_samples) if weighted else None
    theirs = neural_network.MLPClassifier(
        hidden_layer_sizes=(6, 5), activation=activation, solver=solver, batch_size=batch_size,
        learning_rate_init=0.05, momentum=0.9, alpha=1e-3, max_iter=3, shuffle=False,
        random_state=0, tol=0.0, n_iter_no_change=100,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning after 3 epochs
        theirs.fit(X, y, sample_weight=sample_weight)

    if n_classes == 2:
        Y, output, loss = (y[:, None] == 1).astype(float), codes.LOGISTIC, codes.BINARY_LOG_LOSS
    else:
        Y, output, loss = np.eye(n_classes)[y], codes.SOFTMAX, codes.LOG_LOSS
    layer_units = as_layer_units(4, (6, 5), Y.shape[1])
    params = glorot_uniform_init(layer_units, activation, np.random.RandomState(0), np.float64)
    options = dict(
        hidden_activation=codes.ACTIVATIONS[activation], output_activation=output, loss=loss,
        sample_weight=np.ones(n_samples) if sample_weight is None else sample_weight,
        batch_size=batch_size, optimizer=codes.OPTIMIZERS[solver], learning_rate=0.05,
        momentum=0.9, nesterov=True, alpha=1e-3, velocity=np.zeros_like(params),
        second_moment=np.zeros_like(params),
    )
    curve = []
    for epoch in range(3):
        adam_step = epoch * math.ceil(n_samples / batch_size)
        loss_sum, penalty_sum, ok = run_sgd_epoch(params, layer_units, X, Y, epoch=epoch,
                                                  adam_step=adam_step, **options)
        assert ok == 1
        curve.append((loss_sum + penalty_sum) / n_samples)

    np.testing.assert_allclose(curve, theirs.loss_curve_, rtol=1e-6)
    coefs, intercepts = unpack(params, layer_units)
    for ours, their in zip(coefs + intercepts, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(ours, their, rtol=1e-6, atol=1e-12)
