"""Numba kernels: the Cython kernels of ``csrc/_kernels.pyx`` again, for when they are missing.

Same names, argument order, integer codes and flat parameter layout as docs/kernels.md.
The public functions are thin Python wrappers: they coerce the scalars to one type each
(so that every float dtype compiles exactly one signature, whatever Python type a caller
passes) and call a ``@njit(nogil=True, cache=True)`` implementation.

All jitted code lives in this one file on purpose: Numba's on-disk cache is invalidated by
the mtime of the file that holds the cached function only, so a helper in another file
could change without its callers being recompiled.
"""

import ctypes
import math
import threading
import warnings

import numba
import numpy as np
from numba import types
import llvmlite.binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

from fastnn import _blas_threads
from fastnn._network import read_only
from fastnn._codes import (
    ADAM,
    BINARY_LOG_LOSS,
    GAUSSIAN_NOISE,
    LOGISTIC,
    MASK_NOISE,
    NO_NOISE,
    RELU,
    SOFTMAX,
    SQUARED_ERROR,
    TANH,
)

# Why the on-disk cache is off in this process (None when it is on); `fastnn info` shows it.
CACHE_DISABLED_REASON = None


def _jit(func=None, **options):
    """``numba.njit(nogil=True, cache=True, error_model="numpy", **options)``, uncached when no cache dir is writable.

    Numba looks for a writable cache directory when the decorator runs and raises
    ``RuntimeError`` ("no locator available") when there is none, e.g. a read-only install
    with ``NUMBA_CACHE_DIR`` unset. The kernels then compile at every start instead of
    failing the import; one ``RuntimeWarning`` says so. Use as ``@_jit`` or
    ``@_jit(fastmath=...)``.
    """
    global CACHE_DISABLED_REASON
    # Division by zero gives inf or nan, as in C, instead of a check per division that
    # raises ZeroDivisionError: the check keeps every loop with a division from
    # vectorising (logistic, tanh, softmax). A non-finite result is reported through ok.
    options.setdefault("error_model", "numpy")
    # Multiply-adds fused into FMA instructions, as GCC compiles the Cython kernels
    # (-ffp-contract=fast is its default): one rounding instead of two, and half the
    # instructions in the update loops. No other fast-math liberty.
    options.setdefault("fastmath", {"contract"})
    if func is None:
        return lambda function: _jit(function, **options)
    if CACHE_DISABLED_REASON is None:
        try:
            return numba.njit(nogil=True, cache=True, **options)(func)
        except (RuntimeError, OSError) as exc:
            CACHE_DISABLED_REASON = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                "fastnn's numba kernels cannot be cached on disk and will be compiled in "
                f"every process ({CACHE_DISABLED_REASON}); set NUMBA_CACHE_DIR to a "
                "writable directory to avoid that.",
                RuntimeWarning,
                stacklevel=2,
            )
    return numba.njit(nogil=True, **options)(func)


# ---------------------------------------------------------------------------------------
# Denoising noise: splitmix64, a pure function of (seed, epoch, sample, feature).
# Every operand is uint64: Numba turns uint64 mixed with int64 into float64.

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_S11, _S27, _S30, _S31 = np.uint64(11), np.uint64(27), np.uint64(30), np.uint64(31)
_TWO_POW_M53 = 2.0**-53


@_jit
def _mix(z):
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX_1
    z = (z ^ (z >> _S27)) * _MIX_2
    return z ^ (z >> _S31)


@_jit(inline="always")
def _row_key(seed, epoch, sample):
    """The key of one row's noise: every entry's draw is one more _mix of it."""
    return _mix(_mix(_mix(seed) ^ epoch) ^ np.uint64(sample))


@_jit(inline="always")
def _uniform(row_key, feature):
    return np.float64(_mix(row_key ^ np.uint64(feature)) >> _S11) * _TWO_POW_M53


@_jit
def _corrupt_row(x, noise, noise_level, row_key, out):
    """Mirrors csrc/_kernels.pyx:_corrupt_row: one row after masking or Gaussian noise
    (or a plain copy), one loop per kind of noise."""
    if noise == MASK_NOISE:
        for j in range(x.shape[0]):
            out[j] = 0 if _uniform(row_key, j) < noise_level else x[j]
    elif noise == GAUSSIAN_NOISE:
        for j in range(x.shape[0]):
            u1 = 1.0 - _uniform(row_key, 2 * j)
            u2 = _uniform(row_key, 2 * j + 1)
            z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
            out[j] = np.float64(x[j]) + noise_level * z
    else:
        for j in range(x.shape[0]):
            out[j] = x[j]


@_jit
def _corrupt(X, sample_index, noise, noise_level, seed, epoch, out):
    for r in range(X.shape[0]):
        _corrupt_row(X[r], noise, noise_level, _row_key(seed, epoch, sample_index[r]), out[r])


# ---------------------------------------------------------------------------------------
# Activations and their derivatives, written in terms of the output o = g(a).


@_jit(inline="always")
def _exp(x):
    """Mirrors csrc/_kernels.pyx:_exp: exp(x) in plain arithmetic, so that loops over it
    vectorise (libm's exp is a call per element).

    x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite), exp(r) by its Taylor polynomial to
    degree 13, 2^k written into the exponent bits. Within two ulps of exp on [-708, 709];
    beyond, the argument is clamped. k is read from the low bits of the rounding sum
    rather than converted from double (a conversion with no vector instruction on AVX2).
    """
    x = -708.0 if x < -708.0 else x
    x = 709.0 if x > 709.0 else x
    # Round to nearest through the 2^52 + 2^51 trick (no rint call).
    shifted = x * 1.4426950408889634 + 6755399441055744.0
    k = shifted - 6755399441055744.0
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10
    # exp(r) = 1 + (r + r^2 h(r)), h in Estrin's scheme (see the Cython kernel).
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    h = (((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)))
         + r4 * ((1.0 / 720.0 + r * (1.0 / 5040.0))
                 + r2 * (1.0 / 40320.0 + r * (1.0 / 362880.0)))
         + r8 * ((1.0 / 3628800.0 + r * (1.0 / 39916800.0))
                 + r2 * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0))))
    p = 1.0 + (r + r2 * h)
    k_int = np.float64(shifted).view(np.int64) - np.int64(0x4338000000000000)
    return p * np.int64((k_int + 1023) << 52).view(np.float64)


@_jit(inline="always")
def _tanh(a, real):
    """Mirrors csrc/_kernels.pyx:_tanh: tanh through one exp (libm's tanh is a call
    through expm1); the absolute error stays at rounding level. The exp in double, the
    rest in ``real`` (np.float32 or np.float64, the type of the activations)."""
    t = real(_exp(-2.0 * abs(np.float64(a))))
    one = real(1)
    return real(math.copysign((one - t) / (one + t), a))


@_jit
def _tanh_twin(a):
    return _tanh(a, np.float64)


# The names the tests call in both compiled backends (csrc/_kernels.pyx's def twins).
_exp_twin = _exp


@_jit(inline="always")
def _activate(Z, activation):
    """Apply ``activation`` to the pre-activations ``Z`` in place."""
    n, m = Z.shape
    if activation == SOFTMAX:
        for i in range(n):
            top = Z[i, 0]
            for j in range(1, m):
                top = max(top, Z[i, j])
            for j in range(m):  # apart from the sum: this loop vectorises, the sum cannot
                Z[i, j] = _exp(np.float64(Z[i, j] - top))
            total = 0.0
            for j in range(m):
                total += Z[i, j]
            for j in range(m):
                Z[i, j] = Z[i, j] / total
    elif activation == LOGISTIC:
        one = Z.dtype.type(1)
        for i in range(n):
            for j in range(m):  # the exp in double, its reciprocal in Z's type (_tanh)
                Z[i, j] = one / (one + Z.dtype.type(_exp(-np.float64(Z[i, j]))))
    elif activation == TANH:
        for i in range(n):
            for j in range(m):
                Z[i, j] = _tanh(Z[i, j], Z.dtype.type)
    elif activation == RELU:
        for i in range(n):
            for j in range(m):
                if Z[i, j] < 0:
                    Z[i, j] = 0
    # identity: nothing to do


@_jit(inline="always")
def _derivative(o, activation):
    """g'(a) from o = g(a); relu's derivative at 0 is 0."""
    if activation == LOGISTIC:
        return o * (1.0 - o)
    if activation == TANH:
        return 1.0 - o * o
    if activation == RELU:
        return 1.0 if o > 0 else 0.0
    return 1.0


@_jit
def _second_derivative(o, activation):
    """g''(a) from o = g(a) (needed by the contractive penalty's gradient)."""
    if activation == LOGISTIC:
        return o * (1.0 - o) * (1.0 - 2.0 * o)
    if activation == TANH:
        return -2.0 * o * (1.0 - o * o)
    return 0.0


# ---------------------------------------------------------------------------------------
# Unowned arrays. Every array Numba makes from another (a view, a slice, a list entry, an
# argument) takes a reference on the owner's memory with an atomic increment, and drops it
# with an atomic decrement; in online learning those pairs cost as much as the arithmetic
# (about 40% of an epoch of W2). An array made from a raw pointer has no owner, so its
# views skip them. Only for buffers the caller keeps alive for the whole call.


@intrinsic
def _data_pointer(typingctx, array):
    """The data pointer of ``array``."""
    signature = types.CPointer(array.dtype)(array)

    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data

    return signature, codegen


def _element(context, builder, sig, args):
    """LLVM's pointer to element ``args[1]`` (flat, C order) of the array ``args[0]``."""
    data = context.make_array(sig.args[0])(context, builder, args[0]).data
    return builder.gep(data, [args[1]])


@intrinsic
def _pointer_at(typingctx, array, index):
    """The address of ``array``'s element ``index`` (flat, C order)."""
    signature = types.CPointer(array.dtype)(array, types.intp)

    def codegen(context, builder, sig, args):
        return _element(context, builder, sig, args)

    return signature, codegen


@intrinsic
def _prefetch(typingctx, pointer):
    """Asks for the cache line at ``pointer`` (llvm.prefetch: read, keep in all levels),
    as csrc/_kernels.pyx's FASTNN_PREFETCH."""
    signature = types.void(pointer)

    def codegen(context, builder, sig, args):
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", [byte_pointer],
            ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]))
        builder.call(prefetch, [builder.bitcast(args[0], byte_pointer), i32(0), i32(3),
                                i32(1)])
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def _address(typingctx, array, index):
    """The address of ``array``'s element ``index`` (flat, C order), untyped (for BLAS)."""
    signature = types.voidptr(array, types.intp)

    def codegen(context, builder, sig, args):
        return builder.bitcast(_element(context, builder, sig, args),
                               ir.IntType(8).as_pointer())

    return signature, codegen


@intrinsic
def _atomic_add(typingctx, array, index, value):
    """``array[index] += value`` as one atomic operation (int64); returns the new value."""
    signature = types.int64(array, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        old = builder.atomic_rmw("add", _element(context, builder, sig, args), args[2],
                                 "acq_rel")
        return builder.add(old, args[2])

    return signature, codegen


@intrinsic
def _atomic_load(typingctx, array, index):
    """``array[index]`` (int64), read with acquire ordering."""
    signature = types.int64(array, types.intp)

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_element(context, builder, sig, args), "acquire", 8)

    return signature, codegen


@intrinsic
def _atomic_store(typingctx, array, index, value):
    """``array[index] = value`` (int64), written with release ordering."""
    signature = types.void(array, types.intp, types.int64)

    def codegen(context, builder, sig, args):
        builder.store_atomic(args[2], _element(context, builder, sig, args), "release", 8)
        return context.get_dummy_value()

    return signature, codegen


# Mirrors csrc/_kernels.pyx: rows taken in shuffled order defeat the hardware prefetcher,
# so the perceptron asks for the row PREFETCH_AHEAD places ahead, when X is too large
# (over PREFETCH_BYTES) to stay in cache over an epoch.
_PREFETCH_BYTES = 4 * 1024 * 1024
_PREFETCH_AHEAD = 8


