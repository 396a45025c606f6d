/* Vectorizable float32 loops of the activations and reductions (gcc/clang auto-vectorize
 * these at -O3).
 *
 * tanh uses Eigen's rational approximation (generic_fast_tanh_float): within a few ulp of
 * tanhf on [-7.9, 7.9], exactly +-1 beyond; NaN propagates (the clamps compare false).
 * sigmoid(x) = 0.5 + 0.5 tanh(x/2).
 */
#ifndef FASTBP_SIMD_H
#define FASTBP_SIMD_H
#include "_constants.h"
#include "_simd_common.h"

static inline float fbp_tanhf(float x) {
    const float c = 7.90531110763549805f;
    x = x > c ? c : x;
    x = x < -c ? -c : x;
    const float x2 = x * x;
    float p = x2 * -2.76076847742355e-16f + 2.00018790482477e-13f;
    p = x2 * p + -8.60467152213735e-11f;
    p = x2 * p + 5.12229709037114e-08f;
    p = x2 * p + 1.48572235717979e-05f;
    p = x2 * p + 6.37261928875436e-04f;
    p = x2 * p + 4.89352455891786e-03f;
    p = x * p;
    float q = x2 * 1.19825839466702e-06f + 1.18534705686654e-04f;
    q = x2 * q + 2.26843463243900e-03f;
    q = x2 * q + 4.89352518554385e-03f;
    return p / q;
}

/* y = oa * tanh(is * (x + b)) + oc, in place (x is y) */
FBP_CLONES static void fbp_affine_tanh_inplace(float *y, const float *b, ptrdiff_t k,
                                    float is, float oa, float oc) {
    for (ptrdiff_t j = 0; j < k; j++)
        y[j] = oa * fbp_tanhf(is * (y[j] + b[j])) + oc;
}

/* pre += b; out = oa * tanh(is * pre) + oc */
FBP_CLONES static void fbp_affine_tanh_store(float *restrict pre, float *restrict out, const float *b,
                                  ptrdiff_t k, float is, float oa, float oc) {
    for (ptrdiff_t j = 0; j < k; j++) {
        const float x = pre[j] + b[j];
        pre[j] = x;
        out[j] = oa * fbp_tanhf(is * x) + oc;
    }
}

/* pre += b; out = x * sigmoid(x) */
FBP_CLONES static void fbp_silu_store(float *restrict pre, float *restrict out, const float *b, ptrdiff_t k) {
    for (ptrdiff_t j = 0; j < k; j++) {
        const float x = pre[j] + b[j];
        pre[j] = x;
        out[j] = x * (0.5f + 0.5f * fbp_tanhf(0.5f * x));
    }
}

/* pre += b; out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
FBP_CLONES static void fbp_gelu_store(float *restrict pre, float *restrict out, const float *b, ptrdiff_t k) {
    for (ptrdiff_t j = 0; j < k; j++) {
        const float x = pre[j] + b[j];
        pre[j] = x;
        out[j] = 0.5f * x * (1.0f + fbp_tanhf((float)FBP_SQRT_2_OVER_PI * (x + (float)FBP_GELU_C * x * x * x)));
    }
}

/* g *= silu'(x) */
FBP_CLONES static void fbp_silu_backward(float *restrict g, const float *restrict x, ptrdiff_t k) {
    for (ptrdiff_t j = 0; j < k; j++) {
        const float s = 0.5f + 0.5f * fbp_tanhf(0.5f * x[j]);
        g[j] *= s * (1.0f + x[j] * (1.0f - s));
    }
}

/* g *= gelu'(x) */
FBP_CLONES static void fbp_gelu_backward(float *restrict g, const float *restrict x, ptrdiff_t k) {
    const float c = (float)FBP_SQRT_2_OVER_PI, gc = (float)FBP_GELU_C;
    for (ptrdiff_t j = 0; j < k; j++) {
        const float u = x[j];
        const float t = fbp_tanhf(c * (u + gc * u * u * u));
        g[j] *= 0.5f * (1.0f + t) + 0.5f * u * (1.0f - t * t) * c * (1.0f + 3.0f * gc * u * u);
    }
}
/* g *= d/dx [oa * tanh(is * x) + oc] written with the output y: is/oa * (oa - (y - oc)) * (oa + (y - oc)) */
FBP_CLONES static void fbp_affine_tanh_backward(float *restrict g, const float *restrict y,
                                                ptrdiff_t k, float is, float oa, float oc) {
    const float c = is / oa;
    for (ptrdiff_t j = 0; j < k; j++) {
        const float u = y[j] - oc;
        g[j] *= c * (oa - u) * (oa + u);
    }
}

