# Inference: forward of a chunk of rows (what forward() runs on each of its threads),
# and FewRows, which serves forward and predict of a few rows without Python's
# conversions: the common case is recognised and checked here, in C; anything else
# goes back to Python's general path, which converts, checks and explains.

cdef void forward_chunk(const Layout* lay, const Plan* whole, bint batched,
                        const floating* params,
                        const floating* X, Py_ssize_t rows,  # IN: (rows, n_in)
                        floating* a,      # scratch: every layer's activations of the rows
                        floating* z,      # scratch: their output pre-activations
                        floating* out, Py_ssize_t out_width,  # OUT: (rows, out_width)
                        int first) noexcept nogil:
    """Feed ``rows`` rows forward in whole layers (a matrix product per layer when
    batched, else one sample at a time), and write the activations of layers first ..
    the last, side by side, into out's rows."""
    cdef int l, previous
    cdef Py_ssize_t s, width
    if not batched:
        for s in range(rows):
            sample_forward(lay, params, X + s * lay.sizes[0], a, z, 0, 0)
            memcpy(out + s * out_width, a + lay.a_off[first],
                   (lay.n_units - lay.a_off[first]) * sizeof(floating))
        return
    previous = blas_single_thread()
    block_forward(lay, whole, params, X, <int>rows, a, z, 0, True)
    blas_restore_threads(previous)
    # layer l's activations: a (rows, n_l) block at rows * a_off[l]
    for l in range(first, lay.n_layers):
        width = lay.sizes[l + 1]
        for s in range(rows):
            memcpy(out + s * out_width + lay.a_off[l] - lay.a_off[first],
                   a + rows * lay.a_off[l] + s * width, width * sizeof(floating))


cdef extern from "cyprop_clock.h":
    double cyprop_seconds() nogil


cdef extern from "Python.h":
    # PyObject_GetBuffer as it is (cpython.buffer's raises): -1 with an exception set
    int get_buffer_or_error "PyObject_GetBuffer"(object obj, Py_buffer* view, int flags)


cdef inline bint format_is(const char* fmt, char code) noexcept nogil:
    """Whether a buffer's format is the one native type ``code``, as NumPy writes it."""
    return fmt != NULL and fmt[0] == code and fmt[1] == 0


cdef bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    """Whether x[0 .. n-1] are all finite: x * 0 is 0 for a finite x, NaN for NaN or
    infinity (in N_ACC running sums, which vectorise, as in dot).  The zero is typed:
    Cython writes a literal 0 here as a double, and float * double is a conversion."""
    cdef floating s[N_ACC]
    cdef Py_ssize_t i = 0, k
    cdef floating t = 0, zero = 0
    for k in range(N_ACC):
        s[k] = 0
    while i + N_ACC <= n:
        for k in range(N_ACC):
            s[k] += x[i + k] * zero
        i += N_ACC
    for k in range(N_ACC):
        t += s[k]
    while i < n:
        t += x[i] * zero
        i += 1
    return t == 0


def finite(const floating[::1] x):
    """Whether every element of ``x`` is finite: ``_validation.all_finite`` on a
    contiguous float array, one vectorised pass without the GIL (NumPy's float64 sum,
    pairwise, runs at half the memory's speed)."""
    cdef bint ok = True
    if x.shape[0]:
        with nogil:
            ok = all_finite(&x[0], x.shape[0])
    return ok


cdef extern from "cyprop_checks.h":
    int cyprop_largest_and_change_d(const double* now, const double* before, Py_ssize_t n,
                                    double* largest, double* change) nogil
    int cyprop_largest_and_change_f(const float* now, const float* before, Py_ssize_t n,
                                    double* largest, double* change) nogil


cdef inline bint largest_and_change(const floating* now, const floating* before,
                                    Py_ssize_t n, double* largest,
                                    double* change) noexcept nogil:
    """Whether now[0 .. n-1] are all finite, and their largest magnitude and change
    from ``before``, in one pass (cyprop_checks.h)."""
    if floating is double:
        return cyprop_largest_and_change_d(now, before, n, largest, change) != 0
    else:
        return cyprop_largest_and_change_f(now, before, n, largest, change) != 0


