/* One instance of fastbp's small-product sgemm, included by _gemm.h once per instruction
 * set with G_SUF (name suffix), G_TARGET (gcc target), G_VL (floats per vector), G_MR
 * (rows per register tile) and G_NV (vectors per tile row, at most 4) defined. A tile of
 * C, G_MR rows x up to G_NV vectors, stays in registers over k; op(B) is read in place
 * when its rows are contiguous and m is small, else (transposed, a ragged right edge, or
 * many row tiles) packed once per column panel. The parameters are undefined at the end. */
#define G_CAT2(a, b) a##_##b
#define G_CAT(a, b) G_CAT2(a, b)
#define G_V G_CAT(fbp_gv, G_SUF)
#define G_NR (G_NV * G_VL)

typedef float G_V __attribute__((vector_size(G_VL * 4), aligned(4)));

/* mr x (nv vectors) tile: C = alpha * A[0:mr, 0:kc] B[0:kc, 0:nc] (+ beta C | + C) */
static inline __attribute__((always_inline, target(G_TARGET))) void
G_CAT(fbp_gtile, G_SUF)(const int mr, const int nv, int kc, const float *A, ptrdiff_t ars,
                        ptrdiff_t acs, const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                        int nc, float alpha, float beta, int first)
{
    G_V c[G_NV][G_MR];
    for (int v = 0; v < nv; v++)
        for (int r = 0; r < mr; r++) c[v][r] = (G_V){0};
    for (int p = 0; p < kc; p++) {
        G_V b[G_NV];
        for (int v = 0; v < nv; v++) b[v] = *(const G_V *)(B + p * ldb + v * G_VL);
        const float *a = A + p * acs;
        for (int r = 0; r < mr; r++) {
            const float ar = a[r * ars];
            for (int v = 0; v < nv; v++) c[v][r] += ar * b[v];
        }
    }
    for (int r = 0; r < mr; r++) {
        float *d = C + r * ldc;
        if (nc == nv * G_VL) {
            for (int v = 0; v < nv; v++) {
                G_V *dv = (G_V *)(d + v * G_VL);
                if (!first) *dv += alpha * c[v][r];
                else if (beta == 0.0f) *dv = alpha * c[v][r];
                else *dv = alpha * c[v][r] + beta * *dv;
            }
        } else {
            float t[G_NR];
            for (int v = 0; v < nv; v++) *(G_V *)(t + v * G_VL) = alpha * c[v][r];
            if (!first)
                for (int j = 0; j < nc; j++) d[j] += t[j];
            else if (beta == 0.0f)
                for (int j = 0; j < nc; j++) d[j] = t[j];
            else
                for (int j = 0; j < nc; j++) d[j] = t[j] + beta * d[j];
        }
    }
}

#define G_TILE(MRV, NVV) G_CAT(fbp_gtile, G_SUF)(MRV, NVV, kc, A, ars, acs, B, ldb, C, ldc, \
                                                  nc, alpha, beta, first)

/* all m rows against one column panel of nc <= nv * G_VL columns */
static __attribute__((target(G_TARGET))) void
G_CAT(fbp_gpanel, G_SUF)(int m, int nv, int kc, const float *A, ptrdiff_t ars, ptrdiff_t acs,
                         const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, int nc,
                         float alpha, float beta, int first)
{
    int i = 0;
#define G_UPTO(V) ((V) < G_NV ? (V) : G_NV)   /* nv <= G_NV always; keeps indices in range */
#define G_NVS(R) switch (nv) { case 1: G_TILE(R, 1); break; case 2: G_TILE(R, G_UPTO(2)); break; \
                               case 3: G_TILE(R, G_UPTO(3)); break; \
                               default: G_TILE(R, G_UPTO(4)); break; }
    for (; i + G_MR <= m; i += G_MR, A += G_MR * ars, C += G_MR * ldc) {
        G_NVS(G_MR)
    }
    switch (m - i) {   /* the last m % G_MR rows */
    case 1: G_NVS(1) break;
    case 2: G_NVS(2) break;
    case 3: G_NVS(3) break;
#if G_MR > 4
    case 4: G_NVS(4) break;
    case 5: G_NVS(5) break;
#endif
#if G_MR > 6
    case 6: G_NVS(6) break;
    case 7: G_NVS(7) break;
#endif
#if G_MR > 8
    case 8: G_NVS(8) break;
    case 9: G_NVS(9) break;
    case 10: G_NVS(10) break;
    case 11: G_NVS(11) break;
#endif
    default: break;
    }
