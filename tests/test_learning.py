"""Training learns: XOR on both backends, handwritten digits (in a few seconds compiled)."""

import time

import numpy as np
import pytest

import cyprop

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
XOR_LABELS = np.array([0, 1, 1, 0])


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("sizes,activation,output", [([2, 4, 1], "tanh", "sigmoid"),
                                                     ([2, 3, 2], "sigmoid", "softmax")])
def test_xor_is_learned(backend, sizes, activation, output, seed):
    net = cyprop.Network(sizes, activation=activation, output=output, loss="cross_entropy",
                         seed=seed, backend=backend)
    history = net.fit(XOR_X, XOR_LABELS, epochs=1000, batch_size=4,
                      optimizer=cyprop.SGD(0.5, momentum=0.9), seed=seed)
    assert net.evaluate(XOR_X, XOR_LABELS)["accuracy"] == 1.0
    assert history.loss[-1] < 0.05 < history.loss[0]
    predicted = (net.forward(XOR_X)[:, -1] > 0.5).astype(int)
    np.testing.assert_array_equal(predicted, XOR_LABELS)


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    X, y = datasets.load_digits(return_X_y=True)
    return model_selection.train_test_split(X / 16.0, y, test_size=0.25, random_state=0,
                                            stratify=y)


@pytest.mark.parametrize("sgd", [{"learning_rate": 0.5},
                                 {"learning_rate": 0.1, "momentum": 0.9}], ids=["sgd", "momentum"])
def test_digits_reach_95_percent_quickly(digits, sgd):
    X_train, X_test, y_train, y_test = digits
    net = cyprop.Network([64, 32, 10], activation="sigmoid", output="softmax",
                         loss="cross_entropy", seed=0, backend="cython")
    start = time.perf_counter()
    history = net.fit(X_train, y_train, epochs=30, batch_size=10, optimizer=cyprop.SGD(**sgd),
                      seed=0)
    seconds = time.perf_counter() - start
    assert net.evaluate(X_test, y_test)["accuracy"] >= 0.95
    assert history.accuracy[-1] >= 0.95
    assert seconds < 5.0, f"30 epochs of digits took {seconds:.1f} s"


def test_digits_float32_on_both_backends(digits, backend):
    X_train, X_test, y_train, y_test = digits
    net = cyprop.Network([64, 32, 10], seed=0, dtype="float32", backend=backend)
    net.fit(X_train, y_train, epochs=10, batch_size=10, optimizer=cyprop.SGD(0.5), seed=0)
    assert net.evaluate(X_test, y_test)["accuracy"] >= 0.93


def test_training_lowers_the_loss_for_every_combination(make_net, combo, backend):
    # Targets from a "teacher" network, so that there is something to learn.
    sizes = [4, 8, 3]
    X = np.random.default_rng(1).normal(size=(40, 4))
    teacher = cyprop.Network(sizes, activation="tanh", output="sigmoid", loss="mse", seed=99)
    Y = teacher.forward(X)
    if combo[1] == "softmax":
        Y = Y.argmax(axis=1)
    net = make_net(sizes, combo, seed=1, backend=backend)
    before = net.loss(X, Y)
    net.fit(X, Y, epochs=20, batch_size=5, optimizer=cyprop.SGD(0.05), seed=0)
    assert net.loss(X, Y) < before
