"""Rosenblatt's perceptron on AND, OR and XOR; an MLP with one hidden layer on XOR.

What the lecture shows, run:

- the perceptron learns AND and OR (linearly separable) after a finite number of updates,
  and that number is below Novikoff's bound ``(D / gamma)^2``;
- it cannot learn XOR: no line separates it, so no epoch is ever free of mistakes;
- one hidden layer is enough: an ``MLPClassifier`` learns XOR.

Novikoff's theorem is stated with the bias folded into the input, ``x~ = (x1, x2, 1)`` and
``w~ = (w1, w2, b)``, so that the separator passes through the origin: if some unit vector
``u`` has ``y_i u.x~_i >= gamma > 0`` for all i and ``||x~_i|| <= D``, the perceptron started
from ``w~ = 0`` makes at most ``(D / gamma)^2`` updates, whatever the learning rate. The
theorem holds for *every* separating ``u``; the tightest bound comes from the separator of
largest margin (a small quadratic programme, solved here with scipy), so that is the bound
printed. The margin of the separator the perceptron learnt is printed too: it is a valid
``u`` as well, but its margin is smaller, so its bound is looser.

Run ``python examples/perceptron_logic.py`` (``--quick`` for the test suite).
"""

import warnings

import numpy as np
from scipy.optimize import linprog, minimize

import _common
import fastnn

X_LOGIC = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = {
    "AND": np.array([0, 0, 0, 1]),
    "OR": np.array([0, 1, 1, 1]),
    "XOR": np.array([0, 1, 1, 0]),
}


def fold_bias(X):
    """``x~ = (x, 1)``: the bias becomes one more weight."""
    return np.hstack([X, np.ones((len(X), 1))])


def signed(y):
    """Labels {0, 1} as the perceptron's {-1, +1}."""
    return 2 * np.asarray(y) - 1


def max_margin_separator(X_folded, y_signed):
    """The unit ``u`` through the origin with the largest margin, and that margin.

    Hard-margin SVM without bias in the folded space: minimise ``||w||^2`` subject to
    ``y_i w.x~_i >= 1``; then ``u = w / ||w||`` and ``gamma = 1 / ||w||``.
    """
    constraints = {"type": "ineq", "fun": lambda w: y_signed * (X_folded @ w) - 1.0,
                   "jac": lambda w: y_signed[:, None] * X_folded}
    start = np.zeros(X_folded.shape[1])
    result = minimize(lambda w: w @ w, start, jac=lambda w: 2 * w,
                      constraints=[constraints], method="SLSQP")
    if not result.success:
        raise RuntimeError(f"max-margin problem failed: {result.message}")
    norm = np.linalg.norm(result.x)
    return result.x / norm, 1.0 / norm


def is_linearly_separable(X_folded, y_signed):
    """Whether some ``w`` has ``y_i w.x~_i >= 1`` for all i (a linear programme)."""
    n_features = X_folded.shape[1]
    result = linprog(np.zeros(n_features), A_ub=-(y_signed[:, None] * X_folded),
                     b_ub=-np.ones(len(y_signed)), bounds=[(None, None)] * n_features)
    return result.status == 0


def train_perceptron(X, y, max_epochs):
    """Online perceptron from zero weights, one epoch per ``partial_fit``.

    Returns the fitted estimator and the number of mistakes (updates) in each epoch; stops
    after the first epoch without mistakes.
    """
    perceptron = fastnn.Perceptron(eta0=1.0, shuffle=False, random_state=0)
    mistakes_per_epoch = []
    updates_so_far = 0
    for _ in range(max_epochs):
        perceptron.partial_fit(X, y, classes=np.array([0, 1]))
        total = int(np.sum(perceptron.n_updates_))
        mistakes_per_epoch.append(total - updates_so_far)
        updates_so_far = total
        if mistakes_per_epoch[-1] == 0:
            break
    return perceptron, mistakes_per_epoch


