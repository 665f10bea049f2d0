"""Saving and loading networks: one ``.npz`` file, written atomically, read without
unpickling.

File layout (``FORMAT_VERSION`` 2): an uncompressed NumPy ``.npz`` archive (a zip of
``.npy`` files) with these members, so that plain NumPy can read it too::

    metadata         uint8 (n,)                 UTF-8 JSON text, described below
    weights_<l>      (sizes[l+1], sizes[l])     the network's dtype, l = 0 .. n_layers-1
    biases_<l>       (sizes[l+1],)              the network's dtype
    optimizer_state  (n_slots, n_params)        the network's dtype; present only when
                                                the optimizer has state.  Same flat
                                                layout as the parameters: per layer,
                                                the weights row-major, then the biases.

The JSON object in ``metadata``::

    format, format_version   "cyprop-network", FORMAT_VERSION
    cyprop_version           the version that wrote the file (informational)
    sizes, activations, loss the architecture (activations: one per weight layer,
                             the output's last)
    dtype, init, seed        as given to ``Network``; ``seed`` is stored when it is an
                             int in 0 .. 2**128-1 or None, else as None (only the
                             generator state below matters once the network exists)
    rng                      ``bit_generator.state`` of the network's shuffling generator
                             (PCG64, PCG64DXSM, SFC64, Philox or MT19937)
    dropout                  the dropout rate of each hidden layer (a list, [] without
                             hidden layers); absent in early files: no dropout
    max_norm                 the max-norm bound, 0 for none; absent in early files: none
    classes                  ``Network.classes``: the label of each class, a list of
                             integers or of names (one per output unit, two for one
                             unit); absent when the network has none (and in files of
                             earlier versions, whose readers skip it)
    optimizer                null, or {name, config, steps, has_state,
                             initial_learning_rate}: ``name`` is a key of
                             ``cyprop.optimizers.OPTIMIZERS``, ``config`` the keyword
                             arguments of its constructor (``get_config()``, which holds
                             the *current* learning rate, a schedule's last) and
                             ``initial_learning_rate`` the rate schedules scale (absent
                             in early files: the config's rate)
    history                  {records: [name, ...], epochs, stop_reason}: the names
                             of the rows of the ``history`` arrays (``History.KEYS``)

and, from ``FORMAT_VERSION`` 2 on, the training history's records::

    history          float64 (n_records, epochs)  each record's value in each epoch
    history_none     bool (n_records, epochs)     where a record holds None instead

Files of version 1 hold the records in the metadata instead, ``history`` being
``{records: {name: [float or null, ...]}, stop_reason}`` (non-finite values as the
``Infinity``/``NaN`` tokens Python's ``json`` reads back); ``load`` reads them too.

A file is data from outside, so ``load`` trusts none of it: it never unpickles, and
it refuses (``ValueError`` naming the problem; ``OSError`` for I/O) anything ``save``
would not have written, before allocating memory on the file's word:

- only a regular file is opened (a FIFO, device, socket or directory is refused
  without blocking on it or reading from it);
- members must be stored (``ZIP_STORED``: no compression, so no zip bombs), not
  encrypted, with plain names (``<name>.npy``, no directories), no duplicates, and
  sizes that fit inside the file; the metadata member is at most
  ``METADATA_LIMIT`` bytes, each ``.npy`` header at most ``NPY_HEADER_LIMIT``;
- every array has exactly the dtype (either byte order; C or Fortran order) and
  shape the metadata calls for, and the metadata's sizes must describe arrays that
  fit in the file's size before any is read: what ``load`` allocates is a small
  multiple of the file's size (about 25x at worst, for metadata JSON made of tiny
  objects);
- every metadata field is checked by type and range, the generator state field by
  field against what NumPy's own ``state`` holds for that bit generator (a state
  NumPy accepts, such as an MT19937 position past its key, can crash the next
  shuffle); the optimizer step count is below ``2**62``, numbers are finite;
- weights and optimizer state are finite.

A file holds a network's public state: ``save`` writes ``net.get_state()`` (a
``cyprop.network.NetworkState``), and ``load`` reads a file into such a state and
builds the network with ``Network.from_state``, which checks the state once more with
the same rules (``cyprop._state``).  Writing a state is ``cyprop._state``'s, below
``network``: ``Network.save`` needs nothing of this module, which imports ``network``,
so the modules depend one way.  The file handling shared with ``cyprop.ensemble``
(atomic writes, regular files only, checked members and ``.npy`` headers) is in
``cyprop._archive``; ``read_network``, not in ``__all__``, reads a network file that is
already open, for the networks inside an ensemble file.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from . import _archive, _backend, _maths, _state
from ._architecture import Architecture
from ._version import __version__
from .errors import InvalidState
from .history import History
from .network import Network, NetworkState, OptimizerState
from .optimizers import OPTIMIZERS

__all__ = ["save", "load", "FORMAT_VERSION", "FORMAT_NAME", "METADATA_LIMIT",
           "NPY_HEADER_LIMIT"]

#: Bump when the layout changes in a way older readers cannot handle; ``load``
#: refuses files with a higher version instead of misreading them.
FORMAT_VERSION = _state.FORMAT_VERSION
FORMAT_NAME = _state.FORMAT_NAME
#: The largest metadata member ``load`` reads, in bytes (a network's metadata is a few
#: kB; in files of version 1, plus about 160 bytes per epoch of history: such a file of
#: more than about 100,000 epochs loads once this is raised).
METADATA_LIMIT = _archive.METADATA_LIMIT
#: The largest ``.npy`` header ``load`` reads, in bytes (NumPy's own safe limit).
NPY_HEADER_LIMIT = _archive.NPY_HEADER_LIMIT

_METADATA = _archive.METADATA
_OPTIMIZER_STATE = _state.OPTIMIZER_STATE
_DTYPES = ("float32", "float64")
_short = _archive.short
_invalid = _archive.invalid


# ----------------------------------------------------------------------------- save
def save(net: Network, path: str | os.PathLike[str]) -> None:
    """Write ``net`` to exactly ``path`` as one ``.npz`` file (see the module docstring).

    Unlike ``numpy.savez``, no ``.npz`` suffix is appended: ``save(net, "model")``
    writes a file named ``model``.  The file appears atomically: it is written to a
    temporary file in the same directory, flushed to disk, then renamed onto
    ``path``, so a crash or error midway leaves any previous file at ``path`` intact.
    A symbolic link is followed (its target is replaced, the link stays); an
    existing file keeps its permission bits (one the caller may not write, read-only,
    is refused, as ``open`` refuses it); a directory, FIFO, device or socket
    at ``path`` is refused and left as it is.  The network may be training in
    another thread: what is written is a state it had between two steps.

    Parameters
    ----------
    net : Network
        The network to save.
    path : str or os.PathLike
        The file to write.

    Raises
    ------
    OSError
        If the file cannot be written (``IsADirectoryError`` for a directory,
        ``PermissionError`` for a read-only file).
    ValueError
        If something other than a regular file is at ``path``, or the network's
        optimizer is not one of ``cyprop.optimizers.OPTIMIZERS`` (or its state or
        step count is out of range), or anything else of it would make a file that
        ``load`` refuses (weights or optimizer state set to NaN by hand): nothing is
        written then.
    TypeError
        If the network's metadata is not JSON-serialisable.
    """
    net.save(path)


# ----------------------------------------------------------------------------- load
def load(path: str | os.PathLike[str], backend: str = "auto") -> Network:
    """Read a network written by ``Network.save`` from exactly ``path``.

    ``backend`` (``"auto"``, ``"cython"`` or ``"numpy"``) is the caller's choice, not
    the file's; load with the backend the network was trained with to continue
    training bit-for-bit as the original would have.  Nothing is unpickled.  Raises
    ``FileNotFoundError`` (or another ``OSError``) when the file cannot be opened,
    ``IsADirectoryError`` for a directory, and ``ValueError``, saying what is wrong,
    for anything but a regular file (a FIFO, a device) and for a file that is not a
    cyprop network, is truncated or corrupted, was written by a newer cyprop, or
    whose contents do not fit the architecture it describes (see the module
    docstring for what is checked).

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.
    backend : {"auto", "cython", "numpy"}, default "auto"
        The backend of the network returned.

    Returns
    -------
    Network
        The network, with its optimizer (and state) and history.

    Raises
    ------
    OSError
        If the file cannot be opened (``FileNotFoundError``, ``IsADirectoryError``).
    ValueError
        If ``backend`` is unknown, or the file is not a regular file or not a valid
        cyprop network file.
    ImportError
        If ``backend="cython"`` and the compiled extension cannot be imported.
    """
    if backend not in _backend.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_backend.BACKENDS)}")
    path = os.fspath(path)
    with _archive.open_regular_file(path) as fh:
        return read_network(path, fh, os.fstat(fh.fileno()).st_size, backend)


def read_network(path: str, fh: BinaryIO, size: int, backend: str) -> Network:
    """The network in the open network file ``fh`` of ``size`` bytes, checked as
    ``load`` checks one (``path`` names it in errors); for ``load``, and for the
    networks inside an ensemble file (``cyprop.ensemble``).  Internal: not in
    ``__all__``.

    Parameters
    ----------
    path : str
        The name of the file in error messages.
    fh : binary file
        The file, open for reading at its start; seekable.
    size : int
        Its size in bytes.
    backend : str
        The backend of the network returned (checked by the caller).

    Returns
    -------
    Network
        The network.

    Raises
    ------
    ValueError
        Saying what is wrong, for anything ``save`` would not have written.
    """
    metadata, arrays = _read(path, fh, size)
    try:
        return Network.from_state(_state_of(metadata, arrays, backend))
    except InvalidState as exc:
        raise _invalid(path, exc.problem) from exc


def _state_of(meta: dict[str, Any], arrays: dict[str, NDArray[Any]],
              backend: str) -> NetworkState:
    """The NetworkState of validated metadata and arrays (checked again, and built,
    by ``Network.from_state``)."""
    arch = meta["arch"]
    params = arch.new_params(meta["dtype"])
    weights, biases = arch.split(params)
    for layer in range(arch.n_layers):
        weights[layer][...] = arrays[f"weights_{layer}"]
        biases[layer][...] = arrays[f"biases_{layer}"]
    opt, optimizer = meta["optimizer"], None
    if opt is not None:
        optimizer = OptimizerState(
            name=opt["name"], config=opt["config"],
            initial_learning_rate=opt.get("initial_learning_rate"), steps=opt["steps"],
            state=arrays[_OPTIMIZER_STATE] if opt["has_state"] else None)
    records = meta["history"]["records"]
    if meta["format_version"] >= 2:
        records = _state.history_records(records, arrays[_state.HISTORY],
                                         arrays[_state.HISTORY_NONE])
        # the file's epochs, even where it holds none of the records this cyprop knows
        epochs = meta["history"]["epochs"]
        records = {key: records.get(key, [None] * epochs) for key in History.KEYS}
    # Records this cyprop does not know (from a newer cyprop) are left out; those it
    # knows but the file lacks, filled with None (by from_state).
    return NetworkState(
        sizes=list(arch.sizes), activations=list(arch.activations), loss=arch.loss,
        dtype=meta["dtype"].name, init=meta["init"], seed=meta["seed"], backend=backend,
        dropout=meta["dropout"], max_norm=meta["max_norm"], params=params, rng=meta["rng"],
        optimizer=optimizer,
        history={key: values for key, values in records.items() if key in History.KEYS},
        stop_reason=meta["history"]["stop_reason"], classes=meta["classes"])


def _read(path: str, fh: BinaryIO, size: int) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(validated metadata, {name: array}) from an open file of ``size`` bytes;
    ValueError if bad."""
    signature = fh.read(4)
    if not signature:
        raise _invalid(path, "the file is empty")
    if signature not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _invalid(path, "not a cyprop network file (not an .npz/zip archive)")
    fh.seek(0)
    archive = _archive.guarded(path, "the file is truncated or corrupted", zipfile.ZipFile, fh)
    with archive:
        # Each member's CRC-32 is checked as it is read to its end; members that are
        # not read are refused.
        members = _archive.check_members(path, archive, size)
        if _METADATA not in members:
            raise _invalid(path, "not a cyprop network file (an .npz archive without "
                                 f"cyprop's {_METADATA!r} entry)")
        info = members[_METADATA]
        if info.file_size > METADATA_LIMIT:
            # (a file of format 1 with a long history is one: raising the limit reads
            # it, at up to about 25 bytes of memory for each byte of the entry)
            raise _invalid(path, f"the metadata entry has {info.file_size} bytes, more than "
                                 f"the {METADATA_LIMIT} this cyprop reads (for a file you "
                                 "trust, such as one an earlier cyprop wrote after a long "
                                 "history, raise cyprop.persistence.METADATA_LIMIT)")
        raw = _archive.read_array(path, archive, info, _METADATA, None, np.dtype(np.uint8))
        metadata = _validate(path, _archive.decode_json(path, raw.tobytes()))
        del raw
        expected = _expected_arrays(metadata)
        _check_sizes_fit(path, metadata, expected, members, size)
        metadata["arch"] = Architecture(metadata["sizes"], metadata["activations"],
                                        metadata["loss"])
        missing = [name for name in expected if name not in members]
        if missing:
            raise _invalid(path, f"the file is incomplete: missing {', '.join(missing)}")
        unexpected = sorted(members[name].filename for name in members
                            if name not in expected and name != _METADATA)
        if unexpected:
            raise _invalid(path, f"unexpected entries {', '.join(map(repr, unexpected))}")
        arrays = {name: _archive.read_array(path, archive, members[name], name, shape, dtype)
                  for name, (shape, dtype) in expected.items()}
    return metadata, arrays


