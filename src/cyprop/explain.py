"""One backpropagation step for one sample, laid out the way textbooks show it.

``explain(net, x, y)`` works out, for one training sample, what every unit computes
going forward (its net input and output), the error each unit gets going backward,
and the weights and biases the optimizer's step gives, without changing ``net``.
``str(step)`` prints the tables of Han, Kamber & Pei's worked example (Data Mining:
Concepts and Techniques, 3rd edition, section 9.2.3, Tables 9.1-9.4); ``step.plot()``
draws the network with the numbers on it.  ``textbook_example()`` builds that
example, so that cyprop's output can be checked against the book.

Units are numbered as in the textbooks: the inputs first, then the hidden layers,
the output last, 1..N across the whole network; ``w_ij`` is the weight from unit i
to unit j and ``theta_j`` the bias of unit j.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import os
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _archive, _maths, _reference, _validation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .network import Network
    from .optimizers import Optimizer

#: Han, Kamber & Pei's example: weights w_ij (unit i -> unit j) and biases theta_j.
_BOOK_WEIGHTS = {(1, 4): 0.2, (1, 5): -0.3, (2, 4): 0.4, (2, 5): 0.1, (3, 4): -0.5,
                 (3, 5): 0.2, (4, 6): -0.3, (5, 6): -0.2}
_BOOK_BIASES = {4: -0.4, 5: 0.2, 6: 0.1}


@dataclasses.dataclass(eq=False, repr=False)
class Step:
    """One per-sample backpropagation step (see ``explain``).

    Lists hold one array per weight layer, the first hidden layer first and the output
    layer last, in the network's dtype: ``weights[l]`` is ``(sizes[l+1], sizes[l])``
    like ``Network.weights``, the others are vectors over the layer's units.

    Each parameter is kept as the attribute of the same name.

    Parameters
    ----------
    sizes : tuple of int
        The network's layer sizes, inputs first.
    activations : tuple of str
        The activation of each weight layer.
    loss_name : str
        The network's loss.
    x : numpy.ndarray
        The input.
    target : numpy.ndarray
        The target vector (class labels one-hot encoded).
    weights, biases : list of numpy.ndarray
        The values before the step.
    net_inputs : list of numpy.ndarray
        The weighted sums z = W a + b of each layer's units (I_j).
    outputs : list of numpy.ndarray
        Their activations a = f(z) (O_j).
    errors : list of numpy.ndarray
        Each unit's error Err_j = -dLoss/dz_j for this sample: the output units'
        is (T - O) f'(z) for the mse loss 0.5 * sum (O - T)^2, a hidden unit's is
        f'(z_j) * sum_k w_jk Err_k.  Plain SGD moves w_ij by learning_rate * Err_j * O_i.
    new_weights, new_biases : list of numpy.ndarray
        The values after the optimizer's step.
    loss : float
        The sample's loss before the step.
    optimizer : Optimizer
        A copy of the optimizer after the step (its state and step count include
        it); the network's own optimizer is unchanged.
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss_name: str
    x: np.ndarray
    target: np.ndarray
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    net_inputs: list[np.ndarray]
    outputs: list[np.ndarray]
    errors: list[np.ndarray]
    new_weights: list[np.ndarray]
    new_biases: list[np.ndarray]
    loss: float
    optimizer: Optimizer

    # ------------------------------------------------------------- numbering
    def unit(self, layer: int, index: int) -> int:
        """The textbook number (1..N) of a unit.

        Parameters
        ----------
        layer : int
            The layer, 0 for the inputs.
        index : int
            The unit's index within the layer, from 0.

        Returns
        -------
        int
            The unit's number, counting from 1 across the whole network.
        """
        return sum(self.sizes[:layer]) + index + 1

    def _units(self, layer: int) -> range:
        return range(self.unit(layer, 0), self.unit(layer, self.sizes[layer]))

    def _weight_name(self, i: int, j: int) -> str:
        # w14 as in the book; w1,12 once a number has two digits, so it reads one way
        separator = "," if sum(self.sizes) > 9 else ""
        return f"w{i}{separator}{j}"

    def _layer_names(self) -> list[str]:
        """Who the units of each layer are, e.g. "1-3 inputs"."""
        names = []
        for layer, size in enumerate(self.sizes):
            first, last = self.unit(layer, 0), self.unit(layer, size - 1)
            span = f"{first}" if first == last else f"{first}-{last}"
            if layer == 0:
                what = "input" if size == 1 else "inputs"
            elif layer == len(self.sizes) - 1:
                what = "output"
            elif len(self.sizes) == 3:
                what = "hidden"
            else:
                what = f"hidden layer {layer}"
            names.append(f"{span} {what}")
        return names

    # ----------------------------------------------------------------- text
    def __str__(self) -> str:
        lines = [
            f"One backpropagation step: a {'-'.join(map(str, self.sizes))} network, "
            f"activations {', '.join(self.activations)}, loss {self.loss_name}",
            f"Optimizer: {self.optimizer!r}",
            f"Units: {'; '.join(self._layer_names())}",
            "",
            "Input and target",
        ]
        inputs = [f"x{n} = {_value(v)}" for n, v in zip(self._units(0), self.x)]
        targets = [f"T{n} = {_value(v)}" for n, v in zip(self._units(len(self.sizes) - 1),
                                                          self.target)]
        lines += _wrapped(inputs) + _wrapped(targets)
        lines += [f"Loss before the step: {float(self.loss):.4g}", ""]

        lines += ["Net input and output of each unit",
                  f"{'Unit j':>8}  {'Net input I_j':>14}  {'Output O_j':>11}"]
        for layer in range(1, len(self.sizes)):
            for n, z, a in zip(self._units(layer), self.net_inputs[layer - 1],
                               self.outputs[layer - 1]):
                lines.append(f"{n:>8}  {_value(z):>14}  {_value(a):>11}")
        lines.append("")

        # backward, as backpropagation computes them
        lines += ["Error of each unit, Err_j = -dLoss/dI_j (output first)",
                  f"{'Unit j':>8}  {'Err_j':>9}"]
        for layer in range(len(self.sizes) - 1, 0, -1):
            for n, err in reversed(list(zip(self._units(layer), self.errors[layer - 1]))):
                lines.append(f"{n:>8}  {_error(err):>9}")
        lines.append("")

        # in the book's order: the weights from the output layer back, then the biases
        rows = []
        for l in range(len(self.weights) - 1, -1, -1):
            old, new = self.weights[l], self.new_weights[l]
            for i_index, i in enumerate(self._units(l)):
                for j_index, j in enumerate(self._units(l + 1)):
                    rows.append((self._weight_name(i, j), old[j_index, i_index],
                                 new[j_index, i_index]))
        for l in range(len(self.biases) - 1, -1, -1):
            for j_index, j in reversed(list(enumerate(self._units(l + 1)))):
                rows.append((f"theta{j}", self.biases[l][j_index], self.new_biases[l][j_index]))
        width = max(len("Weight or bias"), *(len(name) for name, _, _ in rows))
        lines += ["Weights and biases before and after the step",
                  f"  {'Weight or bias':<{width}}  {'Old value':>10}  {'New value':>10}"]
        lines += [f"  {name:<{width}}  {_value(old):>10}  {_value(new):>10}"
                  for name, old, new in rows]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<Step: a {'-'.join(map(str, self.sizes))} network, loss "
                f"{float(self.loss):.6g} before the step>")

    # ----------------------------------------------------------------- plot
    def plot(self, path: str | os.PathLike[str] | IO[bytes] | None = None,
             show: bool = False) -> Figure:
        """Draw the network: units in columns (inputs left), each weight a line.

        Lines are coloured by the weight's new value and units by their output (a
        blue-red scale centred on 0, one colour bar each); small networks get the
        numbers on the drawing: each unit's number, net input, output and error, each
        weight's and bias's old and new value.

        Parameters
        ----------
        path : str, os.PathLike or binary file object, optional
            Save the figure there (a PNG unless the suffix asks for another format),
            atomically, as ``Network.save`` writes; a file object gets matplotlib's
            default format.
        show : bool, default False
            Also open it through ``matplotlib.pyplot``.

        Returns
        -------
        matplotlib.figure.Figure
            The drawing.

        Raises
        ------
        ImportError
            If matplotlib is not installed.
        ValueError
            If matplotlib cannot write the suffix's format, or ``path`` is not a
            regular file (a FIFO, a device).
        OSError
            If the file cannot be written (the file that was there, if any, is kept).
        """
        try:
            from matplotlib.collections import LineCollection
            from matplotlib.colors import Normalize
            from matplotlib.figure import Figure
        except ImportError:
            raise ImportError("Step.plot needs matplotlib, which is not installed: "
                              'pip install matplotlib (or pip install "cyprop[plot]")') from None
        n_columns, tallest = len(self.sizes), max(self.sizes)
        size = (max(6.0, 3.2 * n_columns), max(4.5, 1.5 * min(tallest, 12)))
        if show:
            import matplotlib.pyplot as plt
            fig = plt.figure(figsize=size, layout="constrained")
        else:
            # no pyplot: no GUI backend and no global figure list are involved
            fig = Figure(figsize=size, layout="constrained")
        ax = fig.add_subplot()
        # Positions: layer l in column l, its units spread evenly around the middle.
        positions = [[(float(l), (size_l - 1) / 2 - k) for k in range(size_l)]
                     for l, size_l in enumerate(self.sizes)]
        n_weights = sum(W.size for W in self.weights)
        label_weights = n_weights <= 40          # more labels would only overlap
        label_units = sum(self.sizes) <= 40

        segments: list[list[tuple[float, float]]] = []
        values: list[float] = []
        for l, W in enumerate(self.new_weights):
            for j in range(W.shape[0]):
                for i in range(W.shape[1]):
                    segments.append([positions[l][i], positions[l + 1][j]])
                    values.append(float(W[j, i]))
        reach = max(1e-12, max(abs(v) for v in values))
        weight_norm = Normalize(-reach, reach)
        lines = LineCollection(segments, cmap="coolwarm", norm=weight_norm,
                               linewidths=[0.8 + 2.5 * abs(v) / reach for v in values],
                               zorder=1)
        lines.set_array(np.asarray(values))
        ax.add_collection(lines)
        fig.colorbar(lines, ax=ax, label="new weight", location="bottom", shrink=0.5,
                     aspect=40)

        if label_weights:
            for l, (old, new) in enumerate(zip(self.weights, self.new_weights)):
                for j in range(new.shape[0]):
                    for i in range(new.shape[1]):
                        (x0, y0), (x1, y1) = positions[l][i], positions[l + 1][j]
                        # a third of the way along: labels of lines that cross stay apart
                        ax.text(x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3,
                                f"{self._weight_name(self.unit(l, i), self.unit(l + 1, j))}"
                                f" {_value(old[j, i])}→{_value(new[j, i])}",
                                fontsize=7, ha="center", va="center", zorder=3,
                                bbox={"boxstyle": "round,pad=0.15", "fc": "white",
                                      "ec": "none", "alpha": 0.8})

        activity = [np.asarray(self.x, dtype=np.float64)] + [
            np.asarray(a, dtype=np.float64) for a in self.outputs]
        reach = max(1e-12, max(float(np.max(np.abs(a))) for a in activity))
        xs = [p[0] for column in positions for p in column]
        ys = [p[1] for column in positions for p in column]
        units = ax.scatter(xs, ys, s=900 if label_units else 60,
                           c=np.concatenate(activity), cmap="coolwarm",
                           norm=Normalize(-reach, reach), edgecolors="black", zorder=2)
        fig.colorbar(units, ax=ax, label="input, or output of the unit", shrink=0.8)
        if label_units:
            for l, column in enumerate(positions):
                for k, (x, y) in enumerate(column):
                    n = self.unit(l, k)
                    ax.text(x, y, str(n), ha="center", va="center", fontsize=10,
                            fontweight="bold", zorder=4)
                    if l == 0:
                        note = f"x{n} = {_value(self.x[k])}"
                    else:
                        note = (f"I{n} = {_value(self.net_inputs[l - 1][k])}\n"
                                f"O{n} = {_value(self.outputs[l - 1][k])}\n"
                                f"Err{n} = {_error(self.errors[l - 1][k])}\n"
                                f"θ{n} {_value(self.biases[l - 1][k])}→"
                                f"{_value(self.new_biases[l - 1][k])}")
                    ax.text(x, y - 0.22, note, ha="center", va="top", fontsize=7, zorder=4,
                            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none",
                                  "alpha": 0.85})

        ax.set_xlim(-0.5, n_columns - 0.5)
        ax.set_ylim(-(tallest - 1) / 2 - 0.9, (tallest - 1) / 2 + 0.5)
        ax.set_xticks(range(n_columns))
        hidden = (["hidden"] if n_columns == 3
                  else [f"hidden {l}" for l in range(1, n_columns - 1)])
        ax.set_xticklabels(["input", *hidden, "output"])
        ax.set_yticks([])
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"One backpropagation step: loss {float(self.loss):.4g} before it, "
                     f"{type(self.optimizer).__name__}(learning_rate="
                     f"{self.optimizer.learning_rate:g})", fontsize=10)
        if path is not None:
            _save_figure(fig, path)
        if show:
            plt.show()
        return fig


