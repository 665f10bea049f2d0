"""The ``Network``: a multilayer perceptron, its model and its API.

The network owns its parameters in one flat array (see ``_architecture.py``);
``weights`` and ``biases`` are views into it, so writing into them changes the
model.  All the per-sample and per-batch work happens in the backend; this module
validates input and hands training calls to the training loop (``_loop.py``), which
orders the samples of each epoch and keeps the records.
"""

from __future__ import annotations

import copy
import numbers
import os
from dataclasses import dataclass
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, SupportsIndex, overload

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from . import _backend, _chunks, _loop, _maths, _state, _validation
from ._architecture import Architecture
from .history import History
from .initializers import INITIALIZERS
from .errors import InvalidState
from .optimizers import MAX_STEPS, OPTIMIZERS, Optimizer

if TYPE_CHECKING:
    from .schedules import Schedule

#: (for annotations) an array of the network's dtype, float32 or float64
_Floats = NDArray[np.floating[Any]]


class _ParameterList(list):
    """The list behind ``net.weights`` / ``net.biases``: assigning an item copies the
    new values into the network's own array (shape checked) instead of rebinding."""

    def __init__(self, items: list[NDArray[Any]], lock: threading.RLock) -> None:
        super().__init__(items)
        self._lock = lock   # the network's state lock

    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        if isinstance(index, slice):
            raise TypeError("assign the layers one at a time, or the whole list")
        value = self.checked(index, value)
        # (as the whole-list setters: from another thread during a fit, the layer lands
        # between two of its calls into the core, never mid-step)
        with self._lock:
            list.__getitem__(self, index)[...] = value

    def __reduce_ex__(self, protocol: Any) -> Any:
        # a copy (copy.copy, deepcopy, pickle) is a plain list of the arrays: not tied
        # to the network, nor carrying its lock
        return list, (list(self),)

    def checked(self, index: SupportsIndex, value: Any) -> NDArray[Any]:
        """``value`` as layer ``index`` takes it, or the error that names the problem."""
        target = list.__getitem__(self, index)
        # numbers only, finite in the network's dtype (1e300 is inf in float32)
        value = _validation._as_float_array(f"layer {index}", value, target.dtype)
        if value.shape != target.shape:
            raise ValueError(f"layer {index} has shape {target.shape}, got {value.shape}")
        return value


@dataclass
class OptimizerState:
    """An optimizer as plain data: the ``optimizer`` of a ``NetworkState``.

    Parameters
    ----------
    name : str
        The optimizer's class name, a key of ``cyprop.optimizers.OPTIMIZERS``.
    config : dict
        ``get_config()``: its constructor's keyword arguments, with the *current*
        learning rate (a schedule's last).
    initial_learning_rate : float or None
        The rate schedules scale; None: the config's rate.
    steps : int
        Optimizer steps taken so far (0 .. 2**62-1).
    state : ndarray of shape (n_slots, n_params), or None
        Its buffers (momentum, moments), in the network's dtype and parameter layout;
        None before its first step.
    """

    name: str
    config: dict[str, Any]
    initial_learning_rate: float | None
    steps: int
    state: NDArray[Any] | None


@dataclass
class NetworkState:
    """A ``Network``'s complete state as plain data: what ``Network.get_state`` returns,
    ``Network.from_state`` rebuilds and ``cyprop.persistence`` writes and reads.

    Parameters
    ----------
    sizes : list of int
        Units per layer, input first.
    activations : list of str
        The activation of each weight layer, the output's last.
    loss : str
        ``"mse"`` or ``"cross_entropy"``.
    dtype : str
        ``"float64"`` or ``"float32"``.
    init : str
        The initializer's name (as given to ``Network``).
    seed : int or None
        The seed given to ``Network`` (informational: ``rng`` is the generator's state).
    backend : str
        The backend asked for: ``"auto"``, ``"cython"`` or ``"numpy"``.
    dropout : list of float
        The dropout rate of each hidden layer.
    max_norm : float
        The max-norm bound, 0.0 for none.
    params : ndarray of shape (n_params,)
        Every weight and bias in one flat array of ``dtype``: per layer, the weights
        row-major, then the biases.
    rng : dict
        ``bit_generator.state`` of the network's shuffling generator, as plain Python
        data (lists for arrays).
    optimizer : OptimizerState or None
        The optimizer and its state (None before the first training call).
    history : dict
        The training records, ``{key: [float or None, ...]}`` for the keys of
        ``History.KEYS``, one value per epoch.
    stop_reason : str or None
        ``history.stop_reason``.
    classes : list of int or list of str, or None
        ``Network.classes``: the label of each class (None: none given).  Optional,
        so that states built without it keep working.
    """

    sizes: list[int]
    activations: list[str]
    loss: str
    dtype: str
    init: str
    seed: int | None
    backend: str
    dropout: list[float]
    max_norm: float
    params: NDArray[Any]
    rng: dict[str, Any]
    optimizer: OptimizerState | None
    history: dict[str, list[float | None]]
    stop_reason: str | None
    classes: list[int | str] | None = None


