"""forward and predict of a few rows, served by the compiled FewRows (checks in C).

The promise: the same result as the general path, bit for bit, and the same errors:
the fast path only recognises the common case and hands everything else back.
"""

import pickle
import subprocess
import sys
import types

import numpy as np
import pytest

import cyprop
from cyprop import _compiled, _loop, _maths
from conftest import COMBOS, DTYPES

pytestmark = pytest.mark.skipif("cython" not in cyprop.available_backends(),
                                reason="the compiled extension is not built")

CHUNK = _compiled.TUNING["chunk_rows"]


def general_forward(net, X):
    """forward by the general path (converting, checking, chunking in Python)."""
    return net.forward(X, return_hidden=True)[-1]


def make_net(combo=("sigmoid", "softmax", "cross_entropy"), dtype="float64", sizes=(7, 5, 3),
             seed=0):
    hidden, output, loss = combo
    return cyprop.Network(list(sizes), activation=hidden, output=output, loss=loss,
                          dtype=dtype, seed=seed)


def test_the_compiled_backend_serves_few_rows_and_numpy_does_not():
    assert make_net()._few_rows is not None
    assert cyprop.Network([3, 2], backend="numpy")._few_rows is None


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_one_row_equals_the_general_path_bit_for_bit(combo, dtype):
    net = make_net(combo, dtype, sizes=(6, 4, 3 if combo[1] == "softmax" else 2))
    x = np.random.default_rng(1).normal(size=(1, 6)).astype(dtype)
    assert net._few_rows.forward(x) is not None   # the fast path took it
    np.testing.assert_array_equal(net.forward(x), general_forward(net, x))
    np.testing.assert_array_equal(net.forward(x[0]), general_forward(net, x)[0])
    assert net.forward(x).dtype == net.forward(x[0]).dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 17, CHUNK - 1, CHUNK])
def test_several_rows_up_to_a_chunk_equal_the_general_path(rows, dtype):
    net = make_net(dtype=dtype, sizes=(30, 20, 4))
    X = np.random.default_rng(rows).random((rows, 30)).astype(dtype)
    assert net._few_rows.forward(X) is not None
    np.testing.assert_array_equal(net.forward(X), general_forward(net, X))
    np.testing.assert_array_equal(net.predict(X), _maths.labels_of(general_forward(net, X)))


def test_more_rows_than_a_chunk_take_the_general_path():
    net = make_net()
    X = np.random.default_rng(0).random((CHUNK + 1, 7))
    assert net._few_rows.forward(X) is None
    assert net.forward(X).shape == (CHUNK + 1, 3)


@pytest.mark.parametrize("outputs", [1, 2, 5])
def test_predict_gives_the_labels_and_types_of_the_general_path(outputs):
    net = make_net(("tanh", "sigmoid", "cross_entropy"), sizes=(4, 6, outputs), seed=3)
    X = np.random.default_rng(2).normal(size=(50, 4)) * 3
    expected = _maths.labels_of(general_forward(net, X))
    got = net.predict(X)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype and got.shape == (50,)
    one, expected_one = net.predict(X[7]), _maths.labels_of(general_forward(net, X[7:8])[0])
    assert type(one) is type(expected_one) and one == expected_one
    assert 0 < len(set(got.tolist())) <= max(outputs, 2)


def test_ties_go_to_the_first_output_as_argmax():
    net = make_net(("identity", "identity", "mse"), sizes=(2, 3))
    net.weights = [np.zeros((3, 2))]
    net.biases = [np.array([1.0, 2.0, 2.0])]
    assert net.predict(np.zeros(2)) == 1


@pytest.mark.parametrize("X, message", [
    (np.array([[0.0, np.nan, 1, 1, 1, 1, 1]]), "NaN"),
    (np.array([0.0, np.inf, 1, 1, 1, 1, 1]), "infinity"),
    (np.zeros((1, 6)), "features"),
    (np.zeros(8), "features"),
    (np.zeros((0, 7)), "empty"),
    (np.zeros((1, 1, 7)), "dimension"),
])
def test_bad_rows_get_the_general_paths_errors(X, message):
    net = make_net()
    assert net._few_rows.forward(X) is None and net._few_rows.predict(X) is None
    with pytest.raises(ValueError, match=message):
        net.forward(X)
    with pytest.raises(ValueError, match=message):
        net.predict(X)


def test_an_overflowing_output_is_still_an_error():
    net = make_net(("relu", "identity", "mse"), sizes=(2, 2, 1))
    net.weights = [np.full((2, 2), 1e200), np.full((1, 2), 1e200)]
    with pytest.raises(FloatingPointError, match="overflowed"):
        net.forward(np.ones(2))
    with pytest.raises(FloatingPointError, match="overflowed"):
        net.predict(np.ones((1, 2)))