def _save_figure(fig: Figure, path: str | os.PathLike[str] | IO[bytes]) -> None:
    """``fig.savefig(path)``, written as ``Network.save`` writes: never into a FIFO
    (opening one blocks until it is read) or a device, and atomically, so that a
    failure leaves the file that was there.  matplotlib's naming is kept: without a
    suffix, the file gets its default format's.  A file object is matplotlib's to
    write (in its default format), as ``savefig`` takes it."""
    from matplotlib import rcParams

    if hasattr(path, "write"):
        fig.savefig(path)
        return
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    suffix = os.path.splitext(name)[1][1:]
    form = suffix or rcParams["savefig.format"]
    if not suffix:
        # the name given is checked first: a folder, FIFO or device (/dev/null) with
        # the suffix added would name a new file inside or beside it
        _archive.save_target(name)
        name = name.rstrip(".") + "." + form
    buffer = io.BytesIO()
    fig.savefig(buffer, format=form)   # an unknown format is refused before any file
    target, mode = _archive.save_target(name)
    _archive.write_file_atomic(target, lambda fh: fh.write(buffer.getbuffer()), mode)


def explain(net: Network, x: npt.ArrayLike, y: npt.ArrayLike,
            optimizer: Optimizer | None = None) -> Step:
    """One per-sample backpropagation step for the sample ``x`` with target ``y``.

    The step is worked out and returned as a ``Step``; ``net`` is left unchanged.
    The new weights are exactly those of ``fit(x, y, epochs=1, batch_size=1,
    shuffle=False, optimizer=optimizer)`` on a copy of the network (so an optimizer
    given here that is not ``net.optimizer`` starts afresh, as ``fit`` starts it;
    ``max_norm`` applies), computed by the network's own backend; the net inputs,
    outputs and errors come from the NumPy reference maths, in the network's dtype.

    Dropout is left out: ``explain`` shows the plain step, the one ``fit`` takes
    with ``net.dropout`` set to 0 (a step with dropout depends on random masks).

    Parameters
    ----------
    net : Network
        The network; not changed.
    x : array_like
        One sample: ``(n_inputs,)`` or one row ``(1, n_inputs)``.
    y : array_like
        A class label (one-hot encoded for several outputs) or a target vector (one
        number for a single output).
    optimizer : Optimizer, optional
        The optimizer that takes the step; by default the network's own
        (``net.optimizer``, with its state and step count), else ``SGD()``.

    Returns
    -------
    Step
        The step's numbers, before and after.

    Raises
    ------
    TypeError
        If ``net`` is not a ``Network``.
    ValueError
        If ``x`` or ``y`` is not one sample, or does not fit the network.
    FloatingPointError
        If the sample's loss or gradient overflows inside the network (as
        ``net.loss`` refuses it).
    """
    from .network import Network, _check_result

    if not isinstance(net, Network):
        raise TypeError(f"explain takes a cyprop.Network, got {type(net).__name__}")
    X, Y = _one_sample(net, x, y)
    trial = net.copy()          # a consistent snapshot, even while net trains elsewhere
    arch, params = trial.arch, trial._params.copy()
    weights, biases = arch.split(params)

    net_inputs: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    a = X
    # (a net input may overflow where the unit saturates, as in the backends: no warning)
    with np.errstate(over="ignore", invalid="ignore"):
        for W, b, activation in zip(weights, biases, arch.activations):
            z = a @ W.T + b
            a = _maths.ACTIVATE[activation](z)
            net_inputs.append(z[0])
            outputs.append(a[0])
        loss = float(_maths.sample_losses(arch.loss, arch.output, a, z, Y)[0])
        # For one sample dLoss/db_j = dLoss/dz_j, so the bias gradients are the errors.
        _, _, grad = _reference.loss_and_gradients(arch, params, X, Y, True)
    # refused as net.loss and net.gradients refuse them: the step's fit would call an
    # overflow before any step a divergence
    _check_result(np.array([loss]), "the loss", params, "inputs and targets")
    _check_result(grad, "the gradient", params, "inputs and targets")
    errors = [-g for g in arch.split(grad)[1]]

    if optimizer is not None and optimizer is not net.optimizer:
        optimizer = copy.deepcopy(optimizer)   # fit resets it; the caller's stays as it was
    else:
        optimizer = None                       # the copy's own optimizer (or SGD())
    trial.dropout = 0.0
    trial.fit(X, Y, epochs=1, batch_size=1, shuffle=False, optimizer=optimizer, verbose=0)
    assert trial.optimizer is not None   # set by that fit

    return Step(sizes=tuple(arch.sizes), activations=tuple(arch.activations),
                loss_name=arch.loss, x=X[0].copy(), target=Y[0].copy(),
                weights=[W.copy() for W in weights], biases=[b.copy() for b in biases],
                net_inputs=net_inputs, outputs=outputs, errors=errors,
                new_weights=[W.copy() for W in trial.weights],
                new_biases=[b.copy() for b in trial.biases],
                loss=loss, optimizer=trial.optimizer)


