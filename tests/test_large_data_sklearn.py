"""The scikit-learn estimators on a Dask array or memory map X: read a block of rows at a
time through the network's reading (cyprop._chunks), never converted whole, with the
results of the same data in memory when the order does not depend on the blocks."""

import numpy as np
import pytest

pytest.importorskip("sklearn")
da = pytest.importorskip("dask.array")

from cyprop import _chunks, _sparse  # noqa: E402
from cyprop.sklearn import BackpropClassifier, BackpropRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def small_blocks(monkeypatch):
    """Training blocks of about 104 rows of 8 float64 features; 'lbfgs' blocks of 64."""
    monkeypatch.setattr(_chunks, "BLOCK_BYTES", 8 * 8 * 104)
    monkeypatch.setattr(_sparse, "BLOCK_BYTES", 8 * 8 * 64)


@pytest.fixture
def never_whole(monkeypatch):
    """A Dask array converted or computed whole fails the test; records the rows read."""
    def refused(self, *args, **kwargs):
        raise AssertionError("the Dask array was converted or computed whole")

    monkeypatch.setattr(da.Array, "__array__", refused)
    monkeypatch.setattr(da.Array, "compute", refused)
    reads = []
    read = _chunks.Rows.read

    def recorded(self, start, stop, out=None):
        reads.append(stop - start)
        return read(self, start, stop, out)

    monkeypatch.setattr(_chunks.Rows, "read", recorded)
    # a memory map's rows gathered by the stochastic solvers (a part of an epoch each)
    getitem = np.memmap.__getitem__

    def gathered(self, index):
        if isinstance(index, np.ndarray):
            reads.append(len(index))
        return getitem(self, index)

    monkeypatch.setattr(np.memmap, "__getitem__", gathered)
    return reads


