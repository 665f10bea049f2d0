"""Optimizers: the update formulas of ``torch.optim``, weight decay on weights only.

Each optimizer holds its hyper-parameters and its state (for example the momentum
buffer), laid out like the network's flat parameter vector.  ``update_params`` is
the NumPy reference of one step; the compiled core implements the same step as a rule
(csrc/_rules.pxi) chosen by the optimizer's ``code``, and reads the hyper-parameters
by name from ``hyper()``.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ._validation import check_bool, check_int, check_number

if TYPE_CHECKING:
    from ._architecture import Architecture

#: The most steps an optimizer may be set to (or loaded with): far more than any run
#: takes, and far enough below a C long's 2**63 that training on from it cannot overflow.
#: Training counts up to it and stays there (the steps no longer change with the count).
MAX_STEPS = 2 ** 62 - 1


@dataclasses.dataclass(frozen=True)
class Hyper:
    """Every optimizer's hyper-parameters by name, as the compiled core reads them: the
    Python twin of the C struct ``Hyper`` in csrc/_rules.pxi, field for field (the test
    suite checks that the core reads back what it is given).  An optimizer's own
    dataclass (``SGDHyper``, ``AdamHyper``, ...: ``Optimizer.hyper()``) sets the fields
    it uses (``OptimizerHyper.core()``); the others stay 0.

    Parameters
    ----------
    learning_rate : float, default 0.0
        The step size (every optimizer; Rprop's initial step size).
    momentum : float, default 0.0
        The momentum factor (SGD, RMSprop).
    nesterov : bool, default False
        Nesterov momentum (SGD).
    weight_decay : float, default 0.0
        L2 penalty on the weights (never the biases), added to the gradient (SGD, Adam,
        RMSprop, Adagrad).
    beta1, beta2 : float, default 0.0
        Decay rates of the first and second moment estimates (Adam).
    eps : float, default 0.0
        Added to the denominator (Adam, RMSprop, Adagrad).
    alpha : float, default 0.0
        Decay rate of the mean square (RMSprop).
    eta_minus, eta_plus : float, default 0.0
        Step size factors on a sign flip and while the sign stays (Rprop).
    step_min, step_max : float, default 0.0
        Bounds on the step sizes (Rprop).
    """

    learning_rate: float = 0.0
    momentum: float = 0.0        # SGD, RMSprop
    nesterov: bool = False       # SGD
    weight_decay: float = 0.0    # L2 on weights (never biases), added to the gradient
    beta1: float = 0.0           # Adam
    beta2: float = 0.0
    eps: float = 0.0             # Adam, RMSprop, Adagrad
    alpha: float = 0.0           # RMSprop
    eta_minus: float = 0.0       # Rprop: step size factors on a sign flip ...
    eta_plus: float = 0.0        # ... and while the sign stays
    step_min: float = 0.0        # Rprop: bounds on the step sizes
    step_max: float = 0.0


class OptimizerHyper:
    """Base of the optimizers' own hyper-parameter dataclasses (``SGDHyper``,
    ``AdamHyper``, ...): each holds exactly the hyper-parameters its optimizer's
    compiled rules read (csrc/_rules.pxi: HYPER_FIELDS), by name."""

    def core(self) -> Hyper:
        """The compiled core's view of them.

        Returns
        -------
        Hyper
            These fields set, every other optimizer's 0.
        """
        return Hyper(**vars(self))


@dataclasses.dataclass(frozen=True)
class SGDHyper(OptimizerHyper):
    """SGD's hyper-parameters, as ``SGD`` takes them.

    Parameters
    ----------
    learning_rate, momentum : float
    nesterov : bool
    weight_decay : float
    """

    learning_rate: float
    momentum: float
    nesterov: bool
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class AdamHyper(OptimizerHyper):
    """Adam's hyper-parameters, as ``Adam`` takes them.

    Parameters
    ----------
    learning_rate, beta1, beta2, eps, weight_decay : float
    """

    learning_rate: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class RMSpropHyper(OptimizerHyper):
    """RMSprop's hyper-parameters, as ``RMSprop`` takes them.

    Parameters
    ----------
    learning_rate, alpha, eps, momentum, weight_decay : float
    """

    learning_rate: float
    alpha: float
    eps: float
    momentum: float
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class AdagradHyper(OptimizerHyper):
    """Adagrad's hyper-parameters, as ``Adagrad`` takes them.

    Parameters
    ----------
    learning_rate, eps, weight_decay : float
    """

    learning_rate: float
    eps: float
    weight_decay: float


@dataclasses.dataclass(frozen=True)
class RpropHyper(OptimizerHyper):
    """Rprop's hyper-parameters, as ``Rprop`` takes them: ``etas`` and ``step_sizes``
    by name.

    Parameters
    ----------
    learning_rate, eta_minus, eta_plus, step_min, step_max : float
    """

    learning_rate: float
    eta_minus: float
    eta_plus: float
    step_min: float
    step_max: float


class Optimizer:
    """Base class: state bookkeeping shared by every optimizer.

    ``state`` and ``steps`` may be set by hand (to carry state over, say); both are
    checked when set, and the state again against the network before each training
    call: a state of another network's size or dtype is replaced by a fresh one (the
    step count restarting at 0), and one of the wrong shape for this optimizer is a
    ``ValueError``.  Hyper-parameters changed by hand are checked again before training.

    Parameters
    ----------
    learning_rate : float
        The step size, > 0; also kept as ``initial_learning_rate``, which schedules scale.

    Raises
    ------
    TypeError, ValueError
        If ``learning_rate`` is not a finite number > 0.
    """

    #: Index of this optimizer in the compiled core's OPTIMIZERS (csrc/_rules.pxi): its rules.
    code: int | None = None
    #: Rows of state, each shaped like the parameter vector (the class's: the compiled
    #: core reads it there, and so does everything here, whatever an instance says).
    n_slots: int = 1
    #: Rows of state that hold (running) sums of squares: never negative after a step.
    square_slots: tuple[int, ...] = ()

    def __init__(self, learning_rate: float) -> None:
        self.learning_rate = check_number("learning_rate", learning_rate, 0,
                                          exclusive_minimum=True)
        self.initial_learning_rate = self.learning_rate   # what schedules scale
        self.steps = 0        # optimizer steps taken so far
        self.state = None     # (n_slots, n_params), created on the first step
        # Held while a network trains with this optimizer (cyprop._loop.claim_optimizer):
        # a second network training with it at once would step or reset its state.
        self._claim = threading.Lock()

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far (bias corrections and first-step rules use it)."""
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = check_int("steps", value, minimum=0, maximum=MAX_STEPS)

    @property
    def state(self) -> NDArray[Any] | None:
        """The optimizer's buffers, (n_slots, n_params), or None before the first step."""
        return self._state

    @state.setter
    def state(self, value: NDArray[Any] | None) -> None:
        if value is not None:
            if not isinstance(value, np.ndarray):
                raise TypeError(f"{type(self).__name__}.state must be a NumPy array or None, "
                                f"got {type(value).__name__}")
            if value.ndim != 2 or value.shape[0] != type(self).n_slots:
                raise ValueError(f"{type(self).__name__}.state must have shape "
                                 f"({type(self).n_slots}, n_params), got {value.shape}")
            if value.dtype not in (np.float32, np.float64):
                raise ValueError(f"{type(self).__name__}.state must be float32 or float64, "
                                 f"got {value.dtype}")
            if value.base is not None:
                # a view of an array the caller keeps (their buffer, the network's own
                # parameters): the steps write the state in place, so into a copy
                value = np.array(value, order="C")
        self._state = value

    def state_for(self, params: NDArray[Any]) -> NDArray[Any]:
        """The state array for ``params``, created (zeroed) when first needed or when
        the optimizer moves to a network of another size or dtype; a state the kernels
        could not use in place (read-only, misaligned) is copied first, as the
        ``state`` setter copies a view.

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters.

        Returns
        -------
        ndarray, shape (n_slots, n_params)
            The state, of ``params``' dtype, C-contiguous and writeable (also ``state``).
        """
        state = self._state
        n_slots = type(self).n_slots
        if (state is None or state.shape != (n_slots, params.shape[0])
                or state.dtype != params.dtype):
            state = self._state = np.zeros((n_slots, params.shape[0]), dtype=params.dtype)
            self.steps = 0
        elif not (state.flags.c_contiguous and state.flags.writeable and state.flags.aligned
                  and state.dtype.isnative):
            state = self._state = np.array(state, dtype=params.dtype, order="C")
        # the array checked, not self._state read again: another thread may have set
        # that meanwhile (another network's state), which the kernels would write past
        return state

    def check(self) -> None:
        """Check the hyper-parameters again (they may have been set by hand since the
        optimizer was made).

        Raises
        ------
        TypeError, ValueError
            Naming the hyper-parameter that is wrong.
        """
        # The current rate may be 0 (a finished Cosine schedule); the constructor, which
        # wants a rate > 0, gets the initial one.
        rate = check_number("learning_rate", self.learning_rate, 0)
        # the step count too, where it was written past its setter (``_steps``): steps
        # count on from it, and the compiled core reads it as a C integer
        self.steps = self._steps
        initial = check_number("initial_learning_rate", self.initial_learning_rate, 0,
                               exclusive_minimum=True)
        # Kept as the floats checked, as the constructor keeps them: a Fraction, say,
        # made the NumPy reference's steps arrays of objects (the compiled core reads
        # floats).  (Set only when not a float already: the one-sample path sees a
        # hyper-parameter set again as a new setting.)
        if type(self.learning_rate) is not float:
            self.learning_rate = rate
        if type(self.initial_learning_rate) is not float:
            self.initial_learning_rate = initial
        if type(self).get_config is Optimizer.get_config:
            return
        config = {**self.get_config(), "learning_rate": initial}
        # once per change, not per call; told apart by repr, which == is not: True ==
        # 1.0, so a momentum set to True after 1.0 was checked went through
        if repr(config) != getattr(self, "_checked_config", None):
            checked = type(self)(**config)
            for name in config.keys() & vars(checked).keys() - {"learning_rate"}:
                setattr(self, name, getattr(checked, name))
            self._checked_config = repr({**self.get_config(), "learning_rate": initial})

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_claim", None)   # a lock: not picklable, and a copy is free to train
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"cannot unpickle a {type(self).__name__} from a "
                            f"{type(state).__name__}; its state is a dict")
        state = dict(state)
        # pickles from before steps and state were checked properties
        for name in ("steps", "state"):
            if "_" + name in state:
                state[name] = state.pop("_" + name)
        steps, opt_state = state.pop("steps", 0), state.pop("state", None)
        self.__dict__.update(state)
        # through the setters: checked as if set by hand (the hyper-parameters are
        # checked before training, as always)
        self.steps = steps
        self.state = opt_state
        self._claim = threading.Lock()

    def reset(self) -> None:
        """Forget the state: the next step is a first step again."""
        self.state = None
        self.steps = 0

    def hyper(self) -> OptimizerHyper:
        """The hyper-parameters by name, as the compiled rules read them.

        Returns
        -------
        OptimizerHyper
            The optimizer's own dataclass (``SGDHyper``, ``AdamHyper``, ...); its
            ``core()`` is the compiled core's ``Hyper``.
        """
        raise NotImplementedError

    def update_params(self, params: NDArray[Any], grad: NDArray[Any], arch: Architecture) -> None:
        """Apply one step in place, given the batch-mean gradient (NumPy reference).

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters, updated in place.
        grad : ndarray, shape (n_params,)
            The batch-mean gradient, in the same layout and dtype.
        arch : Architecture
            The network's layout (which parameters are weights, for weight decay).
        """
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        """The keyword arguments that make this optimizer again.

        Returns
        -------
        dict
            ``type(opt)(**opt.get_config())`` is an optimizer like this one (with the
            *current* learning rate, without its state).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0).

    Each step, with ``w`` the parameters::

        g = grad + weight_decay * w            (weights only, never biases)
        buf = g on the first step, else momentum * buf + g
        g = g + momentum * buf if nesterov else buf      (when momentum > 0)
        w = w - learning_rate * g

    Parameters
    ----------
    learning_rate : float, default 0.1
        The step size, > 0.
    momentum : float, default 0.0
        The momentum factor, >= 0; 0 for plain SGD.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum`` > 0).
    weight_decay : float, default 0.0
        L2 penalty on the weights (never the biases), >= 0.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a number (a bool for ``nesterov``) in its range,
        or ``nesterov`` is asked for without momentum.
    """

    code = 0

    def __init__(self, learning_rate: float = 0.1, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.momentum = check_number("momentum", momentum, 0)
        self.weight_decay = check_number("weight_decay", weight_decay, 0)
        self.nesterov = check_bool("nesterov", nesterov)
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov=True needs a momentum > 0")

    def hyper(self) -> SGDHyper:
        """The hyper-parameters by name, as the compiled rules read them.

        Returns
        -------
        SGDHyper
        """
        return SGDHyper(learning_rate=self.learning_rate, momentum=self.momentum,
                        nesterov=self.nesterov, weight_decay=self.weight_decay)

    def update_params(self, params: NDArray[Any], grad: NDArray[Any], arch: Architecture) -> None:
        """Apply one SGD step in place, as the class describes (NumPy reference).

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters, updated in place.
        grad : ndarray, shape (n_params,)
            The batch-mean gradient, in the same layout and dtype.
        arch : Architecture
            The network's layout (which parameters are weights, for weight decay).
        """
        buf = self.state_for(params)[0]
        grad = _with_weight_decay(grad, params, self.weight_decay, arch)
        if self.momentum:
            if self.steps == 0:
                buf[...] = grad
            else:
                buf *= self.momentum
                buf += grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        params -= self.learning_rate * grad
        self._steps += 1

    def get_config(self) -> dict[str, Any]:
        """The keyword arguments that make this optimizer again.

        Returns
        -------
        dict
            Keys ``learning_rate``, ``momentum``, ``nesterov`` and ``weight_decay``.
            ``type(opt)(**opt.get_config())`` is an optimizer like this one (with the
            *current* learning rate, without its state).
        """
        return {"learning_rate": self.learning_rate, "momentum": self.momentum,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (weight decay as L2 on the gradient, not AdamW).

    Each step ``t`` (from 1), with ``w`` the parameters::

        g = grad + weight_decay * w                      (weights only)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        w = w - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    learning_rate : float, default 1e-3
        The step size, > 0.
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float, default 1e-8
        Added to the denominator, > 0 (at least the dtype's smallest normal number,
        2.2e-308 or 1.2e-38, whatever is given: see ``normal_eps``).
    weight_decay : float, default 0.0
        L2 penalty on the weights (never the biases), >= 0.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a finite number in its range.
    """

    code = 1
    n_slots = 2
    square_slots = (1,)

    def __init__(self, learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.beta1 = check_number("beta1", beta1, 0, 1, exclusive_maximum=True)
        self.beta2 = check_number("beta2", beta2, 0, 1, exclusive_maximum=True)
        self.eps = check_number("eps", eps, 0, exclusive_minimum=True)
        self.weight_decay = check_number("weight_decay", weight_decay, 0)

    def hyper(self) -> AdamHyper:
        """The hyper-parameters by name, as the compiled rules read them.

        Returns
        -------
        AdamHyper
        """
        return AdamHyper(learning_rate=self.learning_rate, beta1=self.beta1,
                         beta2=self.beta2, eps=self.eps, weight_decay=self.weight_decay)

    def update_params(self, params: NDArray[Any], grad: NDArray[Any], arch: Architecture) -> None:
        """Apply one Adam step in place, as the class describes (NumPy reference).

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters, updated in place.
        grad : ndarray, shape (n_params,)
            The batch-mean gradient, in the same layout and dtype.
        arch : Architecture
            The network's layout (which parameters are weights, for weight decay).
        """
        m, v = self.state_for(params)
        grad = _with_weight_decay(grad, params, self.weight_decay, arch)
        t = self.steps + 1
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad * grad
        step_size = self.learning_rate / (1 - self.beta1 ** t)
        eps = normal_eps(self.eps, params.dtype)
        denom = np.sqrt(v) / np.sqrt(1 - self.beta2 ** t) + eps
        params -= step_size * m / denom
        self._steps += 1

    def get_config(self) -> dict[str, Any]:
        """The keyword arguments that make this optimizer again.

        Returns
        -------
        dict
            Keys ``learning_rate``, ``beta1``, ``beta2``, ``eps`` and ``weight_decay``.
            ``type(opt)(**opt.get_config())`` is an optimizer like this one (with the
            *current* learning rate, without its state).
        """
        return {"learning_rate": self.learning_rate, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps, "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSprop, as ``torch.optim.RMSprop`` (not centered).

    Each step, with ``w`` the parameters::

        g = grad + weight_decay * w                      (weights only)
        v = alpha * v + (1 - alpha) * g * g
        buf = momentum * buf + g / (sqrt(v) + eps);  w = w - lr * buf   (momentum > 0)
        w = w - lr * g / (sqrt(v) + eps)                                (momentum = 0)

    Parameters
    ----------
    learning_rate : float, default 1e-2
        The step size, > 0.
    alpha : float, default 0.99
        Decay rate of the mean square, in [0, 1].
    eps : float, default 1e-8
        Added to the denominator, > 0 (at least the dtype's smallest normal number,
        2.2e-308 or 1.2e-38, whatever is given: see ``normal_eps``).
    momentum : float, default 0.0
        The momentum factor, >= 0.
    weight_decay : float, default 0.0
        L2 penalty on the weights (never the biases), >= 0.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a finite number in its range.
    """

    code = 2
    n_slots = 2
    square_slots = (0,)

    def __init__(self, learning_rate: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.alpha = check_number("alpha", alpha, 0, 1)
        self.eps = check_number("eps", eps, 0, exclusive_minimum=True)
        self.momentum = check_number("momentum", momentum, 0)
        self.weight_decay = check_number("weight_decay", weight_decay, 0)

    def hyper(self) -> RMSpropHyper:
        """The hyper-parameters by name, as the compiled rules read them.

        Returns
        -------
        RMSpropHyper
        """
        return RMSpropHyper(learning_rate=self.learning_rate, alpha=self.alpha,
                            eps=self.eps, momentum=self.momentum,
                            weight_decay=self.weight_decay)

    def update_params(self, params: NDArray[Any], grad: NDArray[Any], arch: Architecture) -> None:
        """Apply one RMSprop step in place, as the class describes (NumPy reference).

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters, updated in place.
        grad : ndarray, shape (n_params,)
            The batch-mean gradient, in the same layout and dtype.
        arch : Architecture
            The network's layout (which parameters are weights, for weight decay).
        """
        v, buf = self.state_for(params)
        grad = _with_weight_decay(grad, params, self.weight_decay, arch)
        v *= self.alpha
        v += (1 - self.alpha) * grad * grad
        step = grad / (np.sqrt(v) + normal_eps(self.eps, params.dtype))
        if self.momentum:
            buf *= self.momentum
            buf += step
            step = buf
        params -= self.learning_rate * step
        self._steps += 1

    def get_config(self) -> dict[str, Any]:
        """The keyword arguments that make this optimizer again.

        Returns
        -------
        dict
            Keys ``learning_rate``, ``alpha``, ``eps``, ``momentum`` and
            ``weight_decay``.  ``type(opt)(**opt.get_config())`` is an optimizer like
            this one (with the *current* learning rate, without its state).
        """
        return {"learning_rate": self.learning_rate, "alpha": self.alpha, "eps": self.eps,
                "momentum": self.momentum, "weight_decay": self.weight_decay}


class Adagrad(Optimizer):
    """Adagrad, as ``torch.optim.Adagrad`` (no learning-rate decay).

    Each step, with ``w`` the parameters::

        g = grad + weight_decay * w                      (weights only)
        s = s + g * g
        w = w - lr * g / (sqrt(s) + eps)

    Parameters
    ----------
    learning_rate : float, default 1e-2
        The step size, > 0.
    eps : float, default 1e-10
        Added to the denominator, > 0 (at least the dtype's smallest normal number,
        2.2e-308 or 1.2e-38, whatever is given: see ``normal_eps``).
    weight_decay : float, default 0.0
        L2 penalty on the weights (never the biases), >= 0.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a finite number in its range.
    """

    code = 3
    n_slots = 1
    square_slots = (0,)

    def __init__(self, learning_rate: float = 1e-2, eps: float = 1e-10,
                 weight_decay: float = 0.0) -> None:
        super().__init__(learning_rate)
        self.eps = check_number("eps", eps, 0, exclusive_minimum=True)
        self.weight_decay = check_number("weight_decay", weight_decay, 0)

    def hyper(self) -> AdagradHyper:
        """The hyper-parameters by name, as the compiled rules read them.

        Returns
        -------
        AdagradHyper
        """
        return AdagradHyper(learning_rate=self.learning_rate, eps=self.eps,
                            weight_decay=self.weight_decay)

    def update_params(self, params: NDArray[Any], grad: NDArray[Any], arch: Architecture) -> None:
        """Apply one Adagrad step in place, as the class describes (NumPy reference).

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters, updated in place.
        grad : ndarray, shape (n_params,)
            The batch-mean gradient, in the same layout and dtype.
        arch : Architecture
            The network's layout (which parameters are weights, for weight decay).
        """
        (total,) = self.state_for(params)
        grad = _with_weight_decay(grad, params, self.weight_decay, arch)
        total += grad * grad
        eps = normal_eps(self.eps, params.dtype)
        params -= self.learning_rate * grad / (np.sqrt(total) + eps)
        self._steps += 1

    def get_config(self) -> dict[str, Any]:
        """The keyword arguments that make this optimizer again.

        Returns
        -------
        dict
            Keys ``learning_rate``, ``eps`` and ``weight_decay``.
            ``type(opt)(**opt.get_config())`` is an optimizer like this one (with the
            *current* learning rate, without its state).
        """
        return {"learning_rate": self.learning_rate, "eps": self.eps,
                "weight_decay": self.weight_decay}


class Rprop(Optimizer):
    """Resilient backpropagation, iRPROP- (as FANN and ``torch.optim.Rprop``).

    Each parameter has its own step size, starting at ``learning_rate``: it grows by
    ``etas[1]`` while the gradient keeps its sign and shrinks by ``etas[0]`` when the
    sign flips, within ``step_sizes``; on a flip that parameter does not move and its
    remembered gradient is set to 0.  Only the signs of gradients are used, so Rprop is
    meant for full batches (``batch_size`` >= the number of samples).

    Parameters
    ----------
    learning_rate : float, default 0.01
        The initial step size of every parameter, > 0.
    etas : pair of float, default (0.5, 1.2)
        (shrink, grow) factors: 0 < etas[0] < 1 < etas[1].
    step_sizes : pair of float, default (1e-6, 50)
        (min, max) bounds on the step sizes: 0 <= min <= max.

    Raises
    ------
    TypeError, ValueError
        If a hyper-parameter is not a number (a pair of them) in its range.
    """

    code = 4
    n_slots = 2

    def __init__(self, learning_rate: float = 0.01, etas: Sequence[float] = (0.5, 1.2),
                 step_sizes: Sequence[float] = (1e-6, 50)) -> None:
        super().__init__(learning_rate)
        eta_minus, eta_plus = _pair("etas", etas)
        if not 0 < eta_minus < 1 < eta_plus:
            raise ValueError(f"etas must satisfy 0 < etas[0] < 1 < etas[1], got {etas!r}")
        step_min, step_max = _pair("step_sizes", step_sizes)
        if not 0 <= step_min <= step_max:
            raise ValueError(f"step_sizes must satisfy 0 <= min <= max, got {step_sizes!r}")
        self.etas = (eta_minus, eta_plus)
        self.step_sizes = (step_min, step_max)

    def hyper(self) -> RpropHyper:
        """The hyper-parameters by name, as the compiled rules read them: ``etas`` and
        ``step_sizes`` as ``eta_minus``, ``eta_plus``, ``step_min``, ``step_max``.

        Returns
        -------
        RpropHyper
        """
        return RpropHyper(learning_rate=self.learning_rate, eta_minus=self.etas[0],
                          eta_plus=self.etas[1], step_min=self.step_sizes[0],
                          step_max=self.step_sizes[1])

    def update_params(self, params: NDArray[Any], grad: NDArray[Any], arch: Architecture) -> None:
        """Apply one Rprop step in place, as the class describes (NumPy reference).

        Parameters
        ----------
        params : ndarray, shape (n_params,)
            The network's flat parameters, updated in place.
        grad : ndarray, shape (n_params,)
            The batch-mean gradient, in the same layout and dtype.
        arch : Architecture
            The network's layout (unused: Rprop has no weight decay).
        """
        prev, step_size = self.state_for(params)
        if self.steps == 0:
            step_size[...] = self.learning_rate
        product = grad * prev
        factor = np.where(product > 0, self.etas[1], np.where(product < 0, self.etas[0], 1))
        np.clip(step_size * factor.astype(params.dtype), *self.step_sizes, out=step_size)
        grad = np.where(product < 0, 0, grad).astype(params.dtype)
        params -= step_size * np.sign(grad)
        prev[...] = grad
        self._steps += 1

    def get_config(self) -> dict[str, Any]:
        """The keyword arguments that make this optimizer again.

        Returns
        -------
        dict
            Keys ``learning_rate``, ``etas`` and ``step_sizes`` (as lists).
            ``type(opt)(**opt.get_config())`` is an optimizer like this one (with the
            *current* learning rate, without its state).
        """
        return {"learning_rate": self.learning_rate, "etas": list(self.etas),
                "step_sizes": list(self.step_sizes)}


#: Optimizer classes by name, for persistence and the command line.
OPTIMIZERS: dict[str, type[SGD | Adam | RMSprop | Adagrad | Rprop]] = {
    cls.__name__: cls for cls in (SGD, Adam, RMSprop, Adagrad, Rprop)}


def _with_weight_decay(grad: NDArray[Any], params: NDArray[Any], weight_decay: float,
                       arch: Architecture) -> NDArray[Any]:
    """grad + weight_decay * w on the weights (never the biases)."""
    if not weight_decay:
        return grad
    return grad + weight_decay * params * arch.decay_mask(params.dtype)


def normal_eps(eps: float, dtype: np.dtype[Any]) -> float:
    """The eps an adaptive optimizer's step uses: ``eps``, raised to the dtype's smallest
    normal number.

    A smaller eps rounds to 0 in float32 (or is read as 0 where the compiled core flushes
    subnormals), and a parameter that never had a gradient would step by 0 / 0.  Where
    v > 0, sqrt(v) is at least the root of the smallest subnormal (1.5e-162, 3.7e-23 in
    float32), far above the floor, so it changes nothing else.  The compiled core's
    normal_eps (csrc/_rules.pxi) is the same.

    Parameters
    ----------
    eps : float
        The optimizer's eps (for Adam, as it meets sqrt(v)).
    dtype : numpy.dtype
        The parameters' dtype.

    Returns
    -------
    float
        ``max(eps, numpy.finfo(dtype).tiny)``.
    """
    return max(eps, float(np.finfo(dtype).tiny))


def _pair(name: str, values: Any) -> tuple[float, float]:
    """Two finite numbers, as floats."""
    try:
        first, second = values
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of numbers, got {values!r}") from None
    return check_number(f"{name}[0]", first), check_number(f"{name}[1]", second)
