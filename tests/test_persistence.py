"""Saving and loading networks (cyprop.persistence), pickling and deep copies."""

import copy
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

import cyprop
from cyprop import persistence
from conftest import as_format_1, set_nested

BACKENDS = cyprop.available_backends()

ARCHITECTURES = [
    dict(sizes=[4, 3]),                                               # no hidden layer
    dict(sizes=[4, 5, 3], activation="sigmoid"),
    dict(sizes=[4, 6, 5, 1], activation=["tanh", "relu"]),            # sigmoid output
    dict(sizes=[4, 7, 2], activation="leaky_relu", output="identity", loss="mse", init="he"),
]


def data(n_outputs, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    if n_outputs == 1:
        return X, (X[:, 0] > 0).astype(float)
    return X, rng.integers(0, n_outputs, n)


def trained(sizes=(4, 5, 3), dtype="float64", backend="numpy", optimizer=None, epochs=2,
            **kwargs):
    net = cyprop.Network(list(sizes), dtype=dtype, seed=1, backend=backend, **kwargs)
    X, Y = data(net.arch.n_outputs)
    net.fit(X, Y, epochs=epochs, batch_size=7,
            optimizer=optimizer or cyprop.SGD(0.1, momentum=0.9))
    return net


def assert_same(a, b, timings=True):
    """Everything that defines the network and its training continuation, bit for bit
    (``timings=False``: except the measured seconds, for networks trained apart)."""
    assert a.arch == b.arch and a.dtype == b.dtype and a._params.dtype == b._params.dtype
    assert a._params.tobytes() == b._params.tobytes()
    assert (a.init, a.seed) == (b.init, b.seed)
    assert a._rng.bit_generator.state == b._rng.bit_generator.state
    if a.optimizer is None:
        assert b.optimizer is None
    else:
        assert type(a.optimizer) is type(b.optimizer)
        assert a.optimizer.get_config() == b.optimizer.get_config()
        assert a.optimizer.steps == b.optimizer.steps
        if a.optimizer.state is None:
            assert b.optimizer.state is None
        else:
            assert a.optimizer.state.dtype == b.optimizer.state.dtype
            assert a.optimizer.state.tobytes() == b.optimizer.state.tobytes()
            assert b.optimizer.state.flags.c_contiguous and b.optimizer.state.flags.writeable
    skip = () if timings else ("seconds", "samples_per_second")
    assert ({k: v for k, v in a.history.to_dict().items() if k not in skip}
            == {k: v for k, v in b.history.to_dict().items() if k not in skip})
    assert a.history.stop_reason == b.history.stop_reason


def members(path):
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def metadata_of(arrays):
    return json.loads(arrays["metadata"].tobytes().decode())


def rewrite(path, arrays):
    """Replace the file by an .npz of ``arrays`` (exactly at ``path``)."""
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def with_metadata(arrays, meta):
    text = json.dumps(meta).encode()
    return {**arrays, "metadata": np.frombuffer(text, dtype=np.uint8)}


@pytest.fixture
def saved(tmp_path):
    net = trained(backend=BACKENDS[0])
    path = tmp_path / "model.npz"
    net.save(path)
    return net, path


def load_error(path):
    with pytest.raises(ValueError) as info:
        cyprop.load(path)
    message = str(info.value)
    assert message.startswith(f"cannot load {os.fspath(path)!r}: ")
    return message


# --------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", ARCHITECTURES, ids=lambda s: "-".join(map(str, s["sizes"])))
def test_round_trip_untrained(tmp_path, spec, dtype):
    net = cyprop.Network(dtype=dtype, seed=3, backend="numpy", **spec)
    net.save(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz", backend="numpy")
    assert_same(net, back)
    assert back.optimizer is None and back.history.epochs == 0
    assert back.activations == net.activations and back.loss_name == net.loss_name
    X, _ = data(net.arch.n_outputs)
    assert net.forward(X).tobytes() == back.forward(X).tobytes()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("spec", ARCHITECTURES, ids=lambda s: "-".join(map(str, s["sizes"])))
def test_round_trip_trained(tmp_path, spec, dtype, backend):
    spec = dict(spec)
    net = trained(spec.pop("sizes"), dtype=dtype, backend=backend,
                  optimizer=cyprop.SGD(0.05, momentum=0.5, nesterov=True, weight_decay=1e-3),
                  **spec)
    net.save(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz", backend=backend)
    assert_same(net, back)
    assert back.backend == backend and back.history.epochs == 2
    assert back.history.stop_reason == "epochs"


def test_round_trip_optimizer_without_state(tmp_path):
    net = cyprop.Network([4, 3], seed=0)
    net.optimizer = cyprop.SGD(0.2)                    # assigned, never stepped
    net.save(tmp_path / "m.npz")
    assert "optimizer_state" not in members(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz")
    assert_same(net, back)
    assert back.optimizer.state is None and back.optimizer.steps == 0


def test_round_trip_keeps_history_values_and_none(tmp_path):
    net = trained()
    net.history.val_loss[-1] = 0.25                    # others stay None
    net.history.samples_per_second[0] = float("inf")   # what fit records for a 0 s epoch
    net.save(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz")
    assert_same(net, back)
    assert back.history.val_loss == [None, 0.25] and back.history.samples_per_second[0] == np.inf


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_continued_training_is_identical(tmp_path, backend, dtype):
    # Momentum state, step count and the shuffling generator must all survive.
    X, y = data(3, n=53)
    a = cyprop.Network([4, 6, 3], dtype=dtype, seed=5, backend=backend)
    a.fit(X, y, epochs=3, batch_size=8, optimizer=cyprop.SGD(0.1, momentum=0.9))
    a.save(tmp_path / "m.npz")
    b = cyprop.load(tmp_path / "m.npz", backend=backend)
    a.fit(X, y, epochs=3, batch_size=8)
    b.fit(X, y, epochs=3, batch_size=8)
    assert a._params.tobytes() == b._params.tobytes()
    assert a.optimizer.state.tobytes() == b.optimizer.state.tobytes()
    assert a.optimizer.steps == b.optimizer.steps == 6 * 7
    assert a.history.loss == b.history.loss


def test_load_chooses_backend(saved):
    _, path = saved
    for backend in BACKENDS:
        assert cyprop.load(path, backend=backend).backend == backend
    with pytest.raises(ValueError, match="unknown backend"):
        cyprop.load(path, backend="gpu")


def test_path_without_suffix_is_written_exactly(tmp_path):
    net = cyprop.Network([4, 3], seed=0)
    net.save(tmp_path / "model")
    net.save(str(tmp_path / "other.bin"))
    assert sorted(os.listdir(tmp_path)) == ["model", "other.bin"]
    assert_same(net, cyprop.load(str(tmp_path / "model")))
    assert_same(net, cyprop.load(tmp_path / "other.bin"))


def test_file_is_plain_npz(saved):
    net, path = saved
    arrays = members(path)
    assert sorted(arrays) == ["biases_0", "biases_1", "history", "history_none", "metadata",
                              "optimizer_state", "weights_0", "weights_1"]
    for layer, W in enumerate(net.weights):
        assert arrays[f"weights_{layer}"].tobytes() == W.tobytes()
    meta = metadata_of(arrays)
    assert meta["format"] == "cyprop-network"
    assert meta["format_version"] == persistence.FORMAT_VERSION
    assert meta["sizes"] == [4, 5, 3] and meta["optimizer"]["name"] == "SGD"
    # the history: a row per record, a column per epoch, None marked apart
    assert meta["history"] == {"records": list(cyprop.History.KEYS), "epochs": 2,
                               "stop_reason": "epochs"}
    loss, val_loss = (cyprop.History.KEYS.index(key) for key in ("loss", "val_loss"))
    assert arrays["history"].dtype == np.float64 and arrays["history_none"].dtype == bool
    assert arrays["history"][loss].tolist() == net.history.loss
    assert not arrays["history_none"][loss].any() and arrays["history_none"][val_loss].all()


def test_save_overwrites_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "m.npz"
    cyprop.Network([4, 3], seed=0).save(path)
    net = cyprop.Network([4, 5, 3], seed=1)
    net.save(path)
    assert os.listdir(tmp_path) == ["m.npz"]
    assert_same(net, cyprop.load(path))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_saved_file_has_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        cyprop.Network([4, 3], seed=0).save(tmp_path / "m.npz")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.npz").st_mode & 0o777 == 0o644


def test_unsupported_optimizer_is_refused_before_writing(tmp_path):
    class MySGD(cyprop.SGD):
        pass

    net = cyprop.Network([4, 3], seed=0)
    net.optimizer = MySGD(0.1)
    with pytest.raises(ValueError, match="MySGD"):
        net.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_state_from_another_network_is_saved_as_none(tmp_path):
    # Optimizer.state_for would discard it on the next step anyway.
    X, y = data(3)
    opt = cyprop.SGD(0.1, momentum=0.9)
    cyprop.Network([4, 8, 3], seed=0).fit(X, y, epochs=1, optimizer=opt)
    net = cyprop.Network([4, 3], seed=0)
    net.optimizer = opt
    net.save(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz")
    assert back.optimizer.state is None and back.optimizer.steps == 0


# ------------------------------------------------------------------- atomic saving
def test_failed_save_keeps_previous_file(tmp_path, monkeypatch, saved):
    good, path = saved
    before = path.read_bytes()

    def half_then_fail(fh, **arrays):
        fh.write(b"PK\x03\x04 partial data")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        cyprop.Network([4, 9, 3], seed=2).save(path)
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.npz"]
    assert_same(good, cyprop.load(path))


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_interrupted_save_cleans_up(tmp_path, monkeypatch, saved, where):
    _, path = saved
    before = path.read_bytes()

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, where, interrupt)
    with pytest.raises(KeyboardInterrupt):
        cyprop.Network([4, 9, 3], seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.npz"]


def test_save_into_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        cyprop.Network([4, 3]).save(tmp_path / "nowhere" / "m.npz")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------- bad files
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        cyprop.load(tmp_path / "absent.npz")


def test_directory(tmp_path):
    with pytest.raises(OSError):
        cyprop.load(tmp_path)


@pytest.mark.parametrize("content, problem", [
    (b"", "empty"),
    (b"sizes = [4, 5, 3]\nweights = ...\n", "not an .npz"),
    (b"\x93NUMPY\x01\x00", "not an .npz"),
    (b"PK\x03\x04", "truncated or corrupted"),
])
def test_not_a_model(tmp_path, content, problem):
    path = tmp_path / "m.npz"
    path.write_bytes(content)
    assert problem in load_error(path)


def test_plain_npy_file(tmp_path):
    path = tmp_path / "m.npz"
    np.save(path.open("wb"), np.zeros(3))
    assert "not an .npz" in load_error(path)


def test_foreign_npz(tmp_path):
    path = tmp_path / "m.npz"
    rewrite(path, {"x": np.zeros(3), "y": np.arange(4)})
    assert "not a cyprop network file" in load_error(path)


def test_foreign_metadata(tmp_path):
    path = tmp_path / "m.npz"
    rewrite(path, with_metadata({}, {"format": "something-else", "version": 1}))
    assert "not a cyprop network file" in load_error(path)
    rewrite(path, {"metadata": np.array("a string")})
    assert "dtype" in load_error(path)


def test_other_zip_file(tmp_path):
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "hello")
    assert "not a cyprop network file" in load_error(path)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99])
def test_truncated(saved, fraction):
    _, path = saved
    content = path.read_bytes()
    path.write_bytes(content[:max(1, int(len(content) * fraction))])
    message = load_error(path)
    assert "truncated or corrupted" in message or "not an .npz" in message


@pytest.mark.parametrize("cut", [1, 2, 22, 23, 100])
def test_truncated_at_the_end(saved, cut):
    # The zip directory lives at the end: short cuts must fail too.
    _, path = saved
    path.write_bytes(path.read_bytes()[:-cut])
    assert "truncated or corrupted" in load_error(path)


def test_fuzzed_bytes_fail_cleanly(saved):
    """Random byte changes: a ValueError naming the file, or (for bytes zip does not
    use, such as timestamps) the very same network.  Never anything else."""
    good, path = saved
    content = path.read_bytes()
    rng = np.random.default_rng(1234)
    failures = 0
    for trial in range(400):
        mutated = bytearray(content)
        for _ in range(rng.integers(1, 4)):
            # Half the hits go to the zip and .npy headers at either end, where a
            # change is least likely to be caught by a mere checksum.
            if rng.random() < 0.5:
                position = int(rng.integers(len(content)))
            elif rng.random() < 0.5:
                position = int(rng.integers(200))
            else:
                position = len(content) - 1 - int(rng.integers(300))
            mutated[position] = (mutated[position] + int(rng.integers(1, 256))) % 256
        path.write_bytes(bytes(mutated))
        try:
            back = cyprop.load(path, backend=good.backend)
        except ValueError as exc:
            assert str(exc).startswith(f"cannot load {os.fspath(path)!r}: "), exc
            failures += 1
        else:
            assert_same(good, back)
    assert failures > 300


def test_newer_format_version(saved):
    _, path = saved
    arrays = members(path)
    meta = metadata_of(arrays)
    meta["format_version"] = persistence.FORMAT_VERSION + 1
    rewrite(path, with_metadata(arrays, meta))
    message = load_error(path)
    assert "newer cyprop" in message and "upgrade" in message


@pytest.mark.parametrize("name, replacement, problem", [
    ("weights_0", lambda a: a.T, "shape"),
    ("weights_1", lambda a: a[:, :-1], "shape"),
    ("biases_0", lambda a: a[:, None], "shape"),
    ("biases_1", lambda a: a.astype(np.float32), "dtype float32, expected float64"),
    ("weights_0", lambda a: a.astype(np.int64), "dtype"),
    ("optimizer_state", lambda a: a[0], "shape"),
    ("optimizer_state", lambda a: np.vstack([a, a]), "shape"),
    ("weights_1", lambda a: np.full_like(a, np.nan), "NaN"),
    ("optimizer_state", lambda a: np.full_like(a, np.inf), "NaN or infinity"),
    ("metadata", lambda a: a.astype(np.int16), "dtype"),
    ("history", lambda a: a.astype(np.float32), "array 'history' has dtype float32"),
    ("history_none", lambda a: a.astype(np.uint8), "array 'history_none' has dtype uint8"),
    ("history_none", lambda a: a[:, :1], "array 'history_none' has shape (8, 1)"),
])
def test_altered_array(saved, name, replacement, problem):
    _, path = saved
    arrays = members(path)
    arrays[name] = replacement(arrays[name])
    rewrite(path, arrays)
    message = load_error(path)
    assert problem in message
    if name != "metadata":
        assert name in message or "NaN" in message


def test_object_array_is_not_unpickled(saved, monkeypatch):
    _, path = saved
    arrays = members(path)
    arrays["weights_0"] = np.empty(arrays["weights_0"].shape, dtype=object)
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)                # pickles the object array
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    assert "dtype object" in load_error(path)


def test_big_endian_arrays_are_read(saved):
    good, path = saved
    arrays = members(path)
    rewrite(path, {k: v if k == "metadata" else v.astype(v.dtype.newbyteorder(">"))
                   for k, v in arrays.items()})
    back = cyprop.load(path, backend=good.backend)
    assert_same(good, back)
    assert back.optimizer.state.dtype.isnative


@pytest.mark.parametrize("name", ["weights_0", "biases_1", "optimizer_state", "history",
                                  "history_none"])
def test_missing_array(saved, name):
    _, path = saved
    arrays = members(path)
    del arrays[name]
    rewrite(path, arrays)
    message = load_error(path)
    assert "missing" in message and name in message


def test_missing_metadata(saved):
    _, path = saved
    arrays = members(path)
    del arrays["metadata"]
    rewrite(path, arrays)
    assert "not a cyprop network file" in load_error(path)


def test_unexpected_array(saved):
    _, path = saved
    rewrite(path, {**members(path), "weights_9": np.zeros(3)})
    assert "unexpected entries 'weights_9.npy'" in load_error(path)


def test_metadata_not_json(saved):
    _, path = saved
    arrays = members(path)
    arrays["metadata"] = np.frombuffer(b'{"format": "cyprop-network", ', dtype=np.uint8)
    rewrite(path, arrays)
    assert "not valid JSON" in load_error(path)
    arrays["metadata"] = np.frombuffer(b"\xff\xfe", dtype=np.uint8)
    rewrite(path, arrays)
    assert "not valid JSON" in load_error(path)



@pytest.mark.parametrize("keys, value, problem", [
    (["format_version"], "1", "invalid format version"),
    (["format_version"], 0, "invalid format version"),
    (["sizes"], KeyError, "lacks 'sizes'"),
    (["history"], KeyError, "lacks 'history'"),
    (["sizes"], [4, 5], "invalid activations"),
    (["sizes"], [4, 0, 3], "invalid layer sizes"),
    (["sizes"], [4, 5.0, 3], "invalid layer sizes"),
    (["sizes"], [4, True, 3], "invalid layer sizes"),
    (["sizes"], [4, 2 ** 70, 3], "invalid layer sizes"),
    (["sizes"], [4, 6, 3], "shape"),
    (["sizes"], [4, 5000000, 3], "their arrays need"),
    (["activations"], ["sigmoid", "swish"], "invalid activations"),
    (["activations"], ["softmax", "softmax"], "cannot build"),
    (["activations"], ["sigmoid", "relu"], "cannot build"),
    (["loss"], "hinge", "invalid loss"),
    (["dtype"], "float16", "invalid dtype"),
    (["dtype"], "float32", "dtype float64, expected float32"),
    (["init"], "zeros", "cannot build"),
    (["seed"], "7", "invalid seed"),
    (["seed"], -1, "invalid seed"),
    (["seed"], 2 ** 128, "invalid seed"),
    (["rng", "bit_generator"], "os.system", "random generator"),
    (["rng", "state"], "oops", "random generator"),
    (["rng", "state", "inc"], KeyError, "random generator"),
    (["optimizer", "name"], "Adamax", "unknown optimizer"),
    (["optimizer", "name"], "__class__", "unknown optimizer"),
    (["optimizer", "config"], {"learning_rate": -1.0}, "invalid SGD configuration"),
    (["optimizer", "config"], {"lr": 0.1}, "invalid SGD configuration"),
    (["optimizer", "config"], [0.1], "invalid optimizer config"),
    (["optimizer", "steps"], -1, "step count"),
    (["optimizer", "has_state"], False, "unexpected entries 'optimizer_state.npy'"),
    (["optimizer", "extra"], 1, "invalid optimizer entry"),
    (["history", "stop_reason"], 3, "invalid training history"),
    (["history", "epochs"], -1, "its epochs -1 are not a count"),
    (["history", "epochs"], 2.0, "its epochs 2.0 are not a count"),
    (["history", "epochs"], 3, "array 'history' has shape (8, 2), expected (8, 3)"),
    (["history", "epochs"], 10 ** 12, "1000000000000 epochs need"),
    (["history", "records"], ["loss"] * 8, "are not distinct names"),
    (["history", "records"], {"loss": [0.5, 0.4]}, "are not distinct names"),
    (["history", "records"], list(cyprop.History.KEYS)[:7],
     "array 'history' has shape (8, 2), expected (7, 2)"),
    (["history", "extra"], 1, "invalid training history"),
])
def test_invalid_metadata(saved, keys, value, problem):
    assert_metadata_refused(saved[1], keys, value, problem)


@pytest.mark.parametrize("keys, value, problem", [
    (["history", "records", "loss"], ["0.5", 0.4], "history record 'loss'"),
    (["history", "records", "loss"], [0.5], "different lengths"),
    (["history", "records"], ["loss"], "invalid training history"),
    (["history", "stop_reason"], 3, "invalid training history"),
])
def test_invalid_metadata_of_format_1(saved, keys, value, problem):
    # files of format 1 hold the records in the metadata
    _, path = saved
    rewrite(path, as_format_1(members(path)))
    assert_metadata_refused(path, keys, value, problem)


def test_file_of_format_1_loads(saved):
    good, path = saved
    good.history.val_loss[-1] = 0.25
    good.history.samples_per_second[0] = float("inf")
    good.save(path)
    rewrite(path, as_format_1(members(path)))
    assert metadata_of(members(path))["format_version"] == 1
    back = cyprop.load(path)
    assert_same(good, back)
    assert back.history.val_loss == [None, 0.25]
    assert back.history.samples_per_second[0] == np.inf


def test_long_history_of_format_1_loads_once_the_limit_is_raised(tmp_path, monkeypatch):
    # Files of format 1 held the history in the metadata: one of a long stream came to
    # more than the metadata load reads by default, and the error says how to read it.
    net = cyprop.Network([3, 2], seed=0)
    net.history.loss = [0.5] * 2000
    for key in set(cyprop.History.KEYS) - {"loss"}:
        setattr(net.history, key, [None] * 2000)
    path = tmp_path / "old.npz"
    net.save(path)
    rewrite(path, as_format_1(members(path)))
    size = len(members(path)["metadata"])
    monkeypatch.setattr(persistence, "METADATA_LIMIT", size - 1)
    assert "raise cyprop.persistence.METADATA_LIMIT" in load_error(path)
    monkeypatch.setattr(persistence, "METADATA_LIMIT", size + 1024)   # (and the .npy header)
    assert cyprop.load(path).history.loss == [0.5] * 2000


def test_long_history_round_trip(tmp_path):
    # A stream of one-row partial_fit calls records an epoch each: 150,000 of them held in
    # the metadata's JSON came to more than the metadata load reads (METADATA_LIMIT), so
    # such a network was saved but could not be loaded.
    net = cyprop.Network([3, 2], seed=0)
    epochs = 150_000
    rng = np.random.default_rng(0)
    for key in cyprop.History.KEYS:
        setattr(net.history, key, rng.random(epochs).tolist())
    net.history.val_loss = [None] * epochs
    net.history.stop_reason = "epochs"
    path = tmp_path / "stream.npz"
    net.save(path)
    assert len(metadata_of(members(path))["history"]) < 1000
    back = cyprop.load(path)
    assert back.history.to_dict() == net.history.to_dict()


def assert_metadata_refused(path, keys, value, problem):
    """Set one metadata field of the file at path to value: load must refuse it."""
    arrays = members(path)
    meta = metadata_of(arrays)
    set_nested(meta, keys, value)
    rewrite(path, with_metadata(arrays, meta))
    assert problem in load_error(path)


def test_metadata_not_an_object(saved):
    _, path = saved
    rewrite(path, with_metadata(members(path), [1, 2, 3]))
    assert "not a cyprop network file" in load_error(path)


def test_history_records_missing_or_unknown(saved):
    # Records added or dropped between cyprop versions do not make a file unreadable.
    good, path = saved
    arrays = members(path)
    meta = metadata_of(arrays)
    seconds = cyprop.History.KEYS.index("seconds")
    meta["history"]["records"][seconds] = "gradient_norm"
    rewrite(path, with_metadata(arrays, meta))
    back = cyprop.load(path)
    assert back.history.seconds == [None, None]
    assert back.history.loss == good.history.loss


def test_history_records_missing_or_unknown_in_format_1(saved):
    good, path = saved
    arrays = as_format_1(members(path))
    meta = metadata_of(arrays)
    del meta["history"]["records"]["seconds"]
    meta["history"]["records"]["gradient_norm"] = [1.0, 2.0]
    rewrite(path, with_metadata(arrays, meta))
    back = cyprop.load(path)
    assert back.history.seconds == [None, None]
    assert back.history.loss == good.history.loss


# --------------------------------------------------------------- pickle, deepcopy
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("clone", [
    lambda net: pickle.loads(pickle.dumps(net)),
    lambda net: pickle.loads(pickle.dumps(net, protocol=2)),
    lambda net: pickle.loads(pickle.dumps(net, protocol=5)),
    copy.deepcopy,
    copy.copy,
    lambda net: net.copy(),
], ids=["pickle", "pickle2", "pickle5", "deepcopy", "copy.copy", "copy"])
def test_pickle_and_deepcopy(backend, clone):
    X, y = data(3)
    net = trained(backend=backend)
    twin = clone(net)
    assert_same(net, twin)
    assert twin.backend == backend and twin._params is not net._params
    assert twin.optimizer is not net.optimizer and twin.optimizer.state is not net.optimizer.state
    assert twin._rng is not net._rng   # (a shared generator: one trained moves the other)
    net.fit(X, y, epochs=2, batch_size=7)             # each trains with its own lock
    twin.fit(X, y, epochs=2, batch_size=7)
    assert_same(net, twin, timings=False)
    twin.weights[0][...] = 0.0                        # independent parameters
    assert np.any(net.weights[0] != 0.0)


@pytest.mark.parametrize("clone", [pickle.dumps, copy.deepcopy, copy.copy,
                                   lambda net: net.copy()],
                         ids=["pickle", "deepcopy", "copy", "Network.copy"])
def test_a_network_that_could_not_be_unpickled_is_not_pickled(clone):
    """Weights set to NaN in place: pickling used to succeed, and the pickle (or the copy
    made from it) failed to load with 'cannot unpickle'; save refuses such a network
    too."""
    net = trained()
    net.weights[0][0, 0] = np.nan
    with pytest.raises(ValueError, match="cannot copy or pickle this Network: the "
                                         "weights contain NaN or infinity"):
        clone(net)


def test_pickle_of_loaded_network(saved):
    _, path = saved
    net = cyprop.load(path)
    assert_same(net, pickle.loads(pickle.dumps(net)))


def test_save_to_file_object_is_not_supported(tmp_path):
    # ``path`` is a path: atomic replacement needs a directory entry to rename onto.
    with pytest.raises(TypeError):
        cyprop.Network([4, 3]).save(io.BytesIO())


def test_header_claiming_huge_array_is_refused_before_reading(saved):
    # Metadata and .npy header agree on a 20-million-element layer, but the file holds
    # a few bytes: refused from the sizes alone, before anything is allocated.
    from numpy.lib import format as npy_format

    _, path = saved
    arrays = members(path)
    meta = metadata_of(arrays)
    meta["sizes"] = [4, 5_000_000, 3]
    meta["optimizer"] = None
    arrays = with_metadata(arrays, meta)
    header = io.BytesIO()
    npy_format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (5_000_000, 4)})
    with zipfile.ZipFile(path, "w") as zf:
        for name in ("metadata", "biases_0", "weights_1", "biases_1", "history",
                     "history_none"):
            buffer = io.BytesIO()
            np.save(buffer, arrays[name])
            zf.writestr(name + ".npy", buffer.getvalue())
        zf.writestr("weights_0.npy", header.getvalue() + b"\0" * 64)
    assert "invalid layer sizes [4, 5000000, 3]: their arrays need" in load_error(path)


