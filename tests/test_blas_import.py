"""fastbp takes its BLAS from scipy.linalg.cython_blas without importing scipy.linalg
(nor running scipy's __init__).

``fastbp._scipy_blas`` loads only that extension file (its module docstring says why and
what it guarantees), and ``fastbp._blas`` reads sgemm/dgemm from its ``__pyx_capi__``
capsules. Each test runs in a fresh interpreter, since this one has long imported
scipy.linalg (scikit-learn, the tests).
"""
import os
import subprocess
import sys
import textwrap

import pytest

import fastbp

TESTS = os.path.dirname(os.path.abspath(__file__))
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))

# Trains a tiny network in both dtypes by plain full-batch gradient steps and checks it
# against the NumPy reference (tests/reference.py), and checks both gemm kernels.
TRAIN_AND_CHECK = """
import numpy as np
import reference as ref
from fastbp import _blas

def check_gemm():
    rng = np.random.default_rng(0)
    for dtype, tol in (("float32", 1e-5), ("float64", 1e-13)):
        A = rng.normal(size=(7, 5)).astype(dtype)
        B = rng.normal(size=(6, 5)).astype(dtype)
        C = np.ones((7, 6), dtype)
        _blas.gemm_memview(_blas.BLAS_Trans.NoTrans, _blas.BLAS_Trans.Trans, A, B, C, 2.0, 0.5)
        want = 2.0 * A.astype(np.float64) @ B.T.astype(np.float64) + 0.5
        assert np.max(np.abs(C - want)) <= tol * np.max(np.abs(want)), dtype

def check_training():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 4))
    Y = rng.normal(size=(20, 2))
    acts = ["tanh", "identity"]
    for dtype, tol in (("float32", 2e-4), ("float64", 1e-10)):
        net = fastbp.Network([4, 6, 2], activation="tanh", output="identity", dtype=dtype, seed=3)
        W = [np.array(w, np.float64) for w in net.weights]
        b = [np.array(v, np.float64) for v in net.biases]
        first = None
        for _ in range(10):
            loss, g = net.loss_and_gradients(X.astype(dtype), Y.astype(dtype), loss="mse")
            rloss, rW, rb, _ = ref.loss_and_gradients(W, b, acts, X, Y, "mse")
            assert abs(loss - rloss) <= tol * abs(rloss), (dtype, loss, rloss)
            first = rloss if first is None else first
            for l in range(2):
                net.weights[l][...] -= np.asarray(0.1 * g.weights[l], dtype)
                net.biases[l][...] -= np.asarray(0.1 * g.biases[l], dtype)
                W[l] -= 0.1 * rW[l]
                b[l] -= 0.1 * rb[l]
        assert rloss < first
        for l in range(2):
            scale = np.max(np.abs(W[l]))
            assert np.max(np.abs(net.weights[l] - W[l])) <= tol * scale, (dtype, l)
    net = fastbp.Network([4, 6, 2], activation="tanh", output="identity", seed=3)
    fastbp.Trainer(net, loss="mse", optimizer="sgd", lr=0.05, batch_size=5, seed=0).fit(
        X, Y, epochs=2)
    assert np.all(np.isfinite(net.predict(X)))

check_gemm()
check_training()
"""


