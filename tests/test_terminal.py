"""Progress output where a person watches: a real terminal (a pty), a Jupyter kernel
(faked in a child process), and pipes, which keep one plain line per epoch.

Everything runs in child processes: the tqdm path must not crash, hang or leave a
bar open, and the console script is run as installed, outside the source tree.
"""

import fcntl
import json
import os
import re
import select
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("tqdm")

TIMEOUT = 120
CYPROP = Path(sys.executable).with_name("cyprop")

FIT = textwrap.dedent("""\
    import sys
    import cyprop
    from cyprop import datasets

    X, y = datasets.moons(n=200, seed=0)
    net = cyprop.Network([2, 8, 2], seed=0)
    verbose = {"1": 1, "auto": "auto", "0": 0}[sys.argv[1]]
    history = net.fit(X, y, epochs=3, batch_size=10, verbose=verbose)
    print(f"isatty={sys.stdout.isatty()} epochs={history.epochs}")
""")


def run_in_pty(argv, cwd, size=(30, 120), env=None, timeout=TIMEOUT, on_output=None,
               controlling=False):
    """(exit status, output) of ``argv`` with stdin, stdout and stderr on a new pty;
    ``size`` (rows, columns) None leaves the terminal unsized (0 x 0), as CI's are.
    ``on_output(master, output)`` is called with the output so far as it comes (to resize
    the terminal, or type at it); with ``controlling`` the pty is the child's controlling
    terminal (a ^C typed at it signals the child), whose settings must be as they were
    once the child has gone."""
    master, slave = os.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    settings = termios.tcgetattr(slave)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    env.pop("COLUMNS", None), env.pop("LINES", None)

    def take_terminal():   # (in the child, after start_new_session's setsid)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                 env=env, start_new_session=True,
                                 preexec_fn=take_terminal if controlling else None)
    finally:
        if not controlling:   # (kept to read its settings back at the end)
            os.close(slave)
    output, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if child.poll() is not None and controlling:   # (no EIO: slave open here)
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:          # EIO: every writer has closed the pty
                break
            if not chunk:
                break
            output += chunk
            if on_output is not None:
                on_output(master, output)
        else:
            child.kill()
            pytest.fail(f"{argv} still running after {timeout} s: {output[-2000:]!r}")
        status = child.wait(timeout=30)
        if controlling:
            assert termios.tcgetattr(slave) == settings, "the terminal's settings changed"
    finally:
        os.close(master)
        if controlling:
            os.close(slave)
        if child.poll() is None:
            child.kill()
            child.wait()
    return status, output.decode("utf-8", "replace")


def screen(output):
    """The lines ``output`` leaves on a terminal: of each, what follows its last \\r."""
    return "\n".join(line.rstrip("\r").rsplit("\r", 1)[-1] for line in output.split("\n"))


def assert_bars(output, epochs=3):
    """A tqdm bar while each epoch ran, then the epoch's line."""
    assert "Traceback" not in output, output
    lines = screen(output)
    for epoch in range(1, epochs + 1):
        assert f"epoch {epoch}/{epochs}: " in output, output        # the bar
        assert re.search(rf"^epoch {epoch}/{epochs}  loss [\d.]+  accuracy .* samples/s$",
                         lines, re.M), lines
    assert re.search(r"\| \d+/\d+ \[", output) and "sample/s" in output, output


# ---------------------------------------------------------------- a terminal
@pytest.mark.parametrize("verbose", ["1", "auto"])
def test_fit_shows_a_bar_at_a_terminal(tmp_path, verbose):
    script = tmp_path / "fit.py"
    script.write_text(FIT)
    status, output = run_in_pty([sys.executable, str(script), verbose], cwd=tmp_path)
    assert status == 0, output
    assert_bars(output)
    assert "isatty=True epochs=3" in output


def test_fit_at_an_unsized_terminal_still_shows_the_epochs(tmp_path):
    # A pty of 0 x 0 (CI, `script`): tqdm alone would print empty lines.
    script = tmp_path / "fit.py"
    script.write_text(FIT)
    status, output = run_in_pty([sys.executable, str(script), "1"], cwd=tmp_path, size=None)
    assert status == 0, output
    assert_bars(output)


