"""MLPClassifier / MLPRegressor behaviour on every backend (the ``backend`` fixture).

Bad input of SPEC 4 (exception type and the message's key words), accepted input
layouts, float32, divergence leaving the estimator untouched, partial_fit, early stopping
restoring the best weights, warm_start, verbose, hidden_layer_sizes=(), pickle and clone.
"""

import copy
import pickle
import re
import warnings

import numpy as np
import pytest

from fastnn._base import validation_split
import fastnn
from fastnn._network import ALIGNMENT, aligned, aligned_empty, glorot_uniform_init
from fastnn._validation import ConvergenceWarning, NotFittedError
from fastnn.mlp import MLPClassifier, MLPRegressor


@pytest.fixture
def blobs():
    rng = np.random.RandomState(0)
    centers = np.array([[2.0, 0.0, 0.0], [-2.0, 1.0, 0.0], [0.0, -2.0, 1.0]])
    y = np.repeat([0, 1, 2], 20)
    X = centers[y] + 0.5 * rng.randn(60, 3)
    return X, y


@pytest.fixture
def regression():
    rng = np.random.RandomState(1)
    X = rng.randn(60, 3)
    return X, X @ np.array([1.0, -2.0, 0.5]) + 0.05 * rng.randn(60)


def quiet_fit(estimator, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(*args, **kwargs)


def small(cls, backend, **params):
    defaults = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                    learning_rate_init=0.05, backend=backend)
    defaults.update(params)
    return cls(**defaults)


def fitted_state(estimator):
    return {
        key: copy.deepcopy(value) for key, value in estimator.__dict__.items()
        if key not in ("coefs_", "intercepts_")
    }


def assert_same_state(before, after):
    assert before.keys() == after.keys()
    for key in before:
        if isinstance(before[key], np.ndarray):
            np.testing.assert_array_equal(before[key], after[key])
        elif isinstance(before[key], dict):
            assert_same_state(before[key], after[key])
        elif hasattr(before[key], "__dict__"):
            assert_same_state(vars(before[key]), vars(after[key]))
        else:
            assert before[key] == after[key] or (before[key] != before[key]), key


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_classifier_learns_blobs(backend, blobs, solver):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, solver=solver, max_iter=60), X, y)
    assert clf.score(X, y) > 0.95
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 3 and clf.out_activation_ == "softmax"
    assert clf.n_features_in_ == 3


def test_binary_and_string_labels(backend, blobs):
    X, y = blobs
    labels = np.where(y == 0, "spam", "ham")
    clf = quiet_fit(small(MLPClassifier, backend), X, labels)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.predict_proba(X).shape == (60, 2)
    assert set(clf.predict(X)) <= {"spam", "ham"}
    assert clf.score(X, labels) > 0.95


def test_multilabel(backend, blobs):
    X, y = blobs
    Y = np.column_stack([y == 0, y != 2]).astype(int)
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=80), X, Y)
    assert clf.predict(X).shape == (60, 2)
    assert clf.predict_proba(X).shape == (60, 2)
    assert clf.score(X, Y) > 0.9


@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_regressor_learns_linear_function(backend, regression, solver):
    X, y = regression
    reg = quiet_fit(small(MLPRegressor, backend, solver=solver, activation="identity",
                          learning_rate_init=0.01, max_iter=100), X, y)
    assert reg.score(X, y) > 0.98
    assert reg.predict(X).shape == (60,)
    Y = np.column_stack([y, -y])
    reg2 = quiet_fit(small(MLPRegressor, backend, solver=solver, activation="identity",
                           learning_rate_init=0.01, max_iter=100), X, Y)
    assert reg2.predict(X).shape == (60, 2) and reg2.score(X, Y) > 0.98


def test_no_hidden_layer_is_a_linear_model(backend, regression):
    X, y = regression
    reg = quiet_fit(small(MLPRegressor, backend, hidden_layer_sizes=(), solver="lbfgs"), X, y)
    assert reg.n_layers_ == 2 and len(reg.coefs_) == 1
    np.testing.assert_allclose(reg.coefs_[0].ravel(), [1.0, -2.0, 0.5], atol=0.05)