def step_check(const floating[::1] now, const floating[::1] before):
    """largest_and_change(now, before) as (all finite, largest magnitude, largest
    change), as the one-sample step checks its result (for the tests)."""
    cdef double largest = 0, change = 0
    cdef bint finite
    if now.shape[0] != before.shape[0]:
        raise ValueError("cyprop: step_check needs two vectors of one length")
    finite = largest_and_change(&now[0] if now.shape[0] else NULL,
                                &before[0] if before.shape[0] else NULL, now.shape[0],
                                &largest, &change)
    return finite, largest, change


#: cyprop.optimizers.MAX_STEPS: the most steps an optimizer counts
cdef long long MAX_STEPS = (1LL << 62) - 1


cdef inline bint overlaps(const Py_buffer* a, const Py_buffer* b) noexcept nogil:
    """Whether two C-contiguous buffers share memory (their byte ranges meet)."""
    cdef const char* p = <const char*>a.buf
    cdef const char* q = <const char*>b.buf
    return p < q + b.len and q < p + a.len


cdef inline bint is_number(value):
    return type(value) is float or type(value) is int or type(value) is bool or value is None


cdef class FewRows:
    """``forward`` and ``predict`` of one network on up to ``max_rows`` rows, and
    ``partial_fit`` of one sample (train_one), checked in C.

    A service calls forward or predict on one row at a time, an online learner
    partial_fit on one sample, where Python-level conversions and checks cost more than
    the network itself.  Here the common case is recognised and checked without them:
    an ndarray of the network's dtype, in C order, of shape (n_in,) or (rows, n_in),
    finite.  The result is the general path's, bit for bit (one chunk of ``forward``;
    the online step of ``train_epoch``).  Anything else, and a result that is not
    finite, gives None: the caller then takes the general path, which converts, checks,
    and raises the error that explains.  The parameters are the network's own array,
    held (it cannot be resized or freed while this object exists) and read at each
    call."""
    cdef Layout lay
    cdef Plan whole
    cdef Py_buffer params
    cdef bint holding
    cdef bint is_double
    cdef char code               # the parameters' buffer format: 'd' or 'f'
    cdef Py_ssize_t n_in, n_out
    cdef object ndarray, empty, dtype, label_dtype, int64
    cdef object history_type          # cyprop.history.History, whose record is known
    # partial_fit of one row (train_one): what prepare() was last given
    cdef Plan plan
    cdef Hyper hyper
    cdef int loss
    cdef Py_ssize_t n_slots
    cdef double max_norm
    cdef void* scratch            # train_row's, for the prepared setting (held: one call
                                  # at a time runs, under the network's training lock)
    cdef public object prepared_for   # the caller's key of that setting; None: none yet
    cdef bint ready                   # prepared for it (False: refused, or none yet)
    # the setting's objects when last seen (watch), to see it unchanged without building it
    cdef object watched_optimizer, watched_max_norm
    cdef tuple watched                # the optimizer's attributes; None: build each time
    cdef Py_ssize_t n_attributes      # how many it had, private ones included

    def __cinit__(self, const Py_ssize_t[::1] sizes, const int[::1] acts, params,
                  Plan plan, numpy, history_type):
        if layout_init(&self.lay, sizes, acts) != 0:
            raise MemoryError("cyprop: cannot allocate the layer layout")
        PyObject_GetBuffer(params, &self.params,
                           PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE)
        self.holding = True
        self.is_double = format_is(self.params.format, c'd')
        self.code = c'd' if self.is_double else c'f'
        if not (self.is_double or format_is(self.params.format, c'f')) or \
                self.params.len != self.lay.n_params * self.params.itemsize:
            raise ValueError("cyprop: FewRows needs the network's flat float32 or "
                             "float64 parameters")
        check_blocks(&plan)
        self.whole = plan
        self.whole.n_threads = 0   # one chunk, in whole layers (as forward runs each)
        self.n_in = self.lay.sizes[0]
        self.n_out = self.lay.sizes[self.lay.n_layers]
        self.ndarray = numpy.ndarray
        self.history_type = history_type
        self.int64 = numpy.int64
        self.empty = numpy.empty
        self.dtype = numpy.float64 if self.is_double else numpy.float32
        # what the general path's labels are: argmax's, or a 0.5 threshold's
        self.label_dtype = numpy.intp if self.n_out > 1 else numpy.int64
        if numpy.dtype(self.label_dtype).itemsize != sizeof(long long):
            raise ValueError("cyprop: FewRows needs 64-bit labels")

    def __dealloc__(self):
        layout_free(&self.lay)
        free(self.scratch)
        if self.holding:
            PyBuffer_Release(&self.params)

    @property
    def max_rows(self):
        """The most rows one call takes (forward's chunk: one chunk, one result)."""
        return self.whole.block_rows if self.whole.path == PATH_BLOCKS else 1

    cdef Py_ssize_t take(self, obj, Py_buffer* view, int flags, char code,
                         Py_ssize_t width, Py_ssize_t max_rows):
        """Rows of ``obj`` if it is an ndarray of ``code`` items in C order, (width,)
        (0: one row, 1-D) or (rows, width) with 1 <= rows <= max_rows, aligned to its
        items (the general path copies a misaligned array: NumPy's format of one, "=d",
        would refuse it here too, but that is NumPy's detail), its buffer then held in
        ``view``; else -1, nothing held."""
        if type(obj) is not self.ndarray:
            return -1
        if get_buffer_or_error(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
            PyErr_Clear()   # not C order (a view), read-only: for the general path
            return -1
        if format_is(view.format, code) and <size_t>view.buf % <size_t>view.itemsize == 0:
            if view.ndim == 1 and view.shape[0] == width:
                return 0
            if view.ndim == 2 and view.shape[1] == width and 1 <= view.shape[0] <= max_rows:
                return view.shape[0]
        PyBuffer_Release(view)
        return -1

    cdef object outputs(self, X):
        """forward(X) as (out, single), or None where the general path must run."""
        cdef Py_buffer x
        cdef Py_ssize_t rows = self.take(X, &x, 0, self.code, self.n_in, self.max_rows)
        if rows < 0:
            return None
        try:
            if rows:
                out = self.empty((rows, self.n_out), self.dtype)
            else:
                out = self.empty(self.n_out, self.dtype)
            if not self.run(&x, out, rows if rows else 1):
                return None
            return out, rows == 0
        finally:
            PyBuffer_Release(&x)

    cdef bint run(self, Py_buffer* x, out, Py_ssize_t rows) except -1:
        """Feed x's rows forward into out; False if an input or output is not finite."""
        cdef Py_buffer o
        PyObject_GetBuffer(out, &o, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
        try:
            if self.is_double:
                return run_rows(&self.lay, &self.whole, <const double*>self.params.buf,
                                <const double*>x.buf, rows, <double*>o.buf) == 0
            return run_rows(&self.lay, &self.whole, <const float*>self.params.buf,
                            <const float*>x.buf, rows, <float*>o.buf) == 0
        finally:
            PyBuffer_Release(&o)

    def forward(self, X):
        """The output activations of X's rows (1-D X: of one sample), or None."""
        result = self.outputs(X)
        return None if result is None else result[0]

    def predict(self, X):
        """The class labels of X's rows (1-D X: of one sample), or None."""
        result = self.outputs(X)
        if result is None:
            return None
        out, single = result
        cdef Py_ssize_t rows = 1 if single else out.shape[0]
        labels = self.empty(rows, self.label_dtype)
        cdef Py_buffer o, lab
        PyObject_GetBuffer(out, &o, PyBUF_C_CONTIGUOUS)
        try:
            PyObject_GetBuffer(labels, &lab, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
            if self.is_double:
                labels_of(<const double*>o.buf, rows, self.n_out, <long long*>lab.buf)
            else:
                labels_of(<const float*>o.buf, rows, self.n_out, <long long*>lab.buf)
            PyBuffer_Release(&lab)
        finally:
            PyBuffer_Release(&o)
        return labels[0] if single else labels


    # ------------------------------------------------ partial_fit of one sample
    def prepare(self, key, int loss, Plan plan, Hyper hyper, Py_ssize_t n_slots,
                double max_norm):
        """Set what train_one runs: the caller checked the optimizer and planned batch
        size 1 (cyprop/_compiled.py: plan); ``key`` is its name for this setting."""
        check_training_plan(&plan, &hyper, self.lay.n_layers, max_norm, n_slots)
        if plan.path not in (PATH_ONLINE, PATH_ONLINE_NEXT):
            raise ValueError(f"cyprop: train_one runs the online paths, not {PATHS[plan.path]!r}")
        cdef void* scratch = realloc(self.scratch, train_row_scratch(&self.lay, plan.rule, n_slots)
                                     * self.params.itemsize)
        if scratch == NULL:
            raise MemoryError("cyprop: cannot allocate a one-sample step's scratch")
        self.scratch = scratch
        self.plan, self.hyper, self.loss = plan, hyper, loss
        self.n_slots, self.max_norm = n_slots, max_norm
        self.prepared_for, self.ready = key, True

    def refuse(self, key):
        """Send every one-sample call of the setting ``key`` to the general path (an
        optimizer whose steps the core does not take)."""
        self.prepared_for, self.ready = key, False

    def step(self, net, X, Y, prepare):
        """``net.partial_fit(X, Y)`` of one sample with the network's optimizer: True if
        it ran here, False where the general path must run (anything but the common
        case, or a problem, which that path then explains).  The glue around train_one
        (the locks, the setting, the history's records) is cyprop/_loop.py's to define;
        it is written here because in Python it cost as much as a small network's step.
        ``prepare(net, rows, optimizer, setting)`` is called for a setting not seen last
        time, and prepares or refuses it."""
        optimizer = net.optimizer
        if optimizer is None or any(net._dropout):
            return False
        lock = net._lock
        if not lock.acquire(False):
            return False   # training elsewhere: the general path says so
        try:
            # (with the lock: the setting is what a running train_one reads)
            if not self.unchanged(optimizer, net._max_norm):
                try:
                    # told apart by repr, as Optimizer.check tells them apart: True ==
                    # 1.0, so a momentum set to True after 1.0 was the setting prepared
                    setting = (optimizer, repr((optimizer.get_config(),
                                                optimizer.initial_learning_rate,
                                                net._max_norm)))
                except Exception:
                    # not one of cyprop's optimizers (set by hand: a string, one without
                    # get_config): the general path checks it and says so
                    return False
                if self.prepared_for != setting:   # checked once per setting, not per call
                    prepare(net, self, optimizer, setting)
                self.watch(optimizer, net._max_norm)
            if not self.ready:
                return False
            # A History's own record, called by position: a subclass (whose record may
            # take the records by name), a record set on the instance, or anything else
            # set by hand goes to the general path, which records by name or explains,
            # before any step.
            history = net.history
            if type(history) is not self.history_type or "record" in history.__dict__:
                return False
            # (the optimizer's claim, as _loop.run holds it: another network training
            # with it now would step its state too; the general path says so)
            claim = getattr(optimizer, "_claim", None)
            if claim is None or not claim.acquire(False):
                return False
            try:
                state_lock = net._state_lock
                state_lock.acquire()
                try:
                    steps = optimizer._steps
                    if type(steps) is not int or not 0 <= steps <= MAX_STEPS:
                        return False   # set by hand past its setter: the general path names it
                    result = self.train_one(X, Y, optimizer._state, steps)
                    if result is None:
                        return False
                    loss, accuracy, optimizer._steps, largest, seconds = result
                finally:
                    state_lock.release()
            finally:
                claim.release()
            net.stop_training = False
            try:
                history.record(loss, accuracy, None, None, optimizer.learning_rate, seconds,
                               1 / seconds if seconds > 0 else INFINITY, largest)
            except KeyboardInterrupt:
                # Ctrl-C during the step is handled here, its first Python code: the
                # step stays whole, and the history says so, as _loop.run's does
                history.stop_reason = "interrupted"
                raise
            # (set only where it changes: History checks what is set in Python's code)
            if history.stop_reason is not "epochs":
                history.stop_reason = "epochs"
        finally:
            lock.release()
        return True

    cdef void watch(self, optimizer, max_norm):
        """Remember the setting's objects: the optimizer, the max-norm, and the
        optimizer's public attributes (its hyper-parameters) where they are numbers or
        tuples of numbers (a list could change in place: then the setting is built at
        each call)."""
        self.watched_optimizer, self.watched_max_norm = optimizer, max_norm
        attributes = vars(optimizer)
        public = tuple((name, value) for name, value in attributes.items()
                       if not name.startswith("_"))
        numbers = all(is_number(value) or (type(value) is tuple and all(
            is_number(item) for item in value)) for _, value in public)
        self.watched = public if numbers else None
        self.n_attributes = len(attributes)

    cdef bint unchanged(self, optimizer, max_norm):
        """Whether the setting is the one last seen, without building it: the same
        objects (a hyper-parameter set again, even to its value, is a new object: the
        setting is then built and compared)."""
        if (self.watched is None or optimizer is not self.watched_optimizer
                or max_norm is not self.watched_max_norm):
            return False
        cdef dict attributes = optimizer.__dict__
        if len(attributes) != self.n_attributes:   # one added or removed
            return False
        for name, value in self.watched:
            if attributes.get(name) is not value:
                return False
        return True

    cpdef object train_one(self, X, Y, state, long long steps):
        """``partial_fit`` of one sample with the prepared setting, stepping the
        parameters and ``state`` in place: (loss, accuracy: 1.0 if classified right else
        0.0, steps taken in all, largest change of a parameter, seconds it took).  None
        where the general path must run: anything but the common case (X and Y as
        forward takes them, one row, Y targets of the dtype or an int64 class label; the
        state as the optimizer keeps it), data or parameters that are not finite, a step
        that diverged (undone here, so that the general path takes it again and
        explains)."""
        cdef Py_buffer x, y, st
        cdef Py_ssize_t rows, y_rows = -1
        cdef long long label = -1
        cdef int done
        cdef double loss, update, began
        cdef Py_ssize_t right
        if not self.ready:
            return None
        rows = self.take(X, &x, 0, self.code, self.n_in, 1)
        if rows < 0:
            return None
        try:
            # (a row that is a view of the parameters, net.weights[0][0], would change
            # under the step that reads it: the general path trains on a copy)
            if overlaps(&x, &self.params):
                return None
            label = self.label(Y, rows == 0)
            if label < 0:
                y_rows = self.take(Y, &y, 0, self.code, self.n_out, 1)
                if y_rows < 0:
                    return None
                if y_rows != rows:
                    PyBuffer_Release(&y)
                    return None
            if self.take_state(state, &st) < 0:
                if y_rows >= 0:
                    PyBuffer_Release(&y)
                return None
            with nogil:
                began = cyprop_seconds()
                if self.is_double:
                    done = train_row(&self.lay, &self.plan, &self.hyper, self.loss,
                                     self.max_norm, self.n_slots, <double*>self.scratch,
                                     <double*>self.params.buf,
                                     <double*>st.buf, <const double*>x.buf,
                                     <const double*>y.buf if y_rows >= 0 else NULL, label,
                                     &steps, &loss, &right, &update)
                else:
                    done = train_row(&self.lay, &self.plan, &self.hyper, self.loss,
                                     self.max_norm, self.n_slots, <float*>self.scratch,
                                     <float*>self.params.buf,
                                     <float*>st.buf, <const float*>x.buf,
                                     <const float*>y.buf if y_rows >= 0 else NULL, label,
                                     &steps, &loss, &right, &update)
                began = cyprop_seconds() - began
            PyBuffer_Release(&st)
            if y_rows >= 0:
                PyBuffer_Release(&y)
            return (loss, 1.0 if right else 0.0, steps, update, began) if done == 0 else None
        finally:
            PyBuffer_Release(&x)

    cdef long long label(self, Y, bint single):
        """Y as one class label of a network with several outputs (an int64 array of
        shape (1,); for a 1-D X also an int or int64 number, or an array of shape ()),
        in range; else -1."""
        cdef Py_buffer view
        cdef long long value = -1
        if self.n_out < 2:
            return -1
        if single and (type(Y) is int or type(Y) is self.int64):   # a number
            return Y if 0 <= Y < self.n_out else -1
        if type(Y) is not self.ndarray:
            return -1
        if get_buffer_or_error(Y, &view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
            PyErr_Clear()
            return -1
        if (view.itemsize == sizeof(long long)
                and (format_is(view.format, c'l') or format_is(view.format, c'q'))
                and ((view.ndim == 1 and view.shape[0] == 1) or (view.ndim == 0 and single))):
            value = (<long long*>view.buf)[0]
        PyBuffer_Release(&view)
        return value if 0 <= value < self.n_out else -1

    cdef int take_state(self, state, Py_buffer* view):
        """0 with ``state``'s buffer held if it is the optimizer's state as the kernels
        step it in place: (n_slots, n_params) of the dtype, C order, aligned, writable;
        else -1 (None before a first step: the general path creates it)."""
        if type(state) is not self.ndarray:
            return -1
        if get_buffer_or_error(state, view,
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_WRITABLE) != 0:
            PyErr_Clear()
            return -1
        if (format_is(view.format, self.code) and view.ndim == 2
                and view.shape[0] == self.n_slots and view.shape[1] == self.lay.n_params
                and <size_t>view.buf % <size_t>view.itemsize == 0):
            return 0
        PyBuffer_Release(view)
        return -1


cdef inline Py_ssize_t kept_state_rows(int rule, Py_ssize_t n_slots) noexcept nogil:
    """The rows of optimizer state a one-sample step keeps to undo: those the rule
    steps (plain SGD's: none)."""
    return 0 if rule == RULE_SGD else n_slots


cdef Py_ssize_t train_row_scratch(const Layout* lay, int rule, Py_ssize_t n_slots) noexcept nogil:
    """The elements of train_row's scratch: a copy of the parameters and of the kept
    state rows, then the step's activations and deltas."""
    return ((1 + kept_state_rows(rule, n_slots)) * lay.n_params + 2 * lay.n_units + 2 * lay.sizes[lay.n_layers]
            + 2 * lay.sizes[0] + 64)


cdef int train_row(const Layout* layout, const Plan* plan, const Hyper* hyper, int loss,
                   double max_norm, Py_ssize_t n_slots,
                   floating* kept,                        # scratch (train_row_scratch)
                   floating* params, floating* state,     # IN/OUT
                   const floating* x, const floating* y,  # y NULL: the class ``label``
                   long long label,
                   long long* steps,                      # IN/OUT
                   double* loss_out, Py_ssize_t* right, double* largest_update
                   ) noexcept nogil:
    """One sample's online step, as train_epoch's driver takes it, with the general
    path's checks around it (Network._check_data before, Network._divergence after):
    0, or -1 with the parameters and state as they were."""
    cdef Py_ssize_t i, P = layout.n_params, n_in = layout.sizes[0]
    cdef Py_ssize_t n_out = layout.sizes[layout.n_layers], n_units = layout.n_units
    cdef double limit = sqrt(DBL_MAX) if floating is double else sqrtf(FLT_MAX)
    cdef double largest = 0, update = 0
    cdef bint fine
    # (parameters that are not finite before the step are not after it: the general
    # path then explains)
    if not all_finite(x, n_in):
        return -1
    if y != NULL:
        if not all_finite(y, n_out):
            return -1
        if loss == CROSS_ENTROPY:
            for i in range(n_out):
                if y[i] < 0 or y[i] > 1:
                    return -1
    # the parameters and the state the rule steps before the step, then its scratch
    cdef Py_ssize_t kept_rows = kept_state_rows(plan.rule, n_slots)
    cdef bint params_normal = not copy_any_subnormal(kept, params, P)
    memcpy(kept + P, state, kept_rows * P * sizeof(floating))
    cdef floating* work = kept + (1 + kept_rows) * P
    cdef Scratch scratch
    scratch.inputs = NULL   # (the online paths read a row of X as it is)
    scratch.grad = NULL
    scratch.acts = work
    scratch.deltas = work + n_units
    scratch.z_out = work + 2 * n_units
    cdef floating* one_hot = work + 2 * n_units + n_out
    scratch.x_rows = one_hot + n_out   # two rows of inputs, + the slack to align them
    if y == NULL:
        memset(one_hot, 0, n_out * sizeof(floating))
        one_hot[label] = 1
        y = one_hot
    cdef Layout lay = layout[0]
    lay.max_norm = max_norm
    cdef Epoch e
    e.lay = &lay
    e.plan = plan[0]
    e.loss = loss
    e.X = x
    e.Y = y
    e.sample_weight = NULL
    e.order = NULL
    e.n = 1
    e.state = state
    e.scratch = &scratch
    e.steps = steps[0]
    e.loss_sum = 0
    e.n_correct = 0
    e.params_normal = params_normal
    epoch_by_rule(&e, params, hyper)
    # Network._divergence: a loss or a parameter not finite, one past sqrt(max) (its
    # products overflow), a state not finite; all_finite-style, NaN fails every <=
    fine = (largest_and_change(params, kept, P, &largest, &update) and largest <= limit
            and e.loss_sum - e.loss_sum == 0 and all_finite(state, kept_rows * P))
    if not fine:
        memcpy(params, kept, P * sizeof(floating))
        memcpy(state, kept + P, kept_rows * P * sizeof(floating))
        return -1
    # saturated at cyprop.optimizers.MAX_STEPS, which save, copy and load accept (from
    # there on the count changes no step: Adam's bias corrections are exactly 1)
    steps[0] = e.steps if e.steps < MAX_STEPS else MAX_STEPS
    loss_out[0] = e.loss_sum
    right[0] = e.n_correct
    largest_update[0] = update
    return 0


cdef int run_rows(const Layout* lay, const Plan* whole, const floating* params,
                  const floating* X, Py_ssize_t rows, floating* out) noexcept nogil:
    """FewRows's forward: 0, or -1 if an input or output is not finite (or scratch
    could not be allocated), where the general path must run."""
    if not all_finite(X, rows * lay.sizes[0]):
        return -1
    cdef floating* a = <floating*>malloc((lay.n_units + lay.sizes[lay.n_layers]) * rows
                                         * sizeof(floating))
    if a == NULL:
        return -1
    forward_chunk(lay, whole, products_ready(), params, X, rows, a, a + rows * lay.n_units,
                  out, lay.sizes[lay.n_layers], lay.n_layers - 1)
    free(a)
    return 0 if all_finite(out, rows * lay.sizes[lay.n_layers]) else -1


cdef void labels_of(const floating* out, Py_ssize_t rows, Py_ssize_t n_out,
                    long long* labels) noexcept nogil:
    """As cyprop/_maths.py's labels_of: argmax (the first), or a 0.5 threshold."""
    cdef Py_ssize_t s, j, best
    for s in range(rows):
        if n_out == 1:
            labels[s] = out[s] > 0.5
            continue
        best = 0
        for j in range(1, n_out):
            if out[s * n_out + j] > out[s * n_out + best]:
                best = j
        labels[s] = best
