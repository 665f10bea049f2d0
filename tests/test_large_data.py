"""Data larger than memory: Dask arrays and memory maps are read a block of whole
batches at a time (cyprop._chunks), with the results of the same data in memory."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import cyprop
from cyprop import _chunks

try:
    import dask.array as da
except ImportError:   # the memory-map tests run without it
    da = None
needs_dask = pytest.mark.skipif(da is None, reason="dask is not installed")


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 104 rows of 8 float64 features (96 of 8 float32 with batch size 8)."""
    monkeypatch.setattr(_chunks, "BLOCK_BYTES", 8 * 8 * 104)


def data(n=1003, features=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, features)), rng.integers(0, classes, n)


def memmap_of(X, tmp_path, name="X.npy"):
    np.save(tmp_path / name, X)
    return np.load(tmp_path / name, mmap_mode="r")


def copied_chunks(X, chunks):
    """A Dask array whose chunks compute to new arrays (as read from Zarr or HDF5), not
    to views of X."""
    return da.from_array(X, chunks=(chunks, X.shape[1])).map_blocks(np.array, dtype=X.dtype)


def trained(X, y, dtype="float64", **kwargs):
    net = cyprop.Network([8, 5, 3], seed=1, dtype=dtype, dropout=0.2)
    history = net.fit(X, y, epochs=3, batch_size=kwargs.pop("batch_size", 7), verbose=0,
                      seed=3, **kwargs)
    return net, history.to_dict()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("extra", [{}, {"sample_weight": True}, {"validation_split": 0.2},
                                   {"class_weight": "balanced", "optimizer": "adam"}])
@needs_dask
def test_unshuffled_dask_and_memmap_train_as_in_memory(small_blocks, tmp_path, dtype, extra):
    """Blocks cut across the Dask chunks (97 rows) but are whole batches: the same
    batches in the same order, so the same weights, bit for bit."""
    X, y = data()
    kwargs = dict(shuffle=False, **extra)
    if extra.get("sample_weight"):
        kwargs["sample_weight"] = np.random.default_rng(5).random(len(X))
    if extra.get("optimizer"):
        kwargs["optimizer"] = cyprop.Adam(0.01)
    reference, logs = trained(X, y, dtype, **dict(kwargs, optimizer=cyprop.Adam(0.01))
                              if "optimizer" in kwargs else kwargs)
    for lazy in (da.from_array(X, chunks=97), copied_chunks(X, 97), memmap_of(X, tmp_path)):
        if "optimizer" in kwargs:
            kwargs["optimizer"] = cyprop.Adam(0.01)
        net, lazy_logs = trained(lazy, y, dtype, **kwargs)
        np.testing.assert_array_equal(net._params, reference._params)
        for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
            if logs[key][0] is not None:
                np.testing.assert_allclose(lazy_logs[key], logs[key], rtol=1e-12, atol=0)


def test_a_float32_memmap_trains_a_float64_network_as_converted(small_blocks, tmp_path):
    X, y = data()
    X32 = X.astype(np.float32)
    reference, _ = trained(X32.astype(np.float64), y, shuffle=False)
    net, _ = trained(memmap_of(X32, tmp_path), y, shuffle=False)
    np.testing.assert_array_equal(net._params, reference._params)


@needs_dask
def test_shuffled_blocks_are_reproducible_whatever_the_chunks(small_blocks, tmp_path):
    X, y = data()
    runs = [trained(source, y)[0]._params for source in
            (da.from_array(X, chunks=97), da.from_array(X, chunks=500),
             memmap_of(X, tmp_path))]
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])
    other = cyprop.Network([8, 5, 3], seed=1, dropout=0.2)
    other.fit(da.from_array(X, chunks=97), y, epochs=3, batch_size=7, verbose=0, seed=4)
    assert not np.array_equal(other._params, runs[0])


