"""Python plans each compiled call: its path, its optimizer rule and the tuning.

* ``_compiled.plan`` names the path each kind of training takes, so that a test (and a
  reader) can see which one runs; the backend runs the plan it returns.
* The core reads the plan back as it was given, and refuses a plan that its drivers
  would run wrong (a rule on a path that is not its own, blocks without a BLAS).
* The paths agree with each other: a batch of one sample stepped as each gradient is
  known (``online``) is the step of its gradient sum (``samples``), for every rule.
"""

import copy
import dataclasses
import pathlib
import sys

import numpy as np
import pytest

import cyprop
from cyprop import _compiled
from cyprop._training import TrainingOptions

CORE = _compiled.KERNELS[_compiled.CHOSEN]
NET = cyprop.Network([6, 5, 3], seed=0)
SINGLE_LAYER = cyprop.Network([6, 3], seed=0)


def plan(optimizer, batch_size, net=NET, **options):
    return _compiled.plan(net.arch, optimizer, batch_size, TrainingOptions(**options))


# ------------------------------------------------------------------------ the plans
@pytest.mark.parametrize("optimizer, rule", [
    (cyprop.SGD(0.1), "sgd"), (cyprop.SGD(0.1, weight_decay=0.1), "sgd"),
    (cyprop.SGD(0.1, momentum=0.9), "momentum"),
    (cyprop.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.1), "momentum"),
    (cyprop.Adam(weight_decay=0.1), "adam"), (cyprop.RMSprop(momentum=0.5), "rmsprop"),
    (cyprop.Adagrad(), "adagrad"), (cyprop.Rprop(), "rprop")], ids=repr)
def test_online_training_steps_each_parameter_as_its_gradient_is_known(optimizer, rule):
    assert plan(optimizer, 1) == _compiled.Plan("online-next", rule, 1)
    # without a hidden layer there is no next layer to go on with, and a max-norm
    # step comes between the first layer's step and the next forward pass
    assert plan(optimizer, 1, net=SINGLE_LAYER) == _compiled.Plan("online", rule, 1)
    assert plan(optimizer, 1, max_norm=2.0) == _compiled.Plan("online", rule, 1)


def test_mini_batches_run_as_blocks_of_matrix_products():
    if not CORE.has_blas():
        pytest.skip("no BLAS (scipy) in this environment")
    chosen = plan(cyprop.Adam(), 10, n_threads=1)
    assert chosen == _compiled.Plan("blocks", "adam", 10, _compiled.TUNING["block_rows"], 1)
    assert plan(cyprop.SGD(0.1), _compiled.TUNING["min_blas_batch"]).path == "blocks"
    assert plan(cyprop.SGD(0.1), _compiled.TUNING["min_blas_batch"] - 1).path == "samples"


def test_without_blas_mini_batches_run_one_sample_at_a_time(without_blas):
    # (a kernel without products of its own: the AVX-512 one has them, below)
    baseline = _compiled.KERNELS["baseline"]
    assert not baseline.has_products()
    assert _compiled.plan(NET.arch, cyprop.SGD(0.1), 64, TrainingOptions(n_threads=2),
                          baseline) == _compiled.Plan("samples", "sgd", 64, 1, 2)
    assert _compiled.evaluation_plan(baseline).path == "samples"


