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
    if plan.rule != RULE_SGD:
        raise ValueError(f"cyprop: path 'online-blocks' runs plain SGD (rule 'sgd'), "
                         f"not {RULES[plan.rule]!r}")
    if not has_blas():
        raise ValueError("cyprop: a plan with path 'online-blocks' needs BLAS (set_blas)")
    if plan.block_rows < 1:
        raise ValueError(f"cyprop: block_rows must be >= 1, got {plan.block_rows}")


cdef struct OnlineBlock:
    # The buffers of one call's blocks of k samples (one allocation, xb 64-byte aligned).
    void* memory
    void* xb        # (k, n_in): the block's inputs, gathered in training order
    void* wx        # (k, n_h): W_0 x_j of each sample
    void* gram      # (k, k): x_m . x_j
    void* d1        # (k, n_h): each sample's first-layer deltas
    void* powers    # (k + 1,): c^0 .. c^k


cdef bint online_block_alloc(OnlineBlock* ob, const Layout* lay, Py_ssize_t k,
                             size_t itemsize) noexcept nogil:
    """Allocate ob's buffers for blocks of k rows; False when there is no memory."""
    cdef Py_ssize_t n_in = lay.sizes[0], n_h = lay.sizes[1]
    # every buffer starts on a 64-byte boundary (each rounded up to 8 doubles)
    cdef Py_ssize_t a = (k * n_in + 15) // 16 * 16, b = (k * n_h + 15) // 16 * 16
    cdef Py_ssize_t c = (k * k + 15) // 16 * 16
    ob.memory = malloc((a + 2 * b + c + k + 1) * itemsize + 64)
    if ob.memory == NULL:
        return False
    ob.xb = align64(ob.memory)
    ob.wx = <char*>ob.xb + a * itemsize
    ob.gram = <char*>ob.wx + b * itemsize
    ob.d1 = <char*>ob.gram + c * itemsize
    ob.powers = <char*>ob.d1 + b * itemsize
    return True


cdef void online_block(Epoch* e, floating* params, SgdRule rule, const OnlineBlock* ob,
                       Py_ssize_t k0, Py_ssize_t r  # samples k0 .. k0+r-1 of the call
                       ) noexcept nogil:
    """One block of r samples of exact online SGD (see the top of this file)."""
    cdef const Layout* lay = e.lay
    cdef Py_ssize_t j, m, h, n_in = lay.sizes[0], n_h = lay.sizes[1]
    cdef Py_ssize_t last = lay.a_off[lay.n_layers - 1]
    cdef floating* xb = <floating*>ob.xb
    cdef floating* wx = <floating*>ob.wx
    cdef floating* gram = <floating*>ob.gram
    cdef floating* d1 = <floating*>ob.d1
    cdef const floating* cp = <const floating*>ob.powers
    cdef floating* a = <floating*>e.scratch.acts       # a + a_off[0] == a: the first layer
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef floating* state = <floating*>e.state
    cdef floating* W = params + lay.w_off[0]
    cdef floating* b = params + lay.b_off[0]
    cdef floating lr = <floating>rule.h.learning_rate, coef, scale
    cdef const floating* dm
    cdef bint decay = rule.h.weight_decay != 0
    cdef int act = lay.acts[0]
    for j in range(r):
        memcpy(xb + j * n_in, <const floating*>e.X + row_of(e, k0 + j) * n_in,
               n_in * sizeof(floating))
    # wx = X_B @ W_0.T, (r, n_h) row-major
    gemm(c'T', c'N', <int>n_h, <int>r, <int>n_in, W, <int>n_in, xb, <int>n_in, 0, wx,
         <int>n_h)
    # gram = X_B @ X_B.T, (r, r), symmetric
    gemm(c'T', c'N', <int>r, <int>r, <int>n_in, xb, <int>n_in, xb, <int>n_in, 0, gram,
         <int>r)
    for j in range(r):
        rule_begin(&rule, e.steps)
        # the first layer's pre-activations with the weights of this moment (W_j x_j + b_j)
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
        if act == SIGMOID:
            sigmoid_row(a, n_h)   # vectorised (as on the blocks path): libm's exp is a call
        else:
            for h in range(n_h):
                a[h] = activate(act, a[h])
        # the rest of the network as on the per-sample path, its layers stepped there
        sample_forward(lay, params, NULL, a, z, k0 + j, 1)
        sample_score(e, k0 + j, a + last, z, d + last, &e.loss_sum, &e.n_correct)
        sample_backward(lay, params, xb + j * n_in, a, d, rule, state, k0 + j, 1)
        # the first layer's biases now (the next sample reads them), its weights below
        for h in range(n_h):
            rule_step(rule, b + h, state, 0, d[h], 1, False)
        memcpy(d1 + j * n_h, d, n_h * sizeof(floating))
        epoch_after_step(e, params)
    # W = c^r W - lr * sum_m c^(r-1-m) d_m x_m^T: the rows of d1 scaled, then one product
    for m in range(r):
        coef = -lr * cp[r - 1 - m]
        for h in range(n_h):
            d1[m * n_h + h] *= coef
    # W = c^r * W + D.T @ X_B
    gemm(c'N', c'T', <int>n_in, <int>n_h, <int>r, xb, <int>n_in, d1, <int>n_h, cp[r], W,
         <int>n_in)


cdef void epoch_online_blocks(Epoch* call, floating* params, Rule rule) noexcept nogil:
    """Batch size 1, plain SGD, a network with hidden layers, no dropout or max-norm: the
    samples of the call in blocks of plan.block_rows (online_block).  Anything else, or no
    memory for the blocks, runs epoch_online_next: the same algorithm, one sample at a time."""
    cdef Epoch e_ = call[0]   # (as in epoch_online)
    cdef Epoch* e = &e_
    cdef const Layout* lay = e.lay
    cdef OnlineBlock ob
    cdef Py_ssize_t i, k0, rows, k = e.plan.block_rows
    cdef floating* cp
    cdef double c, power
    cdef int previous
    cdef bint blocked = not (has_dropout(lay, 0) or lay.max_norm > 0 or lay.n_layers < 2
                             or blas_dgemm == NULL or blas_sgemm == NULL or k < 1)
    if Rule is SgdRule:
        for i in range(lay.n_layers):
            if has_dropout(lay, <int>i):
                blocked = False
        if blocked and e.n > 0 and online_block_alloc(&ob, lay, k, sizeof(floating)):
            c = 1 - rule.h.learning_rate * rule.h.weight_decay
            cp = <floating*>ob.powers
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