def test_duplicate_entries(saved):
    _, path = saved
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("weights_0.npy", b"")
    assert "duplicate entries" in load_error(path)


# ------------------------------------- dropout, max-norm and the initial learning rate
# Added to format 1 after its first files: new files hold them, files without them load
# as the networks they were (no dropout, no max-norm, the schedule base = the rate).
def assert_same_training_setup(a, b):
    assert a.dropout == b.dropout and a.max_norm == b.max_norm
    assert a.optimizer.learning_rate == b.optimizer.learning_rate
    assert a.optimizer.initial_learning_rate == b.optimizer.initial_learning_rate


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dropout, max_norm", [(0.25, 1.5), ([0.4, 0.0], None),
                                               ([0.0, 0.3], 0.8)])
def test_round_trip_dropout_and_max_norm(tmp_path, backend, dtype, dropout, max_norm):
    X, y = data(3, n=30)
    net = cyprop.Network([4, 6, 5, 3], dtype=dtype, seed=4, backend=backend, dropout=dropout,
                         max_norm=max_norm)
    net.fit(X, y, epochs=2, batch_size=4, optimizer=cyprop.Adam(0.05), verbose=0)
    net.save(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz", backend=backend)
    assert_same(net, back)
    assert_same_training_setup(net, back)
    assert back.dropout == (dropout if isinstance(dropout, list) else [dropout] * 2)
    assert back.max_norm == (max_norm or 0.0)
    # Training goes on identically: same masks (drawn from the saved generator), same
    # constraint, same optimizer state.
    for n in (net, back):
        n.fit(X, y, epochs=2, batch_size=4, verbose=0)
    assert net._params.tobytes() == back._params.tobytes()
    if max_norm:
        assert all(np.linalg.norm(W.astype(np.float64), axis=1).max() <= max_norm * (1 + 1e-6)
                   for W in back.weights)


def test_round_trip_without_dropout_or_hidden_layers(tmp_path):
    for sizes in ([4, 3], [4, 5, 3]):
        net = cyprop.Network(sizes, seed=0)
        net.save(tmp_path / "m.npz")
        meta = metadata_of(members(tmp_path / "m.npz"))
        assert meta["dropout"] == [0.0] * (len(sizes) - 2) and meta["max_norm"] == 0.0
        back = cyprop.load(tmp_path / "m.npz")
        assert back.dropout == net.dropout and back.max_norm == 0.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_initial_learning_rate_survives_a_schedule(tmp_path, backend):
    # get_config() holds the rate the schedule left (0.2 * 0.5 ** 2); the loaded optimizer
    # must scale the original 0.2 in the next fit, as the saved network would.
    X, y = data(3, n=30)
    schedule = cyprop.schedules.StepDecay(step_size=1, gamma=0.5)
    net = cyprop.Network([4, 6, 3], seed=2, backend=backend)
    net.fit(X, y, epochs=3, batch_size=5, optimizer=cyprop.SGD(0.2, momentum=0.5),
            schedule=schedule, verbose=0)
    assert net.optimizer.learning_rate == pytest.approx(0.05)
    net.save(tmp_path / "m.npz")
    meta = metadata_of(members(tmp_path / "m.npz"))
    assert meta["optimizer"]["initial_learning_rate"] == 0.2
    assert meta["optimizer"]["config"]["learning_rate"] == pytest.approx(0.05)
    back = cyprop.load(tmp_path / "m.npz", backend=backend)
    assert_same(net, back)
    assert_same_training_setup(net, back)
    for n in (net, back):
        h = n.fit(X, y, epochs=2, batch_size=5, schedule=schedule, verbose=0)
        assert h.learning_rate == [0.2, 0.1]
    assert net._params.tobytes() == back._params.tobytes()


def test_files_without_the_newer_fields_still_load(saved):
    good, path = saved
    arrays = members(path)
    meta = metadata_of(arrays)
    del meta["dropout"], meta["max_norm"], meta["optimizer"]["initial_learning_rate"]
    meta["optimizer"]["config"]["learning_rate"] = 0.07
    rewrite(path, with_metadata(arrays, meta))
    back = cyprop.load(path)
    assert back.dropout == [0.0] and back.max_norm == 0.0
    assert back.optimizer.learning_rate == back.optimizer.initial_learning_rate == 0.07
    assert back._params.tobytes() == good._params.tobytes()


@pytest.mark.parametrize("keys, value, problem", [
    (["dropout"], [0.1, 0.2], "invalid dropout rates"),      # one hidden layer
    (["dropout"], [], "invalid dropout rates"),
    (["dropout"], [1.0], "invalid dropout rates"),
    (["dropout"], [-0.1], "invalid dropout rates"),
    (["dropout"], ["0.1"], "invalid dropout rates"),
    (["dropout"], [True], "invalid dropout rates"),
    (["dropout"], 0.1, "invalid dropout rates"),
    (["max_norm"], -1.0, "invalid max_norm"),
    (["max_norm"], "2", "invalid max_norm"),
    (["max_norm"], None, "invalid max_norm"),
    (["max_norm"], float("inf"), "invalid max_norm"),
    (["optimizer", "initial_learning_rate"], 0.0, "invalid initial learning rate"),
    (["optimizer", "initial_learning_rate"], -0.1, "invalid initial learning rate"),
    (["optimizer", "initial_learning_rate"], "0.1", "invalid initial learning rate"),
    (["optimizer", "initial_learning_rate"], float("nan"), "invalid initial learning rate"),
])
def test_invalid_newer_fields(saved, keys, value, problem):
    assert_metadata_refused(saved[1], keys, value, problem)


@pytest.mark.parametrize("clone", [lambda net: pickle.loads(pickle.dumps(net)), copy.deepcopy],
                         ids=["pickle", "deepcopy"])
def test_pickle_keeps_dropout_max_norm_and_initial_rate(clone):
    X, y = data(3)
    net = cyprop.Network([4, 5, 3], seed=1, dropout=0.2, max_norm=3.0)
    net.fit(X, y, epochs=2, optimizer=cyprop.SGD(0.1),
            schedule=cyprop.schedules.InverseScaling(1.0), verbose=0)
    twin = clone(net)
    assert_same(net, twin)
    assert_same_training_setup(net, twin)


@pytest.mark.parametrize("schedule", [cyprop.schedules.Cosine(period=3),
                                      cyprop.schedules.StepDecay(1, gamma=1e-200)],
                         ids=["cosine", "step-decay-underflow"])
def test_network_whose_schedule_reached_rate_zero_loads(tmp_path, schedule):
    # A finished Cosine (min_rate 0) leaves the optimizer at exactly 0, which the
    # optimizer's constructor refuses: the file must load all the same.
    X, y = data(3)
    net = cyprop.Network([4, 5, 3], seed=0)
    net.fit(X, y, epochs=4, optimizer=cyprop.SGD(0.1, momentum=0.5), schedule=schedule,
            verbose=0)
    assert net.optimizer.learning_rate == 0.0
    net.save(tmp_path / "m.npz")
    back = cyprop.load(tmp_path / "m.npz")
    assert_same(net, back)
    assert_same_training_setup(net, back)
    assert back.optimizer.initial_learning_rate == 0.1


def _history_header(shape, descr):
    from numpy.lib import format as npy_format

    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False,
                                               "shape": shape})
    return header.getvalue()