@_jit(inline="always")
def _prefetch_row(X, i):
    """Asks for row ``i`` of the C-ordered X, a cache line at a time."""
    for offset in range(0, X.shape[1], 64 // X.itemsize):
        _prefetch(_pointer_at(X, i * X.shape[1] + offset))


@_jit(inline="always")
def _unowned(array):
    """``array`` (C-contiguous) without an owner: no reference counting on its views."""
    return numba.carray(_data_pointer(array), array.shape)


# ---------------------------------------------------------------------------------------
# Flat parameter buffer and workspace layout.


@_jit
def _param_offsets(layer_units):
    """``(L, 2)`` array: start of ``W_i`` and of ``b_i`` in the flat buffer."""
    n_layers = layer_units.shape[0] - 1
    offsets = np.empty((n_layers, 2), dtype=np.int64)
    position = 0
    for i in range(n_layers):
        offsets[i, 0] = position
        position += layer_units[i] * layer_units[i + 1]
        offsets[i, 1] = position
        position += layer_units[i + 1]
    return offsets


@_jit(inline="always")
def _weights(params, layer_units, offsets, i):
    return _view(params, offsets[i, 0], layer_units[i], layer_units[i + 1])


@_jit(inline="always")
def _biases(params, layer_units, offsets, i):
    return params[offsets[i, 1]:offsets[i, 1] + layer_units[i + 1]]


@_jit(inline="always")
def _view(buffer, start, rows, cols):
    """``buffer[start:start + rows * cols]`` as a C-ordered (rows, cols) array (``buffer``
    C-contiguous, indexed flat).

    Made from the address, not by ``reshape`` (a call into Numba's runtime for the
    strides, as long as the arithmetic of a small layer): the view has no owner, so the
    caller keeps ``buffer`` alive while the view is in use, as every caller here does
    (arguments, or a local used after the loop that reads the view)."""
    return numba.carray(_pointer_at(buffer, start), (rows, cols))


# Workspace regions. Single regions first, then one slot per layer (0..L) for each
# per-layer kind; `_slot` gives the index of a region's start in the layout array.
(_TARGETS, _WEIGHTS, _GRAD, _KL, _ADJOINT_A, _ADJOINT_B, _ADJOINT_PRE, _OUTER, _CGRAD,
 _COMPACT_X, _COMPACT_W, _TOTAL) = range(12)
_N_SINGLE = 12
_ACTIVATIONS, _DELTAS, _CURVATURE, _PRE_JACOBIANS, _JACOBIANS = range(5)
_N_KINDS = 5


@_jit
def _slot(kind, layer, n_layers):
    return _N_SINGLE + kind * (n_layers + 1) + layer


@_jit
def _layout(layer_units, rows, contraction):
    """Start of every workspace region for batches of up to ``rows`` rows.

    Per batch: activations ``o^k`` (k = 0..L, rows x units[k]; ``o^0`` is the gathered,
    corrupted input), deltas ``E^k`` (k = 1..L), targets, sample weights, the flat
    gradient and the KL derivative of one layer. With ``contraction`` also, per hidden
    layer: the curvature term of the deltas (rows x units[k]), the pre-activation Jacobian
    ``M^k`` and the Jacobian ``J^k`` of one sample (units[k] x n_features), two adjoint
    buffers and one scaled adjoint (max hidden units x n_features), one outer-product
    buffer (units[k-1] x units[k]) and a flat buffer for the penalty's direct weight
    gradient. For batches that may compact (``_may_compact``, whatever ``contraction``),
    the input restricted to its used columns and the first layer's weights of those.
    The last entry (``_TOTAL``) is the length needed.
    """
    n_layers = layer_units.shape[0] - 1
    n_features = layer_units[0]
    layout = np.zeros(_N_SINGLE + _N_KINDS * (n_layers + 1), dtype=np.int64)
    n_params = 0
    widest_hidden = 1
    widest_outer = 0
    for i in range(n_layers):
        n_params += (layer_units[i] + 1) * layer_units[i + 1]
    for k in range(1, n_layers):
        widest_hidden = max(widest_hidden, layer_units[k])
        if k >= 2:
            widest_outer = max(widest_outer, layer_units[k - 1] * layer_units[k])
    position = 0
    for k in range(n_layers + 1):
        layout[_slot(_ACTIVATIONS, k, n_layers)] = position
        position += rows * layer_units[k]
    for k in range(1, n_layers + 1):
        layout[_slot(_DELTAS, k, n_layers)] = position
        position += rows * layer_units[k]
    sizes = (
        rows * layer_units[n_layers],
        rows,
        n_params,
        widest_hidden,
    )
    for region in range(4):  # _TARGETS, _WEIGHTS, _GRAD, _KL
        layout[region] = position
        position += sizes[region]
    if contraction:
        for k in range(1, n_layers):
            layout[_slot(_CURVATURE, k, n_layers)] = position
            position += rows * layer_units[k]
            layout[_slot(_PRE_JACOBIANS, k, n_layers)] = position
            position += layer_units[k] * n_features
            layout[_slot(_JACOBIANS, k, n_layers)] = position
            position += layer_units[k] * n_features
        for region in (_ADJOINT_A, _ADJOINT_B, _ADJOINT_PRE):
            layout[region] = position
            position += widest_hidden * n_features
        layout[_OUTER] = position
        position += widest_outer
        layout[_CGRAD] = position
        position += n_params
    if _may_compact(rows, n_features, layer_units[1], False):
        layout[_COMPACT_X] = position
        position += rows * n_features
        layout[_COMPACT_W] = position
        position += n_features * layer_units[1]
    layout[_TOTAL] = position
    return layout


def make_workspace(layer_units, batch_size, dtype, contraction):
    """Mirrors csrc/_kernels.pyx:make_workspace.

    Scratch memory for ``sgd_epoch`` and ``loss_and_gradient`` on batches of up to
    ``batch_size`` rows, allocated once per fit (see ``_layout`` for what it holds).
    """
    layer_units = _read_only(np.ascontiguousarray(layer_units, dtype=np.int64))
    total = _layout(layer_units, int(batch_size), bool(contraction))[_TOTAL]
    return np.zeros(int(total), dtype=dtype)


# ---------------------------------------------------------------------------------------
# Matrix products: BLAS (through np.dot) for anything sizeable, direct loops for the tiny
# products of online learning, where a BLAS call costs more than the arithmetic. The
# cut-off is the Cython backend's (csrc/_blas.pxd:DIRECT_MAX_MULADDS).

_DIRECT_MAX_MULADDS = 4096


@_jit
def _matmul(A, B, out):
    """``out = A @ B``."""
    m, k = A.shape
    n = B.shape[1]
    if m * n * k > _DIRECT_MAX_MULADDS:
        np.dot(A, B, out=out)
    elif n == 1:  # one output unit: a dot product per row, not k loops of length 1
        column = _view(B, 0, 1, k)  # contiguous: its one column as a row
        for i in range(m):
            out[i, 0] = _row_dot(A, i, column, 0)
    else:
        # Four rows of B per pass over out[i]: a quarter of the loads and stores of
        # out[i], which LLVM must keep in memory (it cannot rule out that out aliases B).
        for i in range(m):
            for j in range(n):
                out[i, j] = 0
            p = 0
            while p + 4 <= k:
                a0 = A[i, p]
                a1 = A[i, p + 1]
                a2 = A[i, p + 2]
                a3 = A[i, p + 3]
                for j in range(n):
                    out[i, j] += ((a0 * B[p, j] + a1 * B[p + 1, j])
                                  + (a2 * B[p + 2, j] + a3 * B[p + 3, j]))
                p += 4
            while p < k:
                a = A[i, p]
                for j in range(n):
                    out[i, j] += a * B[p, j]
                p += 1


@_jit
def _matmul_at(A, B, out):
    """``out = A.T @ B``."""
    k, m = A.shape
    n = B.shape[1]
    if m * n * k > _DIRECT_MAX_MULADDS:
        np.dot(A.T, B, out=out)
    elif k == 1:  # one row (online learning): the outer product
        for i in range(m):
            a = A[0, i]
            for j in range(n):
                out[i, j] = a * B[0, j]
    else:
        for i in range(m):
            for j in range(n):
                out[i, j] = 0
        for p in range(k):
            for i in range(m):
                a = A[p, i]
                for j in range(n):
                    out[i, j] += a * B[p, j]


@_jit
def _matmul_bt(A, B, out):
    """``out = A @ B.T``."""
    m, k = A.shape
    n = B.shape[0]
    if m * n * k > _DIRECT_MAX_MULADDS:
        np.dot(A, B.T, out=out)
    elif k == 1:  # one output unit: the outer product
        for i in range(m):
            a = A[i, 0]
            for j in range(n):
                out[i, j] = a * B[j, 0]
    else:
        for i in range(m):
            for j in range(n):
                total = 0.0
                for p in range(k):
                    total += A[i, p] * B[j, p]
                out[i, j] = total


# ---------------------------------------------------------------------------------------
# Forward pass.


@_jit(inline="always")
def _bias_activate(b, activation, out):
    """``out = g(out + b)``."""
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[i, j] += b[j]
    _activate(out, activation)


@_jit(inline="always")
def _dense(inputs, W, b, activation, out):
    """``out = g(inputs @ W + b)``: BLAS for the product, a loop for the rest."""
    _matmul(inputs, W, out)
    _bias_activate(b, activation, out)


@_jit(inline="always")
def _layer_activation(i, n_layers, hidden_activation, output_activation):
    return output_activation if i == n_layers - 1 else hidden_activation


# Inlining (``inline="always"``) saves the epoch kernels' reference counting per call, but
# each caller then compiles its own copy; the kernels run once per call keep one shared,
# called copy, which keeps their first-call compile time down.
_dense_outlined = _jit(_dense.py_func)

_FORWARD_BLOCK_ROWS = 2048  # bounds the intermediate buffers of forward()


@_jit
def _forward(params, layer_units, hidden_activation, output_activation, first_layer,
             last_layer, X, out):
    n_layers = layer_units.shape[0] - 1
    offsets = _param_offsets(layer_units)
    if first_layer == last_layer:
        out[:, :] = X
        return
    widest = 1
    for k in range(first_layer + 1, last_layer):
        widest = max(widest, layer_units[k])
    n = X.shape[0]
    block = max(1, min(n, _FORWARD_BLOCK_ROWS))
    buffers = np.empty((2, block * widest), dtype=out.dtype)
    for r0 in range(0, n, block):
        r1 = min(r0 + block, n)
        # The first layer reads X directly (it may be read-only, a different Numba type).
        current = out[r0:r1]
        for i in range(first_layer, last_layer):
            target = out[r0:r1]
            if i < last_layer - 1:
                target = _view(buffers[i % 2], 0, r1 - r0, layer_units[i + 1])
            activation = _layer_activation(i, n_layers, hidden_activation, output_activation)
            W = _weights(params, layer_units, offsets, i)
            b = _biases(params, layer_units, offsets, i)
            if i == first_layer:
                _dense_outlined(X[r0:r1], W, b, activation, target)
            else:
                _dense_outlined(current, W, b, activation, target)
            current = target


# ---------------------------------------------------------------------------------------
# Objective and gradient of one batch. The deltas are E^k = d(objective)/d(a^k): the output
# delta of row i is scaled by s_i / S (S the batch's weight sum), so that the gradient of
# W_{k-1}, (o^{k-1}^T (s * delta^k) + alpha W_{k-1}) / S in docs/kernels.md, comes out of
# the product o^{k-1}^T E^k plus (alpha / S) W_{k-1}, without a pass dividing by S.


# Reassociation lets LLVM vectorise the sum (as the Cython build's lane sums do, _dot);
# it changes nothing but the rounding of the sum, and NaN and infinity keep their meaning.
@_jit(fastmath={"reassoc"})
def _row_dot(A, a, B, b):
    """``A[a] . B[b]`` accumulated in double.

    Rows are indexed here rather than sliced by the caller: a slice is a new array object
    whose reference counting costs about as much as a 100-feature dot product.
    """
    total = 0.0
    for j in range(A.shape[1]):
        total += np.float64(A[a, j]) * B[b, j]
    return total


@_jit(inline="always")
def _log_loss(loss, P, Y, i, eps):
    """Mirrors csrc/_kernels.pyx:_log_loss: row ``i``'s binary or softmax log loss from its
    probabilities, clipped to [eps, 1 - eps]; a term whose factor is 0 is skipped (one log
    a row for binary and one-hot targets)."""
    total = 0.0
    for j in range(P.shape[1]):
        clipped = min(max(np.float64(P[i, j]), eps), 1.0 - eps)
        y = np.float64(Y[i, j])
        term = 0.0
        if y != 0:
            term = y * math.log(clipped)
        if loss == BINARY_LOG_LOSS and y != 1:
            term += (1.0 - y) * math.log(1.0 - clipped)
        total -= term
    return total


@_jit(inline="always")
def _output_delta(P, b, Y, sample_weight, weight_sum, output_activation, loss, eps, E,
                  b_grad, with_log_loss=True):
    """The output layer from its pre-activations ``P`` (bias not yet added) to its deltas:
    ``P <- g(P + b)``, ``E <- (s_i / S) delta``, ``b_grad <- sum_i E_i``; returns ``D``
    (without ``with_log_loss``, a log loss is left out, for the caller's _log_loss).

    Mirrors csrc/_kernels.pyx:_output_loss_delta: one row at a time, so that a row is
    still in cache for the loss and the bias gradient after its activation.
    """
    total = 0.0
    b_grad[:] = 0
    for i in range(P.shape[0]):
        s = sample_weight[i] / weight_sum
        for j in range(P.shape[1]):
            P[i, j] += b[j]
        _activate(P[i:i + 1], output_activation)
        row = 0.0
        if loss == SQUARED_ERROR:
            # Differences first, then their squares summed by _row_dot (vectorised).
            for j in range(P.shape[1]):
                E[i, j] = P[i, j] - Y[i, j]
            row = 0.5 * _row_dot(E, i, E, i)
            if output_activation == LOGISTIC:
                for j in range(P.shape[1]):
                    E[i, j] = s * E[i, j] * (P[i, j] * (1 - P[i, j]))
            else:
                for j in range(P.shape[1]):
                    E[i, j] = s * E[i, j]
        else:  # the log losses (binary and softmax): the delta is p - y
            for j in range(P.shape[1]):
                E[i, j] = s * (np.float64(P[i, j]) - np.float64(Y[i, j]))
            if with_log_loss:
                row = _log_loss(loss, P, Y, i, eps)
        for j in range(P.shape[1]):
            b_grad[j] += E[i, j]
        total += s * row
    return total


@_jit
def _squared_weights(params, layer_units, offsets):
    total = 0.0
    for i in range(layer_units.shape[0] - 1):
        W = _weights(params, layer_units, offsets, i)
        for r in range(W.shape[0]):
            for c in range(W.shape[1]):
                total += np.float64(W[r, c]) * W[r, c]
    return total


@_jit
def _l1_penalty(O, sample_weight):
    """sum_i s_i sum_j |o_ij|."""
    total = 0.0
    for i in range(O.shape[0]):
        row = 0.0
        for j in range(O.shape[1]):
            row += abs(np.float64(O[i, j]))
        total += sample_weight[i] * row
    return total


@_jit
def _kl_penalty(O, sample_weight, weight_sum, kl_target, eps, kl_grad):
    """sum_j KL(rho || rho_hat_j); writes d/d(rho_hat_j) (at the clipped rho_hat) to kl_grad."""
    rho = kl_target
    total = 0.0
    for j in range(O.shape[1]):
        mean = 0.0
        for i in range(O.shape[0]):
            mean += sample_weight[i] * np.float64(O[i, j])
        r = min(max(mean / weight_sum, eps), 1.0 - eps)
        total += rho * math.log(rho / r) + (1.0 - rho) * math.log((1.0 - rho) / (1.0 - r))
        kl_grad[j] = -rho / r + (1.0 - rho) / (1.0 - r)
    return total


@_jit
def _deepest_penalized(penalized):
    deepest = 0
    for k in range(1, penalized.shape[0] + 1):
        if penalized[k - 1] != 0:
            deepest = k
    return deepest


@_jit
def _adjoint_in_a(k, deepest):
    """Whether the adjoint of layer k sits in buffer A (they alternate, A at the deepest)."""
    return (deepest - k) % 2 == 0


@_jit
def _contraction_one_layer(params, layer_units, offsets, hidden_activation, sample_weight,
                           weight_sum, contraction_weight, workspace, layout, cgrad):
    """The one-encoder-layer case of ``_contractive_penalty`` in closed form,
    ``||J(x_i)||_F^2 = sum_j g'(a_ij)^2 ||W_:j||^2``: no Jacobian per sample.

    Mirrors csrc/_kernels.pyx:_contraction_one_layer. Same outputs as the general path:
    returns sum_i s_i ||J(x_i)||^2, writes the curvature rows, adds the direct weight
    term ``(2 c / S) sum_i s_i g'(a_ij)^2 W_:j`` to the _CGRAD region.
    """
    n_layers = layer_units.shape[0] - 1
    n_features, units = layer_units[0], layer_units[1]
    n_rows = sample_weight.shape[0]
    W = _weights(params, layer_units, offsets, 0)
    O = _view(workspace, layout[_slot(_ACTIVATIONS, 1, n_layers)], n_rows, units)
    curvature = _view(workspace, layout[_slot(_CURVATURE, 1, n_layers)], n_rows, units)
    # Scratch in regions the general path would use: ||W_:j||^2 and sum_i s_i g'^2.
    col_norm = workspace[layout[_ADJOINT_A]:layout[_ADJOINT_A] + units]
    weighted_sq = workspace[layout[_ADJOINT_PRE]:layout[_ADJOINT_PRE] + units]
    col_norm[:] = 0
    weighted_sq[:] = 0
    for c in range(n_features):
        for j in range(units):
            col_norm[j] += W[c, j] * W[c, j]
    for i in range(n_rows):
        s = sample_weight[i]
        scale = contraction_weight * s / weight_sum
        for j in range(units):
            o = O[i, j]
            d = _derivative(o, hidden_activation)
            weighted_sq[j] += s * d * d
            curvature[i, j] = scale * _second_derivative(o, hidden_activation) * (
                2.0 * d * col_norm[j])
    total = 0.0
    for j in range(units):
        total += np.float64(weighted_sq[j]) * col_norm[j]
    W_grad = _weights(cgrad, layer_units, offsets, 0)
    for c in range(n_features):
        for j in range(units):
            W_grad[c, j] += (2.0 * contraction_weight / weight_sum * weighted_sq[j]) * W[c, j]
    return total


@_jit
def _contractive_penalty(params, layer_units, offsets, hidden_activation, penalized,
                         sample_weight, weight_sum, contraction_weight, workspace, layout):
    """sum_i s_i sum_k ||J^k(x_i)||_F^2 over the penalised layers k, and its gradient parts.

    Per sample, forward: ``M^1 = W_0^T``, ``M^k = W_{k-1}^T J^{k-1}``, ``J^k = D_k M^k``
    with ``D_k = diag(g'(a^k))``. Backward with the adjoint ``G = dF/dJ^k`` (``2 J^k`` for
    each penalised layer, plus what flows down): ``dF/da^k_j = g''(a^k_j) sum_l G_jl M_jl``
    (written, times ``c s_i / S``, into the curvature rows that join the deltas),
    ``dM = D_k G``, ``dF/dW_{k-1} = J^{k-1} dM^T`` (``dM^T`` for k = 1, where J^0 = I),
    ``G <- W_{k-1} dM``. The direct weight terms, times ``c s_i / S``, go to the _CGRAD
    region.
    """
    n_layers = layer_units.shape[0] - 1
    n_features = layer_units[0]
    deepest = _deepest_penalized(penalized)
    if deepest == 0:
        return 0.0
    n_rows = sample_weight.shape[0]
    cgrad = workspace[layout[_CGRAD]:layout[_CGRAD] + offsets[n_layers - 1, 1]]
    cgrad[:] = 0
    if deepest == 1:
        return _contraction_one_layer(params, layer_units, offsets, hidden_activation,
                                      sample_weight, weight_sum, contraction_weight,
                                      workspace, layout, cgrad)
    W0 = _weights(params, layer_units, offsets, 0)
    M1 = _view(workspace, layout[_slot(_PRE_JACOBIANS, 1, n_layers)], layer_units[1], n_features)
    M1[:, :] = W0.T
    total = 0.0
    for i in range(n_rows):
        s = sample_weight[i]
        scale = contraction_weight * s / weight_sum
        for k in range(1, deepest + 1):
            units = layer_units[k]
            o = _view(workspace, layout[_slot(_ACTIVATIONS, k, n_layers)], n_rows, units)[i]
            M = _view(workspace, layout[_slot(_PRE_JACOBIANS, k, n_layers)], units, n_features)
            J = _view(workspace, layout[_slot(_JACOBIANS, k, n_layers)], units, n_features)
            if k >= 2:
                J_below = _view(workspace, layout[_slot(_JACOBIANS, k - 1, n_layers)],
                                layer_units[k - 1], n_features)
                _matmul_at(_weights(params, layer_units, offsets, k - 1), J_below, M)
            norm = 0.0
            for j in range(units):
                d = _derivative(o[j], hidden_activation)
                for m in range(n_features):
                    J[j, m] = d * M[j, m]
                    norm += np.float64(J[j, m]) * J[j, m]
            if penalized[k - 1] != 0:
                total += s * norm
        G = _view(workspace, layout[_ADJOINT_A], layer_units[deepest], n_features)
        G[:, :] = 0
        for k in range(deepest, 0, -1):
            units = layer_units[k]
            o = _view(workspace, layout[_slot(_ACTIVATIONS, k, n_layers)], n_rows, units)[i]
            M = _view(workspace, layout[_slot(_PRE_JACOBIANS, k, n_layers)], units, n_features)
            J = _view(workspace, layout[_slot(_JACOBIANS, k, n_layers)], units, n_features)
            curvature = _view(workspace, layout[_slot(_CURVATURE, k, n_layers)], n_rows, units)
            dM = _view(workspace, layout[_ADJOINT_PRE], units, n_features)
            if penalized[k - 1] != 0:
                for j in range(units):
                    for m in range(n_features):
                        G[j, m] += 2.0 * J[j, m]
            for j in range(units):
                d = _derivative(o[j], hidden_activation)
                through_slope = 0.0
                for m in range(n_features):
                    through_slope += np.float64(G[j, m]) * M[j, m]
                    dM[j, m] = d * G[j, m]
                curvature[i, j] = (scale * _second_derivative(o[j], hidden_activation)
                                   * through_slope)
            W = _weights(params, layer_units, offsets, k - 1)
            W_grad = _weights(cgrad, layer_units, offsets, k - 1)
            if k >= 2:
                J_below = _view(workspace, layout[_slot(_JACOBIANS, k - 1, n_layers)],
                                layer_units[k - 1], n_features)
                outer = _view(workspace, layout[_OUTER], layer_units[k - 1], units)
                _matmul_bt(J_below, dM, outer)
                for r in range(layer_units[k - 1]):
                    for c in range(units):
                        W_grad[r, c] += scale * outer[r, c]
                region = _ADJOINT_B if _adjoint_in_a(k, deepest) else _ADJOINT_A
                G = _view(workspace, layout[region], layer_units[k - 1], n_features)
                _matmul(W, dM, G)
            else:
                for r in range(n_features):
                    for c in range(units):
                        W_grad[r, c] += scale * dM[c, r]
    return total


@_jit(inline="always")
def _activations(workspace, layout, layer_units, k, n_rows):
    """``o^k`` of the batch (``o^0`` is the gathered, corrupted input)."""
    return _view(workspace, layout[_slot(_ACTIVATIONS, k, layer_units.shape[0] - 1)], n_rows,
                 layer_units[k])


@_jit(inline="always")
def _deltas(workspace, layout, layer_units, k, n_rows):
    return _view(workspace, layout[_slot(_DELTAS, k, layer_units.shape[0] - 1)], n_rows,
                 layer_units[k])


@_jit(inline="always")
def _targets(workspace, layout, layer_units, n_rows):
    """The batch's gathered target rows."""
    return _view(workspace, layout[_TARGETS], n_rows, layer_units[layer_units.shape[0] - 1])


@_jit(inline="always")
def _batch_weights(workspace, layout, n_rows):
    """The batch's gathered sample weights."""
    return workspace[layout[_WEIGHTS]:layout[_WEIGHTS] + n_rows]


@_jit(inline="always")
def _gather_batch(X, Y, sample_weight, rows, noise, noise_level, noise_seed, epoch, inputs,
                  targets, weights, flags, mark):
    """Copy (and corrupt) the batch's rows ``rows`` of X, Y and the weights into the workspace
    views ``inputs``, ``targets``, ``weights``; with ``mark``, set ``flags`` to the columns
    the inputs use (``_mark_used``).

    The batch objective then always reads workspace memory: one compiled signature per
    dtype, and contiguous operands for BLAS.
    """
    if mark:
        flags[:] = 0
    for r in range(rows.shape[0]):
        sample = rows[r]
        if noise == NO_NOISE:
            for j in range(inputs.shape[1]):
                inputs[r, j] = X[sample, j]
        else:
            _corrupt_row(X[sample], noise, noise_level,
                         _row_key(noise_seed, epoch, sample), inputs[r])
        if mark:
            _mark_used(inputs[r], flags)
        for j in range(Y.shape[1]):
            targets[r, j] = Y[sample, j]
        weights[r] = sample_weight[sample]


# Input columns that are zero in every row of a batch: the first layer runs on the used
# ones (mirrors csrc/_kernels.pyx, COMPACT_MIN_ROWS and the functions after it).
_COMPACT_MIN_ROWS = 16
_COMPACT_MIN_MULADDS = 1 << 18
_COMPACT_MIN_SHARE = 8


@_jit(inline="always")
def _may_compact(rows, n_in, n_out, contraction):
    return (rows >= _COMPACT_MIN_ROWS and rows * n_in * n_out >= _COMPACT_MIN_MULADDS
            and not contraction)


@_jit(inline="always")
def _mark_used(row, flags):
    """Mirrors csrc/_kernels.pyx:_mark_used: flags[j] |= row[j] != 0."""
    for j in range(row.shape[0]):
        flags[j] |= row[j] != 0


@_jit
def _used_columns(columns, n_cols):
    """Mirrors csrc/_kernels.pyx:_used_columns. ``columns`` (2 n_cols + 2 entries) holds
    the flags of the columns a batch uses (``_mark_used``); their runs, as (first column,
    length) pairs, go after them. Returns ``(n_used, n_runs)``, with ``n_used = n_cols``
    when fewer than n_cols / 8 columns are unused and compacting would not pay."""
    flags = columns[:n_cols]
    runs = columns[n_cols:]
    n_used = 0
    for j in range(n_cols):
        n_used += flags[j]
    if (n_cols - n_used) * _COMPACT_MIN_SHARE < n_cols:
        return n_cols, 0
    n_runs = 0
    for j in range(n_cols):
        if not flags[j]:
            continue
        if j == 0 or not flags[j - 1]:
            runs[2 * n_runs] = j
            runs[2 * n_runs + 1] = 0
            n_runs += 1
        runs[2 * n_runs - 1] += 1
    return n_used, n_runs


@_jit
def _mark_rows(X, flags):
    """``_mark_used`` over every row of X (for the twin below)."""
    for r in range(X.shape[0]):
        _mark_used(X[r], flags)


def _used_columns_twin(X):
    """Mirrors csrc/_kernels.pyx:_used_columns_twin, for tests."""
    X = np.ascontiguousarray(X)
    if X.size == 0:
        raise ValueError("X is empty.")
    columns = np.zeros(2 * X.shape[1] + 2, dtype=np.int64)
    _mark_rows(X, columns)
    n_used, n_runs = _used_columns(columns, X.shape[1])
    if n_used == X.shape[1]:
        return None
    runs = columns[X.shape[1]:X.shape[1] + 2 * n_runs].reshape(-1, 2)
    return np.concatenate([np.arange(0, dtype=np.int64)]
                          + [np.arange(a, a + b, dtype=np.int64) for a, b in runs])


@_jit(inline="always")
def _take_columns(X, runs, n_runs, out):
    """out <- the columns of X in the runs, one copy loop per run."""
    for r in range(X.shape[0]):
        c = 0
        for q in range(n_runs):
            first = runs[2 * q]
            for j in range(runs[2 * q + 1]):
                out[r, c + j] = X[r, first + j]
            c += runs[2 * q + 1]


@_jit(inline="always")
def _take_rows(W, runs, n_runs, out):
    """out <- the rows of W in the runs, one after the other."""
    c = 0
    for q in range(n_runs):
        first = runs[2 * q]
        for g in range(runs[2 * q + 1]):
            for j in range(W.shape[1]):
                out[c + g, j] = W[first + g, j]
        c += runs[2 * q + 1]


@_jit
def _put_rows(W, rows, runs, q0, q1, lo, hi, others):
    """Mirrors csrc/_kernels.pyx:_put_rows: for W's rows lo .. hi - 1, which hold runs
    q0 .. q1 - 1, those runs <- the rows of ``rows``, one after the other; the other rows
    in lo .. hi - 1 multiplied by ``others``, or cleared when it is 0. ``rows`` is not W."""
    others = W.dtype.type(others)
    gap_start = lo
    taken = 0
    for q in range(q0, q1 + 1):
        first = runs[2 * q] if q < q1 else hi
        length = runs[2 * q + 1] if q < q1 else 0
        for g in range(gap_start, first):
            for j in range(W.shape[1]):
                W[g, j] = 0 if others == 0 else others * W[g, j]
        for g in range(length):
            for j in range(W.shape[1]):
                W[first + g, j] = rows[taken + g, j]
        taken += length
        gap_start = first + length


# ---------------------------------------------------------------------------------------
# Threads: the members of one epoch (mirrors csrc/_kernels.pyx, "Threads"). With BLAS
# allowed several threads, a large batch is shared between that many Python threads, each
# running this module's nogil epoch kernel for its share and calling BLAS single-threaded.

_TEAM_MIN_ROWS = 16
_TEAM_MAX = 64
_SUMS_PER_MEMBER = 3  # a member's data loss, weight norm and non-finite flag
_BARRIER_SPINS = 4096


def _external(name, address, n_arguments, result):
    """The codegen of a call to the C function at ``address`` (arguments all pointers,
    an int32 result or none), made known to LLVM as ``name``: compiled code refers to
    the name, not to a ctypes object, so that Numba can still cache it on disk."""
    llvm_binding.add_symbol(name, address)

    def codegen(context, builder, sig, args):
        function = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.IntType(32) if result else ir.VoidType(),
                            [ir.IntType(8).as_pointer()] * n_arguments), name)
        value = builder.call(function, args)
        return value if result else context.get_dummy_value()

    return codegen


