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
