"""Each fast backend (cython, numba) against the NumPy reference on identical inputs.

One parametrised suite over the ``fast_backend`` fixture. The equivalence contract (SPEC 3):
float64 parameters within ``rtol=1e-9`` (``atol=1e-12``) after 5 epochs, float32 within
``rtol=1e-4`` after 1 epoch; loss sums likewise; forward, corrupt and loss_and_gradient
equal; perceptron epochs identical (same ``n_updates``, weights equal to rounding).

The training cases form a covering design, built deterministically by :func:`design`:

- the full cross of hidden activation x (output activation, loss) x depth (0, 1, 2 hidden
  layers): 48 rows;
- the remaining factors -- optimiser (sgd, momentum, nesterov, adam), penalty (none, l2,
  l1, kl, contractive, combined = all four), noise (none, mask, gaussian), batch size (1,
  one that does not divide n, one larger than n), dtype, sample weights (ones, random) and
  penalised layers (all encoder layers, code layer only) -- are filled in greedily (AETG
  style: each free slot takes the level that covers the most pairs not yet covered), then
  rows are added until **every pair of levels of any two factors appears together in at
  least one row**, except the pairs that cannot be: the KL penalty (alone or combined)
  needs logistic hidden units, and no autoencoder penalty exists without a hidden layer.
  ``test_design_covers_all_pairs`` checks the claim.
"""

import collections
import contextlib
import itertools

import numpy as np
import pytest

from fastnn import _codes
from fastnn._backend import kernels
from fastnn._network import as_layer_units, glorot_uniform_init
from conftest import load_backend

try:
    import threadpoolctl
except ImportError:  # then BLAS keeps the threads it has
    threadpoolctl = None

N_SAMPLES = 13
N_FEATURES = 5
HIDDEN = {0: (), 1: (4,), 2: (4, 3)}

OUTPUT_LOSSES = {
    "identity-squared": (_codes.IDENTITY, _codes.SQUARED_ERROR, 3),
    "logistic-squared": (_codes.LOGISTIC, _codes.SQUARED_ERROR, 3),
    "logistic-binary_log": (_codes.LOGISTIC, _codes.BINARY_LOG_LOSS, 2),
    "softmax-log": (_codes.SOFTMAX, _codes.LOG_LOSS, 3),
}
PENALTIES = {  # alpha, l1_weight, kl_weight, contraction_weight
    "none": (0.0, 0.0, 0.0, 0.0),
    "l2": (0.3, 0.0, 0.0, 0.0),
    "l1": (0.0, 0.02, 0.0, 0.0),
    "kl": (0.0, 0.0, 0.05, 0.0),
    "contractive": (0.0, 0.0, 0.0, 0.05),
    "combined": (0.3, 0.02, 0.05, 0.05),
}
OPTIMIZERS = {  # optimizer, momentum, nesterov
    "sgd": (_codes.SGD, 0.0, False),
    "momentum": (_codes.SGD, 0.9, False),
    "nesterov": (_codes.SGD, 0.9, True),
    "adam": (_codes.ADAM, 0.0, False),
}
FACTORS = {
    "activation": ("identity", "logistic", "tanh", "relu"),
    "output_loss": tuple(OUTPUT_LOSSES),
    "depth": (0, 1, 2),
    "optimizer": tuple(OPTIMIZERS),
    "penalty": tuple(PENALTIES),
    "noise": ("none", "mask", "gaussian"),
    "batch_size": (1, 5, 20),  # 5 does not divide 13; 20 > 13
    "dtype": ("float64", "float32"),
    "weights": ("ones", "random"),
    "penalized": ("all", "code"),
}
FULL_CROSS = ("activation", "output_loss", "depth")


def _feasible(assignment):
    """False for a partial row that no valid case can complete."""
    penalty = assignment.get("penalty")
    if penalty in ("kl", "combined") and assignment.get("activation", "logistic") != "logistic":
        return False
    if penalty not in (None, "none", "l2") and assignment.get("depth", 1) == 0:
        return False
    return True


def _required_pairs():
    names = list(FACTORS)
    pairs = set()
    for f1, f2 in itertools.combinations(names, 2):
        for v1 in FACTORS[f1]:
            for v2 in FACTORS[f2]:
                if _feasible({f1: v1, f2: v2}):
                    pairs.add(((f1, v1), (f2, v2)))
    return pairs


def _pairs_of(row):
    names = list(FACTORS)
    return {((f1, row[f1]), (f2, row[f2])) for f1, f2 in itertools.combinations(names, 2)}


