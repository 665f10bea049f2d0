"""cyprop.sklearn as a drop-in for scikit-learn's MLPClassifier and MLPRegressor.

The behaviours scikit-learn's own test module (sklearn/neural_network/tests/
test_mlp.py) checks, in our words, and agreement with scikit-learn's estimators on
the same data and random_state: the same initial weights, the same SGD trajectory,
the same L-BFGS iterates, the same early-stopping split, warnings and errors.
Sparse input is in test_sklearn_sparse.py, persistence in test_sklearn_persistence.py.
"""

import re
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="cyprop.sklearn needs scikit-learn")

from sklearn.datasets import (load_digits, load_iris, make_multilabel_classification,  # noqa: E402
                              make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.preprocessing import LabelBinarizer, MinMaxScaler  # noqa: E402

import cyprop  # noqa: E402
from cyprop import _lbfgs  # noqa: E402
from cyprop.sklearn import BackpropClassifier, BackpropRegressor  # noqa: E402
from conftest import fit_quietly, layers_of  # noqa: E402

ACTIVATIONS = ["identity", "logistic", "tanh", "relu"]

_X3, _y3 = load_digits(n_class=3, return_X_y=True)
X_MULTI, Y_MULTI = MinMaxScaler().fit_transform(_X3[:200]), _y3[:200]
_X2, _y2 = load_digits(n_class=2, return_X_y=True)
X_BIN, Y_BIN = MinMaxScaler().fit_transform(_X2[:200]), _y2[:200]
X_REG, Y_REG = make_regression(n_samples=200, n_features=6, noise=1.0, random_state=0)
Y_REG = Y_REG / Y_REG.std()
X_IRIS, Y_IRIS = load_iris(return_X_y=True)


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread():
    """Many tiny fits: one OpenMP thread keeps them fast (see test_sklearn.py)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield




def _poisson_data(n=200, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.uniform(size=(n, 3))
    return X, rng.poisson(np.exp(X @ [1.0, -1.0, 0.5]))


# ------------------------------------------------------------- initial weights
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_initial_weights_are_sklearns(activation, dtype):
    # a rate so small that no step moves a weight: coefs_ are the initial weights
    kwargs = dict(hidden_layer_sizes=(7, 5), activation=activation, solver="sgd",
                  learning_rate_init=1e-300, momentum=0.0, max_iter=1, random_state=3)
    ours = fit_quietly(BackpropClassifier(**kwargs), X_MULTI.astype(dtype), Y_MULTI)
    theirs = fit_quietly(MLPClassifier(**kwargs), X_MULTI.astype(dtype), Y_MULTI)
    for a, b in zip(layers_of(ours), layers_of(theirs), strict=True):
        assert a.dtype == b.dtype == dtype
        np.testing.assert_array_equal(a, b)
    # Glorot's bound, factor 2 for logistic units, 6 otherwise (weights and biases)
    factor = 2.0 if activation == "logistic" else 6.0
    for coef, intercept in zip(ours.coefs_, ours.intercepts_):
        bound = np.sqrt(factor / sum(coef.shape))
        assert np.abs(coef).max() <= bound and np.abs(intercept).max() <= bound
        assert np.abs(coef).max() > 0.5 * bound


def test_cyprop_inits_stay_available():
    clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(6,), init="xavier", max_iter=1,
                                  random_state=0), X_MULTI, Y_MULTI)
    assert clf.network_.init == "xavier"


# -------------------------------------------------------- stochastic solvers
@pytest.mark.parametrize("Estimator, Reference, X, y", [
    (BackpropClassifier, MLPClassifier, X_MULTI, Y_MULTI),
    (BackpropClassifier, MLPClassifier, X_BIN, Y_BIN),
    (BackpropRegressor, MLPRegressor, X_REG, Y_REG)])
@pytest.mark.parametrize("momentum, nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_follows_sklearns_trajectory(Estimator, Reference, X, y, momentum, nesterov):
    # the same initial weights, the same order of the samples (scikit-learn's shuffle
    # from the same random state), the same steps: the same training, to rounding
    kwargs = dict(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.05,
                  momentum=momentum, nesterovs_momentum=nesterov, max_iter=15,
                  batch_size=50, alpha=0.0, n_iter_no_change=100, random_state=0)
    ours, theirs = fit_quietly(Estimator(**kwargs), X, y), fit_quietly(Reference(**kwargs), X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
    for a, b in zip(layers_of(ours), layers_of(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert ours.t_ == theirs.t_ and ours.n_iter_ == theirs.n_iter_


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_follows_sklearn_across_learning_rate_changes(nesterov):
    # scikit-learn's velocity is in units of the step: when 'invscaling' or 'adaptive'
    # changes the rate, the momentum carried over moves the weights as before
    kwargs = dict(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.2,
                  momentum=0.9, nesterovs_momentum=nesterov, batch_size=50, alpha=0.0,
                  random_state=0)
    for extra in (dict(learning_rate="invscaling", max_iter=10, n_iter_no_change=100),
                  dict(learning_rate="adaptive", max_iter=12, tol=0.5, n_iter_no_change=1)):
        ours = fit_quietly(BackpropClassifier(**kwargs, **extra), X_MULTI, Y_MULTI)
        theirs = fit_quietly(MLPClassifier(**kwargs, **extra), X_MULTI, Y_MULTI)
        assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate)
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
        for a, b in zip(layers_of(ours), layers_of(theirs), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # partial_fit carries the velocity and the rate from call to call
    ours = BackpropClassifier(learning_rate="invscaling", **kwargs)
    theirs = MLPClassifier(learning_rate="invscaling", **kwargs)
    for _ in range(5):
        for est in (ours, theirs):
            est.partial_fit(X_MULTI, Y_MULTI, classes=np.unique(Y_MULTI))
    for a, b in zip(layers_of(ours), layers_of(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_sgd_l2_penalty_and_sample_weights_as_sklearn():
    # one batch per epoch: the penalty in loss_curve_ is scikit-learn's exactly; sample
    # weights normalise each batch's gradient by the batch's weight, as scikit-learn
    weights = np.random.RandomState(1).uniform(0.2, 3.0, len(Y_MULTI))
    kwargs = dict(hidden_layer_sizes=(20,), solver="sgd", learning_rate_init=0.1,
                  max_iter=10, batch_size=200, alpha=0.01, n_iter_no_change=100,
                  random_state=0)
    for sample_weight in (None, weights):
        ours = fit_quietly(BackpropClassifier(**kwargs), X_MULTI, Y_MULTI,
                           sample_weight=sample_weight)
        theirs = fit_quietly(MLPClassifier(**kwargs), X_MULTI, Y_MULTI, sample_weight=sample_weight)
        np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)
        np.testing.assert_allclose(ours.predict_proba(X_MULTI), theirs.predict_proba(X_MULTI),
                                   atol=1e-10)
    # several batches: the weights still agree; the penalty is interpolated
    kwargs.update(batch_size=50, alpha=0.0, max_iter=5)
    ours = fit_quietly(BackpropClassifier(**kwargs), X_MULTI, Y_MULTI, sample_weight=weights)
    theirs = fit_quietly(MLPClassifier(**kwargs), X_MULTI, Y_MULTI, sample_weight=weights)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-10)


def test_adam_is_close_to_sklearns():
    # Adam's epsilon enters as in torch.optim: a difference of order epsilon
    kwargs = dict(hidden_layer_sizes=(20,), max_iter=20, random_state=0, alpha=0.0)
    ours, theirs = fit_quietly(BackpropClassifier(**kwargs), X_MULTI, Y_MULTI), \
        fit_quietly(MLPClassifier(**kwargs), X_MULTI, Y_MULTI)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)


@pytest.mark.parametrize("X, y", [(X_BIN, Y_BIN), (X_MULTI, Y_MULTI)])
def test_early_stopping_splits_and_scores_as_sklearn(X, y):
    # binary targets: a stratified split, multiclass: not (scikit-learn stratifies on
    # its one-column target only); the same split gives the same validation scores
    kwargs = dict(hidden_layer_sizes=(15,), solver="sgd", learning_rate_init=0.05,
                  early_stopping=True, validation_fraction=0.2, max_iter=30,
                  n_iter_no_change=3, alpha=0.0, random_state=0)
    ours = fit_quietly(BackpropClassifier(**kwargs), X, y)
    theirs = fit_quietly(MLPClassifier(**kwargs), X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.validation_scores_ == theirs.validation_scores_
    assert ours.best_validation_score_ == theirs.best_validation_score_
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-9)


def test_early_stopping_split_is_stratified_where_sklearns_is():
    X, y = [[1, 2], [2, 3], [3, 4], [4, 5]], [0, 0, 0, 1]
    with pytest.raises(ValueError, match=r"least populated classes.*too few members are: "
                                         r"\['True'\]"):
        BackpropClassifier(early_stopping=True).fit(X, y)
    # multilabel targets are not stratified
    X, Y = make_multilabel_classification(n_samples=50, random_state=0)
    fit_quietly(BackpropClassifier(early_stopping=True, max_iter=5), X, Y).predict(X)


@pytest.mark.parametrize("params", [dict(alpha=-1.0), dict(alpha="x"), dict(solver="newton"),
                                    dict(hidden_layer_sizes=0), dict(max_iter=1.5),
                                    dict(early_stopping="no"), dict(n_iter_no_change=0),
                                    dict(random_state="x"), dict(random_state=-1),
                                    dict(random_state=2**32), dict(random_state=1.5),
                                    dict(random_state=np.random.default_rng(0))])
def test_invalid_parameters_raise_sklearns_error_type(params):
    # scikit-learn's InvalidParameterError: a ValueError and a TypeError
    from sklearn.utils._param_validation import InvalidParameterError

    for Estimator in (BackpropClassifier, MLPClassifier, BackpropRegressor, MLPRegressor):
        with pytest.raises(InvalidParameterError) as info:
            Estimator(**params).fit(X_IRIS, Y_IRIS)
        assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    with pytest.raises(InvalidParameterError, match="The 'loss' parameter"):
        BackpropRegressor(loss="absolute_error").fit(X_IRIS, Y_IRIS)


@pytest.mark.parametrize("params", [
    dict(alpha=-1), dict(alpha="1"), dict(learning_rate_init=0), dict(power_t=-1),
    dict(tol=-1), dict(momentum=1.5), dict(validation_fraction=1.0), dict(beta_1=1),
    dict(beta_2=-0.5), dict(epsilon=0), dict(max_iter=0), dict(max_iter=2.0),
    dict(max_fun=0), dict(batch_size=0), dict(batch_size="x"), dict(n_iter_no_change=0),
    dict(shuffle="yes"), dict(warm_start=2), dict(nesterovs_momentum=1),
    dict(early_stopping="x"), dict(verbose="x"), dict(random_state="x"),
    dict(hidden_layer_sizes="3"), dict(hidden_layer_sizes=3.0),
    dict(hidden_layer_sizes=(0,)), dict(hidden_layer_sizes=[3, -1])])
def test_invalid_parameter_messages_are_sklearns(params):
    # code ported from scikit-learn matches on its messages ("The 'alpha' parameter of
    # ... must be a float in the range [0.0, inf). Got -1 instead."): the same words,
    # the estimator's own name
    for ours, theirs in ((BackpropClassifier, MLPClassifier), (BackpropRegressor, MLPRegressor)):
        with pytest.raises(ValueError) as expected:
            theirs(**params).fit(X_IRIS, Y_IRIS)
        message = str(expected.value).replace(theirs.__name__, ours.__name__)
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            ours(**params).fit(X_IRIS, Y_IRIS)


def test_invalid_options_are_named_as_sklearn_names_them():
    # the sets of options are cyprop's (more solvers and activations), the words
    # scikit-learn's
    for params, pattern in ((dict(solver="newton"), "The 'solver' parameter of {} must be a "
                             "str among {{.*'rprop'.*}}. Got 'newton' instead."),
                            (dict(activation="softmax"), "The 'activation' parameter of {} "
                             "must be a str among {{.*'leaky_relu'.*}}. Got 'softmax' instead."),
                            (dict(learning_rate="optimal"), "The 'learning_rate' parameter of "
                             "{} must be a str among {{.*}}. Got 'optimal' instead.")):
        for Estimator in (BackpropClassifier, BackpropRegressor):
            with pytest.raises(ValueError, match=pattern.format(Estimator.__name__)):
                Estimator(**params).fit(X_IRIS, Y_IRIS)
    with pytest.raises(ValueError, match="The 'loss' parameter of BackpropRegressor must be "
                       "a str among {.*}. Got 'absolute_error' instead."):
        BackpropRegressor(loss="absolute_error").fit(X_IRIS, Y_IRIS)


@pytest.mark.parametrize("Estimator", [BackpropClassifier, BackpropRegressor])
def test_sklearns_parameter_validation_check(Estimator):
    # scikit-learn's own check of _parameter_constraints: every parameter of the wrong
    # type or value is refused in its words by fit and by partial_fit (the classifier's
    # before it asks for classes)
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation(Estimator.__name__, Estimator(max_iter=5))


def test_validation_fraction_zero_is_checked_as_sklearn_checks_it():
    # accepted where it is not used (without early stopping); with early stopping,
    # the split refuses it, as scikit-learn's
    for Estimator in (BackpropClassifier, MLPClassifier):
        fit_quietly(Estimator(validation_fraction=0.0, max_iter=2), X_BIN, Y_BIN)
        with pytest.raises(ValueError, match="test_size"):
            Estimator(validation_fraction=0.0, early_stopping=True).fit(X_BIN, Y_BIN)


def test_invscaling_follows_samples_seen_across_warm_starts():
    X, y = [[3, 2], [1, 6], [5, 6], [-2, -4]], [1, 1, 1, 0]
    clf = BackpropClassifier(solver="sgd", hidden_layer_sizes=4, learning_rate="invscaling",
                             max_iter=1, power_t=0.25, warm_start=True, random_state=0)
    fit_quietly(clf, X, y)
    assert clf._optimizer.learning_rate == pytest.approx(0.001 / 5 ** 0.25)
    fit_quietly(clf, X, y)
    # a fresh optimizer for the second fit, the rate after it from t_ = 8
    assert clf.t_ == 8
    assert clf._optimizer.learning_rate == 0.001 / pow(8 + 1, 0.25)
    assert clf.network_.history.learning_rate == [0.001, 0.001]
    # partial_fit carries the rate on
    clf.partial_fit(X, y)
    assert clf.network_.history.learning_rate[-1] == 0.001 / pow(8 + 1, 0.25)


def test_adaptive_learning_rate_divides_by_five_until_small():
    X, y = [[3, 2], [1, 6]], [1, 0]
    clf = BackpropClassifier(tol=0.5, max_iter=3000, solver="sgd", learning_rate="adaptive",
                             random_state=0).fit(X, y)
    assert clf.n_iter_ < 3000
    assert clf._optimizer.learning_rate < 1e-6
    assert clf.network_.history.stop_reason == "callback"


def test_n_iter_no_change_inf_trains_to_max_iter():
    clf = BackpropClassifier(tol=1e9, max_iter=300, solver="sgd", n_iter_no_change=np.inf,
                             hidden_layer_sizes=(5,), random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(300\)"):
        clf.fit(X_BIN[:100], Y_BIN[:100])
    assert clf.n_iter_ == 300
    assert clf._no_improvement_count == clf.n_iter_ - 1


def test_no_improvement_count_carries_across_warm_starts():
    # as scikit-learn: the count (and the best loss) go on from fit to fit
    kwargs = dict(hidden_layer_sizes=(5,), solver="sgd", tol=1e9, n_iter_no_change=5,
                  max_iter=3, warm_start=True, random_state=0)
    ours, theirs = BackpropClassifier(**kwargs), MLPClassifier(**kwargs)
    for est in (ours, theirs):
        runs = []
        for _ in range(3):
            fit_quietly(est, X_BIN, Y_BIN)
            runs.append((est.n_iter_, est._no_improvement_count))
        est.runs = runs
    assert ours.runs == theirs.runs == [(3, 2), (3, 5), (1, 6)]


@pytest.mark.parametrize("Estimator", [BackpropClassifier, BackpropRegressor])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_warm_start_reaching_max_iter_warns(Estimator, solver):
    est = Estimator(solver=solver, hidden_layer_sizes=(10,), warm_start=True, max_iter=10,
                    n_iter_no_change=np.inf, random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X_IRIS, Y_IRIS)
    assert est.n_iter_ == 10
    est.set_params(max_iter=20)
    with pytest.warns(ConvergenceWarning):
        est.fit(X_IRIS, Y_IRIS)
    assert est.n_iter_ == 20


# ---------------------------------------------------------------------- lbfgs
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("Estimator, Reference, X, y", [
    (BackpropClassifier, MLPClassifier, X_MULTI, Y_MULTI),
    (BackpropClassifier, MLPClassifier, X_BIN, Y_BIN),
    (BackpropRegressor, MLPRegressor, X_REG, Y_REG)])
def test_lbfgs_follows_sklearns_iterates(activation, Estimator, Reference, X, y):
    # the same objective from the same start: the same L-BFGS-B iterates
    kwargs = dict(hidden_layer_sizes=(10,), activation=activation, solver="lbfgs",
                  max_iter=12, random_state=1)
    ours, theirs = fit_quietly(Estimator(**kwargs), X, y), fit_quietly(Reference(**kwargs), X, y)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    for a, b in zip(layers_of(ours), layers_of(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    assert not hasattr(ours, "partial_fit") and not hasattr(ours, "loss_curve_")


def test_lbfgs_with_sample_weights_and_negative_weights_as_sklearn():
    weights = np.random.RandomState(1).uniform(0.2, 3.0, len(Y_MULTI))
    weights[::7] = -0.3   # accepted, as scikit-learn accepts them
    kwargs = dict(hidden_layer_sizes=(10,), solver="lbfgs", max_iter=10, random_state=0)
    ours = fit_quietly(BackpropClassifier(**kwargs), X_MULTI, Y_MULTI, sample_weight=weights)
    theirs = fit_quietly(MLPClassifier(**kwargs), X_MULTI, Y_MULTI, sample_weight=weights)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    np.testing.assert_allclose(ours.predict_proba(X_MULTI), theirs.predict_proba(X_MULTI),
                               atol=1e-9)
    # and the stochastic solvers take them too
    fit_quietly(BackpropClassifier(hidden_layer_sizes=(5,), max_iter=3), X_MULTI, Y_MULTI,
         sample_weight=weights)


def test_lbfgs_max_fun_and_tol():
    with pytest.warns(ConvergenceWarning, match="lbfgs failed to converge"):
        clf = BackpropClassifier(solver="lbfgs", hidden_layer_sizes=50, max_iter=150,
                                 max_fun=10, random_state=1).fit(X_MULTI, Y_MULTI)
    assert clf.n_iter_ <= 10
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = BackpropClassifier(solver="lbfgs", hidden_layer_sizes=10, tol=1e-2,
                                 random_state=1).fit(X_MULTI, Y_MULTI)
    assert clf.score(X_MULTI, Y_MULTI) > 0.95


def test_lbfgs_multilabel_multioutput_and_warm_start():
    X, Y = make_multilabel_classification(n_samples=50, random_state=0)
    clf = BackpropClassifier(solver="lbfgs", hidden_layer_sizes=50, alpha=1e-5, max_iter=150,
                             random_state=0, activation="logistic").fit(X, Y)
    assert clf.score(X, Y) > 0.97 and clf.out_activation_ == "logistic"
    X, Y = make_regression(n_samples=200, n_targets=3, random_state=11)
    reg = fit_quietly(BackpropRegressor(solver="lbfgs", hidden_layer_sizes=20, max_iter=200,
                                 random_state=1), X, Y / Y.std())
    assert reg.predict(X).shape == (200, 3) and reg.score(X, Y / Y.std()) > 0.9
    warm = fit_quietly(BackpropClassifier(solver="lbfgs", hidden_layer_sizes=10, max_iter=5,
                                   warm_start=True, random_state=0), X_MULTI, Y_MULTI)
    first = warm.loss_
    network = warm.network_
    fit_quietly(warm, X_MULTI, Y_MULTI)
    assert warm.network_ is network and warm.loss_ < first


@pytest.mark.parametrize("output", ["softmax", "sigmoid", "sigmoid-multilabel", "identity",
                                    "exp"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_gradient_matches_finite_differences(output, activation, weighted):
    # scikit-learn's test_gradient, on our objective: the analytic gradient of the full
    # loss (data term plus L2 penalty) against central differences
    rng = np.random.RandomState(42)
    X = rng.rand(5, 4)
    if output == "softmax":
        est, Y = BackpropClassifier, LabelBinarizer().fit_transform([1, 2, 3, 1, 2])
        y = [1, 2, 3, 1, 2]
    elif output.startswith("sigmoid"):
        est = BackpropClassifier
        Y = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]])
        if output == "sigmoid":
            Y = Y[:, :1]
        y = Y if Y.shape[1] > 1 else Y[:, 0]
    elif output == "identity":
        est, Y = BackpropRegressor, rng.normal(size=(5, 2))
        y = Y
    else:
        est, Y = BackpropRegressor, rng.poisson(2.0, size=(5, 1)).astype(float)
        y = Y[:, 0]
    kwargs = dict(activation=activation, hidden_layer_sizes=3, solver="lbfgs", alpha=0.1,
                  max_iter=1, random_state=1)
    if output == "exp":
        kwargs["loss"] = "poisson"
    model = fit_quietly(est(**kwargs), X, y)
    assert model.out_activation_ == {"softmax": "softmax", "identity": "identity",
                                     "exp": "exp"}.get(output, "logistic")
    weights = rng.uniform(0.5, 2.0, 5) if weighted else None
    objective = _lbfgs.Objective(model.network_, X, Y.astype(float), weights, 0.1,
                                 model._output_kind)
    theta = model.network_._params.copy()
    _, grad = objective(theta)
    numeric = np.empty_like(theta)
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = 1e-6
        numeric[i] = (objective(theta + step)[0] - objective(theta - step)[0]) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


# --------------------------------------------------------- one worked example
def test_one_sgd_step_is_sklearns_worked_example():
    # scikit-learn's test_fit: weights set by hand, one SGD step on one sample
    X, y = np.array([[0.6, 0.8, 0.7]]), np.array([0])
    models = []
    for Estimator in (BackpropClassifier, MLPClassifier):
        mlp = Estimator(solver="sgd", learning_rate_init=0.1, alpha=0.1, activation="logistic",
                        random_state=1, hidden_layer_sizes=2, momentum=0)
        mlp.partial_fit(X, y, classes=[0, 1])        # builds the network
        mlp.coefs_ = [np.array([[0.1, 0.2], [0.3, 0.1], [0.5, 0]]), np.array([[0.1], [0.2]])]
        mlp.intercepts_ = [np.array([0.1, 0.1]), np.array([1.0])]
        mlp.partial_fit(X, y)
        models.append(mlp)
    ours, theirs = models
    np.testing.assert_allclose(ours.coefs_[0], [[0.098, 0.195756], [0.2956664, 0.096008],
                                                [0.4939998, -0.002244]], atol=1e-3)
    np.testing.assert_allclose(ours.coefs_[1], [[0.04706], [0.154089]], atol=1e-3)
    np.testing.assert_allclose(ours.intercepts_[0], [0.098333, 0.09626], atol=1e-3)
    np.testing.assert_allclose(ours.intercepts_[1], [0.9235], atol=1e-3)
    assert ours.predict_proba(X)[0, 1] == pytest.approx(0.739, abs=1e-3)
    for a, b in zip(layers_of(ours), layers_of(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_coefs_and_intercepts_are_assignable():
    clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0),
               X_MULTI, Y_MULTI)
    before = clf.predict_proba(X_MULTI)
    # the whole list
    clf.coefs_ = [np.zeros_like(c) for c in clf.coefs_]
    proba = clf.predict_proba(X_MULTI)
    assert not np.allclose(proba, before)
    np.testing.assert_allclose(proba, np.tile(proba[0], (len(proba), 1)))
    # one item
    clf.intercepts_[1] = [0.0, 0.0, 5.0]
    assert set(clf.predict(X_MULTI)) == {2}
    with pytest.raises(ValueError, match="shape"):
        clf.coefs_[0] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="needs 2 arrays"):
        clf.intercepts_ = [np.zeros(4)]


# ----------------------------------------------------------------- divergence
def test_non_finite_weights_raise_sklearns_value_error():
    rng = np.random.RandomState(0)
    X = np.finfo(np.float64).max * rng.uniform(size=(10, 2))
    y = rng.standard_normal(size=10)
    reg = BackpropRegressor(random_state=0)
    msg = ("Solver produced non-finite parameter weights. The input data may contain large "
           "values and need to be preprocessed.")
    with pytest.raises(ValueError, match=re.escape(msg)) as info:
        fit_quietly(reg, X, y)
    assert isinstance(info.value, cyprop.TrainingDiverged)
    assert all(np.isfinite(c).all() for c in reg.coefs_)   # the last finite weights
    with pytest.raises(ValueError, match=re.escape(msg)):
        reg.partial_fit(X, y)


def test_diverging_fit_with_early_stopping_finishes_as_sklearns():
    kwargs = dict(hidden_layer_sizes=100, activation="identity", solver="sgd",
                  learning_rate_init=1, max_iter=20, early_stopping=True, n_iter_no_change=10,
                  random_state=0)
    for Estimator in (BackpropRegressor, MLPRegressor):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.warns(ConvergenceWarning):
                model = Estimator(**kwargs).fit(X_IRIS, Y_IRIS)
        assert model.n_iter_ == 20 and len(model.validation_scores_) == 20
        assert np.isnan(model.validation_scores_[-1]) and np.isnan(model.loss_curve_[-1])
        assert isinstance(model.validation_scores_[-1], float)
        assert all(np.isfinite(c).all() for c in model.coefs_)   # the best epoch's
        assert np.isfinite(model.predict(X_IRIS)).all()


def test_predict_on_overflowing_activations_returns_what_sklearn_returns():
    big = [np.full((4, 3), 1e200), np.full((3, 1), 1e200)]
    X = np.array([[1.0, 1, 1, 1], [1, -1, 1, -1], [-1, -1, -1, -1]])
    for activation in ("identity", "relu", "tanh", "logistic"):
        outputs = []
        for Estimator in (BackpropRegressor, MLPRegressor):
            reg = fit_quietly(Estimator(hidden_layer_sizes=(3,), activation=activation, max_iter=1,
                                 random_state=0), X, [1.0, 2.0, 3.0])
            reg.coefs_ = [b.copy() for b in big]
            with np.errstate(all="ignore"):
                outputs.append(reg.predict(X))
        np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6)   # inf, -inf, NaN alike
    # the classifier's probabilities and labels too, without an error
    clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(3,), max_iter=1), X, [0, 1, 2])
    clf.coefs_ = [np.full((4, 3), 1e200), np.full((3, 3), 1e200)]
    clf.predict_proba(X)
    clf.predict(X)


# -------------------------------------------------------------- shapes, dtypes
def test_predict_proba_of_a_single_class_has_two_columns_as_sklearns():
    X = np.random.RandomState(0).rand(20, 3)
    for Estimator in (BackpropClassifier, MLPClassifier):
        clf = fit_quietly(Estimator(hidden_layer_sizes=(3,), max_iter=5, random_state=0), X,
                          ["a"] * 20)
        proba = clf.predict_proba(X[:4])
        assert proba.shape == (4, 2) and clf.n_outputs_ == 1
        np.testing.assert_allclose(proba.sum(axis=1), 1.0)
        assert list(clf.predict(X[:4])) == ["a"] * 4


def test_multilabel_predictions_are_integers_as_sklearns():
    X, Y = make_multilabel_classification(n_samples=40, random_state=0)
    for labels in (Y.astype(bool), Y.astype(np.float32), Y.astype(np.int32)):
        predicted = [fit_quietly(Estimator(hidden_layer_sizes=(5,), max_iter=3, random_state=0),
                                 X, labels).predict(X)
                     for Estimator in (BackpropClassifier, MLPClassifier)]
        assert predicted[0].dtype == predicted[1].dtype == np.intp
        assert set(np.unique(predicted[0])) <= {0, 1}


def test_sparse_multilabel_targets_as_sklearn():
    from scipy import sparse

    X, Y = make_multilabel_classification(n_samples=40, random_state=0)
    kwargs = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
    ours = fit_quietly(BackpropClassifier(**kwargs), X, sparse.csr_matrix(Y))
    theirs = fit_quietly(MLPClassifier(**kwargs), X, sparse.csr_matrix(Y))
    dense = fit_quietly(BackpropClassifier(**kwargs), X, Y)
    for predicted in (ours.predict(X), theirs.predict(X)):
        assert sparse.issparse(predicted) and predicted.format == "csr"
    np.testing.assert_array_equal(ours.predict(X).toarray(), dense.predict(X))
    np.testing.assert_array_equal(ours.predict_proba(X), dense.predict_proba(X))
    assert ours.score(X, sparse.csr_matrix(Y)) == dense.score(X, Y)
    ours.partial_fit(X, sparse.csr_matrix(Y))
    fit_quietly(BackpropClassifier(early_stopping=True, **kwargs), X, sparse.csr_matrix(Y))


@pytest.mark.parametrize("Estimator", [BackpropClassifier, BackpropRegressor])
def test_dtypes_follow_the_input_as_sklearns(Estimator):
    X, y = X_MULTI, Y_MULTI
    for X_dtype, param, weights, predictions in [
            (np.float32, None, np.float32, np.float32),
            (np.float64, None, np.float64, np.float64),
            (np.float32, "float64", np.float64, np.float64),   # the parameter overrides
            (np.float64, "float32", np.float32, np.float64)]:
        est = fit_quietly(Estimator(hidden_layer_sizes=(5, 3), max_iter=20, dtype=param,
                             random_state=1), X.astype(X_dtype), y)
        assert all(c.dtype == weights for c in est.coefs_ + est.intercepts_)
        predicted = est.predict_proba(X.astype(X_dtype)) if Estimator is BackpropClassifier \
            else est.predict(X.astype(X_dtype))
        assert predicted.dtype == predictions
    # a float32 network continues (warm start, partial_fit) on float64 data in float32
    est = fit_quietly(Estimator(hidden_layer_sizes=(5,), max_iter=3, warm_start=True),
               X.astype(np.float32), y)
    fit_quietly(est, X, y)
    assert est.network_.dtype == np.float32


def test_float32_and_float64_agree():
    kwargs = dict(alpha=1e-5, hidden_layer_sizes=(5, 3), random_state=1, max_iter=100, tol=1e-1)
    clf64 = fit_quietly(BackpropClassifier(**kwargs), X_MULTI, Y_MULTI)
    clf32 = fit_quietly(BackpropClassifier(**kwargs), X_MULTI.astype(np.float32), Y_MULTI)
    np.testing.assert_array_equal(clf64.predict(X_MULTI), clf32.predict(X_MULTI))
    np.testing.assert_allclose(clf64.predict_proba(X_MULTI), clf32.predict_proba(X_MULTI),
                               rtol=1e-2)


# -------------------------------------------------------------------- poisson
def test_poisson_lbfgs_is_sklearns():
    X, y = _poisson_data()
    weights = np.random.RandomState(2).uniform(0.5, 2.0, len(y))
    kwargs = dict(loss="poisson", hidden_layer_sizes=(5,), solver="lbfgs", max_iter=20,
                  random_state=0)
    for sample_weight in (None, weights):
        ours = fit_quietly(BackpropRegressor(**kwargs), X, y, sample_weight=sample_weight)
        theirs = fit_quietly(MLPRegressor(**kwargs), X, y, sample_weight=sample_weight)
        assert ours.out_activation_ == theirs.out_activation_ == "exp"
        assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
        np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=1e-8)


def test_poisson_with_a_glm_as_sklearn_tests_it():
    from sklearn.linear_model import PoissonRegressor

    rng = np.random.default_rng(42)
    X = np.linspace(0, 1, 100)
    y = rng.poisson(np.exp(X + 1))
    X = X.reshape(-1, 1)
    glm = PoissonRegressor(alpha=0, tol=1e-7).fit(X, y)
    mlp = BackpropRegressor(loss="poisson", hidden_layer_sizes=(1,), activation="identity",
                            alpha=0, solver="lbfgs", tol=1e-7,
                            random_state=np.random.RandomState(43)).fit(X, y)
    np.testing.assert_allclose(mlp.predict(X), glm.predict(X), rtol=1e-4)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_poisson_stochastic_solvers_follow_sklearn(solver):
    X, y = _poisson_data()
    kwargs = dict(loss="poisson", hidden_layer_sizes=(5,), solver=solver,
                  learning_rate_init=0.01, max_iter=15, batch_size=50, alpha=1e-3,
                  n_iter_no_change=100, random_state=0)
    ours = fit_quietly(BackpropRegressor(**kwargs), X, y)
    theirs = fit_quietly(MLPRegressor(**kwargs), X, y)
    rtol = 1e-10 if solver == "sgd" else 1e-4
    np.testing.assert_allclose(ours.predict(X), theirs.predict(X), rtol=rtol)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-3)
    with pytest.raises(ValueError, match="y >= 0"):
        BackpropRegressor(loss="poisson").fit(X, -y)


# --------------------------------------------------- partial_fit as sklearn's
def test_partial_fit_signature_and_availability():
    X, y = X_MULTI[:20], Y_MULTI[:20]
    weights = np.ones(20)
    clf = BackpropClassifier(solver="sgd", random_state=0)
    clf.partial_fit(X, y, weights, classes=np.unique(y))   # third: sample_weight
    BackpropRegressor(solver="sgd").partial_fit(X, y.astype(float), weights)
    for Estimator in (BackpropClassifier, BackpropRegressor):
        assert not hasattr(Estimator(solver="lbfgs"), "partial_fit")
        assert hasattr(Estimator(solver="rprop"), "partial_fit")
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        fit_quietly(BackpropRegressor(early_stopping=True, max_iter=3), X_IRIS, Y_IRIS) \
            .partial_fit(X_IRIS, Y_IRIS)


def test_partial_fit_equals_fit():
    # 100 partial_fit calls are 100 epochs of fit with tol=0, as in scikit-learn (to
    # rounding: each call draws its shuffle from a fresh random state, so the one batch
    # of 200 is summed in other orders)
    kwargs = dict(solver="sgd", random_state=1, alpha=1e-5, learning_rate_init=0.2)
    fitted = fit_quietly(BackpropClassifier(max_iter=100, tol=0, **kwargs), X_MULTI, Y_MULTI)
    stepped = BackpropClassifier(**kwargs)
    for _ in range(100):
        stepped.partial_fit(X_MULTI, Y_MULTI, classes=np.unique(Y_MULTI))
    np.testing.assert_allclose(fitted.predict_proba(X_MULTI), stepped.predict_proba(X_MULTI),
                               rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(fitted.predict(X_MULTI), stepped.predict(X_MULTI))


def test_copies_of_coefs_are_plain_lists_not_tied_to_the_model():
    # as scikit-learn's lists: copy.copy / deepcopy / pickle give lists of the arrays,
    # whose items assigned leave the model alone (they wrote into it), and a pickle of
    # coefs_ holds the arrays only (it held the whole network, and needed cyprop to load)
    import copy
    import pickle

    clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0),
                      X_MULTI, Y_MULTI)
    before = [c.copy() for c in clf.coefs_]
    for kept in (copy.copy(clf.coefs_), copy.deepcopy(clf.coefs_),
                 pickle.loads(pickle.dumps(clf.coefs_))):
        assert type(kept) is list
        for a, b in zip(kept, before, strict=True):
            np.testing.assert_array_equal(a, b)
        kept[0] = np.zeros_like(kept[0])
        np.testing.assert_array_equal(clf.coefs_[0], before[0])
    assert b"Network" not in pickle.dumps(clf.intercepts_)
    # a deep copy kept aside restores the model after more training
    best = copy.deepcopy(clf.coefs_)
    clf.partial_fit(X_MULTI, Y_MULTI)
    clf.coefs_ = best
    for a, b in zip(clf.coefs_, before, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("continuation", ["partial_fit", "warm_start"])
def test_refused_continuation_leaves_the_fitted_regressor_working(continuation):
    # y with another number of targets is refused; the model it was refused for still
    # predicts (it raised "network_ has 2 outputs, but this estimator gives 1")
    reg = BackpropRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                            warm_start=continuation == "warm_start")
    train = reg.partial_fit if continuation == "partial_fit" else reg.fit
    Y = np.c_[Y_REG, -Y_REG]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        train(X_REG, Y)
        before = reg.predict(X_REG)
        with pytest.raises(ValueError, match="cannot continue training"):
            train(X_REG, Y_REG)
        np.testing.assert_array_equal(reg.predict(X_REG), before)
        train(X_REG, Y)   # and trains on


@pytest.mark.parametrize("case", ["refit classes", "refit features", "refit poisson",
                                  "partial_fit outputs"])
def test_refused_fit_leaves_the_fitted_estimator_as_it_was(case):
    # A fit refused after y was read (sample_weight of another length, negative counts
    # for the Poisson loss) had set classes_, n_features_in_ and the number of outputs
    # from the refused data: predict then answered the new labels from the old
    # network, or raised "network_ has 3 inputs and 1 outputs, but ..."
    wrong_weights = np.ones(3)
    if case == "refit classes":
        est, X, y = BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2,
                                       random_state=0), X_BIN, Y_BIN
        retry = lambda: est.fit(X, np.where(y == 1, "b", "a"), sample_weight=wrong_weights)
    elif case == "refit features":
        est, X, y = BackpropClassifier(hidden_layer_sizes=(4,), max_iter=2,
                                       random_state=0), X_MULTI, Y_MULTI
        retry = lambda: est.fit(X[:, :3], y, sample_weight=wrong_weights)
    elif case == "refit poisson":
        est, X, y = BackpropRegressor(hidden_layer_sizes=(4,), max_iter=2, random_state=0,
                                      loss="poisson"), X_REG, np.abs(Y_REG)
        retry = lambda: est.fit(X[:, :3], -y)
    else:
        est, X, y = BackpropRegressor(hidden_layer_sizes=(4,), max_iter=2,
                                      random_state=0), X_REG, Y_REG
        retry = lambda: est.partial_fit(X, np.c_[y, -y], sample_weight=wrong_weights)
    fit_quietly(est, X, y)
    before, classes = est.predict(X), getattr(est, "classes_", None)
    with pytest.raises(ValueError):
        retry()
    assert est.n_features_in_ == X.shape[1]
    if classes is not None:
        np.testing.assert_array_equal(est.classes_, classes)
    np.testing.assert_array_equal(est.predict(X), before)


@pytest.mark.parametrize("fitted_with, set_to", [("squared_error", "poisson"),
                                                  ("poisson", "squared_error")])
def test_loss_set_after_fit_changes_neither_predictions_nor_training(fitted_with, set_to):
    """As scikit-learn's MLPRegressor (out_activation_ is set by fit): a loss set after
    fitting does not change what the model predicts (predict took the exp of the
    outputs, or stopped taking it), and training it on is refused, as for a changed
    activation (it trained the fitted outputs with the other loss)."""
    X, y = X_REG, np.abs(Y_REG)
    reg = fit_quietly(BackpropRegressor(hidden_layer_sizes=(4,), max_iter=5, random_state=0,
                                        loss=fitted_with), X, y)
    before, activation = reg.predict(X), reg.out_activation_
    reg.set_params(loss=set_to)
    np.testing.assert_array_equal(reg.predict(X), before)
    assert reg.out_activation_ == activation
    for train in (reg.partial_fit, reg.set_params(warm_start=True).fit):
        with pytest.raises(ValueError, match=f"loss='{fitted_with}'.*now '{set_to}'"):
            train(X, y)
        np.testing.assert_array_equal(reg.predict(X), before)
    fit_quietly(reg.set_params(warm_start=False), X, y)   # a fresh fit takes the new loss
    assert reg.out_activation_ == ("exp" if set_to == "poisson" else "identity")


@pytest.mark.parametrize("y, classes", [(Y_MULTI, [0, 1]), (Y_MULTI, [0, 1, 2, 3]),
                                        (Y_BIN, [0, 1, 2])])
def test_classes_resized_by_hand_are_refused_by_predict(y, classes):
    """classes_ may be relabelled after fitting (predict answers in the new labels), but
    not resized: fewer labels than outputs raised an IndexError, more were never
    predicted (predict_proba had a column fewer than classes_)."""
    X = X_MULTI if y is Y_MULTI else X_BIN
    clf = fit_quietly(BackpropClassifier(hidden_layer_sizes=(3,), max_iter=2, random_state=0),
                      X, y)
    labels = np.array(["a", "b", "c"][:len(clf.classes_)])
    clf.classes_ = labels
    assert set(clf.predict(X)) <= set(labels)
    clf.classes_ = np.array(classes)
    for method in (clf.predict, clf.predict_proba, clf.predict_log_proba):
        with pytest.raises(ValueError, match=f"classes_ has {len(classes)} labels"):
            method(X)


@pytest.mark.parametrize("attribute", ["coefs_", "intercepts_"])
def test_layers_assigned_to_an_unfitted_estimator_say_to_fit_first(attribute):
    """(It was AttributeError: no attribute 'network_', naming nothing the user set.)"""
    from sklearn.exceptions import NotFittedError

    clf = BackpropClassifier(hidden_layer_sizes=(3,))
    with pytest.raises(NotFittedError, match=f"{attribute} can be assigned once this "
                                             "BackpropClassifier is fitted"):
        setattr(clf, attribute, [np.zeros((2, 3)), np.zeros((3, 2))])
    assert not hasattr(clf, attribute)


@pytest.mark.parametrize("attribute", ["coefs_", "intercepts_", "n_layers_",
                                       "out_activation_", "loss_", "n_iter_"])
@pytest.mark.parametrize("estimator", [BackpropClassifier, BackpropRegressor])
def test_a_fitted_attribute_read_before_fit_is_missing_by_its_own_name(estimator, attribute):
    """As scikit-learn's MLP: the AttributeError names what was asked for (the network's
    attributes named 'network_')."""
    sklearn_twin = MLPClassifier if estimator is BackpropClassifier else MLPRegressor
    for unfitted in (estimator(hidden_layer_sizes=(3,)), sklearn_twin(hidden_layer_sizes=(3,))):
        with pytest.raises(AttributeError, match=f"object has no attribute '{attribute}'"):
            getattr(unfitted, attribute)


@pytest.mark.parametrize("classes", [[0, 1], [5, 6, 7], ["a", "b", "c"]])
def test_partial_fit_of_multilabel_y_refuses_classes_without_its_columns(classes):
    """As scikit-learn's MLPClassifier: every column of an indicator matrix is a class
    (0 .. n_labels - 1), which partial_fit's classes must hold (they were ignored)."""
    rng = np.random.default_rng(0)
    X, Y = rng.random((20, 4)), (rng.random((20, 3)) > 0.5).astype(int)
    for estimator in (MLPClassifier, BackpropClassifier):
        clf = estimator(hidden_layer_sizes=(3,), random_state=0)
        with pytest.raises(ValueError, match=re.escape("`y` has classes not in `self.classes_`")):
            clf.partial_fit(X, Y, classes=classes)
    assert not hasattr(clf, "classes_")   # (a refused call leaves cyprop's unfitted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = BackpropClassifier(hidden_layer_sizes=(3,), random_state=0)
        clf.partial_fit(X, Y, classes=[0, 1, 2])
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])


