#!/usr/bin/env bash
# Fuzz cyprop.load (tools/fuzz_load.py, atheris) against a build of the compiled core
# instrumented with AddressSanitizer and UBSan, for a fixed time.  Not run in CI.
#
#   1. the sanitizer venv and build of tools/sanitize.sh (same ASAN_VENV and
#      ASAN_BUILD_DIR, so one build serves both), plus atheris (3.0.0 here, from its
#      wheel: no clang needed) and a coverage shim (below);
#   2. the seed corpus: valid files of every kind from save (written fresh) and the
#      crafted files kept in tests/corpus/load/;
#   3. libFuzzer for SECONDS (default 600) with libasan preloaded; new inputs go to
#      $FUZZ_DIR/corpus, findings (crash-*, timeout-*, oom-*) to $FUZZ_DIR/.
#
# Usage: tools/fuzz.sh [SECONDS] [more libFuzzer flags]
#        FUZZ_DIR=/tmp/f ASAN_VENV=/tmp/v tools/fuzz.sh 3600
# A finding: copy it into tests/corpus/load/ once fixed (tests/test_files.py replays
# that directory).  Linux with GCC only (LD_PRELOAD of the compiler's libasan).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
seconds=${1:-600}
shift || true
python=${PYTHON:-python3}
venv=${ASAN_VENV:-/tmp/asan-venv}
build_dir=${ASAN_BUILD_DIR:-$repo/build/sanitize}
work=${FUZZ_DIR:-/tmp/cyprop-fuzz}
cc=${CC:-gcc}

