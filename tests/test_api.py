"""The public API: parameter layout, initialisation, input handling, errors."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import cyprop

SIZES = [5, 4, 3]


# ------------------------------------------------------------------ parameters
@pytest.mark.parametrize("sizes", [[784, 30, 10], [3, 1, 2], [2, 1], [6, 5, 4, 4, 3, 2]],
                         ids=str)
def test_parameter_shapes_dtypes_and_layout(sizes, dtype, backend):
    net = cyprop.Network(sizes, dtype=dtype, backend=backend, seed=0)
    assert net.backend == backend
    assert len(net.weights) == len(net.biases) == len(sizes) - 1
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        assert isinstance(W, np.ndarray) and isinstance(b, np.ndarray)
        assert W.shape == (sizes[l + 1], sizes[l]) and b.shape == (sizes[l + 1],)
        assert W.dtype == b.dtype == np.dtype(dtype)
        assert W.flags.c_contiguous and b.flags.c_contiguous


def test_the_documented_example_network():
    net = cyprop.Network([784, 30, 10], activation="sigmoid", output="softmax",
                         loss="cross_entropy", init="normal", dtype="float64", seed=0,
                         backend="auto")
    assert net.backend == "cython"
    X = np.random.default_rng(0).uniform(size=(3, 784))
    out = net.forward(X)
    assert out.shape == (3, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_forward_output_shapes(make_net, backend, dtype):
    net = make_net(SIZES, backend=backend, dtype=dtype)
    X = np.random.default_rng(0).normal(size=(7, 5))
    out = net.forward(X)
    assert out.shape == (7, 3) and out.dtype == np.dtype(dtype)
    one = net.forward(X[2])
    assert one.shape == (3,)
    np.testing.assert_array_equal(one, out[2])
    assert net.forward(X[:1]).shape == (1, 3)


def test_in_place_writes_change_the_model(make_net, backend, dtype):
    net = make_net(SIZES, ("tanh", "identity", "mse"), backend=backend, dtype=dtype)
    X = np.random.default_rng(0).normal(size=(4, 5))
    before = net.forward(X)

    net.weights[-1][...] = 0
    net.biases[-1][...] = [1, 2, 3]
    np.testing.assert_array_equal(net.forward(X), np.tile([1, 2, 3], (4, 1)))

    net.weights[-1][0, 0] = 1  # a single element
    net.biases[0] += 0.5       # an in-place operator
    out = net.forward(X)
    assert not np.array_equal(out[:, 0], np.ones(4))
    np.testing.assert_array_equal(out[:, 1:], np.tile([2, 3], (4, 1)))
    assert not np.allclose(out, before)


def test_parameter_views_stay_live_across_training(make_net, make_data, backend):
    net = make_net(SIZES, ("tanh", "identity", "mse"), backend=backend)
    X, Y = make_data(SIZES, "identity", n=6)
    W, b = net.weights[-1], net.biases[-1]  # held across fit
    net.fit(X, Y, epochs=1, batch_size=2)
    np.testing.assert_array_equal(W, net.weights[-1])
    W[...] = 0
    b[...] = 7
    np.testing.assert_array_equal(net.forward(X), np.full((6, 3), 7.0))


def test_gradients_have_the_parameter_shapes(make_net, make_data, backend, dtype):
    net = make_net(SIZES, backend=backend, dtype=dtype)
    X, Y = make_data(SIZES, n=6)
    grad_w, grad_b = net.gradients(X, Y)
    assert [g.shape for g in grad_w] == [w.shape for w in net.weights]
    assert [g.shape for g in grad_b] == [b.shape for b in net.biases]
    assert all(g.dtype == np.dtype(dtype) for g in grad_w + grad_b)


# ----------------------------------------------------------- initialisation
def init_statistics(init, n_in=400, n_out=300, seed=0):
    net = cyprop.Network([n_in, n_out], init=init, seed=seed, output="identity", loss="mse")
    return net.weights[0], net.biases[0]


def test_normal_init():
    W, b = init_statistics("normal")
    assert abs(W.mean()) < 0.005 and W.std() == pytest.approx(1 / np.sqrt(400), rel=0.02)
    assert abs(b.mean()) < 0.2 and b.std() == pytest.approx(1.0, rel=0.15)


def test_uniform_init():
    W, b = init_statistics("uniform")
    for p in (W, b):
        assert p.min() >= -0.5 and p.max() <= 0.5
    assert W.std() == pytest.approx(1 / np.sqrt(12), rel=0.02)  # std of U(-0.5, 0.5)
    assert W.min() < -0.49 and W.max() > 0.49


def test_xavier_init():
    W, b = init_statistics("xavier")
    r = np.sqrt(6 / (400 + 300))
    assert W.min() >= -r and W.max() <= r and W.max() > 0.99 * r
    assert W.std() == pytest.approx(r / np.sqrt(3), rel=0.02)
    np.testing.assert_array_equal(b, 0)


def test_he_init():
    W, b = init_statistics("he")
    assert abs(W.mean()) < 0.005 and W.std() == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    np.testing.assert_array_equal(b, 0)


@pytest.mark.parametrize("init", ["normal", "uniform", "xavier", "he"])
def test_same_seed_same_initial_weights_on_every_backend_and_dtype(init, flat_params):
    nets = {(b, d): cyprop.Network([6, 5, 4], init=init, seed=123, backend=b, dtype=d)
            for b in ("cython", "numpy") for d in ("float64", "float32")}
    reference = nets["numpy", "float64"]
    for (b, d), net in nets.items():
        for got, want in zip(list(net.weights) + list(net.biases),
                             list(reference.weights) + list(reference.biases)):
            # float32 networks hold the float64 draw, cast once.
            np.testing.assert_array_equal(got, want.astype(d))
    other = cyprop.Network([6, 5, 4], init=init, seed=124)
    assert not np.array_equal(flat_params(other), flat_params(reference))


# ------------------------------------------------------ evaluate, fit, History
def test_evaluate_returns_loss_and_accuracy(make_net, make_data, backend):
    net = make_net(SIZES, backend=backend)
    X, y = make_data(SIZES, n=30)
    result = net.evaluate(X, y)
    assert set(result) == {"loss", "accuracy"}
    assert result["loss"] == pytest.approx(net.loss(X, y), rel=1e-12)
    expected_accuracy = np.mean(net.forward(X).argmax(axis=1) == y)
    assert result["accuracy"] == pytest.approx(expected_accuracy)


def test_single_output_accuracy_uses_a_threshold_of_one_half(backend):
    net = cyprop.Network([2, 1], output="sigmoid", loss="cross_entropy", backend=backend)
    net.weights[0][...] = [[10, 0]]
    net.biases[0][...] = [0]
    X = np.array([[1.0, 0], [-1.0, 0], [2.0, 0], [-2.0, 0]])  # outputs ~1, ~0, ~1, ~0
    assert net.evaluate(X, [1, 0, 0, 0])["accuracy"] == 0.75
    assert net.evaluate(X, np.array([[1], [0], [1], [0]]))["accuracy"] == 1.0


@pytest.mark.parametrize("epochs", [1, 4])
def test_fit_returns_a_history_with_one_entry_per_epoch(make_net, make_data, backend, epochs):
    net = make_net(SIZES, backend=backend)
    X, y = make_data(SIZES, n=20)
    history = net.fit(X, y, epochs=epochs, batch_size=3, optimizer=cyprop.SGD(0.1))
    assert isinstance(history, cyprop.History)
    assert len(history.loss) == epochs and len(history.accuracy) == epochs
    assert all(np.isfinite(history.loss)) and all(0 <= a <= 1 for a in history.accuracy)


def test_history_loss_is_the_loss_seen_while_training(make_net, make_data, backend):
    # With a negligible learning rate every sample meets the initial weights.
    net = make_net(SIZES, backend=backend)
    X, y = make_data(SIZES, n=20)
    initial = net.evaluate(X, y)
    history = net.fit(X, y, epochs=1, batch_size=3, optimizer=cyprop.SGD(1e-12))
    assert history.loss[0] == pytest.approx(initial["loss"], rel=1e-9)
    assert history.accuracy[0] == pytest.approx(initial["accuracy"])


def test_two_fits_continue_like_one(make_net, make_data, flat_params, backend):
    # Two fits of 2 epochs continue like one fit of 4: same shuffling stream (the
    # network's own generator) and the optimizer state (momentum) kept in between.
    X, y = make_data(SIZES, n=20)
    once, twice = make_net(SIZES, backend=backend), make_net(SIZES, backend=backend)
    once.fit(X, y, epochs=4, batch_size=3, optimizer=cyprop.SGD(0.1, momentum=0.9))
    twice.fit(X, y, epochs=2, batch_size=3, optimizer=cyprop.SGD(0.1, momentum=0.9))
    twice.fit(X, y, epochs=2, batch_size=3)
    np.testing.assert_allclose(flat_params(twice), flat_params(once), rtol=1e-12)


def test_full_batch_shuffling_only_reorders_the_samples(make_net, make_data, flat_params,
                                                        backend):
    # One batch of all samples: each epoch's order must be a permutation (no sample
    # dropped or repeated), so the mean gradient and the result do not depend on it.
    X, y = make_data(SIZES, n=20)
    results = []
    for shuffle in (True, False):
        net = make_net(SIZES, backend=backend)
        net.fit(X, y, epochs=3, batch_size=20, shuffle=shuffle, optimizer=cyprop.SGD(0.5))
        results.append(flat_params(net))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12, atol=1e-14)


def test_batch_larger_than_the_data(make_net, make_data, flat_params, backend):
    X, y = make_data(SIZES, n=7)
    a, b = make_net(SIZES, backend=backend), make_net(SIZES, backend=backend)
    a.fit(X, y, epochs=2, batch_size=7, shuffle=False)
    b.fit(X, y, epochs=2, batch_size=100, shuffle=False)
    np.testing.assert_array_equal(flat_params(a), flat_params(b))


# -------------------------------------------------------------- input handling
def test_labels_are_one_hot_encoded(make_net, make_data, backend):
    net = make_net(SIZES, backend=backend)
    X, y = make_data(SIZES, n=9)
    one_hot = np.eye(3)[y]
    assert net.loss(X, y) == net.loss(X, one_hot)
    (wl, bl), (wo, bo) = net.gradients(X, y), net.gradients(X, one_hot)
    for a, b in zip(wl + bl, wo + bo):
        np.testing.assert_array_equal(a, b)
    assert net.evaluate(X, y) == net.evaluate(X, one_hot)
    assert net.loss(X, list(y)) == net.loss(X, y)  # a plain list of labels


def test_single_output_accepts_1d_targets(backend):
    net = cyprop.Network([3, 4, 1], output="sigmoid", loss="cross_entropy", seed=0,
                         backend=backend)
    X = np.random.default_rng(0).normal(size=(6, 3))
    y = np.array([0, 1, 1, 0, 1, 0])
    assert net.loss(X, y) == net.loss(X, y.reshape(-1, 1).astype(float))


def everything(net, X, Y):
    """The result of every method that takes data, as comparable values."""
    grad_w, grad_b = net.gradients(X, Y)
    trained = net.copy()
    history = trained.fit(X, Y, epochs=2, batch_size=3, optimizer=cyprop.SGD(0.1), seed=0)
    return [net.forward(X), np.float64(net.loss(X, Y)), *grad_w, *grad_b,
            np.array(list(net.evaluate(X, Y).values())), np.array(history.loss),
            *trained.weights, *trained.biases]


def assert_same_results(a, b, rtol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=0)


def test_inputs_are_never_modified(make_net, make_data, backend, dtype):
    net = make_net(SIZES, backend=backend, dtype=dtype)
    X, y = make_data(SIZES, n=12)
    for Y in (y, np.eye(3)[y]):
        X_copy, Y_copy = X.copy(), Y.copy()
        everything(net, X, Y)
        net.fit(X, Y, epochs=1, batch_size=4)
        cyprop.check_gradients(net, X[:2], Y[:2])
        np.testing.assert_array_equal(X, X_copy)
        np.testing.assert_array_equal(Y, Y_copy)


def test_read_only_inputs_work(make_net, make_data, backend, dtype):
    net = make_net(SIZES, backend=backend, dtype=dtype)
    X, y = make_data(SIZES, n=12)
    X = X.astype(dtype)  # already of the network's dtype: used as it is, not copied
    Y = np.eye(3, dtype=dtype)[y]
    expected = everything(net, X.copy(), Y.copy())
    for a in (X, Y, y):
        a.setflags(write=False)
    assert_same_results(everything(net, X, Y), expected)
    assert_same_results(everything(net, X, y), expected)
    net.fit(X, Y, epochs=1, batch_size=4)
    net.forward(X[0])


def input_variants(X):
    """The same values as C-contiguous float64 ``X`` in other layouts and types."""
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    wide[::2, ::3] = X
    return {
        "fortran": np.asfortranarray(X),
        "strided": wide[::2, ::3],
        "reversed": X[::-1][::-1],
        "float32": X.astype(np.float32),
        "int": X.astype(np.int64),
        "list": X.tolist(),
    }


@pytest.mark.parametrize("variant", ["fortran", "strided", "reversed", "float32", "int",
                                     "list"])
def test_other_layouts_and_types_give_the_same_results(make_net, make_data, backend, dtype,
                                                       variant):
    net = make_net(SIZES, backend=backend, dtype=dtype)
    X, y = make_data(SIZES, n=12)
    X = np.round(X * 4)  # whole numbers, so that the int variant holds the same values
    if variant == "float32":
        X = X.astype(np.float32).astype(np.float64)
    Y = np.eye(3)[y]
    expected = everything(net, X, Y)
    other_X = input_variants(X)[variant]
    other_Y = input_variants(Y)[variant]
    assert_same_results(everything(net, other_X, other_Y), expected)
    assert_same_results(everything(net, other_X, y.astype(np.int32)), expected)


# ----------------------------------------------------------------- bad input
@pytest.fixture
def net(make_net, backend):
    return make_net(SIZES, backend=backend)


def good_data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(6, 5)), rng.integers(0, 3, 6)


def with_value(a, value, index=(0, 0)):
    a = np.array(a, dtype=float)
    a[index] = value
    return a


BAD_DATA = {
    "too few features": (np.zeros((6, 4)), None, "features"),
    "too many features": (np.zeros((6, 7)), None, "features"),
    "label too large": (None, np.array([0, 1, 3, 0, 1, 2]), "label"),
    "negative label": (None, np.array([0, -1, 2, 0, 1, 2]), "label"),
    "fractional label": (None, np.array([0, 1.5, 2, 0, 1, 2]), "whole"),
    "nan label": (None, np.array([0, np.nan, 2, 0, 1, 2]), "NaN"),
    "nan in X": (with_value(np.zeros((6, 5)), np.nan), None, "NaN"),
    "inf in X": (with_value(np.zeros((6, 5)), np.inf), None, "NaN or inf"),
    "-inf in X": (with_value(np.zeros((6, 5)), -np.inf), None, "NaN or inf"),
    "nan in Y": (None, with_value(np.eye(3)[[0, 1, 2, 0, 1, 2]], np.nan), "NaN"),
    "inf in Y": (None, with_value(np.eye(3)[[0, 1, 2, 0, 1, 2]], np.inf), "NaN or inf"),
    "empty X": (np.zeros((0, 5)), np.zeros(0, dtype=int), "empty"),
    "more labels than samples": (None, np.zeros(7, dtype=int), "different numbers"),
    "fewer targets than samples": (None, np.zeros((5, 3)), "different numbers"),
    "wrong target columns": (None, np.zeros((6, 2)), "columns|outputs"),
    "3-d X": (np.zeros((6, 5, 1)), None, "2-D"),
    "1-d X": (np.zeros(5), np.zeros(1, dtype=int), "2-D"),
}


@pytest.mark.parametrize("method", ["loss", "gradients", "evaluate", "fit"])
@pytest.mark.parametrize("case", BAD_DATA)
def test_bad_data_raises_value_error_naming_the_problem(net, case, method):
    X, Y = good_data()
    bad_X, bad_Y, message = BAD_DATA[case]
    X = X if bad_X is None else bad_X
    Y = Y if bad_Y is None else bad_Y
    with pytest.raises(ValueError, match=message):
        getattr(net, method)(X, Y)


@pytest.mark.parametrize("X,message", [(np.zeros((2, 4)), "features"),
                                       (np.zeros(6), "features"),
                                       (with_value(np.zeros((2, 5)), np.nan), "NaN"),
                                       (np.zeros((0, 5)), "empty")])
def test_bad_forward_input(net, X, message):
    with pytest.raises(ValueError, match=message):
        net.forward(X)


def test_non_numeric_input_raises_type_error(net):
    with pytest.raises(TypeError, match="numbers"):
        net.forward(np.array([["a"] * 5]))


def test_float32_overflow_is_rejected(make_net):
    net = make_net(SIZES, dtype="float32")
    with pytest.raises(ValueError, match="NaN or inf"):
        net.forward(np.full((1, 5), 1e39))


@pytest.mark.parametrize("kwargs,error,message", [
    ({"activation": "softplus"}, ValueError, "activation"),
    ({"activation": "softmax"}, ValueError, "activation"),   # not a hidden activation
    ({"output": "gelu"}, ValueError, "output"),
    ({"loss": "hinge"}, ValueError, "loss"),
    ({"init": "orthogonal"}, ValueError, "init"),
    ({"backend": "gpu"}, ValueError, "backend"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"dtype": "int32"}, ValueError, "dtype"),
    ({"output": "tanh", "loss": "cross_entropy"}, ValueError, "cross_entropy"),
    ({"output": "relu", "loss": "cross_entropy"}, ValueError, "cross_entropy"),
    ({"output": "leaky_relu", "loss": "cross_entropy"}, ValueError, "cross_entropy"),
    ({"output": "identity", "loss": "cross_entropy"}, ValueError, "cross_entropy"),
])
def test_bad_network_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        cyprop.Network([5, 4, 3], **kwargs)


@pytest.mark.parametrize("activation", ["softplus", "softmax"])
def test_unknown_activation_refused_without_hidden_layers(activation):
    # a misspelt name is an error even where no hidden layer would use it
    with pytest.raises(ValueError, match="unknown hidden activation"):
        cyprop.Network([5, 3], activation=activation)


@pytest.mark.parametrize("sizes,error,message", [
    ([5, 0, 3], ValueError, "positive"),
    ([5, -2, 3], ValueError, "positive"),
    ([0, 3], ValueError, "positive"),
    ([5, 4, 0], ValueError, "positive"),
    ([5], ValueError, "at least"),
    ([], ValueError, "at least"),
    ([5, 2.5, 3], TypeError, "integer"),
    ([5, "4", 3], TypeError, "integer"),
    (5, TypeError, "sizes"),
])
def test_bad_sizes(sizes, error, message):
    with pytest.raises(error, match=message):
        cyprop.Network(sizes)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"batch_size": -3}, ValueError, "batch_size"),
    ({"epochs": 0}, ValueError, "epochs"),
    ({"epochs": -1}, ValueError, "epochs"),
    ({"batch_size": 2.5}, TypeError, "batch_size"),
    ({"epochs": 1.0}, TypeError, "epochs"),
    ({"optimizer": "sgd"}, TypeError, "optimizer"),
])
def test_bad_fit_arguments(net, kwargs, error, message):
    X, y = good_data()
    with pytest.raises(error, match=message):
        net.fit(X, y, **kwargs)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"learning_rate": 0}, ValueError, "learning_rate"),
    ({"learning_rate": -0.1}, ValueError, "learning_rate"),
    ({"learning_rate": float("nan")}, ValueError, "learning_rate"),
    ({"learning_rate": "0.1"}, TypeError, "learning_rate"),
    ({"learning_rate": 0.1, "momentum": -0.5}, ValueError, "momentum"),
    ({"learning_rate": 0.1, "weight_decay": -1e-4}, ValueError, "weight_decay"),
    ({"learning_rate": 0.1, "nesterov": True}, ValueError, "nesterov"),
])
def test_bad_sgd_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        cyprop.SGD(**kwargs)


def test_numpy_integer_arguments_are_accepted(make_data):
    net = cyprop.Network(np.array([5, 4, 3]), seed=0)
    X, y = make_data(SIZES, n=6)
    history = net.fit(X, y, epochs=np.int64(2), batch_size=np.int32(3))
    assert len(history.loss) == 2


# ------------------------------------------------------------------- backends
def test_numpy_backend_is_forced():
    assert cyprop.Network([2, 3, 1], backend="numpy").backend == "numpy"


def test_missing_extension_fails_loudly_for_cython_and_warns_for_auto(monkeypatch):
    # Simulate a build without the extension (private attributes of cyprop._backend).
    from cyprop import _backend
    monkeypatch.setattr(_backend, "_compiled", None)
    monkeypatch.setattr(_backend, "_IMPORT_ERROR", ImportError("no module _core"))
    monkeypatch.setattr(_backend, "_warned", False, raising=False)  # warned once a process
    with pytest.raises(ImportError, match="cython"):
        cyprop.Network([2, 3, 1], backend="cython")
    with pytest.warns(RuntimeWarning, match="NumPy"):
        assert cyprop.Network([2, 3, 1], backend="auto").backend == "numpy"
    assert cyprop.available_backends() == ("numpy",)


def test_auto_backend_does_not_warn_when_the_extension_is_there():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cyprop.Network([2, 3, 1], backend="auto").backend == "cython"


def test_thread_count_follows_omp_num_threads_and_threadpoolctl():
    """The default thread count of the compiled core is OpenMP's: OMP_NUM_THREADS at
    start-up, threadpoolctl's limit inside its context."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert cyprop.config()["threads"] == 1
    env = dict(os.environ, OMP_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", "import cyprop; print(cyprop.config()['threads'])"],
                         env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "3"
