# Exact online SGD over blocks of samples (PATH_ONLINE_BLOCKS): the per-sample algorithm
# of epoch_online_next, with the first layer's work done as matrix products.
#
# Per-sample SGD moves every first-layer weight through the cache twice per sample.  Within
# a block of k samples the first layer after j steps is
#     W_j = c^j W_0 - lr * sum_{m<j} c^(j-1-m) d_m x_m^T      (c = 1 - lr * weight_decay)
# so sample j's first-layer pre-activation is
#     z_j = c^j (W_0 x_j) + b_j - lr * sum_{m<j} c^(j-1-m) (x_m . x_j) d_m
# with b_j the biases after j steps (stepped per sample, as always: biases have no decay).
# W_0 X^T and the block's Gram matrix X X^T are two matrix products; the walk over the
# k samples in order does the rest of the network per sample, with the same rule code as
# the per-sample path; the k rank-1 steps of W are one product at the end of the block:
#     W_k = c^k W_0 - lr * sum_m c^(k-1-m) d_m x_m^T.
# Each weight then goes through the cache twice per block instead of twice per sample.
# The same algorithm as the per-sample path, up to the order of the floating-point sums.
#
# SGD with momentum (rule 'momentum', torch's step: g = G + wd W, V = mu V + g, then
# W -= lr V, or W -= lr (g + mu V) with Nesterov) is linear in the pair (W, V) of a weight
# and its buffer too, with G_m = d_m x_m^T the gradient of sample m:
#     (W, V)_{m+1} = A (W, V)_m + u G_m,
#     heavy ball  A = [[1 - lr wd, -lr mu], [wd, mu]],              u = (-lr, 1)
#     Nesterov    A = [[1 - lr wd (1 + mu), -lr mu^2], [wd, mu]],  u = (-lr (1 + mu), 1)
# so with A^m = [[p_m, q_m], [r_m, s_m]] and u_m = A^m u (2 x 2 scalars, computed once per
# call in double):
#     W_j = p_j W_0 + q_j V_0 + sum_{m<j} u_{j-1-m}[0] G_m
#     V_j = r_j W_0 + s_j V_0 + sum_{m<j} u_{j-1-m}[1] G_m
# and sample j's pre-activation takes one more product than plain SGD's, V_0 X^T:
#     z_j = p_j (W_0 x_j) + q_j (V_0 x_j) + b_j + sum_{m<j} u_{j-1-m}[0] (x_m . x_j) d_m.
# Without weight decay p_m = 1, r_m = 0, s_m = u_m[1] = mu^m, and
#     heavy ball  q_m = -lr mu (1 - mu^m) / (1 - mu),    u_m[0] = -lr (1 - mu^(m+1)) / (1 - mu)
#     Nesterov    q_m = -lr mu^2 (1 - mu^m) / (1 - mu),  u_m[0] = -lr (1 - mu^(m+2)) / (1 - mu).
# The block's end is two products (rows of the deltas scaled by u[0], and by u[1]) after
# one pass over W_0 and V_0 (W += q_k V without weight decay).  The
# optimizer's first step (steps == 0) sets the buffer to the gradient, torch's
# "buf = g": the same as mu * 0 + g, so a fresh optimizer's block starts from V_0 = 0.

cdef check_online_blocks(const Plan* plan, int n_layers, double max_norm):
    """Refuse a plan that epoch_online_blocks cannot run (check_training_plan's part)."""
    if plan.path != PATH_ONLINE_BLOCKS:
        return
    if plan.batch_size != 1:
        raise ValueError(f"cyprop: path 'online-blocks' is for batch size 1, "
                         f"not {plan.batch_size}")
    if n_layers < 2 or max_norm > 0:
        raise ValueError(f"cyprop: path 'online-blocks' runs networks with hidden layers and "
                         f"no max-norm, not {n_layers} layers with max_norm={max_norm}")
    if plan.rule != RULE_SGD and plan.rule != RULE_MOMENTUM:
        raise ValueError(f"cyprop: path 'online-blocks' runs plain SGD and SGD with momentum "
                         f"(rules 'sgd', 'momentum'), not {RULES[plan.rule]!r}")
    if not products_ready():
        raise ValueError("cyprop: a plan with path 'online-blocks' needs BLAS (set_blas) or "
                         "the AVX-512 kernel's own products")
    if plan.block_rows < 1:
        raise ValueError(f"cyprop: block_rows must be >= 1, got {plan.block_rows}")


