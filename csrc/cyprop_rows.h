/* Online SGD's first layer: a row of W stepped and, in the same pass, dotted with the
   next sample's input (csrc/_sample.pxi, sample_first_layer_next).  Written in C for
   `restrict`: without it the compiler must assume that the stores to w may change x,
   and cannot vectorise. */
#ifndef CYPROP_ROWS_H
#define CYPROP_ROWS_H

/* w -= c * x, then return dot(w, x_next), in one pass over w with 16 running sums (the
   same order of operations as dot() in csrc/_maths.pxi). */
#define CYPROP_UPDATE_DOT(T, NAME)                                              \
static inline T NAME(T* __restrict w, const T* __restrict x,                  \
                     const T* __restrict x_next, T c, Py_ssize_t n) {         \
    T s[16] = {0}, t;                                                         \
    Py_ssize_t i = 0;                                                         \
    int q, h;                                                                 \
    for (; i + 16 <= n; i += 16)                                              \
        for (q = 0; q < 16; q++) {                                            \
            T wn = w[i + q] - c * x[i + q];                                   \
            w[i + q] = wn;                                                    \
            s[q] += wn * x_next[i + q];                                       \
        }                                                                     \
    for (h = 8; h > 0; h /= 2)                                                \
        for (q = 0; q < h; q++) s[q] += s[q + h];                             \
    t = s[0];                                                                 \
    for (; i < n; i++) {                                                      \
        T wn = w[i] - c * x[i];                                               \
        w[i] = wn;                                                            \
        t += wn * x_next[i];                                                  \
    }                                                                         \
    return t;                                                                 \
}
CYPROP_UPDATE_DOT(double, cyprop_update_dot_d)
CYPROP_UPDATE_DOT(float, cyprop_update_dot_f)

/* The same for two rows of W at once: x and x_next are loaded once for both, and the two
   rows' running sums are independent chains, so the adds overlap instead of waiting on
   each other.  Each row's arithmetic, in order, is exactly that of the one-row version. */
#define CYPROP_UPDATE_DOT2(T, NAME)                                             \
static inline void NAME(T* __restrict w0, T* __restrict w1,                   \
                        const T* __restrict x, const T* __restrict x_next,    \
                        T c0, T c1, Py_ssize_t n, T* out) {                   \
    T s[16] = {0}, u[16] = {0}, t0, t1;                                       \
    Py_ssize_t i = 0;                                                         \
    int q, h;                                                                 \
    for (; i + 16 <= n; i += 16)                                              \
        for (q = 0; q < 16; q++) {                                            \
            T xi = x[i + q], xn = x_next[i + q];                              \
            T a = w0[i + q] - c0 * xi, b = w1[i + q] - c1 * xi;               \
            w0[i + q] = a;                                                    \
            w1[i + q] = b;                                                    \
            s[q] += a * xn;                                                   \
            u[q] += b * xn;                                                   \
        }                                                                     \
    for (h = 8; h > 0; h /= 2)                                                \
        for (q = 0; q < h; q++) {                                             \
            s[q] += s[q + h];                                                 \
            u[q] += u[q + h];                                                 \
        }                                                                     \
    t0 = s[0];                                                                \
    t1 = u[0];                                                                \
    for (; i < n; i++) {                                                      \
        T a = w0[i] - c0 * x[i], b = w1[i] - c1 * x[i];                       \
        w0[i] = a;                                                            \
        w1[i] = b;                                                            \
        t0 += a * x_next[i];                                                  \
        t1 += b * x_next[i];                                                  \
    }                                                                         \
    out[0] = t0;                                                              \
    out[1] = t1;                                                              \
}
CYPROP_UPDATE_DOT2(double, cyprop_update_dot2_d)
CYPROP_UPDATE_DOT2(float, cyprop_update_dot2_f)

#endif
