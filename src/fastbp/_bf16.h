/* bfloat16 products with float32 accumulation (issue 17's foundation).
 *
 * C (m x n) := alpha op(A) op(B) + beta C, all row-major float32 in memory; op(A) and op(B)
 * are rounded to bfloat16 (round to nearest even, as VCVTNE2PS2BF16) while they are packed,
 * and the products are summed in float32 by VDPBF16PS, which adds two bf16 x bf16 products
 * (exact in float32) to each float32 lane: k is consumed in pairs, so both packed operands
 * hold (element 2q, element 2q+1) of a row of op(A) / column of op(B) side by side in one
 * 32-bit word (the even element in the low half).
 *
 * Layout (GotoBLAS style): k is cut into equal even blocks of at most B16_KC; per k block,
 * all of op(A) is packed once into tiles of B16_MR rows, each tile pair-major (tile[q * MR + r] = the pair q of row r), padded with zero
 * rows; then each column panel of up to B16_NR columns of op(B) is packed (panel[q * w + j],
 * w = the panel's width rounded up to 16 lanes) into a buffer that stays in L1 while every
 * row tile runs over it. The micro-kernel keeps an MR x NR tile of C in zmm accumulators
 * (8 x 48: 24 accumulators, 3 B vectors and a broadcast of A), one VDPBF16PS per
 * accumulator per k pair. The (column panel, row tile) grid is cut into equal shares of
 * work for the OpenMP threads, the A pack by tiles; every C entry is summed in the same order whatever the threads or a row/column
 * split of the product, so results are bit-identical across thread counts.
 *
 * Two implementations of the same arithmetic, chosen at run time:
 *  - native (FBP_BF16_NATIVE): AVX512_BF16 (+F/BW/VL) intrinsics, gcc >= 10 / clang >= 9 on
 *    x86-64, used when __builtin_cpu_supports("avx512bf16");
 *  - emulated (FBP_BF16_EMULATED): portable C. The rounding is done in integer arithmetic
 *    (as the instruction: NaN kept and made quiet, float32 denormals flushed to signed zero,
 *    ties to even) and each pair is added as acc = (acc + a1 b1) + a0 b0 in float32 (the
 *    products are exact, so contracting to FMA changes nothing). The one difference from
 *    VDPBF16PS is that the emulation does not flush denormal results to zero.
 * Both pack into the same layout with bit-identical bf16 words.
 */
#ifndef FASTBP_BF16_H
#define FASTBP_BF16_H
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef _WIN32
#include <malloc.h>             /* _aligned_malloc */
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include "_momentum.h"

#ifndef B16_MR
#define B16_MR 8                 /* rows of the register tile (at most 16) */
#endif
#ifndef B16_NV
#define B16_NV 3                 /* 16-lane vectors per tile row (at most 6) */
#endif
#define B16_NR (16 * B16_NV)     /* columns of the register tile / a column panel */
#ifndef B16_KC
#define B16_KC 256               /* k block (even): a packed B panel is KC/2 * NR * 4 = 24 KB */
#endif
#define B16_KP (B16_KC / 2)


#if defined(__GNUC__) || defined(__clang__)
#define B16_PREFETCH(p) __builtin_prefetch((p), 0, 2)
#define B16_PREFETCHW(p) __builtin_prefetch((p), 1, 3)
#else
#define B16_PREFETCH(p) ((void)(p))
#define B16_PREFETCHW(p) ((void)(p))
#endif

#if defined(_MSC_VER) && !defined(__clang__)
#define B16_ALIGN64 __declspec(align(64))
#else
#define B16_ALIGN64 __attribute__((aligned(64)))
#endif

#define FBP_BF16_EMULATED 0
#define FBP_BF16_NATIVE 1

#if defined(__x86_64__) && !defined(FASTBP_NO_BF16) && \
    ((defined(__clang__) && defined(__apple_build_version__) && __clang_major__ >= 12) || \
     (defined(__clang__) && !defined(__apple_build_version__) && __clang_major__ >= 10) || \
     (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 10))
#define FBP_HAVE_BF16_ISA 1
#include <immintrin.h>
#define B16_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"
#else
#define FBP_HAVE_BF16_ISA 0
#endif

/* FBP_BF16_NATIVE if this build has the native kernel and the CPU has AVX512_BF16 (and the
 * AVX-512 subsets the kernel uses), else FBP_BF16_EMULATED */
static int fbp_bf16_cpu(void)
{
#if FBP_HAVE_BF16_ISA
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bf16"))
        return FBP_BF16_NATIVE;
#endif
    return FBP_BF16_EMULATED;
}

/* ---- the portable arithmetic ----------------------------------------------------------- */

/* float32 -> bfloat16 bits, round to nearest even; NaN stays NaN (made quiet), denormals
 * become signed zero (VCVTNE2PS2BF16 treats denormal inputs as zero) */
static inline uint32_t fbp_bf16_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
    if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

