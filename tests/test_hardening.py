"""State set by hand, absurd settings and meaningless setups, met as a user (or an
attacker) would: each is refused with a clear exception before any compiled code reads
it, or made harmless.  What used to crash the process runs in a child process, so a crash
is a failed test rather than a dead test run."""

import dataclasses
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import cyprop

BACKENDS = ("cython", "numpy")
CHILD_TIMEOUT = 300


def run_child(code, env=None):
    """Run ``code`` in a fresh interpreter; returns (exit status, stdout + stderr)."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


def small_problem(backend="cython", sizes=(4, 6, 3), **kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, sizes[0]))
    y = rng.integers(0, sizes[-1], 40)
    return cyprop.Network(list(sizes), backend=backend, seed=0, **kwargs), X, y


# ------------------------------------------------------------ state set by hand
@pytest.mark.parametrize("backend", BACKENDS)
def test_optimizer_state_with_the_wrong_rows_is_refused_when_set(backend):
    net, X, y = small_problem(backend)
    adam = cyprop.Adam()
    net.fit(X, y, epochs=1, verbose=0, optimizer=adam)
    sgd_state = np.zeros((1, net.n_params))            # an SGD momentum buffer
    with pytest.raises(ValueError, match=r"Adam.state must have shape \(2, n_params\)"):
        adam.state = sgd_state
    with pytest.raises(ValueError, match="shape"):
        adam.state = np.zeros(2 * net.n_params)
    with pytest.raises(TypeError, match="NumPy array"):
        adam.state = [[0.0] * net.n_params] * 2
    with pytest.raises(ValueError, match="float32 or float64"):
        adam.state = np.zeros((2, net.n_params), dtype=np.int64)
    assert adam.state.shape == (2, net.n_params)      # unchanged by the refusals


def test_wrong_sized_optimizer_state_never_reaches_the_kernel():
    """The crash this guards against: state rows of the wrong count let the compiled Adam
    step write past the end of the array.  Every way in is tried in one child process."""
    code = """
        import numpy as np, cyprop
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
        net = cyprop.Network([4, 8, 3], backend="cython", seed=0)
        adam = cyprop.Adam()
        net.fit(X, y, epochs=1, verbose=0, optimizer=adam, batch_size=5)
        refused = 0
        for state in (np.zeros((1, net.n_params)), np.zeros((1, 10 * net.n_params)),
                      np.zeros((3, 2))):
            try:
                adam.state = state
            except ValueError:
                refused += 1
        # a state from a network of another size is replaced, not used
        adam._state = np.zeros((2, 7))
        net.fit(X, y, epochs=1, verbose=0, batch_size=5)
        assert adam.state.shape == (2, net.n_params), adam.state.shape
        # a view (not contiguous) or read-only array is copied, never written through
        view = np.zeros((2, 2 * net.n_params))[:, ::2]
        adam.state = view
        net.fit(X, y, epochs=1, verbose=0, batch_size=5)
        assert not view.any() and adam.state.flags.c_contiguous
        frozen = np.zeros((2, net.n_params)); frozen.flags.writeable = False
        adam.state = frozen
        net.fit(X, y, epochs=1, verbose=0, batch_size=1)
        assert not frozen.any()
        print("refused", refused)
    """
    status, output = run_child(code)
    assert status == 0, output
    assert "refused 3" in output


@pytest.mark.parametrize("backend", cyprop.available_backends())
def test_a_contiguous_view_set_as_state_is_copied_not_written_through(backend):
    """A C-contiguous, writeable view (rows of the caller's buffer) passed every check
    of a state the kernels use in place, so training wrote into the caller's buffer,
    where the README promises a view is copied."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 4)), rng.integers(0, 3, 12)
    net = cyprop.Network([4, 5, 3], backend=backend, seed=0)
    adam = cyprop.Adam()
    net.fit(X, y, epochs=1, verbose=0, optimizer=adam, batch_size=4)
    buffer = np.zeros((3, net.n_params))
    adam.state = buffer[:2]
    assert adam.state.base is None
    net.fit(X, y, epochs=1, verbose=0, batch_size=4)
    net.partial_fit(X[0], y[0])        # (the one-row path)
    assert not buffer.any() and adam.state.any()


def test_a_state_replaced_from_another_thread_never_reaches_the_kernel():
    """Optimizer.state_for checked the state, then returned ``self._state`` read again:
    a state set meanwhile by another thread (the setter takes any number of columns,
    another network's state) reached the kernel, which wrote one row per parameter
    past its end (heap corruption, a crash).  The other thread's moment is made
    certain here by an array that sets the state as state_for reads its flags; the
    kernel also refuses a state of the wrong width itself."""
    code = """
        import numpy as np, cyprop
        from cyprop import _compiled
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(64, 50)), rng.integers(0, 10, 64)
        for backend in ("cython", "numpy"):
            net = cyprop.Network([50, 200, 10], backend=backend, seed=0)
            adam = cyprop.Adam(1e-3)
            net.fit(X, y, epochs=1, verbose=0, optimizer=adam, batch_size=64)

            class Swapped(np.ndarray):
                @property
                def flags(self):
                    adam.state = np.zeros((2, 3))   # as another thread may, just now
                    return np.ndarray.flags.__get__(self)

            swapped = Swapped((2, net.n_params))   # its own data (a view is copied)
            swapped.fill(0)
            adam.state = swapped
            net.fit(X, y, epochs=1, verbose=0, batch_size=64)
            assert adam.state.shape == (2, 3) and not adam.state.any(), adam.state
        core = _compiled.default.core
        arch, params = net.arch, net._params
        plan = _compiled.default.plan(arch, adam, 64).struct(core)
        Y = np.eye(10)[y]
        try:
            core.train_epoch(arch.sizes_array, arch.activation_codes, arch.loss_code, params,
                             X, Y, np.arange(64, dtype=np.intp), plan, vars(adam.hyper().core()),
                             np.zeros((2, 3)), 1)
        except ValueError as exc:
            print("refused:", exc)
    """
    status, output = run_child(code)
    assert status == 0, output
    assert "refused: cyprop: the optimizer state has 3 columns" in output


def test_an_optimizer_class_that_misstates_its_kernel_is_refused():
    """A subclass claiming Adam's compiled step with one row of state would let the
    kernel write past it: refused with a ValueError (in a child: it used to crash)."""
    code = """
        import numpy as np, cyprop
        class OneRowAdam(cyprop.Adam):
            n_slots = 1
        class Custom(cyprop.optimizers.Optimizer):
            def update_params(self, params, grad, arch):
                params -= self.learning_rate * grad
                self.steps += 1
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
        for opt in (OneRowAdam(), Custom(0.1)):
            net = cyprop.Network([4, 8, 3], backend="cython", seed=0)
            try:
                net.fit(X, y, epochs=1, verbose=0, optimizer=opt)
            except (TypeError, ValueError) as exc:
                print(type(exc).__name__, exc)
        # the NumPy backend runs a custom optimizer's own update_params
        net = cyprop.Network([4, 8, 3], backend="numpy", seed=0)
        net.fit(X, y, epochs=1, verbose=0, optimizer=Custom(0.1))
        print("numpy ok")
    """
    status, output = run_child(code)
    assert status == 0, output
    assert "ValueError OneRowAdam does not match the compiled step" in output
    assert "TypeError the compiled backend runs cyprop's own optimizers" in output
    assert "numpy ok" in output


def test_a_subclass_with_its_own_update_is_refused_by_the_compiled_backend():
    """A subclass of SGD that overrides ``update_params`` has no compiled step: the
    compiled backend refuses it (as the README says) instead of running SGD's rule in
    its place; the NumPy backend runs its own step."""
    class HalfSGD(cyprop.SGD):
        def update_params(self, params, grad, arch):
            params -= 0.5 * self.learning_rate * grad
            self.steps += 1

    class SameSGD(cyprop.SGD):       # only a new name: SGD's step, compiled
        pass

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    net = cyprop.Network([4, 8, 3], backend="cython", seed=0)
    before = net._params.copy()
    with pytest.raises(TypeError, match="HalfSGD has no compiled step"):
        net.fit(X, y, epochs=1, verbose=0, optimizer=HalfSGD(0.1))
    np.testing.assert_array_equal(net._params, before)
    net.fit(X, y, epochs=1, verbose=0, optimizer=SameSGD(0.1))
    numpy_net = cyprop.Network([4, 8, 3], backend="numpy", seed=0)
    numpy_net.fit(X, y, epochs=1, verbose=0, optimizer=HalfSGD(0.1))
    assert numpy_net.optimizer.steps == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_hyper_parameters_set_by_hand_are_checked_before_training(backend):
    net, X, y = small_problem(backend)
    before = net._params.copy()
    for name, value, error in (("learning_rate", "0.1", TypeError),
                               ("learning_rate", float("nan"), ValueError),
                               ("learning_rate", 10 ** 400, ValueError),
                               ("momentum", -1.0, ValueError),
                               ("nesterov", "yes", TypeError)):
        opt = cyprop.SGD(0.1, momentum=0.5)
        setattr(opt, name, value)
        with pytest.raises(error, match=name):
            net.fit(X, y, epochs=1, verbose=0, optimizer=opt)
    adam = cyprop.Adam()
    adam.beta2 = 1.5
    with pytest.raises(ValueError, match="beta2"):
        net.fit(X, y, epochs=1, verbose=0, optimizer=adam)
    np.testing.assert_array_equal(net._params, before)
    assert len(net.history) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_hyper_parameters_set_by_hand_as_fractions_train_as_their_floats(backend):
    """Fraction is a numbers.Real, which the checks let through: the NumPy reference's
    step became an array of objects (a UFuncTypeError on casting) where the compiled
    core read floats.  Now both train as with the floats, which the optimizer keeps."""
    from fractions import Fraction

    def trained(make):
        net, X, y = small_problem(backend)
        net.fit(X, y, epochs=2, verbose=0, optimizer=make())
        return net

    def with_fractions():
        adam = cyprop.Adam(0.01)
        adam.learning_rate, adam.eps = Fraction(1, 100), Fraction(1, 10 ** 8)
        return adam

    net = trained(with_fractions)
    np.testing.assert_array_equal(net._params, trained(lambda: cyprop.Adam(0.01))._params)
    assert type(net.optimizer.learning_rate) is float and type(net.optimizer.eps) is float
    assert all(type(rate) is float for rate in net.history.learning_rate)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bool_set_where_its_number_was_checked_is_refused(backend):
    """True == 1.0: a momentum set to True after 1.0 had been checked compared equal to
    the configuration checked last, and trained without a word."""
    net, X, y = small_problem(backend)
    net.fit(X, y, epochs=1, verbose=0, optimizer=cyprop.SGD(0.1, momentum=1.0))
    net.optimizer.momentum = True
    with pytest.raises(TypeError, match="momentum must be a number, got True"):
        net.fit(X, y, epochs=1, verbose=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name, values, error, message", [
    ("weights", [np.ones((6, 4)), np.ones((3, 5))], ValueError, "layer 1 has shape"),
    ("weights", [np.ones((6, 4)), np.full((3, 6), np.nan)], ValueError, "layer 1 contains NaN"),
    ("weights", [np.ones((6, 4)), "x"], TypeError, "layer 1 must hold numbers"),
    ("biases", [np.ones(6), np.ones(4)], ValueError, "layer 1 has shape"),
], ids=["shape", "nan", "text", "biases"])
def test_a_refused_list_of_layers_changes_no_layer(backend, name, values, error, message):
    """net.weights = [...] copied the layers in one at a time: a list refused at its
    second layer had already overwritten the first."""
    net, _, _ = small_problem(backend)
    before = net._params.copy()
    with pytest.raises(error, match=message):
        setattr(net, name, values)
    np.testing.assert_array_equal(net._params, before)


