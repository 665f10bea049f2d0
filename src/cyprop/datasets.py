"""Data sets to train on: small built-in problems, MNIST files, and your own CSV tables.

Every loader returns ``(X, y)`` ready for ``Network.fit``: ``X`` a float64 array of
shape (n_samples, n_features) and ``y`` int64 class labels 0..k-1.  Nothing here
downloads anything; MNIST is read from files you already have.

>>> from cyprop import datasets
>>> X, y = datasets.moons(n=200, noise=0.1, seed=0)
>>> X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, seed=0)
"""

from __future__ import annotations

import array as _array
import csv as _csv
import gzip as _gzip
import itertools as _itertools
import math as _math
import numbers as _numbers
import os as _os
import re as _re
import stat as _stat
import typing as _typing
import zlib as _zlib
from collections.abc import Iterable as _Iterable
from collections.abc import Iterator as _Iterator

import numpy as np
import numpy.typing as _npt

from . import _validation

# The public API is the data-set functions: the standard-library modules above are
# imported under private names, and dir() (which tab completion reads) lists __all__
# only, so NumPy and the CSV limits below (documented in load_csv) stay out of it.
__all__ = ["load_digits", "xor", "spirals", "moons", "load_mnist", "load_csv",
           "train_test_split"]


#: The (X, y) every loader returns: float64 features and int64 labels.
_Data = tuple[_npt.NDArray[np.float64], _npt.NDArray[np.int64]]


def __dir__() -> list[str]:
    return sorted(__all__)


# ------------------------------------------------------------------ built-in
def load_digits() -> _Data:
    """scikit-learn's 8x8 handwritten digits: 1797 samples, 64 features in [0, 1], 10 classes.

    Needs scikit-learn (``pip install "cyprop[sklearn]"``), which ships the data.

    Returns
    -------
    X : numpy.ndarray of float64, shape (1797, 64)
        The pixel intensities, scaled from 0..16 to [0, 1].
    y : numpy.ndarray of int64, shape (1797,)
        The digits, 0-9.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits data set comes with scikit-learn, which is not installed; "
            'install it with `pip install scikit-learn` (or `pip install "cyprop[sklearn]"`)'
        ) from exc
    digits = _sk_load_digits()
    # Pixel intensities are 0..16; scale them to [0, 1] like the other data sets.
    return digits.data.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def xor() -> _Data:
    """The four XOR points: inputs in {0, 1}^2, label 1 where exactly one input is 1.

    Returns
    -------
    X : numpy.ndarray of float64, shape (4, 2)
        The points (0, 0), (0, 1), (1, 0), (1, 1).
    y : numpy.ndarray of int64, shape (4,)
        Their labels, 0, 1, 1, 0.
    """
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y


def spirals(n: int = 200, noise: float = 0.1, seed: int | np.random.Generator | None = None,
            classes: int = 2) -> _Data:
    """Interleaved spirals in the plane, one arm per class.

    Each arm turns once around the origin out to radius 1.  Samples come shuffled.

    Parameters
    ----------
    n : int, default 200
        Samples in all, shared out as evenly as the classes allow (at least
        ``classes``).
    noise : float, default 0.1
        The standard deviation of Gaussian noise added to each coordinate (>= 0).
    seed : int, numpy.random.Generator or None, default None
        Seeds ``numpy.random.default_rng`` for the noise and the shuffle.
    classes : int, default 2
        The number of arms (at least 2).

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 2)
        The points.
    y : numpy.ndarray of int64, shape (n,)
        Their arm, 0..classes-1.

    Raises
    ------
    TypeError
        If ``n`` or ``classes`` is not an integer, or ``noise`` not a number.
    ValueError
        If one is out of range.
    """
    # classes first: n's minimum is the classes, compared only once it is a number
    classes = _check_count("classes", classes, minimum=2)
    n = _check_count("n", n, minimum=classes)
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


def moons(n: int = 200, noise: float = 0.1,
          seed: int | np.random.Generator | None = None) -> _Data:
    """Two interleaving half circles, as scikit-learn's ``make_moons``.

    Samples come shuffled.

    Parameters
    ----------
    n : int, default 200
        Samples in all (at least 2); the upper moon, label 0, gets the odd one.
    noise : float, default 0.1
        The standard deviation of Gaussian noise added to each coordinate (>= 0).
    seed : int, numpy.random.Generator or None, default None
        Seeds ``numpy.random.default_rng`` for the noise and the shuffle.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, 2)
        The points.
    y : numpy.ndarray of int64, shape (n,)
        Their moon, 0 (upper) or 1.

    Raises
    ------
    TypeError
        If ``n`` is not an integer or ``noise`` not a number.
    ValueError
        If one is out of range.
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


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, _numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_noise(noise: object) -> float:
    if not isinstance(noise, _numbers.Real) or isinstance(noise, bool):
        raise TypeError(f"noise must be a number, got {noise!r}")
    if not _math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    return float(noise)


