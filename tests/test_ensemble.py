"""cyprop.train_many and cyprop.Ensemble: networks trained on threads, results that do
not depend on the thread count, stopping them all (an exception, Ctrl-C), and the
ensemble's averaging and its file."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest

import cyprop
from cyprop import ensemble as ensemble_module

BACKENDS = ("cython", "numpy")


def blobs(n=120, n_features=5, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    centres = rng.normal(scale=2.0, size=(n_classes, n_features))
    return centres[labels] + rng.normal(size=(n, n_features)), labels


def params(net):
    return net._params.copy()


# ------------------------------------------------------------------ train_many
@pytest.mark.parametrize("backend", BACKENDS)
def test_results_do_not_depend_on_the_thread_count(backend):
    X, y = blobs()
    runs = {}
    for threads in (1, 2):
        runs[threads] = cyprop.train_many(
            lambda i: cyprop.Network([5, 8, 3], seed=i, backend=backend), X, y, 5,
            n_threads=threads, epochs=4, batch_size=8, optimizer=cyprop.Adam(0.01),
            validation_data=blobs(30, seed=1))
    assert [net.seed for net, _ in runs[1]] == [net.seed for net, _ in runs[2]]
    for (a, history_a), (b, history_b) in zip(runs[1], runs[2]):
        np.testing.assert_array_equal(params(a), params(b))
        assert history_a.val_loss == history_b.val_loss


def test_each_network_trains_as_it_would_alone():
    X, y = blobs()
    optimizer = cyprop.SGD(0.1, momentum=0.9)
    # a schedule with state: halves the rate from the second epoch on
    plateau = lambda: cyprop.schedules.ReduceOnPlateau(0.5, patience=0, min_delta=10)  # noqa
    schedule = plateau()
    results = cyprop.train_many(lambda i: cyprop.Network([5, 6, 3], seed=i), X, y, 3,
                                n_threads=2, epochs=3, batch_size=4, optimizer=optimizer,
                                schedule=schedule)
    assert optimizer.state is None and optimizer.steps == 0     # copied, never used
    assert schedule._scale == 1.0
    for net, history in results:
        assert net.optimizer is not optimizer and history is net.history
        alone = cyprop.Network([5, 6, 3], seed=net.seed)
        alone.fit(X, y, epochs=3, batch_size=4, optimizer=cyprop.SGD(0.1, momentum=0.9),
                  schedule=plateau(), verbose=0)
        np.testing.assert_array_equal(params(net), params(alone))
        assert history.learning_rate == [0.1, 0.1, 0.05]
    assert len({id(net.optimizer) for net, _ in results}) == 3


def test_callbacks_none_means_none_as_in_fit():
    X, y = blobs()
    results = cyprop.train_many(lambda i: cyprop.Network([5, 6, 3], seed=i), X, y, 2,
                                epochs=2, callbacks=None)
    assert [len(history.loss) for _, history in results] == [2, 2]


def test_callbacks_not_a_list_is_refused_as_fit_refuses_it():
    # list(5) said "'int' object is not iterable", and only after every network was built
    X, y = blobs()
    built = []

    def build(i):
        built.append(i)
        return cyprop.Network([5, 6, 3], seed=i)

    with pytest.raises(TypeError, match="callbacks must be a list of objects with an "
                                        "on_epoch_end method, got int"):
        cyprop.train_many(build, X, y, 2, epochs=2, callbacks=5)
    assert built == []


def test_more_networks_than_memory_are_refused_before_they_are_built():
    # n = 10**12 of [784, 100, 10] (636 KB each in float64) built networks until the memory ran out
    # (or the system killed the process): run in a child, with a time limit
    code = textwrap.dedent("""
        import numpy as np, cyprop
        built = []
        def build(i):
            built.append(i)
            return cyprop.Network([784, 100, 10], seed=i)
        X, y = np.zeros((4, 784)), np.arange(4) % 10
        try:
            cyprop.train_many(build, X, y, 10**12, epochs=1)
        except MemoryError as exc:
            print("refused:", exc, "| built", len(built))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: train_many: 1000000000000 networks of 636,080 bytes of parameters " \
           "each need" in done.stdout and "| built 1" in done.stdout, done.stdout



