"""The compiled BP step: forward, loss, backward and update, batch after batch, nogil.

A network is described by a Plan (layer sizes, parameter offsets into the flat
buffer, activation codes); the buffers for a batch capacity live in a Workspace.
Python calls in once per chunk of batches; nothing inside allocates.
"""
import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.math cimport isfinite, fabs

from ._blas cimport gemm_as, small_gemm, NoTrans, Trans, BLAS_Trans
from ._kernels cimport (bias_act_forward, act_backward, loss_and_output_grad, column_sums,
                        all_finite, maxabs, maxabs_par, needs_pre, count_correct, run_threads,
                        optimizer_step, OptParams, accumulates_momentum, momentum_step,
                        row_coupled, block_forward, block_backward, TANH, SIGMOID,
                        SOFTSIGN, STEP, SOFTMAX, LECUN_TANH, SILU, GELU)

cnp.import_array()

cdef extern from *:
    """
    #if defined(_OPENMP)
    #include <omp.h>
    static int fastbp_openmp_enabled(void) { return 1; }
    static int fastbp_omp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int fastbp_openmp_enabled(void) { return 0; }
    static int fastbp_omp_max_threads(void) { return 1; }
    #endif
    /* ask for the first 256 bytes of a row (the hardware prefetcher streams the rest) */
    static inline void fastbp_prefetch_row(const void *p, Py_ssize_t bytes) {
    #if defined(__GNUC__) || defined(__clang__)
        const char *c = (const char *)p;
        for (Py_ssize_t o = 0; o < bytes && o < 256; o += 64) __builtin_prefetch(c + o, 0, 3);
    #endif
    }
    """
    int fastbp_openmp_enabled() noexcept nogil
    int fastbp_omp_max_threads() noexcept nogil
    void fastbp_prefetch_row(const void* p, Py_ssize_t nbytes) noexcept nogil


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(fastbp_openmp_enabled())


def omp_max_threads():
    return fastbp_omp_max_threads()


cdef struct Layout:
    int L
    Py_ssize_t* sizes     # L + 1
    Py_ssize_t* w_off     # L
    Py_ssize_t* b_off     # L
    int* act              # L
    Py_ssize_t maxw       # widest non-input layer


cdef class Plan:
    """Layer sizes, flat-buffer offsets and activation codes of one network."""
    cdef Layout lay
    cdef readonly Py_ssize_t n_params

    def __cinit__(self, sizes, acts):
        cdef int i, L = len(sizes) - 1
        self.lay.L = L
        self.lay.sizes = <Py_ssize_t*>malloc((L + 1) * sizeof(Py_ssize_t))
        self.lay.w_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
        self.lay.b_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
        self.lay.act = <int*>malloc(L * sizeof(int))
        if not (self.lay.sizes and self.lay.w_off and self.lay.b_off and self.lay.act):
            raise MemoryError()
        cdef Py_ssize_t off = 0
        self.lay.maxw = 0
        for i in range(L + 1):
            self.lay.sizes[i] = sizes[i]
        for i in range(L):
            self.lay.act[i] = acts[i]
            self.lay.w_off[i] = off
            off += sizes[i] * sizes[i + 1]
            self.lay.b_off[i] = off
            off += sizes[i + 1]
            if sizes[i + 1] > self.lay.maxw:
                self.lay.maxw = sizes[i + 1]
        self.n_params = off

    def __dealloc__(self):
        free(self.lay.sizes)
        free(self.lay.w_off)
        free(self.lay.b_off)
        free(self.lay.act)


cdef struct Bufs:
    void** A          # A[i]: output of layer i-1 (A[0] unused: the batch input)
    void** P          # P[i]: pre-activation of layer i-1, or NULL
    void** G          # G[i]: dE/d(pre-activation of layer i), i < L: two buffers, alternating
    void* X           # gathered batch inputs
    void* T           # gathered batch targets
    void* SW          # gathered batch sample weights
    long long* lab    # gathered batch labels
    Py_ssize_t cap    # batch capacity


