"""How cyprop is packaged: the installed distribution, its type information, the
fallback without the compiled extension, free-threading, the sdist's file list, the
release configuration and the release-tag check.

These tests check the *installed* package (a wheel, or an editable install), so they
also run against every wheel cibuildwheel builds and in tools/build_wheel.sh's venv.
"""

import ast
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import subprocess
import sys
import sysconfig
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


# ------------------------------------------------------------ type information
def installed_stub(name):
    """The .pyi stub of the extension cyprop.<name> as installed: beside the module
    (a wheel), or in the package's source directory (an editable install, which maps
    the package's Python files, _core.pyi among them, to the checkout)."""
    module_dir = Path(importlib.util.find_spec(f"cyprop.{name}").origin).parent
    package_dir = Path(cyprop.__file__).parent
    for directory in (module_dir, package_dir):
        if (directory / f"{name}.pyi").is_file():
            return directory / f"{name}.pyi"
    raise AssertionError(f"cyprop/{name}.pyi is not installed (in {module_dir} or {package_dir})")


def stub_names(path):
    """The public names a stub defines at its top level."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return {name for name in names if not name.startswith("_")}


def test_package_is_marked_typed():
    """PEP 561: type checkers read cyprop's annotations only where py.typed ships."""
    assert (Path(cyprop.__file__).parent / "py.typed").is_file()


@pytest.mark.parametrize("name", expected_extensions())
def test_extension_stub_lists_what_the_module_has(name):
    """Each kernel module has its stub (src/cyprop/_core.pyi, installed under every
    module's name by CMakeLists.txt), naming exactly the public names it has: a
    function added to csrc/ needs its line in the stub."""
    module = importlib.import_module(f"cyprop.{name}")
    public = {n for n in dir(module) if not n.startswith("_")}
    stubbed = stub_names(installed_stub(name))
    assert public - stubbed == set(), f"add to src/cyprop/_core.pyi: {sorted(public - stubbed)}"
    assert stubbed - public == set(), f"not in cyprop.{name}: {sorted(stubbed - public)}"


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


@pytest.mark.parametrize("value", ["bogus", "avx-512", "none"])
def test_unknown_cyprop_kernel_is_ignored_by_name(tmp_path, monkeypatch, value):
    """A CYPROP_KERNEL that names no instruction set is ignored with a warning naming
    it, as one this CPU cannot run is: the compiled core still runs, never NumPy."""
    monkeypatch.setenv("CYPROP_KERNEL", value)
    out = run_python("""
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import cyprop
            from cyprop import _compiled
        print(cyprop.available_backends(), cyprop.Network([2, 3, 1]).backend,
              _compiled.CHOSEN == next(iter(_compiled.KERNELS)))
        print("|".join(str(w.message) for w in caught))
        """, cwd=tmp_path)
    result, messages = out.splitlines()
    assert result == "('cython', 'numpy') cython True", out
    assert f"CYPROP_KERNEL={value!r}" in messages and "baseline" in messages, messages
    assert "NumPy" not in messages, messages


# examples/ ships because tests/test_scaling.py runs the Dask example: the sdist's own
# test suite (which the release wheels are tested with) must pass from the sdist alone.
SDIST_TOP_LEVEL = {"csrc", "src", "tests", "examples", "CMakeLists.txt", "pyproject.toml",
                   "README.md", "LICENSE", "PKG-INFO"}


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
                   "src/cyprop/py.typed", "src/cyprop/_core.pyi",
                   "tests/conftest.py", "tests/test_packaging.py",
                   "examples/dask_grid_search.py"):
        assert needed in files
    # (.c: Cython's generated C; the benchmark's plain-C baseline is a source of its own)
    junk = [f for f in files if "__pycache__" in f or f.endswith((".so", ".pyd", ".pyc"))
            or (f.endswith(".c") and not f.endswith("src/cyprop/bench/sgd_baseline.c"))]
    assert not junk, junk


