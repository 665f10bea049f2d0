# Dispatch and BLAS: which instruction set this module was built for, scipy's gemm and
# its threads, and how many OpenMP threads a call may start.

cdef extern from "cyprop_cpu.h":
    const char* CYPROP_ISA
    int cyprop_cpu_runs(int level) nogil
    unsigned int cyprop_flush_subnormals() nogil
    void cyprop_restore_subnormals(unsigned int previous) nogil

cdef extern from "cyprop_threads.h":
    int cyprop_max_threads() nogil
    void* cyprop_symbol_beside(void* addr, const char* name)

INSTRUCTION_SET = CYPROP_ISA.decode()
_LEVELS = {"baseline": 0, "avx2": 1, "avx512": 2}


def cpu_runs(instruction_set):
    """Whether this CPU can run kernels built for ``instruction_set``."""
    return bool(cyprop_cpu_runs(_LEVELS[instruction_set]))


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


cdef inline void gemm(char transa, char transb, int m, int n, int k,
                      const floating* a, int lda, const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """Column-major c = op(a) @ op(b) + beta * c."""
    cdef floating one = 1
    if floating is double:
        blas_dgemm(&transa, &transb, &m, &n, &k, &one, <double*>a, &lda, <double*>b, &ldb,
                   &beta, c, &ldc)
    else:
        blas_sgemm(&transa, &transb, &m, &n, &k, &one, <float*>a, &lda, <float*>b, &ldb,
                   &beta, c, &ldc)


#: The most threads any call starts, whatever it is asked for: _compiled.py caps requests
#: to the cores; this keeps a direct call (or a huge OMP_NUM_THREADS) from starting thousands.
cdef int THREAD_LIMIT = 256


cdef int usable_threads(int requested) noexcept nogil:
    """``requested`` threads (0 or less: OpenMP's default), within 1 .. THREAD_LIMIT."""
    if requested <= 0:
        requested = cyprop_max_threads()
    if requested > THREAD_LIMIT:
        requested = THREAD_LIMIT
    return requested if requested > 0 else 1


def max_threads():
    """Threads a parallel section would use now (OMP_NUM_THREADS, threadpoolctl)."""
    return cyprop_max_threads()