def show_separable(name, y, max_epochs):
    X_folded, y_signed = fold_bias(X_LOGIC), signed(y)
    perceptron, mistakes = train_perceptron(X_LOGIC, y, max_epochs)
    w = np.append(perceptron.coef_.ravel(), perceptron.intercept_)
    radius = np.linalg.norm(X_folded, axis=1).max()
    _, gamma_best = max_margin_separator(X_folded, y_signed)
    gamma_learnt = np.min(y_signed * (X_folded @ w)) / np.linalg.norm(w)
    n_updates = sum(mistakes)
    bound = (radius / gamma_best) ** 2
    print(f"\n{name}: targets {y.tolist()}")
    print(f"  learnt w~ = (w1, w2, b) = {w.tolist()}")
    print(f"  predictions {perceptron.predict(X_LOGIC).tolist()}, "
          f"accuracy {perceptron.score(X_LOGIC, y):.2f}")
    print(f"  mistakes per epoch {mistakes} -> {n_updates} updates in {len(mistakes)} epochs "
          f"(the last epoch is mistake-free)")
    print(f"  D = max ||x~|| = {radius:.4f}")
    print(f"  max-margin separator: gamma* = {gamma_best:.4f}, "
          f"Novikoff's bound (D/gamma*)^2 = {bound:.1f}")
    print(f"  learnt separator:     gamma  = {gamma_learnt:.4f}, "
          f"(D/gamma)^2 = {(radius / gamma_learnt) ** 2:.1f} (also a bound, never tighter)")
    print(f"  updates <= bound: {n_updates} <= {bound:.1f} -> {n_updates <= bound}")


def show_xor_perceptron(max_epochs):
    y = TARGETS["XOR"]
    X_folded, y_signed = fold_bias(X_LOGIC), signed(y)
    perceptron, mistakes = train_perceptron(X_LOGIC, y, max_epochs)
    print(f"\nXOR: targets {y.tolist()}")
    print(f"  linear programme 'y_i w.x~_i >= 1 for all i' feasible: "
          f"{is_linearly_separable(X_folded, y_signed)}")
    print("  why: (0,0)->0 needs b < 0; (0,1)->1 and (1,0)->1 need w2 + b > 0 and w1 + b > 0;")
    print("       adding them, w1 + w2 + b > -b > 0, but (1,1)->0 needs w1 + w2 + b < 0.")
    print(f"  mistakes per epoch over {len(mistakes)} epochs: min {min(mistakes)}, "
          f"max {max(mistakes)}, last 5 {mistakes[-5:]}")
    print(f"  perceptron never had an epoch without mistakes: {min(mistakes) > 0}")
    print(f"  its predictions {perceptron.predict(X_LOGIC).tolist()}, "
          f"accuracy {perceptron.score(X_LOGIC, y):.2f} (at most 0.75 for any line)")


def show_xor_mlp(count_seeds):
    y = TARGETS["XOR"]
    mlp = fastnn.MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", solver="lbfgs",
                               max_iter=1000, random_state=0)
    mlp.fit(X_LOGIC, y)
    hidden = np.tanh(X_LOGIC @ mlp.coefs_[0] + mlp.intercepts_[0])
    print("\nXOR with MLPClassifier(hidden_layer_sizes=(4,), activation='tanh', solver='lbfgs'):")
    print(f"  predictions {mlp.predict(X_LOGIC).tolist()}, "
          f"P(y=1) {np.round(mlp.predict_proba(X_LOGIC)[:, 1], 3).tolist()}")
    print(f"  MLP learnt XOR: {bool(np.all(mlp.predict(X_LOGIC) == y))}")
    hidden_separable = is_linearly_separable(fold_bias(hidden), signed(y))
    print(f"  hidden activations o^1 = tanh(x W_0 + b_0) are linearly separable: {hidden_separable}")
    if count_seeds:
        learnt = 0
        for seed in range(count_seeds):
            small = fastnn.MLPClassifier(hidden_layer_sizes=(2,), activation="tanh",
                                         solver="lbfgs", max_iter=1000, random_state=seed)
            learnt += bool(np.all(small.fit(X_LOGIC, y).predict(X_LOGIC) == y))
        print(f"  with only 2 hidden units, {learnt} of {count_seeds} random initialisations "
              f"learn XOR (the others stop in a local minimum)")


def main():
    args = _common.parse_args(__doc__.splitlines()[0])
    max_epochs = {"quick": 20, "default": 100, "full": 1000}[args.mode]
    count_seeds = {"quick": 0, "default": 20, "full": 100}[args.mode]
    warnings.simplefilter("ignore", category=UserWarning)  # ConvergenceWarning on tiny data
    print(f"fastnn {fastnn.__version__}, backend {fastnn.get_backend()}, mode {args.mode}")
    print("Perceptron(eta0=1, shuffle=False): online updates w~ <- w~ + y x~ when y w~.x~ <= 0")
    for name in ("AND", "OR"):
        show_separable(name, TARGETS[name], max_epochs)
    show_xor_perceptron(max_epochs)
    show_xor_mlp(count_seeds)


if __name__ == "__main__":
    main()
