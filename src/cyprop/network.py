"""The ``Network``: a multilayer perceptron and its training loop policy.

The network owns its parameters in one flat array (see ``_architecture.py``);
``weights`` and ``biases`` are views into it, so writing into them changes the
model.  All the per-sample and per-batch work happens in the backend; this module
validates input, orders the samples of each epoch, and keeps the records.
"""

import sys
import threading
import time

import numpy as np

from . import _backend, _maths, _validation
from ._architecture import Architecture
from .errors import TrainingDiverged
from .history import History
from .initializers import INITIALIZERS
from .optimizers import SGD, Optimizer


class _ParameterList(list):
    """The list behind ``net.weights`` / ``net.biases``: assigning an item copies the
    new values into the network's own array (shape checked) instead of rebinding."""

    def __setitem__(self, index, value):
        if isinstance(index, slice):
            raise TypeError("assign the layers one at a time, or the whole list")
        target = list.__getitem__(self, index)
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(f"layer {index} has shape {target.shape}, got {value.shape}")
        if not np.isfinite(value).all():
            raise ValueError(f"layer {index}: values contain NaN or infinity")
        target[...] = value


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
    """

    def __init__(self, sizes, activation="sigmoid", output=None, loss="cross_entropy",
                 init="normal", dtype="float64", seed=None, backend="auto"):
        sizes = _check_sizes(sizes)
        if output is None:
            output = "softmax" if sizes[-1] > 1 else "sigmoid"
        activations = _check_activations(activation, output, loss, len(sizes) - 1)
        if init not in INITIALIZERS:
            raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITIALIZERS)}")
        self.arch = Architecture(sizes, activations, loss)
        self.dtype = _validation.check_dtype(dtype)
        self.init = init
        self.seed = seed
        self._requested_backend = backend
        self.backend, self._impl = _backend.resolve(backend)
        self._rng = np.random.default_rng(seed)
        self._params = np.empty(self.arch.n_params, dtype=self.dtype)
        for s_w, s_b, n_in, n_out in zip(self.arch.w_slices, self.arch.b_slices,
                                         sizes[:-1], sizes[1:]):
            W, b = INITIALIZERS[init](self._rng, n_in, n_out)
            self._params[s_w] = W.ravel()
            self._params[s_b] = b
        self.optimizer = None
        self.history = History()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ model
    @property
    def sizes(self):
        return list(self.arch.sizes)

    @property
    def activations(self):
        """Activation of each weight layer, the output's last."""
        return list(self.arch.activations)

    @property
    def loss_name(self):
        return self.arch.loss

    @property
    def n_params(self):
        return self.arch.n_params

    @property
    def weights(self):
        """Weight matrices, ``weights[l].shape == (sizes[l+1], sizes[l])``; views."""
        return _ParameterList(self.arch.split(self._params)[0])

    @weights.setter
    def weights(self, values):
        _assign_all(self.weights, values, "weights")

    @property
    def biases(self):
        """Bias vectors, ``biases[l].shape == (sizes[l+1],)``; views."""
        return _ParameterList(self.arch.split(self._params)[1])

    @biases.setter
    def biases(self, values):
        _assign_all(self.biases, values, "biases")

    # -------------------------------------------------------------- inference
    def forward(self, X):
        """Output activations: (n, n_in) -> (n, n_out); one sample (n_in,) -> (n_out,)."""
        X, single = _validation.check_X(X, self.arch.n_inputs, self.dtype, allow_single=True)
        out = self._impl.forward(self.arch, self._params, X)
        return out[0] if single else out

    def predict(self, X):
        """Class labels: the argmax of the outputs (a 0.5 threshold for one output)."""
        out = np.atleast_2d(self.forward(X))
        if out.shape[1] == 1:
            labels = (out[:, 0] > 0.5).astype(np.int64)
        else:
            labels = out.argmax(axis=1)
        return labels[0] if np.ndim(X) == 1 else labels

    def loss(self, X, Y):
        """Mean over the samples of the per-sample loss (no regularisation term)."""
        X, Y = self._check_data(X, Y)
        loss, _, _ = self._impl.loss_and_gradients(self.arch, self._params, X, Y, False)
        return loss / X.shape[0]

    def gradients(self, X, Y):
        """(grad_weights, grad_biases): gradients of ``loss(X, Y)``, shaped like the parameters."""
        X, Y = self._check_data(X, Y)
        _, _, grad = self._impl.loss_and_gradients(self.arch, self._params, X, Y, True)
        grad /= X.shape[0]
        return self.arch.split(grad)

    def evaluate(self, X, Y):
        """{"loss": mean loss, "accuracy": fraction classified right}."""
        X, Y = self._check_data(X, Y)
        loss, correct, _ = self._impl.loss_and_gradients(self.arch, self._params, X, Y, False)
        return {"loss": loss / X.shape[0], "accuracy": correct / X.shape[0]}

    # --------------------------------------------------------------- training
    def fit(self, X, Y, epochs=30, batch_size=10, optimizer=None, shuffle=True, seed=None,
            verbose=0):
        """Train by mini-batch backpropagation; returns the ``History`` of this call.

        Each epoch visits the samples in a fresh permutation (``shuffle=True``, drawn
        from ``seed``, else from the network's own generator) or in the given order, in
        consecutive batches of ``batch_size`` (the last may be shorter); each batch's
        gradient is the mean of its samples' gradients and gives one optimizer step.
        ``batch_size=1`` is online SGD.  The optimizer (default ``SGD(0.1)``) stays
        with the network, state included, for later calls.
        """
        epochs = _validation.check_int("epochs", epochs)
        batch_size = _validation.check_int("batch_size", batch_size)
        X, Y = self._check_data(X, Y)
        if optimizer is not None:
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"optimizer must be a cyprop optimizer such as cyprop.SGD(...), "
                                f"got {type(optimizer).__name__}")
            self.optimizer = optimizer
        elif self.optimizer is None:
            self.optimizer = SGD()
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        if not self._lock.acquire(blocking=False):
            raise RuntimeError("this network is already training in another thread; "
                               "train a copy, or wait for that fit to finish")
        try:
            self.history = History()
            self._train(X, Y, epochs, batch_size, shuffle, rng, verbose)
        finally:
            self._lock.release()
        return self.history

    def _train(self, X, Y, epochs, batch_size, shuffle, rng, verbose):
        n = X.shape[0]
        history = self.history
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            kept = self._params.copy(), self._optimizer_snapshot()
            start = time.perf_counter()
            loss_sum, correct = self._impl.train_epoch(
                self.arch, self._params, X, Y, order.astype(np.intp, copy=False),
                batch_size, self.optimizer)
            seconds = time.perf_counter() - start
            if not (np.isfinite(loss_sum) and np.isfinite(self._params).all()):
                self._params[...] = kept[0]
                self._optimizer_restore(kept[1])
                history.stop_reason = "diverged"
                raise TrainingDiverged(
                    f"training diverged in epoch {epoch + 1}: the loss or a weight became "
                    "NaN or infinite; the weights of the last finite epoch were kept (try a "
                    "smaller learning rate)", epoch=epoch)
            history.record(loss=loss_sum / n, accuracy=correct / n,
                           learning_rate=self.optimizer.learning_rate, seconds=seconds,
                           samples_per_second=n / seconds if seconds > 0 else float("inf"))
            if verbose:
                print(f"epoch {epoch + 1}/{epochs}  loss {loss_sum / n:.4f}  "
                      f"accuracy {correct / n:.2%}  {seconds:.3f}s  "
                      f"{history.samples_per_second[-1]:,.0f} samples/s", flush=True,
                      file=sys.stdout)
        history.stop_reason = "epochs"

    def _optimizer_snapshot(self):
        opt = self.optimizer
        return opt.steps, None if opt.state is None else opt.state.copy()

    def _optimizer_restore(self, snapshot):
        self.optimizer.steps, self.optimizer.state = snapshot

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """Write the network (architecture, weights, optimizer state, history) to one
        ``.npz`` file at exactly ``path`` (no suffix is added), atomically; read it back
        with ``cyprop.load(path)``.  See ``cyprop.persistence``."""
        from . import persistence  # here, not at the top: persistence imports Network

        persistence.save(self, path)

    # ---------------------------------------------------------------- helpers
    def _check_data(self, X, Y):
        return _validation.check_XY(X, Y, self.arch.n_inputs, self.arch.n_outputs, self.dtype)

    def copy(self):
        """An independent copy: same parameters, optimizer state and backend."""
        import copy
        return copy.deepcopy(self)

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"], state["_impl"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.backend, self._impl = _backend.resolve(self._requested_backend)
        self._lock = threading.Lock()

    def __repr__(self):
        return (f"Network(sizes={self.sizes}, activations={self.activations}, "
                f"loss={self.arch.loss!r}, dtype={self.dtype.name!r}, backend={self.backend!r})")


def _check_sizes(sizes):
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
    return [int(s) for s in sizes]


def _check_activations(activation, output, loss, n_layers):
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


def _assign_all(current, values, name):
    values = list(values)
    if len(values) != len(current):
        raise ValueError(f"{name} needs {len(current)} arrays, got {len(values)}")
    for i, v in enumerate(values):
        current[i] = v