static inline float fbp_bf16_float(uint32_t h)
{
    const uint32_t u = h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* the 32-bit pair word: x0 (the even k index) in the low half */
static inline uint32_t fbp_bf16_pair(float x0, float x1)
{
    return fbp_bf16_bits(x0) | (fbp_bf16_bits(x1) << 16);
}

/* dst[j] = pair(r0[j], r1[j]) (r1 NULL: 0) for j < cnt, 0 for cnt <= j < w */
static void fbp_b16_interleave_emu(const float *r0, const float *r1, int cnt, int w,
                                   uint32_t *dst)
{
    for (int j = 0; j < w; j++)
        dst[j] = j < cnt ? fbp_bf16_pair(r0[j], r1 ? r1[j] : 0.0f) : 0u;
}

/* dst[q * W + off + r] = pair(src[r * ld + 2q], src[r * ld + 2q + 1]) for r < R (rows of the
 * source; lanes R <= r < L of each stored group are 0), q < kp, the element kc (odd kc) 0;
 * L lanes are written per q */
static void fbp_b16_transpose_emu(const float *src, ptrdiff_t ld, int R, int L, int kc,
                                  uint32_t *dst, int W)
{
    const int kp = (kc + 1) / 2;
    for (int q = 0; q < kp; q++)
        for (int r = 0; r < L; r++) {
            uint32_t v = 0;
            if (r < R) {
                const float *s = src + (ptrdiff_t)r * ld + 2 * q;
                v = fbp_bf16_pair(s[0], 2 * q + 1 < kc ? s[1] : 0.0f);
            }
            dst[(ptrdiff_t)q * W + r] = v;
        }
}

/* one float32 lane of VDPBF16PS: acc + a1 b1 + a0 b0, in that order */
static inline float fbp_bf16_dot2(float acc, uint32_t a, uint32_t b)
{
    acc += fbp_bf16_float(a >> 16) * fbp_bf16_float(b >> 16);
    acc += fbp_bf16_float(a & 0xffffu) * fbp_bf16_float(b & 0xffffu);
    return acc;
}

/* C[0:mr, 0:nc] := alpha * (tile of A) (panel of B) (+ beta C if first, + C if not) */
static void fbp_b16_tile_emu(int kp, const uint32_t *Ap, const uint32_t *Bp, int w, float *C,
                             ptrdiff_t ldc, int mr, int nc, float alpha, float beta, int first)
{
    float acc[B16_MR][B16_NR];
    memset(acc, 0, sizeof acc);
    for (int q = 0; q < kp; q++) {
        const uint32_t *b = Bp + (ptrdiff_t)q * w;
        for (int r = 0; r < mr; r++) {
            const uint32_t a = Ap[q * B16_MR + r];
            for (int j = 0; j < nc; j++) acc[r][j] = fbp_bf16_dot2(acc[r][j], a, b[j]);
        }
    }
    for (int r = 0; r < mr; r++) {
        float *c = C + (ptrdiff_t)r * ldc;
        for (int j = 0; j < nc; j++) {   /* one rounding per step, as the native kernel */
            if (!first) c[j] = fmaf(alpha, acc[r][j], c[j]);
            else if (beta == 0.0f) c[j] = alpha * acc[r][j];
            else c[j] = fmaf(beta, c[j], alpha * acc[r][j]);
        }
    }
}

/* ---- SGD momentum fused into dW's product ---------------------------------------------- */

/* When C is the momentum buffer of SGD momentum and the product adds the gradient into it
 * (beta = mu, C := mu*buf + g), each tile of C, once its last k block is summed, is updated
 * with its parameters p (laid out as C) while it is in L1: the thread that made the tile
 * updates it, and no separate pass reads the buffer back from the other core's cache. The
 * update is _momentum.h's, so its bits are those of the optimizer's own pass. */
typedef struct {
    float *p;              /* the parameters, at C's offsets (ldc) */
    float lr, wd, keep;    /* see FBP_MOMENTUM */
    uint32_t pmax, bmax;   /* out: raised to the bits of the largest new |p|, |buf| */
} fbp_b16_sgd;

#if defined(__GNUC__) || defined(__clang__)
FBP_MOMENTUM(fbp_b16_momentum, static inline __attribute__((always_inline)), float, uint32_t,
             f32, 0x7fffffffu, 0x7f800000u)
#else
FBP_MOMENTUM(fbp_b16_momentum, static inline, float, uint32_t, f32, 0x7fffffffu, 0x7f800000u)
#endif

/* the mr x nc block of the buffer at C and of the parameters at P (both ldc apart): the
 * emulation's tiles, and the few-rows and k = 0 paths of either mode (the same bits as the
 * native tile's) */
static void fbp_b16_sgd_block(const fbp_b16_sgd *sgd, float *P, float *C, ptrdiff_t ldc, int mr,
                              int nc, uint32_t *mp, uint32_t *mb)
{
    for (int r = 0; r < mr; r++)
        fbp_b16_momentum(P + (ptrdiff_t)r * ldc, C + (ptrdiff_t)r * ldc, nc, sgd->lr, sgd->wd,
                         sgd->keep, mp, mb);
}

/* ---- the native kernel ----------------------------------------------------------------- */
#if FBP_HAVE_BF16_ISA

/* the first `left` lanes of 16 (none if left <= 0, all if left >= 16) */
static inline __mmask16 fbp_b16_mask(int left)
{
    return left >= 16 ? (__mmask16)0xffff
                      : left <= 0 ? (__mmask16)0 : (__mmask16)((1u << left) - 1);
}

/* word i of the result: i even -> word i/2 of lo, odd -> word i/2 of hi (32 words) */
static inline __attribute__((always_inline, target(B16_TARGET))) __m512i fbp_b16_cvt2(
    __m512 lo, __m512 hi)
{
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25,
                                         9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2,
                                         17, 1, 16, 0);
    /* cvtne2ps_pbh(a, b): words 0-15 from b, 16-31 from a */
    const __m512i h = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    return _mm512_permutexvar_epi16(idx, h);
}

static __attribute__((target(B16_TARGET))) void fbp_b16_interleave_avx(
    const float *r0, const float *r1, int cnt, int w, uint32_t *dst)
{
    for (int j = 0; j < w; j += 16) {
        const int left = cnt - j;
        const __mmask16 mk = fbp_b16_mask(left);
        const __m512 x0 = _mm512_maskz_loadu_ps(mk, r0 + j);
        const __m512 x1 = r1 ? _mm512_maskz_loadu_ps(mk, r1 + j) : _mm512_setzero_ps();
        const __m512i v = fbp_b16_cvt2(x0, x1);
        if (w - j >= 16)
            _mm512_storeu_si512((void *)(dst + j), v);
        else
            _mm512_mask_storeu_epi32(dst + j, fbp_b16_mask(w - j), v);
    }
}

