"""fastnn's MLPClassifier beside scikit-learn's on the digits, and SGD batch sizes compared.

1. The same network (64-64-10, relu, softmax output), the same hyper-parameters and the same
   ``random_state`` in fastnn and in scikit-learn: fastnn initialises, shuffles and batches
   exactly as scikit-learn does, so the two follow the same training trajectory. The loss
   curves are printed side by side, with the test accuracies and the wall-time ratio.
2. The lecture's stochastic-gradient slides: online SGD (batch 1), minibatches (32) and full
   batch gradient descent, with the same learning rate and number of epochs. Smaller
   batches make more (noisier) updates per pass over the data.

Needs scikit-learn (the digits ship with it). Run ``python examples/mlp_digits.py``
(``--quick`` for the tests, ``--full`` for more epochs).
"""

import warnings

import numpy as np

import _common
import fastnn
from fastnn.datasets import load_digits


def hyper_parameters(n_epochs, batch_size, seed):
    """Identical for both libraries; no early stop, so both run exactly ``n_epochs``."""
    return dict(hidden_layer_sizes=(64,), activation="relu", solver="sgd",
                batch_size=batch_size, learning_rate_init=0.01, momentum=0.9,
                nesterovs_momentum=True, alpha=1e-4, max_iter=n_epochs,
                n_iter_no_change=n_epochs + 1, random_state=seed)


def fit_timed(estimator, X, y):
    with _common.Timer() as timer:
        estimator.fit(X, y)
    return timer.seconds


def compare_with_sklearn(data, n_epochs, seed):
    from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier

    X_train, X_test, y_train, y_test = data
    params = hyper_parameters(n_epochs, 32, seed)
    ours = fastnn.MLPClassifier(**params)
    theirs = SklearnMLPClassifier(**params)
    fit_timed(ours, X_train[:64], y_train[:64])  # load the kernels outside the timing
    seconds_ours = fit_timed(ours, X_train, y_train)
    seconds_theirs = fit_timed(theirs, X_train, y_train)

    print(f"1. same hyper-parameters: {params}")
    curve_ours, curve_theirs = np.array(ours.loss_curve_), np.array(theirs.loss_curve_)
    epochs = sorted({1, 2, 3, 5, *range(10, n_epochs + 1, 10), n_epochs} & set(range(1, n_epochs + 1)))
    _common.print_table(
        ["epoch", "fastnn loss", "sklearn loss", "rel. diff"],
        [[e, curve_ours[e - 1], curve_theirs[e - 1],
          abs(curve_ours[e - 1] - curve_theirs[e - 1]) / abs(curve_theirs[e - 1])]
         for e in epochs],
        ["d", ".10f", ".10f", ".1e"])
    max_rel = float(np.max(np.abs(curve_ours - curve_theirs) / np.abs(curve_theirs)))
    accuracy_ours, accuracy_theirs = ours.score(X_test, y_test), theirs.score(X_test, y_test)
    same_predictions = int(np.sum(ours.predict(X_test) == theirs.predict(X_test)))
    print(f"max relative difference of the loss curves: {max_rel:.2e}")
    print(f"test accuracy: fastnn {accuracy_ours:.4f}, sklearn {accuracy_theirs:.4f}, "
          f"equal: {accuracy_ours == accuracy_theirs}")
    print(f"identical test predictions: {same_predictions} of {len(y_test)}")
    print(f"wall time: fastnn ({fastnn.get_backend()}) {seconds_ours:.3f} s, sklearn "
          f"{seconds_theirs:.3f} s, sklearn / fastnn = {seconds_theirs / seconds_ours:.1f}x")


def compare_batch_sizes(data, n_epochs, seed):
    X_train, X_test, y_train, y_test = data
    sizes = {"online (1)": 1, "minibatch (32)": 32, f"full batch ({len(X_train)})": len(X_train)}
    print(f"\n2. batch sizes, fastnn, learning rate 0.01, momentum 0.9, {n_epochs} epochs:")
    rows, curves = [], {}
    for name, batch_size in sizes.items():
        model = fastnn.MLPClassifier(**hyper_parameters(n_epochs, batch_size, seed))
        seconds = fit_timed(model, X_train, y_train)
        updates = n_epochs * -(-len(X_train) // batch_size)
        curves[name] = model.loss_curve_
        rows.append([name, updates, model.loss_curve_[-1], model.score(X_train, y_train),
                     model.score(X_test, y_test), seconds,
                     n_epochs * len(X_train) / seconds])
    epochs = sorted({1, 2, 5, 10, 20, 50, 100, n_epochs} & set(range(1, n_epochs + 1)))
    _common.print_table(["epoch", *curves],
                        [[e, *(c[e - 1] for c in curves.values())] for e in epochs],
                        ["d"] + [".4f"] * len(curves))
    print()
    _common.print_table(
        ["batch", "updates", "last loss", "train acc", "test acc", "seconds", "samples/s"],
        rows, ["", "d", ".4f", ".4f", ".4f", ".3f", ",.0f"])
    print("\nper epoch, online SGD makes the most progress (many noisy steps), full batch the "
          "least (one exact step); minibatches get most of the progress at the speed of "
          "matrix-matrix products.")


def main():
    def add_arguments(parser):
        parser.add_argument("--seed", type=int, default=0)

    args = _common.parse_args(__doc__.splitlines()[0], add_arguments)
    n_epochs = {"quick": 5, "default": 30, "full": 200}[args.mode]
    try:
        X, y = load_digits()
    except ModuleNotFoundError as exc:
        raise SystemExit(f"scikit-learn is needed for this example: {exc}")
    warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning at max_iter
    X = X / 16.0  # pixel values 0..16 to [0, 1]
    train, test = _common.train_test_split(len(X), 0.25, args.seed, y)
    data = (X[train], X[test], y[train], y[test])
    print(f"fastnn {fastnn.__version__}, backend {fastnn.get_backend()}, mode {args.mode}")
    print(f"digits: {len(X)} samples x {X.shape[1]} features, {len(train)} train / "
          f"{len(test)} test\n")
    compare_with_sklearn(data, n_epochs, args.seed)
    compare_batch_sizes(data, n_epochs, args.seed)


if __name__ == "__main__":
    main()
