"""The perceptron and a logistic unit on the UCI sonar data: learning curves and decay.

Sonar (Gorman and Sejnowski 1988): 208 sonar returns, 60 band energies each, mine (1) or
rock (0). The features are standardised with the training set's mean and deviation, and 30%
of the samples (stratified) are held out.

- ``Perceptron``: Rosenblatt's online rule ``w <- w + eta y x`` on every mistake. Its
  learning rate does not matter: from ``w = 0`` every weight vector it reaches is ``eta``
  times the one ``eta = 1`` reaches, so the predictions are the same (checked below).
- ``MLPClassifier(hidden_layer_sizes=())``: one logistic unit ``p = sigma(w.x + b)`` trained
  by online SGD (``batch_size=1``) on the log loss. Here the rate does matter, and so does
  its schedule: ``constant`` keeps a large step (fast progress, a noisy curve), ``invscaling``
  divides it by ``(t + 1)^power_t`` with ``t`` the number of samples seen, updated once per
  epoch as scikit-learn does (a smooth curve that can stall early), ``adaptive`` divides it
  by 5 only after ``n_iter_no_change`` epochs without improvement of the training loss.

The learning curves are the training error after each epoch (``partial_fit`` runs one).
Run ``python examples/perceptron_sonar.py`` (``--quick`` for the tests, ``--full`` for more
epochs).
"""

import warnings

import numpy as np

import _common
import fastnn
from fastnn.datasets import load_sonar

SCHEDULES = ("constant", "invscaling", "adaptive")


def curve(estimator, X_train, y_train, n_epochs):
    """Training error after each of ``n_epochs`` calls of ``partial_fit``."""
    errors = []
    for _ in range(n_epochs):
        estimator.partial_fit(X_train, y_train, classes=np.array([0, 1]))
        errors.append(1.0 - estimator.score(X_train, y_train))
    return np.array(errors)


def checkpoints(n_epochs):
    marks = [e for e in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000) if e <= n_epochs]
    return marks if marks[-1] == n_epochs else marks + [n_epochs]


def logistic_unit(schedule, learning_rate_init, seed):
    return fastnn.MLPClassifier(hidden_layer_sizes=(), solver="sgd", batch_size=1,
                                learning_rate=schedule, learning_rate_init=learning_rate_init,
                                momentum=0.0, alpha=0.0, random_state=seed)


def main():
    def add_arguments(parser):
        parser.add_argument("--seed", type=int, default=0, help="split and training seed")
        parser.add_argument("--learning-rate", type=float, default=0.5,
                            help="learning_rate_init of the logistic unit (default 0.5)")

    args = _common.parse_args(__doc__.splitlines()[0], add_arguments)
    n_epochs = {"quick": 10, "default": 100, "full": 500}[args.mode]
    warnings.simplefilter("ignore", category=UserWarning)

    X, y = load_sonar(_common.require_file(args.data_dir / "sonar.all-data").parent)
    train, test = _common.train_test_split(len(X), 0.3, args.seed, y)
    X_train, X_test = _common.standardize(X[train], X[test])
    y_train, y_test = y[train], y[test]
    print(f"fastnn {fastnn.__version__}, backend {fastnn.get_backend()}, mode {args.mode}")
    print(f"sonar: {len(X)} samples x {X.shape[1]} features, {len(train)} train / "
          f"{len(test)} test (stratified, seed {args.seed}), {n_epochs} epochs\n")

    models = {"perceptron": fastnn.Perceptron(eta0=1.0, shuffle=True, random_state=args.seed)}
    for schedule in SCHEDULES:
        models[f"logistic {schedule}"] = logistic_unit(schedule, args.learning_rate, args.seed)
    curves = {name: curve(model, X_train, y_train, n_epochs) for name, model in models.items()}

    print(f"training error per epoch (logistic unit: online SGD, learning_rate_init="
          f"{args.learning_rate}):")
    marks = checkpoints(n_epochs)
    _common.print_table(["epoch", *curves],
                        [[epoch, *(c[epoch - 1] for c in curves.values())] for epoch in marks],
                        ["d"] + [".3f"] * len(curves))

    print("\nsummary:")
    rose = {name: int(np.sum(np.diff(errors) > 0)) for name, errors in curves.items()}
    rows = []
    for name, model in models.items():
        errors = curves[name]
        final_loss = f"{model.loss_:.4f}" if hasattr(model, "loss_") else "-"
        rows.append([name, 1.0 - errors[-1], model.score(X_test, y_test), errors.min(),
                     rose[name], final_loss])
    _common.print_table(
        ["model", "train acc", "test acc", "best train err", "epochs err rose", "last epoch loss"],
        rows, ["", ".3f", ".3f", ".3f", "d", ""])

    slow = fastnn.Perceptron(eta0=0.01, shuffle=True, random_state=args.seed)
    curve(slow, X_train, y_train, n_epochs)
    same = bool(np.array_equal(slow.predict(X_test), models["perceptron"].predict(X_test)))
    print(f"\nperceptron with eta0=0.01 instead of 1: same predictions {same}, "
          f"weights ratio {np.linalg.norm(slow.coef_) / np.linalg.norm(models['perceptron'].coef_):.4f}")
    final_rate = args.learning_rate / (len(train) * n_epochs + 1) ** 0.5
    print("\nlearning-rate decay matters for the logistic unit:")
    print(f"  constant  : the step stays {args.learning_rate}; the training error rose in "
          f"{rose['logistic constant']} epochs (SGD noise), final train acc "
          f"{1 - curves['logistic constant'][-1]:.3f}")
    print(f"  invscaling: the step falls to {final_rate:.2g}; the error rose in "
          f"{rose['logistic invscaling']} epochs (smooth), final train acc "
          f"{1 - curves['logistic invscaling'][-1]:.3f}")
    print(f"  adaptive  : divides the step by 5 only when the training loss stops improving; "
          f"error rose in {rose['logistic adaptive']} epochs, final train acc "
          f"{1 - curves['logistic adaptive'][-1]:.3f}")


if __name__ == "__main__":
    main()
