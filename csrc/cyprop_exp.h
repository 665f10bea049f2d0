/* exp(x) without branches or calls, so that loops of it vectorise (libm's exp is a call
   per element: on small layers, most of the time of a forward pass), and the sigmoid of a
   row through it, and the exponentials of a softmax.  Used by all the compiled paths'
   sigmoid and softmax; the other activations' and the losses' scalar formulas keep
   libm's. */
#ifndef CYPROP_EXP_H
#define CYPROP_EXP_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* x = k ln2 + r with |r| <= ln2/2 (k rounded by adding and taking away 1.5 * 2^52; ln2
   in two parts so that k * ln2_hi is exact), exp(r) by a polynomial, then times
   2^(k-1) * 2 built in the exponent bits.  Within 3 ulp of libm.  Above ln(max) it is
   inf; below -708 (float: -86.5), where libm goes subnormal, 0 (a difference under
   3.3e-308; float 2.6e-38).  NaN stays NaN. */
static inline double cyprop_exp_d(double x) {
    const double shift = 6755399441055744.0, log2e = 1.4426950408889634,
                 ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    double xc = x < -708.0 ? -708.0 : (x > 709.782712893384 ? 709.782712893384 : x);
    xc = xc == xc ? xc : 0.0;   /* NaN: converting it to an integer below is undefined */
    double k = (xc * log2e + shift) - shift;
    double r = (xc - k * ln2_hi) - k * ln2_lo;
    /* Taylor to r^12: the remainder is below 2e-16 relative for |r| <= ln2/2 */
    double p = 2.08767569878680989792e-09;
    p = p * r + 2.50521083854417187751e-08;
    p = p * r + 2.75573192239858906526e-07;
    p = p * r + 2.75573192239858906526e-06;
    p = p * r + 2.48015873015873015873e-05;
    p = p * r + 1.98412698412698412698e-04;
    p = p * r + 1.38888888888888888889e-03;
    p = p * r + 8.33333333333333333333e-03;
    p = p * r + 4.16666666666666666667e-02;
    p = p * r + 1.66666666666666666667e-01;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits = ((int64_t)k + 1022) << 52;
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    double y = p * scale * 2.0;
    y = x > 709.782712893384 ? HUGE_VAL : y;
    y = x < -708.0 ? 0.0 : y;
    return x != x ? x : y;
}

static inline float cyprop_exp_f(float x) {
    const float shift = 12582912.0f, log2e = 1.44269504088896341f,
                ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float xc = x < -86.5f ? -86.5f : (x > 88.7228394f ? 88.7228394f : x);
    xc = xc == xc ? xc : 0.0f;
    float k = (xc * log2e + shift) - shift;
    float r = (xc - k * ln2_hi) - k * ln2_lo;
    /* Cephes expf's polynomial */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)k + 126) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale * 2.0f;
    y = x > 88.7228394f ? HUGE_VALF : y;
    y = x < -86.5f ? 0.0f : y;
    return x != x ? x : y;
}

/* a = sigmoid(a) = 1 / (1 + exp(-a)) over a row: the vectorised form of activate()'s
   SIGMOID. */
static inline void cyprop_sigmoid_d(double* a, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) a[i] = 1.0 / (1.0 + cyprop_exp_d(-a[i]));
}

static inline void cyprop_sigmoid_f(float* a, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) a[i] = 1.0f / (1.0f + cyprop_exp_f(-a[i]));
}

/* a = exp(a) over a row (the softmax's exponentials). */
static inline void cyprop_exp_row_d(double* a, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) a[i] = cyprop_exp_d(a[i]);
}

static inline void cyprop_exp_row_f(float* a, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) a[i] = cyprop_exp_f(a[i]);
}

#endif
