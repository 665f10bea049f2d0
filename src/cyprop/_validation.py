"""Input checks and conversions, done once in Python before any kernel runs.

Every function returns arrays the kernels can trust: the network's dtype,
C-contiguous, finite, of the right shape.  The caller's arrays are never modified
(a conversion copies; an array that already fits is used read-only as it is).
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

DTYPES = {"float32": np.float32, "float64": np.float64}


def check_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in DTYPES:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return np.dtype(name)


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {_short(value)}")
    # (typeshed's numbers.Integral declares __lt__ but no __gt__; it works at run time)
    if maximum is not None and value > maximum:  # type: ignore[operator]
        raise ValueError(f"{name} must be <= {maximum}, got {_short(value)}")
    return int(value)


def check_number(name: str, value: object, minimum: float | None = None,
                 maximum: float | None = None, exclusive_minimum: bool = False,
                 exclusive_maximum: bool = False) -> float:
    """``value`` as a finite float within the bounds given, or a TypeError (not a real
    number: a string, a bool, None) or ValueError (NaN, infinite, too large for a float,
    out of range) naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:   # an int beyond float's range, such as 10**400
        number = math.inf
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {_short(value)}")
    if minimum is not None and (number <= minimum if exclusive_minimum else number < minimum):
        raise ValueError(f"{name} must be {'>' if exclusive_minimum else '>='} {minimum}, "
                         f"got {_short(value)}")
    if maximum is not None and (number >= maximum if exclusive_maximum else number > maximum):
        raise ValueError(f"{name} must be {'<' if exclusive_maximum else '<='} {maximum}, "
                         f"got {_short(value)}")
    return number


def check_bool(name: str, value: object) -> bool:
    """``value`` as a bool, if it is one (NumPy's included): "no" is not False."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_short(value)}")
    return bool(value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:20] + "..." + text[-10:]


def _refuse_sparse(name: str, data: object, refusal: str = ", which a Network does not take",
                   way_out: str = " (cyprop.sklearn's estimators take sparse input, a block "
                                  "of rows at a time)") -> None:
    """A TypeError for a scipy.sparse ``data``, which np.asarray would wrap in a 0-d
    object array (so "must hold numbers" would mislead); ``refusal`` and ``way_out``
    word the message around "convert it with .toarray()"."""
    sparse = sys.modules.get("scipy.sparse")   # (not imported: data cannot be sparse)
    if sparse is not None and sparse.issparse(data):
        raise TypeError(f"{name} is a scipy.sparse {type(data).__name__}{refusal}: convert "
                        f"it with {name}.toarray(){way_out}")


def _refuse_iterator(name: str, data: object) -> None:
    """A TypeError for a generator or other iterator, which np.asarray would wrap in a
    0-d object array (so "must hold numbers" would mislead): cyprop reads no stream."""
    if isinstance(data, Iterator):
        raise TypeError(f"{name} is an iterator ({type(data).__name__}), not an array: "
                        f"give an array (np.array(list({name}))), or, for data larger "
                        "than memory, a memory map or a Dask array")


def _unmasked(name: str, data: Any) -> Any:
    """``data``, or the data of a masked array without masked values; a ValueError for
    one with masked values."""
    if isinstance(data, np.ma.MaskedArray):
        # (its masked entries hold whatever was there: read as numbers, silently)
        if np.ma.getmaskarray(data).any():
            raise ValueError(f"{name} is a masked array with masked values; fill them "
                             f"(.filled(value)) or leave those rows out")
        data = np.ma.getdata(data)
    return data


def _as_float_array(name: str, data: ArrayLike, dtype: np.dtype[Any]) -> NDArray[Any]:
    """``data`` as an ndarray of ``dtype``, rejecting what is not numeric."""
    data = _from_pandas(_unmasked(name, data), dtype)
    _refuse_sparse(name, data)
    _refuse_iterator(name, data)
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(data)
        except ValueError as exc:  # ragged nested sequences
            raise ValueError(f"{name} is not a rectangular array: {exc}") from None
    kind = arr.dtype.kind
    if kind not in "biuf":
        raise TypeError(f"{name} must hold numbers (got dtype {arr.dtype}); "
                        "convert it to a float array first")
    with np.errstate(over="ignore"):
        arr = np.asarray(arr, dtype=dtype, order="C")   # keeps a 0-d input 0-d
    if not arr.flags.aligned:
        arr = arr.copy()   # the kernels read whole elements: never from a misaligned buffer
    if not all_finite(arr):
        raise ValueError(f"{name} contains NaN or infinity (or values too large for {dtype.name})")
    return arr


def _from_pandas(data: Any, dtype: np.dtype[Any]) -> Any:
    """A pandas DataFrame or Series of numbers in its nullable or Arrow dtypes (Float64,
    Int64, boolean, float64[pyarrow], ...) as an array of ``dtype``, a missing value as
    NaN (refused as any NaN is): NumPy makes a frame of them an array of objects, as
    scikit-learn's check_array does not.  Anything else as it is."""
    if type(data).__module__.split(".")[0] != "pandas" or getattr(data, "ndim", 0) not in (1, 2):
        return data
    dtypes = list(data.dtypes) if data.ndim == 2 else [data.dtype]
    if all(isinstance(d, np.dtype) for d in dtypes):
        return data   # NumPy's own dtypes: np.asarray converts them (and refuses objects)
    if not all(getattr(d, "kind", "O") in "biuf" for d in dtypes):
        return data   # categories, strings: refused below by their dtype
    with np.errstate(over="ignore"):
        return data.to_numpy(dtype=dtype, na_value=np.nan)


