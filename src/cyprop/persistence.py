"""Saving and loading networks: one ``.npz`` file, written atomically, read without
unpickling.

File layout (``FORMAT_VERSION`` 1): an uncompressed NumPy ``.npz`` archive (a zip of
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
    optimizer                null, or {name, config, steps, has_state,
                             initial_learning_rate}: ``name`` is a key of
                             ``cyprop.optimizers.OPTIMIZERS``, ``config`` the keyword
                             arguments of its constructor (``get_config()``, which holds
                             the *current* learning rate, a schedule's last) and
                             ``initial_learning_rate`` the rate schedules scale (absent
                             in early files: the config's rate)
    history                  {records: {key: [float or null, ...]}, stop_reason}

Non-finite history values (e.g. an infinite samples/second) are written as the
``Infinity``/``NaN`` tokens Python's ``json`` reads back.

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
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import math
import numbers
import os
import re
import reprlib
import secrets
import stat
import struct
import sys
import zipfile
from collections.abc import Callable
from typing import IO, Any, BinaryIO, TypeGuard, TypeVar

import numpy as np
from numpy.lib import format as npy_format
from numpy.typing import NDArray

from . import _backend, _maths
from ._architecture import Architecture
from ._version import __version__
from .history import History
from .network import Network
from .optimizers import MAX_STEPS, OPTIMIZERS

#: Bump when the layout changes in a way older readers cannot handle; ``load``
#: refuses files with a higher version instead of misreading them.
FORMAT_VERSION = 1
FORMAT_NAME = "cyprop-network"
#: The largest metadata member ``load`` reads, in bytes (a network's metadata is a few
#: kB plus about 160 bytes per epoch of history).
METADATA_LIMIT = 16 * 2**20
#: The largest ``.npy`` header ``load`` reads, in bytes (NumPy's own safe limit).
NPY_HEADER_LIMIT = 10_000

_METADATA = "metadata"
_OPTIMIZER_STATE = "optimizer_state"
_DTYPES = ("float32", "float64")
# The optimizer entry's keys: those every file has, and those added since (optional).
_OPTIMIZER_KEYS = {"name", "config", "steps", "has_state"}
_OPTIMIZER_OPTIONAL_KEYS = {"initial_learning_rate"}
_SEED_LIMIT = 2**128
# No integer a real file holds has more digits (2**128 has 39); parsing a huge one
# takes time quadratic in its length.
_JSON_INT_DIGITS = 64
# Zip flag bits a stored member may have: sizes in a trailing data descriptor (0x08)
# and UTF-8 names (0x800); anything else (encryption, ...) is refused.
_ZIP_FLAGS = 0x08 | 0x800
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_]+\.npy")
_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_T = TypeVar("_T")


# ----------------------------------------------------------------------------- save
def save(net: Network, path: str | os.PathLike[str]) -> None:
    """Write ``net`` to exactly ``path`` as one ``.npz`` file (see the module docstring).

    Unlike ``numpy.savez``, no ``.npz`` suffix is appended: ``save(net, "model")``
    writes a file named ``model``.  The file appears atomically: it is written to a
    temporary file in the same directory, flushed to disk, then renamed onto
    ``path``, so a crash or error midway leaves any previous file at ``path`` intact.
    A symbolic link is followed (its target is replaced, the link stays); an
    existing file keeps its permission bits; a directory, FIFO, device or socket
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
        If the file cannot be written (``IsADirectoryError`` for a directory).
    ValueError
        If something other than a regular file is at ``path``, or the network's
        optimizer is not one of ``cyprop.optimizers.OPTIMIZERS`` (or its state or
        step count is out of range).
    TypeError
        If the network's metadata is not JSON-serialisable.
    """
    path = os.fspath(path)
    # Everything the file holds, copied in one moment (the training loop holds the
    # lock while it changes them), then written without holding up training.
    with net._state_lock:
        metadata, arrays = _snapshot(net)
    try:
        text = json.dumps(metadata, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot save this network: its metadata is not JSON-serialisable ({exc})") \
            from exc
    arrays = {_METADATA: np.frombuffer(text.encode("utf-8"), dtype=np.uint8), **arrays}
    target, mode = _save_target(path)
    _write_atomic(target, arrays, mode)


def _snapshot(net: Network) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(metadata, {name: array}) of the network, all copies; fails, before any file is
    touched, for a network that cannot be saved."""
    optimizer, state = _optimizer_record(net)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "cyprop_version": __version__,
        "sizes": list(net.arch.sizes),
        "activations": list(net.arch.activations),
        "loss": net.arch.loss,
        "dtype": net.dtype.name,
        "init": net.init,
        "seed": _json_seed(net.seed),
        "rng": net._rng.bit_generator.state,   # a new dict of new arrays
        "dropout": [float(rate) for rate in net.dropout],
        "max_norm": float(net.max_norm or 0.0),
        "optimizer": optimizer,
        "history": {
            "records": {key: [None if v is None else float(v) for v in getattr(net.history, key)]
                        for key in History.KEYS},
            "stop_reason": net.history.stop_reason,
        },
    }
    arrays = {}
    weights, biases = net.arch.split(net._params.copy())
    for layer, (W, b) in enumerate(zip(weights, biases)):
        arrays[f"weights_{layer}"] = W
        arrays[f"biases_{layer}"] = b
    if state is not None:
        arrays[_OPTIMIZER_STATE] = state.copy()
    return metadata, arrays


