"""How cyprop is packaged: the installed distribution, the fallback without the
compiled extension, and the sdist's file list.

These tests check the *installed* package (a wheel, or an editable install), so they
also run against every wheel cibuildwheel builds and in tools/build_wheel.sh's venv.
"""

import importlib.metadata
import importlib.util
import platform
import re
import subprocess
import sys
import tarfile
import textwrap
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import cyprop

ROOT = Path(__file__).resolve().parents[1]
# Packages needed to build cyprop but never to run it (top-level module names).
BUILD_ONLY = {"Cython", "cython", "pyximport", "skbuild", "scikit_build_core", "cython_cmake"}


def run_python(code, cwd):
    """Run ``code`` in a fresh interpreter; return its stdout (fail on a non-zero exit)."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def expected_extensions():
    """The extension modules a build for this platform has (see CMakeLists.txt)."""
    names = ["_core"]
    x86_64 = platform.machine().lower() in ("x86_64", "amd64")
    if x86_64 and sys.platform in ("linux", "darwin"):  # GCC or Clang, not MSVC
        names += ["_core_avx2", "_core_avx512"]
    return names


@pytest.mark.parametrize("name", expected_extensions())
def test_compiled_extension_is_installed(name):
    spec = importlib.util.find_spec(f"cyprop.{name}")
    assert spec is not None, f"cyprop.{name} is not installed"
    assert spec.origin.endswith(tuple(EXTENSION_SUFFIXES)), spec.origin


def test_compiled_backend_is_used():
    assert cyprop.available_backends() == ("cython", "numpy")
    assert cyprop.Network([2, 3, 1]).backend == "cython"


def test_version_is_in_one_place():
    metadata_version = importlib.metadata.version("cyprop")
    assert cyprop.__version__ == metadata_version
    source = ROOT / "src" / "cyprop" / "_version.py"
    if source.exists():  # the tests run from a source checkout
        match = re.search(r'__version__\s*=\s*"([^"]+)"', source.read_text())
        assert match, f"no __version__ in {source}"
        assert match.group(1) == metadata_version, (
            "the installed cyprop is out of date with the source tree: reinstall it")


def test_only_numpy_is_required():
    requires = importlib.metadata.requires("cyprop") or []
    unconditional = [r for r in requires if ";" not in r]
    names = [re.match(r"[A-Za-z0-9._-]+", r).group(0).lower() for r in unconditional]
    assert names == ["numpy"], requires


def test_no_build_dependency_is_imported_at_run_time(tmp_path):
    # scipy imports Cython itself when Cython is installed (scipy._lib._testutils), so
    # scipy is imported first: only what importing and using cyprop adds is checked.
    out = run_python("""
        import sys
        try:
            import scipy.linalg.cython_blas
        except ImportError:
            pass
        before = set(sys.modules)
        import cyprop
        cyprop.Network([2, 3, 1], seed=0).predict([[0.5, -0.5]])
        print(" ".join(sorted(set(sys.modules) - before)))
        """, cwd=tmp_path)
    imported = {name.split(".")[0] for name in out.split()}
    assert "cyprop" in imported
    assert not imported & BUILD_ONLY, sorted(imported & BUILD_ONLY)


def test_numpy_fallback_without_the_extension(tmp_path):
    """With the extension hidden, cyprop imports, runs on NumPy and warns exactly once."""
    out = run_python("""
        import importlib.abc
        import sys
        import warnings

        class HideExtension(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.startswith("cyprop._core"):
                    raise ImportError(f"{name} hidden by the test")
                return None

        sys.meta_path.insert(0, HideExtension())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import cyprop
            nets = [cyprop.Network([2, 3, 1], seed=0) for _ in range(3)]
            nets.append(cyprop.Network([2, 3, 1], backend="auto"))
        assert cyprop.available_backends() == ("numpy",), cyprop.available_backends()
        assert all(net.backend == "numpy" for net in nets)
        nets[0].predict([[0.5, -0.5]])
        runtime = [w for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(runtime) == 1, [str(w.message) for w in runtime]
        message = str(runtime[0].message)
        assert "compiled extension" in message and "NumPy" in message, message
        try:
            cyprop.Network([2, 3, 1], backend="cython")
        except ImportError as exc:
            assert "backend='numpy'" in str(exc), exc
        else:
            raise AssertionError("backend='cython' did not raise ImportError")
        print("ok")
        """, cwd=tmp_path)
    assert out.strip() == "ok"


SDIST_TOP_LEVEL = {"csrc", "src", "tests", "CMakeLists.txt", "pyproject.toml", "README.md",
                   "LICENSE", "PKG-INFO"}


def test_sdist_holds_exactly_the_sources(tmp_path, monkeypatch):
    if not (ROOT / "pyproject.toml").exists():
        pytest.skip("not run from a source checkout")
    try:
        from scikit_build_core.build import build_sdist
    except ImportError:
        pytest.skip("scikit-build-core is not installed (a build-only dependency)")
    monkeypatch.chdir(ROOT)  # PEP 517 hooks run in the project directory
    sdist = tmp_path / build_sdist(str(tmp_path))
    with tarfile.open(sdist) as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    assert all(name.startswith(sdist.name[:-len(".tar.gz")] + "/") for name in names)
    files = [name.split("/", 1)[1] for name in names]

    top_level = {f.split("/")[0] for f in files}
    assert top_level == SDIST_TOP_LEVEL, sorted(top_level ^ SDIST_TOP_LEVEL)
    for needed in ("csrc/_core.pyx", "src/cyprop/__init__.py", "src/cyprop/_version.py",
                   "tests/conftest.py", "tests/test_packaging.py"):
        assert needed in files
    # (.c: Cython's generated C; the benchmark's plain-C baseline is a source of its own)
    junk = [f for f in files if "__pycache__" in f or f.endswith((".so", ".pyd", ".pyc"))
            or (f.endswith(".c") and not f.endswith("src/cyprop/bench/sgd_baseline.c"))]
    assert not junk, junk
