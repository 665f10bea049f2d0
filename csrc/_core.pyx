# cython: language_level=3
"""The compiled backpropagation core.

Design
------
The network's parameters live in one flat buffer per network: for each layer l the
weights W_l, laid out (n_out, n_in) row-major, then the biases b_l.  Gradients and
optimizer state use the same layout, so an optimizer step is one pass over flat
arrays, and forward propagation is a row-by-row dot product.

Python (``cyprop/_compiled.py``) validates, converts and allocates; the functions
here trust their inputs and run without the GIL over typed memoryviews.  Each
activation, loss and optimizer is a set of small ``nogil`` functions chosen by an
integer code; the loops over samples and weights are written out by hand.

Compiler directives (boundscheck, wraparound, ...) come from the build
(CMakeLists.txt), so that one switch turns the checks back on for debugging.

The maths is the same as in ``cyprop/_reference.py``; names and structure follow
it, so reading the two side by side shows the same algorithm, plus types.
"""

from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, fabs, fabsf
from libc.math cimport sqrt, sqrtf, pow
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cython.parallel cimport prange, threadid

ctypedef fused floating:
    float
    double

# Codes shared with cyprop/_maths.py (checked by the test suite).
cdef enum:
    IDENTITY = 0
    SIGMOID = 1
    TANH = 2
    RELU = 3
    LEAKY_RELU = 4
    SOFTMAX = 5

cdef enum:
    MSE = 0
    CROSS_ENTROPY = 1

cdef enum:
    OPT_SGD = 0
    OPT_ADAM = 1
    OPT_RMSPROP = 2
    OPT_ADAGRAD = 3
    OPT_RPROP = 4

# ------------------------------------------------------- instruction-set dispatch
cdef extern from *:
    """
    /* The instruction set this copy of the module was compiled for. */
    #if defined(__AVX512F__)
    #define CYPROP_ISA "avx512"
    #elif defined(__AVX2__) && defined(__FMA__)
    #define CYPROP_ISA "avx2"
    #else
    #define CYPROP_ISA "baseline"
    #endif

    /* Whether this CPU (and OS) runs a level: 0 baseline, 1 avx2+fma, 2 avx512.
       libgcc's __builtin_cpu_supports also checks that the OS saves the registers. */
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
    #else
    static int cyprop_cpu_runs(int level) { return level == 0; }
    #endif
    """
    const char* CYPROP_ISA
    int cyprop_cpu_runs(int level) nogil

INSTRUCTION_SET = CYPROP_ISA.decode()
_LEVELS = {"baseline": 0, "avx2": 1, "avx512": 2}


def cpu_runs(instruction_set):
    """Whether this CPU can run kernels built for ``instruction_set``."""
    return bool(cyprop_cpu_runs(_LEVELS[instruction_set]))


ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("SGD", "Adam", "RMSprop", "Adagrad", "Rprop")

# Independent accumulators in a dot product: gcc does not vectorise a floating-point
# sum without -ffast-math, but it does vectorise 16 separate running sums.
cdef enum:
    N_ACC = 16
    # Multiply-adds of a layer's matrix product per part, at least, when it is split
    # into parts for parallel threads (below that a thread costs more than it saves) ...
    PART_WORK = 500000
    # ... and at most this many parts (on one core, W3's 100 units in 4 parts ran faster
    # than in 1 or 2; many more would cut each product too thin).
    MAX_PARTS = 4
    # Rows of a mini-batch fed forward and back at a time: a block of 32 rows of inputs
    # and activations stays in L2 beside the weights; 128 at once spill it (20% slower).
    BATCH_BLOCK = 32
    # A block's rows are scored (output activation, loss, output deltas) in this many
    # fixed parts, their losses added in order: the same sum on any number of threads.
    SCORE_PARTS = 4
cdef double LEAKY_SLOPE = 0.01


# --------------------------------------------------------------------------- layout
cdef struct Layout:
    int n_layers            # number of weight layers
    Py_ssize_t* sizes       # n_layers + 1 unit counts, input first
    Py_ssize_t* w_off       # where W_l starts in the flat parameters
    Py_ssize_t* b_off       # where b_l starts
    Py_ssize_t* a_off       # where layer l+1's units start in a per-sample unit buffer
    int* acts               # activation code of each weight layer
    Py_ssize_t n_units      # units of all non-input layers together
    Py_ssize_t n_params
    # training only (NULL / 0 elsewhere):
    const double* dropout   # dropout rate of each weight layer's outputs
    unsigned long long dropout_seed
    double max_norm         # bound on the L2 norm of each unit's incoming weights


cdef int layout_init(Layout* lay, const Py_ssize_t[::1] sizes, const int[::1] acts) noexcept nogil:
    """Fill ``lay`` from the unit counts and activation codes; 0 on success."""
    cdef int L = <int>sizes.shape[0] - 1
    cdef int l
    lay.n_layers = L
    lay.dropout = NULL
    lay.dropout_seed = 0
    lay.max_norm = 0
    lay.sizes = <Py_ssize_t*>malloc((L + 1) * sizeof(Py_ssize_t))
    lay.w_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
    lay.b_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
    lay.a_off = <Py_ssize_t*>malloc(L * sizeof(Py_ssize_t))
    lay.acts = <int*>malloc(L * sizeof(int))
    if not (lay.sizes and lay.w_off and lay.b_off and lay.a_off and lay.acts):
        return -1
    lay.n_params = 0
    lay.n_units = 0
    lay.sizes[0] = sizes[0]
    for l in range(L):
        lay.sizes[l + 1] = sizes[l + 1]
        lay.acts[l] = acts[l]
        lay.w_off[l] = lay.n_params
        lay.n_params += sizes[l + 1] * sizes[l]
        lay.b_off[l] = lay.n_params
        lay.n_params += sizes[l + 1]
        lay.a_off[l] = lay.n_units
        lay.n_units += sizes[l + 1]
    return 0


cdef void layout_free(Layout* lay) noexcept nogil:
    free(lay.sizes)
    free(lay.w_off)
    free(lay.b_off)
    free(lay.a_off)
    free(lay.acts)


# ------------------------------------------------------------------ scalar maths
cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    /* exp(x) without branches or calls, so that loops of it vectorise (libm's exp is a
       call per element: on small layers, most of the time of a forward pass).  x = k ln2 + r with
       |r| <= ln2/2 (k rounded by adding and taking away 1.5 * 2^52; ln2 in two parts
       so that k * ln2_hi is exact), exp(r) by a polynomial, then times 2^(k-1) * 2
       built in the exponent bits.  Within 3 ulp of libm.  Above ln(max) it is inf;
       below -708 (float: -86.5), where libm goes subnormal, 0 (a difference under
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
       SIGMOID, for the element-wise work of mini-batches and inference. */
    static inline void cyprop_sigmoid_d(double* a, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) a[i] = 1.0 / (1.0 + cyprop_exp_d(-a[i]));
    }
    static inline void cyprop_sigmoid_f(float* a, Py_ssize_t n) {
        for (Py_ssize_t i = 0; i < n; i++) a[i] = 1.0f / (1.0f + cyprop_exp_f(-a[i]));
    }
    """
    void cyprop_sigmoid_d(double* a, Py_ssize_t n) nogil
    void cyprop_sigmoid_f(float* a, Py_ssize_t n) nogil
    double cyprop_exp_d(double x) nogil
    float cyprop_exp_f(float x) nogil


def exp_into(const floating[::1] x, floating[::1] out):
    """out = exp(x) as the vectorised element-wise code computes it (for its tests)."""
    cdef Py_ssize_t i
    with nogil:
        for i in range(min(x.shape[0], out.shape[0])):
            if floating is float:
                out[i] = cyprop_exp_f(x[i])
            else:
                out[i] = cyprop_exp_d(x[i])


cdef inline void sigmoid_row(floating* a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        cyprop_sigmoid_f(a, n)
    else:
        cyprop_sigmoid_d(a, n)


cdef inline floating f_exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating f_log(floating x) noexcept nogil:
    if floating is float:
        return logf(x)
    else:
        return log(x)


cdef inline floating softplus(floating z) noexcept nogil:
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""
    if floating is float:
        return (z if z > 0 else 0) + log1pf(expf(-fabsf(z)))
    else:
        return (z if z > 0 else 0) + log1p(exp(-fabs(z)))


cdef inline floating activate(int act, floating z) noexcept nogil:
    if act == SIGMOID:
        # exp(-z) may overflow to inf for very negative z: 1 / inf = 0, as it should.
        return 1 / (1 + f_exp(-z))
    elif act == TANH:
        if floating is float:
            return tanhf(z)
        else:
            return tanh(z)
    elif act == RELU:
        return z if z > 0 else 0
    elif act == LEAKY_RELU:
        return z if z > 0 else <floating>LEAKY_SLOPE * z
    return z


cdef inline floating derivative(int act, floating a) noexcept nogil:
    """f'(z) written in terms of the activation a = f(z) (all our functions allow it)."""
    if act == SIGMOID:
        return a * (1 - a)
    elif act == TANH:
        return 1 - a * a
    elif act == RELU:
        return 1 if a > 0 else 0
    elif act == LEAKY_RELU:
        return 1 if a > 0 else <floating>LEAKY_SLOPE
    return 1


