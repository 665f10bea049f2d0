# Drivers: an epoch (or a run of whole batches of one) on one of the plan's paths.
# Epoch -> step -> gradient, each level one short function, as in the NumPy reference
# (cyprop/_reference.py: train_epoch, loss_and_gradients, backprop).

cdef inline void epoch_after_step(Epoch* e, floating* params) noexcept nogil:
    """What follows every optimizer step: the max-norm constraint, and the step count."""
    if e.lay.max_norm > 0:
        max_norm_step(e.lay, params)
    e.steps += 1


cdef void epoch_online(Epoch* call, floating* params, Rule rule) noexcept nogil:
    """Batch size 1 with any optimizer: each sample fed forward, scored, and fed back,
    with the rule stepping each parameter the moment its gradient is known."""
    # a copy that no other function sees: its fields stay in registers between samples
    cdef Epoch e_ = call[0]
    cdef Epoch* e = &e_
    cdef const Layout* lay = e.lay
    cdef floating* a = <floating*>e.scratch.acts
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef Py_ssize_t k, last = lay.a_off[lay.n_layers - 1]
    cdef const floating* x
    for k in range(e.n):
        rule_begin(&rule, e.steps)
        x = <const floating*>e.X + row_of(e, k) * lay.sizes[0]
        sample_forward(lay, params, x, a, z, k, 0)
        sample_score(e, k, a + last, z, d + last, &e.loss_sum, &e.n_correct)
        sample_backward(lay, params, x, a, d, rule, <floating*>e.state, k, 0)
        epoch_after_step(e, params)
    call[0] = e_


cdef void epoch_online_next(Epoch* call, floating* params, Rule rule) noexcept nogil:
    """Batch size 1 on a network with hidden layers, without max-norm: epoch_online,
    except that the first layer's step for one sample is fused with its forward pass
    for the next (sample_first_layer_next).  The inputs go through two aligned rows: a
    user's array is often not 64-byte aligned, and unaligned loads slow this loop by up
    to 25%."""
    cdef Epoch e_ = call[0]   # (as in epoch_online)
    cdef Epoch* e = &e_
    cdef const Layout* lay = e.lay
    cdef floating* a = <floating*>e.scratch.acts
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef floating* state = <floating*>e.state
    cdef floating* x_now = <floating*>align64(e.scratch.x_rows)
    cdef floating* x_next = <floating*>align64(x_now + lay.sizes[0])
    cdef floating* x_swap
    cdef Py_ssize_t k, n_in = lay.sizes[0], last = lay.a_off[lay.n_layers - 1]
    if e.n == 0:
        return
    memcpy(x_now, <const floating*>e.X + row_of(e, 0) * n_in, n_in * sizeof(floating))
    sample_forward(lay, params, x_now, a, z, 0, 0)
    for k in range(e.n):
        # sample k was fed forward by the previous iteration (or above)
        rule_begin(&rule, e.steps)
        sample_score(e, k, a + last, z, d + last, &e.loss_sum, &e.n_correct)
        if k + 1 < e.n:
            memcpy(x_next, <const floating*>e.X + row_of(e, k + 1) * n_in,
                   n_in * sizeof(floating))
            sample_backward(lay, params, x_now, a, d, rule, state, k, 1)
            sample_first_layer_next(lay, params, x_now, x_next, d, a, rule, state, k + 1)
            sample_forward(lay, params, NULL, a, z, k + 1, 1)
            x_swap = x_now
            x_now = x_next
            x_next = x_swap
        else:
            sample_backward(lay, params, x_now, a, d, rule, state, k, 0)
        epoch_after_step(e, params)
    call[0] = e_


cdef void batch_gradient(Epoch* e, floating* params,
                         Py_ssize_t start, Py_ssize_t stop,  # samples of the call
                         bint want_grad,
                         FirstLayerStep first  # rate 0, or (one block) W_0's step
                         ) noexcept nogil:
    """The gradient sums of samples start .. stop-1 into the scratch gradient (with
    want_grad), their losses and correct count added to the call's: as matrix products
    over blocks of rows, or one sample at a time."""
    cdef const Layout* lay = e.lay
    cdef floating* a = <floating*>e.scratch.acts
    cdef floating* d = <floating*>e.scratch.deltas
    cdef floating* z = <floating*>e.scratch.z_out
    cdef floating* grad = <floating*>e.scratch.grad
    cdef const floating* x
    cdef GradientSum add = GradientSum(unused=0)
    cdef Py_ssize_t k, rows, last = lay.a_off[lay.n_layers - 1]
    if e.plan.path == PATH_BLOCKS:
        k = start
        while k < stop:
            rows = e.plan.block_rows if k + e.plan.block_rows <= stop else stop - k
            block_gradient(e, params, k, rows, want_grad, 0 if k == start else 1, first)
            k += rows
        return
    if want_grad:
        memset(grad, 0, lay.n_params * sizeof(floating))
    for k in range(start, stop):
        x = <const floating*>e.X + row_of(e, k) * lay.sizes[0]
        sample_forward(lay, params, x, a, z, k, 0)
        sample_score(e, k, a + last, z, d + last if want_grad else NULL, &e.loss_sum,
                     &e.n_correct)
        if want_grad:
            sample_backward(lay, params, x, a, d, add, grad, k, 0)


