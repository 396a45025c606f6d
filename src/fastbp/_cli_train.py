"""``fastbp train`` and ``fastbp predict``: train on a CSV/.npz file, predict from a saved model.

``train`` saves the network and its JSON metadata side by side (``MODEL`` and
``MODEL.json``, see :mod:`fastbp.models`); ``predict`` reads them back with
:func:`fastbp.models.load_model`.
"""
import argparse
import csv
import gzip
import io
import math
import os
import re
import sys
import time
import warnings
import zipfile

import numpy as np

from ._config import check_thread_count, get_num_threads, num_threads
from ._files import atomic_write
from ._validation import check_number, check_positive_int
from ._version import __version__
from .callbacks import EarlyStopping, ModelCheckpoint
from .datasets import train_test_split
from .models import META_SUFFIX, TrainedModel, load_model
from .network import Network
from .trainer import Trainer, TrainingDiverged

__all__ = ["add_commands", "check_threads"]

AUTO_MAX_CLASSES = 20          # --task auto: integral targets with at most this many values
_RELU_LIKE = ("relu", "leaky_relu", "elu", "silu", "swish", "gelu")

_MODEL_HELP = (
    "The model is saved as two files: OUTPUT (the network, readable with "
    "fastbp.Network.load) and OUTPUT.json (feature names, standardization statistics, task, "
    "class names, target name). Keep them together; `fastbp predict OUTPUT FILE` needs both.")


_INDEX_HELP = (
    "CSV: a row-index column to drop (name or integer index). Without it, leading unnamed "
    "columns (header '' or 'Unnamed: N') holding exactly 0, 1, ..., n-1, as pandas' "
    "to_csv writes its index, are dropped with a notice: row numbers are not a feature, "
    "and in a file sorted by class they give the label away")


# ---- argument parsing ----------------------------------------------------------------------

