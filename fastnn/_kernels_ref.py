"""The NumPy reference backend: the correctness oracle of fastnn.

Every kernel of ``docs/kernels.md`` written straight from its formula, vectorised over the
rows of a batch and nothing else: no workspace, no fused loops, no tricks. The compiled
backends are tested against this module; this module is tested against finite differences
and closed-form facts (``tests/test_reference.py``).

Besides the kernels (``forward``, ``make_workspace``, ``sgd_epoch``, ``loss_and_gradient``,
``corrupt``, ``perceptron_epoch``) it exposes the building blocks they are made of, so that
each formula can be checked on its own: activations and their first and second derivatives,
the losses, the L2 term, the forward and backward passes, the L1 / KL / contractive
penalties, the counter-based noise generator and the optimiser steps.

Notation (the lecture's): layers ``k = 0 .. L``; ``o^0 = x``; ``a^k = o^{k-1} W_{k-1} +
b_{k-1}``; ``o^k = g(a^k)`` for the hidden layers ``1 .. L-1`` and ``g_o(a^L)`` for the
output. A batch has rows ``i`` with weights ``s_i`` and ``S = sum_i s_i``.

Arrays keep the dtype of their inputs (float32 or float64); sums that are returned are
Python floats accumulated in float64. Scalars are used as Python floats so that they never
promote a float32 array to float64.
"""

import math
from collections import namedtuple

import numpy as np

from fastnn._codes import (
    ADAM,
    BINARY_LOG_LOSS,
    GAUSSIAN_NOISE,
    IDENTITY,
    LOG_LOSS,
    LOGISTIC,
    MASK_NOISE,
    NO_NOISE,
    RELU,
    SGD,
    SOFTMAX,
    SQUARED_ERROR,
    TANH,
)

# --------------------------------------------------------------------------------------
# Flat parameter layout
# --------------------------------------------------------------------------------------


def layer_views(params, layer_units):
    """Views ``(coefs, intercepts)`` of the flat buffer ``params``.

    The layout is ``[W_0.ravel(), b_0, ..., W_{L-1}.ravel(), b_{L-1}]`` with ``W_i`` of shape
    ``(units[i], units[i+1])`` in C order (docs/kernels.md). Kernels derive it from
    ``layer_units`` themselves; writing into a view writes into ``params``.
    """
    coefs, intercepts = [], []
    position = 0
    for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
        fan_in, fan_out = int(fan_in), int(fan_out)
        coefs.append(params[position:position + fan_in * fan_out].reshape(fan_in, fan_out))
        position += fan_in * fan_out
        intercepts.append(params[position:position + fan_out])
        position += fan_out
    return coefs, intercepts


def _sample_weight(sample_weight, n_samples, dtype):
    """The weights ``s_i`` as an array (all ones when None)."""
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype)
    return sample_weight


def _weight_sum(sample_weight):
    """``S = sum_i s_i`` as a Python float (accumulated in float64)."""
    return float(np.sum(sample_weight, dtype=np.float64))


def _weighted_sum(sample_weight, values):
    """``sum_i s_i v_i`` as a Python float (accumulated in float64)."""
    return float(np.dot(sample_weight.astype(np.float64), values.astype(np.float64)))


# --------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------


def activation(code, a):
    """``g(a)`` for the activation ``code``, elementwise (row-wise for softmax).

    identity ``a``; logistic ``1 / (1 + exp(-a))``; tanh ``tanh(a)``; relu ``max(a, 0)``;
    softmax ``exp(a_j - max_k a_k) / sum_l exp(a_l - max_k a_k)`` over each row.
    """
    if code == IDENTITY:
        return a.copy()
    if code == LOGISTIC:
        with np.errstate(over="ignore"):  # exp(-a) = inf for very negative a gives 0
            return 1.0 / (1.0 + np.exp(-a))
    if code == TANH:
        return np.tanh(a)
    if code == RELU:
        return np.maximum(a, 0)
    if code == SOFTMAX:
        exp_shifted = np.exp(a - a.max(axis=1, keepdims=True))
        return exp_shifted / exp_shifted.sum(axis=1, keepdims=True)
    raise ValueError(f"Unknown activation code {code!r}.")