def _libc_sched_yield():
    """The address of POSIX's sched_yield, or None (then a waiting member only spins)."""
    try:
        return ctypes.cast(ctypes.CDLL(None).sched_yield, ctypes.c_void_p).value
    except (OSError, TypeError, AttributeError):
        return None


def _no_call(context, builder, sig, args):
    return ir.Constant(ir.IntType(32), 0)


_SCHED_YIELD_ADDRESS = _libc_sched_yield()
_SCHED_YIELD = (_no_call if _SCHED_YIELD_ADDRESS is None
                else _external("fastnn_sched_yield", _SCHED_YIELD_ADDRESS, 0, True))


@intrinsic
def _sched_yield(typingctx):
    """Gives up the core (a waiting member, after _BARRIER_SPINS checks)."""
    return types.int32(), _SCHED_YIELD


@_jit
def _barrier_wait(state):
    """Mirrors csrc/_kernels.pyx:fastnn_barrier_wait; ``state`` is (arrived, generation,
    size), int64."""
    generation = _atomic_load(state, 1)
    if _atomic_add(state, 0, 1) == state[2]:
        _atomic_store(state, 0, 0)
        _atomic_store(state, 1, generation + 1)
        return
    spins = 0
    while _atomic_load(state, 1) == generation:
        spins += 1
        if spins > _BARRIER_SPINS:
            _sched_yield()


