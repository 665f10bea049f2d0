"""The ``cyprop`` command line: train, evaluate, predict, export, explain, info, bench.

``main(argv)`` returns the exit status instead of exiting, so tests can call it:
0 for success, 2 for a usage error, 1 for any other error.  Errors are reported as
one line on stderr, ``cyprop: error: ...``; set ``CYPROP_DEBUG=1`` for the traceback.
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import inspect
import io
import math
import os
import platform
import stat
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

import cyprop
from . import _archive, _progress, datasets
from ._maths import HIDDEN_ACTIVATIONS
from .explain import _save_figure, textbook_example   # (cyprop.explain is the function)
from .optimizers import OPTIMIZERS

if TYPE_CHECKING:
    from .history import History
    from .network import Network
    from .optimizers import Optimizer

BUILTIN_DATA = ("digits", "xor", "spirals", "moons")
#: Samples the compiled-vs-NumPy comparison trains on: enough for a steady rate,
#: few enough that the NumPy epoch stays short.
COMPARE_SAMPLES = 2000
#: Data sets this small are tested on their training samples (a split would leave
#: XOR with three points, from which the fourth cannot be learned).
TINY = 10

#: What ``cyprop train --data NAME`` uses for each setting it is not given a flag for,
#: one dict per data set: ``hidden`` the hidden-layer sizes (the input and output sizes
#: come from the data: --layers IN,hidden...,OUT), then --activation, --optimizer, --lr,
#: --momentum (0 where absent), --epochs and --batch-size.  A flag given wins over its
#: entry; ``lr`` and ``momentum`` belong to the entry's optimizer, so another
#: --optimizer without --lr gets 0.5 for sgd and the optimizer's own default otherwise,
#: and ``momentum`` only to it as the default: any --optimizer named starts from 0.
#: Chosen to learn each data set in well under a second of training on every seed
#: tried (test accuracy, seeds 0-4: xor 100%, moons >= 98%, spirals >= 92%, digits
#: >= 96%; tests/test_defaults.py checks seed 0).  Your own data (csv:, mnist:) keeps
#: the settings that were everyone's default before (they suit digit images).
TRAIN_DEFAULTS: dict[str, dict[str, Any]] = {
    "xor": dict(hidden=(8,), activation="tanh", optimizer="adam", lr=0.05,
                epochs=300, batch_size=4),
    "moons": dict(hidden=(16,), activation="tanh", optimizer="adam", lr=0.01,
                  epochs=200, batch_size=10),
    "spirals": dict(hidden=(32,), activation="tanh", optimizer="adam", lr=0.01,
                    epochs=400, batch_size=10),
    "digits": dict(hidden=(64,), activation="tanh", optimizer="sgd", lr=0.1, momentum=0.9,
                   epochs=40, batch_size=16),
    "csv": dict(hidden=(32,), activation="sigmoid", optimizer="sgd", lr=0.5,
                epochs=30, batch_size=10),
    "mnist": dict(hidden=(32,), activation="sigmoid", optimizer="sgd", lr=0.5,
                  epochs=30, batch_size=10),
}
#: More epochs than this print every k-th epoch's line, not each one.
MAX_EPOCH_LINES = 50
#: The --lr of an --optimizer other than the data set's, given without --lr: SGD's
#: library default (0.1) is cautious for these small networks; the others keep theirs.
OTHER_OPTIMIZER_LR = {"sgd": 0.5}
#: The settings TRAIN_DEFAULTS fills in: (attribute of the parsed arguments, flag).
DEFAULTED = (("layers", "--layers"), ("activation", "--activation"),
             ("optimizer", "--optimizer"), ("lr", "--lr"), ("momentum", "--momentum"),
             ("epochs", "--epochs"), ("batch_size", "--batch-size"))


class UsageError(Exception):
    """A mistake in the command's arguments: exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors become one line (``UsageError``) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------ parsing
def _layers(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated layer sizes such as 64,32,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"need at least an input and an output size, all positive, got {text!r}")
    return sizes


def _seed(text: str) -> int:
    try:
        seed = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if seed < 0:   # NumPy's generators take none
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {seed}")
    return seed


@dataclass
class DataSpec:
    kind: str              # one of BUILTIN_DATA, "mnist" or "csv"
    path: str | None = None
    target: int | str = -1    # csv only: column index or name

    def __str__(self) -> str:
        if self.kind == "csv":
            return f"csv:{self.path} (target column {self.target})"
        return f"{self.kind}:{self.path}" if self.path else self.kind


def _data_spec(text: str) -> DataSpec:
    """``digits``, ``xor``, ``spirals``, ``moons``, ``mnist:PATH`` or ``csv:PATH[:TARGET]``."""
    kind, _, rest = text.partition(":")
    if kind in BUILTIN_DATA and not rest:
        return DataSpec(kind)
    if kind == "mnist" and rest:
        return DataSpec("mnist", rest)
    if kind == "csv" and rest:
        return _csv_spec(rest)
    raise argparse.ArgumentTypeError(
        f"unknown data {text!r}; use {', '.join(BUILTIN_DATA)}, mnist:FOLDER or "
        "csv:FILE[:TARGET]")


def _csv_spec(rest: str) -> DataSpec:
    # A path may itself hold ':' (C:\data.csv), so only split off a TARGET when the
    # whole text is not a file already.
    if os.path.exists(rest) or ":" not in rest:
        return DataSpec("csv", rest)
    path, target = rest.rsplit(":", 1)
    column: int | str = target
    try:
        column = int(target)
    except ValueError:
        pass   # a column name
    return DataSpec("csv", path, column)


def _add_data_options(parser: argparse.ArgumentParser, for_training: bool) -> None:
    parser.add_argument("--data", type=_data_spec, default=DataSpec("digits"),
                        metavar="DATA",
                        help="digits (needs scikit-learn), xor, spirals, moons, "
                             "mnist:FOLDER (IDX files; t10k files are the test set) or "
                             "csv:FILE[:TARGET] (TARGET: column index or name, default "
                             "the last column) (default: digits)")
    parser.add_argument("--test-size", type=float, default=None, metavar="FRACTION",
                        help="fraction held out for testing; 0 tests on the training "
                             "data (default: 0.25, 0 for xor)")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seeds the split" + (", the weights and the shuffling"
                                                  if for_training else
                                                  " (use train's seed to get its test set)")
                        + " (default: 0)")


def _wrap(text: str) -> str:
    # The commands with a hand-laid-out epilog (RawDescriptionHelpFormatter) wrap
    # their description themselves.
    return textwrap.fill(text, width=80)


