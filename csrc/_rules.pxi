# Optimizer rules: what happens to one parameter once its gradient is known.
#
# Design: each optimizer is a small struct (its hyper-parameters by name, plus the
# scalars of the current step) and one branch of rule_step, the formula of
# torch.optim's step for one parameter and its buffers.  The loops are written once and
# take the rule as a fused type, so each loop is compiled once per rule with the rule's
# formula inlined: the per-sample backward pass (csrc/_sample.pxi) steps each row of
# weights the moment its gradients are known (rule_row), and rule_range steps a range
# of parameters from gradient sums (mini-batches).  The same formula serves both, so a
# batch of one sample gives the same step either way (bit for bit where the compiler
# contracts no multiply-adds, but for plain SGD's (lr * d_j) * a_i, see rule_step, and
# for the rows below).  GradientSum is the rule that steps nothing: it adds each
# gradient to a buffer (gradients, and the batches of the gradient paths).
#
# Not correctly rounded on AVX-512: there, rule_row steps the weights of Adam, RMSprop
# and Adagrad with csrc/cyprop_approx.h's row kernels: the same formulas, with
# 1 / (sqrt(v) + eps) from the hardware's estimates of 1/sqrt(x) and 1/x refined by
# Newton steps instead of a correctly rounded square root and division (which set the
# pace of those rules online).  A step num / (sqrt(v) + eps) is then within 6u of the
# true quotient (u = 2^-53 in float64, 2^-24 in float32; the exact formula's three
# roundings put its own within 3u), so within 9u of the exact formula's, and a weight
# within 1 ulp more.  Special values (v = 0, subnormal, infinite, NaN) step as in the
# exact formula.  Mini-batches step their weights (rule_range) through the same kernels.
# Biases, the portable and AVX2 builds and py_rule_step keep the exact formula;
# tests/test_core_rules.py checks the rows against the true quotients (py_rule_row).

cdef extern from "cyprop_approx.h":
    # 1 where the row kernels below exist (the AVX-512 build); rule_row tests it
    bint CYPROP_APPROX_ROWS
    bint cyprop_approx_eps_d(double eps) nogil   # whether they hold for this eps
    bint cyprop_approx_eps_f(float eps) nogil
    # each steps a row and, given x_next (else NULL), returns dot(w, x_next) after it
    # (1 - beta1 and the like come from the caller, taken in double: in float32, a beta1
    # within 3e-8 of 1 is 1, and 1 - beta1 would be 0 where the reference's is not)
    double cyprop_adam_row_d(double* w, double* m, double* v, const double* x,
                             const double* x_next, double dj, double beta1, double c1,
                             double beta2, double c2, double step_size, double eps_t,
                             double weight_decay, Py_ssize_t n) nogil
    float cyprop_adam_row_f(float* w, float* m, float* v, const float* x,
                            const float* x_next, float dj, float beta1, float c1, float beta2,
                            float c2, float step_size, float eps_t, float weight_decay,
                            Py_ssize_t n) nogil
    double cyprop_rmsprop_row_d(double* w, double* v, double* buf, const double* x,
                                const double* x_next, double dj, double alpha, double c,
                                double eps, bint with_momentum, double momentum,
                                double learning_rate, double weight_decay, Py_ssize_t n) nogil
    float cyprop_rmsprop_row_f(float* w, float* v, float* buf, const float* x,
                               const float* x_next, float dj, float alpha, float c, float eps,
                               bint with_momentum, float momentum, float learning_rate,
                               float weight_decay, Py_ssize_t n) nogil
    double cyprop_adagrad_row_d(double* w, double* v, const double* x, const double* x_next,
                                double dj, double eps, double learning_rate,
                                double weight_decay, Py_ssize_t n) nogil
    float cyprop_adagrad_row_f(float* w, float* v, const float* x, const float* x_next,
                               float dj, float eps, float learning_rate, float weight_decay,
                               Py_ssize_t n) nogil


