"""fastnn.Perceptron: parity with scikit-learn, Novikoff's bound, XOR, bad input, state.

Every test that trains runs under each available backend (the ``backend`` fixture).
"""

import pickle
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastnn.perceptron import Perceptron
from fastnn._validation import ConvergenceWarning, DataConversionWarning, NotFittedError


def _data(n_classes, n_samples=60, n_features=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, n_features)
    if n_classes == 2:
        y = (X[:, 0] + 0.3 * rng.randn(n_samples) > 0).astype(int)
    else:
        y = rng.randint(0, n_classes, n_samples)
    sample_weight = rng.uniform(0.5, 2.0, n_samples)
    return X, y, sample_weight


def _sklearn_perceptron(**params):
    linear_model = pytest.importorskip(
        "sklearn.linear_model", reason="scikit-learn is the reference of these parity tests"
    )
    return linear_model.Perceptron(**params)


def _fit_quietly(estimator, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of either library
        return estimator.fit(*args, **kwargs)


def _assert_same_model(ours, theirs):
    # The same updates in the same order: equal up to the rounding of the dot products.
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-9, atol=1e-12)
    assert ours.coef_.shape == theirs.coef_.shape
    assert ours.intercept_.shape == theirs.intercept_.shape
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_


# ------------------------------------------------------------------ scikit-learn parity


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("class_weight", [None, "balanced", {0: 2.0, 1: 0.5}])
@pytest.mark.parametrize("penalty", [None, "l2", "l1", "elasticnet"])
def test_equals_sklearn_without_shuffle(backend, penalty, class_weight, n_classes):
    X, y, sample_weight = _data(n_classes)
    params = dict(penalty=penalty, alpha=0.01, class_weight=class_weight, shuffle=False)
    if penalty in ("l1", "elasticnet"):
        # scikit-learn's stopping objective uses norms cached before the L1 step
        # (docs/kernels.md), so compare a fixed number of epochs.
        params.update(tol=None, max_iter=12)
    ours = _fit_quietly(Perceptron(backend=backend, **params), X, y, sample_weight=sample_weight)
    theirs = _fit_quietly(_sklearn_perceptron(**params), X, y, sample_weight=sample_weight)
    _assert_same_model(ours, theirs)
    np.testing.assert_allclose(ours.decision_function(X), theirs.decision_function(X),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert ours.score(X, y) == pytest.approx(theirs.score(X, y))
    assert ours.n_iter_ > 1


@pytest.mark.parametrize("n_classes", [2, 4])
def test_equals_sklearn_with_default_tol_and_early_stopping(backend, n_classes):
    X, y, _ = _data(n_classes, n_samples=80)
    for params in (
        dict(shuffle=False),
        dict(shuffle=False, fit_intercept=False, eta0=0.5),
        dict(shuffle=False, early_stopping=True, validation_fraction=0.2, random_state=3),
    ):
        ours = _fit_quietly(Perceptron(backend=backend, **params), X, y)
        theirs = _fit_quietly(_sklearn_perceptron(**params), X, y)
        _assert_same_model(ours, theirs)


def test_float32_keeps_float32_and_matches_sklearn(backend):
    X, y, _ = _data(3)
    X32 = X.astype(np.float32)
    ours = _fit_quietly(Perceptron(backend=backend, shuffle=False, tol=None, max_iter=5), X32, y)
    theirs = _fit_quietly(_sklearn_perceptron(shuffle=False, tol=None, max_iter=5), X32, y)
    assert ours.coef_.dtype == np.float32 and ours.intercept_.dtype == np.float32
    assert ours.decision_function(X32).dtype == np.float32
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-4, atol=1e-5)


def test_partial_fit_equals_sklearn(backend):
    X, y, sample_weight = _data(3)
    ours = Perceptron(backend=backend, shuffle=False)
    theirs = _sklearn_perceptron(shuffle=False)
    for _ in range(3):
        for model in (ours, theirs):
            model.partial_fit(X[:30], y[:30], classes=[0, 1, 2], sample_weight=sample_weight[:30])
            model.partial_fit(X[30:], y[30:], sample_weight=sample_weight[30:])
    _assert_same_model(ours, theirs)
    assert ours.n_iter_ == 1
    assert ours.n_updates_.shape == (3,) and (ours.n_updates_ > 0).all()


