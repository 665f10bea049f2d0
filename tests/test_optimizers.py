"""Optimizers: SGD, Adam, RMSprop, Adagrad and Rprop follow the torch.optim formulas.

Every optimizer is checked twice, on both backends and both dtypes:

* against the update formulas written out below, in NumPy, with a hand-written
  forward and backward pass (nothing here calls cyprop's own maths), and
* against torch.optim itself, on the same network built from torch.nn.Linear layers.

Weight decay acts on weights only, never on biases (torch applies it to every
parameter of a group, so the torch twin puts the biases in a group of their own with
weight_decay=0).  The samples are fed in a fixed order (shuffle=False), so each
optimizer step sees the same batch in cyprop, in the reference and in torch.
"""

import numpy as np
import pytest

import cyprop

BACKENDS = ("cython", "numpy")
DTYPES = ("float64", "float32")
# float64: a few steps of the same formulas agree to rounding; float32 runs are compared
# with float64 formulas (rtol 1e-4), and with torch in float32.
RTOL = {"float64": 1e-9, "float32": 1e-4}
ATOL = {"float64": 1e-12, "float32": 1e-5}

SIZES = [3, 5, 4, 3]
ACTIVATION = ["tanh", "sigmoid"]      # per hidden layer; softmax + cross-entropy output
N = 12
EPOCHS = 3
# 1: online (the compiled core fuses backprop and a plain SGD update); 3: per-sample
# loops; 5: matrix products with a short last batch (5, 5, 2); 12: the full batch.
BATCH_SIZES = (1, 3, 5, 12)

# (cyprop class name, keyword arguments): every option of every optimizer at least once,
# with moderate rates (see test_parity.py on why).
CONFIGS = {
    "sgd": ("SGD", dict(learning_rate=0.1)),
    "sgd-decay": ("SGD", dict(learning_rate=0.1, weight_decay=0.05)),
    "sgd-momentum": ("SGD", dict(learning_rate=0.05, momentum=0.9)),
    "sgd-nesterov-decay": ("SGD", dict(learning_rate=0.05, momentum=0.8, nesterov=True,
                                       weight_decay=0.02)),
    "adam": ("Adam", dict(learning_rate=0.01)),
    "adam-all": ("Adam", dict(learning_rate=0.02, beta1=0.8, beta2=0.95, eps=1e-6,
                              weight_decay=0.05)),
    "rmsprop": ("RMSprop", dict(learning_rate=0.005)),
    "rmsprop-all": ("RMSprop", dict(learning_rate=0.005, alpha=0.9, eps=1e-6, momentum=0.7,
                                    weight_decay=0.05)),
    "adagrad": ("Adagrad", dict(learning_rate=0.05)),
    "adagrad-all": ("Adagrad", dict(learning_rate=0.05, eps=1e-6, weight_decay=0.05)),
    "rprop": ("Rprop", dict(learning_rate=0.05)),
    # a small maximum step and a large minimum one: the clamps act
    "rprop-clamped": ("Rprop", dict(learning_rate=0.02, etas=(0.3, 1.5),
                                    step_sizes=(0.005, 0.03))),
}


def make_optimizer(config):
    name, kwargs = CONFIGS[config]
    return getattr(cyprop, name)(**kwargs)


