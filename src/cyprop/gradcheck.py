"""Checking backpropagation against finite differences."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from . import _validation

if TYPE_CHECKING:
    from .network import Network


def check_gradients(net: Network, X: ArrayLike, Y: ArrayLike, epsilon: float = 1e-4) -> float:
    """The worst relative error between ``net.gradients(X, Y)`` and finite differences
    of ``net.loss(X, Y)``, over every weight and bias.

    The numeric derivative is the fourth-order central difference
    ``(-L(w+2h) + 8 L(w+h) - 8 L(w-h) + L(w-2h)) / 12h`` with
    ``h = epsilon * max(1, |w|)``: its truncation error is O(h^4), so the rounding of
    the loss (about 1e-16 relative) dominates, at about 1e-12 absolute.  The relative
    error of one parameter is ``|analytic - numeric| / max(|analytic| + |numeric|,
    floor)``, where the floor, 1e-5 times the largest gradient component (at least
    1e-5), keeps components that are tiny next to the others from turning that
    rounding noise into large ratios.

    The check runs in float64 on a copy of the network (a float32 network is checked
    at float64 precision) and leaves ``net`` untouched.  A kink of relu or leaky_relu
    within 2h of a unit's pre-activation can make the error large; that is the finite
    difference failing, not the gradient.

    Parameters
    ----------
    net : Network
        The network to check; left untouched.
    X : array_like, shape (n_samples, n_inputs)
        Inputs.
    Y : array_like
        Targets, (n_samples, n_outputs), or class labels (n_samples,) as ``fit`` takes them.
    epsilon : float, default 1e-4
        The relative step h of the finite differences (see above), > 0.

    Returns
    -------
    float
        The largest relative error over every weight and bias.

    Raises
    ------
    TypeError
        If ``net`` is not a ``Network``, or ``epsilon`` is not a number.
    ValueError
        If ``X`` or ``Y`` does not fit the network (shape, non-finite values, labels),
        or ``epsilon`` is not a finite number > 0, or is so large that a step leaves
        float64's range (or overflows the loss) or so small that it is lost to rounding.
    """
    from .network import Network

    if not isinstance(net, Network):
        raise TypeError(f"check_gradients takes a cyprop.Network, got {type(net).__name__}")
    epsilon = _validation.check_number("epsilon", epsilon, 0, exclusive_minimum=True)
    probe = net.copy()
    if probe.dtype != np.float64:
        probe._as_float64()
    X, Y = _validation.check_XY(X, Y, probe.arch.n_inputs, probe.arch.n_outputs, probe.dtype)
    grad_w, grad_b = probe.gradients(X, Y)
    analytic = np.concatenate([g.ravel() for pair in zip(grad_w, grad_b) for g in pair])
    params = probe._params
    numeric = np.empty_like(params)
    for i in range(params.shape[0]):
        saved = params[i]
        h = epsilon * max(1.0, abs(float(saved)))
        # A step lost to rounding (w + h == w) gives a derivative of 0, and one beyond
        # float64's range a loss of inf: the first reported a gradient error of 1, the
        # second blamed the network's weights.
        if not math.isfinite(abs(float(saved)) + 2 * h):
            raise ValueError(f"epsilon={epsilon:g} is too large: the step {h:g} takes "
                             f"parameter {i} ({float(saved):g}) beyond float64's range")
        if saved + h == saved:
            raise ValueError(f"epsilon={epsilon:g} is too small: the step {h:g} is lost to "
                             f"rounding next to parameter {i} ({float(saved):g}); try 1e-4")
        losses = []
        try:
            for step in (2, 1, -1, -2):
                params[i] = saved + step * h
                losses.append(probe.loss(X, Y))
        except FloatingPointError as exc:
            # the loss at the unmoved weights was finite (gradients above): the step
            # overflowed it, which "the inputs or weights are too large" would misplace
            raise ValueError(f"epsilon={epsilon:g} is too large: the step {h:g} on parameter "
                             f"{i} ({float(saved):g}) overflows the loss; try 1e-4") from exc
        finally:
            params[i] = saved
        numeric[i] = (-losses[0] + 8 * losses[1] - 8 * losses[2] + losses[3]) / (12 * h)
    floor = 1e-5 * max(1.0, float(np.abs(analytic).max()))
    error = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), floor)
    return float(error.max())
