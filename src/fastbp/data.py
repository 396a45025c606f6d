"""Data larger than memory: rows read a chunk at a time::

    ds = fastbp.data.ChunkedDataset.from_arrays(np.load("X.npy", mmap_mode="r"),
                                                np.load("y.npy", mmap_mode="r"), chunk_rows=65536)
    ds = fastbp.data.ChunkedDataset.from_parquet(["a.parquet", "b.parquet"], target="label")
    ds = fastbp.data.ChunkedDataset.from_zarr("data.zarr")          # arrays "X" and "y"
    ds = fastbp.data.ChunkedDataset.from_dask(X_dask, y_dask)
    trainer.fit(ds, epochs=5, shuffle_buffer=4)    # or any re-iterable of (X_chunk, y_chunk)

``Trainer.fit`` takes such a source in place of (X, y): each epoch it visits the chunks in
a new seeded order, gathers ``shuffle_buffer`` of them into a buffer, shuffles the buffer's
rows and trains on it, while a background thread reads the next chunks. Memory holds the
buffer and the chunks read ahead, never the whole data set. (A NumPy memmap can also go to
``fit`` whole: batches are gathered from it row by row, never copied whole.) pyarrow, zarr
and dask are optional; each is imported only by the constructor that needs it.
"""
import numbers
import os

import numpy as np

__all__ = ["ChunkedDataset", "as_source"]


class ChunkedDataset:
    """Rows in chunks: ``chunk(i)`` returns (X_chunk, y_chunk) as NumPy arrays.

    ``loaders``: callables, one per chunk, each returning (X, y); ``n_samples``: the rows in
    all (None when unknown). The constructors below make them for arrays (memmaps, Zarr,
    Dask), ``.npy`` files and Parquet files.
    """

    def __init__(self, loaders, n_samples=None):
        self._loaders = list(loaders)
        if not self._loaders:
            raise ValueError("a ChunkedDataset needs at least one chunk")
        self.n_samples = n_samples

    @property
    def n_chunks(self):
        """Number of chunks."""
        return len(self._loaders)

    def chunk(self, i):
        """Chunk ``i`` (0-based) read in full: ``(X_chunk, y_chunk)`` as NumPy arrays."""
        X, y = self._loaders[i]()
        return np.asarray(X), np.asarray(y)

    def __len__(self):
        return self.n_chunks

    def __repr__(self):
        return f"ChunkedDataset({self.n_chunks} chunks, {self.n_samples} samples)"

    # ---- constructors ----------------------------------------------------------------------
    @classmethod
    def from_arrays(cls, X, y, chunk_rows=None):
        """Chunks of rows of any sliceable arrays with a ``shape`` (a NumPy memmap, a Zarr
        array, a Dask array, an HDF5 dataset): rows [i*chunk_rows, (i+1)*chunk_rows), or the
        arrays' own chunks along the rows (Zarr, Dask) when chunk_rows is None."""
        n = _rows(X, "X")
        if _rows(y, "y") != n:
            raise ValueError(f"X has {n} rows, y {_rows(y, 'y')}")
        if chunk_rows is None:
            bounds = _own_chunks(X, n)
        else:
            if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral) \
                    or chunk_rows < 1:
                raise ValueError(f"chunk_rows must be an int >= 1, got {chunk_rows!r}")
            bounds = [(a, min(n, a + chunk_rows)) for a in range(0, n, chunk_rows)]
        return cls([_slicer(X, y, a, b) for a, b in bounds], n)

    @classmethod
    def from_npy(cls, x_paths, y_paths):
        """One chunk per pair of ``.npy`` files (memory-mapped, read when the chunk is)."""
        x_paths, y_paths = _paths(x_paths), _paths(y_paths)
        if len(x_paths) != len(y_paths):
            raise ValueError(f"{len(x_paths)} X files, {len(y_paths)} y files")
        n = 0
        for xp, yp in zip(x_paths, y_paths):
            nx = np.load(xp, mmap_mode="r").shape[0]
            if np.load(yp, mmap_mode="r").shape[0] != nx:
                raise ValueError(f"{xp} and {yp} have different numbers of rows")
            n += nx
        return cls([(lambda xp=xp, yp=yp: (np.load(xp, mmap_mode="r"),
                                           np.load(yp, mmap_mode="r")))
                    for xp, yp in zip(x_paths, y_paths)], n)

    @classmethod
    def from_parquet(cls, paths, target, features=None):
        """One chunk per row group of the Parquet files (needs pyarrow): ``target`` names
        the target column, ``features`` the feature columns (default: all the others)."""
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("ChunkedDataset.from_parquet needs pyarrow: pip install pyarrow") \
                from None
        loaders, n = [], 0
        for path in _paths(paths):
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
            if target not in names:
                raise ValueError(f"{path}: no column {target!r} (columns: {names})")
            cols = [c for c in names if c != target] if features is None else list(features)
            missing = [c for c in cols if c not in names]
            if missing:
                raise ValueError(f"{path}: no column(s) {missing}")
            for g in range(pf.num_row_groups):
                loaders.append(lambda path=path, g=g, cols=cols: _parquet_group(
                    path, g, cols, target))
            n += pf.metadata.num_rows
        return cls(loaders, n)

    @classmethod
    def from_zarr(cls, store, x="X", y="y", chunk_rows=None):
        """The arrays ``x`` and ``y`` of a Zarr group (a path or an opened group; needs
        zarr), in the arrays' own row chunks unless chunk_rows."""
        try:
            import zarr
        except ImportError:
            raise ImportError("ChunkedDataset.from_zarr needs zarr: pip install zarr") from None
        group = zarr.open_group(store, mode="r") if isinstance(store, (str, os.PathLike)) else store
        return cls.from_arrays(group[x], group[y], chunk_rows)

    @classmethod
    def from_dask(cls, X, y, chunk_rows=None):
        """Dask arrays (each chunk computed when it is read), in X's own row chunks."""
        return cls.from_arrays(X, y, chunk_rows)


