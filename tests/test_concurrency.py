"""Concurrency and re-entrancy: objects that two trainings would share at once.

One network trains at a time (test_faults.py checks a second fit on a training
network).  Here: an optimizer that two networks would train with at once, from two
threads or from a training's own callback; a scikit-learn estimator fitted from two
threads at once; weights set from another thread while a network trains; a process
forked while threads hold a network's locks.  Interleavings are forced with events (a callback, or a wrapped epoch,
that waits), never with sleeps.
"""

import contextlib
import copy
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import cyprop


def problem(n_inputs=6, n_classes=3, n=100, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_inputs)), rng.integers(0, n_classes, n)


class Hold:
    """A callback that, at the end of epoch ``at``, says so and waits to be let go."""

    def __init__(self, at=0):
        self.at, self.inside, self.go_on = at, threading.Event(), threading.Event()

    def on_epoch_end(self, net, epoch, logs):
        if epoch == self.at:
            self.inside.set()
            assert self.go_on.wait(timeout=60), "never let go"


def in_thread(call, name=None):
    """Start ``call()`` in a thread (of that name); returns (thread, list of what it
    raised)."""
    errors = []

    def run():
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, errors


@contextlib.contextmanager
def while_held(hold, thread, errors):
    """The body runs while ``thread``'s training waits in ``hold``; then the training is
    let go, and must end without error."""
    try:
        assert hold.inside.wait(timeout=60), "the held training never got there"
        yield
    finally:
        hold.go_on.set()
        thread.join(timeout=120)
    assert not thread.is_alive() and not errors, errors


def trained_alone(backend, optimizer, epochs=4):
    X, y = problem()
    net = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    net.fit(X, y, epochs=epochs, batch_size=5, seed=1, verbose=0, optimizer=optimizer)
    return net


def assert_same(net, other):
    np.testing.assert_array_equal(net._params, other._params)
    np.testing.assert_array_equal(net.optimizer.state, other.optimizer.state)
    assert net.optimizer.steps == other.optimizer.steps
    assert net.history.loss == other.history.loss


# ------------------------------------------------------------- a shared optimizer
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_callback_cannot_train_another_network_with_the_running_optimizer(backend):
    """A callback that trains another network (of another size) with the optimizer of
    the fit it runs in would reset that optimizer's state (and step count) under the
    fit: refused, and the fit ends as it would have alone."""
    X, y = problem()
    X2, y2 = problem(n_inputs=4, n_classes=2, n=50, seed=1)
    other = cyprop.Network([4, 5, 2], seed=0, backend=backend)
    refused = []

    class TrainAnother:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 1:
                with pytest.raises(RuntimeError, match="training another network") as info:
                    other.fit(X2, y2, epochs=1, verbose=0, optimizer=net.optimizer)
                refused.append(info.value)

    net = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    before = other.get_state()
    net.fit(X, y, epochs=4, batch_size=5, seed=1, verbose=0, optimizer=cyprop.Adam(0.01),
            callbacks=[TrainAnother()])
    assert refused and "copy.deepcopy" in str(refused[0])
    assert_same(net, trained_alone(backend, cyprop.Adam(0.01)))
    # the refused call changed nothing of the other network
    np.testing.assert_array_equal(other._params, before.params)
    assert other.optimizer is None and len(other.history) == 0


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("how", ["fit", "partial_fit", "one_row"])
def test_a_network_cannot_train_with_an_optimizer_training_in_another_thread(backend, how):
    """Network A trains in a thread; network B, which shares A's optimizer (given to it,
    or left from an earlier fit), would step A's state with B's gradients (same size)
    or reset it (another size) while A trains: refused, whichever path B's call takes
    (one row of partial_fit has its own, compiled, path); A ends as it would alone."""
    X, y = problem()
    shared = cyprop.SGD(0.1, momentum=0.9)
    other = cyprop.Network([6, 8, 3], seed=5, backend=backend)
    if how != "fit":
        other.partial_fit(X[:2], y[:2], optimizer=shared)   # other.optimizer is shared
    before = other.get_state()
    net = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    hold = Hold()
    thread, errors = in_thread(lambda: net.fit(X, y, epochs=4, batch_size=5, seed=1,
                                               verbose=0, optimizer=shared, callbacks=[hold]))
    with while_held(hold, thread, errors):
        calls = {"fit": lambda: other.fit(X, y, epochs=1, verbose=0, optimizer=shared),
                 "partial_fit": lambda: other.partial_fit(X[:10], y[:10]),
                 "one_row": lambda: other.partial_fit(X[3], y[3])}
        with pytest.raises(RuntimeError, match="training another network"):
            calls[how]()
    assert_same(net, trained_alone(backend, cyprop.SGD(0.1, momentum=0.9)))
    np.testing.assert_array_equal(other._params, before.params)
    assert len(other.history) == len(before.history["loss"])


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_an_optimizer_is_free_again_once_its_fit_ends(backend):
    """Sharing one after the other is not refused, and a fit that fails (a callback
    raising) frees its optimizer too."""
    X, y = problem()
    shared = cyprop.Adam(0.01)

    class Fail:
        def on_epoch_end(self, net, epoch, logs):
            raise KeyError("from the callback")

    first = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    with pytest.raises(KeyError):
        first.fit(X, y, epochs=2, verbose=0, optimizer=shared, callbacks=[Fail()])
    second = cyprop.Network([6, 5, 3], seed=0, backend=backend)
    second.fit(X, y, epochs=1, verbose=0, optimizer=shared)
    first.partial_fit(X[0], y[0])   # one row, with the optimizer second left
    first.fit(X, y, epochs=1, verbose=0)
    assert first.optimizer is shared and shared.steps > 0