def test_partial_fit_keeps_the_dtype_of_its_first_call(backend):
    X, y, _ = _data(2)
    model = Perceptron(backend=backend).partial_fit(X, y, classes=[0, 1])
    model.partial_fit(X.astype(np.float32), y)
    assert model.coef_.dtype == np.float64
    model32 = Perceptron(backend=backend).partial_fit(X.astype(np.float32), y, classes=[0, 1])
    model32.partial_fit(X, y)
    assert model32.coef_.dtype == np.float32 and model32.intercept_.dtype == np.float32


def test_warm_start_equals_sklearn(backend):
    X, y, _ = _data(3)
    params = dict(shuffle=False, warm_start=True, max_iter=3, tol=None)
    ours = Perceptron(backend=backend, **params)
    theirs = _sklearn_perceptron(**params)
    for _ in range(2):
        ours.fit(X, y)
        theirs.fit(X, y)
    _assert_same_model(ours, theirs)
    # Without warm_start, a second fit starts again from zero.
    cold = Perceptron(backend=backend, shuffle=False, max_iter=3, tol=None).fit(X, y)
    again = Perceptron(backend=backend, shuffle=False, max_iter=3, tol=None).fit(X, y).fit(X, y)
    np.testing.assert_array_equal(cold.coef_, again.coef_)


def test_fit_with_coef_init_equals_sklearn(backend):
    X, y, _ = _data(2)
    coef_init, intercept_init = np.full((1, 5), 0.25), np.array([-0.5])
    params = dict(shuffle=False, max_iter=4, tol=None)
    ours = Perceptron(backend=backend, **params).fit(X, y, coef_init, intercept_init)
    theirs = _sklearn_perceptron(**params).fit(X, y, coef_init, intercept_init)
    _assert_same_model(ours, theirs)


# --------------------------------------------------------------------- Novikoff, XOR


def _separable(seed, n_samples, n_features, min_margin):
    """Points with the bias folded in as a last constant feature, labels of a known w*.

    Returns ``X, y, D, gamma``: ``D = max ||x||`` and ``gamma = min y (w*.x)`` for the unit
    vector ``w*`` that made the labels, so that Novikoff's theorem bounds the number of
    updates of the perceptron started at zero by ``(D / gamma)^2``.
    """
    rng = np.random.RandomState(seed)
    direction = rng.randn(n_features)
    # A small bias keeps both sides of the hyperplane wide enough for margins up to 0.5.
    w_star = np.append(direction / np.linalg.norm(direction), rng.uniform(-0.3, 0.3))
    w_star /= np.linalg.norm(w_star)
    points = []
    while len(points) < n_samples:
        x = np.append(rng.uniform(-1, 1, n_features), 1.0)
        wanted_sign = 1 if len(points) % 2 else -1  # both classes, whatever w*
        if wanted_sign * (x @ w_star) >= min_margin:
            points.append(x)
    X = np.array(points)
    signed = X @ w_star
    y = (signed > 0).astype(int)
    return X, y, np.linalg.norm(X, axis=1).max(), np.abs(signed).min()


def _check_novikoff(backend, X, y, D, gamma):
    bound = (D / gamma) ** 2
    params = dict(eta0=1, shuffle=False, penalty=None, tol=None, fit_intercept=False,
                  backend=backend)
    # Epoch by epoch until one makes no update; every epoch before it made at least one,
    # so there are at most floor(bound) of them if the theorem holds.
    online = Perceptron(**params)
    for epoch in range(1, int(bound) + 2):
        updates_before = int(online.n_updates_.sum()) if epoch > 1 else 0
        online.partial_fit(X, y, classes=[0, 1])
        if int(online.n_updates_.sum()) == updates_before:
            break
    else:
        pytest.fail(f"no mistake-free epoch within {int(bound) + 1} epochs")
    total_updates = int(online.n_updates_.sum())
    assert 0 < total_updates <= bound
    assert online.score(X, y) == 1.0
    # fit runs the same epochs in one call: same updates, and it has converged.
    fitted = Perceptron(max_iter=epoch, **params).fit(X, y)
    assert int(fitted.n_updates_.sum()) == total_updates
    np.testing.assert_array_equal(fitted.coef_, online.coef_)
    margins = np.where(y == 1, 1, -1) * fitted.decision_function(X)
    assert (margins > 0).all()


