"""The compiled backend computes what the NumPy reference computes.

Same seed -> same initial weights, and then forward, loss, gradients and the weights
after training agree within the documented tolerances (float64 rtol 1e-9, float32
rtol 1e-4).  Training uses moderate learning rates: with large effective rates
online SGD is chaotic and rounding differences between backends grow exponentially.
"""

import numpy as np
import pytest

import cyprop
from cyprop import _maths

# 1-unit layers and a deep net are where index arithmetic in the compiled core breaks.
# Layers wider than 16 units cover the compiled dot product's unrolled part and its tail.
SHAPES = [[3, 1, 2], [4, 1, 1], [1, 3, 1], [5, 4, 3], [2, 6, 1], [17, 9, 4], [33, 47, 19],
          [6, 5, 4, 4, 3, 2]]
OPTIMIZERS = {
    "plain": {},
    "momentum": {"momentum": 0.5},
    "nesterov": {"momentum": 0.5, "nesterov": True},
    "weight_decay": {"weight_decay": 0.01},
    "everything": {"momentum": 0.5, "nesterov": True, "weight_decay": 0.01},
}
LEARNING_RATE = 0.05
N_SAMPLES = 23  # leaves a short last batch for batch sizes 3 and 10
EPOCHS = 3


def both_backends(make_net, sizes, combo, dtype, **kwargs):
    return {b: make_net(sizes, combo, dtype=dtype, backend=b, **kwargs)
            for b in ("cython", "numpy")}


def train_both(nets, X, Y, batch_size, optimizer_kwargs, **fit_kwargs):
    """Train each network with its own optimizer (optimizer state must not be shared)."""
    return {b: net.fit(X, Y, epochs=EPOCHS, batch_size=batch_size,
                       optimizer=cyprop.SGD(LEARNING_RATE, **optimizer_kwargs), **fit_kwargs)
            for b, net in nets.items()}


# ------------------------------------------------------------------ the extension
def test_compiled_extension_imports():
    # No skip here on purpose: CI must fail when the extension was not built.
    import cyprop._core  # noqa: F401
    assert "cython" in cyprop.available_backends()


def test_auto_backend_resolves_to_cython():
    assert cyprop.Network([2, 3, 1], backend="auto").backend == "cython"
    assert cyprop.Network([2, 3, 1]).backend == "cython"


def test_activation_and_loss_codes_are_shared():
    from cyprop import _core
    assert tuple(_maths.ACTIVATIONS) == tuple(_core.ACTIVATIONS)
    assert tuple(_maths.LOSSES) == tuple(_core.LOSSES)


# ---------------------------------------------------------------- one evaluation
@pytest.mark.parametrize("init", ["normal", "uniform", "xavier", "he"])
def test_same_seed_same_initial_parameters(make_net, flat_params, init, dtype):
    nets = both_backends(make_net, [5, 4, 3], ("tanh", "softmax", "cross_entropy"), dtype,
                         init=init, seed=42)
    np.testing.assert_array_equal(flat_params(nets["cython"]), flat_params(nets["numpy"]))


@pytest.mark.parametrize("sizes", SHAPES, ids=str)
def test_forward_loss_gradients_parity(make_net, make_data, assert_parity, sizes, combo,
                                       dtype):
    nets = both_backends(make_net, sizes, combo, dtype)
    X, Y = make_data(sizes, combo[1], n=N_SAMPLES)
    cy, ref = nets["cython"], nets["numpy"]

    out = cy.forward(X)
    assert out.dtype == np.dtype(dtype) and out.shape == (N_SAMPLES, sizes[-1])
    assert_parity(out, ref.forward(X), dtype, "forward")
    assert_parity(cy.forward(X[0]), ref.forward(X[0]), dtype, "forward, one sample")
    assert_parity(cy.loss(X, Y), ref.loss(X, Y), dtype, "loss")
    if dtype == "float64":  # float32 outputs within rounding of a tie may flip argmax
        assert cy.evaluate(X, Y)["accuracy"] == ref.evaluate(X, Y)["accuracy"]

    (cy_w, cy_b), (ref_w, ref_b) = cy.gradients(X, Y), ref.gradients(X, Y)
    for l, (a, b) in enumerate(zip(cy_w + cy_b, ref_w + ref_b)):
        assert a.dtype == np.dtype(dtype)
        assert_parity(a, b, dtype, f"gradient {l}")