def _optimizer_record(net: Network) -> tuple[dict[str, Any] | None, NDArray[Any] | None]:
    """(metadata entry, state array or None) for the network's optimizer."""
    opt = net.optimizer
    if opt is None:
        return None, None
    name = type(opt).__name__
    if OPTIMIZERS.get(name) is not type(opt):
        raise ValueError(f"cannot save a network whose optimizer is {name}: only the "
                         f"optimizers in cyprop.optimizers.OPTIMIZERS ({', '.join(OPTIMIZERS)}) "
                         "can be saved; set net.optimizer = None to save without it")
    state, steps = opt.state, int(opt.steps)
    if state is not None and (state.ndim != 2 or state.shape[1] != net.n_params
                              or state.dtype != net.dtype):
        # State left from another network: the next step would discard it and start
        # afresh (Optimizer.state_for), so saving "no state" is the same optimizer.
        state, steps = None, 0
    if state is not None and state.shape[0] != type(opt).n_slots:
        raise ValueError(f"cannot save: the {name} state has {state.shape[0]} rows, "
                         f"expected {type(opt).n_slots}")
    if not 0 <= steps <= MAX_STEPS:
        raise ValueError(f"cannot save: the {name} step count {steps} is outside "
                         f"0..2**62-1, which load accepts")
    record = {"name": name, "config": opt.get_config(), "steps": steps,
              "has_state": state is not None,
              "initial_learning_rate": float(opt.initial_learning_rate)}
    return record, state


def _json_seed(seed: object) -> int | None:
    if (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
            and 0 <= seed < _SEED_LIMIT):  # type: ignore[operator]  # (as in _validation)
        return int(seed)
    return None


def _json_default(value: object) -> Any:
    # NumPy scalars and arrays can appear in generator states and optimizer configs.
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _save_target(path: str) -> tuple[str, int | None]:
    """(the file to write, the permission bits to give it or None for a new file).

    A symbolic link is followed, so that its target is replaced and the link stays.
    Anything but a regular file is refused: renaming onto it would replace a FIFO
    or a device node (as root, even /dev/null) with a file."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return target, None
    _require_regular_file(path, st.st_mode, "save to")
    return target, stat.S_IMODE(st.st_mode) & 0o777


def _write_atomic(path: str, arrays: dict[str, Any], mode: int | None) -> None:
    """Write ``arrays`` as an .npz to ``path`` via a temporary file and a rename;
    ``mode``: the new file's permission bits (None: 0o666 less the umask)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = _temporary_path(path)
    # O_EXCL: never clobber an existing file.  Created with at most the kept bits (the
    # umask may take some away: fchmod restores them), so never readable by more
    # people than the file it replaces, even for a moment.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), mode)
            np.savez(fh, **arrays)  # to a file object, so savez adds no ".npz"
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _temporary_path(path: str) -> str:
    """``.{name}.{random}.tmp`` beside ``path`` (of its type, str or bytes): in the same
    directory, so that os.replace is a rename within one file system (atomic); a
    dot-name with a random part, so that it neither shows up nor collides; the name
    cut short where needed, so that it fits wherever the final name (up to NAME_MAX
    bytes) does."""
    directory, name = os.path.split(os.path.abspath(os.fsencode(path)))
    suffix = f".{secrets.token_hex(8)}.tmp".encode()
    try:
        name_max = min(os.pathconf(directory, "PC_NAME_MAX"), 255)
    except (AttributeError, OSError, ValueError):   # no pathconf (Windows)
        name_max = 255
    cut = max(name_max - 1 - len(suffix), 0)
    if len(name) > cut:
        # At a character boundary (not before a UTF-8 continuation byte): some file
        # systems want valid UTF-8 names.
        while cut > 0 and 0x80 <= name[cut] < 0xC0:
            cut -= 1
        name = name[:cut]
    tmp = os.path.join(directory, b"." + name + suffix)
    return tmp if isinstance(path, bytes) else os.fsdecode(tmp)