/* g = y > 0 ? g : slope * g */
FBP_CLONES static void fbp_relu_backward(float *restrict g, const float *restrict y, ptrdiff_t k,
                                         float slope) {
    for (ptrdiff_t j = 0; j < k; j++)
        g[j] = y[j] > 0.0f ? g[j] : slope * g[j];
}
/* max |x| over rows i < m, columns j < n of a (., ld) array, as the bits of |x| (sign
 * cleared): an integer max that vectorizes; >= the bits of inf when some x is NaN or inf. */
FBP_CLONES static unsigned int fbp_maxabs_bits_f32(const float *x, ptrdiff_t m, ptrdiff_t n,
                                                   ptrdiff_t ld) {
    unsigned int best = 0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const unsigned int *u = (const unsigned int *)(x + i * ld);
        for (ptrdiff_t j = 0; j < n; j++) {
            unsigned int v = u[j] & 0x7fffffffu;
            best = v > best ? v : best;
        }
    }
    return best;
}
FBP_CLONES static unsigned long long fbp_maxabs_bits_f64(const double *x, ptrdiff_t m,
                                                         ptrdiff_t n, ptrdiff_t ld) {
    unsigned long long best = 0;
    for (ptrdiff_t i = 0; i < m; i++) {
        const unsigned long long *u = (const unsigned long long *)(x + i * ld);
        for (ptrdiff_t j = 0; j < n; j++) {
            unsigned long long v = u[j] & 0x7fffffffffffffffull;
            best = v > best ? v : best;
        }
    }
    return best;
}
/* max |x| over the (m, n) block of a (., ld) array, or inf when some x is NaN or inf. */
static inline double fbp_maxabs_f32(const float *x, ptrdiff_t m, ptrdiff_t n, ptrdiff_t ld) {
    return fbp_bits_f32(fbp_maxabs_bits_f32(x, m, n, ld));
}
static inline double fbp_maxabs_f64(const double *x, ptrdiff_t m, ptrdiff_t n, ptrdiff_t ld) {
    return fbp_bits_f64(fbp_maxabs_bits_f64(x, m, n, ld));
}

/* Dropout masks from a counter-based hash: entry idx of a batch's (rows x width) matrix is
 * kept when hash(idx, key) >> 8 >= p24 (rate p = p24 / 2^24), so a mask depends only on
 * the key (seed, step, layer) and the entry, never on threads or blocks. */
static inline unsigned int fbp_hash32(unsigned int x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}
static inline unsigned int fbp_keep(unsigned int idx, unsigned int ka, unsigned int kb,
                                    unsigned int p24) {
    return (fbp_hash32(fbp_hash32(idx * 0x9e3779b1u + ka) ^ kb) >> 8) >= p24;
}
/* d = a * m * scale with m[j] the mask of entry idx0 + j; m stored as 0/1 bytes */
#define FBP_DROPOUT(NAME, T)                                                                \
FBP_CLONES static void NAME(const T *restrict a, T *restrict d, unsigned char *restrict m,  \
                            ptrdiff_t k, unsigned int idx0, unsigned int ka, unsigned int kb, \
                            unsigned int p24, T scale) {                                    \
    for (ptrdiff_t j = 0; j < k; j++) {                                                     \
        unsigned int keep = fbp_keep(idx0 + (unsigned int)j, ka, kb, p24);                  \
        m[j] = (unsigned char)keep;                                                         \
        d[j] = a[j] * (keep ? scale : (T)0);                                                \
    }                                                                                       \
}
FBP_DROPOUT(fbp_dropout_f32, float)
FBP_DROPOUT(fbp_dropout_f64, double)
/* g *= m * scale */
#define FBP_APPLY_MASK(NAME, T)                                                             \
FBP_CLONES static void NAME(T *restrict g, const unsigned char *restrict m, ptrdiff_t k,    \
                            T scale) {                                                      \
    for (ptrdiff_t j = 0; j < k; j++) g[j] *= m[j] ? scale : (T)0;                          \
}
FBP_APPLY_MASK(fbp_apply_mask_f32, float)
FBP_APPLY_MASK(fbp_apply_mask_f64, double)