@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_callback_cannot_switch_to_an_optimizer_training_elsewhere(backend):
    """A callback may replace ``net.optimizer``; one that another network is training
    with right now is refused before the next epoch, which keeps the epochs done."""
    X, y = problem()
    busy = cyprop.SGD(0.05)
    elsewhere = cyprop.Network([6, 8, 3], seed=3, backend=backend)
    hold = Hold()
    thread, errors = in_thread(lambda: elsewhere.fit(X, y, epochs=2, verbose=0,
                                                     optimizer=busy, callbacks=[hold]))

    class Switch:
        def on_epoch_end(self, net, epoch, logs):
            self.own = net.optimizer
            net.optimizer = busy

    net = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    switch = Switch()
    with while_held(hold, thread, errors):
        with pytest.raises(RuntimeError, match="training another network"):
            net.fit(X, y, epochs=3, verbose=0, callbacks=[switch])
    assert len(net.history) == 1
    # the one that trained so far is put back (the network kept the other's optimizer)
    assert net.optimizer is switch.own and net.optimizer.steps > 0
    assert len(elsewhere.history) == 2 and elsewhere.history.stop_reason == "epochs"


def test_optimizers_copy_and_pickle_without_their_lock():
    import pickle

    X, y = problem()
    net = trained_alone("cython", cyprop.Adam(0.01), epochs=1)
    for copier in (copy.deepcopy, copy.copy, lambda opt: pickle.loads(pickle.dumps(opt))):
        opt = copier(net.optimizer)
        np.testing.assert_array_equal(opt.state, net.optimizer.state)
        # a copy trains another network while the original's network trains
        other = cyprop.Network([6, 8, 3], seed=1)
        hold = Hold()
        thread, errors = in_thread(lambda: net.fit(X, y, epochs=1, verbose=0,
                                                   callbacks=[hold]))
        with while_held(hold, thread, errors):
            other.fit(X, y, epochs=1, verbose=0, optimizer=opt)



