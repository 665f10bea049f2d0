"""The NumPy reference backend: the algorithm written for clarity.

It is the fallback when the compiled extension is missing and the oracle that the
compiled core is tested against, so it stays plain: a mini-batch is processed with
matrix products (one row per sample), in the order the maths is usually written.

Every function takes the network's ``Architecture`` and its flat parameter vector
(see ``_architecture.py``) and has the same signature as its twin in ``_compiled.py``.
"""

import numpy as np

from . import _maths


def feedforward(arch, params, X):
    """Activations of every layer for the rows of X (input first), and the output
    layer's pre-activations z."""
    weights, biases = arch.split(params)
    activations = [X]
    a = X
    for W, b, act in zip(weights, biases, arch.activations):
        z = a @ W.T + b
        a = _maths.ACTIVATE[act](z)
        activations.append(a)
    return activations, z


def forward(arch, params, X):
    """Output activations, one row per row of X."""
    return feedforward(arch, params, X)[0][-1]


def backprop(arch, params, activations, delta):
    """Gradient sums over the batch, given the output deltas dLoss/dz (one row per sample)."""
    weights, _ = arch.split(params)
    grad = np.empty_like(params)
    grad_w, grad_b = arch.split(grad)
    for l in range(arch.n_layers - 1, -1, -1):
        grad_w[l][...] = delta.T @ activations[l]
        grad_b[l][...] = delta.sum(axis=0)
        if l > 0:
            delta = (delta @ weights[l]) * _maths.DERIVATIVE[arch.activations[l - 1]](activations[l])
    return grad


def loss_and_gradients(arch, params, X, Y, want_grad=True):
    """(sum of the sample losses, number classified right, gradient sum or None)."""
    activations, z = feedforward(arch, params, X)
    a = activations[-1]
    loss = float(np.sum(_maths.sample_losses(arch.loss, arch.output, a, z, Y)))
    correct = _maths.count_correct(a, Y)
    if not want_grad:
        return loss, correct, None
    delta = _maths.output_delta(arch.loss, arch.output, a, Y)
    return loss, correct, backprop(arch, params, activations, delta)


def train_epoch(arch, params, X, Y, order, batch_size, optimizer):
    """One epoch: consecutive batches of ``order``, one optimizer step per batch.

    Returns (sum of the sample losses, number classified right), each sample's loss
    taken with the weights it was trained with.
    """
    total, correct = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        loss, right, grad_sum = loss_and_gradients(arch, params, X[batch], Y[batch])
        total += loss
        correct += right
        optimizer.update_params(params, grad_sum / len(batch), arch)
    return total, correct
