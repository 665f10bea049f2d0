"""Online SGD over blocks of samples (the ``online-blocks`` path) is online SGD.

At batch size 1, plain SGD's first layer after j steps of a block is its value at the
start of the block plus j rank-1 terms, so the core computes the block's first-layer
products as matrix products and walks the samples in order for the rest (see
csrc/_online_block.pxi).  With momentum (and Nesterov) the pair of the first layer and
its buffer is a linear recurrence in the same gradients, blocked the same way.  The steps
are those of the per-sample path, up to the order of the floating-point sums: checked
here against the NumPy reference (every hidden activation, output and loss; weight
decay; momentum and Nesterov; sample weights; blocks that do not divide the samples;
shuffled or not; several epochs; a fresh and a carried momentum buffer; every kernel),
and against the per-sample path.  Small networks take the path here because the tests
lower its threshold.
"""

import dataclasses
import sys

import numpy as np
import pytest
from conftest import COMBOS, MOMENTUM, assert_same_training, train_on_both_backends

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


def train_both(sizes, combo, dtype, optimizer, **options):
    """train_on_both_backends online, on the 'online-blocks' path."""
    return train_on_both_backends(sizes, combo, dtype, optimizer, 1, "online-blocks",
                                  **options)


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


@pytest.mark.parametrize("optimizer", [cyprop.SGD(0.1), cyprop.SGD(0.05, momentum=0.9),
                                       cyprop.SGD(0.05, momentum=0.9, nesterov=True,
                                                  weight_decay=0.01)],
                         ids=["sgd", "momentum", "nesterov-decay"])
def test_the_planned_block_size_is_the_reference_too(optimizer, dtype, assert_parity):
    # the real threshold and block size (64 * 40 weights, blocks of 16), 50 samples
    nets, optimizers = train_both([64, 40, 10], ("sigmoid", "softmax", "cross_entropy"),
                                  dtype, optimizer, n=50, epochs=2)
    assert_same_training(nets, optimizers, dtype, assert_parity)


# ------------------------------------------------------------------------- momentum
@pytest.mark.parametrize("config", MOMENTUM)
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_blocked_online_momentum_matches_the_reference(small_blocks, combo, config, dtype,
                                                       assert_parity):
    # 45 samples in blocks of 7, three epochs (three calls: the buffer carries over
    # between calls and blocks), from a fresh buffer (the first step sets it)
    nets, optimizers = train_both([13, 11, 4], combo, dtype,
                                  cyprop.SGD(0.02, **MOMENTUM[config]))
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("instruction_set", ISAS)
@pytest.mark.parametrize("config", MOMENTUM)
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
def test_blocked_online_momentum_on_every_kernel(small_blocks, instruction_set, shuffle,
                                                 config, dtype, assert_parity):
    nets, optimizers = train_both([70, 33, 17, 10], ("sigmoid", "softmax", "cross_entropy"),
                                  dtype, cyprop.SGD(0.03, **MOMENTUM[config]), n=60,
                                  shuffle=shuffle, instruction_set=instruction_set)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("config", ["momentum", "nesterov-decay"])
@pytest.mark.parametrize("combo", [("sigmoid", "softmax", "cross_entropy"),
                                   ("relu", "identity", "mse")], ids="-".join)
def test_blocked_online_momentum_with_sample_weights(small_blocks, combo, config, dtype,
                                                     assert_parity):
    weights = np.random.default_rng(3).uniform(0.2, 2.0, 45)
    nets, optimizers = train_both([13, 11, 4], combo, dtype,
                                  cyprop.SGD(0.02, **MOMENTUM[config]), sample_weight=weights)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("config", MOMENTUM)
