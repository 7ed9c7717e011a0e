"""The ``fastnn`` command line: help, errors, info, train end to end, bench JSON."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastnn
from fastnn import cli
from fastnn._base import validation_split
from fastnn._bench.suite import RESULT_FIELDS

REPO = Path(__file__).resolve().parents[1]


def run(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``fastnn *argv`` run in this process."""
    status = cli.main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, expected_status, *fragments):
    assert status == expected_status
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def small_csv(tmp_path):
    """200 rows: 4 numeric features with a header, a string label that the first two
    features separate."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    labels = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    path = tmp_path / "small.csv"
    lines = ["a,b,c,d,label"] + [
        ",".join(f"{v:.6f}" for v in row) + f",{label}" for row, label in zip(X, labels)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path, X, labels


@pytest.mark.parametrize("command", [[], ["info"], ["bench"], ["train"]])
def test_help_of_every_command(capsys, command):
    status, out, _ = run(capsys, *command, "--help")
    assert status == 0
    assert out.startswith("usage: fastnn")
    if command == ["bench"]:
        assert "--quick" in out and "--peers" in out and "--json" in out and "--plot" in out
    if command == ["train"]:
        assert "--task" in out and "--save" in out and "--target" in out


@pytest.mark.parametrize(
    "argv, status, fragment",
    [
        ([], 2, "required"),
        (["frobnicate"], 2, "invalid choice"),
        (["train", "x.csv"], 2, "--task"),
        (["train", "x.csv", "--task", "cluster"], 2, "invalid choice"),
        (["train", "x.csv", "--task", "classify", "--test-size", "1.5"], 2, "between 0 and 1"),
        (["train", "x.csv", "--task", "classify", "--epochs", "0"], 2, "at least 1"),
        (["train", "x.csv", "--task", "classify", "--hidden", "8,a"], 2, "not an integer"),
        (["bench", "--dtype", "float16"], 2, "float32/float64"),
        (["bench", "--only", "W9"], 1, "W9"),
        (["bench", "--impls", "tensorflow"], 1, "tensorflow"),
        (["bench", "--json", "/no/such/dir/out.json"], 1, "does not exist"),
        (["train", "no_such_file.csv", "--task", "classify"], 1, "no such file"),
        (["train", "sonar", "--task", "classify", "--save", "/no/such/dir/m.npz"], 1,
         "does not exist"),
    ],
)
def test_argument_errors_are_one_line(capsys, argv, status, fragment):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, status, fragment)


def test_bad_files_are_one_line_errors(capsys, tmp_path, small_csv):
    text_csv = tmp_path / "words.csv"
    text_csv.write_text("a,b,label\n1.0,oops,x\n2.0,3.0,y\n")
    code, _, err = run(capsys, "train", str(text_csv), "--task", "classify")
    assert_one_line_error(code, err, 1, "not numeric", "'oops'")

    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"this is not a numpy file")
    code, _, err = run(capsys, "train", str(garbage), "--task", "regress")
    assert_one_line_error(code, err, 1, "not a readable .npy")

    no_y = tmp_path / "no_y.npz"
    np.savez(no_y, X=np.ones((10, 2)))
    code, _, err = run(capsys, "train", str(no_y), "--task", "classify")
    assert_one_line_error(code, err, 1, "no array named y")

    code, _, err = run(capsys, "train", str(tmp_path / "data.txt"), "--task", "classify")
    assert_one_line_error(code, err, 1, "no such file")
    (tmp_path / "data.txt").write_text("1,2\n")
    code, _, err = run(capsys, "train", str(tmp_path / "data.txt"), "--task", "classify")
    assert_one_line_error(code, err, 1, "unknown file type .txt")

    path, _, _ = small_csv
    code, _, err = run(capsys, "train", str(path), "--task", "regress")
    assert_one_line_error(code, err, 1, "not numeric")
    code, _, err = run(capsys, "train", str(path), "--task", "classify", "--target", "zzz")
    assert_one_line_error(code, err, 1, "--target")
    code, _, err = run(capsys, "train", str(path), "--task", "perceptron", "--hidden", "4")
    assert_one_line_error(code, err, 1, "--hidden does not apply")


def test_info(capsys):
    status, out, _ = run(capsys, "info")
    assert status == 0
    assert out.splitlines()[0] == f"fastnn {fastnn.__version__}"
    backends = fastnn.available_backends()
    assert f"backends available: {', '.join(backends)}" in out
    assert f"active backend: {fastnn.get_backend()}" in out
    assert "cores:" in out and "numpy" in out
    assert "epoch threads: " in out


def test_train_csv_end_to_end_and_reload(capsys, tmp_path, small_csv):
    path, X, labels = small_csv
    model_path = tmp_path / "model.npz"
    status, out, err = run(
        capsys, "train", str(path), "--task", "classify", "--hidden", "8",
        "--solver", "sgd", "--lr", "0.1", "--epochs", "30", "--seed", "3",
        "--save", str(model_path), "--progress", "off")
    assert status == 0, err
    # No progress bar when off; the ConvergenceWarning of 30 epochs is one line.
    assert all(line.startswith("fastnn train: warning: ") for line in err.splitlines())
    assert "Maximum iterations (30)" in err
    printed = float(out.split("held-out accuracy: ")[1].split()[0])
    model = fastnn.load(model_path)
    assert type(model).__name__ == "MLPClassifier"
    assert model.hidden_layer_sizes == (8,) and model.max_iter == 30
    assert list(model.classes_) == ["no", "yes"]
    # The held-out rows are those of the same split: the reloaded model scores the same.
    _, test = validation_split(len(X), 0.2, np.random.RandomState(3), labels)
    assert model.score(X[test], labels[test]) == pytest.approx(printed, abs=5e-5)
    assert printed >= 0.8  # a linearly separable label, learnt


def test_train_npz_perceptron_and_npy_regression_with_progress(capsys, tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    status, out, err = run(capsys, "train", str(tmp_path / "d.npz"), "--task", "perceptron",
                           "--epochs", "5", "--progress", "on")
    assert status == 0
    assert "Perceptron trained on 96 samples" in out
    assert "epoch 1/5" in err and "samples/s" in err

    np.save(tmp_path / "r.npy", np.column_stack([X, X @ [1.0, -2.0, 0.5]]))
    status, out, err = run(capsys, "train", str(tmp_path / "r.npy"), "--task", "regress",
                           "--hidden", "", "--solver", "lbfgs", "--epochs", "50",
                           "--progress", "off")
    assert status == 0, err
    assert float(out.split("held-out R^2: ")[1].split()[0]) > 0.99  # linear regression


def test_progress_bar_parses_epoch_lines():
    stream = io.StringIO()
    bar = cli._ProgressBar(stream, total_epochs=4, n_samples=10)
    bar.write("Iteration 1, loss = 0.50000000\nIteration 2, loss = 0.25")
    bar.write("000000\nValidation score: 0.9\n-- Epoch 3: objective [0.125], updates [2]\n")
    bar.close()
    text = stream.getvalue()
    assert "epoch 1/4 loss 0.50000000" in text and "epoch 2/4 loss 0.25000000" in text
    assert "Validation score: 0.9\n" in text
    assert "epoch 3/4 loss 0.125" in text and text.endswith("\n")


def test_bench_quick_json_has_every_field(capsys, tmp_path):
    json_path = tmp_path / "bench.json"
    plot_path = tmp_path / "bench.png"
    argv = ["bench", "--quick", "--only", "W2", "--impls", "cython,numpy", "--dtype",
            "float64", "--threads", "1", "--epochs", "2", "--json", str(json_path)]
    try:
        import matplotlib  # noqa: F401
        argv += ["--plot", str(plot_path)]
    except ImportError:
        plot_path = None
    status, out, err = run(capsys, *argv)
    assert status == 0, err
    assert "W2 sonar-online" in out and "samples/s" in out
    assert "[1/1] W2 sonar-online" in err  # the progress line

    document = json.loads(json_path.read_text())
    assert document["command"].startswith("fastnn bench --quick")
    for key in ("cpu", "cores", "blas", "versions", "python", "platform"):
        assert key in document["machine"]
    assert document["machine"]["versions"]["numpy"] == np.__version__
    assert document["gemm_peak_gflops"]["float64"]["1"] > 0
    assert set(document["import_time"]) >= {"numpy_s", "fastnn_s", "difference_s"}
    import_target = [t for t in document["targets"] if t["target"].startswith("import")]
    assert import_target[0]["value"] == document["import_time"]["difference_s"]
    by_impl = {}
    for record in document["results"]:
        assert set(record) == set(RESULT_FIELDS)
        by_impl[record["impl"]] = record
    reference = by_impl["numpy"]
    assert reference["status"] == "ok" and reference["epochs"] == 2
    assert reference["samples_per_s"] == pytest.approx(208 * 2 / reference["seconds"])
    assert reference["gflops"] == pytest.approx(
        reference["samples_per_s"] * reference["flops_per_sample"] / 1e9)
    # 60-32-1: forward 60*32 + 32, weight gradients the same, input deltas 32 -> x2 FLOPs.
    assert reference["flops_per_sample"] == 2 * (2 * (60 * 32 + 32) + 32)
    assert reference["best_peer"] == "numpy" and reference["ratio_to_best_peer"] == 1.0
    if by_impl["cython"]["status"] == "ok":
        check = by_impl["cython"]["check"]
        assert check["ok"] is True and check["against"] == "numpy" and check["epoch"] == 2
        assert by_impl["cython"]["ratio_to_cython"] == 1.0
    if plot_path is not None:
        assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_python_dash_m_runs_the_cli_without_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "fastnn", "train", "no_such.csv", "--task", "classify"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "fastnn train: error: no_such.csv: no such file (and not a data set name: "
        "digits, sonar, mnist)")


# The benchmark's own machinery: a fast run is only worth reporting if it did the work.

def test_flops_count_forward_weight_gradients_and_input_deltas_but_the_first():
    from fastnn._bench.workloads import flops_per_sample

    units = [784, 256, 128, 10]
    products = [784 * 256, 256 * 128, 128 * 10]
    assert flops_per_sample(units) == 2 * (2 * sum(products) + products[1] + products[2])
    assert flops_per_sample([100, 1], perceptron=True) == 200


def _w2_runner(impl, learning_rate=None):
    import dataclasses

    from fastnn._bench.runners import RUNNERS
    from fastnn._bench.workloads import make_problem

    runner_class = RUNNERS[impl]
    reason = runner_class.unavailable(make_problem("W2", quick=True, epochs=2).workload)
    if reason:
        pytest.skip(reason)
    runner = runner_class(make_problem("W2", quick=True, epochs=2), "float64", 1)
    if learning_rate is not None:
        runner.workload = dataclasses.replace(runner.workload, learning_rate=learning_rate)
    runner.train()
    return runner


def test_same_work_check_passes_for_sklearn_and_fails_for_other_work():
    from fastnn._bench.checks import Checker

    pytest.importorskip("sklearn")
    checker = Checker()
    # scikit-learn, given only random_state, follows the problem's weights and orders.
    check = checker.check(_w2_runner("sklearn"))
    assert check["ok"] is True and check["against"] == "numpy" and check["epoch"] == 2
    assert check["rel_err"] < 1e-12
    # The same code with another learning rate is other work, and the check says so.
    other = _w2_runner("cython" if "cython" in fastnn.available_backends() else "numba",
                       learning_rate=0.02)
    check = checker.check(other)
    assert check["ok"] is False and check["rel_err"] > 1e-3


def test_targets_compare_cython_with_the_named_peer_at_the_same_dtype_and_threads():
    from fastnn._bench import targets

    def record(workload, impl, dtype, threads, samples_per_s, **extra):
        return {"workload": workload, "impl": impl, "dtype": dtype, "threads": threads,
                "status": "ok", "samples_per_s": samples_per_s,
                "ratio_to_cython": extra.get("ratio_to_cython"),
                "percent_of_peak": extra.get("percent_of_peak")}

    document = {"results": [
        record("W6", "cython", "float32", 2, 240.0),
        record("W6", "torch", "float32", 2, 150.0),   # 1.6x: met
        record("W6", "cython", "float32", 1, 200.0),
        record("W6", "torch", "float32", 1, 160.0),   # 1.25x: missed
        record("W6", "cython", "float64", 1, 100.0),  # W6's target is float32 only
        record("W6", "torch", "float64", 1, 10.0),
        record("W2", "numba", "float64", 1, 69.0, ratio_to_cython=0.69),
    ]}
    found = {(e["target"], e["dtype"], e["threads"]): e
             for e in targets.evaluate(document)}
    w6 = "W6 cython >= 1.5x torch (float32)"
    assert found[w6, "float32", 2]["value"] == pytest.approx(1.6)
    assert found[w6, "float32", 2]["met"] is True
    assert found[w6, "float32", 1]["value"] == pytest.approx(1.25)
    assert found[w6, "float32", 1]["met"] is False
    assert (w6, "float64", 1) not in found
    numba = found["W2 numba >= 0.7x cython", "float64", 1]
    assert numba["value"] == 0.69 and numba["met"] is False
    lines = targets.format_targets(targets.evaluate(document))
    assert any(w6 in line and "MISSED" in line for line in lines.splitlines())
    close = targets.format_targets([{"target": w6, "dtype": "float32", "threads": 2,
                                     "value": 1.4954, "met": False}])
    assert close.split()[-2:] == ["1.495", "MISSED"]


def test_each_run_keeps_its_best_call_within_the_time_and_call_limits():
    import contextlib

    from fastnn._bench.suite import time_runner

    class Fake:
        def __init__(self, seconds, fail_warm_up=False):
            self.seconds, self.fail_warm_up, self.calls = list(seconds), fail_warm_up, []

        def threads(self):
            return contextlib.nullcontext()

        def warm_up(self):
            self.calls.append("warm_up")
            if self.fail_warm_up:
                raise RuntimeError("cannot start")

        def reset(self):
            self.calls.append("reset")

        def train(self):
            self.calls.append("train")
            return self.seconds.pop(0)

    fast = Fake([0.3, 0.1, 0.2, 0.4, 0.05])
    assert time_runner(fast, min_time=10.0, max_repeats=4) == 0.1  # at most 4 calls
    assert fast.calls == ["warm_up"] + ["reset", "train"] * 4
    slow = Fake([2.0, 1.0])
    assert time_runner(slow, min_time=1.0, max_repeats=20) == 2.0  # one call is enough
    assert slow.calls.count("train") == 1
    some = Fake([0.5, 0.25, 0.75, 0.1])
    assert time_runner(some, min_time=1.0, max_repeats=20) == 0.25  # until 1 s was timed
    assert some.calls.count("train") == 3
    with pytest.raises(RuntimeError, match="cannot start"):
        time_runner(Fake([], fail_warm_up=True), 1.0, 3)
