"""Initial weights and biases.  Each function draws one layer's (W, b) in float64 from a
NumPy Generator, so that the same seed gives the same network on every backend and
dtype (the network casts once)."""

import numpy as np


def normal(rng, n_in, n_out):
    """N(0, 1/n_in) weights and N(0, 1) biases, as in the classic MNIST tutorials."""
    return rng.normal(0.0, 1.0 / np.sqrt(n_in), (n_out, n_in)), rng.normal(0.0, 1.0, n_out)


def uniform(rng, n_in, n_out):
    """U(-0.5, 0.5) weights and biases."""
    return rng.uniform(-0.5, 0.5, (n_out, n_in)), rng.uniform(-0.5, 0.5, n_out)


def xavier(rng, n_in, n_out):
    """Glorot uniform: U(-r, r) with r = sqrt(6 / (n_in + n_out)); zero biases
    (torch.nn.init.xavier_uniform_, Keras' glorot_uniform)."""
    r = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-r, r, (n_out, n_in)), np.zeros(n_out)


def he(rng, n_in, n_out):
    """He normal: N(0, 2/n_in); zero biases (torch.nn.init.kaiming_normal_)."""
    return rng.normal(0.0, np.sqrt(2.0 / n_in), (n_out, n_in)), np.zeros(n_out)


INITIALIZERS = {"normal": normal, "uniform": uniform, "xavier": xavier, "he": he}
