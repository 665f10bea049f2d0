"""The training loop behind ``Network.fit`` and ``Network.partial_fit``.

``Network`` checks a call's arguments and hands them here; this module runs the epochs:
it orders the samples of each epoch (in parts, for progress and Ctrl-C), hands them to
the backend, watches for divergence (restoring the epoch's start), applies the
stopping rules and callbacks, and keeps the records.  It works on the network's own
parameter buffer, optimizer and locks, as the network's methods did, and imports
nothing of ``network`` at run time.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import _chunks, _reference, _validation
from ._progress import Progress, is_interactive
from ._training import Dropout, TrainingOptions
from .errors import TrainingDiverged
from .history import History
from .optimizers import OPTIMIZERS, SGD, Optimizer

if TYPE_CHECKING:
    from .network import Network
    from .schedules import Schedule

#: A training run has diverged when an epoch's training loss exceeds this many times the
#: loss it started from (or 1, if that is larger): far beyond any normal run's wobble.
DIVERGENCE_FACTOR = 1000.0
#: The starting loss is measured on (at most) this many of the first training samples.
DIVERGENCE_SAMPLES = 256


def check_optimizer(optimizer: object) -> None:
    if optimizer is not None and not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a cyprop optimizer such as cyprop.SGD(...), "
                        f"got {type(optimizer).__name__}")


def claim_optimizer(optimizer: Optimizer) -> threading.Lock:
    """Hold ``optimizer``'s claim for a training call (the caller holds its network's
    training lock) and return it, to be released when the call ends; RuntimeError if
    another network is training with it right now: that network's steps would read a
    state stepped (or reset, for another size) by this one's."""
    # (setdefault: an optimizer of a subclass that skipped Optimizer.__init__ has none)
    claim = vars(optimizer).setdefault("_claim", threading.Lock())
    if not claim.acquire(blocking=False):
        raise RuntimeError(f"this {type(optimizer).__name__} is training another network "
                           "right now (in another thread, or in the fit whose callback "
                           "this is); give each network its own optimizer "
                           "(copy.deepcopy(optimizer))")
    return claim


class InUse:
    """Objects that a running call is using and no other call may use meanwhile, by
    id() (each is alive while it is claimed), under one lock.

    In a child forked while other threads held claims (or the lock), those threads do
    not exist: their claims are dropped, and the lock set up afresh, else the child
    would refuse those objects, or wait for the lock, for good."""

    def __init__(self) -> None:
        self._ids: dict[int, int] = {}   # id of the thing: the thread that claimed it
        self._lock = threading.Lock()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def claim(self, thing: object, refusal: str) -> None:
        """Claim ``thing``, or raise RuntimeError(refusal) if a call holds it."""
        with self._lock:
            if id(thing) in self._ids:
                raise RuntimeError(refusal)
            self._ids[id(thing)] = threading.get_ident()

    def release(self, thing: object) -> None:
        with self._lock:
            self._ids.pop(id(thing), None)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        me = threading.get_ident()   # (the forking thread's claims stay, for it to release)
        self._ids = {key: thread for key, thread in self._ids.items() if thread == me}


#: The schedules with state (an ``update`` method) that fits are using.
_SCHEDULES_IN_USE = InUse()


def claim_schedule(schedule: Any) -> bool:
    """Mark a schedule that keeps state (``update``: ReduceOnPlateau's count of epochs
    without improvement) as in use by this fit, or refuse: another fit updating it at
    the same time would move this one's rate.  Returns whether it was claimed (a
    schedule without state, a function of the epoch, may serve any number of fits);
    ``release_schedule`` ends the claim."""
    if not callable(getattr(schedule, "update", None)):
        return False
    _SCHEDULES_IN_USE.claim(schedule, f"this {type(schedule).__name__} schedule is in use "
                            "by another fit right now (in another thread, or the fit whose "
                            "callback this is), and keeps state that both would update; "
                            "give each fit its own (copy.deepcopy(schedule))")
    return True


def release_schedule(schedule: Any) -> None:
    _SCHEDULES_IN_USE.release(schedule)


def set_optimizer(net: Network, optimizer: Optimizer | None) -> None:
    if optimizer is not None and optimizer is not net.optimizer:
        # An optimizer's state (momentum, moments) belongs to the network it trained:
        # one that comes from elsewhere starts afresh here.
        optimizer.reset()
        net.optimizer = optimizer
    elif net.optimizer is None:
        net.optimizer = SGD()


