"""nogil elementwise kernels: bias + activation, activation backward, losses, reductions.

Row loops run under OpenMP when the work is large enough to pay for it.
Derivatives use the stored output wherever the function allows; only SiLU,
GELU and the output layer keep their pre-activations. The optimizers' update passes
are in _optim.pyx.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport INFINITY, exp, expf, expm1, log, log1p, tanh, fabs, sqrt

cdef extern from "_simd.h" nogil:
    float fbp_tanhf(float x)
    void fbp_affine_tanh_inplace(float* y, const float* b, Py_ssize_t k, float is_, float oa, float oc)
    void fbp_affine_tanh_store(float* pre, float* out, const float* b, Py_ssize_t k, float is_,
                               float oa, float oc)
    void fbp_silu_store(float* pre, float* out, const float* b, Py_ssize_t k)
    void fbp_gelu_store(float* pre, float* out, const float* b, Py_ssize_t k)
    void fbp_silu_backward(float* g, const float* x, Py_ssize_t k)
    void fbp_gelu_backward(float* g, const float* x, Py_ssize_t k)
    void fbp_affine_tanh_backward(float* g, const float* y, Py_ssize_t k, float is_, float oa,
                                  float oc)
    void fbp_relu_backward(float* g, const float* y, Py_ssize_t k, float slope)
    void fbp_colsum_f32(const float* g, Py_ssize_t n, Py_ssize_t ld, float* out, Py_ssize_t k,
                        float beta)
    void fbp_dropout_f32(const float* a, float* d, unsigned char* m, Py_ssize_t k,
                         unsigned int idx0, unsigned int ka, unsigned int kb,
                         unsigned int p24, float scale)
    void fbp_dropout_f64(const double* a, double* d, unsigned char* m, Py_ssize_t k,
                         unsigned int idx0, unsigned int ka, unsigned int kb,
                         unsigned int p24, double scale)
    void fbp_bn_stats_f32(const float* x, const float* b, Py_ssize_t n, Py_ssize_t ld,
                          Py_ssize_t k, double* mean, double* var)
    void fbp_bn_apply_f32(float* x, const float* b, float* xh, Py_ssize_t n, Py_ssize_t ld,
                          Py_ssize_t k, const double* mean, const double* istd,
                          const float* gamma, const float* beta)
    void fbp_bn_backward_f32(float* g, const float* xh, const float* gamma, const double* istd,
                             Py_ssize_t n, Py_ssize_t ld, Py_ssize_t k, float* dgamma,
                             float* dbeta, float beta_acc, int training)
    void fbp_apply_mask_f32(float* g, const unsigned char* m, Py_ssize_t k, float scale)
    void fbp_apply_mask_f64(double* g, const unsigned char* m, Py_ssize_t k, double scale)
    double fbp_maxabs_f32(const float* x, Py_ssize_t m, Py_ssize_t n, Py_ssize_t ld)
    double fbp_maxabs_f64(const double* x, Py_ssize_t m, Py_ssize_t n, Py_ssize_t ld)

cdef extern from "_constants.h":
    double SQRT_2_OVER_PI "FBP_SQRT_2_OVER_PI"
    double GELU_C "FBP_GELU_C"
    double LECUN_A "FBP_LECUN_A"
    double LECUN_B "FBP_LECUN_B"
    double LEAKY "FBP_LEAKY_SLOPE"

# the activations' constants for Python (fastbp.activations), from the one header
LECUN_SCALE, LECUN_SLOPE, LEAKY_SLOPE = LECUN_A, LECUN_B, LEAKY
GELU_CUBIC, GELU_SCALE = GELU_C, SQRT_2_OVER_PI

cdef extern from *:
    """
    /* The most threads a parallel region of this Python thread runs (the trainer lowers
     * it to 1 while other processes hold the cores). Work is always split by the
     * requested count, so results do not depend on it. Thread-local: it never limits
     * another Python thread's calls. */
    #if defined(_MSC_VER)
    static __declspec(thread) int fbp_thread_cap = 1 << 20;
    #else
    static __thread int fbp_thread_cap = 1 << 20;
    #endif
    """
    int fbp_thread_cap


cdef int thread_cap() noexcept nogil:
    return fbp_thread_cap


cdef void set_thread_cap(int n) noexcept nogil:
    """At most n threads run in this Python thread's parallel regions (n >= 1)."""
    global fbp_thread_cap
    fbp_thread_cap = n if n >= 1 else 1