@pytest.mark.parametrize("name", ["weights", "biases"])
def test_layers_swapped_through_the_list_setter_are_swapped(name):
    """net.weights = [net.weights[1], net.weights[0], ...]: the new layers are views of
    the network's own, and copying them in one at a time read the second after the
    first had been overwritten (both ended as the old second layer)."""
    net = cyprop.Network([4, 4, 4, 4], seed=0)
    old = [layer.copy() for layer in getattr(net, name)]
    layers = getattr(net, name)
    setattr(net, name, [layers[1], layers[0], layers[2]])
    swapped = getattr(net, name)
    for got, expected in zip(swapped, [old[1], old[0], old[2]]):
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("views", ["X", "Y", "X and Y"])
def test_training_data_that_is_a_view_of_the_weights_trains_as_its_copy(backend, views):
    """fit(net.weights[0], ...): rows that are views of the network's own parameters
    changed under the steps that read them (the compiled core reads a row as it steps
    the layer it came from), unlike the same values in an array of their own."""
    def make():
        return cyprop.Network([3, 3, 3], output="identity", loss="mse", seed=0,
                              backend=backend)

    net, twin = make(), make()
    X = net.weights[0] if "X" in views else net.weights[0].copy()
    Y = net.weights[1] if "Y" in views else net.weights[1].copy()
    twin.fit(X.copy(), Y.copy(), epochs=2, batch_size=1, shuffle=False, verbose=0)
    net.fit(X, Y, epochs=2, batch_size=1, shuffle=False, verbose=0)
    np.testing.assert_array_equal(net._params, twin._params)


def test_step_counts_are_bounded():
    opt = cyprop.Adam()
    for bad, error in ((2 ** 63, ValueError), (-1, ValueError), (1.5, TypeError),
                       (True, TypeError)):
        with pytest.raises(error, match="steps"):
            opt.steps = bad
    net, X, y = small_problem()
    net.fit(X, y, epochs=1, verbose=0, optimizer=opt, batch_size=40)
    opt.steps = cyprop.optimizers.MAX_STEPS      # the largest allowed still trains on
    net.fit(X, y, epochs=1, verbose=0, batch_size=40)
    assert opt.steps == cyprop.optimizers.MAX_STEPS


@pytest.mark.parametrize("backend", BACKENDS)
def test_step_counts_saturate_where_save_copy_and_load_accept_them(backend, tmp_path):
    # (counted on past MAX_STEPS, the network could no longer be saved, copied or pickled)
    net, X, y = small_problem(backend)
    net.fit(X, y, epochs=1, verbose=0, optimizer=cyprop.Adam())
    twin = net.copy()
    for train in (lambda n: n.fit(X, y, epochs=2, verbose=0, batch_size=4),
                  lambda n: n.partial_fit(X[0], y[0]),    # one sample: the core's own path
                  lambda n: n.partial_fit(X, y)):
        net.optimizer.steps = cyprop.optimizers.MAX_STEPS - 1
        train(net)
        assert net.optimizer.steps == cyprop.optimizers.MAX_STEPS
        net.save(tmp_path / "net.npz")
        assert cyprop.load(tmp_path / "net.npz").optimizer.steps == net.optimizer.steps
        net.copy()
    net.partial_fit(X[0], y[0])   # a one-sample step from the bound: the core's own count
    assert net.optimizer.steps == cyprop.optimizers.MAX_STEPS
    # the same steps as a count that never saturated: Adam's corrections are 1 by then
    big = twin.copy()
    big.optimizer.steps = 2 ** 40
    net.optimizer.steps, net._params[...] = cyprop.optimizers.MAX_STEPS, big._params
    net.optimizer.state = big.optimizer.state.copy()
    net.fit(X, y, epochs=2, verbose=0, batch_size=4, shuffle=False)
    big.fit(X, y, epochs=2, verbose=0, batch_size=4, shuffle=False)
    np.testing.assert_array_equal(net._params, big._params)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_and_max_norm_are_checked_when_set(backend):
    net, X, y = small_problem(backend, sizes=(4, 6, 5, 3))
    for bad, error in (([0.5], ValueError), ([0.5, 0.5, 0.5], ValueError), (1.0, ValueError),
                       (["a", 0.1], TypeError), (-0.1, ValueError)):
        with pytest.raises(error, match="dropout"):
            net.dropout = bad
    assert net.dropout == [0.0, 0.0]
    net.dropout = 0.25
    assert net.dropout == [0.25, 0.25]
    with pytest.raises(ValueError, match="max_norm"):
        net.max_norm = float("inf")
    net.fit(X, y, epochs=1, verbose=0)


def test_architecture_and_dtype_cannot_be_swapped_under_the_parameters():
    net = cyprop.Network([4, 6, 3])
    other = cyprop.Network([784, 100, 10])
    with pytest.raises(AttributeError):
        net.arch = other.arch
    with pytest.raises(AttributeError):
        net.dtype = np.dtype(np.float32)


@pytest.mark.parametrize("sizes", [[2 ** 63, 3], [2 ** 31, 2 ** 31], [2, 2 ** 62],
                                   [4, 10 ** 30, 3], [10 ** 200, 10 ** 200]])
def test_layer_sizes_too_large_for_any_array_are_value_errors(sizes):
    # (they were OverflowError: "Python int too large to convert to C long", or NumPy's
    # "array is too big", naming no layer)
    with pytest.raises(ValueError, match="layer sizes .* more parameters than one array"):
        cyprop.Network(sizes)


@pytest.mark.parametrize("sizes", [[2 ** 31, 1], [3, 2 ** 31, 2], [1, 2 ** 32]])
def test_layer_sizes_beyond_32_bit_units_are_value_errors(sizes):
    # The compiled core and the BLAS take a layer's units as 32-bit ints: such a layer
    # (a few GB of weights) was accepted and its size truncated in C.  Refused before
    # anything is allocated, on every backend and from a state.
    with pytest.raises(ValueError, match=r"layer sizes must be at most 2147483647"):
        cyprop.Network(sizes, backend="numpy")
    state = dataclasses.replace(cyprop.Network([2] * len(sizes)).get_state(), sizes=sizes)
    with pytest.raises(ValueError, match=r"at most 2147483647"):
        cyprop.Network.from_state(state)


def test_dropout_and_max_norm_refuse_complex_and_huge_numbers():
    with pytest.raises(TypeError, match="dropout rates must be numbers"):
        cyprop.Network([4, 5, 3], dropout=np.complex128(0.1 + 5j))   # was taken as 0.1
    with pytest.raises(TypeError, match="max_norm must be a number"):
        cyprop.Network([4, 3], max_norm=np.complex128(1 + 2j))       # was taken as 1.0
    with pytest.raises(ValueError, match="max_norm must be a finite number"):
        cyprop.Network([4, 3], max_norm=10 ** 400)   # was NumPy's TypeError from isfinite
    net = cyprop.Network([4, 5, 3], dropout=np.float32(0.25), max_norm=np.int8(3))
    assert net.dropout == [0.25] and net.max_norm == 3.0


# ---------------------------------------------------------------------- threads
def test_absurd_thread_counts_are_refused():
    net, X, y = small_problem()
    for bad, error in ((10 ** 6, ValueError), (0, ValueError), (2.0, TypeError)):
        with pytest.raises(error, match="n_threads"):
            net.fit(X, y, epochs=1, verbose=0, n_threads=bad)
        with pytest.raises(error, match="n_threads"):
            net.partial_fit(X, y, n_threads=bad)
    assert len(net.history) == 0


def test_thread_requests_are_capped_to_the_cores():
    """A request beyond the cores, and a huge OMP_NUM_THREADS, run on the cores (in a
    child: thread creation failing inside OpenMP used to kill the process), and scratch
    memory does not grow with the number asked for."""
    code = """
        import resource, numpy as np, cyprop
        from cyprop import _compiled
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(3000, 100)), rng.integers(0, 10, 3000)
        net = cyprop.Network([100, 200, 10], seed=0, backend="cython")
        net.fit(X, y, epochs=1, verbose=0, batch_size=64, n_threads=1000)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3):
            net.forward(X)
            net.fit(X, y, epochs=1, verbose=0, batch_size=64)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("threads", _compiled.threads(), _compiled.threads(1000), _compiled.CORES)
        print("grown_kib", grown)
    """
    status, output = run_child(code, env={"OMP_NUM_THREADS": "100000"})
    assert status == 0, output
    threads_line = next(l for l in output.splitlines() if l.startswith("threads"))
    default, capped, cores = map(int, threads_line.split()[1:])
    assert default == capped == cores
    grown = int(next(l for l in output.splitlines() if l.startswith("grown_kib")).split()[1])
    assert grown < 64 * 1024, output     # KiB: far below 100000 threads' scratch


# ------------------------------------------------------------------- divergence
def digits():
    from cyprop import datasets
    X, y = datasets.load_digits()
    return X[:600], y[:600]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", [1, 10])
def test_a_huge_learning_rate_is_divergence_not_a_finished_run(backend, batch_size):
    """lr=1e10 on digits used to train to a loss of 1e10 and end with stop_reason
    'epochs'.  Now the loss rule trips, and the weights of the last good epoch stay."""
    pytest.importorskip("sklearn")
    X, y = digits()
    net = cyprop.Network([64, 32, 10], backend=backend, seed=0)
    initial = net._params.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(cyprop.TrainingDiverged, match="diverged in epoch 1") as info:
            net.fit(X, y, epochs=5, batch_size=batch_size, verbose=0,
                    optimizer=cyprop.SGD(1e10))
    assert isinstance(info.value, ValueError)
    assert net.history.stop_reason == "diverged" and len(net.history) == 0
    np.testing.assert_array_equal(net._params, initial)
    assert net.optimizer.steps == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_huge_learning_rate_is_divergence_with_one_batch_per_epoch(backend):
    """Full-batch epochs (XOR, the CLI's batch size 4) skipped the loss rule: lr=1e10
    trained to a loss of 1e10 and ended with stop_reason 'epochs'."""
    X, y = cyprop.datasets.xor()
    net = cyprop.Network([2, 8, 2], activation="tanh", backend=backend, seed=0)
    with pytest.raises(cyprop.TrainingDiverged, match="diverged in epoch 2"):
        net.fit(X, y, epochs=20, batch_size=4, verbose=0, optimizer=cyprop.Adam(1e10))
    assert net.history.stop_reason == "diverged" and len(net.history) == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", [cyprop.SGD(3.0), cyprop.SGD(0.5, momentum=0.9),
                                       cyprop.Adam(0.05), cyprop.RMSprop(0.01)],
                         ids=["sgd3", "momentum", "adam", "rmsprop"])
def test_aggressive_but_sound_runs_never_trip_the_divergence_rule(backend, optimizer):
    pytest.importorskip("sklearn")
    X, y = digits()
    net = cyprop.Network([64, 32, 10], backend=backend, seed=0)
    history = net.fit(X, y, epochs=8, batch_size=10, verbose=0, optimizer=optimizer)
    assert history.stop_reason == "epochs"
    regression = cyprop.Network([64, 16, 1], activation="relu", output="identity",
                                loss="mse", backend=backend, seed=0)
    targets = 1000.0 * (y[:, None] + 1.0)          # large targets: a large start loss
    regression.fit(X, targets, epochs=8, batch_size=10, verbose=0,
                   optimizer=cyprop.Adam(0.01))
    assert regression.history.stop_reason == "epochs"


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_made_nan_by_a_callback_are_not_called_kept(backend):
    net, X, y = small_problem(backend)

    class Poison:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 1:
                net.weights[0][0, 0] = np.nan

    with pytest.raises(cyprop.TrainingDiverged) as info:
        net.fit(X, y, epochs=5, verbose=0, callbacks=[Poison()])
    message = str(info.value)
    assert "already NaN or infinite before epoch 3" in message
    assert "kept" not in message
    assert np.isnan(net.weights[0][0, 0]) and len(net.history) == 2


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("what", ["X", "Y"])   # (sample weights are copied at fit)
def test_training_data_made_nan_by_a_callback_is_named_not_called_a_divergence(backend,
                                                                               what):
    """Arrays used in place can be changed by a callback (or another thread) after fit
    checked them: the NaN epoch was reported as a divergence, 'try a smaller learning
    rate'."""
    rng = np.random.default_rng(0)
    data = {"X": rng.normal(size=(30, 4)), "Y": np.eye(3)[rng.integers(0, 3, 30)],
            "sample_weight": np.ones(30)}
    net = cyprop.Network([4, 5, 3], backend=backend, seed=0)

    class Poison:
        def on_epoch_end(self, net, epoch, logs):
            data[what][3] = np.nan

    with pytest.raises(ValueError) as info:
        net.fit(data["X"], data["Y"], sample_weight=data["sample_weight"], epochs=3,
                verbose=0, callbacks=[Poison()])
    assert not isinstance(info.value, cyprop.TrainingDiverged)
    assert "changed during the fit" in str(info.value) and "epoch 2" in str(info.value)
    assert len(net.history) == 1 and np.all(np.isfinite(net._params))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("split", [False, True], ids=["validation_data", "validation_split"])
