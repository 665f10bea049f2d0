"""The compiled core's optimizer rules read what Python gives them, and step as the
NumPy reference does.

* The C struct ``Hyper`` and the dataclass ``cyprop.optimizers.Hyper`` have the same
  fields, in the same order, and the core reads back every value it is given.
* The optimizer codes, the rows of state and the fields each optimizer's rules read
  are the same in the core's tables and in the optimizer classes.
* Each rule, applied to a vector of parameters by ``py_rule_step`` (the formula the
  kernels inline into their loops), takes the step of the optimizer's NumPy
  ``update_params``, in every kernel: a failure here points at one formula.
* So does each rule applied to a row of weights by ``py_rule_row``, as the per-sample
  backward pass steps them: on AVX-512, Adam's, RMSprop's and Adagrad's rows go through
  csrc/cyprop_approx.h, whose 1 / (sqrt(v) + eps) is no longer correctly rounded; their
  steps stay within 6u (u = 2^-53 in float64, 2^-24 in float32) of the true quotient,
  elementwise, from v = 0 through the subnormals to near the largest number, with and
  without subnormals flushed, and special values give the exact formula's results.
"""

import dataclasses

import numpy as np
import pytest

import cyprop
from cyprop import _compiled
from cyprop._architecture import Architecture
from cyprop.optimizers import OPTIMIZERS, Hyper, OptimizerHyper

ISAS = ("baseline", "avx2", "avx512")
# float32: the kernels step in float32, NumPy forms Adam's bias corrections in float64
RTOL = {"float64": 1e-12, "float32": 1e-4}

# Every option of every optimizer, each set away from its default and from 0, so that a
# field read from the wrong place shows.
EVERY_OPTION = {
    "SGD": dict(learning_rate=0.3, momentum=0.7, nesterov=True, weight_decay=0.05),
    "Adam": dict(learning_rate=0.02, beta1=0.8, beta2=0.95, eps=1e-3, weight_decay=0.05),
    "RMSprop": dict(learning_rate=0.01, alpha=0.9, eps=1e-3, momentum=0.6, weight_decay=0.05),
    "Adagrad": dict(learning_rate=0.05, eps=1e-3, weight_decay=0.05),
    "Rprop": dict(learning_rate=0.02, etas=(0.3, 1.5), step_sizes=(0.005, 0.03)),
}
# Configurations for the step formulas: the defaults and every option.
CONFIGS = {**{f"{name}-defaults": (name, {}) for name in OPTIMIZERS},
           **{f"{name}-every-option": (name, kw) for name, kw in EVERY_OPTION.items()},
           "SGD-plain-decay": ("SGD", dict(learning_rate=0.3, weight_decay=0.05)),
           "RMSprop-no-momentum": ("RMSprop", dict(learning_rate=0.01, weight_decay=0.05))}


def kernel(instruction_set):
    if instruction_set not in _compiled.KERNELS:
        assert instruction_set != "baseline", "the portable kernel must always be there"
        pytest.skip(f"no {instruction_set} kernel for this build or CPU")
    return _compiled.KERNELS[instruction_set]


# ---------------------------------------------------------------- the hyper-parameters
@pytest.mark.parametrize("instruction_set", ISAS)
def test_the_core_reads_back_every_field_of_hyper(instruction_set):
    core = kernel(instruction_set)
    fields = [f.name for f in dataclasses.fields(Hyper)]
    given = {name: 1.5 + i for i, name in enumerate(fields)}
    given["nesterov"] = True
    echoed = core.echo_hyper(given)
    assert list(echoed) == fields                 # the same fields, in the same order
    for name in fields:
        assert echoed[name] == given[name], name
    # a field the struct lacks would go unread: none may be missing either way
    with pytest.raises(ValueError, match="learning_rate"):
        core.echo_hyper({k: v for k, v in given.items() if k != "learning_rate"})


def test_hyper_defaults_are_zero():
    assert all(not getattr(Hyper(), f.name) for f in dataclasses.fields(Hyper))