/* 16 x 16 transpose of 32-bit lanes: log2(16) rounds, each swapping the off-diagonal halves
 * of ever smaller blocks (the rounds of _gemm_kernel.h's fbp_gpackt) */
static inline __attribute__((always_inline, target(B16_TARGET))) void fbp_b16_t16(__m512i *row)
{
#define B16_ROUND(H, LO, HI) \
    for (int r = 0; r < 16; r++) { \
        if (r & H) continue; \
        const __m512i a = row[r], b = row[r + H]; \
        row[r] = _mm512_permutex2var_epi32(a, LO, b); \
        row[r + H] = _mm512_permutex2var_epi32(a, HI, b); \
    }
    const __m512i l8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    const __m512i h8 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
    const __m512i l4 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i h4 = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    const __m512i l2 = _mm512_setr_epi32(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
    const __m512i h2 = _mm512_setr_epi32(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    const __m512i l1 = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    const __m512i h1 = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    B16_ROUND(8, l8, h8)
    B16_ROUND(4, l4, h4)
    B16_ROUND(2, l2, h2)
    B16_ROUND(1, l1, h1)
#undef B16_ROUND
}

/* as fbp_b16_transpose_emu, for R <= 16 rows and L <= 16 lanes */
static __attribute__((target(B16_TARGET))) void fbp_b16_transpose_avx(
    const float *src, ptrdiff_t ld, int R, int L, int kc, uint32_t *dst, int W)
{
    const int kp = (kc + 1) / 2;
    const __mmask16 lmask = fbp_b16_mask(L);
    for (int f = 0; f < kc; f += 32) {      /* 32 floats of each row: 16 pairs */
        const int left = kc - f;
        const __mmask16 m0 = fbp_b16_mask(left), m1 = fbp_b16_mask(left - 16);
        __m512i row[16];
        for (int r = 0; r < 16; r++) {
            if (r < R) {
                const float *s = src + (ptrdiff_t)r * ld + f;
                /* words 0-15: floats f..f+15, words 16-31: f+16..f+31, so dword i is pair i */
                row[r] = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, s + 16),
                                                      _mm512_maskz_loadu_ps(m0, s));
            } else {
                row[r] = _mm512_setzero_si512();
            }
        }
        fbp_b16_t16(row);
        const int q0 = f / 2, nq = kp - q0 < 16 ? kp - q0 : 16;
        for (int q = 0; q < nq; q++)
            _mm512_mask_storeu_epi32(dst + (ptrdiff_t)(q0 + q) * W, lmask, row[q]);
    }
}

/* _momentum.h's update of 16 lanes (mk) whose new buffer value x is in a register: mul,
 * add, sub (no FMA), the flush; p and buf stored, the maxima of |p|, |buf| bits raised */
static inline __attribute__((always_inline, target(B16_TARGET))) void fbp_b16_sgd_vec(
    __m512 x, float *p, float *buf, __mmask16 mk, __m512 lr, __m512 wd, __m512 keep,
    __m512i *xp, __m512i *xb)
{
    const __m512 tiny = _mm512_set1_ps(1.17549435e-38f), ntiny = _mm512_set1_ps(-1.17549435e-38f);
    const __m512i abs = _mm512_set1_epi32(0x7fffffff);
    const __m512 pj = _mm512_maskz_loadu_ps(mk, p);
    const __m512 d = _mm512_add_ps(x, _mm512_mul_ps(wd, pj));
    const __m512 b = _mm512_mul_ps(keep, d);
    const __m512 q = _mm512_sub_ps(pj, _mm512_mul_ps(lr, d));
    const __mmask16 sub = _mm512_cmp_ps_mask(b, tiny, _CMP_LT_OQ)    /* NaN: kept */
                        & _mm512_cmp_ps_mask(b, ntiny, _CMP_GT_OQ);
    _mm512_mask_storeu_ps(buf, mk, _mm512_maskz_mov_ps((__mmask16)~sub, b));
    _mm512_mask_storeu_ps(p, mk, q);
    *xp = _mm512_max_epu32(*xp, _mm512_maskz_and_epi32(mk, _mm512_castps_si512(q), abs));
    *xb = _mm512_max_epu32(*xb, _mm512_maskz_and_epi32(mk, _mm512_castps_si512(b), abs));
}

/* the register tile: NV (compile-time after inlining) vectors of 16 columns x B16_MR rows.
 * sgd (NULL: none): the tile is complete; SGD momentum's update applied to it on the way
 * out of the registers, P its parameters (ldc), *mp and *mb raised (see fbp_b16_sgd) */
