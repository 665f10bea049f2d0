"""Online plain SGD over blocks of samples (the ``online-blocks`` path) is online SGD.

At batch size 1, plain SGD's first layer after j steps of a block is its value at the
start of the block plus j rank-1 terms, so the core computes the block's first-layer
products as matrix products and walks the samples in order for the rest (see
csrc/_online_block.pxi).  The steps are those of the per-sample path, up to the order
of the floating-point sums: checked here against the NumPy reference (every hidden
activation, output and loss; weight decay; sample weights; blocks that do not divide
the samples; shuffled or not; several epochs; every kernel), and against the per-sample
path.  Small networks take the path here because the tests lower its threshold.
"""

import dataclasses

import numpy as np
import pytest
from conftest import COMBOS

import cyprop
from cyprop import _compiled
from cyprop._training import Dropout, TrainingOptions

CORE = _compiled.KERNELS[_compiled.CHOSEN]
ISAS = ("baseline", "avx2", "avx512")

pytestmark = pytest.mark.skipif(not CORE.has_blas(), reason="no BLAS (scipy): no blocks")


@pytest.fixture
def small_blocks(monkeypatch):
    """Every net with a hidden layer takes the path, in blocks of 7 samples."""
    monkeypatch.setitem(_compiled.TUNING, "online_block_weights", 1)
    monkeypatch.setitem(_compiled.TUNING, "online_block_min", 7)
    monkeypatch.setitem(_compiled.TUNING, "online_block_max", 7)


def train_both(sizes, combo, dtype, optimizer, n=45, epochs=3, shuffle=True,
               instruction_set=None, sample_weight=None):
    """The same network trained online on the compiled core and on the NumPy reference;
    the compiled one checked to have planned 'online-blocks'."""
    if instruction_set is not None and instruction_set not in _compiled.KERNELS:
        assert instruction_set != "baseline", "the portable kernel must always be there"
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    activation, output, loss = combo
    rng = np.random.default_rng(11)
    X = rng.normal(size=(n, sizes[0])) / np.sqrt(sizes[0])
    if output == "softmax":
        Y = rng.integers(0, sizes[-1], n)
    else:
        Y = rng.uniform(0.0, 1.0, (n, sizes[-1]))
    nets, optimizers = {}, {}
    for backend in ("cython", "numpy"):
        net = cyprop.Network(sizes, activation=activation, output=output, loss=loss,
                             dtype=dtype, seed=0, backend=backend)
        if backend == "cython":
            if instruction_set is not None:
                net._impl = _compiled.CompiledBackend(instruction_set)
            assert net._impl.plan(net.arch, optimizer, 1).path == "online-blocks"
        optimizers[backend] = type(optimizer)(**optimizer.get_config())
        net.fit(X, Y, epochs=epochs, batch_size=1, shuffle=shuffle, seed=1,
                optimizer=optimizers[backend], verbose=0, sample_weight=sample_weight)
        nets[backend] = net
    return nets, optimizers


def assert_same_training(nets, optimizers, dtype, assert_parity):
    cy, ref = nets["cython"], nets["numpy"]
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")
    assert optimizers["cython"].steps == optimizers["numpy"].steps
    assert_parity(cy.history.loss, ref.history.loss, dtype, "history loss")
    assert cy.history.accuracy == ref.history.accuracy


