"""
Hyperparameter search with joblib
=================================

Hyperparameter search over fastbp estimators with joblib: one machine or a cluster.

``fastbp.sklearn.MLPClassifier`` is a scikit-learn estimator (picklable, cloneable), so
scikit-learn's searches run it unchanged, and the fits fan out through joblib. This script
searches hidden layer sizes, activation (including fastbp-only ones such as ``gelu``),
``alpha`` and the learning rate of a digits classifier with ``GridSearchCV``, using
joblib's ``loky`` backend (worker processes on this machine)::

    python examples/hyperparameter_search.py            # full grid
    python examples/hyperparameter_search.py --quick    # a small grid (seconds)
    python examples/hyperparameter_search.py --n-jobs 4

``FASTBP_EXAMPLES_QUICK=1`` (set by the documentation build) is ``--quick``.

Scaling out needs no fastbp-specific code: the same search runs on a cluster by choosing
another joblib backend around ``search.fit`` (``--backend dask`` / ``--backend ray`` below):

* Dask (``pip install dask distributed``)::

      from dask.distributed import Client
      client = Client("tcp://scheduler:8786")      # or Client() for a local cluster
      with joblib.parallel_backend("dask"):
          search.fit(X, y)

* Ray (``pip install ray``)::

      import ray
      from ray.util.joblib import register_ray
      ray.init(address="auto")
      register_ray()
      with joblib.parallel_backend("ray"):
          search.fit(X, y)

Each worker process gets fastbp's estimator by pickle, so fastbp (and scikit-learn) must be
installed on the workers. Threads: every fit uses ``n_threads`` threads; leave it ``None``
and fastbp follows ``OMP_NUM_THREADS``, which joblib's loky sets to
``cores // n_jobs`` in its workers, so the fits don't oversubscribe the cores; on Dask or
Ray workers it uses the task's share of the worker (see ``examples/cluster_search.py``).
"""
import argparse
import os
import time
import warnings

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastbp.datasets import load_digits
from fastbp.sklearn import MLPClassifier


def make_search(quick=False, n_jobs=2):
    pipe = make_pipeline(StandardScaler(),
                         MLPClassifier(max_iter=80 if quick else 200, early_stopping=not quick,
                                       random_state=0))
    if quick:
        grid = {"mlpclassifier__hidden_layer_sizes": [(32,), (64,)],
                "mlpclassifier__activation": ["relu", "gelu"]}
    else:
        grid = {"mlpclassifier__hidden_layer_sizes": [(64,), (128,), (64, 64)],
                "mlpclassifier__activation": ["relu", "tanh", "gelu"],
                "mlpclassifier__alpha": [1e-4, 1e-2],
                "mlpclassifier__learning_rate_init": [1e-3, 3e-3]}
    return GridSearchCV(pipe, grid, cv=3, n_jobs=n_jobs)


def main(quick=False, n_jobs=2, backend="loky", scheduler=None):
    X, y = load_digits()
    if quick:
        X, y = X[:900], y[:900]
    search = make_search(quick=quick, n_jobs=n_jobs)
    if backend == "dask":   # pragma: no cover - needs a Dask installation
        from dask.distributed import Client
        client = Client(scheduler) if scheduler else Client()
        print(f"dask: {client}")
    elif backend == "ray":   # pragma: no cover - needs a Ray installation
        import ray
        from ray.util.joblib import register_ray
        ray.init(address=scheduler)
        register_ray()
    t0 = time.perf_counter()
    with joblib.parallel_backend(backend, n_jobs=n_jobs), warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=ConvergenceWarning)
        search.fit(X, y)
    dt = time.perf_counter() - t0
    res = search.cv_results_
    order = np.argsort(res["rank_test_score"])
    n_fits = len(res["params"]) * search.n_splits_
    print(f"{len(res['params'])} settings x {search.n_splits_} folds = {n_fits} fits "
          f"on {backend} with n_jobs={n_jobs}: {dt:.1f} s")
    print(f"{'rank':>4}  {'accuracy':>14}  {'fit s':>6}  params")
    for i in order[:10]:
        params = {k.split("__")[1]: v for k, v in res["params"][i].items()}
        print(f"{res['rank_test_score'][i]:>4}  {res['mean_test_score'][i]:.4f} "
              f"± {res['std_test_score'][i]:.4f}  {res['mean_fit_time'][i]:6.2f}  {params}")
    best = {k.split("__")[1]: v for k, v in search.best_params_.items()}
    print(f"best: {best} (cv accuracy {search.best_score_:.4f})")
    return search


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small grid on 900 samples")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--backend", default="loky", choices=["loky", "dask", "ray"])
    ap.add_argument("--scheduler", default=None,
                    help="Dask scheduler address / Ray cluster address (default: local)")
    args = ap.parse_args()
    main(quick=args.quick or os.environ.get("FASTBP_EXAMPLES_QUICK") == "1", n_jobs=args.n_jobs, backend=args.backend, scheduler=args.scheduler)