#: The optimizers whose steps the compiled core takes (one-sample calls: prepare_one_sample).
OWN_OPTIMIZERS = frozenset(OPTIMIZERS.values())


def prepare_one_sample(net: Network, rows: Any, optimizer: Optimizer,
                       setting: object) -> None:
    """Prepare ``rows`` (the network's FewRows) for one-sample steps with ``optimizer``,
    checked, or refuse the setting if the core does not take its steps.

    ``partial_fit`` of one sample with the network's optimizer is taken by the
    backend's ``FewRows.step``: checked and stepped in C, with ``run``'s result and
    records (a stream of one-sample calls is the common case of online learning, where
    ``run``'s Python costs more than the step), or left to ``run`` (anything but that
    common case, or a problem, which ``run`` then explains).  It holds the network's
    training lock, then its state lock around the step, as ``run`` does; it calls this
    function when the setting (the optimizer, its configuration and initial learning
    rate, the network's max-norm) is not the one it last saw; it records the step in
    ``net.history`` as one epoch (``stop_reason`` "epochs")."""
    if type(optimizer) not in OWN_OPTIMIZERS:
        rows.refuse(setting)
        return
    try:
        optimizer.check()
    except Exception:
        # a hyper-parameter set wrong by hand: ``run`` says so, after the checks of the
        # data that come first there (a NaN in X is named as such, whatever the rate)
        rows.refuse(setting)
        return
    net._impl.prepare_one_sample(rows, net.arch, optimizer, net._max_norm, setting)


def run(net: Network, X: Any, Y: NDArray[Any], weights: NDArray[Any] | None, epochs: int,
        batch_size: int, shuffle: bool, rng: np.random.Generator, verbose: int | str,
        schedule: Any, validation: tuple[Any, NDArray[Any]] | None,
        rules: StoppingRules, callbacks: list[Any], history: History | None,
        n_threads: int | None = None, optimizer: Optimizer | None = None) -> History:
    """The training loop shared by fit and partial_fit (``history`` None: the
    network's own, added to)."""
    batch_size = min(batch_size, X.shape[0])   # larger is one batch; keeps C indices small
    holding = False   # the network's training lock
    previous = None   # the optimizer and history before this call, once known
    given = None      # an optimizer given from elsewhere, with its state and steps
    recorded = False  # whether an epoch of this call was recorded
    claimed = None    # the claim of the optimizer training, once held
    schedule_claimed = False
    try:
        # Each lock or claim is taken and noted with Ctrl-C held back (see taking):
        # raised in between, it was never given back, and every later call refused.
        with taking():
            hold_training(net)
            holding = True
            schedule_claimed = claim_schedule(schedule)
        # Only now, with the lock held: a refused call must not change the optimizer
        # under a fit running in another thread.
        check_optimizer(net.optimizer if optimizer is None else optimizer)
        (optimizer or net.optimizer or SGD()).check()
        chosen = net.optimizer if optimizer is None else optimizer
        if chosen is not None:   # before set_optimizer, which resets one from elsewhere
            with taking():
                claimed = claim_optimizer(chosen)
        # an optimizer from elsewhere as it was before set_optimizer resets it
        given = (None if optimizer is None or optimizer is net.optimizer
                 else (optimizer, optimizer.state, optimizer.steps))
        previous = net.optimizer, net.history
        set_optimizer(net, optimizer)
        # the one claimed: net.optimizer may have been set since, from another thread
        # (the next epoch takes it up, as one a callback set)
        training = chosen if chosen is not None else net.optimizer
        if not isinstance(training, Optimizer):   # (the new SGD set to None since)
            training = net.optimizer = SGD()
        if claimed is None:   # a new SGD()
            with taking():
                claimed = claim_optimizer(training)
        history = net.history if history is None else history
        check_history(history)
        # One step in all: its loss is taken before the step, so it cannot show growth
        # (a stream of one-row partial_fit calls skips the measurement).  A one-batch
        # epoch repeated does: each epoch's loss follows the step before it.
        limit = (np.inf if X.shape[0] <= batch_size and epochs == 1
                 else divergence_limit(net, X, Y, weights))
        net.history = history
        net.stop_training = False
        if verbose == "auto":
            verbose = int(is_interactive(sys.stdout))   # a terminal or a notebook
        progress = Progress(epochs, X.shape[0]) if verbose else None
        try:
            for epoch in range(epochs):
                if epoch:
                    check_between_epochs(net, training)
                    if callable(getattr(schedule, "check", None)):
                        # its parameters too, which a callback may have set (a gamma
                        # of 2 makes rates that grow), as fit checked them
                        schedule.check(has_validation=validation is not None)
                    if net.optimizer is not training:   # replaced by a callback
                        assert net.optimizer is not None   # (checked)
                        with taking():
                            try:
                                next_claim = claim_optimizer(net.optimizer)
                            except RuntimeError:
                                # training elsewhere: refused, and the one that trained
                                # so far put back, as for one that is no optimizer
                                net.optimizer = training
                                raise
                            claimed.release()
                            claimed, training = next_claim, net.optimizer
                logs = one_epoch(net, training, X, Y, weights, batch_size, shuffle, rng,
                                 schedule, validation, progress, n_threads, limit)
                with net._state_lock:
                    history.record(**logs)
                recorded = True
                if progress is not None:
                    progress.end_epoch(logs)
                if callable(getattr(schedule, "update", None)):
                    schedule.update(logs)
                reason = rules.check(net, logs)
                for callback in callbacks:
                    # NumPy's True too: a callback's comparison of NumPy numbers
                    # (np.mean(...) < limit) gives np.True_, which is not True
                    answer = callback.on_epoch_end(net, history.epochs - 1, logs)
                    if answer is True or (isinstance(answer, np.bool_) and answer):
                        net.stop_training = True
                history = followed_history(net, history)
                if reason is None and net.stop_training:
                    reason = "callback"
                if reason is not None:
                    history.stop_reason = reason
                    break
            else:
                history.stop_reason = "epochs"
        except KeyboardInterrupt:
            # Whole batches only were applied: the network is usable as it is.
            if isinstance(net.history, History):   # (one a callback set is followed)
                history = net.history
            net.history = history
            history.stop_reason = "interrupted"
            raise
        finally:
            with net._state_lock:
                rules.restore_best(net)
            if progress is not None:
                progress.close()
    except Exception as exc:
        # (previous is set only once the optimizer is claimed)
        if previous is not None and not recorded and not isinstance(exc, TrainingDiverged):
            # Refused before its first epoch was recorded (bad data in a block, checked
            # only as it is read; a schedule's rate that is not a number; ...): the
            # epoch was undone (one_epoch), and the call is refused as a call with bad
            # data in memory is, leaving the optimizer and history as they were.
            net.optimizer, net.history = previous
            if given is not None:   # (another network's, perhaps: its state is kept)
                given[0].state, given[0].steps = given[1], given[2]
        raise
    finally:
        # (each given back even if Ctrl-C lands as another is)
        try:
            try:
                if claimed is not None:
                    claimed.release()
            finally:
                if schedule_claimed:
                    release_schedule(schedule)
        finally:
            if holding:
                release_training(net)
    return history


