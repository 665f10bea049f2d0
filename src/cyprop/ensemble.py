"""Many networks at once: restarts and ensembles trained on all cores, and the
``Ensemble`` that averages their outputs.

``train_many`` trains each network on a Python thread of its own: the kernels
release the GIL, so the fits run on separate cores with no processes and no copies
of the data.

An ensemble file (``Ensemble.save``) is one uncompressed ``.npz`` archive, like a
network's (see ``cyprop.persistence``)::

    metadata     uint8 (n,)   UTF-8 JSON: {"format": "cyprop-ensemble",
                              "format_version": 1, "cyprop_version": ..., "networks": k}
    network_<i>  uint8 (m,)   the bytes of network i's own file, exactly what
                              ``Network.save`` writes, i = 0 .. k-1

``Ensemble.load`` reads it as safely as ``cyprop.load`` reads a network, with the same
checks (``cyprop.persistence``'s own): nothing is unpickled, members must be stored
arrays of plain names and sizes inside the file, and each network is checked as
``cyprop.load`` checks a file.
"""

from __future__ import annotations

import concurrent.futures
import copy
import io
import json
import os
import threading
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _archive, _backend, _chunks, _maths, _reference, _state, _validation, persistence
from ._version import __version__
from .network import Network, _check_result, _check_threads

if TYPE_CHECKING:
    from .history import History

FORMAT_NAME = _state.ENSEMBLE_FORMAT_NAME
FORMAT_VERSION = 1

# fit arguments that carry state from epoch to epoch: each network gets its own copy
_STATEFUL_FIT_ARGUMENTS = ("optimizer", "schedule")


