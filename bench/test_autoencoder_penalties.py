"""What each autoencoder penalty costs on W6 (784-64-784, logistic code, batch 128).

Issue 6's targets: an epoch with the L1 or KL sparsity penalty within 1.2x of the plain
autoencoder's epoch, with the contractive penalty (one encoder layer) within 2x. Each
variant runs the same data, start point and sample order through one backend's
``sgd_epoch``; ``extra_info["cost_vs_plain"]`` is its best epoch time over the plain one's
(measured first in the session, same backend and dtype).

    pytest bench/test_autoencoder_penalties.py --benchmark-enable [-k cython]
"""

import time

import numpy as np
import pytest

from fastnn import _backend, _codes
from fastnn._bench.workloads import make_problem

# name -> (l1_weight, kl_weight, contraction_weight, noise)
VARIANTS = {
    "plain": (0.0, 0.0, 0.0, _codes.NO_NOISE),
    "l1": (1e-3, 0.0, 0.0, _codes.NO_NOISE),
    "kl": (0.0, 0.1, 0.0, _codes.NO_NOISE),
    "contractive": (0.0, 0.0, 0.1, _codes.NO_NOISE),
    "mask-noise": (0.0, 0.0, 0.0, _codes.MASK_NOISE),
    "all": (1e-3, 0.1, 0.1, _codes.MASK_NOISE),
}

_plain_seconds = {}


def _epoch_seconds(kernels, problem, dtype, variant, rounds):
    l1_weight, kl_weight, contraction_weight, noise = VARIANTS[variant]
    w = problem.workload
    X = problem.X.astype(dtype)
    sample_weight = np.ones(X.shape[0], dtype=dtype)
    workspace = kernels.make_workspace(problem.layer_units, w.batch_size, dtype,
                                       contraction_weight > 0)
    penalized = np.ones(len(problem.layer_units) - 2, dtype=np.int64)
    order = problem.orders[0]
    best = np.inf
    for round_ in range(rounds + 1):  # the first round warms up (and compiles numba)
        params = problem.initial_params.astype(dtype)
        velocity, second_moment = np.zeros_like(params), np.zeros_like(params)
        start = time.perf_counter()
        _, _, ok = kernels.sgd_epoch(
            params, problem.layer_units, _codes.LOGISTIC, _codes.IDENTITY,
            _codes.SQUARED_ERROR, X, X, sample_weight, order, w.batch_size, _codes.SGD,
            w.learning_rate, 0.0, False, 0.9, 0.999, 1e-8, 0, velocity, second_moment,
            0.0, l1_weight, kl_weight, 0.05, contraction_weight, penalized, noise, 0.2,
            12345, 0, workspace)
        elapsed = time.perf_counter() - start
        assert ok == 1, f"{variant} diverged"
        if round_:
            best = min(best, elapsed)
    return best


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["cython", "numba"])
def test_penalty_cost(benchmark, backend, dtype, variant, quick, data_dir):
    if _backend._load(backend) is None:
        pytest.skip(f"{backend} backend unavailable: {_backend._import_errors.get(backend)}")
    kernels = _backend.kernels(backend)
    problem = make_problem("W6", quick=quick, data_dir=data_dir)
    benchmark.group = f"W6 penalties {backend} {dtype}"
    seconds = benchmark.pedantic(
        _epoch_seconds, args=(kernels, problem, np.dtype(dtype), variant, 3),
        rounds=1, iterations=1)
    if variant == "plain":
        _plain_seconds[backend, dtype] = seconds
    benchmark.extra_info["epoch_seconds"] = seconds
    benchmark.extra_info["samples_per_s"] = problem.n_samples / seconds
    plain = _plain_seconds.get((backend, dtype))
    if plain:
        benchmark.extra_info["cost_vs_plain"] = seconds / plain
    assert seconds > 0
