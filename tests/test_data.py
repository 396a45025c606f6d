"""Data larger than memory: memmaps without a whole copy, chunked sources (arrays, .npy,
Parquet, Zarr, Dask, iterables), their shuffling and errors."""
import numpy as np
import pytest

import fastbp
from fastbp.data import ChunkedDataset
from fastbp._validation import as_float_matrix


def problem(n=300, d=5, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 1)


def trained(source, y=None, **kw):
    net = fastbp.Network([5, 8, 3], output="softmax", seed=0)
    tr = fastbp.Trainer(net, lr=0.05, momentum=0.9, batch_size=16, seed=1, n_threads=1)
    h = tr.fit(source, y, epochs=3, **kw)
    return net.parameters.copy(), h


def test_a_memmap_is_used_in_place(tmp_path):
    X, y = problem()
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert np.shares_memory(as_float_matrix(mm, np.float32), mm)
    a, _ = trained(mm, y)
    b, _ = trained(X, y)
    np.testing.assert_array_equal(a, b)


def test_one_buffer_in_order_is_the_in_memory_run(tmp_path):
    X, y = problem()
    whole, hw = trained(X, y, shuffle=False)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    sources = [ChunkedDataset.from_arrays(np.load(tmp_path / "X.npy", mmap_mode="r"),
                                          np.load(tmp_path / "y.npy", mmap_mode="r"), 64),
               [(X[a:a + 50], y[a:a + 50]) for a in range(0, 300, 50)]]
    for src in sources:
        p, h = trained(src, shuffle=False, shuffle_buffer=100)
        np.testing.assert_array_equal(p, whole)
        assert h.loss == hw.loss


def test_shuffled_chunks_are_reproducible_and_learn():
    X, y = problem(n=1000)
    ds = ChunkedDataset.from_arrays(X, y, chunk_rows=100)
    a, ha = trained(ds, shuffle_buffer=3)
    b, hb = trained(ds, shuffle_buffer=3)
    np.testing.assert_array_equal(a, b)
    assert ha.loss[-1] < ha.loss[0] and len(ha) == 3
    c, _ = trained(ds, shuffle_buffer=1)
    assert not np.array_equal(a, c)


def test_npy_files(tmp_path):
    X, y = problem()
    xs, ys = [], []
    for i, a in enumerate(range(0, 300, 120)):
        np.save(tmp_path / f"X{i}.npy", X[a:a + 120])
        np.save(tmp_path / f"y{i}.npy", y[a:a + 120])
        xs.append(tmp_path / f"X{i}.npy")
        ys.append(tmp_path / f"y{i}.npy")
    ds = ChunkedDataset.from_npy(xs, ys)
    assert ds.n_chunks == 3 and ds.n_samples == 300
    p, _ = trained(ds, shuffle=False, shuffle_buffer=3)
    np.testing.assert_array_equal(p, trained(X, y, shuffle=False)[0])


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    X, y = problem()
    table = pa.table({**{f"f{j}": X[:, j] for j in range(5)}, "label": y})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=70)
    ds = ChunkedDataset.from_parquet(tmp_path / "d.parquet", target="label")
    assert ds.n_chunks == 5 and ds.n_samples == 300
    p, _ = trained(ds, shuffle=False, shuffle_buffer=5)
    np.testing.assert_array_equal(p, trained(X, y, shuffle=False)[0])
    with pytest.raises(ValueError, match="no column 'target'"):
        ChunkedDataset.from_parquet(tmp_path / "d.parquet", target="target")


def test_zarr_and_dask(tmp_path):
    X, y = problem()
    whole = trained(X, y, shuffle=False)[0]
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(tmp_path / "d.zarr"), mode="w")
    g.create_array("X", data=X, chunks=(64, 5))
    g.create_array("y", data=y, chunks=(64,))
    ds = ChunkedDataset.from_zarr(str(tmp_path / "d.zarr"))
    assert ds.n_chunks == 5
    np.testing.assert_array_equal(trained(ds, shuffle=False, shuffle_buffer=5)[0], whole)
    da = pytest.importorskip("dask.array")
    ds = ChunkedDataset.from_dask(da.from_array(X, chunks=(90, 5)), da.from_array(y, chunks=90))
    assert ds.n_chunks == 4
    np.testing.assert_array_equal(trained(ds, shuffle=False, shuffle_buffer=4)[0], whole)


def test_bad_chunks_give_clear_errors():
    X, y = problem()
    bad_cols = [(X[:100], y[:100]), (X[100:200, :4], y[100:200])]
    with pytest.raises(ValueError, match=r"chunk 1 of the data source.*\(100, 4\).*5 columns"):
        trained(bad_cols, shuffle_buffer=1)
    with pytest.raises(ValueError, match="chunk 1 of the data source.*100 rows, y 99"):
        trained([(X[:100], y[:100]), (X[100:200], y[100:199])])
    Xn = X.copy()
    Xn[250, 2] = np.nan
    with pytest.raises(ValueError, match="chunk 2 of the data source.*NaN"):
        trained(ChunkedDataset.from_arrays(Xn, y, 100), shuffle=False, shuffle_buffer=1)
    with pytest.raises(ValueError, match="iterator"):
        trained(((X[a:a + 100], y[a:a + 100]) for a in range(0, 300, 100)))
    with pytest.raises(ValueError, match="pair"):
        trained([X[:10]])
    with pytest.raises(TypeError, match="y"):
        fastbp.Trainer(fastbp.Network([5, 3], output="softmax")).fit(X)
    with pytest.raises(ValueError, match="rows"):
        ChunkedDataset.from_arrays(X, y[:10])


def test_a_nan_in_chunk_900_is_named_whatever_the_order():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10000, 5)).astype(np.float32)
    y = rng.integers(0, 3, 10000)
    X[9005, 1] = np.inf                                       # rows 9000-9009: chunk 900
    ds = ChunkedDataset.from_arrays(X, y, chunk_rows=10)
    net = fastbp.Network([5, 8, 3], output="softmax", seed=0)
    before = net.parameters.copy()
    tr = fastbp.Trainer(net, lr=0.05, batch_size=16, seed=1, n_threads=1)
    with pytest.raises(ValueError, match="chunk 900 of the data source.*inf") as e:
        tr.fit(ds, epochs=2, shuffle_buffer=8)
    assert np.isfinite(net.parameters).all() and not np.array_equal(net.parameters, before)
    assert len(e.value.history) == 0                         # failed inside epoch 1


def test_the_progress_bar_counts_samples_across_buffers(monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm", None)            # the plain text bar
    X, y = problem(n=250)
    trained(ChunkedDataset.from_arrays(X, y, chunk_rows=60), verbose=1, shuffle_buffer=2)
    err = capsys.readouterr().err
    for epoch in (1, 2, 3):
        counts = [int(part.split("] ")[1].split("/")[0].replace(",", ""))
                  for part in err.split("\r") if part.startswith(f"epoch {epoch} [")]
        assert counts == sorted(counts) and counts[-1] == 250     # on across the buffers
        assert any(120 < c < 250 for c in counts)                 # inside the second buffer
