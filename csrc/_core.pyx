# cython: language_level=3
"""The compiled backpropagation core.

Design
------
The network's parameters live in one flat buffer per network: for each layer l the
weights W_l, laid out (n_out, n_in) row-major, then the biases b_l.  Gradients and
optimizer state use the same layout, so an optimizer step is one pass over flat
arrays, and forward propagation is a row-by-row dot product.

Python (``cyprop/_compiled.py``) validates, converts, allocates and chooses the plan of
each call (its path, its optimizer rule, the tuning constants); the functions here
trust their inputs and run without the GIL over raw pointers.  The source is split by
concern, and included here into one module (built once per instruction set):

    _layout.pxi   the shared types: dtypes, codes, the layout, the plan, the epoch
    _blas.pxi     instruction-set dispatch, scipy's BLAS, threads
    _maths.pxi    activations, losses, output deltas, dropout masks, the dot product
    _rules.pxi    the optimizers' rules: one parameter's step (rule_*)
    _sample.pxi   per-sample kernels (sample_*): forward, score, the one backward pass
    _block.pxi    per-block kernels as matrix products (block_*), in parts (part_*)
    _epoch.pxi    the drivers: an epoch (epoch_*) of batches (batch_*) on a path
    _online_block.pxi  exact online SGD (and momentum) with the first layer over blocks
    _batch_block.pxi   the same for small mini-batches: blocks of whole batches
    _inference.pxi  forward of a chunk of rows; FewRows, the checked calls of serving
    cyprop_*.h    C helpers that Cython cannot express (restrict, CPU features, dlsym)

A loop is written once and takes what varies as a fused type: the dtype (float,
double) and, in the backward pass and the optimizer step, the rule, whose formula is
inlined into each compiled copy of the loop.  No function pointers or Python inside the
loops; the variant is picked once per call, outside them.  The entry points below
(plain names) hold the GIL only to check the plan and allocate.

Compiler directives (boundscheck, wraparound, ...) come from the build
(CMakeLists.txt), so that one switch turns the checks back on for debugging.

The maths is the same as in ``cyprop/_reference.py``, level for level: its
train_epoch is the epoch_* drivers, loss_and_gradients is batch_gradient, feedforward
is sample_forward / block_forward, backprop is sample_backward / block_backward, and
an optimizer's update_params is its rule; reading the two side by side shows the same
algorithm, plus types.
"""

from libc.math cimport exp, expf, log, logf, log1p, log1pf, tanh, tanhf, fabs, fabsf
from libc.math cimport sqrt, sqrtf, pow, INFINITY
from libc.float cimport DBL_MAX, FLT_MAX, DBL_MIN, FLT_MIN, DBL_EPSILON, FLT_EPSILON
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memset
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE)
from cpython.exc cimport PyErr_Clear
from cython.parallel cimport prange, threadid

include "_layout.pxi"
include "_blas.pxi"
include "_maths.pxi"
include "_rules.pxi"
include "_sample.pxi"
include "_block.pxi"
include "_epoch.pxi"
include "_online_block.pxi"
include "_batch_block.pxi"
include "_inference.pxi"


# ------------------------------------------------------------ Python entry points
cdef class Workspace:
    """The scratch buffers of one call (a Scratch), for blocks of up to ``rows`` rows,
    and the layout; allocated once per call and freed however the call ends."""
    cdef Scratch s
    cdef Layout lay

    def __cinit__(self, const Py_ssize_t[::1] sizes, const int[::1] acts, Py_ssize_t rows,
                  size_t itemsize, bint with_grad):
        # (the object's memory starts zeroed: whatever fails below, free() sees NULLs)
        if layout_init(&self.lay, sizes, acts) != 0:
            raise MemoryError("cyprop: cannot allocate the layer layout")
        self.s.inputs = calloc64(rows * sizes[0] * itemsize)
        self.s.acts = calloc64(rows * self.lay.n_units * itemsize)
        self.s.deltas = calloc64(rows * self.lay.n_units * itemsize)
        self.s.z_out = calloc64(rows * sizes[sizes.shape[0] - 1] * itemsize)
        self.s.grad = calloc64((self.lay.n_params if with_grad else 1) * itemsize)
        self.s.x_rows = calloc(2 * sizes[0] * itemsize + 192, 1)
        if not (self.s.inputs and self.s.acts and self.s.deltas and self.s.z_out
                and self.s.grad and self.s.x_rows):
            raise MemoryError(f"cyprop: cannot allocate scratch buffers for {rows} rows")

    def __dealloc__(self):
        layout_free(&self.lay)
        free64(self.s.inputs)
        free64(self.s.acts)
        free64(self.s.deltas)
        free64(self.s.z_out)
        free64(self.s.grad)
        free(self.s.x_rows)