@pytest.mark.parametrize("before", [1, 5], ids=["online-before", "batches-before"])
def test_a_buffer_carried_from_an_earlier_fit(small_blocks, config, before, dtype,
                                              assert_parity):
    # a first fit (online, or mini-batches of 5 on the blocks path) leaves a buffer and a
    # step count; the online fit after it starts from them, on both backends
    rng = np.random.default_rng(5)
    X = rng.normal(size=(31, 20)) / np.sqrt(20)
    y = rng.integers(0, 4, 31)
    nets, optimizers = {}, {}
    for backend in ("cython", "numpy"):
        net = cyprop.Network([20, 12, 4], dtype=dtype, seed=2, backend=backend)
        optimizer = cyprop.SGD(0.03, **MOMENTUM[config])
        net.fit(X, y, epochs=1, batch_size=before, shuffle=False, optimizer=optimizer,
                verbose=0)
        assert optimizer.steps > 0 and np.any(optimizer.state != 0)
        if backend == "cython":
            assert net._impl.plan(net.arch, optimizer, 1).path == "online-blocks"
        net.fit(X, y, epochs=2, batch_size=1, seed=3, optimizer=optimizer, verbose=0)
        nets[backend], optimizers[backend] = net, optimizer
    assert_same_training(nets, optimizers, dtype, assert_parity)


# ------------------------------------------------------------- against the other paths
def core_run(path, block_rows, dtype, n=50, sizes=(40, 19, 17, 3), weight_decay=0.02,
             momentum=0.0, nesterov=False, steps=5, **kwargs):
    """Parameters after one call of ``path`` on the chosen kernel (SGD, with momentum
    from a buffer of noise), then the state."""
    net = cyprop.Network(list(sizes), seed=4, dtype=dtype)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    optimizer = cyprop.SGD(0.1 if not momentum else 0.03, momentum=momentum,
                           nesterov=nesterov, weight_decay=weight_decay)
    state = optimizer.state_for(net._params)
    state[...] = rng.normal(scale=0.1, size=state.shape)   # a buffer from earlier steps
    order = rng.permutation(n).astype(np.intp)
    rule = _compiled._rule(optimizer, CORE)
    loss, correct, steps_after = CORE.train_epoch(
        net.arch.sizes_array, net.arch.activation_codes, net.arch.loss_code, net._params,
        X, Y, order, _compiled.Plan(path, rule, 1, block_rows).struct(CORE),
        dataclasses.asdict(optimizer.hyper().core()), state, steps, **kwargs)
    assert steps_after == steps + n
    return net._params, loss, correct, state


@pytest.mark.parametrize("block_rows", [1, 2, 16, 49, 50, 64])
def test_any_block_size_takes_the_steps_of_the_per_sample_path(block_rows, dtype,
                                                              assert_parity):
    expected, loss, correct, _ = core_run("online-next", 1, dtype)
    params, blocked_loss, blocked_correct, _ = core_run("online-blocks", block_rows, dtype)
    assert_parity(params, expected, dtype)
    assert_parity(blocked_loss, loss, dtype)
    assert blocked_correct == correct


@pytest.mark.parametrize("block_rows", [1, 2, 7, 16, 49, 50, 64])
@pytest.mark.parametrize("config", MOMENTUM)
@pytest.mark.parametrize("steps", [0, 5], ids=["fresh", "carried"])
def test_momentum_at_any_block_size_takes_the_per_sample_steps(block_rows, config, steps,
                                                               dtype, assert_parity):
    # steps 0: the first step sets the buffer to the gradient, whatever the state held
    # (noise here); steps 5: the buffer of noise carries into the first block
    hp = {"weight_decay": 0.0, **MOMENTUM[config]}
    expected, loss, correct, state = core_run("online-next", 1, dtype, steps=steps, **hp)
    params, blocked_loss, blocked_correct, blocked_state = core_run(
        "online-blocks", block_rows, dtype, steps=steps, **hp)
    assert_parity(params, expected, dtype, "parameters")
    assert_parity(blocked_state, state, dtype, "buffer")
    assert_parity(blocked_loss, loss, dtype)
    assert blocked_correct == correct


def test_dropout_on_the_blocked_path_runs_the_per_sample_one(dtype):
    # (plan() never gives the path dropout; a direct call falls back, the same steps)
    rates = np.array([0.3, 0.2, 0.0])
    for momentum in (0.0, 0.9):
        runs = [core_run(path, 8, dtype, dropout=rates, dropout_seed=9, momentum=momentum)
                for path in ("online-next", "online-blocks")]
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        np.testing.assert_array_equal(runs[0][3], runs[1][3])
        assert runs[0][1:3] == runs[1][1:3]


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
def test_an_empty_call_steps_nothing(momentum, dtype):
    before = core_run("online-next", 8, dtype, n=0, momentum=momentum)
    params, loss, correct, state = core_run("online-blocks", 8, dtype, n=0,
                                            momentum=momentum)
    assert (loss, correct) == (0, 0)
    np.testing.assert_array_equal(params, before[0])
    np.testing.assert_array_equal(state, before[3])


