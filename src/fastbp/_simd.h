/* Vectorizable float32 activation loops (gcc/clang auto-vectorize these at -O3).
 *
 * tanh uses Eigen's rational approximation (generic_fast_tanh_float): within a few ulp of
 * tanhf on [-7.9, 7.9], exactly +-1 beyond; NaN propagates (the clamps compare false).
 * sigmoid(x) = 0.5 + 0.5 tanh(x/2).
 */
#ifndef FASTBP_SIMD_H
#define FASTBP_SIMD_H
#include <stddef.h>
#include <string.h>
#include <math.h>

/* One build runs everywhere (no -march): on x86-64 Linux these loops are compiled for
 * AVX-512, AVX2 and baseline SSE2, and the loader picks the best the CPU has. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FASTBP_NO_CLONES)
#define FBP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FBP_CLONES
#endif

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
        out[j] = 0.5f * x * (1.0f + fbp_tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
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
    const float c = 0.7978845608028654f;
    for (ptrdiff_t j = 0; j < k; j++) {
        const float u = x[j];
        const float t = fbp_tanhf(c * (u + 0.044715f * u * u * u));
        g[j] *= 0.5f * (1.0f + t) + 0.5f * u * (1.0f - t * t) * c * (1.0f + 3.0f * 0.044715f * u * u);
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
/* Optimizer-state flush (subnormal -> 0, as decaying state must not reach the slow
 * subnormals) and the non-finite test of an updated parameter (exponent bits). */
static inline float fbp_flush_f32(float x) {
    return (x >= 1.17549435e-38f || x <= -1.17549435e-38f) ? x : 0.0f;
}
static inline double fbp_flush_f64(double x) {
    return (x >= 2.2250738585072014e-308 || x <= -2.2250738585072014e-308) ? x : 0.0;
}
static inline unsigned int fbp_nonfinite_f32(float x) {
    unsigned int u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}
static inline unsigned int fbp_nonfinite_f64(double x) {
    unsigned long long u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

/* SGD momentum when the products left buf = mu*buf + g (see _kernels.momentum_step):
 * d = buf + wd*p; buf = keep*d flushed; p -= lr*d. Raises *pmax, *bmax to the bits of the
 * largest new |p| and |buf| (sign cleared; >= the bits of inf for NaN/inf). Returns 1 if
 * every new p is finite. */
#define FBP_MOMENTUM(NAME, T, UT, SFX, ABS, INF)                                            \
FBP_CLONES static int NAME(T *restrict p, T *restrict buf, ptrdiff_t n, T lr, T wd,        \
                           T keep, UT *pmax, UT *bmax) {                                    \
    UT mp = 0, mb = 0;                                                                      \
    for (ptrdiff_t i = 0; i < n; i++) {                                                     \
        T d = buf[i] + wd * p[i];                                                           \
        T b = keep * d;          /* max of |b| before the flush: then it vectorizes */      \
        T q = p[i] - lr * d;                                                                \
        UT ub, uq;                                                                          \
        buf[i] = fbp_flush_##SFX(b);                                                        \
        p[i] = q;                                                                           \
        memcpy(&ub, &b, sizeof ub);                                                         \
        memcpy(&uq, &q, sizeof uq);                                                         \
        ub &= ABS;                                                                          \
        uq &= ABS;                                                                          \
        mb = ub > mb ? ub : mb;                                                             \
        mp = uq > mp ? uq : mp;                                                             \
    }                                                                                       \
    if (mp > *pmax) *pmax = mp;                                                             \
    if (mb > *bmax) *bmax = mb;                                                             \
    return mp < INF;                                                                        \
}
FBP_MOMENTUM(fbp_momentum_f32, float, unsigned int, f32, 0x7fffffffu, 0x7f800000u)
FBP_MOMENTUM(fbp_momentum_f64, double, unsigned long long, f64, 0x7fffffffffffffffull,
             0x7ff0000000000000ull)
/* A max-abs bit pattern as a double (inf for NaN/inf). */
static inline double fbp_bits_f32(unsigned int b) {
    float f;
    if (b >= 0x7f800000u)
        return INFINITY;
    memcpy(&f, &b, sizeof f);
    return f;
}
static inline double fbp_bits_f64(unsigned long long b) {
    double f;
    if (b >= 0x7ff0000000000000ull)
        return INFINITY;
    memcpy(&f, &b, sizeof f);
    return f;
}
/* max |x| over the (m, n) block of a (., ld) array, or inf when some x is NaN or inf. */
static inline double fbp_maxabs_f32(const float *x, ptrdiff_t m, ptrdiff_t n, ptrdiff_t ld) {
    return fbp_bits_f32(fbp_maxabs_bits_f32(x, m, n, ld));
}
static inline double fbp_maxabs_f64(const double *x, ptrdiff_t m, ptrdiff_t n, ptrdiff_t ld) {
    return fbp_bits_f64(fbp_maxabs_bits_f64(x, m, n, ld));
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
/* The optimizer updates below (see _kernels._fused_block) share one loop: old p copied to
 * bk, BODY turns pi into the new value (reading and writing the state), new p stored and
 * checked. Each returns 1 if every new p is finite. One loop per mode, so each vectorizes. */
#define FBP_STEP_LOOP(T, SFX, BODY)                                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T pi = p[i];                                                                       \
        bk[i] = pi;                                                                        \
        BODY                                                                               \
        p[i] = pi;                                                                         \
        bad |= fbp_nonfinite_##SFX(pi);                                                    \
    }

/* Adam: m, v flushed; p -= step * m / (sqrt(v) / bc2s + eps). */
#define FBP_ADAM(NAME, T, SFX, SQRT)                                                       \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict m,              \
                           T *restrict v, T *restrict bk, ptrdiff_t n, T step, T wd, T b1, \
                           T b2, T bc2s, T eps) {                                          \
    unsigned int bad = 0;                                                                  \
    FBP_STEP_LOOP(T, SFX,                                                                  \
        T gi = g[i] + wd * pi;                                                             \
        T mi = fbp_flush_##SFX(b1 * m[i] + (1 - b1) * gi);                                 \
        T vi = fbp_flush_##SFX(b2 * v[i] + (1 - b2) * gi * gi);                            \
        m[i] = mi;                                                                         \
        v[i] = vi;                                                                         \
        pi = pi - step * mi / (SQRT(vi) / bc2s + eps);)                                    \
    return bad == 0;                                                                       \
}
FBP_ADAM(fbp_adam_f32, float, f32, sqrtf)
FBP_ADAM(fbp_adam_f64, double, f64, sqrt)

