/* What the kernels need from the platform besides the C library: OpenMP's thread count,
   a symbol of the shared library that holds an address (to find OpenBLAS's thread
   setting beside the gemm that scipy hands over), and a hold on that setting. */
#ifndef CYPROP_THREADS_H
#define CYPROP_THREADS_H

/* A process forked from one whose OpenMP threads have run (ours, or any other
   library's sharing GNU libgomp) must not start a team of several threads: libgomp's
   pool still counts the parent's threads, which do not exist in the child, and the
   first team waits for them forever.  A team of one uses no pool.  Whether the parent
   ran teams cannot be known here (another library may have), so every forked child
   runs its calls on one thread; cyprop_watch_forks, called at import, marks it. */
static volatile int cyprop_forked = 0;
static int cyprop_in_forked_child(void) { return cyprop_forked; }

#ifdef _OPENMP
#include <omp.h>
static int cyprop_max_threads(void) { return cyprop_forked ? 1 : omp_get_max_threads(); }
#else
static int cyprop_max_threads(void) { return 1; }
#endif

/* The symbol `name` of the shared library that holds `addr`, or NULL. */
#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
static void* cyprop_symbol_beside(void* addr, const char* name) {
    Dl_info info;
    void *lib, *sym;
    if (!dladdr(addr, &info) || !info.dli_fname) return NULL;
    lib = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) return NULL;
    sym = dlsym(lib, name);
    dlclose(lib);  /* a NOLOAD handle: the library stays loaded */
    return sym;
}
#else
static void* cyprop_symbol_beside(void* addr, const char* name) { return NULL; }
#endif

/* Keeping BLAS calls to one thread.  openblas_set_num_threads_local sets OpenBLAS's
   thread count for the whole process, not for the calling thread alone, whatever its
   name says (so in scipy's OpenBLAS 0.3.31).  Calls that overlap (threads that released
   the GIL, or a free-threaded Python) must therefore not each save and restore it: one
   restoring it while another still runs gives that one OpenBLAS's threads (results then
   round differently), and the last to restore puts back the 1 that it found, for good.
   They count themselves in and out instead, under a mutex: the first in sets 1 thread
   and keeps the count it replaced, the last out restores it.  (Each kernel module has a
   count of its own; a process runs one of them.) */
typedef int (*cyprop_set_threads_t)(int);
static int cyprop_blas_holders = 0;
static int cyprop_blas_saved = 0;

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static pthread_mutex_t cyprop_blas_mutex = PTHREAD_MUTEX_INITIALIZER;
static void cyprop_blas_lock(void) { pthread_mutex_lock(&cyprop_blas_mutex); }
static void cyprop_blas_unlock(void) { pthread_mutex_unlock(&cyprop_blas_mutex); }
#else
/* Elsewhere no setter is looked up (cyprop_symbol_beside gives NULL): nothing is held. */
static void cyprop_blas_lock(void) {}
static void cyprop_blas_unlock(void) {}
#endif

static void cyprop_blas_hold_one_thread(cyprop_set_threads_t set_threads) {
    cyprop_blas_lock();
    if (cyprop_blas_holders++ == 0) cyprop_blas_saved = set_threads(1);
    cyprop_blas_unlock();
}

static void cyprop_blas_release(cyprop_set_threads_t set_threads) {
    cyprop_blas_lock();
    if (--cyprop_blas_holders == 0 && cyprop_blas_saved > 0 && set_threads)
        set_threads(cyprop_blas_saved);
    cyprop_blas_unlock();
}

#if defined(__unix__) || defined(__APPLE__)
static void cyprop_mark_forked(void) {
    cyprop_forked = 1;
    /* a thread of the parent that held the BLAS setting's mutex at the fork is not
       here to let it go: the child's first batched call would wait for it forever
       (its count of holders stays up, which only keeps BLAS on one thread here) */
    pthread_mutex_init(&cyprop_blas_mutex, NULL);
}
static void cyprop_watch_forks(void) { pthread_atfork(NULL, NULL, cyprop_mark_forked); }
#else
static void cyprop_watch_forks(void) {}
#endif

#endif
