"""Activations, their derivatives and the losses, in NumPy.

The compiled core (csrc/_core.pyx) implements the same functions under the same
integer codes; the order of ``ACTIVATIONS`` and ``LOSSES`` *is* the code.
Derivatives are written in terms of the activation a = f(z), which every function
here allows, so backpropagation needs only the activations it stored going forward.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softmax")
HIDDEN_ACTIVATIONS = ACTIVATIONS[:-1]
LOSSES = ("mse", "cross_entropy")
LEAKY_SLOPE = 0.01


def identity(z: NDArray[Any]) -> NDArray[Any]:
    return z


def sigmoid(z: NDArray[Any]) -> NDArray[Any]:
    # exp(-z) overflows to inf for very negative z, and 1 / inf = 0 is the right answer.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-z))


def relu(z: NDArray[Any]) -> NDArray[Any]:
    # NaN stays NaN, as in the compiled core (not z > 0: a NaN weight would vanish)
    return np.where(z <= 0, 0, z).astype(z.dtype, copy=False)


def leaky_relu(z: NDArray[Any]) -> NDArray[Any]:
    return np.where(z > 0, z, z.dtype.type(LEAKY_SLOPE) * z)


def softmax(z: NDArray[Any]) -> NDArray[Any]:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATE: dict[str, Callable[[NDArray[Any]], NDArray[Any]]] = {
    "identity": identity,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "softmax": softmax,
}

# f'(z) as a function of a = f(z).  relu'(0) = 0; leaky_relu'(0) = slope, as in PyTorch.
DERIVATIVE: dict[str, Callable[[NDArray[Any]], NDArray[Any]]] = {
    "identity": lambda a: np.ones_like(a),
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a * a,
    "relu": lambda a: (a > 0).astype(a.dtype),
    "leaky_relu": lambda a: np.where(a > 0, 1, LEAKY_SLOPE).astype(a.dtype),
}


def softplus(z: NDArray[Any]) -> NDArray[Any]:
    """log(1 + exp(z)) without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def log_softmax(z: NDArray[Any]) -> NDArray[Any]:
    """log softmax(z), row by row, as (z_k - max z) - log-sum-exp(z - max z): z_k - (max z
    + lse) would lose lse (log k for k equal logits) to rounding once the logits are
    large."""
    zmax = z.max(axis=1, keepdims=True)
    return (z - zmax) - np.log(np.sum(np.exp(z - zmax), axis=1, keepdims=True))


def sample_losses(loss: str, output: str, a: NDArray[Any], z: NDArray[Any],
                  y: NDArray[Any]) -> NDArray[Any]:
    """The loss of each sample (one per row), from the output activations a and, where
    that is stabler, from the output pre-activations z."""
    if loss == "mse":
        return 0.5 * np.sum((a - y) ** 2, axis=1)
    if output == "softmax":
        # -sum_k y_k log softmax(z)_k: every term >= 0
        return np.sum(y * -log_softmax(z), axis=1)
    # sigmoid: -[y log a + (1 - y) log(1 - a)] = softplus(z) - y z, with the large terms
    # max(z, 0) - y z cancelled first, for the same reason
    return np.sum((np.maximum(z, 0) - y * z) + np.log1p(np.exp(-np.abs(z))), axis=1)


def output_delta(loss: str, output: str, a: NDArray[Any], y: NDArray[Any]) -> NDArray[Any]:
    """dLoss/dz at the output layer, one row per sample."""
    if loss == "cross_entropy":
        if output == "softmax":
            return a * y.sum(axis=1, keepdims=True) - y
        return a - y  # sigmoid output
    residual = a - y
    if output == "softmax":
        # through the softmax Jacobian diag(a) - a a^T
        return a * (residual - np.sum(residual * a, axis=1, keepdims=True))
    return residual * DERIVATIVE[output](a)


def labels_of(out: NDArray[Any]) -> Any:
    """Class labels from output activations: the argmax for several outputs, a threshold
    of 0.5 for a single one; one label for one sample (a 1-D ``out``)."""
    single = out.ndim == 1
    out = np.atleast_2d(out)
    labels = ((out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1
              else out.argmax(axis=1))
    return labels[0] if single else labels


def count_correct(a: NDArray[Any], y: NDArray[Any]) -> int:
    """How many samples the outputs classify right: argmax for several outputs,
    a threshold of 0.5 for a single one."""
    if a.shape[1] == 1:
        return int(np.count_nonzero((a[:, 0] > 0.5) == (y[:, 0] > 0.5)))
    return int(np.count_nonzero(a.argmax(axis=1) == y.argmax(axis=1)))
