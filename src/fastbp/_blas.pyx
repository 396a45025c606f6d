"""Row-major BLAS over scipy.linalg.cython_blas, for float32 and float64.

Column-major BLAS computes C^T = op(B)^T op(A)^T when given the row-major
buffers with the operands (and m/n) swapped, so nothing is ever copied.
"""
from cython cimport floating
from scipy.linalg.cython_blas cimport sgemm, dgemm


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, floating alpha,
               const floating* A, int lda, const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, all row-major; C is (m, n)."""
    cdef char ca = ta, cb = tb
    if floating is float:
        sgemm(&cb, &ca, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&cb, &ca, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda, &beta, C, &ldc)


def gemm_memview(BLAS_Trans ta, BLAS_Trans tb, const floating[:, ::1] A,
                 const floating[:, ::1] B, floating[:, ::1] C, double alpha=1.0, double beta=0.0):
    """Test shim: C := alpha * op(A) @ op(B) + beta * C on C-contiguous arrays."""
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[1] if ta == NoTrans else A.shape[0]
    cdef int opb_rows = B.shape[0] if tb == NoTrans else B.shape[1]
    cdef int opa_rows = A.shape[0] if ta == NoTrans else A.shape[1]
    cdef int opb_cols = B.shape[1] if tb == NoTrans else B.shape[0]
    if opa_rows != m or opb_rows != k or opb_cols != n:
        raise ValueError("gemm_memview: incompatible shapes")
    with nogil:
        gemm(ta, tb, m, n, k, <floating>alpha, &A[0, 0], <int>A.shape[1], &B[0, 0],
             <int>B.shape[1], <floating>beta, &C[0, 0], <int>C.shape[1])
