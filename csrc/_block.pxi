# Block kernels: a block of B rows fed forward and back as matrix products (BLAS), the
# element-wise work ours.  Layer l's activations and deltas for a block are (B, n_l)
# row-major at B * a_off[l].  A large layer's units are split into parts (part_*) that
# run on parallel threads, each writing only its own columns of the activations and
# deltas and its own rows of the gradient: nothing to reduce, and the same arithmetic
# whatever the number of threads.

cdef struct FirstLayerStep:
    # Plain SGD's step of the first layer's weights, taken by their gradient product
    # itself when a batch is one block: W_0 = keep * W_0 + rate * D_0.T @ X, with
    # rate = -lr / rows and keep = 1 - lr * weight_decay (rule_step's step, up to the
    # rounding), instead of writing the gradient sums and stepping them in a second pass
    # over W_0.  rate 0: the gradient sums, as for every other rule.
    double rate
    double keep


cdef inline int part_count(const Plan* plan, Py_ssize_t B, Py_ssize_t n_in,
                           Py_ssize_t n_units) noexcept nogil:
    """Parts that a layer's n_units are split into for a block of B rows: set by the
    work alone, never by the thread count, so that neither are the results."""
    cdef Py_ssize_t parts = B * n_in * n_units // plan.part_work
    if parts > plan.max_parts:
        parts = plan.max_parts
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


cdef void part_forward(const Layout* lay, int l, const floating* params,
                       const floating* a_in, int B,  # IN: (B, n_in) layer l's inputs
                       floating* acts,     # OUT: columns u0 .. u1-1 of layer l's block
                       floating* z_out,    # OUT: the same of the output pre-activations
                       Py_ssize_t pos, int u0, int u1) noexcept nogil:
    """Units u0 .. u1-1 of layer l for a block: Z = A_in @ W.T + b, then (hidden layers)
    the activation and dropout.  The output layer's activation needs all its units:
    block_forward applies it once every part is done."""
    cdef int n_in = <int>lay.sizes[l], n_out = <int>lay.sizes[l + 1]
    cdef Py_ssize_t s, i
    cdef floating* a_l = acts + B * lay.a_off[l]
    cdef floating* z = z_out if l == lay.n_layers - 1 else a_l
    cdef floating* row
    # the bias rows first, then the product is added onto them
    for s in range(B):
        memcpy(z + s * n_out + u0, params + lay.b_off[l] + u0, (u1 - u0) * sizeof(floating))
    # z[:, u0:u1] += A_in @ W[u0:u1].T
    # (the offset in Py_ssize_t: a layer may hold more than 2**31 weights)
    rows_dot_rows(B, u1 - u0, n_in, a_in, n_in,
                  params + lay.w_off[l] + <Py_ssize_t>u0 * n_in, n_in, True, z + u0, n_out)
    if l == lay.n_layers - 1:
        return
    for s in range(B):
        row = a_l + s * n_out
        activate_row(lay.acts[l], row + u0, u1 - u0)
        if has_dropout(lay, l):
            for i in range(u0, u1):
                row[i] = dropped_out(lay, l, row[i], pos + s, i)


cdef void block_forward(const Layout* lay, const Plan* plan, const floating* params,
                        const floating* xb, int B,  # IN: (B, n_in) inputs
                        floating* acts,    # OUT: every layer's (B, n_l) activations
                        floating* z_out,   # OUT: (B, n_out) output pre-activations
                        Py_ssize_t pos,    # position of the first row (dropout)
                        bint output        # False: leave the output activation undone
                        ) noexcept nogil:
    cdef int l, p, parts, previous, L = lay.n_layers, n_threads = plan.n_threads
    cdef Py_ssize_t s, n_out = 0
    cdef const floating* a_in = xb
    for l in range(L):
        n_out = lay.sizes[l + 1]
        parts = part_count(plan, B, lay.sizes[l], n_out) if n_threads > 0 else 1
        if parts == 1:
            part_forward(lay, l, params, a_in, B, acts, z_out, pos, 0, <int>n_out)
        else:
            for p in prange(parts, num_threads=n_threads if n_threads < parts else parts,
                            schedule="static"):
                previous = blas_single_thread()
                part_forward(lay, l, params, a_in, B, acts, z_out, pos,
                             part_start(n_out, parts, p), part_start(n_out, parts, p + 1))
                blas_restore_threads(previous)
        a_in = acts + B * lay.a_off[l]
    if output:
        for s in range(B):
            output_activation(lay.acts[L - 1], z_out + s * n_out,
                              acts + B * lay.a_off[L - 1] + s * n_out, n_out)