def test_without_blas_the_own_products_run_the_mini_batches(without_blas):
    """Without SciPy, the AVX-512 kernel's own products take every shape of the blocks
    paths (README: how much faster than per sample), and agree with the reference."""
    if not CORE.has_own_products():
        pytest.skip("no kernel with its own products for this build or CPU")
    assert CORE.has_products() and not CORE.has_blas()
    assert plan(cyprop.SGD(0.1), 64, n_threads=2).path == "blocks"
    assert _compiled.evaluation_plan(CORE).path == "blocks"
    rng = np.random.default_rng(0)
    X, y = rng.random((300, 420)), rng.integers(0, 4, 300)
    for batch_size, optimizer, path in ((1, cyprop.SGD(0.1), "online-blocks"),
                                        (4, cyprop.SGD(0.1, momentum=0.9), "batch-blocks"),
                                        (32, cyprop.Adam(0.01), "blocks")):
        nets = [cyprop.Network([420, 40, 7, 4], seed=1, backend=backend)
                for backend in ("cython", "numpy")]
        assert _compiled.plan(nets[0].arch, optimizer, batch_size, TrainingOptions(),
                              n_samples=len(X)).path == path
        for net in nets:
            net.fit(X, y, epochs=2, batch_size=batch_size, optimizer=copy.deepcopy(optimizer),
                    seed=2, verbose=0)
        np.testing.assert_allclose(nets[0]._params, nets[1]._params, rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(nets[0].forward(X), nets[1].forward(X), rtol=1e-9,
                                   atol=1e-12)


def test_evaluation_plans():
    if not CORE.has_blas():
        pytest.skip("no BLAS (scipy) in this environment")
    chosen = _compiled.evaluation_plan(CORE, 2)
    assert chosen.path == "blocks" and chosen.rule is None and chosen.n_threads == 2
    assert chosen.block_rows == _compiled.TUNING["chunk_rows"]


def test_the_backend_runs_the_plan_it_names(monkeypatch):
    ran = []
    backend = _compiled.CompiledBackend()
    original = backend.core

    class Spy:
        def __getattr__(self, name):
            return getattr(original, name)

        def train_epoch(self, *args):
            ran.append(original.echo_plan(args[7]))
            return original.train_epoch(*args)

    monkeypatch.setattr(backend, "core", Spy())
    net = cyprop.Network([6, 5, 3], seed=0)
    net._impl = backend
    X, y = np.random.default_rng(0).normal(size=(20, 6)), np.arange(20) % 3
    optimizer = cyprop.RMSprop()
    net.fit(X, y, epochs=1, batch_size=1, optimizer=optimizer, verbose=0)
    expected = _compiled.plan(net.arch, optimizer, 1).struct(original)
    assert ran and all(r == expected for r in ran)
    assert original.PATHS[ran[0]["path"]] == "online-next"
    assert original.RULES[ran[0]["rule"]] == "rmsprop"


@pytest.mark.parametrize("instruction_set", _compiled.INSTRUCTION_SETS)
def test_the_core_reads_back_the_plan(instruction_set):
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    core = _compiled.KERNELS[instruction_set]
    for path in core.PATHS:
        for rule in (None, *core.RULES):
            given = dataclasses.replace(_compiled.Plan(path, rule), batch_size=7, block_rows=3,
                                        n_threads=2, part_work=11, max_parts=5)
            struct = given.struct(core)
            assert core.echo_plan(struct) == struct
    assert [f.name for f in dataclasses.fields(_compiled.Plan)] == list(struct)


# --------------------------------------------------------- plans the core refuses
def core_call(net, optimizer, plan, X, Y, **kwargs):
    """train_epoch on the chosen kernel with an explicit plan."""
    params = net._params
    state = kwargs.pop("state", optimizer.state_for(params))
    return CORE.train_epoch(net.arch.sizes_array, net.arch.activation_codes, net.arch.loss_code,
                            params, X, Y, np.arange(len(X), dtype=np.intp),
                            plan.struct(CORE), dataclasses.asdict(optimizer.hyper().core()), state,
                            optimizer.steps, **kwargs)


def problem(sizes=(6, 5, 3), n=12, dtype="float64", seed=0):
    net = cyprop.Network(list(sizes), seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0])).astype(dtype)
    Y = np.eye(sizes[-1], dtype=dtype)[rng.integers(0, sizes[-1], n)]
    return net, X, Y


@pytest.mark.parametrize("bad, optimizer, match", [
    (_compiled.Plan("online-next", "adam", 1), cyprop.Adam(), "hidden layers and no max-norm"),
    (_compiled.Plan("online", "adam", 3), cyprop.Adam(), "batch size 1"),
    (_compiled.Plan("samples", "sgd", 0), cyprop.SGD(0.1), "batch_size"),
    (_compiled.Plan("samples", "sgd", 3), cyprop.SGD(0.1, momentum=0.5), "no momentum"),
    (_compiled.Plan("blocks", "adam", 8, 0), cyprop.Adam(), "block_rows"),
], ids=["next-with-max-norm", "online-batch-3", "batch-0", "sgd-with-momentum", "no-rows"])
def test_the_core_refuses_a_plan_its_drivers_would_run_wrong(bad, optimizer, match):
    net, X, Y = problem()
    before = net._params.copy()
    with pytest.raises(ValueError, match=match):
        core_call(net, optimizer, bad, X, Y, max_norm=2.0)
    np.testing.assert_array_equal(net._params, before)