def _validate(path: str, meta: Any) -> dict[str, Any]:
    """The metadata, checked; raises ValueError naming the problem.

    On success the returned dict has ``dtype`` as a NumPy dtype and is safe to build
    a network from once ``_check_sizes_fit`` has checked its sizes against the file."""
    def require(condition: object, problem: str) -> None:
        if not condition:
            raise _invalid(path, problem)

    r = _short.repr
    require(not (isinstance(meta, dict) and meta.get("format") == _state.ENSEMBLE_FORMAT_NAME),
            "it is an ensemble, not a network: read it with cyprop.Ensemble.load")
    require(isinstance(meta, dict) and meta.get("format") == FORMAT_NAME,
            "not a cyprop network file (its metadata does not name the cyprop format)")
    version = meta.get("format_version")
    require(_state.is_int(version) and version >= 1, f"invalid format version {r(version)}")
    require(version <= FORMAT_VERSION,
            f"the file has format version {version}, written by a newer cyprop; this "
            f"cyprop ({__version__}) reads versions up to {FORMAT_VERSION}: upgrade cyprop")
    for key in ("sizes", "activations", "loss", "dtype", "init", "seed", "rng", "optimizer",
                "history"):
        require(key in meta, f"the metadata lacks {key!r}")

    sizes, activations, loss = meta["sizes"], meta["activations"], meta["loss"]
    require(isinstance(sizes, list) and len(sizes) >= 2
            and all(_state.is_int(s) and s >= 1 for s in sizes),
            f"invalid layer sizes {r(sizes)}")
    require(isinstance(activations, list) and len(activations) == len(sizes) - 1
            and all(isinstance(a, str) and a in _maths.ACTIVATIONS for a in activations),
            f"invalid activations {r(activations)} for sizes {r(sizes)}")
    require(isinstance(loss, str) and loss in _maths.LOSSES, f"invalid loss {r(loss)}")
    require(isinstance(meta["dtype"], str) and meta["dtype"] in _DTYPES,
            f"invalid dtype {r(meta['dtype'])}")
    meta["dtype"] = np.dtype(meta["dtype"])
    require(isinstance(meta["init"], str), f"invalid init {r(meta['init'])}")
    seed = meta["seed"]
    require(seed is None or (_state.is_int(seed) and 0 <= seed < _state.SEED_LIMIT),
            f"invalid seed {r(seed)} (expected null or an integer in 0..2**128-1)")
    problem = _state.rng_problem(meta["rng"])
    require(problem is None, f"invalid random generator state ({problem})")
    # Added after the first files of format 1 were written: optional, with the values
    # that those files' networks had (no dropout, no max-norm).
    dropout = meta.setdefault("dropout", [0.0] * (len(sizes) - 2))
    require(isinstance(dropout, list) and len(dropout) == len(sizes) - 2
            and all(_state.is_number(p) and 0 <= p < 1 for p in dropout),
            f"invalid dropout rates {r(dropout)} for sizes {r(sizes)}")
    max_norm = meta.setdefault("max_norm", 0.0)
    require(_state.is_finite(max_norm) and max_norm >= 0, f"invalid max_norm {r(max_norm)}")
    _state.validate_optimizer(require, meta["optimizer"])
    # Added later, and optional (a network without classes has none): older readers
    # skip it, as they skip every key they do not know.
    classes = meta.setdefault("classes", None)
    problem = _state.classes_problem(classes, sizes[-1])
    require(problem is None, f"invalid classes ({problem})")
    if version == 1:
        _state.validate_history(require, meta["history"])
    else:
        _validate_history_names(require, meta["history"])
    return meta


