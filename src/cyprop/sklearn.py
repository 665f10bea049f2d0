"""scikit-learn estimators backed by cyprop: ``BackpropClassifier`` and ``BackpropRegressor``.

They follow ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``: the same
constructor parameters where the meaning is the same, the same fitted attributes
(``coefs_``, ``intercepts_``, ``loss_curve_``, ``n_iter_``, ...), the same convergence
rule and ``ConvergenceWarning``, so they drop into ``Pipeline``, ``GridSearchCV``,
``cross_val_score`` and ``clone``.  Training runs in cyprop's compiled core, which
releases the GIL, so ``GridSearchCV`` under joblib's threading backend runs fits on
several cores at once::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from cyprop.sklearn import BackpropClassifier

    clf = make_pipeline(StandardScaler(), BackpropClassifier(hidden_layer_sizes=(64,)))
    clf.fit(X_train, y_train).score(X_test, y_test)

scikit-learn (>= 1.6) is an optional dependency: ``pip install "cyprop[sklearn]"``.

Differences from scikit-learn's MLP, all documented on the parameters below:

- ``solver``: 'sgd', 'adam', and cyprop's 'rmsprop', 'adagrad', 'rprop'; no 'lbfgs'.
  The update formulas are ``torch.optim``'s (see ``cyprop.optimizers``), which for
  SGD with momentum and for Adam match scikit-learn's up to where epsilon enters.
- ``learning_rate='invscaling'`` decays per epoch (``cyprop.schedules.InverseScaling``),
  not per sample seen.
- The regression loss is cyprop's ``mse`` (0.5 * sum of squared errors per sample;
  scikit-learn takes 0.5 * the mean over the outputs too): the same for one output.
- Sample weights are rescaled to a mean of 1 over the training set (scikit-learn
  normalises per mini-batch); with full batches the two agree exactly.
- Sparse input is not accepted (cyprop's kernels are dense): densify it first.
"""

import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_random_state, column_or_1d
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "cyprop.sklearn needs scikit-learn >= 1.6, which is not installed (or is older): "
        'install it with `pip install "cyprop[sklearn]"` or `pip install "scikit-learn>=1.6"` '
        f"({exc})") from exc

from . import schedules
from .network import Network
from .optimizers import SGD, Adagrad, Adam, RMSprop, Rprop

__all__ = ["BackpropClassifier", "BackpropRegressor"]

#: scikit-learn's activation names and cyprop's, to cyprop's.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "sigmoid": "sigmoid",
                "tanh": "tanh", "relu": "relu", "leaky_relu": "leaky_relu"}
_SOLVERS = ("sgd", "adam", "rmsprop", "adagrad", "rprop")
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
#: cyprop's output activation -> scikit-learn's ``out_activation_`` name.
_OUT_NAMES = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity"}