@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("replacement", ["busy", "None"])
def test_an_optimizer_set_from_another_thread_as_a_fit_starts_is_not_trained_unclaimed(
        backend, replacement):
    """``net.optimizer = ...`` from another thread just after a fit claimed the
    network's optimizer, before its first epoch: the epoch trained with whatever
    ``net.optimizer`` was by then, unclaimed (one that another network was training
    with was stepped under that training), or failed on an assertion (None).  The fit
    trains with the optimizer it claimed."""
    X, y = problem()
    busy = cyprop.SGD(0.1, momentum=0.9)
    elsewhere = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    hold = Hold()
    thread, errors = in_thread(lambda: elsewhere.fit(X, y, epochs=4, batch_size=5, seed=1,
                                                     verbose=0, optimizer=busy,
                                                     callbacks=[hold]))
    net = cyprop.Network([6, 8, 3], seed=3, backend=backend)
    own = cyprop.Adam(0.01)
    inside, go_on = threading.Event(), threading.Event()

    class HeldBackend:
        """The network's backend, whose first loss (the divergence limit's, measured
        once the optimizer is claimed and before the first epoch) waits."""

        def __init__(self, impl):
            self.impl = impl

        def __getattr__(self, name):
            return getattr(self.impl, name)

        def loss_and_gradients(self, *args, **kwargs):
            if not inside.is_set():
                inside.set()
                assert go_on.wait(timeout=60), "never let go"
            return self.impl.loss_and_gradients(*args, **kwargs)

    net._impl = HeldBackend(net._impl)
    with while_held(hold, thread, errors):
        fit, fit_errors = in_thread(lambda: net.fit(X, y, epochs=1, batch_size=5, seed=1,
                                                    verbose=0, optimizer=own))
        assert inside.wait(timeout=60)
        net.optimizer = busy if replacement == "busy" else None
        go_on.set()
        fit.join(timeout=60)
        assert not fit.is_alive() and not fit_errors, fit_errors
    assert_same(elsewhere, trained_alone(backend, cyprop.SGD(0.1, momentum=0.9)))
    alone = cyprop.Network([6, 8, 3], seed=3, backend=backend)
    alone.fit(X, y, epochs=1, batch_size=5, seed=1, verbose=0, optimizer=cyprop.Adam(0.01))
    np.testing.assert_array_equal(net._params, alone._params)
    assert own.steps == alone.optimizer.steps


# --------------------------------------------------------------- a shared schedule
@pytest.mark.parametrize("where", ["callback", "thread"])
def test_a_schedule_that_keeps_state_serves_one_fit_at_a_time(where):
    """ReduceOnPlateau counts the epochs without improvement: a second fit updating it
    at the same time dropped the first fit's rate on the second's plateaus.  Refused;
    the first fit's rates are those it has alone, and a schedule without state (a
    function of the epoch) may serve both."""
    from cyprop.schedules import Cosine, ReduceOnPlateau

    X, y = problem()

    def schedule():
        return ReduceOnPlateau(patience=0, factor=0.5)

    def fit(net, sched, callbacks=(), epochs=6):
        net.fit(X, y, epochs=epochs, verbose=0, seed=1, schedule=sched, callbacks=callbacks)

    alone = cyprop.Network([6, 8, 3], seed=0)
    fit(alone, schedule())
    shared, stateless = schedule(), Cosine(period=4)
    other = cyprop.Network([6, 5, 3], seed=2)
    net = cyprop.Network([6, 8, 3], seed=0)

    def second_fits():
        with pytest.raises(RuntimeError, match="ReduceOnPlateau .* another fit"):
            fit(other, shared, epochs=3)
        fit(other, stateless, epochs=3)

    if where == "callback":
        class Second:
            def on_epoch_end(self, net, epoch, logs):
                if epoch == 1:
                    second_fits()

        fit(net, shared, [Second()])
    else:
        hold = Hold(at=1)
        thread, errors = in_thread(lambda: fit(net, shared, [hold]))
        with while_held(hold, thread, errors):
            second_fits()
    assert net.history.learning_rate == alone.history.learning_rate
    np.testing.assert_array_equal(net._params, alone._params)
    fit(other, shared, epochs=1)   # free again