#undef G_NVS
#undef G_UPTO
}

/* pack[p * w + c] = B[c * ldb + p] for c < nc (0 for nc <= c < w), p < kc: op(B) of a
 * transposed B, VL x VL blocks transposed in registers (log2 VL rounds of two-input
 * shuffles, each swapping the off-diagonal halves of ever smaller blocks) */
static __attribute__((target(G_TARGET))) void
G_CAT(fbp_gpackt, G_SUF)(const float *B, ptrdiff_t ldb, int kc, int nc, int w, float *pack)
{
    int p0 = 0;
#if defined(__GNUC__) && !defined(__clang__)
    typedef int G_VI __attribute__((vector_size(G_VL * 4)));
    for (; p0 + G_VL <= kc; p0 += G_VL) {
        for (int c0 = 0; c0 < w; c0 += G_VL) {
            G_V row[G_VL];
            _Pragma("GCC unroll 16") for (int r = 0; r < G_VL; r++)
                row[r] = c0 + r < nc ? *(const G_V *)(B + (ptrdiff_t)(c0 + r) * ldb + p0)
                                     : (G_V){0};
#define G_ROUND(H, LO, HI) \
    _Pragma("GCC unroll 16") for (int r = 0; r < G_VL; r++) { \
        if (r & H) continue; \
        const G_V a = row[r], b = row[r + H]; \
        row[r] = __builtin_shuffle(a, b, LO); \
        row[r + H] = __builtin_shuffle(a, b, HI); \
    }
#if G_VL == 16
            G_ROUND(8, ((G_VI){0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23}), ((G_VI){8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}))
            G_ROUND(4, ((G_VI){0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27}), ((G_VI){4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}))
            G_ROUND(2, ((G_VI){0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29}), ((G_VI){2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}))
            G_ROUND(1, ((G_VI){0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30}), ((G_VI){1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}))
#elif G_VL == 8
            G_ROUND(4, ((G_VI){0, 1, 2, 3, 8, 9, 10, 11}), ((G_VI){4, 5, 6, 7, 12, 13, 14, 15}))
            G_ROUND(2, ((G_VI){0, 1, 8, 9, 4, 5, 12, 13}), ((G_VI){2, 3, 10, 11, 6, 7, 14, 15}))
            G_ROUND(1, ((G_VI){0, 8, 2, 10, 4, 12, 6, 14}), ((G_VI){1, 9, 3, 11, 5, 13, 7, 15}))
#else
#error "G_VL must be 8 or 16"
#endif
#undef G_ROUND
            _Pragma("GCC unroll 16") for (int q = 0; q < G_VL; q++)
                *(G_V *)(pack + (p0 + q) * w + c0) = row[q];
        }
    }
#endif
    for (int c = 0; c < w; c++) {   /* the last kc % G_VL rows (or all of them) */
        const float *s = B + (ptrdiff_t)c * ldb;
        for (int p = p0; p < kc; p++) pack[p * w + c] = c < nc ? s[p] : 0.0f;
    }
}