@pytest.mark.parametrize("instruction_set", ISAS)
def test_optimizer_codes_and_state_rows_are_the_cores(instruction_set):
    core = kernel(instruction_set)
    assert tuple(core.OPTIMIZERS) == tuple(OPTIMIZERS)
    for name, cls in OPTIMIZERS.items():
        assert core.OPTIMIZERS[cls.code] == name
        for kwargs in ({}, EVERY_OPTION[name]):   # SGD: plain, and with momentum
            assert core.STATE_ROWS[_compiled._rule(cls(**kwargs), core)] == cls.n_slots, name
    assert len({cls.code for cls in OPTIMIZERS.values()}) == len(OPTIMIZERS)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_each_optimizer_fills_exactly_the_fields_its_rules_read(name):
    core = _compiled.KERNELS["baseline"]
    optimizer = OPTIMIZERS[name](**EVERY_OPTION[name])
    own = optimizer.hyper()   # the optimizer's own dataclass: exactly its rules' fields
    assert isinstance(own, OptimizerHyper) and type(own).__name__ == f"{name}Hyper"
    assert tuple(f.name for f in dataclasses.fields(own)) == core.HYPER_FIELDS[name]
    hyper = own.core()        # the core's view: those fields set, the others 0
    assert isinstance(hyper, Hyper)
    filled = {f.name for f in dataclasses.fields(Hyper) if getattr(hyper, f.name)}
    assert filled == set(core.HYPER_FIELDS[name])
    assert core.echo_hyper(dataclasses.asdict(hyper)) == dataclasses.asdict(hyper)
    config = optimizer.get_config()
    expected = dict(config)
    if name == "Rprop":
        expected = {"learning_rate": config["learning_rate"],
                    "eta_minus": config["etas"][0], "eta_plus": config["etas"][1],
                    "step_min": config["step_sizes"][0], "step_max": config["step_sizes"][1]}
    for field, value in expected.items():
        assert getattr(hyper, field) == value, field


def test_hyper_parameters_changed_by_hand_reach_the_core():
    optimizer = cyprop.Adam()
    optimizer.beta1 = 0.5
    optimizer.learning_rate = 0.25
    echoed = _compiled.KERNELS["baseline"].echo_hyper(dataclasses.asdict(optimizer.hyper().core()))
    assert echoed["beta1"] == 0.5 and echoed["learning_rate"] == 0.25


def test_the_rule_of_each_optimizer():
    core = _compiled.KERNELS["baseline"]
    expected = {cyprop.SGD(0.1): "sgd", cyprop.SGD(0.1, momentum=0.5): "momentum",
                cyprop.SGD(0.1, momentum=0.5, nesterov=True): "momentum",
                cyprop.Adam(): "adam", cyprop.RMSprop(): "rmsprop",
                cyprop.RMSprop(momentum=0.5): "rmsprop", cyprop.Adagrad(): "adagrad",
                cyprop.Rprop(): "rprop"}
    for optimizer, rule in expected.items():
        assert _compiled._rule(optimizer, core) == rule
        assert rule in core.RULES


