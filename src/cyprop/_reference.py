"""The NumPy reference backend: the algorithm written for clarity.

It is the fallback when the compiled extension is missing and the oracle that the
compiled core is tested against, so it stays plain: a mini-batch is processed with
matrix products (one row per sample), in the order the maths is usually written.

Every function takes the network's ``Architecture`` and its flat parameter vector
(see ``_architecture.py``) and has the same signature as its twin in ``_compiled.py``.
"""

from __future__ import annotations

# signal's own functions, without signal.signal's conversions to and from enums,
# which cost more than a small fit's step
import _signal  # type: ignore[import-not-found]
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, overload

import numpy as np
from numpy.typing import NDArray

from . import _maths
from ._training import Dropout, TrainingOptions
from .optimizers import MAX_STEPS

if TYPE_CHECKING:
    from ._architecture import Architecture
    from .optimizers import Optimizer


def feedforward(arch: Architecture, params: NDArray[Any], X: NDArray[Any],
                dropout: Dropout | None = None,
                first: int = 0) -> tuple[list[NDArray[Any]], NDArray[Any]]:
    """Activations of every layer for the rows of X (input first), and the output
    layer's pre-activations z.  With ``dropout`` (training only), hidden units are
    dropped by the masks of samples ``first, first + 1, ...`` of the order."""
    weights, biases = arch.split(params)
    activations = [X]
    a = X
    for l, (W, b, act) in enumerate(zip(weights, biases, arch.activations)):
        z = a @ W.T + b
        a = _maths.ACTIVATE[act](z)
        if dropout is not None and l < arch.n_layers - 1 and dropout.rates[l] > 0:
            # inverted dropout: kept units are scaled by 1 / keep
            keep = a.dtype.type(1 - dropout.rates[l])
            a = np.where(dropout.mask(arch, l, first, a.shape[0]), a / keep, 0).astype(a.dtype)
        activations.append(a)
    return activations, z


@overload
def forward(arch: Architecture, params: NDArray[Any], X: NDArray[Any],
            every_layer: Literal[False] = ...) -> NDArray[Any]: ...
@overload
def forward(arch: Architecture, params: NDArray[Any], X: NDArray[Any],
            every_layer: bool = ...) -> NDArray[Any] | list[NDArray[Any]]: ...
def forward(arch: Architecture, params: NDArray[Any], X: NDArray[Any],
            every_layer: bool = False) -> NDArray[Any] | list[NDArray[Any]]:
    """Output activations, one row per row of X (every layer's, with ``every_layer``)."""
    activations = feedforward(arch, params, X)[0]
    return activations[1:] if every_layer else activations[-1]


def few_rows(arch: Architecture, params: NDArray[Any]) -> None:
    """The compiled backend's fast forward/predict of a few rows: none here (the
    general path is this module's forward)."""
    return None


def backprop(arch: Architecture, params: NDArray[Any], activations: list[NDArray[Any]],
             delta: NDArray[Any], dropout: Dropout | None = None, first: int = 0) -> NDArray[Any]:
    """Gradient sums over the batch, given the output deltas dLoss/dz (one row per sample)."""
    weights, _ = arch.split(params)
    grad = np.empty_like(params)
    grad_w, grad_b = arch.split(grad)
    for l in range(arch.n_layers - 1, -1, -1):
        grad_w[l][...] = delta.T @ activations[l]
        grad_b[l][...] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ weights[l]) * _hidden_derivative(arch, l - 1, activations[l],
                                                              dropout, first)
    return grad


def _hidden_derivative(arch: Architecture, l: int, a: NDArray[Any], dropout: Dropout | None,
                       first: int) -> NDArray[Any]:
    """f'(z) of weight layer l's units from their stored activations, times the dropout
    factor (mask / keep) when dropout is on."""
    derivative = _maths.DERIVATIVE[arch.activations[l]]
    if dropout is None or dropout.rates[l] == 0:
        return derivative(a)
    keep = a.dtype.type(1 - dropout.rates[l])
    factor = derivative(a * keep) / keep
    return np.where(dropout.mask(arch, l, first, a.shape[0]), factor, 0).astype(a.dtype)


@overload
def loss_and_gradients(arch: Architecture, params: NDArray[Any], X: NDArray[Any], Y: NDArray[Any],
                       want_grad: Literal[True] = ..., sample_weight: NDArray[Any] | None = ...,
                       dropout: Dropout | None = ...,
                       first: int = ...) -> tuple[float, int, NDArray[Any]]: ...
