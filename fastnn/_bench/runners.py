"""One runner per implementation: same data, start point, optimiser and epochs for all.

A runner is built for one (problem, dtype, threads) and used as::

    runner.warm_up()   # untimed: imports, JIT, thread pools, one epoch on a throwaway copy
    runner.reset()     # untimed: back to the shared initial parameters
    runner.train()     # timed: ``runner.epochs`` epochs, records ``runner.curve``

inside ``runner.threads()`` (BLAS pools and torch limited to ``threads``). ``curve`` maps an
epoch number (1-based) to the value the same-work check compares: the mean training loss
of that epoch for networks (what scikit-learn's ``loss_curve_`` holds), the norm of the
weights after it for the perceptron. ``converged_at`` is the first perceptron epoch without
an update (later epochs cannot change anything: the order is fixed).

Optimiser everywhere: plain SGD (no momentum, no L2, constant learning rate).
"""

import contextlib
import time
import warnings

import numpy as np

from .. import _backend, _codes
from .._network import read_only
from . import machine, njit_loop

FASTNN_IMPLS = ("cython", "numba", "numpy")
PEER_IMPLS = ("sklearn", "torch", "njit-loop")
IMPLS = FASTNN_IMPLS + PEER_IMPLS
# The NumPy reference counts as a peer too (SPEC section 5), and it is the oracle.
PEERS = ("numpy",) + PEER_IMPLS


class Runner:
    """Common part: the problem's arrays cast to ``dtype``, timing and thread limits."""

    impl = None

    def __init__(self, problem, dtype, threads):
        self.problem = problem
        self.workload = problem.workload
        self.dtype = np.dtype(dtype)
        self.n_threads = threads
        self.epochs = problem.epochs
        self.X, self.Y = problem.arrays(self.dtype)
        self.curve = {}
        self.converged_at = None
        self.seconds = None

    @classmethod
    def unavailable(cls, workload):
        """Why this implementation cannot run ``workload`` here, or None."""
        return None

    @contextlib.contextmanager
    def threads(self):
        with machine.thread_limit(self.n_threads):
            yield

    def warm_up(self):
        raise NotImplementedError

    def reset(self):
        raise NotImplementedError

    def _train(self):
        raise NotImplementedError

    def train(self):
        """Train ``self.epochs`` epochs from the current parameters; returns the seconds."""
        self.curve = {}
        self.converged_at = None
        start = time.perf_counter()
        self._train()
        self.seconds = time.perf_counter() - start
        return self.seconds


class FastnnRunner(Runner):
    """fastnn's kernels (docs/kernels.md) called directly, one ``sgd_epoch`` or
    ``perceptron_epoch`` per epoch: the whole-epoch speed of a backend, without the
    estimators' per-fit validation."""

    backend = None

    def __init__(self, problem, dtype, threads):
        super().__init__(problem, dtype, threads)
        self.kernels = _backend.kernels(self.backend)
        w = self.workload
        # The inputs read-only once, as the estimators pass them (_network.read_only).
        self.X, self.Y = read_only(self.X), read_only(self.Y)
        self.sample_weight = read_only(np.ones(self.X.shape[0], dtype=self.dtype))
        self.orders = [read_only(order) for order in problem.orders]
        if not w.is_perceptron:
            self.layer_units = read_only(np.asarray(problem.layer_units, dtype=np.int64))
            self.workspace = self.kernels.make_workspace(
                self.layer_units, w.batch_size, self.dtype, False)
            self.codes = (_codes.ACTIVATIONS[w.activation],
                          _codes.ACTIVATIONS[w.output_activation], _codes.LOSSES[w.loss])
            self.penalized = read_only(
                np.zeros(len(problem.layer_units) - 2, dtype=np.int64))
        self.reset()

    @classmethod
    def unavailable(cls, workload):
        if _backend._load(cls.backend) is None:
            return f"{cls.backend} backend unavailable: {_backend._import_errors.get(cls.backend)}"
        return None

    def reset(self):
        params = _aligned_copy(self.problem.initial_params, self.dtype)
        if self.workload.is_perceptron:
            self.coef = np.ascontiguousarray(params[:-1].reshape(1, -1))
            self.intercept = params[-1:].copy()
            self.n_updates = np.zeros(1, dtype=np.int64)
        else:
            self.params = params
            self.velocity = np.zeros_like(params)
            self.second_moment = np.zeros_like(params)

    def warm_up(self):
        self._epoch(0, 0)
        self.reset()

    def _epoch(self, epoch, order_index):
        order = self.orders[order_index]
        if self.workload.is_perceptron:
            ones = np.ones(1, dtype=self.dtype)
            ok = self.kernels.perceptron_epoch(
                self.coef, self.intercept, self.X, self.Y, self.sample_weight, order,
                np.ones(1, dtype=np.int64), self.workload.learning_rate, True, 0.0, 0.0,
                ones, ones, np.zeros(1, dtype=self.dtype), np.zeros_like(self.coef),
                self.n_updates, np.zeros(1))
            return None, ok
        hidden, output, loss = self.codes
        loss_sum, _, ok = self.kernels.sgd_epoch(
            self.params, self.layer_units, hidden, output, loss, self.X, self.Y,
            self.sample_weight, order, self.workload.batch_size, _codes.SGD,
            self.workload.learning_rate, 0.0, False, 0.9, 0.999, 1e-8, 0, self.velocity,
            self.second_moment, 0.0, 0.0, 0.0, 0.05, 0.0, self.penalized, _codes.NO_NOISE,
            0.0, 0, epoch, self.workspace)
        return loss_sum / len(order), ok

    def _train(self):
        for epoch in range(self.epochs):
            updates_before = int(self.n_updates.sum()) if self.workload.is_perceptron else 0
            mean_loss, ok = self._epoch(epoch, epoch)
            if not ok:
                raise FloatingPointError(
                    f"{self.impl} diverged on {self.workload.id} (non-finite loss or weights)")
            if self.workload.is_perceptron:
                self.curve[epoch + 1] = float(np.hypot(np.linalg.norm(self.coef),
                                                       np.linalg.norm(self.intercept)))
                if self.converged_at is None and int(self.n_updates.sum()) == updates_before:
                    self.converged_at = epoch + 1
            else:
                self.curve[epoch + 1] = mean_loss


