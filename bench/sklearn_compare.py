"""fastbp.sklearn vs scikit-learn: fit time and test accuracy, same run, same settings.

    python bench/sklearn_compare.py             # full run (a few minutes on 2 cores)
    python bench/sklearn_compare.py --quick     # smoke test (smaller data, fewer epochs)

Both sides are the drop-in estimators (``sklearn.neural_network.MLPClassifier`` and
``fastbp.sklearn.MLPClassifier``, same for the regressor) with the same hyperparameters
and ``random_state`` (so the same initial weights). The stochastic solvers run a fixed
number of epochs (``n_iter_no_change`` = max_iter, so ``tol`` never stops them early and
both do the same work); L-BFGS runs until it converges or reaches ``max_iter``, and the
iterations each needed are shown. Each fit is timed with ``time.perf_counter`` around
``fit``; runs of the two libraries alternate (sklearn, fastbp, sklearn, ...) and the table
gives the best of ``--repeats`` fits (all are listed). Threads: "1" limits scikit-learn's BLAS with
threadpoolctl and sets fastbp's ``n_threads=1``; "all" leaves both at their defaults
(every core). The load average before and after each row is recorded because the
machine may be shared.

Datasets: the UCI digits (1797 x 64, 10 classes, standardized, 75/25 stratified split)
and a larger synthetic set (``make_classification``: 60,000 x 100, 10 classes; 80/20
split), plus a synthetic regression (``make_regression``: 20,000 x 50, 3 targets) for
MLPRegressor. Writes ``bench/results/sklearn.md`` (``--out`` to change).
"""
import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
try:
    import fastbp
except ImportError:   # an uninstalled checkout (after build_ext --inplace)
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import fastbp

from fastbp.sklearn import MLPClassifier as FbClassifier, MLPRegressor as FbRegressor  # noqa: E402
import sklearn  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = threadpool_info = None


def datasets(quick):
    out = {}
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    sc = StandardScaler().fit(Xtr)
    out["digits"] = ("digits 1797x64, 10 classes", sc.transform(Xtr), sc.transform(Xte), ytr, yte)
    n = 12000 if quick else 60000
    X, y = make_classification(n_samples=n, n_features=100, n_informative=60, n_redundant=20,
                               n_classes=10, n_clusters_per_class=2, class_sep=1.5,
                               random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0)
    sc = StandardScaler().fit(Xtr)
    out["synthetic"] = (f"make_classification {n:,}x100, 10 classes", sc.transform(Xtr),
                        sc.transform(Xte), ytr, yte)
    n = 5000 if quick else 20000
    X, y = make_regression(n_samples=n, n_features=50, n_informative=30, n_targets=3,
                           noise=5.0, random_state=0)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0)
    sc, sy = StandardScaler().fit(Xtr), StandardScaler().fit(ytr)
    out["regression"] = (f"make_regression {n:,}x50, 3 targets", sc.transform(Xtr),
                         sc.transform(Xte), sy.transform(ytr), sy.transform(yte))
    return out


def configs(quick):
    e_small, e_big = (30, 5) if quick else (100, 20)
    fixed = lambda e: dict(max_iter=e, n_iter_no_change=e + 1, tol=0.0)  # noqa: E731
    return [
        ("digits", "adam", dict(hidden_layer_sizes=(100,), solver="adam", **fixed(e_small))),
        ("digits", "sgd", dict(hidden_layer_sizes=(100,), solver="sgd", learning_rate_init=0.01,
                               **fixed(e_small))),
        ("digits", "lbfgs", dict(hidden_layer_sizes=(100,), solver="lbfgs",
                                 max_iter=50 if quick else 200)),
        ("synthetic", "adam", dict(hidden_layer_sizes=(256, 128), solver="adam",
                                   **fixed(e_big))),
        ("synthetic", "sgd", dict(hidden_layer_sizes=(256, 128), solver="sgd",
                                  learning_rate_init=0.01, **fixed(e_big))),
        ("synthetic", "adam, float32", dict(hidden_layer_sizes=(256, 128), solver="adam",
                                            **fixed(e_big))),
        ("synthetic", "lbfgs", dict(hidden_layer_sizes=(256, 128), solver="lbfgs",
                                    max_iter=5 if quick else 15)),
        ("regression", "adam", dict(hidden_layer_sizes=(128, 64), solver="adam",
                                    **fixed(e_big))),
    ]


