"""Data-parallel training over MPI, launched for real with mpiexec -n 2: the same parameters
as one process with the global batch, local SGD, only rank 0 writes, a failing rank stops
every rank. Skipped without mpi4py or mpiexec."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec")

SCRIPT = textwrap.dedent("""
    import sys, numpy as np, fastbp
    from mpi4py import MPI
    from fastbp.distributed import DataParallelTrainer
    out, mode = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = rng.integers(0, 3, 200)
    net = fastbp.Network([6, 16, 3], activation="tanh", output="softmax", dtype="float64",
                         seed=MPI.COMM_WORLD.Get_rank(),       # rank 0's weights win
                         batch_norm=mode == "bn")
    kw = dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=20, seed=3, n_threads=1,
              l2=1e-3)
    if mode == "adam":
        kw = dict(optimizer="adam", lr=0.01, batch_size=20, seed=3, n_threads=1,
                  clip_norm=1.0)
    if mode == "local":
        tr = DataParallelTrainer(net, average_every=3, **kw)
    else:
        tr = DataParallelTrainer(net, **kw)
    if mode == "fail" and tr.rank == 1:
        X = X.copy()
        X[5, 0] = np.nan                                  # bad data on one rank only
    h = tr.fit(X, y, epochs=4)
    tr.save_checkpoint(out + ".fbpc")
    np.savez(out + f".{tr.rank}.npz", params=net.parameters, loss=np.array(h.loss),
             running=net.running_stats)
""")


def run(tmp_path, mode, timeout=120):
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script),
                           str(tmp_path / "out"), mode], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.parametrize("mode", ["sgd", "adam"])
def test_two_ranks_equal_one_process_with_the_global_batch(tmp_path, mode):
    p = run(tmp_path, mode)
    assert p.returncode == 0, p.stderr
    r0, r1 = np.load(tmp_path / "out.0.npz"), np.load(tmp_path / "out.1.npz")
    np.testing.assert_array_equal(r0["params"], r1["params"])       # ranks agree exactly
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 6)), rng.integers(0, 3, 200)
    net = fastbp.Network([6, 16, 3], activation="tanh", output="softmax", dtype="float64",
                         seed=0)
    kw = dict(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=20, seed=3, n_threads=1,
              l2=1e-3)
    if mode == "adam":
        kw = dict(optimizer="adam", lr=0.01, batch_size=20, seed=3, n_threads=1, clip_norm=1.0)
    h = fastbp.Trainer(net, **kw).fit(X, y, epochs=4)
    np.testing.assert_allclose(r0["params"], net.parameters, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(r0["loss"], h.loss, rtol=1e-6)
    assert (tmp_path / "out.fbpc").exists()           # rank 0 wrote the checkpoint
    back = fastbp.Trainer.load_checkpoint(tmp_path / "out.fbpc")
    np.testing.assert_array_equal(back.net.parameters, r0["params"])


def test_local_sgd_keeps_the_ranks_together(tmp_path):
    p = run(tmp_path, "local")
    assert p.returncode == 0, p.stderr
    r0, r1 = np.load(tmp_path / "out.0.npz"), np.load(tmp_path / "out.1.npz")
    np.testing.assert_array_equal(r0["params"], r1["params"])        # averaged at the end
    assert np.isfinite(r0["params"]).all() and r0["loss"][-1] < r0["loss"][0]


def test_batch_norm_ranks_end_with_the_same_parameters_and_statistics(tmp_path):
    p = run(tmp_path, "bn")
    assert p.returncode == 0, p.stderr
    r0, r1 = np.load(tmp_path / "out.0.npz"), np.load(tmp_path / "out.1.npz")
    np.testing.assert_array_equal(r0["params"], r1["params"])
    np.testing.assert_array_equal(r0["running"], r1["running"])
    assert r0["running"].size and np.isfinite(r0["running"]).all()


def test_a_failing_rank_stops_every_rank_with_a_clear_error(tmp_path):
    p = run(tmp_path, "fail", timeout=60)                # a hang would time out
    assert p.returncode != 0
    assert "rank 1 of 2 failed" in p.stderr and "X contains NaN" in p.stderr


def test_without_mpi4py_the_import_error_says_what_to_install(monkeypatch):
    import builtins
    from fastbp import distributed
    real = builtins.__import__

    def no_mpi(name, *a, **k):
        if name.startswith("mpi4py"):
            raise ImportError("no mpi4py")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpi)
    with pytest.raises(ImportError, match="pip install mpi4py"):
        distributed.DataParallelTrainer(fastbp.Network([3, 2], seed=0))
