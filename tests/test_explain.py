"""cyprop.explain: one per-sample step, the same as fit's, shown as the textbooks show it.

The worked example is Han, Kamber & Pei's (Data Mining: Concepts and Techniques, 3rd
ed., Tables 9.1-9.4); every other case checks the step against a real
``fit(x, y, epochs=1, batch_size=1, shuffle=False)`` on a copy, on both backends
(float64 rtol 1e-9, float32 1e-4).
"""

import copy
import re
import sys
import warnings

import numpy as np
import pytest

import cyprop
from cyprop import _maths
from cyprop.explain import Step, explain, textbook_example

from conftest import (ATOL, COMBOS, RTOL, assert_failed_write_keeps_the_file,
                      assert_refuses_a_fifo_in_a_child, make_data)

BACKENDS = ("cython", "numpy")
DTYPES = ("float64", "float32")
OPTIMIZERS = {
    "sgd": lambda: cyprop.SGD(0.05),
    "momentum": lambda: cyprop.SGD(0.05, momentum=0.9),
    "nesterov": lambda: cyprop.SGD(0.05, momentum=0.9, nesterov=True),
    "weight_decay": lambda: cyprop.SGD(0.05, momentum=0.5, weight_decay=0.01),
    "adam": lambda: cyprop.Adam(0.01, weight_decay=0.01),
    "rmsprop": lambda: cyprop.RMSprop(0.01, momentum=0.5),
    "adagrad": lambda: cyprop.Adagrad(0.05),
    "rprop": lambda: cyprop.Rprop(0.01),
}


def close(actual, desired, dtype, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(desired, dtype=np.float64),
                               rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=what)


def table(text):
    """{first word of a table row: the numbers after it} for every row of str(step)."""
    rows = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 2 and all(re.fullmatch(r"-?\d+\.\d+", w) for w in words[1:]):
            rows.setdefault(words[0], []).append(words[1:])
    return rows


# ------------------------------------------------------------------ the textbook
# The figures Han, Kamber & Pei print (Tables 9.2-9.4).
BOOK_NET_INPUTS = {"4": "-0.700", "5": "0.100", "6": "-0.105"}
BOOK_OUTPUTS = {"4": "0.332", "5": "0.525", "6": "0.474"}
BOOK_ERRORS = {"6": "0.1311", "5": "-0.0065", "4": "-0.0087"}
BOOK_NEW_VALUES = {"w46": "-0.261", "w56": "-0.138", "w14": "0.192", "w15": "-0.306",
                   "w24": "0.400", "w25": "0.100", "w34": "-0.508", "w35": "0.194",
                   "theta6": "0.218", "theta5": "0.194", "theta4": "-0.408"}
