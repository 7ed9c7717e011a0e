"""Every example runs in its quick mode and prints what it is meant to show.

(``examples/autoencoders.py`` is tested beside its estimators, in tests/test_autoencoder.py.)

Each script runs in a subprocess (as a user would run it) with ``--quick``; the assertions
read the numbers back from its output.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"


def run_example(name, *arguments, env=None):
    """Run ``examples/name`` and return its stdout; fail with its stderr if it fails."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})}
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, arguments)],
        capture_output=True, text=True, env=environment, timeout=300, cwd=REPO_ROOT,
    )
    assert completed.returncode == 0, f"{name} failed:\n{completed.stdout}\n{completed.stderr}"
    return completed.stdout


def table_rows(output, header_start):
    """The rows (lists of cells) of the table printed under the header ``header_start``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(header_start))
    rows = []
    for line in lines[start + 2:]:  # skip the header and its dashes
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


def require_files(data_dir, *names):
    missing = [name for name in names if not (data_dir / name).is_file()]
    if missing:
        pytest.skip(f"data files missing from {data_dir}: {', '.join(missing)}")


def test_perceptron_logic_learns_and_or_not_xor_and_mlp_learns_xor():
    # the environment variable is the other way to ask for the quick mode
    output = run_example("perceptron_logic.py", env={"FASTNN_EXAMPLES_QUICK": "1"})
    assert "mode quick" in output
    checks = re.findall(r"updates <= bound: (\d+) <= ([\d.]+) -> (\w+)", output)
    assert len(checks) == 2  # AND and OR
    for n_updates, bound, verdict in checks:
        assert 0 < int(n_updates) <= float(bound) and verdict == "True"
    assert "Novikoff's bound (D/gamma*)^2 = 51.0" in output  # AND: gamma* = 1/sqrt(17), D^2 = 3
    assert "Novikoff's bound (D/gamma*)^2 = 27.0" in output  # OR: gamma* = 1/3
    assert "'y_i w.x~_i >= 1 for all i' feasible: False" in output
    assert "perceptron never had an epoch without mistakes: True" in output
    assert "predictions [0, 1, 1, 0]" in output
    assert "MLP learnt XOR: True" in output
    assert "are linearly separable: True" in output


def test_perceptron_sonar_accuracy_and_eta_invariance(data_dir):
    require_files(data_dir, "sonar.all-data")
    output = run_example("perceptron_sonar.py", "--quick", "--data-dir", data_dir)
    rows = table_rows(output, "model")
    assert [row[0] for row in rows] == [
        "perceptron", "logistic constant", "logistic invscaling", "logistic adaptive"]
    for name, train_accuracy, test_accuracy, *_ in rows:
        assert float(train_accuracy) > 0.75, name
        assert float(test_accuracy) > 0.6, name
    assert "eta0=0.01 instead of 1: same predictions True, weights ratio 0.0100" in output


def test_sonar_gorman_sejnowski_table(data_dir):
    require_files(data_dir, "sonar.all-data")
    output = run_example("sonar_gorman_sejnowski.py", "--quick", "--data-dir", data_dir)
    rows = table_rows(output, "hidden  fastnn train")
    assert [int(row[0]) for row in rows] == [0, 3]
    published = {0: ["89.4", "2.1", "77.1", "8.3"], 3: ["98.8", "0.4", "82.0", "7.3"]}
    for row in rows:
        train_mean, _, test_mean, _ = map(float, row[1:5])
        assert train_mean > 70 and test_mean > 60, row
        assert row[5:9] == published[int(row[0])]
    assert "wall time" in output


def test_mlp_digits_matches_sklearn():
    pytest.importorskip("sklearn", reason="scikit-learn ships the digits and is the peer")
    output = run_example("mlp_digits.py", "--quick")
    match = re.search(r"max relative difference of the loss curves: (\S+)", output)
    assert float(match.group(1)) < 1e-9
    match = re.search(r"test accuracy: fastnn ([\d.]+), sklearn ([\d.]+), equal: True", output)
    assert match and float(match.group(1)) > 0.85
    match = re.search(r"identical test predictions: (\d+) of (\d+)", output)
    assert match.group(1) == match.group(2)
    rows = table_rows(output, "batch")
    assert [int(row[1]) for row in rows] == [5 * 1347, 5 * 43, 5]  # updates in 5 epochs
    last_losses = [float(row[2]) for row in rows]
    assert last_losses[0] < last_losses[1] < last_losses[2]  # smaller batches, more progress


def test_mlp_mnist_every_backend(data_dir):
    require_files(data_dir, "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
    output = run_example("mlp_mnist.py", "--quick", "--data-dir", data_dir)
    rows = table_rows(output, "backend")
    assert rows[0][0] == "numpy" and len(rows) >= 1
    for backend, dtype, accuracy, samples_per_second, _, distance in rows:
        assert float(accuracy) > 0.75, backend
        assert float(samples_per_second.replace(",", "")) > 0
        assert dtype == "float64" and float(distance) < 1e-9, backend


def test_missing_data_file_is_one_clear_line(tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / "perceptron_sonar.py"), "--quick", "--data-dir",
         str(tmp_path)], capture_output=True, text=True, env=environment, timeout=120)
    assert completed.returncode != 0
    assert "data file not found" in completed.stderr and "Traceback" not in completed.stderr