def test_coefs_are_views_of_one_buffer(backend, blobs):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=2), X, y)
    assert all(np.shares_memory(part, clf._params) for part in clf.coefs_ + clf.intercepts_)
    assert [c.shape for c in clf.coefs_] == [(3, 8), (8, 3)]


def _on_a_cache_line(array):
    return array.ctypes.data % ALIGNMENT == 0


def test_weight_buffer_starts_on_a_cache_line_however_it_was_made(backend, blobs, tmp_path):
    # The compiled online update reads the first layer a vector at a time; the buffer is
    # aligned by every path that makes one: a fit, a restore after a failed fit, pickle
    # and load.
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=2), X, y)
    assert _on_a_cache_line(clf._params)
    assert _on_a_cache_line(pickle.loads(pickle.dumps(clf))._params)
    clf.save(tmp_path / "model.npz")
    assert _on_a_cache_line(fastnn.load(tmp_path / "model.npz")._params)
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X[:, :2], np.zeros(60))
    assert _on_a_cache_line(clf._params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("length", [1, 7, 1985])
def test_aligned_copies_only_what_is_off_a_line(dtype, length):
    values = np.arange(length + 1, dtype=dtype)[1:]  # a view one element in: off a line
    assert not _on_a_cache_line(values)
    copy = aligned(values)
    assert _on_a_cache_line(copy) and copy.dtype == dtype
    np.testing.assert_array_equal(copy, values)
    assert aligned(copy) is copy
    assert _on_a_cache_line(aligned_empty(length, dtype))


def test_float32_trains_and_predicts_in_float32(backend, blobs):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend), X.astype(np.float32), y)
    assert clf.coefs_[0].dtype == np.float32
    assert clf.predict_proba(X).dtype == np.float32
    assert clf.score(X, y) > 0.9
    reg = quiet_fit(small(MLPRegressor, backend), X.astype(np.float32), y.astype(float))
    assert reg.predict(X).dtype == np.float32


def test_sample_weight_zero_equals_dropping_rows(backend, blobs):
    X, y = blobs
    weights = np.ones(60)
    weights[::2] = 0
    # Full batch, no shuffling: zero-weight rows contribute nothing to any update.
    params = dict(solver="sgd", batch_size=60, shuffle=False, max_iter=5)
    weighted = quiet_fit(small(MLPClassifier, backend, **params), X, y, sample_weight=weights)
    dropped = quiet_fit(small(MLPClassifier, backend, **dict(params, batch_size=30)),
                        X[1::2], y[1::2])
    for a, b in zip(weighted.coefs_, dropped.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda X: np.asfortranarray(X),
        lambda X: np.repeat(X, 2, axis=1)[:, ::2],  # non-contiguous view
        lambda X: np.round(X * 10).astype(np.int64),
        lambda X: X.tolist(),
    ],
    ids=["fortran", "strided", "integer", "list"],
)
def test_accepted_layouts(backend, blobs, make):
    X, y = blobs
    X_in = make(X)
    if isinstance(X_in, np.ndarray):
        X_in.flags.writeable = False
    reference = quiet_fit(small(MLPClassifier, backend), np.asarray(X_in, dtype=float), y)
    clf = quiet_fit(small(MLPClassifier, backend), X_in, y)
    np.testing.assert_array_equal(clf.predict_proba(X_in), reference.predict_proba(X_in))


# ------------------------------------------------------------ bad input (SPEC 4)

BAD_X = [
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 4, np.nan, X), ValueError, "NaN"),
    (lambda X: np.where(np.arange(X.size).reshape(X.shape) == 4, np.inf, X), ValueError,
     "infinity"),
    (lambda X: X[:, 0], ValueError, "Reshape your data"),
    (lambda X: X[None], ValueError, "dim 3"),
    (lambda X: X[:0], ValueError, "0 sample"),
    (lambda X: X[:, :0], ValueError, "0 feature"),
    (lambda X: np.full(X.shape, "a", dtype=object), ValueError, "non-numeric"),
    (lambda X: X + 1j, ValueError, "Complex"),
]