# The rules that the blocks run (the first layer's steps are linear in the gradients).
ctypedef fused BlockRule:
    SgdRule
    MomentumRule


cdef struct OnlineBlock:
    # The buffers of one call's blocks of k samples (one allocation, xb 64-byte aligned).
    void* memory
    void* xb        # (k, n_in): the block's inputs, gathered in training order
    void* wx        # (k, n_h): W_0 x_j of each sample
    void* gram      # (k, k): x_m . x_j
    void* d1        # (k, n_h): each sample's first-layer deltas
    void* powers    # plain SGD: (k + 1,) c^0 .. c^k;  momentum: (6, k + 1) p, q, r, s, u0, u1
    void* vx        # momentum: (k, n_h) V_0 x_j of each sample; else NULL
    void* d2        # momentum: (k, n_h) the deltas scaled for V's product; else NULL


cdef bint online_block_alloc(OnlineBlock* ob, const Layout* lay, Py_ssize_t k,
                             size_t itemsize, bint momentum) noexcept nogil:
    """Allocate ob's buffers for blocks of k rows (with momentum's, for rule 'momentum');
    False when there is no memory."""
    cdef Py_ssize_t n_in = lay.sizes[0], n_h = lay.sizes[1]
    # every buffer starts on a 64-byte boundary (each rounded up to 8 doubles)
    cdef Py_ssize_t a = (k * n_in + 15) // 16 * 16, b = (k * n_h + 15) // 16 * 16
    cdef Py_ssize_t c = (k * k + 15) // 16 * 16
    cdef Py_ssize_t p = ((6 if momentum else 1) * (k + 1) + 15) // 16 * 16
    ob.memory = malloc((a + (4 if momentum else 2) * b + c + p) * itemsize + 64)
    if ob.memory == NULL:
        return False
    ob.xb = align64(ob.memory)
    ob.wx = <char*>ob.xb + a * itemsize
    ob.gram = <char*>ob.wx + b * itemsize
    ob.d1 = <char*>ob.gram + c * itemsize
    ob.powers = <char*>ob.d1 + b * itemsize
    ob.vx = NULL
    ob.d2 = NULL
    if momentum:
        ob.vx = <char*>ob.powers + p * itemsize
        ob.d2 = <char*>ob.vx + b * itemsize
    return True


cdef void momentum_coefficients(const Hyper* h, Py_ssize_t k, floating* out) noexcept nogil:
    """out[0..5][m] for m = 0 .. k, rows of k + 1: p_m, q_m, r_m, s_m (A^m) and u_m = A^m u
    (the top of this file), computed in double."""
    cdef double lr = h.learning_rate, mu = h.momentum, wd = h.weight_decay
    cdef double a00, a01, a10 = wd, a11 = mu, u0, u1
    cdef double p = 1, q = 0, r = 0, s = 1, t0, t1
    cdef Py_ssize_t m, n = k + 1
    if h.nesterov:
        a00, a01, u0, u1 = 1 - lr * wd * (1 + mu), -lr * mu * mu, -lr * (1 + mu), 1
    else:
        a00, a01, u0, u1 = 1 - lr * wd, -lr * mu, -lr, 1
    for m in range(n):
        out[m], out[n + m], out[2 * n + m], out[3 * n + m] = (
            <floating>p, <floating>q, <floating>r, <floating>s)
        out[4 * n + m], out[5 * n + m] = <floating>u0, <floating>u1
        # A^(m+1) = A A^m, u_(m+1) = A u_m
        t0, t1 = a00 * p + a01 * r, a00 * q + a01 * s
        r, s = a10 * p + a11 * r, a10 * q + a11 * s
        p, q = t0, t1
        t0 = a00 * u0 + a01 * u1
        u1 = a10 * u0 + a11 * u1
        u0 = t0