# ------------------------------------------------------------------- training
def assert_training_parity(nets, histories, initial, dtype, assert_parity, flat_params):
    cy, ref = nets["cython"], nets["numpy"]
    for l in range(len(cy.weights)):
        assert_parity(cy.weights[l], ref.weights[l], dtype, f"weights[{l}]")
        assert_parity(cy.biases[l], ref.biases[l], dtype, f"biases[{l}]")
    assert_parity(histories["cython"].loss, histories["numpy"].loss, dtype, "history loss")
    if dtype == "float64":  # float32 outputs within rounding of a tie may flip argmax
        assert histories["cython"].accuracy == histories["numpy"].accuracy
    # Training moved the weights (else the comparison above proves little), except
    # for a 1-unit softmax, whose output is constantly 1: its gradients are all 0.
    if not (cy.activations[-1] == "softmax" and cy.sizes[-1] == 1):
        assert not np.allclose(flat_params(cy), initial)


@pytest.mark.parametrize("optimizer", ["plain", "everything"])
@pytest.mark.parametrize("batch_size", [1, 3, 10])
def test_training_parity_every_combination(make_net, make_data, assert_parity, flat_params,
                                           combo, dtype, batch_size, optimizer):
    sizes = [5, 4, 3]
    nets = both_backends(make_net, sizes, combo, dtype)
    X, Y = make_data(sizes, combo[1], n=N_SAMPLES, seed=1)
    initial = flat_params(nets["cython"])
    histories = train_both(nets, X, Y, batch_size, OPTIMIZERS[optimizer], seed=5)
    assert_training_parity(nets, histories, initial, dtype, assert_parity, flat_params)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("batch_size", [1, 3, 10])
@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize("combo", [("tanh", "softmax", "cross_entropy"),
                                   ("relu", "identity", "mse")], ids="-".join)
def test_training_parity_shapes_and_optimizers(make_net, make_data, assert_parity,
                                               flat_params, combo, sizes, dtype, batch_size,
                                               optimizer):
    nets = both_backends(make_net, sizes, combo, dtype)
    X, Y = make_data(sizes, combo[1], n=N_SAMPLES, seed=2)
    X /= np.sqrt(sizes[0])  # else online SGD on the wide layers diverges at this rate
    initial = flat_params(nets["cython"])
    # seed=None: the shuffling comes from each network's own generator.
    histories = train_both(nets, X, Y, batch_size, OPTIMIZERS[optimizer])
    assert_training_parity(nets, histories, initial, dtype, assert_parity, flat_params)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_training_parity_without_shuffling_and_repeated_fits(make_net, make_data,
                                                             assert_parity, flat_params,
                                                             dtype, batch_size):
    # A second fit continues with the optimizer state (momentum buffer) of the first.
    sizes = [4, 6, 3]
    combo = ("sigmoid", "softmax", "mse")
    nets = both_backends(make_net, sizes, combo, dtype)
    X, Y = make_data(sizes, "softmax", n=N_SAMPLES, seed=3)
    initial = flat_params(nets["cython"])
    for b, net in nets.items():
        opt = cyprop.SGD(0.2, momentum=0.9)
        net.fit(X, Y, epochs=2, batch_size=batch_size, optimizer=opt, shuffle=False)
    histories = {b: net.fit(X, Y, epochs=2, batch_size=batch_size, shuffle=False)
                 for b, net in nets.items()}
    assert_training_parity(nets, histories, initial, dtype, assert_parity, flat_params)


