# bfloat16 products with float32 accumulation (see _bf16.h): the active implementation and
# the product itself, for the engine.

cdef int bf16_mode() noexcept nogil

cdef int bf16_gemm_ws_c(int ta, int tb, int m, int n, int k, float alpha, const float* A,
                        int lda, const float* B, int ldb, float beta, float* C, int ldc,
                        int n_threads, void* scratch) noexcept nogil

cdef int bf16_gemm_sgd_c(int ta, int tb, int m, int n, int k, float alpha, const float* A,
                         int lda, const float* B, int ldb, float beta, float* C, int ldc,
                         int n_threads, void* scratch, float* p, float lr, float wd,
                         float keep, double* pmax, double* bmax) noexcept nogil

cdef size_t bf16_scratch_bytes(int m) noexcept nogil