def thread_cap_now():
    """The thread cap of this Python thread's parallel regions now (for tests)."""
    return fbp_thread_cap


cdef int run_threads(int want) noexcept nogil:
    return want if want < fbp_thread_cap else fbp_thread_cap


cdef inline int threads_for(Py_ssize_t work, int nt) noexcept nogil:
    return run_threads(nt) if work >= PARALLEL_MIN else 1


cdef int needs_pre(int act) noexcept nogil:
    return act == SILU or act == GELU


cdef double act_bound(int act) noexcept nogil:
    """max |f(x)| over all x, or -1 if f is unbounded."""
    if act == TANH or act == SIGMOID or act == SOFTSIGN or act == STEP or act == SOFTMAX:
        return 1
    if act == LECUN_TANH:
        return LECUN_A
    return -1


cdef double slope_bound(int act) noexcept nogil:
    """A bound on |f'| as the backward pass computes it (softmax: its Jacobian-vector
    product is at most twice the largest incoming gradient)."""
    if act == SIGMOID:
        return 0.26
    if act == LECUN_TANH:
        return 1.15         # A * B = 1.1439
    if act == SILU or act == GELU:
        return 1.2
    if act == SOFTMAX:
        return 2
    return 1


cdef inline floating fast_tanh(floating x) noexcept nogil:
    """tanh; float32 uses Eigen's vectorizable rational approximation (_simd.h)."""
    if floating is double:
        return tanh(x)
    else:
        return fbp_tanhf(x)


cdef inline floating fexp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating sigmoid(floating x) noexcept nogil:
    if floating is double:
        return 1.0 / (1.0 + exp(-x))
    else:
        return 0.5 + 0.5 * fast_tanh(0.5 * x)


cdef inline void row_forward(int act, floating* pre, floating* out, const floating* b,
                             Py_ssize_t k) noexcept nogil:
    """pre += b; out = f(pre). pre and out may be the same row."""
    cdef float is_, oa, oc
    cdef Py_ssize_t j
    cdef floating x, m, s, u
    if floating is float:
        if act == TANH or act == SIGMOID or act == LECUN_TANH:
            if act == TANH:
                is_, oa, oc = 1.0, 1.0, 0.0
            elif act == SIGMOID:
                is_, oa, oc = 0.5, 0.5, 0.5
            else:
                is_, oa, oc = LECUN_B, LECUN_A, 0.0
            if pre == out:
                fbp_affine_tanh_inplace(out, b, k, is_, oa, oc)
            else:
                fbp_affine_tanh_store(pre, out, b, k, is_, oa, oc)
            return
        elif act == SILU:
            fbp_silu_store(pre, out, b, k)
            return
        elif act == GELU:
            fbp_gelu_store(pre, out, b, k)
            return
    if act == IDENTITY:
        for j in range(k):
            out[j] = pre[j] + b[j]
    elif act == STEP:
        for j in range(k):
            out[j] = 1 if pre[j] + b[j] >= 0 else 0
    elif act == SIGMOID:
        for j in range(k):
            x = pre[j] + b[j]
            pre[j] = x
            out[j] = sigmoid(x)
    elif act == TANH:
        for j in range(k):
            out[j] = fast_tanh(pre[j] + b[j])
    elif act == LECUN_TANH:
        for j in range(k):
            out[j] = <floating>LECUN_A * fast_tanh(<floating>LECUN_B * (pre[j] + b[j]))
    elif act == RELU:
        for j in range(k):
            x = pre[j] + b[j]
            out[j] = x if x > 0 else 0
    elif act == LEAKY_RELU:
        for j in range(k):
            x = pre[j] + b[j]
            out[j] = x if x > 0 else <floating>LEAKY * x
    elif act == ELU:
        for j in range(k):
            x = pre[j] + b[j]
            out[j] = x if x > 0 else expm1(x)
    elif act == SOFTPLUS:
        for j in range(k):
            x = pre[j] + b[j]
            out[j] = (x if x > 0 else 0) + log1p(exp(-fabs(x)))
    elif act == SOFTSIGN:
        for j in range(k):
            x = pre[j] + b[j]
            out[j] = x / (1 + fabs(x))
    elif act == SILU:
        for j in range(k):
            x = pre[j] + b[j]
            pre[j] = x
            out[j] = x * sigmoid(x)
    elif act == GELU:
        for j in range(k):
            x = pre[j] + b[j]
            pre[j] = x
            out[j] = 0.5 * x * (1 + fast_tanh(<floating>SQRT_2_OVER_PI * (x + <floating>GELU_C * x * x * x)))
    elif act == SOFTMAX:
        m = pre[0] + b[0]
        for j in range(k):
            x = pre[j] + b[j]
            pre[j] = x
            if x > m:
                m = x
        s = 0
        for j in range(k):
            u = fexp(pre[j] - m)
            out[j] = u
            s = s + u
        s = 1 / s
        for j in range(k):
            out[j] = out[j] * s