def test_the_core_refuses_too_few_rows_of_state():
    net, X, Y = problem()
    with pytest.raises(ValueError, match="2 rows of state"):
        core_call(net, cyprop.Adam(), _compiled.Plan("online", "adam", 1), X, Y,
                  state=np.zeros((1, net.n_params)))


def test_the_core_refuses_blocks_without_blas(without_blas, monkeypatch):
    # (a kernel without products of its own: the baseline)
    monkeypatch.setattr(sys.modules[__name__], "CORE", _compiled.KERNELS["baseline"])
    net, X, Y = problem()
    with pytest.raises(ValueError, match="needs BLAS"):
        core_call(net, cyprop.SGD(0.1), _compiled.Plan("blocks", "sgd", 8, 4), X, Y)
    with pytest.raises(ValueError, match="needs BLAS"):
        CORE.forward(net.arch.sizes_array, net.arch.activation_codes, net._params, X,
                     np.empty((len(X), 3)), _compiled.Plan("blocks", None, 0, 4).struct(CORE))


# ----------------------------------------------------------- the paths agree
RULES = {"sgd": cyprop.SGD(0.1, weight_decay=0.02),
         "momentum": cyprop.SGD(0.1, momentum=0.8, nesterov=True, weight_decay=0.02),
         "adam": cyprop.Adam(0.01, weight_decay=0.02),
         "rmsprop": cyprop.RMSprop(0.01, momentum=0.5, weight_decay=0.02),
         "adagrad": cyprop.Adagrad(0.05, weight_decay=0.02),
         "rprop": cyprop.Rprop(0.01)}


def trained_on_paths(instruction_set, paths, optimizer, dtype, seed):
    """Parameters and state after one call on each of ``paths`` (batch size 1)."""
    if instruction_set not in _compiled.KERNELS:
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    core = _compiled.KERNELS[instruction_set]
    runs = []
    for path in paths:
        net, X, Y = problem(sizes=(40, 19, 17, 3), n=30, dtype=dtype, seed=seed)
        fresh = type(optimizer)(**optimizer.get_config())
        rule = _compiled._rule(fresh, core)
        state = fresh.state_for(net._params)
        chosen = _compiled.Plan(path, rule, 1, 1, 1).struct(core)
        _, _, steps = core.train_epoch(
            net.arch.sizes_array, net.arch.activation_codes, net.arch.loss_code, net._params,
            X, Y, np.arange(len(X), dtype=np.intp), chosen, dataclasses.asdict(fresh.hyper().core()),
            state, 0)
        assert steps == len(X)
        runs.append(np.concatenate([net._params, state.ravel()]))
    return runs