cdef void part_gradient(const Layout* lay, int l, floating* params,
                        const floating* a_prev, int B, const floating* deltas,
                        floating* grad,   # IN/OUT: rows u0 .. u1-1 of W_l's, and b_l's
                        floating beta, FirstLayerStep first, int u0, int u1) noexcept nogil:
    """The gradient sums of units u0 .. u1-1 of layer l (their rows of W and their
    biases): grad = beta * grad + D[:, u].T @ A_prev, and the column sums of D; or, for
    the first layer with first.rate, its rows of W stepped instead (FirstLayerStep)."""
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
    if l == 0 and first.rate != 0:
        # W[u0:u1] = keep * W[u0:u1] + rate * D[:, u0:u1].T @ A_prev
        rows_t_times(B, u1 - u0, n_in, d_l + u0, n_out, a_prev, n_in, <floating>first.rate,
                     <floating>first.keep, params + lay.w_off[l] + <Py_ssize_t>u0 * n_in, n_in)
        return
    # grad_W[u0:u1] = beta * grad_W[u0:u1] + D[:, u0:u1].T @ A_prev
    rows_t_times(B, u1 - u0, n_in, d_l + u0, n_out, a_prev, n_in, 1, beta,
                 grad + lay.w_off[l] + <Py_ssize_t>u0 * n_in, n_in)


cdef void part_delta_below(const Layout* lay, int l, const floating* params,
                           const floating* a_prev, int B,
                           floating* deltas,  # IN: layer l's; OUT: columns i0 .. i1-1 of l-1's
                           Py_ssize_t pos, int i0, int i1) noexcept nogil:
    """Deltas of units i0 .. i1-1 of layer l - 1: (D_l @ W_l)[:, i] * f'(A_prev[:, i])."""
    cdef int n_in = <int>lay.sizes[l], n_out = <int>lay.sizes[l + 1]
    cdef Py_ssize_t s, i
    cdef floating* d_prev = deltas + B * lay.a_off[l - 1]
    # d_prev[:, i0:i1] = D_l @ W_l[:, i0:i1]
    rows_times(B, n_out, i1 - i0, deltas + B * lay.a_off[l], n_out,
               params + lay.w_off[l] + i0, n_in, d_prev + i0, n_in)
    if not has_dropout(lay, l - 1):
        for s in range(B):
            times_derivative(lay.acts[l - 1], d_prev + s * n_in + i0, a_prev + s * n_in + i0,
                             i1 - i0)
        return
    for s in range(B):
        for i in range(i0, i1):
            d_prev[s * n_in + i] *= hidden_derivative(lay, l - 1, a_prev[s * n_in + i], pos + s, i)


cdef inline void part_backward(const Layout* lay, int l, floating* params,
                               const floating* a_prev, int B, floating* deltas,
                               floating* grad, floating beta, FirstLayerStep first,
                               Py_ssize_t pos, int p, int grad_parts,
                               int delta_parts) noexcept nogil:
    """Part p of layer l's backward step: the first grad_parts parts are its gradient,
    the rest the deltas of the layer below (both read W_l and D_l, neither writes them;
    a step of W_0 comes last, where no part reads it)."""
    cdef Py_ssize_t n_in = lay.sizes[l], n_out = lay.sizes[l + 1]
    if p < grad_parts:
        part_gradient(lay, l, params, a_prev, B, deltas, grad, beta, first,
                      part_start(n_out, grad_parts, p), part_start(n_out, grad_parts, p + 1))
    else:
        p -= grad_parts
        part_delta_below(lay, l, params, a_prev, B, deltas, pos,
                         part_start(n_in, delta_parts, p), part_start(n_in, delta_parts, p + 1))


cdef void block_backward(const Layout* lay, const Plan* plan,
                         floating* params,  # IN (OUT: W_0 with first.rate)
                         const floating* xb, int B, const floating* acts,
                         floating* deltas,  # IN: the output deltas; scratch for the rest
                         floating* grad,    # IN/OUT: beta * grad + the block's gradient sums
                         Py_ssize_t pos,    # position of the first row (dropout)
                         floating beta, FirstLayerStep first) noexcept nogil:
    cdef int l, p, grad_parts, delta_parts, parts, previous, n_threads = plan.n_threads
    cdef const floating* a_prev
    for l in range(lay.n_layers - 1, -1, -1):
        a_prev = xb if l == 0 else acts + B * lay.a_off[l - 1]
        grad_parts, delta_parts = 1, (1 if l > 0 else 0)
        if n_threads > 0:
            grad_parts = part_count(plan, B, lay.sizes[l], lay.sizes[l + 1])
            if l > 0:
                delta_parts = part_count(plan, B, lay.sizes[l + 1], lay.sizes[l])
        parts = grad_parts + delta_parts
        if n_threads <= 1 or (grad_parts == 1 and delta_parts <= 1):
            # one thread, or too little work to be worth a second one
            for p in range(parts):
                part_backward(lay, l, params, a_prev, B, deltas, grad, beta, first, pos, p,
                              grad_parts, delta_parts)
        else:
            for p in prange(parts, num_threads=n_threads if n_threads < parts else parts,
                            schedule="static"):
                previous = blas_single_thread()
                part_backward(lay, l, params, a_prev, B, deltas, grad, beta, first, pos, p,
                              grad_parts, delta_parts)
                blas_restore_threads(previous)


