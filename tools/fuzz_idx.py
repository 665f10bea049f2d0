"""Coverage-guided fuzzing of ``cyprop.datasets.load_mnist`` (the IDX reader) with atheris
(not part of CI).

Each input is split into an images file and a labels file (at its first 4-byte
marker ``IDX!``, or in the middle), written gzipped when it starts with ``z``, and read
with ``load_mnist``.  It may refuse them with a ValueError or OSError that says
something; any other exception is a finding, and so is a crash, a hang (libFuzzer's
-timeout) or a balloon (-rss_limit_mb).  Files that load must give what the docstring
promises: float64 images in [0, 1], one int64 label per image.

    python tools/fuzz_idx.py -max_total_time=300 -timeout=10 -rss_limit_mb=2048 NEW_INPUTS_DIR
"""

import gzip
import os
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["cyprop"]):
    from cyprop import datasets

import numpy as np

atheris.instrument_func(datasets.load_mnist)
atheris.instrument_func(datasets._read_idx)
atheris.instrument_func(datasets._parse_idx)

_DIR = tempfile.mkdtemp(prefix="cyprop-fuzz-idx-")
_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")


def _write(data):
    for name in os.listdir(_DIR):
        os.unlink(os.path.join(_DIR, name))
    compress = data[:1] == b"z"
    data = data[1:] if compress else data
    cut = data.find(b"IDX!")
    images, labels = (data[:cut], data[cut + 4:]) if cut >= 0 else \
        (data[:len(data) // 2], data[len(data) // 2:])
    for name, content in zip(_NAMES, (images, labels)):
        if compress:
            name, content = name + ".gz", gzip.compress(content, mtime=0)
        with open(os.path.join(_DIR, name), "wb") as fh:
            fh.write(content)


def TestOneInput(data):
    _write(data)
    try:
        X, y = datasets.load_mnist(_DIR)
    except (ValueError, OSError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return
    assert X.dtype == np.float64 and X.ndim == 2 and y.dtype == np.int64, (X, y)
    assert y.shape == (X.shape[0],), (X.shape, y.shape)
    assert X.size == 0 or (X.min() >= 0 and X.max() <= 1), X


def write_seeds(directory):
    """Valid inputs: a few images and labels, plain and gzipped."""
    os.makedirs(directory, exist_ok=True)
    images = bytes.fromhex("00000803") + (2).to_bytes(4, "big") * 3 + bytes(range(8))
    labels = bytes.fromhex("00000801") + (2).to_bytes(4, "big") + b"\x01\x07"
    for i, prefix in enumerate((b"", b"z")):
        with open(os.path.join(directory, f"seed-{i}"), "wb") as fh:
            fh.write(prefix + images + b"IDX!" + labels)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--seeds"]:
        write_seeds(sys.argv[2])
        sys.exit(0)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()
