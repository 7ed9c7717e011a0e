"""The training loop shared by every network estimator (MLPs and autoencoders).

``BaseNetwork`` does what scikit-learn's ``BaseMultilayerPerceptron._fit`` does, in the
same order and with the same random draws, but Python enters the kernel once per epoch:
``kernels(backend).sgd_epoch(...)`` runs every minibatch of the epoch (docs/kernels.md).

Per fit: validate hyper-parameters and input, check the random state, initialise
(``glorot_uniform_init``) on the first pass, make one workspace, then per epoch: draw the
sample order (``rs.permutation`` of the previous order, as ``sklearn.utils.shuffle``), call
the kernel, record ``loss_curve_``, score the validation split when early stopping, update
the learning rate (``invscaling`` / ``adaptive``) and test the stopping rule. A fit whose
loss becomes non-finite raises ``ValueError`` and leaves the estimator exactly as it was.

Hooks for subclasses (the autoencoder overrides the last four)
-------------------------------------------------------------
``_prepare_targets(X, y, reset, incremental)``
    Validate ``y`` and return the 2-D float target matrix ``Y`` (dtype of ``X``). The
    autoencoder returns ``X`` itself. ``reset`` is True on a first pass (classes may be
    (re)learned), False for ``warm_start`` / ``partial_fit``.
``_output(self)``
    ``(out_activation, loss)`` names for the output layer, from ``fastnn._codes``
    (e.g. ``("identity", "squared_error")``); read after ``_prepare_targets``.
``_validation_score(X_val, Y_val, sample_weight_val)``
    Higher is better; used by ``early_stopping`` (accuracy, R^2, negative MSE ...).
``_validate_extra_params()``
    Check subclass-specific hyper-parameters; called by ``fit`` before anything changes.
``_penalty_arguments(layer_units, random_state, reset)``
    A dict with the kernels' extra arguments ``l1_weight, kl_weight, kl_target,
    contraction_weight, penalized`` (int64, length ``len(layer_units) - 2``), ``noise``
    (a code of ``fastnn._codes.NOISES``), ``noise_level``, ``noise_seed``. The default turns
    all of them off. Called once per fit, after initialisation, with the fit's random state.
    The kernels receive ``epoch`` = the number of epochs this model has trained before
    (``_epoch_count``), so denoising draws new noise every epoch, across ``partial_fit``.
``_reset_loss_parts()`` / ``_record_loss_parts(data_loss, penalty)``
    Called on a first pass / once per epoch with the two parts of the epoch's mean
    objective (``loss_sum / n``, ``penalty_sum / n`` from ``sgd_epoch``); the autoencoder
    appends them to ``reconstruction_loss_curve_`` and ``penalty_curve_``.

Persistence: ``_array_attributes`` names the fitted arrays that ``save`` writes (the flat
buffer ``_params`` holds every weight); ``_scalar_attributes`` the fitted scalars/lists.
"""

import copy
import sys
import warnings

import numpy as np

from . import _codes
from ._backend import BACKENDS, kernels
from ._network import (aligned, as_layer_units, glorot_uniform_init, n_params, read_only,
                       unpack)
from ._params import ParamsMixin
from ._validation import (
    ConvergenceWarning,
    InvalidParameterError,
    check_array,
    check_bool,
    check_is_fitted,
    check_n_features,
    check_option,
    check_random_state,
    check_sample_weight,
    check_scalar,
    feature_names,
)

_STOCHASTIC_SOLVERS = ("sgd", "adam")