def train_many(build: Callable[[int], Network], X: npt.ArrayLike, Y: npt.ArrayLike, n: int,
               n_threads: int | None = None, **fit_kwargs: Any,
               ) -> list[tuple[Network, History]]:
    """Build ``n`` networks and train them in parallel, one per Python thread.

    Each network is built with ``build(i)``, i = 0 .. n-1 (each returns a
    ``Network``, typically seeded by i), and trained with ``fit(X, Y, **fit_kwargs)``
    on ``n_threads`` Python threads.

    Best means the lowest validation loss of the weights returned (the last epoch's,
    or with ``early_stopping`` the epoch it restores: the last to improve by more
    than ``min_delta``) when there is
    validation data (``validation_data``, ``validation_split`` or
    ``early_stopping``), else the lowest training loss of the last epoch; ties go to
    the lower i.

    The networks are built one after the other on this thread, then trained in
    parallel.  An ``optimizer`` or ``schedule`` in ``fit_kwargs`` is copied
    (``copy.deepcopy``) for each network; other arguments (data, callbacks) are
    shared, so callbacks are called from the training threads.  ``verbose``
    defaults to 0.  Each fit runs its kernels on one thread (``fit(n_threads=1)``)
    so that the fits do not oversubscribe the cores.  ``n_threads`` defaults to
    what ``fit`` would use (``OMP_NUM_THREADS``, or what threadpoolctl set, else all
    cores) with the compiled backend, else 1, and is capped to the cores and to n.
    The results do not depend on it: each network trains as it would alone.

    Stopping: when a fit raises (a ``TrainingDiverged``, say), or on Ctrl-C
    (``KeyboardInterrupt`` here), the fits still running stop at the end of their
    current epoch (their ``history.stop_reason`` is ``"callback"``), those not yet
    started never start, and the exception is raised here once every fit has
    stopped (the first fit's to fail, noting which network it was).  No results are
    returned then; the networks keep the weights of their last epoch, so ``build``
    can keep references to them if they are wanted.

    Parameters
    ----------
    build : callable
        ``build(i)`` returns a new ``Network`` for i = 0 .. n-1.
    X, Y : array_like
        The training data, shared by every fit (as for ``Network.fit``).
    n : int
        The number of networks.
    n_threads : int, optional
        The training threads; see above for the default.
    **fit_kwargs
        Passed to each ``Network.fit``.

    Returns
    -------
    list of (Network, History)
        The networks and their training histories, best first.

    Raises
    ------
    TypeError
        If ``build`` returns something other than a ``Network``, or ``callbacks`` is
        not a list (an iterable) of callbacks.
    MemoryError
        If the ``n`` networks' parameters alone would not fit in the machine's memory
        (checked after building the first).
    ValueError
        If ``build`` returns the same network twice, or networks that share one
        optimizer (and ``fit_kwargs`` gives none), or an argument is invalid.
    Exception
        The first exception raised by a fit (after every fit has stopped).
    """
    n = _validation.check_int("n", n)
    pool_size = _pool_size(n_threads, n)
    fit_kwargs.setdefault("verbose", 0)
    given = fit_kwargs.pop("callbacks", None)
    if given is not None and not isinstance(given, Iterable):   # (as fit refuses it)
        raise TypeError(f"callbacks must be a list of objects with an on_epoch_end "
                        f"method, got {type(given).__name__}")
    callbacks = list(given) if given is not None else []   # (None: none, as fit takes it)
    networks: list[Network] = []
    for i in range(n):
        net = build(i)
        if not isinstance(net, Network):
            raise TypeError(f"build({i}) must return a cyprop.Network, got "
                            f"{type(net).__name__}")
        if i == 0:
            _check_memory(net, n)
        networks.append(net)
    if len({id(net) for net in networks}) < n:
        raise ValueError("build returned the same network more than once: each call must "
                         "build a new one")
    if fit_kwargs.get("optimizer") is None:   # (one given to fit replaces theirs)
        # one optimizer would carry its state from network to network, or be refused
        # by whichever fit comes second while another trains with it
        owners: dict[int, int] = {}
        for i, net in enumerate(networks):
            if net.optimizer is not None:
                first = owners.setdefault(id(net.optimizer), i)
                if first != i:
                    raise ValueError(f"networks {first} and {i} share one optimizer: give "
                                     "each network its own (copy.deepcopy(optimizer))")
    per_network = [{key: copy.deepcopy(value) if key in _STATEFUL_FIT_ARGUMENTS else value
                    for key, value in fit_kwargs.items()} for _ in range(n)]

    stop = threading.Event()
    stopper = _StopWhenSet(stop)
    failures: list[tuple[int, BaseException]] = []   # in the order they happened
    failures_lock = threading.Lock()

    def train(i: int) -> History | None:
        if stop.is_set():
            return None
        try:
            return networks[i].fit(X, Y, callbacks=[*callbacks, stopper], n_threads=1,
                                   **per_network[i])
        except BaseException as exc:
            with failures_lock:
                failures.append((i, exc))
            stop.set()             # before anything else: the others stop at once
            raise

    with concurrent.futures.ThreadPoolExecutor(pool_size,
                                               thread_name_prefix="cyprop-train") as pool:
        # a None result (a fit never started) only ever comes with an exception raised
        futures: list[concurrent.futures.Future[Any]] = []
        try:
            # Submitting starts the threads; Ctrl-C in the middle of starting one
            # would leave it running unseen by the pool, so it waits until all are.
            with _reference._interrupts_deferred():
                futures += [pool.submit(train, i) for i in range(n)]
            pending = set(futures)
            while pending:
                # a timeout, so that Ctrl-C is seen here on every platform
                _, pending = concurrent.futures.wait(pending, timeout=0.2)
        except BaseException:
            stop.set()
            for future in futures:
                future.cancel()
            raise                  # leaving the block waits for the running fits
    if failures:
        i, exc = failures[0]
        if hasattr(exc, "add_note"):   # Python 3.11+
            exc.add_note(f"(raised by network {i} of train_many; the others were stopped)")
        raise exc
    results = [(net, future.result()) for net, future in zip(networks, futures)]
    order = sorted(range(n), key=lambda i: (_score(results[i][1], per_network[i]), i))
    return [results[i] for i in order]


