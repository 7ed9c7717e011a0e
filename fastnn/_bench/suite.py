"""Run a selection of workloads x implementations x dtypes x threads and derive the figures.

Per run: the best of a few timed ``train`` calls (each from the same initial weights, after
one untimed warm-up), then samples/s (samples x epochs / seconds), GFLOP/s (samples/s x the
workload's FLOPs per sample), % of the GEMM peak of the same dtype and threads, the ratio
to the best peer of the same workload, dtype and threads (peers: NumPy reference,
scikit-learn, PyTorch, the plain ``@njit`` loop), the ratio to Cython, and the same-work
check.
"""

import datetime
import time
from dataclasses import asdict, dataclass

from . import machine, targets
from .checks import Checker
from .runners import PEERS, PEER_IMPLS, RUNNERS
from .workloads import WORKLOADS, make_problem

SCHEMA_VERSION = 1
DTYPES = ("float32", "float64")
BENCH_THREADS = (1, 2)  # the pytest-benchmark suite's thread counts
RESULT_FIELDS = (
    "workload", "workload_name", "impl", "dtype", "threads", "status", "reason", "n_samples",
    "epochs", "seconds", "samples_per_s", "flops_per_sample", "gflops", "peak_gflops",
    "percent_of_peak", "best_peer", "ratio_to_best_peer", "ratio_to_cython", "check",
)


@dataclass
class Options:
    """What to run; the defaults are ``fastnn bench`` without options."""

    workloads: tuple = tuple(WORKLOADS)
    impls: tuple = ("cython", "numba", "numpy")
    dtypes: tuple = DTYPES
    threads: tuple = (machine.n_cores(),)
    quick: bool = False
    epochs: int = None
    data_dir: str = None
    min_time: float = None  # keep repeating a run until this many seconds were timed
    # At most this many calls: high enough that a fast run (W2's epochs take 3 ms) is
    # timed across min_time too, not across the 50 ms of 20 calls, which a slow stretch
    # of a shared host could cover whole.
    max_repeats: int = None
    import_time: bool = True

    def __post_init__(self):
        if self.min_time is None:
            self.min_time = 0.5 if self.quick else 1.0
        if self.max_repeats is None:
            self.max_repeats = 1000


def time_runner(runner, min_time, max_repeats):
    """Warm up, then the best seconds of ``train`` over up to ``max_repeats`` calls (at
    least one, more while less than ``min_time`` seconds were timed in all).

    Each implementation's calls run back to back. Taking turns between implementations
    (tried in 6aae88b) put every call just after another implementation's, while that
    one's BLAS or OpenMP threads still spun on the cores: W5 at batch 512 on two threads
    then timed at half its speed in `fastnn bench --quick`."""
    with runner.threads():
        runner.warm_up()
        best, total, repeats = float("inf"), 0.0, 0
        while repeats < max(1, max_repeats) and (repeats == 0 or total < min_time):
            runner.reset()
            seconds = runner.train()
            best, total, repeats = min(best, seconds), total + seconds, repeats + 1
    return best


def measurement(runner, seconds, peak_gflops, check):
    """The fields of one finished run that do not depend on the other runs."""
    problem = runner.problem
    samples_per_s = problem.n_samples * runner.epochs / seconds
    gflops = samples_per_s * problem.flops / 1e9
    return {
        "workload": problem.workload.id, "workload_name": problem.workload.name,
        "impl": runner.impl, "dtype": runner.dtype.name, "threads": runner.n_threads,
        "status": "ok", "reason": None, "n_samples": problem.n_samples,
        "epochs": runner.epochs, "seconds": seconds, "samples_per_s": samples_per_s,
        "flops_per_sample": problem.flops, "gflops": gflops, "peak_gflops": peak_gflops,
        "percent_of_peak": 100.0 * gflops / peak_gflops if peak_gflops else None,
        "best_peer": None, "ratio_to_best_peer": None, "ratio_to_cython": None,
        "check": check,
    }


def _not_run(workload, impl, dtype, threads, status, reason):
    record = dict.fromkeys(RESULT_FIELDS)
    record.update(workload=workload.id, workload_name=workload.name, impl=impl, dtype=dtype,
                  threads=threads, status=status, reason=reason)
    return record


