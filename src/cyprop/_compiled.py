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
from .optimizers import OPTIMIZERS

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


def _usable_cores():
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CORES = _usable_cores()


def threads(requested=None):
    """Threads for one call: the request (default: OMP_NUM_THREADS or what threadpoolctl
    set, else all cores), capped to the cores this process may use: more would only
    wait for each other, and every thread has scratch buffers of its own."""
    wanted = requested if requested is not None else KERNELS[CHOSEN].max_threads()
    return max(1, min(wanted, CORES))


# What the kernels read for each optimizer code: the length of ``hyper()`` and the rows
# of state.  A class that claims a code must match it, or the kernel would read past.
_KERNEL_OPTIMIZERS = {cls.code: (len(cls().hyper()), cls.n_slots)
                      for cls in OPTIMIZERS.values()}


def _kernel_inputs(optimizer, params):
    """(hyper-parameters, state) of ``optimizer`` for the kernel, checked against what
    the kernel reads for the optimizer's code."""
    expected = _KERNEL_OPTIMIZERS.get(type(optimizer).code)
    if expected is None:
        raise TypeError(f"the compiled backend runs cyprop's own optimizers "
                        f"({', '.join(OPTIMIZERS)}); {type(optimizer).__name__} has no "
                        "compiled step: train with backend='numpy'")
    hyper, state = np.asarray(optimizer.hyper()), optimizer.state_for(params)
    if (hyper.shape != (expected[0],) or hyper.dtype != np.float64
            or state.shape[0] != expected[1]):
        raise ValueError(f"{type(optimizer).__name__} does not match the compiled step of its "
                         f"code {type(optimizer).code}: hyper() has shape {hyper.shape} and "
                         f"the state {state.shape[0]} rows, expected ({expected[0]},) and "
                         f"{expected[1]}")
    return hyper, state
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
                              CHUNK_ROWS, threads())
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
        hyper, state = _kernel_inputs(optimizer, params)
        grad = np.empty_like(params)
        dropout = options.dropout
        if dropout is not None and dropout.rates.shape != (arch.n_layers,):
            raise ValueError(f"dropout needs one rate per weight layer ({arch.n_layers}), "
                             f"got {dropout.rates.shape[0]}")
        # (the count is the kernel's own: past MAX_STEPS only by this call's steps)
        loss, correct, optimizer._steps = self.core.train_epoch(
            arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y, order,
            batch_size, optimizer.code, hyper, state, optimizer.steps, grad,
            batch_size >= MIN_BLAS_BATCH, options.sample_weight,
            None if dropout is None else dropout.rates, 0 if dropout is None else dropout.seed,
            options.max_norm, threads(options.n_threads))
        return loss, correct


default = CompiledBackend()