# ------------------------------------------------------------ scikit-learn estimators
def held_epochs(monkeypatch, module, name):
    """Wrap ``module.name`` (a function the estimators train through) so that the first
    call from a thread named "held" says so and waits to be let go; returns the Hold."""
    hold, original = Hold(), getattr(module, name)

    def wrapped(*args, **kwargs):
        if threading.current_thread().name == "held" and not hold.inside.is_set():
            hold.on_epoch_end(None, 0, {})
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)
    return hold


@pytest.mark.filterwarnings("ignore:.*(Maximum iterations|lbfgs failed to converge)")
@pytest.mark.parametrize("solver,first,second", [
    ("sgd", "fit", "fit"), ("lbfgs", "fit", "fit"), ("sgd", "fit", "partial_fit"),
    ("sgd", "partial_fit", "partial_fit"), ("sgd", "partial_fit", "network_"),
    ("lbfgs", "fit", "network_")])
def test_an_estimator_fitting_in_another_thread_refuses_a_second_fit(monkeypatch, solver,
                                                                     first, second):
    """Two fits of one estimator at once each built a network and trained whichever was
    ``network_`` at the time, one network trained by both, n_iter_ counting both
    (beyond max_iter) and loss_curve_ holding both's records; its network could be
    trained directly meanwhile too.  The second is refused (as a second fit of a
    Network is), and the first ends as it would alone."""
    sklearn = pytest.importorskip("cyprop.sklearn")
    from cyprop import _lbfgs

    X, y = problem(n=120)
    X2, y2 = problem(n=120, seed=7)
    params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=6, random_state=0,
                  tol=0.0, n_iter_no_change=100)
    alone, clf = sklearn.BackpropClassifier(**params), sklearn.BackpropClassifier(**params)
    if first == "partial_fit":
        for estimator in (alone, clf):
            estimator.partial_fit(X2, y2, classes=[0, 1, 2])
    getattr(alone, first)(X, y)
    hold = (held_epochs(monkeypatch, sklearn._Epoch, "run") if solver != "lbfgs"
            else held_epochs(monkeypatch, _lbfgs, "minimize"))
    thread, errors = in_thread(lambda: getattr(clf, first)(X, y), name="held")
    with while_held(hold, thread, errors):
        calls = {"fit": lambda: clf.fit(X2, y2),
                 "partial_fit": lambda: clf.partial_fit(X2, y2),
                 "network_": lambda: clf.network_.partial_fit(X2[:5], y2[:5])}
        with pytest.raises(RuntimeError, match="already (being fitted|training)"):
            calls[second]()
    np.testing.assert_array_equal(clf.network_._params, alone.network_._params)
    assert clf.n_iter_ == alone.n_iter_
    if solver != "lbfgs":
        assert clf.loss_curve_ == alone.loss_curve_
        assert clf.t_ == alone.t_


@pytest.mark.filterwarnings("ignore:.*Maximum iterations")
def test_an_estimator_fits_again_after_a_failed_fit():
    sklearn = pytest.importorskip("cyprop.sklearn")
    X, y = problem(n=60)
    clf = sklearn.BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    with pytest.raises(ValueError):
        clf.fit(X, y[:50])
    clf.fit(X, y)   # not refused as "being fitted"
    assert clf.n_iter_ == 2


@pytest.mark.filterwarnings("ignore:.*Maximum iterations")
@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_network_cannot_train_with_the_optimizer_of_an_estimator_fitting_in_another_thread(
        monkeypatch, solver):
    """An estimator's stochastic fit trains its network with an optimizer of its own,
    which it did not claim: another network could train with it meanwhile (reset, then
    stepped by both).  Refused, as for a network's fit; the estimator ends as it would
    alone."""
    sklearn = pytest.importorskip("cyprop.sklearn")
    X, y = problem(n=120)
    params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=4, random_state=0,
                  tol=0.0, n_iter_no_change=100)
    alone, clf = sklearn.BackpropClassifier(**params), sklearn.BackpropClassifier(**params)
    alone.fit(X, y)
    hold = held_epochs(monkeypatch, sklearn._Epoch, "run")
    thread, errors = in_thread(lambda: clf.fit(X, y), name="held")
    other = cyprop.Network([6, 8, 3], seed=1)
    with while_held(hold, thread, errors):
        with pytest.raises(RuntimeError, match="training another network"):
            other.fit(X, y, epochs=1, verbose=0, optimizer=clf.network_.optimizer)
    np.testing.assert_array_equal(clf.network_._params, alone.network_._params)
    assert clf.loss_curve_ == alone.loss_curve_



