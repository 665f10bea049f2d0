"""The compiled backend: the same functions as ``_reference.py``, run by the Cython core.

Inputs arrive validated and converted (``_validation.py``); this module only
allocates the buffers that the kernels fill and unpacks what they return.
"""

import numpy as np

from . import _core


def forward(arch, params, X):
    out = np.empty((X.shape[0], arch.n_outputs), dtype=params.dtype)
    if X.shape[0]:
        _core.forward(arch.sizes_array, arch.activation_codes, params, X, out)
    return out


def loss_and_gradients(arch, params, X, Y, want_grad=True):
    grad = np.empty(arch.n_params if want_grad else 0, dtype=params.dtype)
    loss, correct = _core.loss_and_gradients(arch.sizes_array, arch.activation_codes,
                                             arch.loss_code, params, X, Y, grad)
    return loss, correct, grad if want_grad else None


def train_epoch(arch, params, X, Y, order, batch_size, optimizer):
    state = optimizer.state_for(params)
    grad = np.empty_like(params)
    loss, correct, optimizer.steps = _core.train_epoch(
        arch.sizes_array, arch.activation_codes, arch.loss_code, params, X, Y,
        order, batch_size, optimizer.code, optimizer.hyper(), state, optimizer.steps, grad)
    return loss, correct
