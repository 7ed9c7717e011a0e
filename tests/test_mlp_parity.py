"""fastnn's MLPs follow scikit-learn's training trajectory (SPEC 3), on every backend.

Same data, hyper-parameters and random_state, float64: ``loss_curve_`` and ``coefs_``
after 20 epochs agree to ``rtol=1e-6``. The optimiser x shuffle x batch size x task grid
is covered pairwise (16 cases, every pair of levels appears at least once).
"""

import warnings

import numpy as np
import pytest

from fastnn.mlp import MLPClassifier, MLPRegressor

sklearn_mlp = pytest.importorskip(
    "sklearn.neural_network", reason="scikit-learn is the reference of these parity tests"
)

RTOL = 1e-6
OPTIMIZERS = {
    "sgd": dict(solver="sgd", learning_rate_init=0.05, momentum=0.9, nesterovs_momentum=True),
    "sgd_nomomentum": dict(solver="sgd", learning_rate_init=0.05, momentum=0.0),
    "sgd_invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2,
                           momentum=0.5, nesterovs_momentum=False),
    "adam": dict(solver="adam", learning_rate_init=0.01),
}
# Pairwise covering of (optimizer, shuffle, batch_size, task), generated greedily.
PAIRWISE_CASES = [
    ("sgd", True, 1, "binary"),
    ("sgd", False, 16, "multiclass"),
    ("sgd_nomomentum", True, 16, "multilabel"),
    ("sgd_nomomentum", False, 1, "regression"),
    ("sgd_invscaling", True, "auto", "multiclass"),
    ("adam", False, "auto", "binary"),
    ("sgd_invscaling", False, 1, "multilabel"),
    ("adam", True, 16, "regression"),
    ("sgd", True, "auto", "multilabel"),
    ("sgd_invscaling", True, 16, "binary"),
    ("adam", True, 1, "multiclass"),
    ("sgd", True, "auto", "regression"),
    ("sgd_nomomentum", True, "auto", "binary"),
    ("sgd_nomomentum", True, 1, "multiclass"),
    ("sgd_invscaling", True, 1, "regression"),
    ("adam", True, 1, "multilabel"),
]
ACTIVATIONS = ("relu", "tanh", "logistic", "identity")


def make_task(task, n_samples=50, n_features=4, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features)
    score = X @ rng.randn(n_features)
    if task == "binary":
        return X, np.where(score > 0, "yes", "no")
    if task == "multiclass":
        return X, np.digitize(score, np.quantile(score, [0.33, 0.66])) + 3
    if task == "multilabel":
        return X, np.column_stack([score > 0, X[:, 0] > 0.3, X[:, 1] < 0]).astype(int)
    if task == "regression":
        return X, score + 0.1 * rng.randn(n_samples)
    if task == "regression2":
        return X, np.column_stack([score, X[:, 0] ** 2])
    raise ValueError(task)