static inline __attribute__((always_inline, target(B16_TARGET))) void fbp_b16_tile_nv(
    const int nv, int kp, const uint32_t *Ap, const uint32_t *Bp, int w, float *C,
    ptrdiff_t ldc, int mr, int nc, float alpha, float beta, int first, const fbp_b16_sgd *sgd,
    float *P, uint32_t *mp, uint32_t *mb)
{
    __m512 c[B16_MR][B16_NV];
    for (int r = 0; r < B16_MR; r++)
        for (int v = 0; v < nv; v++) c[r][v] = _mm512_setzero_ps();
    for (int q = 0; q < kp; q++) {
        __m512i b[B16_NV];
        for (int v = 0; v < nv; v++) b[v] = _mm512_load_si512((const void *)(Bp + q * w + 16 * v));
        for (int r = 0; r < B16_MR; r++) {
            const __m512i a = _mm512_set1_epi32((int)Ap[q * B16_MR + r]);
            for (int v = 0; v < nv; v++)
                c[r][v] = _mm512_dpbf16_ps(c[r][v], (__m512bh)a, (__m512bh)b[v]);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __m512 lr = _mm512_set1_ps(sgd ? sgd->lr : 0.0f), wd = _mm512_set1_ps(sgd ? sgd->wd : 0.0f);
    const __m512 keep = _mm512_set1_ps(sgd ? sgd->keep : 0.0f);
    __m512i xp = _mm512_setzero_si512(), xb = _mm512_setzero_si512();
    for (int r = 0; r < B16_MR; r++) {
        if (r >= mr) break;
        float *d = C + (ptrdiff_t)r * ldc;
        for (int v = 0; v < nv; v++) {
            const int left = nc - 16 * v;
            const __mmask16 mk = fbp_b16_mask(left);
            /* explicit FMAs, as the emulation's fmaf (no contraction left to the compiler) */
            __m512 x;
            if (!first)
                x = _mm512_fmadd_ps(va, c[r][v], _mm512_maskz_loadu_ps(mk, d + 16 * v));
            else if (beta == 0.0f)
                x = _mm512_mul_ps(va, c[r][v]);
            else
                x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, d + 16 * v),
                                    _mm512_mul_ps(va, c[r][v]));
            if (sgd == NULL)
                _mm512_mask_storeu_ps(d + 16 * v, mk, x);
            else
                fbp_b16_sgd_vec(x, P + (ptrdiff_t)r * ldc + 16 * v, d + 16 * v, mk, lr, wd, keep,
                                &xp, &xb);
        }
    }
    if (sgd != NULL) {
        const uint32_t hp = _mm512_reduce_max_epu32(xp), hb = _mm512_reduce_max_epu32(xb);
        if (hp > *mp) *mp = hp;
        if (hb > *mb) *mb = hb;
    }
}

static __attribute__((target(B16_TARGET))) void fbp_b16_tile_avx(
    int kp, const uint32_t *Ap, const uint32_t *Bp, int w, float *C, ptrdiff_t ldc, int mr,
    int nc, float alpha, float beta, int first, const fbp_b16_sgd *sgd, float *P, uint32_t *mp,
    uint32_t *mb)
{
#define B16_UPTO(V) ((V) < B16_NV ? (V) : B16_NV)   /* w <= B16_NR always */
    switch (w / 16) {
    case 1: fbp_b16_tile_nv(1, kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb); break;
    case 2: fbp_b16_tile_nv(B16_UPTO(2), kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb); break;
    case 3: fbp_b16_tile_nv(B16_UPTO(3), kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb); break;
    case 4: fbp_b16_tile_nv(B16_UPTO(4), kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb); break;
    case 5: fbp_b16_tile_nv(B16_UPTO(5), kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb); break;
    default: fbp_b16_tile_nv(B16_UPTO(6), kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb); break;
    }
#undef B16_UPTO
}

/* C[0:m, j0:j1] for a few rows (m <= B16_FEW_ROWS) of op(A) = A and op(B) = B, k blocks of
 * kcb: the serving path (one sample's forward), where packing all of B for one row cost 4x
 * the float32 product. Nothing is packed: each pair of B's rows is rounded and interleaved
 * in registers as it is streamed (sequentially, as the prefetchers like), the sums of a k
 * block kept in acc (L1), then added to C as the tiles do: the same pairs in the same
 * order into each float32 lane, so the same bits as the tiled path. */
#define B16_FEW_ROWS 4
#define B16_ROWS_NB 1024        /* columns per block of acc: 4 x 1024 floats = 16 KB */
static __attribute__((target(B16_TARGET))) void fbp_b16_rows_avx(
    int m, int k, int kcb, float alpha, const float *A, int lda, const float *B, int ldb,
    float beta, float *C, int ldc, int j0, int j1)
{
    B16_ALIGN64 float acc[B16_FEW_ROWS * B16_ROWS_NB];
    uint32_t ap[B16_FEW_ROWS][B16_KP];
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    for (int c0 = j0; c0 < j1; c0 += B16_ROWS_NB) {
        const int nb = j1 - c0 < B16_ROWS_NB ? j1 - c0 : B16_ROWS_NB;
        const int nv = (nb + 15) / 16;
        for (int p0 = 0; p0 < k; p0 += kcb) {
            const int kc = k - p0 < kcb ? k - p0 : kcb, kp = (kc + 1) / 2;
            for (int r = 0; r < m; r++)
                for (int q = 0; q < kp; q++) {
                    const float *a = A + (ptrdiff_t)r * lda + p0 + 2 * q;
                    ap[r][q] = fbp_bf16_pair(a[0], 2 * q + 1 < kc ? a[1] : 0.0f);
                }
            for (int i = 0; i < m * nv * 16; i += 16)
                _mm512_store_ps(acc + i, _mm512_setzero_ps());
            for (int q = 0; q < kp; q++) {
                const float *r0 = B + (ptrdiff_t)(p0 + 2 * q) * ldb + c0;
                const float *r1 = 2 * q + 1 < kc ? r0 + ldb : NULL;
                __m512i a[B16_FEW_ROWS];
                for (int r = 0; r < m; r++) a[r] = _mm512_set1_epi32((int)ap[r][q]);
                for (int v = 0; v < nv; v++) {
                    const __mmask16 mk = fbp_b16_mask(nb - 16 * v);
                    const __m512 x0 = _mm512_maskz_loadu_ps(mk, r0 + 16 * v);
                    const __m512 x1 = r1 ? _mm512_maskz_loadu_ps(mk, r1 + 16 * v)
                                         : _mm512_setzero_ps();
                    const __m512bh b = (__m512bh)fbp_b16_cvt2(x0, x1);
                    for (int r = 0; r < m; r++) {
                        float *s = acc + (r * nv + v) * 16;
                        _mm512_store_ps(s, _mm512_dpbf16_ps(_mm512_load_ps(s), (__m512bh)a[r], b));
                    }
                }
            }
            for (int r = 0; r < m; r++) {
                float *d = C + (ptrdiff_t)r * ldc + c0;
                for (int v = 0; v < nv; v++) {
                    const __mmask16 mk = fbp_b16_mask(nb - 16 * v);
                    const __m512 s = _mm512_load_ps(acc + (r * nv + v) * 16);
                    __m512 x;
                    if (p0 != 0)
                        x = _mm512_fmadd_ps(va, s, _mm512_maskz_loadu_ps(mk, d + 16 * v));
                    else if (beta == 0.0f)
                        x = _mm512_mul_ps(va, s);
                    else
                        x = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(mk, d + 16 * v),
                                            _mm512_mul_ps(va, s));
                    _mm512_mask_storeu_ps(d + 16 * v, mk, x);
                }
            }
        }
    }
}
#endif /* FBP_HAVE_BF16_ISA */

