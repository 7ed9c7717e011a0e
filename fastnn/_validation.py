"""Input checks and conversions shared by every estimator (SPEC section 4).

Every public entry point funnels its arguments through these functions, so that bad input
gets the same clear ``ValueError`` / ``TypeError`` everywhere and the kernels only ever see
C-contiguous float32 / float64 arrays of the right shapes. Messages reuse scikit-learn's
wording where its estimator checks look for it ("Reshape your data", "0 sample(s)",
"Unknown label type", ...). Nothing here imports scikit-learn.
"""

import numbers
import sys
import warnings

import numpy as np


class ConvergenceWarning(UserWarning):
    """The optimiser stopped (``max_iter`` reached) before the convergence criterion held."""


class DataConversionWarning(UserWarning):
    """Input was converted in a way the user may not expect (e.g. a column-vector y).

    Named as scikit-learn's, whose estimator checks look for the name.
    """


class InvalidParameterError(ValueError, TypeError):
    """A hyper-parameter has a wrong type or value.

    Both a ``ValueError`` and a ``TypeError``, as scikit-learn's, so that code written for
    either convention catches it.
    """


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted estimator was called before ``fit``.

    Subclasses both ``ValueError`` and ``AttributeError``, as scikit-learn's does, so that
    code written against scikit-learn catches it.
    """


# ---------------------------------------------------------------------------- arrays


def _is_sparse(value):
    # Duck-typed so that scipy.sparse need not be imported to recognise its matrices.
    return hasattr(value, "tocsr") and hasattr(value, "nnz")


def feature_names(X):
    """Column names of a DataFrame-like ``X`` when they are all strings, else None."""
    columns = getattr(X, "columns", None)
    if columns is None:
        return None
    names = np.asarray(list(columns), dtype=object)
    if len(names) and all(isinstance(name, str) for name in names):
        return names
    return None


def _to_numeric(array, name):
    """``np.asarray`` that turns every failure to get numbers into a clear error."""
    if _is_sparse(array):
        raise TypeError(
            f"Sparse input is not supported for {name}; convert it with {name}.toarray()."
        )
    try:
        result = np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    if np.iscomplexobj(result):
        raise ValueError(f"Complex data not supported in {name}.")
    if result.dtype.kind in "OUSV":
        try:
            result = result.astype(np.float64)
        except TypeError as exc:
            # scikit-learn's checks look for numpy's own wording here.
            raise TypeError(f"{name} contains non-numeric data: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{name} contains non-numeric data: {exc}") from None
    elif result.dtype.kind not in "biuf":
        raise ValueError(f"{name} has unsupported dtype {result.dtype}.")
    return result


def float_dtype(array):
    """float32 when ``array`` is float32, float64 for everything else (SPEC 2.1)."""
    return np.float32 if np.asarray(array).dtype == np.float32 else np.float64


def check_finite(array, name):
    """Raise ``ValueError`` naming the problem when ``array`` holds NaN or infinity."""
    if not np.isfinite(array).all():
        problem = "NaN" if np.isnan(array).any() else "infinity"
        raise ValueError(f"Input {name} contains {problem}.")


def check_array(X, *, name="X", dtype=None, ensure_2d=True, min_samples=1):
    """Validate ``X`` and return it as a C-contiguous float array.

    Parameters
    ----------
    X : array-like
        Anything ``np.asarray`` turns into numbers: lists, integer, boolean, Fortran-ordered,
        non-contiguous or read-only arrays are accepted (copied only when needed).
    name : str
        Name used in error messages.
    dtype : numpy dtype or None
        Target dtype; None keeps float32 and converts everything else to float64.
    ensure_2d : bool
        Require a 2-D array (a 1-D one is rejected with scikit-learn's "Reshape your
        data" hint); when False a 1-D array is accepted too.
    min_samples : int
        Minimum number of rows.

    Returns
    -------
    ndarray
        C-contiguous array of ``dtype``, finite.
    """
    array = _to_numeric(X, name)
    if dtype is None:
        dtype = float_dtype(array)
    if array.ndim == 1 and ensure_2d:
        raise ValueError(
            f"Expected a 2D array for {name}, got a 1D array instead. Reshape your data "
            "either using array.reshape(-1, 1) if your data has a single feature or "
            "array.reshape(1, -1) if it contains a single sample."
        )
    if array.ndim == 0 or array.ndim > 2 or (ensure_2d and array.ndim != 2):
        raise ValueError(
            f"Expected a 2D array for {name}, found an array with dim {array.ndim} "
            f"(shape={array.shape})."
        )
    n_samples = array.shape[0]
    if n_samples < min_samples:
        raise ValueError(
            f"Found array with {n_samples} sample(s) (shape={array.shape}) while a "
            f"minimum of {min_samples} is required by {name}."
        )
    if array.ndim == 2 and array.shape[1] < 1:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={array.shape}) while a minimum of 1 "
            f"is required by {name}."
        )
    array = np.ascontiguousarray(array, dtype=dtype)
    check_finite(array, name)
    return array


def check_consistent_length(X, y, y_name="y"):
    """Raise ``ValueError`` unless ``X`` and ``y`` have the same number of rows."""
    if len(X) != len(y):
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"X has {len(X)}, {y_name} has {len(y)}."
        )


def check_sample_weight(sample_weight, n_samples, dtype):
    """Return sample weights as a C-contiguous array of ``dtype`` and length ``n_samples``.

    ``None`` means all ones; a scalar is broadcast. Weights must be finite, non-negative
    and not all zero.
    """
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    if isinstance(sample_weight, numbers.Number):
        weights = np.full(n_samples, sample_weight, dtype=dtype)
    else:
        weights = _to_numeric(sample_weight, "sample_weight")
        if weights.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1D, got an array of shape {weights.shape}."
            )
        if weights.shape[0] != n_samples:
            raise ValueError(
                f"sample_weight has {weights.shape[0]} entries but X has {n_samples} "
                "samples; they must be equal."
            )
        weights = np.ascontiguousarray(weights, dtype=dtype)
    check_finite(weights, "sample_weight")
    if (weights < 0).any():
        raise ValueError("sample_weight contains negative weights; they must be >= 0.")
    if not weights.any():
        raise ValueError("The sum of sample weights is zero: at least one weight must be > 0.")
    return weights


def check_n_features(estimator, X, reset, names=None):
    """Record (``reset``) or check ``n_features_in_`` / ``feature_names_in_``.

    ``X`` is the validated array; ``names`` the column names of the caller's original
    input (``feature_names(X_original)``), None when it had none.
    """
    if names is None:
        names = feature_names(X)
    n_features = X.shape[1]
    if reset:
        estimator.n_features_in_ = n_features
        if names is not None:
            estimator.feature_names_in_ = names
        elif hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
        return
    expected = estimator.n_features_in_
    if n_features != expected:
        raise ValueError(
            f"X has {n_features} features, but {type(estimator).__name__} is expecting "
            f"{expected} features as input."
        )
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if fitted_names is not None and names is not None and list(fitted_names) != list(names):
        raise ValueError(
            "The feature names should match those that were passed during fit.\n"
            f"Fit with {list(fitted_names)}, got {list(names)}."
        )
    if (fitted_names is None) != (names is None):
        warnings.warn(
            f"X {'has' if names is not None else 'does not have valid'} feature names, "
            f"but {type(estimator).__name__} was fitted "
            f"{'without' if fitted_names is None else 'with'} feature names",
            UserWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------- targets


def _check_y_given(y):
    if y is None:
        raise ValueError(
            "This estimator requires y to be passed, but the target y is None."
        )


def check_regression_targets(y, n_samples, dtype):
    """Return numeric targets as a C-contiguous 2-D ``(n_samples, n_outputs)`` array.

    Also returns whether ``y`` was 1-D (so that predictions can be raveled back).
    """
    _check_y_given(y)
    targets = _to_numeric(y, "y")
    if targets.ndim not in (1, 2):
        raise ValueError(
            f"y must be 1D or 2D (n_samples, n_outputs), got shape {targets.shape}."
        )
    if targets.shape[0] != n_samples:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"X has {n_samples}, y has {targets.shape[0]}."
        )
    if targets.ndim == 2 and targets.shape[1] < 1:
        raise ValueError(f"y has 0 outputs (shape={targets.shape}).")
    was_1d = targets.ndim == 1
    targets = np.ascontiguousarray(targets.reshape(n_samples, -1), dtype=dtype)
    check_finite(targets, "y")
    return targets, was_1d


def type_of_target(y):
    """``'binary'``, ``'multiclass'``, ``'multilabel-indicator'``, ``'continuous'`` ...

    The subset of ``sklearn.utils.multiclass.type_of_target`` that classifiers need.
    """
    if _is_sparse(y):
        raise TypeError("Sparse targets are not supported; convert y with y.toarray().")
    try:
        values = np.asarray(y)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"y could not be converted to an array: {exc}") from None
    if values.ndim == 0 or values.ndim > 2 or values.size == 0:
        return "unknown"
    if values.dtype == object:
        kinds = {type(value) for value in values.ravel()}
        if not (all(issubclass(kind, str) for kind in kinds)
                or all(issubclass(kind, numbers.Number) for kind in kinds)):
            return "unknown"
    if values.ndim == 2 and values.shape[1] > 1:
        if values.dtype.kind in "biuf" and np.isin(values, (0, 1)).all():
            return "multilabel-indicator"
        return "multiclass-multioutput"
    values = values.ravel()
    if values.dtype.kind == "f" and (
        not np.isfinite(values).all() or (values != np.round(values)).any()
    ):
        return "continuous"
    if values.dtype.kind == "c":
        return "unknown"
    n_classes = len(np.unique(values))
    return "multiclass" if n_classes > 2 else "binary"


def check_classification_targets(y, n_samples):
    """Validate classifier targets; returns ``(y, target_type)`` with ``y`` as an array.

    Raises ``ValueError`` containing "Unknown label type" for continuous or otherwise
    unusable targets, and for a row count different from ``n_samples``.
    """
    _check_y_given(y)
    target_type = type_of_target(y)
    if target_type not in ("binary", "multiclass", "multilabel-indicator"):
        raise ValueError(
            f"Unknown label type: {target_type}. A classifier needs discrete class labels "
            "(1D) or a 0/1 label indicator matrix (2D)."
        )
    labels = np.asarray(y)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.ravel()
    if labels.shape[0] != n_samples:
        raise ValueError(
            "Found input variables with inconsistent numbers of samples: "
            f"X has {n_samples}, y has {labels.shape[0]}."
        )
    return labels, target_type


class LabelCoder:
    """Classes <-> 0/1 indicator matrix, as ``sklearn.preprocessing.LabelBinarizer``.

    Binary problems get one column (1 for ``classes[1]``), multiclass one column per
    class, multilabel indicator matrices pass through.
    """

    def __init__(self, classes, target_type):
        self.classes = np.asarray(classes)
        self.target_type = target_type

    @classmethod
    def fit(cls, labels, target_type):
        """Learn the classes from ``labels`` (sorted, unique)."""
        if target_type == "multilabel-indicator":
            return cls(np.arange(labels.shape[1]), target_type)
        classes = np.unique(labels)
        if len(classes) < 2:
            raise ValueError(
                f"The target has only one class ({classes[:1].tolist()[0]!r}); a classifier needs at "
                "least 2 classes."
            )
        return cls(classes, "binary" if len(classes) == 2 else "multiclass")

    @property
    def n_outputs(self):
        return 1 if self.target_type == "binary" else len(self.classes)

    def check_known(self, labels):
        """Raise ``ValueError`` if ``labels`` hold a class not seen before."""
        if self.target_type == "multilabel-indicator":
            if labels.ndim != 2 or labels.shape[1] != len(self.classes):
                raise ValueError(
                    f"y must be an indicator matrix with {len(self.classes)} columns, "
                    f"got shape {labels.shape}."
                )
            return
        if labels.ndim != 1:
            raise ValueError(f"y must be 1D for this classifier, got shape {labels.shape}.")
        unknown = np.setdiff1d(np.unique(labels), self.classes)
        if len(unknown):
            raise ValueError(
                f"y has classes not in classes_ {self.classes}: {unknown}."
            )

    def transform(self, labels, dtype):
        """The 0/1 target matrix of ``labels``, shape ``(n_samples, n_outputs)``."""
        if self.target_type == "multilabel-indicator":
            return np.ascontiguousarray(labels, dtype=dtype)
        indicator = (labels[:, None] == self.classes[None, :]).astype(dtype)
        if self.target_type == "binary":
            indicator = indicator[:, 1:]
        return np.ascontiguousarray(indicator)

    def inverse_transform(self, scores):
        """Labels from output scores / probabilities (threshold 0.5, or argmax)."""
        if self.target_type == "multilabel-indicator":
            return (scores > 0.5).astype(int)
        if self.target_type == "binary":
            return self.classes[(scores[:, 0] > 0.5).astype(int)]
        return self.classes[np.argmax(scores, axis=1)]


# ----------------------------------------------------------------- hyper-parameters


def check_random_state(seed):
    """A ``RandomState`` from None, an int or a ``RandomState``, as scikit-learn's.

    None gives numpy's global ``RandomState``; an int a fresh one seeded with it; a
    ``RandomState`` is used as is (its stream advances). A ``numpy.random.Generator`` is
    also accepted and used as is (SPEC 3; scikit-learn refuses it): callers only use
    ``uniform``, ``permutation`` and ``choice``, which both classes share.
    """
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return np.random.RandomState(seed)
    if isinstance(seed, (np.random.RandomState, np.random.Generator)):
        return seed
    raise InvalidParameterError(
        f"random_state={seed!r} cannot be used to seed a numpy.random.RandomState: "
        "use None, an int, a RandomState or a Generator."
    )


def check_option(name, value, options):
    """Raise ``ValueError`` unless ``value`` is one of ``options``."""
    if isinstance(value, (list, dict, set, np.ndarray)) or value not in options:
        shown = ", ".join(repr(option) for option in options)
        raise InvalidParameterError(f"Unknown {name}={value!r}; choose one of {shown}.")
    return value


def check_bool(name, value):
    """Raise ``TypeError`` unless ``value`` is a bool (numpy bools included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be a bool, got {value!r}.")
    return bool(value)


def check_scalar(name, value, kind, low=None, high=None, closed="both"):
    """Validate a number against a type and an interval; return it as ``kind``.

    Parameters
    ----------
    kind : {int, float}
        ``int`` accepts integral numbers only; ``float`` any real (bools are rejected).
    low, high : number or None
        Bounds; None means unbounded.
    closed : {"both", "left", "right", "neither"}
        Which bounds are included.
    """
    accepted = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, accepted):
        raise InvalidParameterError(
            f"{name} must be {'an int' if kind is int else 'a real number'}, "
            f"got {value!r} of type {type(value).__name__}."
        )
    if np.isnan(value):
        raise InvalidParameterError(f"{name} must not be NaN.")
    low_ok = low is None or (value >= low if closed in ("both", "left") else value > low)
    high_ok = high is None or (value <= high if closed in ("both", "right") else value < high)
    if not (low_ok and high_ok):
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise InvalidParameterError(f"{name} must be in {interval}, got {value!r}.")
    return kind(value) if not (kind is float and np.isinf(value)) else float(value)


_COMBINED_NOT_FITTED = {}


def _not_fitted_error_class():
    """fastnn's ``NotFittedError``, also a scikit-learn one when scikit-learn is loaded.

    scikit-learn is never imported here; but when the user's program has imported it,
    ``except sklearn.exceptions.NotFittedError`` must catch our error (drop-in promise).
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError
    base = sklearn_exceptions.NotFittedError
    if base not in _COMBINED_NOT_FITTED:
        _COMBINED_NOT_FITTED[base] = type("NotFittedError", (NotFittedError, base), {})
    return _COMBINED_NOT_FITTED[base]


def check_is_fitted(estimator, attribute):
    """Raise ``NotFittedError`` unless ``estimator`` has ``attribute``."""
    if not hasattr(estimator, attribute):
        raise _not_fitted_error_class()(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )
