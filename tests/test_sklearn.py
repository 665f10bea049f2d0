"""cyprop.sklearn: scikit-learn's estimator checks, MLPClassifier-like behaviour, and
the estimators inside Pipeline, GridSearchCV, cross_val_score and clone.

Threads and Dask are in test_scaling.py.
"""

import importlib
import pickle
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="cyprop.sklearn needs scikit-learn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import cyprop  # noqa: E402
from cyprop.sklearn import BackpropClassifier, BackpropRegressor  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    """These tests fit hundreds of tiny networks, where waking OpenMP threads for each
    mini-batch costs more than it gains (much more on a busy machine); one thread keeps
    the file fast.  test_thread_count_does_not_change_the_model asks for two itself."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


# ------------------------------------------------------- scikit-learn's checks
# Small networks and few epochs keep the ~60 checks per estimator fast; the
# configurations between them cover the defaults, every solver, both backends, both
# dtypes, hidden layers from none to two, dropout with max-norm, early stopping and
# the Poisson loss.  Besides the expected failures below (each with its reason),
# scikit-learn itself skips a few checks here: check_array_api_input unless
# SCIPY_ARRAY_API=1 is set (it passes with it), the decision_function format checks
# (these estimators have none, as MLPClassifier), and, without pandas installed, its
# DataFrame/Series checks.
_SMALL = dict(hidden_layer_sizes=(10,), max_iter=100, learning_rate_init=0.01)
CHECKED = [
    BackpropClassifier(),
    BackpropRegressor(),
    BackpropClassifier(**_SMALL),
    BackpropRegressor(**_SMALL),
    BackpropClassifier(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=100),
    BackpropRegressor(solver="lbfgs", hidden_layer_sizes=(10,), max_iter=100),
    BackpropClassifier(solver="sgd", learning_rate="adaptive", learning_rate_init=0.1,
                       hidden_layer_sizes=(8, 6), activation="tanh", max_iter=100),
    BackpropClassifier(solver="sgd", learning_rate="invscaling", learning_rate_init=0.5,
                       power_t=0.25, hidden_layer_sizes=(10,), max_iter=100),
    BackpropRegressor(solver="adagrad", learning_rate_init=0.1, hidden_layer_sizes=(),
                      backend="numpy", max_iter=100),
    BackpropClassifier(solver="rprop", backend="numpy", **_SMALL),
    BackpropRegressor(solver="rprop", activation="logistic", **_SMALL),
    BackpropClassifier(dtype="float32", **_SMALL),
    BackpropRegressor(dtype="float32", **_SMALL),
    BackpropClassifier(dropout=0.1, max_norm=3.0, **_SMALL),
    # the checks fit sets of 10 samples: a validation set of 3
    BackpropClassifier(early_stopping=True, validation_fraction=0.3, **_SMALL),
    BackpropRegressor(early_stopping=True, validation_fraction=0.3, **_SMALL),
    BackpropRegressor(loss="poisson", solver="lbfgs", hidden_layer_sizes=(5,), max_iter=100),
]


def _expected_failed_checks(estimator):
    """The checks each configuration cannot pass, with the reason (none for the defaults)."""
    checks = ("check_sample_weight_equivalence_on_dense_data",
              "check_sample_weight_equivalence_on_sparse_data")
    if estimator.dtype == "float32":
        return dict.fromkeys(checks, "float32 training: weighting and repeating samples "
                                     "agree to ~1e-6, not the check's rtol=1e-7")
    if estimator.dropout:
        return dict.fromkeys(checks, "dropout masks are drawn per sample position, so a "
                                     "repeated sample gets other masks than a weighted one")
    if estimator.early_stopping:
        partial = "partial_fit refuses early_stopping=True, as scikit-learn's MLP does"
        return {**dict.fromkeys(checks, "the validation set is drawn from the rows: a repeated "
                                        "sample can land on both sides of the split, a "
                                        "weighted one on one side (as in scikit-learn)"),
                "check_estimators_partial_fit_n_features": partial,
                "check_fit_score_takes_y": partial,
                "check_n_features_in_after_fitting": partial}
    if estimator.learning_rate == "invscaling" and estimator.solver == "sgd":
        return dict.fromkeys(checks, "'invscaling' decays with t_, the samples seen: "
                                     "repeated samples advance it, weighted ones do not "
                                     "(as in scikit-learn)")
    if estimator.loss == "poisson":
        return {"check_regressor_multioutput": "the check's targets are negative, and the "
                                               "Poisson loss needs y >= 0"}
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_the_defaults_have_no_expected_failures():
    assert _expected_failed_checks(BackpropClassifier()) == {}
    assert _expected_failed_checks(BackpropRegressor()) == {}


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)


@pytest.fixture(scope="module")
def blobs():
    X, y = make_classification(n_samples=300, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    return StandardScaler().fit_transform(X), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=200, n_features=6, n_targets=1, noise=0.1,
                           random_state=0)
    return StandardScaler().fit_transform(X), y / np.std(y)


def _quiet_fit(est, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y, **kwargs)


# ------------------------------------------------------------------ classifier
def test_classifier_learns_digits_with_sklearn_attributes(digits):
    X_train, X_test, y_train, y_test = digits
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(64,), max_iter=60,
                                        n_iter_no_change=100, random_state=0),
                     X_train, y_train)
    assert clf.score(X_test, y_test) > 0.95
    assert list(clf.classes_) == list(range(10))
    assert isinstance(clf.network_, cyprop.Network)
    assert clf.network_.sizes == [64, 64, 10]
    assert clf.network_.activations == ["relu", "softmax"]
    assert clf.network_.loss_name == "cross_entropy"
    assert clf.n_features_in_ == 64 and clf.n_layers_ == 3 and clf.n_outputs_ == 10
    assert clf.out_activation_ == "softmax"
    assert clf.n_iter_ == len(clf.loss_curve_) == 60
    assert clf.loss_ == clf.loss_curve_[-1]
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.t_ == 60 * X_train.shape[0]
    assert [c.shape for c in clf.coefs_] == [(64, 64), (64, 10)]
    assert [b.shape for b in clf.intercepts_] == [(64,), (10,)]
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X_test), proba.argmax(axis=1))
    np.testing.assert_allclose(clf.predict_log_proba(X_test), np.log(proba))


def test_coefs_are_transposed_views_of_the_network(blobs):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0),
                     X, y)
    for coef, W in zip(clf.coefs_, clf.network_.weights):
        assert coef.shape == W.T.shape
        assert np.shares_memory(coef, W)
    for b, nb in zip(clf.intercepts_, clf.network_.biases):
        assert np.shares_memory(b, nb)
    # scikit-learn's forward pass from coefs_/intercepts_ gives the network's outputs
    hidden = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    z = hidden @ clf.coefs_[1] + clf.intercepts_[1]
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-10)
    # writing into a view changes the model
    clf.coefs_[1][...] = 0.0
    clf.intercepts_[1][...] = [0.0, 0.0, 1.0]
    assert set(clf.predict(X)) == {2}


def test_string_labels_binary_uses_one_sigmoid_output(blobs):
    X, y = blobs
    mask = y < 2
    labels = np.array(["spam", "ham"])[y[mask]]
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=50,
                                        learning_rate_init=0.01, random_state=0),
                     X[mask], labels)
    assert list(clf.classes_) == ["ham", "spam"]
    assert clf.network_.sizes[-1] == 1
    assert clf.network_.activations[-1] == "sigmoid"
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    proba = clf.predict_proba(X[mask])
    assert proba.shape == (mask.sum(), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 1], clf.network_.forward(X[mask])[:, 0])
    predicted = clf.predict(X[mask])
    assert predicted.dtype == labels.dtype
    np.testing.assert_array_equal(predicted, clf.classes_[(proba[:, 1] > 0.5).astype(int)])
    assert clf.score(X[mask], labels) > 0.9


def test_one_class_predicts_that_class():
    X = np.random.default_rng(0).normal(size=(20, 3))
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(4,), max_iter=3), X, ["a"] * 20)
    assert list(clf.classes_) == ["a"]
    assert list(clf.predict(X[:3])) == ["a"] * 3
    # as MLPClassifier: one sigmoid unit, whose output gives two columns, 1 - p and p
    proba = clf.predict_proba(X[:3])
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba[:, 1], clf.network_.forward(X[:3])[:, 0])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_multilabel_indicator_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0, X[:, 3] > 0.5]).astype(int)
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(16,), max_iter=200,
                                        learning_rate_init=0.01, random_state=0), X, Y)
    assert clf.network_.activations[-1] == "sigmoid" and clf.network_.sizes[-1] == 3
    assert clf.out_activation_ == "logistic"
    assert list(clf.classes_) == [0, 1, 2]
    pred = clf.predict(X)
    assert pred.shape == Y.shape and pred.dtype == Y.dtype
    assert clf.predict_proba(X).shape == (200, 3)
    assert (pred == Y).mean() > 0.9


def test_multiclass_multioutput_targets_are_refused():
    X = np.zeros((6, 2))
    y = np.array([[0, 1], [1, 2], [2, 0], [0, 1], [1, 2], [2, 0]])
    with pytest.raises(ValueError, match="multiclass-multioutput"):
        BackpropClassifier(max_iter=2).fit(X, y)


def test_regression_target_is_refused_by_the_classifier():
    with pytest.raises(ValueError, match="Unknown label type"):
        BackpropClassifier(max_iter=2).fit(np.zeros((4, 2)), [0.5, 1.5, 2.5, 3.1])


# ------------------------------------------------------------------ regressor
def test_regressor_one_and_several_outputs(regression):
    X, y = regression
    reg = _quiet_fit(BackpropRegressor(hidden_layer_sizes=(32,), max_iter=200,
                                       learning_rate_init=0.01, random_state=0), X, y)
    assert reg.network_.activations[-1] == "identity" and reg.network_.loss_name == "mse"
    assert reg.out_activation_ == "identity" and reg.n_outputs_ == 1
    assert reg.predict(X).shape == (200,)
    assert reg.score(X, y) > 0.95
    Y = np.column_stack([y, -2 * y])
    reg2 = _quiet_fit(clone(reg), X, Y)
    assert reg2.n_outputs_ == 2 and reg2.predict(X).shape == (200, 2)
    assert reg2.score(X, Y) > 0.9


def test_regressor_column_vector_y_warns_and_predicts_1d(regression):
    from sklearn.exceptions import DataConversionWarning

    X, y = regression
    with pytest.warns(DataConversionWarning):
        reg = _quiet_fit(BackpropRegressor(hidden_layer_sizes=(4,), max_iter=3), X, y[:, None])
    assert reg.predict(X).shape == (200,)


# --------------------------------------------------------------- convergence
@pytest.mark.parametrize("n_iter_no_change", [1, 4])
def test_stopping_rule_counts_epochs_as_sklearn(blobs, n_iter_no_change):
    X, y = blobs
    # A tol this large means no epoch ever improves: both stop after
    # n_iter_no_change + 1 epochs without improvement, counting the first as one.
    kwargs = dict(hidden_layer_sizes=(5,), tol=1e9, n_iter_no_change=n_iter_no_change,
                  max_iter=50, random_state=0)
    ours = BackpropClassifier(**kwargs).fit(X, y)
    theirs = MLPClassifier(**kwargs).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == n_iter_no_change + 2
    assert len(ours.loss_curve_) == ours.n_iter_


def test_convergence_warning_only_when_max_iter_is_reached(blobs):
    X, y = blobs
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(3\) reached"):
        BackpropClassifier(hidden_layer_sizes=(5,), max_iter=3, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = BackpropClassifier(hidden_layer_sizes=(5,), max_iter=100, tol=10.0,
                                 random_state=0).fit(X, y)
    assert clf.n_iter_ < 100
    assert clf.network_.history.stop_reason == "callback"


def test_loss_curve_includes_the_l2_penalty(blobs):
    X, y = blobs
    # a rate so small that the weights stay where they started: the epoch's loss is the
    # loss at the initial weights, plus scikit-learn's penalty averaged over the batches
    # (0.5 * alpha * ||W||^2 / batch size, for batches that divide the samples)
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(5,), alpha=10.0, max_iter=1,
                                        batch_size=50, solver="sgd", momentum=0.0,
                                        learning_rate_init=1e-300, random_state=0), X, y)
    net = clf.network_
    decay = 10.0 / 50
    assert net.optimizer.weight_decay == pytest.approx(decay)
    penalty = 0.5 * decay * sum(float(np.sum(W ** 2)) for W in net.weights)
    assert clf.loss_curve_[-1] == pytest.approx(net.loss(X, y) + penalty, rel=1e-12)
    assert net.history.loss == clf.loss_curve_


def test_early_stopping_keeps_the_best_validation_epoch(digits):
    X_train, _, y_train, _ = digits
    clf = BackpropClassifier(hidden_layer_sizes=(32,), early_stopping=True, max_iter=200,
                             n_iter_no_change=5, learning_rate_init=0.01, random_state=0)
    clf.fit(X_train, y_train)
    assert clf.n_iter_ < 200
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_ == len(clf.loss_curve_)
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the held-out split (drawn, as scikit-learn draws it, after the initial weights and
    # not stratified for more than two classes) scores the best score with the weights
    # that were kept
    rng = np.random.RandomState(0)
    for n_in, n_out in ((64, 32), (32, 10)):
        rng.uniform(size=(n_in, n_out))
        rng.uniform(size=n_out)
    _, X_val, _, y_val = train_test_split(X_train, y_train, random_state=rng, test_size=0.1)
    assert clf.score(X_val, y_val) == clf.best_validation_score_


def test_early_stopping_regressor_scores_r2(regression):
    X, y = regression
    reg = BackpropRegressor(hidden_layer_sizes=(16,), early_stopping=True, max_iter=300,
                            learning_rate_init=0.01, random_state=0)
    _quiet_fit(reg, X, y)
    assert 0.9 < reg.best_validation_score_ <= 1.0


def test_early_stopping_on_a_dataframe_warns_nothing():
    pd = pytest.importorskip("pandas")
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    X = pd.DataFrame(X, columns=list("abcde"))
    clf = BackpropClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=20,
                             n_iter_no_change=100, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        clf.predict(X)
    assert list(clf.feature_names_in_) == list("abcde")
    assert len(clf.validation_scores_) == 20


def test_validation_set_too_small_is_explained():
    X, y = make_classification(n_samples=12, random_state=0)
    with pytest.raises(ValueError, match="validation set is too small"):
        BackpropRegressor(early_stopping=True, validation_fraction=0.05).fit(X, y)


# ------------------------------------------------------------ solvers, params
@pytest.mark.parametrize("solver, lr, optimizer", [
    ("sgd", 0.1, cyprop.SGD), ("adam", 0.01, cyprop.Adam), ("rmsprop", 0.01, cyprop.RMSprop),
    ("adagrad", 0.1, cyprop.Adagrad), ("rprop", 0.01, cyprop.Rprop)])
def test_every_solver_learns(blobs, solver, lr, optimizer):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(solver=solver, learning_rate_init=lr,
                                        hidden_layer_sizes=(16,), max_iter=60, random_state=0),
                     X, y)
    assert isinstance(clf.network_.optimizer, optimizer)
    assert clf.score(X, y) > 0.85


def test_optimizer_settings_follow_the_parameters(blobs):
    X, y = blobs
    sgd = _quiet_fit(BackpropClassifier(solver="sgd", momentum=0.5, nesterovs_momentum=False,
                                        alpha=0.3, batch_size=30, max_iter=1), X, y)
    opt = sgd.network_.optimizer
    assert (opt.momentum, opt.nesterov) == (0.5, False)
    assert opt.weight_decay == pytest.approx(0.3 / 30)
    adam = _quiet_fit(BackpropClassifier(beta_1=0.8, beta_2=0.99, epsilon=1e-6, max_iter=1),
                      X, y)
    opt = adam.network_.optimizer
    assert (opt.beta1, opt.beta2, opt.eps) == (0.8, 0.99, 1e-6)
    assert opt.weight_decay == pytest.approx(0.0001 / 200)   # batch_size 'auto': min(200, n)
    rprop = _quiet_fit(BackpropClassifier(solver="rprop", max_iter=1), X, y)
    assert rprop.network_.optimizer.steps == 1            # 'auto' is a full batch for Rprop


def test_learning_rate_schedules(blobs):
    X, y = blobs
    inv = _quiet_fit(BackpropClassifier(solver="sgd", learning_rate="invscaling", power_t=0.5,
                                        learning_rate_init=0.1, max_iter=4), X, y)
    # scikit-learn's schedule: after each epoch, init / (t_ + 1) ** power_t, t_ the
    # samples seen so far
    n = len(y)
    assert inv.network_.history.learning_rate == pytest.approx(
        [0.1] + [0.1 / np.sqrt(e * n + 1) for e in range(1, 4)])
    assert inv._optimizer.learning_rate == pytest.approx(0.1 / np.sqrt(4 * n + 1))
    # 'adaptive' divides the rate by 5 where the stopping rule would stop
    ada = _quiet_fit(BackpropClassifier(solver="sgd", learning_rate="adaptive", tol=1e9,
                                        n_iter_no_change=2, learning_rate_init=0.1,
                                        max_iter=8), X, y)
    assert ada.n_iter_ == 8
    assert ada.network_.optimizer.learning_rate == pytest.approx(0.1 / 5 / 5)
    # and for Adam the schedule is not used (as scikit-learn)
    adam = _quiet_fit(BackpropClassifier(learning_rate="invscaling", max_iter=3), X, y)
    assert adam.network_.history.learning_rate == [0.001] * 3


@pytest.mark.parametrize("name, cyprop_name", [
    ("logistic", "sigmoid"), ("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "relu"),
    ("identity", "identity"), ("leaky_relu", "leaky_relu")])
def test_activation_names(blobs, name, cyprop_name):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(activation=name, hidden_layer_sizes=(3, 3), max_iter=1),
                     X, y)
    assert clf.network_.activations == [cyprop_name, cyprop_name, "softmax"]


def test_network_options_pass_through(blobs):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(6,), dtype="float32", init="he",
                                        backend="numpy", dropout=0.25, max_norm=2.0,
                                        max_iter=3, random_state=0), X, y)
    net = clf.network_
    assert net.dtype == np.float32 and net.init == "he" and net.backend == "numpy"
    assert net.dropout == [0.25] and net.max_norm == 2.0
    assert clf.predict_proba(X).dtype == np.float64            # float64 in, float64 out
    assert clf.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert np.all(np.linalg.norm(net.weights[0], axis=1) <= 2.0 + 1e-5)


@pytest.mark.parametrize("continuation", ["partial_fit", "warm_start"])
def test_dropout_and_max_norm_set_between_fits_apply_to_the_next(blobs, continuation):
    """Training options, not architecture: set after a fit, they were silently ignored
    by warm starts and partial_fit (the network kept the first fit's)."""
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0,
                                        warm_start=continuation == "warm_start"), X, y)
    train = clf.partial_fit if continuation == "partial_fit" else clf.fit
    clf.set_params(dropout=0.5, max_norm=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        train(X, y)
    assert clf.network_.dropout == [0.5] and clf.network_.max_norm == 0.1
    assert np.all(np.linalg.norm(clf.network_.weights[0], axis=1) <= 0.1 + 1e-9)
    clf.set_params(dropout=0.0, max_norm=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        train(X, y)
    assert clf.network_.dropout == [0.0] and clf.network_.max_norm == 0.0


def test_thread_count_does_not_change_the_model(blobs):
    X, y = blobs
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=5, batch_size=64, random_state=0)
    one = _quiet_fit(BackpropClassifier(n_threads=1, **kwargs), X, y)
    two = _quiet_fit(BackpropClassifier(n_threads=2, **kwargs), X, y)
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))