def data(n=700, features=8, seed=0, classes=3):
    """float64 values that float32 holds exactly (the memory map is a float32 file)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, features)).astype(np.float32).astype(np.float64)
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    return X, y % classes


def lazy_forms(X, tmp_path):
    """X as a Dask array, and as a float32 memory map (for a float64 estimator: read in
    blocks, converted; one of the estimator's dtype is used in place)."""
    np.save(tmp_path / "X.npy", X.astype(np.float32))
    yield "dask", da.from_array(X, chunks=(97, X.shape[1])).map_blocks(np.array, dtype=X.dtype)
    yield "memmap", np.load(tmp_path / "X.npy", mmap_mode="r")


@pytest.mark.parametrize("params", [
    dict(solver="adam"),
    dict(solver="sgd", momentum=0.9, alpha=1e-3, batch_size=16),
    dict(solver="adam", dropout=0.2, sample_weight=True),
    dict(solver="lbfgs", max_iter=15),
    dict(solver="lbfgs", max_iter=15, sample_weight=True)])
def test_classifier_on_lazy_X_as_in_memory(small_blocks, never_whole, tmp_path, params):
    X, y = data()
    params = dict(params)
    weights = np.random.default_rng(5).random(len(X)) if params.pop("sample_weight", False) \
        else None
    kwargs = dict(hidden_layer_sizes=(6,), shuffle=False, random_state=0, max_iter=4,
                  tol=0.0, dtype="float64")
    kwargs.update(params)
    reference = BackpropClassifier(**kwargs).fit(X, y, sample_weight=weights)
    for name, lazy in lazy_forms(X, tmp_path):
        never_whole.clear()
        clf = BackpropClassifier(**kwargs).fit(lazy, y, sample_weight=weights)
        assert never_whole and max(never_whole) < len(X), name   # read in blocks, or parts
        for a, b in zip(clf.coefs_ + clf.intercepts_,
                        reference.coefs_ + reference.intercepts_):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(clf.loss_, reference.loss_, rtol=1e-12)
        never_whole.clear()
        np.testing.assert_allclose(clf.predict_proba(lazy), reference.predict_proba(X),
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_array_equal(clf.predict(lazy), reference.predict(X))
        assert clf.score(lazy, y) == reference.score(X, y)
        if name == "dask":   # (a float32 map is used in place: converted a block at a time)
            assert never_whole and max(never_whole) < len(X)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
def test_regressor_and_partial_fit_on_lazy_X(small_blocks, never_whole, tmp_path, loss):
    X, _ = data()
    y = np.exp(0.3 * X[:, 0]) if loss == "poisson" else X[:, 0] - 2 * X[:, 3]
    kwargs = dict(hidden_layer_sizes=(5,), shuffle=False, random_state=1, max_iter=3,
                  tol=0.0, loss=loss, batch_size=20, learning_rate_init=0.01, dtype="float64")
    reference = BackpropRegressor(**kwargs).fit(X, y)
    reference.partial_fit(X, y)
    for name, lazy in lazy_forms(X, tmp_path):
        reg = BackpropRegressor(**kwargs).fit(lazy, y)
        reg.partial_fit(lazy, y)
        for a, b in zip(reg.coefs_, reference.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14, err_msg=name)
        np.testing.assert_allclose(reg.loss_curve_, reference.loss_curve_, rtol=1e-12)
        np.testing.assert_allclose(reg.predict(lazy), reference.predict(X), rtol=1e-12)
        assert reg.score(lazy, y) == pytest.approx(reference.score(X, y), rel=1e-12)


def test_shuffled_blocks_are_reproducible(small_blocks, never_whole, tmp_path):
    X, y = data()
    fits = [BackpropClassifier(hidden_layer_sizes=(6,), random_state=0, max_iter=3,
                               tol=0.0, dtype="float64").fit(lazy, y).coefs_[0]
            for _ in range(2) for name, lazy in lazy_forms(X, tmp_path) if name == "dask"]
    np.testing.assert_array_equal(fits[1], fits[0])


@pytest.mark.parametrize("stored", [np.float32, np.uint8])
@pytest.mark.parametrize("params", [
    dict(solver="adam"),
    dict(solver="sgd", batch_size=1, momentum=0.0),
    dict(solver="sgd", momentum=0.9, batch_size=7, sample_weight=True),
    dict(solver="adam", dropout=0.2, batch_size=16),
    dict(solver="adam", partial_fit=True)])
def test_a_memory_map_that_needs_converting_trains_as_in_memory(small_blocks, never_whole,
                                                               tmp_path, stored, params):
    """Shuffled as in memory, so a grid search's results do not depend on its n_jobs
    (joblib hands an int X over 1 MB to parallel fits as such a map), and never
    converted whole: its rows are gathered and converted a part of an epoch at a time."""
    X, y = data()
    X = np.round(np.abs(X) * 40) if stored is np.uint8 else X
    params = dict(params)
    weights = np.random.default_rng(5).random(len(X)) if params.pop("sample_weight", False) \
        else None
    partial = params.pop("partial_fit", False)
    np.save(tmp_path / "X.npy", X.astype(stored))
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    kwargs = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=3, tol=0.0,
                  dtype="float64", **params)
    if partial:
        reference = BackpropClassifier(**kwargs).partial_fit(X, y, classes=[0, 1, 2])
        clf = BackpropClassifier(**kwargs).partial_fit(mapped, y, classes=[0, 1, 2])
        reference.partial_fit(X, y)
        clf.partial_fit(mapped, y)
    else:
        reference = BackpropClassifier(**kwargs).fit(X, y, sample_weight=weights)
        never_whole.clear()
        clf = BackpropClassifier(**kwargs).fit(mapped, y, sample_weight=weights)
        assert never_whole and max(never_whole) < len(X)
    for a, b in zip(clf.coefs_ + clf.intercepts_, reference.coefs_ + reference.intercepts_):
        np.testing.assert_array_equal(a, b)
    # (the epoch's loss summed part by part: equal to rounding)
    np.testing.assert_allclose(clf.loss_curve_, reference.loss_curve_, rtol=1e-12)


def test_a_nan_in_a_later_part_of_a_memory_map_undoes_the_epoch(small_blocks, tmp_path):
    X, y = data()
    clf = BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                             dtype="float64").fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    bad = X.astype(np.float32)
    bad[-1, 1] = np.nan
    np.save(tmp_path / "X.npy", bad)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    with pytest.raises(ValueError, match="NaN"):
        clf.partial_fit(mapped, y)
    for a, b in zip(clf.coefs_, before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(mapped, y)   # from scratch: the fitted model is kept
    for a, b in zip(clf.coefs_, before):
        np.testing.assert_array_equal(a, b)


def test_what_needs_X_in_memory_says_so(small_blocks, tmp_path):
    X, y = data()
    lazy = da.from_array(X, chunks=(97, X.shape[1]))
    with pytest.raises(ValueError, match="early_stopping .* needs X in memory"):
        BackpropClassifier(early_stopping=True, dtype="float64").fit(lazy, y)


@pytest.mark.parametrize("stored", [np.float32, np.int64])
def test_early_stopping_on_a_memory_map_that_needs_converting(small_blocks, tmp_path, stored):
    """As scikit-learn converts it (joblib hands an int X over 1 MB to the fits of
    VotingClassifier(n_jobs=2) as such a map): trained as the array in memory, not refused."""
    X, y = data()
    X = np.round(X * 4) if stored is np.int64 else X
    np.save(tmp_path / "X.npy", X.astype(stored))
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    kwargs = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=5, early_stopping=True,
                  validation_fraction=0.2, dtype="float64")
    clf = BackpropClassifier(**kwargs).fit(mapped, y)
    reference = BackpropClassifier(**kwargs).fit(X, y)
    np.testing.assert_array_equal(clf.coefs_[0], reference.coefs_[0])
    assert clf.validation_scores_ == reference.validation_scores_