class _StopWhenSet:
    """A fit callback: stop after this epoch once the event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_epoch_end(self, net: Network, epoch: int, logs: dict[str, Any]) -> bool:
        return self.event.is_set()


def _pool_size(n_threads: int | None, n: int) -> int:
    """Training threads: as requested (checked as fit checks it) or fit's default,
    capped to the cores and to the number of networks."""
    n_threads = _check_threads(n_threads)
    compiled = _backend._compiled
    if compiled is not None:
        threads = compiled.threads(n_threads)          # the default, capped to the cores
    else:
        threads = min(n_threads or 1, os.cpu_count() or 1)
    return max(1, min(threads, n))


def _check_memory(first: Network, n: int) -> None:
    """Refuse n networks whose parameters alone outgrow the machine's memory: built one
    after the other, they would exhaust it, and the system may then kill the process
    instead of raising MemoryError."""
    try:
        page, pages = os.sysconf("SC_PAGE_SIZE"), os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):   # (not POSIX: nothing to compare with)
        return
    if page <= 0 or pages <= 0:   # (sysconf's -1: the size is not known here)
        return
    physical = page * pages
    each = sum(array.nbytes for array in (*first.weights, *first.biases))
    if n * each > physical:
        raise MemoryError(f"train_many: {n} networks of {each:,} bytes of parameters each "
                          f"need {n * each / 2**30:,.1f} GiB, more than this machine's "
                          f"{physical / 2**30:,.1f} GiB of memory")


def _score(history: History, fit_kwargs: dict[str, Any]) -> float:
    """The loss that ranks a trained network (lower is better)."""
    validation = [v for v in history.val_loss if v is not None]
    if validation and fit_kwargs.get("early_stopping"):
        # the epoch early stopping restores: the last to improve on the best so far by
        # more than min_delta, which need not be the lowest (as StoppingRules.check)
        min_delta = float(fit_kwargs.get("min_delta", 0.0))
        kept = np.inf
        for value in validation:
            if value < kept - min_delta:
                kept = value
        return kept
    if validation:
        return validation[-1]
    last = history.loss[-1]
    assert last is not None   # recorded by the fit that just ran
    return last


class Ensemble:
    """Networks whose outputs are averaged.

    The members must share their inputs, outputs, output activation and loss (their
    hidden layers, dtypes and backends may differ), and the classes of those that have
    them (``Network.classes``).  ``forward`` is the mean of the
    members' outputs (computed in float64, returned in the members' dtype, float64
    if they differ); ``predict`` its argmax, or a 0.5 threshold for one output, as
    ``Network.predict``; ``evaluate`` the loss of that mean output and the accuracy
    of ``predict``.

    Parameters
    ----------
    networks : iterable of Network
        The members (at least one).

    Attributes
    ----------
    networks : list of Network
        The members, in the order given.

    Raises
    ------
    TypeError
        If a member is not a ``Network``.
    ValueError
        If there is no member, or the members disagree on their inputs, outputs,
        output activation, loss or classes.

    >>> import cyprop
    >>> X, y = cyprop.datasets.load_digits()          # needs scikit-learn
    >>> results = cyprop.train_many(lambda i: cyprop.Network([64, 32, 10], seed=i),
    ...                             X, y, 8, epochs=20)
    >>> ensemble = cyprop.Ensemble(net for net, history in results[:5])
    """

    def __init__(self, networks: Iterable[Network]) -> None:
        networks = list(networks)
        _check_networks(networks)
        self.networks = networks

    def __len__(self) -> int:
        return len(self.networks)

    def __repr__(self) -> str:
        try:
            networks = self._members()
        except (TypeError, ValueError) as exc:   # (networks changed by hand)
            return f"Ensemble(not a valid ensemble: {exc})"
        first = networks[0]
        return (f"Ensemble({len(networks)} networks, {first.sizes[0]} inputs, "
                f"{first.sizes[-1]} outputs, output={first.arch.output!r}, "
                f"loss={first.loss_name!r})")

    # -------------------------------------------------------------- inference
    def forward(self, X: npt.ArrayLike) -> npt.NDArray[np.floating]:
        """The mean of the members' outputs.

        Parameters
        ----------
        X : array_like
            The inputs, (n, n_in), or one sample (n_in,).

        Returns
        -------
        numpy.ndarray
            The mean output, (n, n_out) (one sample: (n_out,)), in the members' dtype
            (float64 if they differ).
        """
        return self._mean_output(self._members(), X)

    def _members(self) -> list[Network]:
        """The members, checked: ``networks`` is a plain list the caller may have
        changed since __init__ (emptied, or given a member of other outputs)."""
        networks = list(self.networks)
        _check_networks(networks)
        return networks

    @staticmethod
    def _mean_output(networks: list[Network], X: npt.ArrayLike) -> npt.NDArray[np.floating]:
        total: np.ndarray | None = None
        for net in networks:   # one member's output at a time in memory
            out = net.forward(X).astype(np.float64)
            total = out if total is None else total + out
        return _mean(networks, total)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.integer]:
        """Class labels: the argmax of the mean output (a 0.5 threshold for one output).

        Parameters
        ----------
        X : array_like
            The inputs, (n, n_in), or one sample (n_in,).

        Returns
        -------
        numpy.ndarray
            The labels, as ``Network.predict`` gives them.
        """
        return _maths.labels_of(self.forward(X))

    def evaluate(self, X: npt.ArrayLike, Y: npt.ArrayLike) -> dict[str, float]:
        """The loss of the mean output and the accuracy of ``predict``.

        The loss is that of the ensemble as one model: 0.5 * sum (a - y)^2 for
        "mse", -sum y log a (softmax) or -sum [y log a + (1 - y) log(1 - a)]
        (sigmoid) for "cross_entropy", with a the mean output.  For the
        cross-entropy, log a (and log(1 - a)) is taken from each member's output
        pre-activations in float64, as a log-sum-exp over the members: an ensemble
        of one network has that network's loss, also where its probabilities round
        to 0 or 1 (a float32 sigmoid of 17 is 1).

        Parameters
        ----------
        X : array_like
            The inputs, (n, n_in).
        Y : array_like
            The targets: class labels or a target array, as for ``Network.evaluate``.

        Returns
        -------
        dict
            ``{"loss": the members' loss of the mean output, averaged over the
            samples, "accuracy": the fraction predict gets right}``.

        Raises
        ------
        ValueError
            If ``X`` or ``Y`` does not fit the networks, or ``networks`` (changed since
            the ensemble was made) is empty or its members disagree.
        FloatingPointError
            If the loss overflowed (targets too large).
        """
        networks = self._members()
        first = networks[0]
        # the members' own checks; each member converts X to its own dtype, and Y is
        # taken in the mean output's (a float32 member's would round float64 targets)
        widest = max(networks, key=lambda net: net.dtype.itemsize)
        _, Y = widest._check_data(X, Y)
        y = Y.astype(np.float64)
        loss_sum, correct = 0.0, 0
        for start, block in _row_blocks(X, first.arch.n_inputs):
            yb = y[start:start + len(block)]
            mean, log_mean, log_rest = _mean_of_members(networks, block)
            with np.errstate(over="ignore", invalid="ignore"):
                if first.loss_name == "mse":
                    losses = 0.5 * np.sum((mean - yb) ** 2, axis=1)
                else:
                    assert log_mean is not None
                    # (0 * log 0 is 0: a class no member gives any chance costs nothing
                    # where it is not the target)
                    losses = -np.sum(np.where(yb != 0, yb * log_mean, 0), axis=1)
                    if log_rest is not None:
                        losses -= np.sum(np.where(yb != 1, (1 - yb) * log_rest, 0), axis=1)
                loss_sum += float(np.sum(losses))
            correct += _maths.count_correct(mean, yb)
        loss = loss_sum / len(y)
        # (as a member's evaluate refuses it; forward has refused weights not finite)
        _check_result(np.array([loss]), "the loss of the ensemble", first._params,
                      "inputs and targets")
        return {"loss": loss, "accuracy": correct / len(y)}

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the ensemble to one file at exactly ``path``, atomically.

        See the module docstring for the layout; read it back with ``Ensemble.load``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Raises
        ------
        TypeError
            If a network's metadata is not JSON-serialisable, or ``networks`` holds
            something other than a ``Network``.
        ValueError
            If ``networks`` (changed since the ensemble was made) is empty or its
            members disagree, as ``Ensemble`` refuses them, or a network holds what
            ``cyprop.load`` would refuse (weights set to NaN in place), naming it:
            nothing is written.
        OSError
            If the file cannot be written.
        """
        # (checked again, so that save never replaces a file with one load refuses)
        networks = self._members()
        metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                    "cyprop_version": __version__, "networks": len(networks)}
        arrays = {_archive.METADATA: _as_bytes_array(json.dumps(metadata).encode("utf-8"))}
        for i, net in enumerate(networks):
            try:
                data = _network_file(net)
            except ValueError as exc:   # (its message says "this network")
                raise ValueError(f"network {i} of the ensemble: {exc}") from exc
            arrays[f"network_{i}"] = _as_bytes_array(data)
        target, mode = _archive.save_target(os.fspath(path))
        _archive.write_atomic(target, arrays, mode)

    @classmethod
    def load(cls, path: str | os.PathLike[str], backend: str = "auto") -> Ensemble:
        """Read an ensemble written by ``Ensemble.save`` from exactly ``path``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to read.
        backend : str, default "auto"
            The networks' backend, as for ``cyprop.load``.

        Returns
        -------
        Ensemble
            The ensemble, checked as ``cyprop.load`` checks a network.

        Raises
        ------
        OSError
            If the file cannot be opened.
        ValueError
            Saying what is wrong, for anything ``save`` would not have written, or
            an unknown ``backend``.
        """
        if backend not in _backend.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of "
                             f"{', '.join(_backend.BACKENDS)}")
        path = os.fspath(path)
        with _archive.open_regular_file(path) as fh:
            networks = _read_networks(path, fh, os.fstat(fh.fileno()).st_size, backend)
        try:
            return cls(networks)
        except (TypeError, ValueError) as exc:
            raise _archive.invalid(path, f"its networks do not make an ensemble: {exc}") \
                from exc


