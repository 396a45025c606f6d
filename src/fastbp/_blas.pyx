"""Row-major BLAS over scipy.linalg.cython_blas, for float32 and float64, and the
choice of fastbp's own kernel (_gemm.h) for small float32 products.

Column-major BLAS computes C^T = op(B)^T op(A)^T when given the row-major
buffers with the operands (and m/n) swapped, so nothing is ever copied.

sgemm/dgemm are taken from cython_blas's ``__pyx_capi__`` capsules, the module
loaded by ``_scipy_blas`` (which says why that is not a plain cimport).
"""
import os
import re

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython cimport floating

from . import _scipy_blas

# The signatures of scipy.linalg.cython_blas's sgemm/dgemm (its `s`/`d` are float/double).
ctypedef void (*sgemm_ptr)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*,
                           float*, float*, int*) noexcept nogil
ctypedef void (*dgemm_ptr)(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*,
                           double*, double*, int*) noexcept nogil

# Filled once below, at import; the module fails to import rather than leave them NULL.
cdef sgemm_ptr sgemm = NULL
cdef dgemm_ptr dgemm = NULL

# void (char *, char *, int *, int *, int *, T *, T *, int *, T *, int *, T *, T *, int *);
# T is cython_blas's typedef of float/double, whose C name is Cython's mangling.
_GEMM_SIG = re.compile(r"void \((char \*, ){2}(int \*, ){3}(\w+ \*, ){2}int \*, \w+ \*, "
                       r"int \*, (\w+ \*, ){2}int \*\)")


cdef void* _capi_function(module, str name) except NULL:
    cap = module.__pyx_capi__[name]
    cdef const char* sig = PyCapsule_GetName(cap)
    if sig == NULL or not _GEMM_SIG.fullmatch(sig.decode()):
        raise ImportError(f"{module.__name__}.{name} has an unexpected signature "
                          f"{None if sig == NULL else sig.decode()!r}")
    return PyCapsule_GetPointer(cap, sig)


# the module and how _scipy_blas found it ("sys.modules", "file" or "import")
_cython_blas, _cython_blas_source = _scipy_blas.load_cython_blas()
sgemm = <sgemm_ptr>_capi_function(_cython_blas, "sgemm")
dgemm = <dgemm_ptr>_capi_function(_cython_blas, "dgemm")


# ---- fastbp's own kernel for small float32 products (see _gemm.h) ----------------------
cdef extern from "_gemm.h" nogil:
    int fbp_sgemm_small_isa()
    long long fbp_sgemm_small_calls
    int fbp_sgemm_small(int isa, int ta, int tb, int m, int n, int k, float alpha,
                        const float* A, int lda, const float* B, int ldb, float beta,
                        float* C, int ldc)
    int fbp_sgemm_rows(int isa, int m, int n, int k, const float* A, int lda,
                       const float* B, int ldb, float* C, int ldc)
    int G_ROWS_MAX

_ISA_NAMES = {0: "blas", 1: "avx2", 2: "avx512"}
cdef int cpu_isa = fbp_sgemm_small_isa()
cdef int small_isa = cpu_isa
# FASTBP_SMALL_GEMM: "0" (BLAS only), a kernel name for set_small_gemm_kernel, and/or
# "always" (a testing aid: the own kernel for every float32 product), comma-separated.
_SMALL_ENV = [w.strip() for w in os.environ.get("FASTBP_SMALL_GEMM", "auto").split(",")]
# Where the own kernel runs (float32 only; bench/README.md has the measurements): from
# 2^18 multiply-adds on (below that BLAS's small-matrix kernels do as well), while op(A)
# has at most 2^17 entries (ours re-reads all of A for every column panel, so beyond that
# BLAS's blocked kernels win), and for outputs at least 32 wide (BLAS wins on narrower).
cdef double SMALL_MIN_MNK = 262144.0
cdef double SMALL_MAX_MK = 131072.0
cdef int SMALL_MIN_N = 32
if "always" in _SMALL_ENV:
    SMALL_MIN_MNK, SMALL_MAX_MK, SMALL_MIN_N = 0.0, float("inf"), 1


def small_gemm_kernel():
    """Which kernel does fastbp's small float32 products: "avx512", "avx2" or "blas"."""
    return _ISA_NAMES[small_isa]


def rows_kernel_rows():
    """The most rows a float32 product may have to run on the own rows kernel, without the
    BLAS (0 when every product goes to the BLAS)."""
    return G_ROWS_MAX if small_isa != 0 else 0


def small_gemm_calls():
    """How many products the own kernel has done in this process (all threads)."""
    return fbp_sgemm_small_calls


