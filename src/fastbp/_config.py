"""Thread settings and the build report.

fastbp has one thread pool: its OpenMP threads run the elementwise kernels and split
large matrix products into blocks, each a single-threaded BLAS call. Inside fastbp's
compiled calls the BLAS is therefore held at one thread (``blas_single_threaded``), so
two pools of spinning threads never fight over the cores.
"""
import contextlib
import math
import os
import sys
import threading
import warnings

import numpy

from threadpoolctl import ThreadpoolController, threadpool_info

from . import _bf16, _blas, _engine
from ._version import __version__

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "show_config",
           "set_gemm_kernel", "get_gemm_kernel", "usable_cores", "check_thread_count",
           "engine_threads"]

_state = threading.local()
_default = [None]   # process-wide setting; None = all usable cores


def _cgroup_quota(root="/sys/fs/cgroup", proc="/proc/self/cgroup"):
    """The CPU time the process's cgroup may use, in cores (e.g. 1.5), or None.

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` (quota -1: none). The tightest limit of the process's cgroup and
    its ancestors counts; the mount root itself is looked at too, since in a container it
    is the container's own cgroup.
    """
    try:
        with open(proc) as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
    except OSError:
        return None
    quotas = []
    for entry in entries:
        if len(entry) != 3:
            continue
        _, controllers, rel = entry
        if controllers == "":                          # v2: "0::/path"
            mounts = [root, os.path.join(root, "unified")]   # unified: hybrid systems
            read = _read_cpu_max
        elif "cpu" in controllers.split(","):           # v1: "4:cpu,cpuacct:/path"
            mounts = [os.path.join(root, controllers), os.path.join(root, "cpu"),
                      os.path.join(root, "cpu,cpuacct")]
            read = _read_cfs
        else:
            continue
        for mount in dict.fromkeys(mounts):
            parts = [p for p in rel.split("/") if p]
            for k in range(len(parts), -1, -1):
                q = read(os.path.join(mount, *parts[:k]))
                if q is not None:
                    quotas.append(q)
    return min(quotas) if quotas else None


def _read_file(path):
    try:
        with open(path) as f:
            return f.read().split()
    except (OSError, UnicodeDecodeError):
        return None


def _read_cpu_max(folder):
    fields = _read_file(os.path.join(folder, "cpu.max"))
    try:
        if fields and fields[0] != "max":
            quota, period = int(fields[0]), int(fields[1]) if len(fields) > 1 else 100000
            return quota / period if quota > 0 and period > 0 else None
    except ValueError:
        pass
    return None


def _read_cfs(folder):
    quota = _read_file(os.path.join(folder, "cpu.cfs_quota_us"))
    period = _read_file(os.path.join(folder, "cpu.cfs_period_us"))
    try:
        if quota and period and int(quota[0]) > 0 and int(period[0]) > 0:
            return int(quota[0]) / int(period[0])
    except ValueError:
        pass
    return None


_quota_cache = []


def _core_limits():
    """``(usable, affinity, quota, cpu_count)``: the cores this process may use, the
    cores in its CPU affinity mask (None where the OS has no such mask), its cgroup CPU
    quota in cores (None: no quota) and the machine's logical CPUs."""
    if not _quota_cache:   # read once: the quota of a running process rarely changes
        _quota_cache.append(_cgroup_quota())
        _quota_cache.append(os.cpu_count() or 1)
    quota, count = _quota_cache
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        affinity = None
    usable = count
    if affinity is not None:
        usable = min(usable, affinity)
    if quota is not None:
        usable = min(usable, max(1, math.ceil(quota - 1e-9)))
    return max(1, usable), affinity, quota, count


def usable_cores():
    """How many cores this process may run on at once: the smallest of its CPU affinity
    mask (``taskset``, ``os.sched_setaffinity``), its cgroup CPU quota rounded up (v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``; a container's ``--cpus``) and the machine's
    logical CPUs. The default thread count."""
    return _core_limits()[0]


def _check(n, name="n_threads"):
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"{name} must be a positive int or None, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


_warned_lock = threading.Lock()
_warned = set()     # thread counts already warned about in this process


def check_thread_count(n, name="n_threads", stacklevel=2):
    """Check a requested thread count; return it as an int (None stays None).

    Raises TypeError or ValueError (naming ``name``) unless ``n`` is None or an int >= 1.
    When ``n`` is more than :func:`usable_cores`, issues a RuntimeWarning, once per
    process for each distinct ``n``: more threads than cores oversubscribe them, and
    OpenMP's barriers then make every step wait for descheduled threads (measured 18x
    slower). ``stacklevel`` is passed to ``warnings.warn``: 2 points at the caller of
    ``check_thread_count``; callers that check on behalf of theirs add one per level.
    """
    if n is None:
        return None
    n = _check(n, name)
    usable = usable_cores()
    if n > usable:
        with _warned_lock:
            first = n not in _warned
            _warned.add(n)
        if first:
            warnings.warn(f"{name}={n} is more than the {usable} core(s) this process may "
                          f"use ({_limits_text()}): the threads oversubscribe the cores and "
                          f"run slower, often many times; use {name}={usable} or fewer",
                          RuntimeWarning, stacklevel=stacklevel)
    return n