class Network:
    """A fully-connected network trained by backpropagation.

    Parameters
    ----------
    sizes : list of int
        Units per layer, input first: ``[784, 30, 10]``.
    activation : str or list of str
        Hidden-layer activation (one name, or one per hidden layer): ``"sigmoid"``,
        ``"tanh"``, ``"relu"``, ``"leaky_relu"`` or ``"identity"``.
    output : str or None
        Output activation: any of those, or ``"softmax"``.  None picks ``"softmax"``
        for several outputs and ``"sigmoid"`` for one.
    loss : str
        ``"mse"`` (0.5 * sum of squared errors) or ``"cross_entropy"`` (with a
        softmax or sigmoid output); per sample, averaged over samples.
    init : str
        ``"normal"``, ``"uniform"``, ``"xavier"`` or ``"he"``.
    dtype : str
        ``"float64"`` or ``"float32"``, used throughout.
    seed : int or None
        Seeds the initial weights and, unless ``fit`` gets its own seed, the shuffling.
    backend : str
        ``"auto"`` (compiled, or NumPy with a warning if the extension is missing),
        ``"cython"`` or ``"numpy"``.
    dropout : float or list of float
        Inverted dropout on the hidden layers during training: one rate for all, or
        one per hidden layer; 0 turns it off.
    max_norm : float or None
        If set, after every optimizer step each unit's incoming weight vector (a row
        of ``weights[l]``) is scaled down to an L2 norm of at most ``max_norm``.

    Attributes
    ----------
    optimizer : Optimizer or None
        The optimizer of the last training call, its state included (None before).
    history : History
        The records of the last ``fit`` (and the ``partial_fit`` calls after it).
    backend : str
        The backend in use: ``"cython"`` or ``"numpy"``.
    stop_training : bool
        A callback may set it to end ``fit`` after the current epoch.
    classes : tuple of int or tuple of str, or None
        The label each class stands for, ``classes[i]`` for the class ``predict``
        returns as ``i``; None (the default) when none were given.  ``save`` stores
        it and ``load`` restores it (``cyprop train --data csv:...`` stores the
        labels of the file, which ``cyprop predict`` then prints); ``predict`` itself
        still returns 0..k-1.  Set it to a list of one label per class (two for one
        output unit), all integers or all names, distinct, a name at most 1000
        characters and on one line.

    Raises
    ------
    TypeError, ValueError
        If an argument is not of its type or not one of its values.
    ImportError
        If ``backend="cython"`` and the compiled extension cannot be imported.
    """

    optimizer: Optimizer | None
    history: History
    backend: str
    stop_training: bool
    _impl: Any   # the backend: the _reference module or a _compiled.CompiledBackend
    _params: NDArray[Any]
    _dtype: np.dtype[Any]
    _training_thread: int | None
    _few_rows: Any   # the backend's few_rows(): a compiled FewRows, or None
    _classes: tuple[int | str, ...] | None = None   # (pickles from before lack it)

    def __init__(self, sizes: Sequence[int], activation: str | Sequence[str] = "sigmoid",
                 output: str | None = None, loss: str = "cross_entropy", init: str = "normal",
                 dtype: DTypeLike = "float64", seed: int | None = None, backend: str = "auto",
                 dropout: float | Sequence[float] = 0.0, max_norm: float | None = None) -> None:
        sizes = _check_sizes(sizes)
        if output is None:
            output = "softmax" if sizes[-1] > 1 else "sigmoid"
        activations = _check_activations(activation, output, loss, len(sizes) - 1)
        if output == "softmax" and sizes[-1] == 1:
            raise ValueError("a softmax over one output unit is always 1: use output='sigmoid' "
                             "for two classes in one unit, or two softmax outputs")
        if not isinstance(init, str) or init not in INITIALIZERS:
            raise ValueError(f"unknown init {_state.short.repr(init)}; choose one of "
                             f"{', '.join(INITIALIZERS)}")
        self._arch = Architecture(sizes, activations, loss)
        self._dtype = _validation.check_dtype(dtype)
        self.init = init
        self.seed = seed
        self._requested_backend = backend
        self.backend, self._impl = _backend.resolve(backend)
        self._rng = _generator(seed)
        self._bind(self.arch.new_params(self.dtype))
        for s_w, s_b, n_in, n_out in zip(self.arch.w_slices, self.arch.b_slices,
                                         sizes[:-1], sizes[1:]):
            W, b = INITIALIZERS[init](self._rng, n_in, n_out)
            self._params[s_w] = W.ravel()
            self._params[s_b] = b
        self.dropout = dropout
        self.max_norm = max_norm
        self.optimizer = None
        self.history = History()
        self.stop_training = False   # a callback may set it to end fit after this epoch
        self._lock = threading.Lock()          # one training call at a time
        self._training_thread = None           # the thread holding _lock
        # Held while the parameters, optimizer state and history change together (a
        # compiled call, a restore): save() and pickling take it to see a state that existed.
        self._state_lock = threading.RLock()
        _LIVE[id(self)] = self

    @property
    def classes(self) -> tuple[int | str, ...] | None:
        """The label each class stands for, or None (see the class's Attributes)."""
        return self._classes

    @classes.setter
    def classes(self, value: Sequence[int | str] | NDArray[Any] | None) -> None:
        if isinstance(value, np.ndarray):
            value = value.tolist()   # NumPy integers and strings as Python's
        elif isinstance(value, (list, tuple)):   # (a list of NumPy's, as list(np.unique(y)))
            value = [label.item() if isinstance(label, np.generic) else label
                     for label in value]
        problem = _state.classes_problem(value, self.arch.n_outputs)
        if problem is not None:
            raise ValueError(f"invalid classes: {problem}")
        self._classes = None if value is None else tuple(value)

    # ------------------------------------------------------------------ model
    # The architecture and dtype are fixed: the parameter buffer was laid out for them.
    @property
    def arch(self) -> Architecture:
        """The ``Architecture`` (sizes, activations, loss, parameter layout); fixed."""
        return self._arch

    @property
    def dtype(self) -> np.dtype[Any]:
        """The NumPy dtype of the parameters and of every computation; fixed."""
        return self._dtype

    @property
    def dropout(self) -> list[float]:
        """Dropout rate of each hidden layer (a list; set one rate or one per layer)."""
        return list(self._dropout)

    @dropout.setter
    def dropout(self, value: float | Sequence[float]) -> None:
        self._dropout = _check_dropout(value, self.arch.n_layers - 1)

    @property
    def max_norm(self) -> float:
        """The max-norm bound on each unit's incoming weights, 0.0 for none."""
        return self._max_norm

    @max_norm.setter
    def max_norm(self, value: float | None) -> None:
        self._max_norm = _check_max_norm(value)

    @property
    def sizes(self) -> list[int]:
        """Units per layer, input first (a new list)."""
        return list(self.arch.sizes)

    @property
    def activations(self) -> list[str]:
        """Activation of each weight layer, the output's last."""
        return list(self.arch.activations)

    @property
    def loss_name(self) -> str:
        """The loss: ``"mse"`` or ``"cross_entropy"``."""
        return self.arch.loss

    @property
    def n_params(self) -> int:
        """The number of weights and biases."""
        return self.arch.n_params

    def _parameter_list(self, which: int) -> _ParameterList:
        """The weights (0) or the biases (1): views, assignable layer by layer."""
        return _ParameterList(self.arch.split(self._params)[which], self._state_lock)

    @property
    def weights(self) -> list[_Floats]:
        """Weight matrices, ``weights[l].shape == (sizes[l+1], sizes[l])``; views."""
        return self._parameter_list(0)

    @weights.setter
    def weights(self, values: Iterable[ArrayLike]) -> None:
        # (with the state lock, as save and copy read: from another thread during a fit,
        # all layers land between two of its calls into the core, never mid-step)
        with self._state_lock:
            _assign_all(self._parameter_list(0), values, "weights", self._params)

    @property
    def biases(self) -> list[_Floats]:
        """Bias vectors, ``biases[l].shape == (sizes[l+1],)``; views."""
        return self._parameter_list(1)

    @biases.setter
    def biases(self, values: Iterable[ArrayLike]) -> None:
        with self._state_lock:   # (as weights)
            _assign_all(self._parameter_list(1), values, "biases", self._params)

    # -------------------------------------------------------------- inference
    @overload
    def forward(self, X: ArrayLike, return_hidden: Literal[False] = ...) -> _Floats: ...
    @overload
    def forward(self, X: ArrayLike, return_hidden: Literal[True]) -> list[_Floats]: ...
    @overload
    def forward(self, X: ArrayLike,
                return_hidden: bool = ...) -> _Floats | list[_Floats]: ...
    def forward(self, X: ArrayLike, return_hidden: bool = False) -> _Floats | list[_Floats]:
        """Output activations: (n, n_in) -> (n, n_out); one sample (n_in,) -> (n_out,).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_inputs) or (n_inputs,)
            Inputs; one sample as a 1-D array.  A Dask array or memory map is read a
            block at a time (see ``fit``).
        return_hidden : bool, default False
            Return every layer's activations instead (no dropout: this is inference).

        Returns
        -------
        ndarray, shape (n_samples, n_outputs) or (n_outputs,)
            The output activations, in the network's dtype; with ``return_hidden``, a
            list of every layer's, the first hidden layer first and the output last.

        Raises
        ------
        TypeError, ValueError
            If ``X`` is not numeric, has the wrong shape or holds NaN or infinity.
        FloatingPointError
            If the result overflowed inside the network.
        """
        if self._few_rows is not None and return_hidden is False:
            out = self._few_rows.forward(X)   # a few rows, checked in C (else None)
            if out is not None:
                return out
        if _chunks.is_blockwise(X):
            # A Dask array or memory map: read and converted a block at a time.
            rows = _chunks.Rows(X, self.arch.n_inputs, self.dtype)
            return self._forward_blocks(
                len(rows), ((start, block) for start, _, _, block
                            in _chunks.blocks_for_inference(rows)), return_hidden)
        if (isinstance(X, np.ndarray) and X.ndim == 2 and len(X) > _FORWARD_BLOCK
                and _needs_conversion(X, self.dtype)):
            return self._forward_blocks(
                len(X), ((i, X[i:i + _FORWARD_BLOCK]) for i in range(0, len(X), _FORWARD_BLOCK)),
                return_hidden)
        X, single = _validation.check_X(X, self.arch.n_inputs, self.dtype, allow_single=True)
        with np.errstate(over="ignore", invalid="ignore"):
            out = self._impl.forward(self.arch, self._params, X, every_layer=bool(return_hidden))
        _check_result(out[-1] if return_hidden else out, "forward", self._params)
        if return_hidden:
            return [a[0] for a in out] if single else out
        return out[0] if single else out

    def _forward_blocks(self, n: int, blocks: Iterable[tuple[int, Any]],
                        return_hidden: bool) -> _Floats | list[_Floats]:
        """forward over (start, rows) blocks, into outputs allocated once, so the extra
        memory stays bounded whatever the number of samples (no list of blocks to
        concatenate)."""
        widths = self.arch.sizes[1:] if return_hidden else [self.arch.n_outputs]
        outs = [np.empty((n, width), dtype=self.dtype) for width in widths]
        for i, rows in blocks:
            block = self.forward(rows, return_hidden)
            for out, part in zip(outs, block if return_hidden else [block]):
                out[i:i + len(part)] = part
        return outs if return_hidden else outs[0]

    def predict(self, X: ArrayLike) -> Any:
        """Class labels: the argmax of the outputs (a 0.5 threshold for one output).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_inputs) or (n_inputs,)
            Inputs, as ``forward`` takes them.

        Returns
        -------
        ndarray of int, shape (n_samples,), or an integer scalar
            The labels; one label for one sample (a 1-D ``X``).

        Raises
        ------
        TypeError, ValueError, FloatingPointError
            As ``forward``.
        """
        if self._few_rows is not None:
            labels = self._few_rows.predict(X)   # a few rows, checked in C (else None)
            if labels is not None:
                return labels
        return _maths.labels_of(self.forward(X))

    def loss(self, X: ArrayLike, Y: ArrayLike) -> float:
        """Mean over the samples of the per-sample loss (no regularisation term).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_inputs)
            Inputs; a Dask array or memory map is read a block at a time (see ``fit``).
        Y : array_like
            Targets, (n_samples, n_outputs), or integer class labels (n_samples,),
            one-hot encoded for several outputs.

        Returns
        -------
        float
            The mean loss.

        Raises
        ------
        TypeError, ValueError
            If ``X`` or ``Y`` is not numeric, has the wrong shape, holds NaN or
            infinity, or holds labels or targets the network's output cannot take.
        FloatingPointError
            If the result overflowed inside the network.
        """
        X, Y = self._check_data(X, Y)
        loss, _, _ = self._compute(X, Y, False)
        return loss / X.shape[0]

    def gradients(self, X: ArrayLike, Y: ArrayLike) -> tuple[list[_Floats], list[_Floats]]:
        """The gradients of ``loss(X, Y)``, shaped like the parameters.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_inputs)
            Inputs; a Dask array or memory map is read a block at a time (see ``fit``).
        Y : array_like
            Targets, (n_samples, n_outputs), or integer class labels (n_samples,),
            one-hot encoded for several outputs.

        Returns
        -------
        grad_weights : list of ndarray
            One per weight matrix, shaped like ``weights[l]``.
        grad_biases : list of ndarray
            One per bias vector, shaped like ``biases[l]``.

        Raises
        ------
        TypeError, ValueError
            If ``X`` or ``Y`` is not numeric, has the wrong shape, holds NaN or
            infinity, or holds labels or targets the network's output cannot take.
        FloatingPointError
            If the result overflowed inside the network.
        """
        X, Y = self._check_data(X, Y)
        _, _, grad = self._compute(X, Y, True)
        grad /= X.shape[0]
        return self.arch.split(grad)

    def evaluate(self, X: ArrayLike, Y: ArrayLike) -> dict[str, float]:
        """The mean loss and the accuracy on (X, Y).

        Parameters
        ----------
        X : array_like, shape (n_samples, n_inputs)
            Inputs; a Dask array or memory map is read a block at a time (see ``fit``).
        Y : array_like
            Targets, (n_samples, n_outputs), or integer class labels (n_samples,),
            one-hot encoded for several outputs.

        Returns
        -------
        dict
            ``{"loss": mean loss, "accuracy": fraction classified right}``.

        Raises
        ------
        TypeError, ValueError
            If ``X`` or ``Y`` is not numeric, has the wrong shape, holds NaN or
            infinity, or holds labels or targets the network's output cannot take.
        FloatingPointError
            If the result overflowed inside the network.
        """
        X, Y = self._check_data(X, Y)
        loss, correct, _ = self._compute(X, Y, False)
        return {"loss": loss / X.shape[0], "accuracy": correct / X.shape[0]}

    def _compute(self, X: Any, Y: NDArray[Any],
                 want_grad: bool) -> tuple[float, int, NDArray[Any] | None]:
        """(loss sum, number right, gradient sum or None), refused if not finite."""
        with np.errstate(over="ignore", invalid="ignore"):
            loss, correct, grad = self._sums(X, Y, want_grad)
        _check_result(np.array([loss]), "the loss", self._params, "inputs and targets")
        if grad is not None:
            _check_result(grad, "the gradient", self._params, "inputs and targets")
        return loss, correct, grad

    def _sums(self, X: Any, Y: NDArray[Any],
              want_grad: bool) -> tuple[float, int, NDArray[Any] | None]:
        """(loss sum, number right, gradient sum or None), unchecked; block by block
        for a Dask array or memory map."""
        if not isinstance(X, _chunks.Rows):
            return self._impl.loss_and_gradients(self.arch, self._params, X, Y, want_grad)
        loss, correct, grad = 0.0, 0, None
        for start, stop, _, block in _chunks.blocks_for_inference(X):
            part_loss, part_correct, part_grad = self._impl.loss_and_gradients(
                self.arch, self._params, block, Y[start:stop], want_grad)
            loss += part_loss
            correct += part_correct
            if part_grad is not None:
                grad = part_grad if grad is None else grad + part_grad
        return loss, correct, grad

    # --------------------------------------------------------------- training
    def fit(self, X: ArrayLike, Y: ArrayLike, epochs: int = 30, batch_size: int = 10,
            optimizer: Optimizer | None = None, shuffle: bool = True, seed: int | None = None,
            verbose: int | str = "auto", schedule: Schedule | None = None,
            validation_data: tuple[ArrayLike, ArrayLike] | None = None,
            validation_split: float = 0.0, early_stopping: bool = False, patience: int = 10,
            min_delta: float = 0.0, target_loss: float | None = None,
            target_error: float | None = None, min_update: float | None = None,
            callbacks: Iterable[Any] | None = (), sample_weight: ArrayLike | None = None,
            class_weight: str | Mapping[int, float] | None = None,
            n_threads: int | None = None) -> History:
        """Train by mini-batch backpropagation; returns the ``History`` of this call
        (also ``net.history``).

        Each epoch visits the samples in a fresh permutation (``shuffle=True``, drawn
        from ``seed``, else from the network's own generator) or in the given order, in
        consecutive batches of ``batch_size`` (the last may be shorter); each batch's
        gradient is the mean of its samples' gradients and gives one optimizer step.
        ``batch_size=1`` is online SGD.  The optimizer (default ``SGD(0.1)``) stays
        with the network, state included, for later calls.

        Training stops after ``epochs``, or earlier when any rule given holds:
        ``target_loss`` (training loss below it), ``target_error`` (training error
        rate below it), ``min_update`` (no weight moved more than this in an epoch),
        ``early_stopping`` (validation loss not better by ``min_delta`` for
        ``patience`` epochs; the best epoch's weights are restored at the end), or a
        callback's ``on_epoch_end(net, epoch, logs)`` returning True (or setting
        ``net.stop_training``).  ``history.stop_reason`` says which.

        Data larger than memory: an ``X`` that is a Dask array or a memory map
        (``np.load(path, mmap_mode="r")``, ``np.memmap``) is read, checked and converted
        a block of whole batches (about 64 MB) at a time, never whole; ``Y`` is read
        whole.  Unshuffled, the result is that of the same data in memory; shuffled,
        each epoch visits the blocks in a random order and the rows of each block in a
        random order (see ``cyprop._chunks``), reproducibly from the seed.  The same
        holds for ``forward``, ``predict``, ``evaluate``, ``loss`` and the validation data.

        Divergence: an epoch whose training loss is NaN or infinite, or more than
        ``DIVERGENCE_FACTOR`` (1000) times the loss the call started from (measured on
        its first ``DIVERGENCE_SAMPLES`` samples; at least 1), or that leaves a weight
        NaN, infinite or beyond the square root of the dtype's largest value (where
        products overflow), or the optimizer state non-finite, raises
        ``cyprop.TrainingDiverged``; the weights and optimizer state of the epoch's
        start are kept and ``history.stop_reason`` is ``"diverged"``.

        Parameters
        ----------
        X : array_like, shape (n_samples, n_inputs)
            Inputs; or a Dask array or memory map (see above).
        Y : array_like
            Targets, (n_samples, n_outputs), or integer class labels (n_samples,),
            one-hot encoded for several outputs.
        epochs : int, default 30
            The most epochs to train.
        batch_size : int, default 10
            Samples per optimizer step; 1 is online SGD.
        optimizer : Optimizer, optional
            The optimizer (default: the network's, else ``SGD(0.1)``); one that comes
            from elsewhere starts with fresh state.
        shuffle : bool, default True
            Visit the samples of each epoch in a fresh permutation.
        seed : int, optional
            Seeds the permutations (default: the network's own generator).
        verbose : {0, 1, "auto"}, default "auto"
            0 silent, 1 a progress bar (tqdm) or a line per epoch (a larger int is
            the same as 1, a bool as 0 or 1), "auto" 1 when the output is a terminal
            or a notebook.
        schedule : Schedule, optional
            A learning-rate schedule (``cyprop.schedules``).
        validation_data : (X_val, Y_val), optional
            Validation data, evaluated after every epoch.
        validation_split : float, default 0.0
            Else the last fraction of the samples, before shuffling, is held out for
            validation; ``early_stopping`` without either holds out 10%.
        early_stopping : bool, default False
            Stop when the validation loss has not improved by ``min_delta`` for
            ``patience`` epochs; the best epoch's weights are restored at the end.
        patience : int, default 10
        min_delta : float, default 0.0
        target_loss : float, optional
            Stop once the training loss is below it.
        target_error : float, optional
            Stop once the training error rate (1 - accuracy, in [0, 1]) is below it.
        min_update : float, optional
            Stop once no weight moved more than this in an epoch.
        callbacks : iterable or None, default ()
            Objects with an ``on_epoch_end(net, epoch, logs)`` method, called after
            every epoch; returning True (``numpy.True_`` too; other values are
            ignored) or setting ``net.stop_training`` stops.
            None: none.
        sample_weight : array_like, shape (n_samples,), optional
            Scales each sample's loss and gradient; as in Keras, a batch's gradient is
            then sum(w_i g_i) / batch size, so weights with a mean other than 1 also
            scale the step.
        class_weight : "balanced" or dict, optional
            ``{label: weight}``, or "balanced"; multiplies ``sample_weight``.
        n_threads : int, optional
            Threads for the parts of large layers in mini-batches (a layer of 32 units
            or more with about 1e6 weight-sample products or more per block of 32 rows;
            default: ``OMP_NUM_THREADS``, or what threadpoolctl set, else all cores);
            capped to the cores this process may use, and more than ``MAX_THREADS``
            (1024) is refused; the results do not depend on it.

        Returns
        -------
        History
            The records of this call (also ``net.history``).

        Raises
        ------
        TypeError, ValueError
            If an argument or the data is not of its type, shape or range.
        TrainingDiverged
            If training diverged (see above).
        RuntimeError
            If the network is already training (in another thread, or in a callback
            of its own ``fit``), or the optimizer is training another network, or the
            schedule keeps state (``ReduceOnPlateau``) and another fit is using it.
        """
        epochs = _validation.check_int("epochs", epochs)
        batch_size = _validation.check_int("batch_size", batch_size)
        patience = _validation.check_int("patience", patience, minimum=0)
        _check_schedule(schedule)
        _loop.check_optimizer(optimizer)
        shuffle = _validation.check_bool("shuffle", shuffle)
        early_stopping = _validation.check_bool("early_stopping", early_stopping)
        if callbacks is None:   # (as Keras takes it: none)
            callbacks = ()
        if not isinstance(callbacks, Iterable):
            raise TypeError(f"callbacks must be a list of objects with an on_epoch_end "
                            f"method, got {type(callbacks).__name__}")
        callbacks = list(callbacks)
        for callback in callbacks:
            if not callable(getattr(callback, "on_epoch_end", None)):
                raise TypeError(f"callbacks need an on_epoch_end(net, epoch, logs) method; "
                                f"{type(callback).__name__} has none")
        rules = _loop.StoppingRules(target_loss, target_error, min_update, early_stopping,
                                    patience, min_delta)
        n_threads = _check_threads(n_threads)
        verbose = _check_verbose(verbose)
        X, Y = self._check_data(X, Y)
        validation = _loop.validation_set(self, X, Y, validation_data, validation_split,
                                          early_stopping)
        if schedule is not None and callable(getattr(schedule, "check", None)):
            schedule.check(has_validation=validation is not None)
        if validation is not None and validation_data is None:
            # the held-out samples take no part in training, nor in "balanced" weights
            n_train = X.shape[0] - validation[0].shape[0]
            if sample_weight is not None:   # (one per sample of X, as given)
                sample_weight = _loop.check_sample_weight(sample_weight, X.shape[0])[:n_train]
            X, Y = X[:n_train], Y[:n_train]
        weights = _loop.sample_weights(sample_weight, class_weight, Y, self.dtype)
        rng = _generator(seed) if seed is not None else self._rng
        return _loop.run(self, X, Y, weights, epochs, batch_size, shuffle, rng, verbose,
                         schedule, validation, rules, callbacks, History(), n_threads,
                         optimizer)

    def partial_fit(self, X: ArrayLike, Y: ArrayLike, batch_size: int = 10,
                    optimizer: Optimizer | None = None, shuffle: bool = True,
                    sample_weight: ArrayLike | None = None,
                    class_weight: str | Mapping[int, float] | None = None,
                    verbose: int | str = 0, n_threads: int | None = None) -> Network:
        """One more epoch over (X, Y), keeping the optimizer and its state, and adding to
        ``net.history``.

        A 1-D X is one sample (as ``forward`` takes it); its Y is then the sample's
        targets (n_outputs values) or its class label (a number, or one value).  Each
        call records an epoch (about 160 bytes): a stream of millions of one-sample calls
        can start a fresh history now and then (``net.history = cyprop.History()``);
        the optimizer's state and step count are kept.

        Parameters
        ----------
        X, Y, batch_size, optimizer, shuffle, sample_weight, class_weight, verbose, n_threads
            As in ``fit``.

        Returns
        -------
        Network
            This network.

        Raises
        ------
        TypeError, ValueError, TrainingDiverged, RuntimeError
            As ``fit``.
        """
        if (optimizer is None and sample_weight is None and class_weight is None
                and (verbose is False or (type(verbose) is int and verbose == 0))
                and n_threads is None and type(batch_size) is int
                and batch_size >= 1 and (shuffle is True or shuffle is False)
                and self._few_rows is not None
                and self._few_rows.step(self, X, Y, _loop.prepare_one_sample)):
            return self   # one sample, stepped and checked in C (see _loop.prepare_one_sample)
        batch_size = _validation.check_int("batch_size", batch_size)
        n_threads = _check_threads(n_threads)
        verbose = _check_verbose(verbose)
        _loop.check_optimizer(optimizer)
        shuffle = _validation.check_bool("shuffle", shuffle)
        if not _chunks.is_blockwise(X) and _is_one_sample(X):
            X, Y = _one_sample(X, Y, self.arch.n_outputs)
        X, Y = self._check_data(X, Y)
        weights = _loop.sample_weights(sample_weight, class_weight, Y, self.dtype)
        _loop.run(self, X, Y, weights, 1, batch_size, shuffle, self._rng, verbose, None, None,
                  _loop.StoppingRules(), [], None, n_threads, optimizer)
        return self

    # ------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the network (architecture, weights, optimizer state, history) to one
        ``.npz`` file at exactly ``path`` (no suffix is added), atomically; read it back
        with ``cyprop.load(path)``.  See ``cyprop.persistence``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Raises
        ------
        OSError
            If the file cannot be written (``PermissionError`` for a read-only file).
        TypeError, ValueError
            If the network cannot be saved (see ``cyprop.persistence.save``).
        """
        # What the file holds is taken in one moment (get_state holds the lock), checked
        # as cyprop.load will check it, then written without holding up training.
        _state.write(self._state_for_file(), os.fspath(path))

    def _state_for_file(self) -> NetworkState:
        """``get_state()``, once ``from_state`` (the checks ``cyprop.load`` makes) takes
        it: a network with weights or an optimizer state set to NaN by hand, say, would
        be written to a file that load refuses, found out only when the model is needed.
        ValueError naming the problem."""
        state = self.get_state()
        try:
            _from_state(Network, state)
        except InvalidState as exc:
            raise ValueError(f"cannot save this network, nothing was written: cyprop.load "
                             f"would refuse the file ({exc})") from exc
        return state

    def get_state(self) -> NetworkState:
        """The network's complete state, as plain data (copies): architecture, dtype,
        settings, parameters, shuffling generator, optimizer (and its state) and history.

        ``Network.from_state`` rebuilds an equal network from it: the same outputs, and
        training that goes on exactly as this network's would (on the same backend).
        ``save`` writes this state.  The network may be training in another thread:
        the state is one it had between two steps.

        Returns
        -------
        NetworkState
            A new state, sharing no arrays with the network.

        Raises
        ------
        ValueError
            If the optimizer is not one of ``cyprop.optimizers.OPTIMIZERS`` (its state
            could not be rebuilt): set ``net.optimizer = None`` to go without it; or
            ``net.history`` is no ``History``, or a record of it (edited by hand) is
            not a list of numbers (or None) as long as the others.
        """
        with self._state_lock:   # a state that existed, even while another thread trains
            optimizer = None if self.optimizer is None else self._optimizer_state()
            history = _history_records(self.history, "take the state of")
            return NetworkState(
                sizes=list(self.arch.sizes), activations=list(self.arch.activations),
                loss=self.arch.loss, dtype=self.dtype.name, init=self.init,
                # a copy: a seed that is a generator is the network's own, which
                # from_state's constructor (save's check too) would draw from
                seed=copy.deepcopy(self.seed),
                backend=self._requested_backend, dropout=self.dropout,
                max_norm=self.max_norm, params=self._params.copy(),
                rng=_state.plain(self._rng.bit_generator.state),   # new lists and ints
                optimizer=optimizer,
                history={key: [None if v is None else float(v) for v in values]
                         for key, values in history["records"].items()},
                stop_reason=history["stop_reason"],
                classes=None if self._classes is None else list(self._classes))

    def _optimizer_state(self) -> OptimizerState:
        opt = self.optimizer
        assert opt is not None
        name = type(opt).__name__
        if OPTIMIZERS.get(name) is not type(opt):
            raise ValueError(f"cannot save a network whose optimizer is {name}: only the "
                             f"optimizers in cyprop.optimizers.OPTIMIZERS "
                             f"({', '.join(OPTIMIZERS)}) can be saved or restored; set "
                             "net.optimizer = None to save without it")
        state, steps = opt.state, int(opt.steps)
        if state is not None and (state.ndim != 2 or state.shape[1] != self.n_params
                                  or state.dtype != self.dtype):
            # State left from another network: the next step would discard it and start
            # afresh (Optimizer.state_for), so "no state" is the same optimizer.
            state, steps = None, 0
        if state is not None and state.shape[0] != type(opt).n_slots:
            raise ValueError(f"cannot save: the {name} state has {state.shape[0]} rows, "
                             f"expected {type(opt).n_slots}")
        if not 0 <= steps <= MAX_STEPS:
            raise ValueError(f"cannot save: the {name} step count {steps} is outside "
                             f"0..2**62-1, which load accepts")
        return OptimizerState(name=name, config=opt.get_config(),
                              initial_learning_rate=float(opt.initial_learning_rate),
                              steps=steps, state=None if state is None else state.copy())

    @classmethod
    def from_state(cls, state: NetworkState) -> Network:
        """A network rebuilt from ``state`` (see ``get_state``), on the state's backend.

        Everything is checked as ``cyprop.load`` checks a file: the architecture and
        settings by the constructor's own rules, the parameters' shape, dtype and
        finiteness, the generator state field by field against NumPy's own, the
        optimizer's name, configuration, step count and state (shape, dtype,
        finiteness), and the history.  Nothing of ``state`` is shared with the network.

        Parameters
        ----------
        state : NetworkState
            The state, from ``get_state`` (or built by hand).

        Returns
        -------
        Network
            The network, with its optimizer (and state) and history.

        Raises
        ------
        TypeError
            If ``state`` is not a ``NetworkState``.
        ValueError
            Saying what is wrong (``cyprop.errors.InvalidState``, a ``ValueError``),
            for a state that does not describe a network cyprop can build.
        ImportError
            If the state's backend is ``"cython"`` and the compiled extension cannot be
            imported.
        """
        if not isinstance(state, NetworkState):
            raise TypeError(f"from_state needs a NetworkState (from Network.get_state), "
                            f"got {type(state).__name__}")
        return _from_state(cls, state)

    # ------------------------------------------------------------ interop
    def to_onnx(self, path: str | os.PathLike[str], opset: int | None = None) -> Any:
        """Write the network as an ONNX model (needs ``cyprop[onnx]``); returns it.
        See ``cyprop.interop``.

        Parameters
        ----------
        path : str or os.PathLike
            The ``.onnx`` file to write.
        opset : int, optional
            The ONNX opset version (default: ``cyprop.interop``'s).

        Returns
        -------
        onnx.ModelProto
            The model written.
        """
        from . import interop

        with self._state_lock:   # weights that existed, even while another thread trains
            return interop.to_onnx(self, path, opset)

    def to_torch(self) -> Any:
        """An equivalent ``torch.nn.Sequential``; see ``cyprop.interop``.

        Returns
        -------
        torch.nn.Sequential
            Linear and activation layers computing ``forward``.
        """
        from . import interop

        with self._state_lock:
            return interop.to_torch(self)

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> Network:
        """A network from an ``nn.Sequential`` of Linear and activation layers; see
        ``cyprop.interop.from_torch``.

        Parameters
        ----------
        module : torch.nn.Sequential
            The model to copy.
        **kwargs
            Passed to ``Network`` (``dtype``, ``backend``, ...).

        Returns
        -------
        Network
        """
        from . import interop

        return interop.from_torch(module, **kwargs)

    @classmethod
    def from_sklearn(cls, mlp: Any, **kwargs: Any) -> Network:
        """A network from a fitted ``MLPClassifier`` / ``MLPRegressor``; see
        ``cyprop.interop.from_sklearn``.

        Parameters
        ----------
        mlp : sklearn.neural_network.MLPClassifier or MLPRegressor
            The fitted model to copy.
        **kwargs
            Passed to ``Network`` (``dtype``, ``backend``, ...).

        Returns
        -------
        Network
        """
        from . import interop

        return interop.from_sklearn(mlp, **kwargs)

    # ---------------------------------------------------------------- helpers
    def _check_data(self, X: Any, Y: ArrayLike) -> tuple[NDArray[Any], NDArray[Any]]:
        # (X comes back as a _chunks.Rows for a Dask array or memory map: array-like
        # enough for the callers, which read its shape and slice it)
        _validation._refuse_sparse("Y", Y)   # (before np.asarray hides it in an object)
        _validation._refuse_iterator("Y", Y)
        labels = _validation.as_targets(Y, self.dtype)   # (Y is read whole)
        if _chunks.is_blockwise(X):   # read a block at a time (checked as it is read)
            X = _chunks.Rows(X, self.arch.n_inputs, self.dtype)
            Y = _validation.check_Y(labels, X.shape[0], self.arch.n_outputs, self.dtype)
        else:
            X, Y = _validation.check_XY(X, labels, self.arch.n_inputs, self.arch.n_outputs,
                                        self.dtype)
            X = _unshared(X, self._params)
        Y = _unshared(Y, self._params)
        if (self.arch.output == "sigmoid" and self.arch.n_outputs == 1
                and labels.dtype.kind in "iu" and ((labels < 0) | (labels > 1)).any()):
            raise ValueError(f"Y holds integer class labels from {labels.min()} to "
                             f"{labels.max()}, but a single sigmoid output holds two classes "
                             "(0 and 1): give the network one softmax output per class")
        if self.arch.loss == "cross_entropy" and (labels.ndim != 1 or self.arch.n_outputs == 1):
            # (class labels were one-hot encoded: those targets are 0 and 1)
            low, high = float(Y.min()), float(Y.max())
            if low < 0 or high > 1:
                raise ValueError(f"cross-entropy needs targets in [0, 1] (probabilities), got "
                                 f"values from {low:g} to {high:g}; use loss='mse' for other "
                                 "targets, or class labels with a softmax output")
        return X, Y

    def copy(self) -> Network:
        """An independent copy: same parameters, optimizer state and backend.

        Returns
        -------
        Network
            A deep copy, history included.

        Raises
        ------
        ValueError
            If the network holds what a copy or a pickle could not be loaded back from
            (weights set to NaN or infinity in place), as ``save`` refuses it.
        """
        return copy.deepcopy(self)

    def _as_float64(self) -> None:
        """This network converted to float64 in place (for gradient checks of a copy)."""
        params = self.arch.new_params(np.float64)
        params[...] = self._params
        self._dtype = np.dtype(np.float64)
        self._bind(params)

    def __getstate__(self) -> dict[str, Any]:
        # a snapshot that existed, even while another thread trains
        with self._state_lock:
            state = self.__dict__.copy()
            state["_params"] = self._params.copy()
            # the generator too: a copy.copy sharing it would move the original's shuffles
            state["_rng"] = copy.deepcopy(self._rng)
            state["optimizer"] = copy.deepcopy(self.optimizer)
            state["history"] = copy.deepcopy(self.history)
        for name in ("_lock", "_state_lock", "_impl", "_training_thread", "_few_rows"):
            del state[name]
        # what unpickling would refuse (weights set to NaN in place) is refused now: a
        # pickle that could never be loaded back, or a copy that fails half made
        _check_pickled(dict(state), "copy or pickle")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"cannot unpickle a Network from a {type(state).__name__}; "
                            "its state is a dict")
        state = dict(state)
        # pickles from before the architecture and dtype were read-only
        for name in ("arch", "dtype", "dropout", "max_norm"):
            if name in state:
                state["_" + name] = state.pop(name)
        params = _check_pickled(state)   # own, aligned, of the checked shape and dtype
        self.__dict__.update(state)
        self.backend, self._impl = _backend.resolve(self._requested_backend)
        self._bind(params)
        self._lock = threading.Lock()
        self._state_lock = threading.RLock()
        self._training_thread = None
        _LIVE[id(self)] = self

    def _bind(self, params: NDArray[Any]) -> None:
        """Make ``params`` the parameter buffer (set once; trained and loaded in place),
        read by the backend's few-rows calls too (None: the backend has none)."""
        self._params = params
        self._few_rows = self._impl.few_rows(self.arch, params)

    def __repr__(self) -> str:
        return (f"Network(sizes={self.sizes}, activations={self.activations}, "
                f"loss={self.arch.loss!r}, dtype={self.dtype.name!r}, backend={self.backend!r})")


def _from_state(cls: type[Network], state: NetworkState) -> Network:
    """``Network.from_state``: the checks in the order ``cyprop.load`` makes them (the
    file's own, then these), each failure an InvalidState naming the problem."""
    def require(condition: object, problem: str) -> None:
        if not condition:
            raise InvalidState(problem)

    r = _state.short.repr
    sizes, activations = state.sizes, state.activations
    require(isinstance(sizes, (list, tuple)) and len(sizes) >= 2
            and all(_state.is_int(n) and n >= 1 for n in sizes),
            f"invalid layer sizes {r(sizes)}")
    require(isinstance(activations, (list, tuple)) and len(activations) == len(sizes) - 1
            and all(isinstance(a, str) for a in activations),
            f"invalid activations {r(activations)} for sizes {r(sizes)}")
    try:
        # The constructor applies the same rules as for a new network (e.g. no
        # cross-entropy with a ReLU output), so a state cannot smuggle in a model
        # that Network itself would refuse.
        net = cls(list(sizes), activation=list(activations[:-1]), output=activations[-1],
                  loss=state.loss, init=state.init, dtype=state.dtype, seed=state.seed,
                  backend=state.backend, dropout=state.dropout,
                  max_norm=state.max_norm or None)
    except (TypeError, ValueError) as exc:
        raise InvalidState(f"it describes a network cyprop cannot build: {exc}") from exc

    params = state.params
    require(isinstance(params, np.ndarray), f"the parameters must be a NumPy array, got "
                                            f"{type(params).__name__}")
    require(params.dtype == net.dtype,
            f"the parameters have dtype {params.dtype}, expected {net.dtype.name}")
    require(params.shape == (net.n_params,),
            f"the parameters have shape {params.shape}, expected ({net.n_params},)")
    net._params[...] = params
    require(_validation.all_finite(net._params), "the weights contain NaN or infinity")

    rng = _state.plain(state.rng)
    problem = _state.rng_problem(rng)
    require(problem is None, f"invalid random generator state ({problem})")
    bit_generator = getattr(np.random, rng["bit_generator"])()   # one of RNG_FIELDS, checked
    try:
        bit_generator.state = rng
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        raise InvalidState(f"invalid random generator state ({exc})") from exc
    net._rng = np.random.Generator(bit_generator)

    if state.optimizer is not None:
        net.optimizer = _optimizer_from_state(state.optimizer, net)

    history = {"records": state.history, "stop_reason": state.stop_reason}
    _state.validate_history(require, history)
    unknown = set(state.history) - set(History.KEYS)
    require(not unknown, f"unknown training history records {r(sorted(unknown))}")
    epochs = len(next(iter(state.history.values()), []))
    net.history = History()
    for key in History.KEYS:
        # Records the state lacks are filled with None.
        setattr(net.history, key, [None if v is None else float(v)
                                   for v in state.history.get(key, [None] * epochs)])
    net.history.stop_reason = state.stop_reason

    classes = getattr(state, "classes", None)
    problem = _state.classes_problem(classes, net.arch.n_outputs)
    require(problem is None, f"invalid classes ({problem})")
    net._classes = None if classes is None else tuple(classes)
    return net


#: The networks alive, by id (a subclass may be unhashable), for _open_locks_in_child.
_LIVE: weakref.WeakValueDictionary[int, Network] = weakref.WeakValueDictionary()


def _open_locks_in_child() -> None:
    """In a child forked while another thread trained a network (or held its state lock
    to save or copy it), that thread does not exist: its locks would stay held forever,
    and pickling, saving, the weights and training would wait or be refused for good.
    They are opened again; those the forking thread itself holds (it forked from a
    callback) stay held, for it to release."""
    for net in list(_LIVE.values()):
        state_lock = net._state_lock
        if not state_lock._is_owned():   # type: ignore[attr-defined]
            state_lock._at_fork_reinit()   # type: ignore[attr-defined]
        if net._lock.locked() and net._training_thread != threading.get_ident():
            net._lock._at_fork_reinit()   # type: ignore[attr-defined]
            net._training_thread = None
            # (and the claim on the optimizer that the thread trained it with)
            claim = getattr(net.optimizer, "_claim", None)
            if claim is not None:
                claim._at_fork_reinit()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_open_locks_in_child)