def activation_derivative(code, a):
    """``g'(a)`` elementwise.

    identity ``1``; logistic ``g (1 - g)``; tanh ``1 - tanh(a)^2``; relu ``1 if a > 0 else 0``
    (0 at the kink, as scikit-learn). Softmax is only an output activation, whose derivative
    is folded into the output delta, so it has none here.
    """
    if code == IDENTITY:
        return np.ones_like(a)
    if code == LOGISTIC:
        g = activation(LOGISTIC, a)
        return g * (1 - g)
    if code == TANH:
        t = np.tanh(a)
        return 1 - t * t
    if code == RELU:
        return (a > 0).astype(a.dtype)
    raise ValueError(f"Activation code {code!r} has no elementwise derivative.")


def activation_second_derivative(code, a):
    """``g''(a)`` elementwise (needed by the gradient of the contractive penalty).

    identity ``0``; logistic ``g (1 - g) (1 - 2 g)``; tanh ``-2 tanh(a) (1 - tanh(a)^2)``;
    relu ``0`` (almost everywhere).
    """
    if code in (IDENTITY, RELU):
        return np.zeros_like(a)
    if code == LOGISTIC:
        g = activation(LOGISTIC, a)
        return g * (1 - g) * (1 - 2 * g)
    if code == TANH:
        t = np.tanh(a)
        return -2 * t * (1 - t * t)
    raise ValueError(f"Activation code {code!r} has no elementwise second derivative.")


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def _clip_probabilities(P):
    """``P`` clipped to ``[eps, 1 - eps]``, ``eps = finfo(dtype).eps``, as scikit-learn."""
    eps = np.finfo(P.dtype).eps
    return np.clip(P, eps, 1 - eps)


def squared_error(Y, P):
    """Per-sample squared error ``loss_i = 0.5 * sum_k (y_ik - p_ik)^2``."""
    return 0.5 * np.sum((Y - P) ** 2, axis=1)


def binary_log_loss(Y, P):
    """Per-sample ``loss_i = -sum_k [y log p + (1 - y) log(1 - p)]``, ``p`` clipped."""
    P = _clip_probabilities(P)
    return -np.sum(Y * np.log(P) + (1 - Y) * np.log(1 - P), axis=1)


def log_loss(Y, P):
    """Per-sample multiclass ``loss_i = -sum_k y_ik log p_ik``, ``p`` clipped."""
    return -np.sum(Y * np.log(_clip_probabilities(P)), axis=1)


def perceptron_criterion(y, p):
    """Rosenblatt's perceptron criterion ``max(0, -y p)`` elementwise, ``y`` in {-1, +1}."""
    return np.maximum(0, -y * p)


_SAMPLE_LOSSES = {
    SQUARED_ERROR: squared_error,
    BINARY_LOG_LOSS: binary_log_loss,
    LOG_LOSS: log_loss,
}


def sample_losses(loss, Y, P):
    """Per-sample losses ``loss_i`` of the loss code ``loss`` (a vector of length n)."""
    try:
        return _SAMPLE_LOSSES[loss](Y, P)
    except KeyError:
        raise ValueError(f"Unknown network loss code {loss!r}.") from None


def data_loss(loss, Y, P, sample_weight=None):
    """Weighted mean loss ``D = (1/S) sum_i s_i loss_i`` as a Python float."""
    s = _sample_weight(sample_weight, len(Y), P.dtype)
    return _weighted_sum(s, sample_losses(loss, Y, P)) / _weight_sum(s)


def output_delta(output_activation, loss, Y, P):
    """``d loss_i / d a^L`` per sample: ``p - y`` for the canonical pairs.

    (identity, squared error), (logistic, binary log loss) and (softmax, log loss) give
    ``p - y``; (logistic, squared error) gives ``(p - y) p (1 - p)``. Any other pair is not a
    network of fastnn and raises ValueError.
    """
    canonical = {(IDENTITY, SQUARED_ERROR), (LOGISTIC, BINARY_LOG_LOSS), (SOFTMAX, LOG_LOSS)}
    if (output_activation, loss) in canonical:
        return P - Y
    if (output_activation, loss) == (LOGISTIC, SQUARED_ERROR):
        return (P - Y) * P * (1 - P)
    raise ValueError(
        f"Output activation {output_activation!r} cannot be paired with loss {loss!r}."
    )