@pytest.mark.parametrize("case", range(len(BAD_X)))
def test_bad_X_in_fit(backend, blobs, case):
    make, error, words = BAD_X[case]
    X, y = blobs
    bad = make(X)
    with pytest.raises(error, match=words):
        small(MLPClassifier, backend).fit(bad, y[: len(bad)] if len(bad) else y[:0])


@pytest.mark.parametrize("case", [0, 1, 2, 3, 5, 6])
def test_bad_X_in_predict(backend, blobs, case):
    make, error, words = BAD_X[case]
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=2), X, y)
    with pytest.raises(error, match=words):
        clf.predict(make(X))


def test_feature_count_mismatch(backend, blobs):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=2), X, y)
    with pytest.raises(ValueError, match="X has 2 features, but MLPClassifier is expecting 3"):
        clf.predict_proba(X[:, :2])
    with pytest.raises(ValueError, match="expecting 3 features"):
        clf.partial_fit(X[:, :2], y)


def test_bad_targets(backend, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="only one class"):
        small(MLPClassifier, backend).fit(X, np.zeros(60))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        small(MLPClassifier, backend).fit(X, np.linspace(0, 1, 60))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        small(MLPClassifier, backend).fit(X, y[:-1])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        small(MLPRegressor, backend).fit(X, y[:-1])
    with pytest.raises(ValueError, match="1D or 2D"):
        small(MLPRegressor, backend).fit(X, np.zeros((60, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        small(MLPRegressor, backend).fit(X, np.full(60, np.nan))
    with pytest.raises(ValueError, match="non-numeric"):
        small(MLPRegressor, backend).fit(X, np.full(60, "x"))
    with pytest.raises(ValueError, match="y is None"):
        small(MLPRegressor, backend).fit(X, None)


def test_bad_sample_weight(backend, blobs):
    X, y = blobs
    for weights, words in [(np.ones(59), "59 entries"), (-np.ones(60), "negative"),
                           (np.zeros(60), "zero"), (np.full(60, np.nan), "NaN"),
                           (np.ones((60, 1)), "1D")]:
        with pytest.raises(ValueError, match=words):
            small(MLPClassifier, backend).fit(X, y, sample_weight=weights)


BAD_PARAMS = [
    (dict(hidden_layer_sizes=(5, 0)), ValueError, "hidden_layer_sizes"),
    (dict(hidden_layer_sizes="5"), TypeError, "hidden_layer_sizes"),
    (dict(hidden_layer_sizes=(2.5,)), TypeError, "hidden_layer_sizes"),
    (dict(activation="softplus"), ValueError, "activation='softplus'"),
    (dict(solver="rmsprop"), ValueError, "solver='rmsprop'"),
    (dict(alpha=-1.0), ValueError, "alpha"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size="big"), TypeError, "batch_size"),
    (dict(learning_rate="cosine"), ValueError, "learning_rate='cosine'"),
    (dict(learning_rate_init=0.0), ValueError, "learning_rate_init"),
    (dict(power_t=-0.5), ValueError, "power_t"),
    (dict(max_iter=0), ValueError, "max_iter"),
    (dict(max_iter=2.5), TypeError, "max_iter"),
    (dict(shuffle="yes"), TypeError, "shuffle"),
    (dict(random_state="seed"), ValueError, "random_state"),
    (dict(tol=-1e-3), ValueError, "tol"),
    (dict(momentum=1.5), ValueError, "momentum"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction"),
    (dict(beta_1=1.0), ValueError, "beta_1"),
    (dict(beta_2=-0.1), ValueError, "beta_2"),
    (dict(epsilon=0.0), ValueError, "epsilon"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change"),
    (dict(max_fun=0), ValueError, "max_fun"),
    (dict(backend="tensorflow"), ValueError, "backend='tensorflow'"),
]


@pytest.mark.parametrize("case", range(len(BAD_PARAMS)), ids=[
    "-".join(map(str, params)) for params, _, _ in BAD_PARAMS])
def test_bad_hyper_parameters_raise_in_fit(blobs, case):
    params, error, words = BAD_PARAMS[case]
    X, y = blobs
    clf = MLPClassifier(**params)  # __init__ stores, never validates
    with pytest.raises(error, match=re.escape(words)):
        clf.fit(X, y)
    assert not hasattr(clf, "coefs_")


def test_unknown_loss_and_unknown_parameter(regression):
    X, y = regression
    with pytest.raises(ValueError, match="loss='poisson'"):
        MLPRegressor(loss="poisson").fit(X, y)
    with pytest.raises(ValueError, match="Invalid parameter 'learning_rate_max'"):
        MLPRegressor().set_params(learning_rate_max=1.0)
    with pytest.raises(TypeError):
        MLPRegressor(learning_rate_max=1.0)


def test_not_fitted(backend, blobs):
    X, _ = blobs
    for method in ("predict", "predict_proba", "predict_log_proba"):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            getattr(MLPClassifier(backend=backend), method)(X)
    with pytest.raises(NotFittedError):
        MLPRegressor(backend=backend).predict(X)


# --------------------------------------------------------------- divergence


def test_divergence_raises_and_keeps_previous_state(backend, regression):
    X, y = regression
    reg = quiet_fit(small(MLPRegressor, backend, solver="sgd", max_iter=5,
                          learning_rate_init=1e-3), X, y)
    before = fitted_state(reg)
    predictions = reg.predict(X)
    reg.set_params(learning_rate_init=1e6, warm_start=True, max_iter=50)
    with pytest.raises(ValueError, match=r"NaN or infinite.*smaller learning_rate_init"):
        reg.fit(X * 1e3, y * 1e3)
    reg.set_params(learning_rate_init=1e-3, warm_start=False, max_iter=5)
    assert_same_state(before, fitted_state(reg))
    np.testing.assert_array_equal(reg.predict(X), predictions)
    assert all(np.shares_memory(c, reg._params) for c in reg.coefs_)


def test_divergence_of_a_new_fit_leaves_it_unfitted(backend, regression):
    X, y = regression
    reg = small(MLPRegressor, backend, solver="sgd", learning_rate_init=1e6, momentum=0.0)
    with pytest.raises(ValueError, match="diverged"):
        reg.fit(X * 1e3, y * 1e3)
    assert not hasattr(reg, "coefs_") and not hasattr(reg, "n_features_in_")


def test_bad_input_on_refit_keeps_previous_state(backend, blobs):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=3), X, y)
    before = fitted_state(clf)
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(X[:, :2], np.zeros(60))
    assert_same_state(before, fitted_state(clf))


# ---------------------------------------------------------------- training API


def test_partial_fit(backend, blobs):
    X, y = blobs
    clf = small(MLPClassifier, backend, solver="sgd")
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:30], y[:30], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and clf.t_ == 30 and len(clf.loss_curve_) == 1
    velocity = clf._optimizer_state["velocity"].copy()
    clf.partial_fit(X[30:], y[30:])
    assert clf.t_ == 60 and len(clf.loss_curve_) == 2
    assert np.abs(velocity).sum() > 0  # momentum carried between calls
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X, y + 5)
    with pytest.raises(ValueError, match="not the same as on the last call"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(small(MLPClassifier, backend, solver="lbfgs"), "partial_fit")
    with pytest.raises(AttributeError, match="stochastic"):
        small(MLPRegressor, backend, solver="lbfgs").partial_fit
    with pytest.raises(ValueError, match="early_stopping"):
        small(MLPRegressor, backend, early_stopping=True).partial_fit(X, y.astype(float))


def test_early_stopping_restores_best_weights(backend, regression):
    X, y = regression
    y = y + np.random.RandomState(3).randn(60)  # noisy: the validation score fluctuates
    reg = quiet_fit(small(MLPRegressor, backend, solver="sgd", early_stopping=True,
                          validation_fraction=0.25, n_iter_no_change=5, max_iter=60,
                          learning_rate_init=0.05, batch_size=5), X, y)
    scores = reg.validation_scores_
    assert len(scores) == reg.n_iter_ < 60
    assert reg.best_validation_score_ == max(scores) > scores[-1]
    # Redraw the split as the fit did (initialisation first, then the split).
    random_state = np.random.RandomState(0)
    glorot_uniform_init(reg._layer_units, "relu", random_state, np.float64)
    _, validation = validation_split(60, 0.25, random_state)
    assert reg.score(X[validation], y[validation]) == pytest.approx(
        reg.best_validation_score_, rel=1e-12)


def test_early_stopping_validation_too_small(backend, blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="validation set is too small"):
        small(MLPRegressor, backend, early_stopping=True, validation_fraction=0.01).fit(
            X[:10], y[:10].astype(float))


def test_warm_start_continues(backend, blobs):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=3, warm_start=True), X, y)
    first = clf.coefs_[0].copy()
    quiet_fit(clf, X, y)
    assert not np.array_equal(first, clf.coefs_[0])
    assert clf.t_ == 6 * 60
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 2], y[y < 2])
    clf.set_params(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="layer sizes"):
        clf.fit(X, y)