@pytest.mark.parametrize("X", [
    np.arange(7, dtype=np.int64),                        # converted
    np.arange(7, dtype=np.float32),                      # another float dtype
    np.arange(14.0).reshape(7, 2).T,                     # not C order
    np.arange(7.0).astype(">f8"),                        # big-endian
    [0.5] * 7,                                           # a list
    np.ma.masked_array(np.arange(7.0)),                  # a subclass
], ids=["int", "float32", "fortran", "big-endian", "list", "masked"])
def test_other_inputs_take_the_general_path_with_the_same_answer(X):
    net = make_net()
    expected = general_forward(net, np.asarray(np.ma.getdata(X), dtype=np.float64).copy())
    got = net.forward(X)
    np.testing.assert_allclose(got, expected.reshape(got.shape), rtol=1e-15)


def test_read_only_and_sliced_rows_are_served():
    net = make_net()
    X = np.random.default_rng(4).random((5, 7))
    X.flags.writeable = False
    np.testing.assert_array_equal(net.forward(X[2]), general_forward(net, X[2:3])[0])
    np.testing.assert_array_equal(net.forward(X[1:3]), general_forward(net, X[1:3]))


def test_the_result_is_a_new_array_each_call():
    net = make_net()
    x = np.ones(7)
    first, second = net.forward(x), net.forward(x)
    assert first is not second and not np.shares_memory(first, second)
    assert first.flags.writeable and first.flags.owndata


def test_weights_changed_in_place_by_hand_or_by_training_are_seen():
    net = make_net()
    x = np.linspace(0, 1, 7)
    before = net.forward(x)
    net.weights[0][...] = 0.0          # the network's own buffer
    changed = net.forward(x)
    assert not np.array_equal(before, changed)
    np.testing.assert_array_equal(changed, general_forward(net, x[None])[0])
    net.weights = [np.ones((5, 7)), np.ones((3, 5))]
    np.testing.assert_array_equal(net.forward(x), general_forward(net, x[None])[0])
    net.fit(np.random.default_rng(0).random((20, 7)), np.arange(20) % 3, epochs=1)
    np.testing.assert_array_equal(net.forward(x), general_forward(net, x[None])[0])


def test_copies_pickles_and_loaded_networks_serve_their_own_parameters(tmp_path):
    net = make_net()
    x = np.linspace(-1, 1, 7)
    path = tmp_path / "net.npz"
    net.save(path)
    for other in (net.copy(), pickle.loads(pickle.dumps(net)), cyprop.load(path)):
        assert other._few_rows is not None and other._few_rows is not net._few_rows
        np.testing.assert_array_equal(other.forward(x), net.forward(x))
        other.weights[0][...] = 0.0
        assert not np.array_equal(other.forward(x), net.forward(x))
        np.testing.assert_array_equal(other.forward(x), general_forward(other, x[None])[0])


