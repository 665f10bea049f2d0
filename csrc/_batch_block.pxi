# Exact small mini-batches over blocks of batches (PATH_BATCH_BLOCKS): the mini-batch
# algorithm of epoch_batches (one step per batch with the batch's mean gradient), with
# the first layer's work done as matrix products over a block of g consecutive batches.
#
# The algebra is online_block's (_online_block.pxi), a step per batch instead of per
# sample.  A block of k = g * bs rows (the call's last block may be shorter, and its
# last batch too) holds batches 0 .. g-1; batch i has n_i rows and the mean gradient
#     G_i = (1 / n_i) sum_{r in batch i} d_r x_r^T
# (d_r the first layer's deltas of row r, already scaled by its sample weight, as
# sample_score scales every gradient of a sample; the mean is over the rows, as
# batch_step's).  The first layer after j batch steps is
#     plain SGD   W_j = c^j W_0 - lr sum_{i<j} c^(j-1-i) G_i           (c = 1 - lr wd)
#     momentum    W_j = p_j W_0 + q_j V_0 + sum_{i<j} u_{j-1-i}[0] G_i
# (momentum_coefficients' p, q, u: the rule is the same 2x2 recurrence per step), so
# row s of batch j has the pre-activation
#     z_s = p_j (W_0 x_s) [+ q_j (V_0 x_s)] + b_j + sum_{i<j} (coef_{j,i} / n_i)
#                                                    sum_{r in batch i} (x_r . x_s) d_r
# with coef_{j,i} = -lr c^(j-1-i) (plain SGD, p_j = c^j) or u_{j-1-i}[0]: the Gram
# triangle of online_block, masked by "an earlier batch" instead of "an earlier sample".
# The layers above the first are fed forward and back one sample at a time into the
# batch's gradient sums (the 'samples' path's code: sample_backward with GradientSum),
# and stepped once per batch with the first layer's biases by rule_range, as batch_step
# steps them (1 / n_j scales the sums).  The block's end steps W (and V) with two
# products, each row m's deltas scaled by coef_{g,i(m)} / n_i(m).
# The same algorithm as epoch_batches, up to the order of the floating-point sums.

cdef check_batch_blocks(const Plan* plan, int n_layers, double max_norm):
    """Refuse a plan that epoch_batch_blocks cannot run (check_training_plan's part)."""
    if plan.path != PATH_BATCH_BLOCKS:
        return
    if plan.batch_size < 2:
        raise ValueError(f"cyprop: path 'batch-blocks' is for batch sizes of 2 or more, "
                         f"not {plan.batch_size}")
    if n_layers < 2 or max_norm > 0:
        raise ValueError(f"cyprop: path 'batch-blocks' runs networks with hidden layers and "
                         f"no max-norm, not {n_layers} layers with max_norm={max_norm}")
    if plan.rule != RULE_SGD and plan.rule != RULE_MOMENTUM:
        raise ValueError(f"cyprop: path 'batch-blocks' runs plain SGD and SGD with momentum "
                         f"(rules 'sgd', 'momentum'), not {RULES[plan.rule]!r}")
    if not products_ready():
        raise ValueError("cyprop: a plan with path 'batch-blocks' needs BLAS (set_blas) or "
                         "the AVX-512 kernel's own products")
    if plan.block_rows < plan.batch_size or plan.block_rows % plan.batch_size != 0:
        raise ValueError(f"cyprop: path 'batch-blocks' needs block_rows a multiple of the "
                         f"batch size {plan.batch_size}, got {plan.block_rows}")


