"""The maths is right: forward and loss against hand-written formulas, gradients
against finite differences and PyTorch autograd, SGD steps against torch.optim.SGD."""

import re
import warnings

import numpy as np
import pytest

import cyprop

# ------------------------------------------------------- hand-written reference
LEAKY_SLOPE = 0.01


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the same function, and it cannot overflow


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


ACT = {
    "identity": lambda z: z,
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z > 0, z, LEAKY_SLOPE * z),
    "softmax": softmax,
}


def handwritten_forward(net, X):
    """(output pre-activations z, output activations a) in float64 from net.weights."""
    a = np.asarray(X, dtype=np.float64)
    for W, b, act in zip(net.weights, net.biases, net.activations):
        z = a @ W.astype(np.float64).T + b.astype(np.float64)
        a = ACT[act](z)
    return z, a


def targets(Y, n_out):
    """Class labels (n,) one-hot encoded; targets (n, n_out) as they are."""
    Y = np.asarray(Y)
    if Y.ndim == 1 and n_out > 1:
        return np.eye(n_out)[Y]
    return Y.reshape(len(Y), n_out).astype(np.float64)


def literal_sample_losses(loss, output, a, T):
    """The textbook formulas, written from the activations (fine for moderate z)."""
    if loss == "mse":
        return 0.5 * np.sum((a - T) ** 2, axis=1)
    if output == "softmax":
        return -np.sum(T * np.log(a), axis=1)
    return -np.sum(T * np.log(a) + (1 - T) * np.log(1 - a), axis=1)


def stable_sample_losses(loss, output, z, a, T):
    """The same losses written from z so that |z| ~ 1000 stays finite."""
    if loss == "mse":
        return 0.5 * np.sum((a - T) ** 2, axis=1)
    if output == "softmax":
        m = z.max(axis=1, keepdims=True)
        log_softmax = z - (m + np.log(np.sum(np.exp(z - m), axis=1, keepdims=True)))
        return -np.sum(T * log_softmax, axis=1)
    # log sigmoid(z) = -log(1 + exp(-z)) = -logaddexp(0, -z)
    return np.sum(T * np.logaddexp(0, -z) + (1 - T) * np.logaddexp(0, z), axis=1)


def flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays]).astype(np.float64)


# ----------------------------------------------------------- forward and loss
@pytest.mark.parametrize("sizes", [[4, 5, 3], [3, 2, 1], [2, 3, 3, 2]], ids=str)
def test_forward_and_loss_match_handwritten_formulas(make_net, make_data, sizes, combo,
                                                     backend, dtype):
    activation, output, loss = combo
    net = make_net(sizes, combo, backend=backend, dtype=dtype)
    X, Y = make_data(sizes, output, n=7)
    X = X.astype(dtype)  # so that the float64 reference sees the same inputs
    z, a = handwritten_forward(net, X)
    T = targets(Y, sizes[-1])
    rtol, atol = (1e-12, 1e-14) if dtype == "float64" else (1e-4, 1e-5)

    np.testing.assert_allclose(net.forward(X), a, rtol=rtol, atol=atol)
    expected = np.mean(literal_sample_losses(loss, output, a, T))
    assert net.loss(X, Y) == pytest.approx(expected, rel=rtol, abs=atol)
    assert net.evaluate(X, Y)["loss"] == pytest.approx(expected, rel=rtol, abs=atol)


EXTREME_CASES = [("softmax", "cross_entropy"), ("sigmoid", "cross_entropy"),
                 ("softmax", "mse"), ("sigmoid", "mse"), ("tanh", "mse"),
                 ("identity", "mse")]


