"""Every workload W1-W6 x implementation x dtype x threads, timed by pytest-benchmark.

``pytest bench -k W2 --benchmark-enable`` times one workload; ``--benchmark-group-by``
defaults to ``benchmark.group`` = the workload. Each benchmark's ``extra_info`` holds
samples/s, GFLOP/s, % of the GEMM peak (measured in the same session), the ratio to the
best peer measured before it in the session (peers are parametrised first) and the
same-work check; the test fails when the implementation did not follow the reference
trajectory, since its time would then mean nothing.

Compare implementations by ``extra_info["samples_per_s"]``, not by the raw times: the
NumPy reference runs fewer epochs (``Workload.reference_epochs``).
"""

import pytest

from fastnn._bench import suite
from fastnn._bench.suite import BENCH_THREADS as THREADS, DTYPES
from fastnn._bench.runners import PEERS, RUNNERS
from fastnn._bench.workloads import WORKLOADS, make_problem


# Peers first, so that fastnn's backends find the best peer already measured.
IMPLS = list(PEERS) + [impl for impl in RUNNERS if impl not in PEERS]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("threads", THREADS, ids=lambda t: f"{t}thr")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload_id", list(WORKLOADS))
def test_workload(benchmark, workload_id, dtype, threads, impl, quick, rounds, data_dir,
                  gemm_peaks, checker, measured):
    runner_class = RUNNERS[impl]
    reason = runner_class.unavailable(WORKLOADS[workload_id])
    if reason:
        pytest.skip(reason)
    problem = make_problem(workload_id, quick=quick, data_dir=data_dir)
    runner = runner_class(problem, dtype, threads)
    benchmark.group = f"{workload_id} {problem.workload.name}"
    seconds = []

    def train():
        seconds.append(runner.train())

    with runner.threads():
        runner.warm_up()
        benchmark.pedantic(train, setup=runner.reset, rounds=rounds)
    checker.record(runner)
    record = suite.measurement(runner, min(seconds), gemm_peaks[dtype][threads],
                               checker.check(runner))
    measured.append(record)
    suite.add_ratios([r for r in measured if r is not record] + [record])
    benchmark.extra_info.update(record)
    if problem.note:
        benchmark.extra_info["note"] = problem.note

    check = record["check"]
    assert check["ok"] is not False, f"{impl} did not do the same work: {check}"
    assert record["samples_per_s"] > 0