class CythonRunner(FastnnRunner):
    impl = backend = "cython"


class NumbaRunner(FastnnRunner):
    impl = backend = "numba"


class NumpyRunner(FastnnRunner):
    """The reference: slow on purpose, so timed on ``reference_epochs`` epochs only."""

    impl = backend = "numpy"

    def __init__(self, problem, dtype, threads):
        super().__init__(problem, dtype, threads)
        self.epochs = min(problem.epochs, problem.workload.reference_epochs)


def _import_or_reason(module, extra):
    try:
        __import__(module)
    except ImportError:
        return f"{module} not installed (pip install {extra})"
    return None


class SklearnRunner(Runner):
    """scikit-learn's own ``fit``: ``Perceptron`` (W1), ``MLPClassifier`` (W2-W5) and
    ``MLPRegressor(X, X)`` (W6), ``solver="sgd"``, ``max_iter`` = the epochs; given only
    ``random_state``, it draws the same initial weights and orders as the problem."""

    impl = "sklearn"

    @classmethod
    def unavailable(cls, workload):
        return _import_or_reason("sklearn", "scikit-learn")

    def _estimator(self, max_iter):
        w = self.workload
        if w.is_perceptron:
            from sklearn.linear_model import Perceptron

            return Perceptron(penalty=None, eta0=w.learning_rate, max_iter=max_iter,
                              tol=None, shuffle=False, fit_intercept=True, random_state=0)
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        estimator = MLPRegressor if w.autoencoder else MLPClassifier
        return estimator(
            hidden_layer_sizes=w.hidden, activation=w.activation, solver="sgd", alpha=0.0,
            batch_size=w.batch_size, learning_rate="constant",
            learning_rate_init=w.learning_rate, max_iter=max_iter, shuffle=True,
            random_state=0, tol=0.0, momentum=0.0, nesterovs_momentum=False,
            early_stopping=False, n_iter_no_change=max_iter + 1)

    def _fit(self, max_iter):
        estimator = self._estimator(max_iter)
        target = self.X if self.workload.autoencoder else self.problem.labels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the point
            estimator.fit(self.X, target)
        return estimator

    def warm_up(self):
        self._fit(1)

    def reset(self):
        pass  # every fit starts from random_state's initial weights

    def _train(self):
        estimator = self._fit(self.epochs)
        if self.workload.is_perceptron:
            self.curve[self.epochs] = float(np.hypot(np.linalg.norm(estimator.coef_),
                                                     np.linalg.norm(estimator.intercept_)))
            return
        # scikit-learn's squared loss is averaged over the outputs too; fastnn's and
        # PyTorch's are summed over them (SPEC section 3), so scale to compare.
        scale = self.Y.shape[1] if self.workload.loss == "squared_error" else 1
        for epoch, value in enumerate(estimator.loss_curve_, start=1):
            self.curve[epoch] = float(value) * scale


