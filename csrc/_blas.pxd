# Row-major matrix products for the kernels: scipy's BLAS for anything sizeable, direct
# loops for the tiny products of online learning (batch 1, narrow layers), where a BLAS
# call costs more than the arithmetic (bench/test_tiny_shapes.py measures the cut-off).

from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

# Measured in bench/test_tiny_shapes.py (OpenBLAS 0.3.30, one thread): BLAS is as fast
# as the direct loops from about a thousand multiply-adds, and faster above, except for
# products with one output column (dot products), where the direct loop wins by 2-3x.
cdef enum:
    DIRECT_MAX_MULADDS = 256
    DIRECT_MAX_DOT = 4096   # m * k of a one-column product


cdef inline void blas_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                           floating alpha, const floating* A, int lda, const floating* B,
                           int ldb, floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major ``C = alpha op(A) @ op(B) + beta C`` (``op(A)`` is m x k) through BLAS.

    BLAS is column-major, and a row-major matrix is its transpose in column-major
    order, so the row-major product is the column-major ``C^T = op(B)^T op(A)^T``.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> B, &ldb, <float*> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> B, &ldb, <double*> A, &lda,
              &beta, C, &ldc)


ctypedef fused other_floating:
    # w's type in _dot, apart from x's: the perceptron dots float32 rows with weights it
    # keeps widened to double, which saves half the conversions.
    float
    double


cdef extern from *:
    """
    /* _dot's sums: FASTNN_DOT_LANES (32) double accumulators (one running sum would
       serialise the loop on the latency of an addition), held as vectors of the
       machine's own width (a wider GCC vector is split by the compiler into slow code:
       see _kernels.pyx's online block), added pairwise at the end (the pairwise steps
       below are written for 32). Written with GCC/Clang
       vector types because the same loops in Cython kept the accumulators on the stack,
       and the pairwise sum became 32 scalar loads a call (W1's perceptron). */
    #if defined(__AVX512F__)
    #define FASTNN_VECTOR_BYTES 64
    #elif defined(__AVX__)
    #define FASTNN_VECTOR_BYTES 32
    #else
    #define FASTNN_VECTOR_BYTES 16
    #endif
    typedef double fastnn_dot_vd
        __attribute__((vector_size(FASTNN_VECTOR_BYTES), aligned(8), may_alias));
    typedef float fastnn_dot_vf
        __attribute__((vector_size(FASTNN_VECTOR_BYTES / 2), aligned(4), may_alias));
    #define FASTNN_DOT_LANES 32
    enum { fastnn_dot_lanes = FASTNN_VECTOR_BYTES / 8,
           fastnn_dot_count = FASTNN_DOT_LANES / fastnn_dot_lanes };
    #define FASTNN_DOT_DOUBLE(p) (*(const fastnn_dot_vd*) (p))
    #define FASTNN_DOT_FLOAT(p)                                                       \\
        __builtin_convertvector(*(const fastnn_dot_vf*) (p), fastnn_dot_vd)
    #define FASTNN_DOT(NAME, TX, TW, LOAD_X, LOAD_W)                                  \\
    static inline double NAME(const TX* x, const TW* w, Py_ssize_t n) {               \\
        const fastnn_dot_vd zero = {0};                                               \\
        fastnn_dot_vd acc[fastnn_dot_count];                                          \\
        double lanes[8], tail = 0;                                                    \\
        Py_ssize_t i = 0, blocked = n - n % FASTNN_DOT_LANES;                         \\
        for (int v = 0; v < fastnn_dot_count; v++) acc[v] = zero;                     \\
        for (; i < blocked; i += FASTNN_DOT_LANES)                                    \\
            for (int v = 0; v < fastnn_dot_count; v++)                                \\
                acc[v] += LOAD_X(x + i + v * fastnn_dot_lanes)                        \\
                          * LOAD_W(w + i + v * fastnn_dot_lanes);                     \\
        for (; i < n; i++) tail += (double) x[i] * (double) w[i];                     \\
        /* lane l += lane l + 16, then += lane l + 8: whole vectors (none is wider   \\
           than 8 lanes); then the 8 lanes left as numbers. */                      \\
        for (int v = 0; v < 16 / fastnn_dot_lanes; v++)                               \\
            acc[v] += acc[v + 16 / fastnn_dot_lanes];                                 \\
        for (int v = 0; v < 8 / fastnn_dot_lanes; v++)                                \\
            acc[v] += acc[v + 8 / fastnn_dot_lanes];                                  \\
        __builtin_memcpy(lanes, acc, 8 * sizeof(double));                             \\
        for (int l = 0; l < 4; l++) lanes[l] += lanes[l + 4];                         \\
        return ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) + tail;                \\
    }
    FASTNN_DOT(fastnn_dot_ff, float, float, FASTNN_DOT_FLOAT, FASTNN_DOT_FLOAT)
    FASTNN_DOT(fastnn_dot_fd, float, double, FASTNN_DOT_FLOAT, FASTNN_DOT_DOUBLE)
    FASTNN_DOT(fastnn_dot_df, double, float, FASTNN_DOT_DOUBLE, FASTNN_DOT_FLOAT)
    FASTNN_DOT(fastnn_dot_dd, double, double, FASTNN_DOT_DOUBLE, FASTNN_DOT_DOUBLE)
    """
    double fastnn_dot_ff(const float* x, const float* w, Py_ssize_t n) noexcept nogil
    double fastnn_dot_fd(const float* x, const double* w, Py_ssize_t n) noexcept nogil
    double fastnn_dot_df(const double* x, const float* w, Py_ssize_t n) noexcept nogil
    double fastnn_dot_dd(const double* x, const double* w, Py_ssize_t n) noexcept nogil