@pytest.mark.parametrize("seed, n_samples, n_features, min_margin", [
    (0, 40, 2, 0.2), (1, 60, 5, 0.1), (2, 100, 10, 0.05), (3, 30, 1, 0.3),
])
def test_novikoff_bound(backend, seed, n_samples, n_features, min_margin):
    _check_novikoff(backend, *_separable(seed, n_samples, n_features, min_margin))


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31 - 1),
    n_samples=st.integers(5, 40),
    n_features=st.integers(1, 6),
    min_margin=st.floats(0.05, 0.5),
)
def test_novikoff_bound_property(backend, seed, n_samples, n_features, min_margin):
    _check_novikoff(backend, *_separable(seed, n_samples, n_features, min_margin))


def test_xor_is_not_learnt(backend):
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    model = Perceptron(shuffle=False, tol=None, max_iter=50, backend=backend).fit(X, y)
    assert model.score(X, y) <= 0.75  # no line separates XOR
    assert model.n_updates_[0] >= 50  # every epoch still makes a mistake


# ----------------------------------------------------------------- behaviour and state


def test_shuffle_is_seeded_and_learns(backend):
    X, y, _ = _data(2, n_samples=100)
    a = _fit_quietly(Perceptron(random_state=1, backend=backend), X, y)
    b = _fit_quietly(Perceptron(random_state=1, backend=backend), X, y)
    c = _fit_quietly(Perceptron(random_state=2, max_iter=3, tol=None, backend=backend), X, y)
    d = _fit_quietly(Perceptron(shuffle=False, max_iter=3, tol=None, backend=backend), X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert not np.array_equal(c.coef_, d.coef_)
    assert a.score(X, y) > 0.8


def test_string_labels_and_input_layouts(backend):
    X, y, _ = _data(3)
    labels = np.array(["ant", "bee", "cat"])[y]
    reference = Perceptron(shuffle=False, backend=backend).fit(X, labels)
    assert reference.classes_.tolist() == ["ant", "bee", "cat"]
    assert set(reference.predict(X)) <= set(labels)
    read_only = X.copy()
    read_only.flags.writeable = False
    for variant in (np.asfortranarray(X), np.repeat(X, 2, axis=1)[:, ::2], read_only, X.tolist()):
        model = Perceptron(shuffle=False, backend=backend).fit(variant, labels)
        np.testing.assert_array_equal(model.coef_, reference.coef_)
    integers = np.rint(X * 3).astype(np.int64)
    model = Perceptron(shuffle=False, backend=backend).fit(integers, labels)
    assert model.coef_.dtype == np.float64
    as_floats = Perceptron(shuffle=False, backend=backend).fit(integers.astype(float), labels)
    np.testing.assert_array_equal(model.coef_, as_floats.coef_)


def test_convergence_warning(backend):
    X, y, _ = _data(3)
    with pytest.warns(ConvergenceWarning, match="Maximum number of iteration"):
        Perceptron(max_iter=2, backend=backend).fit(X, y)


def test_verbose_reports_each_epoch(backend, capsys):
    X, y, _ = _data(2)
    model = Perceptron(verbose=True, max_iter=3, tol=None, backend=backend).fit(X, y)
    err = capsys.readouterr().err
    assert err.count("-- Epoch") == model.n_iter_ == 3
    assert "objective" in err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on purpose
def test_divergence_keeps_previous_parameters(backend):
    X, y, _ = _data(2)
    model = Perceptron(shuffle=False, backend=backend).fit(X, y)
    coef, intercept, t = model.coef_.copy(), model.intercept_.copy(), model.t_
    huge = np.full_like(X, 1e300) * np.sign(X)
    model.set_params(eta0=1e300)
    with pytest.raises(ValueError, match="NaN or infinite.*smaller eta0"):
        model.fit(huge, y)
    np.testing.assert_array_equal(model.coef_, coef)
    np.testing.assert_array_equal(model.intercept_, intercept)
    assert model.t_ == t


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on purpose
def test_failed_first_fit_leaves_estimator_unfitted(backend):
    X, y, _ = _data(2)
    model = Perceptron(eta0=1e300, backend=backend)
    with pytest.raises(ValueError, match="infinite"):
        model.fit(np.full_like(X, 1e300) * np.sign(X), y)
    assert not hasattr(model, "coef_") and not hasattr(model, "classes_")


def test_pickle_and_params_round_trip(backend):
    X, y, _ = _data(3)
    model = Perceptron(shuffle=False, penalty="l2", backend=backend).fit(X, y)
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.coef_, model.coef_)
    np.testing.assert_array_equal(restored.predict(X), model.predict(X))
    assert restored.get_params() == model.get_params()
    assert "penalty='l2'" in repr(model)


