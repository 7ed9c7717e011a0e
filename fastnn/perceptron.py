"""Rosenblatt's perceptron with scikit-learn's ``Perceptron`` interface.

The perceptron criterion of one sample is ``max(0, -y a(x))`` with ``a(x) = w.x + b`` and
``y`` in {-1, +1}; whenever ``y a(x) <= 0`` (a mistake, or a point on the boundary) the
online update is ``w <- w + eta y x``, ``b <- b + eta y``. Several classes are learnt
one-vs-rest, each class an independent binary perceptron. The epoch loop runs in the
kernels' ``perceptron_epoch`` (docs/kernels.md), entered once per epoch for all classes.
"""

import sys
import warnings

import numpy as np

from . import _backend
from ._params import ParamsMixin
from ._base import validation_split
from ._validation import (
    ConvergenceWarning,
    DataConversionWarning,
    check_array,
    check_bool,
    check_classification_targets,
    check_consistent_length,
    check_is_fitted,
    check_n_features,
    check_option,
    check_random_state,
    check_sample_weight,
    check_scalar,
)

PENALTIES = (None, "l2", "l1", "elasticnet")

_FITTED_ATTRIBUTES = (
    "coef_", "intercept_", "classes_", "n_iter_", "t_", "n_features_in_",
    "feature_names_in_", "n_updates_",
)


