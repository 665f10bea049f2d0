"""Exceptions raised by cyprop."""

from __future__ import annotations


class TrainingDiverged(ArithmeticError, ValueError):
    """Training diverged: the loss or a weight became NaN or infinite, or the loss grew
    past the divergence limit (see ``Network.fit``).

    A ``ValueError`` too, as scikit-learn reports non-finite weights, and an
    ``ArithmeticError`` as before.

    The network keeps the weights (and optimizer state) it had after the last epoch
    that ended finite.

    Parameters
    ----------
    message : str
        What diverged, and where.
    epoch : int or None, optional
        The 0-based index of the epoch that diverged.

    Attributes
    ----------
    epoch : int or None
        The 0-based index of the epoch that diverged.
    """

    epoch: int | None

    def __init__(self, message: str, epoch: int | None = None) -> None:
        super().__init__(message)
        self.epoch = epoch


class InvalidState(ValueError):
    """A ``NetworkState`` that does not describe a network cyprop can build (raised by
    ``Network.from_state``; ``cyprop.load`` reports the same problems in a file).

    Parameters
    ----------
    problem : str
        What is wrong, e.g. ``"the weights contain NaN or infinity"``.

    Attributes
    ----------
    problem : str
        What is wrong, without the ``"invalid network state: "`` prefix.
    """

    problem: str

    def __init__(self, problem: str) -> None:
        super().__init__(f"invalid network state: {problem}")
        self.problem = problem