#: What a pickled Network's dict must hold (``__getstate__`` writes these).
_PICKLED = ("_arch", "_dtype", "_params", "_dropout", "_max_norm", "_rng", "_requested_backend",
            "optimizer", "history")


def _check_pickled(state: dict[str, Any], doing: str = "unpickle") -> NDArray[Any]:
    """A pickled Network's dict checked as ``from_state`` checks a state (pickle runs what
    its bytes name, but the data it hands ``__setstate__`` is still checked before the
    compiled core reads it): the architecture rebuilt by the constructor's rules, fields
    normalised in ``state`` in place; returns the parameters as a new aligned array.
    ValueError naming the problem."""
    def require(condition: object, problem: str) -> None:
        if not condition:
            raise ValueError(f"cannot {doing} this Network: {problem}")

    r = _state.short.repr
    missing = [name for name in _PICKLED if name not in state]
    require(not missing, f"it lacks {', '.join(missing)}")
    arch = state["_arch"]
    require(isinstance(arch, Architecture), f"its architecture is a {type(arch).__name__}")
    try:
        # Rebuilt from its sizes, activations and loss: the offsets and codes the compiled
        # core reads are derived again, never taken from the pickle.
        sizes = _check_sizes(arch.sizes)
        activations = list(arch.activations)
        if not activations:
            raise ValueError("its architecture has no activations")
        activations = _check_activations(activations[:-1], activations[-1], arch.loss,
                                         len(sizes) - 1)
        state["_arch"] = arch = Architecture(sizes, activations, arch.loss)
        state["_dtype"] = dtype = _validation.check_dtype(state["_dtype"])
        state["_dropout"] = _check_dropout(state["_dropout"], arch.n_layers - 1)
        state["_max_norm"] = _check_max_norm(state["_max_norm"] or None)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"cannot {doing} this Network: {exc}") from exc
    params = state["_params"]
    require(isinstance(params, np.ndarray) and params.dtype == dtype
            and params.shape == (arch.n_params,),
            f"the parameters must be an array of shape ({arch.n_params},) and dtype "
            f"{dtype.name}, got {_describe(params)}")
    own = arch.new_params(dtype)   # an unpickled array may be unaligned
    own[...] = params
    require(_validation.all_finite(own), "the weights contain NaN or infinity")
    rng = state["_rng"]
    require(isinstance(rng, np.random.Generator),
            f"its random generator is a {type(rng).__name__}")
    problem = _state.rng_problem(_state.plain(rng.bit_generator.state))
    require(problem is None, f"invalid random generator state ({problem})")
    optimizer = state["optimizer"]
    require(optimizer is None or isinstance(optimizer, Optimizer),
            f"its optimizer is a {type(optimizer).__name__}")
    _history_records(state["history"], doing)
    problem = _state.classes_problem(state.get("_classes"), arch.n_outputs)
    require(problem is None, f"invalid classes ({problem})")
    if state.get("_classes") is not None:   # (a list would be the network's own, mutable)
        state["_classes"] = tuple(state["_classes"])
    return own