cdef void online_block(Epoch* e, floating* params, BlockRule rule, const OnlineBlock* ob,
                       Py_ssize_t k0, Py_ssize_t r  # samples k0 .. k0+r-1 of the call
                       ) noexcept nogil:
    """One block of r samples of exact online SGD, with or without momentum (see the top
    of this file)."""
    cdef const Layout* lay = e.lay
    cdef Py_ssize_t j, m, h, i, n_in = lay.sizes[0], n_h = lay.sizes[1]
    cdef Py_ssize_t N = lay.n_params, last = lay.a_off[lay.n_layers - 1]
    cdef Py_ssize_t n_coef = e.plan.block_rows + 1
    cdef floating* xb = <floating*>ob.xb
    cdef floating* wx = <floating*>ob.wx
    cdef floating* gram = <floating*>ob.gram
    cdef floating* d1 = <floating*>ob.d1
    cdef floating* vx = <floating*>ob.vx
    cdef floating* d2 = <floating*>ob.d2
    cdef const floating* cp = <const floating*>ob.powers
    # momentum's coefficients (rows of n_coef): A^m's p, q, r, s and u_m's two
    cdef const floating* cq = cp + n_coef
    cdef const floating* cr = cp + 2 * n_coef
    cdef const floating* cs = cp + 3 * n_coef
    cdef const floating* cu0 = cp + 4 * n_coef
    cdef const floating* cu1 = cp + 5 * n_coef
    cdef floating* a = <floating*>e.scratch.acts       # a + a_off[0] == a: the first layer
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef floating* state = <floating*>e.state
    cdef floating* W = params + lay.w_off[0]
    cdef floating* V = state + lay.w_off[0]            # momentum's buffer of W
    cdef floating* b = params + lay.b_off[0]
    cdef floating* vb = state + lay.b_off[0]
    cdef floating lr = <floating>rule.h.learning_rate, coef, scale, pw, qv, w, v, sv
    cdef const floating* dm
    cdef bint decay = rule.h.weight_decay != 0
    cdef int act = lay.acts[0]
    gather_rows(e, k0, r, xb)
    # wx = X_B @ W_0.T, (r, n_h) row-major
    rows_dot_rows(<int>r, <int>n_h, <int>n_in, xb, <int>n_in, W, <int>n_in, False,
                  wx, <int>n_h)
    if BlockRule is MomentumRule:
        if e.steps == 0:
            # the optimizer's first step sets the buffer to the gradient: mu * 0 + g
            memset(V, 0, n_h * n_in * sizeof(floating))
        # vx = X_B @ V_0.T
        rows_dot_rows(<int>r, <int>n_h, <int>n_in, xb, <int>n_in, V, <int>n_in, False,
                      vx, <int>n_h)
    # gram = X_B @ X_B.T, (r, r), symmetric
    rows_dot_rows(<int>r, <int>r, <int>n_in, xb, <int>n_in, xb, <int>n_in, False,
                  gram, <int>r)
    for j in range(r):
        rule_begin(&rule, e.steps)
        # the first layer's pre-activations with the weights of this moment (W_j x_j + b_j)
        if BlockRule is MomentumRule:
            qv = cq[j]
            if decay:
                pw = cp[j]
                for h in range(n_h):
                    a[h] = pw * wx[j * n_h + h] + qv * vx[j * n_h + h] + b[h]
            else:
                for h in range(n_h):
                    a[h] = wx[j * n_h + h] + qv * vx[j * n_h + h] + b[h]
            for m in range(j):
                coef = cu0[j - 1 - m] * gram[m * r + j]
                dm = d1 + m * n_h
                for h in range(n_h):
                    a[h] += coef * dm[h]
        else:
            if decay:
                scale = cp[j]
                for h in range(n_h):
                    a[h] = scale * wx[j * n_h + h] + b[h]
            else:
                for h in range(n_h):
                    a[h] = wx[j * n_h + h] + b[h]
            for m in range(j):
                coef = lr * cp[j - 1 - m] * gram[m * r + j]
                dm = d1 + m * n_h
                for h in range(n_h):
                    a[h] -= coef * dm[h]
        activate_row(act, a, n_h)
        # the rest of the network as on the per-sample path, its layers stepped there
        sample_forward(lay, params, NULL, a, z, k0 + j, 1)
        sample_score(e, k0 + j, a + last, z, d + last, &e.loss_sum, &e.n_correct)
        sample_backward(lay, params, xb + j * n_in, a, d, rule, state, k0 + j, 1)
        # the first layer's biases now (the next sample reads them), its weights below
        for h in range(n_h):
            rule_step(rule, b + h, vb + h, N, d[h], 1, False)
        memcpy(d1 + j * n_h, d, n_h * sizeof(floating))
        epoch_after_step(e, params)
    if BlockRule is MomentumRule:
        # W = p_r W_0 + q_r V_0 + sum_m u_(r-1-m)[0] d_m x_m^T, V the same with r_r, s_r, u[1]
        for m in range(r):
            coef = cu0[r - 1 - m]
            scale = cu1[r - 1 - m]
            for h in range(n_h):
                d2[m * n_h + h] = scale * d1[m * n_h + h]
                d1[m * n_h + h] *= coef
        qv = cq[r]
        if decay:
            pw, coef, sv = cp[r], cr[r], cs[r]
            for i in range(n_h * n_in):
                w = W[i]
                v = V[i]
                W[i] = pw * w + qv * v
                V[i] = coef * w + sv * v
            sv = 1
        else:
            for i in range(n_h * n_in):
                W[i] += qv * V[i]
            sv = cs[r]
        # W += D0.T @ X_B, V = sv * V + D1.T @ X_B
        rows_t_times(<int>r, <int>n_h, <int>n_in, d1, <int>n_h, xb, <int>n_in, 1, 1, W,
                     <int>n_in)
        rows_t_times(<int>r, <int>n_h, <int>n_in, d2, <int>n_h, xb, <int>n_in, 1, sv, V,
                     <int>n_in)
    else:
        # W = c^r W - lr * sum_m c^(r-1-m) d_m x_m^T: the rows of d1 scaled, then one product
        for m in range(r):
            coef = -lr * cp[r - 1 - m]
            for h in range(n_h):
                d1[m * n_h + h] *= coef
        # W = c^r * W + D.T @ X_B
        rows_t_times(<int>r, <int>n_h, <int>n_in, d1, <int>n_h, xb, <int>n_in, 1, cp[r], W,
                     <int>n_in)


