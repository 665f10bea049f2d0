#!/usr/bin/env python
"""cyprop's benchmark, run from a source checkout: the same as ``cyprop bench``.

The benchmark itself is ``cyprop.bench``, inside the package, so that it runs from any
installation; this script only adds a default for ``--json``: the raw numbers go to
benchmarks/results/bench-<date>-<time>.json (git-ignored) unless ``--json`` says where.

    python benchmarks/bench.py                       # full run (minutes)
    python benchmarks/bench.py --quick               # about half a minute
    python benchmarks/bench.py --workloads W2 --batch-sizes 1,10 --systems cython,torch
    python benchmarks/bench.py --plot benchmarks/results/throughput.png
"""

import datetime
import sys
from pathlib import Path

from cyprop.bench import main

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def with_default_json(argv):
    """``argv`` with ``--json benchmarks/results/bench-<date>-<time>.json`` added, unless
    it names a JSON file already or asks for help."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if arg in ("-h", "--help") or (len(name) > 3 and "--json".startswith(name)):
            return list(argv)
    stamp = f"{datetime.datetime.now():%Y%m%d-%H%M%S}"
    return [*argv, "--json", str(RESULTS_DIR / f"bench-{stamp}.json")]


if __name__ == "__main__":
    sys.exit(main(with_default_json(sys.argv[1:]), prog="python benchmarks/bench.py"))