def l2_penalty(coefs, alpha, weight_sum):
    """``alpha / (2 S) * sum_i ||W_i||_F^2`` (biases are not penalised).

    Its gradient, ``alpha W_i / S``, is added in :func:`backward_pass`.
    """
    squares = sum(float(np.sum(W.astype(np.float64) ** 2)) for W in coefs)
    return 0.5 * alpha * squares / weight_sum


# --------------------------------------------------------------------------------------
# Autoencoder penalties: value of P and its gradient dP/d(.) for one batch
# --------------------------------------------------------------------------------------


def l1_activity_penalty(o, sample_weight, weight):
    """L1 activity penalty of one hidden layer and its gradient.

    ``P = weight * (1/S) sum_i s_i sum_j |o_ij|``, ``dP/do_ij = weight * s_i / S * sign(o_ij)``.
    Returns ``(P, dP/do)``.
    """
    S = _weight_sum(sample_weight)
    value = weight * _weighted_sum(sample_weight, np.sum(np.abs(o), axis=1)) / S
    gradient = (weight / S) * sample_weight[:, None] * np.sign(o)
    return value, gradient


def kl_divergence(rho, r):
    """``KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r))`` elementwise."""
    return rho * np.log(rho / r) + (1 - rho) * np.log((1 - rho) / (1 - r))


def kl_sparsity_penalty(o, sample_weight, weight, target):
    """KL sparsity penalty of one hidden layer (units in (0, 1)) and its gradient.

    ``rho_hat_j = (1/S) sum_i s_i o_ij`` clipped to ``[eps, 1 - eps]``;
    ``P = weight * sum_j KL(rho || rho_hat_j)``;
    ``dP/do_ij = weight * (-rho / rho_hat_j + (1 - rho) / (1 - rho_hat_j)) * s_i / S``
    (the derivative is taken at the clipped value, docs/kernels.md). Returns ``(P, dP/do)``.
    """
    S = _weight_sum(sample_weight)
    rho_hat = _clip_probabilities((sample_weight @ o) / S)
    rho_hat64 = rho_hat.astype(np.float64)
    value = weight * float(np.sum(kl_divergence(target, rho_hat64)))
    d_rho_hat = -target / rho_hat + (1 - target) / (1 - rho_hat)
    gradient = (weight / S) * sample_weight[:, None] * d_rho_hat[None, :]
    return value, gradient


def encoder_jacobians(coefs, pre_activations, hidden_activation, depth):
    """Per-sample Jacobians ``J^k = d o^k / d x`` of the hidden layers ``k = 1 .. depth``.

    ``J^0 = I`` and ``J^k = diag(g'(a^k)) W_{k-1}^T J^{k-1}``, of shape ``(n, units[k],
    n_features)``. Returns ``(jacobians, linear_parts)``, lists indexed by ``k`` (entry 0 is
    None), with ``linear_parts[k] = W_{k-1}^T J^{k-1}`` so that ``jacobians[k] =
    g'(a^k)[:, :, None] * linear_parts[k]``.
    """
    n_samples = pre_activations[1].shape[0]
    jacobians, linear_parts = [None], [None]
    for k in range(1, depth + 1):
        W = coefs[k - 1]
        if k == 1:
            linear = np.broadcast_to(W.T, (n_samples, *W.T.shape))
        else:
            linear = W.T @ jacobians[k - 1]
        slopes = activation_derivative(hidden_activation, pre_activations[k])
        jacobians.append(slopes[:, :, None] * linear)
        linear_parts.append(linear)
    return jacobians, linear_parts