cdef void bias_act_forward(int act, floating* pre, floating* out, const floating* b,
                           Py_ssize_t n, Py_ssize_t k, int nt) noexcept nogil:
    """For each row i: pre[i] += b, out[i] = f(pre[i]) (pre may equal out)."""
    cdef Py_ssize_t i
    cdef int t = threads_for(n * k, nt)
    if t > 1:
        for i in prange(n, num_threads=t, schedule="static"):
            row_forward(act, pre + i * k, out + i * k, b, k)
    else:
        for i in range(n):
            row_forward(act, pre + i * k, out + i * k, b, k)


cdef inline void row_backward(int act, floating* g, const floating* y, const floating* x,
                              Py_ssize_t k) noexcept nogil:
    """g *= f'(x), from the output y where possible (x = pre-activation)."""
    cdef Py_ssize_t j
    cdef floating s, t, u, d
    if floating is float:
        if act == TANH:
            fbp_affine_tanh_backward(g, y, k, 1.0, 1.0, 0.0)
            return
        elif act == SIGMOID:
            fbp_affine_tanh_backward(g, y, k, 0.5, 0.5, 0.5)
            return
        elif act == LECUN_TANH:
            fbp_affine_tanh_backward(g, y, k, <float>LECUN_B, <float>LECUN_A, 0.0)
            return
        elif act == RELU:
            fbp_relu_backward(g, y, k, 0.0)
            return
        elif act == LEAKY_RELU:
            fbp_relu_backward(g, y, k, <float>LEAKY)
            return
        elif act == SILU:
            fbp_silu_backward(g, x, k)
            return
        elif act == GELU:
            fbp_gelu_backward(g, x, k)
            return
    if act == IDENTITY:
        return
    elif act == SIGMOID:
        for j in range(k):
            g[j] = g[j] * y[j] * (1 - y[j])
    elif act == TANH:
        for j in range(k):
            g[j] = g[j] * (1 - y[j] * y[j])
    elif act == LECUN_TANH:
        for j in range(k):
            g[j] = g[j] * <floating>(LECUN_B / LECUN_A) * (<floating>(LECUN_A * LECUN_A) - y[j] * y[j])
    elif act == RELU:
        for j in range(k):
            g[j] = g[j] if y[j] > 0 else 0
    elif act == LEAKY_RELU:
        for j in range(k):
            g[j] = g[j] if y[j] > 0 else <floating>LEAKY * g[j]
    elif act == ELU:
        for j in range(k):
            g[j] = g[j] if y[j] > 0 else g[j] * (y[j] + 1)
    elif act == SOFTPLUS:
        for j in range(k):
            g[j] = g[j] * -expm1(-y[j])
    elif act == SOFTSIGN:
        for j in range(k):
            s = 1 - fabs(y[j])
            g[j] = g[j] * s * s
    elif act == SILU:
        for j in range(k):
            s = sigmoid(x[j])
            g[j] = g[j] * s * (1 + x[j] * (1 - s))
    elif act == GELU:
        for j in range(k):
            u = x[j]
            t = fast_tanh(<floating>SQRT_2_OVER_PI * (u + <floating>GELU_C * u * u * u))
            d = 0.5 * (1 + t) + 0.5 * u * (1 - t * t) * <floating>SQRT_2_OVER_PI * (1 + <floating>(3 * GELU_C) * u * u)
            g[j] = g[j] * d
    elif act == SOFTMAX:
        d = 0
        for j in range(k):
            d = d + g[j] * y[j]
        for j in range(k):
            g[j] = y[j] * (g[j] - d)


cdef int row_coupled(int act) noexcept nogil:
    """1 if f acts on whole rows (softmax), so it cannot run on a column block."""
    return act == SOFTMAX