cdef inline unsigned long long splitmix64(unsigned long long x) noexcept nogil:
    x += 0x9E3779B97F4A7C15ULL
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL
    return x ^ (x >> 31)


cdef inline bint unit_kept(const Layout* lay, int l, Py_ssize_t pos, Py_ssize_t j) noexcept nogil:
    """Dropout mask: whether unit j of weight layer l survives for the sample at position
    ``pos`` of this call's order.  A hash of (seed, pos, unit) rather than a stream, so
    that any batching, and the NumPy reference, draw exactly the same masks."""
    cdef unsigned long long h = splitmix64(
        lay.dropout_seed + <unsigned long long>(pos * lay.n_units + lay.a_off[l] + j))
    return <double>(h >> 11) * (1.0 / 9007199254740992.0) >= lay.dropout[l]


cdef inline bint has_dropout(const Layout* lay, int l) noexcept nogil:
    return lay.dropout != NULL and lay.dropout[l] > 0


cdef inline floating dropped_out(const Layout* lay, int l, floating a, Py_ssize_t pos,
                                 Py_ssize_t j) noexcept nogil:
    """Inverted dropout: a kept unit is scaled by 1 / keep, so expectations match inference."""
    if not unit_kept(lay, l, pos, j):
        return 0
    return a / <floating>(1 - lay.dropout[l])


cdef inline floating hidden_derivative(const Layout* lay, int l, floating a, Py_ssize_t pos,
                                       Py_ssize_t j) noexcept nogil:
    """f'(z) of unit j of hidden weight layer l, times its dropout factor, from its
    activation a as stored (after dropout)."""
    cdef floating keep
    if not has_dropout(lay, l):
        return derivative(lay.acts[l], a)
    if not unit_kept(lay, l, pos, j):
        return 0
    keep = <floating>(1 - lay.dropout[l])
    return derivative(lay.acts[l], a * keep) / keep


cdef void apply_max_norm(const Layout* lay, floating* params) noexcept nogil:
    """Scale down each unit's incoming weights (a row of W) whose L2 norm exceeds max_norm."""
    cdef int l
    cdef Py_ssize_t i, j, n_in
    cdef floating* w
    cdef double norm
    for l in range(lay.n_layers):
        n_in = lay.sizes[l]
        for j in range(lay.sizes[l + 1]):
            w = params + lay.w_off[l] + j * n_in
            norm = 0
            for i in range(n_in):
                norm += <double>w[i] * w[i]
            norm = sqrt(norm)
            if norm > lay.max_norm:
                for i in range(n_in):
                    w[i] = <floating>(w[i] * (lay.max_norm / norm))


cdef inline floating dot(const floating* w, const floating* x, Py_ssize_t n) noexcept nogil:
    cdef floating s[N_ACC]
    cdef Py_ssize_t i = 0, k, half
    cdef floating t
    for k in range(N_ACC):
        s[k] = 0
    while i + N_ACC <= n:
        for k in range(N_ACC):
            s[k] += w[i + k] * x[i + k]
        i += N_ACC
    # pairwise reduction of the accumulators
    half = N_ACC // 2
    while half > 0:
        for k in range(half):
            s[k] += s[k + half]
        half //= 2
    t = s[0]
    while i < n:
        t += w[i] * x[i]
        i += 1
    return t


# ------------------------------------------------------------ forward and deltas
cdef inline floating largest(const floating* z, Py_ssize_t n) noexcept nogil:
    """max(z): subtracted before exp in softmax and log-sum-exp, so exp never overflows."""
    cdef Py_ssize_t k
    cdef floating m = z[0]
    for k in range(1, n):
        if z[k] > m:
            m = z[k]
    return m


cdef inline void output_activation(int act, const floating* z, floating* a, Py_ssize_t n) noexcept nogil:
    """a = f(z) for the output layer, where f may be the softmax."""
    cdef Py_ssize_t j
    cdef floating zmax, total
    if act != SOFTMAX:
        for j in range(n):
            a[j] = activate(act, z[j])
        return
    zmax = largest(z, n)
    total = 0
    for j in range(n):
        a[j] = f_exp(z[j] - zmax)
        total += a[j]
    for j in range(n):
        a[j] = a[j] / total


cdef void feedforward(const Layout* lay, const floating* params, const floating* x,
                      floating* a,         # OUT: activations of every layer (n_units)
                      floating* z_out,     # OUT: pre-activations of the output layer
                      Py_ssize_t pos=0,    # the sample's position in the order (dropout)
                      int first=0          # start at this layer (earlier ones are in a)
                      ) noexcept nogil:
    cdef int l, L = lay.n_layers
    cdef Py_ssize_t j, n_in, n_out
    cdef const floating* a_in = x if first == 0 else a + lay.a_off[first - 1]
    cdef const floating* W
    cdef const floating* b
    cdef floating* a_l
    for l in range(first, L):
        n_in = lay.sizes[l]
        n_out = lay.sizes[l + 1]
        W = params + lay.w_off[l]
        b = params + lay.b_off[l]
        a_l = a + lay.a_off[l]
        if l == L - 1:
            for j in range(n_out):
                z_out[j] = b[j] + dot(W + j * n_in, a_in, n_in)
            output_activation(lay.acts[l], z_out, a_l, n_out)
        else:
            for j in range(n_out):
                a_l[j] = activate(lay.acts[l], b[j] + dot(W + j * n_in, a_in, n_in))
            if has_dropout(lay, l):
                for j in range(n_out):
                    a_l[j] = dropped_out(lay, l, a_l[j], pos, j)
        a_in = a_l


cdef floating sample_loss(int loss, int out_act, const floating* a, const floating* z,
                          const floating* y, Py_ssize_t n) noexcept nogil:
    """The loss of one sample, computed from the output pre-activations where that is stabler."""
    cdef Py_ssize_t k
    cdef floating s = 0, zmax, lse
    if loss == MSE:
        for k in range(n):
            s += (a[k] - y[k]) * (a[k] - y[k])
        return s / 2
    if out_act == SOFTMAX:
        # -sum_k y_k log softmax(z)_k = sum_k y_k (logsumexp(z) - z_k): every term >= 0
        # as log-sum-exp(z - max z) + (max z - z_k): (max z + lse) - z_k would lose lse
        # (log k for k equal logits) to rounding once the logits are large
        zmax = largest(z, n)
        lse = 0
        for k in range(n):
            lse += f_exp(z[k] - zmax)
        lse = f_log(lse)
        for k in range(n):
            s += y[k] * (lse + (zmax - z[k]))
        return s
    # sigmoid: -[y log a + (1 - y) log(1 - a)] = softplus(z) - y z, with the large terms
    # max(z, 0) - y z cancelled first, for the same reason
    for k in range(n):
        s += ((z[k] if z[k] > 0 else 0) - y[k] * z[k]) + softplus(z[k] if z[k] < 0 else -z[k])
    return s