def textbook_example(backend: str = "auto", dtype: npt.DTypeLike = "float64",
                     ) -> tuple[Network, np.ndarray, np.ndarray, Optimizer]:
    """Han, Kamber & Pei's backpropagation example, ready for ``explain``.

    Data Mining: Concepts and Techniques, 3rd ed., Figure 9.5, Tables 9.1-9.4: a
    3-2-1 sigmoid network, loss 0.5 (T - O)^2 ("mse"), input (1, 0, 1), target 1,
    learning rate 0.9; ``str(explain(*textbook_example()))`` prints the book's tables.

    Exact values against the book's printed figures (the book rounds to three
    decimals, errors to four)::

        unit  net input            output               error
        4     I4 = -0.7            O4 = 0.33181         Err4 = -0.0087246
        5     I5 =  0.1            O5 = 0.52498         Err5 = -0.0065421
        6     I6 = -0.10454        O6 = 0.47389         Err6 =  0.13117 (book: 0.1311)

        new w46 = -0.26083, w56 = -0.13803, w14 = 0.19215, w15 = -0.30589,
        w24 = 0.4, w25 = 0.1, w34 = -0.50785, w35 = 0.19411,
        theta6 = 0.21805, theta5 = 0.19411, theta4 = -0.40785;  loss 0.13840

    Every printed figure is the exact value rounded, except Err6: the book works
    from the rounded output O6 = 0.474, and 0.474 (1 - 0.474)^2 = 0.13114 gives its
    0.1311, where the exact O6 = 0.473889 gives 0.13117, printed 0.1312.  The book
    also goes on from rounded values (O4 = 0.332, Err6 = 0.1311, Err4 = -0.0087, ...),
    but each of its later figures comes out the same at three decimals.

    Parameters
    ----------
    backend : str, default "auto"
        The network's backend.
    dtype : str or numpy dtype, default "float64"
        The network's dtype.

    Returns
    -------
    net : Network
        The book's network, with its weights and biases.
    x : numpy.ndarray
        The input (1, 0, 1).
    y : numpy.ndarray
        The target (1,).
    optimizer : SGD
        ``SGD(learning_rate=0.9)``.
    """
    from .network import Network
    from .optimizers import SGD

    net = Network([3, 2, 1], activation="sigmoid", output="sigmoid", loss="mse",
                  dtype=dtype, backend=backend, seed=0)
    # weights[l][j, i] is the weight from unit i of layer l to unit j of layer l + 1
    net.weights = [[[_BOOK_WEIGHTS[(i, j)] for i in (1, 2, 3)] for j in (4, 5)],
                   [[_BOOK_WEIGHTS[(i, 6)] for i in (4, 5)]]]
    net.biases = [[_BOOK_BIASES[4], _BOOK_BIASES[5]], [_BOOK_BIASES[6]]]
    return net, np.array([1.0, 0.0, 1.0]), np.array([1.0]), SGD(learning_rate=0.9)