def test_float64_x_past_float32s_range_is_refused_by_a_float32_estimator():
    """The rows were converted to the network's float32 as they were read: 1e39 became
    inf and predict_proba gave NaN, predict class 0, without an error (scikit-learn's
    MLP computes in float64 there, and fit refuses such X)."""
    rng = np.random.default_rng(0)
    X, y = rng.random((30, 3)), np.arange(30) % 2
    clf = BackpropClassifier(hidden_layer_sizes=(4,), max_iter=5, dtype="float32",
                             random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    big = X.copy()
    big[1, 0] = 1e39
    for predict in (clf.predict_proba, clf.predict):
        with pytest.raises(ValueError, match="too large for dtype\\('float32'\\)"):
            predict(big)
    big[1, 0] = 3e38                   # within float32's range: predicted as before
    assert np.all(np.isfinite(clf.predict_proba(big)))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("batch_weights", [[0.0] * 10, [1.0, -1.0] * 5])
def test_a_batch_whose_weights_sum_to_zero_is_named(solver, batch_weights):
    """As scikit-learn's MLP: a mini-batch's gradient is divided by the sum of its sample
    weights, which cannot be 0 (it was reported as divergence from large input values)."""
    weights = np.ones(len(Y_MULTI))
    weights[:10] = batch_weights
    kwargs = dict(hidden_layer_sizes=(3,), solver=solver, batch_size=10, shuffle=False,
                  max_iter=3, random_state=0)
    for estimator in (MLPClassifier, BackpropClassifier):
        with pytest.raises(ZeroDivisionError, match="Weights sum to zero"):
            fit_quietly(estimator(**kwargs), X_MULTI, Y_MULTI, sample_weight=weights)
    # the rest of the data in batches of its own trains
    fit_quietly(BackpropClassifier(**kwargs), X_MULTI[10:], Y_MULTI[10:],
                sample_weight=weights[10:])
