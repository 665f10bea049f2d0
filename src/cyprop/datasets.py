"""Data sets to train on: small built-in problems, MNIST files, and your own CSV tables.

Every loader returns ``(X, y)`` ready for ``Network.fit``: ``X`` a float64 array of
shape (n_samples, n_features) and ``y`` int64 class labels 0..k-1.  Nothing here
downloads anything; MNIST is read from files you already have.

>>> from cyprop import datasets
>>> X, y = datasets.moons(n=200, noise=0.1, seed=0)
>>> X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, seed=0)
"""

import csv
import gzip
import math
import numbers
import os

import numpy as np

__all__ = ["load_digits", "xor", "spirals", "moons", "load_mnist", "load_csv",
           "train_test_split"]


# ------------------------------------------------------------------ built-in
def load_digits():
    """scikit-learn's 8x8 handwritten digits: 1797 samples, 64 features in [0, 1], 10 classes.

    Needs scikit-learn (``pip install cyprop[sklearn]``), which ships the data.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits data set comes with scikit-learn, which is not installed; "
            "install it with `pip install scikit-learn` (or `pip install cyprop[sklearn]`)"
        ) from exc
    digits = _sk_load_digits()
    # Pixel intensities are 0..16; scale them to [0, 1] like the other data sets.
    return digits.data.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def xor():
    """The four XOR points: inputs in {0, 1}^2, label 1 where exactly one input is 1."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y


def spirals(n=200, noise=0.1, seed=None, classes=2):
    """Interleaved spirals in the plane, one arm per class.

    ``n`` samples in all, shared out as evenly as the classes allow; each arm turns
    once around the origin out to radius 1, and ``noise`` is the standard
    deviation of Gaussian noise added to each coordinate.  Samples come shuffled.
    """
    n = _check_count("n", n, minimum=classes)
    classes = _check_count("classes", classes, minimum=2)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    counts = _share(n, classes)
    X = np.empty((n, 2))
    y = np.empty(n, dtype=np.int64)
    start = 0
    for label, count in enumerate(counts):
        # Start a little away from the centre, where all arms meet.
        t = np.linspace(0.05, 1.0, count)
        angle = 2 * np.pi * t + 2 * np.pi * label / classes
        X[start:start + count, 0] = t * np.cos(angle)
        X[start:start + count, 1] = t * np.sin(angle)
        y[start:start + count] = label
        start += count
    X += noise * rng.standard_normal(X.shape)
    return _shuffled(X, y, rng)


def moons(n=200, noise=0.1, seed=None):
    """Two interleaving half circles, as scikit-learn's ``make_moons``.

    ``n`` samples in all (the upper moon, label 0, gets the odd one); ``noise`` is the
    standard deviation of Gaussian noise added to each coordinate.  Samples come shuffled.
    """
    n = _check_count("n", n, minimum=2)
    noise = _check_noise(noise)
    rng = np.random.default_rng(seed)
    n_upper = n - n // 2
    n_lower = n // 2
    t_upper = np.linspace(0, np.pi, n_upper)
    t_lower = np.linspace(0, np.pi, n_lower)
    X = np.concatenate([
        np.column_stack([np.cos(t_upper), np.sin(t_upper)]),
        np.column_stack([1 - np.cos(t_lower), 0.5 - np.sin(t_lower)]),
    ])
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n_lower, np.int64)])
    X += noise * rng.standard_normal(X.shape)
    return _shuffled(X, y, rng)


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_noise(noise):
    if not isinstance(noise, numbers.Real) or isinstance(noise, bool):
        raise TypeError(f"noise must be a number, got {noise!r}")
    if not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def _share(n, parts):
    """``n`` split into ``parts`` counts that differ by at most one."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def _shuffled(X, y, rng):
    order = rng.permutation(len(y))
    return X[order], y[order]


# --------------------------------------------------------------------- split
def train_test_split(X, y, test_size=0.25, seed=0):
    """Split into ``X_train, X_test, y_train, y_test`` after a seeded shuffle.

    ``test_size`` is a fraction in (0, 1) (rounded up to whole samples, as
    scikit-learn does) or a number of samples; both parts keep at least one sample.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y have different numbers of samples: "
                         f"{X.shape[0]} and {y.shape[0]}")
    n = X.shape[0]
    n_test = _test_count(test_size, n)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def _test_count(test_size, n):
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction or a number of samples, "
                        f"got {test_size!r}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
    elif 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    else:
        raise ValueError(f"test_size must be a fraction between 0 and 1 or a whole "
                         f"number of samples, got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size={test_size!r} leaves {n_test} of {n} samples for "
                         "testing; both the training and the test part need at least one")
    return n_test


