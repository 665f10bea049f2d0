"""Inputs read a block of rows at a time: Dask arrays and memory-mapped files.

An ``X`` that is a Dask array or a NumPy memory map (``np.memmap``, or
``np.load(path, mmap_mode="r")``) is never converted or copied whole.  The network
wraps it in ``Rows`` and reads it in blocks of about ``BLOCK_BYTES`` (in the network's
dtype): each block is sliced by rows, computed (Dask: the part of each chunk it meets,
all in one ``dask.compute``), checked and converted like any input (a NaN in any block
is refused with the usual message), and trained on with one compiled call.  A block
that is one piece of the right dtype (a memory map's rows, rows within one Dask chunk)
is used as it is; one across chunks is copied into one of two buffers reused from block
to block.  The next block is read in a background thread while the network trains on
this one.  The targets ``Y`` (n x n_outputs, small beside X) are read whole.

Training blocks are whole batches (their length is a multiple of ``batch_size``,
whatever the Dask chunks), so with ``shuffle=False`` the batches, their order and the
result are those of the same data in memory.  With ``shuffle=True`` an epoch visits
the blocks in a random order (``rng.permutation(n_blocks)``), then the rows of each
block, in that order, in a random order (``rng.permutation(len(block))``), all drawn
from the epoch's generator at its start: the same seed gives the same result.  Data
that fits in one block is shuffled as in memory (one ``rng.permutation(n)``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _validation

#: About this many bytes of X (in the network's dtype) are read and trained on at a time.
BLOCK_BYTES = 64 << 20
#: A block that is copied is copied and checked (finite) this many bytes at a time, so
#: that the check reads what the copy just left in the cache.
COPY_BYTES = 256 << 10


def is_dask(X: object) -> bool:
    return (type(X).__module__.split(".")[0] == "dask" and hasattr(X, "compute")
            and hasattr(X, "chunks"))


def is_blockwise(X: object) -> bool:
    """Whether X is read a block at a time: a 2-D Dask array or memory map."""
    return (isinstance(X, np.memmap) or is_dask(X)) and getattr(X, "ndim", 0) == 2


class Rows:
    """Rows ``start:stop`` of a 2-D Dask array or memory map, read on demand; checked
    for shape and dtype when made (one row is read)."""

    def __init__(self, data: Any, n_inputs: int, dtype: np.dtype[Any], name: str = "X",
                 start: int = 0, stop: int | None = None) -> None:
        self.data, self.n_inputs, self.dtype, self.name = data, n_inputs, dtype, name
        self.start = start
        if stop is None and not isinstance(data.shape[0], int):
            # (Dask's NaN: chunks of unknown size, as boolean indexing leaves them)
            raise ValueError(f"{name} is a Dask array of unknown number of rows (chunks of "
                             f"unknown size); compute them first with "
                             f"{name}.compute_chunk_sizes()")
        self.stop = data.shape[0] if stop is None else stop
        if stop is None:
            if np.dtype(data.dtype).kind not in "biuf":
                raise TypeError(f"{name} must hold numbers (got dtype {data.dtype}); "
                                "convert it to a float array first")
            if len(self) == 0:
                raise ValueError(f"{name} is empty: it has no samples")
            self.read(0, 1)   # the number of features

    @property
    def shape(self) -> tuple[int, int]:
        return (self.stop - self.start, self.n_inputs)

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: slice) -> Rows:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("Rows take a slice of consecutive rows")
        start, stop, _ = index.indices(len(self))
        return Rows(self.data, self.n_inputs, self.dtype, self.name, self.start + start,
                    self.start + max(start, stop))

    def read(self, start: int, stop: int,
             out: Callable[[], np.ndarray] | None = None) -> np.ndarray:
        """Rows start:stop (of these) as a checked C-contiguous array of the dtype.

        A piece that already is so (a memory map of the dtype, a computed Dask chunk) is
        used as it is, not copied.  Rows that span Dask chunks, or need converting, are
        copied (converted) into the array ``out()`` returns, when it is given and large
        enough (a buffer kept from block to block, made only when first needed: no fresh
        memory to fault in each time), else into a new array.  A Dask array is computed a chunk's part at a time, all in one
        ``dask.compute`` call, never as one slice across chunks (whose result Dask
        would join in yet another new array)."""
        a, b = self.start + start, self.start + stop
        n = b - a
        pieces = _dask_pieces(self.data, a, b) if is_dask(self.data) else [self.data[a:b]]
        # (a Dask masked array computes to masked pieces: refused with masked values)
        pieces = [_validation._unmasked(self.name, piece) for piece in pieces]
        # (a Dask chunk may compute other than the rows it announced: counted here, the
        # copy below refuses it)
        if len(pieces) == 1 and _fits(pieces[0], self.dtype) and pieces[0].shape[:1] == (n,):
            return _validation.check_X(pieces[0], self.n_inputs, self.dtype,
                                       name=self.name)[0]
        buffer = None if out is None else out()
        if buffer is None or buffer.shape[0] < n or buffer.dtype != self.dtype:
            buffer = np.empty((n, self.n_inputs), dtype=self.dtype)
        block = buffer[:n]
        step = max(1, COPY_BYTES // (self.n_inputs * self.dtype.itemsize))
        done = 0
        for piece in pieces:
            if (np.dtype(piece.dtype).kind not in "biuf" or piece.ndim != 2
                    or piece.shape[1] != self.n_inputs):
                # (a Dask graph may compute other than it announced): refused as usual
                _validation.check_X(piece, self.n_inputs, self.dtype, name=self.name)
                raise AssertionError("check_X took a piece of the wrong kind or shape")
            if done + len(piece) > n:
                break
            for i in range(0, len(piece), step):   # copied, then checked while cached
                source = piece[i:i + step]
                part = block[done + i:done + i + len(source)]
                with np.errstate(over="ignore", invalid="ignore"):
                    np.copyto(part, source, casting="unsafe")
                    finite = np.isfinite(np.sum(part))
                if not finite and not _validation.all_finite(part):
                    _validation.check_X(part, self.n_inputs, self.dtype, name=self.name)
            done += len(piece)
        if done != n:
            raise ValueError(f"{self.name}'s Dask chunks computed other numbers of rows "
                             f"than they announced (rows {a}:{b})")
        return block


def _fits(piece: Any, dtype: np.dtype[Any]) -> bool:
    """Whether check_X takes ``piece`` as it is (no copy)."""
    return (isinstance(piece, np.ndarray) and piece.dtype == dtype
            and piece.flags.c_contiguous and piece.flags.aligned)


def _dask_pieces(data: Any, start: int, stop: int) -> list[Any]:
    """Rows start:stop of a Dask array as NumPy arrays, one per chunk they meet (in
    order), computed together."""
    bounds = np.cumsum((0, *data.chunks[0]))
    if not np.all(np.isfinite(bounds)) or data.numblocks[1] != 1:
        # chunks of unknown size, or of some columns each: one slice, joined by Dask
        return _compute([data[start:stop]])
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    parts = []
    for i in range(first, len(bounds) - 1):
        lo, hi = max(start, int(bounds[i])), min(stop, int(bounds[i + 1]))
        if lo >= hi:
            break
        # as a Delayed: computed, a chunk is what its task made (Dask's compute of an
        # array would copy it once more, in case the caller writes to it; this reads),
        # its graph not optimized piece by piece (slow: ~10 ms a piece, for nothing)
        parts.append(data[lo:hi].to_delayed(optimize_graph=False).flat[0])
    return _compute(parts)


def _compute(blocks: list[Any]) -> list[np.ndarray]:
    """Dask arrays or Delayed blocks as NumPy arrays, computed in one call: on the
    scheduler set by the caller (a distributed Client,
    ``dask.config.set(scheduler=...)``), else here in the reading thread (which already
    overlaps the training; a thread pool per block only adds overhead)."""
    import dask
    import dask.base

    scheduler = None if dask.base.get_scheduler() is not None else "synchronous"
    # (a masked chunk keeps its mask, for Rows.read to check)
    return [block if isinstance(block, np.ma.MaskedArray) else np.asarray(block)
            for block in dask.compute(*blocks, scheduler=scheduler)]


def head(X: Any, m: int) -> Any:
    """The first m rows of X as an array."""
    return X.read(0, m) if isinstance(X, Rows) else X[:m]


def block_rows(n_inputs: int, dtype: npt.DTypeLike, batch_size: int = 1) -> int:
    """Rows per block: about BLOCK_BYTES, a multiple of batch_size (one batch at least)."""
    rows = BLOCK_BYTES // (n_inputs * np.dtype(dtype).itemsize)
    return max(batch_size, rows // batch_size * batch_size)


def epoch_blocks(n: int, rows: int, shuffle: bool = False,
                 rng: np.random.Generator | None = None,
                 ) -> list[tuple[int, int, npt.NDArray[np.intp]]]:
    """[(start, stop, order)]: the blocks of an epoch of n samples in the order visited,
    each with the order of its rows (indices into the block)."""
    bounds = [(start, min(start + rows, n)) for start in range(0, n, rows)]
    if not shuffle:
        return [(start, stop, np.arange(stop - start, dtype=np.intp))
                for start, stop in bounds]
    assert rng is not None, "shuffle=True takes a generator"
    if len(bounds) > 1:
        bounds = [bounds[i] for i in rng.permutation(len(bounds))]
    return [(start, stop, rng.permutation(stop - start).astype(np.intp, copy=False))
            for start, stop in bounds]


def read_ahead(rows: Rows, blocks: Sequence[tuple[int, int, npt.NDArray[np.intp]]],
               ) -> Generator[tuple[int, int, npt.NDArray[np.intp], np.ndarray], None, None]:
    """Yields (start, stop, order, X block) for each of ``blocks``, reading the next
    block in a thread while the caller works on this one.

    A block may lie in one of two buffers that are reused (for blocks that are copied:
    see ``Rows.read``): it is valid until the caller asks for the next one."""
    if not blocks:
        return
    size = max(stop - start for start, stop, _ in blocks)
    buffers: list[np.ndarray | None] = [None, None]

    def buffer(i: int) -> np.ndarray:
        made = buffers[i]
        if made is None:
            made = buffers[i] = np.empty((size, rows.n_inputs), dtype=rows.dtype)
        return made

    def read(i: int) -> np.ndarray:
        return rows.read(blocks[i][0], blocks[i][1], out=lambda: buffer(i % 2))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cyprop-read") as pool:
        future: Future[np.ndarray] | None = pool.submit(read, 0)
        for i, (start, stop, order) in enumerate(blocks):
            assert future is not None
            block = future.result()
            future = None
            if i + 1 < len(blocks):
                future = pool.submit(read, i + 1)
            yield start, stop, order, block
            del block


def blocks_for_inference(rows: Rows,
                         ) -> Iterator[tuple[int, int, npt.NDArray[np.intp], np.ndarray]]:
    """The blocks of ``rows`` in order, for forward and the loss."""
    return read_ahead(rows, epoch_blocks(len(rows), block_rows(rows.n_inputs, rows.dtype)))
