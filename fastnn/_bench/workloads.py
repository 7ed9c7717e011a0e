"""The workloads W1-W6 of SPEC section 5 and the problems (data + start point) they train.

A :class:`Workload` says what is trained; :func:`make_problem` builds the data, the
initial parameters and the per-epoch sample orders that every implementation shares, so
that they all do the same work and follow the same trajectory:

- the initial weights are scikit-learn's (``fastnn._network.glorot_uniform_init`` with
  ``RandomState(SEED)``), and the epoch orders are the ones scikit-learn's
  ``MLPClassifier(random_state=SEED, shuffle=True)`` draws next from the same generator;
  scikit-learn is therefore given only ``random_state=SEED`` and ends where the others do;
- the perceptron (W1) does not shuffle (``shuffle=False``): scikit-learn's shuffle inside
  ``_plain_sgd`` is its own generator, which the others cannot reproduce.

Data: sonar and MNIST come from ``fastnn.datasets``. Only MNIST's 10,000 test images are
available, so the 20,000 x 784 set of W4-W6 is those images stacked twice (exact
duplicates; fine for measuring throughput). W3 uses scikit-learn's digits, or a synthetic
1797 x 64 stand-in of the same shape when scikit-learn is missing (``Problem.note`` says
so). W1 is a synthetic linearly separable set with a margin.
"""

import functools
from dataclasses import dataclass, field

import numpy as np

from .. import _network

SEED = 0
MNIST_COPIES = 2  # 10,000 MNIST test images stacked twice -> 20,000 x 784


@dataclass(frozen=True)
class Workload:
    """What one benchmark trains (SPEC section 5).

    ``epochs`` are the timed epochs of a full run, ``quick_epochs`` and ``quick_samples``
    those of ``--quick``; ``reference_epochs`` caps the epochs of the slow NumPy reference,
    whose samples/s are measured on that many epochs.
    """

    id: str
    name: str
    dataset: str
    hidden: tuple
    activation: str
    output_activation: str
    loss: str
    batch_size: int
    learning_rate: float
    epochs: int
    quick_epochs: int
    reference_epochs: int
    quick_samples: int = None
    autoencoder: bool = False

    @property
    def is_perceptron(self):
        return self.loss == "perceptron"


WORKLOADS = {
    w.id: w
    for w in (
        Workload("W1", "perceptron", "separable", (), "identity", "identity", "perceptron",
                 batch_size=1, learning_rate=1.0, epochs=5, quick_epochs=2,
                 reference_epochs=1, quick_samples=20000),
        Workload("W2", "sonar-online", "sonar", (32,), "tanh", "logistic", "binary_log_loss",
                 batch_size=1, learning_rate=0.01, epochs=50, quick_epochs=10,
                 reference_epochs=10),
        Workload("W3", "digits", "digits", (64,), "relu", "softmax", "log_loss",
                 batch_size=32, learning_rate=0.01, epochs=20, quick_epochs=3,
                 reference_epochs=5),
        Workload("W4", "mnist-small-batch", "mnist20k", (256, 128), "relu", "softmax",
                 "log_loss", batch_size=64, learning_rate=0.01, epochs=2, quick_epochs=1,
                 reference_epochs=1, quick_samples=4000),
        Workload("W5", "mnist-large-batch", "mnist20k", (256, 128), "relu", "softmax",
                 "log_loss", batch_size=512, learning_rate=0.01, epochs=2, quick_epochs=1,
                 reference_epochs=1, quick_samples=4000),
        # MLPRegressor(X, X): identity output, squared error against the input.
        Workload("W6", "autoencoder", "mnist20k", (64,), "logistic", "identity",
                 "squared_error", batch_size=128, learning_rate=0.01, epochs=2,
                 quick_epochs=1, reference_epochs=1, quick_samples=4000, autoencoder=True),
    )
}


def parse_ids(text):
    """``"W2,W5"`` -> ``["W2", "W5"]`` (case-insensitive); a clear error on unknown ids."""
    ids = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [i for i in ids if i not in WORKLOADS]
    if unknown or not ids:
        raise ValueError(
            f"Unknown workload(s) {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(WORKLOADS)}."
        )
    return ids


def flops_per_sample(layer_units, perceptron=False):
    """FLOPs one training sample needs: 2 x the multiply-adds actually required.

    Forward of every layer, weight gradients of every layer, input deltas of every layer
    but the first (nobody needs the gradient with respect to the data). The perceptron
    counts its forward dot product only: its update touches the weights only on mistakes.
    """
    sizes = [int(fan_in) * int(fan_out) for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:])]
    if perceptron:
        return 2 * sizes[0]
    return 2 * (2 * sum(sizes) + sum(sizes[1:]))


