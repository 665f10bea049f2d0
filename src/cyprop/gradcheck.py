"""Checking backpropagation against central finite differences."""

import numpy as np

from . import _validation


def check_gradients(net, X, Y, epsilon=1e-6):
    """The worst relative error between ``net.gradients(X, Y)`` and central finite
    differences of ``net.loss(X, Y)``, over every weight and bias.

    The check runs in float64 on a copy of the network (so a float32 network is
    checked at float64 precision) and leaves ``net`` untouched.  The relative error
    of one parameter is |analytic - numeric| / max(|analytic| + |numeric|, 1e-8);
    a kink of relu or leaky_relu between w - epsilon and w + epsilon can make it large.
    """
    probe = net.copy()
    if probe.dtype != np.float64:
        probe.dtype = np.dtype(np.float64)
        probe._params = probe._params.astype(np.float64)
    X, Y = _validation.check_XY(X, Y, probe.arch.n_inputs, probe.arch.n_outputs, probe.dtype)
    grad_w, grad_b = probe.gradients(X, Y)
    analytic = np.concatenate([g.ravel() for pair in zip(grad_w, grad_b) for g in pair])
    params = probe._params
    numeric = np.empty_like(params)
    for i in range(params.shape[0]):
        saved = params[i]
        params[i] = saved + epsilon
        up = probe.loss(X, Y)
        params[i] = saved - epsilon
        down = probe.loss(X, Y)
        params[i] = saved
        numeric[i] = (up - down) / (2 * epsilon)
    error = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)
    return float(error.max())