@pytest.mark.parametrize("epochs", [10 ** 30, 10 ** 18, 3])
def test_history_of_epochs_without_records_is_refused(saved, epochs):
    # No record names: the history arrays are empty whatever the epochs, so the file's
    # size bounds nothing (a count beyond NumPy's index range failed unnamed).
    _, path = saved
    arrays = members(path)
    meta = metadata_of(arrays)
    meta["history"].update(records=[], epochs=epochs)
    arrays = with_metadata(arrays, meta)
    with zipfile.ZipFile(path, "w") as zf:
        for name, array in arrays.items():
            if name in ("history", "history_none"):
                descr = "<f8" if name == "history" else "|b1"
                zf.writestr(name + ".npy", _history_header((0, epochs), descr))
            else:
                buffer = io.BytesIO()
                np.save(buffer, array)
                zf.writestr(name + ".npy", buffer.getvalue())
    assert f"{epochs} epochs but no records" in load_error(path)


def test_history_of_unknown_records_keeps_its_epochs(saved):
    # (a newer cyprop's records, none of them known here: the epochs are still those
    # the file has, each record None)
    _, path = saved
    arrays = members(path)
    meta = metadata_of(arrays)
    meta["history"]["records"] = [f"record_{i}" for i in range(len(cyprop.History.KEYS))]
    rewrite(path, with_metadata(arrays, meta))
    back = cyprop.load(path)
    assert back.history.epochs == 2
    assert back.history.to_dict() == {key: [None, None] for key in cyprop.History.KEYS}