def _history_records(history: object, doing: str) -> dict[str, Any]:
    """``{"records": ..., "stop_reason": ...}`` of ``history`` (``net.history``, which
    may have been set or edited by hand), checked as ``cyprop.load`` checks a file's:
    ValueError naming the problem ("cannot {doing} this Network: ...")."""
    def require(condition: object, problem: str) -> None:
        if not condition:
            raise ValueError(f"cannot {doing} this Network: {problem}")

    require(isinstance(history, History), f"its history is a {type(history).__name__}")
    assert isinstance(history, History)
    try:
        records = {"records": history.to_dict(), "stop_reason": history.stop_reason}
    except (AttributeError, TypeError) as exc:   # a record deleted, or set to None
        raise ValueError(f"cannot {doing} this Network: invalid training history "
                         f"({exc})") from exc
    _state.validate_history(require, records)
    return records


def _optimizer_from_state(opt: OptimizerState, net: Network) -> Optimizer:
    """The optimizer of a state, checked as a file's is (``_state.validate_optimizer``)."""
    def require(condition: object, problem: str) -> None:
        if not condition:
            raise InvalidState(problem)

    require(isinstance(opt, OptimizerState),
            f"the optimizer must be an OptimizerState, got {type(opt).__name__}")
    state = opt.state
    _state.validate_optimizer(require, {
        "name": opt.name, "config": opt.config, "steps": opt.steps,
        "has_state": state is not None, "initial_learning_rate": opt.initial_learning_rate})
    # get_config() gave the current rate, which a schedule may have taken anywhere
    # down to 0 (a finished Cosine); the constructor, which wants a rate > 0, gets
    # the initial one, which schedules scale, and the current one is set after.
    config = dict(opt.config)
    initial = opt.initial_learning_rate
    current = config.get("learning_rate")
    if initial is not None and "learning_rate" in config:
        config["learning_rate"] = initial
    try:
        optimizer = OPTIMIZERS[opt.name](**config)
        if current is not None and current < 0:
            raise ValueError(f"learning_rate must be a finite number >= 0, got {current!r}")
    except (TypeError, ValueError) as exc:
        raise InvalidState(f"invalid {opt.name} configuration ({exc})") from exc
    if initial is not None:
        optimizer.initial_learning_rate = float(initial)
        if current is not None:
            optimizer.learning_rate = float(current)
    optimizer.steps = opt.steps
    if state is not None:
        shape = (type(optimizer).n_slots, net.n_params)
        require(isinstance(state, np.ndarray) and state.dtype == net.dtype
                and state.shape == shape,
                f"the {opt.name} state must be an array of shape {shape} and dtype "
                f"{net.dtype.name}, got {_describe(state)}")
        optimizer.state = np.array(state, order="C", copy=True)   # own, C-contiguous
        require(_validation.all_finite(optimizer.state),
                "the optimizer state contains NaN or infinity")
    return optimizer


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"shape {value.shape} and dtype {value.dtype}"
    return type(value).__name__