def taking() -> contextlib.AbstractContextManager[None]:
    """A ``with`` block, inside the ``try`` whose ``finally`` gives back what it
    notes as taken, that takes a lock or claim and notes it: Ctrl-C is held back
    until the block ends (in the main thread, where Python handles it)."""
    return _reference._interrupts_deferred()


def hold_training(net: Network) -> None:
    """Take ``net``'s training lock for a call that trains it, or refuse the call with
    the RuntimeError that says who is training it; ``release_training`` gives it back."""
    if not net._lock.acquire(blocking=False):
        if net._training_thread == threading.get_ident():
            raise RuntimeError("fit or partial_fit was called on this network from "
                               "inside its own training (a callback?); train a copy "
                               "there, or act after fit returns")
        raise RuntimeError("this network is already training in another thread; "
                           "train a copy, or wait for that fit to finish")
    net._training_thread = threading.get_ident()


def release_training(net: Network) -> None:
    net._training_thread = None
    net._lock.release()


def check_between_epochs(net: Network, training: Optimizer) -> None:
    """Check ``net.optimizer`` again before an epoch after the first: a callback may
    have replaced it or set its hyper-parameters, which are checked before training
    with them as when set before the call (else a negative rate trains uphill).  One
    that is no optimizer is refused and ``training``, the one that trained so far, put
    back: the refused call leaves the network with its optimizer and state."""
    if not isinstance(net.optimizer, Optimizer):
        found, net.optimizer = net.optimizer, training
        raise TypeError(f"net.optimizer must be a cyprop optimizer such as cyprop.SGD(...), "
                        f"got {type(found).__name__} (set during training: by a "
                        "callback?); the one that trained so far was put back")
    net.optimizer.check()