# Hyper-parameters at the edges of their range, each of which the compiled core once
# read otherwise than the reference: an eps below the smallest normal number (0 in
# float32, read as 0 where the per-sample paths flush subnormals; Adam's
# eps * sqrt(1 - beta2**t) underflows first) stepped a weight whose input is always 0 by
# 0 / 0; a decay rate within float32's rounding of 1 left 1 - beta at 0 in float32; and
# a subnormal rate was flushed to 0, so Rprop's step sizes never grew from it.
EDGES = {
    "adam-eps": ("Adam", dict(learning_rate=0.01, eps=5e-324)),
    "adam-eps-t": ("Adam", dict(learning_rate=0.01, eps=1e-300, beta2=1 - 1e-16)),
    "rmsprop-eps": ("RMSprop", dict(learning_rate=0.01, eps=1e-320)),
    "adagrad-eps": ("Adagrad", dict(learning_rate=0.01, eps=5e-324)),
    "adam-beta1": ("Adam", dict(learning_rate=0.01, beta1=1 - 1e-9)),
    "adam-beta2": ("Adam", dict(learning_rate=0.01, beta2=1 - 1e-9)),
    "rmsprop-alpha": ("RMSprop", dict(learning_rate=1e-6, alpha=1 - 1e-9)),
    "rprop-rate": ("Rprop", dict(learning_rate=5e-324, etas=(0.5, 1e30),
                                 step_sizes=(0.0, 0.01))),
    "rprop-rate-float32": ("Rprop", dict(learning_rate=1e-40, etas=(0.5, 1e30),
                                         step_sizes=(0.0, 0.01))),   # (float32's subnormal)
}


@pytest.mark.parametrize("batch_size", [1, 4])
@pytest.mark.parametrize("edge", EDGES)
def test_training_parity_with_hyper_parameters_at_their_edges(make_net, assert_parity,
                                                              edge, batch_size, dtype):
    name, kwargs = EDGES[edge]
    rng = np.random.default_rng(3)
    X = rng.normal(size=(N_SAMPLES, 3))
    X[:, 0] = 0   # the weights of this input never have a gradient: v stays 0
    Y = rng.integers(0, 2, N_SAMPLES)
    nets = both_backends(make_net, [3, 4, 2], ("tanh", "softmax", "cross_entropy"), dtype)
    histories = {b: net.fit(X, Y, epochs=EPOCHS, batch_size=batch_size, shuffle=False,
                            optimizer=getattr(cyprop, name)(**kwargs), verbose=0)
                 for b, net in nets.items()}
    cy, ref = nets["cython"], nets["numpy"]
    assert_parity(histories["cython"].loss, histories["numpy"].loss, dtype, "history loss")
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")


@pytest.mark.parametrize("optimizer", [cyprop.SGD(0.1), cyprop.Adam(0.01)], ids=repr)
def test_subnormal_inputs_train_as_in_the_reference(make_net, assert_parity, optimizer,
                                                    dtype):
    """The per-sample paths flush subnormals to zero for speed; inputs that are
    subnormal themselves must not be read as 0: a ReLU unit with w * x = 1e-40 > 0
    (float32) has derivative 1, not 0, and its bias steps."""
    tiny = 1e-40 if dtype == "float32" else 1e-310
    X = np.array([[tiny, 0.0], [0.0, tiny], [tiny, tiny]])
    Y = np.array([[0.0], [1.0], [0.0]])
    nets = both_backends(make_net, [2, 3, 1], ("relu", "sigmoid", "cross_entropy"), dtype,
                         init="xavier")
    for net in nets.values():
        # (biases 0: each hidden unit's input is w * x, as small as x)
        net.biases = [np.zeros_like(b) for b in net.biases]
        net.fit(X, Y, epochs=2, batch_size=1, shuffle=False, verbose=0,
                optimizer=type(optimizer)(**optimizer.get_config()))
        net.partial_fit(X[0], Y[0])
    cy, ref = nets["cython"], nets["numpy"]
    assert cy._impl.plan(cy.arch, optimizer, 1).path in ("online", "online-next")
    assert not np.array_equal(ref.biases[0], np.zeros(3))   # the ReLU units stepped
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")


