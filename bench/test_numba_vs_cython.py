"""The Numba backend against the Cython one, and what Numba's JIT costs at first use.

Run with ``pytest bench/test_numba_vs_cython.py --benchmark-enable`` (not part of CI). The
full W1-W6 table, peers included, is bench/test_bench_workloads.py (its ``extra_info``
holds ``ratio_to_cython`` too); this file is the quick, focused look:

- ``test_numba_vs_cython``: the quick (small) version of each workload, one thread, both
  backends warmed up first (JIT compiled, thread pools up); pytest-benchmark times Numba,
  ``extra_info`` has both speeds and ``numba_over_cython`` (SPEC target: >= 0.7);
- ``test_numba_jit_cost``: fresh interpreters on an empty ``NUMBA_CACHE_DIR``: the first
  call of every kernel, which compiles it (``first_call_s``), then the same in a second
  interpreter, which loads the compiled code from that cache (``cached_load_s``).

Environment: ``FASTNN_BENCH_ROUNDS`` (timed rounds), ``FASTNN_DATA`` (data directory).
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn._bench.runners import CythonRunner, NumbaRunner
from fastnn._bench.suite import time_runner
from fastnn._bench.workloads import WORKLOADS, make_problem

THREADS = 1
# The curves of the two backends agree to rounding; a looser bound only catches a backend
# that did different work (its time would then mean nothing).
SAME_WORK_RTOL = {"float32": 1e-3, "float64": 1e-6}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("workload_id", list(WORKLOADS))
def test_numba_vs_cython(benchmark, workload_id, dtype, rounds, data_dir):
    for runner_class in (CythonRunner, NumbaRunner):
        reason = runner_class.unavailable(WORKLOADS[workload_id])
        if reason:
            pytest.skip(reason)
    problem = make_problem(workload_id, quick=True, data_dir=data_dir)
    cython = CythonRunner(problem, dtype, THREADS)
    cython_seconds = time_runner(cython, min_time=0.2, max_repeats=rounds)

    numba = NumbaRunner(problem, dtype, THREADS)
    seconds = []

    def train():
        seconds.append(numba.train())

    with numba.threads():
        numba.warm_up()
        benchmark.pedantic(train, setup=numba.reset, rounds=rounds)
    benchmark.group = f"numba-vs-cython {workload_id} {problem.workload.name}"
    samples = problem.n_samples * problem.epochs
    benchmark.extra_info.update({
        "workload": workload_id, "dtype": dtype, "threads": THREADS,
        "n_samples": problem.n_samples, "epochs": problem.epochs,
        "numba_samples_per_s": samples / min(seconds),
        "cython_samples_per_s": samples / cython_seconds,
        "numba_over_cython": cython_seconds / min(seconds),
    })
    last = problem.epochs
    np.testing.assert_allclose(numba.curve[last], cython.curve[last],
                               rtol=SAME_WORK_RTOL[dtype])


# A fresh interpreter times the first call of every public kernel, for both dtypes, on a
# tiny network (the compile time hardly depends on the sizes).
FIRST_CALLS = """
    import json, time
    started = time.perf_counter()
    import numpy as np
    from fastnn import _codes
    from fastnn._network import as_layer_units, glorot_uniform_init
    import fastnn._kernels_numba as k
    times = {"import": time.perf_counter() - started}

    def timed(name, function, *args):
        start = time.perf_counter()
        function(*args)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start

    for dtype in (np.float32, np.float64):
        units = as_layer_units(6, (5,), 3)
        params = glorot_uniform_init(units, "tanh", np.random.RandomState(0), dtype)
        X, Y = np.ones((8, 6), dtype), np.ones((8, 3), dtype)
        weights, order = np.ones(8, dtype), np.arange(8)
        penalized = np.ones(1, dtype=np.int64)
        workspace = k.make_workspace(units, 8, dtype, True)
        timed("sgd_epoch", k.sgd_epoch, params, units, _codes.TANH, _codes.IDENTITY,
              _codes.SQUARED_ERROR, X, Y, weights, order, 4, _codes.SGD, 0.01, 0.9, True,
              0.9, 0.999, 1e-8, 0, np.zeros_like(params), np.zeros_like(params), 1e-4, 0.0,
              0.0, 0.05, 0.1, penalized, _codes.MASK_NOISE, 0.1, 0, 0, workspace)
        timed("loss_and_gradient", k.loss_and_gradient, params, units, _codes.TANH,
              _codes.IDENTITY, _codes.SQUARED_ERROR, X, Y, weights, 1e-4, 0.0, 0.0, 0.05, 0.1,
              penalized, _codes.NO_NOISE, 0.0, 0, 0, np.empty_like(params), workspace)
        timed("forward", k.forward, params, units, _codes.TANH, _codes.IDENTITY, 0, 2, X,
              np.empty((8, 3), dtype))
        timed("corrupt", k.corrupt, X, order, _codes.GAUSSIAN_NOISE, 0.1, 0, 0,
              np.empty_like(X))
        ones = np.ones(1, dtype)
        timed("perceptron_epoch", k.perceptron_epoch, np.zeros((1, 6), dtype),
              np.zeros(1, dtype), X, np.ones((8, 1), dtype), weights, order,
              np.ones(1, dtype=np.int64), 1.0, True, 0.0, 0.0, ones, ones,
              np.zeros(1, dtype), np.zeros((1, 6), dtype), np.zeros(1, dtype=np.int64),
              np.zeros(1))
    times["total"] = time.perf_counter() - started
    print(json.dumps(times))
"""


def _first_calls(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(fastnn.__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(FIRST_CALLS)],
                            capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_numba_jit_cost(benchmark):
    pytest.importorskip("numba")
    with tempfile.TemporaryDirectory() as cache_dir:
        first_call = _first_calls(cache_dir)  # compiles, fills the empty cache
        cached = []
        benchmark.pedantic(lambda: cached.append(_first_calls(cache_dir)), rounds=1)
    benchmark.group = "numba JIT"
    benchmark.extra_info.update({
        "first_call_s": first_call, "cached_load_s": cached[-1],
        "first_call_total_s": first_call["total"], "cached_load_total_s": cached[-1]["total"],
    })
    assert cached[-1]["total"] < first_call["total"]