def followed_history(net: Network, history: History) -> History:
    """The history that the rest of a fit records in, after its callbacks: a History
    a callback set as ``net.history`` (a fresh one, say), which then also counts the
    epochs for schedules, as ``net.history`` always does; anything else is refused
    with a TypeError and ``history`` put back."""
    found = net.history
    if not isinstance(found, History):
        net.history = history
        check_history(found, " (set during training: by a callback?); the fit's "
                             "history was put back")
    return found


def check_history(history: object, when: str = "") -> None:
    """A TypeError unless ``history`` (``net.history``, set by hand) is a History,
    whose records training adds to."""
    if not isinstance(history, History):
        raise TypeError(f"net.history must be a cyprop.History (cyprop.History() starts "
                        f"a fresh one), got {type(history).__name__}{when}")


def divergence_limit(net: Network, X: Any, Y: NDArray[Any],
                     weights: NDArray[Any] | None) -> float:
    """The training loss past which a run counts as diverged: DIVERGENCE_FACTOR
    times the mean loss, before this call trains, of its first samples (at least 1,
    so that a network already near 0 loss may still move)."""
    m = min(X.shape[0], DIVERGENCE_SAMPLES)
    with np.errstate(over="ignore", invalid="ignore"):
        loss, _, _ = net._impl.loss_and_gradients(net.arch, net._params,
                                                  _chunks.head(X, m), Y[:m], False)
    start = loss / m * (float(np.mean(weights)) if weights is not None else 1.0)
    return DIVERGENCE_FACTOR * max(start, 1.0) if np.isfinite(start) else np.inf


