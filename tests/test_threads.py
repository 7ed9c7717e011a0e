"""An epoch shared between threads (docs/kernels.md, "Threads") against the reference.

When BLAS may use several threads, a compiled backend splits each large batch between that
many threads of its own (rows up to the deltas, weight rows for the gradients and the
update) and calls BLAS single-threaded from each. These tests set BLAS's thread count with
threadpoolctl, check that the epoch is indeed shared (``_team_size_twin``), and compare
the result with the NumPy reference and with the same epoch on one thread. Three threads
on this two-core machine also cover more threads than cores.
"""

import numpy as np
import pytest

from fastnn import _blas_threads, _codes
from fastnn._backend import kernels
from test_equivalence import _sparse_problem, _tolerance, _train

threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl sets BLAS's threads")

pytestmark = pytest.mark.skipif(
    _blas_threads.controls() is None,
    reason="no thread controls found for scipy's BLAS: every epoch runs on one thread")


def _train_on(module, problem, n_epochs, threads):
    """``_train`` with BLAS limited to ``threads``; asserts the epoch's team size."""
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        expected_size = min(threads, problem["batch_size"] // 16)
        assert module._team_size_twin(problem["units"], problem["batch_size"]) == expected_size
        return _train(module, problem, n_epochs)


CASES = {
    "sgd": dict(),  # plain SGD: the update in the product, per member's weight rows
    "momentum": dict(optimizer="momentum"),
    "adam": dict(optimizer="adam"),
    "depth-1": dict(depth=1),
    "mask": dict(noise="mask"),
    "gaussian": dict(noise="gaussian"),
    "l2-off": dict(penalty="none"),
    "autoencoder": dict(depth=1, autoencoder=True),
    "float32": dict(dtype="float32"),
}


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_shared_epochs_match_reference(fast_backend, case, threads):
    kwargs = dict(CASES[case])
    p = _sparse_problem(kwargs.pop("depth", 2), **kwargs)
    n_epochs = 5 if p["params"].dtype == np.float64 else 1
    expected = _train(kernels("numpy"), p, n_epochs)
    got = _train_on(kernels(fast_backend), p, n_epochs, threads)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **_tolerance(p["params"].dtype))


@pytest.mark.parametrize("tail", ["one-row", "fewer-rows-than-threads", "zero-weight"])
def test_short_and_empty_batches(fast_backend, tail):
    # The last batch of one row (the outer-product update, one member's row), one of two
    # rows shared by three members, and a batch whose weights sum to zero (skipped by
    # every member alike).
    p = _sparse_problem(2, optimizer="momentum")
    if tail == "one-row":
        p["orders"] = [order[:129] for order in p["orders"]]
    elif tail == "fewer-rows-than-threads":
        p["orders"] = [order[:130] for order in p["orders"]]
    else:
        p["sample_weight"][p["orders"][0][64:128]] = 0
    expected = _train(kernels("numpy"), p, 5)
    got = _train_on(kernels(fast_backend), p, 5, 3)
    for name, e, g in zip(("params", "velocity", "second_moment", "loss sums"), expected, got):
        np.testing.assert_allclose(g, e, err_msg=name, **_tolerance(np.dtype("float64")))


def test_shared_epoch_equals_one_thread(fast_backend):
    # Each member computes whole entries, as one thread would: the products of a part of
    # the rows (or of the weight rows) give the same numbers, to rounding.
    p = _sparse_problem(2, optimizer="adam")
    alone = _train_on(kernels(fast_backend), p, 2, 1)
    shared = _train_on(kernels(fast_backend), p, 2, 2)
    for e, g in zip(alone, shared):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-15)


def test_blas_threads_restored_and_divergence_stops_every_member(fast_backend):
    # A learning rate that overflows: the epoch reports it (ok = 0) from every member at
    # the same batch, with no member left waiting, and BLAS gets its threads back.
    module = kernels(fast_backend)
    p = _sparse_problem(2, penalty="none")
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert module._team_size_twin(p["units"], p["batch_size"]) == 2
        workspace = module.make_workspace(p["units"], 64, np.float64, False)
        params = p["params"].copy()
        velocity = np.zeros_like(params)
        _, _, ok = module.sgd_epoch(
            params, p["units"], p["hidden_activation"], p["output_activation"], p["loss"],
            p["X"], p["Y"], p["sample_weight"], p["orders"][0], 64, _codes.SGD, 1e300, 0.0,
            False, 0.9, 0.999, 1e-8, 0, velocity, velocity.copy(), 0.0, 0.0, 0.0, 0.2, 0.0,
            p["penalized"], _codes.NO_NOISE, 0.0, 1, 0, workspace)
        assert ok == 0
        assert _blas_threads.blas_threads() == 2


