"""What this installation of cyprop runs on: ``cyprop.show_config()``."""

import os
import platform
import sys

import numpy as np

from . import _backend
from ._version import __version__


def config():
    """A dict describing the installation: version, backends, compiled kernels."""
    info = {
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
        info["blas"] = ("scipy" + (", one thread per call" if core.blas_threads_controlled()
                                   else "") if core.has_blas() else
                        "none (pip install scipy: faster mini-batches)")
        info["threads"] = core.max_threads()
    else:
        info["kernel"] = None
        info["extension_error"] = str(_backend._IMPORT_ERROR)
    return info


def show_config():
    """Print which backend and which compiled kernel (instruction set) cyprop uses."""
    for key, value in config().items():
        print(f"{key + ':':<20}{value}")