cdef void block_forward(int act, floating* pre, floating* out, const floating* b,
                        Py_ssize_t ld, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                        Py_ssize_t c1) noexcept nogil:
    """bias_act_forward on rows [r0, r1) x columns [c0, c1) of (., ld) arrays (serial)."""
    cdef Py_ssize_t i
    for i in range(r0, r1):
        row_forward(act, pre + i * ld + c0, out + i * ld + c0, b + c0, c1 - c0)


cdef void block_backward(int act, floating* g, const floating* out, const floating* pre,
                         Py_ssize_t ld, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                         Py_ssize_t c1) noexcept nogil:
    """act_backward on rows [r0, r1) x columns [c0, c1) of (., ld) arrays (serial)."""
    cdef Py_ssize_t i
    if act == IDENTITY:
        return
    for i in range(r0, r1):
        row_backward(act, g + i * ld + c0, out + i * ld + c0,
                     pre + i * ld + c0 if pre != NULL else NULL, c1 - c0)


cdef void act_backward(int act, floating* g, const floating* out, const floating* pre,
                       Py_ssize_t n, Py_ssize_t k, int nt) noexcept nogil:
    """g := g * f'(pre) row by row (softmax: its Jacobian-vector product)."""
    cdef Py_ssize_t i
    cdef int t = threads_for(n * k, nt)
    if act == IDENTITY:
        return
    if t > 1:
        for i in prange(n, num_threads=t, schedule="static"):
            row_backward(act, g + i * k, out + i * k, pre + i * k if pre != NULL else NULL, k)
    else:
        for i in range(n):
            row_backward(act, g + i * k, out + i * k, pre + i * k if pre != NULL else NULL, k)


cdef inline double row_loss(int loss, int act, const floating* y, const floating* x,
                            const floating* T, long long label, Py_ssize_t k, floating scale,
                            floating* g) noexcept nogil:
    """Loss of one sample; g := scale * dE/d(pre-activation)."""
    cdef Py_ssize_t j
    cdef double e = 0, m, s, tsum, tj
    if loss == MSE:
        for j in range(k):
            tj = y[j] - T[j]
            e += tj * tj
            g[j] = scale * (y[j] - T[j])
        row_backward(act, g, y, x, k)
        return 0.5 * e
    elif loss == CROSS_ENTROPY:
        if T == NULL and y[label] > 1e-6:     # -log p, accurate when p is not tiny
            e = -log(<double>y[label])
        else:                                 # from the logits: log-sum-exp - x
            m = x[0]
            for j in range(k):
                if x[j] > m:
                    m = x[j]
            s = 0
            for j in range(k):
                s += exp(x[j] - m)
            s = m + log(s)
            if T == NULL:
                e = s - x[label]
        if T == NULL:
            for j in range(k):
                g[j] = scale * y[j]
            g[label] = g[label] - scale
        else:
            tsum = 0
            for j in range(k):
                tj = T[j]
                if tj != 0:
                    e += tj * (s - x[j])
                tsum += tj
            for j in range(k):
                g[j] = scale * (<floating>tsum * y[j] - T[j])
        return e
    else:  # BINARY_CROSS_ENTROPY from the logits: softplus(x) - t*x
        for j in range(k):
            e += (x[j] if x[j] > 0 else 0) + log1p(exp(-fabs(x[j]))) - T[j] * x[j]
            g[j] = scale * (y[j] - T[j])
        return e