# Optimizer codes: the order *is* the code (cyprop/optimizers.py's Optimizer.code; the
# test suite checks both agree).
OPTIMIZERS = ("SGD", "Adam", "RMSprop", "Adagrad", "Rprop")
#: The fields of Hyper that each optimizer's rules read.
HYPER_FIELDS = {
    "SGD": ("learning_rate", "momentum", "nesterov", "weight_decay"),
    "Adam": ("learning_rate", "beta1", "beta2", "eps", "weight_decay"),
    "RMSprop": ("learning_rate", "alpha", "eps", "momentum", "weight_decay"),
    "Adagrad": ("learning_rate", "eps", "weight_decay"),
    "Rprop": ("learning_rate", "eta_minus", "eta_plus", "step_min", "step_max"),
}

cdef enum:
    RULE_SGD = 0
    RULE_MOMENTUM = 1   # SGD with momentum (and Nesterov)
    RULE_ADAM = 2
    RULE_RMSPROP = 3
    RULE_ADAGRAD = 4
    RULE_RPROP = 5

RULES = ("sgd", "momentum", "adam", "rmsprop", "adagrad", "rprop")
#: Rows of optimizer state (each shaped like the parameters) that each rule's optimizer
#: keeps, and the rule reads and writes at most: fewer would be written past.  (Plain
#: SGD reads none, but SGD keeps its momentum buffer.)
STATE_ROWS = {"sgd": 1, "momentum": 1, "adam": 2, "rmsprop": 2, "adagrad": 1, "rprop": 2}


cdef struct Hyper:
    # Every optimizer's hyper-parameters by name: the C view of cyprop.optimizers.Hyper,
    # field for field.  An optimizer sets the fields it uses (HYPER_FIELDS); the rest are 0.
    double learning_rate
    double momentum         # SGD, RMSprop
    bint nesterov           # SGD
    double weight_decay     # L2 on weights (never biases), added to the gradient
    double beta1            # Adam
    double beta2
    double eps              # Adam, RMSprop, Adagrad
    double alpha            # RMSprop
    double eta_minus        # Rprop: step size factors on a sign flip ...
    double eta_plus         # ... and while the sign stays
    double step_min         # Rprop: bounds on the step sizes
    double step_max


def echo_hyper(Hyper hyper):
    """The hyper-parameters as the kernels read them, back as a dict (for the tests)."""
    return hyper


def echo_plan(Plan plan):
    """The plan as the kernels read it, back as a dict (for the tests)."""
    return plan


cdef struct SgdRule:
    Hyper h

cdef struct MomentumRule:
    Hyper h
    bint first          # the optimizer's first step: the buffer starts as the gradient

cdef struct AdamRule:
    # torch's step m / (sqrt(v) / sqrt(1 - beta2**t) + eps), its bias corrections
    # multiplied through: one division per parameter instead of two (the dividers set
    # the speed of Adam's loops)
    Hyper h
    double step_size    # learning_rate / (1 - beta1**t) * sqrt(1 - beta2**t), step t
    double eps_t        # eps * sqrt(1 - beta2**t)
    double rate_t       # learning_rate / (1 - beta1**t), and ...
    double root_t       # ... sqrt(1 - beta2**t): the formula as written (adam_step)

cdef struct RmspropRule:
    Hyper h

cdef struct AdagradRule:
    Hyper h

cdef struct RpropRule:
    Hyper h
    bint first          # the optimizer's first step: every step size starts at learning_rate

cdef struct GradientSum:
    char unused         # (C wants a member)

# The optimizers' rules, and every rule a backward pass can take.
ctypedef fused Rule:
    SgdRule
    MomentumRule
    AdamRule
    RmspropRule
    AdagradRule
    RpropRule

ctypedef fused Backward:
    GradientSum
    SgdRule
    MomentumRule
    AdamRule
    RmspropRule
    AdagradRule
    RpropRule


cdef inline void rule_begin(Rule* r, long long steps) noexcept nogil:
    """The rule's scalars for step t = steps + 1, once per step: never inside the loops
    over parameters (Adam's bias corrections change with every sample online)."""
    cdef double t = <double>(steps + 1)
    if Rule is MomentumRule:
        r.first = steps == 0
    elif Rule is RpropRule:
        r.first = steps == 0
    elif Rule is AdamRule:
        r.rate_t = r.h.learning_rate / (1 - pow(r.h.beta1, t))
        r.root_t = sqrt(1 - pow(r.h.beta2, t))
        r.step_size = r.rate_t * r.root_t
        r.eps_t = r.h.eps * r.root_t


