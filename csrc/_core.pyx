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
from libc.math cimport sqrt, sqrtf
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset

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
OPTIMIZERS = ("sgd",)

# Independent accumulators in a dot product: gcc does not vectorise a floating-point
# sum without -ffast-math, but it does vectorise 16 separate running sums.
cdef enum:
    N_ACC = 16
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


cdef int layout_init(Layout* lay, const Py_ssize_t[::1] sizes, const int[::1] acts) noexcept nogil:
    """Fill ``lay`` from the unit counts and activation codes; 0 on success."""
    cdef int L = <int>sizes.shape[0] - 1
    cdef int l
    lay.n_layers = L
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
cdef void feedforward(const Layout* lay, const floating* params, const floating* x,
                      floating* a,         # OUT: activations of every layer (n_units)
                      floating* z_out      # OUT: pre-activations of the output layer
                      ) noexcept nogil:
    cdef int l, L = lay.n_layers
    cdef Py_ssize_t j, n_in, n_out
    cdef const floating* a_in = x
    cdef const floating* W
    cdef const floating* b
    cdef floating* a_l
    cdef floating z, zmax, total
    for l in range(L):
        n_in = lay.sizes[l]
        n_out = lay.sizes[l + 1]
        W = params + lay.w_off[l]
        b = params + lay.b_off[l]
        a_l = a + lay.a_off[l]
        if l == L - 1:
            for j in range(n_out):
                z_out[j] = b[j] + dot(W + j * n_in, a_in, n_in)
            if lay.acts[l] == SOFTMAX:
                zmax = z_out[0]
                for j in range(1, n_out):
                    if z_out[j] > zmax:
                        zmax = z_out[j]
                total = 0
                for j in range(n_out):
                    a_l[j] = f_exp(z_out[j] - zmax)
                    total += a_l[j]
                for j in range(n_out):
                    a_l[j] = a_l[j] / total
            else:
                for j in range(n_out):
                    a_l[j] = activate(lay.acts[l], z_out[j])
        else:
            for j in range(n_out):
                a_l[j] = activate(lay.acts[l], b[j] + dot(W + j * n_in, a_in, n_in))
        a_in = a_l


cdef floating sample_loss(int loss, int out_act, const floating* a, const floating* z,
                          const floating* y, Py_ssize_t n) noexcept nogil:
    """The loss of one sample, computed from the output pre-activations where that is stabler."""
    cdef Py_ssize_t k
    cdef floating s = 0, zmax, lse, ysum
    if loss == MSE:
        for k in range(n):
            s += (a[k] - y[k]) * (a[k] - y[k])
        return s / 2
    if out_act == SOFTMAX:
        # -sum_k y_k log softmax(z)_k = sum(y) * logsumexp(z) - sum_k y_k z_k
        zmax = z[0]
        for k in range(1, n):
            if z[k] > zmax:
                zmax = z[k]
        lse = 0
        ysum = 0
        for k in range(n):
            lse += f_exp(z[k] - zmax)
            ysum += y[k]
        lse = zmax + f_log(lse)
        for k in range(n):
            s += y[k] * z[k]
        return ysum * lse - s
    # sigmoid: -[y log a + (1 - y) log(1 - a)] = softplus(z) - y z
    for k in range(n):
        s += softplus(z[k]) - y[k] * z[k]
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
                              floating* grad   # IN/OUT: gradients are added here
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
                d_prev[i] *= derivative(lay.acts[l - 1], a_prev[i])


cdef void backprop_sgd_update(const Layout* lay, floating* params, const floating* x,
                              const floating* a, floating* d, floating lr, floating wd
                              ) noexcept nogil:
    """Online SGD: backward pass and update fused, one pass over each weight matrix.

    Each weight is read once, used for the delta of the layer below, then written:
    w <- w - lr * (d_j a_i + wd w), the same formula as the reference's SGD step.
    """
    cdef int l
    cdef Py_ssize_t i, j, n_in, n_out
    cdef floating* w
    cdef floating* b
    cdef const floating* a_prev
    cdef floating* d_l
    cdef floating* d_prev
    cdef floating dj, c, wi, keep = 1 - lr * wd
    for l in range(lay.n_layers - 1, -1, -1):
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
                    w[i] = keep * wi - c * a_prev[i]
            elif wd != 0:
                for i in range(n_in):
                    w[i] = keep * w[i] - c * a_prev[i]
            else:
                for i in range(n_in):
                    w[i] -= c * a_prev[i]
        if l > 0:
            for i in range(n_in):
                d_prev[i] *= derivative(lay.acts[l - 1], a_prev[i])


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


