"""Learning-rate schedules: objects passed to ``fit(..., schedule=...)``.

Before each epoch the training loop sets the optimizer's rate to
``schedule.rate(epoch, initial_rate)`` (epoch counted from 0 in the current history,
``initial_rate`` the optimizer's rate when it was created); after each epoch it calls
``schedule.update(logs)`` with that epoch's records, which stateful schedules use.
"""

import math

from ._validation import check_int, check_number


class Schedule:
    def rate(self, epoch, initial_rate):
        raise NotImplementedError

    def update(self, logs):
        """Called after every epoch with its records (loss, val_loss, ...)."""

    def check(self, has_validation):
        """Called by ``fit`` before the first epoch: raise ValueError if this schedule
        cannot work with the fit as called."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """The initial rate, always."""

    def rate(self, epoch, initial_rate):
        return initial_rate


class InverseScaling(Schedule):
    """initial_rate / (epoch + 1) ** power (scikit-learn's 'invscaling', counted in epochs)."""

    def __init__(self, power=0.5):
        self.power = check_number("power", power, 0, exclusive_minimum=True)

    def rate(self, epoch, initial_rate):
        return initial_rate / (epoch + 1) ** self.power


class StepDecay(Schedule):
    """initial_rate * gamma ** (epoch // step_size), as torch's StepLR."""

    def __init__(self, step_size=10, gamma=0.1):
        self.step_size = check_int("step_size", step_size)
        self.gamma = check_number("gamma", gamma, 0, 1, exclusive_minimum=True)

    def rate(self, epoch, initial_rate):
        return initial_rate * self.gamma ** (epoch // self.step_size)


class Cosine(Schedule):
    """Cosine annealing from the initial rate to ``min_rate`` over ``period`` epochs
    (torch's CosineAnnealingLR without restarts; ``min_rate`` after the period)."""

    def __init__(self, period, min_rate=0.0):
        self.period = check_int("period", period)
        self.min_rate = check_number("min_rate", min_rate, 0)

    def rate(self, epoch, initial_rate):
        t = min(epoch, self.period) / self.period
        return self.min_rate + (initial_rate - self.min_rate) * (1 + math.cos(math.pi * t)) / 2


class ReduceOnPlateau(Schedule):
    """Divide the rate by 1 / ``factor`` when the monitored loss has not improved by
    more than ``min_delta`` for ``patience`` epochs (torch's ReduceLROnPlateau, 'min'
    mode, absolute threshold).  ``monitor`` is "loss" or "val_loss"."""

    def __init__(self, factor=0.1, patience=10, min_delta=1e-4, min_rate=0.0, monitor="loss"):
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

    def rate(self, epoch, initial_rate):
        return max(initial_rate * self._scale, self.min_rate)

    def check(self, has_validation):
        if self.monitor == "val_loss" and not has_validation:
            raise ValueError("ReduceOnPlateau(monitor='val_loss') needs validation data: "
                             "give fit validation_data= or validation_split=")

    def update(self, logs):
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
