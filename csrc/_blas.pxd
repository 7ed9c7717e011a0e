# Row-major matrix products for the kernels: scipy's BLAS for anything sizeable, direct
# loops for the tiny products of online learning (batch 1, narrow layers), where a BLAS
# call costs more than the arithmetic (bench/test_tiny_shapes.py measures the cut-off).

from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm

# Products with at most this many multiply-adds run as direct loops (measured, see
# bench/test_tiny_shapes.py).
cdef enum:
    DIRECT_MAX_MULADDS = 4096


cdef inline void blas_gemm(bint trans_a, bint trans_b, int m, int n, int k,
                           const floating* A, int lda, const floating* B, int ldb,
                           floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major ``C = op(A) @ op(B) + beta * C`` (``op(A)`` is m x k) through BLAS.

    BLAS is column-major, and a row-major matrix is its transpose in column-major
    order, so the row-major product is the column-major ``C^T = op(B)^T op(A)^T``.
    """
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef floating one = 1
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &one, <float*> B, &ldb, <float*> A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &one, <double*> B, &ldb, <double*> A, &lda,
              &beta, C, &ldc)


cdef inline void direct_gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                             Py_ssize_t k, const floating* A, Py_ssize_t lda,
                             const floating* B, Py_ssize_t ldb, floating beta,
                             floating* C, Py_ssize_t ldc) noexcept nogil:
    """The same product as ``blas_gemm`` in plain loops (``beta`` is 0 or 1).

    The innermost loop runs along rows of ``B`` and ``C`` (an axpy the compiler
    vectorises) except for ``A @ B^T``, which is a dot product per entry.
    """
    cdef Py_ssize_t i, j, p
    cdef floating a, s
    if beta == 0 and not (not trans_a and trans_b):
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] = 0
    if not trans_a and not trans_b:
        for i in range(m):
            for p in range(k):
                a = A[i * lda + p]
                for j in range(n):
                    C[i * ldc + j] += a * B[p * ldb + j]
    elif trans_a and not trans_b:
        for p in range(k):
            for i in range(m):
                a = A[p * lda + i]
                for j in range(n):
                    C[i * ldc + j] += a * B[p * ldb + j]
    elif not trans_a and trans_b:
        for i in range(m):
            for j in range(n):
                s = 0
                for p in range(k):
                    s = s + A[i * lda + p] * B[j * ldb + p]
                if beta == 0:
                    C[i * ldc + j] = s
                else:
                    C[i * ldc + j] += s
    else:
        for p in range(k):
            for i in range(m):
                a = A[p * lda + i]
                for j in range(n):
                    C[i * ldc + j] += a * B[j * ldb + p]


cdef inline void gemm(bint trans_a, bint trans_b, Py_ssize_t m, Py_ssize_t n,
                      Py_ssize_t k, const floating* A, Py_ssize_t lda,
                      const floating* B, Py_ssize_t ldb, floating beta,
                      floating* C, Py_ssize_t ldc) noexcept nogil:
    """Row-major ``C = op(A) @ op(B) + beta * C``, ``beta`` 0 or 1, by the faster route."""
    if m * n * k <= DIRECT_MAX_MULADDS:
        direct_gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc)
    else:
        blas_gemm(trans_a, trans_b, <int> m, <int> n, <int> k, A, <int> lda, B,
                  <int> ldb, beta, C, <int> ldc)