def fit_both(task, backend, **params):
    """Fit fastnn's and scikit-learn's estimator with the same parameters."""
    X, y = make_task(task)
    sample_weight = params.pop("sample_weight", None)
    regression = task.startswith("regression")
    ours = (MLPRegressor if regression else MLPClassifier)(backend=backend, **params)
    theirs = (sklearn_mlp.MLPRegressor if regression else sklearn_mlp.MLPClassifier)(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of both, by design
        ours.fit(X, y, sample_weight=sample_weight)
        theirs.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


def assert_same_trajectory(ours, theirs, curves=True):
    if curves:
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=RTOL)
        assert ours.n_iter_ == theirs.n_iter_
        assert ours.t_ == theirs.t_
    for mine, reference in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(mine, reference, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("case", range(len(PAIRWISE_CASES)))
def test_trajectory_matches_sklearn(backend, case):
    optimizer, shuffle, batch_size, task = PAIRWISE_CASES[case]
    ours, theirs = fit_both(
        task, backend, hidden_layer_sizes=(6, 5)[: 1 + case % 2],
        activation=ACTIVATIONS[case % 4], alpha=1e-3, batch_size=batch_size,
        shuffle=shuffle, max_iter=20, tol=0.0, random_state=case,
        **OPTIMIZERS[optimizer],
    )
    assert len(ours.loss_curve_) == 20
    assert_same_trajectory(ours, theirs)
    assert ours.out_activation_ == theirs.out_activation_
    assert ours.n_outputs_ == theirs.n_outputs_


def test_adaptive_schedule_and_stopping_match_sklearn(backend):
    # tol so large that no epoch improves: the adaptive rate is divided by 5 repeatedly.
    ours, theirs = fit_both(
        "binary", backend, hidden_layer_sizes=(5,), solver="sgd", learning_rate="adaptive",
        learning_rate_init=0.1, tol=0.5, n_iter_no_change=2, max_iter=40, random_state=3,
    )
    assert_same_trajectory(ours, theirs)
    assert ours._optimizer_state["learning_rate"] == pytest.approx(
        theirs._optimizer.learning_rate, rel=1e-12
    )
    assert ours.n_iter_ < 40  # stopped once the rate fell below 1e-6


def test_tol_stopping_matches_sklearn(backend):
    ours, theirs = fit_both(
        "regression", backend, hidden_layer_sizes=(5,), solver="adam", tol=1e-2,
        n_iter_no_change=3, max_iter=200, random_state=1, learning_rate_init=0.05,
    )
    assert ours.n_iter_ < 200
    assert_same_trajectory(ours, theirs)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=RTOL)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_early_stopping_matches_sklearn(backend, task):
    ours, theirs = fit_both(
        task, backend, hidden_layer_sizes=(5,), solver="sgd", learning_rate_init=0.05,
        early_stopping=True, validation_fraction=0.2, n_iter_no_change=3, max_iter=40,
        random_state=2,
    )
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=RTOL)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
    assert ours.best_loss_ is None
    assert_same_trajectory(ours, theirs)


def test_sample_weight_matches_sklearn(backend):
    weights = np.random.RandomState(0).uniform(0.1, 3, 50)
    ours, theirs = fit_both(
        "multiclass", backend, hidden_layer_sizes=(5,), solver="sgd", batch_size=16,
        max_iter=20, tol=0.0, random_state=4, sample_weight=weights,
    )
    assert_same_trajectory(ours, theirs)


def test_partial_fit_and_warm_start_match_sklearn(backend):
    X, y = make_task("multiclass")
    params = dict(hidden_layer_sizes=(5,), solver="adam", learning_rate_init=0.01,
                  random_state=5, batch_size=16)
    ours = MLPClassifier(backend=backend, **params)
    theirs = sklearn_mlp.MLPClassifier(**params)
    for _ in range(3):
        ours.partial_fit(X, y, classes=np.unique(y))
        theirs.partial_fit(X, y, classes=np.unique(y))
    assert_same_trajectory(ours, theirs, curves=False)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=RTOL)

    params.update(warm_start=True, max_iter=5, tol=0.0)
    ours = MLPClassifier(backend=backend, **params)
    theirs = sklearn_mlp.MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(2):
            ours.fit(X, y)
            theirs.fit(X, y)
    assert_same_trajectory(ours, theirs)


def test_multi_output_regression_follows_sklearn_gradient(backend):
    # SPEC 3: the loss sums the outputs (sklearn averages its reported loss over them,
    # sklearn issue 8349, while its gradient sums): the weights follow the same path.
    ours, theirs = fit_both(
        "regression2", backend, hidden_layer_sizes=(5,), solver="sgd", max_iter=20,
        tol=0.0, alpha=0.0, random_state=6,
    )
    assert_same_trajectory(ours, theirs, curves=False)
    np.testing.assert_allclose(
        ours.loss_curve_, 2 * np.asarray(theirs.loss_curve_), rtol=RTOL
    )


def test_lbfgs_matches_sklearn(backend):
    # Same start, same objective and gradient: the first iterations agree to rounding.
    ours, theirs = fit_both(
        "regression", backend, hidden_layer_sizes=(5,), solver="lbfgs", max_iter=15,
        random_state=0,
    )
    assert ours.n_iter_ == theirs.n_iter_ == 15
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    # Run to convergence, rounding differences grow, but both reach a comparable fit.
    ours, theirs = fit_both(
        "regression", backend, hidden_layer_sizes=(5,), solver="lbfgs", max_iter=300,
        random_state=0,
    )
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=0.2)
    X, y = make_task("regression")
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y), abs=1e-3)