def assert_same_steps(runs, instruction_set, dtype, assert_parity):
    """Bit for bit on the portable kernel; where the compiler contracts multiply-adds
    (avx2, avx512), a product may round once instead of twice, differently in the two
    loops, and the runs then agree to the parity tolerance."""
    for other in runs[1:]:
        if instruction_set == "baseline":
            np.testing.assert_array_equal(other, runs[0])
        else:
            assert_parity(other, runs[0], dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("instruction_set", _compiled.INSTRUCTION_SETS)
def test_a_fused_online_step_is_the_step_of_the_samples_gradient(instruction_set, rule, dtype,
                                                                 assert_parity):
    """The same rule formula on three paths: inside the backward pass (online), there
    with the first layer's step beside the next forward pass (online-next), and after
    the backward pass, from the gradient sum of a batch of one (samples)."""
    runs = trained_on_paths(instruction_set, ("online-next", "online", "samples"), RULES[rule],
                            dtype, seed=4)
    assert_same_steps(runs, instruction_set, dtype, assert_parity)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("instruction_set", _compiled.INSTRUCTION_SETS)
def test_plain_sgd_is_the_same_on_its_three_online_paths(instruction_set, dtype, assert_parity):
    next_, online, samples = trained_on_paths(
        instruction_set, ("online-next", "online", "samples"), cyprop.SGD(0.2), dtype, seed=5)
    assert_same_steps([next_, online], instruction_set, dtype, assert_parity)
    # Online, plain SGD steps a weight by (lr * d_j) * a_i, one multiply-add per weight;
    # from a gradient sum it is lr * (d_j * a_i): the two round differently.
    assert_parity(samples, online, dtype)


# ------------------------------------------------ the blocks path's first-layer step
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("batch_size", [16, 32, 45], ids=lambda b: f"bs{b}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("instruction_set", _compiled.INSTRUCTION_SETS)
def test_plain_sgd_steps_a_batch_of_one_block_in_its_gradient_product(
        instruction_set, dtype, batch_size, weight_decay, assert_parity):
    """A batch that is one block (16 or 32 rows, and the shorter last batches) steps W_0
    in its gradient product, W_0 = (1 - lr wd) W_0 - (lr / rows) D.T @ X: through the
    BLAS's alpha and beta under 24 rows, the AVX-512 kernel's own epilogue from 24 on.
    A batch of two blocks (45 rows) steps from the gradient sums.  Either way the
    reference's training, parameters, state, losses."""
    from conftest import assert_same_training, train_on_both_backends
    if not CORE.has_blas():
        pytest.skip("no BLAS (scipy) in this environment")
    sizes = [70, 33, 10]
    arch = cyprop.Network(sizes, seed=0).arch
    assert _compiled.blocks_path_rows(arch, CORE) == 32   # 16 and 32: one block, 45: two
    nets, optimizers = train_on_both_backends(
        sizes, ("sigmoid", "softmax", "cross_entropy"), dtype,
        cyprop.SGD(0.3, weight_decay=weight_decay), batch_size, "blocks", n=90,
        instruction_set=instruction_set)
    assert_same_training(nets, optimizers, dtype, assert_parity)


class OwnProducts:
    """A core whose blocks paths run the own products (the AVX-512 build's), or not."""

    def __init__(self, own):
        self.own = own

    def has_own_products(self):
        return self.own


def test_large_first_layers_take_blocks_as_large_as_the_cache_holds(monkeypatch):
    """With the own products, up to block_rows_max rows per block where the first layer
    has large_block_weights weights or more and the block's inputs fit beside them in
    3/4 of L2 (in float64); through the BLAS, block_rows."""
    def rows(sizes, own=True):
        return _compiled.blocks_path_rows(cyprop.Network(sizes, seed=0).arch, OwnProducts(own))

    monkeypatch.setattr(_compiled, "BLOCKS_WITHIN_LEVEL2", True)   # Intel
    monkeypatch.setattr(_compiled, "LEVEL2_CACHE", 2 << 20)   # Sapphire Rapids
    assert [rows([784, 100, 10]), rows([784, 30, 10]), rows([784, 256, 10])] == [128, 128, 32]
    assert rows([64, 32, 10]) == _compiled.TUNING["block_rows"]   # W1: too small to gain
    assert rows([784, 100, 10], own=False) == _compiled.TUNING["block_rows"]
    monkeypatch.setattr(_compiled, "LEVEL2_CACHE", 1 << 20)   # an Intel with 1 MiB
    assert [rows([784, 100, 10]), rows([784, 30, 10])] == [32, 64]
    monkeypatch.setattr(_compiled, "BLOCKS_WITHIN_LEVEL2", False)   # AMD (Zen 4: 1 MiB)
    assert [rows([784, 100, 10]), rows([784, 512, 10])] == [128, 128]
    assert rows([64, 32, 10]) == _compiled.TUNING["block_rows"]
    assert rows([784, 512, 10], own=False) == _compiled.TUNING["block_rows"]
    monkeypatch.setattr(_compiled, "BLOCKS_WITHIN_LEVEL2", True)
    # the plan carries them
    W3 = cyprop.Network([784, 100, 10], seed=0).arch
    if CORE.has_blas() and CORE.has_own_products():
        assert _compiled.plan(W3, cyprop.Adam(), 200).block_rows == 32
        monkeypatch.setattr(_compiled, "LEVEL2_CACHE", 2 << 20)
        assert _compiled.plan(W3, cyprop.Adam(), 200).block_rows == 128


def test_the_level2_cache_size_is_read_or_assumed():
    assert _compiled._level2_cache_bytes() >= 256 << 10


def test_the_cpu_vendor_is_read_from_the_cpu():
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    listed = cpuinfo.read_text() if cpuinfo.exists() else ""
    vendor = CORE.cpu_vendor()
    assert vendor in ("amd", "intel", "other")
    if "AuthenticAMD" in listed:
        assert vendor == "amd" and not _compiled.BLOCKS_WITHIN_LEVEL2
    elif "GenuineIntel" in listed:
        assert vendor == "intel" and _compiled.BLOCKS_WITHIN_LEVEL2
