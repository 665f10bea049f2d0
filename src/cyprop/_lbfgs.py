"""Full-batch training by L-BFGS-B, scikit-learn's ``solver='lbfgs'``, over cyprop's
compiled loss and gradient.

The objective is scikit-learn's MLP objective: the (weighted) sum of the sample losses
plus the L2 penalty ``0.5 * alpha * ||W||^2`` (weights only, never biases), divided
by the number of samples (the sum of the sample weights).  Its gradient comes from
the network's backend in one call per block of rows (one call for the data sets
L-BFGS is meant for), with the GIL released; SciPy's ``L-BFGS-B`` does the rest.

A sparse X is the exception: its loss and gradient come from the NumPy reference
backend, whose matrix products take the CSR rows as they are (scipy's sparse products
for the first layer, as scikit-learn computes them), a block of rows at a time.  That
is 2-4x faster than densifying the rows for the compiled core at a density of 20% or
less (see benchmarks/README.md), and agrees with it to rounding (1e-15).

Losses the network computes itself (cross-entropy with a softmax or sigmoid output,
the squared error with an identity output) take that one call.  Sample weights and
the Poisson loss (an exp output) take two: the output pre-activations z of a twin
architecture with an identity output, then the gradient of that twin for the
targets ``z - D``, where D = w (f(z) - y) is the weighted output delta of the loss
(every loss here pairs with its canonical link, so dLoss/dz = f(z) - y): the twin's
squared-error delta ``z - (z - D)`` is D, and backpropagation does the rest.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _maths, _sparse
from ._architecture import Architecture

if TYPE_CHECKING:
    from .network import Network

#: scikit-learn's loss name -> the output activation it pairs with (cyprop's names,
#: and "exp" for the Poisson loss's log link, which the network leaves to the estimator).
OUTPUTS = {"squared_error": "identity", "poisson": "exp"}


def output_values(output: str, z: np.ndarray) -> np.ndarray:
    """The output activation f(z) of the estimator's output, from pre-activations z."""
    if output == "exp":
        with np.errstate(over="ignore"):
            return np.exp(z)
    return _maths.ACTIVATE[output](z)


