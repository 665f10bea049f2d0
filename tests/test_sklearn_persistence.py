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


def _set(key, value):
    return lambda state: state.__setitem__(key, value)


def _set_optimizer(key, value):
    return lambda state: state["optimizer"].__setitem__(key, value)


def _nan_at_0(key):
    def edit(state):
        array = state[key] if key == "params" else state["optimizer"]["state"]
        array.flat[0] = np.nan
    return edit


# (what skops.io or pickle hands __setstate__: a file that trusts only the estimator
# class still decides every value of the network's state)
CRAFTED_NETWORKS = [
    ("nan-weights", _nan_at_0("params"), "the weights contain NaN"),
    ("scalar-weights", _set("params", np.float64(0.5)), "the parameters must be a NumPy"),
    ("short-weights", lambda s: s.update(params=s["params"][:1]), "the parameters have shape"),
    ("object-weights", lambda s: s.update(params=s["params"].astype(object)),
     "the parameters have dtype object"),
    ("nan-optimizer-state", _nan_at_0("optimizer"), "optimizer state contains NaN"),
    ("optimizer-state-shape", _set_optimizer("state", np.zeros((2, 3))), "Adam state must be"),
    ("unknown-optimizer", _set_optimizer("name", "Foo"), "unknown optimizer 'Foo'"),
    ("initial-rate-nan", _set_optimizer("initial_learning_rate", float("nan")),
     "invalid initial learning rate"),
    ("initial-rate-text", _set_optimizer("initial_learning_rate", "x"),
     "invalid initial learning rate"),
    ("optimizer-not-a-dict", _set("optimizer", 5), "invalid optimizer entry"),
    ("history-text", lambda s: s["history"].update(loss=["x"] * len(s["history"]["loss"])),
     "invalid training history record 'loss'"),
    ("history-ragged", lambda s: (s["history"].update(loss=np.ones(1)),
                                  s["history_none"].update(loss=np.zeros(1, bool))),
     "different lengths"),
    ("history-none-shape", lambda s: s["history_none"].update(loss=np.zeros(1, bool)),
     "invalid training history record 'loss'"),
    ("history-object-array",
     lambda s: s["history"].update(loss=s["history"]["loss"].astype(object)),
     "invalid training history record 'loss'"),
    ("history-none-keys", lambda s: s["history_none"].pop("loss"), "invalid training history"),
    ("history-lists-text", lambda s: (s.pop("history_none"), s["history"].update(
        {key: ["x"] * len(values) for key, values in s["history"].items()})),
     "invalid training history record"),
    ("history-lists-ragged", lambda s: (s.pop("history_none"), s["history"].update(
        {key: values.tolist() for key, values in s["history"].items()}, loss=[1.0])),
     "different lengths"),
    ("history-not-a-dict", _set("history", 5), "invalid training history"),
    ("stop-reason-number", _set("stop_reason", 5), "invalid training history"),
    ("no-weights", lambda s: s.pop("params"), "it lacks params"),
    ("not-a-dict", lambda s: s.clear(), "it lacks sizes"),
]


@pytest.mark.parametrize("label, edit, problem", CRAFTED_NETWORKS,
                         ids=[c[0] for c in CRAFTED_NETWORKS])
def test_a_crafted_network_state_is_refused_by_name(label, edit, problem):
    est = _fitted(BackpropClassifier(hidden_layer_sizes=(6,), max_iter=5, random_state=0), _y)
    state = pickle.loads(pickle.dumps(est.__getstate__()))
    edit(state["_network_state"])
    with pytest.raises(ValueError, match="cannot unpickle this estimator's network: .*"
                                         + problem.replace("(", r"\(")):
        BackpropClassifier.__new__(BackpropClassifier).__setstate__(state)


def test_the_network_generator_survives_pickle():
    est = _fitted(*FITTED[0])
    est.network_.fit(X, np.eye(3)[_y], epochs=1, shuffle=True, verbose=0)
    back = pickle.loads(pickle.dumps(est))
    assert back.network_.get_state().rng == est.network_.get_state().rng


def test_a_network_state_pickled_with_history_lists_loads():
    # (states written before the records were kept as arrays)
    est = _fitted(*FITTED[0])
    state = est.__getstate__()
    network = state["_network_state"]
    history, none = network["history"], network.pop("history_none")
    network["history"] = {key: [None if gap else value for value, gap in
                                zip(history[key].tolist(), none[key].tolist())]
                          for key in history}
    state["loss_curve_"] = list(est.loss_curve_)
    back = BackpropClassifier.__new__(BackpropClassifier)
    back.__setstate__(state)
    _assert_same(est, back)


def test_a_network_state_pickled_without_its_generator_loads():
    # (states written before the generator's was kept: a fresh one from the seed)
    est = _fitted(*FITTED[0])
    state = est.__getstate__()
    state["_network_state"].pop("rng", None)
    back = BackpropClassifier.__new__(BackpropClassifier)
    back.__setstate__(state)
    _assert_same(est, back)


def test_the_network_classes_survive_pickle():
    est = _fitted(*FITTED[0])
    est.network_.classes = ["setosa", "versicolor", "virginica"]
    assert pickle.loads(pickle.dumps(est)).network_.classes == tuple(est.network_.classes)
    state = est.__getstate__()
    state["_network_state"]["classes"] = ["a", "a", "b"]
    with pytest.raises(ValueError, match="cannot unpickle this estimator's network: "
                                         "invalid classes .*not distinct"):
        BackpropClassifier.__new__(BackpropClassifier).__setstate__(state)
    state["_network_state"].pop("classes")   # (states pickled before it was kept)
    back = BackpropClassifier.__new__(BackpropClassifier)
    back.__setstate__(state)
    assert back.network_.classes is None


def test_a_long_stream_of_partial_fit_calls_saves_compactly():
    # Each partial_fit call records an epoch.  Held as lists of floats, a record took
    # skops.io hundreds of bytes per value: an estimator fed for a day made files of
    # gigabytes that took minutes to write.
    sio = pytest.importorskip("skops.io")
    est = BackpropClassifier(hidden_layer_sizes=(3,), random_state=0)
    est.partial_fit(X[:5], _y[:5], classes=[0, 1, 2])
    epochs = 5000
    rng = np.random.default_rng(0)
    history = est.network_.history
    for key in history.KEYS:
        setattr(history, key, rng.random(epochs).tolist())
    history.val_loss = [None] * epochs
    history.loss[1] = float("nan")
    history.seconds[2] = -0.0
    est.loss_curve_ = rng.random(epochs).tolist()
    data = sio.dumps(est)
    assert len(data) < 30 * epochs * 8
    back = sio.loads(data, trusted=[TRUSTED[BackpropClassifier]])
    assert repr(back.network_.history.to_dict()) == repr(history.to_dict())
    assert back.loss_curve_ == est.loss_curve_ and type(back.loss_curve_) is list
    again = pickle.loads(pickle.dumps(est))
    assert repr(again.network_.history.to_dict()) == repr(history.to_dict())
    assert again.loss_curve_ == est.loss_curve_
