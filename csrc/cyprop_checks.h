/* The check of a one-sample step's result (csrc/_inference.pxi: train_row): whether the
   parameters after it are all finite, their largest magnitude, and their largest change
   from before it, in one pass over both.

   On AVX-512 the magnitudes are compared as integers: the bits of |v| (the sign bit
   cleared) order as |v| does, with infinity and NaN above every finite number, so one
   unsigned maximum per number gives the largest magnitude and tells whether all were
   finite.  The floating-point form below it (a maximum and a NaN test per number, in
   16 running values) kept a float64 step of a small network waiting on their latency
   for a good share of its time; both give the same three answers. */
#ifndef CYPROP_CHECKS_H
#define CYPROP_CHECKS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

/* magnitude bits: v's bits with the sign cleared */
#define CYPROP_MAGNITUDE_D(v) _mm512_and_si512(_mm512_castpd_si512(v), magnitude)
#define CYPROP_MAGNITUDE_F(v) _mm512_and_si512(_mm512_castps_si512(v), magnitude)

static inline int cyprop_largest_and_change_d(const double* now, const double* before,
                                              ptrdiff_t n, double* largest, double* change) {
    const __m512i magnitude = _mm512_set1_epi64(0x7fffffffffffffffLL);
    __m512i big = _mm512_setzero_si512(), big2 = big, moved = big, moved2 = big;
    ptrdiff_t i = 0;
    for (; i + 16 <= n; i += 16) {   /* two of each: a mask per load cost a third */
        const __m512d v = _mm512_loadu_pd(now + i), v2 = _mm512_loadu_pd(now + i + 8);
        big = _mm512_max_epu64(big, CYPROP_MAGNITUDE_D(v));
        big2 = _mm512_max_epu64(big2, CYPROP_MAGNITUDE_D(v2));
        moved = _mm512_max_epu64(moved, CYPROP_MAGNITUDE_D(
            _mm512_sub_pd(v, _mm512_loadu_pd(before + i))));
        moved2 = _mm512_max_epu64(moved2, CYPROP_MAGNITUDE_D(
            _mm512_sub_pd(v2, _mm512_loadu_pd(before + i + 8))));
    }
    for (; i < n; i += 8) {
        const __mmask8 m = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1);
        const __m512d v = _mm512_maskz_loadu_pd(m, now + i);
        big = _mm512_max_epu64(big, CYPROP_MAGNITUDE_D(v));
        moved = _mm512_max_epu64(moved, CYPROP_MAGNITUDE_D(
            _mm512_sub_pd(v, _mm512_maskz_loadu_pd(m, before + i))));
    }
    const uint64_t b = _mm512_reduce_max_epu64(_mm512_max_epu64(big, big2));
    const uint64_t c = _mm512_reduce_max_epu64(_mm512_max_epu64(moved, moved2));
    memcpy(largest, &b, sizeof b);   /* (NaN or infinity where not all were finite) */
    memcpy(change, &c, sizeof c);
    return b < 0x7ff0000000000000ULL;   /* the bits of infinity */
}

static inline int cyprop_largest_and_change_f(const float* now, const float* before,
                                              ptrdiff_t n, double* largest, double* change) {
    const __m512i magnitude = _mm512_set1_epi32(0x7fffffff);
    __m512i big = _mm512_setzero_si512(), big2 = big, moved = big, moved2 = big;
    ptrdiff_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 v = _mm512_loadu_ps(now + i), v2 = _mm512_loadu_ps(now + i + 16);
        big = _mm512_max_epu32(big, CYPROP_MAGNITUDE_F(v));
        big2 = _mm512_max_epu32(big2, CYPROP_MAGNITUDE_F(v2));
        moved = _mm512_max_epu32(moved, CYPROP_MAGNITUDE_F(
            _mm512_sub_ps(v, _mm512_loadu_ps(before + i))));
        moved2 = _mm512_max_epu32(moved2, CYPROP_MAGNITUDE_F(
            _mm512_sub_ps(v2, _mm512_loadu_ps(before + i + 16))));
    }
    for (; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(m, now + i);
        big = _mm512_max_epu32(big, CYPROP_MAGNITUDE_F(v));
        moved = _mm512_max_epu32(moved, CYPROP_MAGNITUDE_F(
            _mm512_sub_ps(v, _mm512_maskz_loadu_ps(m, before + i))));
    }
    const uint32_t b = _mm512_reduce_max_epu32(_mm512_max_epu32(big, big2));
    const uint32_t c = _mm512_reduce_max_epu32(_mm512_max_epu32(moved, moved2));
    float fb, fc;
    memcpy(&fb, &b, sizeof b);
    memcpy(&fc, &c, sizeof c);
    *largest = fb;
    *change = fc;
    return b < 0x7f800000u;
}
#undef CYPROP_MAGNITUDE_D
#undef CYPROP_MAGNITUDE_F

#else
/* x * 0 is 0 for a finite x, NaN for NaN or infinity; the zero is a variable so that
   the product is not folded away */
#define CYPROP_LARGEST_AND_CHANGE(T, NAME, ABS)                                      \
static inline int NAME(const T* now, const T* before, ptrdiff_t n,                  \
                       double* largest, double* change) {                           \
    T nan_test[16] = {0}, big[16] = {0}, moved[16] = {0}, t = 0;                    \
    volatile T zero_ = 0;                                                           \
    const T zero = zero_;                                                           \
    ptrdiff_t i = 0;                                                                \
    int k;                                                                          \
    for (; i + 16 <= n; i += 16)                                                    \
        for (k = 0; k < 16; k++) {                                                  \
            const T v = ABS(now[i + k]), d = ABS(now[i + k] - before[i + k]);       \
            nan_test[k] += now[i + k] * zero;                                       \
            big[k] = v > big[k] ? v : big[k];                                       \
            moved[k] = d > moved[k] ? d : moved[k];                                 \
        }                                                                           \
    for (; i < n; i++) {                                                            \
        const T v = ABS(now[i]), d = ABS(now[i] - before[i]);                       \
        t += now[i] * zero;                                                         \
        big[0] = v > big[0] ? v : big[0];                                           \
        moved[0] = d > moved[0] ? d : moved[0];                                     \
    }                                                                               \
    *largest = 0;                                                                   \
    *change = 0;                                                                    \
    for (k = 0; k < 16; k++) {                                                      \
        t += nan_test[k];                                                           \
        *largest = big[k] > *largest ? big[k] : *largest;                           \
        *change = moved[k] > *change ? moved[k] : *change;                          \
    }                                                                               \
    return t == 0;                                                                  \
}
CYPROP_LARGEST_AND_CHANGE(double, cyprop_largest_and_change_d, fabs)
CYPROP_LARGEST_AND_CHANGE(float, cyprop_largest_and_change_f, fabsf)
#undef CYPROP_LARGEST_AND_CHANGE
#endif

#endif
