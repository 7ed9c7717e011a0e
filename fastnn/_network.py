"""The network description shared by every backend: layer sizes and one flat buffer.

Layout of the flat parameter buffer (the same in every backend, see docs/kernels.md)::

    [W_0.ravel(), b_0, W_1.ravel(), b_1, ..., W_{L-1}.ravel(), b_{L-1}]

with ``W_i`` of shape ``(units[i], units[i+1])`` stored row-major (C order) and ``b_i`` of
shape ``(units[i+1],)``. ``coefs_[i]`` and ``intercepts_[i]`` are views into the buffer,
gradients and optimiser state are flat arrays of the same length.
"""

import numpy as np

# Bytes: a cache line, and one AVX-512 vector. The compiled online update reads and writes
# the first layer's weights a vector at a time; a buffer that starts off a line splits
# every one of those accesses in two (W2 float64 ran 20% slower, bench/README.md).
ALIGNMENT = 64


def as_layer_units(n_features, hidden_layer_sizes, n_outputs):
    """Return ``[n_features, *hidden_layer_sizes, n_outputs]`` as an int64 array."""
    return np.array([n_features, *hidden_layer_sizes, n_outputs], dtype=np.int64)


def layer_offsets(layer_units):
    """Offsets of each layer's weights and biases in the flat buffer.

    Returns ``(coef_offsets, intercept_offsets, n_params)``; layer ``i`` occupies
    ``[coef_offsets[i], intercept_offsets[i])`` for ``W_i`` and
    ``[intercept_offsets[i], intercept_offsets[i] + units[i+1])`` for ``b_i``.
    """
    coef_offsets, intercept_offsets = [], []
    position = 0
    for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
        coef_offsets.append(position)
        position += int(fan_in) * int(fan_out)
        intercept_offsets.append(position)
        position += int(fan_out)
    return coef_offsets, intercept_offsets, position


def n_params(layer_units):
    """Length of the flat parameter buffer of a network with these layer sizes."""
    return layer_offsets(layer_units)[2]


def unpack(params, layer_units):
    """Views ``(coefs, intercepts)`` into ``params``; writing to them writes the buffer."""
    coef_offsets, intercept_offsets, _ = layer_offsets(layer_units)
    coefs, intercepts = [], []
    for i, (fan_in, fan_out) in enumerate(zip(layer_units[:-1], layer_units[1:])):
        start = coef_offsets[i]
        coefs.append(params[start:start + fan_in * fan_out].reshape(fan_in, fan_out))
        start = intercept_offsets[i]
        intercepts.append(params[start:start + fan_out])
    return coefs, intercepts


def aligned_empty(n, dtype):
    """An uninitialised vector of ``n`` entries whose data starts on an ALIGNMENT-byte
    boundary (NumPy promises only 16)."""
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + n * dtype.itemsize].view(dtype)


def aligned(params):
    """``params`` when it is a C-contiguous vector that starts on an ALIGNMENT-byte
    boundary, else an aligned copy of it (same dtype, same values)."""
    params = np.asarray(params)
    if (params.ndim == 1 and params.flags.c_contiguous
            and params.ctypes.data % ALIGNMENT == 0):
        return params
    out = aligned_empty(params.size, params.dtype)
    out[...] = params.ravel()
    return out


def read_only(array):
    """``array`` if it is read-only, else a read-only view of it: the kernels' inputs.
    The Numba backend converts every input this way per call (a quarter of a microsecond
    for each writeable one); callers that pass the same arrays every epoch convert them
    once."""
    if not array.flags.writeable:
        return array
    view = array.view()
    view.setflags(write=False)  # a third faster than through view.flags
    return view


def pack(coefs, intercepts, dtype=None):
    """A new flat buffer (aligned) holding ``coefs`` and ``intercepts`` in the shared
    layout."""
    dtype = dtype or np.result_type(*coefs, *intercepts)
    parts = []
    for coef, intercept in zip(coefs, intercepts):
        parts.append(np.asarray(coef, dtype=dtype).ravel())
        parts.append(np.asarray(intercept, dtype=dtype).ravel())
    return aligned(np.concatenate(parts))


def glorot_uniform_init(layer_units, activation, random_state, dtype):
    """scikit-learn's initialisation, drawn in scikit-learn's order.

    For each layer in order, the weights and then the biases are drawn from
    ``U(-bound, bound)`` with ``bound = sqrt(factor / (fan_in + fan_out))``, ``factor``
    2 for logistic hidden units and 6 otherwise (Glorot and Bengio 2010), in float64
    and then cast, exactly as ``sklearn.neural_network.MLP*._init_coef``.
    """
    factor = 2.0 if activation == "logistic" else 6.0
    coefs, intercepts = [], []
    for fan_in, fan_out in zip(layer_units[:-1], layer_units[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        coefs.append(random_state.uniform(-bound, bound, (int(fan_in), int(fan_out))))
        intercepts.append(random_state.uniform(-bound, bound, int(fan_out)))
    return pack(coefs, intercepts, dtype=dtype)
