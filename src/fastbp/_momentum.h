/* SGD momentum's update of a run of parameters, shared by the optimizer's pass over the
 * flat buffer (_optim.h) and the bf16 products that apply it to each tile of dW as it is
 * made (_bf16.h). Both extensions are built with -ffp-contract=off: no FMA is formed here,
 * so every instance (each ISA clone, its vector tails, the fused tiles) gives the same bits. */
#ifndef FASTBP_MOMENTUM_H
#define FASTBP_MOMENTUM_H
#include <stddef.h>
#include <string.h>

/* Optimizer-state flush (subnormal -> 0, as decaying state must not reach the slow
 * subnormals). NaN stays NaN: it must be seen. */
static inline float fbp_flush_f32(float x) {
    return (x < 1.17549435e-38f && x > -1.17549435e-38f) ? 0.0f : x;
}
static inline double fbp_flush_f64(double x) {
    return (x < 2.2250738585072014e-308 && x > -2.2250738585072014e-308) ? 0.0 : x;
}

/* SGD momentum when the products left buf = mu*buf + g (see _optim.momentum_step):
 * d = buf + wd*p; buf = keep*d flushed; p -= lr*d. Raises *pmax, *bmax to the bits of the
 * largest new |p| and |buf| (sign cleared; >= the bits of inf for NaN/inf). Returns 1 if
 * every new p is finite. DECL: the storage class and attributes of the function. */
#define FBP_MOMENTUM(NAME, DECL, T, UT, SFX, ABS, INF)                                      \
DECL int NAME(T *restrict p, T *restrict buf, ptrdiff_t n, T lr, T wd, T keep, UT *pmax,   \
              UT *bmax) {                                                                   \
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
#endif