def _fill(row, uncovered, uses):
    """Give each free factor of ``row`` the feasible level covering most uncovered pairs
    (ties: the level used least so far, then the first)."""
    for name in FACTORS:
        if name in row:
            continue
        best, best_gain = None, None
        for level in FACTORS[name]:
            trial = {**row, name: level}
            if not _feasible(trial):
                continue
            gain = sum(
                1 for other, value in row.items()
                if tuple(sorted([(name, level), (other, value)], key=lambda p: list(FACTORS).index(p[0])))
                in uncovered
            )
            gain = (gain, -uses[name, level])
            if best_gain is None or gain > best_gain:
                best, best_gain = level, gain
        row[name] = best
    for name, level in row.items():
        uses[name, level] += 1
    return row


def design():
    """The covering design (deterministic): a list of dicts, one per training case."""
    uncovered = _required_pairs()
    uses = collections.Counter()
    rows = []
    for combo in itertools.product(*(FACTORS[name] for name in FULL_CROSS)):
        row = _fill(dict(zip(FULL_CROSS, combo)), uncovered, uses)
        uncovered -= _pairs_of(row)
        rows.append(row)
    while uncovered:
        (f1, v1), (f2, v2) = min(uncovered, key=repr)
        row = _fill({f1: v1, f2: v2}, uncovered, uses)
        uncovered -= _pairs_of(row)
        rows.append(row)
    return rows


DESIGN = design()


def _case_id(row):
    return "-".join(str(row[name]) for name in FACTORS)


def test_design_covers_all_pairs():
    covered = set().union(*(_pairs_of(row) for row in DESIGN))
    assert _required_pairs() <= covered
    assert all(_feasible(row) for row in DESIGN)
    crossed = {tuple(row[name] for name in FULL_CROSS) for row in DESIGN}
    assert len(crossed) == 4 * 4 * 3


# --------------------------------------------------------------------------------------
# One case: the network, data and hyper-parameters of a design row
# --------------------------------------------------------------------------------------

def _problem(row, seed=0, n_samples=N_SAMPLES, n_features=N_FEATURES, hidden=HIDDEN,
             n_outputs=None):
    """The arrays and hyper-parameters of design row ``row`` (sizes: the module's, unless
    given; ``n_outputs`` replaces the output/loss's own width)."""
    rng = np.random.RandomState(seed)
    dtype = np.dtype(row["dtype"])
    output_activation, loss, default_outputs = OUTPUT_LOSSES[row["output_loss"]]
    n_outputs = n_outputs or default_outputs
    units = as_layer_units(n_features, hidden[row["depth"]], n_outputs)
    activation = row["activation"]
    params = glorot_uniform_init(units, activation, rng, dtype)
    X = rng.uniform(0.0, 1.0, (n_samples, n_features)).astype(dtype)
    if loss == _codes.SQUARED_ERROR and output_activation == _codes.IDENTITY:
        Y = rng.normal(size=(n_samples, n_outputs))
    elif loss == _codes.SQUARED_ERROR:
        Y = rng.uniform(0.0, 1.0, (n_samples, n_outputs))
    elif loss == _codes.BINARY_LOG_LOSS:
        Y = rng.randint(0, 2, (n_samples, n_outputs))
    else:
        Y = np.eye(n_outputs)[rng.randint(0, n_outputs, n_samples)]
    Y = np.ascontiguousarray(Y, dtype=dtype)
    if row["weights"] == "ones":
        sample_weight = np.ones(n_samples, dtype=dtype)
    else:
        sample_weight = rng.uniform(0.2, 2.0, n_samples).astype(dtype)
    n_hidden = row["depth"]
    penalized = np.ones(n_hidden, dtype=np.int64)
    if row["penalized"] == "code" and n_hidden:
        penalized[:-1] = 0
    alpha, l1_weight, kl_weight, contraction_weight = PENALTIES[row["penalty"]]
    if n_hidden == 0:
        penalized = np.zeros(0, dtype=np.int64)
    noise = {"none": _codes.NO_NOISE, "mask": _codes.MASK_NOISE,
             "gaussian": _codes.GAUSSIAN_NOISE}[row["noise"]]
    noise_level = {"none": 0.0, "mask": 0.3, "gaussian": 0.2}[row["noise"]]
    optimizer, momentum, nesterov = OPTIMIZERS[row["optimizer"]]
    orders = [rng.permutation(n_samples).astype(np.int64) for _ in range(5)]
    return dict(
        units=units, params=params, X=X, Y=Y, sample_weight=sample_weight,
        hidden_activation=_codes.ACTIVATIONS[activation],
        output_activation=output_activation, loss=loss, optimizer=optimizer,
        learning_rate=0.01 if optimizer == _codes.ADAM else 0.1, momentum=momentum,
        nesterov=nesterov, alpha=alpha, l1_weight=l1_weight, kl_weight=kl_weight,
        kl_target=0.2, contraction_weight=contraction_weight, penalized=penalized,
        noise=noise, noise_level=noise_level, noise_seed=12345, orders=orders,
        batch_size=row["batch_size"],
    )