def add_commands(sub):
    t = sub.add_parser(
        "train", help="train a network on a CSV or .npz file and save it",
        description="Train an MLP on FILE and save it. FILE is a CSV file with a header row "
                    "(optionally .gz-compressed; every column but the target, --ignore'd ones "
                    "and a row index (see --index-col) must be numeric) or a .npz file "
                    "holding arrays X (n, d) and y. "
                    + _MODEL_HELP)
    t.add_argument("file", metavar="FILE", help="training data (.csv, .tsv, .csv.gz or .npz)")
    t.add_argument("--target", default=None, metavar="COL",
                   help="CSV: target column name or integer index (negative counts from the "
                        "end; default -1, the last column). .npz: name of the target array "
                        "(default y)")
    t.add_argument("--ignore", nargs="+", default=[], metavar="COL",
                   help="CSV columns that are neither features nor target (e.g. an id)")
    t.add_argument("--index-col", default=None, metavar="COL", help=_INDEX_HELP)
    t.add_argument("--task", choices=["auto", "classification", "regression"], default="auto",
                   help="auto (default): classification when the target is non-numeric or "
                        f"integral with at most {AUTO_MAX_CLASSES} distinct values, else "
                        "regression")
    t.add_argument("--hidden", type=int, nargs="*", default=[64, 32], metavar="N",
                   help="hidden layer sizes (default: 64 32; none = a linear/softmax model)")
    t.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    t.add_argument("--init", default="auto",
                   help="weight initializer (default: he_normal for ReLU-like activations, "
                        "glorot_uniform otherwise)")
    t.add_argument("--optimizer", default="adam",
                   choices=["sgd", "adam", "rmsprop", "rprop", "quickprop"])
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's, 0.001 for adam, 0.01 others)")
    t.add_argument("--momentum", type=float, default=0.0, help="sgd / rmsprop momentum")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--batch-size", type=int, default=None,
                   help="samples per batch (default 32; full batch for rprop and quickprop; "
                        "0 = full batch)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--validation-split", type=float, default=0.2, metavar="FRACTION",
                   help="fraction of the samples held out for validation, stratified by class "
                        "(default 0.2; 0 = none)")
    t.add_argument("--patience", type=int, default=None, metavar="N",
                   help="stop when the validation loss has not improved for N epochs and keep "
                        "the best weights")
    t.add_argument("--seed", type=int, default=0, help="seed of the split, weights and shuffling")
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--precision", default=None, choices=["bf16"],
                   help="bf16: train with bfloat16 products and float32 sums (mixed "
                        "precision; needs --dtype float32)")
    t.add_argument("--standardize", action=argparse.BooleanOptionalAction, default=True,
                   help="standardize the features (and regression targets) with the training "
                        "split's mean and std (default: on)")
    t.add_argument("--delimiter", default=None,
                   help="CSV delimiter (default: tab for .tsv, else guessed from the header)")
    t.add_argument("--output", "-o", default="model.fbp", metavar="MODEL",
                   help="where to save the model (default model.fbp; also writes MODEL.json)")
    t.add_argument("--quiet", "-q", action="store_true",
                   help="no progress bar or per-epoch lines")
    t.add_argument("--checkpoint", default=None, metavar="DIR",
                   help="write the training state to DIR after every epoch (the last two "
                        "are kept), to continue with --resume after a crash or a kill")
    t.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in --checkpoint DIR (if there is "
                        "one) up to --epochs epochs in all; give the same data and options")
    t.set_defaults(func=_train)

    p = sub.add_parser(
        "predict", help="predict with a model saved by `fastbp train`",
        description="Predict for the samples of FILE with MODEL (saved by `fastbp train`, "
                    "which wrote MODEL and MODEL.json). FILE has the training layout: a CSV "
                    "with the same feature columns (in any order; the target column may be "
                    "present and is ignored) or a .npz file with array X. Writes a CSV: a "
                    "`prediction` column (class name or value; one column per output for "
                    "multi-output regression), or with --proba one probability column per "
                    "class.")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--output", "-o", default=None, metavar="CSV",
                   help="write here (atomically) instead of standard output")
    p.add_argument("--proba", action="store_true",
                   help="classification: class probabilities instead of the predicted class")
    p.add_argument("--ignore", nargs="+", default=[], metavar="COL",
                   help="CSV columns to skip besides the model's own ignored columns")
    p.add_argument("--index-col", default=None, metavar="COL", help=_INDEX_HELP)
    p.add_argument("--delimiter", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.set_defaults(func=_predict)


def check_threads(args):
    """Check ``--threads``; more than the cores this process may use prints a warning
    (``fastbp CMD: warning: ...``) once, instead of Python's file:line form."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        n = check_thread_count(args.threads, "--threads")
    for w in caught:
        print(f"fastbp {args.command}: warning: {w.message}", file=sys.stderr)
    return n


# ---- reading data --------------------------------------------------------------------------

class Table:
    """A CSV file as text: ``header`` (names), ``rows`` (lists of str), ``lines`` (the file
    line on which each row starts)."""

    def __init__(self, path, header, rows, lines):
        self.path, self.header, self.rows, self.lines = path, header, rows, lines

    def __len__(self):
        return len(self.rows)

    def column_strings(self, j):
        return [r[j] for r in self.rows]

    def numeric(self, cols, what="column"):
        """Columns ``cols`` as a float64 (n, len(cols)) array; a ValueError names the first
        column with a non-numeric, missing or non-finite value and the line it is on."""
        out = np.empty((len(self.rows), len(cols)), dtype=np.float64)
        if not self.rows:
            return out
        columns = list(zip(*self.rows))
        for k, j in enumerate(cols):
            values, err = _parse_floats(columns[j])
            if err is not None:
                i, text = err
                raise ValueError(_bad_value_message(self, j, i, text, what))
            out[:, k] = values
        return out


def _parse_floats(strings):
    """(float64 array, None) or (None, (first bad index, its text))."""
    try:
        values = np.fromiter(map(float, strings), np.float64, len(strings))
    except ValueError:
        values = None
    if values is not None:
        bad = np.flatnonzero(~np.isfinite(values))
        return (values, None) if bad.size == 0 else (None, (int(bad[0]), strings[bad[0]]))
    for i, s in enumerate(strings):
        try:
            v = float(s)
        except ValueError:
            return None, (i, s)
        if not math.isfinite(v):
            return None, (i, s)
    return None, (0, strings[0])   # pragma: no cover - numpy and float() disagree


def _bad_value_message(table, j, i, text, what):
    where = f"{table.path}: {what} {table.header[j]!r}"
    line = table.lines[i]
    if text.strip() == "":
        return f"{where} has a missing (empty) value on line {line}"
    if _is_float(text):
        return (f"{where} has the non-finite value {text.strip()!r} on line {line} "
                "(NaN and inf are not allowed)")
    return f"{where} is not numeric: line {line} has {text!r}"


def _is_float(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def _is_npz(path):
    if path.lower().endswith(".npz"):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _check_file(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not a data file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty")


def read_table(path, delimiter=None):
    """Read a CSV file (header row required) into a Table."""
    _check_file(path)
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (gzip.BadGzipFile, EOFError) as e:
        raise ValueError(f"{path}: not a readable gzip file ({e})") from None
    if b"\x00" in raw[:65536]:
        raise ValueError(f"{path}: binary data, not a CSV text file (expected a CSV file "
                         "with a header row, or a .npz archive with arrays X and y)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e})") from None
    del raw
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    if delimiter is None:
        delimiter = _guess_delimiter(path, text)
    elif delimiter in ("\\t", "tab"):
        delimiter = "\t"
    if len(delimiter) != 1:
        raise ValueError(f"--delimiter must be a single character, got {delimiter!r}")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                        skipinitialspace=True)
    header, rows, lines = None, [], []
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue   # blank line
            if header is None:
                header = [h.strip() for h in row]
                header_line = reader.line_num
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}: line {reader.line_num} has {len(row)} fields, the "
                                 f"header (line {header_line}) has {len(header)}")
            rows.append(row)
            lines.append(reader.line_num)
    except csv.Error as e:
        raise ValueError(f"{path}: malformed CSV near line {reader.line_num} ({e})") from None
    _check_header(path, header)
    if not rows:
        raise ValueError(f"{path}: the header has no data rows below it")
    return Table(path, header, rows, lines)


def _guess_delimiter(path, text):
    name = path.lower().removesuffix(".gz")
    if name.endswith((".tsv", ".tab")):
        return "\t"
    first = text.lstrip().split("\n", 1)[0]
    if "," not in first:
        for d in ("\t", ";", "|"):
            if d in first:
                return d
    return ","


def _check_header(path, header):
    if all(_is_float(h) for h in header) and not all(h.isdigit() for h in header):
        shown = ",".join(header[:6]) + (",..." if len(header) > 6 else "")
        raise ValueError(f"{path}: the first line ({shown}) looks like data, not a header; "
                         "the CSV needs a header row with the column names")
    seen = {}
    for j, h in enumerate(header):
        if h in seen:
            raise ValueError(f"{path}: duplicate column name {h!r} in the header (columns "
                             f"{seen[h] + 1} and {j + 1}); the first line must be a header "
                             "with distinct column names")
        seen[h] = j


def _column_index(table, col, option="--target"):
    """Index of column ``col`` (a name, or an int index, negative from the end)."""
    header = table.header
    if isinstance(col, str) and col.strip() in header:
        return header.index(col.strip())
    try:
        j = int(col)
    except (TypeError, ValueError):
        raise ValueError(f"{table.path}: {option}: unknown column {col!r}; available columns: "
                         f"{_names(header)}") from None
    if not -len(header) <= j < len(header):
        raise ValueError(f"{table.path}: {option}: column index {j} is out of range for "
                         f"{len(header)} columns (use -{len(header)}..{len(header) - 1} or a "
                         f"name: {_names(header)})")
    return j % len(header)


def _names(names, limit=30):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


_UNNAMED = re.compile(r"(Unnamed: \d+)?")   # pandas' names for columns without a header


def _is_row_index(table, j):
    """Column ``j`` holds exactly 0, 1, ..., n-1."""
    return all(row[j].strip() == str(i) for i, row in enumerate(table.rows))


def _index_columns(table, args, keep=(), expected=()):
    """Indices of the row-index columns to drop: ``--index-col``'s, else the leading
    unnamed columns holding 0..n-1 (pandas' default index), not in ``keep``, each
    announced on stderr unless its name is in ``expected``."""
    if args.index_col is not None:
        return [_column_index(table, args.index_col, "--index-col")]
    found = []
    for j, name in enumerate(table.header):
        if j in keep or not _UNNAMED.fullmatch(name) or not _is_row_index(table, j):
            break
        found.append(j)
        if name in expected:
            continue
        print(f"fastbp {args.command}: {table.path}: dropped the unnamed column {j + 1} "
              f"({name!r}): it holds the row numbers 0..{len(table) - 1}, a pandas index "
              "(to_csv without index=False), not a feature; --index-col COL names the "
              "column to drop instead", file=sys.stderr)
    return found


def read_npz(path, need=("X",)):
    """The arrays of a .npz file as a dict; a ValueError lists the keys when one is missing."""
    _check_file(path)
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise ValueError(f"{path}: not a valid .npz file (not a zip archive; write it with "
                             "numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            missing = [k for k in need if k not in keys]
            if missing:
                which = (f"array named {missing[0]!r}" if len(missing) == 1
                         else "arrays named " + " and ".join(map(repr, missing)))
                raise ValueError(f"{path}: no {which}; the "
                                 f"file holds {_names(keys) if keys else 'no arrays'} (expected "
                                 f"{' and '.join(need)}, e.g. np.savez(path, X=X, y=y))")
            return {k: z[k] for k in need}
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path}: not a valid .npz file ({e})") from None
    except ValueError as e:
        msg = str(e)
        if msg.startswith(path):
            raise
        if "allow_pickle" in msg:
            raise ValueError(f"{path}: holds object (pickled) arrays; save numeric or string "
                             "arrays instead") from None
        raise ValueError(f"{path}: not a valid .npz file ({msg})") from None


def _npz_features(path, X, n_features=None):
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{path}: X must be numeric, got dtype {X.dtype}")
    if X.ndim == 1 and n_features == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"{path}: X must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{path}: X has no samples")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{path}: X has {X.shape[1]} columns, the model expects {n_features} "
                         "features")
    X = X.astype(np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise ValueError(f"{path}: X contains NaN or inf (first at row {i}, column {j})")
    return X


# ---- targets -------------------------------------------------------------------------------

def _decide_task(task, values, numeric):
    """'classification' or 'regression' for a 1-D target; ``numeric`` is its float64 array or
    None when some value is not a number."""
    if task != "auto":
        return task, None
    if numeric is None:
        return "classification", "non-numeric target"
    k = np.unique(numeric).size
    if np.all(numeric == np.round(numeric)) and k <= AUTO_MAX_CLASSES:
        return "classification", f"{k} distinct integer values"
    return "regression", ("non-integral values" if not np.all(numeric == np.round(numeric))
                          else f"{k} distinct values")


def _encode_classes(values):
    """(class names as JSON-able Python values, int64 labels 0..k-1)."""
    classes, labels = np.unique(values, return_inverse=True)
    names = []
    for c in classes.tolist():
        if isinstance(c, float) and c == round(c):
            c = int(c)
        names.append(c)
    return names, labels.astype(np.int64).reshape(-1)


def _encode_targets(args, y, numeric, target):
    """Decide the task and encode the target for the network.

    Returns ``(task, why, Y, fields)``: ``why`` says why ``--task auto`` chose the task (None
    when --task named it), ``Y`` is int64 class labels (n,) or float64 values (n, k), and
    ``fields`` the metadata naming the classes or the regression outputs.
    """
    if y.ndim == 2:
        if args.task == "classification":
            raise ValueError(f"{args.file}: classification needs a 1-D target of class labels, "
                             f"got shape {y.shape}")
        task, why = "regression", (None if args.task == "regression"
                                   else f"{y.shape[1]} target columns")
    else:
        task, why = _decide_task(args.task, y, numeric)
    if task == "classification":
        classes, labels = _encode_classes(y)
        if len(classes) < 2:
            raise ValueError(f"{args.file}: the target {target!r} has a single class "
                             f"({classes[0]!r}); classification needs at least 2")
        return task, why, labels, {"classes": classes}
    Y = numeric.reshape(len(y), -1)
    k = Y.shape[1]
    names = [target] if k == 1 else [f"{target}_{j}" for j in range(k)]
    return task, why, Y, {"target_names": names}


# ---- train ---------------------------------------------------------------------------------

def _check_output_path(path, data_path=None):
    """Fail before training, not after it, when the model cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--output {path}: is a directory; give a file name such as "
                         f"{os.path.join(path, 'model.fbp')}")
    if not os.path.isdir(folder):
        raise ValueError(f"--output {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"--output {path}: the directory {folder} is not writable")
    if data_path is not None and os.path.exists(path):
        for p in (path, path + META_SUFFIX):
            if os.path.exists(p) and os.path.samefile(p, data_path):
                raise ValueError(f"--output {path}: would overwrite the input file {data_path}")


def _check_train_args(args):
    """Check the options and the input and output paths before reading any data; returns
    the validation fraction."""
    check_positive_int(args.epochs, "--epochs", minimum=1)
    frac = check_number(args.validation_split, "--validation-split", 0.0, 1.0, high_open=True)
    for h in args.hidden:
        check_positive_int(h, "--hidden sizes")
    if args.patience is not None:
        check_positive_int(args.patience, "--patience", minimum=0)
        if frac == 0:
            raise ValueError("--patience needs a validation split (--validation-split > 0)")
    if args.batch_size is not None:
        check_positive_int(args.batch_size, "--batch-size", minimum=0)
    if args.resume and args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint DIR")
    if args.precision == "bf16" and args.dtype != "float32":
        raise ValueError(f"--precision bf16 needs --dtype float32, got --dtype {args.dtype}")
    if args.checkpoint is not None and os.path.exists(args.checkpoint) \
            and not os.path.isdir(args.checkpoint):
        raise ValueError(f"--checkpoint {args.checkpoint}: not a directory")
    check_threads(args)
    _check_file(args.file)
    _check_output_path(args.output, args.file)
    return frac


def _load_training_data(args):
    """``(X, y, numeric, info)``: the raw features (float64), the target as read, its float64
    values (None when some value is not a number) and the metadata describing the layout."""
    path = args.file
    if _is_npz(path):
        for option, value in (("--ignore", args.ignore), ("--index-col", args.index_col)):
            if value:
                raise ValueError(f"{option} applies to CSV files (a .npz file holds X and y)")
        key = "y" if args.target is None else args.target
        arrays = read_npz(path, need=("X", key))
        X = _npz_features(path, arrays["X"])
        y = np.asarray(arrays[key])
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.dtype.kind == "S":
            y = y.astype(str)   # class names must be JSON strings
        if y.shape[:1] != (X.shape[0],) or y.ndim > 2:
            raise ValueError(f"{path}: {key} must have shape ({X.shape[0]},) or "
                             f"({X.shape[0]}, k) to match X {X.shape}, got {y.shape}")
        if y.dtype.kind in "biuf":
            numeric = y.astype(np.float64)
            if not np.isfinite(numeric).all():
                i = int(np.flatnonzero(~np.isfinite(numeric).reshape(len(y), -1).all(1))[0])
                raise ValueError(f"{path}: {key} contains NaN or inf (first at row {i})")
        elif y.dtype.kind in "US":
            numeric = None
            if y.ndim != 1:
                raise ValueError(f"{path}: a string target {key} must be 1-D, got {y.shape}")
        else:
            raise ValueError(f"{path}: {key} must be numeric or strings, got dtype {y.dtype}")
        info = {"source_format": "npz", "feature_names": None, "target": key,
                "ignored_columns": [], "index_columns": []}
        return X, y, numeric, info
    table = read_table(path, args.delimiter)
    t = _column_index(table, -1 if args.target is None else args.target)
    ignored = sorted({_column_index(table, c, "--ignore") for c in args.ignore})
    if t in ignored:
        raise ValueError(f"{path}: the target column {table.header[t]!r} is also in --ignore")
    index = _index_columns(table, args, keep={t, *ignored})
    if t in index:
        raise ValueError(f"{path}: --index-col {table.header[t]!r} is the target column")
    index = [j for j in index if j not in ignored]
    feats = [j for j in range(len(table.header)) if j != t and j not in ignored + index]
    if not feats:
        raise ValueError(f"{path}: no feature columns left besides the target "
                         f"{table.header[t]!r}")
    X = table.numeric(feats, "feature column")
    strings = [s.strip() for s in table.column_strings(t)]
    empty = next((i for i, s in enumerate(strings) if not s), None)
    if empty is not None:
        raise ValueError(f"{path}: the target column {table.header[t]!r} has a missing (empty) "
                         f"value on line {table.lines[empty]}")
    numeric, err = _parse_floats(strings)
    if err is not None and args.task == "regression":
        raise ValueError(_bad_value_message(table, t, err[0], err[1], "target column")
                         + " (regression needs a numeric target)")
    y = np.array(strings) if numeric is None else numeric
    info = {"source_format": "csv", "feature_names": [table.header[j] for j in feats],
            "target": table.header[t], "ignored_columns": [table.header[j] for j in ignored],
            "index_columns": [table.header[j] for j in index]}
    return X, y, numeric, info


def _split(path, X, Y, fraction, stratify, seed):
    """``(X_train, X_val, Y_train, Y_val)``: ``fraction`` of the samples held out for
    validation, stratified by class when ``stratify``; none held out when it is 0."""
    if fraction == 0:
        return X, X[:0], Y, Y[:0]
    X_train, X_val, Y_train, Y_val = train_test_split(X, Y, test_fraction=fraction, seed=seed,
                                                      stratify=stratify)
    if len(X_train) == 0:
        raise ValueError(f"{path}: no training samples left after the validation split "
                         f"({len(X)} samples, --validation-split {fraction})")
    return X_train, X_val, Y_train, Y_val


def _mean_std(A, standardize):
    """Column means and standard deviations of A as lists (std 1 for a constant column), or
    ``(None, None)`` without standardization."""
    if not standardize:
        return None, None
    mean = A.mean(axis=0)
    std = A.std(axis=0)
    std[~(std > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
    return mean.tolist(), std.tolist()


def _build(args, meta):
    """The untrained model for ``meta``, its Trainer and the callbacks (early stopping)."""
    if meta["task"] == "classification":
        output, loss, k = "softmax", "cross_entropy", len(meta["classes"])
    else:
        output, loss, k = "identity", "mse", len(meta["target_names"])
    init = args.init
    if init == "auto":
        init = "he_normal" if args.activation.lower() in _RELU_LIKE else "glorot_uniform"
    net = Network([meta["n_features"], *args.hidden, k], activation=args.activation,
                  output=output, init=init, dtype=args.dtype, seed=args.seed)
    batch = args.batch_size
    if batch is None:
        batch = None if args.optimizer in ("rprop", "quickprop") else 32
    elif batch == 0:
        batch = None
    trainer = Trainer(net, loss=loss, optimizer=args.optimizer, lr=args.lr,
                      momentum=args.momentum, weight_decay=args.weight_decay, batch_size=batch,
                      n_threads=args.threads, seed=args.seed, precision=args.precision)
    callbacks = []
    if args.patience is not None:
        callbacks.append(EarlyStopping("val_loss", patience=args.patience,
                                       restore_best_weights=True))
    if args.checkpoint is not None:
        latest = ModelCheckpoint.latest(args.checkpoint) if args.resume else None
        if latest is not None:
            trainer = _resumed(latest, trainer)
            net = trainer.net
        callbacks.append(ModelCheckpoint(args.checkpoint, every=1, keep=2))
    return TrainedModel(net, meta), trainer, callbacks


def _resumed(path, fresh):
    """The Trainer of checkpoint ``path``, which must be for the network ``fresh`` has."""
    trainer = Trainer.load_checkpoint(path)
    a, b = trainer.net, fresh.net
    if (a.layer_sizes, a.activations, a.dtype) != (b.layer_sizes, b.activations, b.dtype):
        raise ValueError(f"--resume: {path} holds a network {list(a.layer_sizes)} "
                         f"{','.join(a.activations)} {a.dtype.name}; these options and data "
                         f"give {list(b.layer_sizes)} {','.join(b.activations)} {b.dtype.name}")
    print(f"resuming from {path} ({trainer.epoch} epoch(s) done)")
    return trainer


def _network_targets(model, Y):
    """Targets as the network learns them: class labels, or values standardized with the
    model's target statistics, in the network's dtype."""
    if model.task == "classification":
        return Y
    if model.meta["target_mean"] is not None:
        Y = (Y - np.asarray(model.meta["target_mean"])) / np.asarray(model.meta["target_std"])
    return Y.astype(model.net.dtype)


def _print_plan(args, model, trainer, why, n_train, n_val):
    """The two lines that say what will be trained, on what, and how."""
    net, meta = model.net, model.meta
    k = net.n_outputs
    what = (f"classification, {k} classes" if model.task == "classification"
            else f"regression, {k} output{'s' if k > 1 else ''}")
    print(f"fastbp train: {args.file}: {n_train + n_val} samples, {net.n_inputs} features, "
          f"target {meta['target']!r} -> {what}" + (f" (auto: {why})" if why else ""))
    hidden = f"{args.activation}+" if args.hidden else "no hidden layer, "
    batch = trainer.batch_size
    print(f"network {list(net.layer_sizes)} {hidden}{net.activations[-1]}, {net.dtype.name}, "
          f"loss {trainer.loss}, {args.optimizer} lr={trainer.optimizer.lr:g}, "
          f"batch {batch if batch is not None else 'full'}, {args.epochs} epochs, "
          f"{n_train} train / {n_val} validation samples, "
          f"{'standardized' if args.standardize else 'raw'} features, "
          f"{args.threads or get_num_threads()} thread(s)")
    sys.stdout.flush()


def _fit(args, trainer, callbacks, train, validation):
    """Train with a progress bar (unless --quiet); ``(history, seconds)``, history None after
    printing why there is no model to save."""
    t0 = time.perf_counter()
    try:
        history = trainer.fit(*train, epochs=max(0, args.epochs - trainer.epoch),
                              validation_data=validation, verbose=not args.quiet,
                              callbacks=callbacks, catch_interrupt=True)
    except TrainingDiverged as e:
        print(f"fastbp train: error: {e}; the model was not saved", file=sys.stderr)
        return None, 0.0
    seconds = time.perf_counter() - t0
    if history.interrupted:
        print(f"training interrupted after {len(history)} epoch(s); saving the model as it is")
    if len(history) == 0 and trainer.epoch >= args.epochs:
        print(f"nothing left to train: the checkpoint holds all {args.epochs} epochs")
    elif len(history) == 0:
        print("fastbp train: error: interrupted before the first epoch finished; the model "
              "was not saved", file=sys.stderr)
        return None, seconds
    return history, seconds


def _score(model, X_train, Y_train, X_val, Y_val):
    """"validation accuracy 91.25%", "training RMSE 0.1 (R² 0.9)"...: measured on the
    validation split (the training split when there is none) through the model as it is
    saved, raw features in and predictions in the target's units."""
    split, X, Y = ("validation", X_val, Y_val) if len(X_val) else ("training", X_train, Y_train)
    out = model.outputs(X)
    if model.task == "classification":
        return f"{split} accuracy {100 * float((out.argmax(axis=1) == Y).mean()):.2f}%"
    rmse = float(np.sqrt(np.mean((out - Y) ** 2)))
    var = float(np.mean((Y - Y.mean(axis=0)) ** 2))
    return f"{split} RMSE {rmse:.6g}" + (f" (R² {1 - rmse ** 2 / var:.4f})" if var > 0 else "")


def _print_result(metric, history, callbacks, seconds, t_start):
    """The closing line: the score, epochs run (and early stopping), speed and times;
    ``history`` has every epoch of the model (those before a resumed checkpoint too)."""
    stopped = ""
    early = [cb for cb in callbacks if isinstance(cb, EarlyStopping)]
    if early and early[0].stopped_epoch is not None:
        stopped = f" (early stop; best epoch {early[0].best_epoch + 1} weights kept)"
    epochs = f"{len(history)} epoch{'s' if len(history) != 1 else ''}"
    rate = float(np.median(history.samples_per_second))
    print(f"final {metric} after {epochs}{stopped}; training {seconds:.2f} s "
          f"({rate:,.0f} samples/s), total {time.perf_counter() - t_start:.2f} s")


def _save(args, model, trainer, history, frac, metric):
    """Record how the model was trained in its metadata, then write MODEL and MODEL.json."""
    model.meta["training"] = {"file": os.path.abspath(args.file), "epochs": len(history),
                              "optimizer": args.optimizer, "lr": trainer.optimizer.lr,
                              "batch_size": trainer.batch_size, "hidden": list(args.hidden),
                              "activation": args.activation, "seed": args.seed,
                              "validation_split": frac, "result": metric,
                              "fastbp_version": __version__}
    model.save(args.output)
    print(f"saved model to {args.output} (+ {args.output}{META_SUFFIX})")


def _train(args):
    t_start = time.perf_counter()
    frac = _check_train_args(args)
    X, y, numeric, info = _load_training_data(args)
    task, why, Y, target_fields = _encode_targets(args, y, numeric, info["target"])
    X_train, X_val, Y_train, Y_val = _split(args.file, X, Y, frac, task == "classification",
                                            args.seed)
    meta = {"task": task, **info, "n_features": X.shape[1], **target_fields}
    meta["feature_mean"], meta["feature_std"] = _mean_std(X_train, args.standardize)
    if task == "regression":
        meta["target_mean"], meta["target_std"] = _mean_std(Y_train, args.standardize)
    model, trainer, callbacks = _build(args, meta)

    _print_plan(args, model, trainer, why, len(X_train), len(X_val))
    train = model.transform(X_train), _network_targets(model, Y_train)
    validation = ((model.transform(X_val), _network_targets(model, Y_val)) if len(X_val)
                  else None)
    history, seconds = _fit(args, trainer, callbacks, train, validation)
    if history is None:
        return 1
    metric = _score(model, X_train, Y_train, X_val, Y_val)
    _print_result(metric, trainer.history, callbacks, seconds, t_start)
    _save(args, model, trainer, trainer.history, frac, metric)
    return 0


# ---- predict -------------------------------------------------------------------------------

def _prediction_features(model, args):
    """Raw float64 features of args.file in the model's column order."""
    meta, path = model.meta, args.file
    d = model.n_features
    _check_file(path)
    if _is_npz(path):
        if args.index_col is not None:
            raise ValueError("--index-col applies to CSV files (a .npz file holds X)")
        return _npz_features(path, read_npz(path, need=("X",))["X"], n_features=d)
    table = read_table(path, args.delimiter)
    names = meta["feature_names"]
    header = table.header
    target = meta.get("target")   # absent from models saved from Python without one
    # columns dropped in training: --ignore'd ones and row indices (by name: a test split's
    # index is no longer 0..n-1)
    skip = {*(meta.get("ignored_columns") or ()), *(meta.get("index_columns") or ()), target}
    extra_ignored = {header[_column_index(table, c, "--ignore")] for c in args.ignore}
    # the training rule for row-index columns, so that the features line up (a .npz-trained
    # model takes the columns in order); a column the model uses is never dropped
    features = set(names or ())
    index = _index_columns(table, args, keep={j for j, h in enumerate(header) if h in features},
                           expected=meta.get("index_columns") or ())
    for j in index:
        if header[j] in features:
            raise ValueError(f"{path}: --index-col {header[j]!r} is one of the model's "
                             "feature columns")
    extra_ignored |= {header[j] for j in index}
    if names is None:   # trained on a .npz file: columns in order
        cols = [j for j, h in enumerate(header) if h not in extra_ignored]
        if len(cols) != d:
            raise ValueError(f"{path}: {len(cols)} columns, the model expects {d} features "
                             "(it was trained on a .npz file, so the columns are taken in "
                             "order)")
        return table.numeric(cols, "feature column")
    missing = [f for f in names if f not in header]
    if missing:
        if len(missing) == d:
            raise ValueError(f"{path}: none of the model's {d} feature columns "
                             f"({_names(names, 10)}) is in the file, whose columns are "
                             f"{_names(header, 10)}")
        raise ValueError(f"{path}: missing feature column(s) {_names(missing, 10)} (the model "
                         f"was trained on {d} features: {_names(names, 10)})")
    known = set(names) | skip | extra_ignored
    unknown = [h for h in header if h not in known]
    if unknown:
        plus = f" (plus optionally the target {target!r})" if target is not None else ""
        raise ValueError(f"{path}: {len(header)} columns, the model expects its {d} feature "
                         f"columns{plus}; unexpected column(s) {_names(unknown)} (skip them "
                         "with --ignore, or a row-index column with --index-col)")
    return table.numeric([header.index(f) for f in names], "feature column")


def _predict(args):
    check_threads(args)
    model = load_model(args.model)
    if args.proba and model.task != "classification":
        raise ValueError("--proba needs a classification model; this one is a regression model")
    if args.output is not None:
        _check_output_path(args.output)
        for p in (args.model, args.model + META_SUFFIX, args.file):
            if os.path.exists(args.output) and os.path.samefile(args.output, p):
                raise ValueError(f"--output {args.output}: would overwrite {p}")
    X = _prediction_features(model, args)
    with num_threads(args.threads):
        out = model.outputs(X)
    fmt = "%.9g" if out.dtype == np.float32 else "%r"   # both round-trip exactly
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if model.task == "classification" and args.proba:
        w.writerow([str(c) for c in model.classes])
        w.writerows([fmt % v for v in row] for row in out.tolist())
    elif model.task == "classification":
        names = [str(c) for c in model.classes]
        w.writerow(["prediction"])
        w.writerows([names[i]] for i in out.argmax(axis=1).tolist())
    else:
        tn = model.meta["target_names"]
        w.writerow(["prediction"] if len(tn) == 1 else tn)
        w.writerows([fmt % v for v in row] for row in out.tolist())
    text = buf.getvalue()
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write(args.output, text.encode())
        print(f"wrote {len(X)} predictions to {args.output}", file=sys.stderr)
    return 0
