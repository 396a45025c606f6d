from cython cimport floating

cpdef enum Opt:
    SGD = 0
    ADAM = 1
    RMSPROP = 2
    RPROP = 3
    QUICKPROP = 4
    ADAMW = 5


cdef struct OptParams:
    int kind
    double lr, weight_decay
    double momentum                  # SGD, RMSprop
    int nesterov                     # SGD
    int classic_momentum             # SGD: v = mu*v - lr*g, w += v (scikit-learn's form)
    double beta1, beta2              # Adam
    double eps                       # Adam, RMSprop
    int eps_before_bias_correction   # Adam: eps added to sqrt(v) before bias correction
    double alpha                     # RMSprop: smoothing of the squared gradient
    double eta_minus, eta_plus       # Rprop: step size factors
    double step_min, step_max        # Rprop: step size bounds
    int backtrack                    # Rprop: iRprop+ (undo a step that raised the loss)
    double max_growth                # Quickprop: mu, the largest step growth factor


cdef struct OptBuffers:
    # per-parameter state, one entry per parameter; NULL where the optimizer keeps none
    void* momentum_buffer            # SGD (momentum), RMSprop (momentum)
    void* exp_avg                    # Adam: m
    void* exp_avg_sq                 # Adam: v
    void* square_avg                 # RMSprop
    void* prev_grad                  # Rprop: the last gradient
    void* step_size                  # Rprop: per-weight step sizes
    void* prev_step                  # Rprop (iRprop+), Quickprop: the last weight change
    void* prev_slope                 # Quickprop: the last slope -dE/dw


cdef struct GradOpts:
    # what an update does with the gradient of its range before the optimizer's rule
    double weight_decay              # coupled: + wd * w; AdamW: its decoupled w *= 1 - lr*wd
    double l1                        # + l1 * sign(w)
    double clip_value                # then clamped to [-clip_value, clip_value] (inf: none)
    double scale                     # then times scale (clipping by the global norm; 1: none)


cdef class OptimizerConfig:
    cdef OptParams params


cdef class OptimizerState:
    cdef OptBuffers buf
    cdef readonly dict buffers
    cdef readonly object dtype
    cdef readonly Py_ssize_t size
    cdef public long long t             # steps taken
    cdef public double last_loss        # the last batch's mean loss (iRprop+), inf at first


cdef int accumulates_momentum(const OptParams* op) noexcept nogil

cdef int optimizer_step(const OptParams* op, OptBuffers* st, long long t, int loss_increased,
                        floating* p, const floating* g, floating* backup, Py_ssize_t a,
                        Py_ssize_t z, int nt, const GradOpts* go) noexcept nogil

cdef int momentum_step(const OptParams* op, floating* p, floating* buf, Py_ssize_t n,
                       int scale_next, floating* bk, int nt, double* pmax,
                       double* bmax, double wd) noexcept nogil

cdef double grad_sumsq(const floating* p, const floating* g, Py_ssize_t n, double l1,
                       double clip_value, int nt) noexcept nogil

cdef void max_norm_columns(floating* w, Py_ssize_t rows, Py_ssize_t cols, double c,
                           floating* scratch) noexcept nogil

cdef void divide_buffer(floating* buf, Py_ssize_t n, double divisor, int nt) noexcept nogil
