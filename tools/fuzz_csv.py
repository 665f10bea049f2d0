"""Coverage-guided fuzzing of ``cyprop.datasets.load_csv`` with atheris (not part of CI).

Each input is written to a file and read as the CLI reads it: with the last column as
the target, as features only (``cyprop predict``), with column 0 as the target of a
declared header, and with ';' as the delimiter.  ``load_csv`` may refuse a file with a
ValueError, OSError or TypeError that says something; any other exception is a
finding, and so is a crash, a hang (libFuzzer's -timeout) or a balloon
(-rss_limit_mb).  A file that loads must give what the docstring promises: finite
float64 features, one int64 label per row, each a valid index into ``classes``.

    python tools/fuzz_csv.py [libFuzzer flags] NEW_INPUTS_DIR tests/corpus/csv
    python tools/fuzz_csv.py -max_total_time=300 -timeout=10 -rss_limit_mb=2048 NEW ...

libFuzzer adds the inputs it finds to the first folder: give it a scratch folder, as
tests/corpus/csv is kept small (tests/test_datasets.py replays every file in it);
copy a finding there once it is fixed.
"""

import inspect
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["cyprop"]):
    from cyprop import datasets

import numpy as np


def _instrument(module):
    """Instrument ``module``'s functions and methods directly: an editable install
    imports cyprop through its own loader, which instrument_imports does not reach
    (code already instrumented is left as it is)."""
    for obj in vars(module).values():
        for func in vars(obj).values() if inspect.isclass(obj) else [obj]:
            if inspect.isfunction(func) and func.__module__ == module.__name__:
                atheris.instrument_func(func)


_instrument(datasets)

_PATH = os.path.join(tempfile.mkdtemp(prefix="cyprop-fuzz-csv-"), "input.csv")
#: (target, header, delimiter) of each read of an input.
_READS = ((-1, "infer", ","), (None, "infer", ","), (0, True, ","), (-1, "infer", ";"))


def check(path, target, header, delimiter):
    """Read ``path`` once; raise AssertionError where load_csv breaks its promises."""
    try:
        X, y, classes = datasets.load_csv(path, target=target, header=header,
                                          delimiter=delimiter, return_classes=True)
    except (ValueError, OSError, TypeError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return
    assert isinstance(X, np.ndarray) and X.dtype == np.float64 and X.ndim == 2, X
    assert X.shape[0] >= 1 and X.shape[1] >= 1 and np.isfinite(X).all(), X
    if target is None:
        assert y is None and classes is None
        return
    assert y.dtype == np.int64 and y.shape == (X.shape[0],), y
    assert 1 <= len(classes) <= 2 * datasets.MAX_CLASSES, classes
    assert y.min() >= 0 and y.max() < len(classes), (y, classes)


def TestOneInput(data):
    with open(_PATH, "wb") as fh:
        fh.write(data)
    for read in _READS:
        check(_PATH, *read)


if __name__ == "__main__":
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