def set_small_gemm_kernel(str name):
    """Use "blas" for every product, or the named own kernel (the CPU must have it);
    "auto" picks the best the CPU has. Returns the previous setting."""
    global small_isa
    cdef int isa
    previous = _ISA_NAMES[small_isa]
    if name == "auto":
        isa = cpu_isa
    else:
        codes = {v: k for k, v in _ISA_NAMES.items()}
        if name not in codes:
            raise ValueError(f"name must be one of {sorted(codes) + ['auto']}, got {name!r}")
        isa = codes[name]
        if isa > cpu_isa:
            raise ValueError(f"name={name!r}: this CPU (or build) supports up to "
                             f"{_ISA_NAMES[cpu_isa]!r}")
    small_isa = isa
    return previous


for _word in _SMALL_ENV:
    if _word in ("0", "blas", "avx512", "avx2", "auto"):
        set_small_gemm_kernel("blas" if _word == "0" else _word)
    elif _word != "always":
        raise ImportError(f"FASTBP_SMALL_GEMM={os.environ['FASTBP_SMALL_GEMM']!r}: expected "
                          f"0, blas, auto, avx512 or avx2, and/or always (comma-separated)")


cdef int small_gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                    floating* like) noexcept nogil:
    """Whether gemm_as(small=...) should take the own kernel for this whole product; decide
    it once per product, so that every block of a split product runs the same kernel."""
    cdef double mk = <double>m * k
    return (floating is float and small_isa != 0 and n >= SMALL_MIN_N
            and mk * n >= SMALL_MIN_MNK and mk <= SMALL_MAX_MK)


cdef void gemm_as(int small, BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                  floating alpha, const floating* A, int lda, const floating* B, int ldb,
                  floating beta, floating* C, int ldc) noexcept nogil:
    """gemm, by the own kernel when small (from small_gemm) and there is something to sum."""
    if floating is float:
        # a few rows (predict on a few samples): streamed through the own rows kernel,
        # whatever small_gemm said, unless every product must go to BLAS
        if (m <= G_ROWS_MAX and ta == NoTrans and tb == NoTrans and alpha == 1 and beta == 0
                and m > 0 and n > 0 and k > 0 and small_isa != 0
                and fbp_sgemm_rows(small_isa, m, n, k, A, lda, B, ldb, C, ldc)):
            return
        # (it does nothing, and BLAS does the product, if set_small_gemm_kernel("blas")
        # ran in another thread since small_gemm decided)
        if small and m > 0 and n > 0 and k > 0 and fbp_sgemm_small(
                small_isa, ta == Trans, tb == Trans, m, n, k, alpha, A, lda, B, ldb, beta,
                C, ldc):
            return
    gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, floating alpha,
               const floating* A, int lda, const floating* B, int ldb,
               floating beta, floating* C, int ldc) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C, all row-major; C is (m, n), by the BLAS."""
    cdef char ca = ta, cb = tb
    if floating is float:
        sgemm(&cb, &ca, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&cb, &ca, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda, &beta, C, &ldc)


def gemm_memview(BLAS_Trans ta, BLAS_Trans tb, const floating[:, :] A,
                 const floating[:, :] B, floating[:, :] C, double alpha=1.0, double beta=0.0,
                 bint small=False):
    """Test shim: C := alpha * op(A) @ op(B) + beta * C on row-major views (rows may be
    strided, e.g. column slices; entries within a row contiguous). small: by the own kernel
    set by set_small_gemm_kernel, whatever the size (float32 only)."""
    cdef int m = C.shape[0], n = C.shape[1]
    cdef int k = A.shape[1] if ta == NoTrans else A.shape[0]
    cdef int opb_rows = B.shape[0] if tb == NoTrans else B.shape[1]
    cdef int opa_rows = A.shape[0] if ta == NoTrans else A.shape[1]
    cdef int opb_cols = B.shape[1] if tb == NoTrans else B.shape[0]
    cdef Py_ssize_t item = sizeof(floating)
    if opa_rows != m or opb_rows != k or opb_cols != n:
        raise ValueError("gemm_memview: incompatible shapes")
    for name, v in (("A", A), ("B", B), ("C", C)):
        if v.strides[1] != item or v.strides[0] % item or v.strides[0] < v.shape[1] * item:
            raise ValueError(f"gemm_memview: {name} must have contiguous rows")
    if m == 0 or n == 0:
        return
    with nogil:
        gemm_as(small, ta, tb, m, n, k, <floating>alpha, &A[0, 0], <int>(A.strides[0] // item),
                &B[0, 0], <int>(B.strides[0] // item), <floating>beta, &C[0, 0],
                <int>(C.strides[0] // item))