def test_an_unknown_memory_size_refuses_nothing(monkeypatch):
    # os.sysconf gives -1 for a value the system does not know: every n was "more than
    # this machine's -0.0 GiB of memory"
    sysconf = os.sysconf
    monkeypatch.setattr(os, "sysconf",
                        lambda name: -1 if name == "SC_PHYS_PAGES" else sysconf(name))
    X, y = blobs()
    results = cyprop.train_many(lambda i: cyprop.Network([5, 3, 3], seed=i), X, y, 2,
                                epochs=1)
    assert len(results) == 2

def test_networks_of_the_wrong_type_are_refused_before_the_rest_are_built():
    X, y = blobs()
    built = []

    def build(i):
        built.append(i)
        return "not a network"

    with pytest.raises(TypeError, match=r"build\(0\) must return a cyprop.Network, got str"):
        cyprop.train_many(build, X, y, 5, epochs=1)
    assert built == [0]


def test_sorted_best_first_by_training_loss_then_by_index():
    X, y = blobs()
    results = cyprop.train_many(lambda i: cyprop.Network([5, 4, 3], seed=i % 2), X, y, 4,
                                epochs=2)
    losses = [history.loss[-1] for _, history in results]
    assert losses == sorted(losses)
    # seeds 0 and 1 twice each: equal losses, the lower i (same seed, built first) first
    seeds = [net.seed for net, _ in results]
    assert sorted(seeds) == [0, 0, 1, 1] and seeds[0] == seeds[1]
    assert losses[0] == losses[1]


def test_sorted_by_validation_loss_of_the_weights_returned():
    X, y = blobs(200)
    results = cyprop.train_many(lambda i: cyprop.Network([5, 6, 3], seed=i), X, y, 4,
                                epochs=30, early_stopping=True, patience=3,
                                optimizer=cyprop.SGD(2.0))
    best = [min(history.val_loss) for _, history in results]
    assert best == sorted(best)
    for net, history in results:   # early stopping restored the best epoch
        assert net.evaluate(X[-20:], y[-20:])["loss"] == pytest.approx(min(history.val_loss))
    split = cyprop.train_many(lambda i: cyprop.Network([5, 6, 3], seed=i), X, y, 3,
                              epochs=3, validation_split=0.2)
    last = [history.val_loss[-1] for _, history in split]
    assert last == sorted(last)


def test_sorted_by_the_epoch_early_stopping_restores_with_min_delta():
    # with min_delta, early stopping keeps the last epoch that improved by more than it,
    # not the lowest validation loss: ranking by the lowest put worse networks first
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] + 0.5 * rng.normal(size=60) > 0).astype(int) + (X[:, 1] > 0.5)
    X_val = rng.normal(size=(40, 5))
    y_val = (X_val[:, 0] > 0).astype(int) + (X_val[:, 1] > 0.5)
    results = cyprop.train_many(lambda i: cyprop.Network([5, 6, 3], seed=i), X, y, 8,
                                epochs=15, validation_data=(X_val, y_val),
                                early_stopping=True, min_delta=0.05, patience=3,
                                optimizer=cyprop.SGD(0.5))
    returned = [net.loss(X_val, y_val) for net, _ in results]
    assert returned == sorted(returned)
    # (the case arises here: a network whose lowest validation loss was not kept)
    assert any(min(history.val_loss) < loss - 1e-12
               for (_, history), loss in zip(results, returned))


