"""scikit-learn estimators backed by cyprop: ``BackpropClassifier`` and ``BackpropRegressor``.

They are drop-in replacements for ``sklearn.neural_network.MLPClassifier`` and
``MLPRegressor``: the same constructor parameters, fitted attributes (``coefs_``,
``intercepts_``, ``loss_curve_``, ``n_iter_``, ``t_``, ...), solvers ('lbfgs', 'sgd',
'adam'), initialisation, early-stopping split, convergence rules and warnings, and
they take the same input (dense or ``scipy.sparse``, float64 or float32), so they drop
into ``Pipeline``, ``GridSearchCV``, ``cross_val_score`` and ``clone``.  Training runs
in cyprop's compiled core, which releases the GIL: one compiled call per epoch for the
stochastic solvers, one per evaluation of the full-batch loss and gradient for
'lbfgs' (per 16 MiB block of rows; a sparse X goes through sparse matrix products in
NumPy instead, as scikit-learn's).  So ``GridSearchCV`` under joblib's threading
backend runs fits on several cores at once::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from cyprop.sklearn import BackpropClassifier

    clf = make_pipeline(StandardScaler(), BackpropClassifier(hidden_layer_sizes=(64,)))
    clf.fit(X_train, y_train).score(X_test, y_test)

scikit-learn (>= 1.6) and SciPy are needed: ``pip install "cyprop[sklearn]"``.

Data larger than memory: ``fit``, ``partial_fit``, ``predict``, ``predict_proba`` and
``score`` read a Dask array X a block of rows at a time, as ``cyprop.Network`` does
(``cyprop._chunks``), never converting it whole (y and sample weights are read whole).
Such a fit visits the samples as the network's block-wise reading does (with
``shuffle=True``: the blocks of whole batches in a random order, then the rows of
each block, drawn from ``random_state``), not in scikit-learn's order; with
``shuffle=False`` the result is that of the same data in memory.  'lbfgs' reads X
once per evaluation of the loss.  ``early_stopping`` (a random hold-out split) needs
X in memory: it is refused for a Dask array, and a memory map is converted in memory
for it, as scikit-learn converts it.  A memory map (``np.load(..., mmap_mode="r")``, and
the maps joblib hands to parallel fits) that already has the dtype the estimator
trains in is used in place, as an array in memory is (scikit-learn's order, early
stopping too; its pages are read by the OS into no private memory); one that needs
converting is read in blocks like a Dask array.

What cyprop adds: the solvers 'rmsprop', 'adagrad' and 'rprop'; the activation
'leaky_relu'; the parameters ``backend``, ``dtype``, ``dropout``, ``max_norm``, ``init``
and ``n_threads``.  Where the results differ from scikit-learn's for the same
``random_state`` (they start from the same weights, and SGD visits the samples in
the same order):

- Adam's epsilon is added as ``torch.optim.Adam`` adds it (to ``sqrt(v_hat)``, not to
  ``sqrt(v)`` before the bias correction), a difference of order epsilon.
- The L2 term of the stochastic solvers is a weight decay of ``alpha / batch_size``
  on every batch (scikit-learn divides by each batch's size, or sum of sample
  weights, so its last, shorter batch of an epoch decays a little more).  The
  penalty in ``loss_curve_`` is scikit-learn's for one batch per epoch; with more,
  it takes ||W||^2 interpolated between the epoch's start and end (scikit-learn's
  uses the weights before each batch's step).
- The cross-entropy of the stochastic solvers and of unweighted 'lbfgs' is computed
  exactly, from the pre-activations; scikit-learn clips the probabilities to
  [eps, 1 - eps] first, which only matters for a sample whose probability is below
  eps (a loss above 36).  Weighted 'lbfgs' clips as scikit-learn does.
- With float32 input, 'lbfgs' works on float32 weights and gradients (scikit-learn's
  turn float64 during its L-BFGS run).
- 'lbfgs' on several regression targets: scikit-learn's line search sees the squared
  error averaged over the targets, but its gradient is that of their sum (scikit-learn
  issue #8349); cyprop's loss and gradient are both the sum's, so the iterates differ
  from the first step (``loss_`` is reported averaged, as scikit-learn's).
- A warm start (or ``partial_fit``) after ``hidden_layer_sizes``, ``activation``,
  ``dtype`` or the regressor's ``loss`` changed raises a ValueError naming the change:
  scikit-learn's goes on training the layers it has (or fails with an AttributeError
  when their number changed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning, NotFittedError
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelEncoder
    from sklearn.utils import check_consistent_length, check_random_state, column_or_1d
    from sklearn.utils._param_validation import InvalidParameterError as _BadParam
    from sklearn.utils._param_validation import (Interval, Options, StrOptions,
                                                 validate_parameter_constraints)
    from sklearn.utils.metaestimators import available_if
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import (_check_sample_weight, _check_y, check_is_fitted,
                                          validate_data)
except ImportError as exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "cyprop.sklearn needs scikit-learn >= 1.6, which is not installed (or is older): "
        'install it with `pip install "cyprop[sklearn]"` or `pip install "scikit-learn>=1.6"` '
        f"({exc})") from exc

from . import _chunks, _lbfgs, _loop, _sparse, _state, _validation
from ._training import Dropout, TrainingOptions
from .errors import InvalidState, TrainingDiverged
from .history import History
from .network import Network, NetworkState, OptimizerState
from .optimizers import SGD, Adagrad, Adam, Optimizer, RMSprop, Rprop

if TYPE_CHECKING:
    import onnx
    from scipy.sparse import sparray, spmatrix
    from typing_extensions import Self, TypeAlias

    #: What the estimators take as X: dense arrays or scipy.sparse matrices and arrays.
    MatrixLike: TypeAlias = "npt.ArrayLike | spmatrix | sparray"

__all__ = ["BackpropClassifier", "BackpropRegressor"]

#: scikit-learn's activation names and cyprop's, to cyprop's.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "sigmoid": "sigmoid",
                "tanh": "tanh", "relu": "relu", "leaky_relu": "leaky_relu"}
_STOCHASTIC_SOLVERS = ("sgd", "adam", "rmsprop", "adagrad", "rprop")
_SOLVERS = ("lbfgs",) + _STOCHASTIC_SOLVERS
_LEARNING_RATES = ("constant", "invscaling", "adaptive")
_INITS = ("sklearn", "xavier", "he", "normal", "uniform")
_REGRESSION_LOSSES = ("squared_error", "poisson")
#: The output activation (cyprop's name, "exp" for the Poisson loss) -> scikit-learn's
#: ``out_activation_``.
_OUT_NAMES = {"sigmoid": "logistic", "softmax": "softmax", "identity": "identity",
              "exp": "exp"}
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain "
               "large values and need to be preprocessed.")


class _BaseBackprop(BaseEstimator):
    """Parameters, training loops and attributes shared by the classifier and the regressor."""

    #: scikit-learn's constraints on its MLP's parameters (with cyprop's solvers and
    #: activations among the options), checked by its own machinery so that a bad value
    #: is reported in its words; cyprop's own parameters are checked in _checked_params.
    _parameter_constraints: dict[str, Any] = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "solver": [StrOptions(set(_SOLVERS))],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions(set(_LEARNING_RATES))],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        **{name: "no_validation" for name in ("backend", "dtype", "dropout", "max_norm",
                                                "init", "n_threads")},
    }

    # fitted attributes (set by fit)
    network_: Network
    n_outputs_: int
    n_iter_: int
    t_: int
    loss_: float
    loss_curve_: list[float]
    best_loss_: float | None
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    _no_improvement_count: int
    _best_params: np.ndarray
    _n_out: int
    _network_loss: str
    _loss_fitted: str
    if TYPE_CHECKING:
        @property
        def _network_output(self) -> str: ...   # a class attribute or a property

    def __init__(self, hidden_layer_sizes: int | Sequence[int], activation: str, solver: str,
                 alpha: float, batch_size: int | Literal["auto"], learning_rate: str,
                 learning_rate_init: float, power_t: float, max_iter: int, loss: str,
                 shuffle: bool, random_state: int | np.random.RandomState | None, tol: float,
                 verbose: bool, warm_start: bool, momentum: float, nesterovs_momentum: bool,
                 early_stopping: bool, validation_fraction: float, beta_1: float,
                 beta_2: float, epsilon: float, n_iter_no_change: int | float, max_fun: int,
                 backend: str, dtype: npt.DTypeLike | None, dropout: float | Sequence[float],
                 max_norm: float | None, init: str, n_threads: int | None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
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
        self.max_fun = max_fun
        self.backend = backend
        self.dtype = dtype
        self.dropout = dropout
        self.max_norm = max_norm
        self.init = init
        self.n_threads = n_threads

    # ------------------------------------------------------------ attributes
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices as scikit-learn lays them out: ``coefs_[l]`` is (n_in, n_out),
        a transposed view of ``network_.weights[l]``.  Writing into them, assigning an
        item (``coefs_[0] = W``) or the whole list changes the model."""
        net = _network_for(self, "coefs_")
        return _LayerList(net, "weights", [W.T for W in net.weights])

    @coefs_.setter
    def coefs_(self, values: Sequence[npt.ArrayLike]) -> None:
        _assign_layers(_fitted_network(self, "coefs_"), "weights", values)

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, ``intercepts_[l]`` of shape (n_out,): views of ``network_.biases``
        (assignable like ``coefs_``)."""
        net = _network_for(self, "intercepts_")
        return _LayerList(net, "biases", list(net.biases))

    @intercepts_.setter
    def intercepts_(self, values: Sequence[npt.ArrayLike]) -> None:
        _assign_layers(_fitted_network(self, "intercepts_"), "biases", values)

    @property
    def n_layers_(self) -> int:
        """Layers counted as scikit-learn does: input, hidden layers and output."""
        return len(_network_for(self, "n_layers_").sizes)

    @property
    def out_activation_(self) -> str:
        """The output activation by scikit-learn's name: 'softmax', 'logistic',
        'identity' or 'exp' (the Poisson loss's log link)."""
        _network_for(self, "out_activation_")
        return _OUT_NAMES[self._output_kind]

    @property
    def _optimizer(self) -> Optimizer:
        """The stochastic solver's optimizer (scikit-learn's private ``_optimizer``, whose
        ``learning_rate`` tests read): the network's ``cyprop`` optimizer."""
        optimizer = self.network_.optimizer
        if optimizer is None:
            raise AttributeError("no stochastic solver has trained this estimator")
        return optimizer

    @property
    def _fitted_loss(self) -> str:
        """The loss the network was built for: the ``loss`` of the fit that started it
        (a later ``set_params(loss=...)`` does not change the fitted model)."""
        return str(vars(self).get("_loss_fitted", self.loss))

    @property
    def _output_kind(self) -> str:
        return self.network_.activations[-1] if self._fitted_loss != "poisson" else "exp"

    # --------------------------------------------------------------- fitting
    def _fit(self, X: Any, y: Any, sample_weight: Any, incremental: bool,
             classes: npt.ArrayLike | None = None) -> Self:
        with _fitting(self):
            return self._fit_alone(X, y, sample_weight, incremental, classes)

    def _fit_alone(self, X: Any, y: Any, sample_weight: Any, incremental: bool,
                   classes: npt.ArrayLike | None) -> Self:
        """``_fit``, with no other fit of this estimator running."""
        params = self._checked_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "network_") or (not self.warm_start and not incremental)
        dtype = self._input_dtype(first_pass)
        blockwise = _read_in_blocks(X, dtype)
        if blockwise and self.early_stopping:
            if _chunks.is_dask(X):
                raise ValueError(
                    "early_stopping holds out a random validation_fraction of the rows (as "
                    "scikit-learn splits them), which needs X in memory: with a Dask array "
                    "as X, fit without early_stopping, or hold out rows yourself and score "
                    "them")
            # A memory map that needs converting (joblib hands an int X to parallel fits
            # as one): the split copies its rows into memory anyway, so it is converted
            # there, as scikit-learn converts it.
            X, blockwise = np.asarray(X), False
        # Reading y sets classes_, n_features_in_ and _n_out: refused data (say, y with
        # other targets, or a sample_weight of another length) leaves the fitted model
        # as it was, which predict reads them for.
        fitted = dict(self.__dict__)
        try:
            X, Y, targets = self._validate_training_data(
                X, y, reset=first_pass, incremental=incremental, classes=classes,
                dtype=dtype)
            if sample_weight is not None:
                # negative weights are allowed, as in scikit-learn
                sample_weight = _check_sample_weight(
                    _validation._unmasked("sample_weight", sample_weight), X,
                    dtype=np.float64)
            # a Dask array: read a block of rows at a time, never whole; so is a memory
            # map that needs converting for 'lbfgs' (the stochastic solvers gather and
            # convert its rows a part of their epoch at a time: see _Epoch)
            blockwise = blockwise and (_chunks.is_dask(X) or params["solver"] == "lbfgs")
            X = _chunks.Rows(X, X.shape[1], Y.dtype) if blockwise else _sparse.as_rows(X)
            rng = check_random_state(self.random_state)
            sizes = [X.shape[1], *params["hidden"], self._n_out]
            if first_pass:
                self._initialize(sizes, params, rng, Y.dtype)
            else:
                self._check_architecture(sizes, params)
                # training options, not architecture: the current ones train from here
                self.network_.dropout = self.dropout
                self.network_.max_norm = self.max_norm
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(fitted)
            raise
        # (the network's training lock, as its own fit takes it: no fit of the network
        # itself meanwhile)
        net = self.network_
        optimizer, epochs = net.optimizer, getattr(net.history, "epochs", None)
        holding = False
        try:
            # (Ctrl-C held back until the lock is noted; raised then, the estimator is
            # put back below, as for a call refused during training)
            with _loop.taking():
                _loop.hold_training(net)
                holding = True
            if params["solver"] == "lbfgs":
                self._fit_lbfgs(X, Y, sample_weight)
            else:
                self._fit_stochastic(X, Y, targets, sample_weight, params, incremental, rng)
        except TrainingDiverged:
            raise   # the fit's own last finite weights are kept, as documented
        except BaseException:
            # Data in memory is refused before training; a Dask array or memory map
            # is read a block at a time, so a NaN in a later block is found during it.
            # A fit from scratch refused so leaves the estimator as it was too (the
            # model fitted before, or none), not the new network part trained; so does
            # a warm fit or partial_fit refused before its first epoch ended (that
            # epoch undone): its records, and the optimizer partial_fit carries on
            # with, which a fit replaces at its start.
            if first_pass or getattr(net.history, "epochs", None) == epochs:
                self.__dict__.clear()
                self.__dict__.update(fitted)
                if not first_pass and holding:   # (else another thread's fit holds it)
                    net.optimizer = optimizer
            raise
        finally:
            if holding:
                _loop.release_training(net)
        return self

    def _input_dtype(self, first_pass: bool) -> np.dtype | tuple[type, type]:
        """The dtype X is converted to: the fitted network's (when training goes on),
        the ``dtype`` parameter, else X's own floating dtype (float32 stays float32)."""
        if not first_pass:
            return self.network_.dtype
        if self.dtype is not None:
            return np.dtype(self.dtype)
        return (np.float64, np.float32)

    def _initialize(self, sizes: list[int], params: dict[str, Any], rng: np.random.RandomState,
                    dtype: npt.DTypeLike) -> None:
        dtype = np.dtype(dtype)
        sklearn_init = self.init == "sklearn"
        net = Network(sizes, activation=params["activation"], output=self._network_output,
                      loss=self._network_loss, init="xavier" if sklearn_init else self.init,
                      dtype=dtype.name, seed=0 if sklearn_init else _seed(rng),
                      backend=self.backend, dropout=self.dropout, max_norm=self.max_norm)
        if sklearn_init:
            # scikit-learn's MLP: Glorot uniform weights and biases, drawn layer by layer
            # from the random state (weights (n_in, n_out) first, then the biases), with
            # the bound sqrt(6 / (n_in + n_out)), or sqrt(2 / ...) for logistic units
            factor = 2.0 if params["activation"] == "sigmoid" else 6.0
            for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
                bound = np.sqrt(factor / (n_in + n_out))
                coef = rng.uniform(-bound, bound, (n_in, n_out))
                intercept = rng.uniform(-bound, bound, n_out)
                net.weights[l] = coef.T
                net.biases[l] = intercept
        self.network_ = net
        self._loss_fitted = self.loss
        self.n_outputs_ = sizes[-1]
        self.n_iter_ = 0
        self.t_ = 0
        self._best_params = net._params.copy()
        if params["solver"] != "lbfgs":
            self._reset_records()

    def _reset_records(self) -> None:
        """What the stochastic solvers record, as scikit-learn's MLP initialises it."""
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _check_architecture(self, sizes: list[int], params: dict[str, Any]) -> None:
        """warm_start / partial_fit continue the network: it must still be the one the
        parameters describe."""
        net = self.network_
        if self.loss != self._fitted_loss:
            raise ValueError(f"cannot continue training: the fitted network was trained with "
                             f"loss={self._fitted_loss!r}, but loss is now {self.loss!r}; fit "
                             "with warm_start=False to start afresh")
        wanted = [params["activation"]] * (len(sizes) - 2) + [self._network_output]
        dtype_ok = self.dtype is None or np.dtype(self.dtype) == net.dtype
        if net.sizes != sizes or net.activations != wanted or not dtype_ok:
            raise ValueError(
                f"cannot continue training: the fitted network has sizes {net.sizes} and "
                f"activations {net.activations} ({net.dtype.name}), but the data and parameters "
                f"now ask for sizes {sizes} and activations {wanted}"
                f"{'' if dtype_ok else f' ({np.dtype(self.dtype).name})'}; "
                "fit with warm_start=False to start afresh")

    # ------------------------------------------------------------------ lbfgs
    def _fit_lbfgs(self, X: Any, Y: np.ndarray, sample_weight: np.ndarray | None) -> None:
        net = self.network_
        objective = _lbfgs.Objective(net, X, Y, sample_weight, self.alpha, self._output_kind)
        start = net._params.astype(np.float64)
        with net._state_lock:
            try:
                result, n_iter = _lbfgs.minimize(objective, start, self.max_iter,
                                                 self.max_fun, self.tol, self.verbose)
            except BaseException:
                # Each evaluation writes the point it tries into the network: a failed
                # (or interrupted) run leaves the weights it started from, as
                # scikit-learn's lbfgs, which sets coefs_ only once it is done.
                net._params[...] = start
                raise
            finite = bool(np.all(np.isfinite(result.x)))
            if finite:
                net._params[...] = result.x
        self.n_iter_ = int(n_iter)
        if not finite or not np.all(np.isfinite(net._params)):
            net._params[...] = start
            raise TrainingDiverged(_NON_FINITE + " (the weights the fit started from were kept)")
        # scikit-learn reports the squared error averaged over the outputs too
        scale = 1.0 / Y.shape[1] if self._output_kind == "identity" and Y.shape[1] > 1 else 1.0
        self.loss_ = float(result.fun) if scale == 1.0 else float(objective.value(scale))

    # ------------------------------------------------------------- stochastic
    def _fit_stochastic(self, X: Any, Y: np.ndarray, targets: np.ndarray,
                        sample_weight: np.ndarray | None, params: dict[str, Any],
                        incremental: bool, rng: np.random.RandomState) -> None:
        net = self.network_
        solver = params["solver"]
        if not incremental or not isinstance(net.optimizer, _solver_class(solver)):
            # a fresh optimizer per fit, as scikit-learn; partial_fit carries it on
            net.optimizer = self._make_optimizer(solver, 1.0)
        # Any: the solver's own class (weight_decay is not on the Optimizer base class)
        optimizer: Any = net.optimizer
        # claimed, as a network's fit claims its optimizer: another network training
        # with it meanwhile would reset it and step it too
        claimed = None
        try:
            with _loop.taking():
                claimed = _loop.claim_optimizer(optimizer)
            self._train_stochastic(X, Y, targets, sample_weight, incremental, rng, solver,
                                   optimizer)
        finally:
            if claimed is not None:
                claimed.release()

    def _train_stochastic(self, X: Any, Y: np.ndarray, targets: np.ndarray,
                          sample_weight: np.ndarray | None, incremental: bool,
                          rng: np.random.RandomState, solver: str, optimizer: Any) -> None:
        """``_fit_stochastic``'s epochs, with its claimed ``optimizer``."""
        net = self.network_
        if (not hasattr(self, "loss_curve_")
                or (self.validation_scores_ is None) == bool(self.early_stopping)):
            # a warm start after 'lbfgs', or with early stopping turned on or off
            self._reset_records()

        validation = None
        if self.early_stopping:
            X, Y, sample_weight, validation = self._split_validation(X, Y, targets,
                                                                     sample_weight, rng)
        n = X.shape[0]
        batch_size = self._batch_size(n, solver)
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        if solver != "rprop":
            optimizer.weight_decay = self._weight_decay(batch_size * mean_weight)
        epoch = _Epoch(self, net, optimizer, X, Y, sample_weight, batch_size)
        sample_idx = np.arange(n, dtype=np.intp)
        invscaling = solver == "sgd" and self.learning_rate == "invscaling"
        adaptive = solver == "sgd" and self.learning_rate == "adaptive"
        self.n_iter_ = 0
        stop_reason = "epochs"
        started = time.perf_counter()
        try:
            for _ in range(self.max_iter):
                if epoch.blockwise:   # blocks of rows in a random order, then rows within each
                    sample_idx = epoch.order_blocks(rng if self.shuffle else None)
                elif self.shuffle:
                    sample_idx = _shuffled(sample_idx, rng)
                dropout_seed = int(rng.randint(np.iinfo(np.int32).max)) if any(net.dropout) \
                    else None
                kept = net._params.copy(), optimizer.steps, _copy(optimizer.state)
                squares_before = _squared_weights(net) if self.alpha else 0.0
                try:
                    loss_sum, correct, penalty_factor, data_scale = epoch.run(sample_idx,
                                                                              dropout_seed)
                except Exception:
                    if epoch.blockwise or epoch.mapped:   # a part with a NaN?: undone
                        with net._state_lock:
                            net._params[...] = kept[0]
                            optimizer.steps, optimizer.state = kept[1], kept[2]
                    raise
                diverged = not np.all(np.isfinite(net._params))
                penalty = 0.0
                if self.alpha and not diverged:
                    # scikit-learn adds each batch's penalty with the weights before its
                    # step: exact for one batch per epoch, ||W||^2 interpolated between
                    # the epoch's start and end for more
                    squares_after = _squared_weights(net)
                    share = (epoch.n_batches - 1) / (2 * epoch.n_batches)
                    squares = squares_before + (squares_after - squares_before) * share
                    penalty = 0.5 * self.alpha * penalty_factor * squares
                loss = (loss_sum * data_scale + penalty) / n
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += n
                self.loss_curve_.append(loss)
                net.history.record(loss=loss, accuracy=correct / n,
                                   learning_rate=optimizer.learning_rate,
                                   seconds=time.perf_counter() - started)
                started = time.perf_counter()
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                self._update_no_improvement_count(validation)
                if invscaling:
                    # scikit-learn's SGD at the end of each iteration, t_ counting samples
                    _set_learning_rate(optimizer, float(self.learning_rate_init)
                                       / (self.t_ + 1) ** float(self.power_t))
                if diverged:
                    stop_reason = "diverged"
                    self._diverged(optimizer, kept, n, validation, incremental)
                    break
                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if validation is not None else "Training loss"
                    message = (f"{what} did not improve more than tol={self.tol:f} for "
                               f"{self.n_iter_no_change} consecutive epochs.")
                    if adaptive and optimizer.learning_rate > 1e-6:
                        _set_learning_rate(optimizer, optimizer.learning_rate / 5.0)
                        self._no_improvement_count = 0
                        if self.verbose:
                            print(f"{message} Setting learning rate to "
                                  f"{optimizer.learning_rate:f}")
                    else:
                        if self.verbose:
                            print(message + (" Learning rate too small. Stopping."
                                             if adaptive else " Stopping."))
                        stop_reason = "early_stopping" if validation is not None else "callback"
                        break
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning, stacklevel=4)
        except KeyboardInterrupt:
            # as scikit-learn: the epochs done so far are kept (a compiled epoch is whole)
            warnings.warn("Training interrupted by user.")
            stop_reason = "interrupted"
        net.history.stop_reason = stop_reason
        if self.early_stopping:
            net._params[...] = self._best_params   # the best validation score's weights

    def _diverged(self, optimizer: Optimizer, kept: tuple[np.ndarray, int, np.ndarray | None],
                  n: int, validation: tuple[Any, ...] | None, incremental: bool) -> None:
        """The weights became NaN or infinite.  scikit-learn's MLP trains on with them
        (every later epoch NaN) to max_iter: with early stopping it then keeps the best
        epoch's weights, else it raises a ValueError.  The same here, without computing
        the NaN epochs (``optimizer``: the fit's, whose state ``kept`` holds)."""
        net = self.network_
        if not incremental:
            remaining = self.max_iter - self.n_iter_
            self.loss_curve_.extend([np.nan] * remaining)
            if validation is not None:
                assert self.validation_scores_ is not None   # set with early_stopping
                self.validation_scores_.extend([np.nan] * remaining)
            self.n_iter_ += remaining
            self.t_ += remaining * n
            if remaining:
                self.loss_ = np.nan
                self._no_improvement_count = 0   # NaN never compares worse
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=5)
        if validation is None:
            net._params[...] = kept[0]
            optimizer.steps, optimizer.state = kept[1], kept[2]
            net.history.stop_reason = "diverged"
            raise TrainingDiverged(_NON_FINITE + " (the weights of the last finite epoch "
                                   "were kept; try a smaller learning_rate_init)")

    def _update_no_improvement_count(self, validation: tuple[Any, ...] | None) -> None:
        """scikit-learn's rule: count the epochs without an improvement of ``tol`` in the
        validation score (early stopping, keeping the best weights) or the training loss."""
        if validation is not None:
            # both set by _reset_records with early_stopping
            assert self.validation_scores_ is not None
            assert self.best_validation_score_ is not None
            score = self._validation_score(*validation)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = self.network_._params.copy()
        else:
            loss = self.loss_curve_[-1]
            assert self.best_loss_ is not None   # set by _reset_records without early_stopping
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if loss < self.best_loss_:
                self.best_loss_ = loss

    def _split_validation(self, X: Any, Y: np.ndarray, targets: np.ndarray,
                          sample_weight: np.ndarray | None, rng: np.random.RandomState,
                          ) -> tuple[Any, np.ndarray, np.ndarray | None, tuple[Any, ...]]:
        """scikit-learn's hold-out split: ``train_test_split`` with the estimator's random
        state (after the initial weights), stratified for single-output classifiers only
        (binary: on the 0/1 target, as scikit-learn; not for multiclass or multilabel)."""
        stratify = (Y > 0.5) if self._is_single_output_classifier() else None
        arrays = [X, Y, targets] + ([] if sample_weight is None else [sample_weight])
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        X_tr, X_val, Y_tr, _, _, targets_val = parts[:6]
        sw_tr, sw_val = (parts[6], parts[7]) if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        return X_tr, np.ascontiguousarray(Y_tr), sw_tr, (X_val, targets_val, sw_val)

    def _validation_score(self, X_val: Any, targets_val: np.ndarray,
                          sw_val: np.ndarray | None) -> float:
        """The score early stopping watches: accuracy (classifier) or R^2 (regressor); NaN
        where the outputs are not finite, as scikit-learn."""
        outputs = self._outputs(X_val, validated=True)
        if not np.all(np.isfinite(outputs)):
            return np.nan
        return float(self._score_outputs(outputs, targets_val, sw_val))

    def _batch_size(self, n_samples: int, solver: str) -> int:
        if self.batch_size == "auto":
            # Rprop uses only the signs of the gradients: it is meant for full batches.
            return n_samples if solver == "rprop" else min(200, n_samples)
        if self.batch_size > n_samples:
            warnings.warn("Got `batch_size` less than 1 or larger than sample size. "
                          "It is going to be clipped")
        return int(np.clip(self.batch_size, 1, n_samples))

    def _weight_decay(self, weighted_batch: float) -> float:
        # scikit-learn's L2 term, 0.5 * alpha * ||W||^2, is divided by the (weighted) number
        # of samples in the batch: on cyprop's batch-mean gradient that is a weight decay of
        # alpha / batch size.
        return float(self.alpha) / weighted_batch if weighted_batch > 0 else 0.0

    def _make_optimizer(self, solver: str, weighted_batch: float) -> Optimizer:
        decay = self._weight_decay(weighted_batch)
        lr = float(self.learning_rate_init)
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

    def _checked_params(self) -> dict[str, Any]:
        """The hyper-parameters checked (here, not in __init__, as scikit-learn asks)."""
        validate_parameter_constraints(self._parameter_constraints, self.get_params(deep=False),
                                       caller_name=type(self).__name__)
        # then what scikit-learn's constraints let through: sizes <= 0 in a list (in its
        # words), bools taken as ints, non-finite numbers, and cyprop's own parameters
        # (the options, booleans, verbose and random_state they settle)
        hidden: Any = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [hidden]
        try:
            hidden = list(hidden)
        except TypeError:
            raise _BadParam(f"hidden_layer_sizes must be an int or a sequence of ints, "
                            f"got {self.hidden_layer_sizes!r}") from None
        if any(isinstance(size, numbers.Real) and size <= 0 for size in hidden):
            raise _BadParam(f"hidden_layer_sizes must be > 0, got {hidden}.")
        if any(isinstance(size, bool) or not isinstance(size, numbers.Integral)
               for size in hidden):
            raise _BadParam(f"hidden_layer_sizes must hold ints, got {hidden}.")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, numbers.Integral)
                                              and not isinstance(self.batch_size, bool)
                                              and self.batch_size >= 1)):
            raise _BadParam(f"batch_size must be 'auto' or an int >= 1, got {self.batch_size!r}")
        _check_number("alpha", self.alpha, low=0.0)
        _check_number("learning_rate_init", self.learning_rate_init, low=0.0, low_open=True)
        _check_number("power_t", self.power_t, low=0.0)
        _check_number("tol", self.tol, low=0.0)
        _check_number("momentum", self.momentum, low=0.0, high=1.0)
        # 0 is allowed, as in scikit-learn (without early_stopping it is not used; with
        # it, train_test_split refuses it)
        _check_number("validation_fraction", self.validation_fraction, low=0.0, high=1.0,
                      high_open=True)
        _check_number("beta_1", self.beta_1, low=0.0, high=1.0, high_open=True)
        _check_number("beta_2", self.beta_2, low=0.0, high=1.0, high_open=True)
        _check_number("epsilon", self.epsilon, low=0.0, low_open=True)
        for name in ("max_iter", "max_fun"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise _BadParam(f"{name} must be an int >= 1, got {value!r}")
        value = self.n_iter_no_change
        if not ((isinstance(value, numbers.Integral) and not isinstance(value, bool)
                 and value >= 1) or (isinstance(value, numbers.Real) and value == np.inf)):
            raise _BadParam(f"n_iter_no_change must be an int >= 1 or np.inf, got {value!r}")
        if self.n_threads is not None and (isinstance(self.n_threads, bool) or not isinstance(
                self.n_threads, numbers.Integral) or self.n_threads < 1):
            raise _BadParam(f"n_threads must be None or an int >= 1, got {self.n_threads!r}")
        if self.dtype is not None and _dtype_name(self.dtype) not in ("float64", "float32"):
            raise _BadParam(f"dtype must be None, 'float64' or 'float32', got {self.dtype!r}")
        if self.init not in _INITS:
            raise _BadParam(f"unknown init {self.init!r}; choose one of {', '.join(_INITS)}")
        if self.solver == "lbfgs" and (np.any(np.asarray(self.dropout, dtype=float) != 0)
                                       or self.max_norm is not None):
            raise _BadParam("dropout and max_norm need a stochastic solver (a mini-batch "
                            "at a time); solver='lbfgs' trains on the full batch")
        return {"hidden": [int(h) for h in hidden], "activation": _ACTIVATIONS[self.activation],
                "solver": self.solver}

    def _validate_X_y(self, X: Any, y: Any, reset: bool, dtype: Any, y_numeric: bool,
                      ) -> tuple[Any, np.ndarray, np.dtype]:
        """(X, y, the dtype for training) checked as scikit-learn's ``validate_data``
        does.  A Dask array or memory map X is checked for its shape and feature count
        only, not converted (its blocks are checked as they are read); y is read whole.
        A masked X or y with masked values is refused, as ``cyprop.Network`` refuses it
        (validate_data drops the mask: the masked entries' data was trained on)."""
        X, y = _validation._unmasked("X", X), _validation._unmasked("y", y)
        if not _read_in_blocks(X, dtype):
            X, y = validate_data(self, X, y, reset=reset, multi_output=True,
                                 y_numeric=y_numeric, accept_sparse=["csr", "csc", "coo"],
                                 dtype=dtype, order="C")
            return X, y, X.dtype
        _check_lazy_numbers(X)
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"Found array with shape {X.shape}: X needs at least one "
                             "sample and one feature")
        validate_data(self, X, reset=reset, skip_check_array=True)
        # y as validate_data checks it beside X in memory (a nullable pandas or sparse y)
        y = _check_y(y, multi_output=True, y_numeric=y_numeric, estimator=self)
        check_consistent_length(X, y)
        if isinstance(dtype, tuple):   # X's own floating dtype, else the first
            dtype = _float_dtype(X.dtype, dtype)
        return X, y, np.dtype(dtype)

    def _is_single_output_classifier(self) -> bool:
        return False

    # ------------------------------------------------------------- inference
    def _outputs(self, X: Any, validated: bool = False) -> np.ndarray:
        """The output activations for X, in the dtype scikit-learn's would have: float32
        for float32 X and float32 weights, else float64 (the network computes in its own
        dtype); a sparse X a block of rows at a time.  Overflowing outputs come back as
        they are (inf, NaN), as scikit-learn's do, not as an error."""
        check_is_fitted(self, "network_")
        net = self.network_
        if not isinstance(net, Network):
            raise TypeError(f"network_ must be a cyprop Network, got {type(net).__name__}")
        x_dtype = None
        X = _validation._unmasked("X", X)   # (validate_data would drop the mask)
        if _read_in_blocks(X, (np.float64, np.float32)):   # a block at a time
            _check_lazy_numbers(X)
            validate_data(self, X, reset=False, skip_check_array=True)
            x_dtype = _float_dtype(X.dtype)   # what validate_data would convert X to
            X = _chunks.Rows(X, X.shape[1], net.dtype)
        elif not validated:
            X = validate_data(self, X, reset=False, accept_sparse=["csr", "csc", "coo"],
                              dtype=(np.float64, np.float32), order="C")
            X = _sparse.as_rows(X)
        # network_ may have been replaced (or unpickled) since fitting: X was checked
        # against n_features_in_, and the compiled core reads as many columns as the
        # network has inputs.
        if X.shape[1] != net.arch.n_inputs or net.arch.n_outputs != self._n_out:
            raise ValueError(f"network_ has {net.arch.n_inputs} inputs and "
                             f"{net.arch.n_outputs} outputs, but this estimator takes "
                             f"{X.shape[1]} features and gives {self._n_out} outputs")

        out_dtype = np.promote_types(X.dtype if x_dtype is None else x_dtype, net.dtype)
        # float64 X for a float32 network: a value past float32's range turns to inf as
        # the rows are converted (scikit-learn's MLP computes in float64 there, and fit
        # refuses such X); the outputs would be NaN, without a word
        narrowed = out_dtype != net.dtype

        def forward(rows: np.ndarray) -> np.ndarray:
            if narrowed and not _validation.all_finite(rows):
                raise ValueError(f"Input X contains a value too large for dtype('{net.dtype}'), "
                                 f"the dtype of this estimator's network (fitted on "
                                 f"{net.dtype} X)")
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return net._impl.forward(net.arch, net._params, rows)

        with np.errstate(over="ignore"):   # (a cast past float32's range: forward refuses it)
            out = _sparse.map_rows(forward, X, net.dtype, net.arch.n_outputs,
                                   out_dtype=out_dtype)
        out = out.astype(out_dtype, copy=False)
        if self._output_kind == "exp":
            out = _lbfgs.output_values("exp", out)
        return out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    # ------------------------------------------------------------ persistence
    def __getstate__(self) -> dict[str, Any]:
        """The state as plain data (arrays, numbers, strings, lists, dicts): the network is
        stored as its arrays and settings, so that ``skops.io`` needs to trust only this
        class (and pickle stores no cyprop object but the estimator)."""
        state = dict(super().__getstate__())
        if "network_" in state:
            state["_network_state"] = _network_state(state.pop("network_"))
        # as arrays, as the network's history (a list of floats is slow in skops.io)
        for name in _RECORD_LISTS:
            records = state.get(name)
            if isinstance(records, list) and all(isinstance(v, float) for v in records):
                state[name] = np.array(records, dtype=np.float64)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        for name in _RECORD_LISTS:
            if isinstance(state.get(name), np.ndarray):
                state[name] = state[name].tolist()
        network = state.pop("_network_state", None)
        super().__setstate__(state)
        if network is not None:
            self.network_ = _network_from_state(network)


