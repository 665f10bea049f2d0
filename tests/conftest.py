"""Shared fixtures and helpers for the cyprop test suite.

Parametrized fixtures (``dtype``, ``backend``, ``combo``) expand every test that asks
for them; a test narrows one by parametrizing the same name itself.  Helpers that several
test modules use are imported from here (``from conftest import run_script``).
"""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import cyprop

DTYPES = ("float64", "float32")
BACKENDS = ("cython", "numpy")
HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")
OUTPUTS = HIDDEN + ("softmax",)
# Every valid (hidden activation, output activation, loss): mse goes with any output,
# cross_entropy only with softmax or sigmoid.
COMBOS = ([(h, o, "mse") for h in HIDDEN for o in OUTPUTS]
          + [(h, o, "cross_entropy") for h in HIDDEN for o in ("softmax", "sigmoid")])

# Backend parity tolerances (the documented promise), with a small absolute floor for
# values near zero, where a relative tolerance means nothing.
RTOL = {"float64": 1e-9, "float32": 1e-4}
ATOL = {"float64": 1e-12, "float32": 1e-5}


def pytest_collection_modifyitems(config, items):
    """Leave out the parametrized cases that pair a softmax output with one output unit:
    cyprop refuses that network (a softmax over one unit is always 1), as
    test_hardening.py::test_softmax_over_one_unit_is_refused checks."""
    def refused(item):
        params = getattr(getattr(item, "callspec", None), "params", {})
        combo, sizes = params.get("combo"), params.get("sizes")
        return (isinstance(combo, tuple) and len(combo) == 3 and combo[1] == "softmax"
                and isinstance(sizes, list) and sizes and sizes[-1] == 1)
    kept = [item for item in items if not refused(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if refused(item)])
        items[:] = kept


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=COMBOS, ids=["-".join(c) for c in COMBOS])
def combo(request):
    """(activation, output, loss)"""
    return request.param


def make_data(sizes, output="softmax", n=23, seed=0):
    """Random inputs and matching targets: class labels for a multi-unit softmax,
    otherwise targets in (0, 1) (valid for every loss, soft labels for cross_entropy)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, sizes[0]))
    if output == "softmax" and sizes[-1] > 1:
        Y = rng.integers(0, sizes[-1], n)
    else:
        Y = rng.uniform(0.0, 1.0, (n, sizes[-1]))
    return X, Y


@pytest.fixture(name="make_data")
def make_data_fixture():
    return make_data


@pytest.fixture
def make_net():
    """Network(sizes, combo, ...) with the test suite's defaults (seed 0)."""
    def make(sizes, combo=("sigmoid", "softmax", "cross_entropy"), **kwargs):
        activation, output, loss = combo
        kwargs.setdefault("seed", 0)
        return cyprop.Network(sizes, activation=activation, output=output, loss=loss, **kwargs)
    return make


def flat_params(net):
    """All weights and biases of ``net`` as one float64 vector (a copy)."""
    return np.concatenate([p.ravel() for p in list(net.weights) + list(net.biases)]
                          ).astype(np.float64)


@pytest.fixture(name="flat_params")
def flat_params_fixture():
    return flat_params


@pytest.fixture
def assert_parity():
    """assert_allclose with the per-dtype parity tolerance table above."""
    def check(actual, desired, dtype, what=""):
        np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                                   np.asarray(desired, dtype=np.float64),
                                   rtol=RTOL[dtype], atol=ATOL[dtype], err_msg=what)
    return check


# ------------------------------------------------------------ helpers for several modules
#: The installed ``cyprop`` console script beside this Python.
CYPROP = Path(sys.executable).with_name("cyprop")