def test_subnormal_targets_count_as_in_the_reference(make_net, assert_parity, dtype):
    """A target row (0, tiny) names class 1: flushed to zero it read as a tie, and the
    per-sample paths counted class 0 as the target (accuracy 0 where the reference
    has 1), in fit and in the one-sample step alike."""
    tiny = 1e-40 if dtype == "float32" else 5e-324
    X = np.array([[0.0]])
    Y = np.array([[0.0, tiny]])
    nets = both_backends(make_net, [1, 1, 2], ("sigmoid", "sigmoid", "mse"), dtype,
                         init="normal")
    cy, ref = nets["cython"], nets["numpy"]
    assert np.argmax(ref.forward(X)) == 1   # the target's class, so accuracy 1
    for net in nets.values():
        net.fit(X, Y, epochs=1, batch_size=1, shuffle=False, verbose=0)
        net.partial_fit(X[0], Y[0])
    assert cy.history.accuracy == ref.history.accuracy == [1.0, 1.0]
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")


def test_adam_with_a_tiny_eps_is_scale_free_on_the_per_sample_paths(make_net, assert_parity,
                                                                     dtype):
    """Adam steps a gradient of 1e-156 by about the learning rate when eps is tinier
    still; its v, (1 - beta2) g * g, is then subnormal, and flushed to 0 it made a step
    of 1e136.  The per-sample paths flush only where that cannot matter."""
    tiny, eps = (1e-156, 1e-300) if dtype == "float64" else (1e-19, 1e-44)
    X = np.array([[tiny, -tiny], [tiny, tiny]])
    Y = np.array([[0.0], [1.0]])
    nets = both_backends(make_net, [2, 1], ("sigmoid", "sigmoid", "cross_entropy"), dtype)
    for net in nets.values():
        net.fit(X, Y, epochs=2, batch_size=1, shuffle=False, verbose=0,
                optimizer=cyprop.Adam(0.01, eps=eps))
    cy, ref = nets["cython"], nets["numpy"]
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")
    assert np.abs(ref.weights[0]).max() < 10   # steps of about 0.01


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_adam_floors_eps_where_it_meets_the_corrected_v(make_net, assert_parity,
                                                        instruction_set, batch_size, dtype):
    """Adam's eps is raised to the dtype's smallest normal number where it meets
    sqrt(v / (1 - beta2**t)), as the formula is written.  Here v underflows to 0 while m
    does not, so the floor alone sets the step; floored where it meets the uncorrected
    sqrt(v) instead (eps * sqrt(1 - beta2**t)), the step came out sqrt(1 - beta2**t) times
    too small."""
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    # an input that makes (1 - beta2) g * g underflow; a rate that keeps the step finite
    tiny, rate = (1e-165, 1e-140) if dtype == "float64" else (1e-24, 1e-12)
    X = np.full((4, 1), tiny)
    Y = np.zeros((4, 1))
    nets = both_backends(make_net, [1, 1], ("identity", "identity", "mse"), dtype)
    nets["cython"]._impl = _compiled.CompiledBackend(instruction_set)
    for net in nets.values():
        net.fit(X, Y, epochs=2, batch_size=batch_size, shuffle=False, verbose=0,
                optimizer=cyprop.Adam(rate, eps=5e-324))
    cy, ref = nets["cython"], nets["numpy"]
    assert ref.optimizer.state[1, 0] == 0 and ref.optimizer.state[0, 0] != 0   # v 0, m not
    assert abs(ref.weights[0][0, 0]) > 1   # the floor's step, not the learning rate's
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")


def test_rprop_sees_the_sign_of_a_subnormal_last_gradient(make_net, assert_parity, dtype):
    """Rprop keeps each parameter's last gradient for its sign; one that is subnormal
    (from an input of 1e-40) must still make the next opposite gradient a sign flip, on
    the per-sample paths too, which flush subnormals for the other optimizers."""
    tiny = 1e-40 if dtype == "float32" else 1e-310
    nets = both_backends(make_net, [1, 2], ("sigmoid", "sigmoid", "mse"), dtype)
    for net in nets.values():
        net.fit(np.array([[0.0], [tiny]]), np.array([[0.0, 0.0]] * 2), epochs=1, batch_size=1,
                shuffle=False, verbose=0, optimizer=cyprop.Rprop(0.01))
        net.partial_fit(np.array([[-1.0], [1.0]], dtype=dtype), np.zeros((2, 2)), batch_size=1,
                        shuffle=False)
    cy, ref = nets["cython"], nets["numpy"]
    assert_parity(cy.optimizer.state, ref.optimizer.state, dtype, "Rprop's state")
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")


