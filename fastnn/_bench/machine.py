"""What the numbers were measured on: CPU, cores, BLAS, versions, GEMM peak, import time."""

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import sys
import time

import numpy as np

VERSIONED_PACKAGES = ("fastnn", "numpy", "scipy", "numba", "scikit-learn", "torch",
                      "threadpoolctl", "Cython", "matplotlib")


def cpu_name():
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform``)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def n_cores():
    """CPUs this process may run on (the affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def package_versions():
    """Installed version of each package that matters here, None when missing."""
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if versions["fastnn"] is None:  # running from a checkout that is not installed
        import fastnn

        versions["fastnn"] = fastnn.__version__
    return versions


def blas_info():
    """The BLAS / OpenMP libraries loaded now, with their threads (threadpoolctl), or
    numpy's build configuration when threadpoolctl is not installed."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        config = np.show_config(mode="dicts")
        blas = config.get("Build Dependencies", {}).get("blas", {})
        return [{"user_api": "blas", "internal_api": blas.get("name"),
                 "version": blas.get("version"), "num_threads": None,
                 "source": "numpy.show_config (threadpoolctl not installed)"}]
    keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer",
            "architecture", "filepath")
    return [{key: pool.get(key) for key in keys} for pool in threadpool_info()]


def machine_info():
    """Everything that identifies the machine and software of a benchmark run."""
    return {
        "cpu": cpu_name(),
        "cores": n_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "blas": blas_info(),
    }


@contextlib.contextmanager
def thread_limit(threads):
    """Limit BLAS / OpenMP pools (numpy's, scipy's, torch's) to ``threads`` inside."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield False
        return
    with threadpool_limits(limits=threads):
        yield True


def gemm_peak(dtypes=("float32", "float64"), threads=(1, 2), size=2048, repeats=3):
    """Achieved GFLOP/s of ``numpy.matmul`` on ``size`` x ``size`` square matrices.

    The best of ``repeats`` products, per dtype and thread count: the yardstick for
    "% of peak" (2 * size**3 FLOPs per product). Returns ``{dtype: {threads: GFLOP/s}}``.
    """
    rng = np.random.default_rng(0)
    peaks = {}
    for dtype in dtypes:
        a = rng.random((size, size)).astype(dtype)
        b = rng.random((size, size)).astype(dtype)
        out = np.empty_like(a)
        peaks[dtype] = {}
        for n_threads in threads:
            with thread_limit(n_threads):
                np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
                best = float("inf")
                for _ in range(repeats):
                    start = time.perf_counter()
                    np.matmul(a, b, out=out)
                    best = min(best, time.perf_counter() - start)
            peaks[dtype][n_threads] = 2.0 * size**3 / best / 1e9
    return peaks


def _best_import_seconds(module, repeats):
    import fastnn

    # The child must import this very fastnn, installed or run from a checkout.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastnn.__file__)))
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)
        best = min(best, time.perf_counter() - start)
    return best


def import_times(repeats=5):
    """Wall time of ``python -c "import numpy"`` and ``"import fastnn"`` (best of
    ``repeats`` fresh interpreters each); SPEC's target: fastnn within 0.05 s of numpy."""
    numpy_s = _best_import_seconds("numpy", repeats)
    fastnn_s = _best_import_seconds("fastnn", repeats)
    return {"numpy_s": numpy_s, "fastnn_s": fastnn_s, "difference_s": fastnn_s - numpy_s,
            "target_s": 0.05, "within_target": fastnn_s - numpy_s <= 0.05}