class _BaseBackprop(BaseEstimator):
    """Parameters, training loop and attributes shared by the classifier and the regressor."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 backend="auto", dtype="float64", dropout=0.0, max_norm=None, init="xavier",
                 n_threads=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout
        self.max_norm = max_norm
        self.init = init
        self.n_threads = n_threads

    # ------------------------------------------------------------ attributes
    @property
    def coefs_(self):
        """Weight matrices as scikit-learn lays them out: ``coefs_[l]`` is (n_in, n_out),
        a transposed view of ``network_.weights[l]`` (writing into it changes the model)."""
        return [W.T for W in self.network_.weights]

    @property
    def intercepts_(self):
        """Bias vectors, ``intercepts_[l]`` of shape (n_out,): views of ``network_.biases``."""
        return list(self.network_.biases)

    @property
    def n_layers_(self):
        """Layers counted as scikit-learn does: input, hidden layers and output."""
        return len(self.network_.sizes)

    @property
    def out_activation_(self):
        """The output activation, by scikit-learn's name: 'softmax', 'logistic' or 'identity'."""
        return _OUT_NAMES.get(self.network_.activations[-1], self.network_.activations[-1])

    # --------------------------------------------------------------- fitting
    def _fit(self, X, y, sample_weight, incremental, classes=None):
        params = self._checked_params()
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        X, Y, labels = self._validate_training_data(X, y, reset=first_pass,
                                                    incremental=incremental, classes=classes)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        rng = check_random_state(self.random_state)
        sizes = [X.shape[1], *params["hidden"], self._n_out]
        if first_pass:
            self._initialize(sizes, params, rng)
        else:
            self._check_architecture(sizes, params)
        net = self.network_

        if incremental:
            self._partial_epoch(net, X, Y, sample_weight, params)
            return self

        # A fresh optimizer per fit call, as scikit-learn's MLP (warm_start keeps weights).
        validation = None
        if self.early_stopping:
            X, Y, sample_weight, validation = self._split_validation(X, Y, labels,
                                                                     sample_weight, rng)
        batch_size = self._batch_size(X.shape[0], params["solver"])
        weights, weight_mean = _normalised(sample_weight)
        optimizer = self._make_optimizer(params, batch_size * weight_mean)
        schedule = None
        if params["solver"] == "sgd" and self.learning_rate == "invscaling" and self.power_t > 0:
            schedule = schedules.InverseScaling(power=self.power_t)
        # A warm start carries the best loss / score (and weights) on, as scikit-learn's
        # MLP does; the count of epochs without improvement starts again.
        self._no_improvement_count = 0
        if self.early_stopping:
            if self.validation_scores_ is None:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_ = None
        else:
            if self.best_loss_ is None:
                self.best_loss_ = np.inf
            self.validation_scores_ = self.best_validation_score_ = None
        self.n_iter_ = 0   # epochs of this call, as scikit-learn (loss_curve_ keeps them all)
        stopping = _SklearnStopping(self, X.shape[0], validation)
        history = net.fit(X, Y, epochs=self.max_iter, batch_size=batch_size, optimizer=optimizer,
                          shuffle=bool(self.shuffle), seed=_seed(rng), verbose=0,
                          schedule=schedule, callbacks=[stopping], sample_weight=weights,
                          n_threads=self.n_threads)
        if self.early_stopping and self._best_params is not None:
            net.weights, net.biases = self._best_params   # the best validation score's
        if history.stop_reason == "epochs":
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=3)
        return self

    def _initialize(self, sizes, params, rng):
        self.network_ = Network(sizes, activation=params["activation"],
                                output=self._output_activation, loss=self._loss, init=self.init,
                                dtype=self.dtype, seed=_seed(rng), backend=self.backend,
                                dropout=self.dropout, max_norm=self.max_norm)
        self.n_outputs_ = sizes[-1]
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.loss_ = None
        self.best_loss_ = None if self.early_stopping else np.inf
        self.validation_scores_ = [] if self.early_stopping else None
        self.best_validation_score_ = -np.inf if self.early_stopping else None
        self._no_improvement_count = 0
        self._best_params = None

    def _check_architecture(self, sizes, params):
        """warm_start / partial_fit continue the network: it must still be the one the
        parameters describe."""
        net = self.network_
        wanted = [params["activation"]] * (len(sizes) - 2) + [self._output_activation]
        if net.sizes != sizes or net.activations != wanted or net.dtype.name != self.dtype:
            raise ValueError(
                f"cannot continue training: the fitted network has sizes {net.sizes} and "
                f"activations {net.activations} ({net.dtype.name}), but the data and parameters "
                f"now ask for sizes {sizes} and activations {wanted} ({self.dtype}); "
                "fit with warm_start=False to start afresh")

    def _partial_epoch(self, net, X, Y, sample_weight, params):
        """One epoch over (X, Y), keeping the optimizer (scikit-learn's partial_fit)."""
        batch_size = self._batch_size(X.shape[0], params["solver"])
        weights, weight_mean = _normalised(sample_weight)
        if net.optimizer is None:
            net.optimizer = self._make_optimizer(params, batch_size * weight_mean)
        elif hasattr(net.optimizer, "weight_decay"):
            # the optimizer (and its state) carries on; the batch may be another size
            net.optimizer.weight_decay = self._weight_decay(batch_size * weight_mean)
        net.partial_fit(X, Y, batch_size=batch_size, shuffle=bool(self.shuffle),
                        sample_weight=weights, verbose=0)
        self.n_iter_ = 0
        stopping = _SklearnStopping(self, X.shape[0], None)
        stopping.on_epoch_end(net, net.history.epochs - 1, {"loss": net.history.loss[-1]})

    def _split_validation(self, X, Y, labels, sample_weight, rng):
        stratify = labels if (self._is_single_output_classifier()) else None
        arrays = [X, Y, labels] + ([] if sample_weight is None else [sample_weight])
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        X_tr, X_val, Y_tr, _, _, labels_val = parts[:6]
        sw_tr, sw_val = (parts[6], parts[7]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X_tr, Y_tr, sw_tr, (X_val, labels_val, sw_val)

    def _batch_size(self, n_samples, solver):
        if self.batch_size == "auto":
            # Rprop uses only the signs of the gradients: it is meant for full batches.
            return n_samples if solver == "rprop" else min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _weight_decay(self, weighted_batch):
        # scikit-learn's L2 term, 0.5 * alpha * ||W||^2, is divided by the (weighted) number
        # of samples in the batch: on cyprop's batch-mean gradient that is a weight decay of
        # alpha / batch size.
        return float(self.alpha) / weighted_batch

    def _make_optimizer(self, params, weighted_batch):
        decay = self._weight_decay(weighted_batch)
        lr = float(self.learning_rate_init)
        solver = params["solver"]
        if solver == "sgd":
            return SGD(lr, momentum=float(self.momentum),
                       nesterov=bool(self.nesterovs_momentum) and self.momentum > 0,
                       weight_decay=decay)
        if solver == "adam":
            return Adam(lr, beta1=float(self.beta_1), beta2=float(self.beta_2),
                        eps=float(self.epsilon), weight_decay=decay)
        if solver == "rmsprop":
            return RMSprop(lr, eps=float(self.epsilon), weight_decay=decay)
        if solver == "adagrad":
            return Adagrad(lr, eps=float(self.epsilon), weight_decay=decay)
        return Rprop(lr)  # no weight decay in Rprop: alpha is not used

    def _checked_params(self):
        """The hyper-parameters checked (here, not in __init__, as scikit-learn asks)."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [hidden]
        try:
            hidden = list(hidden)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, "
                             f"got {self.hidden_layer_sizes!r}") from None
        for size in hidden:
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.solver not in _SOLVERS:
            hint = " (cyprop trains by backpropagation only: no 'lbfgs')" \
                if self.solver == "lbfgs" else ""
            raise ValueError(f"solver must be one of {list(_SOLVERS)}, got {self.solver!r}{hint}")
        if self.learning_rate not in _LEARNING_RATES:
            raise ValueError(f"learning_rate must be one of {list(_LEARNING_RATES)}, "
                             f"got {self.learning_rate!r}")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, numbers.Integral)
                                              and not isinstance(self.batch_size, bool)
                                              and self.batch_size >= 1)):
            raise ValueError(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        _check_number("alpha", self.alpha, low=0.0)
        _check_number("learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        _check_number("power_t", self.power_t, low=0.0)
        _check_number("tol", self.tol, low=0.0)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        _check_number("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
                      low_open=True, high_open=True)
        _check_number("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        _check_number("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        _check_number("epsilon", self.epsilon, low=0.0, low_open=True)
        for name in ("max_iter", "n_iter_no_change"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.n_threads is not None and (isinstance(self.n_threads, bool) or not isinstance(
                self.n_threads, numbers.Integral) or self.n_threads < 1):
            raise ValueError(f"n_threads must be None or an int >= 1, got {self.n_threads!r}")
        if self.dtype not in ("float64", "float32"):
            raise ValueError(f"dtype must be 'float64' or 'float32', got {self.dtype!r}")
        return {"hidden": [int(h) for h in hidden], "activation": _ACTIVATIONS[self.activation],
                "solver": self.solver}

    def _validation_score(self, X_val, labels_val, sw_val):
        """The score early stopping watches: accuracy (classifier) or R^2 (regressor)."""
        raise NotImplementedError

    def _is_single_output_classifier(self):
        return False

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False   # cyprop's kernels take dense arrays
        return tags


class _SklearnStopping:
    """scikit-learn's convergence rule as a cyprop callback.

    After each epoch: record the loss (plus the L2 penalty) in ``loss_curve_``; with
    early stopping, score the validation set and keep the best weights; count the
    epochs without an improvement of ``tol`` (in the training loss, or the validation
    score); after more than ``n_iter_no_change`` of them, stop -- or, with
    ``learning_rate='adaptive'`` and the 'sgd' solver, divide the learning rate by 5
    and go on, until it falls below 1e-6.
    """

    def __init__(self, estimator, n_samples, validation):
        self.est = estimator
        self.n_samples = n_samples
        self.validation = validation

    def on_epoch_end(self, net, epoch, logs):
        est = self.est
        decay = getattr(net.optimizer, "weight_decay", 0.0)
        loss = float(logs["loss"])
        if decay:
            # einsum, not np.dot: a BLAS call here would wake NumPy's BLAS threads, whose
            # spinning then competes with the training's own threads.
            loss += 0.5 * decay * sum(float(np.einsum("ij,ij->", W, W)) for W in net.weights)
        est.loss_ = loss
        est.loss_curve_.append(loss)
        est.n_iter_ += 1
        est.t_ += self.n_samples
        if est.verbose:
            print(f"Iteration {est.n_iter_}, loss = {loss:.8f}")
        if self.validation is not None:
            score = est._validation_score(*self.validation)
            est.validation_scores_.append(score)
            if est.verbose:
                print(f"Validation score: {score:f}")
            if score < est.best_validation_score_ + est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            if score > est.best_validation_score_:
                est.best_validation_score_ = score
                est._best_params = ([W.copy() for W in net.weights],
                                    [b.copy() for b in net.biases])
        elif est.best_loss_ is not None:
            if loss > est.best_loss_ - est.tol:
                est._no_improvement_count += 1
            else:
                est._no_improvement_count = 0
            est.best_loss_ = min(est.best_loss_, loss)
        if est._no_improvement_count > est.n_iter_no_change:
            if (est.solver == "sgd" and est.learning_rate == "adaptive"
                    and net.optimizer.learning_rate > 1e-6):
                net.optimizer.learning_rate /= 5.0
                est._no_improvement_count = 0
                if est.verbose:
                    print(f"Setting learning rate to {net.optimizer.learning_rate:f}")
                return False
            if est.verbose:
                what = "Validation score" if self.validation is not None else "Training loss"
                print(f"{what} did not improve more than tol={est.tol:f} for "
                      f"{est.n_iter_no_change} consecutive epochs. Stopping.")
            return True
        return False


class BackpropClassifier(ClassifierMixin, _BaseBackprop):
    """A multilayer perceptron classifier trained by cyprop's backpropagation.

    Mirrors ``sklearn.neural_network.MLPClassifier``: labels of any type; a softmax
    output with cross-entropy for more than two classes, one sigmoid output with
    binary cross-entropy for two, and one sigmoid output per label for multilabel
    targets (a 2-D 0/1 indicator matrix).

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer; ``()`` for none (logistic regression).
    activation : {'relu', 'tanh', 'logistic', 'identity', 'sigmoid', 'leaky_relu'}, default='relu'
        Hidden activation ('logistic' and 'sigmoid' are the same function).
    solver : {'adam', 'sgd', 'rmsprop', 'adagrad', 'rprop'}, default='adam'
        cyprop's optimizers (``cyprop.Adam`` and so on).  'rprop' trains on full
        batches by default (``batch_size='auto'``) and does not use ``alpha``.
    alpha : float, default=0.0001
        L2 penalty strength, as in scikit-learn: the term 0.5 * alpha * ||W||^2 is
        divided by the batch size, i.e. cyprop's ``weight_decay = alpha / batch_size``
        (weights only, never biases).
    batch_size : int or 'auto', default='auto'
        ``min(200, n_samples)`` for 'auto' (all samples for 'rprop'); clipped to the
        number of samples with a warning.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Used with solver='sgd' only, as in scikit-learn.  'invscaling' is
        ``learning_rate_init / (epoch + 1) ** power_t``, per epoch; 'adaptive' divides
        the rate by 5 each time the stopping rule would stop, until it is below 1e-6.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        The exponent of 'invscaling'.
    max_iter : int, default=200
        Epochs at most; reaching it without converging warns ``ConvergenceWarning``.
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the shuffling, dropout and the validation split.
    tol : float, default=1e-4
    verbose : bool, default=False
        Print the loss (and validation score) of every epoch.
    warm_start : bool, default=False
        Continue from the fitted weights on the next ``fit`` (a fresh optimizer).
    momentum : float, default=0.9
        For solver='sgd'.
    nesterovs_momentum : bool, default=True
        For solver='sgd' with momentum > 0.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified) and stop
        when its accuracy has not improved by ``tol`` for ``n_iter_no_change`` epochs;
        the weights of the best epoch are kept.
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's; ``epsilon`` is also rmsprop's and adagrad's.
    n_iter_no_change : int, default=10
        Epochs without an improvement of ``tol`` (training loss, or the validation
        score with early stopping) tolerated before stopping: stops after more.
    backend : {'auto', 'cython', 'numpy'}, default='auto'
    dtype : {'float64', 'float32'}, default='float64'
        The network's dtype, which it trains and predicts in.  Predictions come in the
        input's dtype: float32 for float32 X, float64 otherwise.
    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers during training.
    max_norm : float or None, default=None
        Bound on the L2 norm of each unit's incoming weights.
    init : {'xavier', 'he', 'normal', 'uniform'}, default='xavier'
        Initial weights ('xavier' is Glorot uniform, as scikit-learn uses; 'he' suits
        deep relu networks).
    n_threads : int or None, default=None
        OpenMP threads for the parts of each mini-batch in ``fit`` (None: OpenMP's
        default, ``OMP_NUM_THREADS``); the results do not depend on it.  Set 1 when
        fits already run in parallel (``GridSearchCV`` with ``n_jobs``), so that they
        don't oversubscribe the cores.  ``partial_fit`` uses OpenMP's default.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    network_ : cyprop.Network
        The trained network.
    coefs_, intercepts_ : list of ndarray
        Views of the weights ((n_in, n_out), scikit-learn's layout) and biases.
    loss_, loss_curve_, best_loss_ : the training loss (L2 penalty included)
    validation_scores_, best_validation_score_ : with early_stopping, else None
    n_iter_ : int
        Epochs run by the last ``fit`` (1 after ``partial_fit``), as in scikit-learn;
        ``loss_curve_`` and ``t_`` (samples seen) count every epoch since the start.
    n_features_in_, feature_names_in_, n_layers_, n_outputs_, out_activation_
    """

    _loss = "cross_entropy"

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y); returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), keeping the optimizer's state between calls.

        ``classes`` (every label that will ever appear) is required on the first call,
        as in scikit-learn; for multilabel y it may be omitted."""
        if not hasattr(self, "network_") or not hasattr(self, "classes_"):
            if classes is None and not _is_multilabel(y):
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """Class labels (an indicator matrix for multilabel targets)."""
        return self._labels_from_outputs(self._outputs(X))

    def _labels_from_outputs(self, proba):
        if self._multilabel:
            return (proba > 0.5).astype(self._label_dtype)
        if len(self.classes_) == 1:
            return np.full(proba.shape[0], self.classes_[0])
        if proba.shape[1] == 1:
            return self.classes_[(proba[:, 0] > 0.5).astype(np.intp)]
        return self.classes_[proba.argmax(axis=1)]

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes); one column per label for multilabel."""
        proba = self._outputs(X)
        if self._multilabel:
            return proba
        if len(self.classes_) == 1:
            return np.ones((proba.shape[0], 1), dtype=proba.dtype)
        if proba.shape[1] == 1:
            return np.hstack([1 - proba, proba])
        return proba

    def predict_log_proba(self, X):
        """The log of ``predict_proba``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def _outputs(self, X):
        return _network_outputs(self, X)

    @property
    def _output_activation(self):
        return "softmax" if self._n_out > 1 and not self._multilabel else "sigmoid"

    def _validate_training_data(self, X, y, reset, incremental, classes=None):
        """(X, the network's targets, the labels as given); on a first fit (``reset``)
        the classes are set: those of y, or the given ``classes`` (partial_fit)."""
        X, y = validate_data(self, X, y, reset=reset, multi_output=True,
                             dtype=np.dtype(self.dtype), order="C")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y).startswith("multilabel")
        if y.ndim == 2 and not multilabel:
            raise ValueError("BackpropClassifier supports 1-D class labels and 2-D 0/1 "
                             "multilabel indicator matrices, not multiclass-multioutput "
                             f"targets (got {type_of_target(y)!r})")
        new_classes = reset
        if multilabel:
            classes = np.arange(y.shape[1])
            if not new_classes and (not self._multilabel or len(self.classes_) != y.shape[1]):
                raise ValueError("y does not have the labels the classifier was fitted with")
            if new_classes:
                self.classes_, self._multilabel = classes, True
                self._label_dtype = y.dtype
                self._n_out = y.shape[1]
            return X, y.astype(self.dtype), y
        if new_classes:
            given = classes if incremental else None
            classes = unique_labels(y if given is None else given)
            if given is not None and np.setdiff1d(unique_labels(y), classes).size:
                raise ValueError(f"`y` has classes not in `classes`: {classes!r}")
            self._encoder = LabelEncoder().fit(classes)
            self.classes_ = self._encoder.classes_
            self._multilabel = False
            self._n_out = len(self.classes_) if len(self.classes_) > 2 else 1
        else:
            if self._multilabel:
                raise ValueError("the classifier was fitted on multilabel targets; y is not")
            seen = unique_labels(y)
            if self.warm_start and not incremental:
                if set(seen) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in "
                        f"the previous call to fit. Previously got {self.classes_}, "
                        f"`y` has {seen}")
            elif np.setdiff1d(seen, self.classes_).size:
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {seen}.")
        indices = self._encoder.transform(y)
        if self._n_out == 1:
            # Two classes: one sigmoid output, the probability of classes_[1]; one class:
            # the output learns 0 (predict returns that class whatever it says).
            Y = (indices == 1).astype(self.dtype).reshape(-1, 1)
        else:
            Y = indices
        return X, Y, y

    def _is_single_output_classifier(self):
        return not self._multilabel

    def _validation_score(self, X_val, labels_val, sw_val):
        # X_val was validated with the training data: straight to the network, so that
        # no per-epoch validation (or feature-name warning) happens
        predicted = self._labels_from_outputs(self.network_.forward(X_val))
        return float(accuracy_score(labels_val, predicted, sample_weight=sw_val))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class BackpropRegressor(RegressorMixin, _BaseBackprop):
    """A multilayer perceptron regressor trained by cyprop's backpropagation.

    Mirrors ``sklearn.neural_network.MLPRegressor``: an identity output and the mse
    loss (0.5 * squared error); y of shape (n_samples,) or (n_samples, n_outputs),
    ``predict`` returning the same shape (1-D for one output).  Parameters as
    ``BackpropClassifier``; early stopping watches the R^2 score of the held-out set.
    """

    _loss = "mse"
    _output_activation = "identity"

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y); returns self."""
        return self._fit(X, y, sample_weight, incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), keeping the optimizer's state between calls."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        """Predicted targets: (n_samples,) for one output, else (n_samples, n_outputs)."""
        out = _network_outputs(self, X)
        return out[:, 0] if out.shape[1] == 1 else out

    def _validate_training_data(self, X, y, reset, incremental, classes=None):
        X, y = validate_data(self, X, y, reset=reset, multi_output=True, y_numeric=True,
                             dtype=np.dtype(self.dtype), order="C")
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.asarray(y, dtype=self.dtype).reshape(y.shape[0], -1)
        self._n_out = Y.shape[1]
        return X, Y, y

    def _validation_score(self, X_val, y_val, sw_val):
        out = self.network_.forward(X_val)
        return float(r2_score(y_val, out[:, 0] if out.shape[1] == 1 else out,
                              sample_weight=sw_val))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _network_outputs(estimator, X):
    """The network's outputs for X, in X's floating dtype (float32 stays float32, anything
    else gives float64), whatever dtype the network computes in."""
    check_is_fitted(estimator, "network_")
    X = validate_data(estimator, X, reset=False, dtype=(np.float64, np.float32), order="C")
    return estimator.network_.forward(X).astype(X.dtype, copy=False)


def _is_multilabel(y):
    try:
        return type_of_target(y).startswith("multilabel")
    except ValueError:
        return False


def _normalised(sample_weight):
    """(weights rescaled to a mean of 1, or None; the mean of the given weights)."""
    if sample_weight is None:
        return None, 1.0
    mean = float(np.mean(sample_weight))
    if not mean > 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sample_weight / mean, mean


def _seed(rng):
    """A seed for cyprop drawn from a scikit-learn random state."""
    return int(rng.randint(np.iinfo(np.int32).max))


def _check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