@pytest.mark.filterwarnings("ignore:.*Maximum iterations")
@pytest.mark.parametrize("loss", ["log_loss", "poisson"])
@pytest.mark.parametrize("replacement", ["unclaimed", "None"])
def test_an_estimator_fit_trains_with_its_claimed_optimizer_when_network_optimizer_is_set(
        monkeypatch, loss, replacement):
    """``clf.network_.optimizer = ...`` from another thread during an estimator's fit:
    its epochs stepped whatever ``net.optimizer`` held by then, not the optimizer the
    fit claimed (an optimizer of another's stepped, unclaimed; None failed inside the
    core with an AttributeError).  The fit trains with its own, as it would alone."""
    sklearn = pytest.importorskip("cyprop.sklearn")
    X, y = problem(n=120)
    params = dict(hidden_layer_sizes=(8,), solver="adam", max_iter=3, random_state=0,
                  tol=0.0, n_iter_no_change=100)
    if loss == "poisson":
        make = lambda: sklearn.BackpropRegressor(loss="poisson", **params)  # noqa: E731
        y = y.astype(float)
    else:
        make = lambda: sklearn.BackpropClassifier(**params)  # noqa: E731
    alone, est = make().fit(X, y), make()
    other = cyprop.Adam(0.5)
    hold = held_epochs(monkeypatch, sklearn._Epoch, "run")
    thread, errors = in_thread(lambda: est.fit(X, y), name="held")
    with while_held(hold, thread, errors):
        est.network_.optimizer = other if replacement == "unclaimed" else None
    np.testing.assert_array_equal(est.network_._params, alone.network_._params)
    assert est.loss_curve_ == alone.loss_curve_
    assert other.steps == 0



@pytest.mark.filterwarnings("ignore:.*Maximum iterations")
@pytest.mark.parametrize("call", ["fit", "partial_fit"])
def test_ctrl_c_as_an_estimator_takes_its_network_lock_keeps_the_fitted_model(monkeypatch,
                                                                              call):
    """Ctrl-C as an estimator's fit takes its network's training lock (held back until
    the lock is noted, then raised) ended the call past the code that puts the
    estimator back: a fit from scratch left a new, untrained network_ (n_iter_ 0, the
    fitted model gone).  The estimator is left as it was, as for any failed call."""
    import signal

    sklearn = pytest.importorskip("cyprop.sklearn")
    X, y = problem(n=60)
    clf = sklearn.BackpropClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    clf.fit(X, y)
    net, params = clf.network_, clf.network_._params.copy()
    optimizer, curve, n_iter = net.optimizer, list(clf.loss_curve_), clf.n_iter_
    real = sklearn._loop.hold_training

    def hold_training(network):
        real(network)
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C, just as the lock is taken

    monkeypatch.setattr(sklearn._loop, "hold_training", hold_training)
    with pytest.raises(KeyboardInterrupt):
        getattr(clf, call)(X, y)
    monkeypatch.undo()
    assert clf.network_ is net and clf.n_iter_ == n_iter and clf.loss_curve_ == curve
    assert net.optimizer is optimizer
    np.testing.assert_array_equal(net._params, params)
    clf.partial_fit(X, y)   # nothing left held


