"""The compiled kernels of fastnn (the ``cython`` backend).

Every public function follows docs/kernels.md: same names, argument order and meaning as
``fastnn._kernels_ref`` (the NumPy oracle) and ``fastnn._kernels_numba``. The ``def``
functions check sizes, take raw pointers once, release the GIL and hand over to ``cdef``
kernels; nothing below the ``def`` layer allocates, so an epoch of online learning costs
one Python call, not one per sample. Fused ``floating`` types keep float32 data float32
end to end; sums (losses, norms) are accumulated in double.
"""

from libc.math cimport cos, fabs, isfinite, log, sqrt
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from cython cimport floating

cimport _codes
from _blas cimport _dot, blas_gemm, direct_gemm, gemm, gemm_scaled

import numpy as np

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define FASTNN_PREFETCH(address) __builtin_prefetch(address)
    #else
    #define FASTNN_PREFETCH(address) ((void) 0)
    #endif
    """
    void FASTNN_PREFETCH(const void* address) noexcept nogil


cdef extern from *:
    """
    #include <sched.h>
    #if defined(__x86_64__) || defined(__i386__)
    #define FASTNN_PAUSE() __builtin_ia32_pause()
    #elif defined(__aarch64__)
    #define FASTNN_PAUSE() __asm__ __volatile__("yield")
    #else
    #define FASTNN_PAUSE() ((void) 0)
    #endif
    /* A barrier for the few threads of one epoch (see Team). Waits are short (the
       members' shares of a batch are equal), so a waiter spins first; past
       FASTNN_SPINS pauses (up to 0.2 ms: a pause takes 10 to 140 cycles) it yields
       the core at every check, so that more members than cores, or members the
       system has descheduled, still progress. (256 pauses measured a few percent
       slower on W4's frequent waits, and no faster with more members than cores.)
       The last to arrive resets the count, then opens the next generation (release),
       which every waiter reads (acquire): all writes before the barrier are seen
       after it. */
    #define FASTNN_SPINS 4096
    typedef struct { int arrived; int generation; int size; } fastnn_barrier;
    static void fastnn_barrier_wait(fastnn_barrier* b) {
        int generation = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
        long spins = 0;
        if (__atomic_add_fetch(&b->arrived, 1, __ATOMIC_ACQ_REL) == b->size) {
            __atomic_store_n(&b->arrived, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&b->generation, generation + 1, __ATOMIC_RELEASE);
            return;
        }
        while (__atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == generation) {
            if (spins++ < FASTNN_SPINS) FASTNN_PAUSE(); else sched_yield();
        }
    }
    static int fastnn_load(const int* flag) {
        return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
    }
    /* The perceptron's two-thread epoch (PerceptronSplit): block counters. */
    static int64_t fastnn_load64(const int64_t* x) {
        return __atomic_load_n(x, __ATOMIC_ACQUIRE);
    }
    static void fastnn_store64(int64_t* x, int64_t value) {
        __atomic_store_n(x, value, __ATOMIC_RELEASE);
    }
    static void fastnn_store(int* flag, int value) {
        __atomic_store_n(flag, value, __ATOMIC_RELEASE);
    }
    """
    ctypedef struct fastnn_barrier:
        int arrived
        int generation
        int size
    void fastnn_barrier_wait(fastnn_barrier* barrier) noexcept nogil
    int fastnn_load(const int* flag) noexcept nogil
    int64_t fastnn_load64(const int64_t* x) noexcept nogil
    void fastnn_store64(int64_t* x, int64_t value) noexcept nogil
    void fastnn_store(int* flag, int value) noexcept nogil
    void FASTNN_PAUSE() noexcept nogil
    int sched_yield() noexcept nogil
    enum: FASTNN_SPINS


cdef extern from *:
    """
    /* The inner loop of the online update (_descend_outer): COLUMNS (a block of
       FASTNN_ONLINE_BLOCK, or of FASTNN_ONLINE_NARROW for narrower layers and the rest
       of wide ones) columns of p <- (1 - lr l2) p - x (lr d)^T, and on the way the next
       sample's
       product z = x_next @ p and, with the L2 term (l2 != 0), the sum of p^2; in GCC/Clang
       vector types. Locals of a vector type stay in registers; the same
       sums in local arrays in Cython stayed on the stack, a store and a load per row
       (perf). The vectors are the machine's own width: wider ones, split by the
       compiler, ran W2 ten times slower in a build without AVX (FASTNN_PORTABLE); a
       block narrower than one of them takes vectors as wide as the block. */
    #define FASTNN_ONLINE_BLOCK 32
    #define FASTNN_ONLINE_NARROW 8
    /* FASTNN_VECTOR_BYTES, the machine's vector width: _blas.pxd (_dot). */
    #define FASTNN_BLOCK_BYTES(T, COLUMNS)                                             \\
        ((COLUMNS) * sizeof(T) < FASTNN_VECTOR_BYTES ? (COLUMNS) * sizeof(T)          \\
                                                      : FASTNN_VECTOR_BYTES)
    #define FASTNN_DESCEND_BLOCK(T, NAME, COLUMNS)                                     \\
    typedef T NAME##_vec                                                             \\
        __attribute__((vector_size(FASTNN_BLOCK_BYTES(T, COLUMNS)), aligned(sizeof(T)), \\
                       may_alias));                                                   \\
    enum { NAME##_lanes = FASTNN_BLOCK_BYTES(T, COLUMNS) / sizeof(T),                 \\
           NAME##_count = (COLUMNS) / NAME##_lanes };                                  \\
    static inline __attribute__((always_inline)) double NAME##_loop(                  \\
            T* p, const T* x, const T* d, Py_ssize_t n_rows, Py_ssize_t n_cols,       \\
            T lr, T l2, const T* x_next, T* z_next, int forward, int penalized) {     \\
        NAME##_vec dv[NAME##_count], zv[NAME##_count], sv[NAME##_count], w;           \\
        T keep = 1 - lr * l2;                                                         \\
        double total = 0;                                                             \\
        for (int v = 0; v < NAME##_count; v++) {                                      \\
            dv[v] = lr * *(const NAME##_vec*) (d + v * NAME##_lanes);                 \\
            zv[v] = dv[v] * 0;                                                        \\
            sv[v] = zv[v];                                                            \\
        }                                                                             \\
        for (Py_ssize_t r = 0; r < n_rows; r++) {                                     \\
            T* row = p + r * n_cols;                                                  \\
            T a = x[r], b = forward ? x_next[r] : 0;                                  \\
            for (int v = 0; v < NAME##_count; v++) {                                  \\
                w = *(NAME##_vec*) (row + v * NAME##_lanes);                          \\
                /* Without L2, one operation less: keep is 1, and 1 w is w. */        \\
                w = penalized ? keep * w - a * dv[v] : w - a * dv[v];                 \\
                *(NAME##_vec*) (row + v * NAME##_lanes) = w;                          \\
                if (forward) zv[v] += b * w;                                          \\
                if (penalized) sv[v] += w * w;                                        \\
            }                                                                         \\
        }                                                                             \\
        for (int v = 0; v < NAME##_count; v++) {                                      \\
            if (forward) *(NAME##_vec*) (z_next + v * NAME##_lanes) = zv[v];          \\
            if (penalized)                                                            \\
                for (int lane = 0; lane < NAME##_lanes; lane++) total += sv[v][lane]; \\
        }                                                                             \\
        return total;                                                                 \\
    }                                                                                 \\
    /* One loop for each case: a test inside it would cost as much as the work. */   \\
    static double NAME(T* p, const T* x, const T* d, Py_ssize_t n_rows,               \\
                       Py_ssize_t n_cols, T lr, T l2, const T* x_next, T* z_next) {    \\
        if (x_next != NULL && l2 != 0)                                                \\
            return NAME##_loop(p, x, d, n_rows, n_cols, lr, l2, x_next, z_next, 1, 1); \\
        if (x_next != NULL)                                                           \\
            return NAME##_loop(p, x, d, n_rows, n_cols, lr, l2, x_next, z_next, 1, 0); \\
        if (l2 != 0)                                                                  \\
            return NAME##_loop(p, x, d, n_rows, n_cols, lr, l2, x_next, z_next, 0, 1); \\
        return NAME##_loop(p, x, d, n_rows, n_cols, lr, l2, x_next, z_next, 0, 0);     \\
    }
    FASTNN_DESCEND_BLOCK(float, fastnn_descend_block_float, FASTNN_ONLINE_BLOCK)
    FASTNN_DESCEND_BLOCK(double, fastnn_descend_block_double, FASTNN_ONLINE_BLOCK)
    FASTNN_DESCEND_BLOCK(float, fastnn_descend_narrow_float, FASTNN_ONLINE_NARROW)
    FASTNN_DESCEND_BLOCK(double, fastnn_descend_narrow_double, FASTNN_ONLINE_NARROW)
    /* The whole blocks of a row, wide ones then narrow ones: returns the sum of squares
       and sets *done to the first column after them (the rest is _descend_outer's). */
    #define FASTNN_DESCEND_BLOCKS(T, NAME, WIDE, NARROW)                               \\
    static double NAME(T* p, const T* x, const T* d, Py_ssize_t n_rows,               \\
                       Py_ssize_t n_cols, T lr, T l2, const T* x_next, T* z_next,      \\
                       Py_ssize_t* done) {                                            \\
        double total = 0;                                                             \\
        Py_ssize_t j0 = 0;                                                            \\
        for (; j0 + FASTNN_ONLINE_BLOCK <= n_cols; j0 += FASTNN_ONLINE_BLOCK)         \\
            total += WIDE(p + j0, x, d + j0, n_rows, n_cols, lr, l2, x_next,          \\
                          x_next != NULL ? z_next + j0 : NULL);                       \\
        for (; j0 + FASTNN_ONLINE_NARROW <= n_cols; j0 += FASTNN_ONLINE_NARROW)       \\
            total += NARROW(p + j0, x, d + j0, n_rows, n_cols, lr, l2, x_next,        \\
                            x_next != NULL ? z_next + j0 : NULL);                     \\
        *done = j0;                                                                   \\
        return total;                                                                 \\
    }
    FASTNN_DESCEND_BLOCKS(float, fastnn_descend_blocks_float, fastnn_descend_block_float,
                          fastnn_descend_narrow_float)
    FASTNN_DESCEND_BLOCKS(double, fastnn_descend_blocks_double, fastnn_descend_block_double,
                          fastnn_descend_narrow_double)
    """
    double fastnn_descend_blocks_float(float* p, const float* x, const float* d,
                                       Py_ssize_t n_rows, Py_ssize_t n_cols, float lr,
                                       float l2, const float* x_next, float* z_next,
                                       Py_ssize_t* done) noexcept nogil
    double fastnn_descend_blocks_double(double* p, const double* x, const double* d,
                                        Py_ssize_t n_rows, Py_ssize_t n_cols, double lr,
                                        double l2, const double* x_next, double* z_next,
                                        Py_ssize_t* done) noexcept nogil


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t* thread, const void* attr,
                       void* (*start)(void*) noexcept nogil, void* arg)
    int pthread_join(pthread_t thread, void** result)


cdef enum:
    # Inputs smaller than this stay in cache over an epoch: prefetching them only costs.
    PREFETCH_BYTES = 4 * 1024 * 1024
    # Rows the perceptron asks for ahead of the one it reads: one row (800 bytes at 100
    # features) arrives too late to hide the latency. Four first measured best on W1
    # (float64 16 -> 18 M samples/s); with today's faster epoch, eight is better: W1
    # float64 31.5 -> 32.3-33.8 M rows/s in order, 18.4 -> 19.0 M shuffled, float32 the
    # same within the noise (A/B in one process, best of 10 epochs, 2026-11-28).
    PREFETCH_AHEAD = 8


cdef inline void _prefetch_row(const floating* row, Py_ssize_t n) noexcept nogil:
    """Ask for a row of the input a cache line at a time: rows taken in shuffled order
    defeat the hardware prefetcher, and copying or dotting them is bound by memory."""
    cdef Py_ssize_t offset
    for offset in range(0, n * <Py_ssize_t> sizeof(floating), 64):
        FASTNN_PREFETCH(<const char*> row + offset)


cdef double TWO_PI = 6.283185307179586
cdef double TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0
cdef double EPS_FLOAT32 = 1.1920928955078125e-07
cdef double EPS_FLOAT64 = 2.220446049250313e-16


def codes():
    """The integer codes compiled into this module (tests compare them with _codes.py)."""
    return {
        "IDENTITY": _codes.IDENTITY, "LOGISTIC": _codes.LOGISTIC, "TANH": _codes.TANH,
        "RELU": _codes.RELU, "SOFTMAX": _codes.SOFTMAX,
        "SQUARED_ERROR": _codes.SQUARED_ERROR,
        "BINARY_LOG_LOSS": _codes.BINARY_LOG_LOSS, "LOG_LOSS": _codes.LOG_LOSS,
        "PERCEPTRON": _codes.PERCEPTRON,
        "SGD": _codes.SGD, "ADAM": _codes.ADAM,
        "NO_NOISE": _codes.NO_NOISE, "MASK_NOISE": _codes.MASK_NOISE,
        "GAUSSIAN_NOISE": _codes.GAUSSIAN_NOISE,
    }


# --------------------------------------------------------------------------------------
# Network geometry and workspace layout (offsets in elements, computed once per call)
# --------------------------------------------------------------------------------------

cdef struct Net:
    Py_ssize_t n_layers          # L, the number of weight layers
    const int64_t* units         # L + 1 layer widths
    int64_t* coef_off            # L offsets of W_i in params
    int64_t* bias_off            # L offsets of b_i in params
    int64_t* lay                 # workspace layout, see _layout
    int64_t* columns             # 2 units[0] + 2 entries for _used_columns
    Py_ssize_t n_params


# Workspace slots: six arrays of L + 1 per-layer offsets, then single slots.
cdef enum:
    SLOT_ACT = 0        # activations o^k (k = 0: the gathered, corrupted input)
    SLOT_DELTA = 1      # deltas dObjective/da^k, already weighted by s_i / S
    SLOT_PEN = 2        # dPenalty/do^k of the L1 / KL activity penalties
    SLOT_CA = 3         # dContraction/da^k through g'' (contractive penalty)
    SLOT_JAC = 4        # per-sample Jacobian J^k = d o^k / d x
    SLOT_M = 5          # per-sample W_{k-1}^T J^{k-1}
    N_LAYER_SLOTS = 6
    FIX_SW = 0          # s_i / S of the batch rows
    FIX_GRAD = 1        # gradient, layout of params
    FIX_VEC = 2         # two vectors of the widest layer
    FIX_GBAR0 = 3       # backward Jacobian buffers (deep contractive penalty)
    FIX_GBAR1 = 4
    FIX_XC = 5          # the batch's input restricted to its used columns
    FIX_WC = 6          # the first layer's weights of those columns
    FIX_TOTAL = 7
    N_FIXED = 8


cdef inline Py_ssize_t _slot(Py_ssize_t n_layers, int kind, Py_ssize_t k) noexcept nogil:
    return kind * (n_layers + 1) + k


cdef inline Py_ssize_t _fixed(Py_ssize_t n_layers, int which) noexcept nogil:
    return N_LAYER_SLOTS * (n_layers + 1) + which


# Input columns that are zero in every row of a batch (the empty border of an image:
# about a quarter of MNIST's columns in a batch of 512, a third in one of 64) add nothing
# to the first layer's products. A batch with enough of them runs its first layer on the
# columns it uses: both products of that layer shrink by the share of zero columns, for
# one copy of the used inputs and weights (bench/README.md, "Zero input columns").
cdef enum:
    COMPACT_MIN_ROWS = 16           # smaller batches: the copies cost what they save
    COMPACT_MIN_MULADDS = 1 << 18   # smaller first layers too (W3's 64 x 64 x 32 lost
                                    # 8-23% when it compacted)
    COMPACT_MIN_SHARE = 8           # compact when at least 1/8 of the columns are zero


cdef inline bint _may_compact(Py_ssize_t rows, Py_ssize_t n_in, Py_ssize_t n_out,
                              bint contraction) noexcept nogil:
    """Whether a batch of ``rows`` rows into a first layer of n_in x n_out weights may
    compact: not with the contractive penalty, whose Jacobians are taken with respect to
    every input. (The workspace reserves the space whatever ``contraction``: one made
    for it must also serve a network whose penalty has nothing to contract.)"""
    return (rows >= COMPACT_MIN_ROWS and rows * n_in * n_out >= COMPACT_MIN_MULADDS
            and not contraction)


cdef int64_t* _new_net(Net* net, const int64_t* units, Py_ssize_t n_layers,
                       Py_ssize_t rows, bint contraction) noexcept nogil:
    """Fill ``net`` (one malloc, freed by the caller); returns NULL when out of memory."""
    cdef Py_ssize_t n_lay = N_LAYER_SLOTS * (n_layers + 1) + N_FIXED
    cdef int64_t* block = <int64_t*> malloc((2 * n_layers + n_lay + 2 * units[0] + 2)
                                            * sizeof(int64_t))
    if block == NULL:
        return NULL
    net.n_layers = n_layers
    net.units = units
    net.coef_off = block
    net.bias_off = block + n_layers
    net.lay = block + 2 * n_layers
    net.columns = net.lay + n_lay
    cdef Py_ssize_t i, k, position = 0, widest = 0
    for i in range(n_layers):
        net.coef_off[i] = position
        position += units[i] * units[i + 1]
        net.bias_off[i] = position
        position += units[i + 1]
    net.n_params = position
    for k in range(n_layers + 1):
        if units[k] > widest:
            widest = units[k]
    cdef int64_t* lay = net.lay
    for i in range(n_lay):
        lay[i] = 0
    position = 0
    for k in range(n_layers + 1):
        lay[_slot(n_layers, SLOT_ACT, k)] = position
        position += rows * units[k]
    for k in range(1, n_layers + 1):
        lay[_slot(n_layers, SLOT_DELTA, k)] = position
        position += rows * units[k]
    for k in range(1, n_layers):
        lay[_slot(n_layers, SLOT_PEN, k)] = position
        position += rows * units[k]
    if contraction:
        for k in range(1, n_layers):
            lay[_slot(n_layers, SLOT_CA, k)] = position
            position += rows * units[k]
            lay[_slot(n_layers, SLOT_JAC, k)] = position
            position += units[k] * units[0]
            lay[_slot(n_layers, SLOT_M, k)] = position
            position += units[k] * units[0]
    lay[_fixed(n_layers, FIX_SW)] = position
    position += rows
    lay[_fixed(n_layers, FIX_GRAD)] = position
    position += net.n_params
    lay[_fixed(n_layers, FIX_VEC)] = position
    position += 2 * widest
    if contraction:
        lay[_fixed(n_layers, FIX_GBAR0)] = position
        position += widest * units[0]
        lay[_fixed(n_layers, FIX_GBAR1)] = position
        position += widest * units[0]
    if _may_compact(rows, units[0], units[1], False):
        lay[_fixed(n_layers, FIX_XC)] = position
        position += rows * units[0]
        lay[_fixed(n_layers, FIX_WC)] = position
        position += units[0] * units[1]
    lay[_fixed(n_layers, FIX_TOTAL)] = position
    return block


cdef class _Geometry:
    """Owns a ``Net`` for the duration of one kernel call (frees it however we leave)."""
    cdef Net net
    cdef int64_t* block

    def __cinit__(self, const int64_t[::1] layer_units, Py_ssize_t rows, bint contraction):
        if layer_units.shape[0] < 2:
            raise ValueError("layer_units needs at least an input and an output width.")
        for k in range(layer_units.shape[0]):
            if layer_units[k] < 1:
                raise ValueError(f"layer_units must be positive, got {list(layer_units)}.")
        self.block = _new_net(&self.net, &layer_units[0], layer_units.shape[0] - 1,
                              rows, contraction)
        if self.block == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.block)

    cdef Py_ssize_t workspace_size(self):
        return self.net.lay[_fixed(self.net.n_layers, FIX_TOTAL)]

    cdef check(self, Py_ssize_t n_params, Py_ssize_t workspace_length):
        if n_params != self.net.n_params:
            raise ValueError(
                f"params has {n_params} entries but layer_units needs {self.net.n_params}.")
        if workspace_length < self.workspace_size():
            raise ValueError(
                f"workspace has {workspace_length} entries, this call needs "
                f"{self.workspace_size()}; make it with make_workspace for this batch size.")


def make_workspace(layer_units, batch_size, dtype, contraction):
    """Scratch memory for ``sgd_epoch`` / ``loss_and_gradient`` on batches of up to
    ``batch_size`` rows (docs/kernels.md); ``contraction`` reserves the Jacobians."""
    units = np.ascontiguousarray(layer_units, dtype=np.int64)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    geometry = _Geometry(units, int(batch_size), bool(contraction))
    return np.zeros(geometry.workspace_size(), dtype=dtype)


# --------------------------------------------------------------------------------------
# Element-wise pieces: activations, their derivatives, the noise generator
# --------------------------------------------------------------------------------------

cdef inline floating _derivative(int activation, floating o) noexcept nogil:
    """g'(a) written with o = g(a) (relu's derivative at 0 is 0)."""
    if activation == _codes.LOGISTIC:
        return o * (1 - o)
    if activation == _codes.TANH:
        return 1 - o * o
    if activation == _codes.RELU:
        return 1 if o > 0 else 0
    return 1


cdef inline floating _second_derivative(int activation, floating o) noexcept nogil:
    """g''(a) written with o = g(a); zero for the piecewise linear activations."""
    if activation == _codes.LOGISTIC:
        return o * (1 - o) * (1 - 2 * o)
    if activation == _codes.TANH:
        return -2 * o * (1 - o * o)
    return 0


cdef union DoubleBits:
    double value
    int64_t bits


cdef inline double _exp(double x) noexcept nogil:
    """exp(x) in plain arithmetic, so that loops over it vectorise (libm's exp is a call
    per element): x = k ln2 + r with |r| <= ln2 / 2 (Cody-Waite), exp(r) by its Taylor
    polynomial to degree 13 (truncation below 1e-17), 2^k written into the exponent bits.
    Within two ulps of exp on [-708, 709]; beyond, the argument is clamped (exp(-708) is
    3e-308, where libm returns a denormal or 0: no difference in any quantity fastnn
    computes from it)."""
    cdef DoubleBits scale
    cdef double k, r, r2, r4, r8, h
    x = min(max(x, -708.0), 709.0)
    # Round to nearest through the 2^52 + 2^51 trick (no rint call, vectorises anywhere).
    k = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
    r = (x - k * 0.6931471803691238) - k * 1.9082149292705877e-10
    # exp(r) = 1 + (r + r^2 h(r)), h in Estrin's scheme (pairs of terms, then powers of
    # r^2): a chain of six operations, not Horner's fourteen, which bounded online
    # learning's one-unit outputs by their latency. The 1 comes last, so that the
    # rounding of the small terms stays small: within one ulp, as Horner's.
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    h = (((0.5 + r * (1.0 / 6.0)) + r2 * (1.0 / 24.0 + r * (1.0 / 120.0)))
         + r4 * ((1.0 / 720.0 + r * (1.0 / 5040.0))
                 + r2 * (1.0 / 40320.0 + r * (1.0 / 362880.0)))
         + r8 * ((1.0 / 3628800.0 + r * (1.0 / 39916800.0))
                 + r2 * (1.0 / 479001600.0 + r * (1.0 / 6227020800.0))))
    scale.bits = (<int64_t> k + 1023) << 52
    return (1.0 + (r + r2 * h)) * scale.value


def _exp_twin(double x):
    """The def twin of ``_exp``, for tests."""
    return _exp(x)


def _tanh_twin(double a):
    """The def twin of ``_tanh`` (double), for tests."""
    return _tanh(a)


cdef inline floating _tanh(floating a) noexcept nogil:
    """tanh through one exp (libm's tanh is a call through expm1): the absolute error
    stays at rounding level, which is what training sees. The exp in double, the rest
    in the type of a: a float32 division takes a quarter of a double one's time per
    entry (AVX-512), and was a quarter of W2's hidden layer. (The ones are cast: Cython
    writes a bare 1 as the double 1.0, which would make the division a double one.)"""
    cdef floating one = 1
    cdef floating t = <floating> _exp(-2.0 * fabs(a))
    cdef floating r = (one - t) / (one + t)
    return r if a >= 0 else -r


cdef void _bias_activation(int activation, floating* A, const floating* b,
                           Py_ssize_t n_rows, Py_ssize_t n_cols) noexcept nogil:
    """A <- g(A + b) row by row, in one pass (softmax subtracts the row maximum)."""
    cdef Py_ssize_t r, j
    cdef floating* row
    cdef floating top, one = 1
    cdef double total
    for r in range(n_rows):
        row = A + r * n_cols
        if activation == _codes.IDENTITY:
            for j in range(n_cols):
                row[j] = row[j] + b[j]
        elif activation == _codes.RELU:
            for j in range(n_cols):
                row[j] = row[j] + b[j]
                if row[j] < 0:
                    row[j] = 0
        elif activation == _codes.LOGISTIC:
            # The exp in double, its reciprocal in the type of A (as _tanh).
            for j in range(n_cols):
                row[j] = one / (one + <floating> _exp(-<double> (row[j] + b[j])))
        elif activation == _codes.TANH:
            for j in range(n_cols):
                row[j] = _tanh(row[j] + b[j])
        else:  # softmax
            for j in range(n_cols):
                row[j] = row[j] + b[j]
            top = row[0]
            for j in range(1, n_cols):
                if row[j] > top:
                    top = row[j]
            total = 0
            for j in range(n_cols):
                row[j] = <floating> _exp(row[j] - top)
                total += row[j]
            for j in range(n_cols):
                row[j] = <floating> (row[j] / total)


cdef void _hidden_delta(int activation, floating* D, const floating* O,
                        const floating* pen, const floating* ca,
                        Py_ssize_t n) noexcept nogil:
    """D <- g'(a) * (D + pen) + ca in place (pen, ca may be NULL): the delta of a
    hidden layer from the back-propagated error D = delta^{k+1} W^T."""
    cdef Py_ssize_t i
    cdef floating o
    if pen != NULL:
        for i in range(n):
            D[i] += pen[i]
    if activation == _codes.LOGISTIC:
        for i in range(n):
            o = O[i]
            D[i] = D[i] * (o * (1 - o))
    elif activation == _codes.TANH:
        for i in range(n):
            o = O[i]
            D[i] = D[i] * (1 - o * o)
    elif activation == _codes.RELU:
        for i in range(n):
            if not O[i] > 0:
                D[i] = 0
    if ca != NULL:
        for i in range(n):
            D[i] += ca[i]


cdef inline uint64_t _mix(uint64_t z) noexcept nogil:
    """splitmix64's finaliser (docs/kernels.md, the noise generator)."""
    z += <uint64_t> 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * <uint64_t> 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t> 0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline uint64_t _noise_key(uint64_t seed, uint64_t epoch) noexcept nogil:
    return _mix(_mix(seed) ^ epoch)


cdef inline double _uniform(uint64_t row_key, uint64_t feature) noexcept nogil:
    return <double> (_mix(row_key ^ feature) >> 11) * TWO_POW_MINUS_53


cdef void _corrupt_row(int noise, double level, uint64_t key, uint64_t sample,
                       const floating* x, floating* out, Py_ssize_t n) noexcept nogil:
    """Row ``sample`` of the input after masking or Gaussian noise (or a plain copy)."""
    cdef uint64_t row_key = _mix(key ^ sample)
    cdef Py_ssize_t j
    cdef double u1, u2
    if noise == _codes.MASK_NOISE:
        for j in range(n):
            out[j] = 0 if _uniform(row_key, <uint64_t> j) < level else x[j]
    elif noise == _codes.GAUSSIAN_NOISE:
        for j in range(n):
            u1 = 1.0 - _uniform(row_key, <uint64_t> (2 * j))
            u2 = _uniform(row_key, <uint64_t> (2 * j + 1))
            out[j] = <floating> (x[j] + level * (sqrt(-2.0 * log(u1)) * cos(TWO_PI * u2)))
    else:
        for j in range(n):
            out[j] = x[j]


# --------------------------------------------------------------------------------------
# One batch: forward, objective, gradient
# --------------------------------------------------------------------------------------

cdef struct Objective:
    int hidden_activation
    int output_activation
    int loss
    double alpha
    double l1_weight
    double kl_weight
    double kl_target
    double contraction_weight
    const int64_t* penalized    # L - 1 flags, one per hidden layer
    int deepest_contracted      # K: deepest penalized layer when contracting, else 0
    int noise
    double noise_level
    uint64_t noise_key


cdef inline floating* _activations(const Net* net, floating* ws, const floating* inputs,
                                   Py_ssize_t k) noexcept nogil:
    if k == 0:
        return <floating*> inputs
    return ws + net.lay[_slot(net.n_layers, SLOT_ACT, k)]


cdef double _log_loss(int loss, const floating* p, const floating* y, Py_ssize_t n,
                      double eps) noexcept nogil:
    """A row's log loss from its probabilities p: binary, -sum_j [y_j log pc_j +
    (1 - y_j) log(1 - pc_j)], or softmax's -sum_j y_j log pc_j, with pc = p clipped to
    [eps, 1 - eps]. A term whose factor is 0 adds nothing (pc is clipped, its log
    finite) and is skipped: one log a row for binary and one-hot targets. Same sum,
    same rounding."""
    cdef Py_ssize_t j
    cdef double pc, term, total = 0
    for j in range(n):
        pc = min(max(<double> p[j], eps), 1.0 - eps)
        term = 0
        if y[j] != 0:
            term = y[j] * log(pc)
        if loss == _codes.BINARY_LOG_LOSS and y[j] != 1:
            term += (1.0 - y[j]) * log(1.0 - pc)
        total -= term
    return total


cdef double _output_loss_delta(const Objective* obj, floating* P, const floating* b,
                               const floating* Y, const int64_t* rows, Py_ssize_t n_rows,
                               Py_ssize_t n_out, const floating* sw, floating* D,
                               floating* gb, double eps, bint with_log_loss) noexcept nogil:
    """The output layer from its pre-activations P (bias not yet added) to the deltas:
    P <- g(P + b), D <- the deltas weighted by s_i / S, gb <- sum_i D_i (the bias
    gradient); returns sum_i s_i/S loss_i. Without ``with_log_loss``, a log loss is left
    out (returned as 0), for the caller to take later with _log_loss (_online_run).

    One row at a time, so that a row is still in L1 for the loss and the bias gradient
    after its activation (W6's rows are 3 kB; the whole batch is 400 kB, beyond L1).
    Row r's target is row ``rows[r]`` of Y, or row r when ``rows`` is NULL.
    """
    cdef Py_ssize_t r, j
    cdef floating* p
    cdef const floating* y
    cdef floating* d
    cdef floating w
    cdef double row_loss, total = 0
    cdef int act = obj.output_activation
    memset(gb, 0, n_out * sizeof(floating))
    for r in range(n_rows):
        p = P + r * n_out
        d = D + r * n_out
        w = sw[r]
        row_loss = 0
        if rows == NULL:
            y = Y + r * n_out
        else:
            y = Y + rows[r] * n_out
            if r + 1 < n_rows:
                # Target rows come in shuffled order too.
                _prefetch_row(Y + rows[r + 1] * n_out, n_out)
        _bias_activation(act, p, b, 1, n_out)
        if obj.loss == _codes.SQUARED_ERROR:
            # Differences first, then their squares summed in vectorised double lanes:
            # one loop carrying a double sum does not vectorise.
            for j in range(n_out):
                d[j] = p[j] - y[j]
            row_loss = 0.5 * _sum_squares(d, n_out)
            if act == _codes.IDENTITY:
                for j in range(n_out):
                    d[j] = w * d[j]
            else:
                for j in range(n_out):
                    d[j] = w * d[j] * _derivative(act, p[j])
        else:  # the log losses (binary and softmax): the delta is p - y
            for j in range(n_out):
                d[j] = w * (p[j] - y[j])
            if with_log_loss:
                row_loss = _log_loss(obj.loss, p, y, n_out, eps)
        for j in range(n_out):
            gb[j] += d[j]
        total += w * row_loss
    return total


cdef double _activity_penalty(const Objective* obj, const floating* O, Py_ssize_t n_rows,
                              Py_ssize_t n_units, const floating* sw, floating* pen,
                              floating* vec, double eps) noexcept nogil:
    """L1 and KL penalties of one hidden layer: writes dP/do into pen, returns P."""
    cdef Py_ssize_t r, j
    cdef double l1_sum = 0, kl_sum = 0, mean, rho = obj.kl_target
    cdef floating o, w
    for r in range(n_rows):
        for j in range(n_units):
            pen[r * n_units + j] = 0
    if obj.l1_weight > 0:
        for r in range(n_rows):
            w = sw[r]
            for j in range(n_units):
                o = O[r * n_units + j]
                l1_sum += w * fabs(o)
                if o > 0:
                    pen[r * n_units + j] = <floating> (obj.l1_weight * w)
                elif o < 0:
                    pen[r * n_units + j] = <floating> (-obj.l1_weight * w)
    if obj.kl_weight > 0:
        for j in range(n_units):
            mean = 0
            for r in range(n_rows):
                mean += sw[r] * O[r * n_units + j]
            mean = min(max(mean, eps), 1.0 - eps)
            kl_sum += rho * log(rho / mean) + (1.0 - rho) * log((1.0 - rho) / (1.0 - mean))
            vec[j] = <floating> (obj.kl_weight * (-rho / mean + (1.0 - rho) / (1.0 - mean)))
        for r in range(n_rows):
            w = sw[r]
            for j in range(n_units):
                pen[r * n_units + j] += vec[j] * w
    return obj.l1_weight * l1_sum + obj.kl_weight * kl_sum


cdef double _contraction_one_layer(const Objective* obj, const floating* W,
                                   const floating* O, Py_ssize_t n_rows, Py_ssize_t n_in,
                                   Py_ssize_t n_units, const floating* sw, floating* ca,
                                   floating* coef_grad, floating* vec) noexcept nogil:
    """Closed form for one encoder layer: P = lambda sum_i s_i/S sum_j g'(a_ij)^2 ||W_:j||^2.

    Adds dP/dW to coef_grad, writes dP/da (through g'') into ca, returns P.
    """
    cdef Py_ssize_t r, c, j
    cdef floating* col_norm = vec
    cdef floating* mean_sq = vec + n_units
    cdef floating d, o, w
    cdef double lam = obj.contraction_weight, total = 0
    cdef int act = obj.hidden_activation
    for j in range(n_units):
        col_norm[j] = 0
        mean_sq[j] = 0
    for c in range(n_in):
        for j in range(n_units):
            col_norm[j] += W[c * n_units + j] * W[c * n_units + j]
    for r in range(n_rows):
        w = sw[r]
        for j in range(n_units):
            o = O[r * n_units + j]
            d = _derivative(act, o)
            mean_sq[j] += w * d * d
            ca[r * n_units + j] = <floating> (
                2 * lam * w * d * _second_derivative(act, o) * col_norm[j])
    for j in range(n_units):
        total += <double> mean_sq[j] * col_norm[j]
    for c in range(n_in):
        for j in range(n_units):
            coef_grad[c * n_units + j] += <floating> (2 * lam * mean_sq[j]) * W[c * n_units + j]
    return lam * total


cdef double _contraction_chain(const Net* net, const Objective* obj, const floating* params,
                               Py_ssize_t n_rows, floating* ws, const floating* inputs,
                               floating* grad) noexcept nogil:
    """Exact contractive penalty through the chain of layer Jacobians, one sample at a
    time: J^k = diag(g'(a^k)) W_{k-1}^T J^{k-1}, J^0 = I, P = lambda sum_i s_i/S
    sum_{k penalized} ||J^k||_F^2. Adds dP/dW_{k-1} to grad, writes dP/da^k into ca."""
    cdef Py_ssize_t L = net.n_layers, deepest = obj.deepest_contracted
    cdef const int64_t* u = net.units
    cdef Py_ssize_t n_in = u[0], r, k, j, c
    cdef const floating* sw = ws + net.lay[_fixed(L, FIX_SW)]
    cdef floating* G = ws + net.lay[_fixed(L, FIX_GBAR0)]
    cdef floating* G_next = ws + net.lay[_fixed(L, FIX_GBAR1)]
    cdef floating* swap
    cdef floating* J
    cdef floating* M
    cdef floating* J_prev
    cdef const floating* W
    cdef const floating* o
    cdef floating* ca_row
    cdef floating scale, d
    cdef double total = 0, frob, dd
    cdef int act = obj.hidden_activation
    for r in range(n_rows):
        # Forward: the Jacobians of every layer up to the deepest penalized one.
        for k in range(1, deepest + 1):
            W = params + net.coef_off[k - 1]
            o = ws + net.lay[_slot(L, SLOT_ACT, k)] + r * u[k]
            J = ws + net.lay[_slot(L, SLOT_JAC, k)]
            M = ws + net.lay[_slot(L, SLOT_M, k)]
            if k == 1:
                for j in range(u[1]):
                    for c in range(n_in):
                        M[j * n_in + c] = W[c * u[1] + j]
            else:
                J_prev = ws + net.lay[_slot(L, SLOT_JAC, k - 1)]
                gemm(True, False, u[k], n_in, u[k - 1], W, u[k], J_prev, n_in,
                     <floating> 0, M, n_in)
            frob = 0
            for j in range(u[k]):
                d = _derivative(act, o[j])
                for c in range(n_in):
                    J[j * n_in + c] = d * M[j * n_in + c]
                    frob += <double> J[j * n_in + c] * J[j * n_in + c]
            if obj.penalized[k - 1]:
                total += sw[r] * frob
        # Backward: G = dP_i/dJ^k, from the deepest layer down to the first.
        scale = <floating> (2 * obj.contraction_weight * sw[r])
        for j in range(u[deepest] * n_in):
            G[j] = 0
        for k in range(deepest, 0, -1):
            J = ws + net.lay[_slot(L, SLOT_JAC, k)]
            M = ws + net.lay[_slot(L, SLOT_M, k)]
            o = ws + net.lay[_slot(L, SLOT_ACT, k)] + r * u[k]
            ca_row = ws + net.lay[_slot(L, SLOT_CA, k)] + r * u[k]
            if obj.penalized[k - 1]:
                for j in range(u[k] * n_in):
                    G[j] += scale * J[j]
            for j in range(u[k]):
                dd = 0
                for c in range(n_in):
                    dd += <double> G[j * n_in + c] * M[j * n_in + c]
                ca_row[j] += <floating> (dd * _second_derivative(act, o[j]))
                d = _derivative(act, o[j])
                for c in range(n_in):
                    G[j * n_in + c] *= d
            W = params + net.coef_off[k - 1]
            if k > 1:
                J_prev = ws + net.lay[_slot(L, SLOT_JAC, k - 1)]
                gemm(False, True, u[k - 1], u[k], n_in, J_prev, n_in, G, n_in,
                     <floating> 1, grad + net.coef_off[k - 1], u[k])
                gemm(False, False, u[k - 1], n_in, u[k], W, u[k], G, n_in,
                     <floating> 0, G_next, n_in)
                swap = G
                G = G_next
                G_next = swap
            else:
                for c in range(n_in):
                    for j in range(u[1]):
                        grad[net.coef_off[0] + c * u[1] + j] += G[j * n_in + c]
    return obj.contraction_weight * total


cdef inline void _mark_used(const floating* row, Py_ssize_t n_cols,
                            int64_t* flags) noexcept nogil:
    """flags[j] |= row[j] != 0: a batch's rows are marked as they are gathered, while
    each is in L1, rather than read again."""
    cdef Py_ssize_t j
    for j in range(n_cols):
        flags[j] = flags[j] | (row[j] != 0)


cdef Py_ssize_t _used_columns(const int64_t* flags, Py_ssize_t n_cols, int64_t* runs,
                              Py_ssize_t* n_runs) noexcept nogil:
    """The columns a batch uses (``flags``, from ``_mark_used`` over its rows) as runs of
    consecutive columns: ``runs`` gets (first column, length) pairs, ``n_runs`` their
    number (at most n_cols / 2 + 1 pairs); returns the number of columns used, or n_cols
    (the runs then meaningless) when fewer than n_cols / COMPACT_MIN_SHARE are unused."""
    cdef Py_ssize_t j, n_used = 0
    for j in range(n_cols):
        n_used += flags[j]
    if (n_cols - n_used) * COMPACT_MIN_SHARE < n_cols:
        return n_cols
    n_runs[0] = 0
    for j in range(n_cols):
        if not flags[j]:
            continue
        if j == 0 or not flags[j - 1]:
            runs[2 * n_runs[0]] = j
            runs[2 * n_runs[0] + 1] = 0
            n_runs[0] += 1
        runs[2 * n_runs[0] - 1] += 1
    return n_used


cdef void _take_columns(const floating* X, Py_ssize_t n_rows, Py_ssize_t n_cols,
                        const int64_t* runs, Py_ssize_t n_runs, Py_ssize_t n_used,
                        floating* out) noexcept nogil:
    """out (n_rows, n_used) <- the columns of X (n_rows, n_cols) in ``runs``: one copy per
    run (a dozen or more columns at a time, in images), not an indexed load per entry."""
    cdef Py_ssize_t r, q, j, length
    cdef const floating* src
    cdef floating* dst
    for r in range(n_rows):
        dst = out + r * n_used
        for q in range(n_runs):
            src = X + r * n_cols + runs[2 * q]
            length = runs[2 * q + 1]
            for j in range(length):
                dst[j] = src[j]
            dst += length


cdef void _take_rows(const floating* W, Py_ssize_t n_cols, const int64_t* runs,
                     Py_ssize_t n_runs, floating* out) noexcept nogil:
    """out <- the rows of W in ``runs``, one after the other (a run of rows is one
    contiguous block)."""
    cdef Py_ssize_t q
    for q in range(n_runs):
        memcpy(out, W + runs[2 * q] * n_cols, runs[2 * q + 1] * n_cols * sizeof(floating))
        out += runs[2 * q + 1] * n_cols


cdef void _put_rows(floating* W, Py_ssize_t n_cols, const floating* rows,
                    const int64_t* runs, Py_ssize_t q0, Py_ssize_t q1, Py_ssize_t lo,
                    Py_ssize_t hi, floating others) noexcept nogil:
    """The inverse of ``_take_rows`` for the rows lo .. hi - 1 of W, which hold runs q0 ..
    q1 - 1: those runs of W <- the rows of ``rows`` (the runs' rows, one after the
    other); W's other rows in lo .. hi - 1 are multiplied by ``others``, or cleared when
    it is 0. ``rows`` is not W: the compacted rows are kept apart."""
    cdef Py_ssize_t q, j, gap_start = lo, first, length
    for q in range(q0, q1 + 1):
        first = runs[2 * q] if q < q1 else hi
        length = runs[2 * q + 1] if q < q1 else 0
        # The rows between the previous run and this one are unused.
        if others == 0:
            memset(W + gap_start * n_cols, 0, (first - gap_start) * n_cols * sizeof(floating))
        elif others != 1:
            for j in range(gap_start * n_cols, first * n_cols):
                W[j] = others * W[j]
        if length > 0:
            memcpy(W + first * n_cols, rows, length * n_cols * sizeof(floating))
            rows += length * n_cols
        gap_start = first + length


# --------------------------------------------------------------------------------------
# Threads: the members of one epoch
# --------------------------------------------------------------------------------------
# When BLAS may use several threads (OPENBLAS_NUM_THREADS, threadpoolctl), a large batch is
# shared between that many threads of fastnn's own, each calling BLAS single-threaded:
# rows for the forward pass and the deltas, weight rows for the gradients and the update.
# Left to BLAS, only the products ran in parallel, each of a batch's calls waking BLAS's
# threads anew, and fastnn's own passes (gather, activations, loss) ran on one thread
# (bench/README.md, "Threads").

cdef enum:
    TEAM_MIN_ROWS = 16      # rows per member at least (the compaction's COMPACT_MIN_ROWS)
    TEAM_MAX = 64           # members at most
    SUMS_PER_MEMBER = 3     # a member's data loss, weight norm and non-finite flag
    TEAM_START_WAIT = 0
    TEAM_START_GO = 1
    TEAM_START_ABORT = 2


cdef struct Team:
    int size                    # members; 1: the calling thread alone
    int rank                    # this member, 0 .. size - 1
    fastnn_barrier* barrier
    double* sums                # SUMS_PER_MEMBER per member, in rank order
    int64_t* columns            # per member: column flags, their union and runs
                                # (_team_columns entries); alone, the Net's columns
    void* out_bias              # per member: its rows' part of the output bias gradient


ctypedef int (*blas_get_threads_t)() noexcept nogil
ctypedef void (*blas_set_threads_t)(int) noexcept nogil
cdef blas_get_threads_t _blas_get_threads = NULL
cdef blas_set_threads_t _blas_set_threads = NULL


def _use_blas_threads():
    """Take the BLAS thread controls found by fastnn._blas_threads (None: none found)."""
    global _blas_get_threads, _blas_set_threads
    from fastnn._blas_threads import addresses

    found = addresses()
    if found is not None:
        _blas_get_threads = <blas_get_threads_t> <size_t> found[0]
        _blas_set_threads = <blas_set_threads_t> <size_t> found[1]
    return found is not None


BLAS_THREAD_CONTROLS = _use_blas_threads()


cdef int _team_size(const Net* net, const Objective* obj, Py_ssize_t rows) noexcept nogil:
    """Members for an epoch of batches of ``rows`` rows: BLAS's thread count, at most
    one per TEAM_MIN_ROWS rows, when the first layer is large enough to share (the
    compaction's size rule) and nothing needs the whole batch at once (the activity
    penalties' means and the contraction stay on one thread)."""
    cdef int threads
    if (_blas_get_threads == NULL or obj.deepest_contracted > 0 or obj.l1_weight > 0
            or obj.kl_weight > 0
            or rows * net.units[0] * net.units[1] < COMPACT_MIN_MULADDS):
        return 1
    threads = _blas_get_threads()
    return <int> max(1, min(threads, rows // TEAM_MIN_ROWS, TEAM_MAX))


def _team_size_twin(const int64_t[::1] layer_units, Py_ssize_t rows, double l1_weight=0,
                    double kl_weight=0, bint contraction=False):
    """The members an epoch of batches of ``rows`` rows would have now, for tests."""
    geometry = _Geometry(layer_units, rows, contraction)
    cdef Objective obj
    obj.deepest_contracted = 1 if contraction else 0
    obj.l1_weight = l1_weight
    obj.kl_weight = kl_weight
    return _team_size(&(<_Geometry> geometry).net, &obj, rows)


cdef Team _alone(const Net* net) noexcept nogil:
    """The team of the calling thread alone."""
    cdef Team team
    team.size = 1
    team.rank = 0
    team.barrier = NULL
    team.sums = NULL
    team.columns = net.columns
    team.out_bias = NULL
    return team


cdef inline Py_ssize_t _team_columns(Py_ssize_t n_in) noexcept nogil:
    return 3 * n_in + 2


cdef inline void _share(Py_ssize_t n, const Team* team, Py_ssize_t* lo,
                        Py_ssize_t* hi) noexcept nogil:
    """This member's part lo .. hi - 1 of n rows or columns (parts in rank order).
    Alone without a division: online learning asks a dozen times per sample."""
    if team.size == 1:
        lo[0] = 0
        hi[0] = n
        return
    lo[0] = n * team.rank // team.size
    hi[0] = n * (team.rank + 1) // team.size


cdef inline void _sync(const Team* team) noexcept nogil:
    """Wait for the other members (nothing to wait for alone)."""
    if team.size > 1:
        fastnn_barrier_wait(team.barrier)


cdef void _run_share(const int64_t* runs, Py_ssize_t n_runs, Py_ssize_t n_used,
                     Py_ssize_t n_in, const Team* team, Py_ssize_t* q0, Py_ssize_t* q1,
                     Py_ssize_t* c0, Py_ssize_t* c1, Py_ssize_t* lo,
                     Py_ssize_t* hi) noexcept nogil:
    """This member's share of a compacted first layer: the runs q0 .. q1 - 1 that start
    in its part of the n_used compacted rows (runs are not split), their compacted rows
    c0 .. c1 - 1, and the rows lo .. hi - 1 of the full weights they and the unused rows
    before them cover (the last member also takes the unused rows after the last run).
    The members' lo .. hi - 1 tile the n_in rows."""
    cdef Py_ssize_t q, offset = 0, end = 0
    cdef Py_ssize_t cut0 = n_used * team.rank // team.size
    cdef Py_ssize_t cut1 = n_used * (team.rank + 1) // team.size
    q0[0] = q1[0] = c0[0] = c1[0] = lo[0] = hi[0] = 0
    for q in range(n_runs):
        end = runs[2 * q] + runs[2 * q + 1]
        if offset < cut0:
            q0[0] = q + 1
            c0[0] = offset + runs[2 * q + 1]
            lo[0] = end
        if offset < cut1:
            q1[0] = q + 1
            c1[0] = offset + runs[2 * q + 1]
            hi[0] = end
        offset += runs[2 * q + 1]
    if team.rank == team.size - 1:
        hi[0] = n_in


cdef enum:
    WEIGHT_GRADS = 0
    WEIGHT_SKIP = 1
    WEIGHT_DESCEND = 2


cdef const floating* _batch_gradient(
        const Net* net, const Objective* obj, const floating* params, const floating* X,
        const floating* Y, const floating* sample_weight, const int64_t* rows,
        Py_ssize_t n_rows, floating* ws, floating* grad, int weight_mode,
        floating descent_rate, floating descent_l2, double weight_sq, const Team* team, Py_ssize_t* first_rows, double* data_loss,
        double* penalty) noexcept nogil:
    """Objective D + P of one batch and its gradient (into grad), docs/kernels.md.

    Returns the batch's (corrupted) input rows. ``weight_mode``: WEIGHT_GRADS writes
    the weight gradients into grad; WEIGHT_SKIP leaves them out (a one-row batch applies
    them as outer products in the update); WEIGHT_DESCEND applies plain SGD to the
    weights in the gradient product (rate ``descent_rate``, L2 factor ``descent_l2`` =
    alpha / S), so that the gradient is never stored.
    ``weight_sq`` is sum_i ||W_i||^2 at ``params`` (the caller keeps it up to date).
    Deltas are scaled by s_i / S at the output, so the weight gradients come out of
    the matrix products already divided by S.

    A member of a team (``team.size`` > 1; no activity penalty, no contraction) takes
    its share of the batch rows up to the deltas, then its share of each layer's weight
    rows and bias columns: ``first_rows`` gets its rows of the first layer's weights,
    which may follow the compaction's runs; the other layers' are ``_share`` of their
    rows. ``data_loss`` is the whole batch's, the same for every member.
    """
    cdef Py_ssize_t L = net.n_layers, r, i, j, k
    cdef const int64_t* u = net.units
    cdef floating* sw = ws + net.lay[_fixed(L, FIX_SW)]
    cdef floating* vec = ws + net.lay[_fixed(L, FIX_VEC)]
    cdef double S = 0, pen_value, eps
    cdef const floating* inputs
    cdef floating* x_copy = NULL
    cdef floating* out
    cdef floating* delta
    cdef floating* delta_prev
    cdef floating* pen
    cdef floating* ca
    cdef floating* gb
    cdef floating* out_bias
    cdef Py_ssize_t deepest = obj.deepest_contracted
    cdef const floating* first_in
    cdef floating* first_w
    cdef Py_ssize_t n_used, n_runs = 0
    cdef bint compact
    cdef Py_ssize_t r0, r1, m, k0, k1, j0, j1, q0 = 0, q1 = 0, c0 = 0, c1 = 0
    cdef int64_t* flags = team.columns + team.rank * _team_columns(u[0])
    cdef int64_t* used = flags if team.size == 1 else flags + u[0]
    cdef int64_t* runs = flags + u[0] if team.size == 1 else flags + 2 * u[0]
    eps = EPS_FLOAT32 if floating is float else EPS_FLOAT64

    # This member's rows of the batch (all of them alone).
    _share(n_rows, team, &r0, &r1)
    m = r1 - r0
    for r in range(n_rows):
        S += sample_weight[rows[r]]
    for r in range(r0, r1):
        sw[r] = <floating> (sample_weight[rows[r]] / S)

    # Input rows in batch order, corrupted when denoising; when the batch may compact,
    # the columns it uses are marked on the way.
    compact = _may_compact(n_rows, u[0], u[1], deepest > 0)
    if compact:
        memset(flags, 0, u[0] * sizeof(int64_t))
    if n_rows == 1 and obj.noise == _codes.NO_NOISE:
        inputs = X + rows[0] * u[0]
    else:
        x_copy = ws + net.lay[_slot(L, SLOT_ACT, 0)]
        for r in range(r0, r1):
            if r + 1 < r1:
                _prefetch_row(X + rows[r + 1] * u[0], u[0])
            _corrupt_row(obj.noise, obj.noise_level, obj.noise_key, <uint64_t> rows[r],
                         X + rows[r] * u[0], x_copy + r * u[0], u[0])
            if compact:
                _mark_used(x_copy + r * u[0], u[0], flags)
        inputs = x_copy

    # The first layer's input and weights, restricted to the columns the batch uses
    # when enough are zero throughout (see COMPACT_MIN_SHARE).
    first_in = inputs
    first_w = <floating*> params + net.coef_off[0]
    n_used = u[0]
    _share(u[0], team, &first_rows[0], &first_rows[1])
    if compact:
        if team.size > 1:
            # Every member forms the union of the members' marks itself: the same runs
            # everywhere, no second wait.
            _sync(team)
            memset(used, 0, u[0] * sizeof(int64_t))
            for k in range(team.size):
                for j in range(u[0]):
                    used[j] = used[j] | team.columns[k * _team_columns(u[0]) + j]
        n_used = _used_columns(used, u[0], runs, &n_runs)
        if n_used < u[0]:
            first_in = ws + net.lay[_fixed(L, FIX_XC)]
            first_w = ws + net.lay[_fixed(L, FIX_WC)]
            _take_columns(inputs + r0 * u[0], m, u[0], runs, n_runs, n_used,
                          <floating*> first_in + r0 * n_used)
            _run_share(runs, n_runs, n_used, u[0], team, &q0, &q1, &c0, &c1,
                       &first_rows[0], &first_rows[1])
            _take_rows(params + net.coef_off[0], u[1], runs + 2 * q0, q1 - q0,
                       first_w + c0 * u[1])
            _sync(team)  # the compacted weights are whole

    # Forward (the output layer's bias and activation are applied with its loss).
    gemm(False, False, m, u[1], n_used, first_in + r0 * n_used, n_used, first_w, u[1],
         <floating> 0, _activations(net, ws, inputs, 1) + r0 * u[1], u[1])
    for i in range(L):
        out = _activations(net, ws, inputs, i + 1) + r0 * u[i + 1]
        if i > 0:
            gemm(False, False, m, u[i + 1], u[i],
                 _activations(net, ws, inputs, i) + r0 * u[i], u[i],
                 params + net.coef_off[i], u[i + 1], <floating> 0, out, u[i + 1])
        if i < L - 1:
            _bias_activation(obj.hidden_activation, out, params + net.bias_off[i], m,
                             u[i + 1])

    delta = ws + net.lay[_slot(L, SLOT_DELTA, L)]
    out_bias = grad + net.bias_off[L - 1]
    if team.size > 1:
        out_bias = (<floating*> team.out_bias) + team.rank * u[L]
    if Y == X and inputs == x_copy and obj.noise == _codes.NO_NOISE:
        # An autoencoder's targets are its clean inputs, just gathered into x_copy:
        # reading them there saves a second trip to memory for every row.
        data_loss[0] = _output_loss_delta(
            obj, _activations(net, ws, inputs, L) + r0 * u[L], params + net.bias_off[L - 1],
            x_copy + r0 * u[0], NULL, m, u[L], sw + r0, delta + r0 * u[L], out_bias, eps,
            True)
    else:
        data_loss[0] = _output_loss_delta(
            obj, _activations(net, ws, inputs, L) + r0 * u[L], params + net.bias_off[L - 1],
            Y, rows + r0, m, u[L], sw + r0, delta + r0 * u[L], out_bias, eps, True)

    # Penalties: L2 on the weights, activity penalties, contraction (alone only).
    pen_value = obj.alpha * 0.5 / S * weight_sq
    for k in range(1, L):
        if obj.penalized[k - 1] and (obj.l1_weight > 0 or obj.kl_weight > 0):
            pen_value += _activity_penalty(
                obj, _activations(net, ws, inputs, k), n_rows, u[k], sw,
                ws + net.lay[_slot(L, SLOT_PEN, k)], vec, eps)
    if deepest > 0:
        for i in range(deepest):
            memset(grad + net.coef_off[i], 0, u[i] * u[i + 1] * sizeof(floating))
            memset(ws + net.lay[_slot(L, SLOT_CA, i + 1)], 0,
                   n_rows * u[i + 1] * sizeof(floating))
        if deepest == 1:
            pen_value += _contraction_one_layer(
                obj, params + net.coef_off[0], _activations(net, ws, inputs, 1), n_rows,
                u[0], u[1], sw, ws + net.lay[_slot(L, SLOT_CA, 1)],
                grad + net.coef_off[0], vec)
        else:
            pen_value += _contraction_chain(net, obj, params, n_rows, ws, inputs, grad)
    penalty[0] = pen_value

    # Backward, this member's rows: every delta goes down through the weights before
    # any weight changes.
    for i in range(L - 1, 0, -1):
        delta = ws + net.lay[_slot(L, SLOT_DELTA, i + 1)]
        delta_prev = ws + net.lay[_slot(L, SLOT_DELTA, i)]
        gemm(False, True, m, u[i], u[i + 1], delta + r0 * u[i + 1], u[i + 1],
             params + net.coef_off[i], u[i + 1], <floating> 0, delta_prev + r0 * u[i], u[i])
        pen = NULL
        ca = NULL
        if obj.penalized[i - 1] and (obj.l1_weight > 0 or obj.kl_weight > 0):
            pen = ws + net.lay[_slot(L, SLOT_PEN, i)] + r0 * u[i]
        if i <= deepest:
            ca = ws + net.lay[_slot(L, SLOT_CA, i)] + r0 * u[i]
        _hidden_delta(obj.hidden_activation, delta_prev + r0 * u[i],
                      _activations(net, ws, inputs, i) + r0 * u[i], pen, ca, m * u[i])
    if team.size > 1:
        team.sums[team.rank * SUMS_PER_MEMBER] = data_loss[0]
        _sync(team)  # every delta and loss is in
        data_loss[0] = 0
        for k in range(team.size):
            data_loss[0] += team.sums[k * SUMS_PER_MEMBER]

    # The weights, this member's rows of each layer; the biases, its columns.
    for i in range(L - 1, -1, -1):
        delta = ws + net.lay[_slot(L, SLOT_DELTA, i + 1)]
        if i == 0 and n_used < u[0]:
            # The products run on the used columns, whose rows then go back to their
            # places; the rows of the unused ones get no gradient. The compacted
            # weights are spent by now, so the gradient's rows are made in their place.
            # (A compacted batch has 16 rows or more: never WEIGHT_SKIP's one row.)
            if weight_mode == WEIGHT_GRADS:
                gemm(True, False, c1 - c0, u[1], n_rows, first_in + c0, n_used, delta, u[1],
                     <floating> 0, first_w + c0 * u[1], u[1])
                _put_rows(grad + net.coef_off[0], u[1], first_w + c0 * u[1], runs, q0, q1,
                          first_rows[0], first_rows[1], 0)
            elif weight_mode == WEIGHT_DESCEND:
                gemm_scaled(True, False, c1 - c0, u[1], n_rows, -descent_rate,
                            first_in + c0, n_used, delta, u[1], 1 - descent_rate * descent_l2,
                            first_w + c0 * u[1], u[1])
                _put_rows(<floating*> params + net.coef_off[0], u[1], first_w + c0 * u[1],
                          runs, q0, q1, first_rows[0], first_rows[1],
                          1 - descent_rate * descent_l2)
        elif weight_mode != WEIGHT_SKIP:
            _share(u[i], team, &k0, &k1)
            if weight_mode == WEIGHT_GRADS:
                gemm(True, False, k1 - k0, u[i + 1], n_rows,
                     _activations(net, ws, inputs, i) + k0, u[i], delta, u[i + 1],
                     <floating> (1 if i < deepest else 0),
                     grad + net.coef_off[i] + k0 * u[i + 1], u[i + 1])
            else:
                # Plain SGD in the product itself: W <- (1 - lr alpha/S) W - lr o^T delta.
                gemm_scaled(True, False, k1 - k0, u[i + 1], n_rows, -descent_rate,
                            _activations(net, ws, inputs, i) + k0, u[i], delta, u[i + 1],
                            1 - descent_rate * descent_l2,
                            <floating*> params + net.coef_off[i] + k0 * u[i + 1], u[i + 1])
        gb = grad + net.bias_off[i]
        _share(u[i + 1], team, &j0, &j1)
        if i < L - 1:  # the output layer's came with its deltas
            for j in range(j0, j1):
                gb[j] = delta[j]
            for r in range(1, n_rows):
                for j in range(j0, j1):
                    gb[j] += delta[r * u[i + 1] + j]
        elif team.size > 1:  # ... in parts, one per member
            for j in range(j0, j1):
                gb[j] = 0
            for k in range(team.size):
                for j in range(j0, j1):
                    gb[j] += (<floating*> team.out_bias)[k * u[L] + j]
    return inputs


cdef double _sample_weight_sum(const floating* sample_weight, Py_ssize_t n) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(n):
        total += sample_weight[i]
    return total


cdef void _add_l2_gradient(const Net* net, const floating* params, floating* grad,
                           double scale) noexcept nogil:
    """grad += (alpha / S) W on the weights (sgd_epoch fuses this into its update)."""
    cdef Py_ssize_t i, j
    cdef floating l2 = <floating> scale
    for i in range(net.n_layers):
        for j in range(net.coef_off[i], net.bias_off[i]):
            grad[j] += l2 * params[j]


cdef double _weight_sq(const Net* net, const floating* params) noexcept nogil:
    cdef double total = 0
    cdef Py_ssize_t i
    for i in range(net.n_layers):
        total += _sum_squares(params + net.coef_off[i], net.bias_off[i] - net.coef_off[i])
    return total


# --------------------------------------------------------------------------------------
# Optimiser steps (scikit-learn's), fused with the L2 term and the norm for the next batch
# --------------------------------------------------------------------------------------

cdef inline double _sum_squares(const floating* p, Py_ssize_t n) noexcept nogil:
    """sum p^2 in double."""
    return _dot(p, p, n)


cdef struct Update:
    int optimizer
    double learning_rate     # lr_t, with Adam's bias correction folded in, for Adam
    double momentum
    bint nesterov
    double beta_1
    double beta_2
    double epsilon
    # Plain SGD (momentum 0) needs no velocity: v = -lr g is only stored for the last
    # batch of an epoch, where the caller can see it.
    bint skip_velocity


cdef double _descend_outer(floating* p, const floating* x, const floating* d,
                           Py_ssize_t n_rows, Py_ssize_t n_cols, floating lr, floating l2,
                           const floating* x_next, floating* z_next) noexcept nogil:
    """Plain SGD from an outer product, p[r, j] -= lr (x[r] d[j] + l2 p[r, j]), computed
    as (1 - lr l2) p[r, j] - x[r] (lr d[j]) (two operations, not three); returns the sum
    of the new p^2 (the next batch's L2 term) when l2 is not 0, else 0.

    With ``x_next``, the same pass over the weights also makes ``z_next = x_next @ p``
    (the new p): the next online sample's first-layer product, which then costs no
    second trip through the weights and no BLAS call (see _online_run). Whole blocks of
    FASTNN_ONLINE_BLOCK, then of FASTNN_ONLINE_NARROW columns go to the vector loops above
    (FASTNN_DESCEND_BLOCKS), the rest to a plain one.
    """
    cdef Py_ssize_t r, j, j0 = 0
    cdef floating* row
    cdef floating a, w, keep = 1 - lr * l2
    cdef double total = 0
    if n_cols == 1:  # a column (a single output unit): one loop down the rows
        a = lr * d[0]
        for r in range(n_rows):
            p[r] = keep * p[r] - x[r] * a
        if x_next != NULL:
            z_next[0] = <floating> _dot(x_next, p, n_rows)
        return _sum_squares(p, n_rows) if l2 != 0 else 0
    # Whole blocks (FASTNN_DESCEND_BLOCKS): wide ones, then narrow ones for narrow layers
    # and the rest of wide ones.
    if floating is float:
        total = fastnn_descend_blocks_float(p, x, d, n_rows, n_cols, lr, l2, x_next, z_next,
                                            &j0)
    else:
        total = fastnn_descend_blocks_double(p, x, d, n_rows, n_cols, lr, l2, x_next,
                                             z_next, &j0)
    if j0 < n_cols:  # the last columns, fewer than a narrow block
        if x_next != NULL:
            for j in range(j0, n_cols):
                z_next[j] = 0
        for r in range(n_rows):
            row = p + r * n_cols
            a = x[r]
            for j in range(j0, n_cols):
                w = keep * row[j] - a * (lr * d[j])
                row[j] = w
                if x_next != NULL:
                    z_next[j] += x_next[r] * w
                if l2 != 0:
                    total += <double> w * w
    return total


# Called through a pointer, so that the compiler keeps the update a function of its own:
# inlined into the epoch loop, its loop ran W2's float32 epochs 5-8% slower (measured;
# the instructions were the same).
ctypedef double (*descend_float_t)(float*, const float*, const float*, Py_ssize_t,
                                   Py_ssize_t, float, float, const float*,
                                   float*) noexcept nogil
ctypedef double (*descend_double_t)(double*, const double*, const double*, Py_ssize_t,
                                    Py_ssize_t, double, double, const double*,
                                    double*) noexcept nogil
cdef descend_float_t _descend_outer_float = _descend_outer[float]
cdef descend_double_t _descend_outer_double = _descend_outer[double]


cdef void _step(const Update* up, floating* p, floating* v, floating* s, const floating* g,
                const floating* x, Py_ssize_t n_rows, Py_ssize_t n_cols,
                floating l2) noexcept nogil:
    """scikit-learn's update of an (n_rows, n_cols) block of parameters.

    The gradient of entry (r, j) is ``g[r, j] + l2 p[r, j]``, or, when ``x`` is given,
    ``x[r] g[j] + l2 p[r, j]``: a batch of one row updates the weights from the outer
    product of the layer input and delta without writing the gradient to memory.
    SGD: v <- mu v - lr g; p += mu v - lr g (Nesterov) or v. Adam:
    m <- b1 m + (1 - b1) g, s <- b2 s + (1 - b2) g^2, p -= lr_t m / (sqrt(s) + eps).
    """
    cdef Py_ssize_t r, j
    cdef floating gi, vi, mi, si, scale = 1
    cdef floating* pr
    cdef floating* vr
    cdef floating* sr
    cdef const floating* gr = g
    cdef floating lr = <floating> up.learning_rate, mu = <floating> up.momentum
    cdef floating beta_1 = <floating> up.beta_1, beta_2 = <floating> up.beta_2
    cdef floating one_minus_b1 = 1 - beta_1, one_minus_b2 = 1 - beta_2
    cdef floating epsilon = <floating> up.epsilon
    for r in range(n_rows):
        pr = p + r * n_cols
        vr = v + r * n_cols
        if x != NULL:
            scale = x[r]
        else:
            gr = g + r * n_cols
        if up.optimizer == _codes.ADAM:
            sr = s + r * n_cols
            for j in range(n_cols):
                gi = scale * gr[j] + l2 * pr[j]
                mi = beta_1 * vr[j] + one_minus_b1 * gi
                si = beta_2 * sr[j] + one_minus_b2 * gi * gi
                vr[j] = mi
                sr[j] = si
                pr[j] = pr[j] - lr * mi / (<floating> sqrt(si) + epsilon)
        elif up.momentum == 0 and up.skip_velocity:
            for j in range(n_cols):
                pr[j] = pr[j] - lr * (scale * gr[j] + l2 * pr[j])
        elif up.nesterov:
            for j in range(n_cols):
                gi = scale * gr[j] + l2 * pr[j]
                vi = mu * vr[j] - lr * gi
                vr[j] = vi
                pr[j] = pr[j] + (mu * vi - lr * gi)
        else:
            for j in range(n_cols):
                gi = scale * gr[j] + l2 * pr[j]
                vi = mu * vr[j] - lr * gi
                vr[j] = vi
                pr[j] = pr[j] + vi


cdef bint _all_finite(const floating* p, Py_ssize_t n) noexcept nogil:
    """True when no entry is inf or nan (x - x != 0 only for those; an OR reduction
    vectorises where isfinite would not)."""
    cdef Py_ssize_t i
    cdef bint bad = False
    for i in range(n):
        bad = bad | (p[i] - p[i] != 0)
    return not bad


cdef inline floating* _shift(floating* p, Py_ssize_t offset) noexcept nogil:
    return p + offset if p != NULL else NULL


cdef struct EpochCall:
    # The arguments of an epoch, shared by the members of a team. The arrays' element
    # type is the member's ``params`` argument's (float or double, ``is_double``).
    const Net* net
    const Objective* obj
    void* params
    const void* X
    const void* Y
    const void* sample_weight
    const int64_t* order
    Py_ssize_t n_order
    Py_ssize_t batch_size
    int optimizer
    double learning_rate
    double momentum
    bint nesterov
    double beta_1
    double beta_2
    double epsilon
    int64_t adam_step
    void* velocity
    void* second_moment
    void* ws
    bint is_double
    int start                   # TEAM_START_*: members wait for GO, or leave on ABORT


cdef bint _online_applies(const EpochCall* call, const Team* team) noexcept nogil:
    """Whether _online_run may take the epoch's batches: one row each, plain SGD, alone,
    and none of the batch features it leaves out (noise, activity penalties,
    contraction)."""
    cdef const Objective* obj = call.obj
    cdef Py_ssize_t k
    if (call.batch_size != 1 or team.size != 1 or call.optimizer != _codes.SGD
            or call.momentum != 0 or obj.noise != _codes.NO_NOISE
            or obj.deepest_contracted != 0):
        return False
    if obj.l1_weight > 0 or obj.kl_weight > 0:
        for k in range(call.net.n_layers - 1):
            if obj.penalized[k]:
                return False
    return True


cdef bint _online_run(const EpochCall* call, floating* params, Py_ssize_t stop,
                     double* weight_sq, double* loss_sum, double* penalty_sum) noexcept nogil:
    """The epoch's samples before ``stop`` (the last one of non-zero weight, whose
    update also stores the velocity) when _online_applies: _sgd_epoch's batches of one
    row, with what a batch sets up for itself (its weight, its mode, the team's shares)
    done once, in a loop of its own. Returns 0 when the objective or the weights became
    non-finite, else 1. ``weight_sq`` is sum_i ||W_i||^2 on entry and on return, as
    between _sgd_epoch's batches.

    Each sample's update of the first layer also makes the next sample's product of that
    layer, when the next sample is of non-zero weight and before ``stop``: the same pass
    over the weights, no BLAS call (_descend_outer). Measured on W2 (one thread, best of
    200 epochs, parameters on a cache line): float64 330 -> 263 ns a sample, float32
    266 -> 240 ns, against the same batches run by _sgd_epoch's loop.
    """
    cdef const Net* net = call.net
    cdef const Objective* obj = call.obj
    cdef const floating* X = <const floating*> call.X
    cdef const floating* Y = <const floating*> call.Y
    cdef const floating* sample_weight = <const floating*> call.sample_weight
    cdef const int64_t* order = call.order
    cdef floating* ws = <floating*> call.ws
    cdef Py_ssize_t L = net.n_layers, t, i, j
    cdef const int64_t* u = net.units
    cdef floating lr = <floating> call.learning_rate, l2, one = 1
    cdef double s, data, pen, total
    cdef double eps = EPS_FLOAT32 if floating is float else EPS_FLOAT64
    cdef const floating* x
    cdef const floating* x_next
    cdef floating* act
    cdef floating* delta
    cdef floating* b
    cdef floating* z_first = ws + net.lay[_slot(L, SLOT_ACT, 1)]
    cdef floating* gb = ws + net.lay[_fixed(L, FIX_GRAD)] + net.bias_off[L - 1]
    cdef bint bad, fused = False
    # A log loss is taken after the update (the output activations stay where they are
    # unless the output layer is the first, whose next product overwrites them). Its log
    # is a call of long latency, and the update's pass, a long run of instructions after
    # it, waited on it to retire: W2 ran 8% (float64) and 13% (float32) faster with the
    # log after the pass. The loss of clipped probabilities is finite: nothing to check
    # before the update.
    cdef bint later = obj.loss != _codes.SQUARED_ERROR and L > 1
    for t in range(stop):
        s = sample_weight[order[t]]
        if s == 0:
            continue
        l2 = <floating> (obj.alpha / s)
        x = X + order[t] * u[0]
        # Forward.
        if not fused:
            gemm(False, False, 1, u[1], u[0], x, u[0], params + net.coef_off[0], u[1],
                 <floating> 0, z_first, u[1])
        for i in range(L - 1):
            act = ws + net.lay[_slot(L, SLOT_ACT, i + 1)]
            _bias_activation(obj.hidden_activation, act, params + net.bias_off[i], 1,
                             u[i + 1])
            gemm(False, False, 1, u[i + 2], u[i + 1], act, u[i + 1],
                 params + net.coef_off[i + 1], u[i + 2], <floating> 0,
                 ws + net.lay[_slot(L, SLOT_ACT, i + 2)], u[i + 2])
        delta = ws + net.lay[_slot(L, SLOT_DELTA, L)]
        data = _output_loss_delta(obj, ws + net.lay[_slot(L, SLOT_ACT, L)],
                                  params + net.bias_off[L - 1], Y, order + t, 1, u[L],
                                  &one, delta, gb, eps, not later)
        pen = obj.alpha * 0.5 / s * weight_sq[0]
        loss_sum[0] += data
        penalty_sum[0] += pen
        if not isfinite(data + pen):
            return 0
        # Backward.
        for i in range(L - 1, 0, -1):
            delta = ws + net.lay[_slot(L, SLOT_DELTA, i)]
            gemm(False, True, 1, u[i], u[i + 1], ws + net.lay[_slot(L, SLOT_DELTA, i + 1)],
                 u[i + 1], params + net.coef_off[i], u[i + 1], <floating> 0, delta, u[i])
            _hidden_delta(obj.hidden_activation, delta,
                          ws + net.lay[_slot(L, SLOT_ACT, i)], NULL, NULL, u[i])
        # The update, last layer first (see _sgd_epoch).
        x_next = NULL
        if t + 1 < stop and sample_weight[order[t + 1]] != 0:
            x_next = X + order[t + 1] * u[0]
        total = 0
        bad = False
        for i in range(L - 1, -1, -1):
            delta = ws + net.lay[_slot(L, SLOT_DELTA, i + 1)]
            if floating is float:
                total += _descend_outer_float(
                    params + net.coef_off[i],
                    x if i == 0 else ws + net.lay[_slot(L, SLOT_ACT, i)], delta, u[i],
                    u[i + 1], lr, l2, x_next if i == 0 else NULL, z_first)
            else:
                total += _descend_outer_double(
                    params + net.coef_off[i],
                    x if i == 0 else ws + net.lay[_slot(L, SLOT_ACT, i)], delta, u[i],
                    u[i + 1], lr, l2, x_next if i == 0 else NULL, z_first)
            if obj.alpha != 0 and l2 == 0:
                total += _sum_squares(params + net.coef_off[i], u[i] * u[i + 1])
            b = params + net.bias_off[i]
            for j in range(u[i + 1]):
                b[j] = b[j] - lr * delta[j]
            bad = bad or not _all_finite(b, u[i + 1])
        weight_sq[0] = total
        if bad or not isfinite(total):
            return 0
        fused = x_next != NULL
        if later:
            loss_sum[0] += _log_loss(obj.loss, ws + net.lay[_slot(L, SLOT_ACT, L)],
                                     Y + order[t] * u[L], u[L], eps)
    return 1


cdef int _sgd_epoch(const EpochCall* call, floating* params, const Team* team,
                    double* loss_sum, double* penalty_sum) noexcept nogil:
    """One epoch, or one member's part of it (see Team): returns 1, or 0 when a batch
    objective or the parameters became non-finite (every member stops at that batch)."""
    cdef const Net* net = call.net
    cdef const Objective* obj = call.obj
    cdef const floating* X = <const floating*> call.X
    cdef const floating* Y = <const floating*> call.Y
    cdef const floating* sample_weight = <const floating*> call.sample_weight
    cdef const int64_t* order = call.order
    cdef Py_ssize_t n_order = call.n_order, batch_size = call.batch_size
    cdef floating* velocity = <floating*> call.velocity
    cdef floating* second_moment = <floating*> call.second_moment
    cdef floating* ws = <floating*> call.ws
    cdef double learning_rate = call.learning_rate
    cdef Py_ssize_t L = net.n_layers, start, stop, n_rows, i, r, batch = 0, last_start, k, j
    cdef const int64_t* u = net.units
    cdef floating* grad = ws + net.lay[_fixed(L, FIX_GRAD)]
    cdef double data, pen, S, weight_sq, t
    cdef floating l2
    cdef floating* W
    cdef const floating* inputs
    cdef Py_ssize_t offset, k0, k1
    cdef Py_ssize_t first_rows[2]
    cdef int weight_mode
    cdef bint bad, online
    cdef Update up
    up.optimizer = call.optimizer
    up.learning_rate = learning_rate
    up.momentum = call.momentum
    up.nesterov = call.nesterov
    up.beta_1 = call.beta_1
    up.beta_2 = call.beta_2
    up.epsilon = call.epsilon
    weight_sq = _weight_sq(net, params) if obj.alpha != 0 else 0
    # A batch whose weights sum to zero contributes nothing (docs/kernels.md), so the
    # velocity of plain SGD is stored at the last batch of non-zero weight.
    last_start = ((n_order - 1) // batch_size) * batch_size
    while last_start >= 0:
        S = 0
        for r in range(last_start, min(last_start + batch_size, n_order)):
            S += sample_weight[order[r]]
        if S != 0:
            break
        last_start -= batch_size
    start = 0
    if last_start > 0 and _online_applies(call, team):
        # Every batch but the last one of non-zero weight (plain SGD stores its velocity).
        if not _online_run(call, params, last_start, &weight_sq, loss_sum, penalty_sum):
            return 0
        start = batch = last_start
    while start < n_order:
        stop = min(start + batch_size, n_order)
        n_rows = stop - start
        S = 0
        for r in range(start, stop):
            S += sample_weight[order[r]]
        if S == 0:  # no update, no loss; Adam's step number still counts the batch
            start = stop
            batch += 1
            continue
        l2 = <floating> (obj.alpha / S)
        up.skip_velocity = start < last_start
        # Without contraction the weight gradient need not be stored: one row makes it
        # the outer product of the layer input and delta, applied row by row in the
        # update; plain SGD folds the update into the gradient product.
        weight_mode = WEIGHT_GRADS
        if obj.deepest_contracted == 0:
            if n_rows == 1:
                weight_mode = WEIGHT_SKIP
            elif call.optimizer == _codes.SGD and call.momentum == 0 and up.skip_velocity:
                weight_mode = WEIGHT_DESCEND
        inputs = _batch_gradient(net, obj, params, X, Y, sample_weight, order + start,
                                 n_rows, ws, grad, weight_mode,
                                 <floating> learning_rate, l2, weight_sq, team, first_rows,
                                 &data, &pen)
        loss_sum[0] += n_rows * data
        penalty_sum[0] += n_rows * pen
        if not isfinite(data + pen):
            return 0
        weight_sq = 0
        bad = False
        if call.optimizer == _codes.ADAM:
            t = <double> (call.adam_step + batch + 1)
            up.learning_rate = (learning_rate * sqrt(1.0 - call.beta_2 ** t)
                                / (1.0 - call.beta_1 ** t))
        # Online plain SGD updates each layer's weights from the outer product of its
        # input and delta (_descend_outer), as _online_run, which takes these batches
        # when none of them needs noise or an activity penalty.
        online = (call.optimizer == _codes.SGD and call.momentum == 0 and up.skip_velocity
                  and weight_mode == WEIGHT_SKIP)
        # This member's rows of each layer's weights (those of its gradient), its
        # columns of each bias.
        for i in range(L - 1, -1, -1):
            if i == 0:
                k0 = first_rows[0]
                k1 = first_rows[1]
            else:
                _share(u[i], team, &k0, &k1)
            offset = net.coef_off[i] + k0 * u[i + 1]
            W = params + offset
            # The norm for the next batch's L2 term doubles as the finiteness check.
            # Without it, the weights are left to the next batch's objective and the
            # end of the epoch (docs/kernels.md): a pass over every weight after every
            # batch can cost as much as the update itself. The online update sums the
            # squares on its way.
            if online:
                if floating is float:
                    weight_sq += _descend_outer_float(
                        W, _activations(net, ws, inputs, i) + k0,
                        ws + net.lay[_slot(L, SLOT_DELTA, i + 1)], k1 - k0, u[i + 1],
                        <float> learning_rate, l2, NULL, NULL)
                else:
                    weight_sq += _descend_outer_double(
                        W, _activations(net, ws, inputs, i) + k0,
                        ws + net.lay[_slot(L, SLOT_DELTA, i + 1)], k1 - k0, u[i + 1],
                        learning_rate, l2, NULL, NULL)
                if obj.alpha != 0 and l2 == 0:  # alpha / S below the smallest number
                    weight_sq += _sum_squares(W, (k1 - k0) * u[i + 1])
            else:
                if weight_mode == WEIGHT_SKIP:
                    _step(&up, W, velocity + offset, _shift(second_moment, offset),
                          ws + net.lay[_slot(L, SLOT_DELTA, i + 1)],
                          _activations(net, ws, inputs, i) + k0, k1 - k0, u[i + 1], l2)
                elif weight_mode == WEIGHT_GRADS:
                    _step(&up, W, velocity + offset, _shift(second_moment, offset),
                          grad + offset, NULL, 1, (k1 - k0) * u[i + 1], l2)
                if obj.alpha != 0:
                    weight_sq += _sum_squares(W, (k1 - k0) * u[i + 1])
            _share(u[i + 1], team, &k0, &k1)
            offset = net.bias_off[i] + k0
            _step(&up, params + offset, velocity + offset, _shift(second_moment, offset),
                  grad + offset, NULL, 1, k1 - k0, <floating> 0)
            bad = bad or not _all_finite(params + offset, k1 - k0)
        if team.size > 1:
            team.sums[team.rank * SUMS_PER_MEMBER + 1] = weight_sq
            team.sums[team.rank * SUMS_PER_MEMBER + 2] = bad
            _sync(team)  # the weights are whole again
            weight_sq = 0
            for k in range(team.size):
                weight_sq += team.sums[k * SUMS_PER_MEMBER + 1]
                bad = bad or team.sums[k * SUMS_PER_MEMBER + 2] != 0
        if bad or not isfinite(weight_sq):
            return 0
        start = stop
        batch += 1
    if team.rank > 0:
        return 1
    return 1 if _all_finite(params, net.n_params) else 0


cdef struct Member:
    # One thread's part of a team's epoch, and what it returns.
    EpochCall* call
    Team team
    int ok
    double loss_sum
    double penalty_sum


cdef void _member_epoch(void* arg) noexcept nogil:
    cdef Member* member = <Member*> arg
    if member.call.is_double:
        member.ok = _sgd_epoch(member.call, <double*> member.call.params, &member.team,
                               &member.loss_sum, &member.penalty_sum)
    else:
        member.ok = _sgd_epoch(member.call, <float*> member.call.params, &member.team,
                               &member.loss_sum, &member.penalty_sum)


cdef void* _member_thread(void* arg) noexcept nogil:
    """A member's thread: waits until the caller has started them all, or gives up."""
    cdef Member* member = <Member*> arg
    cdef int start
    cdef long spins = 0
    while True:
        start = fastnn_load(&member.call.start)
        if start != TEAM_START_WAIT:
            break
        if spins < FASTNN_SPINS:
            FASTNN_PAUSE()
            spins += 1
        else:
            sched_yield()
    if start == TEAM_START_GO:
        _member_epoch(member)
    return NULL


cdef bint _team_epoch(EpochCall* call, Member* members, int size) noexcept nogil:
    """Run an epoch on ``size`` members: the caller is member 0, the others get a thread
    each; BLAS runs single-threaded meanwhile (each member calls it for its share).
    Returns False, having changed nothing, when a thread could not be started."""
    cdef pthread_t threads[TEAM_MAX]
    cdef int k, started = 0, previous = _blas_get_threads()
    fastnn_store(&call.start, TEAM_START_WAIT)
    for k in range(1, size):
        if pthread_create(&threads[k], NULL, _member_thread, &members[k]) != 0:
            break
        started += 1
    if started == size - 1:
        _blas_set_threads(1)
        fastnn_store(&call.start, TEAM_START_GO)
        _member_epoch(&members[0])
    else:
        fastnn_store(&call.start, TEAM_START_ABORT)
    for k in range(1, started + 1):
        pthread_join(threads[k], NULL)
    _blas_set_threads(previous)
    return started == size - 1


# --------------------------------------------------------------------------------------
# The contract's functions
# --------------------------------------------------------------------------------------

cdef int _deepest_contracted(const int64_t[::1] penalized, Py_ssize_t n_layers,
                             double contraction_weight) except -1:
    if penalized.shape[0] != n_layers - 1:
        raise ValueError(
            f"penalized has {penalized.shape[0]} flags, the network has "
            f"{n_layers - 1} hidden layers.")
    cdef int k, deepest = 0
    if contraction_weight > 0:
        for k in range(1, n_layers):
            if penalized[k - 1]:
                deepest = k
    return deepest


cdef object _check_network(int hidden_activation, int output_activation, int loss,
                           double kl_weight, const int64_t[::1] penalized):
    """The same errors as the reference for codes no network of fastnn has."""
    cdef Py_ssize_t k
    if not _codes.IDENTITY <= hidden_activation <= _codes.RELU:
        raise ValueError(f"Unknown hidden activation code {hidden_activation!r}.")
    if not ((output_activation == _codes.IDENTITY and loss == _codes.SQUARED_ERROR)
            or (output_activation == _codes.LOGISTIC
                and loss in (_codes.SQUARED_ERROR, _codes.BINARY_LOG_LOSS))
            or (output_activation == _codes.SOFTMAX and loss == _codes.LOG_LOSS)):
        raise ValueError(f"Output activation {output_activation!r} cannot be paired with "
                         f"loss {loss!r}.")
    if kl_weight != 0 and hidden_activation != _codes.LOGISTIC:
        for k in range(penalized.shape[0]):
            if penalized[k]:
                raise ValueError("The KL sparsity penalty needs logistic hidden units "
                                 "(activations in (0, 1)).")


cdef object _check_rows(const floating[:, ::1] X, const floating[:, ::1] Y,
                        const floating[::1] sample_weight, const int64_t[::1] order):
    """X, Y and sample_weight have one row per sample and order indexes them: the
    kernels read rows through raw pointers, so a bad index must stop here."""
    cdef Py_ssize_t n = X.shape[0], t
    cdef bint bad = False
    if Y.shape[0] != n or sample_weight.shape[0] != n:
        raise ValueError(f"X has {n} rows but Y has {Y.shape[0]} and sample_weight "
                         f"{sample_weight.shape[0]}.")
    with nogil:
        for t in range(order.shape[0]):
            bad = bad | (order[t] < 0) | (order[t] >= n)
    if bad:
        raise ValueError(f"order holds a row index outside [0, {n}).")


cdef inline uint64_t _as_uint64(object value) except? 0:
    """A Python integer taken mod 2^64 (the generator's arithmetic), as the reference."""
    return <uint64_t> (int(value) & 0xFFFFFFFFFFFFFFFF)


cdef Objective _objective(int hidden_activation, int output_activation, int loss,
                          double alpha, double l1_weight, double kl_weight,
                          double kl_target, double contraction_weight,
                          const int64_t[::1] penalized, int deepest, int noise,
                          double noise_level, uint64_t noise_seed, uint64_t epoch) except *:
    _check_network(hidden_activation, output_activation, loss, kl_weight, penalized)
    if not _codes.NO_NOISE <= noise <= _codes.GAUSSIAN_NOISE:
        raise ValueError(f"Unknown noise code {noise!r}.")
    cdef Objective obj
    obj.hidden_activation = hidden_activation
    obj.output_activation = output_activation
    obj.loss = loss
    obj.alpha = alpha
    obj.l1_weight = l1_weight
    obj.kl_weight = kl_weight
    obj.kl_target = kl_target
    obj.contraction_weight = contraction_weight
    obj.penalized = &penalized[0] if penalized.shape[0] > 0 else NULL
    obj.deepest_contracted = deepest
    obj.noise = noise
    obj.noise_level = noise_level
    obj.noise_key = _noise_key(noise_seed, epoch)
    return obj


def forward(const floating[::1] params, const int64_t[::1] layer_units,
            int hidden_activation, int output_activation, Py_ssize_t first_layer,
            Py_ssize_t last_layer, const floating[:, ::1] X, floating[:, ::1] out):
    """Run weight layers ``first_layer .. last_layer - 1`` on X, write o^{last_layer}."""
    cdef Py_ssize_t L = layer_units.shape[0] - 1
    if not 0 <= first_layer <= last_layer <= L:
        raise ValueError(f"need 0 <= first_layer <= last_layer <= {L}.")
    geometry = _Geometry(layer_units, 1, False)
    cdef Net* net = &(<_Geometry> geometry).net
    if params.shape[0] != net.n_params:
        raise ValueError(f"params has {params.shape[0]} entries, expected {net.n_params}.")
    cdef const int64_t* u = net.units
    cdef Py_ssize_t n = X.shape[0], block = 256, widest = 1, i, start, rows
    if X.shape[1] != u[first_layer] or out.shape[1] != u[last_layer] or out.shape[0] != n:
        raise ValueError("X or out has the wrong shape for these layers.")
    if n == 0:
        return None
    if first_layer == last_layer:
        out[:, :] = X
        return None
    for i in range(first_layer + 1, last_layer + 1):
        widest = max(widest, u[i])
    scratch = np.empty(2 * block * widest, dtype=np.asarray(params).dtype)
    cdef floating[::1] scratch_view = scratch
    cdef floating* buffers[2]
    buffers[0] = &scratch_view[0]
    buffers[1] = buffers[0] + block * widest
    cdef const floating* src
    cdef floating* dst
    with nogil:
        start = 0
        while start < n:
            rows = min(block, n - start)
            src = &X[start, 0]
            for i in range(first_layer, last_layer):
                dst = &out[start, 0] if i == last_layer - 1 else buffers[i % 2]
                gemm(False, False, rows, u[i + 1], u[i], src, u[i],
                     &params[net.coef_off[i]], u[i + 1], <floating> 0, dst, u[i + 1])
                _bias_activation(output_activation if i == L - 1 else hidden_activation,
                                 dst, &params[net.bias_off[i]], rows, u[i + 1])
                src = dst
            start += rows
    return None


def sgd_epoch(floating[::1] params, const int64_t[::1] layer_units, int hidden_activation,
              int output_activation, int loss, const floating[:, ::1] X,
              const floating[:, ::1] Y, const floating[::1] sample_weight,
              const int64_t[::1] order, Py_ssize_t batch_size, int optimizer,
              double learning_rate, double momentum, bint nesterov, double beta_1,
              double beta_2, double epsilon, int64_t adam_step, floating[::1] velocity,
              floating[::1] second_moment, double alpha, double l1_weight,
              double kl_weight, double kl_target, double contraction_weight,
              const int64_t[::1] penalized, int noise, double noise_level,
              noise_seed, epoch, floating[::1] workspace):
    """One epoch of minibatch SGD / Adam (docs/kernels.md).

    Returns ``(loss_sum, penalty_sum, ok)``; ``ok`` is 0 when a batch objective or the
    parameters became non-finite (the epoch stops there).
    """
    cdef Py_ssize_t L = layer_units.shape[0] - 1
    cdef Py_ssize_t n_order = order.shape[0]
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    cdef Py_ssize_t rows = max(1, min(batch_size, n_order))
    deepest = _deepest_contracted(penalized, L, contraction_weight)
    geometry = _Geometry(layer_units, rows, deepest > 0)
    (<_Geometry> geometry).check(params.shape[0], workspace.shape[0])
    cdef Net* net = &(<_Geometry> geometry).net
    if velocity is None or velocity.shape[0] != net.n_params:
        raise ValueError("velocity must have the length of params.")
    if optimizer == _codes.ADAM and (second_moment is None
                                     or second_moment.shape[0] != net.n_params):
        raise ValueError("second_moment must have the length of params for Adam.")
    if optimizer not in (_codes.SGD, _codes.ADAM):
        raise ValueError(f"Unknown optimizer code {optimizer!r}.")
    if X.shape[1] != layer_units[0] or Y.shape[1] != layer_units[L]:
        raise ValueError("X or Y does not match layer_units.")
    _check_rows(X, Y, sample_weight, order)
    cdef Objective obj = _objective(hidden_activation, output_activation, loss, alpha,
                                    l1_weight, kl_weight, kl_target, contraction_weight,
                                    penalized, deepest, noise, noise_level,
                                    _as_uint64(noise_seed), _as_uint64(epoch))
    cdef int ok = 1
    if n_order == 0:
        return 0.0, 0.0, 1
    cdef EpochCall call
    call.net = net
    call.obj = &obj
    call.params = &params[0]
    call.X = &X[0, 0]
    call.Y = &Y[0, 0]
    call.sample_weight = &sample_weight[0]
    call.order = &order[0]
    call.n_order = n_order
    call.batch_size = batch_size
    call.optimizer = optimizer
    call.learning_rate = learning_rate
    call.momentum = momentum
    call.nesterov = nesterov
    call.beta_1 = beta_1
    call.beta_2 = beta_2
    call.epsilon = epsilon
    call.adam_step = adam_step
    call.velocity = &velocity[0]
    call.second_moment = &second_moment[0] if optimizer == _codes.ADAM else NULL
    call.ws = &workspace[0]
    call.is_double = floating is double
    call.start = TEAM_START_WAIT
    cdef int size = _team_size(net, &obj, rows)
    cdef bint shared = False
    cdef Member* members
    cdef fastnn_barrier barrier
    cdef int k
    cdef unsigned char[::1] member_memory
    cdef double[::1] sums
    cdef int64_t[::1] columns
    cdef floating[::1] out_bias
    if size > 1:
        # The team's memory (freed with these arrays): members, sums, column marks,
        # output-bias parts.
        member_memory = np.zeros(size * sizeof(Member), dtype=np.uint8)
        sums = np.zeros(size * SUMS_PER_MEMBER, dtype=np.float64)
        columns = np.zeros(size * _team_columns(layer_units[0]), dtype=np.int64)
        out_bias = np.zeros(size * layer_units[L],
                            dtype=np.float32 if floating is float else np.float64)
        members = <Member*> &member_memory[0]
        barrier.arrived = 0
        barrier.generation = 0
        barrier.size = size
        for k in range(size):
            members[k].call = &call
            members[k].team.size = size
            members[k].team.rank = k
            members[k].team.barrier = &barrier
            members[k].team.sums = &sums[0]
            members[k].team.columns = &columns[0]
            members[k].team.out_bias = &out_bias[0]
            members[k].ok = 1
            members[k].loss_sum = 0
            members[k].penalty_sum = 0
        with nogil:
            shared = _team_epoch(&call, members, size)
        if shared:
            for k in range(size):
                ok = min(ok, members[k].ok)
            return members[0].loss_sum, members[0].penalty_sum, ok
    cdef Member solo
    solo.call = &call
    solo.team = _alone(net)
    solo.ok = 1
    solo.loss_sum = 0
    solo.penalty_sum = 0
    with nogil:
        _member_epoch(&solo)
    return solo.loss_sum, solo.penalty_sum, solo.ok


def loss_and_gradient(const floating[::1] params, const int64_t[::1] layer_units,
                      int hidden_activation, int output_activation, int loss,
                      const floating[:, ::1] X, const floating[:, ::1] Y,
                      const floating[::1] sample_weight, double alpha, double l1_weight,
                      double kl_weight, double kl_target, double contraction_weight,
                      const int64_t[::1] penalized, int noise, double noise_level,
                      noise_seed, epoch, floating[::1] grad, floating[::1] workspace):
    """Objective and gradient over all rows of X as one batch; returns (data, penalty)."""
    cdef Py_ssize_t L = layer_units.shape[0] - 1
    cdef Py_ssize_t n = X.shape[0]
    if n == 0:
        raise ValueError("loss_and_gradient needs at least one row.")
    deepest = _deepest_contracted(penalized, L, contraction_weight)
    geometry = _Geometry(layer_units, n, deepest > 0)
    (<_Geometry> geometry).check(params.shape[0], workspace.shape[0])
    cdef Net* net = &(<_Geometry> geometry).net
    if grad.shape[0] != net.n_params:
        raise ValueError("grad must have the length of params.")
    if X.shape[1] != layer_units[0] or Y.shape[1] != layer_units[L]:
        raise ValueError("X or Y does not match layer_units.")
    cdef Objective obj = _objective(hidden_activation, output_activation, loss, alpha,
                                    l1_weight, kl_weight, kl_target, contraction_weight,
                                    penalized, deepest, noise, noise_level,
                                    _as_uint64(noise_seed), _as_uint64(epoch))
    cdef int64_t[::1] rows = np.arange(n, dtype=np.int64)
    _check_rows(X, Y, sample_weight, rows)
    cdef double data = 0, pen = 0
    if _sample_weight_sum(&sample_weight[0], n) == 0:  # contributes nothing (docs/kernels.md)
        grad[:] = 0
        return 0.0, 0.0
    cdef Team alone = _alone(net)
    cdef Py_ssize_t first_rows[2]
    with nogil:
        _batch_gradient(net, &obj, &params[0], &X[0, 0], &Y[0, 0], &sample_weight[0],
                        &rows[0], n, &workspace[0], &grad[0], WEIGHT_GRADS, 0, 0,
                        _weight_sq(net, &params[0]), &alone, first_rows, &data, &pen)
        _add_l2_gradient(net, &params[0], &grad[0], alpha / _sample_weight_sum(
            &sample_weight[0], n))
    return data, pen


def corrupt(const floating[:, ::1] X, const int64_t[::1] sample_index, int noise,
            double noise_level, noise_seed, epoch, floating[:, ::1] out):
    """Write the corrupted copy of X into out; row r is sample ``sample_index[r]``."""
    cdef Py_ssize_t n = X.shape[0], r
    if sample_index.shape[0] != n or out.shape[0] != n or out.shape[1] != X.shape[1]:
        raise ValueError("X, sample_index and out must have matching shapes.")
    cdef uint64_t key = _noise_key(_as_uint64(noise_seed), _as_uint64(epoch))
    with nogil:
        for r in range(n):
            _corrupt_row(noise, noise_level, key, <uint64_t> sample_index[r], &X[r, 0],
                         &out[r, 0], X.shape[1])
    return None


# --------------------------------------------------------------------------------------
# Rosenblatt's perceptron (scikit-learn's _plain_sgd with the perceptron loss)
# --------------------------------------------------------------------------------------

cdef inline bint _perceptron_step(floating* coef, floating* intercept, const floating* x,
                                  const floating* Y, const floating* sample_weight,
                                  Py_ssize_t i, Py_ssize_t c, Py_ssize_t n_classes,
                                  Py_ssize_t n_features, double eta, bint fit_intercept,
                                  const floating* weight_pos, const floating* weight_neg,
                                  int64_t* n_updates, double* objective_sum,
                                  double* wide, double p) noexcept nogil:
    """Sample i, class c, given its margin p = x . w_c + b_c: adds its criterion to
    objective_sum[c] and, for a mistake, updates w_c (and, for float32, its double copy
    ``wide`` unless NULL) and b_c. Returns whether the weights changed."""
    cdef double y = Y[i * n_classes + c], update
    cdef floating step
    cdef floating* w = coef + c * n_features
    cdef Py_ssize_t j
    objective_sum[c] += max(0.0, -y * p)
    if y * p <= 0:
        update = (eta * y) * ((weight_pos[c] if y > 0 else weight_neg[c])
                              * sample_weight[i])
        if update != 0:
            step = <floating> update
            for j in range(n_features):
                w[j] += step * x[j]
            if floating is float:
                if wide != NULL:
                    for j in range(n_features):
                        wide[c * n_features + j] = w[j]
            n_updates[c] += 1
            if fit_intercept:
                intercept[c] = <floating> (intercept[c] + update)
            return 1
    return 0


cdef inline double _perceptron_margin(const floating* x, const floating* coef,
                                      const floating* intercept, const double* wide,
                                      Py_ssize_t c, Py_ssize_t n_features) noexcept nogil:
    """x . w_c + b_c (float32 dots the row with the double copy of w_c)."""
    cdef double p
    if floating is float:
        p = _dot(x, wide + c * n_features, n_features)
    else:
        p = _dot(x, coef + c * n_features, n_features)
    return p + intercept[c]


cdef enum:
    # Positions of the order in a block of the two-thread perceptron epoch
    # (PerceptronSplit): 256-4096 gave the same speed in a C prototype.
    SPLIT_ROWS = 1024
    # The helper is stopped once its margins went unused in this many more odd blocks
    # than they were used (see _perceptron_split_epoch).
    SPLIT_PATIENCE = 3


cdef struct PerceptronSplit:
    # A one-class epoch on two threads. The epoch's own thread runs the samples in order,
    # as alone; a helper takes, meanwhile, the margins x . w + b of every other block of
    # the order with the weights as they are, and the thread uses them only if it changed
    # no weight since the helper began on them. Both take a margin with the same code on
    # the same weights, so the epoch's results are those of one thread, bit for bit; the
    # helper saves the reading of half the rows, and an epoch without updates (a
    # separated problem's later epochs) runs at about twice one core's memory bandwidth.
    int64_t started       # the block the epoch's thread is in (release / acquire)
    int64_t published     # the last block whose margins the helper has written
    int64_t stop          # set by the epoch's thread: the helper returns
    int64_t first         # the helper takes blocks first + 1, first + 3, ...
    double* margins       # by position in the order (the helper's blocks only),
                          # allocated when the helper starts
    const void* coef      # the helper's inputs (it only reads them)
    const void* intercept
    const void* X
    const double* wide
    const int64_t* order
    Py_ssize_t n_order
    Py_ssize_t n_features
    bint is_float
    bint prefetch


cdef void _split_margins(const floating* coef, PerceptronSplit* split) noexcept nogil:
    """The helper's part: for each of its blocks b, once the epoch's thread has started
    block b - 1, the margins of block b, then published (release). It may read the
    weights while the thread changes them; the thread then does not use those margins."""
    cdef const floating* X = <const floating*> split.X
    cdef const floating* intercept = <const floating*> split.intercept
    cdef Py_ssize_t n = split.n_order, n_features = split.n_features
    cdef Py_ssize_t block, t, stop, n_blocks = (n + SPLIT_ROWS - 1) // SPLIT_ROWS
    cdef long spins
    for block in range(split.first + 1, n_blocks, 2):
        spins = 0
        while fastnn_load64(&split.started) < block - 1:
            if fastnn_load64(&split.stop):
                return
            spins += 1
            if spins < FASTNN_SPINS:
                FASTNN_PAUSE()
            else:
                sched_yield()
        if fastnn_load64(&split.stop):
            return
        stop = min((block + 1) * SPLIT_ROWS, n)
        for t in range(block * SPLIT_ROWS, stop):
            if split.prefetch and t + PREFETCH_AHEAD < stop:
                _prefetch_row(X + split.order[t + PREFETCH_AHEAD] * n_features, n_features)
            split.margins[t] = _perceptron_margin(X + split.order[t] * n_features, coef,
                                                  intercept, split.wide, 0, n_features)
        fastnn_store64(&split.published, block)


cdef void* _split_thread(void* arg) noexcept nogil:
    cdef PerceptronSplit* split = <PerceptronSplit*> arg
    if split.is_float:
        _split_margins(<const float*> split.coef, split)
    else:
        _split_margins(<const double*> split.coef, split)
    return NULL


cdef void _perceptron_one_class(floating* coef, floating* intercept, const floating* X,
                                const floating* Y, const floating* sample_weight,
                                const int64_t* order, Py_ssize_t t0, Py_ssize_t t1,
                                Py_ssize_t n_features, double eta, bint fit_intercept,
                                const floating* weight_pos, const floating* weight_neg,
                                int64_t* n_updates, double* objective_sum, double* wide,
                                bint prefetch) noexcept nogil:
    """The samples at positions t0 .. t1-1 of a one-class epoch, two at a time: both
    margins are taken with the same weights, in one stretch of code, so that the two dot
    products overlap (each is a chain of dependent additions), and the second is taken
    again when the first sample changed the weights. The steps and their results are
    those of one sample at a time. Measured on W1 (A/B in one process, best of 8
    trainings): float32 45.8-47.1 -> 47.8-49.8 M samples/s, float64 33.8-34.1 ->
    34.1-34.5 M (memory bound)."""
    cdef Py_ssize_t t = t0, i, i2
    cdef const floating* x
    cdef const floating* x2
    cdef double p, p2
    cdef bint updated
    while t + 1 < t1:
        i = order[t]
        i2 = order[t + 1]
        x = X + i * n_features
        x2 = X + i2 * n_features
        if prefetch and t + 1 + PREFETCH_AHEAD < t1:
            _prefetch_row(X + order[t + PREFETCH_AHEAD] * n_features, n_features)
            _prefetch_row(X + order[t + 1 + PREFETCH_AHEAD] * n_features, n_features)
        p = _perceptron_margin(x, coef, intercept, wide, 0, n_features)
        p2 = _perceptron_margin(x2, coef, intercept, wide, 0, n_features)
        updated = _perceptron_step(coef, intercept, x, Y, sample_weight, i, 0, 1,
                                   n_features, eta, fit_intercept, weight_pos,
                                   weight_neg, n_updates, objective_sum, wide, p)
        if updated:
            p2 = _perceptron_margin(x2, coef, intercept, wide, 0, n_features)
        _perceptron_step(coef, intercept, x2, Y, sample_weight, i2, 0, 1,
                         n_features, eta, fit_intercept, weight_pos,
                         weight_neg, n_updates, objective_sum, wide, p2)
        t += 2
    if t < t1:
        i = order[t]
        x = X + i * n_features
        p = _perceptron_margin(x, coef, intercept, wide, 0, n_features)
        _perceptron_step(coef, intercept, x, Y, sample_weight, i, 0, 1,
                         n_features, eta, fit_intercept, weight_pos,
                         weight_neg, n_updates, objective_sum, wide, p)


cdef void _perceptron_split_epoch(floating* coef, floating* intercept, const floating* X,
                                  const floating* Y, const floating* sample_weight,
                                  const int64_t* order, Py_ssize_t n_order,
                                  Py_ssize_t n_features, double eta, bint fit_intercept,
                                  const floating* weight_pos, const floating* weight_neg,
                                  int64_t* n_updates, double* objective_sum, double* wide,
                                  bint prefetch, PerceptronSplit* split) noexcept nogil:
    """A one-class epoch in blocks of SPLIT_ROWS, with the helper of ``split``.

    The helper starts after the first block without an update (a problem that updates
    all along never starts it), at the next block; from then on the thread runs every
    other block as alone, and each block between from the helper's margins, up to its
    first update, if it changed no weight since the helper began on them (since the
    block before began), else as alone. Once the margins went unused in SPLIT_PATIENCE
    more blocks than they were used, it stops the helper and finishes the epoch alone."""
    cdef Py_ssize_t block, t, stop, i, n_blocks = (n_order + SPLIT_ROWS - 1) // SPLIT_ROWS
    cdef int64_t updates_before = n_updates[0]  # when the block before began
    cdef bint valid, launched = False
    cdef int misses = 0
    cdef long spins
    cdef pthread_t helper
    for block in range(n_blocks):
        t = block * SPLIT_ROWS
        stop = min(t + SPLIT_ROWS, n_order)
        if (not launched and misses < SPLIT_PATIENCE and block > 0
                and block + 1 < n_blocks and n_updates[0] == updates_before):
            split.first = block
            split.margins = <double*> malloc(n_order * sizeof(double))
            launched = (split.margins != NULL
                        and pthread_create(&helper, NULL, _split_thread, split) == 0)
            if not launched:
                misses = SPLIT_PATIENCE  # alone for the rest of the epoch
        fastnn_store64(&split.started, block)
        valid = False
        if launched and (block - split.first) % 2 == 1 and misses < SPLIT_PATIENCE:
            if n_updates[0] == updates_before:
                spins = 0
                while fastnn_load64(&split.published) < block:
                    spins += 1
                    if spins < FASTNN_SPINS:
                        FASTNN_PAUSE()
                    else:
                        sched_yield()
                valid = True
            misses = misses - 1 if valid else misses + 1
            if misses == SPLIT_PATIENCE:
                fastnn_store64(&split.stop, 1)
        updates_before = n_updates[0]
        while valid and t < stop:
            i = order[t]
            if _perceptron_step(coef, intercept, X + i * n_features, Y, sample_weight, i,
                                0, 1, n_features, eta, fit_intercept, weight_pos,
                                weight_neg, n_updates, objective_sum, wide,
                                split.margins[t]):
                valid = False
            t += 1
        _perceptron_one_class(coef, intercept, X, Y, sample_weight, order, t, stop,
                              n_features, eta, fit_intercept, weight_pos, weight_neg,
                              n_updates, objective_sum, wide, prefetch)
    if launched:
        fastnn_store64(&split.stop, 1)
        pthread_join(helper, NULL)
    free(split.margins)
    split.margins = NULL


cdef inline int _weights_finite(const floating* coef, const floating* intercept,
                                Py_ssize_t n_classes, Py_ssize_t n_features) noexcept nogil:
    """1 when every weight and intercept is finite, else 0 (the end of an epoch)."""
    return 1 if (_all_finite(coef, n_classes * n_features)
                 and _all_finite(intercept, n_classes)) else 0


cdef int _perceptron_epoch(floating* coef, floating* intercept, const floating* X,
                           const floating* Y, const floating* sample_weight,
                           const int64_t* order, Py_ssize_t n_order, const int64_t* active,
                           Py_ssize_t n_classes, Py_ssize_t n_features, double eta,
                           bint fit_intercept, double l2_strength, double l1_strength,
                           const floating* weight_pos, const floating* weight_neg,
                           floating* l1_total, floating* l1_q, int64_t* n_updates,
                           double* objective_sum, double* wide,
                           bint prefetch, PerceptronSplit* split) noexcept nogil:
    """One epoch (docs/kernels.md); returns 1, or 0 when a weight became non-finite.

    Without penalties, for float32, ``wide`` holds a double copy of coef, kept equal to
    it (n_classes x n_features), so that the dot product widens only the input; one
    class (binary problems, W1) runs in _perceptron_one_class, or with a helper thread
    (``split`` not NULL) in _perceptron_split_epoch, where a separated epoch is a dot
    product and a compare per sample. With penalties (the weights change at every
    sample) the margin is taken on coef itself, and ``wide`` is not kept."""
    cdef Py_ssize_t t, c, j, i
    cdef const floating* x
    cdef floating* w
    cdef floating* q
    cdef double p, penalty, norm, z
    cdef floating shrink = <floating> max(0.0, 1.0 - eta * l2_strength)
    cdef bint penalised = l2_strength > 0 or l1_strength > 0
    if penalised:
        wide = NULL
    elif n_classes == 1 and active[0]:
        if split != NULL:
            _perceptron_split_epoch(coef, intercept, X, Y, sample_weight, order, n_order,
                                    n_features, eta, fit_intercept, weight_pos, weight_neg,
                                    n_updates, objective_sum, wide, prefetch, split)
        else:
            _perceptron_one_class(coef, intercept, X, Y, sample_weight, order, 0, n_order,
                                  n_features, eta, fit_intercept, weight_pos, weight_neg,
                                  n_updates, objective_sum, wide, prefetch)
        return _weights_finite(coef, intercept, n_classes, n_features)
    for t in range(n_order):
        i = order[t]
        x = X + i * n_features
        if prefetch and t + PREFETCH_AHEAD < n_order:
            _prefetch_row(X + order[t + PREFETCH_AHEAD] * n_features, n_features)
        for c in range(n_classes):
            if not active[c]:
                continue
            w = coef + c * n_features
            if wide != NULL:
                p = _perceptron_margin(x, coef, intercept, wide, c, n_features)
            else:
                p = _dot(x, w, n_features) + intercept[c]
            if penalised:
                # The penalties' part of the criterion, at the weights before the step;
                # then the shrink, and the step from the margin taken before it.
                penalty = 0
                if l2_strength > 0:
                    penalty += 0.5 * l2_strength * _dot(w, w, n_features)
                if l1_strength > 0:
                    norm = 0
                    for j in range(n_features):
                        norm += fabs(w[j])
                    penalty += l1_strength * norm
                objective_sum[c] += penalty
                if l2_strength > 0:
                    for j in range(n_features):
                        w[j] *= shrink
            _perceptron_step(coef, intercept, x, Y, sample_weight, i, c, n_classes,
                             n_features, eta, fit_intercept, weight_pos, weight_neg,
                             n_updates, objective_sum, wide, p)
            if l1_strength > 0:
                l1_total[c] = <floating> (l1_total[c] + eta * l1_strength)
                q = l1_q + c * n_features
                for j in range(n_features):
                    z = w[j]
                    if z > 0:
                        w[j] = <floating> max(0.0, z - (l1_total[c] + q[j]))
                    elif z < 0:
                        w[j] = <floating> min(0.0, z + (l1_total[c] - q[j]))
                    q[j] = <floating> (q[j] + (w[j] - z))
    return _weights_finite(coef, intercept, n_classes, n_features)


def perceptron_epoch(floating[:, ::1] coef, floating[::1] intercept,
                     const floating[:, ::1] X, const floating[:, ::1] Y,
                     const floating[::1] sample_weight, const int64_t[::1] order,
                     const int64_t[::1] active, double eta, bint fit_intercept,
                     double l2_strength, double l1_strength,
                     const floating[::1] weight_pos, const floating[::1] weight_neg,
                     floating[::1] l1_total, floating[:, ::1] l1_q,
                     int64_t[::1] n_updates, double[::1] objective_sum):
    """One online epoch of the one-vs-rest perceptron (docs/kernels.md); returns 1, or 0
    when a weight became non-finite."""
    cdef Py_ssize_t n_classes = coef.shape[0], n_features = coef.shape[1]
    if (X.shape[1] != n_features or Y.shape[1] != n_classes
            or intercept.shape[0] != n_classes or active.shape[0] != n_classes
            or weight_pos.shape[0] != n_classes or weight_neg.shape[0] != n_classes
            or l1_total.shape[0] != n_classes or l1_q.shape[0] != n_classes
            or l1_q.shape[1] != n_features or n_updates.shape[0] != n_classes
            or objective_sum.shape[0] != n_classes):
        raise ValueError("perceptron_epoch: arrays do not have matching shapes.")
    _check_rows(X, Y, sample_weight, order)
    if order.shape[0] == 0 or n_classes == 0 or n_features == 0:
        return 1
    cdef int ok
    # The unpenalised route's double copy of float32 weights (for float64, coef itself,
    # unused).
    cdef double[:, ::1] wide = np.asarray(coef, dtype=np.float64)
    cdef bint prefetch = X.shape[0] * n_features * sizeof(floating) > PREFETCH_BYTES
    cdef PerceptronSplit split
    cdef PerceptronSplit* shared = NULL
    # Two threads for one unpenalised class, when BLAS may use two and the input is too
    # big for the cache (PerceptronSplit): a memory-bound epoch.
    if (n_classes == 1 and active[0] and not (l2_strength > 0 or l1_strength > 0)
            and prefetch and order.shape[0] >= 2 * SPLIT_ROWS
            and _blas_get_threads != NULL and _blas_get_threads() >= 2):
        split.started = -1
        split.published = -1
        split.stop = 0
        split.first = 0
        split.margins = NULL  # allocated when the helper starts
        split.coef = &coef[0, 0]
        split.intercept = &intercept[0]
        split.X = &X[0, 0]
        split.wide = &wide[0, 0]
        split.order = &order[0]
        split.n_order = order.shape[0]
        split.n_features = n_features
        split.is_float = floating is float
        split.prefetch = prefetch
        shared = &split
    with nogil:
        ok = _perceptron_epoch(&coef[0, 0], &intercept[0], &X[0, 0], &Y[0, 0],
                               &sample_weight[0], &order[0], order.shape[0], &active[0],
                               n_classes, n_features, eta, fit_intercept, l2_strength,
                               l1_strength, &weight_pos[0], &weight_neg[0], &l1_total[0],
                               &l1_q[0, 0], &n_updates[0], &objective_sum[0],
                               &wide[0, 0], prefetch, shared)
    return ok


# --------------------------------------------------------------------------------------
# def twins of the matrix product routes, for bench/test_tiny_shapes.py
# --------------------------------------------------------------------------------------

def _matmul(const floating[:, ::1] A, const floating[:, ::1] B, floating[:, ::1] C,
            str route, Py_ssize_t repeat=1):
    """C = A @ B by ``route`` ("blas", "direct" or "auto"), ``repeat`` times without the
    GIL (so that a benchmark measures the product, not the call)."""
    cdef Py_ssize_t m = A.shape[0], k = A.shape[1], n = B.shape[1], t
    if B.shape[0] != k or C.shape[0] != m or C.shape[1] != n or m * n * k == 0:
        raise ValueError("shapes do not match (or are empty).")
    cdef int which = {"blas": 0, "direct": 1, "auto": 2}[route]
    with nogil:
        for t in range(repeat):
            if which == 0:
                blas_gemm(False, False, <int> m, <int> n, <int> k, <floating> 1,
                          &A[0, 0], <int> k,
                          &B[0, 0], <int> n, <floating> 0, &C[0, 0], <int> n)
            elif which == 1:
                direct_gemm(False, False, m, n, k, <floating> 1, &A[0, 0], k, &B[0, 0], n,
                            <floating> 0, &C[0, 0], n)
            else:
                gemm(False, False, m, n, k, &A[0, 0], k, &B[0, 0], n, <floating> 0,
                     &C[0, 0], n)
    return None


def _used_columns_twin(const floating[:, ::1] X):
    """The def twin of ``_mark_used`` and ``_used_columns``, for tests: the columns a
    batch X would keep (int64, from its runs), or None when it would not compact."""
    cdef Py_ssize_t n_cols = X.shape[1], n_used, n_runs = 0, r
    if X.shape[0] == 0 or n_cols == 0:
        raise ValueError("X is empty.")
    scratch = np.zeros(2 * n_cols + 2, dtype=np.int64)
    cdef int64_t[::1] view = scratch
    with nogil:
        for r in range(X.shape[0]):
            _mark_used(&X[r, 0], n_cols, &view[0])
        n_used = _used_columns(&view[0], n_cols, &view[n_cols], &n_runs)
    if n_used == n_cols:
        return None
    runs = scratch[n_cols:n_cols + 2 * n_runs].reshape(-1, 2)
    return np.concatenate([np.arange(0, dtype=np.int64)]
                          + [np.arange(a, a + b, dtype=np.int64) for a, b in runs])
