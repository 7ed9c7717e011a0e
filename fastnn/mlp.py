"""Multilayer perceptrons with scikit-learn's API: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``
(scikit-learn 1.9): same parameters, defaults, fitted attributes and, in float64 with the
same ``random_state``, the same training trajectory to rounding. The training loop is
``fastnn._base.BaseNetwork``; the epochs run in the active kernels (``backend=``).
"""

import warnings

import numpy as np

from ._base import BaseNetwork, r2_score
from ._params import available_if
from ._validation import (
    DataConversionWarning,
    LabelCoder,
    check_classification_targets,
    check_regression_targets,
    check_sample_weight,
    type_of_target,
)

_PARAMETERS_DOC = """
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer; ``()`` means no hidden layer (a linear model).
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers.
    solver : {'lbfgs', 'sgd', 'adam'}, default='adam'
        'sgd' and 'adam' run one kernel call per epoch; 'lbfgs' runs
        ``scipy.optimize.minimize(method='L-BFGS-B')`` on the full-batch objective.
    alpha : float, default=0.0001
        L2 penalty: the objective adds ``alpha / (2 S) * sum ||W||^2`` (S = sum of the
        batch's sample weights).
    batch_size : int or 'auto', default='auto'
        Minibatch size for sgd / adam; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule of sgd: ``invscaling`` sets ``lr = learning_rate_init / (t + 1)**power_t``
        after each epoch (t = samples seen); ``adaptive`` divides it by 5 whenever
        ``n_iter_no_change`` epochs fail to improve by ``tol``.
    learning_rate_init : float, default=0.001
        Initial step size (sgd, adam).
    power_t : float, default=0.5
        Exponent of ``invscaling``.
    max_iter : int, default=200
        Maximum number of epochs (sgd, adam) or of iterations (lbfgs).
    shuffle : bool, default=True
        Shuffle the samples every epoch (sgd, adam).
    random_state : int, RandomState instance or None, default=None
        Drives initialisation, shuffling and the early-stopping split.
    tol : float, default=1e-4
        Improvement needed to reset the no-improvement counter (and lbfgs's ``gtol``).
    verbose : bool, default=False
        Print one line per epoch to stderr.
    warm_start : bool, default=False
        Continue from the previous fit's weights.
    momentum : float, default=0.9
        Momentum of sgd, in [0, 1].
    nesterovs_momentum : bool, default=True
        Use Nesterov's momentum (sgd with ``momentum > 0``).
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data, stop when its score stops improving
        and restore the best weights.
    validation_fraction : float, default=0.1
        Size of the early-stopping validation split, in [0, 1).
    beta_1, beta_2 : float, default=0.9, 0.999
        Adam's moment decay rates, in [0, 1).
    epsilon : float, default=1e-8
        Adam's numerical stabiliser.
    n_iter_no_change : int, default=10
        Epochs without improvement before stopping (or decaying an adaptive rate).
    max_fun : int, default=15000
        Maximum number of loss evaluations of lbfgs.
    backend : {'cython', 'numba', 'numpy'} or None, default=None
        Kernel backend; None uses the process-wide one (``fastnn.get_backend()``).
"""

_ATTRIBUTES_DOC = """
    loss_ : float
        Objective (data loss + L2) of the last epoch, averaged over the samples.
    best_loss_ : float or None
        Lowest ``loss_`` (None with early stopping).
    loss_curve_ : list of float
        ``loss_`` of every epoch (sgd, adam).
    validation_scores_ : list of float or None
        Validation score of every epoch with early stopping, else None.
    best_validation_score_ : float or None
        Best validation score with early stopping, else None.
    t_ : int
        Number of training samples seen (the schedule's time step).
    coefs_ : list of ndarray
        ``coefs_[i]`` of shape ``(units[i], units[i+1])``: views into one flat buffer.
    intercepts_ : list of ndarray
        ``intercepts_[i]`` of shape ``(units[i+1],)``, views into the same buffer.
    n_features_in_ : int
        Number of features seen in fit.
    n_iter_ : int
        Epochs (or lbfgs iterations) run by the last fit.
    n_layers_ : int
        Number of layers, input and output included.
    n_outputs_ : int
        Number of output units.
    out_activation_ : str
        Output activation ('identity', 'logistic' or 'softmax').
"""


def _doc(text):
    return text.replace("%(parameters)s", _PARAMETERS_DOC).replace(
        "%(attributes)s", _ATTRIBUTES_DOC
    )