def _share(n: int, parts: int) -> list[int]:
    """``n`` split into ``parts`` counts that differ by at most one."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def _shuffled(X: _npt.NDArray[np.float64], y: _npt.NDArray[np.int64],
              rng: np.random.Generator) -> _Data:
    order = rng.permutation(len(y))
    return X[order], y[order]


# --------------------------------------------------------------------- split
def train_test_split(X: _npt.ArrayLike, y: _npt.ArrayLike, test_size: float = 0.25,
                     seed: int | np.random.Generator | None = 0,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split into ``X_train, X_test, y_train, y_test`` after a seeded shuffle.

    Parameters
    ----------
    X : array_like
        The samples, one per row.
    y : array_like
        Their labels or targets, as many as the rows of ``X``.
    test_size : float or int, default 0.25
        A fraction in (0, 1) (rounded up to whole samples, as scikit-learn does) or
        a number of samples; both parts keep at least one sample.
    seed : int, numpy.random.Generator or None, default 0
        Seeds ``numpy.random.default_rng`` for the shuffle.

    Returns
    -------
    X_train, X_test, y_train, y_test : numpy.ndarray
        The rows of ``X`` and ``y`` in each part.

    Raises
    ------
    TypeError
        If ``test_size`` is not a number, or ``X`` or ``y`` is a single value (0-d)
        or a scipy.sparse matrix.
    ValueError
        If ``X`` and ``y`` differ in length or ``test_size`` leaves a part empty.
    """
    for name, data in (("X", X), ("y", y)):
        # (np.asarray makes one a 0-d object array: "the single value" would mislead)
        _validation._refuse_sparse(name, data, "",
                                   ", or split it with scikit-learn's train_test_split")
    X = np.asarray(X)
    y = np.asarray(y)
    for name, array in (("X", X), ("y", y)):
        if array.ndim == 0:   # (as scikit-learn's train_test_split refuses it)
            raise TypeError(f"{name} must be an array of samples, got the single value "
                            f"{array.item()!r:.40}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y have different numbers of samples: "
                         f"{X.shape[0]} and {y.shape[0]}")
    n = X.shape[0]
    n_test = _test_count(test_size, n)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]


def _test_count(test_size: float, n: int) -> int:
    if isinstance(test_size, bool) or not isinstance(test_size, _numbers.Real):
        raise TypeError(f"test_size must be a fraction or a number of samples, "
                        f"got {test_size!r}")
    if isinstance(test_size, _numbers.Integral):
        n_test = int(test_size)
    elif 0 < test_size < 1:
        n_test = _math.ceil(test_size * n)
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