def _limits_text():
    _, affinity, quota, count = _core_limits()
    return (f"affinity {affinity if affinity is not None else 'n/a'}, cgroup quota "
            f"{'none' if quota is None else f'{quota:g}'}, {count} CPUs")


def _env_threads():
    """OMP_NUM_THREADS as a positive int (joblib/loky workers set it), else None."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def _dask_task_threads():
    """Inside a task on a dask.distributed worker: the threads that task may use, else None.

    A worker with ``nthreads`` threads runs up to ``nthreads`` tasks at once (joblib's dask
    backend sends it that many), so a task's share is one thread; a task that asked for
    ``resources={"CPU": c}`` (on workers started with a ``"CPU"`` resource) gets
    ``min(c, nthreads)``. Looked up only when ``distributed`` is already imported: fastbp
    never imports it.
    """
    worker_mod = sys.modules.get("distributed.worker")
    if worker_mod is None:
        return None
    try:
        worker = worker_mod.get_worker()
    except Exception:          # ValueError: not in a worker
        return None
    try:
        state = getattr(worker, "state", worker)
        nthreads = max(1, int(state.nthreads))
        share = 1
        try:
            key = worker.get_current_task()
            cpus = state.tasks[key].resource_restrictions.get("CPU")
        except Exception:      # not in one of the worker's task threads, or no such resource
            cpus = None
        if cpus is not None and cpus >= 1:
            share = min(int(cpus), nthreads)
        return share
    except Exception:          # pragma: no cover - an unknown version of distributed
        return None


def _ray_task_threads():
    """Inside a Ray task or actor: the CPUs Ray assigned to it (rounded down, at least 1),
    else None (not in a Ray worker, or an actor that holds no CPU, such as those of
    ``ray.util.joblib``, where Ray sets OMP_NUM_THREADS=1). Looked up only when ``ray`` is
    already imported: fastbp never imports it."""
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        if not ray.is_initialized():
            return None
        ctx = ray.get_runtime_context()
        worker_mode = getattr(sys.modules.get("ray._private.worker"), "WORKER_MODE", 1)
        if ctx.worker.mode != worker_mode:
            return None        # the driver (or a client): not a task
        cpus = ctx.get_assigned_resources().get("CPU")
    except Exception:          # pragma: no cover - an unknown version of ray
        return None
    return max(1, int(math.floor(cpus))) if cpus else None


def engine_threads():
    """The threads a cluster engine gave the task running this code, or None outside one.

    - dask.distributed worker: one thread per task (a worker with ``nthreads`` threads runs
      that many tasks at once), or the task's ``resources={"CPU": c}``, at most nthreads;
    - Ray task or actor: the CPUs Ray assigned to it (``num_cpus``).

    Capped by :func:`usable_cores`. Neither package is imported here: each is looked up
    only if the process has already imported it (a worker always has).
    """
    n = _dask_task_threads()
    if n is None:
        n = _ray_task_threads()
    return None if n is None else min(n, usable_cores())


def get_num_threads():
    """Threads fastbp uses. The first that applies:

    1. ``num_threads(n)`` (this Python thread) or ``set_num_threads(n)`` (process-wide);
    2. inside a dask.distributed or Ray task, the task's share of its worker
       (:func:`engine_threads`): 1 on a Dask worker unless the task asked for
       ``resources={"CPU": c}``, a Ray task's ``num_cpus``, so parallel searches on a
       cluster (joblib's ``"dask"`` and ``"ray"`` backends) never oversubscribe a worker;
    3. OMP_NUM_THREADS if set (joblib's loky workers set it to their share; Dask's nanny
       sets it to 1, Ray to a task's ``num_cpus``);
    4. :func:`usable_cores`.
    """
    n = getattr(_state, "n", None)
    if n is None:
        n = _default[0]
    if n is None:
        n = engine_threads()
    if n is None:
        n = _env_threads()
    return n if n is not None else usable_cores()


def set_num_threads(n):
    """Use ``n`` threads (None = all usable cores) for fastbp's kernels and products,
    process-wide. More than :func:`usable_cores` warns (once per ``n``)."""
    _default[0] = check_thread_count(n, stacklevel=3)


def num_threads(n):
    """Context manager: fastbp uses ``n`` threads inside the block (in this Python thread).

    ``n`` is checked when ``num_threads(n)`` is called; more than :func:`usable_cores`
    warns (once per ``n``)."""
    n = get_num_threads() if n is None else check_thread_count(n, stacklevel=3)
    return _num_threads(n)


@contextlib.contextmanager
def _num_threads(n):
    old = getattr(_state, "n", None)
    _state.n = n
    try:
        yield n
    finally:
        _state.n = old


def get_gemm_kernel():
    """The kernel of fastbp's small float32 products: "avx512", "avx2" (fastbp's own, see
    ``_gemm.h``) or "blas" (every product by the BLAS)."""
    return _blas.small_gemm_kernel()


def set_gemm_kernel(name):
    """Process-wide: "auto" (the own kernel for small float32 products, the best the CPU
    has; the default unless FASTBP_SMALL_GEMM=0), "blas", "avx512" or "avx2". Results
    differ between kernels only by float rounding. Returns the previous setting."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    return _blas.set_small_gemm_kernel(name)


_blas_lock = threading.Lock()
_blas_users = [0, None]       # active fastbp calls, saved thread counts
_blas_libs = []


def _fastbp_blas():
    """threadpoolctl controllers of the BLAS that scipy.linalg.cython_blas uses."""
    if not _blas_libs:
        libs = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
        scipy_libs = [c for c in libs if "scipy" in os.path.basename(os.path.dirname(c.filepath))
                      or "scipy_openblas-" in os.path.basename(c.filepath)]
        _blas_libs.extend(scipy_libs or libs)
        _blas_libs.append(None)   # marks "looked up", even if empty
    return [c for c in _blas_libs if c is not None]


@contextlib.contextmanager
def blas_single_threaded():
    """Hold the BLAS at one thread while fastbp's compiled code runs (re-entrant, shared by
    concurrent callers: the first sets it, the last one out restores it)."""
    with _blas_lock:
        if _blas_users[0] == 0:
            saved = []
            for c in _fastbp_blas():
                n = c.num_threads
                if n != 1:
                    c.set_num_threads(1)
                saved.append((c, n))
            _blas_users[1] = saved
        _blas_users[0] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users[0] -= 1
            if _blas_users[0] == 0:
                for c, n in _blas_users[1]:
                    if n != 1:
                        c.set_num_threads(n)
                _blas_users[1] = None


def blas_info():
    """threadpoolctl's records of the BLAS libraries in this process (scipy's first)."""
    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return sorted(info, key=lambda i: "scipy" not in i.get("filepath", ""))


def _bf16_note(active, cpu):
    if active == "avx512_bf16":
        return "VDPBF16PS"
    if cpu == "avx512_bf16":
        return "portable C, chosen by FASTBP_BF16 or set_bf16_mode; the CPU has AVX512_BF16"
    return "portable C; this CPU or build lacks AVX512_BF16"


def show_config(file=None):
    """Print the version, OpenMP status, BLAS in use and thread counts; return them as a dict.

    ``usable_cores`` (also ``cores``) is :func:`usable_cores`; ``affinity_cores`` the size of
    the CPU affinity mask (None where there is none), ``cgroup_quota`` the cgroup CPU quota
    in cores (None: no quota), ``cpu_count`` the machine's logical CPUs. ``bf16`` is the
    implementation of bfloat16 products in use ("avx512_bf16" or "emulated"), ``bf16_cpu``
    what the CPU and build allow."""
    import scipy    # here, not at import: importing fastbp does not run scipy's __init__
    blas = blas_info()
    usable, affinity, quota, count = _core_limits()
    cfg = {
        "fastbp": __version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "openmp": _engine.openmp_enabled(),
        "openmp_max_threads": _engine.omp_max_threads(),
        "num_threads": get_num_threads(),
        "cores": usable,
        "usable_cores": usable,
        "affinity_cores": affinity,
        "cgroup_quota": quota,
        "cpu_count": count,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gemm_kernel": get_gemm_kernel(),
        "bf16": _bf16.bf16_capability(),
        "bf16_cpu": _bf16.bf16_cpu_capability(),
        "blas": [{k: b.get(k) for k in ("internal_api", "version", "architecture",
                                         "num_threads", "filepath")} for b in blas],
    }
    lines = [f"fastbp {cfg['fastbp']} (numpy {cfg['numpy']}, scipy {cfg['scipy']})",
             f"  OpenMP: {'on' if cfg['openmp'] else 'off (serial build)'}"
             f" (max threads {cfg['openmp_max_threads']})",
             f"  threads: {cfg['num_threads']} of {usable} usable cores (affinity "
             f"{affinity if affinity is not None else 'n/a'}, cgroup quota "
             f"{'none' if quota is None else f'{quota:g}'})"
             f"{' - oversubscribed, slower' if cfg['num_threads'] > usable else ''}",
             f"  CPUs: {count} logical (OMP_WAIT_POLICY={cfg['omp_wait_policy']})",
             f"  small float32 products: {cfg['gemm_kernel']}"
             f"{' (own kernel)' if cfg['gemm_kernel'] != 'blas' else ''}",
             f"  bfloat16 products: {cfg['bf16']} ({_bf16_note(cfg['bf16'], cfg['bf16_cpu'])})"]
    for b in cfg["blas"]:
        lines.append(f"  BLAS: {b['internal_api']} {b['version']} {b['architecture'] or ''} "
                     f"threads={b['num_threads']} ({os.path.basename(b['filepath'] or '')})")
    print("\n".join(lines), file=file)
    return cfg