/* ---- dispatch by mode ------------------------------------------------------------------ */

static inline void fbp_b16_interleave(int mode, const float *r0, const float *r1, int cnt,
                                      int w, uint32_t *dst)
{
#if FBP_HAVE_BF16_ISA
    if (mode == FBP_BF16_NATIVE) { fbp_b16_interleave_avx(r0, r1, cnt, w, dst); return; }
#endif
    (void)mode;
    fbp_b16_interleave_emu(r0, r1, cnt, w, dst);
}

/* R rows of up to 16 lanes (L: lanes written per pair) */
static inline void fbp_b16_transpose(int mode, const float *src, ptrdiff_t ld, int R, int L,
                                     int kc, uint32_t *dst, int W)
{
#if FBP_HAVE_BF16_ISA
    if (mode == FBP_BF16_NATIVE) { fbp_b16_transpose_avx(src, ld, R, L, kc, dst, W); return; }
#endif
    (void)mode;
    fbp_b16_transpose_emu(src, ld, R, L, kc, dst, W);
}

/* sgd (NULL: none): the tile completes C, whose update (fbp_b16_sgd) follows, P the
 * tile's parameters */
static inline void fbp_b16_tile(int mode, int kp, const uint32_t *Ap, const uint32_t *Bp, int w,
                                float *C, ptrdiff_t ldc, int mr, int nc, float alpha,
                                float beta, int first, const fbp_b16_sgd *sgd, float *P,
                                uint32_t *mp, uint32_t *mb)
{
#if FBP_HAVE_BF16_ISA
    if (mode == FBP_BF16_NATIVE) {   /* in registers, on the way out */
        fbp_b16_tile_avx(kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first, sgd, P, mp, mb);
        return;
    }
#endif
    (void)mode;
    fbp_b16_tile_emu(kp, Ap, Bp, w, C, ldc, mr, nc, alpha, beta, first);
    if (sgd != NULL) fbp_b16_sgd_block(sgd, P, C, ldc, mr, nc, mp, mb);
}

/* pack op(A)[0:m, p0:p0+kc] into row tiles (see the top); tiles [t0, t1) only */
static void fbp_b16_pack_a(int mode, int ta, int m, int kc, const float *A, ptrdiff_t lda,
                           int p0, uint32_t *Ap, int t0, int t1)
{
    const int kp = (kc + 1) / 2;
    if (!ta) {
        /* rows of op(A) are rows of A, transposed in 16 x 16 blocks of pairs */
        for (int t = t0; t < t1; t++) {
            const int i0 = t * B16_MR, rows = m - i0 < B16_MR ? m - i0 : B16_MR;
            fbp_b16_transpose(mode, A + (ptrdiff_t)i0 * lda + p0, lda, rows, B16_MR, kc,
                              Ap + (ptrdiff_t)t * B16_MR * kp, B16_MR);
        }
    } else {
        /* op(A)'s pair q of row i: A[p0 + 2q][i], A[p0 + 2q + 1][i]: two rows of A
         * interleaved, a row at a time (all m columns), then cut into the tiles */
        const int i0 = t0 * B16_MR, i1 = t1 * B16_MR < m ? t1 * B16_MR : m;
        uint32_t line[16 * 64];     /* up to 128 tiles at a time */
        for (int c0 = i0; c0 < i1; c0 += 16 * 64) {
            const int cnt = i1 - c0 < 16 * 64 ? i1 - c0 : 16 * 64;
            const int wl = (cnt + B16_MR - 1) / B16_MR * B16_MR;
            const int tc = t0 + (c0 - i0) / B16_MR;
            for (int q = 0; q < kp; q++) {
                const float *r0 = A + (ptrdiff_t)(p0 + 2 * q) * lda + c0;
                const float *r1 = 2 * q + 1 < kc ? r0 + lda : NULL;
                fbp_b16_interleave(mode, r0, r1, cnt, wl, line);
                for (int t = 0; t < wl / B16_MR; t++)
                    memcpy(Ap + ((ptrdiff_t)(tc + t) * kp + q) * B16_MR, line + t * B16_MR,
                           B16_MR * 4);
            }
        }
    }
}

/* pack op(B)[p0:p0+kc, j0:j0+nc] into a panel of width w = nc rounded up to 16 */
static void fbp_b16_pack_b(int mode, int tb, int kc, int nc, const float *B, ptrdiff_t ldb,
                           int p0, int j0, uint32_t *Bp)
{
    const int kp = (kc + 1) / 2, w = (nc + 15) / 16 * 16;
    if (!tb) {
        for (int q = 0; q < kp; q++) {
            const float *r0 = B + (ptrdiff_t)(p0 + 2 * q) * ldb + j0;
            fbp_b16_interleave(mode, r0, 2 * q + 1 < kc ? r0 + ldb : NULL, nc, w,
                               Bp + (ptrdiff_t)q * w);
        }
    } else {
        /* op(B)'s column j is row j of B: 16 columns per transpose */
        for (int c = 0; c < w; c += 16) {
            const int R = nc - c < 16 ? nc - c : 16;
            fbp_b16_transpose(mode, B + (ptrdiff_t)(j0 + c) * ldb + p0, ldb, R, 16, kc, Bp + c, w);
        }
    }
}