# ------------------------------------------------------------------------ the plans
def planned(sizes, optimizer, batch_size=1, **options):
    net = cyprop.Network(list(sizes), seed=0)
    return _compiled.plan(net.arch, optimizer, batch_size, TrainingOptions(**options))


@pytest.mark.parametrize("sizes, rows", [([784, 30, 10], 16), ([784, 100, 10], 24),
                                         ([784, 256, 10], 64), ([64, 32, 10], 16),
                                         ([784, 1000, 10], 64)], ids=str)
def test_online_sgd_takes_blocks_sized_by_the_first_layer(sizes, rows):
    assert _compiled.online_block_rows(sizes[1]) == rows
    for optimizer in (cyprop.SGD(0.1), cyprop.SGD(0.1, weight_decay=0.01)):
        assert planned(sizes, optimizer) == _compiled.Plan("online-blocks", "sgd", 1, rows)
    # momentum and Nesterov, with weight decay or not, under the same conditions
    for optimizer in (cyprop.SGD(0.1, momentum=0.9),
                      cyprop.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)):
        assert planned(sizes, optimizer) == _compiled.Plan("online-blocks", "momentum", 1,
                                                           rows)


def test_what_stays_on_the_per_sample_paths():
    W2 = [784, 30, 10]
    # a first layer below the threshold: the per-sample loop over an L1-resident layer
    assert planned([6, 5, 3], cyprop.SGD(0.1)).path == "online-next"
    assert planned([63, 32, 10], cyprop.SGD(0.1)).path == "online-next"
    assert planned([63, 32, 10], cyprop.SGD(0.1, momentum=0.9)).path == "online-next"
    # rules whose steps are not linear in the gradients, and options that change the steps
    for optimizer in (cyprop.Adam(), cyprop.RMSprop(), cyprop.RMSprop(momentum=0.9),
                      cyprop.Adagrad(), cyprop.Rprop()):
        assert planned(W2, optimizer).path == "online-next"
    for sgd in (cyprop.SGD(0.1), cyprop.SGD(0.1, momentum=0.9, nesterov=True)):
        assert planned(W2, sgd, max_norm=2.0).path == "online"
        assert planned([784, 10], sgd).path == "online"
        assert planned(W2, sgd, dropout=Dropout([0.2, 0.0], 1)).path == "online-next"
        # mini-batches keep theirs
        assert planned(W2, sgd, 16).path == "blocks"
        assert planned(W2, sgd, 4).path == "batch-blocks"
        # one sample has no block to share the first layer with (a stream of partial_fit)
        net = cyprop.Network(W2)
        assert _compiled.plan(net.arch, sgd, 1, n_samples=1).path == "online-next"
        assert _compiled.plan(net.arch, sgd, 1, n_samples=2).path == "online-blocks"


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
def test_a_stream_of_single_samples_equals_one_sample_fits(momentum):
    """partial_fit of one row (served in C) and fit on that row take the same path."""
    X = np.random.default_rng(0).random((5, 784))
    streamed, fitted = cyprop.Network([784, 30, 10], seed=1), cyprop.Network([784, 30, 10], seed=1)
    if momentum:
        streamed.optimizer = cyprop.SGD(0.1, momentum=momentum)
        fitted.optimizer = cyprop.SGD(0.1, momentum=momentum)
    for i in range(5):
        streamed.partial_fit(X[i], i)
        fitted.fit(X[i:i + 1].tolist(), [i], epochs=1, batch_size=1, optimizer=fitted.optimizer)
    np.testing.assert_array_equal(streamed._params, fitted._params)


