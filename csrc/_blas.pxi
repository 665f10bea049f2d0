# Dispatch and BLAS: which instruction set this module was built for, scipy's gemm and
# its threads, and how many OpenMP threads a call may start.

cdef extern from "cyprop_cpu.h":
    const char* CYPROP_ISA
    int cyprop_cpu_runs(int level) nogil
    int cyprop_cpu_vendor() nogil
    unsigned int cyprop_flush_subnormals() nogil
    void cyprop_restore_subnormals(unsigned int previous) nogil
    int cyprop_any_subnormal_d(const double* x, Py_ssize_t n) nogil
    int cyprop_any_subnormal_f(const float* x, Py_ssize_t n) nogil
    int cyprop_copy_any_subnormal_d(double* dst, const double* x, Py_ssize_t n) nogil
    int cyprop_copy_any_subnormal_f(float* dst, const float* x, Py_ssize_t n) nogil

cdef extern from "cyprop_threads.h":
    int cyprop_max_threads() nogil
    int cyprop_in_forked_child() nogil
    void cyprop_watch_forks()
    void* cyprop_symbol_beside(void* addr, const char* name)

cyprop_watch_forks()

INSTRUCTION_SET = CYPROP_ISA.decode()
_LEVELS = {"baseline": 0, "avx2": 1, "avx512": 2}


def cpu_runs(instruction_set):
    """Whether this CPU can run kernels built for ``instruction_set``."""
    return bool(cyprop_cpu_runs(_LEVELS[instruction_set]))


def cpu_vendor():
    """The CPU's maker: 'amd', 'intel' or 'other' (x86-64 with GCC or Clang only)."""
    return ("other", "amd", "intel")[cyprop_cpu_vendor()]


# A block of rows is a matrix, so its forward and backward passes are matrix products;
# with a BLAS (scipy's, handed over as PyCapsules by cyprop/_compiled.py) they run
# blocked and vectorised, and only the element-wise work is ours.  BLAS is
# column-major: a row-major (r, c) block is its (c, r) transpose.
#
# The products run on the calling thread alone: OpenBLAS's own threads change the
# rounding with the thread count (results must not), and oversubscribe a busy machine.
# OpenBLAS (0.3.27+) can be told so; the setting is the process's, so calls that
# overlap share one hold on it (cyprop_threads.h).
ctypedef void (*dgemm_t)(char*, char*, int*, int*, int*, double*, double*, int*,
                         double*, int*, double*, double*, int*) noexcept nogil
ctypedef void (*sgemm_t)(char*, char*, int*, int*, int*, float*, float*, int*,
                         float*, int*, float*, float*, int*) noexcept nogil
ctypedef int (*set_threads_t)(int) noexcept nogil

cdef extern from "cyprop_threads.h":
    void cyprop_blas_hold_one_thread(set_threads_t set_threads) nogil
    void cyprop_blas_release(set_threads_t set_threads) nogil
    void cyprop_blas_lock() nogil
    void cyprop_blas_unlock() nogil

cdef dgemm_t blas_dgemm = NULL
cdef sgemm_t blas_sgemm = NULL
cdef set_threads_t blas_set_threads_local = NULL


def set_blas(dgemm, sgemm):
    """Use these gemm routines (PyCapsules of scipy.linalg.cython_blas) for blocks of
    rows; ``set_blas(None, None)`` goes back to one sample at a time."""
    global blas_dgemm, blas_sgemm, blas_set_threads_local
    if dgemm is None or sgemm is None:
        blas_dgemm, blas_sgemm, blas_set_threads_local = NULL, NULL, NULL
        return
    blas_dgemm = <dgemm_t>PyCapsule_GetPointer(dgemm, PyCapsule_GetName(dgemm))
    blas_sgemm = <sgemm_t>PyCapsule_GetPointer(sgemm, PyCapsule_GetName(sgemm))
    blas_set_threads_local = <set_threads_t>cyprop_symbol_beside(
        <void*>blas_dgemm, "openblas_set_num_threads_local")


cdef inline bint blas_ready() noexcept nogil:
    return blas_dgemm != NULL and blas_sgemm != NULL


def has_blas():
    return blas_ready()


def hold_blas_setting(bint hold):
    """Take (True) or let go (False) the mutex around the BLAS thread setting, as a
    batched call on another thread holds it (for the tests: a fork while it is held)."""
    if hold:
        cyprop_blas_lock()
    else:
        cyprop_blas_unlock()


def blas_threads_controlled():
    """Whether the BLAS lets each call be kept to one thread (OpenBLAS 0.3.27+)."""
    return blas_set_threads_local != NULL