@pytest.mark.parametrize("hidden", ["sigmoid", "tanh", "identity"])
@pytest.mark.parametrize("output,loss", EXTREME_CASES)
def test_extreme_logits_give_finite_losses(backend, dtype, hidden, output, loss):
    # Pre-activations of about +-1000 in both layers: exp(1000) overflows, and the
    # saturated outputs are exactly 0 or 1, so a naive log(a) or log(1 - a) is -inf.
    net = cyprop.Network([2, 2, 3], activation=hidden, output=output, loss=loss,
                         backend=backend, dtype=dtype, seed=0)
    net.weights[0][...] = [[1000, 0], [0, -1000]]
    net.biases[0][...] = 0
    scale = 1.0 if hidden in ("sigmoid", "tanh") else 1e-3  # keep identity's z ~ 1000
    net.weights[1][...] = np.array([[1000, -1000], [-1000, 1000], [500, 500]]) * scale
    net.biases[1][...] = [0, 0, -1000]
    X = np.array([[1.0, 1.0], [-1.0, 0.5], [0.5, -1.0], [-1.0, -1.0]])
    if output == "softmax" and loss == "cross_entropy":
        Y = np.array([1, 0, 2, 1])  # mostly the unlikely class: losses of about 2000
    else:
        Y = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=float)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or divide-by-zero warnings either
        value = net.loss(X, Y)
        grad_w, grad_b = net.gradients(X, Y)
        out = net.forward(X)
    z, a = handwritten_forward(net, X.astype(dtype))
    assert np.abs(z).max() >= 999  # the case is as extreme as intended
    expected = np.mean(stable_sample_losses(loss, output, z, a, targets(Y, 3)))
    assert np.isfinite(value) and value >= 0
    assert value == pytest.approx(expected, rel=1e-12 if dtype == "float64" else 1e-5)
    assert np.isfinite(out).all()
    assert all(np.isfinite(g).all() for g in grad_w + grad_b)


@pytest.mark.parametrize("activation,z,slope", [("relu", 0.0, 0.0),    # relu'(0) = 0
                                                ("relu", -2.0, 0.0), ("relu", 2.0, 1.0),
                                                ("leaky_relu", -2.0, 0.01),
                                                ("leaky_relu", 2.0, 1.0)])
def test_relu_family_derivatives(backend, dtype, activation, z, slope):
    # One hidden unit with pre-activation z, the identity output reads it with weight 1:
    # d loss / d hidden bias = (output - target) * f'(z).
    net = cyprop.Network([1, 1, 1], activation=activation, output="identity", loss="mse",
                         backend=backend, dtype=dtype)
    net.weights[0][...] = 1
    net.biases[0][...] = 0
    net.weights[1][...] = 1
    net.biases[1][...] = 3
    X, Y = np.array([[z]]), np.array([[0.0]])
    residual = net.forward(X)[0, 0]  # the target is 0
    grad_w, grad_b = net.gradients(X, Y)
    assert grad_b[0][0] == pytest.approx(residual * slope, rel=1e-6)
    assert grad_w[0][0, 0] == pytest.approx(residual * slope * z, rel=1e-6)


@pytest.mark.parametrize("sizes", [[2, 3, 1], [2, 3, 3]], ids=str)
def test_losses_are_never_negative(make_net, sizes, combo, backend, dtype):
    # Every loss here is a sum of squares or a cross-entropy, so >= 0 for any targets
    # in [0, 1]; a 1-unit softmax makes the cross-entropy exactly 0, where a careless
    # rounding order (sum(y) * logsumexp(z) - y . z) can dip below it.
    net = make_net(sizes, combo, backend=backend, dtype=dtype)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 2))
    Y = rng.dirichlet(np.ones(sizes[-1]), 20) if sizes[-1] > 1 else rng.uniform(size=(20, 1))
    assert net.loss(X, Y) >= 0
    assert net.loss(X[:1], Y[:1]) >= 0


# ---------------------------------------------------------- finite differences
def central_differences(net, X, Y, epsilon=1e-6):
    """d loss / d parameter by central differences, written into the parameters
    through the in-place views that net.weights and net.biases are."""
    numeric = []
    for p in list(net.weights) + list(net.biases):
        g = np.empty_like(p, dtype=np.float64)
        for idx in np.ndindex(p.shape):
            saved = p[idx]
            p[idx] = saved + epsilon
            up = net.loss(X, Y)
            p[idx] = saved - epsilon
            down = net.loss(X, Y)
            p[idx] = saved
            g[idx] = (up - down) / (2 * epsilon)
        numeric.append(g)
    return numeric


