# What every part of the core shares: the dtypes, the codes shared with Python, the
# network's layout in its flat buffer, the plan of a call and its scratch buffers.

ctypedef fused floating:
    float
    double

# Codes shared with cyprop/_maths.py (the test suite checks them).
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

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
LOSSES = ("mse", "cross_entropy")

# The paths a call can take (Plan.path), by the names cyprop/_compiled.py plans with.
cdef enum:
    PATH_ONLINE_NEXT = 0   # PATH_ONLINE, the first layer fused with the next forward pass
    PATH_ONLINE = 1        # batch size 1: each parameter stepped as its gradient is known
    PATH_SAMPLES = 2       # gradient sums one sample at a time, then one step per batch
    PATH_BLOCKS = 3        # gradient sums as matrix products (BLAS), then one step per batch
    PATH_ONLINE_BLOCKS = 4 # batch size 1, SGD (plain or momentum): the first layer over
                           # blocks of samples as matrix products, the same steps
                           # (_online_block.pxi)
    PATH_BATCH_BLOCKS = 5  # mini-batches of SGD (plain or momentum): the first layer over
                           # blocks of whole batches as matrix products, the same steps
                           # (_batch_block.pxi)

PATHS = ("online-next", "online", "samples", "blocks", "online-blocks", "batch-blocks")

# Independent accumulators in a dot product: gcc does not vectorise a floating-point
# sum without -ffast-math, but it does vectorise 16 separate running sums.
cdef enum:
    N_ACC = 16
    # A block's rows are scored (output activation, loss, output deltas) in this many
    # fixed parts, their losses added in order: the same sum on any number of threads.
    SCORE_PARTS = 4
    # gather_rows copies this many rows side by side
    GATHER_ROWS = 4


cdef struct Plan:
    # How one call runs, chosen in Python (cyprop/_compiled.py: plan()), whose table
    # holds the tuning constants and what each was measured for.
    int path                # PATH_*
    int rule                # RULE_* (csrc/_rules.pxi); -1 where nothing is stepped
    Py_ssize_t batch_size   # samples per optimizer step
    Py_ssize_t block_rows   # rows per matrix product (PATH_BLOCKS, PATH_*_BLOCKS)
    Py_ssize_t part_work    # multiply-adds of a layer's product per part, at least ...
    int max_parts           # ... in at most this many parts (see part_count)
    int n_threads           # threads for the parts; 0: whole layers, no parts


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
    # training only (NULL / 0 elsewhere):
    const double* dropout   # dropout rate of each weight layer's outputs
    unsigned long long dropout_seed
    double max_norm         # bound on the L2 norm of each unit's incoming weights


cdef int layout_init(Layout* lay, const Py_ssize_t[::1] sizes, const int[::1] acts) noexcept nogil:
    """Fill ``lay`` from the unit counts and activation codes; 0 on success."""
    cdef int L = <int>sizes.shape[0] - 1
    cdef int l
    lay.n_layers = L
    lay.dropout = NULL
    lay.dropout_seed = 0
    lay.max_norm = 0
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


cdef struct Scratch:
    # Buffers of one call, for blocks of up to `rows` rows (Workspace allocates them).
    void* inputs    # (rows, n_in): a block's inputs, gathered in training order
    void* acts      # (rows, n_units): every layer's activations
    void* deltas    # (rows, n_units)
    void* z_out     # (rows, n_out): output pre-activations
    void* grad      # (n_params,): a batch's gradient sums
    void* x_rows    # two input rows on 64-byte boundaries, + the slack to align them


cdef inline void* align64(void* p) noexcept nogil:
    """The first 64-byte boundary at or after p."""
    return <void*>((<size_t>p + 63) & ~(<size_t>63))


cdef void* calloc64(size_t n_bytes) noexcept nogil:
    """n_bytes of zeros from a 64-byte boundary (a vector load of an aligned row then
    stays within one cache line), or NULL; free64 frees it.  The block's pointer is
    kept just below the aligned start."""
    cdef char* block = <char*>calloc(n_bytes + 64 + sizeof(void*), 1)
    if block == NULL:
        return NULL
    cdef char* start = <char*>align64(block + sizeof(void*))
    (<void**>start - 1)[0] = block
    return start


cdef void free64(void* p) noexcept nogil:
    if p != NULL:
        free((<void**>p - 1)[0])


cdef struct Epoch:
    # One training call (or one evaluation, which steps nothing): what its drivers read,
    # and what they add up.  The arrays are of the parameters' dtype.
    const Layout* lay
    Plan plan
    int loss                    # loss code
    const void* X               # (rows, n_in), C order
    const void* Y               # (rows, n_out)
    const void* sample_weight   # (rows,); NULL: every sample weighs 1
    const Py_ssize_t* order     # the rows of this call in training order; NULL: 0, 1, ...
    Py_ssize_t n                # samples in this call
    void* state                 # IN/OUT: (n_slots, n_params) optimizer state
    bint params_normal          # no parameter is subnormal: the caller has seen it (one
                                # scan fewer: flush_reads_right); False: not known
    Scratch* scratch
    long long steps             # IN/OUT: optimizer steps taken
    double loss_sum             # IN/OUT: the (weighted) sample losses, added to
    Py_ssize_t n_correct        # IN/OUT: samples classified right, added to


cdef inline Py_ssize_t row_of(const Epoch* e, Py_ssize_t k) noexcept nogil:
    """The row of X and Y of the call's k-th sample."""
    return e.order[k] if e.order != NULL else k


cdef void gather_rows(const Epoch* e, Py_ssize_t k0, Py_ssize_t n_rows,
                      floating* xb  # OUT: (n_rows, n_in)
                      ) noexcept nogil:
    """The call's samples k0 .. k0+n_rows-1, their rows of X copied into xb, GATHER_ROWS
    rows side by side a cache line at a time: in a shuffled epoch they lie at random in
    X, and copied one after the other (memcpy) each row's first lines waited for memory
    alone, where side by side the rows' misses wait together."""
    cdef Py_ssize_t n_in = e.lay.sizes[0]
    cdef Py_ssize_t row_bytes = n_in * sizeof(floating)
    cdef const char* src[GATHER_ROWS]
    cdef char* dst[GATHER_ROWS]
    cdef Py_ssize_t k = 0, i, g, n
    while k < n_rows:
        n = min(<Py_ssize_t>GATHER_ROWS, n_rows - k)
        for g in range(n):
            src[g] = <const char*>(<const floating*>e.X + row_of(e, k0 + k + g) * n_in)
            dst[g] = <char*>(xb + (k + g) * n_in)
        i = 0
        while i + 64 <= row_bytes:
            for g in range(n):
                memcpy(dst[g] + i, src[g] + i, 64)
            i += 64
        for g in range(n):
            memcpy(dst[g] + i, src[g] + i, row_bytes - i)
        k += n
