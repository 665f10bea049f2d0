"""What training records, epoch by epoch."""


class History:
    """Per-epoch training records of one or more ``fit`` calls.

    Attributes are lists with one entry per epoch: ``loss`` (mean training loss, each
    sample's loss taken as it was trained on), ``accuracy`` (fraction classified right
    in the same pass), ``learning_rate``, ``seconds`` and ``samples_per_second``;
    ``stop_reason`` says why the last ``fit`` stopped.
    """

    KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds",
            "samples_per_second")

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
