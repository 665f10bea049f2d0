/* What the kernels need from the platform besides the C library: OpenMP's thread count,
   and a symbol of the shared library that holds an address (to find OpenBLAS's per-thread
   thread setting beside the gemm that scipy hands over). */
#ifndef CYPROP_THREADS_H
#define CYPROP_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static int cyprop_max_threads(void) { return omp_get_max_threads(); }
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

#endif