@overload
def loss_and_gradients(arch: Architecture, params: NDArray[Any], X: NDArray[Any], Y: NDArray[Any],
                       want_grad: bool = ..., sample_weight: NDArray[Any] | None = ...,
                       dropout: Dropout | None = ...,
                       first: int = ...) -> tuple[float, int, NDArray[Any] | None]: ...
def loss_and_gradients(arch: Architecture, params: NDArray[Any], X: NDArray[Any], Y: NDArray[Any],
                       want_grad: bool = True, sample_weight: NDArray[Any] | None = None,
                       dropout: Dropout | None = None,
                       first: int = 0) -> tuple[float, int, NDArray[Any] | None]:
    """(sum of the sample losses, number classified right, gradient sum or None).

    A sample weight scales its sample's loss, and so its gradient."""
    activations, z = feedforward(arch, params, X, dropout, first)
    a = activations[-1]
    losses = _maths.sample_losses(arch.loss, arch.output, a, z, Y)
    if sample_weight is not None:
        losses = losses * sample_weight
    loss = float(np.sum(losses))
    correct = _maths.count_correct(a, Y)
    if not want_grad:
        return loss, correct, None
    delta = _maths.output_delta(arch.loss, arch.output, a, Y)
    if sample_weight is not None:
        delta = delta * sample_weight[:, None]
    return loss, correct, backprop(arch, params, activations, delta, dropout, first)


def train_epoch(arch: Architecture, params: NDArray[Any], X: NDArray[Any], Y: NDArray[Any],
                order: NDArray[np.intp], batch_size: int, optimizer: Optimizer,
                options: TrainingOptions = TrainingOptions()) -> tuple[float, int]:
    """Consecutive batches of ``order`` (an epoch, or whole batches of one), one
    optimizer step per batch.

    Returns (sum of the sample losses, number classified right), each sample's loss
    taken with the weights it was trained with.
    """
    total, correct = 0.0, 0
    weights = options.sample_weight
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        loss, right, grad_sum = loss_and_gradients(
            arch, params, X[batch], Y[batch], True,
            None if weights is None else weights[batch], options.dropout, start)
        total += loss
        correct += right
        # A step is several NumPy statements: Ctrl-C must not land between them and
        # leave half of it applied (the compiled core's step is one C call).
        with _interrupts_deferred():
            optimizer.update_params(params, grad_sum / len(batch), arch)
            if options.max_norm:
                apply_max_norm(arch, params, options.max_norm)
    # saturated at MAX_STEPS, which save, copy and load accept (from there on the count
    # changes no step: Adam's bias corrections are exactly 1)
    optimizer._steps = min(optimizer._steps, MAX_STEPS)
    return total, correct


class _interrupts_deferred:
    """``with _interrupts_deferred():`` holds SIGINT (Ctrl-C) back until the block is
    done, then delivers it.  (A class, not a generator: a small fit enters a few.)"""

    __slots__ = ("previous", "received")

    def __enter__(self) -> None:
        self.previous: Any = None
        if (threading.current_thread() is not threading.main_thread()
                or _signal.getsignal(signal.SIGINT) is None):
            # signals are only handled by the main thread; a handler installed from C
            # (None here) could not be put back
            return
        received: list[FrameType | None] = []
        self.received = received
        self.previous = _signal.signal(signal.SIGINT,
                                       lambda signum, frame: received.append(frame))

    def __exit__(self, *exc_info: object) -> None:
        previous = self.previous
        if previous is None:
            return
        _signal.signal(signal.SIGINT, previous)
        if self.received:
            if callable(previous):
                previous(signal.SIGINT, self.received[0])
            elif previous == signal.SIG_DFL:
                signal.default_int_handler(signal.SIGINT, self.received[0])


def apply_max_norm(arch: Architecture, params: NDArray[Any], max_norm: float) -> None:
    """Scale down each unit's incoming weights (a row of W) whose L2 norm exceeds max_norm."""
    for W in arch.split(params)[0]:
        norms = np.sqrt(np.sum(W.astype(np.float64) ** 2, axis=1))
        too_long = norms > max_norm
        W[too_long] = (W[too_long] * (max_norm / norms[too_long])[:, None]).astype(W.dtype)