def test_backends_agree(blobs):
    X, y = blobs
    kwargs = dict(hidden_layer_sizes=(8,), max_iter=10, random_state=0, batch_size=32)
    cy = _quiet_fit(BackpropClassifier(backend="cython", **kwargs), X, y)
    ref = _quiet_fit(BackpropClassifier(backend="numpy", **kwargs), X, y)
    np.testing.assert_allclose(cy.predict_proba(X), ref.predict_proba(X), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(cy.loss_curve_, ref.loss_curve_, rtol=1e-9)


@pytest.mark.parametrize("params, match", [
    (dict(solver="newton"), "The 'solver' parameter of BackpropClassifier must be a str among"),
    (dict(solver="lbfgs", dropout=0.2), "need a stochastic solver"),
    (dict(n_iter_no_change=0),
     r"The 'n_iter_no_change' parameter .* an int in the range \[1, inf\) or a float among {inf}"),
    (dict(max_fun=0), "The 'max_fun' parameter .* must be an int in the range"),
    (dict(activation="softmax"), "The 'activation' parameter .* must be a str among"),
    (dict(learning_rate="optimal"), "The 'learning_rate' parameter .* must be a str among"),
    (dict(hidden_layer_sizes=(5, 0)), r"hidden_layer_sizes must be > 0, got \[5, 0\]\."),
    (dict(batch_size=0), "The 'batch_size' parameter .* must be a str among {'auto'} or an int"),
    (dict(alpha=-1.0), r"The 'alpha' parameter .* must be a float in the range \[0.0, inf\)"),
    (dict(momentum=1.5), r"The 'momentum' parameter .* in the range \[0.0, 1.0\]"),
    (dict(validation_fraction=1.0), r"'validation_fraction' parameter .* range \[0.0, 1.0\)"),
    (dict(beta_2=1.0), r"The 'beta_2' parameter .* in the range \[0.0, 1.0\)"),
    (dict(max_iter=0), r"The 'max_iter' parameter .* must be an int in the range \[1, inf\)"),
    (dict(dtype="float16"), "dtype must be None, 'float64' or 'float32'"),
    (dict(init="zeros"), "unknown init"),
    (dict(backend="gpu"), "unknown backend"),
    (dict(n_threads=0), "n_threads must be None or an int >= 1"),
    (dict(early_stopping="no"), "The 'early_stopping' parameter .* must be an instance of 'bool'"),
    (dict(shuffle="yes"), "The 'shuffle' parameter .* must be an instance of 'bool'"),
    (dict(warm_start=2), "The 'warm_start' parameter .* must be an instance of 'bool'"),
    (dict(nesterovs_momentum=None), "'nesterovs_momentum' parameter .* an instance of 'bool'"),
    (dict(verbose="x"), r"'verbose' parameter .* int in the range \[0, inf\), an instance of"),
])
def test_bad_parameters_fail_at_fit_not_construction(params, match):
    est = BackpropClassifier(**params)   # scikit-learn: __init__ only stores
    with pytest.raises(ValueError, match=match):
        est.fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_large_batch_size_is_clipped_with_a_warning(blobs):
    X, y = blobs
    with pytest.warns(UserWarning, match="It is going to be clipped"):
        clf = _quiet_fit(BackpropClassifier(batch_size=1000, max_iter=1), X, y)
    assert clf.network_.optimizer.steps == 1


def test_verbose_prints_sklearn_style(blobs, capsys):
    X, y = blobs
    _quiet_fit(BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True), X, y)
    out = capsys.readouterr().out
    assert "Iteration 1, loss = " in out and "Iteration 2, loss = " in out