def problem(dtype="float64", backend="numpy", seed=0, sizes=SIZES, n=N):
    """A small network with two different hidden activations, and its data."""
    net = cyprop.Network(sizes, activation=ACTIVATION, dtype=dtype, backend=backend, seed=seed)
    rng = np.random.default_rng(42)
    X = rng.normal(size=(n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    return net, X, labels


def parameters(net):
    """[W0, b0, W1, b1, ...] as float64 copies."""
    return [np.array(p, dtype=np.float64) for pair in zip(net.weights, net.biases)
            for p in pair]


def batches(n, batch_size):
    return [np.arange(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def assert_close(actual, desired, dtype, what=""):
    for i, (a, d) in enumerate(zip(actual, desired)):
        np.testing.assert_allclose(a, d, rtol=RTOL[dtype], atol=ATOL[dtype],
                                   err_msg=f"{what} parameter {i}")


# ------------------------------------------------------------- the reference, in NumPy
ACT = {"tanh": (np.tanh, lambda a: 1 - a * a),
       "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a))}


def reference_gradient(params, X, Y):
    """Gradient of the mean softmax cross-entropy; params as from ``parameters``."""
    Ws, bs = params[0::2], params[1::2]
    hidden = [X]
    for W, b, act in zip(Ws[:-1], bs[:-1], ACTIVATION):
        hidden.append(ACT[act][0](hidden[-1] @ W.T + b))
    z = hidden[-1] @ Ws[-1].T + bs[-1]
    a = np.exp(z - z.max(axis=1, keepdims=True))
    a /= a.sum(axis=1, keepdims=True)
    delta = (a - Y) / X.shape[0]              # d(mean loss)/dz for softmax + cross-entropy
    grads = []
    for l in range(len(Ws) - 1, -1, -1):
        grads[:0] = [delta.T @ hidden[l], delta.sum(axis=0)]
        if l > 0:
            delta = (delta @ Ws[l]) * ACT[ACTIVATION[l - 1]][1](hidden[l])
    return grads


def reference_step(name, hp, p, g, s, t, is_weight):
    """One step of optimizer ``name`` on parameter p with gradient g; s is the state of p
    (a dict), t the step number from 1.  Returns the new p.  The formulas of the
    torch.optim documentation, weight decay on weights only."""
    lr = hp["learning_rate"]
    wd = hp.get("weight_decay", 0.0) if is_weight else 0.0
    g = g + wd * p
    if name == "SGD":
        mu = hp.get("momentum", 0.0)
        if mu:
            s["buf"] = g.copy() if t == 1 else mu * s["buf"] + g
            g = g + mu * s["buf"] if hp.get("nesterov") else s["buf"]
        return p - lr * g
    if name == "Adam":
        b1, b2, eps = hp.get("beta1", 0.9), hp.get("beta2", 0.999), hp.get("eps", 1e-8)
        s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
        s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
        m_hat = s["m"] / (1 - b1 ** t)
        v_hat = s["v"] / (1 - b2 ** t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)
    if name == "RMSprop":
        alpha, eps, mu = hp.get("alpha", 0.99), hp.get("eps", 1e-8), hp.get("momentum", 0.0)
        s["v"] = alpha * s.get("v", 0) + (1 - alpha) * g * g
        step = g / (np.sqrt(s["v"]) + eps)
        if mu:
            s["buf"] = mu * s.get("buf", 0) + step
            step = s["buf"]
        return p - lr * step
    if name == "Adagrad":
        s["sum"] = s.get("sum", 0) + g * g
        return p - lr * g / (np.sqrt(s["sum"]) + hp.get("eps", 1e-10))
    if name == "Rprop":
        eta_minus, eta_plus = hp.get("etas", (0.5, 1.2))
        step_min, step_max = hp.get("step_sizes", (1e-6, 50))
        prev = s.get("prev", np.zeros_like(p))
        size = s.get("size", np.full_like(p, lr))
        product = g * prev
        size = np.clip(np.where(product > 0, size * eta_plus,
                                np.where(product < 0, size * eta_minus, size)),
                       step_min, step_max)
        g = np.where(product < 0, 0.0, g)      # iRPROP-: a flip moves nothing, forgets g
        s["flips"] = s.get("flips", 0) + int(np.count_nonzero(product < 0))
        s["prev"], s["size"] = g, size
        return p - size * np.sign(g)
    raise AssertionError(name)


def reference_training(config, params, X, labels, batch_size, epochs=EPOCHS):
    name, hp = CONFIGS[config]
    Y = np.eye(SIZES[-1])[labels]
    states = [{} for _ in params]
    t = 0
    for _ in range(epochs):
        for batch in batches(len(X), batch_size):
            t += 1
            grads = reference_gradient(params, X[batch], Y[batch])
            params = [reference_step(name, hp, p, g, s, t, is_weight=i % 2 == 0)
                      for i, (p, g, s) in enumerate(zip(params, grads, states))]
    return params, states


def test_reference_gradient_is_right():
    # The test's own backprop against central differences, so that the trajectory
    # tests below rest on nothing of cyprop's.
    net, X, labels = problem()
    Y = np.eye(SIZES[-1])[labels]
    params = parameters(net)

    def loss(ps):
        Ws, bs = ps[0::2], ps[1::2]
        a = X
        for W, b, act in zip(Ws[:-1], bs[:-1], ACTIVATION):
            a = ACT[act][0](a @ W.T + b)
        z = a @ Ws[-1].T + bs[-1]
        z = z - z.max(axis=1, keepdims=True)
        return -np.mean(np.sum(Y * (z - np.log(np.exp(z).sum(axis=1, keepdims=True))), 1))

    for p, g in zip(params, reference_gradient(params, X, Y)):
        numeric = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + 1e-6
            up = loss(params)
            p[i] = old - 1e-6
            numeric[i] = (up - loss(params)) / 2e-6
            p[i] = old
        np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------- against the formulas
@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_trajectory_matches_the_formulas(backend, dtype, config, batch_size):
    net, X, labels = problem(dtype, backend)
    expected, states = reference_training(config, parameters(net), X, labels, batch_size)
    optimizer = make_optimizer(config)
    net.fit(X, labels, epochs=EPOCHS, batch_size=batch_size, optimizer=optimizer,
            shuffle=False, verbose=0)
    assert_close(parameters(net), expected, dtype, config)
    assert optimizer.steps == EPOCHS * len(batches(N, batch_size))
    if config == "rprop" and batch_size == N and dtype == "float64":
        # the sign-flip branch of iRPROP- was taken, so the comparison covered it
        assert sum(s.get("flips", 0) for s in states) > 0


# ------------------------------------------------------------------ against torch
TORCH_NAMES = {"learning_rate": "lr"}


def torch_optimizer(torch, config, weights, biases):
    name, hp = CONFIGS[config]
    kwargs = {TORCH_NAMES.get(k, k): v for k, v in hp.items()}
    if name == "Adam":
        kwargs["betas"] = (kwargs.pop("beta1", 0.9), kwargs.pop("beta2", 0.999))
    if name == "Rprop":
        return torch.optim.Rprop(weights + biases, **kwargs)
    wd = kwargs.pop("weight_decay", 0.0)
    groups = [{"params": weights, "weight_decay": wd}, {"params": biases, "weight_decay": 0.0}]
    return getattr(torch.optim, name)(groups, **kwargs)


def torch_training(torch, config, net, X, labels, batch_size, dtype):
    # Tiny tensors: torch's worker threads only cost time on a busy machine.
    torch.set_num_threads(1)
    tdtype = getattr(torch, dtype)
    layers = []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(W.shape[1], W.shape[0]).to(tdtype)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(np.array(W)))
            linear.bias.copy_(torch.from_numpy(np.array(b)))
        layers.append(linear)
        if l < len(ACTIVATION):
            layers.append(torch.nn.Tanh() if ACTIVATION[l] == "tanh" else torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    optimizer = torch_optimizer(torch, config, [m.weight for m in linears],
                                [m.bias for m in linears])
    Xt = torch.from_numpy(X.astype(dtype))
    yt = torch.from_numpy(labels)
    for _ in range(EPOCHS):
        for batch in batches(len(X), batch_size):
            optimizer.zero_grad()
            # mean cross-entropy over the batch, as cyprop's batch-mean gradient
            torch.nn.functional.cross_entropy(model(Xt[batch]), yt[batch]).backward()
            optimizer.step()
    return [p.detach().numpy().astype(np.float64) for m in linears for p in (m.weight, m.bias)]


@pytest.mark.parametrize("batch_size", (1, 5, 12))
@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_trajectory_matches_torch(backend, dtype, config, batch_size):
    torch = pytest.importorskip("torch")
    net, X, labels = problem(dtype, backend)
    expected = torch_training(torch, config, net, X, labels, batch_size, dtype)
    net.fit(X, labels, epochs=EPOCHS, batch_size=batch_size, optimizer=make_optimizer(config),
            shuffle=False, verbose=0)
    assert_close(parameters(net), expected, dtype, config)


# At batch size 1 the compiled core runs SGD's first layer (with or without momentum)
# over blocks of samples, the 'online-blocks' path, once that layer has 2,048 weights:
# 64 x 32 here (W1's), 40 samples in blocks of 16 (two whole blocks and one of 8), three
# epochs.  The path's own tests lower the threshold; these run the planned path as is.
WIDE = [64, 32, 5, 3]
WIDE_N = 40
BLOCKED = ["sgd", "sgd-decay", "sgd-momentum", "sgd-nesterov-decay"]


def wide_problem(dtype, backend, config):
    net, X, labels = problem(dtype, backend, sizes=WIDE, n=WIDE_N)
    if backend == "cython":
        chosen = net._impl.plan(net.arch, make_optimizer(config), 1, n_samples=WIDE_N)
        assert (chosen.path, chosen.block_rows) == ("online-blocks", 16)
    return net, X / 4, labels   # (pre-activations of moderate size over 64 inputs)


@pytest.mark.parametrize("config", BLOCKED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_online_blocks_match_the_formulas(backend, dtype, config):
    net, X, labels = wide_problem(dtype, backend, config)
    expected, _ = reference_training(config, parameters(net), X, labels, 1)
    optimizer = make_optimizer(config)
    net.fit(X, labels, epochs=EPOCHS, batch_size=1, optimizer=optimizer, shuffle=False,
            verbose=0)
    assert_close(parameters(net), expected, dtype, config)
    assert optimizer.steps == EPOCHS * WIDE_N


@pytest.mark.parametrize("config", BLOCKED)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_online_blocks_match_torch(backend, dtype, config):
    torch = pytest.importorskip("torch")
    net, X, labels = wide_problem(dtype, backend, config)
    expected = torch_training(torch, config, net, X, labels, 1, dtype)
    net.fit(X, labels, epochs=EPOCHS, batch_size=1, optimizer=make_optimizer(config),
            shuffle=False, verbose=0)
    assert_close(parameters(net), expected, dtype, config)


# --------------------------------------------------------------------- weight decay
@pytest.mark.parametrize("config", ["sgd-decay", "sgd-nesterov-decay", "adam-all",
                                    "rmsprop-all", "adagrad-all"])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch_size", (1, 12))
def test_weight_decay_never_touches_the_biases(backend, config, batch_size):
    # One step from the same start sees the same gradient with and without decay, so the
    # biases must move exactly alike, while the weights must not.
    name, hp = CONFIGS[config]
    moved = {}
    for wd in (0.0, hp["weight_decay"]):
        net, X, labels = problem(backend=backend)
        net.fit(X[:batch_size], labels[:batch_size], epochs=1, batch_size=batch_size,
                optimizer=getattr(cyprop, name)(**{**hp, "weight_decay": wd}), shuffle=False,
                verbose=0)
        moved[wd] = parameters(net)
    for i, (a, b) in enumerate(zip(moved[0.0], moved[hp["weight_decay"]])):
        if i % 2:                          # biases
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
        else:                              # weights
            assert not np.allclose(a, b, rtol=1e-9, atol=0)


# --------------------------------------------------- the optimizer stays with the network
@pytest.mark.parametrize("config", ["sgd-nesterov-decay", "adam-all", "rmsprop-all",
                                    "adagrad-all", "rprop"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_later_fits_continue_with_the_optimizer_and_its_state(backend, config):
    # 4 epochs in one call == 2 + 1 + partial_fit, with the optimizer given only once.
    # Shuffling on: both networks draw their orders from the same seeded generator.
    whole, X, labels = problem(backend=backend)
    whole.fit(X, labels, epochs=4, batch_size=5, optimizer=make_optimizer(config), verbose=0)

    parts, _, _ = problem(backend=backend)
    optimizer = make_optimizer(config)
    parts.fit(X, labels, epochs=2, batch_size=5, optimizer=optimizer, verbose=0)
    state = optimizer.state.copy()
    parts.fit(X, labels, epochs=1, batch_size=5, verbose=0)
    assert parts.optimizer is optimizer and optimizer.steps == 3 * 3
    assert not np.array_equal(state, optimizer.state)
    parts.partial_fit(X, labels, batch_size=5)
    assert parts.optimizer is optimizer and optimizer.steps == 4 * 3

    np.testing.assert_array_equal(parts._params, whole._params)
    np.testing.assert_array_equal(optimizer.state, whole.optimizer.state)


@pytest.mark.parametrize("backend", BACKENDS)
def test_giving_the_same_optimizer_again_keeps_its_state(backend):
    a, X, labels = problem(backend=backend)
    b, _, _ = problem(backend=backend)
    opt_a, opt_b = make_optimizer("adam"), make_optimizer("adam")
    a.fit(X, labels, epochs=2, batch_size=4, optimizer=opt_a, shuffle=False, verbose=0)
    b.fit(X, labels, epochs=1, batch_size=4, optimizer=opt_b, shuffle=False, verbose=0)
    b.fit(X, labels, epochs=1, batch_size=4, optimizer=opt_b, shuffle=False, verbose=0)
    np.testing.assert_array_equal(a._params, b._params)
    assert opt_b.steps == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_new_optimizer_starts_afresh(backend):
    # Adam's first step moves every parameter by about the learning rate: a fresh
    # optimizer replaces the old one and its state.
    net, X, labels = problem(backend=backend)
    net.fit(X, labels, epochs=3, batch_size=4, optimizer=cyprop.SGD(0.1, momentum=0.9),
            verbose=0)
    before = net._params.copy()
    fresh = cyprop.Adam(1e-3)
    net.fit(X, labels, epochs=1, batch_size=N, optimizer=fresh, verbose=0)
    assert net.optimizer is fresh and fresh.steps == 1
    step = np.abs(net._params - before)
    np.testing.assert_allclose(step[step > 1e-6], 1e-3, rtol=1e-2)


def test_optimizer_moved_to_another_network_restarts_its_state():
    _, X, labels = problem()
    optimizer = cyprop.Adam(0.01)
    cyprop.Network([3, 7, 3], seed=1).fit(X, labels, epochs=1, batch_size=4,
                                          optimizer=optimizer, verbose=0)
    assert optimizer.steps == 3
    net, _, _ = problem()
    expected, _ = reference_training("adam", parameters(net), X, labels, N, epochs=1)
    net.fit(X, labels, epochs=1, batch_size=N, optimizer=optimizer, shuffle=False, verbose=0)
    assert optimizer.steps == 1 and optimizer.state.shape == (2, net.n_params)
    # a first step's bias correction, not a fourth one's
    assert_close(parameters(net), expected, "float64")


def test_reset_forgets_the_state():
    net, X, labels = problem()
    optimizer = cyprop.SGD(0.1, momentum=0.9)
    net.fit(X, labels, epochs=2, batch_size=4, optimizer=optimizer, verbose=0)
    optimizer.reset()
    assert optimizer.state is None and optimizer.steps == 0


# ------------------------------------------------------------------ configuration
@pytest.mark.parametrize("config", CONFIGS)
def test_config_round_trips_through_the_constructor(config):
    optimizer = make_optimizer(config)
    again = type(optimizer)(**optimizer.get_config())
    assert again.get_config() == optimizer.get_config()
    assert repr(again) == repr(optimizer) and repr(optimizer).startswith(type(optimizer).__name__)
    assert optimizer.initial_learning_rate == optimizer.learning_rate == CONFIGS[config][1][
        "learning_rate"]


def test_defaults_are_the_documented_ones():
    assert cyprop.SGD(0.1).get_config() == dict(learning_rate=0.1, momentum=0.0,
                                                nesterov=False, weight_decay=0.0)
    assert cyprop.Adam().get_config() == dict(learning_rate=1e-3, beta1=0.9, beta2=0.999,
                                              eps=1e-8, weight_decay=0.0)
    assert cyprop.RMSprop().get_config() == dict(learning_rate=1e-2, alpha=0.99, eps=1e-8,
                                                 momentum=0.0, weight_decay=0.0)
    assert cyprop.Adagrad().get_config() == dict(learning_rate=1e-2, eps=1e-10,
                                                 weight_decay=0.0)
    assert cyprop.Rprop().get_config() == dict(learning_rate=0.01, etas=[0.5, 1.2],
                                               step_sizes=[1e-6, 50])


@pytest.mark.parametrize("make, error", [
    (lambda: cyprop.Adam(0.0), ValueError),
    (lambda: cyprop.Adam(beta1=1.0), ValueError),
    (lambda: cyprop.Adam(beta2=-0.1), ValueError),
    (lambda: cyprop.Adam(eps=0.0), ValueError),
    (lambda: cyprop.Adam(weight_decay=-1e-3), ValueError),
    (lambda: cyprop.Adam(learning_rate="0.1"), TypeError),
    (lambda: cyprop.RMSprop(alpha=1.5), ValueError),
    (lambda: cyprop.RMSprop(momentum=-0.5), ValueError),
    (lambda: cyprop.RMSprop(eps=float("nan")), ValueError),
    (lambda: cyprop.Adagrad(learning_rate=float("inf")), ValueError),
    (lambda: cyprop.Adagrad(eps=-1.0), ValueError),
    (lambda: cyprop.Rprop(etas=(1.2, 0.5)), ValueError),
    (lambda: cyprop.Rprop(etas=(0.5, 1.0)), ValueError),
    (lambda: cyprop.Rprop(step_sizes=(1.0, 0.1)), ValueError),
    (lambda: cyprop.Rprop(learning_rate=-0.01), ValueError),
    (lambda: cyprop.SGD(0.1, nesterov=True), ValueError),
    (lambda: cyprop.SGD(True), TypeError),
])
def test_invalid_hyper_parameters_are_refused(make, error):
    with pytest.raises(error):
        make()


def test_fit_refuses_what_is_not_a_cyprop_optimizer():
    net, X, labels = problem()
    with pytest.raises(TypeError, match="cyprop optimizer"):
        net.fit(X, labels, epochs=1, optimizer="adam", verbose=0)