cdef void optimizer_step(const Layout* lay, int opt, const double* hyper,
                         floating* params, const floating* grad, floating* state,
                         long step, floating scale) noexcept nogil:
    """One optimizer step over all layers; weight decay touches weights, never biases."""
    cdef int l
    cdef Py_ssize_t nw, nb
    cdef floating lr = <floating>hyper[0]
    cdef floating momentum = <floating>hyper[1]
    cdef bint nesterov = hyper[2] != 0
    cdef floating wd = <floating>hyper[3]
    for l in range(lay.n_layers):
        nw = lay.b_off[l] - lay.w_off[l]
        nb = lay.sizes[l + 1]
        if opt == OPT_SGD:
            sgd_step(params + lay.w_off[l], grad + lay.w_off[l], state + lay.w_off[l], nw,
                     lr, momentum, nesterov, wd, step == 0, scale)
            sgd_step(params + lay.b_off[l], grad + lay.b_off[l], state + lay.b_off[l], nb,
                     lr, momentum, nesterov, 0, step == 0, scale)


# ------------------------------------------------------------ Python entry points
cdef class _Scratch:
    """Per-call buffers, allocated once and freed however the call ends."""
    cdef void* units
    cdef void* deltas
    cdef void* z_out

    def __dealloc__(self):
        free(self.units)
        free(self.deltas)
        free(self.z_out)


cdef int scratch_init(_Scratch s, Py_ssize_t n_units, Py_ssize_t n_out, size_t itemsize):
    s.units = calloc(n_units, itemsize)
    s.deltas = calloc(n_units, itemsize)
    s.z_out = calloc(n_out, itemsize)
    if s.units == NULL or s.deltas == NULL or s.z_out == NULL:
        raise MemoryError("cyprop: cannot allocate scratch buffers")
    return 0


cdef Layout make_layout(const Py_ssize_t[::1] sizes, const int[::1] acts) except *:
    cdef Layout lay
    if layout_init(&lay, sizes, acts) != 0:
        layout_free(&lay)
        raise MemoryError("cyprop: cannot allocate the layer layout")
    return lay


def forward(const Py_ssize_t[::1] sizes, const int[::1] acts, const floating[::1] params,
            const floating[:, ::1] X,
            floating[:, ::1] out):   # OUT: output activations, (n, n_out)
    """Output activations of every row of X."""
    cdef Layout lay = make_layout(sizes, acts)
    cdef _Scratch s = _Scratch()
    cdef Py_ssize_t k, j, n = X.shape[0], n_out = out.shape[1]
    cdef floating* a
    cdef const floating* a_out
    try:
        scratch_init(s, lay.n_units, n_out, sizeof(floating))
        a = <floating*>s.units
        a_out = a + lay.a_off[lay.n_layers - 1]
        with nogil:
            for k in range(n):
                feedforward(&lay, &params[0], &X[k, 0], a, <floating*>s.z_out)
                for j in range(n_out):
                    out[k, j] = a_out[j]
    finally:
        layout_free(&lay)