# Central differences carry rounding noise of about 1e-16 * loss / epsilon ~ 1e-10,
# so they are compared with an absolute floor above that noise.
@pytest.mark.parametrize("sizes", [[3, 4, 2], [2, 3, 1], [4, 1, 1], [1, 3, 1], [3, 1, 2],
                                   [6, 5, 4, 4, 3, 2]], ids=str)
def test_gradients_match_central_differences(make_net, make_data, sizes, combo, backend):
    net = make_net(sizes, combo, backend=backend)
    X, Y = make_data(sizes, combo[1], n=4, seed=3)
    grad_w, grad_b = net.gradients(X, Y)
    np.testing.assert_allclose(flat(grad_w + grad_b), flat(central_differences(net, X, Y)),
                               rtol=1e-6, atol=1e-8)


# relu and leaky_relu: with these seeds no unit's input lies within check_gradients'
# step of the kink, where finite differences (not the gradient) go wrong.
@pytest.mark.parametrize("sizes", [[3, 4, 2], [2, 3, 1], [3, 1, 2], [4, 1, 1], [1, 3, 1],
                                   [6, 5, 4, 4, 3, 2]], ids=str)
def test_check_gradients_every_combination(make_net, make_data, sizes, combo, backend):
    net = make_net(sizes, combo, backend=backend, seed=0)
    X, Y = make_data(sizes, combo[1], n=5, seed=0)
    assert cyprop.check_gradients(net, X, Y) < 1e-6


def test_check_gradients_float32_network_leaves_it_untouched(make_net, make_data,
                                                             flat_params, backend):
    net = make_net([3, 4, 2], ("tanh", "softmax", "cross_entropy"), dtype="float32",
                   backend=backend)
    X, Y = make_data([3, 4, 2], n=5)
    before = flat_params(net)
    assert cyprop.check_gradients(net, X, Y) < 1e-6  # checked at float64 precision
    assert net.dtype == np.float32 and all(w.dtype == np.float32 for w in net.weights)
    np.testing.assert_array_equal(flat_params(net), before)


@pytest.mark.parametrize("epsilon, error", [
    (0, ValueError), (-1e-4, ValueError), (float("nan"), ValueError),
    (float("inf"), ValueError), (10 ** 400, ValueError), (True, TypeError),
    ("1e-4", TypeError), (None, TypeError), (1e-4 + 0j, TypeError)])
def test_check_gradients_refuses_a_bad_epsilon(make_net, make_data, epsilon, error):
    # 0 raised ZeroDivisionError; NaN and inf blamed the network's weights ("set by
    # hand?"); True ran as a step of 1
    net = make_net([3, 4, 2], ("tanh", "softmax", "cross_entropy"))
    X, Y = make_data([3, 4, 2], n=5)
    with pytest.raises(error, match="epsilon must be"):
        cyprop.check_gradients(net, X, Y, epsilon=epsilon)


def test_check_gradients_refuses_something_other_than_a_network(make_data):
    # an AttributeError named a method ("'str' object has no attribute 'copy'")
    X, Y = make_data([3, 4, 2], n=5)
    for not_a_network in ("net", None, cyprop.Ensemble([cyprop.Network([3, 4, 2])])):
        with pytest.raises(TypeError, match=r"^check_gradients takes a cyprop.Network, got "):
            cyprop.check_gradients(not_a_network, X, Y)


@pytest.mark.parametrize("epsilon, words", [(1e308, "too large: .*beyond float64's range"),
                                            (1e-300, "too small: .*lost to rounding")])
def test_check_gradients_refuses_a_step_float64_cannot_take(make_net, make_data, epsilon,
                                                            words):
    # 1e308 blamed the network's weights ("NaN or infinity ... set by hand?"); 1e-300
    # moved no weight and reported 1.0, a gradient entirely wrong
    net = make_net([3, 4, 2], ("tanh", "softmax", "cross_entropy"))
    X, Y = make_data([3, 4, 2], n=5)
    with pytest.raises(ValueError, match=re.escape(f"epsilon={epsilon:g} is ") + words):
        cyprop.check_gradients(net, X, Y, epsilon=epsilon)
    assert cyprop.check_gradients(net, X, Y, epsilon=1e-4) < 1e-6