class _Iterable:
    """A re-iterable of (X_chunk, y_chunk) pairs as a chunk source (read in its order)."""

    def __init__(self, source):
        self.source = source
        self.n_samples = None
        self.used = False

    def __iter__(self):
        it = iter(self.source)
        if it is self.source:
            if self.used:
                raise ValueError("the data is an iterator, used up by the first epoch: give a "
                                 "list, a re-iterable, or a ChunkedDataset for several epochs")
            self.used = True
        for pair in it:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError("a chunk must be a pair (X_chunk, y_chunk)")
            yield np.asarray(pair[0]), np.asarray(pair[1])


def as_source(X):
    """A ChunkedDataset as it is, anything iterable of (X, y) pairs wrapped; else None."""
    if isinstance(X, ChunkedDataset):
        return X
    if isinstance(X, np.ndarray) or hasattr(X, "shape") or hasattr(X, "toarray"):
        return None
    if hasattr(X, "__iter__") and not isinstance(X, (str, bytes, dict)):
        return _Iterable(X)
    return None


def _rows(a, name):
    shape = getattr(a, "shape", None)
    if shape is None or len(shape) < 1:
        raise TypeError(f"{name} must be an array with a shape, got {type(a).__name__}")
    return int(shape[0])


def _own_chunks(X, n):
    chunks = getattr(X, "chunks", None)
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], tuple):   # dask
        bounds, a = [], 0
        for size in chunks[0]:
            bounds.append((a, a + size))
            a += size
        return bounds
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], numbers.Integral):
        step = int(chunks[0])                                                  # zarr
        return [(a, min(n, a + step)) for a in range(0, n, step)]
    return [(a, min(n, a + 65536)) for a in range(0, n, 65536)]


def _slicer(X, y, a, b):
    return lambda: (np.asarray(X[a:b]), np.asarray(y[a:b]))


def _paths(p):
    return [p] if isinstance(p, (str, bytes)) or hasattr(p, "__fspath__") else list(p)


def _parquet_group(path, g, cols, target):
    import pyarrow.parquet as pq
    table = pq.ParquetFile(path).read_row_group(g, columns=list(cols) + [target])
    X = np.column_stack([table.column(c).to_numpy() for c in cols]) if cols else \
        np.empty((table.num_rows, 0))
    return X, table.column(target).to_numpy()
