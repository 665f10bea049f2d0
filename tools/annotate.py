"""Check that the compiled loops never touch Python: run ``cython -a`` on csrc/_core.pyx
with the build's directives and list every line that Cython scores as interacting with
Python.  Exits 1 if such a line is inside a ``nogil`` function or ``with nogil:`` block
(where only the GIL release itself and OpenMP's ``prange`` set-up may score).

Cython annotates the main file only, so the csrc/*.pxi files that _core.pyx includes are
first pasted in (build/annotate/_core.pyx, the module as Cython sees it), and each line
is reported under its own file and line number.

    python tools/annotate.py            # needs Cython; writes build/annotate/_core.html
"""

import html
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DIRECTIVES = ["boundscheck=False", "wraparound=False", "initializedcheck=False",
              "nonecheck=False", "cdivision=True"]


INCLUDE = re.compile(r'^include "([^"]+)"\s*$')


def flattened(pyx):
    """The lines of ``pyx`` with its ``include`` lines replaced by the included files,
    and for each line its (file name, line number)."""
    lines, origin = [], []
    for number, text in enumerate(pyx.read_text().splitlines(), 1):
        match = INCLUDE.match(text)
        if match:
            included, where = flattened(pyx.parent / match.group(1))
            lines += included
            origin += where
        else:
            lines.append(text)
            origin.append((pyx.name, number))
    return lines, origin


def scored_lines(pyx, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "cython", "-a", "-3", str(pyx), "-o", str(out_dir / "_core.c")]
    for d in DIRECTIVES:
        args += ["-X", d]
    subprocess.run(args, check=True)
    page = (out_dir / "_core.html").read_text()
    rows = re.findall(r'<pre class="cython line score-(\d+)"[^>]*>(?:&#xA0;|\+)?'
                      r'<span class="">(\d+)</span>: (.*?)</pre>', page)
    return {int(line): int(score) for score, line, _ in rows if int(score) > 0}


def nogil_lines(source):
    """Line numbers inside nogil functions and `with nogil:` blocks (bodies only)."""
    inside, lines, indent = False, set(), 0
    for number, text in enumerate(source, 1):
        stripped = text.strip()
        depth = len(text) - len(text.lstrip())
        if inside and stripped and depth <= indent:
            inside = False
        if inside:
            lines.add(number)
        if stripped == "with nogil:" or (stripped.startswith("cdef ") and
                                         stripped.endswith("nogil:")):
            inside, indent = True, depth
    return lines


def main():
    out_dir = ROOT / "build" / "annotate"
    source, origin = flattened(ROOT / "csrc" / "_core.pyx")
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = out_dir / "_core.pyx"
    flat.write_text("\n".join(source) + "\n")
    scores = scored_lines(flat, out_dir)
    hot = nogil_lines(source)
    bad = [n for n in sorted(scores) if n in hot and "prange" not in source[n - 1]]
    for n in sorted(scores):
        mark = "  <-- Python in a nogil section" if n in bad else ""
        where = "{}:{}".format(*origin[n - 1])
        print(f"{where:>18} score {scores[n]:4d}  {source[n - 1].strip()[:60]}{mark}")
    print(f"\n{len(scores)} lines touch Python, {len(bad)} of them inside nogil code; "
          f"see build/annotate/_core.html")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