def one_epoch(net: Network, optimizer: Optimizer, X: Any, Y: NDArray[Any],
              weights: NDArray[Any] | None,
              batch_size: int, shuffle: bool, rng: np.random.Generator,
              schedule: Schedule | None, validation: tuple[Any, NDArray[Any]] | None,
              progress: Progress | None, n_threads: int | None = None,
              limit: float = np.inf) -> dict[str, Any]:
    """One epoch with ``optimizer`` (the one the call claimed); returns its records.
    Divergence restores the epoch's start."""
    n = X.shape[0]
    epoch = net.history.epochs
    if not _validation.all_finite(net._params):   # (before anything of the epoch)
        net.history.stop_reason = "diverged"
        raise TrainingDiverged(
            f"the weights were already NaN or infinite before epoch {epoch + 1} began "
            "(written by a callback or by hand?): nothing was trained, and they were "
            "left as they are", epoch=epoch)
    # The rate before this epoch's and the generator's state: a failed epoch leaves
    # them as it leaves the weights (a refused call changes nothing; the schedule's
    # rate may differ from a rate set by hand, and the generator is part of the
    # network's state, and of its file).
    rate, rng_state = optimizer.learning_rate, rng.bit_generator.state
    if schedule is not None:
        optimizer.learning_rate = _validation.check_number(
            f"the schedule's learning rate for epoch {epoch + 1}",
            schedule.rate(epoch, optimizer.initial_learning_rate), 0)
    blockwise = isinstance(X, _chunks.Rows)
    if blockwise:   # a Dask array or memory map: blocks of whole batches (see _chunks)
        blocks = _chunks.epoch_blocks(
            n, _chunks.block_rows(net.arch.n_inputs, net.dtype, batch_size), shuffle, rng)
    else:
        order = (rng.permutation(n) if shuffle else np.arange(n)).astype(np.intp, copy=False)
    dropout_seed = int(rng.integers(2 ** 63)) if any(net.dropout) else None
    kept = net._params.copy(), optimizer.steps, _copy_or_none(optimizer.state)

    def undo() -> None:
        """Back to the epoch's start (with net._state_lock held): a failed or diverged
        epoch leaves nothing of it."""
        net._params[...] = kept[0]
        optimizer.steps, optimizer.state = kept[1], kept[2]
        optimizer.learning_rate = rate
        rng.bit_generator.state = rng_state

    def refuse_if_changed(data: Any, targets: NDArray[Any], what: str) -> None:
        """Data in memory that fit found finite, NaN or infinite now: changed in place
        since (a callback writing into the caller's arrays, another thread), which no
        learning rate would mend.  Blocks of a Dask array or memory map are checked as
        they are read."""
        if isinstance(data, _chunks.Rows) or (_validation.all_finite(data)
                                              and _validation.all_finite(targets)):
            return
        with net._state_lock:
            undo()
        raise ValueError(f"the {what} holds NaN or infinity in epoch {epoch + 1}, though it "
                         "was finite when fit began: it was changed during the fit (by a "
                         "callback, or another thread?); the weights of the last epoch "
                         "before it were kept")

    if progress is not None:
        progress.start_epoch()
    loss_sum, correct, seconds = 0.0, 0, 0.0
    if blockwise:
        reader = _chunks.read_ahead(X, blocks)
        steps: Iterable[tuple[Any, Any, Any, Any]]
        steps = ((block, Y[start:stop], None if weights is None else weights[start:stop],
                  rows) for start, stop, rows, block in reader)
    else:
        reader, steps = None, [(X, Y, weights, order)]
    done = 0   # samples of the epoch before this block (the dropout masks follow it)
    try:
        for X_block, Y_block, w_block, block_order in steps:
            # Long epochs run in parts of whole batches (the same result as one
            # call), so that progress shows and Ctrl-C is seen within the epoch.
            for start, stop in parts(len(block_order), batch_size, net.arch.n_params):
                options = TrainingOptions(
                    w_block,
                    None if dropout_seed is None else
                    Dropout([*net.dropout, 0.0],
                            dropout_seed + (done + start) * sum(net.arch.sizes[1:])),
                    net.max_norm, n_threads)
                began = time.perf_counter()
                with net._state_lock, np.errstate(over="ignore", invalid="ignore"):
                    # divergence is checked below
                    part_loss, part_correct = net._impl.train_epoch(
                        net.arch, net._params, X_block, Y_block, block_order[start:stop],
                        batch_size, optimizer, options)
                seconds += time.perf_counter() - began
                loss_sum += part_loss
                correct += part_correct
                if progress is not None:
                    progress.advance(stop - start)
            done += len(block_order)
    except Exception:
        # a block that could not be read (a NaN in it?), or any other failure: a failed
        # call leaves the weights and state as they were
        with net._state_lock:
            undo()
        raise
    finally:
        if reader is not None:
            reader.close()   # waits for a block being read ahead
    problem = divergence(net, loss_sum / n, limit, optimizer)
    if problem is not None:
        refuse_if_changed(X, Y, "training data")
        # a state that was not finite before the epoch (the one it stepped: not one
        # replaced for another size or dtype) was written so by hand, not by a step
        by_hand = (kept[2] is not None and optimizer.state is not None
                   and kept[2].shape == optimizer.state.shape
                   and kept[2].dtype == optimizer.state.dtype and writes_state(optimizer)
                   and unsound_state(kept[2], optimizer))
        with net._state_lock:
            undo()
            net.history.stop_reason = "diverged"
        if by_hand:
            raise TrainingDiverged(
                f"the optimizer's state was already NaN, infinite or (where it holds "
                f"squares) negative before epoch "
                f"{epoch + 1} began (written by a callback or by hand?): nothing was "
                "trained; start it afresh with net.optimizer.reset()", epoch=epoch)
        raise TrainingDiverged(
            f"training diverged in epoch {epoch + 1}: {problem}; the weights of the "
            "last epoch before it were kept (try a smaller learning rate)", epoch=epoch)
    logs = {"loss": loss_sum / n, "accuracy": correct / n,
            "learning_rate": optimizer.learning_rate, "seconds": seconds,
            "samples_per_second": n / seconds if seconds > 0 else float("inf"),
            "largest_update": float(np.max(np.abs(net._params - kept[0])))}
    if validation is not None:
        try:
            val_loss, val_correct, _ = net._sums(validation[0], validation[1], False)
        except Exception:   # validation data that cannot be read (a NaN?)
            with net._state_lock:
                undo()
            raise
        if not np.isfinite(val_loss):
            # (its NaN val_loss would read as no improvement to early stopping and
            # ReduceOnPlateau)
            refuse_if_changed(validation[0], validation[1], "validation data")
        n_val = validation[0].shape[0]
        logs["val_loss"], logs["val_accuracy"] = val_loss / n_val, val_correct / n_val
    return logs