cdef inline int blas_single_thread() noexcept nogil:
    """Make BLAS calls single-threaded until blas_restore_threads is given what this
    returns (1 if it holds the setting, 0 without a setter)."""
    if blas_set_threads_local != NULL:
        cyprop_blas_hold_one_thread(blas_set_threads_local)
        return 1
    return 0


cdef inline void blas_restore_threads(int previous) noexcept nogil:
    if previous > 0:
        cyprop_blas_release(blas_set_threads_local)


cdef inline void gemm(char transa, char transb, int m, int n, int k, floating alpha,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Column-major c = alpha * op(a) @ op(b) + beta * c."""
    if floating is double:
        blas_dgemm(&transa, &transb, &m, &n, &k, &alpha, <double*>a, &lda, <double*>b, &ldb,
                   &beta, c, &ldc)
    else:
        blas_sgemm(&transa, &transb, &m, &n, &k, &alpha, <float*>a, &lda, <float*>b, &ldb,
                   &beta, c, &ldc)


# On the AVX-512 build the blocks paths' products are cyprop_products.h's kernels: no
# packing, tiles in registers (the header says why and how); elsewhere the BLAS's.
# They run where they beat the BLAS (measured on W1-W3's shapes, one core): in
# sum_outer, sums of OWN_MIN_TERMS terms or more (shorter, and reading and writing each
# output costs more than its sum: the BLAS's small-matrix kernels do better); in
# rows_dot_rows, blocks of as many rows, with dot products of OWN_MIN_DEPTH terms or
# more (shorter, and reducing each sum across its lanes costs more than the sum).  A
# choice by shape, never by timing.
cdef enum:
    OWN_MIN_TERMS = 24
    OWN_MIN_DEPTH = 256
cdef extern from "cyprop_products.h":
    bint CYPROP_OWN_PRODUCTS
    void cyprop_rows_dot_rows_f(int rows, int units, int k, const float* x, int ldx,
                                const float* w, int ldw, float* z, int ldz) nogil
    void cyprop_rows_dot_rows_d(int rows, int units, int k, const double* x, int ldx,
                                const double* w, int ldw, double* z, int ldz) nogil
    void cyprop_sum_outer_f(int n_sums, int n_out, int k, const float* a, Py_ssize_t a_s,
                            Py_ssize_t a_o, const float* b, int ldb, float* c, int ldc,
                            float alpha, float beta) nogil
    void cyprop_sum_outer_d(int n_sums, int n_out, int k, const double* a, Py_ssize_t a_s,
                            Py_ssize_t a_o, const double* b, int ldb, double* c, int ldc,
                            double alpha, double beta) nogil


cdef inline bint products_ready() noexcept nogil:
    """Whether the paths of blocks can run: the BLAS, or (AVX-512 build) our own
    products, which then take every shape, where the BLAS would have taken the small."""
    return blas_ready() or CYPROP_OWN_PRODUCTS


def has_products():
    return products_ready()


cdef inline void rows_dot_rows(int rows, int units, int k,
                               const floating* x, int ldx,  # IN: (rows, k)
                               const floating* w, int ldw,  # IN: (units, k)
                               bint add,
                               floating* z, int ldz         # IN/OUT: (rows, units)
                               ) noexcept nogil:
    """z = x @ w.T, or (add) z += x @ w.T"""
    cdef int r
    if CYPROP_OWN_PRODUCTS and ((rows >= OWN_MIN_TERMS and k >= OWN_MIN_DEPTH)
                                or not blas_ready()):
        if not add:
            for r in range(rows):
                memset(z + <Py_ssize_t>r * ldz, 0, units * sizeof(floating))
        if floating is double:
            cyprop_rows_dot_rows_d(rows, units, k, x, ldx, w, ldw, z, ldz)
        else:
            cyprop_rows_dot_rows_f(rows, units, k, x, ldx, w, ldw, z, ldz)
    else:
        gemm(c'T', c'N', units, rows, k, 1, w, ldw, x, ldx, 1 if add else 0, z, ldz)


cdef inline void rows_t_times(int rows, int n_out, int k,
                              const floating* d, int ldd,  # IN: (rows, n_out)
                              const floating* x, int ldx,  # IN: (rows, k)
                              floating alpha, floating beta,
                              floating* c, int ldc         # IN/OUT: (n_out, k)
                              ) noexcept nogil:
    """c = beta * c + alpha * d.T @ x (beta 0: c is not read)"""
    if CYPROP_OWN_PRODUCTS and (rows >= OWN_MIN_TERMS or not blas_ready()):
        if floating is double:
            cyprop_sum_outer_d(rows, n_out, k, d, ldd, 1, x, ldx, c, ldc, alpha, beta)
        else:
            cyprop_sum_outer_f(rows, n_out, k, d, ldd, 1, x, ldx, c, ldc, alpha, beta)
    else:
        gemm(c'N', c'T', k, n_out, rows, alpha, x, ldx, d, ldd, beta, c, ldc)


cdef inline void rows_times(int rows, int inner, int k,
                            const floating* d, int ldd,  # IN: (rows, inner)
                            const floating* w, int ldw,  # IN: (inner, k)
                            floating* c, int ldc         # OUT: (rows, k)
                            ) noexcept nogil:
    """c = d @ w"""
    if CYPROP_OWN_PRODUCTS and (inner >= OWN_MIN_TERMS or not blas_ready()):
        if floating is double:
            cyprop_sum_outer_d(inner, rows, k, d, 1, ldd, w, ldw, c, ldc, 1, 0)
        else:
            cyprop_sum_outer_f(inner, rows, k, d, 1, ldd, w, ldw, c, ldc, 1, 0)
    else:
        gemm(c'N', c'N', k, rows, inner, 1, w, ldw, d, ldd, 0, c, ldc)


PRODUCTS = ("rows_dot_rows", "rows_t_times", "rows_times")


def py_product(str product, const floating[:, :] a, const floating[:, :] b,
               floating[:, :] c, double beta=0, double alpha=1):
    """One of the blocks paths' products, as the kernels run it (for the tests):
    ``rows_dot_rows`` c = a @ b.T (beta 0) or c += a @ b.T (beta 1),
    ``rows_t_times`` c = beta * c + alpha * a.T @ b, ``rows_times`` c = a @ b.  Rows may be
    strided (views of wider arrays)."""
    cdef int code = PRODUCTS.index(product)
    cdef int m = a.shape[0], n = a.shape[1], k = b.shape[1]
    if code == 0:
        ok = b.shape[1] == n and c.shape[0] == m and c.shape[1] == b.shape[0]
    elif code == 1:
        ok = b.shape[0] == m and c.shape[0] == n and c.shape[1] == k
    else:
        ok = b.shape[0] == n and c.shape[0] == m and c.shape[1] == k
    if not ok:
        shapes = ((a.shape[0], a.shape[1]), (b.shape[0], b.shape[1]), (c.shape[0], c.shape[1]))
        raise ValueError(f"py_product: shapes {shapes} do not fit {product}")
    if m == 0 or n == 0 or k == 0 or b.shape[0] == 0:
        raise ValueError("py_product: empty operands")
    if not (a.strides[1] == b.strides[1] == c.strides[1] == sizeof(floating)):
        raise ValueError("py_product: each row must be contiguous")
    cdef int lda = <int>(a.strides[0] // sizeof(floating))
    cdef int ldb = <int>(b.strides[0] // sizeof(floating))
    cdef int ldc = <int>(c.strides[0] // sizeof(floating))
    if not CYPROP_OWN_PRODUCTS and not blas_ready():
        raise ValueError("py_product: this kernel uses the BLAS, and none is set")
    with nogil:
        if code == 0:
            rows_dot_rows(m, <int>b.shape[0], n, &a[0, 0], lda, &b[0, 0], ldb, beta != 0,
                          &c[0, 0], ldc)
        elif code == 1:
            rows_t_times(m, n, k, &a[0, 0], lda, &b[0, 0], ldb, <floating>alpha, <floating>beta,
                         &c[0, 0], ldc)
        else:
            rows_times(m, n, k, &a[0, 0], lda, &b[0, 0], ldb, &c[0, 0], ldc)


def has_own_products():
    """Whether the blocks path's products are this module's own (else the BLAS's)."""
    return bool(CYPROP_OWN_PRODUCTS)


#: The most threads any call starts, whatever it is asked for: _compiled.py caps requests
#: to the cores; this keeps a direct call (or a huge OMP_NUM_THREADS) from starting thousands.
cdef int THREAD_LIMIT = 256


cdef int usable_threads(int requested) noexcept nogil:
    """``requested`` threads (0 or less: OpenMP's default), within 1 .. THREAD_LIMIT;
    1 in a forked child (cyprop_threads.h says why)."""
    if cyprop_in_forked_child():
        return 1
    if requested <= 0:
        requested = cyprop_max_threads()
    if requested > THREAD_LIMIT:
        requested = THREAD_LIMIT
    return requested if requested > 0 else 1


def max_threads():
    """Threads a parallel section would use now (OMP_NUM_THREADS, threadpoolctl; 1 in a
    forked child)."""
    return cyprop_max_threads()