def _fsync_directory(directory: str) -> None:
    # Makes the rename itself durable on POSIX; directories cannot be opened (and need
    # not be synced) on Windows, hence best effort.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _require_regular_file(path: str, mode: int, action: str) -> None:
    """Raise unless ``mode`` (an ``st_mode``) is a regular file's, naming what it is."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, f"cannot {action} {path!r}: it is a directory",
                                path)
    kinds = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    kind = next((name for test, name in kinds if test(mode)), "not a regular file")
    raise ValueError(f"cannot {action} {path!r}: it is {kind}, not a regular file")


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
    with _open_regular_file(path) as fh:
        metadata, arrays = _read(path, fh, os.fstat(fh.fileno()).st_size)
    return _build(path, metadata, arrays, backend)


def _open_regular_file(path: str) -> BinaryIO:
    """``path`` opened for reading in binary mode, if it is a regular file."""
    # Looked at before it is opened: opening a device can have effects of its own
    # (a tape rewinds, a watchdog starts), and opening a FIFO blocks until a writer
    # comes.
    _require_regular_file(path, os.stat(path).st_mode, "load")
    # The path may have changed since: O_NONBLOCK keeps a FIFO from blocking the
    # open (regular files ignore it), fstat checks what was opened.
    flags = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
             | getattr(os, "O_BINARY", 0))
    fd = os.open(path, flags)
    try:
        _require_regular_file(path, os.fstat(fd).st_mode, "load")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _invalid(path: str, problem: str) -> ValueError:
    return ValueError(f"cannot load {path!r}: {problem}")


def _read(path: str, fh: BinaryIO, size: int) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """(validated metadata, {name: array}) from an open file of ``size`` bytes;
    ValueError if bad."""
    signature = fh.read(4)
    if not signature:
        raise _invalid(path, "the file is empty")
    if signature not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _invalid(path, "not a cyprop network file (not an .npz/zip archive)")
    fh.seek(0)
    archive = _guarded(path, "the file is truncated or corrupted", zipfile.ZipFile, fh)
    with archive:
        # Each member's CRC-32 is checked as it is read to its end; members that are
        # not read are refused.
        members = _check_members(path, archive, size)
        if _METADATA not in members:
            raise _invalid(path, "not a cyprop network file (an .npz archive without "
                                 f"cyprop's {_METADATA!r} entry)")
        info = members[_METADATA]
        if info.file_size > METADATA_LIMIT:
            raise _invalid(path, f"the metadata entry has {info.file_size} bytes, more than "
                                 f"the {METADATA_LIMIT} this cyprop reads")
        raw = _read_array(path, archive, info, _METADATA, None, np.dtype(np.uint8))
        metadata = _validate(path, _decode_json(path, raw.tobytes()))
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
        arrays = {name: _read_array(path, archive, members[name], name, shape, metadata["dtype"])
                  for name, shape in expected.items()}
    return metadata, arrays


def _guarded(path: str, problem: str, function: Callable[..., _T], *args: Any) -> _T:
    """``function(*args)``, any exception from it a ValueError: zipfile and NumPy raise a
    wide, undocumented range of them on damaged input (BadZipFile, EOFError,
    struct.error, NotImplementedError, RuntimeError, ...)."""
    try:
        return function(*args)
    except MemoryError:
        raise
    except Exception as exc:
        raise _invalid(path, f"{problem} ({type(exc).__name__}: {_short.repr(str(exc))})") \
            from exc


def _check_members(path: str, archive: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """{name without .npy: ZipInfo} of an archive whose every member is one cyprop
    could have written: stored, unencrypted, a plain unique name, inside the file."""
    members, total = {}, 0
    for info in archive.infolist():
        name = info.orig_filename
        if not _MEMBER_NAME.fullmatch(name):
            raise _invalid(path, f"not a cyprop network file (it holds {_short.repr(name)}, "
                                 "not a plain '<name>.npy' array)")
        if info.compress_type != zipfile.ZIP_STORED:
            raise _invalid(path, f"entry {name!r} is compressed (method {info.compress_type}); "
                                 "cyprop files are not")
        if info.flag_bits & ~_ZIP_FLAGS:
            problem = "encrypted" if info.flag_bits & 0x1 else f"flagged {info.flag_bits:#x}"
            raise _invalid(path, f"entry {name!r} is {problem}, which cyprop files never are")
        if name[:-4] in members:
            raise _invalid(path, f"the file is corrupted (duplicate entries {name!r})")
        # Stored: the sizes are equal, and the data must lie inside the file.
        total += info.compress_size
        if (info.file_size != info.compress_size or info.header_offset < 0
                or info.header_offset + info.compress_size > size or total > size):
            raise _invalid(path, f"the file is truncated or corrupted (entry {name!r} "
                                 "claims more data than the file holds)")
        members[name[:-4]] = info
    return members


def _read_array(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str,
                shape: tuple[int, ...] | None, dtype: np.dtype[Any]) -> NDArray[Any]:
    """One member as a native-order, C-contiguous array of its own, its header checked
    against ``shape`` (None: any 1-D) and ``dtype`` *before* the data is read, so a
    bad file can neither trigger unpickling nor a huge allocation."""
    with _guarded(path, f"array {name!r} is unreadable", archive.open, info) as fp:
        file_shape, fortran, file_dtype = _guarded(
            path, f"array {name!r} is unreadable", _read_npy_header, fp)
        # Byte order aside (a file may come from a big-endian machine), the dtype must
        # match; subarray and structured dtypes never equal a plain one.
        if file_dtype.hasobject or file_dtype.newbyteorder("=") != dtype:
            raise _invalid(path, f"array {name!r} has dtype {file_dtype}, expected {dtype.name}")
        if not all(type(n) is int and n >= 0 for n in file_shape):
            raise _invalid(path, f"array {name!r} has an invalid shape {_short.repr(file_shape)}")
        if shape is None:
            if len(file_shape) != 1:
                raise _invalid(path, f"array {name!r} has shape {file_shape}, expected 1-D")
            shape = file_shape
        if tuple(file_shape) != tuple(shape):
            raise _invalid(path, f"array {name!r} has shape {tuple(file_shape)}, "
                                 f"expected {tuple(shape)}")
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > info.file_size:
            raise _invalid(path, f"array {name!r} claims more data than the file holds")
        data = _guarded(path, f"array {name!r} is unreadable", fp.read, nbytes)
        # Reading past the end also checks the CRC-32.
        rest = _guarded(path, f"array {name!r} is unreadable", fp.read, 1)
    if len(data) != nbytes:
        raise _invalid(path, f"array {name!r} is truncated")
    if rest:
        raise _invalid(path, f"array {name!r} has data after its end")
    array = np.frombuffer(data, dtype=file_dtype)
    array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    # Own, native-order, C-contiguous: what the compiled core requires.
    return np.array(array, dtype=dtype, order="C", copy=True)


def _read_npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran_order, dtype) from an .npy header, read by NumPy once its
    length is known to be sane."""
    magic = fp.read(8)
    if magic[:6] != npy_format.MAGIC_PREFIX or magic[6:] not in (b"\x01\x00", b"\x02\x00"):
        raise ValueError(f"not an .npy array of a version cyprop reads (starts {magic!r})")
    length_format = "<H" if magic[6] == 1 else "<I"
    length_bytes = fp.read(struct.calcsize(length_format))
    (length,) = struct.unpack(length_format, length_bytes)
    if length > NPY_HEADER_LIMIT:
        raise ValueError(f"its header has {length} bytes, more than {NPY_HEADER_LIMIT}")
    header = io.BytesIO(length_bytes + fp.read(length))
    if magic[6] == 1:
        return npy_format.read_array_header_1_0(header)
    return npy_format.read_array_header_2_0(header)


