/* The optimizers' update passes over the flat parameter buffer (see _optim.pyx), float32
 * and float64, vectorizable (gcc/clang auto-vectorize these at -O3, one clone per ISA). */
#ifndef FASTBP_OPTIM_H
#define FASTBP_OPTIM_H
#include "_simd_common.h"
#include "_momentum.h"

/* The non-finite test of an updated parameter (exponent bits). */
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

/* SGD momentum when the products left buf = mu*buf + g: see _momentum.h */
FBP_MOMENTUM(fbp_momentum_f32, FBP_CLONES static, float, unsigned int, f32, 0x7fffffffu,
             0x7f800000u)
FBP_MOMENTUM(fbp_momentum_f64, FBP_CLONES static, double, unsigned long long, f64,
             0x7fffffffffffffffull, 0x7ff0000000000000ull)

/* The gradient an update uses at i, GI(SFX): the plain kernels take g[i] as it is; the
 * extended ones (an L1 penalty, clipping by value or a clipping scale in use) take
 * clamp(g + l1*sign(p), -cv, cv) * gs. XP(T) declares the extended kernels' extra
 * parameters; PRE applies AdamW's decoupled decay p *= keep before the step. NaN stays
 * NaN (the clamps compare false). */
static inline float fbp_xgrad_f32(float g, float p, float l1, float cv, float gs) {
    float x = g + l1 * (float)((p > 0.0f) - (p < 0.0f));
    x = x > cv ? cv : x;
    x = x < -cv ? -cv : x;
    return x * gs;
}
static inline double fbp_xgrad_f64(double g, double p, double l1, double cv, double gs) {
    double x = g + l1 * (double)((p > 0.0) - (p < 0.0));
    x = x > cv ? cv : x;
    x = x < -cv ? -cv : x;
    return x * gs;
}
#define FBP_GI_PLAIN(SFX) g[i]
#define FBP_GI_EXT(SFX) fbp_xgrad_##SFX(g[i], pi, l1, cv, gs)
#define FBP_XP_NONE(T)
#define FBP_XP_EXT(T) , T l1, T cv, T gs, T keep
#define FBP_PRE_NONE
#define FBP_PRE_KEEP pi = pi * keep;

/* The optimizer updates below (see _optim._fused_block) share one loop: old p copied to
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

/* Adam: m, v flushed; p -= step * m / (sqrt(v) / bc2s + eps) (AdamW: p *= keep first, the
 * decay not in the gradient: wd = 0). */
#define FBP_ADAM(NAME, T, SFX, SQRT, XP, GI, PRE)                                          \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict m,              \
                           T *restrict v, T *restrict bk, ptrdiff_t n, T step, T wd, T b1, \
                           T b2, T bc2s, T eps XP(T)) {                                    \
    unsigned int bad = 0;                                                                  \
    FBP_STEP_LOOP(T, SFX,                                                                  \
        T gi = GI(SFX) + wd * pi;                                                          \
        PRE                                                                                \
        T mi = fbp_flush_##SFX(b1 * m[i] + (1 - b1) * gi);                                 \
        T vi = fbp_flush_##SFX(b2 * v[i] + (1 - b2) * gi * gi);                            \
        m[i] = mi;                                                                         \
        v[i] = vi;                                                                         \
        pi = pi - step * mi / (SQRT(vi) / bc2s + eps);)                                    \
    return bad == 0;                                                                       \
}
FBP_ADAM(fbp_adam_f32, float, f32, sqrtf, FBP_XP_NONE, FBP_GI_PLAIN, FBP_PRE_NONE)
FBP_ADAM(fbp_adam_f64, double, f64, sqrt, FBP_XP_NONE, FBP_GI_PLAIN, FBP_PRE_NONE)
FBP_ADAM(fbp_adam_x_f32, float, f32, sqrtf, FBP_XP_EXT, FBP_GI_EXT, FBP_PRE_KEEP)
FBP_ADAM(fbp_adam_x_f64, double, f64, sqrt, FBP_XP_EXT, FBP_GI_EXT, FBP_PRE_KEEP)

