/* fastbp's own sgemm for small products (the hidden layers of small and medium MLPs).
 *
 * BLAS packs both operands into its own layout before every product, a large part of
 * the work when the product is small. Row-major training products have rows of op(B)
 * contiguous in two of their three forms (x W and x^T g), so a register tile can stream
 * B's rows in place and broadcast A's entries: no packing at all while m is small (from
 * 16 row tiles on, one copy of each column panel is cheaper than L1 conflicts on every
 * tile); the third form (g W^T) packs B^T one column panel at a time, transposed in
 * registers. A is never packed. Each C entry is summed over k in the same order (by FMA)
 * whatever the split of m or n, so row and column blocks of one product are
 * bit-identical to the product done whole.
 *
 * x86-64 with gcc/clang only (AVX-512 and AVX2+FMA instances, picked at run time);
 * elsewhere fbp_sgemm_small_isa() is 0 and BLAS does every product. */
#ifndef FASTBP_GEMM_H
#define FASTBP_GEMM_H
#include <stddef.h>

#define FBP_GEMM_KC 256   /* k block: a 2-vector panel of B stays in L1 (32 KB for AVX-512) */
#ifndef G_PF
#define G_PF 4     /* fbp_sgemm_rows, one row: prefetch B this many rows ahead */
#endif
#define G_ROWS_MAX 4      /* fbp_sgemm_rows: products of at most this many rows */

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(FASTBP_NO_GEMM)
#define FBP_HAVE_GEMM 1
#include <immintrin.h>

#define G_SUF avx512
#define G_TARGET "avx512f,avx2,fma"
#define G_VL 16
#define G_MR 8
#define G_NV 2
#include "_gemm_kernel.h"

#define G_SUF avx2
#define G_TARGET "avx2,fma"
#define G_VL 8
#define G_MR 6
#define G_NV 2
#include "_gemm_kernel.h"
#else
#define FBP_HAVE_GEMM 0
#endif

/* 2: AVX-512, 1: AVX2+FMA, 0: none (BLAS only) */
static int fbp_sgemm_small_isa(void)
{
#if FBP_HAVE_GEMM
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

/* C = A B for m <= G_ROWS_MAX, no transposes (see fbp_sgemm_rows_*); returns 0 if it did
 * nothing (isa 0) */
static int fbp_sgemm_rows(int isa, int m, int n, int k, const float *A, int lda,
                          const float *B, int ldb, float *C, int ldc)
{
#if FBP_HAVE_GEMM
    if (isa != 0 && (k <= FBP_GEMM_KC || (ptrdiff_t)m * n <= 8192)) {
        float T[k <= FBP_GEMM_KC ? 1 : m * n];     /* at most 32 KB of stack */
        if (isa == 2)
            fbp_sgemm_rows_avx512(m, n, k, A, lda, B, ldb, C, ldc, T);
        else
            fbp_sgemm_rows_avx2(m, n, k, A, lda, B, ldb, C, ldc, T);
        return 1;
    }
#endif
    (void)isa; (void)m; (void)n; (void)k; (void)A; (void)lda; (void)B; (void)ldb; (void)C;
    (void)ldc;
    return 0;
}

/* products done by the own kernel since load (tests check that it is really used) */
static long long fbp_sgemm_small_calls = 0;

/* isa from fbp_sgemm_small_isa (or lower); returns 0 if it did nothing (isa 0) */
static int fbp_sgemm_small(int isa, int ta, int tb, int m, int n, int k, float alpha,
                           const float *A, int lda, const float *B, int ldb, float beta,
                           float *C, int ldc)
{
#if FBP_HAVE_GEMM
    if (isa != 0)
        __atomic_fetch_add(&fbp_sgemm_small_calls, 1, __ATOMIC_RELAXED);
    if (isa == 2) {
        fbp_sgemm_small_avx512(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return 1;
    }
    if (isa == 1) {
        fbp_sgemm_small_avx2(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
        return 1;
    }
#endif
    (void)isa; (void)ta; (void)tb; (void)m; (void)n; (void)k; (void)alpha; (void)A;
    (void)lda; (void)B; (void)ldb; (void)beta; (void)C; (void)ldc;
    return 0;
}
#endif
