"""Progress output of ``fit``: a tqdm bar per epoch when tqdm is installed and the
output is a terminal, else one plain line per epoch."""

import sys


def _format(logs):
    parts = [f"loss {logs['loss']:.4f}", f"accuracy {logs['accuracy']:.2%}"]
    if logs.get("val_loss") is not None:
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_accuracy {logs['val_accuracy']:.2%}"]
    parts += [f"lr {logs['learning_rate']:.3g}", f"{logs['seconds']:.3f}s",
              f"{logs['samples_per_second']:,.0f} samples/s"]
    return "  ".join(parts)


class Progress:
    """Reports epochs (and, for long epochs, parts of them) to ``stream``."""

    def __init__(self, epochs, n_samples, stream=None):
        self.epochs = epochs
        self.n_samples = n_samples
        self.stream = stream or sys.stdout
        self._bar = None
        self._tqdm = None
        if getattr(self.stream, "isatty", lambda: False)():
            try:
                from tqdm.auto import tqdm
                self._tqdm = tqdm
            except ImportError:
                pass

    def start_epoch(self):
        self._epoch = getattr(self, "_epoch", -1) + 1   # counted within this call
        if self._tqdm is not None:
            self._bar = self._tqdm(total=self.n_samples, unit="sample", leave=True,
                                   desc=f"epoch {epoch + 1}/{self.epochs}", file=self.stream)

    def advance(self, samples):
        if self._bar is not None:
            self._bar.update(samples)

    def end_epoch(self, logs):
        if self._bar is not None:
            self._bar.set_postfix_str(_format(logs), refresh=False)
            self._bar.close()
            self._bar = None
        else:
            print(f"epoch {self._epoch + 1}/{self.epochs}  {_format(logs)}", file=self.stream,
                  flush=True)

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