/* Batch normalization of columns [0, k) of (n, ld) rows, float32 with float64 sums (rows in
 * order, so the same for any thread count; see _kernels.bn_forward). */
FBP_CLONES static void fbp_bn_stats_f32(const float *restrict x, const float *restrict b,
                                        ptrdiff_t n, ptrdiff_t ld, ptrdiff_t k,
                                        double *restrict mean, double *restrict var) {
    for (ptrdiff_t j = 0; j < k; j++) { mean[j] = 0; var[j] = 0; }
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < k; j++) mean[j] += (double)(x[i * ld + j] + b[j]);
    for (ptrdiff_t j = 0; j < k; j++) mean[j] /= (double)n;
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < k; j++) {
            double d = (double)(x[i * ld + j] + b[j]) - mean[j];
            var[j] += d * d;
        }
    for (ptrdiff_t j = 0; j < k; j++) var[j] /= (double)n;
}
/* x := gamma * xhat + beta with xhat = (x + b - mean) * istd, kept in xh unless NULL */
FBP_CLONES static void fbp_bn_apply_f32(float *restrict x, const float *restrict b,
                                        float *restrict xh, ptrdiff_t n, ptrdiff_t ld,
                                        ptrdiff_t k, const double *restrict mean,
                                        const double *restrict istd,
                                        const float *restrict gamma,
                                        const float *restrict beta) {
    float sh[64], sc[64];           /* k <= 64 (the caller's block) */
    for (ptrdiff_t j = 0; j < k; j++) {
        sc[j] = (float)istd[j];
        sh[j] = (float)((double)b[j] - mean[j]);
    }
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < k; j++) {
            float h = (x[i * ld + j] + sh[j]) * sc[j];
            if (xh) xh[i * ld + j] = h;
            x[i * ld + j] = gamma[j] * h + beta[j];
        }
}
/* dgamma, dbeta (+= with beta_acc) and g := dE/dx from g = dE/dh, training or not */
FBP_CLONES static void fbp_bn_backward_f32(float *restrict g, const float *restrict xh,
                                           const float *restrict gamma,
                                           const double *restrict istd, ptrdiff_t n,
                                           ptrdiff_t ld, ptrdiff_t k, float *restrict dgamma,
                                           float *restrict dbeta, float beta_acc,
                                           int training) {
    double sg[64], sgx[64];
    float a[64], m1[64], m2[64];
    for (ptrdiff_t j = 0; j < k; j++) { sg[j] = 0; sgx[j] = 0; }
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < k; j++) {
            sg[j] += (double)g[i * ld + j];
            sgx[j] += (double)g[i * ld + j] * (double)xh[i * ld + j];
        }
    for (ptrdiff_t j = 0; j < k; j++) {
        /* beta_acc 0 overwrites (the old value may be garbage), as BLAS's beta */
        dbeta[j] = (float)(beta_acc != 0.0f ? beta_acc * dbeta[j] + sg[j] : sg[j]);
        dgamma[j] = (float)(beta_acc != 0.0f ? beta_acc * dgamma[j] + sgx[j] : sgx[j]);
        a[j] = (float)(gamma[j] * istd[j]);
        m1[j] = training ? (float)(sg[j] / (double)n) : 0.0f;
        m2[j] = training ? (float)(sgx[j] / (double)n) : 0.0f;
    }
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < k; j++)
            g[i * ld + j] = a[j] * (g[i * ld + j] - m1[j] - xh[i * ld + j] * m2[j]);
}

/* out[j] = beta*out[j] + sum over i (in order) of g[i*ld + j], j < k */
FBP_CLONES static void fbp_colsum_f32(const float *restrict g, ptrdiff_t n, ptrdiff_t ld,
                                      float *restrict out, ptrdiff_t k, float beta) {
    if (beta == 0.0f)
        for (ptrdiff_t j = 0; j < k; j++) out[j] = 0.0f;
    else if (beta != 1.0f)
        for (ptrdiff_t j = 0; j < k; j++) out[j] *= beta;
    for (ptrdiff_t i = 0; i < n; i++)
        for (ptrdiff_t j = 0; j < k; j++) out[j] += g[i * ld + j];
}
#endif
