"""What a network's state may hold, and the network file a state makes: the part of
persistence below ``network.py``.

``Network.get_state`` / ``Network.from_state`` and ``cyprop.persistence`` share these
checks, so that a state handed to ``from_state`` and a file handed to ``load`` are held
to the same rules: ``rng_problem`` (a generator state, field by field against NumPy's
own), ``validate_optimizer`` and ``config_problem`` (an optimizer entry),
``validate_history`` (the records), ``is_int`` / ``is_number`` / ``is_finite``.

``encode(state)`` gives the members of the file ``Network.save`` writes for a state
(the layout is described in ``cyprop.persistence``), ``write(state, path)`` writes it
atomically and ``file_bytes(state)`` returns its bytes (for ensemble files).  Reading a
file back is ``persistence``'s: it builds the network with ``Network.from_state``.
This module imports nothing of ``network`` (nor of ``persistence``) at run time.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
from numpy.typing import NDArray

from . import _archive
from ._architecture import Architecture
from ._version import __version__
from .history import History
from .optimizers import MAX_STEPS, OPTIMIZERS

if TYPE_CHECKING:
    from .network import NetworkState

short = _archive.short

#: Bump when the layout changes in a way older readers cannot handle; ``load``
#: refuses files with a higher version instead of misreading them.  Version 2 holds the
#: history's records in arrays (``HISTORY``) where version 1 held them in the metadata's
#: JSON: a stream of one-row ``partial_fit`` calls records an epoch each, and a long
#: one outgrew the metadata that ``load`` reads.
FORMAT_VERSION = 2
FORMAT_NAME = "cyprop-network"
#: The format of an Ensemble's file (cyprop/ensemble.py), which load names to say so.
ENSEMBLE_FORMAT_NAME = "cyprop-ensemble"
#: The member that holds the optimizer's state, when it has one.
OPTIMIZER_STATE = "optimizer_state"
#: The members that hold the history's records (format 2 on): one row per record, one
#: column per epoch, float64, and where a record holds None (True) or a number.
HISTORY = "history"
HISTORY_NONE = "history_none"
# The optimizer entry's keys: those every file has, and those added since (optional).
OPTIMIZER_KEYS = {"name", "config", "steps", "has_state"}
OPTIMIZER_OPTIONAL_KEYS = {"initial_learning_rate"}
SEED_LIMIT = 2**128
#: A class label (``Network.classes``) is an integer of less than this size (as
#: ``cyprop.datasets.load_csv`` reads class numbers) or a name of at most
#: ``CLASS_NAME_LIMIT`` characters.
CLASS_NUMBER_LIMIT = 2**53
CLASS_NAME_LIMIT = 1000
# What would split one label into several lines where labels are printed one a line.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


# ---------------------------------------------------------------------- a state's file
def encode(state: NetworkState) -> dict[str, NDArray[Any]]:
    """{member name: array} of the network file for ``state``, the metadata member
    first; TypeError if the metadata is not JSON-serialisable, ValueError if it is
    larger than ``cyprop.load`` reads."""
    optimizer = None
    if state.optimizer is not None:
        opt = state.optimizer
        optimizer = {"name": opt.name, "config": opt.config, "steps": int(opt.steps),
                     "has_state": opt.state is not None,
                     "initial_learning_rate": (None if opt.initial_learning_rate is None
                                               else float(opt.initial_learning_rate))}
    metadata: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "cyprop_version": __version__,
        "sizes": list(state.sizes),
        "activations": list(state.activations),
        "loss": state.loss,
        "dtype": state.dtype,
        "init": state.init,
        "seed": json_seed(state.seed),
        "rng": state.rng,
        "dropout": [float(rate) for rate in state.dropout],
        "max_norm": float(state.max_norm or 0.0),
        "optimizer": optimizer,
        "history": {"records": list(History.KEYS), "epochs": history_epochs(state.history),
                    "stop_reason": state.stop_reason},
    }
    if state.classes is not None:
        # optional: a file without it is as before, and readers that do not know it
        # (older cyprop) skip it
        metadata["classes"] = list(state.classes)
    try:
        text = json.dumps(metadata, default=_archive.json_default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot save this network: its metadata is not JSON-serialisable "
                        f"({exc})") from exc
    data = text.encode("utf-8")
    # (with room for the member's .npy header, which the limit counts too)
    if len(data) + _archive.NPY_HEADER_LIMIT > _archive.METADATA_LIMIT:
        raise ValueError(f"cannot save this network, nothing was written: its metadata "
                         f"takes {len(data)} bytes, more than the {_archive.METADATA_LIMIT} "
                         "cyprop.load reads")
    arrays: dict[str, NDArray[Any]] = {_archive.METADATA: np.frombuffer(data, dtype=np.uint8)}
    arch = Architecture(list(state.sizes), list(state.activations), state.loss)
    weights, biases = arch.split(state.params)
    for layer, (W, b) in enumerate(zip(weights, biases)):
        arrays[f"weights_{layer}"] = W
        arrays[f"biases_{layer}"] = b
    if state.optimizer is not None and state.optimizer.state is not None:
        arrays[OPTIMIZER_STATE] = state.optimizer.state
    arrays[HISTORY], arrays[HISTORY_NONE] = history_arrays(state.history)
    return arrays


def history_arrays(records: dict[str, list[Any]]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """The records of ``History.KEYS`` as a file holds them: (values, where None), each
    of shape (len(KEYS), epochs); a record the state lacks is all None."""
    epochs = history_epochs(records)
    values = np.zeros((len(History.KEYS), epochs))
    none = np.ones((len(History.KEYS), epochs), dtype=bool)
    for row, key in enumerate(History.KEYS):
        record = records.get(key, [])
        values[row, :len(record)] = [0.0 if value is None else float(value) for value in record]
        none[row, :len(record)] = [value is None for value in record]
    return values, none


def history_epochs(records: dict[str, list[Any]]) -> int:
    """The number of epochs in a state's records."""
    return max((len(values) for values in records.values()), default=0)


