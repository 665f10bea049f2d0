"""Small mini-batches of SGD over blocks of batches (the ``batch-blocks`` path) are
mini-batch SGD.

A block of whole batches: the first layer after j batch steps is its value at the
start of the block plus the earlier batches' mean gradients (rank-k terms), so the core
computes the block's first-layer products as matrix products, corrects each row by the
Gram matrix of the block's earlier batches, and steps the first layer's weights once
per block (see csrc/_batch_block.pxi); the biases and the layers above are stepped once
per batch.  Checked here against the NumPy reference (every hidden activation, output
and loss; weight decay; momentum and Nesterov; sample weights; batches and blocks that
do not divide the samples; shuffled or not; several epochs; every kernel), and against
the 'blocks' and 'samples' paths called directly.  Small networks take the path here
because the tests lower its threshold.
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
    """Every net with a hidden layer takes the path, in blocks of whole batches of up
    to 9 rows (batch size 2: blocks of 8; 3: of 9; 4: of 8; 5: a batch per block)."""
    monkeypatch.setitem(_compiled.TUNING, "online_block_weights", 1)
    monkeypatch.setitem(_compiled.TUNING, "batch_block_weights_blas", 1)
    monkeypatch.setitem(_compiled.TUNING, "batch_block_rows", 9)


def train_both(sizes, combo, dtype, optimizer, batch_size, **options):
    """train_on_both_backends on mini-batches, on the 'batch-blocks' path."""
    return train_on_both_backends(sizes, combo, dtype, optimizer, batch_size,
                                  "batch-blocks", **options)


# 45 samples: batches of 2 in blocks of 8 (the last block 5 rows, its last batch 1),
# of 3 in blocks of 9 (dividing both), of 4 in blocks of 8 (the last 4 + 1), of 5 one
# batch a block
BATCHES = [2, 3, 4, 5]


@pytest.mark.parametrize("batch_size", BATCHES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.02], ids=["plain", "decay"])
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_blocked_minibatch_sgd_matches_the_reference(small_blocks, combo, weight_decay,
                                                     batch_size, dtype, assert_parity):
    nets, optimizers = train_both([13, 11, 4], combo, dtype,
                                  cyprop.SGD(0.1, weight_decay=weight_decay), batch_size)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("batch_size", [2, 4])
@pytest.mark.parametrize("config", MOMENTUM)
@pytest.mark.parametrize("combo", COMBOS, ids=["-".join(c) for c in COMBOS])
def test_blocked_minibatch_momentum_matches_the_reference(small_blocks, combo, config,
                                                          batch_size, dtype, assert_parity):
    nets, optimizers = train_both([13, 11, 4], combo, dtype,
                                  cyprop.SGD(0.05, **MOMENTUM[config]), batch_size)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("instruction_set", ISAS)
@pytest.mark.parametrize("optimizer", [cyprop.SGD(0.1, weight_decay=0.01),
                                       cyprop.SGD(0.03, momentum=0.9, nesterov=True,
                                                  weight_decay=0.01)],
                         ids=["sgd-decay", "nesterov-decay"])
@pytest.mark.parametrize("shuffle", [True, False], ids=["shuffled", "in-order"])
@pytest.mark.parametrize("batch_size", [3, 4])
def test_blocked_minibatches_on_every_kernel(small_blocks, instruction_set, optimizer, shuffle,
                                             batch_size, dtype, assert_parity):
    # a deeper net, layers wide enough for the kernels' vector loops and their tails
    nets, optimizers = train_both([70, 33, 17, 10], ("sigmoid", "softmax", "cross_entropy"),
                                  dtype, optimizer, batch_size, n=61, shuffle=shuffle,
                                  instruction_set=instruction_set)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("optimizer", [cyprop.SGD(0.1, weight_decay=0.01),
                                       cyprop.SGD(0.05, momentum=0.9),
                                       cyprop.SGD(0.05, momentum=0.7, nesterov=True,
                                                  weight_decay=0.02)],
                         ids=["sgd-decay", "momentum", "nesterov-decay"])
@pytest.mark.parametrize("combo", [("sigmoid", "softmax", "cross_entropy"),
                                   ("relu", "identity", "mse")], ids="-".join)
@pytest.mark.parametrize("batch_size", [2, 4])
def test_blocked_minibatches_with_sample_weights(small_blocks, combo, optimizer, batch_size,
                                                 dtype, assert_parity):
    weights = np.random.default_rng(3).uniform(0.2, 2.0, 45)
    nets, optimizers = train_both([13, 11, 4], combo, dtype, optimizer, batch_size,
                                  sample_weight=weights)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("optimizer, batch_size", [
    (cyprop.SGD(0.1), 2), (cyprop.SGD(0.1), 4), (cyprop.SGD(0.1, weight_decay=0.01), 10),
    (cyprop.SGD(0.05, momentum=0.9), 2),
    (cyprop.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01), 4)],
    ids=["sgd-2", "sgd-4", "sgd-decay-10", "momentum-2", "nesterov-decay-4"])
def test_the_planned_block_size_is_the_reference_too(optimizer, batch_size, dtype,
                                                     assert_parity):
    # the real thresholds and block sizes (160 * 110 weights; blocks of 8, 8, 10), 53 samples
    nets, optimizers = train_both([160, 110, 10], ("sigmoid", "softmax", "cross_entropy"),
                                  dtype, optimizer, batch_size, n=53, epochs=2)
    assert_same_training(nets, optimizers, dtype, assert_parity)


# ------------------------------------------------------------- against the other paths
def core_run(path, batch_size, block_rows, dtype, n=50, sizes=(40, 19, 17, 3),
             weight_decay=0.02, momentum=0.0, nesterov=False, steps=5, **kwargs):
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
        X, Y, order, _compiled.Plan(path, rule, batch_size, block_rows).struct(CORE),
        dataclasses.asdict(optimizer.hyper().core()), state, steps, **kwargs)
    assert steps_after == steps + -(-n // batch_size)
    return net._params, loss, correct, state


@pytest.mark.parametrize("batch_size, block_rows", [(2, 2), (2, 8), (2, 50), (3, 9),
                                                    (4, 12), (7, 14), (10, 10), (16, 32),
                                                    (25, 50), (32, 64)], ids=str)
@pytest.mark.parametrize("config", ["sgd", "sgd-decay", *MOMENTUM])
@pytest.mark.parametrize("steps", [0, 5], ids=["fresh", "carried"])
def test_any_block_takes_the_steps_of_the_blocks_path(batch_size, block_rows, config, steps,
                                                      dtype, assert_parity):
    hp = ({"weight_decay": 0.0} if config == "sgd" else {} if config == "sgd-decay"
          else {"weight_decay": 0.0, **MOMENTUM[config]})
    for other in ("blocks", "samples"):
        expected, loss, correct, state = core_run(other, batch_size, 32, dtype,
                                                  steps=steps, **hp)
        params, blocked_loss, blocked_correct, blocked_state = core_run(
            "batch-blocks", batch_size, block_rows, dtype, steps=steps, **hp)
        assert_parity(params, expected, dtype, "parameters")
        assert_parity(blocked_state, state, dtype, "buffer")
        assert_parity(blocked_loss, loss, dtype)
        assert blocked_correct == correct


def test_sample_weights_against_the_blocks_path(dtype, assert_parity):
    weights = np.random.default_rng(8).uniform(0.1, 3.0, 50).astype(dtype)
    for momentum in (0.0, 0.9):
        expected = core_run("blocks", 4, 32, dtype, momentum=momentum, sample_weight=weights)
        got = core_run("batch-blocks", 4, 8, dtype, momentum=momentum, sample_weight=weights)
        for a, b in zip(got, expected):
            assert_parity(a, b, dtype)


def test_dropout_on_the_blocked_path_runs_the_samples_path(dtype):
    # (plan() never gives the path dropout; a direct call falls back, the same steps)
    rates = np.array([0.3, 0.2, 0.0])
    for momentum in (0.0, 0.9):
        runs = [core_run(path, 4, 8, dtype, dropout=rates, dropout_seed=9, momentum=momentum)
                for path in ("samples", "batch-blocks")]
        np.testing.assert_array_equal(runs[0][0], runs[1][0])
        np.testing.assert_array_equal(runs[0][3], runs[1][3])
        assert runs[0][1:3] == runs[1][1:3]


@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
def test_an_empty_call_steps_nothing(momentum, dtype):
    before = core_run("samples", 4, 8, dtype, n=0, momentum=momentum)
    params, loss, correct, state = core_run("batch-blocks", 4, 8, dtype, n=0,
                                            momentum=momentum)
    assert (loss, correct) == (0, 0)
    np.testing.assert_array_equal(params, before[0])
    np.testing.assert_array_equal(state, before[3])


# ------------------------------------------------------------------------ the plans
def planned(sizes, optimizer, batch_size, n_samples=None, **options):
    net = cyprop.Network(list(sizes), seed=0)
    return _compiled.plan(net.arch, optimizer, batch_size, TrainingOptions(**options),
                          n_samples=n_samples)


@pytest.mark.parametrize("sizes", [[784, 30, 10], [784, 100, 10], [128, 128, 10]], ids=str)
def test_small_batches_of_sgd_take_blocks_of_whole_batches(sizes):
    for optimizer in (cyprop.SGD(0.1), cyprop.SGD(0.1, weight_decay=0.01),
                      cyprop.SGD(0.1, momentum=0.9),
                      cyprop.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)):
        rule = "momentum" if optimizer.momentum else "sgd"
        largest = 4 if optimizer.momentum else 10
        for batch_size, rows in ((2, 8), (3, 6), (4, 8), (5, 5), (8, 8), (10, 10)):
            if batch_size > largest:
                assert planned(sizes, optimizer, batch_size).path == "blocks"
                continue
            for n_threads in (1, 2, None):   # the plan never depends on the threads
                assert planned(sizes, optimizer, batch_size, n_threads=n_threads) == \
                    _compiled.Plan("batch-blocks", rule, batch_size, rows)
        assert planned(sizes, optimizer, 11).path == "blocks"
        assert planned(sizes, optimizer, 16).path == "blocks"


def test_what_stays_on_the_batch_paths():
    W2 = [784, 30, 10]
    assert planned([63, 32, 10], cyprop.SGD(0.1), 4).path == "blocks"
    assert planned([63, 32, 10], cyprop.SGD(0.1), 2).path == "samples"
    # a small first layer (W1's) takes blocks of batches only below the BLAS batches,
    # where the blocks path's products are faster
    assert planned([64, 32, 10], cyprop.SGD(0.1), 2).path == "batch-blocks"
    assert planned([64, 32, 10], cyprop.SGD(0.1), 3).path == "batch-blocks"
    assert planned([64, 32, 10], cyprop.SGD(0.1), 4).path == "blocks"
    assert planned([64, 32, 10], cyprop.SGD(0.1), 10).path == "blocks"
    assert planned([128, 127, 10], cyprop.SGD(0.1), 4).path == "blocks"
    for optimizer in (cyprop.Adam(), cyprop.RMSprop(), cyprop.Adagrad(), cyprop.Rprop()):
        assert planned(W2, optimizer, 4).path == "blocks"
    sgd = cyprop.SGD(0.1, momentum=0.9)
    assert planned(W2, sgd, 4, max_norm=2.0).path == "blocks"
    assert planned([784, 10], sgd, 4).path == "blocks"
    assert planned(W2, sgd, 4, dropout=Dropout([0.2, 0.0], 1)).path == "blocks"
    # a call of one batch has no block to share
    assert planned(W2, sgd, 4, n_samples=4).path == "blocks"
    assert planned(W2, sgd, 4, n_samples=5).path == "batch-blocks"
    # a first layer that the blocks path splits over threads for a batch stays there
    assert planned([784, 256, 10], cyprop.SGD(0.1), 8).path == "blocks"
    assert planned([784, 256, 10], cyprop.SGD(0.1), 4).path == "batch-blocks"


def test_without_blas_minibatches_run_one_sample_at_a_time(without_blas, monkeypatch):
    # (on a kernel without products of its own; the AVX-512 kernel's run the blocks
    # paths without a BLAS: test_core_plan.py)
    baseline = _compiled.KERNELS["baseline"]
    net = cyprop.Network([784, 30, 10], seed=0)
    assert _compiled.plan(net.arch, cyprop.SGD(0.1), 4, TrainingOptions(),
                          baseline).path == "samples"
    monkeypatch.setattr(sys.modules[__name__], "CORE", baseline)
    with pytest.raises(ValueError, match="needs BLAS"):
        core_run("batch-blocks", 4, 8, "float64")
