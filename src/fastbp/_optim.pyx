"""The optimizers' compiled side: their settings and state, and the fused update passes.

An update reads the gradient and writes the parameters and the optimizer's state in one
pass over a range of the flat buffer, copying the old parameters to a backup in the same
pass and flagging any non-finite result (vectorized C in _optim.h for SGD, Adam, RMSprop;
Rprop and Quickprop are branchy full-batch methods written here). ``fastbp.optimizers``
holds the Python classes and the update rules in words.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy
from libc.math cimport sqrt, INFINITY

from ._kernels cimport run_threads, all_finite, PARALLEL_MIN

cnp.import_array()

cdef extern from "_optim.h" nogil:
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
    # the extended kernels: the same plus l1, clip value cv, scale gs, AdamW's keep
    int fbp_adam_x_f32(float* p, const float* g, float* m, float* v, float* bk, Py_ssize_t n,
                       float step, float wd, float b1, float b2, float bc2s, float eps,
                       float l1, float cv, float gs, float keep)
    int fbp_adam_x_f64(double* p, const double* g, double* m, double* v, double* bk,
                       Py_ssize_t n, double step, double wd, double b1, double b2,
                       double bc2s, double eps, double l1, double cv, double gs, double keep)
    int fbp_sgd_x_f32(float* p, const float* g, float* s, float* bk, Py_ssize_t n, float lr,
                      float wd, float mu, int mode, int nesterov, float l1, float cv, float gs,
                      float keep)
    int fbp_sgd_x_f64(double* p, const double* g, double* s, double* bk, Py_ssize_t n,
                      double lr, double wd, double mu, int mode, int nesterov, double l1,
                      double cv, double gs, double keep)
    int fbp_velocity_x_f32(float* p, const float* g, float* v, float* bk, Py_ssize_t n,
                           float lr, float wd, float mu, int nesterov, float l1, float cv,
                           float gs, float keep)
    int fbp_velocity_x_f64(double* p, const double* g, double* v, double* bk, Py_ssize_t n,
                           double lr, double wd, double mu, int nesterov, double l1,
                           double cv, double gs, double keep)
    int fbp_rmsprop_x_f32(float* p, const float* g, float* s, float* b, float* bk,
                          Py_ssize_t n, float lr, float wd, float alpha, float eps, float mu,
                          float l1, float cv, float gs, float keep)
    int fbp_rmsprop_x_f64(double* p, const double* g, double* s, double* b, double* bk,
                          Py_ssize_t n, double lr, double wd, double alpha, double eps,
                          double mu, double l1, double cv, double gs, double keep)
    float fbp_xgrad_f32(float g, float p, float l1, float cv, float gs)
    double fbp_xgrad_f64(double g, double p, double l1, double cv, double gs)
    double fbp_xgrad_sumsq_f32(const float* p, const float* g, Py_ssize_t n, float l1,
                               float cv)
    double fbp_xgrad_sumsq_f64(const double* p, const double* g, Py_ssize_t n, double l1,
                               double cv)
    void fbp_max_norm_f32(float* w, Py_ssize_t rows, Py_ssize_t cols, float c, float* scratch)
    void fbp_max_norm_f64(double* w, Py_ssize_t rows, Py_ssize_t cols, double c,
                          double* scratch)


cdef Py_ssize_t CHUNK = 16384      # elements per block of a parallel update


cdef class OptimizerConfig:
    """An optimizer's settings as the compiled update reads them (``OptParams``).

    Keyword arguments name the fields; a name that is not a field raises TypeError, so a
    setting can never be dropped on the way. Settings an optimizer does not use stay 0.
    """

    def __init__(self, *, int kind, double lr, double weight_decay=0, double momentum=0,
                 bint nesterov=False, bint classic_momentum=False, double beta1=0,
                 double beta2=0, double eps=0, bint eps_before_bias_correction=False,
                 double alpha=0, double eta_minus=0, double eta_plus=0, double step_min=0,
                 double step_max=0, bint backtrack=False, double max_growth=0):
        self.params.kind = kind
        self.params.lr = lr
        self.params.weight_decay = weight_decay
        self.params.momentum = momentum
        self.params.nesterov = nesterov
        self.params.classic_momentum = classic_momentum
        self.params.beta1 = beta1
        self.params.beta2 = beta2
        self.params.eps = eps
        self.params.eps_before_bias_correction = eps_before_bias_correction
        self.params.alpha = alpha
        self.params.eta_minus = eta_minus
        self.params.eta_plus = eta_plus
        self.params.step_min = step_min
        self.params.step_max = step_max
        self.params.backtrack = backtrack
        self.params.max_growth = max_growth

    @property
    def kind(self):
        return Opt(self.params.kind)

    @property
    def lr(self):
        return self.params.lr

    @property
    def momentum(self):
        return self.params.momentum

    @property
    def accumulates_momentum(self):
        """True when the engine adds gradients straight into the momentum buffer."""
        return bool(accumulates_momentum(&self.params))


# The buffers each name binds (OptBuffers' fields).
BUFFER_NAMES = ("momentum_buffer", "exp_avg", "exp_avg_sq", "square_avg", "prev_grad",
                "step_size", "prev_step", "prev_slope")


cdef void bind_buffer(OptBuffers* b, str name, void* p):
    if name == "momentum_buffer":
        b.momentum_buffer = p
    elif name == "exp_avg":
        b.exp_avg = p
    elif name == "exp_avg_sq":
        b.exp_avg_sq = p
    elif name == "square_avg":
        b.square_avg = p
    elif name == "prev_grad":
        b.prev_grad = p
    elif name == "step_size":
        b.step_size = p
    elif name == "prev_step":
        b.prev_step = p
    elif name == "prev_slope":
        b.prev_slope = p


cdef class OptimizerState:
    """The per-parameter buffers (by name, see ``BUFFER_NAMES``) and counters that an
    optimizer carries from step to step, zeroed at creation and by ``reset``."""

    def __init__(self, names, Py_ssize_t size, dtype, arrays=None, long long t=0,
                 double last_loss=np.inf):
        self.dtype = np.dtype(dtype)
        self.size = size
        self.buffers = {}
        for name in names:
            if name not in BUFFER_NAMES:
                raise ValueError(f"unknown optimizer buffer {name!r}; valid names: "
                                 f"{list(BUFFER_NAMES)}")
            if arrays is not None:
                arr = np.array(arrays[name], dtype=self.dtype, copy=True).reshape(-1)
                if arr.size != size:
                    raise ValueError(f"optimizer buffer {name!r} has {arr.size} entries, "
                                     f"expected {size}")
            else:
                arr = np.zeros(size, dtype=self.dtype)
            self.buffers[name] = arr
            bind_buffer(&self.buf, name, cnp.PyArray_DATA(arr))
        self.t = t
        self.last_loss = last_loss

    @property
    def names(self):
        return tuple(self.buffers)

    def __getitem__(self, name):
        return self.buffers[name]

    def __contains__(self, name):
        return name in self.buffers

    def reset(self):
        """Zero every buffer and the counters (as when training starts)."""
        for arr in self.buffers.values():
            arr[...] = 0
        self.t = 0
        self.last_loss = np.inf

    def __reduce__(self):
        return (OptimizerState, (tuple(self.buffers), self.size, self.dtype.str,
                                 self.buffers, self.t, self.last_loss))

    def __repr__(self):
        return (f"OptimizerState({list(self.buffers)}, size={self.size}, "
                f"dtype={self.dtype.name}, t={self.t})")


cdef int accumulates_momentum(const OptParams* op) noexcept nogil:
    """1 for SGD with (heavy-ball, non-Nesterov) momentum: the products then add the gradient
    straight into the momentum buffer (see momentum_step), with no gradient buffer."""
    return (op.kind == SGD and op.momentum != 0 and not op.nesterov
            and not op.classic_momentum)


# ---- the update of a range of parameters --------------------------------------------------

cdef inline floating sign(floating x) noexcept nogil:
    return (x > 0) - (x < 0)


cdef inline floating* at(void* buf, Py_ssize_t a, floating* like) noexcept nogil:
    """buf + a as a floating array (like: only fixes the type; NULL stays NULL)."""
    return <floating*>buf + a if buf != NULL else NULL


cdef inline bint plain(const OptParams* op, const GradOpts* go) noexcept nogil:
    """The gradient goes to the rule as it is (+ coupled decay): the plain kernels."""
    return (go.l1 == 0 and not go.clip_value < INFINITY and go.scale == 1
            and op.kind != ADAMW)


cdef inline floating xgrad(floating g, floating p, const GradOpts* go) noexcept nogil:
    """The gradient an update uses at one entry (see GradOpts), before coupled decay."""
    if floating is float:
        return fbp_xgrad_f32(g, p, go.l1, go.clip_value, go.scale)
    else:
        return fbp_xgrad_f64(g, p, go.l1, go.clip_value, go.scale)


cdef int _fused_block(const OptParams* op, OptBuffers* st, long long t, floating* p,
                      const floating* g, floating* bk, Py_ssize_t a, Py_ssize_t z,
                      const GradOpts* go) noexcept nogil:
    """SGD, Adam(W) and RMSprop on p[a:z], one vectorized pass each: back up p, update, flag
    non-finite results. Returns 1 if some new parameter is not finite."""
    cdef floating lr = op.lr, wd = go.weight_decay, mom = op.momentum
    cdef floating b1 = op.beta1, b2 = op.beta2, eps = op.eps, alpha = op.alpha
    cdef floating l1 = go.l1, cv = go.clip_value, gs = go.scale, keep = 1
    cdef floating step, bc1, bc2s
    cdef Py_ssize_t n = z - a
    cdef int bad = 0, mode
    cdef bint x = not plain(op, go)
    cdef floating* buf = at(st.momentum_buffer, a, p)
    if op.kind == SGD and op.classic_momentum and mom != 0:
        # v = mu*v - lr*g; w += v (Nesterov: w += mu*v - lr*g); v starts at 0
        if floating is float:
            bad = not (fbp_velocity_x_f32(p + a, g + a, buf, bk + a, n, lr, wd, mom,
                                          op.nesterov, l1, cv, gs, keep) if x else
                       fbp_velocity_f32(p + a, g + a, buf, bk + a, n, lr, wd, mom, op.nesterov))
        else:
            bad = not (fbp_velocity_x_f64(p + a, g + a, buf, bk + a, n, lr, wd, mom,
                                          op.nesterov, l1, cv, gs, keep) if x else
                       fbp_velocity_f64(p + a, g + a, buf, bk + a, n, lr, wd, mom, op.nesterov))
    elif op.kind == SGD:
        mode = 0 if mom == 0 else (1 if t == 0 else 2)
        if floating is float:
            bad = not (fbp_sgd_x_f32(p + a, g + a, buf, bk + a, n, lr, wd, mom, mode,
                                     op.nesterov, l1, cv, gs, keep) if x else
                       fbp_sgd_f32(p + a, g + a, buf, bk + a, n, lr, wd, mom, mode, op.nesterov))
        else:
            bad = not (fbp_sgd_x_f64(p + a, g + a, buf, bk + a, n, lr, wd, mom, mode,
                                     op.nesterov, l1, cv, gs, keep) if x else
                       fbp_sgd_f64(p + a, g + a, buf, bk + a, n, lr, wd, mom, mode, op.nesterov))
    elif op.kind == ADAM or op.kind == ADAMW:
        bc1 = 1 - b1 ** (t + 1)
        bc2s = sqrt(1 - b2 ** (t + 1))
        step = lr / bc1
        if op.eps_before_bias_correction:
            eps = eps / bc2s
        if op.kind == ADAMW:       # torch.optim.AdamW: w *= 1 - lr*wd, not in the gradient
            keep = 1 - lr * wd
            wd = 0
        if floating is float:
            bad = not (fbp_adam_x_f32(p + a, g + a, at(st.exp_avg, a, p),
                                      at(st.exp_avg_sq, a, p), bk + a, n, step, wd, b1, b2,
                                      bc2s, eps, l1, cv, gs, keep) if x else
                       fbp_adam_f32(p + a, g + a, at(st.exp_avg, a, p), at(st.exp_avg_sq, a, p),
                                    bk + a, n, step, wd, b1, b2, bc2s, eps))
        else:
            bad = not (fbp_adam_x_f64(p + a, g + a, at(st.exp_avg, a, p),
                                      at(st.exp_avg_sq, a, p), bk + a, n, step, wd, b1, b2,
                                      bc2s, eps, l1, cv, gs, keep) if x else
                       fbp_adam_f64(p + a, g + a, at(st.exp_avg, a, p), at(st.exp_avg_sq, a, p),
                                    bk + a, n, step, wd, b1, b2, bc2s, eps))
    else:  # RMSPROP
        if floating is float:
            bad = not (fbp_rmsprop_x_f32(p + a, g + a, at(st.square_avg, a, p), buf, bk + a, n,
                                         lr, wd, alpha, eps, mom, l1, cv, gs, keep) if x else
                       fbp_rmsprop_f32(p + a, g + a, at(st.square_avg, a, p), buf, bk + a, n,
                                       lr, wd, alpha, eps, mom))
        else:
            bad = not (fbp_rmsprop_x_f64(p + a, g + a, at(st.square_avg, a, p), buf, bk + a, n,
                                         lr, wd, alpha, eps, mom, l1, cv, gs, keep) if x else
                       fbp_rmsprop_f64(p + a, g + a, at(st.square_avg, a, p), buf, bk + a, n,
                                       lr, wd, alpha, eps, mom))
    return bad


cdef void _rprop_block(const OptParams* op, OptBuffers* st, long long t, int loss_increased,
                       floating* p, const floating* g, Py_ssize_t a, Py_ssize_t z,
                       const GradOpts* go) noexcept nogil:
    """Rprop (iRprop-, or iRprop+ with op.backtrack) on p[a:z]."""
    cdef Py_ssize_t i
    cdef bint x = not plain(op, go)
    cdef floating wd = go.weight_decay, gi, step, s, dw
    cdef floating emin = op.eta_minus, eplus = op.eta_plus
    cdef floating smin = op.step_min, smax = op.step_max
    cdef floating* prev = <floating*>st.prev_grad
    cdef floating* size = <floating*>st.step_size
    cdef floating* last = <floating*>st.prev_step
    for i in range(a, z):
        gi = (xgrad(g[i], p[i], go) if x else g[i]) + wd * p[i]
        if t == 0:
            size[i] = op.lr
        s = sign(gi * prev[i])
        if s > 0:
            step = size[i] * eplus
            size[i] = step if step < smax else smax
        elif s < 0:
            step = size[i] * emin
            size[i] = step if step > smin else smin
            if op.backtrack and loss_increased:
                p[i] = p[i] - last[i]
            last[i] = 0
            prev[i] = 0
            continue
        dw = -sign(gi) * size[i]
        p[i] = p[i] + dw
        last[i] = dw
        prev[i] = gi


cdef void _quickprop_block(const OptParams* op, OptBuffers* st, floating* p,
                           const floating* g, Py_ssize_t a, Py_ssize_t z,
                           const GradOpts* go) noexcept nogil:
    """Quickprop (Fahlman 1988) on p[a:z]; slope S = -(dE/dw + weight_decay * w)."""
    cdef Py_ssize_t i
    cdef bint x = not plain(op, go)
    cdef floating lr = op.lr, wd = go.weight_decay, mu = op.max_growth
    cdef floating s, prev, dw, sf = mu / (1 + mu)
    cdef floating* last = <floating*>st.prev_step
    cdef floating* slope = <floating*>st.prev_slope
    for i in range(a, z):
        s = -((xgrad(g[i], p[i], go) if x else g[i]) + wd * p[i])
        prev = last[i]
        dw = 0
        if prev > 0:
            if s > 0:
                dw = lr * s
            if s > sf * slope[i]:
                dw = dw + mu * prev
            elif slope[i] != s:
                dw = dw + prev * s / (slope[i] - s)
        elif prev < 0:
            if s < 0:
                dw = lr * s
            if s < sf * slope[i]:
                dw = dw + mu * prev
            elif slope[i] != s:
                dw = dw + prev * s / (slope[i] - s)
        else:
            dw = lr * s
        last[i] = dw
        slope[i] = s
        p[i] = p[i] + dw


cdef inline int _checked_block(const OptParams* op, OptBuffers* st, long long t,
                               int loss_increased, floating* p, const floating* g,
                               floating* backup, Py_ssize_t a, Py_ssize_t z,
                               const GradOpts* go) noexcept nogil:
    """Back up, update and check p[a:z]; 1 if a new value is not finite."""
    if op.kind == RPROP or op.kind == QUICKPROP:
        memcpy(backup + a, p + a, (z - a) * sizeof(floating))
        if op.kind == RPROP:
            _rprop_block(op, st, t, loss_increased, p, g, a, z, go)
        else:
            _quickprop_block(op, st, p, g, a, z, go)
        return not all_finite(p + a, z - a, 1)
    return _fused_block(op, st, t, p, g, backup, a, z, go)


cdef int optimizer_step(const OptParams* op, OptBuffers* st, long long t, int loss_increased,
                        floating* p, const floating* g, floating* backup, Py_ssize_t a,
                        Py_ssize_t z, int nt, const GradOpts* go) noexcept nogil:
    """One update of p[a:z] from the gradient g[a:z] (all arrays indexed like the flat
    buffer); t: steps taken before this one; loss_increased: the batch loss rose (iRprop+);
    go: the range's decay, L1 penalty and clipping (GradOpts).

    Each block of p is copied to ``backup`` first (while it is in cache) and checked after
    its update. Returns 1 if every new parameter is finite; else 0 and the caller restores
    p from backup (the optimizer state then holds the failed step).
    """
    cdef Py_ssize_t c, nchunks, n = z - a
    cdef int threads = run_threads(nt) if n >= 4 * PARALLEL_MIN else 1
    cdef int bad = 0
    nchunks = (n + CHUNK - 1) // CHUNK
    if threads > 1 and nchunks > 1:
        for c in prange(nchunks, num_threads=threads, schedule="static"):
            bad += _checked_block(op, st, t, loss_increased, p, g, backup, a + c * CHUNK,
                                  min(z, a + (c + 1) * CHUNK), go)
    else:
        bad = _checked_block(op, st, t, loss_increased, p, g, backup, a, z, go)
    return bad == 0


# ---- SGD momentum with the gradient already added into the buffer -------------------------

cdef int momentum_step(const OptParams* op, floating* p, floating* buf, Py_ssize_t n,
                       int scale_next, floating* bk, int nt, double* pmax,
                       double* bmax, double wd) noexcept nogil:
    """SGD momentum update when the products already left buf = mu*buf + g.

    d = buf + wd*p (wd: this range's decay); p -= lr*d; buf = mu*d if scale_next (the next step's products then add
    with beta=1, saving a pass) else d. With bk given, the old p is copied there in the same
    pass. Raises pmax[0], bmax[0] to the largest new |p| and |buf| (inf if not finite).
    Returns 1 if every new p is finite.
    """
    cdef Py_ssize_t c, nchunks
    cdef int t = min(run_threads(nt), 64) if n >= 4 * PARALLEL_MIN else 1
    cdef int bad = 0, tid
    cdef double pp[64]
    cdef double bb[64]
    nchunks = (n + CHUNK - 1) // CHUNK
    if t > 1 and nchunks > 1:
        for tid in range(t):
            pp[tid] = 0
            bb[tid] = 0
        for c in prange(nchunks, num_threads=t, schedule="static"):
            tid = threadid()
            bad += _momentum_block(op, p, buf, scale_next, bk, c * CHUNK,
                                   min(n, (c + 1) * CHUNK), &pp[tid], &bb[tid], wd)
        for tid in range(t):
            pmax[0] = max(pmax[0], pp[tid])
            bmax[0] = max(bmax[0], bb[tid])
    else:
        bad = _momentum_block(op, p, buf, scale_next, bk, 0, n, pmax, bmax, wd)
    return bad == 0


cdef inline int _momentum_block(const OptParams* op, floating* p, floating* buf,
                                int scale_next, floating* bk, Py_ssize_t a, Py_ssize_t z,
                                double* pmax, double* bmax, double decay) noexcept nogil:
    cdef floating lr = op.lr, wd = <floating>decay
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


cdef void divide_buffer(floating* buf, Py_ssize_t n, double divisor, int nt) noexcept nogil:
    """buf /= divisor (a momentum buffer held as mu*buf back to buf)."""
    cdef Py_ssize_t i
    cdef floating d = <floating>divisor
    cdef int t = run_threads(nt) if n >= 4 * PARALLEL_MIN else 1
    for i in prange(n, num_threads=t, schedule="static"):
        buf[i] = buf[i] / d


cdef double grad_sumsq(const floating* p, const floating* g, Py_ssize_t n, double l1,
                       double clip_value, int nt) noexcept nogil:
    """sum of clamp(g + l1*sign(p), -clip_value, clip_value)^2 over n entries, in float64:
    up to 64 parts split by nt (not by the threads that run them) summed in order, so the
    result depends on nt only."""
    cdef int t, parts = min(nt, 64) if n >= 4 * PARALLEL_MIN else 1
    cdef double part[64]
    cdef double total = 0
    if parts <= 1:
        return _sumsq_block(p, g, 0, n, l1, clip_value)
    for t in prange(parts, num_threads=run_threads(parts), schedule="static"):
        part[t] = _sumsq_block(p, g, n * t // parts, n * (t + 1) // parts, l1, clip_value)
    for t in range(parts):
        total += part[t]
    return total


cdef inline double _sumsq_block(const floating* p, const floating* g, Py_ssize_t a,
                                Py_ssize_t z, double l1, double cv) noexcept nogil:
    if floating is float:
        return fbp_xgrad_sumsq_f32(p + a, g + a, z - a, <float>l1, <float>cv)
    else:
        return fbp_xgrad_sumsq_f64(p + a, g + a, z - a, l1, cv)


cdef void max_norm_columns(floating* w, Py_ssize_t rows, Py_ssize_t cols, double c,
                           floating* scratch) noexcept nogil:
    """Each column of w (rows x cols) with a norm above c rescaled to norm c (scratch:
    cols entries)."""
    if floating is float:
        fbp_max_norm_f32(w, rows, cols, <float>c, scratch)
    else:
        fbp_max_norm_f64(w, rows, cols, c, scratch)