class Perceptron(ParamsMixin):
    """Linear perceptron classifier (Rosenblatt 1957), a drop-in for scikit-learn's.

    Trained online, one sample at a time: for each sample in the epoch's order, if
    ``y (w.x + b) <= 0`` then ``w <- w + eta0 * y * x`` and ``b <- b + eta0 * y``, with
    ``y`` in {-1, +1}. Multiclass problems are learnt one-vs-rest. With ``shuffle=False``
    the coefficients equal scikit-learn's ``Perceptron`` on the same data (to rounding).

    Parameters
    ----------
    penalty : {'l2', 'l1', 'elasticnet'}, default=None
        Regulariser: L2 weight decay ``w <- max(0, 1 - eta0 alpha) w`` before each update,
        and/or the cumulative truncated L1 penalty of Tsuruoka et al. (2009) after it.
    alpha : float, default=0.0001
        Strength of the penalty.
    l1_ratio : float, default=0.15
        Share of L1 in the elastic net, in [0, 1]; only used with ``penalty='elasticnet'``.
    fit_intercept : bool, default=True
        Whether to learn the bias ``b``; if False the data should be centred or carry a
        constant feature (the bias trick).
    max_iter : int, default=1000
        Maximum number of epochs of ``fit`` (``partial_fit`` runs one epoch).
    tol : float or None, default=1e-3
        Stop a class when its epoch objective ``sum_i [max(0, -y_i a(x_i)) + penalty] /
        n_samples`` has not improved on its best by ``tol`` for ``n_iter_no_change``
        epochs (its validation accuracy, with ``early_stopping``). None: run ``max_iter``
        epochs.
    shuffle : bool, default=True
        Whether to visit the samples in a new random order each epoch.
    verbose : int, default=0
        Print one line per epoch to stderr when > 0.
    eta0 : float, default=1.0
        Learning rate ``eta`` (constant).
    n_jobs : int, default=None
        Accepted for compatibility with scikit-learn and ignored: all classes are trained
        together in one kernel call per epoch.
    random_state : int, RandomState instance or None, default=0
        Seeds the epoch orders (``shuffle=True``) and the validation split.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the data and stop a class when its
        validation accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs.
    validation_fraction : float, default=0.1
        Share of the data held out for early stopping, in (0, 1).
    n_iter_no_change : int, default=5
        Number of epochs without improvement before a class stops.
    class_weight : dict, 'balanced' or None, default=None
        Weight of each class in the updates (``{label: weight}``); ``'balanced'`` uses
        ``n_samples / (n_classes * count(label))``. Binary problems weigh the positive
        class (``classes_[1]``) and the negative class by their weights; multiclass
        problems weigh only the positive class of each one-vs-rest problem.
    warm_start : bool, default=False
        Start ``fit`` from the previous solution instead of zeros.
    backend : {'cython', 'numba', 'numpy'} or None, default=None
        Kernel backend; None uses the process default (``fastnn.get_backend()``).

    Attributes
    ----------
    coef_ : ndarray of shape (1, n_features) if 2 classes else (n_classes, n_features)
        Weights ``w``; float32 when ``X`` is float32 (training then runs in float32),
        float64 otherwise.
    intercept_ : ndarray of shape (1,) if 2 classes else (n_classes,)
        Biases ``b``, same dtype as ``coef_``.
    classes_ : ndarray of shape (n_classes,)
        The class labels, sorted.
    n_iter_ : int
        Number of epochs of the last ``fit`` / ``partial_fit`` (largest over classes).
    t_ : float
        ``1 +`` the number of samples visited over all fits (scikit-learn's counter).
    n_features_in_ : int
        Number of features seen by ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names of ``X`` when it is a DataFrame with string names.
    n_updates_ : ndarray of int64, shape like ``intercept_``
        Number of updates (mistakes ``y a(x) <= 0``) of each binary problem since the last
        ``fit`` (accumulated over ``partial_fit`` calls); Novikoff's theorem bounds it by
        ``(D / gamma)^2`` on separable data.

    Notes
    -----
    Differences from scikit-learn, all outside ``shuffle=False``'s equality:

    - ``shuffle=True`` draws one order per epoch for all classes with numpy from
      ``random_state``; scikit-learn shuffles each one-vs-rest problem with its own C
      generator, so shuffled runs differ from scikit-learn's (statistically alike).
    - With an L1 penalty and a finite ``tol``, the stopping epoch can differ in rare cases:
      scikit-learn's epoch objective uses weight norms cached before each L1 step.
    - float32 input trains in float32 (as scikit-learn's ``_plain_sgd32``), the intercept
      too (scikit-learn keeps it in double during a fit); ``decision_function`` of a
      float32 model is float32 for float32 ``X``.
    """

    _estimator_type = "classifier"
    # What save() writes (fastnn/_persistence.py).
    _array_attributes = ("coef_", "intercept_", "classes_", "n_updates_", "feature_names_in_")
    _scalar_attributes = ("n_iter_", "t_", "n_features_in_")

    def __init__(
        self,
        *,
        penalty=None,
        alpha=0.0001,
        l1_ratio=0.15,
        fit_intercept=True,
        max_iter=1000,
        tol=1e-3,
        shuffle=True,
        verbose=0,
        eta0=1.0,
        n_jobs=None,
        random_state=0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=5,
        class_weight=None,
        warm_start=False,
        backend=None,
    ):
        self.penalty = penalty
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.fit_intercept = fit_intercept
        self.max_iter = max_iter
        self.tol = tol
        self.shuffle = shuffle
        self.verbose = verbose
        self.eta0 = eta0
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.class_weight = class_weight
        self.warm_start = warm_start
        self.backend = backend

    # ------------------------------------------------------------------ public API

    def fit(self, X, y, coef_init=None, intercept_init=None, sample_weight=None):
        """Train for up to ``max_iter`` epochs, from zeros (or the last solution).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : array-like of shape (n_samples,)
            Class labels (at least two classes).
        coef_init : array-like of shape (n_classes, n_features), default=None
            Initial weights (``(1, n_features)`` or ``(n_features,)`` for two classes).
        intercept_init : array-like of shape (n_classes,), default=None
            Initial biases.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in its updates (multiplied by ``class_weight``).

        Returns
        -------
        self : Perceptron
        """
        with self._restored_on_error():
            self._check_params()
            X, y = self._check_data(X, y, reset=True)
            if self.warm_start and hasattr(self, "coef_"):
                coef_init = self.coef_ if coef_init is None else coef_init
                intercept_init = self.intercept_ if intercept_init is None else intercept_init
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"The number of classes has to be greater than one; got 1 class "
                    f"({self.classes_[0]!r})."
                )
            self.t_ = 1.0
            self._allocate(X, coef_init, intercept_init)
            self._train(X, y, sample_weight, self.max_iter)
        if self.tol is not None and self.n_iter_ == self.max_iter:
            warnings.warn(
                "Maximum number of iteration reached before convergence. Consider "
                "increasing max_iter to improve the fit.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over ``(X, y)``, continuing from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        classes : array-like of shape (n_classes,), default=None
            All the classes of the problem; required on the first call, and when given
            later it must equal ``classes_``.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : Perceptron
        """
        first_call = not hasattr(self, "classes_")
        with self._restored_on_error():
            self._check_params()
            if self.early_stopping:
                raise ValueError("early_stopping should be False with partial_fit.")
            if first_call and isinstance(self.class_weight, str):
                raise ValueError(
                    "class_weight 'balanced' is not supported for partial_fit: compute the "
                    "weights on a large sample of the targets and pass them as a dict."
                )
            X, y = self._check_data(X, y, reset=first_call)
            self._set_partial_fit_classes(classes, first_call)
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if len(unknown):
                raise ValueError(
                    f"y has labels {unknown.tolist()} that are not in classes "
                    f"{self.classes_.tolist()}."
                )
            if first_call:
                self.t_ = 1.0
                self._allocate(X, None, None)
            else:  # the model keeps the dtype of its first call
                X = X.astype(self.coef_.dtype, copy=False)
            self._train(X, y, sample_weight, max_iter=1)
        return self

    def decision_function(self, X):
        """Signed distances to the hyperplanes, ``X @ coef_.T + intercept_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) for two classes, else (n_samples, n_classes)
            Positive values vote for ``classes_[1]`` (two classes) or for that class.
        """
        check_is_fitted(self, "coef_")
        X = check_array(X)
        check_n_features(self, X, reset=False)
        scores = X @ self.coef_.T + self.intercept_
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(self, X):
        """Class labels: ``classes_[1]`` where the score is > 0 (two classes), else argmax.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(np.intp)]
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, X, y, sample_weight=None):
        """Mean accuracy of ``predict(X)`` against ``y`` (weighted by ``sample_weight``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        float
        """
        predictions = self.predict(X)
        y = np.asarray(y)
        check_consistent_length(predictions, y)
        weights = None if sample_weight is None else check_sample_weight(
            sample_weight, len(y), np.float64
        )
        return float(np.average(predictions == y.ravel(), weights=weights))

    def save(self, path):
        """Write the fitted model to ``path`` (.npz + JSON metadata, no pickle).

        Load it back with ``fastnn.load(path)``; the round trip is bit-identical.
        """
        from ._persistence import save

        save(self, path)

    # ------------------------------------------------------------ checks and set-up

    def _check_params(self):
        check_option("penalty", self.penalty, PENALTIES)
        check_scalar("alpha", self.alpha, float, low=0)
        check_scalar("l1_ratio", self.l1_ratio, float, low=0, high=1)
        check_bool("fit_intercept", self.fit_intercept)
        check_scalar("max_iter", self.max_iter, int, low=1)
        if self.tol is not None:
            check_scalar("tol", self.tol, float, low=0)
        check_bool("shuffle", self.shuffle)
        if not isinstance(self.verbose, (bool, np.bool_)):  # sklearn accepts bools too
            check_scalar("verbose", self.verbose, int, low=0)
        check_scalar("eta0", self.eta0, float, low=0, closed="neither")
        if self.n_jobs is not None:
            check_scalar("n_jobs", self.n_jobs, int)
        check_random_state(self.random_state)
        check_bool("early_stopping", self.early_stopping)
        check_scalar("validation_fraction", self.validation_fraction, float, low=0, high=1,
                     closed="neither")
        check_scalar("n_iter_no_change", self.n_iter_no_change, int, low=1)
        if not (self.class_weight is None or isinstance(self.class_weight, dict)
                or (isinstance(self.class_weight, str) and self.class_weight == "balanced")):
            raise ValueError(
                f"class_weight must be None, 'balanced' or a dict {{label: weight}}, got "
                f"{self.class_weight!r}."
            )
        check_bool("warm_start", self.warm_start)
        check_option("backend", self.backend, (None, *_backend.BACKENDS))

    def _check_data(self, X, y, reset):
        X = check_array(X, min_samples=1)
        if y is None:
            raise ValueError("Perceptron requires y to be passed, but the target y is None.")
        y = np.asarray(y) if not hasattr(y, "tocsr") else y  # sparse y: refused below
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change "
                "the shape of y to (n_samples,), for example using ravel().",
                DataConversionWarning,
                stacklevel=3,
            )
        labels, _ = check_classification_targets(y, X.shape[0])
        if labels.ndim != 1:
            raise ValueError(
                f"y should be a 1d array of class labels, got an array of shape "
                f"{labels.shape} instead (Perceptron does not do multilabel)."
            )
        check_n_features(self, X, reset=reset)
        return X, labels

    def _set_partial_fit_classes(self, classes, first_call):
        if first_call:
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self.classes_ = np.unique(np.asarray(classes))
            if len(self.classes_) < 2:
                raise ValueError(
                    "The number of classes has to be greater than one; got "
                    f"{len(self.classes_)} class."
                )
        elif classes is not None and not np.array_equal(self.classes_, np.unique(classes)):
            raise ValueError(
                f"`classes={np.unique(classes).tolist()}` is not the same as on the first "
                f"call to partial_fit, was {self.classes_.tolist()}."
            )

    def _allocate(self, X, coef_init, intercept_init):
        """Zero (or given) weights of shape (n_problems, n_features), in X's dtype.

        Also zeroes ``n_updates_``: it counts the updates since the last (re)allocation.
        """
        n_problems = 1 if len(self.classes_) == 2 else len(self.classes_)
        n_features = X.shape[1]
        coef = np.zeros((n_problems, n_features), dtype=X.dtype)
        intercept = np.zeros(n_problems, dtype=X.dtype)
        if coef_init is not None:
            given = check_array(coef_init, name="coef_init", ensure_2d=False)
            if given.shape not in (coef.shape, (n_features,) if n_problems == 1 else None):
                raise ValueError(
                    f"coef_init has shape {given.shape}, expected {coef.shape} for "
                    f"{len(self.classes_)} classes and {n_features} features."
                )
            coef[:] = given.reshape(coef.shape)
        if intercept_init is not None:
            given = check_array(np.ravel(intercept_init), name="intercept_init", ensure_2d=False)
            if given.shape != intercept.shape:
                raise ValueError(
                    f"intercept_init has shape {np.shape(intercept_init)}, expected "
                    f"{intercept.shape}."
                )
            intercept[:] = given
        self.coef_, self.intercept_ = coef, intercept
        self.n_updates_ = np.zeros(n_problems, dtype=np.int64)

    def _class_weights(self, y):
        """Weight of each class in ``classes_`` (scikit-learn's ``compute_class_weight``)."""
        weights = np.ones(len(self.classes_), dtype=np.float64)
        if self.class_weight is None:
            return weights
        if isinstance(self.class_weight, str):  # 'balanced': over the classes present in y
            present, counts = np.unique(y, return_counts=True)
            balanced = len(y) / (len(present) * counts.astype(np.float64))
            weights[np.searchsorted(self.classes_, present)] = balanced
            return weights
        known = {label.item() if hasattr(label, "item") else label for label in self.classes_}
        unknown = [label for label in self.class_weight if label not in known]
        if unknown:
            raise ValueError(
                f"class_weight has labels {unknown} that are not classes "
                f"{self.classes_.tolist()}."
            )
        for index, label in enumerate(self.classes_):
            key = label.item() if hasattr(label, "item") else label
            if key in self.class_weight:
                weights[index] = check_scalar(
                    f"class_weight[{key!r}]", self.class_weight[key], float
                )
        return weights

    def _problems(self, y, dtype):
        """Targets in {-1, +1} of each one-vs-rest problem, and its class weights.

        Returns ``(Y, weight_pos, weight_neg)``: two classes make one problem whose
        positive class is ``classes_[1]`` (weights of classes 1 and 0); more classes make
        one problem per class (weight of the class, and 1 for the rest), as scikit-learn.
        """
        class_weights = self._class_weights(y)
        if len(self.classes_) == 2:
            positive = (y == self.classes_[1])[:, None]
            weight_pos = class_weights[1:2]
            weight_neg = class_weights[0:1]
        else:
            positive = y[:, None] == self.classes_[None, :]
            weight_pos = class_weights
            weight_neg = np.ones_like(class_weights)
        Y = np.where(positive, 1.0, -1.0).astype(dtype)
        return Y, weight_pos.astype(dtype), weight_neg.astype(dtype)

    def _penalty_strengths(self):
        """``(l2_strength, l1_strength)`` of the kernel for the chosen penalty."""
        alpha = float(self.alpha)
        if self.penalty == "l2":
            return alpha, 0.0
        if self.penalty == "l1":
            return 0.0, alpha
        if self.penalty == "elasticnet":
            return (1.0 - self.l1_ratio) * alpha, self.l1_ratio * alpha
        return 0.0, 0.0

    # --------------------------------------------------------------------- training

    def _train(self, X, y, sample_weight, max_iter):
        """Run up to ``max_iter`` epochs, stopping each class on its own criterion."""
        kernels = _backend.kernels(self.backend)
        n_samples = X.shape[0]
        dtype = X.dtype
        sample_weight = check_sample_weight(sample_weight, n_samples, dtype)
        Y, weight_pos, weight_neg = self._problems(y, dtype)
        n_problems = Y.shape[1]

        train = np.arange(n_samples, dtype=np.int64)
        validation = None
        if self.early_stopping:
            # The same draws as scikit-learn's StratifiedShuffleSplit, so the same samples.
            train, validation = validation_split(
                n_samples, self.validation_fraction, check_random_state(self.random_state),
                stratify=y,
            )
            if not sample_weight[validation].any():
                raise ValueError(
                    "The sample weights of the validation set are all zero; use another "
                    "random_state."
                )
            train = np.sort(train)  # scikit-learn visits the rest in their original order
        n_train = len(train)
        rng = check_random_state(self.random_state) if self.shuffle else None

        l2_strength, l1_strength = self._penalty_strengths()
        tol = -np.inf if self.tol is None else float(self.tol)
        coef, intercept = self.coef_, self.intercept_
        active = np.ones(n_problems, dtype=np.int64)
        n_iter = np.zeros(n_problems, dtype=np.int64)
        best = np.full(n_problems, np.inf)  # best objective (or minus best validation score)
        no_improvement = np.zeros(n_problems, dtype=np.int64)
        # The cumulative L1 state of scikit-learn's _plain_sgd starts afresh on each call.
        l1_total = np.zeros(n_problems, dtype=dtype)
        l1_q = np.zeros_like(coef)
        objective_sum = np.zeros(n_problems, dtype=np.float64)

        for epoch in range(max_iter):
            order = rng.permutation(train) if rng is not None else train
            objective_sum[:] = 0.0
            ok = kernels.perceptron_epoch(
                coef, intercept, X, Y, sample_weight, order, active, float(self.eta0),
                bool(self.fit_intercept), l2_strength, l1_strength, weight_pos, weight_neg,
                l1_total, l1_q, self.n_updates_, objective_sum,
            )
            n_iter[active == 1] = epoch + 1
            if not ok or not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
                raise ValueError(
                    f"The perceptron's weights became NaN or infinite at epoch {epoch + 1} "
                    "(floating-point overflow). Use a smaller eta0 or alpha, or scale the "
                    "input (e.g. to [0, 1] or unit variance). The previous parameters were "
                    "kept."
                )
            if validation is not None:
                # Minus the validation accuracy, so that smaller is better for both criteria.
                current = -self._validation_scores(X[validation], Y[validation],
                                                   sample_weight[validation])
            else:
                current = objective_sum / n_train
            stalled = current > best - tol
            no_improvement = np.where(stalled, no_improvement + 1, 0)
            best = np.minimum(best, current)
            if self.verbose:
                criterion = "objective" if validation is None else "validation score"
                print(
                    f"-- Epoch {epoch + 1}: {criterion} "
                    f"{np.array2string(np.abs(current[active == 1]), precision=6)}, "
                    f"updates {self.n_updates_.tolist()}, T: {n_train * (epoch + 1)}",
                    file=sys.stderr,
                )
            active[no_improvement >= self.n_iter_no_change] = 0
            if not active.any():
                break

        self.n_iter_ = int(n_iter.max())
        self.t_ += self.n_iter_ * n_samples

    def _validation_scores(self, X, Y, sample_weight):
        """Weighted accuracy of each binary problem's sign prediction on held-out data."""
        predictions = np.where(X @ self.coef_.T + self.intercept_ > 0, 1.0, -1.0)
        correct = predictions == Y
        return (sample_weight[:, None] * correct).sum(axis=0) / sample_weight.sum()

    # ------------------------------------------------------------------- plumbing

    def _restored_on_error(self):
        return _RestoreOnError(self)

    def _tags(self, tags):
        tags.input_tags.sparse = False


class _RestoreOnError:
    """Context manager: if the block raises, put the fitted attributes back as they were.

    SPEC 4: a failed fit (bad input found late, diverging weights) leaves the estimator as
    it was before the call.
    """

    def __init__(self, estimator):
        self.estimator = estimator

    def __enter__(self):
        state = self.estimator.__dict__
        self.saved = {name: _copy(state[name]) for name in _FITTED_ATTRIBUTES if name in state}
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is not None:
            state = self.estimator.__dict__
            for name in _FITTED_ATTRIBUTES:
                state.pop(name, None)
            state.update(self.saved)
        return False


def _copy(value):
    return value.copy() if isinstance(value, np.ndarray) else value
