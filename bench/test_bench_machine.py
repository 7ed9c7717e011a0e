"""The yardsticks: the machine's GEMM peak and the import time of fastnn against numpy."""

import time

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastnn._bench import machine
from fastnn._bench.suite import BENCH_THREADS as THREADS, DTYPES



@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_peak(benchmark, dtype, threads, quick):
    """numpy.matmul of square matrices: the peak that "% of peak" refers to."""
    size = 1024 if quick else 2048
    rng = np.random.default_rng(0)
    a = rng.random((size, size)).astype(dtype)
    b = rng.random((size, size)).astype(dtype)
    out = np.empty_like(a)
    benchmark.group = "GEMM peak"
    seconds = []

    def product():
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        seconds.append(time.perf_counter() - start)

    with threadpool_limits(limits=threads):
        np.matmul(a, b, out=out)
        benchmark.pedantic(product, rounds=3)
    gflops = 2.0 * size**3 / min(seconds) / 1e9
    benchmark.extra_info.update(dtype=dtype, threads=threads, size=size, gflops=gflops)
    np.testing.assert_allclose(out[:2, :2], (a[:2] @ b[:, :2]), rtol=1e-4)


def test_import_time(benchmark):
    """``python -c "import fastnn"`` against ``"import numpy"`` (SPEC: within 0.05 s)."""
    benchmark.group = "import"
    times = benchmark.pedantic(machine.import_times, kwargs={"repeats": 5}, rounds=1)
    benchmark.extra_info.update(times)
    assert times["numpy_s"] > 0 and times["fastnn_s"] > 0