@needs_dask
def test_the_shuffling_rule(small_blocks):
    """A permutation of the blocks, then of the rows within each, from the generator."""
    blocks = _chunks.epoch_blocks(250, 104, shuffle=True, rng=np.random.default_rng(0))
    rng = np.random.default_rng(0)
    expected = [(0, 104), (104, 208), (208, 250)]
    expected = [expected[i] for i in rng.permutation(3)]
    assert [(start, stop) for start, stop, _ in blocks] == expected
    for (start, stop, order) in blocks:
        np.testing.assert_array_equal(order, rng.permutation(stop - start))
    # data within one block is shuffled as in memory
    X, y = data(n=90)   # under the 98 rows (14 batches) of a block
    net, _ = trained(da.from_array(X, chunks=30), y)
    reference, _ = trained(X, y)
    np.testing.assert_array_equal(net._params, reference._params)


@needs_dask
def test_validation_data_and_inference_on_dask(small_blocks):
    X, y = data()
    X_val, y_val = data(n=300, seed=1)
    reference, logs = trained(X, y, shuffle=False, validation_data=(X_val, y_val))
    net, lazy_logs = trained(da.from_array(X, chunks=97), y, shuffle=False,
                             validation_data=(da.from_array(X_val, chunks=64), y_val))
    np.testing.assert_array_equal(net._params, reference._params)
    np.testing.assert_allclose(lazy_logs["val_loss"], logs["val_loss"], rtol=1e-12)
    np.testing.assert_allclose(lazy_logs["loss"], logs["loss"], rtol=1e-12)
    lazy = da.from_array(X_val, chunks=64)
    np.testing.assert_array_equal(net.forward(lazy), net.forward(X_val))
    np.testing.assert_array_equal(net.predict(lazy), net.predict(X_val))
    for a, b in zip(net.forward(lazy, return_hidden=True), net.forward(X_val, True)):
        np.testing.assert_array_equal(a, b)
    for key, value in net.evaluate(lazy, y_val).items():
        assert value == pytest.approx(net.evaluate(X_val, y_val)[key], rel=1e-12)
    assert net.loss(lazy, y_val) == pytest.approx(net.loss(X_val, y_val), rel=1e-12)
    for a, b in zip(net.gradients(lazy, y_val), net.gradients(X_val, y_val)):
        for ga, gb in zip(a, b):
            np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-15)


@needs_dask
def test_partial_fit_and_dask_labels(small_blocks):
    X, y = data()
    a = cyprop.Network([8, 5, 3], seed=1)
    b = a.copy()
    a.partial_fit(X, y, batch_size=8, shuffle=False)
    b.partial_fit(da.from_array(X, chunks=97), da.from_array(y, chunks=97), batch_size=8,
                  shuffle=False)
    np.testing.assert_array_equal(a._params, b._params)


@needs_dask
def test_a_nan_in_a_later_block_is_named_and_the_epoch_undone(small_blocks, tmp_path):
    """Refused as in memory: the network, its optimizer and history as they were."""
    X, y = data()
    X[7 * 104 + 3, 2] = np.nan   # in block 7
    net = cyprop.Network([8, 5, 3], seed=1)
    net.fit(X[:100], y[:100], epochs=1, verbose=0)
    before, optimizer, history = net._params.copy(), net.optimizer, net.history
    state = optimizer.state.copy() if optimizer.state is not None else None
    lazy = copied_chunks(X, 97)   # (the check fused with the copy)
    for call in (lambda: net.fit(lazy, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                                 optimizer=cyprop.Adam()),
                 lambda: net.partial_fit(lazy, y, batch_size=8),
                 lambda: net.fit(X[:500], y[:500], epochs=2, batch_size=8, verbose=0,
                                 validation_data=(lazy, y))):
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            call()
        np.testing.assert_array_equal(net._params, before)
        assert net.optimizer is optimizer and net.history is history and len(history) == 1
        if state is not None:
            np.testing.assert_array_equal(optimizer.state, state)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.forward(da.from_array(X, chunks=97))
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.forward(memmap_of(X.astype(np.float32), tmp_path))   # converted, checked