cdef inline bint is_correct(const floating* a, const floating* y, Py_ssize_t n) noexcept nogil:
    """Argmax of the outputs equals argmax of the targets (first maximum wins, as in
    NumPy); for a single output, both on the same side of 0.5."""
    cdef Py_ssize_t k, ka = 0, ky = 0
    if n == 1:
        return (a[0] > <floating>0.5) == (y[0] > <floating>0.5)
    for k in range(1, n):
        if a[k] > a[ka]:
            ka = k
        if y[k] > y[ky]:
            ky = k
    return ka == ky


cdef void output_delta(int loss, int out_act, const floating* a, const floating* y,
                       floating* d,  # OUT: dLoss/dz of the output layer
                       Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t k
    cdef floating s
    if loss == CROSS_ENTROPY:
        if out_act == SOFTMAX:
            s = 0
            for k in range(n):
                s += y[k]
            for k in range(n):
                d[k] = a[k] * s - y[k]
        else:
            for k in range(n):
                d[k] = a[k] - y[k]
    elif out_act == SOFTMAX:
        # mse through the softmax Jacobian: d = a * (r - <r, a>), r = a - y
        s = 0
        for k in range(n):
            s += (a[k] - y[k]) * a[k]
        for k in range(n):
            d[k] = a[k] * ((a[k] - y[k]) - s)
    else:
        for k in range(n):
            d[k] = (a[k] - y[k]) * derivative(out_act, a[k])


cdef void backprop_accumulate(const Layout* lay, const floating* params, const floating* x,
                              const floating* a, floating* d,
                              floating* grad,  # IN/OUT: gradients are added here
                              Py_ssize_t pos=0
                              ) noexcept nogil:
    """Add one sample's gradient to ``grad``; d holds the output delta on entry."""
    cdef int l
    cdef Py_ssize_t i, j, n_in, n_out
    cdef const floating* W
    cdef const floating* w
    cdef const floating* a_prev
    cdef floating* d_l
    cdef floating* d_prev
    cdef floating* g
    cdef floating dj
    for l in range(lay.n_layers - 1, -1, -1):
        n_in = lay.sizes[l]
        n_out = lay.sizes[l + 1]
        W = params + lay.w_off[l]
        d_l = d + lay.a_off[l]
        a_prev = x if l == 0 else a + lay.a_off[l - 1]
        if l > 0:
            d_prev = d + lay.a_off[l - 1]
            memset(d_prev, 0, n_in * sizeof(floating))
        for j in range(n_out):
            dj = d_l[j]
            grad[lay.b_off[l] + j] += dj
            g = grad + lay.w_off[l] + j * n_in
            w = W + j * n_in
            if l > 0:
                for i in range(n_in):
                    g[i] += dj * a_prev[i]
                    d_prev[i] += w[i] * dj
            else:
                for i in range(n_in):
                    g[i] += dj * a_prev[i]
        if l > 0:
            for i in range(n_in):
                d_prev[i] *= hidden_derivative(lay, l - 1, a_prev[i], pos, i)


cdef void backprop_sgd_update(const Layout* lay, floating* params, const floating* x,
                              const floating* a, floating* d, floating lr, floating wd,
                              Py_ssize_t pos=0,
                              int last=0   # the lowest layer to update
                              ) noexcept nogil:
    """Online SGD: backward pass and update fused, one pass over each weight matrix.

    Each weight is read once, used for the delta of the layer below, then written:
    w <- w - lr * d_j a_i, or w - lr * (d_j a_i + wd w) with weight decay, the formula
    of the reference's SGD step.
    """
    cdef int l
    cdef Py_ssize_t i, j, n_in, n_out
    cdef floating* w
    cdef floating* b
    cdef const floating* a_prev
    cdef floating* d_l
    cdef floating* d_prev
    cdef floating dj, c, wi
    for l in range(lay.n_layers - 1, last - 1, -1):
        n_in = lay.sizes[l]
        n_out = lay.sizes[l + 1]
        b = params + lay.b_off[l]
        d_l = d + lay.a_off[l]
        a_prev = x if l == 0 else a + lay.a_off[l - 1]
        if l > 0:
            d_prev = d + lay.a_off[l - 1]
            memset(d_prev, 0, n_in * sizeof(floating))
        for j in range(n_out):
            dj = d_l[j]
            c = lr * dj
            b[j] -= c
            w = params + lay.w_off[l] + j * n_in
            if l > 0:
                for i in range(n_in):
                    wi = w[i]
                    d_prev[i] += wi * dj
                    w[i] = wi - c * a_prev[i] if wd == 0 else wi - lr * (dj * a_prev[i] + wd * wi)
            elif wd != 0:
                for i in range(n_in):
                    w[i] -= lr * (dj * a_prev[i] + wd * w[i])
            else:
                for i in range(n_in):
                    w[i] -= c * a_prev[i]
        if l > 0:
            for i in range(n_in):
                d_prev[i] *= hidden_derivative(lay, l - 1, a_prev[i], pos, i)


cdef inline floating momentum_update(floating p, floating* buf, floating g, floating lr,
                                     floating momentum, bint nesterov,
                                     bint first_step) noexcept nogil:
    """p after one torch.optim.SGD momentum step with gradient g (sgd_step's formula);
    updates the momentum buffer."""
    buf[0] = g if first_step else momentum * buf[0] + g
    return p - lr * (g + momentum * buf[0] if nesterov else buf[0])


cdef void backprop_momentum_update(const Layout* lay, floating* params, const floating* x,
                                   const floating* a, floating* d,
                                   floating* buf,   # IN/OUT: momentum buffers, like params
                                   floating lr, floating momentum, bint nesterov,
                                   floating wd, bint first_step, Py_ssize_t pos
                                   ) noexcept nogil:
    """Online SGD with momentum, fused like backprop_sgd_update: each weight is read once,
    used for the delta of the layer below, then stepped with its momentum buffer; no
    gradient buffer, one pass instead of three."""
    cdef int l
    cdef Py_ssize_t i, j, n_in, n_out
    cdef floating* w
    cdef floating* v
    cdef const floating* a_prev
    cdef floating* d_l
    cdef floating* d_prev
    cdef floating dj, wi
    for l in range(lay.n_layers - 1, -1, -1):
        n_in = lay.sizes[l]
        n_out = lay.sizes[l + 1]
        d_l = d + lay.a_off[l]
        a_prev = x if l == 0 else a + lay.a_off[l - 1]
        if l > 0:
            d_prev = d + lay.a_off[l - 1]
            memset(d_prev, 0, n_in * sizeof(floating))
        for j in range(n_out):
            dj = d_l[j]
            i = lay.b_off[l] + j   # biases: no weight decay
            params[i] = momentum_update(params[i], buf + i, dj, lr, momentum, nesterov,
                                        first_step)
            w = params + lay.w_off[l] + j * n_in
            v = buf + lay.w_off[l] + j * n_in
            if l > 0:
                for i in range(n_in):
                    wi = w[i]
                    d_prev[i] += wi * dj
                    w[i] = momentum_update(wi, v + i, dj * a_prev[i] + wd * wi, lr, momentum,
                                           nesterov, first_step)
            else:
                for i in range(n_in):
                    w[i] = momentum_update(w[i], v + i, dj * a_prev[i] + wd * w[i], lr,
                                           momentum, nesterov, first_step)
        if l > 0:
            for i in range(n_in):
                d_prev[i] *= hidden_derivative(lay, l - 1, a_prev[i], pos, i)


cdef extern from *:
    """
    /* w -= c * x, then return dot(w, x_next), in one pass over w with 16 running sums
       (the same order of operations as dot()).  Written in C for `restrict`: without
       it the compiler must assume the stores to w may change x, and cannot vectorise. */
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
    /* The same for two rows of W at once: x and x_next are loaded once for both,
       and the two rows' running sums are independent chains, so the adds overlap
       instead of waiting on each other.  Each row's arithmetic, in order, is exactly
       that of the one-row version. */
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
    """
    double cyprop_update_dot_d(double* w, const double* x, const double* x_next, double c,
                               Py_ssize_t n) nogil
    float cyprop_update_dot_f(float* w, const float* x, const float* x_next, float c,
                              Py_ssize_t n) nogil
    void cyprop_update_dot2_d(double* w0, double* w1, const double* x, const double* x_next,
                              double c0, double c1, Py_ssize_t n, double* out) nogil
    void cyprop_update_dot2_f(float* w0, float* w1, const float* x, const float* x_next,
                              float c0, float c1, Py_ssize_t n, float* out) nogil


cdef inline floating update_dot(floating* w, const floating* x, const floating* x_next,
                                floating c, Py_ssize_t n) noexcept nogil:
    if floating is double:
        return cyprop_update_dot_d(w, x, x_next, c, n)
    else:
        return cyprop_update_dot_f(w, x, x_next, c, n)


cdef inline void update_dot2(floating* w0, floating* w1, const floating* x,
                             const floating* x_next, floating c0, floating c1, Py_ssize_t n,
                             floating* out) noexcept nogil:
    if floating is double:
        cyprop_update_dot2_d(w0, w1, x, x_next, c0, c1, n, out)
    else:
        cyprop_update_dot2_f(w0, w1, x, x_next, c0, c1, n, out)


cdef void update_first_forward_next(const Layout* lay, floating* params, const floating* x,
                                    const floating* x_next, const floating* d, floating* a,
                                    floating lr, floating wd, Py_ssize_t pos_next) noexcept nogil:
    """Online SGD's first-layer update for sample x, fused with the first layer's forward
    pass for the next sample: each row of W1 is updated and dotted with the next input
    in one pass, so W1 comes from L2 or memory once per sample instead of twice.  The
    same arithmetic as backprop_sgd_update then feedforward; only the traffic drops."""
    cdef Py_ssize_t i, j, n_in = lay.sizes[0], n_out = lay.sizes[1]
    cdef floating* w
    cdef floating* b = params + lay.b_off[0]
    cdef floating c, dj
    cdef floating pair[2]
    j = 0
    if wd == 0:
        while j + 2 <= n_out:
            b[j] -= lr * d[j]
            b[j + 1] -= lr * d[j + 1]
            w = params + lay.w_off[0] + j * n_in
            update_dot2(w, w + n_in, x, x_next, lr * d[j], lr * d[j + 1], n_in, pair)
            a[j] = activate(lay.acts[0], b[j] + pair[0])
            a[j + 1] = activate(lay.acts[0], b[j + 1] + pair[1])
            j += 2
    for j in range(j, n_out):
        dj = d[j]
        c = lr * dj
        b[j] -= c
        w = params + lay.w_off[0] + j * n_in
        if wd == 0:
            a[j] = activate(lay.acts[0], b[j] + update_dot(w, x, x_next, c, n_in))
        else:
            for i in range(n_in):
                w[i] -= lr * (dj * x[i] + wd * w[i])
            a[j] = activate(lay.acts[0], b[j] + dot(w, x_next, n_in))
    if has_dropout(lay, 0):
        for j in range(n_out):
            a[j] = dropped_out(lay, 0, a[j], pos_next, j)


# ------------------------------------------------------- mini-batches through BLAS
# A mini-batch is a block of rows, so its forward and backward passes are matrix
# products; with a BLAS (scipy's, handed over as PyCapsules by cyprop/_compiled.py)
# they run blocked and vectorised, and only the element-wise work is ours.  Layer l's
# activations and deltas for a batch of B samples are (B, n_l) row-major blocks at
# B * a_off[l].  BLAS is column-major: a row-major (r, c) block is its (c, r) transpose.
#
# The products run on the calling thread alone: OpenBLAS's own threads change the
# rounding with the thread count (results must not), and oversubscribe a busy machine.
# OpenBLAS (0.3.27+) can be told so per thread, without touching other threads.
ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                         double*, int*, double*, double*, int*) noexcept nogil
ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*,
                         float*, int*, float*, float*, int*) noexcept nogil