def test_metadata_load_would_not_read_is_refused_by_save(tmp_path):
    # A stop_reason of 17 MB made metadata beyond what load reads: saved, never loaded.
    net = cyprop.Network([2, 1], seed=0)
    path = tmp_path / "model.npz"
    net.save(path)
    net.history.stop_reason = "x" * (persistence.METADATA_LIMIT + 1)
    previous = path.read_bytes()
    with pytest.raises(ValueError, match="nothing was written: its metadata takes"):
        net.save(path)
    assert path.read_bytes() == previous
    with pytest.raises(ValueError, match="network 0 of the ensemble: .*its metadata takes"):
        cyprop.Ensemble([net]).save(tmp_path / "ensemble.npz")
    assert not (tmp_path / "ensemble.npz").exists()


# ---------------------------------------------------------------------------- classes
@pytest.mark.parametrize("classes", [[7, 107, -3], ["cat", "dog", "gnu"],
                                     ["ünïcode", "猫", "a,b"]])
def test_classes_round_trip(tmp_path, classes):
    net = trained()
    net.classes = classes
    net.save(tmp_path / "net")
    back = cyprop.load(tmp_path / "net")
    assert back.classes == tuple(classes)
    assert all(type(a) is type(b) for a, b in zip(back.classes, classes))
    assert metadata_of(members(tmp_path / "net"))["classes"] == classes
    back.save(tmp_path / "again")   # (kept by a load and a save)
    assert cyprop.load(tmp_path / "again").classes == tuple(classes)