def contractive_penalty(coefs, pre_activations, hidden_activation, penalized, sample_weight,
                        weight):
    """Exact contractive penalty over the penalised hidden layers and its gradient.

    ``P = weight * (1/S) sum_i s_i sum_{k: penalized[k-1]} ||J^k(x_i)||_F^2`` with the
    Jacobians of :func:`encoder_jacobians`; for one layer it is the closed form
    ``sum_j g'(a_j)^2 ||W_:j||^2``. The gradient is the reverse pass through the Jacobian
    chain: with ``G^k = dP/dJ^k`` (``2 weight s_i / S J^k`` on penalised layers, plus
    ``W_k (g'(a^{k+1}) * G^{k+1})`` from the layer above),

    - ``dP/da^k = g''(a^k) * sum_d G^k M^k`` with ``M^k = W_{k-1}^T J^{k-1}``,
    - ``dP/dW_{k-1} = sum_i J^{k-1}_i (g'(a^k) * G^k_i)^T`` (at fixed ``a``).

    Returns ``(P, coef_grads, pre_activation_grads)``: ``coef_grads[i]`` is the direct
    ``dP/dW_i`` (zeros above the deepest penalised layer) and ``pre_activation_grads[k]`` is
    ``dP/da^k`` (None where there is none); backpropagation carries the latter to the
    parameters below.
    """
    penalized_layers = [k for k in range(1, len(penalized) + 1) if penalized[k - 1]]
    coef_grads = [np.zeros_like(W) for W in coefs]
    pre_activation_grads = [None] * (len(coefs) + 1)
    if not penalized_layers:
        return 0.0, coef_grads, pre_activation_grads
    depth = max(penalized_layers)
    jacobians, linear_parts = encoder_jacobians(coefs, pre_activations, hidden_activation, depth)
    S = _weight_sum(sample_weight)
    scale = (2 * weight / S) * sample_weight[:, None, None]

    value = 0.0
    jacobian_grad = 0  # G^depth gets its first term from the deepest penalised layer
    for k in range(depth, 0, -1):
        if penalized[k - 1]:
            squared_norms = np.sum(jacobians[k] ** 2, axis=(1, 2))
            value += weight * _weighted_sum(sample_weight, squared_norms) / S
            jacobian_grad = jacobian_grad + scale * jacobians[k]
        a = pre_activations[k]
        pre_activation_grads[k] = activation_second_derivative(hidden_activation, a) * np.einsum(
            "njd,njd->nj", jacobian_grad, linear_parts[k]
        )
        linear_grad = activation_derivative(hidden_activation, a)[:, :, None] * jacobian_grad
        if k == 1:  # M^1[i, j, d] = W_0[d, j] for every sample
            coef_grads[0] = linear_grad.sum(axis=0).T
        else:  # sum over samples i and inputs d of J^{k-1}[i, :, d] (g' G^k)[i, :, d]^T
            coef_grads[k - 1] = np.tensordot(jacobians[k - 1], linear_grad, axes=([0, 2], [0, 2]))
            jacobian_grad = coefs[k - 1] @ linear_grad
    return value, coef_grads, pre_activation_grads


# --------------------------------------------------------------------------------------
# Forward and backward passes
# --------------------------------------------------------------------------------------


def forward_pass(params, layer_units, hidden_activation, output_activation, X):
    """All layers of the network on ``X``.

    Returns ``(pre_activations, activations)``, lists indexed by layer ``k = 0 .. L``:
    ``activations[0] = X``, ``pre_activations[0] = None``, ``a^k = o^{k-1} W_{k-1} +
    b_{k-1}``, ``o^k = g(a^k)`` (``g_o`` for ``k = L``).
    """
    coefs, intercepts = layer_views(params, layer_units)
    n_layers = len(coefs)
    pre_activations, activations = [None], [X]
    for i in range(n_layers):
        a = activations[i] @ coefs[i] + intercepts[i]
        code = output_activation if i == n_layers - 1 else hidden_activation
        pre_activations.append(a)
        activations.append(activation(code, a))
    return pre_activations, activations


PenaltyGradients = namedtuple("PenaltyGradients", ["activations", "pre_activations", "coefs"])
PenaltyGradients.__doc__ = """Gradients of the autoencoder penalties, for :func:`backward_pass`.

Lists indexed like the passes (None where zero): ``activations[k] = dP/do^k`` (L1, KL),
``pre_activations[k] = dP/da^k`` (contractive, through ``g''``), ``coefs[i] = dP/dW_i`` at
fixed ``a`` (contractive).
"""


