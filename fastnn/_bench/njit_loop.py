"""A peer, not a fastnn backend: the straightforward ``@njit`` online-SGD loop for W2.

Issue 3 asks the Cython backend to beat "a straightforward ``@njit`` epoch loop" by 3x on
W2 (sonar, 60-32-1, tanh hidden, logistic output, binary log loss, batch 1). This is that
loop, written the way a user would write it: explicit loops, one sample at a time, the
same arithmetic as backpropagation with ``delta = p - y``. It is deliberately not the
fastnn Numba backend (``fastnn._kernels_numba``), which follows the kernel contract.
"""

import functools
import math

import numpy as np


def _online_epoch(W1, b1, W2, b2, X, y, order, learning_rate, eps):
    """One epoch of batch-1 SGD on a one-hidden-layer tanh network with a logistic output.

    ``W1`` (n_features, n_hidden), ``b1`` (n_hidden,), ``W2`` (n_hidden, 1), ``b2`` (1,),
    ``y`` (n_samples, 1) in {0, 1}; parameters are updated in place. Returns the summed
    binary log loss of the samples (before each one's update), as scikit-learn reports it.
    """
    n_features, n_hidden = W1.shape
    hidden = np.empty(n_hidden, dtype=W1.dtype)
    hidden_delta = np.empty(n_hidden, dtype=W1.dtype)
    loss = 0.0
    for i in order:
        x = X[i]
        for j in range(n_hidden):
            hidden[j] = b1[j]
        for k in range(n_features):
            for j in range(n_hidden):
                hidden[j] += x[k] * W1[k, j]
        z = b2[0]
        for j in range(n_hidden):
            hidden[j] = math.tanh(hidden[j])
            z += hidden[j] * W2[j, 0]
        p = 1.0 / (1.0 + math.exp(-z))
        clipped = min(max(p, eps), 1.0 - eps)
        target = y[i, 0]
        loss -= target * math.log(clipped) + (1.0 - target) * math.log(1.0 - clipped)
        delta = p - target
        for j in range(n_hidden):
            hidden_delta[j] = delta * W2[j, 0] * (1.0 - hidden[j] * hidden[j])
            W2[j, 0] -= learning_rate * delta * hidden[j]
            b1[j] -= learning_rate * hidden_delta[j]
        b2[0] -= learning_rate * delta
        for k in range(n_features):
            for j in range(n_hidden):
                W1[k, j] -= learning_rate * hidden_delta[j] * x[k]
    return loss


@functools.lru_cache(maxsize=1)
def compiled_epoch():
    """The epoch loop compiled by Numba (imported here, only when this peer runs)."""
    import numba

    return numba.njit(cache=False, fastmath=False)(_online_epoch)


def supports(workload):
    """Reason this loop cannot run ``workload``, or None (it is written for W2's shape)."""
    if (
        workload.batch_size != 1
        or len(workload.hidden) != 1
        or workload.activation != "tanh"
        or workload.output_activation != "logistic"
        or workload.loss != "binary_log_loss"
    ):
        return "the plain @njit loop is written for W2's shape only (tanh, logistic, batch 1)"
    return None