# ------------------------------------------------------ weights set during a fit
def _set_layers(net, what):
    """``what`` assigned with every layer 0.5: the ways a user assigns layers."""
    if what in ("weights", "biases"):
        setattr(net, what, [np.full_like(p, 0.5) for p in getattr(net, what)])
    elif what in ("weights[1]", "biases[0]"):
        kind, index = what[:-3], int(what[-2])
        getattr(net, kind)[index] = np.full_like(getattr(net, kind)[index], 0.5)
    else:   # a scikit-learn estimator's coefs_ around the network
        sklearn = pytest.importorskip("cyprop.sklearn")
        clf = sklearn.BackpropClassifier()
        clf.network_ = net
        if what == "coefs_":
            clf.coefs_ = [np.full((n_in, n_out), 0.5) for n_in, n_out
                          in zip(net.sizes[:-1], net.sizes[1:])]
        else:
            clf.coefs_[0] = np.full((net.sizes[0], net.sizes[1]), 0.5)


def assert_waits_for_the_held_call(net, X, y, action, what):
    """``action()`` from another thread while a fit of ``net`` is held inside a call into
    its backend (held_fit) waits for that call to end, and then runs."""
    go_on, order, fit, fit_errors = held_fit(net, X, y)

    def act():
        action()
        order.append("acted")

    actor, errors = in_thread(act)
    actor.join(timeout=0.5)
    assert actor.is_alive(), f"{what} did not wait for the running call"
    go_on.set()
    actor.join(timeout=60)
    fit.join(timeout=60)
    assert not fit_errors and not errors, (fit_errors, errors)
    # (after the held call; the fit may take the lock again for its next call first)
    assert order[0] == "call" and "acted" in order, order


def held_fit(net, X, y):
    """A fit of ``net`` in a thread, its first call into the backend held inside until
    ``go_on`` is set: (go_on, order, the thread, its errors) once the call is inside;
    ``order`` gets "call" as each call into the backend ends."""
    inside, go_on, order = threading.Event(), threading.Event(), []

    class HeldBackend:
        """The network's backend, whose first training call waits to be let go."""

        def __init__(self, impl):
            self.impl = impl

        def __getattr__(self, name):
            return getattr(self.impl, name)

        def train_epoch(self, *args, **kwargs):
            if not inside.is_set():
                inside.set()
                assert go_on.wait(timeout=60), "never let go"
            result = self.impl.train_epoch(*args, **kwargs)
            order.append("call")
            return result

    net._impl = HeldBackend(net._impl)
    fit, fit_errors = in_thread(lambda: net.fit(X, y, epochs=2, verbose=0,
                                                optimizer=cyprop.SGD(0.1)))
    assert inside.wait(timeout=60)
    return go_on, order, fit, fit_errors


@pytest.mark.parametrize("what", ["weights", "biases", "weights[1]", "biases[0]", "coefs_",
                                  "coefs_[0]"])
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_weights_set_from_another_thread_land_between_the_fits_calls(backend, what):
    """``net.weights = ...``, ``net.weights[l] = ...`` (or biases, or an estimator's
    coefs_) from another thread while a fit is inside a call into its backend waits for
    that call to end: every layer lands between two calls, never in the middle of a step."""
    X, y = problem()
    net = cyprop.Network([6, 8, 3], seed=0, backend=backend)
    assert_waits_for_the_held_call(net, X, y, lambda: _set_layers(net, what),
                                   f"{what} = ...")


@pytest.mark.parametrize("export", ["interop.to_torch", "interop.onnx_model",
                                    "interop.to_onnx", "interop.from_sklearn"])
