"""Thread settings shared by the OpenMP kernels and the BLAS, and the build report."""
import contextlib
import os
import threading

from threadpoolctl import threadpool_info, threadpool_limits

from . import _engine

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "show_config"]

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


def get_num_threads():
    """Threads fastbp uses for its OpenMP loops and BLAS calls."""
    n = getattr(_state, "n", None)
    if n is None:
        n = _default[0]
    return n if n is not None else _cores()


def set_num_threads(n):
    """Use ``n`` threads (None = all cores) in the kernels and the BLAS, process-wide."""
    _default[0] = None if n is None else _check(n)
    threadpool_limits(get_num_threads(), user_api="blas")


@contextlib.contextmanager
def num_threads(n):
    """Context manager: use ``n`` threads inside the block (this Python thread only for
    the kernels; BLAS limits are process-wide)."""
    n = get_num_threads() if n is None else _check(n)
    old = getattr(_state, "n", None)
    _state.n = n
    try:
        with threadpool_limits(n, user_api="blas"):
            yield n
    finally:
        _state.n = old


def blas_info():
    """threadpoolctl's records of the BLAS libraries in this process (scipy's first)."""
    info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return sorted(info, key=lambda i: "scipy" not in i.get("filepath", ""))


def show_config(file=None):
    """Print the version, OpenMP status, BLAS in use and thread counts; return them as a dict."""
    import numpy
    import scipy
    from . import __version__
    blas = blas_info()
    cfg = {
        "fastbp": __version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "openmp": _engine.openmp_enabled(),
        "openmp_max_threads": _engine.omp_max_threads(),
        "num_threads": get_num_threads(),
        "cores": _cores(),
        "blas": [{k: b.get(k) for k in ("internal_api", "version", "architecture",
                                         "num_threads", "filepath")} for b in blas],
    }
    lines = [f"fastbp {cfg['fastbp']} (numpy {cfg['numpy']}, scipy {cfg['scipy']})",
             f"  OpenMP: {'on' if cfg['openmp'] else 'off (serial build)'}"
             f" (max threads {cfg['openmp_max_threads']})",
             f"  threads: {cfg['num_threads']} of {cfg['cores']} cores"]
    for b in cfg["blas"]:
        lines.append(f"  BLAS: {b['internal_api']} {b['version']} {b['architecture'] or ''} "
                     f"threads={b['num_threads']} ({os.path.basename(b['filepath'] or '')})")
    print("\n".join(lines), file=file)
    return cfg