class TorchRunner(Runner):
    """A standard PyTorch CPU loop: ``nn.Sequential`` + ``torch.optim.SGD``, batches cut
    from the problem's orders by hand (no DataLoader), ``torch.set_num_threads``."""

    impl = "torch"

    @classmethod
    def unavailable(cls, workload):
        if workload.is_perceptron:
            return "no standard PyTorch perceptron (W1 compares with scikit-learn)"
        return _import_or_reason("torch", "torch")

    def __init__(self, problem, dtype, threads):
        super().__init__(problem, dtype, threads)
        import torch

        self.torch = torch
        self.X_t = torch.from_numpy(self.X)
        if self.workload.loss == "log_loss":
            self.Y_t = torch.from_numpy(problem.labels.astype(np.int64))
        else:
            self.Y_t = torch.from_numpy(self.Y)
        self.orders = [torch.tensor(order) for order in problem.orders]
        self.reset()

    @contextlib.contextmanager
    def threads(self):
        previous = self.torch.get_num_threads()
        self.torch.set_num_threads(self.n_threads)
        try:
            with machine.thread_limit(self.n_threads):
                yield
        finally:
            self.torch.set_num_threads(previous)

    def reset(self):
        torch, nn = self.torch, self.torch.nn
        activation = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid,
                      "identity": nn.Identity}[self.workload.activation]
        coefs, intercepts = _unpack(self.problem)
        layers = []
        for i, (coef, intercept) in enumerate(zip(coefs, intercepts)):
            linear = nn.Linear(coef.shape[0], coef.shape[1], dtype=getattr(torch, self.dtype.name))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(coef.T.astype(self.dtype)))
                linear.bias.copy_(torch.from_numpy(intercept.astype(self.dtype)))
            layers.append(linear)
            if i < len(coefs) - 1:
                layers.append(activation())
        self.model = nn.Sequential(*layers)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.workload.learning_rate)

    def _loss(self, output, target):
        functional = self.torch.nn.functional
        if self.workload.loss == "log_loss":
            return functional.cross_entropy(output, target)
        if self.workload.loss == "binary_log_loss":
            return functional.binary_cross_entropy_with_logits(output, target)
        return 0.5 * ((output - target) ** 2).sum(dim=1).mean()

    def _epoch(self, order):
        batch_size = self.workload.batch_size
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            self.optimizer.zero_grad()
            inputs = self.X_t[batch]
            # The standard autoencoder loop: the batch is its own target.
            target = inputs if self.workload.autoencoder else self.Y_t[batch]
            loss = self._loss(self.model(inputs), target)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * len(batch)
        return total / len(order)

    def warm_up(self):
        self._epoch(self.orders[0])
        self.reset()

    def _train(self):
        for epoch in range(self.epochs):
            self.curve[epoch + 1] = self._epoch(self.orders[epoch])


class NjitLoopRunner(Runner):
    """The straightforward ``@njit`` loop of :mod:`.njit_loop` (a peer, W2 only)."""

    impl = "njit-loop"

    @classmethod
    def unavailable(cls, workload):
        return njit_loop.supports(workload) or _import_or_reason("numba", "numba")

    def __init__(self, problem, dtype, threads):
        super().__init__(problem, dtype, threads)
        self.epoch_function = njit_loop.compiled_epoch()
        self.eps = float(np.finfo(self.dtype).eps)
        self.reset()

    def reset(self):
        coefs, intercepts = _unpack(self.problem)
        # Aligned as fastnn's buffer is, so that neither side runs on split cache lines.
        self.params = [_aligned_copy(a, self.dtype).reshape(a.shape)
                       for pair in zip(coefs, intercepts) for a in pair]

    def _epoch(self, order):
        loss = self.epoch_function(*self.params, self.X, self.Y, order,
                                   self.workload.learning_rate, self.eps)
        return loss / len(order)

    def warm_up(self):
        self._epoch(self.problem.orders[0])  # compiles for this dtype
        self.reset()

    def _train(self):
        for epoch in range(self.epochs):
            self.curve[epoch + 1] = self._epoch(self.problem.orders[epoch])


def _aligned_copy(array, dtype):
    """A new vector of ``array``'s values in ``dtype``, on a cache line as the estimators'
    buffer is (fastnn._network.aligned)."""
    from .. import _network

    return _network.aligned(np.array(array, dtype=dtype).ravel())


def _unpack(problem):
    from .. import _network

    return _network.unpack(problem.initial_params, problem.layer_units)


RUNNERS = {runner.impl: runner for runner in (
    CythonRunner, NumbaRunner, NumpyRunner, SklearnRunner, TorchRunner, NjitLoopRunner)}


def parse_impls(text):
    """``"cython,sklearn"`` -> ``["cython", "sklearn"]``; a clear error on unknown names."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in RUNNERS]
    if unknown or not names:
        raise ValueError(f"Unknown implementation(s) {', '.join(unknown) or repr(text)}; "
                         f"choose from {', '.join(RUNNERS)}.")
    return names
