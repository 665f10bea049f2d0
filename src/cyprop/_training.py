"""What a training call hands to a backend besides the data: sample weights, dropout,
the max-norm constraint.  Both backends read the same object, so they agree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:
    from ._architecture import Architecture


class Dropout:
    """Dropout rates per weight layer (the output layer's is 0) and the seed of the masks.

    A unit's mask is a hash of (seed, the sample's position in the order, the unit),
    the same function the compiled core uses (``unit_kept`` in csrc/_maths.pxi), so
    both backends drop exactly the same units whatever the batching.
    """

    def __init__(self, rates: ArrayLike, seed: int) -> None:
        self.rates = np.asarray(rates, dtype=np.float64)
        self.seed = int(seed) & 0xFFFFFFFFFFFFFFFF

    def mask(self, arch: Architecture, layer: int, first: int, count: int) -> NDArray[np.bool_]:
        """Boolean (count, n_units of layer) mask for samples first .. first + count - 1."""
        n_units = sum(arch.sizes[1:])
        unit0 = sum(arch.sizes[1:layer + 1])
        positions = np.arange(first, first + count, dtype=np.uint64)[:, None]
        units = np.arange(unit0, unit0 + arch.sizes[layer + 1], dtype=np.uint64)[None, :]
        keys = np.uint64(self.seed) + positions * np.uint64(n_units) + units
        uniform = (_splitmix64(keys) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
        return uniform >= self.rates[layer]


def _splitmix64(x: NDArray[np.uint64]) -> NDArray[np.uint64]:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class TrainingOptions:
    """Per-call training extras; the defaults change nothing."""

    def __init__(self, sample_weight: NDArray[np.floating[Any]] | None = None,
                 dropout: Dropout | None = None, max_norm: float | None = 0.0,
                 n_threads: int | None = None) -> None:
        self.sample_weight = sample_weight   # (n,) of the network's dtype, or None
        self.dropout = dropout               # a Dropout, or None
        self.max_norm = float(max_norm or 0.0)
        self.n_threads = n_threads           # None: OMP_NUM_THREADS / threadpoolctl