# -------------------------------------------------------------------- the formulas
def numpy_steps(config, params, grads):
    """The optimizer's NumPy update_params over the gradients in turn, on a one-layer
    architecture whose flat vector is (weights, biases): (parameters, state) after each."""
    name, kwargs = CONFIGS[config]
    optimizer = OPTIMIZERS[name](**kwargs)
    n_w = 12
    arch = Architecture([4, 3], ["identity"], "mse")
    assert arch.n_params == n_w + 3 == params.shape[0]
    params = params.copy()
    out = []
    for grad in grads:
        optimizer.update_params(params, grad, arch)
        out.append((params.copy(), optimizer.state.copy()))
    return out, optimizer, n_w


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("instruction_set", ISAS)
def test_each_rule_takes_the_step_of_update_params(instruction_set, config, dtype):
    core = kernel(instruction_set)
    rng = np.random.default_rng(3)
    params = rng.normal(size=15).astype(dtype)
    # gradients that keep and flip their signs (Rprop's branches), and a zero
    grads = [rng.normal(size=15).astype(dtype) for _ in range(4)]
    grads[2][:5] = -grads[1][:5]
    grads[3][7] = 0
    expected, optimizer, n_w = numpy_steps(config, params, grads)
    rule = _compiled._rule(optimizer, core)
    hyper = dataclasses.asdict(optimizer.hyper().core())
    # weights (with weight decay) and biases (without) as the kernels step them
    parts = [(slice(0, n_w), True), (slice(n_w, 15), False)]
    p = params.copy()
    states = [np.zeros((2, part.stop - part.start), dtype=dtype) for part, _ in parts]
    for step, grad in enumerate(grads):
        for (part, decay), state in zip(parts, states):
            piece = np.ascontiguousarray(p[part])
            core.py_rule_step(rule, hyper, step, piece, np.ascontiguousarray(grad[part]),
                              state, decay)
            p[part] = piece
        want_p, want_state = expected[step]
        np.testing.assert_allclose(p, want_p, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3,
                                   err_msg=f"{config}: parameters after step {step + 1}")
        for row in range(optimizer.n_slots):
            got = np.concatenate([state[row] for state in states])
            np.testing.assert_allclose(got, want_state[row], rtol=RTOL[dtype],
                                       atol=RTOL[dtype] * 1e-3,
                                       err_msg=f"{config}: state row {row}, step {step + 1}")