def test_exports_from_another_thread_wait_for_the_fits_call(tmp_path, export):
    """cyprop.interop's exports (and from_sklearn's copy of a cyprop estimator's
    network), as Network.to_onnx and to_torch, read the layers between two of a running
    fit's calls into its backend: never some layers before a step and the others after
    it, a model no epoch ever had."""
    pytest.importorskip({"interop.to_torch": "torch",
                         "interop.from_sklearn": "cyprop.sklearn"}.get(export, "onnx"))
    from cyprop import interop

    X, y = problem()
    net = cyprop.Network([6, 8, 3], seed=0, backend="numpy")
    calls = {"interop.to_torch": lambda: interop.to_torch(net),
             "interop.onnx_model": lambda: interop.onnx_model(net),
             "interop.to_onnx": lambda: interop.to_onnx(net, tmp_path / "net.onnx"),
             "interop.from_sklearn": lambda: interop.from_sklearn(estimator)}
    if export == "interop.from_sklearn":   # an estimator around the training network
        from cyprop.sklearn import BackpropClassifier

        estimator = BackpropClassifier()
        estimator.network_ = net
    assert_waits_for_the_held_call(net, X, y, calls[export], export)


# ------------------------------------------------------------------------ fork
FORKED_WHILE_HELD = textwrap.dedent("""
    import os
    import pickle
    import signal
    import sys
    import threading

    import numpy as np
    import cyprop

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(100, 6)), rng.integers(0, 3, 100)
    training, saving = (cyprop.Network([6, 8, 3], seed=0, backend=sys.argv[1])
                        for _ in range(2))
    saving.fit(X, y, epochs=1, verbose=0)
    inside, go_on = threading.Event(), threading.Event()

    class Hold:   # a fit waiting in its callback: its training lock and claim are held
        def on_epoch_end(self, net, epoch, logs):
            inside.set()
            go_on.wait(60)

    def hold_state_lock():   # as fit holds it around each compiled call, save around a copy
        with saving._state_lock:
            inside.set()
            go_on.wait(60)

    threads = [threading.Thread(target=training.fit, args=(X, y),
                                kwargs=dict(epochs=2, verbose=0, callbacks=[Hold()])),
               threading.Thread(target=hold_state_lock)]
    for thread in threads:
        inside.clear()
        thread.start()
        inside.wait(60)
    pid = os.fork()
    if pid == 0:   # neither thread exists here: the networks must serve and train
        signal.alarm(60)   # (a hang ends the child, seen as a failure)
        for net in (training, saving):
            pickle.loads(pickle.dumps(net))
            net.get_state()
            net.fit(X, y, epochs=1, verbose=0)
            net.partial_fit(X[0], y[0])
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    go_on.set()
    for thread in threads:
        thread.join(60)
    print("child exit", os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.parametrize("backend", ["cython", "numpy"])
def test_a_child_forked_while_threads_hold_a_networks_locks_can_use_it(backend):
    """A process forked while one thread trains a network and another saves one: the
    child has neither thread, so the locks they held would never be released, and
    pickling there waited forever, training was refused for good."""
    result = subprocess.run([sys.executable, "-c", FORKED_WHILE_HELD, backend],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split()[-1:] == ["0"], (result.stdout, result.stderr)


ESTIMATOR_FORKED_WHILE_FITTING = textwrap.dedent("""
    import os
    import signal
    import threading
    import warnings

    import numpy as np
    from cyprop import _loop, sklearn
    from cyprop.sklearn import BackpropClassifier

    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    clf = BackpropClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    schedule = _loop._SCHEDULES_IN_USE
    inside, go_on = threading.Event(), threading.Event()
    thing = object()

    def fitting():   # as a fit on another thread holds its claims on the estimator
        with sklearn._fitting(clf):
            schedule.claim(thing, "in use")
            inside.set()
            go_on.wait(60)
            schedule.release(thing)

    thread = threading.Thread(target=fitting)
    thread.start()
    inside.wait(60)
    pid = os.fork()
    if pid == 0:   # the fitting thread does not exist here
        signal.alarm(60)   # (a hang ends the child, seen as a failure)
        clf.fit(X, y)
        schedule.claim(thing, "in use")   # its claim went with its thread
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    go_on.set()
    thread.join(60)
    print("child exit", os.waitstatus_to_exitcode(status))
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_forked_while_an_estimator_is_fitted_elsewhere_can_fit_it():
    """A process forked while another thread fits an estimator (and holds a schedule):
    the child has no such thread, but its claims stayed, and the estimator's fit there
    was refused for good ("already being fitted (in another thread)")."""
    pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, "-c", ESTIMATOR_FORKED_WHILE_FITTING],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split()[-1:] == ["0"], (result.stdout, result.stderr)