def _warn_column_vector(y):
    """scikit-learn's MLPs warn when ``y`` is a column vector and use it as 1-D."""
    if getattr(y, "ndim", None) == 2 and y.shape[1] == 1:
        warnings.warn(
            "A column-vector y was passed when a 1d array was expected. Please change the "
            "shape of y to (n_samples,), for example using ravel().",
            DataConversionWarning,
            stacklevel=4,
        )


class _BaseMLP(BaseNetwork):
    """Shared constructor and persistence of both MLPs."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend

    def _check_solver(self):
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers; "
                f"solver={self.solver!r} is not stochastic."
            )
        return True

    def _tags(self, tags):
        tags.input_tags.sparse = False
        tags.target_tags.multi_output = True


class MLPClassifier(_BaseMLP):
    __doc__ = _doc(
        """Multilayer perceptron classifier, trained on the log loss.

    Binary problems get one logistic output unit, multiclass a softmax layer, multilabel
    (a 0/1 indicator matrix ``y``) one logistic unit per label.

    Parameters
    ----------
%(parameters)s
    Attributes
    ----------
    classes_ : ndarray
        Class labels (label indices for multilabel targets).
%(attributes)s
    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import MLPClassifier
    >>> X = np.array([[0., 0.], [0., 1.], [1., 0.], [1., 1.]])
    >>> clf = MLPClassifier((8,), solver="lbfgs", random_state=0).fit(X, [0, 1, 1, 0])
    >>> clf.predict(X).shape
    (4,)
    """
    )

    _estimator_type = "classifier"
    _array_attributes = _BaseMLP._array_attributes + ("classes_",)

    def _prepare_targets(self, X, y, reset, incremental):
        _warn_column_vector(y)
        labels, target_type = check_classification_targets(y, X.shape[0])
        if not hasattr(self, "_label_coder") or (not self.warm_start and not incremental):
            self._label_coder = LabelCoder.fit(labels, target_type)
            self.classes_ = self._label_coder.classes
        elif self.warm_start and not incremental:
            self._label_coder.check_known(labels)
            if target_type != "multilabel-indicator" and set(np.unique(labels)) != set(
                self.classes_
            ):
                raise ValueError(
                    "warm_start can only be used where y has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, y has "
                    f"{np.unique(labels)}."
                )
        else:
            self._label_coder.check_known(labels)
        return self._label_coder.transform(labels, X.dtype)

    def _extra_state(self):
        scalars, arrays = super()._extra_state()
        if hasattr(self, "_label_coder"):
            scalars["target_type"] = self._label_coder.target_type
        return scalars, arrays

    def _load_extra_state(self, scalars, arrays):
        super()._load_extra_state(scalars, arrays)
        if "target_type" in scalars:
            self._label_coder = LabelCoder(self.classes_, scalars["target_type"])

    def _output(self):
        if self._label_coder.target_type == "multiclass":
            return "softmax", "log_loss"
        return "logistic", "binary_log_loss"

    def _stratified_split(self):
        return True

    def _validation_score(self, X, Y, sample_weight):
        labels = self._label_coder.inverse_transform(Y)
        return self._accuracy(self._predict_checked(X), labels, sample_weight)

    @staticmethod
    def _accuracy(predicted, labels, sample_weight):
        correct = predicted == labels
        if correct.ndim == 2:
            correct = correct.all(axis=1)
        return float(np.average(correct, weights=sample_weight))

    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``X`` (n_samples, n_features) and labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, or a 0/1 indicator matrix for multilabel problems.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_BaseMLP._check_solver)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over ``X``, ``y``, keeping the optimiser state between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like, default=None
            All classes of the problem; required on the first call (not for multilabel).

        Returns
        -------
        self
        """
        if not hasattr(self, "classes_"):
            if type_of_target(y) == "multilabel-indicator":
                labels = np.asarray(y)
                self._partial_fit_first(labels, "multilabel-indicator", X, y, sample_weight)
                return self
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            class_values = np.unique(np.asarray(classes))
            self._partial_fit_first(class_values, "multiclass", X, y, sample_weight)
            return self
        if classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(
                f"classes={np.asarray(classes)!r} is not the same as on the last call to "
                f"partial_fit, which was {self.classes_!r}."
            )
        return self._fit(X, y, sample_weight, incremental=True)

    def _partial_fit_first(self, class_values, target_type, X, y, sample_weight):
        """First partial_fit: learn the classes from ``classes``; undo them on failure."""
        self._label_coder = LabelCoder.fit(class_values, target_type)
        self.classes_ = self._label_coder.classes
        try:
            self._fit(X, y, sample_weight, incremental=True)
        except BaseException:
            del self._label_coder, self.classes_
            raise

    def _predict_checked(self, X):
        return self._label_coder.inverse_transform(self._forward(X))

    def predict(self, X):
        """Predicted class labels (a 0/1 indicator matrix for multilabel problems)."""
        return self._predict_checked(self._check_predict_input(X))

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in ``classes_`` order."""
        probabilities = self._forward(self._check_predict_input(X))
        if self._label_coder.target_type == "binary":
            return np.hstack([1 - probabilities, probabilities])
        return probabilities

    def predict_log_proba(self, X):
        """Logarithm of ``predict_proba``."""
        probabilities = self.predict_proba(X)
        return np.log(probabilities, out=probabilities)

    def score(self, X, y, sample_weight=None):
        """Mean accuracy (subset accuracy for multilabel) of ``predict(X)`` against ``y``."""
        predicted = self.predict(X)
        labels = np.asarray(y)
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels.ravel()
        if labels.shape[0] != predicted.shape[0]:
            raise ValueError(
                f"X has {predicted.shape[0]} samples but y has {labels.shape[0]}."
            )
        weights = check_sample_weight(sample_weight, labels.shape[0], np.float64)
        return self._accuracy(predicted, labels, weights)

    def _tags(self, tags):
        super()._tags(tags)
        tags.classifier_tags.multi_label = True


class MLPRegressor(_BaseMLP):
    __doc__ = _doc(
        """Multilayer perceptron regressor, trained on the squared error.

    The output layer is linear (identity); ``y`` may have several columns. The loss is
    ``0.5 * mean_samples(sum_outputs (y - p)^2)`` (equal to scikit-learn's for one
    output; for several outputs scikit-learn's reported loss is also divided by the
    number of outputs while its gradient is not, its issue 8349).

    Parameters
    ----------
    loss : {'squared_error'}, default='squared_error'
        The loss to minimise.
