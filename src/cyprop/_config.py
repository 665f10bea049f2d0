"""What this installation of cyprop runs on: ``cyprop.show_config()``."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np

from . import _backend
from ._version import __version__


def config() -> dict[str, Any]:
    """A dict describing the installation: version, backends, compiled kernels.

    Returns
    -------
    dict
        ``cyprop``, ``python``, ``numpy`` (versions), ``platform``, ``machine``,
        ``backends`` (as ``available_backends()``), the environment variables
        ``OMP_NUM_THREADS`` and ``CYPROP_KERNEL`` (None when unset), and ``kernel``:
        the instruction set of the compiled kernels in use, or None without the
        extension.  With it, also ``kernels_available``, ``extension`` (the file),
        ``blas`` and ``threads``; without it, ``extension_error`` (why it did not
        import).
    """
    info: dict[str, Any] = {
        "cyprop": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "backends": list(_backend.available()),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "CYPROP_KERNEL": os.environ.get("CYPROP_KERNEL"),
    }
    compiled = _backend._compiled
    if compiled is not None:
        core = compiled.KERNELS[compiled.CHOSEN]
        info["kernel"] = compiled.CHOSEN
        info["kernels_available"] = list(compiled.KERNELS)
        info["extension"] = core.__file__
        if core.has_blas():
            info["blas"] = "scipy" + (", one thread per call" if core.blas_threads_controlled()
                                      else "")
        elif core.has_own_products():
            info["blas"] = ("none (the kernel's own products run the mini-batches; "
                            "pip install \"cyprop[fast]\": faster small layers)")
        else:
            info["blas"] = 'none (pip install "cyprop[fast]": faster mini-batches)'
        info["threads"] = core.max_threads()
    else:
        info["kernel"] = None
        info["extension_error"] = str(_backend._IMPORT_ERROR)
    return info


def show_config() -> None:
    """Print which backend and which compiled kernel (instruction set) cyprop uses.

    One line per entry of ``config()``, to standard output.
    """
    for key, value in config().items():
        print(f"{key + ':':<20}{value}")
