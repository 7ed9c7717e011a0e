"""Gradient checks of the NumPy reference backend (the oracle) against finite differences.

Every legal combination of hidden activation x (output activation, loss) x penalty x depth x
mask of penalised layers x sample weights: the analytic gradient written by
``loss_and_gradient`` must agree with central differences of the objective it returns.
Closed-form facts, the noise generator, the optimisers, the perceptron and the comparison
with scikit-learn are in ``test_reference_facts.py``.
"""

import itertools
import zlib

import numpy as np
import pytest

from fastnn import _codes as codes
from fastnn import _kernels_ref as ref

N_SAMPLES, N_FEATURES = 7, 4
STEP = 1e-6  # central-difference step
MIN_PRE_ACTIVATION = 1e-3  # relu and |o| kinks stay farther than this from every a^k
TOLERANCE = 1e-6

HIDDEN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
OUTPUTS = (
    ("identity", "squared_error"),
    ("logistic", "squared_error"),
    ("logistic", "binary_log_loss"),
    ("softmax", "log_loss"),
)
DEPTHS = {0: (), 1: (5,), 2: (5, 3)}
PENALTY_WEIGHTS = {
    "alpha": 0.1,
    "l1_weight": 0.3,
    "kl_weight": 0.5,
    "kl_target": 0.2,
    "contraction_weight": 0.2,
}


def _penalties(hidden_activation, depth):
    """Penalties that make sense for this network: autoencoder ones need a hidden layer, KL
    needs logistic hidden units; 'all' combines every one that applies."""
    if depth == 0:
        return ["none", "l2"]
    autoencoder = ["l1", "contractive"] + (["kl"] if hidden_activation == "logistic" else [])
    return ["none", "l2", *autoencoder, "all"]


def _gradient_cases():
    for hidden, (output, loss), depth, weighted in itertools.product(
        HIDDEN_ACTIVATIONS, OUTPUTS, DEPTHS, (False, True)
    ):
        for penalty in _penalties(hidden, depth):
            # which hidden layers are penalised only matters with two of them
            masks = ["all", "code"] if depth == 2 and penalty not in ("none", "l2") else ["all"]
            for mask in masks:
                case = (hidden, output, loss, depth, penalty, mask, weighted)
                yield pytest.param(*case, id="-".join(map(str, case)))


def _penalty_arguments(penalty, hidden):
    """``(alpha, l1_weight, kl_weight, kl_target, contraction_weight)`` of a penalty name
    ('all' includes KL only for logistic hidden units)."""
    chosen = {
        "none": (),
        "l2": ("alpha",),
        "l1": ("l1_weight",),
        "kl": ("kl_weight",),
        "contractive": ("contraction_weight",),
        "all": ("alpha", "l1_weight", "contraction_weight")
        + (("kl_weight",) if hidden == "logistic" else ()),
    }[penalty]
    w = {name: (PENALTY_WEIGHTS[name] if name in chosen else 0.0) for name in PENALTY_WEIGHTS}
    w["kl_target"] = PENALTY_WEIGHTS["kl_target"]
    return w["alpha"], w["l1_weight"], w["kl_weight"], w["kl_target"], w["contraction_weight"]


def _targets(rng, output, loss, n_samples):
    if loss == "log_loss":
        return np.eye(3)[rng.integers(0, 3, n_samples)]
    if loss == "binary_log_loss":
        return rng.integers(0, 2, (n_samples, 2)).astype(np.float64)
    if output == "logistic":
        return rng.uniform(0.1, 0.9, (n_samples, 2))
    return rng.normal(size=(n_samples, 2))


def make_problem(case_id, hidden, output, loss, depth, weighted):
    """Small random data and parameters, seeded by the case, with every hidden
    pre-activation at least MIN_PRE_ACTIVATION away from 0 (the kinks of relu and |o|)."""
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    X = rng.normal(size=(N_SAMPLES, N_FEATURES))
    Y = _targets(rng, output, loss, N_SAMPLES)
    layer_units = np.array([N_FEATURES, *DEPTHS[depth], Y.shape[1]], dtype=np.int64)
    sample_weight = rng.uniform(0.2, 2.0, N_SAMPLES) if weighted else np.ones(N_SAMPLES)
    n_params = sum(int(a) * int(b) + int(b) for a, b in zip(layer_units[:-1], layer_units[1:]))
    code = codes.ACTIVATIONS[hidden]
    for _ in range(100):
        params = rng.normal(scale=0.6, size=n_params)
        pre_activations, _ = ref.forward_pass(
            params, layer_units, code, codes.ACTIVATIONS[output], X
        )
        if all(np.abs(a).min() > MIN_PRE_ACTIVATION for a in pre_activations[1:-1]):
            return X, Y, sample_weight, layer_units, params
    raise AssertionError("could not draw parameters away from the kinks")


