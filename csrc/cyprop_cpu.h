/* Instruction-set dispatch: which level this copy of the module was compiled for, and
   whether the CPU it runs on can run a level.  The module is built once per level
   (CMakeLists.txt); cyprop/_compiled.py asks the portable one which others may load. */
#ifndef CYPROP_CPU_H
#define CYPROP_CPU_H

#if defined(__AVX512F__)
#define CYPROP_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define CYPROP_ISA "avx2"
#else
#define CYPROP_ISA "baseline"
#endif

/* Level 0 baseline, 1 avx2+fma, 2 avx512.  libgcc's __builtin_cpu_supports also checks
   that the OS saves the registers. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
static int cyprop_cpu_runs(int level) {
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (level == 1) return avx2;
    if (level == 2) return avx2 && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq");
    return 1;
}
/* The CPU's maker, where tuning differs between them: 1 AMD, 2 Intel, 0 another. */
static int cyprop_cpu_vendor(void) {
    __builtin_cpu_init();
    return __builtin_cpu_is("amd") ? 1 : __builtin_cpu_is("intel") ? 2 : 0;
}
#else
static int cyprop_cpu_runs(int level) { return level == 0; }
static int cyprop_cpu_vendor(void) { return 0; }
#endif

/* Subnormal numbers flushed to zero (FTZ) and read as zero (DAZ) on the calling thread,
   for a per-sample epoch: an optimizer's running averages decay into the subnormal
   range, where every operation on them takes a microcode assist (Adam in float32 ran
   several times slower).  What changes is below the smallest normal number: 1.2e-38
   in float32, 2.2e-308 in float64.  x86-64 only (the MXCSR); elsewhere nothing changes. */
#if defined(__x86_64__) || defined(_M_X64) || defined(_M_AMD64)
#include <xmmintrin.h>
static inline unsigned int cyprop_flush_subnormals(void) {
    unsigned int previous = _mm_getcsr();
    _mm_setcsr(previous | 0x8040);   /* FTZ is bit 15, DAZ bit 6 */
    return previous;
}
static inline void cyprop_restore_subnormals(unsigned int previous) { _mm_setcsr(previous); }
#else
static inline unsigned int cyprop_flush_subnormals(void) { return 0; }
static inline void cyprop_restore_subnormals(unsigned int previous) { (void)previous; }
#endif

/* Whether x[0 .. n-1] holds a subnormal number, which the flush would read as 0:
   checked before a per-sample epoch for its inputs, the parameters and the
   hyper-parameters (csrc/_epoch.pxi: flush_reads_right), one pass at the speed of the
   loads: on AVX-512 a class test (vfpclass 0x20: subnormal, of either sign) of 8 or 16
   numbers at once, where the loop below, at the build's 256-bit preference, took a
   good share of a one-row partial_fit's step in float64; elsewhere that loop, without
   branches or early exit, which vectorises. */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
static inline int cyprop_any_subnormal_d(const double* x, ptrdiff_t n) {
    __mmask8 found = 0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) found |= _mm512_fpclass_pd_mask(_mm512_loadu_pd(x + i), 0x20);
    if (i < n)
        found |= _mm512_fpclass_pd_mask(_mm512_maskz_loadu_pd((__mmask8)((1u << (n - i)) - 1),
                                                              x + i), 0x20);
    return found != 0;
}
static inline int cyprop_any_subnormal_f(const float* x, ptrdiff_t n) {
    __mmask16 found = 0;
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) found |= _mm512_fpclass_ps_mask(_mm512_loadu_ps(x + i), 0x20);
    if (i < n)
        found |= _mm512_fpclass_ps_mask(_mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1),
                                                              x + i), 0x20);
    return found != 0;
}
/* dst[0 .. n-1] = x[0 .. n-1], and whether they hold a subnormal number: the one-sample
   step keeps a copy of the parameters to undo a diverged step, and scans them in the
   same pass (one read instead of two) */
static inline int cyprop_copy_any_subnormal_d(double* dst, const double* x, ptrdiff_t n) {
    __mmask8 found = 0;
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m512d v = _mm512_loadu_pd(x + i);
        _mm512_storeu_pd(dst + i, v);
        found |= _mm512_fpclass_pd_mask(v, 0x20);
    }
    if (i < n) {
        const __mmask8 m = (__mmask8)((1u << (n - i)) - 1);
        const __m512d v = _mm512_maskz_loadu_pd(m, x + i);
        _mm512_mask_storeu_pd(dst + i, m, v);
        found |= _mm512_fpclass_pd_mask(v, 0x20);
    }
    return found != 0;
}
static inline int cyprop_copy_any_subnormal_f(float* dst, const float* x, ptrdiff_t n) {
    __mmask16 found = 0;
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(dst + i, v);
        found |= _mm512_fpclass_ps_mask(v, 0x20);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(dst + i, m, v);
        found |= _mm512_fpclass_ps_mask(v, 0x20);
    }
    return found != 0;
}
#else
static inline int cyprop_any_subnormal_d(const double* x, ptrdiff_t n) {
    int found = 0;
    for (ptrdiff_t i = 0; i < n; i++) found |= (x[i] != 0) & (fabs(x[i]) < DBL_MIN);
    return found != 0;
}
static inline int cyprop_any_subnormal_f(const float* x, ptrdiff_t n) {
    int found = 0;
    for (ptrdiff_t i = 0; i < n; i++) found |= (x[i] != 0) & (fabsf(x[i]) < FLT_MIN);
    return found != 0;
}
static inline int cyprop_copy_any_subnormal_d(double* dst, const double* x, ptrdiff_t n) {
    memcpy(dst, x, (size_t)n * sizeof *x);
    return cyprop_any_subnormal_d(x, n);
}
static inline int cyprop_copy_any_subnormal_f(float* dst, const float* x, ptrdiff_t n) {
    memcpy(dst, x, (size_t)n * sizeof *x);
    return cyprop_any_subnormal_f(x, n);
}
#endif

#endif