ctypedef int (*set_threads_t)(int) noexcept nogil
cdef dgemm_t blas_dgemm = NULL
cdef sgemm_t blas_sgemm = NULL
cdef set_threads_t blas_set_threads_local = NULL

cdef extern from *:
    """
    /* The symbol `name` of the shared library that holds `addr`, or NULL. */
    #if defined(__unix__) || defined(__APPLE__)
    #include <dlfcn.h>
    static void* cyprop_symbol_beside(void* addr, const char* name) {
        Dl_info info;
        void *lib, *sym;
        if (!dladdr(addr, &info) || !info.dli_fname) return NULL;
        lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
        if (!lib) return NULL;
        sym = dlsym(lib, name);
        dlclose(lib);  /* a NOLOAD handle: the library stays loaded */
        return sym;
    }
    #else
    static void* cyprop_symbol_beside(void* addr, const char* name) { return NULL; }
    #endif
    """
    void* cyprop_symbol_beside(void* addr, const char* name)


cdef inline int blas_single_thread() noexcept nogil:
    """Make this thread's BLAS calls single-threaded; returns what to restore."""
    if blas_set_threads_local != NULL:
        return blas_set_threads_local(1)
    return 0


cdef inline void blas_restore_threads(int previous) noexcept nogil:
    if blas_set_threads_local != NULL and previous > 0:
        blas_set_threads_local(previous)


def set_blas(dgemm, sgemm):
    """Use these gemm routines (PyCapsules of scipy.linalg.cython_blas) for
    mini-batches; ``set_blas(None, None)`` goes back to per-sample loops."""
    global blas_dgemm, blas_sgemm, blas_set_threads_local
    if dgemm is None or sgemm is None:
        blas_dgemm, blas_sgemm, blas_set_threads_local = NULL, NULL, NULL
        return
    blas_dgemm = <dgemm_t>PyCapsule_GetPointer(dgemm, PyCapsule_GetName(dgemm))
    blas_sgemm = <sgemm_t>PyCapsule_GetPointer(sgemm, PyCapsule_GetName(sgemm))
    blas_set_threads_local = <set_threads_t>cyprop_symbol_beside(
        <void*>blas_dgemm, "openblas_set_num_threads_local")


def has_blas():
    return blas_dgemm != NULL and blas_sgemm != NULL


def blas_threads_controlled():
    """Whether the BLAS lets each call be kept to one thread (OpenBLAS 0.3.27+)."""
    return blas_set_threads_local != NULL


cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int cyprop_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int cyprop_max_threads(void) { return 1; }
    #endif
    """
    int cyprop_max_threads() nogil


#: The most threads any call starts, whatever it is asked for: _compiled.py caps requests
#: to the cores; this keeps a direct call (or a huge OMP_NUM_THREADS) from starting thousands.
cdef int THREAD_LIMIT = 256


cdef int usable_threads(int requested) noexcept nogil:
    """``requested`` threads (0 or less: OpenMP's default), within 1 .. THREAD_LIMIT."""
    if requested <= 0:
        requested = cyprop_max_threads()
    if requested > THREAD_LIMIT:
        requested = THREAD_LIMIT
    return requested if requested > 0 else 1


def max_threads():
    """Threads a parallel section would use now (OMP_NUM_THREADS, threadpoolctl)."""
    return cyprop_max_threads()


cdef inline void gemm(char transa, char transb, int m, int n, int k,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Column-major c = op(a) @ op(b) + beta * c."""
    cdef floating one = 1
    if floating is double:
        blas_dgemm(&transa, &transb, &m, &n, &k, &one, <double*>a, &lda, <double*>b, &ldb,
                   &beta, c, &ldc)
    else:
        blas_sgemm(&transa, &transb, &m, &n, &k, &one, <float*>a, &lda, <float*>b, &ldb,
                   &beta, c, &ldc)


cdef inline int unit_parts(Py_ssize_t B, Py_ssize_t n_in, Py_ssize_t n_units) noexcept nogil:
    """Parts that a layer's n_units are split into for a batch of B rows: set by the work
    alone, never by the thread count, so that neither are the results."""
    cdef Py_ssize_t parts = B * n_in * n_units // PART_WORK
    if parts > MAX_PARTS:
        parts = MAX_PARTS
    if parts > n_units // 16:
        parts = n_units // 16
    return <int>parts if parts > 1 else 1


cdef inline int part_start(Py_ssize_t n, int parts, int p) noexcept nogil:
    """First unit of part p of n units (p == parts: n); inner boundaries fall on multiples
    of 8 units, so that the parts share fewer cache lines."""
    if p <= 0:
        return 0
    if p >= parts:
        return <int>n
    return <int>((n * p // parts + 4) // 8 * 8)


cdef void layer_forward(const Layout* lay, int l, const floating* params,
                        const floating* a_in, int B,  # IN: (B, n_in) layer l's inputs
                        floating* acts, floating* z_out, Py_ssize_t pos,
                        int u0, int u1) noexcept nogil:
    """Units u0 .. u1-1 of layer l for a batch: Z = A_in @ W.T + b, then (hidden layers)
    the activation and dropout.  The output layer's activation needs all its units:
    batch_feedforward applies it once every part is done."""
    cdef int n_in = <int>lay.sizes[l], n_out = <int>lay.sizes[l + 1]
    cdef Py_ssize_t s, i
    cdef floating* a_l = acts + B * lay.a_off[l]
    cdef floating* z = z_out if l == lay.n_layers - 1 else a_l
    cdef floating* row
    # the bias rows first, then gemm adds the product onto them
    for s in range(B):
        memcpy(z + s * n_out + u0, params + lay.b_off[l] + u0, (u1 - u0) * sizeof(floating))
    gemm(c'T', c'N', u1 - u0, B, n_in, params + lay.w_off[l] + u0 * n_in, n_in, a_in, n_in, 1,
         z + u0, n_out)
    if l == lay.n_layers - 1:
        return
    for s in range(B):
        row = a_l + s * n_out
        if lay.acts[l] == SIGMOID:
            sigmoid_row(row + u0, u1 - u0)
        else:
            for i in range(u0, u1):
                row[i] = activate(lay.acts[l], row[i])
        if has_dropout(lay, l):
            for i in range(u0, u1):
                row[i] = dropped_out(lay, l, row[i], pos + s, i)


cdef void batch_feedforward(const Layout* lay, const floating* params,
                            const floating* xb, int B,  # IN: (B, n_in) inputs
                            floating* acts,    # OUT: every layer's (B, n_l) activations
                            floating* z_out,   # OUT: (B, n_out) output pre-activations
                            Py_ssize_t pos=0,  # position of the first sample (dropout)
                            int n_threads=0,   # 0: whole layers; else parts on this many
                            bint output=True   # False: leave the output activation undone
                            ) noexcept nogil:
    cdef int l, p, parts, previous, L = lay.n_layers
    cdef Py_ssize_t s, n_out
    cdef const floating* a_in = xb
    for l in range(L):
        n_out = lay.sizes[l + 1]
        parts = unit_parts(B, lay.sizes[l], n_out) if n_threads > 0 else 1
        if parts == 1:
            layer_forward(lay, l, params, a_in, B, acts, z_out, pos, 0, <int>n_out)
        else:
            for p in prange(parts, num_threads=n_threads if n_threads < parts else parts,
                            schedule="static"):
                previous = blas_single_thread()
                layer_forward(lay, l, params, a_in, B, acts, z_out, pos,
                              part_start(n_out, parts, p), part_start(n_out, parts, p + 1))
                blas_restore_threads(previous)
        a_in = acts + B * lay.a_off[l]
    if output:
        for s in range(B):
            output_activation(lay.acts[L - 1], z_out + s * n_out,
                              acts + B * lay.a_off[L - 1] + s * n_out, n_out)


cdef void layer_gradient(const Layout* lay, int l, const floating* a_prev, int B,
                         const floating* deltas, floating* grad, floating beta,
                         int u0, int u1) noexcept nogil:
    """The gradient sums of units u0 .. u1-1 of layer l (their rows of W and their
    biases): grad = beta * grad + D[:, u].T @ A_prev, and the column sums of D."""
    cdef int n_in = <int>lay.sizes[l], n_out = <int>lay.sizes[l + 1]
    cdef Py_ssize_t s, j
    cdef const floating* d_l = deltas + B * lay.a_off[l]
    cdef floating* gb = grad + lay.b_off[l]
    if beta == 0:
        for j in range(u0, u1):
            gb[j] = 0
    for s in range(B):
        for j in range(u0, u1):
            gb[j] += d_l[s * n_out + j]
    gemm(c'N', c'T', n_in, u1 - u0, B, a_prev, n_in, d_l + u0, n_out, beta,
         grad + lay.w_off[l] + u0 * n_in, n_in)


cdef void layer_delta_below(const Layout* lay, int l, const floating* params,
                            const floating* a_prev, int B, floating* deltas, Py_ssize_t pos,
                            int i0, int i1) noexcept nogil:
    """Deltas of units i0 .. i1-1 of layer l - 1: (D_l @ W_l)[:, i] * f'(A_prev[:, i])."""
    cdef int n_in = <int>lay.sizes[l], n_out = <int>lay.sizes[l + 1]
    cdef Py_ssize_t s, i
    cdef floating* d_prev = deltas + B * lay.a_off[l - 1]
    gemm(c'N', c'N', i1 - i0, B, n_out, params + lay.w_off[l] + i0, n_in,
         deltas + B * lay.a_off[l], n_out, 0, d_prev + i0, n_in)
    for s in range(B):
        for i in range(i0, i1):
            d_prev[s * n_in + i] *= hidden_derivative(lay, l - 1, a_prev[s * n_in + i], pos + s, i)


cdef inline void backprop_part(const Layout* lay, int l, const floating* params,
                               const floating* a_prev, int B, floating* deltas,
                               floating* grad, floating beta, Py_ssize_t pos,
                               int p, int grad_parts, int delta_parts) noexcept nogil:
    """Part p of layer l's backward step: the first grad_parts parts are its gradient,
    the rest the deltas of the layer below (both read W_l and D_l, neither writes them)."""
    cdef Py_ssize_t n_in = lay.sizes[l], n_out = lay.sizes[l + 1]
    if p < grad_parts:
        layer_gradient(lay, l, a_prev, B, deltas, grad, beta, part_start(n_out, grad_parts, p),
                       part_start(n_out, grad_parts, p + 1))
    else:
        p -= grad_parts
        layer_delta_below(lay, l, params, a_prev, B, deltas, pos,
                          part_start(n_in, delta_parts, p), part_start(n_in, delta_parts, p + 1))


cdef void batch_backprop(const Layout* lay, const floating* params,
                         const floating* xb, int B, const floating* acts,
                         floating* deltas,  # IN: the output deltas; scratch for the rest
                         floating* grad,    # IN/OUT: beta * grad + the batch's gradient sums
                         Py_ssize_t pos=0,  # position of the first sample (dropout)
                         floating beta=1,
                         int n_threads=0    # 0: whole layers; else parts on this many
                         ) noexcept nogil:
    cdef int l, p, grad_parts, delta_parts, parts, previous
    cdef const floating* a_prev
    for l in range(lay.n_layers - 1, -1, -1):
        a_prev = xb if l == 0 else acts + B * lay.a_off[l - 1]
        grad_parts, delta_parts = 1, (1 if l > 0 else 0)
        if n_threads > 0:
            grad_parts = unit_parts(B, lay.sizes[l], lay.sizes[l + 1])
            if l > 0:
                delta_parts = unit_parts(B, lay.sizes[l + 1], lay.sizes[l])
        parts = grad_parts + delta_parts
        if n_threads <= 1 or (grad_parts == 1 and delta_parts <= 1):
            # one thread, or too little work to be worth a second one
            for p in range(parts):
                backprop_part(lay, l, params, a_prev, B, deltas, grad, beta, pos, p, grad_parts,
                              delta_parts)
        else:
            for p in prange(parts, num_threads=n_threads if n_threads < parts else parts,
                            schedule="static"):
                previous = blas_single_thread()
                backprop_part(lay, l, params, a_prev, B, deltas, grad, beta, pos, p, grad_parts,
                              delta_parts)
                blas_restore_threads(previous)


cdef void score_part(const Layout* lay, int loss, floating* a_out, const floating* z,
                     const floating[:, ::1] Y, const Py_ssize_t* rows, Py_ssize_t s0,
                     Py_ssize_t s1, const floating* sw, floating* d_out,
                     double* part_loss, Py_ssize_t* part_correct) noexcept nogil:
    """Rows s0 .. s1-1 of a block: output activation, then score_rows into the part's
    own loss and count."""
    cdef int out_act = lay.acts[lay.n_layers - 1]
    cdef Py_ssize_t s, n_out = lay.sizes[lay.n_layers]
    for s in range(s0, s1):
        output_activation(out_act, z + s * n_out, a_out + s * n_out, n_out)
    part_loss[0] = 0
    part_correct[0] = 0
    score_rows(loss, out_act, a_out + s0 * n_out, z + s0 * n_out, Y, rows + s0, 0, s1 - s0,
               n_out, sw, d_out + s0 * n_out, part_loss, part_correct)


cdef void batch_gradient(const Layout* lay, const floating* params,
                         const floating[:, ::1] X, const floating[:, ::1] Y,
                         const Py_ssize_t* batch,   # the rows of X and Y in this batch
                         Py_ssize_t rows, Py_ssize_t pos, int loss, const floating* sw,
                         floating* xb, floating* a, floating* d, floating* z,  # scratch
                         floating* grad,      # OUT: the batch's gradient sum
                         double* total, Py_ssize_t* n_correct,  # IN/OUT: added to
                         int n_threads) noexcept nogil:
    """A batch's gradient as matrix products, BATCH_BLOCK rows at a time (their
    gradients summed in grad, in order).  A large layer's units are split in parts
    (unit_parts) that run on parallel threads, each writing only its own columns of the
    activations and deltas and its own rows of the gradient: nothing to reduce, and the
    same arithmetic whatever the number of threads."""
    cdef Py_ssize_t k, q, r0 = 0, r, last, n_in = lay.sizes[0]
    cdef double part_loss[SCORE_PARTS]
    cdef Py_ssize_t part_correct[SCORE_PARTS]
    cdef bint threaded
    while r0 < rows:
        r = BATCH_BLOCK if r0 + BATCH_BLOCK <= rows else rows - r0
        # With threads, the row-wise work is shared too: gathering the rows (it waits on
        # memory: a shuffled epoch reads X at random) and scoring them.
        threaded = n_threads > 1 and unit_parts(r, n_in, lay.sizes[1]) > 1
        if threaded:
            for k in prange(r, num_threads=n_threads, schedule="static"):
                memcpy(xb + k * n_in, &X[batch[r0 + k], 0], n_in * sizeof(floating))
        else:
            for k in range(r):
                memcpy(xb + k * n_in, &X[batch[r0 + k], 0], n_in * sizeof(floating))
        batch_feedforward(lay, params, xb, <int>r, a, z, pos + r0, n_threads, False)
        last = r * lay.a_off[lay.n_layers - 1]
        if threaded:
            for q in prange(SCORE_PARTS, num_threads=n_threads, schedule="static"):
                score_part(lay, loss, a + last, z, Y, batch + r0, r * q // SCORE_PARTS,
                           r * (q + 1) // SCORE_PARTS, sw, d + last, &part_loss[q],
                           &part_correct[q])
        else:
            for q in range(SCORE_PARTS):
                score_part(lay, loss, a + last, z, Y, batch + r0, r * q // SCORE_PARTS,
                           r * (q + 1) // SCORE_PARTS, sw, d + last, &part_loss[q],
                           &part_correct[q])
        for q in range(SCORE_PARTS):
            total[0] += part_loss[q]
            n_correct[0] += part_correct[q]
        batch_backprop(lay, params, xb, <int>r, a, d, grad, pos + r0, 0 if r0 == 0 else 1,
                       n_threads)
        r0 += r


# ------------------------------------------------------------------- optimizers
cdef void sgd_step(floating* p, const floating* g, floating* buf, Py_ssize_t n,
                   floating lr, floating momentum, bint nesterov, floating wd,
                   bint first_step, floating scale) noexcept nogil:
    """torch.optim.SGD on one segment; g is a gradient sum, ``scale`` makes it a mean."""
    cdef Py_ssize_t i
    cdef floating gi
    if momentum == 0:
        for i in range(n):
            p[i] -= lr * (g[i] * scale + wd * p[i])
        return
    for i in range(n):
        gi = g[i] * scale + wd * p[i]
        buf[i] = gi if first_step else momentum * buf[i] + gi
        if nesterov:
            gi = gi + momentum * buf[i]
        else:
            gi = buf[i]
        p[i] -= lr * gi


cdef inline floating f_sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef void adam_step(floating* p, const floating* g, floating* m, floating* v, Py_ssize_t n,
                    floating step_size, floating beta1, floating beta2, floating eps,
                    floating bc2_sqrt, floating wd, floating scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi
    for i in range(n):
        gi = g[i] * scale + wd * p[i]
        m[i] = beta1 * m[i] + (1 - beta1) * gi
        v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
        p[i] -= step_size * m[i] / (f_sqrt(v[i]) / bc2_sqrt + eps)


cdef void rmsprop_step(floating* p, const floating* g, floating* v, floating* buf,
                       Py_ssize_t n, floating lr, floating alpha, floating eps,
                       floating momentum, floating wd, floating scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, step
    for i in range(n):
        gi = g[i] * scale + wd * p[i]
        v[i] = alpha * v[i] + (1 - alpha) * gi * gi
        step = gi / (f_sqrt(v[i]) + eps)
        if momentum != 0:
            buf[i] = momentum * buf[i] + step
            step = buf[i]
        p[i] -= lr * step


cdef void adagrad_step(floating* p, const floating* g, floating* total, Py_ssize_t n,
                       floating lr, floating eps, floating wd, floating scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi
    for i in range(n):
        gi = g[i] * scale + wd * p[i]
        total[i] += gi * gi
        p[i] -= lr * gi / (f_sqrt(total[i]) + eps)


cdef void rprop_step(floating* p, const floating* g, floating* prev, floating* step_size,
                     Py_ssize_t n, floating lr, floating eta_minus, floating eta_plus,
                     floating step_min, floating step_max, bint first_step,
                     floating scale) noexcept nogil:
    """iRPROP-: per-weight step sizes driven by the sign of grad * previous grad."""
    cdef Py_ssize_t i
    cdef floating gi, product, size
    for i in range(n):
        gi = g[i] * scale
        if first_step:
            step_size[i] = lr
        product = gi * prev[i]
        size = step_size[i]
        if product > 0:
            size = size * eta_plus
        elif product < 0:
            size = size * eta_minus
            gi = 0          # a sign flip: no move now, and no memory of this gradient
        step_size[i] = step_max if size > step_max else (step_min if size < step_min else size)
        if gi > 0:
            p[i] -= step_size[i]
        elif gi < 0:
            p[i] += step_size[i]
        prev[i] = gi


cdef void optimizer_step(const Layout* lay, int opt, const double* hyper,
                         floating* params, const floating* grad,
                         floating* state,  # IN/OUT: (n_slots, n_params) row-major
                         long step, floating scale,
                         Py_ssize_t lo=0, Py_ssize_t hi=-1  # the parameters to step; -1: all
                         ) noexcept nogil:
    """One optimizer step over all layers, given gradient sums and ``scale`` that makes
    them means; weight decay touches weights, never biases.  Every parameter's step is
    its own, so a step split into ranges of parameters is the same step."""
    cdef int l, part
    cdef Py_ssize_t off, size, end, N = lay.n_params
    cdef double wd
    cdef double t = <double>(step + 1)
    if hi < 0:
        hi = N
    for l in range(lay.n_layers):
        for part in range(2):   # the weights, then the biases
            off = lay.w_off[l] if part == 0 else lay.b_off[l]
            end = off + (lay.b_off[l] - lay.w_off[l] if part == 0 else lay.sizes[l + 1])
            off = off if off > lo else lo
            end = end if end < hi else hi
            if end <= off:
                continue
            size = end - off
            if opt == OPT_SGD:
                wd = hyper[3] if part == 0 else 0
                sgd_step(params + off, grad + off, state + off, size, <floating>hyper[0],
                         <floating>hyper[1], hyper[2] != 0, <floating>wd, step == 0, scale)
            elif opt == OPT_ADAM:
                wd = hyper[4] if part == 0 else 0
                adam_step(params + off, grad + off, state + off, state + N + off, size,
                          <floating>(hyper[0] / (1 - pow(hyper[1], t))), <floating>hyper[1],
                          <floating>hyper[2], <floating>hyper[3],
                          <floating>sqrt(1 - pow(hyper[2], t)), <floating>wd, scale)
            elif opt == OPT_RMSPROP:
                wd = hyper[4] if part == 0 else 0
                rmsprop_step(params + off, grad + off, state + off, state + N + off, size,
                             <floating>hyper[0], <floating>hyper[1], <floating>hyper[2],
                             <floating>hyper[3], <floating>wd, scale)
            elif opt == OPT_ADAGRAD:
                wd = hyper[2] if part == 0 else 0
                adagrad_step(params + off, grad + off, state + off, size, <floating>hyper[0],
                             <floating>hyper[1], <floating>wd, scale)
            elif opt == OPT_RPROP:
                rprop_step(params + off, grad + off, state + off, state + N + off, size,
                           <floating>hyper[0], <floating>hyper[1], <floating>hyper[2],
                           <floating>hyper[3], <floating>hyper[4], step == 0, scale)


# ------------------------------------------------------------ Python entry points
cdef class Workspace:
    """Buffers for batches of up to ``rows`` samples, allocated once per call and freed
    however the call ends."""
    cdef void* inputs   # (rows, n_in): a batch's inputs, gathered in training order
    cdef void* acts     # (rows, n_units): every layer's activations
    cdef void* deltas   # (rows, n_units)
    cdef void* z_out    # (rows, n_out)
    cdef void* rows     # two input rows on 64-byte boundaries, + the slack to align them
    cdef Layout lay
    cdef bint has_layout

    def __cinit__(self, const Py_ssize_t[::1] sizes, const int[::1] acts, Py_ssize_t rows,
                  size_t itemsize):
        self.has_layout = True
        if layout_init(&self.lay, sizes, acts) != 0:
            raise MemoryError("cyprop: cannot allocate the layer layout")
        self.inputs = calloc(rows * sizes[0], itemsize)
        self.acts = calloc(rows * self.lay.n_units, itemsize)
        self.deltas = calloc(rows * self.lay.n_units, itemsize)
        self.z_out = calloc(rows * sizes[sizes.shape[0] - 1], itemsize)
        self.rows = calloc(2 * sizes[0] * itemsize + 192, 1)
        if not (self.inputs and self.acts and self.deltas and self.z_out and self.rows):
            raise MemoryError(f"cyprop: cannot allocate scratch buffers for {rows} rows")

    def __dealloc__(self):
        if self.has_layout:
            layout_free(&self.lay)
        free(self.inputs)
        free(self.acts)
        free(self.deltas)
        free(self.z_out)
        free(self.rows)


cdef inline void* align64(void* p) noexcept nogil:
    """The first 64-byte boundary at or after p."""
    return <void*>((<size_t>p + 63) & ~(<size_t>63))


cdef Py_ssize_t rows_needed(bint batched, Py_ssize_t batch, Py_ssize_t n):
    if not batched:
        return 1
    return batch if batch < n else (n if n > 0 else 1)


def forward(const Py_ssize_t[::1] sizes, const int[::1] acts, const floating[::1] params,
            const floating[:, ::1] X,
            floating[:, ::1] out,    # OUT: (n, n_out) output, or (n, n_units) every layer
            Py_ssize_t chunk=0,      # rows per matrix product; 0: one sample at a time
            int n_threads=0):        # threads for the chunks; 0: OpenMP's default
    """Activations of every row of X: of the output layer, or, when ``out`` has a column
    per unit, of every layer (concatenated, first hidden layer first)."""
    cdef Py_ssize_t n = X.shape[0]
    cdef bint batched = chunk > 0 and has_blas()
    n_threads = usable_threads(n_threads)
    if not batched:
        n_threads = 1
    # scratch per thread that runs: never more threads than chunks
    if batched and n_threads > (n + chunk - 1) // chunk:
        n_threads = <int>((n + chunk - 1) // chunk) if n > 0 else 1
    cdef Workspace ws = Workspace(sizes, acts, rows_needed(batched, chunk, n) * n_threads,
                                  sizeof(floating))
    cdef Layout* lay = &ws.lay
    cdef bint every_layer = out.shape[1] == lay.n_units
    cdef int l, previous, first = 0 if every_layer else lay.n_layers - 1
    cdef Py_ssize_t c, k, s, rows, width, n_chunks, step = chunk if batched else 1
    cdef floating* a
    n_chunks = (n + step - 1) // step
    with nogil:
        # Chunks are independent: each thread feeds its chunks through its own scratch.
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            k = c * step
            rows = step if k + step <= n else n - k
            a = <floating*>ws.acts + threadid() * step * lay.n_units
            if batched:
                previous = blas_single_thread()
                batch_feedforward(lay, &params[0], &X[k, 0], <int>rows, a,
                                  <floating*>ws.z_out + threadid() * step * lay.sizes[lay.n_layers])
                blas_restore_threads(previous)
            else:
                feedforward(lay, &params[0], &X[k, 0], a, <floating*>ws.z_out)
            # layer l's activations: a (rows, n_l) block at rows * a_off[l]
            for l in range(first, lay.n_layers):
                width = lay.sizes[l + 1]
                for s in range(rows):
                    memcpy(&out[k + s, lay.a_off[l] - lay.a_off[first]],
                           a + rows * lay.a_off[l] + s * width, width * sizeof(floating))


cdef inline void score_rows(int loss, int out_act, const floating* a_out, const floating* z,
                            const floating[:, ::1] Y, const Py_ssize_t* rows, Py_ssize_t first,
                            Py_ssize_t count, Py_ssize_t n_out,
                            const floating* weights,  # per-row sample weights; NULL for none
                            floating* d_out,      # OUT: output deltas; NULL for none
                            double* total, Py_ssize_t* n_correct) noexcept nogil:
    """Loss, correctness and (optionally) output deltas of ``count`` consecutive samples
    of a block; sample s is row ``rows[s]`` of Y (or ``first + s`` when rows is NULL).
    A sample weight scales the sample's loss and so, linearly, its whole gradient."""
    cdef Py_ssize_t s, r, k
    cdef const floating* y
    cdef floating w
    for s in range(count):
        r = rows[s] if rows != NULL else first + s
        y = &Y[r, 0]
        w = weights[r] if weights != NULL else 1
        total[0] += w * sample_loss(loss, out_act, a_out + s * n_out, z + s * n_out, y, n_out)
        n_correct[0] += is_correct(a_out + s * n_out, y, n_out)
        if d_out != NULL:
            output_delta(loss, out_act, a_out + s * n_out, y, d_out + s * n_out, n_out)
            if weights != NULL:
                for k in range(n_out):
                    d_out[s * n_out + k] *= w


def loss_and_gradients(const Py_ssize_t[::1] sizes, const int[::1] acts, int loss,
                       const floating[::1] params, const floating[:, ::1] X,
                       const floating[:, ::1] Y,
                       floating[::1] grad,   # OUT: gradient sums (zeroed here); ignored if empty
                       Py_ssize_t chunk=0):  # rows per matrix product; 0: one sample at a time
    """Sum over the rows of X, Y of the loss, and (if grad is not empty) of its gradient.

    Returns (loss sum, number of correctly classified rows)."""
    cdef Py_ssize_t n = X.shape[0], n_out = Y.shape[1]
    cdef bint batched = chunk > 0 and has_blas()
    cdef Workspace ws = Workspace(sizes, acts, rows_needed(batched, chunk, n), sizeof(floating))
    cdef Layout* lay = &ws.lay
    cdef int L = lay.n_layers, out_act = lay.acts[L - 1]
    cdef bint want_grad = grad.shape[0] > 0
    cdef Py_ssize_t k, rows
    cdef floating* a = <floating*>ws.acts
    cdef floating* d = <floating*>ws.deltas
    cdef floating* z = <floating*>ws.z_out
    cdef double total = 0
    cdef Py_ssize_t n_correct = 0
    cdef int blas_previous
    with nogil:
        blas_previous = blas_single_thread() if batched else 0
        if want_grad:
            memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
        if batched:
            k = 0
            while k < n:
                rows = chunk if k + chunk <= n else n - k
                batch_feedforward(lay, &params[0], &X[k, 0], <int>rows, a, z)
                score_rows(loss, out_act, a + rows * lay.a_off[L - 1], z, Y, NULL, k, rows,
                           n_out, NULL, d + rows * lay.a_off[L - 1] if want_grad else NULL,
                           &total, &n_correct)
                if want_grad:
                    batch_backprop(lay, &params[0], &X[k, 0], <int>rows, a, d, &grad[0])
                k += rows
        else:
            for k in range(n):
                feedforward(lay, &params[0], &X[k, 0], a, z)
                score_rows(loss, out_act, a + lay.a_off[L - 1], z, Y, NULL, k, 1, n_out, NULL,
                           d + lay.a_off[L - 1] if want_grad else NULL, &total, &n_correct)
                if want_grad:
                    backprop_accumulate(lay, &params[0], &X[k, 0], a, d, &grad[0])
        blas_restore_threads(blas_previous)
    return total, n_correct


def train_epoch(const Py_ssize_t[::1] sizes, const int[::1] acts, int loss,
                floating[::1] params,            # IN/OUT: the model
                const floating[:, ::1] X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] order,     # the order of the samples for this call
                Py_ssize_t batch_size,
                int opt, const double[::1] hyper,
                floating[:, ::1] state,          # IN/OUT: optimizer state, (n_slots, n_params)
                long step,                       # optimizer steps taken before this call
                floating[::1] grad,              # scratch: (n_params,)
                bint batched=False,              # mini-batches as matrix products (BLAS)
                const floating[::1] sample_weight=None,  # per row of X; None: all 1
                const double[::1] dropout=None,  # rate per weight layer; None: no dropout
                unsigned long long dropout_seed=0,
                double max_norm=0,               # > 0: bound each unit's incoming weights
                int n_threads=0):                # for a batch's parts; 0: OpenMP's default
    """Mini-batch training over ``order``: an epoch, or a run of whole batches of one.

    Returns (sum of the (weighted) sample losses, number classified right, steps taken).

    The loss of each sample is taken on the forward pass that trains on it, with the
    weights of that moment (the running training loss that Keras and scikit-learn report).
    """
    cdef Py_ssize_t n = order.shape[0], n_out = Y.shape[1], n_in = X.shape[1]
    batched = batched and batch_size > 1 and has_blas()
    cdef Workspace ws = Workspace(sizes, acts, rows_needed(batched, min(batch_size, BATCH_BLOCK), n),
                                  sizeof(floating))
    cdef Layout* lay = &ws.lay
    cdef int L = lay.n_layers, out_act = lay.acts[L - 1]
    cdef Py_ssize_t k, p, start, rows, stop = 0
    cdef floating* xb = <floating*>ws.inputs
    cdef floating* a = <floating*>ws.acts
    cdef floating* d = <floating*>ws.deltas
    cdef floating* z = <floating*>ws.z_out
    cdef floating* st = &state[0, 0]
    cdef const floating* sw = &sample_weight[0] if sample_weight is not None else NULL
    cdef double total = 0
    cdef Py_ssize_t n_correct = 0
    cdef long steps = step
    if dropout is not None:
        lay.dropout = &dropout[0]
        lay.dropout_seed = dropout_seed
    lay.max_norm = max_norm
    # Online plain SGD takes the fused path: no gradient buffer, one pass over W.
    cdef bint fused_sgd = (batch_size == 1 and opt == OPT_SGD and hyper[1] == 0)
    # ... and online SGD with momentum a fused path of its own.
    cdef bint fused_momentum = (batch_size == 1 and opt == OPT_SGD and hyper[1] != 0)
    # ... and, with hidden layers and no max-norm step between samples, fuses the first
    # layer's update with the next sample's forward pass.
    cdef bint fuse_next = fused_sgd and L > 1 and max_norm <= 0
    cdef floating* x_now = <floating*>align64(ws.rows)
    cdef floating* x_next = <floating*>align64(x_now + n_in)
    cdef int blas_previous
    n_threads = usable_threads(n_threads)
    with nogil:
        blas_previous = blas_single_thread() if batched else 0
        while stop < n:
            start = stop
            stop = start + batch_size if start + batch_size < n else n
            rows = stop - start
            if fused_sgd:
                # sample `start` was fed forward by the previous iteration (or below)
                k = order[start]
                if start == 0 and fuse_next:
                    memcpy(x_now, &X[k, 0], n_in * sizeof(floating))
                if start == 0 or not fuse_next:
                    feedforward(lay, &params[0], &X[k, 0], a, z, start)
                score_rows(loss, out_act, a + lay.a_off[L - 1], z, Y, &order[start], 0, 1,
                           n_out, sw, d + lay.a_off[L - 1], &total, &n_correct)
                if fuse_next and stop < n:
                    # The inputs go through two aligned rows (a user's array is often not
                    # 64-byte aligned, and unaligned loads slow this loop by up to 25%).
                    memcpy(x_next, &X[order[stop], 0], n_in * sizeof(floating))
                    backprop_sgd_update(lay, &params[0], x_now, a, d, <floating>hyper[0],
                                        <floating>hyper[3], start, 1)
                    update_first_forward_next(lay, &params[0], x_now, x_next, d, a,
                                              <floating>hyper[0], <floating>hyper[3], stop)
                    feedforward(lay, &params[0], NULL, a, z, stop, 1)
                    x_now, x_next = x_next, x_now
                else:
                    backprop_sgd_update(lay, &params[0], &X[k, 0], a, d,
                                        <floating>hyper[0], <floating>hyper[3], start)
            elif fused_momentum:
                k = order[start]
                feedforward(lay, &params[0], &X[k, 0], a, z, start)
                score_rows(loss, out_act, a + lay.a_off[L - 1], z, Y, &order[start], 0, 1,
                           n_out, sw, d + lay.a_off[L - 1], &total, &n_correct)
                backprop_momentum_update(lay, &params[0], &X[k, 0], a, d, st,
                                         <floating>hyper[0], <floating>hyper[1], hyper[2] != 0,
                                         <floating>hyper[3], steps == 0, start)
            else:
                if batched:
                    batch_gradient(lay, &params[0], X, Y, &order[start], rows, start, loss, sw,
                                   xb, a, d, z, &grad[0], &total, &n_correct, n_threads)
                else:
                    memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
                    for k in range(start, stop):
                        feedforward(lay, &params[0], &X[order[k], 0], a, z, k)
                        score_rows(loss, out_act, a + lay.a_off[L - 1], z, Y, &order[k], 0, 1,
                                   n_out, sw, d + lay.a_off[L - 1], &total, &n_correct)
                        backprop_accumulate(lay, &params[0], &X[order[k], 0], a, d, &grad[0], k)
                if batched and n_threads > 1 and unit_parts(min(rows, BATCH_BLOCK), n_in,
                                                            lay.sizes[1]) > 1:
                    # the threads that wrote the gradient's parts step them (their caches)
                    for p in prange(n_threads, num_threads=n_threads, schedule="static"):
                        optimizer_step(lay, opt, &hyper[0], &params[0], &grad[0], st, steps,
                                       <floating>1 / <floating>rows, lay.n_params * p // n_threads,
                                       lay.n_params * (p + 1) // n_threads)
                else:
                    optimizer_step(lay, opt, &hyper[0], &params[0], &grad[0], st, steps,
                                   <floating>1 / <floating>rows)
            if max_norm > 0:
                apply_max_norm(lay, &params[0])
            steps += 1
        blas_restore_threads(blas_previous)
    return total, n_correct, steps