def backward_pass(params, layer_units, hidden_activation, output_activation, loss,
                  pre_activations, activations, Y, sample_weight, alpha, grad, penalty_grads=None):
    """Backpropagation: writes ``d(D + L2 + P)/d params`` into ``grad`` (flat layout).

    Deltas are the lecture's, weighted as scikit-learn: ``delta^L = s_i * g_o'(a^L) L'``
    (see :func:`output_delta`), ``delta^k = g'(a^k) * (delta^{k+1} W_k^T + S dP/do^k) + S
    dP/da^k``, i.e. ``delta^k = d(S * objective)/d a^k``. Then ``dW_{k-1} = (o^{k-1 T}
    delta^k + alpha W_{k-1} + S dP/dW_{k-1}) / S`` and ``db_{k-1} = sum_i delta^k_i / S``.
    """
    coefs, _ = layer_views(params, layer_units)
    coef_grads, intercept_grads = layer_views(grad, layer_units)
    S = _weight_sum(sample_weight)
    delta = output_delta(output_activation, loss, Y, activations[-1]) * sample_weight[:, None]
    for i in range(len(coefs) - 1, -1, -1):
        coef_grad = activations[i].T @ delta + alpha * coefs[i]
        if penalty_grads is not None and penalty_grads.coefs[i] is not None:
            coef_grad += S * penalty_grads.coefs[i]
        coef_grads[i][...] = coef_grad / S
        intercept_grads[i][...] = np.sum(delta, axis=0) / S
        if i == 0:
            break
        back = delta @ coefs[i].T
        if penalty_grads is not None and penalty_grads.activations[i] is not None:
            back += S * penalty_grads.activations[i]
        delta = back * activation_derivative(hidden_activation, pre_activations[i])
        if penalty_grads is not None and penalty_grads.pre_activations[i] is not None:
            delta += S * penalty_grads.pre_activations[i]
    return grad


def batch_objective(params, layer_units, hidden_activation, output_activation, loss, X, Y,
                    sample_weight, alpha, l1_weight, kl_weight, kl_target, contraction_weight,
                    penalized, grad):
    """Objective ``D + P`` of one (already corrupted) batch; its gradient goes into ``grad``.

    ``D`` is :func:`data_loss`; ``P`` is :func:`l2_penalty` plus, on the hidden layers ``k``
    with ``penalized[k-1] == 1``, :func:`l1_activity_penalty`, :func:`kl_sparsity_penalty`
    and :func:`contractive_penalty` (each only when its weight is non-zero). Returns
    ``(D, P)`` as Python floats; a batch whose weights sum to zero gives ``(0.0, 0.0)`` and
    a zero gradient.
    """
    sample_weight = _sample_weight(sample_weight, len(X), X.dtype)
    S = _weight_sum(sample_weight)
    if S == 0:  # a batch of zero weight contributes nothing (docs/kernels.md)
        grad[...] = 0
        return 0.0, 0.0
    pre_activations, activations = forward_pass(
        params, layer_units, hidden_activation, output_activation, X
    )
    coefs, _ = layer_views(params, layer_units)
    data = data_loss(loss, Y, activations[-1], sample_weight)
    penalty = l2_penalty(coefs, alpha, S)

    n_layers = len(coefs)
    activation_grads = [None] * (n_layers + 1)
    penalized_layers = [k for k in range(1, n_layers) if penalized[k - 1]]
    if kl_weight != 0 and penalized_layers and hidden_activation != LOGISTIC:
        raise ValueError(
            "The KL sparsity penalty needs logistic hidden units (activations in (0, 1))."
        )
    for k in penalized_layers:
        for weight, penalty_function, extra in (
            (l1_weight, l1_activity_penalty, ()),
            (kl_weight, kl_sparsity_penalty, (kl_target,)),
        ):
            if weight != 0:
                value, gradient = penalty_function(activations[k], sample_weight, weight, *extra)
                penalty += value
                if activation_grads[k] is not None:
                    gradient = activation_grads[k] + gradient
                activation_grads[k] = gradient
    coef_grads, pre_activation_grads = [None] * n_layers, [None] * (n_layers + 1)
    if contraction_weight != 0 and penalized_layers:
        value, coef_grads, pre_activation_grads = contractive_penalty(
            coefs, pre_activations, hidden_activation, penalized, sample_weight, contraction_weight
        )
        penalty += value
    backward_pass(params, layer_units, hidden_activation, output_activation, loss, pre_activations,
                  activations, Y, sample_weight, alpha, grad,
                  PenaltyGradients(activation_grads, pre_activation_grads, coef_grads))
    return data, penalty