def history_records(keys: list[str], values: NDArray[np.float64],
                    none: NDArray[np.bool_]) -> dict[str, list[float | None]]:
    """The records of a file's history arrays (``history_arrays``), by the names in
    ``keys``, those of ``History.KEYS`` only (a newer cyprop may record more)."""
    return {key: record_list(values[row], none[row])
            for row, key in enumerate(keys) if key in History.KEYS}


def record_list(values: NDArray[np.float64], none: NDArray[np.bool_]) -> list[float | None]:
    """One history record as a list, from its values and where it holds None (a row of
    ``history_arrays``)."""
    return [None if missing else value for value, missing in zip(values.tolist(), none.tolist())]


def write(state: NetworkState, path: str) -> None:
    """Write the network file for ``state`` to exactly ``path``, atomically (see
    ``_archive.write_atomic``)."""
    arrays = encode(state)
    target, mode = _archive.save_target(path)
    _archive.write_atomic(target, arrays, mode)


def file_bytes(state: NetworkState) -> bytes:
    """The bytes of the network file for ``state``."""
    buffer = io.BytesIO()
    # type-ignored: mypy matches the ** mapping against savez's allow_pickle: bool
    np.savez(buffer, **encode(state))  # type: ignore[arg-type]
    return buffer.getvalue()