def _is_one_sample(X: ArrayLike) -> bool:
    """Whether X is 1-D: one sample (what cannot be an array is left to the checks)."""
    try:
        return np.ndim(X) == 1
    except ValueError:   # ragged nested sequences
        return False


def _one_sample(X: ArrayLike, Y: ArrayLike,
                n_outputs: int) -> tuple[NDArray[Any], NDArray[Any]]:
    """A 1-D X as one row, and its Y as that row's targets (n_outputs values) or class
    label (a number, or one value)."""
    # (np.asarray drops a mask: masked values are refused here, as in check_X)
    Y = np.asarray(_validation._unmasked("Y", Y))
    if Y.ndim == 0 or (Y.ndim == 1 and n_outputs > 1 and Y.shape[0] == n_outputs):
        Y = Y.reshape(1, -1) if Y.ndim == 1 else Y.reshape(1)
    return np.asarray(_validation._unmasked("X", X)).reshape(1, -1), Y


def _unshared(data: NDArray[Any], params: NDArray[Any]) -> NDArray[Any]:
    """``data``, or a copy of it if it is a view of the parameters (net.weights[0] as X):
    it would change under the steps that read it, and training reads it as it is now."""
    return data.copy() if np.may_share_memory(data, params) else data


def _check_result(values: NDArray[Any], what: str, params: NDArray[Any],
                  data: str = "inputs") -> None:
    """A result that overflowed inside the network is an error, not an answer; so is
    one from weights that are not finite (set by hand), which says so.  ``data``: what
    the call read besides the weights ("inputs", or "inputs and targets")."""
    if not _validation.all_finite(values):
        if not _validation.all_finite(params):
            raise FloatingPointError(
                f"{what} is NaN or infinite because the network's weights hold NaN or "
                "infinity (set by hand, or through a callback?); fit refuses to train "
                "from them too: set finite weights, or build the network again")
        raise FloatingPointError(
            f"{what} overflowed inside the network (NaN or infinity from finite {data} "
            f"and weights): the {data} or weights are too large; scale the {data}")


