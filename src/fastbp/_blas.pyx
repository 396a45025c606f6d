"""Row-major BLAS over scipy.linalg.cython_blas, for float32 and float64.

Column-major BLAS computes C^T = op(B)^T op(A)^T when given the row-major
buffers with the operands (and m/n) swapped, so nothing is ever copied.

sgemm/dgemm are taken from cython_blas's ``__pyx_capi__`` capsules rather than
cimported: a cimport makes this module's init run ``import
scipy.linalg.cython_blas``, which first imports the whole ``scipy.linalg``
package (~26 MB of RSS and a good part of ``import fastbp``'s time). Loading
only cython_blas's extension file gives the same C functions (and loads the
same BLAS library, which ``_config`` finds by its path) without that.
"""
import importlib.machinery
import importlib.util
import os
import re
import sys

from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython cimport floating

# The signatures of scipy.linalg.cython_blas's sgemm/dgemm (its `s`/`d` are float/double).
ctypedef void (*sgemm_ptr)(char*, char*, int*, int*, int*, float*, float*, int*, float*, int*,
                           float*, float*, int*) noexcept nogil
ctypedef void (*dgemm_ptr)(char*, char*, int*, int*, int*, double*, double*, int*, double*, int*,
                           double*, double*, int*) noexcept nogil

# Filled once below, at import; the module fails to import rather than leave them NULL.
cdef sgemm_ptr sgemm = NULL
cdef dgemm_ptr dgemm = NULL

_CYTHON_BLAS = "scipy.linalg.cython_blas"


def _load_cython_blas():
    """scipy.linalg.cython_blas and how it was found: "sys.modules" (already imported),
    "file" (its extension file loaded on its own, without the scipy.linalg package) or
    "import" (a plain import, the fallback if loading the file fails for any reason)."""
    mod = sys.modules.get(_CYTHON_BLAS)
    if mod is not None:
        return mod, "sys.modules"
    try:
        return _load_extension_file(), "file"
    except Exception:
        pass
    importlib.import_module(_CYTHON_BLAS)
    return sys.modules[_CYTHON_BLAS], "import"


def _load_extension_file():
    import scipy
    path = None
    for base in scipy.__path__:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = os.path.join(base, "linalg", "cython_blas" + suffix)
            if os.path.isfile(candidate):
                path = candidate
                break
        if path is not None:
            break
    if path is None:
        raise ImportError(f"no {_CYTHON_BLAS} extension file under {list(scipy.__path__)}")
    loader = importlib.machinery.ExtensionFileLoader(_CYTHON_BLAS, path)
    spec = importlib.util.spec_from_file_location(_CYTHON_BLAS, path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    try:
        loader.exec_module(mod)   # Cython's init also enters it in sys.modules
    finally:
        # Take it out of sys.modules again: an entry put there before its parent package
        # exists never becomes the attribute scipy.linalg.cython_blas, so a later
        # `import scipy.linalg.cython_blas` would leave `scipy.linalg.cython_blas` an
        # AttributeError. A later import instead loads it the usual way, and Cython
        # hands back this same module object (one per process; checked just below),
        # sets it as scipy.linalg's attribute and does not run its init again.
        if sys.modules.get(_CYTHON_BLAS) is mod:
            del sys.modules[_CYTHON_BLAS]
    if loader.create_module(spec) is not mod:
        # This Cython build would make a second module object, whose init could then
        # fail on a later import: keep ours registered instead.
        sys.modules[_CYTHON_BLAS] = mod
    return mod


# void (char *, char *, int *, int *, int *, T *, T *, int *, T *, int *, T *, T *, int *);
# T is cython_blas's typedef of float/double, whose C name is Cython's mangling.
_GEMM_SIG = re.compile(r"void \((char \*, ){2}(int \*, ){3}(\w+ \*, ){2}int \*, \w+ \*, "
                       r"int \*, (\w+ \*, ){2}int \*\)")


cdef void* _capi_function(module, str name) except NULL:
    cap = module.__pyx_capi__[name]
    cdef const char* sig = PyCapsule_GetName(cap)
    if sig == NULL or not _GEMM_SIG.fullmatch(sig.decode()):
        raise ImportError(f"{_CYTHON_BLAS}.{name} has an unexpected signature "
                          f"{None if sig == NULL else sig.decode()!r}")
    return PyCapsule_GetPointer(cap, sig)


_cython_blas, _cython_blas_source = _load_cython_blas()
sgemm = <sgemm_ptr>_capi_function(_cython_blas, "sgemm")
dgemm = <dgemm_ptr>_capi_function(_cython_blas, "dgemm")


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