/* 64-byte aligned scratch (the packed A tiles) */
static void *fbp_b16_alloc(size_t bytes)
{
#ifdef _WIN32
    return _aligned_malloc(bytes ? bytes : 64, 64);
#else
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
#endif
}

static void fbp_b16_free(void *p)
{
#ifdef _WIN32
    _aligned_free(p);
#else
    free(p);
#endif
}

/* C := alpha op(A) op(B) + beta C (row-major; op(X) = X^T when tX), op(A) and op(B) rounded to
 * bfloat16, float32 sums; beta == 0 never reads C. mode: FBP_BF16_NATIVE (the CPU must have
 * it: see fbp_bf16_cpu) or FBP_BF16_EMULATED. Up to nthreads OpenMP threads. Returns 0, or -1
 * if scratch memory could not be allocated (C is then untouched). */
/* bytes of scratch (the packed A tiles) a product with m rows of op(A) and any k needs */
static size_t fbp_bf16_scratch_bytes(int m)
{
    return (size_t)((m + B16_MR - 1) / B16_MR) * B16_MR * B16_KP * 4;
}

/* as fbp_bf16_gemm, with the caller's scratch (64-byte aligned, at least
 * fbp_bf16_scratch_bytes(m) bytes; NULL: allocated and freed here, then -1 if it cannot);
 * sgd (or NULL): SGD momentum's update of C (the buffer) and sgd->p, fused (see above) */
static int fbp_bf16_gemm_ws(int mode, int ta, int tb, int m, int n, int k, float alpha,
                            const float *A, int lda, const float *B, int ldb, float beta,
                            float *C, int ldc, int nthreads, uint32_t *scratch,
                            fbp_b16_sgd *sgd)
{
    if (m <= 0 || n <= 0) return 0;
    if (k <= 0 || alpha == 0.0f) {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float *c = C + (ptrdiff_t)i * ldc + j;
                *c = beta == 0.0f ? 0.0f : beta * *c;
            }
        if (sgd != NULL) fbp_b16_sgd_block(sgd, sgd->p, C, ldc, m, n, &sgd->pmax, &sgd->bmax);
        return 0;
    }
#if !FBP_HAVE_BF16_ISA
    mode = FBP_BF16_EMULATED;
#endif
    const int mt = (m + B16_MR - 1) / B16_MR;
    /* k blocks of equal (even) size, at most B16_KC: no short last block (k = 784 is four
     * of 196, not three of 256 and one of 16); the split depends on k alone */
    const int nkb = (k + B16_KC - 1) / B16_KC;
    const int kcb = ((k + nkb - 1) / nkb + 1) / 2 * 2;
    const int kpmax = (kcb + 1) / 2;
#if FBP_HAVE_BF16_ISA
    if (mode == FBP_BF16_NATIVE && !ta && !tb && m <= B16_FEW_ROWS) {
        /* columns in whole vectors per thread, threads only for a large B */
        const int vecs = (n + 15) / 16;
        int nr = (double)n * k >= 65536.0 ? nthreads : 1;
        if (nr > vecs) nr = vecs;
        if (nr < 1) nr = 1;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nr) schedule(static) if (nr > 1)
#endif
        for (int t = 0; t < nr; t++) {
            const int v0 = (int)((long)vecs * t / nr), v1 = (int)((long)vecs * (t + 1) / nr);
            const int c1 = 16 * v1 < n ? 16 * v1 : n;
            if (16 * v0 < c1)
                fbp_b16_rows_avx(m, k, kcb, alpha, A, lda, B, ldb, beta, C, ldc, 16 * v0, c1);
        }
        if (sgd != NULL) fbp_b16_sgd_block(sgd, sgd->p, C, ldc, m, n, &sgd->pmax, &sgd->bmax);
        return 0;
    }
