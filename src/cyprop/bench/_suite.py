"""The benchmark suite: one epoch of training, samples/s, against peers and plain C.

Workloads: W1 [64, 32, 10] on scikit-learn's 1,797 digits (random data of that shape without
scikit-learn), W2 [784, 30, 10] and W3 [784, 100, 10] on random MNIST-shaped data.  Every
system trains sigmoid hidden layers and a softmax + cross-entropy output (the C baseline:
sigmoid + quadratic cost, the same work) with plain SGD, lr 0.1: a warm-up epoch, then the
median of --repeats epochs.  Machines are shared and noisy: read the ratios between systems
measured in the same run, not the absolute figures.  For the same reason the systems of a
point on one thread (workload, batch size, dtype) are timed in turn, one epoch of each per
round, so that a machine whose speed drifts over minutes slows them alike (on several
threads one after another: thread pools spin after their calls); the C baseline (its own
program and repeats) runs right after each point at batch size 1.

Systems: cython (cyprop's compiled core), numpy (cyprop's NumPy reference), torch (PyTorch
CPU), jax (a jit-compiled JAX epoch, one thread; pip install "jax[cpu]"), sklearn
(MLPClassifier, one partial_fit per epoch), c (cyprop's plain-C per-sample SGD, compiled
here; batch size 1), estimators (cyprop.sklearn against scikit-learn: lbfgs and sparse
input).  Peers that are not installed are skipped, and so is the C baseline
without a C compiler ($CC, Python's CC, cc, gcc or clang); the output says which.

    cyprop bench --quick                # about half a minute
    cyprop bench                        # everything (minutes)
    cyprop bench --workloads W2 --batch-sizes 1,10 --systems cython,torch
    cyprop bench --json bench.json --plot throughput.png
    cyprop bench --optimizers --workloads W2,W3  # each optimizer at bs=1, vs plain SGD

python -m cyprop.bench is the same as cyprop bench.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from . import _baseline

if TYPE_CHECKING:
    from ..network import Network
    from ..optimizers import Optimizer

#: One measurement or record of the report (a JSON object).
Record = dict[str, Any]
#: Each workload's training data: name -> (X, y).
DataSets = dict[str, tuple[np.ndarray, np.ndarray]]

WORKLOADS = {"W1": [64, 32, 10], "W2": [784, 30, 10], "W3": [784, 100, 10]}
SYSTEMS = ("cython", "numpy", "torch", "jax", "sklearn", "c", "estimators")
SYSTEM_ALIASES = {"yardstick": "c"}   # the C baseline's name before it moved into the package
QUICK = {"workloads": "W1,W2", "batch_sizes": "1,10", "systems": "cython,numpy,c,torch,sklearn",
         "dtypes": "float64", "repeats": 5, "samples": 5000, "max_samples_slow": 1000}
LEARNING_RATE = 0.1
SHORT_DTYPE = {"float64": "f64", "float32": "f32"}
C_SYSTEM = "C-baseline"
PEER_NAMES = {"cyprop-numpy": "NumPy reference", "torch": "PyTorch", "jax": "JAX",
              "sklearn": "scikit-learn"}
#: XLA on one core, as the other systems run: no intra-op threads (set before jax loads).
XLA_ONE_CORE = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


# ----------------------------------------------------------------------------- helpers
def measure(call: Callable[[], object], repeats: int) -> list[float]:
    """Warm up with one ``call()``, then time ``repeats`` calls; list of seconds.  For one
    callable alone (inference, matrix products); the training systems take turns through
    ``time_in_turn``."""
    call()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def result(system: str, variant: str, workload: str, bs: int, dtype: str, n: int,
           times: list[float], limited: bool = False) -> Record:
    """One measurement: ``n`` samples per epoch, ``times`` in seconds per epoch."""
    med = statistics.median(times)
    return {"system": system, "variant": variant, "workload": workload, "batch_size": bs,
            "dtype": dtype, "n_samples": n, "limited": limited, "times": times,
            "repeats": len(times), "seconds_med": med, "sps_med": n / med}


def label(r: Record) -> str:
    return f"{r['system']} {r['variant']}"


def samples_for(slow: bool, bs: int, n_total: int, args: argparse.Namespace) -> int:
    """Samples to train on: slow systems at bs=1 use at most --max-samples-slow."""
    if slow and bs == 1 and args.max_samples_slow:
        return min(n_total, args.max_samples_slow)
    return n_total


def fmt_sps(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def progress(r: Record) -> None:
    star = f" (first {r['n_samples']} samples)" if r["limited"] else ""
    print(f"  {label(r):<28} {r['workload']} bs={r['batch_size']:<4} "
          f"{fmt_sps(r['sps_med']):>8} samples/s{star}", flush=True)


def blas_limited(threads: int) -> AbstractContextManager[Any]:
    """BLAS and OpenMP pools limited to ``threads`` inside the block (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def thread_counts(args: argparse.Namespace, bs: int) -> list[int]:
    """The thread counts to measure a point at: online SGD (bs=1) is sequential in every
    system, so it runs on one thread only."""
    return [1] if bs == 1 else args.threads


# -------------------------------------------------------------------------------- data
def make_data(workload: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 C-contiguous, y int64 labels) for a workload."""
    if workload == "W1":
        try:
            from sklearn.datasets import load_digits
            digits = load_digits()
            X, y = digits.data / 16.0, digits.target
        except ImportError:
            rng = np.random.default_rng(seed)
            X, y = rng.random((1797, 64)), rng.integers(0, 10, 1797)
        X, y = X[:n], y[:n]
    else:
        rng = np.random.default_rng(seed)
        X, y = rng.random((n, WORKLOADS[workload][0])), rng.integers(0, 10, n)
    return np.ascontiguousarray(X, dtype=np.float64), np.asarray(y, dtype=np.int64)


def w1_source() -> str:
    try:
        import sklearn.datasets  # noqa: F401
        return "sklearn load_digits / 16"
    except ImportError:
        return "random (scikit-learn missing)"


# ----------------------------------------------------------------------------- systems
class Group(NamedTuple):
    """A comparable point: one workload, batch size, dtype and thread count.  Every
    system that runs there is timed with the others (time_group)."""
    workload: str
    batch_size: int
    dtype: str
    threads: int

    @property
    def variant(self) -> str:
        return f"{SHORT_DTYPE[self.dtype]} {self.threads}thr"


@dataclass
class Point:
    """One system's epoch at a group, prepared and ready to be timed.

    ``epoch()`` trains one epoch; it may return the seconds it measured itself as a float
    (cyprop's History, which leaves out input validation), otherwise the call is timed.
    ``context()`` is entered around each call, outside the time: the system's threads."""
    system: str
    variant: str
    dtype: str
    n: int
    limited: bool
    epoch: Callable[[], object]
    context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext


#: How a system prepares its epoch at a group (None: it does not run there).
Prepare = Callable[[Group, np.ndarray, np.ndarray, argparse.Namespace], Point | None]


def make_cyprop_net(workload: str, dtype: str, backend: str) -> Network:
    import cyprop
    return cyprop.Network(WORKLOADS[workload], activation="sigmoid", output="softmax",
                          loss="cross_entropy", dtype=dtype, seed=0, backend=backend)


def prepare_cyprop(backend: str, g: Group, X: np.ndarray, y: np.ndarray,
                   args: argparse.Namespace) -> Point | None:
    """cyprop with ``backend`` ("cython" at each of --dtypes, "numpy" at float64); the
    epoch time is the History's.  The compiled core gets its threads as
    ``fit(n_threads=...)``, the NumPy reference as BLAS threads."""
    if g.dtype not in (["float64"] if backend == "numpy" else args.dtypes):
        return None
    import cyprop
    n = samples_for(backend == "numpy", g.batch_size, len(X), args)
    Xd, yd = np.ascontiguousarray(X[:n], dtype=g.dtype), y[:n]
    net = make_cyprop_net(g.workload, g.dtype, backend)
    opt = cyprop.SGD(learning_rate=LEARNING_RATE)
    n_threads = g.threads if backend == "cython" else None

    def epoch() -> float:
        h = net.fit(Xd, yd, epochs=1, batch_size=g.batch_size, optimizer=opt, shuffle=True,
                    seed=0, verbose=0, n_threads=n_threads)
        return h.seconds[-1] or 0.0   # (always recorded by fit)

    return Point(f"cyprop-{backend}", g.variant, g.dtype, n, n < len(X), epoch,
                 lambda: blas_limited(g.threads))


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """PyTorch's threads set to ``threads`` inside the block, restored after."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_torch(g: Group, X: np.ndarray, y: np.ndarray,
                  args: argparse.Namespace) -> Point | None:
    """PyTorch CPU: nn.Linear+Sigmoid+Linear, CrossEntropyLoss, optim.SGD, a plain loop over
    index batches of a fresh permutation; at each of --dtypes, its threads set by
    ``torch.set_num_threads`` around each call."""
    if g.dtype not in args.dtypes:
        return None
    import torch
    from torch import nn

    n = samples_for(True, g.batch_size, len(X), args)
    bs = g.batch_size
    Xt = torch.from_numpy(np.ascontiguousarray(X[:n], dtype=g.dtype))
    yt = torch.from_numpy(y[:n])
    torch.manual_seed(0)
    n_in, n_hidden, n_out = WORKLOADS[g.workload]
    model = nn.Sequential(nn.Linear(n_in, n_hidden), nn.Sigmoid(),
                          nn.Linear(n_hidden, n_out)).to(getattr(torch, g.dtype))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)

    def epoch() -> None:
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            opt.zero_grad()
            loss = loss_fn(model(Xt[idx]), yt[idx])
            loss.backward()
            opt.step()

    return Point("torch", g.variant, g.dtype, n, n < len(X), epoch,
                 lambda: torch_threads(g.threads))


def prepare_jax(g: Group, X: np.ndarray, y: np.ndarray,
                args: argparse.Namespace) -> Point | None:
    """JAX: a jit-compiled epoch, ``jax.lax.scan`` of the SGD step over the batches of a
    fresh permutation (how a performance-minded JAX user writes this loop), one thread,
    at each of --dtypes.  The epoch covers the whole batches (n // bs * bs samples).
    XLA_FLAGS and float64 (``jax_enable_x64``) are set before (``setup_jax``)."""
    # Once per workload, batch size and dtype, beside the fewest threads: it runs on one.
    if g.dtype not in args.dtypes or g.threads != thread_counts(args, g.batch_size)[0]:
        return None
    import jax
    import jax.numpy as jnp

    n_in, n_hidden, n_out = WORKLOADS[g.workload]
    rng = np.random.default_rng(0)
    init = [rng.normal(0, 1 / np.sqrt(n_in), (n_hidden, n_in)), np.zeros(n_hidden),
            rng.normal(0, 1 / np.sqrt(n_hidden), (n_out, n_hidden)), np.zeros(n_out)]
    bs = g.batch_size
    n = samples_for(True, bs, len(X), args)
    limited = n < len(X)
    n = n // bs * bs   # whole batches
    Xj = jnp.asarray(X[:n], dtype=g.dtype)
    Yj = jnp.asarray(np.eye(n_out)[y[:n]], dtype=g.dtype)

    def loss(params: list[Any], xb: Any, yb: Any) -> Any:
        W1, b1, W2, b2 = params
        z = jax.nn.sigmoid(xb @ W1.T + b1) @ W2.T + b2
        return -jnp.mean(jnp.sum(yb * jax.nn.log_softmax(z), axis=1))

    def step(params: list[Any], batch: tuple[Any, Any]) -> tuple[list[Any], None]:
        grads = jax.grad(loss)(params, *batch)
        return [p - LEARNING_RATE * d for p, d in zip(params, grads)], None

    @jax.jit
    def train(params: list[Any], order: Any, n_batches: int = n // bs,
              bs: int = bs) -> list[Any]:
        batches = (Xj[order].reshape(n_batches, bs, n_in),
                   Yj[order].reshape(n_batches, bs, n_out))
        return jax.lax.scan(step, params, batches)[0]

    params = [jnp.asarray(p, dtype=g.dtype) for p in init]
    orders = np.random.default_rng(1)

    def epoch() -> None:
        order = jnp.asarray(orders.permutation(n))
        jax.block_until_ready(train(params, order))

    return Point("jax", f"{SHORT_DTYPE[g.dtype]} 1thr", g.dtype, n, limited, epoch)


def setup_jax(args: argparse.Namespace) -> bool:
    """XLA on one core (its flags are read when jax loads) and float64 when asked for;
    whether jax imports."""
    if "jax" not in sys.modules:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} {XLA_ONE_CORE}".strip()
    if not available("jax"):
        return False
    if "float64" in args.dtypes:   # for the whole run, so every point runs in one mode
        import jax
        jax.config.update("jax_enable_x64", True)
    return True


def prepare_sklearn(g: Group, X: np.ndarray, y: np.ndarray,
                    args: argparse.Namespace) -> Point | None:
    """scikit-learn MLPClassifier at float64, one epoch per partial_fit (plain SGD,
    shuffled), with the group's BLAS threads."""
    if g.dtype != "float64":
        return None
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    n = samples_for(True, g.batch_size, len(X), args)
    Xd, yd = X[:n], y[:n]
    classes = np.unique(y)
    clf = MLPClassifier(hidden_layer_sizes=(WORKLOADS[g.workload][1],), activation="logistic",
                        solver="sgd", learning_rate_init=LEARNING_RATE, momentum=0.0,
                        nesterovs_momentum=False, alpha=0.0, batch_size=g.batch_size,
                        shuffle=True, max_iter=1, random_state=0)

    def epoch() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.partial_fit(Xd, yd, classes=classes)

    return Point("sklearn", g.variant, "float64", n, n < len(X), epoch,
                 lambda: blas_limited(g.threads))


#: The systems that train at each group, in the order they take their turns: name ->
#: (the module they need, how they prepare a point, the title printed).
TRAINERS: dict[str, tuple[str, Prepare, str]] = {
    "cython": ("cyprop", functools.partial(prepare_cyprop, "cython"), "cyprop, compiled core"),
    "numpy": ("cyprop", functools.partial(prepare_cyprop, "numpy"), "cyprop, NumPy reference"),
    "torch": ("torch", prepare_torch, "PyTorch CPU"),
    "jax": ("jax", prepare_jax, "JAX (jit, lax.scan), one thread"),
    "sklearn": ("sklearn.neural_network", prepare_sklearn, "scikit-learn MLPClassifier"),
}
#: The order of the records (and so of the table rows): each system's together.
RECORD_ORDER = ("cyprop-cython", C_SYSTEM, "cyprop-numpy", "torch", "jax", "sklearn")


# ------------------------------------------------------------------------------ driver
#: An epoch shorter than this (seconds) is run once more, untimed, right before each timed
#: run when systems take turns: the other systems' epochs evict a small workload's data
#: from the caches (W1's in float64: 0.9 MB), which made a short epoch 10-15% slower than
#: one that follows its own, as the C baseline's and every sequential run's epochs do.
REWARM_BELOW = 0.1


def time_in_turn(points: Sequence[Point], repeats: int,
                 budget: float | None = None) -> list[list[float]]:
    """Time the points' epochs in turn: one warm-up call of each, then ``repeats`` rounds
    of one call of each, so that the machine's drift hits them alike (a short epoch
    warmed up again just before; REWARM_BELOW).  Returns each point's seconds per epoch.
    With a ``budget`` (seconds), a point stops once 3 of its calls are timed and its
    calls have taken that long (a pathologically slow point, e.g. threads fighting over
    a busy machine); the others go on."""
    def call(point: Point) -> tuple[float, float]:
        """(the epoch's seconds, the call's wall seconds)."""
        with point.context():
            start = time.perf_counter()
            inner = point.epoch()
            wall = time.perf_counter() - start
        return (inner if isinstance(inner, float) else wall), wall

    rewarm = [call(point)[1] < REWARM_BELOW and len(points) > 1 for point in points]
    times: list[list[float]] = [[] for _ in points]
    spent = [0.0 for _ in points]
    for _ in range(repeats):
        for i, point in enumerate(points):
            if budget and len(times[i]) >= 3 and spent[i] > budget:
                continue
            if rewarm[i]:
                call(point)
            seconds, wall = call(point)
            times[i].append(seconds)
            spent[i] += wall
    return times


def time_group(g: Group, prepares: Sequence[Prepare], X: np.ndarray, y: np.ndarray,
               args: argparse.Namespace) -> list[Record]:
    """Every system's epoch at one group, prepared then timed in turn; their records.
    A group on several threads times its systems one after another instead: a thread
    pool keeps its threads spinning for a while after its call (OpenBLAS's, OpenMP's),
    on the cores that the next system's threads need (cyprop's W3 epochs on two threads
    ran at half their speed when they followed the NumPy reference's in turn)."""
    points = [p for prepare in prepares if (p := prepare(g, X, y, args)) is not None]
    if g.threads > 1:
        times = [time_in_turn([p], args.repeats, args.point_budget)[0] for p in points]
    else:
        times = time_in_turn(points, args.repeats, args.point_budget)
    out = []
    for p, t in zip(points, times):
        r = result(p.system, p.variant, g.workload, g.batch_size, p.dtype, p.n, t, p.limited)
        progress(r)
        out.append(r)
    return out


def run_training(data: DataSets, prepares: Sequence[Prepare], args: argparse.Namespace,
                 c_baseline: Callable[[str, str, int], list[Record]] | None = None,
                 ) -> list[Record]:
    """The training throughput: each group's systems timed in turn, one group at a time
    (prepared, timed, let go); ``c_baseline(workload, dtype, n)`` right after each
    bs=1 group of --dtypes.  The records, each system's together."""
    # float64 even without --dtypes asking: the NumPy reference and scikit-learn run at it.
    dtypes = [d for d in SHORT_DTYPE if d in args.dtypes or d == "float64"]
    out = []
    for wl, (X, y) in data.items():
        for dtype in dtypes:
            for bs in args.batch_sizes:
                for threads in thread_counts(args, bs):
                    out += time_group(Group(wl, bs, dtype, threads), prepares, X, y, args)
                if bs == 1 and c_baseline and dtype in args.dtypes:
                    out += c_baseline(wl, dtype, len(X))
    rank = {system: i for i, system in enumerate(RECORD_ORDER)}
    return sorted(out, key=lambda r: rank.get(r["system"], len(rank)))


def sparse_data(n: int, n_features: int = 784, density: float = 0.05,
                seed: int = 0) -> tuple[Any, np.ndarray]:
    """(CSR X of ``density`` nonzeros uniform in [0, 1), int labels of 10 classes that a
    linear model of X predicts): sparse input shaped like W2's, seeded."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.random(n, n_features, density=density, format="csr", dtype=np.float64,
                  random_state=np.random.RandomState(seed))
    y = np.asarray((X @ rng.normal(size=(n_features, 10))).argmax(axis=1)).ravel()
    return X, y


def run_estimators(data: DataSets, args: argparse.Namespace) -> list[Record]:
    """cyprop.sklearn.BackpropClassifier against scikit-learn's MLPClassifier, same data,
    same settings, one thread each:

    - solver='lbfgs': one fit of ``--lbfgs-iter`` iterations (tol=0, so neither stops
      early) on each workload's data.  Both start from the same weights and minimise
      the same objective, so they run the same iterates: the loss is printed for both;
    - sparse input (CSR, ``--sparse-density`` nonzeros, W2's shape): one epoch of plain
      SGD (``partial_fit``) at each batch size, and an 'lbfgs' fit; cyprop densifies a
      block of rows at a time, scikit-learn multiplies the sparse matrix; cyprop on the
      same data made dense is measured too.

    Returns a list of records: what, data, system, seconds (median), iterations, loss."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from cyprop.sklearn import BackpropClassifier

    systems = (("cyprop", BackpropClassifier), ("sklearn", MLPClassifier))
    repeats = max(1, min(args.repeats, 3))

    def timed(call: Callable[[], object]) -> tuple[float, int]:
        """Seconds of ``call()`` (median of up to ``repeats``; a slow point stops once it
        has spent a third of --point-budget; no warm-up: a fit warms itself up)."""
        times: list[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                call()
            times.append(time.perf_counter() - start)
            if args.point_budget and sum(times) > args.point_budget / 3:
                break
        return statistics.median(times), len(times)

    def record(what: str, name: str, system: str, est: Any, seconds: float, n_timed: int,
               n_samples: int) -> Record:
        r = {"what": what, "data": name, "system": system, "seconds_med": seconds,
             "repeats": n_timed, "n_samples": n_samples,
             "n_iter": int(getattr(est, "n_iter_", 0)), "loss": float(est.loss_)}
        print(f"  {what:<14} {name:<14} {system:<14} {seconds * 1e3:10.1f} ms  "
              f"(n_iter {r['n_iter']}, loss {r['loss']:.6g})", flush=True)
        return r

    out = []
    for wl, (X, y) in data.items():
        kwargs: dict[str, Any]
        kwargs = dict(hidden_layer_sizes=(WORKLOADS[wl][1],), activation="logistic",
                      solver="lbfgs", alpha=1e-4, max_iter=args.lbfgs_iter, tol=0.0,
                      random_state=0)
        for system, cls in systems:
            extra: dict[str, Any] = {"n_threads": 1} if system == "cyprop" else {}
            est = cls(**kwargs, **extra)
            seconds, n_timed = timed(lambda: est.fit(X, y))
            out.append(record("lbfgs", wl, system, est, seconds, n_timed, len(X)))

    X_sparse, y_sparse = sparse_data(args.samples, density=args.sparse_density)
    X_dense = X_sparse.toarray()
    name = f"CSR {args.sparse_density:g}"
    classes = np.unique(y_sparse)
    runs = [("cyprop", BackpropClassifier, X_sparse), ("cyprop dense", BackpropClassifier, X_dense),
            ("sklearn", MLPClassifier, X_sparse)]
    for bs in args.batch_sizes:
        for system, cls, X in runs:
            extra = {"n_threads": 1} if cls is BackpropClassifier else {}
            est = cls(hidden_layer_sizes=(30,), activation="logistic", solver="sgd",
                      learning_rate_init=LEARNING_RATE, momentum=0.0, alpha=0.0,
                      batch_size=bs, random_state=0, **extra)
            seconds, n_timed = timed(lambda: est.partial_fit(X, y_sparse, classes=classes))
            out.append(record(f"sgd epoch bs={bs}", name, system, est, seconds, n_timed,
                              X.shape[0]))
    for system, cls, X in runs:
        extra = {"n_threads": 1} if cls is BackpropClassifier else {}
        est = cls(hidden_layer_sizes=(30,), activation="logistic", solver="lbfgs",
                  alpha=1e-4, max_iter=args.lbfgs_iter, tol=0.0, random_state=0, **extra)
        seconds, n_timed = timed(lambda: est.fit(X, y_sparse))
        out.append(record("lbfgs", name, system, est, seconds, n_timed, X.shape[0]))
    return out


def print_estimators(records: list[Record]) -> None:
    """The estimator comparison: seconds per fit (or epoch), and scikit-learn's time over
    cyprop's (above 1: cyprop is faster)."""
    by_key: dict[tuple[str, str], dict[str, Record]] = {}
    for r in records:
        by_key.setdefault((r["what"], r["data"]), {})[r["system"]] = r
    print("\nscikit-learn estimators, same data, one thread (ms per fit or epoch; "
          "speed-up = scikit-learn / cyprop)")
    print("| what | data | cyprop | cyprop on the dense copy | scikit-learn | speed-up | "
          "n_iter cyprop / sklearn | loss cyprop / sklearn |")
    print("|---|---|---|---|---|---|---|---|")
    for (what, data), systems in by_key.items():
        cy, sk, dense = systems.get("cyprop"), systems.get("sklearn"), systems.get("cyprop dense")
        ms = lambda r: f"{r['seconds_med'] * 1e3:.1f}" if r else ""   # noqa: E731
        speedup = f"{sk['seconds_med'] / cy['seconds_med']:.2f}" if cy and sk else ""
        iters = f"{cy['n_iter']} / {sk['n_iter']}" if cy and sk and what == "lbfgs" else ""
        losses = f"{cy['loss']:.6g} / {sk['loss']:.6g}" if cy and sk else ""
        print(f"| {what} | {data} | {ms(cy)} | {ms(dense)} | {ms(sk)} | {speedup} | {iters} "
              f"| {losses} |")


def start_c_baseline(stack: contextlib.ExitStack, args: argparse.Namespace,
                     report: Record) -> _baseline.Baseline:
    """cyprop's plain-C per-sample SGD (bs=1; package data), compiled here for as long as
    ``stack`` is open: with -O3 -march=native and with -O3 alone (--quick: native only,
    or -O3 where the compiler refuses -march=native), at each dtype.  What it skips and
    why goes to the report's notes, which compiler and flags built it to
    ``report["c_baseline"]``."""
    builds = ["native"] if args.quick else ["native", "portable"]
    baseline = stack.enter_context(_baseline.Baseline(
        [(d, b) for d in args.dtypes for b in builds], fallback=args.quick))
    if baseline.compiler:
        print(f"  compiled with {baseline.compiler}", flush=True)
    for line in baseline.info:
        print(f"  {line}", flush=True)
    for note in baseline.notes:
        skip(report, note)
    report["c_baseline"] = {"compiler": baseline.compiler, "info": baseline.info,
                            "builds": {f"{SHORT_DTYPE[d]} {b}": " ".join(_baseline.BUILDS[b])
                                       for d, b in baseline.programs}}
    return baseline


def run_c_baseline(baseline: _baseline.Baseline, wl: str, dtype: str, n: int,
                   args: argparse.Namespace, report: Record) -> list[Record]:
    """The C baseline's builds at one workload and dtype, on ``n`` samples (as many as
    cyprop trains on); the program runs its own warm-up and --repeats.  A run that fails
    is noted in the report."""
    out = []
    for build in [b for d, b in baseline.programs if d == dtype]:
        try:
            rec = baseline.run(dtype, build, WORKLOADS[wl], n, args.repeats)
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            skip(report, f"C baseline {SHORT_DTYPE[dtype]} {build} {wl}: {exc}")
            continue
        r = result(C_SYSTEM, f"{SHORT_DTYPE[dtype]} {build}", wl, 1, dtype, rec["n"],
                   rec["times"])
        r.update(flags=" ".join(_baseline.BUILDS[build]), compiler=baseline.compiler)
        progress(r)
        out.append(r)
    return out


# ---------------------------------------------------------------- inference and threads
# ------------------------------------------------------------ optimizers at batch size 1
#: Every optimizer, and the options that change its compiled step, for --optimizers.
OPTIMIZER_VARIANTS = {
    "SGD": ("SGD", dict(learning_rate=LEARNING_RATE)),
    "SGD momentum": ("SGD", dict(learning_rate=LEARNING_RATE, momentum=0.9)),
    "SGD nesterov+wd": ("SGD", dict(learning_rate=LEARNING_RATE, momentum=0.9, nesterov=True,
                                    weight_decay=1e-4)),
    "Adam": ("Adam", dict(learning_rate=1e-3)),
    "Adam wd": ("Adam", dict(learning_rate=1e-3, weight_decay=1e-4)),
    "RMSprop": ("RMSprop", dict(learning_rate=1e-3)),
    "RMSprop momentum+wd": ("RMSprop", dict(learning_rate=1e-3, momentum=0.9,
                                            weight_decay=1e-4)),
    "Adagrad": ("Adagrad", dict(learning_rate=1e-2)),
    "Rprop": ("Rprop", dict(learning_rate=1e-3)),
}


def run_optimizers(data: DataSets, dtypes: list[str], args: argparse.Namespace) -> list[Record]:
    """One epoch at batch size 1 with each optimizer (cyprop's compiled core, one thread),
    the optimizers taking turns within each repeat so that a drifting machine load hits
    all alike; samples/s and the ratio to plain SGD measured in the same run."""
    import cyprop
    out = []
    for wl, (X, y) in data.items():
        for dtype in dtypes:
            Xd = np.ascontiguousarray(X, dtype=dtype)
            runs: dict[str, tuple[Network, Optimizer, list[float]]] = {}
            for name, (cls, kwargs) in OPTIMIZER_VARIANTS.items():
                net = make_cyprop_net(wl, dtype, "cython")
                runs[name] = (net, getattr(cyprop, cls)(**kwargs), [])

            def epoch(net: Network, opt: Optimizer) -> float:
                return net.fit(Xd, y, epochs=1, batch_size=1, optimizer=opt, shuffle=True,
                               seed=0, verbose=0, n_threads=1).seconds[-1] or 0.0  # (as above)

            for net, opt, _ in runs.values():
                epoch(net, opt)  # warm-up
            for _ in range(args.repeats):
                for net, opt, times in runs.values():
                    times.append(epoch(net, opt))
            sgd = len(X) / statistics.median(runs["SGD"][2])
            for name, (_, _, times) in runs.items():
                r = result("cyprop-cython", f"{SHORT_DTYPE[dtype]} {name}", wl, 1, dtype,
                           len(X), times)
                r["optimizer"], r["ratio_to_sgd"] = name, r["sps_med"] / sgd
                print(f"  {wl} {SHORT_DTYPE[dtype]} {name:<22} {fmt_sps(r['sps_med']):>8} "
                      f"samples/s  {r['ratio_to_sgd']:.2f} of plain SGD", flush=True)
                out.append(r)
    return out


def print_optimizer_table(results: list[Record], workloads: list[str]) -> None:
    print("\n" + "=" * 78)
    print("Batch size 1, one thread: samples/s of each optimizer as a fraction of plain SGD's "
          "(same run)")
    keys = [(wl, short) for wl in workloads for short in ("f64", "f32")]
    print(f"  {'optimizer':<22}" + "".join(f"{wl + ' ' + short:>10}" for wl, short in keys))
    for name in OPTIMIZER_VARIANTS:
        cells = []
        for wl, short in keys:
            hit = [r for r in results if r["workload"] == wl and r["optimizer"] == name
                   and r["variant"].startswith(short)]
            cells.append(f"{hit[0]['ratio_to_sgd']:.2f}" if hit else "-")
        print(f"  {name:<22}" + "".join(f"{c:>10}" for c in cells))


def numpy_forward(X: np.ndarray, weights: Sequence[np.ndarray],
                  biases: Sequence[np.ndarray]) -> np.ndarray:
    """The NumPy baseline: one matrix-product chain, sigmoid hidden, softmax output."""
    a = X
    for W, b in zip(weights[:-1], biases[:-1]):
        a = 1.0 / (1.0 + np.exp(-(a @ W.T + b)))
    z = a @ weights[-1].T + biases[-1]
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def run_inference(workloads: list[str], n: int, dtypes: list[str],
                  args: argparse.Namespace) -> list[Record]:
    """cython ``net.forward`` on n samples vs the NumPy chain with the same weights."""
    out = []
    for wl in workloads:
        rng = np.random.default_rng(1)
        X64 = rng.random((n, WORKLOADS[wl][0]))
        for dtype in dtypes:
            X = np.ascontiguousarray(X64, dtype=dtype)
            net = make_cyprop_net(wl, dtype, "cython")
            Ws = [w.copy() for w in net.weights]
            bs = [b.copy() for b in net.biases]
            t_cy = statistics.median(measure(lambda: net.forward(X), args.repeats))
            t_np = statistics.median(measure(lambda: numpy_forward(X, Ws, bs), args.repeats))
            diff = float(np.abs(net.forward(X) - numpy_forward(X, Ws, bs)).max())
            r = {"workload": wl, "dtype": dtype, "n_samples": n, "cython_seconds": t_cy,
                 "numpy_seconds": t_np, "ratio_time_cython_over_numpy": t_cy / t_np,
                 "max_abs_diff": diff}
            print(f"  forward {wl} {SHORT_DTYPE[dtype]}: cython {t_cy * 1e3:.2f} ms, "
                  f"numpy chain {t_np * 1e3:.2f} ms, ratio {t_cy / t_np:.2f}", flush=True)
            out.append(r)
    return out


def batch_products(workload: str, bs: int) -> list[tuple[str, str, int, int, int]]:
    """The matrix products of one SGD step on a batch of ``bs`` rows, as column-major
    gemm calls (trans_a, trans_b, m, n, k) of row-major arrays: each layer's forward
    product, its gradient's, and (above the first layer) the deltas sent down."""
    sizes = WORKLOADS[workload]
    calls = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        calls.append(("T", "N", n_out, bs, n_in))      # A_l (bs, n_in) @ W_l.T
        calls.append(("N", "T", n_in, n_out, bs))      # D_l.T (n_out, bs) @ A_l
        if l > 0:
            calls.append(("N", "N", n_in, bs, n_out))  # D_l (bs, n_out) @ W_l
    return calls


def run_gemm_share(results: list[Record], workloads: list[str], dtypes: list[str],
                   bs: int, repeats: int) -> list[Record]:
    """cyprop's mini-batch epoch at batch size ``bs`` against the same matrix products
    alone (SciPy's BLAS, one thread, the batch's whole shapes): the fraction of the
    products' speed that the epoch reaches, and the GEMM rate (counted FLOPs / s).  The
    products are called from Python, about a microsecond each on top: that flatters the
    fraction only where the products are tiny (W1)."""
    from scipy.linalg import blas

    out = []
    for wl in workloads:
        for dtype in dtypes:
            sps = lookup(results, "cyprop-cython", f"{SHORT_DTYPE[dtype]} 1thr", wl, bs)
            if sps is None:
                continue
            gemm = blas.dgemm if dtype == "float64" else blas.sgemm
            rng = np.random.default_rng(0)
            operands = []
            for ta, tb, m, n, k in batch_products(wl, bs):
                a = np.asfortranarray(rng.random((k, m) if ta == "T" else (m, k)), dtype)
                b = np.asfortranarray(rng.random((n, k) if tb == "T" else (k, n)), dtype)
                operands.append((a, b, ta == "T", tb == "T", 2 * m * n * k))
            flops = sum(op[4] for op in operands)

            def products() -> None:
                for a, b, ta, tb, _ in operands:
                    gemm(1.0, a, b, trans_a=ta, trans_b=tb)

            with blas_limited(1):
                seconds = min(measure(products, max(repeats, 20)))
            products_sps = bs / seconds
            record = {"workload": wl, "dtype": dtype, "batch_size": bs, "cython_sps": sps,
                      "products_sps": products_sps, "fraction": sps / products_sps,
                      "gemm_gflops": flops / seconds / 1e9,
                      "cython_gflops": flops / bs * sps / 1e9}
            out.append(record)
    return out


def run_threads(X: np.ndarray, y: np.ndarray, args: argparse.Namespace) -> Record:
    """Two threads each training its own W2 net (bs=1, one epoch) vs the same two
    trainings one after the other; ratio of wall times (1.0: no overlap, 0.5: perfect)."""
    import cyprop
    nets = [make_cyprop_net("W2", "float64", "cython") for _ in range(2)]
    errors: list[BaseException] = []

    def train(net: Network) -> None:
        try:
            net.fit(X, y, epochs=1, batch_size=1, optimizer=cyprop.SGD(learning_rate=LEARNING_RATE),
                    shuffle=True, seed=0, verbose=0)
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    def sequential() -> None:
        for net in nets:
            train(net)

    def threaded() -> None:
        threads = [threading.Thread(target=train, args=(net,)) for net in nets]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    seq: list[float] = []
    thr: list[float] = []
    cpu: list[float] = []
    sequential()  # warm-up
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits both alike
        for fn, times in ((sequential, seq), (threaded, thr)):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - start)
            if fn is threaded:  # CPU seconds per wall second: ~2 if both threads ran at once
                cpu.append((time.process_time() - start_cpu) / times[-1])
    if errors:
        raise errors[0]
    ratio = statistics.median(thr) / statistics.median(seq)
    best = min(thr) / min(seq)  # what the code can do when the machine lets both threads run
    print(f"  two threads W2 bs=1, {len(X)} samples each: sequential "
          f"{statistics.median(seq):.3f} s, threaded {statistics.median(thr):.3f} s, "
          f"ratio {ratio:.2f} (best {best:.2f}), threaded CPU/wall {statistics.median(cpu):.2f}",
          flush=True)
    return {"workload": "W2", "batch_size": 1, "n_samples": len(X), "sequential_times": seq,
            "threaded_times": thr, "threaded_cpu_over_wall": cpu,
            "ratio_threaded_over_sequential": ratio, "ratio_best_over_best": best,
            "target": 0.6,
            "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None}


def run_train_many(args: argparse.Namespace, n_networks: int = 8, n_rows: int = 5000) -> Record:
    """cyprop.train_many on one thread and on two: n_networks [784, 100, 10] networks, two
    epochs at batch size 32 each; the speed-up of two threads (target 1.6 on two cores)."""
    import cyprop
    X, y = make_data("W3", n_rows)
    X, y = X[:n_rows], y[:n_rows]

    def build(i: int) -> Network:
        return cyprop.Network([784, 100, 10], seed=i)

    def timed(n_threads: int) -> float:
        start = time.perf_counter()
        cyprop.train_many(build, X, y, n_networks, n_threads=n_threads, epochs=2,
                          batch_size=32, optimizer=cyprop.SGD(learning_rate=LEARNING_RATE))
        return time.perf_counter() - start

    timed(1)  # warm-up
    one, two = [], []
    for _ in range(max(3, args.repeats // 2)):  # interleaved, as in run_threads
        one.append(timed(1))
        two.append(timed(2))
    speedup = statistics.median(one) / statistics.median(two)
    best = min(one) / min(two)
    print(f"  train_many, {n_networks} networks [784, 100, 10] on {n_rows} samples: one thread "
          f"{statistics.median(one):.3f} s, two {statistics.median(two):.3f} s, speed-up "
          f"{speedup:.2f} (best {best:.2f})", flush=True)
    return {"n_networks": n_networks, "n_samples": n_rows, "one_thread_times": one,
            "two_thread_times": two, "speedup": speedup, "speedup_best": best, "target": 1.6,
            "loadavg_after": os.getloadavg() if hasattr(os, "getloadavg") else None}


# -------------------------------------------------------------------------- large data
LARGEDATA_MODES = ("memory", "memmap", "dask")


def _rss_anon() -> int | None:
    """This process's private (anonymous) resident memory in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _load_rows(path: str, start: int, stop: int) -> np.ndarray:
    """Rows start:stop of a .npy file, as a memory map of them (a Dask chunk's task)."""
    return np.load(path, mmap_mode="r")[start:stop]


def dask_over_file(path: str, chunk_bytes: int = 32 << 20) -> Any:
    """A Dask array over the rows of a .npy file, a task per chunk reading its rows.

    Not ``da.from_array(np.load(path, mmap_mode="r"))``: since Dask 2024.12 that copies
    the whole array into memory first (dask/dask#11850).

    Parameters
    ----------
    path : str
        The .npy file (2-D).
    chunk_bytes : int, default=32 MiB
        About this many bytes of rows per chunk.

    Returns
    -------
    dask.array.Array
        The rows, nothing read yet.
    """
    import dask
    import dask.array as da

    header = np.load(path, mmap_mode="r")   # shape and dtype only
    n, features = header.shape
    step = max(1, chunk_bytes // (features * header.dtype.itemsize))
    return da.concatenate([
        da.from_delayed(dask.delayed(_load_rows)(path, start, min(start + step, n)),
                        shape=(min(start + step, n) - start, features), dtype=header.dtype)
        for start in range(0, n, step)])


def largedata_child(mode: str, path: str, batch_size: int, sizes: list[int]) -> None:
    """In a child process: one shuffled epoch over the .npy file at ``path`` (in memory,
    as a memory map, or as a Dask array reading the file a chunk at a time); prints a
    JSON line with the samples/s and the growth of private memory during the epoch (its
    peak, sampled), counted for the memory map and Dask from before they are made."""
    import cyprop

    if mode == "memory":
        X = np.array(np.load(path, mmap_mode="r"))   # read whole, before the baseline
    elif mode == "dask":
        import dask.array  # noqa: F401  (its own memory, before the baseline)
    base = None if mode == "memory" else _rss_anon()
    if mode == "memmap":
        X = np.load(path, mmap_mode="r")
    elif mode == "dask":
        X = dask_over_file(path)
    y = np.arange(len(X)) % sizes[-1]
    net = cyprop.Network(sizes, seed=0)
    net.fit(X[:2048], y[:2048], epochs=1, batch_size=batch_size, verbose=0)   # warm-up
    if base is None:
        base = _rss_anon()
    peak = [base or 0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.005):
            peak[0] = max(peak[0], _rss_anon() or 0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    net.fit(X, y, epochs=1, batch_size=batch_size, shuffle=True, seed=1, verbose=0)
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss_anon() or 0)
    print(json.dumps({"mode": mode, "samples_per_second": len(X) / wall,
                      "private_growth_bytes": None if base is None else peak[0] - base}))


def run_largedata(args: argparse.Namespace, n: int = 260_000, features: int = 784,
                  batch_size: int = 64) -> Record:
    """One shuffled epoch over an n x features float64 file on disk (1.6 GB by default)
    from memory, from a memory map and from a Dask array over it (32 MB chunks, each
    read by its task: ``dask_over_file``), each in a child
    process: samples/s and the peak growth of private memory.  Targets: growth under
    400 MB, speed at least 0.7 of the in-memory speed."""
    import tempfile

    sizes = [features, 30, 10]
    folder = tempfile.mkdtemp(prefix="cyprop-largedata-")
    path = os.path.join(folder, "X.npy")
    try:
        X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, features))
        rng = np.random.default_rng(0)
        for i in range(0, n, 10_000):
            X[i:i + 10_000] = rng.standard_normal((min(10_000, n - i), features))
        X.flush()
        del X
        print(f"large data: {n} x {features} float64 ({n * features * 8 / 1e9:.2f} GB) at "
              f"{path}; one shuffled epoch of {sizes} at batch size {batch_size}", flush=True)
        records = []
        for mode in LARGEDATA_MODES:
            if mode == "dask" and not available("dask.array"):
                print("  dask: not installed, skipped", flush=True)
                continue
            done = subprocess.run(
                [sys.executable, "-c", "import sys; from cyprop.bench._suite import "
                 "largedata_child as c; c(sys.argv[1], sys.argv[2], int(sys.argv[3]), "
                 "[int(s) for s in sys.argv[4].split(',')])",
                 mode, path, str(batch_size), ",".join(map(str, sizes))],
                capture_output=True, text=True)
            if done.returncode != 0:
                print(f"  {mode}: failed\n{done.stderr[-2000:]}", flush=True)
                continue
            record = json.loads(done.stdout.strip().splitlines()[-1])
            records.append(record)
        memory = next((r for r in records if r["mode"] == "memory"), None)
        for r in records:
            r["ratio_to_memory"] = (r["samples_per_second"] / memory["samples_per_second"]
                                    if memory else None)
            growth = r["private_growth_bytes"]
            print(f"  {r['mode']:>6}: {fmt_sps(r['samples_per_second'])} samples/s"
                  + (f" ({r['ratio_to_memory']:.2f} of in memory)" if memory else "")
                  + (f", private memory +{growth / 1e6:.0f} MB" if growth is not None else ""),
                  flush=True)
        return {"n_samples": n, "n_features": features, "batch_size": batch_size,
                "sizes": sizes, "records": records,
                "targets": {"private_growth_bytes": 400e6, "ratio_to_memory": 0.7}}
    finally:
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(folder)


# ------------------------------------------------------------------------------ ratios
def lookup(results: list[Record], system: str, variant: str, wl: str,
           bs: int) -> float | None:
    for r in results:
        if (r["system"], r["variant"], r["workload"], r["batch_size"]) == (system, variant, wl, bs):
            return r["sps_med"]
    return None


def div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def compute_ratios(results: list[Record], workloads: list[str], batch_sizes: list[int],
                   threads: list[int]) -> dict[str, dict[str, Any]]:
    """Ratios of samples/s within this run, keyed "W2/bs=10" etc.  Every comparison is
    at one dtype and one thread count: cyprop's compiled core against each of the others
    (the NumPy reference, PyTorch, scikit-learn) and the best of them, given the same
    threads, and at bs=1 against the plain-C baseline."""
    cy = lambda v, wl, bs: lookup(results, "cyprop-cython", v, wl, bs)  # noqa: E731
    ratios: dict[str, dict[str, Any]]
    ratios = {"cython_f32_over_cython_f64": {}, "cython_bs1_over_c_baseline": {},
              "cython_over_peer": {}, "cython_over_best_peer": {}, "thread_scaling": {}}
    peers = [r for r in results if r["system"] in PEER_NAMES]
    for wl in workloads:
        for bs in batch_sizes:
            key = f"{wl}/bs={bs}"
            ratios["cython_f32_over_cython_f64"][key] = div(cy("f32 1thr", wl, bs),
                                                            cy("f64 1thr", wl, bs))
            for t in ([1] if bs == 1 else threads):
                for short in ("f64", "f32"):
                    variant = f"{short} {t}thr"
                    mine = cy(variant, wl, bs)
                    here = [r for r in peers if (r["workload"], r["batch_size"], r["variant"])
                            == (wl, bs, variant)]
                    if not here or mine is None:
                        continue
                    for r in here:
                        ratios["cython_over_peer"].setdefault(r["system"], {}).setdefault(
                            variant, {})[key] = mine / r["sps_med"]
                    best = max(here, key=lambda r: r["sps_med"])
                    ratios["cython_over_best_peer"].setdefault(variant, {})[key] = {
                        "peer": label(best), "peer_sps": best["sps_med"],
                        "cython_sps": mine, "ratio": mine / best["sps_med"]}
            if bs > 1:
                for t in threads[1:]:
                    ratios["thread_scaling"].setdefault(f"{t}thr/1thr", {})[key] = div(
                        cy(f"f64 {t}thr", wl, bs), cy("f64 1thr", wl, bs))
        if 1 in batch_sizes:
            entry: dict[str, Record] = {}
            for short in ("f64", "f32"):
                for build in _baseline.BUILDS:
                    c = lookup(results, C_SYSTEM, f"{short} {build}", wl, 1)
                    ours = cy(f"{short} 1thr", wl, 1)
                    if c is not None and ours is not None:
                        entry[f"{short}_vs_{build}"] = {"cython_sps": ours, "c_sps": c,
                                                       "ratio": ours / c}
            if entry:
                ratios["cython_bs1_over_c_baseline"][wl] = entry
    return ratios


# ------------------------------------------------------------------------------ output
def print_tables(report: Record, workloads: list[str], batch_sizes: list[int]) -> None:
    results, ratios, cfg = report["results"], report["ratios"], report["config"]
    print("\n" + "=" * 78)
    print(f"Training throughput, samples/s: one epoch, median of {cfg['repeats']} after a warm-up.")
    print(f"* = measured on the first {cfg['max_samples_slow']} samples (slow systems at bs=1); "
          "still samples/s.")
    for wl in workloads:
        rows = [r for r in results if r["workload"] == wl]
        if not rows:
            continue
        print(f"\n{wl} {WORKLOADS[wl]}  ({cfg['n_samples'][wl]} samples"
              f"{', ' + cfg['w1_data'] if wl == 'W1' else ', random uniform [0,1)'})")
        print(f"  {'system':<28}" + "".join(f"{'bs=' + str(bs):>11}" for bs in batch_sizes))
        for name in dict.fromkeys(label(r) for r in rows):
            cells = []
            for bs in batch_sizes:
                hit = [r for r in rows if label(r) == name and r["batch_size"] == bs]
                cells.append(fmt_sps(hit[0]["sps_med"]) + ("*" if hit[0]["limited"] else " ")
                             if hit else "- ")
            print(f"  {name:<28}" + "".join(f"{c:>11}" for c in cells))

    short = [r for r in results if r["repeats"] < cfg["repeats"] and r["system"] != C_SYSTEM]
    if short:
        print(f"\nFewer repeats than {cfg['repeats']} (point over the "
              f"{cfg['point_budget']:.0f} s budget): "
              + ", ".join(f"{label(r)} {r['workload']} bs={r['batch_size']} ({r['repeats']})"
                          for r in short))

    keys = [f"{wl}/bs={bs}" for wl in workloads for bs in batch_sizes]
    best = ratios["cython_over_best_peer"]
    rows = [("cython f32 / cython f64, 1thr", ratios["cython_f32_over_cython_f64"])]
    for system, name in PEER_NAMES.items():
        rows += [(f"cython / {name}, {v}", vals)
                 for v, vals in ratios["cython_over_peer"].get(system, {}).items()]
    if len(ratios["cython_over_peer"]) > 1:
        rows += [(f"cython / best peer, {v}", {k: e["ratio"] for k, e in best[v].items()})
                 for v in best]
    rows += [(f"cython f64 {v}", vals) for v, vals in ratios["thread_scaling"].items()]
    rows = [(title, vals) for title, vals in rows if any(vals.get(k) is not None for k in keys)]
    if rows:
        print("\nRatios of samples/s (same run; > 1: cyprop's compiled core is faster), each at "
              "one dtype and thread count")
        width = max(len(title) for title, _ in rows) + 1
        print(f"  {'':<{width}}" + "".join(f"{k.replace('/bs=', '/'):>8}" for k in keys))
        for title, vals in rows:
            print(f"  {title:<{width}}" + "".join(
                f"{'-' if vals.get(k) is None else format(vals[k], '.2f'):>8}" for k in keys))
    if len(ratios["cython_over_peer"]) > 1:
        for v, entries in best.items():
            print(f"  best peer, {v}: " + ", ".join(
                f"{k.replace('/bs=', '/')} {e['peer'].split(' ')[0]} {fmt_sps(e['peer_sps'])}"
                for k, e in entries.items()))
    c_ratios = ratios["cython_bs1_over_c_baseline"]
    if c_ratios:
        print("\ncyprop's compiled core at bs=1 / the plain-C baseline (samples/s; 1.0 = as fast "
              "as C, > 1: faster)")
        for wl, entry in c_ratios.items():
            parts = [f"{k.split('_vs_')[0]} vs C {' '.join(_baseline.BUILDS[k.split('_vs_')[1]])} "
                     f"{v['ratio']:.2f}" for k, v in entry.items()]
            print(f"  {wl}: " + ",  ".join(parts))
    if report.get("inference"):
        print(f"\nInference: cython net.forward vs one NumPy matrix-product chain, "
              f"{report['inference'][0]['n_samples']} samples (time ratio; < 1: cython faster)")
        for r in report["inference"]:
            print(f"  {r['workload']} {SHORT_DTYPE[r['dtype']]}: cython "
                  f"{r['cython_seconds'] * 1e3:7.2f} ms  numpy {r['numpy_seconds'] * 1e3:7.2f} ms"
                  f"  ratio {r['ratio_time_cython_over_numpy']:.2f}"
                  f"  (max |diff| {r['max_abs_diff']:.1e})")
    if report.get("gemm_share"):
        r0 = report["gemm_share"][0]
        print(f"\nMini-batches (bs={r0['batch_size']}, 1 thread) against the batch's matrix "
              "products alone (SciPy's BLAS, same shapes): fraction of their samples/s")
        for r in report["gemm_share"]:
            print(f"  {r['workload']} {SHORT_DTYPE[r['dtype']]}: {r['fraction']:.2f}  "
                  f"(cyprop {r['cython_gflops']:.1f} GFLOP/s, the products alone "
                  f"{r['gemm_gflops']:.1f})")
    t = report.get("threads")
    if t:
        verdict = "meets" if t["ratio_threaded_over_sequential"] <= t["target"] else "misses"
        print(f"\nTwo threads (W2, bs=1, {t['n_samples']} samples each): threaded / sequential "
              f"wall time {t['ratio_threaded_over_sequential']:.2f} ({verdict} the target "
              f"<= {t['target']}; fastest/fastest {t['ratio_best_over_best']:.2f})")
        load = (f", load average {t['loadavg_after'][0]:.1f} on "
                f"{report['machine'].get('usable_cpus', '?')} cpus" if t["loadavg_after"] else "")
        print(f"  CPU/wall while threaded {statistics.median(t['threaded_cpu_over_wall']):.2f} "
              f"(2.0: both threads ran at once){load}")
    t = report.get("train_many")
    if t:
        verdict = "meets" if t["speedup"] >= t["target"] else "misses"
        print(f"train_many ({t['n_networks']} networks): two threads / one, speed-up "
              f"{t['speedup']:.2f} ({verdict} the target >= {t['target']}; fastest/fastest "
              f"{t['speedup_best']:.2f})")


def plot(report: Record, workloads: list[str], batch_sizes: list[int], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("--plot: matplotlib is not installed (pip install matplotlib); no plot written.")
        return
    names = list(dict.fromkeys(label(r) for r in report["results"]))
    colours = {n: plt.get_cmap("tab20")(i % 20) for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4.2), squeeze=False)
    for ax, wl in zip(axes[0], workloads):
        rows = [r for r in report["results"] if r["workload"] == wl]
        for name in dict.fromkeys(label(r) for r in rows):
            pts = sorted((r["batch_size"], r["sps_med"]) for r in rows if label(r) == name)
            yard = name.startswith(C_SYSTEM)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="*" if yard else "o",
                    markersize=10 if yard else 6, color=colours[name], label=name,
                    linestyle="none" if len(pts) == 1 else "-")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(batch_sizes)
        ax.set_xticklabels([str(b) for b in batch_sizes])
        ax.set_xlabel("batch size")
        ax.set_ylabel("samples/s")
        ax.set_title(f"{wl} {WORKLOADS[wl]}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"plot written to {path}")


# ----------------------------------------------------------------------- machine info
def threadpools() -> list[Record] | None:
    """BLAS / OpenMP thread pools loaded now (threadpoolctl, if installed)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return [{k: p.get(k) for k in ("internal_api", "num_threads", "version", "filepath")}
            for p in threadpool_info()]


def machine_info() -> Record:
    info: Record
    info = {"cpu_model": None, "cpu_flags_simd": [], "logical_cpus": os.cpu_count(),
            "platform": platform.platform(), "python": sys.version.split()[0],
            "numpy": np.__version__,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
        info["loadavg"] = os.getloadavg()
    except (AttributeError, OSError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and info["cpu_model"] is None:
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    info["cpu_flags_simd"] = [x for x in ("sse2", "avx", "avx2", "fma",
                                                          "avx512f") if x in flags]
                    break
    except OSError:
        pass
    for mod, dist in (("cyprop", "cyprop"), ("torch", "torch"), ("sklearn", "scikit-learn"),
                      ("threadpoolctl", "threadpoolctl"), ("matplotlib", "matplotlib")):
        try:  # the installed version, without importing the package
            info[mod] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            info[mod] = None
    try:
        import cyprop
        info["cyprop"] = cyprop.__version__
        info["cyprop_backends"] = list(cyprop.available_backends())
        config = cyprop.config()
        info["cyprop_kernel"], info["cyprop_blas"] = config.get("kernel"), config.get("blas")
    except ImportError:
        pass
    repo = source_checkout()
    if repo is not None:  # an editable install: record the commit measured
        try:
            git = ["git", "-C", str(repo)]
            info["git_commit"] = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True,
                                                text=True).stdout.strip() or None
            info["git_dirty"] = bool(subprocess.run(
                git + ["status", "--porcelain", "src", "csrc"], capture_output=True,
                text=True).stdout.strip())
        except OSError:
            pass
    return info


def source_checkout() -> Path | None:
    """The repository cyprop is imported from (an editable install), or None."""
    root = Path(__file__).resolve().parents[3]           # <repo>/src/cyprop/bench/
    return root if (root / ".git").exists() and (root / "csrc").is_dir() else None


# -------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None, prog: str | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Each of these replaces the systems' run; given together, all but one were
    # silently dropped.
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--optimizers", action="store_true",
                   help="instead of the systems: one epoch at batch size 1 with each optimizer "
                        "(the compiled core, --dtypes), as a fraction of plain SGD")
    modes.add_argument("--largedata", action="store_true",
                   help="instead of the systems: one shuffled epoch over a 1.6 GB float64 file "
                        "in memory, as a memory map and as a Dask array (child processes; "
                        "samples/s and growth of private memory)")
    modes.add_argument("--one-row", action="store_true",
                   help="instead of the systems: the time per call of forward, predict and "
                        "partial_fit on one row of W1 (as (1, n) and (n,)), of PyTorch's and "
                        "scikit-learn's equivalents, and of NumPy's one-row forward chain")
    p.add_argument("--quick", action="store_true",
                   help="a short run (about half a minute): workloads W1,W2, batch sizes 1,10, "
                        "float64, 5 repeats, 5000 samples (1000 for the slow systems at bs=1), "
                        "one thread, systems cython,numpy,c,torch,sklearn; options given "
                        "as well win")
    p.add_argument("--workloads", default=None, help="comma list of W1,W2,W3 (all)")
    p.add_argument("--batch-sizes", default=None, help="comma list (1,10,128)")
    p.add_argument("--systems", default=None,
                   help=f"comma list of {','.join(SYSTEMS)} (all; 'c' is the plain-C "
                        "baseline; peers that are not installed are skipped)")
    p.add_argument("--dtypes", default=None,
                   help="comma list of float64,float32 for cyprop's compiled core, PyTorch "
                        "and the C baseline (both; the NumPy reference and scikit-learn "
                        "always run float64)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed epochs after the warm-up (5)")
    p.add_argument("--samples", type=int, default=None,
                   help="samples for W2/W3, inference and the thread test (10000); W1 uses "
                        "its 1797 digits, or fewer")
    p.add_argument("--max-samples-slow", type=int, default=None,
                   help="samples used by the numpy backend, torch and sklearn at bs=1 "
                        "(2000; 0 = all)")
    p.add_argument("--json", default=None, metavar="PATH.json",
                   help="write the raw numbers here: machine, settings, every measurement, "
                        "the ratios")
    p.add_argument("--plot", default=None, metavar="PATH.png",
                   help="write a throughput plot (needs matplotlib)")
    p.add_argument("--point-budget", type=float, default=30.0, metavar="SECONDS",
                   help="stop repeating a system at a point after 3 timed epochs once it has "
                        "spent this much time there; the others go on (30; 0 = never)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS/OpenMP threads (threadpoolctl) for the whole run: 1 by default, "
                        "like cyprop's single-threaded core (0 = the libraries' defaults, "
                        "which collapse on a busy 2-core machine)")
    p.add_argument("--threads", default=None,
                   help="comma list of thread counts for every system at batch sizes > 1 "
                        "(default: 1 and the usable cores; bs=1 always runs on 1)")
    p.add_argument("--lbfgs-iter", type=int, default=30,
                   help="iterations of each solver='lbfgs' fit of the estimator comparison "
                        "(system 'estimators'; 30)")
    p.add_argument("--sparse-density", type=float, default=0.05,
                   help="nonzeros of the sparse data of the estimator comparison (0.05)")
    args = p.parse_args(argv)
    defaults = {"workloads": "W1,W2,W3", "batch_sizes": "1,10,128", "systems": ",".join(SYSTEMS),
                "dtypes": "float64,float32", "repeats": 5, "samples": 10000,
                "max_samples_slow": 2000}
    for name, default in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, QUICK[name] if args.quick else default)
    args.workloads = list(dict.fromkeys(
        w.strip().upper() for w in args.workloads.split(",") if w.strip()))
    try:
        args.batch_sizes = list(dict.fromkeys(
            int(b) for b in args.batch_sizes.split(",") if b.strip()))
        threads = args.threads
        if threads is None:
            cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else os.cpu_count() or 1)
            threads = "1" if args.quick or cores == 1 else f"1,{cores}"
        args.threads = sorted({int(t) for t in threads.split(",") if t.strip()})
    except ValueError as exc:
        p.error(f"--batch-sizes and --threads take comma lists of integers ({exc})")
    args.systems = list(dict.fromkeys(
        SYSTEM_ALIASES.get(s.strip().lower(), s.strip().lower())
        for s in args.systems.split(",") if s.strip()))
    long_name = {short: name for name, short in SHORT_DTYPE.items()}
    dtypes = {long_name.get(d.strip().lower(), d.strip().lower())
              for d in args.dtypes.split(",") if d.strip()}
    for d in dtypes - set(SHORT_DTYPE):
        p.error(f"unknown dtype {d!r}; choose from float64, float32")
    args.dtypes = [d for d in SHORT_DTYPE if d in dtypes]
    if not args.threads or args.threads[0] < 1:
        p.error("--threads must be positive")
    for w in args.workloads:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    for s in args.systems:
        if s not in SYSTEMS:
            p.error(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
    if not args.dtypes:
        p.error("--dtypes needs at least one of float64, float32")
    if not args.workloads or not args.batch_sizes or not args.systems:
        p.error("--workloads, --batch-sizes and --systems need at least one entry")
    if args.repeats < 1 or args.samples < 1 or any(b < 1 for b in args.batch_sizes):
        p.error("--repeats, --samples and batch sizes must be positive")
    if args.max_samples_slow < 0:
        p.error("--max-samples-slow must be 0 (all) or positive")
    if not args.point_budget >= 0:   # (NaN fails it too)
        p.error(f"--point-budget must be 0 (never stop) or a number of seconds, "
                f"got {args.point_budget}")
    if args.blas_threads < 0:
        p.error(f"--blas-threads must be 0 (the libraries' defaults) or positive, "
                f"got {args.blas_threads}")
    if args.lbfgs_iter < 1:
        p.error(f"--lbfgs-iter must be positive, got {args.lbfgs_iter}")
    if not 0 < args.sparse_density <= 1:
        p.error(f"--sparse-density must be a fraction in (0, 1], got {args.sparse_density}")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None:
            _check_output(p, flag, path)
    from cyprop._archive import same_file   # (cyprop is imported where it is used)

    if args.json and args.plot and same_file(args.json, args.plot):
        p.error(f"--json {args.json!r} and --plot {args.plot!r} name the same file: the "
                "numbers would be written over the plot; give two names")
    if args.plot is not None:
        _check_plot_format(p, args.plot)
    return args


def _check_plot_format(p: argparse.ArgumentParser, path: str) -> None:
    """Refuse before the run a --plot file matplotlib cannot write: at the end it
    failed there, after the whole run, and before the --json file was written."""
    extension = os.path.splitext(path)[1][1:].lower()
    if not extension:
        return   # matplotlib writes its default format, png
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return   # the run says at its end that no plot was written
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    if extension not in formats:
        p.error(f"--plot {path!r}: matplotlib cannot write .{extension} files; use one "
                f"of {', '.join('.' + f for f in formats)}")


def _check_output(p: argparse.ArgumentParser, flag: str, path: str) -> None:
    """Refuse, before a run that may take many minutes, a file it could not write at
    its end (its folders are created then, so a missing one is fine)."""
    if not path or path.endswith(("/", os.sep)):
        p.error(f"{flag} needs a file name, got {path!r}")
    target = Path(path).absolute()
    if target.exists() and not target.is_file():   # a folder, or a FIFO that would block
        p.error(f"{flag} {path!r} exists and is not a file to write")
    folder = target.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        p.error(f"{flag} {path!r}: {str(folder)!r} is not a folder")
    if not os.access(folder if not target.exists() else target, os.W_OK):
        p.error(f"{flag} {path!r} is not writable")


def available(module: str) -> bool:
    """Whether ``module`` imports (a peer that is missing or broken is skipped)."""
    try:
        __import__(module)
        return True
    except Exception:  # noqa: BLE001 - ImportError, or OSError from a broken install
        return False


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmark suite, as ``cyprop bench`` does.

    Parameters
    ----------
    argv : sequence of str, optional
        The command-line arguments (``cyprop bench --help`` lists them); by default
        ``sys.argv[1:]``.
    prog : str, optional
        The command's name in the usage line.

    Returns
    -------
    int
        The exit status, 0 (argparse exits on a usage error or ``--help``).
    """
    args = parse_args(argv, prog=prog)
    args.t_start = time.perf_counter()  # imports count: an editable install may rebuild here
    # Load every library first, so that threadpoolctl sees (and limits) their thread pools.
    if "torch" in args.systems:
        available("torch")
    if "sklearn" in args.systems or "estimators" in args.systems:
        available("sklearn.neural_network")
    if not args.blas_threads:
        run(args)
        return 0
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # said in the report's first line
        args.blas_threads, args.blas_note = None, " (threadpoolctl is not installed)"
        run(args)
        return 0
    with threadpool_limits(limits=args.blas_threads):
        run(args)
    return 0


def skip(report: Record, note: str) -> None:
    print(f"  skipped: {note}", flush=True)
    report["skipped"].append(note)


def run_systems(data: DataSets, args: argparse.Namespace, report: Record) -> list[Record]:
    """The training systems and the C baseline that --systems asks for, each point's
    systems timed in turn (``run_training``); a system that is missing is skipped,
    saying so."""
    if any(system in TRAINERS for system in args.systems):
        print("training: each point's systems in turn", flush=True)
    prepares: list[Prepare] = []
    for system, (module, prepare, title) in TRAINERS.items():
        if system not in args.systems:
            continue
        if system == "cython" and "cython" not in report["machine"].get("cyprop_backends", ()):
            skip(report, "cython: cyprop's compiled core is not available here")
        elif not (setup_jax(args) if system == "jax" else available(module)):
            skip(report, f"{system}: not installed")
        else:
            print(f"  {title}", flush=True)
            prepares.append(prepare)
    with contextlib.ExitStack() as stack:
        c_baseline: Callable[[str, str, int], list[Record]] | None = None
        if "c" in args.systems:
            print("plain-C baseline (online SGD, bs=1), after each point at bs=1", flush=True)
            if 1 not in args.batch_sizes:
                skip(report, "C baseline: it runs at batch size 1 only, which was not asked for")
            else:
                baseline = start_c_baseline(stack, args, report)
                c_baseline = lambda wl, dtype, n: run_c_baseline(   # noqa: E731
                    baseline, wl, dtype, n, args, report)
        return run_training(data, prepares, args, c_baseline)


def run(args: argparse.Namespace) -> Record:
    """Measure what ``args`` asks for, print the report, write the JSON and the plot;
    returns the report (a dict, as written to the JSON)."""
    t_start = args.t_start
    data = {wl: make_data(wl, args.samples) for wl in args.workloads}
    report: Record
    report = {"machine": machine_info(),
              "config": {"workloads": args.workloads, "batch_sizes": args.batch_sizes,
                         "systems": args.systems, "dtypes": args.dtypes,
                         "repeats": args.repeats, "samples": args.samples,
                         "max_samples_slow": args.max_samples_slow, "quick": args.quick,
                         "learning_rate": LEARNING_RATE, "point_budget": args.point_budget,
                         "blas_threads": args.blas_threads, "threads": args.threads,
                         "w1_data": w1_source(),
                         "n_samples": {wl: len(X) for wl, (X, _) in data.items()}},
              "results": [], "skipped": []}
    m = report["machine"]
    load = f"{m['loadavg'][0]:.1f}" if m.get("loadavg") else "?"
    print(f"cyprop {m['cyprop']} | {m['cpu_model']} ({m.get('usable_cpus', m['logical_cpus'])} "
          f"cpus, load {load}) | numpy {m['numpy']} torch {m['torch']} "
          f"sklearn {m['sklearn']} | BLAS/OpenMP threads: "
          f"{args.blas_threads or 'library defaults'}{getattr(args, 'blas_note', '')}",
          flush=True)
    if m.get("cyprop_kernel"):
        print(f"cyprop's compiled core: {m['cyprop_kernel']} kernel, BLAS "
              f"{m.get('cyprop_blas')}", flush=True)

    results = report["results"]
    if args.largedata:
        report["largedata"] = run_largedata(args)
        return finish(report, args, t_start)
    if args.one_row:
        from ._one_row import run_one_row   # (imports this module)
        print("one-row calls on W1: time per call", flush=True)
        report["one_row"] = run_one_row(args)
        return finish(report, args, t_start)
    if args.optimizers:
        print("cyprop, compiled core: each optimizer at batch size 1", flush=True)
        results += run_optimizers(data, args.dtypes, args)
        print_optimizer_table(results, args.workloads)
        report["ratios"] = {"optimizer_bs1_over_sgd": {
            f"{r['workload']}/{r['variant']}": r["ratio_to_sgd"] for r in results}}
        return finish(report, args, t_start)
    results += run_systems(data, args, report)
    if "estimators" in args.systems:
        print("scikit-learn estimators: cyprop.sklearn against scikit-learn", flush=True)
        if available("sklearn.neural_network") and available("scipy.sparse"):
            with blas_limited(1):
                report["estimators"] = run_estimators(data, args)
        else:
            skip(report, "estimators: scikit-learn or scipy not installed")
    if "cython" in args.systems and "cython" in m.get("cyprop_backends", ()):
        print("inference", flush=True)
        report["inference"] = run_inference(args.workloads, args.samples, args.dtypes, args)
        largest = max(args.batch_sizes)
        if largest > 1 and available("scipy.linalg"):
            report["gemm_share"] = run_gemm_share(results, args.workloads, args.dtypes,
                                                  largest, args.repeats)
        print("thread test", flush=True)
        X2, y2 = data["W2"] if "W2" in data else make_data("W2", args.samples)
        report["threads"] = run_threads(X2, y2, args)
        if not args.quick and (os.cpu_count() or 1) >= 2:
            print("train_many on one and two threads", flush=True)
            report["train_many"] = run_train_many(args)

    report["ratios"] = compute_ratios(results, args.workloads, args.batch_sizes, args.threads)
    print_tables(report, args.workloads, args.batch_sizes)
    if report.get("estimators"):
        print_estimators(report["estimators"])
    if report["skipped"]:
        print()
    for note in report["skipped"]:
        print(f"skipped: {note}")
    if args.plot:
        plot(report, args.workloads, args.batch_sizes, args.plot)
    return finish(report, args, t_start)


def finish(report: Record, args: argparse.Namespace, t_start: float) -> Record:
    """Write the raw numbers (--json); the report."""
    report["machine"]["threadpools"] = threadpools()
    report["elapsed_seconds"] = time.perf_counter() - t_start
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
        print(f"\nraw numbers written to {path}")
    print(f"elapsed {time.perf_counter() - t_start:.1f} s")
    return report
