"""A grid search over cyprop networks, run by a Dask cluster through joblib.

scikit-learn's GridSearchCV hands its fits to joblib; under
``joblib.parallel_backend("dask")`` joblib hands them to the Dask scheduler, which
runs them on its workers -- local processes here, or the machines of a real cluster
when ``--scheduler`` names one.  Each fit is an independent ``BackpropClassifier``
(the estimator is pickled to the worker, fitted there, and its score sent back).

Run it (needs ``pip install "cyprop[sklearn,dask]"``)::

    python examples/dask_grid_search.py                  # a LocalCluster of 2 processes
    python examples/dask_grid_search.py --threads        # 2 threads in this process
    python examples/dask_grid_search.py --scheduler tcp://scheduler-host:8786   # a running cluster

The local cluster listens on 127.0.0.1 only, with no dashboard.

Ray instead of Dask: joblib has a Ray backend too.  Replace the cluster and the
``parallel_backend("dask")`` block below with::

    import ray
    from ray.util.joblib import register_ray

    ray.init()                     # or ray.init(address="auto") on a Ray cluster
    register_ray()
    with joblib.parallel_backend("ray"):
        search.fit(X_train, y_train)
"""

import argparse
import time
import warnings

import joblib
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cyprop.sklearn import BackpropClassifier


def make_search():
    """A small grid: 2 layer sizes x 2 penalties x 3 folds = 12 fits."""
    # n_threads=1: each worker runs one fit at a time on one core, so a fit needs no
    # OpenMP threads of its own (they would only compete with the other workers).
    pipe = Pipeline([
        ("scale", StandardScaler()),
        ("mlp", BackpropClassifier(max_iter=40, learning_rate_init=0.01, n_threads=1,
                                   random_state=0)),
    ])
    grid = {"mlp__hidden_layer_sizes": [(32,), (64,)], "mlp__alpha": [1e-4, 1e-1]}
    return GridSearchCV(pipe, grid, cv=3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="local workers (default 2)")
    parser.add_argument("--threads", action="store_true",
                        help="local workers as threads of this process, not processes")
    parser.add_argument("--scheduler", help="address of a running Dask scheduler to use "
                                            "instead of a local cluster")
    args = parser.parse_args(argv)

    from dask.distributed import Client, LocalCluster

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
    search = make_search()

    if args.scheduler:
        client, cluster = Client(args.scheduler), None
    else:
        # Loopback only, no dashboard; TCP even for thread workers, so the estimators
        # travel pickled as they would to another machine.
        cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1,
                               processes=not args.threads, protocol="tcp", host="127.0.0.1",
                               dashboard_address=None)
        client = Client(cluster)
    try:
        print(f"Dask cluster: {len(client.scheduler_info()['workers'])} workers")
        began = time.perf_counter()
        with joblib.parallel_backend("dask"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(X_train, y_train)
        seconds = time.perf_counter() - began
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

    n_fits = len(search.cv_results_["params"]) * search.n_splits_
    print(f"{n_fits} fits in {seconds:.1f} s")
    print(f"best params: {search.best_params_}")
    print(f"best cross-validation accuracy: {search.best_score_:.4f}")
    print(f"test accuracy: {search.score(X_test, y_test):.4f}")
    return search


if __name__ == "__main__":   # needed: local worker processes import this file
    main()
