"""What training records, epoch by epoch."""


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

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
            "samples_per_second", "largest_update")

    def __init__(self):
        for key in self.KEYS:
            setattr(self, key, [])
        self.stop_reason = None

    def record(self, **values):
        for key in self.KEYS:
            getattr(self, key).append(values.get(key))

    @property
    def epochs(self):
        return len(self.loss)

    def __len__(self):
        return self.epochs

    def to_dict(self):
        """The records as a dict of lists (keys as in ``KEYS``)."""
        return {key: list(getattr(self, key)) for key in self.KEYS}

    def __repr__(self):
        last = f", last loss {self.loss[-1]:.6g}" if self.loss else ""
        return f"<History: {self.epochs} epochs{last}, stopped: {self.stop_reason}>"
