"""The compiled backend: the same functions as ``_reference.py``, run by the Cython core.

The core is built once per instruction set (``_core`` portable, ``_core_avx2``,
``_core_avx512``); the best one this CPU runs is chosen once, at import, unless the
environment variable ``CYPROP_KERNEL`` names one.  Inputs arrive validated and
converted (``_validation.py``); this module chooses the plan of each call (its path,
its optimizer rule, the tuning constants) and allocates what the kernels fill.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from . import _core as _baseline
from ._training import TrainingOptions
from .history import History
from .optimizers import MAX_STEPS, OPTIMIZERS, Hyper, Optimizer, OptimizerHyper

if TYPE_CHECKING:
    from ._architecture import Architecture

#: Best first.
INSTRUCTION_SETS = ("avx512", "avx2", "baseline")


def _load_kernels() -> dict[str, ModuleType]:
    """The kernel modules this build has and this CPU runs, by instruction set."""
    kernels: dict[str, ModuleType] = {}
    for name in INSTRUCTION_SETS:
        if not _baseline.cpu_runs(name):
            continue
        try:
            kernels[name] = (_baseline if name == "baseline"
                             else importlib.import_module(f"cyprop._core_{name}"))
        except ImportError:  # not built on this platform or compiler
            pass
    return kernels


def _choose(kernels: dict[str, ModuleType]) -> str:
    forced = os.environ.get("CYPROP_KERNEL", "").strip().lower()
    best = next(iter(kernels))
    if not forced or forced == "auto":
        return best
    # Not an ImportError: _backend takes that for a missing extension and would run
    # everything on NumPy over a typo.
    if forced not in INSTRUCTION_SETS:
        warnings.warn(f"CYPROP_KERNEL={forced!r} is not one of "
                      f"{', '.join(INSTRUCTION_SETS)} or 'auto'; ignored, using {best!r}",
                      RuntimeWarning, stacklevel=2)
        return best
    if forced not in kernels:
        warnings.warn(f"CYPROP_KERNEL={forced!r}: this build or CPU cannot run it; "
                      f"using {best!r}", RuntimeWarning, stacklevel=2)
        return best
    return forced


def _blas_capsules() -> tuple[Any, Any] | None:
    """scipy's BLAS gemm routines, or None: without scipy, mini-batches run through the
    AVX-512 kernel's own products (has_products), or with the other kernels as
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

def _usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


CORES = _usable_cores()