cdef inline floating normal_eps(double eps, floating like) noexcept nogil:
    """``eps`` in the dtype of ``like``, raised to the dtype's smallest normal number if
    below it (cyprop.optimizers.normal_eps does the same for the reference).  A smaller
    eps (5e-324, one below float32's range, or Adam's eps * sqrt(1 - beta2**t), which
    underflows first) would be 0, or read as 0 where the per-sample paths flush
    subnormals, and a weight that never had a gradient would step by 0 / 0.  Where
    v > 0, sqrt(v) is at least the root of the smallest subnormal (1.5e-162; 3.7e-23 in
    float32), so the floor changes no denominator."""
    if floating is double:
        return eps if eps >= DBL_MIN else DBL_MIN
    else:
        return <float>eps if eps >= FLT_MIN else FLT_MIN


cdef inline bint adam_folds(const AdamRule* r, floating like) noexcept nogil:
    """Whether Adam's step may take eps as eps_t, where it meets the uncorrected
    sqrt(v): where eps_t is normal, which normal_eps would leave as it is.  Below, the
    floor of eps, which the formula puts where eps meets sqrt(v) / sqrt(1 - beta2**t),
    would be put on eps_t instead, and where v is 0 and m is not (v underflowed, m did
    not) the step would come out sqrt(1 - beta2**t) times too small."""
    if floating is double:
        return r.eps_t >= DBL_MIN
    else:
        return r.eps_t >= FLT_MIN


cdef inline floating adam_step(AdamRule r, floating m, floating v) noexcept nogil:
    """Adam's step of one parameter from its m and v: the bias corrections multiplied
    through (one division), or, where they cannot be (adam_folds), the formula as
    written, with eps floored where it meets the corrected sqrt(v) (as the reference)."""
    if adam_folds(&r, m):
        return <floating>r.step_size * m / (f_sqrt(v) + <floating>r.eps_t)
    return <floating>r.rate_t * m / (f_sqrt(v) / <floating>r.root_t + normal_eps(r.h.eps, m))


cdef inline void rule_step(Backward r,
                           floating* p,    # IN/OUT: the parameter
                           floating* s,    # IN/OUT: its buffers, s[0] and s[n]
                           Py_ssize_t n,   # the distance between the buffers (n_params)
                           floating dj, floating a,  # its gradient is dj * a
                           bint decay      # whether weight decay applies (weights, not biases)
                           ) noexcept nogil:
    """One parameter's step, with the formula of torch.optim's step (weight decay as L2
    on the gradient).  The gradient comes as dj * a: a backward pass has a weight's
    factors (the unit's delta and the input below), so that plain SGD's row loop is one
    multiply-add; a bias, or a gradient sum, comes with a = 1."""
    cdef floating g, mu, step, size, product, lr, eta_minus, eta_plus, step_min, step_max
    if Backward is GradientSum:
        s[0] += dj * a
    elif Backward is SgdRule:
        if decay and r.h.weight_decay != 0:
            p[0] -= <floating>r.h.learning_rate * (dj * a + <floating>r.h.weight_decay * p[0])
        else:
            p[0] -= (<floating>r.h.learning_rate * dj) * a
    elif Backward is RpropRule:
        # iRPROP- (no weight decay): the step size grows while the gradient keeps its
        # sign and shrinks on a flip; s[0] is the previous gradient, s[n] the step size
        # (every value computed, then chosen, and every store unconditional: branches
        # that convert or store keep the compiler from vectorising the loops)
        lr, eta_minus, eta_plus = (<floating>r.h.learning_rate, <floating>r.h.eta_minus,
                                   <floating>r.h.eta_plus)
        step_min, step_max = <floating>r.h.step_min, <floating>r.h.step_max
        g = dj * a
        size = lr if r.first else s[n]
        product = g * s[0]
        size = size * eta_plus if product > 0 else (size * eta_minus if product < 0 else size)
        g = 0 if product < 0 else g   # a sign flip: no move now, and no memory of this gradient
        size = step_max if size > step_max else (step_min if size < step_min else size)
        s[n] = size
        p[0] -= size if g > 0 else (-size if g < 0 else 0)
        s[0] = g
    else:
        g = dj * a
        if decay:
            g = g + <floating>r.h.weight_decay * p[0]
        if Backward is MomentumRule:
            mu = <floating>r.h.momentum
            s[0] = g if r.first else mu * s[0] + g
            p[0] -= <floating>r.h.learning_rate * (g + mu * s[0] if r.h.nesterov else s[0])
        elif Backward is AdamRule:
            s[0] = <floating>r.h.beta1 * s[0] + <floating>(1 - r.h.beta1) * g
            s[n] = <floating>r.h.beta2 * s[n] + <floating>(1 - r.h.beta2) * g * g
            p[0] -= adam_step(r, s[0], s[n])
        elif Backward is RmspropRule:
            s[0] = <floating>r.h.alpha * s[0] + <floating>(1 - r.h.alpha) * g * g
            step = g / (f_sqrt(s[0]) + normal_eps(r.h.eps, g))
            if r.h.momentum != 0:
                s[n] = <floating>r.h.momentum * s[n] + step
                step = s[n]
            p[0] -= <floating>r.h.learning_rate * step
        elif Backward is AdagradRule:
            s[0] += g * g
            p[0] -= <floating>r.h.learning_rate * g / (f_sqrt(s[0]) + normal_eps(r.h.eps, g))