def test_check_gradients_blames_epsilon_for_a_loss_its_step_overflows(make_net, make_data,
                                                                       flat_params):
    # a step of 1e200 is a float64, but squared in mse the loss is not: the error said
    # "the inputs or weights are too large; scale the inputs"
    net = make_net([3, 4, 2], ("relu", "identity", "mse"))
    X, Y = make_data([3, 4, 2], "identity", n=5)
    before = flat_params(net)
    with pytest.raises(ValueError, match=r"epsilon=1e\+200 is too large: .*overflows the loss"):
        cyprop.check_gradients(net, X, Y, epsilon=1e200)
    np.testing.assert_array_equal(flat_params(net), before)
    assert cyprop.check_gradients(net, X, Y, epsilon=1e-4) < 1e-6


# ------------------------------------------------------------------- PyTorch
@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    # Tiny tensors: a second thread only contends with the BLAS threads (2-core CI).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def torch_mean_loss(torch, net, X, T, weights, biases):
    """net.loss(X, T) written with torch operations, on torch parameter tensors."""
    F = torch.nn.functional
    act = {"identity": lambda z: z, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
           "relu": torch.relu, "leaky_relu": lambda z: F.leaky_relu(z, LEAKY_SLOPE),
           "softmax": lambda z: torch.softmax(z, dim=1)}
    a = torch.as_tensor(X, dtype=weights[0].dtype)
    T = torch.as_tensor(T, dtype=weights[0].dtype)
    for W, b, name in zip(weights, biases, net.activations):
        z = a @ W.T + b
        a = act[name](z)
    output = net.activations[-1]
    if net.loss_name == "mse":
        per_sample = 0.5 * ((a - T) ** 2).sum(dim=1)
    elif output == "softmax":
        per_sample = -(T * torch.log_softmax(z, dim=1)).sum(dim=1)
    else:
        per_sample = F.binary_cross_entropy_with_logits(z, T, reduction="none").sum(dim=1)
    return per_sample.mean()


def torch_parameters(torch, net):
    def leaf(p):
        return torch.tensor(np.array(p, dtype=np.float64), requires_grad=True)
    return [leaf(w) for w in net.weights], [leaf(b) for b in net.biases]


@pytest.mark.parametrize("sizes", [[3, 4, 2], [2, 3, 1], [4, 1, 1], [3, 1, 2],
                                   [6, 5, 4, 4, 3, 2]], ids=str)
def test_loss_and_gradients_match_torch_autograd(torch, make_net, make_data, sizes, combo,
                                                 backend, dtype):
    net = make_net(sizes, combo, backend=backend, dtype=dtype)
    X, Y = make_data(sizes, combo[1], n=6, seed=4)
    X = X.astype(dtype)
    weights, biases = torch_parameters(torch, net)
    loss = torch_mean_loss(torch, net, X, targets(Y, sizes[-1]), weights, biases)
    loss.backward()
    rtol, atol = (1e-10, 1e-14) if dtype == "float64" else (1e-4, 1e-5)

    assert net.loss(X, Y) == pytest.approx(loss.item(), rel=rtol, abs=atol)
    grad_w, grad_b = net.gradients(X, Y)
    expected = [p.grad.numpy() for p in weights + biases]
    for l, (got, want) in enumerate(zip(grad_w + grad_b, expected)):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"gradient {l}")


# -------------------------------------------------------------------- SGD steps
SGD_CONFIGS = {
    "plain": {},
    "momentum": {"momentum": 0.9},
    "nesterov": {"momentum": 0.9, "nesterov": True},
    "weight_decay": {"weight_decay": 0.05},
    "momentum+weight_decay": {"momentum": 0.5, "weight_decay": 0.05},
    "nesterov+weight_decay": {"momentum": 0.5, "nesterov": True, "weight_decay": 0.05},
}
SGD_LR = 0.1
SGD_EPOCHS = 3