def _train(module, problem, n_epochs):
    """Run ``n_epochs`` of ``sgd_epoch``; returns params, optimiser state and loss sums."""
    p = problem
    params = p["params"].copy()
    velocity = np.zeros_like(params)
    second_moment = np.zeros_like(params)
    n_samples = p["X"].shape[0]
    rows = min(p["batch_size"], n_samples)
    contraction = p["contraction_weight"] > 0
    workspace = module.make_workspace(p["units"], rows, params.dtype, contraction)
    adam_step, sums = 0, []
    for epoch in range(n_epochs):
        loss_sum, penalty_sum, ok = module.sgd_epoch(
            params, p["units"], p["hidden_activation"], p["output_activation"], p["loss"],
            p["X"], p["Y"], p["sample_weight"], p["orders"][epoch], p["batch_size"],
            p["optimizer"], p["learning_rate"], p["momentum"], p["nesterov"], 0.9, 0.999,
            1e-8, adam_step, velocity, second_moment, p["alpha"], p["l1_weight"],
            p["kl_weight"], p["kl_target"], p["contraction_weight"], p["penalized"],
            p["noise"], p["noise_level"], p["noise_seed"], epoch, workspace,
        )
        assert ok == 1
        adam_step += -(-n_samples // p["batch_size"])
        sums.append((loss_sum, penalty_sum))
    return params, velocity, second_moment, np.array(sums)


def _one_blas_thread():
    """BLAS limited to one thread, so that the epoch is not shared between threads."""
    if threadpoolctl is None:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(1, user_api="blas")


def _tolerance(dtype):
    return dict(rtol=1e-9, atol=1e-12) if dtype == np.float64 else dict(rtol=1e-4, atol=1e-6)


def _loss_and_gradient(module, problem, epoch=3, **overrides):
    """``module.loss_and_gradient`` over all of the problem's rows (its hyper-parameters,
    unless ``overrides`` replaces some); returns ``(data, penalty, grad)``."""
    p = dict(problem, **overrides)
    grad = np.full_like(p["params"], np.nan)
    workspace = module.make_workspace(p["units"], p["X"].shape[0], p["params"].dtype,
                                      p["contraction_weight"] > 0)
    data, penalty = module.loss_and_gradient(
        p["params"], p["units"], p["hidden_activation"], p["output_activation"], p["loss"],
        p["X"], p["Y"], p["sample_weight"], p["alpha"], p["l1_weight"], p["kl_weight"],
        p["kl_target"], p["contraction_weight"], p["penalized"], p["noise"],
        p["noise_level"], p["noise_seed"], epoch, grad, workspace)
    return data, penalty, grad


@pytest.mark.parametrize("row", DESIGN, ids=_case_id)
def test_sgd_epochs_match_reference(fast_backend, row):
    problem = _problem(row)
    dtype = problem["params"].dtype
    n_epochs = 5 if dtype == np.float64 else 1
    expected = _train(kernels("numpy"), problem, n_epochs)
    got = _train(kernels(fast_backend), problem, n_epochs)
    tolerance = _tolerance(dtype)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        assert g.dtype == e.dtype, name
        np.testing.assert_allclose(g, e, err_msg=name, **tolerance)
    assert not np.array_equal(got[0], problem["params"])  # it did train


@pytest.mark.parametrize("row", DESIGN[::3], ids=_case_id)
def test_loss_and_gradient_match_reference(fast_backend, row):
    p = _problem(row, seed=1)
    data_ref, penalty_ref, grad_ref = _loss_and_gradient(kernels("numpy"), p)
    data, penalty, grad = _loss_and_gradient(kernels(fast_backend), p)
    tolerance = _tolerance(p["params"].dtype)
    np.testing.assert_allclose([data, penalty], [data_ref, penalty_ref], **tolerance)
    np.testing.assert_allclose(grad, grad_ref, **tolerance)
    assert isinstance(data, float) and isinstance(penalty, float)


@pytest.mark.parametrize("penalized", ["all", "code"])
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("activation", FACTORS["activation"])
def test_contraction_matches_reference_for_every_activation(fast_backend, activation, depth,
                                                            penalized):
    # The compiled backends compute one contracted encoder layer in closed form
    # (sum_j g'(a_j)^2 ||W_:j||^2) and deeper ones through per-sample Jacobians: both
    # routes, every activation, against the reference's Jacobians.
    row = {"activation": activation, "output_loss": "identity-squared", "depth": depth,
           "optimizer": "sgd", "penalty": "contractive", "noise": "none", "batch_size": 5,
           "dtype": "float64", "weights": "random", "penalized": penalized}
    p = _problem(row, seed=2)
    _, penalty_ref, grad_ref = _loss_and_gradient(kernels("numpy"), p, epoch=0)
    _, penalty, grad = _loss_and_gradient(kernels(fast_backend), p, epoch=0)
    assert penalty_ref > 0
    np.testing.assert_allclose(penalty, penalty_ref, rtol=1e-10)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("depth", [0, 1, 2])
@pytest.mark.parametrize("output_loss", list(OUTPUT_LOSSES))
def test_forward_matches_reference(fast_backend, dtype, depth, output_loss):
    rng = np.random.RandomState(depth)
    output_activation, _, n_outputs = OUTPUT_LOSSES[output_loss]
    units = as_layer_units(N_FEATURES, HIDDEN[depth], n_outputs)
    n_layers = len(units) - 1
    for activation in FACTORS["activation"]:
        params = glorot_uniform_init(units, activation, rng, dtype)
        # 300 rows: more than one row block of a blocked forward.
        X = rng.normal(size=(300, N_FEATURES)).astype(dtype)
        spans = {(0, n_layers)} | {(0, k) for k in range(1, n_layers)} | {
            (k, n_layers) for k in range(1, n_layers)}
        for first, last in sorted(spans):
            inputs = X if first == 0 else rng.uniform(size=(300, units[first])).astype(dtype)
            outs = []
            for module in (kernels("numpy"), kernels(fast_backend)):
                out = np.full((300, units[last]), np.nan, dtype=dtype)
                module.forward(params, units, _codes.ACTIVATIONS[activation],
                               output_activation, first, last, inputs, out)
                outs.append(out)
            np.testing.assert_allclose(outs[1], outs[0], **_tolerance(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("noise", [_codes.NO_NOISE, _codes.MASK_NOISE, _codes.GAUSSIAN_NOISE])
def test_corrupt_matches_reference(fast_backend, dtype, noise):
    rng = np.random.RandomState(7)
    X = rng.normal(size=(40, 9)).astype(dtype)
    sample_index = rng.permutation(1000)[:40].astype(np.int64)
    outs = []
    for module in (kernels("numpy"), kernels(fast_backend)):
        out = np.full_like(X, np.nan)
        module.corrupt(X, sample_index, noise, 0.4, 2**63 + 11, 17, out)
        outs.append(out)
    if noise == _codes.MASK_NOISE:
        np.testing.assert_array_equal(outs[1], outs[0])
        assert 0.2 < np.mean(outs[0] == 0) < 0.6
    else:
        # Gaussian noise goes through log and cos: equal to the last bits.
        np.testing.assert_allclose(outs[1], outs[0], rtol=1e-14 if dtype == np.float64 else 1e-6,
                                   atol=1e-15)
    if noise == _codes.NO_NOISE:
        np.testing.assert_array_equal(outs[1], X)


PERCEPTRON_CASES = {  # n_classes, l2_strength, l1_strength, fit_intercept, class/sample weights
    "binary": (1, 0.0, 0.0, True, False),
    # An odd number of samples: the compiled binary epoch goes two samples at a time.
    "binary-odd": (1, 0.0, 0.0, True, False),
    "binary-weighted-no-intercept": (1, 0.0, 0.0, False, True),
    "multiclass-l2": (3, 0.01, 0.0, True, False),
    "multiclass-l1-weighted": (3, 0.0, 0.01, True, True),
    "multiclass-elasticnet": (4, 0.005, 0.005, True, True),
    # X over 4 MB in either dtype: the compiled kernels prefetch rows (PREFETCH_BYTES).
    "binary-prefetched": (1, 0.0, 0.0, True, False),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", list(PERCEPTRON_CASES))
def test_perceptron_epochs_match_reference(fast_backend, case, dtype):
    n_classes, l2_strength, l1_strength, fit_intercept, weighted = PERCEPTRON_CASES[case]
    rng = np.random.RandomState(3)
    n_samples, n_features = {"binary-prefetched": (6000, 200), "binary-odd": (61, 7)}.get(
        case, (60, 7))
    X = rng.normal(size=(n_samples, n_features)).astype(dtype)
    labels = rng.randint(0, max(n_classes, 2), n_samples)
    if n_classes == 1:
        Y = np.where(labels == 1, 1.0, -1.0)[:, None]
    else:
        Y = np.where(labels[:, None] == np.arange(n_classes), 1.0, -1.0)
    Y = np.ascontiguousarray(Y, dtype=dtype)
    sample_weight = (rng.uniform(0.5, 2.0, n_samples) if weighted else np.ones(n_samples)).astype(dtype)
    weight_pos = (rng.uniform(0.5, 2.0, n_classes) if weighted else np.ones(n_classes)).astype(dtype)
    weight_neg = np.ones(n_classes, dtype=dtype)
    active = np.ones(n_classes, dtype=np.int64)
    if n_classes > 2:
        active[1] = 0
    states = []
    for module in (kernels("numpy"), kernels(fast_backend)):
        coef = np.zeros((n_classes, n_features), dtype=dtype)
        intercept = np.zeros(n_classes, dtype=dtype)
        l1_total = np.zeros(n_classes, dtype=dtype)
        l1_q = np.zeros((n_classes, n_features), dtype=dtype)
        n_updates = np.zeros(n_classes, dtype=np.int64)
        objectives = []
        for epoch in range(3):
            objective_sum = np.zeros(n_classes, dtype=np.float64)
            order = np.random.RandomState(epoch).permutation(n_samples).astype(np.int64)
            ok = module.perceptron_epoch(
                coef, intercept, X, Y, sample_weight, order, active, 0.5, fit_intercept,
                l2_strength, l1_strength, weight_pos, weight_neg, l1_total, l1_q, n_updates,
                objective_sum)
            assert ok == 1
            objectives.append(objective_sum)
        states.append((coef, intercept, l1_total, l1_q, n_updates, np.array(objectives)))
    expected, got = states
    np.testing.assert_array_equal(got[4], expected[4])
    assert expected[4].sum() > 0
    if n_classes > 2:
        assert expected[4][1] == 0 and not expected[0][1].any()
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    for name, e, g in zip(("coef", "intercept", "l1_total", "l1_q", "n_updates", "objective"),
                          expected, got):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol, err_msg=name)


def test_nonfinite_objective_stops_the_epoch(fast_backend):
    row = dict(DESIGN[0], dtype="float64", optimizer="sgd", batch_size=1)
    p = _problem(row)
    results = []
    for module in (kernels("numpy"), kernels(fast_backend)):
        params = p["params"].copy()
        velocity = np.zeros_like(params)
        workspace = module.make_workspace(p["units"], 1, params.dtype, False)
        results.append(module.sgd_epoch(
            params, p["units"], p["hidden_activation"], p["output_activation"], p["loss"],
            p["X"], p["Y"], p["sample_weight"], np.arange(N_SAMPLES, dtype=np.int64), 1,
            _codes.SGD, 1e200, 0.0, False, 0.9, 0.999, 1e-8, 0, velocity, velocity, 0.0,
            0.0, 0.0, 0.2, 0.0, p["penalized"], _codes.NO_NOISE, 0.0, 0, 0, workspace))
    assert results[0][2] == 0 and results[1][2] == 0


# --------------------------------------------------------------------------------------
# Batches whose sample weights sum to zero contribute nothing (docs/kernels.md)
# --------------------------------------------------------------------------------------

def _zero_weight_problem(optimizer, zero_rows, batch_size=5):
    """A float64 problem with one fixed order over 5 epochs and weight 0 on ``zero_rows``
    (positions in that order)."""
    row = dict(DESIGN[0], dtype="float64", optimizer=optimizer, activation="tanh",
               depth=1, penalty="l2", noise="none", weights="random", batch_size=batch_size)
    p = _problem(row)
    order = p["orders"][0]
    p["orders"] = [order] * 5
    p["sample_weight"] = p["sample_weight"].copy()
    p["sample_weight"][order[list(zero_rows)]] = 0
    return p


# The online update's blocks of 32 columns, then of 8 (narrow layers and the rest of wide
# ones), then a remainder: 53 = 32 + 8 + 8 + 5, 64 = 2 x 32, 12 = 8 + 4, 40 = 32 + 8 (no
# hidden layer, 40 outputs); and an output layer of one unit (a column).
ONLINE_HIDDEN = {0: (), 1: (53,), 2: (64, 12)}
ONLINE_SHAPES = {"wide-output": (0, 40), "one-output": (0, 1), "one-hidden": (1, None),
                 "two-hidden": (2, None)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("penalty", ["none", "l2"])
@pytest.mark.parametrize("weights", ["ones", "some-zero", "mask-noise"])
@pytest.mark.parametrize("shape", list(ONLINE_SHAPES))
def test_online_sgd_matches_reference_on_wide_layers(fast_backend, shape, weights, penalty,
                                                     dtype):
    # Online plain SGD updates a layer's weights a block of columns at a time, and makes
    # the next row's first-layer product in the same pass (csrc/_kernels.pyx,
    # _descend_outer). Rows of zero weight (two in a row, and last in the epoch) are
    # skipped by the next product; with noise the next row is corrupted first, so the
    # product is left to the next batch.
    depth, n_outputs = ONLINE_SHAPES[shape]
    row = dict(DESIGN[0], activation="tanh", depth=depth, optimizer="sgd", penalty=penalty,
               noise="mask" if weights == "mask-noise" else "none", batch_size=1,
               dtype=dtype, weights="ones",
               output_loss="identity-squared" if shape == "wide-output" else
               "logistic-binary_log")
    p = _problem(row, n_samples=23, n_features=70, hidden=ONLINE_HIDDEN,
                 n_outputs=n_outputs)
    if weights == "some-zero":
        order = p["orders"][0]
        p["sample_weight"] = p["sample_weight"].copy()
        p["sample_weight"][order[[3, 4, 10, 22]]] = 0
    n_epochs = 5 if dtype == "float64" else 1
    expected = _train(kernels("numpy"), p, n_epochs)
    got = _train(kernels(fast_backend), p, n_epochs)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **_tolerance(np.dtype(dtype)))
    assert not np.array_equal(got[0], p["params"])  # it did train


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("zero_rows", [range(5, 10), range(10, 13), (0, 3, 11)],
                         ids=["middle-batch", "last-batch", "mixed"])
def test_zero_weight_batches_match_reference(fast_backend, optimizer, zero_rows):
    problem = _zero_weight_problem(optimizer, zero_rows)
    expected = _train(kernels("numpy"), problem, 5)
    got = _train(kernels(fast_backend), problem, 5)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **_tolerance(np.float64))
        assert np.all(np.isfinite(g)), name
    assert not np.array_equal(got[0], problem["params"])  # the other batches trained


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "nesterov"])
def test_reference_skips_a_zero_weight_batch(optimizer):
    """With SGD the epoch equals one over the order without the zero batch's rows; an epoch
    of zero-weight batches only leaves everything as it was."""
    reference = kernels("numpy")
    p = _zero_weight_problem(optimizer, range(5, 10))
    order = p["orders"][0]
    trained = _train(reference, p, 5)
    p_without = dict(p, orders=[np.concatenate([order[:5], order[10:]])] * 5)
    without = _train(reference, p_without, 5)
    for name, e, g in zip(("params", "velocity"), without, trained):
        np.testing.assert_array_equal(g, e, err_msg=name)
    np.testing.assert_array_equal(trained[3], without[3])  # loss sums: the batch adds 0

    p_none = dict(p, sample_weight=np.zeros_like(p["sample_weight"]))
    params, velocity, _, sums = _train(reference, p_none, 2)
    np.testing.assert_array_equal(params, p["params"])
    np.testing.assert_array_equal(velocity, 0)
    np.testing.assert_array_equal(sums, 0)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_zero_weight_rows_train_as_if_absent(backend, optimizer):
    """One batch (batch_size > n) with some zero weights trains as the reference does on the
    data without those rows; the loss sums differ only by the row count n_B."""
    zero = np.array([1, 4, 8, 12])
    p = _zero_weight_problem(optimizer, (), batch_size=20)
    p["sample_weight"][zero] = 0
    p["orders"] = [np.arange(N_SAMPLES, dtype=np.int64)] * 5
    keep = np.setdiff1d(np.arange(N_SAMPLES), zero)
    p_absent = dict(p, X=p["X"][keep], Y=p["Y"][keep], sample_weight=p["sample_weight"][keep],
                    orders=[np.arange(len(keep), dtype=np.int64)] * 5)
    got = _train(kernels(backend), p, 5)
    expected = _train(kernels("numpy"), p_absent, 5)
    tolerance = _tolerance(np.float64)
    for name, e, g in zip(("params", "velocity", "second_moment"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **tolerance)
    np.testing.assert_allclose(got[3] / N_SAMPLES, expected[3] / len(keep), **tolerance)


def test_zero_weight_loss_and_gradient(backend):
    p = _problem(dict(DESIGN[0], dtype="float64", depth=1, penalty="l2"))
    module = kernels(backend)
    grad = np.full_like(p["params"], np.nan)
    workspace = module.make_workspace(p["units"], N_SAMPLES, np.float64, False)
    result = module.loss_and_gradient(
        p["params"], p["units"], p["hidden_activation"], p["output_activation"], p["loss"],
        p["X"], p["Y"], np.zeros(N_SAMPLES), p["alpha"], 0.0, 0.0, 0.2, 0.0, p["penalized"],
        _codes.NO_NOISE, 0.0, 0, 0, grad, workspace)
    assert result == (0.0, 0.0)
    np.testing.assert_array_equal(grad, 0)


def test_negative_seed_is_taken_mod_2_64(fast_backend):
    X = np.random.RandomState(0).normal(size=(6, 5))
    index = np.arange(6, dtype=np.int64)
    outs = []
    for module, seed in ((kernels("numpy"), -5), (kernels(fast_backend), -5),
                         (kernels(fast_backend), 2**64 - 5)):
        out = np.empty_like(X)
        module.corrupt(X, index, _codes.MASK_NOISE, 0.5, seed, 1, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_array_equal(outs[2], outs[0])


def test_cython_rejects_rows_outside_x():
    """The Cython kernels read rows through raw pointers: a bad index is an error there,
    not an out-of-bounds read (SPEC 4)."""
    module = load_backend("cython")
    p = _problem(dict(DESIGN[0], dtype="float64"))
    workspace = module.make_workspace(p["units"], 1, np.float64, False)
    params = p["params"].copy()
    velocity = np.zeros_like(params)
    for bad in ([0, N_SAMPLES], [-1]):
        with pytest.raises(ValueError, match="outside"):
            module.sgd_epoch(
                params, p["units"], p["hidden_activation"], p["output_activation"],
                p["loss"], p["X"], p["Y"], p["sample_weight"], np.array(bad, dtype=np.int64),
                1, _codes.SGD, 0.1, 0.0, False, 0.9, 0.999, 1e-8, 0, velocity, velocity,
                0.0, 0.0, 0.0, 0.2, 0.0, p["penalized"], _codes.NO_NOISE, 0.0, 0, 0,
                workspace)
    np.testing.assert_array_equal(params, p["params"])


def test_exp_and_tanh_are_within_rounding(fast_backend):
    """The vectorisable exp behind logistic, tanh and softmax, and the tanh built on it,
    in both compiled backends (their def twins)."""
    module = kernels(fast_backend)
    x = np.concatenate([np.linspace(-708, 709, 20001),
                        np.random.RandomState(0).normal(scale=5, size=5000)])
    ours = np.array([module._exp_twin(v) for v in x])
    assert np.max(np.abs(ours - np.exp(x)) / np.exp(x)) <= 2 * np.finfo(np.float64).eps
    a = np.random.RandomState(1).normal(scale=3, size=500)
    tanh = np.array([module._tanh_twin(v) for v in a])
    np.testing.assert_allclose(tanh, np.tanh(a), rtol=0, atol=4 * np.finfo(np.float64).eps)
    assert module._tanh_twin(-1e300) == -1.0 and module._tanh_twin(1e300) == 1.0


# --------------------------------------------------------------------------------------
# Batches with input columns that are zero throughout (csrc/_kernels.pyx, COMPACT_*):
# the compiled backends run the first layer on the used columns only
# --------------------------------------------------------------------------------------

SPARSE_SAMPLES = 150  # batches of 64 (large enough to compact), 64 and a short one of 22
SPARSE_FEATURES = 64
SPARSE_HIDDEN = {0: (), 1: (64,), 2: (64, 8)}


def _with_zero_columns(X, seed):
    """X with MNIST-like empty columns: eleven always zero (in runs, the first and last
    column among them), eight almost always (so that batches differ in what they use)."""
    X = X.copy()
    X[:, [0, 1, 2, 3, 4, 5, 30, 31, 32, 33, 63]] = 0
    rare = np.random.RandomState(seed).uniform(size=(X.shape[0], 8)) < 0.97
    X[:, 40:48][rare] = 0
    return X


def _sparse_problem(depth, optimizer="sgd", penalty="l2", noise="none", dtype="float64",
                    activation="relu", autoencoder=False):
    output_loss = "identity-squared" if depth == 0 or autoencoder else "softmax-log"
    row = {"activation": activation, "output_loss": output_loss, "depth": depth,
           "optimizer": optimizer, "penalty": penalty, "noise": noise, "batch_size": 64,
           "dtype": dtype, "weights": "random", "penalized": "all"}
    n_outputs = SPARSE_FEATURES if depth == 0 or autoencoder else None
    p = _problem(row, seed=3, n_samples=SPARSE_SAMPLES, n_features=SPARSE_FEATURES,
                 hidden=SPARSE_HIDDEN, n_outputs=n_outputs)
    p["X"] = _with_zero_columns(p["X"], seed=4)
    if autoencoder:
        p["Y"] = p["X"]  # one array, as Autoencoder.fit passes it
    return p


@pytest.mark.parametrize("case", ["dense", "runs", "late-rows", "all-zero", "share-7",
                                  "share-8"])
def test_used_columns_are_the_nonzero_ones(fast_backend, case):
    rng = np.random.RandomState(5)
    X = rng.uniform(0.5, 1.0, (40, 64))
    zero = {"dense": [], "runs": [0, 1, 2, 17, 40, 41, 62, 63], "late-rows": list(range(10)),
            "all-zero": list(range(64)), "share-7": list(range(7)),
            "share-8": list(range(8))}[case]
    X[:, zero] = 0
    if case == "late-rows":
        X[35, 3] = 1.0  # non-zero only in a row after the first checks
    used = kernels(fast_backend)._used_columns_twin(X)
    if case in ("dense", "share-7"):  # fewer than 1/8 of the columns unused: no compaction
        assert used is None
    else:
        np.testing.assert_array_equal(used, np.flatnonzero(X.any(axis=0)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_sparse_batches_match_reference(fast_backend, depth, optimizer, dtype):
    # Plain SGD updates the compacted weights in the product (L2 scales the unused rows);
    # momentum and Adam scatter a compacted gradient back into its rows.
    # On one thread: tests/test_threads.py shares these epochs between threads.
    p = _sparse_problem(depth, optimizer=optimizer, dtype=dtype)
    module = kernels(fast_backend)
    assert module._used_columns_twin(p["X"][p["orders"][0][:64]]) is not None
    n_epochs = 5 if dtype == "float64" else 1
    expected = _train(kernels("numpy"), p, n_epochs)
    with _one_blas_thread():
        got = _train(module, p, n_epochs)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **_tolerance(np.dtype(dtype)))


@pytest.mark.parametrize("case", ["none", "l1", "kl", "contractive", "combined", "mask",
                                  "gaussian", "autoencoder", "autoencoder-momentum",
                                  "autoencoder-float32"])
def test_sparse_batches_match_reference_with_penalties_and_noise(fast_backend, case):
    # Masking keeps zero columns zero (and adds some), Gaussian noise fills them in; the
    # contractive penalty turns compaction off. An autoencoder's target is its input.
    kwargs = {"none": dict(penalty="none"), "l1": dict(penalty="l1"),
              "kl": dict(penalty="kl", activation="logistic"),
              "contractive": dict(penalty="contractive"),
              "combined": dict(penalty="combined", activation="logistic"),
              "mask": dict(noise="mask"), "gaussian": dict(noise="gaussian"),
              "autoencoder": dict(autoencoder=True),
              "autoencoder-momentum": dict(autoencoder=True, optimizer="momentum"),
              "autoencoder-float32": dict(autoencoder=True, dtype="float32")}[case]
    depth = 1 if case.startswith("autoencoder") else 2
    p = _sparse_problem(depth, **kwargs)
    n_epochs = 5 if p["params"].dtype == np.float64 else 1
    expected = _train(kernels("numpy"), p, n_epochs)
    got = _train(kernels(fast_backend), p, n_epochs)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **_tolerance(p["params"].dtype))


@pytest.mark.parametrize("inputs", ["sparse", "all-zero"])
@pytest.mark.parametrize("depth", [0, 1, 2])
def test_sparse_loss_and_gradient_match_reference(fast_backend, depth, inputs):
    # One batch of all 150 rows; the gradient rows of unused columns are exactly zero.
    p = _sparse_problem(depth)
    if inputs == "all-zero":
        p["X"][:] = 0
    data_ref, _, grad_ref = _loss_and_gradient(kernels("numpy"), p, alpha=0.0)
    data, _, grad = _loss_and_gradient(kernels(fast_backend), p, alpha=0.0)
    np.testing.assert_allclose(data, data_ref, rtol=1e-10)
    np.testing.assert_allclose(grad, grad_ref, rtol=1e-9, atol=1e-12)
    first_layer = grad[:SPARSE_FEATURES * p["units"][1]].reshape(SPARSE_FEATURES, -1)
    unused = ~p["X"].any(axis=0)
    assert unused.sum() >= 11 and np.all(first_layer[unused] == 0)
