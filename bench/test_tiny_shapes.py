"""Direct loops against BLAS for the small matrix products of online and small-batch SGD.

The Cython kernels compute every product through ``csrc/_blas.pxd``'s ``gemm``, which runs
products of at most ``DIRECT_MAX_MULADDS`` multiply-adds as direct loops (a register-blocked
row kernel) and hands larger ones to ``scipy.linalg.cython_blas``. This file is the
measurement behind that cut-off: the same ``C = A @ B`` by each route (``fastnn._kernels
._matmul`` repeats it ``REPEAT`` times without the GIL, so that the Python call does not
dominate), on the shapes of the workloads' layers at batch 1 and small batches.

Run: ``pytest bench/test_tiny_shapes.py --benchmark-enable --benchmark-group-by=param:shape``
(single-threaded BLAS, the setting that favours BLAS least on tiny shapes, is set with
threadpoolctl for the whole module). Each benchmark's ``extra_info`` records the
multiply-adds and the nanoseconds per product; compare the ``direct`` and ``blas`` rows of
a group, and ``auto`` (what the kernels do) against the better of the two.
"""

import numpy as np
import pytest

from fastnn import _backend

REPEAT = 200
ROUTES = ("direct", "blas", "auto")
SHAPES = [  # (m, k, n): C (m x n) = A (m x k) @ B (k x n)
    (1, 60, 32),    # W2 forward, batch 1
    (1, 32, 1),     # W2 output layer
    (1, 64, 64),    # W3 forward, batch 1
    (1, 64, 10),
    (1, 100, 1),    # W1-like dot product
    (4, 16, 16),
    (8, 60, 32),
    (16, 32, 32),
    (32, 64, 10),   # W3 output layer, batch 32
    (32, 64, 64),   # W3 hidden layer, batch 32
    (1, 784, 64),   # W6 encoder, batch 1
    (64, 64, 64),
]


@pytest.fixture(scope="module")
def kernels():
    module = _backend._load("cython")
    if module is None:
        pytest.skip(f"cython backend unavailable: {_backend._import_errors.get('cython')}")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield module


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_product(benchmark, kernels, shape, route, dtype):
    m, k, n = shape
    rng = np.random.default_rng(0)
    A = rng.normal(size=(m, k)).astype(dtype)
    B = rng.normal(size=(k, n)).astype(dtype)
    C = np.full((m, n), np.nan, dtype=dtype)
    benchmark.group = f"{m}x{k}x{n} {np.dtype(dtype).name}"
    benchmark.pedantic(kernels._matmul, args=(A, B, C, route, REPEAT), rounds=15,
                       iterations=1, warmup_rounds=2)
    tolerance = 1e-12 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=tolerance, atol=tolerance * k)
    benchmark.extra_info["muladds"] = m * k * n
    if benchmark.stats is not None:
        benchmark.extra_info["ns_per_product"] = benchmark.stats.stats.min / REPEAT * 1e9