def sample_losses(output: str, a: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each sample's loss (one per row) for an output activation, as scikit-learn
    computes it: cross-entropy for softmax and sigmoid from the probabilities clipped
    to [eps, 1 - eps] (so that one sample's loss is at most -log(eps): with negative
    sample weights the objective stays bounded, as scikit-learn's), half the squared
    error for identity, and for exp the Poisson deviance's terms that depend on z
    (exp(z) - y z)."""
    if output == "exp":
        with np.errstate(over="ignore", invalid="ignore"):
            return np.sum(a - y * z, axis=1)
    if output == "identity":
        return _maths.sample_losses("mse", "identity", a, z, y)
    from scipy.special import xlogy

    eps = np.finfo(a.dtype).eps
    p = np.clip(a, eps, 1 - eps)
    if output == "softmax":
        return -np.sum(xlogy(y, p), axis=1)
    return -np.sum(xlogy(y, p) + xlogy(1 - y, 1 - p), axis=1)


def poisson_constant(y: np.ndarray, sample_weight: npt.ArrayLike | None = None) -> float:
    """The Poisson deviance's terms that do not depend on the model,
    sum of w (y log y - y): scikit-learn includes them in its reported loss."""
    from scipy.special import xlogy

    per_sample = np.sum(xlogy(y, y) - y, axis=1)
    if sample_weight is not None:
        per_sample = per_sample * sample_weight
    return float(np.sum(per_sample))


class Objective:
    """f(theta) and its gradient, for ``scipy.optimize.minimize(..., jac=True)``.

    ``X`` is dense (C-contiguous, of the network's dtype) or CSR; ``Y`` the targets
    (n, n_outputs) of the network's dtype; ``output`` the estimator's output
    activation ("softmax", "sigmoid", "identity" or "exp").  theta is the network's
    flat parameter vector (weights then biases of each layer), written into the
    network's own buffer before each evaluation.
    """

    def __init__(self, net: Network, X: Any, Y: np.ndarray, sample_weight: npt.ArrayLike | None,
                 alpha: float, output: str) -> None:
        self.net = net
        self.sparse = _sparse.issparse(X)
        if self.sparse:
            from . import _reference

            self.impl = _reference   # matrix products that take CSR rows as they are
        else:
            self.impl = net._impl
        self.arch = net.arch
        self.dtype = net.dtype
        self.X, self.Y = X, Y
        self.weights = None if sample_weight is None else np.asarray(sample_weight, np.float64)
        self.sw_sum = float(X.shape[0] if self.weights is None else self.weights.sum())
        self.alpha = float(alpha)
        self.output = output
        self.direct = self.weights is None and output != "exp"
        if not self.direct:
            self.twin = Architecture(self.arch.sizes, self.arch.activations[:-1] + ("identity",),
                                     "mse")
        self.constant = poisson_constant(Y, self.weights) if output == "exp" else 0.0
        self.weight_index = np.concatenate(
            [np.arange(s.start, s.stop) for s in self.arch.w_slices])
        if self.sparse:
            # the dense arrays of a block are its activations and deltas
            self.block = _sparse.block_rows(2 * sum(self.arch.sizes[1:]), self.dtype.itemsize)
        else:
            self.block = _sparse.block_rows(X.shape[1], self.dtype.itemsize)
        self.evaluations = 0

    def data_term(self, want_grad: bool = True) -> tuple[float, npt.NDArray[np.float64] | None]:
        """(sum of the weighted sample losses, sum of their gradients or None) at the
        network's current parameters, over every row, a block at a time."""
        params = self.net._params
        total = 0.0
        grad = None
        rows = _sparse.row_blocks(self.X, self.block) if self.sparse else \
            _sparse.blocks(self.X, self.dtype, self.block)
        for start, stop, Xb in rows:
            Yb = self.Y[start:stop]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if self.direct:
                    loss, _, g = self.impl.loss_and_gradients(self.arch, params, Xb, Yb,
                                                              want_grad)
                else:
                    loss, g = self._twin_block(params, Xb, Yb, start, stop, want_grad)
            total += float(loss)
            if want_grad:
                if grad is None:
                    grad = np.array(g, dtype=np.float64)
                else:
                    assert g is not None   # asked for (want_grad)
                    grad += g
        return total, grad

    def _twin_block(self, params: np.ndarray, Xb: Any, Yb: np.ndarray, start: int, stop: int,
                    want_grad: bool) -> tuple[float, np.ndarray | None]:
        z = self.impl.forward(self.twin, params, Xb)
        a = output_values(self.output, z)
        losses = sample_losses(self.output, a, z, Yb)
        delta = a - Yb
        if self.weights is not None:
            w = self.weights[start:stop]
            losses = losses * w
            delta *= w.astype(delta.dtype)[:, None]
        loss = float(np.sum(losses))
        if not want_grad:
            return loss, None
        target = np.ascontiguousarray(z - delta, dtype=self.dtype)
        _, _, g = self.impl.loss_and_gradients(self.twin, params, Xb, target, True)
        return loss, g

    def penalty(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[self.weight_index]
        return 0.5 * self.alpha * float(np.dot(W, W)), W

    def __call__(self, theta: np.ndarray) -> tuple[float, npt.NDArray[np.float64]]:
        self.evaluations += 1
        params = self.net._params
        params[...] = theta
        # the point the network evaluates: theta rounded to its dtype
        theta = params.astype(np.float64)
        loss, grad = self.data_term()
        assert grad is not None   # want_grad: one block at least
        penalty, W = self.penalty(theta)
        grad[self.weight_index] += self.alpha * W
        grad /= self.sw_sum
        return (loss + self.constant + penalty) / self.sw_sum, grad

    def value(self, data_scale: float = 1.0) -> float:
        """The objective at the network's current parameters, the data term scaled by
        ``data_scale`` (scikit-learn reports the squared error averaged over the
        outputs too)."""
        loss, _ = self.data_term(want_grad=False)
        penalty, _ = self.penalty(self.net._params.astype(np.float64))
        return (loss * data_scale + self.constant + penalty) / self.sw_sum


def minimize(objective: Objective, theta0: npt.ArrayLike, max_iter: int, max_fun: int,
             tol: float, verbose: bool | int) -> tuple[Any, int]:
    """Run L-BFGS-B from theta0 as scikit-learn's MLP does; returns (result, n_iter),
    having warned ``ConvergenceWarning`` as scikit-learn does when it did not converge."""
    import scipy.optimize

    iprint = 1 if (verbose is True or verbose >= 1) else -1
    options = {"maxfun": int(max_fun), "maxiter": int(max_iter), "gtol": float(tol),
               **_iprint_option(iprint)}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        result = scipy.optimize.minimize(objective, np.asarray(theta0, dtype=np.float64),
                                         method="L-BFGS-B", jac=True, options=options)
    return result, _check_result(result, max_iter)


def _iprint_option(iprint: int) -> dict[str, Any]:
    try:
        from sklearn.utils.fixes import _get_additional_lbfgs_options_dict
    except ImportError:  # a scikit-learn that moved it: SciPy >= 1.15 takes no iprint
        return {}
    return _get_additional_lbfgs_options_dict("iprint", iprint)


def _check_result(result: Any, max_iter: int) -> int:
    try:
        from sklearn.utils.optimize import _check_optimize_result
    except ImportError:
        _check_optimize_result = None
    if _check_optimize_result is not None:
        return _check_optimize_result("lbfgs", result, max_iter)
    from sklearn.exceptions import ConvergenceWarning

    n_iter = min(result.nit, max_iter)
    if result.status != 0:
        warnings.warn(f"lbfgs failed to converge after {n_iter} iteration(s) "
                      f"(status={result.status}):\n{result.message}\n",
                      ConvergenceWarning, stacklevel=3)
    return n_iter