def fit_once(cls, params, threads, Xtr, ytr):
    extra = {} if cls in (SkClassifier, SkRegressor) else {"n_threads": threads}
    est = cls(random_state=0, **params, **extra)
    limit = threads if threads is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if limit is not None and threadpool_limits is not None:
            with threadpool_limits(limits=limit):
                t0 = time.perf_counter()
                est.fit(Xtr, ytr)
                dt = time.perf_counter() - t0
        else:
            t0 = time.perf_counter()
            est.fit(Xtr, ytr)
            dt = time.perf_counter() - t0
    return est, dt


def measure(name, solver, params, data, threads, repeats):
    _, Xtr, Xte, ytr, yte = data
    if "float32" in solver:   # float32 input: both libraries then train in float32
        Xtr, Xte = Xtr.astype(np.float32), Xte.astype(np.float32)
    classify = name != "regression"
    pair = (SkClassifier, FbClassifier) if classify else (SkRegressor, FbRegressor)
    times = {0: [], 1: []}
    ests = {}
    load0 = os.getloadavg()[0]
    for _ in range(repeats):
        for side, cls in enumerate(pair):
            est, dt = fit_once(cls, params, threads, Xtr, ytr)
            times[side].append(dt)
            ests[side] = est
    load1 = os.getloadavg()[0]
    row = {"dataset": name, "solver": solver, "threads": "1" if threads == 1 else "all",
           "load": (load0, load1)}
    for side, key in ((0, "sk"), (1, "fb")):
        est = ests[side]
        row[key + "_time"] = min(times[side])          # best of the runs: robust to load
        row[key + "_median"] = statistics.median(times[side])
        row[key + "_times"] = times[side]
        row[key + "_score"] = est.score(Xte, yte)
        row[key + "_iter"] = est.n_iter_
    return row


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count()
    blas = ""
    if threadpool_info is not None:
        blas = ", ".join(sorted({f"{i.get('internal_api')} {i.get('version')}"
                                 for i in threadpool_info() if i.get("user_api") == "blas"}))
    return cpu, cores, blas