def load_mnist(path: str | _os.PathLike[str], kind: str = "train") -> _Data:
    """MNIST or Fashion-MNIST from the IDX files in the folder ``path``.

    Never downloads: a missing file raises FileNotFoundError saying where to get it.

    Parameters
    ----------
    path : str or os.PathLike
        The folder holding the files.
    kind : {"train", "test"}, default "train"
        ``"train"`` (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``) or
        ``"test"`` (the ``t10k-`` files); each may be gzipped (``.gz``).

    Returns
    -------
    X : numpy.ndarray of float64, shape (n, rows * cols)
        The images, scaled to [0, 1].
    y : numpy.ndarray of int64, shape (n,)
        The labels.

    Raises
    ------
    FileNotFoundError
        If the folder or a file is missing.
    ValueError
        If ``kind`` is unknown, a file's name holds something other than a regular
        file (a folder, a FIFO, a device), or a file is not a valid IDX file (wrong
        magic number, truncated, damaged gzip), holds no images or labels, or the
        counts of images and labels differ.
    """
    if not isinstance(kind, str) or kind not in _MNIST_PREFIX:   # (a list is unhashable)
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    folder = _os.fspath(path)
    if not _os.path.isdir(folder):
        if _os.path.exists(folder):   # a file: no folder of that name, but say so
            raise FileNotFoundError(f"MNIST folder {folder!r} is a file, not a folder "
                                     f"(give the folder that holds the four files); "
                                     f"{_MNIST_HELP}")
        raise FileNotFoundError(f"MNIST folder {folder!r} does not exist; {_MNIST_HELP}")
    prefix = _MNIST_PREFIX[kind]
    images_file = _find_idx(folder, f"{prefix}-images", "idx3-ubyte")
    labels_file = _find_idx(folder, f"{prefix}-labels", "idx1-ubyte")
    images = _read_idx(images_file, _IMAGES_MAGIC, n_dims=3)
    labels = _read_idx(labels_file, _LABELS_MAGIC, n_dims=1)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images_file} holds {images.shape[0]} images but {labels_file} "
                         f"holds {labels.shape[0]} labels")
    X = images.reshape(images.shape[0], -1).astype(np.float64)
    X /= 255.0
    return X, labels.astype(np.int64)


def _idx_candidates(folder: str, stem: str, suffix: str) -> list[str]:
    """The paths an IDX file is looked for at, in order: ``stem-suffix``, then
    ``stem.suffix`` (some mirrors use a dot), each plain, then gzipped."""
    return [_os.path.join(folder, name + gz)
            for name in (f"{stem}-{suffix}", f"{stem}.{suffix}") for gz in ("", ".gz")]


def _mnist_candidates(folder: str) -> list[str]:
    """Every path ``load_mnist(folder, kind)`` may read, for either kind."""
    return [path for prefix in sorted(set(_MNIST_PREFIX.values()))
            for stem, suffix in ((f"{prefix}-images", "idx3-ubyte"),
                                 (f"{prefix}-labels", "idx1-ubyte"))
            for path in _idx_candidates(folder, stem, suffix)]


def _find_idx(folder: str, stem: str, suffix: str) -> str:
    """The first of ``_idx_candidates`` that exists."""
    for full in _idx_candidates(folder, stem, suffix):
        if _os.path.exists(full):
            _check_regular_file(full, "MNIST file")   # a FIFO or device is named
            return full
    raise FileNotFoundError(f"{stem}-{suffix} (or {stem}-{suffix}.gz) not found in "
                            f"{folder!r}; {_MNIST_HELP}")


def _read_idx(filename: str, magic: int, n_dims: int) -> _npt.NDArray[np.uint8]:
    """The unsigned-byte array stored in an IDX file, after checking its header and size.

    Read as a stream, header first, then exactly the bytes it declares and one more (to
    find data beyond them): a gzipped file is never inflated beyond what its header
    declares, however much it would inflate to."""
    with open(_open_regular_file(filename, "MNIST file"), "rb") as raw:
        # Decide by content, not by name: some downloads are decompressed but keep ".gz".
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        read = _gzip.GzipFile(fileobj=raw).read if gzipped else raw.read
        # what a damaged (not only cut) gzip stream raises
        damaged = (_gzip.BadGzipFile, EOFError, _zlib.error) if gzipped else ()
        try:
            return _parse_idx(filename, read, magic, n_dims)
        except damaged as exc:
            raise ValueError(f"{filename} is a damaged gzip file ({exc}); "
                             "download it again") from None


