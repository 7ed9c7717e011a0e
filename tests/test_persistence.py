"""save / load: .npz + JSON, no pickle, bit-identical, clear errors on bad files."""

import json
import warnings
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn._persistence import FORMAT_NAME, FORMAT_VERSION
from fastnn.mlp import MLPClassifier, MLPRegressor


@pytest.fixture
def data():
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    return X, np.array(["low", "mid", "high"])[np.digitize(X[:, 0], [-0.4, 0.4])]


def fit_quietly(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


def assert_same_fitted_state(a, b):
    assert type(a) is type(b)
    params_a, params_b = a.get_params(), b.get_params()
    state_a, state_b = params_a.pop("random_state"), params_b.pop("random_state")
    assert params_a == params_b
    if isinstance(state_a, np.random.RandomState):  # saved with its stream position
        assert all(np.array_equal(x, y) for x, y in zip(state_a.get_state(), state_b.get_state()))
    elif isinstance(state_a, np.random.Generator):
        assert state_a.bit_generator.state == state_b.bit_generator.state
    else:
        assert state_a == state_b
    for name in a._array_attributes:
        if hasattr(a, name):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), strict=True)
    for name in a._scalar_attributes:
        if hasattr(a, name):
            assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize(
    "make",
    [
        lambda backend: MLPClassifier((5,), solver="sgd", max_iter=4, random_state=0,
                                      backend=backend),
        lambda backend: MLPClassifier((4, 3), solver="adam", early_stopping=True, max_iter=5,
                                      random_state=np.random.RandomState(1), backend=backend),
        lambda backend: MLPRegressor(hidden_layer_sizes=(), solver="lbfgs", max_iter=20,
                                     backend=backend),
        lambda backend: MLPRegressor(hidden_layer_sizes=(3,), solver="sgd", max_iter=3,
                                     random_state=np.random.default_rng(2), backend=backend),
    ],
    ids=["classifier-sgd", "classifier-adam-early-stopping", "regressor-lbfgs",
         "regressor-generator"],
)
def test_round_trip_is_bit_identical(backend, data, tmp_path, make):
    X, labels = data
    estimator = make(backend)
    y = labels if isinstance(estimator, MLPClassifier) else X[:, 0] ** 2
    fit_quietly(estimator, X, y)
    path = tmp_path / "model.npz"
    estimator.save(path)
    loaded = fastnn.load(path)
    assert_same_fitted_state(estimator, loaded)
    np.testing.assert_array_equal(loaded.predict(X), estimator.predict(X), strict=True)
    assert all(np.shares_memory(c, loaded._params) for c in loaded.coefs_ + loaded.intercepts_)
    if isinstance(estimator, MLPClassifier):
        np.testing.assert_array_equal(loaded.predict_proba(X), estimator.predict_proba(X))


def test_partial_fit_continues_identically_after_load(backend, data, tmp_path):
    X, labels = data
    model = MLPClassifier((5,), solver="adam", random_state=0, backend=backend)
    model.partial_fit(X, labels, classes=["high", "low", "mid"])
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    model.partial_fit(X, labels)
    loaded.partial_fit(X, labels)
    np.testing.assert_array_equal(model._params, loaded._params)


def test_float32_model_keeps_its_dtype(data, tmp_path):
    X, labels = data
    model = fit_quietly(MLPClassifier((4,), max_iter=3, random_state=0), X.astype(np.float32),
                        labels)
    model.save(tmp_path / "m.npz")
    loaded = fastnn.load(tmp_path / "m.npz")
    assert loaded.coefs_[0].dtype == np.float32
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_file_is_plain_npz_with_json_metadata(data, tmp_path):
    X, labels = data
    model = fit_quietly(MLPClassifier((4,), max_iter=2, random_state=0), X, labels)
    path = tmp_path / "model.bin"  # the exact name is kept, no .npz appended
    model.save(path)
    with np.load(path, allow_pickle=False) as archive:
        metadata = json.loads(str(archive["__metadata__"]))
        assert archive["_params"].dtype == np.float64
    assert metadata["format"] == FORMAT_NAME and metadata["version"] == FORMAT_VERSION
    assert metadata["class"] == "MLPClassifier"
    assert metadata["params"]["max_iter"] == 2
    assert metadata["dtype"] == "float64"
    assert metadata["attributes"]["n_iter_"] == 2


def test_save_unfitted_model_raises(tmp_path):
    with pytest.raises(ValueError, match="not fitted"):
        MLPRegressor().save(tmp_path / "m.npz")


def _rewrite_metadata(path, change):
    with np.load(path, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    metadata = json.loads(str(contents["__metadata__"]))
    change(metadata)
    contents["__metadata__"] = np.array(json.dumps(metadata))
    with open(path, "wb") as file:
        np.savez(file, **contents)


@pytest.mark.parametrize(
    "corrupt, words",
    [
        (lambda p: p.write_bytes(b"definitely not a model"), "not a readable fastnn model"),
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
         "not a readable fastnn model"),
        (lambda p: np.savez(p, weights=np.ones(3)), "no __metadata__"),
        (lambda p: _rewrite_metadata(p, lambda m: m.update(format="other")), "format"),
        (lambda p: _rewrite_metadata(p, lambda m: m.update(version=99)), "version 99"),
        (lambda p: _rewrite_metadata(p, lambda m: m.update({"class": "os.system"})),
         "unknown estimator class"),
        (lambda p: _rewrite_metadata(p, lambda m: m.update({"class": "load"})),
         "unknown estimator class"),
        (lambda p: _rewrite_metadata(p, lambda m: m["params"].update(max_iter=[1, 2])),
         None),
        (lambda p: _rewrite_metadata(p, lambda m: m["params"].update(bogus=1)),
         "not a valid fastnn model"),
        (lambda p: _rewrite_metadata(p, lambda m: m["attributes"].update(
            loss_curve_={"__weird__": 1})), "not a valid fastnn model"),
    ],
    ids=["garbage", "truncated", "foreign-npz", "format", "version", "class", "function",
         "bad-param-loads", "unknown-param", "bad-tag"],
)
def test_bad_files_raise_value_error(data, tmp_path, corrupt, words):
    X, labels = data
    model = fit_quietly(MLPClassifier((4,), max_iter=2, random_state=0), X, labels)
    path = tmp_path / "model.npz"
    model.save(path)
    corrupt(path)
    if words is None:  # a wrong hyper-parameter still loads; fit would reject it
        assert fastnn.load(path).max_iter == [1, 2]
        return
    with pytest.raises(ValueError, match=words):
        fastnn.load(path)


def test_file_with_wrong_buffer_length_is_rejected(data, tmp_path):
    X, labels = data
    model = fit_quietly(MLPClassifier((4,), max_iter=2, random_state=0), X, labels)
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as archive:
        contents = {name: archive[name] for name in archive.files}
    contents["_params"] = contents["_params"][:-3]
    with open(path, "wb") as file:
        np.savez(file, **contents)
    with pytest.raises(ValueError, match="not a valid fastnn model"):
        fastnn.load(path)


def test_pickled_object_inside_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __metadata__=np.array([{"format": FORMAT_NAME}], dtype=object))
    assert zipfile.is_zipfile(path)
    with pytest.raises(ValueError, match="not a readable fastnn model"):
        fastnn.load(path)
