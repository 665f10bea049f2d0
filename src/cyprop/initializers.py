"""Initial weights and biases.  Each function draws one layer's (W, b) in float64 from a
NumPy Generator, so that the same seed gives the same network on every backend and
dtype (the network casts once)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

_Layer = tuple[NDArray[np.float64], NDArray[np.float64]]


def normal(rng: np.random.Generator, n_in: int, n_out: int) -> _Layer:
    """N(0, 1/n_in) weights and N(0, 1) biases, as in the classic MNIST tutorials.

    Parameters
    ----------
    rng : numpy.random.Generator
        The generator to draw from.
    n_in, n_out : int
        Units feeding the layer, and units in it.

    Returns
    -------
    W : ndarray of float64, shape (n_out, n_in)
    b : ndarray of float64, shape (n_out,)
    """
    return rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_out, n_in)), rng.normal(0.0, 1.0, n_out)


def uniform(rng: np.random.Generator, n_in: int, n_out: int) -> _Layer:
    """U(-0.5, 0.5) weights and biases.

    Parameters
    ----------
    rng : numpy.random.Generator
        The generator to draw from.
    n_in, n_out : int
        Units feeding the layer, and units in it.

    Returns
    -------
    W : ndarray of float64, shape (n_out, n_in)
    b : ndarray of float64, shape (n_out,)
    """
    return rng.uniform(-0.5, 0.5, (n_out, n_in)), rng.uniform(-0.5, 0.5, n_out)


def xavier(rng: np.random.Generator, n_in: int, n_out: int) -> _Layer:
    """Glorot uniform: U(-r, r) with r = sqrt(6 / (n_in + n_out)); zero biases
    (``torch.nn.init.xavier_uniform_``, Keras' ``glorot_uniform``).

    Parameters
    ----------
    rng : numpy.random.Generator
        The generator to draw from.
    n_in, n_out : int
        Units feeding the layer, and units in it.

    Returns
    -------
    W : ndarray of float64, shape (n_out, n_in)
    b : ndarray of float64, shape (n_out,)
    """
    r = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-r, r, (n_out, n_in)), np.zeros(n_out)


def he(rng: np.random.Generator, n_in: int, n_out: int) -> _Layer:
    """He normal: N(0, 2/n_in); zero biases (``torch.nn.init.kaiming_normal_``).

    Parameters
    ----------
    rng : numpy.random.Generator
        The generator to draw from.
    n_in, n_out : int
        Units feeding the layer, and units in it.

    Returns
    -------
    W : ndarray of float64, shape (n_out, n_in)
    b : ndarray of float64, shape (n_out,)
    """
    return rng.normal(0.0, np.sqrt(2.0 / n_in), (n_out, n_in)), np.zeros(n_out)


#: The initializers by the name ``Network(init=...)`` takes.
INITIALIZERS: dict[str, Callable[[np.random.Generator, int, int], _Layer]] = {
    "normal": normal, "uniform": uniform, "xavier": xavier, "he": he}
