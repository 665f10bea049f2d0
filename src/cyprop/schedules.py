"""Learning-rate schedules: objects passed to ``fit(..., schedule=...)``.

Before each epoch the training loop sets the optimizer's rate to
``schedule.rate(epoch, initial_rate)`` (epoch counted from 0 in the current history,
``initial_rate`` the optimizer's rate when it was created); after each epoch it calls
``schedule.update(logs)`` with that epoch's records, which stateful schedules use.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from ._validation import check_int, check_number


class Schedule:
    """Base class of the schedules: a subclass defines ``rate``, and may define
    ``update`` (stateful schedules) and ``check``."""

    def rate(self, epoch: int, initial_rate: float) -> float:
        """The learning rate of an epoch.

        Parameters
        ----------
        epoch : int
            The epoch about to run, counted from 0 in the current history.
        initial_rate : float
            The optimizer's rate when it was created.

        Returns
        -------
        float
            The learning rate for the epoch.
        """
        raise NotImplementedError

    def update(self, logs: dict[str, Any]) -> None:
        """Called after every epoch with its records (loss, val_loss, ...).

        Parameters
        ----------
        logs : dict
            The epoch's records, keyed as ``History.KEYS``.
        """

    def check(self, has_validation: bool) -> None:
        """Called by ``fit`` before the first epoch: raise ValueError if this schedule
        cannot work with the fit as called.

        Parameters
        ----------
        has_validation : bool
            Whether the fit has validation data (so records ``val_loss``).

        Raises
        ------
        ValueError
            If this schedule cannot work with the fit as called.
        TypeError
            If a parameter of one of the schedules here, set by hand since it was
            made, is not of its type.
        """
        # The parameters are checked again, as the constructor checks them: set by hand
        # (a gamma of 2, a period of 0), they would make rates that grow, or fail
        # unnamed in the first epoch's division.  (A subclass's constructor may take
        # other arguments: its own check is its own.)
        if type(self) in _SCHEDULES:
            parameters = inspect.signature(type(self)).parameters
            type(self)(**{key: value for key, value in vars(self).items()
                          if key in parameters})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The initial rate, always."""

    def rate(self, epoch: int, initial_rate: float) -> float:
        """The learning rate of an epoch: the initial rate, whatever the epoch.

        Parameters
        ----------
        epoch : int
            The epoch about to run, counted from 0 in the current history.
        initial_rate : float
            The optimizer's rate when it was created.

        Returns
        -------
        float
            ``initial_rate``.
        """
        return initial_rate


class InverseScaling(Schedule):
    """initial_rate / (epoch + 1) ** power (scikit-learn's 'invscaling', counted in epochs).

    Parameters
    ----------
    power : float, default 0.5
        The exponent, > 0.

    Raises
    ------
    TypeError, ValueError
        If ``power`` is not a finite number > 0.
    """

    def __init__(self, power: float = 0.5) -> None:
        self.power = check_number("power", power, 0, exclusive_minimum=True)

    def rate(self, epoch: int, initial_rate: float) -> float:
        """The learning rate of an epoch: initial_rate / (epoch + 1) ** power.

        Parameters
        ----------
        epoch : int
            The epoch about to run, counted from 0 in the current history.
        initial_rate : float
            The optimizer's rate when it was created.

        Returns
        -------
        float
            The learning rate for the epoch.
        """
        try:
            return initial_rate / (epoch + 1) ** self.power
        except OverflowError:   # (epoch + 1) ** power beyond float's range: the rate is 0
            return 0.0