def test_max_iter_warns(backend, blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        small(MLPClassifier, backend, max_iter=2).fit(X, y)
    with pytest.warns(UserWarning, match="batch_size"):
        quiet_fit(small(MLPClassifier, backend, batch_size=500, max_iter=1), X, y)


def test_verbose_prints_one_line_per_epoch(backend, blobs, capsys):
    X, y = blobs
    quiet_fit(small(MLPClassifier, backend, max_iter=3, verbose=True), X, y)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"Iteration 1, loss = \d+\.\d{8}", lines[0])


def test_same_seed_same_model_and_random_state_objects(backend, blobs):
    X, y = blobs
    a = quiet_fit(small(MLPClassifier, backend, max_iter=3), X, y)
    b = quiet_fit(small(MLPClassifier, backend, max_iter=3), X, y)
    np.testing.assert_array_equal(a._params, b._params)
    c = quiet_fit(small(MLPClassifier, backend, max_iter=3,
                        random_state=np.random.RandomState(0)), X, y)
    np.testing.assert_array_equal(a._params, c._params)
    # A numpy Generator is accepted too (SPEC 3), and gives reproducible fits.
    d, e = (quiet_fit(small(MLPClassifier, backend, max_iter=3,
                            random_state=np.random.default_rng(7)), X, y) for _ in range(2))
    np.testing.assert_array_equal(d._params, e._params)


