/* What every vectorized header shares: one build runs on any x86-64 CPU with the best
 * code it supports, and bit patterns of max-abs reductions turned back into numbers. */
#ifndef FASTBP_SIMD_COMMON_H
#define FASTBP_SIMD_COMMON_H
#include <stddef.h>
#include <string.h>
#include <math.h>

/* One build runs everywhere (no -march): on x86-64 Linux these loops are compiled for
 * AVX-512, AVX2 and baseline SSE2, and the loader picks the best the CPU has. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) \
    && !defined(FASTBP_NO_CLONES)
#define FBP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define FBP_CLONES
#endif

/* A max-abs bit pattern as a double (inf for NaN/inf). */
static inline double fbp_bits_f32(unsigned int b) {
    float f;
    if (b >= 0x7f800000u)
        return INFINITY;
    memcpy(&f, &b, sizeof f);
    return f;
}
static inline double fbp_bits_f64(unsigned long long b) {
    double f;
    if (b >= 0x7ff0000000000000ull)
        return INFINITY;
    memcpy(&f, &b, sizeof f);
    return f;
}
#endif