cdef Py_ssize_t rows_needed(const Plan* plan, Py_ssize_t n):
    """Rows of scratch for a call over n samples: one at a time, or blocks."""
    if plan.path != PATH_BLOCKS:
        return 1
    return plan.block_rows if plan.block_rows < n else (n if n > 0 else 1)


cdef check_blocks(const Plan* plan):
    if plan.path != PATH_BLOCKS:
        return
    if not products_ready():
        raise ValueError("cyprop: a plan with path 'blocks' needs BLAS (set_blas) or the "
                         "AVX-512 kernel's own products")
    if plan.block_rows < 1 or plan.part_work < 1 or plan.max_parts < 1:
        raise ValueError(f"cyprop: block_rows, part_work and max_parts must be >= 1, "
                         f"got {plan.block_rows}, {plan.part_work}, {plan.max_parts}")


cdef check_training_plan(const Plan* plan, const Hyper* hyper, int n_layers,
                         double max_norm, Py_ssize_t state_rows):
    """Refuse a plan that the drivers would run wrong: the paths each have their rules."""
    if not (0 <= plan.path < len(PATHS) and 0 <= plan.rule < len(RULES)):
        raise ValueError(f"cyprop: unknown path {plan.path} or rule {plan.rule}")
    path, rule = PATHS[plan.path], RULES[plan.rule]
    if plan.batch_size < 1:
        raise ValueError(f"cyprop: batch_size must be >= 1, got {plan.batch_size}")
    if plan.path in (PATH_ONLINE, PATH_ONLINE_NEXT) and plan.batch_size != 1:
        raise ValueError(f"cyprop: path {path!r} is for batch size 1, not {plan.batch_size}")
    if plan.path == PATH_ONLINE_NEXT and (n_layers < 2 or max_norm > 0):
        raise ValueError(f"cyprop: path {path!r} runs networks with hidden layers and no "
                         f"max-norm, not {n_layers} layers with max_norm={max_norm}")
    if plan.rule == RULE_SGD and hyper.momentum != 0:
        raise ValueError("cyprop: rule 'sgd' has no momentum: plan rule 'momentum'")
    if state_rows < STATE_ROWS[rule]:
        raise ValueError(f"cyprop: rule {rule!r} needs {STATE_ROWS[rule]} rows of state, "
                         f"got {state_rows}")
    check_blocks(plan)
    check_online_blocks(plan, n_layers, max_norm)
    check_batch_blocks(plan, n_layers, max_norm)