cdef class Workspace:
    """Scratch buffers for batches of up to `capacity` rows (one per thread of use).

    With ``shards`` > 1 it also holds, per batch shard, a Bufs whose pointers address that
    shard's rows of the same buffers (set per batch by ``point_shard``). A ``forward_only``
    workspace (predict) keeps no gradients and only two hidden outputs, alternating.
    """
    cdef Bufs b
    cdef Bufs* sh
    cdef readonly int shards
    cdef readonly bint forward_only
    cdef readonly object buf, labels, dtype
    cdef readonly Py_ssize_t capacity

    def __cinit__(self, Plan plan, Py_ssize_t capacity, dtype, bint gather=False, int shards=1,
                  bint forward_only=False):
        cdef Layout* lay = &plan.lay
        cdef int i, L = lay.L
        cdef Py_ssize_t total = 0, off = 0, wpre = lay.sizes[L]
        cdef char* base
        cdef Py_ssize_t item
        self.forward_only = forward_only
        self.shards = max(1, shards)
        self.sh = <Bufs*>calloc(self.shards, sizeof(Bufs))
        if not self.sh:
            raise MemoryError()
        for i in range(self.shards):
            self.sh[i].A = <void**>calloc(L + 1, sizeof(void*))
            self.sh[i].P = <void**>calloc(L + 1, sizeof(void*))
            self.sh[i].G = <void**>calloc(L, sizeof(void*))
            if not (self.sh[i].A and self.sh[i].P and self.sh[i].G):
                raise MemoryError()
        self.capacity = capacity
        self.dtype = np.dtype(dtype)
        item = self.dtype.itemsize
        self.b.cap = capacity
        self.b.A = <void**>calloc(L + 1, sizeof(void*))
        self.b.P = <void**>calloc(L + 1, sizeof(void*))
        self.b.G = <void**>calloc(L, sizeof(void*))
        if not (self.b.A and self.b.P and self.b.G):
            raise MemoryError()
        self.labels = np.zeros(1, dtype=np.int64)
        self.b.lab = <long long*>cnp.PyArray_DATA(self.labels)
        self.b.X = self.b.T = self.b.SW = NULL
        if forward_only:
            # hidden outputs in two buffers, alternating; one pre-activation buffer for the
            # layers that keep theirs (SiLU, GELU) and the output layer; the output itself
            # goes to the caller's array (forward with out)
            for i in range(1, L):
                if needs_pre(lay.act[i - 1]) and lay.sizes[i] > wpre:
                    wpre = lay.sizes[i]
            self.buf = np.zeros(2 * capacity * lay.maxw + capacity * wpre, dtype=self.dtype)
            base = <char*>cnp.PyArray_DATA(self.buf)
            for i in range(1, L):
                self.b.A[i] = base + (i - 1) % 2 * capacity * lay.maxw * item
                if needs_pre(lay.act[i - 1]):
                    self.b.P[i] = base + 2 * capacity * lay.maxw * item
            self.b.P[L] = base + 2 * capacity * lay.maxw * item
            return
        for i in range(1, L + 1):
            total += capacity * lay.sizes[i]
            if i == L or needs_pre(lay.act[i - 1]):
                total += capacity * lay.sizes[i]
        total += 2 * capacity * lay.maxw
        if gather:
            total += capacity * (lay.sizes[0] + lay.sizes[L] + 1)
        self.buf = np.zeros(total, dtype=self.dtype)
        self.labels = np.zeros(capacity if gather else 1, dtype=np.int64)
        base = <char*>cnp.PyArray_DATA(self.buf)
        for i in range(1, L + 1):
            self.b.A[i] = base + off * item
            off += capacity * lay.sizes[i]
            if i == L or needs_pre(lay.act[i - 1]):
                self.b.P[i] = base + off * item
                off += capacity * lay.sizes[i]
        for i in range(L):       # the backward only needs G[i] and G[i - 1] at once
            self.b.G[i] = base + (off + (L - 1 - i) % 2 * capacity * lay.maxw) * item
        off += 2 * capacity * lay.maxw
        if gather:
            self.b.X = base + off * item
            off += capacity * lay.sizes[0]
            self.b.T = base + off * item
            off += capacity * lay.sizes[L]
            self.b.SW = base + off * item
        self.b.lab = <long long*>cnp.PyArray_DATA(self.labels)

    def __dealloc__(self):
        cdef int i
        free(self.b.A)
        free(self.b.P)
        free(self.b.G)
        if self.sh:
            for i in range(self.shards):
                free(self.sh[i].A)
                free(self.sh[i].P)
                free(self.sh[i].G)
            free(self.sh)


cdef void point_shard(Layout* lay, Bufs* base, Bufs* out, Py_ssize_t r0,
                      floating* like) noexcept nogil:
    """Point ``out`` at rows r0.. of every buffer of ``base`` (like: only fixes the dtype)."""
    cdef int i
    for i in range(1, lay.L + 1):
        out.A[i] = (<floating*>base.A[i]) + r0 * lay.sizes[i]
        out.P[i] = (<floating*>base.P[i]) + r0 * lay.sizes[i] if base.P[i] != NULL else NULL
        out.G[i - 1] = (<floating*>base.G[i - 1]) + r0 * lay.maxw   # whatever the width


# ---- products: one thread pool ----------------------------------------------------------
# The BLAS runs single-threaded inside fastbp (see _config.blas_single_threaded); large
# products are split into row or column blocks, one per OpenMP thread, so the kernels and
# the BLAS never compete with two spinning thread pools.

cdef double PAR_GEMM_FLOPS = 4.0e6    # below this a product runs on one thread
cdef Py_ssize_t MIN_BLOCK = 16        # rows/columns per thread at least


cdef enum Epilogue:
    EP_NONE = 0
    EP_FORWARD = 1     # C is the pre-activation: C += bias, out = f(C)
    EP_BACKWARD = 2    # C is a gradient: C *= f'(pre) (from out = f(pre) where possible)


cdef inline void pgemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, floating alpha,
                       const floating* A, int lda, const floating* B, int ldb,
                       floating beta, floating* C, int ldc, int nt) noexcept nogil:
    pgemm_ep(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, nt, EP_NONE, 0, NULL,
             NULL, NULL, NULL)


