"""Exceptions raised by cyprop."""


class TrainingDiverged(ArithmeticError):
    """The training loss or a weight became NaN or infinite.

    The network keeps the weights (and optimizer state) it had after the last epoch
    that ended finite; ``epoch`` is the 0-based index of the epoch that diverged.
    """

    def __init__(self, message, epoch=None):
        super().__init__(message)
        self.epoch = epoch