def add_ratios(results):
    """Fill ``best_peer``, ``ratio_to_best_peer`` and ``ratio_to_cython`` in place."""
    groups = {}
    for record in results:
        if record["status"] == "ok":
            groups.setdefault((record["workload"], record["dtype"], record["threads"]), []).append(record)
    for group in groups.values():
        peers = [r for r in group if r["impl"] in PEERS]
        best = max(peers, key=lambda r: r["samples_per_s"], default=None)
        cython = next((r for r in group if r["impl"] == "cython"), None)
        for record in group:
            if best is not None:
                record["best_peer"] = best["impl"]
                record["ratio_to_best_peer"] = record["samples_per_s"] / best["samples_per_s"]
            if cython is not None:
                record["ratio_to_cython"] = record["samples_per_s"] / cython["samples_per_s"]


def _one_line(exc):
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()


def run_workload(workload_id, options, peaks, checker):
    """Every (dtype, threads, impl) run of one workload; returns their records."""
    problem = make_problem(workload_id, options.quick, options.epochs, options.data_dir)
    workload = problem.workload
    records = []
    for dtype in options.dtypes:
        for threads in options.threads:
            for impl in options.impls:
                runner_class = RUNNERS[impl]
                reason = runner_class.unavailable(workload)
                if reason:
                    records.append(_not_run(workload, impl, dtype, threads, "skipped", reason))
                    continue
                try:
                    runner = runner_class(problem, dtype, threads)
                    seconds = time_runner(runner, options.min_time, options.max_repeats)
                    checker.record(runner)
                    check = checker.check(runner)
                except Exception as exc:  # one broken implementation must not hide the rest
                    records.append(_not_run(workload, impl, dtype, threads, "failed", _one_line(exc)))
                    continue
                records.append(measurement(runner, seconds, peaks[dtype].get(threads), check))
    return problem, records


def run_suite(options, progress=None):
    """Run everything ``options`` selects; returns the JSON-ready result document.

    ``progress(line)`` is called once per workload (and for the peak and import time).
    """
    progress = progress or (lambda line: None)
    started = time.perf_counter()
    document = {
        "schema_version": SCHEMA_VERSION,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()},
        "machine": machine.machine_info(),
    }
    peaks = machine.gemm_peak(options.dtypes, options.threads,
                              size=1024 if options.quick else 2048, repeats=5)
    document["gemm_peak_gflops"] = {dtype: {str(t): g for t, g in by_threads.items()}
                                    for dtype, by_threads in peaks.items()}
    progress("GEMM peak (GFLOP/s): " + ", ".join(
        f"{dtype} {t} thread{'s' * (t > 1)} {g:.0f}"
        for dtype, by_threads in peaks.items() for t, g in by_threads.items()))
    if options.import_time:
        document["import_time"] = machine.import_times(repeats=3 if options.quick else 7)
        times = document["import_time"]
        progress(f"import time: numpy {times['numpy_s']:.3f} s, fastnn {times['fastnn_s']:.3f} s")
    checker = Checker()
    results, notes = [], {}
    for index, workload_id in enumerate(options.workloads, start=1):
        workload_start = time.perf_counter()
        problem, records = run_workload(workload_id, options, peaks, checker)
        results.extend(records)
        if problem.note:
            notes[workload_id] = problem.note
        done = [r for r in records if r["status"] == "ok"]
        fastest = max(done, key=lambda r: r["samples_per_s"], default=None)
        progress(
            f"[{index}/{len(options.workloads)}] {workload_id} {problem.workload.name}: "
            f"{problem.n_samples} samples x {problem.epochs} epochs, {len(done)} runs"
            + (f", fastest {fastest['impl']} {fastest['samples_per_s']:.3g} samples/s"
               if fastest else "")
            + f" ({time.perf_counter() - workload_start:.1f} s)")
    add_ratios(results)
    document["notes"] = notes
    document["results"] = results
    document["targets"] = targets.evaluate(document)
    document["total_seconds"] = time.perf_counter() - started
    return document


def default_impls(peers):
    """fastnn's backends, plus scikit-learn, PyTorch and the ``@njit`` loop with peers."""
    return ("cython", "numba", "numpy") + (PEER_IMPLS if peers else ())


def failed_checks(document):
    """Records whose same-work check failed (the CLI reports them and exits non-zero)."""
    return [r for r in document["results"]
            if r["status"] == "ok" and r["check"] and r["check"].get("ok") is False]