cdef void pgemm_ep(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, floating alpha,
                   const floating* A, int lda, const floating* B, int ldb,
                   floating beta, floating* C, int ldc, int nt, int ep, int act,
                   const floating* bias, floating* out, const floating* pre,
                   double* omax) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C (row-major), split over up to nt threads, then
    the epilogue ep on C (ldc == n), each thread on its own block while it is in cache.
    With omax (EP_FORWARD only), also omax[0] := max |out| (inf if some entry is not finite).

    Each thread re-reads (and BLAS re-packs) the whole operand that is not split, so the
    split goes across the larger one: the rows of C (and of op(A)) when op(A) is larger,
    else the columns of C (and of op(B)).
    """
    cdef int t, nthr, by_rows = <Py_ssize_t>m * k > <Py_ssize_t>k * n
    cdef int late = 0, small = small_gemm(ta, tb, m, n, k, C)
    cdef Py_ssize_t dim = m if by_rows else n, i0, i1
    cdef double part[256]
    cdef double best = 0
    nthr = min(nt, 256)
    if nthr > dim // MIN_BLOCK:
        nthr = <int>(dim // MIN_BLOCK)
    if nthr <= 1 or 2.0 * m * n * k < PAR_GEMM_FLOPS:
        gemm_as(small, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        late = ep
    else:
        if ep != EP_NONE and not by_rows and row_coupled(act):
            late = ep
        for t in prange(nthr, num_threads=run_threads(nthr), schedule="static"):
            i0 = dim * t // nthr
            i1 = dim * (t + 1) // nthr
            if by_rows:
                gemm_as(small, ta, tb, <int>(i1 - i0), n, k, alpha,
                     A + (i0 * lda if ta == NoTrans else i0), lda, B, ldb, beta, C + i0 * ldc,
                     ldc)
            else:
                gemm_as(small, ta, tb, m, <int>(i1 - i0), k, alpha, A, lda,
                     B + (i0 if tb == NoTrans else i0 * ldb), ldb, beta, C + i0, ldc)
            if late == EP_NONE:
                if ep == EP_FORWARD:
                    block_forward(act, C, out, bias, ldc, i0 if by_rows else 0,
                                  i1 if by_rows else m, 0 if by_rows else i0,
                                  n if by_rows else i1)
                elif ep == EP_BACKWARD:
                    block_backward(act, C, out, pre, ldc, i0 if by_rows else 0,
                                   i1 if by_rows else m, 0 if by_rows else i0,
                                   n if by_rows else i1)
                if omax != NULL:
                    if by_rows:
                        part[t] = maxabs(out + i0 * ldc, i1 - i0, n, ldc)
                    else:
                        part[t] = maxabs(out + i0, m, i1 - i0, ldc)
        if late == EP_NONE and omax != NULL:
            for t in range(nthr):
                best = max(best, part[t])
            omax[0] = best
    if late == EP_FORWARD:
        bias_act_forward(act, C, out, bias, m, n, nt)
    elif late == EP_BACKWARD:
        act_backward(act, C, out, pre, m, n, nt)
    if late != EP_NONE and omax != NULL:
        omax[0] = maxabs(out, m, n, ldc)


# ---- the step ---------------------------------------------------------------------------

cdef struct StepCtx:
    Layout* lay
    Bufs* w
    Bufs* sh
    int S                     # batch shards (1 = none)
    const void* X
    const void* T
    const long long* labels
    const void* sw
    const long long* perm
    Py_ssize_t n, d, k, batch_size, P
    int use_labels, use_perm, use_sw, loss, count_acc, nt
    double l2
    void* grads               # the gradient target: the momentum buffer when `direct`
    void* shard_grads
    void* s1
    void* s2
    void* s3
    void* backup              # the parameters before the step, where it makes a backup
    OptParams op
    double op_prev_loss
    int direct                # SGD momentum: products add straight into s1 (= grads)
    int scaled                # direct: s1 already holds mu*buf (next products use beta=1)
    int checked               # direct, unsharded: back up only steps that could overflow
    double pmax, bmax         # direct: max|params|, max|s1| (pmax < 0: not known)
    double pnew, bnew         # direct: the same, of the values this step's updates wrote
    double* zmax              # checked: max |input| of each layer in this step (bounds)
    double xmax               # >= max |X| over all rows (carry[3]), or -1: measure per batch
    double gout               # checked: max |dE/d(pre-activation)| of the output layer


cdef void forward(Layout* lay, Bufs* w, const floating* params, const floating* X,
                  Py_ssize_t nb, floating* out, int nt, double* zmax) noexcept nogil:
    """Layer by layer: pre = z @ W + b, z = f(pre); the last layer writes to `out` if given.
    With zmax, zmax[i] >= max |input of layer i| for the hidden layers i >= 1."""
    cdef int i, L = lay.L, track
    cdef Py_ssize_t nin, nout
    cdef const floating* src
    cdef floating* dst
    cdef floating* pre
    for i in range(L):
        nin = lay.sizes[i]
        nout = lay.sizes[i + 1]
        src = X if i == 0 else <floating*>w.A[i]
        dst = out if (i == L - 1 and out != NULL) else <floating*>w.A[i + 1]
        pre = <floating*>w.P[i + 1] if w.P[i + 1] != NULL else dst
        track = zmax != NULL and i < L - 1
        if track and act_bound(lay.act[i]) >= 0:
            zmax[i + 1] = act_bound(lay.act[i])
            track = 0
        pgemm_ep(NoTrans, NoTrans, <int>nb, <int>nout, <int>nin, <floating>1, src, <int>nin,
                 params + lay.w_off[i], <int>nout, <floating>0, pre, <int>nout, nt,
                 EP_FORWARD, lay.act[i], params + lay.b_off[i], dst, NULL,
                 zmax + i + 1 if track else NULL)


cdef int update_range(StepCtx* c, floating* params, floating* g, Py_ssize_t a,
                      Py_ssize_t z, floating* bk, int last) noexcept nogil:
    """The optimizer's update of params[a:z] (one layer, or all); 1 if all finite.
    Direct: the old values are copied to bk if given; the others always back up."""
    if c.direct:
        return momentum_step(&c.op, params + a, g + a, z - a, not last,
                             bk + a if bk != NULL else NULL, c.nt, &c.pnew, &c.bnew)
    return optimizer_step(&c.op, params + a, g + a, <floating*>c.s1 + a,
                          <floating*>c.s2 + a, <floating*>c.s3 + a, <floating*>c.backup + a,
                          z - a, c.nt)


cdef double OVERFLOW_MARGIN = 1048576.0   # 2**20: the bounds below stay this far from the max


cdef double act_bound(int act) noexcept nogil:
    """max |f(x)| over all x, or -1 if f is unbounded."""
    if act == TANH or act == SIGMOID or act == SOFTSIGN or act == STEP or act == SOFTMAX:
        return 1
    if act == LECUN_TANH:
        return 1.7159
    return -1


cdef double slope_bound(int act) noexcept nogil:
    """A bound on |f'| as the backward pass computes it (softmax: its Jacobian-vector
    product is at most twice the largest incoming gradient)."""
    if act == SIGMOID:
        return 0.26
    if act == LECUN_TANH:
        return 1.15
    if act == SILU or act == GELU:
        return 1.2
    if act == SOFTMAX:
        return 2
    return 1


cdef int may_overflow(StepCtx* c, floating* params, Py_ssize_t nb, floating beta,
                      floating l2coef) noexcept nogil:
    """1 unless this direct step's products and update provably stay finite.

    With Z_i >= max|input of layer i| and G_i >= max|dE/d(pre-activation) of layer i|,
    every entry of beta*buf + dW (and db) is at most beta*B + nb*max(Z_i, 1)*G_i + l2coef*Pm,
    where Pm = max|params| and B = max|buf|; then d = buf + wd*p and p - lr*d are bounded
    too. Every sum of the products is bounded by its sum of absolute values, so a bound
    below max/2**20 rules out overflow whatever the order of summation. G of the output
    layer is measured; below it G_{i-1} <= n_out(i) * Pm * max|f'| * G_i. Pm and B are
    measured once per call, then kept exact by the update passes.
    """
    cdef int i
    cdef double gb = 0, g = c.gout, v, d
    cdef double wd = fabs(c.op.weight_decay), l2 = fabs(<double>l2coef)
    cdef Layout* lay = c.lay
    measure_bounds(c, params)
    for i in range(lay.L - 1, -1, -1):
        v = nb * max(c.zmax[i], 1.0) * g + l2 * c.pmax
        if not v <= gb:          # also NaN
            gb = v
        if i > 0:
            g = g * lay.sizes[i + 1] * c.pmax * slope_bound(lay.act[i - 1])
    d = gb + wd * c.pmax + (beta * c.bmax if beta != 0 else 0)
    return beyond_limit(c, params, d)


cdef int update_may_overflow(StepCtx* c, floating* params, double gsum,
                             double l2coef) noexcept nogil:
    """1 unless the momentum update of the summed gradient (sharded step: s1 holds
    mu*buf + g, max |s1| <= gsum) provably stays finite: d = s1 + (l2coef + wd) * p."""
    measure_bounds(c, params)
    return beyond_limit(c, params,
                        gsum + (fabs(l2coef) + fabs(c.op.weight_decay)) * c.pmax)


cdef inline void measure_bounds(StepCtx* c, floating* params) noexcept nogil:
    """max|params| and max|s1| into c.pmax, c.bmax, unless known (c.pmax >= 0)."""
    if c.pmax < 0:
        c.pmax = maxabs_par(params, c.P, c.nt)
        c.bmax = maxabs_par(<floating*>c.s1, c.P, c.nt)


cdef inline int beyond_limit(StepCtx* c, floating* like, double d) noexcept nogil:
    """0 if an update direction bounded by d, and p - lr*d, stay max/2**20 below the
    largest float (like: only fixes the dtype)."""
    cdef double lim
    if floating is float:
        lim = 3.4028234663852886e38 / OVERFLOW_MARGIN
    else:
        lim = 1.7976931348623157e308 / OVERFLOW_MARGIN
    return not (d < lim and c.pmax + fabs(c.op.lr) * d < lim)


cdef inline void input_grad(Layout* lay, Bufs* w, const floating* params, Py_ssize_t nb,
                            int i, int nt) noexcept nogil:
    """G[i-1] = (G[i] W_i^T) * f'(layer i-1's pre-activation), for i >= 1."""
    cdef Py_ssize_t nin = lay.sizes[i], nout = lay.sizes[i + 1]
    pgemm_ep(NoTrans, Trans, <int>nb, <int>nin, <int>nout, <floating>1, <floating*>w.G[i],
             <int>nout, params + lay.w_off[i], <int>nout, <floating>0, <floating*>w.G[i - 1],
             <int>nin, nt, EP_BACKWARD, lay.act[i - 1], NULL, <floating*>w.A[i],
             <floating*>w.P[i], NULL)


cdef inline int layer_grads(Layout* lay, Bufs* w, floating* params, floating* grads,
                            const floating* X, Py_ssize_t nb, floating beta, int nt, int i,
                            StepCtx* c, floating l2coef, floating* bk, int last) noexcept nogil:
    """dW_i = z^T G[i], db_i = sum G[i] (beta = 1 accumulates into grads); with a training
    step c, + l2coef * W_i, then the layer's update. Returns 1 if it left all finite."""
    cdef Py_ssize_t nin = lay.sizes[i], nout = lay.sizes[i + 1], j
    cdef const floating* src = X if i == 0 else <floating*>w.A[i]
    cdef floating* dw = grads + lay.w_off[i]
    pgemm(Trans, NoTrans, <int>nin, <int>nout, <int>nb, <floating>1, src, <int>nin,
          <floating*>w.G[i], <int>nout, beta, dw, <int>nout, nt)
    column_sums(<floating*>w.G[i], nb, nout, grads + lay.b_off[i], beta, nt)
    if c == NULL:
        return 1
    if l2coef != 0:
        for j in range(nin * nout):
            dw[j] = dw[j] + l2coef * params[lay.w_off[i] + j]
    return update_range(c, params, grads, lay.w_off[i], lay.b_off[i] + nout, bk, last)