/* SGD as torch.optim.SGD. mode 0: no momentum, p -= lr*(g + wd*p); 1: the first step with
 * momentum, s = g + wd*p; 2: heavy ball, s = mu*s + g + wd*p flushed, p -= lr*s;
 * Nesterov steps (modes 1 and 2) take p -= lr*(gi + mu*s). */
#define FBP_SGD(NAME, T, SFX, XP, GI)                                                      \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict s,              \
                           T *restrict bk, ptrdiff_t n, T lr, T wd, T mu, int mode,        \
                           int nesterov XP(T)) {                                           \
    unsigned int bad = 0;                                                                  \
    if (mode == 0) {                                                                       \
        FBP_STEP_LOOP(T, SFX, pi = pi - lr * (GI(SFX) + wd * pi);)                         \
    } else if (mode == 1) {                                                                \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = GI(SFX) + wd * pi;                                                      \
            s[i] = gi;                                                                     \
            pi = pi - lr * (nesterov ? gi + mu * gi : gi);)                                \
    } else if (nesterov) {                                                                 \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = GI(SFX) + wd * pi;                                                      \
            T si = fbp_flush_##SFX(mu * s[i] + gi);                                        \
            s[i] = si;                                                                     \
            pi = pi - lr * (gi + mu * si);)                                                \
    } else {                                                                               \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T d = fbp_flush_##SFX(mu * s[i] + GI(SFX) + wd * pi);                          \
            s[i] = d;                                                                      \
            pi = pi - lr * d;)                                                             \
    }                                                                                      \
    return bad == 0;                                                                       \
}
FBP_SGD(fbp_sgd_f32, float, f32, FBP_XP_NONE, FBP_GI_PLAIN)
FBP_SGD(fbp_sgd_f64, double, f64, FBP_XP_NONE, FBP_GI_PLAIN)
FBP_SGD(fbp_sgd_x_f32, float, f32, FBP_XP_EXT, FBP_GI_EXT)
FBP_SGD(fbp_sgd_x_f64, double, f64, FBP_XP_EXT, FBP_GI_EXT)

/* SGD in velocity form: v = mu*v - lr*(g + wd*p) flushed; p += v (Nesterov: mu*v - lr*gi) */
#define FBP_VELOCITY(NAME, T, SFX, XP, GI)                                                 \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict v,              \
                           T *restrict bk, ptrdiff_t n, T lr, T wd, T mu,                  \
                           int nesterov XP(T)) {                                           \
    unsigned int bad = 0;                                                                  \
    FBP_STEP_LOOP(T, SFX,                                                                  \
        T gi = GI(SFX) + wd * pi;                                                          \
        T vi = fbp_flush_##SFX(mu * v[i] - lr * gi);                                       \
        v[i] = vi;                                                                         \
        pi = pi + (nesterov ? mu * vi - lr * gi : vi);)                                    \
    return bad == 0;                                                                       \
}
FBP_VELOCITY(fbp_velocity_f32, float, f32, FBP_XP_NONE, FBP_GI_PLAIN)
FBP_VELOCITY(fbp_velocity_f64, double, f64, FBP_XP_NONE, FBP_GI_PLAIN)
FBP_VELOCITY(fbp_velocity_x_f32, float, f32, FBP_XP_EXT, FBP_GI_EXT)
FBP_VELOCITY(fbp_velocity_x_f64, double, f64, FBP_XP_EXT, FBP_GI_EXT)

/* RMSprop as torch.optim.RMSprop: s = alpha*s + (1-alpha)*gi^2 flushed,
 * d = gi / (sqrt(s) + eps); with momentum b = mu*b + d flushed, d = b; p -= lr*d */