def test_sample_weight_zero_is_removing_the_sample(blobs):
    X, y = blobs
    weights = np.ones(len(y))
    weights[::3] = 0
    kwargs = dict(hidden_layer_sizes=(6,), max_iter=20, batch_size=1000, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        weighted = BackpropClassifier(**kwargs).fit(X, y, sample_weight=weights)
        removed = BackpropClassifier(**kwargs).fit(X[weights > 0], y[weights > 0])
    np.testing.assert_allclose(weighted.predict_proba(X), removed.predict_proba(X), rtol=1e-9)
    with pytest.raises(ValueError, match="weight"):
        BackpropClassifier().fit(X, y, sample_weight=np.zeros(len(y)))


# ------------------------------------------------------ partial_fit, warm_start
def test_classifier_partial_fit(blobs):
    X, y = blobs
    clf = BackpropClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    optimizer = clf.network_.optimizer
    first = clf.score(X, y)
    for _ in range(30):
        clf.partial_fit(X, y)
    assert clf.network_.optimizer is optimizer            # the state carries on
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 31   # as MLPClassifier
    assert clf.t_ == 100 + 30 * len(y)
    assert clf.score(X, y) > max(first, 0.85)
    with pytest.raises(ValueError, match="not the same as on last call"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X[:3], [0, 1, 5])
    with pytest.raises(ValueError, match="early_stopping"):
        clone(clf).set_params(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


def test_partial_fit_with_classes_missing_from_the_first_batch(blobs):
    X, y = blobs
    clf = BackpropClassifier(hidden_layer_sizes=(4,), random_state=0)
    clf.partial_fit(X[y == 0], y[y == 0], classes=np.array([2, 1, 0]))
    assert list(clf.classes_) == [0, 1, 2] and clf.network_.sizes[-1] == 3


def test_regressor_partial_fit(regression):
    X, y = regression
    reg = BackpropRegressor(hidden_layer_sizes=(16,), learning_rate_init=0.01, random_state=0)
    for _ in range(40):
        reg.partial_fit(X, y)
    assert len(reg.loss_curve_) == 40 and reg.score(X, y) > 0.8
    with pytest.raises(ValueError, match="features"):
        reg.partial_fit(X[:, :3], y)


def test_warm_start_continues_training(blobs):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True,
                                        random_state=0), X, y)
    net, loss = clf.network_, clf.loss_curve_[-1]
    _quiet_fit(clf, X, y)
    assert clf.network_ is net and clf.n_iter_ == 5 and len(clf.loss_curve_) == 10
    assert clf.loss_curve_[5] < loss * 1.01
    with pytest.raises(ValueError, match="warm_start can only be used"):
        clf.fit(X[y < 2], y[y < 2])
    clf.set_params(hidden_layer_sizes=(9,))
    with pytest.raises(ValueError, match="cannot continue training"):
        clf.fit(X, y)
    # without warm_start a fit starts afresh
    clf.set_params(warm_start=False)
    _quiet_fit(clf, X, y)
    assert clf.network_ is not net and clf.n_iter_ == 5 and len(clf.loss_curve_) == 5


