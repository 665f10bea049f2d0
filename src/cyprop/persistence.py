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
                             int or None, else as None (only the generator state
                             below matters once the network exists)
    rng                      ``bit_generator.state`` of the network's shuffling generator
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
"""

import contextlib
import json
import math
import numbers
import os
import secrets
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from . import _backend, _maths
from ._architecture import Architecture
from ._version import __version__
from .history import History
from .network import Network
from .optimizers import OPTIMIZERS

#: Bump when the layout changes in a way older readers cannot handle; ``load``
#: refuses files with a higher version instead of misreading them.
FORMAT_VERSION = 1
FORMAT_NAME = "cyprop-network"

_METADATA = "metadata"
_OPTIMIZER_STATE = "optimizer_state"
_DTYPES = ("float32", "float64")
# Bit generators whose state round-trips through JSON and that a file may name; the
# name is looked up on ``numpy.random``, so it must never be taken from the file as is.
_BIT_GENERATORS = ("PCG64", "PCG64DXSM", "SFC64", "Philox", "MT19937")
# The optimizer entry's keys: those every file has, and those added since (optional).
_OPTIMIZER_KEYS = {"name", "config", "steps", "has_state"}
_OPTIMIZER_OPTIONAL_KEYS = {"initial_learning_rate"}


# ----------------------------------------------------------------------------- save
def save(net, path):
    """Write ``net`` to exactly ``path`` as one ``.npz`` file (see the module docstring).

    Unlike ``numpy.savez``, no ``.npz`` suffix is appended: ``save(net, "model")``
    writes a file named ``model``.  The file appears atomically: it is written to a
    temporary file in the same directory, flushed to disk, then renamed onto
    ``path``, so a crash or error midway leaves any previous file at ``path`` intact.
    """
    path = os.fspath(path)
    # Build everything first: a network that cannot be saved fails before any file
    # is touched.
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
        "rng": net._rng.bit_generator.state,
        "dropout": [float(rate) for rate in net.dropout],
        "max_norm": float(net.max_norm or 0.0),
        "optimizer": optimizer,
        "history": {
            "records": {key: [None if v is None else float(v) for v in getattr(net.history, key)]
                        for key in History.KEYS},
            "stop_reason": net.history.stop_reason,
        },
    }
    try:
        text = json.dumps(metadata, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot save this network: its metadata is not JSON-serialisable ({exc})") \
            from exc
    arrays = {_METADATA: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    weights, biases = net.arch.split(net._params)
    for layer, (W, b) in enumerate(zip(weights, biases)):
        arrays[f"weights_{layer}"] = W
        arrays[f"biases_{layer}"] = b
    if state is not None:
        arrays[_OPTIMIZER_STATE] = state
    _write_atomic(path, arrays)


def _optimizer_record(net):
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
    record = {"name": name, "config": opt.get_config(), "steps": steps,
              "has_state": state is not None,
              "initial_learning_rate": float(opt.initial_learning_rate)}
    return record, state


def _json_seed(seed):
    if seed is None or (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)):
        return None if seed is None else int(seed)
    return None


def _json_default(value):
    # NumPy scalars and arrays can appear in generator states and optimizer configs.
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _write_atomic(path, arrays):
    """Write ``arrays`` as an .npz to ``path`` via a temporary file and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    # Same directory, so that os.replace is a rename within one file system (atomic);
    # a dot-name and a random part, so it neither shows up nor collides.
    tmp = os.path.join(directory,
                       f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # "x": never clobber an existing file; mode 0o666 less the umask, like any new file.
    fh = open(tmp, "xb")
    try:
        with fh:
            np.savez(fh, **arrays)  # to a file object, so savez adds no ".npz"
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory):
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


# ----------------------------------------------------------------------------- load
def load(path, backend="auto"):
    """Read a network written by ``Network.save`` from exactly ``path``.

    ``backend`` (``"auto"``, ``"cython"`` or ``"numpy"``) is the caller's choice, not
    the file's; load with the backend the network was trained with to continue
    training bit-for-bit as the original would have.  Nothing is unpickled.  Raises
    ``FileNotFoundError`` (or another ``OSError``) when the file cannot be opened, and
    ``ValueError``, saying what is wrong, for a file that is not a cyprop network,
    is truncated or corrupted, was written by a newer cyprop, or whose contents do not
    fit the architecture it describes.
    """
    if backend not in _backend.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_backend.BACKENDS)}")
    path = os.fspath(path)
    with open(path, "rb") as fh:
        metadata, arrays = _read(path, fh)
    return _build(path, metadata, arrays, backend)


def _invalid(path, problem):
    return ValueError(f"cannot load {path!r}: {problem}")