# --------------------------------------------------------------------------------------
# Counter-based noise (splitmix64)
# --------------------------------------------------------------------------------------

_UINT64_MASK = (1 << 64) - 1


def splitmix64(z):
    """The splitmix64 finaliser on uint64 values (arithmetic mod 2^64)::

        z += 0x9E3779B97F4A7C15
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB
        return z ^ (z >> 31)
    """
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around is the point
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _as_uint64(value):
    """A Python int or an integer array as uint64, negative Python ints taken mod 2^64."""
    if isinstance(value, (int, np.integer)):
        return np.uint64(int(value) & _UINT64_MASK)
    return np.asarray(value).astype(np.uint64)


def noise_hash(seed, epoch, sample, feature):
    """``mix(mix(mix(mix(seed) ^ epoch) ^ sample) ^ feature)`` with ``mix`` = splitmix64.

    Broadcasts over ``sample`` and ``feature`` (integer arrays); returns uint64.
    """
    z = splitmix64(_as_uint64(seed))
    z = splitmix64(z ^ _as_uint64(epoch))
    z = splitmix64(z ^ _as_uint64(sample))
    return splitmix64(z ^ _as_uint64(feature))


def noise_uniform(seed, epoch, sample, feature):
    """``(hash(seed, epoch, sample, feature) >> 11) * 2^-53``: float64 in ``[0, 1)``."""
    top_53_bits = noise_hash(seed, epoch, sample, feature) >> np.uint64(11)
    return top_53_bits.astype(np.float64) * 2.0 ** -53


def corrupted(X, sample_index, noise, noise_level, noise_seed, epoch):
    """The corrupted copy of ``X`` (``X`` itself when ``noise == NO_NOISE``).

    Row ``r`` is sample ``sample_index[r]``, column ``j`` feature ``j``:

    - mask: ``x' = 0 if uniform(seed, epoch, i, j) < p else x``;
    - gaussian: ``u1 = 1 - uniform(seed, epoch, i, 2j)``, ``u2 = uniform(seed, epoch, i,
      2j+1)``, ``z = sqrt(-2 log u1) cos(2 pi u2)``, ``x' = x + sigma z`` computed in float64
      and then cast to the dtype of ``X``.
    """
    if noise == NO_NOISE:
        return X
    samples = np.asarray(sample_index, dtype=np.int64)[:, None]
    features = np.arange(X.shape[1], dtype=np.int64)[None, :]
    if noise == MASK_NOISE:
        dropped = noise_uniform(noise_seed, epoch, samples, features) < noise_level
        return np.where(dropped, 0, X).astype(X.dtype)
    if noise == GAUSSIAN_NOISE:
        u1 = 1.0 - noise_uniform(noise_seed, epoch, samples, 2 * features)
        u2 = noise_uniform(noise_seed, epoch, samples, 2 * features + 1)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return (X.astype(np.float64) + noise_level * z).astype(X.dtype)
    raise ValueError(f"Unknown noise code {noise!r}.")


# --------------------------------------------------------------------------------------
# Optimiser steps (scikit-learn's), in place on flat arrays
# --------------------------------------------------------------------------------------


def sgd_update(params, grad, velocity, learning_rate, momentum, nesterov):
    """scikit-learn's SGD step: ``v <- mu v - lr g``; then ``params += mu v - lr g`` (Nesterov)
    or ``params += v``. With ``mu = 0`` this is plain ``params -= lr g``."""
    momentum, learning_rate = float(momentum), float(learning_rate)
    velocity[...] = momentum * velocity - learning_rate * grad
    if nesterov:
        params += momentum * velocity - learning_rate * grad
    else:
        params += velocity


