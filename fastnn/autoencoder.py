"""Autoencoders: undercomplete, sparse (L1 / KL), denoising and contractive, in any mix.

``Autoencoder`` is an ``MLPRegressor`` fitted to reproduce its input (``fit(X)`` trains on
the pairs ``(X, X)``) with the penalties and the input corruption of the lecture added to
the objective. It trains in the shared epoch loop (``fastnn._base.BaseNetwork``): the
penalties and the noise are computed inside the kernels (docs/kernels.md), so the whole
epoch runs in compiled code. ``SparseAutoencoder``, ``DenoisingAutoencoder`` and
``ContractiveAutoencoder`` are the same estimator with other defaults.
"""

import inspect
import re

import numpy as np

from . import _codes
from ._base import _STOCHASTIC_SOLVERS
from ._params import available_if
from ._validation import (
    check_array,
    check_is_fitted,
    check_option,
    check_sample_weight,
    check_scalar,
)
from .mlp import _ATTRIBUTES_DOC, _BaseMLP

_SPARSITIES = (None, "l1", "kl")
_PENALIZED_LAYERS = ("all", "code")
_OUT_ACTIVATIONS = ("identity", "logistic")

_AUTOENCODER_PARAMETERS_DOC = """
    hidden_layer_sizes : int or sequence of int, default=(32,)
        Units of every hidden layer, encoder and decoder: ``(64, 16, 64)`` is a deep
        autoencoder with a 16-unit code. The code (bottleneck) is the narrowest hidden
        layer, the first of them on a tie; the encoder is the hidden layers up to and
        including the code (``code_layer_``). At least one hidden layer is required.
    activation : {'identity', 'logistic', 'tanh', 'relu'}, default='relu'
        Activation of the hidden layers. ``'identity'`` with no penalty gives a linear
        autoencoder, which learns the principal subspace of ``X`` (PCA).
    out_activation : {'identity', 'logistic'}, default='identity'
        Activation of the reconstruction layer (``'logistic'`` for data in [0, 1]). The
        loss is the squared error against the clean input either way.
    sparsity : {None, 'l1', 'kl'}, default=None
        Activity penalty on the penalized hidden layers ``k``:
        ``'l1'`` adds ``sparsity_weight * mean_i sum_k sum_j |o^k_ij|``;
        ``'kl'`` adds ``sparsity_weight * sum_k sum_j KL(rho || rho_hat^k_j)``, with
        ``rho = sparsity_target`` and ``rho_hat^k_j`` the batch mean activation of unit j
        (once per batch, not averaged again). KL needs units in (0, 1):
        ``activation='logistic'``.
    sparsity_weight : float, default=0.1
        lambda (L1) or beta (KL), >= 0.
    sparsity_target : float, default=0.05
        rho of the KL penalty, in (0, 1).
    noise : {None, 'mask', 'gaussian'}, default=None
        Corruption of the network's input during training (denoising autoencoder):
        ``'mask'`` zeroes each entry with probability ``noise_level``; ``'gaussian'`` adds
        ``noise_level * N(0, 1)``. Fresh noise every epoch, drawn by the kernels'
        counter-based generator from a seed that ``random_state`` gives once per fit
        (after the weights, so the initialisation is the one without noise; kept by
        ``warm_start`` and ``partial_fit``, whose epochs continue the count). With
        ``solver='lbfgs'`` one corruption is drawn for the whole fit.
    noise_level : float, default=0.2
        Masking probability in [0, 1), or the Gaussian sigma (>= 0).
    contraction_weight : float, default=0.0
        lambda of the contractive penalty ``lambda * mean_i sum_k ||d o^k / d x (x_i)||_F^2``
        over the penalized layers, exact for any encoder depth; 0 switches it off.
    penalized_layers : {'all', 'code'}, default='all'
        Layers the sparsity and contractive penalties apply to: every hidden layer of the
        encoder (the lecture's sums over k), or only the code layer. Decoder layers are
        never penalized.
"""

_AUTOENCODER_ATTRIBUTES_DOC = """
    code_layer_ : int
        Index of the code layer in ``[input, *hidden layers, output]`` (1 for one hidden
        layer); ``transform`` returns its activations.
    reconstruction_loss_curve_ : list of float
        The reconstruction part of ``loss_curve_`` per epoch (sgd, adam):
        ``0.5 * mean_i sum_j (x_ij - p_ij)^2`` averaged over the epoch's batches as
        ``loss_curve_``.
    penalty_curve_ : list of float
        The rest of ``loss_curve_`` per epoch: L2 (``alpha``) plus the sparsity and
        contractive penalties; ``loss_curve_ = reconstruction_loss_curve_ +
        penalty_curve_``. Neither curve exists with ``solver='lbfgs'`` (nor does
        ``loss_curve_``), as in scikit-learn.
"""