@pytest.mark.parametrize("weight_decay", [0.0, 0.02], ids=["plain", "decay"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_blocked_online_sgd_matches_the_reference(small_blocks, combo, weight_decay, dtype,
                                                  assert_parity):
    # 45 samples in blocks of 7: six whole blocks and one of 3, three epochs
    nets, optimizers = train_both([13, 11, 4], combo, dtype,
                                  cyprop.SGD(0.05, weight_decay=weight_decay))
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("instruction_set", ISAS)
@pytest.mark.parametrize("weight_decay", [0.0, 0.02], ids=["plain", "decay"])
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
def test_blocked_online_sgd_on_every_kernel(small_blocks, instruction_set, shuffle,
                                            weight_decay, dtype, assert_parity):
    # a deeper net (two layers stepped per sample above the blocked one), and layers
    # wide enough for the kernels' vector loops and their tails
    nets, optimizers = train_both([70, 33, 17, 10], ("sigmoid", "softmax", "cross_entropy"),
                                  dtype, cyprop.SGD(0.1, weight_decay=weight_decay), n=60,
                                  shuffle=shuffle, instruction_set=instruction_set)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("combo", [("sigmoid", "softmax", "cross_entropy"),
                                   ("relu", "identity", "mse")], ids="-".join)
def test_blocked_online_sgd_with_sample_weights(small_blocks, combo, dtype, assert_parity):
    weights = np.random.default_rng(3).uniform(0.2, 2.0, 45)
    nets, optimizers = train_both([13, 11, 4], combo, dtype,
                                  cyprop.SGD(0.05, weight_decay=0.01), sample_weight=weights)
    assert_same_training(nets, optimizers, dtype, assert_parity)


def test_the_planned_block_size_is_the_reference_too(dtype, assert_parity):
    # the real threshold and block size (64 * 40 weights, blocks of 16), 50 samples
    nets, optimizers = train_both([64, 40, 10], ("sigmoid", "softmax", "cross_entropy"),
                                  dtype, cyprop.SGD(0.1), n=50, epochs=2)
    assert_same_training(nets, optimizers, dtype, assert_parity)


# ------------------------------------------------------------- against the other paths
def core_run(path, block_rows, dtype, n=50, sizes=(40, 19, 17, 3), weight_decay=0.02,
             **kwargs):
    """Parameters after one call of ``path`` on the chosen kernel (plain SGD)."""
    net = cyprop.Network(list(sizes), seed=4, dtype=dtype)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    optimizer = cyprop.SGD(0.1, weight_decay=weight_decay)
    state = optimizer.state_for(net._params)
    order = rng.permutation(n).astype(np.intp)
    loss, correct, steps = CORE.train_epoch(
        net.arch.sizes_array, net.arch.activation_codes, net.arch.loss_code, net._params,
        X, Y, order, _compiled.Plan(path, "sgd", 1, block_rows).struct(CORE),
        dataclasses.asdict(optimizer.hyper()), state, 5, **kwargs)
    assert steps == 5 + n
    return net._params, loss, correct


@pytest.mark.parametrize("block_rows", [1, 2, 16, 49, 50, 64])
def test_any_block_size_takes_the_steps_of_the_per_sample_path(block_rows, dtype,
                                                              assert_parity):
    expected, loss, correct = core_run("online-next", 1, dtype)
    params, blocked_loss, blocked_correct = core_run("online-blocks", block_rows, dtype)
    assert_parity(params, expected, dtype)
    assert_parity(blocked_loss, loss, dtype)
    assert blocked_correct == correct


def test_dropout_on_the_blocked_path_runs_the_per_sample_one(dtype):
    # (plan() never gives the path dropout; a direct call falls back, the same steps)
    rates = np.array([0.3, 0.2, 0.0])
    runs = [core_run(path, 8, dtype, dropout=rates, dropout_seed=9)
            for path in ("online-next", "online-blocks")]
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1:] == runs[1][1:]


def test_an_empty_call_steps_nothing(dtype):
    params, loss, correct = core_run("online-blocks", 8, dtype, n=0)
    assert (loss, correct) == (0, 0)


# ------------------------------------------------------------------------ the plans
def planned(sizes, optimizer, batch_size=1, **options):
    net = cyprop.Network(list(sizes), seed=0)
    return _compiled.plan(net.arch, optimizer, batch_size, TrainingOptions(**options))


@pytest.mark.parametrize("sizes, rows", [([784, 30, 10], 16), ([784, 100, 10], 24),
                                         ([784, 256, 10], 64), ([64, 32, 10], 16),
                                         ([784, 1000, 10], 64)], ids=str)
def test_plain_online_sgd_takes_blocks_sized_by_the_first_layer(sizes, rows):
    assert _compiled.online_block_rows(sizes[1]) == rows
    for optimizer in (cyprop.SGD(0.1), cyprop.SGD(0.1, weight_decay=0.01)):
        assert planned(sizes, optimizer) == _compiled.Plan("online-blocks", "sgd", 1, rows)


def test_what_stays_on_the_per_sample_paths():
    W2 = [784, 30, 10]
    # a first layer below the threshold: the per-sample loop over an L1-resident layer
    assert planned([6, 5, 3], cyprop.SGD(0.1)).path == "online-next"
    assert planned([63, 32, 10], cyprop.SGD(0.1)).path == "online-next"
    # rules whose steps are not rank-1 sums, and options that change the steps
    for optimizer in (cyprop.SGD(0.1, momentum=0.9), cyprop.Adam(), cyprop.RMSprop(),
                      cyprop.Adagrad(), cyprop.Rprop()):
        assert planned(W2, optimizer).path == "online-next"
    assert planned(W2, cyprop.SGD(0.1), max_norm=2.0).path == "online"
    assert planned([784, 10], cyprop.SGD(0.1)).path == "online"
    assert planned(W2, cyprop.SGD(0.1), dropout=Dropout([0.2, 0.0], 1)).path == "online-next"
    # mini-batches keep theirs
    assert planned(W2, cyprop.SGD(0.1), 10).path == "blocks"
    # one sample has no block to share the first layer with (a stream of partial_fit)
    net = cyprop.Network(W2)
    assert _compiled.plan(net.arch, cyprop.SGD(0.1), 1, n_samples=1).path == "online-next"
    assert _compiled.plan(net.arch, cyprop.SGD(0.1), 1, n_samples=2).path == "online-blocks"


def test_a_stream_of_single_samples_equals_one_sample_fits():
    """partial_fit of one row (served in C) and fit on that row take the same path."""
    X = np.random.default_rng(0).random((5, 784))
    streamed, fitted = cyprop.Network([784, 30, 10], seed=1), cyprop.Network([784, 30, 10], seed=1)
    for i in range(5):
        streamed.partial_fit(X[i], i)
        fitted.fit(X[i:i + 1].tolist(), [i], epochs=1, batch_size=1, optimizer=fitted.optimizer)
    np.testing.assert_array_equal(streamed._params, fitted._params)


@pytest.fixture
def without_blas():
    for kernel in _compiled.KERNELS.values():
        kernel.set_blas(None, None)
    yield
    for kernel in _compiled.KERNELS.values():
        kernel.set_blas(*(_compiled.BLAS or (None, None)))


def test_without_blas_online_sgd_runs_one_sample_at_a_time(without_blas):
    assert planned([784, 30, 10], cyprop.SGD(0.1)).path == "online-next"
    with pytest.raises(ValueError, match="needs BLAS"):
        core_run("online-blocks", 8, "float64")


@pytest.mark.parametrize("plan, match", [
    (_compiled.Plan("online-blocks", "adam", 1, 8), "plain SGD"),
    (_compiled.Plan("online-blocks", "sgd", 3, 8), "batch size 1"),
    (_compiled.Plan("online-blocks", "sgd", 1, 0), "block_rows"),
], ids=["adam", "batch-3", "no-rows"])
def test_the_core_refuses_a_blocked_plan_it_would_run_wrong(plan, match):
    net = cyprop.Network([6, 5, 3], seed=0)
    X, Y = np.zeros((4, 6)), np.eye(3)[[0, 1, 2, 0]]
    optimizer = cyprop.Adam() if plan.rule == "adam" else cyprop.SGD(0.1)
    before = net._params.copy()
    with pytest.raises(ValueError, match=match):
        CORE.train_epoch(net.arch.sizes_array, net.arch.activation_codes, net.arch.loss_code,
                         net._params, X, Y, np.arange(4, dtype=np.intp), plan.struct(CORE),
                         dataclasses.asdict(optimizer.hyper()), optimizer.state_for(net._params),
                         0)
    np.testing.assert_array_equal(net._params, before)


def test_max_norm_and_single_layer_nets_are_refused():
    for sizes, kwargs in (([6, 5, 3], {"max_norm": 2.0}), ([6, 3], {})):
        net = cyprop.Network(sizes, seed=0)
        X, Y = np.zeros((4, sizes[0])), np.eye(3)[[0, 1, 2, 0]]
        with pytest.raises(ValueError, match="hidden layers and no max-norm"):
            CORE.train_epoch(net.arch.sizes_array, net.arch.activation_codes,
                             net.arch.loss_code, net._params, X, Y,
                             np.arange(4, dtype=np.intp),
                             _compiled.Plan("online-blocks", "sgd", 1, 8).struct(CORE),
                             dataclasses.asdict(cyprop.SGD(0.1).hyper()),
                             np.zeros((1, net.n_params)), 0, **kwargs)
