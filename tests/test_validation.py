"""The shared input checks of fastnn/_validation.py, one behaviour per test."""

import numpy as np
import pytest

from fastnn import _validation as v


def test_check_array_converts_and_keeps_float32():
    X = v.check_array([[1, 2], [3, 4]])
    assert X.dtype == np.float64 and X.flags.c_contiguous
    X32 = np.asfortranarray(np.ones((3, 2), dtype=np.float32))
    out = v.check_array(X32)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    assert v.check_array(np.array([[True, False]])).dtype == np.float64
    readonly = np.arange(6.0).reshape(3, 2)
    readonly.flags.writeable = False
    np.testing.assert_array_equal(v.check_array(readonly), readonly)
    assert v.check_array(np.ones(3), ensure_2d=False).shape == (3,)
    assert v.check_array(np.ones((2, 2)), dtype=np.float32).dtype == np.float32


@pytest.mark.parametrize(
    "X, error, words",
    [
        ([1.0, 2.0], ValueError, "Reshape your data"),
        (5.0, ValueError, "dim 0"),
        (np.ones((2, 2, 2)), ValueError, "dim 3"),
        (np.ones((0, 2)), ValueError, r"0 sample\(s\)"),
        (np.ones((2, 0)), ValueError, r"0 feature\(s\)"),
        ([[1.0, np.nan]], ValueError, "NaN"),
        ([[1.0, -np.inf]], ValueError, "infinity"),
        ([["a", "b"]], ValueError, "non-numeric"),
        (np.array([[{"a": 1}, 2.0]], dtype=object), TypeError, "argument must be a string"),
        ([[1 + 2j]], ValueError, "Complex data not supported"),
        (np.array([["2020-01-01"]], dtype="datetime64[D]"), ValueError, "unsupported dtype"),
    ],
)
def test_check_array_rejects(X, error, words):
    with pytest.raises(error, match=words):
        v.check_array(X)


def test_check_array_rejects_sparse_by_duck_type():
    class FakeSparse:
        nnz = 1

        def tocsr(self):
            return self

    with pytest.raises(TypeError, match="Sparse input is not supported"):
        v.check_array(FakeSparse())


def test_check_sample_weight():
    np.testing.assert_array_equal(v.check_sample_weight(None, 3, np.float32), np.ones(3))
    assert v.check_sample_weight(None, 3, np.float32).dtype == np.float32
    np.testing.assert_array_equal(v.check_sample_weight(2, 3, np.float64), [2, 2, 2])
    np.testing.assert_array_equal(v.check_sample_weight([1, 0, 3], 3, np.float64), [1, 0, 3])
    for weights, words in [([1, 2], "2 entries"), ([[1, 2, 3]], "1D"), ([1, -1, 1], "negative"),
                           ([0, 0, 0], "zero"), ([1, np.inf, 1], "infinity")]:
        with pytest.raises(ValueError, match=words):
            v.check_sample_weight(weights, 3, np.float64)


def test_type_of_target():
    assert v.type_of_target([0, 1, 1]) == "binary"
    assert v.type_of_target(["a", "b", "c"]) == "multiclass"
    assert v.type_of_target([1.0, 2.0, 3.0]) == "multiclass"
    assert v.type_of_target([0.5, 1.0]) == "continuous"
    assert v.type_of_target(np.array([[0, 1], [1, 1]])) == "multilabel-indicator"
    assert v.type_of_target(np.array([[0, 2], [1, 1]])) == "multiclass-multioutput"
    assert v.type_of_target(np.array([{"a": 1}, 2], dtype=object)) == "unknown"
    assert v.type_of_target([]) == "unknown"


def test_check_classification_targets():
    labels, kind = v.check_classification_targets(np.array([[1], [2], [3]]), 3)
    assert labels.shape == (3,) and kind == "multiclass"
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        v.check_classification_targets([0.1, 0.2], 2)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        v.check_classification_targets([0, 1], 3)
    with pytest.raises(ValueError, match="y is None"):
        v.check_classification_targets(None, 3)


def test_check_regression_targets():
    Y, was_1d = v.check_regression_targets([1, 2, 3], 3, np.float32)
    assert Y.shape == (3, 1) and Y.dtype == np.float32 and was_1d
    Y, was_1d = v.check_regression_targets(np.ones((3, 2)), 3, np.float64)
    assert Y.shape == (3, 2) and not was_1d
    with pytest.raises(ValueError, match="1D or 2D"):
        v.check_regression_targets(np.ones((3, 1, 1)), 3, np.float64)
    with pytest.raises(ValueError, match="NaN"):
        v.check_regression_targets([1, np.nan, 3], 3, np.float64)