def test_a_network_without_classes_is_saved_as_before(saved):
    net, path = saved
    assert net.classes is None
    meta = metadata_of(members(path))
    assert "classes" not in meta and meta["format_version"] == persistence.FORMAT_VERSION
    assert cyprop.load(path).classes is None


def test_metadata_keys_a_reader_does_not_know_are_skipped(saved):
    # What lets an older cyprop, which knows no classes, read a file that has them (the
    # format version stays the same): load skips every key it does not know.
    net, path = saved
    net.classes = ["a", "b", "c"]
    net.save(path)
    arrays = members(path)
    meta = metadata_of(arrays)
    assert meta["format_version"] == persistence.FORMAT_VERSION
    meta["from_a_newer_cyprop"] = {"anything": [1, 2]}
    rewrite(path, with_metadata(arrays, meta))
    assert cyprop.load(path).classes == ("a", "b", "c")


def test_one_output_unit_has_two_classes(tmp_path):
    net = trained(sizes=(4, 3, 1))
    net.classes = ["no", "yes"]
    net.save(tmp_path / "net")
    assert cyprop.load(tmp_path / "net").classes == ("no", "yes")
    with pytest.raises(ValueError, match="1 labels for a network of 2 classes"):
        net.classes = ["yes"]


@pytest.mark.parametrize("value, problem", [
    ("abc", "expected a list of labels"),
    ({"a": 1}, "expected a list of labels"),
    ([0, 1], "2 labels for a network of 3 classes"),
    ([0, 1, 2, 3], "4 labels for a network of 3 classes"),
    ([1, 2, "c"], "not all integers or all names"),
    ([1.0, 2.0, 3.0], "not all integers or all names"),
    ([True, False, 2], "not all integers or all names"),
    ([None, 1, 2], "not all integers or all names"),
    ([[1], 2, 3], "not all integers or all names"),
    ([1, 2, 2 ** 53], "is not below 2**53"),
    (["a", "b", "a"], "not distinct"),
    ([5, 6, 5], "not distinct"),
    (["a", "b", "x" * 1001], "more than 1000"),
    (["a", "b", "two\nlines"], "line break"),
    (["a", "b", "\ud800"], "not valid Unicode"),
])
def test_invalid_classes_in_a_file(saved, value, problem):
    assert_metadata_refused(saved[1], ["classes"], value, problem)
    assert "invalid classes (" in load_error(saved[1])


