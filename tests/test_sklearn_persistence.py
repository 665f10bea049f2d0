"""Saving the scikit-learn estimators: skops.io (trusting only the estimator classes)
and pickle, whose state holds plain arrays, numbers and strings only."""

import io
import pickle
import pickletools
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="cyprop.sklearn needs scikit-learn")

from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from cyprop.sklearn import BackpropClassifier, BackpropRegressor  # noqa: E402

X, _y = load_iris(return_X_y=True)
LABELS = np.array(["setosa", "versicolor", "virginica"], dtype=object)[_y]
TRUSTED = {BackpropClassifier: "cyprop.sklearn.BackpropClassifier",
           BackpropRegressor: "cyprop.sklearn.BackpropRegressor"}

FITTED = [
    (BackpropClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0), LABELS),
    (BackpropClassifier(hidden_layer_sizes=(6,), solver="sgd", max_iter=5, dropout=0.1,
                        max_norm=2.0, random_state=0), _y == 1),
    (BackpropClassifier(hidden_layer_sizes=(6,), solver="lbfgs", max_iter=5, random_state=0),
     np.column_stack([_y == 0, _y == 2]).astype(int)),
    (BackpropClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=5,
                        random_state=0), _y),
    (BackpropRegressor(hidden_layer_sizes=(6,), max_iter=5, dtype="float32", random_state=0),
     X[:, :2]),
    (BackpropRegressor(loss="poisson", solver="rprop", hidden_layer_sizes=(3,), max_iter=5,
                       random_state=0), _y),
]


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _fitted(est, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)


def _predictions(est):
    return est.predict_proba(X) if hasattr(est, "predict_proba") else est.predict(X)


def _assert_same(a, b):
    np.testing.assert_array_equal(_predictions(a), _predictions(b))
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert a.get_params() == b.get_params()
    for name in ("n_iter_", "t_", "loss_", "n_outputs_", "n_features_in_", "out_activation_",
                 "n_layers_"):
        assert getattr(a, name) == getattr(b, name)
    assert getattr(a, "loss_curve_", None) == getattr(b, "loss_curve_", None)
    if hasattr(a, "classes_"):
        np.testing.assert_array_equal(a.classes_, b.classes_)
    np.testing.assert_array_equal(a.network_._params, b.network_._params)
    timings = ("seconds", "samples_per_second")
    assert ({k: v for k, v in a.network_.history.to_dict().items() if k not in timings}
            == {k: v for k, v in b.network_.history.to_dict().items() if k not in timings})


@pytest.mark.parametrize("est, y", FITTED, ids=lambda v: type(v).__name__)
def test_skops_round_trip_trusting_only_the_estimator(est, y):
    sio = pytest.importorskip("skops.io")
    est = _fitted(est, y)
    data = sio.dumps(est)
    assert sio.get_untrusted_types(data=data) == [TRUSTED[type(est)]]
    back = sio.loads(data, trusted=[TRUSTED[type(est)]])
    _assert_same(est, back)
    assert back.network_.history.to_dict() == est.network_.history.to_dict()
    # the network trains on from where it was, optimizer state included
    if est.solver != "lbfgs" and not est.early_stopping:
        est.partial_fit(X, y)
        back.partial_fit(X, y)
        _assert_same(est, back)


def test_skops_refuses_the_estimator_unless_trusted():
    sio = pytest.importorskip("skops.io")
    est = _fitted(*FITTED[0])
    with pytest.raises(Exception, match="[Uu]ntrusted"):
        sio.loads(sio.dumps(est))


def test_skops_file_and_unfitted_estimator(tmp_path):
    sio = pytest.importorskip("skops.io")
    est = BackpropRegressor(hidden_layer_sizes=(3,), random_state=0)
    path = tmp_path / "model.skops"
    sio.dump(est, path)
    back = sio.load(path, trusted=[TRUSTED[BackpropRegressor]])
    assert back.get_params() == est.get_params() and not hasattr(back, "network_")


@pytest.mark.parametrize("est, y", FITTED, ids=lambda v: type(v).__name__)
def test_pickled_state_holds_no_cyprop_object_but_the_estimator(est, y):
    est = _fitted(est, y)
    data = pickle.dumps(est)
    # the module names pickle stores for the classes it needs
    strings = [arg for op, arg, _ in pickletools.genops(io.BytesIO(data))
               if isinstance(arg, str) and arg.startswith("cyprop")]
    assert set(strings) <= {"cyprop.sklearn"}, strings
    back = pickle.loads(data)
    _assert_same(est, back)