libasan=$("$cc" -print-file-name=libasan.so)
if [[ "$libasan" != /* || ! -e "$libasan" ]]; then
    echo "libasan.so not found for $cc (got '$libasan'); install the compiler's ASan runtime" >&2
    exit 2
fi

echo "== 1. Sanitizer build in $venv (as tools/sanitize.sh), and atheris"
[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
vpy=$venv/bin/python
"$vpy" -m pip install --quiet --disable-pip-version-check \
    scikit-build-core cython cython-cmake ninja numpy scipy atheris
"$vpy" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
    --force-reinstall -Ccmake.define.CYPROP_SANITIZE=ON -Cinstall.strip=false \
    -Cbuild-dir="$build_dir" "$repo"

# atheris's libFuzzer gets Python coverage through __sanitizer_cov_8bit_counters_init
# and friends, but gcc's libasan, which must be preloaded, defines no-op weak versions
# of them that win the symbol lookup: the fuzzer would run blind ("no interesting
# inputs").  A small shim, preloaded before libasan, forwards them to atheris.
core=$(echo "$venv"/lib/python3*/site-packages/atheris/core_with_libfuzzer*.so)
mkdir -p "$work"
"$cc" -O2 -shared -fPIC -o "$work/sancov_shim.so" -x c - -ldl <<'C'
// Forwards the coverage callbacks to atheris's libFuzzer, which gcc's libasan
// would otherwise answer with its own no-op weak definitions.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define FORWARD(name, params, args)                                   \
    static void (*real_##name) params;                                 \
    void name params { if (real_##name) real_##name args; }
#define CMP(n, t)                                                      \
    FORWARD(__sanitizer_cov_trace_cmp##n, (t a, t b), (a, b))          \
    FORWARD(__sanitizer_cov_trace_const_cmp##n, (t a, t b), (a, b))
CMP(1, uint8_t) CMP(2, uint16_t) CMP(4, uint32_t) CMP(8, uint64_t)
FORWARD(__sanitizer_cov_trace_switch, (uint64_t v, uint64_t *c), (v, c))
FORWARD(__sanitizer_cov_trace_div4, (uint32_t v), (v))
FORWARD(__sanitizer_cov_trace_div8, (uint64_t v), (v))
FORWARD(__sanitizer_cov_trace_gep, (uintptr_t v), (v))
FORWARD(__sanitizer_cov_pcs_init, (const uintptr_t *b, const uintptr_t *e), (b, e))
FORWARD(__sanitizer_weak_hook_memcmp, (void *pc, const void *a, const void *b, size_t n, int r), (pc, a, b, n, r))
FORWARD(__sanitizer_weak_hook_strncmp, (void *pc, const char *a, const char *b, size_t n, int r), (pc, a, b, n, r))
FORWARD(__sanitizer_weak_hook_strcmp, (void *pc, const char *a, const char *b, int r), (pc, a, b, r))
FORWARD(__sanitizer_weak_hook_strstr, (void *pc, const char *a, const char *b, char *r), (pc, a, b, r))

// atheris registers its counters here first, once its core is loaded: resolve then.
static void (*real_counters_init)(uint8_t *, uint8_t *);
void __sanitizer_cov_8bit_counters_init(uint8_t *start, uint8_t *stop) {
    if (!real_counters_init) {
        void *core = dlopen(getenv("ATHERIS_CORE"), RTLD_NOW | RTLD_NOLOAD);
        if (!core) abort();
#define RESOLVE(name) real_##name = dlsym(core, #name)
        RESOLVE(__sanitizer_cov_trace_cmp1); RESOLVE(__sanitizer_cov_trace_const_cmp1);
        RESOLVE(__sanitizer_cov_trace_cmp2); RESOLVE(__sanitizer_cov_trace_const_cmp2);
        RESOLVE(__sanitizer_cov_trace_cmp4); RESOLVE(__sanitizer_cov_trace_const_cmp4);
        RESOLVE(__sanitizer_cov_trace_cmp8); RESOLVE(__sanitizer_cov_trace_const_cmp8);
        RESOLVE(__sanitizer_cov_trace_switch); RESOLVE(__sanitizer_cov_trace_div4);
        RESOLVE(__sanitizer_cov_trace_div8); RESOLVE(__sanitizer_cov_trace_gep);
        RESOLVE(__sanitizer_cov_pcs_init); RESOLVE(__sanitizer_weak_hook_memcmp);
        RESOLVE(__sanitizer_weak_hook_strncmp); RESOLVE(__sanitizer_weak_hook_strcmp);
        RESOLVE(__sanitizer_weak_hook_strstr);
        real_counters_init = (void (*)(uint8_t *, uint8_t *))dlsym(core, "__sanitizer_cov_8bit_counters_init");
        if (!real_counters_init) abort();
    }
    real_counters_init(start, stop);
}
C

# The instrumented core needs libasan loaded first, from here on.
export ATHERIS_CORE=$core
export LD_PRELOAD=$work/sancov_shim.so:$libasan
# verify_asan_link_order=0: the shim comes first (it allocates nothing).
export ASAN_OPTIONS=${ASAN_OPTIONS:-verify_asan_link_order=0:detect_leaks=0:halt_on_error=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export PYTHONMALLOC=malloc   # let ASan see Python's small allocations too

echo "== 2. Seed corpus"
mkdir -p "$work/corpus"
rm -rf "$work/seeds"
(cd /tmp && "$vpy" "$repo/tools/fuzz_load.py" --seeds "$work/seeds")

echo "== 3. Fuzzing for ${seconds}s (findings: $work/)"
status=0
# From /tmp, so that the installed (instrumented) cyprop is imported, not src/.
(cd /tmp && "$vpy" "$repo/tools/fuzz_load.py" "$work/corpus" "$work/seeds" \
    "$repo/tests/corpus/load" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 \
    -max_len=65536 -artifact_prefix="$work/" -print_final_stats=1 "$@") || status=$?
if [[ $status -ne 0 ]]; then
    echo "== FINDING (exit $status): see $work/crash-*, timeout-*, oom-*" >&2
    exit "$status"
fi
echo "== CLEAN after ${seconds}s; corpus: $work/corpus"