cdef void batch_block(Epoch* e, floating* params, BlockRule rule, const OnlineBlock* ob,
                      Py_ssize_t k0, Py_ssize_t r  # samples k0 .. k0+r-1 of the call
                      ) noexcept nogil:
    """One block of r samples (whole batches of the call, but for its last) of exact
    mini-batch SGD, with or without momentum (see the top of this file)."""
    cdef const Layout* lay = e.lay
    cdef Py_ssize_t s, s0, s1, j, m, h, i, im, n_in = lay.sizes[0], n_h = lay.sizes[1]
    cdef Py_ssize_t N = lay.n_params, last = lay.a_off[lay.n_layers - 1]
    cdef Py_ssize_t bs = e.plan.batch_size, n_coef = e.plan.block_rows // bs + 1
    cdef Py_ssize_t g = (r + bs - 1) // bs   # batches in this block
    cdef floating* xb = <floating*>ob.xb
    cdef floating* wx = <floating*>ob.wx
    cdef floating* gram = <floating*>ob.gram
    cdef floating* d1 = <floating*>ob.d1
    cdef floating* vx = <floating*>ob.vx
    cdef floating* d2 = <floating*>ob.d2
    cdef const floating* cp = <const floating*>ob.powers
    cdef const floating* cq = cp + n_coef
    cdef const floating* cr = cp + 2 * n_coef
    cdef const floating* cs = cp + 3 * n_coef
    cdef const floating* cu0 = cp + 4 * n_coef
    cdef const floating* cu1 = cp + 5 * n_coef
    cdef floating* a = <floating*>e.scratch.acts
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef floating* grad = <floating*>e.scratch.grad
    cdef floating* gb = grad + lay.b_off[0]            # b_0's sums, then the layers above
    cdef floating* state = <floating*>e.state
    cdef floating* W = params + lay.w_off[0]
    cdef floating* V = state + lay.w_off[0]
    cdef floating* b = params + lay.b_off[0]
    cdef floating lr = <floating>rule.h.learning_rate, coef, scale, pw, qv, w, v, sv
    cdef floating inv_n                                 # 1 / n_i of an earlier batch
    cdef const floating* dm
    cdef bint decay = rule.h.weight_decay != 0
    cdef int act = lay.acts[0]
    cdef GradientSum add = GradientSum(unused=0)
    gather_rows(e, k0, r, xb)
    # wx = X_B @ W_0.T, (r, n_h) row-major
    rows_dot_rows(<int>r, <int>n_h, <int>n_in, xb, <int>n_in, W, <int>n_in, False,
                  wx, <int>n_h)
    if BlockRule is MomentumRule:
        if e.steps == 0:
            # the optimizer's first step sets the buffer to the gradient: mu * 0 + g
            memset(V, 0, n_h * n_in * sizeof(floating))
        rows_dot_rows(<int>r, <int>n_h, <int>n_in, xb, <int>n_in, V, <int>n_in, False,
                      vx, <int>n_h)
    # gram = X_B @ X_B.T, (r, r), symmetric; a block of one batch has no earlier batch
    # whose rows it would correct by
    if g > 1:
        rows_dot_rows(<int>r, <int>r, <int>n_in, xb, <int>n_in, xb, <int>n_in, False,
                      gram, <int>r)
    for j in range(g):
        s0 = j * bs
        s1 = s0 + bs if s0 + bs < r else r
        rule_begin(&rule, e.steps)
        memset(gb, 0, (N - lay.b_off[0]) * sizeof(floating))
        for s in range(s0, s1):
            # the first layer's pre-activations with the weights after j batch steps
            if BlockRule is MomentumRule:
                qv = cq[j]
                pw = cp[j] if decay else 1
                for h in range(n_h):
                    a[h] = pw * wx[s * n_h + h] + qv * vx[s * n_h + h] + b[h]
                for m in range(s0):   # the rows of the earlier batches (all of bs rows)
                    im = m // bs
                    coef = cu0[j - 1 - im] / <floating>bs * gram[m * r + s]
                    dm = d1 + m * n_h
                    for h in range(n_h):
                        a[h] += coef * dm[h]
            else:
                scale = cp[j] if decay else 1
                for h in range(n_h):
                    a[h] = scale * wx[s * n_h + h] + b[h]
                for m in range(s0):
                    im = m // bs
                    coef = lr * cp[j - 1 - im] / <floating>bs * gram[m * r + s]
                    dm = d1 + m * n_h
                    for h in range(n_h):
                        a[h] -= coef * dm[h]
            activate_row(act, a, n_h)
            # the rest of the network as on the 'samples' path, into the gradient sums
            sample_forward(lay, params, NULL, a, z, k0 + s, 1)
            sample_score(e, k0 + s, a + last, z, d + last, &e.loss_sum, &e.n_correct)
            sample_backward(lay, params, xb + s * n_in, a, d, add, grad, k0 + s, 1)
            for h in range(n_h):
                gb[h] += d[h]
            memcpy(d1 + s * n_h, d, n_h * sizeof(floating))
        # the step of b_0 and the layers above, as batch_step's (W_0's at the block's end)
        rule_range(rule, lay, params, grad, state, <floating>1 / <floating>(s1 - s0),
                   lay.b_off[0], N)
        epoch_after_step(e, params)
    if BlockRule is MomentumRule:
        # W = p_g W_0 + q_g V_0 + sum_m u_(g-1-i(m))[0] / n_i(m) d_m x_m^T; V with r, s, u[1]
        for m in range(r):
            im = m // bs
            inv_n = <floating>1 / <floating>(bs if (im + 1) * bs <= r else r - im * bs)
            coef = cu0[g - 1 - im] * inv_n
            scale = cu1[g - 1 - im] * inv_n
            for h in range(n_h):
                d2[m * n_h + h] = scale * d1[m * n_h + h]
                d1[m * n_h + h] *= coef
        qv = cq[g]
        if decay:
            pw, coef, sv = cp[g], cr[g], cs[g]
            for i in range(n_h * n_in):
                w = W[i]
                v = V[i]
                W[i] = pw * w + qv * v
                V[i] = coef * w + sv * v
            sv = 1
        else:
            for i in range(n_h * n_in):
                W[i] += qv * V[i]
            sv = cs[g]
        rows_t_times(<int>r, <int>n_h, <int>n_in, d1, <int>n_h, xb, <int>n_in, 1, 1, W,
                     <int>n_in)
        rows_t_times(<int>r, <int>n_h, <int>n_in, d2, <int>n_h, xb, <int>n_in, 1, sv, V,
                     <int>n_in)
    else:
        # W = c^g W - lr sum_m c^(g-1-i(m)) / n_i(m) d_m x_m^T
        for m in range(r):
            im = m // bs
            inv_n = <floating>1 / <floating>(bs if (im + 1) * bs <= r else r - im * bs)
            coef = -lr * cp[g - 1 - im] * inv_n
            for h in range(n_h):
                d1[m * n_h + h] *= coef
        rows_t_times(<int>r, <int>n_h, <int>n_in, d1, <int>n_h, xb, <int>n_in, 1, cp[g], W,
                     <int>n_in)