@pytest.mark.parametrize("dtype, labels",
                         [(np.float64, None), (np.float32, ["ant", "bee", "cat"])])
def test_save_and_load_round_trip(backend, tmp_path, dtype, labels):
    import fastnn

    X, y, _ = _data(3)
    X = X.astype(dtype)
    if labels is not None:
        y = np.array(labels)[y]
    params = dict(penalty="elasticnet", class_weight={y[0].item(): 2.0}, shuffle=False)
    model = _fit_quietly(Perceptron(backend=backend, **params), X, y)
    path = tmp_path / "perceptron.npz"
    model.save(path)
    loaded = fastnn.load(path)
    assert type(loaded) is Perceptron and loaded.get_params() == model.get_params()
    for name in ("coef_", "intercept_", "classes_", "n_updates_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
        assert getattr(loaded, name).dtype == getattr(model, name).dtype
    assert (loaded.n_iter_, loaded.t_, loaded.n_features_in_) == (
        model.n_iter_, model.t_, model.n_features_in_)
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    # It keeps learning exactly like the original.
    model.partial_fit(X, y)
    loaded.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.coef_, model.coef_)


def test_save_unfitted_and_load_garbage(tmp_path):
    import fastnn

    with pytest.raises(ValueError, match="not fitted"):
        Perceptron().save(tmp_path / "model.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a readable fastnn model"):
        fastnn.load(garbage)


def test_sklearn_clone_and_cross_validation(backend):
    model_selection = pytest.importorskip("sklearn.model_selection",
                                          reason="clone / cross_val_score come from sklearn")
    from sklearn.base import clone

    X, y, _ = _data(2, n_samples=90)
    model = Perceptron(alpha=0.01, penalty="l1", backend=backend)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "coef_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = model_selection.cross_val_score(model, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.7


# ------------------------------------------------------------------------- bad input