def forward(const Py_ssize_t[::1] sizes, const int[::1] acts, const floating[::1] params,
            const floating[:, ::1] X,
            floating[:, ::1] out,    # OUT: (n, n_out) output, or (n, n_units) every layer
            Plan plan):              # 'blocks' of block_rows rows on n_threads, or 'samples'
    """Activations of every row of X: of the output layer, or, when ``out`` has a column
    per unit, of every layer (concatenated, first hidden layer first)."""
    check_blocks(&plan)
    cdef Py_ssize_t n = X.shape[0]
    cdef bint batched = plan.path == PATH_BLOCKS
    cdef Py_ssize_t step = plan.block_rows if batched else 1
    cdef int n_threads = usable_threads(plan.n_threads) if batched else 1
    # scratch per thread that runs: never more threads than chunks
    if n_threads > (n + step - 1) // step:
        n_threads = <int>((n + step - 1) // step) if n > 0 else 1
    # Chunks are the parallel work: each is fed forward in whole layers.
    cdef Plan whole = plan
    whole.n_threads = 0
    cdef Workspace ws = Workspace(sizes, acts, rows_needed(&plan, n) * n_threads,
                                  sizeof(floating), False)
    cdef Layout* lay = &ws.lay
    cdef bint every_layer = out.shape[1] == lay.n_units
    cdef int first = 0 if every_layer else lay.n_layers - 1
    cdef Py_ssize_t c, k, rows, n_chunks = (n + step - 1) // step
    with nogil:
        # Chunks are independent: each thread feeds its chunks through its own scratch.
        for c in prange(n_chunks, num_threads=n_threads, schedule="static"):
            k = c * step
            rows = step if k + step <= n else n - k
            forward_chunk(lay, &whole, batched, &params[0], &X[k, 0], rows,
                          <floating*>ws.s.acts + threadid() * step * lay.n_units,
                          <floating*>ws.s.z_out + threadid() * step * lay.sizes[lay.n_layers],
                          &out[k, 0], out.shape[1], first)


def loss_and_gradients(const Py_ssize_t[::1] sizes, const int[::1] acts, int loss,
                       const floating[::1] params, const floating[:, ::1] X,
                       const floating[:, ::1] Y,
                       floating[::1] grad,   # OUT: gradient sums; ignored if empty
                       Plan plan):           # 'blocks' of block_rows rows, or 'samples'
    """Sum over the rows of X, Y of the loss, and (if grad is not empty) of its gradient.

    Returns (loss sum, number of correctly classified rows)."""
    check_blocks(&plan)
    cdef Py_ssize_t n = X.shape[0]
    cdef Workspace ws = Workspace(sizes, acts, rows_needed(&plan, n), sizeof(floating), False)
    cdef bint want_grad = grad.shape[0] > 0
    cdef Scratch scratch = ws.s
    cdef Epoch e
    cdef int blas_previous
    if want_grad:
        scratch.grad = &grad[0]   # written in place
    e.lay = &ws.lay
    e.plan = plan
    e.loss = loss
    e.X = &X[0, 0] if n > 0 else NULL
    e.Y = &Y[0, 0] if n > 0 else NULL
    e.sample_weight = NULL
    e.order = NULL
    e.n = n
    e.state = NULL
    e.scratch = &scratch
    e.steps = 0
    e.loss_sum = 0
    e.n_correct = 0
    e.params_normal = False
    with nogil:
        blas_previous = blas_single_thread() if plan.path == PATH_BLOCKS else 0
        if want_grad and n == 0:
            memset(&grad[0], 0, grad.shape[0] * sizeof(floating))
        # (GradientSum reads the parameters, never writes them)
        batch_gradient(&e, <floating*>&params[0], 0, n, want_grad,
                       FirstLayerStep(rate=0, keep=1))
        blas_restore_threads(blas_previous)
    return e.loss_sum, e.n_correct


def train_epoch(const Py_ssize_t[::1] sizes, const int[::1] acts, int loss,
                floating[::1] params,            # IN/OUT: the model
                const floating[:, ::1] X, const floating[:, ::1] Y,
                const Py_ssize_t[::1] order,     # the samples of this call, in order
                Plan plan,                       # the path, the rule, the tuning
                Hyper hyper,                     # the optimizer's hyper-parameters
                floating[:, ::1] state,          # IN/OUT: optimizer state, (n_slots, n_params)
                long long steps,                 # optimizer steps taken before this call
                const floating[::1] sample_weight=None,  # per row of X; None: all 1
                const double[::1] dropout=None,  # rate per weight layer; None: no dropout
                unsigned long long dropout_seed=0,
                double max_norm=0):              # > 0: bound each unit's incoming weights
    """Mini-batch training over ``order``: an epoch, or a run of whole batches of one.

    Returns (sum of the (weighted) sample losses, number classified right, steps taken).

    The loss of each sample is taken on the forward pass that trains on it, with the
    weights of that moment (the running training loss that Keras and scikit-learn report).
    """
    check_training_plan(&plan, &hyper, <int>sizes.shape[0] - 1, max_norm, state.shape[0])
    if state.shape[1] != params.shape[0]:   # the rules step every row of it in full
        raise ValueError(f"cyprop: the optimizer state has {state.shape[1]} columns, not "
                         f"one per parameter ({params.shape[0]})")
    plan.n_threads = usable_threads(plan.n_threads)
    cdef Py_ssize_t n = order.shape[0]
    cdef Workspace ws = Workspace(sizes, acts, rows_needed(&plan, min(plan.batch_size, n)),
                                  sizeof(floating),
                                  plan.path in (PATH_SAMPLES, PATH_BLOCKS, PATH_BATCH_BLOCKS))
    cdef Epoch e
    cdef int blas_previous
    if dropout is not None:
        ws.lay.dropout = &dropout[0]
        ws.lay.dropout_seed = dropout_seed
    ws.lay.max_norm = max_norm
    e.lay = &ws.lay
    e.plan = plan
    e.loss = loss
    e.X = &X[0, 0] if X.shape[0] > 0 else NULL
    e.Y = &Y[0, 0] if Y.shape[0] > 0 else NULL
    e.sample_weight = &sample_weight[0] if sample_weight is not None and n > 0 else NULL
    e.order = &order[0] if n > 0 else NULL
    e.n = n
    e.state = &state[0, 0]
    e.scratch = &ws.s
    e.steps = steps
    e.loss_sum = 0
    e.n_correct = 0
    e.params_normal = False
    with nogil:
        blas_previous = blas_single_thread() if plan.path == PATH_BLOCKS else 0
        epoch_by_rule(&e, &params[0], &hyper)
        blas_restore_threads(blas_previous)
    return e.loss_sum, e.n_correct, e.steps