def _parse_idx(filename: str, read: _typing.Callable[[int], bytes], magic: int,
               n_dims: int) -> _npt.NDArray[np.uint8]:
    what = "images" if magic == _IMAGES_MAGIC else "labels"
    start = read(4)
    if len(start) < 4 or int.from_bytes(start, "big") != magic:
        found = int.from_bytes(start, "big") if len(start) == 4 else "missing"
        raise ValueError(f"{filename} has magic number {found}, expected {magic} (an IDX "
                         f"file of {what}); is it the right file, and not damaged?")
    header_size = 4 + 4 * n_dims
    dims = read(4 * n_dims)
    if len(dims) < 4 * n_dims:
        raise ValueError(f"{filename} is truncated: only {4 + len(dims)} bytes, shorter "
                         f"than its {header_size}-byte header")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    # (nothing trains on or is scored on empty rows: fit and evaluate would refuse
    # them without naming the file)
    if shape[0] == 0:
        raise ValueError(f"{filename} holds no {what} (its header gives shape {shape}); "
                         "is it the right file, and not damaged?")
    if 0 in shape:
        raise ValueError(f"{filename} holds images of no pixels (its header gives shape "
                         f"{shape}); is it the right file, and not damaged?")
    expected = header_size + _math.prod(shape)
    # Read in pieces: a header declaring far more than the file holds allocates no
    # more than the file gives.
    data, missing = bytearray(), expected - header_size
    while missing:
        piece = read(min(missing, 1 << 24))
        if not piece:
            break
        data += piece
        missing -= len(piece)
    extra = read(1)
    if missing or extra:
        size = f"{expected - missing} bytes" if missing else "more bytes"
        problem = "truncated" if missing else "longer than its header says"
        raise ValueError(f"{filename} is {problem}: its header gives shape {shape}, "
                         f"which needs {expected} bytes, but it has {size}")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


# ----------------------------------------------------------------------- CSV
#: A damaged or hostile file must not fill memory: a record (a line, or lines joined
#: by a quoted field) longer than this many characters, or with more fields than
#: MAX_COLUMNS, is refused before it is split into fields.
MAX_RECORD_CHARS = 8 * 2**20
MAX_COLUMNS = 100_000
#: Each class is an output unit and a column of the one-hot targets: a target with
#: more distinct values than this is refused (it is likely a regression target).
MAX_CLASSES = 1000
#: Whole numbers at or beyond this cannot all be told apart once read as float64.
_EXACT_LIMIT = 2**53


_Path = _typing.Union[str, "_os.PathLike[str]"]
_Header = _typing.Union[bool, _typing.Literal["infer"], None]


@_typing.overload
def load_csv(path: _Path, target: int | str = -1, header: _Header = "infer",
             delimiter: str = ",", return_classes: _typing.Literal[False] = False,
             ) -> tuple[_npt.NDArray[np.float64], _npt.NDArray[np.int64]]: ...


@_typing.overload
def load_csv(path: _Path, target: int | str = -1, header: _Header = "infer",
             delimiter: str = ",", *, return_classes: _typing.Literal[True],
             ) -> tuple[_npt.NDArray[np.float64], _npt.NDArray[np.int64], np.ndarray]: ...


@_typing.overload
def load_csv(path: _Path, target: None, header: _Header = "infer", delimiter: str = ",",
             return_classes: _typing.Literal[False] = False,
             ) -> tuple[_npt.NDArray[np.float64], None]: ...


@_typing.overload
def load_csv(path: _Path, target: int | str | None = -1, header: _Header = "infer",
             delimiter: str = ",", return_classes: bool = False) -> tuple[_typing.Any, ...]: ...