def _read(path, fh):
    """(validated metadata, {name: array}) from an open file; ValueError if bad."""
    signature = fh.read(4)
    if not signature:
        raise _invalid(path, "the file is empty")
    if signature not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise _invalid(path, "not a cyprop network file (not an .npz/zip archive)")
    fh.seek(0)
    # zipfile and NumPy raise a wide, undocumented range of exceptions on damaged
    # input (BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError for
    # an "encrypted" flag, ...).  Any of them from these calls means a bad file.
    try:
        archive = zipfile.ZipFile(fh)
        names = archive.namelist()
        damaged = archive.testzip()  # reads every member, checking its CRC-32
    except MemoryError:
        raise
    except Exception as exc:
        raise _invalid(path, f"the file is truncated or corrupted ({type(exc).__name__}: {exc})") \
            from exc
    with archive:
        if damaged is not None:
            raise _invalid(path, f"the file is corrupted (bad checksum in {damaged!r})")
        if len(set(names)) != len(names):
            raise _invalid(path, "the file is corrupted (duplicate entries)")
        members = {name[:-len(".npy")]: name for name in names if name.endswith(".npy")}
        if _METADATA not in members:
            raise _invalid(path, "not a cyprop network file (an .npz archive without "
                                 f"cyprop's {_METADATA!r} entry)")
        raw = _read_array(path, archive, members[_METADATA], _METADATA, None, np.dtype(np.uint8))
        metadata = _validate(path, raw)
        expected = _expected_arrays(metadata)
        missing = [name for name in expected if name not in members]
        if missing:
            raise _invalid(path, f"the file is incomplete: missing {', '.join(missing)}")
        unexpected = sorted(set(names) - {members[name] for name in expected} - {members[_METADATA]})
        if unexpected:
            raise _invalid(path, f"unexpected entries {', '.join(map(repr, unexpected))}")
        arrays = {name: _read_array(path, archive, members[name], name, shape, metadata["dtype"])
                  for name, shape in expected.items()}
    return metadata, arrays


def _read_array(path, archive, member, name, shape, dtype):
    """One member as an array, its header checked against ``shape`` (None: any 1-D)
    and ``dtype`` *before* the data is read, so a bad file can neither trigger
    unpickling nor a huge allocation."""
    info = archive.getinfo(member)
    try:
        with archive.open(info) as fp:
            version = npy_format.read_magic(fp)
            if version == (1, 0):
                file_shape, _, file_dtype = npy_format.read_array_header_1_0(fp)
            elif version == (2, 0):
                file_shape, _, file_dtype = npy_format.read_array_header_2_0(fp)
            else:
                raise ValueError(f".npy format version {version} is not used by cyprop")
    except MemoryError:
        raise
    except Exception as exc:
        raise _invalid(path, f"array {name!r} is unreadable ({type(exc).__name__}: {exc})") \
            from exc
    # Byte order aside (a file may come from a big-endian machine), the dtype must match.
    if file_dtype.hasobject or file_dtype.newbyteorder("=") != dtype:
        raise _invalid(path, f"array {name!r} has dtype {file_dtype}, expected {dtype.name}")
    if shape is None:
        if len(file_shape) != 1:
            raise _invalid(path, f"array {name!r} has shape {file_shape}, expected 1-D")
        shape = file_shape
    if tuple(file_shape) != tuple(shape):
        raise _invalid(path, f"array {name!r} has shape {tuple(file_shape)}, expected {tuple(shape)}")
    if math.prod(shape) * dtype.itemsize > info.file_size:
        raise _invalid(path, f"array {name!r} claims more data than the file holds")
    try:
        with archive.open(info) as fp:
            array = np.load(fp, allow_pickle=False)
    except MemoryError:
        raise
    except Exception as exc:
        raise _invalid(path, f"array {name!r} is unreadable ({type(exc).__name__}: {exc})") \
            from exc
    # Own, native-order, C-contiguous: what the compiled core requires.
    return np.array(array, dtype=dtype, order="C", copy=True)


