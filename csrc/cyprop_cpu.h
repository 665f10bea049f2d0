/* Instruction-set dispatch: which level this copy of the module was compiled for, and
   whether the CPU it runs on can run a level.  The module is built once per level
   (CMakeLists.txt); cyprop/_compiled.py asks the portable one which others may load. */
#ifndef CYPROP_CPU_H
#define CYPROP_CPU_H

#if defined(__AVX512F__)
#define CYPROP_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define CYPROP_ISA "avx2"
#else
#define CYPROP_ISA "baseline"
#endif

/* Level 0 baseline, 1 avx2+fma, 2 avx512.  libgcc's __builtin_cpu_supports also checks
   that the OS saves the registers. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
static int cyprop_cpu_runs(int level) {
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (level == 1) return avx2;
    if (level == 2) return avx2 && __builtin_cpu_supports("avx512f")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512dq");
    return 1;
}
#else
static int cyprop_cpu_runs(int level) { return level == 0; }
#endif

#endif
