"""A network's public state (Network.get_state / Network.from_state), and the modules
around persistence depending one way."""

import ast
import dataclasses
import io
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cyprop
from cyprop import _state
from cyprop.errors import InvalidState
from cyprop.network import NetworkState, OptimizerState

BACKENDS = cyprop.available_backends()
SRC = Path(cyprop.__file__).resolve().parent


def data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    return X, y


def trained(backend="numpy", optimizer=None, seed=3):
    X, y = data()
    net = cyprop.Network([4, 6, 3], seed=seed, backend=backend, dropout=0.2, max_norm=3.0)
    net.fit(X, y, epochs=3, batch_size=7, verbose=0,
            optimizer=optimizer if optimizer is not None else cyprop.Adam(0.01))
    return net


def file_members(path):
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


# ---------------------------------------------------------------------- round trip
@pytest.mark.parametrize("backend", BACKENDS)
def test_state_round_trip_gives_the_same_network(backend, tmp_path):
    net = trained(backend)
    state = net.get_state()
    assert isinstance(state, NetworkState) and isinstance(state.optimizer, OptimizerState)
    assert state.backend == backend and state.params.shape == (net.n_params,)
    copy = cyprop.Network.from_state(state)
    X, y = data(seed=1)
    np.testing.assert_array_equal(copy.forward(X), net.forward(X))
    assert copy.history.to_dict() == net.history.to_dict()
    assert copy.history.stop_reason == net.history.stop_reason
    assert copy.optimizer.steps == net.optimizer.steps
    assert (copy.dropout, copy.max_norm, copy.backend) == (net.dropout, net.max_norm,
                                                           net.backend)

    # the same file: every member equal (the zip's timestamps aside)
    net.save(tmp_path / "a.npz")
    copy.save(tmp_path / "b.npz")
    a, b = file_members(tmp_path / "a.npz"), file_members(tmp_path / "b.npz")
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])

    # training goes on exactly as the original's (shuffling, dropout, Adam's moments)
    for n in (net, copy):
        n.fit(X, y, epochs=2, batch_size=5, verbose=0)
        n.partial_fit(X[:9], y[:9])
    np.testing.assert_array_equal(copy._params, net._params)
    assert copy.history.loss == net.history.loss
    np.testing.assert_array_equal(copy.optimizer.state, net.optimizer.state)


def test_the_state_shares_nothing_with_the_network():
    net = trained()
    state = net.get_state()
    before = net.forward(data()[0])
    state.params[...] = 0.0
    state.optimizer.state[...] = 0.0
    state.history["loss"].append(1.0)
    np.testing.assert_array_equal(net.forward(data()[0]), before)
    assert net.optimizer.state.any() and len(net.history.loss) == 3

    state = net.get_state()
    copy = cyprop.Network.from_state(state)
    state.params[...] = 0.0
    state.optimizer.state[...] = 0.0
    np.testing.assert_array_equal(copy.forward(data()[0]), before)
    assert copy.optimizer.state.any()


def test_a_fresh_network_and_other_generators_round_trip():
    net = cyprop.Network([3, 2], output="softmax", seed=None, dtype="float32")
    copy = cyprop.Network.from_state(net.get_state())
    assert copy.optimizer is None and copy.history.epochs == 0 and copy.dtype == np.float32
    np.testing.assert_array_equal(copy.weights[0], net.weights[0])
    for name in ("MT19937", "Philox", "SFC64", "PCG64DXSM"):
        net._rng = np.random.Generator(getattr(np.random, name)(5))
        state = net.get_state()
        assert isinstance(state.rng["bit_generator"], str)
        copy = cyprop.Network.from_state(state)
        assert copy._rng.integers(2**62) == net._rng.integers(2**62)


@pytest.mark.parametrize("seed", [np.random.default_rng, np.random.PCG64],
                         ids=["Generator", "BitGenerator"])