def _validate(path, raw):
    """The metadata JSON, decoded and checked; raises ValueError naming the problem.

    On success the returned dict is safe to build a network from, with ``arch``
    (an ``Architecture``) and ``dtype`` (a NumPy dtype) filled in."""
    def require(condition, problem):
        if not condition:
            raise _invalid(path, problem)

    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _invalid(path, f"the metadata is not valid JSON ({exc})") from exc
    require(isinstance(meta, dict) and meta.get("format") == FORMAT_NAME,
            "not a cyprop network file (its metadata does not name the cyprop format)")
    version = meta.get("format_version")
    require(_is_int(version) and version >= 1, f"invalid format version {version!r}")
    require(version <= FORMAT_VERSION,
            f"the file has format version {version}, written by a newer cyprop; this "
            f"cyprop ({__version__}) reads versions up to {FORMAT_VERSION}: upgrade cyprop")
    for key in ("sizes", "activations", "loss", "dtype", "init", "seed", "rng", "optimizer",
                "history"):
        require(key in meta, f"the metadata lacks {key!r}")

    sizes, activations, loss = meta["sizes"], meta["activations"], meta["loss"]
    require(isinstance(sizes, list) and len(sizes) >= 2
            and all(_is_int(s) and s >= 1 for s in sizes),
            f"invalid layer sizes {sizes!r}")
    require(isinstance(activations, list) and len(activations) == len(sizes) - 1
            and all(a in _maths.ACTIVATIONS for a in activations),
            f"invalid activations {activations!r} for sizes {sizes}")
    require(loss in _maths.LOSSES, f"invalid loss {loss!r}")
    require(meta["dtype"] in _DTYPES, f"invalid dtype {meta['dtype']!r}")
    require(isinstance(meta["init"], str), f"invalid init {meta['init']!r}")
    require(meta["seed"] is None or _is_int(meta["seed"]), f"invalid seed {meta['seed']!r}")
    rng = meta["rng"]
    require(isinstance(rng, dict) and rng.get("bit_generator") in _BIT_GENERATORS,
            "invalid random generator state")
    try:
        meta["arch"] = Architecture(sizes, activations, loss)
    except (ValueError, OverflowError) as exc:  # sizes beyond what an index can hold
        raise _invalid(path, f"invalid layer sizes {sizes!r} ({exc})") from exc
    meta["dtype"] = np.dtype(meta["dtype"])
    # Added after the first files of format 1 were written: optional, with the values
    # that those files' networks had (no dropout, no max-norm).
    dropout = meta.setdefault("dropout", [0.0] * (len(sizes) - 2))
    require(isinstance(dropout, list) and len(dropout) == len(sizes) - 2
            and all(_is_number(r) and 0 <= r < 1 for r in dropout),
            f"invalid dropout rates {dropout!r} for sizes {sizes}")
    max_norm = meta.setdefault("max_norm", 0.0)
    require(_is_number(max_norm) and math.isfinite(max_norm) and max_norm >= 0,
            f"invalid max_norm {max_norm!r}")

    opt = meta["optimizer"]
    if opt is not None:
        require(isinstance(opt, dict) and _OPTIMIZER_KEYS <= set(opt)
                and set(opt) <= _OPTIMIZER_KEYS | _OPTIMIZER_OPTIONAL_KEYS,
                "invalid optimizer entry")
        require(opt["name"] in OPTIMIZERS, f"unknown optimizer {opt['name']!r}; this cyprop "
                                           f"knows {', '.join(OPTIMIZERS)}")
        require(isinstance(opt["config"], dict), "invalid optimizer config")
        require(_is_int(opt["steps"]) and opt["steps"] >= 0,
                f"invalid optimizer step count {opt['steps']!r}")
        require(isinstance(opt["has_state"], bool), "invalid optimizer entry")
        initial = opt.get("initial_learning_rate")
        require(initial is None or (_is_number(initial) and math.isfinite(initial)
                                    and initial > 0),
                f"invalid initial learning rate {initial!r}")

    history = meta["history"]
    require(isinstance(history, dict) and isinstance(history.get("records"), dict)
            and (history.get("stop_reason") is None or isinstance(history["stop_reason"], str)),
            "invalid training history")
    lengths = set()
    for key, values in history["records"].items():
        require(isinstance(values, list)
                and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                        for v in values),
                f"invalid training history record {key!r}")
        lengths.add(len(values))
    require(len(lengths) <= 1, "the training history records have different lengths")
    return meta


def _expected_arrays(meta):
    """{array name: shape} the metadata calls for, metadata itself aside."""
    arch = meta["arch"]
    expected = {}
    for layer, (n_in, n_out) in enumerate(zip(arch.sizes[:-1], arch.sizes[1:])):
        expected[f"weights_{layer}"] = (n_out, n_in)
        expected[f"biases_{layer}"] = (n_out,)
    opt = meta["optimizer"]
    if opt is not None and opt["has_state"]:
        expected[_OPTIMIZER_STATE] = (OPTIMIZERS[opt["name"]].n_slots, arch.n_params)
    return expected


def _build(path, meta, arrays, backend):
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
    bit_generator = getattr(np.random, name)()
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
            if current is not None and not (_is_number(current) and math.isfinite(current)
                                            and current >= 0):
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
        setattr(history, key, list(records.get(key, [None] * epochs)))
    history.stop_reason = meta["history"]["stop_reason"]
    net.history = history
    return net


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)