def load_csv(path: str | _os.PathLike[str], target: int | str | None = -1,
             header: bool | _typing.Literal["infer"] | None = "infer", delimiter: str = ",",
             return_classes: bool = False) -> tuple[_typing.Any, ...]:
    """Your own table of numbers: one sample per row, one column holding the class.

    Features must be finite numbers, written in ASCII digits without underscores (what
    ``float()`` alone also reads, ``1_000`` or other scripts' digits, is refused, as
    NumPy's ``loadtxt`` refuses it); blank lines (also rows of empty fields) are
    skipped, but an empty field in a row is a missing value and an error, as is any
    other problem, naming the file line and column (``ValueError``): bytes that are
    not UTF-8, a stray quote, a field over csv's limit (128 KiB), a record over
    ``MAX_RECORD_CHARS`` characters or ``MAX_COLUMNS`` fields.

    Labels are all numbers or all names (a mix is refused: often a missing-value
    marker such as ``NA``, or a header that was read as data); a label is a number
    only when written as a feature must be (``1_1`` is a name).

    - Whole numbers (``3``, ``3.0``) that are 0 or more are used as they are when the
      largest is below 10 or below twice the number of distinct labels (digits 0-9,
      or classes counted from 1): ``classes`` is then ``arange(largest + 1)``.
    - Other whole numbers (negative, or sparse such as 0 and 5000) are mapped to
      0..k-1 in increasing order; numbers of 2**53 or more are refused.
    - Fractional numbers (``1.5``) are refused: cyprop trains classifiers, and such
      a target is a quantity to regress, not a class.
    - Names (``"setosa"``) are mapped to 0..k-1 in sorted order.

    More than ``MAX_CLASSES`` (1000) distinct labels are refused.

    Parameters
    ----------
    path : str or path-like
        The CSV file: UTF-8 text (an Excel byte-order mark is dropped), lines ending
        in ``\\n``, ``\\r\\n`` or ``\\r``.  Anything but a regular file (a directory,
        a FIFO, a device) is refused without being opened.
    target : int, str or None
        The label column: an index (negative counts from the end) or, with a header,
        its name.  None reads features only and returns ``(X, None)``.
    header : "infer", True, False or None
        Whether the first row names the columns (None: no header, as pandas reads
        ``header=None``).  ``"infer"`` takes it as a header
        only when none of its fields is a number (every data row has at least one
        numeric feature, so a data row is never taken for a header) and one of its
        names stands above a number in the second row.  Such a row with an empty
        name is refused: say ``header=True`` or ``False``.
    delimiter : str
        The field separator: one character, not a quote, digit, sign, point
        or exponent letter (``e``, ``E``).
    return_classes : bool
        Also return ``classes``, the original class of each label: ``classes[y[i]]``.

    Returns
    -------
    X : numpy.ndarray of float64, shape (n_samples, n_features)
        The features, every column but the target, in order.
    y : numpy.ndarray of int64, shape (n_samples,), or None
        The labels, 0..k-1; None when ``target`` is None.
    classes : numpy.ndarray or None
        Only with ``return_classes=True``: the original class of each label (numbers
        or names), None when ``target`` is None.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    OSError
        If it cannot be read.
    TypeError
        If ``target`` is neither a column index nor a name.
    ValueError
        If an option is invalid, the path is not a regular file, or the contents
        break a rule above (the message names the line and column).
    """
    header = False if header is None else header
    _check_csv_options(header, delimiter, target)
    path = _os.fspath(path)
    with _open_text(path, "CSV file") as f:
        records = _records(path, f, delimiter)
        head = list(_itertools.islice(records, 2))   # the header, if any, and a data row
        if not head:
            raise ValueError(f"{path}: the file is empty")
        names = None
        if _has_header(path, head, header):
            names = [field.strip() for field in head.pop(0)[1]]
        if not head:
            raise ValueError(f"{path}: no data rows{_delimiter_hint(names, delimiter)}")
        maybe_header = header == "infer" and names is None
        return _read_table(path, _itertools.chain(head, records), names, target,
                           maybe_header, return_classes, delimiter)


