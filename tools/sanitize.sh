#!/usr/bin/env bash
# Run the test suite against a build of the compiled core instrumented with
# AddressSanitizer and UndefinedBehaviorSanitizer (CMakeLists.txt: CYPROP_SANITIZE).
#
#   1. a throwaway venv (default /tmp/asan-venv) gets the build and test requirements;
#   2. cyprop is built there with -Ccmake.define.CYPROP_SANITIZE=ON into a build
#      directory of its own (default build/sanitize), so the editable development
#      install (build/<wheel tag>) is neither used nor disturbed;
#   3. pytest runs with libasan preloaded (the interpreter itself is not instrumented)
#      and the UBSan runtime told to stop at the first report.
#
# Any "ERROR: AddressSanitizer" or "runtime error:" (UBSan) in the output is a finding;
# the script exits non-zero when pytest fails or such a report appears.
#
# Usage: tools/sanitize.sh                      (the default subset, see below)
#        tools/sanitize.sh tests/test_parity.py -k forward     (any pytest arguments)
#        ASAN_VENV=/tmp/v ASAN_BUILD_DIR=/tmp/b PYTHON=python3.12 tools/sanitize.sh
#        CYPROP_KERNELS="baseline avx2 avx512" tools/sanitize.sh   (one run per kernel)
# Linux with GCC or Clang only (LD_PRELOAD of the compiler's libasan).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
venv=${ASAN_VENV:-/tmp/asan-venv}
build_dir=${ASAN_BUILD_DIR:-$repo/build/sanitize}
kernels=${CYPROP_KERNELS:-auto}
cc=${CC:-gcc}

libasan=$("$cc" -print-file-name=libasan.so)
if [[ "$libasan" != /* || ! -e "$libasan" ]]; then
    echo "libasan.so not found for $cc (got '$libasan'); install the compiler's ASan runtime" >&2
    exit 2
fi

echo "== 1. Virtual environment: $venv"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
vpy=$venv/bin/python
"$vpy" -m pip install --quiet --disable-pip-version-check \
    scikit-build-core cython cython-cmake ninja numpy pytest scipy scikit-learn hypothesis

echo "== 2. Build cyprop with ASan + UBSan into $build_dir"
# Not editable: the venv holds its own copy, and importing it never triggers a rebuild
# (which would happen without the sanitizer flags).  Not stripped, so that reports
# name the function and the line of csrc/_core.pyx's generated C.
"$vpy" -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps \
    --force-reinstall -Ccmake.define.CYPROP_SANITIZE=ON -Cinstall.strip=false \
    -Cbuild-dir="$build_dir" "$repo"

# Checks run with the sanitizer runtime, from outside the source tree (so that src/
# cannot be imported by accident).
export LD_PRELOAD=$libasan
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0:halt_on_error=1:print_summary=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [[ -z "${ASAN_SYMBOLIZER_PATH:-}" ]] && command -v llvm-symbolizer >/dev/null; then
    export ASAN_SYMBOLIZER_PATH=$(command -v llvm-symbolizer)
fi
export PYTHONMALLOC=malloc            # let ASan see Python's small allocations too
export CYPROP_SANITIZED_RUN=1         # tests that measure memory or time skip themselves
(cd /tmp && "$vpy" - "$venv" <<'EOF'
import os
import sys

import cyprop
from cyprop import _compiled

venv = os.path.realpath(sys.argv[1])
assert os.path.realpath(cyprop.__file__).startswith(venv), \
    f"cyprop imported from {cyprop.__file__}, not from {venv}"
for name, module in _compiled.KERNELS.items():
    maps = open("/proc/self/maps").read()
    assert "libasan" in maps, "libasan is not loaded"
    with open(module.__file__, "rb") as fh:
        assert b"__asan_report" in fh.read(), f"{module.__file__} is not instrumented"
    print(f"kernel {name}: {module.__file__} (instrumented)")
print("cyprop", cyprop.__version__, "chosen kernel:", _compiled.CHOSEN)
EOF
)

echo "== 3. Tests under the sanitizers"
if [[ $# -eq 0 ]]; then
    # test_packaging builds wheels (slow, and not about the kernels).
    set -- tests/test_parity.py tests/test_api.py tests/test_gradients.py \
        tests/test_optimizers.py tests/test_learning.py tests/test_persistence.py
    for extra in tests/test_training.py tests/test_robustness.py tests/test_faults.py; do
        [[ -e $extra ]] && set -- "$@" "$extra"
    done
fi
log=$(mktemp /tmp/cyprop-sanitize.XXXXXX.log)
status=0
for kernel in $kernels; do
    echo "-- CYPROP_KERNEL=$kernel: pytest $*"
    # -p no:cacheprovider: nothing written into the checkout; rootdir keeps conftest.py.
    CYPROP_KERNEL=$kernel PYTHONDONTWRITEBYTECODE=1 \
        "$vpy" -m pytest -q -p no:cacheprovider --rootdir "$repo" "$@" 2>&1 | tee -a "$log" \
        || status=$?
done

if grep -E -q "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$log"; then
    echo "== FINDINGS: sanitizer reports in $log:" >&2
    grep -E -n "ERROR: AddressSanitizer|runtime error:|SUMMARY:" "$log" >&2 || true
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "== pytest failed (exit $status), no sanitizer report; log: $log" >&2
    exit "$status"
fi
echo "== CLEAN: no ASan/UBSan reports (${SECONDS}s); log: $log"
