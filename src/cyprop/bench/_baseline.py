"""The plain-C baseline: cyprop's own per-sample SGD in C, built and timed at run time.

The C source ships inside the package (``cyprop/bench/sgd_baseline.c``).  It is compiled into a temporary folder with the first C compiler
found (``$CC``, then the compiler Python was built with, then ``cc``, ``gcc`` and
``clang`` on PATH) at ``-O3``, and at ``-O3 -march=native`` where the compiler accepts it.
Without a working compiler the baseline is skipped, and the caller prints why.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

# importlib.abc's Traversable moved to importlib.resources.abc in 3.11 and is gone from
# importlib.abc in 3.14.
if sys.version_info >= (3, 11):
    from importlib.resources.abc import Traversable
else:
    from importlib.abc import Traversable

SOURCE_NAME = "sgd_baseline.c"
# The builds: name -> extra flags.  "native" tunes for this CPU (the limit of what C does
# here); "portable" is what a binary built for any x86-64 gets.
BUILDS = {"native": ["-O3", "-march=native"], "portable": ["-O3"]}
COMPILE_TIMEOUT = 120
RUN_TIMEOUT = 600


def source() -> Traversable:
    """The packaged C source, as an ``importlib.resources`` Traversable."""
    return importlib.resources.files(__package__).joinpath(SOURCE_NAME)


def compiler_candidates() -> tuple[list[tuple[str, list[str]]], list[str]]:
    """``(candidates, missing)``: the C compilers to try, in order, each as
    ``(name, command list)``, and the names of those looked for but not found."""
    found: list[tuple[str, list[str]]] = []
    missing: list[str] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for name, value in (("$CC", os.environ.get("CC")),
                        ("Python's CC", sysconfig.get_config_var("CC")),
                        ("cc", "cc"), ("gcc", "gcc"), ("clang", "clang")):
        if not value:
            continue
        try:
            command = shlex.split(value)
        except ValueError:
            continue
        if not command:
            continue
        path = shutil.which(command[0])
        label = name if name == value else f"{name} ({value})"
        if path is None:
            missing.append(label)
            continue
        key = (os.path.realpath(path), tuple(command[1:]))
        if key not in seen:
            seen.add(key)
            found.append((label, [path, *command[1:]]))
    return found, missing


def compile_source(command: Sequence[str], src: str | os.PathLike[str], out: str | os.PathLike[str],
                   flags: Sequence[str], dtype: str) -> tuple[bool, str | None]:
    """Compile ``src`` to the program ``out``; ``(True, None)`` or ``(False, why)``."""
    defines = ["-DCYPROP_FLOAT32"] if dtype == "float32" else []
    argv = [*command, *flags, *defines, "-x", "c", str(src), "-o", str(out), "-lm"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMPILE_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    if proc.returncode != 0 or not Path(out).is_file():
        why = (proc.stderr or proc.stdout).strip().splitlines()
        return False, f"exit {proc.returncode}" + (f": {why[-1][:200]}" if why else "")
    return True, None


class Baseline:
    """The C baseline compiled into a temporary folder (a context manager: the folder
    goes when the block ends).  ``builds`` lists ``(dtype, build)`` pairs, ``build`` a key
    of BUILDS; with ``fallback``, a native build the compiler refuses becomes a portable
    one.  After entering, ``programs`` maps each ``(dtype, build)`` that compiled to its
    program, ``compiler`` names the compiler used (None: none worked), ``notes`` says
    what was skipped and why, and ``info`` what was built differently from asked."""

    def __init__(self, builds: Iterable[tuple[str, str]], fallback: bool = False) -> None:
        self.builds = list(builds)
        self.fallback = fallback
        self.programs: dict[tuple[str, str], Path]
        self.notes: list[str]
        self.info: list[str]
        self.compiler: str | None
        self.programs, self.notes, self.info, self.compiler = {}, [], [], None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> Baseline:
        tmp = self._tmp = tempfile.TemporaryDirectory(prefix="cyprop-bench-")
        try:
            self._compile(Path(tmp.name))
        except BaseException:
            tmp.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        assert self._tmp is not None   # entered
        self._tmp.cleanup()
        return False

    def _compile(self, folder: Path) -> None:
        src = folder / "sgd_baseline.c"
        src.write_bytes(source().read_bytes())
        candidates, missing = compiler_candidates()
        failed: list[str] = []
        command: list[str] | None = None
        for name, cmd in candidates:  # the first compiler that makes the first build
            made, why = self._build(cmd, src, folder, *self.builds[0])
            if made:
                command, self.compiler = cmd, name
                break
            failed.append(f"{name} failed ({why})")
        if command is None:
            tried = failed + (["not on PATH: " + ", ".join(missing)] if missing else [])
            self.notes.append("C baseline: no working C compiler (" + "; ".join(tried)
                              + "); set CC to name one")
            return
        for dtype, build in self.builds[1:]:
            made, why = self._build(command, src, folder, dtype, build)
            if not made:
                self.notes.append(f"C baseline {dtype} {build}: {self.compiler} failed "
                                  f"({why})")

    def _build(self, command: Sequence[str], src: Path, folder: Path, dtype: str,
               build: str) -> tuple[str | None, str | None]:
        """Compile one build (with fallback, its portable form if the compiler refuses
        it); returns (the build made or None, why not)."""
        exe = ".exe" if os.name == "nt" else ""
        whys: list[str] = []
        for b in [build, "portable"] if self.fallback and build != "portable" else [build]:
            if (dtype, b) in self.programs:
                return b, None
            out = folder / f"baseline-{dtype}-{b}{exe}"
            ok, why = compile_source(command, src, out, BUILDS[b], dtype)
            if ok:
                self.programs[(dtype, b)] = out
                if whys:
                    self.info.append(f"C baseline {dtype}: {' '.join(BUILDS[build])} "
                                      f"refused ({whys[0]}), built with {' '.join(BUILDS[b])}")
                return b, None
            assert why is not None   # compile_source says why it failed
            whys.append(why)
        return None, "; ".join(dict.fromkeys(whys))

    def run(self, dtype: str, build: str, sizes: Sequence[int], n: int, repeats: int,
            seed: int = 0) -> dict[str, Any]:
        """Train on ``n`` random samples for layer ``sizes``: a warm-up epoch, then
        ``repeats`` timed ones.  Returns the program's JSON record (``times`` in seconds
        per epoch, ``n``, ``checksum``)."""
        argv = [str(self.programs[(dtype, build)]), "bench", str(repeats), str(n), str(seed),
                *map(str, sizes)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"C baseline exited with {proc.returncode}: "
                               f"{proc.stderr.strip()[-300:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def train(self, dtype: str, build: str, folder: str | os.PathLike[str], sizes: Sequence[int],
              n: int, learning_rate: float) -> Path:
        """One epoch on the data in ``folder`` (params.f64, X.f64, y.i32), in order;
        the trained parameters are in ``folder/out.f64`` (for tests)."""
        argv = [str(self.programs[(dtype, build)]), "train", str(folder), str(n),
                repr(float(learning_rate)), *map(str, sizes)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                              stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise RuntimeError(f"C baseline exited with {proc.returncode}: "
                               f"{proc.stderr.strip()[-300:]}")
        return Path(folder) / "out.f64"