def _check_csv_options(header: object, delimiter: object, target: object) -> None:
    if not (isinstance(header, bool) or (isinstance(header, str) and header == "infer")):
        raise ValueError(f"header must be 'infer', True or False, got {header!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    # A delimiter that can occur in a number would split numbers silently.
    if delimiter in '"\r\n\0.+-0123456789eE':
        raise ValueError(f"delimiter {delimiter!r} cannot separate fields of numbers")
    if target is not None and not isinstance(target, str) and (
            isinstance(target, bool) or not isinstance(target, _numbers.Integral)):
        raise TypeError(f"target must be a column index or name, got {target!r}")


def _file_kind(mode: int) -> str:
    for test, kind in ((_stat.S_ISDIR, "a directory"), (_stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (_stat.S_ISCHR, "a character device"), (_stat.S_ISBLK, "a block device"),
                       (_stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def _check_regular_file(path: str, what: str) -> None:
    """Raise unless ``path`` is an existing regular file: a FIFO would block whoever
    opens it and a device can be endless, so they are refused from their stat."""
    try:
        mode = _os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} {path!r} not found") from None
    except OSError as exc:
        raise OSError(exc.errno, f"{what} {path!r} cannot be read: {exc.strerror}") from None
    if not _stat.S_ISREG(mode):
        raise ValueError(f"{path!r} is {_file_kind(mode)}, not a {what}")


def _open_regular_file(path: str, what: str) -> int:
    """A descriptor of ``path`` open for reading, if it is a regular file."""
    _check_regular_file(path, what)
    # Non-blocking, so that a FIFO put there since the check cannot hang the open.
    fd = _os.open(path, _os.O_RDONLY | getattr(_os, "O_NONBLOCK", 0))
    try:
        mode = _os.fstat(fd).st_mode
        if not _stat.S_ISREG(mode):
            raise ValueError(f"{path!r} is {_file_kind(mode)}, not a {what}")
    except BaseException:
        _os.close(fd)
        raise
    return fd


def _open_text(path: str, what: str) -> _typing.TextIO:
    fd = _open_regular_file(path, what)
    try:
        # -sig: drop an Excel BOM.  Bytes that are not UTF-8 come through as lone
        # surrogates, for _Lines to report with their line.
        return open(fd, newline="", encoding="utf-8-sig", errors="surrogateescape")
    except BaseException:
        _os.close(fd)
        raise


_UNDECODABLE = _re.compile("[\udc80-\udcff]")


class _Lines:
    """The lines of a text file for ``csv.reader``, counted and measured: a record too
    long or too wide is refused before csv splits it, and bytes that are not UTF-8
    are reported with their line."""

    def __init__(self, path: str, f: _typing.TextIO, delimiter: str) -> None:
        self.path, self.f, self.delimiter = path, f, delimiter
        self.number = 0      # lines read so far
        self.start_record()

    def start_record(self) -> None:
        self.chars = self.delimiters = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = self.f.readline(MAX_RECORD_CHARS + 1)
        if not line:
            raise StopIteration
        self.number += 1
        if self.number == 1:
            # a BOM after the one utf-8-sig drops (a file given one by two tools in
            # turn) would stay in the first field: the first column's name
            line = line.lstrip("\ufeff")
        undecodable = None if line.isascii() else _UNDECODABLE.search(line)
        if undecodable:
            raise ValueError(f"{self.path}, line {self.number}: not UTF-8 text (byte "
                             f"{ord(undecodable.group()) - 0xDC00:#04x}); save the file as UTF-8")
        self.chars += len(line)
        self.delimiters += line.count(self.delimiter)
        if self.chars > MAX_RECORD_CHARS:
            raise ValueError(f"{self.path}, line {self.number}: a record longer than "
                             f"{MAX_RECORD_CHARS:,} characters (not a CSV file, or an "
                             "unmatched quote?)")
        if self.delimiters >= MAX_COLUMNS:
            raise ValueError(f"{self.path}, line {self.number}: more than {MAX_COLUMNS:,} "
                             f"fields (is {self.delimiter!r} the delimiter?)")
        return line


def _records(path: str, f: _typing.TextIO, delimiter: str,
             ) -> _Iterator[tuple[int, list[str]]]:
    """(file line, fields) of each record that holds something."""
    lines = _Lines(path, f, delimiter)
    # strict: a stray quote is an error, not a silently merged field.
    reader = _csv.reader(lines, delimiter=delimiter, strict=True)
    while True:
        line = lines.number + 1
        lines.start_record()
        try:
            row = next(reader)
        except StopIteration:
            return
        except _csv.Error as exc:
            raise ValueError(f"{path}, line {lines.number}: not valid CSV ({exc})") from None
        # Blank lines (often one at the end) and rows of empty fields carry no sample.
        if any(field.strip() for field in row):
            yield line, row


def _number(text: str) -> float | None:
    """``text`` as a float, or None where it is not a number."""
    try:
        return float(text)
    except ValueError:
        return None


def _delimiter_hint(fields: list[str] | None, delimiter: str) -> str:
    """For a table read as one column: the other delimiter its line holds, as a hint (a
    tab-separated file read with ',' is one column of text: a one-line file then reads
    as a header without data, a longer one as a target without features)."""
    if fields is None or len(fields) != 1:
        return ""
    for other in (",", "\t", ";", "|"):
        if other != delimiter and other in fields[0]:
            return f" (its lines hold {other!r}: pass delimiter={other!r} if that separates them)"
    return ""


def _has_header(path: str, head: list[tuple[int, list[str]]],
                header: bool | _typing.Literal["infer"]) -> bool:
    """Whether the first record names the columns (the rule is in ``load_csv``)."""
    if header == "infer":
        first = [field.strip() for field in head[0][1]]
        if any(_number(field) is not None for field in first):
            return False      # a number: a data row (a missing value does not change that)
        if len(head) == 1:
            return all(first)
        line, second = head[1]
        if not any(name and _number(value) is not None for name, value in zip(first, second)):
            return False      # no name above a number: data (refused as not numbers)
        if not all(first):
            raise ValueError(
                f"{path}, line {head[0][0]}: looks like a header (names above the numbers "
                f"of line {line}), but column {first.index('')} has no name (a pandas "
                "index? drop it); pass header=True or header=False to say which it is")
        return True
    return header


def _read_table(path: str, rows: _Iterable[tuple[int, list[str]]], names: list[str] | None,
                target: int | str | None, maybe_header: bool, return_classes: bool,
                delimiter: str) -> tuple[_typing.Any, ...]:
    rows = iter(rows)
    first = next(rows)
    width = len(names) if names is not None else len(first[1])
    column = None if target is None else _target_index(target, names, width, path)
    features = [c for c in range(width) if c != column]
    if not features:
        raise ValueError(f"{path}: the table has only the target column, no features"
                         f"{_delimiter_hint(first[1], delimiter)}")
    # Read into flat float arrays row by row: a table of strings would take 10-50x
    # the memory of the numbers.
    values = _array.array("d")
    labels = None if column is None else _Labels(
        path, _column_name(column, names), first[0] if maybe_header else None)
    n = 0
    for line, row in _itertools.chain([first], rows):
        if len(row) != width:
            raise ValueError(f"{path}, line {line}: {len(row)} fields, but "
                             f"{'the header has' if names else 'the first row has'} {width} "
                             "(ragged rows; is the delimiter right?)")
        try:
            numbers_ = [float(row[c]) for c in features]
        except ValueError:
            _raise_bad_feature(path, line, row, features, names, maybe_header and n == 0)
        joined = "".join(row)   # (one test for the whole row: the usual one passes)
        if "_" in joined or not joined.isascii():
            _refuse_python_only_numbers(path, line, row, features, names)
        if not _math.isfinite(sum(numbers_)):   # cheap; finds inf and nan (and overflow)
            for c, value in zip(features, numbers_):
                if not _math.isfinite(value):
                    raise ValueError(f"{path}, line {line}, {_column_name(c, names)}: "
                                     f"{row[c].strip()[:100]!r} is not a finite number")
        values.extend(numbers_)
        if labels is not None:
            labels.add(line, row[column])  # type: ignore[index]  # labels: column is set
        n += 1
    X = np.frombuffer(values, dtype=np.float64).reshape(n, len(features))
    y, classes = (None, None) if labels is None else labels.result()
    return (X, y, classes) if return_classes else (X, y)


def _target_index(target: int | str, names: list[str] | None, width: int, path: str) -> int:
    if isinstance(target, str):
        if names is None:
            raise ValueError(f"target={target!r} is a column name, but {path} has no "
                             "header row; give the column's index instead")
        if target not in names:
            raise ValueError(f"{path} has no column {target!r}; its columns are "
                             f"{_abbreviate(names)}")
        if names.count(target) > 1:
            raise ValueError(f"{path} has {names.count(target)} columns named {target!r}; "
                             "give the target column's index instead")
        return names.index(target)
    if not -width <= target < width:
        raise ValueError(f"target column {target} is out of range: {path} has {width} columns")
    return int(target) % width


def _abbreviate(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _raise_bad_feature(path: str, line: int, row: list[str], features: list[int],
                       names: list[str] | None, first_row: bool) -> _typing.NoReturn:
    """Say which feature of a row is not a number (only once conversion has failed)."""
    for c in features:
        field = row[c]
        shown = repr(field.strip()[:100])
        hint = ""
        if not field.strip():
            problem = "missing value (an empty field)"
        elif "\0" in field:
            problem = f"feature {shown} holds a NUL byte (is this a text file?)"
        elif _number(field) is None:
            # The field as float() saw it: strip() also drops control characters.
            shown = shown if _number(field.strip()) is None else repr(field[:100])
            problem = f"feature {shown} is not a number (features must be numeric)"
            if first_row:
                hint = f"; if line {line} is a header, pass header=True"
        else:
            continue
        raise ValueError(f"{path}, line {line}, {_column_name(c, names)}: {problem}{hint}")
    raise ValueError(f"{path}, line {line}: the features could not be read as numbers")


def _refuse_python_only_numbers(path: str, line: int, row: list[str], features: list[int],
                                names: list[str] | None) -> None:
    """float() also reads "1_000" and digits of other scripts ("١"), which no CSV writer
    means as numbers (NumPy's loadtxt and pandas refuse them): a feature holding them is
    refused, not read as a number it may not be."""
    for c in features:
        field = row[c].strip()   # (spaces of any script around a number are fine)
        if "_" in field or not field.isascii():
            raise ValueError(f"{path}, line {line}, {_column_name(c, names)}: feature "
                             f"{field[:100]!r} is not a plain number (digits, sign, "
                             "point and exponent only)")


def _column_name(index: int, names: list[str] | None) -> str:
    return f"column {names[index]!r}" if names else f"column {index}"


class _Labels:
    """The target column, read row by row: each label is checked as it comes (so the
    first bad one is reported) and kept as the index of its class."""

    def __init__(self, path: str, column: str, first_line: int | None) -> None:
        self.path, self.column = path, column
        self.first_line = first_line   # the first row, when it may be a header read as data
        self.ids: dict[float | str, int] = {}   # class (a number or a name) -> index
        # (line, text, is a name) of the first label
        self.first: tuple[int, str, bool] | None = None
        self.y = _array.array("q")

    def _error(self, line: int, problem: str, name_line: int | None = None) -> ValueError:
        hint = ""
        if name_line is not None and name_line == self.first_line:
            hint = f"; if line {name_line} is a header, pass header=True"
        return ValueError(f"{self.path}, line {line}, {self.column}: {problem}{hint}")

    def add(self, line: int, text: str) -> None:
        text = text.strip()
        if not text:
            raise self._error(line, "the target is missing (an empty field)")
        if "\0" in text:   # (as in a feature; NumPy's strings would drop a trailing one)
            raise self._error(line, f"target {text[:100]!r} holds a NUL byte (is this a "
                              "text file?)")
        key: float | str | None
        # (float() also reads "1_1" and other scripts' digits: names, as for features)
        key = _number(text) if text.isascii() and "_" not in text else None
        shown = repr(text[:100])
        if key is None:
            key = text
        elif not _math.isfinite(key):
            raise self._error(line, f"target {shown} is not a finite number")
        elif not key.is_integer():
            raise self._error(line, f"target {shown} is a fractional number; cyprop trains "
                              "classifiers, so the target must hold classes (whole numbers "
                              "or names), not a quantity")
        elif abs(key) >= _EXACT_LIMIT:
            raise self._error(line, f"target {shown} is too large for a class number "
                              "(2**53 or more); give classes as names or smaller numbers")
        is_name = isinstance(key, str)
        if self.first is None:
            self.first = (line, text, is_name)
        elif is_name != self.first[2]:
            kinds = ("a name", "a number") if is_name else ("a number", "a name")
            raise self._error(line, f"target {shown} is {kinds[0]}, but the target on line "
                              f"{self.first[0]} ({self.first[1][:100]!r}) is {kinds[1]}; "
                              "targets must be all numbers or all names (a missing-value "
                              "marker?)", self.first[0] if self.first[2] else line)
        index = self.ids.setdefault(key, len(self.ids))
        if index >= MAX_CLASSES:
            raise self._error(line, f"more than {MAX_CLASSES} distinct targets; cyprop "
                              "trains classifiers, and this looks like a quantity to "
                              "regress")
        self.y.append(index)

    def result(self) -> tuple[_npt.NDArray[np.int64], np.ndarray]:
        """(int64 labels, classes): the rules are in ``load_csv``."""
        keys = list(self.ids)
        order = sorted(range(len(keys)), key=keys.__getitem__)
        code = np.empty(len(keys), dtype=np.int64)       # class index -> label
        assert self.first is not None   # one label at least
        if self.first[2]:
            classes = np.array([keys[i] for i in order])
            code[order] = np.arange(len(keys))
        else:
            values = np.array([keys[i] for i in order], dtype=np.int64)
            if values[0] >= 0 and values[-1] < max(10, 2 * len(values)):
                classes = np.arange(values[-1] + 1)
                code[order] = values
            else:
                classes = values
                code[order] = np.arange(len(keys))
        return code[np.frombuffer(self.y, dtype=np.int64)], classes
