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


cdef extern from "Python.h":
    # PyObject_GetBuffer as it is (cpython.buffer's raises): -1 with an exception set
    int get_buffer_or_error "PyObject_GetBuffer"(object obj, Py_buffer* view, int flags)


cdef inline bint format_is(const char* fmt, char code) noexcept nogil:
    """Whether a buffer's format is the one native type ``code``, as NumPy writes it."""
    return fmt != NULL and fmt[0] == code and fmt[1] == 0


cdef bint all_finite(const floating* x, Py_ssize_t n) noexcept nogil:
    # x * 0 is 0 for a finite x and NaN for NaN or infinity
    cdef floating acc = 0
    cdef Py_ssize_t i
    for i in range(n):
        acc += x[i] * 0
    return acc == 0


cdef class FewRows:
    """``forward`` and ``predict`` of one network on up to ``max_rows`` rows, checked in C.

    A service calls forward or predict on one row at a time, where Python-level
    conversions and checks cost more than the network itself.  Here the common case is
    recognised and checked without them: an ndarray of the network's dtype, in C order,
    of shape (n_in,) or (rows, n_in), finite.  The result is the general path's, bit for
    bit (one chunk of ``forward``).  Anything else, and a result that is not finite,
    gives None: the caller then takes the general path, which converts, checks, and
    raises the error that explains.  The parameters are the network's own array, held
    (it cannot be resized or freed while this object exists) and read at each call."""
    cdef Layout lay
    cdef Plan whole
    cdef Py_buffer params
    cdef bint holding
    cdef bint is_double
    cdef Py_ssize_t n_in, n_out
    cdef object ndarray, empty, dtype, label_dtype

    def __cinit__(self, const Py_ssize_t[::1] sizes, const int[::1] acts, params,
                  Plan plan, numpy):
        if layout_init(&self.lay, sizes, acts) != 0:
            raise MemoryError("cyprop: cannot allocate the layer layout")
        PyObject_GetBuffer(params, &self.params, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
        self.holding = True
        self.is_double = format_is(self.params.format, c'd')
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
        self.empty = numpy.empty
        self.dtype = numpy.float64 if self.is_double else numpy.float32
        # what the general path's labels are: argmax's, or a 0.5 threshold's
        self.label_dtype = numpy.intp if self.n_out > 1 else numpy.int64
        if numpy.dtype(self.label_dtype).itemsize != sizeof(long long):
            raise ValueError("cyprop: FewRows needs 64-bit labels")

    def __dealloc__(self):
        layout_free(&self.lay)
        if self.holding:
            PyBuffer_Release(&self.params)

    @property
    def max_rows(self):
        """The most rows one call takes (forward's chunk: one chunk, one result)."""
        return self.whole.block_rows if self.whole.path == PATH_BLOCKS else 1

    cdef object outputs(self, X):
        """forward(X) as (out, single), or None where the general path must run."""
        cdef Py_buffer x
        if type(X) is not self.ndarray:
            return None
        if get_buffer_or_error(X, &x, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
            PyErr_Clear()   # not C order (a view): converted by the general path
            return None
        cdef Py_ssize_t rows = -1
        try:
            if format_is(x.format, c'd' if self.is_double else c'f'):
                if x.ndim == 1 and x.shape[0] == self.n_in:
                    rows = 0
                elif x.ndim == 2 and x.shape[1] == self.n_in and 1 <= x.shape[0] <= self.max_rows:
                    rows = x.shape[0]
            if rows < 0:
                return None
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
    forward_chunk(lay, whole, blas_ready(), params, X, rows, a, a + rows * lay.n_units,
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