@dataclass
class Problem:
    """Data and start point shared by every implementation of one workload run.

    ``X`` and ``Y`` are float64 (runners cast them); ``Y`` is one-hot / 0-1 / the input
    for networks and +-1 for the perceptron, with ``labels`` the integer targets;
    ``initial_params`` is the flat float64 buffer (``coef`` then ``intercept`` for the
    perceptron); ``orders[e]`` is the sample order of timed epoch ``e`` (0-based).
    """

    workload: Workload
    X: np.ndarray
    Y: np.ndarray
    labels: np.ndarray
    layer_units: np.ndarray
    initial_params: np.ndarray
    orders: list
    epochs: int
    note: str = ""
    flops: int = field(init=False)
    _copies: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self):
        self.flops = flops_per_sample(self.layer_units, self.workload.is_perceptron)

    def arrays(self, dtype):
        """``(X, Y)`` cast to ``dtype``: writable C-ordered copies (PyTorch refuses to wrap
        read-only arrays), one pair per dtype shared by every runner. Every implementation
        then reads the same memory, so how separate copies would have been placed (page
        backing, alignment) does not enter a memory-bound comparison such as W1's. An
        autoencoder's Y is its X, one array (as ``Autoencoder.fit`` passes it)."""
        dtype = np.dtype(dtype)
        if dtype not in self._copies:
            X = np.array(self.X, dtype=dtype, order="C")
            Y = X if self.workload.autoencoder else np.array(self.Y, dtype=dtype, order="C")
            self._copies[dtype] = (X, Y)
        return self._copies[dtype]

    @property
    def n_samples(self):
        return self.X.shape[0]


def _separable(n_samples, n_features, seed):
    """Linearly separable +-1 data with margin: labels of a random hyperplane, the points
    within 0.1 of it pushed away, so the perceptron converges within a few epochs."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n_samples, n_features))
    normal = rng.standard_normal(n_features)
    normal /= np.linalg.norm(normal)
    distance = X @ normal
    labels = np.where(distance >= 0, 1, 0)
    too_close = np.abs(distance) < 0.1
    X[too_close] += np.outer(np.where(labels[too_close] == 1, 0.1, -0.1), normal)
    return X, labels


def _synthetic_digits(seed):
    """A 1797 x 64 stand-in for digits (values 0..16, 10 classes) when sklearn is missing."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, 1797)
    centres = rng.uniform(0, 16, (10, 64))
    X = np.clip(centres[labels] + rng.normal(0, 3, (1797, 64)), 0, 16)
    return X, labels


@functools.lru_cache(maxsize=8)
def _dataset(name, data_dir):
    """``(X, labels, note)`` of a workload's data set, float64, features scaled to ~[0, 1]."""
    from .. import datasets

    if name == "separable":
        X, labels = _separable(100000, 100, SEED)
        return X, labels, "synthetic linearly separable 100000 x 100"
    if name == "sonar":
        X, labels = datasets.load_sonar(data_dir=data_dir)
        return X, labels, ""
    if name == "digits":
        try:
            X, labels = datasets.load_digits()
            note = ""
        except ModuleNotFoundError:
            X, labels = _synthetic_digits(SEED)
            note = "scikit-learn missing: synthetic 1797 x 64 stand-in for digits"
        return X / 16.0, labels, note
    if name == "mnist20k":
        X, labels = datasets.load_mnist(data_dir=data_dir)
        X = np.vstack([X] * MNIST_COPIES)
        labels = np.concatenate([labels] * MNIST_COPIES)
        return X, labels, f"MNIST t10k images stacked {MNIST_COPIES}x"
    raise ValueError(f"unknown data set {name!r}")


def _targets(workload, X, labels):
    if workload.is_perceptron:
        return np.where(labels == 1, 1.0, -1.0).reshape(-1, 1)
    if workload.autoencoder:
        return X
    classes = np.unique(labels)
    if len(classes) == 2:  # binary: one logistic output unit, as scikit-learn
        return (labels == classes[1]).astype(np.float64).reshape(-1, 1)
    return (labels[:, None] == classes[None, :]).astype(np.float64)


def _sklearn_orders(random_state, n_samples, epochs):
    """The orders ``MLP*._fit_stochastic`` draws: each epoch shuffles the previous order."""
    order = np.arange(n_samples, dtype=np.int64)
    orders = []
    for _ in range(epochs):
        permutation = np.arange(n_samples)
        random_state.shuffle(permutation)
        order = order[permutation]
        orders.append(order)
    return orders


@functools.lru_cache(maxsize=16)
def make_problem(workload_id, quick=False, epochs=None, data_dir=None):
    """The shared :class:`Problem` of a workload (cached: every runner gets the same one).

    Parameters
    ----------
    workload_id : str
        ``"W1"`` .. ``"W6"``.
    quick : bool
        Use the workload's quick sample count and epochs.
    epochs : int, optional
        Override the number of timed epochs.
    data_dir : str, optional
        Directory of the sonar / MNIST files (see ``fastnn.datasets``).
    """
    workload = WORKLOADS[workload_id]
    X, labels, note = _dataset(workload.dataset, data_dir)
    if quick and workload.quick_samples:
        X, labels = X[: workload.quick_samples], labels[: workload.quick_samples]
    X = np.ascontiguousarray(X, dtype=np.float64)
    Y = np.ascontiguousarray(_targets(workload, X, labels))
    if epochs is None:
        epochs = workload.quick_epochs if quick else workload.epochs
    units = _network.as_layer_units(X.shape[1], workload.hidden, Y.shape[1])
    random_state = np.random.RandomState(SEED)
    if workload.is_perceptron:
        params = np.zeros(X.shape[1] + 1)
        orders = [np.arange(X.shape[0], dtype=np.int64)] * epochs
    else:
        params = _network.glorot_uniform_init(units, workload.activation, random_state, np.float64)
        orders = _sklearn_orders(random_state, X.shape[0], epochs)
    for array in (X, Y, params, *orders):
        array.flags.writeable = False  # shared by every runner: nobody may train in place
    return Problem(workload, X, Y, labels, units, params, orders, epochs, note)
