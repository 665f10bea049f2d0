"""What training records, epoch by epoch."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class History:
    """Per-epoch training records of one or more ``fit`` calls.

    Attributes are lists with one entry per epoch: ``loss`` (mean training loss, each
    sample's loss taken as it was trained on), ``accuracy`` (fraction classified right
    in the same pass), ``val_loss`` and ``val_accuracy`` (None without validation
    data), ``learning_rate``, ``seconds``, ``samples_per_second`` and
    ``largest_update`` (the largest change of any weight or bias in the epoch).
    ``stop_reason`` says why training stopped: "epochs", "target_loss",
    "target_error", "min_update", "early_stopping", "callback", "diverged" or
    "interrupted".
    """

    loss: list[float | None]
    accuracy: list[float | None]
    val_loss: list[float | None]
    val_accuracy: list[float | None]
    learning_rate: list[float | None]
    seconds: list[float | None]
    samples_per_second: list[float | None]
    largest_update: list[float | None]
    stop_reason: str | None

    #: The names of the records, each an attribute holding a list.
    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
            "samples_per_second", "largest_update")

    def __init__(self) -> None:
        for key in self.KEYS:
            setattr(self, key, [])
        self.stop_reason = None

    def __setattr__(self, name: str, value: object) -> None:
        # Training appends to the records after its step: a record set by hand to
        # anything but a list would fail there, the step taken but not recorded.
        if name in History.KEYS and not isinstance(value, list):
            raise TypeError(f"History.{name} must be a list, one entry per epoch (a "
                            f"float or None), got {type(value).__name__}")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in History.KEYS:
            raise AttributeError(f"History.{name} is a record training appends to; it "
                                 "cannot be deleted (set it to [] to empty it)")
        super().__delattr__(name)

    def record(self, loss: float | None = None, accuracy: float | None = None,
               val_loss: float | None = None, val_accuracy: float | None = None,
               learning_rate: float | None = None, seconds: float | None = None,
               samples_per_second: float | None = None,
               largest_update: float | None = None, **others: object) -> None:
        """Append one epoch's records; a record not given is recorded as None.

        Parameters
        ----------
        loss, accuracy, val_loss, val_accuracy, learning_rate, seconds, samples_per_second, largest_update : float or None
            The epoch's records (see the class's attributes).
        **others : object
            Ignored: names that are not records.
        """
        # (one append per record, written out: a stream of one-sample partial_fit
        # calls records an epoch each)
        n = len(self.loss)
        try:
            self.loss.append(loss)
            self.accuracy.append(accuracy)
            self.val_loss.append(val_loss)
            self.val_accuracy.append(val_accuracy)
            self.learning_rate.append(learning_rate)
            self.seconds.append(seconds)
            self.samples_per_second.append(samples_per_second)
            self.largest_update.append(largest_update)
        except BaseException:
            # Ctrl-C raised between two appends: the epoch is recorded whole or not at
            # all, else the records no longer line up (save, copy and get_state
            # refuse them).  The appends made are the first records', one each.
            for key in History.KEYS:
                values = getattr(self, key)
                if len(values) != n + 1:
                    break
                del values[n]
            raise

    @property
    def epochs(self) -> int:
        """The number of epochs recorded."""
        return len(self.loss)

    def __len__(self) -> int:
        return self.epochs

    def to_dict(self) -> dict[str, list[float | None]]:
        """The records as a dict of lists.

        Returns
        -------
        dict
            A new list of each record, by the names in ``KEYS``.
        """
        return {key: list(getattr(self, key)) for key in self.KEYS}

    def plot(self, path: str | os.PathLike[str] | IO[bytes] | None = None,
             show: bool = False) -> Figure:
        """Draw the learning curves.

        Three panels over the epochs: the loss, the accuracy (training, and validation
        when it was recorded, the best validation loss marked) and, smaller, the
        learning rate.  Needs matplotlib: ``pip install matplotlib`` (or
        ``pip install "cyprop[plot]"``).

        Parameters
        ----------
        path : str, os.PathLike or binary file object, optional
            Write the figure there (a PNG unless the name's suffix asks for another
            format matplotlib knows, such as ``.svg`` or ``.pdf``), atomically, as
            ``Network.save`` writes; a file object gets matplotlib's default format.
        show : bool, default False
            Also open it in a window through ``matplotlib.pyplot``.

        Returns
        -------
        matplotlib.figure.Figure
            The figure.

        Raises
        ------
        ValueError
            If the history is empty, matplotlib cannot write the suffix's format, or
            ``path`` is not a regular file (a FIFO, a device).
        ImportError
            If matplotlib is not installed.
        OSError
            If the file cannot be written (the file that was there, if any, is kept).
        """
        if not self.epochs:
            raise ValueError("the history is empty: there is nothing to plot before "
                             "training")
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import NullFormatter
        except ImportError:
            raise ImportError("History.plot needs matplotlib, which is not installed: "
                              'pip install matplotlib (or pip install "cyprop[plot]")') from None
        size = (7.0, 7.5)
        if show:
            import matplotlib.pyplot as plt
            fig = plt.figure(figsize=size)
        else:
            # No pyplot: no GUI backend and no global figure list are involved.
            fig = Figure(figsize=size)
        epochs = list(range(1, self.epochs + 1))
        rates = _values(self.learning_rate)
        has_rate = any(not math.isnan(r) for r in rates)
        axes = fig.subplots(3 if has_rate else 2, 1, sharex=True,
                            gridspec_kw={"height_ratios": [3, 3, 1.4] if has_rate else [1, 1]})
        val_loss = _values(self.val_loss)
        best = None
        if any(not math.isnan(v) for v in val_loss):
            best = 1 + min((v, i) for i, v in enumerate(val_loss) if not math.isnan(v))[1]
        for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "accuracy", "accuracy")):
            ax.plot(epochs, _values(getattr(self, key)), marker=".", label="training")
            validation = _values(getattr(self, "val_" + key))
            if any(not math.isnan(v) for v in validation):
                ax.plot(epochs, validation, marker=".", label="validation")
                ax.legend(loc="best")
            if best is not None:
                ax.axvline(best, color="grey", linestyle=":", linewidth=1)
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
        if has_rate:
            axes[2].plot(epochs, rates, color="tab:green", drawstyle="steps-mid")
            positive = [r for r in rates if r > 0]
            if positive and max(positive) > 10 * min(positive):
                axes[2].set_yscale("log")
                axes[2].yaxis.set_minor_formatter(NullFormatter())   # decades only
            axes[2].set_ylabel("learning rate")
            axes[2].grid(True, alpha=0.3)
        axes[-1].set_xlabel("epoch")
        title = f"{self.epochs} epochs"
        if self.stop_reason and self.stop_reason != "epochs":
            title += f", stopped by {self.stop_reason.replace('_', ' ')}"
        if best is not None:
            title += f"; best validation loss at epoch {best}"
        fig.suptitle(title)
        fig.tight_layout()
        if path is not None:
            # as Step.plot writes: never into a FIFO (opening one to write blocks until
            # it is read) or a device, and atomically
            from .explain import _save_figure

            _save_figure(fig, path)
        if show:
            plt.show()
        return fig

    def __repr__(self) -> str:
        # (a record not given is None: an epoch recorded without its loss has none to show)
        last = f", last loss {self.loss[-1]:.6g}" if self.loss and self.loss[-1] is not None \
            else ""
        return f"<History: {self.epochs} epochs{last}, stopped: {self.stop_reason}>"


def _values(records: Sequence[float | None]) -> list[float]:
    """A record list as floats, None (not recorded) as NaN, which plots as a gap."""
    return [math.nan if v is None else float(v) for v in records]