cdef void epoch_online_blocks(Epoch* call, floating* params, Rule rule) noexcept nogil:
    """Batch size 1, plain SGD or SGD with momentum, a network with hidden layers, no
    dropout or max-norm: the samples of the call in blocks of plan.block_rows
    (online_block).  Anything else, or no memory for the blocks, runs epoch_online_next:
    the same algorithm, one sample at a time."""
    cdef Epoch e_ = call[0]   # (as in epoch_online)
    cdef Epoch* e = &e_
    cdef const Layout* lay = e.lay
    cdef OnlineBlock ob
    cdef Py_ssize_t i, k0, rows, k = e.plan.block_rows
    cdef floating* cp
    cdef double c, power
    cdef int previous
    cdef bint momentum = False
    cdef bint blocked = not (has_dropout(lay, 0) or lay.max_norm > 0 or lay.n_layers < 2
                             or blas_dgemm == NULL or blas_sgemm == NULL or k < 1)
    if Rule is SgdRule or Rule is MomentumRule:
        if Rule is MomentumRule:
            momentum = True
        for i in range(lay.n_layers):
            if has_dropout(lay, <int>i):
                blocked = False
        if blocked and e.n > 0 and online_block_alloc(&ob, lay, k, sizeof(floating),
                                                      momentum):
            cp = <floating*>ob.powers
            if Rule is MomentumRule:
                momentum_coefficients(&rule.h, k, cp)
            else:
                c = 1 - rule.h.learning_rate * rule.h.weight_decay
                power = 1
                for i in range(k + 1):
                    cp[i] = <floating>power
                    power *= c
            previous = blas_single_thread()
            k0 = 0
            while k0 < e.n:
                rows = k if k0 + k <= e.n else e.n - k0
                online_block(e, params, rule, &ob, k0, rows)
                k0 += rows
            blas_restore_threads(previous)
            free(ob.memory)
            call[0] = e_
            return
    epoch_online_next(call, params, rule)