def as_targets(Y: Any, dtype: np.dtype[Any]) -> NDArray[Any]:
    """Targets or class labels as an ndarray, a pandas frame of targets in nullable or
    Arrow dtypes converted to ``dtype`` (a Series of labels converts as it is)."""
    if isinstance(Y, np.ndarray):
        return Y
    return np.asarray(_from_pandas(Y, dtype) if getattr(Y, "ndim", 0) == 2 else Y)


def all_finite(arr: NDArray[Any], block: int = 1 << 20) -> bool:
    """Whether every element is finite, without an array-sized temporary: in one pass
    of the compiled core where there is one (a contiguous float array), else a sum,
    finite only if every term is (NaN and inf propagate); only when it is not (or
    overflows) are the elements checked, a block at a time."""
    finite = _compiled_finite()
    if (finite is not None and arr.dtype in _FLOATS and arr.flags.c_contiguous
            and arr.flags.aligned):
        # (as a plain ndarray: a subclass's reshape may keep two dimensions, np.matrix's)
        return bool(finite(np.asarray(arr).reshape(-1)))
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(arr)):   # in its own dtype: no float32-to-64 copy
            return True
    flat = arr.reshape(-1)
    return all(np.isfinite(flat[i:i + block]).all() for i in range(0, flat.size, block))


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
_finite: Any = False   # not looked up yet: the compiled core imports after this module


def _compiled_finite() -> Any:
    """The compiled core's ``finite``, or None without the extension."""
    global _finite
    if _finite is False:
        from . import _backend

        _finite = None if _backend._compiled is None else _backend._compiled.default.core.finite
    return _finite


def check_X(X: ArrayLike, n_inputs: int, dtype: np.dtype[Any], allow_single: bool = False,
            name: str = "X") -> tuple[NDArray[Any], bool]:
    """X as a C-contiguous (n, n_inputs) array of ``dtype``; a 1-D X is one sample when
    ``allow_single``.  Returns (X, was_single)."""
    X = _as_float_array(name, X, dtype)
    single = False
    if X.ndim == 1 and allow_single:
        X, single = X.reshape(1, -1), True
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_samples, n_features), "
                         f"got {X.ndim} dimension(s)")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has no samples")
    if X.shape[1] != n_inputs:
        raise ValueError(f"{name} has {X.shape[1]} features, but the network expects "
                         f"{n_inputs} (sizes[0])")
    return X, single