def _level2_cache_bytes() -> int:
    """One core's L2 cache (Linux's sysfs); 1 MiB, the smaller of the CPUs these kernels
    were tuned on, where the OS does not say."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for index in sorted(os.listdir(base)):
            with open(f"{base}/{index}/level") as f:
                if f.read().strip() != "2":
                    continue
            with open(f"{base}/{index}/size") as f:
                size = f.read().strip().upper()
            scale = {"K": 1 << 10, "M": 1 << 20}.get(size[-1:], 1)
            return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 1 << 20


LEVEL2_CACHE = _level2_cache_bytes()
#: Whether the blocks of the 'blocks' path stay within L2 (blocks_path_rows).  AMD Zen 4
#: ran blocks of 64 and 128 rows faster than 32 even where they overflow its 1 MiB L2
#: (first layers of 784 x 100 to 784 x 512, both dtypes: README); on Intel they were
#: measured only where they fit its 2 MiB, so there they stay within it.
BLOCKS_WITHIN_LEVEL2 = _baseline.cpu_vendor() != "amd"


def threads(requested: int | None = None) -> int:
    """Threads for one call: the request (default: OMP_NUM_THREADS or what threadpoolctl
    set, else all cores), capped to the cores this process may use: more would only
    wait for each other, and every thread has scratch buffers of its own."""
    wanted = requested if requested is not None else KERNELS[CHOSEN].max_threads()
    return max(1, min(wanted, CORES))


#: The tuning constants of the compiled paths, in one place; plan() hands them to the
#: kernels.  They set the speed, and the order of the sums in the matrix products (so
#: their rounding): fixed here, never by the thread count, the results do not depend on it.
TUNING = {
    # Smallest mini-batch trained with matrix products (BLAS) rather than one sample at
    # a time.
    "min_blas_batch": 4,
    # Rows of a mini-batch fed forward and back at a time: a block of 32 rows of inputs
    # and activations stays in L2 beside the weights; 64 or 128 at once ran slower
    # through the BLAS on AMD Zen 4 (1 MiB L2) and on Intel Sapphire Rapids (2 MiB)
    # alike, and within a few percent either way with the AVX-512 kernel's own products
    # (README) ...
    "block_rows": 32,
    # ... but a batch that is one block steps plain SGD's first layer in its gradient
    # product (no second pass over those weights), and reads and writes the gradient
    # sums once: with the own products (AVX-512), a first layer of at least
    # large_block_weights weights takes blocks of up to block_rows_max rows, on Intel as
    # many as fit in three quarters of the L2 cache beside its weights (counted in
    # float64: the same plan, so the same sums, for both dtypes; BLOCKS_WITHIN_LEVEL2).
    # W2 and W3 ran faster at batch sizes 64 and 128, W1 slower; through the BLAS (AVX2)
    # 128 rows ran as fast as 32.
    "block_rows_max": 128,
    "large_block_weights": 16_384,
    # Rows per matrix product in forward() and loss/gradient evaluation.
    "chunk_rows": 256,
    # Multiply-adds of a layer's matrix product per part, at least, when it is split
    # into parts for parallel threads (below that a thread costs more than it saves) ...
    "part_work": 500_000,
    # ... and at most this many parts (on one core, W3's 100 units in 4 parts ran faster
    # than in 1 or 2; many more would cut each product too thin).
    "max_parts": 4,
    # Online SGD (plain, or with momentum) runs its first layer over blocks of samples as
    # matrix products (path 'online-blocks') when the layer has at least this many
    # weights.  W1's 2048
    # ran 1.2-1.3x faster blocked (one core); a 6-5-3 net ran 20% slower: below this
    # the BLAS calls cost more than the per-sample loop over an L1-resident layer.
    "online_block_weights": 2048,
    # Samples per block on that path (online_block_rows): k = n_hidden / 4, rounded to
    # a multiple of 8.  A block reads W twice for k samples (the per-sample loop: twice
    # per sample), but adds a Gram matrix (k * k * n_in multiply-adds, k / (2 n_hidden)
    # of the two products with W: an eighth at n_hidden / 4) and a triangle of
    # corrections.  Measured best (one core): W2 (30 hidden) k 12-16, W3 (100) 24-32,
    # 784-256-10 32-64; fewer than 16 rows re-use each weight too little, more than 64
    # rows of inputs crowd W out of L2 and add Gram work.
    "online_block_min": 16,
    "online_block_max": 64,
    # Small mini-batches of SGD (plain or momentum) run their first layer over blocks of
    # whole batches (path 'batch-blocks') when the layer passes online_block_weights and
    # the batch has at most batch_block_max_batch rows: one pass over W per block instead
    # of the blocks path's three per batch (forward product, gradient product, step).
    # Measured (one core, W2 and W3, float32/64), plain SGD: 1.6-3.8x faster at batch
    # sizes 2 and 4, 1.06-1.3x at 10; at 16 slower on W3 and W2 float32, at 32 slower
    # everywhere (the layers above go one sample at a time, the products are of few
    # rows).  Momentum steps W and its buffer at each block's end (one more pass, two
    # more products): 1.1-2.3x faster at 2 and 4, but 0.7x at 10.
    "batch_block_max_batch": 10,
    "batch_block_max_batch_momentum": 4,
    # ... from min_blas_batch rows on, where the blocks path's products take over, only
    # for a first layer of at least this many weights: W1's 2,048 ran 0.77-0.97x as fast
    # as the blocks path at batch sizes 4 and 10 (one core), W2's 23,520 1.1-1.7x.
    "batch_block_weights_blas": 16_384,
    # Rows per block on that path: whole batches up to this many rows (a batch larger
    # than this is a block of its own).  Blocks of 8-10 rows ran fastest on W2 and W3;
    # 16 or more ran up to 1.4x slower on W3 (the products with W, 784 x 100, leave
    # OpenBLAS's small-matrix kernels there) and add Gram and correction work.
    "batch_block_rows": 8,
}


def batch_block_rows(batch_size: int) -> int:
    """Rows per block of the 'batch-blocks' path: whole batches, as many as fit in
    TUNING's batch_block_rows, at least one."""
    return batch_size * max(1, TUNING["batch_block_rows"] // batch_size)


def blocks_path_rows(arch: Architecture, core: ModuleType) -> int:
    """Rows per block of the 'blocks' path on ``core`` (TUNING: block_rows to
    block_rows_max), from the first layer's size and, on Intel, this CPU's L2 cache."""
    n_in, n_units = arch.sizes[0], arch.sizes[1]
    rows = TUNING["block_rows"]
    if core.has_own_products() and n_in * n_units >= TUNING["large_block_weights"]:
        while (rows * 2 <= TUNING["block_rows_max"]
               and (not BLOCKS_WITHIN_LEVEL2
                    or (rows * 2 + n_units) * n_in * 8 <= LEVEL2_CACHE * 3 // 4)):
            rows *= 2
    return rows


def online_block_rows(n_hidden: int) -> int:
    """Samples per block of the 'online-blocks' path, from the first layer's width
    (TUNING: online_block_min, online_block_max)."""
    k = (n_hidden // 4 + 4) // 8 * 8
    return max(TUNING["online_block_min"], min(TUNING["online_block_max"], k))


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one compiled call runs: the path (one of the core's PATHS), the optimizer
    rule (one of its RULES; None for forward and loss evaluation) and the tuning.

    Paths: ``online-next`` (batch size 1: each parameter stepped as its gradient is
    known, the first layer's step fused with the next sample's forward pass),
    ``online`` (the same without the first-layer fusion: one weight layer, or a
    max-norm step between samples), ``online-blocks`` (SGD, plain or with momentum, at
    batch size 1 with the first layer's products over blocks of ``block_rows`` samples:
    the same steps in fewer passes over its weights), ``batch-blocks`` (the same for
    small mini-batches of SGD: blocks of ``block_rows`` rows, whole batches, one step
    per batch), ``samples`` (gradient sums one sample at a time,
    then one step per batch), ``blocks`` (gradient sums as matrix products over blocks
    of rows, then one step per batch)."""

    path: str
    rule: str | None
    batch_size: int = 0
    block_rows: int = 1          # rows per matrix product, on the blocks paths
    n_threads: int = 0           # threads for a layer's parts; 0: whole layers
    part_work: int = TUNING["part_work"]
    max_parts: int = TUNING["max_parts"]

    def struct(self, core: ModuleType) -> dict[str, int]:
        """The plan as ``core``'s struct Plan reads it (names to codes)."""
        return {"path": core.PATHS.index(self.path),
                "rule": -1 if self.rule is None else core.RULES.index(self.rule),
                "batch_size": self.batch_size, "block_rows": self.block_rows,
                "n_threads": self.n_threads, "part_work": self.part_work,
                "max_parts": self.max_parts}


def _rule(optimizer: Optimizer, core: ModuleType) -> str:
    """The name of the compiled rule that takes ``optimizer``'s steps, checked against
    what the kernel reads for the optimizer's code (its hyper-parameters and rows of
    state), so that a class claiming a code it does not match is refused, never read
    past."""
    cls = type(optimizer)
    if not isinstance(cls.code, int) or not 0 <= cls.code < len(core.OPTIMIZERS):
        raise TypeError(f"the compiled backend runs cyprop's own optimizers "
                        f"({', '.join(OPTIMIZERS)}); {cls.__name__} has no "
                        "compiled step: train with backend='numpy'")
    name = core.OPTIMIZERS[cls.code]
    own = OPTIMIZERS.get(name)
    if own is not None and cls.update_params is not own.update_params:
        # a step of its own, which the compiled rule would silently replace
        raise TypeError(f"the compiled backend runs cyprop's own optimizers "
                        f"({', '.join(OPTIMIZERS)}); {cls.__name__} has no compiled "
                        "step (it overrides update_params): train with backend='numpy'")
    hyper = core_hyper(optimizer)
    if not isinstance(hyper, Hyper):
        raise ValueError(f"{cls.__name__} does not match the compiled step of its code "
                         f"{cls.code} ({name}): hyper() gives a {type(hyper).__name__}, "
                         "not an OptimizerHyper")
    rule = name.lower() if name != "SGD" else "momentum" if hyper.momentum else "sgd"
    if cls.n_slots != core.STATE_ROWS[rule]:
        raise ValueError(f"{cls.__name__} does not match the compiled step of its code "
                         f"{cls.code} ({name}): its state has {cls.n_slots} rows, the "
                         f"rule {rule!r} {core.STATE_ROWS[rule]}")
    return rule


def core_hyper(optimizer: Optimizer) -> Hyper:
    """The optimizer's hyper-parameters as the compiled core reads them: its own
    dataclass's ``core()`` (a ``Hyper`` as it is, from an optimizer that gives one)."""
    hyper = optimizer.hyper()
    return hyper.core() if isinstance(hyper, OptimizerHyper) else hyper


def plan(arch: Architecture, optimizer: Optimizer, batch_size: int,
         options: TrainingOptions = TrainingOptions(), core: ModuleType | None = None,
         n_samples: int | None = None) -> Plan:
    """The Plan of a training call (what CompiledBackend.train_epoch runs) over
    ``n_samples`` samples (None: any number)."""
    core = core or KERNELS[CHOSEN]
    rule = _rule(optimizer, core)
    if batch_size == 1:
        # the first layer's step is fused with the next sample's forward pass, which a
        # max-norm step between the two would break
        fuse_next = arch.n_layers > 1 and not options.max_norm
        n_in, n_hidden = arch.sizes[0], arch.sizes[1]
        # (one sample has no block to share the first layer's reads with)
        if (fuse_next and rule in ("sgd", "momentum") and options.dropout is None
                and core.has_products()
                and n_in * n_hidden >= TUNING["online_block_weights"]
                and (n_samples is None or n_samples > 1)):
            # SGD's first layer (with or without momentum) over blocks of samples: the
            # same steps
            return Plan("online-blocks", rule, 1, online_block_rows(n_hidden))
        return Plan("online-next" if fuse_next else "online", rule, 1)
    n_threads = threads(options.n_threads)
    largest = TUNING["batch_block_max_batch" if rule == "sgd"
                     else "batch_block_max_batch_momentum"]
    if (rule in ("sgd", "momentum") and 2 <= batch_size <= largest
            and arch.n_layers > 1 and not options.max_norm and options.dropout is None
            and core.has_products()
            and arch.sizes[0] * arch.sizes[1] >= TUNING[
                "online_block_weights" if batch_size < TUNING["min_blas_batch"]
                else "batch_block_weights_blas"]
            and (n_samples is None or n_samples > batch_size)
            and _first_layer_parts(arch, batch_size, core) == 1):
        # SGD's first layer over blocks of whole batches: the same steps.  The path runs
        # on one thread; it is planned only where the blocks path would not split the
        # batch's first layer over threads either, so that neither the plan nor the
        # results depend on the thread count.
        return Plan("batch-blocks", rule, batch_size, batch_block_rows(batch_size))
    if batch_size >= TUNING["min_blas_batch"] and core.has_products():
        return Plan("blocks", rule, batch_size, blocks_path_rows(arch, core), n_threads)
    return Plan("samples", rule, batch_size, 1, n_threads)


def _first_layer_parts(arch: Architecture, batch_size: int, core: ModuleType) -> int:
    """The parts that the blocks path splits a batch's first layer into (the core's
    part_count): more than one, and it can run them on parallel threads."""
    n_in, n_hidden = arch.sizes[0], arch.sizes[1]
    rows = min(batch_size, blocks_path_rows(arch, core))
    parts = min(rows * n_in * n_hidden // TUNING["part_work"], TUNING["max_parts"],
                n_hidden // 16)
    return max(1, parts)


def evaluation_plan(core: ModuleType, n_threads: int = 0) -> Plan:
    """The Plan of forward() and loss/gradient evaluation: blocks of rows as matrix
    products when the kernel has them (a BLAS, or its own), else one sample at a time."""
    if core.has_products():
        return Plan("blocks", None, block_rows=TUNING["chunk_rows"], n_threads=n_threads)
    return Plan("samples", None, n_threads=n_threads)


class CompiledBackend:
    """The backend interface over one kernel module."""

    def __init__(self, instruction_set: str | None = None) -> None:
        self.instruction_set = instruction_set or CHOSEN
        self.core = KERNELS[self.instruction_set]

    @overload
    def forward(self, arch: Architecture, params: NDArray[Any], X: NDArray[Any],
                every_layer: Literal[False] = ...) -> NDArray[Any]: ...
    @overload
    def forward(self, arch: Architecture, params: NDArray[Any], X: NDArray[Any],
                every_layer: bool = ...) -> NDArray[Any] | list[NDArray[Any]]: ...
    def forward(self, arch: Architecture, params: NDArray[Any], X: NDArray[Any],
                every_layer: bool = False) -> NDArray[Any] | list[NDArray[Any]]:
        width = sum(arch.sizes[1:]) if every_layer else arch.n_outputs
        out = np.empty((X.shape[0], width), dtype=params.dtype)
        if X.shape[0]:
            self.core.forward(arch.sizes_array, arch.activation_codes, params, X, out,
                              evaluation_plan(self.core, threads()).struct(self.core))
        if not every_layer:
            return out
        bounds = np.cumsum(arch.sizes[1:])[:-1]
        return [np.ascontiguousarray(block) for block in np.split(out, bounds, axis=1)]

    def few_rows(self, arch: Architecture, params: NDArray[Any]) -> Any:
        """forward/predict of up to one chunk of rows checked in C, on ``params`` (see
        the core's FewRows)."""
        return self.core.FewRows(arch.sizes_array, arch.activation_codes, params,
                                 evaluation_plan(self.core).struct(self.core), np, History)

    def loss_and_gradients(self, arch: Architecture, params: NDArray[Any], X: NDArray[Any],
                           Y: NDArray[Any],
                           want_grad: bool = True) -> tuple[float, int, NDArray[Any] | None]:
        grad = np.empty(arch.n_params if want_grad else 0, dtype=params.dtype)
        loss, correct = self.core.loss_and_gradients(
            arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y, grad,
            evaluation_plan(self.core).struct(self.core))
        return loss, correct, grad if want_grad else None

    def plan(self, arch: Architecture, optimizer: Optimizer, batch_size: int,
             options: TrainingOptions = TrainingOptions(),
             n_samples: int | None = None) -> Plan:
        return plan(arch, optimizer, batch_size, options, self.core, n_samples)

    def prepare_one_sample(self, rows: Any, arch: Architecture, optimizer: Optimizer,
                           max_norm: float | None, setting: object) -> None:
        """Set ``rows`` (a FewRows of this core) to train one sample at a time with
        ``optimizer`` (already checked), as train_epoch would plan it; ``setting`` names
        what it was prepared for."""
        options = TrainingOptions(max_norm=max_norm)
        chosen = self.plan(arch, optimizer, 1, options, 1)
        rows.prepare(setting, arch.loss_code, chosen.struct(self.core),
                     vars(core_hyper(optimizer)), type(optimizer).n_slots, options.max_norm)

    def train_epoch(self, arch: Architecture, params: NDArray[Any], X: NDArray[Any],
                    Y: NDArray[Any],
                    order: NDArray[np.intp], batch_size: int, optimizer: Optimizer,
                    options: TrainingOptions = TrainingOptions()) -> tuple[float, int]:
        chosen = self.plan(arch, optimizer, batch_size, options, len(order))
        state = optimizer.state_for(params)
        dropout = options.dropout
        if dropout is not None and dropout.rates.shape != (arch.n_layers,):
            raise ValueError(f"dropout needs one rate per weight layer ({arch.n_layers}), "
                             f"got {dropout.rates.shape[0]}")
        # (the count is the kernel's own: past MAX_STEPS only by this call's steps)
        loss, correct, steps = self.core.train_epoch(
            arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y, order,
            chosen.struct(self.core), vars(core_hyper(optimizer)), state,
            optimizer.steps, options.sample_weight,
            None if dropout is None else dropout.rates, 0 if dropout is None else dropout.seed,
            options.max_norm)
        # saturated there, which save, copy and load accept (from there on the count
        # changes no step: Adam's bias corrections are exactly 1)
        optimizer._steps = min(steps, MAX_STEPS)
        return loss, correct


default = CompiledBackend()