def _check_schedule(schedule: object) -> None:
    if schedule is not None and not callable(getattr(schedule, "rate", None)):
        raise TypeError(f"schedule must be a cyprop.schedules object (with a rate method), "
                        f"got {type(schedule).__name__}")


#: Rows converted at a time when forward() gets a large input that needs converting.
_FORWARD_BLOCK = 65536

#: A training run has diverged when an epoch's training loss exceeds this many times the
#: loss it started from (or 1, if that is larger): far beyond any normal run's wobble.
#: (Defined by the training loop, ``cyprop._loop``, which applies it.)
DIVERGENCE_FACTOR = _loop.DIVERGENCE_FACTOR
#: The starting loss is measured on (at most) this many of the first training samples.
DIVERGENCE_SAMPLES = _loop.DIVERGENCE_SAMPLES
#: More threads than this is a mistake, not a request (capped to the cores below it).
MAX_THREADS = 1024


def _check_threads(n_threads: int | None) -> int | None:
    """None (the default), or an int in 1 .. MAX_THREADS."""
    if n_threads is None:
        return None
    return _validation.check_int("n_threads", n_threads, maximum=MAX_THREADS)


def _generator(seed: Any) -> np.random.Generator:
    """``np.random.default_rng(seed)``, its refusal naming ``seed`` (NumPy's says only
    "expected non-negative integer")."""
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"seed must be None or an integer >= 0, got "
                        f"{_validation._short(seed)} ({exc})") from None


