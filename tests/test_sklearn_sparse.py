"""cyprop.sklearn on scipy.sparse input: trained a block of rows at a time, never
densified whole, with the same weights as the dense input gives for the same seed
(bitwise for the stochastic solvers; to rounding for 'lbfgs', whose sparse loss and
gradient use sparse matrix products)."""


import numpy as np
import pytest

pytest.importorskip("sklearn", reason="cyprop.sklearn needs scikit-learn")
sp = pytest.importorskip("scipy.sparse")

from sklearn.datasets import load_digits  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402

from cyprop import _sparse  # noqa: E402
from cyprop.sklearn import BackpropClassifier, BackpropRegressor  # noqa: E402
from conftest import fit_quietly, layers_of  # noqa: E402

_X, _y = load_digits(n_class=3, return_X_y=True)
X_DENSE = np.where(_X > 6, _X / 16.0, 0.0)   # about half zeros
Y = _y
Y_REG = (X_DENSE @ np.linspace(-1, 1, 64)).reshape(-1, 1) * np.array([[1.0, -0.5]])
FORMATS = [sp.csr_matrix, sp.csr_array, sp.csc_matrix, sp.csc_array, sp.coo_matrix,
           sp.coo_array]


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 256 rows (the least), so that the 537 samples take several."""
    monkeypatch.setattr(_sparse, "BLOCK_BYTES", 1)
    return _sparse.block_rows(64, 8)




def _assert_same_model(a, b):
    """Bitwise for the stochastic solvers; 'lbfgs' on sparse input evaluates through
    sparse products (the NumPy reference), which agree with the core to rounding."""
    for p, q in zip(layers_of(a), layers_of(b), strict=True):
        if a.solver == "lbfgs":
            np.testing.assert_allclose(p, q, rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("container", FORMATS)
@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_sparse_input_trains_the_dense_inputs_model(container, solver, small_blocks):
    X = container(X_DENSE)
    kwargs = dict(hidden_layer_sizes=(15,), solver=solver, max_iter=8, batch_size=32,
                  random_state=1)
    dense = fit_quietly(BackpropClassifier(**kwargs), X_DENSE, Y)
    sparse = fit_quietly(BackpropClassifier(**kwargs), X, Y)
    _assert_same_model(dense, sparse)
    np.testing.assert_allclose(sparse.loss_, dense.loss_, rtol=1e-12)
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X_DENSE),
                               rtol=1e-9 if solver == "lbfgs" else 0, atol=1e-12)
    np.testing.assert_array_equal(sparse.predict(X), dense.predict(X_DENSE))


@pytest.mark.parametrize("kwargs", [
    dict(solver="sgd", batch_size=1),                       # online SGD, fused in the core
    dict(solver="sgd", batch_size=7, momentum=0.0),
    dict(solver="adam", batch_size=10, dropout=0.2, max_norm=2.0),
    dict(solver="rmsprop", batch_size=64),
    dict(solver="adam", early_stopping=True, validation_fraction=0.2),
    dict(solver="lbfgs", alpha=0.1)])
@pytest.mark.parametrize("weighted", [False, True])
def test_sparse_matches_dense_in_every_mode(kwargs, weighted, small_blocks):
    weights = np.random.RandomState(0).uniform(0.5, 2.0, len(Y)) if weighted else None
    X = sp.csr_matrix(X_DENSE)
    args = dict(hidden_layer_sizes=(12,), max_iter=4, random_state=2, **kwargs)
    for Estimator, y in ((BackpropClassifier, Y), (BackpropRegressor, Y_REG)):
        dense = fit_quietly(Estimator(**args), X_DENSE, y, sample_weight=weights)
        sparse = fit_quietly(Estimator(**args), X, y, sample_weight=weights)
        _assert_same_model(dense, sparse)
        if kwargs.get("early_stopping"):
            assert sparse.validation_scores_ == dense.validation_scores_


def test_poisson_on_sparse_input(small_blocks):
    X = sp.csr_matrix(X_DENSE)
    y = np.random.RandomState(0).poisson(np.exp(X_DENSE[:, 20]))
    for solver in ("lbfgs", "sgd"):
        kwargs = dict(loss="poisson", hidden_layer_sizes=(4,), solver=solver, max_iter=5,
                      random_state=0)
        _assert_same_model(fit_quietly(BackpropRegressor(**kwargs), X_DENSE, y),
                           fit_quietly(BackpropRegressor(**kwargs), X, y))


def test_sparse_rows_are_densified_a_block_at_a_time(small_blocks, monkeypatch):
    made = []
    dense = _sparse.dense

    def spy(X, dtype):
        out = dense(X, dtype)
        if sp.issparse(X):
            made.append(out.shape[0])
        return out

    monkeypatch.setattr(_sparse, "dense", spy)
    X = sp.csr_matrix(X_DENSE)
    for solver, batch_size in (("lbfgs", "auto"), ("sgd", 20), ("adam", 100)):
        made.clear()
        clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(8,), solver=solver, max_iter=3,
                                      batch_size=batch_size, random_state=0), X, Y)
        if solver == "lbfgs":
            assert made == []   # sparse products: nothing densified
        clf.predict(X)
        assert made and max(made) <= small_blocks < X.shape[0]
    # a part holds whole batches: a batch larger than a block is one part of its own
    made.clear()
    fit_quietly(BackpropClassifier(hidden_layer_sizes=(8,), solver="sgd", max_iter=1,
                            batch_size=400, random_state=0), X, Y)
    assert max(made) == 400


def test_sparse_float32_trains_in_float32():
    X = sp.csr_matrix(X_DENSE.astype(np.float32))
    clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0), X, Y)
    assert clf.network_.dtype == np.float32 and clf.coefs_[0].dtype == np.float32
    assert clf.predict_proba(X).dtype == np.float32


def test_sparse_lbfgs_as_sklearn():
    X = sp.csr_matrix(X_DENSE)
    kwargs = dict(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=10, random_state=0)
    ours = fit_quietly(BackpropClassifier(**kwargs), X, Y)
    theirs = fit_quietly(MLPClassifier(**kwargs), X, Y)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-9)


@pytest.mark.filterwarnings("ignore:A column-vector y was passed")
@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
@pytest.mark.parametrize("n_targets", [1, 2])
def test_sparse_regression_targets_train_as_dense_ones(solver, n_targets):
    """A sparse y (which scikit-learn's validation lets through) is read as its dense
    values: it raised "setting an array element with a sequence"."""
    y = Y_REG[:, :n_targets]
    kwargs = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=3, random_state=0)
    dense = fit_quietly(BackpropRegressor(**kwargs), X_DENSE, y)
    sparse = fit_quietly(BackpropRegressor(**kwargs), X_DENSE, sp.csr_matrix(y))
    np.testing.assert_array_equal(sparse.predict(X_DENSE), dense.predict(X_DENSE))


MALFORMED_CHILD = """
import warnings
import numpy as np
import scipy.sparse as sp
from cyprop.sklearn import BackpropClassifier
warnings.simplefilter("ignore")
X = np.eye(60, 5) + 0.5
y = np.arange(60) % 3
fitted = BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, y)


def malformed(fmt, how):
    M = sp.csr_matrix(X).asformat(fmt)
    if fmt == "coo":
        M.col[3] = 10 ** 6 if how == "large" else -5
    elif how == "indptr":
        M.indptr[2] = M.indptr[-1] + 7
    else:
        M.indices[3] = 10 ** 6 if how == "large" else -5
    return M


for fmt in ("csr", "csc", "coo"):
    for how in ("large", "negative", "indptr"):
        if fmt == "coo" and how == "indptr":
            continue
        for solver in ("sgd", "lbfgs", "predict"):
            try:
                if solver == "predict":
                    fitted.predict(malformed(fmt, how))
                else:
                    BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2,
                                       solver=solver).fit(malformed(fmt, how), y)
                print("accepted", fmt, how, solver)
            except ValueError as exc:
                print(exc)
"""


def test_sparse_x_with_indices_outside_its_shape_is_refused():
    """Index arrays that point outside the matrix (set by hand, or read from a damaged
    file) were handed to scipy's conversions and toarray, which write where they
    point: a column index of 10**6 crashed the process, a negative one trained on
    values moved to other columns."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", MALFORMED_CHILD], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 24 and all("malformed scipy.sparse" in line for line in lines), \
        done.stdout