def _solver_parameters_doc():
    """MLPRegressor's parameter docs from ``solver`` on (shared text, one source)."""
    from .mlp import _PARAMETERS_DOC

    return _PARAMETERS_DOC[_PARAMETERS_DOC.index("    solver :"):]


def _class_doc(summary, example, defaults=()):
    """The numpydoc docstring of an autoencoder class; ``defaults`` are its own defaults."""
    parameters = _AUTOENCODER_PARAMETERS_DOC.strip("\n") + "\n"
    for name, value in dict(defaults).items():
        parameters = re.sub(rf"^(    {name} : .*default=).*$", rf"\g<1>{value!r}", parameters,
                            flags=re.MULTILINE)
    return (
        summary
        + "\n\n    Parameters\n    ----------\n"
        + parameters
        + _solver_parameters_doc()
        + "\n    Attributes\n    ----------\n"
        + _AUTOENCODER_ATTRIBUTES_DOC.strip("\n") + "\n"
        + _ATTRIBUTES_DOC.replace(
            "Objective (data loss + L2)", "Objective (reconstruction + L2 + penalties)"
        )
        + "\n    Examples\n    --------\n"
        + example
    )


class Autoencoder(_BaseMLP):
    _estimator_type = "transformer"
    _scalar_attributes = _BaseMLP._scalar_attributes + (
        "code_layer_", "reconstruction_loss_curve_", "penalty_curve_", "_noise_seed",
    )

    def __init__(
        self,
        hidden_layer_sizes=(32,),
        activation="relu",
        *,
        out_activation="identity",
        sparsity=None,
        sparsity_weight=0.1,
        sparsity_target=0.05,
        noise=None,
        noise_level=0.2,
        contraction_weight=0.0,
        penalized_layers="all",
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
        self.out_activation = out_activation
        self.sparsity = sparsity
        self.sparsity_weight = sparsity_weight
        self.sparsity_target = sparsity_target
        self.noise = noise
        self.noise_level = noise_level
        self.contraction_weight = contraction_weight
        self.penalized_layers = penalized_layers

    # ------------------------------------------------------- hooks of BaseNetwork

    def _validate_extra_params(self):
        if not self._hidden_layer_sizes():
            raise ValueError(
                "An autoencoder needs at least one hidden layer (the code); got "
                f"hidden_layer_sizes={self.hidden_layer_sizes!r}."
            )
        check_option("out_activation", self.out_activation, _OUT_ACTIVATIONS)
        check_option("sparsity", self.sparsity, _SPARSITIES)
        check_scalar("sparsity_weight", self.sparsity_weight, float, low=0)
        check_scalar("sparsity_target", self.sparsity_target, float, low=0, high=1,
                     closed="neither")
        check_option("noise", self.noise, tuple(_codes.NOISES))
        if self.noise == "mask":
            check_scalar("noise_level", self.noise_level, float, low=0, high=1, closed="left")
        else:
            check_scalar("noise_level", self.noise_level, float, low=0)
        check_scalar("contraction_weight", self.contraction_weight, float, low=0)
        check_option("penalized_layers", self.penalized_layers, _PENALIZED_LAYERS)
        if self.sparsity == "kl" and self.activation != "logistic":
            raise ValueError(
                "The KL sparsity penalty compares mean activations with sparsity_target, "
                "so the hidden units must take values in (0, 1): use activation='logistic' "
                f"(got activation={self.activation!r}), or sparsity='l1'."
            )

    def _prepare_targets(self, X, y, reset, incremental):
        return X  # the target of an autoencoder is its (clean) input

    def _output(self):
        return self.out_activation, "squared_error"

    def _validation_score(self, X, Y, sample_weight):
        return self._score_checked(X, sample_weight)

    def _penalty_arguments(self, layer_units, random_state, reset):
        sizes = list(layer_units[1:-1])
        self.code_layer_ = int(np.argmin(sizes)) + 1  # argmin: the first on a tie
        penalized = np.zeros(len(sizes), dtype=np.int64)
        if self.sparsity is not None or self.contraction_weight > 0:
            if self.penalized_layers == "all":
                penalized[: self.code_layer_] = 1
            else:
                penalized[self.code_layer_ - 1] = 1
        # The seed is drawn after the weights and only when noise is on, so that the
        # initialisation and the shuffling are those of MLPRegressor(X, X) otherwise.
        if self.noise is None:
            self._noise_seed = None
        elif reset or getattr(self, "_noise_seed", None) is None:
            self._noise_seed = int(random_state.randint(np.iinfo(np.int32).max))
        return {
            "l1_weight": float(self.sparsity_weight) if self.sparsity == "l1" else 0.0,
            "kl_weight": float(self.sparsity_weight) if self.sparsity == "kl" else 0.0,
            "kl_target": float(self.sparsity_target),
            "contraction_weight": float(self.contraction_weight),
            "penalized": penalized,
            "noise": _codes.NOISES[self.noise],
            "noise_level": float(self.noise_level),
            "noise_seed": self._noise_seed or 0,
        }

    def _reset_loss_parts(self):
        if self.solver in _STOCHASTIC_SOLVERS:
            self.reconstruction_loss_curve_ = []
            self.penalty_curve_ = []
        else:
            self.__dict__.pop("reconstruction_loss_curve_", None)
            self.__dict__.pop("penalty_curve_", None)

    def _record_loss_parts(self, data_loss, penalty):
        self.reconstruction_loss_curve_.append(data_loss)
        self.penalty_curve_.append(penalty)

    def _tags(self, tags):
        tags.input_tags.sparse = False

    # ------------------------------------------------------------ public methods

    def fit(self, X, y=None, sample_weight=None):
        """Train the autoencoder to reconstruct ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 stays float32, anything else becomes float64.
        y : None
            Ignored (unsupervised); accepted for pipelines.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples in the loss and in the batch means of the penalties.

        Returns
        -------
        self
        """
        return self._fit(X, None, sample_weight, incremental=False)

    @available_if(_BaseMLP._check_solver)
    def partial_fit(self, X, y=None, sample_weight=None):
        """One epoch over ``X``, keeping the optimiser state (and noise seed) between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        return self._fit(X, None, sample_weight, incremental=True)

    def fit_transform(self, X, y=None, sample_weight=None):
        """``fit(X)`` then ``transform(X)``: the code of the training data."""
        return self.fit(X, y, sample_weight).transform(X)

    def transform(self, X):
        """Encode: the activations of the code layer, shape (n_samples, code width)."""
        return self._forward(self._check_predict_input(X), 0, self.code_layer_)

    def inverse_transform(self, Z):
        """Decode codes ``Z`` (n_samples, code width) into reconstructions of the input.

        Parameters
        ----------
        Z : array-like of shape (n_samples, code width)

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
        """
        check_is_fitted(self, "_params")
        Z = check_array(Z, name="Z", dtype=self._params.dtype)
        width = int(self._layer_units[self.code_layer_])
        if Z.shape[1] != width:
            raise ValueError(
                f"Z has {Z.shape[1]} columns but the code layer has {width} units."
            )
        return self._forward(Z, self.code_layer_, self.n_layers_ - 1)

    def predict(self, X):
        """The reconstruction of ``X`` (decode(encode(X))), shape (n_samples, n_features)."""
        return self._forward(self._check_predict_input(X))

    def score(self, X, y=None, sample_weight=None):
        """Minus the mean squared reconstruction error (higher is better).

        ``-sum_i s_i mean_j (x_ij - p_ij)^2 / sum_i s_i``: the mean over all entries of
        ``X`` (over samples and features), each sample weighted by ``s_i`` (1 by default),
        with ``p = predict(X)`` reconstructed from the clean input. Note that the
        training loss ``reconstruction_loss_curve_`` is ``0.5 * mean_i sum_j`` instead,
        i.e. ``n_features / 2`` times this error.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        float
        """
        X = self._check_predict_input(X)
        weights = check_sample_weight(sample_weight, X.shape[0], np.float64)
        return self._score_checked(X, weights)

    def _score_checked(self, X, sample_weight):
        errors = (X - self._forward(X)).astype(np.float64) ** 2
        return -float(np.average(errors.mean(axis=1), weights=sample_weight))

    def get_feature_names_out(self, input_features=None):
        """Names of the code units: ``'<classname>0'``, ``'<classname>1'``, ..."""
        check_is_fitted(self, "_params")
        prefix = type(self).__name__.lower()
        width = int(self._layer_units[self.code_layer_])
        return np.asarray([f"{prefix}{i}" for i in range(width)], dtype=object)


Autoencoder.__doc__ = _class_doc(
    """Autoencoder trained by backpropagation: ``fit(X)`` learns to reconstruct ``X``.

    The objective on a batch (sample weights ``s_i``, ``S = sum_i s_i``) is
    ``(1/S) sum_i s_i 0.5 ||x_i - p(x~_i)||^2 + alpha/(2S) ||W||^2`` plus the chosen
    penalties (``sparsity``, ``contraction_weight``), where ``x~`` is the corrupted input
    (``noise``) and ``p`` the reconstruction. All options combine: a sparse denoising
    contractive autoencoder is legal. With no penalty and no noise it is
    ``MLPRegressor(...).fit(X, X)`` (same initialisation and trajectory).""",
    """    >>> import numpy as np
    >>> from fastnn import Autoencoder
    >>> X = np.random.default_rng(0).random((100, 8))
    >>> ae = Autoencoder((3,), solver="lbfgs", random_state=0).fit(X)
    >>> ae.transform(X).shape, ae.inverse_transform(ae.transform(X)).shape
    ((100, 3), (100, 8))
""",
)


def _init_with_defaults(**defaults):
    """An ``__init__`` with ``Autoencoder``'s parameters but other defaults.

    Its signature (which ``get_params`` / ``clone`` read) shows the new defaults; the
    parameters are stored verbatim by ``Autoencoder.__init__``.
    """
    base = inspect.signature(Autoencoder.__init__)
    signature = base.replace(parameters=[
        parameter.replace(default=defaults.pop(name, parameter.default))
        for name, parameter in base.parameters.items()
    ])
    if defaults:
        raise TypeError(f"unknown parameters {sorted(defaults)}")

    def __init__(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        Autoencoder.__init__(*bound.args, **bound.kwargs)

    __init__.__signature__ = signature
    return __init__


_SPARSE_DEFAULTS = {"activation": "logistic", "sparsity": "kl", "sparsity_weight": 1.0,
                    "sparsity_target": 0.05}
_DENOISING_DEFAULTS = {"noise": "mask", "noise_level": 0.2}
_CONTRACTIVE_DEFAULTS = {"activation": "logistic", "contraction_weight": 0.1}


class SparseAutoencoder(Autoencoder):
    __init__ = _init_with_defaults(**_SPARSE_DEFAULTS)


SparseAutoencoder.__doc__ = _class_doc(
    """Sparse autoencoder: ``Autoencoder`` with a KL sparsity penalty by default.

    Defaults that differ from ``Autoencoder``: ``activation='logistic'`` (KL needs units
    in (0, 1)), ``sparsity='kl'``, ``sparsity_weight=1.0`` (beta), ``sparsity_target=0.05``
    (rho). The mean activation of each code unit is pulled towards rho.""",
    """    >>> import numpy as np
    >>> from fastnn import SparseAutoencoder
    >>> X = np.random.default_rng(0).random((100, 8))
    >>> SparseAutoencoder((16,), max_iter=5, random_state=0).fit(X).transform(X).shape
    (100, 16)
""",
    _SPARSE_DEFAULTS,
)


class DenoisingAutoencoder(Autoencoder):
    __init__ = _init_with_defaults(**_DENOISING_DEFAULTS)


DenoisingAutoencoder.__doc__ = _class_doc(
    """Denoising autoencoder: ``Autoencoder`` trained on masked inputs by default.

    Defaults that differ from ``Autoencoder``: ``noise='mask'``, ``noise_level=0.2`` (each
    input entry is zeroed with probability 0.2, new entries every epoch); the loss is
    measured against the clean input.""",
    """    >>> import numpy as np
    >>> from fastnn import DenoisingAutoencoder
    >>> X = np.random.default_rng(0).random((100, 8))
    >>> DenoisingAutoencoder((4,), max_iter=5, random_state=0).fit(X).predict(X).shape
    (100, 8)
""",
    _DENOISING_DEFAULTS,
)


class ContractiveAutoencoder(Autoencoder):
    __init__ = _init_with_defaults(**_CONTRACTIVE_DEFAULTS)


ContractiveAutoencoder.__doc__ = _class_doc(
    """Contractive autoencoder: ``Autoencoder`` with the Jacobian penalty by default.

    Defaults that differ from ``Autoencoder``: ``activation='logistic'``,
    ``contraction_weight=0.1`` (lambda of ``lambda * mean_i ||d code / d x (x_i)||_F^2``,
    exact, summed over the encoder's layers).""",
    """    >>> import numpy as np
    >>> from fastnn import ContractiveAutoencoder
    >>> X = np.random.default_rng(0).random((100, 8))
    >>> ContractiveAutoencoder((4,), max_iter=5, random_state=0).fit(X).transform(X).shape
    (100, 4)
""",
    _CONTRACTIVE_DEFAULTS,
)