cdef inline double _dot(const floating* x, const other_floating* w,
                        Py_ssize_t n) noexcept nogil:
    """x . w accumulated in double, in FASTNN_DOT_LANES (32) independent sums
    (vectorised), added pairwise; the entries after the last whole block of 32 in a sum
    of their own, added last (fastnn_dot_*)."""
    if floating is float:
        if other_floating is float:
            return fastnn_dot_ff(x, w, n)
        else:
            return fastnn_dot_fd(x, w, n)
    else:
        if other_floating is float:
            return fastnn_dot_df(x, w, n)
        else:
            return fastnn_dot_dd(x, w, n)


cdef enum:
    # Columns of C accumulated in registers at once by the direct loops.
    DIRECT_BLOCK = 16


cdef inline void direct_gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                             Py_ssize_t k, floating alpha, const floating* A,
                             Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                             floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    """The same product as ``blas_gemm`` in plain loops.

    With B untransposed, each row of C is built DIRECT_BLOCK columns at a time in a
    local accumulator the compiler keeps in vector registers (C is written once, not k
    times); with B transposed every entry is a dot product of two contiguous rows.
    Each entry sums over p = 0 .. k-1 in order, except a dot product of contiguous
    rows (one output column), which is _dot's (lanes in double): one running sum would
    wait on the latency of every addition. C is not read when beta is 0.
    """
    cdef Py_ssize_t i, j, j0, p, lane
    cdef Py_ssize_t a_row = 1 if trans_a else lda   # stride of A's op-rows
    cdef Py_ssize_t a_col = lda if trans_a else 1   # stride along an op-row of A
    cdef floating acc[DIRECT_BLOCK]
    cdef floating a, total
    if trans_b and k == 1:  # an outer product (the deltas below one output unit)
        for i in range(m):
            a = A[i * a_row]
            for j in range(n):
                C[i * ldc + j] = alpha * (a * B[j * ldb]) + (
                    beta * C[i * ldc + j] if beta != 0 else 0)
        return
    if not trans_b and n == 1 and a_col == 1 and ldb == 1:  # dot products (in lanes)
        for i in range(m):
            C[i * ldc] = alpha * <floating> _dot(A + i * a_row, B, k) + (
                beta * C[i * ldc] if beta != 0 else 0)
        return
    if trans_b:
        for i in range(m):
            for j in range(n):
                total = 0
                for p in range(k):
                    total = total + A[i * a_row + p * a_col] * B[j * ldb + p]
                C[i * ldc + j] = alpha * total + (beta * C[i * ldc + j] if beta != 0 else 0)
        return
    for i in range(m):
        j0 = 0
        while j0 + DIRECT_BLOCK <= n:
            for lane in range(DIRECT_BLOCK):
                acc[lane] = 0
            for p in range(k):
                a = A[i * a_row + p * a_col]
                for lane in range(DIRECT_BLOCK):
                    acc[lane] = acc[lane] + a * B[p * ldb + j0 + lane]
            for lane in range(DIRECT_BLOCK):
                C[i * ldc + j0 + lane] = alpha * acc[lane] + (
                    beta * C[i * ldc + j0 + lane] if beta != 0 else 0)
            j0 += DIRECT_BLOCK
        for j in range(j0, n):
            total = 0
            for p in range(k):
                total = total + A[i * a_row + p * a_col] * B[p * ldb + j]
            C[i * ldc + j] = alpha * total + (beta * C[i * ldc + j] if beta != 0 else 0)


cdef inline void gemm_scaled(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                             Py_ssize_t k, floating alpha, const floating* A,
                             Py_ssize_t lda, const floating* B, Py_ssize_t ldb,
                             floating beta, floating* C, Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C = alpha op(A) @ op(B) + beta C`` by the faster route."""
    if m * n * k <= DIRECT_MAX_MULADDS or (n == 1 and m * k <= DIRECT_MAX_DOT):
        direct_gemm(trans_a, trans_b, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    else:
        blas_gemm(trans_a, trans_b, <int> m, <int> n, <int> k, alpha, A, <int> lda, B,
                  <int> ldb, beta, C, <int> ldc)


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                      Py_ssize_t k, const floating* A, Py_ssize_t lda,
                      const floating* B, Py_ssize_t ldb, floating beta,
                      floating* C, Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C = op(A) @ op(B) + beta C`` by the faster route."""
    gemm_scaled(trans_a, trans_b, m, n, k, <floating> 1, A, lda, B, ldb, beta, C, ldc)
