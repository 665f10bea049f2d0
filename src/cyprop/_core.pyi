"""Type stub of the compiled core (csrc/_core.pyx and the csrc/*.pxi it includes).

One stub for the three builds of the same source: ``cyprop._core`` (portable) and, on
x86-64 with GCC or Clang, ``cyprop._core_avx2`` and ``cyprop._core_avx512`` (CMakeLists.txt
installs a copy of this file under each name).  Only what Python can see is here: the
``def`` functions, the ``cdef class Workspace`` and the module-level constants.

The kernels take typed memoryviews: ``floating`` (a Cython fused type) is float32 or
float64, one dtype for every floating argument of a call; ``Py_ssize_t[::1]`` is a
C-contiguous ``np.intp`` array and ``int[::1]`` one of ``np.intc``.  C structs
(``Plan``, ``Hyper``) are passed as mappings of their field names and come back as
dicts.
"""

from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Floating = NDArray[np.float32] | NDArray[np.float64]
_Sizes = NDArray[np.intp]
_Codes = NDArray[np.intc]

# _layout.pxi
ACTIVATIONS: tuple[str, ...]
LOSSES: tuple[str, ...]
PATHS: tuple[str, ...]

# _blas.pxi
INSTRUCTION_SET: str

def cpu_runs(instruction_set: str) -> bool: ...
def cpu_vendor() -> str: ...
def set_blas(dgemm: object | None, sgemm: object | None) -> None: ...
def has_blas() -> bool: ...
def has_products() -> bool: ...
def hold_blas_setting(hold: bool) -> None: ...
def blas_threads_controlled() -> bool: ...
def max_threads() -> int: ...

PRODUCTS: tuple[str, ...]

def py_product(product: str, a: _Floating, b: _Floating, c: _Floating,
               beta: float = 0, alpha: float = 1) -> None: ...
def has_own_products() -> bool: ...

# _maths.pxi
def exp_into(x: _Floating, out: _Floating) -> None: ...
def finite(x: _Floating) -> bool: ...

# _rules.pxi
OPTIMIZERS: tuple[str, ...]
HYPER_FIELDS: dict[str, tuple[str, ...]]
RULES: tuple[str, ...]
STATE_ROWS: dict[str, int]

def echo_hyper(hyper: Mapping[str, Any]) -> dict[str, Any]: ...
def echo_plan(plan: Mapping[str, int]) -> dict[str, int]: ...
def py_rule_step(rule: str, hyper: Mapping[str, Any], steps: int, params: _Floating,
                 grad: _Floating, state: _Floating, decay: bool) -> None: ...
def py_rule_row(rule: str, hyper: Mapping[str, Any], steps: int, weights: _Floating,
                inputs: _Floating, dj: float, state: _Floating,
                flush_subnormals: bool = False,
                next_inputs: _Floating | None = None) -> float: ...

# _epoch.pxi
def holds_subnormal(x: _Floating, copy: _Floating | None = None) -> bool: ...

# _core.pyx
class Workspace:
    def __init__(self, sizes: _Sizes, acts: _Codes, rows: int, itemsize: int,
                 with_grad: bool) -> None: ...

def forward(sizes: _Sizes, acts: _Codes, params: _Floating, X: _Floating, out: _Floating,
            plan: Mapping[str, int]) -> None: ...
def loss_and_gradients(sizes: _Sizes, acts: _Codes, loss: int, params: _Floating,
                       X: _Floating, Y: _Floating, grad: _Floating,
                       plan: Mapping[str, int]) -> tuple[float, int]: ...
def train_epoch(sizes: _Sizes, acts: _Codes, loss: int, params: _Floating, X: _Floating,
                Y: _Floating, order: NDArray[np.intp], plan: Mapping[str, int],
                hyper: Mapping[str, Any], state: _Floating, steps: int,
                sample_weight: _Floating | None = None,
                dropout: NDArray[np.float64] | None = None, dropout_seed: int = 0,
                max_norm: float = 0) -> tuple[float, int, int]: ...

# _inference.pxi
class FewRows:
    def __init__(self, sizes: _Sizes, acts: _Codes, params: _Floating,
                 plan: Mapping[str, int], numpy: ModuleType, history_type: type) -> None: ...
    @property
    def max_rows(self) -> int: ...
    def forward(self, X: object) -> _Floating | None: ...
    def predict(self, X: object) -> NDArray[np.integer[Any]] | np.integer[Any] | None: ...
    prepared_for: object
    def prepare(self, key: object, loss: int, plan: Mapping[str, int],
                hyper: Mapping[str, Any], n_slots: int, max_norm: float) -> None: ...
    def refuse(self, key: object) -> None: ...
    def step(self, net: Any, X: object, Y: object,
             prepare: Callable[[Any, FewRows, Any, object], None]) -> bool: ...
    def train_one(self, X: object, Y: object, state: object,
                  steps: int) -> tuple[float, float, int, float, float] | None: ...
def step_check(now: _Floating, before: _Floating) -> tuple[bool, float, float]: ...