def test_validation_data_made_nan_by_a_callback_is_named(backend, split):
    """Validation data used in place, made NaN after fit checked it: the epochs went on
    recording a val_loss of NaN, which early stopping and ReduceOnPlateau read as no
    improvement (stopping, or dropping the rate) without a word."""
    net, X, y = small_problem(backend)
    X_val = X if split else X.copy()

    class Poison:
        def on_epoch_end(self, net, epoch, logs):
            X_val[-1] = np.nan   # (the last row: held out by the split)
            self.params = net._params.copy()

    callback = Poison()
    validation = {"validation_split": 0.25} if split else {"validation_data": (X_val, y)}
    with pytest.raises(ValueError) as info:
        net.fit(X, y, epochs=3, verbose=0, callbacks=[callback], **validation)
    assert not isinstance(info.value, cyprop.TrainingDiverged)
    message = str(info.value)
    assert "validation data" in message and "changed during the fit" in message
    assert "epoch 2" in message
    assert len(net.history) == 1 and net.history.val_loss[0] is not None
    np.testing.assert_array_equal(net._params, callback.params)   # epoch 2 undone


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("change, error, message", [
    (lambda net: setattr(net.optimizer, "learning_rate", -1.0), ValueError, "learning_rate"),
    (lambda net: setattr(net.optimizer, "momentum", -5.0), ValueError, "momentum"),
    (lambda net: setattr(net.optimizer, "momentum", "0.5"), TypeError, "momentum"),
    (lambda net: setattr(net, "optimizer", None), TypeError, "optimizer"),
    (lambda net: setattr(net, "optimizer", "adam"), TypeError, "optimizer"),
], ids=["negative rate", "negative momentum", "string momentum", "none", "string"])
def test_an_optimizer_changed_by_a_callback_is_checked_before_the_next_epoch(
        backend, change, error, message):
    """Hyper-parameters set by hand are checked before training: those a callback sets
    between epochs too, before the next epoch trains with them (a negative rate trained
    on, uphill; None failed an assert; a string failed inside NumPy or the core)."""
    net, X, y = small_problem(backend)

    class Change:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 1:
                change(net)
                self.params = net._params.copy()

    callback = Change()
    with pytest.raises(error, match=message):
        net.fit(X, y, epochs=4, verbose=0, optimizer=cyprop.SGD(0.1, momentum=0.5),
                callbacks=[callback])
    np.testing.assert_array_equal(net._params, callback.params)   # epoch 3 never ran
    assert len(net.history) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_history_replaced_by_a_callback_is_refused_by_name(backend):
    """A callback that sets net.history to something that is no History: the next
    epoch failed inside the loop with an AttributeError ('NoneType' object has no
    attribute 'epochs')."""
    net, X, y = small_problem(backend)

    class Replace:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 1:
                net.history = None
                self.params = net._params.copy()

    callback = Replace()
    with pytest.raises(TypeError, match=r"net.history must be a cyprop.History .*callback"):
        net.fit(X, y, epochs=4, verbose=0, callbacks=[callback])
    np.testing.assert_array_equal(net._params, callback.params)   # epoch 3 never ran
    history = net.history
    assert isinstance(history, cyprop.History) and history.epochs == 2   # put back


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_history_a_callback_sets_records_the_rest_of_the_fit(backend):
    """A callback that starts a fresh History: the fit went on recording in the one it
    had started with (and returned that), so net.history stayed empty while its epochs
    counted the schedule's; now the rest of the fit is recorded in the new one."""
    net, X, y = small_problem(backend)
    fresh = cyprop.History()

    class Fresh:
        def on_epoch_end(self, net, epoch, logs):
            if len(net.history) == 2 and net.history is not fresh:
                net.history = fresh

    returned = net.fit(X, y, epochs=5, verbose=0, callbacks=[Fresh()],
                       schedule=cyprop.schedules.StepDecay(step_size=1, gamma=0.5))
    assert returned is fresh and net.history is fresh
    assert fresh.epochs == 3 and fresh.stop_reason == "epochs"
    assert fresh.learning_rate == pytest.approx([0.1, 0.05, 0.025])   # counted afresh


def test_ctrl_c_after_a_callback_set_a_fresh_history_is_recorded_in_it():
    net, X, y = small_problem()
    fresh = cyprop.History()

    class FreshThenInterrupt:
        def on_epoch_end(self, net, epoch, logs):
            net.history = fresh
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, epochs=3, verbose=0, callbacks=[FreshThenInterrupt()])
    assert net.history is fresh and fresh.stop_reason == "interrupted"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_history_replaced_in_the_last_epoch_is_refused_too(backend):
    """Set to something that is no History in the last epoch's callback, it outlived the
    fit, whose records were lost."""
    net, X, y = small_problem(backend)

    class Replace:
        def on_epoch_end(self, net, epoch, logs):
            if epoch == 2:
                net.history = "records"

    with pytest.raises(TypeError, match=r"net.history must be a cyprop.History .*put back"):
        net.fit(X, y, epochs=3, verbose=0, callbacks=[Replace()])
    assert isinstance(net.history, cyprop.History) and net.history.epochs == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_optimizer_a_callback_drops_is_put_back_when_refused(backend):
    """net.optimizer set to None by a callback: the next epoch refused it, and the
    network was left without the optimizer that had trained it, its state lost."""
    net, X, y = small_problem(backend)
    adam = cyprop.Adam()

    class Drop:
        def on_epoch_end(self, net, epoch, logs):
            net.optimizer = None

    with pytest.raises(TypeError, match=r"net.optimizer must be .*NoneType.*put back"):
        net.fit(X, y, epochs=3, verbose=0, optimizer=adam, callbacks=[Drop()])
    assert net.optimizer is adam and adam.steps == 4 and net.history.epochs == 1