#endif
    uint32_t *Ap = scratch != NULL ? scratch
                                   : (uint32_t *)fbp_b16_alloc((size_t)mt * B16_MR * kpmax * 4);
    if (Ap == NULL) return -1;
    const int panels = (n + B16_NR - 1) / B16_NR;
    int nt = nthreads < 1 ? 1 : nthreads;
    if ((long)nt > (long)((n + 15) / 16) * mt) nt = (int)((long)((n + 15) / 16) * mt);
    if ((double)m * n * k < 1e5 * nt) nt = 1;   /* too little work to share */
    /* one parallel region for all k blocks (a barrier between them is cheaper than a
     * fork and join per block: W1's forward has four) */
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
#endif
    {
    uint32_t mp = 0, mb = 0;   /* this thread's share of sgd->pmax, sgd->bmax */
    for (int p0 = 0; p0 < k; p0 += kcb) {
        const int kc = k - p0 < kcb ? k - p0 : kcb, kp = (kc + 1) / 2;
        const int first = p0 == 0;
        const int upd = sgd != NULL && p0 + kc >= k;   /* the tiles complete C: update */
#ifdef _OPENMP
        const int me = omp_get_thread_num(), team = omp_get_num_threads();
#else
        const int me = 0, team = 1;
#endif
        /* the A pack, split by threads: by tiles, or for op(A) = A^T (packed a row of
         * A at a time, up to 128 tiles) in a run of tiles per thread; one unit of 128
         * left W1's dW packs (98 and 64 tiles) to one thread while the other waited */
        int per = 1;
        if (ta) {
            per = (mt + team - 1) / team;
            if (per > 128) per = 128;
            if (per < 8) per = 8;
        }
        const int units = (mt + per - 1) / per;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int u = 0; u < units; u++) {
            const int t0 = u * per, t1 = t0 + per < mt ? t0 + per : mt;
            fbp_b16_pack_a(mode, ta, m, kc, A, lda, p0, Ap, t0, t1);
        }
        /* (implicit barrier: every thread reads all of Ap) */
        B16_ALIGN64 uint32_t Bp[B16_KP * B16_NR];
        /* the (panel, row tile) grid, panel-major, cut into nt runs of equal work (a
         * unit's work: the panel's 16-lane vectors): a static split by panels alone
         * leaves a thread idle for a whole panel of 48 (W1: 512 columns are 10.7
         * panels). A thread packs each panel it touches (a panel cut between two
         * threads is packed by both) */
        const long total = (long)((n + 15) / 16) * mt;
        const long lo = total * me / team, hi = total * (me + 1) / team;
        long done = 0;
        for (int jp = 0; jp < panels && done < hi; jp++) {
            const int j0 = jp * B16_NR, nc = n - j0 < B16_NR ? n - j0 : B16_NR;
            const int w = (nc + 15) / 16 * 16, vw = w / 16;
            const long pstart = done;
            done += (long)vw * mt;
            if (done <= lo) continue;
            /* the tiles [ta0, ta1) of this panel: those whose work starts in [lo, hi) */
            const int ta0 = lo > pstart ? (int)((lo - pstart + vw - 1) / vw) : 0;
            const int ta1 = hi < done ? (int)((hi - pstart + vw - 1) / vw) : mt;
            if (ta0 >= ta1) continue;
            fbp_b16_pack_b(mode, tb, kc, nc, B, ldb, p0, j0, Bp);
            /* the next panel's rows of B, a share per tile, towards L2 while the tiles
             * run: they are a large stride apart (a row of a big B per k, or kc floats
             * of each of 48 rows), which the hardware prefetchers follow poorly (W3's
             * 256x2048x2048 forward product: 174 -> 198 GFLOP/s) */
            const int jn = j0 + B16_NR, ncn = n - jn < B16_NR ? n - jn : B16_NR;
            const int prow = tb ? ncn : kc, plen = tb ? kc : ncn;
            const int span = ta1 - ta0;
            for (int t = ta0; t < ta1; t++) {
                const int i0 = t * B16_MR, mr = m - i0 < B16_MR ? m - i0 : B16_MR;
                const long r0 = (long)prow * (t - ta0) / span;
                const long r1 = (long)prow * (t - ta0 + 1) / span;
                for (long r = r0; ncn > 0 && r < r1; r++) {
                    const float *row = tb ? B + (ptrdiff_t)(jn + r) * ldb + p0
                                          : B + (ptrdiff_t)(p0 + r) * ldb + jn;
                    for (int e = 0; e < plen; e += 16) B16_PREFETCH(row + e);
                    B16_PREFETCH(row + plen - 1);
                }
                if (t + 1 < ta1 && kp >= 16) {  /* the next tile of C, which the tile
                    * reads or writes only at its end: towards L1 meanwhile (W3's products
                    * with 2048 rows: ~170 -> ~190 GFLOP/s; not worth it for short k) */
                    const int mrn = m - i0 - B16_MR < B16_MR ? m - i0 - B16_MR : B16_MR;
                    for (int r = 0; r < mrn; r++) {
                        float *c = C + (ptrdiff_t)(i0 + B16_MR + r) * ldc + j0;
                        for (int e = 0; e < nc; e += 16) B16_PREFETCHW(c + e);
                        B16_PREFETCHW(c + nc - 1);
                        if (upd) {   /* and its parameters */
                            float *pr = sgd->p + (c - C);
                            for (int e = 0; e < nc; e += 16) B16_PREFETCHW(pr + e);
                            B16_PREFETCHW(pr + nc - 1);
                        }
                    }
                }
                fbp_b16_tile(mode, kp, Ap + (ptrdiff_t)t * B16_MR * kp, Bp, w,
                             C + (ptrdiff_t)i0 * ldc + j0, ldc, mr, nc, alpha, beta, first,
                             upd ? sgd : NULL, upd ? sgd->p + (ptrdiff_t)i0 * ldc + j0 : NULL,
                             &mp, &mb);
            }
        }
#ifdef _OPENMP
        if (p0 + kcb < k) {
#pragma omp barrier
        }   /* every thread is done with Ap before it is packed anew for the next k block */
#endif
    }
    if (sgd != NULL) {
#ifdef _OPENMP
#pragma omp critical(fbp_b16_sgd_max)
#endif
        {
            if (mp > sgd->pmax) sgd->pmax = mp;
            if (mb > sgd->bmax) sgd->bmax = mb;
        }
    }
    }
    if (scratch == NULL) fbp_b16_free(Ap);
    return 0;
}

static int fbp_bf16_gemm(int mode, int ta, int tb, int m, int n, int k, float alpha,
                         const float *A, int lda, const float *B, int ldb, float beta, float *C,
                         int ldc, int nthreads)
{
    return fbp_bf16_gemm_ws(mode, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc,
                            nthreads, NULL, NULL);
}

/* dst[i] = x[i] rounded to bfloat16 (as a float32), by the mode's conversion */
static void fbp_bf16_round(int mode, const float *x, float *dst, ptrdiff_t count)
{
    ptrdiff_t i = 0;
#if FBP_HAVE_BF16_ISA
    if (mode == FBP_BF16_NATIVE) {
        uint32_t pairs[16];
        for (; i + 32 <= count; i += 32) {
            fbp_b16_interleave_avx(x + i, x + i + 16, 16, 16, pairs);
            for (int j = 0; j < 16; j++) {
                dst[i + j] = fbp_bf16_float(pairs[j] & 0xffffu);
                dst[i + 16 + j] = fbp_bf16_float(pairs[j] >> 16);
            }
        }
        for (; i < count; i++) {
            const float z = 0.0f;
            fbp_b16_interleave_avx(x + i, &z, 1, 16, pairs);
            dst[i] = fbp_bf16_float(pairs[0] & 0xffffu);
        }
        return;
    }
#endif
    (void)mode;
    for (; i < count; i++) dst[i] = fbp_bf16_float(fbp_bf16_bits(x[i]));
}