def test_a_state_leaves_a_generator_given_as_seed_alone(seed, tmp_path):
    """A network seeded with a generator shuffles with that generator; its state held
    the same object as ``seed``, and from_state (save too, which checks the state so)
    drew the new network's initial weights from it, moving the original's shuffles:
    the original trained on unlike itself, and unlike its file."""
    X, y = data()
    net, twin = (cyprop.Network([4, 6, 3], seed=seed(5)) for _ in range(2))
    cyprop.Network.from_state(net.get_state())
    net.save(tmp_path / "net.npz")
    for n in (net, twin):
        n.fit(X, y, epochs=2, batch_size=7, verbose=0)
    assert net._rng.bit_generator.state == twin._rng.bit_generator.state
    np.testing.assert_array_equal(net._params, twin._params)


def test_load_builds_the_network_from_its_state(tmp_path):
    net = trained()
    net.save(tmp_path / "net")
    loaded = cyprop.load(tmp_path / "net", backend="numpy")
    state, again = net.get_state(), loaded.get_state()
    for field in dataclasses.fields(NetworkState):
        if field.name not in ("params", "optimizer"):
            assert getattr(again, field.name) == getattr(state, field.name), field.name
    np.testing.assert_array_equal(again.params, state.params)
    np.testing.assert_array_equal(again.optimizer.state, state.optimizer.state)


# ------------------------------------------------------------------ invalid states
def edited(**changes):
    return dataclasses.replace(trained().get_state(), **changes)


def with_optimizer(**changes):
    state = trained().get_state()
    state.optimizer = dataclasses.replace(state.optimizer, **changes)
    return state


def nan_params():
    state = trained().get_state()
    state.params[4] = np.nan
    return state


def bad_rng(key, value):
    state = trained().get_state()
    state.rng["state"][key] = value
    return state


INVALID = {
    "params-shape": (lambda: edited(params=np.zeros(5)), r"shape \(5,\), expected \(51,\)"),
    "params-dtype": (lambda: edited(params=np.zeros(51, dtype=np.float32)),
                     "dtype float32, expected float64"),
    "params-list": (lambda: edited(params=[0.0] * 51), "must be a NumPy array"),
    "params-nan": (nan_params, "the weights contain NaN or infinity"),
    "rng-even-inc": (lambda: bad_rng("inc", 2), r"random generator state \(PCG64 state.inc"),
    "rng-missing": (lambda: edited(rng={"bit_generator": "PCG64"}), "random generator state"),
    "rng-unknown": (lambda: edited(rng={"bit_generator": "Nope"}), "bit generator 'Nope'"),
    "sizes": (lambda: edited(sizes=[4]), "invalid layer sizes"),
    "activation": (lambda: edited(activations=["tanh", "cubic"]), "cannot build"),
    "relu-cross-entropy": (lambda: edited(activations=["tanh", "relu"]), "cannot build"),
    "dropout": (lambda: edited(dropout=[1.5]), "cannot build"),
    "optimizer-name": (lambda: with_optimizer(name="Lion"), "unknown optimizer 'Lion'"),
    "optimizer-config": (lambda: with_optimizer(config={"learning_rate": float("nan")}),
                         "invalid Adam configuration"),
    "optimizer-steps": (lambda: with_optimizer(steps=-1), "step count"),
    "optimizer-state-shape": (lambda: with_optimizer(state=np.zeros((2, 50))),
                              r"Adam state must be an array of shape \(2, 51\)"),
    "optimizer-state-nan": (lambda: with_optimizer(state=np.full((2, 51), np.nan)),
                            "the optimizer state contains NaN or infinity"),
    "history-lengths": (lambda: edited(history={"loss": [1.0], "accuracy": []}),
                        "different lengths"),
    "history-unknown": (lambda: edited(history={"f1": [1.0]}), "unknown training history"),
    "history-type": (lambda: edited(history=cyprop.History()), "invalid training history"),
}


@pytest.mark.parametrize("case", INVALID)
def test_invalid_states_are_refused_saying_why(case):
    make, pattern = INVALID[case]
    state = make()
    with pytest.raises(InvalidState, match=pattern) as info:
        cyprop.Network.from_state(state)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith("invalid network state: ")


def test_from_state_wants_a_state():
    with pytest.raises(TypeError, match="NetworkState"):
        cyprop.Network.from_state({"sizes": [2, 1]})