/* C := alpha op(A) op(B) + beta C, row-major, C (m x n), m, n, k >= 1 */
static __attribute__((target(G_TARGET))) void
G_CAT(fbp_sgemm_small, G_SUF)(int ta, int tb, int m, int n, int k, float alpha,
                              const float *A, int lda, const float *B, int ldb, float beta,
                              float *C, int ldc)
{
    float pack[FBP_GEMM_KC * G_NR] __attribute__((aligned(64)));
    const ptrdiff_t ars = ta ? 1 : lda, acs = ta ? lda : 1;
    /* B's rows read in place cost L1 conflicts (rows a power-of-two apart) on every row
     * tile; from 16 row tiles on, one copy per panel is cheaper */
    const int pack_nn = m >= 16 * G_MR;
    for (int p0 = 0; p0 < k; p0 += FBP_GEMM_KC) {
        const int kc = k - p0 < FBP_GEMM_KC ? k - p0 : FBP_GEMM_KC;
        for (int j0 = 0; j0 < n; j0 += G_NR) {
            const int nc = n - j0 < G_NR ? n - j0 : G_NR;
            const int nv = (nc + G_VL - 1) / G_VL, w = nv * G_VL;
            const float *P;
            ptrdiff_t ldp;
            if (!tb && nc == w && !pack_nn) {
                P = B + (ptrdiff_t)p0 * ldb + j0;
                ldp = ldb;
            } else {
                if (!tb) {
                    for (int p = 0; p < kc; p++) {
                        const float *s = B + (ptrdiff_t)(p0 + p) * ldb + j0;
                        if (nc == w)
                            for (int c = 0; c < w; c++) pack[p * w + c] = s[c];
                        else
                            for (int c = 0; c < w; c++) pack[p * w + c] = c < nc ? s[c] : 0.0f;
                    }
                } else {
                    G_CAT(fbp_gpackt, G_SUF)(B + (ptrdiff_t)j0 * ldb + p0, ldb, kc, nc, w, pack);
                }
                P = pack;
                ldp = w;
            }
            G_CAT(fbp_gpanel, G_SUF)(m, nv, kc, A + p0 * acs, ars, acs, P, ldp, C + j0, ldc,
                                     nc, alpha, beta, p0 == 0);
        }
    }
}

/* C (m x n) = A (m x k) B (k x n) for m <= G_ROWS_MAX rows, both operands in place
 * (row-major, no transposes): a handful of rows, as predict on a few samples. B is read
 * once, row after row (sequential streams: the fastest way through memory), the m rows of
 * C stay in L1 and take 4 rows of B per pass. The sums are those of fbp_sgemm_small: per
 * block of FBP_GEMM_KC terms one FMA per term from 0, blocks added in order, so a product
 * gives the same bits whichever of the two kernels its rows land on. T: m*n floats of
 * scratch for the blocks after the first. */
/* acc[0 : nvb vectors] = sum over q in [p0, pe) of A[q] B[q, 0 : nvb vectors], in registers */
static inline __attribute__((always_inline, target(G_TARGET))) void
G_CAT(fbp_grow1, G_SUF)(const int nvb, int p0, int pe, const float *A, const float *B,
                        int ldb, float *acc)
{
    G_V c[16];
    for (int v = 0; v < nvb; v++) c[v] = (G_V){0};
    for (int q = p0; q < pe; q++) {
        const float aq = A[q];
        const float *b = B + (ptrdiff_t)q * ldb;
        for (int v = 0; v < nvb; v++) {
            __builtin_prefetch(b + G_PF * (ptrdiff_t)ldb + v * G_VL);
            c[v] += aq * *(const G_V *)(b + v * G_VL);
        }
    }
    for (int v = 0; v < nvb; v++) *(G_V *)(acc + v * G_VL) = c[v];
}

