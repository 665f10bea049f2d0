"""Optimizers: the update formulas of ``torch.optim``, weight decay on weights only.

Each optimizer holds its hyper-parameters and its state (for example the momentum
buffer), laid out like the network's flat parameter vector.  ``update_params`` is
the NumPy reference of one step; the compiled core implements the same step under
the optimizer's ``code`` and reads the hyper-parameters from ``hyper()``.
"""

import numpy as np


class Optimizer:
    """Base class: state bookkeeping shared by every optimizer."""

    #: Index of this optimizer in the compiled core's table.
    code = None
    #: Rows of state, each shaped like the parameter vector.
    n_slots = 1

    def __init__(self, learning_rate):
        _check_positive("learning_rate", learning_rate)
        self.learning_rate = float(learning_rate)
        self.steps = 0        # optimizer steps taken so far
        self.state = None     # (n_slots, n_params), created on the first step

    def state_for(self, params):
        """The state array for ``params``, created (zeroed) when first needed or when
        the optimizer moves to a network of another size or dtype."""
        if (self.state is None or self.state.shape[1] != params.shape[0]
                or self.state.dtype != params.dtype):
            self.state = np.zeros((self.n_slots, params.shape[0]), dtype=params.dtype)
            self.steps = 0
        return self.state

    def reset(self):
        """Forget the state: the next step is a first step again."""
        self.state = None
        self.steps = 0

    def hyper(self):
        """Hyper-parameters as the compiled core reads them."""
        raise NotImplementedError

    def update_params(self, params, grad, arch):
        """Apply one step in place, given the batch-mean gradient (NumPy reference)."""
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0)::

        g = grad + weight_decay * w            (weights only, never biases)
        buf = g on the first step, else momentum * buf + g
        g = g + momentum * buf if nesterov else buf      (when momentum > 0)
        w = w - learning_rate * g
    """

    code = 0

    def __init__(self, learning_rate=0.1, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate)
        _check_non_negative("momentum", momentum)
        _check_non_negative("weight_decay", weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.weight_decay = float(weight_decay)

    def hyper(self):
        return np.array([self.learning_rate, self.momentum, float(self.nesterov),
                         self.weight_decay], dtype=np.float64)

    def update_params(self, params, grad, arch):
        buf = self.state_for(params)[0]
        if self.weight_decay:
            grad = grad + self.weight_decay * params * arch.decay_mask(params.dtype)
        if self.momentum:
            if self.steps == 0:
                buf[...] = grad
            else:
                buf *= self.momentum
                buf += grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        params -= self.learning_rate * grad
        self.steps += 1

    def get_config(self):
        return {"learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}


def _check_positive(name, value):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def _check_non_negative(name, value):
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


#: Optimizer classes by name, for persistence and the command line.
OPTIMIZERS = {cls.__name__: cls for cls in (SGD,)}
