"""One benchmark cell, run in a fresh subprocess by ``run.py``.

    python bench/cell.py '{"kind": "train", "system": "torch", "workload": "W1",
                           "threads": 1, "quick": false, "repeats": 5,
                           "budget": 6.0, "min_repeats": 3}'

The orchestrator sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS
in the environment before this process starts; here we additionally apply
threadpoolctl limits (and torch.set_num_threads / fastbp n_threads in the
runners).  The result is printed as one JSON line prefixed with ``@@RESULT``;
a system that cannot be imported gives status "n/a" instead of failing.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

MARK = "@@RESULT "


def _rss_mb() -> float:
    # Linux: ru_maxrss in KiB (peak resident set size of this process)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_mb(field):
    """VmRSS / VmHWM of this process from /proc (MB), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _reset_peak():
    """Reset this process's peak RSS to its current RSS (Linux: clear_refs 5), so that the
    peak measured afterwards is that of training, not of generating the data. Returns the
    RSS at the reset (MB), or None if the kernel does not allow it."""
    global _PEAK_BEFORE_RESET
    before = _rss_mb()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    _PEAK_BEFORE_RESET = before     # ru_maxrss follows the reset too: keep the old peak
    return _status_mb("VmRSS")


_PEAK_BEFORE_RESET = 0.0


def _limit_threads(threads):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads)


def _preimport(system):
    """Import the system's heavy modules first, so the threadpoolctl limit
    also covers their thread pools, and so 'import RSS' is measured."""
    if system == "torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
    elif system == "sklearn":
        try:
            import sklearn.neural_network  # noqa: F401
        except ImportError:
            pass
    elif system in ("gemm", "sgemm"):
        import scipy.linalg.blas  # noqa: F401
    elif system == "fastbp":
        try:
            from systems import _import_fastbp
            _import_fastbp()
        except Exception:
            pass  # reported as n/a by the runner


def _shown_path(path):
    """A path inside this checkout relative to it (results are committed), else as is."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    full = os.path.abspath(path)
    return os.path.relpath(full, root) if full.startswith(root + os.sep) else path


def machine_info():
    info = {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "machine": platform.machine()}
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except Exception:
        pass
    model, flags = None, ""
    phys = set()
    try:
        with open("/proc/cpuinfo") as f:
            cur = {}
            for line in f:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    if k == "model name" and model is None:
                        model = v
                    if k == "flags" and not flags:
                        flags = v
                    if k in ("physical id", "core id"):
                        cur[k] = v
                elif cur:
                    phys.add((cur.get("physical id"), cur.get("core id")))
                    cur = {}
            if cur:
                phys.add((cur.get("physical id"), cur.get("core id")))
    except OSError:
        pass
    info["cpu_model"] = model or platform.processor() or "?"
    info["physical_cores"] = len(phys) or None
    simd = [f for f in ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "neon", "asimd")
            if f in flags.split()]
    info["simd"] = simd
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_total_gb"] = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    info["env"] = {k: os.environ[k] for k in sorted(os.environ)
                   if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "KMP_"))}
    versions = {}
    for mod in ("numpy", "scipy", "torch", "sklearn", "threadpoolctl", "matplotlib", "Cython"):
        try:
            m = __import__(mod)
            versions[mod] = getattr(m, "__version__", "?")
        except Exception:
            versions[mod] = None
    try:
        from systems import _import_fastbp
        fb = _import_fastbp()
        versions["fastbp"] = getattr(fb, "__version__", "?")
        info["fastbp_module"] = _shown_path(getattr(fb, "__file__", "?"))
        if hasattr(fb, "get_gemm_kernel"):
            info["fastbp_gemm_kernel"] = fb.get_gemm_kernel()
    except Exception as e:
        versions["fastbp"] = None
        info["fastbp_error"] = str(e)[:300]
    info["versions"] = versions
    try:
        import scipy.linalg.blas  # noqa: F401  (make sure scipy's BLAS is loaded)
        from threadpoolctl import threadpool_info
        info["threadpools"] = [
            {k: d.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                   "architecture", "threading_layer", "num_threads", "filepath")}
            for d in threadpool_info()]
    except Exception as e:
        info["threadpools"] = []
        info["threadpools_error"] = str(e)
    return info


def run_cell(spec):
    import numpy as np
    from workloads import WORKLOADS, make_data
    import systems

    kind, system = spec["kind"], spec.get("system")
    threads = int(spec.get("threads", 1))
    repeats = int(spec.get("repeats", 5))
    budget = float(spec.get("budget", 5.0))
    min_rep = int(spec.get("min_repeats", 3))
    _preimport(system)
    limiter = _limit_threads(threads)  # noqa: F841  (kept alive for the whole cell)
    rss_import = _rss_mb()
    res = {}
    if kind == "sgemm":
        res = systems.sgemm_rate(threads, max(repeats, 7), budget, max(min_rep, 7),
                                 n=int(spec.get("n", 2048)))
    else:
        w = WORKLOADS[spec["workload"]]
        n = w.samples(bool(spec.get("quick")))
        res["n_samples"] = n
        if kind == "gemm":
            res.update(systems.gemm_bound(w, threads, repeats, budget, min_rep, n))
        else:
            X, y = make_data(w, n)
            rss_data = _reset_peak()
            if kind == "train":
                res.update(systems.TRAIN[system](w, X, y, threads, repeats, budget, min_rep))
                t = np.asarray(res["epoch_s"])
                sps = n / t
                res["samples_per_second"] = float(np.median(sps))
                res["samples_per_second_min"] = float(sps.min())
                res["samples_per_second_max"] = float(sps.max())
            elif kind == "infer":
                res.update(systems.INFER[system](w, X, threads, repeats, budget, min_rep))
                sps = n / np.asarray(res["call_s"])
                res["samples_per_second"] = float(np.median(sps))
                res["samples_per_second_min"] = float(sps.min())
                res["samples_per_second_max"] = float(sps.max())
            else:
                raise ValueError(f"unknown cell kind {kind!r}")
            if rss_data is not None:
                res["rss_data_mb"] = rss_data
                res["run_peak_rss_mb"] = _status_mb("VmHWM")
    res["rss_import_mb"] = rss_import
    res["peak_rss_mb"] = max(_rss_mb(), _PEAK_BEFORE_RESET)
    return res


def main():
    spec = json.loads(sys.argv[1])
    t0 = time.perf_counter()
    out = {"status": "ok"}
    try:
        if spec["kind"] == "info":
            out["info"] = machine_info()
        else:
            out.update(run_cell(spec))
    except Exception as e:
        from systems import NotAvailable
        if isinstance(e, NotAvailable):
            out = {"status": "n/a", "reason": str(e)[:500]}
        else:
            out = {"status": "error", "reason": f"{type(e).__name__}: {e}"[:500],
                   "traceback": traceback.format_exc()[-3000:]}
        out["peak_rss_mb"] = _rss_mb()
    out["cell_wall_s"] = time.perf_counter() - t0
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
