"""One-row calls: the cost of serving or streaming one sample at a time.

A service calls ``forward``/``predict`` on one row, an online learner ``partial_fit`` on
one sample; there the fixed cost of a call, not the arithmetic, decides the speed.  Each
call is timed per call (the median of repeats of a loop of calls), on W1, against NumPy's
own one-row forward chain (two matrix products, a sigmoid, a softmax), PyTorch's module
call, and scikit-learn's MLPClassifier, all on the same row.  Each call's loops take
turns with loops of the NumPy chain, and its ratio is to the chain timed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import cyprop

from . import _suite

Record = dict[str, Any]

#: Calls per timed loop are chosen so that one loop takes about this long (seconds).
LOOP_SECONDS = 0.05


def loop_length(call: Callable[[], object]) -> int:
    """Calls of ``call()`` that take about LOOP_SECONDS (after one warm-up call)."""
    call()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < LOOP_SECONDS / 5:
        call()
        calls += 1
    return max(10, calls * 5)


def seconds_per_call(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls


def per_call(call: Callable[[], object], repeats: int) -> float:
    """Median seconds per call of ``call()``, over ``repeats`` loops of calls."""
    calls = loop_length(call)
    return statistics.median(seconds_per_call(call, calls) for _ in range(repeats))


def per_call_beside(call: Callable[[], object], chain: Callable[[], object],
                    repeats: int) -> tuple[float, float]:
    """Median seconds per call of ``call()`` and of ``chain()``, their loops taking turns
    (``repeats`` of each), so that the ratio of the two holds on a machine whose speed
    drifts."""
    calls, chain_calls = loop_length(call), loop_length(chain)
    times, chain_times = [], []
    for _ in range(repeats):
        chain_times.append(seconds_per_call(chain, chain_calls))
        times.append(seconds_per_call(call, calls))
    return statistics.median(times), statistics.median(chain_times)


def cyprop_calls(net: cyprop.Network, x: np.ndarray, label: int) -> dict[str, Callable[[], object]]:
    row, Y = x[None], np.array([label])
    return {
        "forward (1, n)": lambda: net.forward(row),
        "forward (n,)": lambda: net.forward(x),
        "predict (1, n)": lambda: net.predict(row),
        "predict (n,)": lambda: net.predict(x),
        "partial_fit (1, n)": lambda: net.partial_fit(row, Y),
        "partial_fit (n,)": lambda: net.partial_fit(x, label),
    }


def torch_calls(net: cyprop.Network, x: np.ndarray,
                label: int) -> dict[str, Callable[[], object]]:
    import torch

    module = net.to_torch()
    optimizer = torch.optim.SGD(module.parameters(), lr=_suite.LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    target = torch.tensor([label])

    def forward() -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x[None])).numpy()

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(module[:-1](torch.from_numpy(x[None])), target).backward()   # (logits)
        optimizer.step()

    return {"forward (1, n)": forward, "partial_fit (1, n)": step}


def sklearn_calls(X: np.ndarray, y: np.ndarray, x: np.ndarray,
                  label: int) -> dict[str, Callable[[], object]]:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    n_hidden = _suite.WORKLOADS["W1"][1]
    clf = MLPClassifier(hidden_layer_sizes=(n_hidden,), activation="logistic", solver="sgd",
                        learning_rate_init=_suite.LEARNING_RATE, momentum=0.0, alpha=0.0,
                        batch_size=1, max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.partial_fit(X[:100], y[:100], classes=np.unique(y))
    row, Y = x[None], np.array([label])
    return {"forward (1, n)": lambda: clf.predict_proba(row),
            "predict (1, n)": lambda: clf.predict(row),
            "partial_fit (1, n)": lambda: clf.partial_fit(row, Y)}


def run_one_row(args: argparse.Namespace) -> Record:
    """Per-call times on W1 (each of --dtypes for cyprop; the peers in float64), and
    each as a ratio to NumPy's one-row forward chain measured in the same run."""
    X, y = _suite.make_data("W1", args.samples)
    x, label = np.ascontiguousarray(X[7]), int(y[7])
    report: Record = {"workload": "W1", "calls": []}
    for dtype in args.dtypes:
        net = _suite.make_cyprop_net("W1", dtype, "cython")
        net.partial_fit(X[:1].astype(dtype), y[:1], optimizer=cyprop.SGD(_suite.LEARNING_RATE))
        xd = x.astype(dtype)
        Ws, bs = [W.copy() for W in net.weights], [b.copy() for b in net.biases]

        def numpy_chain() -> object:
            return _suite.numpy_forward(xd[None], Ws, bs)

        chain = per_call(numpy_chain, args.repeats)
        systems: list[tuple[str, dict[str, Callable[[], object]]]] = [
            ("cyprop", cyprop_calls(net, xd, label))]
        if dtype == "float64":
            if _suite.available("torch"):
                systems.append(("PyTorch", torch_calls(net.copy(), xd, label)))
            if _suite.available("sklearn.neural_network"):
                systems.append(("scikit-learn", sklearn_calls(X, y, xd, label)))
        print(f"  NumPy one-row forward chain ({_suite.SHORT_DTYPE[dtype]}): "
              f"{chain * 1e6:.2f} us per call", flush=True)
        for system, calls in systems:
            for call_name, call in calls.items():
                seconds, beside = per_call_beside(call, numpy_chain, args.repeats)
                record = {"system": system, "call": call_name, "dtype": dtype,
                          "seconds": seconds, "numpy_chain_seconds": beside,
                          "ratio_to_numpy_chain": seconds / beside}
                report["calls"].append(record)
                print(f"  {system:<13} {call_name:<20} {_suite.SHORT_DTYPE[dtype]} "
                      f"{seconds * 1e6:8.2f} us  {seconds / beside:6.2f}x the NumPy chain "
                      f"({beside * 1e6:.2f} us beside it)", flush=True)
    return report