cdef void batch_step(Epoch* e, floating* params, Rule rule, Py_ssize_t rows,
                     Py_ssize_t lo  # the parameters from lo on (0, or b_0's start)
                     ) noexcept nogil:
    """One optimizer step with the mean gradient of a batch of ``rows`` samples."""
    cdef const Layout* lay = e.lay
    cdef floating* grad = <floating*>e.scratch.grad
    cdef floating* state = <floating*>e.state
    cdef floating scale = <floating>1 / <floating>rows
    cdef int p, n_threads = e.plan.n_threads
    cdef Py_ssize_t N = lay.n_params - lo
    rule_begin(&rule, e.steps)
    if (e.plan.path == PATH_BLOCKS and n_threads > 1
            and part_count(&e.plan, min(rows, e.plan.block_rows), lay.sizes[0],
                           lay.sizes[1]) > 1):
        # the threads that wrote the gradient's parts step them (their caches)
        for p in prange(n_threads, num_threads=n_threads, schedule="static"):
            rule_range(rule, lay, params, grad, state, scale, lo + N * p // n_threads,
                       lo + N * (p + 1) // n_threads)
    else:
        rule_range(rule, lay, params, grad, state, scale, lo, lo + N)


cdef void epoch_batches(Epoch* e, floating* params, Rule rule) noexcept nogil:
    """Mini-batches: consecutive batches of the order, the gradient of each, one step."""
    cdef Py_ssize_t start = 0, stop
    cdef FirstLayerStep first = FirstLayerStep(rate=0, keep=1)
    while start < e.n:
        stop = start + e.plan.batch_size if start + e.plan.batch_size < e.n else e.n
        first.rate = 0
        if (Rule is SgdRule and e.plan.path == PATH_BLOCKS
                and stop - start <= e.plan.block_rows):
            # a batch of one block: its gradient product steps W_0 (FirstLayerStep)
            first.rate = -rule.h.learning_rate / <double>(stop - start)
            first.keep = 1 - rule.h.learning_rate * rule.h.weight_decay
        batch_gradient(e, params, start, stop, True, first)
        batch_step(e, params, rule, stop - start, e.lay.b_off[0] if first.rate != 0 else 0)
        epoch_after_step(e, params)
        start = stop


cdef inline bint any_subnormal(const floating* x, Py_ssize_t n) noexcept nogil:
    """Whether x[0 .. n-1] holds a subnormal number of its dtype (cyprop_cpu.h)."""
    if floating is double:
        return cyprop_any_subnormal_d(x, n) != 0
    else:
        return cyprop_any_subnormal_f(x, n) != 0


cdef inline bint copy_any_subnormal(floating* dst, const floating* x,
                                    Py_ssize_t n) noexcept nogil:
    """x[0 .. n-1] copied to dst, and whether they hold a subnormal number of their
    dtype, in one pass (cyprop_cpu.h)."""
    if floating is double:
        return cyprop_copy_any_subnormal_d(dst, x, n) != 0
    else:
        return cyprop_copy_any_subnormal_f(dst, x, n) != 0


def holds_subnormal(const floating[::1] x, floating[::1] copy=None):
    """any_subnormal of x, as the per-sample paths scan their numbers; with ``copy`` (of
    x's length) copy_any_subnormal, as the one-sample step copies the parameters (for
    the tests)."""
    if copy is not None and copy.shape[0] != x.shape[0]:
        raise ValueError("cyprop: holds_subnormal's copy needs x's length")
    if x.shape[0] == 0:
        return False
    if copy is not None:
        return copy_any_subnormal(&copy[0], &x[0], x.shape[0])
    return any_subnormal(&x[0], x.shape[0])


cdef bint flush_reads_right(const Epoch* e, const floating* params,
                            const Hyper* h) noexcept nogil:
    """Whether the per-sample paths may flush subnormals to zero: not where a
    hyper-parameter, a parameter, or an input, target or weight of the call's samples
    is itself a subnormal number of the dtype, which the flush would read as 0 (a
    learning rate of 5e-324: Rprop's step sizes never grew from it; an input of 1e-40
    in float32: a ReLU's derivative at w * x turned from 1 to 0; a target row (0, 5e-324):
    a tie, the wrong class counted as the target).  The epoch then runs unflushed, only
    slower.  What flushing still changes are the subnormals formed within the steps (an
    optimizer's decaying state), far inside the parity tolerances where eps is not
    tiny: a v flushed below the smallest normal number changes a step of Adam, RMSprop
    or Adagrad by at most learning_rate * smallest / eps_t**2, eps_t being eps as it
    meets sqrt(v) (Adam's eps * sqrt(1 - beta2), RMSprop's eps * sqrt(1 - alpha)).  So
    the flush is kept to where that is below the dtype's epsilon: Adam is scale-free,
    and a gradient of 1e-152 with an eps of 1e-300 steps by the learning rate, which a
    flushed v turned into a step of 1e136.  (eps is kept normal by normal_eps.)  One
    change is not small: a ReLU unit (or leaky ReLU) whose pre-activation is itself
    formed below the smallest normal number (inputs and weights near 1e-38 in float32,
    1e-308 in float64) reads it as 0, and takes the derivative at 0: the reference's
    derivative is 1."""
    cdef double[10] hyper = [h.learning_rate, h.momentum, h.weight_decay, h.beta1, h.beta2,
                             h.alpha, h.eta_minus, h.eta_plus, h.step_min, h.step_max]
    cdef floating hyper_here[10]   # as the dtype reads them
    cdef Py_ssize_t i, k, r, n_in = e.lay.sizes[0], n_out = e.lay.sizes[e.lay.n_layers]
    cdef const floating* X = <const floating*>e.X
    cdef const floating* Y = <const floating*>e.Y
    cdef const floating* weights = <const floating*>e.sample_weight
    cdef double smallest = DBL_MIN if floating is double else FLT_MIN
    cdef double epsilon = DBL_EPSILON if floating is double else FLT_EPSILON
    cdef double share = (1 - h.beta2) * (1 - h.alpha)   # (each 0 but for its optimizer)
    if h.eps != 0 and (h.eps * h.eps * (share if share > 0 else 1)
                       < fabs(h.learning_rate) * smallest / epsilon):
        return False
    for i in range(10):
        hyper_here[i] = <floating>hyper[i]
    if any_subnormal(hyper_here, 10) or (
            not e.params_normal and any_subnormal(params, e.lay.n_params)):
        return False
    for k in range(e.n):
        r = row_of(e, k)
        if (any_subnormal(X + r * n_in, n_in) or any_subnormal(Y + r * n_out, n_out)
                or (weights != NULL and any_subnormal(weights + r, 1))):
            return False
    return True


cdef void epoch_run(Epoch* e, floating* params, Rule rule) noexcept nogil:
    """The plan's path (train_epoch has checked that the plan fits the rule).  The
    per-sample paths run on this thread alone, with subnormals flushed to zero
    (cyprop_cpu.h: an optimizer's decaying state would otherwise slow every step) where
    that reads every number they start from right (flush_reads_right)."""
    cdef unsigned int fp_mode
    cdef bint flush
    if e.plan.path == PATH_ONLINE_NEXT or e.plan.path == PATH_ONLINE:
        if Rule is RpropRule:
            # (its state is the last gradients, read for their signs, and step sizes that
            # shrink by eta_minus: a subnormal one read as 0 would miss a sign flip, or
            # never grow again)
            flush = False
        else:
            flush = flush_reads_right(e, params, &rule.h)
        fp_mode = cyprop_flush_subnormals() if flush else 0
        if e.plan.path == PATH_ONLINE_NEXT:
            epoch_online_next(e, params, rule)
        else:
            epoch_online(e, params, rule)
        if flush:
            cyprop_restore_subnormals(fp_mode)
    elif e.plan.path == PATH_ONLINE_BLOCKS:
        epoch_online_blocks(e, params, rule)
    elif e.plan.path == PATH_BATCH_BLOCKS:
        epoch_batch_blocks(e, params, rule)
    else:
        epoch_batches(e, params, rule)


cdef void epoch_by_rule(Epoch* e, floating* params, const Hyper* hyper) noexcept nogil:
    """epoch_run with the plan's rule: the one place where a rule code becomes a type."""
    cdef int rule = e.plan.rule
    if rule == RULE_SGD:
        epoch_run(e, params, SgdRule(h=hyper[0]))
    elif rule == RULE_MOMENTUM:
        epoch_run(e, params, MomentumRule(h=hyper[0], first=False))
    elif rule == RULE_ADAM:
        epoch_run(e, params, AdamRule(h=hyper[0], step_size=0, eps_t=0, rate_t=0,
                                      root_t=0))
    elif rule == RULE_RMSPROP:
        epoch_run(e, params, RmspropRule(h=hyper[0]))
    elif rule == RULE_ADAGRAD:
        epoch_run(e, params, AdagradRule(h=hyper[0]))
    elif rule == RULE_RPROP:
        epoch_run(e, params, RpropRule(h=hyper[0], first=False))