def test_a_state_with_an_optimizer_from_elsewhere_is_refused():
    class Mine(cyprop.SGD):
        pass

    net = trained(optimizer=cyprop.SGD(0.1))
    net.optimizer = Mine(0.1)
    with pytest.raises(ValueError, match="optimizer is Mine"):
        net.get_state()
    net.optimizer = None
    assert cyprop.Network.from_state(net.get_state()).optimizer is None


def test_load_reports_a_state_problem_as_the_file_s(tmp_path):
    net = trained()
    net._params[0] = np.inf
    _state.write(net.get_state(), str(tmp_path / "bad"))   # a file crafted: save refuses
    with pytest.raises(ValueError, match=r"^cannot load .*: the weights contain NaN"):
        cyprop.load(tmp_path / "bad")


@pytest.mark.parametrize("spoil", ["weights", "optimizer state"])
def test_save_refuses_what_load_would_refuse_and_writes_nothing(tmp_path, spoil):
    """(It wrote the file, which load then refused: a model thought saved was lost.)"""
    net = trained()
    if spoil == "weights":
        net.weights[0][0, 0] = np.nan
    else:
        net.optimizer.state[0, 0] = np.inf
    target = tmp_path / "model.npz"
    for save in (net.save, lambda path: cyprop.persistence.save(net, path),
                 lambda path: cyprop.Ensemble([net]).save(path)):
        with pytest.raises(ValueError, match=f"cannot save this network, nothing was "
                                             f"written: .*the {spoil} contain"):
            save(target)
        assert not target.exists() and list(tmp_path.iterdir()) == []


def test_ensembles_still_save_and_load(tmp_path):
    ensemble = cyprop.Ensemble([trained(), trained(seed=None)])
    ensemble.save(tmp_path / "ens")
    again = cyprop.Ensemble.load(tmp_path / "ens", backend="numpy")
    X = data()[0]
    np.testing.assert_array_equal(again.forward(X), ensemble.forward(X))


# ------------------------------------------------------- modules depending one way
@pytest.mark.parametrize("module", ["cyprop.persistence", "cyprop.network", "cyprop._state",
                                    "cyprop._loop", "cyprop._archive"])
def test_each_module_imports_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=120)


def imported(path):
    """(module-level imports, imports inside functions or TYPE_CHECKING) of a source file,
    as the names after ``from .``."""
    tree = ast.parse(path.read_text())
    top, nested = set(), set()

    def names(node):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            return {node.module} if node.module else {a.name for a in node.names}
        return set()

    for node in tree.body:
        if isinstance(node, ast.If):   # if TYPE_CHECKING: annotations only
            for inner in ast.walk(node):
                nested |= names(inner)
        else:
            top |= names(node)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            for inner in ast.walk(node):
                nested |= names(inner)
    return top, nested


def test_network_and_persistence_depend_one_way():
    network_top, network_nested = imported(SRC / "network.py")
    assert "persistence" not in network_top | network_nested
    persistence_top, _ = imported(SRC / "persistence.py")
    assert "network" in persistence_top
    for lower in ("_state.py", "_loop.py", "_archive.py"):
        top, nested = imported(SRC / lower)
        assert not {"network", "persistence"} & top, lower
        assert "persistence" not in nested, lower


def test_the_state_file_bytes_are_what_save_writes(tmp_path):
    from cyprop import _state

    net = trained()
    net.save(tmp_path / "net")
    data_bytes = _state.file_bytes(net.get_state())
    with np.load(io.BytesIO(data_bytes)) as npz:
        saved = file_members(tmp_path / "net")
        assert sorted(npz.files) == sorted(saved)
        for name in saved:
            np.testing.assert_array_equal(npz[name], saved[name])


def test_classes_are_part_of_the_state():
    net = trained()
    net.classes = ["x", "y", "z"]
    state = net.get_state()
    assert state.classes == ["x", "y", "z"]
    assert cyprop.Network.from_state(state).classes == ("x", "y", "z")
    assert net.copy().classes == ("x", "y", "z")
    assert pickle.loads(pickle.dumps(net)).classes == ("x", "y", "z")
    with pytest.raises(InvalidState, match="invalid classes"):
        cyprop.Network.from_state(dataclasses.replace(state, classes=["x", "y"]))
