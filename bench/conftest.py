"""Shared state of the benchmark session (run with ``pytest bench --benchmark-enable``).

Not part of the CI test run (the README's test command runs ``tests/`` only). The
workloads, runners and checks are those of ``fastnn bench`` (``fastnn._bench``).

Environment:
  FASTNN_BENCH_QUICK=1    the ``--quick`` sizes (fewer samples and epochs)
  FASTNN_BENCH_ROUNDS=N   timed rounds per benchmark (default 3)
  FASTNN_DATA=DIR         where the sonar and MNIST files are (default ../shared/data)
"""

import os

import pytest

from fastnn._bench import machine
from fastnn._bench.checks import Checker
from fastnn._bench.suite import BENCH_THREADS, DTYPES


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@pytest.fixture(scope="session")
def quick():
    return _flag("FASTNN_BENCH_QUICK")


@pytest.fixture(scope="session")
def rounds():
    return max(1, int(os.environ.get("FASTNN_BENCH_ROUNDS", "3")))


@pytest.fixture(scope="session")
def data_dir():
    return os.environ.get("FASTNN_DATA")


@pytest.fixture(scope="session")
def gemm_peaks(quick):
    """float32 / float64 GEMM GFLOP/s at 1 and 2 threads, measured once in this run."""
    return machine.gemm_peak(DTYPES, BENCH_THREADS, size=1024 if quick else 2048)


@pytest.fixture(scope="session")
def checker():
    """Reference curves of the session (computed once, untimed, when first needed)."""
    return Checker()


@pytest.fixture(scope="session")
def measured():
    """Records of the runs measured so far, for the ratio to the best peer."""
    return []