@_jit(inline="always")
def _sync(size, state):
    if size > 1:
        _barrier_wait(state)


@_jit(inline="always")
def _rows(A, r0, r1, size):
    """A member's rows r0 .. r1 - 1 of A; alone, A itself (a slice costs a few dozen
    instructions, which online learning pays a dozen times per sample)."""
    return A if size == 1 else A[r0:r1]


@_jit(inline="always")
def _share(n, rank, size):
    """This member's part lo .. hi - 1 of n rows or columns (parts in rank order).
    Alone without a division: online learning asks a dozen times per sample."""
    if size == 1:
        return 0, n
    return n * rank // size, n * (rank + 1) // size


@_jit
def _run_share(runs, n_runs, n_used, n_in, rank, size):
    """Mirrors csrc/_kernels.pyx:_run_share; returns (q0, q1, c0, c1, lo, hi)."""
    cut0 = n_used * rank // size
    cut1 = n_used * (rank + 1) // size
    q0 = q1 = c0 = c1 = lo = hi = 0
    offset = 0
    for q in range(n_runs):
        end = runs[2 * q] + runs[2 * q + 1]
        if offset < cut0:
            q0 = q + 1
            c0 = offset + runs[2 * q + 1]
            lo = end
        if offset < cut1:
            q1 = q + 1
            c1 = offset + runs[2 * q + 1]
            hi = end
        offset += runs[2 * q + 1]
    if rank == size - 1:
        hi = n_in
    return q0, q1, c0, c1, lo, hi


