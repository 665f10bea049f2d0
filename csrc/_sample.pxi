# Per-sample kernels: one sample fed forward, scored, and fed back with a rule stepping
# each parameter (or adding up its gradient).  Layer l's activations and deltas are at
# a_off[l] of a per-sample unit buffer.

cdef extern from "cyprop_rows.h":
    double cyprop_update_dot_d(double* w, const double* x, const double* x_next, double c,
                               Py_ssize_t n) nogil
    float cyprop_update_dot_f(float* w, const float* x, const float* x_next, float c,
                              Py_ssize_t n) nogil
    void cyprop_update_dot2_d(double* w0, double* w1, const double* x, const double* x_next,
                              double c0, double c1, Py_ssize_t n, double* out) nogil
    void cyprop_update_dot2_f(float* w0, float* w1, const float* x, const float* x_next,
                              float c0, float c1, Py_ssize_t n, float* out) nogil


cdef void sample_forward(const Layout* lay, const floating* params,
                         const floating* x,   # IN: the sample (unused when first > 0)
                         floating* a,         # IN/OUT: activations of every layer (n_units)
                         floating* z_out,     # OUT: pre-activations of the output layer
                         Py_ssize_t pos,      # the sample's position in the order (dropout)
                         int first            # start at this layer (earlier ones are in a)
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
                a_l[j] = b[j] + dot(W + j * n_in, a_in, n_in)
            activate_row(lay.acts[l], a_l, n_out)
            if has_dropout(lay, l):
                for j in range(n_out):
                    a_l[j] = dropped_out(lay, l, a_l[j], pos, j)
        a_in = a_l


cdef inline void sample_score(const Epoch* e, Py_ssize_t k,
                              const floating* a_out, const floating* z,  # IN: its outputs
                              floating* d_out,      # OUT: its output deltas; NULL for none
                              double* total, Py_ssize_t* n_correct  # IN/OUT: added to
                              ) noexcept nogil:
    """Loss, correctness and (optionally) output deltas of sample k of the call.  A
    sample weight scales the sample's loss and so, linearly, its whole gradient."""
    cdef Py_ssize_t r = row_of(e, k)
    cdef Py_ssize_t j, n_out = e.lay.sizes[e.lay.n_layers]
    cdef int out_act = e.lay.acts[e.lay.n_layers - 1]
    cdef const floating* y = <const floating*>e.Y + r * n_out
    cdef floating w = (<const floating*>e.sample_weight)[r] if e.sample_weight != NULL else 1
    total[0] += w * sample_loss(e.loss, out_act, a_out, z, y, n_out)
    n_correct[0] += is_correct(a_out, y, n_out)
    if d_out != NULL:
        output_delta(e.loss, out_act, a_out, y, d_out, n_out)
        if e.sample_weight != NULL:
            for j in range(n_out):
                d_out[j] *= w


cdef void sample_backward(const Layout* lay,
                          floating* params,     # IN/OUT: stepped by the rule (GradientSum: IN)
                          const floating* x,    # IN: the sample
                          const floating* a,    # IN: its activations (sample_forward)
                          floating* d,          # IN: the output delta; OUT: every layer's
                          Backward rule,        # what each parameter's gradient is used for
                          floating* state,      # IN/OUT: the rule's buffers (n_slots, n_params),
                                                # or, for GradientSum, the gradient sums
                          Py_ssize_t pos,       # the sample's position in the order (dropout)
                          int last              # the lowest weight layer to go back to
                          ) noexcept nogil:
    """Backpropagation of one sample, the one backward pass of every per-sample path.

    Each parameter's gradient (d_j a_i for a weight, d_j for a bias) goes to ``rule``
    the moment it is known: each weight is read once, used for the delta of the layer
    below, then stepped beside its buffers (no gradient buffer, one pass over W), or,
    with GradientSum, its gradient is added to ``state``.
    """
    cdef int l
    cdef Py_ssize_t i, j, o, n_in, n_out, N = lay.n_params
    cdef floating* w
    cdef floating* s
    cdef const floating* a_prev
    cdef floating* d_l
    cdef floating* d_prev = NULL
    cdef floating dj
    for l in range(lay.n_layers - 1, last - 1, -1):
        n_in = lay.sizes[l]
        n_out = lay.sizes[l + 1]
        d_l = d + lay.a_off[l]
        a_prev = x if l == 0 else a + lay.a_off[l - 1]
        if l > 0:
            d_prev = d + lay.a_off[l - 1]
            memset(d_prev, 0, n_in * sizeof(floating))
        for j in range(n_out):
            dj = d_l[j]
            o = lay.b_off[l] + j
            rule_step(rule, params + o, state + o, N, dj, 1, False)   # a bias: no decay
            o = lay.w_off[l] + j * n_in
            w = params + o
            s = state + o
            # (d_prev gets w * dj with each weight before its step)
            rule_row(rule, w, s, N, dj, a_prev, n_in, d_prev if l > 0 else NULL, NULL)
        if l > 0:
            for i in range(n_in):
                d_prev[i] *= hidden_derivative(lay, l - 1, a_prev[i], pos, i)


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


cdef void sample_first_layer_next(const Layout* lay,
                                  floating* params,        # IN/OUT
                                  const floating* x,       # IN: this sample
                                  const floating* x_next,  # IN: the next one
                                  const floating* d,       # IN: the first layer's deltas
                                  floating* a,             # OUT: the next sample's first layer
                                  Rule rule,
                                  floating* state,         # IN/OUT: the rule's buffers
                                  Py_ssize_t pos_next      # the next sample's position
                                  ) noexcept nogil:
    """The first layer's step for sample x, fused with the first layer's forward pass
    for the next sample: each row of W1 is stepped, then dotted with the next input
    while it is still in L1, so W1 (and its buffers) come from L2 or memory once per
    sample instead of twice.  The same arithmetic as sample_backward then
    sample_forward; only the traffic drops."""
    cdef Py_ssize_t j, o, n_in = lay.sizes[0], n_out = lay.sizes[1], N = lay.n_params
    cdef floating* w
    cdef floating* s
    cdef floating* b = params + lay.b_off[0]
    cdef floating pair[2]
    j = 0
    if Rule is SgdRule:
        if rule.h.weight_decay == 0:
            # plain SGD: step and dot in one pass over each row (cyprop_rows.h), two rows
            # at a time, whose running sums overlap
            while j + 2 <= n_out:
                rule_step(rule, b + j, state, 0, d[j], 1, False)
                rule_step(rule, b + j + 1, state, 0, d[j + 1], 1, False)
                w = params + lay.w_off[0] + j * n_in
                update_dot2(w, w + n_in, x, x_next, <floating>rule.h.learning_rate * d[j],
                            <floating>rule.h.learning_rate * d[j + 1], n_in, pair)
                a[j] = b[j] + pair[0]
                a[j + 1] = b[j + 1] + pair[1]
                j += 2
            if j < n_out:
                rule_step(rule, b + j, state, 0, d[j], 1, False)
                w = params + lay.w_off[0] + j * n_in
                a[j] = b[j] + update_dot(w, x, x_next, <floating>rule.h.learning_rate * d[j],
                                         n_in)
                j += 1
    for j in range(j, n_out):
        o = lay.b_off[0] + j
        rule_step(rule, params + o, state + o, N, d[j], 1, False)
        o = lay.w_off[0] + j * n_in
        w = params + o
        s = state + o
        a[j] = b[j] + rule_row(rule, w, s, N, d[j], x, n_in, NULL, x_next)
    activate_row(lay.acts[0], a, n_out)
    if has_dropout(lay, 0):
        for j in range(n_out):
            a[j] = dropped_out(lay, 0, a[j], pos_next, j)