# Where the exact computation rounds differently: the book takes Err6 from its rounded
# O6 = 0.474 (0.474 * 0.526 * 0.526 = 0.13114); the exact O6 = 0.473889 gives 0.13117.
BOOK_ROUNDING = {"Err6": ("0.1311", "0.1312")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_textbook_tables_print_the_book_figures(backend):
    text = str(explain(*textbook_example(backend=backend)))
    rows = table(text)
    for unit in ("4", "5", "6"):
        assert rows[unit][0] == [BOOK_NET_INPUTS[unit], BOOK_OUTPUTS[unit]], unit
        expected = BOOK_ERRORS[unit]
        book, exact = BOOK_ROUNDING.get(f"Err{unit}", (expected, expected))
        assert book == expected
        assert rows[unit][1] == [exact], unit
    for name, new in BOOK_NEW_VALUES.items():
        assert rows[name] == [[rows[name][0][0], new]], name
    # the layout: inputs and the target, errors output first, the book's update order
    assert "x1 = 1.000   x2 = 0.000   x3 = 1.000" in text
    assert "T6 = 1.000" in text
    assert "Units: 1-3 inputs; 4-5 hidden; 6 output" in text
    errors = text[text.index("Err_j = "):]
    assert errors.index("  6  ") < errors.index("  5  ") < errors.index("  4  ")
    order = [line.split()[0] for line in text.splitlines()
             if line.split() and line.split()[0] in BOOK_NEW_VALUES]
    assert order == list(BOOK_NEW_VALUES)


def test_textbook_exact_values():
    net, x, y, optimizer = textbook_example()
    step = explain(net, x, y, optimizer)
    sigmoid = lambda z: 1 / (1 + np.exp(-z))   # noqa: E731
    o4, o5 = sigmoid(-0.7), sigmoid(0.1)
    i6 = -0.3 * o4 - 0.2 * o5 + 0.1
    o6 = sigmoid(i6)
    err6 = o6 * (1 - o6) * (1 - o6)           # the book's Err_j = O_j (1 - O_j)(T_j - O_j)
    err4, err5 = o4 * (1 - o4) * -0.3 * err6, o5 * (1 - o5) * -0.2 * err6
    np.testing.assert_allclose(step.net_inputs[0], [-0.7, 0.1], rtol=1e-12)
    np.testing.assert_allclose(step.net_inputs[1], [i6], rtol=1e-12)
    np.testing.assert_allclose(step.outputs[0], [o4, o5], rtol=1e-12)
    np.testing.assert_allclose(step.outputs[1], [o6], rtol=1e-12)
    np.testing.assert_allclose(step.errors[1], [err6], rtol=1e-12)
    np.testing.assert_allclose(step.errors[0], [err4, err5], rtol=1e-12)
    np.testing.assert_allclose(step.loss, 0.5 * (1 - o6) ** 2, rtol=1e-12)
    # the book's rule: w_ij += l Err_j O_i, theta_j += l Err_j
    np.testing.assert_allclose(step.new_weights[1], [[-0.3 + 0.9 * err6 * o4,
                                                      -0.2 + 0.9 * err6 * o5]], rtol=1e-12)
    np.testing.assert_allclose(step.new_weights[0],
                               np.array([[0.2, 0.4, -0.5], [-0.3, 0.1, 0.2]])
                               + 0.9 * np.outer([err4, err5], x), rtol=1e-12)
    np.testing.assert_allclose(step.new_biases[0], [-0.4 + 0.9 * err4, 0.2 + 0.9 * err5],
                               rtol=1e-12)
    np.testing.assert_allclose(step.new_biases[1], [0.1 + 0.9 * err6], rtol=1e-12)
    # and the figures the docstring gives
    assert (round(o6, 6), round(err6, 5), round(float(step.loss), 5)) == (0.473889, 0.13117,
                                                                          0.1384)


def test_textbook_example_is_fresh_each_time():
    net, x, y, optimizer = textbook_example()
    assert net.sizes == [3, 2, 1] and net.loss_name == "mse"
    assert net.activations == ["sigmoid", "sigmoid"]
    assert optimizer.learning_rate == 0.9 and optimizer.steps == 0
    np.testing.assert_array_equal(net.weights[0], [[0.2, 0.4, -0.5], [-0.3, 0.1, 0.2]])
    np.testing.assert_array_equal(net.weights[1], [[-0.3, -0.2]])
    np.testing.assert_array_equal(net.biases[0], [-0.4, 0.2])
    np.testing.assert_array_equal(net.biases[1], [0.1])
    net.weights[0][0, 0] = 5.0
    assert textbook_example()[0].weights[0][0, 0] == 0.2


# Matt Mazur's "A Step by Step Backpropagation Example" (2015): a 2-2-2 sigmoid network,
# squared error, learning rate 0.5; the figures it prints (its biases stay fixed, which
# changes none of the new weights of the first step).
MAZUR_LOSS = 0.298371109
MAZUR_NEW_WEIGHTS = ([[0.149780716, 0.19956143], [0.24975114, 0.29950229]],
                     [[0.35891648, 0.408666186], [0.511301270, 0.561370121]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_mazurs_worked_example(backend):
    net = cyprop.Network([2, 2, 2], activation="sigmoid", output="sigmoid", loss="mse",
                         backend=backend)
    net.weights = [[[0.15, 0.20], [0.25, 0.30]], [[0.40, 0.45], [0.50, 0.55]]]
    net.biases = [[0.35, 0.35], [0.60, 0.60]]
    x, target = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    step = explain(net, x, target, cyprop.SGD(0.5))
    assert round(step.loss, 9) == MAZUR_LOSS
    assert round(net.loss(x[None], target[None]), 9) == MAZUR_LOSS
    net.fit(x[None], target[None], epochs=1, batch_size=1, shuffle=False, verbose=0,
            optimizer=cyprop.SGD(0.5))
    for new, book, shown in zip(net.weights, MAZUR_NEW_WEIGHTS, step.new_weights):
        np.testing.assert_allclose(new, book, atol=5e-9)
        np.testing.assert_array_equal(shown, new)


# ------------------------------------------------------------- the same as fit
def fit_one_step(net, x, y, optimizer):
    trial = net.copy()
    trial.fit(np.atleast_2d(x), np.atleast_1d(y) if np.ndim(y) == 0 else np.atleast_2d(y),
              epochs=1, batch_size=1, shuffle=False, optimizer=optimizer, verbose=0)
    return trial


def check_step(step, nets, x, y, optimizer_factory, dtype):
    """``step`` against each network (same weights, one per backend): forward values
    and gradients, and the weights after a real fit of one step."""
    for backend, net in nets.items():
        what = f"vs the {backend} backend"
        hidden = net.forward(x, return_hidden=True)
        for l, a in enumerate(hidden):
            close(step.outputs[l], a, dtype, f"outputs of layer {l} {what}")
            act = _maths.ACTIVATE[net.activations[l]]
            close(act(step.net_inputs[l][None, :])[0], step.outputs[l], dtype,
                  f"O = f(I) in layer {l}")
        Y = np.atleast_1d(y) if np.ndim(y) == 0 else np.atleast_2d(y)
        _, grad_b = net.gradients(np.atleast_2d(x), Y)
        for l, g in enumerate(grad_b):
            close(step.errors[l], -g, dtype, f"Err = -dLoss/dz in layer {l} {what}")
        close(step.loss, net.loss(np.atleast_2d(x), Y), dtype, f"loss {what}")
        optimizer = None if optimizer_factory is None else optimizer_factory()
        trained = fit_one_step(net, x, y, optimizer)
        for l in range(len(step.weights)):
            close(step.new_weights[l], trained.weights[l], dtype, f"new weights {l} {what}")
            close(step.new_biases[l], trained.biases[l], dtype, f"new biases {l} {what}")
        assert step.optimizer.steps == trained.optimizer.steps
        if trained.optimizer.state is not None:
            close(step.optimizer.state, trained.optimizer.state, dtype, f"state {what}")


def nets_on_both_backends(sizes, combo, dtype, **kwargs):
    activation, output, loss = combo
    return {b: cyprop.Network(sizes, activation=activation, output=output, loss=loss,
                              dtype=dtype, backend=b, seed=3, **kwargs) for b in BACKENDS}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_step_is_fits_step_for_every_activation_and_loss(combo, backend, dtype):
    sizes = [4, 5, 3] if combo[1] == "softmax" else [4, 5, 2]
    nets = nets_on_both_backends(sizes, combo, dtype)
    X, Y = make_data(sizes, combo[1], n=1, seed=1)
    make = lambda: cyprop.SGD(0.05, momentum=0.5)  # noqa: E731
    step = explain(nets[backend], X[0], Y[0], make())
    check_step(step, nets, X[0], Y[0], make, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_step_is_fits_step_for_every_optimizer_with_its_state(name, backend, dtype):
    """After a few steps of training the optimizer has state and a step count; explain
    (with the network's own optimizer) carries both over, as a further fit does."""
    sizes = [6, 4, 3, 3]
    nets = nets_on_both_backends(sizes, ("tanh", "softmax", "cross_entropy"), dtype)
    X, Y = make_data(sizes, "softmax", n=9, seed=2)
    for net in nets.values():
        net.fit(X[:8], Y[:8], epochs=2, batch_size=3, shuffle=False,
                optimizer=OPTIMIZERS[name](), verbose=0)
    nets["numpy"].weights = nets["cython"].weights   # the same starting point
    nets["numpy"].biases = nets["cython"].biases
    nets["numpy"].optimizer.state = nets["cython"].optimizer.state.copy()
    step = explain(nets[backend], X[8], Y[8])
    assert step.optimizer.steps == 2 * 3 + 1
    check_step(step, nets, X[8], Y[8], None, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_explain_changes_nothing(backend):
    net = cyprop.Network([3, 4, 2], backend=backend, seed=0)
    X, Y = make_data([3, 4, 2], n=6)
    net.fit(X, Y, epochs=2, optimizer=cyprop.Adam(), verbose=0)
    before = (copy.deepcopy(net._params), net.optimizer.state.copy(), net.optimizer.steps,
              net.history.to_dict(), net._rng.bit_generator.state, net.optimizer)
    x, y = X[0].copy(), Y[0].copy()
    explain(net, x, y)
    explain(net, x, y, cyprop.SGD(0.5, momentum=0.9))
    np.testing.assert_array_equal(net._params, before[0])
    np.testing.assert_array_equal(net.optimizer.state, before[1])
    assert net.optimizer.steps == before[2]
    assert net.history.to_dict() == before[3]
    assert net._rng.bit_generator.state == before[4]
    assert net.optimizer is before[5]
    np.testing.assert_array_equal(x, X[0])


def test_default_optimizer_is_sgd_when_the_network_has_none():
    net = cyprop.Network([2, 3, 1], seed=0)
    step = explain(net, [0.5, -1.0], 1)
    assert isinstance(step.optimizer, cyprop.SGD) and step.optimizer.learning_rate == 0.1
    assert step.optimizer.steps == 1 and net.optimizer is None
    check_step(step, {"cython": net}, np.array([0.5, -1.0]), np.array([1.0]), None, "float64")


def test_an_optimizer_from_elsewhere_starts_afresh_as_in_fit():
    """fit(optimizer=opt) resets an optimizer that is not the network's own: so does
    explain, on a copy (the caller's optimizer is not touched)."""
    X, Y = make_data([3, 4, 2], n=5)
    other = cyprop.Network([3, 4, 2], seed=1)
    momentum = cyprop.SGD(0.1, momentum=0.9)
    other.fit(X, Y, epochs=1, optimizer=momentum, verbose=0)
    state, steps = momentum.state.copy(), momentum.steps
    net = cyprop.Network([3, 4, 2], seed=0)
    step = explain(net, X[0], Y[0], momentum)
    assert step.optimizer is not momentum and step.optimizer.steps == 1
    np.testing.assert_array_equal(momentum.state, state)
    assert momentum.steps == steps
    fresh = explain(net, X[0], Y[0], cyprop.SGD(0.1, momentum=0.9))
    for l in range(2):
        np.testing.assert_array_equal(step.new_weights[l], fresh.new_weights[l])
    # passing the network's own optimizer is the same as passing none
    net.fit(X, Y, epochs=1, batch_size=1, optimizer=cyprop.SGD(0.1, momentum=0.9), verbose=0)
    own, default = explain(net, X[0], Y[0], net.optimizer), explain(net, X[0], Y[0])
    assert own.optimizer.steps == default.optimizer.steps == 6
    np.testing.assert_array_equal(own.new_weights[0], default.new_weights[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_is_left_out_and_max_norm_applies(backend):
    X, Y = make_data([5, 8, 3], n=1, seed=4)
    net = cyprop.Network([5, 8, 3], backend=backend, seed=0, dropout=0.5, max_norm=0.3)
    step = explain(net, X[0], Y[0], cyprop.SGD(1.0))
    plain = net.copy()
    plain.dropout = 0.0
    check_step(step, {backend: plain}, X[0], Y[0], lambda: cyprop.SGD(1.0), "float64")
    norms = np.linalg.norm(step.new_weights[0], axis=1)
    assert norms.max() == pytest.approx(0.3)
    assert net.dropout == [0.5] and net.max_norm == 0.3


def test_the_forms_of_x_and_y():
    net = cyprop.Network([3, 4, 3], seed=0)
    x = np.array([0.1, 0.2, 0.3])
    label = explain(net, x, 2)
    for same in (explain(net, x.reshape(1, 3), np.array(2)),
                 explain(net, x, [0.0, 0.0, 1.0]), explain(net, x, [[0.0, 0.0, 1.0]]),
                 explain(net, [0.1, 0.2, 0.3], [2])):
        np.testing.assert_array_equal(same.new_weights[0], label.new_weights[0])
        np.testing.assert_array_equal(same.target, [0, 0, 1])
    single = cyprop.Network([3, 2, 1], loss="mse", seed=0)
    assert explain(single, x, 0.25).target.tolist() == [0.25]
    with pytest.raises(ValueError, match="one sample"):
        explain(net, np.ones((2, 3)), [1, 2])
    with pytest.raises(ValueError, match="one sample"):
        explain(net, x, np.zeros((2, 3)))
    for wrong_length in ([0.2, 0.8], [0.1, 0.2, 0.3, 0.4], [0, 1]):
        with pytest.raises(ValueError, match="target vector of the network's 3 outputs"):
            explain(net, x, wrong_length)
    with pytest.raises(ValueError, match="one sample"):
        explain(net, x, np.zeros((1, 1, 3)))
    with pytest.raises(ValueError, match="features"):
        explain(net, np.ones(4), 1)
    with pytest.raises(ValueError, match="outside the range"):
        explain(net, x, 3)
    with pytest.raises(ValueError, match="two classes"):
        explain(cyprop.Network([3, 1], seed=0), x, 2)


def test_something_other_than_a_network_is_refused_by_name():
    # an AttributeError named a private method of Network ("no attribute '_check_data'")
    for not_a_network in ("net", None, cyprop.Network([3, 4, 3], seed=0).weights):
        with pytest.raises(TypeError, match=r"^explain takes a cyprop.Network, got "):
            explain(not_a_network, np.ones(3), 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_that_overflows_before_the_step_is_refused_as_net_loss_refuses_it(backend):
    # the step's fit called it a divergence, "try a smaller learning rate", though the
    # loss was infinite before any step; net.loss says what is wrong
    net = cyprop.Network([3, 2, 1], activation="relu", output="identity", loss="mse",
                         seed=0, backend=backend)
    net.weights = [np.full((2, 3), 1e300), np.full((1, 2), 1e300)]
    x = np.array([0.5, 1.0, 2.0])
    with pytest.raises(FloatingPointError) as caught:
        net.loss(x.reshape(1, 3), [1.0])
    with pytest.raises(FloatingPointError, match=re.escape(str(caught.value))):
        explain(net, x, 1.0)


def test_inputs_that_overflow_a_saturating_unit_give_the_step_without_warnings():
    # forward, fit and the step take them (tanh of an infinite net input is 1); the
    # step's forward pass alone warned of the overflow, an error under -W error
    net = cyprop.Network([3, 4, 3], activation="tanh", output="softmax", seed=0)
    x = np.full(3, 1.7e308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step = explain(net, x, 1)
    assert step.loss == pytest.approx(net.loss(x.reshape(1, 3), [1]))
    np.testing.assert_allclose(step.outputs[-1], net.forward(x))


def test_a_sparse_sample_is_refused_by_name():
    # np.asarray made a sparse row a 0-d object array: "x must be (n_inputs,) ..., got
    # shape ()"
    sparse = pytest.importorskip("scipy.sparse")
    net = cyprop.Network([3, 4, 3], seed=0)
    with pytest.raises(TypeError, match=r"^x is a scipy.sparse csr_matrix, .*x.toarray\(\)"):
        explain(net, sparse.csr_matrix(np.ones((1, 3))), 2)
    with pytest.raises(TypeError, match=r"^y is a scipy.sparse coo_array"):
        explain(net, np.ones(3), sparse.coo_array(np.eye(1, 3)))


def test_numbering_of_a_deeper_network():
    net = cyprop.Network([2, 3, 3, 2], seed=0)
    step = explain(net, [1.0, -1.0], 0)
    text = str(step)
    assert "Units: 1-2 inputs; 3-5 hidden layer 1; 6-8 hidden layer 2; 9-10 output" in text
    rows = table(text)
    # ten units: w_i,j with a comma; weights from the output layer back, then biases
    names = [line.split()[0] for line in text.splitlines()
             if re.match(r"\s+(w\d|theta)", line)]
    assert names[:6] == ["w6,9", "w6,10", "w7,9", "w7,10", "w8,9", "w8,10"]
    assert names[-8:] == ["theta10", "theta9", "theta8", "theta7", "theta6", "theta5",
                          "theta4", "theta3"]
    assert len(names) == net.n_params
    assert rows["w1,3"] == [[f"{net.weights[0][0, 0]:.3f}",
                             f"{step.new_weights[0][0, 0]:.3f}"]]
    assert rows["w7,10"] == [[f"{net.weights[2][1, 1]:.3f}",
                              f"{step.new_weights[2][1, 1]:.3f}"]]
    assert rows["theta4"] == [[f"{net.biases[0][1]:.3f}", f"{step.new_biases[0][1]:.3f}"]]
    assert rows["9"] == [[f"{step.net_inputs[2][0]:.3f}", f"{step.outputs[2][0]:.3f}"],
                         [f"{step.errors[2][0]:.4f}"]]
    assert step.unit(0, 0) == 1 and step.unit(2, 2) == 8 and step.unit(3, 1) == 10


def test_step_holds_copies_of_the_right_shapes():
    net = cyprop.Network([3, 4, 2], dtype="float32", seed=0)
    step = explain(net, [1, 2, 3], 1)
    assert isinstance(step, Step) and repr(step).startswith("<Step: a 3-4-2 network")
    assert [W.shape for W in step.weights] == [(4, 3), (2, 4)]
    assert [W.shape for W in step.new_weights] == [(4, 3), (2, 4)]
    for arrays in (step.net_inputs, step.outputs, step.errors, step.biases, step.new_biases):
        assert [a.shape for a in arrays] == [(4,), (2,)]
        assert all(a.dtype == np.float32 for a in arrays)
    step.weights[0][...] = 7
    assert not (net.weights[0] == 7).any()


def test_plot_renders_with_agg(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    step = explain(*textbook_example())
    fig = step.plot()
    assert isinstance(fig, Figure)
    FigureCanvasAgg(fig).draw()
    texts = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert "w46 -0.300→-0.261" in texts
    assert any("Err6 = 0.1312" in t for t in texts)
    path = tmp_path / "step.png"
    step.plot(path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    big = explain(cyprop.Network([30, 20, 10], seed=0), np.ones(30), 3).plot()
    FigureCanvasAgg(big).draw()      # too many to label: lines and units only
    assert not big.axes[0].texts


def test_plot_without_matplotlib_names_the_extra(monkeypatch):
    for name in ("matplotlib", "matplotlib.collections", "matplotlib.colors",
                 "matplotlib.figure", "matplotlib.pyplot"):
        monkeypatch.setitem(sys.modules, name, None)      # import fails
    with pytest.raises(ImportError,
                       match=r'pip install matplotlib.*pip install "cyprop\[plot\]"'):
        explain(*textbook_example()).plot()


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="FIFOs are POSIX")
def test_plot_refuses_a_fifo_without_blocking(tmp_path):
    pytest.importorskip("matplotlib")
    # (a .png is opened read-write, which never blocks)
    assert_refuses_a_fifo_in_a_child(
        tmp_path, "pipe.svg", "from cyprop.explain import explain, textbook_example; "
        "explain(*textbook_example()).plot(sys.argv[1])", "Step.plot")


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="FIFOs are POSIX")
def test_plot_refuses_a_folder_or_fifo_named_without_a_suffix(tmp_path, monkeypatch):
    # the default format's ".png" was added to the name first, so the figure went
    # into the folder as ".png", or beside the FIFO (or /dev/null) as "pipe.png"
    import os

    pytest.importorskip("matplotlib")
    assert_refuses_a_fifo_in_a_child(
        tmp_path, "pipe", "from cyprop.explain import explain, textbook_example; "
        "explain(*textbook_example()).plot(sys.argv[1])", "Step.plot")
    step = explain(*textbook_example())
    folder = tmp_path / "figures"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in (folder, f"{folder}{os.sep}", ".", ""):
        with pytest.raises(OSError):
            step.plot(name)
    assert os.listdir(folder) == [] and sorted(os.listdir(tmp_path)) == ["figures", "pipe"]


def test_failed_plot_keeps_the_previous_file(tmp_path, monkeypatch):
    import os

    pytest.importorskip("matplotlib")
    step = explain(*textbook_example())
    net, x, y, _ = textbook_example()
    other = explain(net, x, y, cyprop.SGD(0.05))   # (other weights: other lines)
    before = assert_failed_write_keeps_the_file(monkeypatch, tmp_path / "step.svg",
                                                step.plot, other.plot)
    assert b"<svg" in before
    # matplotlib's naming is kept: no suffix, its default format's is added
    step.plot(tmp_path / "bare")
    assert (tmp_path / "bare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="xyz"):
        step.plot(tmp_path / "step.xyz")
    assert sorted(os.listdir(tmp_path)) == ["bare.png", "step.svg"]
