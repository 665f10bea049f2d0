"""Learning-rate schedules: objects passed to ``fit(..., schedule=...)``.

Before each epoch the training loop sets the optimizer's rate to
``schedule.rate(epoch, initial_rate)`` (epoch counted from 0 in the current history,
``initial_rate`` the optimizer's rate when it was created); after each epoch it calls
``schedule.update(logs)`` with that epoch's records, which stateful schedules use.
"""

import math


class Schedule:
    def rate(self, epoch, initial_rate):
        raise NotImplementedError

    def update(self, logs):
        """Called after every epoch with its records (loss, val_loss, ...)."""

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
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power!r}")
        self.power = float(power)

    def rate(self, epoch, initial_rate):
        return initial_rate / (epoch + 1) ** self.power


class StepDecay(Schedule):
    """initial_rate * gamma ** (epoch // step_size), as torch's StepLR."""

    def __init__(self, step_size=10, gamma=0.1):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def rate(self, epoch, initial_rate):
        return initial_rate * self.gamma ** (epoch // self.step_size)


class Cosine(Schedule):
    """Cosine annealing from the initial rate to ``min_rate`` over ``period`` epochs
    (torch's CosineAnnealingLR without restarts; ``min_rate`` after the period)."""

    def __init__(self, period, min_rate=0.0):
        if int(period) < 1:
            raise ValueError(f"period must be >= 1, got {period!r}")
        if min_rate < 0:
            raise ValueError(f"min_rate must be >= 0, got {min_rate!r}")
        self.period, self.min_rate = int(period), float(min_rate)

    def rate(self, epoch, initial_rate):
        t = min(epoch, self.period) / self.period
        return self.min_rate + (initial_rate - self.min_rate) * (1 + math.cos(math.pi * t)) / 2


class ReduceOnPlateau(Schedule):
    """Divide the rate by 1 / ``factor`` when the monitored loss has not improved by
    more than ``min_delta`` for ``patience`` epochs (torch's ReduceLROnPlateau, 'min'
    mode, absolute threshold).  ``monitor`` is "loss" or "val_loss"."""

    def __init__(self, factor=0.1, patience=10, min_delta=1e-4, min_rate=0.0, monitor="loss"):
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor!r}")
        if int(patience) < 0:
            raise ValueError(f"patience must be >= 0, got {patience!r}")
        if monitor not in ("loss", "val_loss"):
            raise ValueError(f"monitor must be 'loss' or 'val_loss', got {monitor!r}")
        self.factor, self.patience = float(factor), int(patience)
        self.min_delta, self.min_rate, self.monitor = float(min_delta), float(min_rate), monitor
        self._scale = 1.0
        self._best = math.inf
        self._waited = 0

    def rate(self, epoch, initial_rate):
        return max(initial_rate * self._scale, self.min_rate)

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