def test_invalid_classes_are_refused_when_set(saved):
    net, path = saved
    with pytest.raises(ValueError, match="invalid classes: .*not distinct"):
        net.classes = ["a", "a", "b"]
    assert net.classes is None
    net.classes = np.array([7, 107, 9])   # NumPy's integers, as Python's
    assert net.classes == (7, 107, 9) and type(net.classes[0]) is int
    net.classes = None
    assert net.classes is None


def test_classes_of_numpy_scalars_are_taken_as_pythons(tmp_path):
    # a list of NumPy's labels (list(np.unique(y))), as an array of them is taken
    net = cyprop.Network([2, 3, 3], seed=0)
    net.classes = list(np.array([7, 107, 9]))
    assert net.classes == (7, 107, 9) and all(type(c) is int for c in net.classes)
    net.classes = tuple(np.array(["cat", "dog", "gnu"]))
    assert net.classes == ("cat", "dog", "gnu") and all(type(c) is str for c in net.classes)
    net.save(tmp_path / "net")
    assert cyprop.load(tmp_path / "net").classes == net.classes
    for bad in ([np.float64(1), np.float64(2), np.float64(3)], list(np.array([True, False, True])),
                list(np.array([b"a", b"b", b"c"]))):
        with pytest.raises(ValueError, match="not all integers or all names"):
            net.classes = bad
    assert net.classes == ("cat", "dog", "gnu")


def test_classes_too_many_for_the_file_are_refused_without_a_huge_allocation(saved):
    # a long list is refused by its length, before anything is built from it
    assert_metadata_refused(saved[1], ["classes"], list(range(100_000)),
                            "100000 labels for a network of 3 classes")