cdef inline floating rule_row(Backward r,
                              floating* w,          # IN/OUT: a row of weights
                              floating* s,          # IN/OUT: their buffers, s[i] and
                                                    # s[n_params + i]
                              Py_ssize_t n_params,  # the distance between the buffers
                              floating dj,
                              const floating* a,    # IN: w[i]'s gradient is dj * a[i]
                              Py_ssize_t n,
                              floating* d_prev,     # IN/OUT: += w * dj, the weights before
                                                    # their steps (the delta below); or NULL
                              const floating* x_next  # IN: or NULL
                              ) noexcept nogil:
    """rule_step for each weight of a row (weight decay applies), with ``d_prev`` the
    backward pass's use of the row first, in the same pass; returns dot(w, x_next) of
    the stepped row (the fused first layer's forward pass for the next sample), or 0
    without x_next.  On AVX-512, Adam's, RMSprop's and Adagrad's rows go through
    cyprop_approx.h's kernels (see above), which take the dot product in the same pass."""
    cdef Py_ssize_t i
    cdef floating total
    if CYPROP_APPROX_ROWS and approx_row(r, w, s, n_params, dj, a, n, d_prev, x_next, &total):
        return total
    if d_prev != NULL:
        for i in range(n):
            d_prev[i] += w[i] * dj
            rule_step(r, w + i, s + i, n_params, dj, a[i], True)
    else:
        for i in range(n):
            rule_step(r, w + i, s + i, n_params, dj, a[i], True)
    return dot(w, x_next, n) if x_next != NULL else 0


cdef inline bint approx_row(Backward r, floating* w, floating* s, Py_ssize_t n_params,
                            floating dj, const floating* a, Py_ssize_t n, floating* d_prev,
                            const floating* x_next, floating* total) noexcept nogil:
    """rule_row through the row kernel of the rule and dtype, the hyper-parameters cast
    to the dtype as rule_step casts them: False, having done nothing, for the rules
    without one and for an eps outside the kernels' range."""
    cdef Py_ssize_t i
    cdef floating eps
    if Backward is AdamRule:
        if not adam_folds(&r, dj):   # (the kernels take the folded formula only)
            return False
        eps = normal_eps(r.eps_t, dj)
    elif Backward is RmspropRule or Backward is AdagradRule:
        eps = normal_eps(r.h.eps, dj)
    else:
        return False
    if not (cyprop_approx_eps_d(eps) if floating is double else cyprop_approx_eps_f(eps)):
        return False
    if d_prev != NULL:
        for i in range(n):
            d_prev[i] += w[i] * dj
    if Backward is AdamRule:
        if floating is double:
            total[0] = cyprop_adam_row_d(w, s, s + n_params, a, x_next, dj, r.h.beta1,
                                         1 - r.h.beta1, r.h.beta2, 1 - r.h.beta2, r.step_size,
                                         eps, r.h.weight_decay, n)
        else:
            total[0] = cyprop_adam_row_f(w, s, s + n_params, a, x_next, dj, <float>r.h.beta1,
                                         <float>(1 - r.h.beta1), <float>r.h.beta2,
                                         <float>(1 - r.h.beta2), <float>r.step_size, eps,
                                         <float>r.h.weight_decay, n)
    elif Backward is RmspropRule:
        if floating is double:
            total[0] = cyprop_rmsprop_row_d(w, s, s + n_params, a, x_next, dj, r.h.alpha,
                                            1 - r.h.alpha, eps, r.h.momentum != 0, r.h.momentum,
                                            r.h.learning_rate, r.h.weight_decay, n)
        else:
            total[0] = cyprop_rmsprop_row_f(w, s, s + n_params, a, x_next, dj,
                                            <float>r.h.alpha, <float>(1 - r.h.alpha), eps,
                                            r.h.momentum != 0, <float>r.h.momentum,
                                            <float>r.h.learning_rate,
                                            <float>r.h.weight_decay, n)
    else:
        if floating is double:
            total[0] = cyprop_adagrad_row_d(w, s, a, x_next, dj, eps, r.h.learning_rate,
                                            r.h.weight_decay, n)
        else:
            total[0] = cyprop_adagrad_row_f(w, s, a, x_next, dj, eps,
                                            <float>r.h.learning_rate,
                                            <float>r.h.weight_decay, n)
    return True