def _decode_json(path: str, text: bytes) -> Any:
    """The metadata's JSON value; ValueError for anything but UTF-8 JSON."""
    def parse_int(digits: str) -> int:
        if len(digits) > _JSON_INT_DIGITS:
            raise ValueError(f"an integer of {len(digits)} digits")
        return int(digits)

    try:
        return json.loads(text.decode("utf-8"), parse_int=parse_int)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _invalid(path, f"the metadata is not valid JSON ({_short.repr(str(exc))})") \
            from exc


def _validate(path: str, meta: Any) -> dict[str, Any]:
    """The metadata, checked; raises ValueError naming the problem.

    On success the returned dict has ``dtype`` as a NumPy dtype and is safe to build
    a network from once ``_check_sizes_fit`` has checked its sizes against the file."""
    def require(condition: object, problem: str) -> None:
        if not condition:
            raise _invalid(path, problem)

    r = _short.repr
    require(isinstance(meta, dict) and meta.get("format") == FORMAT_NAME,
            "not a cyprop network file (its metadata does not name the cyprop format)")
    version = meta.get("format_version")
    require(_is_int(version) and version >= 1, f"invalid format version {r(version)}")
    require(version <= FORMAT_VERSION,
            f"the file has format version {version}, written by a newer cyprop; this "
            f"cyprop ({__version__}) reads versions up to {FORMAT_VERSION}: upgrade cyprop")
    for key in ("sizes", "activations", "loss", "dtype", "init", "seed", "rng", "optimizer",
                "history"):
        require(key in meta, f"the metadata lacks {key!r}")

    sizes, activations, loss = meta["sizes"], meta["activations"], meta["loss"]
    require(isinstance(sizes, list) and len(sizes) >= 2
            and all(_is_int(s) and s >= 1 for s in sizes),
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
    require(seed is None or (_is_int(seed) and 0 <= seed < _SEED_LIMIT),
            f"invalid seed {r(seed)} (expected null or an integer in 0..2**128-1)")
    problem = _rng_problem(meta["rng"])
    require(problem is None, f"invalid random generator state ({problem})")
    # Added after the first files of format 1 were written: optional, with the values
    # that those files' networks had (no dropout, no max-norm).
    dropout = meta.setdefault("dropout", [0.0] * (len(sizes) - 2))
    require(isinstance(dropout, list) and len(dropout) == len(sizes) - 2
            and all(_is_number(p) and 0 <= p < 1 for p in dropout),
            f"invalid dropout rates {r(dropout)} for sizes {r(sizes)}")
    max_norm = meta.setdefault("max_norm", 0.0)
    require(_is_finite(max_norm) and max_norm >= 0, f"invalid max_norm {r(max_norm)}")
    _validate_optimizer(require, meta["optimizer"])
    _validate_history(require, meta["history"])
    return meta


def _validate_optimizer(require: Callable[[object, str], None], opt: Any) -> None:
    if opt is None:
        return
    r = _short.repr
    require(isinstance(opt, dict) and _OPTIMIZER_KEYS <= set(opt)
            and set(opt) <= _OPTIMIZER_KEYS | _OPTIMIZER_OPTIONAL_KEYS,
            "invalid optimizer entry")
    name = opt["name"]
    require(isinstance(name, str) and name in OPTIMIZERS,
            f"unknown optimizer {r(name)}; this cyprop knows {', '.join(OPTIMIZERS)}")
    require(isinstance(opt["config"], dict), "invalid optimizer config")
    problem = _config_problem(name, opt["config"])
    require(problem is None, f"invalid {name} configuration ({problem})")
    steps = opt["steps"]
    require(_is_int(steps) and 0 <= steps <= MAX_STEPS,
            f"invalid optimizer step count {r(steps)} (expected 0..2**62-1)")
    require(isinstance(opt["has_state"], bool), "invalid optimizer entry")
    initial = opt.get("initial_learning_rate")
    require(initial is None or (_is_finite(initial) and initial > 0),
            f"invalid initial learning rate {r(initial)}")


def _config_problem(name: str, config: dict[str, Any]) -> str | None:
    """None if ``config`` has the keys and value types of the optimizer's own
    ``get_config()`` (its constructor checks the ranges), else the problem."""
    defaults = OPTIMIZERS[name]().get_config()
    for key, value in config.items():
        if key not in defaults:
            return f"unknown parameter {_short.repr(key)}"
        default = defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, list):
            ok = (isinstance(value, list) and len(value) == len(default)
                  and all(_is_finite(v) for v in value))
        else:
            ok = _is_finite(value)
        if not ok:
            return f"{key}={_short.repr(value)} is not a finite number like {default!r}"
    return None


