"""The compiled BP step: forward, loss, backward and update, batch after batch, nogil.

A network is described by a Plan (one LayerSpec per layer: sizes, parameter offsets into
the flat buffer, activation); the buffers for a batch capacity live in a Workspace; the
rows to train on are a Samples. A TrainState holds everything one ``fit`` carries from
call to call (optimizer settings and state, the shuffle's RNG and permutation, the epoch's
sums, the bounds of the overflow check). Python calls ``train_batches`` once per chunk of
batches; nothing inside allocates.
"""
from collections import namedtuple

import numpy as np
cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy
from libc.math cimport isfinite, fabs, sqrt, INFINITY

from ._blas cimport gemm_as, small_gemm, NoTrans, Trans, BLAS_Trans
from ._bf16 cimport bf16_gemm_ws_c, bf16_gemm_sgd_c, bf16_scratch_bytes
from ._kernels cimport (bias_act_forward, act_backward, loss_and_output_grad, column_sums,
                        all_finite, maxabs, maxabs_par, needs_pre, count_correct, run_threads,
                        thread_cap, set_thread_cap, act_bound, slope_bound, row_coupled,
                        block_forward, block_backward, Dropout, dropout_block, mask_block,
                        bn_forward, bn_backward)
from ._optim cimport (OptParams, OptBuffers, GradOpts, OptimizerConfig, OptimizerState,
                      optimizer_step, accumulates_momentum, momentum_step, divide_buffer,
                      grad_sumsq, max_norm_columns)

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


# ---- the network's layout -----------------------------------------------------------------

cdef struct LayerSpec:
    # one fully-connected layer: out = f(BN(drop(in) @ W + b)); a new per-layer option is a
    # field here and a line in Plan.__cinit__
    Py_ssize_t n_in, n_out
    Py_ssize_t w_off          # W (n_in, n_out) in the flat parameter buffer
    Py_ssize_t b_off          # b (n_out,)
    Py_ssize_t g_off, be_off  # batch norm's gamma, beta (n_out each) after b, or -1
    Py_ssize_t end_off        # one past the layer's last parameter
    Py_ssize_t stat_off       # batch norm: running mean (n_out), then var, in the stats; -1
    int act                   # activation code (_kernels.Act)
    double in_dropout         # dropout rate on the layer's input (training only)
    int batch_norm            # batch normalization between the product and f


cdef struct Layout:
    int L                     # layers
    LayerSpec* layer          # L
    Py_ssize_t* units         # L + 1: units[0] = inputs, units[i + 1] = layer i's outputs
    Py_ssize_t widest         # the widest layer output
    Py_ssize_t n_stats        # running statistics (batch norm): 2 per normalized unit
    int any_bn, any_dropout


LAYER_OPTIONS = ("n_in", "n_out", "activation", "dropout", "batch_norm")


cdef class Plan:
    """The compiled description of a network: one LayerSpec per layer, in order.

    ``layers``: a sequence of mappings with the keys ``n_in``, ``n_out``, ``activation``
    (a ``_kernels.Act`` code) and optionally ``dropout`` (the rate on the layer's input, in
    [0, 1)) and ``batch_norm`` (normalize the layer's pre-activation); parameters are laid
    out W_0, b_0, [gamma_0, beta_0], W_1, b_1, ... and running statistics (mean, var) of
    the normalized layers one after the other in a separate float64 buffer of n_stats.
    """
    cdef Layout lay
    cdef readonly Py_ssize_t n_params, n_stats

    def __cinit__(self, layers):
        cdef int i, L = len(layers)
        cdef Py_ssize_t off = 0, stats = 0
        cdef LayerSpec* ly
        if L < 1:
            raise ValueError("a plan needs at least one layer")
        self.lay.L = L
        self.lay.layer = <LayerSpec*>calloc(L, sizeof(LayerSpec))
        self.lay.units = <Py_ssize_t*>calloc(L + 1, sizeof(Py_ssize_t))
        if not (self.lay.layer and self.lay.units):
            raise MemoryError()
        self.lay.widest = 0
        self.lay.any_bn = self.lay.any_dropout = 0
        for i, spec in enumerate(layers):
            unknown = set(spec) - set(LAYER_OPTIONS)
            if unknown:
                raise ValueError(f"layer {i}: unknown option(s) {sorted(unknown)}")
            ly = &self.lay.layer[i]
            ly.n_in = spec["n_in"]
            ly.n_out = spec["n_out"]
            ly.act = spec["activation"]
            ly.in_dropout = spec.get("dropout", 0.0)
            ly.batch_norm = bool(spec.get("batch_norm", False))
            if ly.n_in < 1 or ly.n_out < 1:
                raise ValueError(f"layer {i}: sizes must be >= 1")
            if i > 0 and ly.n_in != self.lay.layer[i - 1].n_out:
                raise ValueError(f"layer {i}: n_in {spec['n_in']} != layer {i - 1}'s n_out")
            if not 0 <= ly.in_dropout < 1:
                raise ValueError(f"layer {i}: dropout must be in [0, 1), got {ly.in_dropout}")
            ly.w_off = off
            off += ly.n_in * ly.n_out
            ly.b_off = off
            off += ly.n_out
            ly.g_off = ly.be_off = ly.stat_off = -1
            if ly.batch_norm:
                ly.g_off, ly.be_off = off, off + ly.n_out
                off += 2 * ly.n_out
                ly.stat_off = stats
                stats += 2 * ly.n_out
                self.lay.any_bn = 1
            ly.end_off = off
            self.lay.any_dropout |= ly.in_dropout > 0
            self.lay.units[i + 1] = ly.n_out
            self.lay.widest = max(self.lay.widest, ly.n_out)
        self.lay.units[0] = self.lay.layer[0].n_in
        self.n_params = off
        self.n_stats = self.lay.n_stats = stats

    @property
    def layer_sizes(self):
        return tuple(self.lay.units[i] for i in range(self.lay.L + 1))

    @property
    def batch_norm(self):
        return bool(self.lay.any_bn)

    def __dealloc__(self):
        free(self.lay.layer)
        free(self.lay.units)


# ---- scratch buffers ----------------------------------------------------------------------

cdef struct Bufs:
    void** A          # A[i]: output of layer i-1 (A[0] unused: the batch input)
    void** P          # P[i]: pre-activation of layer i-1, or NULL
    void** G          # G[i]: dE/d(pre-activation of layer i), i < L: two buffers, alternating
    void** D          # D[i]: layer i's input after dropout, or NULL (no dropout there)
    unsigned char** M # M[i]: that dropout's mask (0/1 per entry), or NULL
    void** XH         # XH[i]: layer i's normalized pre-activation (batch norm), or NULL
    double** S        # S[i]: batch norm: the batch's mean, var, 1/sqrt(var+eps), or NULL
    void* zero        # widest zeros: the bias of an activation pass after batch norm
    void* X           # gathered batch inputs
    void* T           # gathered batch targets
    void* SW          # gathered batch sample weights
    long long* lab    # gathered batch labels
    Py_ssize_t cap    # batch capacity


cdef inline int alloc_bufs(Bufs* b, int L) noexcept:
    b.A = <void**>calloc(L + 1, sizeof(void*))
    b.P = <void**>calloc(L + 1, sizeof(void*))
    b.G = <void**>calloc(L, sizeof(void*))
    b.D = <void**>calloc(L, sizeof(void*))
    b.M = <unsigned char**>calloc(L, sizeof(void*))
    b.XH = <void**>calloc(L, sizeof(void*))
    b.S = <double**>calloc(L, sizeof(void*))
    return (b.A != NULL and b.P != NULL and b.G != NULL and b.D != NULL and b.M != NULL
            and b.XH != NULL and b.S != NULL)


cdef inline void free_bufs(Bufs* b) noexcept:
    free(b.A)
    free(b.P)
    free(b.G)
    free(b.D)
    free(b.M)
    free(b.XH)
    free(b.S)


cdef inline int keeps_pre(Layout* lay, int i) noexcept nogil:
    """1 if level i (1..L) keeps the pre-activation of layer i-1 apart from its output."""
    return (i == lay.L or needs_pre(lay.layer[i - 1].act)
            or lay.layer[i - 1].batch_norm)


WORKSPACE_KINDS = ("predict", "gradients", "train")
F32, F64 = np.dtype(np.float32), np.dtype(np.float64)