def test_without_blas_the_rows_go_one_at_a_time_with_the_general_paths_result():
    code = """
import numpy as np, cyprop
from cyprop import _compiled
core = _compiled.default.core
net = cyprop.Network([30, 20, 4], seed=0)
X = np.random.default_rng(0).random((9, 30))
with_blas = net.forward(X)
core.set_blas(None, None)
without = net.forward(X)
assert np.array_equal(without, net.forward(X, return_hidden=True)[-1])
assert np.allclose(without, with_blas, rtol=1e-12)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_threads_serving_one_network_get_their_own_rows():
    from concurrent.futures import ThreadPoolExecutor
    net = make_net(sizes=(30, 20, 4))
    X = np.random.default_rng(5).random((64, 30))
    expected = general_forward(net, X)

    def serve(i):
        return all(np.array_equal(net.forward(X[i]), expected[i]) for _ in range(200))

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(serve, range(64)))


def test_threads_leave_the_blas_thread_count_as_it_was():
    """OpenBLAS's thread count is the process's, so calls on several threads share one
    hold on it (csrc/cyprop_threads.h): their products stay on one thread (each result
    as when run alone), and the count is put back once the last is done.  (Each call
    saving and restoring it left 1 behind, and gave some products two threads.)"""
    from concurrent.futures import ThreadPoolExecutor
    threadpoolctl = pytest.importorskip("threadpoolctl")
    core = _compiled.KERNELS[_compiled.CHOSEN]
    if not (core.has_blas() and core.blas_threads_controlled()):
        pytest.skip("no BLAS whose thread count cyprop sets")
    rng = np.random.default_rng(6)
    X, labels = rng.random((400, 784)), rng.integers(0, 10, 400)
    net = make_net(sizes=(784, 30, 10))
    expected = net.forward(X[:40])   # one chunk, by FewRows

    def train(seed):
        other = make_net(sizes=(784, 30, 10), seed=seed)
        other.fit(X, labels, epochs=1, batch_size=32, n_threads=1, seed=0, verbose=0)
        return other._params

    trained = [train(seed) for seed in range(4)]

    def work(seed):
        same = all(np.array_equal(net.forward(X[:40]), expected) for _ in range(300))
        return same and np.array_equal(train(seed), trained[seed])

    def blas_threads():
        return [info["num_threads"] for info in threadpoolctl.threadpool_info()
                if info["internal_api"] == "openblas"]

    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):
        before = blas_threads()
        with ThreadPoolExecutor(4) as pool:
            assert all(pool.map(work, range(4)))
        assert blas_threads() == before


# ------------------------------------------------------- partial_fit of one sample
OPTIMIZER_CASES = {
    "sgd": lambda: cyprop.SGD(0.3),
    "momentum": lambda: cyprop.SGD(0.1, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda: cyprop.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: cyprop.Adam(0.01, weight_decay=1e-3),
    "rmsprop": lambda: cyprop.RMSprop(0.01, momentum=0.5),
    "adagrad": lambda: cyprop.Adagrad(0.1),
    "rprop": lambda: cyprop.optimizers.Rprop(),
}


def stream_pair(sizes=(8, 6, 3), dtype="float64", optimizer="sgd", max_norm=None, **kwargs):
    """Two equal networks that have taken one step with the optimizer (so that its
    state exists): one to stream through the fast path, one through the general."""
    nets = [cyprop.Network(list(sizes), dtype=dtype, seed=2, max_norm=max_norm, **kwargs)
            for _ in range(2)]
    X = np.random.default_rng(3).random((40, sizes[0])).astype(dtype)
    labels = np.arange(40) % sizes[-1]
    for net in nets:
        net.partial_fit(X[:1], labels[:1], optimizer=OPTIMIZER_CASES[optimizer]())
    return nets, X, labels


def assert_same_training(fast, general):
    np.testing.assert_array_equal(fast._params, general._params)
    np.testing.assert_array_equal(fast.optimizer.state, general.optimizer.state)
    assert fast.optimizer.steps == general.optimizer.steps
    for key in ("loss", "accuracy", "learning_rate", "largest_update", "val_loss"):
        assert getattr(fast.history, key) == getattr(general.history, key), key
    assert fast.history.stop_reason == general.history.stop_reason == "epochs"
    assert len(fast.history.seconds) == len(general.history.seconds)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("optimizer", OPTIMIZER_CASES)
def test_streaming_one_sample_at_a_time_equals_the_general_path(optimizer, dtype, monkeypatch):
    (fast, general), X, labels = stream_pair(dtype=dtype, optimizer=optimizer)
    Y = np.eye(3, dtype=dtype)[labels]
    general_runs = general_runs_of(fast, monkeypatch)
    for i in range(1, 40):
        fast.partial_fit(X[i:i + 1], Y[i:i + 1])                      # the fast path
        general.partial_fit(X[i:i + 1].tolist(), Y[i:i + 1].tolist())  # lists: general
        assert_same_training(fast, general)
    assert general_runs == []


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_threads_streaming_into_one_network_step_whole_or_are_refused(optimizer):
    """partial_fit on one network from several threads at once: each call takes its
    step whole or is refused (the network is training in another thread).  k steps of
    one sample are the same in any order, so the network ends as k steps one after the
    other leave it."""
    from concurrent.futures import ThreadPoolExecutor
    (shared, serial), X, labels = stream_pair(optimizer=optimizer)

    def stream(_):
        taken = 0
        for _ in range(200):
            try:
                shared.partial_fit(X[5], labels[5:6])
                taken += 1
            except RuntimeError as exc:
                assert "already training in another thread" in str(exc)
        return taken

    with ThreadPoolExecutor(4) as pool:
        k = sum(pool.map(stream, range(4)))
    assert k > 0
    for _ in range(k):
        serial.partial_fit(X[5], labels[5:6])
    assert_same_training(shared, serial)


def general_runs_of(net, monkeypatch):
    """A list that gets an entry each time the general path (_loop.run) trains ``net``:
    empty while every call takes the fast path."""
    runs, run = [], _loop.run

    def spy(of, *args, **kwargs):
        if of is net:
            runs.append(True)
        return run(of, *args, **kwargs)

    monkeypatch.setattr(_loop, "run", spy)
    return runs


@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_activation_and_loss_streams_as_the_general_path(combo, monkeypatch):
    hidden, output, loss = combo
    n_out = 3 if output == "softmax" else 2
    (fast, general), X, labels = stream_pair(sizes=(5, 4, n_out), activation=hidden,
                                             output=output, loss=loss)
    Y = np.eye(n_out)[labels % n_out]
    general_runs = general_runs_of(fast, monkeypatch)
    for i in range(1, 20):
        fast.partial_fit(X[i:i + 1], Y[i:i + 1])
        general.partial_fit(X[i:i + 1].tolist(), Y[i:i + 1].tolist())
    assert_same_training(fast, general)
    assert general_runs == []


def test_labels_one_dimensional_rows_and_max_norm_stream_as_the_general_path(monkeypatch):
    (fast, general), X, labels = stream_pair(max_norm=0.5)
    general_runs = general_runs_of(fast, monkeypatch)
    for i in range(1, 30):
        x, label = X[i], labels[i]
        if i % 3 == 0:
            fast.partial_fit(x, np.int64(label))           # a 1-D row and a label
        elif i % 3 == 1:
            fast.partial_fit(x[None], np.array([label]))   # one row, one label
        else:
            fast.partial_fit(x, np.eye(3)[label])          # a 1-D row and its targets
        general.partial_fit(x[None].tolist(), [int(label)])
    assert_same_training(fast, general)
    assert general_runs == []


@pytest.mark.skipif(not _compiled.KERNELS or sys.platform == "win32",
                    reason="the compiled core flushes subnormals on x86-64 only")
def test_a_subnormal_weight_keeps_the_one_sample_step_unflushed(monkeypatch):
    """A per-sample step flushes subnormals to zero only where none of the numbers it
    starts from is one; the one-sample step scans the parameters as it copies them.  A
    first layer of subnormal weights read as 0 would give its ReLU units a
    pre-activation of 0 and no gradient (the weights stepped to 0)."""
    x, y = np.ones((1, 2), np.float32), np.ones((1, 1), np.float32)
    nets = [cyprop.Network([2, 2, 1], activation="relu", output="identity", loss="mse",
                           dtype="float32", seed=0) for _ in range(2)]
    for net in nets:
        net.partial_fit(x, y, optimizer=cyprop.SGD(0.1))
        net.weights[0][:] = np.float32(1e-40)   # subnormal in float32
        net.biases[0][:] = 0
        net.weights[1][:] = 1
    fast, general = nets
    general_runs = general_runs_of(fast, monkeypatch)
    fast.partial_fit(x, y)
    general.partial_fit(x.tolist(), y.tolist())
    assert general_runs == []
    assert_same_training(fast, general)
    assert np.all(np.abs(fast.weights[0]) > 0.01)


def test_a_stream_can_start_a_fresh_history_and_keep_its_optimizer(monkeypatch):
    """partial_fit's docstring: a long stream may set net.history = History() now and
    then; the steps go on through the fast path, counted from where they were."""
    (net, _), X, labels = stream_pair()
    general_runs = general_runs_of(net, monkeypatch)
    for i in range(1, 4):
        net.partial_fit(X[i], labels[i])
    steps = net.optimizer.steps
    net.history = cyprop.History()
    net.partial_fit(X[4], labels[4])
    assert general_runs == [] and len(net.history) == 1
    assert net.optimizer.steps == steps + 1


def test_one_dimensional_rows_train_on_the_numpy_backend_too():
    net = cyprop.Network([4, 3, 2], backend="numpy", seed=0)
    other = cyprop.Network([4, 3, 2], backend="numpy", seed=0)
    net.partial_fit(np.ones(4), 1)
    other.partial_fit(np.ones((1, 4)), [1])
    np.testing.assert_array_equal(net._params, other._params)


@pytest.mark.parametrize("X, Y, error, message", [
    (np.array([[np.nan] * 8]), np.array([1]), ValueError, "NaN"),
    (np.zeros((1, 7)), np.array([1]), ValueError, "features"),
    (np.zeros((1, 8)), np.array([3]), ValueError, "outside the range"),
    (np.zeros((1, 8)), np.array([[0.5, 0.5, np.inf]]), ValueError, "NaN or infinity"),
    (np.zeros((1, 8)), np.array([[2.0, 0, 0]]), ValueError, r"targets in \[0, 1\]"),
    (np.zeros((1, 8)), np.array([1, 2]), ValueError, "different numbers of samples"),
])
def test_bad_samples_get_the_general_paths_errors_and_change_nothing(X, Y, error, message):
    (net, _), _, _ = stream_pair()
    before, state, steps = net._params.copy(), net.optimizer.state.copy(), net.optimizer.steps
    epochs = len(net.history)
    assert net._few_rows.train_one(X, Y, net.optimizer.state, steps) is None
    with pytest.raises(error, match=message):
        net.partial_fit(X, Y)
    np.testing.assert_array_equal(net._params, before)
    np.testing.assert_array_equal(net.optimizer.state, state)
    assert net.optimizer.steps == steps and len(net.history) == epochs


@pytest.mark.parametrize("max_norm", [None, 3.0])
@pytest.mark.parametrize("sizes", [(6, 3), (6, 6, 3)])
def test_a_row_that_is_a_view_of_the_weights_trains_as_its_copy(sizes, max_norm,
                                                                 monkeypatch):
    """partial_fit(net.weights[0][0], label): the row is a view of the first layer's
    weights, which the one-sample step read as it stepped them; the general path and
    the NumPy backend train on the values the row had at the call."""
    (fast, general), _, _ = stream_pair(sizes=sizes, max_norm=max_norm)
    reference = cyprop.Network(list(sizes), seed=2, max_norm=max_norm, backend="numpy")
    reference._params[...] = general._params
    reference.optimizer = cyprop.SGD(0.3)
    fast.partial_fit(fast.weights[0][0], 1)
    general.partial_fit(general.weights[0][0].tolist(), 1)
    reference.partial_fit(reference.weights[0][0], 1)
    np.testing.assert_array_equal(fast._params, general._params)
    np.testing.assert_allclose(fast._params, reference._params, rtol=1e-12, atol=1e-15)


def test_a_diverging_step_is_undone_and_explained():
    (net, _), X, _ = stream_pair(sizes=(8, 6, 1), optimizer="sgd")
    net.optimizer.learning_rate = 1e305
    before, steps = net._params.copy(), net.optimizer.steps
    with pytest.raises(cyprop.TrainingDiverged):
        net.partial_fit(X[:1] * 1e5, np.array([[1.0]]))
    np.testing.assert_array_equal(net._params, before)
    assert net.optimizer.steps == steps and net.history.stop_reason == "diverged"


def test_weights_made_nan_by_hand_are_refused_before_training():
    (net, _), X, labels = stream_pair()
    net.weights[0][0, 0] = np.nan
    with pytest.raises(cyprop.TrainingDiverged, match="already NaN"):
        net.partial_fit(X[:1], labels[:1])


@pytest.mark.parametrize("optimizer", ["momentum", "adam", "rmsprop", "adagrad"])
def test_a_state_made_nan_by_hand_is_named_and_the_step_undone(optimizer):
    """A NaN written into the optimizer's state by hand made the step's weights NaN, and
    the refusal blamed the learning rate ("a weight became NaN ...; try a smaller
    learning rate"); it names the state, on every path, and changes nothing."""
    (fast, general), X, labels = stream_pair(optimizer=optimizer)
    reference = cyprop.Network([8, 6, 3], seed=2, backend="numpy")   # as stream_pair's
    reference.partial_fit(X[:1], labels[:1], optimizer=OPTIMIZER_CASES[optimizer]())
    for net, rows in ((fast, X[1:2]), (general, X[1:2].tolist()), (reference, X[1:2])):
        net.optimizer.state[-1, :] = np.nan
        before, state = net._params.copy(), net.optimizer.state.copy()
        with pytest.raises(cyprop.TrainingDiverged, match="state was already NaN"):
            net.partial_fit(rows, labels[1:2])
        np.testing.assert_array_equal(net._params, before)
        np.testing.assert_array_equal(net.optimizer.state, state)
        assert net.optimizer.steps == 1 and net.history.stop_reason == "diverged"


@pytest.mark.parametrize("optimizer, slot", [("adam", 1), ("rmsprop", 0), ("adagrad", 0)])
def test_a_negative_sum_of_squares_set_by_hand_is_named(optimizer, slot):
    """Adam's v (RMSprop's, Adagrad's squares) set negative by hand: its square root
    made the step NaN, and the refusal blamed the learning rate."""
    (fast, general), X, labels = stream_pair(optimizer=optimizer)
    for net, rows in ((fast, X[1:2]), (general, X[1:2].tolist())):
        net.optimizer.state[slot, :] = -1.0
        before, state = net._params.copy(), net.optimizer.state.copy()
        with pytest.raises(cyprop.TrainingDiverged,
                           match="state was already NaN, infinite or .* negative"):
            net.partial_fit(rows, labels[1:2])
        np.testing.assert_array_equal(net._params, before)
        np.testing.assert_array_equal(net.optimizer.state, state)


def test_hyper_parameters_set_by_hand_are_checked_and_used():
    (fast, general), X, labels = stream_pair(optimizer="momentum")
    for net in (fast, general):
        net.optimizer.momentum = 0.5
        net.optimizer.learning_rate = 0.05
    fast.partial_fit(X[1:2], labels[1:2])
    general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    assert_same_training(fast, general)
    fast.optimizer.momentum = -1.0
    with pytest.raises(ValueError, match="momentum"):
        fast.partial_fit(X[2:3], labels[2:3])
    fast.optimizer.momentum = 0.5
    fast.optimizer.learning_rate = float("nan")
    with pytest.raises(ValueError, match="learning_rate"):
        fast.partial_fit(X[2:3], labels[2:3])


@pytest.mark.parametrize("change", ["learning_rate", "same value", "max_norm", "etas",
                                    "new attribute"])
def test_settings_changed_between_one_sample_calls_are_used(change, monkeypatch):
    """The fast path sees its setting unchanged by the objects' identity; whatever is
    set or changed between two of its calls must still be used, as the general path does."""
    optimizer = "rprop" if change == "etas" else "momentum"
    (fast, general), X, labels = stream_pair(optimizer=optimizer)
    general_runs = general_runs_of(fast, monkeypatch)
    for i in range(1, 7):
        if i == 4:   # after three fast calls, with the setting seen
            for net in (fast, general):
                if change == "learning_rate":
                    net.optimizer.learning_rate = 0.02
                elif change == "same value":
                    net.optimizer.momentum = float(str(net.optimizer.momentum))
                elif change == "max_norm":
                    net.max_norm = 0.3
                elif change == "etas":
                    net.optimizer.etas = (0.4, 1.5)
                else:
                    net.optimizer.note = "set by hand"
        fast.partial_fit(X[i:i + 1], labels[i:i + 1])
        general.partial_fit(X[i:i + 1].tolist(), labels[i:i + 1].tolist())
        assert_same_training(fast, general)
    assert general_runs == []
    if change == "learning_rate":
        assert fast.history.learning_rate[-1] == 0.02


def test_state_set_by_hand_is_used_or_checked():
    (fast, general), X, labels = stream_pair(optimizer="adam")
    for net in (fast, general):
        net.optimizer.state = np.full_like(net.optimizer.state, 0.25)
    fast.partial_fit(X[1:2], labels[1:2])
    general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    assert_same_training(fast, general)
    fast.optimizer.state = np.zeros((2, fast.arch.n_params), np.float32)   # another dtype
    fast.partial_fit(X[2:3], labels[2:3])   # the general path starts it afresh
    assert fast.optimizer.state.dtype == np.float64 and fast.optimizer.steps == 1


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_plain_sgd_buffer_set_to_nan_by_hand_is_no_divergence_on_either_path(backend):
    """Plain SGD (no momentum) neither reads nor writes its buffer: the one-sample step
    left a NaN written into it by hand alone, while the general path called the step
    diverged ("the optimizer's state overflowed") and refused every call after it."""
    (fast, general), X, labels = stream_pair()
    reference = cyprop.Network([8, 6, 3], seed=2, backend=backend)   # as stream_pair's
    reference.partial_fit(X[:1], labels[:1], optimizer=cyprop.SGD(0.3))
    for net in (fast, general, reference):
        net.optimizer.state[0, 0] = np.nan
    fast.partial_fit(X[1:2], labels[1:2])
    general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    reference.partial_fit(X[1:3], labels[1:3], batch_size=1, shuffle=False)
    general.partial_fit(X[2:3].tolist(), labels[2:3].tolist())
    fast.partial_fit(X[2:3], labels[2:3])
    np.testing.assert_array_equal(fast._params, general._params)
    np.testing.assert_allclose(reference._params, general._params, rtol=1e-12, atol=1e-15)
    assert general.history.stop_reason == reference.history.stop_reason == "epochs"


def test_other_arguments_dropout_and_custom_optimizers_take_the_general_path():
    (net, _), X, labels = stream_pair()
    probe = net._few_rows
    prepared = probe.prepared_for
    net.partial_fit(X[1:2], labels[1:2], sample_weight=[2.0])
    net.partial_fit(X[1:2], labels[1:2], optimizer=cyprop.SGD(0.2))   # a new one
    assert net.optimizer.learning_rate == 0.2
    net.dropout = [0.5]
    net.partial_fit(X[1:2], labels[1:2])
    assert probe.prepared_for is prepared   # none of those went through it
    assert net.history.epochs == 4


class ConfiglessOptimizer(cyprop.optimizers.Optimizer):
    """A custom optimizer without get_config (the NumPy backend runs it)."""

    def update_params(self, params, grad, arch):
        params -= self.learning_rate * grad
        self._steps += 1


@pytest.mark.parametrize("replacement, error, message", [
    ("adam", TypeError, "optimizer must be a cyprop optimizer"),
    (None, None, None),
    (ConfiglessOptimizer(0.1), TypeError, "runs cyprop's own optimizers"),
], ids=["str", "none", "configless"])
def test_an_optimizer_replaced_by_hand_gets_the_general_paths_error(replacement, error,
                                                                     message):
    """The fast path reads the optimizer's setting (get_config ...) before the general
    path's checks: whatever it cannot read is for that path to explain, not an
    AttributeError or NotImplementedError of its own."""
    (net, _), X, labels = stream_pair()
    net.optimizer = replacement
    before, epochs = net._params.copy(), len(net.history)
    if error is None:   # None: the default optimizer, as for a new network
        net.partial_fit(X[1:2], labels[1:2])
        assert isinstance(net.optimizer, cyprop.SGD) and len(net.history) == epochs + 1
        return
    with pytest.raises(error, match=message):
        net.partial_fit(X[1:2], labels[1:2])
    np.testing.assert_array_equal(net._params, before)
    assert len(net.history) == epochs


@pytest.mark.parametrize("history", [None, [], "history", types.SimpleNamespace(
    record=lambda *args, **kwargs: None, stop_reason=None)])
def test_a_history_that_is_no_history_fails_the_call_before_the_step(history):
    """The fast path stepped the network, then failed to record the step: a failed call
    that changed the weights, the state and the step count; an object with a record
    method was trained into by the fast path and refused by the general path with an
    AttributeError.  Both refuse it now, by name, before training."""
    (net, _), X, labels = stream_pair(optimizer="adam")
    net.partial_fit(X[1:2], labels[1:2])   # the setting seen: the fast path is warm
    net.history = history
    before, state, steps = net._params.copy(), net.optimizer.state.copy(), net.optimizer.steps
    with pytest.raises(TypeError, match="net.history must be a cyprop.History"):
        net.partial_fit(X[2:3], labels[2:3])
    np.testing.assert_array_equal(net._params, before)
    np.testing.assert_array_equal(net.optimizer.state, state)
    assert net.optimizer.steps == steps and net.history is history


def test_a_history_subclass_that_records_by_name_gets_the_general_paths_records():
    """A History whose record takes the records by name (record(self, **logs), as
    _loop.run passes them): the one-sample step passed them by position, a TypeError
    after the step had been taken (the weights and step count changed, nothing
    recorded).  The one-sample step now records only into a History itself."""

    class ByName(cyprop.history.History):
        def record(self, **logs):
            self.names = sorted(logs)
            super().record(**logs)

    (fast, general), X, labels = stream_pair(optimizer="adam")
    fast.partial_fit(X[1:2], labels[1:2])   # the setting seen: the fast path is warm
    general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    fast.history, general.history = ByName(), ByName()
    fast.partial_fit(X[2:3], labels[2:3])
    general.partial_fit(X[2:3].tolist(), labels[2:3].tolist())
    assert fast.history.names == general.history.names
    assert fast.history.loss == general.history.loss and len(fast.history) == 1
    np.testing.assert_array_equal(fast._params, general._params)
    assert fast.optimizer.steps == general.optimizer.steps == 3


def test_a_record_set_on_the_history_itself_gets_the_general_paths_records():
    """history.record replaced on the instance by one that takes the records by name:
    the one-sample step called it by position, a TypeError after the step had been
    taken (the weights and step count changed, nothing recorded)."""
    (fast, general), X, labels = stream_pair(optimizer="adam")
    fast.partial_fit(X[1:2], labels[1:2])   # the setting seen: the fast path is warm
    general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    for net in (fast, general):
        history, record = net.history, net.history.record

        def by_name(history=history, record=record, **logs):
            history.names = sorted(logs)
            record(**logs)

        history.record = by_name
    fast.partial_fit(X[2:3], labels[2:3])
    general.partial_fit(X[2:3].tolist(), labels[2:3].tolist())
    assert fast.history.names == general.history.names
    assert_same_training(fast, general)
    assert fast.optimizer.steps == 3


def test_ctrl_c_after_a_one_sample_step_is_recorded_as_on_the_general_path(monkeypatch):
    """Ctrl-C during a stream of one-sample calls lands after the step, in the history's
    record (the step itself runs in C, where the signal waits): the step stays whole
    and ``stop_reason`` says "interrupted", as on the general path.  The interrupt is
    raised by History.record here, where the signal is handled."""
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    (fast, general), X, labels = stream_pair(optimizer="adam")
    fast.partial_fit(X[1:2], labels[1:2])   # the setting seen: the fast path is warm
    general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    monkeypatch.setattr(cyprop.history.History, "record", interrupted)
    for net, rows in ((fast, X[2:3]), (general, X[2:3].tolist())):
        net.history = cyprop.History()
        with pytest.raises(KeyboardInterrupt):
            net.partial_fit(rows, labels[2:3])
        assert net.history.stop_reason == "interrupted"
    np.testing.assert_array_equal(fast._params, general._params)
    np.testing.assert_array_equal(fast.optimizer.state, general.optimizer.state)
    assert fast.optimizer.steps == general.optimizer.steps == 3


def test_a_stream_trained_network_saves_and_loads_mid_stream(tmp_path):
    (fast, general), X, labels = stream_pair(optimizer="adam")
    for i in range(1, 10):
        fast.partial_fit(X[i:i + 1], labels[i:i + 1])
        general.partial_fit(X[i:i + 1].tolist(), labels[i:i + 1].tolist())
    fast.save(tmp_path / "m.npz")
    resumed = cyprop.load(tmp_path / "m.npz")
    for i in range(10, 20):
        resumed.partial_fit(X[i:i + 1], labels[i:i + 1])
        general.partial_fit(X[i:i + 1].tolist(), labels[i:i + 1].tolist())
    np.testing.assert_array_equal(resumed._params, general._params)


def test_partial_fit_inside_a_running_fit_is_refused_as_before():
    (net, _), X, labels = stream_pair()
    errors = []

    class Reenter:
        def on_epoch_end(self, net_, epoch, logs):
            try:
                net_.partial_fit(X[:1], labels[:1])
            except RuntimeError as exc:
                errors.append(str(exc))

    net.fit(X, labels, epochs=1, callbacks=[Reenter()])
    assert errors and "inside its own training" in errors[0]


@pytest.mark.parametrize("attribute, value", [("learning_rate", -1.0),
                                              ("learning_rate", float("nan")),
                                              ("momentum", -1.0), ("nesterov", 1)])
@pytest.mark.parametrize("X, Y, message", [
    (np.array([np.nan] * 8), 1, "X contains NaN"),
    (np.ones(8), 9, "outside the range"),
    (np.ones(7), 1, "features"),
])
def test_bad_data_with_a_hyper_parameter_set_wrong_gets_the_general_paths_error(
        attribute, value, X, Y, message):
    """The one-sample step checked the optimizer's setting before the data, and so named
    a wrong hyper-parameter where the general path names the bad data it checks first."""
    (fast, general), _, _ = stream_pair(optimizer="momentum")
    right = getattr(fast.optimizer, attribute)
    for net in (fast, general):
        setattr(net.optimizer, attribute, value)
    with pytest.raises(ValueError, match=message):
        general.partial_fit(X.tolist(), Y)
    with pytest.raises(ValueError, match=message):
        fast.partial_fit(X, Y)
    with pytest.raises((TypeError, ValueError), match=attribute):
        fast.partial_fit(np.ones(8), 1)   # good data: the setting is named
    setattr(fast.optimizer, attribute, right)   # set right again: it trains
    fast.partial_fit(np.ones(8), 1)
    assert fast.optimizer.steps == 2


def test_a_bool_set_after_its_number_is_refused_on_both_paths():
    """True == 1.0: the one-sample step compared its setting with ==, saw a momentum set
    to True after 1.0 as the setting it had prepared, and trained with it as 1.0, where
    the general path refuses a bool."""
    (fast, general), X, labels = stream_pair(optimizer="momentum")
    for net in (fast, general):
        net.optimizer.momentum = 1.0
        net.partial_fit(X[1:2], labels[1:2])   # the one-sample step prepares momentum 1.0
        net.optimizer.momentum = True
    before = fast._params.copy()
    with pytest.raises(TypeError, match="momentum must be a number, got True"):
        general.partial_fit(X[2:3].tolist(), labels[2:3].tolist())
    with pytest.raises(TypeError, match="momentum must be a number, got True"):
        fast.partial_fit(X[2:3], labels[2:3])
    np.testing.assert_array_equal(fast._params, before)


@pytest.mark.parametrize("steps, error, message", [
    ("3", TypeError, "steps must be an integer"),
    (-1, ValueError, "steps must be >= 0"),
    (-2, ValueError, "steps must be >= 0"),
    (True, TypeError, "steps must be an integer"),
    (2**62 + 5, ValueError, "steps must be <= 4611686018427387903"),
    (2.0, TypeError, "steps must be an integer"),
    (2**70, ValueError, "steps must be <= 4611686018427387903"),
])
def test_a_step_count_set_wrong_by_hand_gets_the_general_paths_error(steps, error, message):
    """optimizer._steps written past its checked setter: the one-sample step handed it
    to the core as it was (Cython's own TypeError or OverflowError, or a count of -1
    trained on), where the general path names it."""
    (fast, general), X, labels = stream_pair(optimizer="adam")
    for net in (fast, general):
        net.optimizer._steps = steps
    with pytest.raises(error, match=message):
        general.partial_fit(X[1:2].tolist(), labels[1:2].tolist())
    before = fast._params.copy()
    with pytest.raises(error, match=message):
        fast.partial_fit(X[1:2], labels[1:2])
    np.testing.assert_array_equal(fast._params, before)