def test_the_cli_does_not_call_a_diverged_run_a_success(tmp_path):
    pytest.importorskip("sklearn")
    proc = subprocess.run([sys.executable, "-m", "cyprop", "train", "--lr", "1e10",
                           "--epochs", "3", "--no-compare", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=CHILD_TIMEOUT)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "diverged" in proc.stderr


# ---------------------------------------------------------- meaningless set-ups
def test_softmax_over_one_unit_is_refused():
    with pytest.raises(ValueError, match="softmax over one output unit"):
        cyprop.Network([3, 4, 1], output="softmax")
    with pytest.raises(ValueError, match="softmax over one output unit"):
        cyprop.Network([3, 1], output="softmax", loss="mse")
    assert cyprop.Network([3, 1]).activations[-1] == "sigmoid"   # the default for one


@pytest.mark.parametrize("backend", BACKENDS)
def test_more_classes_than_one_sigmoid_output_holds_are_refused(backend):
    net = cyprop.Network([2, 3, 1], backend=backend, loss="mse")
    X = np.zeros((4, 2))
    with pytest.raises(ValueError, match="single sigmoid output holds two classes"):
        net.fit(X, np.array([0, 1, 2, 3]), epochs=1, verbose=0)
    net.fit(X, np.array([0, 1, 1, 0]), epochs=1, verbose=0)    # two classes are fine


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("output,n_out", [("softmax", 3), ("sigmoid", 1), ("sigmoid", 3)])
def test_cross_entropy_targets_outside_0_1_are_refused(backend, output, n_out):
    net = cyprop.Network([2, 3, n_out], output=output, backend=backend, seed=0)
    X = np.zeros((4, 2))
    for bad in (2.0, -0.5):
        Y = np.full((4, n_out), 0.25)
        Y[1, 0] = bad
        for call in (lambda: net.fit(X, Y, epochs=1, verbose=0), lambda: net.loss(X, Y),
                     lambda: net.evaluate(X, Y)):
            with pytest.raises(ValueError, match=r"cross-entropy needs targets in \[0, 1\]"):
                call()
    assert len(net.history) == 0


# --------------------------------------------------- softmax with large logits
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_rows", [1, 300], ids=["per-sample", "blocks"])
def test_equal_large_logits_cost_log_k_not_zero(backend, dtype, n_rows):
    """-log softmax of k equal logits is log k, however large they are: computed as
    (max z + lse) - z_y it was 0 once z was about 1e17 (1e8 in float32)."""
    k = 4
    net = cyprop.Network([2, k], output="softmax", backend=backend, dtype=dtype)
    net.weights = [np.ones((k, 2))]
    net.biases = [np.zeros(k)]
    big = 1e17 if dtype == "float64" else 1e9
    X = np.full((n_rows, 2), big / 2)
    y = np.zeros(n_rows, dtype=int)
    tolerance = 1e-12 if dtype == "float64" else 1e-6
    assert net.loss(X, y) == pytest.approx(np.log(k), rel=tolerance)
    assert net.evaluate(X, y)["loss"] == pytest.approx(np.log(k), rel=tolerance)
    # the training loss too (a rate of ~0 keeps the logits where they are), and
    # target_loss does not stop on a false zero
    history = net.fit(X, y, epochs=2, batch_size=min(n_rows, 50), verbose=0, shuffle=False,
                      optimizer=cyprop.SGD(1e-60), target_loss=0.5)
    assert history.stop_reason == "epochs"
    assert history.loss[0] == pytest.approx(np.log(k), rel=tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binary_cross_entropy_of_large_logits_is_not_lost_to_rounding(backend):
    net = cyprop.Network([1, 1], output="sigmoid", backend=backend)
    net.weights = [np.ones((1, 1))]
    net.biases = [np.zeros(1)]
    X = np.array([[1e17], [-1e17], [40.0]])
    Y = np.array([[0.0], [1.0], [1.0]])
    expected = (1e17 + 1e17 + np.log1p(np.exp(-40.0))) / 3
    assert net.loss(X, Y) == pytest.approx(expected, rel=1e-12)
    assert net.loss(X[2:], Y[2:]) == pytest.approx(np.log1p(np.exp(-40.0)), rel=1e-12)


# ------------------------------------------------------------- parameter checks
@pytest.mark.parametrize("kwargs,error,name", [
    ({"target_loss": "1"}, TypeError, "target_loss"),
    ({"target_error": float("nan")}, ValueError, "target_error"),
    ({"target_error": 2}, ValueError, "target_error must be <= 1"),   # an error rate
    ({"min_update": -1}, ValueError, "min_update"),
    ({"min_delta": float("inf")}, ValueError, "min_delta"),
    ({"validation_split": "0.1"}, TypeError, "validation_split"),
    ({"shuffle": "no"}, TypeError, "shuffle"),
    ({"patience": 2.5}, TypeError, "patience"),
])
def test_fit_parameters_are_checked_by_type(kwargs, error, name):
    net, X, y = small_problem()
    with pytest.raises(error, match=name):
        net.fit(X, y, epochs=1, verbose=0, **kwargs)


@pytest.mark.parametrize("verbose,error", [("loud", ValueError), (-1, ValueError),
                                           (None, TypeError), (1.0, TypeError),
                                           (np.array([1, 1]), TypeError)])
def test_verbose_is_checked_before_training(verbose, error, capsys):
    # ("loud" and -1 printed a progress bar; an array failed as a truth value, with the
    # call's optimizer already put in place of the network's)
    net, X, y = small_problem()
    net.fit(X, y, epochs=1, verbose=0, optimizer=cyprop.Adam())
    adam = net.optimizer
    with pytest.raises(error, match="verbose"):
        net.fit(X, y, epochs=1, verbose=verbose, optimizer=cyprop.SGD())
    with pytest.raises(error, match="verbose"):
        net.partial_fit(X[0], y[0], verbose=verbose)
    assert net.optimizer is adam and len(net.history) == 1
    assert capsys.readouterr().out == ""
    for good in (0, 1, 2, True, np.int64(0), "auto"):
        net.fit(X, y, epochs=1, verbose=good)
        net.partial_fit(X[0], y[0], verbose=good)


@pytest.mark.parametrize("seed,error", [(-1, ValueError), (1.5, TypeError),
                                        ("abc", TypeError), ([-1], ValueError)])
def test_a_bad_seed_is_refused_by_name(seed, error):
    # (NumPy's "expected non-negative integer" named no argument)
    with pytest.raises(error, match="seed must be None or an integer >= 0"):
        cyprop.Network([4, 3], seed=seed)
    net, X, y = small_problem()
    with pytest.raises(error, match="seed must be None or an integer >= 0"):
        net.fit(X, y, epochs=1, verbose=0, seed=seed)
    assert len(net.history) == 0


def test_callbacks_and_class_weight_of_the_wrong_type_are_refused_by_name():
    # (Python's "'int' object is not iterable" and "cannot convert dictionary update
    # sequence element #0 to a sequence" named neither; callbacks=None is none, below)
    net, X, y = small_problem()
    with pytest.raises(TypeError, match="callbacks must be a list"):
        net.fit(X, y, epochs=1, verbose=0, callbacks=5)
    for bad in ([1.0, 2.0, 3.0], 2.0):
        with pytest.raises(TypeError, match="class_weight must be 'balanced' or a dict"):
            net.fit(X, y, epochs=1, verbose=0, class_weight=bad)
        with pytest.raises(TypeError, match="class_weight must be 'balanced' or a dict"):
            net.partial_fit(X, y, class_weight=bad)
    assert len(net.history) == 0


def test_learning_rates_beyond_float_are_value_errors():
    for make in (cyprop.SGD, cyprop.Adam, cyprop.RMSprop, cyprop.Adagrad, cyprop.Rprop):
        with pytest.raises(ValueError, match="learning_rate must be a finite number"):
            make(learning_rate=10 ** 400)
        with pytest.raises(TypeError, match="learning_rate must be a number"):
            make(learning_rate="0.1")


@pytest.mark.parametrize("make", [
    lambda: cyprop.schedules.InverseScaling(power=float("nan")),
    lambda: cyprop.schedules.StepDecay(step_size=5, gamma=float("inf")),
    lambda: cyprop.schedules.Cosine(period=10, min_rate=float("nan")),
    lambda: cyprop.schedules.ReduceOnPlateau(factor=float("nan")),
    lambda: cyprop.schedules.ReduceOnPlateau(min_delta=float("-inf")),
])
def test_schedule_parameters_must_be_finite(make):
    with pytest.raises(ValueError, match="finite"):
        make()


def test_an_inverse_scaling_power_beyond_float_decays_to_zero_not_overflow():
    # (2 ** 1e308 raised OverflowError from the schedule, in the second epoch)
    schedule = cyprop.schedules.InverseScaling(power=1e308)
    assert schedule.rate(0, 0.1) == 0.1 and schedule.rate(1, 0.1) == 0.0
    net, X, y = small_problem()
    net.fit(X, y, epochs=3, verbose=0, schedule=schedule)
    assert net.history.learning_rate == [0.1, 0.0, 0.0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_plateau_on_val_loss_without_validation_is_refused_before_training(backend):
    net, X, y = small_problem(backend)
    before = net._params.copy()
    with pytest.raises(ValueError, match="needs validation data"):
        net.fit(X, y, epochs=3, verbose=0,
                schedule=cyprop.schedules.ReduceOnPlateau(monitor="val_loss"))
    np.testing.assert_array_equal(net._params, before)
    assert len(net.history) == 0
    net.fit(X, y, epochs=2, verbose=0, validation_split=0.25,
            schedule=cyprop.schedules.ReduceOnPlateau(monitor="val_loss"))


def test_a_schedule_that_returns_nan_stops_before_the_epoch():
    class Broken(cyprop.schedules.Schedule):
        def rate(self, epoch, initial_rate):
            return float("nan") if epoch == 1 else initial_rate

    net, X, y = small_problem()
    with pytest.raises(ValueError, match="schedule's learning rate for epoch 2"):
        net.fit(X, y, epochs=3, verbose=0, schedule=Broken())
    assert len(net.history) == 1 and np.isfinite(net._params).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_call_refused_before_its_first_epoch_keeps_the_optimizer_and_history(backend):
    class Broken(cyprop.schedules.Schedule):
        def rate(self, epoch, initial_rate):
            return float("nan")

    net, X, y = small_problem(backend)
    net.fit(X, y, epochs=2, verbose=0, optimizer=cyprop.Adam())
    adam, history = net.optimizer, net.history
    params, state, steps = net._params.copy(), adam.state.copy(), adam.steps
    with pytest.raises(ValueError, match="schedule's learning rate for epoch 1"):
        net.fit(X, y, epochs=2, verbose=0, optimizer=cyprop.SGD(), schedule=Broken())
    # (the SGD and an empty history used to replace them: Adam's state was lost)
    assert net.optimizer is adam and net.history is history and len(history) == 2
    assert np.array_equal(net._params, params) and np.array_equal(adam.state, state)
    assert adam.steps == steps


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_from_its_own_callback_says_so(backend):
    net, X, y = small_problem(backend)
    seen = []

    class Recursive:
        def on_epoch_end(self, net, epoch, logs):
            try:
                net.fit(X, y, epochs=1, verbose=0)
            except RuntimeError as exc:
                seen.append(str(exc))

    net.fit(X, y, epochs=1, verbose=0, callbacks=[Recursive()])
    assert len(seen) == 1 and "from inside its own training" in seen[0]
    assert "another thread" not in seen[0]


# ------------------------------------------------------- Ctrl-C, NumPy backend
def test_ctrl_c_never_leaves_half_a_numpy_step():
    """An interrupt that arrives between the statements of the reference optimizer's
    step is held until the step is whole: momentum buffer, weights and step count all
    move together, as in the compiled backend, whose step is one C call."""
    code = """
        import os, signal, numpy as np, cyprop

        class InterruptedMidStep(cyprop.SGD):
            # Ctrl-C lands after the momentum buffer moved and before the weights do
            def update_params(self, params, grad, arch):
                buf = self.state_for(params)[0]
                if self.steps == 0:
                    buf[...] = grad
                else:
                    buf *= self.momentum
                    buf += grad
                if self.steps == 2:
                    os.kill(os.getpid(), signal.SIGINT)
                params -= self.learning_rate * buf
                self.steps += 1

        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(40, 4)), rng.integers(0, 3, 40)
        net = cyprop.Network([4, 6, 3], backend="numpy", seed=0)
        twin = net.copy()
        try:
            net.fit(X, y, epochs=1, batch_size=10, shuffle=False, verbose=0,
                    optimizer=InterruptedMidStep(0.1, momentum=0.9))
        except KeyboardInterrupt:
            print("interrupted")
        # the twin takes exactly three whole steps of the same optimizer
        twin.fit(X[:30], y[:30], epochs=1, batch_size=10, shuffle=False, verbose=0,
                 optimizer=cyprop.SGD(0.1, momentum=0.9))
        assert net.optimizer.steps == 3, net.optimizer.steps
        np.testing.assert_array_equal(net._params, twin._params)
        np.testing.assert_array_equal(net.optimizer.state, twin.optimizer.state)
        print("whole steps")
    """
    status, output = run_child(code)
    assert status == 0, output
    assert "interrupted" in output and "whole steps" in output


# ----------------------------------------------------------- pickles crafted by hand
def crafted_pickle(obj, **changes):
    """The bytes of a pickle of ``obj`` whose state (``__getstate__``) has ``changes``:
    what someone writing pickle bytes by hand could hand ``__setstate__``."""
    import copyreg
    import pickle

    state = obj.__getstate__() if hasattr(obj, "__getstate__") else dict(vars(obj))
    state = {**state, **changes}

    class Crafted:
        def __reduce__(self):
            return copyreg._reconstructor, (type(obj), object, None), state

    return pickle.dumps(Crafted())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("field,make,message", [
    # these broadcast into the parameters without a word
    ("_params", lambda net: np.float64(7.0), r"parameters must be an array of shape \(51,\)"),
    ("_params", lambda net: np.ones(1), r"parameters must be an array of shape \(51,\)"),
    ("_params", lambda net: net._params.astype(np.float32), "dtype float64"),
    ("_params", lambda net: np.full(net.n_params, np.nan), "NaN or infinity"),
    ("_dtype", lambda net: np.dtype(np.int64), "dtype must be 'float32' or 'float64'"),
    ("_dropout", lambda net: [1.5], r"dropout rates must be in \[0, 1\)"),
    ("_dropout", lambda net: [0.5] * 9, "dropout lists 9 rates"),
    ("_max_norm", lambda net: float("nan"), "max_norm must be a finite number"),
    ("_max_norm", lambda net: -1.0, "max_norm must be a finite number"),
    ("_arch", lambda net: "arch", "its architecture is a str"),
    ("_rng", lambda net: None, "its random generator is a NoneType"),
    ("optimizer", lambda net: "sgd", "its optimizer is a str"),
    ("history", lambda net: None, "its history is a NoneType"),
])
def test_a_crafted_network_pickle_is_checked(backend, field, make, message):
    import pickle

    net, X, y = small_problem(backend)
    data = crafted_pickle(net, **{field: make(net)})
    with pytest.raises(ValueError, match=message):
        pickle.loads(data)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h.loss.__setitem__(0, "a"), r"record 'loss': 'a' is not a number"),
    (lambda h: setattr(h, "loss", ["0.5", "0.4"]), r"record 'loss': '0.5' is not a number"),
    (lambda h: setattr(h, "loss", [True, False]), r"record 'loss': True is not a number"),
    (lambda h: setattr(h, "loss", [1j, 2.0]), r"record 'loss': 1j is not a number"),
    (lambda h: setattr(h, "loss", [10 ** 400, 1]), r"record 'loss': .* is not a number"),
    # (set past History's own checks, as an unpickled one may hold it)
    (lambda h: vars(h).update(loss=None), r"invalid training history \('NoneType'"),
    (lambda h: vars(h).pop("loss"), r"invalid training history \('History' object has no"),
    (lambda h: setattr(h, "stop_reason", 5), r"its stop_reason 5 is neither text nor None"),
], ids=["text", "numeric-text", "bools", "complex", "huge-int", "none", "deleted",
        "stop-reason"])
