"""Choosing a backend: the compiled core when it imports, else the NumPy reference."""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

from . import _reference

_compiled: ModuleType | None
_IMPORT_ERROR: ImportError | None
try:
    from . import _compiled
    _IMPORT_ERROR = None
except ImportError as exc:  # the extension was not built for this platform
    _compiled = None
    _IMPORT_ERROR = exc

BACKENDS = ("auto", "cython", "numpy")
_warned = False  # the fallback warning is given once per process, not once per network


def available() -> tuple[str, ...]:
    """The backends that can run here.

    Returns
    -------
    tuple of str
        ``("cython", "numpy")`` when the compiled extension can be imported, else
        ``("numpy",)``.
    """
    return ("cython", "numpy") if _compiled is not None else ("numpy",)


def resolve(name: str) -> tuple[str, Any]:
    """(resolved name, backend module) for ``"auto"``, ``"cython"`` or ``"numpy"``.

    The backend is ``_reference`` (a module) or ``_compiled.default`` (a
    ``CompiledBackend``): the same functions, duck-typed."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        return "numpy", _reference
    if _compiled is not None:
        return "cython", _compiled.default
    if name == "cython":
        raise ImportError(
            "backend='cython' was asked for, but cyprop's compiled extension cannot be "
            f"imported ({_IMPORT_ERROR}); reinstall cyprop with a C compiler available, "
            "or use backend='numpy'")
    global _warned
    if not _warned:
        _warned = True
        warnings.warn(
            f"cyprop's compiled extension cannot be imported ({_IMPORT_ERROR}); "
            "falling back to the much slower NumPy backend", RuntimeWarning, stacklevel=3)
    return "numpy", _reference