def objective_function(layer_units, hidden, output, loss, X, Y, sample_weight, penalty, mask,
                       noise=codes.NO_NOISE, noise_level=0.0):
    """``f(params) -> (objective, gradient)`` through the reference's loss_and_gradient."""
    alpha, l1_weight, kl_weight, kl_target, contraction_weight = _penalty_arguments(penalty, hidden)
    n_hidden = len(layer_units) - 2
    penalized = np.ones(n_hidden, dtype=np.int64)
    if mask == "code":  # the narrowest hidden layer, the first on a tie
        penalized[:] = 0
        penalized[int(np.argmin(layer_units[1:-1]))] = 1

    def f(params):
        grad = np.empty_like(params)
        data, pen = ref.loss_and_gradient(
            params, layer_units, codes.ACTIVATIONS[hidden], codes.ACTIVATIONS[output],
            codes.LOSSES[loss], X, Y, sample_weight, alpha, l1_weight, kl_weight, kl_target,
            contraction_weight, penalized, noise, noise_level, 12345, 3, grad,
            ref.make_workspace(layer_units, len(X), params.dtype, contraction_weight != 0),
        )
        return data + pen, grad

    return f


def finite_difference_gradient(f, params):
    gradient = np.empty_like(params)
    for j in range(params.size):
        shift = np.zeros_like(params)
        shift[j] = STEP
        gradient[j] = (f(params + shift)[0] - f(params - shift)[0]) / (2 * STEP)
    return gradient


def relative_error(numeric, analytic):
    return np.linalg.norm(numeric - analytic) / np.linalg.norm(analytic)


@pytest.mark.parametrize("hidden, output, loss, depth, penalty, mask, weighted", _gradient_cases())
def test_gradient_matches_finite_differences(request, hidden, output, loss, depth, penalty, mask,
                                             weighted):
    X, Y, sample_weight, layer_units, params = make_problem(
        request.node.callspec.id, hidden, output, loss, depth, weighted
    )
    f = objective_function(layer_units, hidden, output, loss, X, Y, sample_weight, penalty, mask)
    analytic = f(params)[1]
    assert np.linalg.norm(analytic) > 1e-3  # a zero gradient would check nothing
    assert relative_error(finite_difference_gradient(f, params), analytic) < TOLERANCE


@pytest.mark.parametrize("noise", [codes.MASK_NOISE, codes.GAUSSIAN_NOISE])
def test_gradient_with_noisy_input_matches_finite_differences(noise):
    """The corrupted input is a pure function of the seeds, so the objective stays smooth."""
    case = ("logistic", "logistic", "squared_error", 2, "all", "all", True)
    X, Y, sample_weight, layer_units, params = make_problem(f"noise-{noise}", *case[:4], case[6])
    f = objective_function(layer_units, *case[:3], X, Y, sample_weight, "all", "all", noise, 0.3)
    clean = objective_function(layer_units, *case[:3], X, Y, sample_weight, "all", "all")
    analytic = f(params)[1]
    assert f(params)[0] != clean(params)[0]  # the noise did change the input
    assert relative_error(finite_difference_gradient(f, params), analytic) < TOLERANCE


def test_all_combinations_are_generated():
    """Guard against the generator silently dropping cases: count them by hand."""
    # per (output, weighting): depth 0: 2 penalties; depth 1: 5 (+1 kl for logistic);
    # depth 2: none, l2, and 3 (+1) autoencoder penalties (incl. 'all') x 2 masks.
    per_activation = {"logistic": 2 + 6 + (2 + 4 * 2)}
    per_other = 2 + 5 + (2 + 3 * 2)
    expected = len(OUTPUTS) * 2 * (per_activation["logistic"] + 3 * per_other)
    assert len(list(_gradient_cases())) == expected