def render(rows, args, elapsed):
    cpu, cores, blas = machine()
    lines = [
        "# fastbp.sklearn vs scikit-learn: fit time and accuracy",
        "",
        f"Command: `python bench/sklearn_compare.py{' --quick' if args.quick else ''}"
        f"{' --repeats %d' % args.repeats if args.repeats != default_repeats(args.quick) else ''}`"
        f" ({elapsed / 60:.1f} min). Machine: {cpu}, {cores} cores available; "
        f"Python {platform.python_version()}, fastbp {fastbp.__version__}, scikit-learn "
        f"{sklearn.__version__}, NumPy {np.__version__}; BLAS: {blas or 'unknown'}.",
        "",
        "Both sides: the drop-in estimators with the same hyperparameters and `random_state=0` "
        "(same initial weights). sgd/adam run a fixed number of epochs (`tol=0`, "
        "`n_iter_no_change` > max_iter), so both do the same work; lbfgs stops on convergence "
        "or max_iter (iterations shown). Time: the best wall time of `fit` over "
        f"{args.repeats} (digits) / {max(1, args.repeats - 1)} (the larger sets) runs per "
        "library, alternating between the libraries (every run is listed below the table: "
        "on a shared machine single runs can be several times slower). Accuracy (classification) or R² "
        "(regression) on the held-out test split. Threads \"1\": scikit-learn's BLAS limited "
        "with threadpoolctl, fastbp `n_threads=1`; \"all\": both libraries' defaults. "
        "Load: the 1-minute load average before → after the row (the machine is shared; "
        "a load above the idle cores slows the multi-threaded runs of both).",
        "",
        "| dataset | solver | threads | epochs / iters (sk, fb) | scikit-learn fit s | "
        "fastbp fit s | speed-up | scikit-learn score | fastbp score | load |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    data = datasets_desc
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['solver']} | {r['threads']} | {r['sk_iter']}, {r['fb_iter']} | "
            f"{r['sk_time']:.3f} | {r['fb_time']:.3f} | **{r['sk_time'] / r['fb_time']:.1f}x** | "
            f"{r['sk_score']:.4f} | {r['fb_score']:.4f} | {r['load'][0]:.1f} → {r['load'][1]:.1f} |")
    lines += ["", NOTE_THREADS]
    lines += ["", "Datasets:", ""]
    for key, desc in data.items():
        lines.append(f"- **{key}**: {desc}")
    lines += [
        "",
        "Settings: digits `hidden_layer_sizes=(100,)`; synthetic `(256, 128)`; regression "
        "`(128, 64)`; batch_size 'auto' (200); sgd `learning_rate_init=0.01`, momentum 0.9 "
        "(Nesterov); adam lr 1e-3; alpha 1e-4; relu hidden units (scikit-learn's defaults "
        "otherwise). \"float32\": the same data given as float32, which both libraries "
        "then train in float32 (scikit-learn keeps float32 input in float32; fastbp also has "
        "`dtype=\"float32\"` to ask for it). Scores differ a little between the libraries because the batches are "
        "shuffled by different generators (from the same initial weights and without "
        "shuffling the two give the same weights, see tests/test_sklearn.py).",
        "",
        "Raw fit times (s), scikit-learn then fastbp, in run order:",
        "",
    ]
    for r in rows:
        lines.append(f"- {r['dataset']} / {r['solver']} / threads {r['threads']}: "
                     f"{', '.join(f'{t:.3f}' for t in r['sk_times'])} | "
                     f"{', '.join(f'{t:.3f}' for t in r['fb_times'])}")
    return "\n".join(lines) + "\n"


def default_repeats(quick):
    return 1 if quick else 3


datasets_desc = {}
NOTE_THREADS = (
    "Threads \"all\" on a shared machine: fastbp's threads synchronize several times per "
    "batch, so when another process keeps a core busy its multi-threaded epochs can be "
    "slower than single-threaded ones (measured here: `[100, 256, 128, 10]`, float32, "
    "batch 200, at a load of 2.3 on 2 cores, 3 epochs of 20,000 samples took 0.27 s with "
    "1 thread and 0.81 s with 2). The 1-thread rows are the like-for-like comparison; "
    "the \"all\" rows show what each library's default does under the load shown.")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--threads", default="1,all", help="comma list of 1 and/or all")
    ap.add_argument("--only", default=None, help="comma list of dataset names")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.repeats is None:
        args.repeats = default_repeats(args.quick)
    out = args.out or os.path.join(HERE, "results", "sklearn-quick.md" if args.quick
                                   else "sklearn.md")
    data = datasets(args.quick)
    datasets_desc.update({k: v[0] for k, v in data.items()})
    thread_opts = [1 if t.strip() == "1" else None for t in args.threads.split(",")]
    only = set(args.only.split(",")) if args.only else None
    rows = []
    t0 = time.perf_counter()
    for threads in thread_opts:
        for name, solver, params in configs(args.quick):
            if only and name not in only:
                continue
            reps = args.repeats if name == "digits" else max(1, args.repeats - 1)
            row = measure(name, solver, params, data[name], threads, reps)
            rows.append(row)
            print(f"{name:10s} {solver:13s} threads={row['threads']:3s} "
                  f"sklearn {row['sk_time']:7.3f}s ({row['sk_score']:.4f}, {row['sk_iter']} it)  "
                  f"fastbp {row['fb_time']:7.3f}s ({row['fb_score']:.4f}, {row['fb_iter']} it)  "
                  f"x{row['sk_time'] / row['fb_time']:.1f}  load {row['load'][0]:.1f}->"
                  f"{row['load'][1]:.1f}", flush=True)
    text = render(rows, args, time.perf_counter() - t0)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
