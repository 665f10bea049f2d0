/* A monotonic clock in seconds, as time.perf_counter reads it on each platform: the
   one-sample partial_fit times its step in C (two Python calls of perf_counter cost
   more than a small network's step). */
#ifndef CYPROP_CLOCK_H
#define CYPROP_CLOCK_H

#if defined(_WIN32)
#include <windows.h>
static double cyprop_seconds(void) {
    LARGE_INTEGER count, frequency;
    QueryPerformanceCounter(&count);
    QueryPerformanceFrequency(&frequency);
    return (double)count.QuadPart / (double)frequency.QuadPart;
}
#else
#include <time.h>
static double cyprop_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}
#endif

#endif
