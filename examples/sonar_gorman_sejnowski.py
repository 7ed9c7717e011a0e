"""Gorman and Sejnowski (1988), sonar, "aspect-angle independent" experiment, with fastnn.

The protocol, as ``sonar.names`` describes it: the 208 returns are divided randomly into 13
disjoint sets of 16; each set in turn is the test set and the other 12 (192 samples) the
training set; networks with no hidden layer and with one hidden layer of 2, 3, 6, 12 or 24
units are trained for 300 epochs; every one of the 13 splits is run 10 times; the table
reports the mean and standard deviation of the percentage right on the training and on the
test sets.

What fastnn does here, and how it differs from the 1988 set-up:

- same: the 13 x 16 random division, 300 epochs over the whole training set, logistic
  hidden units, momentum 0, raw features (energies in [0, 1], no scaling), repeated runs
  that differ by their initial weights (``random_state``), mean and standard deviation
  over all (split, run) pairs;
- different: one logistic output unit with the log loss (scikit-learn's binary classifier)
  instead of two output units with squared error where errors below 0.2 count as zero;
  scikit-learn's initialisation ``U(-b, b)``, ``b = sqrt(2 / (fan_in + fan_out))``
  instead of ``U(-0.3, 0.3)``; online SGD (``batch_size=1``, samples shuffled every epoch)
  with ``learning_rate_init=0.1`` instead of their modified update with rate 2.0.

``--full`` runs the paper's 10 runs per split; the default runs fewer (printed), and
``--quick`` a few folds, two architectures and few epochs (for the tests).
"""

import warnings

import numpy as np

import _common
import fastnn
from fastnn.datasets import load_sonar

N_FOLDS = 13
FOLD_SIZE = 16

# Quoted from sonar.names ("RESULTS", angle independent experiments):
# hidden units: (% right on training set, std, % right on test set, std)
PUBLISHED = {
    0: (89.4, 2.1, 77.1, 8.3),
    2: (96.5, 0.7, 81.9, 6.2),
    3: (98.8, 0.4, 82.0, 7.3),
    6: (99.7, 0.2, 83.5, 5.6),
    12: (99.8, 0.1, 84.7, 5.7),
    24: (99.8, 0.1, 84.5, 5.7),
}

SETTINGS = {  # mode: (hidden units, runs per split, epochs, folds evaluated)
    "quick": ((0, 3), 1, 30, 3),
    "default": ((0, 2, 3, 6, 12, 24), 1, 300, N_FOLDS),
    "full": ((0, 2, 3, 6, 12, 24), 10, 300, N_FOLDS),
}


def make_network(n_hidden, n_epochs, seed):
    return fastnn.MLPClassifier(
        hidden_layer_sizes=(n_hidden,) if n_hidden else (),
        activation="logistic", solver="sgd", batch_size=1, learning_rate="constant",
        learning_rate_init=0.1, momentum=0.0, alpha=0.0, max_iter=n_epochs,
        # never stop early: the protocol is a fixed number of epochs
        tol=0.0, n_iter_no_change=n_epochs + 1, shuffle=True, random_state=seed,
    )


def run_architecture(X, y, folds, n_hidden, n_runs, n_epochs, n_folds_used):
    """Train and test accuracies (in %) of every (split, run) pair."""
    train_scores, test_scores = [], []
    for k in range(n_folds_used):
        test = folds[k]
        train = np.concatenate([folds[j] for j in range(N_FOLDS) if j != k])
        for run in range(n_runs):
            network = make_network(n_hidden, n_epochs, seed=1000 * run + k)
            network.fit(X[train], y[train])
            train_scores.append(100 * network.score(X[train], y[train]))
            test_scores.append(100 * network.score(X[test], y[test]))
    return np.array(train_scores), np.array(test_scores)


def main():
    def add_arguments(parser):
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of the random division into 13 sets")
        parser.add_argument("--runs", type=int, default=None,
                            help="runs per split (default: 1, or 10 with --full)")

    args = _common.parse_args(__doc__.splitlines()[0], add_arguments)
    hidden_units, n_runs, n_epochs, n_folds_used = SETTINGS[args.mode]
    n_runs = args.runs or n_runs
    warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning at max_iter

    X, y = load_sonar(_common.require_file(args.data_dir / "sonar.all-data").parent)
    if len(X) != N_FOLDS * FOLD_SIZE:
        raise SystemExit(f"expected {N_FOLDS * FOLD_SIZE} sonar samples, found {len(X)}")
    folds = np.random.RandomState(args.seed).permutation(len(X)).reshape(N_FOLDS, FOLD_SIZE)

    print(f"fastnn {fastnn.__version__}, backend {fastnn.get_backend()}, mode {args.mode}")
    print(f"protocol: 13 sets of 16 (seed {args.seed}), {n_folds_used} of 13 splits evaluated, "
          f"{n_runs} run(s) per split, {n_epochs} epochs, online SGD (batch 1, "
          f"learning rate 0.1, momentum 0), logistic units")
    if (n_runs, n_epochs, n_folds_used) != (10, 300, N_FOLDS):
        print("(the paper: 13 splits x 10 runs x 300 epochs; run with --full for that)")
    print()

    rows = []
    with _common.Timer() as total:
        for n_hidden in hidden_units:
            with _common.Timer() as timer:
                train_scores, test_scores = run_architecture(
                    X, y, folds, n_hidden, n_runs, n_epochs, n_folds_used)
            paper = PUBLISHED[n_hidden]
            rows.append([n_hidden, train_scores.mean(), train_scores.std(), test_scores.mean(),
                         test_scores.std(), *paper, timer.seconds])
            print(f"hidden {n_hidden:2d}: {len(test_scores)} networks in {timer.seconds:.1f} s",
                  flush=True)

    print("\n% right, mean and std over the (split, run) pairs; published = Gorman and "
          "Sejnowski (1988) as quoted in sonar.names")
    _common.print_table(
        ["hidden", "fastnn train", "std", "fastnn test", "std",
         "published train", "std", "published test", "std", "seconds"],
        rows, ["d", ".1f", ".1f", ".1f", ".1f", ".1f", ".1f", ".1f", ".1f", ".1f"])
    print(f"\nwall time {total.seconds:.1f} s")


if __name__ == "__main__":
    main()