cdef class Workspace:
    """Scratch buffers for batches of up to ``capacity`` rows of one Plan.

    ``kind``: "predict" keeps no gradients and only two hidden outputs, alternating;
    "gradients" adds the backward's buffers (loss_and_gradients), with the dropped inputs
    and masks of the dropout layers and the normalized pre-activations of the batch-norm
    ones; "train" also gathers shuffled batches and holds the gradient, backup and
    per-shard gradient buffers of a training step. With ``shards`` > 1 (train) it also
    holds, per batch shard, a Bufs whose pointers address that shard's rows of the same
    buffers (set per batch by point_shard). The gradient and backup buffers are allocated,
    not touched: memory only where used.
    """
    cdef Bufs b
    cdef Bufs* sh
    cdef readonly int shards
    cdef readonly str kind
    cdef readonly object buf, labels, dtype, grads, backup, shard_grads, masks, bn_stats
    cdef readonly Py_ssize_t capacity
    cdef readonly Plan plan

    def __cinit__(self, Plan plan, Py_ssize_t capacity, dtype, str kind="gradients",
                  int shards=1):
        cdef Layout* lay = &plan.lay
        cdef int i, L = lay.L
        cdef Py_ssize_t total = 0, off = 0, wpre = lay.units[L], item, nmask = 0, nstat = 0
        cdef char* base
        cdef unsigned char* mbase
        cdef double* sbase
        if kind not in WORKSPACE_KINDS:
            raise ValueError(f"kind must be one of {WORKSPACE_KINDS}, got {kind!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.plan = plan
        self.kind = kind
        self.shards = max(1, shards) if kind == "train" else 1
        if self.shards > 256:
            raise ValueError("at most 256 shards")
        self.sh = <Bufs*>calloc(self.shards, sizeof(Bufs))
        if not self.sh:
            raise MemoryError()
        for i in range(self.shards):
            if not alloc_bufs(&self.sh[i], L):
                raise MemoryError()
        if not alloc_bufs(&self.b, L):
            raise MemoryError()
        self.capacity = capacity
        self.dtype = np.dtype(dtype)
        item = self.dtype.itemsize
        self.b.cap = capacity
        self.labels = np.zeros(capacity if kind == "train" else 1, dtype=np.int64)
        self.b.lab = <long long*>cnp.PyArray_DATA(self.labels)
        self.b.X = self.b.T = self.b.SW = NULL
        self.grads = self.backup = self.shard_grads = None
        # batch norm's per-unit statistics of a batch (any kind)
        for i in range(L):
            if lay.layer[i].batch_norm:
                nstat += 3 * lay.layer[i].n_out
        self.bn_stats = np.zeros(max(1, nstat), dtype=np.float64)
        sbase = <double*>cnp.PyArray_DATA(self.bn_stats)
        for i in range(L):
            if lay.layer[i].batch_norm:
                self.b.S[i] = sbase
                sbase += 3 * lay.layer[i].n_out
        if kind == "predict":
            # hidden outputs in two buffers, alternating; one pre-activation buffer for the
            # layers that keep theirs (SiLU, GELU) and the output layer; the output itself
            # goes to the caller's array (forward with out); widest zeros at the end
            for i in range(1, L):
                if needs_pre(lay.layer[i - 1].act) and lay.units[i] > wpre:
                    wpre = lay.units[i]
            self.buf = np.zeros(2 * capacity * lay.widest + capacity * wpre + lay.widest,
                                dtype=self.dtype)
            base = <char*>cnp.PyArray_DATA(self.buf)
            for i in range(1, L):
                self.b.A[i] = base + (i - 1) % 2 * capacity * lay.widest * item
                if needs_pre(lay.layer[i - 1].act):
                    self.b.P[i] = base + 2 * capacity * lay.widest * item
            self.b.P[L] = base + 2 * capacity * lay.widest * item
            self.b.zero = base + (2 * capacity * lay.widest + capacity * wpre) * item
            self.masks = np.zeros(1, dtype=np.uint8)
            return
        for i in range(1, L + 1):
            total += capacity * lay.units[i]
            if keeps_pre(lay, i):
                total += capacity * lay.units[i]
        for i in range(L):
            if lay.layer[i].in_dropout > 0:
                total += capacity * lay.units[i]
                nmask += capacity * lay.units[i]
            if lay.layer[i].batch_norm:
                total += capacity * lay.layer[i].n_out
        total += 2 * capacity * lay.widest + lay.widest
        if kind == "train":
            total += capacity * (lay.units[0] + lay.units[L] + 1)
        self.buf = np.zeros(total, dtype=self.dtype)
        self.masks = np.zeros(max(1, nmask), dtype=np.uint8)
        base = <char*>cnp.PyArray_DATA(self.buf)
        mbase = <unsigned char*>cnp.PyArray_DATA(self.masks)
        for i in range(1, L + 1):
            self.b.A[i] = base + off * item
            off += capacity * lay.units[i]
            if keeps_pre(lay, i):
                self.b.P[i] = base + off * item
                off += capacity * lay.units[i]
        for i in range(L):
            if lay.layer[i].in_dropout > 0:
                self.b.D[i] = base + off * item
                off += capacity * lay.units[i]
                self.b.M[i] = mbase
                mbase += capacity * lay.units[i]
            if lay.layer[i].batch_norm:
                self.b.XH[i] = base + off * item
                off += capacity * lay.layer[i].n_out
        for i in range(L):       # the backward only needs G[i] and G[i - 1] at once
            self.b.G[i] = base + (off + (L - 1 - i) % 2 * capacity * lay.widest) * item
        off += 2 * capacity * lay.widest
        self.b.zero = base + off * item
        off += lay.widest
        if kind == "train":
            self.b.X = base + off * item
            off += capacity * lay.units[0]
            self.b.T = base + off * item
            off += capacity * lay.units[L]
            self.b.SW = base + off * item
            self.grads = np.empty(plan.n_params, dtype=self.dtype)
            self.backup = np.empty(plan.n_params, dtype=self.dtype)
            self.shard_grads = np.empty(max(1, (self.shards - 1) * plan.n_params),
                                        dtype=self.dtype)

    def __dealloc__(self):
        cdef int i
        free_bufs(&self.b)
        if self.sh:
            for i in range(self.shards):
                free_bufs(&self.sh[i])
            free(self.sh)


cdef void point_shard(Layout* lay, Bufs* base, Bufs* out, Py_ssize_t r0,
                      floating* like) noexcept nogil:
    """Point ``out`` at rows r0.. of every buffer of ``base`` (like: only fixes the dtype).
    Batch norm needs the whole batch: a plan with it is never sharded."""
    cdef int i
    for i in range(1, lay.L + 1):
        out.A[i] = (<floating*>base.A[i]) + r0 * lay.units[i]
        out.P[i] = (<floating*>base.P[i]) + r0 * lay.units[i] if base.P[i] != NULL else NULL
        out.G[i - 1] = (<floating*>base.G[i - 1]) + r0 * lay.widest   # whatever the width
    for i in range(lay.L):
        out.D[i] = (<floating*>base.D[i]) + r0 * lay.units[i] if base.D[i] != NULL else NULL
        out.M[i] = base.M[i] + r0 * lay.units[i] if base.M[i] != NULL else NULL
    out.zero = base.zero


# ---- the rows to train on ----------------------------------------------------------------

cdef class Samples:
    """Rows for training or a loss: inputs X (n, d), and either float targets (n, k) or
    int64 class labels (n,), with optional sample weights (n,). All C-contiguous, floats in
    one dtype; None means absent. ``input_bound`` >= max |X| when known (e.g. from X's
    finiteness check), else -1 (then measured per batch where needed)."""
    cdef readonly object X, targets, labels, sample_weight, dtype
    cdef readonly Py_ssize_t n, n_features
    cdef public double input_bound
    cdef const void* x
    cdef const void* t
    cdef const long long* lab
    cdef const void* sw

    def __cinit__(self, X, targets=None, labels=None, sample_weight=None,
                  double input_bound=-1):
        if not isinstance(X, np.ndarray) or X.ndim != 2 or not X.flags.c_contiguous \
                or X.dtype not in (np.float32, np.float64):
            raise ValueError("X must be a C-contiguous 2-D float32 or float64 array")
        if (targets is None) == (labels is None):
            raise ValueError("give either targets or labels")
        self.X, self.dtype = X, X.dtype
        self.n, self.n_features = X.shape[0], X.shape[1]
        self.x = cnp.PyArray_DATA(X)
        self.t = self.sw = NULL
        self.lab = NULL
        if targets is not None:
            if not isinstance(targets, np.ndarray) or targets.ndim != 2 \
                    or targets.shape[0] != self.n or targets.dtype != X.dtype \
                    or not targets.flags.c_contiguous:
                raise ValueError("targets must be a C-contiguous (n, k) array in X's dtype")
            self.targets = targets
            self.t = cnp.PyArray_DATA(targets)
        if labels is not None:
            if not isinstance(labels, np.ndarray) or labels.shape != (self.n,) \
                    or labels.dtype != np.int64 or not labels.flags.c_contiguous:
                raise ValueError("labels must be a C-contiguous int64 array of n entries")
            self.labels = labels
            self.lab = <const long long*>cnp.PyArray_DATA(labels)
        if sample_weight is not None:
            if not isinstance(sample_weight, np.ndarray) or sample_weight.shape != (self.n,) \
                    or sample_weight.dtype != X.dtype or not sample_weight.flags.c_contiguous:
                raise ValueError("sample_weight must be a C-contiguous array of n entries "
                                 "in X's dtype")
            self.sample_weight = sample_weight
            self.sw = cnp.PyArray_DATA(sample_weight)
        self.input_bound = input_bound

    cdef check(self, Plan plan, dtype):
        cdef Py_ssize_t k = plan.lay.units[plan.lay.L]
        if self.dtype != dtype:
            raise ValueError(f"the samples are {self.dtype}, the network {np.dtype(dtype)}")
        if self.n_features != plan.lay.units[0]:
            raise ValueError(f"X has {self.n_features} columns, the network "
                             f"{plan.lay.units[0]} inputs")
        if self.targets is not None and self.targets.shape[1] != k:
            raise ValueError(f"targets have {self.targets.shape[1]} columns, the network "
                             f"{k} outputs")


# ---- products: one thread pool ----------------------------------------------------------
# The BLAS runs single-threaded inside fastbp (see _config.blas_single_threaded); large
# products are split into row or column blocks, one per OpenMP thread, so the kernels and
# the BLAS never compete with two spinning thread pools.

cdef double PAR_GEMM_FLOPS = 4.0e6    # below this a product runs on one thread
cdef Py_ssize_t MIN_BLOCK = 16        # rows/columns per thread at least
# A product of a few rows (predict on a few samples) reads all of B for little arithmetic:
# it is bound by memory, and split over the columns from this size of B on (in entries).
cdef int FEW_ROWS = 4
cdef Py_ssize_t POOLED = 64       # predict workspaces of up to this capacity are pooled
POOLED_ROWS = POOLED
cdef double PAR_FEW_ROWS_KN = 65536


cdef enum Epilogue:
    EP_NONE = 0
    EP_FORWARD = 1     # C is the pre-activation: C += bias, out = f(C)
    EP_BACKWARD = 2    # C is a gradient: C *= f'(pre) (from out = f(pre) where possible)


cdef inline void pgemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, floating alpha,
                       const floating* A, int lda, const floating* B, int ldb,
                       floating beta, floating* C, int ldc, int nt,
                       void* b16=NULL) noexcept nogil:
    pgemm_ep(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, nt, EP_NONE, 0, NULL,
             NULL, NULL, NULL, NULL, NULL, NULL, b16)


cdef inline void epilogue_block(int ep, int act, floating* C, floating* out,
                                const floating* bias, const floating* pre, Py_ssize_t ld,
                                Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t c0, Py_ssize_t c1,
                                const Dropout* dr, floating* dd,
                                unsigned char* dm) noexcept nogil:
    """The epilogue on rows [r0, r1) x columns [c0, c1): forward, bias + f, then the next
    layer's dropout (dd = out * mask * scale) if dr; backward, the dropout mask of this
    level first if dr, then f'."""
    if ep == EP_FORWARD:
        block_forward(act, C, out, bias, ld, r0, r1, c0, c1)
        if dr != NULL:
            dropout_block(out, dd, dm, ld, r0, r1, c0, c1, dr)
    elif ep == EP_BACKWARD:
        if dr != NULL:
            mask_block(C, dm, ld, r0, r1, c0, c1, dr.scale)
        block_backward(act, C, out, pre, ld, r0, r1, c0, c1)