def _validate_history(require: Callable[[object, str], None], history: Any) -> None:
    require(isinstance(history, dict) and isinstance(history.get("records"), dict)
            and "stop_reason" in history
            and (history["stop_reason"] is None or isinstance(history["stop_reason"], str)),
            "invalid training history")
    lengths = set()
    for key, values in history["records"].items():
        # Non-finite values are real (an infinite samples/second), but ints that no
        # float can hold are not.
        require(isinstance(values, list)
                and all(v is None or isinstance(v, float) or _is_finite(v) for v in values),
                f"invalid training history record {_short.repr(key)}")
        lengths.add(len(values))
    require(len(lengths) <= 1, "the training history records have different lengths")


def _uint(bits: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and 0 <= v < 1 << bits), f"an unsigned {bits}-bit integer"


def _odd_uint(bits: int) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: _is_int(v) and 0 <= v < 1 << bits and v % 2 == 1),
            f"an odd unsigned {bits}-bit integer")


def _int_range(low: int, high: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and low <= v <= high), f"an integer in {low}..{high}"


def _words(count: int, bits: int) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: isinstance(v, list) and len(v) == count
             and all(_is_int(w) and 0 <= w < 1 << bits for w in v)),
            f"a list of {count} unsigned {bits}-bit integers")


_BUFFERED = {"has_uint32": _int_range(0, 1), "uinteger": _uint(32)}
# For each bit generator a file may name: the fields of its ``state`` entry and those
# beside it, each (check, what it must be), exactly as NumPy's ``bit_generator.state``
# has them.  NumPy's setters accept more (an MT19937 position far past its key, a
# negative Philox buffer position) and the next draw then reads outside its arrays.
_RNG_FIELDS = {
    "PCG64": ({"state": _uint(128), "inc": _odd_uint(128)}, _BUFFERED),
    "PCG64DXSM": ({"state": _uint(128), "inc": _odd_uint(128)}, _BUFFERED),
    "SFC64": ({"state": _words(4, 64)}, _BUFFERED),
    "Philox": ({"counter": _words(4, 64), "key": _words(2, 64)},
               {"buffer": _words(4, 64), "buffer_pos": _int_range(0, 4), **_BUFFERED}),
    "MT19937": ({"key": _words(624, 32), "pos": _int_range(0, 624)}, {}),
}


