from cython cimport floating

cpdef enum Act:
    IDENTITY = 0
    STEP = 1
    SIGMOID = 2
    TANH = 3
    LECUN_TANH = 4
    RELU = 5
    LEAKY_RELU = 6
    ELU = 7
    SOFTPLUS = 8
    SOFTSIGN = 9
    SILU = 10
    GELU = 11
    SOFTMAX = 12

cpdef enum Loss:
    MSE = 0
    CROSS_ENTROPY = 1
    BINARY_CROSS_ENTROPY = 2

cdef enum:
    PARALLEL_MIN = 32768          # elements below which elementwise loops stay serial

cdef struct Dropout:
    # one layer's dropout in one step: entry (row0 + r, c) of a (rows x ld) matrix is kept
    # when its hash under the key (ka, kb) is at least p24 (rate p = p24 / 2^24)
    double rate
    double scale              # 1 / (1 - rate)
    unsigned int ka, kb, p24
    Py_ssize_t row0


cdef void dropout_block(const floating* a, floating* d, unsigned char* m, Py_ssize_t ld,
                        Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                        const Dropout* dr) noexcept nogil
cdef void mask_block(floating* g, const unsigned char* m, Py_ssize_t ld, Py_ssize_t r0,
                     Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1, double scale) noexcept nogil
cdef void bn_forward(floating* pre, const floating* b, const floating* gamma,
                     const floating* beta, floating* xhat, double* mean, double* var,
                     double* istd, Py_ssize_t n, Py_ssize_t k, double eps,
                     const double* run_mean, const double* run_var, int training,
                     int nt) noexcept nogil
cdef void bn_backward(floating* g, const floating* xhat, const floating* gamma,
                      const double* istd, Py_ssize_t n, Py_ssize_t k, floating* dgamma,
                      floating* dbeta, floating beta_acc, int training, int nt) noexcept nogil

cdef int needs_pre(int act) noexcept nogil
cdef int run_threads(int want) noexcept nogil
cdef int thread_cap() noexcept nogil
cdef void set_thread_cap(int n) noexcept nogil
cdef double act_bound(int act) noexcept nogil
cdef double slope_bound(int act) noexcept nogil

cdef void bias_act_forward(int act, floating* pre, floating* out, const floating* b,
                           Py_ssize_t n, Py_ssize_t k, int nt) noexcept nogil

cdef void act_backward(int act, floating* g, const floating* out, const floating* pre,
                       Py_ssize_t n, Py_ssize_t k, int nt) noexcept nogil

cdef int row_coupled(int act) noexcept nogil

cdef void block_forward(int act, floating* pre, floating* out, const floating* b,
                        Py_ssize_t ld, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                        Py_ssize_t c1) noexcept nogil

cdef void block_backward(int act, floating* g, const floating* out, const floating* pre,
                         Py_ssize_t ld, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0,
                         Py_ssize_t c1) noexcept nogil

cdef double loss_and_output_grad(int loss, int act, const floating* out, const floating* pre,
                                 const floating* T, const long long* labels,
                                 const floating* sw, Py_ssize_t n, Py_ssize_t k, floating scale,
                                 floating* g, int nt) noexcept nogil

cdef void column_sums(const floating* g, Py_ssize_t n, Py_ssize_t k, floating* out,
                      floating beta, int nt) noexcept nogil

cdef int all_finite(const floating* x, Py_ssize_t n, int nt) noexcept nogil

cdef double maxabs(const floating* x, Py_ssize_t m, Py_ssize_t n, Py_ssize_t ld) noexcept nogil

cdef double maxabs_par(const floating* x, Py_ssize_t n, int nt) noexcept nogil

cdef double count_correct(int loss, const floating* out, const floating* T,
                          const long long* labels, Py_ssize_t n, Py_ssize_t k) noexcept nogil
