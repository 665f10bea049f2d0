"""The shape of a network and the layout of its parameters in one flat buffer.

For each layer l, the weights W_l (n_out, n_in) row-major, then the biases b_l.
Gradients and optimizer state share this layout, so an optimizer step is a pass
over flat arrays in either backend.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from . import _maths


class Architecture:
    """Layer sizes, per-layer activations and the loss; immutable."""

    w_slices: list[slice]
    b_slices: list[slice]

    def __init__(self, sizes: Iterable[int], activations: Iterable[str], loss: str) -> None:
        self.sizes = tuple(int(s) for s in sizes)
        self.activations = tuple(activations)
        self.loss = loss
        self.n_layers = len(self.sizes) - 1
        self.w_slices, self.b_slices = [], []
        offset = 0
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            self.w_slices.append(slice(offset, offset + n_out * n_in))
            offset += n_out * n_in
            self.b_slices.append(slice(offset, offset + n_out))
            offset += n_out
        self.n_params = offset
        # What the compiled core takes: unit counts, activation and loss codes.
        self.sizes_array = np.array(self.sizes, dtype=np.intp)
        self.activation_codes = np.array(
            [_maths.ACTIVATIONS.index(a) for a in self.activations], dtype=np.intc)
        self.loss_code = _maths.LOSSES.index(loss)

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    @property
    def output(self) -> str:
        return self.activations[-1]

    def new_params(self, dtype: DTypeLike) -> NDArray[Any]:
        """An uninitialised parameter vector whose data starts on a 64-byte boundary, so
        that every weight row the kernels stream through starts aligned when its length
        allows (unaligned vector loads cost up to a quarter of the speed of online SGD)."""
        return aligned_empty(self.n_params, dtype)

    def split(self, flat: NDArray[Any]) -> tuple[list[NDArray[Any]], list[NDArray[Any]]]:
        """Views of a flat parameter-shaped array as (weights, biases) lists."""
        weights = [flat[s].reshape(n_out, n_in) for s, n_in, n_out
                   in zip(self.w_slices, self.sizes[:-1], self.sizes[1:])]
        biases = [flat[s] for s in self.b_slices]
        return weights, biases

    def decay_mask(self, dtype: DTypeLike) -> NDArray[Any]:
        """1 where weight decay applies (weights), 0 where it does not (biases)."""
        mask = np.zeros(self.n_params, dtype=dtype)
        for s in self.w_slices:
            mask[s] = 1
        return mask

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Architecture) and self.sizes == other.sizes
                and self.activations == other.activations and self.loss == other.loss)

    def __hash__(self) -> int:
        return hash((self.sizes, self.activations, self.loss))

    def __repr__(self) -> str:
        return (f"Architecture(sizes={list(self.sizes)}, activations={list(self.activations)}, "
                f"loss={self.loss!r})")


def aligned_empty(n: int, dtype: DTypeLike, alignment: int = 64) -> NDArray[Any]:
    """An uninitialised 1-D array of n elements whose data is ``alignment``-byte aligned."""
    dtype = np.dtype(dtype)
    spare = alignment // dtype.itemsize
    buffer = np.empty(n + spare, dtype=dtype)
    start = (-buffer.ctypes.data % alignment) // dtype.itemsize
    return buffer[start:start + n]
