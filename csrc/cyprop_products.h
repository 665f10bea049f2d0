/* The matrix products of the paths that run blocks of rows (csrc/_block.pxi, and the
   first layer of csrc/_online_block.pxi and csrc/_batch_block.pxi), for the AVX-512
   build.

   A block of B rows goes forward and back through three products per layer:

       Z  += X @ W.T      forward       (B, n_in) by (n_out, n_in): rows dotted with rows
       G   = D.T @ X      the gradient  (B, n_out) by (B, n_in): a sum of B outer products
       D'  = D @ W        deltas below  (B, n_out) by (n_out, n_in): the same shape of sum

   Handed to a BLAS as separate small products, each pays for packing its operands into
   the BLAS's layout (or for its small-matrix kernel, which skips the packing but runs
   slower): well below one core's peak on W2's and W3's shapes (README, Performance).
   These two kernels need no packing, because every operand above is already
   laid out for one of them, and keep 24 vector accumulators in registers:

   - rows_dot_rows (Z += X @ W.T): a tile of 4 rows of X by 6 rows of W; each step loads
     4 + 6 vectors along k and does 24 multiply-adds; the sums are reduced across their
     lanes once, at the end, a row's 6 together (cyprop_add_sums).
   - sum_outer (C = beta C + alpha sum_s a_s b_s^T): a tile of 8 outputs by 3 vectors
     along k; each step broadcasts 8 scalars of a_s, loads 3 vectors of b_s and does 24
     multiply-adds, and C is read and written once, at the end (alpha and beta let
     plain SGD step a layer's weights there: W = keep W - rate G).

   Each output is the same sum in the same order wherever its tile falls (the lanes run
   along k in rows_dot_rows and along the output in sum_outer), so the results do not
   depend on how a layer is split into parts, nor on the thread count.  They differ from
   a BLAS's only by the order of the additions (parity tests: the reference's
   tolerances).  Both are memory-light: the operands of W3's shapes stay in L1/L2, and
   aligned rows (the parameters and the scratch start on 64-byte boundaries) keep each
   vector load within one cache line.

   The other builds (portable, AVX2) call the BLAS: CYPROP_OWN_PRODUCTS is 0 there; the
   AVX-512 build does too for shapes where the BLAS does better (csrc/_blas.pxi). */
#ifndef CYPROP_PRODUCTS_H
#define CYPROP_PRODUCTS_H

#if defined(__AVX512F__)
#define CYPROP_OWN_PRODUCTS 1
#include <immintrin.h>
#include <stddef.h>

#define CYPROP_INLINE static inline __attribute__((always_inline))
/* The tiles' loops unrolled whole, so that their accumulators live in registers (left
   as loops over arrays, they run from memory: clang 14 ran these kernels 5x slower
   without its own spelling of the pragma) */
#if defined(__clang__)
#define CYPROP_UNROLL _Pragma("unroll")
#else
#define CYPROP_UNROLL _Pragma("GCC unroll 8")
#endif

/* z[j] += the sum of acc[j]'s lanes, for j < JT <= 8: the lanes of all JT vectors summed
   together, in a few shuffles for all of them (one _mm512_reduce_add per vector took a
   noticeable share of rows_dot_rows at W3's depths).  The additions are reduce_add's (lane i
   plus lane i + LANES/2, then a quarter apart, then neighbours), so the sums are the same,
   bit for bit. */
CYPROP_INLINE void cyprop_add_sums_f(const int JT, const __m512* acc, float* z) {
    __m512 v[8], s[4], t[2], u;
    int j;
    CYPROP_UNROLL for (j = 0; j < 8; j++) v[j] = j < JT ? acc[j] : _mm512_setzero_ps();
    CYPROP_UNROLL for (j = 0; j < 4; j++)   /* lanes i + i+8: v[2j] in the low half, v[2j+1] high */
        s[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0xEE));
    CYPROP_UNROLL for (j = 0; j < 2; j++)   /* + 4 apart: quarter k holds v[4j + k]'s 4 sums */
        t[j] = _mm512_add_ps(_mm512_shuffle_f32x4(s[2 * j], s[2 * j + 1], 0x88),
                             _mm512_shuffle_f32x4(s[2 * j], s[2 * j + 1], 0xDD));
    /* + 2 apart, then neighbours: v[k] ends in lane 4k, v[k + 4] in lane 4k + 2 */
    u = _mm512_add_ps(_mm512_shuffle_ps(t[0], t[1], 0x44), _mm512_shuffle_ps(t[0], t[1], 0xEE));
    u = _mm512_add_ps(u, _mm512_permute_ps(u, 0xB1));
    u = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 0, 0, 0, 0, 0, 0, 0, 0), u);
    const __mmask16 m = (__mmask16)((1u << JT) - 1);
    _mm512_mask_storeu_ps(z, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, z), u));
}

CYPROP_INLINE void cyprop_add_sums_d(const int JT, const __m512d* acc, double* z) {
    __m512d v[8], s[4], t[2], u;
    int j;
    CYPROP_UNROLL for (j = 0; j < 8; j++) v[j] = j < JT ? acc[j] : _mm512_setzero_pd();
    CYPROP_UNROLL for (j = 0; j < 4; j++)   /* lanes i + i+4: v[2j] in the low half, v[2j+1] high */
        s[j] = _mm512_add_pd(_mm512_shuffle_f64x2(v[2 * j], v[2 * j + 1], 0x44),
                             _mm512_shuffle_f64x2(v[2 * j], v[2 * j + 1], 0xEE));
    CYPROP_UNROLL for (j = 0; j < 2; j++)   /* + 2 apart: quarter k holds v[4j + k]'s 2 sums */
        t[j] = _mm512_add_pd(_mm512_shuffle_f64x2(s[2 * j], s[2 * j + 1], 0x88),
                             _mm512_shuffle_f64x2(s[2 * j], s[2 * j + 1], 0xDD));
    /* neighbours: v[k] ends in lane 2k, v[k + 4] in lane 2k + 1 */
    u = _mm512_add_pd(_mm512_unpacklo_pd(t[0], t[1]), _mm512_unpackhi_pd(t[0], t[1]));
    u = _mm512_permutexvar_pd(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), u);
    const __mmask8 m = (__mmask8)((1u << JT) - 1);
    _mm512_mask_storeu_pd(z, m, _mm512_add_pd(_mm512_maskz_loadu_pd(m, z), u));
}

#define REAL float
#define VEC __m512
#define MASK __mmask16
#define LANES 16
#define V(op) _mm512_##op##_ps
#define OF(name) name##_f
#include "cyprop_products_of.h"

#define REAL double
#define VEC __m512d
#define MASK __mmask8
#define LANES 8
#define V(op) _mm512_##op##_pd
#define OF(name) name##_d
#include "cyprop_products_of.h"

#else
#define CYPROP_OWN_PRODUCTS 0
#include <stdlib.h>
/* Never called (the callers test CYPROP_OWN_PRODUCTS first); here so that the module
   compiles the same way everywhere. */
#define cyprop_rows_dot_rows_f(...) abort()
#define cyprop_rows_dot_rows_d(...) abort()
#define cyprop_sum_outer_f(...) abort()
#define cyprop_sum_outer_d(...) abort()
#endif

#endif