def build_parser() -> argparse.ArgumentParser:
    """Build the ``cyprop`` argument parser, with one subcommand per command.

    Each subcommand's parsed arguments carry their handler as ``args.handler``.  The
    parser reports a usage error by raising ``UsageError`` (one line) instead of
    printing the usage and exiting; ``--help`` and ``--version`` still exit.  The
    ``bench`` subcommand is listed only for ``--help``: :func:`main` passes everything
    after ``bench`` to the benchmark script without parsing it here.

    Returns
    -------
    argparse.ArgumentParser
        A new parser; give its ``parse_args`` the arguments without the program
        name.
    """
    parser = _Parser(prog="cyprop", description="Multilayer perceptrons trained by "
                     "backpropagation, with a compiled Cython core.")
    parser.add_argument("--version", action="version", version=f"cyprop {cyprop.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser("train", help="train a network and report its test accuracy",
                                description=_wrap(
                                    "Train a network, print its progress, its test "
                                    "accuracy, and the compiled backend's speed-up over "
                                    "NumPy."),
                                epilog=_defaults_help(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_data_options(train, for_training=True)
    train.add_argument("--layers", type=_layers, default=None, metavar="SIZES",
                       help="layer sizes, input first, e.g. 64,32,10 (default: per data "
                            "set, below)")
    train.add_argument("--epochs", type=int, default=None,
                       help="(default: per data set, below)")
    train.add_argument("--batch-size", type=int, default=None,
                       help="(default: per data set, below)")
    train.add_argument("--optimizer", default=None,
                       choices=sorted(n.lower() for n in OPTIMIZERS),
                       help="(default: per data set, below)")
    train.add_argument("--lr", type=float, default=None,
                       help="learning rate (default: the data set's, below, with its "
                            "optimizer; with another --optimizer 0.5 for sgd, else the "
                            "optimizer's own)")
    train.add_argument("--momentum", type=float, default=None,
                       help="for sgd and rmsprop (default: the data set's, below, with its "
                            "optimizer; else 0)")
    train.add_argument("--weight-decay", type=float, default=0.0,
                       help="L2 penalty on the weights (default: 0)")
    train.add_argument("--activation", default=None, choices=list(HIDDEN_ACTIVATIONS),
                       help="hidden-layer activation (default: per data set, below)")
    train.add_argument("--dtype", default="float64", choices=("float64", "float32"),
                       help="(default: float64)")
    train.add_argument("--backend", default="auto", choices=("auto", "cython", "numpy"),
                       help="(default: auto)")
    train.add_argument("--save", metavar="MODEL.npz", help="save the trained network")
    train.add_argument("--plot", metavar="FILE.png",
                       help="draw the loss and accuracy curves (needs matplotlib)")
    train.add_argument("--no-compare", action="store_true",
                       help="skip the compiled-vs-NumPy speed comparison")
    train.add_argument("--quiet", "-q", action="store_true",
                       help="print only the results, not the header and the epochs")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="loss and accuracy of a saved network",
                                   description="Loss and accuracy of a saved network on "
                                   "the test part of a data set (split as 'train' does).")
    evaluate.add_argument("model", metavar="MODEL.npz")
    _add_data_options(evaluate, for_training=False)
    evaluate.set_defaults(handler=cmd_evaluate)

    predict = commands.add_parser("predict", help="label the rows of a CSV file",
                                  description="Print one predicted label per row of a CSV "
                                  "file of features (no label column; a header row is "
                                  "recognised and skipped).")
    predict.add_argument("model", metavar="MODEL.npz")
    predict.add_argument("input", metavar="INPUT.csv")
    predict.add_argument("--output", "-o", metavar="FILE",
                         help="write the labels here instead of to stdout ('-': to stdout)")
    predict.add_argument("--delimiter", default=",",
                         help="one character, or 'tab' (default: ,)")
    predict.set_defaults(handler=cmd_predict)

    export = commands.add_parser("export", help="write a saved network as an ONNX model",
                                 description="Write a saved network as an ONNX model: "
                                 "input 'X' (batch, n_in), output 'Y' (batch, n_out), in "
                                 "the network's dtype (needs `pip install \"cyprop[onnx]\"`).")
    export.add_argument("model", metavar="MODEL.npz")
    export.add_argument("output", metavar="MODEL.onnx")
    export.add_argument("--opset", type=int, default=None,
                        help="the ONNX opset to write (default: 17)")
    export.set_defaults(handler=cmd_export)

    explain = commands.add_parser(
        "explain", help="one backpropagation step for one sample, as textbooks show it",
        description=_wrap(
            "Work out one per-sample backpropagation step of a saved network for one row "
            "of a CSV file and print it as textbooks lay it out: each unit's net input "
            "and output, each unit's error, each weight and bias before and after the "
            "step (cyprop.explain; the model file is not changed).  'cyprop explain "
            "--example textbook' shows Han, Kamber & Pei's worked example instead."),
        epilog=_EXPLAIN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    explain.add_argument("model", metavar="MODEL.npz", nargs="?",
                         help="a model saved by 'cyprop train --save' or Network.save")
    explain.add_argument("--row", type=_row_spec, metavar="FILE.csv[:N]",
                         help="the sample: row N of a CSV file (default row: 0)")
    target = explain.add_mutually_exclusive_group()
    target.add_argument("--target", metavar="LABEL|T1,T2,...",
                        help="the sample's target: a class number (or name, where the "
                             "model keeps its classes' names), or one target value per "
                             "output unit, comma-separated")
    target.add_argument("--target-column", metavar="COLUMN",
                        help="read the target from this column of the CSV file (an index, "
                             "negative from the end, or a header name)")
    explain.add_argument("--delimiter", default=",",
                         help="of the CSV file: one character, or 'tab' (default: ,)")
    explain.add_argument("--optimizer", choices=sorted(n.lower() for n in OPTIMIZERS),
                         help="take the step with a fresh optimizer of this kind (default: "
                              "the model's saved optimizer, with its state, else plain "
                              "sgd; for --example, the book's sgd with learning rate 0.9)")
    explain.add_argument("--lr", type=float, default=None,
                         help="the step's learning rate (default: the optimizer's)")
    explain.add_argument("--plot", metavar="FILE.png",
                         help="also draw the network with the step's numbers (needs "
                              "matplotlib)")
    explain.add_argument("--example", choices=("textbook",),
                         help="explain a built-in example instead of a model: 'textbook' "
                              "is Han, Kamber & Pei's (Data Mining: Concepts and "
                              "Techniques, 3rd ed., Figure 9.5), a 3-2-1 sigmoid network")
    explain.set_defaults(handler=cmd_explain)

    info = commands.add_parser("info", help="versions, backends and CPU",
                               description="Show versions, backends, the compiled module "
                               "and the CPU, for bug reports and benchmarks.")
    info.set_defaults(handler=cmd_info)

    # Everything after "bench" goes to benchmarks/bench.py untouched (see main), so
    # this parser exists only to list the command in --help.
    commands.add_parser("bench", add_help=False, help="measure training speed against "
                        "the NumPy reference, PyTorch, scikit-learn and plain C "
                        "(`cyprop bench --quick`; `cyprop bench --help` for more)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``cyprop`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments, without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status: 0 for success, 2 for a usage error, 1 for any other error
        (130 when interrupted).  Errors are reported as one line on stderr; set
        ``CYPROP_DEBUG=1`` to have them raised instead.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    restore = _readable_stdout(data=argv[:1] == ["predict"])
    try:
        try:
            if argv[:1] == ["bench"]:
                status = cmd_bench(argv[1:])
            else:
                args, unknown = build_parser().parse_known_args(argv)
                if unknown:   # (argparse names them from the top: 'see cyprop --help')
                    raise UsageError(f"unrecognized arguments: {' '.join(unknown)} (see "
                                     f"'cyprop {args.command} --help')")
                status = args.handler(args) or 0
        except SystemExit as exc:   # --help and --version
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        # What is still buffered is written here, not by Python at exit: a full disk
        # would then be reported as "Exception ignored ..." with status 120.
        sys.stdout.flush()
        return status
    except UsageError as exc:
        return _fail(exc, 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`cyprop train | head`): not worth an error message.
        _silence_stdout()
        return 1
    except Exception as exc:    # noqa: BLE001 - every failure becomes one line
        if os.environ.get("CYPROP_DEBUG", "") not in ("", "0"):   # (0: off, as unset)
            raise
        status = _fail(exc, 1)
        _drop_unwritable_stdout()
        return status
    finally:
        restore()


class _ClosedStdout(io.TextIOBase):
    """sys.stdout when the command was started without one (`cyprop info >&-`)."""

    def write(self, text: str) -> int:
        raise OSError("standard output is closed; redirect it to /dev/null to discard "
                      "the output")


def _readable_stdout(data: bool) -> Any:
    """Make sys.stdout fit for the command's messages; returns what undoes it (main
    may be called from a program that goes on using sys.stdout)."""
    stdout = sys.stdout
    if stdout is None:
        # print would drop every line without a word, and training end in
        # "'NoneType' object has no attribute 'flush'": fail at the first line instead.
        sys.stdout = _ClosedStdout()
        return lambda: setattr(sys, "stdout", stdout)
    errors = getattr(stdout, "errors", None)
    if (data or errors not in ("strict", "surrogateescape")
            or not isinstance(stdout, io.TextIOWrapper)):
        return lambda: None
    # An output encoding without a class name's or a path's letters (an ASCII or
    # Latin-1 locale, PYTHONIOENCODING=ascii) escapes them, as stderr does, instead
    # of ending training with a UnicodeEncodeError; predict's labels are data, and
    # stay an error rather than be changed.
    codecs.register_error("cyprop.escape", _escape_unencodable)
    try:
        stdout.reconfigure(errors="cyprop.escape")
    except ValueError:   # closed by the program that calls main: its first line says so
        return lambda: None

    def restore() -> None:
        try:
            stdout.reconfigure(errors=errors)   # (flushes first)
        except (OSError, ValueError):
            pass   # a full disk or a closed pipe, already reported
    return restore


def _escape_unencodable(error: UnicodeError) -> tuple[bytes, int]:
    """What stdout cannot encode: bytes that came in undecodable (a file name in a C
    locale: surrogateescape) go out as they came, anything else as \\xe9."""
    assert isinstance(error, UnicodeEncodeError)
    text = error.object[error.start:error.end]
    return b"".join(bytes([ord(c) - 0xDC00]) if 0xDC80 <= ord(c) <= 0xDCFF
                    else c.encode("ascii", "backslashreplace") for c in text), error.end


def _silence_stdout() -> None:
    # Python flushes stdout at exit; send it nowhere so that flush does not fail too.
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass   # stdout is not a real file (captured by a test, say)


def _drop_unwritable_stdout() -> None:
    # After a failed write the lines stay buffered, and Python's flush at exit would
    # fail again, adding "Exception ignored ..." to the error line just printed.
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()


def _fail(error: BaseException | str, status: int) -> int:
    text = str(error) or type(error).__name__
    # One line, whatever the exception's message looked like.
    print(f"cyprop: error: {' '.join(text.split())}", file=sys.stderr)
    return status


# --------------------------------------------------------------------- data
@dataclass
class Data:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    classes: np.ndarray | None = None   # csv: the original class of each label
    tested_on_training: bool = False

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def load_data(spec: DataSpec, test_size: float | None = None, seed: int = 0) -> Data:
    """The data set ``spec`` split into training and test parts."""
    if spec.kind == "mnist":
        return _load_mnist(spec, test_size, seed)
    classes = None
    if spec.kind == "csv":
        assert spec.path is not None   # csv:PATH
        X, y, classes = datasets.load_csv(spec.path, target=spec.target, return_classes=True)
    elif spec.kind == "digits":
        X, y = datasets.load_digits()
    elif spec.kind == "xor":
        X, y = datasets.xor()
    else:
        X, y = getattr(datasets, spec.kind)(seed=seed)
    n_classes = max(int(y.max()) + 1, 2)
    if test_size is None:
        test_size = 0.0 if len(y) < TINY else 0.25
    if test_size == 0:
        return Data(str(spec), X, y, X, y, n_classes, classes, tested_on_training=True)
    _check_test_size(test_size)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size, seed)
    return Data(str(spec), X_train, y_train, X_test, y_test, n_classes, classes)


def _load_mnist(spec: DataSpec, test_size: float | None, seed: int) -> Data:
    assert spec.path is not None   # mnist:PATH
    X, y = datasets.load_mnist(spec.path, "train")
    if test_size is None:
        # MNIST comes with its own test set, the t10k files.
        X_test, y_test = datasets.load_mnist(spec.path, "test")
        return Data(str(spec), X, y, X_test, y_test, 10)
    if test_size == 0:
        return Data(str(spec), X, y, X, y, 10, tested_on_training=True)
    _check_test_size(test_size)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, test_size, seed)
    return Data(str(spec), X_train, y_train, X_test, y_test, 10)


def _check_test_size(test_size: float) -> None:
    if not 0 < test_size < 1:
        raise UsageError(f"--test-size must be 0 or a fraction between 0 and 1, got {test_size}")


# -------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    _fill_defaults(args)
    _check_training_args(args)
    data = load_data(args.data, args.test_size, args.seed)
    sizes = _network_sizes(args.layers, data, args.hidden)
    net = cyprop.Network(sizes, activation=args.activation, dtype=args.dtype,
                         seed=args.seed, backend=args.backend)
    _keep_classes(net, data, args.save)
    optimizer = _make_optimizer(args)
    if not args.quiet:
        _print_header(data, net, optimizer, args)
    # Many short epochs (the small data sets' defaults) get every k-th epoch's line
    # instead of hundreds of lines and bars that flash by.
    thin = not args.quiet and args.epochs > MAX_EPOCH_LINES
    try:
        history = net.fit(data.X_train, data.y_train, epochs=args.epochs,
                          batch_size=args.batch_size, optimizer=optimizer, seed=args.seed,
                          verbose=0 if args.quiet or thin else 1,
                          callbacks=[_EveryKthEpoch(args.epochs)] if thin else ())
    except cyprop.TrainingDiverged as exc:
        # An error, not a result: nothing is saved, and the exit status says so.
        raise RuntimeError(_diverged_message(exc, optimizer)) from None
    _print_results(net, data, history)
    if not args.no_compare:
        _print_speedup(net, data, args.batch_size)
    if args.plot:
        _plot(history, args.plot, data.name)
        print(f"curves written to {args.plot}")
    if args.save:
        net.save(args.save)
        print(f"model saved to {args.save}")
    return 0


def _keep_classes(net: Network, data: Data, save: str | None) -> None:
    """The data's own labels as ``net.classes``, saved with the model for 'cyprop
    predict' to print, where they are not 0..k-1 already.  Labels a model file cannot
    hold (a name on several lines) are refused before training when the model is to
    be saved; a file of one class leaves the model's second class without a label,
    and its classes are not kept."""
    classes = data.classes
    if classes is None or np.array_equal(classes, np.arange(len(classes))):
        return
    if len(classes) != net.sizes[-1] and not (len(classes) == 2 and net.sizes[-1] == 1):
        return
    try:
        net.classes = classes.tolist()
    except ValueError as exc:
        if save is not None:
            raise ValueError(f"cannot save the labels of {data.name} with the model: "
                             f"{str(exc).removeprefix('invalid classes: ')}") from None


class _EveryKthEpoch:
    """Prints the line ``fit(verbose=1)`` prints for the first epoch, every k-th and
    the last, with k a round number that keeps them to about MAX_EPOCH_LINES / 2."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs
        wanted = epochs / (MAX_EPOCH_LINES // 2)
        # (past the table, its largest: --epochs 10**21 is no reason for a StopIteration)
        self.every = next((k for k in _ROUND_STEPS if k >= wanted), _ROUND_STEPS[-1])

    def on_epoch_end(self, net: Network, epoch: int, logs: dict[str, Any]) -> None:
        done = epoch + 1
        if done == 1 or done % self.every == 0 or done == self.epochs:
            print(f"epoch {done}/{self.epochs}  {_progress._format(logs)}", flush=True)


_ROUND_STEPS = [m * 10 ** e for e in range(19) for m in (1, 2, 5)]


def _fill_defaults(args: argparse.Namespace) -> None:
    """Fill in, from TRAIN_DEFAULTS, every setting no flag was given for; records the
    flags that were given in ``args.given`` and the hidden sizes in ``args.hidden``."""
    table = TRAIN_DEFAULTS[args.data.kind]
    args.given = [flag for name, flag in DEFAULTED if getattr(args, name) is not None]
    args.hidden = list(table["hidden"])
    # The entry's learning rate and momentum are tuned for its own optimizer only; its
    # momentum goes with that optimizer as the default: an --optimizer named (even the
    # same) starts from the optimizer's own, 0 (`--optimizer sgd --lr 0.5` is plain SGD,
    # as the command line has always read; with digits' 0.9 it did not learn)
    own_optimizer = args.optimizer in (None, table["optimizer"])
    named_optimizer = args.optimizer is not None
    for name in ("activation", "optimizer", "epochs", "batch_size"):
        if getattr(args, name) is None:
            setattr(args, name, table[name])
    if args.lr is None:
        args.lr = table["lr"] if own_optimizer else OTHER_OPTIMIZER_LR.get(args.optimizer)
    if args.momentum is None:
        args.momentum = 0.0 if named_optimizer else table.get("momentum", 0.0)


def _defaults_help() -> str:
    """The epilog of ``cyprop train --help``: TRAIN_DEFAULTS as a table."""
    rows: list[tuple[str, ...]]
    rows = [("--data", "--layers", "--activation", "--optimizer", "--lr", "--epochs",
             "--batch-size")]
    seen: dict[tuple[str, ...], list[str]] = {}
    for kind, entry in TRAIN_DEFAULTS.items():
        optimizer = entry["optimizer"]
        if entry.get("momentum"):
            optimizer += f" --momentum {entry['momentum']:g}"
        row = (",".join(["IN", *map(str, entry["hidden"]), "OUT"]), entry["activation"],
               optimizer, f"{entry['lr']:g}", str(entry["epochs"]), str(entry["batch_size"]))
        seen.setdefault(row, []).append(kind if kind in BUILTIN_DATA else f"{kind}:")
    rows += [(", ".join(kinds), *row) for row, kinds in seen.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    table = ["  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, widths)).rstrip()
             for row in rows]
    return "\n".join([
        "defaults for each data set (IN: its features, OUT: its classes); a flag given",
        "overrides its value, and the header says which values are defaults:", *table,
        "--lr and --momentum go with the data set's optimizer: another --optimizer",
        "without --lr gets 0.5 for sgd and the optimizer's own default otherwise;",
        "--optimizer named (even the data set's) runs without momentum unless given."])


def _diverged_message(exc: Exception, optimizer: Optimizer) -> str:
    text = str(exc).removesuffix(" (try a smaller learning rate)")
    if not text.startswith("training diverged"):
        text = f"training diverged: {text}"
    rate = getattr(optimizer, "initial_learning_rate", None)
    return text + (f"; try a smaller --lr than {rate:g}" if rate else "; try a smaller --lr")


def _check_rate(flag: str, value: float | None, positive: bool = True) -> None:
    """A rate option (None: not given) as a usage error naming the option: NaN and
    infinity too, which the optimizers would refuse later under their own names."""
    if value is not None and not (math.isfinite(value) and (value > 0 if positive
                                                           else value >= 0)):
        raise UsageError(f"{flag} must be a finite number {'> 0' if positive else '>= 0'}, "
                         f"got {value:g}")


def _check_training_args(args: argparse.Namespace) -> None:
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    _check_rate("--lr", args.lr)
    for name in ("momentum", "weight_decay"):
        _check_rate(f"--{name.replace('_', '-')}", getattr(args, name), positive=False)
    # Find out before training, not after, that the model could not be saved.
    # (is not None: an empty name is refused, not taken as "no --save")
    if args.save is not None and not hasattr(cyprop.Network, "save"):
        raise RuntimeError(_NO_PERSISTENCE)
    inputs = _data_files(args.data)
    if args.save is not None:
        _check_destination(args.save, "--save", inputs)
    if args.plot is not None:
        _check_plot_destination(args.plot, inputs)
    if (args.save is not None and args.plot is not None
            and _archive.same_file(args.save, args.plot)):
        raise UsageError(f"--save {args.save!r} and --plot {args.plot!r} name the same "
                         "file: the model would be written over the curves; give two names")


def _data_files(spec: DataSpec) -> list[str | None]:
    """The files ``spec`` may be read from: mnist:FOLDER names a folder, and it is the
    IDX files in it that a --save or --plot there must not replace."""
    if spec.kind != "mnist":
        return [spec.path]
    assert spec.path is not None   # mnist:PATH
    return list(datasets._mnist_candidates(spec.path))


def _check_destination(path: str, option: str, inputs: Sequence[str | None] = ()) -> None:
    """Refuse, before any work, a file the command could not write: its folder is
    missing or read-only, or the path is a folder, a FIFO (writing would block until
    someone reads it) or a device, or empty; or one it must not write, one of its
    ``inputs`` (None: an input that is no file)."""
    if not path:
        raise UsageError(f"{option} needs a file name, got an empty one")
    if path.endswith(("/", os.sep)):
        raise UsageError(f"{option} {path!r} names a folder; give a file name")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{option} {path!r}: {exc.strerror}") from None
    if mode is not None:
        if not stat.S_ISREG(mode):
            raise UsageError(f"{option} {path!r} is {datasets._file_kind(mode)}, not a file "
                             "to write")
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path!r} is not writable")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path!r}: the folder {folder!r} is not writable")
    _check_not_an_input(path, option, inputs)


def _check_not_an_input(path: str, option: str, inputs: Sequence[str | None]) -> None:
    """Refuse a destination that is one of the command's input files: writing it would
    destroy the data or the model being read."""
    for source in inputs:
        try:
            same = source is not None and os.path.samefile(path, source)
        except OSError:   # either does not exist (yet): not the same file
            same = False
        if same:
            raise UsageError(f"{option} {path!r} is the input file {source!r}; writing it "
                             "would destroy it: give another file name")


def _check_plot_destination(path: str, inputs: Sequence[str | None]) -> None:
    """--plot's path first (a usage error whatever is installed), then matplotlib."""
    _check_destination(path, "--plot", inputs)
    _import_matplotlib()
    _check_plot_format(path)


def _check_plot_format(path: str) -> None:
    from matplotlib.backend_bases import FigureCanvasBase
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    extension = os.path.splitext(path)[1][1:].lower()
    if extension not in formats:
        problem = (f"matplotlib cannot write .{extension} files" if extension
                   else "the file name needs an extension")
        raise UsageError(f"--plot {path!r}: {problem}; use one of "
                         f"{', '.join('.' + f for f in formats)}")


def _network_sizes(layers: list[int] | None, data: Data,
                   hidden: Sequence[int] = (32,)) -> list[int]:
    # Two classes may use one sigmoid output instead of two softmax outputs.
    outputs_ok = (data.n_classes, 1) if data.n_classes == 2 else (data.n_classes,)
    if layers is None:
        return [data.n_features, *hidden, data.n_classes]
    if layers[0] != data.n_features:
        raise UsageError(f"--layers starts with {layers[0]} inputs, but {data.name} has "
                         f"{data.n_features} features")
    if layers[-1] not in outputs_ok:
        raise UsageError(f"--layers ends with {layers[-1]} outputs, but {data.name} has "
                         f"{data.n_classes} classes")
    return layers


def _make_optimizer(args: argparse.Namespace) -> Optimizer:
    cls = {name.lower(): cls for name, cls in OPTIMIZERS.items()}[args.optimizer]
    accepted = inspect.signature(cls).parameters
    kwargs: dict[str, Any] = {}
    if args.lr is not None:
        kwargs["learning_rate"] = args.lr
    for name in ("momentum", "weight_decay"):
        value = getattr(args, name)
        if name in accepted:
            kwargs[name] = value
        elif value:
            whose = ("" if "--optimizer" in getattr(args, "given", ["--optimizer"])
                     else f" (the default for {args.data.kind}; choose one with --optimizer)")
            raise UsageError(f"--{name.replace('_', '-')} does not apply to "
                             f"--optimizer {args.optimizer}{whose}")
    return cls(**kwargs)


def _print_header(data: Data, net: Network, optimizer: Optimizer, args: argparse.Namespace) -> None:
    split = ("tested on the training samples" if data.tested_on_training
             else f"{len(data.y_test)} for testing")
    print(f"cyprop {cyprop.__version__}: training on {data.name}")
    print(f"data:      {len(data.y_train)} training samples x {data.n_features} features, "
          f"{data.n_classes} classes; {split}")
    if data.classes is not None and not np.array_equal(data.classes,
                                                      np.arange(len(data.classes))):
        print("classes:   " + _abbreviate([f"{i}={c}" for i, c in enumerate(data.classes)]))
    acts = net.activations
    print(f"network:   {'-'.join(map(str, net.sizes))} ({net.n_params:,} parameters), "
          f"{acts[0] if len(set(acts[:-1])) == 1 else ','.join(acts[:-1])} hidden, "
          f"{acts[-1]} output, {net.loss_name} loss, {net.dtype.name}")
    print(f"backend:   {net.backend}")
    print(f"optimizer: {optimizer!r}, {_count(args.epochs, 'epoch')}, "
          f"batch size {args.batch_size}, seed {args.seed}")
    values = {"--layers": ",".join(map(str, net.sizes)), "--activation": args.activation,
              "--optimizer": args.optimizer, "--lr": f"{optimizer.initial_learning_rate:g}",
              "--momentum": f"{args.momentum:g}", "--epochs": str(args.epochs),
              "--batch-size": str(args.batch_size)}
    defaulted = [flag for _, flag in DEFAULTED if flag not in args.given
                 and (flag != "--momentum" or args.momentum)]   # no "--momentum 0"
    if defaulted:
        print(f"defaults:  {' '.join(f'{flag} {values[flag]}' for flag in defaulted)} "
              f"(for {args.data.kind}; see 'cyprop train --help')")
    if args.given:
        print(f"given:     {' '.join(f'{flag} {values[flag]}' for flag in args.given)}")
    sys.stdout.flush()


def _count(n: int, noun: str) -> str:
    """``n`` and the noun, singular for one: "1 epoch", "3 epochs"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _abbreviate(items: list[str], limit: int = 10) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def _print_results(net: Network, data: Data, history: History) -> None:
    result = net.evaluate(data.X_test, data.y_test)
    where = "training sample" if data.tested_on_training else "test sample"
    print(f"test accuracy: {result['accuracy']:.2%} (loss {result['loss']:.4f}) on "
          f"{_count(len(data.y_test), where)}")
    seconds = sum(s or 0.0 for s in history.seconds)   # (None only in crafted files)
    rate = len(data.y_train) * history.epochs / seconds if seconds > 0 else float("inf")
    print(f"training: {rate:,.0f} samples/s ({net.backend} backend), {seconds:.2f} s "
          f"for {_count(history.epochs, 'epoch')}")


# ---------------------------------------------------------- compiled vs numpy
def _print_speedup(net: Network, data: Data, batch_size: int) -> None:
    if "cython" not in cyprop.available_backends():
        print("speed-up: not measured, the compiled backend is not available here")
        return
    X, y = data.X_train[:COMPARE_SAMPLES], data.y_train[:COMPARE_SAMPLES]
    compiled = _training_rate(net, "cython", X, y, batch_size)
    reference = _training_rate(net, "numpy", X, y, batch_size)
    print(f"compiled backend: {compiled:,.0f} samples/s, NumPy reference: "
          f"{reference:,.0f} samples/s, speed-up: {compiled / reference:.1f}x "
          f"({len(y)} samples, batch size {batch_size})")


def _training_rate(net: Network, backend: str, X: np.ndarray, y: np.ndarray, batch_size: int,
                   repeats: int = 3, budget_s: float = 1.0) -> float:
    """Best samples/s of a few epochs of a copy of ``net`` on ``backend``.

    The best of several epochs damps timer noise on the fast backend; the time budget
    keeps the slow one from repeating long epochs.
    """
    twin = _copy_on_backend(net, backend)
    assert net.optimizer is not None   # net has been trained
    optimizer = type(net.optimizer)(**net.optimizer.get_config())
    best, spent = 0.0, 0.0
    for _ in range(repeats):
        history = twin.fit(X, y, epochs=1, batch_size=batch_size, optimizer=optimizer, seed=0,
                           verbose=0)
        rate, took = history.samples_per_second[-1], history.seconds[-1]
        assert rate is not None and took is not None   # recorded by this fit
        best = max(best, rate)
        spent += took
        if spent > budget_s:
            break
    return best


def _copy_on_backend(net: Network, backend: str) -> Network:
    acts = net.activations
    twin = cyprop.Network(net.sizes, activation=acts[:-1], output=acts[-1],
                          loss=net.loss_name, dtype=net.dtype.name, backend=backend)
    twin.weights = net.weights
    twin.biases = net.biases
    return twin


# --------------------------------------------------------------------- plot
def _import_matplotlib() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("--plot needs matplotlib, which is not installed; install it "
                          'with `pip install matplotlib` (or `pip install "cyprop[plot]"`)'
                          ) from None
    return Figure


def _plot(history: History, filename: str, title: str) -> None:
    # Figure without pyplot: no GUI backend is needed to write a file.
    fig = _import_matplotlib()(figsize=(9, 3.5))
    epochs = np.arange(1, history.epochs + 1)
    loss_ax, acc_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, history.loss, marker=".")
    loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
    acc_ax.plot(epochs, history.accuracy, marker=".")
    acc_ax.set(xlabel="epoch", ylabel="training accuracy", title="accuracy")
    # the data as named (a file name may hold dollar signs): text, not mathtext
    fig.suptitle(f"cyprop on {title}", parse_math=False)
    fig.tight_layout()
    _save_figure(fig, filename)   # (atomically, as Network.save writes)


# ------------------------------------------------------- evaluate / predict
_NO_PERSISTENCE = ("this version of cyprop cannot save or load models (Network.save / "
                   "cyprop.load are missing); update cyprop")


def _load_model(path: str) -> Network:
    load = getattr(cyprop, "load", None)
    if load is None:
        raise RuntimeError(_NO_PERSISTENCE)
    # From its stat, before anything opens it: a FIFO would block the open forever.
    datasets._check_regular_file(path, "model file")
    return load(path)


def cmd_evaluate(args: argparse.Namespace) -> int:
    net = _load_model(args.model)
    data = load_data(args.data, args.test_size, args.seed)
    if data.n_features != net.sizes[0]:
        raise ValueError(f"the model takes {net.sizes[0]} features, but {data.name} has "
                         f"{data.n_features}")
    result = net.evaluate(data.X_test, _as_the_model_numbers(net, data.classes, data.y_test,
                                                             data.name))
    where = "training sample" if data.tested_on_training else "test sample"
    print(f"{args.model} on {data.name}: loss {result['loss']:.4f}, accuracy "
          f"{result['accuracy']:.2%} ({_count(len(data.y_test), where)})")
    return 0


def _as_the_model_numbers(net: Network, classes: np.ndarray | None, y: np.ndarray,
                          name: str) -> np.ndarray:
    """The labels ``y`` of a CSV file (``classes[y]`` its own labels) numbered as the
    model numbers its classes: the file numbers its own 0..k-1, and one holding only
    some of the model's classes would be taken as others.  A label the model does not
    know is refused."""
    if net.classes is None or classes is None:
        return y
    number = {label: i for i, label in enumerate(net.classes)}
    code = np.array([number.get(label, -1) for label in classes.tolist()])
    unknown = [classes[k].item() for k in np.unique(y) if code[k] < 0]
    if unknown:
        raise ValueError(f"{name} has the label {unknown[0]!r}, which is not one of the "
                         "model's classes (" + _abbreviate(
                             [f"{i}={c!r}" for i, c in enumerate(net.classes)]) + ")")
    return code[y]


def cmd_predict(args: argparse.Namespace) -> int:
    # Everything is checked before the (slower) model load.
    if getattr(cyprop, "load", None) is None:
        raise RuntimeError(_NO_PERSISTENCE)
    if args.output == "-":   # as most tools take it (write ./- to name a file so)
        args.output = None
    if args.output is not None:   # (an empty name is refused, not taken as stdout)
        _check_destination(args.output, "--output", [args.input, args.model])
    delimiter = _delimiter(args.delimiter)
    datasets._check_regular_file(args.input, "CSV file")
    net = _load_model(args.model)
    X, _ = datasets.load_csv(args.input, target=None, delimiter=delimiter)
    if X.shape[1] != net.sizes[0]:
        raise ValueError(f"{args.input} has {X.shape[1]} columns, but the model takes "
                         f"{net.sizes[0]} features (the file must hold features only)")
    labels = net.predict(X)
    # the data's own labels where the model keeps them (cyprop train on a CSV file)
    names = labels if net.classes is None else [net.classes[i] for i in labels]
    text = "".join(f"{label}\n" for label in names)
    if args.output:
        # as Network.save writes: a write that fails part way (a full disk) keeps the
        # file that was there instead of leaving the first labels, which read as all
        target, mode = _archive.save_target(args.output)
        _archive.write_file_atomic(target, lambda fh: fh.write(text.encode()), mode)
    else:
        try:
            _write_whole(sys.stdout, text)
        except UnicodeEncodeError as exc:   # (raised before anything is written)
            start = text.rfind("\n", 0, exc.start) + 1
            label = text[start:text.index("\n", exc.start)]
            raise ValueError(f"the output's encoding ({exc.encoding}) cannot write the "
                             f"label {label!r}; write the labels to a file with --output "
                             "FILE (UTF-8), or set PYTHONIOENCODING=utf-8") from None
    return 0


def _write_whole(stream: Any, text: str) -> None:
    """``stream.write(text)``, all of it or an error.  Unbuffered (PYTHONUNBUFFERED,
    ``python -u``), sys.stdout writes straight to the file and drops the rest of a
    short write (a nearly full disk, the file-size limit) without a word: the labels
    ended part way with status 0.  The bytes go out until all are taken instead."""
    raw = getattr(stream, "buffer", None)
    data = memoryview(text.encode(getattr(stream, "encoding", None) or "utf-8"))
    # buffered, a short write is retried there; an encoding of more than a byte for
    # the labels' digits (UTF-16) is left to the stream, which adds no BOM
    if not isinstance(raw, io.RawIOBase) or len(data) != len(text):
        stream.write(text)
        return
    stream.flush()
    while data:
        data = data[raw.write(data) or 0:]   # (the next write reports what stopped it)


def cmd_export(args: argparse.Namespace) -> int:
    from . import interop

    _check_destination(args.output, "MODEL.onnx", [args.model])
    onnx = interop._import_onnx()   # before the model load: a missing onnx says so first
    newest = onnx.defs.onnx_opset_version()
    if args.opset is not None and not interop.MIN_OPSET <= args.opset <= newest:
        raise UsageError(f"--opset must be from {interop.MIN_OPSET} to {newest} (the newest "
                         f"this onnx knows), got {args.opset}")
    net = _load_model(args.model)
    interop.to_onnx(net, args.output, args.opset)
    print(f"wrote {args.output} (ONNX opset {args.opset or interop.DEFAULT_OPSET}, "
          f"{net.dtype.name}, layers {','.join(map(str, net.sizes))})")
    return 0


def _delimiter(text: str) -> str:
    # A tab is hard to type in a shell: accept its name and its escape.
    delimiter = "\t" if text in ("tab", "\\t") else text
    if len(delimiter) != 1 or delimiter in "\"\r\n":   # what Python's csv module takes
        raise UsageError(f"--delimiter must be one character (or 'tab'), not a quote or "
                         f"a line break, got {text!r}")
    return delimiter


# ------------------------------------------------------------------ explain
_EXPLAIN_EPILOG = """\
The CSV file is read as 'cyprop predict' reads it (a header row is recognised and
skipped, blank lines too); N counts its data rows from 0 (negative: from the end).
The row holds features only, unless --target-column names the column that holds the
label. A model saved by 'cyprop train --data csv:FILE:COLUMN' keeps its file's labels
(the 'classes:' line of its header): the row's label is then looked up among them,
and --target also takes a class's name. Other models number the labels of the file
as 'cyprop train' numbers them, so give the file the model was trained on, or one
with the same classes.

examples:
  cyprop explain --example textbook --plot step.png
  cyprop explain model.npz --row points.csv:3 --target 1
  cyprop explain model.npz --row data.csv:0 --target-column label --lr 0.5
  cyprop explain model.npz --row points.csv --target 0.1,0.9 --optimizer sgd"""


@dataclass
class RowSpec:
    path: str
    index: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.index}"


def _row_spec(text: str) -> RowSpec:
    """``FILE`` or ``FILE:N``; a path may itself hold ':', so ``:N`` is split off only
    when N is a whole number and the whole text is not a file."""
    path, sep, index = text.rpartition(":")
    if sep and path and not os.path.exists(text):
        try:
            return RowSpec(path, int(index))
        except ValueError:
            pass
    return RowSpec(text)


def cmd_explain(args: argparse.Namespace) -> int:
    _check_explain_args(args)
    if args.example:
        net, x, y, optimizer = textbook_example()
    else:
        datasets._check_regular_file(args.row.path, "CSV file")
        net = _load_model(args.model)
        x, y = _explain_sample(args, net)
        optimizer = None                  # the model's own, with its state, else SGD()
    optimizer = _explain_optimizer(args, net, optimizer)
    step = cyprop.explain(net, x, y, optimizer)
    print(step, flush=True)
    if args.plot:
        step.plot(path=args.plot)
        print(f"drawing written to {args.plot}")
    return 0


def _check_explain_args(args: argparse.Namespace) -> None:
    if args.example:
        extra = [flag for flag, value in (("MODEL", args.model), ("--row", args.row),
                                          ("--target", args.target),
                                          ("--target-column", args.target_column))
                 if value is not None]
        if extra:
            raise UsageError(f"--example {args.example} brings its own network and sample; "
                             f"leave out {', '.join(extra)}")
    else:
        if args.model is None:
            raise UsageError("give a MODEL.npz (or --example textbook)")
        if args.row is None:
            raise UsageError("give the sample with --row FILE.csv[:N]")
        if args.target is None and args.target_column is None:
            raise UsageError("give the sample's target with --target LABEL (or T1,T2,... "
                             "for each output), or --target-column COLUMN of the CSV file")
        if getattr(cyprop, "load", None) is None:
            raise RuntimeError(_NO_PERSISTENCE)
    _check_rate("--lr", args.lr)
    if args.plot is not None:   # (an empty name is refused, not taken as no --plot)
        _check_plot_destination(args.plot,
                                [args.model, None if args.row is None else args.row.path])


def _explain_sample(args: argparse.Namespace, net: Network) -> tuple[np.ndarray, Any]:
    """(x, y) of the row ``args.row`` of the CSV file, for ``net``."""
    path, index = args.row.path, args.row.index
    delimiter = _delimiter(args.delimiter)
    classes = None    # the file's own label of each of its class numbers
    if args.target_column is None:
        X, labels = datasets.load_csv(path, target=None, delimiter=delimiter)
    else:
        column = args.target_column
        try:
            column = int(column)
        except ValueError:
            pass          # a column name
        X, labels, classes = datasets.load_csv(path, target=column, delimiter=delimiter,
                                               return_classes=True)
    n_inputs = net.sizes[0]
    if X.shape[1] != n_inputs:
        hint = ("with the target column left out" if args.target_column is not None
                else "the row must hold features only; name a label column with "
                     "--target-column")
        what = "columns" if args.target_column is None else "feature columns"
        raise ValueError(f"{path} has {X.shape[1]} {what}, but the model takes "
                         f"{n_inputs} features ({hint})")
    if not -len(X) <= index < len(X):
        raise ValueError(f"--row {args.row}: the file has {len(X)} data "
                         f"row{'s' if len(X) != 1 else ''}, numbered 0 to {len(X) - 1}")
    if args.target_column is not None:
        assert labels is not None   # read with a target column
        return X[index], _as_the_model_numbers(net, classes, labels[[index]],
                                               f"--row {args.row}")[0]
    return X[index], _parse_target(args.target, net.sizes[-1], net.classes)


def _parse_target(text: str, n_outputs: int,
                  classes: Sequence[int | str] | None = None) -> int | np.ndarray:
    """--target as explain takes it: a class number (or the name of one of the model's
    classes), or a (1, n_outputs) target row."""
    if classes is not None and text in classes and isinstance(classes[0], str):
        return classes.index(text)   # (a number is a class number, as without names)
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        hint = ("class names are not stored in the model: give the number 'cyprop train' "
                "showed for the class" if classes is None else
                "give the class's number or name: " + _abbreviate(
                    [f"{i}={c}" for i, c in enumerate(classes)]))
        raise ValueError(f"--target {text!r}: expected a class number or comma-separated "
                         f"numbers, one per output ({hint})") from None
    if len(values) == 1 and n_outputs > 1:
        value = values[0]
        if not (value.is_integer() and 0 <= value < n_outputs):
            raise ValueError(f"--target {text}: a class number must be a whole number from "
                             f"0 to {n_outputs - 1}; for target values give {n_outputs}, "
                             "one per output, comma-separated")
        return int(value)
    if len(values) != n_outputs:
        raise ValueError(f"--target has {len(values)} values, but the model has "
                         f"{n_outputs} output{'s' if n_outputs > 1 else ''}")
    return np.array([values])


def _explain_optimizer(args: argparse.Namespace, net: Network,
                       optimizer: Optimizer | None) -> Optimizer | None:
    """The optimizer of the step: --optimizer anew, or ``optimizer`` (None: the
    model's own) with --lr for its learning rate."""
    if args.optimizer is not None:
        cls = {name.lower(): cls for name, cls in OPTIMIZERS.items()}[args.optimizer]
        return cls() if args.lr is None else cls(learning_rate=args.lr)
    if args.lr is None:
        return optimizer
    if optimizer is None:
        optimizer = net.optimizer
        if optimizer is None:
            return cyprop.SGD(learning_rate=args.lr)
    # Another rate for the same optimizer, its state kept (net came from a file).
    optimizer.learning_rate = optimizer.initial_learning_rate = args.lr
    return optimizer


# --------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    print(f"cyprop:          {cyprop.__version__} ({Path(cyprop.__file__).parent})")
    print(f"Python:          {platform.python_version()} ({sys.executable})")
    print(f"NumPy:           {np.__version__}")
    print(f"backends:        {', '.join(cyprop.available_backends())}")
    for i, line in enumerate(_compiled_modules()):
        print(("compiled module: " if i == 0 else " " * 17) + line)
    model, flags = _cpu_info()
    print(f"platform:        {platform.platform()}")
    print(f"CPU:             {model or platform.processor() or 'unknown'}")
    if flags is not None:
        print(f"CPU features:    {', '.join(flags) or 'none of ' + ', '.join(_FLAGS)}")
    print(f"CPU cores:       {_usable_cores()} usable of {os.cpu_count()}")
    print(f"OMP_NUM_THREADS: {os.environ.get('OMP_NUM_THREADS', 'not set')}")
    config = cyprop.config()
    if "threads" in config:
        print(f"threads:         {config['threads']} (parallel parts of large mini-batches, "
              "forward chunks)")
        print(f"BLAS:            {config['blas']}")
    return 0


def _compiled_modules() -> list[str]:
    """Where the compiled core was loaded from: one line per kernel build."""
    from . import _backend
    compiled = getattr(_backend, "_compiled", None)
    if compiled is None:
        return [f"not available ({getattr(_backend, '_IMPORT_ERROR', 'import failed')})"]
    # The core may be built once per instruction set, one of them chosen at import.
    kernels = getattr(compiled, "KERNELS", None)
    if isinstance(kernels, dict) and kernels:
        chosen = getattr(compiled, "CHOSEN", None)
        return [f"{getattr(module, '__file__', '?')} ({name}"
                f"{', in use' if name == chosen else ''})" for name, module in kernels.items()]
    # an extension module always has a __file__
    return [importlib.import_module("cyprop._core").__file__]  # type: ignore[list-item]


#: The instruction-set extensions that matter for numeric code, oldest first.
_FLAGS = ("sse2", "sse4_2", "avx", "avx2", "fma", "avx512f", "neon", "asimd", "sve")


def _cpu_info(cpuinfo: str = "/proc/cpuinfo") -> tuple[str | None, list[str] | None]:
    """(model name, relevant flags) from /proc/cpuinfo; (None, None) where there is none."""
    try:
        with open(cpuinfo) as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or fields.get("cpu model")
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [flag for flag in _FLAGS if flag in present]


def _usable_cores() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count()


# -------------------------------------------------------------------- bench
def cmd_bench(bench_args: list[str]) -> int:
    """``cyprop bench ARGS``: the benchmark suite (cyprop.bench), run in this process
    with ARGS as its command line; returns its exit status."""
    from .bench import main as bench_main   # here: `import cyprop` never loads it
    return bench_main(bench_args, prog="cyprop bench")