def test_pickle_and_clone(backend, blobs):
    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, backend, max_iter=3), X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert all(np.shares_memory(c, restored._params) for c in restored.coefs_)
    sklearn_base = pytest.importorskip("sklearn.base", reason="clone is scikit-learn's")
    fresh = sklearn_base.clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "coefs_")
    assert repr(fresh).startswith("MLPClassifier(") and "max_iter=3" in repr(fresh)


def test_keyboard_interrupt_keeps_weights_trained_so_far(blobs, monkeypatch):
    # As scikit-learn: Ctrl-C between epochs ends the fit with a warning, not an error.
    from fastnn import _kernels_ref

    X, y = blobs
    real_epoch = _kernels_ref.sgd_epoch
    calls = []

    def interrupted_after_two_epochs(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args)

    monkeypatch.setattr(_kernels_ref, "sgd_epoch", interrupted_after_two_epochs)
    with pytest.warns(UserWarning, match="interrupted by user"):
        clf = small(MLPClassifier, "numpy", max_iter=10).fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert clf.predict(X).shape == (60,)


class FakeFrame:
    """The two things fastnn reads from a DataFrame: its values and its column names."""

    def __init__(self, values, columns):
        self.values, self.columns = np.asarray(values), list(columns)

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype)

    def __len__(self):
        return len(self.values)


def test_feature_names_are_recorded_checked_and_saved(blobs, tmp_path):
    import fastnn

    X, y = blobs
    clf = quiet_fit(small(MLPClassifier, "numpy", max_iter=2), FakeFrame(X, "abc"), y)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c"])
    assert clf.predict(FakeFrame(X, "abc")).shape == (60,)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(FakeFrame(X, "abd"))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        clf.predict(X)
    clf.save(tmp_path / "m.npz")
    np.testing.assert_array_equal(fastnn.load(tmp_path / "m.npz").feature_names_in_,
                                  clf.feature_names_in_)
    refit = quiet_fit(clf, X, y)
    assert not hasattr(refit, "feature_names_in_")