def test_a_refused_fit_leaves_the_learning_rate_as_it_was(small_blocks, tmp_path):
    """The schedule set the optimizer's rate before the epoch that was refused, and the
    rate stayed: a refused call changed the optimizer."""
    X, y = data()
    X[7 * 104 + 3, 2] = np.nan   # in block 7, past the rows read before training
    mapped = memmap_of(X, tmp_path)
    net = cyprop.Network([8, 5, 3], seed=1)
    net.fit(X[:100], y[:100], epochs=1, optimizer=cyprop.SGD(0.1), verbose=0)
    net.optimizer.learning_rate = 0.02   # Constant's rate is the initial one, 0.1
    for call in (lambda: net.fit(mapped, y, epochs=2, schedule=cyprop.schedules.Constant(),
                                 verbose=0),
                 lambda: net.fit(X[:500], y[:500], epochs=2, verbose=0,
                                 schedule=cyprop.schedules.Constant(),
                                 validation_data=(mapped, y))):
        with pytest.raises(ValueError, match="X contains NaN or infinity"):
            call()
        assert net.optimizer.learning_rate == 0.02 and len(net.history) == 1


def test_a_refused_fit_leaves_the_optimizer_it_was_given_as_it_was(small_blocks, tmp_path):
    """An optimizer from elsewhere (another network's) is reset as the fit takes it:
    a fit refused before its first epoch was recorded reset it all the same, and the
    network it belonged to lost its state and step count."""
    X, y = data()
    X[7 * 104 + 3, 2] = np.nan   # in block 7, past the rows read before training
    mapped = memmap_of(X, tmp_path)
    other = cyprop.Network([8, 5, 3], seed=2)
    other.fit(X[:100], y[:100], epochs=2, optimizer=cyprop.Adam(0.01), verbose=0)
    optimizer = other.optimizer
    state, steps = optimizer.state.copy(), optimizer.steps
    net = cyprop.Network([8, 5, 3], seed=1)
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.fit(mapped, y, epochs=2, optimizer=optimizer, verbose=0)
    assert net.optimizer is None and optimizer.steps == steps
    np.testing.assert_array_equal(optimizer.state, state)


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_refused_fit_leaves_the_network_s_generator_as_it_was(small_blocks, tmp_path,
                                                                 dropout):
    """The epoch drew its permutations (and dropout seed) from the network's generator
    before a block was refused: the refused call moved the generator, which is part of
    the network's state (and file), so the next fit trained otherwise."""
    X, y = data()
    X[7 * 104 + 3, 2] = np.nan
    mapped = memmap_of(X, tmp_path)
    net = cyprop.Network([8, 5, 3], seed=1, dropout=dropout)
    net.fit(X[:100], y[:100], epochs=1, verbose=0)
    twin = net.copy()
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        net.fit(mapped, y, epochs=2, verbose=0)
    assert net.get_state().rng == twin.get_state().rng
    for each in (net, twin):
        each.fit(X[:300], y[:300], epochs=2, verbose=0)
    np.testing.assert_array_equal(net._params, twin._params)


@needs_dask
def test_blocks_across_chunks_are_copied_into_two_buffers_in_turn():
    """A block within one chunk is that chunk's computed array (no copy); a block across
    chunks is copied (converted) into one of two buffers, used in turn; the chunks a
    block meets are computed together, in one dask.compute call."""
    import dask

    X = np.random.default_rng(0).normal(size=(1000, 8))
    computes = []
    real_compute = dask.compute

    def counted(*args, **kwargs):
        computes.append(len(args))
        return real_compute(*args, **kwargs)

    rows = _chunks.Rows(copied_chunks(X, 97), 8, np.dtype(np.float64))
    buffers = set()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dask, "compute", counted)
        for start, stop, _, block in _chunks.read_ahead(rows, _chunks.epoch_blocks(1000, 300)):
            np.testing.assert_array_equal(block, X[start:stop])
            buffers.add(block.__array_interface__["data"][0])
        assert len(buffers) == 2
        assert computes == [4, 4, 4, 2]   # the chunks each block of 300 rows meets
        computes.clear()
        block = rows.read(100, 150)   # within chunk 1 (rows 97..194): as computed
        assert computes == [1] and block.flags.owndata is False
        np.testing.assert_array_equal(block, X[100:150])
    # float32 data for a float64 network: converted as it is copied
    rows = _chunks.Rows(copied_chunks(X.astype(np.float32), 97), 8, np.dtype(np.float64))
    block = rows.read(150, 450)
    assert block.dtype == np.float64
    np.testing.assert_array_equal(block, X.astype(np.float32)[150:450])