def test_a_memory_map_that_needs_no_conversion_is_used_in_place(tmp_path, never_whole):
    """As scikit-learn uses it (joblib hands memory maps to parallel fits): the same
    order of the samples, the same results as in memory, early stopping included."""
    X, y = data()
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    kwargs = dict(hidden_layer_sizes=(6,), random_state=0, max_iter=5, early_stopping=True,
                  validation_fraction=0.2)
    clf = BackpropClassifier(**kwargs).fit(mapped, y)
    reference = BackpropClassifier(**kwargs).fit(X, y)
    np.testing.assert_array_equal(clf.coefs_[0], reference.coefs_[0])
    np.testing.assert_array_equal(clf.predict_proba(mapped), reference.predict_proba(X))
    assert not never_whole   # not through the blocks


def test_bad_lazy_X_is_refused(small_blocks, tmp_path):
    X, y = data()
    clf = BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)
    before = [c.copy() for c in clf.coefs_]
    bad = X.copy()
    bad[500, 1] = np.nan   # in a later block
    lazy = da.from_array(bad, chunks=(97, 8))
    with pytest.raises(ValueError, match="NaN"):
        clf.partial_fit(lazy, y)
    for a, b in zip(clf.coefs_, before):   # the epoch it was found in was undone
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(lazy)
    with pytest.raises(ValueError, match="features"):
        clf.predict(da.from_array(X[:, :5], chunks=(97, 5)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        BackpropClassifier().fit(da.from_array(X, chunks=(97, 8)), y[:-1])


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_a_refit_refused_by_a_later_block_keeps_the_fitted_model(small_blocks, tmp_path,
                                                                  solver):
    """A fit from scratch (warm_start=False) on lazy X with a NaN in a later block was
    refused only once training had replaced the network and its records: the fitted
    model was lost, where data in memory is refused before anything changes."""
    X, y = data()
    clf = BackpropClassifier(hidden_layer_sizes=(4,), solver=solver, max_iter=3,
                             random_state=0).fit(X, y)
    before = dict(vars(clf))
    coefs = [a.copy() for a in clf.coefs_ + clf.intercepts_]
    predictions = clf.predict_proba(X)
    bad = X.copy()
    bad[500, 1] = np.nan   # in a later block
    for lazy in lazy_forms(bad, tmp_path):
        with pytest.raises(ValueError, match="NaN"):
            clf.fit(lazy[1], y)
        assert vars(clf).keys() == before.keys()
        assert all(vars(clf)[key] is before[key] for key in before)
        for a, b in zip(clf.coefs_ + clf.intercepts_, coefs):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(clf.predict_proba(X), predictions)
    # never fitted: refused as in memory, it stays so
    fresh = BackpropClassifier(hidden_layer_sizes=(4,), solver=solver, max_iter=3)
    with pytest.raises(ValueError, match="NaN"):
        fresh.fit(np.load(tmp_path / "X.npy", mmap_mode="r"), y)
    assert not hasattr(fresh, "network_") and not hasattr(fresh, "classes_")


@pytest.mark.parametrize("dtype", [np.complex128, "datetime64[D]"])
def test_lazy_X_that_is_not_numbers_raises_sklearns_value_error(tmp_path, dtype):
    """scikit-learn's check_array refuses complex or non-numeric X with a ValueError
    (code written for MLPClassifier catches that), in fit and in predict alike."""
    from sklearn.neural_network import MLPClassifier

    X, y = data(n=40)
    np.save(tmp_path / "X.npy", X.astype(dtype))
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    if np.dtype(dtype).kind == "c":
        with pytest.raises(ValueError):
            MLPClassifier().fit(mapped, y)
    fitted = BackpropClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(X, y)
    for lazy in (mapped, da.from_array(mapped, chunks=(13, 8))):
        with pytest.raises(ValueError, match="numbers|Complex"):
            BackpropClassifier().fit(lazy, y)
        with pytest.raises(ValueError, match="numbers|Complex"):
            fitted.predict(lazy)


def test_lbfgs_that_fails_midway_keeps_the_weights_it_started_from(small_blocks, tmp_path):
    """L-BFGS writes each point it tries into the network: a read that fails after
    some evaluations (a Dask chunk that cannot be computed any more) must not leave
    one of them there, as scikit-learn's lbfgs, which sets coefs_ only at the end."""
    X, y = data()
    clf = BackpropClassifier(hidden_layer_sizes=(4,), solver="lbfgs", max_iter=3,
                             warm_start=True, random_state=0, dtype="float64").fit(X, y)
    before = [a.copy() for a in clf.coefs_ + clf.intercepts_]
    n_iter = clf.n_iter_
    reads = []

    def flaky(block):
        reads.append(len(block))
        if len(reads) > 40:   # several whole evaluations first (about 11 reads each)
            raise OSError("the chunk's file went away")
        return block

    lazy = da.from_array(X, chunks=(97, 8)).map_blocks(flaky, dtype=X.dtype)
    with pytest.raises(OSError, match="went away"):
        clf.fit(lazy, y)
    assert len(reads) > 40
    for a, b in zip(clf.coefs_ + clf.intercepts_, before):
        np.testing.assert_array_equal(a, b)
    assert clf.n_iter_ == n_iter


def test_parallel_fits_of_an_int_x_do_not_depend_on_n_jobs():
    """joblib hands an int X over 1 MB to VotingClassifier(n_jobs=2)'s fits (in other
    processes: the real block sizes) as a memory map that needs converting; its
    float64 form spans two of cyprop's blocks."""
    from sklearn.ensemble import VotingClassifier

    rng = np.random.default_rng(0)
    rows = 2 * _chunks.BLOCK_BYTES // (784 * 8) - 500
    X = rng.integers(0, 256, size=(rows, 784), dtype=np.uint8)
    y = (X[:, 0] > X[:, 1]).astype(int)
    coefs = []
    for n_jobs in (1, 2):
        voting = VotingClassifier(
            [(f"m{i}", BackpropClassifier(hidden_layer_sizes=(4,), max_iter=1, tol=0.0,
                                          random_state=i)) for i in range(2)],
            voting="soft", n_jobs=n_jobs).fit(X, y)
        coefs.append([member.coefs_[0] for member in voting.estimators_])
    for a, b in zip(*coefs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("warm", ["warm_start", "partial_fit"])
def test_a_refused_warm_fit_leaves_the_estimator_as_it_was(small_blocks, tmp_path, warm):
    """A NaN in a later part of a memory map is found during the call's first epoch: the
    estimator keeps its records and the optimizer that partial_fit carries on with."""
    X, y = data()
    bad = X.astype(np.float32)
    bad[-1, 1] = np.nan
    np.save(tmp_path / "X.npy", bad)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    kwargs = dict(hidden_layer_sizes=(4,), max_iter=3, random_state=0, dtype="float64",
                  warm_start=warm == "warm_start")
    clf, twin = (BackpropClassifier(**kwargs).fit(X, y) for _ in range(2))
    optimizer = clf.network_.optimizer
    with pytest.raises(ValueError, match="NaN"):
        (clf.fit if warm == "warm_start" else clf.partial_fit)(mapped, y)
    assert clf.network_.optimizer is optimizer
    assert (clf.n_iter_, clf.t_, clf.loss_curve_) == (twin.n_iter_, twin.t_, twin.loss_curve_)
    for model in (clf, twin):
        model.partial_fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, twin.coefs_ + twin.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_y_beside_a_memory_map_that_needs_converting_is_read_as_scikit_learn_reads_it(
        tmp_path):
    """A memory map X read in blocks (an int X, as joblib hands it to parallel fits) leaves
    y to be checked whole, as validate_data checks it beside X in memory: a nullable
    pandas y gives the classes_ it gives there, a sparse multilabel y is read."""
    pd = pytest.importorskip("pandas")
    from scipy.sparse import csr_matrix

    rng = np.random.RandomState(0)
    X = rng.randint(0, 5, (40, 3))
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    labels = (X[:, 0] > 2).astype(int)
    for y in (pd.Series(labels, dtype="Int64"), pd.Series(labels.astype(bool), dtype="boolean"),
              csr_matrix(np.c_[labels, 1 - labels])):
        params = dict(hidden_layer_sizes=(3,), max_iter=2, random_state=0)
        in_memory = BackpropClassifier(**params).fit(X, y)
        lazy = BackpropClassifier(**params).fit(mapped, y)
        assert lazy.classes_.dtype == in_memory.classes_.dtype
        np.testing.assert_array_equal(lazy.classes_, in_memory.classes_)
        got, want = lazy.predict(X), in_memory.predict(X)
        if hasattr(want, "toarray"):   # (a sparse y's labels come back sparse)
            got, want = got.toarray(), want.toarray()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