def test_a_history_edited_by_hand_is_named_by_save_as_by_copy(tmp_path, edit, message):
    """save and get_state converted the records with float(): text, bools and complex
    failed with float()'s own errors (or an AttributeError for a record set to None),
    and text such as '0.5' or True was saved as a number, where copy() refused it."""
    net, X, y = small_problem()
    net.fit(X, y, epochs=2, verbose=0)
    edit(net.history)
    for act in (net.get_state, lambda: net.save(tmp_path / "net.npz"), net.copy):
        with pytest.raises(ValueError, match=message):
            act()
    assert not (tmp_path / "net.npz").exists()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("one_sample", [False, True])
def test_a_history_record_that_is_no_list_is_refused_when_set(backend, one_sample):
    """A record set to a tuple, an array or text: partial_fit took its step and then
    failed to append the epoch's records (AttributeError), the network trained but
    the call failed and the epoch unrecorded."""
    net, X, y = small_problem(backend)
    net.partial_fit(X, y)
    for value in ((0.5,), np.array([0.5]), "0.5", None):
        with pytest.raises(TypeError, match=r"History.loss must be a list, .*got "):
            net.history.loss = value
    with pytest.raises(AttributeError, match="History.loss .* cannot be deleted"):
        del net.history.loss
    net.history.loss = [0.5]
    if one_sample:
        net.partial_fit(X[0], y[0])
    else:
        net.partial_fit(X, y)
    assert len(net.history.loss) == 2 and net.history.epochs == 2


def test_a_history_set_to_no_history_is_named_by_save(tmp_path):
    net, _, _ = small_problem()
    net.history = 5
    with pytest.raises(ValueError, match="cannot take the state of this Network: its "
                                         "history is a int"):
        net.save(tmp_path / "net.npz")


def test_history_records_of_numpy_numbers_are_saved_and_copied_as_floats(tmp_path):
    """Copy refused records of NumPy numbers other than float64 (np.float32, np.int64)
    which save took."""
    net, X, y = small_problem()
    net.fit(X, y, epochs=2, verbose=0)
    net.history.loss = [np.float32(0.5), np.int64(1)]
    assert net.copy().history.loss == [0.5, 1.0]
    net.save(tmp_path / "net.npz")
    assert cyprop.load(tmp_path / "net.npz").history.loss == [0.5, 1.0]


def test_a_crafted_network_pickle_names_what_it_lacks():
    import pickle

    net, _, _ = small_problem()
    state = net.__getstate__()
    del state["_params"]
    twin = cyprop.Network.__new__(cyprop.Network)
    with pytest.raises(ValueError, match="lacks _params"):
        twin.__setstate__(state)
    with pytest.raises(TypeError, match="its state is a dict"):
        twin.__setstate__([1, 2])
    history = cyprop.History()
    history.loss = ["a"]
    with pytest.raises(ValueError, match="invalid training history record 'loss'"):
        pickle.loads(crafted_pickle(net, history=history))


