"""The compiled backend: the same functions as ``_reference.py``, run by the Cython core.

The core is built once per instruction set (``_core`` portable, ``_core_avx2``,
``_core_avx512``); the best one this CPU runs is chosen once, at import, unless the
environment variable ``CYPROP_KERNEL`` names one.  Inputs arrive validated and
converted (``_validation.py``); this module only allocates what the kernels fill.
"""

import importlib
import os
import warnings

import numpy as np

from . import _core as _baseline
from ._training import TrainingOptions

#: Best first.
INSTRUCTION_SETS = ("avx512", "avx2", "baseline")


def _load_kernels():
    """The kernel modules this build has and this CPU runs, by instruction set."""
    kernels = {}
    for name in INSTRUCTION_SETS:
        if not _baseline.cpu_runs(name):
            continue
        try:
            kernels[name] = (_baseline if name == "baseline"
                             else importlib.import_module(f"cyprop._core_{name}"))
        except ImportError:  # not built on this platform or compiler
            pass
    return kernels


def _choose(kernels):
    forced = os.environ.get("CYPROP_KERNEL", "").strip().lower()
    if not forced or forced == "auto":
        return next(iter(kernels))
    if forced not in INSTRUCTION_SETS:
        raise ImportError(f"CYPROP_KERNEL={forced!r} is not one of "
                          f"{', '.join(INSTRUCTION_SETS)} or 'auto'")
    if forced not in kernels:
        best = next(iter(kernels))
        warnings.warn(f"CYPROP_KERNEL={forced!r}: this build or CPU cannot run it; "
                      f"using {best!r}", RuntimeWarning, stacklevel=2)
        return best
    return forced


def _blas_capsules():
    """scipy's BLAS gemm routines, or None: without scipy, mini-batches run as
    per-sample loops (correct, but slower for batches of more than a few samples)."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return None
    return cython_blas.__pyx_capi__["dgemm"], cython_blas.__pyx_capi__["sgemm"]


KERNELS = _load_kernels()
CHOSEN = _choose(KERNELS)
BLAS = _blas_capsules()
for _kernel in KERNELS.values():
    _kernel.set_blas(*(BLAS or (None, None)))

#: Rows per matrix product in forward() and loss/gradient evaluation.
CHUNK_ROWS = 256
#: Smallest mini-batch trained with matrix products rather than per-sample loops.
MIN_BLAS_BATCH = 4


class CompiledBackend:
    """The backend interface over one kernel module."""

    def __init__(self, instruction_set=None):
        self.instruction_set = instruction_set or CHOSEN
        self.core = KERNELS[self.instruction_set]

    def forward(self, arch, params, X, every_layer=False):
        width = sum(arch.sizes[1:]) if every_layer else arch.n_outputs
        out = np.empty((X.shape[0], width), dtype=params.dtype)
        if X.shape[0]:
            self.core.forward(arch.sizes_array, arch.activation_codes, params, X, out,
                              CHUNK_ROWS)
        if not every_layer:
            return out
        bounds = np.cumsum(arch.sizes[1:])[:-1]
        return [np.ascontiguousarray(block) for block in np.split(out, bounds, axis=1)]

    def loss_and_gradients(self, arch, params, X, Y, want_grad=True):
        grad = np.empty(arch.n_params if want_grad else 0, dtype=params.dtype)
        loss, correct = self.core.loss_and_gradients(
            arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y, grad,
            CHUNK_ROWS)
        return loss, correct, grad if want_grad else None

    def train_epoch(self, arch, params, X, Y, order, batch_size, optimizer,
                    options=TrainingOptions()):
        state = optimizer.state_for(params)
        grad = np.empty_like(params)
        dropout = options.dropout
        loss, correct, optimizer.steps = self.core.train_epoch(
            arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y, order,
            batch_size, optimizer.code, optimizer.hyper(), state, optimizer.steps, grad,
            batch_size >= MIN_BLAS_BATCH, options.sample_weight,
            None if dropout is None else dropout.rates, 0 if dropout is None else dropout.seed,
            options.max_norm, options.n_threads or 0)
        return loss, correct


default = CompiledBackend()
