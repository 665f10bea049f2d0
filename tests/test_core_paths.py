"""Online training (batch size 1) with every optimizer, on every compiled kernel, computes
what the NumPy reference computes.

At batch size 1 each optimizer steps every parameter inside the backward pass, as soon
as its gradient is known (the ``online`` path; plain SGD's ``online-next`` also fuses
the first layer with the next forward pass).  Each kernel (portable, AVX2, AVX-512)
compiles those loops with its own vector width, so each is checked, on layers wide
enough for the vector loops and their tails, with every option of every optimizer,
and with dropout, max-norm and sample weights on top.  Tolerances: the parity table of
conftest.py (float64 rtol 1e-9, float32 rtol 1e-4).
"""

import platform

import numpy as np
import pytest
from conftest import assert_same_training

import cyprop
from cyprop import _compiled

ISAS = ("baseline", "avx2", "avx512")
# every option of every optimizer at least once; moderate rates (see test_parity.py)
CONFIGS = {
    "sgd": ("SGD", dict(learning_rate=0.05)),
    "sgd-decay": ("SGD", dict(learning_rate=0.05, weight_decay=0.01)),
    "momentum": ("SGD", dict(learning_rate=0.05, momentum=0.9)),
    "nesterov-decay": ("SGD", dict(learning_rate=0.05, momentum=0.8, nesterov=True,
                                   weight_decay=0.01)),
    "adam": ("Adam", dict(learning_rate=0.005)),
    "adam-all": ("Adam", dict(learning_rate=0.005, beta1=0.8, beta2=0.95, eps=1e-6,
                              weight_decay=0.01)),
    "rmsprop": ("RMSprop", dict(learning_rate=0.002)),
    "rmsprop-all": ("RMSprop", dict(learning_rate=0.002, alpha=0.9, eps=1e-6, momentum=0.7,
                                    weight_decay=0.01)),
    "adagrad": ("Adagrad", dict(learning_rate=0.02)),
    "adagrad-all": ("Adagrad", dict(learning_rate=0.02, eps=1e-6, weight_decay=0.01)),
    "rprop": ("Rprop", dict(learning_rate=0.001, etas=(0.4, 1.3), step_sizes=(1e-5, 0.01))),
}
# one hidden layer of 33 units over 70 inputs: 16-wide loops with tails, an odd count
# of rows (plain SGD steps the first layer two rows at a time); and a deeper net
SHAPES = [[70, 33, 10], [37, 20, 17, 5]]


@pytest.fixture(autouse=True)
def per_sample_paths(monkeypatch):
    """SGD (plain or with momentum) stays on the per-sample paths here, whatever the
    first layer's size: its blocked path ('online-blocks') has tests of its own
    (test_online_blocks.py)."""
    monkeypatch.setitem(_compiled.TUNING, "online_block_weights", float("inf"))


def optimizer(config):
    name, kwargs = CONFIGS[config]
    return getattr(cyprop, name)(**kwargs)


def train_both(instruction_set, sizes, config, dtype, n=120, epochs=2, **net_options):
    """The same network trained online on the kernel and on the NumPy reference."""
    if instruction_set not in _compiled.KERNELS:
        assert instruction_set != "baseline", "the portable kernel must always be there"
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    fit_options = {k: net_options.pop(k) for k in ("sample_weight",) if k in net_options}
    rng = np.random.default_rng(7)
    X = rng.normal(size=(n, sizes[0])) / np.sqrt(sizes[0])
    y = rng.integers(0, sizes[-1], n)
    nets, optimizers = {}, {}
    for backend in ("cython", "numpy"):
        net = cyprop.Network(sizes, activation="sigmoid", output="softmax", dtype=dtype,
                             seed=0, backend=backend, **net_options)
        if backend == "cython":
            net._impl = _compiled.CompiledBackend(instruction_set)
        optimizers[backend] = optimizer(config)
        net.fit(X, y, epochs=epochs, batch_size=1, seed=1, optimizer=optimizers[backend],
                verbose=0, **fit_options)
        nets[backend] = net
    return nets, optimizers


@pytest.mark.parametrize("sizes", SHAPES, ids=str)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("instruction_set", ISAS)
def test_online_training_matches_the_reference(instruction_set, config, sizes, dtype,
                                               assert_parity):
    nets, optimizers = train_both(instruction_set, sizes, config, dtype)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("instruction_set", ISAS)
def test_online_training_with_dropout_max_norm_and_sample_weights(instruction_set, config,
                                                                  dtype, assert_parity):
    # max-norm steps between samples (plain SGD then runs `online`, not `online-next`);
    # dropout masks the deltas of the backward pass the rule rides on
    weights = np.random.default_rng(3).uniform(0.2, 2.0, 90)
    nets, optimizers = train_both(instruction_set, [37, 20, 17, 5], config, dtype, n=90,
                                  dropout=0.25, max_norm=1.5, sample_weight=weights)
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.parametrize("instruction_set", ISAS)
def test_online_training_continues_with_the_state_of_an_earlier_fit(instruction_set, dtype,
                                                                     assert_parity):
    # Adam's bias corrections go on from the step count of the first fit, and its
    # moments from its state; a fit at batch size 10 in between changes path twice
    nets, optimizers = train_both(instruction_set, [70, 33, 10], "adam-all", dtype, n=40)
    X = np.random.default_rng(8).normal(size=(40, 70)) / np.sqrt(70)
    y = np.arange(40) % 10
    for batch_size in (10, 1):
        for net in nets.values():
            net.fit(X, y, epochs=1, batch_size=batch_size, seed=2, verbose=0)
    assert optimizers["cython"].steps == 2 * 40 + 4 + 40
    assert_same_training(nets, optimizers, dtype, assert_parity)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="subnormals are flushed through x86-64's MXCSR only")
@pytest.mark.parametrize("batch_size, flushed", [(1, True), (2, False)])
def test_per_sample_epochs_flush_subnormal_state_and_restore_the_mode(batch_size, flushed):
    """Adam's running averages of a weight whose gradient is 0 decay geometrically into
    the subnormal range, where every operation is slow: the per-sample paths flush
    them to 0 (a change below float32's smallest normal, 1.2e-38), the mini-batch paths
    and the NumPy reference keep them; the caller's floating-point mode is restored."""
    X = np.array([[0.0, 1.0, 0.5], [0.0, 0.5, 1.0]], np.float32)   # input 0: no gradient
    nets = {backend: cyprop.Network([3, 4, 2], dtype="float32", seed=0, backend=backend)
            for backend in ("cython", "numpy")}
    for net in nets.values():
        net.fit(X, [1, 0], epochs=1, batch_size=batch_size, optimizer=cyprop.Adam(0.01),
                shuffle=False)
        first_inputs = np.arange(4) * 3 + net.arch.w_slices[0].start   # W1[:, 0]
        net.optimizer.state[:, first_inputs] = np.float32(1e-40)       # subnormal
        net.fit(X, [1, 0], epochs=1, batch_size=batch_size, optimizer=net.optimizer,
                shuffle=False)
    compiled = nets["cython"].optimizer.state[:, first_inputs]
    reference = nets["numpy"].optimizer.state[:, first_inputs]
    assert np.all(reference > 0)
    assert np.all(compiled == 0) if flushed else np.array_equal(compiled, reference)
    np.testing.assert_allclose(nets["cython"]._params, nets["numpy"]._params,
                               rtol=1e-4, atol=1e-5)
    assert np.float32(1e-38) / np.float32(100) > 0   # subnormals here again
