"""bfloat16 products with float32 accumulation (the foundation of issue 17).

``bf16_gemm`` rounds op(A) and op(B) to bfloat16 (round to nearest even) while it packs
them and sums the products in float32, by the AVX512_BF16 instruction VDPBF16PS where the
CPU has it, else by a portable C emulation of the same arithmetic (see ``_bf16.h``).

FASTBP_BF16 picks the implementation at import: ``auto`` (the default: native where the
CPU has AVX512_BF16), ``emulate`` (always the portable C) or ``native`` (an ImportError
where the CPU or build lacks it). ``set_bf16_mode`` changes it later, process-wide.
"""
import os

import numpy as np

cdef extern from "_bf16.h" nogil:
    int FBP_BF16_EMULATED
    int FBP_BF16_NATIVE
    int B16_MR
    int B16_NR
    int B16_KC
    int fbp_bf16_cpu()
    int fbp_bf16_gemm(int mode, int ta, int tb, int m, int n, int k, float alpha,
                      const float* A, int lda, const float* B, int ldb, float beta, float* C,
                      int ldc, int nthreads)
    ctypedef struct fbp_b16_sgd:
        float* p
        float lr, wd, keep
        unsigned int pmax, bmax
    int fbp_bf16_gemm_ws(int mode, int ta, int tb, int m, int n, int k, float alpha,
                         const float* A, int lda, const float* B, int ldb, float beta,
                         float* C, int ldc, int nthreads, unsigned int* scratch,
                         fbp_b16_sgd* sgd)
    size_t fbp_bf16_scratch_bytes(int m)
    void fbp_bf16_round(int mode, const float* x, float* dst, Py_ssize_t count)
    float fbp_bf16_peak(int which, long iters)
    int fbp_bf16_peak_chains()

cdef extern from "_simd_common.h" nogil:
    double fbp_bits_f32(unsigned int b)

_NAMES = {FBP_BF16_EMULATED: "emulated", FBP_BF16_NATIVE: "avx512_bf16"}
cdef int cpu_mode = fbp_bf16_cpu()
cdef int active_mode = cpu_mode


cdef int bf16_mode() noexcept nogil:
    return active_mode


cdef int bf16_gemm_ws_c(int ta, int tb, int m, int n, int k, float alpha, const float* A,
                        int lda, const float* B, int ldb, float beta, float* C, int ldc,
                        int n_threads, void* scratch) noexcept nogil:
    """The product by the active implementation, with the caller's scratch (64-byte
    aligned, bf16_scratch_bytes(m) bytes or more): no allocation, returns 0."""
    return fbp_bf16_gemm_ws(active_mode, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                            n_threads, <unsigned int*>scratch, NULL)


cdef int bf16_gemm_sgd_c(int ta, int tb, int m, int n, int k, float alpha, const float* A,
                         int lda, const float* B, int ldb, float beta, float* C, int ldc,
                         int n_threads, void* scratch, float* p, float lr, float wd,
                         float keep, double* pmax, double* bmax) noexcept nogil:
    """bf16_gemm_ws_c into SGD momentum's buffer C, each tile of which is then updated with
    p (laid out as C) while in cache: per entry d = C + wd*p; p -= lr*d; C = keep*d
    (_momentum.h, the bits of _optim.momentum_step). Raises pmax[0], bmax[0] to the largest
    new |p|, |C| (inf if not finite); returns 1 if every new p is finite."""
    cdef fbp_b16_sgd sgd
    sgd.p = p
    sgd.lr = lr
    sgd.wd = wd
    sgd.keep = keep
    sgd.pmax = 0
    sgd.bmax = 0
    fbp_bf16_gemm_ws(active_mode, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                     n_threads, <unsigned int*>scratch, &sgd)
    pmax[0] = max(pmax[0], fbp_bits_f32(sgd.pmax))
    bmax[0] = max(bmax[0], fbp_bits_f32(sgd.bmax))
    return sgd.pmax < 0x7f800000u


cdef size_t bf16_scratch_bytes(int m) noexcept nogil:
    return fbp_bf16_scratch_bytes(m)


def bf16_capability():
    """The implementation bf16 products use now: "avx512_bf16" (VDPBF16PS) or "emulated"."""
    return _NAMES[active_mode]


def bf16_cpu_capability():
    """What this CPU and build allow: "avx512_bf16" or "emulated"."""
    return _NAMES[cpu_mode]


def set_bf16_mode(str name):
    """Process-wide: "auto" (native where the CPU has it), "emulate" or "native" (a
    ValueError where the CPU or build lacks it). Returns the previous capability name."""
    global active_mode
    previous = _NAMES[active_mode]
    if name == "auto":
        active_mode = cpu_mode
    elif name in ("emulate", "emulated"):
        active_mode = FBP_BF16_EMULATED
    elif name in ("native", "avx512_bf16"):
        if cpu_mode != FBP_BF16_NATIVE:
            raise ValueError("bf16 mode 'native': this CPU (or build) lacks AVX512_BF16")
        active_mode = FBP_BF16_NATIVE
    else:
        raise ValueError(f"bf16 mode must be 'auto', 'emulate' or 'native', got {name!r}")
    return previous