def adam_update(params, grad, first_moment, second_moment, t, learning_rate, beta_1, beta_2,
                epsilon):
    """scikit-learn's Adam step number ``t`` (from 1), bias correction folded into the rate:
    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``lr_t = lr sqrt(1 - b2^t) / (1 - b1^t)``, ``params -= lr_t m / (sqrt(v) + eps)``."""
    beta_1, beta_2, epsilon = float(beta_1), float(beta_2), float(epsilon)
    first_moment[...] = beta_1 * first_moment + (1 - beta_1) * grad
    second_moment[...] = beta_2 * second_moment + (1 - beta_2) * grad * grad
    step_size = float(learning_rate) * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
    params -= step_size * first_moment / (np.sqrt(second_moment) + epsilon)


# --------------------------------------------------------------------------------------
# The kernels of docs/kernels.md
# --------------------------------------------------------------------------------------


def forward(params, layer_units, hidden_activation, output_activation, first_layer, last_layer,
            X, out):
    """Weight layers ``first_layer .. last_layer-1`` on ``X``; writes ``o^{last_layer}`` to ``out``.

    Layer ``i + 1`` uses ``output_activation`` when ``i == L - 1``, else ``hidden_activation``.
    """
    coefs, intercepts = layer_views(params, layer_units)
    o = X
    for i in range(int(first_layer), int(last_layer)):
        code = output_activation if i == len(coefs) - 1 else hidden_activation
        o = activation(code, o @ coefs[i] + intercepts[i])
    out[...] = o


def make_workspace(layer_units, batch_size, dtype, contraction):
    """The reference allocates as it goes: an empty array of ``dtype``."""
    return np.empty(0, dtype=dtype)


def sgd_epoch(params, layer_units, hidden_activation, output_activation, loss, X, Y, sample_weight,
              order, batch_size, optimizer, learning_rate, momentum, nesterov, beta_1, beta_2,
              epsilon, adam_step, velocity, second_moment, alpha, l1_weight, kl_weight, kl_target,
              contraction_weight, penalized, noise, noise_level, noise_seed, epoch, workspace):
    """One epoch of minibatch training over the batches ``order[b*batch_size:(b+1)*batch_size]``.

    Per batch: corrupt the input (:func:`corrupted`), :func:`batch_objective`, then
    :func:`sgd_update` or :func:`adam_update` (step ``t = adam_step + b + 1``), in place on
    ``params``, ``velocity`` and ``second_moment``. A batch whose weights sum to zero is
    skipped: no update, nothing added to the sums (its ``b`` still counts for Adam).
    Returns ``(loss_sum, penalty_sum, ok)`` with ``loss_sum = sum_b n_b D_b``,
    ``penalty_sum = sum_b n_b P_b``, and ``ok = 0`` (and an immediate stop) when a batch
    objective or the parameters become non-finite.
    """
    if optimizer not in (SGD, ADAM):
        raise ValueError(f"Unknown optimizer code {optimizer!r}.")
    grad = np.empty_like(params)
    loss_sum = penalty_sum = 0.0
    batch_size = int(batch_size)
    for batch, start in enumerate(range(0, len(order), batch_size)):
        rows = order[start:start + batch_size]
        if _weight_sum(sample_weight[rows]) == 0:
            continue  # contributes nothing, optimiser state included; Adam's t still counts it
        # overflow is not worth a warning here: it is reported through ``ok``
        with np.errstate(over="ignore", invalid="ignore"):
            X_batch = corrupted(X[rows], rows, noise, noise_level, noise_seed, epoch)
            data, penalty = batch_objective(
                params, layer_units, hidden_activation, output_activation, loss, X_batch, Y[rows],
                sample_weight[rows], alpha, l1_weight, kl_weight, kl_target, contraction_weight,
                penalized, grad,
            )
            loss_sum += len(rows) * data
            penalty_sum += len(rows) * penalty
            if not math.isfinite(data + penalty):
                return loss_sum, penalty_sum, 0
            if optimizer == SGD:
                sgd_update(params, grad, velocity, learning_rate, momentum, nesterov)
            else:
                adam_update(params, grad, velocity, second_moment, int(adam_step) + batch + 1,
                            learning_rate, beta_1, beta_2, epsilon)
        if not np.all(np.isfinite(params)):
            return loss_sum, penalty_sum, 0
    return loss_sum, penalty_sum, 1