def _one_sample(net: Network, x: Any, y: Any,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y) as (1, n_inputs) and (1, n_outputs) arrays of the network's dtype."""
    _validation._refuse_sparse("x", x)   # (np.asarray would make it a 0-d object array)
    _validation._refuse_sparse("y", y)
    x = np.asarray(_validation._unmasked("x", x))   # (np.asarray drops a mask)
    if x.ndim == 2 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 1:
        raise ValueError(f"explain takes one sample: x must be (n_inputs,) or one row "
                         f"(1, n_inputs), got shape {x.shape}")
    y = np.asarray(_validation._unmasked("y", y))
    if y.ndim == 0:
        y = y.reshape(1)        # a class label, or the target of a single output
    elif y.ndim == 1 and net.arch.n_outputs > 1 and y.shape[0] == net.arch.n_outputs:
        y = y.reshape(1, -1)    # a target vector
    elif y.ndim > 2 or y.shape[0] != 1:   # (one value, or one row, goes on)
        # (a target vector of the wrong length was taken for several samples' labels,
        # and refused as "not whole numbers" or "different numbers of samples")
        raise ValueError(f"explain takes one sample: y must be a class label or a target "
                         f"vector of the network's {net.arch.n_outputs} outputs, got shape "
                         f"{y.shape}")
    return net._check_data(x.reshape(1, -1), y)


def _value(v: Any) -> str:
    return f"{float(v):.3f}"


def _error(v: Any) -> str:
    return f"{float(v):.4f}"


def _wrapped(items: list[str], per_line: int = 6) -> list[str]:
    return ["  " + "   ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