def _rng_problem(rng: Any) -> str | None:
    """None if ``rng`` is a state NumPy's own generator could be in, else the problem."""
    if not isinstance(rng, dict):
        return "not an object"
    name = rng.get("bit_generator")
    if not (isinstance(name, str) and name in _RNG_FIELDS):
        return f"bit generator {_short.repr(name)} is not one of {', '.join(_RNG_FIELDS)}"
    fields, beside = _RNG_FIELDS[name]
    if set(rng) != {"bit_generator", "state", *beside}:
        return f"{name} state with keys {_short.repr(sorted(rng))}"
    state = rng["state"]
    if not isinstance(state, dict) or set(state) != set(fields):
        return f"{name} 'state' must be an object with keys {sorted(fields)}"
    for where, values, checks in (("state.", state, fields), ("", rng, beside)):
        for key, (check, what) in checks.items():
            if not check(values[key]):
                return f"{name} {where}{key} must be {what}"
    return None


def _expected_arrays(meta: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """{array name: shape} the metadata calls for, metadata itself aside."""
    sizes = meta["sizes"]
    expected: dict[str, tuple[int, ...]] = {}
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        expected[f"weights_{layer}"] = (n_out, n_in)
        expected[f"biases_{layer}"] = (n_out,)
    opt = meta["optimizer"]
    if opt is not None and opt["has_state"]:
        n_params = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        expected[_OPTIMIZER_STATE] = (OPTIMIZERS[opt["name"]].n_slots, n_params)
    return expected


def _check_sizes_fit(path: str, meta: dict[str, Any], expected: dict[str, tuple[int, ...]],
                     members: dict[str, zipfile.ZipInfo], size: int) -> None:
    """The arrays the metadata calls for must be in the file: refused from the numbers
    alone, before the network or any array is allocated."""
    if len(expected) > len(members):
        # (a million one-unit layers take two bytes each in the JSON, far more in memory)
        raise _invalid(path, f"the file is incomplete: its metadata calls for {len(expected)} "
                             f"arrays, the file holds {len(members) - 1}")
    needed = sum(math.prod(shape) for shape in expected.values()) * meta["dtype"].itemsize
    if needed > size:
        raise _invalid(path, f"invalid layer sizes {_short.repr(meta['sizes'])}: their arrays "
                             f"need {needed} bytes, the file has {size}")


def _build(path: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]],
           backend: str) -> Network:
    """A ``Network`` from validated metadata and arrays."""
    arch = meta["arch"]
    try:
        # The constructor applies the same rules as for a new network (e.g. no
        # cross-entropy with a ReLU output), so a file cannot smuggle in a model
        # that Network itself would refuse.
        net = Network(list(arch.sizes), activation=list(arch.activations[:-1]),
                      output=arch.activations[-1], loss=arch.loss, init=meta["init"],
                      dtype=meta["dtype"], seed=meta["seed"], backend=backend,
                      dropout=meta["dropout"], max_norm=meta["max_norm"] or None)
    except (TypeError, ValueError) as exc:
        raise _invalid(path, f"it describes a network cyprop cannot build: {exc}") from exc

    weights, biases = arch.split(net._params)
    for layer in range(arch.n_layers):
        weights[layer][...] = arrays[f"weights_{layer}"]
        biases[layer][...] = arrays[f"biases_{layer}"]
    if not np.isfinite(net._params).all():
        raise _invalid(path, "the weights contain NaN or infinity")

    name = meta["rng"]["bit_generator"]
    bit_generator = getattr(np.random, name)()  # name: one of _RNG_FIELDS, checked
    try:
        bit_generator.state = meta["rng"]
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise _invalid(path, f"invalid random generator state ({exc})") from exc
    net._rng = np.random.Generator(bit_generator)

    opt = meta["optimizer"]
    if opt is not None:
        # get_config() gave the current rate, which a schedule may have taken anywhere
        # down to 0 (a finished Cosine); the constructor, which wants a rate > 0, gets
        # the initial one, which schedules scale, and the current one is set after.
        config = dict(opt["config"])
        initial = opt.get("initial_learning_rate")
        current = config.get("learning_rate")
        if initial is not None and "learning_rate" in config:
            config["learning_rate"] = initial
        try:
            optimizer = OPTIMIZERS[opt["name"]](**config)
            if current is not None and current < 0:
                raise ValueError(f"learning_rate must be a finite number >= 0, got {current!r}")
        except (TypeError, ValueError) as exc:
            raise _invalid(path, f"invalid {opt['name']} configuration ({exc})") from exc
        if initial is not None:
            optimizer.initial_learning_rate = float(initial)
            if current is not None:
                optimizer.learning_rate = float(current)
        optimizer.steps = opt["steps"]
        if opt["has_state"]:
            optimizer.state = arrays[_OPTIMIZER_STATE]
            if not np.isfinite(optimizer.state).all():
                raise _invalid(path, "the optimizer state contains NaN or infinity")
        net.optimizer = optimizer

    history = History()
    records = meta["history"]["records"]
    epochs = len(next(iter(records.values()), []))
    for key in History.KEYS:
        # Records this cyprop knows but the file lacks are filled with None; records it
        # does not know (from a newer cyprop) are left out.
        setattr(history, key, [None if v is None else float(v)
                               for v in records.get(key, [None] * epochs)])
    history.stop_reason = meta["history"]["stop_reason"]
    net.history = history
    return net


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A number that a float holds finitely: no NaN or infinity, and no int beyond
    float range (compared exactly, where float() would raise OverflowError)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value) and abs(value) <= sys.float_info.max