def loss_and_gradient(params, layer_units, hidden_activation, output_activation, loss, X, Y,
                      sample_weight, alpha, l1_weight, kl_weight, kl_target, contraction_weight,
                      penalized, noise, noise_level, noise_seed, epoch, grad, workspace):
    """The objective over all rows of ``X`` as one batch (for L-BFGS).

    Row ``r`` is sample ``r`` for the noise generator. Writes the gradient into ``grad`` and
    returns ``(data_loss, penalty)``.
    """
    X_noisy = corrupted(X, np.arange(len(X)), noise, noise_level, noise_seed, epoch)
    return batch_objective(
        params, layer_units, hidden_activation, output_activation, loss, X_noisy, Y,
        sample_weight, alpha, l1_weight, kl_weight, kl_target, contraction_weight, penalized, grad,
    )


def corrupt(X, sample_index, noise, noise_level, noise_seed, epoch, out):
    """Writes :func:`corrupted` ``(X, ...)`` into ``out``."""
    out[...] = corrupted(X, sample_index, noise, noise_level, noise_seed, epoch)


def perceptron_epoch(coef, intercept, X, Y, sample_weight, order, active, eta, fit_intercept,
                     l2_strength, l1_strength, weight_pos, weight_neg, l1_total, l1_q, n_updates,
                     objective_sum):
    """One online epoch of Rosenblatt's perceptron, one-vs-rest, as scikit-learn's ``_plain_sgd``.

    For each sample ``i`` in ``order`` and each active class ``c`` (vectorised over classes),
    with ``y = Y[i, c]`` and ``p = X[i] . coef[c] + intercept[c]``: ``objective_sum[c] +=
    max(0, -y p) + l2/2 ||coef[c]||^2 + l1 ||coef[c]||_1``; ``update = eta y w_c s_i`` when
    ``y p <= 0`` (``w_c`` the class weight of the sign of ``y``), else 0; L2 shrinkage
    ``coef[c] *= max(0, 1 - eta l2)``; ``coef[c] += update X[i]`` and ``n_updates[c] += 1``
    when ``update != 0``; ``intercept[c] += update``; then Tsuruoka's cumulative L1 step.
    Returns 1, or 0 when a weight became non-finite.
    """
    eta, l2_strength, l1_strength = float(eta), float(l2_strength), float(l1_strength)
    shrink = max(0.0, 1.0 - eta * l2_strength)
    # the active classes are independent problems: work on copies of their rows, write back
    classes = np.flatnonzero(np.asarray(active))
    W, b, Y_active = coef[classes], intercept[classes], Y[:, classes]
    weight_pos, weight_neg = weight_pos[classes], weight_neg[classes]
    total, q = l1_total[classes], l1_q[classes]
    updates, objective = n_updates[classes], objective_sum[classes]
    for i in order:
        x, y = X[i], Y_active[i]
        p = W @ x + b
        objective += perceptron_criterion(y, p)
        if l2_strength > 0:
            objective += 0.5 * l2_strength * np.sum(W.astype(np.float64) ** 2, axis=1)
        if l1_strength > 0:
            objective += l1_strength * np.sum(np.abs(W.astype(np.float64)), axis=1)
        mistakes = y * p <= 0
        if l2_strength > 0:
            W *= shrink
        if mistakes.any():
            class_weight = np.where(y > 0, weight_pos, weight_neg)
            # grouped as scikit-learn: (eta y) * (class weight * sample weight)
            step = (eta * y) * (class_weight * sample_weight[i])
            update = np.where(mistakes, step, 0).astype(coef.dtype)
            changed = update != 0
            W[changed] += update[changed, None] * x
            updates += changed
            if fit_intercept:
                b += update
        if l1_strength > 0:
            total += eta * l1_strength
            before = W.copy()
            W[before > 0] = np.maximum(0, before - (total[:, None] + q))[before > 0]
            W[before < 0] = np.minimum(0, before + (total[:, None] - q))[before < 0]
            q += W - before
    coef[classes], intercept[classes] = W, b
    l1_total[classes], l1_q[classes] = total, q
    n_updates[classes], objective_sum[classes] = updates, objective
    return int(bool(np.all(np.isfinite(coef)) and np.all(np.isfinite(intercept))))