def _check_verbose(verbose: object) -> int | str:
    """"auto", or a level: True, False or an int >= 0 (what is not is refused before
    training, not met as a truth value half-way into it)."""
    if isinstance(verbose, str):
        if verbose != "auto":
            raise ValueError(f"verbose must be 0, 1 or 'auto', "
                             f"got {_validation._short(verbose)}")
        return verbose
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral):
        raise TypeError(f"verbose must be 0, 1 or 'auto', got {_validation._short(verbose)}")
    return _validation.check_int("verbose", verbose, minimum=0)


def _needs_conversion(X: object, dtype: np.dtype[Any]) -> bool:
    return not (isinstance(X, np.ndarray) and X.dtype == dtype and X.flags.c_contiguous)


#: The most parameters a network may have: float64 bytes that an array's size can count.
MAX_PARAMS = np.iinfo(np.intp).max // 8
MAX_UNITS = 2**31 - 1


def _check_sizes(sizes: Iterable[int]) -> list[int]:
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"sizes must be a list of layer sizes, got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least an input and an output layer, got {sizes}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"layer sizes must be integers, got {s!r} in {sizes}")
        if s < 1:
            raise ValueError(f"layer sizes must be positive, got {s} in {sizes}")
    sizes = [int(s) for s in sizes]
    # Counted in Python's ints, before NumPy or the core would overflow on them (an
    # OverflowError, or "array is too big", names no layer).
    n_params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    if n_params > MAX_PARAMS:
        raise ValueError(f"layer sizes {_validation._short(sizes)} make more parameters "
                         f"than one array can hold ({MAX_PARAMS:.3g})")
    if max(sizes) > MAX_UNITS:
        raise ValueError(f"layer sizes must be at most {MAX_UNITS} (2**31 - 1: the compiled "
                         f"core and the BLAS count a layer's units in 32-bit ints), got "
                         f"{_validation._short(sizes)}")
    return sizes


