"""nogil elementwise kernels: bias + activation, activation backward, losses.

Row loops run under OpenMP when the work is large enough to pay for it.
Derivatives use the stored output wherever the function allows; only SiLU,
GELU and the output layer keep their pre-activations.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy
from libc.math cimport INFINITY, exp, expf, expm1, log, log1p, tanh, fabs, sqrt, sqrtf

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
    int fbp_adam_f32(float* p, const float* g, float* m, float* v, float* bk, Py_ssize_t n,
                     float step, float wd, float b1, float b2, float bc2s, float eps)
    int fbp_adam_f64(double* p, const double* g, double* m, double* v, double* bk,
                     Py_ssize_t n, double step, double wd, double b1, double b2, double bc2s,
                     double eps)
    int fbp_sgd_f32(float* p, const float* g, float* s, float* bk, Py_ssize_t n, float lr,
                    float wd, float mu, int mode, int nesterov)
    int fbp_sgd_f64(double* p, const double* g, double* s, double* bk, Py_ssize_t n,
                    double lr, double wd, double mu, int mode, int nesterov)
    int fbp_velocity_f32(float* p, const float* g, float* v, float* bk, Py_ssize_t n,
                         float lr, float wd, float mu, int nesterov)
    int fbp_velocity_f64(double* p, const double* g, double* v, double* bk, Py_ssize_t n,
                         double lr, double wd, double mu, int nesterov)
    int fbp_rmsprop_f32(float* p, const float* g, float* s, float* b, float* bk, Py_ssize_t n,
                        float lr, float wd, float alpha, float eps, float mu)
    int fbp_rmsprop_f64(double* p, const double* g, double* s, double* b, double* bk,
                        Py_ssize_t n, double lr, double wd, double alpha, double eps,
                        double mu)
    int fbp_momentum_f32(float* p, float* buf, Py_ssize_t n, float lr, float wd, float keep,
                         unsigned int* pmax, unsigned int* bmax)
    int fbp_momentum_f64(double* p, double* buf, Py_ssize_t n, double lr, double wd,
                         double keep, unsigned long long* pmax, unsigned long long* bmax)
    double fbp_bits_f32(unsigned int b)
    double fbp_bits_f64(unsigned long long b)
    double fbp_maxabs_f32(const float* x, Py_ssize_t m, Py_ssize_t n, Py_ssize_t ld)
    double fbp_maxabs_f64(const double* x, Py_ssize_t m, Py_ssize_t n, Py_ssize_t ld)

cdef Py_ssize_t PARALLEL_MIN = 32768   # elements below which loops stay serial
cdef double SQRT_2_OVER_PI = 0.7978845608028654
cdef double GELU_C = 0.044715
cdef double LECUN_A = 1.7159
cdef double LECUN_B = 2.0 / 3.0
cdef double LEAKY = 0.01


# Upper bound on the threads that actually run (the Trainer lowers it to 1 when the cores
# are busy with other work). Work is always split by the requested count, so results
# do not depend on it.
cdef int RUN_CAP = 1 << 20


def set_run_cap(int n):
    """Run at most n threads (splitting of the work is unchanged)."""
    global RUN_CAP
    RUN_CAP = max(1, n)


def get_run_cap():
    return RUN_CAP


cdef int run_threads(int want) noexcept nogil:
    return want if want < RUN_CAP else RUN_CAP


cdef inline int threads_for(Py_ssize_t work, int nt) noexcept nogil:
    return run_threads(nt) if work >= PARALLEL_MIN else 1


cdef int needs_pre(int act) noexcept nogil:
    return act == SILU or act == GELU


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


cdef inline floating fsqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


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


# ---- Python shims used only by the tests ---------------------------------------------

def bias_act_forward_py(int act, floating[:, ::1] pre, floating[:, ::1] out,
                        const floating[::1] b, int nt=1):
    with nogil:
        bias_act_forward(act, &pre[0, 0], &out[0, 0], &b[0], pre.shape[0], pre.shape[1], nt)


def act_backward_py(int act, floating[:, ::1] g, const floating[:, ::1] out,
                    const floating[:, ::1] pre, int nt=1):
    with nogil:
        act_backward(act, &g[0, 0], &out[0, 0], &pre[0, 0], g.shape[0], g.shape[1], nt)


# ---- optimizers: one fused pass over the flat parameter buffer --------------------------

cdef inline floating sign(floating x) noexcept nogil:
    return (x > 0) - (x < 0)


cdef int _fused_block(OptParams* op, floating* p, const floating* g, floating* s1,
                      floating* s2, floating* bk, Py_ssize_t a, Py_ssize_t z) noexcept nogil:
    """SGD, Adam and RMSprop in one pass each (vectorized C in _simd.h): back up p, update,
    flag non-finite results. Returns 1 if some new parameter is not finite."""
    cdef floating lr = op.lr, wd = op.weight_decay, mom = op.momentum
    cdef floating b1 = op.beta1, b2 = op.beta2, eps = op.eps, alpha = op.alpha
    cdef floating step, bc1, bc2s
    cdef bint first = op.t == 0
    cdef int bad = 0
    cdef int mode
    if op.kind == SGD and op.velocity and mom != 0:
        # v = mu*v - lr*g; w += v (Nesterov: w += mu*v - lr*g); v starts at 0
        if floating is float:
            bad = not fbp_velocity_f32(p + a, g + a, s1 + a, bk + a, z - a, lr, wd, mom,
                                       op.nesterov)
        else:
            bad = not fbp_velocity_f64(p + a, g + a, s1 + a, bk + a, z - a, lr, wd, mom,
                                       op.nesterov)
    elif op.kind == SGD:
        mode = 0 if mom == 0 else (1 if first else 2)
        if floating is float:
            bad = not fbp_sgd_f32(p + a, g + a, s1 + a, bk + a, z - a, lr, wd, mom, mode,
                                  op.nesterov)
        else:
            bad = not fbp_sgd_f64(p + a, g + a, s1 + a, bk + a, z - a, lr, wd, mom, mode,
                                  op.nesterov)
    elif op.kind == ADAM:
        bc1 = 1 - b1 ** (op.t + 1)
        bc2s = sqrt(1 - b2 ** (op.t + 1))
        step = lr / bc1
        if op.eps_raw:
            eps = eps / bc2s
        if floating is float:
            bad = not fbp_adam_f32(p + a, g + a, s1 + a, s2 + a, bk + a, z - a, step, wd, b1,
                                   b2, bc2s, eps)
        else:
            bad = not fbp_adam_f64(p + a, g + a, s1 + a, s2 + a, bk + a, z - a, step, wd, b1,
                                   b2, bc2s, eps)
    else:  # RMSPROP
        if floating is float:
            bad = not fbp_rmsprop_f32(p + a, g + a, s1 + a, s2 + a, bk + a, z - a, lr, wd,
                                      alpha, eps, mom)
        else:
            bad = not fbp_rmsprop_f64(p + a, g + a, s1 + a, s2 + a, bk + a, z - a, lr, wd,
                                      alpha, eps, mom)
    return bad


cdef void _opt_block(OptParams* op, floating* p, const floating* g, floating* s1,
                     floating* s2, floating* s3, Py_ssize_t a, Py_ssize_t z) noexcept nogil:
    """Rprop and Quickprop (branchy, full-batch methods)."""
    cdef Py_ssize_t i
    cdef floating lr = op.lr, wd = op.weight_decay
    cdef floating gi, step, s, prev, dw, sf
    cdef floating emin = op.eta_minus, eplus = op.eta_plus
    cdef floating smin = op.step_min, smax = op.step_max, mu = op.mu
    cdef bint first = op.t == 0
    if False:
        pass
    elif op.kind == RPROP:
        # s1: previous gradient, s2: step sizes, s3: last weight change (iRprop+)
        for i in range(a, z):
            gi = g[i] + wd * p[i]
            if first:
                s2[i] = lr
            s = sign(gi * s1[i])
            if s > 0:
                step = s2[i] * eplus
                s2[i] = step if step < smax else smax
            elif s < 0:
                step = s2[i] * emin
                s2[i] = step if step > smin else smin
                if op.plus and op.loss_increased:
                    p[i] = p[i] - s3[i]
                s3[i] = 0
                s1[i] = 0
                continue
            dw = -sign(gi) * s2[i]
            p[i] = p[i] + dw
            s3[i] = dw
            s1[i] = gi
    elif op.kind == QUICKPROP:
        # Fahlman (1988): s1 previous step dw, s2 previous slope; slope = -(dE/dw + decay*w)
        sf = mu / (1 + mu)
        for i in range(a, z):
            s = -(g[i] + wd * p[i])
            prev = s1[i]
            dw = 0
            if prev > 0:
                if s > 0:
                    dw = lr * s
                if s > sf * s2[i]:
                    dw = dw + mu * prev
                elif s2[i] != s:
                    dw = dw + prev * s / (s2[i] - s)
            elif prev < 0:
                if s < 0:
                    dw = lr * s
                if s < sf * s2[i]:
                    dw = dw + mu * prev
                elif s2[i] != s:
                    dw = dw + prev * s / (s2[i] - s)
            else:
                dw = lr * s
            s1[i] = dw
            s2[i] = s
            p[i] = p[i] + dw


cdef int accumulates_momentum(OptParams* op) noexcept nogil:
    """1 for SGD with (heavy-ball, non-Nesterov) momentum: the products then add the gradient
    straight into the momentum buffer (see momentum_step), with no gradient buffer."""
    return op.kind == SGD and op.momentum != 0 and not op.nesterov and not op.velocity


cdef int momentum_step(OptParams* op, floating* p, floating* buf, Py_ssize_t n,
                       int scale_next, floating* bk, int nt, double* pmax,
                       double* bmax) noexcept nogil:
    """SGD momentum update when the products already left buf = mu*buf + g.

    d = buf + wd*p; p -= lr*d; buf = mu*d if scale_next (the next step's products then add
    with beta=1, saving a pass) else d. With bk given, the old p is copied there in the same
    pass. Raises pmax[0], bmax[0] to the largest new |p| and |buf| (inf if not finite).
    Returns 1 if every new p is finite.
    """
    cdef Py_ssize_t c, nchunks, CH = 16384
    cdef int t = min(run_threads(nt), 64) if n >= 4 * PARALLEL_MIN else 1
    cdef int bad = 0, tid
    cdef double pp[64]
    cdef double bb[64]
    nchunks = (n + CH - 1) // CH
    if t > 1 and nchunks > 1:
        for tid in range(t):
            pp[tid] = 0
            bb[tid] = 0
        for c in prange(nchunks, num_threads=t, schedule="static"):
            tid = threadid()
            bad += _momentum_block(op, p, buf, scale_next, bk, c * CH, min(n, (c + 1) * CH),
                                   &pp[tid], &bb[tid])
        for tid in range(t):
            pmax[0] = max(pmax[0], pp[tid])
            bmax[0] = max(bmax[0], bb[tid])
    else:
        bad = _momentum_block(op, p, buf, scale_next, bk, 0, n, pmax, bmax)
    return bad == 0


cdef inline int _momentum_block(OptParams* op, floating* p, floating* buf, int scale_next,
                                floating* bk, Py_ssize_t a, Py_ssize_t z, double* pmax,
                                double* bmax) noexcept nogil:
    cdef floating lr = op.lr, wd = op.weight_decay
    cdef floating keep = op.momentum if scale_next else 1
    cdef unsigned int pb32 = 0, bb32 = 0
    cdef unsigned long long pb64 = 0, bb64 = 0
    cdef int ok
    if bk != NULL:
        memcpy(bk + a, p + a, (z - a) * sizeof(floating))
    if floating is float:
        ok = fbp_momentum_f32(p + a, buf + a, z - a, lr, wd, keep, &pb32, &bb32)
        pmax[0] = max(pmax[0], fbp_bits_f32(pb32))
        bmax[0] = max(bmax[0], fbp_bits_f32(bb32))
    else:
        ok = fbp_momentum_f64(p + a, buf + a, z - a, lr, wd, keep, &pb64, &bb64)
        pmax[0] = max(pmax[0], fbp_bits_f64(pb64))
        bmax[0] = max(bmax[0], fbp_bits_f64(bb64))
    return not ok


cdef int optimizer_step(OptParams* op, floating* p, const floating* g, floating* s1,
                        floating* s2, floating* s3, floating* backup, Py_ssize_t n,
                        int nt) noexcept nogil:
    """Apply one optimizer update to the n parameters p given gradient g (see optimizers.py).

    Each block of p is copied to ``backup`` first (while it is in cache) and checked after
    its update. Returns 1 if every new parameter is finite; else 0 and the caller restores
    p from backup (the optimizer state then holds the failed step).
    """
    cdef Py_ssize_t c, nchunks, CH = 16384
    cdef int t = run_threads(nt) if n >= 4 * PARALLEL_MIN else 1
    cdef int bad = 0
    nchunks = (n + CH - 1) // CH
    if t > 1 and nchunks > 1:
        for c in prange(nchunks, num_threads=t, schedule="static"):
            bad += _checked_block(op, p, g, s1, s2, s3, backup, c * CH, min(n, (c + 1) * CH))
    else:
        bad = _checked_block(op, p, g, s1, s2, s3, backup, 0, n)
    return bad == 0


cdef inline int _checked_block(OptParams* op, floating* p, const floating* g, floating* s1,
                               floating* s2, floating* s3, floating* backup, Py_ssize_t a,
                               Py_ssize_t z) noexcept nogil:
    """Back up, update and check p[a:z]; 1 if a new value is not finite."""
    if op.kind == SGD or op.kind == ADAM or op.kind == RMSPROP:
        return _fused_block(op, p, g, s1, s2, backup, a, z)
    memcpy(backup + a, p + a, (z - a) * sizeof(floating))
    _opt_block(op, p, g, s1, s2, s3, a, z)
    return not all_finite(p + a, z - a, 1)