def plain(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars made lists and Python numbers, in dicts
    and lists too (a generator's ``state`` holds arrays for some bit generators)."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# ------------------------------------------------------------------------------ checks
def validate_optimizer(require: Callable[[object, str], None], opt: Any) -> None:
    if opt is None:
        return
    r = short.repr
    require(isinstance(opt, dict) and OPTIMIZER_KEYS <= set(opt)
            and set(opt) <= OPTIMIZER_KEYS | OPTIMIZER_OPTIONAL_KEYS,
            "invalid optimizer entry")
    name = opt["name"]
    require(isinstance(name, str) and name in OPTIMIZERS,
            f"unknown optimizer {r(name)}; this cyprop knows {', '.join(OPTIMIZERS)}")
    require(isinstance(opt["config"], dict), "invalid optimizer config")
    problem = config_problem(name, opt["config"])
    require(problem is None, f"invalid {name} configuration ({problem})")
    steps = opt["steps"]
    require(is_int(steps) and 0 <= steps <= MAX_STEPS,
            f"invalid optimizer step count {r(steps)} (expected 0..2**62-1)")
    require(isinstance(opt["has_state"], bool), "invalid optimizer entry")
    initial = opt.get("initial_learning_rate")
    require(initial is None or (is_finite(initial) and initial > 0),
            f"invalid initial learning rate {r(initial)}")


def n_classes(n_outputs: int) -> int:
    """The classes of a network with ``n_outputs`` output units (one unit: two)."""
    return max(n_outputs, 2)


def classes_problem(classes: Any, n_outputs: int) -> str | None:
    """None if ``classes`` is None or a list (or tuple) of one label per class of a
    network with ``n_outputs`` outputs, all integers or all names, distinct, that a
    file's JSON holds as they are; else the problem."""
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple)):
        return f"expected a list of labels or None, got {type(classes).__name__}"
    wanted = n_classes(n_outputs)
    if len(classes) != wanted:
        return (f"{len(classes)} labels for a network of {wanted} classes "
                f"({n_outputs} output{'s' if n_outputs > 1 else ''})")
    if all(is_int(label) for label in classes):
        bad = next((v for v in classes if abs(v) >= CLASS_NUMBER_LIMIT), None)
        if bad is not None:
            return f"the class number {short.repr(bad)} is not below 2**53 in size"
    elif all(isinstance(label, str) for label in classes):
        for label in classes:
            if len(label) > CLASS_NAME_LIMIT:
                return (f"the class name {short.repr(label)} has {len(label)} characters, "
                        f"more than {CLASS_NAME_LIMIT}")
            if _LINE_BREAKS.intersection(label):
                return f"the class name {short.repr(label)} holds a line break"
            try:
                label.encode("utf-8")
            except UnicodeEncodeError:
                return f"the class name {short.repr(label)} is not valid Unicode text"
    else:
        return (f"the labels {short.repr(list(classes))} are not all integers or all "
                "names (str)")
    if len(set(classes)) != len(classes):
        return f"the labels {short.repr(list(classes))} are not distinct"
    return None


def config_problem(name: str, config: dict[str, Any]) -> str | None:
    """None if ``config`` has the keys and value types of the optimizer's own
    ``get_config()`` (its constructor checks the ranges), else the problem."""
    defaults = OPTIMIZERS[name]().get_config()
    for key, value in config.items():
        if key not in defaults:
            return f"unknown parameter {short.repr(key)}"
        default = defaults[key]
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, list):
            ok = (isinstance(value, list) and len(value) == len(default)
                  and all(is_finite(v) for v in value))
        else:
            ok = is_finite(value)
        if not ok:
            return f"{key}={short.repr(value)} is not a finite number like {default!r}"
    return None


def validate_history(require: Callable[[object, str], None], history: Any) -> None:
    """The history of a state, or of a file of format 1: {records: {name: [values]},
    stop_reason}."""
    require(isinstance(history, dict) and isinstance(history.get("records"), dict)
            and "stop_reason" in history, "invalid training history")
    validate_stop_reason(require, history["stop_reason"])
    lengths = set()
    for key, values in history["records"].items():
        require(isinstance(values, list), f"invalid training history record {short.repr(key)}")
        bad = next((v for v in values if not is_record(v)), None)
        require(bad is None, f"invalid training history record {short.repr(key)}: "
                             f"{short.repr(bad)} is not a number a float holds")
        lengths.add(len(values))
    require(len(lengths) <= 1, "the training history records have different lengths")