# ------------------------------------------------------------------- Ctrl-C
INTERRUPTED_AS_TAKEN = textwrap.dedent("""
    import os
    import signal
    import sys
    import warnings

    import numpy as np
    import cyprop
    from cyprop import _loop
    from cyprop.schedules import ReduceOnPlateau

    warnings.simplefilter("ignore")
    backend, taken, call = sys.argv[1:]
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)

    def interrupt():   # Ctrl-C, as it arrives just as the lock or claim is taken
        os.kill(os.getpid(), signal.SIGINT)

    class InterruptedLock:
        def __init__(self, lock):
            self.lock = lock

        def acquire(self, *args, **kwargs):
            got = self.lock.acquire(*args, **kwargs)
            # (taken in Python's code: the compiled one-row path takes it in C, where
            # Ctrl-C is not raised, and its code that gives it back follows at once)
            if got and sys._getframe(1).f_code.co_name in ("hold_training",
                                                           "claim_optimizer"):
                interrupt()
            return got

        def __getattr__(self, name):
            return getattr(self.lock, name)

    def interrupted_claims(claims):
        real = claims.claim

        def claim(thing, refusal):
            real(thing, refusal)
            interrupt()
        claims.claim = claim
        return lambda: vars(claims).pop("claim")

    if call == "estimator":
        from cyprop import sklearn
        clf = sklearn.BackpropClassifier(hidden_layer_sizes=(5,), max_iter=2,
                                         random_state=0, backend=backend)
        clf.fit(X, y)
        net = clf.network_
    else:
        net = cyprop.Network([4, 5, 3], seed=0, backend=backend)
        net.partial_fit(X, y)
    optimizer, schedule = net.optimizer, ReduceOnPlateau(patience=0)
    if taken == "training lock":
        net._lock = InterruptedLock(net._lock)
    elif taken == "optimizer":
        optimizer._claim = InterruptedLock(optimizer._claim)
    undo = lambda: None   # noqa: E731
    if taken == "schedule":
        undo = interrupted_claims(_loop._SCHEDULES_IN_USE)
    elif taken == "estimator":
        undo = interrupted_claims(sklearn._FITTING)
    try:
        {"fit": lambda: net.fit(X, y, epochs=2, verbose=0, schedule=schedule),
         "partial_fit": lambda: net.partial_fit(X, y),
         "estimator": lambda: clf.partial_fit(X, y)}[call]()
    except KeyboardInterrupt:
        print("interrupted")
    undo()
    if taken == "training lock":
        net._lock = net._lock.lock
    elif taken == "optimizer":
        optimizer._claim = optimizer._claim.lock
    # nothing left held: the network, its optimizer, the schedule, the estimator train
    net.fit(X, y, epochs=1, verbose=0, schedule=schedule)
    if call == "estimator":
        clf.partial_fit(X, y)
    net.get_state()
    print("trains on")
""")


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("taken,call", [
    ("training lock", "fit"), ("training lock", "partial_fit"), ("optimizer", "fit"),
    ("optimizer", "partial_fit"), ("schedule", "fit"), ("training lock", "estimator"),
    ("estimator", "estimator")])
def test_ctrl_c_as_a_lock_or_claim_is_taken_leaves_nothing_held(backend, taken, call):
    """Ctrl-C that arrives just as a training call takes its network's training lock,
    its optimizer's claim, its schedule's or its estimator's (before the code that
    gives it back on the way out is reached) left it held for good: every later fit of
    that network, with that optimizer or schedule, or of that estimator, was refused."""
    if call == "estimator":
        pytest.importorskip("sklearn")
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_AS_TAKEN, backend, taken, call],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["interrupted", "trains", "on"], (result.stdout,
                                                                      result.stderr)