def _validate_history_names(require: Callable[[object, str], None], history: Any) -> None:
    """The metadata's history entry from format 2 on: the records' names, the epochs."""
    require(isinstance(history, dict) and set(history) == {"records", "epochs", "stop_reason"},
            "invalid training history")
    names, epochs, stop_reason = history["records"], history["epochs"], history["stop_reason"]
    require(isinstance(names, list) and all(isinstance(name, str) for name in names)
            and len(set(names)) == len(names),
            f"invalid training history: its records {_short.repr(names)} are not distinct names")
    require(_state.is_int(epochs) and epochs >= 0,
            f"invalid training history: its epochs {_short.repr(epochs)} are not a count")
    # (the records' arrays bound the epochs by the file's size; without records nothing
    # does, and save always writes them)
    require(names or epochs == 0, f"invalid training history: {epochs} epochs but no records")
    _state.validate_stop_reason(require, stop_reason)


def _expected_arrays(meta: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype[Any]]]:
    """{array name: (shape, dtype)} the metadata calls for, metadata itself aside."""
    sizes, dtype = meta["sizes"], meta["dtype"]
    expected: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        expected[f"weights_{layer}"] = ((n_out, n_in), dtype)
        expected[f"biases_{layer}"] = ((n_out,), dtype)
    opt = meta["optimizer"]
    if opt is not None and opt["has_state"]:
        n_params = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        expected[_OPTIMIZER_STATE] = ((OPTIMIZERS[opt["name"]].n_slots, n_params), dtype)
    if meta["format_version"] >= 2:
        history = meta["history"]
        shape = (len(history["records"]), history["epochs"])
        expected[_state.HISTORY] = (shape, np.dtype(np.float64))
        expected[_state.HISTORY_NONE] = (shape, np.dtype(np.bool_))
    return expected


def _check_sizes_fit(path: str, meta: dict[str, Any],
                     expected: dict[str, tuple[tuple[int, ...], np.dtype[Any]]],
                     members: dict[str, zipfile.ZipInfo], size: int) -> None:
    """The arrays the metadata calls for must be in the file: refused from the numbers
    alone, before the network or any array is allocated."""
    if len(expected) > len(members):
        # (a million one-unit layers take two bytes each in the JSON, far more in memory)
        raise _invalid(path, f"the file is incomplete: its metadata calls for {len(expected)} "
                             f"arrays, the file holds {len(members) - 1}")
    nbytes = {name: math.prod(shape) * dtype.itemsize for name, (shape, dtype) in expected.items()}
    history = nbytes.get(_state.HISTORY, 0) + nbytes.get(_state.HISTORY_NONE, 0)
    if history > size:
        raise _invalid(path, f"invalid training history: {meta['history']['epochs']} epochs "
                             f"need {history} bytes, the file has {size}")
    if sum(nbytes.values()) > size:
        raise _invalid(path, f"invalid layer sizes {_short.repr(meta['sizes'])}: their arrays "
                             f"need {sum(nbytes.values())} bytes, the file has {size}")