def divergence(net: Network, loss: float, limit: float, optimizer: Optimizer) -> str | None:
    """What makes this epoch a diverged one (see ``fit``), or None."""
    if not np.isfinite(loss):
        return "the loss became NaN or infinite"
    if loss > limit:
        return (f"the training loss grew to {loss:.4g}, more than {DIVERGENCE_FACTOR:g} "
                "times its value when training started")
    largest = float(np.max(np.abs(net._params)))   # NaN if any weight is NaN
    if not np.isfinite(largest):
        return "a weight became NaN or infinite"
    if largest > np.sqrt(np.finfo(net.dtype).max):
        return (f"a weight grew past {np.sqrt(np.finfo(net.dtype).max):.3g}, where "
                f"{net.dtype.name} products overflow")
    # the optimizer state too: squared gradients that overflow leave the loss and
    # weights finite, but stall training, and load() refuses such a file
    if (optimizer.state is not None and writes_state(optimizer)
            and not _validation.all_finite(optimizer.state)):
        return "the optimizer's state overflowed"
    return None


def writes_state(optimizer: Optimizer) -> bool:
    """Whether ``optimizer``'s steps write its state: plain SGD (no momentum) never
    reads or writes its buffer, so nothing a step did can be in it (the one-sample step
    does not look at it either: csrc/_inference.pxi, kept_state_rows)."""
    return not (isinstance(optimizer, SGD) and not optimizer.momentum
                and type(optimizer).update_params is SGD.update_params)


def unsound_state(state: NDArray[Any], optimizer: Optimizer) -> bool:
    """Whether ``state`` holds what no step of ``optimizer`` writes: NaN or infinity, or
    a negative number among its sums of squares (Adam's v: its root is then NaN)."""
    return (not _validation.all_finite(state)
            or any(bool((state[slot] < 0).any()) for slot in type(optimizer).square_slots))


def sample_weights(sample_weight: ArrayLike | None,
                   class_weight: str | Mapping[int, float] | None,
                   Y: NDArray[Any], dtype: np.dtype[Any]) -> NDArray[Any] | None:
    """One weight per sample (sample_weight times class_weight), or None."""
    if sample_weight is None and class_weight is None:
        return None
    n = Y.shape[0]
    weights = np.ones(n, dtype=np.float64)
    if sample_weight is not None:
        weights *= check_sample_weight(sample_weight, n)
    if class_weight is not None:
        classes = Y.argmax(axis=1) if Y.shape[1] > 1 else (Y[:, 0] > 0.5).astype(int)
        n_classes = max(Y.shape[1], 2)
        if isinstance(class_weight, str):
            if class_weight != "balanced":
                raise ValueError(f"class_weight must be 'balanced' or a dict, "
                                 f"got {class_weight!r}")
            counts = np.bincount(classes, minlength=n_classes)
            table = np.where(counts > 0, n / (np.count_nonzero(counts) * np.maximum(counts, 1)),
                             0.0)
        elif not isinstance(class_weight, Mapping):   # (a list's items are no labels)
            raise TypeError(f"class_weight must be 'balanced' or a dict {{label: weight}}, "
                            f"got {type(class_weight).__name__}")
        else:
            table = np.ones(n_classes)
            for label, w in dict(class_weight).items():
                if isinstance(label, bool) or not isinstance(label, numbers.Integral):
                    raise TypeError(f"class_weight keys must be class labels (integers), "
                                    f"got {label!r}")
                if not 0 <= label < n_classes:
                    raise ValueError(f"class_weight names class {label!r}, outside "
                                     f"0..{n_classes - 1}")
                if isinstance(w, bool) or not isinstance(w, numbers.Real):
                    raise TypeError(f"class_weight for class {label!r} must be a number, "
                                    f"got {w!r}")
                if not np.isfinite(w) or w < 0:
                    raise ValueError(f"class_weight for class {label!r} must be >= 0")
                table[int(label)] = w
        weights *= table[classes]
    if not weights.any():
        raise ValueError("the sample weights are all zero: nothing to learn from")
    with np.errstate(over="ignore"):
        weights = weights.astype(dtype)
    if not np.isfinite(weights).all():
        raise ValueError(f"sample_weight (times class_weight) has values too large for "
                         f"{dtype.name}")
    return weights


