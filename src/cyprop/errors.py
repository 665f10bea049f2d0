"""Exceptions raised by cyprop."""


class TrainingDiverged(ArithmeticError, ValueError):
    """Training diverged: the loss or a weight became NaN or infinite, or the loss grew
    past the divergence limit (see ``Network.fit``).

    A ``ValueError`` too, as scikit-learn reports non-finite weights, and an
    ``ArithmeticError`` as before.

    The network keeps the weights (and optimizer state) it had after the last epoch
    that ended finite; ``epoch`` is the 0-based index of the epoch that diverged.
    """

    def __init__(self, message, epoch=None):
        super().__init__(message)
        self.epoch = epoch