def validate_stop_reason(require: Callable[[object, str], None], stop_reason: Any) -> None:
    require(stop_reason is None or isinstance(stop_reason, str),
            f"invalid training history: its stop_reason {short.repr(stop_reason)} is "
            "neither text nor None")


def is_record(value: object) -> bool:
    """A value a history record may hold: None, or a real number that a float holds.
    Non-finite values are real (an infinite samples/second), but ints that no float
    can hold are not, nor bools and text (which float() would read)."""
    if value is None or isinstance(value, float):
        return True
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    try:
        float(value)
    except OverflowError:
        return False
    return True


def _uint(bits: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: is_int(v) and 0 <= v < 1 << bits), f"an unsigned {bits}-bit integer"


def _odd_uint(bits: int) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: is_int(v) and 0 <= v < 1 << bits and v % 2 == 1),
            f"an odd unsigned {bits}-bit integer")


def _int_range(low: int, high: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: is_int(v) and low <= v <= high), f"an integer in {low}..{high}"


def _words(count: int, bits: int) -> tuple[Callable[[Any], bool], str]:
    return ((lambda v: isinstance(v, list) and len(v) == count
             and all(is_int(w) and 0 <= w < 1 << bits for w in v)),
            f"a list of {count} unsigned {bits}-bit integers")


_BUFFERED = {"has_uint32": _int_range(0, 1), "uinteger": _uint(32)}


# For each bit generator a file may name: the fields of its ``state`` entry and those
# beside it, each (check, what it must be), exactly as NumPy's ``bit_generator.state``
# has them.  NumPy's setters accept more (an MT19937 position far past its key, a
# negative Philox buffer position) and the next draw then reads outside its arrays.
# A Philox buffer position is 1 to 4: a draw leaves it there and a new or jumped
# generator starts at 4; NumPy 2.5 refuses 0, which earlier versions took.
RNG_FIELDS = {
    "PCG64": ({"state": _uint(128), "inc": _odd_uint(128)}, _BUFFERED),
    "PCG64DXSM": ({"state": _uint(128), "inc": _odd_uint(128)}, _BUFFERED),
    "SFC64": ({"state": _words(4, 64)}, _BUFFERED),
    "Philox": ({"counter": _words(4, 64), "key": _words(2, 64)},
               {"buffer": _words(4, 64), "buffer_pos": _int_range(1, 4), **_BUFFERED}),
    "MT19937": ({"key": _words(624, 32), "pos": _int_range(0, 624)}, {}),
}


def rng_problem(rng: Any) -> str | None:
    """None if ``rng`` is a state NumPy's own generator could be in, else the problem."""
    if not isinstance(rng, dict):
        return "not an object"
    name = rng.get("bit_generator")
    if not (isinstance(name, str) and name in RNG_FIELDS):
        return f"bit generator {short.repr(name)} is not one of {', '.join(RNG_FIELDS)}"
    fields, beside = RNG_FIELDS[name]
    if set(rng) != {"bit_generator", "state", *beside}:
        return f"{name} state with keys {short.repr(sorted(rng))}"
    state = rng["state"]
    if not isinstance(state, dict) or set(state) != set(fields):
        return f"{name} 'state' must be an object with keys {sorted(fields)}"
    for where, values, checks in (("state.", state, fields), ("", rng, beside)):
        for key, (check, what) in checks.items():
            if not check(values[key]):
                return f"{name} {where}{key} must be {what}"
    return None


def json_seed(seed: object) -> int | None:
    if (isinstance(seed, numbers.Integral) and not isinstance(seed, bool)
            and 0 <= seed < SEED_LIMIT):  # type: ignore[operator]  # (as in _validation)
        return int(seed)
    return None


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite(value: object) -> bool:
    """A number that a float holds finitely: no NaN or infinity, and no int beyond
    float range (compared exactly, where float() would raise OverflowError)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return is_int(value) and abs(value) <= sys.float_info.max
