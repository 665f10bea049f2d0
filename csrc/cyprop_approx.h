/* Adam, RMSprop and Adagrad over a row of weights, for the AVX-512 build.  The per-sample
   paths step each weight the moment its gradient is known (csrc/_sample.pxi, through
   rule_row in csrc/_rules.pxi), and there a correctly rounded square root and division
   per weight (vsqrtpd, vdivpd: about 1.2 ns a float64 weight) cost more than the rest of
   the step together (a mini-batch's step, rule_range, steps its weights through these
   kernels too).  These kernels take rule_step's steps, with the factor every one of the
   three rules has,

       1 / (sqrt(v) + eps),

   computed from the hardware's 14-bit estimates of 1/sqrt(v) and 1/d (vrsqrt14, vrcp14)
   refined by Newton's method, each step of which doubles the correct bits:

       float64: 14 -> 28 -> 56 bits, two steps for the root and two for the reciprocal;
       float32: 14 -> 28 bits, one step each.

   The factor then multiplies the numerator inside the weight's multiply-add
   (w - num * r, rounded once) where the exact formula divides.

   Error bound (u = 2^-53 in float64, 2^-24 in float32, half an ulp): num * r is within
   6u of the true num / (sqrt(v) + eps) (the Newton steps leave their own roundings,
   about 5u all told; measured at most 4.7u), where the exact formula's three roundings
   put its quotient within 3u; so a step differs from the exact formula's by less than
   9u relative (measured: 6u), a few ulp, and a weight by at most 1 ulp more.
   tests/test_core_rules.py checks the 6u elementwise, over v from 0 through the
   subnormals to near the largest number.

   Special values: v = +0 (a weight whose input is always 0) gives sqrt(v) = 0, as it
   should (rsqrt(0) is +inf, and 0 * inf would be NaN: the estimate is capped first).
   Subnormal v is estimated correctly, or, with DAZ set (the per-sample paths set FTZ and
   DAZ, cyprop_cpu.h), read as 0 throughout, as the exact instructions read it.  Lanes
   whose v is NaN, infinite, negative or -0 take the exact instructions (an infinite v
   steps nothing, as in the exact formula), and rows whose eps lies outside the range
   where every intermediate stays a normal number take the exact formula.

   The other builds (portable, AVX2) keep the exact rule_step: CYPROP_APPROX_ROWS is 0
   there and rule_row never calls these. */
#ifndef CYPROP_APPROX_H
#define CYPROP_APPROX_H

#if defined(__AVX512F__) && defined(__AVX512DQ__)
#define CYPROP_APPROX_ROWS 1
#include <immintrin.h>
#include <float.h>

/* v's classes (vfpclass) that take the exact instructions: QNaN 0x01, -0 0x04, +inf 0x08,
   -inf 0x10, negative 0x40, SNaN 0x80.  Left to the estimate: +0 (0x02), subnormals
   (0x20) and positive normal numbers. */
#define CYPROP_EXACT_CLASSES 0xDD

/* 1 / (sqrt(v) + eps) in float64, v >= 0.
   Root: Goldschmidt's coupled iteration on s ~ sqrt(v) and h ~ 1 / (2 sqrt(v)), both
   from y ~ 1/sqrt(v): each step e = 1/2 - s h, s += s e, h += h e squares the relative
   error (2^-14 -> 2^-28 -> 2^-56), and unlike a step on y alone it never forms v/2 or
   v y^2, which lose bits when v is subnormal.  The estimate is capped at 2^600 (above
   1/sqrt of the smallest subnormal, 2^537) so that v = 0 gives s = 0 * 2^600 = 0.
   Reciprocal: r ~ 1/d, d = s + eps >= eps; each step e = 1 - d r, r += r e squares its
   relative error (2^-14 -> 2^-28 -> 2^-56). */
static inline __m512d cyprop_recip_root_pd(__m512d v, __m512d eps) {
    const __m512d half = _mm512_set1_pd(0.5), one = _mm512_set1_pd(1.0),
                  cap = _mm512_set1_pd(0x1p600);
    if (__builtin_expect(_mm512_fpclass_pd_mask(v, CYPROP_EXACT_CLASSES) != 0, 0))
        return _mm512_div_pd(one, _mm512_add_pd(_mm512_sqrt_pd(v), eps));
    __m512d y = _mm512_min_pd(cap, _mm512_rsqrt14_pd(v));
    __m512d s = _mm512_mul_pd(v, y), h = _mm512_mul_pd(half, y);
    __m512d e = _mm512_fnmadd_pd(s, h, half);
    s = _mm512_fmadd_pd(s, e, s);
    h = _mm512_fmadd_pd(h, e, h);
    e = _mm512_fnmadd_pd(s, h, half);
    s = _mm512_fmadd_pd(s, e, s);
    __m512d d = _mm512_add_pd(s, eps);
    __m512d r = _mm512_rcp14_pd(d);
    e = _mm512_fnmadd_pd(d, r, one);
    r = _mm512_fmadd_pd(r, e, r);
    e = _mm512_fnmadd_pd(d, r, one);
    return _mm512_fmadd_pd(r, e, r);
}