def sgd_by_hand(net, X, Y, batch_size, momentum=0.0, nesterov=False, weight_decay=0.0):
    """torch.optim.SGD's update (dampening 0) written out, on a copy of ``net``,
    visiting the samples in order in consecutive batches (the last one shorter)."""
    probe = net.copy()
    params = list(probe.weights) + list(probe.biases)  # views: updated in place
    decay = [weight_decay] * len(probe.weights) + [0.0] * len(probe.biases)
    buffers = [None] * len(params)
    for _ in range(SGD_EPOCHS):
        for start in range(0, len(X), batch_size):
            batch = slice(start, start + batch_size)
            grad_w, grad_b = probe.gradients(X[batch], Y[batch])  # mean over the batch
            for i, (p, g) in enumerate(zip(params, grad_w + grad_b)):
                g = g + decay[i] * p
                if momentum:
                    buffers[i] = g.copy() if buffers[i] is None else momentum * buffers[i] + g
                    g = g + momentum * buffers[i] if nesterov else buffers[i]
                p -= SGD_LR * g
    return probe


def sgd_with_torch(torch, net, X, Y, batch_size, momentum=0.0, nesterov=False,
                   weight_decay=0.0):
    weights, biases = torch_parameters(torch, net)
    opt = torch.optim.SGD([{"params": weights, "weight_decay": weight_decay},
                           {"params": biases, "weight_decay": 0.0}],
                          lr=SGD_LR, momentum=momentum, nesterov=nesterov)
    T = targets(Y, net.sizes[-1])
    for _ in range(SGD_EPOCHS):
        for start in range(0, len(X), batch_size):
            batch = slice(start, start + batch_size)
            opt.zero_grad()
            torch_mean_loss(torch, net, X[batch], T[batch], weights, biases).backward()
            opt.step()
    return [p.detach().numpy() for p in weights + biases]


def fit_without_shuffling(net, X, Y, batch_size, **sgd):
    trained = net.copy()
    trained.fit(X, Y, epochs=SGD_EPOCHS, batch_size=batch_size,
                optimizer=cyprop.SGD(SGD_LR, **sgd), shuffle=False)
    return list(trained.weights) + list(trained.biases)


@pytest.mark.parametrize("batch_size", [1, 3, 10, 23])
@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_sgd_matches_handwritten_torch_formulas(make_net, make_data, backend, config,
                                                batch_size):
    net = make_net([4, 5, 3], ("tanh", "softmax", "cross_entropy"), backend=backend)
    X, Y = make_data([4, 5, 3], n=23, seed=5)  # 23: batches of 3 and 10 leave a short one
    got = fit_without_shuffling(net, X, Y, batch_size, **SGD_CONFIGS[config])
    by_hand = sgd_by_hand(net, X, Y, batch_size, **SGD_CONFIGS[config])
    np.testing.assert_allclose(flat(got), flat(list(by_hand.weights) + list(by_hand.biases)),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 3, 10, 23])
@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_sgd_matches_torch_optim_sgd(torch, make_net, make_data, backend, config,
                                     batch_size):
    net = make_net([4, 5, 3], ("tanh", "softmax", "cross_entropy"), backend=backend)
    X, Y = make_data([4, 5, 3], n=23, seed=5)
    got = fit_without_shuffling(net, X, Y, batch_size, **SGD_CONFIGS[config])
    expected = sgd_with_torch(torch, net, X, Y, batch_size, **SGD_CONFIGS[config])
    np.testing.assert_allclose(flat(got), flat(expected), rtol=1e-9, atol=1e-12)


def test_weight_decay_shrinks_weights_but_never_biases(make_net, backend, dtype):
    # Targets equal to the outputs make every gradient 0, so one full-batch step with
    # weight decay is w <- (1 - lr * wd) w, and the biases must not move at all.
    net = make_net([3, 4, 2], ("tanh", "identity", "mse"), backend=backend, dtype=dtype)
    X = np.random.default_rng(0).normal(size=(8, 3)).astype(dtype)
    Y = net.forward(X)
    w0, b0 = [w.copy() for w in net.weights], [b.copy() for b in net.biases]
    net.fit(X, Y, epochs=1, batch_size=8, shuffle=False,
            optimizer=cyprop.SGD(0.5, weight_decay=0.1))
    rtol = 1e-12 if dtype == "float64" else 1e-6
    for w, before in zip(net.weights, w0):
        np.testing.assert_allclose(w, 0.95 * before, rtol=rtol)
    for b, before in zip(net.biases, b0):
        np.testing.assert_allclose(b, before, rtol=rtol, atol=1e-12)