%(parameters)s
    Attributes
    ----------
%(attributes)s
    Examples
    --------
    >>> import numpy as np
    >>> from fastnn import MLPRegressor
    >>> X = np.linspace(-1, 1, 20)[:, None]
    >>> reg = MLPRegressor((8,), solver="lbfgs", random_state=0).fit(X, X.ravel() ** 2)
    >>> reg.predict(X).shape
    (20,)
    """
    )

    _estimator_type = "regressor"

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend=None,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            shuffle=shuffle, random_state=random_state, tol=tol, verbose=verbose,
            warm_start=warm_start, momentum=momentum, nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping, validation_fraction=validation_fraction,
            beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, n_iter_no_change=n_iter_no_change,
            max_fun=max_fun, backend=backend,
        )
        self.loss = loss

    def _validate_extra_params(self):
        from ._validation import check_option

        check_option("loss", self.loss, ("squared_error",))

    def _prepare_targets(self, X, y, reset, incremental):
        _warn_column_vector(y)
        Y, _ = check_regression_targets(y, X.shape[0], X.dtype)
        return Y

    def _output(self):
        return "identity", "squared_error"

    def _validation_score(self, X, Y, sample_weight):
        predictions = self._forward(X)
        if not np.isfinite(predictions).all():
            return np.nan
        return r2_score(Y, predictions, sample_weight)

    def fit(self, X, y, sample_weight=None):
        """Fit the network to ``X`` (n_samples, n_features) and targets ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(_BaseMLP._check_solver)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over ``X``, ``y``, keeping the optimiser state between calls."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets, shape (n_samples,) for one output, else (n_samples, n_outputs)."""
        predictions = self._forward(self._check_predict_input(X))
        return predictions.ravel() if predictions.shape[1] == 1 else predictions

    def score(self, X, y, sample_weight=None):
        """Coefficient of determination R^2 (averaged over outputs) of ``predict(X)``."""
        X = self._check_predict_input(X)
        Y, _ = check_regression_targets(y, X.shape[0], np.float64)
        weights = check_sample_weight(sample_weight, X.shape[0], np.float64)
        return r2_score(Y, self._forward(X).astype(np.float64), weights)