cdef void part_score(const Epoch* e, Py_ssize_t r0,
                     floating* a_out,      # OUT: the block's output activations
                     const floating* z,    # IN: the block's output pre-activations
                     floating* d_out,      # OUT: the block's output deltas; NULL for none
                     Py_ssize_t s0, Py_ssize_t s1,   # the part: rows s0 .. s1-1 of the block
                     double* part_loss, Py_ssize_t* part_correct  # OUT: the part's own
                     ) noexcept nogil:
    """Rows s0 .. s1-1 of the block of samples r0, r0 + 1, ... of the call: output
    activation, then each sample's score."""
    cdef int out_act = e.lay.acts[e.lay.n_layers - 1]
    cdef Py_ssize_t s, n_out = e.lay.sizes[e.lay.n_layers]
    part_loss[0] = 0
    part_correct[0] = 0
    for s in range(s0, s1):
        output_activation(out_act, z + s * n_out, a_out + s * n_out, n_out)
        sample_score(e, r0 + s, a_out + s * n_out, z + s * n_out,
                     d_out + s * n_out if d_out != NULL else NULL, part_loss, part_correct)


cdef void block_gradient(Epoch* e, floating* params,  # IN (OUT: W_0 with first.rate)
                         Py_ssize_t r0, Py_ssize_t r,  # samples r0 .. r0+r-1 of the call
                         bint want_grad,
                         floating beta,  # the gradient sums: beta * grad + this block's
                         FirstLayerStep first
                         ) noexcept nogil:
    """A block of samples as matrix products: gathered, fed forward, scored into the
    call's loss and count, and (want_grad) fed back into the scratch gradient sums (or,
    with first.rate, W_0 stepped)."""
    cdef const Layout* lay = e.lay
    cdef const Plan* plan = &e.plan
    cdef Py_ssize_t k, q, last, n_in = lay.sizes[0]
    cdef floating* xb = <floating*>e.scratch.inputs
    cdef floating* a = <floating*>e.scratch.acts
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef floating* d_out
    cdef double part_loss[SCORE_PARTS]
    cdef Py_ssize_t part_correct[SCORE_PARTS]
    # With threads, the row-wise work is shared too: gathering the rows (it waits on
    # memory: a shuffled epoch reads X at random) and scoring them.
    cdef bint threaded = plan.n_threads > 1 and part_count(plan, r, n_in, lay.sizes[1]) > 1
    if threaded:
        for q in prange((r + GATHER_ROWS - 1) // GATHER_ROWS, num_threads=plan.n_threads,
                        schedule="static"):
            gather_rows(e, r0 + q * GATHER_ROWS, min(<Py_ssize_t>GATHER_ROWS, r - q * GATHER_ROWS),
                        xb + q * GATHER_ROWS * n_in)
    else:
        gather_rows(e, r0, r, xb)
    block_forward(lay, plan, params, xb, <int>r, a, z, r0, False)
    last = r * lay.a_off[lay.n_layers - 1]
    d_out = d + last if want_grad else NULL
    if threaded:
        for q in prange(SCORE_PARTS, num_threads=plan.n_threads, schedule="static"):
            part_score(e, r0, a + last, z, d_out, r * q // SCORE_PARTS,
                       r * (q + 1) // SCORE_PARTS, &part_loss[q], &part_correct[q])
    else:
        for q in range(SCORE_PARTS):
            part_score(e, r0, a + last, z, d_out, r * q // SCORE_PARTS,
                       r * (q + 1) // SCORE_PARTS, &part_loss[q], &part_correct[q])
    for q in range(SCORE_PARTS):
        e.loss_sum += part_loss[q]
        e.n_correct += part_correct[q]
    if want_grad:
        block_backward(lay, plan, params, xb, <int>r, a, d, <floating*>e.scratch.grad, r0, beta,
                       first)
