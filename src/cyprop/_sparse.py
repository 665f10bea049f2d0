"""Rows of a dense array or a ``scipy.sparse`` matrix, made dense a block at a time.

cyprop's kernels take dense C-contiguous rows.  The scikit-learn estimators accept
sparse input (CSR, CSC, COO; matrices and arrays) without densifying the whole data
set: the rows the kernels need next are converted into a dense block of bounded size
(``BLOCK_BYTES``), used, and dropped.  Dense input goes through the same block
boundaries where a result must not depend on the input's format (the full-batch
loss and gradient of ``solver='lbfgs'``), and in one piece where it cannot matter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _backend, _chunks

try:
    import scipy.sparse as _sp
except ImportError:  # scipy is optional for cyprop itself; the estimators need it
    _sp = None

#: Dense bytes made from sparse rows at a time (and the size of a block of rows
#: evaluated at once by the full-batch loss and gradient).
BLOCK_BYTES = 1 << 24
#: Blocks hold a multiple of the compiled core's rows per matrix product, so that its
#: products see the same rows whether it gets the whole array or a block of it (without
#: the compiled core, any number of rows will do).
CHUNK_ROWS = (_backend._compiled.TUNING["chunk_rows"] if _backend._compiled is not None
              else 1)


_NO_ORDER = np.empty(0, dtype=np.intp)


def issparse(X: object) -> bool:
    return _sp is not None and _sp.issparse(X)


def block_rows(n_features: int, itemsize: int) -> int:
    """Rows per dense block: ``BLOCK_BYTES`` of them, a multiple of ``CHUNK_ROWS``."""
    rows = BLOCK_BYTES // max(1, int(n_features) * int(itemsize))
    return max(CHUNK_ROWS, rows // CHUNK_ROWS * CHUNK_ROWS)


def as_rows(X: Any) -> Any:
    """A sparse X in the format whose rows are cheap to slice and gather (CSR), its
    index arrays checked; a dense X as it is."""
    if issparse(X):
        check_indices(X)
        if X.format != "csr":
            return X.tocsr()
    return X


def check_indices(X: Any, name: str = "X") -> None:
    """Refuse a CSR, CSC or COO ``X`` whose index arrays point outside it (set by hand,
    or read from a damaged file): scipy's conversions and ``toarray`` write where they
    point, unchecked (a crash, or values moved to other rows and columns).  Checked
    here without ``check_format``, which would rewrite the caller's matrix."""
    def refuse(problem: str) -> None:
        raise ValueError(f"{name} is a malformed scipy.sparse {type(X).__name__}: {problem}")

    def check_range(what: str, index: np.ndarray, size: int) -> None:
        if index.size and (index.min() < 0 or index.max() >= size):
            bad = index[(index < 0) | (index >= size)][0]
            refuse(f"{what} index {bad} outside 0..{size - 1}")

    if X.format == "coo":
        row, col = np.asarray(X.row), np.asarray(X.col)
        if not len(row) == len(col) == len(X.data):
            refuse(f"{len(row)} row and {len(col)} column indices for {len(X.data)} values")
        check_range("row", row, X.shape[0])
        check_range("column", col, X.shape[1])
    elif X.format in ("csr", "csc"):
        major, minor = X.shape if X.format == "csr" else X.shape[::-1]
        kind = ("row", "column") if X.format == "csr" else ("column", "row")
        indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
        if indptr.shape != (major + 1,):
            refuse(f"indptr has {indptr.size} entries for {major} {kind[0]}s (needs "
                   f"{major + 1})")
        if (indptr[0] != 0 or np.any(np.diff(indptr) < 0)
                or indptr[-1] > min(len(indices), len(X.data))):
            refuse(f"indptr does not rise from 0 to at most the {len(indices)} indices and "
                   f"{len(X.data)} values")
        check_range(kind[1], indices[:indptr[-1]], minor)


def dense(X: Any, dtype: npt.DTypeLike) -> np.ndarray:
    """X (dense or sparse rows) as a C-contiguous dense array of ``dtype``."""
    if issparse(X):
        X = X.toarray()
    return np.ascontiguousarray(X, dtype=dtype)


def blocks(X: Any, dtype: npt.DTypeLike, rows: int | None = None,
           ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, dense rows start:stop) over X in blocks of ``rows`` rows
    (``block_rows`` by default).  A Dask array or memory map (``_chunks.Rows``, of
    ``dtype``) is read through ``_chunks.read_ahead``: a block is valid until the next
    is asked for."""
    n = X.shape[0]
    step = rows or block_rows(X.shape[1], np.dtype(dtype).itemsize)
    if isinstance(X, _chunks.Rows):
        assert X.dtype == dtype, "Rows are read in their own dtype"
        bounds = [(start, min(start + step, n), _NO_ORDER) for start in range(0, n, step)]
        for start, stop, _, block in _chunks.read_ahead(X, bounds):
            yield start, stop, block
        return
    for start in range(0, n, step):
        stop = min(start + step, n)
        yield start, stop, dense(X[start:stop], dtype)


def row_blocks(X: Any, rows: int) -> Iterator[tuple[int, int, Any]]:
    """(start, stop, X[start:stop]) over X in blocks of ``rows`` rows, left as they are
    (a sparse X stays sparse: CSR row slices share nothing dense)."""
    n = X.shape[0]
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        yield start, stop, X[start:stop]


def take(X: Any, index: Any, dtype: npt.DTypeLike) -> np.ndarray:
    """Rows ``index`` of X (dense or sparse) as a dense C-contiguous array."""
    return dense(X[index], dtype)


def map_rows(function: Callable[[np.ndarray], np.ndarray], X: Any, dtype: npt.DTypeLike,
             width: int, out_dtype: npt.DTypeLike | None = None) -> np.ndarray:
    """``function(dense rows)`` for every row of X, as one (n, width) array: a dense X
    of the right dtype and layout in one call, anything else a block at a time (so a
    sparse X, or a dense one that needs converting, never exists densely in full)."""
    if isinstance(X, np.ndarray) and X.dtype == dtype and X.flags.c_contiguous:
        return function(X)
    out = np.empty((X.shape[0], width), dtype=out_dtype or dtype)
    for start, stop, block in blocks(X, dtype):
        out[start:stop] = function(block)
    return out