def _team_size(layer_units, rows, l1_weight, kl_weight, contraction):
    """Mirrors csrc/_kernels.pyx:_team_size."""
    if rows < 2 * _TEAM_MIN_ROWS:  # one member whatever the rest says (online: every epoch)
        return 1
    if (_blas_threads.controls() is None or contraction or l1_weight > 0 or kl_weight > 0
            or rows * int(layer_units[0]) * int(layer_units[1]) < _COMPACT_MIN_MULADDS):
        return 1
    return max(1, min(_blas_threads.blas_threads(), rows // _TEAM_MIN_ROWS, _TEAM_MAX))


def _team_size_twin(layer_units, rows, l1_weight=0.0, kl_weight=0.0, contraction=False):
    """Mirrors csrc/_kernels.pyx:_team_size_twin, for tests."""
    return _team_size(np.asarray(layer_units), int(rows), l1_weight, kl_weight, contraction)


# ---------------------------------------------------------------------------------------
# The weight-gradient product of a block of weight rows: ``A[:, c0:c1]`` is a strided
# block, which np.dot would copy first, so these call scipy's BLAS (the Cython kernels'
# cython_blas) with its leading dimension.


def _cython_blas(name):
    from numba.extending import get_cython_function_address

    return _external(f"fastnn_cython_{name}",
                     get_cython_function_address("scipy.linalg.cython_blas", name), 13, False)


_SGEMM_CALL = _cython_blas("sgemm")
_DGEMM_CALL = _cython_blas("dgemm")


@intrinsic
def _sgemm(typingctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """scipy's cython_blas sgemm: every argument an address (Fortran's convention)."""
    return types.void(*([types.voidptr] * 13)), _SGEMM_CALL


@intrinsic
def _dgemm(typingctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """scipy's cython_blas dgemm, as _sgemm."""
    return types.void(*([types.voidptr] * 13)), _DGEMM_CALL


@_jit
def _blas_arguments(dtype_array):
    """Scratch for _product_at's BLAS arguments, made once per epoch (BLAS takes every
    argument by address): integers (int32), the two op characters, alpha and beta."""
    integers = np.empty(4, dtype=np.int32)
    characters = np.empty(2, dtype=np.uint8)
    characters[0] = 78  # 'N'
    characters[1] = 84  # 'T'
    reals = np.empty(2, dtype=dtype_array.dtype)
    return integers, characters, reals


@_jit
def _product_at(A, c0, c1, E, out, alpha, beta, integers, characters, reals):
    """``out <- alpha A[:, c0:c1]^T E + beta out`` (out not read when beta is 0), as
    csrc/_kernels.pyx's ``gemm_scaled(True, False, ...)``: direct loops for small
    products (csrc/_blas.pxd's rule), BLAS otherwise."""
    k = A.shape[0]
    m = c1 - c0
    n = E.shape[1]
    if m * n * k <= _DIRECT_MAX_MULADDS:
        for i in range(m):
            for j in range(n):
                out[i, j] = beta * out[i, j] if beta != 0 else 0
        for p in range(k):
            block = A[p, c0:c1]
            for i in range(m):
                a = alpha * block[i]
                for j in range(n):
                    out[i, j] += a * E[p, j]
        return
    # Row-major out = alpha A_block^T E + beta out is column-major
    # out^T = alpha E^T A_block + beta out^T: E untransposed (leading dimension n), the
    # block transposed (leading dimension A's row length).
    integers[0] = n
    integers[1] = m
    integers[2] = k
    integers[3] = A.shape[1]
    reals[0] = alpha
    reals[1] = beta
    if out.itemsize == 4:
        _sgemm(_address(characters, 0), _address(characters, 1), _address(integers, 0),
               _address(integers, 1), _address(integers, 2), _address(reals, 0),
               _address(E, 0), _address(integers, 0), _address(A, c0),
               _address(integers, 3), _address(reals, 1), _address(out, 0),
               _address(integers, 0))
    else:
        _dgemm(_address(characters, 0), _address(characters, 1), _address(integers, 0),
               _address(integers, 1), _address(integers, 2), _address(reals, 0),
               _address(E, 0), _address(integers, 0), _address(A, c0),
               _address(integers, 3), _address(reals, 1), _address(out, 0),
               _address(integers, 0))


# What _batch_objective does with the weight gradients (csrc/_kernels.pyx's weight_mode).
_WEIGHT_GRADS = 0    # write them into grad
_WEIGHT_SKIP = 1     # one row: plain SGD from the outer product o^T E, never stored
_WEIGHT_DESCEND = 2  # plain SGD folded into the product o^T E, never stored


# The online update's inner loop (csrc/_kernels.pyx: FASTNN_DESCEND_BLOCK) in LLVM vector
# types: a block of 32 columns in four vectors, its sums in registers. Numba's loops cannot
# do it: LLVM checks at every row that the row does not overlap d and z_next (it cannot
# know; Numba has no "restrict"), and those checks cost as much as a short row's update
# (measured on W2's first layer, 60 x 32 float32: 200 ns a sample, against 100 ns here).
_BLOCK_COLUMNS = 32  # as csrc/_kernels.pyx's FASTNN_ONLINE_BLOCK
_NARROW_COLUMNS = 8  # ... and FASTNN_ONLINE_NARROW
# A block is vectors of 64 bytes, or of the block's width when narrower (LLVM fits them
# to the machine): 16 float32 entries, not 8, halved W2's vector stores in float32.
_VECTOR_BYTES = 64


@intrinsic
def _descend_block(typingctx, W, x, d, x_next, z_next, j0, rate, keep, forward, penalized,
                   columns):
    """``W[:, j0:j0 + B] <- keep W[:, j0:j0 + B] - x (rate d[j0:j0 + B])`` (B is
    ``columns``, _BLOCK_COLUMNS or _NARROW_COLUMNS), with ``z_next[j0:j0 + B] = x_next @
    W[:, j0:j0 + B]`` (the new W) when ``forward``; returns the sum of the new entries'
    squares when ``penalized`` (else 0, and keep is taken as 1). ``forward``,
    ``penalized`` and ``columns`` are literals: each case is its own loop. W is
    C-contiguous; x, d, x_next and z_next are contiguous vectors."""
    if not (isinstance(forward, types.BooleanLiteral)
            and isinstance(penalized, types.BooleanLiteral)
            and isinstance(columns, types.IntegerLiteral)):
        return None
    signature = types.float64(W, x, d, x_next, z_next, types.intp, W.dtype, W.dtype,
                              forward, penalized, columns)
    with_forward = forward.literal_value
    with_penalty = penalized.literal_value
    block_lanes = min(columns.literal_value, _VECTOR_BYTES // (W.dtype.bitwidth // 8))
    n_vectors = columns.literal_value // block_lanes

    def codegen(context, builder, sig, args):
        def data(k):
            return context.make_array(sig.args[k])(context, builder, args[k]).data

        scalar = context.get_value_type(sig.args[0].dtype)
        itemsize = context.get_abi_sizeof(scalar)
        lanes = block_lanes
        vector = ir.VectorType(scalar, lanes)
        intp = context.get_value_type(types.intp)
        shape = context.make_array(sig.args[0])(context, builder, args[0]).shape
        n_rows = builder.extract_value(shape, 0)
        n_cols = builder.extract_value(shape, 1)
        j0 = args[5]

        def load(pointer, offset):
            address = builder.bitcast(builder.gep(pointer, [offset]), vector.as_pointer())
            return builder.load(address, align=itemsize)

        def store(value, pointer, offset):
            address = builder.bitcast(builder.gep(pointer, [offset]), vector.as_pointer())
            builder.store(value, address, align=itemsize)

        def splat(value):
            single = builder.insert_element(ir.Constant(vector, None), value, intp(0))
            return builder.shuffle_vector(single, single, ir.Constant(
                ir.VectorType(ir.IntType(32), lanes), None))

        # Multiply-adds the CPU may fuse (llvm.fmuladd), as GCC fuses the Cython kernel's.
        fmuladd = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector, [vector] * 3),
            f"llvm.fmuladd.v{lanes}f{8 * itemsize}")

        d_block = builder.gep(data(2), [j0])
        rate = splat(args[6])
        keep = splat(args[7])
        steps = [builder.fmul(rate, load(d_block, intp(v * lanes)))
                 for v in range(n_vectors)]
        zero = ir.Constant(vector, None)
        before = builder.block
        loop = builder.append_basic_block("descend_block.loop")
        done = builder.append_basic_block("descend_block.done")
        builder.cbranch(builder.icmp_signed(">", n_rows, intp(0)), loop, done)

        builder.position_at_end(loop)
        r = builder.phi(intp)
        r.add_incoming(intp(0), before)
        sums = [builder.phi(vector) for _ in range(2 * n_vectors)]  # z, then squares
        for phi in sums:
            phi.add_incoming(zero, before)
        row = builder.gep(data(0), [builder.add(builder.mul(r, n_cols), j0)])
        minus_a = splat(builder.fneg(builder.load(builder.gep(data(1), [r]))))
        b = splat(builder.load(builder.gep(data(3), [r]))) if with_forward else None
        updated = []
        for v in range(n_vectors):
            w = load(row, intp(v * lanes))
            if with_penalty:
                w = builder.fmul(keep, w)
            w = builder.call(fmuladd, [minus_a, steps[v], w])
            store(w, row, intp(v * lanes))
            z = sums[v]
            if with_forward:
                z = builder.call(fmuladd, [b, w, z])
            square = sums[n_vectors + v]
            if with_penalty:
                square = builder.call(fmuladd, [w, w, square])
            updated.append((z, square))
        following = builder.add(r, intp(1))
        r.add_incoming(following, loop)
        for v, (z, square) in enumerate(updated):
            sums[v].add_incoming(z, loop)
            sums[n_vectors + v].add_incoming(square, loop)
        builder.cbranch(builder.icmp_signed("<", following, n_rows), loop, done)

        builder.position_at_end(done)
        final = []
        for k in range(2 * n_vectors):
            phi = builder.phi(vector)
            phi.add_incoming(zero, before)
            phi.add_incoming(updated[k % n_vectors][k // n_vectors], loop)
            final.append(phi)
        if with_forward:
            z_block = builder.gep(data(4), [j0])
            for v in range(n_vectors):
                store(final[v], z_block, intp(v * lanes))
        double = ir.DoubleType()
        total = double(0)
        if with_penalty:
            squares = final[n_vectors]
            for v in range(1, n_vectors):
                squares = builder.fadd(squares, final[n_vectors + v])
            for lane in range(lanes):
                entry = builder.extract_element(squares, intp(lane))
                if itemsize != 8:
                    entry = builder.fpext(entry, double)
                total = builder.fadd(total, entry)
        return total

    return signature, codegen


@_jit(inline="always")
def _descend_blocks(W, x, d, x_next, z_next, j0, rate, keep, forward, penalized, columns):
    """_descend_block on the whole blocks of ``columns`` (a literal) from column ``j0``;
    returns the sum of their squares and the first column after them. Each case is a
    loop of its own (the flags are literals there)."""
    total = 0.0
    while j0 + columns <= W.shape[1]:
        if forward and penalized:
            total += _descend_block(W, x, d, x_next, z_next, j0, rate, keep, True, True,
                                    columns)
        elif forward:
            total += _descend_block(W, x, d, x_next, z_next, j0, rate, keep, True, False,
                                    columns)
        elif penalized:
            total += _descend_block(W, x, d, x_next, z_next, j0, rate, keep, False, True,
                                    columns)
        else:
            total += _descend_block(W, x, d, x_next, z_next, j0, rate, keep, False, False,
                                    columns)
        j0 += columns
    return total, j0


@_jit(inline="always")
def _descend_outer(W, x, d, rate, l2, x_next, z_next):
    """Plain SGD from an outer product, ``W[r, j] -= rate (x[r] d[j] + l2 W[r, j])``,
    computed as ``(1 - rate l2) W[r, j] - x[r] (rate d[j])``; with a non-empty ``x_next``
    also ``z_next = x_next @ W`` (the new W) in the same pass over the weights. Returns
    the sum of the new W's squares when l2 is not 0, else 0.

    Mirrors csrc/_kernels.pyx:_descend_outer, same arithmetic (the next online row's
    first-layer product made by the update: see _online_run): whole blocks of columns in
    _descend_block, the rest in a plain loop.
    """
    # In the dtype of W, as the Cython kernels: a float64 scalar would make every
    # float32 operation a float64 one, at half the vector width.
    rate = W.dtype.type(rate)
    keep = W.dtype.type(1) - rate * W.dtype.type(l2)
    forward = x_next.shape[0] > 0
    penalized = l2 != 0
    n_rows, n_cols = W.shape
    # Blocks of _BLOCK_COLUMNS, then of _NARROW_COLUMNS (narrow layers, and the rest of
    # wide ones).
    total, j0 = _descend_blocks(W, x, d, x_next, z_next, 0, rate, keep, forward, penalized,
                                _BLOCK_COLUMNS)
    narrow, j0 = _descend_blocks(W, x, d, x_next, z_next, j0, rate, keep, forward,
                                 penalized, _NARROW_COLUMNS)
    total += narrow
    if j0 == n_cols:
        return total
    if n_cols == 1:  # a column (a single output unit): one loop down the rows
        column = W[:, 0]
        step = rate * d[0]
        for r in range(n_rows):
            column[r] = keep * column[r] - x[r] * step
        if forward:
            z_next[0] = _row_dot(_view(x_next, 0, 1, n_rows), 0, _view(W, 0, 1, n_rows), 0)
        if penalized:
            total = _row_dot(_view(W, 0, 1, n_rows), 0, _view(W, 0, 1, n_rows), 0)
        return total
    # The last columns, fewer than a block, from 0 (see _batch_objective's bias loops).
    tail = W[:, j0:]
    d_tail = d[j0:]
    z_tail = z_next[j0:]
    if forward:
        z_tail[:] = 0
    for r in range(n_rows):
        a = x[r]
        for j in range(tail.shape[1]):
            w = keep * tail[r, j] - a * (rate * d_tail[j])
            tail[r, j] = w
            if forward:
                z_tail[j] += x_next[r] * w
            if penalized:
                total += np.float64(w) * w
    return total


@_jit(inline="always")
def _batch_objective(params, layer_units, offsets, hidden_activation, output_activation,
                     loss, n_rows, weight_sum, alpha, l1_weight, kl_weight, kl_target,
                     contraction_weight, penalized, eps, grad, workspace, layout, weight_mode,
                     descent_rate, columns, rank, size, team_state, team_sums, team_columns,
                     team_bias, blas, weight_sq):
    """Forward, objective and gradient of the batch of ``n_rows`` rows (of weight sum
    ``weight_sum``, not 0) gathered in the workspace (``_gather_batch``).

    Mirrors csrc/_kernels.pyx:_batch_gradient. ``weight_mode`` (``_WEIGHT_*``): the
    weight gradients go into ``grad``, or plain SGD with rate ``descent_rate`` is applied
    to the weights (not the biases) without storing them. ``weight_sq`` is
    sum_i ||W_i||^2 at ``params`` when known (else -1).
    Returns ``(D, P, lo, hi, sq)``: the batch's data loss and penalty, this member's rows
    lo .. hi - 1 of the first layer's weights (all of them alone), and sum_i ||W_i||^2
    after the update when the online update summed it on its way (else -1).

    Member ``rank`` of a team of ``size`` (see "Threads") takes its share of the rows up
    to the deltas, then its share of each layer's weight rows and bias columns.
    ``columns`` is its own column flags, union and runs (3 n_in + 2 entries; alone, flags
    and runs). Alone, ``size`` is 1 and the team arrays are not read. ``blas`` is
    _product_at's argument buffers, ``(integers, characters, reals)``, in one tuple:
    CPython compiles a call of over 30 arguments into one Numba cannot inline.

    Every view (``_weights``, ``_activations``, ...) is made where it is used, from
    buffers the epoch kernel holds unowned: no list of views is passed in, since Numba
    reference-counts each list argument, with an atomic operation, at every batch.
    """
    integers, characters, reals = blas
    n_layers = layer_units.shape[0] - 1
    n_in = layer_units[0]
    Y = _targets(workspace, layout, layer_units, n_rows)
    sample_weight = _batch_weights(workspace, layout, n_rows)
    r0, r1 = _share(n_rows, rank, size)

    # Layers 1..contracted carry the contractive penalty's curvature rows and direct terms.
    contracted = _deepest_penalized(penalized) if contraction_weight > 0 else 0

    # The first layer's input and weights, restricted to the columns the batch uses when
    # enough are zero throughout (_used_columns).
    first_in = _activations(workspace, layout, layer_units, 0, n_rows)
    first_w = _weights(params, layer_units, offsets, 0)
    n_used, n_runs = n_in, 0
    first_lo, first_hi = _share(n_in, rank, size)
    q0 = q1 = c0 = c1 = 0
    used = columns if size == 1 else columns[n_in:]
    if _may_compact(n_rows, n_in, layer_units[1], contracted > 0):
        if size > 1:
            # Every member forms the union of the members' marks (_gather_batch): the
            # same runs everywhere, no second wait.
            _sync(size, team_state)
            stride = 3 * n_in + 2
            for j in range(n_in):
                used[j] = 0
            for k in range(size):
                flags = team_columns[k * stride:k * stride + n_in]
                for j in range(n_in):
                    used[j] |= flags[j]
        n_used, n_runs = _used_columns(used, n_in)
    runs = used[n_in:]
    if n_used < n_in:
        compact_in = _view(workspace, layout[_COMPACT_X], n_rows, n_used)
        compact_w = _view(workspace, layout[_COMPACT_W], n_used, layer_units[1])
        _take_columns(_rows(first_in, r0, r1, size), runs, n_runs,
                      _rows(compact_in, r0, r1, size))
        q0, q1, c0, c1, first_lo, first_hi = _run_share(
            runs, n_runs, n_used, n_in, rank, size)
        _take_rows(first_w, runs[2 * q0:], q1 - q0, compact_w[c0:c1])
        first_in = compact_in
        first_w = compact_w
        _sync(size, team_state)  # the compacted weights are whole

    # Forward, this member's rows (the output layer's bias and activation come with its
    # loss).
    for i in range(n_layers):
        below = first_in if i == 0 else _activations(workspace, layout, layer_units, i, n_rows)
        W = first_w if i == 0 else _weights(params, layer_units, offsets, i)
        above = _activations(workspace, layout, layer_units, i + 1, n_rows)
        if i < n_layers - 1:
            _dense(_rows(below, r0, r1, size), W, _biases(params, layer_units, offsets, i),
                   hidden_activation, _rows(above, r0, r1, size))
        else:
            _matmul(_rows(below, r0, r1, size), W, _rows(above, r0, r1, size))
    P = _activations(workspace, layout, layer_units, n_layers, n_rows)
    out_bias = _biases(grad, layer_units, offsets, n_layers - 1)
    if size > 1:
        out_bias = team_bias[rank * layer_units[n_layers]:(rank + 1) * layer_units[n_layers]]
    data_loss = _output_delta(
        _rows(P, r0, r1, size), _biases(params, layer_units, offsets, n_layers - 1),
        _rows(Y, r0, r1, size), _rows(sample_weight, r0, r1, size), weight_sum,
        output_activation, loss, eps,
        _rows(_deltas(workspace, layout, layer_units, n_layers, n_rows), r0, r1, size),
        out_bias)
    penalty = 0.0
    if alpha != 0:
        if weight_sq < 0:
            weight_sq = _squared_weights(params, layer_units, offsets)
        penalty += alpha / (2.0 * weight_sum) * weight_sq

    if contracted > 0:
        penalty += contraction_weight / weight_sum * _contractive_penalty(
            params, layer_units, offsets, hidden_activation, penalized, sample_weight,
            weight_sum, contraction_weight, workspace, layout)

    # Backward, this member's rows: every delta goes down through the weights before any
    # weight changes.
    for k in range(n_layers - 1, 0, -1):
        O = _activations(workspace, layout, layer_units, k, n_rows)
        E = _deltas(workspace, layout, layer_units, k, n_rows)
        _matmul_bt(_rows(_deltas(workspace, layout, layer_units, k + 1, n_rows), r0, r1, size),
                   _weights(params, layer_units, offsets, k), _rows(E, r0, r1, size))
        use_l1 = penalized[k - 1] != 0 and l1_weight > 0
        use_kl = penalized[k - 1] != 0 and kl_weight > 0
        if not (use_l1 or use_kl or k <= contracted):  # the common case: one tight loop
            E_part = _rows(E, r0, r1, size)
            O_part = _rows(O, r0, r1, size)
            for i in range(E_part.shape[0]):
                for j in range(E.shape[1]):
                    E_part[i, j] = E_part[i, j] * _derivative(O_part[i, j], hidden_activation)
            continue
        kl_grad = workspace[layout[_KL]:layout[_KL] + layer_units[k]]
        if use_l1:
            penalty += l1_weight / weight_sum * _l1_penalty(O, sample_weight)
        if use_kl:
            penalty += kl_weight * _kl_penalty(O, sample_weight, weight_sum, kl_target, eps,
                                               kl_grad)
        curvature = _view(workspace, layout[_slot(_CURVATURE, k, n_layers)], n_rows,
                          layer_units[k])
        for i in range(n_rows):
            s = sample_weight[i] / weight_sum
            for j in range(layer_units[k]):
                o = np.float64(O[i, j])
                e = np.float64(E[i, j])
                if use_l1:
                    e += s * l1_weight * np.sign(o)
                if use_kl:
                    e += s * kl_weight * kl_grad[j]
                e *= _derivative(o, hidden_activation)
                if k <= contracted:
                    e += curvature[i, j]
                E[i, j] = e
    if size > 1:
        team_sums[rank * _SUMS_PER_MEMBER] = data_loss
        _sync(size, team_state)  # every delta and loss is in
        data_loss = 0.0
        for k in range(size):
            data_loss += team_sums[k * _SUMS_PER_MEMBER]

    # The weights, this member's rows of each layer; the biases, its columns.
    l2 = alpha / weight_sum
    updated_sq = 0.0
    for i in range(n_layers - 1, -1, -1):
        W = _weights(params, layer_units, offsets, i)
        W_grad = _weights(grad, layer_units, offsets, i)
        O = _activations(workspace, layout, layer_units, i, n_rows)
        E = _deltas(workspace, layout, layer_units, i + 1, n_rows)
        j0, j1 = _share(W.shape[1], rank, size)
        # Loops run over views from 0 here: an index that Numba cannot prove
        # non-negative gets a wraparound check, which keeps the loop from vectorising.
        b_grad = _biases(grad, layer_units, offsets, i)[j0:j1]
        if i < n_layers - 1:  # the output layer's came with its deltas
            b_grad[:] = 0
            for r in range(n_rows):  # row by row: contiguous, vectorised
                E_row = E[r, j0:j1]
                for c in range(b_grad.shape[0]):
                    b_grad[c] += E_row[c]
        elif size > 1:  # ... in parts, one per member
            b_grad[:] = 0
            for k in range(size):
                part = team_bias[k * W.shape[1] + j0:k * W.shape[1] + j1]
                for c in range(b_grad.shape[0]):
                    b_grad[c] += part[c]
        if i == 0:
            k0, k1 = first_lo, first_hi
        else:
            k0, k1 = _share(W.shape[0], rank, size)
        if weight_mode == _WEIGHT_SKIP:
            updated_sq += _descend_outer(W[k0:k1], O[0, k0:k1], E[0], descent_rate, l2,
                                         O[0, :0], O[0, :0])
            continue
        if i == 0 and n_used < n_in:
            # The products run on the used columns, whose rows then go back to their
            # places; the rows of the unused ones get no gradient. The compacted weights
            # are spent by now: the gradient's rows are made in their place.
            if weight_mode == _WEIGHT_DESCEND:
                _product_at(first_in, c0, c1, E, first_w[c0:c1], -descent_rate,
                            1.0 - descent_rate * l2, integers, characters, reals)
                _put_rows(W, first_w[c0:c1], runs, q0, q1, k0, k1, 1.0 - descent_rate * l2)
                continue
            _product_at(first_in, c0, c1, E, first_w[c0:c1], 1.0, 0.0, integers, characters,
                        reals)
            _put_rows(W_grad, first_w[c0:c1], runs, q0, q1, k0, k1, 0.0)
        elif weight_mode == _WEIGHT_DESCEND:
            _product_at(O, k0, k1, E, W[k0:k1], -descent_rate, 1.0 - descent_rate * l2,
                        integers, characters, reals)
            continue
        else:
            _product_at(O, k0, k1, E, W_grad[k0:k1], 1.0, 0.0, integers, characters, reals)
        if alpha != 0 or i < contracted:
            cgrad = workspace[layout[_CGRAD]:]
            W_direct = _weights(cgrad, layer_units, offsets, i) if i < contracted else W
            for r in range(k0, k1):
                for c in range(W.shape[1]):
                    value = np.float64(W_grad[r, c]) + l2 * W[r, c]
                    if i < contracted:
                        value += W_direct[r, c]
                    W_grad[r, c] = value
    if weight_mode != _WEIGHT_SKIP or alpha == 0 or size > 1:
        updated_sq = -1.0
    return data_loss, penalty, first_lo, first_hi, updated_sq


# ---------------------------------------------------------------------------------------
# Optimiser steps (scikit-learn's), one loop over the flat buffer; False on non-finite.


@_jit
def _sgd_step(params, grad, velocity, learning_rate, momentum, nesterov):
    finite = True  # no early exit: the loop vectorises
    for p in range(params.shape[0]):
        g = np.float64(grad[p])
        velocity[p] = momentum * velocity[p] - learning_rate * g
        if nesterov:
            params[p] += momentum * velocity[p] - learning_rate * g
        else:
            params[p] += velocity[p]
        finite &= abs(params[p]) < np.inf
    return finite


@_jit
def _adam_step(params, grad, first_moment, second_moment, learning_rate, beta_1, beta_2,
               epsilon, t):
    step = (learning_rate * math.sqrt(1.0 - math.pow(beta_2, t))
            / (1.0 - math.pow(beta_1, t)))
    finite = True
    for p in range(params.shape[0]):
        g = np.float64(grad[p])
        first_moment[p] = beta_1 * first_moment[p] + (1.0 - beta_1) * g
        second_moment[p] = beta_2 * second_moment[p] + (1.0 - beta_2) * (g * g)
        params[p] -= step * first_moment[p] / (math.sqrt(second_moment[p]) + epsilon)
        finite &= abs(params[p]) < np.inf
    return finite


# ---------------------------------------------------------------------------------------
# Epoch and full-batch kernels.


@_jit(inline="always")
def _batch_weight_sum(sample_weight, order, start, stop):
    total = 0.0
    for r in range(start, stop):
        total += sample_weight[order[r]]
    return total


@_jit(inline="always")
def _online_applies(batch_size, size, optimizer, momentum, noise, l1_weight, kl_weight,
                    penalized, contracting):
    """Whether _online_run may take the epoch's batches (csrc/_kernels.pyx)."""
    penalties = (l1_weight > 0 or kl_weight > 0) and _deepest_penalized(penalized) > 0
    return (batch_size == 1 and size == 1 and optimizer != ADAM and momentum == 0
            and noise == NO_NOISE and not contracting and not penalties)


@_jit
def _online_run(params, layer_units, offsets, hidden_activation, output_activation, loss,
                X, Y, sample_weight, order, stop, learning_rate, alpha, eps, grad,
                workspace, layout, weight_sq):
    """Mirrors csrc/_kernels.pyx:_online_run: the samples ``order[:stop]`` of an online
    plain-SGD epoch (_online_applies), in a loop of their own, each next sample's
    first-layer product made by the update of the first layer (_descend_outer).
    ``weight_sq`` is sum_i ||W_i||^2 at entry, or -1 when unknown. Returns ``(ok,
    loss_sum, penalty_sum, weight_sq)``, the last -1 when unknown (alpha 0)."""
    n_layers = layer_units.shape[0] - 1
    z_first = _activations(workspace, layout, layer_units, 1, 1)
    out_bias = _biases(grad, layer_units, offsets, n_layers - 1)
    if alpha != 0 and weight_sq < 0:
        weight_sq = _squared_weights(params, layer_units, offsets)
    loss_sum = 0.0
    penalty_sum = 0.0
    fused = False
    # A log loss is taken after the update, in the Cython kernel's order. (There its log
    # had held up the update's long pass; here the move measured within 2%, and the log
    # still costs about 8% of W2's epoch.)
    later = loss != SQUARED_ERROR and n_layers > 1
    for t in range(stop):
        sample = order[t]
        s = np.float64(sample_weight[sample])
        if s == 0:
            continue
        x = X[sample:sample + 1]
        # Forward (the output layer's bias and activation come with its loss).
        for i in range(n_layers):
            above = _activations(workspace, layout, layer_units, i + 1, 1)
            if not (i == 0 and fused):
                below = x if i == 0 else _activations(workspace, layout, layer_units, i, 1)
                _matmul(below, _weights(params, layer_units, offsets, i), above)
            if i < n_layers - 1:
                _bias_activate(_biases(params, layer_units, offsets, i), hidden_activation,
                               above)
        data_loss = _output_delta(
            _activations(workspace, layout, layer_units, n_layers, 1),
            _biases(params, layer_units, offsets, n_layers - 1), Y[sample:sample + 1],
            sample_weight[sample:sample + 1], s, output_activation, loss, eps,
            _deltas(workspace, layout, layer_units, n_layers, 1), out_bias, not later)
        penalty = alpha / (2.0 * s) * weight_sq if alpha != 0 else 0.0
        loss_sum += data_loss
        penalty_sum += penalty
        if not (np.isfinite(data_loss) and np.isfinite(penalty)):
            return False, loss_sum, penalty_sum, weight_sq
        # Backward.
        for k in range(n_layers - 1, 0, -1):
            O = _activations(workspace, layout, layer_units, k, 1)
            E = _deltas(workspace, layout, layer_units, k, 1)
            _matmul_bt(_deltas(workspace, layout, layer_units, k + 1, 1),
                       _weights(params, layer_units, offsets, k), E)
            for j in range(E.shape[1]):
                E[0, j] = E[0, j] * _derivative(O[0, j], hidden_activation)
        # The update, last layer first.
        x_next = X[0, :0]
        if t + 1 < stop and sample_weight[order[t + 1]] != 0:
            x_next = X[order[t + 1]]
        l2 = alpha / s
        total = 0.0
        finite = True
        for i in range(n_layers - 1, -1, -1):
            W = _weights(params, layer_units, offsets, i)
            E = _deltas(workspace, layout, layer_units, i + 1, 1)
            below = x if i == 0 else _activations(workspace, layout, layer_units, i, 1)
            total += _descend_outer(W, below[0], E[0], learning_rate, l2,
                                    x_next if i == 0 else x_next[:0], z_first[0])
            if alpha != 0 and l2 == 0:  # alpha / s below the smallest number
                total += _row_dot(_view(W, 0, 1, W.size), 0, _view(W, 0, 1, W.size), 0)
            b = _biases(params, layer_units, offsets, i)
            for c in range(b.shape[0]):
                b[c] = b[c] - learning_rate * E[0, c]
                finite &= abs(b[c]) < np.inf
        weight_sq = total if alpha != 0 else -1.0
        if not (finite and np.isfinite(total)):
            return False, loss_sum, penalty_sum, weight_sq
        fused = x_next.shape[0] > 0
        if later:
            loss_sum += _log_loss(loss, _activations(workspace, layout, layer_units,
                                                     n_layers, 1), Y[sample:sample + 1], 0, eps)
    return True, loss_sum, penalty_sum, weight_sq


@_jit
def _sgd_epoch(params, layer_units, hidden_activation, output_activation, loss, X, Y,
               sample_weight, order, batch_size, optimizer, learning_rate, momentum,
               nesterov, beta_1, beta_2, epsilon, adam_step, velocity, second_moment, alpha,
               l1_weight, kl_weight, kl_target, contraction_weight, penalized, noise,
               noise_level, noise_seed, epoch, eps, workspace, rank, size, team_state,
               team_sums, team_columns, team_bias):
    """Mirrors csrc/_kernels.pyx:_sgd_epoch, its plain SGD fast paths included: one epoch,
    or member ``rank``'s part of it in a team of ``size`` (see "Threads"; every member
    stops at the same batch). Returns ``(loss_sum, penalty_sum, ok)``.

    Without contraction, plain SGD (momentum 0) needs neither the stored gradient nor the
    velocity (v = -lr g is only written at the last batch of non-zero weight, where the
    caller can see it): a one-row batch applies the update from the outer product of the
    layer input and delta, a larger one folds it into the gradient product. All views are
    made once per epoch.
    """
    # The caller holds every array for the whole call (see _unowned).
    params = _unowned(params)
    workspace = _unowned(workspace)
    X = _unowned(X)
    Y = _unowned(Y)
    sample_weight = _unowned(sample_weight)
    order = _unowned(order)
    layer_units = _unowned(layer_units)
    penalized = _unowned(penalized)
    velocity = _unowned(velocity)
    second_moment = _unowned(second_moment)
    team_state = _unowned(team_state)
    team_sums = _unowned(team_sums)
    team_columns = _unowned(team_columns)
    team_bias = _unowned(team_bias)
    n_total = order.shape[0]
    n_layers = layer_units.shape[0] - 1
    n_in = layer_units[0]
    offsets_owner = _param_offsets(layer_units)
    offsets = _unowned(offsets_owner)
    rows_full = min(batch_size, n_total)
    layout_owner = _layout(layer_units, rows_full, contraction_weight > 0)
    layout = _unowned(layout_owner)
    # This member's column flags, union and runs (alone: flags and runs).
    columns_owner = np.empty(3 * n_in + 2, dtype=np.int64)
    columns = _unowned(columns_owner)
    if size > 1:
        columns = team_columns[rank * (3 * n_in + 2):(rank + 1) * (3 * n_in + 2)]
    blas_owners = _blas_arguments(params)
    integers = _unowned(blas_owners[0])
    characters = _unowned(blas_owners[1])
    reals = _unowned(blas_owners[2])
    grad = workspace[layout[_GRAD]:layout[_GRAD] + params.shape[0]]
    contracting = contraction_weight > 0 and _deepest_penalized(penalized) > 0
    plain = optimizer != ADAM and momentum == 0 and not contracting
    # A batch of zero weight contributes nothing (docs/kernels.md): the velocity of plain
    # SGD is written at the last batch of non-zero weight.
    last_start = ((n_total - 1) // batch_size) * batch_size
    while last_start >= 0:
        if _batch_weight_sum(sample_weight, order, last_start,
                             min(last_start + batch_size, n_total)) != 0:
            break
        last_start -= batch_size
    loss_sum = 0.0
    penalty_sum = 0.0
    batch = 0
    first = 0
    weight_sq = -1.0  # sum_i ||W_i||^2 when the last update summed it (else unknown)
    if last_start > 0 and _online_applies(batch_size, size, optimizer, momentum, noise,
                                          l1_weight, kl_weight, penalized, contracting):
        # Every batch but the last one of non-zero weight (plain SGD stores its velocity).
        ok, loss_sum, penalty_sum, weight_sq = _online_run(
            params, layer_units, offsets, hidden_activation, output_activation, loss, X, Y,
            sample_weight, order, last_start, learning_rate, alpha, eps, grad, workspace,
            layout, weight_sq)
        if not ok:
            return loss_sum, penalty_sum, 0
        first = batch = last_start
    for start in range(first, n_total, batch_size):
        stop = min(start + batch_size, n_total)
        n_rows = stop - start
        weight_sum = _batch_weight_sum(sample_weight, order, start, stop)
        if weight_sum == 0:
            batch += 1  # no update, no loss; Adam's step number still counts the batch
            continue
        r0, r1 = _share(n_rows, rank, size)
        _gather_batch(X, Y, sample_weight, _rows(order[start:stop], r0, r1, size), noise,
                      noise_level, noise_seed, epoch,
                      _rows(_activations(workspace, layout, layer_units, 0, n_rows), r0, r1, size),
                      _rows(_targets(workspace, layout, layer_units, n_rows), r0, r1, size),
                      _rows(_batch_weights(workspace, layout, n_rows), r0, r1, size), columns,
                      _may_compact(n_rows, n_in, layer_units[1], contracting))
        weight_mode = _WEIGHT_GRADS
        if plain and start < last_start:
            weight_mode = _WEIGHT_SKIP if n_rows == 1 else _WEIGHT_DESCEND
        # The online update also sums the new weights' squares: the next batch's L2 term
        # needs no pass of its own (as csrc/_kernels.pyx's weight_sq).
        data_loss, penalty, first_lo, first_hi, weight_sq = _batch_objective(
            params, layer_units, offsets, hidden_activation, output_activation, loss, n_rows,
            weight_sum, alpha, l1_weight, kl_weight, kl_target, contraction_weight, penalized,
            eps, grad, workspace, layout, weight_mode, learning_rate, columns, rank, size,
            team_state, team_sums, team_columns, team_bias, (integers, characters, reals),
            weight_sq)
        if not (np.isfinite(data_loss) and np.isfinite(penalty)):
            return loss_sum, penalty_sum, 0
        loss_sum += n_rows * data_loss
        penalty_sum += n_rows * penalty
        # This member's rows of each layer's weights (those of its gradient), its
        # columns of each bias.
        finite = True
        for i in range(n_layers):
            n_out = layer_units[i + 1]
            if i == 0:
                k0, k1 = first_lo, first_hi
            else:
                k0, k1 = _share(layer_units[i], rank, size)
            j0, j1 = _share(n_out, rank, size)
            w0, w1 = offsets[i, 0] + k0 * n_out, offsets[i, 0] + k1 * n_out
            b0, b1 = offsets[i, 1] + j0, offsets[i, 1] + j1
            if weight_mode != _WEIGHT_GRADS:
                # The weights are updated; the biases' gradient is in grad. Their
                # finiteness is the per-batch check; the weights are checked at the end
                # of the epoch (docs/kernels.md allows it).
                b = params[b0:b1]  # from 0 (see _batch_objective's bias loops)
                b_grad = grad[b0:b1]
                for c in range(b.shape[0]):
                    b[c] = b[c] - learning_rate * b_grad[c]
                    finite &= abs(b[c]) < np.inf
            elif optimizer == ADAM:
                t = np.float64(adam_step + batch + 1)
                finite &= _adam_step(params[w0:w1], grad[w0:w1], velocity[w0:w1],
                                     second_moment[w0:w1], learning_rate, beta_1, beta_2,
                                     epsilon, t)
                finite &= _adam_step(params[b0:b1], grad[b0:b1], velocity[b0:b1],
                                     second_moment[b0:b1], learning_rate, beta_1, beta_2,
                                     epsilon, t)
            else:
                finite &= _sgd_step(params[w0:w1], grad[w0:w1], velocity[w0:w1],
                                    learning_rate, momentum, nesterov)
                finite &= _sgd_step(params[b0:b1], grad[b0:b1], velocity[b0:b1],
                                    learning_rate, momentum, nesterov)
        if size > 1:
            team_sums[rank * _SUMS_PER_MEMBER + 2] = 0.0 if finite else 1.0
            _sync(size, team_state)  # the weights are whole again
            for k in range(size):
                finite &= team_sums[k * _SUMS_PER_MEMBER + 2] == 0
        if not finite:
            return loss_sum, penalty_sum, 0
        batch += 1
    if rank == 0:
        for p in range(params.shape[0]):
            if not abs(params[p]) < np.inf:
                return loss_sum, penalty_sum, 0
    # Keeps the owners alive to here (see _unowned).
    offsets_owner[0, 0] += (layout_owner[0] * 0 + columns_owner[0] * 0
                            + blas_owners[0][0] * 0 + blas_owners[1][0] * 0
                            + np.int64(blas_owners[2][0] * 0))
    return loss_sum, penalty_sum, 1


_batch_objective_outlined = _jit(_batch_objective.py_func)  # see _dense_outlined


@_jit
def _loss_and_gradient(params, layer_units, hidden_activation, output_activation, loss, X,
                       Y, sample_weight, alpha, l1_weight, kl_weight, kl_target,
                       contraction_weight, penalized, noise, noise_level, noise_seed, epoch,
                       eps, grad, workspace):
    n_rows = X.shape[0]
    weight_sum = 0.0
    for i in range(n_rows):
        weight_sum += sample_weight[i]
    if weight_sum == 0:  # a batch of zero weight contributes nothing (docs/kernels.md)
        grad[:] = 0
        return 0.0, 0.0
    offsets = _param_offsets(layer_units)
    layout = _layout(layer_units, n_rows, contraction_weight > 0)
    rows = np.arange(n_rows)  # row r is sample r for the noise generator
    columns = np.empty(3 * layer_units[0] + 2, dtype=np.int64)
    contracting = contraction_weight > 0 and _deepest_penalized(penalized) > 0
    _gather_batch(X, Y, sample_weight, rows, noise, noise_level, noise_seed, epoch,
                  _activations(workspace, layout, layer_units, 0, n_rows),
                  _targets(workspace, layout, layer_units, n_rows),
                  _batch_weights(workspace, layout, n_rows), columns,
                  _may_compact(n_rows, layer_units[0], layer_units[1], contracting))
    integers, characters, reals = _blas_arguments(params)
    no_team = np.zeros(1, dtype=np.int64)
    data_loss, penalty, _, _, _ = _batch_objective_outlined(
        params, layer_units, offsets, hidden_activation, output_activation, loss, n_rows,
        weight_sum, alpha, l1_weight, kl_weight, kl_target, contraction_weight, penalized,
        eps, grad, workspace, layout, _WEIGHT_GRADS, 0.0, columns, 0, 1, no_team,
        np.zeros(1), no_team, params[:0], (integers, characters, reals), -1.0)
    return data_loss, penalty


# ---------------------------------------------------------------------------------------
# Rosenblatt's perceptron, one-vs-rest, as scikit-learn's _plain_sgd (docs/kernels.md).


@_jit
def _weights_finite(coef, intercept):
    """1 when every weight and intercept is finite, else 0 (the end of an epoch)."""
    for c in range(coef.shape[0]):
        if not np.isfinite(intercept[c]):
            return 0
        for j in range(coef.shape[1]):
            if not np.isfinite(coef[c, j]):
                return 0
    return 1


@_jit
def _perceptron_epoch(coef, intercept, X, Y, sample_weight, order, active, eta,
                      fit_intercept, l2_strength, l1_strength, weight_pos, weight_neg,
                      l1_total, l1_q, n_updates, objective_sum):
    n_classes, n_features = coef.shape
    shrink = max(0.0, 1.0 - eta * l2_strength)
    prefetch = X.size * X.itemsize > _PREFETCH_BYTES
    for position in range(order.shape[0]):
        i = order[position]
        if prefetch and position + _PREFETCH_AHEAD < order.shape[0]:
            _prefetch_row(X, order[position + _PREFETCH_AHEAD])
        for c in range(n_classes):
            if active[c] == 0:
                continue
            y = np.float64(Y[i, c])
            p = _row_dot(X, i, coef, c) + intercept[c]
            objective = max(0.0, -y * p)
            if l2_strength > 0:
                objective += 0.5 * l2_strength * _row_dot(coef, c, coef, c)
            if l1_strength > 0:
                absolute = 0.0
                for j in range(n_features):
                    absolute += abs(np.float64(coef[c, j]))
                objective += l1_strength * absolute
            objective_sum[c] += objective
            update = 0.0
            if y * p <= 0:
                # grouped as scikit-learn: (eta y) * (class weight * sample weight)
                class_weight = weight_pos[c] if y > 0 else weight_neg[c]
                update = (eta * y) * (class_weight * sample_weight[i])
            if l2_strength > 0:
                for j in range(n_features):
                    coef[c, j] *= shrink
            if update != 0:
                for j in range(n_features):
                    coef[c, j] += update * X[i, j]
                n_updates[c] += 1
            if fit_intercept:
                intercept[c] += update
            if l1_strength > 0:
                l1_total[c] += eta * l1_strength
                for j in range(n_features):
                    z = coef[c, j]
                    if z > 0:
                        coef[c, j] = max(0.0, z - (l1_total[c] + l1_q[c, j]))
                    elif z < 0:
                        coef[c, j] = min(0.0, z + (l1_total[c] - l1_q[c, j]))
                    l1_q[c, j] += coef[c, j] - z
    return _weights_finite(coef, intercept)


# A one-class epoch on two threads: mirrors csrc/_kernels.pyx:PerceptronSplit. The state
# is int64: the block the epoch's thread is in, the helper's last published block, the
# stop flag and the block before the helper's first.
_SPLIT_ROWS = 1024
_SPLIT_PATIENCE = 3
_STARTED, _PUBLISHED, _STOP, _FIRST = range(4)
_NO_MARGINS = np.zeros(0)


@_jit
def _one_class_run(coef, intercept, X, Y, sample_weight, order, t0, t1, eta, fit_intercept,
                   weight_pos, weight_neg, n_updates, objective_sum, prefetch, margins,
                   valid):
    """The samples at positions t0 .. t1-1 of a one-class epoch, with the arithmetic of
    _perceptron_epoch; each margin from ``margins`` while ``valid`` (the helper's, until
    the first update), else taken here. (One loop: the step as an inlined function of its
    own ran at half the speed.)"""
    for t in range(t0, t1):
        i = order[t]
        if valid:
            p = margins[t]
        else:
            if prefetch and t + _PREFETCH_AHEAD < t1:
                _prefetch_row(X, order[t + _PREFETCH_AHEAD])
            p = _row_dot(X, i, coef, 0) + intercept[0]
        y = np.float64(Y[i, 0])
        objective_sum[0] += max(0.0, -y * p)
        if y * p <= 0:
            class_weight = weight_pos[0] if y > 0 else weight_neg[0]
            update = (eta * y) * (class_weight * sample_weight[i])
            if update != 0:
                for j in range(coef.shape[1]):
                    coef[0, j] += update * X[i, j]
                n_updates[0] += 1
                if fit_intercept:
                    intercept[0] += update
                valid = False


@_jit
def _split_until_quiet(coef, intercept, X, Y, sample_weight, order, eta, fit_intercept,
                       weight_pos, weight_neg, n_updates, objective_sum):
    """The blocks before the helper starts (csrc/_kernels.pyx:_perceptron_split_epoch):
    runs them alone and returns the first block b > 0, with a block after it, that follows
    a block without an update; the number of blocks if there is none (all run)."""
    n_order = order.shape[0]
    n_blocks = (n_order + _SPLIT_ROWS - 1) // _SPLIT_ROWS
    prefetch = X.size * X.itemsize > _PREFETCH_BYTES
    updates_before = n_updates[0]
    for block in range(n_blocks):
        if block > 0 and block + 1 < n_blocks and n_updates[0] == updates_before:
            return block
        updates_before = n_updates[0]
        _one_class_run(coef, intercept, X, Y, sample_weight, order, block * _SPLIT_ROWS,
                       min((block + 1) * _SPLIT_ROWS, n_order), eta, fit_intercept,
                       weight_pos, weight_neg, n_updates, objective_sum, prefetch,
                       _NO_MARGINS, False)
    return n_blocks


@_jit
def _split_blocks(coef, intercept, X, Y, sample_weight, order, eta, fit_intercept,
                  weight_pos, weight_neg, n_updates, objective_sum, state, margins, first,
                  helped):
    """Mirrors the rest of csrc/_kernels.pyx:_perceptron_split_epoch: blocks first ..
    with the helper (``helped``) taking blocks first + 1, first + 3, ...; then stops it.
    (Block ``first - 1`` had no update.)"""
    n_order = order.shape[0]
    n_blocks = (n_order + _SPLIT_ROWS - 1) // _SPLIT_ROWS
    prefetch = X.size * X.itemsize > _PREFETCH_BYTES
    updates_before = n_updates[0]
    misses = 0 if helped else _SPLIT_PATIENCE
    for block in range(first, n_blocks):
        _atomic_store(state, _STARTED, block)
        t = block * _SPLIT_ROWS
        stop = min(t + _SPLIT_ROWS, n_order)
        valid = False
        if (block - first) % 2 == 1 and misses < _SPLIT_PATIENCE:
            if n_updates[0] == updates_before:
                spins = 0
                while _atomic_load(state, _PUBLISHED) < block:
                    spins += 1
                    if spins > _BARRIER_SPINS:
                        _sched_yield()
                valid = True
            misses = misses - 1 if valid else misses + 1
            if misses == _SPLIT_PATIENCE:
                _atomic_store(state, _STOP, 1)
        updates_before = n_updates[0]
        _one_class_run(coef, intercept, X, Y, sample_weight, order, t, stop, eta,
                       fit_intercept, weight_pos, weight_neg, n_updates, objective_sum,
                       prefetch, margins, valid)
    _atomic_store(state, _STOP, 1)


@_jit
def _split_margins(coef, intercept, X, order, state, margins):
    """Mirrors csrc/_kernels.pyx:_split_margins: the helper thread's part."""
    n_order = order.shape[0]
    n_blocks = (n_order + _SPLIT_ROWS - 1) // _SPLIT_ROWS
    prefetch = X.size * X.itemsize > _PREFETCH_BYTES
    for block in range(state[_FIRST] + 1, n_blocks, 2):
        spins = 0
        while _atomic_load(state, _STARTED) < block - 1:
            if _atomic_load(state, _STOP):
                return
            spins += 1
            if spins > _BARRIER_SPINS:
                _sched_yield()
        if _atomic_load(state, _STOP):
            return
        stop = min((block + 1) * _SPLIT_ROWS, n_order)
        for t in range(block * _SPLIT_ROWS, stop):
            i = order[t]
            if prefetch and t + _PREFETCH_AHEAD < stop:
                _prefetch_row(X, order[t + _PREFETCH_AHEAD])
            margins[t] = _row_dot(X, i, coef, 0) + intercept[0]
        _atomic_store(state, _PUBLISHED, block)


def _perceptron_split(coef, intercept, X, Y, sample_weight, order, eta, fit_intercept,
                      weight_pos, weight_neg, n_updates, objective_sum):
    """Mirrors the two-thread route of csrc/_kernels.pyx:perceptron_epoch (one class, no
    penalty): the helper is a Python thread running _split_margins without the GIL,
    started at the first quiet block (_split_until_quiet)."""
    n_blocks = (order.shape[0] + _SPLIT_ROWS - 1) // _SPLIT_ROWS
    arguments = (coef, intercept, X, Y, sample_weight, order, eta, fit_intercept, weight_pos,
                 weight_neg, n_updates, objective_sum)
    first = _split_until_quiet(*arguments)
    if first < n_blocks:
        state = np.array([first, -1, 0, first], dtype=np.int64)
        margins = np.empty(order.shape[0])
        helper = threading.Thread(target=_split_margins,
                                  args=(coef, intercept, X, order, state, margins),
                                  daemon=True)
        try:
            helper.start()
        except RuntimeError:  # cannot start a thread: the rest alone
            helper = None
        try:
            _split_blocks(*arguments, state, margins, first, helper is not None)
        finally:
            state[_STOP] = 1
            if helper is not None:
                helper.join()
    return int(_weights_finite(coef, intercept))


# ---------------------------------------------------------------------------------------
# The public kernels (docs/kernels.md): coerce scalars, check the workspace, call the jit.


_EPS = {np.dtype(np.float32): float(np.finfo(np.float32).eps),
        np.dtype(np.float64): float(np.finfo(np.float64).eps)}
# The team arguments of an epoch run alone (state, sums, columns, output-bias parts): never
# read or written then, so one set per dtype serves every call.
_NO_TEAM = {dtype: (np.zeros(3, dtype=np.int64), np.zeros(1), np.zeros(3, dtype=np.int64),
                    np.zeros(1, dtype=dtype)) for dtype in _EPS}


# Numba compiles one signature per argument type, and read-only arrays are a type of
# their own; presenting every input read-only keeps it to one signature per dtype. Callers
# that pass the same inputs every epoch make them read-only once (_network.read_only).
_read_only = read_only


_NO_SEED = np.uint64(0)


def _seed(value):
    """A noise seed or epoch as the uint64 the generator works in (mod 2**64)."""
    return np.uint64(int(value) & 0xFFFFFFFFFFFFFFFF)


# Workspace sizes by (layer units, rows, contraction): online learning checks every epoch,
# and _layout costs a microsecond, a tenth of the Python around an epoch of W2.
_WORKSPACE_SIZES = {}


def _check_workspace(workspace, layer_units, rows, contraction):
    key = (layer_units.tobytes(), rows, contraction)
    needed = _WORKSPACE_SIZES.get(key)
    if needed is None:
        needed = _WORKSPACE_SIZES.setdefault(
            key, int(_layout(layer_units, rows, contraction)[_TOTAL]))
    if workspace.shape[0] < needed:
        raise ValueError(
            f"workspace holds {workspace.shape[0]} values but batches of {rows} rows need "
            f"{needed}: build it with make_workspace(layer_units, batch_size, dtype, "
            "contraction)."
        )


def forward(params, layer_units, hidden_activation, output_activation, first_layer,
            last_layer, X, out):
    """Mirrors csrc/_kernels.pyx:forward.

    Runs weight layers ``first_layer .. last_layer-1`` on ``X`` and writes
    ``o^{last_layer}`` into ``out``, in blocks of rows.
    """
    _forward(params, _read_only(layer_units), int(hidden_activation), int(output_activation),
             int(first_layer), int(last_layer), _read_only(X), out)


def sgd_epoch(params, layer_units, hidden_activation, output_activation, loss, X, Y,
              sample_weight, order, batch_size, optimizer, learning_rate, momentum,
              nesterov, beta_1, beta_2, epsilon, adam_step, velocity, second_moment, alpha,
              l1_weight, kl_weight, kl_target, contraction_weight, penalized, noise,
              noise_level, noise_seed, epoch, workspace):
    """Mirrors csrc/_kernels.pyx:sgd_epoch.

    One epoch of minibatch SGD or Adam over the batches ``order[k*batch_size:...]``;
    returns ``(loss_sum, penalty_sum, ok)`` (sums weighted by batch row counts). Large
    batches are shared between as many threads as BLAS may use (see "Threads").
    """
    layer_units = _read_only(layer_units)
    rows = min(int(batch_size), order.shape[0])
    contracting = float(contraction_weight) > 0 and bool(np.any(penalized))
    _check_workspace(workspace, layer_units, rows, float(contraction_weight) > 0)
    arguments = (
        params, layer_units, int(hidden_activation), int(output_activation), int(loss),
        _read_only(X), _read_only(Y), _read_only(sample_weight), _read_only(order),
        int(batch_size), int(optimizer), float(learning_rate),
        float(momentum), bool(nesterov), float(beta_1), float(beta_2), float(epsilon),
        int(adam_step), velocity, second_moment, float(alpha), float(l1_weight),
        float(kl_weight), float(kl_target), float(contraction_weight), _read_only(penalized),
        int(noise), float(noise_level),
        # The seed and epoch only key the noise; without it, no conversion (a quarter of
        # a microsecond each, online learning pays it every epoch).
        _seed(noise_seed) if noise != NO_NOISE else _NO_SEED,
        _seed(epoch) if noise != NO_NOISE else _NO_SEED,
        _EPS[params.dtype], workspace)
    size = _team_size(layer_units, max(rows, 1), float(l1_weight), float(kl_weight),
                      contracting)
    results = _team_epoch(arguments, size, int(layer_units[0]), int(layer_units[-1]),
                          params.dtype) if size > 1 else None
    if results is None:  # alone (or no thread could be started)
        loss_sum, penalty_sum, ok = _sgd_epoch(*arguments, 0, 1, *_NO_TEAM[params.dtype])
        return float(loss_sum), float(penalty_sum), int(ok)
    loss_sum, penalty_sum, _ = results[0]
    return float(loss_sum), float(penalty_sum), int(min(ok for _, _, ok in results))


def _team_epoch(arguments, size, n_in, n_out, dtype):
    """Run an epoch on ``size`` members: this thread is member 0, the others get a thread
    each (the kernel releases the GIL); BLAS runs single-threaded meanwhile. Returns each
    member's result, or None, having changed nothing, when a thread could not start."""
    get_threads, set_threads = _blas_threads.controls()
    team_state = np.array([0, 0, size], dtype=np.int64)
    team_sums = np.zeros(size * _SUMS_PER_MEMBER)
    team_columns = np.zeros(size * (3 * n_in + 2), dtype=np.int64)
    team_bias = np.zeros(size * n_out, dtype=dtype)
    results = [None] * size
    start = threading.Barrier(size)  # no member starts before all of them can

    def member(rank):
        try:
            start.wait()
        except threading.BrokenBarrierError:
            return
        results[rank] = _sgd_epoch(*arguments, rank, size, team_state, team_sums,
                                   team_columns, team_bias)

    threads = []
    try:
        for rank in range(1, size):
            thread = threading.Thread(target=member, args=(rank,), daemon=True)
            thread.start()
            threads.append(thread)
    except RuntimeError:  # cannot start a thread
        start.abort()
    previous = get_threads()
    try:
        if len(threads) == size - 1:
            set_threads(1)
            member(0)
    finally:
        for thread in threads:
            thread.join()
        set_threads(previous)
    return None if results[0] is None else results


def loss_and_gradient(params, layer_units, hidden_activation, output_activation, loss, X, Y,
                      sample_weight, alpha, l1_weight, kl_weight, kl_target,
                      contraction_weight, penalized, noise, noise_level, noise_seed, epoch,
                      grad, workspace):
    """Mirrors csrc/_kernels.pyx:loss_and_gradient.

    Objective and gradient over all rows of ``X`` as one batch (for L-BFGS); writes the
    gradient into ``grad`` and returns ``(data_loss, penalty)``.
    """
    layer_units = _read_only(layer_units)
    _check_workspace(workspace, layer_units, X.shape[0], float(contraction_weight) > 0)
    data_loss, penalty = _loss_and_gradient(
        params, layer_units, int(hidden_activation), int(output_activation), int(loss),
        _read_only(X), _read_only(Y), _read_only(sample_weight), float(alpha),
        float(l1_weight), float(kl_weight), float(kl_target), float(contraction_weight),
        _read_only(penalized), int(noise), float(noise_level),
        _seed(noise_seed), _seed(epoch), _EPS[params.dtype], grad, workspace)
    return float(data_loss), float(penalty)


def corrupt(X, sample_index, noise, noise_level, noise_seed, epoch, out):
    """Mirrors csrc/_kernels.pyx:corrupt.

    Writes the corrupted copy of ``X`` into ``out``; row ``r`` is sample
    ``sample_index[r]`` for the counter-based generator.
    """
    _corrupt(_read_only(X), _read_only(sample_index), int(noise), float(noise_level),
             _seed(noise_seed), _seed(epoch), out)


def perceptron_epoch(coef, intercept, X, Y, sample_weight, order, active, eta,
                     fit_intercept, l2_strength, l1_strength, weight_pos, weight_neg,
                     l1_total, l1_q, n_updates, objective_sum):
    """Mirrors csrc/_kernels.pyx:perceptron_epoch.

    One online epoch of the one-vs-rest perceptron (scikit-learn's ``_plain_sgd`` with the
    perceptron loss and a constant learning rate); returns 1, or 0 on a non-finite weight.
    """
    X, Y, sample_weight, order = _read_only(X), _read_only(Y), _read_only(sample_weight), \
        _read_only(order)
    weight_pos, weight_neg = _read_only(weight_pos), _read_only(weight_neg)
    # Two threads for one unpenalised class, when BLAS may use two and the input is too big
    # for the cache (csrc/_kernels.pyx:PerceptronSplit).
    if (coef.shape[0] == 1 and active[0] and not (l2_strength > 0 or l1_strength > 0)
            and X.size * X.itemsize > _PREFETCH_BYTES and order.shape[0] >= 2 * _SPLIT_ROWS
            and _blas_threads.blas_threads() >= 2):
        return _perceptron_split(coef, intercept, X, Y, sample_weight, order, float(eta),
                                 bool(fit_intercept), weight_pos, weight_neg, n_updates,
                                 objective_sum)
    return int(_perceptron_epoch(
        coef, intercept, X, Y, sample_weight, _read_only(order), _read_only(active),
        float(eta), bool(fit_intercept), float(l2_strength), float(l1_strength), weight_pos,
        weight_neg, l1_total, l1_q, n_updates, objective_sum))