def loss_and_gradients(const Py_ssize_t[::1] sizes, const int[::1] acts, int loss,
                       const floating[::1] params, const floating[:, ::1] X,
                       const floating[:, ::1] Y,
                       floating[::1] grad,   # OUT: gradient sums (zeroed here); ignored if empty
                       ):
    """Sum over the rows of X, Y of the loss, and (if grad is not empty) of its gradient.

    Returns (loss sum, number of correctly classified rows)."""
    cdef Layout lay = make_layout(sizes, acts)
    cdef _Scratch s = _Scratch()
    cdef Py_ssize_t k, n = X.shape[0], n_out = Y.shape[1]
    cdef bint want_grad = grad.shape[0] > 0
    cdef int out_act
    cdef floating* a
    cdef floating* d
    cdef floating* z
    cdef double total = 0
    cdef Py_ssize_t n_correct = 0
    try:
        scratch_init(s, lay.n_units, n_out, sizeof(floating))
        a = <floating*>s.units
        d = <floating*>s.deltas
        z = <floating*>s.z_out
        out_act = lay.acts[lay.n_layers - 1]
        with nogil:
            if want_grad:
                memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
            for k in range(n):
                feedforward(&lay, &params[0], &X[k, 0], a, z)
                total += sample_loss(loss, out_act, a + lay.a_off[lay.n_layers - 1], z,
                                     &Y[k, 0], n_out)
                n_correct += is_correct(a + lay.a_off[lay.n_layers - 1], &Y[k, 0], n_out)
                if want_grad:
                    output_delta(loss, out_act, a + lay.a_off[lay.n_layers - 1], &Y[k, 0],
                                 d + lay.a_off[lay.n_layers - 1], n_out)
                    backprop_accumulate(&lay, &params[0], &X[k, 0], a, d, &grad[0])
    finally:
        layout_free(&lay)
    return total, n_correct


def train_epoch(const Py_ssize_t[::1] sizes, const int[::1] acts, int loss,
                floating[::1] params,            # IN/OUT: the model
                const floating[:, ::1] X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] order,     # the order of the samples for this epoch
                Py_ssize_t batch_size,
                int opt, const double[::1] hyper,
                floating[:, ::1] state,          # IN/OUT: optimizer state, (n_slots, n_params)
                long step,                       # optimizer steps taken before this call
                floating[::1] grad):             # scratch: (n_params,)
    """One epoch of mini-batch training.

    Returns (sum of the sample losses, number of samples classified right, steps taken).

    The loss of each sample is taken on the forward pass that trains on it, with the
    weights of that moment (the running training loss that Keras and scikit-learn report).
    """
    cdef Layout lay = make_layout(sizes, acts)
    cdef _Scratch s = _Scratch()
    cdef Py_ssize_t k, start, stop, n = order.shape[0], n_out = Y.shape[1]
    cdef int out_act, L
    cdef floating* a
    cdef floating* d
    cdef floating* z
    cdef floating* a_out
    cdef floating* st = &state[0, 0]
    cdef double total = 0
    cdef Py_ssize_t n_correct = 0
    cdef long steps = step
    # Online plain SGD takes the fused path: no gradient buffer, one pass over W.
    cdef bint fused_sgd = (batch_size == 1 and opt == OPT_SGD and hyper[1] == 0)
    try:
        scratch_init(s, lay.n_units, n_out, sizeof(floating))
        a = <floating*>s.units
        d = <floating*>s.deltas
        z = <floating*>s.z_out
        L = lay.n_layers
        out_act = lay.acts[L - 1]
        a_out = a + lay.a_off[L - 1]
        with nogil:
            start = 0
            while start < n:
                stop = start + batch_size if start + batch_size < n else n
                if fused_sgd:
                    k = order[start]
                    feedforward(&lay, &params[0], &X[k, 0], a, z)
                    total += sample_loss(loss, out_act, a_out, z, &Y[k, 0], n_out)
                    n_correct += is_correct(a_out, &Y[k, 0], n_out)
                    output_delta(loss, out_act, a_out, &Y[k, 0], d + lay.a_off[L - 1], n_out)
                    backprop_sgd_update(&lay, &params[0], &X[k, 0], a, d,
                                        <floating>hyper[0], <floating>hyper[3])
                else:
                    memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
                    for k in range(start, stop):
                        feedforward(&lay, &params[0], &X[order[k], 0], a, z)
                        total += sample_loss(loss, out_act, a_out, z, &Y[order[k], 0], n_out)
                        n_correct += is_correct(a_out, &Y[order[k], 0], n_out)
                        output_delta(loss, out_act, a_out, &Y[order[k], 0],
                                     d + lay.a_off[L - 1], n_out)
                        backprop_accumulate(&lay, &params[0], &X[order[k], 0], a, d, &grad[0])
                    optimizer_step(&lay, opt, &hyper[0], &params[0], &grad[0], st, steps,
                                   <floating>1 / <floating>(stop - start))
                steps += 1
                start = stop
    finally:
        layout_free(&lay)
    return total, n_correct, steps