def test_same_random_state_same_model(blobs):
    X, y = blobs
    a = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3),
                   X, y)
    b = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=3),
                   X, y)
    c = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=4),
                   X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.allclose(a.predict_proba(X), c.predict_proba(X))


# ------------------------------------------------ in scikit-learn's machinery
def test_pipeline_with_standard_scaler(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), BackpropClassifier(hidden_layer_sizes=(32,),
                                                              learning_rate_init=0.01,
                                                              max_iter=30, random_state=0))
    _quiet_fit(pipe, X_train * 16, y_train)
    assert pipe.score(X_test * 16, y_test) > 0.93
    assert pipe.predict_proba(X_test[:5] * 16).shape == (5, 10)


def test_grid_search_with_two_processes(digits):
    X_train, X_test, y_train, y_test = digits
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", BackpropClassifier(max_iter=20, learning_rate_init=0.01,
                                                random_state=0))])
    grid = {"mlp__hidden_layer_sizes": [(16,), (32,)], "mlp__alpha": [1e-4, 1e-2]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, grid, cv=3, n_jobs=2).fit(X_train, y_train)
    assert len(search.cv_results_["params"]) == 4
    assert search.best_params_ in grid_params(grid)
    assert search.best_score_ > 0.9
    assert search.score(X_test, y_test) > 0.9
    assert isinstance(search.best_estimator_[-1].network_, cyprop.Network)