def test_without_blas_online_sgd_runs_one_sample_at_a_time(without_blas, monkeypatch):
    # (on a kernel without products of its own; the AVX-512 kernel's run the blocks
    # paths without a BLAS: test_core_plan.py)
    baseline = _compiled.KERNELS["baseline"]
    net = cyprop.Network([784, 30, 10], seed=0)
    for optimizer in (cyprop.SGD(0.1), cyprop.SGD(0.1, momentum=0.9)):
        assert _compiled.plan(net.arch, optimizer, 1, TrainingOptions(),
                              baseline).path == "online-next"
    monkeypatch.setattr(sys.modules[__name__], "CORE", baseline)
    with pytest.raises(ValueError, match="needs BLAS"):
        core_run("online-blocks", 8, "float64")


@pytest.mark.parametrize("plan, match", [
    (_compiled.Plan("online-blocks", "adam", 1, 8), "plain SGD and SGD with momentum"),
    (_compiled.Plan("online-blocks", "rmsprop", 1, 8), "plain SGD and SGD with momentum"),
    (_compiled.Plan("online-blocks", "sgd", 3, 8), "batch size 1"),
    (_compiled.Plan("online-blocks", "momentum", 3, 8), "batch size 1"),
    (_compiled.Plan("online-blocks", "sgd", 1, 0), "block_rows"),
    (_compiled.Plan("online-blocks", "momentum", 1, 0), "block_rows"),
    (_compiled.Plan("batch-blocks", "adam", 4, 8), "plain SGD and SGD with momentum"),
    (_compiled.Plan("batch-blocks", "rprop", 4, 8), "plain SGD and SGD with momentum"),
    (_compiled.Plan("batch-blocks", "sgd", 1, 8), "batch sizes of 2 or more"),
    (_compiled.Plan("batch-blocks", "sgd", 4, 6), "multiple of the batch size"),
    (_compiled.Plan("batch-blocks", "momentum", 4, 2), "multiple of the batch size"),
    (_compiled.Plan("batch-blocks", "sgd", 4, 0), "multiple of the batch size"),
], ids=["adam", "rmsprop", "batch-3", "momentum-batch-3", "no-rows", "momentum-no-rows",
        "batches-adam", "batches-rprop", "batches-of-1", "batches-rows-6", "batches-rows-2",
        "batches-no-rows"])
def test_the_core_refuses_a_blocked_plan_it_would_run_wrong(plan, match):
    """Either blocked path (online-blocks here, batch-blocks: test_batch_blocks.py)."""
    net = cyprop.Network([6, 5, 3], seed=0)
    X, Y = np.zeros((4, 6)), np.eye(3)[[0, 1, 2, 0]]
    optimizer = {"adam": cyprop.Adam(), "rmsprop": cyprop.RMSprop(), "rprop": cyprop.Rprop(),
                 "momentum": cyprop.SGD(0.1, momentum=0.9)}.get(plan.rule, cyprop.SGD(0.1))
    before = net._params.copy()
    with pytest.raises(ValueError, match=match):
        CORE.train_epoch(net.arch.sizes_array, net.arch.activation_codes, net.arch.loss_code,
                         net._params, X, Y, np.arange(4, dtype=np.intp), plan.struct(CORE),
                         dataclasses.asdict(optimizer.hyper().core()), optimizer.state_for(net._params),
                         0)
    np.testing.assert_array_equal(net._params, before)


@pytest.mark.parametrize("path, batch_size", [("online-blocks", 1), ("batch-blocks", 4)])
@pytest.mark.parametrize("optimizer", [cyprop.SGD(0.1), cyprop.SGD(0.1, momentum=0.9)],
                         ids=["sgd", "momentum"])
def test_max_norm_and_single_layer_nets_are_refused(optimizer, path, batch_size):
    rule = _compiled._rule(optimizer, CORE)
    for sizes, kwargs in (([6, 5, 3], {"max_norm": 2.0}), ([6, 3], {})):
        net = cyprop.Network(sizes, seed=0)
        X, Y = np.zeros((4, sizes[0])), np.eye(3)[[0, 1, 2, 0]]
        with pytest.raises(ValueError, match="hidden layers and no max-norm"):
            CORE.train_epoch(net.arch.sizes_array, net.arch.activation_codes,
                             net.arch.loss_code, net._params, X, Y,
                             np.arange(4, dtype=np.intp),
                             _compiled.Plan(path, rule, batch_size, 8).struct(CORE),
                             dataclasses.asdict(optimizer.hyper().core()),
                             np.zeros((1, net.n_params)), 0, **kwargs)