def check_sample_weight(sample_weight: ArrayLike, n: int) -> NDArray[np.float64]:
    """``sample_weight`` as n finite float64 weights >= 0, or a TypeError or ValueError
    naming it."""
    _validation._refuse_sparse("sample_weight", sample_weight)
    _validation._refuse_iterator("sample_weight", sample_weight)
    sw = np.asarray(_validation._unmasked("sample_weight", sample_weight))
    if sw.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold numbers, got dtype {sw.dtype}")
    sw = sw.astype(np.float64)
    if sw.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {sw.shape}")
    if not np.isfinite(sw).all() or (sw < 0).any():
        raise ValueError("sample_weight must be finite and >= 0")
    return sw


def validation_set(net: Network, X: Any, Y: NDArray[Any],
                   validation_data: tuple[ArrayLike, ArrayLike] | None,
                   validation_split: float,
                   early_stopping: bool) -> tuple[Any, NDArray[Any]] | None:
    """(X_val, Y_val) or None."""
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("validation_data must be a pair (X_val, Y_val)")
        return net._check_data(*validation_data)
    split = _validation.check_number("validation_split", validation_split or 0.0, 0, 1)
    if early_stopping and split == 0.0:
        split = 0.1
    if split == 0.0:
        return None
    if not 0.0 < split < 1.0:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
    n_val = int(round(X.shape[0] * split))
    if n_val < 1 and not validation_split:   # (the split is early stopping's own)
        raise ValueError(f"early_stopping holds out 10% of the samples for validation, "
                         f"which of {X.shape[0]} samples is none; give validation_data= "
                         "or a larger validation_split=")
    if n_val < 1 or n_val >= X.shape[0]:
        raise ValueError(f"validation_split={split} of {X.shape[0]} samples leaves no "
                         "training or no validation samples")
    return X[-n_val:], Y[-n_val:]


def _copy_or_none(array: NDArray[Any] | None) -> NDArray[Any] | None:
    return None if array is None else array.copy()


#: Weight-sample products per part of a long epoch (so that progress shows and Ctrl-C
#: is seen within it): about 20 ms of work on the compiled core's fastest paths, a
#: second or two on its slowest (online Adam on a network far larger than the caches).
#: Each part is a call into the core (a plan, fresh scratch memory), which much shorter
#: parts would pay for often enough to show in the epoch's time (README, Performance).
PART_PRODUCTS = 500_000_000


def parts(n: int, batch_size: int, n_params: int) -> list[tuple[int, int]]:
    """(start, stop) ranges of whole batches covering an epoch of n samples, about
    PART_PRODUCTS weight-sample products each (one for a short epoch)."""
    count = n * n_params // PART_PRODUCTS
    if count <= 1:
        return [(0, n)]
    batches = -(-n // batch_size)
    per_part = -(-batches // count) * batch_size
    return [(start, min(start + per_part, n)) for start in range(0, n, per_part)]


class StoppingRules:
    """The early-stopping rules of one fit call, checked after every epoch."""

    def __init__(self, target_loss: float | None = None, target_error: float | None = None,
                 min_update: float | None = None, early_stopping: bool = False,
                 patience: int = 10, min_delta: Any = 0.0) -> None:   # (a float, checked)
        # (target_error is an error rate: above 1 it would stop every fit after one epoch)
        target_loss, target_error, min_update, min_delta = (
            None if value is None else _validation.check_number(name, value, 0, maximum)
            for name, value, maximum in (
                ("target_loss", target_loss, None), ("target_error", target_error, 1.0),
                ("min_update", min_update, None), ("min_delta", min_delta, None)))
        self.target_loss, self.target_error = target_loss, target_error
        self.min_update = min_update
        self.early_stopping, self.patience, self.min_delta = early_stopping, patience, min_delta
        self._best_loss = np.inf
        self._best_params = None
        self._waited = 0

    def check(self, net: Network, logs: dict[str, Any]) -> str | None:
        """The reason to stop after this epoch, or None."""
        if self.early_stopping:
            if logs["val_loss"] < self._best_loss - self.min_delta:
                self._best_loss = logs["val_loss"]
                self._best_params = net._params.copy()
                self._waited = 0
            else:
                self._waited += 1
                if self._waited >= self.patience:
                    return "early_stopping"
        if self.target_loss is not None and logs["loss"] < self.target_loss:
            return "target_loss"
        if self.target_error is not None and 1.0 - logs["accuracy"] < self.target_error:
            return "target_error"
        if self.min_update is not None and logs["largest_update"] < self.min_update:
            return "min_update"
        return None

    def restore_best(self, net: Network) -> None:
        """Early stopping keeps the weights of the epoch with the best validation loss."""
        if self._best_params is not None:
            net._params[...] = self._best_params