def _approximate_mode(class_counts, n_draws, rng):
    """scikit-learn's ``_approximate_mode``: class counts of a stratified draw."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need_to_add = int(n_draws - floored.sum())
    if need_to_add > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (indices,) = np.where(remainder == value)
            add_now = min(len(indices), need_to_add)
            indices = rng.choice(indices, size=add_now, replace=False)
            floored[indices] += 1
            need_to_add -= add_now
            if need_to_add == 0:
                break
    return floored.astype(int)


def validation_split(n_samples, validation_fraction, rng, stratify=None):
    """``(train, validation)`` row indices drawn as ``sklearn.model_selection.train_test_split``.

    Reproduces ``ShuffleSplit`` (one ``rng.permutation``) and, when ``stratify`` (class
    index per row) is given, ``StratifiedShuffleSplit``, with the same draws from ``rng``.
    """
    n_validation = int(np.ceil(validation_fraction * n_samples))
    n_train = n_samples - n_validation
    if n_train < 1 or n_validation < 2:
        raise ValueError(
            f"The validation set is too small ({n_validation} of {n_samples} samples with "
            f"validation_fraction={validation_fraction}). Increase 'validation_fraction' "
            "or the size of your dataset."
        )
    if stratify is None:
        permutation = rng.permutation(n_samples)
        return permutation[n_validation:], permutation[:n_validation]
    classes, class_of_row, class_counts = np.unique(
        stratify, return_inverse=True, return_counts=True
    )
    if class_counts.min() < 2:
        raise ValueError(
            "Early stopping needs at least 2 samples of every class for its stratified "
            f"validation split; classes with fewer: {classes[class_counts < 2].tolist()}."
        )
    if n_train < len(classes) or n_validation < len(classes):
        raise ValueError(
            f"The validation split ({n_train} train / {n_validation} validation samples) "
            f"must hold at least one sample of each of the {len(classes)} classes."
        )
    class_rows = np.split(
        np.argsort(class_of_row, kind="stable"), np.cumsum(class_counts)[:-1]
    )
    n_train_of_class = _approximate_mode(class_counts, n_train, rng)
    n_validation_of_class = _approximate_mode(class_counts - n_train_of_class, n_validation, rng)
    train, validation = [], []
    for rows, n_tr, n_va in zip(class_rows, n_train_of_class, n_validation_of_class):
        shuffled = rows.take(rng.permutation(len(rows)), mode="clip")
        train.extend(shuffled[:n_tr])
        validation.extend(shuffled[n_tr:n_tr + n_va])
    return rng.permutation(train), rng.permutation(validation)


def r2_score(Y, predictions, sample_weight):
    """R^2 of 2-D ``predictions`` against ``Y``, averaged over outputs (scikit-learn's)."""
    weights = sample_weight[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        residual = (weights * (Y - predictions) ** 2).sum(axis=0)
    mean = (weights * Y).sum(axis=0) / weights.sum()
    total = (weights * (Y - mean) ** 2).sum(axis=0)
    scores = np.ones(Y.shape[1])
    nonzero = total != 0
    scores[nonzero] = 1 - residual[nonzero] / total[nonzero]
    scores[~nonzero & (residual != 0)] = 0.0  # constant target, imperfect prediction
    return float(scores.mean())


def _copy_state(value):
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return {key: _copy_state(item) for key, item in value.items()}
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return value
    return copy.deepcopy(value)


class BaseNetwork(ParamsMixin):
    """Feed-forward network trained by sgd / adam / lbfgs; see the module docstring."""

    _array_attributes = ("_params", "_layer_units", "_best_params", "feature_names_in_")
    _scalar_attributes = (
        "n_iter_", "t_", "n_layers_", "n_outputs_", "out_activation_", "n_features_in_",
        "loss_", "best_loss_", "loss_curve_", "validation_scores_", "best_validation_score_",
        "_epoch_count", "_no_improvement_count",
    )

    # ------------------------------------------------------------------ hooks

    def _prepare_targets(self, X, y, reset, incremental):
        raise NotImplementedError

    def _output(self):
        raise NotImplementedError

    def _validation_score(self, X, Y, sample_weight):
        raise NotImplementedError

    def _validate_extra_params(self):
        """Subclass hyper-parameter checks (none here)."""

    def _penalty_arguments(self, layer_units, random_state, reset):
        return {
            "l1_weight": 0.0,
            "kl_weight": 0.0,
            "kl_target": 0.0,
            "contraction_weight": 0.0,
            "penalized": np.zeros(max(len(layer_units) - 2, 0), dtype=np.int64),
            "noise": _codes.NO_NOISE,
            "noise_level": 0.0,
            "noise_seed": 0,
        }

    def _reset_loss_parts(self):
        """Hook: a first pass starts new per-part loss curves (none here)."""

    def _record_loss_parts(self, data_loss, penalty):
        """Hook: record the two parts of one epoch's mean objective (nothing here)."""

    # -------------------------------------------------------- hyper-parameters

    def _hidden_layer_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, (str, bytes)) or sizes is None:
            raise InvalidParameterError(
                f"hidden_layer_sizes must be an int or a sequence of ints, got {sizes!r}."
            )
        if not hasattr(sizes, "__iter__"):
            sizes = [sizes]
        sizes = list(sizes)
        for size in sizes:
            check_scalar("each of hidden_layer_sizes", size, int, low=1)
        return [int(size) for size in sizes]

    def _validate_params(self):
        """Check every hyper-parameter (in ``fit``, as scikit-learn); raise on bad ones."""
        self._hidden_layer_sizes()
        check_option("activation", self.activation, _codes.HIDDEN_ACTIVATIONS)
        check_option("solver", self.solver, ("lbfgs", "sgd", "adam"))
        check_scalar("alpha", self.alpha, float, low=0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_scalar("batch_size", self.batch_size, int, low=1)
        check_option("learning_rate", self.learning_rate, ("constant", "invscaling", "adaptive"))
        check_scalar("learning_rate_init", self.learning_rate_init, float, low=0, closed="right")
        check_scalar("power_t", self.power_t, float, low=0)
        check_scalar("max_iter", self.max_iter, int, low=1)
        check_bool("shuffle", self.shuffle)
        if not (self.random_state is None or isinstance(
                self.random_state, (np.random.RandomState, np.random.Generator))):
            check_scalar("random_state", self.random_state, int)  # what fit will seed with
        check_scalar("tol", self.tol, float, low=0)
        if not isinstance(self.verbose, (bool, np.bool_)):
            check_scalar("verbose", self.verbose, int, low=0)
        check_bool("warm_start", self.warm_start)
        check_scalar("momentum", self.momentum, float, low=0, high=1)
        check_bool("nesterovs_momentum", self.nesterovs_momentum)
        check_bool("early_stopping", self.early_stopping)
        check_scalar("validation_fraction", self.validation_fraction, float, low=0, high=1,
                     closed="left")
        check_scalar("beta_1", self.beta_1, float, low=0, high=1, closed="left")
        check_scalar("beta_2", self.beta_2, float, low=0, high=1, closed="left")
        check_scalar("epsilon", self.epsilon, float, low=0, closed="neither")
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == np.inf):
            check_scalar("n_iter_no_change", self.n_iter_no_change, int, low=1)
        check_scalar("max_fun", self.max_fun, int, low=1)
        if self.backend is not None:
            check_option("backend", self.backend, BACKENDS)
        self._validate_extra_params()

    # ----------------------------------------------------------------- state

    def _set_buffer(self, params, layer_units):
        """Adopt ``params`` as the flat buffer (an aligned copy when it does not start on
        a cache line, see _network.ALIGNMENT); ``coefs_`` / ``intercepts_`` view it."""
        params = aligned(params)
        self._params = params
        self._layer_units = layer_units
        self.coefs_, self.intercepts_ = unpack(params, layer_units)

    def __getstate__(self):
        state = self.__dict__.copy()
        # Views would be pickled as copies; they are rebuilt from the buffer on load.
        state.pop("coefs_", None)
        state.pop("intercepts_", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "_params" in state:
            params, layer_units = state["_params"], np.asarray(state["_layer_units"])
            expected = n_params(layer_units)
            for name in ("_params", "_best_params"):
                array = state.get(name, params)
                if (array.ndim != 1 or array.shape[0] != expected
                        or array.dtype not in (np.float32, np.float64)):
                    raise ValueError(
                        f"{name} must be a float32/float64 vector of {expected} values for "
                        f"layer sizes {layer_units.tolist()}, got {array.dtype} {array.shape}."
                    )
            self._set_buffer(params, layer_units)

    def save(self, path):
        """Write the fitted model to ``path`` (.npz + JSON metadata, no pickle).

        Load it back with ``fastnn.load(path)``; the round trip is bit-identical.
        """
        from ._persistence import save

        save(self, path)

    def _extra_state(self):
        """Persisted state that is neither a plain array nor a scalar attribute."""
        state = getattr(self, "_optimizer_state", None)
        if state is None:
            return {}, {}
        scalars = {"learning_rate": state["learning_rate"], "adam_step": state["adam_step"]}
        arrays = {"velocity": state["velocity"], "second_moment": state["second_moment"]}
        return scalars, arrays

    def _load_extra_state(self, scalars, arrays):
        if "velocity" in arrays:
            for name in ("velocity", "second_moment"):
                if arrays[name].shape != self._params.shape:
                    raise ValueError(f"optimiser state {name} does not match the weights.")
            self._optimizer_state = {
                "learning_rate": float(scalars["learning_rate"]),
                "adam_step": int(scalars["adam_step"]),
                "velocity": arrays["velocity"],
                "second_moment": arrays["second_moment"],
            }

    def _snapshot(self):
        """Everything ``fit`` may change, to restore after a failed fit.

        Arrays and containers are copied (fit mutates them in place); lists hold only
        immutable numbers, so a shallow copy suffices and ``partial_fit`` in a loop does
        not pay a deep copy of a growing ``loss_curve_`` on every call.
        """
        params = set(self._get_param_names())
        return {
            key: value if key in params else _copy_state(value)
            for key, value in self.__dict__.items()
            if key not in ("coefs_", "intercepts_")
        }

    def _restore(self, snapshot):
        self.__dict__.clear()
        self.__setstate__(snapshot)

    def _initialize(self, layer_units, dtype, random_state):
        self.n_iter_ = 0
        self.t_ = 0
        self._epoch_count = 0
        self.n_outputs_ = int(layer_units[-1])
        self.n_layers_ = len(layer_units)
        self.out_activation_ = self._output()[0]
        self._set_buffer(
            glorot_uniform_init(layer_units, self.activation, random_state, dtype), layer_units
        )
        self._best_params = self._params.copy()
        self._reset_loss_parts()
        for name in ("loss_curve_", "validation_scores_", "best_validation_score_",
                     "best_loss_", "loss_"):
            self.__dict__.pop(name, None)
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _kernels(self):
        return kernels(self.backend)

    # ------------------------------------------------------------------- fit

    def _fit(self, X, y, sample_weight=None, incremental=False):
        self._validate_params()
        snapshot = self._snapshot()
        try:
            return self._fit_unprotected(X, y, sample_weight, incremental)
        except BaseException:
            # Bad input or a diverging fit: leave the estimator exactly as it was.
            self._restore(snapshot)
            raise

    def _fit_unprotected(self, X, y, sample_weight, incremental):
        hidden_layer_sizes = self._hidden_layer_sizes()
        first_pass = not hasattr(self, "_params") or (not self.warm_start and not incremental)
        dtype = None if first_pass else self._params.dtype
        names = feature_names(X)
        X = check_array(X, dtype=dtype)
        check_n_features(self, X, reset=first_pass, names=names)
        Y = self._prepare_targets(X, y, first_pass, incremental)
        sample_weight = check_sample_weight(sample_weight, X.shape[0], X.dtype)
        layer_units = as_layer_units(X.shape[1], hidden_layer_sizes, Y.shape[1])
        if not first_pass and not np.array_equal(layer_units, self._layer_units):
            raise ValueError(
                f"The network has layer sizes {self._layer_units.tolist()} but this data and "
                f"hidden_layer_sizes give {layer_units.tolist()}; fit from scratch instead "
                "(warm_start=False)."
            )
        random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(layer_units, X.dtype, random_state)
        penalties = self._penalty_arguments(layer_units, random_state, first_pass)
        if self.solver in _STOCHASTIC_SOLVERS:
            self._fit_stochastic(X, Y, sample_weight, random_state, penalties, incremental)
        else:
            self._fit_lbfgs(X, Y, sample_weight, penalties)
        return self

    def _kernel_codes(self):
        out_activation, loss = self._output()
        return (
            _codes.ACTIVATIONS[self.activation],
            _codes.ACTIVATIONS[out_activation],
            _codes.LOSSES[loss],
        )

    def _new_optimizer_state(self):
        return {
            "learning_rate": float(self.learning_rate_init),
            "adam_step": 0,
            "velocity": np.zeros_like(self._params),
            "second_moment": np.zeros_like(self._params),
        }

    def _fit_stochastic(self, X, Y, sample_weight, random_state, penalties, incremental):
        if not incremental or not hasattr(self, "_optimizer_state"):
            self._optimizer_state = self._new_optimizer_state()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True.")
        if self.early_stopping:
            stratify = Y[:, 0] if self._stratified_split() and Y.shape[1] == 1 else None
            train, validation = validation_split(
                X.shape[0], self.validation_fraction, random_state, stratify
            )
            train_rows = train.astype(np.int64)
            validation_set = (X[validation], Y[validation], sample_weight[validation])
        else:
            train_rows = np.arange(X.shape[0], dtype=np.int64)
            validation_set = None
        n_samples = len(train_rows)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    f"Got batch_size={self.batch_size} larger than the {n_samples} training "
                    "samples; it is clipped to the number of samples.",
                    UserWarning,
                    stacklevel=4,
                )
            batch_size = min(int(self.batch_size), n_samples)

        module = self._kernels()
        workspace = module.make_workspace(
            self._layer_units, batch_size, X.dtype, penalties["contraction_weight"] > 0
        )
        self.n_iter_ = 0
        try:
            self._run_epochs(module, workspace, X, Y, sample_weight, train_rows, batch_size,
                             random_state, penalties, incremental, validation_set)
        except KeyboardInterrupt:
            # As scikit-learn: an interrupted fit keeps the weights trained so far.
            warnings.warn("Training interrupted by user.", UserWarning, stacklevel=4)
        if self.early_stopping:
            self._params[...] = self._best_params

    def _run_epochs(self, module, workspace, X, Y, sample_weight, train_rows, batch_size,
                    random_state, penalties, incremental, validation_set):
        """The epoch loop of sgd / adam: one ``sgd_epoch`` kernel call per epoch.

        ``train_rows`` are the rows of ``X`` trained on; ``validation_set`` is
        ``(X_val, Y_val, sample_weight_val)`` with early stopping, else None.
        """
        hidden_code, out_code, loss_code = self._kernel_codes()
        state = self._optimizer_state
        optimizer = _codes.OPTIMIZERS[self.solver]
        n_samples = len(train_rows)
        # The kernels' inputs read-only once, not by the Numba kernels at every epoch.
        X, Y, sample_weight = read_only(X), read_only(Y), read_only(sample_weight)
        layer_units = read_only(self._layer_units)
        penalized = read_only(penalties["penalized"])
        # Index into the training rows; shuffled cumulatively like sklearn.utils.shuffle.
        sample_idx = np.arange(n_samples)
        for _ in range(self.max_iter):
            if self.shuffle:
                sample_idx = sample_idx[random_state.permutation(n_samples)]
            order = np.ascontiguousarray(train_rows[sample_idx], dtype=np.int64)
            loss_sum, penalty_sum, ok = module.sgd_epoch(
                self._params, layer_units, hidden_code, out_code, loss_code,
                X, Y, sample_weight, order, batch_size,
                optimizer, state["learning_rate"], float(self.momentum),
                bool(self.nesterovs_momentum), float(self.beta_1), float(self.beta_2),
                float(self.epsilon), state["adam_step"], state["velocity"],
                state["second_moment"], float(self.alpha),
                penalties["l1_weight"], penalties["kl_weight"], penalties["kl_target"],
                penalties["contraction_weight"], penalized, penalties["noise"],
                penalties["noise_level"], penalties["noise_seed"], self._epoch_count,
                workspace,
            )
            if not ok or not np.isfinite(loss_sum + penalty_sum):
                raise ValueError(
                    f"The training loss became NaN or infinite in epoch {self.n_iter_ + 1} "
                    f"(solver={self.solver!r}, learning_rate_init={self.learning_rate_init}): "
                    "the optimisation diverged. Use a smaller learning_rate_init (or "
                    "standardise the input); the estimator keeps the parameters it had "
                    "before this fit."
                )
            state["adam_step"] += -(-n_samples // batch_size)
            self._epoch_count += 1
            self.n_iter_ += 1
            self.loss_ = (loss_sum + penalty_sum) / n_samples
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            self._record_loss_parts(loss_sum / n_samples, penalty_sum / n_samples)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}", file=sys.stderr)
            if validation_set is not None:
                self._update_no_improvement_count_validation(*validation_set)
            else:
                self._update_no_improvement_count_loss()
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                state["learning_rate"] = float(self.learning_rate_init) / (
                    (self.t_ + 1) ** self.power_t
                )
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if self.early_stopping else "Training loss"
                message = (
                    f"{what} did not improve more than tol={self.tol:f} for "
                    f"{self.n_iter_no_change} consecutive epochs."
                )
                if self._stop_or_decay(message):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=5,
                )

    def _stratified_split(self):
        """Whether the early-stopping split is stratified (single-output classifiers)."""
        return False

    def _stop_or_decay(self, message):
        """sklearn's ``trigger_stopping``: True to stop, or divide an adaptive rate by 5."""
        state = self._optimizer_state
        if self.solver != "sgd" or self.learning_rate != "adaptive":
            if self.verbose:
                print(message + " Stopping.", file=sys.stderr)
            return True
        if state["learning_rate"] <= 1e-6:
            if self.verbose:
                print(message + " Learning rate too small. Stopping.", file=sys.stderr)
            return True
        state["learning_rate"] /= 5.0
        if self.verbose:
            print(message + f" Setting learning rate to {state['learning_rate']:f}",
                  file=sys.stderr)
        return False

    def _update_no_improvement_count_loss(self):
        if self.loss_curve_[-1] > self.best_loss_ - self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if self.loss_curve_[-1] < self.best_loss_:
            self.best_loss_ = self.loss_curve_[-1]

    def _update_no_improvement_count_validation(self, X_val, Y_val, sample_weight_val):
        score = self._validation_score(X_val, Y_val, sample_weight_val)
        self.validation_scores_.append(score)
        if self.verbose:
            print(f"Validation score: {score:f}", file=sys.stderr)
        if score < self.best_validation_score_ + self.tol:
            self._no_improvement_count += 1
        else:
            self._no_improvement_count = 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            self._best_params = self._params.copy()

    def _fit_lbfgs(self, X, Y, sample_weight, penalties):
        import scipy.optimize  # loaded on first use: it costs ~0.4 s at import

        hidden_code, out_code, loss_code = self._kernel_codes()
        module = self._kernels()
        workspace = module.make_workspace(
            self._layer_units, X.shape[0], X.dtype, penalties["contraction_weight"] > 0
        )
        params = self._params
        grad = np.empty_like(params)

        def objective(packed):
            params[...] = packed
            data_loss, penalty = module.loss_and_gradient(
                params, self._layer_units, hidden_code, out_code, loss_code,
                X, Y, sample_weight, float(self.alpha),
                penalties["l1_weight"], penalties["kl_weight"], penalties["kl_target"],
                penalties["contraction_weight"], penalties["penalized"], penalties["noise"],
                penalties["noise_level"], penalties["noise_seed"], self._epoch_count, grad,
                workspace,
            )
            return data_loss + penalty, grad.astype(np.float64)

        iteration = [0]

        def report(intermediate_result):
            iteration[0] += 1
            print(f"Iteration {iteration[0]}, loss = {intermediate_result.fun:.8f}",
                  file=sys.stderr)

        result = scipy.optimize.minimize(
            objective,
            params.astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            callback=report if self.verbose else None,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
        )
        params[...] = result.x
        if not (np.isfinite(result.fun) and np.isfinite(params).all()):
            raise ValueError(
                "The lbfgs solver produced a non-finite loss or non-finite weights: the "
                "optimisation diverged. Standardise the input or increase alpha; the "
                "estimator keeps the parameters it had before this fit."
            )
        if result.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {result.nit} iteration(s) "
                f"(status={result.status}): {result.message}. Increase max_iter or scale "
                "the data.",
                ConvergenceWarning,
                stacklevel=4,
            )
        self.n_iter_ = min(int(result.nit), self.max_iter)
        self.loss_ = float(result.fun)
        self._epoch_count += 1

    # --------------------------------------------------------------- predict

    def _check_predict_input(self, X):
        check_is_fitted(self, "_params")
        names = feature_names(X)
        X = check_array(X, dtype=self._params.dtype)
        check_n_features(self, X, reset=False, names=names)
        return X

    def _forward(self, X, first_layer=0, last_layer=None):
        """Output of weight layers ``first_layer .. last_layer-1`` on validated ``X``."""
        last_layer = self.n_layers_ - 1 if last_layer is None else last_layer
        out = np.empty((X.shape[0], int(self._layer_units[last_layer])), dtype=X.dtype)
        hidden_code, out_code, _ = self._kernel_codes()
        self._kernels().forward(
            self._params, self._layer_units, hidden_code, out_code,
            first_layer, last_layer, X, out,
        )
        return out