def test_label_coder_round_trip():
    labels = np.array(["b", "a", "c", "a"])
    coder = v.LabelCoder.fit(labels, "multiclass")
    Y = coder.transform(labels, np.float64)
    np.testing.assert_array_equal(Y.argmax(axis=1), [1, 0, 2, 0])
    np.testing.assert_array_equal(coder.inverse_transform(Y), labels)
    binary = v.LabelCoder.fit(np.array([3, 7, 7]), "binary")
    assert binary.n_outputs == 1
    np.testing.assert_array_equal(binary.transform(np.array([3, 7]), np.float64), [[0], [1]])
    np.testing.assert_array_equal(binary.inverse_transform(np.array([[0.2], [0.8]])), [3, 7])
    with pytest.raises(ValueError, match="only one class"):
        v.LabelCoder.fit(np.array([1, 1]), "binary")
    with pytest.raises(ValueError, match="classes not in"):
        binary.check_known(np.array([3, 4]))
    multilabel = v.LabelCoder.fit(np.array([[0, 1, 1]]), "multilabel-indicator")
    np.testing.assert_array_equal(multilabel.inverse_transform(np.array([[0.9, 0.1, 0.6]])),
                                  [[1, 0, 1]])


def test_check_random_state():
    assert isinstance(v.check_random_state(3), np.random.RandomState)
    assert v.check_random_state(3).rand() == np.random.RandomState(3).rand()
    state = np.random.RandomState(0)
    assert v.check_random_state(state) is state
    assert v.check_random_state(None) is np.random.mtrand._rand
    generator = np.random.default_rng(0)
    assert v.check_random_state(generator) is generator
    for bad in ("seed", 1.5, True):
        with pytest.raises(ValueError, match="random_state"):
            v.check_random_state(bad)


def test_check_scalar_and_option():
    assert v.check_scalar("x", 3, int, low=1) == 3
    assert v.check_scalar("x", np.float32(0.5), float, low=0, high=1) == 0.5
    with pytest.raises(TypeError, match="x must be an int"):
        v.check_scalar("x", 2.0, int)
    with pytest.raises(TypeError, match="real number"):
        v.check_scalar("x", True, float)
    with pytest.raises(ValueError, match=r"x must be in \(0, inf\)"):
        v.check_scalar("x", 0, float, low=0, closed="neither")
    with pytest.raises(ValueError, match=r"x must be in \[0, 1\)"):
        v.check_scalar("x", 1, float, low=0, high=1, closed="left")
    with pytest.raises(ValueError, match="NaN"):
        v.check_scalar("x", float("nan"), float)
    assert v.check_option("kind", "a", ("a", "b")) == "a"
    with pytest.raises(ValueError, match=r"Unknown kind='c'; choose one of 'a', 'b'"):
        v.check_option("kind", "c", ("a", "b"))
    with pytest.raises(ValueError, match="Unknown kind"):
        v.check_option("kind", ["a"], ("a", "b"))
    with pytest.raises(TypeError, match="flag must be a bool"):
        v.check_bool("flag", 1)


def test_invalid_parameter_error_is_value_and_type_error():
    with pytest.raises(ValueError, match="must be an int"):
        v.check_scalar("x", "3", int)
    with pytest.raises(TypeError, match=r"must be in \["):
        v.check_scalar("x", -1, int, low=0)
    assert issubclass(v.InvalidParameterError, ValueError)
    assert issubclass(v.InvalidParameterError, TypeError)


def test_not_fitted_error_is_value_and_attribute_error():
    class Model:
        pass

    with pytest.raises(v.NotFittedError, match="This Model instance is not fitted yet"):
        v.check_is_fitted(Model(), "coef_")
    assert issubclass(v.NotFittedError, ValueError)
    assert issubclass(v.NotFittedError, AttributeError)
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions", reason="sklearn interop")
    with pytest.raises(sklearn_exceptions.NotFittedError):
        v.check_is_fitted(Model(), "coef_")


def test_check_n_features():
    class Model:
        pass

    model = Model()
    v.check_n_features(model, np.ones((2, 3)), reset=True)
    assert model.n_features_in_ == 3
    v.check_n_features(model, np.ones((5, 3)), reset=False)
    with pytest.raises(ValueError, match="X has 2 features, but Model is expecting 3"):
        v.check_n_features(model, np.ones((2, 2)), reset=False)