/* ---- measurement: the instructions' peak rate (bench/bf16_peak.py) ---------------------- */

/* iters rounds of 16 independent VDPBF16PS (which 1) or VFMADD231PS (which 0) on zmm
 * registers, nothing loaded or stored in the loop (one asm block, so that the compiler can
 * neither drop nor spill anything); returns a value that depends on every result, or -1 if
 * the build or CPU lacks the instruction */
#if FBP_HAVE_BF16_ISA
#define B16_PEAK_CHAINS 16
#define B16_X16(OP) \
    OP " %%zmm31, %%zmm30, %%zmm0\n\t" OP " %%zmm31, %%zmm30, %%zmm1\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm2\n\t" OP " %%zmm31, %%zmm30, %%zmm3\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm4\n\t" OP " %%zmm31, %%zmm30, %%zmm5\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm6\n\t" OP " %%zmm31, %%zmm30, %%zmm7\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm8\n\t" OP " %%zmm31, %%zmm30, %%zmm9\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm10\n\t" OP " %%zmm31, %%zmm30, %%zmm11\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm12\n\t" OP " %%zmm31, %%zmm30, %%zmm13\n\t" \
    OP " %%zmm31, %%zmm30, %%zmm14\n\t" OP " %%zmm31, %%zmm30, %%zmm15\n\t"
#define B16_PEAK_ASM(OP, A, B) \
    float out[16]; \
    long n = iters; \
    if (n < 1) return 0.0f; \
    __asm__ volatile( \
        "vbroadcastss %[a], %%zmm30\n\t" \
        "vbroadcastss %[b], %%zmm31\n\t" \
        "vxorps %%zmm0, %%zmm0, %%zmm0\n\t" \
        "vmovaps %%zmm0, %%zmm1\n\tvmovaps %%zmm0, %%zmm2\n\tvmovaps %%zmm0, %%zmm3\n\t" \
        "vmovaps %%zmm0, %%zmm4\n\tvmovaps %%zmm0, %%zmm5\n\tvmovaps %%zmm0, %%zmm6\n\t" \
        "vmovaps %%zmm0, %%zmm7\n\tvmovaps %%zmm0, %%zmm8\n\tvmovaps %%zmm0, %%zmm9\n\t" \
        "vmovaps %%zmm0, %%zmm10\n\tvmovaps %%zmm0, %%zmm11\n\tvmovaps %%zmm0, %%zmm12\n\t" \
        "vmovaps %%zmm0, %%zmm13\n\tvmovaps %%zmm0, %%zmm14\n\tvmovaps %%zmm0, %%zmm15\n\t" \
        ".p2align 5\n" \
        "1:\n\t" B16_X16(OP) \
        "dec %[n]\n\t" \
        "jnz 1b\n\t" \
        "vaddps %%zmm1, %%zmm0, %%zmm0\n\tvaddps %%zmm3, %%zmm2, %%zmm2\n\t" \
        "vaddps %%zmm5, %%zmm4, %%zmm4\n\tvaddps %%zmm7, %%zmm6, %%zmm6\n\t" \
        "vaddps %%zmm9, %%zmm8, %%zmm8\n\tvaddps %%zmm11, %%zmm10, %%zmm10\n\t" \
        "vaddps %%zmm13, %%zmm12, %%zmm12\n\tvaddps %%zmm15, %%zmm14, %%zmm14\n\t" \
        "vaddps %%zmm2, %%zmm0, %%zmm0\n\tvaddps %%zmm6, %%zmm4, %%zmm4\n\t" \
        "vaddps %%zmm10, %%zmm8, %%zmm8\n\tvaddps %%zmm14, %%zmm12, %%zmm12\n\t" \
        "vaddps %%zmm4, %%zmm0, %%zmm0\n\tvaddps %%zmm12, %%zmm8, %%zmm8\n\t" \
        "vaddps %%zmm8, %%zmm0, %%zmm0\n\t" \
        "vmovups %%zmm0, %[out]\n\t" \
        : [n] "+r"(n), [out] "=m"(out) \
        : [a] "m"(A), [b] "m"(B) \
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", \
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm30", "xmm31", "cc"); \
    float s = 0.0f; \
    for (int i = 0; i < 16; i++) s += out[i]; \
    return s;

static __attribute__((noinline, target(B16_TARGET))) float fbp_b16_peak_dp(long iters)
{
    const float a = fbp_bf16_float(0x3f80u) + 0.0078125f;   /* pair (1, 1.0078125): bf16 bits */
    const float b = 0.5f;
    B16_PEAK_ASM("vdpbf16ps", a, b)
}

static __attribute__((noinline, target("avx512f"))) float fbp_b16_peak_fma(long iters)
{
    const float a = 0.5f, b = 0.25f;
    B16_PEAK_ASM("vfmadd231ps", a, b)
}
#undef B16_PEAK_ASM
#undef B16_X16
#endif

/* zmm instructions issued by one call of fbp_bf16_peak per iteration */
static int fbp_bf16_peak_chains(void)
{
#if FBP_HAVE_BF16_ISA
    return B16_PEAK_CHAINS;
#else
    return 0;
#endif
}

static float fbp_bf16_peak(int which, long iters)
{
#if FBP_HAVE_BF16_ISA
    if (which == 1 && fbp_bf16_cpu() == FBP_BF16_NATIVE) return fbp_b16_peak_dp(iters);
    if (which == 0 && __builtin_cpu_supports("avx512f")) return fbp_b16_peak_fma(iters);
#endif
    (void)which; (void)iters;
    return -1.0f;
}
#endif