class _Epoch:
    """One epoch of a stochastic solver over the training rows, in scikit-learn's order.

    A dense X goes to the compiled core in one call per epoch (the core gathers the
    rows of each batch itself); a sparse X, or a memory map that needs converting, in
    parts of whole batches, each part's rows gathered, densified and converted
    (``_sparse.BLOCK_BYTES`` at a time), with the optimizer state, dropout positions and
    sample weights carried across parts: the same batches, the same steps, the same
    weights as the dense input in memory.  (joblib hands an int X to parallel fits as
    such a map: a grid search's results do not depend on its ``n_jobs``.)  A Dask array
    is read in blocks of whole batches, visited in their own order (``order_blocks``).
    """

    def __init__(self, estimator: _BaseBackprop, net: Network, optimizer: Optimizer, X: Any,
                 Y: np.ndarray, sample_weight: np.ndarray | None, batch_size: int) -> None:
        # (the optimizer the fit claimed: net.optimizer may be set meanwhile, from
        # another thread, to one that is not the fit's to step)
        self.net, self.optimizer, self.X, self.Y = net, optimizer, X, Y
        self.weights = sample_weight
        self.batch_size = batch_size
        self.n = X.shape[0]
        self.sparse = _sparse.issparse(X)
        # (a memory map that needs no converting is used in place, as an array in memory)
        self.mapped = not self.sparse and _read_in_blocks(X, net.dtype)
        self.blockwise = isinstance(X, _chunks.Rows)
        self.blocks: list[tuple[int, int, npt.NDArray[np.intp]]] = []
        self.batch_starts: npt.NDArray[np.intp] | None = None
        self.n_threads = estimator.n_threads
        self.poisson = estimator._output_kind == "exp"
        # scikit-learn's squared error is averaged over the outputs
        self.data_scale = (1.0 / Y.shape[1]
                           if estimator._output_kind == "identity" and Y.shape[1] > 1 else 1.0)
        self.poisson_terms = None
        if self.poisson:
            from scipy.special import xlogy

            self.poisson_terms = np.sum(xlogy(Y, Y) - Y, axis=1)
        part = max(1, _sparse.block_rows(X.shape[1], net.dtype.itemsize) // batch_size)
        self.part_rows = part * batch_size
        self.n_batches = -(-self.n // batch_size)

    def run(self, order: npt.NDArray[np.intp], dropout_seed: int | None,
            ) -> tuple[float, int, float, float]:
        """Train one epoch over ``order``; returns (sum of the weighted sample losses,
        number classified right, sum over batches of batch length / batch weight (the
        factor of scikit-learn's averaged L2 penalty), the loss's reporting scale)."""
        weights, penalty_factor = self._batch_weights(order)
        net = self.net
        rates = [*net.dropout, 0.0]
        n_units = sum(net.arch.sizes[1:])
        total, correct = 0.0, 0
        if self.blockwise:
            for loss, right in self._run_blocks(weights, dropout_seed, rates, n_units):
                total += float(loss)
                correct += int(right)
            return self._totals(total, correct, weights, penalty_factor)
        parts = [(0, self.n)] if not (self.sparse or self.mapped) else \
            [(s, min(s + self.part_rows, self.n)) for s in range(0, self.n, self.part_rows)]
        for start, stop in parts:
            dropout = None if dropout_seed is None else \
                Dropout(rates, dropout_seed + start * n_units)
            if self.sparse or self.mapped:
                rows = order[start:stop]
                # (a map's rows are checked as they are read: a NaN in a later part is
                # found during the epoch, which is then undone)
                X = _sparse.take(self.X, rows, net.dtype) if self.sparse else \
                    _validation.check_X(self.X[rows], self.X.shape[1], net.dtype)[0]
                Y = np.ascontiguousarray(self.Y[rows])
                w = None if weights is None else np.ascontiguousarray(weights[rows])
                part_order = np.arange(stop - start, dtype=np.intp)
            else:
                X, Y, w, part_order = self.X, self.Y, weights, order
            options = TrainingOptions(w, dropout, net.max_norm, self.n_threads)
            with net._state_lock, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if self.poisson:
                    loss, right = _poisson_epoch(net, self.optimizer, X, Y, part_order,
                                                 self.batch_size, options)
                else:
                    loss, right = net._impl.train_epoch(net.arch, net._params, X, Y, part_order,
                                                        self.batch_size, self.optimizer, options)
            total += float(loss)
            correct += int(right)
        return self._totals(total, correct, weights, penalty_factor)

    def _totals(self, total: float, correct: int, weights: np.ndarray | None,
                penalty_factor: float) -> tuple[float, int, float, float]:
        if self.poisson:
            assert self.poisson_terms is not None
            terms = self.poisson_terms if weights is None else \
                self.poisson_terms * weights.astype(np.float64)
            total += float(np.sum(terms))
        return total, correct, penalty_factor, self.data_scale

    def order_blocks(self, rng: np.random.RandomState | None) -> npt.NDArray[np.intp]:
        """A Dask array or memory map X: this epoch's blocks of whole batches (as
        ``cyprop._chunks.epoch_blocks`` orders them, shuffled by a generator seeded from
        ``rng``, or in order); returns the epoch's order of the samples."""
        generator = None if rng is None else \
            np.random.default_rng(rng.randint(np.iinfo(np.int32).max))
        rows = _chunks.block_rows(self.X.shape[1], self.net.dtype, self.batch_size)
        self.blocks = _chunks.epoch_blocks(self.n, rows, generator is not None, generator)
        lengths = [stop - start for start, stop, _ in self.blocks]
        offsets = np.cumsum([0, *lengths[:-1]])
        # each block's batches start afresh (the last block in X may come before others)
        self.batch_starts = np.concatenate(
            [offset + np.arange(0, length, self.batch_size)
             for offset, length in zip(offsets, lengths)]).astype(np.intp)
        return np.concatenate([start + order for start, _, order in self.blocks])

    def _run_blocks(self, weights: np.ndarray | None, dropout_seed: int | None,
                    rates: list[float], n_units: int) -> Any:
        """Train on each block of ``self.blocks`` (read while the last one trains);
        yields (loss, number right) per block."""
        net, done = self.net, 0
        for start, stop, order, X in _chunks.read_ahead(self.X, self.blocks):
            dropout = None if dropout_seed is None else \
                Dropout(rates, dropout_seed + done * n_units)
            w = None if weights is None else weights[start:stop]
            options = TrainingOptions(w, dropout, net.max_norm, self.n_threads)
            Y = self.Y[start:stop]
            with net._state_lock, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if self.poisson:
                    result = _poisson_epoch(net, self.optimizer, X, Y, order, self.batch_size,
                                            options)
                else:
                    result = net._impl.train_epoch(net.arch, net._params, X, Y, order,
                                                   self.batch_size, self.optimizer, options)
            done += stop - start
            yield result

    def _batch_weights(self, order: npt.NDArray[np.intp]) -> tuple[np.ndarray | None, float]:
        """Sample weights normalised per batch as scikit-learn does (each batch's gradient
        divided by the sum of its weights, not by its length), as the per-row weights the
        core multiplies in before dividing by the length; and sum(len / weight sum) over
        the batches."""
        if self.weights is None:
            return None, float(self.n_batches)
        w = self.weights[order]
        starts = np.arange(0, self.n, self.batch_size) if self.batch_starts is None \
            else self.batch_starts
        lengths = np.diff(np.append(starts, self.n))
        sums = np.add.reduceat(w, starts)
        if not np.all(sums):
            # scikit-learn's MLP fails here too (np.average's ZeroDivisionError); the
            # weights would turn 0 * inf = NaN and be reported as divergence
            raise ZeroDivisionError(
                "Weights sum to zero, can't be normalized: the sample weights of a "
                f"mini-batch (batch_size={self.batch_size}) sum to 0, and each batch's "
                "gradient is divided by its sum of weights; use a larger batch_size, or "
                "leave the zero-weight samples out")
        with np.errstate(divide="ignore", invalid="ignore"):
            factors = lengths / sums
        scaled = np.empty(self.n, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled[order] = w * np.repeat(factors, lengths)
            weights = scaled.astype(self.net.dtype)
        return weights, float(np.sum(factors))


def _poisson_epoch(net: Network, optimizer: Optimizer, X: np.ndarray, Y: np.ndarray,
                   order: npt.NDArray[np.intp], batch_size: int,
                   options: TrainingOptions) -> tuple[float, int]:
    """Mini-batch training for the Poisson loss (an exp output, which the compiled core
    does not have): NumPy per batch, through the reference backend's forward and
    backward passes, with ``optimizer``'s step.  Returns (sum of the weighted
    exp(z) - y z, 0)."""
    from . import _reference

    arch, params = net.arch, net._params
    weights = options.sample_weight
    total = 0.0
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        activations, z = _reference.feedforward(arch, params, X[batch], options.dropout, start)
        mean = np.exp(z)
        delta = mean - Y[batch]
        losses = np.sum(mean - Y[batch] * z, axis=1)
        if weights is not None:
            delta *= weights[batch][:, None]
            losses = losses * weights[batch]
        total += float(np.sum(losses))
        grad = _reference.backprop(arch, params, activations, delta, options.dropout, start)
        optimizer.update_params(params, grad / len(batch), arch)
        if options.max_norm:
            _reference.apply_max_norm(arch, params, options.max_norm)
    return total, 0


class BackpropClassifier(ClassifierMixin, _BaseBackprop):
    """A multilayer perceptron classifier trained by cyprop's backpropagation.

    A drop-in for ``sklearn.neural_network.MLPClassifier``: labels of any type; a
    softmax output with cross-entropy for more than two classes, one sigmoid output
    with binary cross-entropy for two (and for one), and one sigmoid output per label
    for multilabel targets (a 2-D 0/1 indicator matrix).

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer; ``()`` for none (logistic regression).
    activation : {'relu', 'tanh', 'logistic', 'identity', 'sigmoid', 'leaky_relu'}, default='relu'
        Hidden activation ('logistic' and 'sigmoid' are the same function).
    solver : {'adam', 'sgd', 'lbfgs', 'rmsprop', 'adagrad', 'rprop'}, default='adam'
        'lbfgs' minimises the full-batch loss (plus the L2 term) with SciPy's L-BFGS-B,
        the loss and gradient from cyprop's compiled core (for sparse X, from sparse
        matrix products in NumPy, as scikit-learn computes them); the others are cyprop's
        optimizers (``cyprop.Adam`` and so on), a mini-batch at a time.  'rprop'
        trains on full batches by default (``batch_size='auto'``) and does not use
        ``alpha``.
    alpha : float, default=0.0001
        L2 penalty strength, as in scikit-learn: the term 0.5 * alpha * ||W||^2 is
        divided by the number of samples (the sum of the sample weights) in the batch,
        i.e. cyprop's ``weight_decay = alpha / batch_size`` (weights only, never biases).
    batch_size : int or 'auto', default='auto'
        ``min(200, n_samples)`` for 'auto' (all samples for 'rprop'); clipped to the
        number of samples with a warning.  Not used by 'lbfgs'.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Used with solver='sgd' only, as in scikit-learn.  'invscaling' sets the rate
        after each epoch to ``learning_rate_init / (t_ + 1) ** power_t``, ``t_`` the
        samples seen so far (the first epoch of each ``fit`` uses
        ``learning_rate_init``; ``partial_fit`` carries the rate on); 'adaptive'
        divides the rate by 5 each time the stopping rule would stop, until it is
        below 1e-6.
    learning_rate_init : float, default=0.001
        The initial learning rate of the stochastic solvers.
    power_t : float, default=0.5
        The exponent of 'invscaling'.
    max_iter : int, default=200
        Epochs at most ('lbfgs': iterations); reaching it without converging warns
        ``ConvergenceWarning``.
    shuffle : bool, default=True
        Shuffle the samples in each epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Seeds, in scikit-learn's order, the initial weights, the validation split,
        the order of the samples in each epoch (and dropout).
    tol : float, default=1e-4
        The improvement the stopping rule asks for; for 'lbfgs', the gradient tolerance.
    verbose : bool, default=False
        Print the loss (and validation score) of every epoch.
    warm_start : bool, default=False
        Continue from the fitted weights on the next ``fit`` (a fresh optimizer; the
        best loss and the count of epochs without improvement carry on).
    momentum : float, default=0.9
        For solver='sgd'.
    nesterovs_momentum : bool, default=True
        For solver='sgd' with momentum > 0.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (as scikit-learn splits
        it: stratified for binary targets) and stop when its accuracy has not
        improved by ``tol`` for ``n_iter_no_change`` epochs; the weights of the best
        epoch are kept.  Stochastic solvers only.
    validation_fraction : float, default=0.1
        The share of the training data held out for early stopping, in (0, 1).
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's; ``epsilon`` is also rmsprop's and adagrad's.
    n_iter_no_change : int or np.inf, default=10
        Epochs without an improvement of ``tol`` (training loss, or the validation
        score with early stopping) tolerated before stopping: stops after more.
    max_fun : int, default=15000
        'lbfgs' only: the most loss and gradient evaluations.
    backend : {'auto', 'cython', 'numpy'}, default='auto'
        The network's backend (``cyprop.Network``'s ``backend``).
    dtype : {None, 'float64', 'float32'}, default=None
        The network's dtype, which it trains in.  None: X's (float32 for float32
        input, as scikit-learn, float64 otherwise).  Predictions are float32 when X and
        the network are, else float64 (as scikit-learn's ``X @ coefs_``).
    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers during training (stochastic solvers).
    max_norm : float or None, default=None
        Bound on the L2 norm of each unit's incoming weights (stochastic solvers).
    init : {'sklearn', 'xavier', 'he', 'normal', 'uniform'}, default='sklearn'
        Initial weights.  'sklearn' is scikit-learn's MLP initialisation, drawn from
        ``random_state`` as it draws it (Glorot uniform weights and biases, the bound
        sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for logistic units), so the same
        seed starts from the same weights as MLPClassifier; the others are
        ``cyprop.Network``'s ('he' suits deep relu networks).
    n_threads : int or None, default=None
        OpenMP threads for the parts of each mini-batch (None: OpenMP's default,
        ``OMP_NUM_THREADS``); the results do not depend on it.  Set 1 when fits
        already run in parallel (``GridSearchCV`` with ``n_jobs``), so that they
        don't oversubscribe the cores.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        The class labels (for multilabel targets, 0 .. n_labels - 1).
    network_ : cyprop.Network
        The trained network.
    coefs_ : list of ndarray
        Views of the weights, ``coefs_[l]`` of shape (n_in, n_out) (scikit-learn's
        layout); assignable.
    intercepts_ : list of ndarray
        Views of the biases, ``intercepts_[l]`` of shape (n_out,); assignable.
    loss_ : float
        The loss of the last epoch (L2 penalty included).
    loss_curve_ : list of float
        The training loss (L2 penalty included) of each epoch (stochastic solvers).
    best_loss_ : float or None
        The lowest of ``loss_curve_``; None with early stopping.
    validation_scores_ : list of float or None
        The validation score of each epoch with ``early_stopping``, else None.
    best_validation_score_ : float or None
        The best of ``validation_scores_``, with ``early_stopping``, else None.
    t_ : int
        Training samples seen, counting every epoch since the start.
    n_iter_ : int
        Epochs (iterations, for 'lbfgs') run by the last ``fit`` (1 after
        ``partial_fit``), as in scikit-learn; ``loss_curve_`` and ``t_`` count every
        epoch since the start.
    n_features_in_ : int
        The number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        The feature names seen in ``fit``, when X has string column names.
    n_layers_ : int
        Layers, counted as scikit-learn does: input, hidden layers and output.
    n_outputs_ : int
        Output units.
    out_activation_ : str
        The output activation by scikit-learn's name: 'softmax' or 'logistic'.
    """

    #: As MLPClassifier: the loss is not a parameter.
    _network_loss = "cross_entropy"

    # fitted attributes (set by fit)
    classes_: np.ndarray
    _multilabel: bool
    _sparse_labels: bool

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | Literal["auto"] = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int | float = 10, max_fun: int = 15000,
                 backend: str = "auto", dtype: npt.DTypeLike | None = None,
                 dropout: float | Sequence[float] = 0.0, max_norm: float | None = None,
                 init: str = "sklearn", n_threads: int | None = None) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss="log_loss", shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            backend=backend, dtype=dtype, dropout=dropout, max_norm=max_norm, init=init,
            n_threads=n_threads)

    def fit(self, X: MatrixLike, y: npt.ArrayLike,
            sample_weight: npt.ArrayLike | None = None) -> Self:
        """Train on (X, y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (dense, or ``scipy.sparse`` CSR, CSC or COO).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels, or a 0/1 indicator matrix for multilabel targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (negative weights are allowed, as in scikit-learn).

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If a parameter is invalid, or the data does not fit it.
        cyprop.TrainingDiverged
            If the weights become non-finite (without early stopping).
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: _check_solver(est))
    def partial_fit(self, X: MatrixLike, y: npt.ArrayLike,
                    sample_weight: npt.ArrayLike | None = None,
                    classes: npt.ArrayLike | None = None) -> Self:
        """One epoch over (X, y), keeping the optimizer's state between calls.

        Stochastic solvers only, as in scikit-learn (the method does not exist for
        ``solver='lbfgs'``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (dense, or ``scipy.sparse`` CSR, CSC or COO).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels, or a 0/1 indicator matrix for multilabel targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (negative weights are allowed, as in scikit-learn).
        classes : array-like of shape (n_classes,), default=None
            Every label that will ever appear: required on the first call, as in
            scikit-learn; for multilabel y it may be omitted.  Later calls may pass it
            again, unchanged.

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If ``classes`` is missing on the first call or differs from the first
            call's, y has labels not in ``classes_``, ``early_stopping`` is set, or
            the data does not fit the network.
        """
        # (a bad parameter is named before the classes, in scikit-learn's order of errors;
        # on the way that goes on, _fit checks the parameters once)
        if not hasattr(self, "network_") or not hasattr(self, "classes_"):
            if classes is None and not _is_multilabel(y):
                self._checked_params()
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            self._checked_params()
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to "
                             f"partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X: MatrixLike) -> np.ndarray:
        """Predict class labels.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_classes)
            The labels (for multilabel targets a 0/1 indicator matrix of integers, as
            scikit-learn's, whatever the dtype of y; a SciPy CSR matrix where y was
            sparse).
        """
        labels = self._labels_from_outputs(self._outputs(X))
        if self._multilabel and getattr(self, "_sparse_labels", False):
            from scipy.sparse import csr_matrix

            return csr_matrix(labels)
        return labels

    def _outputs(self, X: Any, validated: bool = False) -> np.ndarray:
        outputs = super()._outputs(X, validated)
        # classes_ may be relabelled by hand, not resized: its labels index the outputs
        n_classes, n_out = len(self.classes_), outputs.shape[1]
        if n_classes != n_out and (self._multilabel or n_out > 1 or n_classes > 2):
            raise ValueError(f"classes_ has {n_classes} labels, but the network was fitted "
                             f"for {'1 or 2' if n_out == 1 else n_out} classes; classes_ can be "
                             "relabelled, not resized (fit again for other classes)")
        return outputs

    def _labels_from_outputs(self, proba: np.ndarray) -> np.ndarray:
        if self._multilabel:
            # 0/1 integers whatever y's dtype (bool, float, ...), as scikit-learn's
            return (proba > 0.5).astype(np.intp)
        if len(self.classes_) == 1:
            return np.full(proba.shape[0], self.classes_[0])
        if proba.shape[1] == 1:
            return self.classes_[(proba[:, 0] > 0.5).astype(np.intp)]
        return self.classes_[proba.argmax(axis=1)]

    def predict_proba(self, X: MatrixLike) -> npt.NDArray[np.floating]:
        """Class probabilities.

        With a single output unit (two classes, or the one class seen in training)
        the columns are 1 - p and p, as in scikit-learn.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The probability of each class (one column per label for multilabel),
            float32 when X and the network are float32, else float64.
        """
        proba = self._outputs(X)
        if self._multilabel or proba.shape[1] > 1:
            return proba
        return np.hstack([1 - proba, proba])

    def predict_log_proba(self, X: MatrixLike) -> npt.NDArray[np.floating]:
        """The log of ``predict_proba``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            The log-probabilities (-inf where a probability is 0).
        """
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def to_onnx(self, path: str | os.PathLike[str], opset: int | None = None,
                ) -> onnx.ModelProto:
        """Write the fitted classifier as an ONNX model (needs ``cyprop[onnx]``).

        Input "X" (batch, n_features) in ``network_.dtype``; output "probabilities" as
        ``predict_proba`` gives them: (batch, n_classes), the columns 1 - p, p for a
        single output unit.  See ``cyprop.interop``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        opset : int, default=None
            The ONNX opset (13 or later); 17 by default.

        Returns
        -------
        onnx.ModelProto
            The model written.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the classifier is not fitted.
        ImportError
            If onnx is not installed.
        """
        check_is_fitted(self, "network_")
        from . import interop

        return interop.to_onnx(self.network_, path, opset, output_name="probabilities",
                               two_columns=self._is_single_output_classifier())

    def _score_outputs(self, outputs: np.ndarray, labels: np.ndarray,
                       sample_weight: np.ndarray | None) -> float:
        return accuracy_score(labels, self._labels_from_outputs(outputs),
                              sample_weight=sample_weight)

    @property
    def _network_output(self) -> str:
        return "softmax" if self._n_out > 1 and not self._multilabel else "sigmoid"

    def _validate_training_data(self, X: Any, y: Any, reset: bool, incremental: bool,
                                classes: Any = None, dtype: Any = None,
                                ) -> tuple[Any, np.ndarray, np.ndarray]:
        """(X, the network's targets, the labels as given); on a first fit (``reset``)
        the classes are set: those of y, or the given ``classes`` (partial_fit)."""
        X, y, dtype = self._validate_X_y(X, y, reset, dtype, y_numeric=False)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = type_of_target(y).startswith("multilabel")
        if y.ndim == 2 and not multilabel:
            raise ValueError("BackpropClassifier supports 1-D class labels and 2-D 0/1 "
                             "multilabel indicator matrices, not multiclass-multioutput "
                             f"targets (got {type_of_target(y)!r})")
        new_classes = reset or not hasattr(self, "classes_")
        if multilabel:
            given = classes if incremental and new_classes else None
            classes = np.arange(y.shape[1])
            # (partial_fit's classes, where given, must hold every column's label, as
            # scikit-learn's check them: a list of other labels was silently ignored)
            if given is not None and set(range(y.shape[1])) - set(unique_labels(given).tolist()):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` "
                                 f"has {unique_labels(given)}. 'y' has {classes}.")
            if not new_classes and (not self._multilabel or len(self.classes_) != y.shape[1]):
                raise ValueError("y does not have the labels the classifier was fitted with")
            if new_classes:
                self.classes_, self._multilabel = classes, True
                self._n_out = y.shape[1]
                # a sparse indicator matrix (as MultiLabelBinarizer(sparse_output=True)
                # gives): predict answers in CSR too, as scikit-learn's
                self._sparse_labels = _sparse.issparse(y)
            if _sparse.issparse(y):
                y = y.toarray()
            return X, np.ascontiguousarray(y, dtype=dtype), y
        if new_classes:
            given = classes if incremental else None
            classes = unique_labels(y if given is None else given)
            if given is not None and np.setdiff1d(unique_labels(y), classes).size:
                raise ValueError(f"`y` has classes not in `classes`: {classes!r}")
            self.classes_ = LabelEncoder().fit(classes).classes_
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
        encoder = LabelEncoder()
        encoder.classes_ = self.classes_
        indices = encoder.transform(y)
        if self._n_out == 1:
            # Two classes: one sigmoid output, the probability of classes_[1]; one class:
            # the output learns 0 (predict returns that class whatever it says).
            Y = (indices == 1).astype(dtype).reshape(-1, 1)
        else:
            Y = np.zeros((len(indices), self._n_out), dtype=dtype)
            Y[np.arange(len(indices)), indices] = 1
        return X, Y, y

    def _is_single_output_classifier(self) -> bool:
        return self._n_out == 1 and not self._multilabel

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class BackpropRegressor(RegressorMixin, _BaseBackprop):
    """A multilayer perceptron regressor trained by cyprop's backpropagation.

    A drop-in for ``sklearn.neural_network.MLPRegressor``: y of shape (n_samples,) or
    (n_samples, n_outputs), ``predict`` returning the same shape (1-D for one
    output).  Parameters as ``BackpropClassifier``, with ``loss`` added; early
    stopping watches the R^2 score of the held-out set.

    The Poisson loss trains with 'lbfgs' in the compiled core (two calls per
    evaluation); with a stochastic solver its batches run in NumPy (the compiled
    core has no exp output), about as fast as scikit-learn's.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
        'squared_error': an identity output, half the squared error.  'poisson': half
        the Poisson deviance with a log link: the network's identity output is
        log E[y], ``predict`` returns its exp; needs y >= 0.
    hidden_layer_sizes : int or tuple of int, default=(100,)
        Units of each hidden layer; ``()`` for none (linear regression).
    activation : {'relu', 'tanh', 'logistic', 'identity', 'sigmoid', 'leaky_relu'}, default='relu'
        Hidden activation ('logistic' and 'sigmoid' are the same function).
    solver : {'adam', 'sgd', 'lbfgs', 'rmsprop', 'adagrad', 'rprop'}, default='adam'
        As for ``BackpropClassifier``.
    alpha : float, default=0.0001
        L2 penalty strength, as in scikit-learn (a weight decay of
        ``alpha / batch_size`` for the stochastic solvers; weights only).
    batch_size : int or 'auto', default='auto'
        ``min(200, n_samples)`` for 'auto' (all samples for 'rprop'); clipped to the
        number of samples with a warning.  Not used by 'lbfgs'.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        The learning-rate schedule of solver='sgd', as for ``BackpropClassifier``.
    learning_rate_init : float, default=0.001
        The initial learning rate of the stochastic solvers.
    power_t : float, default=0.5
        The exponent of 'invscaling'.
    max_iter : int, default=200
        Epochs at most ('lbfgs': iterations); reaching it without converging warns
        ``ConvergenceWarning``.
    shuffle : bool, default=True
        Shuffle the samples in each epoch (stochastic solvers).
    random_state : int, RandomState instance or None, default=None
        Seeds, in scikit-learn's order, the initial weights, the validation split,
        the order of the samples in each epoch (and dropout).
    tol : float, default=1e-4
        The improvement the stopping rule asks for; for 'lbfgs', the gradient tolerance.
    verbose : bool, default=False
        Print the loss (and validation score) of every epoch.
    warm_start : bool, default=False
        Continue from the fitted weights on the next ``fit``.
    momentum : float, default=0.9
        For solver='sgd'.
    nesterovs_momentum : bool, default=True
        For solver='sgd' with momentum > 0.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data and stop when its R^2
        score has not improved by ``tol`` for ``n_iter_no_change`` epochs; the
        weights of the best epoch are kept.  Stochastic solvers only.
    validation_fraction : float, default=0.1
        The share of the training data held out for early stopping, in (0, 1).
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's; ``epsilon`` is also rmsprop's and adagrad's.
    n_iter_no_change : int or np.inf, default=10
        Epochs without an improvement of ``tol`` tolerated before stopping.
    max_fun : int, default=15000
        'lbfgs' only: the most loss and gradient evaluations.
    backend : {'auto', 'cython', 'numpy'}, default='auto'
        The network's backend (``cyprop.Network``'s ``backend``).
    dtype : {None, 'float64', 'float32'}, default=None
        The network's dtype, which it trains in.  None: X's (float32 for float32
        input, float64 otherwise).
    dropout : float or list of float, default=0.0
        Inverted dropout on the hidden layers during training (stochastic solvers).
    max_norm : float or None, default=None
        Bound on the L2 norm of each unit's incoming weights (stochastic solvers).
    init : {'sklearn', 'xavier', 'he', 'normal', 'uniform'}, default='sklearn'
        Initial weights; 'sklearn' draws them as MLPRegressor does for the same seed.
    n_threads : int or None, default=None
        OpenMP threads for the parts of each mini-batch (None: OpenMP's default);
        the results do not depend on it.

    Attributes
    ----------
    network_ : cyprop.Network
        The trained network.
    coefs_ : list of ndarray
        Views of the weights, ``coefs_[l]`` of shape (n_in, n_out); assignable.
    intercepts_ : list of ndarray
        Views of the biases, ``intercepts_[l]`` of shape (n_out,); assignable.
    loss_ : float
        The loss of the last epoch (L2 penalty included).
    loss_curve_ : list of float
        The training loss of each epoch (stochastic solvers).
    best_loss_ : float or None
        The lowest of ``loss_curve_``; None with early stopping.
    validation_scores_ : list of float or None
        The R^2 score of each epoch with ``early_stopping``, else None.
    best_validation_score_ : float or None
        The best of ``validation_scores_``, with ``early_stopping``, else None.
    t_ : int
        Training samples seen, counting every epoch since the start.
    n_iter_ : int
        Epochs (iterations, for 'lbfgs') run by the last ``fit`` (1 after
        ``partial_fit``).
    n_features_in_ : int
        The number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (``n_features_in_``,)
        The feature names seen in ``fit``, when X has string column names.
    n_layers_ : int
        Layers, counted as scikit-learn does: input, hidden layers and output.
    n_outputs_ : int
        Output units.
    out_activation_ : str
        'identity', or 'exp' for loss='poisson'.
    """

    _network_loss = "mse"
    _network_output = "identity"
    _parameter_constraints = {**_BaseBackprop._parameter_constraints,
                              "loss": [StrOptions(set(_REGRESSION_LOSSES))]}

    def __init__(self, loss: str = "squared_error",
                 hidden_layer_sizes: int | Sequence[int] = (100,),
                 activation: str = "relu", *, solver: str = "adam", alpha: float = 0.0001,
                 batch_size: int | Literal["auto"] = "auto", learning_rate: str = "constant",
                 learning_rate_init: float = 0.001, power_t: float = 0.5, max_iter: int = 200,
                 shuffle: bool = True,
                 random_state: int | np.random.RandomState | None = None, tol: float = 1e-4,
                 verbose: bool = False, warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int | float = 10, max_fun: int = 15000,
                 backend: str = "auto", dtype: npt.DTypeLike | None = None,
                 dropout: float | Sequence[float] = 0.0, max_norm: float | None = None,
                 init: str = "sklearn", n_threads: int | None = None) -> None:
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes, activation=activation, solver=solver,
            alpha=alpha, batch_size=batch_size, learning_rate=learning_rate,
            learning_rate_init=learning_rate_init, power_t=power_t, max_iter=max_iter,
            loss=loss, shuffle=shuffle, random_state=random_state, tol=tol,
            verbose=verbose, warm_start=warm_start, momentum=momentum,
            nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
            validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
            epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
            backend=backend, dtype=dtype, dropout=dropout, max_norm=max_norm, init=init,
            n_threads=n_threads)

    def fit(self, X: MatrixLike, y: npt.ArrayLike,
            sample_weight: npt.ArrayLike | None = None) -> Self:
        """Train on (X, y).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (dense, or ``scipy.sparse`` CSR, CSC or COO).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets (y >= 0 for loss='poisson').
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (negative weights are allowed, as in scikit-learn).

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If a parameter is invalid, or the data does not fit it.
        cyprop.TrainingDiverged
            If the weights become non-finite (without early stopping).
        """
        return self._fit(X, y, sample_weight, incremental=False)

    @available_if(lambda est: _check_solver(est))
    def partial_fit(self, X: MatrixLike, y: npt.ArrayLike,
                    sample_weight: npt.ArrayLike | None = None) -> Self:
        """One epoch over (X, y), keeping the optimizer's state between calls.

        Stochastic solvers only, as in scikit-learn (the method does not exist for
        ``solver='lbfgs'``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data (dense, or ``scipy.sparse`` CSR, CSC or COO).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The targets (y >= 0 for loss='poisson').
        sample_weight : array-like of shape (n_samples,), default=None
            Weights of the samples (negative weights are allowed, as in scikit-learn).

        Returns
        -------
        self
            The fitted estimator.

        Raises
        ------
        ValueError
            If ``early_stopping`` is set, or the data does not fit the network.
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: MatrixLike) -> npt.NDArray[np.floating]:
        """Predict the targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            The input data.

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
            The predictions: 1-D for one output.
        """
        out = self._outputs(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def to_onnx(self, path: str | os.PathLike[str], opset: int | None = None,
                ) -> onnx.ModelProto:
        """Write the fitted regressor as an ONNX model (needs ``cyprop[onnx]``).

        Input "X" (batch, n_features) in ``network_.dtype``; output "predictions" as
        ``predict`` gives them: (batch,) for one target, else (batch, n_targets), the
        exp of the network's output for loss='poisson'.  See ``cyprop.interop``.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        opset : int, default=None
            The ONNX opset (13 or later); 17 by default.

        Returns
        -------
        onnx.ModelProto
            The model written.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the regressor is not fitted.
        ImportError
            If onnx is not installed.
        """
        check_is_fitted(self, "network_")
        from . import interop

        return interop.to_onnx(self.network_, path, opset, output_name="predictions",
                               exp=self._output_kind == "exp",
                               flatten=self.network_.sizes[-1] == 1)

    def _validate_training_data(self, X: Any, y: Any, reset: bool, incremental: bool,
                                classes: Any = None, dtype: Any = None,
                                ) -> tuple[Any, np.ndarray, np.ndarray]:
        X, y, dtype = self._validate_X_y(X, y, reset, dtype, y_numeric=True)
        if _sparse.issparse(y):   # (validate_data lets a sparse y through)
            y = y.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and np.any(y < 0):
            raise ValueError("loss='poisson' needs y >= 0 (counts or rates)")
        Y = np.ascontiguousarray(np.asarray(y, dtype=dtype).reshape(y.shape[0], -1))
        self._n_out = Y.shape[1]
        return X, Y, y

    def _score_outputs(self, outputs: np.ndarray, y: np.ndarray,
                       sample_weight: np.ndarray | None) -> float:
        return r2_score(y, outputs[:, 0] if outputs.shape[1] == 1 and np.ndim(y) == 1
                        else outputs, sample_weight=sample_weight)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        if self.loss == "poisson":
            tags.target_tags.positive_only = True
        return tags


# ---------------------------------------------------------------------- helpers
#: The estimators being fitted.
_FITTING = _loop.InUse()


@contextlib.contextmanager
def _fitting(estimator: _BaseBackprop) -> Any:
    """Mark ``estimator`` as being fitted for the ``with`` block, or refuse: two fits of
    one estimator at once would each build a network and train whichever was
    ``network_`` at the time, the records of both in one ``loss_curve_``."""
    claimed = False
    try:
        with _loop.taking():   # (Ctrl-C held back until the claim is noted)
            _FITTING.claim(estimator, f"this {type(estimator).__name__} is already being "
                           "fitted (in another thread); fit a clone of it "
                           "(sklearn.base.clone), or wait for that fit to return")
            claimed = True
        yield
    finally:
        if claimed:
            _FITTING.release(estimator)


class _LayerList(list):
    """``coefs_`` / ``intercepts_``: views of the network's layers; assigning an item
    copies the values into the network (``coefs_`` transposed to cyprop's layout)."""

    def __init__(self, net: Network, kind: str, items: list[np.ndarray]) -> None:
        super().__init__(items)
        self._net, self._kind = net, kind

    def __setitem__(self, index: Any, value: Any) -> None:
        if isinstance(index, slice):
            raise TypeError("assign the layers one at a time, or the whole list")
        layers = getattr(self._net, self._kind)
        value = np.asarray(value)
        layers[index] = value.T if self._kind == "weights" else value

    def __reduce_ex__(self, protocol: Any) -> Any:
        # a copy (copy.copy, deepcopy, pickle) is a plain list of the arrays, as
        # scikit-learn's: not tied to the network (its items assigned into the model),
        # nor carrying the whole network into a pickle
        return list, (list(self),)


def _network_for(estimator: _BaseBackprop, attribute: str) -> Network:
    """The network that a fitted attribute (``coefs_``, ``n_layers_`` ...) is read
    from; unfitted, that attribute is missing by its own name, as scikit-learn's is
    (an AttributeError that named ``network_`` misled whoever asked for another)."""
    net = vars(estimator).get("network_")
    if net is None:
        raise AttributeError(f"'{type(estimator).__name__}' object has no attribute "
                             f"'{attribute}'")
    return net


def _fitted_network(estimator: _BaseBackprop, attribute: str) -> Network:
    """The estimator's network, where one of its layer lists is assigned: only a fitted
    estimator has one (scikit-learn's MLP stores the lists, but cannot predict from them
    alone either)."""
    if "network_" not in vars(estimator):
        raise NotFittedError(f"{attribute} can be assigned once this {type(estimator).__name__} "
                             "is fitted (fit builds its network; assign after it, e.g. after "
                             "fit with max_iter=1)")
    return estimator.network_


def _assign_layers(net: Network, kind: str, values: Sequence[npt.ArrayLike]) -> None:
    values = list(values)
    layers = getattr(net, kind)
    if len(values) != len(layers):
        raise ValueError(f"{'coefs_' if kind == 'weights' else 'intercepts_'} needs "
                         f"{len(layers)} arrays, got {len(values)}")
    # the whole list at once: checked before any layer changes, and under the network's
    # state lock (no layer lands mid-step of a fit in another thread)
    setattr(net, kind, [np.asarray(v).T if kind == "weights" else v for v in values])


def _check_solver(estimator: _BaseBackprop) -> bool:
    if estimator.solver not in _STOCHASTIC_SOLVERS:
        raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                             f"{estimator.solver} is not stochastic.")
    return True


def _solver_class(solver: str) -> type[Optimizer]:
    return {"sgd": SGD, "adam": Adam, "rmsprop": RMSprop, "adagrad": Adagrad,
            "rprop": Rprop}[solver]


def _set_learning_rate(optimizer: Optimizer, rate: float) -> None:
    """Change the stochastic solver's rate between epochs as scikit-learn's SGD does.
    Its velocity is in units of the step (``velocity = momentum * velocity -
    learning_rate * grad``), cyprop's momentum buffer in units of the gradient (the
    step is ``learning_rate * buffer``): the buffer is rescaled by old rate / new rate,
    so that the momentum carried over moves the weights by what it did before the
    change, and the next steps are scikit-learn's."""
    state = optimizer.state
    if isinstance(optimizer, SGD) and optimizer.momentum and state is not None:
        state *= optimizer.learning_rate / rate
    optimizer.learning_rate = rate


def _squared_weights(net: Network) -> float:
    # einsum, not np.dot: a BLAS call here would wake NumPy's BLAS threads, whose
    # spinning then competes with the training's own threads.
    return sum(float(np.einsum("ij,ij->", W, W, dtype=np.float64)) for W in net.weights)


def _shuffled(sample_idx: npt.NDArray[np.intp], rng: np.random.RandomState,
              ) -> npt.NDArray[np.intp]:
    """``sklearn.utils.shuffle(sample_idx, random_state=rng)``, as it draws it (a
    permutation of arange(n) shuffled in place by the random state), without its
    per-call parameter validation (a third of a millisecond, every epoch)."""
    permutation = np.arange(sample_idx.shape[0])
    rng.shuffle(permutation)
    return sample_idx[permutation]


def _read_in_blocks(X: Any, dtype: Any) -> bool:
    """Whether X is read a block of rows at a time (``cyprop._chunks``): a Dask array,
    or a memory map that would be converted to ``dtype`` (a dtype, or a tuple: X's own
    among them, else the first).  A memory map that needs no conversion is used in
    place, as an array in memory is (the same order of the samples, the same results):
    its pages are read by the OS, into no private memory."""
    if not _chunks.is_blockwise(X):
        return False
    if _chunks.is_dask(X):
        return True
    wanted = _float_dtype(X.dtype, dtype) if isinstance(dtype, tuple) else np.dtype(dtype)
    return not (X.dtype == wanted and X.flags.c_contiguous and X.flags.aligned)


def _check_lazy_numbers(X: Any) -> None:
    """A Dask array or memory map X must hold numbers.  Refused with a ValueError, as
    scikit-learn's check_array refuses complex or string X (code written for its MLP
    catches that), not with the TypeError that cyprop.Network raises."""
    kind = np.dtype(X.dtype).kind
    if kind == "c":
        raise ValueError(f"Complex data not supported (X has dtype {X.dtype})")
    if kind not in "biuf":
        raise ValueError(f"X must hold numbers (got dtype {X.dtype}); convert it to a "
                         "float array first")


def _float_dtype(dtype: Any, allowed: tuple[Any, ...] = (np.float64, np.float32)) -> np.dtype:
    """A dtype among ``allowed`` as it is, else the first (how scikit-learn converts)."""
    return np.dtype(dtype) if np.dtype(dtype) in [np.dtype(a) for a in allowed] \
        else np.dtype(allowed[0])


def _copy(array: np.ndarray | None) -> np.ndarray | None:
    return None if array is None else array.copy()


def _network_state(net: Network) -> dict[str, Any]:
    """A Network as plain data: ``Network.get_state`` (its settings, parameters,
    generator, optimizer and history, checked as ``save`` checks them) as dicts, each
    history record an array of its values and one of where it holds None."""
    state = net.get_state()
    result = {field.name: getattr(state, field.name) for field in dataclasses.fields(state)}
    if state.optimizer is not None:
        result["optimizer"] = dataclasses.asdict(state.optimizer)
    # Arrays, not lists: skops.io writes a list's every float as an object of its own
    # (hundreds of bytes), and a stream of partial_fit calls records an epoch each.
    values, none = _state.history_arrays(state.history)
    result["history"] = dict(zip(History.KEYS, values))
    result["history_none"] = dict(zip(History.KEYS, none))
    return result


#: The estimator's own records, one float per epoch, which pickle holds as arrays.
_RECORD_LISTS = ("loss_curve_", "validation_scores_")
#: The entries of ``_network_state``'s dict and of its optimizer's ("rng" is optional:
#: states pickled before it was kept lack it).
_NETWORK_STATE_KEYS = ("sizes", "activations", "loss", "dtype", "backend", "init", "seed",
                       "dropout", "max_norm", "params", "optimizer", "history", "stop_reason")
_OPTIMIZER_STATE_KEYS = ("name", "config", "initial_learning_rate", "steps", "state")


def _network_from_state(state: Any) -> Network:
    """The network of a ``_network_state`` dict, checked by ``Network.from_state`` as
    ``cyprop.load`` checks a file: skops.io trusts only the estimator class, so every
    value here comes from the file.  ValueError naming the problem."""
    def invalid(problem: str) -> ValueError:
        return ValueError(f"cannot unpickle this estimator's network: {problem}")

    missing = [key for key in _NETWORK_STATE_KEYS
               if not isinstance(state, dict) or key not in state]
    if missing:
        raise invalid(f"it lacks {', '.join(missing)}")
    opt, optimizer = state["optimizer"], None
    if opt is not None:
        if not (isinstance(opt, dict) and set(_OPTIMIZER_STATE_KEYS) <= set(opt)):
            raise invalid("invalid optimizer entry")
        optimizer = OptimizerState(**{key: opt[key] for key in _OPTIMIZER_STATE_KEYS})
    history = state["history"]
    if not isinstance(history, dict):
        raise invalid("invalid training history")
    if "history_none" in state:   # (states pickled before it was kept hold lists)
        history = _history_lists(history, state["history_none"], invalid)
    rng = state.get("rng")
    if rng is None:   # the generator a new network of that seed starts with
        seed = state["seed"]
        rng = _state.plain(np.random.default_rng(
            seed if _state.is_int(seed) and seed >= 0 else None).bit_generator.state)
    try:
        return Network.from_state(NetworkState(
            sizes=state["sizes"], activations=state["activations"], loss=state["loss"],
            dtype=state["dtype"], init=state["init"], seed=state["seed"],
            backend=state["backend"], dropout=state["dropout"], max_norm=state["max_norm"],
            params=state["params"], rng=rng, optimizer=optimizer,
            # records a newer cyprop keeps and this one does not know are left out
            history={key: values for key, values in history.items() if key in History.KEYS},
            # (optional: states pickled before it was kept lack it)
            stop_reason=state["stop_reason"], classes=state.get("classes")))
    except InvalidState as exc:
        raise invalid(exc.problem) from exc


def _history_lists(values: dict[str, Any], none: Any,
                   invalid: Callable[[str], ValueError]) -> dict[str, list[float | None]]:
    """The records of ``_network_state``'s history arrays as lists (their lengths are
    checked with the values by ``Network.from_state``)."""
    if not (isinstance(none, dict) and none.keys() == values.keys()):
        raise invalid("invalid training history")
    records = {}
    for key, record in values.items():
        missing = none[key]
        if not (isinstance(record, np.ndarray) and record.dtype == np.float64
                and isinstance(missing, np.ndarray) and missing.dtype == np.bool_
                and record.ndim == 1 and record.shape == missing.shape):
            raise invalid(f"invalid training history record {_state.short.repr(key)}")
        records[key] = _state.record_list(record, missing)
    return records


def _is_multilabel(y: Any) -> bool:
    try:
        return type_of_target(y).startswith("multilabel")
    except ValueError:
        return False


def _dtype_name(dtype: Any) -> str | None:
    try:
        return np.dtype(dtype).name
    except TypeError:
        return None


def _seed(rng: np.random.RandomState) -> int:
    """A seed for cyprop drawn from a scikit-learn random state."""
    return int(rng.randint(np.iinfo(np.int32).max))


def _check_number(name: str, value: float, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise _BadParam(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value < low or (low_open and value == low)):
        raise _BadParam(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value > high or (high_open and value == high)):
        raise _BadParam(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")