def check_Y(Y: ArrayLike, n_samples: int, n_outputs: int, dtype: np.dtype[Any],
            name: str = "Y") -> NDArray[Any]:
    """Targets as a C-contiguous (n, n_outputs) array of ``dtype``.

    Integer class labels of shape (n,) are one-hot encoded; with a single output,
    a 1-D Y holds the targets themselves.
    """
    if not isinstance(Y, np.ndarray):
        _refuse_sparse(name, Y)
        _refuse_iterator(name, Y)
        Y = as_targets(Y, dtype)
    if Y.ndim == 1 and n_outputs > 1:
        Y = one_hot(Y, n_outputs, dtype, name)   # (counted below, as targets are)
    else:
        Y = _as_float_array(name, Y, dtype)
        if Y.ndim == 1:
            Y = Y.reshape(-1, 1)
    if Y.ndim != 2:
        raise ValueError(f"{name} must be class labels (n,) or targets (n, n_outputs), "
                         f"got {Y.ndim} dimensions")
    if Y.shape[0] != n_samples:
        raise ValueError(f"X and {name} have different numbers of samples: "
                         f"{n_samples} and {Y.shape[0]}")
    if Y.shape[1] != n_outputs:
        raise ValueError(f"{name} has {Y.shape[1]} columns, but the network has "
                         f"{n_outputs} outputs")
    return Y


def check_labels(y: ArrayLike, n_classes: int, name: str = "Y") -> NDArray[np.int64]:
    """Class labels as an int array, each in [0, n_classes)."""
    y = np.asarray(_unmasked(name, y))
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity")
        if not np.all(y == np.round(y)):
            raise ValueError(f"{name} holds class labels, but some are not whole numbers")
    elif (y.dtype.kind == "O" and y.size
          and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in y.flat)
          and any(not -2 ** 63 <= v < 2 ** 63 for v in y.flat)):
        # whole numbers beyond int64 (why NumPy keeps them as Python objects): out of range
        bad = next(v for v in y.flat if not -2 ** 63 <= v < 2 ** 63)
        raise ValueError(f"{name} has label {bad}, outside the range 0..{n_classes - 1} "
                         f"of the network's {n_classes} outputs")
    elif y.dtype.kind not in "biu":
        raise TypeError(f"{name} class labels must be integers, got dtype {y.dtype}")
    # The range is checked in the labels' own dtype: casting first could wrap them.
    outside = (y < 0) | (y >= n_classes)
    if outside.any():
        bad = y[outside][0]
        if y.dtype.kind == "f" and abs(bad) < 2 ** 63:
            bad = int(bad)   # a whole number (checked above), shown as one
        raise ValueError(f"{name} has label {bad}, outside the range 0..{n_classes - 1} "
                         f"of the network's {n_classes} outputs")
    return y.astype(np.int64)


def one_hot(y: ArrayLike, n_classes: int, dtype: DTypeLike, name: str = "Y") -> NDArray[Any]:
    labels = check_labels(y, n_classes, name)
    Y = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    Y[np.arange(labels.shape[0]), labels] = 1
    return Y


def check_XY(X: ArrayLike, Y: ArrayLike, n_inputs: int, n_outputs: int,
             dtype: np.dtype[Any]) -> tuple[NDArray[Any], NDArray[Any]]:
    X, _ = check_X(X, n_inputs, dtype)
    Y = check_Y(Y, X.shape[0], n_outputs, dtype)
    if Y.shape[0] != X.shape[0]:
        raise ValueError(f"X and Y have different numbers of samples: "
                         f"{X.shape[0]} and {Y.shape[0]}")
    return X, Y