@pytest.mark.parametrize("batch_size", [1, 8])
def test_step_counts_past_32_bits_train_as_the_reference(batch_size):
    """A long-running stream passes 2**31 optimizer steps (hours of one-sample calls):
    the core counts them in 64 bits on every platform (C's long is 32 bits on Windows),
    on the per-sample, mini-batch and one-sample paths."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(16, 5)), rng.integers(0, 3, 16)
    nets = {}
    for backend in ("cython", "numpy"):
        net = cyprop.Network([5, 4, 3], seed=0, backend=backend)
        net.partial_fit(X[:1], y[:1], optimizer=cyprop.Adam(0.01))
        net.optimizer.steps = 2 ** 31 + 7
        net.partial_fit(X, y, batch_size=batch_size, shuffle=False)
        net.partial_fit(X[0], y[0])   # one sample: FewRows.step on the core
        nets[backend] = net
    expected = 2 ** 31 + 7 + 16 // batch_size + 1
    assert nets["cython"].optimizer.steps == nets["numpy"].optimizer.steps == expected
    np.testing.assert_allclose(nets["cython"]._params, nets["numpy"]._params,
                               rtol=1e-9, atol=1e-12)   # conftest's float64 tolerances


# ---------------------------------------------------------------- the rows of weights
def numpy_row_steps(config, weights, grads):
    """update_params over the gradients in turn on a row of weights (a one-layer
    architecture with one output; its bias gets no gradient): (weights, state) after
    each."""
    name, kwargs = CONFIGS[config]
    optimizer = OPTIMIZERS[name](**kwargs)
    n = weights.shape[0]
    arch = Architecture([n, 1], ["identity"], "mse")
    params = np.append(weights, 0).astype(weights.dtype)
    out = []
    for grad in grads:
        optimizer.update_params(params, np.append(grad, 0).astype(weights.dtype), arch)
        out.append((params[:n].copy(), optimizer.state[:, :n].copy()))
    return out, optimizer


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("instruction_set", ISAS)
def test_each_rule_steps_a_row_of_weights_as_update_params(instruction_set, config, dtype):
    # 37 weights: two blocks of 16 (vectors of 8 or 16 lanes) and a rest of 5, masked;
    # inputs of 0 (a weight that never moves, whose v stays 0)
    core = kernel(instruction_set)
    rng = np.random.default_rng(4)
    n = 37
    weights = rng.normal(size=n).astype(dtype)
    inputs = [rng.normal(size=n).astype(dtype) for _ in range(4)]
    for x in inputs:
        x[::6] = 0
    inputs[2][:5] = -inputs[1][:5]   # (Rprop's sign flips)
    dj = [0.7, -1.3, 0.4, 2.0]
    expected, optimizer = numpy_row_steps(config, weights,
                                          [(np.asarray(d, dtype) * x) for d, x in zip(dj, inputs)])
    rule = _compiled._rule(optimizer, core)
    hyper = dataclasses.asdict(optimizer.hyper().core())
    w, state = weights.copy(), np.zeros((2, n), dtype)
    for step, (d, x) in enumerate(zip(dj, inputs)):
        x_next = inputs[(step + 1) % 4]
        # the fused first layer's forward pass: the stepped row's dot with the next input
        total = core.py_rule_row(rule, hyper, step, w, x, d, state, next_inputs=x_next)
        np.testing.assert_allclose(total, w.astype("float64") @ x_next, rtol=RTOL[dtype] * 10,
                                   atol=RTOL[dtype] * 1e-3)
        want_w, want_state = expected[step]
        np.testing.assert_allclose(w, want_w, rtol=RTOL[dtype], atol=RTOL[dtype] * 1e-3,
                                   err_msg=f"{config}: weights after step {step + 1}")
        for row in range(optimizer.n_slots):
            np.testing.assert_allclose(state[row], want_state[row], rtol=RTOL[dtype],
                                       atol=RTOL[dtype] * 1e-3,
                                       err_msg=f"{config}: state row {row}, step {step + 1}")


# The rules' quotients num / (sqrt(v) + eps), read off a row of weights at 0 stepped with
# learning rate 1 and no weight decay, so that a weight's new value is minus its
# quotient, rounded once: Adam's num is its new m (step t = 10**7: its bias corrections
# are 1), RMSprop's and Adagrad's the gradient, dj * x with dj = 1.
QUOTIENT_RULES = {
    "adam": ("Adam", dict(learning_rate=1.0, beta1=0.9, beta2=0.999)),
    "rmsprop": ("RMSprop", dict(learning_rate=1.0, alpha=0.99)),
    "adagrad": ("Adagrad", dict(learning_rate=1.0)),
}
UNIT = {"float64": 2.0 ** -53, "float32": 2.0 ** -24}


def wide_range(dtype, n, rng):
    """v from 0 through the subnormals to near the largest number, and gradients from
    subnormal to 1 in size, of both signs (some 0)."""
    info = np.finfo(dtype)
    low, high = int(np.log2(info.smallest_subnormal)), info.maxexp - 4
    v = np.ldexp(1 + rng.random(n), rng.integers(low, high, n))
    v[::5] = 0
    v[1:9] = [info.smallest_subnormal, 3 * info.smallest_subnormal, info.smallest_normal,
              info.smallest_normal / 2, 1, info.max / 16, info.tiny * 2 ** 30, 0.25]
    g = np.ldexp(rng.random(n) - 0.5, rng.integers(low // 2, 1, n))
    g[::7] = 0
    g[5::11] = info.smallest_subnormal * rng.integers(1, 9, len(g[5::11]))
    return v.astype(dtype), g.astype(dtype)


@pytest.mark.parametrize("flush", [False, True], ids=["subnormals", "flushed"])
@pytest.mark.parametrize("eps", [1e-8, 1e-30, 0.5])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule", QUOTIENT_RULES)
@pytest.mark.parametrize("instruction_set", ISAS)
def test_the_rows_quotients_are_within_6u_of_the_true_ones(instruction_set, rule, dtype,
                                                           eps, flush):
    core = kernel(instruction_set)
    if dtype == "float64" and np.finfo(np.longdouble).nmant < 63:
        pytest.skip("no extended precision to hold the true quotients")
    wide = np.longdouble if dtype == "float64" else np.float64
    name, kwargs = QUOTIENT_RULES[rule]
    optimizer = OPTIMIZERS[name](eps=eps, **kwargs)
    hyper = dataclasses.asdict(optimizer.hyper().core())
    rng = np.random.default_rng(5)
    n = 4099
    v, g = wide_range(dtype, n, rng)
    m = np.ldexp(rng.normal(size=n), rng.integers(-60, 1, n)).astype(dtype)
    state = np.stack([m, v]) if rule == "adam" else np.stack([v, np.zeros(n, dtype)])
    weights = np.zeros(n, dtype)
    core.py_rule_row(_compiled._rule(optimizer, core), hyper, 10**7, weights, g, 1.0, state,
                     flush)
    tiny = np.finfo(dtype).smallest_normal if flush else np.finfo(dtype).smallest_subnormal
    if flush:   # inputs below the smallest normal number read as 0
        g = np.where(np.abs(g) < tiny, 0, g).astype(dtype)
    num = state[0] if rule == "adam" else g
    v_new = state[1] if rule == "adam" else state[0]
    assert np.all(np.isfinite(v_new)) and np.all(v_new >= 0)
    subnormal = np.sum((v_new > 0) & (v_new < np.finfo(dtype).smallest_normal))
    assert np.sum(v_new == 0) > 100 and (subnormal == 0 if flush else subnormal > 50)
    true = num.astype(wide) / (np.sqrt(v_new.astype(wide)) + wide(np.asarray(eps, dtype)))
    error = np.abs(-weights.astype(wide) - true)
    bound = 6 * UNIT[dtype] * np.abs(true) + tiny
    worst = np.argmax(error / bound)
    assert np.all(error <= bound), (
        f"num {num[worst]!r}, v {v_new[worst]!r}: got {-weights[worst]!r}, true {true[worst]!r}"
        f" ({float(error[worst] / np.abs(true[worst]) / UNIT[dtype]):.2f}u)")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule", QUOTIENT_RULES)
@pytest.mark.parametrize("instruction_set", ISAS)
def test_special_values_step_a_row_as_the_exact_formula(instruction_set, rule, dtype):
    # NaN, infinite, negative and -0 buffers beside ordinary ones in the same vectors;
    # then an eps outside the kernels' range (cyprop_approx.h), subnormal or huge.  An
    # infinite v steps nothing, NaN stays NaN, the rest within the bound of the rows.
    core = kernel(instruction_set)
    name, kwargs = QUOTIENT_RULES[rule]
    specials = np.array([np.inf, np.nan, -1.0, -0.0, 0.0, 2.0, 1e-3, np.inf, -np.inf, 0.5,
                         -0.0, 4.0, 1e-6, 0.0, 3.0, np.nan, 0.25, 1.0, 9.0], dtype)
    n = specials.shape[0]
    g = np.linspace(-1, 1, n).astype(dtype)
    tiny = float(np.finfo(dtype).smallest_subnormal)
    for eps, v in [(1e-8, specials), (tiny * 4, np.abs(specials)), (1e30, np.abs(specials))]:
        optimizer = OPTIMIZERS[name](eps=eps, **kwargs)
        state = np.stack([np.full(n, 0.5, dtype), v]) if rule == "adam" else np.stack(
            [v, np.zeros(n, dtype)])
        weights = np.zeros(n, dtype)
        core.py_rule_row(_compiled._rule(optimizer, core), dataclasses.asdict(optimizer.hyper().core()),
                         10**7, weights, g, 1.0, state)
        num = state[0] if rule == "adam" else g
        v_new = state[1] if rule == "adam" else state[0]
        with np.errstate(all="ignore"):   # the exact formula in the dtype's arithmetic
            expected = num / (np.sqrt(v_new) + np.asarray(eps, dtype))
        np.testing.assert_allclose(-weights, expected, rtol=9 * UNIT[dtype], atol=0,
                                   equal_nan=True, err_msg=f"eps {eps}")
        assert np.all(weights[np.isposinf(v_new)] == 0)