class StepDecay(Schedule):
    """initial_rate * gamma ** (epoch // step_size), as torch's StepLR.

    Parameters
    ----------
    step_size : int, default 10
        Epochs between two decays, >= 1.
    gamma : float, default 0.1
        The factor of each decay, in (0, 1].

    Raises
    ------
    TypeError, ValueError
        If a parameter is not a number (an integer for ``step_size``) in its range.
    """

    def __init__(self, step_size: int = 10, gamma: float = 0.1) -> None:
        self.step_size = check_int("step_size", step_size)
        self.gamma = check_number("gamma", gamma, 0, 1, exclusive_minimum=True)

    def rate(self, epoch: int, initial_rate: float) -> float:
        """The learning rate of an epoch: initial_rate * gamma ** (epoch // step_size).

        Parameters
        ----------
        epoch : int
            The epoch about to run, counted from 0 in the current history.
        initial_rate : float
            The optimizer's rate when it was created.

        Returns
        -------
        float
            The learning rate for the epoch.
        """
        return initial_rate * self.gamma ** (epoch // self.step_size)


class Cosine(Schedule):
    """Cosine annealing from the initial rate to ``min_rate`` over ``period`` epochs
    (torch's CosineAnnealingLR without restarts; ``min_rate`` after the period).

    Parameters
    ----------
    period : int
        Epochs of the annealing, >= 1.
    min_rate : float, default 0.0
        The rate at the end of the period and after it, >= 0.

    Raises
    ------
    TypeError, ValueError
        If a parameter is not a number (an integer for ``period``) in its range.
    """

    def __init__(self, period: int, min_rate: float = 0.0) -> None:
        self.period = check_int("period", period)
        self.min_rate = check_number("min_rate", min_rate, 0)

    def rate(self, epoch: int, initial_rate: float) -> float:
        """The learning rate of an epoch: min_rate + (initial_rate - min_rate) *
        (1 + cos(pi * t)) / 2, with t = min(epoch, period) / period.

        Parameters
        ----------
        epoch : int
            The epoch about to run, counted from 0 in the current history.
        initial_rate : float
            The optimizer's rate when it was created.

        Returns
        -------
        float
            The learning rate for the epoch: ``initial_rate`` at epoch 0,
            ``min_rate`` from epoch ``period`` on.
        """
        t = min(epoch, self.period) / self.period
        rise = 1 + math.cos(math.pi * t)
        rate = self.min_rate + (initial_rate - self.min_rate) * rise / 2
        if math.isinf(rate):   # the product overflowed (rates near 1e308): halved first
            rate = self.min_rate + (initial_rate - self.min_rate) * (rise / 2)
        return rate


class ReduceOnPlateau(Schedule):
    """Divide the rate by 1 / ``factor`` when the monitored loss has not improved by
    more than ``min_delta`` for ``patience`` epochs (torch's ReduceLROnPlateau, 'min'
    mode, absolute threshold).

    Parameters
    ----------
    factor : float, default 0.1
        What the rate is multiplied by on a plateau, in (0, 1).
    patience : int, default 10
        Epochs without improvement tolerated before the rate drops, >= 0.
    min_delta : float, default 1e-4
        The least decrease of the monitored loss that counts as an improvement, >= 0.
    min_rate : float, default 0.0
        The rate never drops below this, >= 0.
    monitor : {"loss", "val_loss"}, default "loss"
        The record watched; "val_loss" needs validation data.

    Raises
    ------
    TypeError, ValueError
        If a parameter is not a number (an integer for ``patience``) in its range, or
        ``monitor`` is neither name.
    """

    def __init__(self, factor: float = 0.1, patience: int = 10, min_delta: float = 1e-4,
                 min_rate: float = 0.0, monitor: str = "loss") -> None:
        self.factor = check_number("factor", factor, 0, 1, exclusive_minimum=True,
                                   exclusive_maximum=True)
        self.patience = check_int("patience", patience, minimum=0)
        self.min_delta = check_number("min_delta", min_delta, 0)
        self.min_rate = check_number("min_rate", min_rate, 0)
        if monitor not in ("loss", "val_loss"):
            raise ValueError(f"monitor must be 'loss' or 'val_loss', got {monitor!r}")
        self.monitor = monitor
        self._scale = 1.0
        self._best = math.inf
        self._waited = 0

    def rate(self, epoch: int, initial_rate: float) -> float:
        """The learning rate of an epoch: the initial rate times ``factor`` once per
        plateau so far, but not below ``min_rate``.

        Parameters
        ----------
        epoch : int
            The epoch about to run, counted from 0 in the current history.
        initial_rate : float
            The optimizer's rate when it was created.

        Returns
        -------
        float
            The learning rate for the epoch.
        """
        return max(initial_rate * self._scale, self.min_rate)

    def check(self, has_validation: bool) -> None:
        """Called by ``fit`` before the first epoch: monitoring ``val_loss`` needs
        validation data.

        Parameters
        ----------
        has_validation : bool
            Whether the fit has validation data (so records ``val_loss``).

        Raises
        ------
        ValueError
            If ``monitor`` is ``"val_loss"`` and the fit has no validation data, or a
            parameter set by hand since the schedule was made is not in its range.
        TypeError
            If such a parameter is not of its type.
        """
        super().check(has_validation)
        if self.monitor == "val_loss" and not has_validation:
            raise ValueError("ReduceOnPlateau(monitor='val_loss') needs validation data: "
                             "give fit validation_data= or validation_split=")

    def update(self, logs: dict[str, Any]) -> None:
        """Called after every epoch with its records: count the epochs without
        improvement, and drop the rate when there are more than ``patience`` of them.

        An epoch improves when its monitored loss is below the best so far by more than
        ``min_delta``, which sets the count back to 0.  After more than ``patience``
        epochs in a row without improvement, the rate is multiplied by ``factor`` and
        the count starts again.

        Parameters
        ----------
        logs : dict
            The epoch's records, keyed as ``History.KEYS``.

        Raises
        ------
        ValueError
            If ``logs`` has no record of the monitored loss.
        """
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(f"ReduceOnPlateau monitors {self.monitor!r}, which this fit "
                             "does not record (give validation data for 'val_loss')")
        if value < self._best - self.min_delta:
            self._best, self._waited = value, 0
        else:
            self._waited += 1
            if self._waited > self.patience:
                self._scale *= self.factor
                self._waited = 0


#: The schedules defined here, whose parameters ``Schedule.check`` checks again.
_SCHEDULES = (Constant, InverseScaling, StepDecay, Cosine, ReduceOnPlateau)
