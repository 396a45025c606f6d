"""Hyperparameter searches on a cluster: Dask and Ray
==================================================

The same GridSearchCV runs three times: serially here, on a local dask.distributed cluster
of 2 worker processes (joblib's "dask" backend) and on a local Ray instance with 2 CPUs
(ray.util.joblib's "ray" backend); the script prints each run's time, best parameters and
whether its scores equal the serial run's. An engine that is not installed is skipped, and
the script says so::

    pip install "fastbp[cluster]"        # dask[distributed], ray, scikit-learn
    python examples/cluster_search.py    # about a minute on 2 cores

No fastbp-specific code is needed on either engine. Threads: leave ``n_threads=None``, and
a fit running as a Dask or Ray task uses that task's share of its worker
(``fastbp._config.engine_threads``): on Dask one thread per task, since a worker with
``nthreads`` threads runs that many tasks at once (a task submitted with
``resources={"CPU": c}`` gets c), on Ray the task's ``num_cpus`` (1 in ray.util.joblib's
pool). So the fits never oversubscribe a worker, and, fastbp being deterministic per
(seed, thread count), a search gives the same numbers as the serial one run on one thread.

Against a real cluster, only the connection changes: ``Client("tcp://scheduler:8786")``
instead of ``Client(LocalCluster(...))``, ``ray.init(address="auto")`` instead of
``ray.init(num_cpus=2)``; fastbp and scikit-learn must be installed on the workers.
"""
import time
import warnings

import joblib
import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, ParameterGrid

import fastbp
from fastbp.datasets import load_digits
from fastbp.sklearn import MLPClassifier

GRID = {"hidden_layer_sizes": [(32,), (64,)], "alpha": [1e-4, 1e-2],
        "activation": ["relu", "gelu"]}


def make_search(n_jobs):
    return GridSearchCV(MLPClassifier(max_iter=60, random_state=0), GRID, cv=3, n_jobs=n_jobs)


def report(name, search, seconds, reference=None):
    same = ""
    if reference is not None:
        equal = np.array_equal(search.cv_results_["mean_test_score"],
                               reference.cv_results_["mean_test_score"])
        same = f"; scores {'equal' if equal else 'DIFFER FROM'} the serial run's"
    print(f"{name:>7}: {seconds:5.1f} s, best {search.best_params_} "
          f"(cv accuracy {search.best_score_:.4f}){same}")


def run_dask(X, y, reference):
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        print("   dask: not installed (pip install 'dask[distributed]'), skipped")
        return
    t0 = time.perf_counter()
    # 2 worker processes of 1 thread each: every fit gets 1 thread (its share of a worker)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        started = time.perf_counter() - t0
        print(f"   dask: {client} (started in {started:.1f} s); each task gets "
              f"{client.submit(fastbp.get_num_threads).result()} thread(s)")
        search = make_search(n_jobs=-1)
        t0 = time.perf_counter()
        # scatter=[X, y]: X and y sent once to every worker, so they survive a worker lost
        # mid-search (the scheduler then reruns its tasks elsewhere)
        with joblib.parallel_backend("dask", scatter=[X, y]), fastbp.num_threads(1):
            search.fit(X, y)          # the refit of best_estimator_ runs here, on 1 thread
        report("dask", search, time.perf_counter() - t0, reference)


def run_ray(X, y, reference):
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        print("    ray: not installed (pip install ray), skipped")
        return
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        register_ray()
        print(f"    ray: local instance with 2 CPUs (started in {time.perf_counter() - t0:.1f} s);"
              f" a task with num_cpus=2 gets "
              f"{ray.get(ray.remote(num_cpus=2)(fastbp.get_num_threads).remote())} thread(s)")
        search = make_search(n_jobs=-1)
        t0 = time.perf_counter()
        with joblib.parallel_backend("ray"), fastbp.num_threads(1):
            search.fit(X, y)          # 2 pool actors, each fit on 1 thread
        report("ray", search, time.perf_counter() - t0, reference)
    finally:
        ray.shutdown()


def main():
    X, y = load_digits(dtype="float64")
    X, y = X[:1200], y[:1200]
    n_fits = len(ParameterGrid(GRID)) * 3
    print(f"GridSearchCV over {GRID}: {n_fits} fits of 1200 digits")
    warnings.simplefilter("ignore", ConvergenceWarning)
    search = make_search(n_jobs=1)
    t0 = time.perf_counter()
    with fastbp.num_threads(1):
        search.fit(X, y)
    report("serial", search, time.perf_counter() - t0)
    run_dask(X, y, search)
    run_ray(X, y, search)


if __name__ == "__main__":     # needed: Dask starts its workers by spawning this script
    main()