cdef double loss_and_output_grad(int loss, int act, const floating* out, const floating* pre,
                                 const floating* T, const long long* labels,
                                 const floating* sw, Py_ssize_t n, Py_ssize_t k, floating scale,
                                 floating* g, int nt) noexcept nogil:
    """Sum over the n rows of the (sample-weighted, if sw) loss; g := scale * w_i * dE_i/dpre_i."""
    cdef Py_ssize_t i, c, nchunks = 16
    cdef double total = 0
    cdef double part[16]
    cdef int t = threads_for(n * k * 8, nt)
    # fixed row blocks summed in order: the total does not depend on the thread count
    for c in prange(nchunks, num_threads=t, schedule="static"):
        part[c] = 0
        for i in range(n * c // nchunks, n * (c + 1) // nchunks):
            part[c] += _weighted_row_loss(loss, act, out, pre, T, labels, sw, i, k, scale, g)
    for c in range(nchunks):
        total += part[c]
    return total


cdef inline double _weighted_row_loss(int loss, int act, const floating* out,
                                      const floating* pre, const floating* T,
                                      const long long* labels, const floating* sw, Py_ssize_t i,
                                      Py_ssize_t k, floating scale, floating* g) noexcept nogil:
    cdef floating w = sw[i] if sw != NULL else 1
    return w * row_loss(loss, act, out + i * k, pre + i * k, T + i * k if T != NULL else NULL,
                        labels[i] if labels != NULL else 0, k, scale * w, g + i * k)


cdef void column_sums(const floating* g, Py_ssize_t n, Py_ssize_t k, floating* out,
                      floating beta, int nt) noexcept nogil:
    """out := beta * out + g.sum(axis=0) for g (n, k) row-major."""
    cdef Py_ssize_t i, j, c, c0, c1, nchunks
    cdef Py_ssize_t CH = 256
    cdef int t = threads_for(n * k, nt)
    nchunks = (k + CH - 1) // CH
    if t > 1 and nchunks > 1:
        for c in prange(nchunks, num_threads=t, schedule="static"):
            _colsum_block(g, n, k, out, beta, c * CH, min(k, (c + 1) * CH))
    else:
        _colsum_block(g, n, k, out, beta, 0, k)


cdef inline void _colsum_block(const floating* g, Py_ssize_t n, Py_ssize_t k, floating* out,
                               floating beta, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    cdef Py_ssize_t i, j
    if floating is float:
        fbp_colsum_f32(g + c0, n, k, out + c0, c1 - c0, beta)    # (vectorized clones)
    else:
        if beta == 0:
            for j in range(c0, c1):
                out[j] = 0
        elif beta != 1:
            for j in range(c0, c1):
                out[j] = beta * out[j]
        for i in range(n):
            for j in range(c0, c1):
                out[j] = out[j] + g[i * k + j]


cdef int all_finite(const floating* x, Py_ssize_t n, int nt) noexcept nogil:
    """1 if every x[i] is finite (maxabs_par: an integer test of the bits)."""
    return maxabs_par(x, n, nt) < INFINITY


cdef double maxabs(const floating* x, Py_ssize_t m, Py_ssize_t n, Py_ssize_t ld) noexcept nogil:
    """max |x| over the (m, n) block of a (., ld) array; inf if some element is NaN or inf."""
    if m <= 0 or n <= 0:
        return 0
    if floating is float:
        return fbp_maxabs_f32(x, m, n, ld)
    else:
        return fbp_maxabs_f64(x, m, n, ld)


cdef double maxabs_par(const floating* x, Py_ssize_t n, int nt) noexcept nogil:
    """max |x[:n]| (inf if some element is not finite), split over up to nt threads."""
    cdef double part[64]
    cdef double best = 0
    cdef int t, parts = min(run_threads(nt), 64) if n >= 4 * PARALLEL_MIN else 1
    if parts <= 1:
        return maxabs(x, 1, n, n)
    for t in prange(parts, num_threads=parts, schedule="static"):
        part[t] = maxabs(x + n * t // parts, 1, n * (t + 1) // parts - n * t // parts, n)
    for t in range(parts):
        best = max(best, part[t])
    return best


cdef double count_correct(int loss, const floating* out, const floating* T,
                          const long long* labels, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Correct predictions: argmax vs label / argmax of T rows (cross-entropy), or, for
    binary cross-entropy, the fraction of the k outputs on the right side of 0.5 per row."""
    cdef Py_ssize_t i, j, best, want
    cdef double c = 0, hits
    for i in range(n):
        if loss == BINARY_CROSS_ENTROPY:
            hits = 0
            for j in range(k):
                hits += (out[i * k + j] > 0.5) == (T[i * k + j] > 0.5)
            c += hits / k
        else:
            best = 0
            for j in range(1, k):
                if out[i * k + j] > out[i * k + best]:
                    best = j
            if labels != NULL:
                want = labels[i]
            else:
                want = 0
                for j in range(1, k):
                    if T[i * k + j] > T[i * k + want]:
                        want = j
            c += best == want
    return c


# ---- dropout -----------------------------------------------------------------------------

cdef void dropout_block(const floating* a, floating* d, unsigned char* m, Py_ssize_t ld,
                        Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                        const Dropout* dr) noexcept nogil:
    """d = a * mask * scale and m = mask on rows [r0, r1) x columns [c0, c1) of (., ld)
    arrays (serial; the mask of an entry depends only on the key and its place)."""
    cdef Py_ssize_t r
    cdef unsigned int idx
    for r in range(r0, r1):
        idx = <unsigned int>((dr.row0 + r) * ld + c0)
        if floating is float:
            fbp_dropout_f32(a + r * ld + c0, d + r * ld + c0, m + r * ld + c0, c1 - c0, idx,
                            dr.ka, dr.kb, dr.p24, <float>dr.scale)
        else:
            fbp_dropout_f64(a + r * ld + c0, d + r * ld + c0, m + r * ld + c0, c1 - c0, idx,
                            dr.ka, dr.kb, dr.p24, dr.scale)


cdef void mask_block(floating* g, const unsigned char* m, Py_ssize_t ld, Py_ssize_t r0,
                     Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1, double scale) noexcept nogil:
    """g *= m * scale on rows [r0, r1) x columns [c0, c1) (the dropout's backward)."""
    cdef Py_ssize_t r
    for r in range(r0, r1):
        if floating is float:
            fbp_apply_mask_f32(g + r * ld + c0, m + r * ld + c0, c1 - c0, <float>scale)
        else:
            fbp_apply_mask_f64(g + r * ld + c0, m + r * ld + c0, c1 - c0, scale)


# ---- batch normalization -------------------------------------------------------------------
# Per column (unit) j of a layer's pre-activation x = z W + b over the n rows of a batch:
# training uses the batch's mean and (biased) variance, evaluation the running ones;
# xhat = (x - mean) / sqrt(var + eps), h = gamma * xhat + beta. Sums are taken in float64,
# rows in order, columns in blocks (the same for any thread count).

cdef Py_ssize_t BN_BLOCK = 64


cdef void bn_forward(floating* pre, const floating* b, const floating* gamma,
                     const floating* beta, floating* xhat, double* mean, double* var,
                     double* istd, Py_ssize_t n, Py_ssize_t k, double eps,
                     const double* run_mean, const double* run_var, int training,
                     int nt) noexcept nogil:
    """pre (n, k) := gamma * xhat + beta, xhat (kept in ``xhat`` unless NULL) from the
    batch statistics (training: mean, var, istd = 1/sqrt(var + eps) written) or from the
    running ones (mean, var, istd still written)."""
    cdef Py_ssize_t c, nblocks = (k + BN_BLOCK - 1) // BN_BLOCK
    cdef int t = threads_for(n * k, nt)
    if t > 1 and nblocks > 1:
        for c in prange(nblocks, num_threads=t, schedule="static"):
            _bn_forward_block(pre, b, gamma, beta, xhat, mean, var, istd, n, k, eps, run_mean,
                              run_var, training, c * BN_BLOCK, min(k, (c + 1) * BN_BLOCK))
    else:
        for c in range(nblocks):
            _bn_forward_block(pre, b, gamma, beta, xhat, mean, var, istd, n, k, eps, run_mean,
                              run_var, training, c * BN_BLOCK, min(k, (c + 1) * BN_BLOCK))


cdef inline void _bn_forward_block(floating* pre, const floating* b, const floating* gamma,
                                   const floating* beta, floating* xhat, double* mean,
                                   double* var, double* istd, Py_ssize_t n, Py_ssize_t k,
                                   double eps, const double* run_mean, const double* run_var,
                                   int training, Py_ssize_t c0, Py_ssize_t c1) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef double x, xh
    if floating is float:
        if training:
            fbp_bn_stats_f32(pre + c0, b + c0, n, k, c1 - c0, mean + c0, var + c0)
        else:
            for j in range(c0, c1):
                mean[j] = run_mean[j]
                var[j] = run_var[j]
        for j in range(c0, c1):
            istd[j] = 1.0 / sqrt(var[j] + eps)
        fbp_bn_apply_f32(pre + c0, b + c0, xhat + c0 if xhat != NULL else NULL, n, k, c1 - c0,
                         mean + c0, istd + c0, gamma + c0, beta + c0)
    else:
        if training:
            for j in range(c0, c1):
                mean[j] = 0
                var[j] = 0
            for r in range(n):
                for j in range(c0, c1):
                    mean[j] += <double>(pre[r * k + j] + b[j])
            for j in range(c0, c1):
                mean[j] /= n
            for r in range(n):
                for j in range(c0, c1):
                    x = <double>(pre[r * k + j] + b[j]) - mean[j]
                    var[j] += x * x
            for j in range(c0, c1):
                var[j] /= n
        else:
            for j in range(c0, c1):
                mean[j] = run_mean[j]
                var[j] = run_var[j]
        for j in range(c0, c1):
            istd[j] = 1.0 / sqrt(var[j] + eps)
        for r in range(n):
            for j in range(c0, c1):
                xh = (<double>(pre[r * k + j] + b[j]) - mean[j]) * istd[j]
                if xhat != NULL:
                    xhat[r * k + j] = <floating>xh
                pre[r * k + j] = <floating>(gamma[j] * xh + beta[j])


cdef void bn_backward(floating* g, const floating* xhat, const floating* gamma,
                      const double* istd, Py_ssize_t n, Py_ssize_t k, floating* dgamma,
                      floating* dbeta, floating beta_acc, int training, int nt) noexcept nogil:
    """From g = dE/dh (n, k): dgamma := beta_acc*dgamma + sum g*xhat, dbeta := beta_acc*dbeta
    + sum g, and g := dE/dx: gamma*istd*(g - mean(g) - xhat*mean(g*xhat)) with the batch
    statistics (training), gamma*istd*g with the running ones."""
    cdef Py_ssize_t c, nblocks = (k + BN_BLOCK - 1) // BN_BLOCK
    cdef int t = threads_for(n * k, nt)
    if t > 1 and nblocks > 1:
        for c in prange(nblocks, num_threads=t, schedule="static"):
            _bn_backward_block(g, xhat, gamma, istd, n, k, dgamma, dbeta, beta_acc, training,
                               c * BN_BLOCK, min(k, (c + 1) * BN_BLOCK))
    else:
        for c in range(nblocks):
            _bn_backward_block(g, xhat, gamma, istd, n, k, dgamma, dbeta, beta_acc, training,
                               c * BN_BLOCK, min(k, (c + 1) * BN_BLOCK))


cdef inline void _bn_backward_block(floating* g, const floating* xhat, const floating* gamma,
                                    const double* istd, Py_ssize_t n, Py_ssize_t k,
                                    floating* dgamma, floating* dbeta, floating beta_acc,
                                    int training, Py_ssize_t c0,
                                    Py_ssize_t c1) noexcept nogil:
    cdef Py_ssize_t r, j
    cdef double sg[64]
    cdef double sgx[64]
    cdef double a
    if floating is float:
        fbp_bn_backward_f32(g + c0, xhat + c0, gamma + c0, istd + c0, n, k, c1 - c0,
                            dgamma + c0, dbeta + c0, beta_acc, training)
    else:
        for j in range(c0, c1):
            sg[j - c0] = 0
            sgx[j - c0] = 0
        for r in range(n):
            for j in range(c0, c1):
                sg[j - c0] += <double>g[r * k + j]
                sgx[j - c0] += <double>g[r * k + j] * <double>xhat[r * k + j]
        for j in range(c0, c1):     # beta_acc 0 overwrites (the old value may be garbage)
            dbeta[j] = <floating>(beta_acc * dbeta[j] + sg[j - c0] if beta_acc != 0
                                  else sg[j - c0])
            dgamma[j] = <floating>(beta_acc * dgamma[j] + sgx[j - c0] if beta_acc != 0
                                   else sgx[j - c0])
        for r in range(n):
            for j in range(c0, c1):
                a = gamma[j] * istd[j]
                if training:
                    g[r * k + j] = <floating>(a * (<double>g[r * k + j] - sg[j - c0] / n
                                                   - <double>xhat[r * k + j] * sgx[j - c0] / n))
                else:
                    g[r * k + j] = <floating>(a * g[r * k + j])


# ---- Python shims used only by the tests ---------------------------------------------

def bias_act_forward_py(int act, floating[:, ::1] pre, floating[:, ::1] out,
                        const floating[::1] b, int nt=1):
    with nogil:
        bias_act_forward(act, &pre[0, 0], &out[0, 0], &b[0], pre.shape[0], pre.shape[1], nt)


def act_backward_py(int act, floating[:, ::1] g, const floating[:, ::1] out,
                    const floating[:, ::1] pre, int nt=1):
    with nogil:
        act_backward(act, &g[0, 0], &out[0, 0], &pre[0, 0], g.shape[0], g.shape[1], nt)