/* SGD as torch.optim.SGD. mode 0: no momentum, p -= lr*(g + wd*p); 1: the first step with
 * momentum, s = g + wd*p; 2: heavy ball, s = mu*s + g + wd*p flushed, p -= lr*s;
 * Nesterov steps (modes 1 and 2) take p -= lr*(gi + mu*s). */
#define FBP_SGD(NAME, T, SFX)                                                              \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict s,              \
                           T *restrict bk, ptrdiff_t n, T lr, T wd, T mu, int mode,        \
                           int nesterov) {                                                 \
    unsigned int bad = 0;                                                                  \
    if (mode == 0) {                                                                       \
        FBP_STEP_LOOP(T, SFX, pi = pi - lr * (g[i] + wd * pi);)                            \
    } else if (mode == 1) {                                                                \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = g[i] + wd * pi;                                                         \
            s[i] = gi;                                                                     \
            pi = pi - lr * (nesterov ? gi + mu * gi : gi);)                                \
    } else if (nesterov) {                                                                 \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = g[i] + wd * pi;                                                         \
            T si = fbp_flush_##SFX(mu * s[i] + gi);                                        \
            s[i] = si;                                                                     \
            pi = pi - lr * (gi + mu * si);)                                                \
    } else {                                                                               \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T d = fbp_flush_##SFX(mu * s[i] + g[i] + wd * pi);                             \
            s[i] = d;                                                                      \
            pi = pi - lr * d;)                                                             \
    }                                                                                      \
    return bad == 0;                                                                       \
}
FBP_SGD(fbp_sgd_f32, float, f32)
FBP_SGD(fbp_sgd_f64, double, f64)

/* SGD in velocity form: v = mu*v - lr*(g + wd*p) flushed; p += v (Nesterov: mu*v - lr*gi) */
#define FBP_VELOCITY(NAME, T, SFX)                                                         \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict v,              \
                           T *restrict bk, ptrdiff_t n, T lr, T wd, T mu, int nesterov) {  \
    unsigned int bad = 0;                                                                  \
    FBP_STEP_LOOP(T, SFX,                                                                  \
        T gi = g[i] + wd * pi;                                                             \
        T vi = fbp_flush_##SFX(mu * v[i] - lr * gi);                                       \
        v[i] = vi;                                                                         \
        pi = pi + (nesterov ? mu * vi - lr * gi : vi);)                                    \
    return bad == 0;                                                                       \
}
FBP_VELOCITY(fbp_velocity_f32, float, f32)
FBP_VELOCITY(fbp_velocity_f64, double, f64)

/* RMSprop as torch.optim.RMSprop: s = alpha*s + (1-alpha)*gi^2 flushed,
 * d = gi / (sqrt(s) + eps); with momentum b = mu*b + d flushed, d = b; p -= lr*d */
#define FBP_RMSPROP(NAME, T, SFX, SQRT)                                                    \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict s,              \
                           T *restrict b, T *restrict bk, ptrdiff_t n, T lr, T wd,         \
                           T alpha, T eps, T mu) {                                         \
    unsigned int bad = 0;                                                                  \
    if (mu != 0) {                                                                         \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = g[i] + wd * pi;                                                         \
            T si = fbp_flush_##SFX(alpha * s[i] + (1 - alpha) * gi * gi);                  \
            s[i] = si;                                                                     \
            T bi = fbp_flush_##SFX(mu * b[i] + gi / (SQRT(si) + eps));                     \
            b[i] = bi;                                                                     \
            pi = pi - lr * bi;)                                                            \
    } else {                                                                               \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = g[i] + wd * pi;                                                         \
            T si = fbp_flush_##SFX(alpha * s[i] + (1 - alpha) * gi * gi);                  \
            s[i] = si;                                                                     \
            pi = pi - lr * (gi / (SQRT(si) + eps));)                                       \
    }                                                                                      \
    return bad == 0;                                                                       \
}
FBP_RMSPROP(fbp_rmsprop_f32, float, f32, sqrtf)
FBP_RMSPROP(fbp_rmsprop_f64, double, f64, sqrt)
#endif