def test_a_crafted_network_pickle_holds_its_classes_as_set():
    """A list of labels in the pickle became the network's own list: net.classes
    could then be appended to, past its checks."""
    import pickle

    net, _, _ = small_problem()
    back = pickle.loads(crafted_pickle(net, _classes=["a", "b", "c"]))
    assert back.classes == ("a", "b", "c")
    with pytest.raises(ValueError, match=r"invalid classes \(.*not distinct"):
        pickle.loads(crafted_pickle(net, _classes=["a", "a", "c"]))
    assert "_classes" not in net.__getstate__()   # (as pickles from before them)
    assert pickle.loads(crafted_pickle(net)).classes is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pickled_architecture_is_rebuilt_not_trusted(backend):
    """What the compiled core reads of the architecture (unit counts, activation codes,
    loss code) is derived again from its sizes, activations and loss."""
    import pickle

    net, X, y = small_problem(backend)
    arch = cyprop.network.Architecture(net.sizes, net.activations, net.loss_name)
    arch.sizes_array = np.array([4, 600, 3], dtype=np.intp)
    arch.activation_codes = np.array([99, 99], dtype=np.intc)
    arch.loss_code = 99
    twin = pickle.loads(crafted_pickle(net, _arch=arch))
    np.testing.assert_array_equal(twin.arch.sizes_array, net.arch.sizes_array)
    np.testing.assert_array_equal(twin.arch.activation_codes, net.arch.activation_codes)
    assert twin.arch.loss_code == net.arch.loss_code
    np.testing.assert_array_equal(twin.forward(X), net.forward(X))
    bad = cyprop.network.Architecture(net.sizes, net.activations, net.loss_name)
    bad.activations = ("sigmoid", "bogus")
    with pytest.raises(ValueError, match="unknown output activation 'bogus'"):
        pickle.loads(crafted_pickle(net, _arch=bad))


def test_a_crafted_generator_state_in_a_pickle_never_reaches_a_shuffle():
    """NumPy's own unpickling takes an MT19937 position far past its key, and the next
    draw reads outside the key: refused before any shuffle, in a child process."""
    code = """
        import copyreg, pickle
        import numpy as np, cyprop
        net = cyprop.Network([4, 6, 3], seed=0)
        bit_generator = np.random.MT19937(0)
        state = bit_generator.state
        state["state"]["pos"] = 10**9
        bit_generator.state = state
        crafted = {**net.__getstate__(), "_rng": np.random.Generator(bit_generator)}
        class Crafted:
            def __reduce__(self):
                return copyreg._reconstructor, (cyprop.Network, object, None), crafted
        try:
            twin = pickle.loads(pickle.dumps(Crafted()))
        except ValueError as exc:
            print("refused:", exc)
        else:
            rng = np.random.default_rng(0)
            twin.fit(rng.normal(size=(40, 4)), rng.integers(0, 3, 40), epochs=1, verbose=0)
            print("trained")
    """
    status, output = run_child(code)
    assert status == 0, output
    assert "refused:" in output and "MT19937 state.pos must be an integer in 0..624" in output


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("changes,error,message", [
    ({"_steps": 2**70}, ValueError, r"steps must be <= 4611686018427387903"),
    ({"_steps": -5}, ValueError, "steps must be >= 0"),
    ({"_steps": "3"}, TypeError, "steps must be an integer"),
    ({"_state": [[0.0]]}, TypeError, "Adam.state must be a NumPy array or None"),
    ({"_state": np.zeros(5)}, ValueError, r"Adam.state must have shape \(2, n_params\)"),
    ({"_state": np.zeros((2, 5), dtype=np.int64)}, ValueError, "float32 or float64"),
])
def test_a_crafted_optimizer_pickle_is_checked(backend, changes, error, message):
    """Before, a step count of 2**70 trained on (NumPy) or overflowed deep inside the
    training call (compiled)."""
    import pickle

    net, X, y = small_problem(backend)
    net.fit(X, y, epochs=1, verbose=0, optimizer=cyprop.Adam())
    with pytest.raises(error, match=message):
        pickle.loads(crafted_pickle(net.optimizer, **changes))
    # pickles from before steps and state were properties still load
    old = {"steps": net.optimizer.steps, "state": net.optimizer.state}
    state = {k: v for k, v in vars(net.optimizer).items() if k not in ("_steps", "_state")}
    opt = cyprop.Adam.__new__(cyprop.Adam)
    opt.__setstate__({**state, **old})
    assert opt.steps == net.optimizer.steps
    np.testing.assert_array_equal(opt.state, net.optimizer.state)


