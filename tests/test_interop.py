"""cyprop.interop: ONNX export checked by onnxruntime, PyTorch both ways, scikit-learn in,
and the command line's ``export``.  Each part is skipped when its library is missing."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_failed_write_keeps_the_file, assert_refuses_a_fifo_in_a_child

import cyprop
from cyprop import cli, interop

HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
OUTPUTS = HIDDEN + ("softmax",)
#: The promise: onnxruntime and torch against net.forward.
ONNX_TOL = {"float32": 2e-5, "float64": 1e-10}
TORCH_TOL = {"float32": 1e-5, "float64": 1e-12}


def make_net(hidden, output, dt, sizes=(5, 8, 6, 3), seed=0):
    loss = "cross_entropy" if output in ("softmax", "sigmoid") else "mse"
    return cyprop.Network(list(sizes), activation=hidden, output=output, loss=loss,
                          dtype=dt, seed=seed, init="normal")


def inputs(net, n, seed=1):
    # scaled so that every unit sees negative and positive net inputs
    return np.random.default_rng(seed).normal(scale=2.0, size=(n, net.sizes[0])).astype(net.dtype)


# --------------------------------------------------------------------- ONNX
def run_onnx(path, X):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (name,) = [i.name for i in session.get_inputs()]
    assert name == "X"
    return session.run(None, {"X": X})[0]


@pytest.fixture
def onnx_tools():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_onnx_matches_forward(onnx_tools, tmp_path, hidden, output, dt):
    net = make_net(hidden, output, dt)
    path = tmp_path / "net.onnx"
    net.to_onnx(path)
    for n in (1, 7, 64):
        X = inputs(net, n)
        got = run_onnx(path, X)
        assert got.dtype == net.dtype and got.shape == (n, net.sizes[-1])
        np.testing.assert_allclose(got, net.forward(X), rtol=0, atol=ONNX_TOL[dt])


@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_onnx_deep_network_and_opsets(onnx_tools, tmp_path, dt):
    onnx = pytest.importorskip("onnx")
    net = cyprop.Network([6, 16, 12, 12, 10, 8, 8, 4],
                         activation=["tanh", "relu", "leaky_relu", "sigmoid", "identity",
                                     "leaky_relu"],
                         output="softmax", dtype=dt, seed=3)
    X = inputs(net, 33)
    for opset in (None, 13, 17):
        path = tmp_path / f"deep{opset}.onnx"
        model = net.to_onnx(path, opset=opset)
        assert model.opset_import[0].version == (opset or interop.DEFAULT_OPSET)
        loaded = onnx.load(str(path))
        assert loaded.producer_name == "cyprop"
        assert loaded.producer_version == cyprop.__version__
        dims = loaded.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param or d.dim_value for d in dims] == ["batch", 6]
        np.testing.assert_allclose(run_onnx(path, X), net.forward(X), rtol=0,
                                   atol=ONNX_TOL[dt])


def test_onnx_no_hidden_layer_and_bad_opset(onnx_tools, tmp_path):
    net = cyprop.Network([4, 2], output="sigmoid", seed=0)
    net.to_onnx(tmp_path / "flat.onnx")
    X = inputs(net, 5)
    np.testing.assert_allclose(run_onnx(tmp_path / "flat.onnx", X), net.forward(X),
                               rtol=0, atol=1e-10)
    for opset in (12, 10_000, "17", 17.0, True):
        with pytest.raises(ValueError, match="opset must be an integer"):
            net.to_onnx(tmp_path / "bad.onnx", opset=opset)
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_onnx_export_refuses_a_fifo_without_blocking(onnx_tools, tmp_path):
    # refused from its stat, as Network.save refuses it
    assert_refuses_a_fifo_in_a_child(
        tmp_path, "pipe", "import cyprop; cyprop.Network([2, 1], seed=0).to_onnx(sys.argv[1])",
        "to_onnx")


def test_failed_onnx_export_keeps_the_previous_file(onnx_tools, tmp_path, monkeypatch):
    assert_failed_write_keeps_the_file(
        monkeypatch, tmp_path / "net.onnx", cyprop.Network([4, 3, 2], seed=0).to_onnx,
        cyprop.Network([4, 5, 2], seed=1).to_onnx)


def test_onnx_options_are_checked(onnx_tools):
    net = cyprop.Network([3, 4, 2], seed=0)
    # two_columns and flatten take one output column: more were silently interleaved
    # (two columns of 2 outputs gave 4, flatten gave 2n values for "batch")
    with pytest.raises(ValueError, match="two_columns needs one output, .* has 2"):
        interop.onnx_model(net, two_columns=True)
    with pytest.raises(ValueError, match="flatten needs one output column, .* 2"):
        interop.onnx_model(net, flatten=True)
    single = cyprop.Network([3, 1], output="sigmoid", seed=0)
    with pytest.raises(ValueError, match="flatten needs one output column, .* 2"):
        interop.onnx_model(single, two_columns=True, flatten=True)
    # the output's name must be a new one: the checker's "SSA form" error named no option
    for name in ("X", "z0", "W0", "a0", "b1"):
        with pytest.raises(ValueError, match=f"output_name {name!r} is already"):
            interop.onnx_model(net, output_name=name)
    with pytest.raises(ValueError, match="output_name 'one' is already"):
        interop.onnx_model(single, output_name="one", two_columns=True)
    for name in ("", 5, None):
        with pytest.raises((TypeError, ValueError), match="output_name must be"):
            interop.onnx_model(net, output_name=name)
    assert interop.onnx_model(net, output_name="one").graph.output[0].name == "one"


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_export_refuses_weights_that_are_not_finite(onnx_tools, torch, tmp_path, value):
    # set by hand: the model was written (as NaN out of every row, found out where it
    # is deployed) where save refuses such a network, and from_torch its module
    net = cyprop.Network([3, 4, 2], activation="tanh", seed=0)
    net.biases[1][0] = value
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the model that was there")
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.to_onnx(path)
    assert path.read_bytes() == b"the model that was there"
    with pytest.raises(ValueError, match="NaN or infinity"):
        interop.onnx_model(net)
    with pytest.raises(ValueError, match="NaN or infinity"):
        net.to_torch()


def test_onnx_missing_is_a_clear_import_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnx", None)     # `import onnx` now fails
    with pytest.raises(ImportError, match=r'pip install "cyprop\[onnx\]"'):
        cyprop.Network([2, 1], seed=0).to_onnx(tmp_path / "x.onnx")
    status = cli.main(["export", str(tmp_path / "m.npz"), str(tmp_path / "x.onnx")])
    assert status == 1


# --------------------------------------------------------- sklearn estimators
@pytest.fixture
def sklearn_estimators():
    pytest.importorskip("sklearn")
    from cyprop import sklearn as cysk
    return cysk


def fitted(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # ConvergenceWarning: a few iterations do
        return estimator.fit(X, y)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("dt", ["float32", "float64"])
def test_onnx_classifier_gives_predict_proba(onnx_tools, sklearn_estimators, tmp_path,
                                             n_classes, dt):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(dt)
    y = rng.integers(0, n_classes, size=60)
    clf = fitted(sklearn_estimators.BackpropClassifier((7,), activation="tanh", max_iter=5,
                                                       random_state=0), X, y)
    clf.to_onnx(tmp_path / "clf.onnx")
    for n in (1, 60):
        got = run_onnx(tmp_path / "clf.onnx", X[:n])
        want = clf.predict_proba(X[:n])
        assert got.shape == want.shape == (n, n_classes)
        np.testing.assert_allclose(got, want, rtol=0, atol=ONNX_TOL[dt])


def test_onnx_multilabel_classifier(onnx_tools, sklearn_estimators, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3))
    Y = rng.integers(0, 2, size=(40, 3))
    clf = fitted(sklearn_estimators.BackpropClassifier((5,), max_iter=5, random_state=0), X, Y)
    clf.to_onnx(tmp_path / "ml.onnx")
    np.testing.assert_allclose(run_onnx(tmp_path / "ml.onnx", X), clf.predict_proba(X),
                               rtol=0, atol=1e-10)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("n_targets", [1, 2])
def test_onnx_regressor_gives_predict(onnx_tools, sklearn_estimators, tmp_path, loss,
                                      n_targets):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4))
    y = rng.poisson(2.0, size=(50, n_targets)).astype(float)
    y = y[:, 0] if n_targets == 1 else y
    reg = fitted(sklearn_estimators.BackpropRegressor(loss, (6,), solver="lbfgs", max_iter=10,
                                                      random_state=0), X, y)
    reg.to_onnx(tmp_path / "reg.onnx")
    for n in (1, 50):
        got = run_onnx(tmp_path / "reg.onnx", X[:n])
        want = reg.predict(X[:n])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


def test_onnx_estimator_not_fitted(onnx_tools, sklearn_estimators, tmp_path):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        sklearn_estimators.BackpropRegressor().to_onnx(tmp_path / "x.onnx")


# ---------------------------------------------------------------- CLI export
def test_cli_export(onnx_tools, tmp_path, capsys):
    net = make_net("relu", "softmax", "float64")
    net.save(tmp_path / "m.npz")
    status = cli.main(["export", str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "opset 17" in out
    X = inputs(net, 9)
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", X), net.forward(X), rtol=0,
                               atol=1e-10)
    # an opset out of range is a usage error, found before the model is read
    status = cli.main(["export", str(tmp_path / "none.npz"), str(tmp_path / "x.onnx"),
                       "--opset", "3"])
    out, err = capsys.readouterr()
    assert status == 2 and err.startswith("cyprop: error: --opset must be from 13 to ")
    assert err.endswith("got 3\n") and err.count("\n") == 1
    assert not (tmp_path / "x.onnx").exists()
    status = cli.main(["export", str(tmp_path / "m.npz"), str(tmp_path / "no" / "x.onnx")])
    out, err = capsys.readouterr()
    assert status == 2 and "does not exist" in err and err.count("\n") == 1


def test_console_script_export(onnx_tools, tmp_path):
    script = Path(sys.executable).with_name("cyprop")
    if not script.exists():
        pytest.skip("no cyprop console script beside this Python")
    net = make_net("tanh", "sigmoid", "float32", sizes=(3, 4, 1))
    net.save(tmp_path / "m.npz")
    done = subprocess.run([str(script), "export", "m.npz", "m.onnx", "--opset", "13"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"},
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    X = inputs(net, 4)
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", X), net.forward(X), rtol=0,
                               atol=2e-5)


# -------------------------------------------------------------------- torch
@pytest.fixture
def torch():
    return pytest.importorskip("torch")


@pytest.mark.parametrize("dt", ["float32", "float64"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("hidden", HIDDEN)
def test_torch_matches_forward_and_round_trips(torch, hidden, output, dt):
    net = make_net(hidden, output, dt)
    module = net.to_torch()
    assert isinstance(module, torch.nn.Sequential)
    for n in (1, 16):
        X = inputs(net, n)
        with torch.no_grad():
            got = module(torch.from_numpy(X)).numpy()
        assert got.dtype == net.dtype
        np.testing.assert_allclose(got, net.forward(X), rtol=0, atol=TORCH_TOL[dt])
    back = cyprop.Network.from_torch(module)
    assert back.sizes == net.sizes and back.activations == net.activations
    assert back.loss_name == net.loss_name and back.dtype == net.dtype
    for a, b in zip(back.weights + back.biases, net.weights + net.biases):
        assert np.array_equal(a, b)
    np.testing.assert_array_equal(back.forward(X), net.forward(X))


def test_torch_dropout_round_trip(torch):
    net = cyprop.Network([3, 5, 4, 2], activation="relu", dropout=[0.25, 0.0], seed=0)
    module = net.to_torch()
    assert any(isinstance(m, torch.nn.Dropout) for m in module)
    back = cyprop.Network.from_torch(module)
    assert back.dropout == [0.25, 0.0]
    X = inputs(net, 4)
    with torch.no_grad():
        np.testing.assert_allclose(module.eval()(torch.from_numpy(X)).numpy(),
                                   net.forward(X), rtol=0, atol=1e-12)


def test_from_torch_reads_plain_modules(torch):
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5), nn.Linear(5, 3),
                           nn.Dropout(0.0), nn.Sequential(nn.LeakyReLU(0.01)),
                           nn.Linear(3, 2)).double()
    net = cyprop.Network.from_torch(module, backend="numpy")
    assert net.activations == ["tanh", "identity", "leaky_relu", "identity"]
    assert net.loss_name == "mse" and net.dtype == np.float64 and net.backend == "numpy"
    X = inputs(net, 10)
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(X), module(torch.from_numpy(X)).numpy(),
                                   rtol=0, atol=1e-12)
    # float32 weights give a float32 network unless told; loss from the output
    module = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 4), nn.Softmax(dim=1))
    assert cyprop.Network.from_torch(module).dtype == np.float32
    assert cyprop.Network.from_torch(module).loss_name == "cross_entropy"
    assert cyprop.Network.from_torch(module, dtype="float64").dtype == np.float64
    assert cyprop.Network.from_torch(module, loss="mse").loss_name == "mse"
    assert cyprop.Network.from_torch(nn.Linear(3, 1)).activations == ["identity"]


@pytest.mark.parametrize("layers, error, words", [
    (lambda nn: [nn.Conv1d(1, 1, 3)], TypeError, "Conv1d"),
    (lambda nn: [nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)], TypeError, "BatchNorm1d"),
    (lambda nn: [nn.Linear(3, 4), nn.GELU()], TypeError, "GELU"),
    (lambda nn: [nn.Linear(3, 4), nn.LogSoftmax(dim=-1)], ValueError, "log-softmax"),
    (lambda nn: [nn.Linear(3, 4, bias=False)], ValueError, "no bias"),
    (lambda nn: [nn.Linear(3, 4), nn.LeakyReLU(0.2)], ValueError, "slope"),
    (lambda nn: [nn.Linear(3, 4), nn.Softmax(dim=0)], ValueError, "dim=-1"),
    (lambda nn: [nn.Linear(3, 4), nn.Softmax(dim=-1), nn.Linear(4, 2)], ValueError,
     "output only"),
    (lambda nn: [nn.Linear(3, 4), nn.ReLU(), nn.Tanh()], ValueError, "second activation"),
    (lambda nn: [nn.ReLU(), nn.Linear(3, 4)], ValueError, "before the first Linear"),
    (lambda nn: [nn.Dropout(0.5), nn.Linear(3, 4)], ValueError, "inputs"),
    (lambda nn: [nn.Linear(3, 4), nn.Dropout(0.5)], ValueError, "last Linear"),
    (lambda nn: [nn.Linear(3, 4), nn.Dropout(0.5), nn.ReLU(), nn.Linear(4, 1)], ValueError,
     "after Dropout"),
    (lambda nn: [nn.Linear(3, 4), nn.Linear(5, 2)], ValueError, "takes 5 inputs"),
    (lambda nn: [nn.Identity()], ValueError, "no nn.Linear"),
])
def test_from_torch_refuses(torch, layers, error, words):
    with pytest.raises(error, match=words):
        cyprop.Network.from_torch(torch.nn.Sequential(*layers(torch.nn)))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_from_torch_reads_half_precision_into_float32(torch, dtype):
    # float32 holds every float16 and bfloat16 value exactly: the network computes
    # what module.float() computes
    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).to(getattr(torch, dtype))
    net = cyprop.Network.from_torch(module)
    assert net.dtype == np.float32
    for W, layer in zip(net.weights, (module[0], module[2])):
        np.testing.assert_array_equal(W, layer.weight.detach().float().numpy())
    X = inputs(net, 6)
    with torch.no_grad():
        want = module.float()(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(net.forward(X), want, rtol=0, atol=TORCH_TOL["float32"])


def test_from_torch_refuses_weights_without_values(torch):
    nn = torch.nn
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2, device="meta"))
    with pytest.raises(ValueError, match=r"layer 2 .*'meta' device"):
        cyprop.Network.from_torch(module)
    module = nn.Sequential(nn.Linear(3, 4, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"layer 0 .*complex64"):
        cyprop.Network.from_torch(module)
    # integer or bool parameters (set by hand) were read as float32, 2**24 + 1 rounded
    for dtype in (torch.int64, torch.bool):
        module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        module[2].weight = nn.Parameter(torch.full((2, 4), 2**24 + 1).to(dtype),
                                        requires_grad=False)
        with pytest.raises(ValueError, match=rf"layer 2 .*weight is {dtype}"):
            cyprop.Network.from_torch(module)


def test_from_torch_reads_sparse_weights_exactly(torch):
    # torch's Linear computes with a sparse weight (CSR); reading one ended in torch's
    # "can't convert Sparse layout tensor to numpy", naming no layer
    torch.manual_seed(0)
    nn = torch.nn
    module = nn.Sequential(nn.Linear(3, 4, dtype=torch.float64), nn.Tanh(),
                           nn.Linear(4, 2, dtype=torch.float64))
    dense = module[2].weight.detach().clone()
    dense[0, 1] = 0.0
    for layout in ("to_sparse", "to_sparse_csr"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # (CSR's "beta state")
            module[2].weight = nn.Parameter(getattr(dense, layout)())
        net = cyprop.Network.from_torch(module)
        np.testing.assert_array_equal(net.weights[1], dense.numpy())


def test_from_torch_refuses_a_sequential_with_a_forward_of_its_own(torch):
    # its layers in a row are not what it computes: reading them gave a network that
    # computes something else, without a word
    nn = torch.nn

    class Doubled(nn.Sequential):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(TypeError, match="Doubled overrides nn.Sequential's forward"):
        cyprop.Network.from_torch(Doubled(nn.Linear(3, 2), nn.Sigmoid()))
    with pytest.raises(TypeError, match="Doubled overrides"):
        cyprop.Network.from_torch(nn.Sequential(nn.Linear(3, 3), Doubled(nn.Linear(3, 2))))

    class Named(nn.Sequential):   # only another way to build one: read as usual
        def __init__(self):
            super().__init__(nn.Linear(3, 2), nn.Tanh())

    assert cyprop.Network.from_torch(Named()).activations == ["tanh"]


def test_from_torch_refuses_layers_that_compute_something_else(torch):
    # an nn.Identity subclass with a forward of its own was skipped as an Identity,
    # and a hook's change to a layer's output left out: the network computed
    # something else, without a word
    nn = torch.nn

    class Doubling(nn.Identity):
        def forward(self, x):
            return 2 * x

    with pytest.raises(TypeError, match="Doubling"):
        cyprop.Network.from_torch(nn.Sequential(nn.Linear(3, 2), Doubling()))
    for hooked in (0, 1):
        module = nn.Sequential(nn.Linear(3, 2), nn.Sigmoid())
        module[hooked].register_forward_hook(lambda layer, inputs, output: 10 * output)
        with pytest.raises(TypeError, match=rf"layer {hooked} .*hook"):
            cyprop.Network.from_torch(module)
    module = nn.Sequential(nn.Linear(3, 2))
    module[0].register_forward_pre_hook(lambda layer, inputs: (2 * inputs[0],))
    with pytest.raises(TypeError, match="hook"):
        cyprop.Network.from_torch(module)
    module = nn.Sequential(nn.Linear(3, 2))
    module.register_forward_hook(lambda layer, inputs, output: -output)
    with pytest.raises(TypeError, match="hook"):
        cyprop.Network.from_torch(module)
    module = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    module[1].forward = lambda x: torch.sigmoid(x)   # (set on the module itself)
    with pytest.raises(TypeError, match=r"layer 1 .*a forward of its own"):
        cyprop.Network.from_torch(module)
    module = nn.Sequential(nn.Linear(3, 2))
    module.register_module("empty", None)   # (no hooks to look for: unsupported)
    with pytest.raises(TypeError, match=r"layer 1 \(None\) is not supported"):
        cyprop.Network.from_torch(module)
    module = nn.Sequential(nn.Linear(3, 2), nn.Tanh())   # (hooks removed: read as usual)
    handle = module[1].register_forward_hook(lambda layer, inputs, output: -output)
    handle.remove()
    assert cyprop.Network.from_torch(module).activations == ["tanh"]


def test_from_torch_refuses_while_hooks_for_every_module_are_registered(torch):
    # register_module_forward_hook changes what every layer computes: the network
    # read computed something else, without a word
    nn = torch.nn
    module = nn.Sequential(nn.Linear(3, 2), nn.Tanh())
    for register in (nn.modules.module.register_module_forward_hook,
                     nn.modules.module.register_module_forward_pre_hook):
        handle = register(lambda layer, *args: None)
        try:
            with pytest.raises(TypeError, match="every module"):
                cyprop.Network.from_torch(module)
        finally:
            handle.remove()
    assert cyprop.Network.from_torch(module).activations == ["tanh"]


def test_from_torch_refuses_a_weight_that_is_not_a_matrix(torch):
    # torch's linear also takes a vector as the weight (one output, dropped from the
    # shape); reading one ended in an IndexError
    nn = torch.nn
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    module[2].weight = nn.Parameter(torch.ones(4))
    module[2].bias = nn.Parameter(torch.zeros(()))
    with pytest.raises(ValueError, match=r"layer 2 .*weight has shape \(4,\)"):
        cyprop.Network.from_torch(module)


def test_from_torch_needs_a_module(torch):
    with pytest.raises(TypeError, match="torch.nn.Sequential"):
        cyprop.Network.from_torch([1, 2])


def test_from_torch_and_sklearn_refuse_the_models_own_settings(torch, sklearn_estimators):
    # the layers and activations are the model's: Network's "got multiple values for
    # keyword argument" named neither the problem nor the function
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Sigmoid())
    for key, value in (("output", "softmax"), ("activation", "relu"), ("sizes", [3, 2])):
        with pytest.raises(TypeError, match=rf"^{key} cannot be passed: .*converted model"):
            cyprop.Network.from_torch(module, **{key: value})
    X, rng = sk_data()
    clf = fitted(sklearn_estimators.BackpropClassifier((5,), max_iter=5, random_state=0), X,
                 rng.integers(0, 3, size=len(X)))
    with pytest.raises(TypeError, match="^activation, output cannot be passed"):
        cyprop.Network.from_sklearn(clf, output="sigmoid", activation="tanh")
    assert cyprop.Network.from_torch(module, loss="mse").loss_name == "mse"


# ------------------------------------------------------------ scikit-learn in
def sk_data(n_outputs=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 5))
    return X, rng


@pytest.mark.parametrize("activation", ["logistic", "tanh", "relu", "identity"])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_from_sklearn_classifier(activation, n_classes):
    neural_network = pytest.importorskip("sklearn.neural_network")
    X, rng = sk_data()
    y = rng.integers(0, n_classes, size=len(X))
    mlp = fitted(neural_network.MLPClassifier((7, 4), activation=activation, max_iter=20,
                                              random_state=0), X, y)
    net = cyprop.Network.from_sklearn(mlp)
    assert net.loss_name == "cross_entropy" and net.dtype == np.float64
    proba = mlp.predict_proba(X)
    if n_classes == 2:      # one logistic output: forward is p, predict_proba 1 - p, p
        assert net.activations[-1] == "sigmoid" and net.sizes[-1] == 1
        proba = proba[:, 1:]
    np.testing.assert_allclose(net.forward(X), proba, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(mlp.classes_[net.predict(X)], mlp.predict(X))
    # and it keeps training with cyprop
    net.fit(X, y if n_classes > 2 else y.reshape(-1, 1), epochs=2, verbose=0)


def test_from_sklearn_multilabel_and_float32():
    neural_network = pytest.importorskip("sklearn.neural_network")
    X, rng = sk_data()
    Y = rng.integers(0, 2, size=(len(X), 3))
    mlp = fitted(neural_network.MLPClassifier((6,), max_iter=20, random_state=0),
                 X.astype(np.float32), Y)
    net = cyprop.Network.from_sklearn(mlp)
    assert net.dtype == np.float32 and net.activations == ["relu", "sigmoid"]
    np.testing.assert_allclose(net.forward(X.astype(np.float32)),
                               mlp.predict_proba(X.astype(np.float32)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("n_targets", [1, 2])
def test_from_sklearn_regressor(n_targets):
    neural_network = pytest.importorskip("sklearn.neural_network")
    X, rng = sk_data()
    y = rng.normal(size=(len(X), n_targets))
    y = y[:, 0] if n_targets == 1 else y
    mlp = fitted(neural_network.MLPRegressor(hidden_layer_sizes=(8,), activation="tanh", max_iter=20,
                                             random_state=0), X, y)
    net = cyprop.Network.from_sklearn(mlp, backend="numpy")
    assert net.loss_name == "mse" and net.activations == ["tanh", "identity"]
    out = net.forward(X)
    assert out.shape == (len(X), n_targets)         # predict gives (n,) for one target
    np.testing.assert_allclose(out.reshape(np.shape(mlp.predict(X))), mlp.predict(X),
                               rtol=0, atol=1e-10)


def test_from_sklearn_refuses():
    neural_network = pytest.importorskip("sklearn.neural_network")
    with pytest.raises(TypeError, match="not fitted"):
        cyprop.Network.from_sklearn(neural_network.MLPClassifier())
    with pytest.raises(TypeError, match="MLPClassifier or MLPRegressor"):
        cyprop.Network.from_sklearn(object())
    X, rng = sk_data()
    try:
        mlp = neural_network.MLPRegressor(hidden_layer_sizes=(3,), loss="poisson", max_iter=5)
    except TypeError:
        pytest.skip("this scikit-learn has no Poisson MLPRegressor")
    mlp = fitted(mlp, X, rng.poisson(2.0, size=len(X)).astype(float))
    with pytest.raises(ValueError, match="poisson"):
        cyprop.Network.from_sklearn(mlp)


@pytest.mark.parametrize("attribute, value, words", [
    ("coefs_", [], "coefs_"),
    ("coefs_", None, "coefs_"),
    ("intercepts_", None, "intercepts_"),
    ("coefs_", lambda mlp: [mlp.coefs_[0][:, 0], mlp.coefs_[1]], r"coefs_\[0\] has shape \(5,\)"),
    ("intercepts_", lambda mlp: [mlp.intercepts_[0][None], mlp.intercepts_[1]],
     r"intercepts_\[0\] has shape \(1, 4\)"),
    ("intercepts_", lambda mlp: mlp.intercepts_[:1], "2 coefs_ and 1 intercepts_"),
    ("out_activation_", ["softmax"], "out_activation_"),
    ("activation", ["relu"], "activation"),
    ("loss", ["log_loss"], "loss"),
    ("n_layers_", 2, "n_layers_ is 2"),
])
def test_from_sklearn_refuses_attributes_set_by_hand(attribute, value, words):
    # each ended in an IndexError or "unhashable type" naming nothing, and a wrong
    # n_layers_ (which predict_proba goes by) was ignored: another model, without a word
    neural_network = pytest.importorskip("sklearn.neural_network")
    X, rng = sk_data()
    mlp = fitted(neural_network.MLPClassifier((4,), max_iter=5, random_state=0), X,
                 rng.integers(0, 3, size=len(X)))
    setattr(mlp, attribute, value(mlp) if callable(value) else value)
    with pytest.raises((TypeError, ValueError), match=words):
        cyprop.Network.from_sklearn(mlp)


def test_from_sklearn_refuses_a_network_that_is_not_one():
    # (set by hand) it ended in an AttributeError on loss_name
    class Estimator:
        network_ = "not a network"

    with pytest.raises(TypeError, match="network_ .*str"):
        cyprop.Network.from_sklearn(Estimator())


def test_from_sklearn_takes_cyprop_estimators(sklearn_estimators):
    X, rng = sk_data()
    y = rng.integers(0, 3, size=len(X))
    clf = fitted(sklearn_estimators.BackpropClassifier((5,), max_iter=5, random_state=0), X, y)
    net = cyprop.Network.from_sklearn(clf)
    assert net is not clf.network_
    np.testing.assert_array_equal(net.forward(X), clf.predict_proba(X))
    reg = fitted(sklearn_estimators.BackpropRegressor(hidden_layer_sizes=(5,), max_iter=5,
                                                      dropout=0.1, max_norm=2.0,
                                                      random_state=0), X, X[:, 0])
    net = cyprop.Network.from_sklearn(reg)
    assert net.dropout == [0.1] and net.max_norm == 2.0 and net.loss_name == "mse"
    np.testing.assert_array_equal(net.forward(X)[:, 0], reg.predict(X))
    assert cyprop.Network.from_sklearn(reg, dropout=0.0).dropout == [0.0]