def test_fits_run_silently_on_one_kernel_thread(monkeypatch, capsys):
    calls = []
    original = cyprop.Network.fit

    def recording_fit(self, *args, **kwargs):
        calls.append((kwargs["n_threads"], kwargs["verbose"], threading.current_thread()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cyprop.Network, "fit", recording_fit)
    X, y = blobs()
    cyprop.train_many(lambda i: cyprop.Network([5, 4, 3], seed=i), X, y, 3, n_threads=2,
                      epochs=2)
    assert [(n, v) for n, v, _ in calls] == [(1, 0)] * 3
    assert all(t is not threading.main_thread() for _, _, t in calls)
    assert capsys.readouterr().out == ""


def test_thread_count(monkeypatch):
    cores = ensemble_module._backend._compiled.CORES
    assert ensemble_module._pool_size(1, 8) == 1
    assert ensemble_module._pool_size(2, 1) == 1                   # no more than networks
    assert ensemble_module._pool_size(1000, 2000) == cores          # capped to the cores
    monkeypatch.setattr(ensemble_module._backend._compiled, "threads",
                        lambda requested=None: requested or 3)
    assert ensemble_module._pool_size(None, 8) == 3                 # fit's default
    monkeypatch.setattr(ensemble_module._backend, "_compiled", None)
    assert ensemble_module._pool_size(None, 8) == 1                 # NumPy only: 1
    with pytest.raises(ValueError, match="n_threads"):
        ensemble_module._pool_size(0, 8)
    with pytest.raises(TypeError, match="n_threads"):
        ensemble_module._pool_size(1.5, 8)


def test_bad_builds_are_refused_before_training():
    X, y = blobs()
    net = cyprop.Network([5, 4, 3], seed=0)
    with pytest.raises(ValueError, match="same network"):
        cyprop.train_many(lambda i: net, X, y, 2)
    with pytest.raises(TypeError, match=r"build\(1\) must return a cyprop.Network"):
        cyprop.train_many(lambda i: net if i == 0 else "net", X, y, 2)
    with pytest.raises(ValueError, match="n must be >= 1"):
        cyprop.train_many(lambda i: net, X, y, 0)
    assert net.history.epochs == 0


def test_networks_sharing_an_optimizer_are_refused_before_training():
    """Networks that build gave one optimizer object trained with it in turn (its
    momentum carried from one network into the next: results that depend on the thread
    count), or failed at random on two threads with 'training another network'."""
    X, y = blobs()
    shared = cyprop.SGD(learning_rate=0.1, momentum=0.9)
    built = []

    def build(i):
        net = cyprop.Network([5, 4, 3], seed=i)
        net.optimizer = shared if i != 1 else cyprop.SGD()
        built.append(net)
        return net

    with pytest.raises(ValueError, match="networks 0 and 2 share one optimizer"):
        cyprop.train_many(build, X, y, 3, n_threads=1, epochs=2)
    assert all(net.history.epochs == 0 for net in built) and shared.steps == 0
    # an optimizer given to fit replaces theirs: each network gets its own copy of it
    built.clear()
    results = cyprop.train_many(build, X, y, 3, n_threads=1, epochs=2,
                                optimizer=cyprop.SGD(learning_rate=0.1, momentum=0.9))
    assert len(results) == 3 and shared.steps == 0


class PoisonNetwork:
    """A callback writing NaN into one network's weights: its next epoch raises
    TrainingDiverged."""

    def __init__(self, victim):
        self.victim = victim

    def on_epoch_end(self, net, epoch, logs):
        if net.seed == self.victim and epoch == 0:
            net.weights[0][0, 0] = np.nan


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_failure_stops_the_others_and_is_raised(backend):
    X, y = blobs(60)
    nets = []

    def build(i):
        nets.append(cyprop.Network([5, 4, 3], seed=i, backend=backend))
        return nets[-1]

    with pytest.raises(cyprop.TrainingDiverged) as failure:
        cyprop.train_many(build, X, y, 4, n_threads=2, epochs=1_000_000, batch_size=60,
                          callbacks=[PoisonNetwork(victim=1)])
    if sys.version_info >= (3, 11):
        assert "network 1 of train_many" in failure.value.__notes__[0]
    assert nets[1].history.stop_reason == "diverged"
    # network 0 trained beside it and was stopped; 2 and 3 never started
    assert nets[0].history.stop_reason == "callback"
    assert 0 < nets[0].history.epochs < 1_000_000
    assert [nets[i].history.epochs for i in (2, 3)] == [0, 0]
    assert not [t for t in threading.enumerate() if t.name.startswith("cyprop-train")]


def test_ctrl_c_stops_every_fit(tmp_path):
    """SIGINT in a child process: the running fits stop at their next epoch boundary,
    the others never start, KeyboardInterrupt comes out of train_many, and no
    training thread is left."""
    script = textwrap.dedent("""
        import json
        import sys
        import threading
        import numpy as np
        import cyprop

        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(200, 10)), rng.integers(0, 3, 200)
        nets = []

        def build(i):
            nets.append(cyprop.Network([10, 16, 3], seed=i))
            return nets[-1]

        class Started:
            def on_epoch_end(self, net, epoch, logs):
                if epoch == 0:   # one write: the threads' lines must not mix
                    sys.stdout.write(f"started {net.seed}\\n")
                    sys.stdout.flush()

        try:
            cyprop.train_many(build, X, y, 4, n_threads=2, epochs=10_000_000,
                              batch_size=1, callbacks=[Started()])
        except KeyboardInterrupt:
            print(json.dumps({"stop_reasons": [net.history.stop_reason for net in nets],
                              "epochs": [net.history.epochs for net in nets],
                              "threads": threading.active_count()}), flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        started = {child.stdout.readline().strip() for _ in range(2)}
        assert started == {"started 0", "started 1"}
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report["stop_reasons"] == ["callback", "callback", None, None], out
    assert min(report["epochs"][:2]) > 0 and report["epochs"][2:] == [0, 0]
    assert report["threads"] == 1       # only the main thread is left


# -------------------------------------------------------------------- Ensemble
def trained(seed, X, y, sizes=(5, 6, 3), **kwargs):
    net = cyprop.Network(list(sizes), seed=seed, **kwargs)
    net.fit(X, y, epochs=3, verbose=0)
    return net


def test_ensemble_averages_the_outputs():
    X, y = blobs()
    nets = [trained(i, X, y) for i in range(3)]
    ensemble = cyprop.Ensemble(nets)
    mean = np.mean([net.forward(X) for net in nets], axis=0)
    np.testing.assert_allclose(ensemble.forward(X), mean, rtol=1e-15)
    np.testing.assert_array_equal(ensemble.predict(X), mean.argmax(axis=1))
    np.testing.assert_allclose(ensemble.forward(X[3]), mean[3], rtol=1e-15)
    assert ensemble.predict(X[3]) == mean[3].argmax()
    result = ensemble.evaluate(X, y)
    onehot = np.eye(3)[y]
    assert result["loss"] == pytest.approx(np.mean(-np.sum(onehot * np.log(mean), axis=1)))
    assert result["accuracy"] == np.mean(mean.argmax(axis=1) == y)
    assert len(ensemble) == 3 and "3 networks" in repr(ensemble)
    # one network: the ensemble is that network
    alone = cyprop.Ensemble(nets[:1]).evaluate(X, y)
    assert alone["loss"] == pytest.approx(nets[0].evaluate(X, y)["loss"], rel=1e-12)
    assert alone["accuracy"] == nets[0].evaluate(X, y)["accuracy"]


def test_ensemble_with_one_output_and_mse():
    X, y = blobs(n_classes=2)
    sigmoid = [trained(i, X, y, (5, 4, 1)) for i in range(2)]
    mean = (sigmoid[0].forward(X) + sigmoid[1].forward(X)) / 2
    ensemble = cyprop.Ensemble(sigmoid)
    np.testing.assert_array_equal(ensemble.predict(X), (mean[:, 0] > 0.5).astype(int))
    a = mean[:, 0]
    expected = np.mean(-(y * np.log(a) + (1 - y) * np.log(1 - a)))
    assert ensemble.evaluate(X, y)["loss"] == pytest.approx(expected)
    mse = [trained(i, X, y, (5, 4, 2), loss="mse", output="identity", dtype="float32")
           for i in range(2)]
    ensemble = cyprop.Ensemble(mse)
    assert ensemble.forward(X).dtype == np.float32
    mean = (mse[0].forward(X).astype(np.float64) + mse[1].forward(X)) / 2
    expected = np.mean(0.5 * np.sum((mean - np.eye(2)[y]) ** 2, axis=1))
    assert ensemble.evaluate(X, y)["loss"] == pytest.approx(expected, rel=1e-6)
    mixed = cyprop.Ensemble([mse[0], trained(2, X, y, (5, 3, 3, 2), loss="mse",
                                             output="identity")])
    assert mixed.forward(X).dtype == np.float64


def test_a_mixed_ensemble_evaluates_float64_targets_whatever_the_order():
    """evaluate converted the targets to the first member's dtype: with a float32 member
    first, float64 targets were rounded to float32 (or refused as infinite beyond its
    range) before the float64 loss of the float64 mean output."""
    X, y = blobs(n_classes=2)
    targets = np.random.default_rng(1).normal(size=(len(X), 2)) / 3
    nets = [trained(i, X, y, (5, 4, 2), loss="mse", output="identity", dtype=dtype)
            for i, dtype in enumerate(("float32", "float64"))]
    mean = (nets[0].forward(X).astype(np.float64) + nets[1].forward(X)) / 2
    expected = np.mean(0.5 * np.sum((mean - targets) ** 2, axis=1))
    for members in (nets, nets[::-1]):
        loss = cyprop.Ensemble(members).evaluate(X, targets)["loss"]
        assert loss == pytest.approx(expected, rel=1e-13)
        huge = cyprop.Ensemble(members).evaluate(X, targets * 1e40)["loss"]
        assert huge == pytest.approx(np.mean(0.5 * np.sum((mean - targets * 1e40) ** 2,
                                                          axis=1)), rel=1e-12)


def test_ensemble_members_must_agree():
    X, y = blobs()
    net = trained(0, X, y)
    with pytest.raises(ValueError, match="at least one"):
        cyprop.Ensemble([])
    with pytest.raises(TypeError, match="net for net, history"):
        cyprop.Ensemble([(net, net.history)])
    for other, what in ((cyprop.Network([4, 6, 3]), "inputs"),
                        (cyprop.Network([5, 6, 4]), "outputs"),
                        (cyprop.Network([5, 6, 3], output="sigmoid"), "output activation"),
                        (cyprop.Network([5, 6, 3], loss="mse"), "loss")):
        with pytest.raises(ValueError, match=f"network 1 has {what}"):
            cyprop.Ensemble([net, other])
    with pytest.raises(ValueError, match="outside the range"):
        cyprop.Ensemble([net]).evaluate(X, y + 1)


def test_ensemble_members_must_agree_on_their_classes(tmp_path):
    """Members whose outputs stand for other labels were averaged unit by unit (a cat's
    probability with a dog's), and saved and loaded so."""
    X, y = blobs()
    first, second, third = trained(0, X, y), trained(1, X, y), trained(2, X, y)
    first.classes, second.classes = ["cat", "dog", "gnu"], ["dog", "cat", "gnu"]
    with pytest.raises(ValueError, match="network 2 has classes .*'dog', 'cat'.*, network 1 "
                                         "has .*'cat', 'dog'.*must agree"):
        cyprop.Ensemble([third, first, second])
    ensemble = cyprop.Ensemble([third, first])   # (a member without classes names none)
    ensemble.networks.append(second)
    with pytest.raises(ValueError, match="classes"):
        ensemble.save(tmp_path / "e.npz")
    assert not (tmp_path / "e.npz").exists()
    second.classes = first.classes
    cyprop.Ensemble([third, first, second]).save(tmp_path / "e.npz")
    loaded = cyprop.Ensemble.load(tmp_path / "e.npz")
    assert [net.classes for net in loaded.networks] == [None, first.classes, first.classes]


def test_members_changed_after_construction_are_checked_as_the_constructor_checks_them():
    """networks is a plain list: emptied, or given a member of other outputs, forward
    failed with 'at least one array or dtype is required' or NumPy's broadcasting
    error, repr with an IndexError, and a member of another output activation (of the
    same shape) was averaged in silently."""
    X, y = blobs()
    net = trained(0, X, y)
    for other, error, what in ((None, ValueError, "at least one network"),
                               ("net", TypeError, "cyprop.Network objects"),
                               (cyprop.Network([5, 6, 4]), ValueError, "outputs"),
                               (cyprop.Network([5, 6, 3], output="sigmoid"), ValueError,
                                "output activation")):
        ensemble = cyprop.Ensemble([net])
        if other is None:
            ensemble.networks.clear()
        else:
            ensemble.networks.append(other)
        for call in (lambda: ensemble.forward(X), lambda: ensemble.predict(X),
                     lambda: ensemble.evaluate(X, y)):
            with pytest.raises(error, match=what):
                call()
        assert "Ensemble(" in repr(ensemble)


def _sigmoid_net(dtype, weight):
    net = cyprop.Network([2, 1], output="sigmoid", dtype=dtype, seed=0)
    net.weights = [np.array([[weight, 0.0]])]
    net.biases = [np.zeros(1)]
    return net


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cross_entropy_where_probabilities_round_to_one(tmp_path, dtype):
    """The loss was taken from the mean output in the members' dtype: where it rounded
    to 1 (a float32 sigmoid of 20, a float64 one of 40, a float32 softmax of a logit
    gap of 120), 1 - a was 0 and a sample of the other class cost about 708."""
    X = np.array([[20.0, 0.0], [40.0, 0.0], [-3.0, 0.0]])
    y = np.array([0, 0, 1])
    one = _sigmoid_net(dtype, 1.0)
    assert cyprop.Ensemble([one]).evaluate(X, y)["loss"] == pytest.approx(
        one.evaluate(X, y)["loss"], rel=1e-7)
    # two members: -log of the mean of their probabilities, in float64 by hand
    two = cyprop.Ensemble([one, _sigmoid_net(dtype, 1.5)])
    z = X[:, :1] * np.array([1.0, 1.5])
    p = np.mean(1 / (1 + np.exp(-z)), axis=1)
    q = np.mean(1 / (1 + np.exp(z)), axis=1)          # 1 - p without the rounding
    expected = np.mean(np.where(y == 1, -np.log(p), -np.log(q)))
    assert two.evaluate(X, y)["loss"] == pytest.approx(expected, rel=1e-7)
    # the same read a block at a time from a memory map
    mapped = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float64,
                                       shape=X.shape)
    mapped[:] = X
    assert two.evaluate(mapped, y)["loss"] == pytest.approx(expected, rel=1e-7)
    softmax = cyprop.Network([2, 3], output="softmax", dtype=dtype, seed=0)
    softmax.weights = [np.array([[120.0, 0.0], [0.0, 0.0], [-5.0, 0.0]])]
    softmax.biases = [np.zeros(3)]
    X, y = np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([1, 2])
    loss = cyprop.Ensemble([softmax]).evaluate(X, y)["loss"]
    assert loss == pytest.approx(softmax.evaluate(X, y)["loss"], rel=1e-7)
    assert loss == pytest.approx((120 + 250) / 2)     # the logit gaps of the targets


def test_evaluate_refuses_a_loss_that_overflows_as_a_network_does():
    """The loss of the mean output was computed without a check: targets of 1e200
    gave a loss of inf (and a RuntimeWarning) where the network's evaluate raises."""
    X, _ = blobs()
    net = cyprop.Network([5, 4, 2], output="identity", loss="mse", seed=0)
    targets = np.full((len(X), 2), 1e200)
    with pytest.raises(FloatingPointError, match="overflowed"):
        net.evaluate(X, targets)
    with pytest.raises(FloatingPointError, match="overflowed"):
        cyprop.Ensemble([net]).evaluate(X, targets)


# ------------------------------------------------------------------ the file
@pytest.mark.parametrize("backend", BACKENDS)
def test_save_and_load(tmp_path, backend):
    X, y = blobs()
    nets = [trained(i, X, y, backend=backend) for i in range(3)]
    nets[1].fit(X, y, epochs=1, optimizer=cyprop.Adam(), verbose=0)
    path = tmp_path / "ensemble"
    cyprop.Ensemble(nets).save(path)
    assert os.listdir(tmp_path) == ["ensemble"]          # exactly the path, one file
    loaded = cyprop.Ensemble.load(path, backend=backend)
    assert len(loaded) == 3
    for net, back in zip(nets, loaded.networks):
        np.testing.assert_array_equal(params(net), params(back))
        assert back.backend == backend and back.sizes == net.sizes
        assert back.history.loss == net.history.loss
    np.testing.assert_array_equal(loaded.networks[1].optimizer.state, nets[1].optimizer.state)
    np.testing.assert_array_equal(loaded.forward(X), cyprop.Ensemble(nets).forward(X))
    # each member is exactly a network file, which cyprop.load reads
    with np.load(path) as archive:
        member = io.BytesIO(archive["network_2"].tobytes())
    member_path = tmp_path / "member"
    member_path.write_bytes(member.getvalue())
    np.testing.assert_array_equal(params(cyprop.load(member_path)), params(nets[2]))


def write_archive(path, members, compression=zipfile.ZIP_STORED):
    """A zip of .npy members {name: array}, written by hand."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, array in members.items():
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=True)
            archive.writestr(name + ".npy", buffer.getvalue())


def test_network_load_names_an_ensemble_file(tmp_path):
    """cyprop.load on an ensemble's file says what it is and what reads it (as
    Ensemble.load does for a network's file)."""
    X, y = blobs()
    path = tmp_path / "ensemble.npz"
    cyprop.Ensemble([trained(0, X, y)]).save(path)
    with pytest.raises(ValueError, match=r"it is an ensemble, not a network: read it with "
                                         r"cyprop\.Ensemble\.load"):
        cyprop.load(path)


def metadata(**fields):
    meta = {"format": "cyprop-ensemble", "format_version": 1, "networks": 1, **fields}
    return np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def test_load_refuses_what_save_would_not_write(tmp_path):
    X, y = blobs()
    good = tmp_path / "good"
    cyprop.Ensemble([trained(0, X, y)]).save(good)
    with np.load(good) as archive:
        member = archive["network_0"]
    network_file = tmp_path / "network"
    trained(1, X, y).save(network_file)

    cases = {
        "a network": (network_file, "it is a network, not an ensemble"),
        "not a zip": (b"hello", "not a cyprop ensemble file"),
        "empty": (b"", "not a cyprop ensemble file"),
        "truncated": (good.read_bytes()[:len(good.read_bytes()) // 2],
                      "truncated or corrupted"),
        # cut after a network's own end record, a zip reader finds that network's
        # archive (it looks for the last end record): refused as truncated all the same
        "end cut off": (good.read_bytes()[:-100], "truncated or corrupted"),
    }
    crafted = {
        "pickled member": ({"metadata": metadata(),
                            "network_0": np.array([object()], dtype=object)}, "dtype"),
        "missing network": ({"metadata": metadata(networks=2), "network_0": member,
                             "network_2": member}, "missing network_1, unexpected network_2"),
        "too few entries": ({"metadata": metadata(networks=2), "network_0": member},
                            "invalid number of networks 2 for a file of 2 entries"),
        "extra entry": ({"metadata": metadata(), "network_0": member,
                         "weights": np.zeros(3)}, "unexpected"),
        "newer format": ({"metadata": metadata(format_version=2), "network_0": member},
                         "newer cyprop"),
        "no networks": ({"metadata": metadata(networks=0)}, "invalid number of networks"),
        "huge count": ({"metadata": metadata(networks=10**30), "network_0": member},
                       "invalid number of networks"),
        "not ours": ({"metadata": np.frombuffer(b'{"format": "x"}', np.uint8),
                      "network_0": member}, "does not name the format"),
        "bad json": ({"metadata": np.frombuffer(b"{", np.uint8), "network_0": member},
                     "not valid JSON"),
        "bad member": ({"metadata": metadata(), "network_0": member[:-50]},
                       r"\(network 0\)"),
        "2-D member": ({"metadata": metadata(), "network_0": member.reshape(1, -1)},
                       "expected 1-D"),
        # (it said "not a cyprop network file", of a file read as an ensemble)
        "path member": ({"metadata": metadata(), "network_0": member, "../x": member},
                        r"not a cyprop ensemble file \(it holds '\.\./x\.npy'"),
    }
    for name, (members, message) in crafted.items():
        path = tmp_path / name.replace(" ", "_")
        write_archive(path, members)
        cases[name] = (path, message)
    compressed = tmp_path / "compressed"
    write_archive(compressed, {"metadata": metadata(), "network_0": member},
                  zipfile.ZIP_DEFLATED)
    cases["compressed"] = (compressed, "compressed")
    for name, (content, message) in cases.items():
        path = content if isinstance(content, os.PathLike) else tmp_path / "raw"
        if not isinstance(content, os.PathLike):
            path.write_bytes(content)
        with pytest.raises(ValueError, match=message):
            cyprop.Ensemble.load(path)
        assert name
    # members that do not make an ensemble
    other = tmp_path / "other"
    cyprop.Ensemble([cyprop.Network([4, 3, 3])]).save(other)
    with np.load(other) as archive:
        stranger = archive["network_0"]
    mixed = tmp_path / "mixed"
    write_archive(mixed, {"metadata": metadata(networks=2), "network_0": member,
                          "network_1": stranger})
    with pytest.raises(ValueError, match="do not make an ensemble"):
        cyprop.Ensemble.load(mixed)
    with pytest.raises(ValueError, match="unknown backend"):
        cyprop.Ensemble.load(good, backend="gpu")
    with pytest.raises(FileNotFoundError):
        cyprop.Ensemble.load(tmp_path / "nothing")
    with pytest.raises(IsADirectoryError):
        cyprop.Ensemble.load(tmp_path)
    assert len(cyprop.Ensemble.load(good)) == 1


def test_a_truncated_ensemble_file_never_loads_as_one_of_its_networks(tmp_path):
    """Each network is stored whole inside the ensemble's file, so a file cut short (a
    copy or a download that stopped) can end with a network's complete archive, which
    a zip reader takes for the file's: cyprop.load then read one member as the model,
    without a word.  Both loaders must call it truncated, wherever the cut falls."""
    X, y = blobs()
    good = tmp_path / "good"
    cyprop.Ensemble([trained(0, X, y), trained(1, X, y)]).save(good)
    data = good.read_bytes()
    with np.load(good) as archive:
        ends = [data.index(archive[f"network_{i}"].tobytes()) + archive[f"network_{i}"].size
                for i in range(2)]
    cut = tmp_path / "cut"
    for end in ends:
        for extra in (0, 1, 17):   # the end record just whole, and a few bytes more
            cut.write_bytes(data[:end + extra])
            for load in (cyprop.load, cyprop.Ensemble.load):
                with pytest.raises(ValueError, match="truncated or corrupted"):
                    load(cut)


def test_save_into_a_missing_folder_names_the_path_given(tmp_path):
    # (it named the hidden temporary file beside it, a name the caller never gave)
    target = tmp_path / "nowhere" / "ensemble"
    with pytest.raises(FileNotFoundError) as info:
        cyprop.Ensemble([cyprop.Network([3, 2], seed=0)]).save(target)
    assert info.value.filename == str(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)


def test_save_names_the_member_it_cannot_save_and_keeps_the_file(tmp_path):
    # "cannot save this network" did not say which of the ensemble's networks
    path = tmp_path / "ensemble"
    good = [cyprop.Network([3, 4, 2], seed=i) for i in range(3)]
    cyprop.Ensemble(good).save(path)
    before = path.read_bytes()
    spoilt = good[2].copy()
    spoilt._params[0] = np.nan          # (set in place, past the checks of weights[...])
    with pytest.raises(ValueError, match=r"^network 2 of the ensemble: cannot save .*NaN"):
        cyprop.Ensemble([*good[:2], spoilt]).save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ensemble"]


def test_save_refuses_networks_changed_into_no_ensemble_and_keeps_the_file(tmp_path):
    """``networks`` is a plain list: emptied, or given a stranger or a non-network after
    the ensemble was made, save wrote a file that Ensemble.load refuses, over the
    good one."""
    path = tmp_path / "ensemble"
    cyprop.Ensemble([cyprop.Network([3, 2], seed=0)]).save(path)
    before = path.read_bytes()
    for change, error, message in (
            (lambda nets: nets.clear(), ValueError, "at least one network"),
            (lambda nets: nets.append(cyprop.Network([4, 2], seed=1)), ValueError,
             "network 1 has inputs 4, network 0 has 3"),
            (lambda nets: nets.append("junk"), TypeError, "got str")):
        ensemble = cyprop.Ensemble([cyprop.Network([3, 2], seed=2)])
        change(ensemble.networks)
        with pytest.raises(error, match=message):
            ensemble.save(path)
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["ensemble"]
    assert len(cyprop.Ensemble.load(path)) == 1