cdef void rule_range(Rule rule, const Layout* lay,
                     floating* params,        # IN/OUT
                     const floating* grad,    # IN: gradient sums
                     floating* state,         # IN/OUT: (n_slots, n_params)
                     floating scale,          # makes the sums means
                     Py_ssize_t lo, Py_ssize_t hi  # the parameters to step
                     ) noexcept nogil:
    """One optimizer step on parameters lo .. hi-1 from gradient sums.  Every parameter's
    step is its own, so a step split into ranges (on threads) is the same step.  On
    AVX-512 the weights of Adam, RMSprop and Adagrad go through the row kernels, as
    online (their gradient scale * grad[i] is rule_step's grad[i] * scale, rounded once);
    each lane's step is its own there too (a vector with a NaN or infinite buffer, which
    fails the epoch's divergence check, takes the exact instructions whole)."""
    cdef int l
    cdef Py_ssize_t i, start, end, N = lay.n_params
    cdef floating unused
    for l in range(lay.n_layers):
        start = lay.w_off[l] if lay.w_off[l] > lo else lo
        end = lay.b_off[l] if lay.b_off[l] < hi else hi
        if (CYPROP_APPROX_ROWS and start < end
                and approx_row(rule, params + start, state + start, N, scale, grad + start,
                               end - start, NULL, NULL, &unused)):
            start = end
        for i in range(start, end):   # W_l
            rule_step(rule, params + i, state + i, N, grad[i] * scale, 1, True)
        end = lay.b_off[l] + lay.sizes[l + 1]
        end = end if end < hi else hi
        for i in range(lay.b_off[l] if lay.b_off[l] > lo else lo, end):   # b_l
            rule_step(rule, params + i, state + i, N, grad[i] * scale, 1, False)


cdef void max_norm_step(const Layout* lay, floating* params) noexcept nogil:
    """Scale down each unit's incoming weights (a row of W) whose L2 norm exceeds max_norm."""
    cdef int l
    cdef Py_ssize_t i, j, n_in
    cdef floating* w
    cdef double norm
    for l in range(lay.n_layers):
        n_in = lay.sizes[l]
        for j in range(lay.sizes[l + 1]):
            w = params + lay.w_off[l] + j * n_in
            norm = sqrt(squared_norm(w, n_in))
            if norm > lay.max_norm:
                for i in range(n_in):
                    w[i] = <floating>(w[i] * (lay.max_norm / norm))


cdef void rule_elements(Rule rule, long long steps, floating* p, const floating* g,
                        floating* s, Py_ssize_t n, bint decay) noexcept nogil:
    cdef Py_ssize_t i
    rule_begin(&rule, steps)
    for i in range(n):
        rule_step(rule, p + i, s + i, n, g[i], 1, decay)