def grid_params(grid):
    from sklearn.model_selection import ParameterGrid
    return list(ParameterGrid(grid))


def test_cross_val_score(regression):
    X, y = regression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        scores = cross_val_score(BackpropRegressor(hidden_layer_sizes=(16,), max_iter=100,
                                                   learning_rate_init=0.01, random_state=0),
                                 X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.8


def test_clone_copies_parameters_not_the_fit(blobs):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(7, 5), solver="sgd", alpha=0.01,
                                        dropout=0.1, max_iter=2, random_state=1), X, y)
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "network_") and not hasattr(twin, "classes_")
    _quiet_fit(twin, X, y)
    np.testing.assert_array_equal(twin.predict_proba(X), clf.predict_proba(X))
    assert twin.network_ is not clf.network_


def test_pickle_round_trip(blobs):
    X, y = blobs
    clf = _quiet_fit(BackpropClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0),
                     X, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.coefs_[0].shape == (8, 8) and back.n_iter_ == clf.n_iter_
    back.partial_fit(X, y)   # the network trains on after unpickling
    assert len(back.loss_curve_) == 6


def test_importing_without_sklearn_names_the_extra(monkeypatch):
    # Pretend scikit-learn is not installed: None in sys.modules blocks the import.
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "cyprop.sklearn")
    monkeypatch.delattr(cyprop, "sklearn", raising=False)
    with pytest.raises(ImportError, match=r"cyprop\.sklearn needs scikit-learn.*cyprop\[sklearn\]"):
        importlib.import_module("cyprop.sklearn")