# ------------------------------------------------------------------ free-threading
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded CPython (3.14t)")
def test_importing_cyprop_keeps_the_gil_disabled(tmp_path):
    """The extensions declare themselves free-threading compatible (CMakeLists.txt):
    importing every kernel must not turn the GIL back on.  PYTHON_GIL is removed from
    the child's environment, since PYTHON_GIL=0 would keep the GIL off regardless."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHON_GIL"}
    code = textwrap.dedent("""
        import importlib, sys
        import numpy
        try:
            import scipy.linalg.cython_blas
        except ImportError:
            pass
        if sys._is_gil_enabled():
            print("skip: numpy or scipy turned the GIL on")
            raise SystemExit(0)
        import cyprop
        from cyprop import _compiled
        for name in ("_core", "_core_avx2", "_core_avx512"):
            try:
                importlib.import_module("cyprop." + name)
            except ImportError:
                pass
        cyprop.Network([2, 3, 1], seed=0).predict([[0.5, -0.5]])
        print("gil", sys._is_gil_enabled(), sorted(_compiled.KERNELS))
        """)
    result = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    if result.stdout.startswith("skip:"):
        pytest.skip(result.stdout.strip())
    assert result.stdout.startswith("gil False"), result.stdout + result.stderr


# --------------------------------------------------------- release configuration
def _pyproject():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is new in Python 3.11")
    path = ROOT / "pyproject.toml"
    if not path.exists():
        pytest.skip("not run from a source checkout or an unpacked sdist")
    with path.open("rb") as f:
        return tomllib.load(f)


def test_wheels_are_built_for_every_python_the_classifiers_name():
    config = _pyproject()
    classified = {c.rsplit(" :: ", 1)[1] for c in config["project"]["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    cibw = config["tool"]["cibuildwheel"]
    selectors = cibw["build"].split()
    built = {f"3.{m.group(1)}" for s in selectors if (m := re.fullmatch(r"cp3(\d+)-\*", s))}
    assert built == classified, sorted(built ^ classified)
    assert min(built, key=lambda v: int(v.split(".")[1])) == "3.10"
    assert config["project"]["requires-python"] == ">=3.10"
    # free-threaded builds of 3.14 on, tested with the GIL disabled
    assert "cp314t-*" in selectors
    free_threaded = [o for o in cibw.get("overrides", []) if o["select"] == "cp3??t-*"]
    assert free_threaded and free_threaded[0]["test-environment"] == {"PYTHON_GIL": "0"}
    assert any("Free Threading" in c for c in config["project"]["classifiers"])


def test_musllinux_wheels_are_tested_without_compiling_test_dependencies():
    """scikit-learn has no musllinux wheels: those builds test with the test-core extra,
    a subset of the test extra, free of scikit-learn and matplotlib."""
    config = _pyproject()
    extras = config["project"]["optional-dependencies"]
    name = lambda req: re.match(r"[A-Za-z0-9._-]+", req).group(0).lower()  # noqa: E731
    core = {name(r) for r in extras["test-core"]}
    assert core <= {name(r) for r in extras["test"]}
    assert "pytest" in core and not core & {"scikit-learn", "matplotlib", "pandas"}
    musl = [o for o in config["tool"]["cibuildwheel"].get("overrides", [])
            if "musllinux" in o["select"]]
    assert musl and musl[0]["test-extras"] == ["test-core"]


# ------------------------------------------------------------ release-tag check
def _tag_checker():
    path = ROOT / "tools" / "check_release_tag.py"
    if not path.is_file():
        pytest.skip("tools/check_release_tag.py is not beside these tests (not a checkout)")
    spec = importlib.util.spec_from_file_location("check_release_tag", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, path


def test_release_tag_logic():
    checker, _ = _tag_checker()
    assert checker.tag_from_ref("refs/tags/v1.2.3") == "v1.2.3"
    assert checker.tag_from_ref("v1.2.3") == "v1.2.3"
    for ref in ("refs/heads/main", "refs/pull/7/merge", "", None):
        assert checker.tag_from_ref(ref) is None
    assert checker.check("v1.2.3", "1.2.3") is None
    assert checker.check("v1.0.0rc1", "1.0.0rc1") is None
    for tag in ("v1.2.4", "1.2.3", "v1.2.3.post1", "v1.2", "V1.2.3", "vv1.2.3"):
        assert checker.check(tag, "1.2.3"), tag
    assert "no release tag" in checker.check(None, "1.2.3")


def test_release_tag_script_reads_the_package_version(tmp_path):
    checker, path = _tag_checker()
    version = checker.read_version()
    assert version == cyprop.__version__ == importlib.metadata.version("cyprop")
    (tmp_path / "_version.py").write_text('"""v"""\n\n__version__ = "9.8.7"\n')
    assert checker.read_version(tmp_path / "_version.py") == "9.8.7"
    assert checker.main([], {"GITHUB_REF": f"refs/tags/v{version}"}) == 0
    assert checker.main([f"v{version}"], {}) == 0
    assert checker.main([], {"GITHUB_REF": "refs/tags/v0.0.0.dev0"}) == 1
    assert checker.main([], {"GITHUB_REF": "refs/heads/main"}) == 1
    # as the release workflow runs it: the exit status decides
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_REF"}
    for ref, code in ((f"refs/tags/v{version}", 0), ("refs/tags/v999.0", 1)):
        done = subprocess.run([sys.executable, str(path)], env={**env, "GITHUB_REF": ref},
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert done.returncode == code, done.stdout + done.stderr
        if code:
            assert f"v{version}" in done.stderr