cdef void epoch_batch_blocks(Epoch* call, floating* params, Rule rule) noexcept nogil:
    """Mini-batches of 2 or more rows, plain SGD or SGD with momentum, a network with
    hidden layers, no dropout or max-norm: the call's batches in blocks of
    plan.block_rows rows (batch_block).  Anything else, or no memory for the blocks,
    runs epoch_batches: the same algorithm."""
    cdef Epoch e_ = call[0]
    cdef Epoch* e = &e_
    cdef const Layout* lay = e.lay
    cdef OnlineBlock ob
    cdef Py_ssize_t i, k0, rows, k = e.plan.block_rows, bs = e.plan.batch_size
    cdef floating* cp
    cdef double c, power
    cdef int previous
    cdef bint momentum = False
    cdef bint blocked = not (lay.max_norm > 0 or lay.n_layers < 2 or blas_dgemm == NULL
                             or blas_sgemm == NULL or bs < 1 or k < bs or k % bs != 0)
    if Rule is SgdRule or Rule is MomentumRule:
        if Rule is MomentumRule:
            momentum = True
        for i in range(lay.n_layers):
            if has_dropout(lay, <int>i):
                blocked = False
        # (the coefficients are per batch step: k // bs + 1 of them, fewer than k + 1)
        if blocked and e.n > 0 and online_block_alloc(&ob, lay, k, sizeof(floating),
                                                      momentum):
            cp = <floating*>ob.powers
            if Rule is MomentumRule:
                momentum_coefficients(&rule.h, k // bs, cp)
            else:
                c = 1 - rule.h.learning_rate * rule.h.weight_decay
                power = 1
                for i in range(k // bs + 1):
                    cp[i] = <floating>power
                    power *= c
            previous = blas_single_thread()
            k0 = 0
            while k0 < e.n:
                rows = k if k0 + k <= e.n else e.n - k0
                batch_block(e, params, rule, &ob, k0, rows)
                k0 += rows
            blas_restore_threads(previous)
            free(ob.memory)
            call[0] = e_
            return
    epoch_batches(call, params, rule)