cdef void dropout_rows(const floating* a, floating* d, unsigned char* mk, Py_ssize_t ld,
                       Py_ssize_t m, Py_ssize_t n, const Dropout* dr, int nt) noexcept nogil:
    """dropout_block on all m rows, split by rows over the threads when large enough."""
    cdef Py_ssize_t t, parts = min(nt, 64) if m * n >= 65536 and m >= 2 * nt else 1
    if parts <= 1:
        dropout_block(a, d, mk, ld, 0, m, 0, n, dr)
        return
    for t in prange(parts, num_threads=run_threads(parts), schedule="static"):
        dropout_block(a, d, mk, ld, m * t // parts, m * (t + 1) // parts, 0, n, dr)


cdef void mask_rows(floating* g, const unsigned char* mk, Py_ssize_t ld, Py_ssize_t m,
                    Py_ssize_t n, double scale, int nt) noexcept nogil:
    """mask_block on all m rows, split by rows over the threads when large enough."""
    cdef Py_ssize_t t, parts = min(nt, 64) if m * n >= 65536 and m >= 2 * nt else 1
    if parts <= 1:
        mask_block(g, mk, ld, 0, m, 0, n, scale)
        return
    for t in prange(parts, num_threads=run_threads(parts), schedule="static"):
        mask_block(g, mk, ld, m * t // parts, m * (t + 1) // parts, 0, n, scale)


cdef void pgemm_ep(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k, floating alpha,
                   const floating* A, int lda, const floating* B, int ldb,
                   floating beta, floating* C, int ldc, int nt, int ep, int act,
                   const floating* bias, floating* out, const floating* pre,
                   double* omax, const Dropout* dr, floating* dd,
                   unsigned char* dm, void* b16=NULL) noexcept nogil:
    """C := alpha * op(A) @ op(B) + beta * C (row-major), split over up to nt threads, then
    the epilogue ep on C (ldc == n), each thread on its own block while it is in cache
    (with dr, the dropout of the next layer's input, or of this gradient; see
    epilogue_block). With omax (EP_FORWARD only), also omax[0] := max |out| (inf if some
    entry is not finite).

    Each thread re-reads (and BLAS re-packs) the whole operand that is not split, so the
    split goes across the larger one: the rows of C (and of op(A)) when op(A) is larger,
    else the columns of C (and of op(B)).

    With b16 (float32 only: a scratch of b16_scratch's size), op(A) and op(B) are rounded to
    bfloat16 as they are packed and the sums are float32 (_bf16.h, its own threads), then
    the epilogue runs as a pass of its own.
    """
    cdef int t, nthr, by_rows = <Py_ssize_t>m * k > <Py_ssize_t>k * n
    cdef int late = 0, small = small_gemm(ta, tb, m, n, k, C)
    cdef Py_ssize_t dim = m if by_rows else n, i0, i1
    cdef double part[256]
    cdef double best = 0
    cdef bint few_rows = m <= FEW_ROWS and m <= n and <double>k * n >= PAR_FEW_ROWS_KN
    nthr = min(nt, 256)
    if nthr > dim // MIN_BLOCK:
        nthr = <int>(dim // MIN_BLOCK)
    if floating is float and b16 != NULL:
        bf16_gemm_ws_c(ta == Trans, tb == Trans, m, n, k, alpha, A, lda, B, ldb, beta, C,
                       ldc, run_threads(nt), b16)
        late = ep
    elif nthr <= 1 or (2.0 * m * n * k < PAR_GEMM_FLOPS and not few_rows):
        gemm_as(small, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        late = ep
    else:
        if ep != EP_NONE and not by_rows and row_coupled(act):
            late = ep
        for t in prange(nthr, num_threads=run_threads(nthr), schedule="static"):
            i0 = dim * t // nthr
            i1 = dim * (t + 1) // nthr
            if few_rows:          # whole vectors of columns each: the kernel's own layout
                i0 = min(dim, MIN_BLOCK * ((dim + MIN_BLOCK - 1) // MIN_BLOCK * t // nthr))
                i1 = min(dim, MIN_BLOCK * ((dim + MIN_BLOCK - 1) // MIN_BLOCK * (t + 1) // nthr))
            if by_rows:
                gemm_as(small, ta, tb, <int>(i1 - i0), n, k, alpha,
                     A + (i0 * lda if ta == NoTrans else i0), lda, B, ldb, beta, C + i0 * ldc,
                     ldc)
            else:
                gemm_as(small, ta, tb, m, <int>(i1 - i0), k, alpha, A, lda,
                     B + (i0 if tb == NoTrans else i0 * ldb), ldb, beta, C + i0, ldc)
            if late == EP_NONE:
                epilogue_block(ep, act, C, out, bias, pre, ldc, i0 if by_rows else 0,
                               i1 if by_rows else m, 0 if by_rows else i0,
                               n if by_rows else i1, dr, dd, dm)
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
        if dr != NULL:
            dropout_rows(out, dd, dm, ldc, m, n, dr, nt)
    elif late == EP_BACKWARD:
        if dr != NULL:
            mask_rows(C, dm, ldc, m, n, dr.scale, nt)
        act_backward(act, C, out, pre, m, n, nt)
    if late != EP_NONE and omax != NULL:
        omax[0] = maxabs(out, m, n, ldc)


# ---- the step ---------------------------------------------------------------------------

cdef struct Mode:
    # how a pass treats dropout and batch norm
    int training              # dropout on, batch norm with the batch's statistics
    unsigned long long key    # the dropout key of this batch (from the seed and the step)
    Py_ssize_t row0           # the first row's index in the batch (shards, chunks)
    double* running           # batch norm's running statistics (the network's), or NULL
    int update_running        # a training step: fold the batch statistics into them
    double bn_momentum, bn_eps
    void* b16                 # every product in bfloat16 with this scratch (see
                              # b16_scratch; float32 only), or NULL: in the network's dtype


cdef Mode EVAL                # no dropout, batch norm with the running statistics
EVAL.training = 0
EVAL.key = 0
EVAL.row0 = 0
EVAL.running = NULL
EVAL.update_running = 0
EVAL.bn_momentum = 0.1
EVAL.bn_eps = 1e-5
EVAL.b16 = NULL


cdef inline unsigned long long mix64(unsigned long long z) noexcept nogil:
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull
    return z ^ (z >> 31)


cdef inline int drops(const Mode* mode, LayerSpec* ly) noexcept nogil:
    """1 if this pass applies dropout to the layer's input."""
    return mode.training and ly.in_dropout > 0


cdef inline void layer_dropout(Dropout* dr, const Mode* mode, LayerSpec* ly,
                               int level) noexcept nogil:
    """The dropout of the input of the layer at ``level`` in this batch."""
    cdef unsigned long long k = mix64(mode.key + 0x9E3779B97F4A7C15ull * <unsigned long long>(level + 1))
    dr.rate = ly.in_dropout
    dr.scale = 1.0 / (1.0 - ly.in_dropout)
    dr.p24 = <unsigned int>(ly.in_dropout * 16777216.0 + 0.5)
    dr.ka = <unsigned int>k
    dr.kb = <unsigned int>(k >> 32)
    dr.row0 = mode.row0


cdef struct StepCtx:
    Layout* lay
    Bufs* batch               # the buffers of the whole batch
    Bufs* shard               # per-shard views of them (shards > 1)
    int shards                # batch shards (1 = none)
    # the rows of this call (a Samples)
    const void* X
    const void* targets       # NULL with labels
    const long long* labels   # NULL with targets
    const void* sample_weight # or NULL
    const long long* perm     # the epoch's order of the rows, or NULL: row order
    Py_ssize_t n_rows, n_in, n_out, batch_size, n_params
    # what a step computes
    int loss, count_correct, n_threads
    double l2                 # scikit-learn's alpha: + l2 / sum_w(batch) * W
    void* grads               # where the products write dE/dparams (direct: the buffer)
    void* shard_grads         # shards 1..S-1's gradients, one after the other
    void* backup              # the parameters before an update, where one is made
    # the optimizer
    OptParams opt
    OptBuffers* opt_bufs
    long long t               # steps taken
    double last_loss          # the last batch's mean loss
    int loss_increased        # this batch's mean loss is above the last's (iRprop+)
    # penalties and constraints (see TrainState)
    double l1                 # + l1 * sign(w) in the gradient
    int decay_biases          # biases get the weight decay and L1 too
    double clip_value         # each gradient entry clamped to [-clip_value, clip_value]
    double clip_norm          # the gradient scaled to a global norm <= clip_norm (0: off)
    double grad_scale         # this step's scale from clip_norm (1 otherwise)
    double max_norm           # each unit's incoming weights rescaled to norm <= max_norm
    void* col_scratch         # max_norm: one entry per unit of the widest layer
    # SGD momentum, direct: the products add the gradient straight into the momentum buffer
    int direct
    int scaled                # direct: the buffer holds mu*buf (next products use beta=1)
    int checked               # direct, unsharded: back up only steps that could overflow
    double param_bound        # direct: >= max|params| (< 0: not known, measure)
    double buffer_bound       # direct: >= max|momentum buffer|
    double new_param_max      # direct: max |params|, |buffer| this step's updates wrote
    double new_buffer_max
    double* input_max         # checked: >= max |input| of each layer in this step
    double input_bound        # >= max |X| over all rows, or -1: measure per batch
    double output_grad_max    # checked: max |dE/d(pre-activation)| of the output layer
    # dropout and batch norm
    Mode mode                 # training, with this step's dropout key
    unsigned long long dropout_seed
    size_t b16_bytes          # bf16 products: the scratch of one shard (mode.b16: shard 0's)


cdef size_t b16_scratch(Layout* lay, Py_ssize_t rows) noexcept nogil:
    """Bytes (a multiple of 64) of the scratch that every bf16 product of a pass over up to
    ``rows`` rows needs: op(A) has ``rows`` rows (forward, input gradients) or n_in (dW)."""
    cdef Py_ssize_t m = rows
    cdef int i
    for i in range(lay.L):
        m = max(m, lay.units[i])
    return (bf16_scratch_bytes(<int>m) + 63) // 64 * 64


cdef class B16Scratch:
    """64-byte aligned scratch for bf16 products, freed with its owner."""
    cdef void* raw
    cdef void* ptr

    def __cinit__(self, size_t nbytes):
        self.raw = malloc(nbytes + 64)
        if self.raw == NULL:
            raise MemoryError()
        self.ptr = <void*>((<size_t>self.raw + 63) // 64 * 64)

    def __dealloc__(self):
        free(self.raw)


cdef void forward(Layout* lay, Bufs* w, const floating* params, const floating* X,
                  Py_ssize_t nb, floating* out, int nt, double* input_max,
                  const Mode* mode) noexcept nogil:
    """Layer by layer: pre = drop(z) @ W + b (normalized with batch norm), z = f(pre); the
    last layer writes to `out` if given. A layer's input dropout is applied in the
    previous layer's epilogue (the first layer's on X here), into D with its mask in M.
    With input_max, input_max[i] >= max |input of layer i| (after dropout) for the hidden
    layers i >= 1."""
    cdef int i, L = lay.L, track, drop_next
    cdef LayerSpec* ly
    cdef const floating* src
    cdef floating* dst
    cdef floating* pre
    cdef floating* dd
    cdef Dropout dr
    cdef double* run
    cdef double scale
    for i in range(L):
        ly = &lay.layer[i]
        src = X if i == 0 else <floating*>w.A[i]
        if drops(mode, ly):
            if i == 0:
                layer_dropout(&dr, mode, ly, 0)
                dropout_rows(X, <floating*>w.D[0], w.M[0], ly.n_in, nb, ly.n_in, &dr, nt)
            src = <floating*>w.D[i]
        dst = out if (i == L - 1 and out != NULL) else <floating*>w.A[i + 1]
        pre = <floating*>w.P[i + 1] if w.P[i + 1] != NULL else dst
        drop_next = i + 1 < L and drops(mode, &lay.layer[i + 1])
        scale = 1.0 / (1.0 - lay.layer[i + 1].in_dropout) if drop_next else 1.0
        if drop_next:
            layer_dropout(&dr, mode, &lay.layer[i + 1], i + 1)
        dd = <floating*>w.D[i + 1] if drop_next else NULL
        track = input_max != NULL and i < L - 1
        if track and act_bound(ly.act) >= 0:
            input_max[i + 1] = act_bound(ly.act) * scale
            track = 0
        if ly.batch_norm:
            pgemm(NoTrans, NoTrans, <int>nb, <int>ly.n_out, <int>ly.n_in, <floating>1, src,
                  <int>ly.n_in, params + ly.w_off, <int>ly.n_out, <floating>0, pre,
                  <int>ly.n_out, nt, mode.b16)
            run = mode.running + ly.stat_off if mode.running != NULL else NULL
            bn_forward(pre, params + ly.b_off, params + ly.g_off, params + ly.be_off,
                       <floating*>w.XH[i], w.S[i], w.S[i] + ly.n_out, w.S[i] + 2 * ly.n_out,
                       nb, ly.n_out, mode.bn_eps, run, run + ly.n_out if run != NULL else NULL,
                       mode.training, nt)
            if mode.training and mode.update_running and run != NULL:
                update_running(run, w.S[i], nb, ly.n_out, mode.bn_momentum)
            bias_act_forward(ly.act, pre, dst, <floating*>w.zero, nb, ly.n_out, nt)
            if drop_next:
                dropout_rows(dst, dd, w.M[i + 1], ly.n_out, nb, ly.n_out, &dr, nt)
            if track:
                input_max[i + 1] = maxabs(dst, nb, ly.n_out, ly.n_out) * scale
        else:
            pgemm_ep(NoTrans, NoTrans, <int>nb, <int>ly.n_out, <int>ly.n_in, <floating>1, src,
                     <int>ly.n_in, params + ly.w_off, <int>ly.n_out, <floating>0, pre,
                     <int>ly.n_out, nt, EP_FORWARD, ly.act, params + ly.b_off, dst, NULL,
                     input_max + i + 1 if track else NULL, &dr if drop_next else NULL, dd,
                     w.M[i + 1] if drop_next else NULL, mode.b16)
            if track:
                input_max[i + 1] *= scale


cdef void update_running(double* run, const double* stats, Py_ssize_t n, Py_ssize_t k,
                         double momentum) noexcept nogil:
    """running mean, var := (1 - momentum) * running + momentum * batch's (the variance
    unbiased, n/(n-1), as torch.nn.BatchNorm1d)."""
    cdef Py_ssize_t j
    cdef double unbias = n / (n - 1.0) if n > 1 else 1.0
    for j in range(k):
        run[j] = (1 - momentum) * run[j] + momentum * stats[j]
        run[k + j] = (1 - momentum) * run[k + j] + momentum * stats[k + j] * unbias


cdef inline void range_opts(StepCtx* c, GradOpts* go, int weights) noexcept nogil:
    """What the update of a range of weights (weights=1) or of biases does to its gradient."""
    cdef int penalized = weights or c.decay_biases
    go.weight_decay = c.opt.weight_decay if penalized else 0
    go.l1 = c.l1 if penalized else 0
    go.clip_value = c.clip_value
    go.scale = c.grad_scale


cdef int fuse_sgd = 1      # tests turn it off to compare with the separate update
cdef long long fused_sgd_count = 0   # layer updates done inside dW's product (for tests)
# the largest W whose bf16 SGD momentum update is fused into dW's product: W1's layers
# (0.26M, 0.4M weights) train 4-5% faster at 2 threads (the buffer no longer read back
# from the other core's cache), W3's (2M, 4M) 1.5% slower (a streaming pass over a W that
# is not in cache beats the tiles' row pieces)
cdef Py_ssize_t FUSE_SGD_MAX = 1 << 20


def _set_fused_sgd(bint on):
    """Tests only: whether bf16 steps of SGD momentum update W inside dW's product (see
    layer_grads); returns the previous setting."""
    global fuse_sgd
    cdef int old = fuse_sgd
    fuse_sgd = on
    return bool(old)


def _fused_sgd_count():
    """Tests only: how many layer updates so far were done inside dW's product."""
    return fused_sgd_count


cdef int update_range(StepCtx* c, floating* params, floating* g, Py_ssize_t a,
                      Py_ssize_t z, floating* bk, int last, const GradOpts* go) noexcept nogil:
    """The optimizer's update of params[a:z]; 1 if all finite. Direct: the old values are
    copied to bk if given; the others always back up."""
    if c.direct:
        return momentum_step(&c.opt, params + a, g + a, z - a, not last,
                             bk + a if bk != NULL else NULL, c.n_threads, &c.new_param_max,
                             &c.new_buffer_max, go.weight_decay)
    return optimizer_step(&c.opt, c.opt_bufs, c.t, c.loss_increased, params, g,
                          <floating*>c.backup, a, z, c.n_threads, go)


cdef inline int splits_ranges(StepCtx* c) noexcept nogil:
    """1 when weights and biases are updated differently (decay or L1 on weights only)."""
    return not c.decay_biases and (c.opt.weight_decay != 0 or c.l1 != 0)


cdef int update_layer(StepCtx* c, floating* params, floating* g, int i, floating* bk,
                      int last, int w_done=0) noexcept nogil:
    """Layer i's update: W with the weights' decay and L1, b (and batch norm's gamma, beta)
    with the biases' (none unless decay_biases), then W's max-norm constraint. 1 if all
    finite. w_done: W was updated already (by dW's product), only the rest is."""
    cdef LayerSpec* ly = &c.lay.layer[i]
    cdef GradOpts gw, gb
    cdef int ok
    range_opts(c, &gw, 1)
    if w_done:
        gb = gw
        if splits_ranges(c):
            range_opts(c, &gb, 0)
        ok = update_range(c, params, g, ly.b_off, ly.end_off, bk, last, &gb)
    elif splits_ranges(c):
        range_opts(c, &gb, 0)
        ok = update_range(c, params, g, ly.w_off, ly.b_off, bk, last, &gw)
        ok &= update_range(c, params, g, ly.b_off, ly.end_off, bk, last, &gb)
    else:
        ok = update_range(c, params, g, ly.w_off, ly.end_off, bk, last, &gw)
    if c.max_norm > 0:
        max_norm_columns(params + ly.w_off, ly.n_in, ly.n_out, c.max_norm,
                         <floating*>c.col_scratch)
    return ok


cdef int update_all(StepCtx* c, floating* params, floating* g, floating* bk,
                    int last) noexcept nogil:
    """The update of every parameter once all gradients are known (sharded or clipped
    steps): one pass over the flat buffer, or layer by layer when the ranges differ."""
    cdef int i, ok = 1
    cdef GradOpts go
    if not splits_ranges(c) and c.max_norm == 0:
        range_opts(c, &go, 1)
        return update_range(c, params, g, 0, c.n_params, bk, last, &go)
    for i in range(c.lay.L):
        ok &= update_layer(c, params, g, i, bk, last)
    return ok


cdef double clip_scale(StepCtx* c, const floating* params, const floating* g) noexcept nogil:
    """min(1, clip_norm / (||gradient|| + 1e-6)) as torch.nn.utils.clip_grad_norm_, the norm
    taken of the gradient the updates will use (penalties added, values clipped)."""
    cdef int i
    cdef double total = 0
    cdef LayerSpec* ly
    if not splits_ranges(c):
        total = grad_sumsq(params, g, c.n_params, c.l1, c.clip_value, c.n_threads)
    else:
        for i in range(c.lay.L):
            ly = &c.lay.layer[i]
            total += grad_sumsq(params + ly.w_off, g + ly.w_off, ly.b_off - ly.w_off, c.l1,
                                c.clip_value, c.n_threads)
            total += grad_sumsq(params + ly.b_off, g + ly.b_off, ly.end_off - ly.b_off, 0,
                                c.clip_value, c.n_threads)
    return min(1.0, c.clip_norm / (sqrt(total) + 1e-6))


cdef double OVERFLOW_MARGIN = 1048576.0   # 2**20: the bounds below stay this far from the max


cdef int may_overflow(StepCtx* c, floating* params, Py_ssize_t nb, floating beta,
                      floating l2coef) noexcept nogil:
    """1 unless this direct step's products and update provably stay finite.

    With Z_i >= max|input of layer i| and G_i >= max|dE/d(pre-activation) of layer i|,
    every entry of beta*buf + dW (and db) is at most beta*B + nb*max(Z_i, 1)*G_i + l2coef*Pm,
    where Pm = max|params| and B = max|buf|; then d = buf + wd*p and p - lr*d are bounded
    too. Every sum of the products is bounded by its sum of absolute values, so a bound
    below max/2**20 rules out overflow whatever the order of summation. G of the output
    layer is measured; below it G_{i-1} <= n_out(i) * Pm * max|f'| * s_i * G_i, with s_i
    the scale of layer i's input dropout (1 without), and Z_i counts it too. Batch norm
    turns G (of h) into |gamma| * istd * (G - mean G - xhat * mean(G xhat)), at most
    Pm * max(istd) * (2 + sqrt(nb - 1)) * G as |xhat| <= sqrt(nb - 1) and mean |xhat| <= 1,
    and its dgamma, dbeta are at most nb * G. Pm and B are measured once per call, then kept
    exact by the update passes.
    """
    cdef int i
    cdef Py_ssize_t j
    cdef double gb = 0, g = c.output_grad_max, v, d, istd_max
    cdef double wd = fabs(c.opt.weight_decay), l2 = fabs(<double>l2coef)
    cdef Layout* lay = c.lay
    cdef LayerSpec* ly
    measure_bounds(c, params)
    for i in range(lay.L - 1, -1, -1):
        ly = &lay.layer[i]
        if ly.batch_norm:
            v = nb * g                            # dgamma, dbeta
            if not v <= gb:
                gb = v
            istd_max = 0
            for j in range(2 * ly.n_out, 3 * ly.n_out):
                if not c.batch.S[i][j] <= istd_max:    # NaN too (an overflowing forward)
                    istd_max = c.batch.S[i][j]
            g = g * c.param_bound * istd_max * (2 + sqrt(max(nb - 1.0, 0.0)))
        v = nb * max(c.input_max[i], 1.0) * g + l2 * c.param_bound
        if not v <= gb:          # also NaN
            gb = v
        if i > 0:
            g = (g * lay.layer[i].n_out * c.param_bound * slope_bound(lay.layer[i - 1].act)
                 / (1.0 - lay.layer[i].in_dropout))
    d = gb + wd * c.param_bound + (beta * c.buffer_bound if beta != 0 else 0)
    return beyond_limit(c, params, d)


cdef int update_may_overflow(StepCtx* c, floating* params, double gsum,
                             double l2coef) noexcept nogil:
    """1 unless the momentum update of the summed gradient (sharded step: the buffer holds
    mu*buf + g, max |buffer| <= gsum) provably stays finite: d = buf + (l2coef + wd) * p."""
    measure_bounds(c, params)
    return beyond_limit(c, params,
                        gsum + (fabs(l2coef) + fabs(c.opt.weight_decay)) * c.param_bound)


cdef inline void measure_bounds(StepCtx* c, floating* params) noexcept nogil:
    """max|params| and max|buffer| into c.param_bound, c.buffer_bound, unless known."""
    if c.param_bound < 0:
        c.param_bound = maxabs_par(params, c.n_params, c.n_threads)
        c.buffer_bound = maxabs_par(<floating*>c.grads, c.n_params, c.n_threads)


cdef inline int beyond_limit(StepCtx* c, floating* like, double d) noexcept nogil:
    """0 if an update direction bounded by d, and p - lr*d, stay max/2**20 below the
    largest float (like: only fixes the dtype)."""
    cdef double lim
    if floating is float:
        lim = 3.4028234663852886e38 / OVERFLOW_MARGIN
    else:
        lim = 1.7976931348623157e308 / OVERFLOW_MARGIN
    return not (d < lim and c.param_bound + fabs(c.opt.lr) * d < lim)


cdef inline void input_grad(Layout* lay, Bufs* w, const floating* params, Py_ssize_t nb,
                            int i, int nt, const Mode* mode) noexcept nogil:
    """G[i-1] = (G[i] W_i^T) * mask_i * f'(layer i-1's pre-activation), for i >= 1 (the
    mask and scale of layer i's input dropout, if this pass applies it)."""
    cdef LayerSpec* ly = &lay.layer[i]
    cdef Dropout dr
    cdef int drop = drops(mode, ly)
    if drop:
        layer_dropout(&dr, mode, ly, i)
    pgemm_ep(NoTrans, Trans, <int>nb, <int>ly.n_in, <int>ly.n_out, <floating>1,
             <floating*>w.G[i], <int>ly.n_out, params + ly.w_off, <int>ly.n_out, <floating>0,
             <floating*>w.G[i - 1], <int>ly.n_in, nt, EP_BACKWARD, lay.layer[i - 1].act, NULL,
             <floating*>w.A[i], <floating*>w.P[i], NULL, &dr if drop else NULL, NULL,
             w.M[i] if drop else NULL, mode.b16)


cdef inline int layer_grads(Layout* lay, Bufs* w, floating* params, floating* grads,
                            const floating* X, Py_ssize_t nb, floating beta, int nt, int i,
                            StepCtx* c, floating l2coef, floating* bk, int last,
                            const Mode* mode) noexcept nogil:
    """dW_i = z^T G[i] (z: the layer's input after dropout), db_i = sum G[i] (beta = 1
    accumulates into grads); with a training step c, + l2coef * W_i, then the layer's
    update. Returns 1 if it left all finite."""
    cdef LayerSpec* ly = &lay.layer[i]
    cdef Py_ssize_t j
    cdef const floating* src = X if i == 0 else <floating*>w.A[i]
    cdef floating* dw = grads + ly.w_off
    cdef int ok
    global fused_sgd_count
    if drops(mode, ly):
        src = <floating*>w.D[i]
    if (floating is float and mode.b16 != NULL and c != NULL and c.direct and bk == NULL
            and l2coef == 0 and fuse_sgd and ly.n_in * ly.n_out <= FUSE_SGD_MAX):
        # SGD momentum applied by the product to each tile of dW (the buffer) as it is made,
        # with the weights' decay (range_opts)
        ok = bf16_gemm_sgd_c(1, 0, <int>ly.n_in, <int>ly.n_out, <int>nb, 1, src, <int>ly.n_in,
                             <float*>w.G[i], <int>ly.n_out, beta, dw, <int>ly.n_out,
                             run_threads(nt), mode.b16, params + ly.w_off, <float>c.opt.lr,
                             <float>c.opt.weight_decay,
                             <float>c.opt.momentum if not last else <float>1,
                             &c.new_param_max, &c.new_buffer_max)
        column_sums(<floating*>w.G[i], nb, ly.n_out, grads + ly.b_off, beta, nt)
        fused_sgd_count += 1
        return ok & update_layer(c, params, grads, i, bk, last, 1)
    pgemm(Trans, NoTrans, <int>ly.n_in, <int>ly.n_out, <int>nb, <floating>1, src,
          <int>ly.n_in, <floating*>w.G[i], <int>ly.n_out, beta, dw, <int>ly.n_out, nt,
          mode.b16)
    column_sums(<floating*>w.G[i], nb, ly.n_out, grads + ly.b_off, beta, nt)
    if c == NULL:
        return 1
    if l2coef != 0:
        for j in range(ly.n_in * ly.n_out):
            dw[j] = dw[j] + l2coef * params[ly.w_off + j]
    return update_layer(c, params, grads, i, bk, last)


cdef int backward(Layout* lay, Bufs* w, floating* params, floating* grads,
                  const floating* X, Py_ssize_t nb, floating* dX, floating beta, int nt,
                  StepCtx* c, floating l2coef, int last, const Mode* mode) noexcept nogil:
    """From G[L-1] = dE/d(pre of the output), layer by layer down: through batch norm
    (dgamma, dbeta, then G[i] := dE/d(z W + b)), the input gradient
    g_{i-1} = (g_i W_i^T) * mask_i * f'(z_i) (and dX, the network's, only if given),
    dW = drop(z)^T g and db = sum g (beta = 1 accumulates into grads).

    With a training step c, each layer also gets l2coef * W added to dW and is updated
    (update_layer) as soon as its dW and db are known, while they are still in cache; its
    input gradient comes first, as it needs the old W. A direct unsharded step is backed up
    only if may_overflow cannot rule out an overflow. Returns 1 if every updated parameter
    is finite (-1: not, and no backup was made; cannot happen if may_overflow is right).
    """
    cdef int i, L = lay.L, ok = 1
    cdef LayerSpec* ly
    cdef LayerSpec* first = &lay.layer[0]
    cdef floating* bk = NULL
    cdef Dropout dr
    if c != NULL and (not c.checked or may_overflow(c, params, nb, beta, l2coef)):
        bk = <floating*>c.backup
    for i in range(L - 1, -1, -1):
        ly = &lay.layer[i]
        if ly.batch_norm:
            bn_backward(<floating*>w.G[i], <floating*>w.XH[i], params + ly.g_off,
                        w.S[i] + 2 * ly.n_out, nb, ly.n_out, grads + ly.g_off,
                        grads + ly.be_off, beta, mode.training, nt)
        if i > 0:
            input_grad(lay, w, params, nb, i, nt, mode)
        elif dX != NULL:
            pgemm(NoTrans, Trans, <int>nb, <int>first.n_in, <int>first.n_out, <floating>1,
                  <floating*>w.G[0], <int>first.n_out, params + first.w_off,
                  <int>first.n_out, <floating>0, dX, <int>first.n_in, nt, mode.b16)
            if drops(mode, first):
                layer_dropout(&dr, mode, first, 0)
                mask_rows(dX, w.M[0], first.n_in, nb, first.n_in, dr.scale, nt)
        ok &= layer_grads(lay, w, params, grads, X, nb, beta, nt, i, c, l2coef, bk, last,
                          mode)
    if c != NULL and not ok and bk == NULL:
        return -1
    return ok


cdef void add_l2(Layout* lay, const floating* params, floating* grads, floating coef) noexcept nogil:
    """dW_l += coef * W_l for every layer (weights only, not biases)."""
    cdef int i
    cdef Py_ssize_t j, off
    for i in range(lay.L):
        off = lay.layer[i].w_off
        for j in range(off, off + lay.layer[i].n_in * lay.layer[i].n_out):
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
    if nt <= 1 or lay.any_bn:       # batch norm needs the statistics of the whole batch
        return 1
    for i in range(lay.L):
        f = 2.0 * batch * lay.layer[i].n_in * lay.layer[i].n_out
        step += 3 * f
        if f > biggest:
            biggest = f
    if biggest >= PAR_GEMM_FLOPS or step < SHARD_MIN_STEP_FLOPS:
        return 1
    return <int>max(1, min(nt, batch // SHARD_MIN_ROWS))


cdef double shard_step(Layout* lay, Bufs* sb, const floating* params, floating* g,
                       const floating* xb, const floating* tb, const long long* lb,
                       const floating* swb, Py_ssize_t rows, floating scale, int loss,
                       int count_acc, double* correct, floating beta,
                       const Mode* mode) noexcept nogil:
    """Forward, loss and backward of one shard's rows into g (g := beta*g + its gradient);
    mode.row0 is the shard's first row in the batch (its dropout masks)."""
    cdef double e
    cdef int L = lay.L
    cdef Py_ssize_t k = lay.units[L]
    forward(lay, sb, params, xb, rows, NULL, 1, NULL, mode)
    e = loss_and_output_grad(loss, lay.layer[L - 1].act, <floating*>sb.A[L],
                             <floating*>sb.P[L], tb, lb, swb, rows, k, scale,
                             <floating*>sb.G[L - 1], 1)
    if count_acc:
        correct[0] = count_correct(loss, <floating*>sb.A[L], tb, lb, rows, k)
    backward(lay, sb, <floating*>params, g, xb, rows, NULL, beta, 1, NULL, 0, 0, mode)
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


# ---- entry points: predict and gradients --------------------------------------------------

cdef check_workspace(Plan plan, Workspace ws, params, str kind, dtype=None,
                     Py_ssize_t n_params=-1):
    """The workspace fits the plan, the pass and the parameters (dtype and n_params:
    theirs, when params is None; a typed view passed as an object costs a Python
    memoryview per call)."""
    if ws.plan is not plan:
        raise ValueError("the workspace was made for another plan")
    if kind == "gradients" and ws.kind == "predict":
        raise ValueError("gradients need a workspace made with kind 'gradients' or 'train'")
    if kind == "train" and ws.kind != "train":
        raise ValueError("training needs a workspace made with kind 'train'")
    if (params.dtype if dtype is None else dtype) != ws.dtype \
            or (params.shape[0] if params is not None else n_params) != plan.n_params:
        raise ValueError(f"params must be {plan.n_params} entries of the workspace's dtype "
                         f"{ws.dtype}")


cdef double* running_stats(Plan plan, running) except? NULL:
    """The float64 running statistics of the plan's batch norm (NULL when it has none)."""
    if plan.n_stats == 0:
        return NULL
    if (not isinstance(running, np.ndarray) or running.dtype != np.float64
            or running.shape != (plan.n_stats,) or not running.flags.c_contiguous
            or not running.flags.writeable):
        raise ValueError(f"running must be the network's float64 batch-norm statistics "
                         f"({plan.n_stats} entries)")
    return <double*>cnp.PyArray_DATA(running)


def predict(Plan plan, Workspace ws, const floating[::1] params, const floating[:, ::1] X,
            floating[:, ::1] out, int nt, running=None, int n_layers=0, bint bf16=False):
    """out = network(X) in evaluation mode (no dropout; batch norm with the running
    statistics ``running``), in chunks of the workspace capacity; with n_layers, the
    output of that layer (1 = the first hidden layer's) instead of the network's. bf16
    (float32 only): each layer's product z W with z and W rounded to bfloat16 and float32
    sums (fastbp._bf16), the rest in float32."""
    cdef Py_ssize_t n = X.shape[0], s, nb, cap = ws.capacity
    cdef Py_ssize_t d = X.shape[1], k = out.shape[1]
    cdef Mode mode = EVAL
    cdef Layout lay = plan.lay
    cdef B16Scratch scratch
    check_workspace(plan, ws, None, "predict", F32 if floating is float else F64,
                    params.shape[0])
    mode.running = running_stats(plan, running)
    if bf16:
        if floating is not float:
            raise ValueError("bf16 products need a float32 network")
        scratch = B16Scratch(b16_scratch(&plan.lay, min(ws.capacity, n)))
        mode.b16 = scratch.ptr
    if n_layers:
        if not 1 <= n_layers <= plan.lay.L:
            raise ValueError(f"n_layers must be in [1, {plan.lay.L}], got {n_layers}")
        lay.L = n_layers          # the first n_layers layers, the last one's output in out
    if d != lay.units[0] or k != lay.units[lay.L] or out.shape[0] != n:
        raise ValueError("X and out must have the network's inputs and outputs as columns")
    if n == 0:
        return
    with nogil:
        s = 0
        while s < n:
            nb = min(cap, n - s)
            forward(&lay, &ws.b, &params[0], &X[0, 0] + s * d, nb, &out[0, 0] + s * k, nt,
                    NULL, &mode)
            s += nb


def predict_rows(Plan plan, list pool, cnp.ndarray params, X, Py_ssize_t max_rows, int nt,
                 running=None):
    """``predict``'s serving path, for the latency of a few rows: the float32 network of
    ``plan`` (parameters ``params``) on X when X is already a C-contiguous float32 ndarray
    of 1 to ``max_rows`` (at most POOLED_ROWS, the capacity of the workspaces kept in
    ``pool``) rows with the network's inputs as columns and only finite entries; the
    output array, or None when X is not that (the caller then takes the general path,
    which converts or reports). The checks, the pool and the output are all here: one
    call from Python, no memoryview."""
    cdef cnp.ndarray x, out
    cdef Workspace ws = None
    cdef Mode mode = EVAL
    cdef Layout* lay = &plan.lay
    cdef Py_ssize_t n, d = lay.units[0]
    cdef cnp.npy_intp dims[2]
    cdef const float* xp
    cdef double top
    if not cnp.PyArray_CheckExact(X):
        return None
    x = <cnp.ndarray>X
    if (cnp.PyArray_TYPE(x) != cnp.NPY_FLOAT32 or cnp.PyArray_NDIM(x) != 2
            or not cnp.PyArray_ISCARRAY_RO(x) or cnp.PyArray_DIM(x, 1) != d):
        return None
    n = cnp.PyArray_DIM(x, 0)
    if n < 1 or n > min(max_rows, POOLED) or cnp.PyArray_TYPE(params) != cnp.NPY_FLOAT32 \
            or cnp.PyArray_SIZE(params) != plan.n_params or not cnp.PyArray_ISCARRAY_RO(params):
        return None
    xp = <const float*>cnp.PyArray_DATA(x)
    with nogil:
        top = maxabs(xp, n, d, d)
    if not top < INFINITY:
        return None
    mode.running = running_stats(plan, running)
    if pool:
        ws = pool.pop()
    if ws is None or ws.plan is not plan or ws.capacity < n or ws.dtype != np.float32:
        ws = Workspace(plan, POOLED, np.float32, "predict")
    dims[0] = n
    dims[1] = lay.units[lay.L]
    out = cnp.PyArray_EMPTY(2, dims, cnp.NPY_FLOAT32, 0)
    with nogil:
        forward(lay, &ws.b, <const float*>cnp.PyArray_DATA(params), xp, n,
                <float*>cnp.PyArray_DATA(out), nt, NULL, &mode)
    if len(pool) < 4:
        pool.append(ws)
    return out


def loss_and_gradients(Plan plan, Workspace ws, const floating[::1] params,
                       floating[::1] grads, Samples data, int loss, floating[:, ::1] dX=None,
                       double l2=0, int nt=1, bint training=False, seed=None, running=None,
                       bint bf16=False):
    """Mean loss over all rows of ``data`` and its gradients into ``grads`` (accumulated
    over chunks of the workspace capacity), and dE/dX into dX if given. ``bf16``: every
    product with bfloat16 operands and float32 sums, as a bf16 TrainState (float32 only).

    With sample weights the mean is weighted (divided by the sum of weights); l2 adds
    ``l2 / sum_w * W`` to the weight gradients only (scikit-learn's alpha). ``training``:
    dropout with the masks of ``seed`` (row r's mask as in a batch holding all the rows)
    and batch norm with the batch's statistics (the workspace must then hold every row);
    else no dropout and batch norm with the running statistics. The running statistics
    are never changed here.
    """
    cdef Layout* lay = &plan.lay
    cdef Py_ssize_t n = data.n, s = 0, nb, cap = ws.capacity
    cdef Py_ssize_t d = lay.units[0], k = lay.units[lay.L]
    cdef double wsum, total = 0
    cdef floating beta = 0
    cdef const floating* X = <const floating*>data.x
    cdef const floating* T = <const floating*>data.t
    cdef const floating* sw = <const floating*>data.sw
    cdef floating* dxp = NULL
    cdef Mode mode = EVAL
    cdef B16Scratch scratch
    check_workspace(plan, ws, None, "gradients", F32 if floating is float else F64,
                    params.shape[0])
    data.check(plan, ws.dtype)
    if bf16:
        if floating is not float:
            raise ValueError("bf16 products need a float32 network")
        scratch = B16Scratch(b16_scratch(&plan.lay, ws.capacity))
        mode.b16 = scratch.ptr
    mode.running = running_stats(plan, running)
    mode.training = training
    if training:
        mode.key = mix64(<unsigned long long>(0 if seed is None else seed) & 0xFFFFFFFFFFFFFFFFull)
        if plan.lay.any_bn and ws.capacity < data.n:
            raise ValueError("batch norm in training mode needs every row in one batch: a "
                             "workspace of capacity >= n")
    if grads.shape[0] != plan.n_params:
        raise ValueError("grads must have one entry per parameter")
    if dX is not None:
        if dX.shape[0] != n or dX.shape[1] != d:
            raise ValueError("dX must have the shape of X")
        dxp = &dX[0, 0]
    if n == 0:
        raise ValueError("no rows")
    wsum = weight_sum(sw, n) if sw != NULL else <double>n
    cdef floating scale = <floating>(1.0 / wsum)
    with nogil:
        while s < n:
            nb = min(cap, n - s)
            mode.row0 = s
            forward(lay, &ws.b, &params[0], X + s * d, nb, NULL, nt, NULL, &mode)
            total += loss_and_output_grad(
                loss, lay.layer[lay.L - 1].act, <floating*>ws.b.A[lay.L],
                <floating*>ws.b.P[lay.L], T + s * k if T != NULL else NULL,
                data.lab + s if data.lab != NULL else NULL, sw + s if sw != NULL else NULL,
                nb, k, scale, <floating*>ws.b.G[lay.L - 1], nt)
            backward(lay, &ws.b, <floating*>&params[0], &grads[0], X + s * d, nb,
                     dxp + s * d if dxp != NULL else NULL, beta, nt, NULL, 0, 0, &mode)
            beta = 1
            s += nb
        if l2 != 0:
            add_l2(lay, &params[0], &grads[0], <floating>(l2 / wsum))
    return total / wsum


# ---- shuffling --------------------------------------------------------------------------

cdef inline unsigned long long splitmix64(unsigned long long* state) noexcept nogil:
    cdef unsigned long long z
    state[0] += 0x9E3779B97F4A7C15ull
    z = state[0]
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull
    return z ^ (z >> 31)


def shuffle(perm, state):
    """perm := a uniformly random permutation of range(len(perm)) (Fisher-Yates, SplitMix64
    from the uint64 state[0], which advances)."""
    shuffle_rows(perm, state)


cdef shuffle_rows(cnp.int64_t[::1] perm, cnp.uint64_t[::1] state):
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


# ---- training -----------------------------------------------------------------------------

cpdef enum Status:
    OK = 0
    LOSS_NOT_FINITE = 1       # the batch loss was NaN/inf: nothing applied
    UPDATE_NOT_FINITE = 2     # the update gave a non-finite parameter: undone from the backup
    UNGUARDED_OVERFLOW = 3    # ... where no backup was made (an internal error)

BatchesResult = namedtuple("BatchesResult", "steps samples status failed_batch")
BatchesResult.__doc__ = """What one ``train_batches`` call did: steps (updates applied),
samples (rows trained on), status (a Status) and failed_batch (its index, or -1)."""


cdef class TrainState:
    """What one ``fit`` carries from one ``train_batches`` call to the next.

    It holds the network's plan and parameters, the training workspace, the optimizer's
    settings (``OptimizerConfig``; ``begin_epoch`` sets the learning rate) and state
    (``OptimizerState``, kept in step with every update), the loss and its options, the
    shuffle's RNG state (a uint64 array, shared with the caller so it carries over fits)
    and permutation, the sums of the current epoch, and the bounds of the overflow check.

    SGD with heavy-ball momentum keeps no gradient buffer: the products add the gradient
    straight into the momentum buffer, which between the steps of an epoch holds mu*buf (the
    next products then add with beta=1, saving a pass; the epoch's last step leaves the
    plain buffer, so how an epoch is cut into calls never changes the arithmetic). ``close``
    (or the next ``begin_epoch``) brings an epoch cut short back to the plain buffer.
    Unsharded, such a step is backed up only if a bound cannot rule out an overflow: from
    bounds on max|params| and max|buffer| kept across calls (``parameters_changed`` drops
    them when Python code may have changed the parameters) and ``Samples.input_bound``.

    Penalties and constraints (each off by default): ``l1`` adds l1*sign(w) to the
    gradient of the weights, ``clip_value`` clamps every gradient entry, ``clip_norm``
    scales the whole gradient to a norm of at most clip_norm (torch's clip_grad_norm_;
    the gradients are then all computed before any update), ``max_norm`` rescales each
    unit's incoming weights (a column of W) to a norm of at most max_norm after its update.
    The optimizer's weight decay and the L1 penalty apply to the weights only, unless
    ``decay_biases``. All of it happens in the update pass (the norm: one pass before).

    Dropout masks come from the key of (``dropout_seed``, the step count t, the layer) and
    the entry's place in its batch: the same for any thread count, and after a checkpoint
    (t is the optimizer's). Batch norm normalizes with the batch's statistics and folds
    them into ``running`` (the network's, momentum ``bn_momentum``) at each step.

    ``precision`` "bf16" (float32 parameters): every product of a step (forward, input
    gradients, dW) rounds its operands to bfloat16 as it packs them and sums in float32
    (_bf16.h), with a scratch this state owns (one per batch shard: no allocation per
    step); None: the parameters' dtype.

    ``distributed``: the state of one process of data-parallel training, stepped by
    ``gradient_share`` (its share of a global batch) and ``apply_update`` (after the sum
    over the processes) instead of train_batches.

    ``n_threads`` splits the work; ``run_threads`` (<= n_threads, settable between calls)
    is how many threads run it: results do not depend on it.
    """
    cdef StepCtx ctx
    cdef readonly Plan plan
    cdef readonly object params
    cdef readonly Workspace workspace
    cdef readonly OptimizerConfig optimizer
    cdef readonly OptimizerState optimizer_state
    cdef readonly object rng, perm
    cdef readonly Py_ssize_t batch_size
    cdef readonly int n_threads
    cdef public int run_threads
    cdef readonly double loss_sum, weight_sum, correct
    cdef readonly Py_ssize_t samples
    cdef readonly bint shuffled
    cdef readonly object running
    cdef readonly str precision
    cdef B16Scratch b16_scratch

    def __cinit__(self, Plan plan, params, Workspace workspace, OptimizerConfig optimizer,
                  OptimizerState optimizer_state, int loss, *, Py_ssize_t batch_size,
                  int n_threads=1, bint count_correct=False, double l2=0, rng=None,
                  double l1=0, bint decay_biases=False, clip_value=None, clip_norm=None,
                  max_norm=None, running=None, dropout_seed=0, double bn_momentum=0.1,
                  double bn_eps=1e-5, bint distributed=False, str precision=None):
        cdef StepCtx* c = &self.ctx
        for name, v in (("l2", l2), ("l1", l1), ("clip_value", clip_value),
                        ("clip_norm", clip_norm), ("max_norm", max_norm)):
            if v is not None and not (v >= 0 and v < INFINITY):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        for name, v in (("clip_value", clip_value), ("clip_norm", clip_norm),
                        ("max_norm", max_norm)):
            if v is not None and v == 0:
                raise ValueError(f"{name} must be > 0 (None: off), got {v!r}")
        check_workspace(plan, workspace, params, "train")
        if not params.flags.c_contiguous or not params.flags.writeable:
            raise ValueError("params must be a writeable C-contiguous array")
        if not 1 <= batch_size <= workspace.capacity:
            raise ValueError(f"batch_size must be in [1, {workspace.capacity}] (the "
                             f"workspace capacity), got {batch_size}")
        if optimizer_state.size != plan.n_params or optimizer_state.dtype != workspace.dtype:
            raise ValueError("the optimizer state must have one entry per parameter, in the "
                             "parameters' dtype")
        self.plan, self.params, self.workspace = plan, params, workspace
        self.optimizer, self.optimizer_state = optimizer, optimizer_state
        self.rng = np.zeros(1, np.uint64) if rng is None else rng
        if not (isinstance(self.rng, np.ndarray) and self.rng.dtype == np.uint64
                and self.rng.shape == (1,)):
            raise ValueError("rng must be a uint64 array of one entry")
        self.perm = None
        self.batch_size = batch_size
        self.n_threads = max(1, n_threads)
        self.run_threads = self.n_threads
        c.lay = &plan.lay
        c.batch = &workspace.b
        c.shard = workspace.sh
        c.shards = workspace.shards
        c.n_in = plan.lay.units[0]
        c.n_out = plan.lay.units[plan.lay.L]
        c.batch_size = batch_size
        c.n_params = plan.n_params
        c.loss = loss
        c.count_correct = count_correct
        c.n_threads = self.n_threads
        c.l2 = l2
        c.opt = optimizer.params
        c.opt_bufs = &optimizer_state.buf
        c.l1 = l1
        c.decay_biases = decay_biases
        c.clip_value = INFINITY if clip_value is None else clip_value
        c.clip_norm = 0 if clip_norm is None else clip_norm
        c.grad_scale = 1
        c.max_norm = 0 if max_norm is None else max_norm
        c.col_scratch = NULL
        # the products add the gradient straight into the momentum buffer only when the
        # update takes it as it is
        c.direct = (accumulates_momentum(&c.opt) and c.l1 == 0 and c.clip_norm == 0
                    and c.clip_value == INFINITY and not distributed)
        if distributed and workspace.shards != 1:
            raise ValueError("a distributed state needs a workspace without batch shards")
        c.checked = c.direct and c.shards == 1
        c.mode = EVAL
        c.mode.training = 1
        c.mode.update_running = 1
        c.mode.bn_momentum = bn_momentum
        c.mode.bn_eps = bn_eps
        c.mode.running = running_stats(plan, running)
        self.running = running
        c.dropout_seed = <unsigned long long>(int(dropout_seed) & 0xFFFFFFFFFFFFFFFF)
        if precision is None:
            precision = workspace.dtype.name
        self.precision = precision
        c.b16_bytes = 0
        if precision == "bf16":
            if workspace.dtype != F32:
                raise ValueError("precision 'bf16' needs float32 parameters")
            c.b16_bytes = b16_scratch(&plan.lay, workspace.capacity)
            self.b16_scratch = B16Scratch(c.b16_bytes * max(1, workspace.shards))
            c.mode.b16 = self.b16_scratch.ptr
        elif precision != workspace.dtype.name:
            raise ValueError(f"precision must be {workspace.dtype.name!r} or 'bf16', got "
                             f"{precision!r}")
        self._check_buffers()
        c.grads = (optimizer_state.buf.momentum_buffer if c.direct
                   else cnp.PyArray_DATA(workspace.grads))
        c.shard_grads = cnp.PyArray_DATA(workspace.shard_grads)
        c.backup = cnp.PyArray_DATA(workspace.backup)
        c.scaled = 0
        c.param_bound = -1
        c.buffer_bound = -1
        c.input_max = <double*>calloc(plan.lay.L, sizeof(double))
        if c.max_norm > 0:
            c.col_scratch = calloc(plan.lay.widest, sizeof(double))
        if c.input_max == NULL or (c.max_norm > 0 and c.col_scratch == NULL):
            raise MemoryError()

    cdef _check_buffers(self):
        """The buffers the optimizer's update reads are there."""
        cdef OptParams* op = &self.ctx.opt
        need = {0: ("momentum_buffer",) if op.momentum != 0 else (),
                1: ("exp_avg", "exp_avg_sq"),
                2: ("square_avg",) + (("momentum_buffer",) if op.momentum != 0 else ()),
                3: ("prev_grad", "step_size", "prev_step"),
                4: ("prev_step", "prev_slope"),
                5: ("exp_avg", "exp_avg_sq")}.get(op.kind)
        if need is None:
            raise ValueError(f"unknown optimizer kind {op.kind}")
        missing = [name for name in need if name not in self.optimizer_state]
        if missing:
            raise ValueError(f"the optimizer state lacks the buffer(s) {missing}")

    def __dealloc__(self):
        free(self.ctx.input_max)
        free(self.ctx.col_scratch)

    def begin_epoch(self, Samples data, double lr, bint shuffle=True):
        """Start an epoch over ``data``: learning rate ``lr``, the rows in a new random
        order (from the RNG) if ``shuffle``, else in order; the epoch's sums back to 0."""
        self._settle()
        self.ctx.opt.lr = lr
        self.loss_sum = self.weight_sum = self.correct = 0
        self.samples = 0
        self.shuffled = shuffle
        if shuffle:
            if self.perm is None or self.perm.shape[0] != data.n:
                self.perm = np.empty(data.n, dtype=np.int64)
            shuffle_rows(self.perm, self.rng)

    def parameters_changed(self):
        """The parameters (or the momentum buffer) may have been changed outside the engine:
        measure their bounds again before relying on them."""
        self.ctx.param_bound = -1

    def close(self):
        """End the fit: an epoch cut short leaves the plain momentum buffer (not mu*buf)."""
        self._settle()

    cdef _settle(self):
        cdef StepCtx* c = &self.ctx
        if not c.scaled:
            return
        cdef bint f32 = self.workspace.dtype == np.float32
        with nogil:
            if f32:
                divide_buffer(<float*>c.grads, c.n_params, c.opt.momentum, c.n_threads)
            else:
                divide_buffer(<double*>c.grads, c.n_params, c.opt.momentum, c.n_threads)
        c.scaled = 0
        c.param_bound = -1

    @property
    def momentum_scaled(self):
        """True mid-epoch when the momentum buffer holds mu*buf."""
        return bool(self.ctx.scaled)

    @property
    def param_bound(self):
        """>= max |params| (SGD momentum), or < 0 when not known."""
        return self.ctx.param_bound

    @property
    def buffer_bound(self):
        """>= max |momentum buffer| when param_bound >= 0."""
        return self.ctx.buffer_bound

    @property
    def lr(self):
        return self.ctx.opt.lr


cdef Py_ssize_t PAR_GATHER_MIN = 32768   # floats of a batch worth copying with all threads


cdef inline void gather_row(StepCtx* c, const floating* X, const floating* T,
                            const floating* sw, floating* xg, floating* tg, floating* swg,
                            long long* lab, Py_ssize_t s, Py_ssize_t r) noexcept nogil:
    """Row r of the batch starting at position s of the permutation into the buffers."""
    cdef Py_ssize_t row = c.perm[s + r], d = c.n_in, k = c.n_out
    memcpy(xg + r * d, X + row * d, d * sizeof(floating))
    if c.labels != NULL:
        lab[r] = c.labels[row]
    else:
        memcpy(tg + r * k, T + row * k, k * sizeof(floating))
    if sw != NULL:
        swg[r] = sw[row]


cdef int train_step(StepCtx* c, Py_ssize_t bi, floating* params, double* loss_out,
                    double* wsum_out, double* correct_out, Py_ssize_t* nb_out) noexcept nogil:
    """Gather, forward, loss, backward and update of batch bi; returns a Status, or -1 if
    the batch is empty. Status UPDATE_NOT_FINITE: undone from c.backup. A direct step
    leaves the plain buffer (not mu*buf) at the end of the epoch.
    """
    cdef Layout* lay = c.lay
    cdef Bufs* w = c.batch
    cdef Py_ssize_t d = c.n_in, k = c.n_out, P = c.n_params, s, nb, r, r0, r1
    cdef int S = c.shards, t, L = lay.L
    cdef floating* X = <floating*>c.X
    cdef floating* T = <floating*>c.targets
    cdef floating* sw = <floating*>c.sample_weight
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
    cdef Mode shard_mode[256]
    cdef floating scale, beta = 0
    cdef floating* bk = NULL
    cdef double gsum = 0
    cdef int ok, last, sharded, deferred = c.clip_norm > 0
    s = bi * c.batch_size
    nb = min(c.batch_size, c.n_rows - s)
    nb_out[0] = nb
    if nb <= 0:
        return -1
    if c.perm != NULL:
        # the rows of the next batch are requested now, to arrive while this one computes;
        # a large batch is copied by all threads (W1 at 2 threads: the serial copy was 51 us
        # of a 1.7 ms bf16 step; +1.5% bf16, +1.8% float32)
        t = run_threads(c.n_threads) if nb * d >= PAR_GATHER_MIN else 1
        for r in prange(nb, num_threads=t, schedule="static"):
            if s + nb + r < c.n_rows:
                fastbp_prefetch_row(X + c.perm[s + nb + r] * d, d * sizeof(floating))
            gather_row(c, X, T, sw, xg, tg, swg, w.lab, s, r)
        xb = xg
        tb = tg if c.labels == NULL else NULL
        lb = w.lab if c.labels != NULL else NULL
        swb = swg if sw != NULL else NULL
    else:
        xb = X + s * d
        tb = T + s * k if c.labels == NULL else NULL
        lb = c.labels + s if c.labels != NULL else NULL
        swb = sw + s if sw != NULL else NULL
    wsum = weight_sum(swb, nb) if swb != NULL else <double>nb
    scale = <floating>(1.0 / wsum)
    c.mode.key = mix64(c.dropout_seed + 0x9E3779B97F4A7C15ull * <unsigned long long>(c.t + 1))
    if c.direct and c.t > 0:
        beta = 1 if c.scaled else <floating>c.opt.momentum
    sharded = S > 1 and nb >= S * SHARD_MIN_ROWS
    if sharded:
        for t in range(S):
            shard_mode[t] = c.mode
            shard_mode[t].row0 = nb * t // S
            if c.mode.b16 != NULL:
                shard_mode[t].b16 = <char*>c.mode.b16 + t * c.b16_bytes
        for t in prange(S, num_threads=run_threads(S), schedule="static"):
            r0 = nb * t // S
            r1 = nb * (t + 1) // S
            point_shard(lay, w, &c.shard[t], r0, params)
            gt = g if t == 0 else sg + (t - 1) * P
            shard_correct[t] = 0
            shard_loss[t] = shard_step(
                lay, &c.shard[t], params, gt, xb + r0 * d,
                tb + r0 * k if tb != NULL else NULL, lb + r0 if lb != NULL else NULL,
                swb + r0 if swb != NULL else NULL, r1 - r0, scale, c.loss, c.count_correct,
                &shard_correct[t], beta if t == 0 else <floating>0, &shard_mode[t])
        bl = 0
        for t in range(S):
            bl += shard_loss[t]
            correct += shard_correct[t]
        if not isfinite(bl):
            loss_out[0] = bl
            return LOSS_NOT_FINITE
        gsum = sum_shards(g, sg, S - 1, P, c.n_threads)
    else:
        forward(lay, w, params, xb, nb, NULL, c.n_threads, c.input_max if c.checked else NULL,
                &c.mode)
        bl = loss_and_output_grad(c.loss, lay.layer[L - 1].act, <floating*>w.A[L],
                                  <floating*>w.P[L], tb, lb, swb, nb, k, scale,
                                  <floating*>w.G[L - 1], c.n_threads)
        if not isfinite(bl):
            loss_out[0] = bl
            return LOSS_NOT_FINITE
        if c.count_correct:
            correct = count_correct(c.loss, <floating*>w.A[L], tb, lb, nb, k)
        if c.checked:
            c.input_max[0] = ((c.input_bound if c.input_bound >= 0 else maxabs(xb, nb, d, d))
                              / (1.0 - lay.layer[0].in_dropout))
            c.output_grad_max = maxabs(<floating*>w.G[L - 1], nb, k, k)
    loss_out[0] = bl
    wsum_out[0] = wsum
    correct_out[0] = correct
    c.loss_increased = (bl / wsum) > c.last_loss
    c.last_loss = bl / wsum
    last = s + nb >= c.n_rows
    c.new_param_max = 0
    c.new_buffer_max = 0
    if sharded or deferred:
        if not sharded:       # the gradients first: clipping needs their global norm
            backward(lay, w, params, g, xb, nb, NULL, beta, c.n_threads, NULL, 0, 0, &c.mode)
        if c.l2 != 0:
            add_l2(lay, params, g, <floating>(c.l2 / wsum))
        if deferred:
            c.grad_scale = clip_scale(c, params, g)
        bk = <floating*>c.backup
        if c.direct and not update_may_overflow(c, params, gsum, c.l2 / wsum):
            bk = NULL
        ok = update_all(c, params, g, bk, last)
        c.grad_scale = 1
    else:
        ok = backward(lay, w, params, g, xb, nb, NULL, beta, c.n_threads, c,
                      <floating>(c.l2 / wsum), last, &c.mode)
    if c.direct:
        c.scaled = not last
    if ok < 0 or (sharded and not ok and bk == NULL):
        return UNGUARDED_OVERFLOW
    if not ok:
        memcpy(params, c.backup, P * sizeof(floating))
        return UPDATE_NOT_FINITE
    if c.direct:
        c.param_bound = c.new_param_max
        c.buffer_bound = c.new_buffer_max
    c.t += 1
    return OK


def train_batches(TrainState state, Samples data, Py_ssize_t first_batch,
                  Py_ssize_t last_batch):
    """Train on batches [first_batch, last_batch) of the epoch that ``state.begin_epoch``
    started over ``data``; returns a BatchesResult.

    Each batch's loss and gradient are (sample-weighted) means over its rows; the epoch's
    sums (``state.loss_sum``, ``weight_sum``, ``correct``, ``samples``) grow batch by batch,
    so they do not depend on how the epoch is cut into calls. On a status other than OK the
    parameters are those before the failing batch (its update was never applied, or was
    undone) and the optimizer state is reset (it may hold the failed step).
    """
    cdef StepCtx* c = &state.ctx
    cdef Py_ssize_t bi, nb, steps = 0, seen = 0, bad = -1
    cdef double bl, wsum, corr
    cdef double total = state.loss_sum, wtotal = state.weight_sum, correct = state.correct
    cdef int status = OK, st, saved_cap
    cdef bint f32 = state.workspace.dtype == np.float32
    cdef float* p32 = <float*>cnp.PyArray_DATA(state.params)
    cdef double* p64 = <double*>cnp.PyArray_DATA(state.params)
    data.check(state.plan, state.workspace.dtype)
    if state.shuffled and (state.perm is None or state.perm.shape[0] != data.n):
        raise ValueError("begin_epoch was called with other samples")
    c.X = data.x
    c.targets = data.t
    c.labels = data.lab
    c.sample_weight = data.sw
    c.perm = <const long long*>cnp.PyArray_DATA(state.perm) if state.shuffled else NULL
    c.n_rows = data.n
    c.input_bound = data.input_bound
    c.t = state.optimizer_state.t
    c.last_loss = state.optimizer_state.last_loss
    saved_cap = thread_cap()
    set_thread_cap(min(state.run_threads, state.n_threads))
    with nogil:
        for bi in range(first_batch, last_batch):
            if f32:
                st = train_step(c, bi, p32, &bl, &wsum, &corr, &nb)
            else:
                st = train_step(c, bi, p64, &bl, &wsum, &corr, &nb)
            if st < 0:
                break
            if st != OK:
                status = st
                bad = bi
                break
            total += bl
            wtotal += wsum
            correct += corr
            seen += nb
            steps += 1
    set_thread_cap(saved_cap)
    state.loss_sum, state.weight_sum, state.correct = total, wtotal, correct
    state.samples += seen
    if status == OK:
        state.optimizer_state.t = c.t
        state.optimizer_state.last_loss = c.last_loss
    else:
        state.optimizer_state.reset()
        c.scaled = 0
        c.param_bound = -1
    if status == UNGUARDED_OVERFLOW:
        raise RuntimeError("fastbp internal error: an update overflowed where the overflow "
                           "check ruled that out, and no backup was made; please report")
    return BatchesResult(steps, seen, Status(status), bad)


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


def dropout_mask(seed, int level, double rate, Py_ssize_t rows, Py_ssize_t cols,
                 step=None):
    """The 0/1 mask (rows, cols) of the dropout on the input of layer ``level``: as
    ``loss_and_gradients(training=True, seed=seed)`` draws it (step None), or as the
    training step ``step`` (the optimizer's t) of a TrainState with dropout_seed ``seed``
    draws it for its batch."""
    cdef Mode mode = EVAL
    cdef LayerSpec ly
    cdef Dropout dr
    cdef unsigned long long s = <unsigned long long>(int(seed) & 0xFFFFFFFFFFFFFFFF)
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    mode.training = 1
    mode.key = (mix64(s) if step is None
                else mix64(s + 0x9E3779B97F4A7C15ull * <unsigned long long>(int(step) + 1)))
    ly.in_dropout = rate
    layer_dropout(&dr, &mode, &ly, level)
    ones = np.ones((rows, cols))
    out = np.empty((rows, cols))
    mask = np.zeros((rows, cols), dtype=np.uint8)
    cdef double[:, ::1] a = ones, d = out
    cdef unsigned char[:, ::1] m = mask
    if rows and cols:
        dropout_block(&a[0, 0], &d[0, 0], &m[0, 0], cols, 0, rows, 0, cols, &dr)
    return mask


# ---- data parallelism: a gradient here, the sum over processes outside, the update here ----

cdef void bind_call(StepCtx* c, TrainState state, Samples data):
    """The call's rows and optimizer counters into the context (as train_batches does)."""
    c.X = data.x
    c.targets = data.t
    c.labels = data.lab
    c.sample_weight = data.sw
    c.perm = <const long long*>cnp.PyArray_DATA(state.perm) if state.shuffled else NULL
    c.n_rows = data.n
    c.input_bound = data.input_bound
    c.t = state.optimizer_state.t
    c.last_loss = state.optimizer_state.last_loss


cdef double share_gradient(StepCtx* c, Py_ssize_t bi, int rank, int world, floating* params,
                           double* wsum_out, double* correct_out, Py_ssize_t* rows_out,
                           double* global_wsum) noexcept nogil:
    """Forward, loss and backward of this process's share of global batch bi (rows
    [nb*rank/world, nb*(rank+1)/world) of it) into c.grads, scaled by 1/(the global
    batch's weight sum, from the samples every process holds): the sum of the shares over
    the processes is the global batch's mean gradient. Returns the share's loss sum."""
    cdef Layout* lay = c.lay
    cdef Bufs* w = c.batch
    cdef Py_ssize_t d = c.n_in, k = c.n_out, s, nb, lo, hi, r, L = lay.L
    cdef floating* X = <floating*>c.X
    cdef floating* T = <floating*>c.targets
    cdef floating* sw = <floating*>c.sample_weight
    cdef floating* xg = <floating*>w.X
    cdef floating* tg = <floating*>w.T
    cdef floating* swg = <floating*>w.SW
    cdef const floating* xb
    cdef const floating* tb
    cdef const long long* lb
    cdef const floating* swb
    cdef double total_w = 0, bl, correct = 0
    cdef Mode mode = c.mode
    s = bi * c.batch_size
    nb = min(c.batch_size, c.n_rows - s)
    lo = nb * rank // world
    hi = nb * (rank + 1) // world
    rows_out[0] = hi - lo
    for r in range(nb):                        # the global batch's weight sum
        total_w += (sw[c.perm[s + r] if c.perm != NULL else s + r] if sw != NULL else 1.0)
    global_wsum[0] = total_w
    if c.perm != NULL:
        for r in range(hi - lo):
            gather_row(c, X, T, sw, xg, tg, swg, w.lab, s + lo, r)
        xb = xg
        tb = tg if c.labels == NULL else NULL
        lb = w.lab if c.labels != NULL else NULL
        swb = swg if sw != NULL else NULL
    else:
        xb = X + (s + lo) * d
        tb = T + (s + lo) * k if c.labels == NULL else NULL
        lb = c.labels + s + lo if c.labels != NULL else NULL
        swb = sw + s + lo if sw != NULL else NULL
    wsum_out[0] = weight_sum(swb, hi - lo) if swb != NULL else <double>(hi - lo)
    mode.key = mix64(c.dropout_seed + 0x9E3779B97F4A7C15ull * <unsigned long long>(c.t + 1))
    mode.row0 = lo                              # the masks of the global batch's rows
    if hi == lo:                                # nothing here: a zero gradient
        for r in range(c.n_params):
            (<floating*>c.grads)[r] = 0
        correct_out[0] = 0
        return 0
    forward(lay, w, params, xb, hi - lo, NULL, c.n_threads, NULL, &mode)
    bl = loss_and_output_grad(c.loss, lay.layer[L - 1].act, <floating*>w.A[L],
                              <floating*>w.P[L], tb, lb, swb, hi - lo, k,
                              <floating>(1.0 / total_w), <floating*>w.G[L - 1], c.n_threads)
    if c.count_correct:
        correct = count_correct(c.loss, <floating*>w.A[L], tb, lb, hi - lo, k)
    correct_out[0] = correct
    backward(lay, w, params, <floating*>c.grads, xb, hi - lo, NULL, 0, c.n_threads, NULL, 0, 0,
             &mode)
    return bl


def gradient_share(TrainState state, Samples data, Py_ssize_t batch, int rank, int world):
    """This process's share of global batch ``batch`` of the epoch ``begin_epoch`` started:
    its gradient into ``state.workspace.grads`` (see share_gradient), nothing updated.
    Returns (loss sum, weight sum, correct, rows) of the share and the global batch's weight
    sum. Every process must hold the same samples, and the same state."""
    cdef StepCtx* c = &state.ctx
    cdef double bl, wsum, corr, gw
    cdef Py_ssize_t rows
    cdef int saved_cap
    cdef bint f32 = state.workspace.dtype == np.float32
    if c.direct or c.shards != 1:
        raise ValueError("a data-parallel state needs distributed=True (no momentum "
                         "shortcut, no batch shards)")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    data.check(state.plan, state.workspace.dtype)
    if state.shuffled and (state.perm is None or state.perm.shape[0] != data.n):
        raise ValueError("begin_epoch was called with other samples")
    if not 0 <= batch * state.batch_size < data.n:
        raise ValueError(f"batch {batch} is past the epoch's end")
    cdef void* params = cnp.PyArray_DATA(state.params)
    bind_call(c, state, data)
    saved_cap = thread_cap()
    set_thread_cap(min(state.run_threads, state.n_threads))
    with nogil:
        if f32:
            bl = share_gradient(c, batch, rank, world, <float*>params, &wsum, &corr, &rows, &gw)
        else:
            bl = share_gradient(c, batch, rank, world, <double*>params, &wsum, &corr, &rows,
                                &gw)
    set_thread_cap(saved_cap)
    return bl, wsum, corr, rows, gw


cdef int apply_summed(StepCtx* c, floating* params, double global_wsum, double loss,
                      int last) noexcept nogil:
    """The update from the summed gradient in c.grads (the global batch's mean): l2,
    clipping, the optimizer over every layer; undone from the backup if not finite."""
    cdef floating* g = <floating*>c.grads
    cdef int ok
    c.loss_increased = loss > c.last_loss
    c.last_loss = loss
    if c.l2 != 0:
        add_l2(c.lay, params, g, <floating>(c.l2 / global_wsum))
    if c.clip_norm > 0:
        c.grad_scale = clip_scale(c, params, g)
    ok = update_all(c, params, g, <floating*>c.backup, last)
    c.grad_scale = 1
    if not ok:
        memcpy(params, c.backup, c.n_params * sizeof(floating))
        return UPDATE_NOT_FINITE
    c.t += 1
    return OK


def apply_update(TrainState state, Samples data, Py_ssize_t batch, double global_wsum,
                 double mean_loss):
    """The optimizer's update from the gradient summed over the processes (in
    ``state.workspace.grads``) of global batch ``batch``; ``mean_loss``: the global batch's
    mean loss (iRprop+). Returns a Status; on a failure the parameters are those before it
    and the optimizer state is reset, as train_batches."""
    cdef StepCtx* c = &state.ctx
    cdef int status, saved_cap
    cdef bint f32 = state.workspace.dtype == np.float32
    cdef int last = (batch + 1) * state.batch_size >= data.n
    cdef void* params = cnp.PyArray_DATA(state.params)
    bind_call(c, state, data)
    saved_cap = thread_cap()
    set_thread_cap(min(state.run_threads, state.n_threads))
    with nogil:
        if f32:
            status = apply_summed(c, <float*>params, global_wsum, mean_loss, last)
        else:
            status = apply_summed(c, <double*>params, global_wsum, mean_loss, last)
    set_thread_cap(saved_cap)
    if status == OK:
        state.optimizer_state.t = c.t
        state.optimizer_state.last_loss = c.last_loss
    else:
        state.optimizer_state.reset()
    return Status(status)