@pytest.mark.parametrize("replacement,error,message", [
    (lambda: cyprop.Network([2, 5, 3], output="softmax", loss="cross_entropy"), ValueError,
     "network_ has 2 inputs and 3 outputs, but this estimator takes 8 features"),
    (lambda: cyprop.Network([8, 5, 4], output="softmax", loss="cross_entropy"), ValueError,
     "network_ has 8 inputs and 4 outputs"),
    (lambda: "a network", TypeError, "network_ must be a cyprop Network, got str"),
])
def test_an_estimator_whose_network_was_replaced_refuses_to_predict(replacement, error,
                                                                   message):
    """network_ set by hand (or unpickled) to another shape: before, predict read the
    8-feature rows through a 2-input network and answered class 0 without a word."""
    pytest.importorskip("sklearn")
    from cyprop.sklearn import BackpropClassifier

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 8)), rng.integers(0, 3, 60)
    clf = BackpropClassifier(hidden_layer_sizes=(5,), max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    clf.network_ = replacement()
    for method in (clf.predict, clf.predict_proba):
        with pytest.raises(error, match=message):
            method(X[:3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weights_set_to_nan_by_hand_are_named_by_forward_and_evaluate(backend):
    """Before, forward blamed an overflow 'from finite inputs and weights'."""
    net, X, y = small_problem(backend)
    net.weights[0][1, 2] = np.nan
    for rows in (X, X[0], X[:1]):
        with pytest.raises(FloatingPointError, match="the network's weights hold NaN"):
            net.forward(rows)
    with pytest.raises(FloatingPointError, match="the network's weights hold NaN"):
        net.evaluate(X, y)
    linear = cyprop.Network([4, 6, 3], activation="relu", output="identity", loss="mse",
                            backend=backend, seed=0)
    linear.weights[0][...] = 1e300   # finite, but their products with X overflow
    with pytest.raises(FloatingPointError, match="from finite inputs and weights"):
        linear.forward(X * 1e10)


@pytest.mark.parametrize("instruction_set", ["avx512", "avx2", "baseline"])
@pytest.mark.parametrize("activation, output", [("relu", "softmax"), ("sigmoid", "relu"),
                                                ("relu", "identity")])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_nan_weight_is_not_hidden_by_a_relu_on_any_kernel(instruction_set, activation,
                                                             output, dtype):
    """ReLU took a NaN pre-activation to 0 (z > 0 ? z : 0), on every kernel and in the
    NumPy reference: a network with a weight set to NaN by hand answered with finite
    outputs instead of naming the weight."""
    from cyprop import _compiled, _reference

    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    X = np.random.default_rng(0).normal(size=(300, 4)).astype(dtype)
    for backend in BACKENDS:
        net = cyprop.Network([4, 6, 3], activation=activation, output=output, loss="mse",
                             dtype=dtype, backend=backend, seed=0)
        layer = 0 if activation == "relu" else 1
        net.weights[layer][1, 2] = np.nan
        for rows in (X, X[0], X[:1]):
            with pytest.raises(FloatingPointError, match="the network's weights hold NaN"):
                net.forward(rows)
    compiled = _compiled.CompiledBackend(instruction_set).forward(net.arch, net._params, X)
    reference = _reference.forward(net.arch, net._params, X)
    np.testing.assert_array_equal(np.isnan(compiled), np.isnan(reference))
    assert np.isnan(compiled[:, 1]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loss_overflowed_by_its_targets_names_them(backend):
    """Targets of 1e200 overflow mse's square: the message blamed only the inputs or
    weights, and said to scale the inputs."""
    net = cyprop.Network([4, 6, 3], activation="relu", output="identity", loss="mse",
                         backend=backend, seed=0)
    X = np.random.default_rng(0).uniform(size=(5, 4))
    Y = np.full((5, 3), 1e200)
    for call in (lambda: net.loss(X, Y), lambda: net.evaluate(X, Y)):
        with pytest.raises(FloatingPointError, match="from finite inputs and targets and "
                           "weights.*scale the inputs and targets"):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("labels", [2 ** 64, [1, 2 ** 64], [-(2 ** 70), 0]])
def test_labels_beyond_int64_are_out_of_range_not_of_the_wrong_type(backend, labels):
    """(NumPy keeps them as objects: the message was 'must be integers, got dtype
    object', for labels that are integers.)"""
    net, X, y = small_problem(backend)
    before = net._params.copy()
    rows = X[0] if np.ndim(labels) == 0 else X[:len(labels)]
    with pytest.raises(ValueError, match=r"Y has label -?\d{20,}, outside the range 0..2"):
        net.partial_fit(rows, labels)
    np.testing.assert_array_equal(net._params, before)
    with pytest.raises(TypeError, match="must be integers, got dtype object"):
        net.partial_fit(X[:2], np.array(["a", 1], dtype=object))


@pytest.mark.parametrize("backend", BACKENDS)
def test_n_slots_set_on_an_instance_changes_no_state_shape(backend):
    """The compiled core reads an optimizer's n_slots from its class; the state was
    made (and checked) from the instance's, here a (10**6, n_params) array."""
    net, X, y = small_problem(backend)
    adam = cyprop.Adam(1e-3)
    adam.n_slots = 10 ** 6
    net.fit(X, y, epochs=1, verbose=0, optimizer=adam)
    assert adam.state.shape == (2, net.n_params)
    with pytest.raises(ValueError, match=r"must have shape \(2, n_params\)"):
        adam.state = np.zeros((10 ** 6, 1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_misaligned_row_gets_the_aligned_rows_result(dtype):
    """A one-row call on a row that does not start on its items' boundary (a view of
    a byte buffer): the compiled fast path must not read it in place."""
    net = cyprop.Network([4, 6, 3], dtype=dtype, seed=0)
    row = np.random.default_rng(0).normal(size=4).astype(dtype)
    raw = bytearray(row.nbytes + 1)
    misaligned = np.frombuffer(raw, dtype=dtype, offset=1, count=4)
    misaligned[...] = row
    assert not misaligned.flags.aligned
    np.testing.assert_array_equal(net.forward(misaligned), net.forward(row))
    np.testing.assert_array_equal(net.forward(misaligned[None]), net.forward(row[None]))
    assert net.predict(misaligned) == net.predict(row)


# ------------------------------------------------------------ masked arrays, callbacks
def test_masked_arrays_with_masked_values_are_refused_and_others_read_as_their_data():
    # (a masked entry holds whatever was there: it was read as a number, silently)
    net = cyprop.Network([3, 4, 2], seed=0)
    X = np.ma.masked_array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], mask=[[0, 1, 0], [0, 0, 0]])
    for call in (lambda: net.forward(X), lambda: net.forward(X[:1]), lambda: net.predict(X),
                 lambda: net.fit(X, [0, 1], epochs=1, verbose=0),
                 lambda: net.partial_fit(X[:1], [0]), lambda: net.evaluate(X, [0, 1])):
        with pytest.raises(ValueError, match="X is a masked array with masked values"):
            call()
    clean = np.ma.masked_array(X.data, mask=False)
    np.testing.assert_array_equal(net.forward(clean), net.forward(X.data))



def test_masked_class_labels_with_masked_values_are_refused():
    # (the labels were one-hot encoded from their data, masked entries included)
    net = cyprop.Network([3, 4, 2], seed=0)
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    y = np.ma.masked_array([0, 1], mask=[0, 1])
    before = net.get_state().params
    for call in (lambda: net.fit(X, y, epochs=1, verbose=0), lambda: net.partial_fit(X, y),
                 lambda: net.evaluate(X, y), lambda: net.loss(X, y),
                 lambda: net.gradients(X, y), lambda: cyprop.check_gradients(net, X, y),
                 lambda: cyprop.Ensemble([net]).evaluate(X, y)):
        with pytest.raises(ValueError, match="Y is a masked array with masked values"):
            call()
    np.testing.assert_array_equal(net.get_state().params, before)
    clean = np.ma.masked_array([0, 1], mask=False)
    assert net.evaluate(X, clean) == net.evaluate(X, [0, 1])


def test_masked_sample_weights_with_masked_values_are_refused():
    # (the masked entries' data was taken for weights)
    net = cyprop.Network([3, 4, 2], seed=0)
    X = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    weights = np.ma.masked_array([1.0, 1e6], mask=[0, 1])
    before = net.get_state().params
    with pytest.raises(ValueError, match="sample_weight is a masked array with masked values"):
        net.fit(X, [0, 1], sample_weight=weights, epochs=1, verbose=0)
    np.testing.assert_array_equal(net.get_state().params, before)
    clean = np.ma.masked_array([1.0, 2.0], mask=False)
    net.fit(X, [0, 1], sample_weight=clean, epochs=1, verbose=0)


def test_one_masked_sample_with_masked_values_is_refused():
    # (a 1-D row and its label were read through np.asarray, which drops the mask)
    net = cyprop.Network([3, 4, 2], seed=0)
    x = np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0])
    label = np.ma.masked_array(1, mask=True)
    before = net.get_state().params
    for call, name in ((lambda: net.partial_fit(x, 0), "X"),
                       (lambda: net.partial_fit(x.data, label), "Y"),
                       (lambda: cyprop.explain(net, x, 0), "x"),
                       (lambda: cyprop.explain(net, x.data, label), "y")):
        with pytest.raises(ValueError, match=f"{name} is a masked array with masked values"):
            call()
    np.testing.assert_array_equal(net.get_state().params, before)
    clean = np.ma.masked_array(x.data, mask=False)
    assert cyprop.explain(net, clean, 0).new_weights[0].tolist() == \
        cyprop.explain(net, x.data, 0).new_weights[0].tolist()
    net.partial_fit(clean, np.ma.masked_array(0, mask=False))


@pytest.mark.filterwarnings("ignore:.*Maximum iterations")
def test_the_estimators_refuse_masked_arrays_with_masked_values():
    """An estimator took a masked X, y or sample_weight through scikit-learn's
    validate_data, which drops the mask: the masked entries' data was trained on and
    predicted from, where cyprop.Network (and the estimators, for a masked Dask array)
    refuse it."""
    sklearn = pytest.importorskip("cyprop.sklearn")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), np.tile([0, 1], 10)
    masked_X = np.ma.masked_array(X, mask=np.zeros(X.shape, dtype=bool))
    masked_X[2, 1] = np.ma.masked
    masked_y = np.ma.masked_array(y, mask=[1] + [0] * 19)
    weights = np.ma.masked_array(np.ones(20), mask=[0] * 19 + [1])
    params = dict(hidden_layer_sizes=(4,), max_iter=2, random_state=0)
    clf = sklearn.BackpropClassifier(**params).fit(X, y)
    reg = sklearn.BackpropRegressor(**params)
    before = clf.network_._params.copy()
    for call, name in ((lambda: clf.fit(masked_X, y), "X"), (lambda: clf.fit(X, masked_y), "y"),
                       (lambda: clf.partial_fit(X, masked_y), "y"),
                       (lambda: clf.fit(X, y, sample_weight=weights), "sample_weight"),
                       (lambda: reg.fit(X, masked_y.astype(float)), "y"),
                       (lambda: clf.predict(masked_X), "X"),
                       (lambda: clf.predict_proba(masked_X), "X")):
        with pytest.raises(ValueError, match=f"{name} is a masked array with masked values"):
            call()
    np.testing.assert_array_equal(clf.network_._params, before)
    clean = np.ma.masked_array(X, mask=False)
    np.testing.assert_array_equal(clf.predict_proba(clean), clf.predict_proba(X))
    fitted = sklearn.BackpropClassifier(**params).fit(clean, np.ma.masked_array(y, mask=False))
    np.testing.assert_array_equal(fitted.network_._params, before)


def test_callbacks_none_means_none():
    net = cyprop.Network([3, 4, 2], seed=0)
    history = net.fit(np.eye(3), [0, 1, 1], epochs=2, verbose=0, callbacks=None)
    assert len(history.loss) == 2