def run_script(cwd, *argv, timeout=120):
    """(exit status, stdout, stderr) of the installed ``cyprop`` console script, run
    in ``cwd`` (a temporary folder, outside the source tree)."""
    if not CYPROP.exists():
        pytest.skip("no cyprop console script beside this Python")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([str(CYPROP), *argv], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def as_format_1(arrays):
    """The members {name: array} of a network file as format 1 laid them out, from those
    of a file ``save`` writes: the history's records moved into the metadata's JSON,
    written out here by hand (None where ``history_none`` says so)."""
    import json

    arrays = dict(arrays)
    meta = json.loads(arrays["metadata"].tobytes().decode())
    values, none = arrays.pop("history"), arrays.pop("history_none")
    meta["format_version"] = 1
    meta["history"] = {
        "records": {name: [None if none[row, epoch] else float(values[row, epoch])
                           for epoch in range(values.shape[1])]
                    for row, name in enumerate(meta["history"]["records"])},
        "stop_reason": meta["history"]["stop_reason"]}
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    return arrays


@pytest.fixture
def permissions_as_owner(monkeypatch):
    """``os.access`` answered from the owner's permission bits: root may read, write
    and enter anything, so as root the tests of read-only files and folders would test
    nothing."""
    if os.geteuid() == 0:
        import stat

        bits = ((os.R_OK, stat.S_IRUSR), (os.W_OK, stat.S_IWUSR), (os.X_OK, stat.S_IXUSR))

        def access(path, mode, **kwargs):
            try:
                st_mode = os.stat(path).st_mode
            except OSError:
                return False
            return all(st_mode & bit for flag, bit in bits if mode & flag)

        monkeypatch.setattr(os, "access", access)


def set_nested(mapping, keys, value):
    """mapping[keys[0]][keys[1]]... = value (``KeyError`` as the value: delete it);
    returns ``mapping``.  For crafting model-file metadata by hand."""
    target = mapping
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return mapping


def fit_quietly(estimator, X, y, **kwargs):
    """``estimator.fit(X, y)`` without its ConvergenceWarning (short test fits)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y, **kwargs)


def layers_of(estimator):
    """A fitted scikit-learn MLP's (or cyprop estimator's) coefs_ then intercepts_."""
    return [*estimator.coefs_, *estimator.intercepts_]


@pytest.fixture
def without_blas():
    """The compiled kernels without a BLAS (as without SciPy) for the test, then back."""
    from cyprop import _compiled
    for kernel in _compiled.KERNELS.values():
        kernel.set_blas(None, None)
    yield
    for kernel in _compiled.KERNELS.values():
        kernel.set_blas(*(_compiled.BLAS or (None, None)))


#: SGD with momentum: heavy ball and Nesterov, with and without weight decay.
MOMENTUM = {
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "momentum-decay": dict(momentum=0.8, weight_decay=0.02),
    "nesterov-decay": dict(momentum=0.7, nesterov=True, weight_decay=0.02),
}


def train_on_both_backends(sizes, combo, dtype, optimizer, batch_size, path, n=45, epochs=3,
                           shuffle=True, instruction_set=None, sample_weight=None):
    """The same network trained on the compiled core and on the NumPy reference, the
    compiled one checked to have planned ``path``: (networks, optimizers) by backend."""
    from cyprop import _compiled
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
            assert net._impl.plan(net.arch, optimizer, batch_size).path == path
        optimizers[backend] = type(optimizer)(**optimizer.get_config())
        net.fit(X, Y, epochs=epochs, batch_size=batch_size, shuffle=shuffle, seed=1,
                optimizer=optimizers[backend], verbose=0, sample_weight=sample_weight)
        nets[backend] = net
    return nets, optimizers


def assert_same_training(nets, optimizers, dtype, assert_parity):
    """The two backends' training (train_on_both_backends) gave the same parameters,
    optimizer state (the momentum buffers too), steps and records."""
    cy, ref = nets["cython"], nets["numpy"]
    for l, (a, b) in enumerate(zip(cy.weights + cy.biases, ref.weights + ref.biases)):
        assert_parity(a, b, dtype, f"parameters {l}")
    assert optimizers["cython"].steps == optimizers["numpy"].steps
    assert_parity(optimizers["cython"].state, optimizers["numpy"].state, dtype, "state")
    assert_parity(cy.history.loss, ref.history.loss, dtype, "history loss")
    assert cy.history.accuracy == ref.history.accuracy


def assert_refuses_a_fifo_in_a_child(tmp_path, name, call, what):
    """Run ``call`` (Python code writing to the path sys.argv[1]) on a FIFO ``name`` in
    ``tmp_path``, in a child: opening a FIFO to write blocks until someone reads it, so
    a writer that opens it hangs the child, and the test fails instead of hanging.  The
    writer must refuse it with a ValueError, and write nothing beside it."""
    import os
    import subprocess
    import sys
    fifo = tmp_path / name
    os.mkfifo(fifo)
    code = f"import sys\ntry:\n    {call}\nexcept ValueError as exc:\n    print(exc)\n"
    try:
        done = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:   # (run has killed the child)
        pytest.fail(f"{what} blocked on a FIFO")
    assert done.returncode == 0 and "it is a FIFO, not a regular file" in done.stdout, \
        done.stdout + done.stderr
    assert sorted(os.listdir(tmp_path)) == [name]


def assert_failed_write_keeps_the_file(monkeypatch, path, write, write_again):
    """``write(path)``, then ``write_again(path)`` (other content) failing as a full disk
    fails, in fsync: the first file must be left whole and nothing beside it (an atomic
    write: a temporary file renamed over it, removed on failure)."""
    write(path)
    before = path.read_bytes()

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_again(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == [path.name]
    return before