def run_python(*parts):
    """Run the parts (each dedented on its own), joined, in a fresh interpreter."""
    code = "\n".join(textwrap.dedent(p) for p in parts)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [PACKAGE_ROOT, TESTS] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", code], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_import_does_not_import_scipy_linalg_and_later_import_shares_the_module():
    run_python("""
        import io, sys
        import fastbp
        from fastbp import _blas, _config
        assert fastbp._blas.__file__.startswith(%r), fastbp._blas.__file__
        assert not [m for m in sys.modules if m.startswith("scipy")], \
            sorted(m for m in sys.modules if "scipy" in m)
        assert _blas._cython_blas_source == "file"
        mod = _blas._cython_blas
        assert mod.__name__ == "scipy.linalg.cython_blas"
        # the BLAS library came in as a dependency of cython_blas's .so: found by path
        assert _config._fastbp_blas(), "scipy's BLAS not found by threadpoolctl"
        cfg = fastbp.show_config(file=io.StringIO())
        assert cfg["blas"] and "scipy" in cfg["blas"][0]["filepath"]
        with fastbp.num_threads(2):
            exec(%r)
        assert "scipy.linalg" not in sys.modules

        # scipy itself imports normally afterwards: its __init__ runs now, and its shared
        # Cython utility module is the one cython_blas was loaded with
        import numpy as np
        import scipy
        assert scipy.__version__ and scipy.__file__
        import scipy.special, scipy.optimize
        assert scipy.special.expit(0.0) == 0.5
        assert abs(scipy.optimize.minimize_scalar(lambda t: (t - 1.5) ** 2).x - 1.5) < 1e-6
        import scipy.linalg.cython_blas
        assert sys.modules["scipy.linalg.cython_blas"] is mod
        assert scipy.linalg.cython_blas is mod
        from scipy.linalg import cython_blas
        assert cython_blas is mod
        import scipy.linalg
        A = np.array([[4.0, 1.0, 0.0], [1.0, 3.0, 1.0], [0.0, 1.0, 2.0]])
        x = scipy.linalg.solve(A, np.array([1.0, 2.0, 3.0]))
        assert np.allclose(A @ x, [1.0, 2.0, 3.0])
        check_gemm()
        print("ok")
    """ % (PACKAGE_ROOT, TRAIN_AND_CHECK))


def test_scipy_imported_first_without_linalg():
    run_python("""
        import sys
        import scipy
        util = sys.modules.get("scipy._cyutility")
        import fastbp
        from fastbp import _blas
        assert _blas._cython_blas_source == "file"
        assert sys.modules.get("scipy._cyutility") is util
        assert "scipy.linalg" not in sys.modules
        import scipy.linalg.cython_blas
        assert scipy.linalg.cython_blas is _blas._cython_blas
    """, TRAIN_AND_CHECK)


def test_scipy_linalg_imported_first_is_used():
    run_python("""
        import sys
        import scipy.linalg
        import fastbp
        from fastbp import _blas
        assert _blas._cython_blas_source == "sys.modules"
        assert _blas._cython_blas is sys.modules["scipy.linalg.cython_blas"]
        assert _blas._cython_blas is scipy.linalg.cython_blas
    """, TRAIN_AND_CHECK)


@pytest.mark.parametrize("failure", ["no_file", "exec_fails", "blas_exec_fails"])
def test_falls_back_to_a_plain_import(failure):
    """If loading cython_blas's file on its own fails for any reason (here: no file with an
    extension suffix is found, or a load raises after having run the module's init: every
    load, or only cython_blas's, after _cyutility's went well), fastbp imports
    scipy.linalg.cython_blas the usual way, and no entry of the failed attempt is left."""
    run_python("""
        import importlib.machinery, sys
        failure = %r
        if failure == "no_file":
            importlib.machinery.EXTENSION_SUFFIXES = [".no-such-suffix"]
        else:
            class ExtensionFileLoader(importlib.machinery.ExtensionFileLoader):  # name: see importlib.abc
                def exec_module(self, module):
                    super().exec_module(module)
                    if failure == "exec_fails" or self.name == "scipy.linalg.cython_blas":
                        raise OSError("simulated failure")
            importlib.machinery.ExtensionFileLoader = ExtensionFileLoader
        import fastbp
        from fastbp import _blas
        assert _blas._cython_blas_source == "import"
        assert "scipy.linalg" in sys.modules
        import scipy, scipy.linalg.cython_blas
        assert scipy.__version__
        assert _blas._cython_blas is sys.modules["scipy.linalg.cython_blas"]
        assert _blas._cython_blas is scipy.linalg.cython_blas
    """ % failure, TRAIN_AND_CHECK)
