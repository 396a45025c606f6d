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