def _check_activations(activation: str | Sequence[str], output: str, loss: str,
                       n_layers: int) -> list[str]:
    if isinstance(activation, str) and activation not in _maths.HIDDEN_ACTIVATIONS:
        # checked even where no hidden layer uses it: a misspelt name is an error
        raise ValueError(f"unknown hidden activation {activation!r}; choose one of "
                         f"{', '.join(_maths.HIDDEN_ACTIVATIONS)}")
    hidden = [activation] * (n_layers - 1) if isinstance(activation, str) else list(activation)
    if len(hidden) != n_layers - 1:
        raise ValueError(f"activation lists {len(hidden)} names, but the network has "
                         f"{n_layers - 1} hidden layers")
    for name in hidden:
        if name not in _maths.HIDDEN_ACTIVATIONS:
            raise ValueError(f"unknown hidden activation {name!r}; choose one of "
                             f"{', '.join(_maths.HIDDEN_ACTIVATIONS)}")
    if output not in _maths.ACTIVATIONS:
        raise ValueError(f"unknown output activation {output!r}; choose one of "
                         f"{', '.join(_maths.ACTIVATIONS)}")
    if loss not in _maths.LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(_maths.LOSSES)}")
    if loss == "cross_entropy" and output not in ("softmax", "sigmoid"):
        raise ValueError(f"loss='cross_entropy' needs output='softmax' or 'sigmoid', "
                         f"got output={output!r}")
    return hidden + [output]


def _check_dropout(dropout: Any, n_hidden: int) -> list[float]:
    if n_hidden == 0 and np.ndim(dropout) == 0 and dropout:
        raise ValueError("dropout applies to hidden layers, and this network has none")
    rates = [dropout] * n_hidden if np.ndim(dropout) == 0 else list(dropout)
    if len(rates) != n_hidden:
        raise ValueError(f"dropout lists {len(rates)} rates, but the network has "
                         f"{n_hidden} hidden layers")
    for rate in rates:
        # real numbers only: np.number lets in complex, whose imaginary part float() drops
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real):
            raise TypeError(f"dropout rates must be numbers, got {rate!r}")
        # (typeshed's numbers.Real declares no comparison with float; it works at run time)
        if not 0.0 <= rate < 1.0:  # type: ignore[operator]
            raise ValueError(f"dropout rates must be in [0, 1), got {rate!r}")
    return [float(r) for r in rates]


def _check_max_norm(max_norm: float | None) -> float:
    if max_norm is None:
        return 0.0
    # real numbers only: np.number lets in complex, whose imaginary part float() drops
    if isinstance(max_norm, bool) or not isinstance(max_norm, numbers.Real):
        raise TypeError(f"max_norm must be a number or None, got {max_norm!r}")
    try:
        bound = float(max_norm)
    except OverflowError:   # an int beyond float's range, such as 10**400
        bound = np.inf
    if not np.isfinite(bound) or bound <= 0:
        raise ValueError(f"max_norm must be a finite number > 0, "
                         f"got {_validation._short(max_norm)}")
    return bound


def _assign_all(current: _ParameterList, values: Iterable[ArrayLike], name: str,
                params: NDArray[Any]) -> None:
    values = list(values)
    if len(values) != len(current):
        raise ValueError(f"{name} needs {len(current)} arrays, got {len(values)}")
    # every layer checked before any is copied in: a refused list changes none
    checked = [current.checked(i, v) for i, v in enumerate(values)]
    # A new layer may be a view of one of the network's own (a swap: [w[1], w[0], ...]),
    # which copying the layers in one at a time would overwrite before reading it.
    checked = [_unshared(value, params) for value in checked]
    for target, value in zip(current, checked):
        target[...] = value
