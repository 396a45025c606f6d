"""The build: OpenMP, the row-major BLAS wrapper, the configuration report."""
import os
import sys

import numpy as np
import pytest

import fastbp
from fastbp import _blas, _engine
import reference as ref


def ref_predict(net, X):
    ws = [w.astype(np.float64) for w in net.weights]
    bs = [b.astype(np.float64) for b in net.biases]
    return ref.predict(ws, bs, list(net.activations), X)


@pytest.mark.skipif(os.environ.get("FASTBP_NO_OPENMP") == "1",
                    reason="built without OpenMP on purpose")
def test_built_with_openmp():
    assert _engine.openmp_enabled()


def test_show_config_reports_version_openmp_blas_threads(capsys):
    cfg = fastbp.show_config()
    out = capsys.readouterr().out
    assert cfg["fastbp"] == fastbp.__version__ and fastbp.__version__ in out
    assert "OpenMP" in out and isinstance(cfg["openmp"], bool)
    assert cfg["num_threads"] >= 1 and cfg["blas"], cfg
    assert "BLAS" in out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", ["n", "t"])
@pytest.mark.parametrize("tb", ["n", "t"])
def test_row_major_gemm_matches_numpy(dtype, ta, tb):
    rng = np.random.default_rng(0)
    m, n, k = 7, 5, 3
    A = rng.normal(size=(m, k) if ta == "n" else (k, m)).astype(dtype)
    B = rng.normal(size=(k, n) if tb == "n" else (n, k)).astype(dtype)
    C = rng.normal(size=(m, n)).astype(dtype)
    want = 2.0 * (A if ta == "n" else A.T) @ (B if tb == "n" else B.T) + 0.5 * C
    _blas.gemm_memview(_blas.BLAS_Trans.NoTrans if ta == "n" else _blas.BLAS_Trans.Trans,
                       _blas.BLAS_Trans.NoTrans if tb == "n" else _blas.BLAS_Trans.Trans,
                       A, B, C, 2.0, 0.5)
    np.testing.assert_allclose(C, want, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_thread_settings():
    old = fastbp.get_num_threads()
    with fastbp.num_threads(1):
        assert fastbp.get_num_threads() == 1
    assert fastbp.get_num_threads() == old
    with pytest.raises(ValueError, match="n_threads"):
        fastbp.set_num_threads(0)
    with pytest.raises(TypeError):
        fastbp.set_num_threads("two")


def test_show_config_reports_usable_cores(capsys, monkeypatch):
    from fastbp import _config
    cfg = fastbp.show_config()
    out = capsys.readouterr().out
    usable = fastbp._config.usable_cores()
    assert cfg["usable_cores"] == cfg["cores"] == usable
    assert 1 <= usable <= (os.cpu_count() or 1) and cfg["cpu_count"] == (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cfg["affinity_cores"] == len(os.sched_getaffinity(0)) >= usable
    assert f"threads: {cfg['num_threads']} of {usable} usable cores (affinity " in out
    assert "cgroup quota" in out
    # a container limited to 1.5 CPUs on a 64-CPU machine: 2 usable cores
    monkeypatch.setattr(_config, "_quota_cache", [1.5, 64])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    want = min(2, cfg["affinity_cores"] or 2)
    assert _config.usable_cores() == want and fastbp.get_num_threads() == want
    cfg = fastbp.show_config()
    assert cfg["cgroup_quota"] == 1.5 and cfg["cpu_count"] == 64
    out = capsys.readouterr().out
    assert f"of {want} usable cores" in out and "cgroup quota 1.5)" in out


def _cgroup_tree(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize("proc, files, want", [
    ("0::/\n", {}, None),
    ("0::/\n", {"cpu.max": "max 100000\n"}, None),
    ("0::/\n", {"cpu.max": "150000 100000\n"}, 1.5),
    # the tightest of the process's cgroup and its ancestors
    ("0::/a/b\n", {"a/cpu.max": "200000 100000\n", "a/b/cpu.max": "max 100000\n"}, 2.0),
    ("0::/a/b\n", {"a/cpu.max": "400000 100000\n", "a/b/cpu.max": "50000 100000\n"}, 0.5),
    # a container's own cgroup mounted at the root, its host path absent
    ("0::/docker/abc\n", {"cpu.max": "300000 100000\n"}, 3.0),
    # hybrid: cgroup v2 under unified/
    ("1:cpu:/\n0::/x\n", {"unified/x/cpu.max": "100000 100000\n"}, 1.0),
    # cgroup v1
    ("4:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
                            "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ("4:cpu,cpuacct:/j\n", {"cpu,cpuacct/j/cpu.cfs_quota_us": "250000\n",
                             "cpu,cpuacct/j/cpu.cfs_period_us": "100000\n"}, 2.5),
    ("1:cpu:/\n", {"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"},
     0.5),
    ("0::/\n", {"cpu.max": "garbage\n"}, None),
])
def test_cgroup_quota(tmp_path, proc, files, want):
    from fastbp import _config
    _cgroup_tree(tmp_path / "cg", files)
    (tmp_path / "cgroup").write_text(proc)
    assert _config._cgroup_quota(str(tmp_path / "cg"), str(tmp_path / "cgroup")) == want
    assert _config._cgroup_quota(str(tmp_path / "cg"), str(tmp_path / "none")) is None


def test_more_threads_than_usable_cores_warns_once_per_count(monkeypatch):
    import warnings
    from fastbp import _config
    monkeypatch.setattr(_config, "usable_cores", lambda: 2)
    monkeypatch.setattr(_config, "_warned", set())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fastbp.set_num_threads(2)
            with fastbp.num_threads(2):
                pass
            assert _config.check_thread_count(2) == 2 and _config.check_thread_count(None) is None
            assert not caught
            fastbp.set_num_threads(4)
            fastbp.set_num_threads(4)
            with fastbp.num_threads(4):
                assert fastbp.get_num_threads() == 4
            _config.check_thread_count(4)
            assert len(caught) == 1
            w = caught[0]
            assert w.category is RuntimeWarning and w.filename == __file__   # the caller's line
            assert "n_threads=4" in str(w.message) and "oversubscribe" in str(w.message)
            assert "slower" in str(w.message) and "2 core(s)" in str(w.message)
            with fastbp.num_threads(3):
                pass
            assert len(caught) == 2 and caught[1].filename == __file__
            _config.check_thread_count(5, name="--threads")
            assert len(caught) == 3 and "--threads=5" in str(caught[2].message)
    finally:
        fastbp.set_num_threads(None)
    with pytest.raises(ValueError, match="--threads must be >= 1"):
        _config.check_thread_count(0, "--threads")


@pytest.mark.parametrize("n_threads", [1, 2])
def test_split_products_and_batch_shards_give_the_same_gradients(n_threads):
    """Products split over threads (big layers) and batch shards (small layers) agree with
    one thread."""
    rng = np.random.default_rng(0)
    # split products with the activation applied per thread block (row and column splits;
    # a wide softmax split by columns, GELU needing the pre-activations), batch shards
    cases = [([300, 700, 10], 600, "tanh"), ([32, 32, 32, 4], 256, "tanh"),
             ([100, 64, 64, 10], 512, "relu"), ([64, 512, 600], 64, "gelu"),
             ([600, 300, 10], 512, "relu")]
    # training batches of 128 through 100-64-64-10: shards at 2 threads
    assert _engine.batch_shards(fastbp.Network([100, 64, 64, 10]).plan, 128, 2) == 2
    for sizes, batch, act in cases:
        X = rng.normal(size=(batch, sizes[0]))
        y = rng.integers(0, sizes[-1], batch)
        for dtype, tol in [("float64", 1e-12), ("float32", 1e-4)]:
            net = fastbp.Network(sizes, activation=act, output="softmax", dtype=dtype, seed=1)
            with fastbp.num_threads(n_threads):
                np.testing.assert_allclose(net.predict(X), ref_predict(net, X),
                                           rtol=tol, atol=tol)
            with fastbp.num_threads(1):
                l1, g1 = net.loss_and_gradients(X, y, loss="cross_entropy")
            with fastbp.num_threads(n_threads):
                l2, g2 = net.loss_and_gradients(X, y, loss="cross_entropy")
            np.testing.assert_allclose(g2.flat, g1.flat, rtol=0, atol=tol * np.abs(g1.flat).max())
            for opt in [dict(momentum=0.0), dict(momentum=0.9), dict(optimizer="adam")]:
                a = net.copy()
                b = net.copy()
                fastbp.Trainer(a, batch_size=batch // 4, n_threads=1, seed=0, **opt).fit(
                    X, y, epochs=2)
                fastbp.Trainer(b, batch_size=batch // 4, n_threads=n_threads, seed=0,
                               **opt).fit(X, y, epochs=2)
                assert not np.array_equal(a.parameters, net.parameters)
                np.testing.assert_allclose(b.parameters, a.parameters, rtol=0,
                                           atol=tol * np.abs(a.parameters).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finiteness_check_split_over_threads_finds_every_position(dtype):
    """The compiled check behind input validation splits long arrays into 256k blocks."""
    for n in [1, 262144, 262145, 3 * 262144 + 5]:
        x = np.ones(n, dtype)
        assert _engine.params_finite(x, 2) and _engine.params_finite(x, 1)
        for pos in {0, n // 2, n - 1}:
            for bad in (np.inf, -np.inf, np.nan):
                y = x.copy()
                y[pos] = bad
                assert not _engine.params_finite(y, 2) and not _engine.params_finite(y, 1)


@pytest.mark.filterwarnings("ignore:training loss rose")
def test_batch_shards_momentum_backup_only_when_needed_and_divergence_restores():
    """Sharded SGD momentum (100-64-64-10, batches of 128 at 2 threads): an ordinary step
    writes no backup (the summed gradient's max proves the update finite); weights blown up
    through weight decay end in TrainingDiverged with the parameters of the step before,
    as at 1 thread (unsharded)."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(512, 100)).astype(np.float32)
    y = rng.integers(0, 10, 512)
    assert _engine.batch_shards(fastbp.Network([100, 64, 64, 10]).plan, 128, 2) == 2
    net = fastbp.Network([100, 64, 64, 10], activation="tanh", output="softmax", dtype="float32",
                         seed=1)
    tr = fastbp.Trainer(net, momentum=0.9, batch_size=128, n_threads=2, seed=0)
    tr.fit(X, y, epochs=1)
    tr._workspace.backup[:] = np.nan
    tr.fit(X, y, epochs=2)
    assert np.isnan(tr._workspace.backup).all() and np.isfinite(net.parameters).all()
    ends = []
    for nt in (1, 2):
        net = fastbp.Network([100, 64, 64, 10], activation="tanh", output="softmax", dtype="float32",
                         seed=1)
        tr = fastbp.Trainer(net, lr=1.0, weight_decay=1e4, momentum=0.9, batch_size=128,
                            n_threads=nt, seed=0)
        with pytest.raises(fastbp.TrainingDiverged, match="parameter update") as info:
            tr.fit(X, y, epochs=20, shuffle=False)
        assert np.isfinite(net.parameters).all() and np.abs(net.parameters).max() > 1e30
        ends.append((info.value.epoch, info.value.batch, net.parameters.copy()))
    assert ends[0][:2] == ends[1][:2]
    np.testing.assert_allclose(ends[1][2], ends[0][2], rtol=1e-3)


@pytest.mark.skipif(os.environ.get("FASTBP_REQUIRE_INSTALLED") != "1" or sys.platform != "linux",
                    reason="checks the repaired wheel CI installs (Linux)")
def test_the_installed_wheel_is_the_repaired_manylinux_one():
    """CI installs the wheel tools/build_wheel.sh repaired: OpenMP's runtime rides in
    fastbp.libs/ and the extensions load it from there, not from the system."""
    import glob
    site = os.path.dirname(os.path.dirname(fastbp.__file__))
    libs = glob.glob(os.path.join(site, "fastbp.libs", "libgomp*.so*"))
    assert libs, f"no fastbp.libs/libgomp beside {fastbp.__file__}"
    maps = open("/proc/self/maps").read()
    assert os.path.basename(libs[0]) in maps