_env = os.environ.get("FASTBP_BF16", "auto").strip().lower() or "auto"
try:
    set_bf16_mode(_env)
except ValueError as e:
    raise ImportError(f"FASTBP_BF16={os.environ['FASTBP_BF16']!r}: {e}") from None


def tile_shape():
    """(rows, columns, k block) of the kernel's register tile and blocking."""
    return B16_MR, B16_NR, B16_KC


cdef _check_rows(name, a):
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.ndim != 2:
        raise TypeError(f"{name} must be a 2-D float32 ndarray")
    if a.size == 0:
        return
    if a.shape[1] > 1 and a.strides[1] != 4 or a.strides[0] < 0 or a.strides[0] % 4:
        raise ValueError(f"{name} must have contiguous rows (a row stride >= 0)")


def bf16_gemm(A, B, bint transa=False, bint transb=False, double alpha=1.0, double beta=0.0,
              C=None, int n_threads=1):
    """C := alpha op(A) op(B) + beta C with op(A), op(B) rounded to bfloat16 and float32 sums,
    row-major float32 arrays (rows may be strided: column slices are fine). op(X) is X.T
    when transX. C (m x n) is written in place when given (beta == 0: never read), else a
    new array; returned either way. n_threads: OpenMP threads (column panels split among
    them; the result does not depend on it)."""
    _check_rows("A", A)
    _check_rows("B", B)
    cdef int m = A.shape[1] if transa else A.shape[0]
    cdef int k = A.shape[0] if transa else A.shape[1]
    cdef int kb = B.shape[1] if transb else B.shape[0]
    cdef int n = B.shape[0] if transb else B.shape[1]
    if kb != k:
        raise ValueError(f"bf16_gemm: op(A) is {m}x{k} but op(B) is {kb}x{n}")
    if C is None:
        if beta != 0:
            raise ValueError("bf16_gemm: beta != 0 needs C")
        C = np.empty((m, n), dtype=np.float32)
    _check_rows("C", C)
    if C.shape[0] != m or C.shape[1] != n:
        raise ValueError(f"bf16_gemm: C must be {m}x{n}, got {C.shape[0]}x{C.shape[1]}")
    if not C.flags.writeable:
        raise ValueError("bf16_gemm: C is read-only")
    if n_threads < 1:
        raise ValueError(f"n_threads must be >= 1, got {n_threads}")
    if m == 0 or n == 0:
        return C
    cdef const float[:, :] a = A
    cdef const float[:, :] b = B
    cdef float[:, :] c = C
    cdef const float* pa = &a[0, 0] if A.shape[0] > 0 and A.shape[1] > 0 else NULL
    cdef const float* pb = &b[0, 0] if B.shape[0] > 0 and B.shape[1] > 0 else NULL
    cdef int lda = max(<int>(A.strides[0] // 4), 1)
    cdef int ldb = max(<int>(B.strides[0] // 4), 1)
    cdef int ldc = <int>(C.strides[0] // 4)
    cdef int rc, ta = transa, tb = transb
    cdef float fa = alpha, fb = beta
    with nogil:
        rc = fbp_bf16_gemm(active_mode, ta, tb, m, n, k, fa, pa, lda, pb, ldb, fb, &c[0, 0],
                           ldc, n_threads)
    if rc != 0:
        raise MemoryError("bf16_gemm: could not allocate the packed operand")
    return C


def bf16_round(x):
    """x (float32, any shape) rounded to bfloat16 as the active implementation packs it,
    returned as float32."""
    src = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(src)
    cdef const float[::1] s = src.reshape(-1)
    cdef float[::1] d = out.reshape(-1)
    if s.shape[0]:
        with nogil:
            fbp_bf16_round(active_mode, &s[0], &d[0], s.shape[0])
    return out


def peak_loop(str instruction, long iterations):
    """Run the register-only peak loop: ``iterations`` rounds of ``peak_chains()``
    independent zmm VDPBF16PS ("dpbf16") or VFMADD231PS ("fma"), nothing loaded or stored.
    Returns the loop's result (a float); raises RuntimeError where the CPU or build lacks
    the instruction. Time it from outside: 64 (dpbf16) or 32 (fma) flops per instruction."""
    cdef int which
    if instruction == "dpbf16":
        which = 1
    elif instruction == "fma":
        which = 0
    else:
        raise ValueError(f"instruction must be 'dpbf16' or 'fma', got {instruction!r}")
    cdef float r
    with nogil:
        r = fbp_bf16_peak(which, iterations)
    if r == -1.0:
        raise RuntimeError(f"{instruction}: not available on this CPU or build")
    return r


def peak_chains():
    """zmm instructions per iteration of peak_loop (0: no peak loop in this build)."""
    return fbp_bf16_peak_chains()
