"""The eight matrix products of one W5 batch, alone, on one and two BLAS threads.

W5 (784-256-128-10, relu, softmax, batch 512) misses its two-thread targets; this is the
measurement behind "what bounds it" in bench/README.md: how much faster OpenBLAS runs the
epoch's products on two threads than on one, with nothing else around them. The epoch's
own time per batch comes from ``fastnn bench --only W5``; the difference is fastnn's own
(single-threaded) passes.

The products are those of the Cython kernel's plain-SGD batch, row-major, through
``scipy.linalg.blas.sgemm`` (the library ``cython_blas`` calls) into preallocated outputs
(an output allocated per call adds page faults that distort the two-thread figures): the
forward product of each layer, the delta products of layers 2 and 3, and the weight
gradient of each layer. The first layer runs on the 569 input columns W5's first batch
uses (the kernels skip columns that are zero throughout a batch).

Run: ``pytest bench/test_w5_products.py --benchmark-enable``; ``extra_info["ms_per_batch"]``
is the time of the eight products.
"""

import numpy as np
import pytest

ROWS, USED_COLUMNS, UNITS = 512, 569, (256, 128, 10)


def _products():
    """Callables computing the eight products (row-major C = A @ B through column-major
    sgemm on the transposes), on random float32 operands of W5's shapes."""
    from scipy.linalg import blas

    rng = np.random.default_rng(0)

    def matrix(m, n):
        return rng.random((m, n), dtype=np.float32)

    widths = (USED_COLUMNS,) + UNITS
    acts = [matrix(ROWS, w) for w in widths[:-1]]          # o^0 .. o^2
    weights = [matrix(a, b) for a, b in zip(widths[:-1], widths[1:])]
    deltas = [matrix(ROWS, w) for w in widths[1:]]        # delta^1 .. delta^3
    outs = [np.empty((ROWS, w), dtype=np.float32) for w in widths[1:]]
    grads = [np.empty_like(W) for W in weights]

    def forward(i):  # o^i W_i
        return lambda: blas.sgemm(1.0, weights[i].T, acts[i].T, c=outs[i].T, overwrite_c=1)

    def delta(i):  # delta^{i+1} W_i^T, into delta^i
        return lambda: blas.sgemm(1.0, weights[i].T, deltas[i].T, trans_a=1,
                                  c=deltas[i - 1].T, overwrite_c=1)

    def gradient(i):  # o^i^T delta^{i+1}
        return lambda: blas.sgemm(1.0, deltas[i].T, acts[i].T, trans_b=1, c=grads[i].T,
                                  overwrite_c=1)

    return [forward(0), forward(1), forward(2), delta(2), delta(1), gradient(2),
            gradient(1), gradient(0)]


@pytest.mark.parametrize("threads", [1, 2])
def test_w5_products(benchmark, threads):
    from threadpoolctl import threadpool_limits

    products = _products()

    def batch():
        for product in products:
            product()

    with threadpool_limits(threads, user_api="blas"):
        batch()  # warm the thread pool and the operands
        benchmark.pedantic(batch, rounds=20, iterations=5)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info["ms_per_batch"] = seconds * 1e3
    multiply_adds = ROWS * (2 * sum(a * b for a, b in zip((USED_COLUMNS,) + UNITS[:-1], UNITS))
                            + sum(a * b for a, b in zip(UNITS[:-1], UNITS[1:])))
    benchmark.extra_info["gflops"] = 2 * multiply_adds / seconds / 1e9
    assert np.isfinite(seconds) and seconds > 0