# ------------------------------------------------------------ reproducibility
def test_same_seed_same_result_on_the_same_backend(make_net, make_data, flat_params,
                                                   backend, dtype):
    sizes = [5, 7, 3]
    X, Y = make_data(sizes, n=N_SAMPLES)
    runs = []
    for _ in range(2):
        net = make_net(sizes, backend=backend, dtype=dtype, seed=11)
        h = net.fit(X, Y, epochs=3, batch_size=4, optimizer=cyprop.SGD(0.3, momentum=0.5))
        runs.append((flat_params(net), h.loss, h.accuracy))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1] and runs[0][2] == runs[1][2]


def test_fit_seed_controls_the_shuffling(make_net, make_data, flat_params, backend):
    sizes = [5, 7, 3]
    X, Y = make_data(sizes, n=N_SAMPLES)

    def train(fit_seed):
        net = make_net(sizes, backend=backend, seed=0)
        net.fit(X, Y, epochs=2, batch_size=1, optimizer=cyprop.SGD(0.1), seed=fit_seed)
        return flat_params(net)

    np.testing.assert_array_equal(train(7), train(7))
    assert not np.allclose(train(7), train(8))


# ------------------------------------------------- blocks and compiled kernels
def test_parity_on_many_samples(make_net, make_data, assert_parity, combo, dtype):
    # Enough rows for the compiled core to work in several blocks, the last one partial.
    sizes = [7, 9, 4]
    nets = both_backends(make_net, sizes, combo, dtype)
    X, Y = make_data(sizes, combo[1], n=601, seed=4)
    cy, ref = nets["cython"], nets["numpy"]
    assert_parity(cy.forward(X), ref.forward(X), dtype, "forward")
    assert_parity(cy.loss(X, Y), ref.loss(X, Y), dtype, "loss")
    for a, b in zip(sum(cy.gradients(X, Y), []), sum(ref.gradients(X, Y), [])):
        assert_parity(a, b, dtype, "gradients")
    histories = train_both(nets, X, Y, 64, OPTIMIZERS["everything"], seed=0)
    assert_parity(histories["cython"].loss, histories["numpy"].loss, dtype, "history loss")
    for a, b in zip(cy.weights + cy.biases, ref.weights + ref.biases):
        assert_parity(a, b, dtype, "trained parameters")


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
def test_every_compiled_kernel_matches_the_reference(make_net, make_data, assert_parity,
                                                     instruction_set, dtype):
    # The core is built once per instruction set and one is chosen at import; the
    # others are reached through cyprop._compiled's (private) kernel table.
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        assert instruction_set != "baseline", "the portable kernel must always be there"
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    combo = ("tanh", "softmax", "cross_entropy")
    sizes = [6, 5, 4, 3]
    nets = both_backends(make_net, sizes, combo, dtype)
    nets["cython"]._impl = _compiled.CompiledBackend(instruction_set)
    X, Y = make_data(sizes, n=300, seed=6)
    cy, ref = nets["cython"], nets["numpy"]
    assert_parity(cy.forward(X), ref.forward(X), dtype, "forward")
    for a, b in zip(sum(cy.gradients(X, Y), []), sum(ref.gradients(X, Y), [])):
        assert_parity(a, b, dtype, "gradients")
    for batch_size in (1, 3, 10):
        for net in nets.values():
            net.fit(X[:23], Y[:23], epochs=2, batch_size=batch_size, seed=1,
                    optimizer=cyprop.SGD(LEARNING_RATE, momentum=0.5, weight_decay=0.01))
        for a, b in zip(cy.weights + cy.biases, ref.weights + ref.biases):
            assert_parity(a, b, dtype, f"trained parameters, batch_size={batch_size}")


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("sizes, batch_size, momentum", [
    ([70, 33, 10], 1, 0.0),     # fused online SGD: 16-wide loops with a tail, rows in pairs
    ([70, 33, 10], 1, 0.9),     # fused online SGD with momentum
    ([70, 33, 10], 10, 0.0),    # mini-batches as matrix products
    ([200, 160, 10], 64, 0.0),  # blocks of 32 rows, the hidden layer split in parts
], ids=["online", "online-momentum", "batches", "split-layer"])
def test_every_compiled_kernel_matches_the_reference_on_its_fast_paths(
        make_net, make_data, assert_parity, instruction_set, sizes, batch_size, momentum,
        dtype):
    """SGD on layers wide enough for each kernel's vector loops and its fused and split
    paths (the test above uses small layers)."""
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    nets = both_backends(make_net, sizes, ("sigmoid", "softmax", "cross_entropy"), dtype)
    nets["cython"]._impl = _compiled.CompiledBackend(instruction_set)
    X, Y = make_data(sizes, n=150, seed=7)
    for net in nets.values():
        net.fit(X, Y, epochs=2, batch_size=batch_size, seed=1, n_threads=2,
                optimizer=cyprop.SGD(0.05, momentum=momentum, nesterov=momentum > 0))
    cy, ref = nets["cython"], nets["numpy"]
    for a, b in zip(cy.weights + cy.biases, ref.weights + ref.biases):
        assert_parity(a, b, dtype, f"trained parameters, {instruction_set}")


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
def test_the_scan_for_subnormals_finds_them_anywhere(instruction_set, dtype):
    """Before a per-sample epoch the inputs, parameters and hyper-parameters are scanned
    for subnormal numbers, which flushing would read as 0 (the epoch then runs
    unflushed): every position of the row (the vectors' tails too), either sign, and
    nothing else (0, -0, the smallest normal number, inf, NaN)."""
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    core = _compiled.KERNELS[instruction_set]
    info = np.finfo(dtype)
    others = np.array([0.0, -0.0, info.smallest_normal, -info.smallest_normal, 1.0, np.inf,
                       -np.inf, np.nan, info.max], dtype=dtype)
    assert not core.holds_subnormal(np.zeros(0, dtype=dtype))
    assert not core.holds_subnormal(np.zeros(0, dtype=dtype), np.zeros(0, dtype=dtype))

    def scans(row):
        """The scan alone, and the scan of the copy the one-sample step makes, which
        must copy every bit (NaN's payload and -0's sign too)."""
        copy = np.full(len(row), 7, dtype)
        found = core.holds_subnormal(row, copy)
        assert copy.tobytes() == row.tobytes()
        assert core.holds_subnormal(row) == found
        return found

    for n in (1, 7, 8, 9, 16, 17, 33):
        row = np.resize(others, n)
        assert not scans(row)
        for i in range(n):
            for tiny in (info.smallest_subnormal, -info.smallest_normal / 2):
                found = row.copy()
                found[i] = tiny
                assert scans(found), (n, i, tiny)


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
def test_the_one_sample_steps_check_sees_every_number(instruction_set, dtype):
    """The one-sample partial_fit checks its result in one pass (on AVX-512 comparing
    the magnitudes' bits as integers): all finite, the largest magnitude and the largest
    change, as NumPy computes them, for NaN or infinity of either sign at any position
    (the vectors' tails too), with -0, subnormals and the largest numbers about."""
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    core = _compiled.KERNELS[instruction_set]
    info = np.finfo(dtype)
    rng = np.random.default_rng(7)
    assert core.step_check(np.zeros(0, dtype), np.zeros(0, dtype)) == (True, 0.0, 0.0)
    for n in (1, 7, 8, 15, 16, 17, 31, 32, 33, 70):
        for trial in range(4):
            before = rng.normal(0, 10.0 ** rng.integers(-30, 30), n).astype(dtype)
            now = (before + rng.normal(0, 1e-3, n)).astype(dtype)
            now[rng.integers(0, n)] = rng.choice([-0.0, info.smallest_subnormal,
                                                  -info.smallest_normal, -info.max / 2])
            finite, largest, change = core.step_check(now, before)
            with np.errstate(over="ignore"):
                moved = np.abs(now - before)
            assert finite and largest == np.max(np.abs(now)), (n, trial)
            assert change == np.max(moved), (n, trial)
        for i in range(n):
            for bad in (np.nan, -np.nan, np.inf, -np.inf):
                broken = np.resize(np.array([0.5, -2.0, -0.0], dtype), n)
                broken[i] = bad
                assert not core.step_check(broken, np.zeros(n, dtype))[0], (n, i, bad)


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
def test_softmax_keeps_its_tiny_outputs(instruction_set, dtype):
    """The softmax's exponentials go through the vectorised exp, which gives 0 below -708
    (float32 -86.5): there they come from libm, so that a saturated network's tiny
    outputs, and its gradients (whose signs Rprop steps by), are the reference's, not 0."""
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    gaps = [-720.0, -740.0, -800.0] if dtype == "float64" else [-87.0, -100.0, -110.0]
    X = np.array([[g] for g in gaps], dtype=dtype)
    Y = np.array([1, 1, 1])
    nets = {}
    for backend in ("cython", "numpy"):
        net = cyprop.Network([1, 2], output="softmax", loss="cross_entropy", dtype=dtype,
                             backend=backend, seed=0)
        if backend == "cython":
            net._impl = _compiled.CompiledBackend(instruction_set)
        net.weights[0][:] = [[0.0], [1.0]]   # logits (0, x): outputs (1, about e^x)
        nets[backend] = net
    cy, ref = nets["cython"], nets["numpy"]
    want = ref.forward(X)
    assert (want[:2, 1] > 0).all() and want[2, 1] == 0   # (e^-800 is below every float)
    np.testing.assert_allclose(cy.forward(X), want, rtol=1e-6, atol=0)
    for i in range(3):   # one row: the C path of forward
        np.testing.assert_allclose(cy.forward(X[i]), want[i], rtol=1e-6, atol=0)
    np.testing.assert_allclose(cy.loss(X, Y), ref.loss(X, Y), rtol=1e-6)
    # target class 0: output 1's delta is its tiny output itself
    (cw, cb), (rw, rb) = cy.gradients(X[:1], [0]), ref.gradients(X[:1], [0])
    assert rb[0][1] > 0 and cb[0][1] > 0
    np.testing.assert_allclose(cb[0], rb[0], rtol=1e-6, atol=0)
    np.testing.assert_allclose(cw[0], rw[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("instruction_set", ["baseline", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_vectorised_exp_is_within_3_ulp_of_numpy(instruction_set, dtype):
    """The element-wise sigmoid of mini-batches and inference uses the kernels' own exp
    (a polynomial that vectorises); it must match NumPy's to 3 ulp wherever the result is
    a normal number, overflow to inf where NumPy's does, keep NaN, and give 0 (NumPy: a
    subnormal) only below -708 (float32: -86.5)."""
    from cyprop import _compiled
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    core = _compiled.KERNELS[instruction_set]
    dt = np.dtype(dtype)
    flush, top = (-708.0, 712.0) if dt == np.float64 else (-86.5, 90.0)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(flush, top, 200_000), rng.uniform(-5, 5, 100_000),
                        np.linspace(flush, top, 20_001),
                        [0.0, -0.0, np.log(np.finfo(dt).max)]]).astype(dt)
    got = np.empty_like(x)
    core.exp_into(x, got)
    with np.errstate(over="ignore"):
        want = np.exp(x)
    finite = np.isfinite(want)
    np.testing.assert_array_equal(np.isinf(got), ~finite)
    ulps = np.abs(got[finite] - want[finite]) / np.spacing(want[finite])
    assert ulps.max() <= 3
    edge = np.array([np.nan, np.inf, -np.inf, flush - 1, -1e4, 1e4], dtype=dt)
    out = np.empty_like(edge)
    core.exp_into(edge, out)
    assert np.isnan(out[0]) and out[1] == np.inf and out[2] == 0
    assert out[3] == 0 and out[4] == 0 and out[5] == np.inf