@needs_dask
def test_ctrl_c_between_blocks_keeps_whole_batches(small_blocks, monkeypatch):
    """An interrupt after the third block's compiled call: the batches trained are kept,
    the read-ahead thread ends, the history says "interrupted"."""
    import threading

    X, y = data()
    net = cyprop.Network([8, 5, 3], seed=1)
    reference = net.copy()
    train_epoch, calls = net._impl.train_epoch, []

    def interrupted(*args, **kwargs):
        result = train_epoch(*args, **kwargs)
        calls.append(len(args[4]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(net._impl, "train_epoch", interrupted)
    threads = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        net.fit(da.from_array(X, chunks=97), y, epochs=2, batch_size=8, shuffle=False,
                verbose=0)
    assert net.history.stop_reason == "interrupted"
    assert threading.active_count() == threads
    monkeypatch.undo()
    reference.fit(X[:3 * 104], y[:3 * 104], epochs=1, batch_size=8, shuffle=False, verbose=0)
    np.testing.assert_array_equal(net._params, reference._params)


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros((10, 7)), ValueError, "7 features"),
    (np.zeros((0, 8)), ValueError, "empty"),
    (np.array([["a"] * 8] * 4), TypeError, "must hold numbers")])
@needs_dask
def test_bad_dask_input_is_refused_as_in_memory(bad, error, message):
    net = cyprop.Network([8, 5, 3], seed=1)
    with pytest.raises(error, match=message):
        net.fit(da.from_array(bad, chunks=3), np.zeros(len(bad), dtype=int), verbose=0)



@pytest.mark.parametrize("chunks", [1003, 50])   # blocks within one chunk, across chunks
@needs_dask
def test_a_masked_dask_array_with_masked_values_is_refused_as_in_memory(small_blocks,
                                                                        chunks):
    """Computed chunks went through np.asarray, which drops the mask: the masked
    entries' data was trained on and predicted from."""
    X, y = data()
    mask = np.zeros(X.shape, dtype=bool)
    mask[700, 3] = True
    lazy = da.ma.masked_array(da.from_array(X, chunks=(chunks, 8)),
                              mask=da.from_array(mask, chunks=(chunks, 8)))
    net = cyprop.Network([8, 5, 3], seed=1)
    before = net.get_state().params
    for call in (lambda: net.fit(lazy, y, epochs=1, verbose=0), lambda: net.forward(lazy),
                 lambda: net.predict(lazy), lambda: net.evaluate(lazy, y),
                 lambda: net.partial_fit(lazy, y),
                 lambda: cyprop.Ensemble([net]).predict(lazy)):
        with pytest.raises(ValueError, match="X is a masked array with masked values"):
            call()
    np.testing.assert_array_equal(net.get_state().params, before)
    clean = da.ma.masked_array(da.from_array(X, chunks=(chunks, 8)), mask=False)
    np.testing.assert_array_equal(net.forward(clean), net.forward(X))

LABELS_CHILD = """
import sys
import numpy as np
import cyprop
X = np.load(sys.argv[1], mmap_mode="r")
net = cyprop.Network([8, 5, 3], seed=1)
for call in (lambda: net.loss(X, [1]), lambda: net.evaluate(X, [1, 2]),
             lambda: net.fit(X, [1], epochs=1, verbose=0),
             lambda: net.partial_fit(X, np.zeros(len(X) + 1, dtype=int))):
    try:
        call()
        print("accepted")
    except ValueError as exc:
        print(exc)
"""