# --------------------------------------------------------------------- MNIST
_MNIST_HELP = (
    "MNIST is at http://yann.lecun.com/exdb/mnist/ and Fashion-MNIST at "
    "https://github.com/zalandoresearch/fashion-mnist; download the four "
    "*-ubyte.gz files into one folder (cyprop reads them as they are, gzipped or not)")
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_MNIST_PREFIX = {"train": "train", "test": "t10k", "t10k": "t10k"}


def load_mnist(path, kind="train"):
    """MNIST or Fashion-MNIST from the IDX files in the folder ``path``.

    ``kind`` is ``"train"`` (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``)
    or ``"test"`` (the ``t10k-`` files); each may be gzipped (``.gz``).  Returns X of
    shape (n, rows * cols) scaled to [0, 1] and int64 labels.  Never downloads: a
    missing file raises FileNotFoundError saying where to get it.
    """
    if kind not in _MNIST_PREFIX:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"MNIST folder {folder!r} does not exist; {_MNIST_HELP}")
    prefix = _MNIST_PREFIX[kind]
    images_file = _find_idx(folder, f"{prefix}-images", "idx3-ubyte")
    labels_file = _find_idx(folder, f"{prefix}-labels", "idx1-ubyte")
    images = _read_idx(images_file, _IMAGES_MAGIC, n_dims=3)
    labels = _read_idx(labels_file, _LABELS_MAGIC, n_dims=1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_file} holds {images.shape[0]} images but {labels_file} "
                         f"holds {labels.shape[0]} labels")
    X = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    return X, labels.astype(np.int64)


def _find_idx(folder, stem, suffix):
    """The first of ``stem-suffix``, ``stem.suffix`` (some mirrors use a dot), plain
    or gzipped, that exists in ``folder``."""
    names = [f"{stem}-{suffix}", f"{stem}.{suffix}"]
    for name in names:
        for candidate in (name, name + ".gz"):
            full = os.path.join(folder, candidate)
            if os.path.isfile(full):
                return full
    raise FileNotFoundError(f"{names[0]} (or {names[0]}.gz) not found in {folder!r}; "
                            f"{_MNIST_HELP}")


def _read_idx(filename, magic, n_dims):
    """The unsigned-byte array stored in an IDX file, after checking its header and size."""
    data = _read_maybe_gzipped(filename)
    what = "images" if magic == _IMAGES_MAGIC else "labels"
    if len(data) < 4 or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else "missing"
        raise ValueError(f"{filename} has magic number {found}, expected {magic} (an IDX "
                         f"file of {what}); is it the right file, and not damaged?")
    header_size = 4 + 4 * n_dims
    if len(data) < header_size:
        raise ValueError(f"{filename} is truncated: only {len(data)} bytes, shorter than "
                         f"its {header_size}-byte header")
    header = np.frombuffer(data, dtype=">u4", count=1 + n_dims)
    shape = tuple(int(d) for d in header[1:])
    expected = header_size + math.prod(shape)
    if len(data) != expected:
        problem = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"{filename} is {problem}: its header gives shape {shape}, "
                         f"which needs {expected} bytes, but it has {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_maybe_gzipped(filename):
    with open(filename, "rb") as f:
        data = f.read()
    # Decide by content, not by name: some downloads are decompressed but keep ".gz".
    if data[:2] != b"\x1f\x8b":
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ValueError(f"{filename} is a damaged gzip file ({exc}); "
                         "download it again") from None


# ----------------------------------------------------------------------- CSV
def load_csv(path, target=-1, header="infer", delimiter=",", return_classes=False):
    """Your own table of numbers: one sample per row, one column holding the class.

    Parameters
    ----------
    path : str or path-like
        The CSV file.
    target : int, str or None
        The label column: an index (negative counts from the end) or, with a header,
        its name.  None reads features only and returns ``(X, None)``.
    header : "infer", True or False
        Whether the first row names the columns; ``"infer"`` takes it as a header when
        it has text where the next row has numbers.
    delimiter : str
        The field separator.
    return_classes : bool
        Also return ``classes``, the original class of each label: ``classes[y[i]]``.

    Labels: a target of whole numbers >= 0 is used as it is; any other target (class
    names such as ``"setosa"``, negative numbers) is mapped to 0..k-1 in sorted order.
    """
    rows = _read_rows(path, delimiter)
    names = None
    if _has_header(rows, header):
        names, rows = [field.strip() for field in rows[0]], rows[1:]
    if not rows:
        raise ValueError(f"{path}: no data rows")
    first_line = 2 if names else 1   # file line of rows[0], for error messages
    width = _check_rectangular(path, rows, names, first_line)
    if target is None:
        X = _to_float(path, rows, list(range(width)), names, first_line)
        return (X, None, None) if return_classes else (X, None)
    column = _target_index(target, names, width, path)
    features = [c for c in range(width) if c != column]
    if not features:
        raise ValueError(f"{path}: the table has only the target column, no features")
    X = _to_float(path, rows, features, names, first_line)
    y, classes = _labels([row[column].strip() for row in rows], path)
    return (X, y, classes) if return_classes else (X, y)