static inline __attribute__((always_inline, target(G_TARGET))) void
G_CAT(fbp_grows, G_SUF)(const int m, int n, int k, const float *A, int lda, const float *B,
                        int ldb, float *C, int ldc, float *T)
{
    const int nv = n / G_VL;
    for (int p0 = 0; p0 < k; p0 += FBP_GEMM_KC) {
        const int pe = k - p0 < FBP_GEMM_KC ? k : p0 + FBP_GEMM_KC;
        float *acc = p0 == 0 ? C : T;
        const ptrdiff_t lda_acc = p0 == 0 ? ldc : n;
        int p = p0;
        if (m == 1) {      /* one row: blocks of C's vectors in registers over the block */
            int v0 = 0;
#define G_ROW1(NVB) for (; v0 + NVB <= nv; v0 += NVB) \
                G_CAT(fbp_grow1, G_SUF)(NVB, p0, pe, A, B + v0 * G_VL, ldb, acc + v0 * G_VL)
            if (G_VL == 16) G_ROW1(16);
            G_ROW1(8);
            G_ROW1(4);
            G_ROW1(1);
#undef G_ROW1
            const int j0 = v0 * G_VL, nt = n - j0;      /* < G_VL columns left */
            if (nt > 0) {                  /* in one vector, loads masked to the row */
#if G_VL == 16
                const __mmask16 mk = (__mmask16)((1u << nt) - 1);
                __m512 t = _mm512_setzero_ps();
                for (int q = p0; q < pe; q++)
                    t = _mm512_fmadd_ps(_mm512_set1_ps(A[q]),
                                        _mm512_maskz_loadu_ps(mk, B + (ptrdiff_t)q * ldb + j0), t);
                _mm512_mask_storeu_ps(acc + j0, mk, t);
#else
                int lanes[8];
                for (int j = 0; j < 8; j++) lanes[j] = j < nt ? -1 : 0;
                const __m256i mk = _mm256_loadu_si256((const __m256i *)lanes);
                __m256 t = _mm256_setzero_ps();
                for (int q = p0; q < pe; q++)
                    t = _mm256_fmadd_ps(_mm256_set1_ps(A[q]),
                                        _mm256_maskload_ps(B + (ptrdiff_t)q * ldb + j0, mk), t);
                _mm256_maskstore_ps(acc + j0, mk, t);
#endif
            }
            p = pe;
        } else {
            for (int r = 0; r < m; r++)
                for (int j = 0; j < n; j++) acc[r * lda_acc + j] = 0.0f;
        }
        for (; p + 8 <= pe; p += 8) {
            const float *b0 = B + (ptrdiff_t)p * ldb;
            for (int r = 0; r < m; r++) {
                const float *a = A + (ptrdiff_t)r * lda + p;
                float *c = acc + r * lda_acc;
                for (int v = 0; v < nv; v++) {
                    G_V t = *(G_V *)(c + v * G_VL);
                    for (int q = 0; q < 8; q++)
                        t += a[q] * *(const G_V *)(b0 + q * (ptrdiff_t)ldb + v * G_VL);
                    *(G_V *)(c + v * G_VL) = t;
                }
                for (int j = nv * G_VL; j < n; j++) {
                    float t = c[j];
                    for (int q = 0; q < 8; q++)
                        t = __builtin_fmaf(a[q], b0[q * (ptrdiff_t)ldb + j], t);
                    c[j] = t;
                }
            }
        }
        for (; p < pe; p++)
            for (int r = 0; r < m; r++) {
                const float ap = A[(ptrdiff_t)r * lda + p];
                const float *b = B + (ptrdiff_t)p * ldb;
                float *c = acc + r * lda_acc;
                for (int v = 0; v < nv; v++)
                    *(G_V *)(c + v * G_VL) += ap * *(const G_V *)(b + v * G_VL);
                for (int j = nv * G_VL; j < n; j++) c[j] = __builtin_fmaf(ap, b[j], c[j]);
            }
        if (p0 > 0)
            for (int r = 0; r < m; r++)
                for (int j = 0; j < n; j++) C[(ptrdiff_t)r * ldc + j] += T[r * n + j];
    }
}

static __attribute__((target(G_TARGET))) void
G_CAT(fbp_sgemm_rows, G_SUF)(int m, int n, int k, const float *A, int lda, const float *B,
                             int ldb, float *C, int ldc, float *T)
{   /* one instance per row count, so that the row loop unrolls */
    switch (m) {
    case 1: G_CAT(fbp_grows, G_SUF)(1, n, k, A, lda, B, ldb, C, ldc, T); break;
    case 2: G_CAT(fbp_grows, G_SUF)(2, n, k, A, lda, B, ldb, C, ldc, T); break;
    case 3: G_CAT(fbp_grows, G_SUF)(3, n, k, A, lda, B, ldb, C, ldc, T); break;
    default: G_CAT(fbp_grows, G_SUF)(4, n, k, A, lda, B, ldb, C, ldc, T); break;
    }
}

#undef G_TILE
#undef G_V
#undef G_NR
#undef G_CAT
#undef G_CAT2
#undef G_SUF
#undef G_TARGET
#undef G_VL
#undef G_MR
#undef G_NV