cdef int backward(Layout* lay, Bufs* w, floating* params, floating* grads,
                  const floating* X, Py_ssize_t nb, floating* dX, floating beta, int nt,
                  StepCtx* c, floating l2coef, int last) noexcept nogil:
    """From G[L-1] = dE/d(pre of the output), layer by layer down: the input gradient
    g_{i-1} = (g_i W_i^T) * f'(z_i) (and dX, the network's, only if given), dW = z^T g and
    db = sum g (beta = 1 accumulates into grads).

    With a training step c, each layer also gets l2coef * W added to dW and is updated
    (update_range) as soon as its dW and db are known, while they are still in cache; its
    input gradient comes first, as it needs the old W. A direct unsharded step is backed up
    only if may_overflow cannot rule out an overflow. Returns 1 if every updated parameter
    is finite (-1: not, and no backup was made; cannot happen if may_overflow is right).
    """
    cdef int i, L = lay.L, ok = 1
    cdef floating* bk = NULL
    if c != NULL and (not c.checked or may_overflow(c, params, nb, beta, l2coef)):
        bk = <floating*>c.backup
    for i in range(L - 1, -1, -1):
        if i > 0:
            input_grad(lay, w, params, nb, i, nt)
        elif dX != NULL:
            pgemm(NoTrans, Trans, <int>nb, <int>lay.sizes[0], <int>lay.sizes[1], <floating>1,
                  <floating*>w.G[0], <int>lay.sizes[1], params + lay.w_off[0],
                  <int>lay.sizes[1], <floating>0, dX, <int>lay.sizes[0], nt)
        ok &= layer_grads(lay, w, params, grads, X, nb, beta, nt, i, c, l2coef, bk, last)
    if c != NULL and not ok and bk == NULL:
        return -1
    return ok