@pytest.mark.parametrize("penalty", ["l1", "kl", "contractive"])
def test_whole_batch_penalties_stay_on_one_thread(fast_backend, penalty):
    # The KL penalty needs the batch's mean activations, the contraction every row's
    # Jacobian: their epochs are not shared (nor L1's, which rides with them).
    module = kernels(fast_backend)
    units = np.array([64, 64, 8, 64])
    kwargs = {"l1": dict(l1_weight=0.1), "kl": dict(kl_weight=0.1),
              "contractive": dict(contraction=True)}[penalty]
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert module._team_size_twin(units, 64) == 2
        assert module._team_size_twin(units, 64, **kwargs) == 1


def test_small_batches_stay_on_one_thread(fast_backend):
    # Below the compaction's size rule (2^18 multiply-adds in the first layer), or below
    # 16 rows per member, sharing costs more than it saves.
    module = kernels(fast_backend)
    with threadpoolctl.threadpool_limits(4, user_api="blas"):
        assert module._team_size_twin(np.array([64, 64, 10]), 32) == 1   # W3's shape
        assert module._team_size_twin(np.array([64, 64, 10]), 64) == 4
        assert module._team_size_twin(np.array([64, 128, 10]), 48) == 3
        assert module._team_size_twin(np.array([784, 256, 10]), 1) == 1
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert module._team_size_twin(np.array([784, 256, 128, 10]), 512) == 1


def _perceptron_run(module, X, Y, orders, threads):
    """One class, no penalty, epochs over ``orders`` with BLAS limited to ``threads``:
    (coef, intercept, n_updates, objective per epoch)."""
    dtype = X.dtype
    coef = np.zeros((1, X.shape[1]), dtype=dtype)
    intercept = np.zeros(1, dtype=dtype)
    n_updates = np.zeros(1, dtype=np.int64)
    ones = np.ones(1, dtype=dtype)
    objectives = []
    with threadpoolctl.threadpool_limits(threads, user_api="blas"):
        for order in orders:
            objective_sum = np.zeros(1)
            assert module.perceptron_epoch(
                coef, intercept, X, Y, np.ones(len(X), dtype=dtype), order,
                np.ones(1, dtype=np.int64), 0.5, True, 0.0, 0.0, ones, ones,
                np.zeros(1, dtype=dtype), np.zeros_like(coef), n_updates, objective_sum) == 1
            objectives.append(objective_sum[0])
    return coef, intercept, n_updates, np.array(objectives)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("labels", ["separated", "noisy", "late-1%", "late-5%"])
def test_two_thread_perceptron_epoch_is_the_one_thread_epoch(fast_backend, dtype, labels):
    # One class on an input over 4 MB: with two BLAS threads a helper takes the margins of
    # every other block of 1024 samples (csrc/_kernels.pyx, PerceptronSplit). "separated":
    # later epochs update rarely, so its margins are used; "noisy" (1% of labels flipped):
    # updates in every block, the helper never starts; "late" (the same order every epoch,
    # 1% or 5% of the labels flipped in blocks 3 to 7 only, the first sample of each
    # among them): the first blocks are quiet, the helper starts, and the thread's updates
    # make the helper's next margins stale, a flipped sample's among them. Using stale
    # margins anyway failed "late" cases of both compiled backends in every run tried
    # (which ones, the race between the threads decides); the right code is the same bits
    # whatever the race.
    rng = np.random.default_rng(5)
    n, d = 12001, 100
    X = rng.uniform(-1, 1, (n, d))
    normal = rng.standard_normal(d)
    normal /= np.linalg.norm(normal)
    distance = X @ normal
    near = np.abs(distance) < 0.3
    X[near] += np.outer(np.where(distance >= 0, 0.3, -0.3), normal)[near]
    y = np.where(X @ normal >= 0, 1.0, -1.0)
    orders = [np.arange(n, dtype=np.int64)] + [
        rng.permutation(n).astype(np.int64) for _ in range(4)]
    if labels == "noisy":
        y[rng.random(n) < 0.01] *= -1
    if labels.startswith("late"):
        orders = [orders[1]] * 8
        step = 100 if labels == "late-1%" else 20
        y[orders[0][3 * 1024:8 * 1024:step]] *= -1
    X, Y = X.astype(dtype), y[:, None].astype(dtype)
    assert X.nbytes > 4 * 1024 * 1024
    module = kernels(fast_backend)
    alone = _perceptron_run(module, X, Y, orders, 1)
    shared = _perceptron_run(module, X, Y, orders, 2)
    for name, a, s in zip(("coef", "intercept", "n_updates", "objective"), alone, shared):
        np.testing.assert_array_equal(s, a, err_msg=name)
    reference = _perceptron_run(kernels("numpy"), X, Y, orders, 1)
    np.testing.assert_array_equal(shared[2], reference[2])
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(shared[0], reference[0], rtol=rtol, atol=rtol)
    if labels == "separated":
        assert shared[3][-1] == 0  # the last epoch updated nothing: margins all used
    else:
        assert np.all(shared[3] > 0)