def test_class_labels_of_another_length_than_a_memmap_are_refused(tmp_path):
    """Labels of a memory-mapped X were one-hot encoded without being counted: one label
    for 400,000 rows was read past its end (a crash, or garbage targets)."""
    memmap_of(np.zeros((400_000, 8)), tmp_path)
    done = subprocess.run([sys.executable, "-c", LABELS_CHILD, str(tmp_path / "X.npy")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and all("different numbers of samples" in line
                                   for line in lines), done.stdout


SHORT_CHUNK_CHILD = """
import numpy as np
import dask.array as da
import cyprop
X = np.random.default_rng(0).normal(size=(1003, 8))
y = np.zeros(1003, dtype=int)
# one chunk that announces its 1003 rows but computes 10
X = da.from_array(X, chunks=1003).map_blocks(lambda chunk: chunk[:10], dtype=X.dtype)
net = cyprop.Network([8, 5, 3], seed=1)
before = net._params.copy()
for call in (lambda: net.fit(X, y, epochs=1, verbose=0), lambda: net.forward(X),
             lambda: net.evaluate(X, y), lambda: net.partial_fit(X, y)):
    try:
        call()
        print("accepted")
    except ValueError as exc:
        print(exc)
print(np.array_equal(net._params, before))
"""


@needs_dask
def test_a_dask_chunk_that_computes_fewer_rows_than_announced_is_refused():
    """A block within one chunk was used as computed without counting its rows: a chunk
    that computed 10 of the 1003 rows it announced was trained on with indices past its
    end (reading beyond the array), and forward returned rows never written."""
    done = subprocess.run([sys.executable, "-c", SHORT_CHUNK_CHILD], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 5 and all("computed other numbers of rows" in line
                                   for line in lines[:4]), done.stdout
    assert lines[4] == "True"


@needs_dask
def test_a_dask_array_of_unknown_length_is_refused_with_the_way_out():
    X, y = data(n=100)
    lazy = da.from_array(X, chunks=30)
    lazy = lazy[lazy[:, 0] > -100]   # boolean indexing: chunks of unknown size
    net = cyprop.Network([8, 5, 3], seed=1)
    for call in (lambda: net.fit(lazy, y, epochs=1, verbose=0), lambda: net.forward(lazy),
                 lambda: net.predict(lazy), lambda: net.evaluate(lazy, y),
                 lambda: net.partial_fit(lazy, y)):
        with pytest.raises(ValueError, match=r"unknown number of rows.*compute_chunk_sizes"):
            call()
    lazy.compute_chunk_sizes()
    np.testing.assert_array_equal(net.forward(lazy), net.forward(X))


@needs_dask
def test_progress_advances_per_block(small_blocks, monkeypatch):
    from cyprop import _progress

    advanced = []
    monkeypatch.setattr(_progress.Progress, "advance", lambda self, n: advanced.append(n))
    X, y = data()
    net = cyprop.Network([8, 5, 3], seed=1)
    net.fit(da.from_array(X, chunks=97), y, epochs=1, batch_size=8, verbose=1)
    assert sorted(advanced) == sorted([104] * 9 + [1003 - 9 * 104])   # in shuffled order


MEMORY_CHILD = textwrap.dedent("""
    import json, sys, threading
    import numpy as np
    import cyprop
    from cyprop import _chunks
    from cyprop.bench._suite import _rss_anon, dask_over_file

    _chunks.BLOCK_BYTES = 4 << 20   # 64 MB / 16, for a file 16 times smaller than 1.6 GB
    path, mode, dtype = sys.argv[1:4]
    if mode == "dask":
        import dask.array   # (its own memory: not counted)
    before = _rss_anon()   # (da.from_array(memmap) would copy the file: dask/dask#11850)
    X = np.load(path, mmap_mode="r") if mode == "memmap" else dask_over_file(path, 2 << 20)
    made = _rss_anon() - before
    y = np.arange(len(X)) % 10
    net = cyprop.Network([X.shape[1], 30, 10], seed=0, dtype=dtype)
    net.fit(X[:2048], y[:2048], epochs=1, batch_size=64, verbose=0)   # warm-up
    base = _rss_anon()
    peak, done = [base], threading.Event()

    def sample():
        while not done.wait(0.002):
            peak[0] = max(peak[0], _rss_anon())

    sampler = threading.Thread(target=sample)
    sampler.start()
    net.fit(X, y, epochs=1, batch_size=64, seed=1, verbose=0)
    net.evaluate(X, y)
    done.set()
    sampler.join()
    print(json.dumps({"growth": max(peak[0], _rss_anon()) - base, "made": made}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("mode, file_dtype, net_dtype", [
    ("memmap", np.float64, "float64"),
    pytest.param("dask", np.float64, "float64", marks=needs_dask),
    ("memmap", np.float32, "float64")])
def test_a_shuffled_epoch_over_a_file_keeps_private_memory_bounded(tmp_path, mode,
                                                                   file_dtype, net_dtype):
    """100 MB on disk (1/16 of the 1.6 GB target, blocks 1/16 as large): a shuffled epoch
    and an evaluation grow private memory by less than 25 MB (400 MB / 16)."""
    n, features = 16_000, 784
    path = tmp_path / "X.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=file_dtype, shape=(n, features))
    rng = np.random.default_rng(0)
    for i in range(0, n, 4000):
        X[i:i + 4000] = rng.standard_normal((4000, features))
    X.flush()
    del X
    done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), mode, net_dtype],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout.strip().splitlines()[-1])
    growth = record["growth"]
    assert growth < 25e6, f"private memory grew by {growth / 1e6:.1f} MB"
    assert record["made"] < 5e6, "making X read it into memory"


# The README's example, as given there (in a script, for the cluster's processes).
README_EXAMPLE = """
import glob

import dask
import dask.array as da
import numpy as np
from dask.distributed import Client, LocalCluster

import cyprop


def load_rows(path, start, stop):
    \"\"\"Rows start:stop of a .npy file, read from disk (in whichever process runs it).\"\"\"
    return np.array(np.load(path, mmap_mode="r")[start:stop])


def from_files(paths, rows_per_chunk=8192):
    \"\"\"One lazy Dask array over the rows of several .npy files; nothing read yet.\"\"\"
    chunks = []
    for path in paths:
        header = np.load(path, mmap_mode="r")   # shape and dtype only
        for start in range(0, len(header), rows_per_chunk):
            stop = min(start + rows_per_chunk, len(header))
            chunks.append(da.from_delayed(dask.delayed(load_rows)(path, start, stop),
                                          shape=(stop - start, header.shape[1]),
                                          dtype=header.dtype))
    return da.concatenate(chunks)


if __name__ == "__main__":
    X = from_files(sorted(glob.glob("data/X-*.npy")))   # e.g. 784 features a row
    y = np.load("data/y.npy")                            # one label a row, read whole
    net = cyprop.Network([X.shape[1], 100, 10], activation="relu", seed=0)

    # In this process: blocks of whole batches are read while the last one trains.
    net.fit(X, y, epochs=2, batch_size=64, optimizer=cyprop.Adam(0.001),
            validation_split=0.1, verbose=0)

    # Or two worker processes on this machine read and decode the chunks; this
    # process receives each block and trains on it.
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None) as cluster, \\
            Client(cluster):
        history = net.fit(X, y, epochs=2, batch_size=64, validation_split=0.1, verbose=0)
    print(history.val_accuracy[-1])
"""


def test_the_readme_example_is_the_readme_s():
    readme = Path(__file__).resolve().parent.parent / "README.md"
    if not readme.is_file():
        pytest.skip("README.md is not beside these tests")
    assert README_EXAMPLE.strip() in readme.read_text(encoding="utf-8")


def test_the_readme_example_runs_on_files_and_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(0)
    labels = []
    for i in range(3):
        y = rng.integers(0, 10, 1500)
        X = rng.normal(size=(1500, 784)).astype(np.float32) * 0.1
        X[np.arange(1500), y] += 1.0   # learnable
        np.save(tmp_path / "data" / f"X-{i:03d}.npy", X)
        labels.append(y)
    np.save(tmp_path / "data" / "y.npy", np.concatenate(labels))
    (tmp_path / "example.py").write_text(README_EXAMPLE)
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float(done.stdout.strip().splitlines()[-1]) > 0.9