cdef void add_l2(Layout* lay, const floating* params, floating* grads, floating coef) noexcept nogil:
    """dW_l += coef * W_l for every layer (weights only, not biases)."""
    cdef int i
    cdef Py_ssize_t j, off, m
    for i in range(lay.L):
        off = lay.w_off[i]
        m = lay.sizes[i] * lay.sizes[i + 1]
        for j in range(off, off + m):
            grads[j] = grads[j] + coef * params[j]


cdef inline double weight_sum(const floating* sw, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    cdef double s = 0
    for i in range(n):
        s += sw[i]
    return s


# ---- small layers: the batch split over threads -----------------------------------------
# When every product is too small to split (PAR_GEMM_FLOPS), each thread instead runs
# forward and backward on its own rows of the batch with single-threaded BLAS and its own
# gradient buffer; the buffers are then summed in a fixed order (deterministic).

cdef Py_ssize_t SHARD_MIN_ROWS = 8
cdef double SHARD_MIN_STEP_FLOPS = 8.0e6   # a smaller step is not worth a parallel region


def batch_shards(Plan plan, Py_ssize_t batch, int nt):
    """How many row shards a training step on ``batch`` rows uses with nt threads (1 = none)."""
    cdef Layout* lay = &plan.lay
    cdef int i
    cdef double biggest = 0, f, step = 0
    if nt <= 1:
        return 1
    for i in range(lay.L):
        f = 2.0 * batch * lay.sizes[i] * lay.sizes[i + 1]
        step += 3 * f
        if f > biggest:
            biggest = f
    if biggest >= PAR_GEMM_FLOPS or step < SHARD_MIN_STEP_FLOPS:
        return 1
    return <int>max(1, min(nt, batch // SHARD_MIN_ROWS))


cdef double shard_step(Layout* lay, Bufs* sb, const floating* params, floating* g,
                       const floating* xb, const floating* tb, const long long* lb,
                       const floating* swb, Py_ssize_t rows, floating scale, int loss,
                       int count_acc, double* correct, floating beta) noexcept nogil:
    """Forward, loss and backward of one shard's rows into g (g := beta*g + its gradient)."""
    cdef double e
    cdef int L = lay.L
    cdef Py_ssize_t k = lay.sizes[L]
    forward(lay, sb, params, xb, rows, NULL, 1, NULL)
    e = loss_and_output_grad(loss, lay.act[L - 1], <floating*>sb.A[L], <floating*>sb.P[L],
                             tb, lb, swb, rows, k, scale, <floating*>sb.G[L - 1], 1)
    if count_acc:
        correct[0] = count_correct(loss, <floating*>sb.A[L], tb, lb, rows, k)
    backward(lay, sb, <floating*>params, g, xb, rows, NULL, beta, 1, NULL, 0, 0)
    return e


cdef double sum_shards(floating* grads, const floating* others, int n_others, Py_ssize_t P,
                       int nt) noexcept nogil:
    """grads += others[0] + others[1] + ... (each P long), in that order, split over P.
    Returns max |grads| after the sum (inf if some entry is not finite)."""
    cdef Py_ssize_t c, nchunks, CH = 16384
    cdef int t = min(run_threads(nt), 64), tid
    cdef double part[64]
    cdef double best = 0
    nchunks = (P + CH - 1) // CH
    if t > 1 and nchunks > 1:
        for tid in range(t):
            part[tid] = 0
        for c in prange(nchunks, num_threads=t, schedule="static"):
            tid = threadid()
            part[tid] = max(part[tid], _sum_block(grads, others, n_others, P, c * CH,
                                                  min(P, (c + 1) * CH)))
        for tid in range(t):
            best = max(best, part[tid])
        return best
    return _sum_block(grads, others, n_others, P, 0, P)


cdef inline double _sum_block(floating* grads, const floating* others, int n_others,
                              Py_ssize_t P, Py_ssize_t a, Py_ssize_t z) noexcept nogil:
    cdef int t
    cdef Py_ssize_t i
    for t in range(n_others):
        for i in range(a, z):
            grads[i] = grads[i] + others[t * P + i]
    return maxabs(grads + a, 1, z - a, z - a)


# ---- entry points (called once per call / per chunk of batches) -------------------------

def predict(Plan plan, Workspace ws, const floating[::1] params, const floating[:, ::1] X,
            floating[:, ::1] out, int nt):
    """out = network(X), in chunks of the workspace capacity."""
    cdef Py_ssize_t n = X.shape[0], s, nb, cap = ws.capacity
    cdef Py_ssize_t d = X.shape[1], k = out.shape[1]
    if n == 0:
        return
    with nogil:
        s = 0
        while s < n:
            nb = min(cap, n - s)
            forward(&plan.lay, &ws.b, &params[0], &X[0, 0] + s * d, nb, &out[0, 0] + s * k, nt,
                    NULL)
            s += nb


def loss_and_gradients(Plan plan, Workspace ws, const floating[::1] params,
                       floating[::1] grads, const floating[:, ::1] X,
                       const floating[:, ::1] T, const cnp.int64_t[::1] labels,
                       int use_labels, int loss, floating[:, ::1] dX, int want_dx,
                       const floating[::1] sw, int use_sw, double l2, int nt):
    """Mean loss over all rows of X and its gradients (accumulated over chunks).

    With sample weights the mean is weighted (divided by the sum of weights); l2 adds
    ``l2 / sum_w * W`` to the weight gradients only (scikit-learn's alpha).
    """
    cdef Layout* lay = &plan.lay
    cdef Py_ssize_t n = X.shape[0], s = 0, nb, cap = ws.capacity
    cdef Py_ssize_t d = X.shape[1], k = lay.sizes[lay.L]
    cdef double wsum
    if ws.forward_only:
        raise ValueError("gradients need a workspace made without forward_only")
    wsum = weight_sum(&sw[0], n) if use_sw else <double>n
    cdef floating scale = <floating>(1.0 / wsum)
    cdef double total = 0
    cdef floating beta = 0
    with nogil:
        while s < n:
            nb = min(cap, n - s)
            forward(lay, &ws.b, &params[0], &X[0, 0] + s * d, nb, NULL, nt, NULL)
            total += loss_and_output_grad(
                loss, lay.act[lay.L - 1], <floating*>ws.b.A[lay.L], <floating*>ws.b.P[lay.L],
                NULL if use_labels else &T[0, 0] + s * k,
                <long long*>&labels[0] + s if use_labels else NULL,
                &sw[0] + s if use_sw else NULL, nb, k, scale, <floating*>ws.b.G[lay.L - 1], nt)
            backward(lay, &ws.b, <floating*>&params[0], &grads[0], &X[0, 0] + s * d, nb,
                     &dX[0, 0] + s * d if want_dx else NULL, beta, nt, NULL, 0, 0)
            beta = 1
            s += nb
        if l2 != 0:
            add_l2(lay, &params[0], &grads[0], <floating>(l2 / wsum))
    return total / wsum


cdef inline unsigned long long splitmix64(unsigned long long* state) noexcept nogil:
    cdef unsigned long long z
    state[0] += 0x9E3779B97F4A7C15ull
    z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull
    return z ^ (z >> 31)


def shuffle(cnp.int64_t[::1] perm, cnp.uint64_t[::1] state):
    """perm := a uniformly random permutation of range(len(perm)) (Fisher-Yates, SplitMix64)."""
    cdef Py_ssize_t i, j, n = perm.shape[0]
    cdef unsigned long long* st = <unsigned long long*>&state[0]
    cdef cnp.int64_t t
    with nogil:
        for i in range(n):
            perm[i] = i
        for i in range(n - 1, 0, -1):
            j = <Py_ssize_t>(splitmix64(st) % <unsigned long long>(i + 1))
            t = perm[i]
            perm[i] = perm[j]
            perm[j] = t


cdef inline void gather_row(StepCtx* c, const floating* X, const floating* T,
                            const floating* sw, floating* xg, floating* tg, floating* swg,
                            long long* lab, Py_ssize_t s, Py_ssize_t r) noexcept nogil:
    """Row r of the batch starting at position s of the permutation into the buffers."""
    cdef Py_ssize_t row = c.perm[s + r], d = c.d, k = c.k
    memcpy(xg + r * d, X + row * d, d * sizeof(floating))
    if c.use_labels:
        lab[r] = c.labels[row]
    else:
        memcpy(tg + r * k, T + row * k, k * sizeof(floating))
    if c.use_sw:
        swg[r] = sw[row]


cdef int train_step(StepCtx* c, Py_ssize_t bi, floating* params, double* loss_out,
                    double* wsum_out, double* correct_out, Py_ssize_t* nb_out) noexcept nogil:
    """Gather, forward, loss, backward and update of batch bi.

    Returns -1 if the batch is empty, 0 if done, 1 if the loss is not finite (nothing
    applied), 2 if the update gave a non-finite parameter (undone from c.backup), 3 if it
    did where no backup was made (an internal error: may_overflow is wrong). A direct
    step leaves the plain buffer (not mu*buf) at the end of the epoch.
    """
    cdef Layout* lay = c.lay
    cdef Bufs* w = c.w
    cdef Py_ssize_t d = c.d, k = c.k, P = c.P, s, nb, r, r0, r1
    cdef int S = c.S, t, L = lay.L
    cdef floating* X = <floating*>c.X
    cdef floating* T = <floating*>c.T
    cdef floating* sw = <floating*>c.sw
    cdef floating* g = <floating*>c.grads
    cdef floating* sg = <floating*>c.shard_grads
    cdef floating* gt
    cdef floating* xg = <floating*>w.X
    cdef floating* tg = <floating*>w.T
    cdef floating* swg = <floating*>w.SW
    cdef const floating* xb
    cdef const floating* tb
    cdef const long long* lb
    cdef const floating* swb
    cdef double bl, wsum, correct = 0
    cdef double shard_loss[256]
    cdef double shard_correct[256]
    cdef floating scale, beta = 0
    cdef floating* bk
    cdef double gsum = 0
    cdef int ok, last, sharded
    s = bi * c.batch_size
    nb = min(c.batch_size, c.n - s)
    nb_out[0] = nb
    if nb <= 0:
        return -1
    if c.use_perm:
        # (split over threads it was no faster: memory bound.) The rows of the next batch
        # are requested now, to arrive while this one computes.
        for r in range(nb):
            if s + nb + r < c.n:
                fastbp_prefetch_row(X + c.perm[s + nb + r] * d, d * sizeof(floating))
            gather_row(c, X, T, sw, xg, tg, swg, w.lab, s, r)
        xb = xg
        tb = tg
        lb = w.lab
        swb = swg
    else:
        xb = X + s * d
        tb = NULL if c.use_labels else T + s * k
        lb = c.labels + s if c.use_labels else NULL
        swb = sw + s if c.use_sw else NULL
    wsum = weight_sum(swb, nb) if c.use_sw else <double>nb
    scale = <floating>(1.0 / wsum)
    if c.direct and c.op.t > 0:
        beta = 1 if c.scaled else <floating>c.op.momentum
    sharded = S > 1 and nb >= S * SHARD_MIN_ROWS
    if sharded:
        for t in prange(S, num_threads=run_threads(S), schedule="static"):
            r0 = nb * t // S
            r1 = nb * (t + 1) // S
            point_shard(lay, w, &c.sh[t], r0, params)
            gt = g if t == 0 else sg + (t - 1) * P
            shard_correct[t] = 0
            shard_loss[t] = shard_step(
                lay, &c.sh[t], params, gt, xb + r0 * d,
                NULL if c.use_labels else tb + r0 * k,
                lb + r0 if c.use_labels else NULL,
                swb + r0 if c.use_sw else NULL, r1 - r0, scale, c.loss, c.count_acc,
                &shard_correct[t], beta if t == 0 else <floating>0)
        bl = 0
        for t in range(S):
            bl += shard_loss[t]
            correct += shard_correct[t]
        if not isfinite(bl):
            loss_out[0] = bl
            return 1
        gsum = sum_shards(g, sg, S - 1, P, c.nt)
    else:
        forward(lay, w, params, xb, nb, NULL, c.nt, c.zmax if c.checked else NULL)
        bl = loss_and_output_grad(c.loss, lay.act[L - 1], <floating*>w.A[L],
                                  <floating*>w.P[L], NULL if c.use_labels else tb,
                                  lb if c.use_labels else NULL,
                                  swb if c.use_sw else NULL, nb, k, scale,
                                  <floating*>w.G[L - 1], c.nt)
        if not isfinite(bl):
            loss_out[0] = bl
            return 1
        if c.count_acc:
            correct = count_correct(c.loss, <floating*>w.A[L], tb, lb, nb, k)
        if c.checked:
            c.zmax[0] = c.xmax if c.xmax >= 0 else maxabs(xb, nb, d, d)
            c.gout = maxabs(<floating*>w.G[L - 1], nb, k, k)
    loss_out[0] = bl
    wsum_out[0] = wsum
    correct_out[0] = correct
    c.op.loss_increased = (bl / wsum) > c.op_prev_loss
    c.op_prev_loss = bl / wsum
    last = s + nb >= c.n
    c.pnew = 0
    c.bnew = 0
    if sharded:
        if c.l2 != 0:
            add_l2(lay, params, g, <floating>(c.l2 / wsum))
        bk = <floating*>c.backup
        if c.direct and not update_may_overflow(c, params, gsum, c.l2 / wsum):
            bk = NULL
        ok = update_range(c, params, g, 0, P, bk, last)
    else:
        ok = backward(lay, w, params, g, xb, nb, NULL, beta, c.nt, c,
                      <floating>(c.l2 / wsum), last)
    if c.direct:
        c.scaled = not last
    if ok < 0 or (sharded and not ok and bk == NULL):
        return 3
    if not ok:
        memcpy(params, c.backup, P * sizeof(floating))
        return 2
    if c.direct:
        c.pmax = c.pnew
        c.bmax = c.bnew
    c.op.t += 1
    return 0


def train_batches(Plan plan, Workspace ws, floating[::1] params, floating[::1] grads,
                  const floating[:, ::1] X, const floating[:, ::1] T,
                  const cnp.int64_t[::1] labels, int use_labels, int loss,
                  const cnp.int64_t[::1] perm, int use_perm, Py_ssize_t batch_size,
                  Py_ssize_t first_batch, Py_ssize_t last_batch, dict hyper,
                  floating[::1] s1, floating[::1] s2, floating[::1] s3,
                  double prev_loss, int count_acc, const floating[::1] sw, int use_sw,
                  double l2, floating[::1] backup, double total, double wtotal,
                  double correct, floating[::1] shard_grads, double[::1] carry, int nt):
    """Train on batches [first_batch, last_batch) of one epoch.

    With sample weights each batch's loss and gradient are weighted means; l2 adds
    ``l2 / sum_w(batch) * W`` to the weight gradients (scikit-learn's alpha).
    total, wtotal and correct are running sums carried across calls (so an epoch's sums do
    not depend on how it was cut into chunks). Returns (summed (weighted) sample loss,
    summed weights, correct predictions (if count_acc), samples seen, steps taken, status,
    failing batch, last batch loss) with status 0 = ok, 1 = non-finite loss, 2 = the update
    gave a non-finite parameter. Either way the parameters are those before the failing
    batch: its update was never applied (status 1) or was undone (status 2); the optimizer
    state may hold the failed step.

    SGD with heavy-ball momentum needs no gradient buffer: the products add the gradient
    straight into the momentum buffer s1, which between the steps of an epoch holds mu*buf
    (carry[2] = 1; the products then add with beta=1, saving a pass; the epoch's last step
    leaves the plain buffer, so how an epoch is cut into calls never changes the
    arithmetic). Unsharded, it needs no per-step backup either: a step is backed up only if
    may_overflow cannot rule out an overflow, from carry[0] >= max|params| and
    carry[1] >= max|s1| carried across calls (negative: measure them; set carry[0] = -1
    whenever the parameters or the buffer may have been changed outside). ``grads`` and
    ``backup`` are then left untouched in the usual case. An optional carry[3] >= max|X|
    (taken once, e.g. by the finiteness check of X) spares measuring every batch's input.
    """
    cdef StepCtx c
    cdef Py_ssize_t n = X.shape[0], P = params.shape[0], bi, nb
    cdef Py_ssize_t seen = 0, steps = 0, bad = -1
    cdef double bl = prev_loss, wsum, corr
    cdef int status = 0, st, L = plan.lay.L
    c.lay = &plan.lay
    c.w = &ws.b
    c.sh = ws.sh
    c.S = ws.shards
    c.op.kind = hyper["kind"]
    c.op.lr = hyper["lr"]
    c.op.momentum = hyper["momentum"]
    c.op.weight_decay = hyper["weight_decay"]
    c.op.nesterov = hyper["nesterov"]
    c.op.beta1 = hyper["beta1"]
    c.op.beta2 = hyper["beta2"]
    c.op.eps = hyper["eps"]
    c.op.alpha = hyper["alpha"]
    c.op.eta_minus = hyper["eta_minus"]
    c.op.eta_plus = hyper["eta_plus"]
    c.op.step_min = hyper["step_min"]
    c.op.step_max = hyper["step_max"]
    c.op.mu = hyper["mu"]
    c.op.plus = hyper["plus"]
    c.op.eps_raw = hyper.get("eps_raw", 0)
    c.op.velocity = hyper.get("velocity", 0)
    c.op.t = hyper["t"]
    c.op.loss_increased = 0
    c.op_prev_loss = prev_loss
    c.direct = accumulates_momentum(&c.op)
    c.checked = c.direct and c.S == 1
    if backup.shape[0] != P or grads.shape[0] != P:
        raise ValueError("grads and backup must have one entry per parameter")
    if c.direct and s1.shape[0] != P:
        raise ValueError("the momentum buffer must have one entry per parameter")
    if c.S > 256 or (c.S > 1 and shard_grads.shape[0] < (c.S - 1) * P):
        raise ValueError("shard_grads must hold (shards - 1) gradient buffers (shards <= 256)")
    if batch_size > ws.capacity or ws.forward_only:
        raise ValueError("batch_size exceeds the workspace capacity, or it is forward-only")
    if use_perm and (ws.b.X == NULL or perm.shape[0] != n):
        raise ValueError("shuffled training needs a gathering workspace and a full permutation")
    if carry.shape[0] not in (3, 4):
        raise ValueError("carry must hold 3 or 4 values")
    c.X = &X[0, 0]
    c.T = &T[0, 0]
    c.labels = <const long long*>&labels[0]
    c.sw = &sw[0]
    c.perm = <const long long*>&perm[0]
    c.n = n
    c.d = X.shape[1]
    c.k = plan.lay.sizes[plan.lay.L]
    c.batch_size = batch_size
    c.P = P
    c.use_labels = use_labels
    c.use_perm = use_perm
    c.use_sw = use_sw
    c.loss = loss
    c.count_acc = count_acc
    c.nt = nt
    c.l2 = l2
    c.shard_grads = &shard_grads[0]
    c.s1 = &s1[0]
    c.s2 = &s2[0]
    c.s3 = &s3[0]
    c.backup = &backup[0]
    c.grads = &s1[0] if c.direct else &grads[0]
    c.pmax = carry[0]
    c.bmax = carry[1]
    c.scaled = c.direct and carry[2] != 0
    c.xmax = carry[3] if carry.shape[0] == 4 else -1
    c.zmax = <double*>malloc(L * sizeof(double))
    if c.zmax == NULL:
        raise MemoryError()
    with nogil:
        for bi in range(first_batch, last_batch):
            st = train_step(&c, bi, &params[0], &bl, &wsum, &corr, &nb)
            if st < 0:
                break
            if st > 0:
                status = st
                bad = bi
                c.pmax = -1
                break
            total += bl
            wtotal += wsum
            correct += corr
            seen += nb
            steps += 1
    free(c.zmax)
    carry[0] = c.pmax
    carry[1] = c.bmax
    carry[2] = c.scaled
    if status == 3:
        raise RuntimeError("fastbp internal error: an update overflowed where the overflow "
                           "check ruled that out, and no backup was made; please report")
    return total, wtotal, correct, seen, steps, status, bad, c.op_prev_loss


def max_abs(const floating[::1] x, int nt=1):
    """max |x| (inf if some entry is NaN or inf; 0 if empty), one parallel pass."""
    cdef double m = 0
    if x.shape[0] > 0:
        with nogil:
            m = maxabs_par(&x[0], x.shape[0], nt)
    return m


def params_finite(const floating[::1] params, int nt=1):
    cdef int ok
    with nogil:
        ok = all_finite(&params[0], params.shape[0], nt)
    return bool(ok)