@pytest.mark.skipif(not CYPROP.exists(), reason="no cyprop console script beside python")
@pytest.mark.parametrize("size", [(30, 120), None])
def test_cyprop_train_at_a_terminal(tmp_path, size):
    status, output = run_in_pty([str(CYPROP), "train", "--data", "moons", "--epochs", "3"],
                                cwd=tmp_path, size=size)
    assert status == 0, output
    assert_bars(output)
    assert "test accuracy:" in output
    # The speed comparison trains too, but shows no bars of its own.
    assert "epoch 1/1" not in output, output


RESIZED = textwrap.dedent("""\
    import os, sys, time
    from cyprop import _progress

    progress = _progress.Progress(epochs=1, n_samples=100)
    progress.start_epoch()
    progress.advance(10)
    print("\\nwaiting", flush=True)
    deadline = time.monotonic() + 60
    while os.get_terminal_size(1).columns != 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    print("\\nresized", flush=True)
    for _ in range(2):
        progress.advance(20)
        progress._bar.refresh()     # (tqdm would wait for its next interval)
    progress.end_epoch({"loss": 0.5, "accuracy": 0.5, "learning_rate": 0.1,
                        "seconds": 1.0, "samples_per_second": 100.0})
""")


def test_a_bar_follows_a_terminal_resized_mid_epoch(tmp_path):
    # A window made narrower while an epoch runs (a long MNIST epoch): bars still as
    # wide as the old window would wrap onto new rows at each refresh, which \r does
    # not go back over, filling the screen with copies of the bar.
    script = tmp_path / "resize.py"
    script.write_text(RESIZED)

    def narrow_once_waiting(master, output):
        if b"waiting" in output and b"resized" not in output:
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 40, 0, 0))

    status, text = run_in_pty([sys.executable, str(script)], cwd=tmp_path,
                              on_output=narrow_once_waiting)
    assert status == 0 and "Traceback" not in text, text
    after = text.split("resized", 1)[1]
    bars = [part for part in after.split("\r") if part.startswith("epoch 1/1:")]
    # (the first bar after the resize is padded to blank the longer one before it)
    # (at least the two refreshes made; tqdm may add its own on a slow machine)
    assert len(bars) >= 2 and all(len(bar.rstrip()) <= 40 for bar in bars), bars
    assert len(bars[-1]) <= 40, bars


@pytest.mark.skipif(not CYPROP.exists(), reason="no cyprop console script beside python")
def test_ctrl_c_at_the_terminal_stops_cyprop_train(tmp_path):
    # Ctrl-C typed at the terminal (the line discipline signals the foreground group):
    # one line, status 130, and the terminal's settings as they were (run_in_pty).
    typed = []

    def ctrl_c_once_training(master, output):
        if not typed and b"epoch 1/" in output:
            os.write(master, b"\x03")
            typed.append(True)

    status, text = run_in_pty([str(CYPROP), "train", "--data", "digits", "--epochs",
                               "100000", "--no-compare"], cwd=tmp_path,
                              on_output=ctrl_c_once_training, controlling=True)
    assert status == 130 and "Traceback" not in text, text
    assert re.search(r"\^C\s*cyprop: error: interrupted\r\n$", text), text[-500:]


INTERRUPTED = textwrap.dedent("""\
    import sys
    import cyprop
    from cyprop import _progress, datasets
    from tqdm import tqdm

    X, y = datasets.moons(n=200, seed=0)
    how = sys.argv[1]
    if how == "interrupt":
        def advance(self, samples, _advance=_progress.Progress.advance):
            _advance(self, samples)
            raise KeyboardInterrupt   # Ctrl-C within the epoch, before it ends
        _progress.Progress.advance = advance
        optimizer = cyprop.SGD(0.1)
    else:
        optimizer = cyprop.SGD(1e300)
    try:
        cyprop.Network([2, 8, 2], seed=0).fit(X, y, epochs=3, optimizer=optimizer, verbose=1)
    except (KeyboardInterrupt, cyprop.TrainingDiverged) as exc:
        print(f"\\nstopped by {type(exc).__name__}; open bars: {len(tqdm._instances)}")
""")


@pytest.mark.parametrize("how, stopped_by", [("interrupt", "KeyboardInterrupt"),
                                             ("diverge", "TrainingDiverged")])