/* The same in float32: one step each (2^-14 -> 2^-28, past float32's 24 bits); the cap
   2^100 is above 1/sqrt of float32's smallest subnormal, 2^74.5. */
static inline __m512 cyprop_recip_root_ps(__m512 v, __m512 eps) {
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f),
                 cap = _mm512_set1_ps(0x1p100f);
    if (__builtin_expect(_mm512_fpclass_ps_mask(v, CYPROP_EXACT_CLASSES) != 0, 0))
        return _mm512_div_ps(one, _mm512_add_ps(_mm512_sqrt_ps(v), eps));
    __m512 y = _mm512_min_ps(cap, _mm512_rsqrt14_ps(v));
    __m512 s = _mm512_mul_ps(v, y), h = _mm512_mul_ps(half, y);
    __m512 e = _mm512_fnmadd_ps(s, h, half);
    s = _mm512_fmadd_ps(s, e, s);
    __m512 d = _mm512_add_ps(s, eps);
    __m512 r = _mm512_rcp14_ps(d);
    e = _mm512_fnmadd_ps(d, r, one);
    return _mm512_fmadd_ps(r, e, r);
}

/* 1 where eps lies in the range in which 1/d, d = sqrt(v) + eps in [eps, 2^512 + eps]
   (float32: 2^64 + eps), and every step towards it stay normal numbers; rule_row steps
   a row with another eps (1e-320 and 1e300 are legal, if no one's choice) by the exact
   formula. */
static inline int cyprop_approx_eps_d(double eps) { return eps >= DBL_MIN && eps <= 0x1p1000; }
static inline int cyprop_approx_eps_f(float eps) { return eps >= FLT_MIN && eps <= 0x1p100f; }

/* The rows: rule_step's formulas (csrc/_rules.pxi) for the weights w[0..n) of a row,
   whose gradients are dj * x[i], with weight decay (every weight has it; 0 adds 0), over
   vectors of 8 float64 or 16 float32 lanes.  Full 512-bit vectors whatever the build's
   preferred width: the estimates and their steps are cheap multiply-adds, and at 512
   bits they keep pace with the loads.

   Each rule is its constants, broadcast once per row, and its step of the weights in
   lanes k of one vector (w and its buffers s0, s1 stepped in place; the new weights
   returned).  CYPROP_ROW_LOOP runs a step over a row, the last vector masked, and with
   x_next (else NULL) returns dot(w, x_next) of the stepped row, which the fused first
   layer wants (sample_first_layer_next), from the new weights still in registers (with
   a second pass over the row for dot(), Adam's epochs on [784, 100, 10] took 1.2x as
   long in float64, 1.4x in float32).  It keeps dot()'s order of operations (csrc/_maths.pxi: 16 running sums of
   multiply-adds, paired down, then the rest one by one), so that the sum is the one the
   forward pass would take, bit for bit. */
#define CYPROP_APPROX_ROWS_OF(T, V, X, LANES, MASK, SUFFIX)                          \
static inline MASK cyprop_lanes_##SUFFIX(Py_ssize_t left) {                         \
    return left >= LANES ? (MASK)~0u : (MASK)((1u << left) - 1);                     \
}                                                                                    \
                                                                                     \
/* Adam: m = beta1 m + c1 g;  v = beta2 v + c2 g g  (c1 = 1 - beta1 and c2 = 1 - beta2, \
   formed in double by the caller);  w -= step_size m / (sqrt(v) + eps_t) */         \
