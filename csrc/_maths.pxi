# The scalar maths: activations and their derivatives, the losses and output deltas of
# one sample, dropout masks and the dot product.  The same functions, under the same
# names where they exist there, as cyprop/_maths.py.

cdef extern from "cyprop_exp.h":
    double cyprop_exp_d(double x) nogil
    float cyprop_exp_f(float x) nogil
    void cyprop_sigmoid_d(double* a, Py_ssize_t n) nogil
    void cyprop_sigmoid_f(float* a, Py_ssize_t n) nogil
    void cyprop_exp_row_d(double* a, Py_ssize_t n) nogil
    void cyprop_exp_row_f(float* a, Py_ssize_t n) nogil

cdef double LEAKY_SLOPE = 0.01


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


cdef inline void exp_row(floating* a, Py_ssize_t n) noexcept nogil:
    if floating is float:
        cyprop_exp_row_f(a, n)
    else:
        cyprop_exp_row_d(a, n)


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


cdef inline floating f_sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


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
        # NaN stays NaN (z > 0 ? z : 0, max(z, 0) on x86, took it to 0): a weight set
        # to NaN by hand must show in the output, not vanish
        return 0 if z <= 0 else z
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


cdef inline void times_derivative(int act, floating* d, const floating* a,
                                  Py_ssize_t n) noexcept nogil:
    """d[i] *= f'(z_i) for a row of n units, from their activations a: the choice of f
    made once per row, so that each loop vectorises."""
    cdef Py_ssize_t i
    if act == SIGMOID:
        for i in range(n):
            d[i] *= derivative(SIGMOID, a[i])
    elif act == TANH:
        for i in range(n):
            d[i] *= derivative(TANH, a[i])
    elif act == RELU:
        for i in range(n):
            d[i] *= derivative(RELU, a[i])
    elif act == LEAKY_RELU:
        for i in range(n):
            d[i] *= derivative(LEAKY_RELU, a[i])
    else:
        for i in range(n):
            d[i] *= derivative(act, a[i])


cdef inline floating largest(const floating* z, Py_ssize_t n) noexcept nogil:
    """max(z): subtracted before exp in softmax and log-sum-exp, so exp never overflows."""
    cdef Py_ssize_t k
    cdef floating m = z[0]
    for k in range(1, n):
        if z[k] > m:
            m = z[k]
    return m


cdef inline void activate_row(int act, floating* a, Py_ssize_t n) noexcept nogil:
    """a = f(a) in place for a hidden layer: the sigmoid vectorised (libm's exp is a call
    per element, which costs a one-row step more than its products)."""
    cdef Py_ssize_t j
    if act == SIGMOID:
        sigmoid_row(a, n)
    else:
        for j in range(n):
            a[j] = activate(act, a[j])


cdef inline void output_activation(int act, const floating* z,   # IN: (n,) pre-activations
                                   floating* a,                  # OUT: (n,) activations
                                   Py_ssize_t n) noexcept nogil:
    """a = f(z) for the output layer, where f may be the softmax."""
    cdef Py_ssize_t j
    cdef floating zmax, total
    if act != SOFTMAX:
        for j in range(n):
            a[j] = activate(act, z[j])
        return
    zmax = largest(z, n)
    softmax_exps(z, zmax, a, n)
    total = 0
    for j in range(n):
        total += a[j]
    for j in range(n):
        a[j] = a[j] / total


cdef inline void softmax_exps(const floating* z, floating zmax,
                              floating* e,  # OUT: exp(z_k - zmax)
                              Py_ssize_t n) noexcept nogil:
    """The softmax's exponentials (e is not z): vectorised (libm's exp is a call per
    output, on W1 a good share of a step), but libm's where the vectorised exp gives 0
    (below -708, float32 -86.5) and the result is a tiny number, not 0 (the output of a
    saturated network, and its gradient, whose sign Rprop reads)."""
    cdef Py_ssize_t k
    cdef floating floor = -708.0 if floating is double else -86.5
    for k in range(n):
        e[k] = z[k] - zmax
    exp_row(e, n)
    for k in range(n):
        if z[k] - zmax < floor:
            e[k] = f_exp(z[k] - zmax)


cdef floating log_sum_exp(const floating* z, floating zmax, Py_ssize_t n) noexcept nogil:
    """log(sum_k exp(z_k - zmax)): the softmax's exponentials (softmax_exps), summed in
    the same order as output_activation sums them, so the loss's log-sum-exp is the log
    of the softmax's total."""
    cdef floating chunk[16]
    cdef floating total = 0
    cdef Py_ssize_t k0, k, m
    for k0 in range(0, n, 16):
        m = min(16, n - k0)
        softmax_exps(z + k0, zmax, chunk, m)
        for k in range(m):
            total += chunk[k]
    return f_log(total)


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
        lse = log_sum_exp(z, zmax, n)
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


# ---------------------------------------------------------------------------- dropout
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


# ------------------------------------------------------------------------ dot product
cdef inline double squared_norm(const floating* w, Py_ssize_t n) noexcept nogil:
    """sum_i w_i**2 in float64 (as the reference's norms: float32's squares could
    overflow), in N_ACC running sums reduced pairwise, as dot's: one running sum waited
    on each addition, and a max-norm step's norms took most of a per-sample epoch."""
    cdef double s[N_ACC]
    cdef Py_ssize_t i = 0, k
    cdef double t
    for k in range(N_ACC):
        s[k] = 0
    while i + N_ACC <= n:
        for k in range(N_ACC):
            s[k] += <double>w[i + k] * <double>w[i + k]
        i += N_ACC
    for k in range(N_ACC // 2):
        s[k] += s[k + N_ACC // 2]
    for k in range(N_ACC // 4):
        s[k] += s[k + N_ACC // 4]
    for k in range(N_ACC // 8):
        s[k] += s[k + N_ACC // 8]
    t = s[0] + s[1]
    while i < n:
        t += <double>w[i] * <double>w[i]
        i += 1
    return t


cdef inline floating dot(const floating* w, const floating* x, Py_ssize_t n) noexcept nogil:
    # (update_dot, cyprop_rows.h, sums the next sample's first layer in this same order:
    # a call's first sample and the others agree, so online SGD gives the same weights
    # however its epoch is split into calls, e.g. sparse rows densified block by block)
    cdef floating s[N_ACC]
    cdef Py_ssize_t i = 0, k
    cdef floating t
    for k in range(N_ACC):
        s[k] = 0
    while i + N_ACC <= n:
        for k in range(N_ACC):
            s[k] += w[i + k] * x[i + k]
        i += N_ACC
    # pairwise reduction of the accumulators (N_ACC is 16: four halvings), its levels
    # written out: as a loop over the halves it ran through memory, each level waiting
    # for the stores of the one before
    for k in range(N_ACC // 2):
        s[k] += s[k + N_ACC // 2]
    for k in range(N_ACC // 4):
        s[k] += s[k + N_ACC // 4]
    for k in range(N_ACC // 8):
        s[k] += s[k + N_ACC // 8]
    t = s[0] + s[1]
    while i < n:
        t += w[i] * x[i]
        i += 1
    return t