def py_rule_step(str rule, Hyper hyper, long long steps,
                 floating[::1] params,          # IN/OUT
                 const floating[::1] grad,      # IN
                 floating[:, ::1] state,        # IN/OUT: (2, n)
                 bint decay):
    """Step t = steps + 1 of ``rule`` on each element of ``params`` with gradient ``grad``
    and buffers in the columns of ``state``, as the kernels take it (for the tests: a
    parity failure then points at one formula)."""
    cdef Py_ssize_t n = params.shape[0]
    if grad.shape[0] != n or state.shape[0] != 2 or state.shape[1] != n:
        raise ValueError("py_rule_step needs grad of params' length and state of shape (2, n)")
    cdef int code = RULES.index(rule)
    if n == 0:
        return
    cdef floating* p = &params[0]
    cdef const floating* g = &grad[0]
    cdef floating* s = &state[0, 0]
    with nogil:
        if code == RULE_SGD:
            rule_elements(SgdRule(h=hyper), steps, p, g, s, n, decay)
        elif code == RULE_MOMENTUM:
            rule_elements(MomentumRule(h=hyper, first=False), steps, p, g, s, n, decay)
        elif code == RULE_ADAM:
            rule_elements(AdamRule(h=hyper, step_size=0, eps_t=0, rate_t=0, root_t=0), steps,
                          p, g, s, n, decay)
        elif code == RULE_RMSPROP:
            rule_elements(RmspropRule(h=hyper), steps, p, g, s, n, decay)
        elif code == RULE_ADAGRAD:
            rule_elements(AdagradRule(h=hyper), steps, p, g, s, n, decay)
        else:
            rule_elements(RpropRule(h=hyper, first=False), steps, p, g, s, n, decay)


cdef floating rule_row_once(Rule rule, long long steps, floating* w, floating* s, Py_ssize_t n,
                            floating dj, const floating* a, const floating* x_next,
                            bint flush) noexcept nogil:
    cdef unsigned int fp_mode = cyprop_flush_subnormals() if flush else 0
    cdef floating total
    rule_begin(&rule, steps)
    total = rule_row(rule, w, s, n, dj, a, n, NULL, x_next)
    if flush:
        cyprop_restore_subnormals(fp_mode)
    return total


def py_rule_row(str rule, Hyper hyper, long long steps,
                floating[::1] weights,          # IN/OUT: a row
                const floating[::1] inputs,     # IN: weight i's gradient is dj * inputs[i]
                double dj,
                floating[:, ::1] state,         # IN/OUT: (2, n)
                bint flush_subnormals=False,
                const floating[::1] next_inputs=None):
    """Step t = steps + 1 of ``rule`` on a row of weights, as the per-sample backward
    pass takes it (rule_row: on AVX-512, Adam's, RMSprop's and Adagrad's row kernels),
    optionally with subnormals flushed as the per-sample epochs run; returns the dot
    product of the stepped row with ``next_inputs`` as the fused first layer takes it,
    or 0 without (for the tests)."""
    cdef Py_ssize_t n = weights.shape[0]
    if (inputs.shape[0] != n or state.shape[0] != 2 or state.shape[1] != n
            or (next_inputs is not None and next_inputs.shape[0] != n)):
        raise ValueError("py_rule_row needs inputs (and next_inputs) of the row's length "
                         "and state of shape (2, n)")
    cdef int code = RULES.index(rule)
    if n == 0:
        return 0.0
    cdef floating* w = &weights[0]
    cdef const floating* a = &inputs[0]
    cdef const floating* x_next = &next_inputs[0] if next_inputs is not None else NULL
    cdef floating* s = &state[0, 0]
    cdef floating d = <floating>dj
    cdef bint flush = flush_subnormals
    cdef floating total
    with nogil:
        if code == RULE_SGD:
            total = rule_row_once(SgdRule(h=hyper), steps, w, s, n, d, a, x_next, flush)
        elif code == RULE_MOMENTUM:
            total = rule_row_once(MomentumRule(h=hyper, first=False), steps, w, s, n, d, a,
                                  x_next, flush)
        elif code == RULE_ADAM:
            total = rule_row_once(AdamRule(h=hyper, step_size=0, eps_t=0, rate_t=0, root_t=0),
                                  steps, w, s, n, d, a, x_next, flush)
        elif code == RULE_RMSPROP:
            total = rule_row_once(RmspropRule(h=hyper), steps, w, s, n, d, a, x_next, flush)
        elif code == RULE_ADAGRAD:
            total = rule_row_once(AdagradRule(h=hyper), steps, w, s, n, d, a, x_next, flush)
        else:
            total = rule_row_once(RpropRule(h=hyper, first=False), steps, w, s, n, d, a,
                                  x_next, flush)
    return total