def _row_blocks(X: Any, n_inputs: int) -> Iterator[tuple[int, Any]]:
    """(first row, rows) of X in blocks of about ``_chunks.BLOCK_BYTES``, so that the
    members' activations in ``evaluate`` take memory bounded whatever the number of
    samples (a Dask array or memory map is read a block at a time)."""
    if _chunks.is_blockwise(X):
        rows = _chunks.Rows(X, n_inputs, np.dtype(np.float64))
        for start, _, _, block in _chunks.blocks_for_inference(rows):
            yield start, block
        return
    X = np.asarray(X)
    step = _chunks.block_rows(n_inputs, np.float64)
    for start in range(0, len(X), step):
        yield start, X[start:start + step]


def _mean_of_members(networks: list[Network], X: Any,
                     ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(mean output, log of it, log of 1 - it) of the members on rows X: the mean as
    ``forward`` gives it (so that accuracy counts what ``predict`` says), as float64.
    The logs, for the cross-entropy (None for "mse"; the second for a sigmoid output
    only), come from each member's output pre-activations z in float64, added over
    the members as log-sum-exp: a mean of probabilities that round to 1 in the
    members' dtype keeps its distance from 1."""
    total = None
    log_sum = rest_sum = None
    sigmoid = networks[0].arch.output == "sigmoid"
    for net in networks:   # one member's activations at a time in memory
        layers = net.forward(X, return_hidden=True)
        out = layers[-1].astype(np.float64)
        total = out if total is None else total + out
        if net.loss_name == "mse":
            continue
        below = layers[-2] if len(layers) > 1 else np.asarray(X)
        z = below.astype(np.float64) @ net.weights[-1].T.astype(np.float64) \
            + net.biases[-1].astype(np.float64)
        if sigmoid:   # log sigmoid(z) = -softplus(-z), log(1 - sigmoid(z)) = -softplus(z)
            log_p, log_q = -_maths.softplus(-z), -_maths.softplus(z)
            rest_sum = log_q if rest_sum is None else np.logaddexp(rest_sum, log_q)
        else:
            log_p = _maths.log_softmax(z)
        log_sum = log_p if log_sum is None else np.logaddexp(log_sum, log_p)
    mean = _mean(networks, total).astype(np.float64)
    log_m = np.log(len(networks))
    return (mean, None if log_sum is None else log_sum - log_m,
            None if rest_sum is None else rest_sum - log_m)


def _mean(networks: list[Network], total: np.ndarray | None) -> npt.NDArray[np.floating]:
    """The members' mean output from the float64 sum of their outputs, in their dtype
    (float64 if they differ)."""
    assert total is not None   # an Ensemble has one network at least
    dtype = np.result_type(*(net.dtype for net in networks))
    return (total / len(networks)).astype(dtype, copy=False)


def _check_networks(networks: list[Network]) -> None:
    """Raise unless ``networks`` can make an Ensemble (see ``Ensemble``)."""
    if not networks:
        raise ValueError("an Ensemble needs at least one network")
    for net in networks:
        if not isinstance(net, Network):
            raise TypeError(f"an Ensemble holds cyprop.Network objects, got "
                            f"{type(net).__name__} (from train_many's results, take "
                            "the networks: [net for net, history in results])")
    first = networks[0]
    for i, net in enumerate(networks[1:], 1):
        for what, mine, theirs in (("inputs", net.sizes[0], first.sizes[0]),
                                   ("outputs", net.sizes[-1], first.sizes[-1]),
                                   ("output activation", net.arch.output, first.arch.output),
                                   ("loss", net.loss_name, first.loss_name)):
            if mine != theirs:
                raise ValueError(f"network {i} has {what} {mine!r}, network 0 has "
                                 f"{theirs!r}: an Ensemble's networks must agree")
    # Outputs averaged unit by unit must stand for the same labels (a member without
    # classes names none).
    named = [(i, net.classes) for i, net in enumerate(networks) if net.classes is not None]
    for i, classes in named[1:]:
        if classes != named[0][1]:
            short = _state.short.repr
            raise ValueError(f"network {i} has classes {short(classes)}, network "
                             f"{named[0][0]} has {short(named[0][1])}: an Ensemble's "
                             "networks must agree")


def _as_bytes_array(data: bytes) -> npt.NDArray[np.uint8]:
    return np.frombuffer(data, dtype=np.uint8)


def _network_file(net: Network) -> bytes:
    """The bytes of the file ``Network.save`` would write for ``net``."""
    # (a state the network had, even while it trains, checked as load will check it)
    return _state.file_bytes(net._state_for_file())


def _read_networks(path: str, fh: IO[bytes], size: int, backend: str) -> list[Network]:
    """The networks of the ensemble file open as ``fh`` (``size`` bytes)."""
    def invalid(problem: str) -> ValueError:
        return _archive.invalid(path, problem)

    if fh.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise invalid("not a cyprop ensemble file (not an .npz/zip archive)")
    fh.seek(0)
    archive = _archive.guarded(path, "the file is truncated or corrupted",
                               zipfile.ZipFile, fh)
    uint8 = np.dtype(np.uint8)
    with archive:
        members = _archive.check_members(path, archive, size, "ensemble")
        info = members.get(_archive.METADATA)
        if info is None:
            raise invalid("not a cyprop ensemble file (no metadata entry)")
        if info.file_size > persistence.METADATA_LIMIT:
            raise invalid(f"the metadata entry has {info.file_size} bytes, more than the "
                          f"{persistence.METADATA_LIMIT} this cyprop reads")
        raw = _archive.read_array(path, archive, info, _archive.METADATA, None, uint8)
        count = _check_metadata(path, _archive.decode_json(path, raw.tobytes()),
                                len(members))
        expected = {_archive.METADATA} | {f"network_{i}" for i in range(count)}
        if set(members) != expected:
            unexpected = sorted(set(members) - expected)
            missing = sorted(expected - set(members))
            raise invalid(f"it should hold {count} networks; missing "
                          f"{', '.join(missing) or 'nothing'}, unexpected "
                          f"{', '.join(unexpected) or 'nothing'}")
        networks: list[Network] = []
        for i in range(count):
            name = f"network_{i}"
            data = _archive.read_array(path, archive, members[name], name, None, uint8)
            where = f"{path} (network {i})"
            # each network's file is read exactly as cyprop.load reads one
            networks.append(persistence.read_network(where, io.BytesIO(data.data),
                                                     data.nbytes, backend))
            del data
    return networks


def _check_metadata(path: str, meta: Any, n_members: int) -> int:
    """The number of networks the metadata announces, checked."""
    if isinstance(meta, dict) and meta.get("format") == persistence.FORMAT_NAME:
        raise _archive.invalid(path, "it is a network, not an ensemble: read it with "
                                     "cyprop.load")
    if not (isinstance(meta, dict) and meta.get("format") == FORMAT_NAME):
        raise _archive.invalid(path, "not a cyprop ensemble file (its metadata does not "
                                         "name the format)")
    version = meta.get("format_version")
    if not (type(version) is int and 1 <= version):
        raise _archive.invalid(path, f"invalid format version {version!r:.40}")
    if version > FORMAT_VERSION:
        raise _archive.invalid(path, f"the file has format version {version}, written by "
                                     f"a newer cyprop; this cyprop ({__version__}) reads "
                                     f"versions up to {FORMAT_VERSION}: upgrade cyprop")
    count = meta.get("networks")
    if not (type(count) is int and 1 <= count < n_members):
        raise _archive.invalid(path, f"invalid number of networks {count!r:.40} for a file "
                                     f"of {n_members} entries")
    return count