#define FBP_RMSPROP(NAME, T, SFX, SQRT, XP, GI)                                            \
FBP_CLONES static int NAME(T *restrict p, const T *restrict g, T *restrict s,              \
                           T *restrict b, T *restrict bk, ptrdiff_t n, T lr, T wd,         \
                           T alpha, T eps, T mu XP(T)) {                                   \
    unsigned int bad = 0;                                                                  \
    if (mu != 0) {                                                                         \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = GI(SFX) + wd * pi;                                                      \
            T si = fbp_flush_##SFX(alpha * s[i] + (1 - alpha) * gi * gi);                  \
            s[i] = si;                                                                     \
            T bi = fbp_flush_##SFX(mu * b[i] + gi / (SQRT(si) + eps));                     \
            b[i] = bi;                                                                     \
            pi = pi - lr * bi;)                                                            \
    } else {                                                                               \
        FBP_STEP_LOOP(T, SFX,                                                              \
            T gi = GI(SFX) + wd * pi;                                                      \
            T si = fbp_flush_##SFX(alpha * s[i] + (1 - alpha) * gi * gi);                  \
            s[i] = si;                                                                     \
            pi = pi - lr * (gi / (SQRT(si) + eps));)                                       \
    }                                                                                      \
    return bad == 0;                                                                       \
}
FBP_RMSPROP(fbp_rmsprop_f32, float, f32, sqrtf, FBP_XP_NONE, FBP_GI_PLAIN)
FBP_RMSPROP(fbp_rmsprop_f64, double, f64, sqrt, FBP_XP_NONE, FBP_GI_PLAIN)
FBP_RMSPROP(fbp_rmsprop_x_f32, float, f32, sqrtf, FBP_XP_EXT, FBP_GI_EXT)
FBP_RMSPROP(fbp_rmsprop_x_f64, double, f64, sqrt, FBP_XP_EXT, FBP_GI_EXT)

/* sum over i < n of xgrad(g[i], p[i])^2 (the clipped, penalized gradient's squared norm) */
#define FBP_XGRAD_SUMSQ(NAME, T, SFX)                                                      \
FBP_CLONES static double NAME(const T *restrict p, const T *restrict g, ptrdiff_t n,       \
                              T l1, T cv) {                                                \
    double acc = 0;                                                                        \
    for (ptrdiff_t i = 0; i < n; i++) {                                                    \
        T x = fbp_xgrad_##SFX(g[i], p[i], l1, cv, (T)1);                                   \
        acc += (double)x * (double)x;                                                      \
    }                                                                                      \
    return acc;                                                                            \
}
FBP_XGRAD_SUMSQ(fbp_xgrad_sumsq_f32, float, f32)
FBP_XGRAD_SUMSQ(fbp_xgrad_sumsq_f64, double, f64)

/* W (rows x cols, row-major) with each column's norm at most c: Keras' MaxNorm,
 * w * min(norm, c) / (norm + 1e-7) for the columns whose norm exceeds c. */
#define FBP_MAX_NORM(NAME, T, SQRT)                                                        \
static void NAME(T *restrict w, ptrdiff_t rows, ptrdiff_t cols, T c, T *restrict scratch) { \
    for (ptrdiff_t j = 0; j < cols; j++) scratch[j] = 0;                                   \
    for (ptrdiff_t i = 0; i < rows; i++)                                                   \
        for (ptrdiff_t j = 0; j < cols; j++) scratch[j] += w[i * cols + j] * w[i * cols + j]; \
    int any = 0;                                                                           \
    for (ptrdiff_t j = 0; j < cols; j++) {                                                 \
        T norm = SQRT(scratch[j]);                                                         \
        scratch[j] = norm > c ? c / (norm + (T)1e-7) : (T)1;                               \
        any |= norm > c;                                                                   \
    }                                                                                      \
    if (!any) return;                                                                      \
    for (ptrdiff_t i = 0; i < rows; i++)                                                   \
        for (ptrdiff_t j = 0; j < cols; j++) w[i * cols + j] *= scratch[j];                \
}
FBP_MAX_NORM(fbp_max_norm_f32, float, sqrtf)
FBP_MAX_NORM(fbp_max_norm_f64, double, sqrt)
#endif