def _read_rows(path, delimiter):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CSV file {path!r} not found")
    with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drop an Excel BOM
        # Blank lines (often one at the end) carry no sample.
        rows = [row for row in csv.reader(f, delimiter=delimiter) if any(c.strip() for c in row)]
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    return rows


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _has_header(rows, header):
    if header in (True, False):
        return header
    if header is None:
        return False
    if header != "infer":
        raise ValueError(f"header must be 'infer', True or False, got {header!r}")
    first = rows[0]
    if len(rows) == 1:
        return not any(_is_number(field) for field in first)
    # A text field above a number: that column has a name.  (A text column of class
    # names has text in both rows, so it cannot make a header on its own.)
    second = rows[1]
    return any(not _is_number(a) and _is_number(b) for a, b in zip(first, second))


def _check_rectangular(path, rows, names, first_line):
    width = len(names) if names is not None else len(rows[0])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}, line {first_line + i}: {len(row)} fields, but "
                             f"{'the header has' if names else 'the first row has'} {width} "
                             "(ragged rows; is the delimiter right?)")
    return width


def _target_index(target, names, width, path):
    if isinstance(target, str):
        if names is None:
            raise ValueError(f"target={target!r} is a column name, but {path} has no "
                             "header row; give the column's index instead")
        if target not in names:
            raise ValueError(f"{path} has no column {target!r}; its columns are "
                             f"{', '.join(names)}")
        return names.index(target)
    if isinstance(target, bool) or not isinstance(target, numbers.Integral):
        raise TypeError(f"target must be a column index or name, got {target!r}")
    if not -width <= target < width:
        raise ValueError(f"target column {target} is out of range: {path} has {width} columns")
    return int(target) % width


def _to_float(path, rows, columns, names, first_line):
    table = [[row[c] for c in columns] for row in rows]
    try:
        X = np.array(table, dtype=np.float64)
    except ValueError:
        _raise_first_bad_field(path, table, columns, names, first_line)
    if not np.isfinite(X).all():
        i, j = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"{path}, line {first_line + i}, {_column_name(columns[j], names)}: "
                         f"{table[i][j].strip()!r} is not a finite number")
    return X


def _raise_first_bad_field(path, table, columns, names, first_line):
    """Say where the first feature that is not a number is (the slow search runs only
    once conversion has failed)."""
    for i, row in enumerate(table):
        for j, field in enumerate(row):
            if not _is_number(field):
                raise ValueError(f"{path}, line {first_line + i}, "
                                 f"{_column_name(columns[j], names)}: feature {field!r} is "
                                 "not a number (features must be numeric)")
    raise ValueError(f"{path}: the features could not be read as numbers")


def _column_name(index, names):
    return f"column {names[index]!r}" if names else f"column {index}"


def _labels(values, path):
    """int64 labels and the class of each label (see ``load_csv``)."""
    if all(_is_number(v) for v in values):
        numbers_ = np.array(values, dtype=np.float64)
        if not np.isfinite(numbers_).all():
            raise ValueError(f"{path}: the target column contains NaN or infinity")
        whole = np.all(numbers_ == np.round(numbers_))
        if whole and numbers_.min() >= 0:
            labels = numbers_.astype(np.int64)
            return labels, np.arange(labels.max() + 1)
        if not whole:
            raise ValueError(f"{path}: the target column holds fractional numbers; cyprop "
                             "trains classifiers, so the target must hold classes")
        classes, labels = np.unique(numbers_.astype(np.int64), return_inverse=True)
        return labels.astype(np.int64), classes
    classes, labels = np.unique(np.array(values, dtype=str), return_inverse=True)
    return labels.astype(np.int64).ravel(), classes