def test_a_fit_that_stops_mid_epoch_closes_its_bar(tmp_path, how, stopped_by):
    script = tmp_path / "stop.py"
    script.write_text(INTERRUPTED)
    status, output = run_in_pty([sys.executable, str(script), how], cwd=tmp_path)
    assert status == 0, output
    assert "epoch 1/3" in output and "epoch 2/3" not in output, output
    assert f"stopped by {stopped_by}; open bars: 0" in output, output


# --------------------------------------------------------------------- pipes
@pytest.mark.parametrize("verbose, lines", [("1", 3), ("auto", 0), ("0", 0)])
def test_pipes_get_plain_lines(tmp_path, verbose, lines):
    script = tmp_path / "fit.py"
    script.write_text(FIT)
    done = subprocess.run([sys.executable, str(script), verbose], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    epochs = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == lines, done.stdout
    assert all(line.startswith(f"epoch {i + 1}/3  loss ") and "samples/s" in line
               for i, line in enumerate(epochs))
    assert "\r" not in done.stdout and "|" not in done.stdout and done.stderr == ""


# ------------------------------------------------------------------- Jupyter
#: What tqdm.auto and Progress look at to tell a Jupyter kernel: the ipykernel modules
#: and IPython's shell; with fake ipywidgets when the test asks for them, recording
#: what tqdm.notebook displays.
FAKE_KERNEL = textwrap.dedent("""\
    import json, sys, types

    class ZMQInteractiveShell:
        kernel = object()

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: ZMQInteractiveShell()
    display = types.ModuleType("IPython.display")
    shown = []
    display.display = shown.append
    ipython.display = display
    sys.modules.update({"IPython": ipython, "IPython.display": display,
                        "ipykernel": types.ModuleType("ipykernel"),
                        "ipykernel.zmqshell": types.ModuleType("ipykernel.zmqshell")})

    if sys.argv[1] == "widgets":
        class Widget:
            def __init__(self, children=(), **kwargs):
                self.children, self.value, self.bar_style = list(children), "", ""
                self.layout, self.style = types.SimpleNamespace(), types.SimpleNamespace()
                self.__dict__.update(kwargs)

            def close(self):
                self.closed = True

        widgets = types.ModuleType("ipywidgets")
        widgets.HTML = widgets.FloatProgress = widgets.HBox = Widget
        sys.modules["ipywidgets"] = widgets

    import cyprop
    from cyprop import _progress, datasets

    X, y = datasets.moons(n=200, seed=0)
    cyprop.Network([2, 8, 2], seed=0).fit(X, y, epochs=3, batch_size=10, verbose=1)
    bars = [{"left": box.children[0].value, "n": box.children[1].value,
             "max": box.children[1].max, "closed": getattr(box, "closed", False)}
            for box in shown]
    print(json.dumps({"kernel": _progress.in_ipython_kernel(), "bars": bars}))
""")


def test_jupyter_kernel_gets_notebook_bars(tmp_path):
    script = tmp_path / "kernel.py"
    script.write_text(FAKE_KERNEL)
    done = subprocess.run([sys.executable, str(script), "widgets"], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["kernel"] is True
    # One widget per epoch (tqdm.notebook's own), full, then hidden for the line.
    assert [bar["left"].replace("\u2007", " ").split(":")[0] for bar in report["bars"]] == \
        ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all(bar["n"] == bar["max"] == 200 and bar["closed"] for bar in report["bars"])
    assert len(re.findall(r"^epoch \d/3  loss .* samples/s$", done.stdout, re.M)) == 3
    assert "Traceback" not in done.stderr


def test_jupyter_kernel_without_ipywidgets_gets_text_bars(tmp_path):
    # stdout is a pipe here, as a kernel's is; tqdm.auto falls back to its text bar.
    script = tmp_path / "kernel.py"
    script.write_text(FAKE_KERNEL)
    done = subprocess.run([sys.executable, str(script), "text"], capture_output=True,
                          text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert_bars(done.stdout)
    assert json.loads(done.stdout.splitlines()[-1]) == {"kernel": True, "bars": []}
    assert "Traceback" not in done.stderr


def test_interactive_streams():
    import io

    from cyprop import _progress

    assert not _progress.is_interactive(io.StringIO())
    closed = open(os.devnull, "w")
    closed.close()
    assert not _progress.is_interactive(closed)
    assert not _progress.in_ipython_kernel() or "ipykernel" in sys.modules
