"""Progress output of ``fit``: one line per epoch, and while an epoch runs a tqdm bar
when tqdm is installed and the output is a terminal or a Jupyter notebook."""

from __future__ import annotations

import os
import sys
from typing import Any, TextIO


def _format(logs: dict[str, Any]) -> str:
    parts = [f"loss {logs['loss']:.4f}", f"accuracy {logs['accuracy']:.2%}"]
    if logs.get("val_loss") is not None:
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_accuracy {logs['val_accuracy']:.2%}"]
    parts += [f"lr {logs['learning_rate']:.3g}", f"{logs['seconds']:.3f}s",
              f"{logs['samples_per_second']:,.0f} samples/s"]
    return "  ".join(parts)


def in_ipython_kernel() -> bool:
    """True inside a Jupyter (IPython) kernel, whose stdout is no terminal but shows bars."""
    if "ipykernel" not in sys.modules:
        return False
    ipython = sys.modules.get("IPython")
    try:
        shell = ipython.get_ipython() if ipython is not None else None
    except Exception:   # noqa: BLE001 - a half-imported IPython is no kernel
        return False
    return getattr(shell, "kernel", None) is not None


def _terminal_width_options(stream: Any) -> dict[str, int | bool]:
    """tqdm options for a terminal: its size read at each refresh, or a fixed one where
    it reports a size of 0 (a pty nobody sized, as CI and `script` make), where tqdm
    would print empty bars; none for what is not a terminal."""
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):   # not a terminal
        return {}
    if columns and lines:
        # tqdm reads the width once per bar; a window narrowed mid-epoch would get
        # bars that wrap onto new rows at each refresh, beyond the reach of \r.
        return {"dynamic_ncols": True}
    return {"ncols": columns or 80, "nrows": lines or 24}


def _isatty(stream: Any) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):   # no isatty, or a closed file
        return False


def is_interactive(stream: Any) -> bool:
    """Whether a person watches ``stream`` live: a terminal, or a notebook's output."""
    return _isatty(stream) or (stream in (sys.stdout, sys.stderr) and in_ipython_kernel())


class Progress:
    """Reports epochs (and, for long epochs, parts of them) to ``stream``."""

    _bar: Any
    _tqdm: Any

    def __init__(self, epochs: int, n_samples: int, stream: TextIO | None = None) -> None:
        self.epochs = epochs
        self.n_samples = n_samples
        self.stream = stream or sys.stdout
        self._epoch = -1        # counted within this fit call
        self._bar = None
        self._tqdm = None
        self._width = _terminal_width_options(self.stream)
        if is_interactive(self.stream):
            try:
                # tqdm.auto picks the notebook widget in Jupyter, the text bar elsewhere.
                from tqdm.auto import tqdm
                self._tqdm = tqdm
            except ImportError:
                pass

    def start_epoch(self) -> None:
        self.close()            # a bar left open by an epoch that never ended
        self._epoch += 1
        if self._tqdm is not None:
            try:
                # leave=False: the bar shows the epoch as it runs, then gives way to
                # the epoch's line, which a bar of any width would cut short.
                self._bar = self._tqdm(total=self.n_samples, unit="sample", leave=False,
                                       file=self.stream,
                                       desc=f"epoch {self._epoch + 1}/{self.epochs}",
                                       **self._width)
            except ImportError:
                # tqdm.notebook without ipywidgets: plain lines from now on.
                self._tqdm = None

    def advance(self, samples: int) -> None:
        if self._bar is not None:
            self._bar.update(samples)

    def end_epoch(self, logs: dict[str, Any]) -> None:
        self.close()
        print(f"epoch {self._epoch + 1}/{self.epochs}  {_format(logs)}", file=self.stream,
              flush=True)

    def close(self) -> None:
        """Close the epoch's bar; ``fit`` calls it however training ends (an error, Ctrl-C)."""
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()
