"""Thread settings and the build report.

fastbp has one thread pool: its OpenMP threads run the elementwise kernels and split
large matrix products into blocks, each a single-threaded BLAS call. Inside fastbp's
compiled calls the BLAS is therefore held at one thread (``blas_single_threaded``), so
two pools of spinning threads never fight over the cores.
"""
import contextlib
import os
import threading

import numpy

from threadpoolctl import ThreadpoolController, threadpool_info

from . import _blas, _engine
from ._version import __version__

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "show_config",
           "set_gemm_kernel", "get_gemm_kernel"]

_state = threading.local()
_default = [None]   # process-wide setting; None = all cores


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _check(n, name="n_threads"):
    if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
        raise TypeError(f"{name} must be a positive int or None, got {n!r}")
    n = int(n)
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def _env_threads():
    """OMP_NUM_THREADS as a positive int (joblib/loky workers set it), else None."""
    try:
        n = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        return None
    return n if n >= 1 else None


def get_num_threads():
    """Threads fastbp uses: ``num_threads``/``set_num_threads`` if set, else
    OMP_NUM_THREADS if set (as joblib's workers do), else all cores."""
    n = getattr(_state, "n", None)
    if n is None:
        n = _default[0]
    if n is None:
        n = _env_threads()
    return n if n is not None else _cores()


def set_num_threads(n):
    """Use ``n`` threads (None = all cores) for fastbp's kernels and products, process-wide."""
    _default[0] = None if n is None else _check(n)


@contextlib.contextmanager
def num_threads(n):
    """Context manager: fastbp uses ``n`` threads inside the block (in this Python thread)."""
    n = get_num_threads() if n is None else _check(n)
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


def show_config(file=None):
    """Print the version, OpenMP status, BLAS in use and thread counts; return them as a dict."""
    import scipy    # here, not at import: importing fastbp does not run scipy's __init__
    blas = blas_info()
    cfg = {
        "fastbp": __version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "openmp": _engine.openmp_enabled(),
        "openmp_max_threads": _engine.omp_max_threads(),
        "num_threads": get_num_threads(),
        "cores": _cores(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "gemm_kernel": get_gemm_kernel(),
        "blas": [{k: b.get(k) for k in ("internal_api", "version", "architecture",
                                         "num_threads", "filepath")} for b in blas],
    }
    lines = [f"fastbp {cfg['fastbp']} (numpy {cfg['numpy']}, scipy {cfg['scipy']})",
             f"  OpenMP: {'on' if cfg['openmp'] else 'off (serial build)'}"
             f" (max threads {cfg['openmp_max_threads']})",
             f"  threads: {cfg['num_threads']} of {cfg['cores']} cores "
             f"(OMP_WAIT_POLICY={cfg['omp_wait_policy']})",
             f"  small float32 products: {cfg['gemm_kernel']}"
             f"{' (own kernel)' if cfg['gemm_kernel'] != 'blas' else ''}"]
    for b in cfg["blas"]:
        lines.append(f"  BLAS: {b['internal_api']} {b['version']} {b['architecture'] or ''} "
                     f"threads={b['num_threads']} ({os.path.basename(b['filepath'] or '')})")
    print("\n".join(lines), file=file)
    return cfg