BAD_PARAMS = [
    (dict(penalty="l3"), ValueError, "Unknown penalty='l3'"),
    (dict(alpha=-1.0), ValueError, "alpha must be in"),
    (dict(l1_ratio=1.5), ValueError, "l1_ratio must be in"),
    (dict(eta0=0.0), ValueError, "eta0 must be in"),
    (dict(max_iter=0), ValueError, "max_iter must be in"),
    (dict(max_iter=2.5), TypeError, "max_iter must be an int"),
    (dict(tol=-1.0), ValueError, "tol must be in"),
    (dict(validation_fraction=1.0), ValueError, "validation_fraction must be in"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be in"),
    (dict(fit_intercept="yes"), TypeError, "fit_intercept must be a bool"),
    (dict(shuffle=None), TypeError, "shuffle must be a bool"),
    (dict(verbose=-1), ValueError, "verbose must be in"),
    (dict(class_weight="even"), ValueError, "class_weight must be"),
    (dict(class_weight={7: 2.0}), ValueError, r"class_weight has labels \[7\]"),
    (dict(random_state="seed"), ValueError, "random_state"),
    (dict(backend="gpu"), ValueError, "Unknown backend='gpu'"),
]


@pytest.mark.parametrize("params, error, message", BAD_PARAMS)
def test_bad_hyper_parameters(params, error, message):
    X, y, _ = _data(2)
    with pytest.raises(error, match=message):
        Perceptron(**params).fit(X, y)


def _bad_inputs():
    X, y, _ = _data(2, n_samples=10, n_features=3)
    with_nan, with_inf = X.copy(), X.copy()
    with_nan[1, 1], with_inf[2, 0] = np.nan, np.inf
    return [
        ("nan", (with_nan, y), {}, ValueError, "contains NaN"),
        ("inf", (with_inf, y), {}, ValueError, "contains infinity"),
        ("1d", (X[:, 0], y), {}, ValueError, "Reshape your data"),
        ("3d", (X[:, :, None], y), {}, ValueError, "Expected a 2D array"),
        ("empty", (X[:0], y[:0]), {}, ValueError, "0 sample"),
        ("no features", (X[:, :0], y), {}, ValueError, "0 feature"),
        ("strings", ([["a", "b"], ["c", "d"]], [0, 1]), {}, ValueError, "non-numeric"),
        ("complex", (X + 1j, y), {}, ValueError, "Complex data not supported"),
        ("one class", (X, np.zeros(10)), {}, ValueError, "greater than one.*1 class"),
        ("continuous y", (X, X[:, 0]), {}, ValueError, "Unknown label type"),
        ("y too short", (X, y[:-1]), {}, ValueError, "inconsistent numbers of samples"),
        ("multilabel", (X, np.c_[y, 1 - y]), {}, ValueError, "1d array"),
        ("y with nan", (X, np.where(y == 1, np.nan, 0.0)), {}, ValueError, "Unknown label type"),
        ("weights length", (X, y), dict(sample_weight=np.ones(3)), ValueError,
         "sample_weight has 3"),
        ("weights negative", (X, y), dict(sample_weight=-np.ones(10)), ValueError, "negative"),
        ("coef_init shape", (X, y), dict(coef_init=np.zeros((2, 3))), ValueError,
         "coef_init has shape"),
        ("intercept_init shape", (X, y), dict(intercept_init=[0.0, 1.0]), ValueError,
         "intercept_init has shape"),
    ]


@pytest.mark.parametrize("args, kwargs, error, message",
                         [case[1:] for case in _bad_inputs()], ids=[c[0] for c in _bad_inputs()])
def test_bad_fit_input(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        Perceptron().fit(*args, **kwargs)


def test_column_vector_y_warns_and_missing_y_is_named():
    X, y, _ = _data(2)
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        model = Perceptron(shuffle=False).fit(X, y[:, None])
    np.testing.assert_array_equal(model.coef_, Perceptron(shuffle=False).fit(X, y).coef_)
    with pytest.raises(ValueError, match="requires y to be passed"):
        Perceptron().fit(X, None)


def test_sparse_input_is_refused_clearly():
    sparse = pytest.importorskip("scipy.sparse", reason="needs scipy.sparse matrices")
    X, y, _ = _data(2)
    with pytest.raises(TypeError, match="Sparse input is not supported"):
        Perceptron().fit(sparse.csr_matrix(X), y)


def test_bad_predict_input_and_unfitted(backend):
    X, y, _ = _data(2)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        Perceptron().predict(X)
    model = Perceptron(backend=backend).fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features, but Perceptron is expecting 5"):
        model.predict(X[:, :4])
    with pytest.raises(ValueError, match="contains NaN"):
        model.decision_function(np.full((2, 5), np.nan))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        model.score(X, y[:-1])


def test_bad_partial_fit_calls(backend):
    X, y, _ = _data(3)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        Perceptron(backend=backend).partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping should be False"):
        Perceptron(early_stopping=True, backend=backend).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        Perceptron(class_weight="balanced", backend=backend).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match=r"labels \[2\] that are not in classes"):
        Perceptron(backend=backend).partial_fit(X, y, classes=[0, 1])
    model = Perceptron(backend=backend).partial_fit(X, y, classes=[0, 1, 2])
    coef = model.coef_.copy()
    with pytest.raises(ValueError, match="not the same as on the first call"):
        model.partial_fit(X, y, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="X has 2 features"):
        model.partial_fit(X[:, :2], y)
    np.testing.assert_array_equal(model.coef_, coef)  # failed calls change nothing


def test_bad_fit_keeps_fitted_model(backend):
    X, y, _ = _data(2)
    model = Perceptron(backend=backend).fit(X, y)
    coef, n_features = model.coef_.copy(), model.n_features_in_
    with pytest.raises(ValueError, match="Unknown label type"):
        model.fit(X[:, :3], X[:, 0])
    np.testing.assert_array_equal(model.coef_, coef)
    assert model.n_features_in_ == n_features