typedef struct { V dj, wd, b1, c1, b2, c2, size, eps; } cyprop_adam_##SUFFIX;         \
static inline V cyprop_adam_step_##SUFFIX(const cyprop_adam_##SUFFIX* c, T* w, T* m,  \
                                         T* v, const T* x, MASK k) {                 \
    V p = _mm512_maskz_loadu_##X(k, w);                                              \
    V g = _mm512_fmadd_##X(c->wd, p, _mm512_mul_##X(c->dj, _mm512_maskz_loadu_##X(k, x))); \
    V mi = _mm512_fmadd_##X(c->c1, g, _mm512_mul_##X(c->b1, _mm512_maskz_loadu_##X(k, m))); \
    V vi = _mm512_fmadd_##X(_mm512_mul_##X(c->c2, g), g,                            \
                            _mm512_mul_##X(c->b2, _mm512_maskz_loadu_##X(k, v)));    \
    V r = cyprop_recip_root_##X(vi, c->eps);                                         \
    p = _mm512_fnmadd_##X(_mm512_mul_##X(c->size, mi), r, p);                        \
    _mm512_mask_storeu_##X(m, k, mi);                                                \
    _mm512_mask_storeu_##X(v, k, vi);                                                \
    _mm512_mask_storeu_##X(w, k, p);                                                 \
    return p;                                                                        \
}                                                                                    \
static inline T cyprop_adam_row_##SUFFIX(                                            \
        T* w, T* m, T* v, const T* x, const T* x_next, T dj, T beta1, T c1, T beta2, \
        T c2, T step_size, T eps_t, T weight_decay, Py_ssize_t n) {                  \
    const cyprop_adam_##SUFFIX c = {                                                 \
        _mm512_set1_##X(dj), _mm512_set1_##X(weight_decay), _mm512_set1_##X(beta1),  \
        _mm512_set1_##X(c1), _mm512_set1_##X(beta2),                                 \
        _mm512_set1_##X(c2), _mm512_set1_##X(step_size),                             \
        _mm512_set1_##X(eps_t)};                                                     \
    CYPROP_ROW_LOOP(T, V, X, LANES, MASK, SUFFIX,                                  \
                    cyprop_adam_step_##SUFFIX(&c, w + o, m + o, v + o, x + o, k))   \
}                                                                                    \
                                                                                     \
/* RMSprop: v = alpha v + c1 g g  (c1 = 1 - alpha);  step = g / (sqrt(v) + eps);     \
   with momentum, buf = momentum buf + step and step = buf;  w -= lr step */         \
typedef struct { V dj, wd, a, c, eps, mu, lr; int with_momentum; } cyprop_rmsprop_##SUFFIX; \
static inline V cyprop_rmsprop_step_##SUFFIX(const cyprop_rmsprop_##SUFFIX* c, T* w,  \
                                            T* v, T* buf, const T* x, MASK k) {      \
    V p = _mm512_maskz_loadu_##X(k, w);                                              \
    V g = _mm512_fmadd_##X(c->wd, p, _mm512_mul_##X(c->dj, _mm512_maskz_loadu_##X(k, x))); \
    V vi = _mm512_fmadd_##X(_mm512_mul_##X(c->c, g), g,                              \
                            _mm512_mul_##X(c->a, _mm512_maskz_loadu_##X(k, v)));     \
    V step = _mm512_mul_##X(g, cyprop_recip_root_##X(vi, c->eps));                   \
    if (c->with_momentum) {                                                          \
        step = _mm512_fmadd_##X(c->mu, _mm512_maskz_loadu_##X(k, buf), step);       \
        _mm512_mask_storeu_##X(buf, k, step);                                        \
    }                                                                                \
    p = _mm512_fnmadd_##X(c->lr, step, p);                                           \
    _mm512_mask_storeu_##X(v, k, vi);                                                \
    _mm512_mask_storeu_##X(w, k, p);                                                 \
    return p;                                                                        \
}                                                                                    \
static inline T cyprop_rmsprop_row_##SUFFIX(                                         \
        T* w, T* v, T* buf, const T* x, const T* x_next, T dj, T alpha, T c1, T eps, \
        int with_momentum, T momentum, T learning_rate, T weight_decay, Py_ssize_t n) { \
    const cyprop_rmsprop_##SUFFIX c = {                                              \
        _mm512_set1_##X(dj), _mm512_set1_##X(weight_decay), _mm512_set1_##X(alpha),  \
        _mm512_set1_##X(c1), _mm512_set1_##X(eps), _mm512_set1_##X(momentum),       \
        _mm512_set1_##X(learning_rate), with_momentum};                              \
    CYPROP_ROW_LOOP(T, V, X, LANES, MASK, SUFFIX,                                  \
                    cyprop_rmsprop_step_##SUFFIX(&c, w + o, v + o, buf + o, x + o, k)) \
}                                                                                    \
                                                                                     \
/* Adagrad: v += g g;  w -= lr g / (sqrt(v) + eps) */                                \
typedef struct { V dj, wd, eps, lr; } cyprop_adagrad_##SUFFIX;                       \
static inline V cyprop_adagrad_step_##SUFFIX(const cyprop_adagrad_##SUFFIX* c, T* w,  \
                                            T* v, const T* x, MASK k) {              \
    V p = _mm512_maskz_loadu_##X(k, w);                                              \
    V g = _mm512_fmadd_##X(c->wd, p, _mm512_mul_##X(c->dj, _mm512_maskz_loadu_##X(k, x))); \
    V vi = _mm512_fmadd_##X(g, g, _mm512_maskz_loadu_##X(k, v));                     \
    V r = cyprop_recip_root_##X(vi, c->eps);                                         \
    p = _mm512_fnmadd_##X(_mm512_mul_##X(c->lr, g), r, p);                           \
    _mm512_mask_storeu_##X(v, k, vi);                                                \
    _mm512_mask_storeu_##X(w, k, p);                                                 \
    return p;                                                                        \
}                                                                                    \
static inline T cyprop_adagrad_row_##SUFFIX(                                         \
        T* w, T* v, const T* x, const T* x_next, T dj, T eps, T learning_rate,       \
        T weight_decay, Py_ssize_t n) {                                              \
    const cyprop_adagrad_##SUFFIX c = {                                              \
        _mm512_set1_##X(dj), _mm512_set1_##X(weight_decay), _mm512_set1_##X(eps),    \
        _mm512_set1_##X(learning_rate)};                                             \
    CYPROP_ROW_LOOP(T, V, X, LANES, MASK, SUFFIX,                                  \
                    cyprop_adagrad_step_##SUFFIX(&c, w + o, v + o, x + o, k))       \
}

/* The body of a row function: STEP (an expression of the offset o and the mask k) on
   each vector, and the dot product with x_next described above.  Whole blocks of 16
   weights first (16 / LANES vectors, each with its running sums), then the rest. */
#define CYPROP_ROW_LOOP(T, V, X, LANES, MASK, SUFFIX, STEP)                          \
    V sums[16 / LANES];                                                              \
    T s[16], t;                                                                      \
    Py_ssize_t i = 0, o;                                                             \
    int q, h;                                                                        \
    MASK k = (MASK)~0u;                                                              \
    for (q = 0; q < 16 / LANES; q++) sums[q] = _mm512_setzero_##X();                 \
    if (x_next != NULL)                                                              \
        for (; i + 16 <= n; i += 16)                                                 \
            for (q = 0; q < 16 / LANES; q++) {                                       \
                o = i + q * LANES;                                                   \
                sums[q] = _mm512_fmadd_##X(STEP, _mm512_loadu_##X(x_next + o), sums[q]); \
            }                                                                        \
    for (o = i; o < n; o += LANES) {                                                 \
        k = cyprop_lanes_##SUFFIX(n - o);                                            \
        (void)(STEP);                                                                \
    }                                                                                \
    if (x_next == NULL) return 0;                                                    \
    for (q = 0; q < 16 / LANES; q++) _mm512_storeu_##X(s + q * LANES, sums[q]);       \
    for (h = 8; h > 0; h /= 2)                                                       \
        for (q = 0; q < h; q++) s[q] += s[q + h];                                    \
    t = s[0];                                                                        \
    for (; i < n; i++) t += w[i] * x_next[i];                                        \
    return t;

CYPROP_APPROX_ROWS_OF(double, __m512d, pd, 8, __mmask8, d)
CYPROP_APPROX_ROWS_OF(float, __m512, ps, 16, __mmask16, f)

#else
#define CYPROP_APPROX_ROWS 0
#include <stdlib.h>
/* Never called (rule_row tests CYPROP_APPROX_ROWS first); here so that the module
   compiles the same way everywhere. */
#define cyprop_approx_eps_d(eps) ((void)(eps), 0)
#define cyprop_approx_eps_f(eps) ((void)(eps), 0)
#define cyprop_adam_row_d(...) (abort(), 0)
#define cyprop_adam_row_f(...) (abort(), 0)
#define cyprop_rmsprop_row_d(...) (abort(), 0)
#define cyprop_rmsprop_row_f(...) (abort(), 0)
#define cyprop_adagrad_row_d(...) (abort(), 0)
#define cyprop_adagrad_row_f(...) (abort(), 0)
#endif

#endif
